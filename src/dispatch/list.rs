//! The Kamailio destination list file (reference §2.1–2.3): `setid uri [flags [priority [attrs]]]`.
//!
//! Parsing copies Kamailio 5.6.3 field by field: the set id is a run of digits (0 when the line
//! does not start with one, parsing then continues at the same byte), the URI ends at blank or
//! `#`, flags and priority are digit runs that may be empty (a non-digit token falls through to
//! the next slot), the attrs token ends only at a blank, and anything after it is ignored. A URI
//! that does not check is retried with `sip:` prepended when 4 < length < 500 and it does not
//! start with `sip:`.
//!
//! Errors name `file:line: field: what was expected`, and *all* of them are collected. A set id
//! without a URI ("bad line") fails the whole load whatever `ds_load_mode` says; a destination
//! that does not check is skipped with a warning (`ds_load_mode=0`) or fails the load (`1`).
//!
//! Deliberate divergences (documented in `docs/configuration.md`): a physical line longer than
//! 1023 bytes is an error (Kamailio splits it and parses the tail as a new entry); set ids,
//! flags and priorities that overflow are errors (Kamailio wraps); `0x` hex flags are accepted
//! when `hex_flags` is on (Kamailio 6.1 behaviour); no DNS is done here.
//! The file itself is read by the caller: this module does no I/O.

use std::fmt;

use super::SetId;
use super::attrs::{AttrWarning, Attrs};
use super::params::DispatchParams;
use super::uri::{self, DestUri, UriError};

/// Longest physical line Kamailio's 1024-byte `fgets` buffer reads in one piece.
pub const MAX_LINE: usize = 1023;

/// One accepted destination line.
///
/// Guarantees: `uri` checks with [`uri::check`] (`dest` locates its parts) and includes any
/// `sip:` prefix the loader added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Set id.
    pub set: SetId,
    /// URI as stored (possibly with an added `sip:`).
    pub uri: Box<[u8]>,
    /// Parts of `uri`.
    pub dest: DestUri,
    /// Flags from the file (state bits and NODNS).
    pub flags: u32,
    /// Priority (higher first in the set's array).
    pub priority: i32,
    /// Attributes.
    pub attrs: Attrs,
    /// 1-based line number in the file.
    pub line: u32,
}

/// What was wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListErrorKind {
    /// Set id without a URI: fails the whole load (Kamailio "bad line").
    #[error("uri: expected a destination URI after the set id")]
    MissingUri,
    /// Physical line longer than [`MAX_LINE`] bytes.
    #[error("line: expected at most {MAX_LINE} bytes, got {0} (Kamailio would split it)")]
    LineTooLong(usize),
    /// Set id does not fit a positive 32-bit signed integer.
    #[error("set id: expected at most 2147483647")]
    SetIdRange,
    /// Flags do not fit 32 bits.
    #[error("flags: expected a value below 2^32")]
    FlagsRange,
    /// Priority does not fit a 32-bit signed integer.
    #[error("priority: expected at most 2147483647")]
    PriorityRange,
    /// URI refused (destination skipped, or load failed with `ds_load_mode=1`).
    #[error("uri: {uri:?} is not a usable destination: {reason}")]
    BadUri {
        /// The URI token as written.
        uri: String,
        /// Why.
        reason: UriError,
    },
    /// The caller's socket check refused `socket`/`sockname`.
    #[error("attrs: {0:?} is not a local socket")]
    Socket(String),
    /// The caller's resolver found no address for the host (Kamailio rejects the destination
    /// when `ds_dns_mode` asks for resolution at load and flag 16 is not set).
    #[error("uri: host {0:?} does not resolve (destination rejected, as Kamailio does)")]
    Unresolved(String),
    /// Attribute warning (destination kept).
    #[error("attrs: {0}")]
    Attr(AttrWarning),
    /// A database column held a value of the wrong type (the whole load fails, as a value
    /// out of range does in a list file).
    #[error("{column}: expected {expected}, got {got}")]
    Column {
        /// The column (its configured name).
        column: String,
        /// What the column must hold.
        expected: &'static str,
        /// What it held.
        got: String,
    },
    /// A database row whose destination is NULL (skipped, or the load fails with
    /// `ds_load_mode=1`, as a bad URI).
    #[error("{0}: expected a destination URI, got NULL")]
    NullUri(String),
    /// A database row whose set id is NULL: read as set 0, as Kamailio does (warning).
    #[error("{0}: NULL, read as set 0 (as Kamailio)")]
    NullSet(String),
}

