//! The sealed payload format: header encoding and parsing, seal and open.
//!
//! Synchronous and free of I/O: this module turns a data key and bytes into sealed bytes and
//! back, nothing else. It never fetches keys, never logs and never decides what is "ours" beyond
//! the magic bytes. The byte layout is specified in `docs/format.md` and frozen by the test
//! vectors in `tests/vectors/`.
//!
//! Two formats, both read by every build from this one on:
//!
//! * **Format 2** (written by default), suite 0x5801: XAES-256-GCM (C2SP `XAES-256-GCM`, an
//!   AES-256-GCM with a 192-bit random nonce whose per-message key comes from a NIST
//!   SP 800-108r1 CMAC KDF, two AES block encryptions) under a key derived once per data key
//!   with HKDF-SHA512, which also derives the 256-bit key commitment. Per payload the cost is
//!   two AES blocks on top of the GCM itself.
//! * **Format 1**, suite 0x0478, the AWS Encryption SDK's
//!   `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY`: a fresh random 256-bit message id per payload,
//!   HKDF-SHA512 from the data key and the message id into a one-message AES-256-GCM key (with
//!   the all-zero nonce) and the key commitment. Ten SHA-512 compressions per payload.
//!
//! * **Format 3**, suite 0x5801: format 2 with one more header byte, `compression`, after the
//!   wrapped key: whether this payload's plaintext is a zstd frame (opt-in per namespace,
//!   [`crate::compression`]). Keys, derivations and cipher are format 2's.
//!
//! In all, the commitment is stored in the header and compared in constant time before
//! decryption, so a ciphertext opens under exactly one data key, and the whole header is the
//! GCM associated data.
//!
//! The key derivations (HKDF-SHA512, the XAES-256-GCM CMAC KDF on the RustCrypto `aes` block
//! cipher) are this module's own; the bulk AES-256-GCM of each payload runs on aws-lc-rs, whose
//! VAES/AVX-512 code path is about ten times as fast as RustCrypto `aes-gcm` here
//! (docs/performance.md). Its per-payload key context lives in memory that aws-lc cleanses when
//! it is freed, at the end of each seal or open.

use std::fmt;

use aes::Aes256Enc;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use hkdf::Hkdf;
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::compression::Algorithm;
use crate::secret::{DataKey, KekRef, ProviderKind, WrappedKey};

/// The four bytes every sealed payload's `data` starts with.
pub const MAGIC: [u8; 4] = *b"KMSC";
/// AWS Encryption SDK suite id of `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY` (format 1).
pub const SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY: u16 = 0x0478;
/// kmscodec's suite id of XAES-256-GCM with an HKDF-SHA512 key and commitment per data key
/// (format 2). `0x58` is `X`; the id is outside the Encryption SDK's registered range.
pub const SUITE_XAES256_GCM_HKDF_SHA512_COMMIT_KEY: u16 = 0x5801;
/// Length of format 1's random message id (the HKDF salt).
pub const MESSAGE_ID_LEN: usize = 32;
/// Length of format 2's random XAES-256-GCM nonce.
pub const XAES_NONCE_LEN: usize = 24;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the AES-GCM authentication tag.
pub const TAG_LEN: usize = 16;

/// Longest namespace the header carries (one length byte). Temporal's own limit is lower.
pub const MAX_NAMESPACE_LEN: usize = crate::namespace::MAX_LEN;
/// Longest KEK reference (an AWS key ARN is about 75 bytes; an alias ARN up to ~300).
pub const MAX_KEK_REF_LEN: usize = 1024;
/// Longest wrapped data key (AWS KMS ciphertext blobs for 32 bytes are ~184 bytes; Vault
/// transit ciphertexts ~90; local-file 60).
pub const MAX_WRAPPED_KEY_LEN: usize = 2048;

const DERIVE_KEY_LABEL: &[u8] = b"DERIVEKEY";
const COMMIT_KEY_LABEL: &[u8] = b"COMMITKEY";
/// Format 2's HKDF salt: a constant, so the extract runs once per data key.
const FORMAT2_SALT: &[u8] = b"kmscodec envelope format 2";
/// Fixed part of the header before the random field: magic, version, suite, provider,
/// namespace length, KEK reference length, KEK version, wrapped key length.
const FIXED_HEADER_LEN: usize = 4 + 1 + 2 + 1 + 1 + 2 + 4 + 2;

