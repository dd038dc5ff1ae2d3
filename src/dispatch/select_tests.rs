//! Table-driven tests of selection (algorithms, skip walk, failover list, `use_default`,
//! call load, branches, rendezvous failover) with injected time. Kept apart from `select.rs`
//! so both stay readable.

use std::time::{Duration, Instant};

use super::list::{LoadHooks, parse_list};
use super::params::{DispatchParams, FLAG_FAILOVER, FLAG_USER_ONLY, HashFailover};
use super::runtime::{LoadEvent, Target};
use super::select::{Algorithm, Key, ListKind, Mode, Request, SelectError, uri_hash};
use super::state::Flags;
use super::{Pick, SetId, Snapshot, ds_hash};

fn snap(text: &str, params: DispatchParams) -> Snapshot {
    let l = parse_list("t", text.as_bytes(), &params, &LoadHooks::default()).unwrap();
    Snapshot::build(&l.entries, params, 42)
}

fn fo() -> DispatchParams {
    DispatchParams {
        flags: FLAG_FAILOVER,
        ..Default::default()
    }
}

fn req(set: u32, alg: Algorithm, key: Key<'_>) -> Request<'_> {
    Request {
        set: SetId(set),
        alg,
        key,
        limit: 0,
        mode: Mode::DstUri,
        dst_already_set: false,
        now: Instant::now(),
    }
}

/// Host part of the selected URI (`sip:` stripped).
fn name(s: &Snapshot, p: Pick) -> String {
    let u = &s.destination(p).uri;
    let c = u.iter().position(|&b| b == b':').map_or(0, |c| c + 1);
    String::from_utf8_lossy(&u[c..]).into_owned()
}

fn pick(s: &Snapshot, r: &Request<'_>) -> String {
    let mut buf = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: super::DestIdx(0),
    }; 0];
    name(s, s.select(r, &mut buf).unwrap().pick)
}

fn list(s: &Snapshot, r: &Request<'_>) -> Vec<String> {
    let mut buf = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: super::DestIdx(0),
    }; 16];
    let sel = s.select(r, &mut buf).unwrap();
    buf[..sel.list_len].iter().map(|&p| name(s, p)).collect()
}

fn inactive(s: &Snapshot, set: u32, host: &str) {
    let uri = format!("sip:{host}");
    s.set_state(SetId(set), Target::Uri(uri.as_bytes()), Flags::INACTIVE)
        .unwrap();
}

const FIVE: &str = "1 sip:a\n1 sip:b\n1 sip:c\n1 sip:d\n1 sip:e\n"; // array [e,d,c,b,a]

#[test]
fn round_robin_resumes_after_the_used_index() {
    let s = snap(FIVE, fo());
    inactive(&s, 1, "c");
    let r = req(1, Algorithm::RoundRobin, Key::None);
    let seq: Vec<_> = (0..8).map(|_| pick(&s, &r)).collect();
    assert_eq!(seq, ["e", "d", "b", "a", "e", "d", "b", "a"]);
    // with use_default the default (a) is never chosen by round robin
    let s = snap(
        FIVE,
        DispatchParams {
            use_default: true,
            ..fo()
        },
    );
    let seq: Vec<_> = (0..8).map(|_| pick(&s, &r)).collect();
    assert_eq!(seq, ["e", "d", "c", "b", "e", "d", "c", "b"]);
    // alg 5 without credentials shares the cursor
    let s = snap(FIVE, fo());
    let r5 = req(1, Algorithm::AuthUser, Key::AuthUser(None));
    let empty = req(1, Algorithm::AuthUser, Key::AuthUser(Some(b"")));
    let seq = [pick(&s, &r), pick(&s, &r5), pick(&s, &empty), pick(&s, &r)];
    assert_eq!(seq, ["e", "d", "c", "b"]);
}

