//! Differential test of stateful failover against a real Kamailio 5.6.3 running seed 002's
//! failure-route idiom (tm + dispatcher, `flags = 2`, `t_check_status("408|5[0-9][0-9]")` →
//! `ds_next_dst()`): the same gateways (answering 503, 486, 200, or silent) behind each, the
//! same INVITE, and the same destinations must be tried in the same order with the same final
//! response at the caller.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Sipdisp, free_udp_port};

/// What a test gateway does with an INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gw {
    Answer(u16),
    Silent,
}

/// Test gateways: each records the Call-IDs of the INVITEs it received, in arrival order
/// across all of them.
struct Gateways {
    addrs: Vec<SocketAddr>,
    log: Arc<Mutex<Vec<(String, usize)>>>,
    stop: Arc<AtomicBool>,
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

impl Gateways {
    fn start(behaviour: &[Gw]) -> Gateways {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut addrs = Vec::new();
        for (i, b) in behaviour.iter().copied().enumerate() {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            addrs.push(sock.local_addr().unwrap());
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if !m.starts_with("INVITE ") {
                        continue; // ACK, CANCEL: nothing to do
                    }
                    let cid = header(&m, "Call-ID")
                        .first()
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_owned())
                        .unwrap_or_default();
                    {
                        let mut l = log.lock().unwrap();
                        if !l.iter().any(|(c, g)| *c == cid && *g == i) {
                            l.push((cid, i)); // retransmissions counted once
                        }
                    }
                    let Gw::Answer(code) = b else { continue };
                    let mut r = format!("SIP/2.0 {code} Test\r\n");
                    for v in header(&m, "Via") {
                        r.push_str(v);
                        r.push_str("\r\n");
                    }
                    for h in ["From", "Call-ID", "CSeq"] {
                        for v in header(&m, h) {
                            r.push_str(v);
                            r.push_str("\r\n");
                        }
                    }
                    for v in header(&m, "To") {
                        r.push_str(&format!("{v};tag=gw{i}\r\n"));
                    }
                    r.push_str(&format!(
                        "Contact: <sip:gw{i}@{}>\r\n",
                        sock.local_addr().unwrap()
                    ));
                    r.push_str("Content-Length: 0\r\n\r\n");
                    let _ = sock.send_to(r.as_bytes(), from);
                }
            });
        }
        Gateways { addrs, log, stop }
    }

    /// The gateways that received `call_id`, in order.
    fn tried(&self, call_id: &str) -> Vec<usize> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == call_id)
            .map(|(_, g)| *g)
            .collect()
    }

    /// The list file, written in reverse: destinations of equal priority end up in a set's
    /// array in reverse file order (reference §2.4), so gateway 0 is the array's first.
    fn list(&self) -> String {
        self.addrs
            .iter()
            .rev()
            .map(|a| format!("1 sip:{a}\n"))
            .collect()
    }
}

