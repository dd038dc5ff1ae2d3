//! The `recvmmsg` / `sendmmsg` backend: the fallback where io_uring is refused.
//!
//! One `poll` over the worker's sockets, one `recvmmsg` per readable socket into a fixed array of
//! receive slots (`batch` of them, `max_datagram` bytes each) — the priority lanes first, the
//! normal lanes with the room left — the handler, then one `sendmmsg` per address (from its
//! normal-lane socket). `sendmmsg` copies the data into the kernel before returning, so the receive slots
//! are free again as soon as it returns. All arrays are sized at construction.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

use super::sock::{SOCKADDR_LEN, bind_lanes, parse_sockaddr};
use super::txq::{Outbox, TxQueue};
use super::{
    Backend, BatchStats, Datagram, Datapath, Handler, Lane, Load, NetConfig, SocketIdx, wait_for,
};

/// How long a full socket send buffer (`EAGAIN`) is waited for before the rest of that socket's
/// transmits are counted as send errors.
const SEND_STALL: Duration = Duration::from_millis(200);

/// `recvmmsg` / `sendmmsg` datapath over one worker's sockets.
pub struct MmsgDatapath {
    /// Per address: the normal-lane and the priority-lane socket.
    socks: Vec<[Socket; 2]>,
    locals: Vec<SocketAddr>,
    /// Socket `2a + lane` of address `a` (lane 0 normal, 1 priority).
    pollfds: Box<[libc::pollfd]>,
    slot_len: usize,
    rx_buf: Box<[u8]>,
    rx_names: Box<[libc::sockaddr_in6]>,
    /// Pointed to by `rx_hdrs`; kept alive, never read from Rust.
    _rx_iov: Box<[libc::iovec]>,
    rx_hdrs: Box<[libc::mmsghdr]>,
    /// Which socket filled each receive slot (index into `pollfds`).
    rx_sock: Box<[u16]>,
    tx: TxQueue,
    tx_names: Box<[SockAddr]>,
    tx_hdrs: Box<[libc::mmsghdr]>,
    /// The address read first in the next batch (per lane), rotated so a busy address cannot
    /// starve others.
    first: usize,
    backlog: super::Backlog,
    /// `NetConfig::batch_wait`, and how many datagrams the previous batch received: after a
    /// batch with some traffic, the next one first naps for the window so that one `poll` and
    /// one `recvmmsg` serve what arrived meanwhile (after a quiet batch it waits as usual and
    /// handles the first arrival at once; after a full one it reads at once) — the
    /// `min_wait` of the io_uring backend, by hand.
    batch_wait: Duration,
    last_filled: usize,
}

