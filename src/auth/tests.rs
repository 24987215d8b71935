//! Tests of the authenticator as the transports use it: configuration, static tokens, JWTs with
//! keys from a file and from a local HTTP server, method order, and authorization.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, KeyPair};
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "temporal-ui";

// ---------------------------------------------------------------------------------------------
// Key material and token minting, with aws-lc-rs directly so that the code under test is the
// only user of jsonwebtoken.

enum SigningKey {
    Rsa(lc::RsaKeyPair),
    Ec(lc::EcdsaKeyPair),
}

struct Issuer {
    kid: String,
    key: SigningKey,
}

fn b64(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

impl Issuer {
    fn rsa(kid: &str) -> Self {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Self {
            kid: kid.to_owned(),
            key: SigningKey::Rsa(key),
        }
    }

    fn ec(kid: &str) -> Self {
        let key = lc::EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.to_owned(),
            key: SigningKey::Ec(key),
        }
    }

    fn alg(&self) -> &'static str {
        match self.key {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ec(_) => "ES256",
        }
    }

    fn jwk(&self) -> Value {
        match &self.key {
            SigningKey::Rsa(key) => {
                let public = key.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            SigningKey::Ec(key) => {
                let point = key.public_key().as_ref();
                json!({
                    "kty": "EC", "crv": "P-256", "kid": self.kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
        }
    }

    fn header(&self) -> Value {
        json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid})
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&self.header(), claims)
    }

    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match &self.key {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &lc::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message.as_bytes(),
                    &mut signature,
                )
                .unwrap();
                signature
            }
            SigningKey::Ec(key) => key
                .sign(&SystemRandom::new(), message.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
        };
        format!("{message}.{}", b64(&signature))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn claims(sub: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
        "iat": now() - 10, "exp": now() + 600,
        "email": format!("{sub}@example.com"), "email_verified": true,
        "groups": ["temporal-admins", "oncall"],
    })
}

fn jwks(issuers: &[&Issuer]) -> String {
    json!({"keys": issuers.iter().map(|issuer| issuer.jwk()).collect::<Vec<_>>()}).to_string()
}

fn jwt_config(jwks: JwksSource) -> JwtConfig {
    JwtConfig {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned(), "temporal-cli".to_owned()],
        jwks,
        algorithms: JwtAlgorithm::ALL.to_vec(),
        leeway: Duration::from_secs(60),
        groups_claim: "groups".to_owned(),
        email_claim: "email".to_owned(),
        jwks_refresh: Duration::from_secs(600),
    }
}

