//! Socket-free golden tests: datagrams in, transmits out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sipdisp_parser::{Headers, parse_datagram};

use super::*;
use crate::dispatch::{DispatchParams, LoadHooks, SetId, Snapshot, parse_rules};
use crate::netio::{Flow, OutboxError, SocketIdx};

#[derive(Default)]
struct Collect {
    sent: Vec<(usize, SocketAddr, Vec<u8>)>,
    pieces: usize,
}

impl Sink for Collect {
    fn send(&mut self, flow: &Flow, pieces: &[&[u8]]) -> Result<(), OutboxError> {
        self.pieces += pieces.len();
        self.sent
            .push((usize::from(flow.local.0), flow.remote, pieces.concat()));
        Ok(())
    }
}

const LB: &str = "127.0.0.1:5060";
const CLIENT: &str = "127.0.0.1:40000";

fn plane(list: &str, params: DispatchParams) -> Arc<Plane> {
    let loaded =
        crate::dispatch::parse_list("test.list", list.as_bytes(), &params, &LoadHooks::default())
            .unwrap();
    Arc::new(Plane::new(
        Snapshot::build(&loaded.entries, params, 7),
        literal_addr,
    ))
}

fn config(routes: RouteTable) -> Arc<ProxyConfig> {
    Arc::new(ProxyConfig {
        sockets: vec![
            Listener::new(LB.parse().unwrap()),
            Listener::new("[::1]:5060".parse().unwrap()),
        ],
        record_route: false,
        max_forwards: 70,
        overload: crate::proxy::Overload::default(),
        routes,
        hash_template: Template::parse("$fU").ok(),
        pike: None,
        allowed_next_hops: Vec::new(),
        via_key: crate::proxy::branch::ViaKey([7; 16]),
        timers: Default::default(),
        call_check_interval: None,
    })
}

fn select(rules: &str, target: Target) -> RouteTable {
    RouteTable {
        routes: vec![Route {
            name: "r".into(),
            conditions: vec![],
            action: Action::Select {
                rules: parse_rules(rules).unwrap(),
                target,
                limit: 0,
            },
            failover: None,
        }],
    }
}

fn invite(call_id: &str, branch: &str, extra: &str) -> String {
    format!(
        "INVITE sip:bob@biloxi.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5062;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example>;tag=f1\r\n\
To: <sip:bob@biloxi.example>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
{extra}Content-Length: 4\r\n\r\nv=0\n"
    )
}

fn run(w: &mut Worker, p: &Arc<Plane>, msg: &str, sink: &mut Collect) -> Verdict {
    let pkt = Inbound {
        data: msg.as_bytes(),
        flow: Flow::udp(SocketIdx(0), CLIENT.parse().unwrap()),
    };
    w.handle(Instant::now(), p, &pkt, sink)
}

const LIST: &str = "1 sip:127.0.0.1:5070\n1 sip:127.0.0.1:5071\n1 sip:127.0.0.1:5072\n";

#[test]
fn invite_is_forwarded_with_via_received_rport_and_max_forwards() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=0", Target::Dst)), 1);
    let mut out = Collect::default();
    let v = run(&mut w, &p, &invite("abc@x", "z9hG4bK-1", ""), &mut out);
    assert!(matches!(v, Verdict::Forwarded(_)), "{v:?}");
    assert_eq!(out.sent.len(), 1);
    let (local, to, bytes) = &out.sent[0];
    assert_eq!(*local, 0);
    let mut h = Headers::new();
    let m = parse_datagram(bytes, &mut h).unwrap();
    m.validate().unwrap();
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].host, b"127.0.0.1");
    assert_eq!(vias[0].port, Some(5060));
    assert!(vias[0].branch.unwrap().starts_with(branch::BRANCH_PREFIX));
    assert_eq!(vias[1].received, Some(&b"127.0.0.1"[..]));
    assert_eq!(vias[1].rport, Some(Some(40000)));
    assert_eq!(m.max_forwards(), Some(69));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(
        m.request().unwrap().uri_bytes,
        b"sip:bob@biloxi.example",
        "dst mode keeps the R-URI"
    );
    // Alg 0 over three destinations: index = H(Call-ID) mod 3 in Kamailio's array order
    // (reverse file order): 5072, 5071, 5070.
    let h0 = crate::dispatch::ds_hash(Some(b"abc@x"), None);
    let expect_port = [5072, 5071, 5070][(h0 % 3) as usize];
    assert_eq!(to.port(), expect_port);
    assert!(out.pieces >= 3, "sent as slices, not one copy");
}

