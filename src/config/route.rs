//! `[[route]]`: match conditions and one action, first match wins (the script of a Kamailio
//! `request_route` reduced to what a load balancer does).

use std::fmt;
use std::num::NonZeroU32;

use serde::Deserialize;
use toml::de::{DeValue, ValueDeserializer};

use crate::dispatch::{Algorithm, Rule, SetId, parse_rules};

use super::error::{ErrorKind, position};
use super::read::{Ctx, Table, Value};

/// `ds_is_from_list` mode bit: ignore the port.
pub const FROM_LIST_IGNORE_PORT: u8 = 1;
/// `ds_is_from_list` mode bit: ignore the protocol.
pub const FROM_LIST_IGNORE_PROTO: u8 = 2;
/// `ds_is_from_list` mode bit: only usable (not inactive/disabled) destinations match.
pub const FROM_LIST_ONLY_USABLE: u8 = 4;

/// `source_in_set` + `source_mode`: `ds_is_from_list(set, mode)` on the packet's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMatch {
    /// The set whose destinations are compared; `None` = any set (`"any"`, Kamailio -1).
    pub set: Option<SetId>,
    /// Mode bits ([`FROM_LIST_IGNORE_PORT`] | [`FROM_LIST_IGNORE_PROTO`] |
    /// [`FROM_LIST_ONLY_USABLE`]); default 2 as Kamailio's one-argument form.
    pub mode: u8,
}

/// `header` (+ `header_value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Header name as written (match it case-insensitively).
    pub name: String,
    /// Required body, compared exactly after trimming whitespace; `None` = present is enough.
    pub value: Option<String>,
}

/// Where the selected destination goes (`ds_select_routes` mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectMode {
    /// `"dst"`: `ds_select_dst` behaviour, the Request-URI is untouched.
    Dst,
    /// `"ruri"`: `ds_select_domain` behaviour, the Request-URI host:port is rewritten.
    Ruri,
}

/// `select` + `mode` + `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    /// Rules in order, from [`parse_rules`].
    pub rules: Vec<Rule>,
    /// The rules as written (`"1=4;2=0"`), for logs and `check`.
    pub text: String,
    /// `mode`, default [`SelectMode::Dst`].
    pub mode: SelectMode,
    /// `limit`: most destinations in the failover list; `None` (file: 0) = unlimited.
    pub limit: Option<NonZeroU32>,
}

/// `reply`: answer statelessly instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code, 200..=699.
    pub code: u16,
    /// Reason phrase (the standard one when the file gives none).
    pub reason: String,
}

/// What a matching route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Select destinations and forward.
    Select(Select),
    /// Reply.
    Reply(Reply),
}

/// One `[[route]]`. A request matches when every condition given matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `name`, or `route[N]` (1-based position) when absent.
    pub name: String,
    /// Line of the route's table in the file; 0 for the built-in default route.
    pub line: u32,
    /// `methods`: exact method tokens; empty = any method.
    pub methods: Vec<String>,
    /// `source_in_set` / `source_mode`.
    pub source: Option<SourceMatch>,
    /// `ruri_user_prefix`: the Request-URI user starts with this (bytes, case-sensitive).
    pub ruri_user_prefix: Option<String>,
    /// `header` / `header_value`.
    pub header: Option<HeaderMatch>,
    /// The action.
    pub action: Action,
    /// `failover` (with `failover_codes`, `mark`): transaction-stateful failover.
    pub failover: Option<crate::proxy::Failover>,
    /// `allow_missing_set` (sipdisp): a `select` set absent from the list is a warning rather
    /// than an error (the set is expected from a later reload or `dispatcher.add`).
    pub allow_missing_set: bool,
}

impl Route {
    /// The route used when the file has no `[[route]]`: every request to set 1, round robin,
    /// R-URI untouched.
    pub fn default_route() -> Self {
        Self {
            name: "default".into(),
            line: 0,
            methods: Vec::new(),
            source: None,
            ruri_user_prefix: None,
            header: None,
            action: Action::Select(Select {
                rules: parse_rules("1=4").expect("static rules"),
                text: "1=4".into(),
                mode: SelectMode::Dst,
                limit: None,
            }),
            failover: None,
            allow_missing_set: false,
        }
    }
}

