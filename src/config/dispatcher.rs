//! `[dispatcher]`: Kamailio's module parameters under their own names, plus the list file,
//! the algorithm-7 template and the event hook.

use std::path::{Path, PathBuf};

use crate::dispatch::{DispatchParams, HashFailover};
use crate::source::db::{Columns, is_identifier};
use crate::source::{DbSource, DbUrl, Source};

use super::error::ErrorKind;
use super::read::{Ctx, Table, Value};
use super::template::HashTemplate;

/// `[dispatcher]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatcher {
    /// `list_file`, resolved against the configuration file's directory. Default
    /// `dispatcher.list` beside the configuration file.
    pub list_file: PathBuf,
    /// Every Kamailio module parameter (same names, 5.6.3 defaults; seconds become `Duration`s).
    pub params: DispatchParams,
    /// `hash_pvar`: the algorithm-7 key template; `None` (Kamailio: unset) makes alg 7 a
    /// configuration error in routes.
    pub hash_pvar: Option<HashTemplate>,
    /// `event_hook`: command run on destination state changes (issue 5), resolved like
    /// `list_file`. Default none.
    pub event_hook: Option<PathBuf>,
    /// `watch_list_file` (sipdisp): reload when the list file's modification time changes
    /// (polled once a second). Default false.
    pub watch_list_file: bool,
    /// `persist_rpc_changes` (sipdisp): write `dispatcher.add`/`remove` back to the list file
    /// (atomically, comments kept) or the database table. Default false, as Kamailio.
    pub persist_rpc_changes: bool,
    /// `db_url` with `table_name`, the `*_col` parameters and `ds_db_extra_attrs`: the database
    /// source that replaces `list_file`. Default none.
    pub db: Option<DbSource>,
}

impl Dispatcher {
    /// The destination source: the database when `db_url` is set, else the list file.
    pub fn source(&self) -> Source {
        match &self.db {
            Some(d) => Source::Db(Box::new(d.clone())),
            None => Source::File(self.list_file.clone()),
        }
    }
}

impl Dispatcher {
    /// Defaults for a configuration file in `dir`.
    pub fn defaults_in(dir: &Path) -> Self {
        Self {
            list_file: dir.join("dispatcher.list"),
            params: DispatchParams::default(),
            hash_pvar: None,
            event_hook: None,
            watch_list_file: false,
            persist_rpc_changes: false,
            db: None,
        }
    }
}

pub(crate) const DISPATCHER_KEYS: &[&str] = &[
    "list_file",
    "hash_pvar",
    "event_hook",
    "flags",
    "use_default",
    "force_dst",
    "ds_probing_threshold",
    "ds_inactive_threshold",
    "ds_probing_mode",
    "ds_ping_interval",
    "ds_ping_timeout",
    "ds_ping_method",
    "ds_ping_from",
    "ds_ping_reply_codes",
    "ds_ping_latency_stats",
    "ds_latency_estimator_alpha",
    "ds_hash_size",
    "ds_hash_expire",
    "ds_hash_initexpire",
    "ds_hash_check_interval",
    "call_load_capacity",
    "ds_load_mode",
    "ds_attrs_none",
    "reload_delta",
    "ds_dns_mode",
    "ds_dns_interval",
    "ds_timer_mode",
    "xavp_dst",
    "xavp_ctx",
    "ds_default_socket",
    "ds_default_sockname",
    "outbound_proxy",
    "hex_flags",
    "hash_failover",
    "retain_state",
    "watch_list_file",
    "persist_rpc_changes",
    "db_url",
    "table_name",
    "id_col",
    "setid_col",
    "destination_col",
    "flags_col",
    "priority_col",
    "attrs_col",
    "ds_db_extra_attrs",
    "db_notify_channel",
    "db_timeout",
];

/// Kamailio parameters that are deliberately absent, with the reason shown to the operator.
pub(crate) fn kamailio_only(name: &str) -> Option<String> {
    let why = match name {
        "setid_pvname" | "attrs_pvname" | "xavp_dst_mode" | "xavp_ctx_mode" => {
            "sipdisp has no script variables; routes replace the script"
        }
        "ds_probing_threshhold" => "3.x spelling; use `ds_probing_threshold`",
        "ds_ping_sock" => "use `ds_default_socket`",
        _ => return None,
    };
    Some(format!("Kamailio parameter `{name}`: {why}"))
}

