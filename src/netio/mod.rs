//! Batched UDP I/O: the only module of sipdisp that talks to sockets and the only one that
//! contains `unsafe`.
//!
//! One small trait, [`Datapath`], with three implementations in their own files:
//!
//! * [`uring`]: io_uring with a multishot `RecvMsg` into a provided-buffer ring and batched
//!   `SendMsg` submissions (one ring per worker thread, `SO_REUSEPORT` sockets);
//! * [`mmsg`]: `recvmmsg` / `sendmmsg` with the same slot model, for kernels or sandboxes
//!   (Docker's default seccomp profile, `kernel.io_uring_disabled`) without io_uring;
//! * [`memory`]: an in-memory backend for tests and benchmarks.
//!
//! [`probe::select`] decides at start which of the first two a worker uses.
//!
//! **Two lanes per address.** Each listen address has two sockets per worker, the normal lane
//! and the priority lane, with receive queues and (io_uring) receive buffers of their own. A
//! classic BPF program on the address's `SO_REUSEPORT` group ([`Datapath::steer`]) picks the
//! worker and sends a datagram whose payload starts with the caller's prefix (for sipdisp,
//! `SIP/`: a response) to that worker's priority socket. A batch takes the priority lane first
//! and tells the handler when the normal lane had more waiting than the batch could take
//! ([`Load::backlog`]), so that under overload the caller can answer or shed new work while
//! what is already under way keeps flowing: a flood of one lane cannot fill the other's queue.
//!
//! The contract that makes zero copy work: a handler sees each received datagram borrowed from
//! the backend's receive buffer and queues transmits in an [`Outbox`]. A transmit piece that lies
//! inside the datagram being handled is *referenced* (an iovec into the receive buffer); any other
//! piece (small generated headers) is copied into a fixed per-transmit header buffer. The backend
//! sends the whole batch with one submission, waits for the sends and only then reuses the
//! receive buffers. Everything is sized at construction: `run_batch` allocates nothing.
//!
//! netio knows nothing of SIP.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub mod memory;
pub mod mmsg;
pub mod probe;
mod sock;
mod txq;
pub mod uring;

#[cfg(test)]
mod tests;

pub use memory::{MemoryDatapath, Transmit};
pub use probe::{DatapathChoice, DatapathUnavailable, io_uring_unavailable, select};
pub use txq::{MAX_IOVECS, Outbox, OutboxError, SEND_FAILURES};

/// The largest UDP payload over IPv4 (65535 - 8 - 20); transmits above it are refused.
pub const MAX_DATAGRAM: usize = 65_507;

/// Index of one of a worker's bound sockets: the listen addresses, in the order given to
/// [`open`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketIdx(pub u16);

/// A SIP transport protocol. sipdisp serves UDP; TCP and TLS are named so that flows, Via
/// edits and configuration carry the transport from now on (the stream transports are not
/// served yet: an outbox refuses them with [`OutboxError::Transport`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (RFC 3261 §18).
    Udp,
    /// TCP (reserved).
    Tcp,
    /// TLS over TCP (reserved).
    Tls,
}

impl Transport {
    /// The lower-case name used in configuration, `socket=` attributes and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The transport token of a Via header's sent-protocol (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static [u8] {
        match self {
            Transport::Udp => b"UDP",
            Transport::Tcp => b"TCP",
            Transport::Tls => b"TLS",
        }
    }

    /// The transport named by `name` (any case: `udp`, `tcp`, `tls`).
    pub fn parse(name: &[u8]) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| name.eq_ignore_ascii_case(t.as_str().as_bytes()))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One flow between one of our sockets and a peer: what a received message came over and
/// what a transmit goes out on. For UDP it is the local socket and the peer's address; a
/// stream transport will add its connection here.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The transport.
    pub transport: Transport,
    /// Our socket.
    pub local: SocketIdx,
    /// The peer's address.
    pub remote: SocketAddr,
}

impl Flow {
    /// A UDP flow from our socket `local` to `remote`.
    pub fn udp(local: SocketIdx, remote: SocketAddr) -> Flow {
        Flow {
            transport: Transport::Udp,
            local,
            remote,
        }
    }
}

