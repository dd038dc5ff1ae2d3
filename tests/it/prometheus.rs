//! A real Prometheus scrapes sipdisp; every expression of the Grafana dashboard and of the
//! alerting rules is evaluated through Prometheus' HTTP API and must return data (so no metric
//! name is misspelt), the rules load in Prometheus and pass `promtool check rules`, and the two
//! "down" alerts go pending for a set whose only gateway is dead.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::health_e2e::health_config;
use crate::support::*;

const FIX: &str = "prometheus and promtool are not installed: run the README's test command (bash scripts/test.sh), which installs them";

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET over HTTP/1.0 (so Prometheus answers without chunked encoding).
fn http10(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Runs an instant query; returns the number of result elements (Err: the API said error).
fn query(prom: SocketAddr, q: &str) -> Result<usize, String> {
    let (status, body) =
        http10(prom, &format!("/api/v1/query?query={}", encode(q))).ok_or("no answer")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(body);
    }
    Ok(match &v["data"]["result"] {
        serde_json::Value::Array(a) => a.len(),
        serde_json::Value::Null => 0,
        _ => 1, // scalar / string
    })
}

/// Runs an instant query; returns the label sets of the resulting series.
fn series(prom: SocketAddr, q: &str) -> Result<Vec<serde_json::Value>, String> {
    let (status, body) =
        http10(prom, &format!("/api/v1/query?query={}", encode(q))).ok_or("no answer")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(body);
    }
    Ok(v["data"]["result"]
        .as_array()
        .map(|a| a.iter().map(|r| r["metric"].clone()).collect())
        .unwrap_or_default())
}

/// The dashboard's variables substituted: `instance` and `set` as Grafana's "All" would match.
fn all(expr: &str) -> String {
    grafana(expr)
        .replace("$instance", ".+")
        .replace("$set", ".+")
}

/// Grafana's interval variables, as Grafana would substitute them.
fn grafana(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(repo("packaging/grafana/sipdisp.json")).unwrap();
    serde_json::from_str(&text).expect("dashboard is JSON")
}