impl fmt::Display for Route {
    /// One line: `name: conditions -> action`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        let mut any = false;
        if !self.methods.is_empty() {
            write!(f, " method {}", self.methods.join("|"))?;
            any = true;
        }
        if let Some(s) = self.source {
            match s.set {
                Some(set) => write!(f, " source in set {}", set.0)?,
                None => f.write_str(" source in any set")?,
            }
            write!(f, " (mode {})", s.mode)?;
            any = true;
        }
        if let Some(p) = &self.ruri_user_prefix {
            write!(f, " R-URI user {p:?}*")?;
            any = true;
        }
        if let Some(h) = &self.header {
            match &h.value {
                Some(v) => write!(f, " header {}={v:?}", h.name)?,
                None => write!(f, " header {}", h.name)?,
            }
            any = true;
        }
        if !any {
            f.write_str(" every request")?;
        }
        match &self.action {
            Action::Select(s) => {
                let mode = match s.mode {
                    SelectMode::Dst => "dst",
                    SelectMode::Ruri => "ruri",
                };
                write!(f, " -> select {} mode {mode}", s.text)?;
                if let Some(l) = s.limit {
                    write!(f, " limit {l}")?;
                }
                Ok(())
            }
            Action::Reply(r) => write!(f, " -> reply {} {}", r.code, r.reason),
        }
    }
}

pub(crate) const ROUTE_KEYS: &[&str] = &[
    "name",
    "methods",
    "source_in_set",
    "source_mode",
    "ruri_user_prefix",
    "header",
    "header_value",
    "select",
    "mode",
    "limit",
    "reply",
    "failover",
    "failover_codes",
    "mark",
    "allow_missing_set",
];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// The inline-table form `reply = { code = 403, reason = "Forbidden" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyTable {
    code: i64,
    reason: Option<String>,
}

fn read_reply(c: &mut Ctx<'_>, k: &str, v: &Value<'_>) -> Option<Reply> {
    let (code, reason) = match v.get_ref() {
        DeValue::Integer(_) => (c.int(k, v, i64::MIN..=i64::MAX)?, None),
        DeValue::Table(_) => match ReplyTable::deserialize(ValueDeserializer::from(v.clone())) {
            Ok(t) => (t.code, t.reason),
            Err(e) => {
                let span = e.span().unwrap_or(v.span());
                let got = e.message().to_owned();
                c.bad(
                    &span,
                    k,
                    "a status code or { code = N, reason = \"…\" }",
                    &got,
                );
                return None;
            }
        },
        _ => {
            c.error(
                &v.span(),
                k,
                ErrorKind::WrongType {
                    expected: "a status code or { code = N, reason = \"…\" }",
                    got: "another type",
                },
            );
            return None;
        }
    };
    if !(200..=699).contains(&code) {
        let why = "a status code in 200..=699 (provisional replies make no sense statelessly)";
        c.bad(&v.span(), k, why, &code.to_string());
        return None;
    }
    let code = code as u16;
    if let Some(r) = &reason
        && r.contains(['\r', '\n'])
    {
        c.bad(
            &v.span(),
            k,
            "a reason phrase on one line",
            &format!("{r:?}"),
        );
        return None;
    }
    Some(Reply {
        code,
        reason: reason.unwrap_or_else(|| crate::proxy::reply::reason_phrase(code).to_owned()),
    })
}

fn read_select(c: &mut Ctx<'_>, k: &str, v: &Value<'_>, has_template: bool) -> Option<Select> {
    let text = c.string(k, v)?;
    let rules = match parse_rules(&text) {
        Ok(r) => r,
        Err(e) => {
            let want = format!(
                "rules \"set=alg;set=alg…\" ({} at byte {})",
                e.expected, e.at
            );
            c.bad(&v.span(), k, want, &format!("{text:?}"));
            return None;
        }
    };
    let mut ok = true;
    for r in &rules {
        match r.alg {
            Algorithm::Unknown(n) => {
                let want = "algorithms 0..=13 (Kamailio falls back to 'first' with a warning)";
                c.bad(&v.span(), k, want, &format!("{}={n}", r.set.0));
                ok = false;
            }
            Algorithm::Template if !has_template => {
                let why = format!(
                    "rule {}=7 hashes [dispatcher] hash_pvar, which is not set",
                    r.set.0
                );
                c.error(&v.span(), k, ErrorKind::Conflict(why));
                ok = false;
            }
            _ => {}
        }
    }
    ok.then_some(Select {
        rules,
        text,
        mode: SelectMode::Dst,
        limit: None,
    })
}

