//! The control plane's write side: reload the destination list, add and remove destinations,
//! the shared `reload_delta` rate limit, optional persistence of RPC changes to the list file,
//! and the list-file watcher.
//!
//! Every change follows the same path: read + parse + validate *everything* first (on any
//! error the current plane stays and every bad line is reported), build a new
//! [`Snapshot`], move runtime state into it, resolve addresses, and only then swap the
//! [`ArcSwap`](arc_swap::ArcSwap) in [`Shared`] — workers see either the old or the new plane,
//! never a half-built one. Changes are serialised by one mutex (never taken by workers).
//!
//! Kamailio semantics kept (reference §8): one timestamp shared by reload, add and remove,
//! taken *before* the work, so a failing call consumes the slot too ("Ongoing reload" while
//! less than `reload_delta` has elapsed; 0 disables the limit). Add/remove rebuild the whole
//! list from the current one — sets in listing order, destinations in array order, current
//! flags — and append the new destination, so equal-priority destinations reverse their order
//! on every add/remove exactly as in Kamailio 5.6.3.
//!
//! Deliberate differences (documented in `docs/configuration.md`): with `retain_state` (the
//! default) a reload keeps the runtime state of destinations that remain, and add/remove keep
//! threshold counters and latency statistics too (Kamailio keeps only flags and call load
//! there); an invalid destination given to `dispatcher.add` is refused with a fault whatever
//! `ds_load_mode` says (Kamailio answers "Ok" and adds nothing); `persist_rpc_changes` writes
//! add/remove back to the list file (Kamailio never does).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use std::net::SocketAddr;

use crate::dispatch::attrs::Attrs;

use crate::dispatch::{Carry, DispatchParams, ListEntry, LoadHooks, LoadedList, Snapshot};
use crate::plane::{Plane, Shared, successor};
use crate::source::db::NewRow;
use crate::source::{Source, SourceError};

/// Why a control operation was refused. [`ControlError::message`] is Kamailio's fault text;
/// [`ControlError::details`] says what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// Less than `reload_delta` since the last reload/add/remove.
    Ongoing {
        /// Time left before the next change is admitted.
        wait: Duration,
    },
    /// The list file could not be read or has errors (every one listed).
    Reload(Vec<String>),
    /// `dispatcher.add` refused.
    Add(Vec<String>),
    /// `dispatcher.remove` refused.
    Remove(Vec<String>),
}

impl ControlError {
    /// Kamailio 5.6.3's fault string for this error.
    pub fn message(&self) -> &'static str {
        match self {
            ControlError::Ongoing { .. } => "Ongoing reload",
            ControlError::Reload(_) => "Reload Failed",
            ControlError::Add(_) => "Adding dispatcher dst failed",
            ControlError::Remove(_) => "Removing dispatcher dst failed",
        }
    }

    /// The precise reasons (bad lines, I/O errors), one per entry.
    pub fn details(&self) -> Vec<String> {
        match self {
            ControlError::Ongoing { wait } => vec![format!(
                "reload_delta: next change allowed in {:.1} s",
                wait.as_secs_f64()
            )],
            ControlError::Reload(d) | ControlError::Add(d) | ControlError::Remove(d) => d.clone(),
        }
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())?;
        for d in self.details() {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

/// What a successful change produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Skipped destinations, attribute oddities, names that do not resolve.
    pub warnings: Vec<String>,
    /// Sets in the new plane.
    pub sets: usize,
    /// Destinations in the new plane.
    pub destinations: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// When the last reload/add/remove was admitted.
    last: Option<Instant>,
    /// The list file's modification time as last loaded or written by us.
    seen: Option<SystemTime>,
}

/// What the admin plane may do, and all it knows of the control plane: read the shared state
/// and ask for the changes that publish a new plane.
pub trait Commands: Send + Sync {
    /// The shared state (current plane, counters, `ping_active`).
    fn shared(&self) -> &Shared;
    /// `dispatcher.reload`.
    fn reload(&self) -> Result<Outcome, ControlError>;
    /// `dispatcher.add group address flags priority attrs`.
    fn add(
        &self,
        set: u32,
        uri: &str,
        flags: u32,
        priority: i32,
        attrs: &str,
    ) -> Result<Outcome, ControlError>;
    /// `dispatcher.remove group address`.
    fn remove(&self, set: u32, uri: &str) -> Result<Outcome, ControlError>;
}

