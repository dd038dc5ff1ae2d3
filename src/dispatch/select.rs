//! Selection: algorithms 0–13, index reduction, failover list (reference §4).
//!
//! [`Snapshot::select`] is `ds_manage_routes` without a SIP message: the caller names the set
//! and algorithm and passes the key bytes the algorithm needs as a [`Key`] (the proxy extracts
//! them; [`Algorithm::key`] says which). The result is a `Copy` [`Selected`]; the failover list
//! (or, for algorithm 12, the extra branches) is written into a caller-supplied slice, whose
//! length acts as an additional `limit`. Nothing here allocates or locks, except algorithm 10,
//! which must record the Call-ID in the call-load table.
//!
//! Randomness: algorithm 6 takes its random value from the caller (`Key::Random`), so the
//! worker owns its generator and tests are deterministic.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::hash::{PartHasher, ds_hash};
use super::params::HashFailover;
use super::snapshot::{Set, Snapshot, TABLE_SLOTS};
use super::{DestIdx, Pick, SetId};

/// A dispatcher algorithm (Kamailio numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// 0: hash of the Call-ID.
    CallId,
    /// 1: hash of the From URI.
    From,
    /// 2: hash of the To URI.
    To,
    /// 3: hash of the current Request-URI.
    RequestUri,
    /// 4: round robin.
    RoundRobin,
    /// 5: hash of the authentication user name (round robin without one).
    AuthUser,
    /// 6: random.
    Random,
    /// 7: hash of the evaluated `hash_pvar` template.
    Template,
    /// 8: first entry (serial).
    First,
    /// 9: weight table.
    Weight,
    /// 10: call load.
    CallLoad,
    /// 11: relative weight.
    RelativeWeight,
    /// 12: parallel forking.
    Parallel,
    /// 13: latency-optimised priority round robin.
    Latency,
    /// Anything else: first entry, with [`Selected::unknown_algorithm`] set.
    Unknown(i32),
}

/// The kind of key an algorithm needs from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// No key.
    None,
    /// Call-ID body.
    CallId,
    /// From URI parts.
    FromUri,
    /// To URI parts.
    ToUri,
    /// Current R-URI parts.
    RequestUri,
    /// Digest user name.
    AuthUser,
    /// Evaluated template string.
    Template,
    /// A random value.
    Random,
    /// Call-ID and whether the request is an INVITE.
    CallLoad,
}

impl Algorithm {
    /// Maps Kamailio's number.
    pub const fn from_code(n: i32) -> Self {
        match n {
            0 => Self::CallId,
            1 => Self::From,
            2 => Self::To,
            3 => Self::RequestUri,
            4 => Self::RoundRobin,
            5 => Self::AuthUser,
            6 => Self::Random,
            7 => Self::Template,
            8 => Self::First,
            9 => Self::Weight,
            10 => Self::CallLoad,
            11 => Self::RelativeWeight,
            12 => Self::Parallel,
            13 => Self::Latency,
            n => Self::Unknown(n),
        }
    }

    /// Kamailio's number.
    pub const fn code(self) -> i32 {
        match self {
            Self::CallId => 0,
            Self::From => 1,
            Self::To => 2,
            Self::RequestUri => 3,
            Self::RoundRobin => 4,
            Self::AuthUser => 5,
            Self::Random => 6,
            Self::Template => 7,
            Self::First => 8,
            Self::Weight => 9,
            Self::CallLoad => 10,
            Self::RelativeWeight => 11,
            Self::Parallel => 12,
            Self::Latency => 13,
            Self::Unknown(n) => n,
        }
    }

    /// Which key the proxy must extract.
    pub const fn key(self) -> KeyKind {
        match self {
            Self::CallId => KeyKind::CallId,
            Self::From => KeyKind::FromUri,
            Self::To => KeyKind::ToUri,
            Self::RequestUri => KeyKind::RequestUri,
            Self::AuthUser => KeyKind::AuthUser,
            Self::Random => KeyKind::Random,
            Self::Template => KeyKind::Template,
            Self::CallLoad => KeyKind::CallLoad,
            _ => KeyKind::None,
        }
    }
}

