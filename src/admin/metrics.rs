//! `GET /metrics`: Prometheus / OpenMetrics text exposition, built at scrape time.
//!
//! Nothing here is on the message path. At each scrape a fresh registry is filled from what
//! the workers published (their plain per-worker counters, summed), from the current plane
//! (destination states, latency statistics, per-destination selection counters) and from the
//! health component's own metric families (probes, replies, timeouts, RTT histogram, events),
//! then encoded with `prometheus-client`. Names follow `sipdisp_<what>_<base unit>`, counters
//! end in `_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::{Response, Route};
use crate::dispatch::Flags;
use crate::health::{Health, Labels, dest_labels};
use crate::netio::SEND_FAILURES;
use crate::plane::Shared;
use crate::proxy::{DropReason, METHODS, Verdict};

/// The content type of the OpenMetrics exposition (text 1.0), for scrapers that ask for it
/// (Prometheus does, in its `Accept` header).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text exposition 0.0.4, the default.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` route: OpenMetrics when the request's `Accept` names it, else the
/// Prometheus text format 0.0.4 that older scrapers and `promtool check metrics` read.
pub fn route(shared: Arc<Shared>, health: Arc<Health>) -> Route {
    let (s, h) = (shared, health);
    Route {
        method: "GET",
        path: "/metrics",
        handler: Box::new(move |req| {
            let open = req
                .header("accept")
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            let body = render(&s, &h);
            if open {
                Response::new(200, CONTENT_TYPE, body)
            } else {
                Response::new(200, CONTENT_TYPE_TEXT, to_text_004(&body))
            }
        }),
    }
}