/// `db_url` and what goes with it; `None` without `db_url` (the other keys are then errors).
fn read_db(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, dir: &Path) -> Option<DbSource> {
    let ident = |c: &mut Ctx<'_>, k: &str, v: &Value<'_>| {
        let s = c.string(k, v)?;
        if !is_identifier(&s) {
            c.bad(
                &v.span(),
                k,
                "an SQL name: letters, digits and '_'",
                &format!("{s:?}"),
            );
            return None;
        }
        Some(s)
    };
    let url = ctx.at(t, "db_url", |c, k, v| {
        let s = c.string(k, v)?;
        let url = match DbUrl::parse(&s, dir) {
            Ok(u) => u,
            Err(want) => {
                c.bad(&v.span(), k, want, &format!("{s:?}"));
                return None;
            }
        };
        let (feature, built) = url.driver();
        if !built {
            let why = format!(
                "this sipdisp was built without the {feature} driver (build with \
                 `--features {feature}`)"
            );
            c.error(&v.span(), k, ErrorKind::Unsupported(why));
            return None;
        }
        Some(url)
    });
    let mut columns = Columns::default();
    let mut table = "dispatcher".to_string();
    let keys: [(&str, &mut String); 7] = [
        ("table_name", &mut table),
        ("id_col", &mut columns.id),
        ("setid_col", &mut columns.setid),
        ("destination_col", &mut columns.destination),
        ("flags_col", &mut columns.flags),
        ("priority_col", &mut columns.priority),
        ("attrs_col", &mut columns.attrs),
    ];
    let mut given = Vec::new();
    for (key, slot) in keys {
        if let Some(s) = ctx.at(t, key, ident) {
            *slot = s;
            given.push(key);
        }
    }
    let extra_attrs = ctx
        .at(t, "ds_db_extra_attrs", |c, k, v| {
            let s = c.string(k, v)?;
            let mut out = Vec::new();
            for part in s.split(';').filter(|p| !p.is_empty()) {
                match part.split_once('=') {
                    Some((a, col)) if !a.is_empty() && is_identifier(col) => {
                        out.push((a.to_string(), col.to_string()));
                    }
                    _ => {
                        let want = "`attribute=column` pairs separated by `;`";
                        c.bad(&v.span(), k, want, &format!("{s:?}"));
                        return None;
                    }
                }
            }
            Some(out)
        })
        .inspect(|_| given.push("ds_db_extra_attrs"))
        .unwrap_or_default();
    let notify = ctx.at(t, "db_notify_channel", ident);
    if notify.is_some() {
        given.push("db_notify_channel");
    }
    let mut timeout = crate::source::db::DEFAULT_TIMEOUT;
    if let Some(x) = ctx.at(t, "db_timeout", fractional_seconds) {
        given.push("db_timeout");
        if x.is_zero() {
            let span = t.get("db_timeout").map_or(t.span.clone(), |v| v.span());
            ctx.bad(
                &span,
                &t.key("db_timeout"),
                "a positive number of seconds",
                "0",
            );
        } else {
            timeout = x;
        }
    }
    let Some(url) = url else {
        if t.get("db_url").is_none() {
            for key in given {
                let span = t.get(key).map_or(t.span.clone(), |v| v.span());
                let why = format!("`{key}` needs `db_url` (the database source)");
                ctx.error(&span, &t.key(key), ErrorKind::Conflict(why));
            }
        }
        return None;
    };
    if notify.is_some() && !matches!(url, DbUrl::Postgres(_)) {
        let span = t
            .get("db_notify_channel")
            .map_or(t.span.clone(), |v| v.span());
        let why = "`db_notify_channel` needs a postgres:// `db_url` (LISTEN/NOTIFY)".to_string();
        ctx.error(&span, &t.key("db_notify_channel"), ErrorKind::Conflict(why));
    }
    Some(DbSource {
        url,
        table,
        columns,
        extra_attrs,
        notify_channel: notify,
        timeout,
    })
}

fn sip_uri(c: &mut Ctx<'_>, k: &str, v: &Value<'_>) -> Option<String> {
    let s = c.string(k, v)?;
    let lower = s.to_ascii_lowercase();
    let ok = (lower.starts_with("sip:") || lower.starts_with("sips:"))
        && !s.contains(char::is_whitespace);
    if !ok {
        c.bad(&v.span(), k, "a SIP URI (sip:…)", &format!("{s:?}"));
        return None;
    }
    Some(s)
}

