//! The one request pipeline every codec transport goes through: HTTP/1, HTTP/2 and gRPC parse
//! their input and render their output; everything else happens here, once, in this order:
//!
//! 1. **Admit the connection.** The listener ([`super::listener`]) bounds connections, and
//!    [`super::timed`] bounds how long a head (or an HTTP/2 preface) may take and how long a
//!    connection may idle.
//! 2. **Screen the request** ([`Pipeline::screen`]): on a listener that does not authenticate,
//!    a browser's `Origin` must be one the listener allows and `Host` must be a loopback name or
//!    one listed in `allowed_hosts` (DNS rebinding); `/encode` and `/decode` need
//!    `Content-Type: application/json`, so no cross-site "simple" request reaches them.
//! 3. **Authenticate** from headers or metadata and the TLS client certificate
//!    ([`Pipeline::authenticate`]). Nothing has been spent on the caller yet: no permit, no body.
//! 4. **Resolve the namespace** ([`namespace`]) and **authorize** it ([`Pipeline::authorize`]).
//!    gRPC carries the namespace inside its message, so there this step follows 6.
//! 5. **Take a permit** from the listener's pool and make sure the audit log has room
//!    ([`Pipeline::admit`]); a request that finds neither is answered 503 at once.
//! 6. **Read the body** under the request's deadline: the deadline starts when the permit is
//!    taken and covers the body and the codec, so a caller that trickles its body holds its
//!    permit for `request_timeout` at most.
//! 7. **Run the codec** under the same deadline ([`Pipeline::run`]).
//! 8. **Record** metrics and one audit line ([`Pipeline::finish`]), with one vocabulary for
//!    `result` on every transport: `ok`, the refusal's code, or for a failed authentication its
//!    reason (`token_expired`, `missing_credentials`, ...).
//!
//! Refusals are values ([`Refusal`]): their class decides the HTTP status and gRPC code through
//! the one table in [`super::error`], so a refusal reads the same on every transport.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::AppState;
use crate::audit;
use crate::auth::{AuthError, Authenticator, Authorizer, Credentials, Principal, Role};
use crate::codec::{CodecError, ErrorClass};
use crate::metrics::{Op, Transport};
use crate::namespace::Namespace;
use crate::payload::Payload;

pub use crate::codec::Operation;

/// The role an operation needs in its namespace: encode writes; decode and download read.
pub fn role(operation: Operation) -> Role {
    match operation {
        Operation::Encode => Role::Write,
        Operation::Decode { .. } | Operation::Download => Role::Read,
    }
}

fn metrics_op(operation: Operation) -> Op {
    match operation {
        Operation::Encode => Op::Encode,
        Operation::Decode { .. } => Op::Decode,
        Operation::Download => Op::Download,
    }
}

/// A request the pipeline turned down, ready for any transport to render.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The class, which decides the HTTP status and gRPC code.
    pub class: ErrorClass,
    /// The machine-readable code: the JSON error's `code` and the audit line's `result`.
    pub code: &'static str,
    /// The message for the caller (never a secret, never a provider's detail).
    pub message: String,
    /// Seconds after which a retry makes sense, for `Retry-After`.
    pub retry_after: Option<&'static str>,
    /// The `WWW-Authenticate` challenge of an authentication failure.
    pub challenge: Option<&'static str>,
    /// The audit line's `result` when it says more than `code` (why authentication failed:
    /// `token_expired`, `wrong_audience`, ...; the caller is told only `unauthenticated`).
    pub reason: &'static str,
}

impl Refusal {
    /// A refusal without retry hint or challenge.
    pub fn new(class: ErrorClass, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            code,
            message: message.into(),
            retry_after: None,
            challenge: None,
            reason: code,
        }
    }

    fn retry_after(mut self, seconds: &'static str) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The request took longer than its deadline (body and codec together).
    pub fn timeout() -> Self {
        Self::new(
            ErrorClass::Unavailable,
            "timeout",
            "the request took longer than the configured request timeout",
        )
    }

    /// The body did not arrive before the request's deadline.
    pub fn body_timeout() -> Self {
        Self::new(
            ErrorClass::SlowClient,
            "body_timeout",
            "the request body did not arrive within the request timeout",
        )
    }

    /// The body is larger than the listener accepts.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorClass::TooLarge,
            "body_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    fn from_auth(error: &AuthError) -> Self {
        let refusal = if error.is_unavailable() {
            Self::new(
                ErrorClass::Unavailable,
                "auth_unavailable",
                error.to_string(),
            )
            .retry_after("5")
        } else {
            Self {
                challenge: Some(error.www_authenticate()),
                ..Self::new(
                    ErrorClass::Unauthenticated,
                    "unauthenticated",
                    error.to_string(),
                )
            }
        };
        Self {
            reason: error.code(),
            ..refusal
        }
    }

    fn from_codec(operation: Operation, namespace: &str, error: &CodecError) -> Self {
        let class = error.class();
        match class {
            ErrorClass::Internal | ErrorClass::Unavailable => {
                tracing::warn!(op = operation.as_str(), namespace, %error, "codec request failed");
            }
            _ => {
                tracing::debug!(op = operation.as_str(), namespace, error = ?error, "codec request refused")
            }
        }
        Self::new(class, error.code(), error.public_message())
    }
}

