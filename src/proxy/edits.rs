//! The header edits of a forwarded message, built in one place from one description.
//!
//! A forwarded request ([`Forwarding`]) gets: the client's top Via completed with `received`
//! and `rport` (RFC 3261 §18.2.1, RFC 3581), our Via on top with the transport of the
//! listener it leaves from and the branch (RFC 3261 §16.6 step 8, §16.11), Max-Forwards
//! decremented or inserted (§16.6 step 3), our Route consumed (§16.4), optionally
//! `Record-Route: <sip:us;lr>` (§16.6 step 4) and, in `ruri` mode, the Request-URI host
//! rewritten to the destination's (`ds_select_domain`). A relayed response loses its top Via
//! (§16.7 step 9). The result is a [`Plan`]: slices of the received buffer plus small pieces.

use std::net::SocketAddr;

use arrayvec::ArrayVec;
use sipdisp_parser::{Message, Plan, PlanError, Uri, Via};

use super::Listener;
use super::branch::MAX_BRANCH_LEN;

/// Where the client's top Via gets `received` / `rport` (RFC 3261 §18.2.1, RFC 3581).
#[derive(Debug, Clone, Copy)]
pub struct ClientVia<'a> {
    /// Offset just past the Via's value: where `;received=` goes.
    pub end: usize,
    /// The whole `rport[=N]` parameter (offsets) and its value, when present.
    pub rport: Option<(usize, usize, Option<u16>)>,
    /// The `received` parameter's value (offset and bytes), when present.
    pub received: Option<(usize, &'a [u8])>,
    /// The sent-by host as written.
    pub host: &'a [u8],
}

impl<'a> ClientVia<'a> {
    /// The positions in `msg` of its top Via `top`.
    pub fn of(msg: &Message<'_>, top: &Via<'a>) -> ClientVia<'a> {
        let base = msg.buf().as_ptr() as usize;
        let off = |p: &[u8]| p.as_ptr() as usize - base;
        ClientVia {
            end: off(top.value) + top.value.len(),
            rport: top
                .rport_param
                .map(|p| (off(p), off(p) + p.len(), top.rport.flatten())),
            received: top.received.map(|r| (off(r), r)),
            host: top.host,
        }
    }
}

/// Everything the edits of one forwarded request depend on.
#[derive(Debug, Clone)]
pub struct Forwarding<'a> {
    /// The client's top Via (completed with `received` / `rport`).
    pub client_via: ClientVia<'a>,
    /// Where the request really came from.
    pub source: SocketAddr,
    /// The listener it leaves from: the host, port and transport of our Via and Record-Route.
    pub listener: &'a Listener,
    /// Our Via's branch (stateless, or a transaction's).
    pub branch: ArrayVec<u8, MAX_BRANCH_LEN>,
    /// The Max-Forwards value to write.
    pub max_forwards: u32,
    /// Remove the first Route (it names us).
    pub remove_route: bool,
    /// Insert `Record-Route: <sip:us;lr>`.
    pub record_route: bool,
    /// Rewrite the Request-URI host part to the host part of this destination URI
    /// (`ds_select_domain`; a URI that does not parse leaves the Request-URI alone).
    pub ruri: Option<&'a [u8]>,
}

/// The plan of a forwarded request.
pub fn request<'m, 'x>(
    msg: &Message<'m>,
    f: &'x Forwarding<'x>,
) -> Result<Plan<'m, 'x>, PlanError> {
    let mut plan = Plan::new(msg);
    complete_client_via(&mut plan, &f.client_via, f.source)?;
    let l = f.listener;
    plan.insert_via(
        l.transport.via_token(),
        &l.advertise_host,
        Some(l.advertise_port),
        &f.branch,
        true,
    )?;
    plan.set_max_forwards(msg, f.max_forwards)?;
    if f.remove_route {
        plan.remove_first_route(msg)?;
    }
    if f.record_route {
        let mut rr = ArrayVec::<u8, 96>::new();
        let _ = rr.try_extend_from_slice(b"sip:");
        let _ = rr.try_extend_from_slice(&l.advertise_host);
        let _ = std::io::Write::write_fmt(&mut rr, format_args!(":{};lr", l.advertise_port));
        if l.transport != crate::netio::Transport::Udp {
            let _ = rr.try_extend_from_slice(b";transport=");
            let _ = rr.try_extend_from_slice(l.transport.as_str().as_bytes());
        }
        plan.insert_record_route(&rr)?;
    }
    if let Some(d) = f.ruri.and_then(|u| Uri::parse(u).ok()) {
        plan.set_request_uri_host(msg, &d)?;
    }
    Ok(plan)
}

