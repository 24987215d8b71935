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
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::AppState;
use super::error::http_status;
use super::listener::{Handler, Peer};
use crate::audit;
use crate::auth::{AuthError, Authenticator, Authorizer, Credentials, Principal, Role};
use crate::codec::{self, CodecError, ErrorClass};
use crate::config::{CorsConfig, valid_namespace};
use crate::metrics::{Op, Transport};
use crate::payload;

/// The header the CLI and the Web UI name the namespace in.
pub const NAMESPACE_HEADER: &str = "x-namespace";
/// The request id header: taken from the caller when sane, always returned.
const REQUEST_ID_HEADER: &str = "x-request-id";
/// Request headers the Web UI sends cross-origin.
const ALLOWED_HEADERS: &str =
    "Content-Type, X-Namespace, Authorization, Authorization-Extras, X-Request-Id";

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Take the namespace from the path when `X-Namespace` is absent.
    pub namespace_from_path: bool,
    /// Longest a codec call may take.
    pub request_timeout: Duration,
    /// CORS.
    pub cors: CorsConfig,
    /// The listener's name in the audit log (`worker`, `ui`).
    pub listener: &'static str,
    /// A cookie whose value is a bearer token, for browsers that send credentials as cookies.
    pub token_cookie: Option<String>,
    /// Who may call this listener.
    pub authenticator: Arc<Authenticator>,
    /// What each caller may do.
    pub authorizer: Arc<Authorizer>,
}

struct Http {
    state: AppState,
    options: HttpOptions,
}

/// What one codec request produced, for the response, the metrics and the audit log.
struct Outcome {
    response: Response,
    result: Result<(), ErrorClass>,
    /// `ok` or the error code answered.
    code: &'static str,
    payloads: usize,
    bytes: usize,
    namespace: Option<String>,
    principal: Option<String>,
}

impl Outcome {
    fn refused(response: Response, class: ErrorClass, code: &'static str) -> Self {
        Self {
            response,
            result: Err(class),
            code,
            payloads: 0,
            bytes: 0,
            namespace: None,
            principal: None,
        }
    }
}

/// The codec router. Every route is handled by one function so that path matching follows the
/// protocol (final segment only), not a route table.
pub fn router(state: AppState, options: HttpOptions) -> Router {
    let http = Arc::new(Http { state, options });
    Router::new().fallback(handle).with_state(http)
}

/// The codec service for the listener's accept loop: what [`router`] serves, without the
/// router's per-request boxing, and with the peer passed along rather than looked up.
#[derive(Clone)]
pub struct CodecHandler(Arc<Http>);

/// The codec service for [`super::listener::serve`].
pub fn handler(state: AppState, options: HttpOptions) -> CodecHandler {
    CodecHandler(Arc::new(Http { state, options }))
}

impl Handler for CodecHandler {
    fn call(
        &self,
        request: http::Request<hyper::body::Incoming>,
        peer: Option<Peer>,
    ) -> impl Future<Output = Response> + Send + 'static + use<> {
        let http = Arc::clone(&self.0);
        // Boxed: the request's future is a few kilobytes of state, which hyper would otherwise
        // copy on every move (measured: about 1% of a 1 KiB request's CPU time in memcpy).
        Box::pin(async move { answer(&http, request.map(Body::new), peer.as_ref()).await })
    }
}

use codec::Operation;

/// `preserveStorageRefs=true` (the value case-insensitive) in the query string.
fn preserve_storage_refs(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query.split('&').any(|pair| {
            pair.split_once('=').is_some_and(|(name, value)| {
                name == "preserveStorageRefs" && value.eq_ignore_ascii_case("true")
            })
        })
    })
}

async fn handle(State(http): State<Arc<Http>>, request: Request) -> Response {
    let peer = request.extensions().get::<Peer>().cloned();
    answer(&http, request, peer.as_ref()).await
}

