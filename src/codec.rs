//! Batch encode and decode of Temporal payloads: which payloads are sealed, which pass through,
//! and the one table that classifies every failure.
//!
//! Transports (HTTP, gRPC, the CLI helpers) call this module and never the key providers. Rules:
//!
//! * exactly one output per input, in order; a batch either succeeds whole or fails whole, so a
//!   caller never gets a partial decode;
//! * encode seals the *whole serialized Payload* (metadata included) into `data` of a new payload
//!   whose metadata says `encoding: binary/encrypted` and names the key in `encryption-key-id`;
//!   payloads whose encoding is listed in `skip_encodings` pass through;
//! * decode opens only payloads that are `binary/encrypted` *and* start with our magic bytes;
//!   every other payload (plain JSON, another codec's ciphertext) passes through untouched;
//! * a payload that claims to be ours but does not open is an input error with one opaque
//!   message: wrong namespace, wrong key and tampered bytes look the same from outside.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;

use crate::compression::{self, Algorithm};
use crate::envelope::EnvelopeKey;
use crate::envelope::{self, EnvelopeError};
pub use crate::error_class::ErrorClass;
use crate::keyring::{ActiveKey, Keyring, KeyringError};
use crate::keys::ProviderError;
use crate::payload::{ENCODING_KEY, Payload};

/// The `encoding` of a sealed payload (the convention every Temporal sample uses).
pub const ENCRYPTED_ENCODING: &[u8] = b"binary/encrypted";
/// The metadata key naming the key that sealed a payload.
pub const KEY_ID_METADATA: &str = "encryption-key-id";

