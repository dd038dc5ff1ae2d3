//! The route table: what a Kamailio script's `request_route` would decide, as data.
//!
//! Routes are tried in order and the first whose conditions all hold decides: select
//! destinations with `ds_select_routes` rules (and forward), or answer with a status code.
//! The configuration module builds this table from `[[route]]` sections; the proxy only reads
//! it.

use std::net::SocketAddr;

use sipdisp_parser::Message;

use crate::dispatch::{Rule, SetId, Snapshot};

/// `ds_is_from_list` mode bit: ignore the port.
pub const FROM_LIST_IGNORE_PORT: u8 = 1;
/// `ds_is_from_list` mode bit: ignore the protocol (sipdisp is UDP-only for now, so the
/// protocol always matches UDP destinations and destinations without `;transport=`).
pub const FROM_LIST_IGNORE_PROTO: u8 = 2;
/// `ds_is_from_list` mode bit: only usable (not inactive/disabled) destinations match.
pub const FROM_LIST_USABLE_ONLY: u8 = 4;

/// Which sets `ds_is_from_list` searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSets {
    /// Every set (Kamailio group -1).
    Any,
    /// One set.
    Set(SetId),
}

/// One condition of a route; all of a route's conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The request method is one of these (exact tokens).
    Method(Vec<Box<[u8]>>),
    /// The packet's source address is a destination of the given sets (`ds_is_from_list`,
    /// with its mode bits).
    SourceInSet {
        /// Which sets.
        sets: SourceSets,
        /// Mode bits (`FROM_LIST_*`).
        mode: u8,
    },
    /// The Request-URI user starts with this prefix.
    RuriUserPrefix(Box<[u8]>),
    /// A header with this name is present; with a value, its first value equals it.
    Header {
        /// Header name (any case, compact forms allowed).
        name: Box<[u8]>,
        /// Required value, compared exactly after trimming.
        value: Option<Box<[u8]>>,
    },
}

/// Where the selected destination goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `ds_select_dst`: send to the destination, Request-URI untouched.
    Dst,
    /// `ds_select_domain`: rewrite the Request-URI host part to the destination's.
    Ruri,
}

/// What a matching route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `ds_select_routes(rules, mode, limit)` then forward.
    Select {
        /// The rules, in order.
        rules: Vec<Rule>,
        /// dst or R-URI.
        target: Target,
        /// Failover list limit (0 = unlimited).
        limit: u32,
    },
    /// Answer statelessly with this code and reason.
    Reply {
        /// Status code (300–699).
        code: u16,
        /// Reason phrase.
        reason: Box<str>,
    },
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Name for logs and metrics.
    pub name: Box<str>,
    /// Conditions (all must hold; none = always).
    pub conditions: Vec<Condition>,
    /// What to do.
    pub action: Action,
}

/// The ordered route table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    /// Routes, first match wins.
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// The default when the configuration has no route: every request to set 1, round robin.
    pub fn default_round_robin() -> RouteTable {
        RouteTable {
            routes: vec![Route {
                name: "default".into(),
                conditions: Vec::new(),
                action: Action::Select {
                    rules: vec![Rule {
                        set: SetId(1),
                        alg: crate::dispatch::Algorithm::RoundRobin,
                    }],
                    target: Target::Dst,
                    limit: 0,
                },
            }],
        }
    }

    /// The first route whose conditions hold for `msg` from `source`, with its index.
    pub fn find(
        &self,
        msg: &Message<'_>,
        source: SocketAddr,
        plane: &super::Plane,
    ) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.conditions.iter().all(|c| c.holds(msg, source, plane)))
    }
}

impl Condition {
    fn holds(&self, msg: &Message<'_>, source: SocketAddr, plane: &super::Plane) -> bool {
        match self {
            Condition::Method(methods) => {
                let m = msg.request().map_or(&b""[..], |r| r.method);
                methods.iter().any(|x| **x == *m)
            }
            Condition::SourceInSet { sets, mode } => {
                plane.is_from_list(source, *sets, *mode).is_some()
            }
            Condition::RuriUserPrefix(prefix) => msg
                .request()
                .and_then(|r| r.uri().ok())
                .and_then(|u| u.user)
                .is_some_and(|u| u.starts_with(prefix)),
            Condition::Header { name, value } => match (msg.header(name), value) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(v), Some(want)) => v == &**want,
            },
        }
    }
}

/// `ds_is_from_list` over a snapshot and its resolved addresses.
pub(crate) fn is_from_list(
    snapshot: &Snapshot,
    addrs: &[Box<[Option<SocketAddr>]>],
    source: SocketAddr,
    sets: SourceSets,
    mode: u8,
) -> Option<SetId> {
    for (pos, set) in snapshot.sets().iter().enumerate() {
        if let SourceSets::Set(id) = sets
            && set.id != id
        {
            continue;
        }
        for (i, d) in set.destinations().iter().enumerate() {
            let Some(addr) = addrs.get(pos).and_then(|a| a.get(i)).copied().flatten() else {
                continue;
            };
            if addr.ip() != source.ip() {
                continue;
            }
            let port_ok = mode & FROM_LIST_IGNORE_PORT != 0
                || d.port().is_none()
                || addr.port() == source.port();
            let usable_ok = mode & FROM_LIST_USABLE_ONLY == 0 || d.usable();
            if port_ok && usable_ok {
                return Some(set.id);
            }
        }
    }
    None
}
