//! JWT bearer tokens from one OIDC issuer: signature (RS256/ES256 with a key from the issuer's
//! JWKS), `iss`, `aud`, `exp` (required), `nbf` and `iat`, then the caller's names from the
//! claims (`sub:`, `email:`, `group:`).
//!
//! The order matters: the signature is verified before any claim is looked at, so the specific
//! errors (expired, wrong audience, ...) are only ever told to holders of a genuinely signed
//! token. A token's content is never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::KeyCache;
use super::settings::JwtConfig;
use super::{AuthError, AuthSetupError, Method, Principal};

/// Longest token accepted, before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 << 10;

/// What a verified token says about its bearer.
struct Identity {
    sub: String,
    /// `sub:`, then `email:` and `group:` names.
    names: Vec<String>,
}

/// Verifies the tokens of one issuer.
#[derive(Debug)]
pub(crate) struct Verifier {
    issuer: String,
    leeway: Duration,
    groups_claim: String,
    email_claim: String,
    /// One validation per accepted algorithm (the `alg` header picks it).
    validations: Vec<(Algorithm, Validation)>,
    keys: KeyCache,
}

impl Verifier {
    pub(crate) fn new(config: &JwtConfig) -> Result<Self, AuthSetupError> {
        let validations = config
            .algorithms
            .iter()
            .map(|algorithm| {
                let algorithm = algorithm.to_jsonwebtoken();
                let mut validation = Validation::new(algorithm);
                validation.leeway = config.leeway.as_secs();
                validation.validate_exp = true;
                validation.validate_nbf = true;
                validation.validate_aud = true;
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&config.audiences);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                (algorithm, validation)
            })
            .collect();
        Ok(Self {
            issuer: config.issuer.clone(),
            leeway: config.leeway,
            groups_claim: config.groups_claim.clone(),
            email_claim: config.email_claim.clone(),
            validations,
            keys: KeyCache::new(&config.jwks, config.jwks_refresh)?,
        })
    }

    #[cfg(test)]
    pub(crate) fn keys_mut(&mut self) -> &mut KeyCache {
        &mut self.keys
    }

    /// Fetches the key set if none is cached.
    pub(crate) async fn prefetch(&self) -> Result<(), String> {
        self.keys.prefetch().await
    }

    /// Authenticates an access token; a valid ID token in `extras` (the Web UI's
    /// `Authorization-Extras`) for the same subject adds its email and groups. An invalid
    /// `extras` is ignored, never an error.
    pub(crate) async fn authenticate(
        &self,
        token: &str,
        extras: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let access = self.verify(token).await?;
        let mut names = access.names;
        if let Some(extras) = extras.map(strip_optional_bearer).filter(|t| !t.is_empty()) {
            match self.verify(extras).await {
                Ok(id_token) if id_token.sub == access.sub => {
                    for name in id_token.names {
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                Ok(_) => tracing::debug!(
                    "Authorization-Extras ignored: its ID token names another subject"
                ),
                Err(error) => tracing::debug!(
                    code = error.code(),
                    "Authorization-Extras ignored: not a valid ID token"
                ),
            }
        }
        Ok(Principal {
            id: format!("sub:{}", access.sub),
            names,
            method: Some(Method::Jwt),
        })
    }

    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid);
        }
        // Unverified until the signature is checked: only the algorithm and key id are read.
        let alleged_header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let Some((algorithm, validation)) = self
            .validations
            .iter()
            .find(|(algorithm, _)| *algorithm == alleged_header.alg)
        else {
            tracing::debug!(alg = ?alleged_header.alg, "JWT refused: algorithm not accepted");
            return Err(AuthError::Invalid);
        };
        let keys = self
            .keys
            .matching(alleged_header.kid.as_deref(), *algorithm)
            .await
            .ok_or(AuthError::KeysUnavailable)?;
        if keys.is_empty() {
            tracing::debug!("JWT refused: no key in the issuer's key set matches its kid and alg");
            return Err(AuthError::Invalid);
        }
        let mut claims = None;
        for key in &keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding(), validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                // Without a kid several keys may be tried; claims are only checked after a
                // signature verified, so any other error is final.
                Err(error) if matches!(error.kind(), ErrorKind::InvalidSignature) => {}
                Err(error) => return Err(map_error(error.kind())),
            }
        }
        let claims = claims.ok_or(AuthError::Invalid)?;
        self.check_claims(&claims, now_seconds())?;
        self.identity(&claims)
    }

    /// What `jsonwebtoken` does not check: `iss` is one string (not an array that happens to
    /// contain ours), `iat` is not in the future.
    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), AuthError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
        match claims.get("iat") {
            None => {}
            Some(Value::Number(iat)) => {
                let iat = iat.as_f64().ok_or(AuthError::Invalid)?;
                if iat > now.saturating_add(self.leeway.as_secs()) as f64 {
                    return Err(AuthError::NotYetValid);
                }
            }
            Some(_) => return Err(AuthError::Invalid),
        }
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| {
                tracing::debug!("JWT refused: no sub claim");
                AuthError::Invalid
            })?
            .to_owned();
        let mut names = vec![format!("sub:{sub}")];
        // An address counts only when the issuer says it verified it (OpenID Connect Core,
        // section 5.1): many issuers let users type any address into their profile.
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            Some(Value::String(text)) => text == "true",
            _ => false,
        };
        if verified
            && let Some(email) = claim(claims, &self.email_claim).and_then(Value::as_str)
            && !email.is_empty()
        {
            names.push(format!("email:{email}"));
        }
        let groups: Vec<&str> = match claim(claims, &self.groups_claim) {
            Some(Value::String(group)) => vec![group.as_str()],
            Some(Value::Array(groups)) => groups.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for group in groups {
            let name = format!("group:{group}");
            if !group.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(Identity { sub, names })
    }
}

/// A claim by name, or by dotted path into nested objects (`realm_access.roles`) when no
/// top-level claim has that name.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |value, part| value.as_object()?.get(part))
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        _ => AuthError::Invalid,
    }
}

/// The Web UI sends the ID token bare; accept a `Bearer ` prefix too.
fn strip_optional_bearer(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
