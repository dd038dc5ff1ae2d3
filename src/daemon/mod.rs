//! The running load balancer: loads the destination plane, opens one datapath per worker
//! thread, and runs the receive → scan → select → rewrite → send loop until told to stop.
//!
//! Threads and state: each worker thread owns one [`Datapath`] (its own io_uring ring or mmsg
//! batch, `SO_REUSEPORT` sockets on the shared listen addresses) and one [`proxy::Worker`]
//! (scratch space and plain counters). The destination plane (dispatcher snapshot plus resolved
//! addresses) is shared read-only through an [`ArcSwap`]: workers load it once per batch, the
//! control plane (reload, later issues) stores a new one. Nothing on the message path takes a
//! lock. Counters are per worker, published to the main thread once per second and at exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Instant;

mod worker;

use crate::control::Control;
use crate::netio::{self, Backend};
use crate::plane::{LoadError, Plane, Shared, load_plane};
use crate::proxy::txn::TxnTable;
use crate::proxy::{self, Counters, Listener};

pub use crate::config::Settings;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The destination list could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The datapath could not be chosen or opened.
    #[error("datapath: {0}")]
    Datapath(String),
    /// The admin listener could not be opened.
    #[error("admin listener {addr}: {source}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Another sipdisp already serves this listen address.
    #[error(
        "listen address {0} is already served by another sipdisp on this host (network namespace); stop it first, or listen elsewhere"
    )]
    AddressInUse(crate::config::Listen),
    /// A listen address is unspecified (0.0.0.0 / ::) and nothing to advertise was given.
    #[error("listen address {0} is unspecified: set [server] advertise to the address peers reach")]
    NoAdvertise(SocketAddr),
}

/// A running daemon (see [`start`]): its bound addresses, backend, and the stop switch.
pub struct Running {
    /// The bound listen addresses (ports resolved when 0 was asked for).
    pub local_addrs: Vec<SocketAddr>,
    /// The datapath in use.
    pub backend: Backend,
    /// Why io_uring was not used, when it was not.
    pub fallback: Option<String>,
    /// The admin listener's address, when it runs.
    pub admin_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    control: Arc<Control>,
    _admin: Option<crate::admin::AdminServer>,
    /// The claims on our SIP addresses (released when the daemon ends).
    _owners: Vec<std::os::unix::net::UnixDatagram>,
}

impl Running {
    /// The stop switch: set it and the workers finish their current batch and exit.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The counters of all workers, summed (as last published, at most a second old).
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// The current destination plane.
    pub fn plane(&self) -> Arc<Plane> {
        self.shared.plane.load_full()
    }

    /// The state shared with the control plane.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The control plane (reload, add, remove).
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// Waits for every worker to exit (after the stop flag is set) and returns the final
    /// counters.
    pub fn join(self) -> Counters {
        for t in self.threads {
            let _ = t.join();
        }
        self.shared.counters()
    }
}