/// Limits and pass-through rules.
#[derive(Debug, Clone)]
pub struct CodecOptions {
    /// Encodings that encode passes through unsealed.
    pub skip_encodings: Vec<Vec<u8>>,
    /// Most payloads in one request.
    pub max_payloads: usize,
    /// Largest single payload (data plus metadata), in bytes.
    pub max_payload_bytes: usize,
    /// Batches with more bytes than this are sealed or opened on the blocking pool, so that
    /// small requests on the async workers are not held up behind a large one.
    pub blocking_threshold_bytes: usize,
    /// Most such batches worked on at once; the rest wait their turn. Sealing is CPU-bound, so
    /// more than one per core only adds threads, and every extra thread doing megabyte
    /// allocations gets its own malloc arena that keeps freed buffers resident: with one
    /// blocking thread per in-flight request, 16 concurrent 1 MiB gRPC encodes peaked at
    /// 62-77 MiB RSS, against 40-44 MiB with two arenas (docs/performance.md).
    pub blocking_parallelism: usize,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            skip_encodings: Vec::new(),
            max_payloads: 10_000,
            // Temporal's server accepts payloads up to 2 MiB by default; leave room for more.
            max_payload_bytes: 4 << 20,
            blocking_threshold_bytes: 256 << 10,
            blocking_parallelism: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

/// How decode checks the namespace in each payload's header.
#[derive(Debug, Clone, Copy)]
pub enum NamespaceCheck<'a> {
    /// The caller names the namespace; a payload sealed for another one does not open.
    Expect(&'a str),
    /// Trust the header's namespace (local operator tooling only, never a network caller).
    FromHeader,
}

/// Why a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The request has more payloads than allowed.
    #[error("request has {count} payloads; the limit is {limit}")]
    TooManyPayloads {
        /// Payloads sent.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// One payload is larger than allowed.
    #[error("payloads[{index}] is {size} bytes; the limit is {limit}")]
    PayloadTooLarge {
        /// Which payload.
        index: usize,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A payload claims to be ours but does not open. `detail` is for logs only.
    #[error("payloads[{index}] could not be decrypted")]
    Undecryptable {
        /// Which payload.
        index: usize,
        /// What went wrong, never shown to callers.
        detail: String,
    },
    /// A payload was sealed with a format version this build cannot read.
    #[error(
        "payloads[{index}] uses envelope format version {version}, which this kmscodec does not support"
    )]
    UnsupportedVersion {
        /// Which payload.
        index: usize,
        /// The version byte.
        version: u8,
    },
    /// The keyring could not supply a key.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
    /// External storage refused or failed (a reference, its object or the store).
    #[error(transparent)]
    Storage(#[from] crate::storage::ExternalStorageError),
}

impl CodecError {
    /// The class deciding the status code.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::TooManyPayloads { .. } | Self::PayloadTooLarge { .. } => ErrorClass::TooLarge,
            Self::Undecryptable { .. } | Self::UnsupportedVersion { .. } => {
                ErrorClass::InvalidInput
            }
            Self::Internal(_) => ErrorClass::Internal,
            Self::Storage(error) => error.class(),
            Self::Keyring(error) => match error {
                KeyringError::NotConfigured(_) => ErrorClass::NotFound,
                KeyringError::TooManyNamespaces(_) | KeyringError::Timeout(_) => {
                    ErrorClass::Unavailable
                }
                KeyringError::WrongProvider { .. } | KeyringError::KekNotAllowed(_) => {
                    ErrorClass::InvalidInput
                }
                KeyringError::Header(_) => ErrorClass::Internal,
                KeyringError::Provider(error) | KeyringError::RecentlyFailed(error) => {
                    match error {
                        ProviderError::Denied(_) | ProviderError::Disabled(_) => {
                            ErrorClass::Forbidden
                        }
                        ProviderError::NotFound(_) | ProviderError::Destroyed(_) => {
                            ErrorClass::NotFound
                        }
                        ProviderError::Unavailable(_) => ErrorClass::Unavailable,
                        ProviderError::Invalid => ErrorClass::InvalidInput,
                        ProviderError::Misconfigured(_) => ErrorClass::Internal,
                    }
                }
            },
        }
    }

    /// A stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooManyPayloads { .. } => "too_many_payloads",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Undecryptable { .. } => "undecryptable_payload",
            Self::UnsupportedVersion { .. } => "unsupported_format_version",
            Self::Internal(_) => "internal",
            Self::Storage(error) => error.code(),
            Self::Keyring(error) => match error {
                KeyringError::NotConfigured(_) => "namespace_not_configured",
                KeyringError::TooManyNamespaces(_) => "too_many_namespaces",
                KeyringError::Timeout(_) => "key_unavailable",
                KeyringError::WrongProvider { .. } | KeyringError::KekNotAllowed(_) => {
                    "undecryptable_payload"
                }
                KeyringError::Header(_) => "internal",
                KeyringError::Provider(error) | KeyringError::RecentlyFailed(error) => {
                    match error {
                        ProviderError::Denied(_) => "key_access_denied",
                        ProviderError::Disabled(_) => "namespace_decrypt_only",
                        ProviderError::NotFound(_) => "key_not_found",
                        ProviderError::Destroyed(_) => "key_destroyed",
                        ProviderError::Unavailable(_) => "key_provider_unavailable",
                        ProviderError::Invalid => "undecryptable_payload",
                        ProviderError::Misconfigured(_) => "internal",
                    }
                }
            },
        }
    }

    /// The message shown to callers: short, no key material, no crypto detail.
    pub fn public_message(&self) -> String {
        match self {
            Self::Keyring(error) => match error {
                KeyringError::NotConfigured(namespace) => {
                    format!("namespace {namespace:?} has no key configured")
                }
                KeyringError::TooManyNamespaces(_) => "too many namespaces in use".to_owned(),
                KeyringError::Timeout(_) => "no data key available; try again".to_owned(),
                KeyringError::WrongProvider { .. } | KeyringError::KekNotAllowed(_) => {
                    "payload could not be decrypted".to_owned()
                }
                KeyringError::Header(_) => "internal error".to_owned(),
                KeyringError::Provider(error) | KeyringError::RecentlyFailed(error) => {
                    match error {
                        ProviderError::Invalid => "payload could not be decrypted",
                        ProviderError::Misconfigured(_) => "internal error",
                        ProviderError::Denied(_) => {
                            "the key provider denied access to this namespace's key"
                        }
                        ProviderError::Disabled(_) => {
                            "encryption is disabled for this namespace (decrypt-only)"
                        }
                        ProviderError::NotFound(_) => {
                            "the key for this namespace or payload does not exist"
                        }
                        ProviderError::Destroyed(_) => {
                            "the key for this namespace was crypto-shredded (destroyed or \
                             scheduled for destruction): its payloads can no longer be encrypted \
                             or decrypted"
                        }
                        ProviderError::Unavailable(_) => {
                            "the key provider is unavailable; try again"
                        }
                    }
                    .to_owned()
                }
            },
            Self::Internal(_) => "internal error".to_owned(),
            Self::Storage(error) => error.public_message(),
            other => other.to_string(),
        }
    }
}

