//! The io_uring backend: one ring per worker, a multishot `RecvMsg` per socket receiving into a
//! provided-buffer ring (one ring per lane, so a flood on the normal lane cannot take the
//! priority lane's buffers), and every transmit of a batch as a `SendMsg` SQE flushed with one
//! `io_uring_enter`. A batch hands the priority lane's datagrams to the handler first.
//!
//! Buffer ownership is the whole story here. A provided buffer belongs to the kernel while it is
//! in the buffer ring; a CQE hands it to us (its id is in the CQE flags), and it stays ours — the
//! handler reads it, transmits reference it — until every send of the batch has completed and
//! [`ProvidedBuffers::recycle`] puts it back in the ring. Rust slices are only ever made of
//! buffers we own, so the kernel never writes memory a live reference covers.
//!
//! The multishot receive ends when the kernel says so (a CQE without `IORING_CQE_F_MORE`: no
//! buffer left (`ENOBUFS`), cancellation, an error); the socket is re-armed at the start of the
//! next batch, after buffers were recycled. Datagrams arriving meanwhile wait in the socket's
//! receive buffer.
//!
//! The ring is set up with `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel accepts it (Linux
//! 6.1; see [`RingMode`]), so receptions are processed only while we wait in `io_uring_enter`,
//! never by interrupting the worker. Sends of loopback and ordinary UDP complete inline during
//! the submission, so the wait for them is normally not a second `io_uring_enter`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use socket2::{SockAddr, Socket};

use super::sock::{SOCKADDR_LEN, bind_lanes, parse_sockaddr};
use super::txq::{Outbox, TxQueue};
use super::{
    Backend, BatchStats, Datagram, Datapath, Handler, Lane, Load, NetConfig, SocketIdx, wait_for,
};

/// The buffer group id of each lane's provided-buffer ring (index = lane: 0 normal, 1
/// priority).
const BGID: [u16; 2] = [0, 1];
const TAG_RECV: u64 = 1 << 32;
const TAG_SEND: u64 = 2 << 32;
const TAG_CANCEL: u64 = 3 << 32;
const TAG_MASK: u64 = 0xffff_ffff << 32;
/// Size of `struct io_uring_recvmsg_out`, which precedes name and payload in each buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// A multishot receive takes at most this many datagrams per socket before the kernel
/// requeues it (`MULTISHOT_MAX_RETRY`): a batch that got fewer from the normal lane left
/// nothing behind worth asking about.
const MULTISHOT_ROUND: usize = 32;
/// With a batch wait: the completions asked for (in practice never reached: a multishot
/// receive posts one task-work item per socket wake-up, so the window always runs out first).
const BATCH_WANT: usize = 64;
/// How long a batch waits for its sends before giving up with an error.
const SEND_DEADLINE: Duration = Duration::from_secs(5);

/// How the ring runs task work (the kernel's deferred part of a receive or send).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum RingMode {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1): task work runs only when we enter the kernel
    /// to wait for completions, so a datagram arriving while we work costs no interrupt and a
    /// waiting worker is woken once enough completions are ready. The ring belongs to one
    /// thread: it is created disabled (`R_DISABLED`) and enabled by the first `run_batch`,
    /// whose thread then owns it (the daemon opens datapaths on the main thread and runs them
    /// on workers). Another thread entering it later gets `EEXIST`.
    DeferTaskrun,
    /// No setup flags: task work interrupts the worker when it arrives.
    Default,
}

impl RingMode {
    /// Tried in this order; a kernel refusing one with `EINVAL` gets the next.
    const PREFERRED: [RingMode; 2] = [RingMode::DeferTaskrun, RingMode::Default];

    fn build(self, sq: u32, cq: u32) -> io::Result<IoUring> {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq);
        if self == RingMode::DeferTaskrun {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_r_disabled();
        }
        b.build(sq)
    }
}