async fn answer(http: &Http, request: Request, peer: Option<&Peer>) -> Response {
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
    payload::write_json_string(code, &mut body);
    body.extend_from_slice(b",\"message\":");
    payload::write_json_string(message, &mut body);
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

fn codec_error_response(operation: Operation, namespace: &str, error: &CodecError) -> Response {
    let class = error.class();
    match class {
        ErrorClass::Internal | ErrorClass::Unavailable => {
            tracing::warn!(op = operation.as_str(), namespace, %error, "codec request failed");
        }
        _ => {
            tracing::debug!(op = operation.as_str(), namespace, error = ?error, "codec request refused")
        }
    }
    error_response(http_status(class), error.code(), &error.public_message())
}

impl Http {
    async fn route(&self, request: Request, peer: Option<&Peer>) -> Response {
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
                return match *request.method() {
                    Method::GET | Method::HEAD => match self.state.readiness.reason() {
                        None => text_response(StatusCode::OK, "ready\n".to_owned()),
                        Some(reason) => text_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {reason}\n"),
                        ),
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
        let client = peer.map(|peer| peer.address);
        // Load shedding: a request over the limit is refused at once, before its body is read.
        let outcome = match Arc::clone(&self.state.in_flight).try_acquire_owned() {
            Ok(permit) => {
                let outcome = self.codec(operation, prefix, request, peer).await;
                drop(permit);
                outcome
            }
            Err(_) => {
                discard_body(request.into_body(), self.options.body_limit_bytes).await;
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many requests in flight; retry shortly",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Outcome::refused(response, ErrorClass::Unavailable, "overloaded")
            }
        };
        let op = match operation {
            Operation::Encode => Op::Encode,
            Operation::Decode { .. } => Op::Decode,
            Operation::Download => Op::Download,
        };
        let elapsed = started.elapsed();
        self.state.metrics.observe(
            Transport::Http,
            op,
            outcome.result,
            outcome.payloads,
            outcome.bytes,
            elapsed,
        );
        let mut response = outcome.response;
        self.state.audit.record(&audit::Record {
            listener: self.options.listener,
            request_id: &request_id,
            client,
            principal: outcome.principal.as_deref(),
            namespace: outcome.namespace.as_deref(),
            op: operation.as_str(),
            payloads: outcome.payloads,
            bytes: outcome.bytes,
            status: response.status().as_u16(),
            result: outcome.code,
            duration: elapsed,
        });
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }

    /// Serves one encode or decode: namespace, body, parse, codec, answer.
    async fn codec(
        &self,
        operation: Operation,
        prefix: &str,
        request: Request,
        peer: Option<&Peer>,
    ) -> Outcome {
        // Who is calling, before anything else is looked at: an unauthenticated caller learns
        // nothing about namespaces and makes the server buffer nothing.
        let principal = match self.authenticate(request.headers(), peer).await {
            Ok(principal) => principal,
            Err(error) => {
                discard_body(request.into_body(), self.options.body_limit_bytes).await;
                return auth_refused(&error);
            }
        };
        let namespace = match self.namespace(request.headers(), prefix) {
            Ok(namespace) => namespace,
            Err((response, code)) => {
                return Outcome {
                    principal: Some(principal.id),
                    ..Outcome::refused(*response, ErrorClass::InvalidInput, code)
                };
            }
        };
        let role = match operation {
            Operation::Encode => Role::Write,
            Operation::Decode { .. } | Operation::Download => Role::Read,
        };
        if !self.options.authorizer.permits(
            &self.options.authenticator,
            &principal,
            &namespace,
            role,
        ) {
            tracing::debug!(principal = %principal.id, namespace, %role, "codec request forbidden");
            discard_body(request.into_body(), self.options.body_limit_bytes).await;
            return Outcome {
                principal: Some(principal.id),
                namespace: Some(namespace),
                ..Outcome::refused(
                    error_response(
                        StatusCode::FORBIDDEN,
                        Authorizer::DENIED_CODE,
                        &format!(
                            "not allowed to {} in this namespace (needs the {role} role)",
                            operation.as_str()
                        ),
                    ),
                    ErrorClass::Forbidden,
                    Authorizer::DENIED_CODE,
                )
            };
        }
        let principal = Some(principal.id);
        let refused = |response, class, code| Outcome {
            namespace: Some(namespace.clone()),
            principal: principal.clone(),
            ..Outcome::refused(response, class, code)
        };
        let limit = self.options.body_limit_bytes;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return refused(too_large(limit), ErrorClass::TooLarge, "body_too_large");
        }
        let body = match to_bytes(request.into_body(), limit).await {
            Ok(body) => body,
            Err(error) => {
                let too_big = std::error::Error::source(&error)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
                return if too_big {
                    refused(too_large(limit), ErrorClass::TooLarge, "body_too_large")
                } else {
                    refused(
                        error_response(
                            StatusCode::BAD_REQUEST,
                            "bad_body",
                            "could not read the request body",
                        ),
                        ErrorClass::InvalidInput,
                        "bad_body",
                    )
                };
            }
        };
        let payloads = match payload::from_json(&body) {
            Ok(payloads) => payloads,
            Err(error) => {
                return refused(
                    error_response(
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        &format!("body is not a valid Payloads JSON document: {error}"),
                    ),
                    ErrorClass::InvalidInput,
                    "invalid_json",
                );
            }
        };
        drop(body);
        let count = payloads.len();
        let bytes = payloads.iter().map(payload::Payload::size).sum();
        let codec = &self.state.codec;
        let work = codec.call(operation, &namespace, payloads);
        let result = match tokio::time::timeout(self.options.request_timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                return Outcome {
                    response: error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the request took longer than the configured request timeout",
                    ),
                    result: Err(ErrorClass::Unavailable),
                    code: "timeout",
                    payloads: count,
                    bytes,
                    namespace: Some(namespace),
                    principal,
                };
            }
        };
        match result {
            Ok(payloads) => {
                let mut out = Vec::new();
                payload::to_json(&payloads, &mut out);
                let mut response = Response::new(Body::from(out));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Outcome {
                    response,
                    result: Ok(()),
                    code: "ok",
                    payloads: count,
                    bytes,
                    namespace: Some(namespace),
                    principal,
                }
            }
            Err(error) => Outcome {
                response: codec_error_response(operation, &namespace, &error),
                result: Err(error.class()),
                code: error.code(),
                payloads: count,
                bytes,
                namespace: Some(namespace),
                principal,
            },
        }
    }

    /// Authenticates a request with this listener's methods: `Authorization` (and the Web UI's
    /// `Authorization-Extras`), else the token cookie, and the TLS client certificate's names.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&Peer>,
    ) -> Result<Principal, AuthError> {
        let authenticator = &self.options.authenticator;
        if authenticator.is_open() {
            return Ok(Principal::anonymous());
        }
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let authorization = text("authorization");
        let extras = text("authorization-extras");
        let cookie = match (&self.options.token_cookie, authorization) {
            (Some(name), None) => cookie_value(headers, name),
            _ => None,
        };
        let names: &[String] = peer.map(|peer| &peer.client_cert_names[..]).unwrap_or(&[]);
        let credentials = Credentials {
            authorization,
            authorization_extras: extras,
            cookie_token: cookie.as_deref(),
            client_cert_names: names,
        };
        authenticator.authenticate(&credentials).await
    }

    fn namespace(
        &self,
        headers: &HeaderMap,
        prefix: &str,
    ) -> Result<String, (Box<Response>, &'static str)> {
        let from_header = headers
            .get(NAMESPACE_HEADER)
            .map(|value| value.to_str().map(str::trim));
        let candidate = match from_header {
            Some(Ok(name)) if !name.is_empty() => name.to_owned(),
            Some(Err(_)) => {
                return Err((
                    Box::new(error_response(
                        StatusCode::BAD_REQUEST,
                        "invalid_namespace",
                        "X-Namespace is not valid text",
                    )),
                    "invalid_namespace",
                ));
            }
            _ => {
                let segment = prefix.rsplit('/').next().unwrap_or("");
                if self.options.namespace_from_path && !segment.is_empty() {
                    segment.to_owned()
                } else {
                    return Err((
                        Box::new(error_response(
                            StatusCode::BAD_REQUEST,
                            "missing_namespace",
                            "name the namespace in the X-Namespace header (or as the path segment before encode/decode)",
                        )),
                        "missing_namespace",
                    ));
                }
            }
        };
        if !valid_namespace(&candidate) {
            return Err((
                Box::new(error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_namespace",
                    "namespace must be 1-255 printable characters without spaces or '/'",
                )),
                "invalid_namespace",
            ));
        }
        Ok(candidate)
    }
}

/// How long a refused request's body is read and thrown away before the answer is sent.
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Reads and drops a refused request's body (up to `limit` bytes and [`DISCARD_TIME`]), holding
/// no more than one chunk at a time. Answering while the client is still sending and then
/// closing would make the kernel reset the connection, and the client would see a broken pipe
/// instead of the 401 or 503 it was sent.
async fn discard_body(body: Body, limit: usize) {
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
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// The answer to a request that did not authenticate: 401 with `WWW-Authenticate`, or 503
/// when the issuer's signing keys could not be fetched.
fn auth_refused(error: &AuthError) -> Outcome {
    if error.is_unavailable() {
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            &error.to_string(),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Outcome::refused(response, ErrorClass::Unavailable, error.code());
    }
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        &error.to_string(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(error.www_authenticate()),
    );
    Outcome::refused(response, ErrorClass::Unauthenticated, error.code())
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

fn too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("request body exceeds the limit of {limit} bytes"),
    )
}
