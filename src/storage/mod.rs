//! Temporal External Storage: resolving the references SDKs leave in history when they offload
//! a large payload to object storage, and offloading large sealed payloads on encode.
//!
//! This module owns the [`StorageDriver`] trait and its backends ([`s3`]), their configuration
//! ([`settings`]), and the rules every access follows, in this order:
//!
//! 1. the reference is parsed ([`crate::payload::Payload::storage_reference`]) and its driver
//!    must be configured (else 400);
//! 2. the namespace's rules and the driver's bucket allowlist must admit the claimed bucket,
//!    *before* any storage call: a claim may name any bucket, and the sidecar must not read
//!    other buckets with its own credentials for whoever asks (a confused deputy) (else 403);
//! 3. the object's size is bounded before its body is read (`max_object_bytes`, else 413);
//! 4. its SHA-256 must equal the claim's `hash_value` before anything parses it (else 400);
//! 5. only then are its bytes read as a `Payload`, which the codec decodes like any other.
//!
//! Every access is counted (`kmscodec_storage_*`) and audited with the driver, bucket and
//! object key, never the content. It never logs object bytes, never builds a key to read (a
//! reader uses the claim's key as given), and never calls the key providers.

pub mod s3;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::audit::{AuditLog, ObjectRecord};
use crate::error_class::ErrorClass;
use crate::payload::{Payload, StorageReference};
pub use settings::{DriverKind, DriverSettings, NamespaceStorage, StorageSettings};

/// The claim keys the S3 and GCS drivers of every SDK write.
pub const CLAIM_BUCKET: &str = "bucket";
/// The object key in the bucket.
pub const CLAIM_KEY: &str = "key";
/// The hash algorithm; only `sha256` is written by the SDKs.
pub const CLAIM_HASH_ALGORITHM: &str = "hash_algorithm";
/// The lowercase hex hash of the stored object.
pub const CLAIM_HASH_VALUE: &str = "hash_value";
/// References fetched at once for one request.
const FETCH_PARALLELISM: usize = 4;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (or its bucket) does not exist.
    #[error("object not found")]
    NotFound,
    /// The object is larger than the bound; its body was not read (or not past the bound).
    #[error("object is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size, or the bytes seen when the bound was crossed.
        size: u64,
        /// The bound.
        limit: u64,
    },
    /// The store refused the sidecar's credentials (the code it answered).
    #[error("access denied by the store: {0}")]
    Denied(String),
    /// The store is unreachable, slow or overloaded; retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered an error not listed above.
    #[error("{0}")]
    Failed(String),
    /// The driver cannot be used as configured (no region).
    #[error("misconfigured: {0}")]
    Misconfigured(String),
}

impl StorageError {
    fn label(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::TooLarge { .. } => "too_large",
            Self::Denied(_) => "denied",
            Self::Unavailable(_) => "unavailable",
            Self::Failed(_) => "failed",
            Self::Misconfigured(_) => "misconfigured",
        }
    }
}

/// An object store that keeps payloads: reads bounded in size, writes whole.
#[async_trait]
pub trait StorageDriver: Send + Sync + std::fmt::Debug {
    /// Reads `bucket/key`, refusing with [`StorageError::TooLarge`] an object over `max_bytes`
    /// before its body is read.
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, StorageError>;
    /// Writes `bytes` at `bucket/key`, replacing what is there (keys are content-addressed).
    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), StorageError>;
}

