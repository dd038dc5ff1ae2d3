//! The probe scheduler and the reply judge, without clocks or sockets: time comes in as an
//! argument and requests go out through a [`Sink`], so every path is driven by tests.
//!
//! Bookkeeping is per *plane generation*: the first time the prober sees a plane (start, or a
//! reload swapped it) it bumps the generation, forgets every pending probe and builds a table
//! of the plane's destinations (set position, index, set id, URI). A probe's branch names the
//! generation and the table index ([`ProbeToken`]); a reply whose generation is not the current
//! one is ignored, so a late reply can never touch a destination a reload removed (or a new
//! destination that took its index).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ProbeMetrics;
use super::codes::ReplyCodes;
use super::request::{self, Probe};
use crate::dispatch::runtime::Sample;
use crate::dispatch::{Event, Flags, SetId, Snapshot};
use crate::netio::{Flow, SocketIdx};
use crate::proxy::{Listener, Plane, ProbeToken, Sink, ip_port};

/// RFC 3261 T1: first retransmission of a keepalive over UDP (then doubling).
pub const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: the retransmission interval cap for non-INVITE requests.
pub const T2: Duration = Duration::from_secs(4);
/// The code a keepalive that could not be sent counts as (Kamailio: 500).
pub const SEND_FAILED: u16 = 500;
/// The code a keepalive without a final reply in time counts as (Kamailio: local 408).
pub const TIMED_OUT: u16 = 408;

/// A state change a keepalive outcome caused: logged, counted and handed to the event hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// `dst-down` or `dst-up`.
    pub event: Event,
    /// The set.
    pub set: SetId,
    /// The destination URI as stored.
    pub uri: String,
    /// The destination's flags after the change.
    pub flags: Flags,
    /// The reply code (408 for a timeout, 500 when the keepalive could not be sent).
    pub code: u16,
}

/// `dispatcher:dst-down` / `dispatcher:dst-up` without the module prefix.
pub fn event_name(e: Event) -> &'static str {
    match e {
        Event::DstDown => "dst-down",
        Event::DstUp => "dst-up",
    }
}

/// Reference §6.1: whether a destination with `flags` is pinged in `ds_probing_mode` `mode`.
pub fn should_ping(mode: u8, flags: Flags) -> bool {
    if flags.has(Flags::DISABLED) {
        return false;
    }
    match mode {
        1 => true,
        2 => flags.has(Flags::INACTIVE) && flags.has(Flags::PROBING),
        _ => flags.has(Flags::PROBING),
    }
}

/// Reference §6.3 steps 2–4: the state requested for a final reply `code` to a destination
/// whose flags are `flags`; `None` = the reply is ignored (mode 3 and not probing, or
/// DISABLED).
pub fn requested_state(mode: u8, codes: &ReplyCodes, flags: Flags, code: u16) -> Option<u32> {
    let probing = flags.has(Flags::PROBING);
    if mode == 3 && !probing {
        return None;
    }
    if flags.has(Flags::DISABLED) {
        return None;
    }
    Some(if codes.success(code) {
        if mode == 1 || (mode == 3 && probing) {
            Flags::PROBING
        } else {
            0
        }
    } else {
        Flags::TRYING | if mode == 0 { 0 } else { Flags::PROBING }
    })
}

/// Probing knobs, read from the plane's parameters at each new generation.
#[derive(Debug, Clone, Default)]
struct Knobs {
    interval: Option<Duration>,
    timeout: Duration,
    mode: u8,
    method: String,
    from: String,
    codes: ReplyCodes,
    latency: bool,
}

/// One destination of the current generation.
#[derive(Debug)]
struct Entry {
    set: SetId,
    set_pos: usize,
    idx: usize,
    uri: Box<[u8]>,
    labels: super::Labels,
    from: Box<[u8]>,
    hop: Option<SocketAddr>,
    local: Option<usize>,
    next_due: Instant,
    last_sent: Option<Instant>,
}

