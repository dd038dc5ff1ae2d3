//! Typed reads from the spanned TOML tree, every failure recorded with its position.
//!
//! Decoding walks `toml::de::DeTable` by hand instead of deriving `Deserialize` for whole
//! sections: serde stops at the first error, while an operator wants every bad key of a file in
//! one run. Each getter returns `None` after recording an error, so the caller keeps going.

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ErrorKind, position};

/// A spanned TOML value.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Collects errors for one file.
pub(crate) struct Ctx<'s> {
    pub file: String,
    pub text: &'s str,
    pub errors: Vec<ConfigError>,
}

/// A table being read, with its dotted path (`server`, `route[2]`).
pub(crate) struct Table<'t, 'i> {
    pub path: String,
    pub table: &'t DeTable<'i>,
    pub span: Range<usize>,
}

impl<'t, 'i> Table<'t, 'i> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// `path.key`.
    pub fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'s> Ctx<'s> {
    pub fn new(file: String, text: &'s str) -> Self {
        Self {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// Records an error at the start of `span`.
    pub fn error(&mut self, span: &Range<usize>, key: &str, kind: ErrorKind) {
        let (line, col) = position(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            col,
            key: key.to_owned(),
            kind,
        });
    }

    /// Records a bad value.
    pub fn bad(&mut self, span: &Range<usize>, key: &str, expected: impl Into<String>, got: &str) {
        self.error(
            span,
            key,
            ErrorKind::BadValue {
                expected: expected.into(),
                got: got.to_owned(),
            },
        );
    }

    /// Reports that `v` has the wrong TOML type: `expected` says what would have been right.
    pub fn wrong_type(&mut self, v: &Value<'_>, key: &str, expected: &'static str) {
        let got = type_name(v.get_ref());
        self.error(&v.span(), key, ErrorKind::WrongType { expected, got });
    }

    /// Opens `v` as a table, reporting every key not in `known` (or answered by `special`).
    pub fn table<'t, 'i>(
        &mut self,
        path: String,
        v: &'t Value<'i>,
        known: &[&str],
        special: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Table<'t, 'i>> {
        let DeValue::Table(table) = v.get_ref() else {
            self.wrong_type(v, &path, "a table");
            return None;
        };
        let t = Table {
            path,
            table,
            span: v.span(),
        };
        for k in table.keys() {
            let name = k.get_ref().as_ref();
            if known.contains(&name) {
                continue;
            }
            let kind = match special(name) {
                Some(why) => ErrorKind::Unsupported(why),
                None => ErrorKind::UnknownKey(known.join(", ")),
            };
            self.error(&k.span(), &t.key(name), kind);
        }
        Some(t)
    }

    /// A string.
    pub fn string(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(v, key, "a string");
                None
            }
        }
    }

    /// An integer within `range`.
    pub fn int(&mut self, key: &str, v: &Value<'_>, range: RangeInclusive<i64>) -> Option<i64> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(v, key, "an integer");
            return None;
        };
        let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
        match n {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                let want = format!("an integer in {}..={}", range.start(), range.end());
                self.bad(&v.span(), key, want, &i.to_string());
                None
            }
        }
    }

    /// A Kamailio-style boolean: `true`/`false` or `1`/`0`.
    pub fn flag(&mut self, key: &str, v: &Value<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            DeValue::Integer(_) => self.int(key, v, 0..=1).map(|n| n == 1),
            _ => {
                self.wrong_type(v, key, "a boolean (true/false or 1/0)");
                None
            }
        }
    }

    /// Whole seconds (Kamailio's unit), 0 included.
    pub fn seconds(&mut self, key: &str, v: &Value<'_>) -> Option<Duration> {
        self.int(key, v, 0..=i64::from(u32::MAX))
            .map(|n| Duration::from_secs(n.unsigned_abs()))
    }

    /// An array of strings, each with its span.
    pub fn strings(&mut self, key: &str, v: &Value<'_>) -> Option<Vec<(String, Range<usize>)>> {
        let DeValue::Array(a) = v.get_ref() else {
            self.wrong_type(v, key, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(a.len());
        let mut ok = true;
        for item in a.iter() {
            match self.string(key, item) {
                Some(s) => out.push((s, item.span())),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Looks `key` up in `t` and reads it with `read`.
    pub fn at<'t, 'i, T>(
        &mut self,
        t: &Table<'t, 'i>,
        key: &str,
        read: impl FnOnce(&mut Self, &str, &'t Value<'i>) -> Option<T>,
    ) -> Option<T> {
        let v = t.get(key)?;
        read(self, &t.key(key), v)
    }
}
