//! Per-namespace data keys: the active key used for sealing, its usage accounting and rotation,
//! and the cache of unwrapped keys used for opening.
//!
//! This module sits between the codec and the [`KeyProvider`]s and keeps the KMS off the hot
//! path. It owns three rules:
//!
//! * **Reserve before sealing.** Every seal first reserves one use of the active data key with a
//!   single atomic add; a batch reserves its N uses at once, with one compare-and-swap that
//!   never takes the counter past the hard limit. A reservation at or past the hard limit, or of a key older than its
//!   maximum age, is refused and the caller waits (boundedly) for the replacement: no data key is
//!   ever used past its limits, however many threads race.
//! * **Single flight.** One namespace has at most one provider call minting a data key at a time;
//!   every caller that needs the new key awaits that one call. Past the soft limits the
//!   replacement is fetched in the background, so encodes normally never wait.
//! * **Counting is per process.** Each process mints its own data keys and never shares a
//!   plaintext data key for sealing, so the counters are local and exact across replicas and
//!   restarts.
//!
//! Unwrapped keys are cached in moka, keyed by a digest of (namespace, provider, KEK, wrapped
//! key): a cached decode makes no provider call, and keeps working while the KMS is down. Keys
//! are zeroized when the last reference (cache entry, active slot or in-flight request) drops.
//!
//! Time comes from `tokio::time::Instant`, so tests drive age-based rotation with a paused clock.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::compression;
use crate::envelope::{self, EnvelopeError, EnvelopeKey, Header, HeaderTemplate};
use crate::keys::{KeyProvider, ProviderError};
use crate::secret::{KekRef, ProviderKind, WrappedKey};

mod active;
mod limits;
mod stats;

pub use active::{ActiveKey, RotationReason};
use active::{CompressionCounters, NamespaceKeys, Reservation, Rotation, granted};
pub use limits::{
    CacheOptions, DEFAULT_HARD_LIMIT, DEFAULT_MAX_AGE, DEFAULT_ROTATION_WAIT, DEFAULT_SOFT_LIMIT,
    Limits, NIST_MAX_INVOCATIONS,
};
pub use stats::{NamespaceSnapshot, Stats};

/// How long a failed unwrap of one wrapped key is remembered: a flood of the same forged header
/// costs one provider call per this period, not one per request.
pub const FAILED_UNWRAP_TTL: Duration = Duration::from_secs(30);
/// Most failed unwraps remembered at once.
const FAILED_UNWRAP_CAPACITY: u64 = 10_000;
/// How long a failed background refresh waits before the next encode may retry it.
const REFRESH_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a namespace gets its keys: which provider, which KEK, which limits.
#[derive(Clone)]
pub struct NamespacePolicy {
    /// The provider's configured name.
    pub provider_name: String,
    /// The provider.
    pub provider: Arc<dyn KeyProvider>,
    /// The KEK reference within the provider.
    pub key: String,
    /// Data key limits.
    pub limits: Limits,
    /// The configuration entry serving the namespace, for the `entry` label in metrics: the
    /// configured namespace, or `*` for namespaces served by the wildcard entry.
    pub metrics_label: String,
}

impl fmt::Debug for NamespacePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespacePolicy")
            .field("provider_name", &self.provider_name)
            .field("provider", &self.provider.kind())
            .field("key", &self.key)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Maps namespaces to policies: exact entries first, then an optional wildcard whose key name
/// may contain `{namespace}`.
#[derive(Clone, Default, Debug)]
pub struct Policies {
    /// Namespaces configured by name.
    pub exact: HashMap<String, NamespacePolicy>,
    /// The policy for every other namespace, if any.
    pub wildcard: Option<NamespacePolicy>,
}

impl Policies {
    /// The policy for `namespace`, if one applies.
    pub fn resolve(&self, namespace: &str) -> Option<NamespacePolicy> {
        if let Some(policy) = self.exact.get(namespace) {
            return Some(policy.clone());
        }
        self.wildcard.as_ref().map(|policy| NamespacePolicy {
            key: policy.key.replace("{namespace}", namespace),
            ..policy.clone()
        })
    }
}