#[test]
fn same_call_id_same_backend_for_invite_ack_bye() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=0", Target::Dst)), 1);
    let mut out = Collect::default();
    for i in 0..30 {
        let cid = format!("call-{i}@x");
        let inv = invite(&cid, &format!("z9hG4bK-{i}"), "");
        let ack = inv
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "<sip:bob@biloxi.example>\r\n",
                "<sip:bob@biloxi.example>;tag=t\r\n",
            )
            .replace(
                &format!("branch=z9hG4bK-{i}"),
                &format!("branch=z9hG4bK-a{i}"),
            );
        let bye = inv
            .replace("INVITE sip", "BYE sip")
            .replace("1 INVITE", "2 BYE")
            .replace(
                "<sip:bob@biloxi.example>\r\n",
                "<sip:bob@biloxi.example>;tag=t\r\n",
            )
            .replace(
                &format!("branch=z9hG4bK-{i}"),
                &format!("branch=z9hG4bK-b{i}"),
            );
        for m in [&inv, &ack, &bye] {
            assert!(matches!(
                run(&mut w, &p, m, &mut out),
                Verdict::Forwarded(_)
            ));
        }
        let n = out.sent.len();
        assert_eq!(out.sent[n - 3].1, out.sent[n - 2].1);
        assert_eq!(out.sent[n - 3].1, out.sent[n - 1].1);
    }
}

#[test]
fn round_robin_cancel_follows_its_invite() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=4", Target::Dst)), 1);
    let mut out = Collect::default();
    let mut ports = Vec::new();
    for i in 0..6 {
        let inv = invite(&format!("rr-{i}"), &format!("z9hG4bK-rr{i}"), "");
        run(&mut w, &p, &inv, &mut out);
        let inv_to = out.sent.last().unwrap().1;
        let cancel = inv
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL")
            .replace(
                "Content-Length: 4\r\n\r\nv=0\n",
                "Content-Length: 0\r\n\r\n",
            );
        assert!(matches!(
            run(&mut w, &p, &cancel, &mut out),
            Verdict::Forwarded(_)
        ));
        let cancel_sent = out.sent.last().unwrap();
        assert_eq!(cancel_sent.1, inv_to, "CANCEL goes where its INVITE went");
        let mut h = Headers::new();
        let c = parse_datagram(&cancel_sent.2, &mut h).unwrap();
        let mut h2 = Headers::new();
        let inv_sent = &out.sent[out.sent.len() - 2].2;
        let iv = parse_datagram(inv_sent, &mut h2).unwrap();
        assert_eq!(
            c.top_via().unwrap().branch,
            iv.top_via().unwrap().branch,
            "same branch"
        );
        ports.push(inv_to.port());
    }
    assert_eq!(
        ports,
        [5072, 5071, 5070, 5072, 5071, 5070],
        "Kamailio RR order (array = reverse file order)"
    );
}

#[test]
fn ruri_mode_rewrites_host() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=8", Target::Ruri)), 1);
    let mut out = Collect::default();
    run(&mut w, &p, &invite("x", "z9hG4bK-r", ""), &mut out);
    let mut h = Headers::new();
    let m = parse_datagram(&out.sent[0].2, &mut h).unwrap();
    assert_eq!(m.request().unwrap().uri_bytes, b"sip:bob@127.0.0.1:5072");
}

