//! Wiring: turns a validated [`Config`] into providers, a keyring and a codec, and serves them.
//!
//! `main` parses the command line and installs signal handlers; everything it then does goes
//! through here, so integration tests build exactly what the binary builds.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{Codec, CodecOptions};
use crate::config::{Config, ProviderConfig};
use crate::keyring::{Keyring, NamespacePolicy, Policies};
use crate::keys::aws_kms::AwsKms;
use crate::keys::local_file::LocalFile;
use crate::keys::vault::VaultTransit;
use crate::keys::{KeyProvider, ProviderError};
use crate::server::http::{HttpOptions, router};
use crate::server::{AppState, Readiness};

/// Why the application could not be built or served.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A provider could not be set up.
    #[error("provider {name}: {error}")]
    Provider {
        /// The provider's configured name.
        name: String,
        /// What failed.
        error: ProviderError,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What failed.
        error: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// The built application.
pub struct App {
    /// The configuration it was built from.
    pub config: Config,
    /// The keyring.
    pub keyring: Arc<Keyring>,
    /// The codec.
    pub codec: Arc<Codec>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// Local keyring files by provider name (for administration).
    pub local_files: BTreeMap<String, Arc<LocalFile>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Builds providers, keyring and codec from `config`.
pub fn build(config: Config) -> Result<App, AppError> {
    let mut providers: HashMap<String, Arc<dyn KeyProvider>> = HashMap::new();
    let mut local_files = BTreeMap::new();
    for (name, provider) in &config.providers {
        match provider {
            ProviderConfig::Local {
                path,
                create_missing,
            } => {
                // The key created with a new file: the first namespace key naming this provider.
                let first_key = config
                    .namespaces
                    .values()
                    .find(|ns| &ns.provider == name && !ns.key.contains("{namespace}"))
                    .map(|ns| ns.key.clone())
                    .unwrap_or_else(|| crate::config::DEV_KEY.to_owned());
                let local =
                    if *create_missing {
                        let (local, created) = LocalFile::open_or_create(path, &first_key)
                            .map_err(|error| AppError::Provider {
                                name: name.clone(),
                                error,
                            })?;
                        if created {
                            tracing::warn!(
                                path = %path.display(),
                                "created a new local keyring file with key {first_key:?}"
                            );
                        }
                        local
                    } else {
                        LocalFile::open(path).map_err(|error| AppError::Provider {
                            name: name.clone(),
                            error,
                        })?
                    };
                let local = Arc::new(local);
                local_files.insert(name.clone(), Arc::clone(&local));
                providers.insert(name.clone(), local);
            }
            ProviderConfig::Vault(vault) => {
                // No network I/O here: the first login happens at the first readiness check
                // (or first use), so an unreachable Vault never blocks startup.
                let provider = VaultTransit::new(vault).map_err(|error| AppError::Provider {
                    name: name.clone(),
                    error,
                })?;
                tracing::info!(
                    provider = %name,
                    address = %vault.address,
                    mount = %vault.mount,
                    auth = provider.auth_method(),
                    "vault transit provider configured"
                );
                providers.insert(name.clone(), Arc::new(provider));
            }
            ProviderConfig::Aws(options) => {
                // No I/O here: the SDK client is built on the first call (the readiness check
                // at startup), because resolving the AWS chain is async and `build` is not.
                providers.insert(name.clone(), Arc::new(AwsKms::new(options.clone())));
            }
        }
    }
    let mut policies = Policies::default();
    for (namespace, entry) in &config.namespaces {
        // config validation guarantees the provider exists.
        let Some(provider) = providers.get(&entry.provider) else {
            continue;
        };
        let policy = NamespacePolicy {
            provider_name: entry.provider.clone(),
            provider: Arc::clone(provider),
            key: entry.key.clone(),
            limits: entry.limits.clone(),
            metrics_label: namespace.clone(),
        };
        if namespace == "*" {
            policies.wildcard = Some(policy);
        } else {
            policies.exact.insert(namespace.clone(), policy);
        }
    }
    let keyring = Arc::new(Keyring::new(
        policies,
        &config.cache,
        config.max_wildcard_namespaces,
    ));
    let codec = Arc::new(Codec::new(
        Arc::clone(&keyring),
        CodecOptions {
            skip_encodings: config
                .skip_encodings
                .iter()
                .map(|e| e.as_bytes().to_vec())
                .collect(),
            max_payloads: config.max_payloads,
            max_payload_bytes: config.max_payload_bytes,
            ..CodecOptions::default()
        },
    ));
    Ok(App {
        config,
        keyring,
        codec,
        readiness: Arc::new(Readiness::default()),
        local_files,
    })
}

impl App {
    /// The HTTP options from the configuration.
    pub fn http_options(&self) -> HttpOptions {
        let server = &self.config.server;
        HttpOptions {
            body_limit_bytes: server.body_limit_bytes,
            namespace_from_path: server.namespace_from_path,
            request_timeout: server.request_timeout,
            cors: server.cors.clone(),
        }
    }

    /// The shared transport state.
    pub fn state(&self) -> AppState {
        AppState {
            codec: Arc::clone(&self.codec),
            readiness: Arc::clone(&self.readiness),
        }
    }

    /// Binds the listeners, serves until `shutdown` resolves, then drains: readiness turns false
    /// at once, listeners stop accepting, and in-flight requests get `shutdown_grace` to finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let address = self.config.server.listen;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| AppError::Bind { address, error })?;
        let local = listener.local_addr().unwrap_or(address);
        self.readiness.check(&self.keyring).await;
        self.readiness
            .spawn_checker(Arc::clone(&self.keyring), Duration::from_secs(5));
        if let Some(reason) = self.readiness.reason() {
            tracing::warn!(%reason, "not ready yet");
        }
        tracing::info!(address = %local, "codec server listening");

        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let readiness = Arc::clone(&self.readiness);
        let grace = self.config.server.shutdown_grace;
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!(grace = ?grace, "shutdown requested: draining");
            readiness.start_draining();
            let _ = drain_tx.send(true);
        });
        let mut drain_signal = drain_rx.clone();
        let app = router(self.state(), self.http_options());
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = drain_signal.wait_for(|draining| *draining).await;
        });
        let mut server = tokio::spawn(async move { server.await });
        let mut drained = drain_rx;
        tokio::select! {
            result = &mut server => {
                return match result {
                    Ok(result) => result.map_err(AppError::Serve),
                    Err(error) => Err(AppError::Serve(std::io::Error::other(error))),
                };
            }
            _ = drained.wait_for(|draining| *draining) => {}
        }
        match tokio::time::timeout(grace, &mut server).await {
            Ok(Ok(result)) => result.map_err(AppError::Serve),
            Ok(Err(error)) => Err(AppError::Serve(std::io::Error::other(error))),
            Err(_) => {
                tracing::warn!("shutdown grace period over: exiting with requests still in flight");
                server.abort();
                Ok(())
            }
        }
    }
}
