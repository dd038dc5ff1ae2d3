//! `[pike]`: flood control per source address, with Kamailio `pike` module parameter names
//! (seconds, as Kamailio's).

use std::time::Duration;

use super::read::{Ctx, Table};
use crate::proxy::pike::PikeConfig;

/// The keys `[pike]` accepts.
pub(crate) const PIKE_KEYS: &[&str] = &[
    "enabled",
    "sampling_time_unit",
    "reqs_density_per_unit",
    "remove_latency",
    "max_sources",
    "action",
];

/// Reads `[pike]`: `None` unless `enabled = true`.
pub(crate) fn read_pike(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<PikeConfig> {
    let mut p = PikeConfig::default();
    let enabled = ctx
        .at(t, "enabled", |c, k, v| c.flag(k, v))
        .unwrap_or(false);
    if let Some(n) = ctx.at(t, "sampling_time_unit", |c, k, v| c.int(k, v, 1..=3600)) {
        p.sampling_time_unit = Duration::from_secs(n.unsigned_abs());
    }
    if let Some(n) = ctx.at(t, "reqs_density_per_unit", |c, k, v| {
        c.int(k, v, 1..=10_000_000)
    }) {
        p.reqs_density_per_unit = n as u32;
    }
    if let Some(n) = ctx.at(t, "remove_latency", |c, k, v| c.int(k, v, 1..=86_400)) {
        p.remove_latency = Duration::from_secs(n.unsigned_abs());
    }
    if let Some(n) = ctx.at(t, "max_sources", |c, k, v| c.int(k, v, 16..=10_000_000)) {
        p.max_sources = n as usize;
    }
    if let Some(r) = ctx.at(t, "action", |c, k, v| {
        let s = c.string(k, v)?;
        match s.as_str() {
            "drop" => Some(false),
            "503" => Some(true),
            _ => {
                c.bad(&v.span(), k, "\"drop\" or \"503\"", &format!("{s:?}"));
                None
            }
        }
    }) {
        p.reply_503 = r;
    }
    enabled.then_some(p)
}
