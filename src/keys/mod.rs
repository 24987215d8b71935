//! Key providers: where key-encryption keys (KEKs) live and how data keys are minted and
//! unwrapped.
//!
//! A [`KeyProvider`] talks to one key management system. It never sees payloads, never caches
//! (the keyring does that) and never imports the HTTP or gRPC stack. Every error says whether it
//! is a denial, a missing key, an outage (retryable) or bad input, so transports can answer
//! 403/404/503/400 without knowing which backend is behind them.
//!
//! [`KeyAdmin`] is the operators' side of the same backends (create, rotate, decrypt-only,
//! shred): only `kmscodec keys ...` and [`crate::keyadmin`] call it, never the serving path.
//!
//! [`open`] is the one place a [`ProviderConfig`] becomes a provider, for the server and for
//! administration alike.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::secret::{DataKey, KekRef, ProviderKind, WrappedKey};
use aws_kms::{AwsKms, AwsKmsOptions};
use local_file::LocalFile;
use vault::{VaultConfig, VaultTransit};

pub mod aws_kms;
pub mod local_file;
pub mod vault;

/// A key provider's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    /// A local keyring file.
    Local {
        /// The keyring file.
        path: PathBuf,
        /// Create the file (with one key named after the namespace's key) when it is missing.
        create_missing: bool,
    },
    /// HashiCorp Vault or OpenBao transit (`kind = "vault"`).
    Vault(Box<VaultConfig>),
    /// AWS KMS (`kind = "aws"`): region, endpoint, profile, timeouts and retries. Credentials
    /// come from the AWS SDK's standard chain, never from this file.
    Aws(AwsKmsOptions),
}

impl ProviderConfig {
    /// The `kind` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Vault(_) => "vault",
            Self::Aws(_) => "aws",
        }
    }
}

/// A provider [`open`] built.
pub struct Opened {
    /// The provider, with its administration side.
    pub provider: Arc<dyn KeyAdmin>,
    /// Whether a new local keyring file was created.
    pub created: bool,
}

/// Builds the provider `config` describes. `create_with`: a local keyring file that does not
/// exist yet is created holding this key (any other kind ignores it).
///
/// No network I/O: Vault logs in and AWS resolves its credential chain on the first call, so an
/// unreachable service never blocks startup.
pub fn open(config: &ProviderConfig, create_with: Option<&str>) -> Result<Opened, ProviderError> {
    let (provider, created): (Arc<dyn KeyAdmin>, bool) = match config {
        ProviderConfig::Local { path, .. } => match create_with {
            Some(key) => {
                let (local, created) = LocalFile::open_or_create(path, key)?;
                (Arc::new(local), created)
            }
            None => (Arc::new(LocalFile::open(path)?), false),
        },
        ProviderConfig::Vault(vault) => {
            let provider = VaultTransit::new(vault)?;
            tracing::info!(
                address = %vault.address,
                mount = %vault.mount,
                auth = provider.auth_method(),
                "vault transit provider configured"
            );
            (Arc::new(provider), false)
        }
        ProviderConfig::Aws(options) => (Arc::new(AwsKms::new(options.clone())), false),
    };
    Ok(Opened { provider, created })
}

/// A data key freshly minted by a provider: the plaintext for sealing and its wrapped form for
/// the header.
pub struct GeneratedKey {
    /// The plaintext data key.
    pub plaintext: DataKey,
    /// The data key wrapped under the KEK, with the namespace bound into the wrap.
    pub wrapped: WrappedKey,
    /// Which KEK (and version) wrapped it.
    pub kek: KekRef,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("wrapped", &self.wrapped)
            .field("kek", &self.kek)
            .finish_non_exhaustive()
    }
}

/// One version of a KEK as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KekVersion {
    /// The version number.
    pub version: u32,
    /// When it was created (RFC 3339), if the provider says.
    pub created_at: Option<String>,
}

/// What a provider says about a namespace's KEK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyDescription {
    /// Provider kind.
    pub provider: String,
    /// The provider's key reference.
    pub key: String,
    /// The version new data keys are wrapped under.
    pub primary_version: Option<u32>,
    /// All versions that can still unwrap.
    pub versions: Vec<KekVersion>,
    /// Whether new data keys may be minted.
    pub encrypt_enabled: bool,
    /// Whether data keys may be unwrapped.
    pub decrypt_enabled: bool,
    /// Provider-specific notes (rotation schedule, deletion state).
    pub notes: Vec<String>,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the caller (missing permission, policy).
    #[error("permission denied by key provider: {0}")]
    Denied(String),
    /// The named key (or key version) does not exist.
    #[error("key not found: {0}")]
    NotFound(String),
    /// The key exists but may not be used for this operation now (disabled, pending deletion).
    #[error("key disabled: {0}")]
    Disabled(String),
    /// The key was crypto-shredded: destroyed, or scheduled for destruction and unusable until
    /// then. Payloads sealed under it will never open again (unless a scheduled destruction is
    /// cancelled in time).
    #[error("key destroyed: {0}")]
    Destroyed(String),
    /// The provider could not be reached or failed; retrying later may succeed.
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// The wrapped key does not unwrap under the named KEK for this namespace: bad input.
    #[error("wrapped data key does not unwrap")]
    Invalid,
    /// The provider's configuration or local state is wrong (unreadable file, bad key material).
    #[error("key provider misconfigured: {0}")]
    Misconfigured(String),
}

