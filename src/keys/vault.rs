//! The Vault / OpenBao transit backend: each namespace's KEK is a transit key; data keys are
//! minted by Vault and unwrapped by Vault, the namespace bound into every wrap.
//!
//! This module owns the Vault session (login, renewal, logging in again), the HTTP calls to the
//! transit engine and the mapping of Vault's answers to [`ProviderError`] classes. It never
//! caches data keys (the keyring does), never logs a token, secret id, JWT or key material,
//! never reads the environment (configuration resolves `token_env`), never retries a 4xx answer
//! and never follows a redirect (the token would go wherever it points).
//!
//! # Wire format (OpenBao 2.x and Vault 1.x transit API)
//!
//! * Mint: `POST {mount}/datakey/wrapped/{key}` with `bits = 256` and `associated_data`, which
//!   answers a `vault:vN:<base64>` ciphertext, then `POST {mount}/decrypt/{key}` with the same
//!   associated data for the plaintext. Two calls rather than `datakey/plaintext`: the sidecar
//!   policy needs only `datakey/wrapped` and `decrypt`, and every data key is proven to unwrap
//!   under its namespace binding before anything is sealed under it. Minting is rare (once per
//!   data key, see `keyring`), so the second round trip costs little.
//! * Unwrap: `POST {mount}/decrypt/{key}` with the same associated data.
//! * Associated data: base64 of `kmscodec/v1 namespace=<namespace>` ([`associated_data`]).
//!   Transit authenticates it with the AES-GCM tag (aes256-gcm96 keys), so a wrapped key minted
//!   for one namespace fails to decrypt as another (`cipher: message authentication failed`,
//!   answered here as [`ProviderError::Invalid`]). Namespace names hold no white space
//!   (`config::valid_namespace`), so the string is unambiguous.
//! * [`KekRef`]: the transit key name and the version `N` of the `vault:vN:` prefix (the
//!   `key_version` field of the answer is checked against it when present). [`WrappedKey`]: the
//!   ciphertext string's bytes, exactly as Vault returned them.
//!
//! # How vaultrs is used
//!
//! vaultrs 0.8 builds the requests: its [`VaultClient`] and [`EndpointMiddleware`] add the API
//! version, `X-Vault-Token` and `X-Vault-Namespace`, and its typed requests encode the login,
//! lookup, decrypt and read-key calls. Its settings builder is not used (it reads `VAULT_*`
//! variables for unset fields and panics on a bad address); every field is set here. Answers are
//! read here rather than by vaultrs, because vaultrs 0.8 drops `key_version` from datakey
//! answers, has no `associated_data` on its datakey request, keeps decrypted plaintext and
//! tokens in plain `String`s, hides the server's message in its error `Display`, and logs every
//! failed call at ERROR level (a flood an attacker could trigger through decode). The datakey
//! and `renew-self` requests are written here (vaultrs' `renew-self` path starts with a tab).
//! The HTTP client is reqwest, built here: TLS roots from `ca_cert` only when set, no proxy from
//! the environment, no redirects, a timeout per request.
//!
//! # Sessions
//!
//! A session is one token. It is obtained lazily (provider construction does no I/O), renewed
//! when less than a third of its TTL is left, and replaced by a new login (AppRole, Kubernetes)
//! when renewal stops extending it, when it expired, or when Vault refuses it: a 403 is followed
//! by a `lookup-self`; if that is refused too, the token is dead, the provider logs in again and
//! retries the call once. Logins are single flight, and a failed login is not retried for
//! [`LOGIN_RETRY_AFTER`]. Tokens live in zeroized memory (the session's copies are wiped when it
//! drops); copies made inside the HTTP stack while a request is in flight are out of reach.
//!
//! # Administration ([`KeyAdmin`])
//!
//! Create, rotate, read, list and delete transit keys (`{mount}/keys/...`), with the admin
//! policy's token. Transit has no switch that stops new data keys but keeps decryption
//! (`min_encryption_version` cannot exceed the latest version, checked against OpenBao 2.7), so
//! decrypt-only mode is a Vault ACL policy, [`DECRYPT_ONLY_POLICY`], kept by kmscodec and
//! attached to the sidecar's tokens: one `deny` on `{mount}/datakey/wrapped/<key>` (and the
//! other ways to seal under the key) per decrypt-only key. An exact path outranks the sidecar
//! policy's `kmscodec-*` glob, so Vault refuses new data keys (403) while `decrypt` keeps
//! working. The policy text is generated and parsed here only; it never holds anything else.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde::Deserialize;
use tokio::time::Instant;
use vaultrs::api::EndpointMiddleware;
use vaultrs::api::auth::approle::requests::LoginWithApproleRequest;
use vaultrs::api::auth::kubernetes::requests::LoginWithKubernetesRequest;
use vaultrs::api::token::requests::LookupTokenSelfRequest;
use vaultrs::api::transit::requests::{DecryptDataRequest, ReadKeyRequest};
use vaultrs::client::{VaultClient, VaultClientSettings};
use zeroize::{Zeroize, Zeroizing};

use super::{
    CreatedKek, GeneratedKey, KekVersion, KeyAdmin, KeyDescription, KeyProvider, ProviderError,
    RotatedKek, ShredRequest, ShreddedKek,
};
use crate::config::{
    VaultAuth, VaultConfig, VaultToken, valid_header_token, valid_transit_key_name,
};
use crate::secret::{DATA_KEY_LEN, DataKey, KekRef, ProviderKind, WrappedKey};

/// The prefix of the associated data that binds a wrapped data key to its namespace.
pub const ASSOCIATED_DATA_PREFIX: &str = "kmscodec/v1 namespace=";
/// Longest wrapped key accepted for unwrapping. A 256-bit data key wrapped by transit is
/// `vault:vN:` plus 80 base64 characters; the bound leaves room for large version numbers.
pub const MAX_WRAPPED_LEN: usize = 512;
/// The Vault ACL policy holding the decrypt-only keys (see the module docs). Attach it to the
/// sidecar's tokens together with `kmscodec-sidecar`; `kmscodec keys disable-encrypt` and
/// `enable-encrypt` rewrite it.
pub const DECRYPT_ONLY_POLICY: &str = "kmscodec-decrypt-only";
/// The transit key type `keys create` creates.
pub const CREATED_KEY_TYPE: &str = "aes256-gcm96";
/// How long a failed login is remembered before the next call may try again.
pub const LOGIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Largest answer read from Vault; transit answers are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// First retry delay; doubled on each retry, with up to 50% random jitter added.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The `associated_data` value (base64) binding a data key to `namespace`.
pub fn associated_data(namespace: &str) -> String {
    base64_simd::STANDARD.encode_to_string(format!("{ASSOCIATED_DATA_PREFIX}{namespace}"))
}

/// The key version in a `vault:vN:<base64>` ciphertext, if it has that shape.
pub fn ciphertext_version(ciphertext: &str) -> Option<u32> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (digits, body) = rest.split_once(':')?;
    let well_formed = !digits.is_empty()
        && digits.len() <= 10
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !well_formed {
        return None;
    }
    digits.parse::<u32>().ok().filter(|version| *version >= 1)
}