#[test]
fn failover_list_order() {
    // alg 8 picks index 0; mark to make the hash land on index 2: use alg 6 with value 2.
    let s = snap(FIVE, fo());
    inactive(&s, 1, "a"); // index 4
    let r = req(1, Algorithm::Random, Key::Random(2));
    assert_eq!(list(&s, &r), ["c", "b", "e", "d"]); // indices 2,3,0,1
    let r = Request { limit: 2, ..r };
    assert_eq!(list(&s, &r), ["c", "b"]);
    // failover off: nothing listed
    let s = snap(FIVE, DispatchParams::default());
    let mut buf = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: super::DestIdx(0),
    }; 8];
    let sel = s
        .select(&req(1, Algorithm::First, Key::None), &mut buf)
        .unwrap();
    assert_eq!((sel.list_len, sel.list_kind), (0, ListKind::None));
}

#[test]
fn use_default_rules() {
    let p = || DispatchParams {
        use_default: true,
        ..fo()
    };
    let four = "1 sip:a\n1 sip:b\n1 sip:c\n1 sip:d\n"; // array [d,c,b,a], default a
    let s = snap(four, p());
    let first = req(1, Algorithm::First, Key::None);
    assert_eq!(list(&s, &first), ["d", "c", "b", "a"]);
    for (limit, want) in [
        (1, vec!["d"]),
        (2, vec!["d", "c"]),
        (3, vec!["d", "c", "b"]),
        (4, vec!["d", "c", "b", "a"]),
    ] {
        assert_eq!(list(&s, &Request { limit, ..first }), want, "limit {limit}");
    }
    // hash modulo nr-1: value 3 -> index 0
    assert_eq!(pick(&s, &req(1, Algorithm::Random, Key::Random(3))), "d");
    // all others inactive -> default
    for h in ["b", "c", "d"] {
        inactive(&s, 1, h);
    }
    assert_eq!(list(&s, &first), ["a"]);
    // default inactive too -> failure
    inactive(&s, 1, "a");
    assert_eq!(
        s.select(&first, &mut []).unwrap_err(),
        SelectError::NoUsable(1)
    );
    // default inactive but others fine: still appended to the list
    let s = snap(four, p());
    inactive(&s, 1, "a");
    assert_eq!(list(&s, &first), ["d", "c", "b", "a"]);
    // nr == 1: the single destination is used normally
    let s = snap("1 sip:solo\n", p());
    assert_eq!(list(&s, &first), ["solo"]);
}

#[test]
fn skip_walk_and_states() {
    let s = snap(FIVE, fo());
    // TRYING and PROBING stay selectable; DISABLED is skipped
    s.set_state(
        SetId(1),
        Target::Uri(b"sip:e"),
        Flags::TRYING | Flags::PROBING,
    )
    .unwrap();
    assert_eq!(pick(&s, &req(1, Algorithm::First, Key::None)), "e");
    s.set_state(SetId(1), Target::Uri(b"SIP:E"), Flags::DISABLED)
        .unwrap();
    assert_eq!(pick(&s, &req(1, Algorithm::First, Key::None)), "d");
    // inactive skip is "next index", never a re-hash: 4 -> wraps to 0 (e disabled) -> 1
    inactive(&s, 1, "a");
    assert_eq!(pick(&s, &req(1, Algorithm::Random, Key::Random(4))), "d");
    s.set_state(SetId(1), Target::All, Flags::INACTIVE).unwrap();
    let e = s.select(&req(1, Algorithm::CallId, Key::CallId(b"x")), &mut []);
    assert_eq!(e.unwrap_err(), SelectError::NoUsable(1));
    assert_eq!(
        s.select(&req(9, Algorithm::First, Key::None), &mut [])
            .unwrap_err(),
        SelectError::NoSet(9)
    );
    let empty = snap("", fo());
    assert_eq!(
        empty
            .select(&req(1, Algorithm::First, Key::None), &mut [])
            .unwrap_err(),
        SelectError::NoSets
    );
}

