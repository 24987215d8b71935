//! Wiring: turns a validated [`Config`] into providers, a keyring and a codec, and serves them.
//!
//! `main` parses the command line and installs signal handlers; everything it then does goes
//! through here, so integration tests build exactly what the binary builds.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::auth::{Authenticator, Authorizer, Method};
use crate::codec::{Codec, CodecOptions};
use crate::config::Config;
use crate::keyring::{Keyring, NamespacePolicy, Policies};
use crate::keys::{self, KeyProvider, ProviderConfig, ProviderError};
use crate::metrics::{Metrics, MetricsError};
use crate::server::grpc;
use crate::server::http::{HttpOptions, handler};
use crate::server::listener::{self, ListenerOptions};
use crate::server::pipeline::ListenerPolicy;
use crate::server::tls::TlsReloader;
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
    /// The metrics registry could not be built (a bug).
    #[error(transparent)]
    Metrics(MetricsError),
    /// A listener's TLS files are unusable.
    #[error("{listener} TLS: {error}")]
    Tls {
        /// The listener.
        listener: &'static str,
        /// What failed.
        error: crate::server::tls::TlsError,
    },
    /// A listener's authentication could not be set up (a token file, the JWKS file).
    #[error("{listener} authentication: {error}")]
    Auth {
        /// The listener.
        listener: &'static str,
        /// What failed.
        error: crate::auth::AuthSetupError,
    },
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(crate::audit::AuditError),
    /// The gRPC Unix socket could not be bound.
    #[error("cannot listen on unix socket {path}: {error}")]
    BindUnix {
        /// The socket path.
        path: std::path::PathBuf,
        /// What failed.
        error: std::io::Error,
    },
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
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Codec requests in flight, across listeners (`max_concurrent_requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Codec requests in flight on the UI listener (its own pool).
    pub ui_in_flight: Arc<tokio::sync::Semaphore>,
    /// Authentication of the worker listener and gRPC (`[server] auth`).
    pub worker_auth: Arc<Authenticator>,
    /// Authentication of the UI listener (`[ui] auth`).
    pub ui_auth: Option<Arc<Authenticator>>,
    /// Authorization rules.
    pub authorizer: Arc<Authorizer>,
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
    for (name, provider) in &config.providers {
        // A local file that may be created gets the first namespace key naming this provider.
        let create_with = match provider {
            ProviderConfig::Local {
                create_missing: true,
                ..
            } => Some(
                config
                    .namespaces
                    .values()
                    .find(|ns| &ns.provider == name && !ns.key.contains("{namespace}"))
                    .map_or(crate::config::DEV_KEY, |ns| ns.key.as_str()),
            ),
            _ => None,
        };
        let opened = keys::open(provider, create_with).map_err(|error| AppError::Provider {
            name: name.clone(),
            error,
        })?;
        if let (true, ProviderConfig::Local { path, .. }, Some(key)) =
            (opened.created, provider, create_with)
        {
            tracing::warn!(
                path = %path.display(),
                "created a new local keyring file with key {key:?}"
            );
        }
        providers.insert(name.clone(), opened.provider);
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
    let keyring = Arc::new(
        Keyring::new(policies, &config.cache, config.max_wildcard_namespaces)
            .with_dynamic_idle(config.wildcard_namespace_idle),
    );
    let codec = Codec::new(
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
    );
    let metrics = Arc::new(Metrics::new(Arc::clone(&keyring)).map_err(AppError::Metrics)?);
    let audit = Arc::new(
        AuditLog::open_scoped(&config.audit, config.audit_scopes.clone())
            .map_err(AppError::Audit)?,
    );
    // External Storage: resolves references on decode, offloads on encode (src/storage).
    let codec = Arc::new(if config.external_storage.is_enabled() {
        let storage = crate::storage::ExternalStorage::new(config.external_storage.clone())
            .with_audit(Arc::clone(&audit));
        metrics
            .register(storage.collectors())
            .map_err(AppError::Metrics)?;
        codec.with_external_storage(Arc::new(storage))
    } else {
        codec
    });
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        config
            .server
            .max_concurrent_requests
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let ui_in_flight = Arc::new(tokio::sync::Semaphore::new(
        config
            .ui
            .as_ref()
            .and_then(|ui| ui.max_concurrent_requests)
            .unwrap_or(config.server.max_concurrent_requests / 4)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let authenticator = |listener: &'static str, methods: &[String]| {
        let methods: Vec<Method> = methods
            .iter()
            .filter_map(|m| Method::from_name(m))
            .collect();
        Authenticator::new(&methods, &config.auth)
            .map(Arc::new)
            .map_err(|error| AppError::Auth { listener, error })
    };
    let worker_auth = authenticator("codec", &config.server.auth)?;
    let ui_auth = match &config.ui {
        Some(ui) => Some(authenticator("ui", &ui.auth)?),
        None => None,
    };
    let authorizer = Arc::new(Authorizer::new(&config.authz));
    let readiness = Arc::new(Readiness::new(config.server.readiness_grace));
    Ok(App {
        config,
        keyring,
        codec,
        readiness,
        metrics,
        audit,
        in_flight,
        ui_in_flight,
        worker_auth,
        ui_auth,
        authorizer,
    })
}

impl App {
    /// The worker codec listener's place in the request pipeline.
    pub fn worker_policy(&self) -> ListenerPolicy {
        let server = &self.config.server;
        ListenerPolicy {
            name: "worker",
            authenticator: Arc::clone(&self.worker_auth),
            authorizer: Arc::clone(&self.authorizer),
            permits: Arc::clone(&self.in_flight),
            request_timeout: server.request_timeout,
            body_limit_bytes: server.body_limit_bytes,
            allowed_origins: server.cors.allowed_origins.clone(),
            allowed_hosts: server.allowed_hosts.clone(),
        }
    }

    /// HTTP settings of the codec listener.
    pub fn http_options(&self) -> HttpOptions {
        let server = &self.config.server;
        HttpOptions {
            namespace_from_path: server.namespace_from_path,
            cors: server.cors.clone(),
            token_cookie: None,
            policy: self.worker_policy(),
        }
    }

    /// HTTP settings of the UI-facing codec listener: its own authentication, CORS, and pool of
    /// permits.
    pub fn ui_http_options(&self, ui: &crate::server::UiConfig) -> HttpOptions {
        HttpOptions {
            cors: ui.cors.clone(),
            token_cookie: ui.token_cookie.clone(),
            policy: ListenerPolicy {
                name: "ui",
                authenticator: self
                    .ui_auth
                    .clone()
                    .unwrap_or_else(|| Arc::new(Authenticator::open())),
                permits: Arc::clone(&self.ui_in_flight),
                allowed_origins: ui.cors.allowed_origins.clone(),
                allowed_hosts: ui.allowed_hosts.clone(),
                ..self.worker_policy()
            },
            ..self.http_options()
        }
    }

    /// The gRPC listeners' place in the request pipeline: the worker listener's, under the name
    /// `grpc`.
    pub fn grpc_policy(&self) -> ListenerPolicy {
        ListenerPolicy {
            name: "grpc",
            ..self.worker_policy()
        }
    }

    /// The shared transport state.
    pub fn state(&self) -> AppState {
        AppState {
            codec: Arc::clone(&self.codec),
            readiness: Arc::clone(&self.readiness),
            metrics: Arc::clone(&self.metrics),
            audit: Arc::clone(&self.audit),
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    /// Binds every configured listener (codec HTTP, admin, gRPC over TCP and a Unix socket),
    /// serves until `shutdown` resolves, then drains: readiness turns false at once, listeners
    /// stop accepting, and in-flight requests get `shutdown_grace` to finish.
    ///
    /// Every listener is bound before any is served, so a bad address fails startup cleanly.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        // However serving ends, every audit line gathered so far is written before this returns.
        let _audit = CloseAudit(Arc::clone(&self.audit));
        let server = &self.config.server;
        let codec_listener = bind(server.listen).await?;
        let ui_listener = match &self.config.ui {
            Some(ui) => Some(bind(ui.listen).await?),
            None => None,
        };
        let tls = |listener: &'static str, settings: &Option<crate::server::tls::TlsSettings>| {
            settings
                .clone()
                .map(|settings| {
                    let reloader = TlsReloader::load(settings)
                        .map_err(|error| AppError::Tls { listener, error })?;
                    reloader.spawn_watcher();
                    let watched = Arc::downgrade(&reloader);
                    self.metrics.watch_certificate(listener, move || {
                        watched.upgrade().and_then(|reloader| reloader.not_after())
                    });
                    Ok::<_, AppError>(reloader)
                })
                .transpose()
        };
        let codec_tls = tls("codec", &server.tls)?;
        let admin_tls = tls("admin", &server.admin_tls)?;
        let grpc_tls = tls("grpc", &server.grpc_tls)?;
        let ui_tls = match &self.config.ui {
            Some(ui) => tls("ui", &ui.tls)?,
            None => None,
        };
        // Open connections keep being served with `Connection: close` for this long after
        // SIGTERM, so keep-alive clients stop reusing them before they close.
        let linger = (server.shutdown_grace / 4).min(DRAIN_LINGER);
        let listener_options =
            |name: &'static str, tls: Option<Arc<TlsReloader>>| ListenerOptions {
                name,
                max_connections: server.max_connections,
                max_header_bytes: server.max_header_bytes,
                tls,
                linger,
            };
        let admin_listener = match server.admin_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let admin_api_listener = match self.config.admin.listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let grpc_listener = match server.grpc_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let unix_listener = match &server.grpc_unix_socket {
            Some(path) => Some(bind_unix(path)?),
            None => None,
        };

        let (health, health_service) = tonic_health::server::health_reporter();
        self.readiness.check(&self.keyring).await;
        report_health(&health, self.readiness.is_ready()).await;
        if let Some(reason) = self.readiness.reason() {
            tracing::warn!(%reason, "not ready yet");
        }
        self.spawn_background(health.clone());

        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let readiness = Arc::clone(&self.readiness);
        let grace = server.shutdown_grace;
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!(grace = ?grace, "shutdown requested: draining");
            readiness.start_draining();
            report_health(&health, false).await;
            let _ = drain_tx.send(true);
        });

        let mut tasks: Vec<(&'static str, tokio::task::JoinHandle<std::io::Result<()>>)> =
            Vec::new();
        log_listening("codec http", &codec_listener);
        let codec_app = handler(self.state(), self.http_options());
        let options = listener_options("codec http", codec_tls);
        tasks.push((
            "codec http",
            tokio::spawn(listener::serve(
                codec_listener,
                codec_app,
                options,
                drain_rx.clone(),
            )),
        ));
        if let (Some(listener), Some(ui)) = (ui_listener, &self.config.ui) {
            log_listening("ui codec http", &listener);
            let ui_app = handler(self.state(), self.ui_http_options(ui));
            let options = listener_options("ui codec http", ui_tls);
            tasks.push((
                "ui codec http",
                tokio::spawn(listener::serve(listener, ui_app, options, drain_rx.clone())),
            ));
        }
        let admin_api = crate::server::admin_api::router(
            Arc::clone(&self.keyring),
            crate::server::admin_api::AdminApiOptions::from_config(&self.config.admin),
        );
        // `[admin] listen`: the admin API on its own listener (loopback, no TLS); otherwise
        // beside the metrics and probes.
        let admin_api = match admin_api_listener {
            Some(listener) => {
                log_listening("admin api", &listener);
                let options = listener_options("admin api", None);
                tasks.push((
                    "admin api",
                    tokio::spawn(listener::serve(
                        listener,
                        admin_api,
                        options,
                        drain_rx.clone(),
                    )),
                ));
                None
            }
            None => Some(admin_api),
        };
        if let Some(listener) = admin_listener {
            log_listening("admin", &listener);
            // Metrics and probes, plus the admin API unless it has its own listener; the peer
            // address lets the admin API tell loopback callers from others.
            let mut admin_app = crate::server::probes::router(self.state());
            if let Some(admin_api) = admin_api {
                admin_app = admin_app.merge(admin_api);
            }
            let options = listener_options("admin", admin_tls);
            tasks.push((
                "admin",
                tokio::spawn(listener::serve(
                    listener,
                    admin_app,
                    options,
                    drain_rx.clone(),
                )),
            ));
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|error| AppError::Serve(std::io::Error::other(error)))?;
        let codec_service = grpc::service(self.state(), self.grpc_policy());
        // gRPC over TCP and over the Unix socket is served by the same accept loop as HTTP:
        // TLS (`[server.grpc_tls]`, TCP only), client certificates, connection limits and the
        // drain. HTTP/2 is detected from the connection preface (or ALPN); TCP_NODELAY is set on
        // every TCP connection, as gRPC answers are several small frames.
        let grpc_routes = tonic::service::Routes::new(health_service)
            .add_service(reflection)
            .add_service(codec_service)
            .prepare()
            .into_axum_router();
        if let Some(listener) = grpc_listener {
            log_listening("grpc", &listener);
            let options = listener_options("grpc", grpc_tls);
            tasks.push((
                "grpc",
                tokio::spawn(listener::serve(
                    listener,
                    grpc_routes.clone(),
                    options,
                    drain_rx.clone(),
                )),
            ));
        }
        if let Some((path, listener)) = unix_listener {
            tracing::info!(path = %path.display(), "grpc listening on unix socket");
            let options = listener_options("grpc unix", None);
            let serve = listener::serve(
                listener::Bound::Unix(listener),
                grpc_routes,
                options,
                drain_rx.clone(),
            );
            tasks.push((
                "grpc unix",
                tokio::spawn(async move {
                    let result = serve.await;
                    let _ = std::fs::remove_file(&path);
                    result
                }),
            ));
        }

        // Until shutdown, any listener ending is a failure; after it, wait up to the grace period.
        let draining_now = drain_rx.clone();
        let mut draining = drain_rx;
        let (names, handles): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
        let mut all = futures_util::future::select_all(handles);
        let remaining = tokio::select! {
            (result, index, remaining) = &mut all => {
                // A listener that finishes while draining has simply drained first.
                if !*draining_now.borrow() {
                    let name = names.get(index).copied().unwrap_or("listener");
                    return Err(AppError::Serve(std::io::Error::other(format!(
                        "{name} listener stopped: {}",
                        match result {
                            Ok(Ok(())) => "unexpectedly".to_owned(),
                            Ok(Err(error)) => error.to_string(),
                            Err(error) => error.to_string(),
                        }
                    ))));
                }
                remaining
            }
            _ = draining.wait_for(|draining| *draining) => all.into_inner(),
        };
        let finish = futures_util::future::join_all(remaining);
        match tokio::time::timeout(grace, finish).await {
            Ok(results) => {
                for result in results {
                    if let Ok(Err(error)) = result {
                        tracing::warn!(%error, "listener ended with an error while draining");
                    }
                }
                tracing::info!("drained: exiting");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("shutdown grace period over: exiting with requests still in flight");
                Ok(())
            }
        }
    }

    /// Readiness checks (which also drive the gRPC health status) and the expired-key sweeper.
    fn spawn_background(&self, health: tonic_health::server::HealthReporter) {
        let readiness = Arc::clone(&self.readiness);
        let keyring = Arc::clone(&self.keyring);
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(READINESS_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                readiness.check(&keyring).await;
                let ready = readiness.is_ready();
                metrics.set_ready(ready);
                report_health(&health, ready).await;
                let retired = keyring.retire_expired();
                if retired > 0 {
                    tracing::info!(retired, "dropped data keys past their maximum age");
                }
                let forgotten = keyring.evict_idle();
                if forgotten > 0 {
                    tracing::info!(forgotten, "forgot idle namespaces served by the wildcard");
                }
            }
        });
    }
}

/// The longest an open connection is still served after SIGTERM before it is shut down.
const DRAIN_LINGER: Duration = Duration::from_secs(2);

/// How often readiness is re-checked and expired data keys are swept.
const READINESS_INTERVAL: Duration = Duration::from_secs(5);

/// Closes the audit log (writing its pending lines) when dropped.
struct CloseAudit(Arc<AuditLog>);

impl Drop for CloseAudit {
    fn drop(&mut self) {
        self.0.close();
    }
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, AppError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| AppError::Bind { address, error })
}

/// Binds a Unix socket, replacing a stale socket file left by an earlier process (but never a
/// regular file). The socket is made accessible to the pod's other containers (mode 0660).
fn bind_unix(
    path: &std::path::Path,
) -> Result<(std::path::PathBuf, tokio::net::UnixListener), AppError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let fail = |error| AppError::BindUnix {
        path: path.to_path_buf(),
        error,
    };
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if metadata.file_type().is_socket() {
            std::fs::remove_file(path).map_err(fail)?;
        } else {
            return Err(fail(std::io::Error::other("exists and is not a socket")));
        }
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(fail)?;
    Ok((path.to_path_buf(), listener))
}

fn log_listening(name: &'static str, listener: &tokio::net::TcpListener) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "{name} listening");
    }
}

async fn report_health(health: &tonic_health::server::HealthReporter, ready: bool) {
    let status = if ready {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    health.set_service_status(grpc::SERVICE_NAME, status).await;
}