/// Why an external storage operation failed. Variants carry the payload's index in the request.
#[derive(Debug, thiserror::Error)]
pub enum ExternalStorageError {
    /// `/download` on a server without external storage.
    #[error("this codec server does not serve external payload storage downloads")]
    NotConfigured,
    /// `/download` with a payload that is not a reference.
    #[error("all payloads must be storage references (payloads[{index}] is not)")]
    NotAReference {
        /// Which payload.
        index: usize,
    },
    /// The reference cannot be parsed, or its claim lacks a field.
    #[error("payloads[{index}] is not a valid storage reference: {detail}")]
    BadReference {
        /// Which payload.
        index: usize,
        /// What is wrong.
        detail: String,
    },
    /// No driver of that name is configured.
    #[error("payloads[{index}] names storage driver {driver:?}, which this server does not have")]
    UnknownDriver {
        /// Which payload.
        index: usize,
        /// The driver named.
        driver: String,
    },
    /// The namespace may not use this driver or bucket, or the bucket is not in the allowlist.
    #[error("payloads[{index}]: this namespace may not read storage bucket {bucket:?}")]
    BucketNotAllowed {
        /// Which payload.
        index: usize,
        /// The bucket claimed.
        bucket: String,
    },
    /// The claim's hash algorithm is not `sha256`.
    #[error("payloads[{index}] uses hash algorithm {algorithm:?}; only sha256 is supported")]
    UnsupportedHash {
        /// Which payload.
        index: usize,
        /// The algorithm named.
        algorithm: String,
    },
    /// The stored object's SHA-256 differs from the claim: it was changed or replaced.
    #[error("payloads[{index}]: the stored object does not match the reference's hash")]
    HashMismatch {
        /// Which payload.
        index: usize,
    },
    /// The stored object is not a protobuf `Payload`.
    #[error("payloads[{index}]: the stored object is not a Temporal payload")]
    NotAPayload {
        /// Which payload.
        index: usize,
    },
    /// The request's objects together exceed the bound on resolved bytes.
    #[error("the referenced objects exceed {limit} bytes in one request")]
    TooMuchData {
        /// The bound.
        limit: u64,
    },
    /// The driver failed. `source` is for logs; callers see the class.
    #[error("payloads[{index}]: storage {op} failed: {source}")]
    Storage {
        /// Which payload.
        index: usize,
        /// `get` or `put`.
        op: &'static str,
        /// What the driver said.
        source: StorageError,
    },
}

impl ExternalStorageError {
    /// The class deciding the status code.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::NotConfigured => ErrorClass::NotFound,
            Self::NotAReference { .. }
            | Self::BadReference { .. }
            | Self::UnknownDriver { .. }
            | Self::UnsupportedHash { .. }
            | Self::HashMismatch { .. }
            | Self::NotAPayload { .. } => ErrorClass::InvalidInput,
            Self::BucketNotAllowed { .. } => ErrorClass::Forbidden,
            Self::TooMuchData { .. } => ErrorClass::TooLarge,
            Self::Storage { source, .. } => match source {
                StorageError::NotFound => ErrorClass::NotFound,
                StorageError::TooLarge { .. } => ErrorClass::TooLarge,
                StorageError::Denied(_) => ErrorClass::Forbidden,
                StorageError::Unavailable(_) | StorageError::Failed(_) => ErrorClass::Unavailable,
                StorageError::Misconfigured(_) => ErrorClass::Internal,
            },
        }
    }

    /// A stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "download_not_supported",
            Self::NotAReference { .. } => "not_a_storage_reference",
            Self::BadReference { .. } => "invalid_storage_reference",
            Self::UnknownDriver { .. } => "unknown_storage_driver",
            Self::BucketNotAllowed { .. } => "storage_bucket_not_allowed",
            Self::UnsupportedHash { .. } => "unsupported_hash_algorithm",
            Self::HashMismatch { .. } => "storage_hash_mismatch",
            Self::NotAPayload { .. } => "stored_object_not_a_payload",
            Self::TooMuchData { .. } => "storage_objects_too_large",
            Self::Storage { source, .. } => match source {
                StorageError::NotFound => "storage_object_not_found",
                StorageError::TooLarge { .. } => "storage_object_too_large",
                StorageError::Denied(_) => "storage_access_denied",
                StorageError::Unavailable(_) | StorageError::Failed(_) => "storage_unavailable",
                StorageError::Misconfigured(_) => "internal",
            },
        }
    }

    /// The message shown to callers: no store detail beyond the class.
    pub fn public_message(&self) -> String {
        match self {
            Self::Storage { index, source, .. } => match source {
                StorageError::NotFound => {
                    format!("payloads[{index}]: the stored object does not exist")
                }
                StorageError::TooLarge { size, limit } => format!(
                    "payloads[{index}]: the stored object is {size} bytes; the limit is {limit}"
                ),
                StorageError::Denied(_) => {
                    format!("payloads[{index}]: the storage service denied access")
                }
                StorageError::Unavailable(_) | StorageError::Failed(_) => {
                    format!("payloads[{index}]: the storage service is unavailable; try again")
                }
                StorageError::Misconfigured(_) => "internal error".to_owned(),
            },
            Self::NotAReference { .. } => "all payloads must be storage references".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The storage series: calls by driver, operation and result; bytes; latency.
#[derive(Debug, Clone)]
struct StorageMetrics {
    calls: IntCounterVec,
    bytes: IntCounterVec,
    duration: HistogramVec,
}

impl StorageMetrics {
    // The names and labels are constants: construction cannot fail.
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        Self {
            calls: IntCounterVec::new(
                Opts::new(
                    "kmscodec_storage_requests_total",
                    "External storage calls by driver, operation (get, put) and result \
                     (bucket_refused: refused before any call).",
                ),
                &["driver", "op", "result"],
            )
            .expect("valid metric"),
            bytes: IntCounterVec::new(
                Opts::new(
                    "kmscodec_storage_bytes_total",
                    "Object bytes read from and written to external storage.",
                ),
                &["driver", "op"],
            )
            .expect("valid metric"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "kmscodec_storage_request_duration_seconds",
                    "External storage call latency.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
                &["driver", "op"],
            )
            .expect("valid metric"),
        }
    }
}

struct Driver {
    settings: DriverSettings,
    backend: Arc<dyn StorageDriver>,
}

/// The configured drivers and rules, with their metrics and audit trail.
pub struct ExternalStorage {
    settings: StorageSettings,
    drivers: BTreeMap<String, Driver>,
    metrics: StorageMetrics,
    audit: Option<Arc<AuditLog>>,
    /// Most object bytes resolved for one request (bounds memory across a batch).
    max_request_bytes: u64,
}

impl std::fmt::Debug for ExternalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalStorage")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What one access did, for the metrics and the audit line.
struct Access<'a> {
    namespace: &'a str,
    driver: &'a str,
    op: &'static str,
    bucket: &'a str,
    key: &'a str,
}