#[test]
fn hash_keys() {
    let s = snap(FIVE, fo());
    // Call-ID is trimmed
    let cid = b"a84b4c76e66710@pc33.atlanta.com";
    let want = (ds_hash(Some(cid), None) % 5) as usize;
    let p = s
        .select(
            &req(
                1,
                Algorithm::CallId,
                Key::CallId(b"  a84b4c76e66710@pc33.atlanta.com \t"),
            ),
            &mut [],
        )
        .unwrap();
    assert_eq!(p.pick.idx.0 as usize, want);
    // URI port rule: explicit and != default -> appended; equal to default -> omitted
    let h =
        |port: Option<(&[u8], u16)>, def| uri_hash(Some(b"bob"), b"biloxi.com", port, def, false);
    assert_eq!(h(Some((b"5070", 5070)), 5060), 1220057865);
    assert_eq!(
        h(Some((b"5060", 5060)), 5060),
        ds_hash(Some(b"bob"), Some(b"biloxi.com"))
    );
    assert_eq!(h(Some((b"05060", 5060)), 5060), h(None, 5060));
    assert_eq!(h(Some((b"5061", 5061)), 5061), h(None, 5061));
    assert_eq!(
        h(Some((b"05070", 5070)), 5060),
        ds_hash(Some(b"bob"), Some(b"biloxi.com:05070"))
    );
    // no user -> only the host; user-only flag -> only the user; user-only without user -> 1
    assert_eq!(
        uri_hash(None, b"h", None, 5060, false),
        ds_hash(Some(b"h"), None)
    );
    assert_eq!(uri_hash(Some(b"alice"), b"h", None, 5060, true), 1834153949);
    assert_eq!(uri_hash(None, b"h", None, 5060, true), 1);
    let s1 = snap(
        FIVE,
        DispatchParams {
            flags: FLAG_FAILOVER | FLAG_USER_ONLY,
            ..Default::default()
        },
    );
    let k = Key::Uri {
        user: Some(b"alice"),
        host: b"x",
        port: None,
        default_port: 5060,
    };
    assert_eq!(
        s1.select(&req(1, Algorithm::From, k), &mut [])
            .unwrap()
            .pick
            .idx
            .0,
        1834153949 % 5
    );
    // key mismatch is a typed error
    let e = s
        .select(&req(1, Algorithm::To, Key::CallId(b"x")), &mut [])
        .unwrap_err();
    assert!(matches!(e, SelectError::KeyMismatch { alg: 2, .. }));
}

#[test]
fn auth_user_extraction() {
    let s = snap(FIVE, fo());
    for (given, hashed) in [
        ("sip:bob@x", "bob"),
        ("alice@realm", "alice"),
        ("ab", "ab"),
        (" carol ", "carol"),
        ("a:b", "a:b"),
    ] {
        let p = s
            .select(
                &req(
                    1,
                    Algorithm::AuthUser,
                    Key::AuthUser(Some(given.as_bytes())),
                ),
                &mut [],
            )
            .unwrap();
        assert_eq!(
            p.pick.idx.0,
            ds_hash(Some(hashed.as_bytes()), None) % 5,
            "{given}"
        );
    }
}

#[test]
fn template_alg_7() {
    let s = snap(FIVE, fo());
    let p = s
        .select(
            &req(1, Algorithm::Template, Key::Template(b"<null>")),
            &mut [],
        )
        .unwrap();
    assert_eq!(p.pick.idx.0, 1005418900 % 5); // "<null>" is hashed, not a failure
    assert_eq!(name(&s, p.pick), "e");
    for empty in [&b""[..], b"   ", b"\t\r\n"] {
        let e = s.select(&req(1, Algorithm::Template, Key::Template(empty)), &mut []);
        assert_eq!(e.unwrap_err(), SelectError::EmptyTemplate);
    }
}

