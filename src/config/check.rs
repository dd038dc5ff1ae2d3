//! `sipdisp check`: the configuration, the destination source it names (list file or
//! database table), and how they fit together.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::dispatch::{Algorithm, ListError, ListErrors, LoadHooks, LoadedList, SetId};
use crate::source::SourceError;

use super::error::{ConfigError, ErrorKind};
use super::route::Action;
use super::{Config, Route};

/// Why the destination source could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListLoadError {
    /// The file or database could not be read (what and why, as text).
    #[error("{0}")]
    Io(String),
    /// Lines or rows that fail the load (every one, `file:line: field: …` or
    /// `table … id N: field: …`).
    #[error("{0}")]
    List(ListErrors),
}

/// Reads and checks the configured destination source (list file, or database table with its
/// version check) with the configured parameters. Errors and warnings name the file as the
/// configuration resolved it, or the table and the database.
pub fn load_list(config: &Config) -> Result<LoadedList, ListLoadError> {
    let listen: Vec<std::net::SocketAddr> = config.server.listen.iter().map(|l| l.addr).collect();
    let local = |s: &[u8]| crate::proxy::socket_attr_is_local(s, &listen);
    let resolves = |h: &[u8], p: Option<u16>| crate::plane::resolve_host(h, p).is_some();
    let hooks = LoadHooks {
        socket_is_local: Some(&local),
        host_resolves: Some(&resolves),
    };
    config
        .dispatcher
        .source()
        .load(&config.dispatcher.params, &hooks)
        .map_err(|e| match e {
            SourceError::Unavailable(why) => ListLoadError::Io(why),
            SourceError::Invalid(e) => ListLoadError::List(e),
        })
}

/// One problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// In the configuration file (also used for route/list mismatches, located at the route).
    Config(ConfigError),
    /// On a line of the list file.
    List(ListError),
    /// The list file could not be read.
    ListIo(String),
    /// This machine cannot run the configuration (e.g. the datapath it names is unavailable).
    Environment(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Config(e) => e.fmt(f),
            Problem::List(e) => e.fmt(f),
            Problem::ListIo(e) | Problem::Environment(e) => f.write_str(e),
        }
    }
}

/// What a valid configuration amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Listen addresses (`udp:IP:port`).
    pub listen: Vec<String>,
    /// Worker threads that will run.
    pub workers: usize,
    /// `auto`, `io_uring` or `mmsg` as configured (the probe result is the caller's).
    pub datapath: &'static str,
    /// The destination source (list file, or table and database).
    pub source: String,
    /// Destinations per set, by set id.
    pub sets: Vec<(SetId, usize)>,
    /// One line per route, in order.
    pub routes: Vec<String>,
}

/// Everything `sipdisp check` prints.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The configuration, when it is valid.
    pub config: Option<Config>,
    /// The list, when it loaded.
    pub list: Option<LoadedList>,
    /// Problems that would stop `sipdisp run`.
    pub errors: Vec<Problem>,
    /// Problems that would not (skipped destinations, routes naming absent sets, …).
    pub warnings: Vec<Problem>,
    /// Present when configuration and list are both valid.
    pub summary: Option<Summary>,
}

impl CheckReport {
    /// True when `sipdisp run` would start with this configuration.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "listen: {}", self.listen.join(", "))?;
        writeln!(f, "workers: {}, datapath: {}", self.workers, self.datapath)?;
        let total: usize = self.sets.iter().map(|s| s.1).sum();
        writeln!(
            f,
            "list: {} ({} sets, {total} destinations)",
            self.source,
            self.sets.len()
        )?;
        for (set, n) in &self.sets {
            writeln!(f, "  set {}: {n} destinations", set.0)?;
        }
        writeln!(f, "routes ({}, first match wins):", self.routes.len())?;
        for r in &self.routes {
            writeln!(f, "  {r}")?;
        }
        Ok(())
    }
}

fn route_note(config: &Config, route: &Route, key: &str, what: String) -> Problem {
    Problem::Config(ConfigError {
        file: config.path.display().to_string(),
        line: route.line,
        col: u32::from(route.line > 0),
        key: format!("{}.{key}", route.name),
        kind: ErrorKind::Conflict(what),
    })
}

