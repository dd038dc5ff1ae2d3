//! The destination plane and the state the control plane shares with the workers.
//!
//! What lives here, below the workers, control and admin (none of them owns it):
//!
//! * [`Plane`]: one immutable dispatcher [`Snapshot`] with the socket address of each
//!   destination, resolved when the plane was built (never on the message path), and the
//!   per-destination selection counters; `ds_is_from_list` over those addresses.
//! * [`build`]: building a plane from a list file or from list entries, and carrying runtime
//!   state over from the plane it replaces — the one path start, reload, add and remove share.
//! * [`Shared`]: the published plane (an `ArcSwap` workers load once per batch), the workers'
//!   published counters, `ping_active`, start time and datapath.
//!
//! It depends on dispatch (and, for the counters `Shared` publishes, on the proxy's counter
//! type); nothing here reads SIP or touches sockets.

pub mod build;
mod shared;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dispatch::{Destination, Pick, SetId, Snapshot};

pub use build::{LoadError, load_plane, plane_from, plane_of, resolve_host, successor};
pub use shared::Shared;

/// `ds_is_from_list` mode bit: ignore the port.
pub const FROM_LIST_IGNORE_PORT: u8 = 1;
/// `ds_is_from_list` mode bit: ignore the protocol (sipdisp is UDP-only for now, so the
/// protocol always matches UDP destinations and destinations without `;transport=`).
pub const FROM_LIST_IGNORE_PROTO: u8 = 2;
/// `ds_is_from_list` mode bit: only usable (not inactive/disabled) destinations match.
pub const FROM_LIST_USABLE_ONLY: u8 = 4;

/// Which sets `ds_is_from_list` searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSets {
    /// Every set (Kamailio group -1).
    Any,
    /// One set.
    Set(SetId),
}

/// The destination plane: an immutable dispatcher snapshot and the socket address of each
/// destination, resolved when the snapshot was built (never on the message path).
#[derive(Debug)]
pub struct Plane {
    /// The dispatcher snapshot.
    pub snapshot: Snapshot,
    addrs: Vec<Box<[Option<SocketAddr>]>>,
    /// Forwarded requests per destination (same shape as `addrs`): one relaxed atomic add per
    /// forwarded request, read by the metrics collector. Starts at 0 with each plane.
    selections: Vec<Box<[AtomicU64]>>,
    /// Failovers away from each destination (same shape), by the stateful path.
    failovers: Vec<Box<[AtomicU64]>>,
    /// Every destination's address, for "is this next hop a destination?".
    dest_addrs: std::collections::HashSet<SocketAddr, ahash::RandomState>,
}

impl Plane {
    /// Builds the plane, resolving each destination with `resolve` (`None`: the destination
    /// can be selected but not reached; the request then gets a 503 and is counted).
    pub fn new(
        snapshot: Snapshot,
        mut resolve: impl FnMut(&Destination) -> Option<SocketAddr>,
    ) -> Plane {
        let addrs: Vec<Box<[Option<SocketAddr>]>> = snapshot
            .sets()
            .iter()
            .map(|s| s.destinations().iter().map(&mut resolve).collect())
            .collect();
        let selections = snapshot
            .sets()
            .iter()
            .map(|s| s.destinations().iter().map(|_| AtomicU64::new(0)).collect())
            .collect();
        let failovers = snapshot
            .sets()
            .iter()
            .map(|s| s.destinations().iter().map(|_| AtomicU64::new(0)).collect())
            .collect();
        let dest_addrs = addrs
            .iter()
            .flat_map(|a| a.iter().flatten().copied())
            .collect();
        Plane {
            snapshot,
            addrs,
            selections,
            failovers,
            dest_addrs,
        }
    }

