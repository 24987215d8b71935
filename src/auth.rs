//! Authentication of codec callers and per-namespace authorization, for the HTTP and gRPC
//! transports.
//!
//! This module owns *who is calling* ([`Authenticator`] turns [`Credentials`] into a
//! [`Principal`]) and *what they may do* ([`Authorizer`]: read = decode, write = encode, per
//! namespace). It never sees a request or a payload, never touches keys, and never logs or
//! echoes a credential: errors carry a stable code and a generic message only.
//!
//! Methods, tried in the listener's configured order (see `docs/authentication.md`):
//!
//! * `token`: static bearer tokens from files, stored as SHA-256 digests, compared in constant
//!   time, reloaded when the files change (`token.rs`);
//! * `jwt`: OIDC access tokens checked against the issuer's JWKS (`jwt.rs`, `jwks.rs`), plus the
//!   Web UI's ID token in `Authorization-Extras` for email and groups;
//! * `mtls`: the names of a client certificate the TLS layer already verified.
//!
//! A listener with no method is open: every caller is [`Principal::anonymous`] and the
//! transport skips authorization. A credential that is present but wrong is an error: it never
//! falls back to another method or to anonymous.

use std::fmt;
use std::path::PathBuf;

mod authz;
mod jwks;
mod jwt;
mod settings;
mod token;

pub use authz::Authorizer;
pub use jwks::{
    FETCH_TIMEOUT as JWKS_FETCH_TIMEOUT, MIN_REFETCH_INTERVAL as JWKS_MIN_REFETCH_INTERVAL,
};
pub use settings::{
    AuthConfig, AuthzConfig, DEFAULT_EMAIL_CLAIM, DEFAULT_GROUPS_CLAIM, DEFAULT_JWKS_REFRESH,
    DEFAULT_LEEWAY, JwksSource, JwtAlgorithm, JwtConfig, MAX_LEEWAY, MIN_JWKS_REFRESH,
    PRINCIPAL_KINDS, Rule, TokenConfig, valid_token_name,
};
pub use token::CHECK_INTERVAL as TOKEN_FILE_CHECK_INTERVAL;

/// An authentication method a listener may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Static bearer tokens (`[auth.tokens.<name>]`).
    Token,
    /// JWT bearer tokens from an OIDC issuer (`[auth.jwt]`).
    Jwt,
    /// TLS client certificates, verified by the listener.
    Mtls,
}

impl Method {
    /// The configuration name (`"token"`, `"jwt"`, `"mtls"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Jwt => "jwt",
            Self::Mtls => "mtls",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "token" => Some(Self::Token),
            "jwt" => Some(Self::Jwt),
            "mtls" => Some(Self::Mtls),
            _ => None,
        }
    }

    fn is_bearer(self) -> bool {
        matches!(self, Self::Token | Self::Jwt)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller wants to do in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Decode: open sealed payloads.
    Read,
    /// Encode: seal payloads.
    Write,
}

impl Role {
    /// The configuration name (`"read"`, `"write"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who called: the names a caller is known by, for authorization and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The main name: `token:oncall`, `sub:abc`, `cert:worker-a`, or `anonymous`.
    pub id: String,
    /// Every name a rule may match (`token:`, `sub:`, `email:`, `group:`, `cert:`), `id` first.
    /// Empty for the anonymous principal.
    pub names: Vec<String>,
    /// The method that authenticated it; `None` when anonymous.
    pub method: Option<Method>,
}

impl Principal {
    /// The id of the caller of an open listener.
    pub const ANONYMOUS: &'static str = "anonymous";

    /// The caller of an open listener.
    pub fn anonymous() -> Self {
        Self {
            id: Self::ANONYMOUS.to_owned(),
            names: Vec::new(),
            method: None,
        }
    }

    /// Is this the caller of an open listener?
    pub fn is_anonymous(&self) -> bool {
        self.method.is_none()
    }
}

/// What a request presented, as the transport extracted it. `Debug` shows which credentials
/// are present, never their values.
#[derive(Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header value, verbatim (`Bearer <token>`).
    pub authorization: Option<&'a str>,
    /// The Web UI's `Authorization-Extras`: an OIDC ID token, with or without `Bearer `.
    pub authorization_extras: Option<&'a str>,
    /// A bearer token the transport took from a cookie; used when `authorization` is absent.
    pub cookie_token: Option<&'a str>,
    /// Names from a client certificate the TLS layer verified (CN, DNS SANs); empty if none.
    pub client_cert_names: &'a [String],
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .field(
                "authorization_extras",
                &self.authorization_extras.map(|_| "<redacted>"),
            )
            .field("cookie_token", &self.cookie_token.map(|_| "<redacted>"))
            .field("client_cert_names", &self.client_cert_names)
            .finish()
    }
}

