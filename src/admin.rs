//! Namespace key administration: the library behind `kmscodec keys ...`, `kmscodec rewrap` and
//! the admin HTTP API ([`crate::server::admin_api`]).
//!
//! This module owns: resolving a namespace to its provider and key-encryption key (KEK) from the
//! configuration, exactly as the keyring does; calling [`KeyAdmin`] on that provider; telling
//! running kmscodec processes about a change through their admin API (`--sidecar URL`); the
//! in-process operations that API serves ([`rotate_data_key`], [`forget_data_keys`]); re-sealing
//! payloads ([`rewrap`]); one structured audit line per operation (target [`AUDIT_TARGET`]); and
//! the reports the CLI prints, as a table for people or JSON for scripts.
//!
//! It must never print or log key material, data keys or tokens (reports carry key names,
//! versions and dates only), never mint or unwrap data keys except through the codec in
//! [`rewrap`], and never act before every argument is checked: a usage error
//! ([`AdminError::Usage`]) is always raised before any provider is contacted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::app::App;
use crate::codec::{CodecError, NamespaceCheck, is_sealed};
use crate::config::{Config, ProviderConfig, valid_namespace, valid_transit_key_name};
use crate::envelope;
use crate::keyring::{Keyring, KeyringError, NamespaceSnapshot};
use crate::keys::aws_kms::{self, AwsKms};
use crate::keys::local_file::LocalFile;
use crate::keys::vault::VaultTransit;
use crate::keys::{KeyAdmin, KeyDescription, ProviderError, ShredRequest};
use crate::payload::Payload;

/// The `tracing` target of audit lines: one per administration operation, whatever its outcome.
pub const AUDIT_TARGET: &str = "kmscodec::audit";
/// The waiting period of `keys shred` when none is given, in days (AWS KMS's own default).
pub const DEFAULT_PENDING_DAYS: u32 = 30;
/// The path prefix of the admin HTTP API.
pub const API_PREFIX: &str = "/admin/v1";
/// How long one call to a sidecar's admin API may take.
const SIDECAR_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an administration operation failed. [`AdminError::is_usage`] decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The invocation or the configuration does not allow the operation; nothing was done.
    #[error("{0}")]
    Usage(String),
    /// The key provider refused or failed.
    #[error("{what}: {error}")]
    Provider {
        /// What was being done (`rotate vault key kmscodec-payments`).
        what: String,
        /// What the provider said.
        error: ProviderError,
    },
    /// A running kmscodec process could not be reached or refused.
    #[error("{0}")]
    Sidecar(String),
    /// Payloads could not be re-sealed.
    #[error("{0}")]
    Rewrap(String),
}

impl AdminError {
    /// Whether this is a usage or configuration error (exit code 2) rather than a failed
    /// operation (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Usage(_))
    }
}

impl From<ProviderError> for AdminError {
    fn from(error: ProviderError) -> Self {
        Self::Provider {
            what: "key provider".to_owned(),
            error,
        }
    }
}

fn usage(message: impl Into<String>) -> AdminError {
    AdminError::Usage(message.into())
}

// ---------------------------------------------------------------------------------------------
// Namespaces and their keys

/// How the configuration maps a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// A `[namespaces.NAME]` entry.
    Exact,
    /// The `[namespaces."*"]` entry.
    Wildcard,
    /// No entry (only `keys create --provider` accepts this).
    Unconfigured,
}

/// A namespace, its provider and its KEK.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The Temporal namespace.
    pub namespace: String,
    /// The provider's name in `[providers]`.
    pub provider: String,
    /// The provider's kind (`local`, `vault`, `aws`).
    pub provider_kind: &'static str,
    /// The KEK reference, `{namespace}` substituted.
    pub key: String,
    /// Where the mapping comes from.
    pub mapping: Mapping,
}

/// The administration side of one configuration: providers are built on first use.
pub struct Admin {
    config: Config,
    providers: Mutex<BTreeMap<String, Arc<dyn KeyAdmin>>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// The KEK name `keys create --provider` uses for a namespace without a configuration entry:
/// the prefixes the shipped policies grant (`kmscodec-*` transit keys, `alias/kmscodec/*`).
pub fn default_key(provider_kind: &str, namespace: &str) -> String {
    match provider_kind {
        "aws" => format!("alias/kmscodec/{namespace}"),
        _ => format!("kmscodec-{namespace}"),
    }
}

fn provider_names(config: &Config) -> String {
    if config.providers.is_empty() {
        "none".to_owned()
    } else {
        config
            .providers
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `NAME` as a TOML table key: bare when it is a plain word, quoted otherwise.
fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        toml_string(name)
    }
}

fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

impl Admin {
    /// Administration over `config`'s providers and namespaces. Does no I/O.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            providers: Mutex::new(BTreeMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Resolves `namespace`. `provider` (from `--provider`) must exist and, when the namespace
    /// is configured, agree with the configuration; `allow_unconfigured` lets `keys create`
    /// name a namespace the configuration does not cover yet (then `provider` is required).
    pub fn target(
        &self,
        namespace: &str,
        provider: Option<&str>,
        key: Option<&str>,
        allow_unconfigured: bool,
    ) -> Result<Target, AdminError> {
        if !valid_namespace(namespace) {
            return Err(usage(format!(
                "--namespace {namespace:?} is not a valid namespace (1-255 printable characters, \
                 no spaces or '/')"
            )));
        }
        if let Some(name) = provider
            && !self.config.providers.contains_key(name)
        {
            return Err(usage(format!(
                "unknown provider {name:?} (configured: {})",
                provider_names(&self.config)
            )));
        }
        let entry = self
            .config
            .namespaces
            .get(namespace)
            .map(|entry| (entry, Mapping::Exact))
            .or_else(|| {
                self.config
                    .namespaces
                    .get("*")
                    .map(|entry| (entry, Mapping::Wildcard))
            });
        let (provider_name, key, mapping) = match entry {
            Some((entry, mapping)) => {
                if let Some(name) = provider
                    && name != entry.provider
                {
                    let by = match mapping {
                        Mapping::Exact => format!("[namespaces.{}]", toml_key(namespace)),
                        _ => "the \"*\" entry".to_owned(),
                    };
                    return Err(usage(format!(
                        "namespace {namespace:?} uses provider {:?} ({by}), not {name:?}",
                        entry.provider
                    )));
                }
                let configured = entry.key.replace("{namespace}", namespace);
                if let Some(key) = key
                    && key != configured
                {
                    return Err(usage(format!(
                        "namespace {namespace:?} uses key {configured:?} in the configuration, \
                         not {key:?}"
                    )));
                }
                (entry.provider.clone(), configured, mapping)
            }
            None if allow_unconfigured => {
                let Some(name) = provider else {
                    return Err(usage(format!(
                        "namespace {namespace:?} is not in the configuration (no \
                         [namespaces.{}] and no \"*\" entry): name the provider with --provider \
                         (configured: {})",
                        toml_key(namespace),
                        provider_names(&self.config)
                    )));
                };
                let kind = self
                    .config
                    .providers
                    .get(name)
                    .map(ProviderConfig::kind)
                    .unwrap_or("local");
                let key = key
                    .map(str::to_owned)
                    .unwrap_or_else(|| default_key(kind, namespace));
                (name.to_owned(), key, Mapping::Unconfigured)
            }
            None => {
                return Err(usage(format!(
                    "namespace {namespace:?} is not in the configuration (no [namespaces.{}] and \
                     no \"*\" entry)",
                    toml_key(namespace)
                )));
            }
        };
        let provider_kind = self
            .config
            .providers
            .get(&provider_name)
            .map(ProviderConfig::kind)
            .unwrap_or("local");
        match provider_kind {
            "vault" if !valid_transit_key_name(&key) => {
                return Err(usage(format!(
                    "{key:?} is not a valid transit key name (letters, digits, '_', '-' and '.', \
                     with a letter, digit or '_' at each end)"
                )));
            }
            "aws" => {
                aws_kms::check_key_reference(&key).map_err(usage)?;
            }
            _ if key.is_empty() => return Err(usage("the key name must not be empty")),
            _ => {}
        }
        Ok(Target {
            namespace: namespace.to_owned(),
            provider: provider_name,
            provider_kind,
            key,
            mapping,
        })
    }