/// A sealed payload format: its version byte fixes the layout and the algorithm suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Version 1: suite 0x0478, a 32-byte message id, HKDF-SHA512 per payload.
    V1,
    /// Version 2: suite 0x5801, a 24-byte nonce, XAES-256-GCM.
    V2,
    /// Version 3: format 2 plus a `compression` byte in the header.
    V3,
}

impl Format {
    /// The format new data keys seal with unless configured otherwise.
    pub const DEFAULT: Self = Self::V2;

    /// The version byte (offset 4).
    pub const fn version(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }

    /// The format a version byte names, if this build reads it.
    pub const fn from_version(version: u8) -> Option<Self> {
        match version {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            _ => None,
        }
    }

    /// The only suite id the format allows (offset 5).
    pub const fn suite(self) -> u16 {
        match self {
            Self::V1 => SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY,
            Self::V2 | Self::V3 => SUITE_XAES256_GCM_HKDF_SHA512_COMMIT_KEY,
        }
    }

    /// Length of the per-payload random field: the message id or the nonce.
    pub const fn random_len(self) -> usize {
        match self {
            Self::V1 => MESSAGE_ID_LEN,
            Self::V2 | Self::V3 => XAES_NONCE_LEN,
        }
    }

    /// Whether the header records the payload's compression (format 3 on).
    pub const fn records_compression(self) -> bool {
        matches!(self, Self::V3)
    }

    /// Header bytes after the wrapped key and before the random field.
    const fn flags_len(self) -> usize {
        if self.records_compression() { 1 } else { 0 }
    }
}

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
    /// The AES-256-GCM backend refused a key (never expected: every key is 32 bytes).
    #[error("AES-256-GCM backend refused the key")]
    Backend,
}

/// Does `data` start with the envelope magic? Cheap test used to tell our payloads from others.
pub fn has_magic(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// A data key with what every format-2 payload under it shares, derived once when the key is
/// unwrapped or generated: the XAES-256-GCM key and the key commitment. Format 1 derives per
/// payload from the data key itself.
///
/// No `Clone`; `Debug` shows nothing; the data key and the XAES key material are zeroized on
/// drop (the commitment is public: it travels in every header).
pub struct EnvelopeKey {
    data_key: DataKey,
    xaes: XaesKey,
    commitment: [u8; COMMITMENT_LEN],
}

impl fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvelopeKey(<redacted>)")
    }
}

impl EnvelopeKey {
    /// Derives format 2's per-key material from `data_key` (one HKDF-SHA512 extract and two
    /// expands, one AES-256 key schedule and one block) and keeps the data key for format 1.
    pub fn new(data_key: DataKey) -> Self {
        let (xaes_key, commitment) = derive_key_and_commitment(
            FORMAT2_SALT,
            &data_key,
            &suite_info(SUITE_XAES256_GCM_HKDF_SHA512_COMMIT_KEY, DERIVE_KEY_LABEL),
            &suite_info(SUITE_XAES256_GCM_HKDF_SHA512_COMMIT_KEY, COMMIT_KEY_LABEL),
        );
        Self {
            data_key,
            xaes: XaesKey::new(&xaes_key),
            commitment,
        }
    }
}

/// An XAES-256-GCM key (C2SP `XAES-256-GCM`): the AES-256 round keys of K and the CMAC subkey
/// K1, both zeroized on drop.
struct XaesKey {
    aes: Aes256Enc,
    k1: Zeroizing<[u8; 16]>,
}

impl XaesKey {
    fn new(key: &[u8; 32]) -> Self {
        let aes = Aes256Enc::new(key.into());
        // L = AES-256(K, 0^128); K1 = L << 1, with 0x87 xored into the last byte when the bit
        // shifted out was set (the CMAC subkey of NIST SP 800-38B).
        let mut l = Zeroizing::new([0u8; 16]);
        aes.encrypt_block((&mut *l).into());
        let mut k1 = Zeroizing::new([0u8; 16]);
        for (i, byte) in k1.iter_mut().enumerate() {
            let next = l.get(i + 1).map_or(0, |next| next >> 7);
            *byte = (l[i] << 1) | next;
        }
        k1[15] ^= 0x87 * (l[0] >> 7);
        Self { aes, k1 }
    }

