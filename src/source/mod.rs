//! Where destinations come from: Kamailio's list file or its `dispatcher` database table
//! (issue 16). The two are alternatives, as in Kamailio (`list_file` or `db_url`).
//!
//! A [`Source`] reads *and checks* every destination ([`Source::load`]), with the list file's
//! rules per entry (`dispatch::parse_list`, `dispatch::parse_rows`), and writes
//! `dispatcher.add`/`remove` back when `persist_rpc_changes` asks ([`Source::persist_add`],
//! [`Source::persist_remove`]). Everything here blocks (file and database I/O): it runs on the
//! control side (start, reload, RPC, the watcher and the PostgreSQL listener), never on a
//! worker. The database drivers live in [`db`], each behind its Cargo feature.

pub mod db;
pub mod file;

use std::path::{Path, PathBuf};

use crate::dispatch::{DispatchParams, ListErrors, LoadHooks, LoadedList, parse_list};

pub use db::{DbError, DbSource, DbUrl};

/// A destination source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `list_file`.
    File(PathBuf),
    /// `db_url` and its table.
    Db(Box<DbSource>),
}

/// Why a source could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file or database could not be read (nothing was checked).
    #[error("{0}")]
    Unavailable(String),
    /// Entries have errors (every one listed).
    #[error("{0}")]
    Invalid(ListErrors),
}

impl Source {
    /// Names the source in messages (the file path, or the table and the URL without its
    /// password).
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Db(d) => d.name(),
        }
    }

    /// The list file, when the source is one.
    pub fn list_file(&self) -> Option<&Path> {
        match self {
            Source::File(p) => Some(p),
            Source::Db(_) => None,
        }
    }

    /// Reads and checks every destination. Blocking (control side only).
    pub fn load(
        &self,
        params: &DispatchParams,
        hooks: &LoadHooks<'_>,
    ) -> Result<LoadedList, SourceError> {
        match self {
            Source::File(path) => {
                let text = std::fs::read(path).map_err(|e| {
                    SourceError::Unavailable(format!(
                        "cannot read destination list {}: {e}",
                        path.display()
                    ))
                })?;
                parse_list(&self.name(), &text, params, hooks).map_err(SourceError::Invalid)
            }
            Source::Db(d) => d.load(params, hooks),
        }
    }

    /// `dispatcher.add` with `persist_rpc_changes`: appends the destination to the list file
    /// (comments kept, atomically) or inserts the row (in a transaction). `line` is the list
    /// line for a file.
    pub fn persist_add(&self, row: &db::NewRow<'_>) -> Result<(), String> {
        match self {
            Source::File(path) => {
                let line = row.list_line();
                edit_file(path, |text| file::with_added(text, &line))
            }
            Source::Db(d) => d.insert(row).map_err(|e| e.to_string()),
        }
    }

    /// `dispatcher.remove` with `persist_rpc_changes`: drops every line or row of `set` whose
    /// destination, normalised like a list entry, is byte-equal to `uri` (in one transaction
    /// for a database).
    pub fn persist_remove(
        &self,
        set: u32,
        uri: &[u8],
        params: &DispatchParams,
    ) -> Result<(), String> {
        match self {
            Source::File(path) => edit_file(path, |text| {
                file::with_removed(text, crate::dispatch::SetId(set), uri, params)
            }),
            Source::Db(d) => d.delete(set, uri).map_err(|e| e.to_string()),
        }
    }
}

fn edit_file(path: &Path, edit: impl FnOnce(&[u8]) -> Vec<u8>) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    file::write_atomic(path, &edit(&text))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
