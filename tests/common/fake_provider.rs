//! A key provider for outage and latency tests, in process: [`FakeProvider`] wraps a real
//! provider (the local keyring file, say) and passes every call through to it, unless its
//! [`BackendControl`] says the backend is down (every call fails as an outage does:
//! [`ProviderError::Unavailable`], which the codec answers with 503) or slow (every call waits
//! first, on tokio's clock, so a paused clock pauses it too).
//!
//! It fakes only the backend's availability: keys, wraps, unwraps and their errors are the inner
//! provider's own. Several fakes may share one control: one backend seen by several processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kmscodec::keys::{GeneratedKey, KeyDescription, KeyProvider, ProviderError};
use kmscodec::secret::{DataKey, KekRef, ProviderKind, WrappedKey};

/// The switch of a (fake) backend: up or down, and how long each call takes. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct BackendControl {
    state: Arc<ControlState>,
}

#[derive(Debug, Default)]
struct ControlState {
    down: AtomicBool,
    latency_nanos: AtomicU64,
}

impl BackendControl {
    /// A backend that is up and answers at once.
    pub fn new() -> BackendControl {
        BackendControl::default()
    }

    /// The backend goes away: every call fails with [`ProviderError::Unavailable`].
    pub fn go_down(&self) {
        self.state.down.store(true, Ordering::SeqCst);
    }

    /// The backend returns: calls reach the inner provider again.
    pub fn come_back(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// Whether the backend is down.
    pub fn is_down(&self) -> bool {
        self.state.down.load(Ordering::SeqCst)
    }

    /// Every call waits `latency` before it is answered (or fails, when down). Zero: no wait.
    pub fn set_latency(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.state.latency_nanos.store(nanos, Ordering::SeqCst);
    }

    /// The wait added to every call.
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.state.latency_nanos.load(Ordering::SeqCst))
    }
}

/// A [`KeyProvider`] that delegates to `inner` while its [`BackendControl`] lets it.
pub struct FakeProvider {
    inner: Arc<dyn KeyProvider>,
    control: BackendControl,
}

impl FakeProvider {
    /// Wraps `inner`, switched by `control` (clone one control into several fakes to make them
    /// one backend).
    pub fn new(inner: Arc<dyn KeyProvider>, control: BackendControl) -> FakeProvider {
        FakeProvider { inner, control }
    }

    /// The switch of this fake's backend.
    pub fn control(&self) -> &BackendControl {
        &self.control
    }

    /// What every call goes through first: the latency, then the outage.
    async fn reach(&self, call: &str) -> Result<(), ProviderError> {
        let latency = self.control.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.control.is_down() {
            return Err(ProviderError::Unavailable(format!(
                "fake outage: {call} did not reach the backend"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl KeyProvider for FakeProvider {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn generate_data_key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<GeneratedKey, ProviderError> {
        self.reach("generate").await?;
        self.inner.generate_data_key(namespace, key).await
    }

    async fn unwrap_data_key(
        &self,
        namespace: &str,
        kek: &KekRef,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, ProviderError> {
        self.reach("unwrap").await?;
        self.inner.unwrap_data_key(namespace, kek, wrapped).await
    }

    async fn describe(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        self.reach("describe").await?;
        self.inner.describe(key).await
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.reach("health").await?;
        self.inner.health().await
    }

    fn allows_kek(&self, configured: &str, alleged: &KekRef) -> bool {
        self.inner.allows_kek(configured, alleged)
    }
}