fn file_authenticator(dir: &Path, issuers: &[&Issuer]) -> Authenticator {
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks(issuers)).unwrap();
    let config = AuthConfig {
        tokens: BTreeMap::new(),
        jwt: Some(jwt_config(JwksSource::File(path))),
    };
    Authenticator::new(&[Method::Jwt], &config).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn authenticate_header(
    authenticator: &Authenticator,
    header: &str,
) -> Result<Principal, AuthError> {
    authenticator
        .authenticate(&Credentials {
            authorization: Some(header),
            ..Credentials::default()
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// Static tokens, method order, mTLS.

fn token_config(dir: &Path) -> AuthConfig {
    let path = dir.join("oncall");
    std::fs::write(&path, "old-oncall-token\nnew-oncall-token\n").unwrap();
    let mut tokens = BTreeMap::new();
    tokens.insert("oncall".to_owned(), TokenConfig { file: path });
    AuthConfig { tokens, jwt: None }
}

#[tokio::test]
async fn open_listeners_let_everyone_in_as_anonymous() {
    let authenticator = Authenticator::new(&[], &AuthConfig::default()).unwrap();
    assert!(authenticator.is_open());
    let principal = authenticator
        .authenticate(&Credentials::default())
        .await
        .unwrap();
    assert_eq!(principal, Principal::anonymous());
    assert_eq!(principal.id, "anonymous");
    assert!(principal.is_anonymous());
    assert!(Authenticator::open().is_open());
}

#[tokio::test]
async fn static_tokens_from_the_header_or_a_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let authenticator = Authenticator::new(&[Method::Token], &token_config(dir.path())).unwrap();
    assert!(!authenticator.is_open());
    for header in [
        "Bearer old-oncall-token",
        "bearer new-oncall-token",
        "BEARER   new-oncall-token  ",
    ] {
        let principal = authenticate_header(&authenticator, header).await.unwrap();
        assert_eq!(principal.id, "token:oncall");
        assert_eq!(principal.names, ["token:oncall"]);
        assert_eq!(principal.method, Some(Method::Token));
    }
    let cookie = Credentials {
        cookie_token: Some("new-oncall-token"),
        ..Credentials::default()
    };
    assert_eq!(
        authenticator.authenticate(&cookie).await.unwrap().id,
        "token:oncall"
    );
    // The header wins over the cookie.
    let both = Credentials {
        authorization: Some("Bearer wrong"),
        cookie_token: Some("new-oncall-token"),
        ..Credentials::default()
    };
    assert_eq!(
        authenticator.authenticate(&both).await,
        Err(AuthError::Invalid)
    );

    for (header, error) in [
        ("Bearer wrong-token", AuthError::Invalid),
        ("Basic b25jYWxsOnB3", AuthError::Malformed),
        ("Bearer", AuthError::Malformed),
        ("Bearer a b", AuthError::Malformed),
        ("old-oncall-token", AuthError::Malformed),
    ] {
        assert_eq!(
            authenticate_header(&authenticator, header).await,
            Err(error),
            "{header}"
        );
    }
    assert_eq!(
        authenticator.authenticate(&Credentials::default()).await,
        Err(AuthError::Missing)
    );
    // Authorization-Extras alone never authenticates.
    let extras_only = Credentials {
        authorization_extras: Some("Bearer new-oncall-token"),
        ..Credentials::default()
    };
    assert_eq!(
        authenticator.authenticate(&extras_only).await,
        Err(AuthError::Missing)
    );
}

#[tokio::test]
async fn reload_tokens_picks_up_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let authenticator = Authenticator::new(&[Method::Token], &token_config(dir.path())).unwrap();
    std::fs::write(dir.path().join("oncall"), "rotated-oncall-token\n").unwrap();
    assert_eq!(authenticator.reload_tokens(), 1);
    let principal = authenticate_header(&authenticator, "Bearer rotated-oncall-token").await;
    assert_eq!(principal.unwrap().id, "token:oncall");
    assert_eq!(
        authenticate_header(&authenticator, "Bearer old-oncall-token").await,
        Err(AuthError::Invalid)
    );
}

#[tokio::test]
async fn client_certificates_and_method_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = token_config(dir.path());
    let names = ["worker-a".to_owned(), "worker-a.example.com".to_owned()];
    let cert_and_bad_token = Credentials {
        authorization: Some("Bearer wrong"),
        client_cert_names: &names,
        ..Credentials::default()
    };

    let mtls_first = Authenticator::new(&[Method::Mtls, Method::Token], &config).unwrap();
    let principal = mtls_first.authenticate(&cert_and_bad_token).await.unwrap();
    assert_eq!(principal.id, "cert:worker-a");
    assert_eq!(
        principal.names,
        ["cert:worker-a", "cert:worker-a.example.com"]
    );
    assert_eq!(principal.method, Some(Method::Mtls));

    // The first present credential decides: a bad token is not rescued by a certificate.
    let token_first = Authenticator::new(&[Method::Token, Method::Mtls], &config).unwrap();
    assert_eq!(
        token_first.authenticate(&cert_and_bad_token).await,
        Err(AuthError::Invalid)
    );
    let cert_only = Credentials {
        client_cert_names: &names,
        ..Credentials::default()
    };
    assert_eq!(
        token_first.authenticate(&cert_only).await.unwrap().id,
        "cert:worker-a"
    );

    let mtls_only =
        Authenticator::new(&[Method::Mtls, Method::Mtls], &AuthConfig::default()).unwrap();
    assert_eq!(mtls_only.methods(), [Method::Mtls]);
    // Without a certificate, a bearer token is no credential for an mTLS-only listener.
    assert_eq!(
        authenticate_header(&mtls_only, "Bearer old-oncall-token").await,
        Err(AuthError::Missing)
    );
}