/// Starts the daemon: loads the plane, opens the datapaths, spawns the workers. Returns once
/// everything is listening.
pub fn start(settings: Settings) -> Result<Running, DaemonError> {
    let listen: Vec<SocketAddr> = settings.listen.iter().map(|l| l.addr).collect();
    let (plane, warnings) = match &settings.preloaded {
        Some(list) => crate::plane::plane_of(list, &settings.source.name(), &settings.params),
        None => load_plane(&settings.source, &settings.params, &listen)?,
    };
    for w in warnings {
        eprintln!("sipdisp: warning: {w}");
    }
    let (backend, fallback) =
        netio::select(settings.datapath).map_err(|e| DaemonError::Datapath(e.to_string()))?;
    if let Some(why) = &fallback {
        eprintln!("sipdisp: {why}");
    }
    // One owner per SIP address: SO_REUSEPORT would let a second sipdisp join the first's
    // group silently and take a share of its traffic.
    let mut owners = Vec::with_capacity(listen.len());
    for l in settings.listen.iter().filter(|l| l.addr.port() != 0) {
        owners.push(own(l)?);
    }
    let first = netio::open(backend, &listen, &settings.net)
        .map_err(|e| DaemonError::Datapath(format!("{}: {e}", backend.as_str())))?;
    let local_addrs = first.local_addrs().to_vec();
    let advertise = settings
        .advertise
        .as_ref()
        .map(|a| (a.host.as_str(), a.port));
    let mut sockets = Vec::with_capacity(local_addrs.len());
    for (l, addr) in settings.listen.iter().zip(&local_addrs) {
        if advertise.is_none() && addr.ip().is_unspecified() {
            return Err(DaemonError::NoAdvertise(*addr));
        }
        sockets.push(Listener::advertised(l.proto, *addr, advertise));
    }
    let mut proxy_cfg = settings.proxy.clone();
    proxy_cfg.sockets = sockets;
    let proxy_cfg = Arc::new(proxy_cfg);
    let mut datapaths = vec![first];
    for _ in 1..settings.workers.max(1) {
        datapaths.push(
            netio::open(backend, &local_addrs, &settings.net)
                .map_err(|e| DaemonError::Datapath(e.to_string()))?,
        );
    }
    // Responses ("SIP/2.0 …") to each worker's priority lane, the worker chosen by flow or at
    // random. Without the program every flow still reaches one worker, but replies share the
    // queue of new requests: say so, and refuse only when the random spread was asked for.
    let steering = netio::Steering {
        spread: settings.spread,
        members: datapaths.len(),
        priority_prefix: Some(*b"SIP/"),
    };
    if let Err(e) = datapaths[0].steer(&steering) {
        if settings.spread == netio::Spread::Random {
            return Err(DaemonError::Datapath(format!("spread = random: {e}")));
        }
        eprintln!(
            "sipdisp: warning: cannot attach the reuseport steering program ({e}): responses share the request queue (no overload priority)"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared::new(plane, datapaths.len(), backend));
    // Keepalives, their replies, events (crate::health); /metrics reads its counters.
    let health = Arc::new(crate::health::Health::new(
        proxy_cfg.sockets.clone(),
        settings.event_hook.clone(),
    ));
    let adopt = Arc::clone(&health);
    let control = Arc::new(
        Control::new(
            Arc::clone(&shared),
            settings.source.clone(),
            settings.params.clone(),
            settings.persist_rpc_changes,
        )
        .with_listen(listen.clone())
        .with_publish_hook(Box::new(move |p| adopt.adopt(Instant::now(), p))),
    );
    let routes = crate::admin::routes(Arc::clone(&control), Arc::clone(&health));
    let admin = match &settings.admin {
        Some((addr, token)) => Some(
            crate::admin::AdminServer::start(*addr, token.clone(), routes).map_err(|source| {
                DaemonError::Admin {
                    addr: *addr,
                    source,
                }
            })?,
        ),
        None => None,
    };
    let mut threads = Vec::new();
    #[cfg(feature = "postgres")]
    if let Some(t) = crate::control::spawn_notify_listener(Arc::clone(&control), Arc::clone(&stop))
        .map_err(|e| DaemonError::Datapath(format!("cannot spawn notification listener: {e}")))?
    {
        threads.push(t);
    }
    if settings.watch_list_file {
        let w = crate::control::spawn_watcher(Arc::clone(&control), Arc::clone(&stop))
            .map_err(|e| DaemonError::Datapath(format!("cannot spawn list watcher: {e}")))?;
        threads.push(w);
    }
    // Routes with `failover` proxy through transactions, kept in one table all workers share.
    let txn = proxy_cfg
        .routes
        .routes
        .iter()
        .any(|r| r.failover.is_some())
        .then(|| {
            // 16 shards per worker keep locks uncontended; never more shards than slots.
            let shards = (datapaths.len() * 16)
                .next_power_of_two()
                .min(settings.max_transactions.max(1));
            Arc::new(TxnTable::new(
                settings.max_transactions,
                shards,
                Instant::now(),
                settings.preallocate,
            ))
        });
    let workers = datapaths.len();
    for (n, mut dp) in datapaths.into_iter().enumerate() {
        let txn = txn.clone();
        let (stop, shared, cfg, health) = (
            Arc::clone(&stop),
            Arc::clone(&shared),
            Arc::clone(&proxy_cfg),
            Arc::clone(&health),
        );
        let t = thread::Builder::new()
            .name(format!("sipdisp-w{n}"))
            .spawn(move || worker::run(n, workers, dp.as_mut(), cfg, txn, shared, health, &stop))
            .map_err(|e| DaemonError::Datapath(format!("cannot spawn worker: {e}")))?;
        threads.push(t);
    }
    Ok(Running {
        local_addrs,
        backend,
        fallback,
        admin_addr: admin.as_ref().map(|a| a.addr),
        stop,
        threads,
        shared,
        control,
        _admin: admin,
        _owners: owners,
    })
}

/// Claims `l` for this process: a Unix datagram socket bound to an abstract name derived from
/// the address (Linux: per network namespace, like the UDP port, and released by the kernel
/// however the process ends — no file to clean up). A second sipdisp on the same address finds
/// the name taken.
fn own(l: &crate::config::Listen) -> Result<std::os::unix::net::UnixDatagram, DaemonError> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("sipdisp:{}:{}", l.proto, l.addr);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| DaemonError::Datapath(format!("claiming {l}: {e}")))?;
    std::os::unix::net::UnixDatagram::bind_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            DaemonError::AddressInUse(*l)
        } else {
            DaemonError::Datapath(format!("claiming {l}: {e}"))
        }
    })
}

/// One line summarising counters, for logs.
pub fn summary(c: &Counters) -> String {
    let drops: Vec<String> = c
        .dropped
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0)
        .map(|(i, v)| format!("{}={v}", proxy::DropReason::label_of(i)))
        .collect();
    format!(
        "forwarded={} routed={} relayed={} replied_4xx={} replied_5xx={} absorbed={} for_us={} dropped={} [{}]",
        c.forwarded,
        c.routed,
        c.relayed,
        c.replied[4],
        c.replied[5],
        c.absorbed,
        c.for_us,
        c.dropped.iter().sum::<u64>(),
        drops.join(" ")
    )
}
