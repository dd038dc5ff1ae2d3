//! Shared helpers for the black-box tests: temporary directories, free ports, child processes
//! killed on drop, the sipdisp binary, a minimal SIP responder and client over real sockets.
//!
//! Every loop here is bounded in count and time; traffic goes to loopback only.

#![allow(dead_code)] // each test module uses a different subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sipdisp-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// An executable `event_hook` script here that appends
    /// "EVENT SET URI STATE" per run to the returned log file: (script, log).
    pub fn event_hook(&self) -> (PathBuf, PathBuf) {
        let log = self.0.join("hook.log");
        let hook = self.write(
            "hook.sh",
            &format!(
                "#!/bin/sh\necho \"$SIPDISP_EVENT $SIPDISP_SET $SIPDISP_URI $SIPDISP_STATE\" >> {}\n",
                log.display()
            ),
        );
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&hook)
            .status()
            .unwrap();
        (hook, log)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sipdisp binary running with a configuration written to a temporary directory.
pub struct Sipdisp {
    child: ChildGuard,
    log: Arc<Mutex<Vec<String>>>,
    /// The bound listen addresses, in configuration order.
    pub addrs: Vec<SocketAddr>,
    _dir: TempDir,
}

impl Sipdisp {
    /// Writes `config` (TOML; `LIST` in it is replaced by the list file path) and `list`,
    /// starts `sipdisp run`, waits (≤ 10 s) for its "listening on" line.
    pub fn start(config: &str, list: &str) -> Sipdisp {
        let dir = TempDir::new("sipdisp");
        let list_path = dir.write("dispatcher.list", list);
        let cfg = dir.write(
            "sipdisp.toml",
            &config.replace("LIST", &list_path.display().to_string()),
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipdisp"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sipdisp");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut guard = ChildGuard(child);
        loop {
            let found = log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("listening on"))
                .cloned();
            if let Some(line) = found {
                let addrs = line
                    .split("listening on ")
                    .nth(1)
                    .unwrap()
                    .split(" (")
                    .next()
                    .unwrap()
                    .split(", ")
                    .map(|a| a.trim_start_matches("udp:").parse().unwrap())
                    .collect();
                return Sipdisp {
                    child: guard,
                    log,
                    addrs,
                    _dir: dir,
                };
            }
            if let Ok(Some(status)) = guard.0.try_wait() {
                panic!("sipdisp exited with {status}: {:?}", log.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "sipdisp did not start: {:?}",
                log.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Everything sipdisp logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, wait (≤ 10 s) for exit; returns the exit status success and the log.
    pub fn stop(mut self) -> (bool, Vec<String>) {
        // SAFETY: kill(2) with a valid pid of our own child and a valid signal number.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let ok = loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                break status.success();
            }
            assert!(Instant::now() < deadline, "sipdisp did not stop on SIGTERM");
            thread::sleep(Duration::from_millis(20));
        };
        // Let the reader thread drain the pipe.
        thread::sleep(Duration::from_millis(100));
        (ok, self.log())
    }
}

/// The value of `name=` in sipdisp's final "stopped:" summary line.
pub fn summary_value(log: &[String], name: &str) -> u64 {
    let line = log
        .iter()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_else(|| panic!("no summary in {log:?}"));
    line.split_whitespace()
        .find_map(|w| {
            w.trim_start_matches('[')
                .strip_prefix(&format!("{name}="))
                .map(|v| v.trim_end_matches(']').parse().unwrap())
        })
        .unwrap_or(0)
}

/// What a responder saw: (method, Call-ID).
pub type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A minimal UAS on a loopback socket: answers every request with 200 OK (To tag added,
/// Contact = itself) to the top Via's received/rport or sent-by, records (method, Call-ID).
pub struct Responder {
    pub addr: SocketAddr,
    pub seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

fn header<'a>(msg: &'a str, names: &[&str]) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        names
            .iter()
            .any(|x| n.trim().eq_ignore_ascii_case(x))
            .then(|| v.trim())
    })
}

