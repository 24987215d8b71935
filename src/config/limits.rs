//! Data key limits and compression, in `[data_keys]` (the defaults) and in each namespace's
//! table, read into the keyring's [`Limits`].

use std::time::Duration;

use super::fields::{Fields, Problem};
use crate::compression::{self, MAX_LEVEL};
use crate::envelope::Format;
use crate::keyring::{Limits, NIST_MAX_INVOCATIONS};

/// Parses the limit fields of `fields`' table over `defaults`; `other_keys` are the table's
/// fields read by someone else (a namespace's `provider` and `key`).
pub(super) fn parse(
    mut fields: Fields<'_>,
    defaults: &Limits,
    other_keys: &[&'static str],
    problems: &mut Vec<Problem>,
) -> Limits {
    fields.read_elsewhere(other_keys);
    let soft = fields
        .unsigned("soft_limit", problems)
        .unwrap_or(defaults.soft_limit);
    let hard = fields
        .unsigned("hard_limit", problems)
        .unwrap_or(defaults.hard_limit);
    let max_age = fields
        .duration("max_age", problems)
        .unwrap_or(defaults.max_age);
    let byte_limit = fields
        .unsigned("byte_limit", problems)
        .or(defaults.byte_limit);
    let wait = fields
        .duration("rotation_wait", problems)
        .unwrap_or(defaults.rotation_wait);
    let explicit_format = fields.unsigned("format", problems);
    let format = match explicit_format {
        None => defaults.format,
        Some(version) => match u8::try_from(version).ok().and_then(Format::from_version) {
            Some(format) => format,
            None => {
                fields.problem(
                    problems,
                    "format",
                    format!("expected 1, 2 or 3 (the sealed payload format), found {version}"),
                );
                defaults.format
            }
        },
    };
    let compression = parse_compression(&mut fields, defaults.compression, problems);
    if compression.is_some()
        && matches!(format, Format::V1 | Format::V2)
        && explicit_format.is_some()
    {
        fields.problem(
            problems,
            "format",
            "compression = \"zstd\" seals in format 3 (only it records compression): set \
             format = 3 or leave it out",
        );
    }
    if hard > NIST_MAX_INVOCATIONS {
        fields.problem(
            problems,
            "hard_limit",
            format!("{hard} exceeds 2^32 = {NIST_MAX_INVOCATIONS}, the NIST SP 800-38D section 8.3 bound"),
        );
    }
    if hard == 0 {
        fields.problem(problems, "hard_limit", "must be at least 1");
    }
    if soft == 0 || soft > hard {
        fields.problem(
            problems,
            "soft_limit",
            format!("must be between 1 and hard_limit ({hard}), found {soft}"),
        );
    }
    if max_age < Duration::from_secs(1) {
        fields.problem(problems, "max_age", "must be at least 1s");
    }
    if byte_limit == Some(0) {
        fields.problem(problems, "byte_limit", "must be at least 1");
    }
    fields.finish(problems);
    Limits {
        format,
        compression,
        ..Limits::new(soft, hard, max_age, byte_limit, wait)
    }
}

/// `compression` (`"zstd"` or `"none"`), `compression_level` and `compression_min_size` of a
/// `[data_keys]` or namespace table; unset fields inherit `defaults` (docs/configuration.md).
fn parse_compression(
    fields: &mut Fields<'_>,
    defaults: Option<compression::Settings>,
    problems: &mut Vec<Problem>,
) -> Option<compression::Settings> {
    let mut compression = match fields.string("compression", problems).as_deref() {
        None => defaults,
        Some("zstd") => Some(defaults.unwrap_or_default()),
        Some("none") => None,
        Some(other) => {
            fields.problem(
                problems,
                "compression",
                format!("expected \"zstd\" or \"none\", found {other:?}"),
            );
            defaults
        }
    };
    let level = fields.unsigned("compression_level", problems);
    let min_size = fields.unsigned("compression_min_size", problems);
    if let Some(level) = level {
        match i32::try_from(level)
            .ok()
            .filter(|level| (1..=MAX_LEVEL).contains(level))
        {
            None => fields.problem(
                problems,
                "compression_level",
                format!("expected a zstd level from 1 to {MAX_LEVEL}, found {level}"),
            ),
            Some(level) => match &mut compression {
                Some(settings) => settings.level = level,
                None => fields.problem(
                    problems,
                    "compression_level",
                    "set compression = \"zstd\" for a level to apply",
                ),
            },
        }
    }
    if let Some(min_size) = min_size {
        match &mut compression {
            Some(settings) => {
                settings.min_size = usize::try_from(min_size).unwrap_or(usize::MAX);
            }
            None => fields.problem(
                problems,
                "compression_min_size",
                "set compression = \"zstd\" for a minimum size to apply",
            ),
        }
    }
    compression
}
