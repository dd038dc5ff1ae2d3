//! `POST /RPC`: JSON-RPC 2.0 as Kamailio 5.6.3's `jsonrpcs` module serves it, with the
//! `dispatcher.*` methods and `core.version` / `core.uptime`.
//!
//! Shapes copied from a real 5.6.3 over `xhttp` + `jsonrpcs` (reference §10, and
//! `tests/it/control_e2e.rs` compares them): positional `params`; a success is
//! `{"jsonrpc":"2.0","result":…,"id":…}`; a fault is
//! `{"jsonrpc":"2.0","error":{"code":500,"message":"…"},"id":…}` with the HTTP status equal
//! to the code; `id` is echoed, and left out when the request had none; an object `params` is
//! ignored; an unknown method is fault 500 "Method Not Found". Key order is Kamailio's (the
//! result types are structs, serialised in field order).
//!
//! Where sipdisp says more or differs (documented in `docs/configuration.md`): a fault may carry
//! `data`, a list of precise reasons (every bad list-file line on "Reload Failed"); a body
//! that is not JSON gets `-32700 "Parse Error"` and a request without a method
//! `-32600 "Invalid Request"`, both with HTTP 400 (Kamailio drops the connection or answers
//! an empty result); an integer parameter given as a non-numeric string is "Invalid
//! Parameters" (Kamailio reads 0).
//!
//! Nothing here panics on input: every parameter is checked and every path ends in a
//! [`Response`].

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::Response;
use crate::control::{Commands, ControlError};
use crate::dispatch::runtime::Target;
use crate::dispatch::state::parse_rpc_state;
use crate::dispatch::{Pick, SetId, StateError, ds_hash};
use crate::plane::Plane;

/// A JSON-RPC fault: HTTP status = `code` when it is a valid HTTP status, else 400.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// Fault code (500 for every Kamailio method fault).
    pub code: i32,
    /// Kamailio's fault text.
    pub message: String,
    /// sipdisp extension: precise reasons, one per entry (omitted when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<String>,
}

impl Fault {
    /// Fault 500 with Kamailio's text.
    pub fn new(message: &str) -> Fault {
        Fault {
            code: 500,
            message: message.to_owned(),
            data: Vec::new(),
        }
    }

    fn invalid_params() -> Fault {
        Fault::new("Invalid Parameters")
    }
}

impl From<ControlError> for Fault {
    fn from(e: ControlError) -> Fault {
        Fault {
            code: 500,
            message: e.message().to_owned(),
            data: e.details(),
        }
    }
}

/// The positional parameters of one call.
pub struct Params<'a>(&'a [Value]);

impl Params<'_> {
    /// Parameter `i` as a string (numbers are accepted and written in decimal, as
    /// Kamailio's RPC layer converts them). Missing → "Invalid Parameters".
    pub fn str(&self, i: usize) -> Result<String, Fault> {
        self.opt_str(i)?.ok_or_else(Fault::invalid_params)
    }

    /// Optional string parameter.
    pub fn opt_str(&self, i: usize) -> Result<Option<String>, Fault> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Fault::invalid_params()),
        }
    }

    /// Parameter `i` as an integer (a string holding a decimal integer is accepted).
    pub fn int(&self, i: usize) -> Result<i64, Fault> {
        self.opt_int(i)?.ok_or_else(Fault::invalid_params)
    }

    /// Optional integer parameter.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, Fault> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(Fault::invalid_params),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Fault::invalid_params()),
            Some(_) => Err(Fault::invalid_params()),
        }
    }
}