/// Cross-checks routes against the loaded sets. A `select` set missing from the list is an
/// error (`run` would answer 503 to every such request) unless the route says
/// `allow_missing_set = true`; everything else is a warning.
fn route_problems(
    config: &Config,
    sets: &BTreeMap<SetId, usize>,
    errors: &mut Vec<Problem>,
    out: &mut Vec<Problem>,
) {
    let list = config.dispatcher.source().name();
    let mut catch_all: Option<&str> = None;
    for r in &config.routes {
        if let Some(prev) = catch_all {
            let why = format!("unreachable: route {prev:?} before it matches every request");
            out.push(route_note(config, r, "name", why));
        }
        if let Some(set) = r.source.and_then(|s| s.set)
            && !sets.contains_key(&set)
        {
            let why = format!("set {} is not in {list}: the route never matches", set.0);
            out.push(route_note(config, r, "source_in_set", why));
        }
        if let Action::Select(s) = &r.action {
            for rule in &s.rules {
                if !sets.contains_key(&rule.set) {
                    if r.allow_missing_set {
                        let why = format!("set {} is not in {list} (allowed)", rule.set.0);
                        out.push(route_note(config, r, "select", why));
                    } else {
                        let why = format!(
                            "set {} is not in {list}: every request this route matches would get \
                             503; add the set, or `allow_missing_set = true` if a reload or \
                             dispatcher.add will bring it",
                            rule.set.0
                        );
                        errors.push(route_note(config, r, "select", why));
                    }
                }
                if rule.alg == Algorithm::CallLoad && config.dispatcher.params.ds_hash_size == 0 {
                    let why = format!(
                        "rule {}=10 with ds_hash_size = 0: picks the least loaded destination \
                         but counts no calls",
                        rule.set.0
                    );
                    out.push(route_note(config, r, "select", why));
                }
            }
        }
        let unconditional = r.methods.is_empty()
            && r.source.is_none()
            && r.ruri_user_prefix.is_none()
            && r.header.is_none();
        if unconditional && catch_all.is_none() {
            catch_all = Some(&r.name);
        }
    }
}

/// Settings that are accepted but do not do what a Kamailio operator may expect; `check`
/// lists them and `run` logs them at start.
pub fn config_warnings(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let at = |key: &str, what: String| {
        Problem::Config(ConfigError {
            file: config.path.display().to_string(),
            line: 0,
            col: 0,
            key: key.to_owned(),
            kind: ErrorKind::Conflict(what),
        })
    };
    let p = &config.dispatcher.params;
    if p.ds_dns_mode & !1 != 0 {
        out.push(at(
            "dispatcher.ds_dns_mode",
            format!(
                "{} asks for DNS resolution per use, by timer or with SRV/NAPTR, which sipdisp \
                 does not do yet: host names are resolved once, at start and at each reload (mode 1)",
                p.ds_dns_mode
            ),
        ));
    }
    if !p.failover() {
        for r in config.routes.iter().filter(|r| r.failover.is_some()) {
            out.push(route_note(
                config,
                r,
                "failover",
                "failover needs the failover list: set `flags = 2` in [dispatcher] (as in \
                 Kamailio); without it only the selected destination is tried"
                    .into(),
            ));
        }
    }
    out
}

/// Checks the configuration at `path` and the list file it names; never stops at the first
/// problem. The exit code is the caller's decision ([`CheckReport::ok`]).
pub fn check(path: &Path) -> CheckReport {
    let mut report = CheckReport {
        config: None,
        list: None,
        errors: Vec::new(),
        warnings: Vec::new(),
        summary: None,
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            report.errors.extend(e.0.into_iter().map(Problem::Config));
            return report;
        }
    };
    report.warnings.extend(config_warnings(&config));
    match load_list(&config) {
        Ok(list) => {
            let mut sets = BTreeMap::new();
            for e in &list.entries {
                *sets.entry(e.set).or_insert(0usize) += 1;
            }
            report
                .warnings
                .extend(list.warnings.iter().cloned().map(Problem::List));
            route_problems(&config, &sets, &mut report.errors, &mut report.warnings);
            report.summary = Some(Summary {
                listen: config.server.listen.iter().map(|l| l.to_string()).collect(),
                workers: config.server.worker_count(),
                datapath: match config.server.datapath {
                    crate::netio::DatapathChoice::Auto => "auto",
                    crate::netio::DatapathChoice::IoUring => "io_uring",
                    crate::netio::DatapathChoice::Mmsg => "mmsg",
                },
                source: config.dispatcher.source().name(),
                sets: sets.into_iter().collect(),
                routes: config.routes.iter().map(|r| r.to_string()).collect(),
            });
            report.list = Some(list);
        }
        Err(ListLoadError::List(e)) => {
            report.errors.extend(e.0.into_iter().map(Problem::List));
            report.warnings.extend(e.1.into_iter().map(Problem::List));
        }
        Err(ListLoadError::Io(why)) => report.errors.push(Problem::ListIo(why)),
    }
    report.config = Some(config);
    report
}
