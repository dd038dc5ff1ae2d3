//! The command line: clap definitions and the commands that need no running daemon.
//!
//! `main` parses [`Cli`] and dispatches; `run` (sockets, threads, signals) lives with `main`,
//! `check` lives here so it can be tested without the binary.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{self, CheckReport};
use crate::netio;

/// Where the appliance installs the configuration.
pub const DEFAULT_CONFIG: &str = "/etc/sipdisp/sipdisp.toml";

/// sipdisp: a SIP load balancer with Kamailio dispatcher semantics.
#[derive(Debug, Parser)]
#[command(name = "sipdisp", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the load balancer in the foreground (logs to stderr).
    Run {
        /// Configuration file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the configuration and its list file, print every problem and a summary;
    /// exit status 1 when `run` would refuse to start.
    Check {
        /// Configuration file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the manual page (roff) or a shell completion script, generated from this
    /// command line's definition (used by the packaging).
    #[command(hide = true)]
    Generate {
        /// `man`, or a shell: `bash`, `zsh`, `fish`.
        #[arg(value_parser = ["man", "bash", "zsh", "fish"])]
        what: String,
    },
    /// Call a JSON-RPC method on a running sipdisp's admin listener (Kamailio method names,
    /// e.g. `dispatcher.list`, `dispatcher.set_state ip 1 sip:10.0.0.1:5060`,
    /// `dispatcher.reload`). Exit status 1 on a fault.
    Ctl {
        /// Admin URL (default: `[admin] listen` of --config, else http://127.0.0.1:9090).
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
        /// Bearer token.
        #[arg(long, value_name = "T", conflicts_with = "token_file")]
        token: Option<String>,
        /// File holding the bearer token.
        #[arg(long, value_name = "F")]
        token_file: Option<PathBuf>,
        /// Configuration file to take the admin address and token from.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the raw JSON-RPC response.
        #[arg(long)]
        json: bool,
        /// Method, e.g. `dispatcher.list`.
        method: String,
        /// Positional parameters; numbers are sent as integers unless prefixed `s:`.
        #[arg(allow_hyphen_values = true)]
        params: Vec<String>,
    },
}

/// Writes `report` (errors and warnings to `err`, the summary to `out`) and returns the exit
/// code: 0 when the configuration is usable, 1 otherwise.
pub fn print_report(report: &CheckReport, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    // Output errors are ignored: there is nowhere left to report them.
    for e in &report.errors {
        let _ = writeln!(err, "error: {e}");
    }
    for w in &report.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    if let Some(s) = &report.summary {
        let _ = write!(out, "{s}");
    }
    if report.ok() {
        let _ = writeln!(
            out,
            "ok ({} warning{})",
            report.warnings.len(),
            if report.warnings.len() == 1 { "" } else { "s" }
        );
        0
    } else {
        let n = report.errors.len();
        let _ = writeln!(err, "{n} error{}", if n == 1 { "" } else { "s" });
        1
    }
}

/// `sipdisp check --config FILE`: validates, probes the datapath, prints, returns the exit code.
pub fn check_command(path: &Path) -> i32 {
    let mut report = config::check(path);
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    // The datapath probe runs before anything is printed, so its failure is counted with the
    // other errors and `ok` is never printed ahead of an error.
    let mut here = None;
    if let Some(cfg) = &report.config {
        match netio::select(cfg.server.datapath) {
            Ok((backend, None)) => here = Some(format!("datapath here: {backend}")),
            Ok((backend, Some(why))) => here = Some(format!("datapath here: {backend} ({why})")),
            Err(e) => report.errors.push(config::Problem::Environment(format!(
                "{}: server.datapath: {e}",
                path.display()
            ))),
        }
    }
    if let Some(line) = here {
        let _ = writeln!(out, "{line}");
    }
    print_report(&report, &mut out, &mut err)
}

/// `sipdisp generate WHAT`: writes the man page or a completion script to `out`.
pub fn generate(what: &str, out: &mut dyn Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let shell = match what {
        "man" => return clap_mangen::Man::new(cmd).render(out),
        "bash" => clap_complete::Shell::Bash,
        "zsh" => clap_complete::Shell::Zsh,
        _ => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "sipdisp", out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["sipdisp", "check", "--config", "x.toml"]).unwrap();
        assert!(matches!(c.command, Command::Check { config } if config == Path::new("x.toml")));
        let c = Cli::try_parse_from(["sipdisp", "run"]).unwrap();
        assert!(
            matches!(c.command, Command::Run { config } if config == Path::new(DEFAULT_CONFIG))
        );
        let mut man = Vec::new();
        generate("man", &mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(
            man.contains(".TH sipdisp") && man.contains("check"),
            "{man}"
        );
        let mut bash = Vec::new();
        generate("bash", &mut bash).unwrap();
        assert!(String::from_utf8(bash).unwrap().contains("complete -F"));
        let e = Cli::try_parse_from(["sipdisp", "--version"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
