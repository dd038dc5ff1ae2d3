//! Destination sets from a database (issue 16), against real servers the tests start
//! themselves: an SQLite file, PostgreSQL and MariaDB from Debian's packages in temporary data
//! directories on loopback (run as their system users when the tests run as root), tables
//! created with Kamailio's own schema files (`/usr/share/kamailio/{db_sqlite,postgres,mysql}`,
//! the `version` row `kamdbctl` writes). `dispatcher.list` is compared with Kamailio 5.6.3
//! loading the same table through `db_sqlite`, `db_postgres` and `db_mysql`, before and after
//! a row changes and both reload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::control_e2e::{Kamailio, rpc, tcp_port};
use super::support::{Sipdisp, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_sipdisp");
const SCHEMA: &str = "/usr/share/kamailio";

/// Kamailio's schema for `db` (`standard-create.sql` for the `version` table, then
/// `dispatcher-create.sql`), as SQL statements.
fn kamailio_schema(db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["standard-create.sql", "dispatcher-create.sql"] {
        let p = Path::new(SCHEMA).join(db).join(f);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the Kamailio database modules are installed by the test command in \
                 README.md: bash scripts/test.sh)",
                p.display()
            )
        });
        out.extend(
            text.split(";\n")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    out
}

/// The rows every comparison starts from: several sets (inserted so the set tree is not
/// trivially shaped), priorities, flags, attributes, and a destination without `sip:`.
const ROWS: &[(u32, &str, u32, i32, &str)] = &[
    (1, "sip:127.0.0.1:5071", 0, 0, "duid=a;weight=30;maxload=5"),
    (1, "sip:127.0.0.1:5072", 8, 1, ""),
    (3, "10.0.0.9:5070", 0, 2, "obproxy=sip:192.0.2.1;foo=bar"),
    (2, "sip:127.0.0.1:5074", 1, 0, ""),
    (1, "sip:127.0.0.1:5073;transport=tcp", 0, 0, ""),
    (2, "sip:127.0.0.1:5075", 4, -5, "duid=z;maxload=3"),
];

fn insert_sql(set: u32, uri: &str, flags: u32, prio: i32, attrs: &str) -> String {
    format!(
        "INSERT INTO dispatcher (setid, destination, flags, priority, attrs, description) \
         VALUES ({set}, '{uri}', {flags}, {prio}, '{attrs}', 'test')"
    )
}

/// sipdisp with the admin listener on a free port and `[dispatcher]` lines `dispatcher`.
fn sipdisp(dispatcher: &str) -> (Sipdisp, SocketAddr) {
    let port = tcp_port();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [dispatcher]\n{dispatcher}\nreload_delta = 0\n\n[[route]]\nselect = \"1=4\"\n"
    );
    let s = Sipdisp::start(&cfg, "");
    (s, format!("127.0.0.1:{port}").parse().unwrap())
}

/// `dispatcher.list` from sipdisp and Kamailio must be equal.
fn same_list(what: &str, a: SocketAddr, k: &Kamailio) {
    let (sa, va) = rpc(a, "dispatcher.list", json!([]));
    let (sb, vb) = rpc(k.http, "dispatcher.list", json!([]));
    assert_eq!(
        (sa, &va),
        (sb, &vb),
        "{what}: sipdisp vs Kamailio\n{}",
        k.log()
    );
}