#[test]
fn stateless_replies() {
    let p = plane(LIST, DispatchParams::default());
    let cfg = config(select("1=0", Target::Dst));
    let mut w = Worker::new(cfg.clone(), 1);
    let mut out = Collect::default();
    let cases = [
        (
            invite("mf", "z9hG4bK-m", "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
            483,
        ),
        (
            invite("u", "z9hG4bK-u", "").replace(
                "INVITE sip:bob@biloxi.example",
                "INVITE nobodyKnowsThisScheme:opaque",
            ),
            416,
        ),
        (
            invite("pr", "z9hG4bK-p", "Proxy-Require: foo, bar\r\n"),
            420,
        ),
        (
            invite(
                "lp",
                "z9hG4bK-l",
                "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sd-0000000000000000\r\n",
            ),
            482,
        ),
    ];
    for (msg, code) in cases {
        out.sent.clear();
        assert_eq!(
            run(&mut w, &p, &msg, &mut out),
            Verdict::Replied(code),
            "{msg}"
        );
        let (_, to, bytes) = &out.sent[0];
        assert_eq!(*to, CLIENT.parse().unwrap(), "rport: back to the source");
        let mut h = Headers::new();
        let r = parse_datagram(bytes, &mut h).unwrap();
        assert_eq!(r.response().unwrap().code, code);
        if code == 420 {
            assert_eq!(r.header(b"Unsupported"), Some(&b"foo, bar"[..]));
        }
    }
    // All destinations inactive: 503, and its ACK is absorbed.
    let p = plane(
        "1 sip:127.0.0.1:5070 1\n1 sip:127.0.0.1:5071 1\n",
        DispatchParams::default(),
    );
    out.sent.clear();
    let inv = invite("dead", "z9hG4bK-d", "");
    assert_eq!(run(&mut w, &p, &inv, &mut out), Verdict::Replied(503));
    let mut h = Headers::new();
    let r = parse_datagram(&out.sent[0].2, &mut h).unwrap();
    let tag = std::str::from_utf8(r.to().unwrap().tag.unwrap())
        .unwrap()
        .to_owned();
    let ack = inv
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace(
            "<sip:bob@biloxi.example>\r\n",
            &format!("<sip:bob@biloxi.example>;tag={tag}\r\n"),
        );
    assert_eq!(run(&mut w, &p, &ack, &mut out), Verdict::Absorbed);
    assert_eq!(w.counters().replied[5], 1);
    assert_eq!(w.counters().replied[4], 4);
    assert_eq!(w.counters().absorbed, 1);
}

#[test]
fn responses_are_relayed_to_the_next_via() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=0", Target::Dst)), 1);
    let mut out = Collect::default();
    run(&mut w, &p, &invite("resp", "z9hG4bK-x", ""), &mut out);
    let (_, backend, fwd) = out.sent[0].clone();
    let mut h = Headers::new();
    let f = parse_datagram(&fwd, &mut h).unwrap();
    // The backend answers: copy Vias, From, To, Call-ID, CSeq.
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for hd in f.headers() {
        let name = std::str::from_utf8(hd.name.get(&fwd)).unwrap();
        if ["Via", "From", "To", "Call-ID", "CSeq"].contains(&name) {
            resp.push_str(&format!(
                "{name}: {}\r\n",
                std::str::from_utf8(hd.value.get(&fwd)).unwrap()
            ));
        }
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    out.sent.clear();
    let pkt = Inbound {
        data: resp.as_bytes(),
        flow: Flow::udp(SocketIdx(0), backend),
    };
    assert_eq!(
        w.handle(Instant::now(), &p, &pkt, &mut out),
        Verdict::Relayed
    );
    let (_, to, bytes) = &out.sent[0];
    assert_eq!(
        *to,
        CLIENT.parse().unwrap(),
        "received + rport of the client's Via"
    );
    let mut h = Headers::new();
    let r = parse_datagram(bytes, &mut h).unwrap();
    assert_eq!(r.vias().count(), 1);
    assert_eq!(r.top_via().unwrap().host, b"192.0.2.1");
    // Not ours: dropped.
    let foreign = resp.replacen("127.0.0.1:5060", "127.0.0.9:5060", 1);
    let pkt = Inbound {
        data: foreign.as_bytes(),
        flow: Flow::udp(SocketIdx(0), backend),
    };
    assert_eq!(
        w.handle(Instant::now(), &p, &pkt, &mut out),
        Verdict::Dropped(DropReason::NotOurVia)
    );
}

#[test]
fn malformed_input_is_dropped_and_counted() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=0", Target::Dst)), 1);
    let mut out = Collect::default();
    let inv = invite("t", "z9hG4bK-t", "");
    let big = vec![b'A'; 65507];
    let bad: Vec<&[u8]> = vec![
        b"",
        b"\r\n\r\n",
        b"garbage",
        &inv.as_bytes()[..100],
        &big,
        b"INVITE sip:a SIP/2.0\r\n\r\n",
    ];
    for d in bad {
        let pkt = Inbound {
            data: d,
            flow: Flow::udp(SocketIdx(0), CLIENT.parse().unwrap()),
        };
        assert!(matches!(
            w.handle(Instant::now(), &p, &pkt, &mut out),
            Verdict::Dropped(_)
        ));
    }
    let wrong_cl = inv.replace("Content-Length: 4", "Content-Length: 40");
    assert!(matches!(
        run(&mut w, &p, &wrong_cl, &mut out),
        Verdict::Dropped(DropReason::Malformed(_))
    ));
    assert!(out.sent.is_empty());
    assert_eq!(w.counters().dropped.iter().sum::<u64>(), 7);
    // Still serving.
    assert!(matches!(
        run(&mut w, &p, &inv, &mut out),
        Verdict::Forwarded(_)
    ));
}

