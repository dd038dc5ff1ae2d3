//! The running load balancer: loads the destination plane, opens one datapath per worker
//! thread, and runs the receive → scan → select → rewrite → send loop until told to stop.
//!
//! Threads and state: each worker thread owns one [`Datapath`] (its own io_uring ring or mmsg
//! batch, `SO_REUSEPORT` sockets on the shared listen addresses) and one [`proxy::Worker`]
//! (scratch space and plain counters). The destination plane (dispatcher snapshot plus resolved
//! addresses) is shared read-only through an [`ArcSwap`]: workers load it once per batch, the
//! control plane (reload, later issues) stores a new one. Nothing on the message path takes a
//! lock. Counters are per worker, published to the main thread once per second and at exit.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use arc_swap::ArcSwap;

mod worker;

use crate::dispatch::{DispatchParams, ListErrors, LoadHooks, Snapshot, parse_list};
use crate::netio::{self, Backend, DatapathChoice, NetConfig};
use crate::proxy::{self, Counters, LocalSocket, Plane, ProxyConfig};

/// Everything the daemon needs, already validated (built from the configuration file).
#[derive(Debug, Clone)]
pub struct Settings {
    /// UDP listen addresses (port 0 = any free port).
    pub listen: Vec<SocketAddr>,
    /// Per listen address: the host and port to advertise in Via / Record-Route instead of
    /// the bound address (required for unspecified addresses).
    pub advertise: Vec<Option<(String, Option<u16>)>>,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Which datapath.
    pub datapath: DatapathChoice,
    /// Datapath sizing.
    pub net: NetConfig,
    /// The proxy's behaviour (its `sockets` are filled in at start from the bound addresses).
    pub proxy: ProxyConfig,
    /// The destination list file.
    pub list_file: PathBuf,
    /// Dispatcher parameters.
    pub params: DispatchParams,
    /// The admin HTTP listener (`[admin] listen`) and its bearer token; `None` = no control
    /// plane.
    pub admin: Option<(SocketAddr, Option<String>)>,
    /// `[dispatcher] watch_list_file`: reload when the list file's modification time changes.
    pub watch_list_file: bool,
    /// `[dispatcher] persist_rpc_changes`: write `dispatcher.add`/`remove` to the list file.
    pub persist_rpc_changes: bool,
    /// `[dispatcher] event_hook`: command run on dst-down / dst-up (see `crate::health`).
    pub event_hook: Option<PathBuf>,
}

/// What the control plane (admin endpoints, reload, probing) shares with the workers.
pub struct Shared {
    /// The current destination plane; workers load it once per batch.
    pub plane: ArcSwap<Plane>,
    /// Each worker's counters as last published (once a second and at exit).
    pub published: Mutex<Vec<Counters>>,
    /// When the daemon started.
    pub started: Instant,
    /// The datapath in use.
    pub backend: Backend,
    /// `dispatcher.ping_active`: false suspends keepalives (states untouched). Default true.
    pub ping_active: AtomicBool,
    /// Reload, add, remove and their rate limit (`crate::control`).
    pub control: crate::control::Control,
}

impl Shared {
    /// Shared state for `workers` workers around `plane`.
    pub fn new(
        plane: Plane,
        workers: usize,
        backend: Backend,
        control: crate::control::Control,
    ) -> Shared {
        Shared {
            plane: ArcSwap::from_pointee(plane),
            published: Mutex::new(vec![Counters::default(); workers]),
            started: Instant::now(),
            backend,
            ping_active: AtomicBool::new(true),
            control,
        }
    }

    /// Stores worker `n`'s counters (once a second and at exit).
    pub fn publish(&self, n: usize, counters: &Counters) {
        let mut all = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = all.get_mut(n) {
            slot.clone_from(counters);
        }
    }