    /// The AES-256-GCM key of the message whose 24-byte nonce starts with `nonce_head`:
    /// `AES(K, M1 ^ K1) || AES(K, M2 ^ K1)` with `Mi = 0x00 || i || "X" || 0x00 || nonce_head`.
    /// The message is then sealed with AES-256-GCM under it, nonce = the last 12 nonce bytes.
    fn message_key(&self, nonce_head: &[u8; 12]) -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        let (blocks, _) = key.as_chunks_mut::<16>();
        for (counter, block) in (1u8..).zip(blocks.iter_mut()) {
            block[1] = counter;
            block[2] = b'X';
            block[4..].copy_from_slice(nonce_head);
            for (byte, k1) in block.iter_mut().zip(self.k1.iter()) {
                *byte ^= k1;
            }
            self.aes.encrypt_block(block.into());
        }
        key
    }
}

/// `suite_id || label`, the HKDF info of a derived key.
fn suite_info(suite: u16, label: &[u8]) -> [u8; 2 + 9] {
    let mut info = [0u8; 2 + 9];
    info[..2].copy_from_slice(&suite.to_be_bytes());
    info[2..].copy_from_slice(label);
    info
}

/// The header bytes that stay the same for every payload sealed under one data key: everything
/// up to and including the wrapped key. Built once when a data key becomes active.
#[derive(Clone)]
pub struct HeaderTemplate {
    format: Format,
    bytes: Vec<u8>,
}

impl fmt::Debug for HeaderTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HeaderTemplate({:?}, {} bytes)",
            self.format,
            self.bytes.len()
        )
    }
}

impl HeaderTemplate {
    /// Lays out the constant part of the header of `format`.
    pub fn new(
        format: Format,
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
        bytes.push(format.version());
        bytes.extend_from_slice(&format.suite().to_be_bytes());
        bytes.push(provider.code());
        bytes.push(ns_len);
        bytes.extend_from_slice(namespace.as_bytes());
        bytes.extend_from_slice(&kek_len.to_be_bytes());
        bytes.extend_from_slice(kek.key.as_bytes());
        bytes.extend_from_slice(&kek.version.to_be_bytes());
        bytes.extend_from_slice(&wrapped_len.to_be_bytes());
        bytes.extend_from_slice(wrapped.as_bytes());
        Ok(Self { format, bytes })
    }

    /// The format payloads sealed from this template have.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether `header` was laid out from this template: the same format, namespace, provider,
    /// KEK, KEK version and wrapped key, byte for byte.
    pub fn laid_out(&self, header: &Header<'_>) -> bool {
        header.bytes.len() == self.header_len() && header.bytes.starts_with(&self.bytes)
    }

    fn header_len(&self) -> usize {
        self.bytes.len() + self.format.flags_len() + self.format.random_len() + COMMITMENT_LEN
    }

    /// Length of a sealed payload for a plaintext of `plaintext_len` bytes.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.header_len() + plaintext_len + TAG_LEN
    }
}

/// A parsed, not yet authenticated header. Every field is as the sender alleges until
/// [`open`] has verified the commitment and the tag.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// The format the version byte names.
    pub format: Format,
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
    /// How the plaintext was compressed before sealing ([`Algorithm::None`] before format 3).
    pub alleged_compression: Algorithm,
    /// The message id (format 1) or the nonce (format 2): `format.random_len()` bytes.
    random: &'a [u8],
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
    let format = Format::from_version(version).ok_or(EnvelopeError::UnsupportedVersion(version))?;
    let suite = reader.u16("suite")?;
    if suite != format.suite() {
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
    let compression = if format.records_compression() {
        Algorithm::from_code(reader.u8("compression")?)
            .ok_or(EnvelopeError::Malformed("compression"))?
    } else {
        Algorithm::None
    };
    let random = match format {
        Format::V1 => reader.take(MESSAGE_ID_LEN, "message id")?,
        Format::V2 | Format::V3 => reader.take(XAES_NONCE_LEN, "nonce")?,
    };
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
            format,
            alleged_provider: provider,
            alleged_namespace: namespace,
            alleged_kek_key: kek_key,
            alleged_kek_version: kek_version,
            alleged_wrapped_key: wrapped,
            alleged_compression: compression,
            random,
            commitment,
            bytes,
        },
        body,
    ))
}

