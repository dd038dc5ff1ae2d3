//! The message path without I/O: one message in, a [`Verdict`] and zero or more transmits out.
//!
//! A [`Worker`] (one per I/O thread) owns its scratch space — header index, reply buffer,
//! template buffer, counters, the recent-INVITE table — and reads the shared, immutable
//! [`Plane`] (dispatcher snapshot plus resolved destination addresses) and [`ProxyConfig`].
//! [`Worker::handle`] runs one message through four steps, each in its own file:
//!
//! 1. scan (`sipdisp-parser`) into the worker's header index;
//! 2. decide ([`decide`]): classification, the route table and selection end in a
//!    [`Decision`] — forward (with its failover list), reply, relay, absorb, probe reply, drop;
//! 3. act ([`stateless`]): the decision run statelessly (RFC 3261 §16.11), the header edits of
//!    a forwarded or relayed message built by [`edits`] from one description;
//! 4. count ([`verdict`]): every path ends in a [`Verdict`] that bumps the counters in one
//!    place.
//!
//! Outgoing messages are [`sipdisp_parser::Plan`]s: slices of the received buffer plus small
//! inserted pieces, handed to the [`Sink`] without copying the received bytes. Time comes in
//! as an argument (`handle(now, …)`, `handle_timeout(now, …)`); nothing here reads a clock,
//! opens a socket or allocates per message.

mod boundary;
pub mod branch;
pub mod decide;
pub mod edits;
pub mod keys;
pub mod pike;
mod recent;
pub mod reply;
pub mod route;
mod stateful;
mod stateless;
pub mod txn;
pub mod verdict;
mod worker;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use crate::plane::{Plane, ip_port, literal_addr, socket_attr_is_local};

pub use boundary::{Inbound, Sink};
pub use branch::ProbeToken;
pub use decide::{Decision, Forward, Hop, Reply};
pub use edits::Forwarding;
pub use keys::{Template, TemplateError};
pub use route::{Action, Condition, Failover, Route, RouteTable, SourceSets, Target};
pub use stateful::Marked;

#[cfg(test)]
mod network_tests {
    use super::Network;

    #[test]
    fn networks() {
        let n = Network::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let one = Network::parse("192.0.2.7").unwrap();
        assert!(
            one.contains("192.0.2.7".parse().unwrap())
                && !one.contains("192.0.2.8".parse().unwrap())
        );
        let v6 = Network::parse("[2001:db8::]/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "host.example", "1.2.3.4/x", ""] {
            assert_eq!(Network::parse(bad), None, "{bad}");
        }
    }
}
pub use verdict::{Counters, DropReason, METHODS, Verdict};
pub use worker::Worker;

use crate::netio::Transport;

/// One of the proxy's listeners: its transport and bound address, and how it must appear in
/// Via and Record-Route headers. Built once, from the configuration and the bound address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The transport it serves.
    pub transport: Transport,
    /// The bound address.
    pub addr: SocketAddr,
    /// The host written into Via / Record-Route (an IPv6 address in brackets).
    pub advertise_host: Box<[u8]>,
    /// The port written into Via / Record-Route.
    pub advertise_port: u16,
}

impl Listener {
    /// A UDP listener advertised as its own address (must not be unspecified).
    pub fn new(addr: SocketAddr) -> Listener {
        Listener::advertised(Transport::Udp, addr, None)
    }

    /// A listener on `addr` advertised as `advertise` (host, optional port) when given, else
    /// as its own address. The one advertise rule: an IPv6 literal host is written in
    /// brackets (whether or not it was given with them); the port defaults to the bound one.
    pub fn advertised(
        transport: Transport,
        addr: SocketAddr,
        advertise: Option<(&str, Option<u16>)>,
    ) -> Listener {
        let (host, port) = match advertise {
            Some((h, p)) => (h.to_owned(), p.unwrap_or(addr.port())),
            None => (addr.ip().to_string(), addr.port()),
        };
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host);
        let host = if bare.contains(':') {
            format!("[{bare}]")
        } else {
            bare.to_owned()
        };
        Listener {
            transport,
            addr,
            advertise_host: host.into_bytes().into(),
            advertise_port: port,
        }
    }

    /// Whether `host:port` (as written in a Via or URI; no port = 5060) names this listener.
    pub fn is(&self, host: &[u8], port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(&self.advertise_host)
            && port.unwrap_or(5060) == self.advertise_port
    }
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`; a single address is `/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network address.
    pub addr: std::net::IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Network {
    /// Parses `ip[/prefix]` (IPv6 with or without brackets).
    pub fn parse(s: &str) -> Option<Network> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let addr: std::net::IpAddr = ip.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Network { addr, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Overload control (`[server] overload_admit_percent`, `overload_retry_after`): while a
/// worker's request lane is backing up, it forwards `admit_percent` % of new out-of-dialog
/// requests (spread evenly, not in bursts) and answers the others `503 Service Unavailable`
/// with `Retry-After: retry_after` — a caller told to go elsewhere stops retransmitting,
/// whereas one whose INVITE is lost in a full socket queue sends it up to six times more.
/// In-dialog requests, CANCEL, ACK and retransmissions of forwarded INVITEs are never refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    /// Percent of new requests still forwarded while behind (100: refuse none).
    pub admit_percent: u32,
    /// Seconds in the 503's `Retry-After`.
    pub retry_after: u32,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            admit_percent: 50,
            retry_after: 5,
        }
    }
}

/// What the proxy needs from the configuration, fixed at start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Listeners, indexed like the I/O layer's sockets ([`crate::netio::SocketIdx`]).
    pub sockets: Vec<Listener>,
    /// Insert `Record-Route: <sip:us;lr>` into initial requests.
    pub record_route: bool,
    /// The Max-Forwards value inserted into requests that have none.
    pub max_forwards: u32,
    /// What a worker does with new requests while it is behind ([`Worker::begin`]).
    pub overload: Overload,
    /// The route table.
    pub routes: RouteTable,
    /// Algorithm 7's `hash_pvar` template, if configured.
    pub hash_template: Option<Template>,
    /// `[pike]`: flood control per source address (`None`: off).
    pub pike: Option<pike::PikeConfig>,
    /// `[server] allowed_next_hops`: networks a Route-following or in-dialog request may be
    /// sent to besides the destinations (empty: destinations only).
    pub allowed_next_hops: Vec<Network>,
    /// The key of the stateless branches' MAC (`[server] via_secret`, else random at start).
    pub via_key: branch::ViaKey,
    /// Transaction timers (`[tm]`), for routes with failover.
    pub timers: txn::Timers,
    /// `ds_hash_check_interval` when algorithm 10's call-load table exists
    /// (`ds_hash_size > 0`): how often each worker's timer offers to run call-load expiry.
    pub call_check_interval: Option<std::time::Duration>,
}