    /// The other namespaces whose payloads the target's KEK also protects: exact entries naming
    /// the same provider and key, and every namespace of a `*` entry whose key has no
    /// `{namespace}` (`"*"` in the list).
    pub fn shared_with(&self, target: &Target) -> Vec<String> {
        let mut shared = Vec::new();
        for (name, entry) in &self.config.namespaces {
            if *name == target.namespace || entry.provider != target.provider {
                continue;
            }
            if name == "*" {
                if !entry.key.contains("{namespace}") && entry.key == target.key {
                    shared.push("*".to_owned());
                }
            } else if entry.key == target.key {
                shared.push(name.clone());
            }
        }
        shared
    }

    /// The provider named `name`, built on first use. `create_with`: when the provider is a
    /// local file that does not exist yet, create it holding this key.
    fn provider(
        &self,
        name: &str,
        create_with: Option<&str>,
    ) -> Result<Arc<dyn KeyAdmin>, AdminError> {
        let mut providers = self
            .providers
            .lock()
            .map_err(|_| AdminError::Usage("provider table lock poisoned".to_owned()))?;
        if let Some(provider) = providers.get(name) {
            return Ok(Arc::clone(provider));
        }
        let Some(config) = self.config.providers.get(name) else {
            return Err(usage(format!(
                "unknown provider {name:?} (configured: {})",
                provider_names(&self.config)
            )));
        };
        let failed = |error: ProviderError| AdminError::Provider {
            what: format!("provider {name}"),
            error,
        };
        let provider: Arc<dyn KeyAdmin> = match config {
            ProviderConfig::Local {
                path,
                create_missing,
            } => {
                let local = match create_with {
                    Some(key) if !path.exists() => {
                        LocalFile::open_or_create(path, key).map_err(failed)?.0
                    }
                    _ if *create_missing && !path.exists() => {
                        return Err(usage(format!(
                            "keyring file {} does not exist yet: `kmscodec keys create` makes it",
                            path.display()
                        )));
                    }
                    _ => LocalFile::open(path).map_err(failed)?,
                };
                Arc::new(local)
            }
            ProviderConfig::Vault(vault) => Arc::new(VaultTransit::new(vault).map_err(failed)?),
            ProviderConfig::Aws(options) => Arc::new(AwsKms::new(options.clone())),
        };
        providers.insert(name.to_owned(), Arc::clone(&provider));
        Ok(provider)
    }