#[test]
fn unconfigured_methods_and_bad_files_fail_setup() {
    let error = Authenticator::new(&[Method::Token], &AuthConfig::default()).unwrap_err();
    assert!(
        matches!(error, AuthSetupError::NotConfigured(Method::Token)),
        "{error}"
    );
    let error = Authenticator::new(&[Method::Jwt], &AuthConfig::default()).unwrap_err();
    assert!(
        matches!(error, AuthSetupError::NotConfigured(Method::Jwt)),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let config = AuthConfig {
        tokens: BTreeMap::new(),
        jwt: Some(jwt_config(JwksSource::File(path))),
    };
    let error = Authenticator::new(&[Method::Jwt], &config)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no usable signing key"), "{error}");
}

#[test]
fn errors_have_stable_distinct_codes_and_credentials_are_never_shown() {
    let all = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::Invalid,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::KeysUnavailable,
    ];
    let codes: std::collections::BTreeSet<_> = all.iter().map(AuthError::code).collect();
    assert_eq!(codes.len(), all.len());
    assert!(
        all.iter()
            .all(|e| e.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    );
    assert_eq!(all.iter().filter(|e| e.is_unavailable()).count(), 1);
    assert!(
        AuthError::Expired
            .www_authenticate()
            .contains("invalid_token")
    );
    let names = ["worker-a".to_owned()];
    let credentials = Credentials {
        authorization: Some("Bearer s3cret"),
        authorization_extras: Some("id-s3cret"),
        cookie_token: Some("cookie-s3cret"),
        client_cert_names: &names,
    };
    let shown = format!("{credentials:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("worker-a"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------------
// JWTs with a local key set.

#[tokio::test]
async fn rs256_and_es256_tokens_authenticate_with_their_claims() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = Issuer::rsa("rsa-1");
    let ec = Issuer::ec("ec-1");
    let authenticator = file_authenticator(dir.path(), &[&rsa, &ec]);
    for issuer in [&rsa, &ec] {
        let token = issuer.sign(&claims("alice"));
        let principal = authenticate_header(&authenticator, &bearer(&token))
            .await
            .unwrap();
        assert_eq!(principal.id, "sub:alice");
        assert_eq!(
            principal.names,
            [
                "sub:alice",
                "email:alice@example.com",
                "group:temporal-admins",
                "group:oncall"
            ]
        );
        assert_eq!(principal.method, Some(Method::Jwt));
    }
    // The cookie carries a JWT as well; aud may be an array; groups may be one string.
    let mut claims = claims("bob");
    claims["aud"] = json!(["other", "temporal-cli"]);
    claims["groups"] = json!("ops");
    claims["email_verified"] = json!(false);
    let token = ec.sign(&claims);
    let principal = authenticator
        .authenticate(&Credentials {
            cookie_token: Some(&token),
            ..Credentials::default()
        })
        .await
        .unwrap();
    assert_eq!(principal.names, ["sub:bob", "group:ops"]);
    // An address the issuer does not say it verified (no claim, or a string other than
    // "true") is no `email:` name either.
    for verified in [None, Some(json!("yes")), Some(json!(1))] {
        let mut unverified = self::claims("carol");
        match verified {
            Some(value) => unverified["email_verified"] = value,
            None => {
                unverified.as_object_mut().unwrap().remove("email_verified");
            }
        }
        let principal = authenticate_header(&authenticator, &bearer(&ec.sign(&unverified)))
            .await
            .unwrap();
        assert_eq!(
            principal.names,
            ["sub:carol", "group:temporal-admins", "group:oncall"]
        );
    }
    let mut verified = self::claims("dave");
    verified["email_verified"] = json!("true");
    let principal = authenticate_header(&authenticator, &bearer(&ec.sign(&verified)))
        .await
        .unwrap();
    assert!(
        principal
            .names
            .contains(&"email:dave@example.com".to_owned())
    );
}

#[tokio::test]
async fn tokens_without_kid_try_every_key_of_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let first = Issuer::ec("ec-1");
    let second = Issuer::ec("ec-2");
    let authenticator = file_authenticator(dir.path(), &[&first, &second]);
    let token = second.sign_with_header(&json!({"alg": "ES256"}), &claims("alice"));
    let principal = authenticate_header(&authenticator, &bearer(&token)).await;
    assert_eq!(principal.unwrap().id, "sub:alice");
}

#[tokio::test]
async fn time_issuer_and_audience_claims_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::ec("ec-1");
    let authenticator = file_authenticator(dir.path(), &[&issuer]);
    let check = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims("alice");
        edit(&mut claims);
        issuer.sign(&claims)
    };
    let cases: Vec<(&str, String, Result<(), AuthError>)> = vec![
        (
            "expired",
            check(&|c| c["exp"] = json!(now() - 120)),
            Err(AuthError::Expired),
        ),
        (
            "within leeway",
            check(&|c| c["exp"] = json!(now() - 30)),
            Ok(()),
        ),
        (
            "no exp",
            check(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Err(AuthError::Invalid),
        ),
        (
            "nbf ahead",
            check(&|c| c["nbf"] = json!(now() + 600)),
            Err(AuthError::NotYetValid),
        ),
        (
            "nbf within leeway",
            check(&|c| c["nbf"] = json!(now() + 30)),
            Ok(()),
        ),
        (
            "iat ahead",
            check(&|c| c["iat"] = json!(now() + 600)),
            Err(AuthError::NotYetValid),
        ),
        (
            "iat not a number",
            check(&|c| c["iat"] = json!("yesterday")),
            Err(AuthError::Invalid),
        ),
        (
            "wrong iss",
            check(&|c| c["iss"] = json!("https://evil.example")),
            Err(AuthError::WrongIssuer),
        ),
        (
            "iss array",
            check(&|c| c["iss"] = json!([ISSUER, "x"])),
            Err(AuthError::WrongIssuer),
        ),
        (
            "no iss",
            check(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            Err(AuthError::WrongIssuer),
        ),
        (
            "wrong aud",
            check(&|c| c["aud"] = json!("someone-else")),
            Err(AuthError::WrongAudience),
        ),
        (
            "no aud",
            check(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Err(AuthError::WrongAudience),
        ),
        (
            "no sub",
            check(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            Err(AuthError::Invalid),
        ),
        (
            "empty sub",
            check(&|c| c["sub"] = json!("")),
            Err(AuthError::Invalid),
        ),
    ];
    for (name, token, expected) in cases {
        let result = authenticate_header(&authenticator, &bearer(&token)).await;
        assert_eq!(result.map(|_| ()), expected, "{name}");
    }
}

#[tokio::test]
async fn bad_signatures_and_weak_algorithms_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Issuer::ec("ec-1");
    let rsa = Issuer::rsa("rsa-1");
    let authenticator = file_authenticator(dir.path(), &[&trusted, &rsa]);
    let claims = claims("mallory");

    // Another key claiming the trusted key's kid.
    let impostor = Issuer::ec("ec-1");
    let token = impostor.sign(&claims);
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&token)).await,
        Err(AuthError::Invalid)
    );

    // One flipped signature byte.
    let token = trusted.sign(&claims);
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut signature = base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(signature)
        .unwrap();
    signature[5] ^= 1;
    let tampered = format!("{message}.{}", b64(&signature));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&tampered)).await,
        Err(AuthError::Invalid)
    );

    // Changed claims under the original signature.
    let mut other = claims.clone();
    other["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        token.split('.').next().unwrap(),
        b64(other.to_string().as_bytes()),
        token.rsplit('.').next().unwrap()
    );
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&forged)).await,
        Err(AuthError::Invalid)
    );

    // alg "none", unsigned.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&none)).await,
        Err(AuthError::Invalid)
    );

    // HS256 keyed with the RSA key's public modulus (the classic key-confusion attack).
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"});
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let secret = rsa.jwk()["n"].as_str().unwrap().to_owned();
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
        message.as_bytes(),
    );
    let hs256 = format!("{message}.{}", b64(tag.as_ref()));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&hs256)).await,
        Err(AuthError::Invalid)
    );

    // An RS256 header naming the EC key, and an ES256 token when only RS256 is accepted.
    let mixed = rsa.sign_with_header(&json!({"alg": "RS256", "kid": "ec-1"}), &claims);
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&mixed)).await,
        Err(AuthError::Invalid)
    );
    let path = dir.path().join("jwks.json");
    let mut config = jwt_config(JwksSource::File(path));
    config.algorithms = vec![JwtAlgorithm::Rs256];
    let rs256_only = Authenticator::new(
        &[Method::Jwt],
        &AuthConfig {
            tokens: BTreeMap::new(),
            jwt: Some(config),
        },
    )
    .unwrap();
    let es256 = trusted.sign(&claims);
    assert_eq!(
        authenticate_header(&rs256_only, &bearer(&es256)).await,
        Err(AuthError::Invalid)
    );

    for garbage in ["not-a-jwt", "a.b.c", "....", &"x".repeat(20_000)] {
        assert_eq!(
            authenticate_header(&authenticator, &bearer(garbage)).await,
            Err(AuthError::Invalid),
            "{garbage:.20}"
        );
    }
}