/// Seconds as an integer (Kamailio's unit) or, as a sipdisp extension, a decimal number with
/// millisecond resolution (`0.3`), at most one day.
fn fractional_seconds(c: &mut Ctx<'_>, k: &str, v: &Value<'_>) -> Option<std::time::Duration> {
    use toml::de::DeValue;
    match v.get_ref() {
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(x) if (0.0..=86_400.0).contains(&x) => {
                Some(std::time::Duration::from_millis((x * 1000.0).round() as u64))
            }
            _ => {
                c.bad(&v.span(), k, "seconds in 0..=86400", f.as_str());
                None
            }
        },
        DeValue::Integer(_) => c
            .int(k, v, 0..=86_400)
            .map(|n| std::time::Duration::from_secs(n.unsigned_abs())),
        _ => {
            c.wrong_type(v, k, "a number of seconds (decimals allowed, e.g. 0.5)");
            None
        }
    }
}

/// `code=NNN;class=N;…` as Kamailio's `ds_ping_reply_codes`.
fn reply_codes_ok(s: &str) -> bool {
    s.is_empty()
        || s.split(';').filter(|p| !p.is_empty()).all(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let n: u16 = match v.trim().parse() {
                Ok(n) => n,
                Err(_) => return false,
            };
            match k.trim() {
                "code" => (100..=699).contains(&n),
                "class" => (1..=6).contains(&n),
                _ => false,
            }
        })
}

