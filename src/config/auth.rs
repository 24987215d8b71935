//! `[auth]` and `[authz]`: authentication methods' settings and authorization rules, read into
//! the auth module's own types. Every problem (a typo, a missing issuer, an unknown role) is
//! reported at once with its full path; no file is opened here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use url::Url;

use super::fields::{Fields, Problem, path_segment};
use crate::auth::{
    AuthConfig, AuthzConfig, DEFAULT_EMAIL_CLAIM, DEFAULT_GROUPS_CLAIM, DEFAULT_JWKS_REFRESH,
    DEFAULT_LEEWAY, JwksSource, JwtAlgorithm, JwtConfig, MAX_LEEWAY, MIN_JWKS_REFRESH, Method,
    PRINCIPAL_KINDS, Role, Rule, TokenConfig, valid_token_name,
};
use crate::namespace::Namespace;

/// Parses `[auth]` and `[authz]`. Problems are reported with paths under `auth.` and `authz.`.
pub(super) fn parse(
    auth: Option<&toml::Table>,
    authz: Option<&toml::Table>,
    problems: &mut Vec<Problem>,
) -> (AuthConfig, AuthzConfig) {
    let auth_config = parse_auth(auth, problems);
    let authz_config = parse_authz(authz, &auth_config, problems);
    (auth_config, authz_config)
}

fn parse_auth(table: Option<&toml::Table>, problems: &mut Vec<Problem>) -> AuthConfig {
    let mut config = AuthConfig::default();
    let mut fields = Fields::new("auth", table);
    if let Some(tokens) = fields.table("tokens", problems) {
        for (name, value) in tokens {
            let path = format!("auth.tokens.{}", path_segment(name));
            if !valid_token_name(name) {
                problems.push(Problem {
                    path: path.clone(),
                    message: "not a valid principal name (1-253 letters, digits, '-', '_', '.' \
                              or '@')"
                        .to_owned(),
                });
            }
            let toml::Value::Table(table) = value else {
                problems.push(Problem {
                    path,
                    message: format!(
                        "expected a table with a `file` key, found {}",
                        value.type_str()
                    ),
                });
                continue;
            };
            let mut token_fields = Fields::new(path, Some(table));
            match token_fields.string("file", problems) {
                None => token_fields.problem(
                    problems,
                    "file",
                    "missing (the file holding this principal's tokens, one per line)",
                ),
                Some(file) if file.is_empty() => {
                    token_fields.problem(problems, "file", "must not be empty")
                }
                Some(file) => {
                    config.tokens.insert(
                        name.clone(),
                        TokenConfig {
                            file: PathBuf::from(file),
                        },
                    );
                }
            }
            token_fields.finish(problems);
        }
    }
    if let Some(jwt) = fields.table("jwt", problems) {
        config.jwt = parse_jwt(Fields::new("auth.jwt", Some(jwt)), problems);
    }
    fields.finish(problems);
    config
}

