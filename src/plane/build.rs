//! Building a [`Plane`]: from the destination source (start, reload) or from list entries (add,
//! remove), with host names resolved here — on the control plane, never on a worker — and
//! runtime state carried over from the plane being replaced ([`successor`]), so every path
//! that publishes a plane does it the same way.

use super::Plane;
use crate::dispatch::{
    Carry, DispatchParams, ListEntry, ListErrors, LoadHooks, LoadedList, Snapshot,
};
use crate::source::{Source, SourceError};
use std::net::{SocketAddr, ToSocketAddrs};

/// Why a destination list could not become a plane.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The list file or database could not be read (what and why).
    #[error("{0}")]
    ListRead(String),
    /// The list file or table has errors (every bad line or row is listed).
    #[error("{0}")]
    List(ListErrors),
}

/// A seed for the snapshot's random choices (per plane, from the wall clock).
pub fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Reads the destination source (list file or database table) and builds the destination plane, resolving host names once (here,
/// never on the message path). A host that does not resolve rejects its destination at parse
/// time, as in Kamailio (skipped with a warning, or the load fails with `ds_load_mode = 1`);
/// one kept without DNS (flag 16, `ds_dns_mode = 0`) that does not resolve stays selectable
/// but unreachable (its requests get a 503) and is reported in the returned warnings.
pub fn load_plane(
    source: &Source,
    params: &DispatchParams,
    listen: &[SocketAddr],
) -> Result<(Plane, Vec<String>), LoadError> {
    let name = source.name();
    let local = |s: &[u8]| super::socket_attr_is_local(s, listen);
    let resolves = |h: &[u8], p: Option<u16>| resolve_host(h, p).is_some();
    let hooks = LoadHooks {
        socket_is_local: Some(&local),
        host_resolves: Some(&resolves),
    };
    let loaded = source.load(params, &hooks).map_err(|e| match e {
        SourceError::Unavailable(why) => LoadError::ListRead(why),
        SourceError::Invalid(e) => LoadError::List(e),
    })?;
    Ok(plane_of(&loaded, &name, params))
}

/// The first plane from a list already read from the source named `name` (see
/// [`load_plane`]), with its warnings.
pub fn plane_of(loaded: &LoadedList, name: &str, params: &DispatchParams) -> (Plane, Vec<String>) {
    let mut warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let snapshot = Snapshot::build(&loaded.entries, params.clone(), seed());
    let plane = plane_from(snapshot, name, &mut warnings);
    (plane, warnings)
}

/// A destination host's first address: IP literals directly, names through the system
/// resolver (A/AAAA); the port is the URI's, else 5060. Blocking: control plane only.
pub fn resolve_host(host: &[u8], port: Option<u16>) -> Option<SocketAddr> {
    super::ip_port(host, port).or_else(|| {
        let name = std::str::from_utf8(host).ok()?;
        (name, port.unwrap_or(5060))
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
    })
}

/// Resolves every destination of `snapshot` into a plane (IP literals directly, names once
/// through the system resolver); names that do not resolve are added to `warnings`.
pub fn plane_from(snapshot: Snapshot, name: &str, warnings: &mut Vec<String>) -> Plane {
    Plane::new(snapshot, |d| {
        super::literal_addr(d).or_else(|| {
            let found = resolve_host(d.host(), d.port());
            if found.is_none() {
                warnings.push(format!(
                    "{name}:{}: destination {} does not resolve",
                    d.line,
                    String::from_utf8_lossy(&d.uri)
                ));
            }
            found
        })
    })
}

/// The plane that replaces `old`: `entries` built into a snapshot, the runtime state `carry`
/// names moved over from `old` (see [`Carry`]), addresses resolved. `name` labels warnings.
pub fn successor(
    old: &Plane,
    entries: &[ListEntry],
    params: &DispatchParams,
    carry: Carry,
    name: &str,
    warnings: &mut Vec<String>,
) -> Plane {
    let mut snapshot = Snapshot::build(entries, params.clone(), seed());
    snapshot.carry_state_from(&old.snapshot, carry);
    plane_from(snapshot, name, warnings)
}