// SAFETY: the raw pointers in the iovec / msghdr arrays point into buffers owned by this value
// (boxed slices, which never move) and are only used inside `run_batch`; nothing is shared with
// another thread.
unsafe impl Send for MmsgDatapath {}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is a plain C struct for which all-zero bytes (null pointers, zero
    // lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}

fn zeroed_sockaddr_in6() -> libc::sockaddr_in6 {
    // SAFETY: `sockaddr_in6` is a plain C struct of integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

impl MmsgDatapath {
    /// Binds `addrs` (see [`super::open`]) and sizes every buffer from `cfg`.
    pub fn open(addrs: &[SocketAddr], cfg: &NetConfig) -> io::Result<MmsgDatapath> {
        let (socks, locals) = bind_lanes(addrs, cfg)?;
        let batch = cfg.batch.clamp(1, 1024);
        let slot_len = cfg.max_datagram.max(1);
        let mut rx_buf = vec![0u8; batch * slot_len].into_boxed_slice();
        let mut rx_names = vec![zeroed_sockaddr_in6(); batch].into_boxed_slice();
        let base = rx_buf.as_mut_ptr();
        let mut rx_iov: Box<[libc::iovec]> = (0..batch)
            .map(|i| libc::iovec {
                iov_base: base.wrapping_add(i * slot_len).cast(),
                iov_len: slot_len,
            })
            .collect();
        let rx_hdrs = (0..batch)
            .map(|i| {
                let mut h = zeroed_mmsghdr();
                h.msg_hdr.msg_name = (&raw mut rx_names[i]).cast();
                h.msg_hdr.msg_iov = &raw mut rx_iov[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let pollfds = socks
            .iter()
            .flatten()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let tx = TxQueue::new(cfg.transmits, cfg.header_capacity);
        let cap = tx.capacity();
        Ok(MmsgDatapath {
            rx_sock: vec![0; batch].into_boxed_slice(),
            tx_names: vec![SockAddr::from(locals[0]); cap].into_boxed_slice(),
            tx_hdrs: vec![zeroed_mmsghdr(); cap].into_boxed_slice(),
            socks,
            locals,
            pollfds,
            slot_len,
            rx_buf,
            rx_names,
            _rx_iov: rx_iov,
            rx_hdrs,
            tx,
            first: 0,
            backlog: super::Backlog::default(),
            batch_wait: cfg.batch_wait,
            last_filled: 0,
        })
    }

    /// Waits for readability and fills receive slots, priority lanes first; returns how many
    /// were filled and whether the worker is behind (a normal lane filled the room left and
    /// its queue is deep, see `Backlog`).
    fn receive(&mut self, timeout: Option<Duration>) -> io::Result<(usize, bool)> {
        for p in self.pollfds.iter_mut() {
            p.revents = 0;
        }
        let ms = timeout.map_or(-1, |t| {
            i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
        });
        // SAFETY: `pollfds` is a live, exclusively borrowed array of `len()` initialised pollfd.
        let r = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                ms,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok((0, false))
            } else {
                Err(e)
            };
        }
        let mut filled = 0;
        // The fullest normal-lane queue among those that filled the room left.
        let mut full: Option<u32> = None;
        let naddrs = self.socks.len();
        self.first = (self.first + 1) % naddrs;
        let first = self.first;
        for lane in [1, 0] {
            for s in (0..naddrs).map(|k| 2 * ((first + k) % naddrs) + lane) {
                if self.pollfds[s].revents == 0 {
                    continue;
                }
                let room = self.rx_hdrs.len() - filled;
                let n = if room == 0 {
                    0
                } else {
                    self.recv_into(s, filled)?
                };
                if lane == 0 && n == room {
                    let fill = super::sock::queue_fill_percent(&self.socks[s / 2][0]).unwrap_or(0);
                    full = Some(full.map_or(fill, |f| f.max(fill)));
                }
                filled += n;
            }
        }
        let backlog = self.backlog.update(full.is_some(), || full.unwrap_or(0));
        Ok((filled, backlog))
    }

    /// One `recvmmsg` on socket `s` (index into `pollfds`) into the slots from `filled` on;
    /// returns how many it filled (0 for nothing waiting or a queued ICMP error).
    fn recv_into(&mut self, s: usize, filled: usize) -> io::Result<usize> {
        for h in &mut self.rx_hdrs[filled..] {
            h.msg_hdr.msg_namelen = SOCKADDR_LEN as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let room = self.rx_hdrs.len() - filled;
        // SAFETY: the headers from `filled` on point at name storage and iovecs owned by
        // `self` that describe `slot_len`-byte slices of `rx_buf`; all outlive this
        // synchronous call, and no Rust reference to those bytes is alive during it.
        let n = unsafe {
            libc::recvmmsg(
                self.pollfds[s].fd,
                self.rx_hdrs[filled..].as_mut_ptr(),
                room as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                // ICMP errors queued on the socket (e.g. port unreachable after a send)
                // are reported once; they do not stop the worker.
                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH) => Ok(0),
                _ => Err(e),
            };
        }
        for k in filled..filled + n as usize {
            self.rx_sock[k] = s as u16;
        }
        Ok(n as usize)
    }

    /// Sends every queued transmit: one `sendmmsg` per socket (more only if the kernel takes
    /// part of a batch or refuses one message).
    fn send(&mut self, stats: &mut BatchStats) {
        let q = &mut self.tx;
        q.finish();
        for i in 0..q.len() {
            self.tx_names[i] = SockAddr::from(q.meta(i).to);
        }
        for (s, [sock, _]) in self.socks.iter().enumerate() {
            let mut n = 0;
            for i in (0..q.len()).filter(|&i| usize::from(q.meta(i).from.0) == s) {
                let iov = q.iovecs(i);
                let h = &mut self.tx_hdrs[n].msg_hdr;
                h.msg_name = self.tx_names[i].as_ptr().cast_mut().cast();
                h.msg_namelen = self.tx_names[i].len();
                h.msg_iov = iov.as_ptr().cast_mut();
                h.msg_iovlen = iov.len();
                n += 1;
            }
            let mut done = 0;
            let mut stalled = false;
            while done < n {
                // SAFETY: headers `done..n` point at sockaddrs in `tx_names` and iovecs in the
                // transmit queue, which describe the queue's header buffers and slices of
                // `rx_buf`; all are owned by `self`, unchanged and alive during this call.
                let r = unsafe {
                    libc::sendmmsg(
                        sock.as_raw_fd(),
                        self.tx_hdrs[done..n].as_mut_ptr(),
                        (n - done) as libc::c_uint,
                        0,
                    )
                };
                if r > 0 {
                    done += r as usize;
                    stats.sent += r as u64;
                    continue;
                }
                let e = io::Error::last_os_error().raw_os_error();
                if e == Some(libc::EINTR) {
                    continue;
                }
                if e == Some(libc::EAGAIN) && !stalled {
                    stalled = !wait_writable(sock, SEND_STALL);
                    continue;
                }
                if e == Some(libc::EAGAIN) {
                    stats.send_errors += (n - done) as u64;
                    break;
                }
                // The first message of the rest was refused: count it, go on with the next.
                stats.send_errors += 1;
                done += 1;
            }
        }
        stats.referenced_bytes += q.referenced;
        stats.copied_bytes += q.copied;
        q.clear();
    }
}

/// Polls `sock` for writability up to `t`; true when it became writable.
fn wait_writable(sock: &Socket, t: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `p` is a live pollfd on this stack frame.
    let r = unsafe { libc::poll(&mut p, 1, t.as_millis() as i32) };
    r > 0
}

impl Datapath for MmsgDatapath {
    fn kind(&self) -> Backend {
        Backend::Mmsg
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    fn steer(&self, steering: &super::Steering) -> io::Result<()> {
        super::sock::steer_lanes(&self.socks, steering)
    }

    fn run_batch(
        &mut self,
        max_wait: Option<Duration>,
        handler: &mut dyn Handler,
    ) -> io::Result<BatchStats> {
        let mut stats = BatchStats::default();
        let mut timeout = wait_for(max_wait, handler.next_deadline(), Instant::now());
        // A full previous batch means more is waiting already: no nap then.
        if self.last_filled > 0
            && self.last_filled < self.rx_hdrs.len()
            && !self.batch_wait.is_zero()
        {
            let nap = timeout.map_or(self.batch_wait, |t| t.min(self.batch_wait));
            if !nap.is_zero() {
                std::thread::sleep(nap);
                timeout = timeout.map(|t| t.saturating_sub(nap));
            }
        }
        let (filled, backlog) = self.receive(timeout)?;
        self.last_filled = filled;
        // The clock is read after the wait: every datagram of this batch carries this time.
        let now = Instant::now();
        stats.backlog = u64::from(backlog);
        handler.begin(now, Load { backlog });
        for k in 0..filled {
            let h = &self.rx_hdrs[k];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.truncated += 1;
                continue;
            }
            let name = &self.rx_names[k];
            // SAFETY: `name` is a live, initialised `sockaddr_in6` (integers only, no padding)
            // and the length is capped at its size.
            let name_bytes = unsafe {
                std::slice::from_raw_parts(
                    (name as *const libc::sockaddr_in6).cast::<u8>(),
                    (h.msg_hdr.msg_namelen as usize).min(SOCKADDR_LEN),
                )
            };
            let Some(peer) = parse_sockaddr(name_bytes) else {
                continue;
            };
            let len = (h.msg_len as usize).min(self.slot_len);
            let data = &self.rx_buf[k * self.slot_len..k * self.slot_len + len];
            let s = self.rx_sock[k];
            let dg = Datagram {
                data,
                peer,
                local: SocketIdx(s / 2),
                lane: if s % 2 == 1 {
                    Lane::Priority
                } else {
                    Lane::Normal
                },
            };
            stats.received += 1;
            handler.datagram(now, &dg, &mut Outbox::new(&mut self.tx, &self.locals, data));
        }
        handler.tick(now, &mut Outbox::new(&mut self.tx, &self.locals, &[]));
        self.send(&mut stats);
        Ok(stats)
    }
}