    /// The counters of all workers, summed.
    pub fn counters(&self) -> Counters {
        sum(&self.published.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The admin endpoints. Every control-plane feature adds its routes here.
fn admin_routes(shared: &Arc<Shared>) -> Vec<crate::admin::Route> {
    use crate::admin::{Response, Route};
    let rpc = Arc::clone(shared);
    vec![
        Route {
            method: "GET",
            path: "/health",
            handler: Box::new(|_| Response::text(200, "ok\n")),
        },
        Route {
            method: "POST",
            path: "/RPC",
            handler: Box::new(move |r| crate::admin::rpc::handle(&rpc, &r.body)),
        },
    ]
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The list file could not be read.
    #[error("cannot read destination list {path}: {source}")]
    ListRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The list file has errors (every bad line is listed).
    #[error("{0}")]
    List(ListErrors),
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
    _admin: Option<crate::admin::AdminServer>,
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

    /// Waits for every worker to exit (after the stop flag is set) and returns the final
    /// counters.
    pub fn join(self) -> Counters {
        for t in self.threads {
            let _ = t.join();
        }
        self.shared.counters()
    }
}

fn sum(all: &[Counters]) -> Counters {
    let mut total = Counters::default();
    for c in all {
        total.forwarded += c.forwarded;
        total.routed += c.routed;
        total.relayed += c.relayed;
        total.absorbed += c.absorbed;
        total.for_us += c.for_us;
        total.calls_expired += c.calls_expired;
        for (t, v) in total.replied.iter_mut().zip(c.replied) {
            *t += v;
        }
        for (t, v) in total.dropped.iter_mut().zip(c.dropped) {
            *t += v;
        }
        for (t, v) in total.requests.iter_mut().zip(&c.requests) {
            t.iter_mut().zip(v).for_each(|(t, v)| *t += v);
        }
        for (t, v) in total.responses.iter_mut().zip(c.responses) {
            *t += v;
        }
        if total.route_hits.len() < c.route_hits.len() {
            total.route_hits.resize(c.route_hits.len(), 0);
        }
        for (t, v) in total.route_hits.iter_mut().zip(&c.route_hits) {
            *t += v;
        }
    }
    total
}

/// Reads the list file and builds the destination plane, resolving host names once (here,
/// never on the message path). Unresolvable destinations stay selectable but unreachable
/// (their requests get a 503), and are reported in the returned warnings.
pub fn load_plane(
    path: &std::path::Path,
    params: &DispatchParams,
    listen: &[SocketAddr],
) -> Result<(Plane, Vec<String>), DaemonError> {
    let text = std::fs::read(path).map_err(|source| DaemonError::ListRead {
        path: path.to_owned(),
        source,
    })?;
    let name = path.display().to_string();
    let local = |s: &[u8]| proxy::socket_attr_is_local(s, listen);
    let hooks = LoadHooks {
        socket_is_local: Some(&local),
    };
    let loaded = parse_list(&name, &text, params, &hooks).map_err(DaemonError::List)?;
    let mut warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let snapshot = Snapshot::build(&loaded.entries, params.clone(), seed);
    let plane = plane_from(snapshot, &name, &mut warnings);
    Ok((plane, warnings))
}

/// Resolves every destination of `snapshot` into a plane (IP literals directly, names once
/// through the system resolver); names that do not resolve are added to `warnings`.
pub fn plane_from(snapshot: Snapshot, name: &str, warnings: &mut Vec<String>) -> Plane {
    Plane::new(snapshot, |d| {
        proxy::literal_addr(d).or_else(|| {
            let host = String::from_utf8_lossy(d.host()).into_owned();
            let found = (host.as_str(), d.port().unwrap_or(5060))
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next());
            if found.is_none() {
                warnings.push(format!(
                    "{name}:{}: destination {} does not resolve",
                    d.line,
                    String::from_utf8_lossy(&d.uri)
                ));
            }
            found
        })
    })
}

/// Starts the daemon: loads the plane, opens the datapaths, spawns the workers. Returns once
/// everything is listening.
pub fn start(settings: Settings) -> Result<Running, DaemonError> {
    let (plane, warnings) = load_plane(&settings.list_file, &settings.params, &settings.listen)?;
    for w in warnings {
        eprintln!("sipdisp: warning: {w}");
    }
    let (backend, fallback) =
        netio::select(settings.datapath).map_err(|e| DaemonError::Datapath(e.to_string()))?;
    if let Some(why) = &fallback {
        eprintln!("sipdisp: {why}");
    }
    let first = netio::open(backend, &settings.listen, &settings.net)
        .map_err(|e| DaemonError::Datapath(format!("{}: {e}", backend.as_str())))?;
    let local_addrs = first.local_addrs().to_vec();
    let mut sockets = Vec::with_capacity(local_addrs.len());
    for (i, addr) in local_addrs.iter().enumerate() {
        let mut s = LocalSocket::new(*addr);
        match settings.advertise.get(i).cloned().flatten() {
            Some((host, port)) => {
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host
                };
                s.advertise_host = host.into_bytes().into();
                s.advertise_port = port.unwrap_or(addr.port());
            }
            None if addr.ip().is_unspecified() => return Err(DaemonError::NoAdvertise(*addr)),
            None => {}
        }
        sockets.push(s);
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
    let stop = Arc::new(AtomicBool::new(false));
    let control = crate::control::Control::new(
        settings.list_file.clone(),
        settings.params.clone(),
        settings.persist_rpc_changes,
    )
    .with_listen(settings.listen.clone());
    let shared = Arc::new(Shared::new(plane, datapaths.len(), backend, control));
    // Keepalives, their replies, events (crate::health); /metrics reads its counters.
    let health = Arc::new(crate::health::Health::new(
        proxy_cfg.sockets.clone(),
        settings.event_hook.clone(),
    ));
    let mut routes = admin_routes(&shared);
    routes.push(crate::admin::metrics::route(&shared, &health));
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
    if settings.watch_list_file {
        let w = crate::control::spawn_watcher(Arc::clone(&shared), Arc::clone(&stop))
            .map_err(|e| DaemonError::Datapath(format!("cannot spawn list watcher: {e}")))?;
        threads.push(w);
    }
    for (n, mut dp) in datapaths.into_iter().enumerate() {
        let (stop, shared, cfg, health) = (
            Arc::clone(&stop),
            Arc::clone(&shared),
            Arc::clone(&proxy_cfg),
            Arc::clone(&health),
        );
        let t = thread::Builder::new()
            .name(format!("sipdisp-w{n}"))
            .spawn(move || worker::run(n, dp.as_mut(), cfg, shared, health, &stop))
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
        _admin: admin,
    })
}

/// One line summarising counters, for logs.
pub fn summary(c: &Counters) -> String {
    let drops: Vec<String> = c
        .dropped
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0)
        .map(|(i, v)| format!("{}={v}", proxy::Drop::label_of(i)))
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

impl Settings {
    /// The daemon's settings from a validated configuration.
    pub fn from_config(cfg: &crate::config::Config) -> Settings {
        let mut net = NetConfig::default();
        // The I/O layer has one socket buffer size for both directions: take the larger.
        if let Some(n) = cfg.server.recv_buffer_size.max(cfg.server.send_buffer_size) {
            net.socket_buffer = n;
        }
        let advertise = cfg
            .server
            .listen
            .iter()
            .map(|_| {
                cfg.server
                    .advertise
                    .as_ref()
                    .map(|a| (a.host.clone(), a.port))
            })
            .collect();
        Settings {
            listen: cfg.server.listen.iter().map(|l| l.addr).collect(),
            advertise,
            workers: cfg.server.worker_count(),
            datapath: cfg.server.datapath,
            net,
            proxy: cfg.proxy_config(),
            list_file: cfg.dispatcher.list_file.clone(),
            params: cfg.dispatcher.params.clone(),
            admin: cfg
                .admin
                .listen
                .map(|a| (a, cfg.admin.token.as_ref().map(|t| t.0.clone()))),
            watch_list_file: cfg.dispatcher.watch_list_file,
            persist_rpc_changes: cfg.dispatcher.persist_rpc_changes,
            event_hook: cfg.dispatcher.event_hook.clone(),
        }
    }
}