/// The plan of a relayed response: without our top Via.
pub fn response<'m>(msg: &Message<'m>) -> Result<Plan<'m, 'static>, PlanError> {
    let mut plan = Plan::new(msg);
    plan.remove_top_via(msg)?;
    Ok(plan)
}

/// RFC 3261 §18.2.1 and RFC 3581: tell the next hops where the request really came from.
/// `received` is always the source address and `rport` (when the client asked for it) always
/// the source port: values the client wrote itself are replaced, never trusted, so a forged
/// `;received=VICTIM;rport=PORT` cannot send the responses elsewhere (reflection).
fn complete_client_via(
    plan: &mut Plan<'_, '_>,
    via: &ClientVia<'_>,
    source: SocketAddr,
) -> Result<(), PlanError> {
    let mut ip = ArrayVec::<u8, 48>::new();
    let _ = std::io::Write::write_fmt(&mut ip, format_args!("{}", source.ip()));
    let mut port = ArrayVec::<u8, 8>::new();
    let _ = std::io::Write::write_fmt(&mut port, format_args!("{}", source.port()));
    let h = via.host;
    let h = h
        .strip_prefix(b"[")
        .and_then(|x| x.strip_suffix(b"]"))
        .unwrap_or(h);
    let host_is_source = h == &ip[..];
    match via.received {
        Some((at, v)) if v != &ip[..] => plan.replace(at, at + v.len(), &[&ip])?,
        Some(_) => {}
        None if via.rport.is_some() || !host_is_source => {
            plan.insert(via.end, &[b";received=", &ip])?
        }
        None => {}
    }
    if let Some((from, to, value)) = via.rport
        && value != Some(source.port())
    {
        plan.replace(from, to, &[b"rport=", &port])?;
    }
    Ok(())
}

/// The parts of a forwarding decision a stateful call keeps to build each branch's request
/// again from its stored copy of the caller's request (same bytes, same offsets).
#[derive(Debug, Clone, Copy)]
pub struct StoredForwarding {
    via_end: usize,
    rport: Option<(usize, usize, Option<u16>)>,
    /// The client's sent-by host as an offset and length in the request.
    host: (usize, usize),
    /// The client's `received` value as an offset and length in the request.
    received: Option<(usize, usize)>,
    /// The Max-Forwards value to write.
    pub max_forwards: u32,
    /// Remove the first Route.
    pub remove_route: bool,
    /// Insert our Record-Route.
    pub record_route: bool,
    /// Rewrite the Request-URI host (`ds_select_domain`) to each branch's destination.
    pub rewrite_ruri: bool,
}

impl StoredForwarding {
    /// What to keep of `f`, a decision over the request in `buf`.
    pub fn of(f: &Forwarding<'_>, buf: &[u8]) -> StoredForwarding {
        let h = f.client_via.host;
        let off = (h.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        let host = if off <= buf.len() && off + h.len() <= buf.len() {
            (off, h.len())
        } else {
            (0, 0)
        };
        StoredForwarding {
            via_end: f.client_via.end,
            rport: f.client_via.rport,
            host,
            received: f.client_via.received.map(|(at, v)| (at, v.len())),
            max_forwards: f.max_forwards,
            remove_route: f.remove_route,
            record_route: f.record_route,
            rewrite_ruri: f.ruri.is_some(),
        }
    }

    /// The client Via positions in the stored copy `request` of the same message.
    pub fn client_via<'r>(&self, request: &'r [u8]) -> ClientVia<'r> {
        ClientVia {
            end: self.via_end,
            rport: self.rport,
            received: self
                .received
                .and_then(|(at, n)| Some((at, request.get(at..at + n)?))),
            host: request
                .get(self.host.0..self.host.0 + self.host.1)
                .unwrap_or(b""),
        }
    }
}