/// One problem, located: `file:line: …` for a list file, `table id N: …` for a database row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// File name as given by the caller (for a database row: the table and its source).
    pub file: String,
    /// 1-based line (for a database row: the row's id).
    pub line: u32,
    /// True when `line` is a database row id.
    pub row: bool,
    /// What was wrong.
    pub kind: ListErrorKind,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.row {
            write!(f, "{} id {}: {}", self.file, self.line, self.kind)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.kind)
        }
    }
}

impl std::error::Error for ListError {}

/// Every error that made a load fail (`.0`, never empty), and the warnings found on the way
/// (`.1`: destinations that would have been skipped), so one pass reports every problem.
/// Display shows the errors only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListErrors(pub Vec<ListError>, pub Vec<ListError>);

impl fmt::Display for ListErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ListErrors {}

/// A successfully parsed list: entries in file order, plus warnings for what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedList {
    /// Accepted destinations in file order.
    pub entries: Vec<ListEntry>,
    /// Skipped destinations and attribute oddities.
    pub warnings: Vec<ListError>,
}

/// Answers whether a `socket`/`sockname` value names a local socket.
pub type SocketCheck<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Answers whether a destination host (as written, IPv6 literals bracketed) with its explicit
/// port resolves to at least one address.
pub type ResolveCheck<'a> = &'a dyn Fn(&[u8], Option<u16>) -> bool;

/// Optional checks the caller can plug in (it owns the sockets).
#[derive(Default)]
pub struct LoadHooks<'a> {
    /// Returns true when a `socket` or `sockname` value names a local socket.
    pub socket_is_local: Option<SocketCheck<'a>>,
    /// Returns true when a host resolves; consulted only when `ds_dns_mode` is not 0 and the
    /// entry lacks flag 16 (no DNS). A host that does not resolve is refused like a bad URI.
    pub host_resolves: Option<ResolveCheck<'a>>,
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

fn digits(b: &[u8], mut i: usize) -> (usize, Option<u64>) {
    let mut v: u64 = 0;
    let mut ok = true;
    while i < b.len() && b[i].is_ascii_digit() {
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b[i] - b'0')))
        {
            Some(n) if n <= u64::from(u32::MAX) => v = n,
            _ => ok = false,
        }
        i += 1;
    }
    (i, ok.then_some(v))
}

/// Parses the text of a list file. `file` only names the file in errors.
pub fn parse_list(
    file: &str,
    text: &[u8],
    params: &DispatchParams,
    hooks: &LoadHooks<'_>,
) -> Result<LoadedList, ListErrors> {
    let mut out = LoadedList::default();
    let mut errors = Vec::new();
    for (n, raw) in text.split(|&c| c == b'\n').enumerate() {
        let line = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let err = |kind| ListError {
            file: file.to_owned(),
            line,
            row: false,
            kind,
        };
        if raw.len() > MAX_LINE {
            errors.push(err(ListErrorKind::LineTooLong(raw.len())));
            continue;
        }
        match parse_line(raw, params) {
            Ok(None) => {}
            Ok(Some(p)) => accept(&p, line, params, hooks, &err, &mut out, &mut errors),
            Err(kinds) => errors.extend(kinds.into_iter().map(err)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ListErrors(errors, out.warnings))
    }
}

/// A destination as read from one list line or one database row, before it is checked.
pub struct RawEntry<'a> {
    /// Set id.
    pub set: SetId,
    /// URI as written.
    pub uri: &'a [u8],
    /// Flags.
    pub flags: u32,
    /// Priority.
    pub priority: i32,
    /// Attribute string as written (may be empty).
    pub attrs: &'a [u8],
}

