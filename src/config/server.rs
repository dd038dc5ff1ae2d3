//! `[server]` (sockets, workers, datapath, proxy knobs) and `[admin]` (control plane).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::netio::DatapathChoice;

use super::error::ErrorKind;
use super::read::{Ctx, Table, Value};

use crate::netio::Transport;

/// One listen address, `[proto:]addr[:port]` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listen {
    /// Transport. Only UDP is served for now; `tcp`/`tls` are refused with "not supported yet".
    pub proto: Transport,
    /// Address and port (port 5060 when the file omits it).
    pub addr: SocketAddr,
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)
    }
}

/// What we write into our Via and Record-Route instead of the listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, when given.
    pub port: Option<u16>,
}

impl fmt::Display for Advertise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `listen`: at least one, no duplicates. Default `udp:127.0.0.1:5060`.
    pub listen: Vec<Listen>,
    /// `advertise`: set whenever a listen address is unspecified (`0.0.0.0`, `::`).
    pub advertise: Option<Advertise>,
    /// `workers`: `None` (file: 0) = one per CPU core, see [`Server::worker_count`].
    pub workers: Option<NonZeroUsize>,
    /// `datapath`: `auto` (default), `io_uring`, `mmsg`.
    pub datapath: DatapathChoice,
    /// `spread`: `"flow"` (default: by 4-tuple) or `"random"` (every datagram to a random
    /// worker, so one busy peer uses every worker).
    pub spread: crate::netio::Spread,
    /// `via_secret`: the key of the MAC in our stateless Via branches, for several instances
    /// that must accept each other's responses; unset: random at start.
    pub via_secret: Option<Secret>,
    /// `allowed_next_hops`: networks (`10.0.0.0/8`, `192.0.2.1`, `[2001:db8::]/32`) that a
    /// Route-following or in-dialog request may go to besides the destinations. Default none.
    pub allowed_next_hops: Vec<crate::proxy::Network>,
    /// `record_route`: insert `Record-Route: <sip:…;lr>` on initial requests. Default false.
    pub record_route: bool,
    /// `max_forwards`: value inserted when a request has no Max-Forwards. Default 70.
    pub max_forwards: u8,
    /// `overload_admit_percent`: while a worker is behind (more requests wait than a batch
    /// takes), the share of new out-of-dialog requests it still forwards; the others get `503`
    /// with `Retry-After`. 100 = never refuse (the excess is then lost in the socket queue).
    /// Default 50.
    pub overload_admit_percent: u8,
    /// `overload_retry_after`: the `Retry-After` seconds of those 503s. Default 5.
    pub overload_retry_after: u32,
    /// `recv_buffer_size`: `SO_RCVBUF` in bytes; `None` = the I/O layer's default.
    pub recv_buffer_size: Option<usize>,
    /// `send_buffer_size`: `SO_SNDBUF` in bytes; `None` = the I/O layer's default.
    pub send_buffer_size: Option<usize>,
    /// `batch_wait_us`: io_uring receive coalescing window in µs (0: off). Default 200.
    pub batch_wait_us: u32,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: vec![Listen {
                proto: Transport::Udp,
                addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            }],
            advertise: None,
            workers: None,
            datapath: DatapathChoice::Auto,
            spread: crate::netio::Spread::Flow,
            via_secret: None,
            allowed_next_hops: Vec::new(),
            record_route: false,
            max_forwards: 70,
            overload_admit_percent: 50,
            overload_retry_after: 5,
            recv_buffer_size: None,
            send_buffer_size: None,
            batch_wait_us: 200,
        }
    }
}

impl Server {
    /// Worker threads to start: `workers`, or the number of CPUs available to the process.
    pub fn worker_count(&self) -> usize {
        self.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            NonZeroUsize::get,
        )
    }
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `[admin]`: the control plane (JSON-RPC, metrics). Parsed and validated now, served later.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admin {
    /// `listen`: HTTP address; `None` (default) = no control plane.
    pub listen: Option<SocketAddr>,
    /// `token` or the trimmed content of `token_file`; required when `listen` is not loopback.
    pub token: Option<Secret>,
    /// `token_file` as resolved (relative to the configuration file's directory).
    pub token_file: Option<PathBuf>,
}

