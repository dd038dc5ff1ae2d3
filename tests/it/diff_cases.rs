//! Test cases shared by the Kamailio differential test and the golden-file test: how a case is
//! generated, sent to Kamailio as SIP, answered by sipdisp, and stored in a golden file.
//!
//! URIs are built from components the test controls, so the sipdisp side knows user, host and
//! port without a SIP parser.

use sipdisp::dispatch::{
    Algorithm, DispatchParams, LoadHooks, Mode, Pick, Request, SetId, Snapshot, parse_list,
    runtime::Target, select::Key, state,
};
use std::time::Instant;

/// xorshift64*, deterministic per seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UriParts {
    pub scheme: String,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<String>,
}

impl UriParts {
    pub fn random(r: &mut Rng) -> Self {
        let users = [
            "alice", "Bob", "+4930123", "a.b-c_d", "x%20y", "carol123", "Z",
        ];
        let hosts = [
            "example.com",
            "Atlanta.EXAMPLE.org",
            "10.1.2.3",
            "[2001:db8::1]",
            "h",
            "biloxi.com",
            "sub.domain-x.net",
        ];
        let ports = ["5060", "5061", "5070", "05070", "05060", "65000", "1"];
        UriParts {
            scheme: if r.chance(25) { "sips" } else { "sip" }.into(),
            user: r.chance(80).then(|| r.pick(&users).to_string()),
            host: r.pick(&hosts).to_string(),
            port: r.chance(50).then(|| r.pick(&ports).to_string()),
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("{}:", self.scheme);
        if let Some(u) = &self.user {
            s += u;
            s += "@";
        }
        s += &self.host;
        if let Some(p) = &self.port {
            s += ":";
            s += p;
        }
        s
    }

    pub fn key(&self) -> Key<'_> {
        Key::Uri {
            user: self.user.as_deref().map(str::as_bytes),
            host: self.host.as_bytes(),
            port: self
                .port
                .as_deref()
                .map(|p| (p.as_bytes(), p.parse::<u16>().expect("generated port"))),
            default_port: if self.scheme == "sips" { 5061 } else { 5060 },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub set: u32,
    pub alg: i32,
    pub limit: u32,
    pub call_id: String,
    pub from: UriParts,
    pub to: UriParts,
    pub ruri: UriParts,
    /// Digest username (None: no credentials header).
    pub auth: Option<String>,
    /// X-Key header for alg 7 (None: header absent, Kamailio hashes `<null>`).
    pub xkey: Option<String>,
}

const UTF8: &[&str] = &["é", "ü", "日本", "ß", "€", "ñ"];

fn word(r: &mut Rng, max: u64) -> String {
    let alnum = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@";
    let n = 1 + r.below(max);
    let mut s = String::new();
    for _ in 0..n {
        if r.chance(8) {
            s += *r.pick(UTF8);
        } else {
            s.push(*r.pick(alnum) as char);
        }
    }
    s
}

impl Case {
    pub fn random(r: &mut Rng, sets: &[u32], algs: &[i32]) -> Case {
        let auth_users = [
            "bob",
            "alice@realm",
            "sip:bob@x",
            "ab",
            "jörg",
            "u:p@d",
            "x",
        ];
        Case {
            set: *r.pick(sets),
            alg: *r.pick(algs),
            limit: if r.chance(60) {
                0
            } else {
                r.below(4) as u32 + 1
            },
            call_id: {
                let mut c = word(r, 40);
                if r.chance(10) {
                    c += " ";
                }
                c
            },
            from: UriParts::random(r),
            to: UriParts::random(r),
            ruri: UriParts::random(r),
            auth: Some(if r.chance(50) {
                r.pick(&auth_users).to_string()
            } else {
                word(r, 12).replace(['"', '\\'], "q")
            }),
            xkey: match r.below(10) {
                0 => None,
                1 => Some("   ".into()),
                _ => Some(word(r, 30)),
            },
        }
    }

    /// The SIP request Kamailio gets.
    pub fn sip(&self, local_port: u16, branch: u64) -> String {
        let mut m = format!(
            "OPTIONS {} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{branch};rport\r\n\
             From: \"Test\" <{}>;tag=f{branch}\r\nTo: <{}>\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\n\
             Max-Forwards: 70\r\nX-Set: {}\r\nX-Alg: {}\r\nX-Limit: {}\r\n",
            self.ruri.render(),
            self.from.render(),
            self.to.render(),
            self.call_id,
            self.set,
            self.alg,
            self.limit
        );
        if let Some(u) = &self.auth {
            m += &format!(
                "Proxy-Authorization: Digest username=\"{u}\", realm=\"r\", nonce=\"n\", \
                 uri=\"sip:x\", response=\"0123456789abcdef0123456789abcdef\"\r\n"
            );
        }
        if let Some(k) = &self.xkey {
            m += &format!("X-Key: {k}\r\n");
        }
        m += "Content-Length: 0\r\n\r\n";
        m
    }

    fn key(&self) -> Key<'_> {
        match self.alg {
            0 => Key::CallId(self.call_id.as_bytes()),
            1 => self.from.key(),
            2 => self.to.key(),
            3 => self.ruri.key(),
            5 => Key::AuthUser(self.auth.as_deref().map(str::as_bytes)),
            7 => Key::Template(self.xkey.as_deref().unwrap_or("<null>").as_bytes()),
            _ => Key::None,
        }
    }

    /// sipdisp's answer.
    pub fn sipdisp(&self, snap: &Snapshot) -> Answer {
        let mut buf = [Pick {
            set: SetId(0),
            set_pos: 0,
            idx: sipdisp::dispatch::DestIdx(0),
        }; 64];
        let req = Request {
            set: SetId(self.set),
            alg: Algorithm::from_code(self.alg),
            key: self.key(),
            limit: self.limit,
            mode: Mode::DstUri,
            dst_already_set: false,
            now: Instant::now(),
        };
        match snap.select(&req, &mut buf) {
            Err(_) => Answer::Fail,
            Ok(s) => Answer::Ok {
                du: uri(snap, s.pick),
                dsts: buf[..s.list_len].iter().map(|&p| uri(snap, p)).collect(),
                cnt: s.list_len as u32,
            },
        }
    }

    pub fn encode(&self) -> String {
        let u = |p: &UriParts| {
            format!(
                "{}|{}|{}|{}",
                p.scheme,
                p.user.as_deref().map_or("-".into(), esc),
                esc(&p.host),
                p.port.as_deref().unwrap_or("-")
            )
        };
        let o = |s: &Option<String>| s.as_deref().map_or("-".to_string(), esc);
        format!(
            "set={}\talg={}\tlimit={}\tcallid={}\tfrom={}\tto={}\truri={}\tauth={}\txkey={}",
            self.set,
            self.alg,
            self.limit,
            esc(&self.call_id),
            u(&self.from),
            u(&self.to),
            u(&self.ruri),
            o(&self.auth),
            o(&self.xkey)
        )
    }

    pub fn decode(line: &str) -> Case {
        let mut f = std::collections::HashMap::new();
        for kv in line.split('\t') {
            let (k, v) = kv.split_once('=').expect("key=value");
            f.insert(k, v);
        }
        let opt = |v: &str| (v != "-").then(|| unesc(v));
        let uri = |v: &str| {
            let p: Vec<&str> = v.split('|').collect();
            UriParts {
                scheme: p[0].into(),
                user: opt(p[1]),
                host: unesc(p[2]),
                port: opt(p[3]),
            }
        };
        Case {
            set: f["set"].parse().unwrap(),
            alg: f["alg"].parse().unwrap(),
            limit: f["limit"].parse().unwrap(),
            call_id: unesc(f["callid"]),
            from: uri(f["from"]),
            to: uri(f["to"]),
            ruri: uri(f["ruri"]),
            auth: opt(f["auth"]),
            xkey: opt(f["xkey"]),
        }
    }
}

fn esc(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '%' | '\t' | '|' | '\n' | '\r' | ' ' | '-' => o += &format!("%{:02X}", c as u32),
            c => o.push(c),
        }
    }
    o
}

