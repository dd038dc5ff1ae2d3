//! State-machine tests with injected time: the prober driven tick by tick against a real
//! snapshot, replies fed back by token, every probing mode and threshold combination of the
//! reference (§5.2, §6.1–6.6), `ping_active 0`, reply-code classes, timeouts and
//! retransmissions, latency statistics, and a late reply after a reload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipdisp_parser::{Headers, parse_datagram};

use super::*;
use crate::dispatch::{
    DispatchParams, Event, Flags, LatencyStats, LoadHooks, Snapshot, parse_list,
};
use crate::netio::{Flow, OutboxError};
use crate::proxy::{Listener, Plane, ProbeToken, Sink, literal_addr};

#[derive(Default)]
struct Out(Vec<(usize, SocketAddr, Vec<u8>)>);

impl Sink for Out {
    fn send(&mut self, flow: &Flow, pieces: &[&[u8]]) -> Result<(), OutboxError> {
        self.0
            .push((usize::from(flow.local.0), flow.remote, pieces.concat()));
        Ok(())
    }
}

struct Refuse;

impl Sink for Refuse {
    fn send(&mut self, _: &Flow, _: &[&[u8]]) -> Result<(), OutboxError> {
        Err(OutboxError::Full)
    }
}

fn params(mode: u8, probing: u32, inactive: u32) -> DispatchParams {
    DispatchParams {
        ds_ping_interval: Some(Duration::from_secs(1)),
        ds_ping_timeout: Duration::from_secs(3),
        ds_probing_mode: mode,
        ds_probing_threshold: probing,
        ds_inactive_threshold: inactive,
        ..DispatchParams::default()
    }
}

fn plane(list: &str, p: DispatchParams) -> Arc<Plane> {
    let l = parse_list("t", list.as_bytes(), &p, &LoadHooks::default()).unwrap();
    Arc::new(Plane::new(Snapshot::build(&l.entries, p, 7), literal_addr))
}

fn prober() -> Prober {
    let s = Listener::new("127.0.0.1:5060".parse().unwrap());
    Prober::new(vec![s], ProbeMetrics::default())
}

fn token(bytes: &[u8]) -> ProbeToken {
    let mut h = Headers::new();
    let msg = parse_datagram(bytes, &mut h).unwrap();
    ProbeToken::parse(msg.top_via().unwrap().branch.unwrap()).unwrap()
}

fn letters(p: &Plane, i: usize) -> String {
    let f = p.snapshot.sets()[0].destinations()[i].flags();
    String::from_utf8(f.letters().to_vec()).unwrap()
}

/// One destination, pinged once per second: send, then answer with `code` (None: let it time
/// out). Returns the letters after the outcome and the events.
struct One {
    pr: Prober,
    plane: Arc<Plane>,
    t: Instant,
}

impl One {
    fn new(list: &str, p: DispatchParams) -> One {
        One {
            pr: prober(),
            plane: plane(list, p),
            t: Instant::now(),
        }
    }

    /// Advances to the next slot, ticks; returns the tokens sent.
    fn ping(&mut self, active: bool) -> Vec<ProbeToken> {
        let mut out = Out::default();
        self.pr.tick(self.t, &self.plane, active, &mut out);
        self.t += Duration::from_secs(1);
        out.0.iter().map(|(_, _, b)| token(b)).collect()
    }

    /// One probe cycle: tick, then reply with `code` or let it time out.
    fn round(&mut self, code: Option<u16>) -> (String, Vec<Fired>) {
        let sent = self.ping(true);
        let mut fired = Vec::new();
        if let Some(tok) = sent.first() {
            match code {
                Some(c) => fired = self.pr.reply(self.t, &self.plane, *tok, c),
                None => {
                    // Time out: tick past the deadline without sending new probes.
                    let saved = self.t;
                    self.t += Duration::from_secs(3);
                    let mut out = Out::default();
                    fired = self.pr.tick(self.t, &self.plane, false, &mut out);
                    self.t = saved + Duration::from_secs(4);
                }
            }
        }
        (letters(&self.plane, 0), fired)
    }
}

