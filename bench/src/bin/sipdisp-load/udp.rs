//! Batched UDP over IPv4 loopback: `recvmmsg`/`sendmmsg` on a non-blocking socket, `ppoll`.
//!
//! Only 127.0.0.0/8 is accepted anywhere ([`loopback`]), so a mistyped address cannot send
//! load to a real network. This is the only module of the tool with `unsafe`: the `libc`
//! calls, whose pointers all point into buffers owned by [`Batch`] and sized at construction.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Largest datagram the tool sends or receives.
pub const SLOT: usize = 4096;

/// `addr` if it is IPv4 in 127.0.0.0/8, else an error naming it.
pub fn loopback(addr: SocketAddr) -> Result<SocketAddrV4, String> {
    match addr {
        SocketAddr::V4(a) if a.ip().is_loopback() => Ok(a),
        _ => Err(format!("{addr}: only 127.0.0.0/8 addresses are allowed")),
    }
}

/// A non-blocking UDP socket bound to `addr` with `bytes` of kernel buffer each way (the
/// kernel caps it at `net.core.rmem_max` / `wmem_max`).
pub fn socket(addr: SocketAddrV4, bytes: usize) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    let v = bytes as libc::c_int;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: `v` is a live c_int for the duration of the call and its size is passed.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const v).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(s)
}

fn to_c(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_c(a: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
        u16::from_be(a.sin_port),
    )
}

/// `n` datagram slots with their addresses, for one `recvmmsg` or `sendmmsg` each.
///
/// The header arrays point into `data` and `addrs`; all four vectors are allocated once and
/// never resized, so the pointers stay valid while the `Batch` lives (moving the `Batch`
/// moves only the vectors' handles, not their heap buffers).
pub struct Batch {
    data: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Slots in use (filled by `recv` or by the caller before `send`).
    pub len: usize,
}

impl Batch {
    /// A batch of `n` slots of [`SLOT`] bytes.
    pub fn new(n: usize) -> Batch {
        let mut b = Batch {
            data: vec![0; n * SLOT],
            lens: vec![0; n],
            addrs: vec![to_c(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)); n],
            iovs: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
            len: 0,
        };
        for i in 0..n {
            b.iovs.push(libc::iovec {
                iov_base: b.data[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            });
        }
        for i in 0..n {
            // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (&raw mut b.addrs[i]).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &raw mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// The bytes of slot `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[i * SLOT..i * SLOT + self.lens[i]]
    }

    /// Peer address of slot `i` (source after `recv`, destination for `send`).
    pub fn addr(&self, i: usize) -> SocketAddrV4 {
        from_c(&self.addrs[i])
    }

    /// Sets the destination of slot `i`.
    pub fn set_addr(&mut self, i: usize, a: SocketAddrV4) {
        self.addrs[i] = to_c(a);
    }

    /// Fills slot `i` with what `f` writes into the slot buffer (returning the length), to
    /// be sent to `to`.
    pub fn fill(&mut self, i: usize, to: SocketAddrV4, f: impl FnOnce(&mut [u8]) -> usize) {
        let n = f(&mut self.data[i * SLOT..(i + 1) * SLOT]);
        self.lens[i] = n.min(SLOT);
        self.addrs[i] = to_c(to);
    }

    /// Receives up to `capacity()` datagrams without blocking; `len` is how many arrived.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        for i in 0..self.capacity() {
            self.iovs[i].iov_len = SLOT;
            self.hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            self.hdrs[i].msg_hdr.msg_flags = 0;
        }
        // SAFETY: `hdrs` holds `capacity()` initialised headers whose name and iovec pointers
        // point into `addrs`, `iovs` and `data`, which this `&mut self` keeps alive and
        // unaliased for the duration of the call; iovec lengths equal the slot size.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.capacity() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.len = 0;
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.len = n as usize;
        for i in 0..self.len {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(self.len)
    }

    /// Sends slots `0..len` (each to its address) in as few `sendmmsg` calls as the kernel
    /// allows; returns how many were sent before the socket buffer filled up.
    pub fn send(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        for i in 0..self.len {
            self.iovs[i].iov_len = self.lens[i];
            self.hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        let mut done = 0;
        while done < self.len {
            // SAFETY: as in `recv`; slots `done..len` are initialised headers whose iovec
            // lengths do not exceed their slots.
            let n = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs[done..].as_mut_ptr(),
                    (self.len - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    // A datagram to a closed port (ICMP reported on the next call): skip it.
                    io::ErrorKind::ConnectionRefused => done += 1,
                    _ => return Err(e),
                }
            } else {
                done += n as usize;
            }
        }
        Ok(done)
    }
}

/// Waits until one of `socks` is readable or `timeout` passes; returns a readable mask.
pub fn wait(socks: &[&UdpSocket], timeout: Duration) -> u32 {
    let mut fds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let n = socks.len().min(fds.len());
    for (f, s) in fds.iter_mut().zip(socks) {
        f.fd = s.as_raw_fd();
        f.events = libc::POLLIN;
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds[..n]` are initialised pollfds owned by this frame, `ts` lives across the
    // call, and a null signal mask means "leave the mask alone".
    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
    if r <= 0 {
        return 0;
    }
    let mut mask = 0;
    for (i, f) in fds[..n].iter().enumerate() {
        if f.revents != 0 {
            mask |= 1 << i;
        }
    }
    mask
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Makes SIGTERM and SIGINT set the flag read by [`stopped`] (so long-running modes can
/// print their counters when a script stops them).
pub fn catch_stop() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// A stop signal arrived.
pub fn stopped() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}
