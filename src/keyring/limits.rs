//! Usage limits of a namespace's data keys, and the decode cache's options: plain settings, as
//! configuration reads them.

use std::time::Duration;

use crate::compression;
use crate::envelope::Format;

/// NIST SP 800-38D, section 8.3: the total number of invocations of the authenticated
/// encryption function with random IVs shall not exceed 2^32 for any given key. No configured
/// hard limit may exceed it.
pub const NIST_MAX_INVOCATIONS: u64 = 1 << 32;

/// Default hard limit: 2^24 seals per data key, 256 times below the NIST bound.
///
/// kmscodec derives a fresh AES key per payload (XAES-256-GCM with a random 192-bit nonce, or
/// HKDF with a random 256-bit message id in format 1), so no AES-GCM key is used more than once
/// and the 2^32 bound is never approached through GCM itself;
/// the per-data-key limit bounds how much data one leaked data key exposes and keeps the scheme
/// within NIST's bound even if read as applying to the data key. 2^24 is reached after 4.6 hours
/// at 1,000 seals/s in one process.
pub const DEFAULT_HARD_LIMIT: u64 = 1 << 24;
/// Default soft limit: half the hard limit, so after the replacement is first requested a process
/// can keep sealing through a KMS outage for as many seals again.
pub const DEFAULT_SOFT_LIMIT: u64 = 1 << 23;
/// Default maximum age of an active data key. Long enough that an idle namespace costs one
/// provider call a day per process, short enough that a data key held in memory is replaced daily.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Default bounded wait of an encode that needs a new data key before it fails with 503: below
/// the 2 s deadlock detector of the Python SDK, so the worker sees an error, not a deadlock.
pub const DEFAULT_ROTATION_WAIT: Duration = Duration::from_millis(1500);

/// Usage limits of a namespace's data keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Seals after which the replacement is fetched in the background.
    pub soft_limit: u64,
    /// Seals after which the key is never used again. At most [`NIST_MAX_INVOCATIONS`].
    pub hard_limit: u64,
    /// Age after which the key is never used again.
    pub max_age: Duration,
    /// Age after which the replacement is fetched in the background (90% of `max_age`).
    pub soft_age: Duration,
    /// Plaintext bytes after which the replacement is fetched in the background.
    pub byte_limit: Option<u64>,
    /// How long an encode waits for a new data key before failing.
    pub rotation_wait: Duration,
    /// The sealed payload format new data keys write (`docs/format.md`). Every format is read
    /// whatever this says.
    pub format: Format,
    /// Compression before sealing (off by default). When on, data keys write format 3.
    pub compression: Option<compression::Settings>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(
            DEFAULT_SOFT_LIMIT,
            DEFAULT_HARD_LIMIT,
            DEFAULT_MAX_AGE,
            None,
            DEFAULT_ROTATION_WAIT,
        )
    }
}

impl Limits {
    /// Limits with the soft age derived as 90% of `max_age`. Callers validate the values
    /// (config does): `soft_limit <= hard_limit <= 2^32`.
    pub fn new(
        soft_limit: u64,
        hard_limit: u64,
        max_age: Duration,
        byte_limit: Option<u64>,
        rotation_wait: Duration,
    ) -> Self {
        Self {
            soft_limit,
            hard_limit: hard_limit.min(NIST_MAX_INVOCATIONS),
            max_age,
            soft_age: max_age.mul_f64(0.9),
            byte_limit,
            rotation_wait,
            format: Format::DEFAULT,
            compression: None,
        }
    }

    /// The format new data keys write: format 3 when compression is on (only it records
    /// compression), else [`Limits::format`].
    pub fn sealing_format(&self) -> Format {
        if self.compression.is_some() {
            Format::V3
        } else {
            self.format
        }
    }
}

/// Options of the decode cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// Maximum number of unwrapped data keys held.
    pub capacity: u64,
    /// Time after insertion when an entry expires.
    pub time_to_live: Duration,
    /// Time after last use when an entry expires.
    pub time_to_idle: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            time_to_live: Duration::from_secs(24 * 3600),
            time_to_idle: Duration::from_secs(3600),
        }
    }
}
