//! The sealed payload format: header encoding and parsing, seal and open.
//!
//! Synchronous and free of I/O: this module turns a data key and bytes into sealed bytes and
//! back, nothing else. It never fetches keys, never logs and never decides what is "ours" beyond
//! the magic bytes. The byte layout is specified in `docs/format.md` and frozen by the test
//! vectors in `tests/vectors/`.
//!
//! The algorithm follows the AWS Encryption SDK suite
//! `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY` (suite id 0x0478), the suite Temporal's data
//! conversion docs name:
//!
//! * a fresh random 256-bit message id per payload;
//! * HKDF-SHA512 (RFC 5869): extract with the message id as salt and the data key as input key
//!   material, then expand with `suite_id || "DERIVEKEY"` into the AES-256-GCM key and with
//!   `"COMMITKEY"` into a 256-bit key commitment;
//! * the commitment is stored in the header and compared in constant time before decryption,
//!   so a ciphertext opens under exactly one data key;
//! * AES-256-GCM (NIST SP 800-38D) over the serialized payload, with the whole header as
//!   associated data. Each derived key encrypts exactly one message, so the all-zero 96-bit
//!   nonce never repeats under a key (the Encryption SDK's message format v2 makes the same
//!   argument for its header IV).

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::{DataKey, KekRef, ProviderKind, WrappedKey};

/// The four bytes every sealed payload's `data` starts with.
pub const MAGIC: [u8; 4] = *b"KMSC";
/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// AWS Encryption SDK suite id of `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY`.
pub const SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY: u16 = 0x0478;
/// Length of the random message id (the HKDF salt).
pub const MESSAGE_ID_LEN: usize = 32;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the AES-GCM authentication tag.
pub const TAG_LEN: usize = 16;

/// Longest namespace the header carries (one length byte). Temporal's own limit is lower.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// Longest KEK reference (an AWS key ARN is about 75 bytes; an alias ARN up to ~300).
pub const MAX_KEK_REF_LEN: usize = 1024;
/// Longest wrapped data key (AWS KMS ciphertext blobs for 32 bytes are ~184 bytes; Vault
/// transit ciphertexts ~90; local-file 60).
pub const MAX_WRAPPED_KEY_LEN: usize = 2048;

const DERIVE_KEY_LABEL: &[u8] = b"DERIVEKEY";
const COMMIT_KEY_LABEL: &[u8] = b"COMMITKEY";
/// Fixed part of the header: magic, version, suite, provider, namespace length, KEK reference
/// length, KEK version, wrapped key length, message id, commitment.
const FIXED_HEADER_LEN: usize = 4 + 1 + 2 + 1 + 1 + 2 + 4 + 2 + MESSAGE_ID_LEN + COMMITMENT_LEN;

/// Why sealing or opening failed.
///
/// Everything a decoder can learn from the outside is folded into [`EnvelopeError::Malformed`],
/// [`EnvelopeError::UnsupportedVersion`], [`EnvelopeError::UnsupportedSuite`] and the single
/// opaque [`EnvelopeError::Unopenable`]: a wrong key and tampered bytes look the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The header does not parse; the string names the field, for logs only.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    /// The version byte names a format this build does not read.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The suite id names an algorithm this build does not implement.
    #[error("unsupported algorithm suite {0:#06x}")]
    UnsupportedSuite(u16),
    /// The key commitment or the authentication tag did not verify.
    #[error("envelope does not open")]
    Unopenable,
    /// A header field given to the sealer is longer than the format allows.
    #[error("header field too long: {0}")]
    FieldTooLong(&'static str),
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
}

/// Does `data` start with the envelope magic? Cheap test used to tell our payloads from others.
pub fn has_magic(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The header bytes that stay the same for every payload sealed under one data key: everything
/// up to and including the wrapped key. Built once when a data key becomes active.
#[derive(Clone)]
pub struct HeaderTemplate {
    bytes: Vec<u8>,
}

impl fmt::Debug for HeaderTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderTemplate({} bytes)", self.bytes.len())
    }
}