fn parse_jwt(mut fields: Fields<'_>, problems: &mut Vec<Problem>) -> Option<JwtConfig> {
    let issuer = match fields.string("issuer", problems) {
        None => {
            fields.problem(
                problems,
                "issuer",
                "missing (the `iss` value tokens must carry)",
            );
            None
        }
        Some(issuer) if issuer.is_empty() => {
            fields.problem(problems, "issuer", "must not be empty");
            None
        }
        Some(issuer) => Some(issuer),
    };
    let audiences = match fields.strings("audiences", problems) {
        None => {
            fields.problem(
                problems,
                "audiences",
                "missing (the `aud` values accepted, e.g. [\"temporal-ui\"])",
            );
            None
        }
        Some(audiences) if audiences.is_empty() => {
            fields.problem(problems, "audiences", "must name at least one audience");
            None
        }
        Some(audiences) if audiences.iter().any(String::is_empty) => {
            fields.problem(problems, "audiences", "must not contain an empty audience");
            None
        }
        Some(audiences) => Some(audiences),
    };
    let url = fields.string("jwks_url", problems);
    let file = fields.string("jwks_file", problems);
    let jwks = match (url, file) {
        (Some(_), Some(_)) => {
            fields.problem(
                problems,
                "jwks_file",
                "set either jwks_url or jwks_file, not both",
            );
            None
        }
        (None, None) => {
            fields.problem(
                problems,
                "jwks_url",
                "missing (set jwks_url, or jwks_file for a local key set)",
            );
            None
        }
        (Some(url), None) => match check_jwks_url(&url) {
            Ok(url) => Some(JwksSource::Url(url)),
            Err(message) => {
                fields.problem(problems, "jwks_url", message);
                None
            }
        },
        (None, Some(file)) if file.is_empty() => {
            fields.problem(problems, "jwks_file", "must not be empty");
            None
        }
        (None, Some(file)) => Some(JwksSource::File(PathBuf::from(file))),
    };
    let algorithms = match fields.strings("algorithms", problems) {
        None => Some(JwtAlgorithm::ALL.to_vec()),
        Some(names) if names.is_empty() => {
            fields.problem(
                problems,
                "algorithms",
                "must name at least one algorithm (RS256, ES256)",
            );
            None
        }
        Some(names) => {
            let mut algorithms = Vec::new();
            let mut ok = true;
            for name in &names {
                match JwtAlgorithm::from_name(name) {
                    Some(algorithm) if !algorithms.contains(&algorithm) => {
                        algorithms.push(algorithm)
                    }
                    Some(_) => {}
                    None => {
                        ok = false;
                        fields.problem(
                            problems,
                            "algorithms",
                            format!(
                                "{name:?} is not accepted: only RS256 and ES256 (no HMAC, no \
                                 \"none\")"
                            ),
                        );
                    }
                }
            }
            ok.then_some(algorithms)
        }
    };
    let leeway = fields
        .duration("leeway", problems)
        .unwrap_or(DEFAULT_LEEWAY);
    if leeway > MAX_LEEWAY {
        fields.problem(problems, "leeway", "must be at most 10m");
    }
    let groups_claim = claim_name(&mut fields, "groups_claim", DEFAULT_GROUPS_CLAIM, problems);
    let email_claim = claim_name(&mut fields, "email_claim", DEFAULT_EMAIL_CLAIM, problems);
    let jwks_refresh = fields
        .duration("jwks_refresh", problems)
        .unwrap_or(DEFAULT_JWKS_REFRESH);
    if jwks_refresh < MIN_JWKS_REFRESH {
        fields.problem(problems, "jwks_refresh", "must be at least 30s");
    }
    fields.finish(problems);
    Some(JwtConfig {
        issuer: issuer?,
        audiences: audiences?,
        jwks: jwks?,
        algorithms: algorithms?,
        leeway,
        groups_claim,
        email_claim,
        jwks_refresh,
    })
}

fn claim_name(
    fields: &mut Fields<'_>,
    key: &'static str,
    default: &str,
    problems: &mut Vec<Problem>,
) -> String {
    match fields.string(key, problems) {
        Some(name) if name.is_empty() || name.split('.').any(str::is_empty) => {
            fields.problem(
                problems,
                key,
                format!("{name:?} is not a claim name (a dotted path reaches nested claims)"),
            );
            default.to_owned()
        }
        Some(name) => name,
        None => default.to_owned(),
    }
}

/// A JWKS URL: `https`, or `http` to a loopback address only (a key set fetched in clear text
/// from elsewhere could be replaced by anyone on the path, who could then mint tokens).
fn check_jwks_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(domain)) => domain == "localhost",
                Some(url::Host::Ipv4(address)) => address.is_loopback(),
                Some(url::Host::Ipv6(address)) => address.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(format!(
                    "{text:?}: the key set must be fetched over https (http only on loopback)"
                ));
            }
        }
        other => return Err(format!("{text:?}: unsupported scheme {other:?}")),
    }
    if url.host().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{:?}: credentials in the URL are not supported",
            url.origin().ascii_serialization()
        ));
    }
    Ok(url)
}

fn parse_authz(
    table: Option<&toml::Table>,
    auth: &AuthConfig,
    problems: &mut Vec<Problem>,
) -> AuthzConfig {
    let mut config = AuthzConfig::default();
    let mut fields = Fields::new("authz", table);
    match fields.raw("rules") {
        None => {}
        Some(toml::Value::Array(rules)) => {
            for (index, rule) in rules.iter().enumerate() {
                let path = format!("authz.rules[{index}]");
                match rule {
                    toml::Value::Table(table) => {
                        if let Some(rule) =
                            parse_rule(Fields::new(path, Some(table)), auth, problems)
                        {
                            config.rules.push(rule);
                        }
                    }
                    other => problems.push(Problem {
                        path,
                        message: format!("expected a table, found {}", other.type_str()),
                    }),
                }
            }
        }
        Some(other) => fields.problem(
            problems,
            "rules",
            format!(
                "expected an array of tables ([[authz.rules]]), found {}",
                other.type_str()
            ),
        ),
    }
    fields.finish(problems);
    config
}