fn small<T: TryFrom<i64>>(
    c: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Option<T> {
    c.at(t, key, |c, k, v| c.int(k, v, range))
        .and_then(|n| T::try_from(n).ok())
}

pub(crate) fn read_dispatcher(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, dir: &Path) -> Dispatcher {
    let mut d = Dispatcher::defaults_in(dir);
    let path = |c: &mut Ctx<'_>, k: &str, v: &Value<'_>| {
        let s = c.string(k, v)?;
        if s.is_empty() {
            c.bad(&v.span(), k, "a file path", "\"\"");
            return None;
        }
        Some(dir.join(s))
    };
    if let Some(p) = ctx.at(t, "list_file", path) {
        d.list_file = p;
    }
    d.event_hook = ctx.at(t, "event_hook", path);
    d.hash_pvar = ctx.at(t, "hash_pvar", |c, k, v| {
        let s = c.string(k, v)?;
        match HashTemplate::parse(&s) {
            Ok(t) => Some(t),
            Err(e) => {
                c.error(&v.span(), k, ErrorKind::Conflict(format!("{s:?}: {e}")));
                None
            }
        }
    });

    let p = &mut d.params;
    macro_rules! num {
        ($name:ident, $range:expr) => {
            if let Some(x) = small(ctx, t, stringify!($name), $range) {
                p.$name = x;
            }
        };
    }
    macro_rules! flag {
        ($name:ident) => {
            if let Some(x) = ctx.at(t, stringify!($name), Ctx::flag) {
                p.$name = x;
            }
        };
    }
    macro_rules! secs {
        ($name:ident) => {
            if let Some(x) = ctx.at(t, stringify!($name), Ctx::seconds) {
                p.$name = x;
            }
        };
    }
    num!(flags, 0..=3);
    flag!(use_default);
    flag!(force_dst);
    num!(ds_probing_threshold, 0..=65535);
    num!(ds_inactive_threshold, 0..=65535);
    num!(ds_probing_mode, 0..=3);
    if let Some(x) = ctx.at(t, "ds_ping_interval", fractional_seconds) {
        p.ds_ping_interval = (!x.is_zero()).then_some(x);
    }
    if let Some(x) = ctx.at(t, "ds_ping_timeout", fractional_seconds) {
        if x.is_zero() {
            let span = t
                .get("ds_ping_timeout")
                .map_or(t.span.clone(), |v| v.span());
            ctx.bad(
                &span,
                &t.key("ds_ping_timeout"),
                "a positive number of seconds",
                "0",
            );
        } else {
            p.ds_ping_timeout = x;
        }
    }
    if let Some(m) = ctx.at(t, "ds_ping_method", |c, k, v| {
        let s = c.string(k, v)?;
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
        if !ok {
            c.bad(
                &v.span(),
                k,
                "a SIP method in capitals, e.g. \"OPTIONS\"",
                &format!("{s:?}"),
            );
        }
        ok.then_some(s)
    }) {
        p.ds_ping_method = m;
    }
    if let Some(s) = ctx.at(t, "ds_ping_from", sip_uri) {
        p.ds_ping_from = s;
    }
    if let Some(s) = ctx.at(t, "ds_ping_reply_codes", |c, k, v| {
        let s = c.string(k, v)?;
        let ok = reply_codes_ok(&s);
        if !ok {
            let want = "`code=NNN` (100–699) and `class=N` (1–6) separated by `;`";
            c.bad(&v.span(), k, want, &format!("{s:?}"));
        }
        ok.then_some(s)
    }) {
        p.ds_ping_reply_codes = s;
    }
    flag!(ds_ping_latency_stats);
    num!(ds_latency_estimator_alpha, 1..=999);
    num!(ds_hash_size, 0..=31);
    secs!(ds_hash_expire);
    secs!(ds_hash_initexpire);
    secs!(ds_hash_check_interval);
    if let Some(n) = small::<usize>(ctx, t, "call_load_capacity", 1..=100_000_000) {
        p.call_load_capacity = n;
    }
    num!(ds_load_mode, 0..=1);
    flag!(ds_attrs_none);
    secs!(reload_delta);
    num!(ds_dns_mode, 0..=15);
    secs!(ds_dns_interval);
    num!(ds_timer_mode, 0..=1);
    if let Some(s) = ctx.at(t, "xavp_dst", Ctx::string) {
        p.xavp_dst = s;
    }
    if let Some(s) = ctx.at(t, "xavp_ctx", Ctx::string) {
        p.xavp_ctx = s;
    }
    p.ds_default_socket = ctx.at(t, "ds_default_socket", Ctx::string);
    p.ds_default_sockname = ctx.at(t, "ds_default_sockname", Ctx::string);
    p.outbound_proxy = ctx.at(t, "outbound_proxy", sip_uri);
    flag!(hex_flags);
    flag!(retain_state);
    if let Some(b) = ctx.at(t, "watch_list_file", Ctx::flag) {
        d.watch_list_file = b;
    }
    if let Some(b) = ctx.at(t, "persist_rpc_changes", Ctx::flag) {
        d.persist_rpc_changes = b;
    }
    d.db = read_db(ctx, t, dir);
    if d.db.is_some() {
        for key in ["list_file", "watch_list_file"] {
            if let Some(v) = t.get(key) {
                let why = format!(
                    "`{key}` and `db_url` are alternatives (as in Kamailio): the destinations \
                     come from the database"
                );
                ctx.error(&v.span(), &t.key(key), ErrorKind::Conflict(why));
            }
        }
    }
    if let Some(h) = ctx.at(t, "hash_failover", |c, k, v| {
        let s = c.string(k, v)?;
        let h = match s.as_str() {
            "next-index" => Some(HashFailover::NextIndex),
            "rendezvous" => Some(HashFailover::Rendezvous),
            _ => None,
        };
        if h.is_none() {
            c.bad(
                &v.span(),
                k,
                "\"next-index\" or \"rendezvous\"",
                &format!("{s:?}"),
            );
        }
        h
    }) {
        p.hash_failover = h;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_ping_interval_and_timeout() {
        use std::time::Duration;
        let parse = |body: &str| {
            crate::config::Config::parse(
                &format!("[dispatcher]\n{body}\n"),
                Path::new("/etc/sipdisp/sipdisp.toml"),
            )
        };
        let c = parse("ds_ping_interval = 0.3\nds_ping_timeout = 0.5").unwrap();
        let p = &c.dispatcher.params;
        assert_eq!(p.ds_ping_interval, Some(Duration::from_millis(300)));
        assert_eq!(p.ds_ping_timeout, Duration::from_millis(500));
        let c = parse("ds_ping_interval = 10").unwrap();
        assert_eq!(
            c.dispatcher.params.ds_ping_interval,
            Some(Duration::from_secs(10))
        );
        assert_eq!(c.dispatcher.params.ds_ping_timeout, Duration::from_secs(5));
        assert!(
            parse("ds_ping_interval = 0")
                .unwrap()
                .dispatcher
                .params
                .ds_ping_interval
                .is_none()
        );
        for bad in [
            "ds_ping_timeout = 0",
            "ds_ping_interval = -1.5",
            "ds_ping_timeout = \"5\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("ds_ping_interval = \"5\"").unwrap_err().to_string();
        assert!(
            e.contains("expected a number of seconds (decimals allowed"),
            "{e}"
        );
    }

    #[test]
    fn reply_codes() {
        for ok in ["", "code=403", "class=2;code=403;", "code=404;code=488"] {
            assert!(reply_codes_ok(ok), "{ok}");
        }
        for bad in ["403", "code=99", "class=7", "x=1", "code=abc"] {
            assert!(!reply_codes_ok(bad), "{bad}");
        }
    }
}
