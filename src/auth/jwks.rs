//! The issuer's signing keys (a JSON Web Key Set, RFC 7517), from a URL or a file, cached.
//!
//! A key set is used for `jwks_refresh`, then fetched again on the next request. A token whose
//! `kid` is not in the set triggers a fetch at once (the issuer rotated its keys), but at most
//! one fetch per [`MIN_REFETCH_INTERVAL`], whatever the cause, so that tokens with made-up
//! `kid`s cannot make kmscodec hammer the issuer. A failed fetch keeps the set already cached.
//! Only one fetch runs at a time: requests that need its result wait for it, requests that hold
//! a merely stale set go on with it.
//!
//! Only RSA keys and EC P-256 keys meant for signatures are kept; symmetric (`oct`) keys are
//! dropped, so a key set can never turn a public value into an HMAC secret.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::AuthSetupError;
use super::settings::JwksSource;

/// Fewest seconds between two fetches of the key set (for an unknown `kid`, or after a failure).
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Without any key set yet, fetches are retried this often: every request would fail otherwise.
const MIN_RETRY_WITHOUT_KEYS: Duration = Duration::from_secs(1);
/// Longest a fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys kept from one set.
const MAX_KEYS: usize = 100;

/// One usable verification key.
pub(crate) struct Key {
    kid: Option<String>,
    /// The `alg` the key set pins the key to, if any.
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    decoding: DecodingKey,
}

impl Key {
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// A fetched key set.
pub(crate) struct KeySet {
    keys: Vec<Arc<Key>>,
    fetched_at: Instant,
}

impl KeySet {
    /// The keys a token signed with `alg` under `kid` may be verified with: the one with that
    /// `kid`, or without a `kid` every key of the algorithm's family.
    fn matching(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<Key>> {
        self.keys
            .iter()
            .filter(|key| key.fits(alg))
            .filter(|key| kid.is_none() || key.kid.as_deref() == kid)
            .cloned()
            .collect()
    }
}

/// Where the set comes from.
enum Origin {
    Url {
        url: url::Url,
        http: reqwest::Client,
    },
    File(PathBuf),
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Self::Url { url, .. } => url.to_string(),
            Self::File(path) => path.display().to_string(),
        }
    }
}

/// The JWKS cache of one issuer.
pub(crate) struct KeyCache {
    origin: Origin,
    refresh: Duration,
    min_refetch: Duration,
    current: ArcSwapOption<KeySet>,
    /// Single flight: held during a fetch, with the time the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("origin", &self.origin.describe())
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// Why a fetch is wanted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No set yet, or the set outlived `jwks_refresh`.
    Stale,
    /// A token names a `kid` the set lacks.
    UnknownKid,
}