#[test]
fn unknown_algorithm_and_force_dst() {
    let s = snap(FIVE, fo());
    let sel = s
        .select(&req(1, Algorithm::from_code(42), Key::None), &mut [])
        .unwrap();
    assert!(sel.unknown_algorithm);
    assert_eq!(name(&s, sel.pick), "e"); // "first" = array index 0 = last file line
    let r = Request {
        dst_already_set: true,
        ..req(1, Algorithm::First, Key::None)
    };
    assert!(s.select(&r, &mut []).is_ok()); // force_dst=1 by default
    let s = snap(
        FIVE,
        DispatchParams {
            force_dst: false,
            ..fo()
        },
    );
    assert_eq!(
        s.select(&r, &mut []).unwrap_err(),
        SelectError::DstAlreadySet
    );
    let r = Request {
        mode: Mode::XavpOnly,
        ..r
    };
    assert!(s.select(&r, &mut []).is_ok());
}

fn per_100(s: &Snapshot, alg: Algorithm, nr: usize) -> Vec<usize> {
    let mut c = vec![0; nr];
    for _ in 0..100 {
        c[s.select(&req(1, alg, Key::None), &mut [])
            .unwrap()
            .pick
            .idx
            .0 as usize] += 1;
    }
    c
}

#[test]
fn weight_alg_9_per_100() {
    let text = "1 sip:a 0 0 weight=10\n1 sip:b 0 0 weight=20\n1 sip:c 0 0 weight=30\n";
    let s = snap(text, fo());
    assert_eq!(per_100(&s, Algorithm::Weight, 3), [30, 20, 50]); // [c,b,a], remainder to a
    // states ignored by the table: b's slots fall through to the next usable index (a)
    inactive(&s, 1, "b");
    assert_eq!(per_100(&s, Algorithm::Weight, 3), [30, 0, 70]);
}

#[test]
fn relative_weight_alg_11_distribution() {
    let text = "1 sip:a 0 0 rweight=1\n1 sip:b 0 0 rweight=2\n1 sip:c 0 0 rweight=1\n";
    let s = snap(text, fo());
    assert_eq!(per_100(&s, Algorithm::RelativeWeight, 3), [25, 50, 25]);
    // the third destination in array order fails (mark through the thresholds) -> 33/67/0
    let e = s.update_state(SetId(1), b"sip:a", Flags::TRYING).unwrap();
    assert_eq!(e, Some(super::Event::DstDown));
    assert_eq!(per_100(&s, Algorithm::RelativeWeight, 3), [33, 67, 0]);
    // back up -> 25/50/25 again
    s.update_state(SetId(1), b"sip:a", 0).unwrap();
    assert_eq!(per_100(&s, Algorithm::RelativeWeight, 3), [25, 50, 25]);
}