impl Responder {
    pub fn start(bind: &str) -> Responder {
        let sock = UdpSocket::bind(bind).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            // Bounded: at most 10 minutes or until stopped.
            let end = Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.starts_with("SIP/2.0") {
                    continue;
                }
                let method = msg.split(' ').next().unwrap_or("").to_owned();
                let call_id = header(&msg, &["Call-ID", "i"]).unwrap_or("").to_owned();
                seen2.lock().unwrap().push((method.clone(), call_id));
                if method == "ACK" {
                    continue;
                }
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                let mut top = None;
                for line in msg.split("\r\n") {
                    let Some((n, v)) = line.split_once(':') else {
                        continue;
                    };
                    let n = n.trim();
                    if n.eq_ignore_ascii_case("Via") || n == "v" {
                        top.get_or_insert(v.trim().to_owned());
                        resp.push_str(&format!("Via: {}\r\n", v.trim()));
                    } else if ["From", "f", "Call-ID", "i", "CSeq"].contains(&n) {
                        resp.push_str(&format!("{n}: {}\r\n", v.trim()));
                    } else if n == "To" || n == "t" {
                        let tag = if v.contains("tag=") {
                            String::new()
                        } else {
                            ";tag=uas".to_owned()
                        };
                        resp.push_str(&format!("To: {}{tag}\r\n", v.trim()));
                    }
                }
                resp.push_str(&format!(
                    "Contact: <sip:{addr}>\r\nContent-Length: 0\r\n\r\n"
                ));
                let to = top.and_then(|v| via_target(&v)).unwrap_or(from);
                let _ = sock.send_to(resp.as_bytes(), to);
            }
        });
        Responder {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where a response to this Via goes: received (else host) and rport (else port, else 5060).
pub fn via_target(via: &str) -> Option<SocketAddr> {
    let mut parts = via.split(';');
    let sent_by = parts.next()?.split_whitespace().last()?;
    let (mut host, mut port) = match sent_by.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (h.starts_with('[') || !h.contains(':')) => {
            (h.to_owned(), p.parse().ok()?)
        }
        _ => (sent_by.to_owned(), 5060u16),
    };
    for p in parts {
        match p.trim().split_once('=') {
            Some(("received", v)) => host = v.to_owned(),
            Some(("rport", v)) => port = v.parse().ok()?,
            _ => {}
        }
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(SocketAddr::new(host.parse().ok()?, port))
}

/// A UDP client on loopback.
pub struct Client {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Client {
    pub fn new(bind: &str) -> Client {
        let sock = UdpSocket::bind(bind).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        Client { sock, addr }
    }

    /// A request from this client.
    pub fn request(
        &self,
        method: &str,
        ruri: &str,
        call_id: &str,
        branch: &str,
        extra: &str,
    ) -> String {
        let host = match self.addr {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {host};branch=z9hG4bK-{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@client.example>;tag=c1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }

    /// Sends `msg` to `to` and returns the first final response (≥ 200) within 2 s.
    pub fn transact(&self, to: SocketAddr, msg: &str) -> Option<String> {
        self.sock.send_to(msg.as_bytes(), to).unwrap();
        self.final_response(Duration::from_secs(2))
    }

    pub fn final_response(&self, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let s = String::from_utf8_lossy(&buf[..n]).into_owned();
                let code: u16 = s.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code >= 200 {
                    return Some(s);
                }
            }
        }
        None
    }
}

/// The status code of a response.
pub fn code(resp: &str) -> u16 {
    resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Counts per key.
pub fn counts<K: std::hash::Hash + Eq>(items: impl IntoIterator<Item = K>) -> HashMap<K, usize> {
    let mut m = HashMap::new();
    for k in items {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 request to `addr` (5 s timeout); returns the status and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The value of the first sample line of a Prometheus text exposition that starts with
/// `series` (metric name with its labels exactly as written).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Fails with the README's instructions when sipp is not installed.
pub fn require_sipp() {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "sipp is not installed: run the README's test command (bash scripts/test.sh), which installs it"
    );
}

/// sipp's built-in `uas` scenario on 127.0.0.1:`port` (≤ 60 s), killed on drop.
pub fn sipp_uas(port: u16) -> ChildGuard {
    ChildGuard(
        Command::new("sipp")
            .args([
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-nostdin",
                "-timeout",
                "60",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp uas"),
    )
}

/// A sipp uac placing `calls` calls at `rate`/s through `target` (at most 60 at once), its
/// statistics on stdout; bounded by `timeout 60`. Read the outcome with [`sipp_outcome`].
pub fn sipp_uac(target: SocketAddr, calls: u32, rate: u32) -> Child {
    Command::new("timeout")
        .args([
            "60",
            "sipp",
            "-sn",
            "uac",
            &target.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
        ])
        .arg(free_udp_port().to_string())
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "60",
            "-timeout",
            "40",
            "-timeout_error",
            "-nostdin",
            "-recv_timeout",
            "5000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp uac")
}

/// Waits for a [`sipp_uac`] and returns (successful calls, failed calls, its output).
pub fn sipp_outcome(c: &mut Child) -> (Option<u64>, Option<u64>, String) {
    use std::io::Read;
    let mut out = String::new();
    if let Some(mut o) = c.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let _ = c.wait();
    let count = |what: &str| {
        out.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    (count("Successful call"), count("Failed call"), out)
}