/// Checks one destination exactly as a list line is checked (attributes, URI with the `sip:`
/// retry, socket, resolution) and files it as an entry, a warning or an error by
/// `ds_load_mode`.
fn accept(
    p: &RawEntry<'_>,
    line: u32,
    params: &DispatchParams,
    hooks: &LoadHooks<'_>,
    err: &dyn Fn(ListErrorKind) -> ListError,
    out: &mut LoadedList,
    errors: &mut Vec<ListError>,
) {
    let mut aw = Vec::new();
    let attrs = Attrs::parse(p.attrs, params.ds_attrs_none, &mut aw);
    out.warnings
        .extend(aw.into_iter().map(|w| err(ListErrorKind::Attr(w))));
    let checked = check_uri(p.uri);
    let refused = match &checked {
        Err(reason) => Some(ListErrorKind::BadUri {
            uri: String::from_utf8_lossy(p.uri).into_owned(),
            reason: *reason,
        }),
        Ok((uri, dest)) => socket_refused(&attrs, hooks)
            .map(ListErrorKind::Socket)
            .or_else(|| unresolved(uri, dest, p.flags, params, hooks)),
    };
    match (refused, checked) {
        (Some(kind), _) if params.ds_load_mode == 1 => errors.push(err(kind)),
        (Some(kind), _) => out.warnings.push(err(kind)),
        (None, Ok((uri, dest))) => out.entries.push(ListEntry {
            set: p.set,
            uri,
            dest,
            flags: p.flags,
            priority: p.priority,
            attrs,
            line,
        }),
        (None, Err(_)) => unreachable!("refused is Some when the URI failed"),
    }
}

/// One row of a Kamailio `dispatcher` table as the database returned it (reference §2.7):
/// `None` is SQL NULL; integer columns a table version lacks are `Some(0)`, a missing attrs
/// column is `None`. `problems` carries column type errors found while reading the row.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The row's id (names the row in errors).
    pub id: i64,
    /// Set id column.
    pub set: Option<i64>,
    /// Destination column.
    pub uri: Option<Vec<u8>>,
    /// Flags column.
    pub flags: Option<i64>,
    /// Priority column.
    pub priority: Option<i64>,
    /// Attrs column, with `ds_db_extra_attrs` already appended.
    pub attrs: Option<Vec<u8>>,
    /// Type errors in this row's columns (each fails the load).
    pub problems: Vec<ListErrorKind>,
}

/// Column names, for messages about rows.
#[derive(Debug, Clone, Copy)]
pub struct RowColumns<'a> {
    /// Set id column.
    pub set: &'a str,
    /// Destination column.
    pub uri: &'a str,
}

/// Loads the rows of a database table, in the order the query returned them, with the list
/// file's rules per destination (reference §2.7): a NULL destination or a URI that does not
/// check is skipped (`ds_load_mode=0`) or fails the load (`1`); a set id, flags or priority
/// out of range or of the wrong type fails the load as a list line's does; NULL set id is set
/// 0 and NULL flags/priority are 0, as Kamailio reads them. `table` names the table in errors,
/// which carry the row id.
pub fn parse_rows(
    table: &str,
    cols: RowColumns<'_>,
    rows: &[Row],
    params: &DispatchParams,
    hooks: &LoadHooks<'_>,
) -> Result<LoadedList, ListErrors> {
    let mut out = LoadedList::default();
    let mut errors = Vec::new();
    for r in rows {
        let line = u32::try_from(r.id).unwrap_or(0);
        let err = |kind| ListError {
            file: table.to_owned(),
            line,
            row: true,
            kind,
        };
        let before = errors.len();
        errors.extend(r.problems.iter().cloned().map(err));
        let set = match r.set {
            None => {
                out.warnings
                    .push(err(ListErrorKind::NullSet(cols.set.into())));
                0
            }
            Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => v as u32,
            Some(_) => {
                errors.push(err(ListErrorKind::SetIdRange));
                0
            }
        };
        let flags = match r.flags.unwrap_or(0) {
            v if (0..=i64::from(u32::MAX)).contains(&v) => v as u32,
            _ => {
                errors.push(err(ListErrorKind::FlagsRange));
                0
            }
        };
        let priority = match i32::try_from(r.priority.unwrap_or(0)) {
            Ok(v) => v,
            Err(_) => {
                errors.push(err(ListErrorKind::PriorityRange));
                0
            }
        };
        if errors.len() > before {
            continue;
        }
        let Some(uri) = &r.uri else {
            let e = err(ListErrorKind::NullUri(cols.uri.into()));
            if params.ds_load_mode == 1 {
                errors.push(e);
            } else {
                out.warnings.push(e);
            }
            continue;
        };
        let raw = RawEntry {
            set: SetId(set),
            uri,
            flags,
            priority,
            attrs: r.attrs.as_deref().unwrap_or_default(),
        };
        accept(&raw, line, params, hooks, &err, &mut out, &mut errors);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ListErrors(errors, out.warnings))
    }
}

