//! Health over real sockets: sipdisp probing three responders; one is stopped (marked
//! inactive within interval × threshold + timeout, no new calls), started again on the same
//! port (comes back); the event hook ran for both events; `/metrics` shows it all.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;

const INTERVAL: f64 = 0.3;
const THRESHOLD: u32 = 2;
const TIMEOUT: f64 = 0.5;

pub fn health_config(admin: u16, hook: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
         [dispatcher]\nlist_file = \"LIST\"\nds_ping_interval = {INTERVAL}\nds_ping_timeout = {TIMEOUT}\n\
         ds_probing_mode = 1\nds_probing_threshold = {THRESHOLD}\nds_inactive_threshold = 1\n\
         ds_ping_latency_stats = 1\n{hook}{extra}\n[[route]]\nselect = \"1=4\"\n"
    )
}

/// Waits (≤ `within`) until `cond` holds on the daemon's log; returns when it first held.
fn wait_log(lb: &Sipdisp, within: Duration, cond: impl Fn(&str) -> bool) -> Option<Instant> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if lb.log().iter().any(|l| cond(l)) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn invite(c: &Client, lb: SocketAddr, n: usize, tag: &str) -> usize {
    (0..n)
        .filter(|i| {
            let m = c.request(
                "INVITE",
                "sip:bob@example.com",
                &format!("{tag}-{i}"),
                &format!("{tag}{i}"),
                "",
            );
            c.transact(lb, &m).is_some_and(|r| code(&r) == 200)
        })
        .count()
}

fn invites(r: &Responder) -> usize {
    r.calls().iter().filter(|(m, _)| m == "INVITE").count()
}

#[test]
fn dead_backend_is_detected_skipped_and_comes_back() {
    let dir = TempDir::new("health");
    let (hook, hook_log) = dir.event_hook();
    let backends: Vec<Responder> = (0..3).map(|_| Responder::start("127.0.0.1:0")).collect();
    let list: String = backends
        .iter()
        .map(|b| format!("1 sip:{} 0\n", b.addr))
        .collect();
    let admin = free_tcp_port();
    let lb = Sipdisp::start(
        &health_config(admin, &format!("event_hook = \"{}\"\n", hook.display()), ""),
        &list,
    );
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let client = Client::new("127.0.0.1:0");

    // All three up and answering probes.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(invite(&client, lb.addr(), 6, "a"), 6);
    let mut backends = backends;
    let dead = backends.remove(1);
    let dead_addr = dead.addr;
    assert!(dead.calls().iter().any(|(m, _)| m == "OPTIONS"), "probed");
    let uri = format!("sip:{dead_addr}");

    // Stop it: marked inactive within interval × threshold + timeout (plus tick slack).
    drop(dead);
    let stopped = Instant::now();
    let down = wait_log(&lb, Duration::from_secs(5), |l| {
        l.contains("dispatcher:dst-down") && l.contains(&uri)
    })
    .expect("dst-down logged");
    let detection = down - stopped;
    let bound = Duration::from_secs_f64(INTERVAL * f64::from(THRESHOLD) + TIMEOUT);
    println!("detection time {detection:?} (bound {bound:?} + 0.5 s slack)");
    assert!(
        detection <= bound + Duration::from_millis(500),
        "{detection:?}"
    );

    // No new calls go there: every call is answered by the two live ones.
    let before: usize = backends.iter().map(invites).sum();
    assert_eq!(invite(&client, lb.addr(), 8, "b"), 8);
    assert_eq!(backends.iter().map(invites).sum::<usize>() - before, 8);
    let (_, m) = http(admin, "GET", "/metrics").unwrap();
    let series = |name: &str| format!("{name}{{set=\"1\",uri=\"{uri}\"}}");
    assert_eq!(
        metric_value(&m, &series("sipdisp_destination_up")),
        Some(0.0),
        "{m}"
    );
    assert!(metric_value(&m, &series("sipdisp_probe_timeouts_total")).unwrap() >= 2.0);

    // Start it again on the same port: it comes back and gets calls.
    let back = Responder::start(&dead_addr.to_string());
    let restarted = Instant::now();
    let up = wait_log(&lb, Duration::from_secs(5), |l| {
        l.contains("dispatcher:dst-up") && l.contains(&uri)
    })
    .expect("dst-up logged");
    println!("recovery time {:?}", up - restarted);
    assert_eq!(invite(&client, lb.addr(), 6, "c"), 6);
    assert!(invites(&back) >= 1, "round robin reaches it again");

    // The hook ran both times (it is reaped asynchronously: wait for the file).
    let end = Instant::now() + Duration::from_secs(5);
    let mut lines = Vec::new();
    while Instant::now() < end {
        lines = std::fs::read_to_string(&hook_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        lines,
        [format!("dst-down 1 {uri} IP"), format!("dst-up 1 {uri} AP")]
    );

    // Hooks are reaped on the prober's next wake-ups: poll until both are counted.
    let end = Instant::now() + Duration::from_secs(3);
    let m = loop {
        let (status, m) = http(admin, "GET", "/metrics").unwrap();
        assert_eq!(status, 200);
        let ok = metric_value(&m, "sipdisp_event_hook_runs_total{result=\"ok\"}");
        if ok == Some(2.0) || Instant::now() > end {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        metric_value(&m, &series("sipdisp_destination_up")),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "sipdisp_events_total{event=\"dst-down\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "sipdisp_events_total{event=\"dst-up\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "sipdisp_event_hook_runs_total{result=\"ok\"}"),
        Some(2.0)
    );
    assert!(metric_value(&m, &series("sipdisp_destination_selections_total")).unwrap() >= 1.0);
    assert!(metric_value(&m, &series("sipdisp_probes_sent_total")).unwrap() >= 5.0);
    assert!(
        m.lines()
            .any(|l| l.starts_with("sipdisp_probe_rtt_seconds_bucket{") && l.contains(&uri)),
        "{m}"
    );
    assert!(m.contains("sipdisp_requests_total{method=\"INVITE\",verdict=\"forwarded\"}"));
    let (ok, log) = lb.stop();
    assert!(ok, "{log:?}");
}

#[test]
fn unresolvable_destinations_are_not_shown_up() {
    let backend = Responder::start("127.0.0.1:0");
    // Line 1: rejected at load (Kamailio's default ds_dns_mode). Line 2: flag 16 (no DNS)
    // keeps it in the set, without an address.
    let list = format!(
        "1 sip:gone.invalid\n1 sip:nodns.invalid 16\n1 sip:{}\n",
        backend.addr
    );
    let admin = free_tcp_port();
    let lb = Sipdisp::start(&health_config(admin, "", ""), &list);
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    assert!(
        wait_log(&lb, Duration::from_secs(5), |l| l
            .contains("host \"gone.invalid\" does not resolve"))
        .is_some(),
        "{:?}",
        lb.log()
    );
    let (_, m) = http(admin, "GET", "/metrics").unwrap();
    let series = |name: &str, uri: &str| format!("{name}{{set=\"1\",uri=\"{uri}\"}}");
    assert!(!m.contains("sip:gone.invalid"), "{m}");
    let nodns = "sip:nodns.invalid";
    assert_eq!(
        metric_value(&m, &series("sipdisp_destination_resolved", nodns)),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &series("sipdisp_destination_up", nodns)),
        Some(0.0),
        "{m}"
    );
    let good = format!("sip:{}", backend.addr);
    assert_eq!(
        metric_value(&m, &series("sipdisp_destination_resolved", &good)),
        Some(1.0),
        "{m}"
    );
    lb.stop();
}
