//! The list file as a source: appending and removing destination lines for
//! `persist_rpc_changes` (comments and every other line kept), written atomically.

use std::io::Write;
use std::path::Path;

use crate::dispatch::{DispatchParams, LoadHooks, SetId, parse_list};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
