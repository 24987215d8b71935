//! Configuration: one TOML file, environment overrides, and the embedded default, parsed and
//! assembled into a [`Config`].
//!
//! Each part's settings are defined by the module that uses them ([`crate::server::ServerConfig`],
//! [`crate::keys::ProviderConfig`], [`AuthConfig`], [`crate::keyring::Limits`],
//! ...); this module only reads TOML into them. It stands above every owner and nothing below
//! imports it. It is the only module that reads the environment.
//!
//! Loading never stops at the first problem: every bad field is collected and reported at once,
//! with its full path (`namespaces.default.provider: unknown provider "vualt"`), before any port
//! is bound ([`fields::Fields`] walks a table and remembers which keys were read).
//!
//! * [`fields`] holds the field walker, problems, size and duration syntax;
//! * `server` reads `[server]`, `[ui]`, `[audit]` and `[admin]`;
//! * `limits` reads data key limits and compression (`[data_keys]`, and per namespace);
//! * `provider` reads `[providers.<name>]` (local, Vault, AWS KMS);
//! * `auth` reads `[auth]` and `[authz]`;
//! * `storage` reads `[external_storage]`.
//!
//! Environment overrides: `KMSCODEC_<PATH>` where `<PATH>` is the field path in upper case with
//! `__` between levels, e.g. `KMSCODEC_SERVER__LISTEN=0.0.0.0:8089` or
//! `KMSCODEC_PROVIDERS__DEV__PATH=/keys/keyring.json`. Values are parsed as the field's type.
//! Every key is described in `docs/configuration.md`.

mod auth;
pub mod fields;
mod limits;
mod provider;
mod server;
mod storage;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use fields::{ConfigError, Problem, parse_duration, parse_size};

use crate::audit::{AuditOutput, Scopes};
use crate::auth::{AuthConfig, AuthzConfig};
use crate::keyring::{CacheOptions, Limits};
use crate::keys::ProviderConfig;
use crate::keys::aws_kms;
use crate::keys::vault::valid_transit_key_name;
use crate::server::admin_api::AdminConfig;
use crate::server::http::CorsConfig;
use crate::server::{ServerConfig, UiConfig};
use crate::storage::StorageSettings;
pub(crate) use fields::is_bare_key;
use fields::{Fields, path_segment};

/// Where the codec listens when nothing else is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8089";
/// The admin listener's default port (metrics, health, admin API), on loopback.
pub const DEFAULT_ADMIN_PORT: u16 = 9464;
/// The key name of the embedded development keyring.
pub const DEV_KEY: &str = "dev";
/// The provider name of the embedded development keyring.
pub const DEV_PROVIDER: &str = "dev";
/// The environment variable prefix.
pub const ENV_PREFIX: &str = "KMSCODEC_";

/// Which provider and key serve a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceConfig {
    /// The provider's name in `[providers]`.
    pub provider: String,
    /// The KEK reference; for `*`, may contain `{namespace}`.
    pub key: String,
    /// Data key limits.
    pub limits: Limits,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listeners and requests.
    pub server: ServerConfig,
    /// The UI-facing listener, if any.
    pub ui: Option<UiConfig>,
    /// Audit log output.
    pub audit: AuditOutput,
    /// What each listener audits (`[audit] worker`, `ui`, `grpc`, `summary_interval`).
    pub audit_scopes: Scopes,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Namespaces by name; `*` serves every other namespace.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Decode cache.
    pub cache: CacheOptions,
    /// Encodings that encode passes through unsealed.
    pub skip_encodings: Vec<String>,
    /// Most payloads in one request.
    pub max_payloads: usize,
    /// Largest single payload in bytes.
    pub max_payload_bytes: usize,
    /// Most namespaces the `*` entry serves at once in one process.
    pub max_wildcard_namespaces: usize,
    /// How long a namespace served by the `*` entry may go without an encode before the process
    /// forgets it (its data key is dropped and its slot freed).
    pub wildcard_namespace_idle: Duration,
    /// Whether this is the embedded development default.
    pub embedded_default: bool,
    /// The admin API (`[admin]`).
    pub admin: AdminConfig,
    /// Authentication methods' settings (`[auth]`); listeners name the methods they accept.
    pub auth: AuthConfig,
    /// Authorization rules (`[authz]`).
    pub authz: AuthzConfig,
    /// External Storage drivers and per-namespace rules (`[external_storage]`).
    pub external_storage: StorageSettings,
}