fn socket_refused(attrs: &Attrs, hooks: &LoadHooks<'_>) -> Option<String> {
    let check = hooks.socket_is_local?;
    let s = attrs.sockname.as_deref().or(attrs.socket.as_deref())?;
    (!check(s)).then(|| String::from_utf8_lossy(s).into_owned())
}

fn unresolved(
    uri: &[u8],
    dest: &DestUri,
    flags: u32,
    params: &DispatchParams,
    hooks: &LoadHooks<'_>,
) -> Option<ListErrorKind> {
    let resolves = hooks.host_resolves?;
    if params.ds_dns_mode == 0 || flags & super::state::Flags::NODNS != 0 {
        return None;
    }
    let host = &uri[dest.host.clone()];
    (!resolves(host, dest.port))
        .then(|| ListErrorKind::Unresolved(String::from_utf8_lossy(host).into_owned()))
}

/// The URI as a list entry stores it (with `sip:` prepended when Kamailio's retry applies),
/// or `None` when it is not a usable destination.
pub fn normalize_uri(tok: &[u8]) -> Option<Box<[u8]>> {
    check_uri(tok).ok().map(|(u, _)| u)
}

/// Checks a URI token, retrying with `sip:` as Kamailio does.
fn check_uri(tok: &[u8]) -> Result<(Box<[u8]>, DestUri), UriError> {
    match uri::check(tok) {
        Ok(d) => Ok((tok.into(), d)),
        Err(e) => {
            if tok.len() > 4 && tok.len() < 500 && !tok.starts_with(b"sip:") {
                let mut v = Vec::with_capacity(tok.len() + 4);
                v.extend_from_slice(b"sip:");
                v.extend_from_slice(tok);
                if let Ok(d) = uri::check(&v) {
                    return Ok((v.into(), d));
                }
            }
            Err(e)
        }
    }
}