type Method = fn(&dyn Commands, &Params<'_>) -> Result<String, Fault>;

/// Every method, by name.
pub const METHODS: &[(&str, Method)] = &[
    ("dispatcher.list", list),
    ("dispatcher.set_state", set_state),
    ("dispatcher.set_duid_state", set_duid_state),
    ("dispatcher.reload", reload),
    ("dispatcher.ping_active", ping_active),
    ("dispatcher.add", add),
    ("dispatcher.remove", remove),
    ("dispatcher.hash", hash),
    ("pike.top", pike_top),
    ("core.version", version),
    ("core.uptime", uptime),
    ("system.listMethods", list_methods),
];

fn json<T: Serialize>(v: &T) -> Result<String, Fault> {
    serde_json::to_string(v).map_err(|e| Fault::new(&format!("Internal Error: {e}")))
}

fn envelope(status: u16, member: &str, value: &str, id: Option<&Value>) -> Response {
    let id = id.map_or(String::new(), |v| format!(",\"id\":{v}"));
    let body = format!("{{\"jsonrpc\":\"2.0\",\"{member}\":{value}{id}}}\n");
    Response::new(status, "application/json", body)
}

fn fault_response(f: &Fault, id: Option<&Value>) -> Response {
    let status = u16::try_from(f.code)
        .ok()
        .filter(|c| (100..600).contains(c))
        .unwrap_or(400);
    let v = serde_json::to_string(f).unwrap_or_else(|_| "{\"code\":500}".into());
    envelope(status, "error", &v, id)
}

/// Handles one `POST /RPC` body.
pub fn handle(ctl: &dyn Commands, body: &[u8]) -> Response {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let f = Fault {
                code: -32700,
                message: "Parse Error".into(),
                data: Vec::new(),
            };
            return fault_response(&f, Some(&Value::Null));
        }
    };
    let id = req.get("id");
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        let f = Fault {
            code: -32600,
            message: "Invalid Request".into(),
            data: Vec::new(),
        };
        return fault_response(&f, Some(id.unwrap_or(&Value::Null)));
    };
    let empty = Vec::new();
    let params = match req.get("params") {
        Some(Value::Array(a)) => a,
        _ => &empty,
    };
    let result = match METHODS.iter().find(|(n, _)| *n == method) {
        Some((_, f)) => f(ctl, &Params(params)),
        None => Err(Fault::new("Method Not Found")),
    };
    match result {
        Ok(v) => envelope(200, "result", &v, id),
        Err(f) => fault_response(&f, id),
    }
}

