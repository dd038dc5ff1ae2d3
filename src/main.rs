//! The `sipdisp` binary: command line, startup, signals. Everything else is in the library.

#![deny(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sipdisp::cli::{Cli, Command};
use sipdisp::daemon::{self, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => ExitCode::from(sipdisp::cli::check_command(&config) as u8),
        Command::Generate { what } => {
            match sipdisp::cli::generate(&what, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sipdisp: generate {what}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Ctl {
            admin,
            token,
            token_file,
            config,
            json,
            method,
            params,
        } => ExitCode::from(sipdisp::ctl::ctl_command(&sipdisp::ctl::CtlOptions {
            admin,
            token,
            token_file,
            config,
            json,
            method,
            params,
        }) as u8),
        Command::Run { config } => match run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sipdisp: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    // `run` refuses exactly what `sipdisp check` reports as an error (one code path), so a
    // clean check means a start.
    let report = sipdisp::config::check(path);
    let Some(config) = report.config.filter(|_| report.errors.is_empty()) else {
        let lines: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}", lines.join("\n"));
    };
    for w in sipdisp::config::config_warnings(&config) {
        eprintln!("sipdisp: warning: {w}");
    }
    let mut settings = Settings::from_config(&config);
    // Start on the list the check read (a database is read once, and nothing changes between).
    settings.preloaded = report.list;
    let workers = settings.workers;
    let running = daemon::start(settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plane = running.plane();
    let destinations: usize = plane.snapshot.sets().iter().map(|s| s.len()).sum();
    let addrs: Vec<String> = running
        .local_addrs
        .iter()
        .map(|a| format!("udp:{a}"))
        .collect();
    eprintln!(
        "sipdisp {}: listening on {} ({} worker{}, datapath {}); {} set{}, {} destination{}",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
        workers,
        if workers == 1 { "" } else { "s" },
        running.backend,
        plane.snapshot.sets().len(),
        if plane.snapshot.sets().len() == 1 {
            ""
        } else {
            "s"
        },
        destinations,
        if destinations == 1 { "" } else { "s" },
    );
    drop(plane);
    if let Some(a) = running.admin_addr {
        eprintln!("sipdisp: admin listener on http://{a} (/health, /metrics, POST /RPC)");
    }
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .context("installing signal handlers")?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("installing the SIGHUP handler")?;
    while !term.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if hup.swap(false, Ordering::Relaxed) {
            sipdisp::control::reload_and_log(&running.control(), "SIGHUP");
        }
    }
    eprintln!("sipdisp: stopping");
    running.stop_flag().store(true, Ordering::Relaxed);
    let counters = running.join();
    eprintln!("sipdisp: stopped: {}", daemon::summary(&counters));
    Ok(())
}