impl Drop for Gateways {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends an INVITE to `lb` and returns the final response code (ACKing a non-2xx).
fn call(lb: SocketAddr, call_id: &str) -> u16 {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = c.local_addr().unwrap();
    let branch = format!("z9hG4bK-{call_id}");
    let head = |method: &str, to_tag: &str| {
        format!(
            "{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:alice@{me}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let invite = head("INVITE", "");
    c.send_to(invite.as_bytes(), lb).unwrap();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last_send = Instant::now();
    let mut interval = Duration::from_millis(500);
    while Instant::now() < deadline {
        if let Ok(n) = c.recv(&mut buf) {
            let r = String::from_utf8_lossy(&buf[..n]).into_owned();
            let code: u16 = r.get(8..11).and_then(|x| x.parse().ok()).unwrap_or(0);
            if code >= 200 {
                if code >= 300 {
                    let tag = header(&r, "To")
                        .first()
                        .and_then(|l| l.split_once(";tag="))
                        .map(|(_, t)| format!(";tag={t}"))
                        .unwrap_or_default();
                    let _ = c.send_to(head("ACK", &tag).as_bytes(), lb);
                }
                return code;
            }
            if code >= 100 {
                interval = Duration::from_secs(3600); // RFC 3261 §17.1.1.2: no more Timer A
            }
        }
        if last_send.elapsed() >= interval {
            c.send_to(invite.as_bytes(), lb).unwrap();
            last_send = Instant::now();
            interval *= 2;
        }
    }
    0
}

struct Kamailio {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group our child leads (started with
        // `process_group(0)`); no memory is involved.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kamailio(list: &str, alg: u8) -> Kamailio {
    let port = free_udp_port();
    let dir = std::env::temp_dir().join(format!("sipdisp-kamfo-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = include_str!("../fixtures/kamailio/failover.cfg.in")
        .replace("@PORT@", &port.to_string())
        .replace("@LIST@", dir.join("d.list").to_str().unwrap())
        .replace("@FR_TIMER@", "1000")
        .replace("@ALG@", &alg.to_string());
    std::fs::write(dir.join("k.cfg"), cfg).unwrap();
    std::fs::write(dir.join("d.list"), list).unwrap();
    let log = std::fs::File::create(dir.join("k.log")).unwrap();
    use std::os::unix::process::CommandExt;
    let child = Command::new("/usr/sbin/kamailio")
        .process_group(0)
        .args(["-DD", "-E", "-f"])
        .arg(dir.join("k.cfg"))
        .arg("-w")
        .arg(&dir)
        .arg("-Y")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start kamailio (the README's test command installs it)");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let k = Kamailio { child, dir, addr };
    // Ready when it answers an OPTIONS with Max-Forwards 0 (483).
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = probe.local_addr().unwrap();
    let opt = format!(
        "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ready\r\nMax-Forwards: 0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: ready\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 4096];
    for _ in 0..50 {
        let _ = probe.send_to(opt.as_bytes(), addr);
        if probe.recv(&mut buf).is_ok() {
            return k;
        }
    }
    panic!(
        "kamailio did not start: {}",
        std::fs::read_to_string(k.dir.join("k.log")).unwrap_or_default()
    );
}

#[test]
fn failover_matches_kamailio_tm_and_dispatcher() {
    use Gw::*;
    let cases: Vec<(&str, Vec<Gw>)> = vec![
        ("503-then-200", vec![Answer(503), Answer(200)]),
        ("503-silent-200", vec![Answer(503), Silent, Answer(200)]),
        ("all-503", vec![Answer(503), Answer(503)]),
        ("486-is-final", vec![Answer(486), Answer(200)]),
        ("all-silent", vec![Silent, Silent]),
        ("503-486-200", vec![Answer(503), Answer(486), Answer(200)]),
        ("500-then-603", vec![Answer(500), Answer(603), Answer(200)]),
    ];
    let mut results: HashMap<&str, Vec<(Vec<usize>, u16)>> = HashMap::new();
    for (name, gws) in &cases {
        for system in ["kamailio", "sipdisp"] {
            let g = Gateways::start(gws);
            let list = g.list();
            let cid = format!("{name}-{system}");
            let code = if system == "kamailio" {
                let k = kamailio(&list, 8);
                call(k.addr, &cid)
            } else {
                let cfg = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[dispatcher]\nlist_file = \"LIST\"\nflags = 2\nds_ping_interval = 0\n\n[tm]\nfr_timer = 1000\n\n[[route]]\nselect = \"1=8\"\nfailover = true\nfailover_codes = \"408|5[0-9][0-9]\"\n";
                let lb = Sipdisp::start(cfg, &list);
                call(lb.addr(), &cid)
            };
            thread::sleep(Duration::from_millis(100));
            results.entry(name).or_default().push((g.tried(&cid), code));
        }
    }
    let mut diffs = Vec::new();
    for (name, _) in &cases {
        let r = &results[name];
        if r[0] != r[1] {
            diffs.push(format!("{name}: kamailio {:?}, sipdisp {:?}", r[0], r[1]));
        }
        println!("{name}: tried {:?}, final {}", r[1].0, r[1].1);
    }
    assert!(diffs.is_empty(), "{diffs:#?}");
    // And what both did is what the idiom means.
    assert_eq!(results["503-then-200"][1], (vec![0, 1], 200));
    assert_eq!(results["503-silent-200"][1], (vec![0, 1, 2], 200));
    assert_eq!(results["500-then-603"][1], (vec![0, 1], 603));
    assert_eq!(results["503-then-200"][1].1, 200);
    assert_eq!(results["all-503"][1].1, 500);
    assert_eq!(results["486-is-final"][1].1, 486);
    assert_eq!(results["all-silent"][1].1, 408);
}
