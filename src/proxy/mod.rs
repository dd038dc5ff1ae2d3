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

pub use crate::plane::{Plane, ip_port, literal_addr, socket_attr_is_local};

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