impl Config {
    /// The embedded default: a local development keyring in `data_dir`, created on first start,
    /// serving every namespace. Environment overrides apply as to a file.
    pub fn embedded_default(
        data_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let keyring = toml::Value::String(data_dir.join("keyring.json").display().to_string());
        let text = format!(
            "[providers.{DEV_PROVIDER}]\nkind = \"local\"\npath = {keyring}\ncreate_missing = true\n\
             [namespaces.\"*\"]\nprovider = \"{DEV_PROVIDER}\"\nkey = \"{DEV_KEY}\"\n"
        );
        let mut config = Self::from_toml_str(&text, env)?;
        config.embedded_default = true;
        Ok(config)
    }

    /// The embedded default with overrides from the process environment.
    pub fn load_embedded_default(data_dir: &Path) -> Result<Self, ConfigError> {
        // The process environment is read here and in `load`, nowhere else.
        #[allow(clippy::disallowed_methods)]
        let env = std::env::vars();
        Self::embedded_default(data_dir, env)
    }

    /// Loads `path`, applying environment overrides from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            problems: vec![Problem {
                path: path.display().to_string(),
                message: format!("cannot read: {error}"),
            }],
        })?;
        // The one read of the process environment.
        #[allow(clippy::disallowed_methods)]
        let env = std::env::vars();
        Self::from_toml_str(&text, env)
    }

    /// Parses TOML text, then applies `KMSCODEC_*` overrides from `env`.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut root: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(error) => {
                return Err(ConfigError {
                    problems: vec![Problem {
                        path: "file".to_owned(),
                        message: format!("not valid TOML: {}", error.to_string().trim()),
                    }],
                });
            }
        };
        // Kept whole: provider settings may name a variable to read (`auth.token_env`).
        let env: BTreeMap<String, String> = env.into_iter().collect();
        apply_env(
            &mut root,
            env.iter().map(|(k, v)| (k.clone(), v.clone())),
            &mut problems,
        );
        let config = parse_root(&root, &env, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Overrides the codec listener (`--listen`).
    pub fn set_listen(&mut self, listen: SocketAddr) {
        self.server.listen = listen;
    }

    /// Overrides the admin listener (`--admin-listen`).
    pub fn set_admin_listen(&mut self, listen: Option<SocketAddr>) {
        self.server.admin_listen = listen;
    }

    /// Overrides the gRPC listener (`--grpc-listen`).
    pub fn set_grpc_listen(&mut self, listen: Option<SocketAddr>) {
        self.server.grpc_listen = listen;
    }
}

/// The defaults every field starts from.
fn base() -> Config {
    Config {
        server: ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT))),
            grpc_listen: None,
            grpc_unix_socket: None,
            body_limit_bytes: 64 << 20,
            namespace_from_path: true,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
            readiness_grace: crate::server::DEFAULT_READINESS_GRACE,
            cors: CorsConfig::default(),
            auth: Vec::new(),
            tls: None,
            admin_tls: None,
            grpc_tls: None,
            max_connections: 1024,
            max_header_bytes: 16 << 10,
            max_concurrent_requests: 64,
            allowed_hosts: Vec::new(),
        },
        ui: None,
        audit: AuditOutput::default(),
        audit_scopes: Scopes::default(),
        providers: BTreeMap::new(),
        namespaces: BTreeMap::new(),
        cache: CacheOptions::default(),
        skip_encodings: Vec::new(),
        max_payloads: 10_000,
        max_payload_bytes: 4 << 20,
        max_wildcard_namespaces: 1024,
        wildcard_namespace_idle: Duration::from_secs(3600),
        embedded_default: false,
        admin: AdminConfig::default(),
        external_storage: StorageSettings::default(),
        auth: AuthConfig::default(),
        authz: AuthzConfig::default(),
    }
}