/// (set, URI, priority) per destination in listing order.
fn listing(addr: SocketAddr) -> Vec<(u64, String, i64)> {
    super::control_e2e::list_dests(addr)
        .into_iter()
        .map(|(set, d)| {
            (
                set,
                d["URI"].as_str().unwrap().to_owned(),
                d["PRIORITY"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn check(config: &str) -> (bool, String) {
    let dir = TempDir::new("dbcheck");
    let cfg = dir.write("sipdisp.toml", config);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---- SQLite ---------------------------------------------------------------------------------

fn sqlite_db(dir: &TempDir) -> (PathBuf, rusqlite::Connection) {
    let path = dir.path().join("kamailio.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    for s in kamailio_schema("db_sqlite") {
        c.execute_batch(&s).unwrap();
    }
    for &(set, uri, flags, prio, attrs) in ROWS {
        c.execute_batch(&insert_sql(set, uri, flags, prio, attrs))
            .unwrap();
    }
    (path, c)
}

/// The same SQLite table through sipdisp and Kamailio's `db_sqlite`: identical
/// `dispatcher.list`, also after rows change and both reload; `dispatcher.add`/`remove` with
/// `persist_rpc_changes` write the table.
#[test]
fn sqlite_table_lists_like_kamailio_and_persists_rpc_changes() {
    let dir = TempDir::new("sqlite");
    let (path, c) = sqlite_db(&dir);
    // Kamailio opens the part after "sqlite:///" from its working directory: with four
    // slashes the path is absolute for both.
    let url = format!("sqlite:///{}", path.display());
    let (s, admin) = sipdisp(&format!("db_url = \"{url}\"\npersist_rpc_changes = true"));
    let k = Kamailio::start_with(&format!(
        "loadmodule \"db_sqlite.so\"\nmodparam(\"dispatcher\", \"db_url\", \"{url}\")"
    ));
    same_list("initial", admin, &k);
    c.execute_batch(
        "UPDATE dispatcher SET priority = 9, destination = 'sip:127.0.0.1:5099' WHERE id = 2;
         DELETE FROM dispatcher WHERE id = 4;",
    )
    .unwrap();
    c.execute_batch(&insert_sql(4, "sip:127.0.0.1:5080", 0, 0, "duid=n"))
        .unwrap();
    for target in [admin, k.http] {
        let (st, v) = rpc(target, "dispatcher.reload", json!([]));
        assert_eq!(st, 200, "{v}");
    }
    same_list("after a change and reload", admin, &k);
    assert!(listing(admin).contains(&(1, "sip:127.0.0.1:5099".into(), 9)));

    // add / remove with persist_rpc_changes write the table (in a transaction)
    let (st, v) = rpc(
        admin,
        "dispatcher.add",
        json!([5, "127.0.0.1:5090", 0, 3, "duid=p"]),
    );
    assert_eq!(st, 200, "{v}");
    let row: (i64, String, i64, i64, String) = c
        .query_row(
            "SELECT setid, destination, flags, priority, attrs FROM dispatcher WHERE setid = 5",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(row, (5, "127.0.0.1:5090".into(), 0, 3, "duid=p".into()));
    // the stored address normalises to the one removed (the sip: rule)
    let (st, v) = rpc(admin, "dispatcher.remove", json!([5, "sip:127.0.0.1:5090"]));
    assert_eq!(st, 200, "{v}");
    let n: i64 = c
        .query_row("SELECT count(*) FROM dispatcher WHERE setid = 5", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 0);
    // a reload reads what persisted: set 5 gone, the rest as before
    let before = listing(admin);
    let (st, _) = rpc(admin, "dispatcher.reload", json!([]));
    assert_eq!(st, 200);
    let mut a = before.clone();
    let mut b = listing(admin);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    drop(s);
}

/// Bad rows are handled like bad list lines, named by row id: skipped with a warning (bad
/// URI, NULL destination; NULL set id reads as set 0, as Kamailio), or failing the whole load
/// (flags out of range, text in an integer column); a table version Kamailio would refuse, a
/// missing table and a missing file are refused by `check` and by `run`; a reload from a broken
/// table keeps the running sets.
#[test]
fn sqlite_bad_rows_like_bad_list_lines() {
    let dir = TempDir::new("sqlite-bad");
    let path = dir.path().join("k.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(&kamailio_schema("db_sqlite")[0]).unwrap(); // the version table
    // Kamailio's columns without its NOT NULL constraints, so NULLs can be stored.
    c.execute_batch(
        "CREATE TABLE loose (id INTEGER PRIMARY KEY NOT NULL, setid INTEGER, \
         destination VARCHAR(192), flags INTEGER, priority INTEGER, attrs VARCHAR(128), \
         description VARCHAR(64));
         INSERT INTO version (table_name, table_version) VALUES ('loose', 4);
         INSERT INTO loose VALUES (1, 1, 'sip:127.0.0.1:5071', 0, 0, NULL, '');
         INSERT INTO loose VALUES (2, 1, 'sip:bad host', 0, 0, '', '');
         INSERT INTO loose VALUES (3, 1, NULL, 0, 0, '', '');
         INSERT INTO loose VALUES (4, NULL, 'sip:127.0.0.1:5072', NULL, NULL, '', '');",
    )
    .unwrap();
    let url = format!("sqlite://{}", path.display());
    let cfg = |extra: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:5060\"]\n[dispatcher]\ndb_url = \"{url}\"\n\
             table_name = \"loose\"\n{extra}\n[[route]]\nselect = \"1=4\"\n"
        )
    };
    let (ok, out) = check(&cfg(""));
    assert!(ok, "{out}");
    let name = format!("table loose (sqlite://{})", path.display());
    for want in [
        format!("{name} id 2: uri: \"sip:bad host\" is not a usable destination"),
        format!("{name} id 3: destination: expected a destination URI, got NULL"),
        format!("{name} id 4: setid: NULL, read as set 0 (as Kamailio)"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert!(
        out.contains("set 0: 1 destinations") && out.contains("set 1: 1 destinations"),
        "{out}"
    );
    // ds_load_mode = 1: a skipped destination fails the load
    let (ok, out) = check(&cfg("ds_load_mode = 1"));
    assert!(
        !ok && out.contains("id 2: uri:") && out.contains("id 3: destination"),
        "{out}"
    );

    // a running instance; then the table breaks and a reload keeps the running sets
    let (s, admin) = sipdisp(&format!("db_url = \"{url}\"\ntable_name = \"loose\""));
    let before = listing(admin);
    assert_eq!(before.len(), 2);
    c.execute_batch(
        "INSERT INTO loose VALUES (5, 1, 'sip:127.0.0.1:5073', -1, 0, '', '');
         INSERT INTO loose VALUES (6, 1, 'sip:127.0.0.1:5074', 'two', 0, '', '');",
    )
    .unwrap();
    let (ok, out) = check(&cfg(""));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("{name} id 5: flags: expected a value below 2^32")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{name} id 6: flags: expected an integer, got the text \"two\""
        )),
        "{out}"
    );
    let (st, v) = rpc(admin, "dispatcher.reload", json!([]));
    assert_eq!(
        (st, v["error"]["message"].as_str()),
        (500, Some("Reload Failed")),
        "{v}"
    );
    let data = v["error"]["data"].to_string();
    assert!(
        data.contains("id 5: flags") && data.contains("id 6: flags"),
        "{data}"
    );
    assert_eq!(listing(admin), before);

    // a version Kamailio refuses, a missing version row, a missing table, a missing file
    c.execute_batch("DELETE FROM loose WHERE id >= 5; UPDATE version SET table_version = 5 WHERE table_name = 'loose';")
        .unwrap();
    let (ok, out) = check(&cfg(""));
    assert!(
        !ok && out.contains("table version 5: expected 1, 2, 3 or 4"),
        "{out}"
    );
    let (st, v) = rpc(admin, "dispatcher.reload", json!([]));
    assert_eq!(st, 500, "{v}");
    assert_eq!(listing(admin), before);
    let (ok, out) = check(&cfg("").replace("\"loose\"", "\"nosuch\""));
    assert!(!ok && out.contains("table version missing"), "{out}");
    c.execute_batch("INSERT INTO version (table_name, table_version) VALUES ('nosuch', 4);")
        .unwrap();
    let (ok, out) = check(&cfg("").replace("\"loose\"", "\"nosuch\""));
    assert!(
        !ok && out.contains("cannot read the destinations") && out.contains("no such table"),
        "{out}"
    );
    let gone = dir.path().join("gone.db");
    let (ok, out) =
        check(&cfg("").replace(&path.display().to_string(), &gone.display().to_string()));
    assert!(!ok && out.contains("cannot connect"), "{out}");
    assert!(!gone.exists(), "a missing SQLite file must not be created");
    // `run` refuses to start the same way (exit 1, the reason on stderr)
    let bad = dir.write(
        "bad.toml",
        &cfg("").replace(&path.display().to_string(), &gone.display().to_string()),
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );
    drop(s);
}

/// Configuration: the list file and the database are alternatives; database keys need
/// `db_url`; names go into SQL only as plain identifiers.
#[test]
fn database_configuration_errors() {
    let base = "[server]\nlisten = [\"127.0.0.1:5060\"]\n[dispatcher]\n";
    for (extra, want) in [
        (
            "db_url = \"sqlite:///x.db\"\nlist_file = \"d.list\"",
            "`list_file` and `db_url` are alternatives",
        ),
        (
            "db_url = \"sqlite:///x.db\"\nwatch_list_file = true",
            "`watch_list_file` and `db_url` are alternatives",
        ),
        ("table_name = \"gw\"", "`table_name` needs `db_url`"),
        (
            "db_url = \"sqlite:///x.db\"\ntable_name = \"gw; DROP TABLE x\"",
            "an SQL name",
        ),
        (
            "db_url = \"oracle://u@h/d\"",
            "a database of sqlite, postgres or mysql",
        ),
        (
            "db_url = \"sqlite:///x.db\"\ndb_notify_channel = \"c\"",
            "`db_notify_channel` needs a postgres:// `db_url`",
        ),
        (
            "db_url = \"sqlite:///x.db\"\nds_db_extra_attrs = \"socket\"",
            "`attribute=column` pairs",
        ),
    ] {
        let (ok, out) = check(&format!("{base}{extra}\n[[route]]\nselect = \"1=4\"\n"));
        assert!(!ok && out.contains(want), "{extra}: {out}");
    }
}

// ---- PostgreSQL and MariaDB servers -----------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` run as `user` when the tests run as root (database servers refuse root), through
/// setpriv, which execs in place: the child's pid is the server's.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn as_user(user: &str, program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A server process stopped with SIGTERM (then SIGKILL) when dropped.
#[cfg(any(feature = "postgres", feature = "mysql"))]
struct Server {
    child: Option<std::process::Child>,
    port: u16,
    dir: TempDir,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Server {
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn log_file(dir: &TempDir) -> (Stdio, Stdio) {
    let f = std::fs::File::create(dir.path().join("server.log")).unwrap();
    (Stdio::from(f.try_clone().unwrap()), Stdio::from(f))
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn give_to(user: &str, dir: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;

    fn bin(name: &str) -> PathBuf {
        let dir = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path()).max())
            .unwrap_or_else(|| {
                panic!("PostgreSQL is not installed (bash scripts/test.sh installs postgresql)")
            });
        dir.join("bin").join(name)
    }

    pub(super) struct Pg(pub(super) Server);

    impl Pg {
        /// initdb (user `kamailio`, trust on loopback) + postgres on a free port + database
        /// `kamailio` with Kamailio's schema.
        pub(super) fn start() -> Pg {
            let dir = TempDir::new("pg");
            give_to("postgres", dir.path());
            let data = dir.path().join("data");
            let st = as_user("postgres", &bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "kamailio", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "initdb failed");
            let mut pg = Pg(Server {
                child: None,
                port: tcp_port(),
                dir,
            });
            pg.run();
            let end = Instant::now() + Duration::from_secs(30);
            let mut admin = loop {
                match pg.client("postgres") {
                    Ok(c) => break c,
                    Err(e) => {
                        assert!(Instant::now() < end, "postgres: {e}\n{}", pg.0.log());
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            };
            admin.batch_execute("CREATE DATABASE kamailio").unwrap();
            let mut c = pg.client("kamailio").unwrap();
            for s in kamailio_schema("postgres") {
                c.batch_execute(&s).unwrap();
            }
            for &(set, uri, flags, prio, attrs) in ROWS {
                c.batch_execute(&insert_sql(set, uri, flags, prio, attrs))
                    .unwrap();
            }
            pg
        }

        /// Starts the server on its data directory and port (again, after `stop`).
        pub(super) fn run(&mut self) {
            let dir = &self.0.dir;
            let (out, err) = log_file(dir);
            let child = as_user("postgres", &bin("postgres"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-p", &self.0.port.to_string(), "-k"])
                .arg(dir.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=40",
                ])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start postgres");
            self.0.child = Some(child);
        }

        pub(super) fn client(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
            postgres::Client::connect(
                &format!(
                    "host=127.0.0.1 port={} user=kamailio dbname={db}",
                    self.0.port
                ),
                postgres::NoTls,
            )
        }

        pub(super) fn url(&self) -> String {
            format!("postgres://kamailio@127.0.0.1:{}/kamailio", self.0.port)
        }
    }
}

/// PostgreSQL: the same table through sipdisp and Kamailio's `db_postgres` (identical
/// `dispatcher.list`, before and after a change); two sipdisp instances with
/// `db_notify_channel` see a committed insert within one second while sipp calls through both
/// keep completing; the database going away keeps the running sets and fails reloads cleanly,
/// and when it is back each listener reconnects and reloads once.
#[cfg(feature = "postgres")]
#[test]
fn postgres_lists_like_kamailio_and_notify_reloads_two_instances() {
    use super::support::{
        ChildGuard, free_udp_port, require_sipp, sipp_outcome, sipp_uac, sipp_uas,
    };
    require_sipp();
    let mut pg = pg::Pg::start();
    let url = pg.url();
    {
        let (s, admin) = sipdisp(&format!("db_url = \"{url}\""));
        let k = Kamailio::start_with(&format!(
            "loadmodule \"db_postgres.so\"\nmodparam(\"dispatcher\", \"db_url\", \"{url}\")"
        ));
        same_list("initial", admin, &k);
        let mut c = pg.client("kamailio").unwrap();
        c.batch_execute(
            "UPDATE dispatcher SET priority = 7 WHERE id = 1; DELETE FROM dispatcher WHERE id = 3;",
        )
        .unwrap();
        c.batch_execute(&insert_sql(6, "sip:127.0.0.1:5081", 0, 0, ""))
            .unwrap();
        for target in [admin, k.http] {
            let (st, v) = rpc(target, "dispatcher.reload", json!([]));
            assert_eq!(st, 200, "{v}");
        }
        same_list("after a change and reload", admin, &k);
        drop(s);
    }

    // A server that accepts and then stops answering (SIGSTOP) costs a reload `db_timeout`,
    // not forever; the list stays and the admin plane answers meanwhile.
    {
        let (s, admin) = sipdisp(&format!("db_url = \"{url}\"\ndb_timeout = 1"));
        let before = listing(admin);
        let pid = pg.0.child.as_ref().expect("postgres runs").id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let start = Instant::now();
        let reload = std::thread::spawn(move || rpc(admin, "dispatcher.reload", json!([])));
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let during = listing(admin);
        let list_took = t.elapsed();
        let (st, v) = reload.join().unwrap();
        let took = start.elapsed();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        assert_eq!(during, before);
        assert!(list_took < Duration::from_millis(500), "{list_took:?}");
        assert_eq!(st, 500, "{v}");
        assert_eq!(v["error"]["message"], "Reload Failed", "{v}");
        assert!(
            v["error"]["data"].to_string().contains("within db_timeout"),
            "{v}"
        );
        assert!(took < Duration::from_secs(4), "the reload took {took:?}");
        assert_eq!(listing(admin), before, "the list stays");
        // Once the server answers again, reloads work.
        let (st, v) = rpc(admin, "dispatcher.reload", json!([]));
        assert_eq!(st, 200, "{v}");
        drop(s);
    }

    // Set 1 is two sipp uas; two instances LISTEN on one channel, which a trigger notifies.
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let _uas: Vec<ChildGuard> = [p1, p2].into_iter().map(sipp_uas).collect();
    let mut c = pg.client("kamailio").unwrap();
    c.batch_execute(&format!(
        "DELETE FROM dispatcher;
         {};
         {};
         CREATE FUNCTION dispatcher_notify() RETURNS trigger AS $$
         BEGIN PERFORM pg_notify('sipdisp_dispatcher', ''); RETURN NULL; END; $$ LANGUAGE plpgsql;
         CREATE TRIGGER dispatcher_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
           ON dispatcher FOR EACH STATEMENT EXECUTE FUNCTION dispatcher_notify();",
        insert_sql(1, &format!("sip:127.0.0.1:{p1}"), 0, 0, ""),
        insert_sql(1, &format!("sip:127.0.0.1:{p2}"), 0, 0, ""),
    ))
    .unwrap();
    let extra = format!("db_url = \"{url}\"\ndb_notify_channel = \"sipdisp_dispatcher\"");
    let (a, admin_a) = sipdisp(&extra);
    let (b, admin_b) = sipdisp(&extra);
    for s in [&a, &b] {
        let end = Instant::now() + Duration::from_secs(5);
        while !s
            .log()
            .iter()
            .any(|l| l.contains("listening for database notifications"))
        {
            assert!(Instant::now() < end, "{:?}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let calls = 200;
    let uac_a = sipp_uac(a.addr(), calls, 50);
    let uac_b = sipp_uac(b.addr(), calls, 50);
    std::thread::sleep(Duration::from_millis(1500));
    let new = "sip:127.0.0.1:5099";
    c.batch_execute(&insert_sql(2, new, 0, 0, "duid=new"))
        .unwrap();
    let committed = Instant::now();
    let has_new = |admin| {
        listing(admin)
            .iter()
            .any(|(set, uri, _)| *set == 2 && uri == new)
    };
    let mut seen = [None, None];
    while Instant::now() < committed + Duration::from_secs(3) && seen.iter().any(Option::is_none) {
        for (i, admin) in [admin_a, admin_b].into_iter().enumerate() {
            if seen[i].is_none() && has_new(admin) {
                seen[i] = Some(committed.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, t) in seen.iter().enumerate() {
        let t = t.unwrap_or_else(|| panic!("instance {i} never saw the insert"));
        assert!(
            t < Duration::from_secs(1),
            "instance {i} saw the insert after {t:?}"
        );
    }
    for mut uac in [uac_a, uac_b] {
        let (ok, failed, out) = sipp_outcome(&mut uac);
        assert_eq!((ok, failed), (Some(u64::from(calls)), Some(0)), "{out}");
    }

    // The database goes away: reloads fail cleanly, the running sets stay, the listener
    // reports the loss and keeps retrying; calls still pass.
    let before = listing(admin_a);
    pg.0.stop();
    let (st, v) = rpc(admin_a, "dispatcher.reload", json!([]));
    assert_eq!(
        (st, v["error"]["message"].as_str()),
        (500, Some("Reload Failed")),
        "{v}"
    );
    assert!(
        v["error"]["data"].to_string().contains("cannot connect"),
        "{v}"
    );
    assert_eq!(listing(admin_a), before);
    let end = Instant::now() + Duration::from_secs(5);
    while !a
        .log()
        .iter()
        .any(|l| l.contains("database notifications lost"))
    {
        assert!(Instant::now() < end, "{:?}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, failed, out) = sipp_outcome(&mut sipp_uac(a.addr(), 20, 20));
    assert_eq!((ok, failed), (Some(20), Some(0)), "{out}");
    // Back: each listener reconnects (backoff from 1 s) and reloads once, since changes may
    // have been missed.
    pg.run();
    for s in [&a, &b] {
        let end = Instant::now() + Duration::from_secs(30);
        while s
            .log()
            .iter()
            .filter(|l| l.contains("reloaded (database notification)"))
            .count()
            < 2
        {
            assert!(
                Instant::now() < end,
                "no reload after reconnecting: {:?}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let listening = s
            .log()
            .iter()
            .filter(|l| l.contains("listening for database notifications"))
            .count();
        assert_eq!(listening, 2, "{:?}", s.log());
    }
    drop((a, b));
}

#[cfg(feature = "mysql")]
mod maria {
    use super::*;
    use mysql::prelude::Queryable;

    pub(super) struct Maria(pub(super) Server);

    impl Maria {
        /// mariadb-install-db + mariadbd on a free port; user `kamailio` (password
        /// `kamailiorw`, as kamdbctl's default) owns database `kamailio` with Kamailio's schema.
        pub(super) fn start() -> Maria {
            let dir = TempDir::new("maria");
            let data = dir.path().join("data");
            let mut install = Command::new("mariadb-install-db");
            install
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
            if is_root() {
                install.arg("--user=mysql");
            }
            let st = install
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("mariadb-install-db (bash scripts/test.sh installs mariadb-server)");
            assert!(st.success(), "mariadb-install-db failed");
            let init = dir.write(
                "init.sql",
                "CREATE DATABASE IF NOT EXISTS kamailio;\n\
                 CREATE USER IF NOT EXISTS 'kamailio'@'127.0.0.1' IDENTIFIED BY 'kamailiorw';\n\
                 GRANT ALL ON kamailio.* TO 'kamailio'@'127.0.0.1';\n",
            );
            let port = tcp_port();
            let (out, err) = log_file(&dir);
            let mut cmd = Command::new("mariadbd");
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", dir.path().join("sock").display()))
                .arg(format!("--pid-file={}", dir.path().join("pid").display()))
                .arg(format!("--init-file={}", init.display()))
                .arg(format!("--port={port}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=16M",
                ]);
            if is_root() {
                give_to("mysql", dir.path());
                cmd.arg("--user=mysql");
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start mariadbd");
            let m = Maria(Server {
                child: Some(child),
                port,
                dir,
            });
            let end = Instant::now() + Duration::from_secs(30);
            let mut c = loop {
                match m.conn() {
                    Ok(c) => break c,
                    Err(e) => {
                        assert!(Instant::now() < end, "mariadb: {e}\n{}", m.0.log());
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            };
            for s in kamailio_schema("mysql") {
                c.query_drop(&s).unwrap();
            }
            for &(set, uri, flags, prio, attrs) in ROWS {
                c.query_drop(insert_sql(set, uri, flags, prio, attrs))
                    .unwrap();
            }
            m
        }

        pub(super) fn conn(&self) -> Result<mysql::Conn, mysql::Error> {
            mysql::Conn::new(
                mysql::OptsBuilder::new()
                    .ip_or_hostname(Some("127.0.0.1"))
                    .tcp_port(self.0.port)
                    .user(Some("kamailio"))
                    .pass(Some("kamailiorw"))
                    .db_name(Some("kamailio"))
                    .prefer_socket(false),
            )
        }

        pub(super) fn url(&self) -> String {
            format!(
                "mysql://kamailio:kamailiorw@127.0.0.1:{}/kamailio",
                self.0.port
            )
        }
    }
}

/// MariaDB: the same table through sipdisp and Kamailio's `db_mysql` (identical
/// `dispatcher.list`, before and after a change), and `dispatcher.add`/`remove` persisted.
#[cfg(feature = "mysql")]
#[test]
fn mariadb_lists_like_kamailio_and_persists_rpc_changes() {
    use mysql::prelude::Queryable;
    let m = maria::Maria::start();
    let url = m.url();
    let (s, admin) = sipdisp(&format!("db_url = \"{url}\"\npersist_rpc_changes = true"));
    let k = Kamailio::start_with(&format!(
        "loadmodule \"db_mysql.so\"\nmodparam(\"dispatcher\", \"db_url\", \"{url}\")"
    ));
    same_list("initial", admin, &k);
    let mut c = m.conn().unwrap();
    c.query_drop("UPDATE dispatcher SET setid = 7 WHERE id = 5")
        .unwrap();
    c.query_drop(insert_sql(1, "sip:127.0.0.1:5082", 2, 3, "weight=10"))
        .unwrap();
    for target in [admin, k.http] {
        let (st, v) = rpc(target, "dispatcher.reload", json!([]));
        assert_eq!(st, 200, "{v}");
    }
    same_list("after a change and reload", admin, &k);
    let (st, v) = rpc(
        admin,
        "dispatcher.add",
        json!([8, "sip:127.0.0.1:5091", 0, 0]),
    );
    assert_eq!(st, 200, "{v}");
    let rows: Vec<(i64, String)> = c
        .query("SELECT setid, destination FROM dispatcher WHERE setid = 8")
        .unwrap();
    assert_eq!(rows, [(8, "sip:127.0.0.1:5091".to_string())]);
    let (st, v) = rpc(admin, "dispatcher.remove", json!([8, "sip:127.0.0.1:5091"]));
    assert_eq!(st, 200, "{v}");
    let n: Option<i64> = c
        .query_first("SELECT count(*) FROM dispatcher WHERE setid = 8")
        .unwrap();
    assert_eq!(n, Some(0));
    drop(s);
}
