//! The keepalive request bytes (reference §6.2): what Kamailio's tm sends for `ds_ping_set`.

use std::io::Write;

use crate::proxy::ProbeToken;
use crate::proxy::branch::stable_hash;

/// What varies between keepalives.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// `ds_ping_method`.
    pub method: &'a str,
    /// The destination URI exactly as stored (Request-URI and To).
    pub uri: &'a [u8],
    /// `ping_from` attribute or `ds_ping_from`.
    pub from: &'a [u8],
    /// Our Via sent-by host (IPv6 in brackets) and port.
    pub via_host: &'a [u8],
    /// Our Via port.
    pub via_port: u16,
    /// Our listener's transport, for the Via's sent-protocol.
    pub transport: crate::netio::Transport,
    /// The token the branch carries.
    pub token: ProbeToken,
}

/// Writes the request into `out` (cleared first):
///
/// ```text
/// OPTIONS <uri> SIP/2.0
/// Via: SIP/2.0/UDP <host>:<port>;branch=z9hG4bK-sd-p<token>
/// To: <uri>
/// From: <from>;tag=<hex>
/// CSeq: 10 OPTIONS
/// Call-ID: <hex>@<host>
/// Max-Forwards: 70
/// Content-Length: 0
/// User-Agent: sipdisp <version>
/// ```
///
/// From and To get `<>` unless already bracketed; CSeq is always 10, as Kamailio's.
pub fn build(p: &Probe<'_>, out: &mut Vec<u8>) {
    out.clear();
    let h = stable_hash(&[
        &p.token.generation.to_be_bytes(),
        &p.token.dest.to_be_bytes(),
        &p.token.seq.to_be_bytes(),
        p.uri,
    ]);
    let bracket = |v: &[u8], out: &mut Vec<u8>| {
        if v.starts_with(b"<") {
            out.extend_from_slice(v);
        } else {
            out.push(b'<');
            out.extend_from_slice(v);
            out.push(b'>');
        }
    };
    let _ = write!(out, "{} ", p.method);
    out.extend_from_slice(p.uri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.extend_from_slice(p.transport.via_token());
    out.push(b' ');
    out.extend_from_slice(p.via_host);
    let _ = write!(out, ":{};branch=", p.via_port);
    out.extend_from_slice(&p.token.branch());
    out.extend_from_slice(b"\r\nTo: ");
    bracket(p.uri, out);
    out.extend_from_slice(b"\r\nFrom: ");
    bracket(p.from, out);
    let _ = write!(
        out,
        ";tag={:08x}\r\nCSeq: 10 {}\r\nCall-ID: {:016x}-{:x}@",
        h as u32, p.method, h, p.token.seq
    );
    out.extend_from_slice(p.via_host);
    let _ = write!(
        out,
        "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\nUser-Agent: sipdisp {}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipdisp_parser::{Headers, parse_datagram};

    #[test]
    fn request_shape_and_parse() {
        let token = ProbeToken {
            generation: 1,
            dest: 2,
            seq: 3,
        };
        let mut out = Vec::new();
        build(
            &Probe {
                method: "OPTIONS",
                uri: b"sip:gw1.example:5080;transport=udp",
                from: b"sip:dispatcher@localhost",
                via_host: b"127.0.0.1",
                via_port: 5060,
                transport: crate::netio::Transport::Udp,
                token,
            },
            &mut out,
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("OPTIONS sip:gw1.example:5080;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sd-p"), "{text}");
        assert!(text.contains("\r\nTo: <sip:gw1.example:5080;transport=udp>\r\n"));
        assert!(text.contains("\r\nFrom: <sip:dispatcher@localhost>;tag="));
        assert!(text.contains("\r\nCSeq: 10 OPTIONS\r\n"));
        assert!(text.contains("\r\nMax-Forwards: 70\r\n"));
        let tail = format!(
            "Content-Length: 0\r\nUser-Agent: sipdisp {}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.ends_with(&tail));
        let mut h = Headers::new();
        let msg = parse_datagram(&out, &mut h).unwrap();
        let via = msg.top_via().unwrap();
        assert_eq!(ProbeToken::parse(via.branch.unwrap()), Some(token));
        assert_eq!(msg.cseq().seq, 10);
        // An already bracketed From is kept as is.
        build(
            &Probe {
                method: "INFO",
                uri: b"sip:a",
                from: b"<sip:x@y>",
                via_host: b"[::1]",
                via_port: 5062,
                transport: crate::netio::Transport::Udp,
                token,
            },
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("From: <sip:x@y>;tag=") && text.contains("CSeq: 10 INFO"));
        assert!(text.contains("Via: SIP/2.0/UDP [::1]:5062;"));
    }
}