/// Reads one `[[route]]`; `n` is its 1-based position.
pub(crate) fn read_route(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    n: usize,
    has_template: bool,
) -> Option<Route> {
    let before = ctx.errors.len();
    let name = ctx
        .at(t, "name", |c, k, v| {
            let s = c.string(k, v)?;
            if s.trim().is_empty() {
                c.bad(&v.span(), k, "a non-empty name", "\"\"");
                return None;
            }
            Some(s)
        })
        .unwrap_or_else(|| format!("route[{n}]"));
    let methods = ctx
        .at(t, "methods", |c, k, v| {
            let items = c.strings(k, v)?;
            if items.is_empty() {
                c.bad(
                    &v.span(),
                    k,
                    "at least one method (omit the key for any)",
                    "[]",
                );
                return None;
            }
            let mut ok = true;
            for (m, span) in &items {
                if !is_token(m) || m.bytes().any(|b| b.is_ascii_lowercase()) {
                    let want = "a SIP method as sent, e.g. \"INVITE\" (methods are case-sensitive)";
                    c.bad(span, k, want, &format!("{m:?}"));
                    ok = false;
                }
            }
            ok.then(|| items.into_iter().map(|(m, _)| m).collect())
        })
        .unwrap_or_default();
    let set = ctx.at(t, "source_in_set", |c, k, v| match v.get_ref() {
        DeValue::String(s) if s == "any" => Some(None),
        DeValue::Integer(_) => {
            let n = c.int(k, v, -1..=i64::from(i32::MAX))?;
            Some((n >= 0).then_some(SetId(n as u32)))
        }
        _ => {
            let got = match v.get_ref() {
                DeValue::String(s) => format!("{s:?}"),
                _ => "another type".into(),
            };
            c.bad(&v.span(), k, "a set id or \"any\"", &got);
            None
        }
    });
    let mode = ctx.at(t, "source_mode", |c, k, v| c.int(k, v, 0..=7));
    if let (Some(v), None) = (t.get("source_mode"), t.get("source_in_set")) {
        let why = "`source_mode` needs `source_in_set`";
        ctx.error(
            &v.span(),
            &t.key("source_mode"),
            ErrorKind::Conflict(why.into()),
        );
    }
    let source = set.map(|set| SourceMatch {
        set,
        mode: mode.map_or(FROM_LIST_IGNORE_PROTO, |m| m as u8),
    });
    let ruri_user_prefix = ctx.at(t, "ruri_user_prefix", |c, k, v| {
        let s = c.string(k, v)?;
        if s.is_empty() {
            c.bad(&v.span(), k, "a non-empty prefix", "\"\"");
            return None;
        }
        Some(s)
    });
    let header_name = ctx.at(t, "header", |c, k, v| {
        let s = c.string(k, v)?;
        if !is_token(&s) {
            c.bad(
                &v.span(),
                k,
                "a header name, e.g. \"X-Tenant\"",
                &format!("{s:?}"),
            );
            return None;
        }
        Some(s)
    });
    let header_value = ctx.at(t, "header_value", |c, k, v| {
        c.string(k, v).map(|s| s.trim().to_owned())
    });
    if let (Some(v), None) = (t.get("header_value"), t.get("header")) {
        let why = "`header_value` needs `header`";
        ctx.error(
            &v.span(),
            &t.key("header_value"),
            ErrorKind::Conflict(why.into()),
        );
    }
    let header = header_name.map(|name| HeaderMatch {
        name,
        value: header_value,
    });

    let select = ctx.at(t, "select", |c, k, v| read_select(c, k, v, has_template));
    let reply = ctx.at(t, "reply", read_reply);
    let smode = ctx.at(t, "mode", |c, k, v| {
        let s = c.string(k, v)?;
        match s.as_str() {
            "dst" => Some(SelectMode::Dst),
            "ruri" => Some(SelectMode::Ruri),
            _ => {
                c.bad(&v.span(), k, "\"dst\" or \"ruri\"", &format!("{s:?}"));
                None
            }
        }
    });
    let limit = ctx.at(t, "limit", |c, k, v| c.int(k, v, 0..=i64::from(u32::MAX)));
    match (t.get("select"), t.get("reply")) {
        (Some(_), Some(r)) => {
            let why = "a route has exactly one action: `select` or `reply`, not both";
            ctx.error(&r.span(), &t.key("reply"), ErrorKind::Conflict(why.into()));
        }
        (None, None) => {
            let why = "a route needs an action: `select = \"set=alg;…\"` or `reply = CODE`";
            ctx.error(&t.span, &t.path, ErrorKind::Conflict(why.into()));
        }
        (None, Some(_)) => {
            for key in ["mode", "limit"] {
                if let Some(v) = t.get(key) {
                    let why = format!("`{key}` belongs to `select`; this route replies");
                    ctx.error(&v.span(), &t.key(key), ErrorKind::Conflict(why));
                }
            }
        }
        (Some(_), None) => {}
    }
    let failover = read_failover(ctx, t, reply.is_some());
    let allow_missing_set = ctx
        .at(t, "allow_missing_set", |c, k, v| c.flag(k, v))
        .unwrap_or(false);
    if ctx.errors.len() > before {
        return None;
    }
    let action = match (select, reply) {
        (Some(mut s), None) => {
            s.mode = smode.unwrap_or(SelectMode::Dst);
            s.limit = limit.and_then(|l| NonZeroU32::new(l as u32));
            Action::Select(s)
        }
        (None, Some(r)) => Action::Reply(r),
        _ => return None,
    };
    Some(Route {
        name,
        line: position(ctx.text, t.span.start).0,
        methods,
        source,
        ruri_user_prefix,
        header,
        action,
        failover,
        allow_missing_set,
    })
}

