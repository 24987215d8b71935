//! Transports: the Temporal Codec Server HTTP protocol and the gRPC codec service, plus health.
//!
//! Transports parse requests and render answers; every codec request goes through the one
//! [`pipeline`] (screening, authentication, authorization, permits, deadlines, metrics, audit),
//! which calls [`crate::codec::Codec`], and every failure is mapped through the one table in
//! [`error`]. Transports never call key providers directly.

pub mod admin_api;
pub mod authority;
pub mod cert_expiry;
pub mod error;
pub mod grpc;
pub mod http;
pub mod listener;
pub mod pipeline;
pub mod probes;
mod settings;
pub mod timed;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use settings::{ServerConfig, UiConfig};

use crate::codec::Codec;
use crate::keyring::Keyring;
use crate::metrics::Metrics;

/// Default of `server.readiness_grace`: a KMS blip shorter than this never takes a replica out
/// of its Service while its cache can serve. All replicas share the KMS, so readiness that
/// followed it at once would empty the Service on every blip.
pub const DEFAULT_READINESS_GRACE: Duration = Duration::from_secs(60);

/// Readiness: not ready until every key provider answered a health check once (keys are
/// reachable), then ready unless draining or a provider that serves a namespace this process
/// has served has failed every check for `grace`. Meanwhile cached data keys and the active data
/// key keep serving; a provider serving only namespaces never served here never matters.
/// Liveness never depends on it.
#[derive(Debug)]
pub struct Readiness {
    providers_ok: AtomicBool,
    draining: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
    grace: Duration,
    /// Set once every provider has passed a check.
    reachable_once: AtomicBool,
    /// Providers failing every check since the instant given.
    failing_since: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new(DEFAULT_READINESS_GRACE)
    }
}

impl Readiness {
    /// Readiness that tolerates a failing provider for `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            providers_ok: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
            grace,
            reachable_once: AtomicBool::new(false),
            failing_since: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether the process should receive traffic.
    pub fn is_ready(&self) -> bool {
        self.providers_ok.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Why the process is not ready, if it is not.
    pub fn reason(&self) -> Option<String> {
        if self.draining.load(Ordering::Acquire) {
            return Some("shutting down".to_owned());
        }
        if self.providers_ok.load(Ordering::Acquire) {
            return None;
        }
        Some(
            self.last_error
                .lock()
                .ok()
                .and_then(|error| error.clone())
                .unwrap_or_else(|| "key providers not checked yet".to_owned()),
        )
    }

    /// Marks the process as draining: readiness turns false before listeners stop.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Checks every provider once and records the outcome.
    pub async fn check(&self, keyring: &Keyring) {
        let results = keyring.check_each_provider().await;
        let served = keyring.served_providers();
        let now = tokio::time::Instant::now();
        let Ok(mut failing_since) = self.failing_since.lock() else {
            return;
        };
        let mut first_failure = None;
        let mut blocking = None;
        for (provider, result) in results {
            match result {
                Ok(()) => {
                    if failing_since.remove(&provider).is_some() {
                        tracing::info!(%provider, "key provider health check passes again");
                    }
                }
                Err(error) => {
                    let since = *failing_since.entry(provider.clone()).or_insert_with(|| {
                        tracing::warn!(
                            %provider,
                            %error,
                            grace = ?self.grace,
                            "key provider health check failed; cached keys keep serving"
                        );
                        now
                    });
                    let failing_for = now.saturating_duration_since(since);
                    let message = format!(
                        "key provider {provider}: {error} (failing for {}s)",
                        failing_for.as_secs()
                    );
                    if blocking.is_none() && failing_for >= self.grace && served.contains(&provider)
                    {
                        blocking = Some(message.clone());
                    }
                    first_failure.get_or_insert(message);
                }
            }
        }
        drop(failing_since);
        if first_failure.is_none() {
            self.reachable_once.store(true, Ordering::Release);
        }
        // Before every provider answered once, any failure keeps the process out; after that,
        // only a served provider failing for the whole grace period does.
        let not_ready = if self.reachable_once.load(Ordering::Acquire) {
            blocking
        } else {
            first_failure
        };
        let ready = not_ready.is_none();
        let was_ready = self.providers_ok.swap(ready, Ordering::AcqRel);
        if let Some(reason) = &not_ready
            && was_ready
        {
            tracing::warn!(%reason, "not ready");
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = not_ready;
        }
    }

    /// Re-checks the providers every `interval` until the process exits.
    pub fn spawn_checker(self: &Arc<Self>, keyring: Arc<Keyring>, interval: Duration) {
        let readiness = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                readiness.check(&keyring).await;
            }
        });
    }
}

/// What the transports share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The codec.
    pub codec: Arc<Codec>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The audit log.
    pub audit: Arc<crate::audit::AuditLog>,
    /// Codec requests in flight across listeners; a request that finds none free is shed.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}
