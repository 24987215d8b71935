//! The active data key of a namespace and its reservations: the exact usage accounting (one
//! atomic add per seal, one compare-and-swap per batch, never past the hard limit) and why a key
//! was replaced.

use super::*;

/// Why a data key was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationReason {
    /// The namespace's first data key in this process.
    Initial,
    /// The soft or hard use count was reached.
    Count,
    /// The soft or hard age was reached.
    Age,
    /// The byte budget was reached.
    Bytes,
    /// An operator asked for it (`keys rotate-data-key`).
    Manual,
}

impl RotationReason {
    /// All reasons, in label order.
    pub const ALL: [RotationReason; 5] = [
        Self::Initial,
        Self::Count,
        Self::Age,
        Self::Bytes,
        Self::Manual,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Count => "count",
            Self::Age => "age",
            Self::Bytes => "bytes",
            Self::Manual => "manual",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The data key a namespace currently seals under.
pub struct ActiveKey {
    pub(super) data_key: Arc<EnvelopeKey>,
    pub(super) template: HeaderTemplate,
    pub(super) compression: Option<(compression::Settings, CompressionCounters)>,
    pub(super) key_id: String,
    pub(super) kek: KekRef,
    pub(super) created: Instant,
    pub(super) uses: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) refresh_started: AtomicBool,
    pub(super) retired: AtomicBool,
    pub(super) serial: u64,
}

impl fmt::Debug for ActiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveKey")
            .field("key_id", &self.key_id)
            .field("serial", &self.serial)
            .field("uses", &self.uses.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ActiveKey {
    /// The `encryption-key-id` metadata value: the provider, KEK and version (no secret).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The KEK that wrapped this data key.
    pub fn kek(&self) -> &KekRef {
        &self.kek
    }

    /// Length of a sealed payload for `plaintext_len` bytes of plaintext.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.template.sealed_len(plaintext_len)
    }

    /// Seals one payload. Only call with a reservation from [`Keyring::lease`] or
    /// [`Keyring::lease_many`]. In a namespace with compression on, a plaintext of at least the
    /// minimum size is compressed first when that makes it smaller, and the header says so.
    pub fn seal(
        &self,
        out: &mut Vec<u8>,
        write_plaintext: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), EnvelopeError> {
        let Some((settings, counters)) = &self.compression else {
            return envelope::seal(&self.data_key, &self.template, out, write_plaintext);
        };
        let mut plaintext = Vec::new();
        write_plaintext(&mut plaintext);
        let mut frame = Vec::new();
        let algorithm = if plaintext.len() < settings.min_size {
            counters.too_small.inc();
            compression::Algorithm::None
        } else if compression::compress(&plaintext, settings.level, &mut frame) {
            counters.compressed.inc();
            counters.input_bytes.inc_by(plaintext.len() as u64);
            counters.output_bytes.inc_by(frame.len() as u64);
            compression::Algorithm::Zstd
        } else {
            counters.incompressible.inc();
            compression::Algorithm::None
        };
        let stored = match algorithm {
            compression::Algorithm::Zstd => &frame,
            compression::Algorithm::None => &plaintext,
        };
        envelope::seal_with_compression(&self.data_key, &self.template, algorithm, out, |buffer| {
            buffer.extend_from_slice(stored)
        })
    }

    /// Reserves seals of the payloads whose plaintext lengths are `sizes` (at least one):
    /// one atomic add for one payload; for a batch, as many of its payloads as the key still
    /// has uses for, in one compare-and-swap (`count` says how many, at least 1).
    pub(super) fn reserve(&self, limits: &Limits, sizes: &[usize], now: Instant) -> Reservation {
        if self.retired.load(Ordering::Acquire) {
            return Reservation::Exhausted(RotationReason::Manual);
        }
        let age = now.saturating_duration_since(self.created);
        if age >= limits.max_age {
            return Reservation::Exhausted(RotationReason::Age);
        }
        let (index, count) = if let [_] = sizes {
            let index = self.uses.fetch_add(1, Ordering::AcqRel);
            if index >= limits.hard_limit {
                return Reservation::Exhausted(RotationReason::Count);
            }
            (index, 1)
        } else {
            let wanted = sizes.len() as u64;
            let mut current = self.uses.load(Ordering::Acquire);
            loop {
                let room = limits.hard_limit.saturating_sub(current);
                if room == 0 {
                    return Reservation::Exhausted(RotationReason::Count);
                }
                let count = wanted.min(room);
                match self.uses.compare_exchange_weak(
                    current,
                    current + count,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break (current, count),
                    Err(actual) => current = actual,
                }
            }
        };
        let granted = usize::try_from(count).unwrap_or(sizes.len());
        let plaintext_len: u64 = sizes[..granted.min(sizes.len())]
            .iter()
            .map(|len| *len as u64)
            .sum();
        let bytes = self
            .bytes
            .fetch_add(plaintext_len, Ordering::Relaxed)
            .saturating_add(plaintext_len);
        let refresh = if index + count >= limits.soft_limit {
            Some(RotationReason::Count)
        } else if age >= limits.soft_age {
            Some(RotationReason::Age)
        } else if limits.byte_limit.is_some_and(|limit| bytes >= limit) {
            Some(RotationReason::Bytes)
        } else {
            None
        };
        Reservation::Granted { refresh, count }
    }
}

/// A namespace's compression counters, resolved once per data key.
pub(super) struct CompressionCounters {
    pub(super) compressed: prometheus::IntCounter,
    pub(super) too_small: prometheus::IntCounter,
    pub(super) incompressible: prometheus::IntCounter,
    pub(super) input_bytes: prometheus::IntCounter,
    pub(super) output_bytes: prometheus::IntCounter,
}

pub(super) enum Reservation {
    /// `count` seals (1 for a single payload) may be made.
    Granted {
        refresh: Option<RotationReason>,
        count: u64,
    },
    Exhausted(RotationReason),
}

/// A reservation's count as an index into the batch: at least 1, at most the batch.
pub(super) fn granted(count: u64, sizes: &[usize]) -> usize {
    usize::try_from(count).map_or(sizes.len(), |count| count.clamp(1, sizes.len()))
}

pub(super) type Rotation = Shared<BoxFuture<'static, Result<Arc<ActiveKey>, KeyringError>>>;

/// Per-namespace state.
pub(super) struct NamespaceKeys {
    pub(super) namespace: String,
    pub(super) policy: NamespacePolicy,
    pub(super) active: ArcSwapOption<ActiveKey>,
    pub(super) inflight: Mutex<Option<Rotation>>,
    pub(super) rotations: [AtomicU64; 5],
    pub(super) hard_limit_refusals: AtomicU64,
    pub(super) rotation_failures: AtomicU64,
    pub(super) serial: AtomicU64,
    /// Seconds after the keyring's start when an encode last reserved a use (for idle eviction
    /// of namespaces the `*` entry serves).
    pub(super) last_used: AtomicU64,
}

impl NamespaceKeys {
    pub(super) fn touch(&self, base: Instant, now: Instant) {
        let seconds = now.saturating_duration_since(base).as_secs();
        if self.last_used.load(Ordering::Relaxed) != seconds {
            self.last_used.store(seconds, Ordering::Relaxed);
        }
    }
}