#[test]
fn loose_routing_and_record_route() {
    let p = plane(LIST, DispatchParams::default());
    let mut cfg = (*config(select("1=0", Target::Dst))).clone();
    cfg.record_route = true;
    let mut w = Worker::new(Arc::new(cfg), 1);
    let mut out = Collect::default();
    run(&mut w, &p, &invite("rr", "z9hG4bK-q", ""), &mut out);
    let mut h = Headers::new();
    let m = parse_datagram(&out.sent[0].2, &mut h).unwrap();
    let (rr, _) = m.first_record_route().unwrap().unwrap();
    assert_eq!(rr.uri.raw, b"sip:127.0.0.1:5060;lr");
    // An in-dialog BYE with our Route goes to the R-URI (the backend's Contact).
    let bye = "BYE sip:bob@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-bye\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@a>;tag=f1\r\nTo: <sip:bob@b>;tag=t1\r\nCall-ID: rr\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    out.sent.clear();
    assert_eq!(run(&mut w, &p, bye, &mut out), Verdict::Routed);
    assert_eq!(out.sent[0].1, "127.0.0.1:5071".parse().unwrap());
    let mut h = Headers::new();
    let b = parse_datagram(&out.sent[0].2, &mut h).unwrap();
    assert!(b.first_route().is_none(), "our Route is consumed");
}

