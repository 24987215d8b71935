//! The Vault provider's settings (`kind = "vault"`), as `config` reads them, and the name rules
//! its inputs follow (transit key names, mount paths, header values).

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Credential;

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
