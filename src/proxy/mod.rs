//! The message path without I/O: one datagram in, a [`Verdict`] and zero or more transmits out.
//!
//! A [`Worker`] (one per I/O thread) owns its scratch space — header index, reply buffer,
//! template buffer, counters, the recent-INVITE table — and reads the shared, immutable
//! [`Plane`] (dispatcher snapshot plus resolved destination addresses) and [`ProxyConfig`]. For
//! each datagram, [`Worker::handle`] scans it, classifies it, and
//!
//! * for a request (RFC 3261 §16, stateless): absorbs the ACK of its own replies, checks
//!   Max-Forwards (483), loops (482), the Request-URI scheme (416) and Proxy-Require (420),
//!   follows loose routes that name this proxy, sends CANCEL and non-2xx ACK where their INVITE
//!   went, sends other in-dialog requests to their Request-URI (the dialog's remote target) when
//!   it is an IP address, otherwise picks the first matching route, runs
//!   its `ds_select_routes` rules and forwards to the selected destination — with a new top Via
//!   whose branch is stateless (retransmissions, CANCEL and non-2xx ACK get the INVITE's), the
//!   client's Via completed with `received`/`rport` (RFC 3581), Max-Forwards decremented (or
//!   inserted), an optional Record-Route, and in `ruri` mode the Request-URI host rewritten;
//!   it answers `503` statelessly when no destination is usable;
//! * for a response: checks that the top Via is this proxy's (address and branch), removes it
//!   and sends the response to the next Via (honouring `received` / `rport`).
//!
//! Outgoing requests and responses are [`sipdisp_parser::Plan`]s: slices of the received buffer
//! plus small inserted pieces, handed to the [`Sink`] without copying the received bytes.
//! Time comes in as an argument; nothing here reads a clock, opens a socket or allocates per
//! message.

pub mod branch;
pub mod keys;
mod recent;
pub mod reply;
pub mod route;
mod worker;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dispatch::{Destination, Pick, Snapshot};

pub use branch::ProbeToken;
pub use keys::{Template, TemplateError};
pub use route::{Action, Condition, Route, RouteTable, SourceSets, Target};
pub use worker::{Counters, Drop, Inbound, METHODS, Sink, Verdict, Worker};

/// One of the proxy's local sockets, as it must appear in its Via and Record-Route headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSocket {
    /// The bound address.
    pub addr: SocketAddr,
    /// The host written into Via / Record-Route (an IPv6 address in brackets).
    pub advertise_host: Box<[u8]>,
    /// The port written into Via / Record-Route.
    pub advertise_port: u16,
}

impl LocalSocket {
    /// A socket advertised as its own address (must not be unspecified).
    pub fn new(addr: SocketAddr) -> LocalSocket {
        let host = match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        LocalSocket {
            addr,
            advertise_host: host.into_bytes().into(),
            advertise_port: addr.port(),
        }
    }

    /// Whether `host:port` (as written in a Via or URI; no port = 5060) names this socket.
    pub fn is(&self, host: &[u8], port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(&self.advertise_host)
            && port.unwrap_or(5060) == self.advertise_port
    }
}

/// What the proxy needs from the configuration, fixed at start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Local sockets, indexed like the I/O layer's sockets.
    pub sockets: Vec<LocalSocket>,
    /// Insert `Record-Route: <sip:us;lr>` into initial requests.
    pub record_route: bool,
    /// The Max-Forwards value inserted into requests that have none.
    pub max_forwards: u32,
    /// The route table.
    pub routes: RouteTable,
    /// Algorithm 7's `hash_pvar` template, if configured.
    pub hash_template: Option<Template>,
    /// `ds_hash_check_interval` when algorithm 10's call-load table exists
    /// (`ds_hash_size > 0`): how often each worker's timer offers to run call-load expiry.
    pub call_check_interval: Option<std::time::Duration>,
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
}

impl Plane {
    /// Builds the plane, resolving each destination with `resolve` (`None`: the destination
    /// can be selected but not reached; the request then gets a 503 and is counted).
    pub fn new(
        snapshot: Snapshot,
        mut resolve: impl FnMut(&Destination) -> Option<SocketAddr>,
    ) -> Plane {
        let addrs = snapshot
            .sets()
            .iter()
            .map(|s| s.destinations().iter().map(&mut resolve).collect())
            .collect();
        let selections = snapshot
            .sets()
            .iter()
            .map(|s| s.destinations().iter().map(|_| AtomicU64::new(0)).collect())
            .collect();
        Plane {
            snapshot,
            addrs,
            selections,
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
    pub fn is_from_list(
        &self,
        source: SocketAddr,
        sets: SourceSets,
        mode: u8,
    ) -> Option<crate::dispatch::SetId> {
        route::is_from_list(&self.snapshot, &self.addrs, source, sets, mode)
    }
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