fn parse_line<'a>(
    b: &'a [u8],
    params: &DispatchParams,
) -> Result<Option<RawEntry<'a>>, Vec<ListErrorKind>> {
    let mut errs = Vec::new();
    let mut i = skip_blank(b, 0);
    if i == b.len() || b[i] == b'#' {
        return Ok(None);
    }
    let (j, set) = digits(b, i);
    let set = match set {
        Some(v) if v <= i32::MAX as u64 => v as u32,
        _ => {
            errs.push(ListErrorKind::SetIdRange);
            0
        }
    };
    i = skip_blank(b, j);
    if i == b.len() || b[i] == b'#' {
        errs.push(ListErrorKind::MissingUri);
        return Err(errs);
    }
    let us = i;
    while i < b.len() && !is_blank(b[i]) && b[i] != b'#' {
        i += 1;
    }
    let uri = &b[us..i];
    let mut line = RawEntry {
        set: SetId(set),
        uri,
        flags: 0,
        priority: 0,
        attrs: &[],
    };
    i = skip_blank(b, i);
    if i < b.len() && b[i] != b'#' {
        let hex = params.hex_flags
            && b[i] == b'0'
            && matches!(b.get(i + 1), Some(b'x' | b'X'))
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if hex {
            let mut v: u64 = 0;
            i += 2;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                v = (v << 4) | u64::from((b[i] as char).to_digit(16).unwrap_or(0));
                v = v.min(u64::from(u32::MAX) + 1);
                i += 1;
            }
            match u32::try_from(v) {
                Ok(v) => line.flags = v,
                Err(_) => errs.push(ListErrorKind::FlagsRange),
            }
        } else {
            let (j, v) = digits(b, i);
            i = j;
            match v {
                Some(v) => line.flags = v as u32,
                None => errs.push(ListErrorKind::FlagsRange),
            }
        }
        i = skip_blank(b, i);
        if i < b.len() && b[i] != b'#' {
            let (j, v) = digits(b, i);
            i = j;
            match v {
                Some(v) if v <= i32::MAX as u64 => line.priority = v as i32,
                _ => errs.push(ListErrorKind::PriorityRange),
            }
            i = skip_blank(b, i);
            if i < b.len() && b[i] != b'#' {
                let s = i;
                while i < b.len() && !is_blank(b[i]) {
                    i += 1;
                }
                line.attrs = &b[s..i];
            }
        }
    }
    if errs.is_empty() {
        Ok(Some(line))
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, params: &DispatchParams) -> Result<LoadedList, ListErrors> {
        parse_list("d.list", text.as_bytes(), params, &LoadHooks::default())
    }

    fn ok(text: &str) -> LoadedList {
        load(text, &DispatchParams::default()).unwrap()
    }

    fn summary(l: &LoadedList) -> Vec<(u32, String, u32, i32, String)> {
        l.entries
            .iter()
            .map(|e| {
                (
                    e.set.0,
                    String::from_utf8_lossy(&e.uri).into_owned(),
                    e.flags,
                    e.priority,
                    e.attrs
                        .body
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn reference_edge_case_file() {
        // §14 item 22 (without the fatal lines, tested separately).
        let text = "# comment\n\n  \t\n1 10.0.0.9:5070\n1sip:x\nabc sip:y\n1 sip:z # c\n\
                    1 sip:h duid=a;weight=30\n1\tsip:t\t8\t3\tx=1\tjunk here\n\
                    2 sip:p 0 -5 weight=5\n-1 sip:n\n1 sip:h 12abc\n3 sip:q 1 2 #not-a-comment\n\
                    4 sip:r 1 2 # c\n";
        let l = ok(text);
        let s = summary(&l);
        let e = |set, uri: &str, f, p, a: &str| (set, uri.to_string(), f, p, a.to_string());
        assert_eq!(
            s,
            vec![
                e(1, "sip:10.0.0.9:5070", 0, 0, ""),
                e(1, "sip:x", 0, 0, ""),
                e(1, "sip:z", 0, 0, ""),
                e(1, "sip:h", 0, 0, "duid=a;weight=30"),
                e(1, "sip:t", 8, 3, "x=1"),
                e(2, "sip:p", 0, 0, "-5"),
                e(1, "sip:h", 12, 0, "abc"),
                e(3, "sip:q", 1, 2, ""), // a `#` where attrs would start ends the line
                e(4, "sip:r", 1, 2, ""),
            ]
        );
        assert_eq!(l.entries[3].attrs.weight, 30);
        // `abc` and `-1` are set 0 URIs that do not check and are too short for `sip:`.
        let bad: Vec<_> = l.warnings.iter().map(|w| (w.line, w.to_string())).collect();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].0, 6);
        assert!(
            bad[0].1.starts_with("d.list:6: uri: \"abc\""),
            "{}",
            bad[0].1
        );
        assert_eq!(bad[1].0, 11);
    }

    #[test]
    fn hex_flags_master_vs_5_6_3() {
        let l = ok("1 sip:h 0x10\n1 sip:h 0X1f 4\n");
        assert_eq!((l.entries[0].flags, l.entries[1].flags), (16, 31));
        assert_eq!(l.entries[1].priority, 4);
        let p = DispatchParams {
            hex_flags: false,
            ..Default::default()
        };
        let l = load("1 sip:h 0x10\n", &p).unwrap();
        assert_eq!(l.entries[0].flags, 0);
        assert_eq!(l.entries[0].attrs.body.as_deref(), Some(&b"x10"[..]));
    }

    #[test]
    fn bad_line_fails_whole_load_and_all_errors_are_reported() {
        for mode in [0, 1] {
            let p = DispatchParams {
                ds_load_mode: mode,
                ..Default::default()
            };
            let long = format!("1 sip:{}\n", "y".repeat(1100));
            let text = format!("1 sip:a\n7\n{long}9 # only a comment\n99999999999 sip:b\n");
            let e = load(&text, &p).unwrap_err();
            let lines: Vec<_> = e.0.iter().map(|e| e.line).collect();
            assert_eq!(lines, vec![2, 3, 4, 5]);
            assert_eq!(e.0[0].kind, ListErrorKind::MissingUri);
            assert!(matches!(e.0[1].kind, ListErrorKind::LineTooLong(1106)));
            assert_eq!(e.0[3].kind, ListErrorKind::SetIdRange);
            assert!(
                e.to_string()
                    .contains("d.list:2: uri: expected a destination URI")
            );
        }
    }

    #[test]
    fn load_mode_one_fails_on_a_bad_uri() {
        let p = DispatchParams {
            ds_load_mode: 1,
            ..Default::default()
        };
        let e = load("1 sip:a\n1 sip:[::1\n2 abc\n", &p).unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert!(matches!(e.0[0].kind, ListErrorKind::BadUri { .. }));
        let l = ok("1 sip:a\n1 sip:[::1\n");
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn line_of_exactly_1023_bytes_is_fine() {
        let uri = format!("sip:{}", "h".repeat(200));
        let line = format!("1 {uri} 0 0 x={}", "v".repeat(1023 - 2 - uri.len() - 7));
        assert_eq!(line.len(), 1023);
        assert_eq!(ok(&line).entries.len(), 1);
    }

    #[test]
    fn socket_hook_and_weight_warning() {
        let local = |s: &[u8]| s == b"udp:127.0.0.1:5060";
        let hooks = LoadHooks {
            socket_is_local: Some(&local),
            host_resolves: None,
        };
        let text = b"1 sip:a 0 0 socket=udp:127.0.0.1:5060\n1 sip:b 0 0 socket=udp:10.9.9.9:5060\n1 sip:c 0 0 weight=500\n";
        let l = parse_list("x", text, &DispatchParams::default(), &hooks).unwrap();
        assert_eq!(l.entries.len(), 2);
        assert!(matches!(l.warnings[0].kind, ListErrorKind::Socket(_)));
        assert!(matches!(l.warnings[1].kind, ListErrorKind::Attr(_)));
    }

    #[test]
    fn unresolvable_hosts_are_rejected_like_kamailio() {
        let resolves = |h: &[u8], _p: Option<u16>| h != b"gone.invalid";
        let hooks = LoadHooks {
            socket_is_local: None,
            host_resolves: Some(&resolves),
        };
        // Flag 16 (no DNS) keeps the entry whatever the resolver says.
        let text = b"1 sip:gone.invalid\n1 sip:ok.example\n1 sip:gone.invalid:5070 16\n";
        let mut params = DispatchParams::default();
        let l = parse_list("x", text, &params, &hooks).unwrap();
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.entries[0].line, 2);
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(
            l.warnings[0].to_string(),
            "x:1: uri: host \"gone.invalid\" does not resolve (destination rejected, as Kamailio does)"
        );
        params.ds_load_mode = 1;
        let e = parse_list("x", text, &params, &hooks).unwrap_err();
        assert!(matches!(e.0[0].kind, ListErrorKind::Unresolved(_)), "{e}");
        params.ds_load_mode = 0;
        params.ds_dns_mode = 0;
        assert_eq!(
            parse_list("x", text, &params, &hooks)
                .unwrap()
                .entries
                .len(),
            3
        );
    }

    #[test]
    fn empty_file_is_fine() {
        assert!(ok("").entries.is_empty());
        assert!(ok("# nothing\n\n").entries.is_empty());
    }
}