impl HeaderTemplate {
    /// Lays out the constant part of the header.
    pub fn new(
        namespace: &str,
        provider: ProviderKind,
        kek: &KekRef,
        wrapped: &WrappedKey,
    ) -> Result<Self, EnvelopeError> {
        let ns_len = u8::try_from(namespace.len())
            .ok()
            .filter(|len| *len > 0)
            .ok_or(EnvelopeError::FieldTooLong("namespace"))?;
        let kek_len = u16::try_from(kek.key.len())
            .ok()
            .filter(|len| *len > 0 && usize::from(*len) <= MAX_KEK_REF_LEN)
            .ok_or(EnvelopeError::FieldTooLong("kek reference"))?;
        let wrapped_len = u16::try_from(wrapped.as_bytes().len())
            .ok()
            .filter(|len| *len > 0 && usize::from(*len) <= MAX_WRAPPED_KEY_LEN)
            .ok_or(EnvelopeError::FieldTooLong("wrapped key"))?;

        let mut bytes = Vec::with_capacity(
            FIXED_HEADER_LEN + namespace.len() + kek.key.len() + wrapped.as_bytes().len(),
        );
        bytes.extend_from_slice(&MAGIC);
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY.to_be_bytes());
        bytes.push(provider.code());
        bytes.push(ns_len);
        bytes.extend_from_slice(namespace.as_bytes());
        bytes.extend_from_slice(&kek_len.to_be_bytes());
        bytes.extend_from_slice(kek.key.as_bytes());
        bytes.extend_from_slice(&kek.version.to_be_bytes());
        bytes.extend_from_slice(&wrapped_len.to_be_bytes());
        bytes.extend_from_slice(wrapped.as_bytes());
        Ok(Self { bytes })
    }

    /// Whether `header` was laid out from this template: the same namespace, provider, KEK,
    /// KEK version and wrapped key, byte for byte.
    pub fn laid_out(&self, header: &Header<'_>) -> bool {
        header.bytes.len() == self.bytes.len() + MESSAGE_ID_LEN + COMMITMENT_LEN
            && header.bytes.starts_with(&self.bytes)
    }

    /// Length of a sealed payload for a plaintext of `plaintext_len` bytes.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.bytes.len() + MESSAGE_ID_LEN + COMMITMENT_LEN + plaintext_len + TAG_LEN
    }
}

/// A parsed, not yet authenticated header. Every field is as the sender alleges until
/// [`open`] has verified the commitment and the tag.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// Which provider wrapped the data key.
    pub alleged_provider: ProviderKind,
    /// The namespace the payload was sealed for.
    pub alleged_namespace: &'a str,
    /// The KEK reference that wrapped the data key.
    pub alleged_kek_key: &'a str,
    /// The KEK version (0 when the provider does not use one).
    pub alleged_kek_version: u32,
    /// The wrapped data key.
    pub alleged_wrapped_key: &'a [u8],
    message_id: &'a [u8; MESSAGE_ID_LEN],
    commitment: &'a [u8; COMMITMENT_LEN],
    /// The whole header, which is the GCM associated data.
    bytes: &'a [u8],
}

