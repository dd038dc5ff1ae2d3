//! The SIP bytes of the load tool: request templates with a per-request id, the responder's
//! 200 OK (RFC 3261 §8.2.6, §18.2.2; RFC 3581), and the few header look-ups both need.
//!
//! Deliberately tiny and forgiving: the tool parses only messages it generated itself or that
//! a proxy relayed, so it looks at header names (long and compact forms) and nothing else.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The request kinds the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The ~800-byte INVITE with SDP of `sipdisp_bench::INVITE`.
    Invite,
    /// A small OPTIONS without body.
    Options,
}

/// A request split around its per-request id: `parts[0] id parts[1] id ... parts[n]`.
///
/// The id (`RUN-SEQ`, run in hex) appears in the Via branch, the From tag and the Call-ID
/// (`RUN-SEQ@ip`), so every request is a new transaction and a new call.
pub struct Template {
    parts: Vec<Vec<u8>>,
    run: u32,
}

const ID: char = '\u{1}';

impl Template {
    /// The template for `method` sent from `local` to `to`.
    pub fn new(method: Method, local: SocketAddrV4, to: SocketAddrV4, run: u32) -> Template {
        let text = match method {
            Method::Invite => {
                let fixture = std::str::from_utf8(sipdisp_bench::INVITE).expect("ASCII fixture");
                let mut out = String::with_capacity(900);
                for line in fixture.split_inclusive("\r\n") {
                    let name = line.split(':').next().unwrap_or("");
                    match name {
                        "Via" => out.push_str(&format!(
                            "Via: SIP/2.0/UDP {local};branch=z9hG4bK-{ID};rport\r\n"
                        )),
                        "From" => out.push_str(&format!(
                            "From: \"Alice Example\" <sip:alice@pbx.example.com>;tag={ID}\r\n"
                        )),
                        "Call-ID" => out.push_str(&format!(
                            "Call-ID: {ID}-5d7e9f1b4a6c8e0d@{}\r\n",
                            local.ip()
                        )),
                        "Contact" => out.push_str(&format!("Contact: <sip:alice@{local}>\r\n")),
                        _ => out.push_str(line),
                    }
                }
                out
            }
            Method::Options => format!(
                "OPTIONS sip:bench@{to} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-{ID};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:load@{local}>;tag={ID}\r\n\
                 To: <sip:bench@{to}>\r\n\
                 Call-ID: {ID}@{ip}\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n",
                ip = local.ip()
            ),
        };
        Template {
            parts: text.split(ID).map(|p| p.as_bytes().to_vec()).collect(),
            run,
        }
    }

    /// Writes request `seq` into `buf`; returns its length.
    pub fn write(&self, seq: u64, buf: &mut [u8]) -> usize {
        let mut id = [0u8; 32];
        let idn = {
            let mut c = std::io::Cursor::new(&mut id[..]);
            let _ = write!(c, "{:08x}-{seq}", self.run);
            c.position() as usize
        };
        let mut n = 0;
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                buf[n..n + idn].copy_from_slice(&id[..idn]);
                n += idn;
            }
            buf[n..n + p.len()].copy_from_slice(p);
            n += p.len();
        }
        n
    }

    /// Length of request 0 (for the report).
    pub fn sample_len(&self) -> usize {
        self.write(0, &mut [0; 4096])
    }
}

/// Header lines of `msg` (after the start line, before the blank line) as (name, value).
pub fn headers(msg: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    msg.split(|&b| b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let c = l.iter().position(|&b| b == b':')?;
            Some((l[..c].trim_ascii(), l[c + 1..].trim_ascii()))
        })
}

/// Whether header `name` is `long` or its compact form `short` (RFC 3261 §7.3.3).
pub fn is(name: &[u8], long: &str, short: &str) -> bool {
    name.eq_ignore_ascii_case(long.as_bytes())
        || (!short.is_empty() && name.eq_ignore_ascii_case(short.as_bytes()))
}

/// The (run, seq) of a Call-ID this tool generated.
pub fn parse_id(call_id: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(call_id).ok()?;
    let (id, _) = s.split_once('@')?;
    let mut parts = id.split('-');
    let run = u32::from_str_radix(parts.next()?, 16).ok()?;
    Some((run, parts.next()?.parse().ok()?))
}