/// What [`Control::with_publish_hook`] takes.
pub type PublishHook = Box<dyn Fn(&Arc<Plane>) + Send + Sync>;

/// The control plane: the shared state it publishes into, its configuration and its
/// serialising lock.
pub struct Control {
    shared: Arc<Shared>,
    source: Source,
    params: DispatchParams,
    persist: bool,
    /// Listen addresses that `socket=` attributes must name (empty: not checked).
    listen: Vec<SocketAddr>,
    /// Called with every plane this control plane publishes, on its own thread (the daemon
    /// lets the prober adopt it here, so no worker's tick rebuilds the probe table).
    on_publish: Option<PublishHook>,
    inner: Mutex<Inner>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn count(p: &Plane) -> (usize, usize) {
    let s = p.snapshot.sets();
    (s.len(), s.iter().map(|x| x.len()).sum())
}

impl Control {
    /// A control plane publishing into `shared`, for `source` (as loaded at start) with
    /// these parameters; `persist`: write add/remove back to the source.
    pub fn new(
        shared: Arc<Shared>,
        source: Source,
        params: DispatchParams,
        persist: bool,
    ) -> Control {
        let seen = source.list_file().and_then(mtime);
        Control {
            shared,
            source,
            params,
            persist,
            listen: Vec::new(),
            on_publish: None,
            inner: Mutex::new(Inner { last: None, seen }),
        }
    }

    /// Checks destinations' `socket`/`sockname` attributes against these listen addresses on
    /// reload and add, as at start (Kamailio drops destinations whose socket is not local).
    pub fn with_listen(mut self, listen: Vec<SocketAddr>) -> Control {
        self.listen = listen;
        self
    }