/// Which of an address's two sockets received a datagram (see the module documentation).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Everything not steered to the priority lane.
    Normal,
    /// Datagrams whose payload starts with [`Steering::priority_prefix`].
    Priority,
}

/// What the receive side saw in a batch, given to [`Handler::begin`] before its datagrams.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// The worker is not keeping up: the batch took all it could from the normal lane and
    /// that lane's socket queue is still filling towards loss (see `Backlog`).
    pub backlog: bool,
}

/// Whether a worker is behind, with hysteresis, from how full its normal lane's socket queue
/// is when a batch took a full load of it: behind from [`Backlog::ENTER`] % of the receive
/// buffer (loss is near: the kernel drops at 100 %), caught up again below [`Backlog::LEAVE`]
/// %. A queue that bursts a little deep and drains again (normal near capacity) never counts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Backlog {
    behind: bool,
}

impl Backlog {
    /// Percent of the receive buffer queued at which a worker is behind.
    pub(crate) const ENTER: u32 = 75;
    /// Percent below which it has caught up.
    pub(crate) const LEAVE: u32 = 20;

    /// The state after a batch: `full` says whether the batch took all it could from the
    /// normal lane (only then is the queue asked, through `fill`: its percent).
    pub(crate) fn update(&mut self, full: bool, fill: impl FnOnce() -> u32) -> bool {
        self.behind = full && {
            let f = fill();
            f >= if self.behind {
                Self::LEAVE
            } else {
                Self::ENTER
            }
        };
        self.behind
    }
}

/// One received datagram, borrowed from the backend's receive buffer.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// The payload. Slices of it pushed to the [`Outbox`] are sent without a copy.
    pub data: &'a [u8],
    /// Who sent it.
    pub peer: SocketAddr,
    /// Which of our sockets received it.
    pub local: SocketIdx,
    /// Which of that address's lanes.
    pub lane: Lane,
}

impl Datagram<'_> {
    /// The UDP flow it came over.
    pub fn flow(&self) -> Flow {
        Flow::udp(self.local, self.peer)
    }
}

/// Which implementation a [`Datapath`] is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// io_uring: multishot receive into a provided-buffer ring, batched `SendMsg`.
    IoUring,
    /// `recvmmsg` / `sendmmsg`.
    Mmsg,
    /// In memory, no sockets (tests and benchmarks).
    Memory,
}

impl Backend {
    /// The name used in config, logs and metrics: `io_uring`, `mmsg` or `memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Mmsg => "mmsg",
            Backend::Memory => "memory",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sizes fixed at construction. The defaults suit a SIP proxy worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Largest datagram payload received; longer ones are truncated by the kernel, counted in
    /// [`BatchStats::truncated`] and dropped. Default 65536 (any UDP datagram fits).
    pub max_datagram: usize,
    /// io_uring: number of provided receive buffers per worker (rounded up to a power of two,
    /// at most 32768). Default 256.
    pub recv_buffers: usize,
    /// mmsg and memory: most datagrams received per batch. Default 64.
    pub batch: usize,
    /// Most transmits queued per batch ([`OutboxError::Full`] beyond). Default 1024. Keep it
    /// at least the receive buffers of both lanes (io_uring: 3 × `recv_buffers`) and `batch`
    /// (mmsg), so every datagram of a full batch can be forwarded, plus room for what the tick
    /// sends.
    pub transmits: usize,
    /// Bytes of copied (non zero-copy) pieces per transmit. Default 1024.
    pub header_capacity: usize,
    /// `SO_RCVBUF` / `SO_SNDBUF` asked for (the kernel caps them at `net.core.rmem_max` /
    /// `wmem_max`). Default 4 MiB.
    pub socket_buffer: usize,
    /// io_uring: how long a batch's wait keeps collecting completions before it returns with
    /// the first ones (the kernel's `min_wait`, Linux 6.12): one wake-up then serves every
    /// datagram that arrived in that window instead of one each. It delays a datagram by at
    /// most this much, and only when traffic is dense (the window starts when the wait does,
    /// so one arriving after a quiet spell is handled at once). Zero: wake for each
    /// completion. mmsg does the same by hand (a nap of this length before reading, after a
    /// batch that received something); io_uring kernels without `min_wait` ignore it. Default
    /// zero.
    pub batch_wait: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            max_datagram: 65_536,
            recv_buffers: 256,
            batch: 64,
            transmits: 1024,
            header_capacity: 1024,
            socket_buffer: 4 << 20,
            batch_wait: Duration::ZERO,
        }
    }
}

