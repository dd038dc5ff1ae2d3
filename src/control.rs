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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use std::net::SocketAddr;

use crate::dispatch::attrs::Attrs;

use crate::dispatch::{Carry, DispatchParams, ListEntry, LoadHooks, SetId, Snapshot, parse_list};
use crate::plane::{Plane, Shared, successor};

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
    list_file: PathBuf,
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
    /// A control plane publishing into `shared`, for `list_file` (as loaded at start) with
    /// these parameters; `persist`: write add/remove back to the file.
    pub fn new(
        shared: Arc<Shared>,
        list_file: PathBuf,
        params: DispatchParams,
        persist: bool,
    ) -> Control {
        let seen = mtime(&list_file);
        Control {
            shared,
            list_file,
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

    fn parse(
        &self,
        name: &str,
        text: &[u8],
        params: &DispatchParams,
    ) -> Result<crate::dispatch::LoadedList, crate::dispatch::ListErrors> {
        if self.listen.is_empty() {
            return parse_list(name, text, params, &LoadHooks::default());
        }
        let local = |s: &[u8]| crate::proxy::socket_attr_is_local(s, &self.listen);
        let resolves = |h: &[u8], p: Option<u16>| crate::plane::resolve_host(h, p).is_some();
        parse_list(
            name,
            text,
            params,
            &LoadHooks {
                socket_is_local: Some(&local),
                host_resolves: Some(&resolves),
            },
        )
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

    /// The list file.
    pub fn list_file(&self) -> &Path {
        &self.list_file
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

    /// `dispatcher.reload` / SIGHUP / the watcher: re-reads the list file and swaps the plane;
    /// on any error the current plane stays.
    pub fn reload(&self) -> Result<Outcome, ControlError> {
        let mut inner = self.lock();
        self.admit(&mut inner, Instant::now())?;
        let seen = mtime(&self.list_file);
        let text = std::fs::read(&self.list_file).map_err(|e| {
            ControlError::Reload(vec![format!(
                "cannot read {}: {e}",
                self.list_file.display()
            )])
        })?;
        let name = self.list_file.display().to_string();
        let loaded = self
            .parse(&name, &text, &self.params)
            .map_err(|e| ControlError::Reload(e.0.iter().map(ToString::to_string).collect()))?;
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
        let name = self.list_file.display().to_string();
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
            let line = format!("{set} {} {flags} {priority} {attrs}", uri.trim());
            self.persist_with(&mut inner, |text| with_added(text, line.trim_end()))
                .map_err(fail)?;
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
            let params = self.params.clone();
            self.persist_with(&mut inner, |text| {
                with_removed(text, SetId(set), &target.uri, &params)
            })
            .map_err(fail)?;
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

    fn persist_with(
        &self,
        inner: &mut Inner,
        edit: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<(), String> {
        let path = &self.list_file;
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        write_atomic(path, &edit(&text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        inner.seen = mtime(path);
        Ok(())
    }

    /// For the watcher: true when the list file's modification time differs from the one
    /// last loaded or written.
    fn changed_on_disk(&self) -> bool {
        let now = mtime(&self.list_file);
        now.is_some() && now != self.lock().seen
    }

    /// Marks the file's current modification time as seen (after a failed reload, so a broken
    /// file is reported once, not every second).
    fn mark_seen(&self) {
        let m = mtime(&self.list_file);
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

/// The list file with `line` appended (a newline added first when the file lacks one).
pub fn with_added(text: &[u8], line: &str) -> Vec<u8> {
    let mut out = text.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out
}

/// The list file without the lines that define a destination of `set` whose stored URI is
/// byte-equal to `uri`; comments, blank lines and every other line are kept as they are.
pub fn with_removed(text: &[u8], set: SetId, uri: &[u8], params: &DispatchParams) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&c| c == b'\n') {
        let drop = parse_list("x", line, params, &LoadHooks::default())
            .is_ok_and(|l| l.entries.iter().any(|e| e.set == set && &*e.uri == uri));
        if !drop {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (same file
/// system), flushed to disk, permissions copied from the old file, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("list".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.sipdisp-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Ok(m) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, m.permissions())?;
        }
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
    fn rewriting_keeps_comments_and_other_lines() {
        let p = DispatchParams::default();
        let text = b"# head\n1 sip:a 0 0 duid=x # c\n\n2 sip:a\n1 SIP:A\n1 a.example:5070\n1 sip:b";
        let out = with_removed(text, SetId(1), b"sip:a", &p);
        assert_eq!(
            out,
            b"# head\n\n2 sip:a\n1 SIP:A\n1 a.example:5070\n1 sip:b"
        );
        // the address is compared as stored: `a.example:5070` was stored with `sip:`
        let out = with_removed(&out, SetId(1), b"sip:a.example:5070", &p);
        assert_eq!(out, b"# head\n\n2 sip:a\n1 SIP:A\n1 sip:b");
        let out = with_added(&out, "3 sip:c 0 0 weight=5");
        assert_eq!(
            out,
            b"# head\n\n2 sip:a\n1 SIP:A\n1 sip:b\n3 sip:c 0 0 weight=5\n"
        );
        assert_eq!(with_added(b"", "1 sip:x"), b"1 sip:x\n");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("sipdisp-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.list");
        std::fs::write(&p, "old\n").unwrap();
        write_atomic(&p, b"new\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rate_limit_shared_and_taken_before_work() {
        let c = Control::new(
            test_shared(),
            PathBuf::from("/nonexistent/d.list"),
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
            PathBuf::from("x"),
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
            PathBuf::from("x"),
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
