//! The AWS KMS backend: each namespace's KEK is a KMS key; data keys come from `GenerateDataKey`
//! (AES_256) and are unwrapped with `Decrypt`.
//!
//! This module owns the KMS request shapes, the encryption context that binds a wrapped data key
//! to its namespace (built in one place, [`encryption_context`], and sent on both calls), and the
//! mapping of SDK errors to [`ProviderError`] ([`classify`]). It must never log or return
//! credentials, never keep a plaintext data key outside a zeroizing type, and never read the
//! environment itself: the only environment it sees is the AWS SDK's own standard chain
//! (credentials, region, profile, `AWS_ENDPOINT_URL*`), everything else comes from
//! [`AwsKmsOptions`], built by `config`.
//!
//! It reaches KMS only through one door (`kms.rs`): the SDK client is private to it, and each
//! operation is a method of one role's view, generated with its IAM action from one table. The
//! serving code can call only [`CALLED_ACTIONS`], `describe` only [`DESCRIBE_ACTIONS`], and
//! [`KeyAdmin`] only [`ADMIN_ACTIONS`] (and `describe`); anything else does not compile. The IAM
//! policies in `policies/aws/` are tested against these lists.
//!
//! The header's [`KekRef`] is `{ key: <key ARN returned by GenerateDataKey>, version: 0 }`: KMS
//! keeps the key material version inside the ciphertext blob, so rotating a key (automatic or
//! `RotateKeyOnDemand`) or re-pointing an alias to a new key keeps every old payload decodable.
//!
//! Decrypt-only mode is a tag on the KMS key, [`DECRYPT_ONLY_TAG`] = [`DECRYPT_ONLY_VALUE`]
//! (KMS has no key state that refuses `GenerateDataKey` but allows `Decrypt`; a key policy per
//! namespace is the operators' business). The sidecar reads the key's tags
//! (`ListResourceTags`) after each `GenerateDataKey`, which happens once per data key, and
//! refuses to use a data key minted under a tagged key; the IAM policy in `policies/aws/` also
//! denies `GenerateDataKey` on tagged keys (`aws:ResourceTag`), so AWS enforces it as well.
//!
//! The SDK client is built lazily on the first call (`aws_config`'s chain resolution is async,
//! and the application's build step is synchronous): construction never blocks and never touches
//! the network. A missing region is reported then as [`ProviderError::Misconfigured`], and the
//! readiness check ([`KeyProvider::health`]) makes the first call at startup.
//!
//! Files: `mod.rs` the provider ([`KeyProvider`]), the encryption context and the error mapping;
//! `kms.rs` the door and the action lists; `settings.rs` [`AwsKmsOptions`] and the key reference
//! syntax; `admin.rs` key administration ([`KeyAdmin`]: create, rotate, tag, schedule deletion).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{ProvideCredentials, Region, SharedCredentialsProvider};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeySpec, KeyState, KeyUsageType, Tag};
use zeroize::Zeroizing;

use super::{
    CreatedKek, GeneratedKey, KekVersion, KeyAdmin, KeyDescription, KeyProvider, ProviderError,
    RotatedKek, ShredRequest, ShreddedKek,
};
use crate::envelope::{MAX_KEK_REF_LEN, MAX_WRAPPED_KEY_LEN};
use crate::secret::{DataKey, KekRef, ProviderKind, WrappedKey};
pub use admin::{DELETION_WINDOW_DAYS, NAMESPACE_TAG};
pub use kms::{ADMIN_ACTIONS, CALLED_ACTIONS, CONTEXTLESS_ACTIONS, DESCRIBE_ACTIONS};
use kms::{Administering, Kms, Serving};
pub use settings::{
    AwsKmsOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT,
    MAX_MAX_ATTEMPTS, check_key_reference,
};

mod admin;
mod kms;
mod settings;

/// The tag key marking a KMS key decrypt-only (`kmscodec keys disable-encrypt`).
pub const DECRYPT_ONLY_TAG: &str = "kmscodec:encrypt";
/// The value of [`DECRYPT_ONLY_TAG`] that makes the key decrypt-only.
pub const DECRYPT_ONLY_VALUE: &str = "disabled";