#[tokio::test]
async fn authorization_extras_adds_the_id_tokens_names_or_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::rsa("rsa-1");
    let authenticator = file_authenticator(dir.path(), &[&issuer]);
    let mut access = claims("alice");
    access.as_object_mut().unwrap().remove("email");
    access.as_object_mut().unwrap().remove("groups");
    let access = issuer.sign(&access);
    let mut id_claims = claims("alice");
    id_claims["groups"] = json!(["temporal-admins"]);
    let id_token = issuer.sign(&id_claims);
    let header = bearer(&access);

    for extras in [id_token.clone(), bearer(&id_token)] {
        let credentials = Credentials {
            authorization: Some(&header),
            authorization_extras: Some(&extras),
            ..Credentials::default()
        };
        let principal = authenticator.authenticate(&credentials).await.unwrap();
        assert_eq!(
            principal.names,
            [
                "sub:alice",
                "email:alice@example.com",
                "group:temporal-admins"
            ]
        );
    }
    // Another subject's ID token, an expired one, garbage: ignored, the access token stands.
    let mut expired = id_claims.clone();
    expired["exp"] = json!(now() - 3600);
    for extras in [
        issuer.sign(&claims("bob")),
        issuer.sign(&expired),
        "garbage".to_owned(),
    ] {
        let credentials = Credentials {
            authorization: Some(&header),
            authorization_extras: Some(&extras),
            ..Credentials::default()
        };
        let principal = authenticator.authenticate(&credentials).await.unwrap();
        assert_eq!(principal.names, ["sub:alice"]);
    }
}

