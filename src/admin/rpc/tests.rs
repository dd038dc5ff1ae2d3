//! JSON shapes, letters and parameter validation of the RPC methods, on an in-memory plane
//! (the end-to-end tests over HTTP, and the comparison with a real Kamailio, are in
//! `tests/it/control_e2e.rs`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::control::Control;
use crate::dispatch::{DispatchParams, LoadHooks, Snapshot, parse_list};
use crate::netio::Backend;
use crate::plane::{Shared, plane_from};
use std::sync::Arc;

fn shared_with(list: &str, params: DispatchParams, file: Option<PathBuf>) -> Control {
    let l = parse_list("t", list.as_bytes(), &params, &LoadHooks::default()).unwrap();
    let snap = Snapshot::build(&l.entries, params.clone(), 1);
    let plane = plane_from(snap, "t", &mut Vec::new());
    Control::new(
        Arc::new(Shared::new(plane, 1, Backend::Memory)),
        crate::source::Source::File(file.unwrap_or_else(|| PathBuf::from("/nonexistent/d.list"))),
        params,
        false,
    )
}

fn shared(list: &str) -> Control {
    shared_with(list, DispatchParams::default(), None)
}

/// (HTTP status, parsed body)
fn call(s: &Control, body: &str) -> (u16, Value) {
    let r = handle(s, body.as_bytes());
    assert_eq!(r.content_type, "application/json");
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body));
    (r.status, v)
}

fn rpc(s: &Control, method: &str, params: Value) -> (u16, Value) {
    call(
        s,
        &json!({"jsonrpc":"2.0","method":method,"params":params,"id":7}).to_string(),
    )
}

fn fault(s: &Control, method: &str, params: Value) -> String {
    let (st, v) = rpc(s, method, params);
    assert_eq!(st, 500, "{v}");
    assert_eq!(v["error"]["code"], 500, "{v}");
    assert_eq!(v["id"], 7);
    v["error"]["message"].as_str().unwrap().to_owned()
}

const LIST: &str = "# comment\n\
    1 sip:127.0.0.1:5071 0 0 duid=a;weight=30;maxload=5\n\
    1 sip:127.0.0.1:5072 8 1\n\
    2 sip:127.0.0.1:5073;transport=tcp 0 0 socket=udp:127.0.0.1:25060;obproxy=sip:1.2.3.4\n\
    3 10.0.0.9:5070\n";