/// Rewrites an OpenMetrics exposition as Prometheus text 0.0.4: `info` families become
/// gauges named `<name>_info`, counter families are named like their `_total` samples,
/// `# UNIT` and `# EOF` lines go.
pub fn to_text_004(open: &str) -> String {
    // Family renames, from the TYPE lines (HELP comes first, so collect them first).
    let mut rename: Vec<(&str, String, &str)> = Vec::new();
    for l in open.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            match kind {
                "info" => rename.push((name, format!("{name}_info"), "gauge")),
                "counter" if !name.ends_with("_total") => {
                    rename.push((name, format!("{name}_total"), "counter"))
                }
                _ => {}
            }
        }
    }
    let renamed = |name: &str| rename.iter().find(|(n, _, _)| *n == name);
    let mut out = String::with_capacity(open.len());
    for l in open.lines() {
        if l.starts_with("# EOF") || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        match meta {
            Some((what, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                match (renamed(name), what) {
                    (Some((_, new, kind)), "TYPE") => out.push_str(&format!("# TYPE {new} {kind}")),
                    (Some((_, new, _)), _) => out.push_str(&format!("# HELP {new} {tail}")),
                    (None, _) => out.push_str(l),
                }
            }
            None => {
                // Counters' `_created` samples have no 0.0.4 equivalent.
                let name = l.split(['{', ' ']).next().unwrap_or("");
                if name.ends_with("_created") {
                    continue;
                }
                out.push_str(l);
            }
        }
        out.push('\n');
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// The whole exposition.
pub fn render(shared: &Shared, health: &Health) -> String {
    let mut reg = Registry::with_prefix("sipdisp");
    process(&mut reg, shared, health);
    destinations(&mut reg, shared);
    call_loads(&mut reg, shared);
    let m = health.metrics();
    reg.register("probes_sent", "Keepalive requests sent", m.sent.clone());
    reg.register(
        "probe_replies",
        "Keepalive replies received, by status class",
        m.replies.clone(),
    );
    reg.register(
        "probe_timeouts",
        "Keepalives without a final reply within ds_ping_timeout (counted as 408)",
        m.timeouts.clone(),
    );
    reg.register(
        "probe_send_failures",
        "Keepalives that could not be sent (counted as 500)",
        m.send_failures.clone(),
    );
    reg.register(
        "probe_rtt_seconds",
        "Keepalive round-trip time from the first transmission to the final reply",
        m.rtt.clone(),
    );
    reg.register(
        "probe_replies_ignored",
        "Keepalive replies ignored: from an older plane generation or not pending",
        m.ignored_replies.clone(),
    );
    reg.register(
        "events",
        "dispatcher:dst-down / dst-up events raised by keepalive outcomes",
        m.events.clone(),
    );
    reg.register(
        "event_hook_runs",
        "event_hook runs by result",
        m.hooks.clone(),
    );
    let mut out = String::with_capacity(16 * 1024);
    let _ = encode(&mut out, &reg);
    out
}

fn process(reg: &mut Registry, shared: &Shared, health: &Health) {
    let c = shared.counters();
    reg.register(
        "build",
        "sipdisp version",
        Info::new(labels(&[("version", env!("CARGO_PKG_VERSION"))])),
    );
    reg.register(
        "datapath",
        "The datapath backend in use (io_uring, mmsg)",
        Info::new(labels(&[("backend", shared.backend.as_str())])),
    );
    let up = Gauge::<f64, AtomicU64>::default();
    up.set(shared.started.elapsed().as_secs_f64());
    reg.register("uptime_seconds", "Seconds since the daemon started", up);
    let active = Gauge::<i64>::default();
    active.set(i64::from(shared.ping_active.load(Ordering::Relaxed)));
    reg.register(
        "probing_active",
        "1 unless keepalives are suspended (dispatcher.ping_active 0)",
        active,
    );
    let reloads = Counter::<u64>::default();
    reloads.inc_by(health.plane_swaps());
    reg.register(
        "reloads",
        "Destination planes swapped in after the first (reload, add, remove), as seen by the prober",
        reloads,
    );
    let requests = Counters::default();
    for (m, row) in c.requests.iter().enumerate() {
        for (v, n) in row.iter().enumerate() {
            if *n > 0 || (m == 0 && v == 0) {
                requests
                    .get_or_create(&labels(&[
                        ("method", METHODS[m]),
                        ("verdict", Verdict::label_of(v)),
                    ]))
                    .inc_by(*n);
            }
        }
    }
    reg.register(
        "requests",
        "SIP requests received, by method and verdict",
        requests,
    );
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];
    let responses = Counters::default();
    let replies = Counters::default();
    for (i, class) in classes.iter().enumerate() {
        responses
            .get_or_create(&labels(&[("class", class)]))
            .inc_by(c.responses[i + 1]);
        replies
            .get_or_create(&labels(&[("class", class)]))
            .inc_by(c.replied[i + 1]);
    }
    reg.register("responses", "SIP responses received, by class", responses);
    reg.register(
        "replies_sent",
        "Stateless replies sipdisp generated, by class",
        replies,
    );
    let drops = Counters::default();
    for (i, n) in c.dropped.iter().enumerate() {
        drops
            .get_or_create(&labels(&[("reason", DropReason::label_of(i))]))
            .inc_by(*n);
    }
    reg.register(
        "drops",
        "Datagrams dropped without an answer, by reason",
        drops,
    );
    let failures = Counters::default();
    for (i, n) in c.send_failures.iter().enumerate() {
        failures
            .get_or_create(&labels(&[("reason", SEND_FAILURES[i])]))
            .inc_by(*n);
    }
    reg.register(
        "transmit_failures",
        "Transmits that could not be sent, by reason (refused by the outbox, or by the kernel)",
        failures,
    );
    let truncated = Counter::<u64>::default();
    truncated.inc_by(c.truncated);
    reg.register(
        "truncated_datagrams",
        "Datagrams longer than the receive buffer, dropped",
        truncated,
    );
    transactions(reg, &c.txn);
    let forbidden = Counter::<u64>::default();
    forbidden.inc_by(c.forbidden_next_hop);
    reg.register(
        "forbidden_next_hop",
        "Requests refused (403) because their Route or in-dialog Request-URI names no destination and nothing in allowed_next_hops",
        forbidden,
    );
    let pike = Counter::<u64>::default();
    pike.inc_by(c.pike_blocked);
    reg.register(
        "pike_blocked_requests",
        "Requests refused by flood control ([pike]): dropped, or answered 503",
        pike,
    );
    let refused = Counter::<u64>::default();
    refused.inc_by(c.overload_refused);
    reg.register(
        "overload_refused",
        "New requests answered 503 Retry-After because their worker was behind (overload_admit_percent)",
        refused,
    );
    let behind = Counter::<u64>::default();
    behind.inc_by(c.backlog_batches);
    reg.register(
        "receive_backlog_batches",
        "Receive batches in which more requests waited than the batch took (the worker was behind)",
        behind,
    );
    let hot = Gauge::<i64>::default();
    hot.set(c.pike_blocked_sources as i64);
    reg.register(
        "pike_blocked_sources",
        "Source addresses over their [pike] rate (summed over workers, as last published)",
        hot,
    );
    let many = Counter::<u64>::default();
    many.inc_by(c.too_many_headers);
    reg.register(
        "too_many_headers",
        "Requests with more header lines than the scanner indexes (96), answered 400 Too Many Header Lines",
        many,
    );
    let sips = Counter::<u64>::default();
    sips.inc_by(c.sips_refused);
    reg.register(
        "sips_refused",
        "Requests for a sips: Request-URI refused (416): no TLS to keep them secure",
        sips,
    );
    let expired = Counter::<u64>::default();
    expired.inc_by(c.calls_expired);
    reg.register(
        "call_load_expired",
        "Algorithm-10 calls removed by ds_hash_expire / ds_hash_initexpire",
        expired,
    );
}

/// Algorithm 10's call-load table, when `ds_hash_size` makes one.
fn call_loads(reg: &mut Registry, shared: &Shared) {
    let plane = shared.plane.load_full();
    let Some(t) = plane.snapshot.calls() else {
        return;
    };
    let calls = Gauge::<i64>::default();
    calls.set(i64::try_from(t.len()).unwrap_or(i64::MAX));
    reg.register(
        "call_load_calls",
        "Calls counted in the algorithm-10 call-load table",
        calls,
    );
    let refused = Counter::<u64>::default();
    refused.inc_by(t.refused());
    reg.register(
        "call_load_refused",
        "Algorithm-10 calls not counted because the call-load table was full (call_load_capacity)",
        refused,
    );
}

fn destinations(reg: &mut Registry, shared: &Shared) {
    let plane = shared.plane.load_full();
    let (up, state, probing) = (Gauges::default(), Gauges::default(), Gauges::default());
    let resolved = Gauges::default();
    let (selections, failovers) = (Counters::default(), Counters::default());
    let (avg, std, est, max, timeouts) = (
        Gauges::default(),
        Gauges::default(),
        Gauges::default(),
        Gauges::default(),
        Gauges::default(),
    );
    for (sp, set) in plane.snapshot.sets().iter().enumerate() {
        for (i, d) in set.destinations().iter().enumerate() {
            let l = dest_labels(set.id, &d.uri);
            let f = d.flags();
            let has_addr = plane.addr_at(sp, i).is_some();
            resolved
                .get_or_create(&l)
                .set(f64::from(u8::from(has_addr)));
            up.get_or_create(&l)
                .set(f64::from(u8::from(f.usable() && has_addr)));
            let current = match f.letters()[0] {
                b'I' => "inactive",
                b'D' => "disabled",
                b'T' => "trying",
                _ => "active",
            };
            for s in ["active", "trying", "inactive", "disabled"] {
                let mut ls = l.clone();
                ls.push(("state".to_owned(), s.to_owned()));
                state
                    .get_or_create(&ls)
                    .set(f64::from(u8::from(s == current)));
            }
            probing
                .get_or_create(&l)
                .set(f64::from(u8::from(f.has(Flags::PROBING))));
            selections.get_or_create(&l).inc_by(plane.selections(sp, i));
            failovers.get_or_create(&l).inc_by(plane.failovers(sp, i));
            let lat = d.latency();
            avg.get_or_create(&l).set(f64::from(lat.average) / 1000.0);
            std.get_or_create(&l).set(f64::from(lat.stdev) / 1000.0);
            est.get_or_create(&l).set(f64::from(lat.estimate) / 1000.0);
            max.get_or_create(&l).set(f64::from(lat.max) / 1000.0);
            timeouts.get_or_create(&l).set(f64::from(lat.timeout));
        }
    }
    reg.register(
        "destination_up",
        "1 when the destination is selectable (neither inactive nor disabled) and has an address",
        up,
    );
    reg.register(
        "destination_resolved",
        "1 when the destination's host resolved to an address (0: requests routed to it get 503)",
        resolved,
    );
    reg.register(
        "destination_state",
        "1 for the destination's current state (Kamailio's first RPC letter)",
        state,
    );
    reg.register(
        "destination_probing",
        "1 when the destination has the PROBING flag",
        probing,
    );
    reg.register(
        "destination_selections",
        "Requests forwarded to the destination (since the current plane was loaded)",
        selections,
    );
    reg.register(
        "destination_failovers",
        "Failovers away from the destination (stateless forwarding: always 0)",
        failovers,
    );
    reg.register(
        "destination_latency_average_seconds",
        "Keepalive latency average (Kamailio AVG)",
        avg,
    );
    reg.register(
        "destination_latency_stddev_seconds",
        "Keepalive latency standard deviation (Kamailio STD)",
        std,
    );
    reg.register(
        "destination_latency_estimate_seconds",
        "Keepalive latency estimate, EWMA (Kamailio EST)",
        est,
    );
    reg.register(
        "destination_latency_max_seconds",
        "Largest keepalive latency sample (Kamailio MAX)",
        max,
    );
    reg.register(
        "destination_latency_timeouts",
        "Keepalive 408s counted by the latency statistics (Kamailio TIMEOUT)",
        timeouts,
    );
}

/// The transaction-stateful path's counters (routes with `failover`).
fn transactions(reg: &mut Registry, t: &crate::proxy::verdict::TxnCounters) {
    let one = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    one(
        reg,
        "transactions_started",
        "Stateful requests (calls) started",
        t.started,
    );
    let active = Gauge::<i64>::default();
    active.set(t.started.saturating_sub(t.ended) as i64);
    reg.register(
        "transactions_active",
        "Stateful requests in flight or in their wait timers",
        active,
    );
    let failovers = Counters::default();
    for (cause, v) in [("code", t.failovers_code), ("timeout", t.failovers_timeout)] {
        failovers
            .get_or_create(&labels(&[("cause", cause)]))
            .inc_by(v);
    }
    reg.register(
        "transaction_failovers",
        "Failovers to the next destination, by cause (a failover code, or a local timeout)",
        failovers,
    );
    let retr = Counters::default();
    for (dir, v) in [("in", t.retransmissions_in), ("out", t.retransmissions_out)] {
        retr.get_or_create(&labels(&[("direction", dir)])).inc_by(v);
    }
    reg.register(
        "transaction_retransmissions",
        "Caller retransmissions absorbed (in) and requests retransmitted to destinations (out)",
        retr,
    );
    one(
        reg,
        "transaction_timeouts",
        "Stateful requests answered with a local 408 (no destination answered in time)",
        t.timeouts,
    );
    one(
        reg,
        "transaction_overload",
        "Requests refused with 503 Retry-After because max_transactions were in flight",
        t.overload,
    );
    one(
        reg,
        "transaction_cancels",
        "CANCELs matched to a stateful INVITE",
        t.cancels,
    );
    one(
        reg,
        "transaction_local_replies",
        "Final responses sipdisp generated for stateful requests (408, 487, 500)",
        t.local_replies,
    );
}
