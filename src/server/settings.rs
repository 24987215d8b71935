//! The listeners' settings (`[server]` and `[ui]`), as `config` reads them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::http::CorsConfig;
use super::tls::TlsSettings;

/// Listener and request settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The codec HTTP listener.
    pub listen: SocketAddr,
    /// The admin listener (metrics, health, admin API); `None` turns it off.
    pub admin_listen: Option<SocketAddr>,
    /// The gRPC codec listener (TCP), if any.
    pub grpc_listen: Option<SocketAddr>,
    /// The gRPC codec listener on a Unix domain socket, if any (a sidecar's pod-shared volume).
    pub grpc_unix_socket: Option<PathBuf>,
    /// Largest request body in bytes.
    pub body_limit_bytes: usize,
    /// Take the namespace from the path segment before `encode`/`decode` when `X-Namespace` is
    /// absent.
    pub namespace_from_path: bool,
    /// Longest a codec request may take.
    pub request_timeout: Duration,
    /// How long a key provider serving a namespace this process has served may keep failing its
    /// health check before readiness turns false (cached data keys keep serving meanwhile).
    pub readiness_grace: Duration,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_grace: Duration,
    /// CORS.
    pub cors: CorsConfig,
    /// Authentication methods on the codec listener (`"token"`, `"jwt"`, `"mtls"`); empty: open
    /// (the sidecar default: loopback only).
    pub auth: Vec<String>,
    /// TLS on the codec listener.
    pub tls: Option<TlsSettings>,
    /// TLS on the admin listener.
    pub admin_tls: Option<TlsSettings>,
    /// TLS on the gRPC TCP listener.
    pub grpc_tls: Option<TlsSettings>,
    /// Most connections open at once, per HTTP listener.
    pub max_connections: usize,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Most codec requests served at once across the worker HTTP and gRPC listeners; more get
    /// `503` with `Retry-After`. The UI listener has its own pool (`[ui]`).
    pub max_concurrent_requests: usize,
    /// Host names (besides loopback names and addresses) that the codec listener answers when
    /// it does not authenticate: a DNS-rebinding page's `Host` is refused.
    pub allowed_hosts: Vec<String>,
}

/// The UI-facing codec listener (`[ui]`): the Temporal Web UI and CLI reach it across the
/// network, so it always authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Authentication methods (at least one).
    pub auth: Vec<String>,
    /// A cookie whose value is taken as a bearer token when no `Authorization` header is sent
    /// (the UI's "include cross-origin credentials").
    pub token_cookie: Option<String>,
    /// CORS for the Web UI's origin.
    pub cors: CorsConfig,
    /// TLS.
    pub tls: Option<TlsSettings>,
    /// Most UI-listener codec requests served at once (its own pool, so people in the Web UI
    /// cannot starve the workers); default: a quarter of `server.max_concurrent_requests`.
    pub max_concurrent_requests: Option<usize>,
    /// Host names the UI listener answers when it does not authenticate
    /// (`allow_unauthenticated`), besides loopback ones.
    pub allowed_hosts: Vec<String>,
}