    fn provider_for(&self, target: &Target) -> Result<Arc<dyn KeyAdmin>, AdminError> {
        self.provider(&target.provider, None)
    }
}

fn provider_error(what: impl Into<String>) -> impl FnOnce(ProviderError) -> AdminError {
    let what = what.into();
    move |error| AdminError::Provider { what, error }
}

/// Writes the audit line of one operation. `detail` never holds key material.
fn audit(via: &str, op: &str, target: &Target, outcome: Result<&str, &AdminError>) {
    match outcome {
        Ok(detail) => tracing::info!(
            target: AUDIT_TARGET,
            audit = true,
            via,
            op,
            namespace = %target.namespace,
            provider = %target.provider,
            provider_kind = target.provider_kind,
            key = %target.key,
            outcome = "ok",
            detail,
            "key administration: {op} {}",
            target.namespace
        ),
        Err(error) => tracing::warn!(
            target: AUDIT_TARGET,
            audit = true,
            via,
            op,
            namespace = %target.namespace,
            provider = %target.provider,
            provider_kind = target.provider_kind,
            key = %target.key,
            outcome = "failed",
            error = %error,
            "key administration: {op} {} failed",
            target.namespace
        ),
    }
}

/// Audits `result` and passes it on.
fn audited<T>(
    op: &str,
    target: &Target,
    detail: impl FnOnce(&T) -> String,
    result: Result<T, AdminError>,
) -> Result<T, AdminError> {
    match &result {
        Ok(value) => audit("cli", op, target, Ok(&detail(value))),
        Err(error) => audit("cli", op, target, Err(error)),
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Running processes (the admin API, as a client)

/// A running kmscodec process's view of one namespace's data keys (`GET /admin/v1/namespaces`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataKeyUsage {
    /// The namespace.
    pub namespace: String,
    /// The provider's configured name.
    pub provider: String,
    /// The KEK reference.
    pub key: String,
    /// `encryption-key-id` of the active data key, if one is active.
    pub active_key_id: Option<String>,
    /// Seals under the active data key.
    pub uses: u64,
    /// Plaintext bytes sealed under the active data key.
    pub bytes: u64,
    /// Seals after which the replacement is fetched in the background.
    pub soft_limit: u64,
    /// Seals after which the data key is never used again.
    pub hard_limit: u64,
    /// Age of the active data key, in seconds.
    pub age_seconds: f64,
    /// Age after which the data key is never used again, in seconds.
    pub max_age_seconds: f64,
    /// Data keys minted so far, by reason (`initial`, `count`, `age`, `bytes`, `manual`).
    pub rotations: BTreeMap<String, u64>,
    /// Seals refused because the hard limit was reached.
    pub hard_limit_refusals: u64,
    /// Failed attempts to mint a data key.
    pub rotation_failures: u64,
}

impl From<NamespaceSnapshot> for DataKeyUsage {
    fn from(snapshot: NamespaceSnapshot) -> Self {
        Self {
            namespace: snapshot.namespace,
            provider: snapshot.provider,
            key: snapshot.key,
            active_key_id: snapshot.active_key_id,
            uses: snapshot.uses,
            bytes: snapshot.bytes,
            soft_limit: snapshot.soft_limit,
            hard_limit: snapshot.hard_limit,
            age_seconds: snapshot.age_seconds,
            max_age_seconds: snapshot.max_age_seconds,
            rotations: snapshot.rotations.into_iter().collect(),
            hard_limit_refusals: snapshot.hard_limit_refusals,
            rotation_failures: snapshot.rotation_failures,
        }
    }
}

/// The answer of `GET /admin/v1/namespaces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespacesAnswer {
    /// Every namespace this process has used, sorted.
    pub namespaces: Vec<DataKeyUsage>,
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
            target: AUDIT_TARGET,
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
            target: AUDIT_TARGET,
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

/// Retires `namespace`'s active data key in this process: the next encode mints a new one
/// (emergency rotation after a suspected leak, or to pick up a rotated or decrypt-only KEK now).
pub fn rotate_data_key(
    keyring: &Keyring,
    namespace: &str,
    caller: &ApiCaller,
) -> Result<DataKeyAnswer, KeyringError> {
    let result = keyring.retire_active(namespace);
    api_audit(
        caller,
        "rotate-data-key",
        namespace,
        result.as_ref().copied(),
    );
    Ok(DataKeyAnswer {
        namespace: namespace.to_owned(),
        had_active_key: result?,
        cache_cleared: false,
    })
}

/// Forgets `namespace`'s data keys in this process after its KEK was shredded: retires the
/// active data key and empties the decode cache ([`Keyring::forget_namespace`]).
pub fn forget_data_keys(
    keyring: &Keyring,
    namespace: &str,
    caller: &ApiCaller,
) -> Result<DataKeyAnswer, KeyringError> {
    let result = keyring.forget_namespace(namespace);
    api_audit(
        caller,
        "forget-data-keys",
        namespace,
        result.as_ref().copied(),
    );
    Ok(DataKeyAnswer {
        namespace: namespace.to_owned(),
        had_active_key: result?,
        cache_cleared: true,
    })
}

/// The usage of every namespace this process has used.
pub fn namespaces(keyring: &Keyring) -> NamespacesAnswer {
    NamespacesAnswer {
        namespaces: keyring
            .snapshot()
            .into_iter()
            .map(DataKeyUsage::from)
            .collect(),
    }
}

/// A client of running kmscodec processes' admin API.
pub struct SidecarClient {
    http: reqwest::Client,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for SidecarClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarClient")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What one sidecar said.
#[derive(Debug, Clone, Serialize)]
pub struct SidecarOutcome {
    /// The sidecar's base URL.
    pub url: String,
    /// Its answer, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<DataKeyAnswer>,
    /// Why it could not be told, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads a bearer token file: trimmed, visible ASCII only.
pub fn read_token_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            format!(
                "{} does not hold a token (empty, or characters other than visible ASCII)",
                path.display()
            )
        })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Checks a sidecar base URL (`http://127.0.0.1:8089`, `https://host/prefix`) and returns it
/// without a trailing `/`.
pub fn check_sidecar_url(url: &str) -> Result<String, AdminError> {
    let parsed = url::Url::parse(url)
        .map_err(|error| usage(format!("--sidecar {url:?} is not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(usage(format!(
            "--sidecar {url:?}: expected http(s)://host[:port][/prefix], without query or \
             credentials"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

impl SidecarClient {
    /// A client sending `token` (if any) as `Authorization: Bearer`.
    pub fn new(token: Option<Zeroizing<String>>) -> Result<Self, AdminError> {
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(SIDECAR_TIMEOUT)
            .build()
            .map_err(|error| {
                AdminError::Sidecar(format!("cannot build the HTTP client: {error}"))
            })?;
        Ok(Self { http, token })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        path: &str,
    ) -> Result<Vec<u8>, AdminError> {
        let full = format!("{url}{API_PREFIX}{path}");
        let mut request = self.http.request(method, &full);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|error| AdminError::Sidecar(format!("{url}: {error}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| AdminError::Sidecar(format!("{url}: {error}")))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body)
            .map(|error| format!("{} ({})", error.message, error.code))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        let hint = match status.as_u16() {
            401 => ": pass the admin token with --sidecar-token-file",
            404 if detail.contains("not_found") && !detail.contains("namespace") => {
                ": is this a kmscodec admin API?"
            }
            _ => "",
        };
        Err(AdminError::Sidecar(format!(
            "{url}: HTTP {}: {detail}{hint}",
            status.as_u16()
        )))
    }

    /// `GET /admin/v1/namespaces`.
    pub async fn namespaces(&self, url: &str) -> Result<NamespacesAnswer, AdminError> {
        let body = self.send(reqwest::Method::GET, url, "/namespaces").await?;
        serde_json::from_slice(&body)
            .map_err(|error| AdminError::Sidecar(format!("{url}: unexpected answer: {error}")))
    }

    async fn data_key_call(&self, url: &str, namespace: &str, route: &str) -> SidecarOutcome {
        let encoded: String = url::form_urlencoded::byte_serialize(namespace.as_bytes()).collect();
        let result = self
            .send(
                reqwest::Method::POST,
                url,
                &format!("/namespaces/{encoded}/{route}"),
            )
            .await
            .and_then(|body| {
                serde_json::from_slice::<DataKeyAnswer>(&body).map_err(|error| {
                    AdminError::Sidecar(format!("{url}: unexpected answer: {error}"))
                })
            });
        match result {
            Ok(answer) => SidecarOutcome {
                url: url.to_owned(),
                answer: Some(answer),
                error: None,
            },
            Err(error) => SidecarOutcome {
                url: url.to_owned(),
                answer: None,
                error: Some(error.to_string()),
            },
        }
    }

    /// Asks every sidecar to retire `namespace`'s active data key.
    pub async fn rotate_data_key(&self, urls: &[String], namespace: &str) -> Vec<SidecarOutcome> {
        let mut outcomes = Vec::new();
        for url in urls {
            outcomes.push(self.data_key_call(url, namespace, "rotate-data-key").await);
        }
        outcomes
    }

    /// Asks every sidecar to forget `namespace`'s data keys (after a shred).
    pub async fn forget_data_keys(&self, urls: &[String], namespace: &str) -> Vec<SidecarOutcome> {
        let mut outcomes = Vec::new();
        for url in urls {
            outcomes.push(self.data_key_call(url, namespace, "forget-data-keys").await);
        }
        outcomes
    }
}

/// The sidecars that could not be told, as one error, if any.
pub fn sidecar_failures(outcomes: &[SidecarOutcome], done: &str) -> Option<AdminError> {
    let failed: Vec<&str> = outcomes
        .iter()
        .filter_map(|outcome| outcome.error.as_deref())
        .collect();
    if failed.is_empty() {
        return None;
    }
    Some(AdminError::Sidecar(format!(
        "{done}, but {} of {} running process{} could not be told: {}",
        failed.len(),
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "es" },
        failed.join("; ")
    )))
}

// ---------------------------------------------------------------------------------------------
// Reports

/// Renders rows under headers, columns padded to their widest cell.
fn render_rows(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let width = widths.get(index).copied().unwrap_or(0);
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `key: value` lines, keys padded.
fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (name, value) in fields {
        let _ = writeln!(out, "{name:<width$}  {value}");
    }
    out
}

fn versions_text(description: &KeyDescription) -> String {
    if description.versions.is_empty() {
        return "(kept inside the provider)".to_owned();
    }
    description
        .versions
        .iter()
        .map(|version| match &version.created_at {
            Some(at) => format!("v{} ({at})", version.version),
            None => format!("v{}", version.version),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn enabled(flag: bool) -> String {
    if flag { "enabled" } else { "disabled" }.to_owned()
}

fn mapping_text(target: &Target) -> String {
    match target.mapping {
        Mapping::Exact => format!("[namespaces.{}]", toml_key(&target.namespace)),
        Mapping::Wildcard => "[namespaces.\"*\"]".to_owned(),
        Mapping::Unconfigured => "not configured".to_owned(),
    }
}

fn sidecar_lines(fields: &mut Vec<(&str, String)>, outcomes: &[SidecarOutcome]) {
    for outcome in outcomes {
        let text = match (&outcome.answer, &outcome.error) {
            (Some(answer), _) if answer.cache_cleared => format!(
                "{}: forgot its data keys ({})",
                outcome.url,
                if answer.had_active_key {
                    "active data key retired, decode cache emptied"
                } else {
                    "no active data key, decode cache emptied"
                }
            ),
            (Some(answer), _) => format!(
                "{}: {}",
                outcome.url,
                if answer.had_active_key {
                    "active data key retired; the next encode mints a new one"
                } else {
                    "had no active data key"
                }
            ),
            (None, Some(error)) => format!("FAILED: {error}"),
            (None, None) => format!("{}: no answer", outcome.url),
        };
        fields.push(("sidecar", text));
    }
}

/// The configuration lines mapping the target's namespace to its key.
pub fn config_snippet(target: &Target, wildcard_key: Option<&str>) -> String {
    let entry = format!(
        "[namespaces.{}]\nprovider = {}\nkey = {}\n",
        toml_key(&target.namespace),
        toml_string(&target.provider),
        toml_string(&target.key)
    );
    match target.mapping {
        Mapping::Exact => format!("# already in the configuration:\n{entry}"),
        Mapping::Wildcard => format!(
            "# served by the \"*\" entry (key = {}); no change needed. To pin it:\n{entry}",
            toml_string(wildcard_key.unwrap_or("?"))
        ),
        Mapping::Unconfigured => format!("# add to the configuration:\n{entry}"),
    }
}

/// What `keys create` did.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// Whether the key was created (false: it existed; nothing changed).
    pub created: bool,
    /// The provider's identifier of the key.
    pub key_id: String,
    /// Details.
    pub notes: Vec<String>,
    /// The configuration mapping the namespace to the key.
    pub config: String,
}

impl CreateReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("namespace", self.target.namespace.clone()),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
            ("key id", self.key_id.clone()),
            (
                "result",
                if self.created {
                    "created".to_owned()
                } else {
                    "already exists (nothing changed)".to_owned()
                },
            ),
        ];
        for note in &self.notes {
            fields.push(("note", note.clone()));
        }
        format!("{}\n{}", render_fields(&fields), self.config)
    }
}

/// What `keys describe` found.
#[derive(Debug, Clone, Serialize)]
pub struct DescribeReport {
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// Other namespaces protected by the same KEK.
    pub shared_with: Vec<String>,
    /// What the provider says.
    pub description: KeyDescription,
    /// What running processes say, by sidecar URL.
    pub sidecars: Vec<SidecarUsage>,
}

/// One sidecar's live data key usage for the namespace.
#[derive(Debug, Clone, Serialize)]
pub struct SidecarUsage {
    /// The sidecar's base URL.
    pub url: String,
    /// Its usage of the namespace; `None` when it has not used the namespace yet.
    pub usage: Option<DataKeyUsage>,
    /// Why it could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn usage_text(usage: &DataKeyUsage) -> String {
    let rotations = usage
        .rotations
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| format!("{reason}={count}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "active data key {}; {} of {} seals (soft limit {}), {} bytes; age {:.0} s of {:.0} s; \
         data keys minted: {}; hard limit refusals {}; mint failures {}",
        usage.active_key_id.as_deref().unwrap_or("none"),
        usage.uses,
        usage.hard_limit,
        usage.soft_limit,
        usage.bytes,
        usage.age_seconds,
        usage.max_age_seconds,
        if rotations.is_empty() {
            "none".to_owned()
        } else {
            rotations
        },
        usage.hard_limit_refusals,
        usage.rotation_failures
    )
}

impl DescribeReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let d = &self.description;
        let mut fields = vec![
            ("namespace", self.target.namespace.clone()),
            ("mapped by", mapping_text(&self.target)),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
            (
                "primary",
                d.primary_version
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            ("versions", versions_text(d)),
            ("encrypt", enabled(d.encrypt_enabled)),
            ("decrypt", enabled(d.decrypt_enabled)),
        ];
        if !self.shared_with.is_empty() {
            fields.push(("shared with", self.shared_with.join(", ")));
        }
        for note in &d.notes {
            fields.push(("note", note.clone()));
        }
        for sidecar in &self.sidecars {
            let text = match (&sidecar.usage, &sidecar.error) {
                (_, Some(error)) => format!("FAILED: {error}"),
                (Some(usage), None) => format!("{}: {}", sidecar.url, usage_text(usage)),
                (None, None) => format!("{}: has not used this namespace yet", sidecar.url),
            };
            fields.push(("sidecar", text));
        }
        render_fields(&fields)
    }
}

/// One row of `keys list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListRow {
    /// The namespace (`*` for a key shared by every namespace of the `*` entry).
    pub namespace: String,
    /// Where the mapping comes from.
    pub mapping: Mapping,
    /// The provider's configured name.
    pub provider: String,
    /// The KEK reference.
    pub key: String,
    /// What the provider says, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<KeyDescription>,
    /// `missing` when the key does not exist yet.
    pub state: String,
    /// Why the provider could not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `keys list` found.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// One row per namespace.
    pub namespaces: Vec<ListRow>,
}

impl ListReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .namespaces
            .iter()
            .map(|row| {
                let (primary, versions, encrypt, decrypt) = match &row.description {
                    Some(d) => (
                        d.primary_version
                            .map(|v| format!("v{v}"))
                            .unwrap_or_else(|| "-".to_owned()),
                        d.versions.len().to_string(),
                        enabled(d.encrypt_enabled),
                        enabled(d.decrypt_enabled),
                    ),
                    None => ("-".into(), "-".into(), "-".into(), "-".into()),
                };
                let state = match &row.error {
                    Some(error) => format!("error: {error}"),
                    None => row.state.clone(),
                };
                vec![
                    row.namespace.clone(),
                    row.provider.clone(),
                    row.key.clone(),
                    primary,
                    versions,
                    encrypt,
                    decrypt,
                    state,
                ]
            })
            .collect();
        render_rows(
            &[
                "NAMESPACE",
                "PROVIDER",
                "KEY",
                "PRIMARY",
                "VERSIONS",
                "ENCRYPT",
                "DECRYPT",
                "STATE",
            ],
            &rows,
        )
    }

    /// Rows whose provider failed (not counting keys that do not exist yet).
    pub fn failures(&self) -> usize {
        self.namespaces
            .iter()
            .filter(|row| row.error.is_some())
            .count()
    }
}

/// What a key operation (`rotate`, `disable-encrypt`, `enable-encrypt`, `cancel-shred`) did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyChangeReport {
    /// The operation.
    pub operation: &'static str,
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// The new primary version (`rotate`, where the provider numbers versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Other namespaces protected by the same KEK, which the change affects too.
    pub shared_with: Vec<String>,
    /// Details.
    pub notes: Vec<String>,
    /// What running processes said.
    pub sidecars: Vec<SidecarOutcome>,
}

impl KeyChangeReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("operation", self.operation.to_owned()),
            ("namespace", self.target.namespace.clone()),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
        ];
        if let Some(version) = self.version {
            fields.push(("new version", format!("v{version}")));
        }
        if !self.shared_with.is_empty() {
            fields.push((
                "also affects",
                format!("namespaces {}", self.shared_with.join(", ")),
            ));
        }
        for note in &self.notes {
            fields.push(("note", note.clone()));
        }
        sidecar_lines(&mut fields, &self.sidecars);
        render_fields(&fields)
    }
}

