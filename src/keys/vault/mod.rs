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
//!   (`crate::namespace`), so the string is unambiguous.
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
use crate::secret::{DATA_KEY_LEN, DataKey, KekRef, ProviderKind, WrappedKey};
use session::{RefreshState, Session};
pub use settings::{
    KUBERNETES_DEFAULT_JWT_FILE, VAULT_DEFAULT_APPROLE_MOUNT, VAULT_DEFAULT_KUBERNETES_MOUNT,
    VAULT_DEFAULT_MOUNT, VAULT_DEFAULT_RETRIES, VAULT_DEFAULT_TIMEOUT, VaultAuth, VaultConfig,
    VaultToken, valid_header_token, valid_mount_path, valid_transit_key_name,
};

mod admin;
mod session;
mod settings;
mod wire;

use wire::{
    AuthAnswer, CallError, DataAnswer, DataKeyData, DecryptData, KeyData, LoginAuth, LookupData,
    RawCall, RenewAuth, build_error, error_chain, error_message, http_request, parse,
};

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
                http_request(client, RawCall::post(path.clone(), body.clone()))
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

#[cfg(test)]
mod tests;