fn dashboard_exprs() -> Vec<String> {
    let v = dashboard();
    let mut out = Vec::new();
    for p in v["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    out
}

fn rule_exprs() -> Vec<String> {
    std::fs::read_to_string(repo("packaging/prometheus/sipdisp-rules.yml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:").map(|e| e.trim().to_owned()))
        .collect()
}

/// The left-hand side of an alert expression `LHS <op> <number>`.
fn lhs(expr: &str) -> &str {
    for op in [" == ", " > ", " < ", " >= ", " <= ", " != "] {
        if let Some((l, r)) = expr.rsplit_once(op)
            && r.trim().parse::<f64>().is_ok()
        {
            return l;
        }
    }
    expr
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sipdisp_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Metrics that carry a `set` label: dashboard queries on them must filter on `$set`.
const SET_LABELLED: &[&str] = &[
    "sipdisp_destination_",
    "sipdisp_probe_rtt_seconds",
    "sipdisp_probes_sent_total",
    "sipdisp_probe_replies_total",
    "sipdisp_probe_timeouts_total",
    "sipdisp_probe_send_failures_total",
];

/// What a fleet dashboard must be, read from the JSON alone (issue 15).
#[test]
fn dashboard_json_is_provisionable_and_fleet_ready() {
    let d = dashboard();
    let mut bad = Vec::new();
    assert!(
        d.get("__inputs").is_none(),
        "import-time inputs stay empty under file provisioning"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
    assert_eq!(
        var("datasource").map(|v| v["type"].clone()),
        Some("datasource".into())
    );
    assert_eq!(
        var("datasource").map(|v| v["query"].clone()),
        Some("prometheus".into())
    );
    for n in ["instance", "set"] {
        let v = var(n).unwrap_or_else(|| panic!("no `{n}` variable"));
        assert_eq!(v["type"], "query", "{n}");
        assert_eq!(v["includeAll"], true, "{n}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{n}");
    }
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap_or("?");
        if p["datasource"]["uid"] != "${datasource}" {
            bad.push(format!("{title}: panel datasource {}", p["datasource"]));
        }
        if p["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            bad.push(format!("{title}: no unit"));
        }
        let targets = p["targets"].as_array().unwrap();
        let exprs: Vec<&str> = targets.iter().filter_map(|t| t["expr"].as_str()).collect();
        for t in targets {
            if t["datasource"]["uid"] != "${datasource}" {
                bad.push(format!("{title}: target datasource {}", t["datasource"]));
            }
        }
        for e in &exprs {
            if !e.contains("instance=~\"$instance\"") {
                bad.push(format!("{title}: {e}: does not filter on $instance"));
            }
            if SET_LABELLED.iter().any(|m| e.contains(m)) && !e.contains("set=~\"$set\"") {
                bad.push(format!("{title}: {e}: does not filter on $set"));
            }
        }
        if exprs.iter().any(|e| e.contains("rate("))
            && exprs.iter().any(|e| e.contains("increase("))
        {
            bad.push(format!("{title}: mixes rate and increase"));
        }
        if p["type"] == "table" && targets.len() > 1 {
            let joined = p["transformations"].as_array().is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["id"] == "merge" || t["id"] == "joinByField")
            });
            if !joined {
                bad.push(format!(
                    "{title}: {} table queries without a join",
                    targets.len()
                ));
            }
        }
    }
    // Up/down is coloured, not a bare 0/1.
    let up = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["targets"][0]["expr"]
                .as_str()
                .is_some_and(|e| e.contains("sipdisp_destination_up"))
        })
        .expect("an up/down panel");
    let maps = up["fieldConfig"]["defaults"]["mappings"].to_string();
    assert!(
        maps.contains("\"red\"") && maps.contains("\"green\""),
        "{maps}"
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn dashboard_and_rules_query_real_data() {
    for tool in ["prometheus", "promtool"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(ok, "{FIX}");
    }
    let rules = repo("packaging/prometheus/sipdisp-rules.yml");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(check.status.success(), "promtool check rules: {check:?}");

    // sipdisp: set 1 with two live responders, set 2 with one dead gateway.
    let live: Vec<Responder> = (0..2).map(|_| Responder::start("127.0.0.1:0")).collect();
    let dead = free_udp_port();
    let mut list: String = live
        .iter()
        .map(|b| format!("1 sip:{} 0\n", b.addr))
        .collect();
    list.push_str(&format!("2 sip:127.0.0.1:{dead} 0\n"));
    let admin = free_tcp_port();
    // `ds_hash_size`: the call-load table's series exist (the dashboard and a rule read them).
    let lb = Sipdisp::start(&health_config(admin, "", "ds_hash_size = 2\n"), &list);
    // A second instance (sets 1 and 3, all live), so a query that sums instances shows.
    let live2 = Responder::start("127.0.0.1:0");
    let admin2 = free_tcp_port();
    let lb2 = Sipdisp::start(
        &health_config(admin2, "", "ds_hash_size = 2\n"),
        &format!("1 sip:{} 0\n3 sip:{} 0\n", live2.addr, live[0].addr),
    );
    let client = Client::new("127.0.0.1:0");
    for i in 0..5 {
        let m = client.request(
            "INVITE",
            "sip:bob@example.com",
            &format!("p{i}"),
            &format!("p{i}"),
            "",
        );
        let _ = client.transact(lb.addr(), &m);
    }
    client.sock.send_to(b"garbage\r\n\r\n", lb.addr()).unwrap();

    // Prometheus scraping the admin listener every second.
    let dir = TempDir::new("prometheus");
    let cfg = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sipdisp\n    static_configs:\n      - targets: ['127.0.0.1:{admin}', '127.0.0.1:{admin2}']\n",
            rules.display()
        ),
    );
    let port = free_tcp_port();
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _prometheus = ChildGuard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus"),
    );
    // Wait (≤ 60 s) for at least 5 scrapes of each instance.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if query(prom, "count_over_time(sipdisp_build_info[1m]) >= 5") == Ok(2) {
            break;
        }
        assert!(
            Instant::now() < end,
            "Prometheus did not scrape sipdisp 5 times"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(query(prom, "up{job=\"sipdisp\"} == 1"), Ok(2));

    let mut failures = Vec::new();
    let dash = dashboard_exprs();
    assert!(dash.len() >= 20, "{dash:?}");
    let first = format!("127.0.0.1:{admin}");
    for e in &dash {
        // With every instance selected: data, and each series names its instance (only the
        // heatmap, `by (le)`, aggregates what is selected).
        match series(prom, &all(e)) {
            Ok(s) if s.is_empty() => failures.push(format!("dashboard: {e}: no data")),
            Ok(s) => {
                if !e.contains("by (le)") && s.iter().any(|m| m.get("instance").is_none()) {
                    failures.push(format!("dashboard: {e}: sums instances together"));
                }
            }
            Err(r) => failures.push(format!("dashboard: {e}: {r}")),
        }
        // With one instance selected: nothing from the other.
        let one = grafana(e)
            .replace("$instance", &first)
            .replace("$set", ".+");
        match series(prom, &one) {
            Ok(s) => {
                if s.iter()
                    .any(|m| m.get("instance").is_some_and(|i| *i != *first))
                {
                    failures.push(format!("dashboard: {e}: leaks another instance"));
                }
            }
            Err(r) => failures.push(format!("dashboard: {e}: {r}")),
        }
    }
    // The variable queries, `label_values(METRIC{…}, LABEL)`, as Grafana runs them.
    for v in dashboard()["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{q}: expected label_values(metric, label)"));
        let (metric, label) = inner.rsplit_once(',').unwrap();
        let promql = all(&format!("group by ({}) ({metric})", label.trim()));
        let want = if v["name"] == "instance" { 2 } else { 3 };
        match query(prom, &promql) {
            Ok(n) if n == want => {}
            r => failures.push(format!(
                "variable {}: {promql}: {r:?}, want {want}",
                v["name"]
            )),
        }
    }
    let rule_list = rule_exprs();
    assert_eq!(rule_list.len(), 9, "{rule_list:?}");
    for e in &rule_list {
        if let Err(r) = query(prom, e) {
            failures.push(format!("rule: {e}: {r}"));
        }
        match query(prom, lhs(e)) {
            Ok(n) if n > 0 => {}
            r => failures.push(format!("rule left-hand side: {}: {r:?}", lhs(e))),
        }
        for name in metric_names(e) {
            let sel = name.trim_end_matches("_bucket");
            let q = if name.ends_with("_bucket") {
                format!("{sel}_bucket")
            } else {
                name.clone()
            };
            match query(prom, &q) {
                Ok(n) if n > 0 => {}
                r => failures.push(format!("rule metric {q}: {r:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // The dead gateway of set 2 fires both "down" rules (pending within their `for`).
    let end = Instant::now() + Duration::from_secs(20);
    for alert in ["SipdispGatewayDown", "SipdispSetAllDown"] {
        let q = format!("ALERTS{{alertname=\"{alert}\",set=\"2\"}}");
        while query(prom, &q) != Ok(1) {
            assert!(Instant::now() < end, "{alert} did not go pending");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert_eq!(
        query(prom, "ALERTS{alertname=\"SipdispSetAllDown\",set=\"1\"}"),
        Ok(0)
    );
    // Stop the second instance: the instance-down alert goes pending for it alone.
    assert_eq!(
        query(prom, "ALERTS{alertname=\"SipdispInstanceDown\"}"),
        Ok(0)
    );
    drop(lb2);
    let q = format!("ALERTS{{alertname=\"SipdispInstanceDown\",instance=\"127.0.0.1:{admin2}\"}}");
    let end = Instant::now() + Duration::from_secs(20);
    while query(prom, &q) != Ok(1) {
        assert!(
            Instant::now() < end,
            "SipdispInstanceDown did not go pending"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        query(prom, "ALERTS{alertname=\"SipdispInstanceDown\"}"),
        Ok(1)
    );
    drop(lb);
}

#[test]
fn metrics_negotiate_the_format_and_pass_promtool() {
    use std::io::{Read, Write};
    if Command::new("promtool").arg("--version").output().is_err() {
        panic!("{FIX}");
    }
    let admin = crate::support::free_tcp_port();
    let lb = crate::support::Sipdisp::start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[dispatcher]\nlist_file = \"LIST\"\nds_ping_interval = 1\n\n[[route]]\nselect = \"1=4\"\nfailover = true\n"
        ),
        "1 sip:127.0.0.1:5071\n1 sip:127.0.0.1:5072\n",
    );
    let get = |accept: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    std::thread::sleep(Duration::from_millis(1500));
    // Default (and older scrapers): Prometheus text 0.0.4, which promtool accepts.
    let text = get("Accept: text/plain;version=0.0.4\r\n");
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4"),
        "{text}"
    );
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    assert!(!body.contains("# EOF") && body.contains("# TYPE sipdisp_build_info gauge"));
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
    assert!(get("").contains("Content-Type: text/plain; version=0.0.4"));
    // OpenMetrics when asked for (as Prometheus does).
    let open = get("Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n");
    assert!(
        open.contains("Content-Type: application/openmetrics-text"),
        "{open}"
    );
    assert!(open.trim_end().ends_with("# EOF"));
    drop(lb);
}