/// Why a caller is not authenticated. Every variant answers 401 (gRPC `UNAUTHENTICATED`)
/// except [`AuthError::KeysUnavailable`], a server-side failure (503, `UNAVAILABLE`). The
/// `Display` text is the public message: generic, never containing the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential for any of the listener's methods.
    #[error("authentication required")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("malformed credentials: expected \"Authorization: Bearer <token>\"")]
    Malformed,
    /// An unknown token, a bad signature, an undecodable or unacceptable JWT (algorithm, key,
    /// missing claims).
    #[error("invalid credentials")]
    Invalid,
    /// A JWT past its `exp` (plus leeway).
    #[error("token expired")]
    Expired,
    /// A JWT before its `nbf` or `iat` (minus leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// A correctly signed JWT from another issuer.
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// A correctly signed JWT for another audience.
    #[error("token audience not accepted")]
    WrongAudience,
    /// The issuer's signing keys could not be fetched and none are cached.
    #[error("token signing keys unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// A stable snake_case code, for JSON error bodies, metrics and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credentials",
            Self::Malformed => "malformed_credentials",
            Self::Invalid => "invalid_credentials",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// Is this kmscodec's failure rather than the caller's (503 / `UNAVAILABLE`, not 401)?
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable)
    }

    /// The `WWW-Authenticate` value of a 401 answer (RFC 6750 section 3).
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            Self::Missing | Self::KeysUnavailable => "Bearer realm=\"kmscodec\"",
            Self::Malformed => "Bearer realm=\"kmscodec\", error=\"invalid_request\"",
            _ => "Bearer realm=\"kmscodec\", error=\"invalid_token\"",
        }
    }
}

/// Why an [`Authenticator`] could not be built (at startup).
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A listener names a method `[auth]` does not configure.
    #[error("authentication method \"{0}\" is not configured in [auth]")]
    NotConfigured(Method),
    /// A token file is unusable.
    #[error("{principal}: token file {}: {message}", path.display())]
    TokenFile {
        /// `token:<name>`.
        principal: String,
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's content).
        message: String,
    },
    /// The `jwks_file` is unusable.
    #[error("auth.jwt.jwks_file {}: {message}", path.display())]
    JwksFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client for `jwks_url` could not be built.
    #[error("JWKS HTTP client: {0}")]
    HttpClient(String),
    /// No JWT crypto backend is available (a build problem).
    #[error("no JWT crypto provider is available")]
    CryptoProvider,
}