/// One listener's place in the pipeline: who may call it, the pool its requests draw permits
/// from, and its limits.
#[derive(Debug, Clone)]
pub struct ListenerPolicy {
    /// The listener's name in the audit log (`worker`, `ui`, `grpc`).
    pub name: &'static str,
    /// Who may call it.
    pub authenticator: Arc<Authenticator>,
    /// What each caller may do.
    pub authorizer: Arc<Authorizer>,
    /// The permits its requests hold while their body is read and the codec runs. The worker
    /// listeners (HTTP and gRPC) share one pool; the UI listener has its own, so people in the
    /// Web UI cannot starve the workers.
    pub permits: Arc<Semaphore>,
    /// Longest a request may hold a permit: body and codec together.
    pub request_timeout: Duration,
    /// Largest request body in bytes.
    pub body_limit_bytes: usize,
    /// Browser origins allowed (CORS); `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Host names, besides loopback ones, that a listener without authentication answers.
    pub allowed_hosts: Vec<String>,
}

/// The pipeline for one listener.
#[derive(Debug, Clone)]
pub struct Pipeline {
    state: AppState,
    policy: Arc<ListenerPolicy>,
}

/// A request that was admitted: it holds a permit until it is dropped.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    /// When the permit was taken plus the request timeout: the body and the codec must be done
    /// by then.
    pub deadline: Instant,
}

/// What a finished request reports for metrics and the audit line.
#[derive(Debug)]
pub struct Report<'a> {
    /// The transport that served it.
    pub transport: Transport,
    /// The operation.
    pub operation: Operation,
    /// The request id.
    pub request_id: &'a str,
    /// The client's address, if known.
    pub client: Option<std::net::SocketAddr>,
    /// The principal, once authenticated.
    pub principal: Option<&'a str>,
    /// The namespace, once resolved.
    pub namespace: Option<&'a str>,
    /// Payloads in the request (0 when refused before the body).
    pub payloads: usize,
    /// Payload bytes in the request.
    pub bytes: usize,
    /// `Ok` or the refusal.
    pub result: Result<(), &'a Refusal>,
    /// When the request started.
    pub started: Instant,
}

/// Headers the screening step looks at, whatever the transport.
#[derive(Debug, Default, Clone, Copy)]
pub struct Screen<'a> {
    /// `Origin`, if sent.
    pub origin: Option<&'a str>,
    /// `Host` (HTTP/1) or `:authority` (HTTP/2), if sent.
    pub host: Option<&'a str>,
    /// `Content-Type`, if sent; `None` for transports that do not need the check (gRPC).
    pub content_type: Option<Option<&'a str>>,
}

impl Pipeline {
    /// The pipeline of one listener.
    pub fn new(state: AppState, policy: ListenerPolicy) -> Self {
        Self {
            state,
            policy: Arc::new(policy),
        }
    }

    /// What the transports share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// This listener's policy.
    pub fn policy(&self) -> &ListenerPolicy {
        &self.policy
    }

    /// Step 2: refuses, before anything is read or spent, what a browser could be tricked into
    /// sending to a listener that does not authenticate, and codec calls that are not JSON.
    pub fn screen(&self, screen: &Screen<'_>) -> Result<(), Refusal> {
        if let Some(content_type) = screen.content_type
            && !is_json(content_type)
        {
            return Err(Refusal::new(
                ErrorClass::UnsupportedMediaType,
                "unsupported_media_type",
                "send the payloads as Content-Type: application/json",
            ));
        }
        if !self.policy.authenticator.is_open() {
            // Authentication decides; a browser cannot attach credentials it does not have.
            return Ok(());
        }
        if let Some(origin) = screen.origin
            && !self
                .policy
                .allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
        {
            return Err(Refusal::new(
                ErrorClass::Forbidden,
                "origin_not_allowed",
                "this listener does not accept requests from that origin",
            ));
        }
        if let Some(host) = screen.host
            && !host_allowed(host, &self.policy.allowed_hosts)
        {
            return Err(Refusal::new(
                ErrorClass::Forbidden,
                "host_not_allowed",
                "this listener does not answer that Host; list it in allowed_hosts",
            ));
        }
        Ok(())
    }

    /// Step 3: who is calling.
    pub async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, Refusal> {
        let authenticator = &self.policy.authenticator;
        if authenticator.is_open() {
            return Ok(Principal::anonymous());
        }
        authenticator
            .authenticate(credentials)
            .await
            .map_err(|error| Refusal::from_auth(&error))
    }