fn parse_rule(
    mut fields: Fields<'_>,
    auth: &AuthConfig,
    problems: &mut Vec<Problem>,
) -> Option<Rule> {
    let mut ok = true;
    let principals = required_list(&mut fields, "principals", problems);
    for principal in principals.iter().flatten() {
        if let Err(message) = check_principal(principal, auth) {
            ok = false;
            fields.problem(problems, "principals", message);
        }
    }
    let namespaces = required_list(&mut fields, "namespaces", problems);
    for namespace in namespaces.iter().flatten() {
        if namespace != "*"
            && let Err(error) = Namespace::new(namespace)
        {
            ok = false;
            fields.problem(problems, "namespaces", format!("{error}, or \"*\""));
        }
    }
    let mut roles = Vec::new();
    for name in required_list(&mut fields, "roles", problems)
        .iter()
        .flatten()
    {
        match Role::from_name(name) {
            Some(role) if !roles.contains(&role) => roles.push(role),
            Some(_) => {}
            None => {
                ok = false;
                fields.problem(
                    problems,
                    "roles",
                    format!("unknown role {name:?} (expected \"read\" or \"write\")"),
                );
            }
        }
    }
    fields.finish(problems);
    let rule = Rule {
        principals: principals?,
        namespaces: namespaces?,
        roles,
    };
    (ok && !rule.roles.is_empty()).then_some(rule)
}

fn required_list(
    fields: &mut Fields<'_>,
    key: &'static str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    match fields.strings(key, problems) {
        None => {
            fields.problem(problems, key, "missing");
            None
        }
        Some(list) if list.is_empty() => {
            fields.problem(problems, key, "must not be empty");
            None
        }
        Some(list) => Some(list),
    }
}

/// A rule's principal: `*` or `kind:value` with a known kind; `token:` must name a configured
/// token principal.
fn check_principal(principal: &str, auth: &AuthConfig) -> Result<(), String> {
    if principal == "*" {
        return Ok(());
    }
    let Some((kind, value)) = principal.split_once(':') else {
        return Err(format!(
            "{principal:?} has no kind: write token:NAME, sub:ID, email:ADDRESS, group:NAME, \
             cert:NAME or \"*\""
        ));
    };
    if !PRINCIPAL_KINDS.contains(&kind) {
        return Err(format!(
            "{principal:?}: unknown principal kind {kind:?} (expected one of: {})",
            PRINCIPAL_KINDS.join(", ")
        ));
    }
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(format!(
            "{principal:?}: the name after {kind}: is empty or not printable"
        ));
    }
    if kind == "token" && !auth.tokens.contains_key(value) {
        return Err(format!(
            "{principal:?}: no [auth.tokens.{}] is configured",
            path_segment(value)
        ));
    }
    Ok(())
}

/// Checks a listener's authentication methods (`"token"`, `"jwt"`, `"mtls"`) against `[auth]`
/// and `[authz]`, reporting problems at `path` (the listener's `auth` key). Returns the methods,
/// in order, without the unknown or duplicate ones.
///
/// Each method must be configured (`token` needs an `[auth.tokens.*]`, `jwt` needs
/// `[auth.jwt]`; `mtls` is configured by the listener's TLS settings, which the caller checks),
/// and a listener with any method needs at least one `[[authz.rules]]`: authenticated callers
/// with no rule would all be refused.
pub(super) fn validate_methods(
    methods: &[String],
    auth: &AuthConfig,
    authz: &AuthzConfig,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Method> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, name) in methods.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let Some(method) = Method::from_name(name) else {
            problems.push(Problem {
                path: item_path,
                message: format!(
                    "unknown authentication method {name:?} (expected \"token\", \"jwt\" or \
                     \"mtls\")"
                ),
            });
            continue;
        };
        if !seen.insert(method) {
            problems.push(Problem {
                path: item_path,
                message: format!("{name:?} is listed twice"),
            });
            continue;
        }
        match method {
            Method::Token if auth.tokens.is_empty() => problems.push(Problem {
                path: item_path,
                message: "\"token\" needs at least one [auth.tokens.<name>] with a file".to_owned(),
            }),
            Method::Jwt if auth.jwt.is_none() => problems.push(Problem {
                path: item_path,
                message: "\"jwt\" needs an [auth.jwt] table (issuer, audiences, jwks_url)"
                    .to_owned(),
            }),
            _ => {}
        }
        out.push(method);
    }
    if !methods.is_empty() && authz.rules.is_empty() {
        problems.push(Problem {
            path: path.to_owned(),
            message: "authentication is on but [authz] has no rules: add [[authz.rules]] naming \
                      who may read (decode) and write (encode) which namespaces"
                .to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