#[test]
fn call_load_alg_10() {
    let p = DispatchParams {
        ds_hash_size: 4,
        ds_hash_expire: Duration::from_secs(60),
        ds_hash_initexpire: Duration::from_secs(10),
        ..fo()
    };
    let text = "1 sip:a 0 0 duid=a;maxload=2\n1 sip:b 0 0 duid=b;maxload=1\n1 sip:c 0 0 duid=c;maxload=0\n";
    let s = snap(text, p); // array [c(max0), b(max1), a(max2)]
    let t0 = Instant::now();
    let ids: Vec<String> = (0..6).map(|i| format!("call-{i}")).collect();
    let mut seq = Vec::new();
    for id in &ids {
        let r = Request {
            now: t0,
            ..req(
                1,
                Algorithm::CallLoad,
                Key::CallLoad {
                    call_id: id.as_bytes(),
                    invite: true,
                },
            )
        };
        let sel = s
            .select(
                &r,
                &mut [Pick {
                    set: SetId(0),
                    set_pos: 0,
                    idx: super::DestIdx(0),
                }; 4],
            )
            .unwrap();
        assert!(sel.load_added);
        assert_eq!(sel.effective_alg, Algorithm::CallLoad);
        seq.push(name(&s, sel.pick));
    }
    assert_eq!(seq, ["c", "b", "a", "c", "a", "c"]);
    let loads = |s: &Snapshot| {
        s.set(SetId(1))
            .unwrap()
            .destinations()
            .iter()
            .map(|d| d.dload())
            .collect::<Vec<_>>()
    };
    assert_eq!(loads(&s), [3, 1, 2]);
    // retransmission: same least-loaded choice, no load, treated as alg 0, list unfiltered
    let r = Request {
        now: t0,
        ..req(
            1,
            Algorithm::CallLoad,
            Key::CallLoad {
                call_id: b"call-0",
                invite: true,
            },
        )
    };
    let mut buf = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: super::DestIdx(0),
    }; 4];
    let sel = s.select(&r, &mut buf).unwrap();
    assert!(!sel.load_added);
    assert_eq!(sel.effective_alg, Algorithm::CallId);
    assert_eq!(sel.list_len, 3);
    assert_eq!(loads(&s), [3, 1, 2]);
    // OPTIONS: first entry, no load
    let r = req(
        1,
        Algorithm::CallLoad,
        Key::CallLoad {
            call_id: b"opt",
            invite: false,
        },
    );
    assert_eq!(name(&s, s.select(&r, &mut []).unwrap().pick), "c");
    // BYE ends call-1 (b), a 2xx confirms call-0, >=300 unsets call-2
    assert!(s.load_update(b"call-1", LoadEvent::ByeOrCancel));
    assert!(s.load_update(b"call-0", LoadEvent::InviteConfirmed));
    assert!(s.load_unset(b"call-2"));
    assert!(!s.load_unset(b"call-2"));
    assert_eq!(loads(&s), [3, 0, 1]);
    // ds_next_dst moves call-0's load from its destination to b, and back.
    let pick = |name_: &str| {
        let set = &s.sets()[0];
        let i = set
            .destinations()
            .iter()
            .position(|d| d.uri.ends_with(name_.as_bytes()))
            .unwrap();
        Pick {
            set: SetId(1),
            set_pos: 0,
            idx: crate::dispatch::DestIdx(i as u32),
        }
    };
    let before = loads(&s);
    assert!(s.load_move(b"call-0", pick("b")));
    let after = loads(&s);
    assert_eq!(
        after.iter().sum::<u32>(),
        before.iter().sum::<u32>(),
        "moved, not added"
    );
    assert_eq!(after[1], before[1] + 1, "b carries it now");
    assert!(!s.load_move(b"no-such-call", pick("b")));
    // Moving to the destination it counts for changes nothing; moving back restores.
    assert!(s.load_move(b"call-0", pick("b")));
    assert_eq!(loads(&s), after);
    let from = (0..3)
        .find(|&i| after[i] + 1 == before[i])
        .expect("one lost the call");
    let back = ["c", "b", "a"][from];
    assert!(s.load_move(b"call-0", pick(back)));
    assert_eq!(loads(&s), before);
    // at 11 s the unconfirmed calls expire (3, 4, 5), call-0 stays until 60 s
    assert_eq!(s.expire_calls(t0 + Duration::from_secs(11)), 3);
    assert_eq!(loads(&s), [1, 0, 0]);
    assert_eq!(s.expire_calls(t0 + Duration::from_secs(61)), 1);
    assert_eq!(loads(&s), [0, 0, 0]);
    // failover list for alg 10 skips destinations at maxload
    let s = snap(
        text,
        DispatchParams {
            ds_hash_size: 4,
            ..fo()
        },
    );
    s.set(SetId(1)).unwrap().destinations()[1]
        .rt
        .dload
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let r = req(
        1,
        Algorithm::CallLoad,
        Key::CallLoad {
            call_id: b"n",
            invite: true,
        },
    );
    assert_eq!(list(&s, &r), ["c", "a"]);
    // a listed destination without duid fails the selection, and nothing stays counted
    let s = snap(
        "1 sip:a\n1 sip:b 0 0 duid=b\n",
        DispatchParams {
            ds_hash_size: 4,
            ..fo()
        },
    );
    let e = s.select(&r, &mut buf).unwrap_err();
    assert!(matches!(e, SelectError::MissingDuid { .. }));
    assert!(s.calls().unwrap().is_empty());
}

