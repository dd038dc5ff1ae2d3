//! Differential test: sipdisp's selections and failover lists against a real Kamailio 5.6.3
//! (Debian package `kamailio`) on loopback.
//!
//! Kamailio runs in the foreground with `tests/fixtures/kamailio/dispatcher.cfg.in`; requests
//! carry the set, algorithm and limit in headers and the reply reports `$du`, every `_dsdst_`
//! entry and `_dsctx_ cnt`. Lists change with `kamcmd dispatcher.reload`, states with
//! `dispatcher.set_state`, and the hash is compared through `dispatcher.hash`. Hash algorithms
//! are compared case by case, round robin as sequences from a fresh reload, weights (9, 11) as
//! per-100 counts (Kamailio shuffles its tables with `rand()`).
//!
//! Set `SIPDISP_RECORD_GOLDEN=1` to rewrite `tests/fixtures/golden/` from this run.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::diff_cases::{Answer, Case, Rng, StateOp, build, random_list};
use sipdisp::dispatch::ds_hash;

const KAMAILIO: &str = "/usr/sbin/kamailio";
const KAMCMD: &str = "/usr/sbin/kamcmd";

struct Kamailio {
    child: Child,
    dir: PathBuf,
    port: u16,
    sock: UdpSocket,
    branch: u64,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Kamailio forks its workers: stop the whole process group it leads, not only the
        // main process (which would leave the workers running).
        // SAFETY: kill(2) on the process group of our own child (started with
        // `process_group(0)`, so its pgid is its pid); no memory is involved.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind loopback")
        .port()
}