#[test]
fn request_goes_to_the_destination_with_its_from() {
    let mut pr = prober();
    let pl = plane(
        "1 sip:127.0.0.1:5070 8 0 ping_from=sip:lb@example.org\n1 sip:127.0.0.1:5071;transport=udp 8 5\n",
        params(0, 1, 1),
    );
    let t = Instant::now();
    let mut out = Out::default();
    pr.tick(t, &pl, true, &mut out);
    pr.tick(t + Duration::from_millis(600), &pl, true, &mut out);
    // Array order: priority 5 first.
    let texts: Vec<String> = out
        .0
        .iter()
        .map(|(_, _, b)| String::from_utf8(b.clone()).unwrap())
        .collect();
    // The second tick sends the second destination's probe and retransmits the first.
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert_eq!(texts[1], texts[0]);
    let texts = [&texts[0], &texts[2]];
    assert!(texts[0].starts_with("OPTIONS sip:127.0.0.1:5071;transport=udp SIP/2.0\r\n"));
    assert!(texts[0].contains("From: <sip:dispatcher@localhost>;tag="));
    assert!(texts[1].contains("From: <sip:lb@example.org>;tag="));
    assert_eq!(out.0[0].1, "127.0.0.1:5071".parse().unwrap());
    assert!(texts.iter().all(|t| t.contains("CSeq: 10 OPTIONS\r\n")));
}

#[test]
fn probes_are_spread_over_the_interval() {
    let list: String = (0..4)
        .map(|i| format!("1 sip:127.0.0.1:{} 8\n", 5070 + i))
        .collect();
    let mut p = params(1, 1, 1);
    p.ds_ping_interval = Some(Duration::from_secs(4));
    let pl = plane(&list, p);
    let mut pr = prober();
    let t0 = Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut first_at = Vec::new();
    for k in 0..8u32 {
        let mut out = Out::default();
        pr.tick(
            t0 + Duration::from_millis(500 * u64::from(k)),
            &pl,
            true,
            &mut out,
        );
        for (_, _, b) in &out.0 {
            if seen.insert(token(b).dest) {
                first_at.push(k);
            }
        }
    }
    assert_eq!(
        first_at,
        [0, 2, 4, 6],
        "one destination per second, not a burst"
    );
}

#[test]
fn mode_1_thresholds_3_2_as_observed_on_kamailio() {
    // Reference §5.2: replies 503,503,503 -> TP,TP,IP; then 200,200 -> IP,AP; then timeouts
    // -> TP,TP,IP.
    let mut o = One::new("1 sip:127.0.0.1:5070 8\n", params(1, 3, 2));
    let seq: Vec<String> = [
        Some(503),
        Some(503),
        Some(503),
        Some(200),
        Some(200),
        None,
        None,
        None,
    ]
    .into_iter()
    .map(|c| o.round(c).0)
    .collect();
    assert_eq!(seq, ["TP", "TP", "IP", "IP", "AP", "TP", "TP", "IP"]);
}