#[derive(Debug)]
struct Pending {
    token: ProbeToken,
    sent: Instant,
    deadline: Instant,
    retx_at: Instant,
    retx_every: Duration,
    local: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// The probe scheduler: which destinations are due, the requests, pending probes, timeouts,
/// retransmissions, and the state updates their outcomes cause.
pub struct Prober {
    sockets: Vec<Listener>,
    plane: Option<Arc<Plane>>,
    generation: u32,
    knobs: Knobs,
    entries: Vec<Entry>,
    pending: Vec<Pending>,
    seq: u32,
    buf: Vec<u8>,
    metrics: ProbeMetrics,
}

impl Prober {
    /// A prober sending from `sockets` (the proxy's local sockets, indexed like the datapath's).
    pub fn new(sockets: Vec<Listener>, metrics: ProbeMetrics) -> Prober {
        Prober {
            sockets,
            plane: None,
            generation: 0,
            knobs: Knobs::default(),
            entries: Vec::new(),
            pending: Vec::new(),
            seq: 0,
            buf: Vec::with_capacity(512),
            metrics,
        }
    }

    /// The current plane generation (0 before the first plane was seen).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    #[cfg(test)]
    pub(crate) fn metrics_for_tests(&self) -> &ProbeMetrics {
        &self.metrics
    }