/// Calls `build` with each of `modes` until one is accepted. Only `EINVAL` (flags
/// this kernel does not know) moves on; any other error (`EPERM`, `ENOMEM`) is returned as is.
fn with_fallback<T>(
    modes: &[RingMode],
    mut build: impl FnMut(RingMode) -> io::Result<T>,
) -> io::Result<(T, RingMode)> {
    let mut last = None;
    for &mode in modes {
        match build(mode) {
            Ok(t) => return Ok((t, mode)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Page-aligned, zeroed memory from an anonymous `mmap`, only accessed through raw pointers
/// (the kernel reads or writes it concurrently), unmapped on drop.
///
/// Anonymous pages cost nothing until written: a 64 KiB receive buffer that only ever holds
/// ~1 KiB SIP datagrams keeps one resident page, not sixteen (an allocator's zeroed, aligned
/// allocation would write, and so commit, every page up front).
struct RawMem {
    ptr: NonNull<u8>,
    len: usize,
    /// Set when the kernel might still use the memory: leaking beats a use after free.
    leak: bool,
}

impl RawMem {
    fn new(len: usize) -> io::Result<RawMem> {
        let len = len.max(1);
        // SAFETY: a fresh private anonymous mapping: no address hint, no file; the kernel
        // returns page-aligned, zero-filled memory or MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| RawMem {
                ptr,
                len,
                leak: false,
            })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
    }
}

impl Drop for RawMem {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`, unmapped once; no
        // reference into it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The receive buffers and the ring through which they are provided to the kernel.
struct ProvidedBuffers {
    /// `count` buffers of `buf_len` bytes each.
    mem: RawMem,
    /// `count` `io_uring_buf` entries of 16 bytes; the ring tail is in the last two bytes of
    /// entry 0.
    ring: RawMem,
    buf_len: usize,
    count: u16,
    tail: u16,
}

impl ProvidedBuffers {
    fn new(count: u16, buf_len: usize) -> io::Result<ProvidedBuffers> {
        debug_assert!(count.is_power_of_two());
        let mut b = ProvidedBuffers {
            mem: RawMem::new(usize::from(count) * buf_len)?,
            ring: RawMem::new(usize::from(count) * 16)?,
            buf_len,
            count,
            tail: 0,
        };
        for bid in 0..count {
            b.recycle(bid);
        }
        b.publish();
        Ok(b)
    }

    /// The whole buffer `bid`.
    ///
    /// # Safety
    /// The caller owns buffer `bid`: a CQE handed it over and it has not been recycled since,
    /// so the kernel does not write it while the returned slice lives.
    unsafe fn get(&self, bid: u16) -> &[u8] {
        assert!(bid < self.count);
        let off = usize::from(bid) * self.buf_len;
        // SAFETY: `off + buf_len` is within `mem` (bid < count), the memory is initialised
        // (zeroed at allocation, then written by the kernel), and by the caller's contract no
        // one writes it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.mem.ptr.as_ptr().add(off), self.buf_len) }
    }

    /// Writes buffer `bid` into the next ring entry; visible to the kernel after
    /// [`ProvidedBuffers::publish`].
    fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count);
        let idx = usize::from(self.tail & (self.count - 1));
        let addr = self
            .mem
            .ptr
            .as_ptr()
            .wrapping_add(usize::from(bid) * self.buf_len) as u64;
        let entry = self.ring.ptr.as_ptr().wrapping_add(idx * 16);
        // SAFETY: `entry` is the 16-byte entry `idx < count` inside `ring`, 8-byte aligned (the
        // ring is page aligned). The kernel does not read entries between its head and our
        // unpublished tail, so writing addr/len/bid (bytes 0..14, not the tail in 14..16) races
        // with nothing.
        unsafe {
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(self.buf_len as u32);
            entry.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every recycled buffer available to the kernel.
    fn publish(&self) {
        // SAFETY: bytes 14..16 of the page-aligned ring are the kernel-shared tail, a u16 the
        // kernel only reads (with acquire); the release store orders our entry writes first.
        let tail = unsafe { AtomicU16::from_ptr(self.ring.ptr.as_ptr().add(14).cast()) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// One received datagram waiting to be handled; its buffer is ours until recycled.
#[derive(Copy, Clone, Debug)]
struct Rx {
    bid: u16,
    /// Socket `2a + lane` of address `a`.
    sock: u16,
    off: u32,
    len: u32,
    peer: SocketAddr,
}

/// io_uring datapath over one worker's sockets.
pub struct UringDatapath {
    // Field order matters for drop: `Drop` quiesces the ring, then the ring is closed before
    // the memory it used is freed.
    ring: IoUring,
    /// How task work is run (see [`RingMode`]); read by tests.
    #[cfg_attr(not(test), allow(dead_code))]
    mode: RingMode,
    /// False until the first batch enabled a ring created disabled (see [`RingMode`]).
    enabled: bool,
    /// Per lane (0 normal, 1 priority).
    bufs: [ProvidedBuffers; 2],
    /// Per address: the normal-lane and the priority-lane socket (socket `2a + lane`).
    socks: Vec<[Socket; 2]>,
    locals: Vec<SocketAddr>,
    /// Per socket `2a + lane`: the msghdr template of its multishot receive (only the name and control
    /// lengths matter); read by the kernel while the receive is armed.
    recv_msg: Box<[libc::msghdr]>,
    armed: Box<[bool]>,
    /// Received, not yet handled (at most one entry per buffer).
    pending: Box<[Rx]>,
    npending: usize,
    tx: TxQueue,
    tx_names: Box<[SockAddr]>,
    tx_msgs: Box<[libc::msghdr]>,
    in_flight: usize,
    /// Multishot receives armed, and how many ended for lack of buffers (for tests).
    arms: u64,
    enobufs: u64,
    /// Since the last batch began: normal-lane datagrams received, and whether a normal-lane
    /// receive ran out of buffers (together: [`Load::backlog`]).
    normal_rx: usize,
    normal_starved: bool,
    /// Since the last batch began: the priority lane ran out of buffers (more replies than a
    /// batch takes: the worker is behind whatever the normal lane says).
    priority_starved: bool,
    backlog: super::Backlog,
    /// An unexpected receive error, reported by `run_batch` once the batch is consistent.
    recv_error: Option<io::Error>,
    /// `NetConfig::batch_wait` in µs when set and the kernel has `min_wait`.
    batch_wait_us: Option<u32>,
}

// SAFETY: the raw pointers inside (msghdrs, provided buffers, iovecs) point at memory owned by
// this value, used only inside its methods; the ring is used by one thread at a time.
unsafe impl Send for UringDatapath {}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: `msghdr` is a plain C struct; all-zero (null pointers, zero lengths) is valid.
    unsafe { std::mem::zeroed() }
}

impl UringDatapath {
    /// Binds `addrs` (see [`super::open`]), sets up the ring and registers the provided
    /// buffers.
    pub fn open(addrs: &[SocketAddr], cfg: &NetConfig) -> io::Result<UringDatapath> {
        Self::open_with(addrs, cfg, &RingMode::PREFERRED)
    }

    /// [`UringDatapath::open`] trying only `modes` (tests force the fallback with this).
    fn open_with(
        addrs: &[SocketAddr],
        cfg: &NetConfig,
        modes: &[RingMode],
    ) -> io::Result<UringDatapath> {
        let (socks, locals) = bind_lanes(addrs, cfg)?;
        let count = cfg.recv_buffers.clamp(1, 32_768).next_power_of_two() as u16;
        // The priority lane carries the replies to what the normal lane forwarded, often
        // several per request (100, 180, 200): twice as many buffers, so that a batch can take
        // them all (receive buffers cost only the pages datagrams were written to). A burst
        // beyond waits in its own socket queue, never in the normal one.
        let prio_count = (u32::from(count) * 2).min(32_768) as u16;
        let nsocks = 2 * socks.len();
        let buf_len = RECVMSG_OUT_LEN + SOCKADDR_LEN + cfg.max_datagram.max(1);
        let tx = TxQueue::new(cfg.transmits, cfg.header_capacity);
        let sq = (tx.capacity() + 2 * nsocks + 8)
            .next_power_of_two()
            .min(32_768) as u32;
        let cq = (2 * (usize::from(count) + usize::from(prio_count) + tx.capacity() + 2 * nsocks))
            .next_power_of_two()
            .min(65_536) as u32;
        let (ring, mode) = with_fallback(modes, |mode| mode.build(sq, cq.max(2 * sq)))?;
        let bufs = [
            ProvidedBuffers::new(count, buf_len)?,
            ProvidedBuffers::new(prio_count, buf_len)?,
        ];
        for (b, bgid) in bufs.iter().zip(BGID) {
            // SAFETY: the ring memory (`b.count` entries) lives in `bufs`, which the returned
            // value owns and drops only after the ring (see `Drop`), so it stays valid while
            // registered.
            unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    b.ring.ptr.as_ptr() as u64,
                    b.count,
                    bgid,
                    0,
                )?;
            }
        }
        let recv_msg = (0..nsocks)
            .map(|_| {
                let mut m = zeroed_msghdr();
                m.msg_namelen = SOCKADDR_LEN as libc::socklen_t;
                m
            })
            .collect();
        let cap = tx.capacity();
        let batch_wait_us = (!cfg.batch_wait.is_zero() && ring.params().is_feature_min_timeout())
            .then(|| u32::try_from(cfg.batch_wait.as_micros()).unwrap_or(u32::MAX));
        Ok(UringDatapath {
            batch_wait_us,
            ring,
            mode,
            enabled: mode != RingMode::DeferTaskrun,
            bufs,
            armed: vec![false; nsocks].into_boxed_slice(),
            pending: vec![
                Rx {
                    bid: 0,
                    sock: 0,
                    off: 0,
                    len: 0,
                    peer: locals[0],
                };
                usize::from(count) + usize::from(prio_count)
            ]
            .into_boxed_slice(),
            npending: 0,
            tx_names: vec![SockAddr::from(locals[0]); cap].into_boxed_slice(),
            tx_msgs: vec![zeroed_msghdr(); cap].into_boxed_slice(),
            tx,
            socks,
            locals,
            recv_msg,
            in_flight: 0,
            arms: 0,
            enobufs: 0,
            normal_rx: 0,
            normal_starved: false,
            priority_starved: false,
            backlog: super::Backlog::default(),
            recv_error: None,
        })
    }

    /// Pushes an SQE, submitting first if the queue is full.
    ///
    /// # Safety
    /// Everything `e` points to stays valid until its completion.
    unsafe fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from the caller's contract.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            self.submit()?;
        }
    }

    /// Submits queued SQEs without waiting. `EBUSY` (completions overflowed; they are kept and
    /// reaped next) and `EINTR` are not errors.
    fn submit(&mut self) -> io::Result<()> {
        match self.ring.submit() {
            Err(e) if !matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EINTR)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Arms a multishot receive on every socket whose previous one ended.
    fn arm(&mut self) -> io::Result<()> {
        for s in 0..self.armed.len() {
            if self.armed[s] {
                continue;
            }
            let e = opcode::RecvMsgMulti::new(
                Fd(self.socks[s / 2][s % 2].as_raw_fd()),
                &raw const self.recv_msg[s],
                BGID[s % 2],
            )
            .build()
            .user_data(TAG_RECV | s as u64);
            // SAFETY: the msghdr template lives in `recv_msg` (a boxed slice owned by self that
            // never moves) and the buffers in `bufs`; both outlive the ring (see `Drop`).
            unsafe { self.push(&e)? };
            self.armed[s] = true;
            self.arms += 1;
        }
        Ok(())
    }

    /// Drains the completion queue: receptions go to `pending`, send results to `stats`.
    fn reap(&mut self, stats: &mut BatchStats) {
        for cqe in self.ring.completion() {
            let (tag, idx) = (cqe.user_data() & TAG_MASK, cqe.user_data() as u32 as usize);
            let (res, flags) = (cqe.result(), cqe.flags());
            match tag {
                TAG_SEND => {
                    self.in_flight -= 1;
                    if res < 0 {
                        stats.send_errors += 1;
                    } else {
                        stats.sent += 1;
                    }
                }
                TAG_RECV => {
                    if !cqueue::more(flags) {
                        self.armed[idx] = false;
                    }
                    if res < 0 {
                        self.enobufs += u64::from(res == -libc::ENOBUFS);
                        self.normal_starved |= res == -libc::ENOBUFS && idx % 2 == 0;
                        self.priority_starved |= res == -libc::ENOBUFS && idx % 2 == 1;
                        match -res {
                            libc::ENOBUFS | libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                            libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH => {}
                            e => self.recv_error = Some(io::Error::from_raw_os_error(e)),
                        }
                        continue;
                    }
                    let Some(bid) = cqueue::buffer_select(flags) else {
                        continue;
                    };
                    let lane = idx % 2;
                    // SAFETY: the CQE handed buffer `bid` of this lane's group to us; it is
                    // recycled only after this datagram was handled and its sends completed (or
                    // right below if dropped).
                    let buf = unsafe { self.bufs[lane].get(bid) };
                    let got = RecvMsgOut::parse(
                        &buf[..(res as usize).min(buf.len())],
                        &self.recv_msg[idx],
                    );
                    let rx = got.ok().and_then(|m| {
                        if m.is_payload_truncated() {
                            stats.truncated += 1;
                            return None;
                        }
                        let peer = parse_sockaddr(m.name_data())?;
                        let off = m.payload_data().as_ptr() as usize - buf.as_ptr() as usize;
                        Some(Rx {
                            bid,
                            sock: idx as u16,
                            off: off as u32,
                            len: m.payload_data().len() as u32,
                            peer,
                        })
                    });
                    match rx {
                        Some(rx) => {
                            self.pending[self.npending] = rx;
                            self.npending += 1;
                            self.normal_rx += usize::from(lane == 0);
                        }
                        None => {
                            self.bufs[lane].recycle(bid);
                            self.bufs[lane].publish();
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Submits queued SQEs and waits up to `timeout` for one completion.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.wait_batch(timeout, None)
    }

    /// [`UringDatapath::wait`]; with `window` (µs), completions that arrive within it of the
    /// start of the wait are collected before returning (the kernel's `min_wait`).
    fn wait_batch(&mut self, timeout: Option<Duration>, window: Option<u32>) -> io::Result<()> {
        let r = match (timeout, window) {
            (Some(t), _) if t.is_zero() => self.ring.submit(),
            (None, None) => self.ring.submit_and_wait(1),
            (None, Some(us)) => {
                let args = SubmitArgs::new().min_wait_usec(us);
                self.ring.submitter().submit_with_args(BATCH_WANT, &args)
            }
            (Some(t), window) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                match window {
                    Some(us) => self
                        .ring
                        .submitter()
                        .submit_with_args(BATCH_WANT, &args.min_wait_usec(us)),
                    None => self.ring.submitter().submit_with_args(1, &args),
                }
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Queues one `SendMsg` per transmit, submits them together and waits for all of them.
    fn flush(&mut self, stats: &mut BatchStats) -> io::Result<()> {
        self.tx.finish();
        for i in 0..self.tx.len() {
            let m = *self.tx.meta(i);
            self.tx_names[i] = SockAddr::from(m.to);
            let iov = self.tx.iovecs(i);
            let h = &mut self.tx_msgs[i];
            h.msg_name = self.tx_names[i].as_ptr().cast_mut().cast();
            h.msg_namelen = self.tx_names[i].len();
            h.msg_iov = iov.as_ptr().cast_mut();
            h.msg_iovlen = iov.len();
            let e = opcode::SendMsg::new(
                Fd(self.socks[usize::from(m.from.0)][0].as_raw_fd()),
                &raw const self.tx_msgs[i],
            )
            .build()
            .user_data(TAG_SEND | i as u64);
            // SAFETY: the msghdr, sockaddr and iovecs live in boxed slices owned by self, and
            // the bytes the iovecs name (header buffers, receive buffers of this batch) are not
            // written or recycled until `in_flight` is back to zero below.
            unsafe { self.push(&e)? };
            self.in_flight += 1;
        }
        stats.referenced_bytes += self.tx.referenced;
        stats.copied_bytes += self.tx.copied;
        if self.in_flight == 0 {
            return Ok(());
        }
        self.submit()?;
        let deadline = Instant::now() + SEND_DEADLINE;
        while self.in_flight > 0 {
            self.reap(stats);
            if self.in_flight == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "io_uring sends did not complete",
                ));
            }
            self.wait(Some(left.min(Duration::from_millis(100))))?;
        }
        self.tx.clear();
        Ok(())
    }
}

impl Datapath for UringDatapath {
    fn kind(&self) -> Backend {
        Backend::IoUring
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
        if !self.enabled {
            // The calling thread becomes the ring's only issuer (see `RingMode::DeferTaskrun`).
            self.ring.submitter().register_enable_rings()?;
            self.enabled = true;
        }
        self.arm()?;
        if self.npending == 0 && self.ring.completion().is_empty() {
            let window = self.batch_wait_us;
            self.wait_batch(
                wait_for(max_wait, handler.next_deadline(), Instant::now()),
                window,
            )?;
        } else if !self.ring.submission().is_empty() {
            self.submit()?;
        }
        self.reap(&mut stats);
        // The clock is read after the wait: every datagram of this batch carries this time.
        let now = Instant::now();
        // A full load: the normal lane's buffers ran out, or a full multishot round came in
        // (the kernel feeds a multishot receive in rounds, so the number received alone does
        // not show what waits); only then is the socket queue asked how full it is.
        let full = self.normal_starved
            || self.normal_rx >= MULTISHOT_ROUND.min(usize::from(self.bufs[0].count));
        let socks = &self.socks;
        let backlog = self.backlog.update(full, || {
            socks
                .iter()
                .map(|[normal, _]| super::sock::queue_fill_percent(normal).unwrap_or(0))
                .max()
                .unwrap_or(0)
        }) || self.priority_starved;
        self.normal_rx = 0;
        self.normal_starved = false;
        self.priority_starved = false;
        stats.backlog = u64::from(backlog);
        handler.begin(now, Load { backlog });
        let handled = self.npending;
        // The priority lane first, then the normal lane, each in arrival order.
        for lane in [1, 0] {
            for k in 0..handled {
                let rx = self.pending[k];
                if usize::from(rx.sock % 2) != lane {
                    continue;
                }
                // SAFETY: `rx.bid` came from a CQE of this lane's group and is recycled only
                // after this batch's sends completed (below).
                let buf = unsafe { self.bufs[lane].get(rx.bid) };
                let data = &buf[rx.off as usize..(rx.off + rx.len) as usize];
                let dg = Datagram {
                    data,
                    peer: rx.peer,
                    local: SocketIdx(rx.sock / 2),
                    lane: if lane == 1 {
                        Lane::Priority
                    } else {
                        Lane::Normal
                    },
                };
                stats.received += 1;
                handler.datagram(now, &dg, &mut Outbox::new(&mut self.tx, &self.locals, data));
            }
        }
        handler.tick(now, &mut Outbox::new(&mut self.tx, &self.locals, &[]));
        // Receptions completing while we wait for the sends are appended to `pending` and
        // handled by the next batch.
        self.flush(&mut stats)?;
        for k in 0..handled {
            let rx = self.pending[k];
            self.bufs[usize::from(rx.sock % 2)].recycle(rx.bid);
        }
        self.bufs[0].publish();
        self.bufs[1].publish();
        self.pending.copy_within(handled..self.npending, 0);
        self.npending -= handled;
        match self.recv_error.take() {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}

impl Drop for UringDatapath {
    /// Cancels the armed receives and waits (bounded) for their final completions, so that no
    /// operation can write into the buffers after they are freed; then unregisters the ring.
    fn drop(&mut self) {
        if !self.enabled {
            // Never enabled: nothing was submitted, so nothing can touch the buffers.
            for bgid in BGID {
                let _ = self.ring.submitter().unregister_buf_ring(bgid);
            }
            return;
        }
        for s in 0..self.armed.len() {
            if self.armed[s] {
                let e = opcode::AsyncCancel::new(TAG_RECV | s as u64)
                    .build()
                    .user_data(TAG_CANCEL);
                // SAFETY: a cancel request points at nothing.
                if unsafe { self.push(&e) }.is_err() {
                    break;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut stats = BatchStats::default();
        while (self.armed.iter().any(|&a| a) || self.in_flight > 0) && Instant::now() < deadline {
            if self.wait(Some(Duration::from_millis(50))).is_err() {
                break;
            }
            self.reap(&mut stats);
        }
        if self.armed.iter().any(|&a| a) || self.in_flight > 0 {
            for b in &mut self.bufs {
                b.mem.leak = true;
                b.ring.leak = true;
            }
        }
        for bgid in BGID {
            let _ = self.ring.submitter().unregister_buf_ring(bgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_buffers_wrap_the_ring_tail() {
        let mut b = ProvidedBuffers::new(4, 32).unwrap();
        assert_eq!(b.tail, 4);
        for i in 0..70_000u32 {
            b.recycle((i % 4) as u16);
        }
        b.publish();
        assert_eq!(b.tail, (4 + 70_000u32 % 65_536) as u16);
        // SAFETY: no ring is registered with this memory, so nothing else writes it.
        let first = unsafe { b.get(0) };
        assert_eq!(first.len(), 32);
    }

    #[test]
    fn ring_setup_falls_back_only_on_einval() {
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let mut tried = Vec::new();
        let (_, mode) = with_fallback(&RingMode::PREFERRED, |m| {
            tried.push(m);
            if m == RingMode::DeferTaskrun {
                Err(einval())
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(mode, RingMode::Default);
        assert_eq!(tried, RingMode::PREFERRED);
        let e = with_fallback(&RingMode::PREFERRED, |_| Err::<(), _>(einval())).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let mut calls = 0;
        let e = with_fallback(&RingMode::PREFERRED, |_| {
            calls += 1;
            Err::<(), _>(io::Error::from_raw_os_error(libc::EPERM))
        })
        .unwrap_err();
        assert_eq!((e.raw_os_error(), calls), (Some(libc::EPERM), 1));
    }

    /// Every ring mode this kernel accepts carries traffic: the preferred one and the plain
    /// ring a kernel refusing `DEFER_TASKRUN` falls back to.
    #[test]
    fn every_ring_mode_echoes() {
        if let Some(why) = crate::netio::io_uring_unavailable() {
            println!("every_ring_mode_echoes: skipped: {why}");
            return;
        }
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let preferred = UringDatapath::open(&[lo], &NetConfig::default()).unwrap();
        println!("ring mode on this kernel: {:?}", preferred.mode);
        for mut dp in [
            preferred,
            UringDatapath::open_with(&[lo], &NetConfig::default(), &[RingMode::Default]).unwrap(),
        ] {
            let c = std::net::UdpSocket::bind(lo).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            for i in 0..8u8 {
                c.send_to(&[i], dp.local_addrs()[0]).unwrap();
            }
            let (mut received, mut sent) = (0, 0);
            let end = Instant::now() + Duration::from_secs(5);
            while received < 8 && Instant::now() < end {
                let s = dp
                    .run_batch(
                        Some(Duration::from_millis(20)),
                        &mut crate::netio::handler_fn(
                            |_, d, ob| ob.push(d.local, d.peer, &[d.data]).unwrap(),
                            |_, _| {},
                        ),
                    )
                    .unwrap();
                (received, sent) = (received + s.received, sent + s.sent);
            }
            assert_eq!((received, sent), (8, 8), "{:?}", dp.mode);
            let mut buf = [0u8; 4];
            for i in 0..8u8 {
                assert_eq!(c.recv(&mut buf).unwrap(), 1);
                assert_eq!(buf[0], i, "{:?}", dp.mode);
            }
        }
    }

    #[test]
    fn multishot_is_rearmed_after_running_out_of_buffers() {
        if let Some(why) = crate::netio::io_uring_unavailable() {
            println!("multishot_is_rearmed_after_running_out_of_buffers: skipped: {why}");
            return;
        }
        let cfg = NetConfig {
            recv_buffers: 4,
            ..NetConfig::default()
        };
        let mut dp = UringDatapath::open(&["127.0.0.1:0".parse().unwrap()], &cfg).unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..64u8 {
            c.send_to(&[i], dp.local_addrs()[0]).unwrap();
        }
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while got.len() < 64 && Instant::now() < end {
            dp.run_batch(
                Some(Duration::from_millis(20)),
                &mut crate::netio::handler_fn(|_, d, _| got.push(d.data[0]), |_, _| {}),
            )
            .unwrap();
        }
        assert_eq!(got, (0..64).collect::<Vec<u8>>(), "in order, none lost");
        assert!(
            dp.enobufs >= 1 && dp.arms >= 2,
            "arms {} enobufs {}",
            dp.arms,
            dp.enobufs
        );
        println!(
            "4 buffers, 64 datagrams: {} arms, {} ENOBUFS",
            dp.arms, dp.enobufs
        );
    }
}
