//! Property tests: a message rebuilt from a rewrite plan parses again, keeps its body
//! byte-identical, and differs from the original only where the plan said.
//!
//! Messages are generated from parts with every syntactic variation the scanner accepts
//! (compact and long names in any case, white space around the colon, folded values, several
//! Vias per line, arbitrary body bytes with or without Content-Length).

use proptest::prelude::*;

use super::Plan;
use crate::{Error, HeaderKind, Headers, Message, Uri};

fn parse_datagram(buf: &[u8]) -> Result<Message<'_>, Error> {
    crate::parse_datagram(buf, Box::leak(Box::new(Headers::new())))
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
        (1u8..=254, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[2001:db8::1]".to_string()),
    ]
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("sip"), Just("sips"), Just("SIP")],
        proptest::option::of("[a-zA-Z0-9+_.-]{1,10}"),
        host(),
        proptest::option::of(1u16..=65535),
        proptest::option::of(prop_oneof![
            Just(";transport=udp"),
            Just(";lr"),
            Just(";user=phone;x=1")
        ]),
    )
        .prop_map(|(scheme, user, host, port, params)| {
            let mut s = format!("{scheme}:");
            if let Some(u) = user {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(params.unwrap_or(""));
            s
        })
}

/// A header name in one of its spellings.
fn name(long: &'static str, compact: Option<&'static str>) -> impl Strategy<Value = String> {
    let mut options = vec![
        long.to_string(),
        long.to_ascii_uppercase(),
        long.to_ascii_lowercase(),
    ];
    if let Some(c) = compact {
        options.push(c.to_string());
        options.push(c.to_ascii_uppercase());
    }
    proptest::sample::select(options)
}

fn sep() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![": ", ":", " : ", ":\t", ":  "])
}

fn via_value() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS")],
        host(),
        proptest::option::of(1u16..=65535),
        token(),
    )
        .prop_map(|(t, h, p, b)| {
            let port = p.map(|p| format!(":{p}")).unwrap_or_default();
            format!("SIP/2.0/{t} {h}{port};branch=z9hG4bK{b}")
        })
}

#[derive(Debug, Clone)]
struct Generated {
    text: Vec<u8>,
    is_request: bool,
}

fn message() -> impl Strategy<Value = Generated> {
    (
        any::<bool>(),
        prop_oneof![
            Just("INVITE"),
            Just("OPTIONS"),
            Just("BYE"),
            Just("X-CUSTOM.m")
        ],
        sip_uri(),
        proptest::collection::vec(proptest::collection::vec(via_value(), 1..=2), 1..=3),
        (name("From", Some("f")), sep(), sip_uri(), token()),
        (name("To", Some("t")), sep(), sip_uri()),
        (name("Call-ID", Some("i")), sep(), token()),
        (name("CSeq", None), sep(), 0u32..(1 << 31)),
        proptest::option::of((name("Max-Forwards", None), 0u32..=255)),
        proptest::collection::vec(sip_uri(), 0..=3),
        proptest::collection::vec(("X-[A-Za-z]{1,8}", token(), any::<bool>()), 0..=4),
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
            sep(),
        ),
    )
        .prop_flat_map(
            |(
                is_request,
                method,
                ruri,
                vias,
                from,
                to,
                callid,
                cseq,
                mf,
                routes,
                extra,
                (body, with_cl, vsep),
            )| {
                let mut lines: Vec<String> = Vec::new();
                for group in &vias {
                    lines.push(format!("Via{vsep}{}", group.join(" ,\r\n ")));
                }
                lines.push(format!("{}{}<{}>;tag={}", from.0, from.1, from.2, from.3));
                lines.push(format!(
                    "{}{}{}",
                    to.0,
                    to.1,
                    to.2.split(';').next().unwrap_or_default()
                ));
                lines.push(format!("{}{}{}", callid.0, callid.1, callid.2));
                lines.push(format!("{}{}{} {}", cseq.0, cseq.1, cseq.2, method));
                if let Some((n, v)) = mf {
                    lines.push(format!("{n}: {v}"));
                }
                if !routes.is_empty() {
                    let values: Vec<String> = routes.iter().map(|r| format!("<{r}>")).collect();
                    lines.push(format!("Route: {}", values.join(", ")));
                }
                for (n, v, fold) in &extra {
                    let v = if *fold {
                        format!("{v}\r\n\t{v}")
                    } else {
                        v.clone()
                    };
                    lines.push(format!("{n}: {v}"));
                }
                if with_cl {
                    lines.push(format!("Content-Length: {}", body.len()));
                }
                let start = if is_request {
                    format!("{method} {ruri} SIP/2.0")
                } else {
                    "SIP/2.0 200 OK".to_string()
                };
                (
                    Just(start),
                    Just(lines).prop_shuffle(),
                    Just(body),
                    Just(is_request),
                )
            },
        )
        .prop_map(|(start, lines, body, is_request)| {
            let mut text = format!("{start}\r\n{}\r\n\r\n", lines.join("\r\n")).into_bytes();
            text.extend_from_slice(&body);
            Generated { text, is_request }
        })
}

