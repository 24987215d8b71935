//! The admin HTTP API: what operators and `kmscodec keys ... --sidecar URL` ask a running
//! kmscodec process about its data keys.
//!
//! Routes (JSON answers; errors are `{"code": "...", "message": "..."}` as on the codec routes):
//!
//! * `GET /admin/v1/namespaces`: every namespace this process has used, with its active data
//!   key's usage, limits, age and rotations ([`NamespacesAnswer`]).
//! * `GET /admin/v1/namespaces/{namespace}`: one of them (404 `namespace_not_used` otherwise).
//! * `POST /admin/v1/namespaces/{namespace}/rotate-data-key`: retire the namespace's active data
//!   key now; the next encode mints a new one (emergency rotation).
//! * `POST /admin/v1/namespaces/{namespace}/forget-data-keys`: retire it and empty the decode
//!   cache (after the namespace's KEK was shredded).
//!
//! Authentication: with `[admin] token_file`, every route needs `Authorization: Bearer <token>`
//! (401 otherwise), compared in constant time (digests of both sides, so not even the length
//! leaks); the file is read on every request, so a rotated token applies without a restart.
//! Without a token file, reads are open and mutating routes answer loopback peers only (403
//! otherwise). Mutating routes refuse any request carrying `Origin` (403): a browser page must
//! never reach them, even from the same host.
//!
//! This module owns the routes, authentication and the mapping of keyring errors to statuses.
//! It must never log or echo a token, never call a key provider (it acts on the process's
//! keyring only, through `DataKeyOp`), and never answer CORS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::http::error_response;
use serde::{Deserialize, Serialize};

use crate::audit::ADMIN_TARGET;
use crate::keyring::{Keyring, KeyringError, NamespaceSnapshot};
use crate::namespace::Namespace;
use crate::secret::read_token_file;

/// The admin API's settings (`[admin]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// A file holding the bearer token the admin API requires. Without it, mutating admin
    /// routes answer loopback callers only.
    pub token_file: Option<PathBuf>,
    /// Serve the admin API on its own listener at this address (`127.0.0.1:9465` in the Helm
    /// chart's sidecar mode) instead of beside `/metrics` and the probes on the admin listener,
    /// so the port Prometheus and the kubelet reach carries no admin route.
    pub listen: Option<SocketAddr>,
}

/// The path prefix of the admin HTTP API.
pub const API_PREFIX: &str = "/admin/v1";

/// The answer of `GET /admin/v1/namespaces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespacesAnswer {
    /// Every namespace this process has used, sorted.
    pub namespaces: Vec<NamespaceSnapshot>,
}

/// The answer of the data key routes (`rotate-data-key`, `forget-data-keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKeyAnswer {
    /// The namespace.
    pub namespace: String,
    /// Whether the process had an active data key for it (now retired).
    pub had_active_key: bool,
    /// Whether the decode cache was emptied (`forget-data-keys`).
    pub cache_cleared: bool,
}

/// Who asked the admin API, for its audit lines.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// The peer address.
    pub peer: String,
    /// How it was allowed: `token` or `loopback`.
    pub authenticated_by: &'static str,
}

fn api_audit(caller: &ApiCaller, op: &str, namespace: &str, outcome: Result<bool, &KeyringError>) {
    match outcome {
        Ok(had_active_key) => tracing::info!(
            target: ADMIN_TARGET,
            audit = true,
            via = "admin_api",
            peer = %caller.peer,
            authenticated_by = caller.authenticated_by,
            op,
            namespace,
            had_active_key,
            outcome = "ok",
            "key administration: {op} {namespace}"
        ),
        Err(error) => tracing::warn!(
            target: ADMIN_TARGET,
            audit = true,
            via = "admin_api",
            peer = %caller.peer,
            authenticated_by = caller.authenticated_by,
            op,
            namespace,
            outcome = "failed",
            error = %error,
            "key administration: {op} {namespace} failed"
        ),
    }
}

/// What a data key route does to one namespace in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKeyOp {
    /// Retire the active data key: the next encode mints a new one (emergency rotation after a
    /// suspected leak, or to pick up a rotated or decrypt-only KEK now).
    Rotate,
    /// After the KEK was shredded: retire the active data key and empty the decode cache
    /// ([`Keyring::forget_namespace`]).
    Forget,
}