/// What a call was for, in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Generate,
    /// The decrypt that follows a datakey call.
    GenerateCheck,
    Unwrap,
    Describe,
    Health,
    CreateKey,
    RotateKey,
    ConfigureKey,
    DeleteKey,
    ListKeys,
    ReadPolicy,
    WritePolicy,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Generate => "datakey",
            Self::GenerateCheck => "decrypt of a new data key",
            Self::Unwrap => "decrypt",
            Self::Describe => "read key",
            Self::Health => "token lookup-self",
            Self::CreateKey => "create key",
            Self::RotateKey => "rotate key",
            Self::ConfigureKey => "configure key",
            Self::DeleteKey => "delete key",
            Self::ListKeys => "list keys",
            Self::ReadPolicy => "read policy",
            Self::WritePolicy => "write policy",
        })
    }
}

/// Why one call to Vault failed, before it is classified for the caller.
#[derive(Debug)]
enum CallError {
    /// Vault answered with an error status.
    Status { code: u16, message: String },
    /// No answer: connection refused, TLS failure, timeout.
    Transport(String),
    /// An answer that could not be read.
    Response(String),
    /// The request could not be built (a bug or a bad setting, never retried).
    Build(String),
    /// Getting a token failed; already classified.
    Session(ProviderError),
}

impl CallError {
    fn retryable(&self) -> bool {
        match self {
            Self::Status { code, .. } => *code >= 500,
            Self::Transport(_) => true,
            Self::Response(_) | Self::Build(_) | Self::Session(_) => false,
        }
    }

    fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Status {
                code: 401 | 403,
                ..
            }
        )
    }
}

/// `Display` of an error and its sources, joined.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    let mut joined = parts.join(": ");
    truncate(&mut joined, 400);
    joined
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// The server's message from an error answer: `{"errors": [...]}` flattened (Vault wraps
/// policy denials as `1 error occurred:\n\t* permission denied\n\n`), or the start of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    let mut message = match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => parsed
            .errors
            .iter()
            .map(|error| {
                let flat = error.split_whitespace().collect::<Vec<_>>().join(" ");
                let flat = match flat.split_once(" occurred: ") {
                    Some((count, rest))
                        if count.ends_with("error") || count.ends_with("errors") =>
                    {
                        rest.to_owned()
                    }
                    _ => flat,
                };
                flat.trim_start_matches("* ").replace(" * ", "; ")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body)
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>(),
    };
    if message.trim().is_empty() {
        message = "no message".to_owned();
    }
    truncate(&mut message, 300);
    message
}

/// A POST request vaultrs 0.8 does not offer in usable form (datakey with associated data,
/// renew-self), sent through its middleware like the typed ones.
struct RawPost {
    path: String,
    body: Vec<u8>,
}

impl Endpoint for RawPost {
    /// Unused: answers are read by this module, not by rustify.
    type Response = ();
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(Some(self.body.clone()))
    }
}

/// Any request of the administration calls: a method, a path and an optional JSON body.
struct RawCall {
    method: RequestMethod,
    path: String,
    body: Option<Vec<u8>>,
}

impl Endpoint for RawCall {
    /// Unused: answers are read by this module, not by rustify.
    type Response = ();
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self.body.clone())
    }
}

/// Turns an endpoint into an HTTP request with the client's token, namespace and API version.
fn http_request<E: Endpoint>(
    client: &VaultClient,
    endpoint: E,
) -> Result<http::Request<Vec<u8>>, CallError> {
    endpoint
        .with_middleware(&client.middle)
        .request(&client.http.base)
        .map_err(|error| CallError::Build(error_chain(&error)))
}

fn build_error(error: impl fmt::Display) -> CallError {
    CallError::Build(error.to_string())
}

/// One token and what is known about its lifetime.
struct Session {
    /// A client carrying the token (in `settings.token` and `middle.token`, wiped on drop).
    client: VaultClient,
    /// Which login produced the token; renewals keep it.
    generation: u64,
    /// When the token stops working; `None` when it never expires (a root token).
    expires: Option<Instant>,
    /// The TTL the token had when obtained: renewal starts when a third of it is left.
    base_ttl: Duration,
    /// Whether Vault allows renewing it.
    renewable: bool,
    /// Renewal no longer extends the token (max TTL reached, or refused).
    renew_exhausted: bool,
    /// After a renewal that failed for want of an answer: when to try again.
    renew_after: Option<Instant>,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }

    /// Less than a third of the TTL is left (or it is gone).
    fn due(&self, now: Instant) -> bool {
        self.expires
            .is_some_and(|at| at.saturating_duration_since(now) < self.base_ttl / 3)
    }

    fn token(&self) -> &str {
        &self.client.middle.token
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.client.settings.token.zeroize();
        self.client.middle.token.zeroize();
    }
}

/// State behind the refresh lock.
#[derive(Default)]
struct RefreshState {
    /// The last failed login and when it happened.
    last_failure: Option<(Instant, ProviderError)>,
}

