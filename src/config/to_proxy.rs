//! The one configuration → run-time translation: [`Settings`] (everything the daemon needs)
//! from a [`Config`], including the proxy's [`ProxyConfig`] (route table, template, listeners,
//! timers, keys).
//!
//! The configuration keeps its own types (they carry names and lines for `check` and errors);
//! this is the one place that turns them into run-time values. The daemon only adds what
//! exists at run time: the bound addresses (port 0), through the same advertise rule
//! ([`Listener::advertised`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::dispatch::DispatchParams;
use crate::netio::{DatapathChoice, NetConfig};
use crate::proxy::{self, Condition, Listener, ProxyConfig, RouteTable, SourceSets, Target};

use super::route::{Action, Route, SelectMode};
use super::{Advertise, Config, Listen};

fn bytes(s: &str) -> Box<[u8]> {
    s.as_bytes().into()
}

fn route(r: &Route) -> proxy::Route {
    let mut conditions = Vec::new();
    if !r.methods.is_empty() {
        conditions.push(Condition::Method(
            r.methods.iter().map(|m| bytes(m)).collect(),
        ));
    }
    if let Some(s) = r.source {
        conditions.push(Condition::SourceInSet {
            sets: s.set.map_or(SourceSets::Any, SourceSets::Set),
            mode: s.mode,
        });
    }
    if let Some(p) = &r.ruri_user_prefix {
        conditions.push(Condition::RuriUserPrefix(bytes(p)));
    }
    if let Some(h) = &r.header {
        conditions.push(Condition::Header {
            name: bytes(&h.name),
            value: h.value.as_deref().map(bytes),
        });
    }
    let action = match &r.action {
        Action::Select(s) => proxy::Action::Select {
            rules: s.rules.clone(),
            target: match s.mode {
                SelectMode::Dst => Target::Dst,
                SelectMode::Ruri => Target::Ruri,
            },
            limit: s.limit.map_or(0, |l| l.get()),
        },
        Action::Reply(r) => proxy::Action::Reply {
            code: r.code,
            reason: r.reason.as_str().into(),
        },
    };
    proxy::Route {
        name: r.name.as_str().into(),
        conditions,
        action,
        failover: r.failover.clone(),
    }
}

/// Everything the daemon needs, already validated (built from the configuration file).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen addresses with their transport (port 0 = any free port).
    pub listen: Vec<Listen>,
    /// The host and port to advertise in Via / Record-Route instead of the bound address
    /// (required for unspecified addresses).
    pub advertise: Option<Advertise>,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Which datapath.
    pub datapath: DatapathChoice,
    /// How datagrams are spread over the workers.
    pub spread: crate::netio::Spread,
    /// Datapath sizing.
    pub net: NetConfig,
    /// The proxy's behaviour (its `sockets` are filled in at start from the bound addresses).
    pub proxy: ProxyConfig,
    /// The destination list file.
    pub source: crate::source::Source,
    /// Dispatcher parameters.
    pub params: DispatchParams,
    /// The admin HTTP listener (`[admin] listen`) and its bearer token; `None` = no control
    /// plane.
    pub admin: Option<(SocketAddr, Option<String>)>,
    /// `[dispatcher] watch_list_file`: reload when the list file's modification time changes.
    pub watch_list_file: bool,
    /// `[dispatcher] persist_rpc_changes`: write `dispatcher.add`/`remove` to the list file.
    pub persist_rpc_changes: bool,
    /// `[dispatcher] event_hook`: command run on dst-down / dst-up (see `crate::health`).
    pub event_hook: Option<PathBuf>,
    /// `[tm] max_transactions`: slots of the transaction table (routes with `failover`).
    pub max_transactions: usize,
    /// `[tm] preallocate`: allocate every slot at start.
    pub preallocate: bool,
    /// The destinations as already read (by `run`'s check, so that the daemon starts on the
    /// very list that was checked and a database is read once); `None`: read at start.
    pub preloaded: Option<crate::dispatch::LoadedList>,
}

impl Config {
    /// The proxy's route table, routes in file order.
    pub fn route_table(&self) -> RouteTable {
        RouteTable {
            routes: self.routes.iter().map(route).collect(),
        }
    }

    /// The proxy's local sockets, one per `server.listen` address in order (the I/O layer's
    /// socket index), advertised as `server.advertise` when set (its port, else the socket's).
    pub fn local_sockets(&self) -> Vec<Listener> {
        self.server
            .listen
            .iter()
            .map(|l| {
                let a = self.server.advertise.as_ref();
                Listener::advertised(l.proto, l.addr, a.map(|a| (a.host.as_str(), a.port)))
            })
            .collect()
    }