#[tokio::test]
async fn token_and_jwt_share_the_bearer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::ec("ec-1");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&issuer])).unwrap();
    let mut config = token_config(dir.path());
    config.jwt = Some(jwt_config(JwksSource::File(path)));
    for methods in [[Method::Token, Method::Jwt], [Method::Jwt, Method::Token]] {
        let authenticator = Authenticator::new(&methods, &config).unwrap();
        let static_token = authenticate_header(&authenticator, "Bearer old-oncall-token").await;
        assert_eq!(static_token.unwrap().id, "token:oncall");
        let jwt =
            authenticate_header(&authenticator, &bearer(&issuer.sign(&claims("alice")))).await;
        assert_eq!(jwt.unwrap().id, "sub:alice");
        // A JWT's specific error wins over "not a static token".
        let mut expired = claims("alice");
        expired["exp"] = json!(now() - 3600);
        let result = authenticate_header(&authenticator, &bearer(&issuer.sign(&expired))).await;
        assert_eq!(result, Err(AuthError::Expired));
        assert_eq!(
            authenticate_header(&authenticator, "Bearer neither").await,
            Err(AuthError::Invalid)
        );
    }
}

#[tokio::test]
async fn an_unknown_kid_rereads_the_key_file_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let first = Issuer::ec("ec-1");
    let second = Issuer::rsa("rsa-2");
    let third = Issuer::ec("ec-3");
    let mut authenticator = file_authenticator(dir.path(), &[&first]);
    let path = dir.path().join("jwks.json");

    std::fs::write(&path, jwks(&[&first, &second])).unwrap();
    let token = second.sign(&claims("alice"));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .unwrap()
            .id,
        "sub:alice"
    );

    // Within the refetch interval a new kid is not looked up again.
    std::fs::write(&path, jwks(&[&first, &second, &third])).unwrap();
    let token = third.sign(&claims("alice"));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&token)).await,
        Err(AuthError::Invalid)
    );
    authenticator
        .jwt_mut()
        .unwrap()
        .keys_mut()
        .set_min_refetch(Duration::ZERO);
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .unwrap()
            .id,
        "sub:alice"
    );

    // A broken key file keeps the keys already loaded.
    std::fs::write(&path, "{not json").unwrap();
    let unknown = Issuer::ec("ec-4").sign(&claims("alice"));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&unknown)).await,
        Err(AuthError::Invalid)
    );
    let token = first.sign(&claims("alice"));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .unwrap()
            .id,
        "sub:alice"
    );
}

