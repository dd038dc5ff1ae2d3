//! Sans-IO tests of every transaction state and timer, with injected time.

use std::time::{Duration, Instant};

use super::call::{Action, Call, Fork, better};
use super::client::{Client, ClientState, ClientTimer, Received};
use super::server::{Server, ServerState, ServerTimer};
use super::{Codes, Timers};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn timers() -> Timers {
    Timers {
        fr_timer: ms(2000),
        fr_inv_timer: ms(10_000),
        ..Timers::default()
    }
}

/// Runs `c`'s timers up to `until`, returning (time, event) for each.
fn drive(c: &mut Client, t0: Instant, until: Duration, t: &Timers) -> Vec<(Duration, ClientTimer)> {
    let mut out = Vec::new();
    while let Some(at) = c.next_timer() {
        if at > t0 + until {
            break;
        }
        if let Some(ev) = c.on_timer(at, t) {
            out.push((at - t0, ev));
        }
    }
    out
}

#[test]
fn timer_a_doubles_and_timer_b_is_fr_timer() {
    let t = timers();
    let t0 = Instant::now();
    let mut c = Client::start(true, t0, &t);
    let ev = drive(&mut c, t0, ms(5000), &t);
    // A at 0.5, 1.5 (0.5+1), then B (fr_timer 2 s) before A's 3.5.
    assert_eq!(
        ev,
        [
            (ms(500), ClientTimer::Retransmit),
            (ms(1500), ClientTimer::Retransmit),
            (ms(2000), ClientTimer::Timeout),
        ]
    );
    assert_eq!(c.state(), ClientState::Terminated);
    assert!(!c.had_provisional());
}

#[test]
fn provisional_stops_timer_a_and_switches_to_fr_inv_timer() {
    let t = timers();
    let t0 = Instant::now();
    let mut c = Client::start(true, t0, &t);
    assert_eq!(c.on_response(180, t0 + ms(100), &t), Received::Provisional);
    assert_eq!(c.state(), ClientState::Proceeding);
    // No retransmission any more, and no timeout at fr_timer: fr_inv_timer from the 180.
    assert_eq!(c.next_timer(), Some(t0 + ms(10_100)));
    // A second provisional restarts it.
    assert_eq!(c.on_response(183, t0 + ms(5000), &t), Received::Provisional);
    let ev = drive(&mut c, t0, ms(20_000), &t);
    assert_eq!(ev, [(ms(15_000), ClientTimer::Timeout)]);
}

#[test]
fn invite_non_2xx_completes_and_timer_d_absorbs_retransmissions() {
    let t = timers();
    let t0 = Instant::now();
    let mut c = Client::start(true, t0, &t);
    assert_eq!(c.on_response(503, t0 + ms(10), &t), Received::Final);
    assert_eq!(c.state(), ClientState::Completed);
    assert_eq!(
        c.on_response(503, t0 + ms(600), &t),
        Received::Retransmitted
    );
    let ev = drive(&mut c, t0, ms(60_000), &t);
    assert_eq!(
        ev,
        [(ms(5010), ClientTimer::Terminated)],
        "Timer D = wt_timer"
    );
    assert_eq!(c.on_response(503, t0 + ms(6000), &t), Received::Stray);
}

#[test]
fn invite_2xx_terminates_at_once() {
    let t = timers();
    let t0 = Instant::now();
    let mut c = Client::start(true, t0, &t);
    assert_eq!(c.on_response(200, t0, &t), Received::Final);
    assert_eq!(c.state(), ClientState::Terminated);
    assert_eq!(c.next_timer(), None);
}

