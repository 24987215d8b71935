//! `[external_storage]`: drivers (with their bucket allowlists) and per-namespace rules, read
//! into the storage module's own settings.

use super::fields::{Fields, Problem};
use super::provider::parse_aws;
use crate::storage::settings::{
    DEFAULT_MAX_OBJECT_BYTES, DEFAULT_S3_TIMEOUT, DriverKind, DriverSettings, NamespaceStorage,
    S3Settings, StorageSettings, resolve_offload, valid_bucket,
};

/// Parses `[external_storage]`, recording every problem.
pub(super) fn parse(table: &toml::Table, problems: &mut Vec<Problem>) -> StorageSettings {
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
    for (name, path, table) in fields.namespace_tables("namespaces", problems) {
        let rules = parse_namespace(&path, table, &settings.drivers, problems);
        settings.namespaces.insert(name.clone(), rules);
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
            parse_aws(&mut fields, problems).map(|mut aws| {
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