#[derive(Debug, Clone)]
struct Ops {
    via: bool,
    max_forwards: Option<u32>,
    remove_route: bool,
    ruri_host: Option<String>,
    record_route: bool,
}

fn ops() -> impl Strategy<Value = Ops> {
    (
        any::<bool>(),
        proptest::option::of(0u32..=70),
        any::<bool>(),
        proptest::option::of(sip_uri()),
        any::<bool>(),
    )
        .prop_map(
            |(via, max_forwards, remove_route, ruri_host, record_route)| Ops {
                via,
                max_forwards,
                remove_route,
                ruri_host,
                record_route,
            },
        )
}

/// The headers a plan may touch; everything else must come out identical and in order.
fn untouched<'a>(m: &Message<'a>) -> Vec<(&'a [u8], &'a [u8])> {
    m.headers()
        .iter()
        .filter(|h| {
            !matches!(
                h.kind,
                HeaderKind::Via
                    | HeaderKind::MaxForwards
                    | HeaderKind::Route
                    | HeaderKind::RecordRoute
            )
        })
        .map(|h| (h.name.get(m.buf()), h.value.get(m.buf())))
        .collect()
}

fn route_count(m: &Message<'_>) -> usize {
    m.headers_named(b"Route")
        .map(|v| v.iter().filter(|&&b| b == b'<').count())
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rebuilt_message_parses_and_differs_only_where_planned(g in message(), ops in ops()) {
        let orig = parse_datagram(&g.text).map_err(|e| TestCaseError::fail(format!("generated message rejected: {e}")))?;
        let dest_text = ops.ruri_host.clone().unwrap_or_default();
        let dest = Uri::parse(dest_text.as_bytes()).ok();
        let mut plan = Plan::new(&orig);
        let mut expect_route_removed = false;
        if g.is_request {
            if ops.via {
                plan.insert_via(b"UDP", b"192.0.2.1", Some(5060), b"z9hG4bK-prop", true).unwrap();
            }
            if let Some(n) = ops.max_forwards {
                plan.set_max_forwards(&orig, n).unwrap();
            }
            if ops.remove_route && orig.first_route().is_some() {
                plan.remove_first_route(&orig).unwrap();
                expect_route_removed = true;
            }
            if let Some(d) = &dest {
                plan.set_request_uri_host(&orig, d).unwrap();
            }
            if ops.record_route {
                plan.insert_record_route(b"sip:192.0.2.1;lr").unwrap();
            }
        } else {
            // A response with one Via is addressed to us and is never forwarded.
            prop_assume!(orig.vias().count() >= 2);
            plan.remove_top_via(&orig).unwrap();
        }
        let out = plan.to_vec();
        prop_assert_eq!(plan.len(), out.len());
        prop_assert_eq!(plan.io_slices().iter().map(|s| s.len()).sum::<usize>(), out.len());
        let new = parse_datagram(&out).map_err(|e| TestCaseError::fail(format!("rebuilt message rejected: {e}: {:?}", String::from_utf8_lossy(&out))))?;

        prop_assert_eq!(new.body(), orig.body());
        prop_assert_eq!(new.call_id(), orig.call_id());
        prop_assert!(new.validate().is_ok() && orig.validate().is_ok());
        prop_assert_eq!(new.from().unwrap(), orig.from().unwrap());
        prop_assert_eq!(new.to().unwrap(), orig.to().unwrap());
        prop_assert_eq!(new.cseq(), orig.cseq());
        prop_assert_eq!(untouched(&new), untouched(&orig));

        let old_vias: Vec<&[u8]> = orig.vias().map(|v| v.unwrap().value).collect();
        let new_vias: Vec<&[u8]> = new.vias().map(|v| v.unwrap().value).collect();
        if !g.is_request {
            prop_assert_eq!(&new_vias[..], &old_vias[1..]);
            return Ok(());
        }
        if ops.via {
            prop_assert_eq!(new_vias[0], &b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-prop;rport"[..]);
            prop_assert_eq!(&new_vias[1..], &old_vias[..]);
        } else {
            prop_assert_eq!(&new_vias, &old_vias);
        }
        prop_assert_eq!(new.max_forwards(), ops.max_forwards.or(orig.max_forwards()));
        prop_assert_eq!(route_count(&new) + usize::from(expect_route_removed), route_count(&orig));
        if ops.record_route {
            let (rr, _) = new.first_record_route().unwrap().unwrap();
            prop_assert_eq!(rr.uri.raw, &b"sip:192.0.2.1;lr"[..]);
        }
        let (old_uri, new_uri) = (orig.request().unwrap().uri().unwrap(), new.request().unwrap().uri().unwrap());
        match &dest {
            Some(d) => {
                prop_assert_eq!(new_uri.host, d.host);
                prop_assert_eq!(new_uri.port, d.port);
                prop_assert_eq!(new_uri.params, d.params);
                prop_assert_eq!(new_uri.user, old_uri.user);
                prop_assert_eq!(new_uri.scheme_text, old_uri.scheme_text);
            }
            None => prop_assert_eq!(new_uri, old_uri),
        }
    }
}
