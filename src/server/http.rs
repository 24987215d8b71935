//! The Temporal Codec Server HTTP protocol, as the Temporal CLI, Web UI and SDK codecs use it.
//!
//! Routes (see `docs/configuration.md` for every status code):
//!
//! * `POST …/encode`, `POST …/decode` under any path prefix, query string ignored. The namespace
//!   comes from `X-Namespace`, else (when enabled) from the path segment before `encode`/`decode`
//!   (`/{namespace}/decode`, as the CLI's `{namespace}` substitution produces).
//! * `OPTIONS` on any path: a CORS preflight, answered for allowed origins only.
//! * `POST …/download`: resolve External Storage references (`crate::storage`); 404 when no
//!   storage is configured. `…/decode?preserveStorageRefs=true` returns references unchanged.
//! * `GET /healthz` (liveness: the process answers) and `GET /readyz` (key providers reachable,
//!   not draining).
//!
//! CORS headers are added to every response for an allowed origin, errors included, so the
//! browser shows the UI the real status instead of a network error.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};
use tokio::time::Instant;

use super::AppState;
use super::error::http_status;
use super::listener::{Handler, Peer};
use super::pipeline::{self, Operation, Pipeline, Refusal, Report, Screen};
use crate::audit;
use crate::auth::{Credentials, Principal};
use crate::metrics::Transport;
use crate::payload;

/// CORS for the Web UI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsConfig {
    /// Exact origins allowed (`https://temporal.example.com`); `*` allows any origin.
    pub allowed_origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (the UI's "include cross-origin credentials").
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    pub max_age: Duration,
}

/// The header the CLI and the Web UI name the namespace in.
pub const NAMESPACE_HEADER: &str = "x-namespace";
/// The request id header: taken from the caller when sane, always returned.
const REQUEST_ID_HEADER: &str = "x-request-id";
/// Request headers the Web UI sends cross-origin.
const ALLOWED_HEADERS: &str =
    "Content-Type, X-Namespace, Authorization, Authorization-Extras, X-Request-Id";
/// Where the namespace goes, for a request that named none.
const MISSING_NAMESPACE: &str =
    "name the namespace in the X-Namespace header (or as the path segment before encode/decode)";

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Take the namespace from the path when `X-Namespace` is absent.
    pub namespace_from_path: bool,
    /// CORS.
    pub cors: CorsConfig,
    /// A cookie whose value is a bearer token, for browsers that send credentials as cookies.
    pub token_cookie: Option<String>,
    /// The listener's place in the request pipeline: authentication, permits, limits.
    pub policy: pipeline::ListenerPolicy,
}

struct Http {
    pipeline: Pipeline,
    options: HttpOptions,
}

/// The codec service for [`super::listener::serve`], and for tests that drive it in process
/// through [`Handler::call`]: the one entry point production serves.
#[derive(Clone)]
pub struct CodecHandler(Arc<Http>);

/// The codec service of one HTTP listener.
pub fn handler(state: AppState, options: HttpOptions) -> CodecHandler {
    let pipeline = Pipeline::new(state, options.policy.clone());
    CodecHandler(Arc::new(Http { pipeline, options }))
}

impl Handler for CodecHandler {
    fn call(
        &self,
        request: Request<Body>,
        peer: Option<Peer>,
    ) -> impl Future<Output = Response> + Send + 'static + use<> {
        let http = Arc::clone(&self.0);
        // Boxed: the request's future is a few kilobytes of state, which hyper would otherwise
        // copy on every move (measured: about 1% of a 1 KiB request's CPU time in memcpy).
        Box::pin(async move { answer(&http, request, peer.as_ref()).await })
    }
}

async fn answer(http: &Http, request: Request<Body>, peer: Option<&Peer>) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let preflight = request.method() == Method::OPTIONS;
    let mut response = http.route(request, peer).await;
    apply_cors(
        &http.options.cors,
        origin.as_ref(),
        preflight,
        response.headers_mut(),
    );
    response
}

/// Adds CORS headers for an allowed origin; nothing for any other origin.
fn apply_cors(
    cors: &CorsConfig,
    origin: Option<&HeaderValue>,
    preflight: bool,
    headers: &mut HeaderMap,
) {
    let Some(origin) = origin else { return };
    let Ok(origin_text) = origin.to_str() else {
        return;
    };
    let allowed = cors
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin_text));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if !allowed {
        return;
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if cors.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        if let Ok(age) = HeaderValue::from_str(&cors.max_age.as_secs().to_string()) {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, age);
        }
    }
}