/// Why the keyring could not provide a key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyringError {
    /// No policy covers the namespace.
    #[error("namespace {0:?} has no key configured")]
    NotConfigured(String),
    /// The wildcard entry already serves the maximum number of namespaces.
    #[error("too many namespaces in use (limit {0})")]
    TooManyNamespaces(usize),
    /// The payload was sealed by a different provider than the namespace uses.
    #[error("payload was sealed by provider {found}, namespace uses {expected}")]
    WrongProvider {
        /// The namespace's provider kind.
        expected: ProviderKind,
        /// The provider kind named in the header.
        found: ProviderKind,
    },
    /// The provider refused or failed.
    #[error(transparent)]
    Provider(ProviderError),
    /// No usable data key arrived within the rotation wait.
    #[error("timed out after {0:?} waiting for a new data key")]
    Timeout(Duration),
    /// A payload's header names a KEK that the namespace's policy does not use: it was never
    /// sealed for this namespace, and no provider is asked about it.
    #[error("payload names KEK {0:?}, which is not the namespace's key")]
    KekNotAllowed(String),
    /// The same wrapped key failed to unwrap moments ago; the provider is not asked again
    /// until [`FAILED_UNWRAP_TTL`] has passed.
    #[error("unwrap failed recently: {0}")]
    RecentlyFailed(ProviderError),
    /// The provider returned a key reference or wrapped key too long for the header.
    #[error("provider output does not fit the envelope header: {0}")]
    Header(EnvelopeError),
}

/// The keyring: all namespaces' data keys.
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    policies: Policies,
    namespaces: ArcSwap<HashMap<String, Arc<NamespaceKeys>>>,
    insert_lock: Mutex<()>,
    max_dynamic_namespaces: usize,
    /// How long a namespace served by the wildcard may go without an encode before
    /// [`Keyring::evict_idle`] forgets it.
    dynamic_idle: Duration,
    cache: moka::future::Cache<[u8; 32], Arc<EnvelopeKey>>,
    /// Unwraps that failed for a reason retrying will not change, by the same digest as
    /// `cache`.
    failed: moka::future::Cache<[u8; 32], ProviderError>,
    /// When the keyring was made: `last_used` counts seconds from here.
    base: Instant,
    stats: Stats,
}

impl Inner {
    /// Removes `keys` from the namespace map, if it is still the entry for its namespace.
    fn unregister(&self, keys: &Arc<NamespaceKeys>) {
        let _guard = self.insert_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.namespaces.load_full();
        if current
            .get(&keys.namespace)
            .is_some_and(|entry| Arc::ptr_eq(entry, keys))
        {
            let mut next = HashMap::clone(&current);
            next.remove(&keys.namespace);
            self.namespaces.store(Arc::new(next));
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("policies", &self.inner.policies)
            .finish_non_exhaustive()
    }
}

/// A digest naming an unwrapped key in the cache: every field that the provider binds.
fn cache_key(namespace: &str, provider: ProviderKind, kek: &KekRef, wrapped: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for field in [namespace.as_bytes(), kek.key.as_bytes(), wrapped] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.update([provider.code()]);
    hasher.update(kek.version.to_be_bytes());
    hasher.finalize().into()
}

impl Keyring {
    /// A keyring serving `policies`, with a decode cache of the given shape.
    pub fn new(policies: Policies, cache: &CacheOptions, max_dynamic_namespaces: usize) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(cache.capacity)
            .time_to_live(cache.time_to_live)
            .time_to_idle(cache.time_to_idle)
            .build();
        Self {
            inner: Arc::new(Inner {
                policies,
                namespaces: ArcSwap::from_pointee(HashMap::new()),
                insert_lock: Mutex::new(()),
                max_dynamic_namespaces,
                dynamic_idle: Duration::from_secs(3600),
                cache,
                failed: moka::future::Cache::builder()
                    .max_capacity(FAILED_UNWRAP_CAPACITY)
                    .time_to_live(FAILED_UNWRAP_TTL)
                    .build(),
                base: Instant::now(),
                stats: Stats::default(),
            }),
        }
    }

