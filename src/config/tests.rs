//! Table-driven tests of the whole file: valid configurations, defaults, and one case per kind
//! of error with its exact `file:line:col: key:` prefix.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::dispatch::{Algorithm, HashFailover, SetId};
use crate::netio::DatapathChoice;

const FILE: &str = "/etc/sipdisp/sipdisp.toml";

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new(FILE))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn empty_file_is_all_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.server, Server::default());
    assert_eq!(c.server.listen[0].to_string(), "udp:127.0.0.1:5060");
    assert_eq!(c.server.max_forwards, 70);
    assert_eq!(c.server.datapath, DatapathChoice::Auto);
    assert_eq!(c.admin, Admin::default());
    assert_eq!(
        c.dispatcher.params,
        crate::dispatch::DispatchParams::default()
    );
    assert_eq!(
        c.dispatcher.list_file,
        Path::new("/etc/sipdisp/dispatcher.list")
    );
    assert_eq!(c.dispatcher.hash_pvar, None);
    assert_eq!(c.routes, vec![Route::default_route()]);
    let Action::Select(s) = &c.routes[0].action else {
        panic!()
    };
    assert_eq!(
        (s.rules[0].set, s.rules[0].alg),
        (SetId(1), Algorithm::RoundRobin)
    );
    assert_eq!((s.mode, s.limit), (SelectMode::Dst, None));
}

const FULL: &str = r#"
[server]
listen = ["udp:0.0.0.0:5060", "udp:[::]:5062", "10.0.0.1"]
advertise = "sip.example.com:5060"
workers = 4
datapath = "mmsg"
record_route = true
max_forwards = 30
recv_buffer_size = 8388608
send_buffer_size = 65536

[admin]
listen = "0.0.0.0:9090"
token = "s3cret-s3cret-s3cret"

[dispatcher]
list_file = "lists/gw.list"
hash_pvar = "$fU@$hdr(X-Tenant)"
event_hook = "/usr/bin/hook"
flags = 3
use_default = true
force_dst = 0
ds_probing_threshold = 3
ds_inactive_threshold = 2
ds_probing_mode = 1
ds_ping_interval = 10
ds_ping_method = "INFO"
ds_ping_from = "sip:lb@example.com"
ds_ping_reply_codes = "class=2;code=403"
ds_ping_latency_stats = 1
ds_latency_estimator_alpha = 500
ds_hash_size = 9
ds_hash_expire = 3600
ds_hash_initexpire = 60
ds_hash_check_interval = 15
ds_load_mode = 1
ds_attrs_none = 1
reload_delta = 0
ds_dns_mode = 2
ds_dns_interval = 60
ds_timer_mode = 1
xavp_dst = ""
xavp_ctx = "ctx"
ds_default_socket = "udp:10.0.0.1:5060"
ds_default_sockname = "main"
outbound_proxy = "sip:obp.example.com"
hex_flags = false
hash_failover = "rendezvous"
retain_state = false

[[route]]
name = "from-gateways"
methods = ["INVITE", "OPTIONS"]
source_in_set = 2
source_mode = 3
ruri_user_prefix = "+49"
header = "X-Tenant"
header_value = "  acme "
select = "1=7;2=0"
mode = "ruri"
limit = 2

[[route]]
source_in_set = "any"
reply = { code = 403, reason = "Go away" }

[[route]]
name = "rest"
reply = 503
"#;