    /// Counts one request forwarded to `pick` (called by the worker from its verdict).
    pub fn count_selection(&self, pick: Pick) {
        if let Some(c) = self
            .selections
            .get(pick.set_pos as usize)
            .and_then(|s| s.get(pick.idx.0 as usize))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `addr` is the address of a destination of this plane (a next hop the
    /// configuration allows).
    pub fn is_destination(&self, addr: SocketAddr) -> bool {
        self.dest_addrs.contains(&addr)
    }

    /// Counts one failover away from `pick` (the stateful path tried the next destination).
    pub fn count_failover(&self, pick: Pick) {
        if let Some(c) = self
            .failovers
            .get(pick.set_pos as usize)
            .and_then(|s| s.get(pick.idx.0 as usize))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Failovers away from the destination at (set position, index) with this plane.
    pub fn failovers(&self, set_pos: usize, idx: usize) -> u64 {
        self.failovers
            .get(set_pos)
            .and_then(|s| s.get(idx))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Requests forwarded to the destination at (set position, index) with this plane.
    pub fn selections(&self, set_pos: usize, idx: usize) -> u64 {
        self.selections
            .get(set_pos)
            .and_then(|s| s.get(idx))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The resolved address of the destination at (set position, index).
    pub fn addr_at(&self, set_pos: usize, idx: usize) -> Option<SocketAddr> {
        self.addrs.get(set_pos)?.get(idx).copied().flatten()
    }

    /// The address of a selected destination.
    pub fn addr(&self, pick: Pick) -> Option<SocketAddr> {
        self.addrs
            .get(pick.set_pos as usize)?
            .get(pick.idx.0 as usize)
            .copied()
            .flatten()
    }

    /// `ds_is_from_list`: the first set (in Kamailio's order) with a destination at `source`.
    pub fn is_from_list(&self, source: SocketAddr, sets: SourceSets, mode: u8) -> Option<SetId> {
        is_from_list(&self.snapshot, &self.addrs, source, sets, mode)
    }
}

/// `ds_is_from_list` over a snapshot and its resolved addresses.
fn is_from_list(
    snapshot: &Snapshot,
    addrs: &[Box<[Option<SocketAddr>]>],
    source: SocketAddr,
    sets: SourceSets,
    mode: u8,
) -> Option<SetId> {
    for (pos, set) in snapshot.sets().iter().enumerate() {
        if let SourceSets::Set(id) = sets
            && set.id != id
        {
            continue;
        }
        for (i, d) in set.destinations().iter().enumerate() {
            let Some(addr) = addrs.get(pos).and_then(|a| a.get(i)).copied().flatten() else {
                continue;
            };
            if addr.ip() != source.ip() {
                continue;
            }
            let port_ok = mode & FROM_LIST_IGNORE_PORT != 0
                || d.port().is_none()
                || addr.port() == source.port();
            let usable_ok = mode & FROM_LIST_USABLE_ONLY == 0 || d.usable();
            if port_ok && usable_ok {
                return Some(set.id);
            }
        }
    }
    None
}

/// Resolves a destination whose host is an IP literal (port: the URI's, else 5060). Names
/// need DNS, which the caller does when building the plane.
pub fn literal_addr(d: &Destination) -> Option<SocketAddr> {
    ip_port(d.host(), d.port())
}

/// Whether a destination's `socket` attribute (`proto:host[:port]`, Kamailio's form) names one
/// of our listen addresses: protocol `udp` (the only one sipdisp serves), the same port
/// (default 5060), and the same IP address or a wildcard listen address of its family.
/// Anything else — another protocol, a `sockname` (sipdisp has no named sockets), a malformed
/// value — is not local, and Kamailio drops such a destination at load.
pub fn socket_attr_is_local(attr: &[u8], listen: &[SocketAddr]) -> bool {
    let Some(rest) = attr.strip_prefix(b"udp:") else {
        return false;
    };
    let (host, port) = match rest.iter().rposition(|&b| b == b':') {
        // `[v6]:port` or `v4:port`; a bare IPv6 literal must be bracketed.
        Some(i) if !rest[..i].contains(&b':') || rest[..i].ends_with(b"]") => (
            &rest[..i],
            std::str::from_utf8(&rest[i + 1..])
                .ok()
                .and_then(|p| p.parse().ok()),
        ),
        _ => (rest, Some(5060)),
    };
    let Some(addr) = port.and_then(|p| ip_port(host, Some(p))) else {
        return false;
    };
    listen.iter().any(|l| {
        l.port() == addr.port()
            && (l.ip() == addr.ip() || (l.ip().is_unspecified() && l.is_ipv4() == addr.is_ipv4()))
    })
}

/// `host` (IPv6 in brackets) and port (default 5060) as a socket address, when the host is an
/// IP literal.
pub fn ip_port(host: &[u8], port: Option<u16>) -> Option<SocketAddr> {
    let host = std::str::from_utf8(host).ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, port.unwrap_or(5060)))
}
