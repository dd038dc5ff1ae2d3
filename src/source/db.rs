#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code, unreachable_code, unused_variables)
)]
//! Kamailio's `dispatcher` table as a destination source (reference §2.7, issue 16).
//!
//! What is read is what Kamailio 5.6.3 reads: the table version from Kamailio's `version`
//! table (1–4, anything else refuses the source, "use kamdbctl reinit"), then, without
//! ordering, `setid, destination` plus `flags` (version ≥ 2), `priority` (≥ 3), `attrs` and
//! the `ds_db_extra_attrs` columns appended to it as `name=value;` (4). sipdisp also reads the
//! row's `id` (`id_col`) so that every bad row is reported by id, as a list line is by number.
//! Each row then goes through the list file's rules (`dispatch::parse_rows`).
//!
//! A connection is opened per operation (load, insert, delete) and closed after it, as
//! Kamailio does for reloads; connecting gives up after [`CONNECT_TIMEOUT`], and a whole
//! operation after `db_timeout` ([`DbSource::timeout`]): it runs on a thread of its own, so a
//! server that accepts and then never answers (stopped, wedged) cannot hold a reload — and
//! the control lock behind it — forever. Drivers, each
//! behind its Cargo feature: `rusqlite` (SQLite, bundled), `postgres` (PostgreSQL, also the
//! `LISTEN`/`NOTIFY` reload channel), `mysql` (MySQL, MariaDB). Identifiers (table and column
//! names) are checked at configuration time to be plain SQL identifiers; values go as
//! parameters or, for integers sipdisp produced itself, as literals.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::SourceError;
use crate::dispatch::list::normalize_uri;
use crate::dispatch::{
    DispatchParams, ListErrorKind, LoadHooks, LoadedList, Row, RowColumns, parse_rows,
};

/// How long connecting to a database server may take before the operation fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `db_timeout`'s default: longer than the drivers' own limits (PostgreSQL's
/// `statement_timeout` and MySQL's read and write timeouts, 30 s), so that their more precise
/// errors come first from a server that answers at all.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(35);

/// Database operations whose thread still runs, abandoned ones included: at most
/// [`MAX_RUNNING`], then operations are refused at once until one of them ends.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// See [`RUNNING`].
const MAX_RUNNING: usize = 2;

/// Longest attribute string built with `ds_db_extra_attrs` (Kamailio's buffer).
const ATTRS_MAX: usize = 1023;

/// A database error, with what sipdisp was doing and the driver's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DbError(pub String);

/// Network address of a database server, from a Kamailio `db_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// User name (may be empty).
    pub user: String,
    /// Password, if the URL has one.
    pub password: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port, if the URL has one (else the driver's default).
    pub port: Option<u16>,
    /// Database name.
    pub database: String,
}

/// A parsed `db_url`, in Kamailio's forms: `sqlite:///abs/path.db` (Kamailio reads
/// `abs/path.db` from its working directory, `/`; `sqlite://file.db` is relative to the
/// configuration file), `postgres://user:password@host[:port]/database`,
/// `mysql://user:password@host[:port]/database` (MariaDB too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres(Server),
    /// A MySQL or MariaDB server.
    Mysql(Server),
}