/// `failover = true`, `failover_codes = "408|5[0-9][0-9]"`, `mark = "ip"`.
fn read_failover(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    replies: bool,
) -> Option<crate::proxy::Failover> {
    let on = ctx
        .at(t, "failover", |c, k, v| c.flag(k, v))
        .unwrap_or(false);
    let codes = ctx.at(t, "failover_codes", |c, k, v| {
        let s = c.string(k, v)?;
        match crate::proxy::txn::Codes::parse(&s) {
            Ok(codes) => Some(codes),
            Err(e) => {
                c.bad(
                    &v.span(),
                    k,
                    "a t_check_status pattern like \"408|5[0-9][0-9]\"",
                    &e.to_string(),
                );
                None
            }
        }
    });
    let mark = ctx.at(t, "mark", |c, k, v| {
        let s = c.string(k, v)?;
        match crate::dispatch::state::parse_mark(Some(s.as_bytes()), 0) {
            Ok(_) => Some(s.into_bytes().into_boxed_slice()),
            Err(_) => {
                c.bad(
                    &v.span(),
                    k,
                    "ds_mark_dst letters from a, i, t, d, p (e.g. \"ip\")",
                    &format!("{s:?}"),
                );
                None
            }
        }
    });
    for key in ["failover_codes", "mark"] {
        if let Some(v) = t.get(key)
            && !on
        {
            let why = format!("`{key}` needs `failover = true`");
            ctx.error(&v.span(), &t.key(key), ErrorKind::Conflict(why));
        }
    }
    if on && replies {
        if let Some(v) = t.get("failover") {
            let why = "`failover` belongs to `select`; this route replies";
            ctx.error(
                &v.span(),
                &t.key("failover"),
                ErrorKind::Conflict(why.into()),
            );
        }
        return None;
    }
    on.then(|| crate::proxy::Failover {
        codes: codes.unwrap_or_default(),
        mark,
    })
}