// ---- dispatcher.list ---------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct ListOut {
    nrsets: usize,
    records: Vec<RecordOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct RecordOut {
    set: SetOut,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct SetOut {
    id: u32,
    targets: Vec<TargetOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct TargetOut {
    dest: DestOut,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct DestOut {
    uri: String,
    flags: String,
    priority: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipaddr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protoid: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dnstime_sec: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dnstime_usec: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attrs: Option<AttrsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<LatencyOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<RuntimeOut>,
}

/// `ATTRS`: unset strings are JSON `null`, as 5.6.3 prints them.
#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct AttrsOut {
    body: String,
    duid: Option<String>,
    maxload: u32,
    weight: u32,
    rweight: u32,
    socket: Option<String>,
    sockname: Option<String>,
    obproxy: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct LatencyOut {
    avg: f32,
    std: f32,
    est: f32,
    max: i32,
    timeout: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct RuntimeOut {
    dlgload: u32,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Kamailio's `PROTO_*` number of a `;transport=` value (0 when absent or unknown).
pub fn proto_id(transport: Option<&[u8]>) -> u8 {
    match transport.map(<[u8]>::to_ascii_lowercase).as_deref() {
        Some(b"udp") => 1,
        Some(b"tcp") => 2,
        Some(b"tls") => 3,
        Some(b"sctp") => 4,
        Some(b"ws") => 5,
        Some(b"wss") => 6,
        _ => 0,
    }
}

/// The `dispatcher.list` result for a plane; `mode` is the optional `short`/`full` argument
/// (anything else: the default listing, as Kamailio). `None` when there are no sets.
fn list_of(plane: &Plane, mode: Option<&str>) -> Option<ListOut> {
    let (short, full) = (mode == Some("short"), mode == Some("full"));
    let s = &plane.snapshot;
    if s.sets().is_empty() {
        return None;
    }
    let p = s.params();
    let mut records = Vec::with_capacity(s.sets().len());
    for (pos, set) in s.sets().iter().enumerate() {
        let mut targets = Vec::with_capacity(set.len());
        for (idx, d) in set.destinations().iter().enumerate() {
            let mut o = DestOut {
                uri: text(&d.uri),
                flags: text(&d.flags().letters()),
                priority: d.priority,
                host: None,
                ipaddr: None,
                port: None,
                protoid: None,
                dnstime_sec: None,
                dnstime_usec: None,
                attrs: None,
                latency: None,
                runtime: None,
            };
            if full {
                let pick = Pick {
                    set: set.id,
                    set_pos: pos as u32,
                    idx: crate::dispatch::DestIdx(idx as u32),
                };
                o.host = Some(text(d.host()));
                o.ipaddr = Some(
                    plane
                        .addr(pick)
                        .map_or(String::new(), |a| a.ip().to_string()),
                );
                o.port = Some(d.port().unwrap_or(0));
                o.protoid = Some(proto_id(d.dest.transport.clone().map(|r| &d.uri[r])));
                o.dnstime_sec = Some(0);
                o.dnstime_usec = Some(0);
            }
            if !short && let Some(body) = &d.attrs.body {
                let a = &d.attrs;
                o.attrs = Some(AttrsOut {
                    body: text(body),
                    duid: a.duid.as_deref().map(text),
                    maxload: a.maxload,
                    weight: a.weight,
                    rweight: d.rweight(),
                    socket: a.socket.as_deref().map(text),
                    sockname: a.sockname.as_deref().map(text),
                    obproxy: a.obproxy.as_deref().map(text),
                });
            }
            if p.ds_ping_latency_stats {
                let l = d.latency();
                o.latency = Some(LatencyOut {
                    avg: l.average,
                    std: l.stdev,
                    est: l.estimate,
                    max: l.max,
                    timeout: l.timeout,
                });
            }
            if p.ds_hash_size > 0 {
                o.runtime = Some(RuntimeOut { dlgload: d.dload() });
            }
            targets.push(TargetOut { dest: o });
        }
        records.push(RecordOut {
            set: SetOut {
                id: set.id.0,
                targets,
            },
        });
    }
    Some(ListOut {
        nrsets: records.len(),
        records,
    })
}

fn list(ctl: &dyn Commands, p: &Params<'_>) -> Result<String, Fault> {
    let mode = p.opt_str(0)?;
    let plane = ctl.shared().plane.load();
    let out = list_of(&plane, mode.as_deref()).ok_or_else(|| Fault::new("No Destination Sets"))?;
    json(&out)
}

// ---- state, reload, add, remove ----------------------------------------------------------

fn group(p: &Params<'_>, i: usize) -> Result<SetId, Fault> {
    let g = p.int(i)?;
    u32::try_from(g)
        .map(SetId)
        .map_err(|_| Fault::invalid_params())
}

fn state_fault(e: StateError) -> Fault {
    match e {
        StateError::UnknownStateValue => Fault::new("Unknown State Value"),
        _ => Fault::new("State Update Failed"),
    }
}

fn ok(text: &str) -> Result<String, Fault> {
    json(&text)
}

fn set_state(ctl: &dyn Commands, p: &Params<'_>) -> Result<String, Fault> {
    apply_state(ctl, p, |b| Target::Uri(b))
}

fn set_duid_state(ctl: &dyn Commands, p: &Params<'_>) -> Result<String, Fault> {
    apply_state(ctl, p, |b| Target::Duid(b))
}

/// `set_state` / `set_duid_state`: params (state, group, address-or-duid | `all`); `by` makes
/// the target from the third parameter.
fn apply_state(
    ctl: &dyn Commands,
    p: &Params<'_>,
    by: for<'b> fn(&'b [u8]) -> Target<'b>,
) -> Result<String, Fault> {
    let (state, set, which) = (p.str(0)?, group(p, 1)?, p.str(2)?);
    let bits = parse_rpc_state(state.as_bytes()).map_err(state_fault)?;
    let target = if which == "all" {
        Target::All
    } else {
        by(which.as_bytes())
    };
    let plane = ctl.shared().plane.load();
    plane
        .snapshot
        .set_state(set, target, bits)
        .map_err(state_fault)?;
    ok("Ok. Dispatcher state updated.")
}

fn log_warnings(what: &str, w: &[String]) {
    for w in w {
        eprintln!("sipdisp: {what}: warning: {w}");
    }
}

fn reload(ctl: &dyn Commands, _: &Params<'_>) -> Result<String, Fault> {
    match ctl.reload() {
        Ok(o) => {
            log_warnings("reload", &o.warnings);
            eprintln!(
                "sipdisp: reloaded (rpc): {} sets, {} destinations",
                o.sets, o.destinations
            );
            ok("Ok. Dispatcher successfully reloaded.")
        }
        Err(e) => {
            eprintln!("sipdisp: reload (rpc) refused, old list kept: {e}");
            Err(e.into())
        }
    }
}

fn add(ctl: &dyn Commands, p: &Params<'_>) -> Result<String, Fault> {
    let (set, uri) = (group(p, 0)?, p.str(1)?);
    let flags = p.opt_int(2)?.unwrap_or(0);
    let flags = u32::try_from(flags).map_err(|_| Fault::invalid_params())?;
    let prio = p.opt_int(3)?.unwrap_or(0);
    let prio = i32::try_from(prio).map_err(|_| Fault::invalid_params())?;
    let attrs = p.opt_str(4)?.unwrap_or_default();
    let o = ctl
        .add(set.0, &uri, flags, prio, &attrs)
        .inspect_err(|e| eprintln!("sipdisp: dispatcher.add refused: {e}"))?;
    log_warnings("dispatcher.add", &o.warnings);
    ok("Ok. Dispatcher destination added.")
}

fn remove(ctl: &dyn Commands, p: &Params<'_>) -> Result<String, Fault> {
    let (set, uri) = (group(p, 0)?, p.str(1)?);
    let o = ctl
        .remove(set.0, &uri)
        .inspect_err(|e| eprintln!("sipdisp: dispatcher.remove refused: {e}"))?;
    log_warnings("dispatcher.remove", &o.warnings);
    ok("Ok. Dispatcher destination removed.")
}

// ---- small ones --------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PingOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    new_ping_state: Option<i64>,
    old_ping_state: i64,
}

fn ping_active(ctl: &dyn Commands, p: &Params<'_>) -> Result<String, Fault> {
    let new = p.opt_int(0)?;
    let old = match new {
        Some(v) => ctl.shared().ping_active.swap(v != 0, Ordering::Relaxed),
        None => ctl.shared().ping_active.load(Ordering::Relaxed),
    };
    json(&PingOut {
        new_ping_state: new,
        old_ping_state: i64::from(old),
    })
}

#[derive(Serialize)]
struct HashOut {
    hashid: u32,
    slot: u32,
}

fn hash(_: &dyn Commands, p: &Params<'_>) -> Result<String, Fault> {
    let (n, x, y) = (p.int(0)?, p.str(1)?, p.opt_str(2)?);
    let h = ds_hash(Some(x.as_bytes()), y.as_deref().map(str::as_bytes));
    let slot = if n > 0 {
        (u64::from(h) % n as u64) as u32
    } else {
        0
    };
    json(&HashOut { hashid: h, slot })
}

#[derive(Serialize)]
struct PikeOut {
    ip_addr: String,
    status: &'static str,
}

/// `pike.top`: the sources flood control is blocking (as last published by the workers,
/// at most 32 per worker). Empty when `[pike]` is off.
fn pike_top(ctl: &dyn Commands, _: &Params<'_>) -> Result<String, Fault> {
    let mut ips = ctl.shared().counters().pike_top;
    ips.sort();
    ips.dedup();
    json(
        &ips.iter()
            .map(|ip| PikeOut {
                ip_addr: ip.to_string(),
                status: "HOT",
            })
            .collect::<Vec<_>>(),
    )
}

fn version(_: &dyn Commands, _: &Params<'_>) -> Result<String, Fault> {
    json(&format!(
        "sipdisp {} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    ))
}

#[derive(Serialize)]
struct UptimeOut {
    now: String,
    up_since: String,
    uptime: u64,
}

fn uptime(ctl: &dyn Commands, _: &Params<'_>) -> Result<String, Fault> {
    let up = ctl.shared().started.elapsed();
    let now = SystemTime::now();
    let since = now.checked_sub(up).unwrap_or(UNIX_EPOCH);
    json(&UptimeOut {
        now: ctime(now),
        up_since: ctime(since),
        uptime: up.as_secs(),
    })
}

fn list_methods(_: &dyn Commands, _: &Params<'_>) -> Result<String, Fault> {
    json(&METHODS.iter().map(|(n, _)| *n).collect::<Vec<_>>())
}

/// `ctime(3)`-style text (`Mon Nov 23 16:33:55 2026`), in UTC.
pub fn ctime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        WD[(days % 7) as usize],
        MO[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

#[cfg(test)]
mod tests;