/// Key bytes handed in by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// No key (algorithms 4, 8, 9, 11, 12, 13, unknown).
    None,
    /// Call-ID header body (trimmed here).
    CallId(&'a [u8]),
    /// URI parts for algorithms 1–3 (§4.3). `port` is the explicit port as written and its
    /// value; `default_port` is 5061 for `sips:` and 5060 otherwise (and 5060 for a
    /// `;user=phone` URI, §12 item 20). Dispatch applies the user-only flag and the rule that a
    /// port equal to the default is not hashed.
    Uri {
        /// User part without password (`None` when the URI has none).
        user: Option<&'a [u8]>,
        /// Host as written.
        host: &'a [u8],
        /// Explicit port: text and value.
        port: Option<(&'a [u8], u16)>,
        /// The scheme's default port.
        default_port: u16,
    },
    /// Digest `username` value of the first usable credentials (§4.4); `None` → round robin.
    AuthUser(Option<&'a [u8]>),
    /// Evaluated `hash_pvar` string (a missing variable printed as `<null>` by the caller).
    Template(&'a [u8]),
    /// A random value (algorithm 6).
    Random(u32),
    /// Algorithm 10: untrimmed Call-ID and whether the request is an INVITE.
    CallLoad {
        /// Call-ID body.
        call_id: &'a [u8],
        /// Request method is INVITE.
        invite: bool,
    },
}

/// Where the selection goes (`ds_select_dst`, `ds_select_domain`, `ds_select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Destination URI (`$du`).
    DstUri,
    /// Request-URI host rewrite; `ruri_has_user` matters to algorithm 12's branches.
    Domain {
        /// The current R-URI has a user part.
        ruri_has_user: bool,
    },
    /// Only the list.
    XavpOnly,
}

/// One selection request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Set id.
    pub set: SetId,
    /// Algorithm.
    pub alg: Algorithm,
    /// Key bytes for the algorithm.
    pub key: Key<'a>,
    /// `limit` (0 = unlimited): entries in the failover list, selected one included.
    pub limit: u32,
    /// Target.
    pub mode: Mode,
    /// A destination URI is already set on the message (matters when `force_dst` is off).
    pub dst_already_set: bool,
    /// Current time (call-load deadlines).
    pub now: Instant,
}

/// What the list written into the caller's buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Nothing written (failover off).
    None,
    /// Failover list (`_dsdst_`), the selected destination first.
    Failover,
    /// Algorithm 12 branch targets.
    Branches,
}

/// A successful selection.
///
/// Guarantees: `pick` is usable at selection time, except for the documented Kamailio cases
/// (algorithm 10 retransmissions keep the least-loaded choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// The destination to use.
    pub pick: Pick,
    /// Number of entries written to the buffer (`_dsctx_ cnt` for failover lists).
    pub list_len: usize,
    /// What the entries are.
    pub list_kind: ListKind,
    /// The algorithm as Kamailio records it in the list (10 becomes 0 when no load was added).
    pub effective_alg: Algorithm,
    /// Algorithm 10 counted a call load (undo with the call-load functions).
    pub load_added: bool,
    /// The algorithm number was unknown and "first entry" was used (Kamailio logs a warning).
    pub unknown_algorithm: bool,
}