/// Encryption context key naming the Temporal namespace a data key was minted for.
pub const CONTEXT_NAMESPACE: &str = "kmscodec:namespace";
/// Encryption context key naming the version of this data-key binding.
pub const CONTEXT_FORMAT: &str = "kmscodec:format";
/// Its value: `"1"` for every data key. It versions the wrap (this context), not the sealed
/// payload format: one data key seals format 1 or 2 payloads alike, every wrapped key in history
/// was bound with `"1"`, and the shipped IAM and key policies require it.
pub const CONTEXT_FORMAT_VALUE: &str = "1";

/// How long a successful credential resolution keeps [`KeyProvider::health`] from resolving
/// again, at most (credentials that expire sooner are resolved again before they expire).
const HEALTH_RECHECK: Duration = Duration::from_secs(300);
/// Margin before credential expiry at which health resolves again.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The encryption context sent with both `GenerateDataKey` and `Decrypt`: the one place it is
/// built, so the two calls can never disagree. KMS binds it to the ciphertext as associated data
/// and logs it in CloudTrail; IAM and key policies can condition on it
/// (`kms:EncryptionContext:kmscodec:namespace`). It holds no secret.
pub fn encryption_context(namespace: &str) -> HashMap<String, String> {
    HashMap::from([
        (CONTEXT_NAMESPACE.to_owned(), namespace.to_owned()),
        (CONTEXT_FORMAT.to_owned(), CONTEXT_FORMAT_VALUE.to_owned()),
    ])
}

/// The KMS operations this module calls, for error messages and the IAM action names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GenerateDataKey`.
    GenerateDataKey,
    /// `Decrypt`.
    Decrypt,
    /// `DescribeKey`.
    DescribeKey,
    /// `GetKeyRotationStatus`.
    GetKeyRotationStatus,
    /// `ListResourceTags`.
    ListResourceTags,
    /// `CreateKey`.
    CreateKey,
    /// `CreateAlias`.
    CreateAlias,
    /// `EnableKeyRotation`.
    EnableKeyRotation,
    /// `RotateKeyOnDemand`.
    RotateKeyOnDemand,
    /// `ListKeyRotations`.
    ListKeyRotations,
    /// `TagResource`.
    TagResource,
    /// `UntagResource`.
    UntagResource,
    /// `ScheduleKeyDeletion`.
    ScheduleKeyDeletion,
    /// `CancelKeyDeletion`.
    CancelKeyDeletion,
    /// `EnableKey`.
    EnableKey,
    /// `ListAliases`.
    ListAliases,
}

impl Operation {
    /// The API operation name.
    pub fn name(self) -> &'static str {
        match self {
            Self::GenerateDataKey => "GenerateDataKey",
            Self::Decrypt => "Decrypt",
            Self::DescribeKey => "DescribeKey",
            Self::GetKeyRotationStatus => "GetKeyRotationStatus",
            Self::ListResourceTags => "ListResourceTags",
            Self::CreateKey => "CreateKey",
            Self::CreateAlias => "CreateAlias",
            Self::EnableKeyRotation => "EnableKeyRotation",
            Self::RotateKeyOnDemand => "RotateKeyOnDemand",
            Self::ListKeyRotations => "ListKeyRotations",
            Self::TagResource => "TagResource",
            Self::UntagResource => "UntagResource",
            Self::ScheduleKeyDeletion => "ScheduleKeyDeletion",
            Self::CancelKeyDeletion => "CancelKeyDeletion",
            Self::EnableKey => "EnableKey",
            Self::ListAliases => "ListAliases",
        }
    }
}