/// What `keys rotate-data-key` did.
#[derive(Debug, Clone, Serialize)]
pub struct DataKeyReport {
    /// The namespace.
    pub namespace: String,
    /// What each running process said.
    pub sidecars: Vec<SidecarOutcome>,
}

impl DataKeyReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("operation", "rotate-data-key".to_owned()),
            ("namespace", self.namespace.clone()),
        ];
        sidecar_lines(&mut fields, &self.sidecars);
        render_fields(&fields)
    }
}

/// What `keys shred` made unreadable, and how.
#[derive(Debug, Clone, Serialize)]
pub struct ShredReport {
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// The KEK versions destroyed, with their creation times.
    pub versions: String,
    /// The namespaces whose payloads become unreadable (the target first).
    pub unreadable_namespaces: Vec<String>,
    /// What becomes unreadable, in words.
    pub unreadable: String,
    /// Whether the key material is gone already.
    pub destroyed_now: bool,
    /// When it will be, if the provider waits.
    pub destroy_after: Option<String>,
    /// Details.
    pub notes: Vec<String>,
    /// What running processes said.
    pub sidecars: Vec<SidecarOutcome>,
}

impl ShredReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("operation", "shred".to_owned()),
            ("namespace", self.target.namespace.clone()),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
            ("versions", self.versions.clone()),
            (
                "destroyed",
                match (&self.destroy_after, self.destroyed_now) {
                    (_, true) => "now".to_owned(),
                    (Some(after), false) => format!("after {after} (unusable now)"),
                    (None, false) => "scheduled (unusable now)".to_owned(),
                },
            ),
        ];
        for note in &self.notes {
            fields.push(("note", note.clone()));
        }
        sidecar_lines(&mut fields, &self.sidecars);
        format!(
            "{}\nUNREADABLE: {}\n",
            render_fields(&fields),
            self.unreadable
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

/// `keys create`: creates the namespace's KEK with safe settings (idempotent) and returns the
/// configuration that maps the namespace to it.
pub async fn create(
    admin: &Admin,
    namespace: &str,
    provider: Option<&str>,
    key: Option<&str>,
) -> Result<CreateReport, AdminError> {
    let target = admin.target(namespace, provider, key, true)?;
    let result = async {
        let local_missing = matches!(
            admin.config.providers.get(&target.provider),
            Some(ProviderConfig::Local { path, .. }) if !path.exists()
        );
        let kek = admin.provider(&target.provider, Some(&target.key))?;
        let mut created = kek
            .create_kek(&target.namespace, &target.key)
            .await
            .map_err(provider_error(format!(
                "create {} key {}",
                target.provider_kind, target.key
            )))?;
        if local_missing {
            // The file was made for this key just now.
            created.created = true;
        }
        Ok(created)
    }
    .await;
    let created = audited(
        "create",
        &target,
        |created| {
            if created.created {
                format!("created {}", created.key_id)
            } else {
                format!("exists {}", created.key_id)
            }
        },
        result,
    )?;
    let wildcard_key = admin
        .config
        .namespaces
        .get("*")
        .map(|entry| entry.key.as_str());
    let config = config_snippet(&target, wildcard_key);
    Ok(CreateReport {
        created: created.created,
        key_id: created.key_id,
        notes: created.notes,
        config,
        target,
    })
}

/// `keys describe`: the KEK as the provider reports it, and, for each sidecar URL, the live
/// data key usage of the namespace in that process.
pub async fn describe(
    admin: &Admin,
    namespace: &str,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<DescribeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let kek = admin.provider_for(&target)?;
    let description = kek
        .inspect_kek(&target.key)
        .await
        .map_err(provider_error(format!(
            "describe {} key {}",
            target.provider_kind, target.key
        )))?;
    let mut usages = Vec::new();
    if let Some(client) = client {
        for url in sidecars {
            match client.namespaces(url).await {
                Ok(answer) => usages.push(SidecarUsage {
                    url: url.clone(),
                    usage: answer
                        .namespaces
                        .into_iter()
                        .find(|usage| usage.namespace == target.namespace),
                    error: None,
                }),
                Err(error) => usages.push(SidecarUsage {
                    url: url.clone(),
                    usage: None,
                    error: Some(error.to_string()),
                }),
            }
        }
    }
    Ok(DescribeReport {
        shared_with: admin.shared_with(&target),
        description,
        sidecars: usages,
        target,
    })
}

/// `keys list`: every configured namespace, and the namespaces the `*` entry serves whose keys
/// exist in its provider.
pub async fn list(admin: &Admin) -> Result<ListReport, AdminError> {
    let mut targets = Vec::new();
    let mut rows = Vec::new();
    for (name, entry) in &admin.config.namespaces {
        if name != "*" {
            targets.push(admin.target(name, None, None, false)?);
            continue;
        }
        let Some((prefix, suffix)) = entry.key.split_once("{namespace}") else {
            // One key for every namespace of the `*` entry.
            let kind = admin
                .config
                .providers
                .get(&entry.provider)
                .map(ProviderConfig::kind)
                .unwrap_or("local");
            targets.push(Target {
                namespace: "*".to_owned(),
                provider: entry.provider.clone(),
                provider_kind: kind,
                key: entry.key.clone(),
                mapping: Mapping::Wildcard,
            });
            continue;
        };
        let names = match admin.provider(&entry.provider, None) {
            Ok(kek) => kek.list_keks().await.map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match names {
            Ok(names) => {
                let found: BTreeSet<String> = names
                    .iter()
                    .filter_map(|name| name.strip_prefix(prefix)?.strip_suffix(suffix))
                    .filter(|namespace| {
                        valid_namespace(namespace)
                            && !admin.config.namespaces.contains_key(*namespace)
                    })
                    .map(str::to_owned)
                    .collect();
                for namespace in found {
                    targets.push(admin.target(&namespace, None, None, false)?);
                }
            }
            Err(error) => rows.push(ListRow {
                namespace: "*".to_owned(),
                mapping: Mapping::Wildcard,
                provider: entry.provider.clone(),
                key: entry.key.clone(),
                description: None,
                state: "unknown".to_owned(),
                error: Some(format!("cannot list the keys of the \"*\" entry: {error}")),
            }),
        }
    }
    for target in targets {
        let result = match admin.provider_for(&target) {
            Ok(kek) => kek.inspect_kek(&target.key).await.map_err(AdminError::from),
            Err(error) => Err(error),
        };
        let (description, state, error) = match result {
            Ok(description) => (Some(description), "ok".to_owned(), None),
            Err(AdminError::Provider {
                error: ProviderError::NotFound(_),
                ..
            }) => (None, "missing (keys create)".to_owned(), None),
            Err(error) => (None, "unknown".to_owned(), Some(error.to_string())),
        };
        rows.push(ListRow {
            namespace: target.namespace,
            mapping: target.mapping,
            provider: target.provider,
            key: target.key,
            description,
            state,
            error,
        });
    }
    Ok(ListReport { namespaces: rows })
}

/// `keys rotate`: a new KEK version in the provider; sidecars, if named, retire their active
/// data key so the next encode uses the new version at once.
pub async fn rotate(
    admin: &Admin,
    namespace: &str,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<KeyChangeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let result = async {
        let kek = admin.provider_for(&target)?;
        kek.rotate_kek(&target.key)
            .await
            .map_err(provider_error(format!(
                "rotate {} key {}",
                target.provider_kind, target.key
            )))
    }
    .await;
    let rotated = audited(
        "rotate",
        &target,
        |rotated| match rotated.version {
            Some(version) => format!("new version v{version}"),
            None => "rotated".to_owned(),
        },
        result,
    )?;
    let mut notes = rotated.notes;
    let outcomes = match client {
        Some(client) => client.rotate_data_key(sidecars, &target.namespace).await,
        None => {
            notes.push(
                "running processes switch at their next data key (soft limit or 90% of max_age); \
                 `keys rotate-data-key --sidecar URL` switches them now"
                    .to_owned(),
            );
            Vec::new()
        }
    };
    Ok(KeyChangeReport {
        operation: "rotate",
        shared_with: admin.shared_with(&target),
        version: rotated.version,
        notes,
        sidecars: outcomes,
        target,
    })
}

/// `keys rotate-data-key`: every named process retires the namespace's active data key.
pub async fn rotate_data_keys(
    admin: &Admin,
    namespace: &str,
    sidecars: &[String],
    client: &SidecarClient,
) -> Result<DataKeyReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let outcomes = client.rotate_data_key(sidecars, &target.namespace).await;
    let told = outcomes.iter().filter(|o| o.error.is_none()).count();
    let detail = format!("{told} of {} processes", outcomes.len());
    match sidecar_failures(&outcomes, "data keys rotated") {
        None => audit("cli", "rotate-data-key", &target, Ok(&detail)),
        Some(error) => audit("cli", "rotate-data-key", &target, Err(&error)),
    }
    Ok(DataKeyReport {
        namespace: target.namespace,
        sidecars: outcomes,
    })
}

/// `keys disable-encrypt` (`decrypt_only = true`) and `keys enable-encrypt`. Disabling also
/// asks the named sidecars to retire their active data key, so that encodes are refused at
/// once rather than when that key ends.
pub async fn set_decrypt_only(
    admin: &Admin,
    namespace: &str,
    decrypt_only: bool,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<KeyChangeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let op = if decrypt_only {
        "disable-encrypt"
    } else {
        "enable-encrypt"
    };
    let result = async {
        let kek = admin.provider_for(&target)?;
        kek.set_decrypt_only(&target.key, decrypt_only)
            .await
            .map_err(provider_error(format!(
                "{op} {} key {}",
                target.provider_kind, target.key
            )))
    }
    .await;
    let mut notes = audited(op, &target, |notes| notes.join("; "), result)?;
    let mut outcomes = Vec::new();
    if decrypt_only {
        match client {
            Some(client) => {
                outcomes = client.rotate_data_key(sidecars, &target.namespace).await;
            }
            None => notes.push(
                "running processes keep sealing under their active data key until it ends (soft \
                 limit or max_age); `keys rotate-data-key --sidecar URL` stops them now"
                    .to_owned(),
            ),
        }
    }
    Ok(KeyChangeReport {
        operation: op,
        shared_with: admin.shared_with(&target),
        version: None,
        notes,
        sidecars: outcomes,
        target,
    })
}

/// The arguments of `keys shred`, checked before anything is done.
#[derive(Debug, Clone)]
pub struct ShredArgs<'a> {
    /// `--namespace`.
    pub namespace: &'a str,
    /// `--confirm`: must repeat the namespace.
    pub confirm: &'a str,
    /// `--pending-days`.
    pub pending_days: Option<u32>,
    /// `--now`.
    pub now: bool,
    /// `--including-shared`: the key also serves other namespaces, and that is intended.
    pub including_shared: bool,
}