/// What one [`Datapath::run_batch`] did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Datagrams handed to the handler.
    pub received: u64,
    /// Transmits the kernel accepted.
    pub sent: u64,
    /// Transmits the kernel refused (unreachable, no buffer space, ...).
    pub send_errors: u64,
    /// Datagrams dropped because they did not fit the receive buffer (`MSG_TRUNC`).
    pub truncated: u64,
    /// Bytes of transmits sent by reference to the receive buffer (zero copy).
    pub referenced_bytes: u64,
    /// Bytes of transmits copied into header buffers.
    pub copied_bytes: u64,
    /// 1 when the batch's [`Load::backlog`] was set (summed: batches that were behind).
    pub backlog: u64,
}

impl BatchStats {
    /// Adds `other` into `self` (for per-worker totals).
    pub fn add(&mut self, other: &BatchStats) {
        self.received += other.received;
        self.sent += other.sent;
        self.send_errors += other.send_errors;
        self.truncated += other.truncated;
        self.referenced_bytes += other.referenced_bytes;
        self.copied_bytes += other.copied_bytes;
        self.backlog += other.backlog;
    }
}

/// What a batch calls back into: the worker's message path and its timers.
///
/// The backend reads the clock once *after* it wakes and hands that `now` to every call of the
/// batch, so a datagram never carries the time from before a long wait. It waits at most until
/// [`Handler::next_deadline`] (capped by the batch's `max_wait`), so timers fire on time without
/// a fixed poll interval.
pub trait Handler {
    /// Called once per batch, after the wait and before the batch's datagrams, with the time
    /// they will carry and what the receive side saw. The default does nothing.
    fn begin(&mut self, now: Instant, load: Load) {
        let _ = (now, load);
    }

    /// One received datagram, borrowed from the receive buffer; transmits go into `out`.
    fn datagram(&mut self, now: Instant, datagram: &Datagram<'_>, out: &mut Outbox<'_>);

    /// Called once per batch after the datagrams (including a batch that received nothing):
    /// timers and periodic work whose deadline has come.
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>);

    /// The earliest instant at which [`Handler::tick`] has work to do; `None`: no timer.
    fn next_deadline(&self) -> Option<Instant>;
}

