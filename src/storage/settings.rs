//! The configuration of external storage (`[external_storage]`), owned here and parsed for
//! `config`, which reports every problem at once.
//!
//! ```toml
//! [[external_storage.drivers]]
//! name = "aws.s3driver"          # the driver_name in references
//! kind = "s3"
//! region = "us-east-1"
//! endpoint = "http://127.0.0.1:9000"   # optional
//! force_path_style = true               # optional
//! buckets = ["temporal-payloads"]       # allowlist: a claim naming another bucket is refused
//! max_object_bytes = "50MiB"
//!
//! [external_storage.namespaces.orders]  # optional; "*" for every other namespace
//! drivers = ["aws.s3driver"]            # drivers this namespace may read through
//! buckets = ["orders-payloads"]         # buckets this namespace may read (within the allowlist)
//! offload_threshold = "256KiB"          # encode stores sealed payloads at or over this size
//! offload_driver = "aws.s3driver"       # default: the only driver
//! offload_bucket = "orders-payloads"    # default: the namespace's (else the driver's) first bucket
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Fields, Problem, path_segment, valid_namespace};
use crate::keys::aws_kms::AwsKmsOptions;

/// The largest object a driver reads by default, as the SDKs' drivers refuse to store more.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 50 << 20;
/// Default S3 operation timeout (every retry included): an object may be tens of megabytes.
pub const DEFAULT_S3_TIMEOUT: Duration = Duration::from_secs(30);

/// `[external_storage]`: the drivers and the per-namespace rules. Empty: external storage is
/// off, and references pass through every operation untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageSettings {
    /// The drivers, in configuration order; names are unique.
    pub drivers: Vec<DriverSettings>,
    /// Per-namespace rules; `*` applies to every namespace without its own entry.
    pub namespaces: BTreeMap<String, NamespaceStorage>,
}

impl StorageSettings {
    /// Whether any driver is configured.
    pub fn is_enabled(&self) -> bool {
        !self.drivers.is_empty()
    }

    /// The rules for `namespace`: its own entry, else `*`, else none (every driver and bucket
    /// of the allowlists, no offload).
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceStorage> {
        self.namespaces
            .get(namespace)
            .or_else(|| self.namespaces.get("*"))
    }
}

/// One `[[external_storage.drivers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSettings {
    /// The `driverName` references carry (`aws.s3driver`).
    pub name: String,
    /// The backend and its settings.
    pub kind: DriverKind,
    /// The buckets the driver may read and write: the allowlist. Never empty.
    pub buckets: Vec<String>,
    /// The largest object read; a larger one is refused before its body is read.
    pub max_object_bytes: u64,
}

/// The backend of a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverKind {
    /// Amazon S3 (or an S3-compatible store), with the AWS SDK's credential chain.
    S3(S3Settings),
}

/// An S3 driver's client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Region, endpoint, profile, timeouts and retries: the same settings (and the same
    /// credential chain) as the AWS KMS provider.
    pub aws: AwsKmsOptions,
    /// Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    pub force_path_style: bool,
}

/// `[external_storage.namespaces.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceStorage {
    /// Drivers the namespace may read through; `None`: every driver.
    pub drivers: Option<Vec<String>>,
    /// Buckets the namespace may read; `None`: every bucket of the driver's allowlist.
    pub buckets: Option<Vec<String>>,
    /// Encode offloads sealed payloads of at least this many bytes; `None`: never.
    pub offload_threshold: Option<u64>,
    /// The driver encode stores through.
    pub offload_driver: Option<String>,
    /// The bucket encode stores in.
    pub offload_bucket: Option<String>,
}

/// Is `name` a plausible S3 bucket name (3-63 characters of lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit)?
pub fn valid_bucket(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Parses `[external_storage]`, recording every problem.
pub(crate) fn parse(table: &toml::Table, problems: &mut Vec<Problem>) -> StorageSettings {
    let mut settings = StorageSettings::default();
    let mut fields = Fields::new("external_storage", Some(table));
    match fields.raw("drivers") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let path = format!("external_storage.drivers[{index}]");
                let toml::Value::Table(driver) = item else {
                    problems.push(Problem {
                        path,
                        message: format!("expected a table, found {}", item.type_str()),
                    });
                    continue;
                };
                if let Some(driver) = parse_driver(&path, driver, problems) {
                    if settings.drivers.iter().any(|d| d.name == driver.name) {
                        problems.push(Problem {
                            path: format!("{path}.name"),
                            message: format!("driver {:?} is configured twice", driver.name),
                        });
                    } else {
                        settings.drivers.push(driver);
                    }
                }
            }
        }
        Some(other) => fields.problem(
            problems,
            "drivers",
            format!(
                "expected an array of tables ([[external_storage.drivers]]), found {}",
                other.type_str()
            ),
        ),
    }
    if let Some(namespaces) = fields.table("namespaces", problems) {
        for (name, value) in namespaces {
            let path = format!("external_storage.namespaces.{}", path_segment(name));
            if name != "*" && !valid_namespace(name) {
                problems.push(Problem {
                    path: path.clone(),
                    message: "not a valid namespace name".to_owned(),
                });
            }
            let toml::Value::Table(table) = value else {
                problems.push(Problem {
                    path,
                    message: format!("expected a table, found {}", value.type_str()),
                });
                continue;
            };
            let rules = parse_namespace(&path, table, &settings.drivers, problems);
            settings.namespaces.insert(name.clone(), rules);
        }
    }
    fields.finish(problems);
    settings
}

