//! Transaction-stateful failover end to end: sipp callers through the real binary to real
//! sipp gateways (one answering 503, one silent, one healthy), CANCEL before answer, and the
//! same traffic with failover off for contrast. Scenario files: `tests/fixtures/sipp/`.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/sipp/{name}"))
}

/// A sipp gateway running scenario file `name` on 127.0.0.1:`port` (≤ 120 s).
fn sipp_uas_file(name: &str, port: u16) -> ChildGuard {
    ChildGuard(
        Command::new("sipp")
            .arg("-sf")
            .arg(scenario(name))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-nostdin", "-timeout", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp uas"),
    )
}

/// A gateway that never answers: reads and counts what it receives until dropped.
struct Silent {
    port: u16,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let (received, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (r, s) = (Arc::clone(&received), Arc::clone(&stop));
        thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && buf[..n].starts_with(b"INVITE ")
                {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Silent {
            port,
            received,
            stop,
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs caller scenario `name` against `lb`: `calls` calls at `rate`/s; bounded in time.
fn sipp_uac(name: &str, lb: std::net::SocketAddr, calls: u32, rate: u32) -> Output {
    sipp_uac_with(name, lb, calls, rate, &["-d", "100"])
}

/// [`sipp_uac`] with extra sipp arguments.
fn sipp_uac_with(
    name: &str,
    lb: std::net::SocketAddr,
    calls: u32,
    rate: u32,
    extra: &[&str],
) -> Output {
    Command::new("timeout")
        .arg("150")
        .arg("sipp")
        .arg("-sf")
        .arg(scenario(name))
        .arg(lb.to_string())
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "400",
        ])
        .args(["-timeout", "120", "-timeout_error", "-nostdin"])
        .args(["-recv_timeout", "8000"])
        .args(extra)
        .output()
        .expect("run sipp uac")
}

/// sipp's final "Successful call" and "Failed call" totals.
fn outcome(out: &Output) -> (u64, u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let total = |what: &str| {
        stdout
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (total("Successful call"), total("Failed call"))
}

fn config(admin: u16, failover: bool) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
         [dispatcher]\nlist_file = \"LIST\"\nflags = 2\n\n\
         [tm]\nfr_timer = 1000\n\n\
         [[route]]\nselect = \"1=4\"\nfailover = {failover}\n"
    )
}

/// Three gateways behind sipdisp: 503, silent, healthy (round robin, so a third of the calls
/// start on each).
struct Gateways {
    _uas: Vec<ChildGuard>,
    silent: Silent,
    list: String,
}

fn gateways() -> Gateways {
    require_sipp();
    let (p503, pok) = (free_udp_port(), free_udp_port());
    let uas = vec![sipp_uas_file("uas_503.xml", p503), sipp_uas(pok)];
    let silent = Silent::start();
    thread::sleep(Duration::from_millis(300));
    let list = format!(
        "1 sip:127.0.0.1:{p503}\n1 sip:127.0.0.1:{}\n1 sip:127.0.0.1:{pok}\n",
        silent.port
    );
    Gateways {
        _uas: uas,
        silent,
        list,
    }
}

fn metric(admin: u16, series: &str) -> f64 {
    let addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let (_, text) = http(addr, "GET", "/metrics").expect("scrape /metrics");
    metric_value(&text, series).unwrap_or_else(|| panic!("{series} missing"))
}

/// The metric once `ok` holds for it, or its last value after `within` (workers publish
/// their counters once a second; wait timers end transactions after `wt_timer`).
fn metric_until(admin: u16, series: &str, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(admin, series);
        if ok(v) || Instant::now() >= deadline {
            return v;
        }
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn failover_hides_a_failing_and_a_silent_gateway() {
    let gw = gateways();
    let admin = free_tcp_port();
    let lb = Sipdisp::start(&config(admin, true), &gw.list);
    let calls = 1000;
    let out = sipp_uac("uac_dialog.xml", lb.addr(), calls, 50);
    let (ok, failed) = outcome(&out);
    let all = f64::from(calls);
    let second = Duration::from_secs(3);
    let started = metric_until(admin, "sipdisp_transactions_started_total", second, |v| {
        v >= all
    });
    let code = metric(admin, "sipdisp_transaction_failovers_total{cause=\"code\"}");
    let timeout = metric(
        admin,
        "sipdisp_transaction_failovers_total{cause=\"timeout\"}",
    );
    let silent = gw.silent.received.load(Ordering::Relaxed);
    // The wait timers (wt_timer 5 s) end every transaction: none is left behind.
    let active = metric_until(
        admin,
        "sipdisp_transactions_active",
        Duration::from_secs(12),
        |v| v == 0.0,
    );
    let (_, log) = lb.stop();
    assert!(
        out.status.success() && ok == u64::from(calls) && failed == 0,
        "{ok} ok, {failed} failed: {}\n{log:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(started, f64::from(calls), "one transaction per INVITE");
    // Round robin over 3: about a third start on each gateway; every call that meets the 503
    // gateway or the silent one fails over.
    assert!(code >= f64::from(calls) / 4.0, "failovers on 503: {code}");
    assert!(
        timeout >= f64::from(calls) / 4.0,
        "failovers on timeout: {timeout}"
    );
    assert!(
        silent >= u64::from(calls) / 4,
        "the silent gateway got INVITEs: {silent}"
    );
    assert_eq!(active, 0.0, "transactions left behind");
}

#[test]
fn without_failover_the_failures_reach_the_caller() {
    let gw = gateways();
    let admin = free_tcp_port();
    let lb = Sipdisp::start(&config(admin, false), &gw.list);
    let out = sipp_uac("uac_dialog.xml", lb.addr(), 30, 30);
    let (ok, failed) = outcome(&out);
    drop(lb);
    // Round robin: 10 calls start on each gateway. Statelessly, the 503 reaches the caller;
    // a call on the silent one fails unless a retransmission of its INVITE is round-robined
    // to the healthy one — so at least the 503 third fails.
    assert_eq!(ok + failed, 30, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        failed >= 10,
        "{ok} ok, {failed} failed: the failures must show"
    );
}

#[test]
fn cancel_before_answer_gives_487_and_leaves_nothing() {
    require_sipp();
    let port = free_udp_port();
    let _uas = sipp_uas_file("uas_ringing.xml", port);
    thread::sleep(Duration::from_millis(300));
    let admin = free_tcp_port();
    let lb = Sipdisp::start(&config(admin, true), &format!("1 sip:127.0.0.1:{port}\n"));
    let calls = 20;
    let out = sipp_uac("uac_cancel.xml", lb.addr(), calls, 20);
    let (ok, failed) = outcome(&out);
    let n = f64::from(calls);
    let cancels = metric_until(
        admin,
        "sipdisp_transaction_cancels_total",
        Duration::from_secs(3),
        |v| v >= n,
    );
    let active = metric_until(
        admin,
        "sipdisp_transactions_active",
        Duration::from_secs(12),
        |v| v == 0.0,
    );
    let (_, log) = lb.stop();
    assert!(
        ok == u64::from(calls) && failed == 0,
        "{ok} ok, {failed} failed: {}\n{log:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(cancels, f64::from(calls));
    assert_eq!(active, 0.0, "transactions left behind");
}

fn config_with(admin: u16, dispatcher: &str, select: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
         [dispatcher]\nlist_file = \"LIST\"\nflags = 2\n{dispatcher}\n\n\
         [tm]\nfr_timer = 1000\n\n\
         [[route]]\nselect = \"{select}\"\nfailover = true\n"
    )
}

/// `DLGLOAD` of every destination in `dispatcher.list`, by URI.
fn loads(admin: u16) -> Vec<(String, u64)> {
    let addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let (_, v) = crate::control_e2e::rpc(addr, "dispatcher.list", serde_json::json!([]));
    let mut out = Vec::new();
    for rec in v["result"]["RECORDS"].as_array().into_iter().flatten() {
        for t in rec["SET"]["TARGETS"].as_array().into_iter().flatten() {
            let d = &t["DEST"];
            out.push((
                d["URI"].as_str().unwrap_or("").to_owned(),
                d["RUNTIME"]["DLGLOAD"].as_u64().unwrap_or(u64::MAX),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn call_load_goes_up_and_back_down_and_a_full_destination_is_skipped() {
    require_sipp();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let _uas = [sipp_uas(pa), sipp_uas(pb)];
    thread::sleep(Duration::from_millis(300));
    let admin = free_tcp_port();
    let list =
        format!("1 sip:127.0.0.1:{pa} 0 0 duid=a;maxload=1\n1 sip:127.0.0.1:{pb} 0 0 duid=b\n");
    let lb = Sipdisp::start(&config_with(admin, "ds_hash_size = 4", "1=10"), &list);
    let target = lb.addr();
    // Four calls of 3 s each, all set up within half a second.
    let uac =
        thread::spawn(move || sipp_uac_with("uac_dialog.xml", target, 4, 10, &["-d", "3000"]));
    thread::sleep(Duration::from_millis(1800));
    let during = loads(admin);
    let out = uac.join().unwrap();
    let (ok, failed) = outcome(&out);
    let after = loads(admin);
    drop(lb);
    assert_eq!(
        (ok, failed),
        (4, 0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let a = format!("sip:127.0.0.1:{pa}");
    let b = format!("sip:127.0.0.1:{pb}");
    let sorted = |mut v: Vec<(String, u64)>| {
        v.sort();
        v
    };
    // a is full at 1 (maxload): the other three calls went to b.
    assert_eq!(
        during,
        sorted(vec![(a.clone(), 1), (b.clone(), 3)]),
        "while the calls last"
    );
    assert_eq!(after, sorted(vec![(a, 0), (b, 0)]), "after every BYE");
}

#[test]
fn a_full_call_load_table_routes_calls_without_counting_them() {
    require_sipp();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let _uas = [sipp_uas(pa), sipp_uas(pb)];
    thread::sleep(Duration::from_millis(300));
    let admin = free_tcp_port();
    let list = format!("1 sip:127.0.0.1:{pa} 0 0 duid=a\n1 sip:127.0.0.1:{pb} 0 0 duid=b\n");
    // One bucket pair of one call each: at most two calls counted.
    let lb = Sipdisp::start(
        &config_with(admin, "ds_hash_size = 1\ncall_load_capacity = 2", "1=10"),
        &list,
    );
    let target = lb.addr();
    let uac =
        thread::spawn(move || sipp_uac_with("uac_dialog.xml", target, 6, 10, &["-d", "3000"]));
    thread::sleep(Duration::from_millis(1800));
    let during: u64 = loads(admin).iter().map(|(_, l)| l).sum();
    let counted = metric(admin, "sipdisp_call_load_calls");
    let refused = metric(admin, "sipdisp_call_load_refused_total");
    let out = uac.join().unwrap();
    let (ok, failed) = outcome(&out);
    let after: u64 = loads(admin).iter().map(|(_, l)| l).sum();
    drop(lb);
    assert_eq!(
        (ok, failed),
        (6, 0),
        "every call is routed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        (1..=2).contains(&during),
        "loads while the calls last: {during}"
    );
    assert_eq!(counted, during as f64);
    assert_eq!(refused, 6.0 - during as f64, "the calls not counted");
    assert_eq!(after, 0, "after every BYE");
}

#[test]
fn parallel_forking_first_200_wins_and_the_others_are_cancelled() {
    require_sipp();
    let calls = 10;
    let ringing: Vec<(u16, ChildGuard)> = (0..2)
        .map(|_| {
            let p = free_udp_port();
            let g = ChildGuard(
                Command::new("sipp")
                    .arg("-sf")
                    .arg(scenario("uas_ringing.xml"))
                    .args(["-i", "127.0.0.1", "-p", &p.to_string()])
                    .args(["-m", &calls.to_string(), "-nostdin", "-timeout", "60"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn sipp uas"),
            );
            (p, g)
        })
        .collect();
    let answering = free_udp_port();
    let _uas = sipp_uas(answering);
    thread::sleep(Duration::from_millis(300));
    let admin = free_tcp_port();
    // Algorithm 12 forks to the selected destination and every one after it in the set's
    // array (reverse file order): list the answering gateway last so all three are forked.
    let list = format!(
        "1 sip:127.0.0.1:{answering}\n1 sip:127.0.0.1:{}\n1 sip:127.0.0.1:{}\n",
        ringing[0].0, ringing[1].0
    );
    let lb = Sipdisp::start(&config_with(admin, "", "1=12"), &list);
    let out = sipp_uac("uac_dialog.xml", lb.addr(), calls, 5);
    let (ok, failed) = outcome(&out);
    // Each ringing gateway got every INVITE, was CANCELled and ACKed its 487: its scenario
    // completes all its calls and exits 0.
    let mut ringing_ok = Vec::new();
    for (_, mut g) in ringing {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(s)) = g.0.try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                break None;
            }
            thread::sleep(Duration::from_millis(100));
        };
        ringing_ok.push(status.is_some_and(|s| s.success()));
    }
    let (_, log) = lb.stop();
    assert_eq!(
        (ok, failed),
        (u64::from(calls), 0),
        "{}\n{log:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        ringing_ok,
        [true, true],
        "the forked gateways were cancelled cleanly"
    );
}

#[test]
fn a_gateway_killed_mid_run_loses_no_unanswered_call() {
    require_sipp();
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let victim = sipp_uas(p1);
    let _survivor = sipp_uas(p2);
    thread::sleep(Duration::from_millis(300));
    let admin = free_tcp_port();
    let list = format!("1 sip:127.0.0.1:{p1}\n1 sip:127.0.0.1:{p2}\n");
    let lb = Sipdisp::start(&config(admin, true), &list);
    let target = lb.addr();
    let calls = 300;
    let uac = thread::spawn(move || sipp_uac("uac_dialog.xml", target, calls, 50));
    thread::sleep(Duration::from_secs(3));
    drop(victim); // killed: from now on it is silent
    let out = uac.join().unwrap();
    let (ok, failed) = outcome(&out);
    let timeouts = metric(
        admin,
        "sipdisp_transaction_failovers_total{cause=\"timeout\"}",
    );
    drop(lb);
    // Only calls already answered by the victim when it died can fail (their BYE has no one
    // to answer it): at 50 calls/s and 100 ms calls, a handful. Every INVITE still unanswered
    // failed over to the survivor.
    assert_eq!(
        ok + failed,
        u64::from(calls),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        failed <= 10,
        "{failed} calls lost: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        timeouts > 0.0,
        "INVITEs to the dead gateway failed over on timeout"
    );
}

#[test]
fn a_full_transaction_table_answers_503_with_retry_after() {
    // Two slots, one silent gateway: two INVITEs hold the slots for fr_timer; a third is
    // refused at once with 503 + Retry-After, and the held ones still end with 408.
    let silent = Silent::start();
    let admin = free_tcp_port();
    let cfg = config(admin, true).replace("[tm]\n", "[tm]\nmax_transactions = 2\n");
    let lb = Sipdisp::start(&cfg, &format!("1 sip:127.0.0.1:{}\n", silent.port));
    let c = Client::new("127.0.0.1:0");
    for i in 0..2 {
        let inv = c.request(
            "INVITE",
            "sip:bob@example.com",
            &format!("full-{i}"),
            &format!("f{i}"),
            "",
        );
        c.sock.send_to(inv.as_bytes(), lb.addr()).unwrap();
    }
    thread::sleep(Duration::from_millis(200));
    let third = c.request("INVITE", "sip:bob@example.com", "full-2", "f2", "");
    let r = c
        .transact(lb.addr(), &third)
        .expect("an answer, not silence");
    assert_eq!(code(&r), 503, "{r}");
    assert!(r.contains("Retry-After: 5\r\n"), "{r}");
    // The two held INVITEs end with 408 after fr_timer (1 s).
    let mut finals = Vec::new();
    while let Some(r) = c.final_response(Duration::from_secs(3)) {
        finals.push(code(&r));
        if finals.len() == 2 {
            break;
        }
    }
    let overload = metric_until(
        admin,
        "sipdisp_transaction_overload_total",
        Duration::from_secs(3),
        |v| v >= 1.0,
    );
    drop(lb);
    assert_eq!(finals, [408, 408]);
    assert_eq!(overload, 1.0);
    assert!(silent.received.load(Ordering::Relaxed) >= 2);
}

#[test]
fn mark_takes_a_failing_gateway_out_and_says_so() {
    let gw = gateways();
    let admin = free_tcp_port();
    // The event hook runs for marks too, as for the prober's events (issue 12).
    let dir = TempDir::new("mark-hook");
    let (hook, hook_log) = dir.event_hook();
    let cfg = config(admin, true)
        .replace("failover = true\n", "failover = true\nmark = \"ip\"\n")
        .replace(
            "flags = 2\n",
            &format!("flags = 2\nevent_hook = \"{}\"\n", hook.display()),
        );
    let lb = Sipdisp::start(&cfg, &gw.list);
    let out = sipp_uac("uac_dialog.xml", lb.addr(), 12, 20);
    let (ok, failed) = outcome(&out);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let (_, v) = crate::control_e2e::rpc(addr, "dispatcher.list", serde_json::json!([]));
    // Hooks run in the background: wait (≤ 5 s) for both.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let downs = || {
        std::fs::read_to_string(&hook_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("dst-down 1 sip:") && l.ends_with(" IP"))
            .count()
    };
    while downs() < 2 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, metrics) = http(addr, "GET", "/metrics").unwrap();
    let (_, log) = lb.stop();
    assert_eq!(downs(), 2, "{:?}", std::fs::read_to_string(&hook_log));
    assert_eq!(
        metric_value(&metrics, "sipdisp_events_total{event=\"dst-down\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        (ok, failed),
        (12, 0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The 503 and the silent gateways were marked inactive+probing by ds_mark_dst("ip").
    let flags: Vec<String> = v["result"]["RECORDS"][0]["SET"]["TARGETS"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["DEST"]["FLAGS"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        flags.iter().filter(|f| f.as_str() == "IP").count(),
        2,
        "{flags:?}"
    );
    assert!(
        log.iter()
            .filter(|l| l.contains("dispatcher:dst-down"))
            .count()
            >= 2,
        "{log:?}"
    );
}
