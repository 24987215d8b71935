//! Key types: plaintext data keys, wrapped data keys and references to key-encryption keys.
//!
//! This module owns *what* a key is, never *how* it is used: no cipher lives here. A plaintext
//! [`DataKey`] has no `Clone`, no `Debug` that shows bytes and no `Serialize`; its bytes are
//! zeroized when it is dropped, and only the crate's crypto code reads them
//! (`expose_secret` is crate-private). A [`Credential`] (a Vault token read from the environment)
//! gets the same treatment: redacted `Debug`, zeroized on drop, compared in constant time.

use std::fmt;
use std::path::Path;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a data key in bytes: AES-256.
pub const DATA_KEY_LEN: usize = 32;

/// A plaintext 256-bit data key (DEK).
///
/// Lives on the heap so moving it never leaves copies of the bytes behind; zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey(Box<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// Builds a data key from a byte slice that must be exactly 32 bytes long.
    ///
    /// The caller stays responsible for zeroizing its own copy.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Box::new([0u8; DATA_KEY_LEN]);
        if bytes.len() != DATA_KEY_LEN {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(Self(key))
    }

    /// Generates a fresh random data key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = Box::new([0u8; DATA_KEY_LEN]);
        getrandom::fill(key.as_mut_slice())?;
        Ok(Self(key))
    }

    /// The secret bytes. Crate-private: only crypto code may read them.
    pub(crate) fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A credential for a key provider (a Vault token), as configuration read it.
///
/// `Clone` because the configuration that holds it is; every copy is zeroized on drop. `Debug` never
/// shows it, and equality is decided in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Credential(String);

impl Credential {
    /// Wraps a credential. The caller stays responsible for zeroizing its own copy.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Crate-private: only the provider that sends it reads it.
    pub(crate) fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for Credential {}

/// A data key encrypted under a key-encryption key (KEK), as returned by the provider.
///
/// Public data: it travels in every sealed payload header.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    /// Wraps provider output.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The wrapped bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// Which provider wrapped a data key. Stored as one byte in the envelope header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// The local key file backend (`keys::local_file`).
    LocalFile,
    /// HashiCorp Vault or OpenBao transit (`keys::vault`).
    VaultTransit,
    /// AWS KMS (`keys::aws_kms`).
    AwsKms,
}

impl ProviderKind {
    /// The byte stored in the envelope header.
    pub fn code(self) -> u8 {
        match self {
            Self::LocalFile => 1,
            Self::VaultTransit => 2,
            Self::AwsKms => 3,
        }
    }

    /// Reverses [`ProviderKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::LocalFile),
            2 => Some(Self::VaultTransit),
            3 => Some(Self::AwsKms),
            _ => None,
        }
    }

    /// The name used in configuration, metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalFile => "local",
            Self::VaultTransit => "vault",
            Self::AwsKms => "aws",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one version of a key-encryption key inside its provider.
///
/// `key` is the provider's key reference (a transit key name, a KMS key ARN, a local key name);
/// `version` is the KEK version that wrapped the data key, or 0 where the provider keeps the
/// version inside the wrapped bytes (AWS KMS).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KekRef {
    /// The provider's reference to the key.
    pub key: String,
    /// The key version, 0 when not applicable.
    pub version: u32,
}

impl fmt::Display for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version == 0 {
            f.write_str(&self.key)
        } else {
            write!(f, "{}:v{}", self.key, self.version)
        }
    }
}

/// Reads a bearer token file: trimmed, visible ASCII only.
pub fn read_token_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            format!(
                "{} does not hold a token (empty, or characters other than visible ASCII)",
                path.display()
            )
        })?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_debug_never_shows_bytes() {
        let key = DataKey::from_slice(&[0xAB; 32]).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "DataKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn credential_debug_never_shows_the_value() {
        let token = Credential::new("s.very-secret-token");
        assert_eq!(format!("{token:?}"), "Credential(<redacted>)");
        assert_eq!(token, Credential::new("s.very-secret-token"));
        assert_ne!(token, Credential::new("s.other"));
    }

    #[test]
    fn data_key_rejects_wrong_length() {
        assert!(DataKey::from_slice(&[0; 31]).is_none());
        assert!(DataKey::from_slice(&[0; 33]).is_none());
    }

    #[test]
    fn provider_codes_round_trip() {
        for kind in [
            ProviderKind::LocalFile,
            ProviderKind::VaultTransit,
            ProviderKind::AwsKms,
        ] {
            assert_eq!(ProviderKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ProviderKind::from_code(0), None);
        assert_eq!(ProviderKind::from_code(4), None);
    }
}