    /// Sets how long a namespace served by the wildcard may go without an encode before
    /// [`Keyring::evict_idle`] forgets it (default one hour). Call before sharing the keyring.
    pub fn with_dynamic_idle(mut self, idle: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.dynamic_idle = idle;
        }
        self
    }

    /// The policies this keyring serves.
    pub fn policies(&self) -> &Policies {
        &self.inner.policies
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Unwrapped data keys currently cached.
    pub fn cached_keys(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// Runs pending cache maintenance (evictions), so `cached_keys` is exact. For tests and
    /// metrics scrapes.
    pub async fn sync_cache(&self) {
        self.inner.cache.run_pending_tasks().await;
    }

    /// The namespace's entry, if an encode registered it.
    fn registered(&self, namespace: &str) -> Option<Arc<NamespaceKeys>> {
        self.inner.namespaces.load().get(namespace).map(Arc::clone)
    }

    /// The namespace's entry, registering it (for an encode: decodes never register).
    fn namespace(&self, namespace: &str) -> Result<Arc<NamespaceKeys>, KeyringError> {
        if let Some(keys) = self.inner.namespaces.load().get(namespace) {
            return Ok(Arc::clone(keys));
        }
        let policy = self
            .inner
            .policies
            .resolve(namespace)
            .ok_or_else(|| KeyringError::NotConfigured(namespace.to_owned()))?;
        let _guard = self
            .inner
            .insert_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let current = self.inner.namespaces.load_full();
        if let Some(keys) = current.get(namespace) {
            return Ok(Arc::clone(keys));
        }
        let dynamic = current
            .keys()
            .filter(|name| !self.inner.policies.exact.contains_key(*name))
            .count();
        if !self.inner.policies.exact.contains_key(namespace)
            && dynamic >= self.inner.max_dynamic_namespaces
        {
            return Err(KeyringError::TooManyNamespaces(
                self.inner.max_dynamic_namespaces,
            ));
        }
        let keys = Arc::new(NamespaceKeys {
            namespace: namespace.to_owned(),
            policy,
            active: ArcSwapOption::empty(),
            inflight: Mutex::new(None),
            rotations: Default::default(),
            hard_limit_refusals: AtomicU64::new(0),
            rotation_failures: AtomicU64::new(0),
            serial: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
        });
        keys.touch(self.inner.base, Instant::now());
        let mut next = HashMap::clone(&current);
        next.insert(namespace.to_owned(), Arc::clone(&keys));
        self.inner.namespaces.store(Arc::new(next));
        Ok(keys)
    }

    /// Reserves one seal of `plaintext_len` bytes under `namespace`'s active data key, minting or
    /// awaiting a new key when needed. The returned key may be used for exactly one seal.
    pub async fn lease(
        &self,
        namespace: &str,
        plaintext_len: usize,
    ) -> Result<Arc<ActiveKey>, KeyringError> {
        self.lease_many(namespace, &[plaintext_len])
            .await
            .map(|(key, _)| key)
    }

    /// Reserves seals for a batch whose plaintext lengths are `sizes` (not empty) under one
    /// active data key, in one reservation: the key and how many of the batch's payloads, from
    /// the first, it may seal (at least one; all of them unless the key reached its hard limit
    /// part way, when the caller leases again for the rest). Minting or awaiting a new key
    /// when needed, as [`Keyring::lease`].
    pub async fn lease_many(
        &self,
        namespace: &str,
        sizes: &[usize],
    ) -> Result<(Arc<ActiveKey>, usize), KeyringError> {
        if sizes.is_empty() {
            return Err(KeyringError::Provider(ProviderError::Misconfigured(
                "empty data key reservation".to_owned(),
            )));
        }
        // Fast path: a namespace already in use whose active key has room. One map lookup, one
        // clock read, two atomic operations; no allocation, no lock, no namespace Arc clone.
        {
            let namespaces = self.inner.namespaces.load();
            let now = Instant::now();
            if let Some(keys) = namespaces.get(namespace)
                && let Some(key) = keys.active.load_full()
                && let Reservation::Granted { refresh, count } =
                    key.reserve(&keys.policy.limits, sizes, now)
            {
                keys.touch(self.inner.base, now);
                if let Some(reason) = refresh {
                    self.refresh_in_background(keys, &key, reason);
                }
                return Ok((key, granted(count, sizes)));
            }
        }
        self.lease_slow(namespace, sizes).await
    }

    /// The rest of [`Keyring::lease_many`]: a new namespace, no active key, or an exhausted one.
    async fn lease_slow(
        &self,
        namespace: &str,
        sizes: &[usize],
    ) -> Result<(Arc<ActiveKey>, usize), KeyringError> {
        let keys = self.namespace(namespace)?;
        let limits = &keys.policy.limits;
        let deadline = Instant::now() + limits.rotation_wait;
        loop {
            let current = keys.active.load_full();
            let reason = match &current {
                // A key existed before: the sweeper dropped it at its maximum age.
                None if keys.serial.load(Ordering::Relaxed) > 0 => RotationReason::Age,
                None => RotationReason::Initial,
                Some(key) => match key.reserve(limits, sizes, Instant::now()) {
                    Reservation::Granted { refresh, count } => {
                        if let Some(reason) = refresh {
                            self.refresh_in_background(&keys, key, reason);
                        }
                        return Ok((Arc::clone(key), granted(count, sizes)));
                    }
                    Reservation::Exhausted(reason) => {
                        if reason == RotationReason::Count {
                            keys.hard_limit_refusals.fetch_add(1, Ordering::Relaxed);
                        }
                        reason
                    }
                },
            };
            let rotation = self.start_rotation(&keys, current.as_ref(), reason);
            // A caller that gives up leaves the mint running: its key serves the next encode.
            // (A namespace whose first mint fails gives up its slot in the mint task.)
            return match tokio::time::timeout_at(deadline, rotation).await {
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => Err(error),
                Err(_) => Err(KeyringError::Timeout(limits.rotation_wait)),
            };
        }
    }

    fn refresh_in_background(
        &self,
        keys: &Arc<NamespaceKeys>,
        key: &Arc<ActiveKey>,
        reason: RotationReason,
    ) {
        if key.refresh_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let rotation = self.start_rotation(keys, Some(key), reason);
        let key = Arc::clone(key);
        tokio::spawn(async move {
            if rotation.await.is_err() {
                // Let a later encode try again, without hammering a failing provider.
                tokio::time::sleep(REFRESH_RETRY_AFTER).await;
                key.refresh_started.store(false, Ordering::Release);
            }
        });
    }

    /// Starts (or joins) the namespace's one in-flight mint. A caller whose `expected` key was
    /// already replaced gets the replacement without a provider call.
    fn start_rotation(
        &self,
        keys: &Arc<NamespaceKeys>,
        expected: Option<&Arc<ActiveKey>>,
        reason: RotationReason,
    ) -> Rotation {
        let mut slot = keys.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rotation) = slot.as_ref() {
            return rotation.clone();
        }
        let current = keys.active.load_full();
        let replaced = match (&current, expected) {
            (Some(current), Some(expected)) => !Arc::ptr_eq(current, expected),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if let Some(current) = current.filter(|c| replaced && !c.retired.load(Ordering::Acquire)) {
            return futures_util::future::ready(Ok(current)).boxed().shared();
        }
        let inner = Arc::clone(&self.inner);
        let task_keys = Arc::clone(keys);
        let handle = tokio::spawn(async move {
            let result = mint(&inner, &task_keys, reason).await;
            if result.is_err() {
                task_keys.rotation_failures.fetch_add(1, Ordering::Relaxed);
            }
            *task_keys.inflight.lock().unwrap_or_else(|p| p.into_inner()) = None;
            // A namespace that never got a data key does not keep its slot.
            if result.is_err() && task_keys.serial.load(Ordering::Acquire) == 0 {
                inner.unregister(&task_keys);
            }
            result
        });
        let rotation = async move {
            handle.await.unwrap_or_else(|_| {
                Err(KeyringError::Provider(ProviderError::Unavailable(
                    "data key task failed".to_owned(),
                )))
            })
        }
        .boxed()
        .shared();
        *slot = Some(rotation.clone());
        rotation
    }

    /// Forgets every namespace served by the wildcard entry that has had no encode for the idle
    /// period (`limits.wildcard_namespace_idle`): its active data key is retired and its slot
    /// freed, so `max_wildcard_namespaces` bounds namespaces in use, not namespaces ever seen.
    /// Returns how many were forgotten. The server calls this periodically.
    pub fn evict_idle(&self) -> usize {
        let now = Instant::now()
            .saturating_duration_since(self.inner.base)
            .as_secs();
        let idle = self.inner.dynamic_idle.as_secs();
        let stale: Vec<Arc<NamespaceKeys>> = self
            .inner
            .namespaces
            .load()
            .values()
            .filter(|keys| !self.inner.policies.exact.contains_key(&keys.namespace))
            .filter(|keys| now.saturating_sub(keys.last_used.load(Ordering::Relaxed)) >= idle)
            .filter(|keys| {
                keys.inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_none()
            })
            .cloned()
            .collect();
        for keys in &stale {
            self.inner.unregister(keys);
            if let Some(key) = keys.active.swap(None) {
                key.retired.store(true, Ordering::Release);
            }
            tracing::debug!(namespace = %keys.namespace, "idle namespace forgotten");
        }
        stale.len()
    }

    /// Retires `namespace`'s active data key now: the next encode mints a new one. Returns
    /// whether there was an active key.
    pub fn retire_active(&self, namespace: &str) -> Result<bool, KeyringError> {
        let Some(keys) = self.registered(namespace) else {
            return match self.inner.policies.resolve(namespace) {
                Some(_) => Ok(false),
                None => Err(KeyringError::NotConfigured(namespace.to_owned())),
            };
        };
        match keys.active.load_full() {
            Some(key) => {
                key.retired.store(true, Ordering::Release);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Forgets `namespace`'s keys in this process, after its KEK was shredded: retires the
    /// active data key (the next encode asks the provider, which refuses) and empties the decode
    /// cache, so no payload opens without asking the provider again. The cache is keyed by
    /// digests that do not reveal their namespace, so every namespace's cached keys go: other
    /// namespaces pay one unwrap per data key on their next decode. Returns whether there was
    /// an active data key.
    pub fn forget_namespace(&self, namespace: &str) -> Result<bool, KeyringError> {
        let retired = self.retire_active(namespace)?;
        self.inner.cache.invalidate_all();
        Ok(retired)
    }

    /// The data key that opens a payload with `header`, for `namespace`: the namespace's active
    /// data key when the header was laid out from it (the common case: decoding what this
    /// process sealed, with no digest and no cache lookup), else [`Self::data_key_for`]. A
    /// retired key is not served here: after a shred, decodes must ask the provider again.
    pub async fn data_key_for_header(
        &self,
        namespace: &str,
        header: &Header<'_>,
    ) -> Result<Arc<EnvelopeKey>, KeyringError> {
        if let Some(keys) = self.inner.namespaces.load().get(namespace)
            && let Some(active) = keys.active.load().as_ref()
            && !active.retired.load(Ordering::Acquire)
            && active.template.laid_out(header)
        {
            self.inner.stats.cache_hits.inc();
            return Ok(Arc::clone(&active.data_key));
        }
        // Boxed: the cache and provider path is two kilobytes of future state that every decode
        // future would otherwise carry (and copy when it moves), for a path the active key skips.
        Box::pin(self.data_key_for(
            namespace,
            header.alleged_provider,
            &header.alleged_kek(),
            header.alleged_wrapped_key,
        ))
        .await
    }

    /// The data key that opens a payload whose header names `kek` and `wrapped` for `namespace`.
    /// Served from the cache when possible; otherwise one provider call, shared by concurrent
    /// callers.
    pub async fn data_key_for(
        &self,
        namespace: &str,
        provider: ProviderKind,
        kek: &KekRef,
        wrapped: &[u8],
    ) -> Result<Arc<EnvelopeKey>, KeyringError> {
        // Decodes never register a namespace: forged headers cannot take its slots.
        let registered = self.registered(namespace);
        let resolved;
        let policy = match &registered {
            Some(keys) => &keys.policy,
            None => {
                resolved = self
                    .inner
                    .policies
                    .resolve(namespace)
                    .ok_or_else(|| KeyringError::NotConfigured(namespace.to_owned()))?;
                &resolved
            }
        };
        let expected = policy.provider.kind();
        if provider != expected {
            return Err(KeyringError::WrongProvider {
                expected,
                found: provider,
            });
        }
        // The header is unauthenticated: a KEK the namespace does not use is never sent to the
        // provider (no oracle for which keys exist, no provider call for a forgery).
        if !policy.provider.allows_kek(&policy.key, kek) {
            return Err(KeyringError::KekNotAllowed(kek.to_string()));
        }
        let digest = cache_key(namespace, provider, kek, wrapped);
        if let Some(key) = self.inner.cache.get(&digest).await {
            self.inner.stats.cache_hits.inc();
            return Ok(key);
        }
        if let Some(error) = self.inner.failed.get(&digest).await {
            return Err(KeyringError::RecentlyFailed(error));
        }
        self.inner.stats.cache_misses.inc();
        let inner = Arc::clone(&self.inner);
        let wrapped = WrappedKey::new(wrapped.to_vec());
        let unwrapping = Arc::clone(&policy.provider);
        let result = self
            .inner
            .cache
            .try_get_with(digest, async move {
                let started = Instant::now();
                let result = unwrapping.unwrap_data_key(namespace, kek, &wrapped).await;
                inner.stats.record(
                    provider,
                    "unwrap",
                    &result.as_ref().map(|_| ()),
                    started.elapsed(),
                );
                result.map(|data_key| Arc::new(EnvelopeKey::new(data_key)))
            })
            .await
            .map_err(|error| ProviderError::clone(&error));
        match result {
            Ok(key) => Ok(key),
            Err(error) => {
                if !error.is_retryable() {
                    self.inner.failed.insert(digest, error.clone()).await;
                }
                Err(KeyringError::Provider(error))
            }
        }
    }

    /// A snapshot of every namespace that has been used in this process.
    pub fn snapshot(&self) -> Vec<NamespaceSnapshot> {
        let now = Instant::now();
        let mut snapshots: Vec<_> = self
            .inner
            .namespaces
            .load()
            .values()
            .map(|keys| {
                let active = keys.active.load_full();
                let limits = &keys.policy.limits;
                NamespaceSnapshot {
                    namespace: keys.namespace.clone(),
                    metrics_label: keys.policy.metrics_label.clone(),
                    provider: keys.policy.provider_name.clone(),
                    key: keys.policy.key.clone(),
                    active_key_id: active.as_ref().map(|key| key.key_id.clone()),
                    uses: active
                        .as_ref()
                        .map(|key| key.uses.load(Ordering::Relaxed).min(limits.hard_limit))
                        .unwrap_or(0),
                    bytes: active
                        .as_ref()
                        .map(|key| key.bytes.load(Ordering::Relaxed))
                        .unwrap_or(0),
                    soft_limit: limits.soft_limit,
                    hard_limit: limits.hard_limit,
                    age_seconds: active
                        .as_ref()
                        .map(|key| now.saturating_duration_since(key.created).as_secs_f64())
                        .unwrap_or(0.0),
                    max_age_seconds: limits.max_age.as_secs_f64(),
                    rotations: RotationReason::ALL
                        .iter()
                        .map(|reason| {
                            (
                                reason.as_str().to_owned(),
                                keys.rotations[reason.index()].load(Ordering::Relaxed),
                            )
                        })
                        .collect(),
                    hard_limit_refusals: keys.hard_limit_refusals.load(Ordering::Relaxed),
                    rotation_failures: keys.rotation_failures.load(Ordering::Relaxed),
                }
            })
            .collect();
        snapshots.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        snapshots
    }

    /// Drops every active data key past its maximum age, so that an idle namespace does not keep
    /// an expired key in memory. Returns how many were dropped. The server calls this
    /// periodically; the next encode mints a new key.
    pub fn retire_expired(&self) -> usize {
        let now = Instant::now();
        let mut retired = 0;
        for keys in self.inner.namespaces.load().values() {
            if let Some(key) = keys.active.load_full()
                && now.saturating_duration_since(key.created) >= keys.policy.limits.max_age
            {
                key.retired.store(true, Ordering::Release);
                // Only clear the slot if it still holds this key (a rotation may have replaced it).
                let previous = keys.active.compare_and_swap(&Some(Arc::clone(&key)), None);
                if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, &key)) {
                    retired += 1;
                }
            }
        }
        retired
    }

    /// Checks the health of every configured provider once: each provider's name and outcome.
    pub async fn check_each_provider(&self) -> Vec<(String, Result<(), ProviderError>)> {
        let policies = &self.inner.policies;
        let mut results: Vec<(String, Result<(), ProviderError>)> = Vec::new();
        for policy in policies.exact.values().chain(policies.wildcard.iter()) {
            if results
                .iter()
                .any(|(name, _)| *name == policy.provider_name)
            {
                continue;
            }
            let result = policy.provider.health().await;
            results.push((policy.provider_name.clone(), result));
        }
        results
    }

    /// The providers of the namespaces this process has served (encoded or decoded for).
    pub fn served_providers(&self) -> std::collections::HashSet<String> {
        self.inner
            .namespaces
            .load()
            .values()
            .map(|keys| keys.policy.provider_name.clone())
            .collect()
    }

    /// Checks every configured provider's health. Returns the first failure.
    pub async fn check_providers(&self) -> Result<(), (String, ProviderError)> {
        let policies = &self.inner.policies;
        let mut seen = Vec::new();
        for policy in policies.exact.values().chain(policies.wildcard.iter()) {
            if seen.contains(&policy.provider_name) {
                continue;
            }
            seen.push(policy.provider_name.clone());
            policy
                .provider
                .health()
                .await
                .map_err(|error| (policy.provider_name.clone(), error))?;
        }
        Ok(())
    }
}

/// Mints a data key for `keys`' namespace and makes it active.
async fn mint(
    inner: &Inner,
    keys: &NamespaceKeys,
    reason: RotationReason,
) -> Result<Arc<ActiveKey>, KeyringError> {
    let provider = &keys.policy.provider;
    let started = Instant::now();
    let result = provider
        .generate_data_key(&keys.namespace, &keys.policy.key)
        .await;
    inner.stats.record(
        provider.kind(),
        "generate",
        &result.as_ref().map(|_| ()),
        started.elapsed(),
    );
    let generated = result.map_err(KeyringError::Provider)?;
    let template = HeaderTemplate::new(
        keys.policy.limits.sealing_format(),
        &keys.namespace,
        provider.kind(),
        &generated.kek,
        &generated.wrapped,
    )
    .map_err(KeyringError::Header)?;
    let data_key = Arc::new(EnvelopeKey::new(generated.plaintext));
    // Payloads sealed under this key open without a provider call.
    inner
        .cache
        .insert(
            cache_key(
                &keys.namespace,
                provider.kind(),
                &generated.kek,
                generated.wrapped.as_bytes(),
            ),
            Arc::clone(&data_key),
        )
        .await;
    let label = keys.policy.metrics_label.as_str();
    let stats = &inner.stats;
    let compression = keys.policy.limits.compression.map(|settings| {
        let counters = CompressionCounters {
            compressed: stats
                .compression_payloads
                .with_label_values(&[label, "compressed"]),
            too_small: stats
                .compression_payloads
                .with_label_values(&[label, "too_small"]),
            incompressible: stats
                .compression_payloads
                .with_label_values(&[label, "incompressible"]),
            input_bytes: stats.compression_input_bytes.with_label_values(&[label]),
            output_bytes: stats.compression_output_bytes.with_label_values(&[label]),
        };
        (settings, counters)
    });
    let key = Arc::new(ActiveKey {
        data_key,
        template,
        compression,
        key_id: format!("{}:{}", provider.kind(), generated.kek),
        kek: generated.kek,
        created: Instant::now(),
        uses: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        refresh_started: AtomicBool::new(false),
        retired: AtomicBool::new(false),
        serial: keys.serial.fetch_add(1, Ordering::Relaxed) + 1,
    });
    if let Some(previous) = keys.active.swap(Some(Arc::clone(&key))) {
        previous.retired.store(true, Ordering::Release);
    }
    keys.rotations[reason.index()].fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        namespace = %keys.namespace,
        key_id = %key.key_id,
        reason = reason.as_str(),
        "new data key active"
    );
    Ok(key)
}