/// Is `text` a KMS key ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`)? Headers must name one.
fn is_key_arn(text: &str) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "kms"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5].strip_prefix("key/").is_some_and(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// An error and its sources, `outer: inner: innermost`, without the `Debug` dump that the SDK's
/// `DisplayErrorContext` appends. SDK errors carry endpoints and codes, never credentials.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        // Some layers repeat their source's message; print it once.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// Maps an SDK error to a [`ProviderError`].
///
/// * `AccessDeniedException` and authentication failures: [`ProviderError::Denied`] (403).
/// * `NotFoundException`: [`ProviderError::NotFound`] (404).
/// * `KMSInvalidStateException` for a key pending deletion: [`ProviderError::Destroyed`] (404):
///   the key was shredded and will be gone when the waiting period ends.
/// * `DisabledException`, `KMSInvalidStateException` (pending import, disabled):
///   [`ProviderError::Disabled`] (403). These states last until an operator acts;
///   a 503 would make every client retry in vain. `KeyUnavailableException` (a custom key store
///   that is briefly disconnected) is the retryable case: [`ProviderError::Unavailable`].
/// * `InvalidCiphertextException`, `IncorrectKeyException` (and a `ValidationException` on
///   `Decrypt`, whose input is the header's wrapped key): [`ProviderError::Invalid`] (400).
/// * `ThrottlingException`, `LimitExceededException`, `KMSInternalException`,
///   `DependencyTimeoutException`, timeouts, connection and credential-fetch failures,
///   unreadable responses: [`ProviderError::Unavailable`] (503). The SDK has already retried
///   the retryable ones within the operation timeout.
/// * Anything else (an unknown code, `InvalidKeyUsageException`, a request the SDK could not
///   build): [`ProviderError::Misconfigured`] (500).
pub fn classify<E, R>(operation: Operation, error: &SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    let op = operation.name();
    match error {
        SdkError::ServiceError(context) => {
            let service = context.err();
            let code = service.code().unwrap_or("UnknownError");
            let mut detail = format!(
                "AWS KMS {op}: {code}: {}",
                service.message().unwrap_or("no message")
            );
            if let Some(request_id) = service.meta().extra("aws_request_id") {
                detail.push_str(&format!(" (request id {request_id})"));
            }
            match code {
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "IncompleteSignature"
                | "MissingAuthenticationToken"
                | "InvalidClientTokenId"
                | "ExpiredTokenException"
                | "KMSAccessDeniedException" => ProviderError::Denied(detail),
                "NotFoundException" => ProviderError::NotFound(detail),
                "KMSInvalidStateException"
                    if service
                        .message()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("pending deletion")) =>
                {
                    ProviderError::Destroyed(detail)
                }
                "DisabledException" | "KMSInvalidStateException" => ProviderError::Disabled(detail),
                "InvalidCiphertextException" | "IncorrectKeyException" => ProviderError::Invalid,
                "ValidationException" if operation == Operation::Decrypt => ProviderError::Invalid,
                "ThrottlingException"
                | "ThrottledException"
                | "LimitExceededException"
                | "KMSInternalException"
                | "KMSInternalFailureException"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "DependencyTimeoutException"
                | "KeyUnavailableException"
                | "RequestTimeout"
                | "RequestTimeoutException" => ProviderError::Unavailable(detail),
                _ => ProviderError::Misconfigured(detail),
            }
        }
        SdkError::TimeoutError(_) => {
            ProviderError::Unavailable(format!("AWS KMS {op}: operation timed out"))
        }
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                "timed out"
            } else if failure.is_io() {
                "connection failed"
            } else {
                "request not sent"
            };
            ProviderError::Unavailable(format!("AWS KMS {op}: {kind}: {}", error_chain(error)))
        }
        SdkError::ResponseError(_) => ProviderError::Unavailable(format!(
            "AWS KMS {op}: unreadable response: {}",
            error_chain(error)
        )),
        SdkError::ConstructionFailure(_) => ProviderError::Misconfigured(format!(
            "AWS KMS {op}: request could not be built: {}",
            error_chain(error)
        )),
        _ => ProviderError::Unavailable(format!("AWS KMS {op}: {}", error_chain(error))),
    }
}

/// Maps a credential-chain failure (seen by [`KeyProvider::health`]).
fn classify_credentials(error: &CredentialsError) -> ProviderError {
    let detail = format!("AWS credentials: {}", error_chain(error));
    match error {
        CredentialsError::CredentialsNotLoaded(_) => ProviderError::Misconfigured(format!(
            "{detail} (no source in the chain had credentials: environment, web identity \
             (IRSA), container/EKS Pod Identity, profile, IMDS)"
        )),
        CredentialsError::InvalidConfiguration(_) => ProviderError::Misconfigured(detail),
        _ => ProviderError::Unavailable(detail),
    }
}