#[test]
fn every_mode_and_threshold_combination() {
    // (mode, probing threshold, inactive threshold, file flags, codes, expected letters after
    // each, or "-" when the destination was not pinged in that round)
    type Case = (
        u8,
        u32,
        u32,
        u32,
        &'static [Option<u16>],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        // mode 0: PROBING destinations only; any result clears PROBING.
        (0, 1, 1, 8, &[Some(503), Some(200)], &["IX", "-"]),
        (0, 1, 1, 8, &[Some(200), Some(503)], &["AX", "-"]),
        (0, 2, 1, 8, &[Some(503), Some(503)], &["TX", "-"]),
        (0, 1, 1, 0, &[Some(503)], &["-"]),
        (0, 1, 1, 9, &[None, Some(200)], &["IX", "-"]),
        // mode 1: everything non-disabled; PROBING kept.
        (1, 1, 1, 0, &[Some(503), Some(200)], &["IP", "AP"]),
        (
            1,
            2,
            1,
            0,
            &[Some(503), Some(503), Some(200)],
            &["TP", "IP", "AP"],
        ),
        (
            1,
            1,
            3,
            0,
            &[None, Some(200), Some(200), Some(200)],
            &["IP", "IP", "IP", "AP"],
        ),
        (1, 1, 1, 4, &[Some(200)], &["-"]),
        (1, 1, 1, 1, &[Some(200)], &["AP"]),
        // mode 2: only INACTIVE+PROBING; recovery gives AX and ends pinging.
        (
            2,
            1,
            1,
            9,
            &[Some(503), Some(200), Some(200)],
            &["IP", "AX", "-"],
        ),
        (2, 1, 1, 8, &[Some(503)], &["-"]),
        (2, 1, 2, 9, &[Some(200), Some(200)], &["IP", "AX"]),
        // mode 3: PROBING only, and PROBING preserved on success and failure.
        (
            3,
            1,
            1,
            8,
            &[Some(503), Some(200), Some(200)],
            &["IP", "AP", "AP"],
        ),
        (
            3,
            2,
            1,
            8,
            &[None, Some(200), None, None],
            &["TP", "AP", "TP", "IP"],
        ),
        (3, 1, 1, 0, &[Some(503)], &["-"]),
        (3, 1, 1, 12, &[Some(200)], &["-"]),
    ];
    for (n, &(mode, pt, it, flags, codes, want)) in cases.iter().enumerate() {
        let mut o = One::new(
            &format!("1 sip:127.0.0.1:5070 {flags}\n"),
            params(mode, pt, it),
        );
        let mut got = Vec::new();
        for &c in codes {
            let sent = o.ping(true);
            let Some(&tok) = sent.first() else {
                got.push("-".to_owned());
                continue;
            };
            match c {
                Some(code) => {
                    o.pr.reply(o.t, &o.plane, tok, code);
                }
                None => {
                    o.t += Duration::from_secs(3);
                    o.pr.tick(o.t, &o.plane, false, &mut Out::default());
                    o.t += Duration::from_secs(1);
                }
            }
            got.push(letters(&o.plane, 0));
        }
        assert_eq!(
            got, want,
            "case {n}: mode {mode} thresholds {pt}/{it} flags {flags} {codes:?}"
        );
    }
}

#[test]
fn ping_active_0_sends_nothing_and_keeps_states() {
    let mut o = One::new("1 sip:127.0.0.1:5070 8\n", params(1, 1, 1));
    for _ in 0..5 {
        assert!(o.ping(false).is_empty());
    }
    assert_eq!(letters(&o.plane, 0), "AP");
    assert_eq!(o.ping(true).len(), 1, "resumes when re-enabled");
}

#[test]
fn reply_code_classes() {
    let table: &[(&str, u16, &str)] = &[
        ("", 404, "IP"),
        ("class=4", 404, "AP"),
        ("code=403", 403, "AP"),
        ("code=403", 404, "IP"),
        ("class=5;code=404", 503, "AP"),
        ("", 299, "AP"),
        ("", 302, "IP"),
    ];
    for &(codes, code, want) in table {
        let mut p = params(1, 1, 1);
        p.ds_ping_reply_codes = codes.into();
        let mut o = One::new("1 sip:127.0.0.1:5070 9\n", p);
        assert_eq!(o.round(Some(code)).0, want, "{codes:?} {code}");
    }
    // A local timeout is a 408, so class=4 makes a dead destination look alive (documented).
    let mut p = params(1, 1, 1);
    p.ds_ping_reply_codes = "class=4".into();
    let mut o = One::new("1 sip:127.0.0.1:5070 9\n", p);
    assert_eq!(o.round(None).0, "AP");
}

#[test]
fn events_down_and_up_with_codes() {
    let mut o = One::new("1 sip:127.0.0.1:5070 8\n", params(1, 1, 1));
    let (_, f) = o.round(None);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].event, f[0].code, f[0].set.0),
        (Event::DstDown, 408, 1)
    );
    assert_eq!(f[0].uri, "sip:127.0.0.1:5070");
    assert_eq!(f[0].flags, Flags(Flags::INACTIVE | Flags::PROBING));
    assert!(o.round(Some(503)).1.is_empty(), "still down: no event");
    let (_, f) = o.round(Some(200));
    assert_eq!((f[0].event, f[0].code), (Event::DstUp, 200));
    // TRYING is not down.
    let mut o = One::new("1 sip:127.0.0.1:5070 8\n", params(1, 2, 1));
    assert!(o.round(Some(503)).1.is_empty());
    assert_eq!(o.round(Some(503)).1[0].event, Event::DstDown);
}