impl DataKeyOp {
    fn name(self) -> &'static str {
        match self {
            Self::Rotate => "rotate-data-key",
            Self::Forget => "forget-data-keys",
        }
    }

    /// Does it, writes the audit line, and answers.
    fn apply(
        self,
        keyring: &Keyring,
        namespace: &str,
        caller: &ApiCaller,
    ) -> Result<DataKeyAnswer, KeyringError> {
        let result = match self {
            Self::Rotate => keyring.retire_active(namespace),
            Self::Forget => keyring.forget_namespace(namespace),
        };
        api_audit(caller, self.name(), namespace, result.as_ref().copied());
        Ok(DataKeyAnswer {
            namespace: namespace.to_owned(),
            had_active_key: result?,
            cache_cleared: self == Self::Forget,
        })
    }
}

/// The usage of every namespace this process has used.
fn namespaces(keyring: &Keyring) -> NamespacesAnswer {
    NamespacesAnswer {
        namespaces: keyring.snapshot(),
    }
}

/// Settings of the admin API.
#[derive(Debug, Clone, Default)]
pub struct AdminApiOptions {
    /// The file holding the bearer token; `None`: mutating routes for loopback peers only.
    pub token_file: Option<PathBuf>,
}

impl AdminApiOptions {
    /// The options from `[admin]`.
    pub fn from_config(config: &AdminConfig) -> Self {
        Self {
            token_file: config.token_file.clone(),
        }
    }
}

struct AdminApi {
    keyring: Arc<Keyring>,
    options: AdminApiOptions,
}

/// The admin API router, routes under `/admin/v1/`. It has no fallback, so it merges into
/// another router (`codec_router.merge(admin_api::router(..))`). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: without the peer address, mutating
/// routes without a token are refused (the peer cannot be shown to be loopback).
pub fn router(keyring: Arc<Keyring>, options: AdminApiOptions) -> Router {
    if let Some(path) = &options.token_file {
        match read_token_file(path) {
            Ok(_) => {
                use std::os::unix::fs::PermissionsExt;
                if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                    tracing::warn!(
                        path = %path.display(),
                        "admin token file is accessible by group or others: chmod 600"
                    );
                }
            }
            Err(error) => tracing::warn!(
                %error,
                "admin token file unreadable: every admin API request will be refused"
            ),
        }
    } else {
        tracing::info!(
            "admin API without a token: reads are open, changes are accepted from loopback \
             peers only"
        );
    }
    let api = Arc::new(AdminApi { keyring, options });
    Router::new()
        .route("/admin/v1/namespaces", get(list_namespaces))
        .route("/admin/v1/namespaces/{namespace}", get(one_namespace))
        .route(
            "/admin/v1/namespaces/{namespace}/rotate-data-key",
            post(rotate_data_key),
        )
        .route(
            "/admin/v1/namespaces/{namespace}/forget-data-keys",
            post(forget_data_keys),
        )
        .with_state(api)
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        ),
    }
}

fn unauthenticated(message: &str) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, "admin_unauthenticated", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"kmscodec-admin\""),
    );
    response
}

/// Equal tokens, compared in constant time over SHA-256 digests (so lengths do not leak).
fn tokens_match(presented: &[u8], expected: &[u8]) -> bool {
    let presented = Sha256::digest(presented);
    let expected = Sha256::digest(expected);
    presented.as_slice().ct_eq(expected.as_slice()).into()
}