#[test]
fn parallel_alg_12_branches() {
    let s = snap("1 sip:a\n1 SIP:b\n1 sips:c\n1 sip:d\n", fo()); // [d,c,b,a]
    let mut buf = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: super::DestIdx(0),
    }; 8];
    let run = |s: &Snapshot, mode, buf: &mut [Pick]| {
        let sel = s
            .select(
                &Request {
                    mode,
                    ..req(1, Algorithm::Parallel, Key::None)
                },
                buf,
            )
            .unwrap();
        assert_eq!(sel.list_kind, ListKind::Branches);
        let mut v = vec![name(s, sel.pick)];
        v.extend(buf[..sel.list_len].iter().map(|&p| name(s, p)));
        v
    };
    assert_eq!(run(&s, Mode::DstUri, &mut buf), ["d", "c", "b", "a"]);
    // inactive destinations still get a branch; nothing before the first usable one
    inactive(&s, 1, "d");
    s.set_state(SetId(1), Target::Uri(b"sip:a"), Flags::DISABLED)
        .unwrap();
    assert_eq!(run(&s, Mode::DstUri, &mut buf), ["c", "b", "a"]);
    // R-URI mode with a user: upper-case `SIP:` is skipped, and so is `sip:a` (< 6 bytes)
    assert_eq!(
        run(
            &s,
            Mode::Domain {
                ruri_has_user: true
            },
            &mut buf
        ),
        ["c"]
    );
    assert_eq!(
        run(
            &s,
            Mode::Domain {
                ruri_has_user: false
            },
            &mut buf
        ),
        ["c", "b", "a"]
    );
    // XAVP-only mode lists the first one too
    assert_eq!(run(&s, Mode::XavpOnly, &mut buf), ["c", "c", "b", "a"]);
}

