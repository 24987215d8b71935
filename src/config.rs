//! Typed configuration: one TOML file, environment overrides, and the embedded default.
//!
//! This is the only module that reads the environment. Loading never stops at the first problem:
//! every bad field is collected and reported at once, with its full path
//! (`namespaces.default.provider: unknown provider "vualt"`), before any port is bound.
//!
//! Environment overrides: `KMSCODEC_<PATH>` where `<PATH>` is the field path in upper case with
//! `__` between levels, e.g. `KMSCODEC_SERVER__LISTEN=0.0.0.0:8089` or
//! `KMSCODEC_PROVIDERS__DEV__PATH=/keys/keyring.json`. Values are parsed as the field's type.
//! Every key is described in `docs/configuration.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::server::tls::{ClientAuth, TlsSettings};
use std::time::Duration;

use crate::envelope::Format;
use crate::keyring::{CacheOptions, Limits, NIST_MAX_INVOCATIONS};
use crate::keys::aws_kms::{self, AwsKmsOptions, MAX_MAX_ATTEMPTS};
use crate::secret::Credential;

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
/// Default mount path of the Vault transit secrets engine.
pub const VAULT_DEFAULT_MOUNT: &str = "transit";
/// Default timeout of one Vault request.
pub const VAULT_DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of retries of a Vault request that failed with a 5xx or a connection error.
pub const VAULT_DEFAULT_RETRIES: u32 = 2;
/// Default mount path of Vault's AppRole auth method.
pub const VAULT_DEFAULT_APPROLE_MOUNT: &str = "approle";
/// Default mount path of Vault's Kubernetes auth method.
pub const VAULT_DEFAULT_KUBERNETES_MOUNT: &str = "kubernetes";
/// Where Kubernetes projects a pod's service account token.
pub const KUBERNETES_DEFAULT_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field path (`server.listen`), or the file for whole-file problems.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

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

/// Where audit lines go (`[audit]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditOutput {
    /// Not written.
    Off,
    /// Standard output (the default: the container runtime's log collector picks it up).
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file (created 0600).
    File(PathBuf),
}

/// A key provider's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    /// A local keyring file.
    Local {
        /// The keyring file.
        path: PathBuf,
        /// Create the file (with one key named after the namespace's key) when it is missing.
        create_missing: bool,
    },
    /// HashiCorp Vault or OpenBao transit (`kind = "vault"`).
    Vault(Box<VaultConfig>),
    /// AWS KMS (`kind = "aws"`): region, endpoint, profile, timeouts and retries. Credentials
    /// come from the AWS SDK's standard chain, never from this file.
    Aws(AwsKmsOptions),
}

impl ProviderConfig {
    /// The `kind` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Vault(_) => "vault",
            Self::Aws(_) => "aws",
        }
    }
}

/// A Vault or OpenBao transit provider (see `docs/providers/vault.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultConfig {
    /// The server, `http(s)://host:port` without a path (validated).
    pub address: String,
    /// Mount path of the transit secrets engine, without leading or trailing `/`.
    pub mount: String,
    /// Vault Enterprise namespace, sent as `X-Vault-Namespace` on every request.
    pub namespace: Option<String>,
    /// PEM bundle of the CAs trusted for an `https` address (replaces the system roots).
    pub ca_cert: Option<PathBuf>,
    /// Longest one request may take, connection included.
    pub timeout: Duration,
    /// Retries after a 5xx answer or a connection error (never after a 4xx).
    pub retries: u32,
    /// How the provider gets its token.
    pub auth: VaultAuth,
}

/// How the Vault provider authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuth {
    /// A token given to kmscodec (`method = "token"`).
    Token(VaultToken),
    /// AppRole login with a role id and a secret id read from files (`method = "approle"`).
    AppRole {
        /// The auth method's mount path.
        mount: String,
        /// File holding the role id.
        role_id_file: PathBuf,
        /// File holding the secret id.
        secret_id_file: PathBuf,
    },
    /// Kubernetes login with the pod's service account token (`method = "kubernetes"`).
    Kubernetes {
        /// The auth method's mount path.
        mount: String,
        /// The Vault role.
        role: String,
        /// File holding the service account JWT (re-read at every login: it is rotated).
        jwt_file: PathBuf,
    },
}

/// Where a `method = "token"` token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultToken {
    /// Read from this file at every login, so an agent may replace it.
    File(PathBuf),
    /// Read from this environment variable when the configuration is loaded.
    Env {
        /// The variable's name.
        variable: String,
        /// Its value.
        value: Credential,
    },
}

/// Is `name` usable as a transit key name? OpenBao's route pattern
/// `\w(([\w-.]+)?\w)?`: word characters, `-` and `.` inside, a word character at each end,
/// so a name never adds a path segment or a query to the request URL.
pub fn valid_transit_key_name(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 512
        && name.chars().all(|c| word(c) || c == '-' || c == '.')
        && bytes.first().is_some_and(|c| word(char::from(*c)))
        && bytes.last().is_some_and(|c| word(char::from(*c)))
}

/// Is `path` a usable Vault mount path (`transit`, `kv/team-a`)? Segments of word characters,
/// `-` and `.`, never `.` or `..`.
pub fn valid_mount_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
}

/// Is `value` sendable as an HTTP header value without escaping (visible ASCII, no spaces)?
/// Vault tokens, namespaces and role names must be.
pub fn valid_header_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

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
    pub audit_scopes: crate::audit::Scopes,
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
    pub auth: crate::auth::AuthConfig,
    /// Authorization rules (`[authz]`).
    pub authz: crate::auth::AuthzConfig,
    /// External Storage drivers and per-namespace rules (`[external_storage]`).
    pub external_storage: crate::storage::StorageSettings,
}

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

/// Is `name` acceptable as a namespace (in config, headers and paths)?
///
/// 1 to 255 bytes of printable characters without white space or `/`.
pub fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= crate::envelope::MAX_NAMESPACE_LEN
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '/')
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

    /// Loads `path`, applying environment overrides from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            problems: vec![Problem {
                path: path.display().to_string(),
                message: format!("cannot read: {error}"),
            }],
        })?;
        Self::from_toml_str(&text, std::env::vars())
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
        audit_scopes: crate::audit::Scopes::default(),
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
        external_storage: crate::storage::StorageSettings::default(),
        auth: crate::auth::AuthConfig::default(),
        authz: crate::auth::AuthzConfig::default(),
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