#[test]
fn routes_match_in_order_and_reply_action() {
    let p = plane(
        "1 sip:127.0.0.1:5070\n2 sip:127.0.0.1:6000\n",
        DispatchParams::default(),
    );
    let routes = RouteTable {
        routes: vec![
            Route {
                name: "block".into(),
                conditions: vec![Condition::Header {
                    name: b"X-Block".as_slice().into(),
                    value: None,
                }],
                action: Action::Reply {
                    code: 403,
                    reason: "Forbidden".into(),
                },
                failover: None,
            },
            Route {
                name: "opt".into(),
                conditions: vec![Condition::Method(vec![b"OPTIONS".as_slice().into()])],
                action: Action::Select {
                    rules: parse_rules("2=0").unwrap(),
                    target: Target::Dst,
                    limit: 0,
                },
                failover: None,
            },
            Route {
                name: "from-gw".into(),
                conditions: vec![Condition::SourceInSet {
                    sets: SourceSets::Set(SetId(2)),
                    mode: 0,
                }],
                action: Action::Reply {
                    code: 404,
                    reason: "From Gateway".into(),
                },
                failover: None,
            },
            Route {
                name: "prefix".into(),
                conditions: vec![Condition::RuriUserPrefix(b"bob".as_slice().into())],
                action: Action::Select {
                    rules: parse_rules("1=0").unwrap(),
                    target: Target::Dst,
                    limit: 0,
                },
                failover: None,
            },
        ],
    };
    let mut w = Worker::new(config(routes), 1);
    let mut out = Collect::default();
    assert_eq!(
        run(
            &mut w,
            &p,
            &invite("a", "z9hG4bK-1", "X-Block: 1\r\n"),
            &mut out
        ),
        Verdict::Replied(403)
    );
    let opt = invite("b", "z9hG4bK-2", "")
        .replace("INVITE sip", "OPTIONS sip")
        .replace("1 INVITE", "1 OPTIONS");
    assert!(
        matches!(run(&mut w, &p, &opt, &mut out), Verdict::Forwarded(pk) if pk.set == SetId(2))
    );
    let inv_c = invite("c", "z9hG4bK-3", "");
    let pkt = Inbound {
        data: inv_c.as_bytes(),
        flow: Flow::udp(SocketIdx(0), "127.0.0.1:6000".parse().unwrap()),
    };
    assert_eq!(
        w.handle(Instant::now(), &p, &pkt, &mut out),
        Verdict::Replied(404)
    );
    assert!(
        matches!(run(&mut w, &p, &invite("d", "z9hG4bK-4", ""), &mut out), Verdict::Forwarded(pk) if pk.set == SetId(1))
    );
    let nobody = invite("e", "z9hG4bK-5", "")
        .replace("sip:bob@biloxi.example SIP", "sip:carol@biloxi.example SIP");
    assert_eq!(
        run(&mut w, &p, &nobody, &mut out),
        Verdict::Replied(404),
        "no matching route"
    );
    assert_eq!(w.counters().route_hits, vec![1, 1, 1, 1]);
}

#[test]
fn round_robin_in_dialog_requests_follow_the_remote_target() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=4", Target::Dst)), 1);
    let mut out = Collect::default();
    for i in 0..6 {
        let inv = invite(&format!("d-{i}"), &format!("z9hG4bK-d{i}"), "");
        run(&mut w, &p, &inv, &mut out);
        let backend = out.sent.last().unwrap().1;
        // ACK for 2xx and BYE: new transactions, To tag, R-URI = the backend's Contact.
        for (method, cseq) in [("ACK", "1 ACK"), ("BYE", "2 BYE")] {
            let m = inv
                .replace(
                    "INVITE sip:bob@biloxi.example",
                    &format!("{method} sip:bob@{backend}"),
                )
                .replace("1 INVITE", cseq)
                .replace(
                    "<sip:bob@biloxi.example>\r\n",
                    "<sip:bob@biloxi.example>;tag=uas\r\n",
                )
                .replace(
                    &format!("branch=z9hG4bK-d{i}"),
                    &format!("branch=z9hG4bK-d{i}{method}"),
                );
            assert_eq!(run(&mut w, &p, &m, &mut out), Verdict::Routed, "{method}");
            assert_eq!(
                out.sent.last().unwrap().1,
                backend,
                "{method} reaches the dialog's backend"
            );
        }
    }
}