fn parse_driver(
    path: &str,
    table: &toml::Table,
    problems: &mut Vec<Problem>,
) -> Option<DriverSettings> {
    let before = problems.len();
    let mut fields = Fields::new(path, Some(table));
    let name = fields.string("name", problems);
    match &name {
        None => fields.problem(
            problems,
            "name",
            "missing (the driver name references carry, like \"aws.s3driver\")",
        ),
        Some(name) if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) => {
            fields.problem(problems, "name", "must be 1-255 printable characters")
        }
        Some(_) => {}
    }
    let kind = fields.string("kind", problems);
    let buckets = fields.strings("buckets", problems).unwrap_or_default();
    if buckets.is_empty() {
        fields.problem(
            problems,
            "buckets",
            "missing or empty: list the buckets this driver may read (the allowlist)",
        );
    }
    for (index, bucket) in buckets.iter().enumerate() {
        if !valid_bucket(bucket) {
            fields.problem(
                problems,
                &format!("buckets[{index}]"),
                format!("{bucket:?} is not a valid bucket name"),
            );
        }
    }
    let max_object_bytes = match fields.unsigned("max_object_bytes", problems) {
        Some(0) => {
            fields.problem(problems, "max_object_bytes", "must be greater than zero");
            0
        }
        Some(max) => max,
        None => DEFAULT_MAX_OBJECT_BYTES,
    };
    let kind = match kind.as_deref() {
        Some("s3") => {
            let timeout_set = table.contains_key("timeout");
            let force_path_style = fields
                .boolean("force_path_style", problems)
                .unwrap_or(false);
            crate::config::parse_aws(&mut fields, problems).map(|mut aws| {
                if !timeout_set {
                    aws.timeout = DEFAULT_S3_TIMEOUT;
                }
                DriverKind::S3(S3Settings {
                    aws,
                    force_path_style,
                })
            })
        }
        Some(other) => {
            fields.problem(
                problems,
                "kind",
                format!("unknown driver kind {other:?} (expected: s3)"),
            );
            None
        }
        None => {
            fields.problem(problems, "kind", "missing (expected: s3)");
            None
        }
    };
    fields.finish(problems);
    let (Some(name), Some(kind)) = (name, kind) else {
        return None;
    };
    (problems.len() == before).then_some(DriverSettings {
        name,
        kind,
        buckets,
        max_object_bytes,
    })
}

fn parse_namespace(
    path: &str,
    table: &toml::Table,
    drivers: &[DriverSettings],
    problems: &mut Vec<Problem>,
) -> NamespaceStorage {
    let mut fields = Fields::new(path, Some(table));
    let known = |name: &str| drivers.iter().find(|driver| driver.name == name);
    let rules = NamespaceStorage {
        drivers: fields.strings("drivers", problems),
        buckets: fields.strings("buckets", problems),
        offload_threshold: fields.unsigned("offload_threshold", problems),
        offload_driver: fields.string("offload_driver", problems),
        offload_bucket: fields.string("offload_bucket", problems),
    };
    for (index, name) in rules.drivers.iter().flatten().enumerate() {
        if known(name).is_none() {
            fields.problem(
                problems,
                &format!("drivers[{index}]"),
                format!("unknown driver {name:?}"),
            );
        }
    }
    for (index, bucket) in rules.buckets.iter().flatten().enumerate() {
        if !drivers.iter().any(|driver| driver.buckets.contains(bucket)) {
            fields.problem(
                problems,
                &format!("buckets[{index}]"),
                format!("{bucket:?} is in no driver's allowlist"),
            );
        }
    }
    if rules.offload_threshold.is_some() {
        match resolve_offload(&rules, drivers) {
            Ok(_) => {}
            Err((key, message)) => fields.problem(problems, key, message),
        }
    } else if rules.offload_driver.is_some() || rules.offload_bucket.is_some() {
        fields.problem(
            problems,
            "offload_threshold",
            "missing: offload_driver and offload_bucket only apply with a threshold",
        );
    }
    fields.finish(problems);
    rules
}