#[test]
fn list_shape_matches_kamailio() {
    let s = shared(LIST);
    let (st, v) = rpc(&s, "dispatcher.list", json!([]));
    assert_eq!(st, 200);
    // Recorded from Kamailio 5.6.3 (xhttp + jsonrpcs) on the same list, ds_dns_mode=0.
    let want = json!({"jsonrpc":"2.0","result":{"NRSETS":3,"RECORDS":[
        {"SET":{"ID":1,"TARGETS":[
            {"DEST":{"URI":"sip:127.0.0.1:5072","FLAGS":"AP","PRIORITY":1}},
            {"DEST":{"URI":"sip:127.0.0.1:5071","FLAGS":"AX","PRIORITY":0,"ATTRS":{
                "BODY":"duid=a;weight=30;maxload=5","DUID":"a","MAXLOAD":5,"WEIGHT":30,
                "RWEIGHT":0,"SOCKET":null,"SOCKNAME":null,"OBPROXY":null}}}]}},
        {"SET":{"ID":3,"TARGETS":[
            {"DEST":{"URI":"sip:10.0.0.9:5070","FLAGS":"AX","PRIORITY":0}}]}},
        {"SET":{"ID":2,"TARGETS":[
            {"DEST":{"URI":"sip:127.0.0.1:5073;transport=tcp","FLAGS":"AX","PRIORITY":0,"ATTRS":{
                "BODY":"socket=udp:127.0.0.1:25060;obproxy=sip:1.2.3.4","DUID":null,"MAXLOAD":0,
                "WEIGHT":0,"RWEIGHT":0,"SOCKET":"udp:127.0.0.1:25060","SOCKNAME":null,
                "OBPROXY":"sip:1.2.3.4"}}}]}}]},"id":7});
    assert_eq!(v, want);
    // Key order is Kamailio's.
    let raw = String::from_utf8(
        handle(
            &s,
            br#"{"jsonrpc":"2.0","method":"dispatcher.list","id":1}"#,
        )
        .body,
    )
    .unwrap();
    let order = [
        "\"URI\"",
        "\"FLAGS\"",
        "\"PRIORITY\"",
        "\"ATTRS\"",
        "\"BODY\"",
        "\"DUID\"",
        "\"MAXLOAD\"",
        "\"WEIGHT\"",
        "\"RWEIGHT\"",
        "\"SOCKET\"",
        "\"SOCKNAME\"",
        "\"OBPROXY\"",
    ];
    let pos: Vec<usize> = order.iter().map(|k| raw.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{raw}");
    assert!(raw.starts_with("{\"jsonrpc\":\"2.0\",\"result\":{\"NRSETS\":3,\"RECORDS\""));
    assert!(raw.trim_end().ends_with(",\"id\":1}"));
}

#[test]
fn list_short_full_and_runtime_blocks() {
    let s = shared(LIST);
    let (_, v) = rpc(&s, "dispatcher.list", json!(["short"]));
    assert!(!v.to_string().contains("ATTRS"));
    let (_, v) = rpc(&s, "dispatcher.list", json!(["full"]));
    let d = &v["result"]["RECORDS"][2]["SET"]["TARGETS"][0]["DEST"];
    assert_eq!(d["HOST"], "127.0.0.1");
    assert_eq!(d["IPADDR"], "127.0.0.1");
    assert_eq!(d["PORT"], 5073);
    assert_eq!(d["PROTOID"], 2);
    assert_eq!(
        (d["DNSTIME_SEC"].clone(), d["DNSTIME_USEC"].clone()),
        (json!(0), json!(0))
    );
    assert!(d.get("ATTRS").is_some());
    // unknown mode: default listing, like Kamailio
    let (st, v) = rpc(&s, "dispatcher.list", json!(["bogus"]));
    assert_eq!((st, v["result"]["NRSETS"].clone()), (200, json!(3)));
    let p = DispatchParams {
        ds_ping_latency_stats: true,
        ds_hash_size: 4,
        ..Default::default()
    };
    let s = shared_with("1 sip:127.0.0.1:5071 0 0 latency=20\n", p, None);
    let (_, v) = rpc(&s, "dispatcher.list", json!([]));
    let d = &v["result"]["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"];
    assert_eq!(
        d["LATENCY"],
        json!({"AVG":20.0,"STD":0.0,"EST":20.0,"MAX":20,"TIMEOUT":0})
    );
    assert_eq!(d["RUNTIME"], json!({"DLGLOAD":0}));
    let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6);
}

#[test]
fn empty_list_is_a_fault() {
    let s = shared("# nothing\n");
    assert_eq!(
        fault(&s, "dispatcher.list", json!([])),
        "No Destination Sets"
    );
}

#[test]
fn set_state_letters_and_faults() {
    let s = shared(LIST);
    let flags = |s: &Control, set: usize, i: usize| {
        let (_, v) = rpc(s, "dispatcher.list", json!([]));
        v["result"]["RECORDS"][set]["SET"]["TARGETS"][i]["DEST"]["FLAGS"].clone()
    };
    for (st, want) in [
        ("ip", "IP"),
        ("a", "AX"),
        ("d", "DX"),
        ("tp", "TP"),
        ("1", "AX"),
        ("0", "IX"),
        ("3p", "TP"),
        ("2p", "DX"),
    ] {
        let (code, v) = rpc(
            &s,
            "dispatcher.set_state",
            json!([st, 1, "SIP:127.0.0.1:5071"]),
        );
        assert_eq!(
            (code, v["result"].clone()),
            (200, json!("Ok. Dispatcher state updated."))
        );
        assert_eq!(flags(&s, 0, 1), want, "{st}");
    }
    // numbers as state and group as string are accepted, like Kamailio's RPC layer
    let (code, _) = rpc(&s, "dispatcher.set_state", json!([1, "1", "all"]));
    assert_eq!(code, 200);
    assert_eq!(
        (flags(&s, 0, 0), flags(&s, 0, 1)),
        (json!("AX"), json!("AX"))
    );
    assert_eq!(
        fault(&s, "dispatcher.set_state", json!(["x", 1, "all"])),
        "Unknown State Value"
    );
    assert_eq!(
        fault(&s, "dispatcher.set_state", json!(["", 1, "all"])),
        "Unknown State Value"
    );
    assert_eq!(
        fault(&s, "dispatcher.set_state", json!(["i", 1, "sip:nope"])),
        "State Update Failed"
    );
    assert_eq!(
        fault(&s, "dispatcher.set_state", json!(["i", 99, "sip:x"])),
        "State Update Failed"
    );
    // unknown set with `all`: Ok, as Kamailio answers
    assert_eq!(
        rpc(&s, "dispatcher.set_state", json!(["i", 99, "all"])).0,
        200
    );
    // `ALL` is not `all`: a URI that matches nothing
    assert_eq!(
        fault(&s, "dispatcher.set_state", json!(["i", 1, "ALL"])),
        "State Update Failed"
    );
    for bad in [
        json!(["i"]),
        json!(["i", 1]),
        json!(["i", "abc", "all"]),
        json!(["i", -1, "all"]),
        json!([[], 1, "all"]),
    ] {
        assert_eq!(
            fault(&s, "dispatcher.set_state", bad.clone()),
            "Invalid Parameters",
            "{bad}"
        );
    }
    // set_duid_state
    assert_eq!(
        rpc(&s, "dispatcher.set_duid_state", json!(["i", 1, "A"])).0,
        200
    );
    assert_eq!(flags(&s, 0, 1), "IX");
    assert_eq!(
        fault(&s, "dispatcher.set_duid_state", json!(["i", 1, "zz"])),
        "State Update Failed"
    );
}