/// The lazily built client and the credentials provider it signs with.
struct Connection {
    kms: Kms,
    credentials: Option<SharedCredentialsProvider>,
}

/// Resolves the AWS SDK configuration from `options` and the SDK's standard chain (region,
/// profile, credentials): one loader for every AWS client kmscodec builds (KMS here, S3 in
/// `storage::s3`), so they read the environment and the shared files the same way.
pub(crate) async fn sdk_config(
    options: &AwsKmsOptions,
    credentials: Option<SharedCredentialsProvider>,
) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .build();
    // The client panics without a behavior version: set it explicitly.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(options.max_attempts))
        .timeout_config(timeouts);
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &options.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    loader.load().await
}

/// The AWS KMS provider.
pub struct AwsKms {
    options: AwsKmsOptions,
    credentials_override: Option<SharedCredentialsProvider>,
    connection: tokio::sync::OnceCell<Connection>,
    /// Until when the last successful credential resolution keeps health from resolving again.
    credentials_checked_until: std::sync::Mutex<Option<SystemTime>>,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("options", &self.options)
            .field("credentials_override", &self.credentials_override.is_some())
            .finish_non_exhaustive()
    }
}

impl AwsKms {
    /// A provider using the standard AWS credential chain. Does no I/O: the client is built on
    /// the first call.
    pub fn new(options: AwsKmsOptions) -> Self {
        Self {
            options,
            credentials_override: None,
            connection: tokio::sync::OnceCell::new(),
            credentials_checked_until: std::sync::Mutex::new(None),
        }
    }

    /// A provider signing with `credentials` instead of the standard chain (embedding, tests).
    pub fn with_credentials_provider(
        options: AwsKmsOptions,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        Self {
            credentials_override: Some(credentials),
            ..Self::new(options)
        }
    }

    /// The settings.
    pub fn options(&self) -> &AwsKmsOptions {
        &self.options
    }

    async fn connection(&self) -> Result<&Connection, ProviderError> {
        self.connection.get_or_try_init(|| self.connect()).await
    }

    async fn kms(&self) -> Result<&Kms, ProviderError> {
        Ok(&self.connection().await?.kms)
    }

    /// Resolves the SDK configuration (region, profile, credential chain) and builds the client.
    async fn connect(&self) -> Result<Connection, ProviderError> {
        let sdk_config = sdk_config(&self.options, self.credentials_override.clone()).await;
        if sdk_config.region().is_none() {
            return Err(ProviderError::Misconfigured(
                "AWS KMS: no region: set `region` in the provider's configuration, or AWS_REGION, \
                 or a region in the AWS profile"
                    .to_owned(),
            ));
        }
        Ok(Connection {
            kms: Kms::new(&sdk_config),
            credentials: sdk_config.credentials_provider(),
        })
    }

    /// Whether health may skip resolving credentials again.
    fn credentials_recently_checked(&self, now: SystemTime) -> bool {
        self.credentials_checked_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| now < until)
    }

    fn record_credentials_checked(&self, now: SystemTime, expiry: Option<SystemTime>) {
        let mut until = now + HEALTH_RECHECK;
        if let Some(expiry) = expiry {
            until = until.min(expiry.checked_sub(EXPIRY_MARGIN).unwrap_or(expiry));
        }
        if let Ok(mut checked) = self.credentials_checked_until.lock() {
            *checked = Some(until);
        }
    }
}

/// Refuses ([`ProviderError::Disabled`]) when the key `key_arn` carries the decrypt-only tag.
async fn refuse_if_decrypt_only(kms: Serving<'_>, key_arn: &str) -> Result<(), ProviderError> {
    let output = kms
        .list_resource_tags()
        .key_id(key_arn)
        .limit(50)
        .send()
        .await
        .map_err(|error| classify(Operation::ListResourceTags, &error))?;
    if is_tagged_decrypt_only(output.tags()) {
        return Err(ProviderError::Disabled(format!(
            "AWS KMS key {key_arn} is tagged {DECRYPT_ONLY_TAG}={DECRYPT_ONLY_VALUE}: the namespace \
             is decrypt-only"
        )));
    }
    Ok(())
}