pub(crate) const SERVER_KEYS: &[&str] = &[
    "listen",
    "advertise",
    "workers",
    "datapath",
    "spread",
    "via_secret",
    "allowed_next_hops",
    "record_route",
    "max_forwards",
    "overload_admit_percent",
    "overload_retry_after",
    "recv_buffer_size",
    "send_buffer_size",
    "batch_wait_us",
];

/// Shortest admin token accepted: 16 bytes, e.g. `openssl rand -hex 16` (32 characters).
pub const MIN_TOKEN_LEN: usize = 16;

/// Refuses a token shorter than [`MIN_TOKEN_LEN`] (a guessable bearer token on an exposed
/// admin port is no protection). The token itself is never echoed, only its length.
fn short_token(c: &mut Ctx<'_>, k: &str, v: &Value<'_>, token: &str) -> Option<()> {
    if token.len() >= MIN_TOKEN_LEN {
        return Some(());
    }
    c.bad(
        &v.span(),
        k,
        "a token of at least 16 characters (e.g. `openssl rand -hex 16`)",
        &format!("{} characters", token.len()),
    );
    None
}

pub(crate) const ADMIN_KEYS: &[&str] = &["listen", "token", "token_file"];

const LISTEN_FORM: &str = "[udp:]IP[:port], e.g. \"udp:0.0.0.0:5060\" or \"[::1]:5060\"";

/// Parses `[proto:]addr[:port]`. `Err(None)` = malformed, `Err(Some(proto))` = unsupported proto.
fn parse_listen(s: &str) -> Result<Listen, Option<String>> {
    let lower = s.to_ascii_lowercase();
    let mut rest = s;
    for proto in ["udp:", "tcp:", "tls:", "sctp:", "ws:", "wss:"] {
        if lower.starts_with(proto) {
            if proto != "udp:" {
                return Err(Some(proto.trim_end_matches(':').to_owned()));
            }
            rest = &s[proto.len()..];
        }
    }
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Ok(Listen {
            proto: Transport::Udp,
            addr,
        });
    }
    let bare = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(rest);
    let ip: IpAddr = bare.parse().map_err(|_| None)?;
    // `::1` without brackets is accepted as an address (so `::1:5060` is one too, port 5060).
    Ok(Listen {
        proto: Transport::Udp,
        addr: SocketAddr::new(ip, 5060),
    })
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn parse_advertise(s: &str) -> Option<Advertise> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(Advertise {
            host: a.ip().to_string(),
            port: Some(a.port()),
        });
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(Advertise {
            host: ip.to_string(),
            port: None,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|&p| p > 0)?)),
        None => (s, None),
    };
    is_host_name(host).then(|| Advertise {
        host: host.to_owned(),
        port,
    })
}

fn listen_list(ctx: &mut Ctx<'_>, key: &str, v: &Value<'_>) -> Option<Vec<Listen>> {
    let items = match v.get_ref() {
        toml::de::DeValue::String(s) => vec![(s.to_string(), v.span())],
        _ => ctx.strings(key, v)?,
    };
    if items.is_empty() {
        ctx.bad(&v.span(), key, "at least one listen address", "[]");
        return None;
    }
    let mut out: Vec<Listen> = Vec::with_capacity(items.len());
    for (s, span) in items {
        match parse_listen(&s) {
            Ok(l) if out.contains(&l) => ctx.bad(&span, key, "each address once", &s),
            Ok(l) => out.push(l),
            Err(Some(proto)) => {
                let why = format!("{proto} listeners are not supported yet (only udp): {s:?}");
                ctx.error(&span, key, ErrorKind::Unsupported(why));
            }
            Err(None) => ctx.bad(&span, key, LISTEN_FORM, &format!("{s:?}")),
        }
    }
    // The good addresses are kept even when others are bad (the errors already fail the
    // load), so checks that depend on them — `advertise` for a wildcard — still run.
    (!out.is_empty()).then_some(out)
}

