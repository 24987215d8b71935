//! Key providers: where key-encryption keys (KEKs) live and how data keys are minted and
//! unwrapped.
//!
//! A [`KeyProvider`] talks to one key management system. It never sees payloads, never caches
//! (the keyring does that) and never imports the HTTP or gRPC stack. Every error says whether it
//! is a denial, a missing key, an outage (retryable) or bad input, so transports can answer
//! 403/404/503/400 without knowing which backend is behind them.

use std::fmt;

use async_trait::async_trait;

use crate::secret::{DataKey, KekRef, ProviderKind, WrappedKey};

pub mod aws_kms;
pub mod local_file;
pub mod vault;

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
}