fn is_tagged_decrypt_only(tags: &[Tag]) -> bool {
    tags.iter()
        .any(|tag| tag.tag_key() == DECRYPT_ONLY_TAG && tag.tag_value() == DECRYPT_ONLY_VALUE)
}

#[async_trait]
impl KeyProvider for AwsKms {
    fn kind(&self) -> ProviderKind {
        ProviderKind::AwsKms
    }

    async fn generate_data_key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<GeneratedKey, ProviderError> {
        let operation = Operation::GenerateDataKey;
        let kms = self.kms().await?.serving();
        let mut output = kms
            .generate_data_key()
            .key_id(key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(encryption_context(namespace)))
            .send()
            .await
            .map_err(|error| classify(operation, &error))?;
        let bad_response =
            |what: &str| ProviderError::Unavailable(format!("AWS KMS GenerateDataKey: {what}"));
        // Take the SDK's plaintext buffer out of the output so it is zeroized when dropped.
        let plaintext = Zeroizing::new(
            output
                .plaintext
                .take()
                .map(Blob::into_inner)
                .ok_or_else(|| bad_response("response has no Plaintext"))?,
        );
        let plaintext = DataKey::from_slice(&plaintext)
            .ok_or_else(|| bad_response("Plaintext is not 32 bytes"))?;
        let wrapped = output
            .ciphertext_blob
            .take()
            .map(Blob::into_inner)
            .filter(|blob| !blob.is_empty() && blob.len() <= MAX_WRAPPED_KEY_LEN)
            .ok_or_else(|| bad_response("CiphertextBlob missing or too long"))?;
        let key_arn = output
            .key_id
            .take()
            .filter(|arn| is_key_arn(arn) && arn.len() <= MAX_KEK_REF_LEN)
            .ok_or_else(|| bad_response("KeyId missing or not a key ARN"))?;
        // Decrypt-only is a tag on the key (see the module docs): checked on every mint, which
        // happens once per data key. The data key just minted is dropped (zeroized) unused.
        refuse_if_decrypt_only(kms, &key_arn).await?;
        Ok(GeneratedKey {
            plaintext,
            wrapped: WrappedKey::new(wrapped),
            kek: KekRef {
                key: key_arn,
                version: 0,
            },
        })
    }

    /// The header holds the key ARN that `GenerateDataKey` returned. A configured key ARN must
    /// match it, a key id must be its key id; an alias may have pointed to other keys over time
    /// (old payloads stay decodable), so for an alias the header's key must be a key ARN in the
    /// alias ARN's region and account (with a bare alias name: any key ARN).
    fn allows_kek(&self, configured: &str, alleged: &KekRef) -> bool {
        if alleged.version != 0 || !is_key_arn(&alleged.key) {
            return false;
        }
        let Some((prefix, key_id)) = alleged.key.split_once(":key/") else {
            return false;
        };
        if configured.starts_with("alias/") {
            return true;
        }
        match configured.split_once(":alias/") {
            Some((alias_prefix, _)) => alias_prefix == prefix,
            None if configured.starts_with("arn:") => configured == alleged.key,
            None => configured == key_id,
        }
    }