#[test]
fn full_config() {
    let c = parse(FULL).unwrap();
    let s = &c.server;
    let listen: Vec<String> = s.listen.iter().map(ToString::to_string).collect();
    assert_eq!(
        listen,
        ["udp:0.0.0.0:5060", "udp:[::]:5062", "udp:10.0.0.1:5060"]
    );
    assert_eq!(
        s.advertise.as_ref().unwrap().to_string(),
        "sip.example.com:5060"
    );
    assert_eq!(s.workers, NonZeroUsize::new(4));
    assert_eq!(s.worker_count(), 4);
    assert_eq!(s.datapath, DatapathChoice::Mmsg);
    assert!(s.record_route);
    assert_eq!(s.max_forwards, 30);
    assert_eq!(
        (s.recv_buffer_size, s.send_buffer_size),
        (Some(8 << 20), Some(65536))
    );

    assert_eq!(c.admin.listen, Some("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(c.admin.token, Some(Secret("s3cret-s3cret-s3cret".into())));
    assert!(!format!("{:?}", c.admin).contains("s3cret-s3cret-s3cret"));

    let d = &c.dispatcher;
    assert_eq!(d.list_file, Path::new("/etc/sipdisp/lists/gw.list"));
    assert_eq!(d.event_hook.as_deref(), Some(Path::new("/usr/bin/hook")));
    assert_eq!(d.hash_pvar.as_ref().unwrap().compiled.parts().len(), 3);
    let p = &d.params;
    assert_eq!((p.flags, p.use_default, p.force_dst), (3, true, false));
    assert_eq!(
        (
            p.ds_probing_threshold,
            p.ds_inactive_threshold,
            p.ds_probing_mode
        ),
        (3, 2, 1)
    );
    assert_eq!(p.ds_ping_interval, Some(Duration::from_secs(10)));
    assert_eq!(
        (
            p.ds_ping_method.as_str(),
            p.ds_ping_from.as_str(),
            p.ds_ping_reply_codes.as_str()
        ),
        ("INFO", "sip:lb@example.com", "class=2;code=403")
    );
    assert!(p.ds_ping_latency_stats);
    assert_eq!((p.ds_latency_estimator_alpha, p.ds_hash_size), (500, 9));
    assert_eq!(p.ds_hash_expire, Duration::from_secs(3600));
    assert_eq!(p.ds_hash_initexpire, Duration::from_secs(60));
    assert_eq!(p.ds_hash_check_interval, Duration::from_secs(15));
    assert_eq!((p.ds_load_mode, p.ds_attrs_none), (1, true));
    assert_eq!(p.reload_delta, Duration::ZERO);
    assert_eq!((p.ds_dns_mode, p.ds_timer_mode), (2, 1));
    assert_eq!(p.ds_dns_interval, Duration::from_secs(60));
    assert_eq!((p.xavp_dst.as_str(), p.xavp_ctx.as_str()), ("", "ctx"));
    assert_eq!(p.ds_default_socket.as_deref(), Some("udp:10.0.0.1:5060"));
    assert_eq!(p.ds_default_sockname.as_deref(), Some("main"));
    assert_eq!(p.outbound_proxy.as_deref(), Some("sip:obp.example.com"));
    assert_eq!(
        (p.hex_flags, p.hash_failover, p.retain_state),
        (false, HashFailover::Rendezvous, false)
    );

    assert_eq!(c.routes.len(), 3);
    let r = &c.routes[0];
    assert_eq!((r.name.as_str(), r.line), ("from-gateways", 51));
    assert_eq!(r.methods, ["INVITE", "OPTIONS"]);
    assert_eq!(
        r.source,
        Some(SourceMatch {
            set: Some(SetId(2)),
            mode: 3
        })
    );
    assert_eq!(r.ruri_user_prefix.as_deref(), Some("+49"));
    assert_eq!(
        r.header,
        Some(HeaderMatch {
            name: "X-Tenant".into(),
            value: Some("acme".into())
        })
    );
    let Action::Select(s) = &r.action else {
        panic!("{r:?}")
    };
    assert_eq!(s.text, "1=7;2=0");
    assert_eq!(s.rules.len(), 2);
    assert_eq!((s.mode, s.limit), (SelectMode::Ruri, NonZeroU32::new(2)));
    let r = &c.routes[1];
    assert_eq!(r.name, "route[2]");
    assert_eq!(r.source.unwrap().set, None);
    assert_eq!(r.source.unwrap().mode, FROM_LIST_IGNORE_PROTO);
    assert_eq!(
        r.action,
        Action::Reply(Reply {
            code: 403,
            reason: "Go away".into()
        })
    );
    assert_eq!(
        c.routes[2].action,
        Action::Reply(Reply {
            code: 503,
            reason: "Service Unavailable".into()
        })
    );
    assert_eq!(
        c.routes[0].to_string(),
        "from-gateways: method INVITE|OPTIONS source in set 2 (mode 3) R-URI user \"+49\"* \
         header X-Tenant=\"acme\" -> select 1=7;2=0 mode ruri limit 2"
    );
}

/// (what, file text, expected errors: each a full `file:line:col: key: …` prefix).
const ERROR_CASES: &[(&str, &str, &[&str])] = &[
    (
        "unknown top-level key",
        "[server]\nworkers = 1\n[sever]\n",
        &[
            "sipdisp.toml:3:2: sever: unknown key (expected one of: server, admin, dispatcher, route, tm, pike)",
        ],
    ),
    (
        "unknown key in server",
        "[server]\nworkers = 1\nlisten_port = 5060\n",
        &["sipdisp.toml:3:1: server.listen_port: unknown key (expected one of: listen,"],
    ),
    (
        "unknown key in admin",
        "[admin]\nport = 9090\n",
        &["sipdisp.toml:2:1: admin.port: unknown key"],
    ),
    (
        "unknown key in dispatcher",
        "[dispatcher]\nds_ping_intervall = 10\n",
        &["sipdisp.toml:2:1: dispatcher.ds_ping_intervall: unknown key"],
    ),
    (
        "Kamailio parameter sipdisp does not support",
        "[dispatcher]\nsetid_pvname = \"$avp(s)\"\n",
        &[
            "sipdisp.toml:2:1: dispatcher.setid_pvname: not supported: Kamailio parameter `setid_pvname`",
        ],
    ),
    (
        "a database URL in no form Kamailio knows",
        "[dispatcher]\ndb_url = \"mysql://x\"\n",
        &[
            "sipdisp.toml:2:10: dispatcher.db_url: expected a database name after the host (…@host/database), got \"mysql://x\"",
        ],
    ),
    (
        "a database timeout of zero",
        "[dispatcher]\ndb_url = \"sqlite://x.db\"\ndb_timeout = 0\n",
        &["sipdisp.toml:3:14: dispatcher.db_timeout: expected a positive number of seconds, got 0"],
    ),
    (
        "a database timeout without a database",
        "[dispatcher]\ndb_timeout = 2\n",
        &[
            "sipdisp.toml:2:14: dispatcher.db_timeout: `db_timeout` needs `db_url` (the database source)",
        ],
    ),
    (
        "unknown key in a route",
        "[[route]]\nselect = \"1=4\"\n\n[[route]]\nreply = 404\nmethod = \"INVITE\"\n",
        &["sipdisp.toml:6:1: route[2].method: unknown key"],
    ),
    (
        "wrong type",
        "[server]\nworkers = \"4\"\nrecord_route = \"yes\"\n",
        &[
            "sipdisp.toml:2:11: server.workers: expected an integer, got a string",
            "sipdisp.toml:3:16: server.record_route: expected a boolean (true/false or 1/0), got a string",
        ],
    ),
    (
        "section of the wrong type",
        "server = 1\n",
        &["sipdisp.toml:1:10: server: expected a table, got an integer"],
    ),
    (
        "bad listen addresses, all of them",
        "[server]\nlisten = [\"udp:localhost:5060\", \"tcp:127.0.0.1:5060\", \"127.0.0.1:99999\"]\n",
        &[
            "sipdisp.toml:2:11: server.listen: expected [udp:]IP[:port]",
            "sipdisp.toml:2:33: server.listen: not supported: tcp listeners are not supported yet (only udp)",
            "sipdisp.toml:2:55: server.listen: expected [udp:]IP[:port]",
        ],
    ),
    (
        "duplicate listen address",
        "[server]\nlisten = [\"127.0.0.1:5060\", \"udp:127.0.0.1\"]\n",
        &["sipdisp.toml:2:29: server.listen: expected each address once, got udp:127.0.0.1"],
    ),
    (
        "unspecified listen address without advertise",
        "[server]\nlisten = [\"0.0.0.0:5060\"]\n",
        &["sipdisp.toml:2:10: server.advertise: a listen address is unspecified"],
    ),
    (
        "a bad listen address does not hide the missing advertise",
        "[server]\nlisten = [\"0.0.0.0:5060\", \"127.0.0.1:99999\"]\n",
        &[
            "sipdisp.toml:2:10: server.advertise: a listen address is unspecified",
            "sipdisp.toml:2:27: server.listen: expected [udp:]IP[:port]",
        ],
    ),
    (
        "bad datapath",
        "[server]\ndatapath = \"uring\"\n",
        &[
            "sipdisp.toml:2:12: server.datapath: expected \"auto\", \"io_uring\" or \"mmsg\", got \"uring\"",
        ],
    ),
    (
        "out of range",
        "[server]\nmax_forwards = 0\n[dispatcher]\nds_probing_mode = 4\nds_latency_estimator_alpha = 1000\n",
        &[
            "sipdisp.toml:2:16: server.max_forwards: expected an integer in 1..=255, got 0",
            "sipdisp.toml:4:19: dispatcher.ds_probing_mode: expected an integer in 0..=3, got 4",
            "sipdisp.toml:5:30: dispatcher.ds_latency_estimator_alpha: expected an integer in 1..=999, got 1000",
        ],
    ),
    (
        "bad select rules",
        "[[route]]\nselect = \"1=4,2=0\"\n",
        &[
            "sipdisp.toml:2:10: route[1].select: expected rules \"set=alg;set=alg…\" (';' between rules at byte 3), got \"1=4,2=0\"",
        ],
    ),
    (
        "unknown algorithm",
        "[[route]]\nselect = \"1=4;2=99\"\n",
        &["sipdisp.toml:2:10: route[1].select: expected algorithms 0..=13"],
    ),
    (
        "algorithm 7 without hash_pvar",
        "[[route]]\nselect = \"1=7\"\n",
        &[
            "sipdisp.toml:2:10: route[1].select: rule 1=7 hashes [dispatcher] hash_pvar, which is not set",
        ],
    ),
    (
        "reply code out of range",
        "[[route]]\nreply = 180\n[[route]]\nreply = { code = 700 }\n",
        &[
            "sipdisp.toml:2:9: route[1].reply: expected a status code in 200..=699",
            "sipdisp.toml:4:9: route[2].reply: expected a status code in 200..=699",
        ],
    ),
    (
        "reply table with an unknown key",
        "[[route]]\nreply = { code = 403, text = \"x\" }\n",
        &[
            "sipdisp.toml:2:23: route[1].reply: expected a status code or { code = N, reason = \"…\" }, got unknown field `text`",
        ],
    ),
    (
        "route with two actions",
        "[[route]]\nname = \"x\"\nselect = \"1=4\"\nreply = 403\n",
        &["sipdisp.toml:4:9: route[1].reply: a route has exactly one action"],
    ),
    (
        "route without action",
        "[[route]]\nname = \"x\"\nmethods = [\"INVITE\"]\n",
        &["sipdisp.toml:1:1: route[1]: a route needs an action"],
    ),
    (
        "select options on a reply route, conditions without their key",
        "[[route]]\nreply = 403\nmode = \"dst\"\nsource_mode = 1\nheader_value = \"a\"\n",
        &[
            "sipdisp.toml:3:8: route[1].mode: `mode` belongs to `select`",
            "sipdisp.toml:4:15: route[1].source_mode: `source_mode` needs `source_in_set`",
            "sipdisp.toml:5:16: route[1].header_value: `header_value` needs `header`",
        ],
    ),
    (
        "bad route conditions",
        "[[route]]\nmethods = [\"invite\"]\nsource_in_set = \"all\"\nmode = \"domain\"\nselect = \"1=4\"\n",
        &[
            "sipdisp.toml:2:12: route[1].methods: expected a SIP method as sent",
            "sipdisp.toml:3:17: route[1].source_in_set: expected a set id or \"any\", got \"all\"",
            "sipdisp.toml:4:8: route[1].mode: expected \"dst\" or \"ruri\", got \"domain\"",
        ],
    ),
    (
        "duplicate route names",
        "[[route]]\nname = \"a\"\nreply = 403\n[[route]]\nname = \"a\"\nreply = 404\n",
        &["sipdisp.toml:5:8: route[2].name: expected a name not used by another route, got \"a\""],
    ),
    (
        "[route] instead of [[route]]",
        "[route]\nreply = 403\n",
        &["sipdisp.toml:1:1: route: expected an array of tables `[[route]]`"],
    ),
    (
        "non-loopback admin without token",
        "[admin]\nlisten = \"192.0.2.1:9090\"\n",
        &[
            "sipdisp.toml:2:10: admin.listen: admin listen 192.0.2.1:9090 is not a loopback address: set `token` or `token_file`",
        ],
    ),
    (
        "admin token and token_file",
        "[admin]\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\ntoken_file = \"/nonexistent/token\"\n",
        &[
            "sipdisp.toml:2:9: admin.token: give either `token` or `token_file`, not both",
            "sipdisp.toml:3:14: admin.token_file: cannot read /nonexistent/token",
        ],
    ),
    (
        "hash_pvar with an unsupported variable",
        "[dispatcher]\nhash_pvar = \"$fU-$var(x)\"\n\n[[route]]\nselect = \"1=7\"\n",
        &[
            "sipdisp.toml:2:13: dispatcher.hash_pvar: \"$fU-$var(x)\": at byte 4: unsupported variable \"$var\"",
        ],
    ),
    (
        "bad dispatcher strings",
        "[dispatcher]\nds_ping_from = \"dispatcher@localhost\"\nhash_failover = \"random\"\nds_ping_reply_codes = \"403\"\n",
        &[
            "sipdisp.toml:2:16: dispatcher.ds_ping_from: expected a SIP URI (sip:…)",
            "sipdisp.toml:3:17: dispatcher.hash_failover: expected \"next-index\" or \"rendezvous\"",
            "sipdisp.toml:4:23: dispatcher.ds_ping_reply_codes: expected `code=NNN`",
        ],
    ),
    (
        "TOML syntax",
        "[server]\nworkers = 4\nlisten = [\"127.0.0.1\"\n",
        &["sipdisp.toml:"],
    ),
];

#[test]
fn every_error_is_located() {
    for (what, text, want) in ERROR_CASES {
        let got = errors(text);
        assert_eq!(got.len(), want.len(), "{what}: {got:#?}");
        for (g, w) in got.iter().zip(want.iter()) {
            let w = format!("/etc/sipdisp/{w}");
            assert!(g.starts_with(&w), "{what}:\n got  {g}\n want {w}…");
        }
    }
}

#[test]
fn errors_are_collected_across_sections() {
    let text = "[server]\nworkers = -1\n[admin]\nbogus = 1\n[dispatcher]\nflags = 8\n\
                [[route]]\nselect = \"x\"\n";
    let e = parse(text).unwrap_err();
    let lines: Vec<u32> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 6, 8]);
    assert_eq!(e.to_string().lines().count(), 4);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let cwd = std::env::current_dir().unwrap();
    let text = "[dispatcher]\nlist_file = \"../lists/d.list\"\nevent_hook = \"hook.sh\"\n";
    let c = Config::parse(text, Path::new("conf/sub/sipdisp.toml")).unwrap();
    assert_eq!(c.dispatcher.list_file, cwd.join("conf/sub/../lists/d.list"));
    assert_eq!(c.dispatcher.event_hook, Some(cwd.join("conf/sub/hook.sh")));
    let c = Config::parse(
        "[dispatcher]\nlist_file = \"/abs/d.list\"\n",
        Path::new("x/s.toml"),
    )
    .unwrap();
    assert_eq!(c.dispatcher.list_file, Path::new("/abs/d.list"));
    let c = Config::parse("", Path::new("sipdisp.toml")).unwrap();
    assert_eq!(c.dispatcher.list_file, cwd.join("dispatcher.list"));
    // A bare hook name next to a bare --config is the file beside it, not a $PATH lookup
    // (issue 15): the path is absolute.
    let c = Config::parse(
        "[dispatcher]\nevent_hook = \"hook.sh\"\n",
        Path::new("sipdisp.toml"),
    )
    .unwrap();
    let hook = c.dispatcher.event_hook.unwrap();
    assert!(hook.is_absolute(), "{hook:?}");
    assert_eq!(hook, cwd.join("hook.sh"));
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sipdisp-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn load_reads_the_file_and_token_file() {
    let d = temp_dir("load");
    std::fs::write(d.join("admin.token"), "  0123456789abcdef\n").unwrap();
    let cfg = d.join("sipdisp.toml");
    std::fs::write(
        &cfg,
        "[admin]\nlisten = \"[::]:9090\"\ntoken_file = \"admin.token\"\n",
    )
    .unwrap();
    let c = Config::load(&cfg).unwrap();
    assert_eq!(c.admin.token, Some(Secret("0123456789abcdef".into())));
    // A short token is refused, from the file or inline, without echoing it.
    std::fs::write(d.join("admin.token"), "tok\n").unwrap();
    let e = Config::load(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("admin.token_file: expected a token of at least 16 characters")
            && e.contains("got 3 characters"),
        "{e}"
    );
    assert!(!e.contains("tok\n") && !e.contains("\"tok\""), "{e}");
    assert_eq!(c.admin.token_file, Some(d.join("admin.token")));
    let missing = d.join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read:", missing.display())),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn check_reports_list_errors_and_route_warnings() {
    let d = temp_dir("check");
    let cfg = d.join("sipdisp.toml");
    std::fs::write(
        &cfg,
        "[[route]]\nname = \"all\"\nselect = \"1=4;3=10\"\n[[route]]\nname = \"late\"\nreply = 404\n",
    )
    .unwrap();
    std::fs::write(
        d.join("dispatcher.list"),
        "1 sip:127.0.0.1:5070\n2\n3 sip:a b\n5 x\n",
    )
    .unwrap();
    let r = check(&cfg);
    assert!(!r.ok());
    let errors: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
    let list = d.join("dispatcher.list").display().to_string();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("{list}:2: uri:")),
        "{errors:#?}"
    );
    // The line that fails the load does not hide the others' problems.
    let warnings: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with(&format!("{list}:3: "))),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with(&format!("{list}:4: "))),
        "{warnings:#?}"
    );

    std::fs::write(
        d.join("dispatcher.list"),
        "1 sip:127.0.0.1:5070\n1 sip:127.0.0.1:5071\n",
    )
    .unwrap();
    // A selected set missing from the list is an error (`run` would answer 503)...
    let r = check(&cfg);
    let errors: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
    let file = cfg.display();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!(
            "{file}:1:1: all.select: set 3 is not in {list}: every request"
        )),
        "{errors:#?}"
    );
    // ...unless the route allows it.
    std::fs::write(
        &cfg,
        "[[route]]\nname = \"all\"\nselect = \"1=4;3=10\"\nallow_missing_set = true\n\
         [[route]]\nname = \"late\"\nreply = 404\n",
    )
    .unwrap();
    let r = check(&cfg);
    assert!(r.ok(), "{:#?}", r.errors);
    let warnings: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            format!("{file}:1:1: all.select: set 3 is not in {list} (allowed)"),
            format!(
                "{file}:1:1: all.select: rule 3=10 with ds_hash_size = 0: picks the least \
                 loaded destination but counts no calls"
            ),
            format!(
                "{file}:5:1: late.name: unreachable: route \"all\" before it matches every request"
            ),
        ]
    );
    let s = r.summary.unwrap();
    assert_eq!(s.sets, [(SetId(1), 2)]);
    assert_eq!(s.routes.len(), 2);

    std::fs::remove_file(d.join("dispatcher.list")).unwrap();
    let r = check(&cfg);
    assert!(!r.ok());
    assert!(
        r.errors[0].to_string().contains("cannot read"),
        "{:?}",
        r.errors
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn sysconfig_defaults_load_and_check_clean() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sysconfig/sipdisp.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // The file spells out every default: it must equal an empty configuration.
    let defaults = Config::parse("", &path).unwrap();
    assert_eq!(c.server, defaults.server);
    // Except [admin] listen: the shipped file enables the control plane on loopback.
    assert_eq!(c.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!((&c.admin.token, &c.admin.token_file), (&None, &None));
    assert_eq!(c.dispatcher, defaults.dispatcher);
    let mut routes = c.routes.clone();
    routes.iter_mut().for_each(|r| r.line = 0);
    assert_eq!(routes, defaults.routes);

    let r = check(&path);
    assert!(r.ok(), "{:#?}", r.errors);
    assert!(r.warnings.is_empty(), "{:#?}", r.warnings);
    let s = r.summary.unwrap();
    assert_eq!(s.sets, [(SetId(1), 2)]);
    assert_eq!(s.listen, ["udp:127.0.0.1:5060"]);
    let list = r.list.unwrap();
    let uris: Vec<&[u8]> = list.entries.iter().map(|e| &*e.uri).collect();
    assert_eq!(uris, [&b"sip:127.0.0.1:5070"[..], b"sip:127.0.0.1:5071"]);

    let mut out = Vec::new();
    let mut err = Vec::new();
    assert_eq!(
        crate::cli::print_report(&r_again(&path), &mut out, &mut err),
        0
    );
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("set 1: 2 destinations"), "{out}");
    assert!(
        out.contains("default: every request -> select 1=4 mode dst"),
        "{out}"
    );
    assert!(err.is_empty());
}