    /// Runs `f` with the load hooks of this control plane (socket and DNS checks when the
    /// listen addresses are known, as at start).
    fn with_hooks<T>(&self, f: impl FnOnce(&LoadHooks<'_>) -> T) -> T {
        if self.listen.is_empty() {
            return f(&LoadHooks::default());
        }
        let local = |s: &[u8]| crate::proxy::socket_attr_is_local(s, &self.listen);
        let resolves = |h: &[u8], p: Option<u16>| crate::plane::resolve_host(h, p).is_some();
        f(&LoadHooks {
            socket_is_local: Some(&local),
            host_resolves: Some(&resolves),
        })
    }

    fn parse(
        &self,
        name: &str,
        text: &[u8],
        params: &DispatchParams,
    ) -> Result<LoadedList, crate::dispatch::ListErrors> {
        self.with_hooks(|h| crate::dispatch::parse_list(name, text, params, h))
    }

    /// Calls `hook` with every plane published from now on (after it is stored).
    pub fn with_publish_hook(mut self, hook: PublishHook) -> Control {
        self.on_publish = Some(hook);
        self
    }

    fn publish(&self, plane: Plane) {
        let plane = Arc::new(plane);
        self.shared.plane.store(Arc::clone(&plane));
        if let Some(h) = &self.on_publish {
            h(&plane);
        }
    }

    /// The shared state this control plane publishes into.
    pub fn shared_arc(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The destination source.
    pub fn source(&self) -> &Source {
        &self.source
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate limit (§8): refuses while less than `reload_delta` elapsed since the last
    /// admitted change; otherwise takes the slot *before* the work is done.
    fn admit(&self, inner: &mut Inner, now: Instant) -> Result<(), ControlError> {
        let delta = self.params.reload_delta;
        if let Some(last) = inner.last
            && !delta.is_zero()
            && now.duration_since(last) < delta
        {
            return Err(ControlError::Ongoing {
                wait: delta - now.duration_since(last),
            });
        }
        inner.last = Some(now);
        Ok(())
    }

    /// `dispatcher.reload` / SIGHUP / the watcher / a database notification: re-reads the
    /// source and swaps the plane; on any error (including an unreachable database) the
    /// current plane stays.
    pub fn reload(&self) -> Result<Outcome, ControlError> {
        let mut inner = self.lock();
        self.admit(&mut inner, Instant::now())?;
        let seen = self.source.list_file().and_then(mtime);
        let name = self.source.name();
        let loaded = self
            .with_hooks(|h| self.source.load(&self.params, h))
            .map_err(|e| match e {
                SourceError::Unavailable(why) => ControlError::Reload(vec![why]),
                SourceError::Invalid(e) => {
                    ControlError::Reload(e.0.iter().map(ToString::to_string).collect())
                }
            })?;
        let mut warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        let old = self.shared.plane.load_full();
        let carry = Carry::for_reload(self.params.retain_state);
        let plane = successor(
            &old,
            &loaded.entries,
            &self.params,
            carry,
            &name,
            &mut warnings,
        );
        let (sets, destinations) = count(&plane);
        self.publish(plane);
        inner.seen = seen;
        Ok(Outcome {
            warnings,
            sets,
            destinations,
        })
    }

    /// Rebuilds the plane from `entries` (Kamailio's add/remove rebuild) and swaps it.
    fn rebuild(&self, old: &Plane, entries: Vec<ListEntry>) -> Outcome {
        let name = self.source.name();
        let carry = Carry::for_rebuild(self.params.retain_state);
        let mut warnings = Vec::new();
        let plane = successor(old, &entries, &self.params, carry, &name, &mut warnings);
        let (sets, destinations) = count(&plane);
        self.publish(plane);
        Outcome {
            warnings,
            sets,
            destinations,
        }
    }

    /// `dispatcher.add group address [flags [priority [attrs]]]` (§8).
    pub fn add(
        &self,
        set: u32,
        uri: &str,
        flags: u32,
        priority: i32,
        attrs: &str,
    ) -> Result<Outcome, ControlError> {
        let mut inner = self.lock();
        self.admit(&mut inner, Instant::now())?;
        let fail = |why: String| ControlError::Add(vec![why]);
        let mut entry = self.checked_entry(set, uri).map_err(fail)?;
        if attrs.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(fail(format!("attrs {attrs:?}: expected no blanks")));
        }
        let mut aw = Vec::new();
        entry.attrs = Attrs::parse(attrs.as_bytes(), self.params.ds_attrs_none, &mut aw);
        entry.flags = flags;
        entry.priority = priority;
        if self.persist {
            let row = NewRow {
                set,
                uri: uri.trim(),
                flags,
                priority,
                attrs,
            };
            self.source.persist_add(&row).map_err(fail)?;
            inner.seen = self.source.list_file().and_then(mtime);
        }
        let old = self.shared.plane.load_full();
        let mut entries = current_entries(&old.snapshot);
        entries.push(entry);
        let mut out = self.rebuild(&old, entries);
        out.warnings
            .extend(aw.iter().map(|w| format!("attrs: {w}")));
        Ok(out)
    }

    /// `dispatcher.remove group address` (§8): drops every destination of the set whose URI
    /// is byte-equal to the normalised address; removing nothing still rebuilds.
    pub fn remove(&self, set: u32, uri: &str) -> Result<Outcome, ControlError> {
        let mut inner = self.lock();
        self.admit(&mut inner, Instant::now())?;
        let fail = |why: String| ControlError::Remove(vec![why]);
        let target = self.checked_entry(set, uri).map_err(fail)?;
        if self.persist {
            self.source
                .persist_remove(set, &target.uri, &self.params)
                .map_err(fail)?;
            inner.seen = self.source.list_file().and_then(mtime);
        }
        let old = self.shared.plane.load_full();
        let entries = current_entries(&old.snapshot)
            .into_iter()
            .filter(|e| !(e.set.0 == set && e.uri == target.uri))
            .collect();
        Ok(self.rebuild(&old, entries))
    }

    /// Normalises and checks an address exactly like a list-file line (`sip:` prefix rule).
    fn checked_entry(&self, set: u32, uri: &str) -> Result<ListEntry, String> {
        let uri = uri.trim();
        if uri.is_empty() || uri.bytes().any(|b| b.is_ascii_whitespace() || b == b'#') {
            return Err(format!(
                "address {uri:?}: expected a URI without blanks or '#'"
            ));
        }
        if set > i32::MAX as u32 {
            return Err(format!("group {set}: expected at most 2147483647"));
        }
        let line = format!("{set} {uri}");
        let params = DispatchParams {
            ds_load_mode: 1,
            ..self.params.clone()
        };
        match self.parse("rpc", line.as_bytes(), &params) {
            Ok(mut l) if l.entries.len() == 1 => {
                let mut e = l.entries.remove(0);
                e.line = 0;
                Ok(e)
            }
            Ok(_) => Err(format!("address {uri:?}: not a destination")),
            Err(e) => Err(e
                .0
                .iter()
                .map(|x| x.kind.to_string())
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }

    /// For the watcher: true when the list file's modification time differs from the one
    /// last loaded or written.
    fn changed_on_disk(&self) -> bool {
        let now = self.source.list_file().and_then(mtime);
        now.is_some() && now != self.lock().seen
    }

    /// Marks the file's current modification time as seen (after a failed reload, so a broken
    /// file is reported once, not every second).
    fn mark_seen(&self) {
        let m = self.source.list_file().and_then(mtime);
        self.lock().seen = m;
    }
}

impl Commands for Control {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn reload(&self) -> Result<Outcome, ControlError> {
        Control::reload(self)
    }

    fn add(
        &self,
        set: u32,
        uri: &str,
        flags: u32,
        priority: i32,
        attrs: &str,
    ) -> Result<Outcome, ControlError> {
        Control::add(self, set, uri, flags, priority, attrs)
    }

    fn remove(&self, set: u32, uri: &str) -> Result<Outcome, ControlError> {
        Control::remove(self, set, uri)
    }
}

/// The current destinations as list entries, in the order Kamailio's add/remove rebuild
/// re-inserts them (sets in listing order, destinations in array order), with current flags.
fn current_entries(s: &Snapshot) -> Vec<ListEntry> {
    let retain = s.params().retain_state;
    let mut out = Vec::new();
    for set in s.sets() {
        for d in set.destinations() {
            out.push(ListEntry {
                set: set.id,
                uri: d.uri.clone(),
                dest: d.dest.clone(),
                // With retain_state the flags travel through carry_state_from (which keeps
                // them only while the file flags are unchanged); without it they become the
                // entry's flags, as Kamailio re-inserts current flags.
                flags: if retain { d.file_flags } else { d.flags().0 },
                priority: d.priority,
                attrs: d.attrs.clone(),
                line: d.line,
            });
        }
    }
    out
}

/// Runs a reload for a log-only trigger (SIGHUP, the watcher) and logs the outcome.
pub fn reload_and_log(control: &Control, why: &str) -> bool {
    match control.reload() {
        Ok(o) => {
            for w in &o.warnings {
                eprintln!("sipdisp: warning: {w}");
            }
            eprintln!(
                "sipdisp: reloaded ({why}): {} set{}, {} destination{}",
                o.sets,
                if o.sets == 1 { "" } else { "s" },
                o.destinations,
                if o.destinations == 1 { "" } else { "s" }
            );
            true
        }
        Err(e) => {
            eprintln!("sipdisp: reload ({why}) refused, old list kept: {e}");
            false
        }
    }
}

/// `watch_list_file`: polls the list file's modification time once a second and reloads when
/// it changed. A reload refused by the rate limit is retried on the next poll; a file with
/// errors is reported once per change. Stops when `stop` is set.
pub fn spawn_watcher(
    control: Arc<Control>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("sipdisp-watch".into())
        .spawn(move || {
            let mut last_poll = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                if last_poll.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                last_poll = Instant::now();
                if !control.changed_on_disk() {
                    continue;
                }
                match control.reload() {
                    Ok(o) => eprintln!(
                        "sipdisp: reloaded (list file changed): {} sets, {} destinations",
                        o.sets, o.destinations
                    ),
                    Err(ControlError::Ongoing { .. }) => {}
                    Err(e) => {
                        eprintln!(
                            "sipdisp: reload (list file changed) refused, old list kept: {e}"
                        );
                        control.mark_seen();
                    }
                }
            }
        })
}

/// How long notifications are gathered before one reload runs (a provisioning transaction
/// burst becomes one reload).
#[cfg(feature = "postgres")]
const NOTIFY_DEBOUNCE: Duration = Duration::from_millis(100);

/// `db_notify_channel` (PostgreSQL): a thread that `LISTEN`s on the channel and reloads after
/// each burst of notifications (debounced by [`NOTIFY_DEBOUNCE`]; a reload refused by
/// `reload_delta` runs as soon as the slot frees). A lost connection is retried with backoff
/// (1 s doubling to 10 s) and, once back, reloads once, since changes may have been missed.
/// Does nothing (returns `None`) when the source has no channel. Stops when `stop` is set.
#[cfg(feature = "postgres")]
pub fn spawn_notify_listener(
    control: Arc<Control>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<thread::JoinHandle<()>>> {
    use crate::source::db::Notifications;
    let Source::Db(db) = control.source().clone() else {
        return Ok(None);
    };
    let Some(channel) = db.notify_channel.clone() else {
        return Ok(None);
    };
    let handle = thread::Builder::new()
        .name("sipdisp-notify".into())
        .spawn(move || {
            let mut backoff = Duration::from_secs(1);
            let mut connected_before = false;
            let mut down_logged = false;
            while !stop.load(Ordering::Relaxed) {
                let mut listener = match Notifications::listen(&db) {
                    Ok(Some(l)) => l,
                    Ok(None) => return,
                    Err(e) => {
                        if !down_logged {
                            eprintln!("sipdisp: database notifications unavailable: {e}");
                            down_logged = true;
                        }
                        sleep_unless_stopped(backoff, &stop);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                };
                eprintln!("sipdisp: listening for database notifications on channel {channel}");
                backoff = Duration::from_secs(1);
                down_logged = false;
                // After an outage changes may have been missed: reload once.
                let mut due = connected_before.then(Instant::now);
                connected_before = true;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(at) = due
                        && Instant::now() >= at
                    {
                        due = match control.reload() {
                            Ok(o) => {
                                eprintln!(
                                    "sipdisp: reloaded (database notification): {} sets, {} \
                                     destinations",
                                    o.sets, o.destinations
                                );
                                None
                            }
                            Err(ControlError::Ongoing { wait }) => Some(Instant::now() + wait),
                            Err(e) => {
                                eprintln!(
                                    "sipdisp: reload (database notification) refused, old \
                                     list kept: {e}"
                                );
                                None
                            }
                        };
                    }
                    let timeout = due.map_or(Duration::from_millis(500), |at| {
                        at.saturating_duration_since(Instant::now())
                            .clamp(Duration::from_millis(1), Duration::from_millis(500))
                    });
                    match listener.wait(timeout) {
                        Ok(true) => {
                            let at = Instant::now() + NOTIFY_DEBOUNCE;
                            due = Some(due.unwrap_or(at));
                        }
                        Ok(false) => {}
                        Err(e) => {
                            eprintln!("sipdisp: database notifications lost: {e}; reconnecting");
                            break;
                        }
                    }
                }
            }
        })?;
    Ok(Some(handle))
}

#[cfg(feature = "postgres")]
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_shared() -> Arc<Shared> {
        let p = DispatchParams::default();
        let snap = Snapshot::build(&[], p, 1);
        Arc::new(Shared::new(
            crate::plane::plane_from(snap, "t", &mut Vec::new()),
            1,
            crate::netio::Backend::Memory,
        ))
    }

    #[test]
    fn rate_limit_shared_and_taken_before_work() {
        let c = Control::new(
            test_shared(),
            Source::File("/nonexistent/d.list".into()),
            DispatchParams::default(),
            false,
        );
        let mut i = Inner::default();
        let t0 = Instant::now();
        assert!(c.admit(&mut i, t0).is_ok());
        let e = c.admit(&mut i, t0 + Duration::from_secs(4)).unwrap_err();
        assert_eq!(e.message(), "Ongoing reload");
        assert!(c.admit(&mut i, t0 + Duration::from_secs(5)).is_ok());
        let c0 = Control::new(
            test_shared(),
            Source::File("x".into()),
            DispatchParams {
                reload_delta: Duration::ZERO,
                ..Default::default()
            },
            false,
        );
        let mut i = Inner::default();
        assert!(c0.admit(&mut i, t0).is_ok() && c0.admit(&mut i, t0).is_ok());
    }

    #[test]
    fn addresses_are_normalised_like_list_lines() {
        let c = Control::new(
            test_shared(),
            Source::File("x".into()),
            DispatchParams::default(),
            false,
        );
        assert_eq!(
            &*c.checked_entry(1, "10.0.0.9:5070").unwrap().uri,
            b"sip:10.0.0.9:5070"
        );
        assert_eq!(&*c.checked_entry(1, " sip:h ").unwrap().uri, b"sip:h");
        assert!(c.checked_entry(1, "!!").is_err());
        assert!(c.checked_entry(1, "sip:a b").is_err());
        assert!(c.checked_entry(1, "").is_err());
        assert!(c.checked_entry(u32::MAX, "sip:a").is_err());
    }
}