#[test]
fn timer_e_caps_at_t2_then_f_and_k() {
    let t = Timers {
        fr_timer: ms(32_000),
        ..Timers::default()
    };
    let t0 = Instant::now();
    let mut c = Client::start(false, t0, &t);
    let ev = drive(&mut c, t0, ms(16_000), &t);
    let at: Vec<u64> = ev.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // E: 0.5, 1.5, 3.5, 7.5, 11.5, 15.5 (interval 0.5, 1, 2, 4, 4, 4).
    assert_eq!(at, [500, 1500, 3500, 7500, 11_500, 15_500]);
    // A provisional: retransmit every T2 in Proceeding.
    assert_eq!(
        c.on_response(100, t0 + ms(16_000), &t),
        Received::Provisional
    );
    assert_eq!(c.next_timer(), Some(t0 + ms(20_000)));
    // F (fr_timer 32 s from the start) ends it.
    let ev = drive(&mut c, t0, ms(40_000), &t);
    assert_eq!(ev.last(), Some(&(ms(32_000), ClientTimer::Timeout)));
    // K: a final moves a fresh one to Completed for wt_timer.
    let mut c = Client::start(false, t0, &t);
    assert_eq!(c.on_response(404, t0 + ms(1), &t), Received::Final);
    assert_eq!(c.on_response(404, t0 + ms(2), &t), Received::Retransmitted);
    let ev = drive(&mut c, t0, ms(10_000), &t);
    assert_eq!(ev, [(ms(5001), ClientTimer::Terminated)]);
}

#[test]
fn server_invite_timer_g_h() {
    let t = Timers::default();
    let t0 = Instant::now();
    let mut s = Server::start(true, Instant::now() - ms(1000));
    assert!(
        s.on_retransmission(),
        "Proceeding resends the last provisional"
    );
    s.sent_final(486, t0, &t);
    assert_eq!(s.state(), ServerState::Completed);
    let mut g = Vec::new();
    let mut end = None;
    while let Some(at) = s.next_timer() {
        match s.on_timer(at, &t) {
            Some(ServerTimer::Retransmit) => g.push((at - t0).as_millis()),
            Some(ev) => {
                end = Some((at - t0, ev));
                break;
            }
            None => {}
        }
    }
    // G: 0.5, 1.5, 3.5, 7.5, 11.5, … (T2 cap), until H = 64·T1 = 32 s.
    assert_eq!(&g[..5], &[500, 1500, 3500, 7500, 11_500]);
    assert_eq!(end, Some((ms(32_000), ServerTimer::AckTimeout)));
    assert_eq!(s.state(), ServerState::Terminated);
}

#[test]
fn server_invite_ack_confirms_and_timer_i() {
    let t = Timers::default();
    let t0 = Instant::now();
    let mut s = Server::start(true, Instant::now() - ms(1000));
    s.sent_final(404, t0, &t);
    assert!(s.on_ack(t0 + ms(100), &t));
    assert_eq!(s.state(), ServerState::Confirmed);
    assert!(!s.on_retransmission(), "Confirmed absorbs");
    assert!(s.on_ack(t0 + ms(200), &t), "ACK retransmissions absorbed");
    assert_eq!(s.next_timer(), Some(t0 + ms(5100)), "Timer I = T4");
    assert_eq!(s.on_timer(t0 + ms(5100), &t), Some(ServerTimer::Terminated));
}

#[test]
fn server_invite_2xx_accepted_timer_l() {
    let t = Timers::default();
    let t0 = Instant::now();
    let mut s = Server::start(true, Instant::now() - ms(1000));
    s.sent_final(200, t0, &t);
    assert_eq!(s.state(), ServerState::Accepted);
    assert!(!s.on_retransmission(), "retransmitted INVITEs absorbed");
    assert!(!s.on_ack(t0, &t), "the 2xx ACK is end to end");
    assert_eq!(
        s.next_timer(),
        Some(t0 + ms(5000)),
        "Timer L = tm's wt_timer"
    );
    assert_eq!(s.on_timer(t0 + ms(5000), &t), Some(ServerTimer::Terminated));
}

#[test]
fn server_non_invite_timer_j() {
    let t = Timers::default();
    let t0 = Instant::now();
    let mut s = Server::start(false, Instant::now());
    s.sent_final(200, t0, &t);
    assert_eq!(s.state(), ServerState::Completed);
    assert!(s.on_retransmission(), "Completed resends the final");
    assert_eq!(s.on_timer(t0 + ms(4999), &t), None);
    assert_eq!(s.on_timer(t0 + ms(5000), &t), Some(ServerTimer::Terminated));
}

