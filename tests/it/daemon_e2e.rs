//! The real binary over real sockets: sipp calls through sipdisp on both datapaths, the
//! selection each algorithm predicts, stateless replies, malformed input, IPv6.

use std::time::Duration;

use crate::support::*;

fn config(datapath: &str, listen: &str, routes: &str) -> String {
    format!(
        "[server]\nlisten = [{listen}]\nworkers = 2\ndatapath = \"{datapath}\"\n\n[dispatcher]\nlist_file = \"LIST\"\nflags = 2\n\n{routes}"
    )
}

/// Runs sipp's built-in uac scenario through sipdisp to two sipp uas; every call completes.
fn sipp_calls(datapath: &str) {
    if datapath == "io_uring"
        && let Some(why) = sipdisp::netio::io_uring_unavailable()
    {
        println!("skipped: io_uring unavailable here: {why}");
        return;
    }
    require_sipp();
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let uas: Vec<ChildGuard> = [p1, p2].into_iter().map(sipp_uas).collect();
    std::thread::sleep(Duration::from_millis(300));
    let list = format!("1 sip:127.0.0.1:{p1}\n1 sip:127.0.0.1:{p2}\n");
    // sipp's built-in uac sends ACK and BYE to the load balancer's address, not to the
    // Contact: hashing the Call-ID (algorithm 0) keeps each call on one backend.
    let lb = Sipdisp::start(
        &config(datapath, "\"127.0.0.1:0\"", "[[route]]\nselect = \"1=0\"\n"),
        &list,
    );
    let calls = 200;
    let out = std::process::Command::new("timeout")
        .args([
            "60",
            "sipp",
            "-sn",
            "uac",
            &lb.addr().to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
        ])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "100",
            "-l",
            "50",
            "-timeout",
            "40",
            "-timeout_error",
            "-nostdin",
            "-recv_timeout",
            "5000",
        ])
        .output()
        .expect("run sipp uac");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let successful = stdout
        .lines()
        .find(|l| l.contains("Successful call"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (stopped_ok, log) = lb.stop();
    drop(uas);
    assert!(
        out.status.success(),
        "sipp uac failed ({}): {stdout}\n{log:?}",
        out.status
    );
    assert_eq!(successful, Some(calls), "{stdout}");
    assert!(stopped_ok, "clean exit on SIGTERM: {log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("datapath {datapath}"))),
        "{log:?}"
    );
    // INVITE, ACK and BYE of every call through the route table.
    assert_eq!(summary_value(&log, "forwarded"), 3 * calls);
    assert!(summary_value(&log, "relayed") >= 2 * calls);
    assert_eq!(summary_value(&log, "dropped"), 0, "{log:?}");
}

#[test]
fn sipp_calls_complete_over_io_uring() {
    sipp_calls("io_uring");
}

#[test]
fn sipp_calls_complete_over_mmsg() {
    sipp_calls("mmsg");
}

/// Algorithm 0: the backend of every call is H(Call-ID) mod 3 in Kamailio's array order, and
/// the call's ACK and BYE reach the same backend.
#[test]
fn hash_by_call_id_matches_the_dispatcher_prediction() {
    let backends: Vec<Responder> = (0..3).map(|_| Responder::start("127.0.0.1:0")).collect();
    let list: String = backends
        .iter()
        .map(|b| format!("1 sip:{}\n", b.addr))
        .collect();
    let lb = Sipdisp::start(
        &config("auto", "\"127.0.0.1:0\"", "[[route]]\nselect = \"1=0\"\n"),
        &list,
    );
    let client = Client::new("127.0.0.1:0");
    for i in 0..60 {
        let cid = format!("hash-{i}@client");
        let resp = client
            .transact(
                lb.addr(),
                &client.request("INVITE", "sip:bob@example.com", &cid, &format!("i{i}"), ""),
            )
            .expect("200 for INVITE");
        assert_eq!(code(&resp), 200);
        for (m, b) in [("ACK", "a"), ("BYE", "b")] {
            let req = client
                .request(m, "sip:bob@example.com", &cid, &format!("{b}{i}"), "")
                .replace(
                    "<sip:bob@example.com>\r\n",
                    "<sip:bob@example.com>;tag=uas\r\n",
                );
            client.sock.send_to(req.as_bytes(), lb.addr()).unwrap();
            if m == "BYE" {
                assert_eq!(
                    client
                        .final_response(Duration::from_secs(2))
                        .map(|r| code(&r)),
                    Some(200)
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // Kamailio's array is the file order reversed (equal priorities).
    let array: Vec<&Responder> = backends.iter().rev().collect();
    for i in 0..60 {
        let cid = format!("hash-{i}@client");
        let h = sipdisp::dispatch::ds_hash(Some(cid.as_bytes()), None);
        let expected = (h % 3) as usize;
        for (k, b) in array.iter().enumerate() {
            let methods: Vec<String> = b
                .calls()
                .into_iter()
                .filter(|(_, c)| *c == cid)
                .map(|(m, _)| m)
                .collect();
            if k == expected {
                assert_eq!(methods, ["INVITE", "ACK", "BYE"], "{cid} at its backend");
            } else {
                assert!(
                    methods.is_empty(),
                    "{cid} also reached backend {k}: {methods:?}"
                );
            }
        }
    }
    let (ok, _) = lb.stop();
    assert!(ok);
}

#[test]
fn stateless_replies_483_503_416() {
    let backend = Responder::start("127.0.0.1:0");
    let list = format!("1 sip:{}\n2 sip:127.0.0.1:9 1\n", backend.addr);
    let routes =
        "[[route]]\nruri_user_prefix = \"dead\"\nselect = \"2=0\"\n\n[[route]]\nselect = \"1=4\"\n";
    let lb = Sipdisp::start(&config("auto", "\"127.0.0.1:0\"", routes), &list);
    let c = Client::new("127.0.0.1:0");
    let mf0 = c
        .request("OPTIONS", "sip:bob@example.com", "mf0", "m", "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(c.transact(lb.addr(), &mf0).map(|r| code(&r)), Some(483));
    let dead = c.request("INVITE", "sip:dead@example.com", "dead", "d", "");
    assert_eq!(
        c.transact(lb.addr(), &dead).map(|r| code(&r)),
        Some(503),
        "every destination of set 2 is inactive"
    );
    let scheme = c.request("OPTIONS", "nobodyKnowsThisScheme:x", "sch", "s", "");
    assert_eq!(c.transact(lb.addr(), &scheme).map(|r| code(&r)), Some(416));
    let ok = c.request("OPTIONS", "sip:bob@example.com", "ok", "o", "");
    assert_eq!(c.transact(lb.addr(), &ok).map(|r| code(&r)), Some(200));
    assert!(
        backend.calls().iter().all(|(_, cid)| cid == "ok"),
        "only the good request reached the backend"
    );
    let (_, log) = lb.stop();
    assert_eq!(summary_value(&log, "replied_4xx"), 2);
    assert_eq!(summary_value(&log, "replied_5xx"), 1);
}

#[test]
fn malformed_datagrams_are_dropped_and_counted() {
    let backend = Responder::start("127.0.0.1:0");
    let lb = Sipdisp::start(
        &config("auto", "\"127.0.0.1:0\"", ""),
        &format!("1 sip:{}\n", backend.addr),
    );
    let c = Client::new("127.0.0.1:0");
    let good = c.request("OPTIONS", "sip:bob@example.com", "good", "g", "");
    let wrong_cl = good.replace("Content-Length: 0", "Content-Length: 50");
    let truncated = good[..good.len() / 2].to_owned();
    let big = format!(
        "{}{}",
        good.replace("Content-Length: 0\r\n\r\n", "Content-Length: 65000\r\n\r\n"),
        "x".repeat(65000)
    );
    let bad: Vec<&[u8]> = vec![
        b"garbage\r\n\r\n",
        truncated.as_bytes(),
        wrong_cl.as_bytes(),
        &[0xff; 65507],
        big.as_bytes(),
    ];
    for d in &bad {
        c.sock.send_to(d, lb.addr()).unwrap();
    }
    // 64 KB with a valid head is a valid message: it is forwarded whole.
    assert!(
        c.final_response(Duration::from_millis(500))
            .is_some_and(|r| code(&r) == 200)
    );
    assert_eq!(
        c.transact(lb.addr(), &good).map(|r| code(&r)),
        Some(200),
        "still serving"
    );
    let (ok, log) = lb.stop();
    assert!(ok);
    assert_eq!(summary_value(&log, "malformed"), 4, "{log:?}");
}

#[test]
fn ipv6_and_ipv4_listeners() {
    let v6 = Responder::start("[::1]:0");
    let v4 = Responder::start("127.0.0.1:0");
    let list = format!("1 sip:[::1]:{}\n2 sip:{}\n", v6.addr.port(), v4.addr);
    let routes =
        "[[route]]\nruri_user_prefix = \"six\"\nselect = \"1=0\"\n\n[[route]]\nselect = \"2=0\"\n";
    let lb = Sipdisp::start(
        &config("auto", "\"127.0.0.1:0\", \"[::1]:0\"", routes),
        &list,
    );
    assert_eq!(lb.addrs.len(), 2);
    let c6 = Client::new("[::1]:0");
    let r = c6.transact(
        lb.addrs[1],
        &c6.request("OPTIONS", "sip:six@example.com", "v6", "x", ""),
    );
    assert_eq!(r.map(|r| code(&r)), Some(200));
    // IPv4 client to an IPv6 backend: sent from the IPv6 socket, answered back over IPv4.
    let c4 = Client::new("127.0.0.1:0");
    let r = c4.transact(
        lb.addrs[0],
        &c4.request("OPTIONS", "sip:six@example.com", "v4to6", "y", ""),
    );
    assert_eq!(r.map(|r| code(&r)), Some(200));
    let r = c6.transact(
        lb.addrs[1],
        &c6.request("OPTIONS", "sip:four@example.com", "v6to4", "z", ""),
    );
    assert_eq!(r.map(|r| code(&r)), Some(200));
    assert_eq!(v6.calls().len(), 2);
    assert_eq!(v4.calls().len(), 1);
    lb.stop();
}

#[test]
fn check_command_reports_errors_with_lines() {
    let dir = TempDir::new("check");
    dir.write("dispatcher.list", "1 sip:127.0.0.1:5070\n1\n");
    let cfg = dir.write(
        "sipdisp.toml",
        "[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipdisp"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("sipdisp.toml:3:"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipdisp"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_second_instance_on_the_same_address_refuses_to_start() {
    let port = free_udp_port();
    let list = "1 sip:127.0.0.1:5999\n";
    let cfg = config("auto", &format!("\"127.0.0.1:{port}\""), "");
    let first = Sipdisp::start(&cfg, list);
    let dir = TempDir::new("second");
    let list_path = dir.write("dispatcher.list", list);
    let cfg_path = dir.write(
        "sipdisp.toml",
        &cfg.replace("LIST", &list_path.display().to_string()),
    );
    let out = std::process::Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_sipdisp"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second sipdisp");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "listen address udp:127.0.0.1:{port} is already served by another sipdisp"
        )),
        "{err}"
    );
    // The first one still runs and stops cleanly.
    let (stopped_ok, log) = first.stop();
    assert!(stopped_ok, "{log:?}");
}

#[test]
fn check_and_run_refuse_a_route_to_a_missing_set_alike() {
    let dir = TempDir::new("missing-set");
    dir.write("dispatcher.list", "1 sip:127.0.0.1:5070\n");
    let body = "[server]\nlisten = [\"127.0.0.1:0\"]\n[[route]]\nselect = \"2=4\"\n";
    let cfg = dir.write("sipdisp.toml", body);
    let sipdisp = |args: &[&str]| {
        std::process::Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_sipdisp"))
            .args(args)
            .arg(&cfg)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let check = sipdisp(&["check", "--config"]);
    let (out, err) = (
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
    );
    assert_eq!(check.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("set 2 is not in"), "{err}");
    assert!(!out.contains("ok ("), "ok printed before an error: {out}");
    let run = sipdisp(&["run", "--config"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("set 2 is not in"), "{err}");
    // Explicitly allowed: check passes, with a warning.
    dir.write("sipdisp.toml", &format!("{body}allow_missing_set = true\n"));
    let check = sipdisp(&["check", "--config"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{out}");
    assert!(out.contains("ok (1 warning)"), "{out}");
}
