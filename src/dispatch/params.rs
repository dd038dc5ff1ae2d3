//! Dispatcher module parameters with Kamailio 5.6.3 names and defaults (reference §11).
//!
//! Only the typed values live here; reading them from a configuration file is the `config`
//! module's job. Times are `Duration`s (Kamailio counts seconds or milliseconds; the conversion
//! happens at the configuration edge). Parameters that only matter to later stages (probing,
//! socket choice) are carried so one struct describes the module, even where dispatch itself
//! does not read them.

use std::time::Duration;

/// Module `flags` bit 1: hash only the user part of URIs (algorithms 1–3).
pub const FLAG_USER_ONLY: u32 = 1;
/// Module `flags` bit 2: failover support (the `_dsdst_` list is filled).
pub const FLAG_FAILOVER: u32 = 2;

/// What to do when a hash algorithm's destination is unusable. Kamailio only knows
/// [`HashFailover::NextIndex`]; the other mode is a sipdisp extension (off by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashFailover {
    /// Kamailio: walk to the next usable index (the whole share lands on one neighbour,
    /// kamailio issue 2361).
    #[default]
    NextIndex,
    /// Rendezvous hashing over the usable destinations: a dead destination's keys spread evenly
    /// over all usable ones; keys of live destinations never move.
    Rendezvous,
}

/// The dispatcher parameters, Kamailio names, 5.6.3 defaults.
///
/// Guarantees: [`Default`] reproduces Kamailio 5.6.3 except where a field's doc says
/// "sipdisp extension".
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchParams {
    /// `flags`: bit 1 user-only URI hashing, bit 2 failover. Default 0.
    pub flags: u32,
    /// `use_default`: keep the last array entry as the default destination. Default false.
    pub use_default: bool,
    /// `force_dst`: overwrite an already-set destination URI. Default true (5.6.3).
    pub force_dst: bool,
    /// `ds_probing_threshold`: consecutive failures before INACTIVE. Default 1.
    pub ds_probing_threshold: u32,
    /// `ds_inactive_threshold`: consecutive successes before an INACTIVE destination is active.
    /// Default 1.
    pub ds_inactive_threshold: u32,
    /// `ds_probing_mode`: 0..=3 (§6.1). Default 0.
    pub ds_probing_mode: u8,
    /// `ds_ping_interval`: keepalive period; `None` = off (Kamailio 0). Default off.
    pub ds_ping_interval: Option<Duration>,
    /// sipdisp extension: how long a keepalive waits for a final reply before it counts as a
    /// local 408 (Kamailio: tm's `fr_timer`, 30 s; master's `ds_ping_fr_timeout`). Default 5 s.
    pub ds_ping_timeout: Duration,
    /// `ds_ping_method`. Default `OPTIONS`.
    pub ds_ping_method: String,
    /// `ds_ping_from`. Default `sip:dispatcher@localhost`.
    pub ds_ping_from: String,
    /// `ds_ping_reply_codes` as given (e.g. `class=2;code=403`). Default empty.
    pub ds_ping_reply_codes: String,
    /// `ds_ping_latency_stats`: keep latency statistics of probed destinations. Default false.
    pub ds_ping_latency_stats: bool,
    /// `ds_latency_estimator_alpha` in 1..=999 (per mille weight of the *old* estimate, 5.6.3
    /// meaning). Default 900.
    pub ds_latency_estimator_alpha: u16,
    /// `ds_hash_size`: call-load table has `2^n` buckets; 0 disables algorithm 10. Default 0.
    pub ds_hash_size: u8,
    /// `ds_hash_expire`: call-load entry lifetime from creation. Default 7200 s.
    pub ds_hash_expire: Duration,
    /// `ds_hash_initexpire`: lifetime of an unconfirmed call-load entry. Default 7200 s.
    pub ds_hash_initexpire: Duration,
    /// `ds_hash_check_interval`: how often the caller should run call-load expiry. Default 30 s.
    pub ds_hash_check_interval: Duration,
    /// `call_load_capacity` (sipdisp): most calls the call-load table holds; a call beyond it
    /// goes to the least-loaded destination without adding load. Default 1,000,000.
    pub call_load_capacity: usize,
    /// `ds_load_mode`: 0 skip bad destinations, 1 fail the whole load. Default 0.
    pub ds_load_mode: u8,
    /// `ds_attrs_none`: store `none=yes` for entries without attrs. Default false.
    pub ds_attrs_none: bool,
    /// `reload_delta`: minimum time between reload/add/remove; zero disables. Default 5 s.
    pub reload_delta: Duration,
    /// `ds_dns_mode`: bit 1 resolve at load, 2 per use, 4 by timer, 8 SRV/NAPTR. Default 1.
    /// Dispatch does no DNS; the caller honours this.
    pub ds_dns_mode: u8,
    /// `ds_dns_interval`. Default 600 s.
    pub ds_dns_interval: Duration,
    /// `ds_timer_mode`. Default 0.
    pub ds_timer_mode: u8,
    /// `xavp_dst` (name kept for RPC/compat; an empty name disables the failover list).
    /// Default `_dsdst_`.
    pub xavp_dst: String,
    /// `xavp_ctx`. Default `_dsctx_`.
    pub xavp_ctx: String,
    /// `ds_default_socket`, unset by default.
    pub ds_default_socket: Option<String>,
    /// `ds_default_sockname`, unset by default.
    pub ds_default_sockname: Option<String>,
    /// `outbound_proxy` for keepalives, unset by default.
    pub outbound_proxy: Option<String>,
    /// sipdisp extension: accept `0x`-prefixed hexadecimal flags in list files, as Kamailio
    /// 6.1 does. Default true (5.6.3 reads `0x10` as flags 0 + attrs `x10`).
    pub hex_flags: bool,
    /// sipdisp extension: hash-algorithm failover mode. Default [`HashFailover::NextIndex`].
    pub hash_failover: HashFailover,
    /// sipdisp extension: keep runtime state (states, counters, latency, call loads) of
    /// destinations with the same identity across a reload. Default true; false = Kamailio.
    pub retain_state: bool,
}