impl DbUrl {
    /// Parses `text`; a relative SQLite path is resolved against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<DbUrl, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("a URL such as \"sqlite:///var/lib/kamailio/kamailio.db\", \
                        \"postgres://user:password@host/database\" or \
                        \"mysql://user:password@host/database\""
                .into());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" if rest.is_empty() => Err("an SQLite database file after sqlite://".into()),
            // Kamailio takes the part after the (empty) host as the file, relative to its
            // working directory, "/" for a daemon: sqlite:///var/lib/k.db and
            // sqlite:////var/lib/k.db both name /var/lib/k.db. Without a host part the path
            // is relative to the configuration file (sipdisp).
            "sqlite" => Ok(DbUrl::Sqlite(match rest.strip_prefix('/') {
                Some(p) => Path::new("/").join(p),
                None => dir.join(rest),
            })),
            "postgres" | "postgresql" => Ok(DbUrl::Postgres(server(rest)?)),
            "mysql" => Ok(DbUrl::Mysql(server(rest)?)),
            other => Err(format!(
                "a database of sqlite, postgres or mysql (Kamailio's db_sqlite, db_postgres, \
                 db_mysql), not {other:?}"
            )),
        }
    }

    /// The URL without its password, for messages and logs.
    pub fn redacted(&self) -> String {
        let net = |scheme: &str, s: &Server| {
            let port = s.port.map(|p| format!(":{p}")).unwrap_or_default();
            let user = if s.user.is_empty() {
                String::new()
            } else {
                format!("{}@", s.user)
            };
            format!("{scheme}://{user}{}{port}/{}", s.host, s.database)
        };
        match self {
            DbUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DbUrl::Postgres(s) => net("postgres", s),
            DbUrl::Mysql(s) => net("mysql", s),
        }
    }

    /// The Cargo feature this URL's driver needs, and whether this binary has it.
    pub fn driver(&self) -> (&'static str, bool) {
        match self {
            DbUrl::Sqlite(_) => ("sqlite", cfg!(feature = "sqlite")),
            DbUrl::Postgres(_) => ("postgres", cfg!(feature = "postgres")),
            DbUrl::Mysql(_) => ("mysql", cfg!(feature = "mysql")),
        }
    }
}

fn server(rest: &str) -> Result<Server, String> {
    let (auth, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (hostport, database) = hostpart
        .split_once('/')
        .ok_or_else(|| "a database name after the host (…@host/database)".to_string())?;
    if database.is_empty() || database.contains('/') {
        return Err(format!(
            "one database name after the host, got {database:?}"
        ));
    }
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (u.to_string(), Some(p.to_string())),
        None => (auth.to_string(), None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("a port number after the host, got {p:?}"))?;
            (h, Some(port))
        }
        _ => (hostport, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("a host name or address after '@'".into());
    }
    Ok(Server {
        user,
        password,
        host: host.to_string(),
        port,
        database: database.to_string(),
    })
}

/// Column names (Kamailio's `*_col` parameters; `id_col` is sipdisp's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// `id_col` (sipdisp), default `id`: names bad rows in errors; used by `remove`.
    pub id: String,
    /// `setid_col`, default `setid`.
    pub setid: String,
    /// `destination_col`, default `destination`.
    pub destination: String,
    /// `flags_col`, default `flags`.
    pub flags: String,
    /// `priority_col`, default `priority`.
    pub priority: String,
    /// `attrs_col`, default `attrs`.
    pub attrs: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            id: "id".into(),
            setid: "setid".into(),
            destination: "destination".into(),
            flags: "flags".into(),
            priority: "priority".into(),
            attrs: "attrs".into(),
        }
    }
}

/// True for names sipdisp puts into SQL unquoted: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes.
pub fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && s.len() <= 63
}

/// A database source: where, which table, which columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSource {
    /// `db_url`.
    pub url: DbUrl,
    /// `table_name`, default `dispatcher`.
    pub table: String,
    /// The `*_col` parameters.
    pub columns: Columns,
    /// `ds_db_extra_attrs`: (attribute name, column), appended to the attributes in order.
    pub extra_attrs: Vec<(String, String)>,
    /// `db_notify_channel` (sipdisp, PostgreSQL only): the channel to `LISTEN` on.
    pub notify_channel: Option<String>,
    /// `db_timeout` (sipdisp): how long one operation (connect, queries) may take.
    pub timeout: Duration,
}

/// A destination to insert (`dispatcher.add` with `persist_rpc_changes`).
#[derive(Debug, Clone)]
pub struct NewRow<'a> {
    /// Set id.
    pub set: u32,
    /// URI as given (already checked).
    pub uri: &'a str,
    /// Flags.
    pub flags: u32,
    /// Priority.
    pub priority: i32,
    /// Attribute string (may be empty).
    pub attrs: &'a str,
}

