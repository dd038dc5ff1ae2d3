//! `[tm]`: the transaction layer of routes with `failover` (Kamailio `tm` module names and
//! units: milliseconds), and the size of the transaction table.

use std::time::Duration;

use super::read::{Ctx, Table};
use crate::proxy::txn::Timers;

/// The keys `[tm]` accepts.
pub(crate) const TM_KEYS: &[&str] = &[
    "fr_timer",
    "fr_inv_timer",
    "wt_timer",
    "max_transactions",
    "preallocate",
];

/// `[tm]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    /// `fr_timer`, `fr_inv_timer`, `wt_timer` (milliseconds in the file).
    pub timers: Timers,
    /// `max_transactions`: stateful requests in flight at once (slots allocated at start);
    /// beyond it a new request gets `503` with `Retry-After`. Default 65536.
    pub max_transactions: usize,
    /// `preallocate`: allocate and touch every slot and its buffers at start (Kamailio's
    /// `shm_force_alloc`) instead of on first use. Default false.
    pub preallocate: bool,
}

impl Default for Tm {
    fn default() -> Tm {
        Tm {
            timers: Timers::default(),
            max_transactions: 65_536,
            preallocate: false,
        }
    }
}

fn millis(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str, min: i64) -> Option<Duration> {
    ctx.at(t, key, |c, k, v| c.int(k, v, min..=86_400_000))
        .map(|n| Duration::from_millis(n.unsigned_abs()))
}

/// Reads `[tm]`.
pub(crate) fn read_tm(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Tm {
    let mut tm = Tm::default();
    if let Some(d) = millis(ctx, t, "fr_timer", 100) {
        tm.timers.fr_timer = d;
    }
    if let Some(d) = millis(ctx, t, "fr_inv_timer", 100) {
        tm.timers.fr_inv_timer = d;
    }
    if let Some(d) = millis(ctx, t, "wt_timer", 0) {
        tm.timers.wt_timer = d;
    }
    if let Some(n) = ctx.at(t, "max_transactions", |c, k, v| c.int(k, v, 1..=10_000_000)) {
        tm.max_transactions = n as usize;
    }
    if let Some(b) = ctx.at(t, "preallocate", |c, k, v| c.flag(k, v)) {
        tm.preallocate = b;
    }
    tm
}