impl Default for DispatchParams {
    fn default() -> Self {
        Self {
            flags: 0,
            use_default: false,
            force_dst: true,
            ds_probing_threshold: 1,
            ds_inactive_threshold: 1,
            ds_probing_mode: 0,
            ds_ping_interval: None,
            ds_ping_timeout: Duration::from_secs(5),
            ds_ping_method: "OPTIONS".into(),
            ds_ping_from: "sip:dispatcher@localhost".into(),
            ds_ping_reply_codes: String::new(),
            ds_ping_latency_stats: false,
            ds_latency_estimator_alpha: 900,
            ds_hash_size: 0,
            ds_hash_expire: Duration::from_secs(7200),
            ds_hash_initexpire: Duration::from_secs(7200),
            ds_hash_check_interval: Duration::from_secs(30),
            call_load_capacity: 1_000_000,
            ds_load_mode: 0,
            ds_attrs_none: false,
            reload_delta: Duration::from_secs(5),
            ds_dns_mode: 1,
            ds_dns_interval: Duration::from_secs(600),
            ds_timer_mode: 0,
            xavp_dst: "_dsdst_".into(),
            xavp_ctx: "_dsctx_".into(),
            ds_default_socket: None,
            ds_default_sockname: None,
            outbound_proxy: None,
            hex_flags: true,
            hash_failover: HashFailover::NextIndex,
            retain_state: true,
        }
    }
}

impl DispatchParams {
    /// True when module `flags` has the failover bit and `xavp_dst` is non-empty.
    pub fn failover(&self) -> bool {
        self.flags & FLAG_FAILOVER != 0 && !self.xavp_dst.is_empty()
    }

    /// True when `xavp_dst` names a list (algorithm 10 needs it).
    pub fn failover_name_set(&self) -> bool {
        !self.xavp_dst.is_empty()
    }

    /// True when URI hashing uses only the user part.
    pub fn user_only(&self) -> bool {
        self.flags & FLAG_USER_ONLY != 0
    }

    /// The estimator weight α as Kamailio 5.6.3 computes it (`alpha / 1000` as `f32`); values
    /// outside 1..=999 fall back to the default 0.9, as Kamailio does after logging an error.
    pub fn latency_alpha(&self) -> f32 {
        let a = if (1..=999).contains(&self.ds_latency_estimator_alpha) {
            self.ds_latency_estimator_alpha
        } else {
            900
        };
        f32::from(a) / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_5_6_3() {
        let p = DispatchParams::default();
        assert_eq!((p.flags, p.use_default, p.force_dst), (0, false, true));
        assert_eq!((p.ds_probing_threshold, p.ds_inactive_threshold), (1, 1));
        assert_eq!(p.ds_hash_expire, Duration::from_secs(7200));
        assert_eq!(p.reload_delta, Duration::from_secs(5));
        assert!(!p.failover());
        assert_eq!(p.latency_alpha(), 0.9);
        let p = DispatchParams {
            ds_latency_estimator_alpha: 0,
            flags: 3,
            ..Default::default()
        };
        assert_eq!(p.latency_alpha(), 0.9);
        assert!(p.failover() && p.user_only());
    }
}