    async fn unwrap_data_key(
        &self,
        namespace: &str,
        kek: &KekRef,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, ProviderError> {
        // The header is unauthenticated until the data key opens it: refuse anything a
        // GenerateDataKey of ours could not have produced before calling KMS.
        if kek.version != 0 || !is_key_arn(&kek.key) || wrapped.as_bytes().is_empty() {
            return Err(ProviderError::Invalid);
        }
        let operation = Operation::Decrypt;
        let kms = self.kms().await?.serving();
        let mut output = kms
            .decrypt()
            .key_id(&kek.key)
            .ciphertext_blob(Blob::new(wrapped.as_bytes()))
            .set_encryption_context(Some(encryption_context(namespace)))
            .send()
            .await
            .map_err(|error| classify(operation, &error))?;
        let plaintext = Zeroizing::new(output.plaintext.take().map(Blob::into_inner).ok_or_else(
            || ProviderError::Unavailable("AWS KMS Decrypt: response has no Plaintext".into()),
        )?);
        // KMS used the key we named (it refuses otherwise); a different answer is not ours.
        if output.key_id.as_deref().is_some_and(|arn| arn != kek.key) {
            return Err(ProviderError::Invalid);
        }
        DataKey::from_slice(&plaintext).ok_or(ProviderError::Invalid)
    }

    async fn describe(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        let kms = self.kms().await?.describing();
        let described = kms
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(|error| classify(Operation::DescribeKey, &error))?;
        let metadata = described.key_metadata().ok_or_else(|| {
            ProviderError::Unavailable("AWS KMS DescribeKey: response has no KeyMetadata".into())
        })?;
        let arn = metadata.arn().unwrap_or(metadata.key_id()).to_owned();
        let state = metadata.key_state();
        let usable = metadata.enabled() && state.is_none_or(|s| *s == KeyState::Enabled);
        let symmetric_encrypt = metadata
            .key_usage()
            .is_none_or(|usage| *usage == KeyUsageType::EncryptDecrypt);
        let mut notes = vec![format!("key ARN {arn}")];
        if let Some(state) = state {
            notes.push(format!("key state {}", state.as_str()));
        }
        if let Some(created) = metadata.creation_date() {
            notes.push(format!("created {created}"));
        }
        if let Some(deletion) = metadata.deletion_date() {
            notes.push(format!("scheduled for deletion on {deletion}"));
        }
        if let Some(manager) = metadata.key_manager() {
            notes.push(format!("key manager {}", manager.as_str()));
        }
        if metadata.multi_region() == Some(true) {
            notes.push("multi-Region key".to_owned());
        }
        if !symmetric_encrypt {
            notes.push("key usage is not ENCRYPT_DECRYPT: it cannot wrap data keys".to_owned());
        }
        match kms.get_key_rotation_status().key_id(&arn).send().await {
            Ok(rotation) => {
                if rotation.key_rotation_enabled() {
                    let period = rotation
                        .rotation_period_in_days()
                        .map(|days| format!(" every {days} days"))
                        .unwrap_or_default();
                    let next = rotation
                        .next_rotation_date()
                        .map(|date| format!(", next on {date}"))
                        .unwrap_or_default();
                    notes.push(format!("automatic rotation enabled{period}{next}"));
                } else {
                    notes.push("automatic rotation disabled".to_owned());
                }
                if let Some(started) = rotation.on_demand_rotation_start_date() {
                    notes.push(format!("on-demand rotation in progress since {started}"));
                }
            }
            // Asymmetric, imported-material and custom-key-store keys have no rotation status;
            // an operator role may lack the permission. Neither hides the rest.
            Err(error) => notes.push(format!(
                "rotation status not available: {}",
                classify(Operation::GetKeyRotationStatus, &error)
            )),
        }
        notes.push(
            "KMS keeps every key material version; each wrapped data key names its own, so \
             payloads stay decodable across rotations"
                .to_owned(),
        );
        Ok(KeyDescription {
            provider: ProviderKind::AwsKms.as_str().to_owned(),
            key: key.to_owned(),
            primary_version: None,
            versions: Vec::new(),
            encrypt_enabled: usable && symmetric_encrypt,
            decrypt_enabled: usable && symmetric_encrypt,
            notes,
        })
    }

    /// Builds the client (region check) and resolves credentials through the chain, at most
    /// every few minutes. Calls no KMS operation: the sidecar's role is granted only
    /// [`CALLED_ACTIONS`], and a health probe must not mint data keys or fill CloudTrail with
    /// denied calls. KMS reachability shows in the data path (503s, provider call metrics).
    async fn health(&self) -> Result<(), ProviderError> {
        let connection = self.connection().await?;
        let now = SystemTime::now();
        if self.credentials_recently_checked(now) {
            return Ok(());
        }
        let Some(credentials) = &connection.credentials else {
            return Err(ProviderError::Misconfigured(
                "AWS KMS: no credentials provider configured".to_owned(),
            ));
        };
        let resolved =
            tokio::time::timeout(self.options.timeout, credentials.provide_credentials())
                .await
                .map_err(|_| {
                    ProviderError::Unavailable(format!(
                        "AWS credentials: no answer from the credential chain within {:?}",
                        self.options.timeout
                    ))
                })?
                .map_err(|error| classify_credentials(&error))?;
        self.record_credentials_checked(now, resolved.expiry());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