// ---------------------------------------------------------------------------------------------
// JWTs with the key set fetched over HTTP from a local server.

/// What the local JWKS server answers, and how many requests it saw.
#[derive(Clone)]
struct JwksServer {
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> (Self, url::Url) {
        let server = Self {
            answer: Arc::new(Mutex::new((200, body))),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let state = server.clone();
        let router = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let state = state.clone();
                async move {
                    state.hits.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = state.answer.lock().unwrap().clone();
                    (http::StatusCode::from_u16(status).unwrap(), body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let url = url::Url::parse(&format!("http://{address}/jwks")).unwrap();
        (server, url)
    }

    fn set(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn url_authenticator(url: url::Url) -> Authenticator {
    let config = AuthConfig {
        tokens: BTreeMap::new(),
        jwt: Some(jwt_config(JwksSource::Url(url))),
    };
    Authenticator::new(&[Method::Jwt], &config).unwrap()
}

#[tokio::test]
async fn keys_are_fetched_once_cached_and_refetched_for_an_unknown_kid() {
    let first = Issuer::rsa("rsa-1");
    let second = Issuer::ec("ec-2");
    let (server, url) = JwksServer::start(jwks(&[&first])).await;
    let authenticator = url_authenticator(url);
    assert_eq!(server.hits(), 0, "fetched lazily");

    authenticator.prefetch_keys().await.unwrap();
    assert_eq!(server.hits(), 1);
    for _ in 0..3 {
        let token = first.sign(&claims("alice"));
        assert_eq!(
            authenticate_header(&authenticator, &bearer(&token))
                .await
                .unwrap()
                .id,
            "sub:alice"
        );
    }
    assert_eq!(server.hits(), 1, "cached");

    // The issuer rotates: a token with the new kid triggers one fetch.
    server.set(200, jwks(&[&first, &second]));
    let token = second.sign(&claims("alice"));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .unwrap()
            .id,
        "sub:alice"
    );
    assert_eq!(server.hits(), 2);

    // Made-up kids cannot make kmscodec hammer the issuer.
    for index in 0..5 {
        let token = Issuer::ec(&format!("made-up-{index}")).sign(&claims("mallory"));
        assert_eq!(
            authenticate_header(&authenticator, &bearer(&token)).await,
            Err(AuthError::Invalid)
        );
    }
    assert_eq!(server.hits(), 2, "rate limited");
}

#[tokio::test]
async fn a_failing_issuer_keeps_the_cached_keys() {
    let issuer = Issuer::ec("ec-1");
    let (server, url) = JwksServer::start(jwks(&[&issuer])).await;
    let mut authenticator = url_authenticator(url);
    authenticator
        .jwt_mut()
        .unwrap()
        .keys_mut()
        .set_min_refetch(Duration::ZERO);
    let token = issuer.sign(&claims("alice"));
    assert!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .is_ok()
    );

    server.set(500, "down".to_owned());
    let unknown = Issuer::ec("ec-9").sign(&claims("alice"));
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&unknown)).await,
        Err(AuthError::Invalid)
    );
    assert_eq!(server.hits(), 2, "the unknown kid was looked up");
    assert!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .is_ok()
    );

    server.set(200, "{\"keys\": []}".to_owned());
    assert_eq!(
        authenticate_header(&authenticator, &bearer(&unknown)).await,
        Err(AuthError::Invalid)
    );
    assert!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn no_reachable_key_set_is_a_server_side_failure() {
    // A port nothing listens on: bind, note it, close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = url::Url::parse(&format!("http://{address}/jwks")).unwrap();
    let authenticator = url_authenticator(url);
    assert_eq!(
        authenticator.prefetch_keys().await,
        Err(AuthError::KeysUnavailable)
    );
    let token = Issuer::ec("ec-1").sign(&claims("alice"));
    let error = authenticate_header(&authenticator, &bearer(&token))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::KeysUnavailable);
    assert!(error.is_unavailable());
    // A token that is not a JWT never reaches the key set.
    assert_eq!(
        authenticate_header(&authenticator, "Bearer opaque").await,
        Err(AuthError::Invalid)
    );
}