impl KeyCache {
    /// Prepares the cache. A `jwks_file` is read now, so a broken file stops startup; a URL is
    /// fetched on first use (or by [`KeyCache::prefetch`]).
    pub(crate) fn new(source: &JwksSource, refresh: Duration) -> Result<Self, AuthSetupError> {
        let origin = match source {
            JwksSource::Url(url) => {
                let http = reqwest::Client::builder()
                    .tls_backend_rustls()
                    // The issuer's address is configured; a proxy from the environment would
                    // put a third party between kmscodec and its trust anchor.
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(FETCH_TIMEOUT)
                    .connect_timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|error| AuthSetupError::HttpClient(error.to_string()))?;
                Origin::Url {
                    url: url.clone(),
                    http,
                }
            }
            JwksSource::File(path) => Origin::File(path.clone()),
        };
        let cache = Self {
            origin,
            refresh,
            min_refetch: MIN_REFETCH_INTERVAL,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(None),
        };
        if let Origin::File(path) = &cache.origin {
            let bytes = std::fs::read(path).map_err(|error| AuthSetupError::JwksFile {
                path: path.clone(),
                message: format!("cannot read: {error}"),
            })?;
            let keys = parse_key_set(&bytes).map_err(|message| AuthSetupError::JwksFile {
                path: path.clone(),
                message,
            })?;
            cache.current.store(Some(Arc::new(KeySet {
                keys,
                fetched_at: Instant::now(),
            })));
        }
        Ok(cache)
    }

    #[cfg(test)]
    pub(crate) fn set_min_refetch(&mut self, interval: Duration) {
        self.min_refetch = interval;
    }

    /// Fetches the set now unless one is cached and fresh. For readiness checks at startup.
    pub(crate) async fn prefetch(&self) -> Result<(), String> {
        let seen = self.current.load_full();
        if seen
            .as_ref()
            .is_some_and(|set| set.fetched_at.elapsed() < self.refresh)
        {
            return Ok(());
        }
        // Single flight, but not counted by the refetch limit: a probe asks at its own pace.
        let _fetching = self.fetching.lock().await;
        let keys = self.fetch().await?;
        self.current.store(Some(Arc::new(KeySet {
            keys,
            fetched_at: Instant::now(),
        })));
        Ok(())
    }

    /// The keys to verify a token signed with `alg` under `kid` with: empty when the set has
    /// none (the token is then invalid), `None` when no set could be had at all.
    pub(crate) async fn matching(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Option<Vec<Arc<Key>>> {
        let mut set = self.current.load_full();
        let stale = set
            .as_ref()
            .is_none_or(|set| set.fetched_at.elapsed() >= self.refresh);
        if stale && let Some(fresh) = self.refetch(set.as_ref(), Reason::Stale).await {
            set = Some(fresh);
        }
        let mut set = set?;
        let mut keys = set.matching(kid, alg);
        if keys.is_empty()
            && kid.is_some()
            && let Some(fresh) = self.refetch(Some(&set), Reason::UnknownKid).await
        {
            set = fresh;
            keys = set.matching(kid, alg);
        }
        Some(keys)
    }

    /// Fetches a new set unless another request just did (then its set is returned) or the
    /// last fetch is too recent. `seen` is the set the caller found wanting.
    ///
    /// A request holding a stale set does not wait for another request's fetch: it goes on with
    /// the stale set, so a slow issuer delays one request per refresh, not all of them.
    async fn refetch(&self, seen: Option<&Arc<KeySet>>, reason: Reason) -> Option<Arc<KeySet>> {
        let mut last_fetch = if reason == Reason::Stale && seen.is_some() {
            self.fetching.try_lock().ok()?
        } else {
            self.fetching.lock().await
        };
        let current = self.current.load_full();
        let replaced = match (&current, seen) {
            (Some(current), Some(seen)) => !Arc::ptr_eq(current, seen),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if replaced {
            return current;
        }
        let min_interval = if current.is_some() {
            self.min_refetch
        } else {
            MIN_RETRY_WITHOUT_KEYS.min(self.min_refetch)
        };
        if last_fetch.is_some_and(|at| at.elapsed() < min_interval) {
            return None;
        }
        *last_fetch = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(
                    jwks = %self.origin.describe(),
                    keys = keys.len(),
                    reason = if reason == Reason::UnknownKid { "unknown_kid" } else { "refresh" },
                    "JWKS fetched"
                );
                let set = Arc::new(KeySet {
                    keys,
                    fetched_at: Instant::now(),
                });
                self.current.store(Some(Arc::clone(&set)));
                Some(set)
            }
            Err(message) => {
                tracing::warn!(
                    jwks = %self.origin.describe(),
                    %message,
                    cached = current.is_some(),
                    "JWKS fetch failed; the cached key set (if any) stays in use"
                );
                None
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Arc<Key>>, String> {
        let bytes = match &self.origin {
            Origin::File(path) => tokio::fs::read(path)
                .await
                .map_err(|error| format!("cannot read: {error}"))?,
            Origin::Url { url, http } => {
                let mut response = http
                    .get(url.clone())
                    .header(http::header::ACCEPT, "application/json")
                    .send()
                    .await
                    .map_err(|error| format!("request failed: {error}"))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(format!("answered HTTP {}", status.as_u16()));
                }
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|error| format!("reading the body failed: {error}"))?
                {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                body
            }
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
        parse_key_set(&bytes)
    }
}

/// Parses a JWKS document, keeping the keys kmscodec can verify with. A key that does not parse
/// is skipped (an issuer may publish key types this version does not know); a set with no
/// usable key is an error.
fn parse_key_set(bytes: &[u8]) -> Result<Vec<Arc<Key>>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(bytes)
        .map_err(|error| format!("not a JWKS document ({{\"keys\": [...]}}): {error}"))?;
    let mut keys = Vec::new();
    for value in document.keys {
        if keys.len() == MAX_KEYS {
            break;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some(key) = usable_key(&jwk) {
            keys.push(Arc::new(key));
        }
    }
    if keys.is_empty() {
        return Err("no usable signing key (RSA, or EC on P-256, with use \"sig\")".to_owned());
    }
    Ok(keys)
}

fn usable_key(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            AlgorithmFamily::Ec
        }
        // oct keys are shared secrets, OKP (Ed25519) is not accepted.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(pinned) => match Algorithm::try_from(pinned) {
            Ok(alg) if alg.family() == family => Some(alg),
            // Pinned to an algorithm kmscodec does not verify with, or to a mismatched family.
            _ => return None,
        },
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        decoding,
    })
}
