//! Choosing the backend at start: probe io_uring for exactly what [`super::uring`] needs and
//! fall back to `recvmmsg`/`sendmmsg` with a one-line reason when it is refused.
//!
//! The probe is functional, not only a feature list: it creates a ring, checks the opcodes
//! (`RecvMsg`, `SendMsg`, `ProvideBuffers`) with `IORING_REGISTER_PROBE`, registers a provided
//! buffer ring, and has a multishot `RecvMsg` receive one datagram over loopback (multishot
//! receive needs Linux 6.0; the opcode table cannot tell). Seccomp (Docker's default profile)
//! answers `EPERM` or `ENOSYS` at the first step; `kernel.io_uring_disabled` answers `EPERM`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::Duration;

use io_uring::{IoUring, Probe, opcode};

use super::{Backend, NetConfig, uring::UringDatapath};
use super::{Datapath, SocketIdx};

/// The `datapath` setting: which backend a worker uses.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum DatapathChoice {
    /// io_uring when the probe passes, else mmsg.
    #[default]
    Auto,
    /// io_uring, or an error.
    IoUring,
    /// `recvmmsg` / `sendmmsg`.
    Mmsg,
}

/// io_uring was forced but is not usable here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("datapath io_uring forced but unavailable: {reason}")]
pub struct DatapathUnavailable {
    /// Why, in one line.
    pub reason: String,
}

/// Picks the backend for `choice`. With [`DatapathChoice::Auto`] the second value is the reason
/// io_uring was not taken (log it once); forcing io_uring when the probe fails is an error
/// carrying the same reason. The probe runs once per process.
pub fn select(choice: DatapathChoice) -> Result<(Backend, Option<String>), DatapathUnavailable> {
    match (choice, io_uring_unavailable()) {
        (DatapathChoice::Mmsg, _) => Ok((Backend::Mmsg, None)),
        (_, None) => Ok((Backend::IoUring, None)),
        (DatapathChoice::Auto, Some(why)) => Ok((
            Backend::Mmsg,
            Some(format!("io_uring unavailable, using mmsg: {why}")),
        )),
        (DatapathChoice::IoUring, Some(why)) => Err(DatapathUnavailable {
            reason: why.to_owned(),
        }),
    }
}

/// `None` when this process can use the io_uring backend, else why not (one line). Probed
/// once, then remembered.
pub fn io_uring_unavailable() -> Option<&'static str> {
    static RESULT: OnceLock<Option<String>> = OnceLock::new();
    RESULT.get_or_init(|| probe().err()).as_deref()
}

fn explain(step: &str, e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
            Ok(v) if v.trim() != "0" => format!(" (kernel.io_uring_disabled = {})", v.trim()),
            _ => " (refused by seccomp or a security module)".to_owned(),
        },
        Some(libc::ENOSYS) => " (no io_uring in this kernel, or blocked by seccomp)".to_owned(),
        _ => String::new(),
    };
    format!("{step}: {e}{hint}")
}

fn probe() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| explain("io_uring_setup", &e))?;
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| explain("IORING_REGISTER_PROBE", &e))?;
    for (name, code) in [
        ("RecvMsg", opcode::RecvMsg::CODE),
        ("SendMsg", opcode::SendMsg::CODE),
        ("ProvideBuffers", opcode::ProvideBuffers::CODE),
    ] {
        if !p.is_supported(code) {
            return Err(format!(
                "io_uring opcode {name} not supported by this kernel"
            ));
        }
    }
    drop(ring);
    multishot_echo().map_err(|e| explain("multishot RecvMsg with a buffer ring", &e))
}