/// Checks `keys shred`'s arguments against the target and its provider: the confirmation, the
/// waiting period each provider supports, and keys shared with other namespaces.
pub fn check_shred(
    admin: &Admin,
    args: &ShredArgs<'_>,
) -> Result<(Target, ShredRequest, Vec<String>), AdminError> {
    if args.confirm != args.namespace {
        return Err(usage(format!(
            "--confirm {:?} does not match --namespace {:?}: shredding is irreversible, repeat \
             the namespace exactly",
            args.confirm, args.namespace
        )));
    }
    let target = admin.target(args.namespace, None, None, false)?;
    let pending_days = args.pending_days.unwrap_or(DEFAULT_PENDING_DAYS);
    match target.provider_kind {
        "aws" if args.now => {
            return Err(usage(
                "--now: AWS KMS destroys keys only after a waiting period of 7 to 30 days \
                 (--pending-days)",
            ));
        }
        "aws" if !aws_kms::DELETION_WINDOW_DAYS.contains(&pending_days) => {
            return Err(usage("--pending-days: AWS KMS accepts 7 to 30 days"));
        }
        "vault" if args.pending_days.is_some() => {
            return Err(usage(
                "--pending-days: Vault deletes transit keys at once, without a waiting period \
                 (pass --now to say you know)",
            ));
        }
        _ => {}
    }
    if args.pending_days.is_some() && args.now {
        return Err(usage("--pending-days and --now exclude each other"));
    }
    let shared = admin.shared_with(&target);
    if !shared.is_empty() && !args.including_shared {
        let who = shared
            .iter()
            .map(|name| {
                if name == "*" {
                    "every namespace of the \"*\" entry".to_owned()
                } else {
                    format!("{name:?}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(usage(format!(
            "key {:?} of provider {:?} also protects {who}: shredding it makes their payloads \
             unreadable too; refusing (pass --including-shared if that is intended)",
            target.key, target.provider
        )));
    }
    Ok((
        target,
        ShredRequest {
            pending_days,
            immediately: args.now,
        },
        shared,
    ))
}

/// `keys shred`: crypto-shreds the namespace's KEK. Named sidecars forget the namespace's
/// data keys (active and cached), so nothing sealed under the KEK opens in them any more.
pub async fn shred(
    admin: &Admin,
    args: &ShredArgs<'_>,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<ShredReport, AdminError> {
    let (target, request, shared) = check_shred(admin, args)?;
    let kek = admin.provider_for(&target)?;
    let description = kek
        .inspect_kek(&target.key)
        .await
        .map_err(provider_error(format!(
            "describe {} key {}",
            target.provider_kind, target.key
        )))?;
    let versions = versions_text(&description);
    let mut unreadable_namespaces = vec![target.namespace.clone()];
    unreadable_namespaces.extend(shared.iter().cloned());
    let result = kek
        .shred_kek(&target.key, request)
        .await
        .map_err(provider_error(format!(
            "shred {} key {}",
            target.provider_kind, target.key
        )));
    let shredded = audited(
        "shred",
        &target,
        |shredded| match (&shredded.destroy_after, shredded.destroyed_now) {
            (_, true) => format!("destroyed now; versions {versions}"),
            (after, false) => format!(
                "destruction scheduled after {}; versions {versions}",
                after.as_deref().unwrap_or("the waiting period")
            ),
        },
        result,
    )?;
    let when = if shredded.destroyed_now {
        "now, for good".to_owned()
    } else {
        format!(
            "now (the key is unusable), and for good after {}; until then `kmscodec keys \
             cancel-shred --namespace {}` restores it",
            shredded
                .destroy_after
                .as_deref()
                .unwrap_or("the waiting period"),
            target.namespace
        )
    };
    let also = if shared.is_empty() {
        "Payloads of other namespaces are not affected.".to_owned()
    } else {
        format!(
            "The same key also protects {}: their payloads become unreadable too.",
            shared.join(", ")
        )
    };
    let unreadable = format!(
        "every payload sealed for namespace {:?} under {} key {} (versions {versions}) becomes \
         unreadable {when}: workflow inputs, results, signals, queries, memos and encoded \
         failures, in Temporal's histories, in exported or archived histories, and anywhere else \
         they were copied. {also}",
        target.namespace, target.provider_kind, target.key
    );
    let mut notes = shredded.notes;
    let outcomes = match client {
        Some(client) => client.forget_data_keys(sidecars, &target.namespace).await,
        None => {
            notes.push(
                "running processes keep unwrapped data keys cached (cache time_to_live, 24 h by \
                 default) and can still open payloads they opened recently: restart them, or \
                 pass --sidecar URL to make them forget now"
                    .to_owned(),
            );
            Vec::new()
        }
    };
    Ok(ShredReport {
        versions,
        unreadable_namespaces,
        unreadable,
        destroyed_now: shredded.destroyed_now,
        destroy_after: shredded.destroy_after,
        notes,
        sidecars: outcomes,
        target,
    })
}

/// `keys cancel-shred`: cancels a scheduled destruction while its waiting period lasts.
pub async fn cancel_shred(admin: &Admin, namespace: &str) -> Result<KeyChangeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let result = async {
        let kek = admin.provider_for(&target)?;
        kek.cancel_shred(&target.key)
            .await
            .map_err(provider_error(format!(
                "cancel-shred {} key {}",
                target.provider_kind, target.key
            )))
    }
    .await;
    let notes = audited("cancel-shred", &target, |notes| notes.join("; "), result)?;
    Ok(KeyChangeReport {
        operation: "cancel-shred",
        shared_with: admin.shared_with(&target),
        version: None,
        notes,
        sidecars: Vec::new(),
        target,
    })
}

