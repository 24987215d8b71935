//! `[providers.<name>]`: a local keyring file, Vault or OpenBao transit, or AWS KMS, read into
//! the key providers' own settings ([`ProviderConfig`], [`VaultConfig`], [`AwsKmsOptions`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::fields::{Fields, Problem};
use crate::keys::ProviderConfig;
use crate::keys::aws_kms::{AwsKmsOptions, MAX_MAX_ATTEMPTS};
use crate::keys::vault::{
    KUBERNETES_DEFAULT_JWT_FILE, VAULT_DEFAULT_APPROLE_MOUNT, VAULT_DEFAULT_KUBERNETES_MOUNT,
    VAULT_DEFAULT_MOUNT, VAULT_DEFAULT_RETRIES, VAULT_DEFAULT_TIMEOUT, VaultAuth, VaultConfig,
    VaultToken, valid_header_token, valid_mount_path,
};
use crate::secret::Credential;

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

/// Parses one provider table at `path`; `env` serves `auth.token_env`.
pub(super) fn parse(
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
            // Every known key counts as read, so the one real problem is not buried under
            // unknown fields.
            fields.read_elsewhere(PROVIDER_FIELDS);
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
            // Every known key counts as read, so the one real problem stands alone.
            fields.read_elsewhere(&[
                "method",
                "token_file",
                "token_env",
                "mount",
                "role_id_file",
                "secret_id_file",
                "role",
                "jwt_file",
            ]);
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
pub(super) fn parse_aws(
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