impl Kamailio {
    fn start(list: &str, use_default: bool) -> Kamailio {
        let dir = std::env::temp_dir().join(format!(
            "sipdisp-kam-{}-{}",
            std::process::id(),
            free_udp_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_udp_port();
        let tpl = include_str!("../fixtures/kamailio/dispatcher.cfg.in");
        let cfg = tpl
            .replace("@PORT@", &port.to_string())
            .replace("@CTL@", dir.join("ctl.sock").to_str().unwrap())
            .replace("@LIST@", dir.join("d.list").to_str().unwrap())
            .replace("@FLAGS@", "2")
            .replace("@USE_DEFAULT@", if use_default { "1" } else { "0" });
        std::fs::write(dir.join("k.cfg"), cfg).unwrap();
        std::fs::write(dir.join("d.list"), list).unwrap();
        let log = std::fs::File::create(dir.join("k.log")).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new(KAMAILIO)
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
            .expect("start kamailio");
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut k = Kamailio {
            child,
            dir,
            port,
            sock,
            branch: 0,
        };
        // Ready when a request to an unknown set is answered (bounded: ~10 s).
        let probe = Case::random(&mut Rng(1), &[9999], &[8]);
        for _ in 0..30 {
            if k.ask(&probe).is_some() {
                return k;
            }
            if let Ok(Some(st)) = k.child.try_wait() {
                panic!("kamailio exited with {st}: {}", k.log());
            }
        }
        panic!("kamailio did not answer within 10 s: {}", k.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("k.log")).unwrap_or_default()
    }

    fn ask(&mut self, case: &Case) -> Option<Answer> {
        self.branch += 1;
        let msg = case.sip(self.sock.local_addr().unwrap().port(), self.branch);
        self.sock
            .send_to(msg.as_bytes(), ("127.0.0.1", self.port))
            .unwrap();
        let mut buf = [0u8; 8192];
        let want = format!("branch=z9hG4bK-{};", self.branch);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let Ok(n) = self.sock.recv(&mut buf) else {
                return None;
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.contains(&want) {
                return Some(parse_reply(&text));
            }
        }
        None
    }

    fn answer(&mut self, case: &Case) -> Answer {
        for _ in 0..3 {
            if let Some(a) = self.ask(case) {
                return a;
            }
        }
        panic!("no answer from kamailio for {}", case.encode());
    }

    fn kamcmd(&self, args: &[&str]) -> String {
        let out = Command::new(KAMCMD)
            .arg("-s")
            .arg(format!("unix:{}", self.dir.join("ctl.sock").display()))
            .args(args)
            .output()
            .expect("run kamcmd");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    fn load(&self, list: &str, states: &[StateOp]) {
        std::fs::write(self.dir.join("d.list"), list).unwrap();
        let out = self.kamcmd(&["dispatcher.reload"]);
        assert!(out.contains("successfully reloaded"), "reload: {out}");
        for (st, set, uri) in states {
            let out = self.kamcmd(&["dispatcher.set_state", st, &set.to_string(), uri]);
            assert!(out.contains("state updated"), "set_state: {out}");
        }
    }

    fn hash(&self, x: &str, y: Option<&str>) -> u32 {
        let xs = format!("s:{x}");
        let mut args = vec!["dispatcher.hash", "1000", &xs];
        let ys = y.map(|y| format!("s:{y}"));
        if let Some(y) = &ys {
            args.push(y);
        }
        let out = self.kamcmd(&args);
        let v = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("hashid:"))
            .unwrap_or_else(|| panic!("dispatcher.hash: {out}"));
        v.trim().parse::<i64>().unwrap() as u32
    }
}

fn parse_reply(text: &str) -> Answer {
    if !text.starts_with("SIP/2.0 200") {
        return Answer::Fail;
    }
    let (mut du, mut dsts, mut cnt) = (String::new(), Vec::new(), 0);
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("X-Du: ") {
            du = v.trim().into();
        } else if let Some(v) = l.strip_prefix("X-Dst: ") {
            dsts.push(v.trim().to_string());
        } else if let Some(v) = l.strip_prefix("X-Cnt: ") {
            cnt = v.trim().parse().unwrap_or(0);
        }
    }
    Answer::Ok { du, dsts, cnt }
}

fn require_kamailio() {
    assert!(
        Path::new(KAMAILIO).exists() && Path::new(KAMCMD).exists(),
        "Kamailio 5.6.3 is not installed ({KAMAILIO}, {KAMCMD} missing): run the test command \
         from README.md (it installs the Debian packages kamailio and kamailio-extra-modules)"
    );
}

fn random_states(r: &mut Rng, dests: &[(u32, String)]) -> Vec<StateOp> {
    let mut ops = Vec::new();
    for _ in 0..r.below(5) {
        let (set, uri) = r.pick(dests).clone();
        let st = r.pick(&["i", "ip", "d", "a", "t", "I"]).to_string();
        ops.push((st, set, uri));
    }
    ops
}

#[test]
fn kamailio_dispatcher_hash_rpc() {
    require_kamailio();
    let k = Kamailio::start("1 sip:127.0.0.1:5099\n", false);
    let mut r = Rng(0x5eed_1234);
    let chars: Vec<char> = "abcdefghijklmnopqrstuvwxyzABC0123456789.-_@:;=é日ü€"
        .chars()
        .collect();
    let mut n = 0;
    for i in 0..60 {
        let len = 1 + (i % 40);
        let x: String = (0..len).map(|_| *r.pick(&chars)).collect();
        let y: Option<String> = r
            .chance(50)
            .then(|| (0..1 + r.below(20)).map(|_| *r.pick(&chars)).collect());
        let got = k.hash(&x, y.as_deref());
        assert_eq!(
            got,
            ds_hash(Some(x.as_bytes()), y.as_deref().map(str::as_bytes)),
            "H({x:?}, {y:?})"
        );
        n += 1;
    }
    assert_eq!(k.hash("<null>", None), 1005418900);
    eprintln!("dispatcher.hash: {n} strings equal");
}

#[test]
fn kamailio_selections_equal() {
    run_rounds(0xd15_7a7c, 12, false);
}

#[test]
fn kamailio_selections_equal_with_use_default() {
    run_rounds(0x0def_a017, 6, true);
}

fn run_rounds(seed: u64, rounds: usize, use_default: bool) {
    require_kamailio();
    let mut r = Rng(seed);
    let mut k = Kamailio::start("1 sip:127.0.0.1:5099\n", use_default);
    let record = !use_default && std::env::var_os("SIPDISP_RECORD_GOLDEN").is_some();
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    for round in 0..rounds {
        let (list, sets, dests) = random_list(&mut r);
        let states = random_states(&mut r, &dests);
        let ctx =
            format!("use_default {use_default} round {round}\nlist:\n{list}states: {states:?}");

        // Hash algorithms (and 5 with credentials, 8 first): case by case.
        k.load(&list, &states);
        let snap = build(&list, &states, 1, use_default);
        let mut golden = Vec::new();
        for _ in 0..45 {
            let case = Case::random(&mut r, &sets, &[0, 1, 2, 3, 5, 7, 8]);
            let (kam, ours) = (k.answer(&case), case.sipdisp(&snap));
            compared += 1;
            if kam != ours {
                mismatches.push(format!(
                    "{ctx}\ncase {}\nkamailio {kam:?}\nsipdisp  {ours:?}",
                    case.encode()
                ));
            }
            golden.push((case, kam));
        }
        if record && round < 3 {
            write_golden(round, &list, &states, &golden);
        }

        // Round robin (alg 4, alg 5 without credentials shares the cursor): sequences.
        k.load(&list, &states);
        let snap = build(&list, &states, 2, use_default);
        for set in &sets {
            for i in 0..12 {
                let mut case = Case::random(&mut r, &[*set], &[4, 5]);
                if case.alg == 5 && i % 3 != 0 {
                    case.auth = None;
                } else if case.alg == 5 {
                    case.alg = 4;
                }
                let (kam, ours) = (k.answer(&case), case.sipdisp(&snap));
                compared += 1;
                if kam != ours {
                    mismatches.push(format!(
                        "{ctx}\nRR step {i} case {}\nkamailio {kam:?}\nsipdisp  {ours:?}",
                        case.encode()
                    ));
                }
            }
        }

        // Weights (9) and relative weights (11): per-100 counts of whole answers.
        for alg in [9, 11] {
            k.load(&list, &states);
            let snap = build(&list, &states, 3 + alg as u64, use_default);
            for set in &sets {
                let (mut kc, mut oc) = (BTreeMap::new(), BTreeMap::new());
                for _ in 0..100 {
                    let mut case = Case::random(&mut r, &[*set], &[alg]);
                    case.limit = 0;
                    *kc.entry(k.answer(&case)).or_insert(0) += 1;
                    *oc.entry(case.sipdisp(&snap)).or_insert(0) += 1;
                }
                compared += 1;
                if kc != oc {
                    mismatches.push(format!(
                        "{ctx}\nalg {alg} set {set} per-100\nkamailio {kc:?}\nsipdisp  {oc:?}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "kamailio differential (use_default {use_default}): {compared} comparisons, {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
    assert!(compared >= 250, "only {compared} cases compared");
}

fn write_golden(n: usize, list: &str, states: &[StateOp], cases: &[(Case, Answer)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = String::from(
        "# Recorded from Kamailio 5.6.3 by tests/it/kamailio_diff.rs (SIPDISP_RECORD_GOLDEN=1).\n\
         # [list] the list file, [states] dispatcher.set_state calls, [cases] request<TAB>=> answer.\n[list]\n",
    );
    s += list;
    s += "[states]\n";
    for (st, set, uri) in states {
        s += &format!("{st} {set} {uri}\n");
    }
    s += "[cases]\n";
    for (c, a) in cases {
        s += &format!("{}\t=> {}\n", c.encode(), a.encode());
    }
    std::fs::write(dir.join(format!("selections-{n}.golden")), s).unwrap();
}