impl ExternalStorage {
    /// Builds the configured drivers. No I/O: clients connect on first use.
    pub fn new(settings: StorageSettings) -> Self {
        let drivers = settings
            .drivers
            .iter()
            .map(|driver| {
                let backend: Arc<dyn StorageDriver> = match &driver.kind {
                    DriverKind::S3(s3) => Arc::new(s3::S3::new(s3.clone())),
                };
                (
                    driver.name.clone(),
                    Driver {
                        settings: driver.clone(),
                        backend,
                    },
                )
            })
            .collect();
        let largest = settings
            .drivers
            .iter()
            .map(|driver| driver.max_object_bytes)
            .max()
            .unwrap_or(0);
        Self {
            settings,
            drivers,
            metrics: StorageMetrics::new(),
            audit: None,
            // Four of the largest objects: a batch of references resolves within a bounded
            // amount of memory, whatever its count.
            max_request_bytes: largest.saturating_mul(4),
        }
    }

    /// Replaces the backend of driver `name` (embedding, tests).
    pub fn with_backend(mut self, name: &str, backend: Arc<dyn StorageDriver>) -> Self {
        if let Some(driver) = self.drivers.get_mut(name) {
            driver.backend = backend;
        }
        self
    }

    /// Writes an audit line for every object read or written.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The metric families, for the process registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.metrics.calls.clone()),
            Box::new(self.metrics.bytes.clone()),
            Box::new(self.metrics.duration.clone()),
        ]
    }

    /// The settings.
    pub fn settings(&self) -> &StorageSettings {
        &self.settings
    }

    fn record(&self, access: &Access<'_>, bytes: usize, result: &'static str, started: Instant) {
        let labels = [access.driver, access.op];
        self.metrics
            .calls
            .with_label_values(&[access.driver, access.op, result])
            .inc();
        if result == "ok" {
            self.metrics
                .bytes
                .with_label_values(&labels)
                .inc_by(bytes as u64);
        }
        if result != "bucket_refused" {
            self.metrics
                .duration
                .with_label_values(&labels)
                .observe(started.elapsed().as_secs_f64());
        }
        if let Some(audit) = &self.audit {
            audit.record_object(&ObjectRecord {
                namespace: access.namespace,
                op: access.op,
                driver: access.driver,
                bucket: access.bucket,
                key: access.key,
                bytes,
                result,
                duration: started.elapsed(),
            });
        }
    }

    /// Is `bucket` of `driver` admitted for `namespace`?
    fn admits(&self, namespace: &str, driver: &DriverSettings, bucket: &str) -> bool {
        if !driver.buckets.iter().any(|allowed| allowed == bucket) {
            return false;
        }
        match self.settings.namespace(namespace) {
            None => true,
            Some(rules) => {
                rules
                    .drivers
                    .as_ref()
                    .is_none_or(|names| names.contains(&driver.name))
                    && rules
                        .buckets
                        .as_ref()
                        .is_none_or(|buckets| buckets.iter().any(|b| b == bucket))
            }
        }
    }

    /// Fetches, verifies and parses the payload a reference points to (steps 1 to 5 of the
    /// module's rules). `budget` counts the request's resolved bytes.
    async fn resolve(
        &self,
        namespace: &str,
        index: usize,
        reference: &Payload,
        budget: &AtomicU64,
    ) -> Result<Payload, ExternalStorageError> {
        let bad = |detail: String| ExternalStorageError::BadReference { index, detail };
        let StorageReference {
            driver_name,
            claim_data,
        } = reference
            .storage_reference()
            .map_err(|error| bad(error.to_string()))?;
        let driver =
            self.drivers
                .get(&driver_name)
                .ok_or_else(|| ExternalStorageError::UnknownDriver {
                    index,
                    driver: driver_name.clone(),
                })?;
        let claim = |name: &str| {
            claim_data
                .get(name)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| bad(format!("claim has no {name:?}")))
        };
        let alleged_bucket = claim(CLAIM_BUCKET)?;
        let alleged_key = claim(CLAIM_KEY)?;
        let access = Access {
            namespace,
            driver: &driver.settings.name,
            op: "get",
            bucket: alleged_bucket,
            key: alleged_key,
        };
        let started = Instant::now();
        if !self.admits(namespace, &driver.settings, alleged_bucket) {
            self.record(&access, 0, "bucket_refused", started);
            return Err(ExternalStorageError::BucketNotAllowed {
                index,
                bucket: alleged_bucket.clone(),
            });
        }
        let algorithm = claim(CLAIM_HASH_ALGORITHM)?;
        if algorithm != "sha256" {
            return Err(ExternalStorageError::UnsupportedHash {
                index,
                algorithm: algorithm.clone(),
            });
        }
        let alleged_hash = claim(CLAIM_HASH_VALUE)?;
        let bytes = match driver
            .backend
            .get(
                alleged_bucket,
                alleged_key,
                driver.settings.max_object_bytes,
            )
            .await
        {
            Ok(bytes) => bytes,
            Err(source) => {
                self.record(&access, 0, source.label(), started);
                tracing::debug!(driver = %driver.settings.name, bucket = %alleged_bucket,
                    key = %alleged_key, error = %source, "storage read failed");
                return Err(ExternalStorageError::Storage {
                    index,
                    op: "get",
                    source,
                });
            }
        };
        let total = budget.fetch_add(bytes.len() as u64, Ordering::Relaxed) + bytes.len() as u64;
        if total > self.max_request_bytes {
            self.record(&access, bytes.len(), "too_large", started);
            return Err(ExternalStorageError::TooMuchData {
                limit: self.max_request_bytes,
            });
        }
        // The hash is checked before a single byte is parsed.
        if !hex_sha256(&bytes).eq_ignore_ascii_case(alleged_hash) {
            self.record(&access, bytes.len(), "hash_mismatch", started);
            return Err(ExternalStorageError::HashMismatch { index });
        }
        self.record(&access, bytes.len(), "ok", started);
        Payload::decode(bytes.as_slice()).map_err(|_| ExternalStorageError::NotAPayload { index })
    }

    /// Replaces every reference in `payloads` with the payload it points to. With
    /// `only_references`, a payload that is not a reference is an error (`/download`).
    pub async fn resolve_all(
        &self,
        namespace: &str,
        payloads: Vec<Payload>,
        only_references: bool,
    ) -> Result<Vec<Payload>, ExternalStorageError> {
        if only_references
            && let Some(index) = payloads.iter().position(|p| !p.is_storage_reference())
        {
            return Err(ExternalStorageError::NotAReference { index });
        }
        if !payloads.iter().any(Payload::is_storage_reference) {
            return Ok(payloads);
        }
        let budget = AtomicU64::new(0);
        let budget = &budget;
        futures_util::stream::iter(payloads.into_iter().enumerate())
            .map(|(index, payload)| async move {
                if payload.is_storage_reference() {
                    self.resolve(namespace, index, &payload, budget).await
                } else {
                    Ok(payload)
                }
            })
            .buffered(FETCH_PARALLELISM)
            .try_collect()
            .await
    }

    /// The namespace's offload target and threshold, if encode offloads for it.
    fn offload_target(&self, namespace: &str) -> Option<(&Driver, &str, u64)> {
        let rules = self.settings.namespace(namespace)?;
        let threshold = rules.offload_threshold?;
        let (driver, bucket) = settings::resolve_offload(rules, &self.settings.drivers).ok()?;
        Some((self.drivers.get(&driver.name)?, bucket, threshold))
    }

    /// Stores every payload of at least the namespace's threshold and returns references in
    /// their place, written as the SDKs write them, under the SDKs' key layout
    /// `v0/ns/{namespace}/d/sha256/{hex}`. References are never stored again.
    pub async fn offload_all(
        &self,
        namespace: &str,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, ExternalStorageError> {
        let Some((driver, bucket, threshold)) = self.offload_target(namespace) else {
            return Ok(payloads);
        };
        let mut out = Vec::with_capacity(payloads.len());
        for (index, payload) in payloads.into_iter().enumerate() {
            if payload.is_storage_reference() || (payload.encoded_len() as u64) < threshold {
                out.push(payload);
                continue;
            }
            let bytes = payload.encode_to_vec();
            let size = bytes.len();
            let hash = hex_sha256(&bytes);
            let key = format!("v0/ns/{}/d/sha256/{hash}", percent_encode(namespace));
            let access = Access {
                namespace,
                driver: &driver.settings.name,
                op: "put",
                bucket,
                key: &key,
            };
            let started = Instant::now();
            if let Err(source) = driver.backend.put(bucket, &key, bytes).await {
                self.record(&access, 0, source.label(), started);
                tracing::warn!(driver = %driver.settings.name, bucket, key, error = %source,
                    "storage write failed");
                return Err(ExternalStorageError::Storage {
                    index,
                    op: "put",
                    source,
                });
            }
            self.record(&access, size, "ok", started);
            let reference = StorageReference {
                driver_name: driver.settings.name.clone(),
                claim_data: BTreeMap::from([
                    (CLAIM_BUCKET.to_owned(), bucket.to_owned()),
                    (CLAIM_KEY.to_owned(), key),
                    (CLAIM_HASH_ALGORITHM.to_owned(), "sha256".to_owned()),
                    (CLAIM_HASH_VALUE.to_owned(), hash),
                ]),
            };
            out.push(reference.to_payload(i64::try_from(size).unwrap_or(i64::MAX)));
        }
        Ok(out)
    }

    /// Whether any driver is configured.
    pub fn is_enabled(&self) -> bool {
        !self.drivers.is_empty()
    }
}

/// Lowercase hex SHA-256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

/// A key segment as the SDKs' S3 drivers encode it: every byte outside `0-9 a-z A-Z ! - _ . *
/// ' ( )` as `%XX` (uppercase hex) over its UTF-8 bytes; empty as `null`.
pub fn percent_encode(segment: &str) -> String {
    if segment.is_empty() {
        return "null".to_owned();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(segment.len());
    for &byte in segment.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"!-_.*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_are_encoded_as_the_sdks_encode_them() {
        assert_eq!(percent_encode("default"), "default");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("x!-_.*'()y"), "x!-_.*'()y");
        assert_eq!(percent_encode(""), "null");
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
