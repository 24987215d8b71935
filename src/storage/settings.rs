//! The settings of external storage (`[external_storage]`): drivers, bucket allowlists and
//! per-namespace rules, as `config` reads them; and where an encode offloads.
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
