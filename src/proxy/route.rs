//! The route table: what a Kamailio script's `request_route` would decide, as data.
//!
//! Routes are tried in order and the first whose conditions all hold decides: select
//! destinations with `ds_select_routes` rules (and forward), or answer with a status code.
//! The configuration module builds this table from `[[route]]` sections; the proxy only reads
//! it.

use std::net::SocketAddr;

use sipdisp_parser::Message;

use crate::dispatch::Rule;
use crate::plane::Plane;

pub use crate::plane::{
    FROM_LIST_IGNORE_PORT, FROM_LIST_IGNORE_PROTO, FROM_LIST_USABLE_ONLY, SourceSets,
};

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

/// Transaction-stateful failover of a route (Kamailio's `t_on_failure` + `ds_next_dst`
/// idiom): the request is proxied through transactions and retried on the next destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// Final responses (and the local 408 of a timeout) that try the next destination
    /// (`t_check_status` pattern; default `408|5[0-9][0-9]`).
    pub codes: super::txn::Codes,
    /// `ds_mark_dst` letters for a destination that failed that way (`None`: no mark).
    pub mark: Option<Box<[u8]>>,
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
    /// Transaction-stateful failover for the requests it selects for (`None`: stateless).
    pub failover: Option<Failover>,
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
                        set: crate::dispatch::SetId(1),
                        alg: crate::dispatch::Algorithm::RoundRobin,
                    }],
                    target: Target::Dst,
                    limit: 0,
                },
                failover: None,
            }],
        }
    }

    /// The first route whose conditions hold for `msg` from `source`, with its index.
    pub fn find(
        &self,
        msg: &Message<'_>,
        source: SocketAddr,
        plane: &Plane,
    ) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.conditions.iter().all(|c| c.holds(msg, source, plane)))
    }
}

impl Condition {
    fn holds(&self, msg: &Message<'_>, source: SocketAddr, plane: &Plane) -> bool {
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