    /// Everything the proxy workers need, fixed at start.
    pub fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig {
            sockets: self.local_sockets(),
            record_route: self.server.record_route,
            max_forwards: u32::from(self.server.max_forwards),
            overload: crate::proxy::Overload {
                admit_percent: u32::from(self.server.overload_admit_percent),
                retry_after: self.server.overload_retry_after,
            },
            routes: self.route_table(),
            hash_template: self
                .dispatcher
                .hash_pvar
                .as_ref()
                .map(|t| t.compiled.clone()),
            allowed_next_hops: self.server.allowed_next_hops.clone(),
            pike: self.pike,
            via_key: self
                .server
                .via_secret
                .as_ref()
                .map_or_else(crate::proxy::branch::ViaKey::random, |s| {
                    crate::proxy::branch::ViaKey::from_secret(s.0.as_bytes())
                }),
            timers: self.tm.timers,
            call_check_interval: (self.dispatcher.params.ds_hash_size > 0)
                .then_some(self.dispatcher.params.ds_hash_check_interval),
        }
    }
}

impl Settings {
    /// The daemon's settings from a validated configuration.
    pub fn from_config(cfg: &Config) -> Settings {
        let mut net = NetConfig::default();
        // The I/O layer has one socket buffer size for both directions: take the larger.
        if let Some(n) = cfg.server.recv_buffer_size.max(cfg.server.send_buffer_size) {
            net.socket_buffer = n;
        }
        net.batch_wait = std::time::Duration::from_micros(u64::from(cfg.server.batch_wait_us));
        Settings {
            listen: cfg.server.listen.clone(),
            advertise: cfg.server.advertise.clone(),
            workers: cfg.server.worker_count(),
            datapath: cfg.server.datapath,
            spread: cfg.server.spread,
            net,
            proxy: cfg.proxy_config(),
            source: cfg.dispatcher.source(),
            params: cfg.dispatcher.params.clone(),
            admin: cfg
                .admin
                .listen
                .map(|a| (a, cfg.admin.token.as_ref().map(|t| t.0.clone()))),
            watch_list_file: cfg.dispatcher.watch_list_file,
            persist_rpc_changes: cfg.dispatcher.persist_rpc_changes,
            event_hook: cfg.dispatcher.event_hook.clone(),
            max_transactions: cfg.tm.max_transactions,
            preallocate: cfg.tm.preallocate,
            preloaded: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn translates_routes_and_sockets() {
        let text = r#"
[server]
listen = ["0.0.0.0:5060", "[::]:5062"]
advertise = "2001:db8::1"
record_route = true
[dispatcher]
hash_pvar = "$ci"
[[route]]
name = "gw"
methods = ["INVITE"]
source_in_set = "any"
ruri_user_prefix = "+49"
header = "X-T"
header_value = "a"
select = "1=7"
mode = "ruri"
limit = 3
[[route]]
reply = { code = 404 }
"#;
        let c = Config::parse(text, Path::new("s.toml")).unwrap();
        let p = c.proxy_config();
        assert_eq!(p.sockets.len(), 2);
        assert_eq!(&*p.sockets[0].advertise_host, b"[2001:db8::1]");
        assert_eq!(p.sockets[1].advertise_port, 5062);
        assert!(p.record_route);
        assert_eq!(p.max_forwards, 70);
        assert!(p.hash_template.is_some());
        let r = &p.routes.routes;
        assert_eq!(&*r[0].name, "gw");
        assert_eq!(r[0].conditions.len(), 4);
        assert_eq!(
            r[0].conditions[1],
            Condition::SourceInSet {
                sets: SourceSets::Any,
                mode: 2
            }
        );
        assert!(matches!(
            r[0].action,
            proxy::Action::Select {
                target: Target::Ruri,
                limit: 3,
                ..
            }
        ));
        assert_eq!(
            r[1].action,
            proxy::Action::Reply {
                code: 404,
                reason: "Not Found".into()
            }
        );
        let d = Config::parse("", Path::new("s.toml")).unwrap();
        assert_eq!(d.route_table(), RouteTable::default_round_robin());
        assert_eq!(&*d.local_sockets()[0].advertise_host, b"127.0.0.1");
    }
}