#[test]
fn hash_ping_version_uptime() {
    let s = shared(LIST);
    let (_, v) = rpc(&s, "dispatcher.hash", json!([1000, "alice", "atlanta.com"]));
    assert_eq!(v["result"], json!({"hashid":1053853112u32,"slot":112}));
    let (_, v) = rpc(
        &s,
        "dispatcher.hash",
        json!([10, "a84b4c76e66710@pc33.atlanta.com"]),
    );
    assert_eq!(v["result"], json!({"hashid":2175018094u32,"slot":4}));
    let (_, v) = rpc(&s, "dispatcher.hash", json!([0, "alice"]));
    assert_eq!(v["result"], json!({"hashid":1834153949u32,"slot":0}));
    assert_eq!(
        fault(&s, "dispatcher.hash", json!([10])),
        "Invalid Parameters"
    );

    let (_, v) = rpc(&s, "dispatcher.ping_active", json!([]));
    assert_eq!(v["result"], json!({"OldPingState":1}));
    let (_, v) = rpc(&s, "dispatcher.ping_active", json!([0]));
    assert_eq!(v["result"], json!({"NewPingState":0,"OldPingState":1}));
    assert!(!s.shared().ping_active.load(Ordering::Relaxed));
    let raw = String::from_utf8(
        handle(
            &s,
            br#"{"jsonrpc":"2.0","method":"dispatcher.ping_active","params":[1],"id":2}"#,
        )
        .body,
    )
    .unwrap();
    assert!(
        raw.contains("{\"NewPingState\":1,\"OldPingState\":0}"),
        "{raw}"
    );
    assert_eq!(
        fault(&s, "dispatcher.ping_active", json!(["x"])),
        "Invalid Parameters"
    );

    let (_, v) = rpc(&s, "core.version", json!([]));
    assert!(v["result"].as_str().unwrap().starts_with("sipdisp "));
    let (_, v) = rpc(&s, "core.uptime", json!([]));
    let r = &v["result"];
    assert!(r["uptime"].as_u64().unwrap() < 60);
    assert_eq!(r["now"].as_str().unwrap().len(), 24, "{r}");
    let (_, v) = rpc(&s, "system.listMethods", json!([]));
    assert!(
        v["result"]
            .as_array()
            .unwrap()
            .contains(&json!("dispatcher.add"))
    );
}

#[test]
fn envelope_errors_never_panic() {
    let s = shared(LIST);
    let r = handle(&s, b"garbage");
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse Error"},"id":null})
    );
    let (st, v) = call(&s, r#"{"jsonrpc":"2.0","id":1}"#);
    assert_eq!(
        (st, v["error"]["code"].clone(), v["id"].clone()),
        (400, json!(-32600), json!(1))
    );
    let (st, v) = call(&s, "[1,2]");
    assert_eq!(
        (st, v["error"]["message"].clone()),
        (400, json!("Invalid Request"))
    );
    let (st, v) = call(&s, r#"{"jsonrpc":"2.0","method":"nope.x","id":"abc"}"#);
    assert_eq!(st, 500);
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","error":{"code":500,"message":"Method Not Found"},"id":"abc"})
    );
    // no id: answered without one (as jsonrpcs does); object params ignored
    let (st, v) = call(
        &s,
        r#"{"jsonrpc":"2.0","method":"core.uptime","params":{"a":1}}"#,
    );
    assert_eq!(st, 200);
    assert!(v.get("id").is_none() && v["result"]["uptime"].is_u64());
    // arbitrary bytes and deep nesting
    for body in [
        &b"\xff\xfe"[..],
        b"",
        b"{\"method\":1}",
        &[b'['; 100_000][..],
    ] {
        let r = handle(&s, body);
        assert!(r.status == 400 || r.status == 500, "{}", r.status);
    }
}

