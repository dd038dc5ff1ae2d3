//! PostgreSQL through the `postgres` crate (no TLS: a local or private-network server), and
//! the `LISTEN`/`NOTIFY` channel that tells every instance to reload.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls};

use super::{CONNECT_TIMEOUT, Conn, DbError, Server, Val};

/// One connection.
pub(super) struct Postgres(Client);

fn err(e: postgres::Error) -> DbError {
    // The driver's Display is terse ("db error"); the source says what the server said.
    match std::error::Error::source(&e) {
        Some(s) => DbError(format!("{e}: {s}")),
        None => DbError(e.to_string()),
    }
}

impl Postgres {
    /// Connects (TCP, [`CONNECT_TIMEOUT`], keepalives so a vanished server is noticed).
    pub(super) fn connect(s: &Server) -> Result<Postgres, DbError> {
        let mut cfg = Config::new();
        cfg.host(&s.host)
            .port(s.port.unwrap_or(5432))
            .dbname(&s.database)
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("sipdisp")
            // A server that stops answering must not hold a reload (and the control lock)
            // forever: the server cancels any statement running longer.
            .options("-c statement_timeout=30000");
        if !s.user.is_empty() {
            cfg.user(&s.user);
        }
        if let Some(p) = &s.password {
            cfg.password(p);
        }
        cfg.connect(NoTls).map(Postgres).map_err(err)
    }

    /// `LISTEN channel` on this connection (the name is a checked identifier).
    pub(super) fn listen(&mut self, channel: &str) -> Result<(), DbError> {
        self.0
            .batch_execute(&format!("LISTEN {channel}"))
            .map_err(err)
    }

    /// Waits up to `timeout` for notifications: `Ok(true)` when at least one arrived (all
    /// pending ones are consumed), `Ok(false)` on timeout, an error when the connection is
    /// lost.
    pub(super) fn wait(&mut self, timeout: Duration) -> Result<bool, DbError> {
        let got = {
            let mut n = self.0.notifications();
            let got = n.timeout_iter(timeout).next().map_err(err)?.is_some();
            while n.iter().next().map_err(err)?.is_some() {}
            got
        };
        if self.0.is_closed() {
            return Err(DbError("connection closed".into()));
        }
        Ok(got)
    }
}

impl Conn for Postgres {
    fn query(&mut self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Val>>, DbError> {
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(|s| s as &(dyn ToSql + Sync)).collect();
        let rows = self.0.query(sql, &p).map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut row = Vec::with_capacity(r.len());
            for (i, c) in r.columns().iter().enumerate() {
                let v = match *c.type_() {
                    Type::INT2 => r.try_get::<_, Option<i16>>(i).map(|v| v.map(i64::from)),
                    Type::INT4 => r.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)),
                    Type::INT8 => r.try_get::<_, Option<i64>>(i),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                        row.push(match r.try_get::<_, Option<String>>(i).map_err(err)? {
                            Some(s) => Val::Text(s.into_bytes()),
                            None => Val::Null,
                        });
                        continue;
                    }
                    ref other => {
                        row.push(Val::Other(other.name().to_string()));
                        continue;
                    }
                };
                row.push(v.map_err(err)?.map_or(Val::Null, Val::Int));
            }
            out.push(row);
        }
        Ok(out)
    }

    fn exec(&mut self, sql: &str, params: &[&str]) -> Result<(), DbError> {
        if params.is_empty() {
            return self.0.batch_execute(sql).map_err(err);
        }
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(|s| s as &(dyn ToSql + Sync)).collect();
        self.0.execute(sql, &p).map(drop).map_err(err)
    }
}
