//! Typed configuration: one TOML file, Kamailio's names for dispatcher parameters, every
//! problem reported as `FILE:LINE:COL: key: what was expected`.
//!
//! * [`Config::load`] reads and validates the file and resolves relative paths against the
//!   file's directory. It collects *all* problems it can find (unknown keys, wrong types, bad
//!   values, keys that conflict) into [`ConfigErrors`] instead of stopping at the first.
//! * [`load_list`] reads the destination list the configuration names, through
//!   [`crate::dispatch::parse_list`], so `sipdisp check` reports bad list lines too.
//! * [`check`] does both and summarises (sets, destinations, routes) for printing.
//! * [`Config::proxy_config`] translates routes, template and sockets into the proxy's types.
//!
//! What this module deliberately does not do: open sockets, resolve names or start anything.
//! The file format is described key by key in `docs/configuration.md`;
//! `sysconfig/sipdisp.toml` is the commented default.

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

mod check;
mod dispatcher;
mod error;
mod pike;
mod read;
mod route;
mod server;
mod template;
mod tm;
mod to_proxy;
pub use tm::Tm;
pub use to_proxy::Settings;

#[cfg(test)]
mod tests;

pub use check::{CheckReport, ListLoadError, Problem, Summary, check, config_warnings, load_list};
pub use dispatcher::Dispatcher;
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use route::{
    Action, FROM_LIST_IGNORE_PORT, FROM_LIST_IGNORE_PROTO, FROM_LIST_ONLY_USABLE, HeaderMatch,
    Reply, Route, Select, SelectMode, SourceMatch,
};
pub use server::{Admin, Advertise, Listen, Secret, Server};
pub use template::{HashTemplate, TemplateError};

use read::Ctx;

/// The whole configuration, validated.
///
/// Guarantees: every value is within its documented range; `routes` is never empty (the
/// default route is added when the file has none); algorithm 7 appears in a route only when
/// `dispatcher.hash_pvar` is set; paths are resolved against the file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from, as given.
    pub path: PathBuf,
    /// `[server]`.
    pub server: Server,
    /// `[admin]`.
    pub admin: Admin,
    /// `[dispatcher]`.
    pub dispatcher: Dispatcher,
    /// `[[route]]` in file order (first match wins), or [`Route::default_route`].
    pub routes: Vec<Route>,
    /// `[tm]`: transaction timers and table size (routes with `failover`).
    pub tm: tm::Tm,
    /// `[pike]`: flood control per source (`None`: off).
    pub pike: Option<crate::proxy::pike::PikeConfig>,
}

const TOP_KEYS: &[&str] = &["server", "admin", "dispatcher", "route", "tm", "pike"];

fn no_special(_: &str) -> Option<String> {
    None
}

fn top_special(name: &str) -> Option<String> {
    (name == "routes").then(|| "the section is `[[route]]` (singular)".to_owned())
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                key: String::new(),
                kind: ErrorKind::Io(e.to_string()),
            }])
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text` as if read from `path` (used for errors and to resolve
    /// relative paths; the file itself is not read).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut ctx = Ctx::new(path.display().to_string(), text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            for e in syntax {
                let span = e.span().unwrap_or(0..0);
                ctx.error(&span, "", ErrorKind::Syntax(e.message().to_owned()));
            }
            return Err(ConfigErrors(ctx.errors));
        }
        // Paths in the file are relative to its directory, made absolute now: a bare
        // `event_hook = "hook.sh"` next to a `--config sipdisp.toml` must not be looked up
        // on $PATH, nor depend on the working directory later.
        let parent = path.parent().unwrap_or(Path::new(""));
        let absolute;
        let dir = if parent.is_absolute() {
            parent
        } else {
            absolute = std::env::current_dir()
                .map(|c| c.join(parent))
                .unwrap_or_else(|_| parent.to_path_buf());
            absolute.as_path()
        };
        let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
        let top = ctx
            .table(String::new(), &root, TOP_KEYS, &top_special)
            .expect("the document is a table");

        let server = match top.get("server") {
            Some(v) => ctx
                .table("server".into(), v, server::SERVER_KEYS, &no_special)
                .map(|t| server::read_server(&mut ctx, &t))
                .unwrap_or_default(),
            None => Server::default(),
        };
        let admin = match top.get("admin") {
            Some(v) => ctx
                .table("admin".into(), v, server::ADMIN_KEYS, &no_special)
                .map(|t| server::read_admin(&mut ctx, &t, dir))
                .unwrap_or_default(),
            None => Admin::default(),
        };
        let dispatcher = match top.get("dispatcher") {
            Some(v) => {
                let keys = dispatcher::DISPATCHER_KEYS;
                match ctx.table("dispatcher".into(), v, keys, &dispatcher::kamailio_only) {
                    Some(t) => dispatcher::read_dispatcher(&mut ctx, &t, dir),
                    None => Dispatcher::defaults_in(dir),
                }
            }
            None => Dispatcher::defaults_in(dir),
        };
        // A bad hash_pvar was reported already; do not also blame every alg-7 rule for it.
        let has_template = dispatcher.hash_pvar.is_some()
            || top
                .get("dispatcher")
                .and_then(|v| v.get_ref().get("hash_pvar"))
                .is_some();
        let routes = read_routes(&mut ctx, top.get("route"), has_template);
        let tm = match top.get("tm") {
            Some(v) => ctx
                .table("tm".into(), v, tm::TM_KEYS, &no_special)
                .map(|t| tm::read_tm(&mut ctx, &t))
                .unwrap_or_default(),
            None => tm::Tm::default(),
        };
        let pike = top.get("pike").and_then(|v| {
            ctx.table("pike".into(), v, pike::PIKE_KEYS, &no_special)
                .and_then(|t| pike::read_pike(&mut ctx, &t))
        });

        if ctx.errors.is_empty() {
            Ok(Config {
                path: path.to_owned(),
                server,
                admin,
                dispatcher,
                routes,
                tm,
                pike,
            })
        } else {
            let mut errors = ctx.errors;
            errors.sort_by_key(|e| (e.line, e.col));
            Err(ConfigErrors(errors))
        }
    }
}

use toml::Spanned;

fn read_routes(ctx: &mut Ctx<'_>, v: Option<&read::Value<'_>>, has_template: bool) -> Vec<Route> {
    let Some(v) = v else {
        return vec![Route::default_route()];
    };
    let DeValue::Array(items) = v.get_ref() else {
        let got = "a single table (write `[[route]]`, not `[route]`)";
        ctx.bad(&v.span(), "route", "an array of tables `[[route]]`", got);
        return Vec::new();
    };
    let mut routes: Vec<Route> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("route[{}]", i + 1);
        let Some(t) = ctx.table(path, item, route::ROUTE_KEYS, &no_special) else {
            continue;
        };
        if let Some(r) = route::read_route(ctx, &t, i + 1, has_template) {
            if routes.iter().any(|o| o.name == r.name) {
                let span = t.get("name").map_or(t.span.clone(), |v| v.span());
                ctx.bad(
                    &span,
                    &t.key("name"),
                    "a name not used by another route",
                    &format!("{:?}", r.name),
                );
            }
            routes.push(r);
        }
    }
    if routes.is_empty() && ctx.errors.is_empty() {
        ctx.bad(
            &v.span(),
            "route",
            "at least one [[route]]",
            "an empty array",
        );
    }
    routes
}