impl ProviderError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Short closed-set label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::NotFound(_) => "not_found",
            Self::Disabled(_) => "disabled",
            Self::Destroyed(_) => "destroyed",
            Self::Unavailable(_) => "unavailable",
            Self::Invalid => "invalid",
            Self::Misconfigured(_) => "misconfigured",
        }
    }
}

/// A key management backend.
///
/// Implementations bind the namespace into every wrap (associated data or encryption context),
/// so a wrapped key minted for one namespace never unwraps for another.
#[async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// Which kind of backend this is.
    fn kind(&self) -> ProviderKind;

    /// Mints a new data key for `namespace` under the KEK named `key`.
    async fn generate_data_key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<GeneratedKey, ProviderError>;

    /// Unwraps a data key that the header says `kek` wrapped for `namespace`.
    async fn unwrap_data_key(
        &self,
        namespace: &str,
        kek: &KekRef,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, ProviderError>;

    /// Describes the KEK named `key`.
    async fn describe(&self, key: &str) -> Result<KeyDescription, ProviderError>;

    /// Checks that the backend is reachable and usable.
    async fn health(&self) -> Result<(), ProviderError>;

    /// Whether a payload header's (unauthenticated) `alleged` KEK is one that a namespace whose
    /// policy names `configured` may have sealed under, in any version. Checked before any
    /// provider call, so that forged headers reach no KMS. The default: the same key name.
    fn allows_kek(&self, configured: &str, alleged: &KekRef) -> bool {
        alleged.key == configured
    }
}

/// What [`KeyAdmin::create_kek`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreatedKek {
    /// False when the key already existed: create is idempotent and changes nothing then.
    pub created: bool,
    /// The provider's own identifier of the key (transit key name, key ARN, local key name).
    pub key_id: String,
    /// What was set, and anything about an existing key that differs from what create sets.
    pub notes: Vec<String>,
}

/// What [`KeyAdmin::rotate_kek`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotatedKek {
    /// The new primary version, where the provider numbers versions (not AWS KMS).
    pub version: Option<u32>,
    /// Provider-specific details.
    pub notes: Vec<String>,
}

/// How [`KeyAdmin::shred_kek`] destroys a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShredRequest {
    /// Waiting period before the key material is destroyed (AWS KMS: 7 to 30 days; local file:
    /// any). During it the key is unusable, and the destruction can be cancelled.
    pub pending_days: u32,
    /// Destroy now, without a waiting period (local file only; Vault always deletes at once).
    pub immediately: bool,
}

/// What [`KeyAdmin::shred_kek`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShreddedKek {
    /// The key material is gone already.
    pub destroyed_now: bool,
    /// When it will be destroyed (RFC 3339), when the provider waits.
    pub destroy_after: Option<String>,
    /// Provider-specific details (how to cancel, what was cleaned up).
    pub notes: Vec<String>,
}

/// Administration of the KEKs of one backend: the operators' side of a [`KeyProvider`].
///
/// Every method acts on the provider only. Running kmscodec processes learn about a change at
/// their next provider call (a new data key, an unwrap); `kmscodec keys` (`crate::keyadmin`) tells them sooner
/// through their admin API when asked to.
#[async_trait]
pub trait KeyAdmin: KeyProvider {
    /// Creates the KEK `key` for `namespace` with kmscodec's safe settings if it does not exist
    /// (idempotent): never exportable, deletion not allowed, rotation enabled where the provider
    /// rotates by itself.
    async fn create_kek(&self, namespace: &str, key: &str) -> Result<CreatedKek, ProviderError>;

    /// Adds a new version of the KEK; new data keys are wrapped under it, payloads wrapped under
    /// older versions keep opening.
    async fn rotate_kek(&self, key: &str) -> Result<RotatedKek, ProviderError>;

    /// Turns decrypt-only mode on (`true`: no new data key may be minted under `key`, existing
    /// payloads keep opening) or off. Returns notes on how the provider enforces it.
    async fn set_decrypt_only(
        &self,
        key: &str,
        decrypt_only: bool,
    ) -> Result<Vec<String>, ProviderError>;

    /// Crypto-shreds the KEK: every payload sealed under any of its versions becomes unreadable
    /// for good, once the waiting period (if any) is over.
    async fn shred_kek(
        &self,
        key: &str,
        request: ShredRequest,
    ) -> Result<ShreddedKek, ProviderError>;

    /// Cancels a scheduled destruction of `key` while its waiting period lasts, making it usable
    /// again as it was. Providers that destroy at once answer [`ProviderError::Destroyed`].
    async fn cancel_shred(&self, key: &str) -> Result<Vec<String>, ProviderError>;

    /// The key references this provider holds that kmscodec may administer (local key names,
    /// transit key names, AWS alias names), for listing the namespaces a `*` entry serves.
    async fn list_keks(&self) -> Result<Vec<String>, ProviderError>;

    /// Like [`KeyProvider::describe`], plus what only an administrator may read (decrypt-only
    /// state, rotation history).
    async fn inspect_kek(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        self.describe(key).await
    }
}