/// HKDF-SHA512 (RFC 5869) of the data key with `salt`: a 256-bit key expanded with
/// `derive_info` and the 256-bit key commitment expanded with `commit_info`. Format 2 runs it
/// once per data key, format 1 once per payload with the message id as salt.
fn derive_key_and_commitment(
    salt: &[u8],
    data_key: &DataKey,
    derive_info: &[u8],
    commit_info: &[u8],
) -> (Zeroizing<[u8; 32]>, [u8; COMMITMENT_LEN]) {
    let hkdf = Hkdf::<Sha512>::new(Some(salt), data_key.expose_secret());
    let mut key = Zeroizing::new([0u8; 32]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    // 32 bytes is far below HKDF-SHA512's 255 * 64 byte output limit: these cannot fail.
    let derived = hkdf.expand(derive_info, key.as_mut_slice());
    let committed = hkdf.expand(commit_info, &mut commitment);
    debug_assert!(derived.is_ok() && committed.is_ok());
    (key, commitment)
}

/// One payload's AES-256-GCM key, on aws-lc-rs. The key bytes stay in a zeroizing buffer
/// here; aws-lc keeps its key schedule in an AEAD context that it cleanses when freed.
fn gcm_key(key: &[u8; 32]) -> Result<LessSafeKey, EnvelopeError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| EnvelopeError::Backend)
}

/// The AES-256-GCM key, nonce and commitment for one payload of `format` with the random field
/// `random` (already checked to be `format.random_len()` bytes long).
fn payload_cipher(
    key: &EnvelopeKey,
    format: Format,
    random: &[u8],
) -> Result<(LessSafeKey, [u8; 12], [u8; COMMITMENT_LEN]), EnvelopeError> {
    match format {
        Format::V1 => {
            let (encryption_key, commitment) = derive_key_and_commitment(
                random,
                &key.data_key,
                &suite_info(SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY, DERIVE_KEY_LABEL),
                COMMIT_KEY_LABEL,
            );
            Ok((gcm_key(&encryption_key)?, [0u8; 12], commitment))
        }
        Format::V2 | Format::V3 => {
            let (head, tail) = random
                .split_first_chunk::<12>()
                .ok_or(EnvelopeError::Malformed("nonce"))?;
            let nonce: [u8; 12] = tail
                .try_into()
                .map_err(|_| EnvelopeError::Malformed("nonce"))?;
            let cipher = gcm_key(&key.xaes.message_key(head))?;
            Ok((cipher, nonce, key.commitment))
        }
    }
}

/// Bytes of operating-system randomness each thread fetches at once: 128 message ids (or 170
/// nonces) per `getrandom` call instead of one.
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

/// Fills `out` with fresh random bytes straight from the operating system's generator
/// (`getrandom`), fetched in blocks of [`RANDOM_POOL_LEN`] per thread. Each byte is handed out
/// once. Message ids and nonces are public (they travel in the header); what matters is that
/// they never repeat, which 256 or 192 random bits give. The pool is per thread and the process
/// never forks without exec, so no two sealers can see the same bytes.
fn fill_random(out: &mut [u8]) -> Result<(), EnvelopeError> {
    RANDOM_POOL.with_borrow_mut(|pool| {
        if out.len() > RANDOM_POOL_LEN {
            return getrandom::fill(out).map_err(|_| EnvelopeError::Random);
        }
        if pool.used + out.len() > RANDOM_POOL_LEN {
            getrandom::fill(&mut pool.bytes).map_err(|_| EnvelopeError::Random)?;
            pool.used = 0;
        }
        out.copy_from_slice(&pool.bytes[pool.used..pool.used + out.len()]);
        pool.used += out.len();
        Ok(())
    })
}