fn unesc(s: &str) -> String {
    let b = s.as_bytes();
    let mut o = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            o.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            o.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(o).unwrap()
}

fn uri(s: &Snapshot, p: Pick) -> String {
    String::from_utf8_lossy(&s.destination(p).uri).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Answer {
    Fail,
    Ok {
        du: String,
        dsts: Vec<String>,
        cnt: u32,
    },
}

impl Answer {
    pub fn encode(&self) -> String {
        match self {
            Answer::Fail => "fail".into(),
            Answer::Ok { du, dsts, cnt } => format!("ok {du} {cnt} {}", dsts.join(" ")),
        }
    }

    pub fn decode(s: &str) -> Answer {
        let mut it = s.split_whitespace();
        match it.next() {
            Some("ok") => Answer::Ok {
                du: it.next().unwrap().into(),
                cnt: it.next().unwrap().parse().unwrap(),
                dsts: it.map(String::from).collect(),
            },
            _ => Answer::Fail,
        }
    }
}

/// An RPC `set_state` applied after loading: (state letters, set, uri).
pub type StateOp = (String, u32, String);

/// Builds sipdisp's snapshot for a list text and applies the state operations.
pub fn build(list: &str, states: &[StateOp], seed: u64, use_default: bool) -> Snapshot {
    let params = DispatchParams {
        flags: 2,
        use_default,
        ..Default::default()
    };
    let l = parse_list("diff.list", list.as_bytes(), &params, &LoadHooks::default())
        .unwrap_or_else(|e| panic!("sipdisp refused the generated list:\n{e}\n{list}"));
    let s = Snapshot::build(&l.entries, params, seed);
    for (st, set, uri) in states {
        let bits = state::parse_rpc_state(st.as_bytes()).unwrap();
        s.set_state(SetId(*set), Target::Uri(uri.as_bytes()), bits)
            .unwrap();
    }
    s
}

/// A random list file: 1–3 sets of 1–8 IP-literal destinations with mixed flags,
/// priorities, weights and duplicates.
pub fn random_list(r: &mut Rng) -> (String, Vec<u32>, Vec<(u32, String)>) {
    let all_sets = [1u32, 2, 3, 5, 7, 0];
    let nsets = 1 + r.below(3) as usize;
    let mut sets = Vec::new();
    while sets.len() < nsets {
        let s = *r.pick(&all_sets);
        if !sets.contains(&s) {
            sets.push(s);
        }
    }
    let mut lines = Vec::new();
    let mut dests: Vec<(u32, String)> = Vec::new();
    for &set in &sets {
        for _ in 0..1 + r.below(12) {
            let uri = if !dests.is_empty() && r.chance(8) {
                r.pick(&dests).1.clone()
            } else {
                let mut u = format!("sip:127.0.{}.{}", r.below(3), 1 + r.below(250));
                if r.chance(60) {
                    u += &format!(":{}", 5060 + r.below(40));
                }
                u
            };
            let flags = *r.pick(&[0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 0]);
            let prio = r.below(4);
            let mut attrs = Vec::new();
            if r.chance(80) {
                attrs.push(format!("weight={}", 1 + r.below(60)));
            }
            if r.chance(80) {
                attrs.push(format!("rweight={}", 1 + r.below(5)));
            }
            attrs.push(format!("duid=d{}", lines.len()));
            let line = match r.below(3) {
                0 => format!("{set} {uri} {flags} {prio} {}", attrs.join(";")),
                1 => format!("{set} {uri} {flags} {prio}"),
                _ => format!("{set}\t{uri}\t{flags}\t{prio}\t{};", attrs.join(";")),
            };
            lines.push(line);
            dests.push((set, uri));
        }
    }
    (lines.join("\n") + "\n", sets, dests)
}