/// Where a namespace's encode offloads: (driver, bucket), checked against the allowlists.
pub(crate) fn resolve_offload<'a>(
    rules: &'a NamespaceStorage,
    drivers: &'a [DriverSettings],
) -> Result<(&'a DriverSettings, &'a str), (&'static str, String)> {
    let driver = match &rules.offload_driver {
        Some(name) => drivers
            .iter()
            .find(|driver| &driver.name == name)
            .ok_or(("offload_driver", format!("unknown driver {name:?}")))?,
        None => match drivers {
            [only] => only,
            [] => {
                return Err((
                    "offload_threshold",
                    "no [[external_storage.drivers]] to offload to".to_owned(),
                ));
            }
            _ => {
                return Err((
                    "offload_driver",
                    "missing: more than one driver is configured".to_owned(),
                ));
            }
        },
    };
    let bucket = match &rules.offload_bucket {
        Some(bucket) => bucket.as_str(),
        None => rules
            .buckets
            .as_ref()
            .and_then(|buckets| buckets.iter().find(|b| driver.buckets.contains(b)))
            .or_else(|| driver.buckets.first())
            .map(String::as_str)
            .ok_or(("offload_bucket", "missing".to_owned()))?,
    };
    if !driver.buckets.iter().any(|b| b == bucket) {
        return Err((
            "offload_bucket",
            format!("{bucket:?} is not in driver {:?}'s buckets", driver.name),
        ));
    }
    if rules
        .buckets
        .as_ref()
        .is_some_and(|buckets| !buckets.iter().any(|b| b == bucket))
    {
        return Err((
            "offload_bucket",
            format!("{bucket:?} is not in this namespace's buckets"),
        ));
    }
    if rules
        .drivers
        .as_ref()
        .is_some_and(|names| !names.contains(&driver.name))
    {
        return Err((
            "offload_driver",
            format!("{:?} is not in this namespace's drivers", driver.name),
        ));
    }
    Ok((driver, bucket))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (StorageSettings, Vec<String>) {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let section = table["external_storage"].as_table().unwrap();
        let settings = parse(section, &mut problems);
        (
            settings,
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect(),
        )
    }

    #[test]
    fn the_issue_shape_parses() {
        let (settings, problems) = parse_text(
            r#"
            [[external_storage.drivers]]
            name = "aws.s3driver"
            kind = "s3"
            region = "us-east-1"
            endpoint = "http://127.0.0.1:9000"
            force_path_style = true
            buckets = ["temporal-payloads"]
            max_object_bytes = "50MiB"

            [external_storage.namespaces."*"]
            offload_threshold = "1KiB"
            "#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let driver = &settings.drivers[0];
        assert_eq!(driver.name, "aws.s3driver");
        assert_eq!(driver.max_object_bytes, 50 << 20);
        let DriverKind::S3(s3) = &driver.kind;
        assert!(s3.force_path_style);
        assert_eq!(s3.aws.region.as_deref(), Some("us-east-1"));
        assert_eq!(s3.aws.timeout, DEFAULT_S3_TIMEOUT);
        let rules = settings.namespace("orders").unwrap();
        assert_eq!(rules.offload_threshold, Some(1024));
        let (offload_driver, bucket) = resolve_offload(rules, &settings.drivers).unwrap();
        assert_eq!(
            (offload_driver.name.as_str(), bucket),
            ("aws.s3driver", "temporal-payloads")
        );
    }

    #[test]
    fn every_problem_is_named() {
        let (_, problems) = parse_text(
            r#"
            [[external_storage.drivers]]
            name = "a"
            kind = "gcs"
            buckets = []
            [[external_storage.drivers]]
            name = "b"
            kind = "s3"
            buckets = ["Bad_Bucket"]
            max_object_bytes = 0
            region = "Nowhere 1"
            colour = "red"
            [external_storage.namespaces.orders]
            drivers = ["c"]
            buckets = ["elsewhere"]
            offload_bucket = "x"
            "#,
        );
        let text = problems.join("\n");
        for expected in [
            "external_storage.drivers[0].kind: unknown driver kind \"gcs\"",
            "external_storage.drivers[0].buckets: missing or empty",
            "external_storage.drivers[1].buckets[0]: \"Bad_Bucket\" is not a valid bucket name",
            "external_storage.drivers[1].max_object_bytes: must be greater than zero",
            "external_storage.drivers[1].region",
            "external_storage.drivers[1].colour: unknown field",
            "external_storage.namespaces.orders.drivers[0]: unknown driver \"c\"",
            "external_storage.namespaces.orders.buckets[0]: \"elsewhere\" is in no driver's allowlist",
            "external_storage.namespaces.orders.offload_threshold: missing",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "temporal-payloads", "a.b-c", "x1y"] {
            assert!(valid_bucket(good), "{good}");
        }
        for bad in [
            "ab",
            "Upper",
            "-start",
            "end.",
            "with space",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }
}
