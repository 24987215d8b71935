//! Temporal namespace names: the one rule every entry point checks (configuration, HTTP headers
//! and paths, gRPC metadata, the admin API, the CLI), and the one message that explains it.
//!
//! A namespace name is 1 to 255 bytes of printable characters without white space or `/`. The
//! sealed header stores the name's length in one byte and binds the name into every payload's
//! authenticated data; `/` is refused so a name is one path segment.

use std::fmt;

/// The longest namespace name in bytes (the sealed header's length byte).
pub const MAX_LEN: usize = 255;

/// What a valid name looks like, for messages.
pub const RULE: &str = "1-255 printable characters, no spaces or '/'";

/// How much of a refused name an error message repeats (a header may be kilobytes long).
const SHOWN: usize = 64;

/// A valid namespace name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Checks `name` against the rule.
    pub fn new(name: &str) -> Result<Self, InvalidNamespace> {
        if is_valid(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidNamespace::of(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Is `name` a valid namespace name? (See the module comment.)
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '/')
}

/// A name that breaks the rule. Displays as `"bad name" is not a valid namespace (RULE)`, with
/// at most 64 characters of the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidNamespace {
    shown: String,
}

impl InvalidNamespace {
    fn of(name: &str) -> Self {
        let mut shown: String = name.chars().take(SHOWN).collect();
        if shown.len() < name.len() {
            shown.push('…');
        }
        Self { shown }
    }
}

impl fmt::Display for InvalidNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a valid namespace ({RULE})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert!(is_valid("default"));
        assert!(is_valid("payments.a1b2c"));
        assert!(is_valid(&"n".repeat(255)));
        assert!(!is_valid(""));
        assert!(!is_valid("has space"));
        assert!(!is_valid("a/b"));
        assert!(!is_valid("tab\there"));
        assert!(!is_valid(&"n".repeat(256)));
        assert_eq!(Namespace::new("orders").unwrap().as_str(), "orders");
    }

    #[test]
    fn the_message_names_the_rule_and_a_bounded_part_of_the_name() {
        let error = Namespace::new("bad name").unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"bad name\" is not a valid namespace (1-255 printable characters, no spaces or '/')"
        );
        let long = Namespace::new(&"x/".repeat(1000)).unwrap_err().to_string();
        assert!(long.len() < 200, "{long}");
        assert!(long.contains('…'));
    }
}