impl Header<'_> {
    /// The alleged KEK as an owned reference.
    pub fn alleged_kek(&self) -> KekRef {
        KekRef {
            key: self.alleged_kek_key.to_owned(),
            version: self.alleged_kek_version,
        }
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked and names what it was reading.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        if self.rest.len() < len {
            return Err(EnvelopeError::Malformed(what));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<&'a [u8; N], EnvelopeError> {
        self.take(N, what)?
            .try_into()
            .map_err(|_| EnvelopeError::Malformed(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(*self.array::<2>(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, EnvelopeError> {
        Ok(u32::from_be_bytes(*self.array::<4>(what)?))
    }

    /// A length-prefixed field whose length must lie in `1..=max`.
    fn field(
        &mut self,
        len: usize,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], EnvelopeError> {
        if len == 0 || len > max {
            return Err(EnvelopeError::Malformed(what));
        }
        self.take(len, what)
    }

    fn utf8(
        &mut self,
        len: usize,
        max: usize,
        what: &'static str,
    ) -> Result<&'a str, EnvelopeError> {
        let bytes = self.field(len, max, what)?;
        std::str::from_utf8(bytes).map_err(|_| EnvelopeError::Malformed(what))
    }
}

/// Parses the header of a sealed payload. Returns the header and the remaining bytes, which are
/// the ciphertext followed by the tag. Nothing is authenticated yet.
pub fn parse(data: &[u8]) -> Result<(Header<'_>, &[u8]), EnvelopeError> {
    let mut reader = Reader { rest: data };
    if reader.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(EnvelopeError::Malformed("magic"));
    }
    let version = reader.u8("version")?;
    if version != FORMAT_VERSION {
        return Err(EnvelopeError::UnsupportedVersion(version));
    }
    let suite = reader.u16("suite")?;
    if suite != SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY {
        return Err(EnvelopeError::UnsupportedSuite(suite));
    }
    let provider = ProviderKind::from_code(reader.u8("provider")?)
        .ok_or(EnvelopeError::Malformed("provider"))?;
    let ns_len = usize::from(reader.u8("namespace length")?);
    let namespace = reader.utf8(ns_len, MAX_NAMESPACE_LEN, "namespace")?;
    let kek_len = usize::from(reader.u16("kek reference length")?);
    let kek_key = reader.utf8(kek_len, MAX_KEK_REF_LEN, "kek reference")?;
    let kek_version = reader.u32("kek version")?;
    let wrapped_len = usize::from(reader.u16("wrapped key length")?);
    let wrapped = reader.field(wrapped_len, MAX_WRAPPED_KEY_LEN, "wrapped key")?;
    let message_id = reader.array::<MESSAGE_ID_LEN>("message id")?;
    let commitment = reader.array::<COMMITMENT_LEN>("commitment")?;
    let body = reader.rest;
    if body.len() < TAG_LEN {
        return Err(EnvelopeError::Malformed("tag"));
    }
    let header_len = data.len() - body.len();
    let bytes = data
        .get(..header_len)
        .ok_or(EnvelopeError::Malformed("header"))?;
    Ok((
        Header {
            alleged_provider: provider,
            alleged_namespace: namespace,
            alleged_kek_key: kek_key,
            alleged_kek_version: kek_version,
            alleged_wrapped_key: wrapped,
            message_id,
            commitment,
            bytes,
        },
        body,
    ))
}

/// Derives the per-message AES key and the key commitment (HKDF-SHA512, RFC 5869).
fn derive(
    data_key: &DataKey,
    message_id: &[u8; MESSAGE_ID_LEN],
) -> (Zeroizing<[u8; 32]>, [u8; COMMITMENT_LEN]) {
    let hkdf = Hkdf::<Sha512>::new(Some(message_id), data_key.expose_secret());
    let mut info = [0u8; 2 + DERIVE_KEY_LABEL.len()];
    info[..2].copy_from_slice(&SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY.to_be_bytes());
    info[2..].copy_from_slice(DERIVE_KEY_LABEL);
    let mut encryption_key = Zeroizing::new([0u8; 32]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    // 32 bytes is far below HKDF-SHA512's 255 * 64 byte output limit: these cannot fail.
    let derived = hkdf.expand(&info, encryption_key.as_mut_slice());
    let committed = hkdf.expand(COMMIT_KEY_LABEL, &mut commitment);
    debug_assert!(derived.is_ok() && committed.is_ok());
    (encryption_key, commitment)
}

fn cipher(encryption_key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(encryption_key.into())
}

/// Bytes of operating-system randomness each thread fetches at once for message ids: 128 ids
/// per `getrandom` call instead of one.
const RANDOM_POOL_LEN: usize = 128 * MESSAGE_ID_LEN;

/// A thread's unused operating-system random bytes.
struct RandomPool {
    bytes: [u8; RANDOM_POOL_LEN],
    /// Bytes before this offset have been handed out.
    used: usize,
}

thread_local! {
    static RANDOM_POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool {
            bytes: [0; RANDOM_POOL_LEN],
            used: RANDOM_POOL_LEN,
        })
    };
}

/// A fresh random message id: 32 bytes straight from the operating system's generator
/// (`getrandom`), fetched in blocks of [`RANDOM_POOL_LEN`] per thread. Each byte is handed out
/// once. Message ids are public (they travel in the header); what matters is that they never
/// repeat, which 256 random bits give. The pool is per thread and the process never forks
/// without exec, so no two sealers can see the same bytes.
pub fn random_message_id() -> Result<[u8; MESSAGE_ID_LEN], EnvelopeError> {
    RANDOM_POOL.with_borrow_mut(|pool| {
        if pool.used + MESSAGE_ID_LEN > RANDOM_POOL_LEN {
            getrandom::fill(&mut pool.bytes).map_err(|_| EnvelopeError::Random)?;
            pool.used = 0;
        }
        let mut id = [0u8; MESSAGE_ID_LEN];
        id.copy_from_slice(&pool.bytes[pool.used..pool.used + MESSAGE_ID_LEN]);
        pool.used += MESSAGE_ID_LEN;
        Ok(id)
    })
}

/// Seals one payload, appending the sealed bytes to `out`.
///
/// `write_plaintext` appends the plaintext to the buffer it is given; it is encrypted in place
/// there, so the plaintext is written once and never copied.
pub fn seal(
    data_key: &DataKey,
    template: &HeaderTemplate,
    message_id: &[u8; MESSAGE_ID_LEN],
    out: &mut Vec<u8>,
    write_plaintext: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EnvelopeError> {
    let (encryption_key, commitment) = derive(data_key, message_id);
    let start = out.len();
    out.extend_from_slice(&template.bytes);
    out.extend_from_slice(message_id);
    out.extend_from_slice(&commitment);
    let body_start = out.len();
    write_plaintext(out);
    let (header, body) = out[start..].split_at_mut(body_start - start);
    let tag = cipher(&encryption_key)
        .encrypt_inout_detached(&Nonce::default(), header, body.into())
        .map_err(|_| EnvelopeError::FieldTooLong("plaintext"))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Opens a parsed payload with the data key its header names, appending the plaintext to `out`.
///
/// The commitment is checked in constant time before any decryption; a wrong key, a flipped
/// byte anywhere in header or body, or a wrong tag all give [`EnvelopeError::Unopenable`], and
/// `out` is left as it was.
pub fn open(
    data_key: &DataKey,
    header: &Header<'_>,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let (encryption_key, commitment) = derive(data_key, header.message_id);
    if !bool::from(commitment.ct_eq(header.commitment)) {
        return Err(EnvelopeError::Unopenable);
    }
    let split = body
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(EnvelopeError::Malformed("tag"))?;
    let (ciphertext, tag) = body.split_at(split);
    let tag = Tag::try_from(tag).map_err(|_| EnvelopeError::Malformed("tag"))?;
    let start = out.len();
    out.extend_from_slice(ciphertext);
    let result = cipher(&encryption_key).decrypt_inout_detached(
        &Nonce::default(),
        header.bytes,
        (&mut out[start..]).into(),
        &tag,
    );
    if result.is_err() {
        // Never leave unauthenticated plaintext behind.
        out.truncate(start);
        return Err(EnvelopeError::Unopenable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DataKey {
        DataKey::from_slice(&[byte; 32]).unwrap()
    }

    fn template(namespace: &str) -> HeaderTemplate {
        HeaderTemplate::new(
            namespace,
            ProviderKind::LocalFile,
            &KekRef {
                key: "dev".into(),
                version: 3,
            },
            &WrappedKey::new(vec![7; 60]),
        )
        .unwrap()
    }

    fn sealed(plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(&key(1), &template("default"), &[9; 32], &mut out, |buf| {
            buf.extend_from_slice(plaintext)
        })
        .unwrap();
        out
    }

    #[test]
    fn message_ids_never_repeat_across_pool_refills_and_threads() {
        let per_thread = 3 * RANDOM_POOL_LEN / MESSAGE_ID_LEN + 7;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|_| random_message_id().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert_ne!(id, [0u8; MESSAGE_ID_LEN]);
                assert!(seen.insert(id), "a message id repeated");
            }
        }
        assert_eq!(seen.len(), 4 * per_thread);
    }

    #[test]
    fn round_trip_and_fields() {
        let out = sealed(b"hello");
        assert_eq!(out.len(), template("default").sealed_len(5));
        let (header, body) = parse(&out).unwrap();
        assert_eq!(header.alleged_namespace, "default");
        assert_eq!(header.alleged_kek_key, "dev");
        assert_eq!(header.alleged_kek_version, 3);
        assert_eq!(header.alleged_provider, ProviderKind::LocalFile);
        assert_eq!(header.alleged_wrapped_key, &[7; 60][..]);
        let mut plain = b"prefix".to_vec();
        open(&key(1), &header, body, &mut plain).unwrap();
        assert_eq!(plain, b"prefixhello");
    }

    #[test]
    fn wrong_key_is_unopenable_and_leaves_output_untouched() {
        let out = sealed(b"hello");
        let (header, body) = parse(&out).unwrap();
        let mut plain = b"keep".to_vec();
        assert_eq!(
            open(&key(2), &header, body, &mut plain),
            Err(EnvelopeError::Unopenable)
        );
        assert_eq!(plain, b"keep");
    }

    #[test]
    fn every_single_byte_flip_fails() {
        let out = sealed(b"some plaintext bytes");
        for index in 0..out.len() {
            let mut tampered = out.clone();
            tampered[index] ^= 0x01;
            let result = parse(&tampered)
                .and_then(|(header, body)| open(&key(1), &header, body, &mut Vec::new()));
            assert!(result.is_err(), "flip at byte {index} was accepted");
        }
    }

    #[test]
    fn truncation_at_every_length_fails_without_panic() {
        let out = sealed(b"abc");
        for len in 0..out.len() {
            let result = parse(&out[..len])
                .and_then(|(header, body)| open(&key(1), &header, body, &mut Vec::new()));
            assert!(result.is_err(), "truncation to {len} bytes was accepted");
        }
    }

    #[test]
    fn version_and_suite_are_checked() {
        let mut out = sealed(b"x");
        out[4] = 2;
        assert_eq!(
            parse(&out).unwrap_err(),
            EnvelopeError::UnsupportedVersion(2)
        );
        let mut out = sealed(b"x");
        out[5] = 0;
        out[6] = 0x14;
        assert_eq!(
            parse(&out).unwrap_err(),
            EnvelopeError::UnsupportedSuite(0x0014)
        );
    }

    #[test]
    fn template_rejects_oversized_fields() {
        let wrapped = WrappedKey::new(vec![1; 8]);
        let kek = KekRef {
            key: "k".into(),
            version: 1,
        };
        assert!(HeaderTemplate::new("", ProviderKind::LocalFile, &kek, &wrapped).is_err());
        assert!(
            HeaderTemplate::new(&"n".repeat(256), ProviderKind::LocalFile, &kek, &wrapped).is_err()
        );
        let long_kek = KekRef {
            key: "k".repeat(MAX_KEK_REF_LEN + 1),
            version: 1,
        };
        assert!(HeaderTemplate::new("ns", ProviderKind::LocalFile, &long_kek, &wrapped).is_err());
        let long_wrapped = WrappedKey::new(vec![1; MAX_WRAPPED_KEY_LEN + 1]);
        assert!(HeaderTemplate::new("ns", ProviderKind::LocalFile, &kek, &long_wrapped).is_err());
    }
}