/// Authenticates the callers of one listener. Built once at startup; cheap to share (`Arc`).
pub struct Authenticator {
    methods: Vec<Method>,
    tokens: Option<token::TokenTable>,
    jwt: Option<jwt::Verifier>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("methods", &self.methods)
            .field("tokens", &self.tokens)
            .field("jwt", &self.jwt)
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator of a listener accepting `methods` (in order; duplicates
    /// ignored). Reads the token files and the `jwks_file`; a `jwks_url` is fetched on first
    /// use (or by [`Authenticator::prefetch_keys`]). No methods: an open listener.
    pub fn new(methods: &[Method], config: &AuthConfig) -> Result<Self, AuthSetupError> {
        let mut ordered = Vec::new();
        for method in methods {
            if !ordered.contains(method) {
                ordered.push(*method);
            }
        }
        let mut tokens = None;
        let mut jwt = None;
        for method in &ordered {
            match method {
                Method::Token => {
                    if config.tokens.is_empty() {
                        return Err(AuthSetupError::NotConfigured(Method::Token));
                    }
                    tokens = Some(token::TokenTable::load(&config.tokens)?);
                }
                Method::Jwt => {
                    let Some(jwt_config) = &config.jwt else {
                        return Err(AuthSetupError::NotConfigured(Method::Jwt));
                    };
                    ensure_crypto_provider()?;
                    jwt = Some(jwt::Verifier::new(jwt_config)?);
                }
                Method::Mtls => {}
            }
        }
        Ok(Self {
            methods: ordered,
            tokens,
            jwt,
        })
    }

    /// An open authenticator: every caller is anonymous.
    pub fn open() -> Self {
        Self {
            methods: Vec::new(),
            tokens: None,
            jwt: None,
        }
    }

    /// No methods: every caller is [`Principal::anonymous`] and authorization is skipped.
    pub fn is_open(&self) -> bool {
        self.methods.is_empty()
    }

    /// The methods, in the order they are tried.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Re-reads every token file now (e.g. on SIGHUP), instead of waiting for the request
    /// path's periodic metadata check. Returns how many token principals have a usable token.
    pub fn reload_tokens(&self) -> usize {
        self.tokens.as_ref().map_or(0, |tokens| tokens.reload(true))
    }

    /// Fetches the issuer's JWKS unless a fresh one is cached; `Ok` without `jwt`. For a
    /// readiness check, or a warning at startup: requests fetch it anyway.
    pub async fn prefetch_keys(&self) -> Result<(), AuthError> {
        match &self.jwt {
            None => Ok(()),
            Some(jwt) => jwt.prefetch().await.map_err(|message| {
                tracing::warn!(%message, "JWKS prefetch failed");
                AuthError::KeysUnavailable
            }),
        }
    }

    /// Authenticates a request.
    ///
    /// Methods are tried in the configured order; the first whose credential is present decides.
    /// `token` and `jwt` share the bearer token (`Authorization: Bearer`, else the cookie): it is
    /// checked against the static tokens and as a JWT, in the configured order, and only when
    /// both refuse it is it an error (the JWT's error when it was one, else
    /// [`AuthError::Invalid`]). No credential at all: [`AuthError::Missing`].
    pub async fn authenticate(
        &self,
        credentials: &Credentials<'_>,
    ) -> Result<Principal, AuthError> {
        if self.is_open() {
            return Ok(Principal::anonymous());
        }
        for method in &self.methods {
            match method {
                Method::Mtls => {
                    if let Some(principal) = certificate_principal(credentials.client_cert_names) {
                        return Ok(principal);
                    }
                }
                Method::Token | Method::Jwt => {
                    let bearer = match credentials.authorization {
                        Some(header) => Some(bearer_token(header).ok_or(AuthError::Malformed)?),
                        None => credentials
                            .cookie_token
                            .map(str::trim)
                            .filter(|t| !t.is_empty()),
                    };
                    if let Some(bearer) = bearer {
                        return self
                            .authenticate_bearer(bearer, credentials.authorization_extras)
                            .await;
                    }
                }
            }
        }
        Err(AuthError::Missing)
    }

    async fn authenticate_bearer(
        &self,
        bearer: &str,
        extras: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let mut jwt_error = None;
        for method in self.methods.iter().filter(|method| method.is_bearer()) {
            match method {
                Method::Token => {
                    if let Some(principal) = self.tokens.as_ref().and_then(|t| t.find(bearer)) {
                        return Ok(Principal {
                            id: principal.to_owned(),
                            names: vec![principal.to_owned()],
                            method: Some(Method::Token),
                        });
                    }
                }
                Method::Jwt => {
                    if let Some(jwt) = &self.jwt {
                        // Boxed: a JWKS fetch is a kilobyte of future state that every codec
                        // request's future would otherwise carry, JWT or not.
                        match Box::pin(jwt.authenticate(bearer, extras)).await {
                            Ok(principal) => return Ok(principal),
                            Err(error) => jwt_error = Some(error),
                        }
                    }
                }
                Method::Mtls => {}
            }
        }
        Err(jwt_error.unwrap_or(AuthError::Invalid))
    }

    #[cfg(test)]
    fn jwt_mut(&mut self) -> Option<&mut jwt::Verifier> {
        self.jwt.as_mut()
    }
}

/// `cert:<name>` for each certificate name; the first is the id.
fn certificate_principal(names: &[String]) -> Option<Principal> {
    let names: Vec<String> = names
        .iter()
        .filter(|name| !name.is_empty())
        .map(|name| format!("cert:{name}"))
        .collect();
    let id = names.first()?.clone();
    Some(Principal {
        id,
        names,
        method: Some(Method::Mtls),
    })
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750 section 2.1); `None` for
/// another scheme, no token, or a token with white space inside.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace))
    .then_some(token)
}

/// `jsonwebtoken` picks its backend from crate features; when something else in the build
/// enables a second backend it needs to be told. Never panics (its `decode` would).
fn ensure_crypto_provider() -> Result<(), AuthSetupError> {
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        // Losing a race with another installer is fine: some provider is then installed.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    }
    match jsonwebtoken::crypto::CryptoProvider::try_get_default() {
        Some(_) => Ok(()),
        None => Err(AuthSetupError::CryptoProvider),
    }
}

#[cfg(test)]
mod tests;
