//! `--name value` and `--flag` arguments, repeatable, without a dependency.

use std::str::FromStr;

pub struct Args(Vec<String>);

impl Args {
    pub fn new(v: Vec<String>) -> Args {
        Args(v)
    }

    /// Every value given for `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].as_str())
            .collect()
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.all(name).last().copied()
    }

    /// The last value of `name`, parsed.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.get_str(name)
            .map(|v| v.parse().map_err(|_| format!("{name}: bad value {v:?}")))
            .transpose()
    }

    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}