#[tokio::test]
async fn authentication_and_authorization_together() {
    let dir = tempfile::tempdir().unwrap();
    // Through the whole configuration, as a server reads it.
    let config = crate::config::Config::from_toml_str(
        &format!(
            r#"
        [providers.dev]
        kind = "local"
        path = "/nonexistent/keyring.json"
        [namespaces."*"]
        provider = "dev"
        key = "dev"
        [auth.tokens.oncall]
        file = "{}"
        [[authz.rules]]
        principals = ["token:oncall"]
        namespaces = ["orders"]
        roles = ["read"]
        [[authz.rules]]
        principals = ["cert:worker-a"]
        namespaces = ["*"]
        roles = ["read", "write"]
        "#,
            token_config(dir.path()).tokens["oncall"].file.display()
        ),
        std::iter::empty(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let authenticator = Authenticator::new(&[Method::Token, Method::Mtls], &config.auth).unwrap();
    let authorizer = Authorizer::new(&config.authz);
    let oncall = authenticate_header(&authenticator, "Bearer new-oncall-token")
        .await
        .unwrap();
    assert!(authorizer.allows(&oncall, "orders", Role::Read));
    assert!(!authorizer.allows(&oncall, "orders", Role::Write));
    assert!(!authorizer.allows(&oncall, "payments", Role::Read));
    let names = ["worker-a".to_owned()];
    let worker = authenticator
        .authenticate(&Credentials {
            client_cert_names: &names,
            ..Credentials::default()
        })
        .await
        .unwrap();
    assert!(authorizer.allows(&worker, "payments", Role::Write));
    let names = ["worker-b".to_owned()];
    let stranger = authenticator
        .authenticate(&Credentials {
            client_cert_names: &names,
            ..Credentials::default()
        })
        .await
        .unwrap();
    assert!(!authorizer.allows(&stranger, "payments", Role::Read));
}

#[tokio::test]
async fn a_stale_key_set_is_fetched_again_and_kept_when_that_fails() {
    let issuer = Issuer::ec("ec-1");
    let (server, url) = JwksServer::start(jwks(&[&issuer])).await;
    let mut config = jwt_config(JwksSource::Url(url));
    config.jwks_refresh = Duration::ZERO;
    let mut authenticator = Authenticator::new(
        &[Method::Jwt],
        &AuthConfig {
            tokens: BTreeMap::new(),
            jwt: Some(config),
        },
    )
    .unwrap();
    let token = issuer.sign(&claims("alice"));
    assert!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 1);
    // Stale at once, but the refetch limit still holds.
    assert!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 1);
    authenticator
        .jwt_mut()
        .unwrap()
        .keys_mut()
        .set_min_refetch(Duration::ZERO);
    assert!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 2);
    server.set(503, "maintenance".to_owned());
    assert!(
        authenticate_header(&authenticator, &bearer(&token))
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 3);
}

#[test]
fn the_authenticator_is_shareable_and_its_future_is_send() {
    fn shareable<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    shareable::<Authenticator>();
    shareable::<Authorizer>();
    let authenticator = Authenticator::open();
    let credentials = Credentials::default();
    send(&authenticator.authenticate(&credentials));
}