impl AdminApi {
    /// Decides whether the request may proceed; `mutating`: the route changes state.
    fn authorize(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        mutating: bool,
    ) -> Result<ApiCaller, Box<Response>> {
        let peer_text = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
        if mutating && headers.contains_key(header::ORIGIN) {
            tracing::warn!(peer = %peer_text, "admin API: refused a browser request (Origin header)");
            return Err(Box::new(error_response(
                StatusCode::FORBIDDEN,
                "admin_browser_refused",
                "the admin API does not accept browser requests",
            )));
        }
        if let Some(path) = &self.options.token_file {
            let expected = match read_token_file(path) {
                Ok(token) => token,
                Err(error) => {
                    tracing::error!(%error, "admin API: cannot read the admin token file");
                    return Err(Box::new(error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "admin_token_unavailable",
                        "the admin token cannot be read; see the server log",
                    )));
                }
            };
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
            return match presented {
                None => Err(Box::new(unauthenticated(
                    "send Authorization: Bearer <admin token>",
                ))),
                Some(token) if tokens_match(token, expected.as_bytes()) => Ok(ApiCaller {
                    peer: peer_text,
                    authenticated_by: "token",
                }),
                Some(_) => {
                    tracing::warn!(peer = %peer_text, "admin API: wrong admin token");
                    Err(Box::new(unauthenticated("wrong admin token")))
                }
            };
        }
        let loopback = peer.is_some_and(|peer| peer.ip().to_canonical().is_loopback());
        if mutating && !loopback {
            tracing::warn!(peer = %peer_text, "admin API: refused a change from a non-loopback peer without a token");
            return Err(Box::new(error_response(
                StatusCode::FORBIDDEN,
                "admin_token_required",
                "changes through the admin API need [admin] token_file unless the caller is on \
                 loopback",
            )));
        }
        Ok(ApiCaller {
            peer: peer_text,
            authenticated_by: if loopback { "loopback" } else { "none" },
        })
    }
}

fn peer_of(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
}

fn check_namespace(namespace: &str) -> Result<(), Box<Response>> {
    match Namespace::new(namespace) {
        Ok(_) => Ok(()),
        Err(error) => Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_namespace",
            &error.to_string(),
        ))),
    }
}

fn keyring_error(error: &KeyringError) -> Response {
    match error {
        KeyringError::NotConfigured(namespace) => error_response(
            StatusCode::NOT_FOUND,
            "namespace_not_configured",
            &format!("namespace {namespace:?} has no key configured"),
        ),
        KeyringError::TooManyNamespaces(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_namespaces",
            "too many namespaces in use",
        ),
        _ => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        ),
    }
}

async fn list_namespaces(State(api): State<Arc<AdminApi>>, request: Request) -> Response {
    if let Err(response) = api.authorize(request.headers(), peer_of(&request), false) {
        return *response;
    }
    json_response(StatusCode::OK, &namespaces(&api.keyring))
}

async fn one_namespace(
    State(api): State<Arc<AdminApi>>,
    Path(namespace): Path<String>,
    request: Request,
) -> Response {
    if let Err(response) = api.authorize(request.headers(), peer_of(&request), false) {
        return *response;
    }
    if let Err(response) = check_namespace(&namespace) {
        return *response;
    }
    match namespaces(&api.keyring)
        .namespaces
        .into_iter()
        .find(|usage| usage.namespace == namespace)
    {
        Some(usage) => json_response(StatusCode::OK, &usage),
        None => error_response(
            StatusCode::NOT_FOUND,
            "namespace_not_used",
            &format!("this process has not used namespace {namespace:?}"),
        ),
    }
}

async fn rotate_data_key(
    State(api): State<Arc<AdminApi>>,
    Path(namespace): Path<String>,
    request: Request,
) -> Response {
    data_key_route(&api, &namespace, &request, DataKeyOp::Rotate)
}

async fn forget_data_keys(
    State(api): State<Arc<AdminApi>>,
    Path(namespace): Path<String>,
    request: Request,
) -> Response {
    data_key_route(&api, &namespace, &request, DataKeyOp::Forget)
}

fn data_key_route(api: &AdminApi, namespace: &str, request: &Request, op: DataKeyOp) -> Response {
    let caller = match api.authorize(request.headers(), peer_of(request), true) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    if let Err(response) = check_namespace(namespace) {
        return *response;
    }
    match op.apply(&api.keyring, namespace, &caller) {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(error) => keyring_error(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(tokens_match(b"secret", b"secret"));
        assert!(!tokens_match(b"secret", b"secreT"));
        assert!(!tokens_match(b"secret", b"secret-longer"));
        assert!(!tokens_match(b"", b"secret"));
    }
}
