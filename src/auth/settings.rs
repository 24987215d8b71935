//! The settings of authentication methods (`[auth]`) and authorization rules (`[authz]`),
//! as `config` reads them from TOML.
//!
//! These are plain values: the token and JWKS files they name are opened by
//! [`super::Authenticator::new`] at startup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::Role;

/// Default clock skew allowed on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default lifetime of a fetched JWKS.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(600);
/// Default claim holding the caller's groups.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// Default claim holding the caller's email address.
pub const DEFAULT_EMAIL_CLAIM: &str = "email";
/// Largest leeway accepted: more would make `exp` meaningless.
pub const MAX_LEEWAY: Duration = Duration::from_secs(600);
/// Shortest JWKS cache lifetime accepted (the refetch rate limit is 30 s anyway).
pub const MIN_JWKS_REFRESH: Duration = Duration::from_secs(30);

/// The prefixes a rule's principal may carry, with what each names.
pub const PRINCIPAL_KINDS: [&str; 5] = ["token", "sub", "email", "group", "cert"];

/// Authentication methods' settings (`[auth]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Static bearer token principals by name (`[auth.tokens.<name>]`): principal `token:<name>`.
    pub tokens: BTreeMap<String, TokenConfig>,
    /// JWT bearer tokens from one OIDC issuer (`[auth.jwt]`).
    pub jwt: Option<JwtConfig>,
}

/// One static token principal (`[auth.tokens.<name>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The file holding its tokens, one per line (several during a rotation).
    pub file: PathBuf,
}

/// A JWT algorithm kmscodec accepts. Only asymmetric ones: a shared HMAC secret or `none` would
/// let anyone holding the JWKS (which is public) mint tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 section 3.3).
    Rs256,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 section 3.4).
    Es256,
}

impl JwtAlgorithm {
    /// Every accepted algorithm, the default list.
    pub const ALL: [Self; 2] = [Self::Rs256, Self::Es256];

    /// The JOSE name (`RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    /// Parses a JOSE name; `None` for anything else (HS256, none, PS256, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// Where the issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched over HTTPS (HTTP only on loopback), cached, refetched on an unknown `kid`.
    Url(Url),
    /// A local JWKS document, re-read on the same schedule.
    File(PathBuf),
}

/// JWT settings (`[auth.jwt]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// The `iss` every token must carry, compared exactly.
    pub issuer: String,
    /// Accepted `aud` values: a token's `aud` (string or array) must contain one.
    pub audiences: Vec<String>,
    /// The signing keys.
    pub jwks: JwksSource,
    /// Accepted algorithms (`alg` header).
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The claim holding groups (a string or an array of strings); a dotted path
    /// (`realm_access.roles`) reaches into nested objects.
    pub groups_claim: String,
    /// The claim holding the email address.
    pub email_claim: String,
    /// How long a fetched JWKS is used before it is fetched again.
    pub jwks_refresh: Duration,
}

/// Authorization rules (`[authz]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzConfig {
    /// Allow rules; anything no rule allows is denied.
    pub rules: Vec<Rule>,
}

/// One allow rule (`[[authz.rules]]`): any of `principals` may do any of `roles` in any of
/// `namespaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `kind:value` names (`token:oncall`, `group:temporal-admins`) or `*` (anyone
    /// authenticated).
    pub principals: Vec<String>,
    /// Namespace names or `*`.
    pub namespaces: Vec<String>,
    /// What they may do.
    pub roles: Vec<Role>,
}

/// Is `name` usable as a static token principal name (`[auth.tokens.<name>]`)? The characters
/// of a Kubernetes Secret key (`[-._a-zA-Z0-9]`) plus `@`, 1 to 253 bytes.
pub fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}