impl NewRow<'_> {
    /// The destination as a list-file line.
    pub fn list_line(&self) -> String {
        let line = format!(
            "{} {} {} {} {}",
            self.set, self.uri, self.flags, self.priority, self.attrs
        );
        line.trim_end().to_string()
    }
}

/// A value as a driver returned it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(Vec<u8>),
    /// Any other type (its name).
    Other(String),
}

/// What every driver offers: a query returning rows of values, and a statement. `$n` in SQL
/// is the n-th (1-based) text parameter; drivers rewrite it to their own placeholder.
pub(crate) trait Conn {
    fn query(&mut self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Val>>, DbError>;
    fn exec(&mut self, sql: &str, params: &[&str]) -> Result<(), DbError>;
}

/// Rewrites `$1`, `$2`, … into `?1`, `?2` (SQLite) or `?` (MySQL, which binds in order; every
/// statement here uses its parameters in order).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn placeholders(sql: &str, numbered: bool) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut it = sql.chars().peekable();
    while let Some(c) = it.next() {
        if c == '$' && it.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
            while let Some(d) = it.next_if(char::is_ascii_digit) {
                if numbered {
                    out.push(d);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl DbSource {
    /// Names the source in messages: `table dispatcher (postgres://user@host/db)`.
    pub fn name(&self) -> String {
        format!("table {} ({})", self.table, self.url.redacted())
    }

    fn connect(&self, write: bool) -> Result<Box<dyn Conn>, DbError> {
        let fail = |what: &str| {
            DbError(format!(
                "{}: this sipdisp was built without the {what} driver (Cargo feature `{what}`)",
                self.url.redacted()
            ))
        };
        let _ = write;
        let conn: Result<Box<dyn Conn>, DbError> = match &self.url {
            #[cfg(feature = "sqlite")]
            DbUrl::Sqlite(path) => {
                sqlite::Sqlite::open(path, write).map(|c| Box::new(c) as Box<dyn Conn>)
            }
            #[cfg(feature = "postgres")]
            DbUrl::Postgres(s) => {
                postgres::Postgres::connect(s).map(|c| Box::new(c) as Box<dyn Conn>)
            }
            #[cfg(feature = "mysql")]
            DbUrl::Mysql(s) => mysql::Mysql::connect(s).map(|c| Box::new(c) as Box<dyn Conn>),
            #[allow(unreachable_patterns)]
            other => return Err(fail(other.driver().0)),
        };
        conn.map_err(|e| DbError(format!("{}: cannot connect: {e}", self.url.redacted())))
    }

    /// The table's version from Kamailio's `version` table: 1–4, else an error that says what
    /// Kamailio would say.
    fn version(&self, c: &mut dyn Conn) -> Result<u32, DbError> {
        let rows = c
            .query(
                "SELECT table_version FROM version WHERE table_name = $1",
                &[&self.table],
            )
            .map_err(|e| {
                DbError(format!(
                    "{}: cannot read the table version from table `version`: {e}",
                    self.name()
                ))
            })?;
        let v = match rows.as_slice() {
            [] => 0,
            [row] => match row.first() {
                Some(Val::Int(v)) => *v,
                _ => -1,
            },
            _ => -1,
        };
        if (1..=4).contains(&v) {
            Ok(v as u32)
        } else {
            Err(DbError(format!(
                "{}: table version {}: expected 1, 2, 3 or 4 in table `version` \
                 (row table_name = '{}'; Kamailio: \"use kamdbctl reinit\")",
                self.name(),
                if rows.len() > 1 {
                    format!("has {} rows", rows.len())
                } else if rows.is_empty() {
                    "missing".to_string()
                } else {
                    v.to_string()
                },
                self.table
            )))
        }
    }

    /// Reads every row of the table as Kamailio would for `version`, plus the id.
    fn rows(&self, c: &mut dyn Conn, version: u32) -> Result<Vec<Row>, DbError> {
        let cols = &self.columns;
        let mut names = vec![&cols.id, &cols.setid, &cols.destination];
        if version >= 2 {
            names.push(&cols.flags);
        }
        if version >= 3 {
            names.push(&cols.priority);
        }
        if version >= 4 {
            names.push(&cols.attrs);
            names.extend(self.extra_attrs.iter().map(|(_, c)| c));
        }
        let list: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let sql = format!("SELECT {} FROM {}", list.join(", "), self.table);
        let raw = c.query(&sql, &[]).map_err(|e| {
            DbError(format!(
                "{}: cannot read the destinations: {e}",
                self.name()
            ))
        })?;
        Ok(raw.iter().map(|v| self.row(v, version)).collect())
    }

    fn row(&self, v: &[Val], version: u32) -> Row {
        let cols = &self.columns;
        let mut r = Row::default();
        let int = |i: usize, name: &str, r: &mut Row| -> Option<i64> {
            match v.get(i) {
                None | Some(Val::Null) => None,
                Some(Val::Int(n)) => Some(*n),
                Some(other) => {
                    r.problems.push(column(name, "an integer", other));
                    Some(0)
                }
            }
        };
        r.id = int(0, &cols.id, &mut r).unwrap_or(0);
        r.set = int(1, &cols.setid, &mut r);
        r.uri = text(v.get(2), &cols.destination, &mut r.problems);
        r.flags = if version >= 2 {
            int(3, &cols.flags, &mut r)
        } else {
            Some(0)
        };
        r.priority = if version >= 3 {
            int(4, &cols.priority, &mut r)
        } else {
            Some(0)
        };
        if version >= 4 {
            r.attrs = text(v.get(5), &cols.attrs, &mut r.problems);
            if !self.extra_attrs.is_empty() {
                let mut a = r.attrs.take().unwrap_or_default();
                if !a.is_empty() && !a.ends_with(b";") {
                    a.push(b';');
                }
                for (k, (name, col)) in self.extra_attrs.iter().enumerate() {
                    match text(v.get(6 + k), col, &mut r.problems) {
                        Some(val) if !val.is_empty() => {
                            a.extend_from_slice(name.as_bytes());
                            a.push(b'=');
                            a.extend_from_slice(&val);
                            a.push(b';');
                        }
                        _ => {}
                    }
                }
                if a.len() > ATTRS_MAX {
                    r.problems.push(ListErrorKind::Column {
                        column: cols.attrs.clone(),
                        expected: "at most 1023 bytes of attributes with ds_db_extra_attrs",
                        got: format!("{} bytes", a.len()),
                    });
                }
                r.attrs = Some(a);
            }
        }
        r
    }

    /// Runs `op` on a thread of its own and waits for it at most [`DbSource::timeout`]; past
    /// it the operation is abandoned (its thread ends whenever the server lets it) and an
    /// error says so. While [`MAX_RUNNING`] operations' threads still run (abandoned ones: the
    /// control lock lets one operation at a time wait), another is refused at once rather
    /// than start a thread more.
    fn bounded<T: Send + 'static>(
        &self,
        what: &str,
        op: impl FnOnce(&DbSource) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let running = RUNNING.fetch_add(1, Ordering::Relaxed);
        if running >= MAX_RUNNING {
            RUNNING.fetch_sub(1, Ordering::Relaxed);
            return Err(DbError(format!(
                "{}: {running} earlier operations still wait for the server (no answer \
                 within db_timeout); not starting another",
                self.url.redacted()
            )));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let source = self.clone();
        let spawned = std::thread::Builder::new()
            .name("sipdisp-db".into())
            .spawn(move || {
                let r = op(&source);
                // Counted out before the result is handed over: whoever reads it sees the
                // operation ended. Nobody may be waiting any more (then the send fails).
                RUNNING.fetch_sub(1, Ordering::Relaxed);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            RUNNING.fetch_sub(1, Ordering::Relaxed);
            return Err(DbError(format!("cannot start a database thread: {e}")));
        }
        rx.recv_timeout(self.timeout).unwrap_or_else(|_| {
            Err(DbError(format!(
                "{}: no answer to {what} within db_timeout ({} s); gave up",
                self.name(),
                self.timeout.as_secs_f64()
            )))
        })
    }

    /// Reads and checks every destination (reference §2.7). Blocking, at most `db_timeout`.
    pub fn load(
        &self,
        params: &DispatchParams,
        hooks: &LoadHooks<'_>,
    ) -> Result<LoadedList, SourceError> {
        let rows = self
            .bounded("reading the destinations", |s| {
                let mut c = s.connect(false)?;
                let version = s.version(&mut *c)?;
                s.rows(&mut *c, version)
            })
            .map_err(|e| SourceError::Unavailable(e.0))?;
        let cols = RowColumns {
            set: &self.columns.setid,
            uri: &self.columns.destination,
        };
        parse_rows(&self.name(), cols, &rows, params, hooks).map_err(SourceError::Invalid)
    }

    /// Inserts one destination with the columns the table version has, in a transaction (at
    /// most `db_timeout`).
    pub fn insert(&self, row: &NewRow<'_>) -> Result<(), DbError> {
        let (set, uri, flags, priority, attrs) = (
            row.set,
            row.uri.to_string(),
            row.flags,
            row.priority,
            row.attrs.to_string(),
        );
        self.bounded("inserting the destination", move |s| {
            s.insert_now(&NewRow {
                set,
                uri: &uri,
                flags,
                priority,
                attrs: &attrs,
            })
        })
    }

    fn insert_now(&self, row: &NewRow<'_>) -> Result<(), DbError> {
        let mut c = self.connect(true)?;
        let version = self.version(&mut *c)?;
        let cols = &self.columns;
        let mut names = vec![cols.setid.as_str(), cols.destination.as_str()];
        let mut values = vec![row.set.to_string(), "$1".to_string()];
        let mut params = vec![row.uri];
        if version >= 2 {
            names.push(&cols.flags);
            values.push(row.flags.to_string());
        }
        if version >= 3 {
            names.push(&cols.priority);
            values.push(row.priority.to_string());
        }
        if version >= 4 {
            names.push(&cols.attrs);
            values.push("$2".to_string());
            params.push(row.attrs);
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table,
            names.join(", "),
            values.join(", ")
        );
        transaction(&mut *c, |c| c.exec(&sql, &params)).map_err(|e| {
            DbError(format!(
                "{}: cannot insert the destination: {e}",
                self.name()
            ))
        })
    }

    /// Deletes, in one transaction, every row of `set` whose destination normalises (like a
    /// list entry: the `sip:` retry) to exactly `uri` (at most `db_timeout`).
    pub fn delete(&self, set: u32, uri: &[u8]) -> Result<(), DbError> {
        let uri = uri.to_vec();
        self.bounded("deleting the destination", move |s| s.delete_now(set, &uri))
    }

    fn delete_now(&self, set: u32, uri: &[u8]) -> Result<(), DbError> {
        let mut c = self.connect(true)?;
        let cols = &self.columns;
        let select = format!(
            "SELECT {}, {} FROM {} WHERE {} = {set}",
            cols.id, cols.destination, self.table, cols.setid
        );
        transaction(&mut *c, |c| {
            let ids: Vec<i64> = c
                .query(&select, &[])?
                .iter()
                .filter_map(|r| match (r.first(), r.get(1)) {
                    (Some(Val::Int(id)), Some(Val::Text(d)))
                        if normalize_uri(d).as_deref() == Some(uri) =>
                    {
                        Some(*id)
                    }
                    _ => None,
                })
                .collect();
            for id in ids {
                c.exec(
                    &format!("DELETE FROM {} WHERE {} = {id}", self.table, cols.id),
                    &[],
                )?;
            }
            Ok(())
        })
        .map_err(|e| {
            DbError(format!(
                "{}: cannot delete the destination: {e}",
                self.name()
            ))
        })
    }
}

/// A PostgreSQL connection listening on `db_notify_channel`.
#[cfg(feature = "postgres")]
pub struct Notifications(postgres::Postgres);

#[cfg(feature = "postgres")]
impl Notifications {
    /// Connects to the source's server and `LISTEN`s on its channel; `None` when the source
    /// has no channel or is not PostgreSQL.
    pub fn listen(source: &DbSource) -> Result<Option<Notifications>, DbError> {
        let (DbUrl::Postgres(server), Some(channel)) = (&source.url, &source.notify_channel) else {
            return Ok(None);
        };
        let mut c = postgres::Postgres::connect(server)
            .map_err(|e| DbError(format!("{}: cannot connect: {e}", source.url.redacted())))?;
        c.listen(channel)
            .map_err(|e| DbError(format!("LISTEN {channel}: {e}")))?;
        Ok(Some(Notifications(c)))
    }

    /// Waits up to `timeout`: `Ok(true)` when notifications arrived (all pending ones are
    /// consumed), `Ok(false)` on timeout, an error when the connection is lost.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, DbError> {
        self.0.wait(timeout)
    }
}

fn column(name: &str, expected: &'static str, got: &Val) -> ListErrorKind {
    ListErrorKind::Column {
        column: name.to_string(),
        expected,
        got: match got {
            Val::Null => "NULL".into(),
            Val::Int(n) => format!("the integer {n}"),
            Val::Text(t) => format!("the text {:?}", String::from_utf8_lossy(t)),
            Val::Other(t) => format!("a value of type {t}"),
        },
    }
}

fn text(v: Option<&Val>, name: &str, problems: &mut Vec<ListErrorKind>) -> Option<Vec<u8>> {
    match v {
        None | Some(Val::Null) => None,
        Some(Val::Text(t)) => Some(t.clone()),
        Some(other) => {
            problems.push(column(name, "text", other));
            None
        }
    }
}

/// Runs `body` between `BEGIN` and `COMMIT`, rolling back when it fails.
fn transaction(
    c: &mut dyn Conn,
    body: impl FnOnce(&mut dyn Conn) -> Result<(), DbError>,
) -> Result<(), DbError> {
    c.exec("BEGIN", &[])?;
    match body(c) {
        Ok(()) => c.exec("COMMIT", &[]),
        Err(e) => {
            let _ = c.exec("ROLLBACK", &[]);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamailio_url_forms() {
        let d = Path::new("/etc/sipdisp");
        assert_eq!(
            DbUrl::parse("sqlite:///var/lib/k.db", d),
            Ok(DbUrl::Sqlite("/var/lib/k.db".into()))
        );
        assert_eq!(
            DbUrl::parse("sqlite:////var/lib/k.db", d),
            Ok(DbUrl::Sqlite("/var/lib/k.db".into()))
        );
        assert_eq!(
            DbUrl::parse("sqlite://k.db", d),
            Ok(DbUrl::Sqlite("/etc/sipdisp/k.db".into()))
        );
        let pg = DbUrl::parse("postgres://kamailio:s3cr:et@db.example:5433/kam", d).unwrap();
        assert_eq!(
            pg,
            DbUrl::Postgres(Server {
                user: "kamailio".into(),
                password: Some("s3cr:et".into()),
                host: "db.example".into(),
                port: Some(5433),
                database: "kam".into(),
            })
        );
        assert_eq!(pg.redacted(), "postgres://kamailio@db.example:5433/kam");
        let my = DbUrl::parse("mysql://u:p@[::1]:3306/kamailio", d).unwrap();
        assert!(matches!(&my, DbUrl::Mysql(s) if s.host == "::1" && s.port == Some(3306)));
        assert!(matches!(
            DbUrl::parse("mysql://u@localhost/k", d),
            Ok(DbUrl::Mysql(Server {
                port: None,
                password: None,
                ..
            }))
        ));
        for bad in [
            "k.db",
            "oracle://u@h/d",
            "postgres://u@h",
            "postgres://u@h/",
            "mysql://u@h:x/d",
            "mysql://u@/d",
            "sqlite://",
        ] {
            assert!(DbUrl::parse(bad, d).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_plain() {
        assert!(is_identifier("dispatcher"));
        assert!(is_identifier("_x9"));
        for bad in ["", "9a", "a b", "a;drop", "a\"", &"x".repeat(64)] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[cfg(any(feature = "sqlite", feature = "mysql"))]
    #[test]
    fn placeholders_per_driver() {
        let sql = "UPDATE t SET a = $1 WHERE b = $2 AND c = '$'";
        assert_eq!(
            placeholders(sql, true),
            "UPDATE t SET a = ?1 WHERE b = ?2 AND c = '$'"
        );
        assert_eq!(
            placeholders(sql, false),
            "UPDATE t SET a = ? WHERE b = ? AND c = '$'"
        );
    }

    fn source(extra: &[(&str, &str)]) -> DbSource {
        DbSource {
            url: DbUrl::Sqlite("/x".into()),
            table: "dispatcher".into(),
            columns: Columns::default(),
            extra_attrs: extra
                .iter()
                .map(|(a, c)| (a.to_string(), c.to_string()))
                .collect(),
            notify_channel: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A server that accepts and then never answers (stopped, wedged) costs a reload
    /// `db_timeout`, not forever; abandoned operations are bounded.
    #[cfg(feature = "postgres")]
    #[test]
    fn a_server_that_never_answers_costs_db_timeout_not_forever() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let held = std::thread::spawn(move || {
            // Accept and hold the connections without a byte of answer.
            let mut conns = Vec::new();
            for c in silent.incoming().take(MAX_RUNNING + 1) {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_secs(3));
        });
        let src = DbSource {
            url: DbUrl::parse(
                &format!("postgres://u:p@127.0.0.1:{port}/kamailio"),
                Path::new("/"),
            )
            .unwrap(),
            timeout: Duration::from_millis(300),
            ..source(&[])
        };
        let params = DispatchParams::default();
        for _ in 0..MAX_RUNNING {
            let start = std::time::Instant::now();
            let e = src.load(&params, &LoadHooks::default()).unwrap_err();
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{:?}",
                start.elapsed()
            );
            let SourceError::Unavailable(why) = e else {
                panic!("{e:?}")
            };
            assert!(
                why.contains("no answer to reading the destinations within db_timeout"),
                "{why}"
            );
        }
        // Both threads still wait on the silent server: the next operation is refused at once.
        let start = std::time::Instant::now();
        let e = src.delete(1, b"sip:127.0.0.1:5070").unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(200));
        assert!(e.0.contains("earlier operations still wait"), "{e}");
        drop(held);
    }

    #[test]
    fn rows_by_table_version_and_extra_attrs() {
        let t = |s: &str| Val::Text(s.as_bytes().to_vec());
        let s = source(&[("socket", "sock"), ("pref", "prefix")]);
        let v = [
            Val::Int(7),
            Val::Int(1),
            t("sip:a"),
            Val::Int(2),
            Val::Int(-3),
            t("duid=x"),
            t("udp:127.0.0.1:5060"),
            Val::Null,
        ];
        let r = s.row(&v, 4);
        assert_eq!(
            (r.id, r.set, r.flags, r.priority),
            (7, Some(1), Some(2), Some(-3))
        );
        assert_eq!(
            r.attrs.as_deref(),
            Some(&b"duid=x;socket=udp:127.0.0.1:5060;"[..])
        );
        assert!(r.problems.is_empty());
        // version 1: only set and destination; flags and priority are 0, no attrs
        let r = s.row(&v[..3], 1);
        assert_eq!((r.flags, r.priority, r.attrs), (Some(0), Some(0), None));
        // wrong types are problems of the row
        let r = source(&[]).row(
            &[Val::Int(8), t("one"), t("sip:a"), Val::Other("real".into())],
            2,
        );
        let msgs: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "setid: expected an integer, got the text \"one\"",
                "flags: expected an integer, got a value of type real"
            ]
        );
    }
}