#[test]
fn ctime_format() {
    let t = UNIX_EPOCH + Duration::from_secs(1_795_451_635); // 2026-11-23 16:33:55 UTC
    assert_eq!(ctime(t), "Mon Nov 23 16:33:55 2026");
    assert_eq!(ctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
    assert_eq!(
        ctime(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "Tue Feb 29 00:00:00 2000"
    );
}

/// `sip:a` … `sip:z` → `sip:127.0.1.97` …: IP literals, so building a plane needs no DNS.
fn ips(t: &str) -> String {
    let b = t.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if t[i..].starts_with("sip:")
            && b.get(i + 4).is_some_and(u8::is_ascii_lowercase)
            && !b
                .get(i + 5)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            out.push_str(&format!("sip:127.0.1.{}", b[i + 4]));
            i += 5;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn letter(uri: &str) -> String {
    match uri
        .strip_prefix("127.0.1.")
        .and_then(|n| n.parse::<u8>().ok())
    {
        Some(c) => (c as char).to_string(),
        None => uri.to_owned(),
    }
}

fn temp_list(tag: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sipdisp-rpc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("d.list");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

fn uris(s: &Control) -> Vec<(u32, String, String)> {
    let plane = s.shared().plane.load();
    plane
        .snapshot
        .sets()
        .iter()
        .flat_map(|set| {
            set.destinations().iter().map(move |d| {
                (
                    set.id.0,
                    letter(&String::from_utf8_lossy(&d.uri[4..])),
                    String::from_utf8_lossy(&d.flags().letters()).into_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn reload_keeps_old_plane_on_errors_and_carries_state() {
    let text = &ips("1 sip:a\n1 sip:b\n");
    let (dir, p) = temp_list("reload", text);
    let params = DispatchParams {
        reload_delta: Duration::ZERO,
        ..Default::default()
    };
    let s = shared_with(text, params, Some(p.clone()));
    rpc(&s, "dispatcher.set_state", json!(["ip", 1, ips("sip:a")]));
    std::fs::write(&p, ips("1 sip:a\n7\n1 sip:c\n9   # no uri\n")).unwrap();
    let (st, v) = rpc(&s, "dispatcher.reload", json!([]));
    assert_eq!(
        (st, v["error"]["message"].clone()),
        (500, json!("Reload Failed"))
    );
    let data = v["error"]["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{v}");
    assert!(data[0].as_str().unwrap().contains("d.list:2: uri"), "{v}");
    assert!(data[1].as_str().unwrap().contains("d.list:4: uri"), "{v}");
    assert_eq!(
        uris(&s),
        [(1, "b".into(), "AX".into()), (1, "a".into(), "IP".into())]
    );
    std::fs::write(&p, ips("1 sip:a\n1 sip:c\n2 sip:d\n")).unwrap();
    let (st, v) = rpc(&s, "dispatcher.reload", json!([]));
    assert_eq!(
        (st, v["result"].clone()),
        (200, json!("Ok. Dispatcher successfully reloaded."))
    );
    assert_eq!(
        uris(&s),
        [
            (2, "d".into(), "AX".into()),
            (1, "c".into(), "AX".into()),
            (1, "a".into(), "IP".into())
        ]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn add_remove_follow_kamailio_rebuild_and_rate_limit() {
    let text = &ips("1 sip:a\n1 sip:b\n5 sip:p\n");
    let (dir, p) = temp_list("addrm", text);
    let params = DispatchParams {
        reload_delta: Duration::ZERO,
        ..Default::default()
    };
    let s = shared_with(text, params, Some(p.clone()));
    let ids = |s: &Control| -> Vec<u32> {
        s.shared()
            .plane
            .load()
            .snapshot
            .sets()
            .iter()
            .map(|x| x.id.0)
            .collect()
    };
    // file order 1,5 -> listed 5,1; array [b,a]
    assert_eq!(ids(&s), [5, 1]);
    rpc(&s, "dispatcher.set_state", json!(["d", 1, ips("sip:a")]));
    // §8 [V]: an add to another set reverses set 1 to [a,b] and the set order to 1,5 ...
    let (st, v) = rpc(&s, "dispatcher.add", json!([7, ips("sip:x")]));
    assert_eq!(
        (st, v["result"].clone()),
        (200, json!("Ok. Dispatcher destination added."))
    );
    assert_eq!(ids(&s), [1, 7, 5]);
    assert_eq!(
        uris(&s)[..2],
        [(1, "a".into(), "DX".into()), (1, "b".into(), "AX".into())]
    );
    // ... adding x to set 1 gives [x, b, a]; removing b gives [a, x]
    rpc(
        &s,
        "dispatcher.add",
        json!([1, ips("sip:x"), 0, 0, "duid=x"]),
    );
    let set1: Vec<String> = uris(&s)
        .into_iter()
        .filter(|u| u.0 == 1)
        .map(|u| u.1)
        .collect();
    assert_eq!(set1, ["x", "b", "a"]);
    assert_eq!(
        rpc(&s, "dispatcher.remove", json!([1, ips("sip:b")])).0,
        200
    );
    let set1: Vec<(String, String)> = uris(&s)
        .into_iter()
        .filter(|u| u.0 == 1)
        .map(|u| (u.1, u.2))
        .collect();
    assert_eq!(set1, [("a".into(), "DX".into()), ("x".into(), "AX".into())]);
    // removing nothing still answers Ok; a bad address is a fault
    assert_eq!(
        rpc(&s, "dispatcher.remove", json!([1, ips("sip:zz")])).0,
        200
    );
    assert_eq!(
        fault(&s, "dispatcher.remove", json!([1, "!!"])),
        "Removing dispatcher dst failed"
    );
    assert_eq!(
        fault(&s, "dispatcher.add", json!([1, "!!"])),
        "Adding dispatcher dst failed"
    );
    assert_eq!(
        fault(&s, "dispatcher.add", json!([1])),
        "Invalid Parameters"
    );
    assert_eq!(
        fault(&s, "dispatcher.add", json!([1, ips("sip:y"), -1])),
        "Invalid Parameters"
    );
    // memory only: the file is untouched without persist_rpc_changes
    assert_eq!(std::fs::read_to_string(&p).unwrap(), *text);

    // the rate limit is shared by reload/add/remove and taken before the work
    let s = shared_with(text, DispatchParams::default(), Some(p.clone()));
    assert_eq!(
        fault(&s, "dispatcher.add", json!([1, "!!"])),
        "Adding dispatcher dst failed"
    );
    assert_eq!(fault(&s, "dispatcher.reload", json!([])), "Ongoing reload");
    assert_eq!(
        fault(&s, "dispatcher.remove", json!([1, ips("sip:a")])),
        "Ongoing reload"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn persist_rpc_changes_rewrites_the_file() {
    let text = &ips("# gateways\n1 sip:a 0 0 duid=a # first\n\n1 sip:b\n2 sip:b\n");
    let (dir, p) = temp_list("persist", text);
    let params = DispatchParams {
        reload_delta: Duration::ZERO,
        ..Default::default()
    };
    let l = parse_list("t", text.as_bytes(), &params, &LoadHooks::default()).unwrap();
    let plane = plane_from(
        Snapshot::build(&l.entries, params.clone(), 1),
        "t",
        &mut Vec::new(),
    );
    let s = Control::new(
        Arc::new(Shared::new(plane, 1, Backend::Memory)),
        crate::source::Source::File(p.clone()),
        params,
        true,
    );
    assert_eq!(
        rpc(
            &s,
            "dispatcher.add",
            json!([3, "10.0.0.1:5070", 8, 2, "weight=5"])
        )
        .0,
        200
    );
    assert_eq!(
        rpc(&s, "dispatcher.remove", json!([1, ips("sip:b")])).0,
        200
    );
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        ips("# gateways\n1 sip:a 0 0 duid=a # first\n\n2 sip:b\n3 10.0.0.1:5070 8 2 weight=5\n")
    );
    // a reload of the rewritten file gives the same destinations
    assert_eq!(rpc(&s, "dispatcher.reload", json!([])).0, 200);
    let mut got = uris(&s);
    got.sort();
    assert_eq!(
        got,
        [
            (1, "a".into(), "AX".into()),
            (2, "b".into(), "AX".into()),
            (3, "10.0.0.1:5070".into(), "AP".into())
        ]
    );
    std::fs::remove_dir_all(dir).unwrap();
}