/// A codec operation, as a transport asks for it (the Codec Server protocol's routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `…/encode`: seal, then offload what reaches the namespace's threshold (if configured).
    Encode,
    /// `…/decode`: open; storage references are resolved first unless
    /// `preserve_storage_refs` (`?preserveStorageRefs=true`, what the Web UI sends), in which
    /// case they come back unchanged.
    Decode {
        /// Return references unchanged.
        preserve_storage_refs: bool,
    },
    /// `…/download`: every payload must be a reference; each is resolved and decoded.
    Download,
}

impl Operation {
    /// The operation's name in metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Decode { .. } => "decode",
            Self::Download => "download",
        }
    }
}

/// Is this payload one of ours?
pub fn is_sealed(payload: &Payload) -> bool {
    payload.encoding() == Some(ENCRYPTED_ENCODING) && envelope::has_magic(&payload.data)
}

/// Encodes and decodes batches of payloads through the keyring.
pub struct Codec {
    keyring: Arc<Keyring>,
    options: CodecOptions,
    /// One permit per batch on the blocking pool ([`CodecOptions::blocking_parallelism`]).
    blocking: Arc<tokio::sync::Semaphore>,
    /// External Storage, when configured.
    storage: Option<Arc<crate::storage::ExternalStorage>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec over `keyring`.
    pub fn new(keyring: Arc<Keyring>, options: CodecOptions) -> Self {
        let blocking = Arc::new(tokio::sync::Semaphore::new(
            options.blocking_parallelism.max(1),
        ));
        Self {
            keyring,
            options,
            blocking,
            storage: None,
        }
    }