/// Why a selection failed (Kamailio returns -1 for all of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The snapshot has no sets.
    #[error("no destination sets")]
    NoSets,
    /// `force_dst` is off and a destination URI is already set.
    #[error("destination already set and force_dst is off")]
    DstAlreadySet,
    /// Unknown set id.
    #[error("destination set {0} not found")]
    NoSet(u32),
    /// The key does not fit the algorithm.
    #[error("algorithm {alg} needs a {expected:?} key")]
    KeyMismatch {
        /// Algorithm number.
        alg: i32,
        /// Key it needs.
        expected: KeyKind,
    },
    /// Algorithm 7: template empty after trimming.
    #[error("hash template is empty")]
    EmptyTemplate,
    /// No usable destination.
    #[error("no usable destination in set {0}")]
    NoUsable(u32),
    /// Algorithm 10: a listed destination has no `duid`.
    #[error("destination {idx} of set {set} has no duid (algorithm 10)")]
    MissingDuid {
        /// Set id.
        set: u32,
        /// Index.
        idx: u32,
    },
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// The user sub-part of a Digest `username` (§4.4).
fn auth_user(v: &[u8]) -> &[u8] {
    let mut u = trim(v);
    if u.len() > 2
        && let Some(at) = u.iter().position(|&c| c == b'@')
    {
        u = &u[..at];
        if let Some(c) = u.iter().position(|&c| c == b':') {
            u = &u[c + 1..];
        }
    }
    trim(u)
}

/// Hash of URI keys (§4.3).
pub fn uri_hash(
    user: Option<&[u8]>,
    host: &[u8],
    port: Option<(&[u8], u16)>,
    default_port: u16,
    user_only: bool,
) -> u32 {
    let mut h = PartHasher::new();
    if let Some(u) = user {
        h.feed(u);
        h.end_part();
    }
    if !user_only {
        h.feed(host);
        if let Some((text, value)) = port
            && value != default_port
        {
            h.feed(b":");
            h.feed(text);
        }
        h.end_part();
    }
    h.finish()
}