/// Mutated messages (byte flips, cuts, duplicated lines) never panic the worker, whatever the
/// verdict; deterministic, bounded.
#[test]
fn mutated_messages_never_panic() {
    let p = plane(LIST, DispatchParams::default());
    let mut cfg = (*config(select("1=0;1=1;1=2;1=3;1=5;1=7", Target::Ruri))).clone();
    cfg.record_route = true;
    let mut w = Worker::new(Arc::new(cfg), 1);
    let mut out = Collect::default();
    let seeds = [
        invite("m1", "z9hG4bK-m1", "Route: <sip:127.0.0.1:5060;lr>, <sip:10.0.0.1;lr>\r\nProxy-Authorization: Digest username=\"u\"\r\n"),
        invite("m2", "z9hG4bK-m2", "").replace("<sip:bob@biloxi.example>\r\n", "<sip:bob@biloxi.example>;tag=x\r\n"),
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sd-0123456789abcdef\r\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-1;rport=5062;received=192.0.2.1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".to_owned(),
    ];
    let mut rng: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let alphabet = b" \t\r\n:;,<>@\"=0123456789abcdefz%[]?";
    for i in 0..20_000 {
        let mut m = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % m.len().max(1);
            match next() % 4 {
                0 => m[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => m.truncate(at),
                2 => m.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                _ => {
                    let end = (at + (next() as usize) % 40).min(m.len());
                    let piece = m[at..end].to_vec();
                    m.splice(at..at, piece);
                }
            }
            if m.is_empty() {
                break;
            }
        }
        let pkt = Inbound {
            data: &m,
            flow: Flow::udp(SocketIdx(0), CLIENT.parse().unwrap()),
        };
        let _ = w.handle(Instant::now(), &p, &pkt, &mut out);
        out.sent.clear();
    }
    assert!(w.counters().dropped.iter().sum::<u64>() > 0);
}

#[test]
fn socket_attributes_match_listen_addresses() {
    let listen: Vec<SocketAddr> = vec![
        "127.0.0.1:5060".parse().unwrap(),
        "[::]:5062".parse().unwrap(),
    ];
    for (attr, local) in [
        ("udp:127.0.0.1:5060", true),
        ("udp:127.0.0.1", true),
        ("udp:127.0.0.1:5061", false),
        ("udp:127.0.0.2:5060", false),
        ("udp:[::1]:5062", true),
        ("udp:[2001:db8::1]:5062", true),
        ("udp:[::1]:5060", false),
        ("tcp:127.0.0.1:5060", false),
        ("lb-public", false),
        ("udp:127.0.0.1:x", false),
        ("udp:", false),
    ] {
        assert_eq!(
            socket_attr_is_local(attr.as_bytes(), &listen),
            local,
            "{attr}"
        );
    }
}

#[test]
fn call_load_expiry_is_a_timer_driven_by_injected_time() {
    // Algorithm 10 counts the INVITE's call; nothing confirms it, so after
    // `ds_hash_initexpire` the worker's timer (every `ds_hash_check_interval`) removes it and
    // the destination's load returns to 0 — all through poll_timeout / handle_timeout.
    let params = DispatchParams {
        ds_hash_size: 2,
        ds_hash_initexpire: std::time::Duration::from_secs(5),
        ..DispatchParams::default()
    };
    let every = std::time::Duration::from_secs(30);
    let p = plane("1 sip:127.0.0.1:5070 0 0 duid=a;maxload=10\n", params);
    let mut cfg = (*config(select("1=10", Target::Dst))).clone();
    cfg.call_check_interval = Some(every);
    let mut w = Worker::new(Arc::new(cfg), 1);
    assert_eq!(w.poll_timeout(), None, "no timer before the first message");
    let t0 = Instant::now();
    let pkt = invite("load-1@x", "z9hG4bK-l1", "");
    let pkt = Inbound {
        data: pkt.as_bytes(),
        flow: Flow::udp(SocketIdx(0), CLIENT.parse().unwrap()),
    };
    let mut out = Collect::default();
    let v = w.handle(t0, &p, &pkt, &mut out);
    assert!(matches!(v, Verdict::Forwarded(_)), "{v:?}");
    let dload = |p: &Plane| p.snapshot.sets()[0].destinations()[0].dload();
    assert_eq!(dload(&p), 1);
    assert_eq!(w.poll_timeout(), Some(t0 + every));
    // Not yet due: nothing happens, the deadline stays.
    w.handle_timeout(t0 + std::time::Duration::from_secs(10), &p, &mut out);
    assert_eq!((dload(&p), w.poll_timeout()), (1, Some(t0 + every)));
    // Due: the unconfirmed call is past ds_hash_initexpire and goes; the timer re-arms.
    w.handle_timeout(t0 + every, &p, &mut out);
    assert_eq!(dload(&p), 0);
    assert_eq!(w.counters().calls_expired, 1);
    assert_eq!(w.poll_timeout(), Some(t0 + 2 * every));
    assert_eq!(out.sent.len(), 1, "the timer sent nothing");
}