/// Seals one payload in the template's format with fresh random bytes, appending the sealed
/// bytes to `out`.
///
/// `write_plaintext` appends the plaintext to the buffer it is given; it is encrypted in place
/// there, so the plaintext is written once and never copied.
pub fn seal(
    key: &EnvelopeKey,
    template: &HeaderTemplate,
    out: &mut Vec<u8>,
    write_plaintext: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EnvelopeError> {
    seal_with_compression(key, template, Algorithm::None, out, write_plaintext)
}

/// [`seal`], recording in the header that the plaintext `write_plaintext` appends was
/// compressed with `compression` (format 3 templates only; any format takes
/// [`Algorithm::None`]).
pub fn seal_with_compression(
    key: &EnvelopeKey,
    template: &HeaderTemplate,
    compression: Algorithm,
    out: &mut Vec<u8>,
    write_plaintext: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EnvelopeError> {
    let mut random = [0u8; MESSAGE_ID_LEN];
    let random = &mut random[..template.format.random_len()];
    fill_random(random)?;
    seal_raw(key, template, random, compression, out, write_plaintext)
}

/// [`seal`] with the caller's message id or nonce, which must be the template format's
/// `random_len()` bytes and must never repeat under one data key. For test vectors and
/// benchmarks; the codec calls [`seal`].
pub fn seal_with_random(
    key: &EnvelopeKey,
    template: &HeaderTemplate,
    random: &[u8],
    out: &mut Vec<u8>,
    write_plaintext: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EnvelopeError> {
    seal_raw(key, template, random, Algorithm::None, out, write_plaintext)
}

/// [`seal_with_random`] recording `compression` (format 3): for test vectors.
pub fn seal_with_random_and_compression(
    key: &EnvelopeKey,
    template: &HeaderTemplate,
    random: &[u8],
    compression: Algorithm,
    out: &mut Vec<u8>,
    write_plaintext: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EnvelopeError> {
    seal_raw(key, template, random, compression, out, write_plaintext)
}

fn seal_raw(
    key: &EnvelopeKey,
    template: &HeaderTemplate,
    random: &[u8],
    compression: Algorithm,
    out: &mut Vec<u8>,
    write_plaintext: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EnvelopeError> {
    if random.len() != template.format.random_len() {
        return Err(EnvelopeError::Malformed(match template.format {
            Format::V1 => "message id",
            Format::V2 | Format::V3 => "nonce",
        }));
    }
    if compression != Algorithm::None && !template.format.records_compression() {
        return Err(EnvelopeError::Malformed("compression"));
    }
    let (cipher, nonce, commitment) = payload_cipher(key, template.format, random)?;
    let start = out.len();
    out.extend_from_slice(&template.bytes);
    if template.format.records_compression() {
        out.push(compression.code());
    }
    out.extend_from_slice(random);
    out.extend_from_slice(&commitment);
    let body_start = out.len();
    write_plaintext(out);
    let (header, body) = out[start..].split_at_mut(body_start - start);
    match cipher.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&*header),
        body,
    ) {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Ok(())
        }
        Err(_) => {
            out.truncate(start);
            Err(EnvelopeError::FieldTooLong("plaintext"))
        }
    }
}

/// Opens a parsed payload with the data key its header names, appending the plaintext to `out`.
///
/// The commitment is checked in constant time before any decryption; a wrong key, a flipped
/// byte anywhere in header or body, or a wrong tag all give [`EnvelopeError::Unopenable`], and
/// `out` is left as it was.
pub fn open(
    key: &EnvelopeKey,
    header: &Header<'_>,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let (cipher, nonce, commitment) = payload_cipher(key, header.format, header.random)?;
    if !bool::from(commitment.ct_eq(header.commitment)) {
        return Err(EnvelopeError::Unopenable);
    }
    let split = body
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(EnvelopeError::Malformed("tag"))?;
    let (ciphertext, tag) = body.split_at(split);
    let start = out.len();
    out.extend_from_slice(ciphertext);
    let result = cipher.open_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(header.bytes),
        tag,
        &mut out[start..],
    );
    if result.is_err() {
        // Never leave unauthenticated plaintext behind.
        out.truncate(start);
        return Err(EnvelopeError::Unopenable);
    }
    Ok(())
}

/// Opens a sealed payload in its own buffer: parses the header, checks the commitment, and
/// decrypts the body where it lies. Returns the compression the (now authenticated) header
/// records and the range of `sealed` that now holds the plaintext. No buffer is allocated and nothing is copied.
///
/// The same checks as [`open`], in the same order. On failure the body is zeroed, so no
/// unauthenticated plaintext is left in the buffer.
pub fn open_in_place(
    key: &EnvelopeKey,
    sealed: &mut [u8],
) -> Result<(Algorithm, std::ops::Range<usize>), EnvelopeError> {
    let (compression, header_len, cipher, nonce) = {
        let (header, _) = parse(sealed)?;
        let (cipher, nonce, commitment) = payload_cipher(key, header.format, header.random)?;
        if !bool::from(commitment.ct_eq(header.commitment)) {
            return Err(EnvelopeError::Unopenable);
        }
        (
            header.alleged_compression,
            header.bytes.len(),
            cipher,
            nonce,
        )
    };
    let (header, rest) = sealed.split_at_mut(header_len);
    let split = rest
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(EnvelopeError::Malformed("tag"))?;
    let (body, tag) = rest.split_at_mut(split);
    let result = cipher.open_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&*header),
        tag,
        body,
    );
    if result.is_err() {
        body.fill(0);
        return Err(EnvelopeError::Unopenable);
    }
    Ok((compression, header_len..header_len + split))
}

#[cfg(test)]
mod tests;