#[test]
fn provisional_replies_and_retransmissions() {
    let mut pr = prober();
    let pl = plane("1 sip:127.0.0.1:5070 8\n", params(1, 1, 1));
    let t = Instant::now();
    let mut out = Out::default();
    pr.tick(t, &pl, true, &mut out);
    assert_eq!(out.0.len(), 1);
    let tok = token(&out.0[0].2);
    let mut out2 = Out::default();
    pr.tick(t + Duration::from_millis(500), &pl, true, &mut out2);
    assert_eq!(out2.0.len(), 1, "T1 retransmission");
    assert_eq!(out2.0[0].2, out.0[0].2, "same bytes");
    assert!(
        pr.reply(t + Duration::from_millis(600), &pl, tok, 100)
            .is_empty()
    );
    assert_eq!(letters(&pl, 0), "AP", "provisional replies decide nothing");
    assert_eq!(pr.pending(), 1);
    pr.reply(t + Duration::from_millis(700), &pl, tok, 200);
    assert_eq!(pr.pending(), 0);
    // A duplicate final reply is ignored.
    pr.reply(t + Duration::from_millis(800), &pl, tok, 503);
    assert_eq!(letters(&pl, 0), "AP");
}

#[test]
fn send_failure_counts_as_500() {
    // Not resolvable: no address -> TRYING(+PROBING) through the thresholds.
    let mut pr = prober();
    let pl = plane("1 sip:gw.invalid 8\n", params(1, 1, 1));
    let f = pr.tick(Instant::now(), &pl, true, &mut Out::default());
    assert_eq!((f[0].event, f[0].code), (Event::DstDown, 500));
    // The outbox refusing the transmit is the same.
    let mut pr = prober();
    let pl = plane("1 sip:127.0.0.1:5070 8\n", params(1, 2, 1));
    pr.tick(Instant::now(), &pl, true, &mut Refuse);
    assert_eq!(letters(&pl, 0), "TP");
    // No socket of the destination's family: also a send failure.
    let mut pr = prober();
    let pl = plane("1 sip:[::1]:5070 8\n", params(0, 1, 1));
    pr.tick(Instant::now(), &pl, true, &mut Out::default());
    assert_eq!(letters(&pl, 0), "IX");
}

#[test]
fn late_reply_after_reload_is_ignored() {
    let p = params(1, 1, 1);
    let old = plane(
        "1 sip:127.0.0.1:5070 8\n1 sip:127.0.0.1:5071 8\n",
        p.clone(),
    );
    let mut pr = prober();
    let t = Instant::now();
    let mut out = Out::default();
    pr.tick(t, &old, true, &mut out);
    let tok = token(&out.0[0].2);
    assert_eq!(pr.generation(), 1);
    // Reload: 5071 removed, a new destination takes its index.
    let new = plane("1 sip:127.0.0.1:5072 8\n1 sip:127.0.0.1:5070 8\n", p);
    let before: Vec<String> = (0..2).map(|i| letters(&new, i)).collect();
    assert!(
        pr.reply(t + Duration::from_millis(10), &new, tok, 503)
            .is_empty()
    );
    assert_eq!(pr.generation(), 2);
    assert_eq!((0..2).map(|i| letters(&new, i)).collect::<Vec<_>>(), before);
    assert_eq!(
        pr.pending(),
        0,
        "pending probes of the old plane are forgotten"
    );
    // ... and it did not time out into the new plane either.
    let f = pr.tick(
        t + Duration::from_secs(10),
        &new,
        false,
        &mut Out::default(),
    );
    assert!(f.is_empty());
    assert_eq!((0..2).map(|i| letters(&new, i)).collect::<Vec<_>>(), before);
    let ignored = pr_metrics_ignored(&pr);
    assert_eq!(ignored, 1);
}

