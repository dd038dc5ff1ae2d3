//! MySQL and MariaDB through the `mysql` crate (binary protocol, so integers arrive typed).

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn as MyConn, OptsBuilder, Params, Value};

use super::{CONNECT_TIMEOUT, Conn, DbError, Server, Val, placeholders};

/// One connection.
pub(super) struct Mysql(MyConn);

fn err(e: mysql::Error) -> DbError {
    DbError(e.to_string())
}

fn params(p: &[&str]) -> Params {
    if p.is_empty() {
        Params::Empty
    } else {
        Params::Positional(p.iter().map(|s| Value::from(*s)).collect())
    }
}

impl Mysql {
    /// Connects over TCP ([`CONNECT_TIMEOUT`]; reads and writes time out after 30 s).
    pub(super) fn connect(s: &Server) -> Result<Mysql, DbError> {
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(s.host.clone()))
            .tcp_port(s.port.unwrap_or(3306))
            .user((!s.user.is_empty()).then(|| s.user.clone()))
            .pass(s.password.clone())
            .db_name(Some(s.database.clone()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .read_timeout(Some(Duration::from_secs(30)))
            .write_timeout(Some(Duration::from_secs(30)));
        MyConn::new(opts).map(Mysql).map_err(err)
    }
}

impl Conn for Mysql {
    fn query(&mut self, sql: &str, p: &[&str]) -> Result<Vec<Vec<Val>>, DbError> {
        let rows: Vec<mysql::Row> = self
            .0
            .exec(placeholders(sql, false), params(p))
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match r.as_ref(i) {
                        None | Some(Value::NULL) => Val::Null,
                        Some(Value::Int(v)) => Val::Int(*v),
                        Some(Value::UInt(v)) => {
                            i64::try_from(*v).map_or(Val::Other("huge unsigned".into()), Val::Int)
                        }
                        Some(Value::Bytes(b)) => Val::Text(b.clone()),
                        Some(Value::Float(_) | Value::Double(_)) => Val::Other("real".into()),
                        Some(Value::Date(..) | Value::Time(..)) => Val::Other("date/time".into()),
                    })
                    .collect()
            })
            .collect())
    }

    fn exec(&mut self, sql: &str, p: &[&str]) -> Result<(), DbError> {
        if p.is_empty() {
            return self.0.query_drop(sql).map_err(err);
        }
        self.0
            .exec_drop(placeholders(sql, false), params(p))
            .map_err(err)
    }
}