#[test]
fn strict_routes_are_refused_and_unknown_next_hops_forbidden() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=0", Target::Dst)), 1);
    let mut out = Collect::default();
    let reply_of =
        |out: &Collect| String::from_utf8_lossy(&out.sent.last().unwrap().2).into_owned();
    // A strict router next (no lr), after ours or first.
    for route in [
        "Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5071>\r\n",
        "Route: <sip:127.0.0.1:5071>\r\n",
    ] {
        let v = run(&mut w, &p, &invite("sr", "z9hG4bK-sr", route), &mut out);
        assert_eq!(v, Verdict::Replied(400), "{route}");
        assert!(reply_of(&out).starts_with("SIP/2.0 400 Strict Routing Not Supported"));
    }
    // A loose Route to a destination is followed; to anything else, 403.
    let v = run(
        &mut w,
        &p,
        &invite("lr", "z9hG4bK-lr", "Route: <sip:127.0.0.1:5071;lr>\r\n"),
        &mut out,
    );
    assert_eq!(v, Verdict::Routed);
    let v = run(
        &mut w,
        &p,
        &invite("fb", "z9hG4bK-fb", "Route: <sip:192.0.2.99;lr>\r\n"),
        &mut out,
    );
    assert_eq!(v, Verdict::Replied(403));
    assert_eq!(w.counters().forbidden_next_hop, 1);
}

#[test]
fn a_request_with_100_vias_gets_a_precise_400() {
    // RFC 4475 §3.1.1.x style: valid, but more header lines than the scanner indexes.
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=0", Target::Dst)), 1);
    let mut out = Collect::default();
    let vias: String = (0..100)
        .map(|i| {
            format!(
                "Via: SIP/2.0/UDP 192.0.2.{}:5060;branch=z9hG4bK-v{i}\r\n",
                i % 250 + 1
            )
        })
        .collect();
    let m = invite("many", "z9hG4bK-many", "").replacen(
        "Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-many;rport\r\n",
        &format!("Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-many;rport\r\n{vias}"),
        1,
    );
    assert_eq!(run(&mut w, &p, &m, &mut out), Verdict::Replied(400));
    let r = String::from_utf8_lossy(&out.sent[0].2).into_owned();
    assert!(
        r.starts_with("SIP/2.0 400 Too Many Header Lines\r\n"),
        "{r}"
    );
    assert_eq!(r.matches("\r\nVia: ").count(), 101, "every Via copied");
    assert!(r.contains("To: <sip:bob@biloxi.example>;tag=sdlb"));
    assert!(r.contains("Call-ID: many\r\n") && r.contains("CSeq: 1 INVITE\r\n"));
    assert_eq!(
        out.sent[0].1,
        CLIENT.parse::<SocketAddr>().unwrap(),
        "to the source"
    );
    assert_eq!(w.counters().too_many_headers, 1);
    // A response that large is dropped (nothing to answer).
    let resp = format!(
        "SIP/2.0 200 OK\r\n{vias}From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
    );
    assert!(matches!(
        run(&mut w, &p, &resp, &mut out),
        Verdict::Dropped(_)
    ));
}