fn pr_metrics_ignored(pr: &Prober) -> u64 {
    pr.metrics_for_tests()
        .ignored_replies
        .get_or_create(&vec![("reason".to_owned(), "stale_generation".to_owned())])
        .get()
}

#[test]
fn latency_statistics_follow_the_reference() {
    // Samples 1,0,0,0,0 ms as observed on Kamailio: AVG 0.2, STD 0.447, EST = AVG (count < 10).
    let mut p = params(3, 1, 1);
    p.ds_ping_latency_stats = true;
    let pl = plane("1 sip:127.0.0.1:5070 8\n", p.clone());
    let mut pr = prober();
    let mut t = Instant::now();
    let mut reference = LatencyStats::default();
    for ms in [1u64, 0, 0, 0, 0, 250, 3] {
        let mut out = Out::default();
        pr.tick(t, &pl, true, &mut out);
        let tok = token(&out.0[0].2);
        pr.reply(t + Duration::from_micros(ms * 1000 + 400), &pl, tok, 200);
        reference.sample(ms as i32, p.latency_alpha());
        t += Duration::from_secs(1);
    }
    let got = pl.snapshot.sets()[0].destinations()[0].latency();
    assert_eq!(got, reference);
    // A timeout counts, without a sample.
    let mut out = Out::default();
    pr.tick(t, &pl, true, &mut out);
    pr.tick(t + Duration::from_secs(3), &pl, false, &mut out);
    let after = pl.snapshot.sets()[0].destinations()[0].latency();
    assert_eq!((after.timeout, after.count), (1, reference.count));
    // First five samples alone: the observed Kamailio figures.
    let mut k = LatencyStats::default();
    for ms in [1, 0, 0, 0, 0] {
        k.sample(ms, 0.9);
    }
    assert!((k.average - 0.2).abs() < 1e-6 && (k.stdev - 0.447).abs() < 1e-3);
    assert_eq!(k.estimate, k.average);
}

#[test]
fn latency_only_while_probing_mode_1_first_reply_not_measured() {
    let mut p = params(1, 1, 1);
    p.ds_ping_latency_stats = true;
    let pl = plane("1 sip:127.0.0.1:5070 0\n", p);
    let mut pr = prober();
    let t = Instant::now();
    for k in 0..2u64 {
        let mut out = Out::default();
        let at = t + Duration::from_secs(k);
        pr.tick(at, &pl, true, &mut out);
        pr.reply(at + Duration::from_millis(5), &pl, token(&out.0[0].2), 200);
    }
    let l = pl.snapshot.sets()[0].destinations()[0].latency();
    assert_eq!(
        (l.count, l.max),
        (1, 5),
        "the reply that turned PROBING on was not measured"
    );
}

#[test]
fn outbound_proxy_and_socket_attribute() {
    let mut p = params(1, 1, 1);
    p.outbound_proxy = Some("sip:127.0.0.9:5099".into());
    let pl = plane(
        "1 sip:127.0.0.1:5070 8\n1 sip:127.0.0.1:5071 8 0 obproxy=sip:127.0.0.8:5088;socket=udp:127.0.0.2:5060\n",
        p,
    );
    let socks = vec![
        Listener::new("127.0.0.1:5060".parse().unwrap()),
        Listener::new("127.0.0.2:5060".parse().unwrap()),
    ];
    let mut pr = Prober::new(socks, ProbeMetrics::default());
    let t = Instant::now();
    let mut out = Out::default();
    pr.tick(t, &pl, true, &mut out);
    pr.tick(t + Duration::from_millis(500), &pl, true, &mut out);
    let firsts: Vec<(usize, SocketAddr)> = out.0.iter().map(|(l, to, _)| (*l, *to)).collect();
    assert!(
        firsts.contains(&(1, "127.0.0.8:5088".parse().unwrap())),
        "{firsts:?}"
    );
    assert!(
        firsts.contains(&(0, "127.0.0.9:5099".parse().unwrap())),
        "{firsts:?}"
    );
}