#[test]
fn latency_alg_13_observed() {
    let mut text = String::new();
    for (i, l) in [21, 91, 61, 19, 32, 0, 201].iter().enumerate() {
        text += &format!("1 sip:g{} 0 30 latency={l}\n", i + 1);
    }
    let s = snap(&text, fo());
    let r = req(1, Algorithm::Latency, Key::None);
    assert_eq!(list(&s, &r), ["g6", "g4", "g1", "g5", "g3", "g2", "g7"]);
    let seq: Vec<_> = (0..3).map(|_| pick(&s, &r)).collect();
    assert_eq!(seq, ["g4", "g1", "g6"]);
    let rp: Vec<i32> = s
        .set(SetId(1))
        .unwrap()
        .destinations()
        .iter()
        .map(|d| d.rt.rpriority.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert_eq!(rp, [24, 30, 29, 30, 28, 27, 30]);
}

#[test]
fn rendezvous_spreads_a_dead_share_evenly() {
    let n = 10;
    let text: String = (0..n).map(|i| format!("1 sip:d{i}\n")).collect();
    let mut per_mode = Vec::new();
    for mode in [HashFailover::NextIndex, HashFailover::Rendezvous] {
        let s = snap(
            &text,
            DispatchParams {
                hash_failover: mode,
                ..fo()
            },
        );
        inactive(&s, 1, "d5"); // array index 4
        let mut c = vec![0usize; n];
        let calls = 20_000;
        for k in 0..calls {
            let id = format!("{k}@host");
            let p = s
                .select(
                    &req(1, Algorithm::CallId, Key::CallId(id.as_bytes())),
                    &mut [],
                )
                .unwrap();
            c[p.pick.idx.0 as usize] += 1;
        }
        // with nothing dead both modes agree
        per_mode.push(c);
    }
    let (next, rv) = (&per_mode[0], &per_mode[1]);
    let fair = 20_000 / 9;
    // Kamailio: index 5 (the next one) gets about double
    assert!(next[5] > fair * 3 / 2, "{next:?}");
    // rendezvous: every live destination within 12 % of an even ninth, the dead one gets none
    assert_eq!(rv[4], 0);
    for (i, &v) in rv.iter().enumerate() {
        if i != 4 {
            assert!(v.abs_diff(fair) < fair * 12 / 100, "{i}: {rv:?}");
        }
    }
    // keys of live destinations never move
    let a = snap(
        &text,
        DispatchParams {
            hash_failover: HashFailover::Rendezvous,
            ..fo()
        },
    );
    for k in 0..500 {
        let id = format!("{k}@host");
        let before = a
            .select(
                &req(1, Algorithm::CallId, Key::CallId(id.as_bytes())),
                &mut [],
            )
            .unwrap()
            .pick;
        if before.idx.0 != 4 {
            inactive(&a, 1, "d5");
            let after = a
                .select(
                    &req(1, Algorithm::CallId, Key::CallId(id.as_bytes())),
                    &mut [],
                )
                .unwrap()
                .pick;
            assert_eq!(before, after);
            a.set_state(SetId(1), Target::Uri(b"sip:d5"), 0).unwrap();
        }
    }
}

#[test]
fn select_routes_rules() {
    let s = snap("1 sip:a\n1 sip:b\n2 sip:x\n2 sip:y\n", fo());
    let rules = super::parse_rules("9=0;1=8;2=8").unwrap();
    let mut buf = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: super::DestIdx(0),
    }; 8];
    let r = s
        .select_routes(
            &rules,
            Mode::DstUri,
            0,
            Instant::now(),
            |_| Key::None,
            &mut buf,
        )
        .unwrap();
    assert_eq!(name(&s, r.pick), "b");
    let names: Vec<_> = buf[..r.list_len].iter().map(|&p| name(&s, p)).collect();
    assert_eq!(names, ["b", "a", "y", "x"]);
    let r = s
        .select_routes(
            &rules,
            Mode::DstUri,
            3,
            Instant::now(),
            |_| Key::None,
            &mut buf,
        )
        .unwrap();
    assert_eq!(r.list_len, 3);
    let bad = super::parse_rules("9=0").unwrap();
    let e = s.select_routes(
        &bad,
        Mode::DstUri,
        0,
        Instant::now(),
        |_| Key::None,
        &mut buf,
    );
    assert_eq!(e.unwrap_err(), SelectError::NoSet(9));
}

#[test]
fn mark_dst_goes_through_thresholds() {
    let p = DispatchParams {
        ds_probing_threshold: 2,
        ..fo()
    };
    let s = snap("1 sip:a\n1 sip:a\n", p);
    let sel = s
        .select(&req(1, Algorithm::First, Key::None), &mut [])
        .unwrap();
    assert_eq!(s.mark_dst(sel.pick, Some(b"t")).unwrap(), None);
    assert_eq!(&s.destination(sel.pick).flags().letters(), b"TX");
    assert_eq!(
        s.mark_dst(sel.pick, Some(b"t")).unwrap(),
        Some(super::Event::DstDown)
    );
    assert_eq!(&s.destination(sel.pick).flags().letters(), b"IX");
    // duplicated URI: only the first copy is ever updated
    let second = Pick {
        idx: super::DestIdx(1),
        ..sel.pick
    };
    s.mark_dst(second, Some(b"d")).unwrap();
    assert_eq!(s.destination(second).flags(), Flags(0));
    assert!(s.mark_dst(sel.pick, Some(b"q")).is_err());
    let off = snap("1 sip:a\n", DispatchParams::default());
    assert!(off.mark_dst(sel.pick, None).is_err());
}