/// A JSON error body: `{"code": "...", "message": "..."}`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let mut body = Vec::with_capacity(message.len() + code.len() + 32);
    body.extend_from_slice(b"{\"code\":");
    crate::json::write_json_string(code, &mut body);
    body.extend_from_slice(b",\"message\":");
    crate::json::write_json_string(message, &mut body);
    body.push(b'}');
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text_response(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The response for a refusal: the JSON error, `Retry-After` and `WWW-Authenticate` when the
/// refusal carries them.
fn refusal_response(refusal: &Refusal) -> Response {
    let mut response = error_response(http_status(refusal.class), refusal.code, &refusal.message);
    let headers = response.headers_mut();
    if let Some(seconds) = refusal.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    if let Some(challenge) = refusal.challenge {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

/// What the pipeline learned about a request, for its report.
#[derive(Default)]
struct Seen {
    principal: Option<Principal>,
    namespace: Option<String>,
    payloads: usize,
    bytes: usize,
    /// The whole body was read: the connection can serve the next request after a refusal.
    body_read: bool,
}

impl Http {
    async fn route(&self, request: Request<Body>, peer: Option<&Peer>) -> Response {
        // A clone of the URI shares its bytes (no copy); the path outlives the request's move.
        let uri = request.uri().clone();
        let path = uri.path();
        match path {
            "/healthz" | "/livez" => {
                return match *request.method() {
                    Method::GET | Method::HEAD => text_response(StatusCode::OK, "ok\n".to_owned()),
                    _ => method_not_allowed("GET"),
                };
            }
            "/readyz" => {
                // The reason (a provider's error) is for operators: the admin listener and the
                // log say it; a codec caller learns only the state.
                return match *request.method() {
                    Method::GET | Method::HEAD => match self.pipeline.state().readiness.reason() {
                        None => text_response(StatusCode::OK, "ready\n".to_owned()),
                        Some(_) => {
                            text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned())
                        }
                    },
                    _ => method_not_allowed("GET"),
                };
            }
            _ => {}
        }
        let trimmed = path.trim_end_matches('/');
        let (prefix, last) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        let operation = match last {
            "encode" => Operation::Encode,
            "decode" => Operation::Decode {
                preserve_storage_refs: preserve_storage_refs(uri.query()),
            },
            "download" => Operation::Download,
            _ => {
                if request.method() == Method::OPTIONS {
                    return empty(StatusCode::NO_CONTENT);
                }
                return error_response(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route; use POST …/encode or …/decode",
                );
            }
        };
        if request.method() == Method::OPTIONS {
            return empty(StatusCode::NO_CONTENT);
        }
        if request.method() != Method::POST {
            return method_not_allowed("POST, OPTIONS");
        }
        let started = Instant::now();
        let request_id = audit::request_id(
            request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok()),
        );
        let http1 = request.version() <= Version::HTTP_11;
        let mut seen = Seen::default();
        let result = self
            .codec(operation, prefix, request, peer, &mut seen)
            .await;
        let refusal = result.as_ref().err();
        self.pipeline.finish(&Report {
            transport: Transport::Http,
            operation,
            request_id: &request_id,
            client: peer.map(|peer| peer.address),
            principal: seen.principal.as_ref().map(|p| p.id.as_str()),
            namespace: seen.namespace.as_deref(),
            payloads: seen.payloads,
            bytes: seen.bytes,
            result: refusal.map_or(Ok(()), Err),
            started,
        });
        let mut response = match result {
            Ok(response) => response,
            Err(refusal) => {
                let mut response = refusal_response(&refusal);
                // A refused request's connection is not reused: whatever the client still
                // sends of its body is not read, and the next request starts afresh.
                if http1 && !seen.body_read {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }

    /// One encode or decode, through the pipeline's steps in order (see [`pipeline`]).
    async fn codec(
        &self,
        operation: Operation,
        prefix: &str,
        request: Request<Body>,
        peer: Option<&Peer>,
        seen: &mut Seen,
    ) -> Result<Response, Refusal> {
        let pipeline = &self.pipeline;
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let screened = pipeline.screen(&Screen {
            origin: text(header::ORIGIN),
            host: parts
                .uri
                .authority()
                .map(|authority| authority.as_str())
                .or_else(|| text(header::HOST)),
            content_type: Some(text(header::CONTENT_TYPE)),
        });
        if let Err(refusal) = screened {
            linger(body, pipeline.policy().body_limit_bytes).await;
            return Err(refusal);
        }
        let cookie = self.cookie_token(headers);
        let principal = match pipeline
            .authenticate(&credentials(headers, peer, cookie.as_deref()))
            .await
        {
            Ok(principal) => seen.principal.insert(principal),
            Err(refusal) => {
                linger(body, pipeline.policy().body_limit_bytes).await;
                return Err(refusal);
            }
        };
        let namespace = match self.namespace(headers, prefix) {
            Ok(namespace) => seen.namespace.insert(namespace),
            Err(refusal) => {
                linger(body, pipeline.policy().body_limit_bytes).await;
                return Err(refusal);
            }
        };
        let admitted = match pipeline
            .authorize(principal, namespace, operation)
            .and_then(|()| pipeline.admit())
        {
            Ok(admitted) => admitted,
            Err(refusal) => {
                linger(body, pipeline.policy().body_limit_bytes).await;
                return Err(refusal);
            }
        };
        let limit = pipeline.policy().body_limit_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(Refusal::too_large(limit));
        }
        let body = match tokio::time::timeout_at(admitted.deadline, to_bytes(body, limit)).await {
            Ok(Ok(body)) => {
                seen.body_read = true;
                body
            }
            Ok(Err(error)) => {
                let too_big = std::error::Error::source(&error)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
                return Err(if too_big {
                    Refusal::too_large(limit)
                } else {
                    Refusal::new(
                        crate::codec::ErrorClass::InvalidInput,
                        "bad_body",
                        "could not read the request body",
                    )
                });
            }
            Err(_) => return Err(Refusal::body_timeout()),
        };
        let payloads = payload::from_json(&body).map_err(|error| {
            Refusal::new(
                crate::codec::ErrorClass::InvalidInput,
                "invalid_json",
                format!("body is not a valid Payloads JSON document: {error}"),
            )
        })?;
        drop(body);
        seen.payloads = payloads.len();
        seen.bytes = payloads.iter().map(payload::Payload::size).sum();
        let payloads = pipeline
            .run(&admitted, operation, namespace, payloads)
            .await?;
        drop(admitted);
        let mut out = Vec::new();
        payload::to_json(&payloads, &mut out);
        let mut response = Response::new(Body::from(out));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }

    /// The token cookie's value, when this listener takes one and no `Authorization` was sent.
    fn cookie_token(&self, headers: &HeaderMap) -> Option<String> {
        match &self.options.token_cookie {
            Some(name) if !headers.contains_key(header::AUTHORIZATION) => {
                cookie_value(headers, name)
            }
            _ => None,
        }
    }

    /// The namespace from `X-Namespace`, else (when enabled) the path segment before
    /// `encode`/`decode`.
    fn namespace(&self, headers: &HeaderMap, prefix: &str) -> Result<String, Refusal> {
        let candidate = match headers.get(NAMESPACE_HEADER).map(|value| value.to_str()) {
            Some(Ok(name)) if !name.trim().is_empty() => Some(name),
            Some(Err(_)) => {
                return Err(Refusal::new(
                    crate::codec::ErrorClass::InvalidInput,
                    "invalid_namespace",
                    "X-Namespace is not valid text",
                ));
            }
            _ => Some(prefix.rsplit('/').next().unwrap_or(""))
                .filter(|segment| self.options.namespace_from_path && !segment.is_empty()),
        };
        pipeline::namespace(candidate, MISSING_NAMESPACE)
    }
}

/// `preserveStorageRefs=true` (the value case-insensitive) in the query string: what the Web UI
/// sends on every decode.
fn preserve_storage_refs(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query.split('&').any(|pair| {
            pair.split_once('=').is_some_and(|(name, value)| {
                name == "preserveStorageRefs" && value.eq_ignore_ascii_case("true")
            })
        })
    })
}

/// The credentials a request carries: `Authorization` (and the Web UI's
/// `Authorization-Extras`), the token cookie, and the TLS client certificate's names.
fn credentials<'a>(
    headers: &'a HeaderMap,
    peer: Option<&'a Peer>,
    cookie_token: Option<&'a str>,
) -> Credentials<'a> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    Credentials {
        authorization: text("authorization"),
        authorization_extras: text("authorization-extras"),
        cookie_token,
        client_cert_names: peer.map(|peer| &peer.client_cert_names[..]).unwrap_or(&[]),
    }
}

/// How long, at most, a refused request's body is read (and thrown away) before the answer is
/// sent.
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Reads and drops a refused request's body, one chunk at a time, for at most [`LINGER_TIME`]
/// and `limit` bytes, then answers (and the connection closes). Answering while a client is
/// still mid-send and closing at once would make the kernel reset the connection, and the
/// client would see a broken pipe instead of its 401 or 503; a client too slow to finish within
/// the linger gets the answer and the close all the same. The refusal holds no permit and no
/// buffer meanwhile.
async fn linger(body: Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > limit {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// The value of cookie `name` from the `Cookie` headers, without surrounding quotes.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .filter(|value| !value.is_empty())
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}
