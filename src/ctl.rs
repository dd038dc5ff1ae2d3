//! `sipdisp ctl`: a small client of the admin listener's `POST /RPC`, in the spirit of
//! `kamcmd`.
//!
//! It speaks HTTP/1.1 over a plain [`TcpStream`] (one request, `Connection: close`; no HTTP
//! client crate for one POST), sends `{"jsonrpc":"2.0","method":M,"params":[…],"id":1}` and
//! prints the result readably: a table for `dispatcher.list`, the text for string results,
//! `key: value` lines otherwise; `--json` prints the response body as received. Parameters
//! that look like integers are sent as numbers; prefix `s:` forces a string and `i:` an integer
//! (kamcmd's convention). Exit status: 0 on success, 1 on a fault (its message, and the
//! details sipdisp adds, on stderr) or when the listener cannot be reached.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// Where `ctl` connects when neither `--admin` nor a configuration says otherwise (the
/// `[admin] listen` of `sysconfig/sipdisp.toml`).
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9090";

/// What `ctl` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct CtlOptions {
    /// `--admin URL`.
    pub admin: Option<String>,
    /// `--token T`.
    pub token: Option<String>,
    /// `--token-file F`.
    pub token_file: Option<std::path::PathBuf>,
    /// `--config FILE`: take the admin address and token from it.
    pub config: Option<std::path::PathBuf>,
    /// `--json`: print the raw response.
    pub json: bool,
    /// The RPC method.
    pub method: String,
    /// Its parameters, as typed.
    pub params: Vec<String>,
}

/// A parameter as typed on the command line → its JSON value.
pub fn param_value(s: &str) -> Value {
    if let Some(v) = s.strip_prefix("s:") {
        return Value::String(v.to_owned());
    }
    if let Some(v) = s.strip_prefix("i:")
        && let Ok(n) = v.parse::<i64>()
    {
        return Value::from(n);
    }
    match s.parse::<i64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::String(s.to_owned()),
    }
}

/// The request body for `method` with `params`.
pub fn request_body(method: &str, params: &[String]) -> String {
    let params: Vec<Value> = params.iter().map(|p| param_value(p)).collect();
    serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
}

/// `host:port` and path of an `http://` URL (path defaults to `/RPC`).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: expected an http:// URL"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) if i + 1 < rest.len() => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], "/RPC".to_owned()),
        None => (rest, "/RPC".to_owned()),
    };
    if hostport.is_empty() {
        return Err(format!("{url}: expected a host"));
    }
    let has_port = if hostport.starts_with('[') {
        hostport.contains("]:")
    } else {
        hostport.contains(':')
    };
    let hostport = if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    Ok((hostport, path))
}

/// Posts `body` and returns (HTTP status, response body).
pub fn post(
    hostport: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, String), String> {
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        format!("cannot connect to {addr}: {e} (is [admin] listen set and sipdisp running?)")
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: malformed HTTP response"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: malformed HTTP status line"))?;
    Ok((status, body.to_owned()))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `key: value` lines, nested objects indented, arrays item by item.