/// Applies `KMSCODEC_A__B__C=value` as `a.b.c = "value"` (a string; typed getters parse it).
fn apply_env(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<Problem>,
) {
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Variables without a `__` are not config paths (e.g. KMSCODEC_TOOLS, KMSCODEC_LOG).
        if !path.contains("__") {
            continue;
        }
        let segments: Vec<String> = path
            .split("__")
            .map(|segment| segment.to_lowercase())
            .collect();
        if segments.iter().any(String::is_empty) {
            problems.push(Problem {
                path: name.clone(),
                message: "empty path segment in environment override".to_owned(),
            });
            continue;
        }
        if let Err(segment) = set_path(root, &segments, value) {
            problems.push(Problem {
                path: name.clone(),
                message: format!("{segment} is not a table"),
            });
        }
    }
}

/// Sets `path` in `table` to a string, creating tables on the way. Fails with the segment that
/// names a non-table value.
fn set_path(table: &mut toml::Table, path: &[String], value: String) -> Result<(), String> {
    match path {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), toml::Value::String(value));
            Ok(())
        }
        [first, rest @ ..] => match table
            .entry(first.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => set_path(inner, rest, value),
            _ => Err(first.clone()),
        },
    }
}

fn parse_root(
    root: &toml::Table,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Config {
    let mut config = base();
    let mut fields = Fields::new("", Some(root));

    let server = fields.table("server", problems);
    config.server = server::parse_server(server, problems, config.server);
    if let Some(ui) = fields.table("ui", problems) {
        config.ui = server::parse_ui(ui, problems);
    }
    if let Some(audit) = fields.table("audit", problems) {
        (config.audit, config.audit_scopes) = server::parse_audit(audit, problems);
    }

    let data_keys = fields.table("data_keys", problems);
    let default_limits = limits::parse(
        Fields::new("data_keys", data_keys),
        &Limits::default(),
        &[],
        problems,
    );

    if let Some(cache) = fields.table("cache", problems) {
        let mut cache_fields = Fields::new("cache", Some(cache));
        if let Some(capacity) = cache_fields.unsigned("capacity", problems) {
            config.cache.capacity = capacity;
        }
        if let Some(ttl) = cache_fields.duration("time_to_live", problems) {
            config.cache.time_to_live = ttl;
        }
        if let Some(tti) = cache_fields.duration("time_to_idle", problems) {
            config.cache.time_to_idle = tti;
        }
        cache_fields.finish(problems);
    }

    if let Some(encode) = fields.table("encode", problems) {
        let mut encode_fields = Fields::new("encode", Some(encode));
        if let Some(skip) = encode_fields.strings("skip_encodings", problems) {
            config.skip_encodings = skip;
        }
        encode_fields.finish(problems);
    }

    if let Some(limits) = fields.table("limits", problems) {
        let mut limit_fields = Fields::new("limits", Some(limits));
        if let Some(max) = limit_fields.unsigned("max_payloads", problems) {
            config.max_payloads = usize::try_from(max).unwrap_or(usize::MAX);
        }
        if let Some(max) = limit_fields.unsigned("max_payload_bytes", problems) {
            config.max_payload_bytes = usize::try_from(max).unwrap_or(usize::MAX);
        }
        if let Some(max) = limit_fields.unsigned("max_wildcard_namespaces", problems) {
            config.max_wildcard_namespaces = usize::try_from(max).unwrap_or(usize::MAX);
        }
        if let Some(idle) = limit_fields.duration("wildcard_namespace_idle", problems) {
            if idle.is_zero() {
                limit_fields.problem(problems, "wildcard_namespace_idle", "must be more than 0s");
            }
            config.wildcard_namespace_idle = idle;
        }
        limit_fields.finish(problems);
    }

    if let Some(admin) = fields.table("admin", problems) {
        config.admin = server::parse_admin(admin, problems);
    }

    if let Some(storage) = fields.table("external_storage", problems) {
        config.external_storage = storage::parse(storage, problems);
    }

    // Listeners name the authentication methods they accept.
    let auth = fields.table("auth", problems);
    let authz = fields.table("authz", problems);
    (config.auth, config.authz) = auth::parse(auth, authz, problems);
    auth::validate_methods(
        &config.server.auth,
        &config.auth,
        &config.authz,
        "server.auth",
        problems,
    );
    if let Some(ui) = &config.ui {
        auth::validate_methods(&ui.auth, &config.auth, &config.authz, "ui.auth", problems);
    }

    if let Some(providers) = fields.table("providers", problems) {
        for (name, value) in providers {
            let path = format!("providers.{name}");
            match value {
                toml::Value::Table(table) => {
                    if let Some(provider) = provider::parse(&path, table, env, problems) {
                        config.providers.insert(name.clone(), provider);
                    }
                }
                other => problems.push(Problem {
                    path,
                    message: format!("expected a table, found {}", other.type_str()),
                }),
            }
        }
    }

    for (name, path, table) in fields.namespace_tables("namespaces", problems) {
        let mut ns_fields = Fields::new(path.clone(), Some(table));
        let provider = ns_fields.string("provider", problems);
        let key = ns_fields.string("key", problems);
        match &provider {
            None => ns_fields.problem(
                problems,
                "provider",
                "missing (name a provider from [providers])",
            ),
            Some(provider) if !config.providers.contains_key(provider) => {
                let known: Vec<_> = config.providers.keys().cloned().collect();
                ns_fields.problem(
                    problems,
                    "provider",
                    format!(
                        "unknown provider {provider:?} (configured: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            Some(_) => {}
        }
        match &key {
            None => ns_fields.problem(
                problems,
                "key",
                "missing (the key-encryption key reference)",
            ),
            Some(key) if key.is_empty() => ns_fields.problem(problems, "key", "must not be empty"),
            Some(key) if key.contains("{namespace}") && name != "*" => ns_fields.problem(
                problems,
                "key",
                "{namespace} is only allowed in the \"*\" entry",
            ),
            Some(_) => {}
        }
        if let (Some(provider), Some(key)) = (&provider, &key)
            && matches!(
                config.providers.get(provider),
                Some(ProviderConfig::Vault(_))
            )
            && !key.is_empty()
            && !valid_transit_key_name(&key.replace("{namespace}", "ns"))
        {
            ns_fields.problem(
                problems,
                "key",
                format!(
                    "{key:?} is not a valid transit key name (letters, digits, '_', '-' and \
                     '.', with a letter, digit or '_' at each end)"
                ),
            );
        }
        let limits = limits::parse(ns_fields, &default_limits, &["provider", "key"], problems);
        if let (Some(provider), Some(key)) = (provider, key) {
            config.namespaces.insert(
                name.clone(),
                NamespaceConfig {
                    provider,
                    key,
                    limits,
                },
            );
        }
    }
    // Provider-specific key syntax, reported with the namespace's path.
    for (name, namespace) in &config.namespaces {
        if let Some(ProviderConfig::Aws(_)) = config.providers.get(&namespace.provider)
            && let Err(message) = aws_kms::check_key_reference(&namespace.key)
        {
            problems.push(Problem {
                path: format!("namespaces.{}.key", path_segment(name)),
                message,
            });
        }
    }
    if config.namespaces.is_empty() && problems.is_empty() && !root.is_empty() {
        problems.push(Problem {
            path: "namespaces".to_owned(),
            message: "no namespaces configured: add [namespaces.<name>] or [namespaces.\"*\"]"
                .to_owned(),
        });
    }
    fields.finish(problems);
    config
}