/// Status code of a response, `None` for a request.
pub fn status(msg: &[u8]) -> Option<u16> {
    let rest = msg.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// Where a response to a request whose top Via value is `via`, received from `src`, goes
/// (RFC 3261 §18.2.2 with RFC 3581): `received` overrides the host, `rport=N` the port, and
/// a bare `rport` means the source port (and, without `received`, the source address).
pub fn via_target(via: &[u8], src: SocketAddrV4) -> Option<SocketAddrV4> {
    let via = std::str::from_utf8(via).ok()?;
    let first = via.split(',').next()?;
    let mut params = first.split(';');
    let sent_by = params.next()?.split_whitespace().last()?;
    let (mut host, mut port) = match sent_by.rsplit_once(':') {
        Some((h, p)) => (h.parse::<Ipv4Addr>().ok(), p.parse::<u16>().ok()),
        None => (sent_by.parse::<Ipv4Addr>().ok(), Some(5060)),
    };
    let mut received = None;
    for p in params {
        match p.trim().split_once('=') {
            Some(("received", v)) => received = v.parse::<Ipv4Addr>().ok(),
            Some(("rport", v)) => port = v.parse().ok(),
            None if p.trim() == "rport" => {
                port = Some(src.port());
                host = Some(*src.ip());
            }
            _ => {}
        }
    }
    Some(SocketAddrV4::new(received.or(host)?, port?))
}

/// Writes into `out` the 200 OK for `req` received from `src` (RFC 3261 §8.2.6.2: Vias in
/// order, the top one completed per RFC 3581 §4; From, Call-ID, CSeq copied; a To tag added;
/// Contact for INVITE). Returns the length and where to send it, or `None` when `req` is not
/// a request that gets a response (a response, an ACK, unparseable).
pub fn ok_200(
    req: &[u8],
    src: SocketAddrV4,
    tag: u16,
    out: &mut [u8],
) -> Option<(usize, SocketAddrV4)> {
    if status(req).is_some() || req.starts_with(b"ACK ") {
        return None;
    }
    let invite = req.starts_with(b"INVITE ");
    let mut w = std::io::Cursor::new(out);
    w.write_all(b"SIP/2.0 200 OK\r\n").ok()?;
    let mut target = None;
    for (name, value) in headers(req) {
        if is(name, "Via", "v") {
            w.write_all(b"Via: ").ok()?;
            if target.is_none() {
                target = Some(via_target(value, src)?);
                // Complete a bare rport (and add received) as RFC 3581 §4 asks.
                let (first, rest) = match value.iter().position(|&b| b == b',') {
                    Some(c) => value.split_at(c),
                    None => (value, &b""[..]),
                };
                let text = std::str::from_utf8(first).ok()?;
                for (k, p) in text.split(';').enumerate() {
                    if k > 0 {
                        w.write_all(b";").ok()?;
                    }
                    if p.trim() == "rport" {
                        write!(w, "rport={};received={}", src.port(), src.ip()).ok()?;
                    } else {
                        w.write_all(p.as_bytes()).ok()?;
                    }
                }
                w.write_all(rest).ok()?;
            } else {
                w.write_all(value).ok()?;
            }
            w.write_all(b"\r\n").ok()?;
        } else if is(name, "From", "f") || is(name, "Call-ID", "i") || is(name, "CSeq", "") {
            w.write_all(name).ok()?;
            w.write_all(b": ").ok()?;
            w.write_all(value).ok()?;
            w.write_all(b"\r\n").ok()?;
        } else if is(name, "To", "t") {
            w.write_all(b"To: ").ok()?;
            w.write_all(value).ok()?;
            if !value.windows(5).any(|x| x.eq_ignore_ascii_case(b";tag=")) {
                write!(w, ";tag=resp{tag}").ok()?;
            }
            w.write_all(b"\r\n").ok()?;
        }
    }
    if invite {
        write!(w, "Contact: <sip:uas@{}>\r\n", src.ip()).ok()?;
    }
    w.write_all(b"Content-Length: 0\r\n\r\n").ok()?;
    Some((w.position() as usize, target?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids_and_response() {
        let local: SocketAddrV4 = "127.0.0.1:4000".parse().unwrap();
        let to: SocketAddrV4 = "127.0.0.1:5060".parse().unwrap();
        let t = Template::new(Method::Invite, local, to, 0xabc);
        let mut buf = [0u8; 4096];
        let n = t.write(42, &mut buf);
        let req = &buf[..n];
        assert!((740..860).contains(&n), "{n}");
        let cid = headers(req).find(|(n, _)| is(n, "Call-ID", "i")).unwrap().1;
        assert_eq!(parse_id(cid), Some((0xabc, 42)));
        let src: SocketAddrV4 = "127.0.0.2:7000".parse().unwrap();
        let mut out = [0u8; 4096];
        let (m, dst) = ok_200(req, src, 1, &mut out).unwrap();
        assert_eq!(dst, src, "bare rport: reply to the source");
        let resp = std::str::from_utf8(&out[..m]).unwrap();
        assert!(resp.contains(";rport=7000;received=127.0.0.2"), "{resp}");
        assert!(resp.contains("CSeq: 1 INVITE\r\n"));
        assert_eq!(status(&out[..m]), Some(200));
        assert!(ok_200(&out[..m], src, 1, &mut [0; 4096]).is_none());
    }

    #[test]
    fn via_rules() {
        let src: SocketAddrV4 = "127.0.0.9:9".parse().unwrap();
        let t = |v: &str| via_target(v.as_bytes(), src).unwrap().to_string();
        assert_eq!(
            t("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1"),
            "127.0.0.1:5070"
        );
        assert_eq!(t("SIP/2.0/UDP 127.0.0.1;branch=z"), "127.0.0.1:5060");
        assert_eq!(
            t("SIP/2.0/UDP 127.0.0.1:1;rport=7;received=127.0.0.3"),
            "127.0.0.3:7"
        );
        assert_eq!(
            t("SIP/2.0/UDP 127.0.0.1:1;rport, SIP/2.0/UDP 127.0.0.5:5"),
            "127.0.0.9:9"
        );
    }
}
