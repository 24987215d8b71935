//! Transports: the Temporal Codec Server HTTP protocol and the gRPC codec service, plus health.
//!
//! Transports parse requests and render answers; every codec request goes through the one
//! [`pipeline`] (screening, authentication, authorization, permits, deadlines, metrics, audit),
//! which calls [`crate::codec::Codec`], and every failure is mapped through the one table in
//! [`error`]. Transports never call key providers directly.

pub mod admin;
pub mod admin_api;
pub mod authority;
pub mod error;
pub mod grpc;
pub mod http;
pub mod listener;
pub mod pipeline;
pub mod timed;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::codec::Codec;
use crate::keyring::Keyring;
use crate::metrics::Metrics;

/// Readiness: ready when the key providers answered their last health check and the process is
/// not draining. Liveness never depends on it.
#[derive(Debug, Default)]
pub struct Readiness {
    providers_ok: AtomicBool,
    draining: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Readiness {
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

    /// Checks the providers once and records the outcome.
    pub async fn check(&self, keyring: &Keyring) {
        match keyring.check_providers().await {
            Ok(()) => {
                self.providers_ok.store(true, Ordering::Release);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = None;
                }
            }
            Err((provider, error)) => {
                if self.providers_ok.swap(false, Ordering::AcqRel) {
                    tracing::warn!(%provider, %error, "key provider health check failed: not ready");
                }
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(format!("key provider {provider}: {error}"));
                }
            }
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