#[test]
fn best_response_rules() {
    assert!(better(486, None));
    assert!(better(486, Some(503)), "lower class wins");
    assert!(!better(503, Some(486)));
    assert!(better(603, Some(486)), "6xx wins over everything");
    assert!(!better(486, Some(603)));
    assert!(
        better(407, Some(404)),
        "401/407/415/420/484 preferred in 4xx"
    );
    assert!(!better(404, Some(407)));
    assert!(!better(480, Some(404)), "otherwise the first stays");
    assert!(better(302, Some(404)));
}

#[test]
fn codes_patterns() {
    let c = Codes::default();
    for (code, m) in [
        (408, true),
        (500, true),
        (503, true),
        (599, true),
        (404, false),
        (486, false),
        (600, false),
        (200, false),
    ] {
        assert_eq!(c.matches(code), m, "{code}");
    }
    let c = Codes::parse("4[0-35]8|6..").unwrap();
    assert!(c.matches(408) && c.matches(438) && c.matches(458) && !c.matches(448));
    assert!(c.matches(603));
    for bad in ["", "40", "4088", "4x8", "[0-9", "5[9-0]0", "5[]0"] {
        assert!(Codes::parse(bad).is_err(), "{bad:?}");
    }
}

fn run(c: &mut Call, now: Instant, t: &Timers, until: Duration, codes: &Codes) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(at) = c.next_timer() {
        if at > now + until {
            break;
        }
        out.extend(c.on_timer(at, t, codes));
    }
    out
}

#[test]
fn serial_failover_503_then_silence_then_200() {
    let t = timers();
    let codes = Codes::default();
    let t0 = Instant::now();
    let (mut c, a) = Call::start(true, Fork::Serial, 3, t0, &t);
    assert_eq!(&a[..], [Action::SendRequest(0)], "100 Trying waits 200 ms");
    // Branch 0 answers 503: ACK it, keep it, mark it, try branch 1.
    let a = c.on_response(0, 503, t0 + ms(10), &t, &codes);
    assert_eq!(
        &a[..],
        [
            Action::SendAck(0),
            Action::KeepBest,
            Action::Mark(0),
            Action::SendRequest(1)
        ]
    );
    // Nothing went upstream for 200 ms: 100 Trying. Branch 1 is silent: retransmissions,
    // then fr_timer → a local 408 → branch 2.
    let a = run(&mut c, t0, &t, ms(2100), &codes);
    assert_eq!(
        a,
        [
            Action::Trying,
            Action::SendRequest(1),
            Action::SendRequest(1),
            Action::Mark(1),
            Action::SendRequest(2)
        ]
    );
    assert!(!c.answered());
    // Branch 2: 180 passes, 200 passes and confirms.
    let a = c.on_response(2, 180, t0 + ms(2100), &t, &codes);
    assert_eq!(&a[..], [Action::ForwardResponse]);
    let a = c.on_response(1, 180, t0 + ms(2100), &t, &codes);
    assert!(
        a.is_empty(),
        "a late provisional of a dead branch is not passed on"
    );
    let a = c.on_response(2, 200, t0 + ms(2200), &t, &codes);
    assert_eq!(&a[..], [Action::ForwardResponse, Action::Confirmed]);
    assert!(c.answered());
    // Everything ends (Timer L for the server, D for branch 0).
    run(&mut c, t0, &t, ms(60_000), &codes);
    assert!(c.is_over());
}

#[test]
fn serial_exhausted_gives_best_or_500_or_408() {
    let t = timers();
    let codes = Codes::default();
    let t0 = Instant::now();
    // Every destination 503: the caller gets 500.
    let (mut c, _) = Call::start(true, Fork::Serial, 2, t0, &t);
    c.on_response(0, 503, t0, &t, &codes);
    let a = c.on_response(1, 503, t0, &t, &codes);
    assert_eq!(&a[a.len() - 2..], [Action::Reply(500), Action::Failed]);
    // A non-failover code ends the search: 486 forwarded.
    let (mut c, _) = Call::start(true, Fork::Serial, 2, t0, &t);
    let a = c.on_response(0, 486, t0, &t, &codes);
    assert_eq!(
        &a[..],
        [
            Action::SendAck(0),
            Action::KeepBest,
            Action::ForwardBest,
            Action::Failed
        ]
    );
    // Silence everywhere: 408.
    let (mut c, _) = Call::start(false, Fork::Serial, 2, t0, &t);
    let a = run(&mut c, t0, &t, ms(5000), &codes);
    assert_eq!(&a[a.len() - 2..], [Action::Reply(408), Action::Failed]);
    // 503 then a timeout: the local 408 is the lower class.
    let (mut c, _) = Call::start(false, Fork::Serial, 2, t0, &t);
    c.on_response(0, 503, t0, &t, &codes);
    let a = run(&mut c, t0, &t, ms(5000), &codes);
    assert_eq!(&a[a.len() - 2..], [Action::Reply(408), Action::Failed]);
}