/// How long a batch that starts at `now` may wait: until `deadline` (zero when it has
/// passed), never longer than `max_wait` (`None`: no cap).
pub fn wait_for(
    max_wait: Option<Duration>,
    deadline: Option<Instant>,
    now: Instant,
) -> Option<Duration> {
    let until = deadline.map(|d| d.saturating_duration_since(now));
    match (max_wait, until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A [`Handler`] made of two closures and no timer: for tests, the start-up probe and tools.
pub struct FnHandler<D, T> {
    datagram: D,
    tick: T,
}

/// A handler calling `datagram(now, datagram, out)` per datagram and `tick(now, out)` per
/// batch, with no deadline.
pub fn handler_fn<D, T>(datagram: D, tick: T) -> FnHandler<D, T>
where
    D: FnMut(Instant, &Datagram<'_>, &mut Outbox<'_>),
    T: FnMut(Instant, &mut Outbox<'_>),
{
    FnHandler { datagram, tick }
}

impl<D, T> Handler for FnHandler<D, T>
where
    D: FnMut(Instant, &Datagram<'_>, &mut Outbox<'_>),
    T: FnMut(Instant, &mut Outbox<'_>),
{
    fn datagram(&mut self, now: Instant, datagram: &Datagram<'_>, out: &mut Outbox<'_>) {
        (self.datagram)(now, datagram, out)
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        (self.tick)(now, out)
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

/// A worker's batched UDP I/O over its bound sockets.
///
/// It may be opened on one thread and moved to another before its first batch; after that,
/// run and drop it on the thread that ran the first batch (io_uring rings are single-issuer).
pub trait Datapath: Send {
    /// Which implementation this is.
    fn kind(&self) -> Backend;

    /// The bound address of each socket, indexed by [`SocketIdx`] (the real port when port 0
    /// was asked for).
    fn local_addrs(&self) -> &[SocketAddr];

    /// Runs one batch.
    ///
    /// Waits for datagrams until the handler's [`Handler::next_deadline`], at most `max_wait`
    /// (`None` for both: until at least one arrives; a zero wait: only what is already there;
    /// see [`wait_for`]), reads the clock, calls [`Handler::datagram`] once per received
    /// datagram and [`Handler::tick`] once (on every batch, including one that received
    /// nothing), all with that same `now`; then sends every queued transmit in one submission,
    /// waits until the kernel is done with them and only then makes the receive buffers
    /// reusable.
    ///
    /// Per-datagram and per-transmit problems are counted in the returned [`BatchStats`]; an
    /// `Err` means the backend itself failed (e.g. the ring broke) and the worker should stop.
    fn run_batch(
        &mut self,
        max_wait: Option<Duration>,
        handler: &mut dyn Handler,
    ) -> io::Result<BatchStats>;

    /// Attaches the program that steers datagrams over the `SO_REUSEPORT` group of each of
    /// this datapath's addresses: `steering.members` datapaths opened on the same addresses,
    /// this one first. Call once, after every member is open. Without it every datagram of a
    /// flow still reaches one socket (the kernel's 4-tuple hash over all sockets of the
    /// group), only without lanes or random spread.
    fn steer(&self, steering: &Steering) -> io::Result<()>;
}

/// How datagrams are steered over the sockets sharing a listen address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Steering {
    /// How a datagram's worker is chosen.
    pub spread: Spread,
    /// The datapaths sharing each address (opened one after the other, none closed since).
    pub members: usize,
    /// A datagram whose payload starts with these bytes goes to its worker's priority lane;
    /// `None`: everything to the normal lane.
    pub priority_prefix: Option<[u8; 4]>,
}

/// How datagrams are spread over the workers sharing a listen address.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Spread {
    /// By 4-tuple hash (the kernel's default): every datagram of one peer reaches the same
    /// worker, so a single busy peer loads a single worker.
    #[default]
    Flow,
    /// Each datagram to a random worker (a reuseport BPF program): one busy peer loads every
    /// worker. Needs state shared by the workers for whatever must meet again (transactions
    /// are; the stateless path's recent-INVITE table, which sends a CANCEL where its INVITE
    /// went, is per worker).
    Random,
}

/// Binds the two lane sockets of each address in `addrs` (in order: `SocketIdx(i)` is
/// `addrs[i]`) with `SO_REUSEPORT`, and builds a datapath of kind `backend` over them.
///
/// Port 0 binds an ephemeral port; to give several workers the same port, open the first one
/// with the configured addresses and the others with its [`Datapath::local_addrs`].
/// [`Backend::Memory`] binds nothing and reports `addrs` as given.
pub fn open(
    backend: Backend,
    addrs: &[SocketAddr],
    cfg: &NetConfig,
) -> io::Result<Box<dyn Datapath>> {
    if addrs.is_empty() || addrs.len() > usize::from(u16::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "netio: between 1 and 65535 listen addresses are needed",
        ));
    }
    Ok(match backend {
        Backend::IoUring => Box::new(uring::UringDatapath::open(addrs, cfg)?),
        Backend::Mmsg => Box::new(mmsg::MmsgDatapath::open(addrs, cfg)?),
        Backend::Memory => Box::new(MemoryDatapath::new(addrs, cfg)),
    })
}