#[test]
fn behind_refuses_a_share_of_new_requests_with_retry_after_and_nothing_else() {
    let p = plane(LIST, DispatchParams::default());
    let mut w = Worker::new(config(select("1=4", Target::Dst)), 1);
    let mut out = Collect::default();
    // Not behind: every new request is forwarded.
    for i in 0..4 {
        let v = run(
            &mut w,
            &p,
            &invite(&format!("a{i}"), &format!("z9hG4bK-a{i}"), ""),
            &mut out,
        );
        assert!(matches!(v, Verdict::Forwarded(_)), "{v:?}");
    }
    // Behind, 50 %: every other new INVITE gets 503 + Retry-After, evenly.
    w.begin(true);
    out.sent.clear();
    let mut verdicts = Vec::new();
    for i in 0..10 {
        verdicts.push(run(
            &mut w,
            &p,
            &invite(&format!("b{i}"), &format!("z9hG4bK-b{i}"), ""),
            &mut out,
        ));
    }
    let refused = verdicts
        .iter()
        .filter(|v| **v == Verdict::Replied(503))
        .count();
    let forwarded = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Forwarded(_)))
        .count();
    assert_eq!((refused, forwarded), (5, 5), "{verdicts:?}");
    assert!(
        verdicts.windows(2).all(|p| p[0] != p[1]),
        "alternating, not in bursts: {verdicts:?}"
    );
    assert_eq!(w.counters().overload_refused, 5);
    let mut h = Headers::new();
    let replies: Vec<_> = out
        .sent
        .iter()
        .filter(|(_, to, _)| *to == CLIENT.parse::<SocketAddr>().unwrap())
        .collect();
    assert_eq!(replies.len(), 5);
    for (_, _, bytes) in &replies {
        let m = parse_datagram(bytes, &mut h).unwrap();
        assert_eq!(m.response().unwrap().code, 503);
        assert!(
            std::str::from_utf8(bytes)
                .unwrap()
                .contains("\r\nRetry-After: 5\r\n"),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Still behind: a retransmission of a forwarded INVITE follows it, in-dialog requests,
    // ACK and CANCEL are never refused, whatever the credit.
    let fwd_branch = (0..10)
        .find(|i| matches!(verdicts[*i], Verdict::Forwarded(_)))
        .unwrap();
    for _ in 0..3 {
        let again = invite(
            &format!("b{fwd_branch}"),
            &format!("z9hG4bK-b{fwd_branch}"),
            "",
        );
        assert!(matches!(
            run(&mut w, &p, &again, &mut out),
            Verdict::Forwarded(_)
        ));
    }
    let bye = "BYE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-bye;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@atlanta.example>;tag=f1\r\n\
To: <sip:bob@biloxi.example>;tag=t1\r\nCall-ID: b0\r\nCSeq: 2 BYE\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\nContent-Length: 0\r\n\r\n";
    for _ in 0..3 {
        let v = run(&mut w, &p, bye, &mut out);
        assert!(
            matches!(v, Verdict::Routed | Verdict::Forwarded(_)),
            "{v:?}"
        );
    }
    let cancel = invite("b1", "z9hG4bK-b1", "")
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    for _ in 0..3 {
        let v = run(&mut w, &p, &cancel, &mut out);
        assert_ne!(v, Verdict::Replied(503), "{v:?}");
    }
    assert_eq!(w.counters().overload_refused, 5);
    // Caught up: forwarded again.
    w.begin(false);
    for i in 0..4 {
        let v = run(
            &mut w,
            &p,
            &invite(&format!("c{i}"), &format!("z9hG4bK-c{i}"), ""),
            &mut out,
        );
        assert!(matches!(v, Verdict::Forwarded(_)), "{v:?}");
    }
}

#[test]
fn admit_percent_bounds_the_refusals() {
    let p = plane(LIST, DispatchParams::default());
    for (percent, want_refused) in [(100, 0), (0, 20), (25, 15)] {
        let mut cfg = (*config(select("1=4", Target::Dst))).clone();
        cfg.overload.admit_percent = percent;
        let mut w = Worker::new(Arc::new(cfg), 1);
        w.begin(true);
        let mut out = Collect::default();
        for i in 0..20 {
            run(
                &mut w,
                &p,
                &invite(&format!("d{i}"), &format!("z9hG4bK-d{i}"), ""),
                &mut out,
            );
        }
        assert_eq!(w.counters().overload_refused, want_refused, "{percent} %");
    }
}