fn mix64(a: u64) -> u64 {
    let mut z = a.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

enum Raw {
    Value(u32),
    RoundRobin { written: usize, value: u32 },
}

impl Snapshot {
    fn raw_value(
        &self,
        set: &Set,
        req: &Request<'_>,
        eff: &mut Algorithm,
        load: &mut Option<usize>,
    ) -> Result<Raw, SelectError> {
        let mismatch = || SelectError::KeyMismatch {
            alg: req.alg.code(),
            expected: req.alg.key(),
        };
        let nr = set.dests.len();
        let rr = || {
            let prev = set
                .rt
                .last
                .fetch_update(Relaxed, Relaxed, |l| Some((l + 1) % nr))
                .unwrap_or(0);
            Raw::RoundRobin {
                written: (prev + 1) % nr,
                value: prev as u32,
            }
        };
        let v = match (req.alg, req.key) {
            (Algorithm::CallId, Key::CallId(c)) => ds_hash(Some(trim(c)), None),
            (
                Algorithm::From | Algorithm::To | Algorithm::RequestUri,
                Key::Uri {
                    user,
                    host,
                    port,
                    default_port,
                },
            ) => uri_hash(user, host, port, default_port, self.params.user_only()),
            (Algorithm::RoundRobin, _) => return Ok(rr()),
            (Algorithm::AuthUser, Key::AuthUser(u)) => match u.map(trim) {
                Some(u) if !u.is_empty() => ds_hash(Some(auth_user(u)), None),
                _ => return Ok(rr()),
            },
            (Algorithm::Random, Key::Random(r)) => r,
            (Algorithm::Template, Key::Template(t)) => {
                let t = trim(t);
                if t.is_empty() {
                    return Err(SelectError::EmptyTemplate);
                }
                ds_hash(Some(t), None)
            }
            (Algorithm::Weight, _) => {
                let w = set
                    .rt
                    .wlast
                    .fetch_update(Relaxed, Relaxed, |w| Some((w + 1) % TABLE_SLOTS))
                    .unwrap_or(0);
                set.wlist[w % TABLE_SLOTS]
            }
            (Algorithm::RelativeWeight, _) => {
                let w = set
                    .rt
                    .rwlast
                    .fetch_update(Relaxed, Relaxed, |w| Some((w + 1) % TABLE_SLOTS))
                    .unwrap_or(0);
                set.rt.rwlist[w % TABLE_SLOTS].load(Relaxed)
            }
            (Algorithm::CallLoad, Key::CallLoad { call_id, invite }) => {
                if !invite || !self.params.failover_name_set() {
                    *eff = Algorithm::CallId;
                    0
                } else {
                    let i = self
                        .least_loaded(set)
                        .ok_or(SelectError::NoUsable(set.id.0))?;
                    let d = &set.dests[i];
                    let added = match (&self.calls, &d.attrs.duid) {
                        (Some(t), Some(duid)) => t.insert(call_id, set.id, duid, req.now),
                        _ => false,
                    };
                    if added {
                        d.rt.dload.fetch_add(1, Relaxed);
                        *load = Some(i);
                    } else {
                        *eff = Algorithm::CallId;
                    }
                    i as u32
                }
            }
            (Algorithm::First | Algorithm::Parallel | Algorithm::Unknown(_), _) => 0,
            _ => return Err(mismatch()),
        };
        Ok(Raw::Value(v))
    }

    /// `ds_get_leastloaded`: first index with the strictly smallest load among usable
    /// destinations below their `maxload`.
    fn least_loaded(&self, set: &Set) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for (j, d) in set.dests.iter().enumerate() {
            let load = d.dload();
            if d.usable()
                && (d.attrs.maxload == 0 || load < d.attrs.maxload)
                && best.is_none_or(|(_, t)| load < t)
            {
                best = Some((j, load));
            }
        }
        best.map(|(j, _)| j)
    }

    /// Selects a destination (`ds_manage_routes`). The failover list or alg-12 branches are
    /// written to `out`; `out.len()` bounds them like `limit` does.
    ///
    /// Guarantees: no allocation and no lock except for algorithm 10; O(1) for algorithms
    /// 0–9 and 11 while the hashed destination is usable (the skip walk and the failover list
    /// are O(set size)).
    pub fn select(&self, req: &Request<'_>, out: &mut [Pick]) -> Result<Selected, SelectError> {
        if self.sets.is_empty() {
            return Err(SelectError::NoSets);
        }
        if req.mode == Mode::DstUri && !self.params.force_dst && req.dst_already_set {
            return Err(SelectError::DstAlreadySet);
        }
        let pos = self.set_pos(req.set).ok_or(SelectError::NoSet(req.set.0))?;
        let set = &self.sets[pos];
        let mk = |i: usize| Pick {
            set: set.id,
            set_pos: pos as u32,
            idx: DestIdx(i as u32),
        };
        let limit = match req.limit {
            0 => out.len(),
            l => (l as usize).min(out.len()),
        };
        if req.alg == Algorithm::Latency {
            return self.select_latency(set, pos, limit, out);
        }
        let nr = set.dests.len();
        let use_default = self.params.use_default;
        let n = if use_default && nr != 1 { nr - 1 } else { nr };
        let mut eff = req.alg;
        let mut load = None;
        let raw = self.raw_value(set, req, &mut eff, &mut load)?;
        let (hash, rr_written) = match raw {
            Raw::Value(v) => (v, None),
            Raw::RoundRobin { written, value } => (value, Some(written)),
        };
        let hashed = matches!(
            eff,
            Algorithm::CallId
                | Algorithm::From
                | Algorithm::To
                | Algorithm::RequestUri
                | Algorithm::AuthUser
                | Algorithm::Template
        ) && rr_written.is_none()
            && req.alg != Algorithm::CallLoad;
        let start = hash as usize % n;
        let usable = |i: usize| set.dests[i].usable();
        let i = if usable(start) {
            start
        } else if hashed && self.params.hash_failover == HashFailover::Rendezvous {
            (0..n)
                .filter(|&j| usable(j))
                .max_by_key(|&j| mix64((u64::from(hash) << 32) | j as u64))
                .or_else(|| (use_default && usable(nr - 1)).then_some(nr - 1))
                .ok_or(SelectError::NoUsable(set.id.0))?
        } else {
            let mut i = start;
            loop {
                i = (i + 1) % n;
                if i == start {
                    if use_default && usable(nr - 1) {
                        break nr - 1;
                    }
                    self.undo_load(set, load, req);
                    return Err(SelectError::NoUsable(set.id.0));
                }
                if usable(i) {
                    break i;
                }
            }
        };
        if let Some(w) = rr_written {
            let _ = set
                .rt
                .last
                .compare_exchange(w, (i + 1) % nr, Relaxed, Relaxed);
        }
        let mut sel = Selected {
            pick: mk(i),
            list_len: 0,
            list_kind: ListKind::None,
            effective_alg: eff,
            load_added: load.is_some(),
            unknown_algorithm: matches!(req.alg, Algorithm::Unknown(_)),
        };
        if req.alg == Algorithm::Parallel {
            sel.list_kind = ListKind::Branches;
            sel.list_len = self.branches(set, pos, i, req.mode, out);
            return Ok(sel);
        }
        if !self.params.failover() || limit == 0 {
            return Ok(sel);
        }
        let calls = eff == Algorithm::CallLoad;
        if calls && let Some(idx) = self.first_without_duid(set, i, n, limit) {
            self.undo_load(set, load, req);
            return Err(SelectError::MissingDuid {
                set: set.id.0,
                idx: idx as u32,
            });
        }
        let mut cnt = 0;
        out[cnt] = mk(i);
        cnt += 1;
        for j in (i + 1..nr).chain(0..i) {
            if cnt >= limit {
                break;
            }
            let d = &set.dests[j];
            if !d.usable() || (use_default && j == nr - 1) {
                continue;
            }
            if calls && d.attrs.maxload != 0 && d.dload() >= d.attrs.maxload {
                continue;
            }
            out[cnt] = mk(j);
            cnt += 1;
        }
        if use_default && i != nr - 1 && cnt < limit {
            out[cnt] = mk(nr - 1);
            cnt += 1;
        }
        sel.list_kind = ListKind::Failover;
        sel.list_len = cnt;
        Ok(sel)
    }

    /// Index of a destination that alg 10 would list but has no duid.
    fn first_without_duid(&self, set: &Set, i: usize, n: usize, limit: usize) -> Option<usize> {
        let nr = set.dests.len();
        let mut cnt = 0;
        for j in std::iter::once(i).chain(i + 1..nr).chain(0..i) {
            let d = &set.dests[j];
            let listed = j == i
                || (d.usable()
                    && !(n != nr && j == nr - 1)
                    && !(d.attrs.maxload != 0 && d.dload() >= d.attrs.maxload));
            if !listed {
                continue;
            }
            if cnt >= limit {
                break;
            }
            cnt += 1;
            if d.attrs.duid.is_none() {
                return Some(j);
            }
        }
        None
    }

    fn undo_load(&self, set: &Set, load: Option<usize>, req: &Request<'_>) {
        if let (Some(i), Some(t), Key::CallLoad { call_id, .. }) = (load, &self.calls, req.key) {
            t.remove(call_id);
            let _ = set.dests[i]
                .rt
                .dload
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        }
    }

    /// Algorithm 12 (§4.13): branches for `i+1..nr` (all states), or `i..nr` in XAVP mode;
    /// in R-URI mode with a user part, URIs not starting with `sip:`/`sips:` (case-sensitive)
    /// or shorter than 6 bytes are skipped.
    fn branches(&self, set: &Set, pos: usize, i: usize, mode: Mode, out: &mut [Pick]) -> usize {
        let first = if mode == Mode::XavpOnly { i } else { i + 1 };
        let mut cnt = 0;
        for j in first..set.dests.len() {
            if cnt == out.len() {
                break;
            }
            let uri = &set.dests[j].uri;
            if mode
                == (Mode::Domain {
                    ruri_has_user: true,
                })
                && (uri.len() < 6 || !(uri.starts_with(b"sip:") || uri.starts_with(b"sips:")))
            {
                continue;
            }
            out[cnt] = Pick {
                set: set.id,
                set_pos: pos as u32,
                idx: DestIdx(j as u32),
            };
            cnt += 1;
        }
        cnt
    }

    /// Algorithm 13 (§4.14): latency-adjusted priorities, visiting from the cursor.
    fn select_latency(
        &self,
        set: &Set,
        pos: usize,
        limit: usize,
        out: &mut [Pick],
    ) -> Result<Selected, SelectError> {
        let nr = set.dests.len();
        let use_default = self.params.use_default;
        let n = if use_default && nr != 1 { nr - 1 } else { nr };
        let mk = |i: usize| Pick {
            set: set.id,
            set_pos: pos as u32,
            idx: DestIdx(i as u32),
        };
        // Pass 1: best adjusted priority; the first visited among equals wins (stable sort).
        let start = set.rt.last.load(Relaxed) % nr;
        let rprio = |z: usize| -> Option<i32> {
            let d = &set.dests[z];
            if !d.usable() {
                return None;
            }
            let est = d.latency_estimate();
            let lat = if d.attrs.cc != 0 {
                (est - d.latency_average()) as i32
            } else {
                est as i32
            };
            let p = d.priority;
            let handicap = if lat > p && p > 0 { lat / p } else { 0 };
            let mut r = p - handicap;
            if r < 1 && p > 0 {
                r = 1;
            }
            d.rt.rpriority.store(r, Relaxed);
            Some(r)
        };
        let mut best: Option<(usize, i32)> = None;
        let mut z = start;
        for _ in 0..nr {
            if let Some(r) = rprio(z)
                && best.is_none_or(|(_, b)| r > b)
            {
                best = Some((z, r));
            }
            z = (z + 1) % n;
        }
        let Some((sel, _)) = best else {
            set.rt.last.store(0, Relaxed);
            return Err(SelectError::NoUsable(set.id.0));
        };
        set.rt.last.store((sel + 1) % nr, Relaxed);
        let mut s = Selected {
            pick: mk(sel),
            list_len: 0,
            list_kind: ListKind::None,
            effective_alg: Algorithm::Latency,
            load_added: false,
            unknown_algorithm: false,
        };
        if !self.params.failover() {
            return Ok(s);
        }
        // Pass 2: entries in descending adjusted priority, visiting order among equals. The
        // visiting sequence may repeat an index with use_default, as in Kamailio.
        let mut cnt = 0;
        let mut emitted_prio = i32::MAX;
        let mut emitted_upto = 0usize; // visits already emitted at priority emitted_prio
        while cnt < limit {
            // next priority level: the largest rpriority below emitted_prio (or equal with
            // later visits)
            let mut next: Option<(usize, i32)> = None; // (visit k, prio)
            let mut z = start;
            for k in 0..nr {
                let d = &set.dests[z];
                if d.usable() {
                    let r = d.rt.rpriority.load(Relaxed);
                    let later_same = r == emitted_prio && k >= emitted_upto;
                    if (r < emitted_prio || later_same) && next.is_none_or(|(_, b)| r > b) {
                        next = Some((k, r));
                    }
                }
                z = (z + 1) % n;
            }
            let Some((k, r)) = next else { break };
            emitted_prio = r;
            emitted_upto = k + 1;
            let mut z = start;
            for _ in 0..k {
                z = (z + 1) % n;
            }
            if !(use_default && z == nr - 1) {
                out[cnt] = mk(z);
                cnt += 1;
            }
        }
        if use_default && sel != nr - 1 && cnt < limit {
            out[cnt] = mk(nr - 1);
            cnt += 1;
        }
        s.list_kind = ListKind::Failover;
        s.list_len = cnt;
        Ok(s)
    }
}
