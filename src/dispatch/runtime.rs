//! Changing runtime state of a published snapshot: marks, `set_state`, latency samples with
//! congestion control, and call-load bookkeeping (reference §5, §6.6–6.7, §9).
//!
//! All of these are control-plane or per-reply operations. State transitions are a single
//! compare-exchange on the destination's packed flags+counter word, so concurrent marks never
//! lose an update; the alg-11 table is rebuilt (under the set's rebuild mutex, which selection
//! never takes) when a destination with `rweight > 0` changes usability. Destinations are
//! found like Kamailio finds them: case-insensitive URI, first match in the set.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::lock;
use super::snapshot::{Destination, Set, Snapshot, pack, unpack};
use super::state::{self, Event, Flags, StateError, Thresholds};
use super::{Pick, SetId};

/// Which destinations an RPC `set_state` addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// First destination whose URI matches case-insensitively.
    Uri(&'a [u8]),
    /// Every destination of the set (`all`).
    All,
    /// First destination whose `duid` matches case-insensitively (`set_duid_state`).
    Duid(&'a [u8]),
}

/// Outcome of a keepalive, for latency statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// A reply after this many milliseconds (Kamailio's truncated computation).
    Reply(i32),
    /// A 408 (local timeout or real).
    Timeout,
}

/// Call-load events from the message path (`ds_load_update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadEvent {
    /// A BYE or CANCEL request: the call ends.
    ByeOrCancel,
    /// A 2xx reply to an INVITE: the call is confirmed.
    InviteConfirmed,
    /// Anything else: nothing happens.
    Other,
}

impl Snapshot {
    fn find_set(&self, set: SetId) -> Result<&Set, StateError> {
        self.set(set).ok_or(StateError::NoSet(set.0))
    }