/// Opens a one-socket io_uring datapath on 127.0.0.1, sends it one datagram and expects it back
/// through the multishot receive.
fn multishot_echo() -> io::Result<()> {
    let cfg = NetConfig {
        max_datagram: 64,
        recv_buffers: 4,
        transmits: 1,
        header_capacity: 16,
        socket_buffer: 64 << 10,
        ..NetConfig::default()
    };
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut dp = UringDatapath::open(&[lo], &cfg)?;
    let client = UdpSocket::bind(lo)?;
    client.send_to(b"probe", dp.local_addrs()[0])?;
    let mut got = false;
    for _ in 0..5 {
        let mut h = super::handler_fn(
            |_, d, _| got |= d.data == b"probe" && d.local == SocketIdx(0),
            |_, _| {},
        );
        dp.run_batch(Some(Duration::from_millis(200)), &mut h)?;
        if got {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "no completion within 1 s",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD_ENV: &str = "SIPDISP_NETIO_SECCOMP_CHILD";

    /// Runs the probe in a child process whose test thread has a seccomp filter refusing
    /// `io_uring_setup` with `EPERM`, as Docker's default profile does: `Auto` must fall back to
    /// mmsg with the reason, forcing io_uring must fail, and mmsg must still carry traffic.
    #[test]
    fn falls_back_to_mmsg_when_seccomp_refuses_io_uring() {
        let name = "netio::probe::tests::falls_back_to_mmsg_when_seccomp_refuses_io_uring";
        if std::env::var_os(CHILD_ENV).is_some() {
            return seccomp_child();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        let at = text.find("fallback ok: ");
        let line = at.and_then(|i| text[i..].lines().next());
        println!(
            "{}",
            line.unwrap_or_else(|| panic!("no fallback line in {text}"))
        );
    }

    fn seccomp_child() {
        let filter = [
            // A = seccomp_data.nr
            libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            },
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: libc::SYS_io_uring_setup as u32,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            },
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: plain prctl calls; `prog` and `filter` outlive the call, which copies them.
        // The filter only makes io_uring_setup fail in this (child) process's test thread.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &raw const prog
                ),
                0
            );
        }
        let why = io_uring_unavailable().expect("io_uring refused");
        assert!(why.starts_with("io_uring_setup: "), "{why}");
        let (b, reason) = select(DatapathChoice::Auto).unwrap();
        assert_eq!(b, Backend::Mmsg);
        let reason = reason.unwrap();
        assert!(
            reason.contains("using mmsg") && !reason.contains('\n'),
            "{reason}"
        );
        assert!(select(DatapathChoice::IoUring).is_err());
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut dp = super::super::open(b, &[lo], &NetConfig::default()).unwrap();
        let c = UdpSocket::bind(lo).unwrap();
        c.send_to(b"hi", dp.local_addrs()[0]).unwrap();
        let s = dp
            .run_batch(
                Some(Duration::from_secs(2)),
                &mut super::super::handler_fn(|_, _, _| {}, |_, _| {}),
            )
            .unwrap();
        assert_eq!(s.received, 1);
        println!("fallback ok: {reason}");
    }

    #[test]
    fn refusals_are_explained_in_one_line() {
        let eperm = explain("io_uring_setup", &io::Error::from_raw_os_error(libc::EPERM));
        assert!(eperm.starts_with("io_uring_setup: "), "{eperm}");
        assert!(
            eperm.contains("seccomp") || eperm.contains("kernel.io_uring_disabled"),
            "{eperm}"
        );
        let enosys = explain(
            "io_uring_setup",
            &io::Error::from_raw_os_error(libc::ENOSYS),
        );
        assert!(enosys.contains("no io_uring in this kernel"), "{enosys}");
        assert!(!eperm.contains('\n') && !enosys.contains('\n'));
    }

    #[test]
    fn select_honours_the_choice() {
        assert_eq!(select(DatapathChoice::Mmsg), Ok((Backend::Mmsg, None)));
        match io_uring_unavailable() {
            None => {
                assert_eq!(select(DatapathChoice::Auto), Ok((Backend::IoUring, None)));
                assert_eq!(
                    select(DatapathChoice::IoUring),
                    Ok((Backend::IoUring, None))
                );
            }
            Some(why) => {
                println!("io_uring unavailable here ({why}): fallback path checked");
                let (b, reason) = select(DatapathChoice::Auto).unwrap();
                assert_eq!(b, Backend::Mmsg);
                assert!(reason.unwrap().contains(why));
                assert_eq!(select(DatapathChoice::IoUring).unwrap_err().reason, why);
            }
        }
    }
}