pub fn print_tree(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if v.is_object() || v.is_array() {
                    out.push_str(&format!("{pad}{k}:\n"));
                    print_tree(v, indent + 1, out);
                } else {
                    out.push_str(&format!("{pad}{k}: {}\n", scalar(v)));
                }
            }
        }
        Value::Array(a) => {
            for v in a {
                if v.is_object() || v.is_array() {
                    print_tree(v, indent, out);
                } else {
                    out.push_str(&format!("{pad}{}\n", scalar(v)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// The `dispatcher.list` result as a table (one line per destination, sets in listing
/// order), like kamcmd's listing flattened.
pub fn list_table(result: &Value) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let (mut has_load, mut has_lat, mut has_addr) = (false, false, false);
    let records = result["RECORDS"].as_array().cloned().unwrap_or_default();
    for r in &records {
        let set = &r["SET"];
        for t in set["TARGETS"].as_array().into_iter().flatten() {
            let d = &t["DEST"];
            has_load |= d.get("RUNTIME").is_some();
            has_lat |= d.get("LATENCY").is_some();
            has_addr |= d.get("IPADDR").is_some();
            let f = |v: &Value| scalar(v);
            let mut row = vec![
                f(&set["ID"]),
                f(&d["URI"]),
                f(&d["FLAGS"]),
                f(&d["PRIORITY"]),
                d.get("ATTRS").map_or(String::new(), |a| f(&a["BODY"])),
            ];
            if has_addr || d.get("IPADDR").is_some() {
                row.push(d.get("IPADDR").map_or(String::new(), f));
            }
            row.push(d.get("RUNTIME").map_or(String::new(), |x| f(&x["DLGLOAD"])));
            let lat = d.get("LATENCY");
            for k in ["AVG", "EST", "MAX", "TIMEOUT"] {
                row.push(lat.map_or(String::new(), |l| f(&l[k])));
            }
            rows.push(row);
        }
    }
    let mut header: Vec<&str> = vec!["SET", "URI", "FLAGS", "PRIORITY", "ATTRS"];
    if has_addr {
        header.push("IPADDR");
    }
    header.extend(["DLGLOAD", "LAT_AVG", "LAT_EST", "LAT_MAX", "TIMEOUTS"]);
    // Keep only the optional columns that have data.
    let keep: Vec<bool> = header
        .iter()
        .enumerate()
        .map(|(i, h)| match *h {
            "DLGLOAD" => has_load,
            "LAT_AVG" | "LAT_EST" | "LAT_MAX" | "TIMEOUTS" => has_lat,
            _ => i < header.len(),
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|((c, w), _)| format!("{c:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = format!(
        "{} set{}, {} destination{}\n",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    out.push_str(&line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    ));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

fn resolve_target(o: &CtlOptions) -> Result<(String, Option<String>), String> {
    let mut url = None;
    let mut token = None;
    if let Some(path) = &o.config {
        let cfg = crate::config::Config::load(path).map_err(|e| e.to_string())?;
        if let Some(a) = cfg.admin.listen {
            let a = if a.ip().is_unspecified() {
                std::net::SocketAddr::new(
                    if a.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    },
                    a.port(),
                )
            } else {
                a
            };
            url = Some(format!("http://{a}"));
        } else if o.admin.is_none() {
            return Err(format!(
                "{}: [admin] listen is not set: the control plane is disabled",
                path.display()
            ));
        }
        token = cfg.admin.token.map(|t| t.0);
    }
    if let Some(a) = &o.admin {
        url = Some(a.clone());
    }
    if let Some(f) = &o.token_file {
        let t = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        token = Some(t.trim().to_owned());
    }
    if let Some(t) = &o.token {
        token = Some(t.clone());
    }
    Ok((url.unwrap_or_else(|| DEFAULT_ADMIN.to_owned()), token))
}

/// Runs `sipdisp ctl`, writing to `out`/`err`; returns the exit status.
pub fn run(o: &CtlOptions, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match call(o) {
        Ok((text, ok)) => {
            if ok {
                let _ = write!(out, "{text}");
                0
            } else {
                let _ = write!(err, "{text}");
                1
            }
        }
        Err(e) => {
            let _ = writeln!(err, "sipdisp ctl: {e}");
            1
        }
    }
}

/// Makes the call; Ok((what to print, success)).
fn call(o: &CtlOptions) -> Result<(String, bool), String> {
    let (url, token) = resolve_target(o)?;
    let (hostport, path) = parse_url(&url)?;
    let (status, body) = post(
        &hostport,
        &path,
        token.as_deref(),
        &request_body(&o.method, &o.params),
    )?;
    if status == 401 {
        return Err(format!(
            "{url}: 401 Unauthorized: give the admin token (--token, --token-file or --config)"
        ));
    }
    let v: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => return Err(format!("{url}: HTTP {status}: {}", body.trim())),
    };
    if let Some(e) = v.get("error") {
        let mut s = format!("error: {} {}\n", scalar(&e["code"]), scalar(&e["message"]));
        for d in e
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            s.push_str(&format!("  {}\n", scalar(d)));
        }
        if o.json {
            s = body.trim().to_owned() + "\n" + &s;
        }
        return Ok((s, false));
    }
    if o.json {
        return Ok((body.trim().to_owned() + "\n", true));
    }
    let result = v.get("result").cloned().unwrap_or(Value::Null);
    let text = match (&result, o.method.as_str()) {
        (Value::Object(_), "dispatcher.list") => list_table(&result),
        (Value::String(s), _) => format!("{s}\n"),
        _ => {
            let mut s = String::new();
            print_tree(&result, 0, &mut s);
            s
        }
    };
    Ok((text, true))
}

/// `sipdisp ctl` on the process's stdout/stderr.
pub fn ctl_command(o: &CtlOptions) -> i32 {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    run(o, &mut out, &mut err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_body() {
        assert_eq!(param_value("12"), Value::from(12));
        assert_eq!(param_value("-3"), Value::from(-3));
        assert_eq!(param_value("s:12"), Value::from("12"));
        assert_eq!(param_value("i:7"), Value::from(7));
        assert_eq!(param_value("sip:a"), Value::from("sip:a"));
        let b: Value = serde_json::from_str(&request_body(
            "dispatcher.set_state",
            &["ip".into(), "1".into(), "sip:x".into()],
        ))
        .unwrap();
        assert_eq!(b["params"], serde_json::json!(["ip", 1, "sip:x"]));
        assert_eq!(b["jsonrpc"], "2.0");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:9090").unwrap(),
            ("127.0.0.1:9090".into(), "/RPC".into())
        );
        assert_eq!(
            parse_url("http://[::1]:9/x").unwrap(),
            ("[::1]:9".into(), "/x".into())
        );
        assert_eq!(
            parse_url("http://h/").unwrap(),
            ("h:80".into(), "/RPC".into())
        );
        assert!(parse_url("https://h").is_err());
        assert!(parse_url("http://").is_err());
    }

    #[test]
    fn table_and_tree() {
        let v = serde_json::json!({"NRSETS":1,"RECORDS":[{"SET":{"ID":1,"TARGETS":[
            {"DEST":{"URI":"sip:b","FLAGS":"AP","PRIORITY":1}},
            {"DEST":{"URI":"sip:a","FLAGS":"IX","PRIORITY":0,"ATTRS":{"BODY":"duid=x","DUID":"x"},
                     "RUNTIME":{"DLGLOAD":3}}}]}}]});
        let t = list_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "1 set, 2 destinations");
        assert!(
            lines[1].starts_with("SET  URI    FLAGS  PRIORITY  ATTRS   DLGLOAD"),
            "{t}"
        );
        assert!(
            lines[3].contains("IX") && lines[3].contains("duid=x") && lines[3].ends_with('3'),
            "{t}"
        );
        assert!(!t.contains("LAT_AVG"));
        let mut s = String::new();
        print_tree(
            &serde_json::json!({"hashid": 5, "slot": 1, "x": {"y": null}}),
            0,
            &mut s,
        );
        assert_eq!(s, "hashid: 5\nslot: 1\nx:\n  y: -\n");
    }
}