fn r_again(path: &Path) -> CheckReport {
    check(path)
}

#[test]
fn documented_route_example_parses() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let after = doc.split("### Examples").nth(1).expect("examples section");
    let block = after
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let text = format!("[dispatcher]\nhash_pvar = \"$fU\"\n{block}");
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backend-keepalive",
            "from-gateways",
            "tenant-acme",
            "germany",
            "refuse"
        ]
    );
}

#[test]
fn config_warnings_name_unsupported_dns_modes_and_failover_without_flags() {
    let c = parse("[dispatcher]\nds_dns_mode = 1\n").unwrap();
    assert!(config_warnings(&c).is_empty());
    let c = parse("[dispatcher]\nds_dns_mode = 5\n").unwrap();
    let w: Vec<String> = config_warnings(&c)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("ds_dns_mode") && w[0].contains("resolved once"),
        "{w:?}"
    );
    let route = "[[route]]\nselect = \"1=4\"\nfailover = true\n";
    let c = parse(&format!("[dispatcher]\nflags = 0\n{route}")).unwrap();
    let w: Vec<String> = config_warnings(&c)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("flags = 2"), "{w:?}");
    let c = parse(&format!("[dispatcher]\nflags = 2\n{route}")).unwrap();
    assert!(config_warnings(&c).is_empty());
}