    /// Probes sent and not yet answered or timed out.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The earliest time something is due (a probe, a retransmission, a timeout).
    pub fn next_wake(&self) -> Option<Instant> {
        let due = self
            .knobs
            .interval
            .and_then(|_| self.entries.iter().map(|e| e.next_due).min());
        let pend = self.pending.iter().map(|p| p.retx_at.min(p.deadline)).min();
        match (due, pend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Adopts `plane` now (see [`Prober::sync`]): for the control plane, right after it
    /// publishes a plane.
    pub fn adopt(&mut self, now: Instant, plane: &Arc<Plane>) {
        self.sync(now, plane);
    }

    /// Adopts `plane` if it is not the current one: new generation, new table, pending probes
    /// forgotten, first probes spread evenly over the first interval from `now`.
    fn sync(&mut self, now: Instant, plane: &Arc<Plane>) {
        if self.plane.as_ref().is_some_and(|p| Arc::ptr_eq(p, plane)) {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        self.pending.clear();
        let p = plane.snapshot.params();
        self.knobs = Knobs {
            interval: p.ds_ping_interval,
            timeout: p.ds_ping_timeout,
            mode: p.ds_probing_mode,
            method: p.ds_ping_method.clone(),
            from: p.ds_ping_from.clone(),
            codes: ReplyCodes::parse(&p.ds_ping_reply_codes),
            latency: p.ds_ping_latency_stats,
        };
        let outbound = p.outbound_proxy.as_deref().and_then(literal_uri_addr);
        let default_socket = p.ds_default_socket.clone();
        let old: Vec<super::Labels> = self.entries.drain(..).map(|e| e.labels).collect();
        let total: usize = plane.snapshot.sets().iter().map(|s| s.len()).sum();
        let interval = self.knobs.interval.unwrap_or(Duration::ZERO);
        // Probing off (no ds_ping_interval): no table, no per-destination probe series.
        let sets = if self.knobs.interval.is_some() {
            plane.snapshot.sets()
        } else {
            &[]
        };
        for (set_pos, set) in sets.iter().enumerate() {
            for (idx, d) in set.destinations().iter().enumerate() {
                let k = self.entries.len() as u32;
                let hop = d
                    .attrs
                    .obproxy
                    .as_deref()
                    .and_then(|o| literal_uri_addr(&String::from_utf8_lossy(o)))
                    .or(outbound)
                    .or_else(|| plane.addr_at(set_pos, idx));
                let wanted = d
                    .attrs
                    .socket
                    .as_deref()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .or_else(|| default_socket.clone());
                let local = hop.and_then(|h| self.local_for(wanted.as_deref(), h));
                let from = d
                    .attrs
                    .ping_from
                    .clone()
                    .unwrap_or_else(|| self.knobs.from.clone().into_bytes().into_boxed_slice());
                let labels = super::dest_labels(set.id, &d.uri);
                self.metrics.register(&labels);
                self.entries.push(Entry {
                    set: set.id,
                    set_pos,
                    idx,
                    uri: d.uri.clone(),
                    labels,
                    from,
                    hop,
                    local,
                    next_due: now + interval.mul_f64(f64::from(k) / total.max(1) as f64),
                    last_sent: None,
                });
            }
        }
        // O(n): a reload of 10,000 destinations must not stall the worker that ticks.
        let kept: std::collections::HashSet<&super::Labels> =
            self.entries.iter().map(|e| &e.labels).collect();
        for l in &old {
            if !kept.contains(l) {
                self.metrics.unregister(l);
            }
        }
        self.plane = Some(Arc::clone(plane));
    }

    /// The local socket to send to `hop` from: the one named by the `socket` attribute /
    /// `ds_default_socket` (`udp:IP:PORT` or `IP:PORT`) when it is one of ours, else the first
    /// of `hop`'s address family.
    fn local_for(&self, wanted: Option<&str>, hop: SocketAddr) -> Option<usize> {
        let named = wanted.and_then(|w| {
            let w = w.strip_prefix("udp:").unwrap_or(w);
            let addr: SocketAddr = w.parse().ok()?;
            self.sockets.iter().position(|s| s.addr == addr)
        });
        named
            .filter(|&i| self.sockets[i].addr.is_ipv4() == hop.is_ipv4())
            .or_else(|| {
                self.sockets
                    .iter()
                    .position(|s| s.addr.is_ipv4() == hop.is_ipv4())
            })
    }

    /// Sends what is due at `now` into `sink`: retransmissions, timeouts (as 408), and a new
    /// keepalive to every destination whose slot came and that §6.1 says to ping — unless
    /// `active` is false (`dispatcher.ping_active 0`). Returns the events caused.
    pub fn tick(
        &mut self,
        now: Instant,
        plane: &Arc<Plane>,
        active: bool,
        sink: &mut dyn Sink,
    ) -> Vec<Fired> {
        self.sync(now, plane);
        let mut fired = Vec::new();
        let mut k = 0;
        while k < self.pending.len() {
            let p = &mut self.pending[k];
            if p.deadline <= now {
                let p = self.pending.swap_remove(k);
                let e = &self.entries[p.token.dest as usize];
                self.metrics.timeouts.get_or_create(&e.labels).inc();
                self.judge(
                    p.token.dest as usize,
                    TIMED_OUT,
                    Some(Sample::Timeout),
                    &mut fired,
                );
                continue;
            }
            if p.retx_at <= now {
                let flow = Flow {
                    transport: self.sockets[p.local].transport,
                    local: SocketIdx(p.local as u16),
                    remote: p.to,
                };
                let _ = sink.send(&flow, &[&p.bytes]);
                p.retx_every = (p.retx_every * 2).min(T2);
                p.retx_at = now + p.retx_every;
            }
            k += 1;
        }
        let Some(interval) = self.knobs.interval else {
            return fired;
        };
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            if e.next_due > now {
                continue;
            }
            e.next_due += interval;
            if e.next_due <= now {
                // Far behind (a stalled worker): resume from now rather than catch up in a burst.
                e.next_due = now + interval;
            }
            if !active {
                continue;
            }
            let flags = plane.snapshot.sets()[e.set_pos].destinations()[e.idx].flags();
            if should_ping(self.knobs.mode, flags) {
                self.send(now, i, sink, &mut fired);
            }
        }
        fired
    }

    fn send(&mut self, now: Instant, i: usize, sink: &mut dyn Sink, fired: &mut Vec<Fired>) {
        let e = &self.entries[i];
        let (Some(hop), Some(local)) = (e.hop, e.local) else {
            self.metrics.send_failures.get_or_create(&e.labels).inc();
            self.judge(i, SEND_FAILED, None, fired);
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        let token = ProbeToken {
            generation: self.generation,
            dest: i as u32,
            seq: self.seq,
        };
        let sock = &self.sockets[local];
        request::build(
            &Probe {
                method: &self.knobs.method,
                uri: &e.uri,
                from: &e.from,
                via_host: &sock.advertise_host,
                via_port: sock.advertise_port,
                transport: sock.transport,
                token,
            },
            &mut self.buf,
        );
        let flow = Flow {
            transport: sock.transport,
            local: SocketIdx(local as u16),
            remote: hop,
        };
        if sink.send(&flow, &[&self.buf]).is_err() {
            self.metrics.send_failures.get_or_create(&e.labels).inc();
            self.judge(i, SEND_FAILED, None, fired);
            return;
        }
        self.metrics.sent.get_or_create(&e.labels).inc();
        self.entries[i].last_sent = Some(now);
        self.pending.push(Pending {
            token,
            sent: now,
            deadline: now + self.knobs.timeout,
            retx_at: now + T1,
            retx_every: T1,
            local,
            to: hop,
            bytes: self.buf.clone(),
        });
    }

    /// A reply to one of our keepalives (recognised by the proxy). Provisional replies only
    /// slow the retransmissions down; a final reply ends the probe and is judged (§6.3).
    pub fn reply(
        &mut self,
        now: Instant,
        plane: &Arc<Plane>,
        token: ProbeToken,
        code: u16,
    ) -> Vec<Fired> {
        self.sync(now, plane);
        let mut fired = Vec::new();
        if token.generation != self.generation {
            self.metrics.ignored(super::IGNORED_STALE);
            return fired;
        }
        let Some(pos) = self.pending.iter().position(|p| p.token == token) else {
            self.metrics.ignored(super::IGNORED_UNKNOWN);
            return fired;
        };
        let i = token.dest as usize;
        let class = super::class_label(code);
        let labels = &self.entries[i].labels;
        self.metrics
            .replies
            .get_or_create(&super::with(labels, "class", class))
            .inc();
        if code < 200 {
            let p = &mut self.pending[pos];
            p.retx_every = T2;
            p.retx_at = now + T2;
            return fired;
        }
        let p = self.pending.swap_remove(pos);
        let rtt = now.saturating_duration_since(p.sent);
        self.metrics
            .rtt
            .get_or_create(labels)
            .observe(rtt.as_secs_f64());
        let sample = if code == TIMED_OUT {
            Sample::Timeout
        } else {
            // Kamailio measures from the latest keepalive sent to the destination.
            let since = self.entries[i].last_sent.unwrap_or(p.sent);
            let ms = now.saturating_duration_since(since).as_millis();
            Sample::Reply(ms.min(i32::MAX as u128) as i32)
        };
        self.judge(i, code, Some(sample), &mut fired);
        fired
    }

    /// Reference §6.3 for entry `i` and final `code`; `sample` feeds the latency statistics
    /// (`None`: the keepalive was never sent, no statistics).
    fn judge(&self, i: usize, code: u16, sample: Option<Sample>, fired: &mut Vec<Fired>) {
        let Some(plane) = &self.plane else { return };
        let snap: &Snapshot = &plane.snapshot;
        let e = &self.entries[i];
        let flags = match sample {
            Some(s) if self.knobs.latency => snap.record_latency(e.set, &e.uri, s).ok(),
            _ => first_match_flags(snap, e.set, &e.uri),
        };
        let Some(flags) = flags else { return };
        let Some(requested) = requested_state(self.knobs.mode, &self.knobs.codes, flags, code)
        else {
            return;
        };
        if let Ok(Some(event)) = snap.update_state(e.set, &e.uri, requested) {
            fired.push(Fired {
                event,
                set: e.set,
                uri: String::from_utf8_lossy(&e.uri).into_owned(),
                flags: first_match_flags(snap, e.set, &e.uri).unwrap_or_default(),
                code,
            });
        }
    }
}

/// Flags of the first destination of `set` with this URI (case-insensitive), as Kamailio 5.6.3
/// finds the destination a keepalive reply belongs to.
fn first_match_flags(snap: &Snapshot, set: SetId, uri: &[u8]) -> Option<Flags> {
    snap.set(set)?
        .destinations()
        .iter()
        .find(|d| d.uri.eq_ignore_ascii_case(uri))
        .map(|d| d.flags())
}

/// The address of a SIP URI whose host is an IP literal (`outbound_proxy`, `obproxy`).
fn literal_uri_addr(uri: &str) -> Option<SocketAddr> {
    let u = sipdisp_parser::Uri::parse(uri.trim_matches(['<', '>']).as_bytes()).ok()?;
    ip_port(u.host, u.port)
}
