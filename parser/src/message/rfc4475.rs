//! RFC 4475 torture messages (fixtures in `testdata/rfc4475/`, see its README).
//!
//! Every valid message must scan and validate with the Call-ID, From, To and top Via the
//! manifest records; every invalid one must be rejected, except the few whose fault lies in a
//! header a forwarding proxy does not interpret (listed in [`LENIENT`] with the reason); the
//! semantic ones must give the outcome listed in [`SEMANTIC`]. None may panic.

use std::path::PathBuf;

use super::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/rfc4475")
}

/// Undoes the manifest's escapes: `\t`, `\xNN`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b't') {
            out.push(b'\t');
            i += 2;
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

struct Row {
    path: String,
    expect: String,
    call_id: String,
    from: String,
    to: String,
    via_host: String,
    via_branch: String,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(dir().join("manifest.tsv")).expect("manifest.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Row {
                path: c[0].into(),
                expect: c[2].into(),
                call_id: c[3].into(),
                from: c[4].into(),
                to: c[5].into(),
                via_host: c[6].into(),
                via_branch: c[7].into(),
            }
        })
        .collect()
}

fn outcome(bytes: &[u8]) -> Result<(), Error> {
    let mut h = Headers::new();
    let m = parse_datagram(bytes, &mut h)?;
    m.validate()
}

/// Invalid messages that a forwarding scanner accepts on purpose: the fault is in a header
/// it does not interpret (RFC 4475 allows a proxy to ignore it and forward the message).
const LENIENT: &[(&str, &str)] = &[
    (
        "invalid/baddate.dat",
        "Date is not interpreted by a proxy; forwarded untouched (RFC 4475 §3.1.2.12 allows ignoring it)",
    ),
    (
        "invalid/regbadct.dat",
        "Contact is not interpreted by a proxy; the registrar is the one that must reject it",
    ),
];

/// The outcome of every §3.2–3.4 message (and the unreferenced archive file): what the
/// scanner says, and in the comment what the proxy then does with it.
const SEMANTIC: &[(&str, &str)] = &[
    ("transaction/badbranch.dat", "Ok(())"), // forwarded; a lone magic cookie is not a transaction key for us (stateless)
    ("semantic/insuf.dat", "Err(Missing(From))"), // 400
    ("semantic/unkscm.dat", "Ok(())"),       // R-URI scheme unknown: the proxy answers 416
    ("semantic/novelsc.dat", "Ok(())"),      // unknown scheme in To only: forwarded
    ("semantic/unksm2.dat", "Ok(())"),       // R-URI scheme unknown: 416
    ("semantic/bext01.dat", "Ok(())"), // Proxy-Require with unknown options: the proxy answers 420
    ("semantic/invut.dat", "Ok(())"),  // unknown Content-Type: a proxy forwards
    ("semantic/regaut01.dat", "Ok(())"), // credentials for another realm: not ours to judge
    ("semantic/multi01.dat", "Err(Duplicate(CSeq))"), // 400
    ("semantic/mcl01.dat", "Err(Duplicate(ContentLength))"), // 400
    ("semantic/bcast.dat", "Ok(())"),  // response with a Via not ours: the proxy drops it
    ("semantic/zeromf.dat", "Ok(())"), // Max-Forwards 0: the proxy answers 483
    ("semantic/cparam01.dat", "Ok(())"), // Contact parameters: not interpreted
    ("semantic/cparam02.dat", "Ok(())"), // idem
    ("semantic/regescrt.dat", "Ok(())"), // escaped Route in a REGISTER Contact: registrar's concern
    ("semantic/sdp01.dat", "Ok(())"),  // Accept without SDP: endpoint's concern
    ("backcompat/inv2543.dat", "Ok(())"), // RFC 2543 INVITE: forwarded, Max-Forwards added
    (
        "unreferenced/test.dat",
        "Err(StartLine(\"request line has no SIP version\"))",
    ),
];

#[test]
fn rfc4475_torture_messages() {
    let rows = manifest();
    assert_eq!(rows.len(), 50, "all 50 archive files are listed");
    for row in &rows {
        let bytes =
            std::fs::read(dir().join(&row.path)).unwrap_or_else(|e| panic!("{}: {e}", row.path));
        // Every prefix is handled without a panic, whatever the verdict.
        for n in 0..bytes.len() {
            let _ = outcome(&bytes[..n]);
        }
        let got = outcome(&bytes);
        match row.expect.as_str() {
            "valid" => {
                assert_eq!(got, Ok(()), "{}", row.path);
                let mut h = Headers::new();
                let m = parse_datagram(&bytes, &mut h).unwrap();
                assert_eq!(m.call_id(), unescape(&row.call_id), "{} Call-ID", row.path);
                assert_eq!(
                    m.from().unwrap().uri.raw,
                    unescape(&row.from),
                    "{} From",
                    row.path
                );
                assert_eq!(
                    m.to().unwrap().uri.raw,
                    unescape(&row.to),
                    "{} To",
                    row.path
                );
                let via = m.top_via().unwrap();
                assert_eq!(via.host, unescape(&row.via_host), "{} Via host", row.path);
                assert_eq!(
                    via.branch.unwrap_or(b"-"),
                    unescape(&row.via_branch),
                    "{} branch",
                    row.path
                );
            }
            _ => {
                let listed = SEMANTIC.iter().find(|(p, _)| *p == row.path);
                let lenient = LENIENT.iter().any(|(p, _)| *p == row.path);
                match listed {
                    Some((_, expected)) => {
                        assert_eq!(format!("{got:?}"), *expected, "{}", row.path)
                    }
                    None if lenient => {
                        assert_eq!(got, Ok(()), "{} is accepted on purpose", row.path)
                    }
                    None => assert!(got.is_err(), "{} must be rejected", row.path),
                }
            }
        }
    }
}

/// The valid messages' specific traits, beyond the manifest columns.
#[test]
fn rfc4475_valid_details() {
    let read = |name: &str| std::fs::read(dir().join("valid").join(name)).unwrap();
    let mut h = Headers::new();
    let wsinv = read("wsinv.dat");
    let m = parse_datagram(&wsinv, &mut h).unwrap();
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq().seq, 9);
    assert_eq!(m.vias().count(), 3);
    let esc02 = read("esc02.dat");
    let m = parse_datagram(&esc02, &mut h).unwrap();
    assert_eq!(m.request().unwrap().method, b"RE%47IST%45R");
    assert_eq!(m.request().unwrap().method_kind, Method::Other);
    let dblreq = read("dblreq.dat");
    let m = parse_datagram(&dblreq, &mut h).unwrap();
    assert!(
        m.len() < dblreq.len(),
        "the second request is not part of the message"
    );
    assert_eq!(m.request().unwrap().method_kind, Method::Register);
    let noreason = read("noreason.dat");
    let m = parse_datagram(&noreason, &mut h).unwrap();
    assert_eq!(m.response().unwrap().reason, b"");
    let unreason = read("unreason.dat");
    let m = parse_datagram(&unreason, &mut h).unwrap();
    assert!(std::str::from_utf8(m.response().unwrap().reason).is_ok());
    let transports = read("transports.dat");
    let m = parse_datagram(&transports, &mut h).unwrap();
    let kinds: Vec<Vec<u8>> = m.vias().map(|v| v.unwrap().transport.to_vec()).collect();
    assert!(kinds.len() >= 4, "{kinds:?}");
}