#[test]
fn check_resolves_host_names_as_run_does() {
    let d = temp_dir("resolve");
    let cfg = d.join("sipdisp.toml");
    std::fs::write(&cfg, "").unwrap();
    std::fs::write(
        d.join("dispatcher.list"),
        "1 sip:nowhere.invalid\n1 sip:127.0.0.1:5070\n",
    )
    .unwrap();
    let r = check(&cfg);
    assert!(r.ok(), "{:#?}", r.errors);
    let warnings: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].ends_with(":1: uri: host \"nowhere.invalid\" does not resolve (destination rejected, as Kamailio does)"),
        "{warnings:#?}"
    );
    assert_eq!(r.summary.unwrap().sets, [(SetId(1), 1)]);
    // ds_load_mode = 1: the unresolvable destination fails the load, as in Kamailio.
    std::fs::write(&cfg, "[dispatcher]\nds_load_mode = 1\n").unwrap();
    let r = check(&cfg);
    assert!(!r.ok());
    assert!(
        r.errors[0].to_string().contains("does not resolve"),
        "{:?}",
        r.errors
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// Keys the docs tell an operator to change exist (issue 15: `socket_buffer` did not), and
/// the scrape example uses the shipped admin port (it said 9060).
#[test]
fn docs_name_real_keys_and_the_shipped_admin_port() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let known: Vec<&str> = [
        super::server::SERVER_KEYS,
        super::server::ADMIN_KEYS,
        super::dispatcher::DISPATCHER_KEYS,
        super::route::ROUTE_KEYS,
        super::tm::TM_KEYS,
        super::pike::PIKE_KEYS,
    ]
    .concat();
    let mut bad = Vec::new();
    for doc in ["README.md", "docs/operations.md", "docs/architecture.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for verb in ["raise `", "set `", "lower `", "shorten `"] {
            for (i, _) in text.match_indices(verb) {
                let rest = &text[i + verb.len()..];
                let key = rest.split('`').next().unwrap_or("");
                let key = key.split_whitespace().next().unwrap_or("");
                if !known.contains(&key) {
                    bad.push(format!("{doc}: {verb}{key}`: not a configuration key"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    let shipped = Config::load(&root.join("sysconfig/sipdisp.toml")).unwrap();
    let admin = shipped
        .admin
        .listen
        .expect("the shipped file enables [admin]");
    let ops = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    assert!(
        ops.contains(&format!("targets: ['{admin}']")),
        "docs/operations.md scrapes another address than the shipped {admin}"
    );
}

/// The container image's configuration (issue 14: the Dockerfile's `sed` broke the shipped
/// one) checks clean with the shipped list beside it, as the image lays them out.
#[test]
fn container_config_checks_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = temp_dir("container");
    std::fs::copy(
        root.join("packaging/container/sipdisp.toml"),
        d.join("sipdisp.toml"),
    )
    .unwrap();
    std::fs::copy(
        root.join("sysconfig/dispatcher.list"),
        d.join("dispatcher.list"),
    )
    .unwrap();
    let r = check(&d.join("sipdisp.toml"));
    assert!(
        r.ok() && r.warnings.is_empty(),
        "{:#?} {:#?}",
        r.errors,
        r.warnings
    );
    let c = r.config.unwrap();
    assert!(c.server.listen[0].addr.ip().is_unspecified());
    assert!(c.server.advertise.is_some());
    std::fs::remove_dir_all(&d).unwrap();
}