/// Reads the fields of one table, recording problems and which keys were used.
pub(crate) struct Fields<'a> {
    path: String,
    table: Option<&'a toml::Table>,
    used: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(path: impl Into<String>, table: Option<&'a toml::Table>) -> Self {
        Self {
            path: path.into(),
            table,
            used: BTreeSet::new(),
        }
    }

    pub(crate) fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn raw(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.used.insert(key);
        self.table.and_then(|table| table.get(key))
    }

    pub(crate) fn problem(
        &self,
        problems: &mut Vec<Problem>,
        key: &str,
        message: impl Into<String>,
    ) {
        problems.push(Problem {
            path: self.field_path(key),
            message: message.into(),
        });
    }

    pub(crate) fn string(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<String> {
        match self.raw(key)? {
            toml::Value::String(text) => Some(text.clone()),
            other => {
                self.problem(
                    problems,
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(crate) fn unsigned(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<u64> {
        let value = self.raw(key)?;
        let parsed = match value {
            toml::Value::Integer(number) => u64::try_from(*number).ok(),
            toml::Value::String(text) => parse_size(text),
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                problems,
                key,
                format!("expected a non-negative integer (or a size like \"8MiB\"), found {value}"),
            );
        }
        parsed
    }

    pub(crate) fn boolean(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<bool> {
        let value = self.raw(key)?;
        let parsed = match value {
            toml::Value::Boolean(flag) => Some(*flag),
            toml::Value::String(text) => match text.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                problems,
                key,
                format!("expected true or false, found {value}"),
            );
        }
        parsed
    }

    pub(crate) fn duration(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<Duration> {
        let value = self.raw(key)?;
        let parsed = match value {
            toml::Value::Integer(seconds) => u64::try_from(*seconds).ok().map(Duration::from_secs),
            toml::Value::String(text) => parse_duration(text),
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                problems,
                key,
                format!("expected a duration like \"1.5s\", \"10m\", \"24h\" or whole seconds, found {value}"),
            );
        }
        parsed
    }

    pub(crate) fn strings(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<Vec<String>> {
        let value = self.raw(key)?;
        match value {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(text) => out.push(text.to_owned()),
                        None => {
                            self.problem(problems, &format!("{key}[{index}]"), "expected a string")
                        }
                    }
                }
                Some(out)
            }
            // From the environment: a comma-separated list.
            toml::Value::String(text) => Some(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            other => {
                self.problem(
                    problems,
                    key,
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(crate) fn socket(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<SocketAddr> {
        let text = self.string(key, problems)?;
        match text.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.problem(
                    problems,
                    key,
                    format!("expected an address like 127.0.0.1:8089, found {text:?}"),
                );
                None
            }
        }
    }

    pub(crate) fn table(
        &mut self,
        key: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<&'a toml::Table> {
        match self.raw(key)? {
            toml::Value::Table(table) => Some(table),
            other => {
                self.problem(
                    problems,
                    key,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Reports keys nobody asked for.
    pub(crate) fn finish(self, problems: &mut Vec<Problem>) {
        let Some(table) = self.table else { return };
        for key in table.keys() {
            if !self.used.contains(key.as_str()) {
                let expected: Vec<_> = self.used.iter().copied().collect();
                problems.push(Problem {
                    path: self.field_path(key),
                    message: format!("unknown field (expected one of: {})", expected.join(", ")),
                });
            }
        }
    }
}

/// Parses `"512"`, `"64KiB"`, `"8MiB"`, `"1GiB"`, `"10kB"`, `"5MB"`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// Parses `"250ms"`, `"1.5s"`, `"10m"`, `"24h"`, `"7d"`, or bare seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return None,
    };
    (seconds.is_finite() && (0.0..1e12).contains(&seconds))
        .then(|| Duration::from_secs_f64(seconds))
}

fn parse_root(
    root: &toml::Table,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Config {
    let mut config = base();
    let mut fields = Fields::new("", Some(root));

    let server = fields.table("server", problems);
    config.server = parse_server(server, problems, config.server);
    if let Some(ui) = fields.table("ui", problems) {
        config.ui = parse_ui(ui, problems);
    }
    if let Some(audit) = fields.table("audit", problems) {
        (config.audit, config.audit_scopes) = parse_audit(audit, problems);
    }

    let data_keys = fields.table("data_keys", problems);
    let default_limits = parse_limits(
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
        let mut admin_fields = Fields::new("admin", Some(admin));
        if let Some(file) = admin_fields.string("token_file", problems) {
            if file.is_empty() {
                admin_fields.problem(problems, "token_file", "must not be empty");
            } else {
                config.admin.token_file = Some(PathBuf::from(file));
            }
        }
        config.admin.listen = admin_fields.socket("listen", problems);
        admin_fields.finish(problems);
    }

    // `[external_storage]` is parsed by its owner.
    if let Some(storage) = fields.table("external_storage", problems) {
        config.external_storage = crate::storage::settings::parse(storage, problems);
    }

    // `[auth]` and `[authz]` are parsed by their owner; listeners name the methods they use.
    let auth = fields.table("auth", problems);
    let authz = fields.table("authz", problems);
    (config.auth, config.authz) = crate::auth::parse(auth, authz, problems);
    crate::auth::validate_methods(
        &config.server.auth,
        &config.auth,
        &config.authz,
        "server.auth",
        problems,
    );
    if let Some(ui) = &config.ui {
        crate::auth::validate_methods(&ui.auth, &config.auth, &config.authz, "ui.auth", problems);
    }

    if let Some(providers) = fields.table("providers", problems) {
        for (name, value) in providers {
            let path = format!("providers.{name}");
            match value {
                toml::Value::Table(table) => {
                    if let Some(provider) = parse_provider(&path, table, env, problems) {
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

    if let Some(namespaces) = fields.table("namespaces", problems) {
        for (name, value) in namespaces {
            let path = format!("namespaces.{}", path_segment(name));
            if name != "*" && !valid_namespace(name) {
                problems.push(Problem {
                    path: path.clone(),
                    message:
                        "not a valid namespace name (1-255 printable characters, no spaces or '/')"
                            .to_owned(),
                });
            }
            let toml::Value::Table(table) = value else {
                problems.push(Problem {
                    path,
                    message: format!("expected a table, found {}", value.type_str()),
                });
                continue;
            };
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
                Some(key) if key.is_empty() => {
                    ns_fields.problem(problems, "key", "must not be empty")
                }
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
            let limits = parse_limits(ns_fields, &default_limits, &["provider", "key"], problems);
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

/// A table key as a segment of a problem's path: bare when it is a plain word, quoted otherwise.
pub(crate) fn path_segment(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

fn parse_server(
    table: Option<&toml::Table>,
    problems: &mut Vec<Problem>,
    mut server: ServerConfig,
) -> ServerConfig {
    let mut fields = Fields::new("server", table);
    if let Some(listen) = fields.socket("listen", problems) {
        server.listen = listen;
    }
    match fields.raw("admin_listen") {
        // `admin_listen = ""` (or "off") turns the admin listener off.
        Some(toml::Value::String(text)) if text.is_empty() || text == "off" => {
            server.admin_listen = None
        }
        Some(_) => {
            server.admin_listen = fields
                .socket("admin_listen", problems)
                .or(server.admin_listen)
        }
        None => {}
    }
    if let Some(listen) = fields.socket("grpc_listen", problems) {
        server.grpc_listen = Some(listen);
    }
    if let Some(path) = fields.string("grpc_unix_socket", problems) {
        if path.is_empty() {
            fields.problem(problems, "grpc_unix_socket", "must not be empty");
        } else {
            server.grpc_unix_socket = Some(PathBuf::from(path));
        }
    }
    if let Some(limit) = fields.unsigned("body_limit_bytes", problems) {
        if limit < 1024 {
            fields.problem(problems, "body_limit_bytes", "must be at least 1024");
        }
        server.body_limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    }
    if let Some(flag) = fields.boolean("namespace_from_path", problems) {
        server.namespace_from_path = flag;
    }
    if let Some(timeout) = fields.duration("request_timeout", problems) {
        server.request_timeout = timeout;
    }
    if let Some(grace) = fields.duration("shutdown_grace", problems) {
        server.shutdown_grace = grace;
    }
    if let Some(grace) = fields.duration("readiness_grace", problems) {
        server.readiness_grace = grace;
    }
    server.cors = parse_cors("server.cors", fields.table("cors", problems), problems);
    if let Some(methods) = fields.strings("auth", problems) {
        server.auth = methods;
    }
    server.tls = parse_tls("server.tls", fields.table("tls", problems), problems);
    server.admin_tls = parse_tls(
        "server.admin_tls",
        fields.table("admin_tls", problems),
        problems,
    );
    server.grpc_tls = parse_tls(
        "server.grpc_tls",
        fields.table("grpc_tls", problems),
        problems,
    );
    if let Some(max) = fields.unsigned("max_connections", problems) {
        if max == 0 {
            fields.problem(problems, "max_connections", "must be at least 1");
        }
        server.max_connections = usize::try_from(max).unwrap_or(usize::MAX).max(1);
    }
    if let Some(max) = fields.unsigned("max_header_bytes", problems) {
        if !(1024..=1 << 20).contains(&max) {
            fields.problem(
                problems,
                "max_header_bytes",
                "must be between 1024 and 1048576",
            );
        }
        server.max_header_bytes = usize::try_from(max).unwrap_or(usize::MAX);
    }
    if let Some(max) = fields.unsigned("max_concurrent_requests", problems) {
        if max == 0 {
            fields.problem(problems, "max_concurrent_requests", "must be at least 1");
        }
        server.max_concurrent_requests = usize::try_from(max).unwrap_or(usize::MAX).max(1);
    }
    if let Some(hosts) = parse_hosts(&mut fields, problems) {
        server.allowed_hosts = hosts;
    }
    fields.finish(problems);
    server
}

/// `allowed_hosts`: host names (a port is ignored) or `"*"`.
fn parse_hosts(fields: &mut Fields<'_>, problems: &mut Vec<Problem>) -> Option<Vec<String>> {
    let hosts = fields.strings("allowed_hosts", problems)?;
    for host in &hosts {
        let valid = host == "*"
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)));
        if !valid {
            fields.problem(
                problems,
                "allowed_hosts",
                format!("{host:?} is not a host name"),
            );
        }
    }
    Some(hosts)
}

/// Parses a `cors` table; without one, no origin is allowed.
fn parse_cors(path: &str, table: Option<&toml::Table>, problems: &mut Vec<Problem>) -> CorsConfig {
    let mut cors = CorsConfig {
        max_age: Duration::from_secs(600),
        ..CorsConfig::default()
    };
    let Some(table) = table else { return cors };
    let mut fields = Fields::new(path, Some(table));
    if let Some(origins) = fields.strings("allowed_origins", problems) {
        for origin in &origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                fields.problem(
                    problems,
                    "allowed_origins",
                    format!("{origin:?} is not an origin like https://temporal.example.com"),
                );
            }
            if origin.ends_with('/') {
                fields.problem(
                    problems,
                    "allowed_origins",
                    format!("{origin:?}: an origin has no trailing '/'"),
                );
            }
        }
        cors.allowed_origins = origins;
    }
    if let Some(flag) = fields.boolean("allow_credentials", problems) {
        cors.allow_credentials = flag;
    }
    if let Some(age) = fields.duration("max_age", problems) {
        cors.max_age = age;
    }
    if cors.allow_credentials && cors.allowed_origins.iter().any(|o| o == "*") {
        fields.problem(
            problems,
            "allow_credentials",
            "cannot be combined with allowed_origins = [\"*\"]: name the exact origins",
        );
    }
    fields.finish(problems);
    cors
}

/// Parses a listener's `tls` table.
fn parse_tls(
    path: &str,
    table: Option<&toml::Table>,
    problems: &mut Vec<Problem>,
) -> Option<TlsSettings> {
    let table = table?;
    let mut fields = Fields::new(path, Some(table));
    let cert_file = fields.string("cert_file", problems);
    let key_file = fields.string("key_file", problems);
    let client_ca_file = fields.string("client_ca_file", problems);
    let client_auth = match fields.string("client_auth", problems).as_deref() {
        None | Some("off") => ClientAuth::Off,
        Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            fields.problem(
                problems,
                "client_auth",
                format!("expected \"off\", \"optional\" or \"required\", found {other:?}"),
            );
            ClientAuth::Off
        }
    };
    if cert_file.is_none() {
        fields.problem(problems, "cert_file", "missing (the PEM certificate chain)");
    }
    if key_file.is_none() {
        fields.problem(problems, "key_file", "missing (the PEM private key)");
    }
    if client_auth != ClientAuth::Off && client_ca_file.is_none() {
        fields.problem(
            problems,
            "client_ca_file",
            "missing: client_auth needs the CA that signs client certificates",
        );
    }
    fields.finish(problems);
    Some(TlsSettings {
        cert_file: PathBuf::from(cert_file?),
        key_file: PathBuf::from(key_file?),
        client_ca_file: client_ca_file.map(PathBuf::from),
        client_auth,
    })
}

/// Parses `[ui]`.
fn parse_ui(table: &toml::Table, problems: &mut Vec<Problem>) -> Option<UiConfig> {
    let mut fields = Fields::new("ui", Some(table));
    let listen = fields.socket("listen", problems);
    if listen.is_none() && table.get("listen").is_none() {
        fields.problem(problems, "listen", "missing (an address like 0.0.0.0:8443)");
    }
    let auth = fields.strings("auth", problems).unwrap_or_default();
    let allow_unauthenticated = fields
        .boolean("allow_unauthenticated", problems)
        .unwrap_or(false);
    if auth.is_empty() && !allow_unauthenticated {
        fields.problem(
            problems,
            "auth",
            "the UI listener needs at least one method (\"token\", \"jwt\", \"mtls\"), or allow_unauthenticated = true",
        );
    }
    let token_cookie = fields.string("token_cookie", problems);
    if let Some(name) = &token_cookie {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            fields.problem(
                problems,
                "token_cookie",
                format!("{name:?} is not a cookie name"),
            );
        }
    }
    let cors = parse_cors("ui.cors", fields.table("cors", problems), problems);
    let tls = parse_tls("ui.tls", fields.table("tls", problems), problems);
    let max_concurrent_requests = fields.unsigned("max_concurrent_requests", problems);
    if max_concurrent_requests == Some(0) {
        fields.problem(problems, "max_concurrent_requests", "must be at least 1");
    }
    let allowed_hosts = parse_hosts(&mut fields, problems).unwrap_or_default();
    fields.finish(problems);
    Some(UiConfig {
        listen: listen?,
        auth,
        token_cookie,
        cors,
        tls,
        max_concurrent_requests: max_concurrent_requests
            .map(|max| usize::try_from(max).unwrap_or(usize::MAX).max(1)),
        allowed_hosts,
    })
}

/// Parses `[audit]`: the output, and what each listener records.
fn parse_audit(
    table: &toml::Table,
    problems: &mut Vec<Problem>,
) -> (AuditOutput, crate::audit::Scopes) {
    use crate::audit::Scope;
    let mut fields = Fields::new("audit", Some(table));
    let output = fields.string("output", problems);
    let path = fields.string("path", problems);
    let mut scopes = crate::audit::Scopes::default();
    for (key, slot) in [
        ("worker", &mut scopes.worker),
        ("ui", &mut scopes.ui),
        ("grpc", &mut scopes.grpc),
    ] {
        if let Some(name) = fields.string(key, problems) {
            match Scope::from_name(&name) {
                Some(scope) => *slot = scope,
                None => fields.problem(
                    problems,
                    key,
                    format!(
                        "expected one of {}, found {name:?}",
                        Scope::NAMES.map(|n| format!("\"{n}\"")).join(", ")
                    ),
                ),
            }
        }
    }
    if let Some(interval) = fields.duration("summary_interval", problems) {
        if interval < std::time::Duration::from_secs(1) {
            fields.problem(problems, "summary_interval", "must be at least 1s");
        } else {
            scopes.summary_interval = interval;
        }
    }
    let audit = match output.as_deref() {
        Some("off") => AuditOutput::Off,
        None | Some("stdout") => AuditOutput::Stdout,
        Some("stderr") => AuditOutput::Stderr,
        Some("file") => match path.as_deref() {
            Some(path) if !path.is_empty() => AuditOutput::File(PathBuf::from(path)),
            _ => {
                fields.problem(problems, "path", "missing: output = \"file\" needs a path");
                AuditOutput::Off
            }
        },
        Some(other) => {
            fields.problem(
                problems,
                "output",
                format!("expected \"stdout\", \"stderr\", \"file\" or \"off\", found {other:?}"),
            );
            AuditOutput::Off
        }
    };
    if path.is_some() && output.as_deref() != Some("file") {
        fields.problem(problems, "path", "only used with output = \"file\"");
    }
    fields.finish(problems);
    (audit, scopes)
}

fn parse_limits(
    mut fields: Fields<'_>,
    defaults: &Limits,
    other_keys: &[&'static str],
    problems: &mut Vec<Problem>,
) -> Limits {
    for key in other_keys {
        fields.used.insert(key);
    }
    let soft = fields
        .unsigned("soft_limit", problems)
        .unwrap_or(defaults.soft_limit);
    let hard = fields
        .unsigned("hard_limit", problems)
        .unwrap_or(defaults.hard_limit);
    let max_age = fields
        .duration("max_age", problems)
        .unwrap_or(defaults.max_age);
    let byte_limit = fields
        .unsigned("byte_limit", problems)
        .or(defaults.byte_limit);
    let wait = fields
        .duration("rotation_wait", problems)
        .unwrap_or(defaults.rotation_wait);
    let explicit_format = fields.unsigned("format", problems);
    let format = match explicit_format {
        None => defaults.format,
        Some(version) => match u8::try_from(version).ok().and_then(Format::from_version) {
            Some(format) => format,
            None => {
                fields.problem(
                    problems,
                    "format",
                    format!("expected 1, 2 or 3 (the sealed payload format), found {version}"),
                );
                defaults.format
            }
        },
    };
    let compression = parse_compression(&mut fields, defaults.compression, problems);
    if compression.is_some()
        && matches!(format, Format::V1 | Format::V2)
        && explicit_format.is_some()
    {
        fields.problem(
            problems,
            "format",
            "compression = \"zstd\" seals in format 3 (only it records compression): set \
             format = 3 or leave it out",
        );
    }
    if hard > NIST_MAX_INVOCATIONS {
        fields.problem(
            problems,
            "hard_limit",
            format!("{hard} exceeds 2^32 = {NIST_MAX_INVOCATIONS}, the NIST SP 800-38D section 8.3 bound"),
        );
    }
    if hard == 0 {
        fields.problem(problems, "hard_limit", "must be at least 1");
    }
    if soft == 0 || soft > hard {
        fields.problem(
            problems,
            "soft_limit",
            format!("must be between 1 and hard_limit ({hard}), found {soft}"),
        );
    }
    if max_age < Duration::from_secs(1) {
        fields.problem(problems, "max_age", "must be at least 1s");
    }
    if byte_limit == Some(0) {
        fields.problem(problems, "byte_limit", "must be at least 1");
    }
    fields.finish(problems);
    Limits {
        format,
        compression,
        ..Limits::new(soft, hard, max_age, byte_limit, wait)
    }
}

/// `compression` (`"zstd"` or `"none"`), `compression_level` and `compression_min_size` of a
/// `[data_keys]` or namespace table; unset fields inherit `defaults` (docs/configuration.md).
fn parse_compression(
    fields: &mut Fields<'_>,
    defaults: Option<crate::compression::Settings>,
    problems: &mut Vec<Problem>,
) -> Option<crate::compression::Settings> {
    use crate::compression::MAX_LEVEL;
    let mut compression = match fields.string("compression", problems).as_deref() {
        None => defaults,
        Some("zstd") => Some(defaults.unwrap_or_default()),
        Some("none") => None,
        Some(other) => {
            fields.problem(
                problems,
                "compression",
                format!("expected \"zstd\" or \"none\", found {other:?}"),
            );
            defaults
        }
    };
    let level = fields.unsigned("compression_level", problems);
    let min_size = fields.unsigned("compression_min_size", problems);
    if let Some(level) = level {
        match i32::try_from(level)
            .ok()
            .filter(|level| (1..=MAX_LEVEL).contains(level))
        {
            None => fields.problem(
                problems,
                "compression_level",
                format!("expected a zstd level from 1 to {MAX_LEVEL}, found {level}"),
            ),
            Some(level) => match &mut compression {
                Some(settings) => settings.level = level,
                None => fields.problem(
                    problems,
                    "compression_level",
                    "set compression = \"zstd\" for a level to apply",
                ),
            },
        }
    }
    if let Some(min_size) = min_size {
        match &mut compression {
            Some(settings) => {
                settings.min_size = usize::try_from(min_size).unwrap_or(usize::MAX);
            }
            None => fields.problem(
                problems,
                "compression_min_size",
                "set compression = \"zstd\" for a minimum size to apply",
            ),
        }
    }
    compression
}

/// Every field a provider table may have, whatever its kind (keeps an unknown `kind` the only
/// problem reported for its table).
const PROVIDER_FIELDS: &[&str] = &[
    "kind",
    "path",
    "create_missing",
    "address",
    "mount",
    "namespace",
    "ca_cert",
    "timeout",
    "retries",
    "auth",
    "region",
    "endpoint",
    "profile",
    "connect_timeout",
    "max_attempts",
    "allow_insecure_http",
];

fn parse_provider(
    path: &str,
    table: &toml::Table,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Option<ProviderConfig> {
    let mut fields = Fields::new(path, Some(table));
    let kind = fields.string("kind", problems);
    let provider = match kind.as_deref() {
        Some("local") => {
            let file = fields.string("path", problems);
            let create_missing = fields.boolean("create_missing", problems).unwrap_or(false);
            match file {
                Some(file) if !file.is_empty() => Some(ProviderConfig::Local {
                    path: PathBuf::from(file),
                    create_missing,
                }),
                _ => {
                    fields.problem(problems, "path", "missing (the keyring file)");
                    None
                }
            }
        }
        Some("vault") => parse_vault(&mut fields, env, problems)
            .map(|vault| ProviderConfig::Vault(Box::new(vault))),
        Some("aws") => parse_aws(&mut fields, problems).map(ProviderConfig::Aws),
        Some(other) => {
            fields.problem(
                problems,
                "kind",
                format!("unknown provider kind {other:?} (expected one of: local, vault, aws)"),
            );
            // Mark every key as used so the one real problem is not buried under unknown fields.
            if let Some(table) = fields.table {
                for key in table.keys() {
                    if let Some(known) = PROVIDER_FIELDS.iter().find(|k| **k == key) {
                        fields.used.insert(known);
                    }
                }
            }
            return None;
        }
        None => {
            fields.problem(problems, "kind", "missing (one of: local, vault, aws)");
            return None;
        }
    };
    fields.finish(problems);
    provider
}

/// Checks a Vault address: `http` or `https`, a host, no user, path, query or fragment (the
/// client adds `/v1/...` to it).
fn check_vault_address(address: &str) -> Result<(), String> {
    let url = url::Url::parse(address).map_err(|error| format!("not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".to_owned());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a path, query or fragment".to_owned());
    }
    Ok(())
}

/// A mount path with surrounding `/` removed, or a problem.
fn mount_path(
    fields: &mut Fields<'_>,
    key: &'static str,
    default: &str,
    problems: &mut Vec<Problem>,
) -> String {
    let mount = fields
        .string(key, problems)
        .map(|mount| mount.trim_matches('/').to_owned())
        .unwrap_or_else(|| default.to_owned());
    if !valid_mount_path(&mount) {
        fields.problem(
            problems,
            key,
            format!(
                "{mount:?} is not a mount path (segments of letters, digits, '_', '-' and '.')"
            ),
        );
    }
    mount
}

/// A required file path, or a problem.
fn file_path(
    fields: &mut Fields<'_>,
    key: &'static str,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Option<PathBuf> {
    match fields.string(key, problems) {
        Some(file) if !file.is_empty() => Some(PathBuf::from(file)),
        Some(_) => {
            fields.problem(problems, key, "must not be empty");
            None
        }
        None => {
            fields.problem(problems, key, format!("missing ({what})"));
            None
        }
    }
}

fn parse_vault(
    fields: &mut Fields<'_>,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Option<VaultConfig> {
    let start = problems.len();
    let address = match fields.string("address", problems) {
        Some(address) => {
            let address = address.trim_end_matches('/').to_owned();
            if let Err(why) = check_vault_address(&address) {
                fields.problem(
                    problems,
                    "address",
                    format!(
                        "{address:?}: {why}; expected a URL like https://vault.example.com:8200"
                    ),
                );
            }
            address
        }
        None => {
            fields.problem(
                problems,
                "address",
                "missing (the Vault server, like https://vault.example.com:8200)",
            );
            String::new()
        }
    };
    let allow_insecure_http = fields
        .boolean("allow_insecure_http", problems)
        .unwrap_or(false);
    if let Some(host) = address.strip_prefix("http://")
        && !allow_insecure_http
        && !is_loopback_host(host.split('/').next().unwrap_or(host))
    {
        fields.problem(
            problems,
            "address",
            format!(
                "{address:?} sends Vault tokens and data keys in clear text to a host that is not \
                 this machine: use https, or set allow_insecure_http = true"
            ),
        );
    }
    let mount = mount_path(fields, "mount", VAULT_DEFAULT_MOUNT, problems);
    let namespace = fields
        .string("namespace", problems)
        .map(|namespace| namespace.trim_matches('/').to_owned());
    if let Some(namespace) = &namespace
        && !valid_header_token(namespace)
    {
        fields.problem(
            problems,
            "namespace",
            format!("{namespace:?} is not a Vault namespace (visible ASCII, no spaces)"),
        );
    }
    let ca_cert = fields.string("ca_cert", problems).map(PathBuf::from);
    if ca_cert.is_some() && !address.starts_with("https://") {
        fields.problem(
            problems,
            "ca_cert",
            "only used with an https address (the address is not https)",
        );
    }
    let timeout = fields
        .duration("timeout", problems)
        .unwrap_or(VAULT_DEFAULT_TIMEOUT);
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(300) {
        fields.problem(problems, "timeout", "must be between 10ms and 5m");
    }
    let retries = fields
        .unsigned("retries", problems)
        .unwrap_or(u64::from(VAULT_DEFAULT_RETRIES));
    if retries > 10 {
        fields.problem(problems, "retries", "must be at most 10");
    }
    let auth = match fields.table("auth", problems) {
        Some(table) => parse_vault_auth(
            Fields::new(fields.field_path("auth"), Some(table)),
            env,
            problems,
        ),
        None => {
            fields.problem(
                problems,
                "auth",
                "missing: add [<provider>.auth] with method = \"token\", \"approle\" or \
                 \"kubernetes\"",
            );
            None
        }
    };
    let auth = auth?;
    (problems.len() == start).then(|| VaultConfig {
        address,
        mount,
        namespace,
        ca_cert,
        timeout,
        retries: u32::try_from(retries).unwrap_or(u32::MAX),
        auth,
    })
}

/// Whether `authority` (`host[:port]`) names this machine: `localhost` or a loopback address.
fn is_loopback_host(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn parse_vault_auth(
    mut fields: Fields<'_>,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Option<VaultAuth> {
    let start = problems.len();
    let method = fields.string("method", problems);
    let auth = match method.as_deref() {
        Some("token") => {
            let file = fields.string("token_file", problems);
            let variable = fields.string("token_env", problems);
            match (file, variable) {
                (Some(file), None) if !file.is_empty() => {
                    Some(VaultAuth::Token(VaultToken::File(PathBuf::from(file))))
                }
                (None, Some(variable)) if !variable.is_empty() => {
                    match env.get(&variable).map(|value| value.trim()) {
                        // The value is never echoed: it is a credential.
                        None => {
                            fields.problem(
                                problems,
                                "token_env",
                                format!("environment variable {variable} is not set"),
                            );
                            None
                        }
                        Some(value) if !valid_header_token(value) => {
                            fields.problem(
                                problems,
                                "token_env",
                                format!(
                                    "environment variable {variable} does not hold a token \
                                     (empty, or characters other than visible ASCII)"
                                ),
                            );
                            None
                        }
                        Some(value) => Some(VaultAuth::Token(VaultToken::Env {
                            variable,
                            value: Credential::new(value),
                        })),
                    }
                }
                (Some(_), Some(_)) => {
                    fields.problem(
                        problems,
                        "token_file",
                        "set either token_file or token_env, not both",
                    );
                    None
                }
                _ => {
                    fields.problem(
                        problems,
                        "token_file",
                        "missing: set token_file (a file holding the token) or token_env (the \
                         name of an environment variable holding it)",
                    );
                    None
                }
            }
        }
        Some("approle") => {
            let mount = mount_path(&mut fields, "mount", VAULT_DEFAULT_APPROLE_MOUNT, problems);
            let role_id_file = file_path(
                &mut fields,
                "role_id_file",
                "file holding the role id",
                problems,
            );
            let secret_id_file = file_path(
                &mut fields,
                "secret_id_file",
                "file holding the secret id",
                problems,
            );
            match (role_id_file, secret_id_file) {
                (Some(role_id_file), Some(secret_id_file)) => Some(VaultAuth::AppRole {
                    mount,
                    role_id_file,
                    secret_id_file,
                }),
                _ => None,
            }
        }
        Some("kubernetes") => {
            let mount = mount_path(
                &mut fields,
                "mount",
                VAULT_DEFAULT_KUBERNETES_MOUNT,
                problems,
            );
            let role = fields.string("role", problems);
            let jwt_file = fields
                .string("jwt_file", problems)
                .unwrap_or_else(|| KUBERNETES_DEFAULT_JWT_FILE.to_owned());
            if jwt_file.is_empty() {
                fields.problem(problems, "jwt_file", "must not be empty");
            }
            match role {
                Some(role) if valid_header_token(&role) => Some(VaultAuth::Kubernetes {
                    mount,
                    role,
                    jwt_file: PathBuf::from(jwt_file),
                }),
                Some(role) => {
                    fields.problem(
                        problems,
                        "role",
                        format!("{role:?} is not a role name (visible ASCII, no spaces)"),
                    );
                    None
                }
                None => {
                    fields.problem(problems, "role", "missing (the Vault role to log in as)");
                    None
                }
            }
        }
        Some(other) => {
            fields.problem(
                problems,
                "method",
                format!(
                    "unknown auth method {other:?} (expected one of: token, approle, kubernetes)"
                ),
            );
            if let Some(table) = fields.table {
                const AUTH_FIELDS: &[&str] = &[
                    "method",
                    "token_file",
                    "token_env",
                    "mount",
                    "role_id_file",
                    "secret_id_file",
                    "role",
                    "jwt_file",
                ];
                for key in table.keys() {
                    if let Some(known) = AUTH_FIELDS.iter().find(|k| **k == key) {
                        fields.used.insert(known);
                    }
                }
            }
            None
        }
        None => {
            fields.problem(
                problems,
                "method",
                "missing (one of: token, approle, kubernetes)",
            );
            None
        }
    };
    fields.finish(problems);
    auth.filter(|_| problems.len() == start)
}

/// `[providers.NAME] kind = "aws"`. Credentials are not configurable here on purpose: they
/// come from the AWS SDK's standard chain (environment, web identity / IRSA, container and EKS
/// Pod Identity, profile, IMDS).
pub(crate) fn parse_aws(
    fields: &mut Fields<'_>,
    problems: &mut Vec<Problem>,
) -> Option<AwsKmsOptions> {
    let before = problems.len();
    let mut options = AwsKmsOptions::default();
    if let Some(region) = fields.string("region", problems) {
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            fields.problem(
                problems,
                "region",
                format!("{region:?} is not an AWS region like \"eu-west-1\""),
            );
        }
        options.region = Some(region);
    }
    if let Some(endpoint) = fields.string("endpoint", problems) {
        let valid = endpoint
            .parse::<http::Uri>()
            .ok()
            .filter(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|host| !host.is_empty())
                    && uri.query().is_none()
            })
            .is_some();
        if !valid {
            fields.problem(
                problems,
                "endpoint",
                format!(
                    "{endpoint:?} is not an endpoint URL like \"https://kms.eu-west-1.amazonaws.com\""
                ),
            );
        }
        options.endpoint = Some(endpoint);
    }
    if let Some(profile) = fields.string("profile", problems) {
        if profile.trim().is_empty() {
            fields.problem(problems, "profile", "must not be empty");
        }
        options.profile = Some(profile);
    }
    if let Some(timeout) = fields.duration("timeout", problems) {
        if timeout < Duration::from_millis(10) {
            fields.problem(problems, "timeout", "must be at least 10ms");
        }
        options.timeout = timeout;
    }
    if let Some(timeout) = fields.duration("connect_timeout", problems) {
        if timeout < Duration::from_millis(10) {
            fields.problem(problems, "connect_timeout", "must be at least 10ms");
        }
        options.connect_timeout = timeout;
    }
    if let Some(attempts) = fields.unsigned("max_attempts", problems) {
        match u32::try_from(attempts) {
            Ok(attempts) if (1..=MAX_MAX_ATTEMPTS).contains(&attempts) => {
                options.max_attempts = attempts;
            }
            _ => fields.problem(
                problems,
                "max_attempts",
                format!("must be between 1 and {MAX_MAX_ATTEMPTS}, found {attempts}"),
            ),
        }
    }
    (problems.len() == before).then_some(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, std::iter::empty())
    }

    const GOOD: &str = r#"
        [server]
        listen = "127.0.0.1:9000"
        body_limit_bytes = "16MiB"
        [server.cors]
        allowed_origins = ["http://localhost:8233"]
        allow_credentials = true
        [data_keys]
        soft_limit = 1000
        hard_limit = 1200
        max_age = "1h"
        [providers.dev]
        kind = "local"
        path = "/tmp/k.json"
        [namespaces.default]
        provider = "dev"
        key = "default-key"
        hard_limit = 5000
        soft_limit = 10
        [namespaces."*"]
        provider = "dev"
        key = "kmscodec-{namespace}"
    "#;

    #[test]
    fn parses_a_full_file() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.server.body_limit_bytes, 16 << 20);
        assert!(config.server.cors.allow_credentials);
        let default = &config.namespaces["default"];
        assert_eq!(default.limits.hard_limit, 5000);
        assert_eq!(default.limits.soft_limit, 10);
        assert_eq!(default.limits.max_age, Duration::from_secs(3600));
        let wildcard = &config.namespaces["*"];
        assert_eq!(wildcard.limits.hard_limit, 1200);
        assert_eq!(wildcard.key, "kmscodec-{namespace}");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let error = parse(
            r#"
            [server]
            listen = "nowhere"
            body_limit_bytes = -1
            [data_keys]
            hard_limit = 5000000000
            [providers.dev]
            kind = "vualt"
            [providers.file]
            kind = "local"
            [namespaces.default]
            provider = "nope"
            key = "k"
            colour = "blue"
            [namespaces.other]
            key = "{namespace}"
            [surprise]
            "#,
        )
        .unwrap_err();
        let text = error.to_string();
        for expected in [
            "server.listen: expected an address",
            "server.body_limit_bytes: expected a non-negative integer",
            "data_keys.hard_limit: 5000000000 exceeds 2^32",
            "providers.dev.kind: unknown provider kind \"vualt\"",
            "providers.file.path: missing",
            "namespaces.default.provider: unknown provider \"nope\"",
            "namespaces.default.colour: unknown field",
            "namespaces.other.provider: missing",
            "namespaces.other.key: {namespace} is only allowed",
            "surprise: unknown field",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(error.problems.len(), 10, "{text}");
    }

    #[test]
    fn environment_overrides_apply_and_are_typed() {
        let env = vec![
            (
                "KMSCODEC_SERVER__LISTEN".to_owned(),
                "127.0.0.1:7777".to_owned(),
            ),
            (
                "KMSCODEC_NAMESPACES__DEFAULT__HARD_LIMIT".to_owned(),
                "2000".to_owned(),
            ),
            (
                "KMSCODEC_SERVER__CORS__ALLOWED_ORIGINS".to_owned(),
                "http://a.example, http://b.example".to_owned(),
            ),
            ("KMSCODEC_TOOLS".to_owned(), "/ignored".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let config = Config::from_toml_str(GOOD, env).unwrap();
        assert_eq!(config.server.listen.port(), 7777);
        assert_eq!(config.namespaces["default"].limits.hard_limit, 2000);
        assert_eq!(
            config.server.cors.allowed_origins,
            ["http://a.example", "http://b.example"]
        );

        let bad = vec![(
            "KMSCODEC_SERVER__BODY_LIMIT_BYTES".to_owned(),
            "lots".to_owned(),
        )];
        let error = Config::from_toml_str(GOOD, bad).unwrap_err().to_string();
        assert!(error.contains("server.body_limit_bytes"), "{error}");
    }

    #[test]
    fn payload_format_defaults_to_2_and_is_overridden_per_namespace() {
        let config = parse(
            r#"
            [data_keys]
            format = 1
            [providers.dev]
            kind = "local"
            path = "k.json"
            [namespaces.old]
            provider = "dev"
            key = "k"
            [namespaces.new]
            provider = "dev"
            key = "k"
            format = 2
            "#,
        )
        .unwrap();
        assert_eq!(config.namespaces["old"].limits.format, Format::V1);
        assert_eq!(config.namespaces["new"].limits.format, Format::V2);
        assert_eq!(
            parse(GOOD).unwrap().namespaces["default"].limits.format,
            Format::V2
        );

        let error = parse(
            r#"
            [providers.dev]
            kind = "local"
            path = "k.json"
            [namespaces."*"]
            provider = "dev"
            key = "k"
            format = 4
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "namespaces.\"*\".format: expected 1, 2 or 3 (the sealed payload format), found 4"
            ),
            "{error}"
        );
    }

    #[test]
    fn compression_is_off_by_default_and_set_per_namespace() {
        use crate::compression::{DEFAULT_LEVEL, DEFAULT_MIN_SIZE, Settings};
        let config = parse(
            r#"
            [data_keys]
            compression_level = 5
            [providers.dev]
            kind = "local"
            path = "k.json"
            [namespaces.plain]
            provider = "dev"
            key = "k"
            [namespaces.packed]
            provider = "dev"
            key = "k"
            compression = "zstd"
            compression_min_size = "8KiB"
            "#,
        );
        // A level without compression is a mistake, reported.
        let error = config.unwrap_err().to_string();
        assert!(
            error.contains("data_keys.compression_level: set compression = \"zstd\""),
            "{error}"
        );
        let config = parse(
            r#"
            [data_keys]
            compression = "zstd"
            compression_level = 5
            [providers.dev]
            kind = "local"
            path = "k.json"
            [namespaces.inherits]
            provider = "dev"
            key = "k"
            [namespaces.small]
            provider = "dev"
            key = "k"
            compression_min_size = "8KiB"
            [namespaces.off]
            provider = "dev"
            key = "k"
            compression = "none"
            "#,
        )
        .unwrap();
        let limits = |name: &str| config.namespaces[name].limits.clone();
        assert_eq!(
            limits("inherits").compression,
            Some(Settings {
                level: 5,
                min_size: DEFAULT_MIN_SIZE
            })
        );
        assert_eq!(limits("inherits").sealing_format(), Format::V3);
        assert_eq!(limits("small").compression.unwrap().min_size, 8192);
        assert_eq!(limits("off").compression, None);
        assert_eq!(limits("off").sealing_format(), Format::V2);
        let default = parse(GOOD).unwrap().namespaces["default"].limits.clone();
        assert_eq!(default.compression, None);
        assert_eq!(default.sealing_format(), Format::V2);
        assert_eq!(Settings::default().level, DEFAULT_LEVEL);

        for (table, message) in [
            (
                "compression = \"lz4\"",
                "compression: expected \"zstd\" or \"none\", found \"lz4\"",
            ),
            (
                "compression = \"zstd\"\ncompression_level = 23",
                "compression_level: expected a zstd level from 1 to 22, found 23",
            ),
            (
                "compression = \"zstd\"\nformat = 2",
                "format: compression = \"zstd\" seals in format 3",
            ),
        ] {
            let error = parse(&format!(
                "[providers.dev]\nkind = \"local\"\npath = \"k.json\"\n\
                 [namespaces.x]\nprovider = \"dev\"\nkey = \"k\"\n{table}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(error.contains(message), "{error}");
        }
    }

    #[test]
    fn soft_limit_above_hard_and_credentials_with_star_are_refused() {
        let error = parse(
            r#"
            [server.cors]
            allowed_origins = ["*"]
            allow_credentials = true
            [data_keys]
            soft_limit = 10
            hard_limit = 5
            [providers.dev]
            kind = "local"
            path = "k.json"
            [namespaces."*"]
            provider = "dev"
            key = "k"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("data_keys.soft_limit: must be between 1 and hard_limit (5)"),
            "{error}"
        );
        assert!(
            error.contains("server.cors.allow_credentials: cannot be combined"),
            "{error}"
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("8MiB"), Some(8 << 20));
        assert_eq!(parse_size("10kB"), Some(10_000));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn embedded_default_serves_every_namespace_from_the_data_dir() {
        let config = Config::embedded_default(Path::new("/data"), std::iter::empty()).unwrap();
        assert!(config.embedded_default);
        assert_eq!(
            config.providers[DEV_PROVIDER],
            ProviderConfig::Local {
                path: PathBuf::from("/data/keyring.json"),
                create_missing: true
            }
        );
        assert_eq!(config.namespaces["*"].key, DEV_KEY);
        assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn vault_providers_parse_with_defaults_and_env_tokens() {
        let text = r#"
            [providers.vault]
            kind = "vault"
            address = "https://vault.example.com:8200/"
            [providers.vault.auth]
            method = "token"
            token_env = "SIDECAR_VAULT_TOKEN"
            [providers.k8s]
            kind = "vault"
            address = "http://127.0.0.1:8200"
            mount = "/kv/transit/"
            namespace = "admin/team-a"
            timeout = "750ms"
            retries = 0
            [providers.k8s.auth]
            method = "kubernetes"
            role = "kmscodec"
            [providers.app]
            kind = "vault"
            address = "https://vault.example.com"
            ca_cert = "/etc/vault/ca.pem"
            [providers.app.auth]
            method = "approle"
            role_id_file = "/run/role-id"
            secret_id_file = "/run/secret-id"
            [namespaces."*"]
            provider = "vault"
            key = "kmscodec-{namespace}"
        "#;
        let env = vec![(
            "SIDECAR_VAULT_TOKEN".to_owned(),
            " s.secret-value\n".to_owned(),
        )];
        let config = Config::from_toml_str(text, env).unwrap();
        let ProviderConfig::Vault(vault) = &config.providers["vault"] else {
            panic!("not vault");
        };
        assert_eq!(vault.address, "https://vault.example.com:8200");
        assert_eq!(vault.mount, VAULT_DEFAULT_MOUNT);
        assert_eq!(vault.timeout, VAULT_DEFAULT_TIMEOUT);
        assert_eq!(vault.retries, VAULT_DEFAULT_RETRIES);
        assert_eq!(
            vault.auth,
            VaultAuth::Token(VaultToken::Env {
                variable: "SIDECAR_VAULT_TOKEN".to_owned(),
                value: Credential::new("s.secret-value"),
            })
        );
        assert!(!format!("{config:?}").contains("secret-value"));
        let ProviderConfig::Vault(k8s) = &config.providers["k8s"] else {
            panic!("not vault");
        };
        assert_eq!(k8s.mount, "kv/transit");
        assert_eq!(k8s.namespace.as_deref(), Some("admin/team-a"));
        assert_eq!(k8s.timeout, Duration::from_millis(750));
        assert_eq!(k8s.retries, 0);
        assert_eq!(
            k8s.auth,
            VaultAuth::Kubernetes {
                mount: VAULT_DEFAULT_KUBERNETES_MOUNT.to_owned(),
                role: "kmscodec".to_owned(),
                jwt_file: PathBuf::from(KUBERNETES_DEFAULT_JWT_FILE),
            }
        );
        let ProviderConfig::Vault(app) = &config.providers["app"] else {
            panic!("not vault");
        };
        assert_eq!(app.ca_cert.as_deref(), Some(Path::new("/etc/vault/ca.pem")));
        assert!(matches!(&app.auth, VaultAuth::AppRole { mount, .. } if mount == "approle"));
    }

    #[test]
    fn vault_problems_are_all_reported_without_echoing_secrets() {
        let error = Config::from_toml_str(
            r#"
            [providers.a]
            kind = "vault"
            address = "vault.example.com/v1"
            mount = "transit/../sys"
            ca_cert = "/ca.pem"
            timeout = "1y"
            retries = 50
            token_file = "/misplaced"
            [providers.a.auth]
            method = "token"
            token_env = "BAD_TOKEN"
            [providers.b]
            kind = "vault"
            address = "http://127.0.0.1:8200"
            [providers.c]
            kind = "vault"
            address = "http://127.0.0.1:8200"
            [providers.c.auth]
            method = "approle"
            secret_id_file = ""
            [providers.d]
            kind = "vault"
            address = "http://127.0.0.1:8200"
            [providers.d.auth]
            method = "userpass"
            [providers.e]
            kind = "vault"
            address = "http://127.0.0.1:8200"
            [providers.e.auth]
            method = "token"
            token_env = "UNSET_TOKEN"
            [namespaces.x]
            provider = "a"
            key = "kmscodec-x"
            [namespaces.y]
            provider = "e"
            key = "bad/key"
            "#,
            vec![("BAD_TOKEN".to_owned(), "tok en\u{7f}".to_owned())],
        )
        .unwrap_err();
        let text = error.to_string();
        for expected in [
            "providers.a.address: \"vault.example.com/v1\": not a URL",
            "providers.a.mount: \"transit/../sys\" is not a mount path",
            "providers.a.ca_cert: only used with an https address",
            "providers.a.timeout: expected a duration",
            "providers.a.retries: must be at most 10",
            "providers.a.token_file: unknown field",
            "providers.a.auth.token_env: environment variable BAD_TOKEN does not hold a token",
            "providers.b.auth: missing",
            "providers.c.auth.role_id_file: missing",
            "providers.c.auth.secret_id_file: must not be empty",
            "providers.d.auth.method: unknown auth method \"userpass\"",
            "providers.e.auth.token_env: environment variable UNSET_TOKEN is not set",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // The namespaces naming those providers are reported too (the providers are unusable).
        assert!(
            text.contains("namespaces.x.provider: unknown provider \"a\""),
            "{text}"
        );
        assert!(!text.contains("tok en"), "{text}");
        assert_eq!(error.problems.len(), 14, "{text}");
    }

    #[test]
    fn plain_http_to_vault_is_for_this_machine_unless_allowed() {
        let config = |address: &str, allow: &str| {
            format!(
                "[providers.v]\nkind = \"vault\"\naddress = \"{address}\"\n{allow}\
                 [providers.v.auth]\nmethod = \"token\"\ntoken_env = \"T\"\n\
                 [namespaces.x]\nprovider = \"v\"\nkey = \"k\"\n"
            )
        };
        let env = || vec![("T".to_owned(), "s.token".to_owned())];
        for address in [
            "http://127.0.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200",
            "https://vault.example.com",
        ] {
            Config::from_toml_str(&config(address, ""), env())
                .unwrap_or_else(|e| panic!("{address}: {e}"));
        }
        for address in ["http://vault.example.com:8200", "http://10.0.0.7:8200"] {
            let error = Config::from_toml_str(&config(address, ""), env())
                .unwrap_err()
                .to_string();
            assert!(error.contains("providers.v.address"), "{error}");
            assert!(error.contains("allow_insecure_http = true"), "{error}");
            Config::from_toml_str(&config(address, "allow_insecure_http = true\n"), env())
                .unwrap_or_else(|e| panic!("{address} with allow_insecure_http: {e}"));
        }
    }

    #[test]
    fn vault_key_names_are_checked() {
        let error = parse(
            r#"
            [providers.v]
            kind = "vault"
            address = "http://127.0.0.1:8200"
            [providers.v.auth]
            method = "kubernetes"
            role = "r"
            [namespaces.a]
            provider = "v"
            key = "bad/key"
            [namespaces."*"]
            provider = "v"
            key = "kmscodec-{namespace}?"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("namespaces.a.key: \"bad/key\" is not a valid transit key name"),
            "{error}"
        );
        assert!(error.contains("is not a valid transit key name"), "{error}");
        assert!(valid_transit_key_name("kmscodec-payments.prod_1"));
        assert!(!valid_transit_key_name("-x"));
        assert!(!valid_transit_key_name("x."));
        assert!(!valid_transit_key_name(".."));
    }

    #[test]
    fn aws_providers_parse_with_defaults_and_report_every_bad_field() {
        let config = parse(
            r#"
            [providers.kms]
            kind = "aws"
            region = "eu-west-1"
            endpoint = "http://127.0.0.1:4566"
            timeout = "1.5s"
            max_attempts = 2
            [providers.chain]
            kind = "aws"
            [namespaces.default]
            provider = "kms"
            key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            [namespaces."*"]
            provider = "chain"
            key = "alias/kmscodec/{namespace}"
            "#,
        )
        .unwrap();
        let ProviderConfig::Aws(kms) = &config.providers["kms"] else {
            panic!("not aws: {:?}", config.providers["kms"]);
        };
        assert_eq!(kms.region.as_deref(), Some("eu-west-1"));
        assert_eq!(kms.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(kms.timeout, Duration::from_millis(1500));
        assert_eq!(kms.connect_timeout, aws_kms::DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(kms.max_attempts, 2);
        assert_eq!(
            config.providers["chain"],
            ProviderConfig::Aws(AwsKmsOptions::default())
        );
        assert_eq!(config.providers["chain"].kind(), "aws");

        let error = parse(
            r#"
            [providers.kms]
            kind = "aws"
            region = "Europe West"
            endpoint = "kms.example.com"
            timeout = "soon"
            max_attempts = 0
            profile = ""
            secret_access_key = "never here"
            [namespaces.default]
            provider = "kms"
            key = "alias/aws/s3"
            [namespaces.other]
            provider = "kms"
            key = "arn:aws:s3:::bucket"
            "#,
        )
        .unwrap_err();
        let text = error.to_string();
        for expected in [
            "providers.kms.region: \"Europe West\" is not an AWS region",
            "providers.kms.endpoint: \"kms.example.com\" is not an endpoint URL",
            "providers.kms.timeout: expected a duration",
            "providers.kms.max_attempts: must be between 1 and 10, found 0",
            "providers.kms.profile: must not be empty",
            "providers.kms.secret_access_key: unknown field",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // The provider is dropped, so its namespaces report the unknown provider instead.
        assert!(
            text.contains("namespaces.default.provider: unknown provider"),
            "{text}"
        );

        let error = parse(
            r#"
            [providers.kms]
            kind = "aws"
            [namespaces.default]
            provider = "kms"
            key = "alias/aws/s3"
            [namespaces.other]
            provider = "kms"
            key = "arn:aws:s3:::bucket"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("namespaces.default.key: \"alias/aws/s3\""),
            "{error}"
        );
        assert!(
            error.contains("namespaces.other.key: \"arn:aws:s3:::bucket\""),
            "{error}"
        );
    }

    #[test]
    fn admin_token_file_is_optional_and_checked() {
        let base = "[providers.local]\nkind = \"local\"\npath = \"/k.json\"\n\
                    [namespaces.\"*\"]\nprovider = \"local\"\nkey = \"dev\"\n";
        assert_eq!(parse(base).unwrap().admin.token_file, None);
        let with = parse(&format!(
            "{base}[admin]\ntoken_file = \"/run/admin-token\"\n"
        ))
        .unwrap();
        assert_eq!(
            with.admin.token_file.as_deref(),
            Some(Path::new("/run/admin-token"))
        );
        let error = parse(&format!(
            "{base}[admin]\ntoken_file = \"\"\ntoken = \"x\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("admin.token_file: must not be empty"),
            "{error}"
        );
        assert!(error.contains("admin.token: unknown field"), "{error}");
    }

    #[test]
    fn namespace_names() {
        assert!(valid_namespace("default"));
        assert!(valid_namespace("payments.a1b2c"));
        assert!(!valid_namespace(""));
        assert!(!valid_namespace("has space"));
        assert!(!valid_namespace("a/b"));
        assert!(!valid_namespace(&"n".repeat(256)));
    }
}
