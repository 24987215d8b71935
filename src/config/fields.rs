//! The field walker every section parser uses, and the problems it collects.
//!
//! [`Fields`] reads one TOML table: each typed getter records a [`Problem`] with the field's full
//! path instead of failing, and [`Fields::finish`] reports the keys nobody asked for. Values from
//! the environment arrive as strings, so every getter also parses its type from a string.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::namespace::Namespace;

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field path (`server.listen`), or the file for whole-file problems.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Reads the fields of one table, recording problems and which keys were used.
pub(crate) struct Fields<'a> {
    path: String,
    table: Option<&'a toml::Table>,
    used: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(path: impl Into<String>, table: Option<&'a toml::Table>) -> Self {
        Self {
            path: path.into(),
            table,
            used: BTreeSet::new(),
        }
    }

    pub(crate) fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn raw(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.used.insert(key);
        self.table.and_then(|table| table.get(key))
    }

    /// The table `key` of per-namespace tables (`[KEY."name"]`): each entry whose name is `*`
    /// or a valid namespace and whose value is a table, with its problem path. A problem is
    /// recorded for every other entry (a bad name still has its table returned, so its fields
    /// are checked too).
    pub(crate) fn namespace_tables(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Vec<(&'a String, String, &'a toml::Table)> {
        let Some(namespaces) = self.table(key, problems) else {
            return Vec::new();
        };
        let prefix = self.field_path(key);
        let mut tables = Vec::with_capacity(namespaces.len());
        for (name, value) in namespaces {
            let path = format!("{prefix}.{}", path_segment(name));
            if name != "*"
                && let Err(error) = Namespace::new(name)
            {
                problems.push(Problem {
                    path: path.clone(),
                    message: error.to_string(),
                });
            }
            match value {
                toml::Value::Table(table) => tables.push((name, path, table)),
                other => problems.push(Problem {
                    path,
                    message: format!("expected a table, found {}", other.type_str()),
                }),
            }
        }
        tables
    }

    pub(crate) fn problem(
        &self,
        problems: &mut Vec<Problem>,
        key: &str,
        message: impl Into<String>,
    ) {
        problems.push(Problem {
            path: self.field_path(key),
            message: message.into(),
        });
    }

    pub(crate) fn string(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<String> {
        match self.raw(key)? {
            toml::Value::String(text) => Some(text.clone()),
            other => {
                self.problem(
                    problems,
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Reads `key` with `parse`; when it does not parse, records "expected {expected}, found
    /// {value}".
    fn typed<T>(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
        expected: &str,
        parse: impl FnOnce(&toml::Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.raw(key)?;
        let parsed = parse(value);
        if parsed.is_none() {
            self.problem(problems, key, format!("expected {expected}, found {value}"));
        }
        parsed
    }

    pub(crate) fn unsigned(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<u64> {
        let expected = "a non-negative integer (or a size like \"8MiB\")";
        self.typed(key, problems, expected, |value| match value {
            toml::Value::Integer(number) => u64::try_from(*number).ok(),
            toml::Value::String(text) => parse_size(text),
            _ => None,
        })
    }

    pub(crate) fn boolean(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<bool> {
        self.typed(key, problems, "true or false", |value| match value {
            toml::Value::Boolean(flag) => Some(*flag),
            toml::Value::String(text) => match text.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        })
    }

    pub(crate) fn duration(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<Duration> {
        let expected = "a duration like \"1.5s\", \"10m\", \"24h\" or whole seconds";
        self.typed(key, problems, expected, |value| match value {
            toml::Value::Integer(seconds) => u64::try_from(*seconds).ok().map(Duration::from_secs),
            toml::Value::String(text) => parse_duration(text),
            _ => None,
        })
    }

    pub(crate) fn strings(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<Vec<String>> {
        let value = self.raw(key)?;
        match value {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(text) => out.push(text.to_owned()),
                        None => {
                            self.problem(problems, &format!("{key}[{index}]"), "expected a string")
                        }
                    }
                }
                Some(out)
            }
            // From the environment: a comma-separated list.
            toml::Value::String(text) => Some(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            other => {
                self.problem(
                    problems,
                    key,
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(crate) fn socket(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<SocketAddr> {
        let text = self.string(key, problems)?;
        match text.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.problem(
                    problems,
                    key,
                    format!("expected an address like 127.0.0.1:8089, found {text:?}"),
                );
                None
            }
        }
    }

    pub(crate) fn table(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<&'a toml::Table> {
        match self.raw(key)? {
            toml::Value::Table(table) => Some(table),
            other => {
                self.problem(
                    problems,
                    key,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Marks keys as read elsewhere (a table that two parsers share), so [`Fields::finish`]
    /// does not call them unknown.
    pub(crate) fn read_elsewhere(&mut self, keys: &[&'static str]) {
        self.used.extend(keys);
    }

    /// Reports keys nobody asked for.
    pub(crate) fn finish(self, problems: &mut Vec<Problem>) {
        let Some(table) = self.table else { return };
        for key in table.keys() {
            if !self.used.contains(key.as_str()) {
                let expected: Vec<_> = self.used.iter().copied().collect();
                problems.push(Problem {
                    path: self.field_path(key),
                    message: format!("unknown field (expected one of: {})", expected.join(", ")),
                });
            }
        }
    }
}

/// Parses `"512"`, `"64KiB"`, `"8MiB"`, `"1GiB"`, `"10kB"`, `"5MB"`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// Parses a duration as operators write them: `"250ms"`, `"1.5s"`, `"10m"`, `"1h30m"`, `"7d"`
/// (humantime's syntax, up to weeks: months and years vary in length, and `"1M"` next to `"1m"`
/// is a typo waiting to happen), or bare seconds (`"30"`, `"0.5"`). Negative, non-finite and
/// absurd (over 30,000 years) values are refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    const UNITS: &[&str] = &[
        "nsec", "ns", "usec", "us", "µs", "msec", "ms", "seconds", "second", "sec", "s", "minutes",
        "minute", "min", "m", "hours", "hour", "hr", "h", "days", "day", "d", "weeks", "week", "w",
    ];
    let text = text.trim();
    let units_known = text
        .split(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
        .filter(|unit| !unit.is_empty())
        .all(|unit| UNITS.contains(&unit));
    let duration = if !units_known {
        return None;
    } else if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = text.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::try_from_secs_f64(seconds))?
            .ok()?
    } else {
        humantime::parse_duration(text).ok()?
    };
    (duration.as_secs() < 1_000_000_000_000).then_some(duration)
}

/// A table key as a segment of a problem's path: bare when it is a plain word, quoted otherwise.
pub(crate) fn path_segment(name: &str) -> String {
    if is_bare_key(name) {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// Whether `name` can stand as a bare TOML key (letters, digits, `_` and `-`).
pub(crate) fn is_bare_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