    /// Resolves storage references on decode and download, and offloads on encode, through
    /// `storage`.
    pub fn with_external_storage(mut self, storage: Arc<crate::storage::ExternalStorage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Runs one operation for `namespace` (the transports' single entry point).
    ///
    /// Without external storage configured, references pass through decode untouched (as
    /// before this feature) and download is refused as not supported.
    pub async fn call(
        &self,
        operation: Operation,
        namespace: &str,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, CodecError> {
        let check = NamespaceCheck::Expect(namespace);
        let storage = self
            .storage
            .as_deref()
            .filter(|storage| storage.is_enabled());
        match (operation, storage) {
            (Operation::Encode, None) => self.encode(namespace, payloads).await,
            (Operation::Encode, Some(storage)) => {
                let sealed = self.encode(namespace, payloads).await?;
                Ok(storage.offload_all(namespace, sealed).await?)
            }
            (Operation::Decode { .. }, None)
            | (
                Operation::Decode {
                    preserve_storage_refs: true,
                },
                Some(_),
            ) => self.decode(check, payloads).await,
            (Operation::Download, None) => {
                Err(crate::storage::ExternalStorageError::NotConfigured.into())
            }
            (Operation::Decode { .. } | Operation::Download, Some(storage)) => {
                let only_references = operation == Operation::Download;
                // Limits apply to the request as sent; resolved objects are bounded by the
                // driver's max_object_bytes instead.
                self.check_limits(&payloads, self.options.max_payload_bytes)?;
                let resolved = storage
                    .resolve_all(namespace, payloads, only_references)
                    .await?;
                let limit = storage
                    .settings()
                    .drivers
                    .iter()
                    .map(|driver| usize::try_from(driver.max_object_bytes).unwrap_or(usize::MAX))
                    .fold(self.options.max_payload_bytes, usize::max);
                self.decode_within(check, resolved, limit).await
            }
        }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The options.
    pub fn options(&self) -> &CodecOptions {
        &self.options
    }

    fn check_limits(&self, payloads: &[Payload], max_bytes: usize) -> Result<usize, CodecError> {
        if payloads.len() > self.options.max_payloads {
            return Err(CodecError::TooManyPayloads {
                count: payloads.len(),
                limit: self.options.max_payloads,
            });
        }
        let mut total = 0;
        for (index, payload) in payloads.iter().enumerate() {
            let size = payload.size();
            if size > max_bytes {
                return Err(CodecError::PayloadTooLarge {
                    index,
                    size,
                    limit: max_bytes,
                });
            }
            total += size;
        }
        Ok(total)
    }

    fn skips(&self, payload: &Payload) -> bool {
        payload.encoding().is_some_and(|encoding| {
            self.options
                .skip_encodings
                .iter()
                .any(|skip| skip == encoding)
        })
    }

    /// Seals every payload (except skipped encodings) for `namespace`.
    pub async fn encode(
        &self,
        namespace: &str,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, CodecError> {
        let total = self.check_limits(&payloads, self.options.max_payload_bytes)?;
        // One reservation for the whole batch (more only if the key reaches its hard limit part
        // way): each payload to seal gets its share of it.
        let skips: Vec<bool> = payloads.iter().map(|payload| self.skips(payload)).collect();
        let sizes: Vec<usize> = payloads
            .iter()
            .zip(&skips)
            .filter(|(_, skip)| !**skip)
            .map(|(payload, _)| payload.encoded_len())
            .collect();
        let mut grants: Vec<(Arc<ActiveKey>, usize)> = Vec::with_capacity(1);
        let mut leased = 0;
        while leased < sizes.len() {
            let (key, count) = self.keyring.lease_many(namespace, &sizes[leased..]).await?;
            leased += count;
            grants.push((key, count));
        }
        let seal_all = move || {
            let mut keys = grants
                .iter()
                .flat_map(|(key, count)| std::iter::repeat_n(key, *count));
            payloads
                .into_iter()
                .zip(skips)
                .map(|(payload, skip)| {
                    if skip {
                        return Ok(payload);
                    }
                    match keys.next() {
                        Some(key) => seal_one(key, payload),
                        None => Err(CodecError::Internal(
                            "fewer data key reservations than payloads".to_owned(),
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        };
        self.run(total, seal_all).await
    }

    /// Opens every payload of ours; passes every other payload through.
    pub async fn decode(
        &self,
        check: NamespaceCheck<'_>,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, CodecError> {
        self.decode_within(check, payloads, self.options.max_payload_bytes)
            .await
    }

    /// [`Self::decode`] with `max_bytes` per payload.
    async fn decode_within(
        &self,
        check: NamespaceCheck<'_>,
        payloads: Vec<Payload>,
        max_bytes: usize,
    ) -> Result<Vec<Payload>, CodecError> {
        let total = self.check_limits(&payloads, max_bytes)?;
        let mut keys: Vec<Option<Arc<EnvelopeKey>>> = Vec::with_capacity(payloads.len());
        for (index, payload) in payloads.iter().enumerate() {
            if !is_sealed(payload) {
                keys.push(None);
                continue;
            }
            let (header, _) =
                envelope::parse(&payload.data).map_err(|error| envelope_error(index, error))?;
            let namespace = match check {
                NamespaceCheck::Expect(namespace) => {
                    if header.alleged_namespace != namespace {
                        return Err(CodecError::Undecryptable {
                            index,
                            detail: format!(
                                "sealed for namespace {:?}, presented as {namespace:?}",
                                header.alleged_namespace
                            ),
                        });
                    }
                    namespace
                }
                NamespaceCheck::FromHeader => header.alleged_namespace,
            };
            let key = self
                .keyring
                .data_key_for_header(namespace, &header)
                .await
                .map_err(|error| match error {
                    // What a caller could learn about keys from a forged header stays in the
                    // log: a KEK that is not the namespace's, or one the provider does not know,
                    // is just a payload that does not open.
                    KeyringError::Provider(ProviderError::Invalid | ProviderError::NotFound(_))
                    | KeyringError::RecentlyFailed(
                        ProviderError::Invalid | ProviderError::NotFound(_),
                    )
                    | KeyringError::WrongProvider { .. }
                    | KeyringError::KekNotAllowed(_) => CodecError::Undecryptable {
                        index,
                        detail: error.to_string(),
                    },
                    other => CodecError::Keyring(other),
                })?;
            keys.push(Some(key));
        }
        let max_plaintext = decompressed_limit(self.options.max_payload_bytes);
        let open_all = move || {
            payloads
                .into_iter()
                .zip(keys)
                .enumerate()
                .map(|(index, (payload, key))| match key {
                    Some(key) => open_one(index, &key, payload, max_plaintext),
                    None => Ok(payload),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        self.run(total, open_all).await
    }

    async fn run<T: Send + 'static>(
        &self,
        total_bytes: usize,
        work: impl FnOnce() -> Result<T, CodecError> + Send + 'static,
    ) -> Result<T, CodecError> {
        if total_bytes < self.options.blocking_threshold_bytes {
            return work();
        }
        let permit = Arc::clone(&self.blocking)
            .acquire_owned()
            .await
            .map_err(|error| CodecError::Internal(format!("codec pool closed: {error}")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|error| CodecError::Internal(format!("codec task failed: {error}")))?
    }
}

fn envelope_error(index: usize, error: EnvelopeError) -> CodecError {
    match error {
        EnvelopeError::UnsupportedVersion(version) => {
            CodecError::UnsupportedVersion { index, version }
        }
        other => CodecError::Undecryptable {
            index,
            detail: other.to_string(),
        },
    }
}

fn seal_one(key: &ActiveKey, payload: Payload) -> Result<Payload, CodecError> {
    let plaintext_len = payload.encoded_len();
    let mut data = Vec::with_capacity(key.sealed_len(plaintext_len));
    key.seal(&mut data, |buffer| payload.encode_raw(buffer))
        .map_err(|error| CodecError::Internal(format!("seal failed: {error}")))?;
    let metadata = BTreeMap::from([
        (ENCODING_KEY.to_owned(), ENCRYPTED_ENCODING.to_vec()),
        (KEY_ID_METADATA.to_owned(), key.key_id().as_bytes().to_vec()),
    ]);
    Ok(Payload {
        metadata,
        data,
        // Storage references stay visible to the server and the UI; the sealed copy inside
        // restores them exactly on decode.
        external_payloads: payload.external_payloads,
    })
}

/// The most bytes a compressed payload may decompress to: what encode accepts as one payload
/// plus room for its protobuf framing. A frame claiming more is refused before any buffer for
/// it is allocated (`compression::decompress`).
fn decompressed_limit(max_payload_bytes: usize) -> usize {
    max_payload_bytes.saturating_add(64 << 10)
}

fn open_one(
    index: usize,
    key: &EnvelopeKey,
    payload: Payload,
    max_plaintext: usize,
) -> Result<Payload, CodecError> {
    // Decrypted where it lies, in the request's own buffer: no plaintext buffer, no copy.
    // Not zeroized: the same plaintext lives on in the decoded payload and the response body
    // (and arrived in the caller's request on encode), none of which can be. Wiping this one
    // copy byte by byte cost more than the decryption at 1 KiB and promised nothing; keys, not
    // payloads, are what kmscodec zeroizes (docs/threat-model.md).
    let mut data = payload.data;
    let (compression, plaintext) =
        envelope::open_in_place(key, &mut data).map_err(|error| envelope_error(index, error))?;
    let decoded = match compression {
        Algorithm::None => Payload::decode(&data[plaintext]),
        Algorithm::Zstd => {
            let inflated =
                compression::decompress(&data[plaintext], max_plaintext).map_err(|error| {
                    CodecError::Undecryptable {
                        index,
                        detail: error.to_string(),
                    }
                })?;
            Payload::decode(inflated.as_slice())
        }
    };
    decoded.map_err(|error| CodecError::Undecryptable {
        index,
        detail: format!("authenticated plaintext is not a Payload: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Format, HeaderTemplate};
    use crate::secret::{DataKey, KekRef, ProviderKind, WrappedKey};

    fn sealed_v3(key: &EnvelopeKey, algorithm: Algorithm, plaintext: &[u8]) -> Payload {
        let template = HeaderTemplate::new(
            Format::V3,
            "orders",
            ProviderKind::LocalFile,
            &KekRef {
                key: "dev".into(),
                version: 1,
            },
            &WrappedKey::new(vec![7; 60]),
        )
        .unwrap();
        let mut data = Vec::new();
        envelope::seal_with_compression(key, &template, algorithm, &mut data, |buffer| {
            buffer.extend_from_slice(plaintext)
        })
        .unwrap();
        Payload {
            metadata: BTreeMap::from([(
                crate::payload::ENCODING_KEY.to_owned(),
                ENCRYPTED_ENCODING.to_vec(),
            )]),
            data,
            external_payloads: vec![],
        }
    }

    #[test]
    fn a_sealed_decompression_bomb_is_refused_without_inflating_it() {
        // Someone holding the data key seals a zstd frame of 64 MiB of zeros (a few KiB): it
        // authenticates, and decode still refuses it from its recorded size.
        let key = EnvelopeKey::new(DataKey::from_slice(&[9; 32]).unwrap());
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        let payload = sealed_v3(&key, Algorithm::Zstd, &bomb);
        let limit = decompressed_limit(CodecOptions::default().max_payload_bytes);
        match open_one(0, &key, payload, limit) {
            Err(CodecError::Undecryptable { detail, .. }) => {
                assert!(detail.contains("exceed"), "{detail}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A well-formed compressed Payload opens.
        let inner = Payload {
            metadata: BTreeMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
            data: b"[1,2,3]".repeat(1000),
            external_payloads: vec![],
        };
        let frame = zstd::bulk::compress(&inner.encode_to_vec(), 3).unwrap();
        let payload = sealed_v3(&key, Algorithm::Zstd, &frame);
        assert_eq!(open_one(0, &key, payload, limit).unwrap(), inner);
    }
}