    /// Step 4: may `principal` do `operation` in `namespace`?
    pub fn authorize(
        &self,
        principal: &Principal,
        namespace: &str,
        operation: Operation,
    ) -> Result<(), Refusal> {
        let role = role(operation);
        if self
            .policy
            .authorizer
            .permits(&self.policy.authenticator, principal, namespace, role)
        {
            return Ok(());
        }
        tracing::debug!(principal = %principal.id, namespace, %role, "codec request forbidden");
        Err(Refusal::new(
            ErrorClass::Forbidden,
            Authorizer::DENIED_CODE,
            format!(
                "not allowed to {} in this namespace (needs the {role} role)",
                operation.as_str()
            ),
        ))
    }

    /// Step 5: a permit from the listener's pool, if one is free and the audit log has room.
    pub fn admit(&self) -> Result<Admitted, Refusal> {
        if !self.state.audit.has_room() {
            self.state.metrics.audit_shed(self.policy.name);
            return Err(Refusal::new(
                ErrorClass::Unavailable,
                "audit_unavailable",
                "the audit log cannot keep up; retry shortly",
            )
            .retry_after("1"));
        }
        let permit = Arc::clone(&self.policy.permits)
            .try_acquire_owned()
            .map_err(|_| {
                Refusal::new(
                    ErrorClass::Unavailable,
                    "overloaded",
                    "too many requests in flight; retry shortly",
                )
                .retry_after("1")
            })?;
        Ok(Admitted {
            _permit: permit,
            deadline: Instant::now() + self.policy.request_timeout,
        })
    }

    /// Step 7: the codec, by the admitted request's deadline.
    pub async fn run(
        &self,
        admitted: &Admitted,
        operation: Operation,
        namespace: &str,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, Refusal> {
        let work = self.state.codec.call(operation, namespace, payloads);
        match tokio::time::timeout_at(admitted.deadline, work).await {
            Ok(result) => result.map_err(|error| Refusal::from_codec(operation, namespace, &error)),
            Err(_) => Err(Refusal::timeout()),
        }
    }

    /// Step 8: metrics and the audit line.
    pub fn finish(&self, report: &Report<'_>) {
        let elapsed = report.started.elapsed();
        let (class, result, status) = match report.result {
            Ok(()) => (Ok(()), "ok", 200),
            Err(refusal) => (
                Err(refusal.class),
                refusal.reason,
                super::error::http_status(refusal.class).as_u16(),
            ),
        };
        self.state.metrics.observe(
            report.transport,
            metrics_op(report.operation),
            class,
            report.payloads,
            report.bytes,
            elapsed,
        );
        self.state.audit.record(&audit::Record {
            listener: self.policy.name,
            request_id: report.request_id,
            client: report.client,
            principal: report.principal,
            namespace: report.namespace,
            op: report.operation.as_str(),
            payloads: report.payloads,
            bytes: report.bytes,
            status,
            result,
            duration: elapsed,
        });
    }
}

/// Step 4's first half: the namespace a request names, validated. `missing` is the
/// transport's own hint for where to name it.
pub fn namespace(candidate: Option<&str>, missing: &str) -> Result<String, Refusal> {
    match candidate.map(str::trim) {
        None | Some("") => Err(Refusal::new(
            ErrorClass::InvalidInput,
            "missing_namespace",
            missing,
        )),
        Some(name) => Namespace::new(name)
            .map(Namespace::into_string)
            .map_err(|error| {
                Refusal::new(
                    ErrorClass::InvalidInput,
                    "invalid_namespace",
                    error.to_string(),
                )
            }),
    }
}

/// Whether a `Content-Type` names JSON (`application/json`, any parameters).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Whether `host` (a `Host` header or `:authority`, port optional) is a loopback name or
/// address, or one of `allowed` (`*` allows any).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host);
    if name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
    {
        return true;
    }
    allowed
        .iter()
        .any(|entry| entry == "*" || strip_port(entry).eq_ignore_ascii_case(name))
}

/// `host` without a `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_listed_names_are_allowed() {
        let listed = vec!["kmscodec.workers.svc".to_owned()];
        for host in [
            "localhost",
            "localhost:8089",
            "LOCALHOST",
            "app.localhost:1",
            "127.0.0.1",
            "127.0.0.2:8089",
            "[::1]:8089",
            "[::1]",
            "kmscodec.workers.svc:8089",
        ] {
            assert!(host_allowed(host, &listed), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8089",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "[fe80::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(host, &listed), "{host}");
        }
        assert!(host_allowed("anything", &["*".to_owned()]));
    }

    #[test]
    fn only_json_content_types_pass() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
        assert!(!is_json(Some("multipart/form-data; boundary=x")));
        assert!(!is_json(None));
    }

    #[test]
    fn namespaces_are_checked_once() {
        assert_eq!(
            namespace(Some(" orders "), "hint").ok().as_deref(),
            Some("orders")
        );
        assert_eq!(
            namespace(None, "hint").err().map(|r| r.code),
            Some("missing_namespace")
        );
        assert_eq!(
            namespace(Some(""), "hint").err().map(|r| r.message),
            Some("hint".to_owned())
        );
        assert_eq!(
            namespace(Some("a/b"), "hint").err().map(|r| r.code),
            Some("invalid_namespace")
        );
    }
}