    fn find_uri<'s>(set: &'s Set, uri: &[u8]) -> Result<&'s Destination, StateError> {
        set.dests
            .iter()
            .find(|d| d.uri.eq_ignore_ascii_case(uri))
            .ok_or_else(|| StateError::NotFound {
                set: set.id.0,
                uri: String::from_utf8_lossy(uri).into_owned(),
            })
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            probing: self.params.ds_probing_threshold,
            inactive: self.params.ds_inactive_threshold,
        }
    }

    fn after_change(set: &Set, d: &Destination, old: Flags, new: Flags) {
        if d.rweight() > 0 && old.usable() != new.usable() {
            set.rebuild_rweights();
        }
    }

    /// `ds_update_state` (§5.2): applies `requested` through the thresholds to the first
    /// destination of `set` whose URI matches; returns the event to fire, if any.
    pub fn update_state(
        &self,
        set: SetId,
        uri: &[u8],
        requested: u32,
    ) -> Result<Option<Event>, StateError> {
        let s = self.find_set(set)?;
        let d = Self::find_uri(s, uri)?;
        let th = self.thresholds();
        let mut tr = None;
        let prev =
            d.rt.state
                .fetch_update(Relaxed, Relaxed, |v| {
                    let (f, c) = unpack(v);
                    let t = state::update_state(requested, f, c, th);
                    tr = Some(t);
                    Some(pack(t.flags.0, t.counter))
                })
                .unwrap_or_default();
        let t = tr.expect("fetch_update ran the closure");
        Self::after_change(s, d, unpack(prev).0, t.flags);
        Ok(t.event)
    }

    /// `ds_mark_dst([state])` (§5.4) for the destination in use (the first failover entry):
    /// the letters are parsed, then applied with thresholds to the *first* destination of the
    /// set with the same URI. Fails like Kamailio when failover is off.
    pub fn mark_dst(
        &self,
        pick: Pick,
        letters: Option<&[u8]>,
    ) -> Result<Option<Event>, StateError> {
        if !self.params.failover() {
            return Err(StateError::FailoverOff);
        }
        let st = state::parse_mark(letters, self.params.ds_probing_mode)?;
        let uri = &self.destination(pick).uri;
        self.update_state(pick.set, uri, st)
    }

    /// RPC `dispatcher.set_state` / `set_duid_state` (§5.5): clear the state bits and set
    /// `state` directly — no thresholds, no counter reset, no events. `All` on an unknown set
    /// succeeds (as Kamailio answers "Ok").
    pub fn set_state(&self, set: SetId, target: Target<'_>, state: u32) -> Result<(), StateError> {
        let s = match (self.set(set), target) {
            (None, Target::All) => return Ok(()),
            (s, _) => s.ok_or(StateError::NoSet(set.0))?,
        };
        let apply = |d: &Destination| {
            let prev =
                d.rt.state
                    .fetch_update(Relaxed, Relaxed, |v| {
                        let (f, c) = unpack(v);
                        Some(pack(state::reinit_state(f, state).0, c))
                    })
                    .unwrap_or_default();
            Self::after_change(s, d, unpack(prev).0, d.flags());
        };
        match target {
            Target::All => s.dests.iter().for_each(apply),
            Target::Uri(u) => apply(Self::find_uri(s, u)?),
            Target::Duid(id) => apply(
                s.dests
                    .iter()
                    .find(|d| {
                        d.attrs
                            .duid
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(id))
                    })
                    .ok_or_else(|| StateError::NotFound {
                        set: set.0,
                        uri: String::from_utf8_lossy(id).into_owned(),
                    })?,
            ),
        }
        Ok(())
    }

    /// `ds_update_latency` (§6.6–6.7) for a keepalive reply from `uri` in `set`: the sample is
    /// recorded only if the destination is PROBING; then congestion control (alg 11 with `cc`)
    /// adjusts run-time rweights and rebuilds the table when every destination has `cc`.
    /// Returns the destination's flags. Callers only call it with `ds_ping_latency_stats` on.
    pub fn record_latency(
        &self,
        set: SetId,
        uri: &[u8],
        sample: Sample,
    ) -> Result<Flags, StateError> {
        let s = self.find_set(set)?;
        let alpha = self.params.latency_alpha();
        let mut state = None;
        let (mut congested, mut normal, mut total, mut enabled, mut apply) =
            (0, 0, 0i64, true, false);
        let mut cc = |d: &Destination, weight: u32| -> i64 {
            let cms = i64::from(d.latency().congestion_ms());
            total += cms;
            let active = (i64::from(weight) - cms).max(0);
            if active == 0 {
                congested += 1;
            } else {
                normal += 1;
            }
            active
        };
        for d in s.dests.iter() {
            let pinged = state.is_none() && d.uri.eq_ignore_ascii_case(uri);
            if pinged {
                let f = d.flags();
                state = Some(f);
                if f.has(Flags::PROBING) {
                    let mut l = lock(&d.rt.latency);
                    match sample {
                        Sample::Timeout => l.timeout(),
                        Sample::Reply(ms) => l.sample(ms, alpha),
                    }
                    d.rt.est_bits.store(l.estimate.to_bits(), Relaxed);
                    d.rt.avg_bits.store(l.average.to_bits(), Relaxed);
                    drop(l);
                    if d.attrs.cc != 0 && d.attrs.weight > 0 {
                        let a = cc(d, d.attrs.weight) as u32;
                        if d.rweight() != a {
                            apply = true;
                            d.rt.rweight.store(a, Relaxed);
                        }
                    }
                }
            } else if d.attrs.cc != 0 && d.attrs.weight > 0 {
                cc(d, d.attrs.weight);
            }
            if d.attrs.cc == 0 {
                enabled = false;
            }
        }
        let state = state.ok_or_else(|| StateError::NotFound {
            set: set.0,
            uri: String::from_utf8_lossy(uri).into_owned(),
        })?;
        if enabled && congested > 1 && normal == 0 {
            for d in s.dests.iter() {
                let l = d.latency();
                let cms = ((l.estimate - l.average) as i32).max(1);
                let a = ((total << 4) / i64::from(cms)).clamp(0, i64::from(u32::MAX)) as u32;
                if d.rweight() != a {
                    apply = true;
                    d.rt.rweight.store(a, Relaxed);
                }
            }
        }
        if enabled && apply {
            s.rebuild_rweights();
        }
        Ok(state)
    }

    fn dec_load(&self, set: SetId, duid: &[u8]) -> bool {
        let Some(s) = self.set(set) else { return false };
        if let Some(d) = s.dests.iter().find(|d| {
            d.attrs
                .duid
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(duid))
        }) {
            let _ =
                d.rt.dload
                    .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        }
        true
    }

    /// `ds_load_update` (§9): BYE/CANCEL ends the call (load decremented, entry removed),
    /// a 2xx to INVITE confirms it. Returns true like Kamailio (always, for these events).
    pub fn load_update(&self, call_id: &[u8], ev: LoadEvent) -> bool {
        let Some(t) = self.calls() else { return true };
        match ev {
            LoadEvent::ByeOrCancel => {
                if let Some(e) = t.remove(call_id) {
                    self.dec_load(e.set, &e.duid);
                }
            }
            LoadEvent::InviteConfirmed => {
                t.confirm(call_id);
            }
            LoadEvent::Other => {}
        }
        true
    }

    /// `ds_load_unset` (§9): removes the call's load (e.g. on a final reply ≥ 300). False if
    /// the Call-ID is unknown or its set no longer exists (then the entry is kept).
    pub fn load_unset(&self, call_id: &[u8]) -> bool {
        let Some(t) = self.calls() else { return true };
        let Some(e) = t.get(call_id) else {
            return false;
        };
        if self.set(e.set).is_none() {
            return false; // Kamailio keeps the entry when the set vanished
        }
        t.remove(call_id);
        self.dec_load(e.set, &e.duid)
    }

    /// `ds_next_dst` on an algorithm-10 entry (§9): the call's load moves from the
    /// destination it counted for to `to` (which must have a `duid`). False when there is no
    /// call-load table, the Call-ID is unknown or `to` has no duid.
    pub fn load_move(&self, call_id: &[u8], to: Pick) -> bool {
        let Some(t) = self.calls() else { return false };
        let d = self.destination(to);
        let Some(duid) = d.attrs.duid.as_deref() else {
            return false;
        };
        let Some((set, old)) = t.replace_duid(call_id, duid) else {
            return false;
        };
        self.dec_load(set, &old);
        d.rt.dload.fetch_add(1, Relaxed);
        true
    }

    /// The expiry timer as several workers run it: the first caller at or after the table's
    /// next check (every `ds_hash_check_interval`, shared by all workers and carried across
    /// reloads with the table) runs [`Snapshot::expire_calls`]; the others get `None` at the
    /// cost of one atomic load. `None` as well without a call-load table.
    pub fn expire_calls_due(&self, now: Instant) -> Option<usize> {
        let t = self.calls()?;
        t.claim_check(now, self.params().ds_hash_check_interval)
            .then(|| self.expire_calls(now))
    }

    /// Expiry timer (every `ds_hash_check_interval`): drops expired calls and their load.
    pub fn expire_calls(&self, now: Instant) -> usize {
        let Some(t) = self.calls() else { return 0 };
        t.expire(now, |e| {
            self.dec_load(e.set, &e.duid);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::list::{LoadHooks, parse_list};
    use crate::dispatch::params::DispatchParams;

    fn snap(text: &str) -> Snapshot {
        let p = DispatchParams::default();
        let l = parse_list("t", text.as_bytes(), &p, &LoadHooks::default()).unwrap();
        Snapshot::build(&l.entries, p, 3)
    }

    fn counts(s: &Snapshot) -> [usize; 2] {
        let mut c = [0; 2];
        for v in s.sets()[0].rweight_table() {
            c[v as usize] += 1;
        }
        c
    }

    #[test]
    fn congestion_control_rewrites_rweights() {
        let s = snap(
            "1 sip:a 8 0 cc=1;weight=10;rweight=5;latency=20\n\
             1 sip:b 8 0 cc=1;weight=10;rweight=5;latency=20\n",
        ); // array [b, a]
        assert_eq!(counts(&s), [50, 50]);
        // a gets a 200 ms sample: est 38, avg ~20.02 -> 17 ms congestion > tolerance 10
        s.record_latency(SetId(1), b"SIP:A", Sample::Reply(200))
            .unwrap();
        let a = &s.sets()[0].destinations()[1];
        assert_eq!((a.latency().congestion_ms(), a.rweight()), (17, 0));
        assert_eq!(counts(&s), [100, 0]);
        // both congested, none normal: rweight = (total << 4) / own congestion = 544 / 17
        s.record_latency(SetId(1), b"sip:b", Sample::Reply(200))
            .unwrap();
        let w: Vec<u32> = s.sets()[0]
            .destinations()
            .iter()
            .map(|d| d.rweight())
            .collect();
        assert_eq!(w, [32, 32]);
        assert_eq!(counts(&s), [50, 50]);
        // timeouts count but add no sample
        s.record_latency(SetId(1), b"sip:b", Sample::Timeout)
            .unwrap();
        assert_eq!(s.sets()[0].destinations()[0].latency().timeout, 1);
    }

    #[test]
    fn latency_only_while_probing_and_non_cc_sets_never_rebuild() {
        let s = snap("1 sip:a 0 0 cc=1;weight=10;rweight=5;latency=20\n1 sip:b 8 0 rweight=5\n");
        assert_eq!(
            s.record_latency(SetId(1), b"sip:a", Sample::Reply(500))
                .unwrap(),
            Flags(0)
        );
        assert_eq!(s.sets()[0].destinations()[1].latency().count, 10_000);
        s.record_latency(SetId(1), b"sip:b", Sample::Reply(5))
            .unwrap();
        assert_eq!(s.sets()[0].destinations()[0].latency().count, 1);
        assert!(
            s.record_latency(SetId(1), b"sip:zz", Sample::Timeout)
                .is_err()
        );
    }

    #[test]
    fn set_state_semantics() {
        let s = snap("1 sip:a 0 0 duid=gw1;rweight=1\n1 sip:b 0 0 rweight=1\n");
        // no thresholds, counter untouched, case-insensitive first match
        let a = &s.sets()[0].destinations()[1];
        a.store_state(Flags(Flags::TRYING), 2);
        s.set_state(
            SetId(1),
            Target::Uri(b"SIP:A"),
            Flags::INACTIVE | Flags::PROBING,
        )
        .unwrap();
        assert_eq!((a.flags().0, a.counter()), (9, 2));
        assert_eq!(counts(&s), [100, 0]); // alg-11 table rebuilt
        s.set_state(SetId(1), Target::Duid(b"GW1"), 0).unwrap();
        assert_eq!(counts(&s), [50, 50]);
        assert!(s.set_state(SetId(1), Target::Uri(b"sip:none"), 0).is_err());
        assert!(s.set_state(SetId(99), Target::All, 0).is_ok());
        assert!(s.set_state(SetId(99), Target::Uri(b"sip:a"), 0).is_err());
        // update_state on an unknown set / uri
        assert_eq!(
            s.update_state(SetId(7), b"sip:a", 0),
            Err(StateError::NoSet(7))
        );
    }
}