// ---------------------------------------------------------------------------------------------
// Rewrap

/// What [`rewrap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RewrapSummary {
    /// Payloads read.
    pub total: usize,
    /// Payloads of ours, re-sealed under the current keys.
    pub rewrapped: usize,
    /// Payloads left as they were (not sealed by kmscodec).
    pub untouched: usize,
    /// Re-sealed payloads by namespace.
    pub by_namespace: BTreeMap<String, usize>,
}

fn rewrap_error(index: usize, error: &CodecError) -> AdminError {
    AdminError::Rewrap(format!(
        "payloads[{index}]: {} ({})",
        error.public_message(),
        error.code()
    ))
}

/// Re-seals every payload of ours under the current keys of the namespace its header names,
/// leaving every other payload untouched, in order. `progress(done, total)` is called every
/// `progress_every` payloads. Fails whole: either every payload of ours is re-sealed, or the
/// caller gets an error and no output. A payload is never left unsealed (a payload whose
/// encoding is now in `skip_encodings` is an error, not a pass-through).
pub async fn rewrap(
    app: &App,
    payloads: Vec<Payload>,
    progress_every: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<Payload>, RewrapSummary), AdminError> {
    let mut summary = RewrapSummary {
        total: payloads.len(),
        ..RewrapSummary::default()
    };
    let mut out = Vec::with_capacity(payloads.len());
    for (index, payload) in payloads.into_iter().enumerate() {
        if !is_sealed(&payload) {
            summary.untouched += 1;
            out.push(payload);
        } else {
            let namespace = envelope::parse(&payload.data)
                .map(|(header, _)| header.alleged_namespace.to_owned())
                .map_err(|error| {
                    AdminError::Rewrap(format!(
                        "payloads[{index}]: not a readable sealed payload: {error}"
                    ))
                })?;
            let opened = app
                .codec
                .decode(NamespaceCheck::Expect(&namespace), vec![payload])
                .await
                .map_err(|error| rewrap_error(index, &error))?;
            let sealed = app
                .codec
                .encode(&namespace, opened)
                .await
                .map_err(|error| rewrap_error(index, &error))?;
            let Some(sealed) = sealed.into_iter().next().filter(is_sealed) else {
                return Err(AdminError::Rewrap(format!(
                    "payloads[{index}]: its encoding is in encode.skip_encodings, so encode would \
                     leave it unsealed; refusing"
                )));
            };
            summary.rewrapped += 1;
            *summary.by_namespace.entry(namespace).or_default() += 1;
            out.push(sealed);
        }
        let done = index + 1;
        if progress_every > 0 && done % progress_every == 0 {
            progress(done, summary.total);
        }
    }
    tracing::info!(
        target: AUDIT_TARGET,
        audit = true,
        via = "cli",
        op = "rewrap",
        total = summary.total,
        rewrapped = summary.rewrapped,
        untouched = summary.untouched,
        namespaces = ?summary.by_namespace,
        outcome = "ok",
        "key administration: rewrap of {} payloads",
        summary.total
    );
    Ok((out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(toml: &str) -> Admin {
        Admin::new(Config::from_toml_str(toml, Vec::new()).unwrap())
    }

    const CONFIG: &str = r#"
        [providers.local]
        kind = "local"
        path = "/nonexistent/keyring.json"
        [providers.vault]
        kind = "vault"
        address = "http://127.0.0.1:1"
        [providers.vault.auth]
        method = "token"
        token_file = "/nonexistent/token"
        [namespaces.payments]
        provider = "vault"
        key = "kmscodec-payments"
        [namespaces.orders]
        provider = "vault"
        key = "kmscodec-payments"
        [namespaces."*"]
        provider = "local"
        key = "kmscodec-{namespace}"
    "#;

    #[test]
    fn targets_follow_the_configuration() {
        let admin = admin(CONFIG);
        let exact = admin.target("payments", None, None, false).unwrap();
        assert_eq!(
            (exact.provider.as_str(), exact.key.as_str(), exact.mapping),
            ("vault", "kmscodec-payments", Mapping::Exact)
        );
        let wild = admin.target("alpha", None, None, false).unwrap();
        assert_eq!(
            (wild.provider.as_str(), wild.key.as_str(), wild.mapping),
            ("local", "kmscodec-alpha", Mapping::Wildcard)
        );
        let wrong = admin
            .target("payments", Some("local"), None, true)
            .unwrap_err();
        assert!(
            wrong.is_usage() && wrong.to_string().contains("uses provider"),
            "{wrong}"
        );
        let unknown = admin
            .target("payments", Some("vualt"), None, true)
            .unwrap_err();
        assert!(
            unknown.to_string().contains("unknown provider \"vualt\""),
            "{unknown}"
        );
        assert!(
            admin
                .target("a b", None, None, false)
                .unwrap_err()
                .is_usage()
        );
        assert_eq!(admin.shared_with(&exact), vec!["orders".to_owned()]);
        assert!(admin.shared_with(&wild).is_empty());
    }

    #[test]
    fn shred_is_refused_before_anything_is_done() {
        let admin = admin(CONFIG);
        let args = |namespace, confirm| ShredArgs {
            namespace,
            confirm,
            pending_days: None,
            now: false,
            including_shared: false,
        };
        let mismatch = check_shred(&admin, &args("alpha", "beta")).unwrap_err();
        assert!(
            mismatch.to_string().contains("does not match"),
            "{mismatch}"
        );
        let shared = check_shred(&admin, &args("payments", "payments")).unwrap_err();
        assert!(shared.to_string().contains("\"orders\""), "{shared}");
        let vault_days = ShredArgs {
            pending_days: Some(7),
            including_shared: true,
            ..args("payments", "payments")
        };
        assert!(check_shred(&admin, &vault_days).unwrap_err().is_usage());
        let (_, request, _) = check_shred(&admin, &args("alpha", "alpha")).unwrap();
        assert_eq!(request.pending_days, DEFAULT_PENDING_DAYS);
    }

    #[test]
    fn snippets_and_tables() {
        let admin = admin(CONFIG);
        let target = admin.target("new.ns", Some("vault"), None, true);
        // The "*" entry covers every namespace: --provider must agree with it.
        assert!(target.is_err());
        let target = admin.target("alpha", None, None, false).unwrap();
        let snippet = config_snippet(&target, Some("kmscodec-{namespace}"));
        assert!(
            snippet.contains("[namespaces.alpha]\nprovider = \"local\"\nkey = \"kmscodec-alpha\"")
        );
        assert!(snippet.contains("no change needed"));
        let table = render_rows(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(table, "A    BB\nxxx  y\n");
        assert_eq!(toml_key("a.b"), "\"a.b\"");
        assert!(check_sidecar_url("http://127.0.0.1:8089/").is_ok());
        assert!(check_sidecar_url("ftp://x").is_err());
        assert!(check_sidecar_url("http://u:p@x").is_err());
    }
}
