//! SQLite through `rusqlite` (SQLite bundled into the binary).

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params_from_iter};

use super::{CONNECT_TIMEOUT, Conn, DbError, Val, placeholders};

/// One open database file.
pub(super) struct Sqlite(Connection);

fn err(e: rusqlite::Error) -> DbError {
    DbError(e.to_string())
}

impl Sqlite {
    /// Opens an existing database file (never creates one: a wrong path is an error), read-only
    /// unless `write`; waits up to [`CONNECT_TIMEOUT`] for another writer's lock.
    pub(super) fn open(path: &Path, write: bool) -> Result<Sqlite, DbError> {
        let mode = if write {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let c = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| DbError(format!("{}: {e}", path.display())))?;
        c.busy_timeout(CONNECT_TIMEOUT).map_err(err)?;
        Ok(Sqlite(c))
    }
}

impl Conn for Sqlite {
    fn query(&mut self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Val>>, DbError> {
        let mut st = self.0.prepare(&placeholders(sql, true)).map_err(err)?;
        let n = st.column_count();
        let mut rows = st.query(params_from_iter(params.iter())).map_err(err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(err)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Real(_) => Val::Other("real".into()),
                    ValueRef::Text(t) => Val::Text(t.to_vec()),
                    ValueRef::Blob(_) => Val::Other("blob".into()),
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    fn exec(&mut self, sql: &str, params: &[&str]) -> Result<(), DbError> {
        self.0
            .execute(&placeholders(sql, true), params_from_iter(params.iter()))
            .map(drop)
            .map_err(err)
    }
}