pub(crate) fn read_server(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Server {
    let mut s = Server::default();
    if let Some(l) = ctx.at(t, "listen", listen_list) {
        s.listen = l;
    }
    let advertise_span = t.get("advertise").map(|v| v.span());
    if let Some(a) = ctx.at(t, "advertise", |c, k, v| {
        let text = c.string(k, v)?;
        let a = parse_advertise(&text);
        if a.is_none() {
            let want = "a host name or IP address with an optional :port";
            c.bad(&v.span(), k, want, &format!("{text:?}"));
        }
        a
    }) {
        s.advertise = Some(a);
    }
    if s.advertise.is_none()
        && advertise_span.is_none()
        && s.listen.iter().any(|l| l.addr.ip().is_unspecified())
    {
        let span = t.get("listen").map_or(t.span.clone(), |v| v.span());
        let why = "a listen address is unspecified (0.0.0.0 or [::]): set `advertise` to the \
                   address peers should send to (it is written into Via and Record-Route)";
        ctx.error(&span, &t.key("advertise"), ErrorKind::Conflict(why.into()));
    }
    if let Some(n) = ctx.at(t, "workers", |c, k, v| c.int(k, v, 0..=1024)) {
        s.workers = NonZeroUsize::new(n.unsigned_abs() as usize);
    }
    if let Some(d) = ctx.at(t, "datapath", |c, k, v| {
        let text = c.string(k, v)?;
        let d = match text.as_str() {
            "auto" => Some(DatapathChoice::Auto),
            "io_uring" => Some(DatapathChoice::IoUring),
            "mmsg" => Some(DatapathChoice::Mmsg),
            _ => None,
        };
        if d.is_none() {
            c.bad(
                &v.span(),
                k,
                "\"auto\", \"io_uring\" or \"mmsg\"",
                &format!("{text:?}"),
            );
        }
        d
    }) {
        s.datapath = d;
    }
    if let Some(sp) = ctx.at(t, "spread", |c, k, v| {
        let text = c.string(k, v)?;
        match text.as_str() {
            "flow" => Some(crate::netio::Spread::Flow),
            "random" => Some(crate::netio::Spread::Random),
            _ => {
                c.bad(&v.span(), k, "\"flow\" or \"random\"", &format!("{text:?}"));
                None
            }
        }
    }) {
        s.spread = sp;
    }
    if let Some(v) = ctx.at(t, "via_secret", |c, k, v| {
        let text = c.string(k, v)?;
        if text.len() < 16 {
            c.bad(
                &v.span(),
                k,
                "a secret of at least 16 characters",
                "a shorter string",
            );
            return None;
        }
        Some(Secret(text))
    }) {
        s.via_secret = Some(v);
    }
    if let Some(list) = ctx.at(t, "allowed_next_hops", |c, k, v| {
        let items = c.strings(k, v)?;
        let mut out = Vec::new();
        for (text, span) in items {
            match crate::proxy::Network::parse(text.trim()) {
                Some(n) => out.push(n),
                None => c.bad(
                    &span,
                    k,
                    "an IP address or network like \"10.0.0.0/8\"",
                    &format!("{text:?}"),
                ),
            }
        }
        Some(out)
    }) {
        s.allowed_next_hops = list;
    }
    if let Some(b) = ctx.at(t, "record_route", Ctx::flag) {
        s.record_route = b;
    }
    if let Some(n) = ctx.at(t, "max_forwards", |c, k, v| c.int(k, v, 1..=255)) {
        s.max_forwards = n as u8;
    }
    if let Some(n) = ctx.at(t, "overload_admit_percent", |c, k, v| c.int(k, v, 0..=100)) {
        s.overload_admit_percent = n as u8;
    }
    if let Some(n) = ctx.at(t, "overload_retry_after", |c, k, v| c.int(k, v, 1..=3600)) {
        s.overload_retry_after = n as u32;
    }
    let buf = |c: &mut Ctx<'_>, k: &str, v: &Value<'_>| c.int(k, v, 4096..=(1 << 30));
    s.recv_buffer_size = ctx.at(t, "recv_buffer_size", buf).map(|n| n as usize);
    if let Some(n) = ctx.at(t, "batch_wait_us", |c, k, v| c.int(k, v, 0..=10_000)) {
        s.batch_wait_us = n as u32;
    }
    s.send_buffer_size = ctx.at(t, "send_buffer_size", buf).map(|n| n as usize);
    s
}

pub(crate) fn read_admin(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, dir: &Path) -> Admin {
    let listen = ctx.at(t, "listen", |c, k, v| {
        let text = c.string(k, v)?;
        let addr = text.parse::<SocketAddr>().ok();
        if addr.is_none() {
            c.bad(
                &v.span(),
                k,
                "IP:port, e.g. \"127.0.0.1:9090\"",
                &format!("{text:?}"),
            );
        }
        addr
    });
    let token = ctx.at(t, "token", |c, k, v| {
        let s = c.string(k, v)?;
        short_token(c, k, v, s.trim())?;
        Some(s)
    });
    let file = ctx.at(t, "token_file", |c, k, v| {
        let p = dir.join(c.string(k, v)?);
        match std::fs::read_to_string(&p) {
            Ok(s) if !s.trim().is_empty() => {
                short_token(c, k, v, s.trim())?;
                Some((p, s.trim().to_owned()))
            }
            Ok(_) => {
                c.bad(
                    &v.span(),
                    k,
                    "a file holding a token",
                    &format!("{} is empty", p.display()),
                );
                None
            }
            Err(e) => {
                let why = format!("cannot read {}: {e}", p.display());
                c.error(&v.span(), k, ErrorKind::Conflict(why));
                None
            }
        }
    });
    if let (Some(tv), Some(_)) = (t.get("token"), t.get("token_file")) {
        let why = "give either `token` or `token_file`, not both";
        ctx.error(&tv.span(), &t.key("token"), ErrorKind::Conflict(why.into()));
    }
    let mut a = Admin {
        listen,
        token: token.map(Secret),
        token_file: None,
    };
    if let Some((p, s)) = file {
        a.token = Some(Secret(s));
        a.token_file = Some(p);
    }
    let has_token = t.get("token").is_some() || t.get("token_file").is_some();
    if let (Some(addr), Some(v)) = (a.listen, t.get("listen"))
        && !addr.ip().is_loopback()
        && !has_token
    {
        let why = format!(
            "admin listen {addr} is not a loopback address: set `token` or `token_file` \
             (the control plane can change destinations)"
        );
        ctx.error(&v.span(), &t.key("listen"), ErrorKind::Conflict(why));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let ok = [
            ("udp:0.0.0.0:5060", "0.0.0.0:5060"),
            ("UDP:127.0.0.1:5070", "127.0.0.1:5070"),
            ("127.0.0.1", "127.0.0.1:5060"),
            ("udp:[::]:5060", "[::]:5060"),
            ("[::1]", "[::1]:5060"),
            ("::1", "[::1]:5060"),
        ];
        for (s, want) in ok {
            assert_eq!(parse_listen(s).unwrap().addr.to_string(), want, "{s}");
        }
        assert_eq!(parse_listen("tcp:1.2.3.4:5060"), Err(Some("tcp".into())));
        assert_eq!(parse_listen("tls:1.2.3.4:5061"), Err(Some("tls".into())));
        for bad in ["", "example.com:5060", "1.2.3.4:99999", "udp:", "1.2.3"] {
            assert_eq!(parse_listen(bad), Err(None), "{bad}");
        }
    }

    #[test]
    fn advertise_forms() {
        let a = parse_advertise("192.0.2.10").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("192.0.2.10", None));
        let a = parse_advertise("sip.example.com:5080").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("sip.example.com", Some(5080)));
        let a = parse_advertise("[2001:db8::1]:5060").unwrap();
        assert_eq!(a.to_string(), "[2001:db8::1]:5060");
        assert_eq!(parse_advertise("2001:db8::1").unwrap().port, None);
        for bad in ["", "a b", "host:0", "host:x", "-x.com"] {
            assert!(parse_advertise(bad).is_none(), "{bad}");
        }
    }
}