#[derive(Deserialize)]
struct DataAnswer<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
struct AuthAnswer<T> {
    auth: Option<T>,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: Zeroizing<String>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct RenewAuth {
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct LookupData {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: Option<bool>,
}

#[derive(Deserialize)]
struct DataKeyData {
    ciphertext: String,
    #[serde(default)]
    key_version: Option<u64>,
}

#[derive(Deserialize)]
struct DecryptData {
    plaintext: Zeroizing<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyData {
    #[serde(rename = "type")]
    key_type: Option<String>,
    keys: std::collections::BTreeMap<String, serde_json::Value>,
    latest_version: Option<u32>,
    min_decryption_version: Option<u32>,
    min_encryption_version: Option<u32>,
    min_available_version: Option<u32>,
    exportable: bool,
    deletion_allowed: bool,
    derived: bool,
    allow_plaintext_backup: bool,
    supports_encryption: Option<bool>,
    supports_decryption: Option<bool>,
    soft_deleted: bool,
    auto_rotate_period: Option<u64>,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, CallError> {
    // serde_json's error text names a position, never the content.
    serde_json::from_slice(body)
        .map_err(|error| CallError::Response(format!("{what}: not the expected JSON ({error})")))
}

/// What every vaultrs client of one provider shares.
struct ClientParts {
    address: url::Url,
    http: reqwest::Client,
    namespace: Option<String>,
    ca_cert: Option<String>,
    timeout: Duration,
}

impl ClientParts {
    /// A vaultrs client carrying `token` (empty: none), sharing the HTTP client and its
    /// connection pool. Every settings field is set, so vaultrs reads no environment variable.
    fn client(&self, token: &str) -> VaultClient {
        VaultClient {
            http: rustify::clients::reqwest::Client::new(self.address.as_str(), self.http.clone()),
            middle: EndpointMiddleware {
                token: token.to_owned(),
                version: "v1".to_owned(),
                wrap: None,
                namespace: self.namespace.clone(),
            },
            settings: VaultClientSettings {
                address: self.address.clone(),
                ca_certs: self.ca_cert.iter().cloned().collect(),
                identity: None,
                timeout: Some(self.timeout),
                token: token.to_owned(),
                verify: true,
                version: 1,
                wrapping: false,
                namespace: self.namespace.clone(),
                proxy: None,
            },
        }
    }
}

/// Vault or OpenBao transit provider.
pub struct VaultTransit {
    address: String,
    mount: String,
    namespace: Option<String>,
    retries: u32,
    auth: VaultAuth,
    http: reqwest::Client,
    parts: ClientParts,
    /// A client without a token, for logins.
    anonymous: VaultClient,
    session: ArcSwapOption<Session>,
    refresh: tokio::sync::Mutex<RefreshState>,
    generation: AtomicU64,
}

impl fmt::Debug for VaultTransit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultTransit")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("namespace", &self.namespace)
            .field("auth", &self.auth_method())
            .finish_non_exhaustive()
    }
}

impl VaultTransit {
    /// Sets the provider up from validated configuration. Reads `ca_cert`; makes no network
    /// call (the first login happens on first use or at the first readiness check).
    pub fn new(config: &VaultConfig) -> Result<Self, ProviderError> {
        let misconfigured = |what: String| ProviderError::Misconfigured(format!("vault: {what}"));
        let address = url::Url::parse(&config.address)
            .map_err(|error| misconfigured(format!("address {:?}: {error}", config.address)))?;
        if let Some(namespace) = &config.namespace
            && !valid_header_token(namespace)
        {
            return Err(misconfigured(format!(
                "namespace {namespace:?} is not valid"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .https_only(address.scheme() == "https");
        if address.scheme() == "http" {
            // No TLS is ever used; do not load the platform's roots (as vaultrs does, working
            // around reqwest#2988).
            builder = builder.tls_certs_only(Vec::new());
        } else if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|error| {
                misconfigured(format!("cannot read ca_cert {}: {error}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                misconfigured(format!(
                    "ca_cert {} is not a PEM bundle: {}",
                    path.display(),
                    error_chain(&error)
                ))
            })?;
            if certificates.is_empty() {
                return Err(misconfigured(format!(
                    "ca_cert {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_only(certificates);
        }
        let http = builder.build().map_err(|error| {
            misconfigured(format!(
                "cannot build the HTTP client: {}",
                error_chain(&error)
            ))
        })?;
        let parts = ClientParts {
            address,
            http: http.clone(),
            namespace: config.namespace.clone(),
            ca_cert: config
                .ca_cert
                .as_ref()
                .map(|path| path.display().to_string()),
            timeout: config.timeout,
        };
        Ok(Self {
            address: config.address.clone(),
            mount: config.mount.clone(),
            namespace: config.namespace.clone(),
            retries: config.retries,
            auth: config.auth.clone(),
            http,
            anonymous: parts.client(""),
            parts,
            session: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            generation: AtomicU64::new(0),
        })
    }

    /// The configured auth method, for logs and messages.
    pub fn auth_method(&self) -> &'static str {
        match &self.auth {
            VaultAuth::Token(_) => "token",
            VaultAuth::AppRole { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
        }
    }

    fn client(&self, token: &str) -> VaultClient {
        self.parts.client(token)
    }

    // -----------------------------------------------------------------------------------------
    // Sending

    /// Sends the request `build` makes, retrying 5xx answers and connection errors up to
    /// `retries` times with exponential backoff; never a 4xx. Returns the body of a 2xx answer.
    async fn send<F>(
        &self,
        client: &VaultClient,
        build: &F,
    ) -> Result<Zeroizing<Vec<u8>>, CallError>
    where
        F: Fn(&VaultClient) -> Result<http::Request<Vec<u8>>, CallError> + Sync,
    {
        let mut attempt = 0u32;
        loop {
            let error = match self.send_once(build(client)?).await {
                Ok(body) => return Ok(body),
                Err(error) => error,
            };
            if !error.retryable() || attempt >= self.retries {
                return Err(error);
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, CallError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|error| CallError::Build(error_chain(&error)))?;
        let mut response = self
            .http
            .execute(request)
            .await
            .map_err(|error| CallError::Transport(error_chain(&error)))?;
        let status = response.status().as_u16();
        let mut body = Zeroizing::new(Vec::new());
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| CallError::Transport(error_chain(&error)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(CallError::Response(format!(
                    "answer larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(CallError::Status {
                code: status,
                message: error_message(&body),
            })
        }
    }

    /// Sends a request with the current token. When Vault refuses it (401/403) and a
    /// `lookup-self` shows the token itself is dead (expired, revoked), gets a new token and
    /// sends the request once more.
    async fn call<F>(&self, build: F) -> Result<Zeroizing<Vec<u8>>, CallError>
    where
        F: Fn(&VaultClient) -> Result<http::Request<Vec<u8>>, CallError> + Sync,
    {
        let session = self.session().await.map_err(CallError::Session)?;
        match self.send(&session.client, &build).await {
            Err(error) if error.is_refusal() => match self.lookup(&session).await {
                Ok(_) => Err(error),
                Err(lookup) if lookup.is_refusal() => {
                    tracing::info!(
                        provider = "vault",
                        auth = self.auth_method(),
                        "vault refused the token (expired or revoked): getting a new one"
                    );
                    self.invalidate(session.generation).await;
                    let session = self.session().await.map_err(CallError::Session)?;
                    self.send(&session.client, &build).await
                }
                Err(lookup) => Err(lookup),
            },
            other => other,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sessions

    /// A usable token: the current one while more than a third of its TTL is left; otherwise
    /// renewed, or replaced by a new login. Single flight: while one caller refreshes, others
    /// keep using the current token if it has not expired.
    async fn session(&self) -> Result<Arc<Session>, ProviderError> {
        let now = Instant::now();
        let current = self.session.load_full();
        if let Some(session) = &current
            && !session.due(now)
        {
            return Ok(Arc::clone(session));
        }
        let mut state = match self.refresh.try_lock() {
            Ok(state) => state,
            Err(_) => {
                if let Some(session) = current.filter(|session| !session.expired(now)) {
                    return Ok(session);
                }
                self.refresh.lock().await
            }
        };
        let now = Instant::now();
        let mut current = self.session.load_full();
        if let Some(session) = &current
            && !session.due(now)
        {
            return Ok(Arc::clone(session));
        }
        if let Some(session) = &current
            && session.renewable
            && !session.renew_exhausted
            && session.renew_after.is_none_or(|after| now >= after)
            && !session.expired(now)
        {
            let renewed = Arc::new(self.renew(session).await);
            self.session.store(Some(Arc::clone(&renewed)));
            if !renewed.due(Instant::now()) {
                return Ok(renewed);
            }
            current = Some(renewed);
        }
        let can_login = !matches!(self.auth, VaultAuth::Token(_));
        if let Some(session) = &current
            && !session.expired(now)
            && !can_login
        {
            // A given token cannot be replaced: use it until it expires.
            return Ok(Arc::clone(session));
        }
        if let Some((at, error)) = &state.last_failure
            && now.saturating_duration_since(*at) < LOGIN_RETRY_AFTER
        {
            return match current.filter(|session| !session.expired(now)) {
                Some(session) => Ok(session),
                None => Err(error.clone()),
            };
        }
        match self.login().await {
            Ok(session) => {
                state.last_failure = None;
                let session = Arc::new(session);
                self.session.store(Some(Arc::clone(&session)));
                Ok(session)
            }
            Err(error) => {
                tracing::warn!(
                    provider = "vault",
                    auth = self.auth_method(),
                    %error,
                    "vault login failed"
                );
                state.last_failure = Some((Instant::now(), error.clone()));
                match current.filter(|session| !session.expired(Instant::now())) {
                    Some(session) => Ok(session),
                    None => Err(error),
                }
            }
        }
    }

    /// Forgets the session of login `generation` (its token is dead), unless a newer one
    /// replaced it already.
    async fn invalidate(&self, generation: u64) {
        let mut state = self.refresh.lock().await;
        if self
            .session
            .load()
            .as_ref()
            .is_some_and(|session| session.generation == generation)
        {
            self.session.store(None);
            // The dead token is a reason to try a login now, whatever failed a moment ago.
            state.last_failure = None;
        }
    }

    /// Renews the session's token. Never fails: a refused renewal (or one capped by the max
    /// TTL) marks the copy as exhausted, so the caller logs in again (or keeps the token until it
    /// expires); an unanswered one is tried again after [`LOGIN_RETRY_AFTER`].
    async fn renew(&self, session: &Session) -> Session {
        let sent = Instant::now();
        let result = self
            .send(&session.client, &|client: &VaultClient| {
                http_request(
                    client,
                    RawPost {
                        path: "auth/token/renew-self".to_owned(),
                        body: b"{}".to_vec(),
                    },
                )
            })
            .await
            .and_then(|body| parse::<AuthAnswer<RenewAuth>>(&body, "renew-self"))
            .and_then(|answer| {
                answer
                    .auth
                    .ok_or_else(|| CallError::Response("renew-self: no auth in answer".to_owned()))
            });
        let mut renewed = Session {
            client: self.client(session.token()),
            generation: session.generation,
            expires: session.expires,
            base_ttl: session.base_ttl,
            renewable: session.renewable,
            renew_exhausted: false,
            renew_after: None,
        };
        match result {
            Ok(auth) => {
                let lease = Duration::from_secs(auth.lease_duration);
                renewed.expires = (auth.lease_duration > 0).then(|| sent + lease);
                renewed.renewable = auth.renewable;
                // Capped by the token's max TTL: renewing again would not help.
                renewed.renew_exhausted = lease < session.base_ttl / 3;
                tracing::debug!(
                    provider = "vault",
                    ttl_seconds = auth.lease_duration,
                    "renewed the vault token"
                );
            }
            Err(error) => {
                tracing::warn!(
                    provider = "vault",
                    error = %self.describe_error(&error),
                    "vault token renewal failed"
                );
                match error {
                    CallError::Status { code, .. } if (400..500).contains(&code) && code != 429 => {
                        renewed.renew_exhausted = true;
                    }
                    _ => renewed.renew_after = Some(Instant::now() + LOGIN_RETRY_AFTER),
                }
            }
        }
        renewed
    }

    /// Obtains a new token with the configured auth method.
    async fn login(&self) -> Result<Session, ProviderError> {
        let sent = Instant::now();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (token, lease, renewable, what) = match &self.auth {
            VaultAuth::Token(source) => {
                let (token, what) = match source {
                    VaultToken::File(path) => (
                        read_credential(path, "token_file", true).await?,
                        format!("token from token_file {}", path.display()),
                    ),
                    VaultToken::Env { variable, value } => (
                        Zeroizing::new(value.expose_secret().to_owned()),
                        format!("token from environment variable {variable}"),
                    ),
                };
                let session = Session {
                    client: self.client(&token),
                    generation,
                    expires: None,
                    base_ttl: Duration::ZERO,
                    renewable: false,
                    renew_exhausted: false,
                    renew_after: None,
                };
                let lookup = self.lookup(&session).await.map_err(|error| {
                    if error.is_refusal() {
                        ProviderError::Denied(format!(
                            "vault refused the {what} (lookup-self answered: {}): it is expired \
                             or revoked, or its policy lacks auth/token/lookup-self (see \
                             policies/vault/kmscodec-sidecar.hcl)",
                            self.describe_error(&error)
                        ))
                    } else {
                        self.classify(Op::Health, "", error)
                    }
                })?;
                (token, lookup.ttl, lookup.renewable.unwrap_or(false), what)
            }
            VaultAuth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                let role_id = read_credential(role_id_file, "role_id_file", false).await?;
                let secret_id = read_credential(secret_id_file, "secret_id_file", true).await?;
                let what = format!("approle login at auth/{mount}/login");
                let auth = self
                    .login_with(&what, &|client: &VaultClient| {
                        let endpoint = LoginWithApproleRequest::builder()
                            .mount(mount.as_str())
                            .role_id(role_id.as_str())
                            .secret_id(secret_id.as_str())
                            .build()
                            .map_err(build_error)?;
                        http_request(client, endpoint)
                    })
                    .await?;
                (auth.client_token, auth.lease_duration, auth.renewable, what)
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_credential(jwt_file, "jwt_file", false).await?;
                let what = format!("kubernetes login as role {role:?} at auth/{mount}/login");
                let auth = self
                    .login_with(&what, &|client: &VaultClient| {
                        let endpoint = LoginWithKubernetesRequest::builder()
                            .mount(mount.as_str())
                            .role(role.as_str())
                            .jwt(jwt.as_str())
                            .build()
                            .map_err(build_error)?;
                        http_request(client, endpoint)
                    })
                    .await?;
                (auth.client_token, auth.lease_duration, auth.renewable, what)
            }
        };
        tracing::info!(
            provider = "vault",
            address = %self.address,
            auth = self.auth_method(),
            ttl_seconds = lease,
            renewable,
            "vault login succeeded ({what})"
        );
        let ttl = Duration::from_secs(lease);
        Ok(Session {
            client: self.client(&token),
            generation,
            expires: (lease > 0).then(|| sent + ttl),
            base_ttl: ttl,
            renewable,
            renew_exhausted: false,
            renew_after: None,
        })
    }

    async fn login_with<F>(&self, what: &str, build: &F) -> Result<LoginAuth, ProviderError>
    where
        F: Fn(&VaultClient) -> Result<http::Request<Vec<u8>>, CallError> + Sync,
    {
        let failed = |error: CallError| {
            let detail = self.describe_error(&error);
            match error {
                // Wrong credentials, unknown role, a JWT that does not match the role.
                CallError::Status { code, .. } if (400..500).contains(&code) && code != 429 => {
                    ProviderError::Denied(format!("vault {what} failed: {detail}"))
                }
                CallError::Build(_) => {
                    ProviderError::Misconfigured(format!("vault {what}: {detail}"))
                }
                CallError::Session(error) => error,
                _ => ProviderError::Unavailable(format!("vault {what}: {detail}")),
            }
        };
        let body = self.send(&self.anonymous, build).await.map_err(failed)?;
        let answer: AuthAnswer<LoginAuth> = parse(&body, "login").map_err(failed)?;
        let auth = answer
            .auth
            .ok_or_else(|| failed(CallError::Response("login answer has no auth".to_owned())))?;
        if !valid_header_token(&auth.client_token) {
            return Err(failed(CallError::Response(
                "login answer holds a malformed token".to_owned(),
            )));
        }
        Ok(auth)
    }

    /// `GET auth/token/lookup-self` with the session's token.
    async fn lookup(&self, session: &Session) -> Result<LookupData, CallError> {
        let body = self
            .send(&session.client, &|client: &VaultClient| {
                http_request(client, LookupTokenSelfRequest::default())
            })
            .await?;
        parse::<DataAnswer<LookupData>>(&body, "lookup-self")?
            .data
            .ok_or_else(|| CallError::Response("lookup-self: no data in answer".to_owned()))
    }

    // -----------------------------------------------------------------------------------------
    // Errors

    fn describe_error(&self, error: &CallError) -> String {
        match error {
            CallError::Status { code, message } => format!("{message} (HTTP {code})"),
            CallError::Transport(message) => format!("vault at {}: {message}", self.address),
            CallError::Response(message) => {
                format!(
                    "unreadable answer from vault at {}: {message}",
                    self.address
                )
            }
            CallError::Build(message) => format!("cannot build the request: {message}"),
            CallError::Session(error) => error.to_string(),
        }
    }

    /// Maps a failed call to the provider error class the transports answer with:
    /// 401/403 denied, 404 and "encryption key not found" not found, soft-deleted keys and
    /// versions below `min_decryption_version` disabled, 429/5xx/connection unavailable,
    /// other 400s on decrypt invalid (the wrapped key is bad input).
    fn classify(&self, op: Op, key: &str, error: CallError) -> ProviderError {
        let target = if key.is_empty() {
            format!("vault {op}")
        } else {
            format!("vault {op} with transit key {}/{key}", self.mount)
        };
        match error {
            CallError::Session(error) => error,
            CallError::Build(message) => ProviderError::Misconfigured(format!(
                "{target}: cannot build the request: {message}"
            )),
            CallError::Transport(message) => ProviderError::Unavailable(format!(
                "{target}: vault at {}: {message}",
                self.address
            )),
            CallError::Response(message) => ProviderError::Unavailable(format!(
                "{target}: unreadable answer from vault at {}: {message}",
                self.address
            )),
            CallError::Status { code, message } => {
                let lower = message.to_ascii_lowercase();
                let detail = format!("{target}: {message} (HTTP {code})");
                match code {
                    401 | 403 if op == Op::Generate => ProviderError::Denied(format!(
                        "{detail}; a namespace made decrypt-only (`kmscodec keys \
                         disable-encrypt`) is refused here by the {DECRYPT_ONLY_POLICY} policy"
                    )),
                    401 | 403 => ProviderError::Denied(detail),
                    404 => ProviderError::NotFound(detail),
                    429 | 500..=599 => ProviderError::Unavailable(detail),
                    300..=399 => ProviderError::Misconfigured(format!(
                        "{target}: vault answered with a redirect (HTTP {code}); set address to \
                         the active node or its load balancer"
                    )),
                    400 if lower.contains("key not found")
                        || lower.contains("no existing key")
                        || lower.contains("version is too new") =>
                    {
                        ProviderError::NotFound(detail)
                    }
                    400 if lower.contains("soft-deleted")
                        || lower.contains("disallowed by policy")
                        || lower.contains("does not support")
                        || lower.contains("minimum") =>
                    {
                        ProviderError::Disabled(detail)
                    }
                    400 if op == Op::Unwrap => {
                        // Opaque to callers: wrong namespace, wrong key and tampering look the
                        // same. The detail is for operators.
                        tracing::debug!(provider = "vault", %detail, "vault refused to unwrap");
                        ProviderError::Invalid
                    }
                    _ => ProviderError::Misconfigured(detail),
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Transit

    async fn decrypt(
        &self,
        op: Op,
        namespace: &str,
        key: &str,
        ciphertext: &str,
    ) -> Result<DataKey, ProviderError> {
        let associated_data = associated_data(namespace);
        let body = self
            .call(|client: &VaultClient| {
                let endpoint = DecryptDataRequest::builder()
                    .mount(self.mount.as_str())
                    .name(key)
                    .ciphertext(ciphertext)
                    .associated_data(associated_data.as_str())
                    .build()
                    .map_err(build_error)?;
                http_request(client, endpoint)
            })
            .await
            .map_err(|error| self.classify(op, key, error))?;
        let answer: DataAnswer<DecryptData> =
            parse(&body, "decrypt").map_err(|error| self.classify(op, key, error))?;
        let data = answer.data.ok_or_else(|| {
            self.classify(op, key, CallError::Response("decrypt: no data".to_owned()))
        })?;
        let plaintext = Zeroizing::new(
            base64_simd::STANDARD
                .decode_to_vec(data.plaintext.as_bytes())
                .map_err(|_| {
                    ProviderError::Misconfigured(format!(
                        "vault decrypt with transit key {}/{key}: plaintext is not base64",
                        self.mount
                    ))
                })?,
        );
        if plaintext.len() != DATA_KEY_LEN {
            return Err(match op {
                // Someone else's ciphertext under this key (a transit encrypt of other data).
                Op::Unwrap => ProviderError::Invalid,
                _ => ProviderError::Misconfigured(format!(
                    "vault datakey with transit key {}/{key} returned {} bytes, not {DATA_KEY_LEN}",
                    self.mount,
                    plaintext.len()
                )),
            });
        }
        DataKey::from_slice(&plaintext).ok_or(ProviderError::Invalid)
    }
}

/// The delay before retry `attempt` (0-based): 100 ms doubling, capped at 2 s, plus up to 50%
/// random jitter so replicas do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(10))
        .min(BACKOFF_MAX);
    let mut random = [0u8; 2];
    let jitter = match getrandom::fill(&mut random) {
        Ok(()) => f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX) * 0.5,
        Err(_) => 0.25,
    };
    base.mul_f64(1.0 + jitter)
}

/// Reads a credential file (token, role id, secret id, JWT): trimmed, visible ASCII only.
/// `private`: warn when group or others may read it (Kubernetes mounts service account tokens
/// 0644 on purpose, so JWT files are not checked).
async fn read_credential(
    path: &Path,
    what: &str,
    private: bool,
) -> Result<Zeroizing<String>, ProviderError> {
    let misconfigured = |message: String| ProviderError::Misconfigured(format!("vault: {message}"));
    let bytes = Zeroizing::new(tokio::fs::read(path).await.map_err(|error| {
        misconfigured(format!("cannot read {what} {}: {error}", path.display()))
    })?);
    if private
        && let Ok(metadata) = tokio::fs::metadata(path).await
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "vault {what} is accessible by group or others; it holds a credential: chmod 600"
        );
    }
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .ok()
        .filter(|text| valid_header_token(text))
        .ok_or_else(|| {
            misconfigured(format!(
                "{what} {} does not hold a credential (empty, or characters other than visible \
                 ASCII)",
                path.display()
            ))
        })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// RFC 3339 for a Unix timestamp.
fn rfc3339(seconds: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[async_trait]
impl KeyProvider for VaultTransit {
    fn kind(&self) -> ProviderKind {
        ProviderKind::VaultTransit
    }

    async fn generate_data_key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<GeneratedKey, ProviderError> {
        if !valid_transit_key_name(key) {
            return Err(ProviderError::NotFound(format!(
                "{key:?} is not a valid transit key name"
            )));
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "bits": DATA_KEY_LEN * 8,
            "associated_data": associated_data(namespace),
        }))
        .map_err(|error| ProviderError::Misconfigured(error.to_string()))?;
        let path = format!("{}/datakey/wrapped/{key}", self.mount);
        let answer = self
            .call(|client: &VaultClient| {
                http_request(
                    client,
                    RawPost {
                        path: path.clone(),
                        body: body.clone(),
                    },
                )
            })
            .await
            .and_then(|body| parse::<DataAnswer<DataKeyData>>(&body, "datakey"))
            .map_err(|error| self.classify(Op::Generate, key, error))?;
        let data = answer.data.ok_or_else(|| {
            self.classify(
                Op::Generate,
                key,
                CallError::Response("datakey: no data".to_owned()),
            )
        })?;
        let unexpected = |what: &str| {
            ProviderError::Unavailable(format!(
                "vault datakey with transit key {}/{key}: {what}",
                self.mount
            ))
        };
        let version = ciphertext_version(&data.ciphertext)
            .ok_or_else(|| unexpected("the ciphertext has no vault:vN: prefix"))?;
        if data
            .key_version
            .is_some_and(|reported| reported != u64::from(version))
        {
            return Err(unexpected(
                "key_version disagrees with the ciphertext prefix",
            ));
        }
        if data.ciphertext.len() > MAX_WRAPPED_LEN {
            return Err(unexpected("the ciphertext is longer than expected"));
        }
        let plaintext = self
            .decrypt(Op::GenerateCheck, namespace, key, &data.ciphertext)
            .await?;
        Ok(GeneratedKey {
            plaintext,
            wrapped: WrappedKey::new(data.ciphertext.into_bytes()),
            kek: KekRef {
                key: key.to_owned(),
                version,
            },
        })
    }

    async fn unwrap_data_key(
        &self,
        namespace: &str,
        kek: &KekRef,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, ProviderError> {
        // Everything here came from a payload header: check it before it reaches a URL or
        // Vault. The version in the header must be the one in the ciphertext.
        if !valid_transit_key_name(&kek.key) || wrapped.as_bytes().len() > MAX_WRAPPED_LEN {
            return Err(ProviderError::Invalid);
        }
        let ciphertext =
            std::str::from_utf8(wrapped.as_bytes()).map_err(|_| ProviderError::Invalid)?;
        if ciphertext_version(ciphertext) != Some(kek.version) {
            return Err(ProviderError::Invalid);
        }
        self.decrypt(Op::Unwrap, namespace, &kek.key, ciphertext)
            .await
    }

    async fn describe(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        if !valid_transit_key_name(key) {
            return Err(ProviderError::NotFound(format!(
                "{key:?} is not a valid transit key name"
            )));
        }
        let answer = self
            .call(|client: &VaultClient| {
                let endpoint = ReadKeyRequest::builder()
                    .mount(self.mount.as_str())
                    .name(key)
                    .build()
                    .map_err(build_error)?;
                http_request(client, endpoint)
            })
            .await
            .and_then(|body| parse::<DataAnswer<KeyData>>(&body, "read key"))
            .map_err(|error| self.classify(Op::Describe, key, error))?;
        let data = answer.data.unwrap_or_default();
        let mut versions: Vec<KekVersion> = data
            .keys
            .iter()
            .filter_map(|(version, created)| {
                let version = version.parse::<u32>().ok()?;
                let created_at = match created {
                    // Symmetric keys: a Unix timestamp.
                    serde_json::Value::Number(seconds) => seconds.as_i64().and_then(rfc3339),
                    // Asymmetric keys: an object with creation_time.
                    serde_json::Value::Object(entry) => entry
                        .get("creation_time")
                        .and_then(|time| time.as_str())
                        .map(str::to_owned),
                    _ => None,
                };
                Some(KekVersion {
                    version,
                    created_at,
                })
            })
            .collect();
        versions.sort_by_key(|version| version.version);
        let mut notes = vec![format!(
            "vault transit key {}/{key} at {}",
            self.mount, self.address
        )];
        if let Some(key_type) = &data.key_type {
            notes.push(format!("type {key_type}"));
        }
        if let Some(min) = data.min_decryption_version {
            notes.push(format!(
                "min_decryption_version {min}: payloads sealed under older versions no longer open"
            ));
        }
        if let Some(min) = data.min_encryption_version.filter(|min| *min > 0) {
            notes.push(format!("min_encryption_version {min}"));
        }
        if let Some(min) = data.min_available_version.filter(|min| *min > 0) {
            notes.push(format!(
                "versions below {min} were trimmed: they are gone for good"
            ));
        }
        match data.auto_rotate_period {
            Some(period) if period > 0 => {
                notes.push(format!(
                    "rotated by vault every {period} s (auto_rotate_period)"
                ));
            }
            _ => notes.push("no automatic rotation (auto_rotate_period 0)".to_owned()),
        }
        notes.push(format!(
            "exportable: {}; allow_plaintext_backup: {}; deletion_allowed: {}; derived: {}",
            data.exportable, data.allow_plaintext_backup, data.deletion_allowed, data.derived
        ));
        if data.exportable || data.allow_plaintext_backup {
            notes.push(
                "warning: the key material can leave vault (exportable or plaintext backup)"
                    .to_owned(),
            );
        }
        if data.soft_deleted {
            notes.push("soft deleted: unusable until restored".to_owned());
        }
        Ok(KeyDescription {
            provider: ProviderKind::VaultTransit.as_str().to_owned(),
            key: key.to_owned(),
            primary_version: data.latest_version,
            versions,
            encrypt_enabled: data.supports_encryption.unwrap_or(true) && !data.soft_deleted,
            decrypt_enabled: data.supports_decryption.unwrap_or(true) && !data.soft_deleted,
            notes,
        })
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let session = self.session().await?;
        match self.lookup(&session).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_refusal() => {
                self.invalidate(session.generation).await;
                let session = self.session().await?;
                self.lookup(&session)
                    .await
                    .map(|_| ())
                    .map_err(|error| self.classify(Op::Health, "", error))
            }
            Err(error) => Err(self.classify(Op::Health, "", error)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Administration

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyList {
    keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyData {
    policy: String,
}

/// The keys of `mount` that [`DECRYPT_ONLY_POLICY`]'s text marks decrypt-only, and every
/// (mount, key) pair it holds (other mounts' entries are kept when the policy is rewritten).
fn parse_decrypt_only_policy(text: &str) -> std::collections::BTreeSet<(String, String)> {
    let mut entries = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("path \"") else {
            continue;
        };
        let Some((path, _)) = rest.split_once('"') else {
            continue;
        };
        if let Some((mount, key)) = path.rsplit_once("/datakey/wrapped/")
            && !mount.is_empty()
            && valid_transit_key_name(key)
        {
            entries.insert((mount.to_owned(), key.to_owned()));
        }
    }
    entries
}

/// The text of [`DECRYPT_ONLY_POLICY`] denying new data keys under every (mount, key) pair.
/// Exact paths: they outrank the sidecar policy's `kmscodec-*` glob (Vault picks the most
/// specific matching path), so the deny wins while `decrypt` stays allowed.
fn render_decrypt_only_policy(entries: &std::collections::BTreeSet<(String, String)>) -> String {
    let mut text = String::from(
        "# Managed by kmscodec (`kmscodec keys disable-encrypt` / `enable-encrypt`); do not edit.\n\
         # The transit keys below are decrypt-only: no new data key may be sealed under them,\n\
         # decryption keeps working. Attach this policy to the sidecar's tokens next to\n\
         # kmscodec-sidecar. Each path names one key exactly, so it outranks the sidecar\n\
         # policy's kmscodec-* glob.\n",
    );
    if entries.is_empty() {
        text.push_str("# (no key is decrypt-only)\n");
    }
    for (mount, key) in entries {
        for operation in ["datakey/wrapped", "datakey/plaintext", "encrypt"] {
            text.push_str(&format!(
                "path \"{mount}/{operation}/{key}\" {{ capabilities = [\"deny\"] }}\n"
            ));
        }
    }
    text
}

impl VaultTransit {
    /// One administration call; `body` is sent as JSON. Answers the body of a 2xx answer.
    async fn admin_call(
        &self,
        op: Op,
        key: &str,
        method: RequestMethod,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let body = body
            .map(|body| serde_json::to_vec(&body))
            .transpose()
            .map_err(|error| ProviderError::Misconfigured(error.to_string()))?;
        self.call(|client: &VaultClient| {
            http_request(
                client,
                RawCall {
                    method: method.clone(),
                    path: path.clone(),
                    body: body.clone(),
                },
            )
        })
        .await
        .map_err(|error| self.classify(op, key, error))
    }

    fn check_key_name(key: &str) -> Result<(), ProviderError> {
        if valid_transit_key_name(key) {
            Ok(())
        } else {
            Err(ProviderError::NotFound(format!(
                "{key:?} is not a valid transit key name"
            )))
        }
    }

    /// The key's settings, `None` when it does not exist.
    async fn read_key(&self, key: &str) -> Result<Option<KeyData>, ProviderError> {
        Self::check_key_name(key)?;
        let answer = self
            .admin_call(
                Op::Describe,
                key,
                RequestMethod::GET,
                format!("{}/keys/{key}", self.mount),
                None,
            )
            .await;
        match answer {
            Ok(body) => {
                let answer: DataAnswer<KeyData> = parse(&body, "read key")
                    .map_err(|error| self.classify(Op::Describe, key, error))?;
                Ok(Some(answer.data.unwrap_or_default()))
            }
            Err(ProviderError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn existing_key(&self, key: &str) -> Result<KeyData, ProviderError> {
        self.read_key(key).await?.ok_or_else(|| {
            ProviderError::NotFound(format!(
                "vault transit key {}/{key} does not exist",
                self.mount
            ))
        })
    }

    /// Every (mount, key) pair in [`DECRYPT_ONLY_POLICY`]; empty when the policy does not exist.
    async fn decrypt_only_entries(
        &self,
    ) -> Result<std::collections::BTreeSet<(String, String)>, ProviderError> {
        let answer = self
            .admin_call(
                Op::ReadPolicy,
                "",
                RequestMethod::GET,
                format!("sys/policies/acl/{DECRYPT_ONLY_POLICY}"),
                None,
            )
            .await;
        match answer {
            Ok(body) => {
                let answer: DataAnswer<PolicyData> = parse(&body, "read policy")
                    .map_err(|error| self.classify(Op::ReadPolicy, "", error))?;
                Ok(parse_decrypt_only_policy(
                    &answer.data.unwrap_or_default().policy,
                ))
            }
            Err(ProviderError::NotFound(_)) => Ok(Default::default()),
            Err(error) => Err(error),
        }
    }

    /// Adds or removes `key` of this mount in [`DECRYPT_ONLY_POLICY`]. Read, change, write: two
    /// administrators changing it at the same moment can lose one change (Vault policies have no
    /// check-and-set); `keys describe` shows the outcome.
    async fn update_decrypt_only(
        &self,
        key: &str,
        decrypt_only: bool,
    ) -> Result<bool, ProviderError> {
        let mut entries = self.decrypt_only_entries().await?;
        let entry = (self.mount.clone(), key.to_owned());
        let changed = if decrypt_only {
            entries.insert(entry)
        } else {
            entries.remove(&entry)
        };
        if changed {
            self.admin_call(
                Op::WritePolicy,
                "",
                RequestMethod::PUT,
                format!("sys/policies/acl/{DECRYPT_ONLY_POLICY}"),
                Some(serde_json::json!({ "policy": render_decrypt_only_policy(&entries) })),
            )
            .await?;
        }
        Ok(changed)
    }

    /// What differs in an existing key from what `create_kek` would have set.
    fn unsafe_settings(&self, key: &str, data: &KeyData) -> Vec<String> {
        let mut notes = Vec::new();
        let key_type = data.key_type.as_deref().unwrap_or("unknown");
        if !matches!(
            key_type,
            "aes256-gcm96" | "aes128-gcm96" | "chacha20-poly1305"
        ) {
            notes.push(format!(
                "warning: {}/{key} has type {key_type}, which cannot bind the namespace as \
                 associated data; kmscodec needs an AEAD type ({CREATED_KEY_TYPE})",
                self.mount
            ));
        }
        if data.exportable || data.allow_plaintext_backup {
            notes.push(format!(
                "warning: {}/{key} is exportable or allows plaintext backup: its material can \
                 leave vault (this cannot be undone)",
                self.mount
            ));
        }
        if data.deletion_allowed {
            notes.push(format!(
                "warning: {}/{key} has deletion_allowed = true: anyone with delete on it can \
                 destroy every payload sealed under it",
                self.mount
            ));
        }
        if data.soft_deleted {
            notes.push(format!(
                "{}/{key} is soft-deleted: unusable until restored",
                self.mount
            ));
        }
        notes
    }
}

#[async_trait]
impl KeyAdmin for VaultTransit {
    async fn create_kek(&self, _namespace: &str, key: &str) -> Result<CreatedKek, ProviderError> {
        if let Some(existing) = self.read_key(key).await? {
            let mut notes = vec![format!(
                "vault transit key {}/{key} already exists (type {}, latest version {})",
                self.mount,
                existing.key_type.as_deref().unwrap_or("unknown"),
                existing.latest_version.unwrap_or(0)
            )];
            notes.extend(self.unsafe_settings(key, &existing));
            return Ok(CreatedKek {
                created: false,
                key_id: key.to_owned(),
                notes,
            });
        }
        self.admin_call(
            Op::CreateKey,
            key,
            RequestMethod::POST,
            format!("{}/keys/{key}", self.mount),
            Some(serde_json::json!({
                "type": CREATED_KEY_TYPE,
                "exportable": false,
                "allow_plaintext_backup": false,
            })),
        )
        .await?;
        // deletion_allowed is false on a new key; read back to prove every setting.
        let created = self.existing_key(key).await?;
        let mut notes = vec![format!(
            "vault transit key {}/{key}: type {}, exportable {}, allow_plaintext_backup {}, \
             deletion_allowed {}",
            self.mount,
            created.key_type.as_deref().unwrap_or("unknown"),
            created.exportable,
            created.allow_plaintext_backup,
            created.deletion_allowed
        )];
        notes.extend(self.unsafe_settings(key, &created));
        Ok(CreatedKek {
            created: true,
            key_id: key.to_owned(),
            notes,
        })
    }

    async fn rotate_kek(&self, key: &str) -> Result<RotatedKek, ProviderError> {
        Self::check_key_name(key)?;
        self.existing_key(key).await?;
        self.admin_call(
            Op::RotateKey,
            key,
            RequestMethod::POST,
            format!("{}/keys/{key}/rotate", self.mount),
            Some(serde_json::json!({})),
        )
        .await?;
        let rotated = self.existing_key(key).await?;
        Ok(RotatedKek {
            version: rotated.latest_version,
            notes: vec![format!(
                "vault transit key {}/{key} rotated; older versions stay for decryption \
                 (min_decryption_version {})",
                self.mount,
                rotated.min_decryption_version.unwrap_or(1)
            )],
        })
    }

    async fn set_decrypt_only(
        &self,
        key: &str,
        decrypt_only: bool,
    ) -> Result<Vec<String>, ProviderError> {
        self.existing_key(key).await?;
        let changed = self.update_decrypt_only(key, decrypt_only).await?;
        let mut notes = vec![format!(
            "vault policy {DECRYPT_ONLY_POLICY} {} {}/datakey/wrapped/{key}{}",
            if decrypt_only {
                "denies"
            } else {
                "no longer denies"
            },
            self.mount,
            if changed { "" } else { " (unchanged)" }
        )];
        if decrypt_only {
            notes.push(format!(
                "enforced only for tokens holding the {DECRYPT_ONLY_POLICY} policy: the sidecar's \
                 role must list it in token_policies (policies/README.md)"
            ));
        }
        Ok(notes)
    }

    async fn shred_kek(
        &self,
        key: &str,
        _request: ShredRequest,
    ) -> Result<ShreddedKek, ProviderError> {
        self.existing_key(key).await?;
        self.admin_call(
            Op::ConfigureKey,
            key,
            RequestMethod::POST,
            format!("{}/keys/{key}/config", self.mount),
            Some(serde_json::json!({ "deletion_allowed": true })),
        )
        .await?;
        self.admin_call(
            Op::DeleteKey,
            key,
            RequestMethod::DELETE,
            format!("{}/keys/{key}", self.mount),
            None,
        )
        .await?;
        let mut notes = vec![
            format!(
                "vault transit key {}/{key} deleted, every version: vault has no waiting period",
                self.mount
            ),
            "vault snapshots and backups taken earlier still hold the key: destroy them too"
                .to_owned(),
        ];
        // A key created later under the same name must not start decrypt-only.
        match self.update_decrypt_only(key, false).await {
            Ok(true) => notes.push(format!("removed from the {DECRYPT_ONLY_POLICY} policy")),
            Ok(false) => {}
            Err(error) => notes.push(format!(
                "could not remove it from the {DECRYPT_ONLY_POLICY} policy: {error}"
            )),
        }
        Ok(ShreddedKek {
            destroyed_now: true,
            destroy_after: None,
            notes,
        })
    }

    async fn cancel_shred(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        Err(ProviderError::Destroyed(format!(
            "vault deletes transit keys at once: {}/{key} has no scheduled destruction to cancel",
            self.mount
        )))
    }

    async fn list_keks(&self) -> Result<Vec<String>, ProviderError> {
        let answer = self
            .admin_call(
                Op::ListKeys,
                "",
                RequestMethod::LIST,
                format!("{}/keys", self.mount),
                None,
            )
            .await;
        match answer {
            Ok(body) => {
                let answer: DataAnswer<KeyList> = parse(&body, "list keys")
                    .map_err(|error| self.classify(Op::ListKeys, "", error))?;
                Ok(answer.data.unwrap_or_default().keys)
            }
            // An empty mount answers 404.
            Err(ProviderError::NotFound(_)) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    async fn inspect_kek(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        let mut description = self.describe(key).await?;
        match self.decrypt_only_entries().await {
            Ok(entries) => {
                if entries.contains(&(self.mount.clone(), key.to_owned())) {
                    description.encrypt_enabled = false;
                    description.notes.push(format!(
                        "decrypt-only: the {DECRYPT_ONLY_POLICY} policy denies new data keys"
                    ));
                }
            }
            Err(error) => description.notes.push(format!(
                "decrypt-only state unknown: cannot read policy {DECRYPT_ONLY_POLICY}: {error}"
            )),
        }
        Ok(description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypt_only_policy_round_trips_and_keeps_other_mounts() {
        let mut entries = std::collections::BTreeSet::new();
        assert!(parse_decrypt_only_policy(&render_decrypt_only_policy(&entries)).is_empty());
        entries.insert(("transit".to_owned(), "kmscodec-a".to_owned()));
        entries.insert(("team/transit".to_owned(), "kmscodec-b".to_owned()));
        let text = render_decrypt_only_policy(&entries);
        assert!(
            text.contains(
                "path \"transit/datakey/wrapped/kmscodec-a\" { capabilities = [\"deny\"] }"
            )
        );
        assert!(text.contains("path \"team/transit/encrypt/kmscodec-b\""));
        assert_eq!(parse_decrypt_only_policy(&text), entries);
        // Lines that are not ours are ignored, never turned into entries.
        assert!(
            parse_decrypt_only_policy("path \"sys/*\" { capabilities = [\"sudo\"] }").is_empty()
        );
    }

    #[test]
    fn associated_data_names_the_namespace() {
        let decoded = base64_simd::STANDARD
            .decode_to_vec(associated_data("payments").as_bytes())
            .unwrap_or_default();
        assert_eq!(decoded, b"kmscodec/v1 namespace=payments");
    }

    #[test]
    fn ciphertext_versions() {
        assert_eq!(ciphertext_version("vault:v1:AAAA"), Some(1));
        assert_eq!(ciphertext_version("vault:v12:ab+/="), Some(12));
        for bad in [
            "vault:v0:AAAA",
            "vault:v:AAAA",
            "vault:v1:",
            "vault:v1",
            "vault:vx:AAAA",
            "vault:v1:AA AA",
            "vault:v99999999999:AAAA",
            "v1:AAAA",
        ] {
            assert_eq!(ciphertext_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_messages_are_flattened() {
        assert_eq!(
            error_message(br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#),
            "permission denied"
        );
        assert_eq!(
            error_message(br#"{"errors":["encryption key not found"]}"#),
            "encryption key not found"
        );
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(b""), "no message");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) >= BACKOFF_BASE && backoff(0) <= BACKOFF_BASE.mul_f64(1.5));
        assert!(backoff(1) >= BACKOFF_BASE * 2);
        assert!(backoff(30) <= BACKOFF_MAX.mul_f64(1.5));
    }

    fn config(address: &str) -> VaultConfig {
        VaultConfig {
            address: address.to_owned(),
            mount: "transit".to_owned(),
            namespace: Some("team-a".to_owned()),
            ca_cert: None,
            timeout: Duration::from_secs(1),
            retries: 0,
            auth: VaultAuth::Token(VaultToken::Env {
                variable: "T".to_owned(),
                value: crate::secret::Credential::new("s.secret-token"),
            }),
        }
    }

    #[test]
    fn requests_carry_version_token_and_namespace() {
        let provider = VaultTransit::new(&config("http://127.0.0.1:8200")).unwrap_or_else(|e| {
            panic!("{e}");
        });
        let client = provider.client("s.secret-token");
        let request = http_request(&client, LookupTokenSelfRequest::default())
            .unwrap_or_else(|_| panic!("request"));
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:8200/v1/auth/token/lookup-self"
        );
        assert_eq!(request.headers()["x-vault-token"], "s.secret-token");
        assert_eq!(request.headers()["x-vault-namespace"], "team-a");
        let login = LoginWithApproleRequest::builder()
            .mount("approle")
            .role_id("r")
            .secret_id("s")
            .build()
            .unwrap_or_else(|_| panic!("builder"));
        let request = http_request(&provider.anonymous, login).unwrap_or_else(|_| panic!("login"));
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:8200/v1/auth/approle/login"
        );
        assert!(request.headers().get("x-vault-token").is_none());
        let datakey = RawPost {
            path: "transit/datakey/wrapped/kmscodec-a".to_owned(),
            body: Vec::new(),
        };
        let request = http_request(&client, datakey).unwrap_or_else(|_| panic!("datakey"));
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:8200/v1/transit/datakey/wrapped/kmscodec-a"
        );
        assert!(!format!("{provider:?}").contains("secret-token"));
    }

    #[tokio::test]
    async fn header_input_is_checked_before_any_call() {
        // Nothing listens on port 9: a call would fail as unavailable, not invalid.
        let provider = VaultTransit::new(&config("http://127.0.0.1:9")).unwrap_or_else(|e| {
            panic!("{e}");
        });
        let kek = |key: &str, version| KekRef {
            key: key.to_owned(),
            version,
        };
        for (kek, wrapped) in [
            (kek("kmscodec-a", 2), "vault:v1:AAAA"),
            (kek("../sys/seal", 1), "vault:v1:AAAA"),
            (kek("kmscodec-a?x=1", 1), "vault:v1:AAAA"),
            (kek("kmscodec-a", 1), "not-a-ciphertext"),
        ] {
            assert_eq!(
                provider
                    .unwrap_data_key("ns", &kek, &WrappedKey::new(wrapped.as_bytes().to_vec()))
                    .await
                    .err(),
                Some(ProviderError::Invalid),
                "{kek} {wrapped}"
            );
        }
        assert!(matches!(
            provider.generate_data_key("ns", "a/b").await,
            Err(ProviderError::NotFound(_))
        ));
        assert!(matches!(
            provider.health().await,
            Err(ProviderError::Unavailable(_))
        ));
    }
}