#[test]
fn cancel_before_answer_gives_487() {
    let t = timers();
    let codes = Codes::default();
    let t0 = Instant::now();
    let (mut c, _) = Call::start(true, Fork::Serial, 2, t0, &t);
    c.on_response(0, 180, t0, &t, &codes);
    let a = c.on_cancel(t0 + ms(50), &t);
    assert_eq!(&a[..], [Action::SendCancel(0)]);
    // The backend answers 487: no failover after a CANCEL, the 487 goes upstream.
    let a = c.on_response(0, 487, t0 + ms(60), &t, &codes);
    assert_eq!(
        &a[..],
        [
            Action::SendAck(0),
            Action::KeepBest,
            Action::ForwardBest,
            Action::Failed
        ]
    );
    // CANCEL before any provisional: pending until one arrives.
    let (mut c, _) = Call::start(true, Fork::Serial, 1, t0, &t);
    assert!(c.on_cancel(t0, &t).is_empty());
    let a = c.on_response(0, 100, t0 + ms(5), &t, &codes);
    assert_eq!(&a[..], [Action::SendCancel(0)]);
    // The branch never answers: fr_inv_timer ends it and the caller still gets 487.
    let a = run(&mut c, t0, &t, ms(20_000), &codes);
    assert!(a.contains(&Action::Reply(487)), "{a:?}");
}

#[test]
fn parallel_first_2xx_wins_and_cancels_the_others() {
    let t = timers();
    let codes = Codes::default();
    let t0 = Instant::now();
    let (mut c, a) = Call::start(true, Fork::Parallel, 3, t0, &t);
    assert_eq!(
        &a[..],
        [
            Action::SendRequest(0),
            Action::SendRequest(1),
            Action::SendRequest(2)
        ]
    );
    c.on_response(0, 180, t0, &t, &codes);
    c.on_response(2, 180, t0, &t, &codes);
    let a = c.on_response(1, 200, t0 + ms(10), &t, &codes);
    assert_eq!(
        &a[..],
        [
            Action::ForwardResponse,
            Action::Confirmed,
            Action::SendCancel(0),
            Action::SendCancel(2)
        ]
    );
    // Parallel: a failure does not start new branches; 6xx cancels the rest.
    let (mut c, _) = Call::start(true, Fork::Parallel, 2, t0, &t);
    c.on_response(1, 180, t0, &t, &codes);
    let a = c.on_response(0, 603, t0, &t, &codes);
    assert!(a.contains(&Action::SendCancel(1)), "{a:?}");
}

#[test]
fn trying_only_when_nothing_went_upstream_within_200_ms() {
    let t = timers();
    let codes = Codes::default();
    let t0 = Instant::now();
    // A 180 within 200 ms: no 100 Trying of ours.
    let (mut c, _) = Call::start(true, Fork::Serial, 1, t0, &t);
    c.on_response(0, 180, t0 + ms(50), &t, &codes);
    let a = run(&mut c, t0, &t, ms(400), &codes);
    assert!(!a.contains(&Action::Trying), "{a:?}");
    // Silence: 100 Trying at 200 ms exactly once; non-INVITE never.
    let (mut c, _) = Call::start(true, Fork::Serial, 1, t0, &t);
    let a = run(&mut c, t0, &t, ms(1000), &codes);
    assert_eq!(
        a.iter().filter(|x| **x == Action::Trying).count(),
        1,
        "{a:?}"
    );
    let (mut c, _) = Call::start(false, Fork::Serial, 1, t0, &t);
    let a = run(&mut c, t0, &t, ms(1000), &codes);
    assert!(!a.contains(&Action::Trying), "{a:?}");
}
