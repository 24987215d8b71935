// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

//! The Vault transit provider against a real OpenBao server (`bao`, from `$KMSCODEC_TOOLS`),
//! through the real kmscodec binary and HTTP codec where the acceptance list of issue 4 asks
//! for it, and in process for error mapping, `describe` and latency figures.
//!
//! Every test starts its own OpenBao on a loopback port and stops it when done. The policies
//! under test are the files in `policies/vault/`, loaded as they are shipped.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use common::{
    BAO_ROOT_TOKEN, Kmscodec, OpenBao, b64, codec_post, http_request, json_document, json_of,
    temp_dir, unb64, wait_for,
};

// ---------------------------------------------------------------------------------------------
// Files

/// Writes a 0600 file holding `content` under `dir`.
fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// kmscodec helpers

/// Encodes `text` for `namespace`; panics unless 200. Returns the sealed document.
fn encode_ok(k: &Kmscodec, namespace: &str, text: &str) -> Value {
    let reply = codec_post(k, "encode", namespace, &json_document(text));
    assert_eq!(reply.status, 200, "encode {namespace}: {}", reply.text());
    json_of(&reply)
}

/// Decodes `sealed` for `namespace`; panics unless 200 and the payload is `text` again.
fn decode_ok(k: &Kmscodec, namespace: &str, sealed: &Value, text: &str) {
    let reply = codec_post(k, "decode", namespace, sealed);
    assert_eq!(reply.status, 200, "decode {namespace}: {}", reply.text());
    assert_eq!(json_of(&reply), json_document(text));
}

/// The `encryption-key-id` of the first sealed payload (`vault:<key>:v<N>`).
fn key_id(sealed: &Value) -> String {
    String::from_utf8(unb64(
        &sealed["payloads"][0]["metadata"]["encryption-key-id"],
    ))
    .unwrap()
}

/// Readiness with its reason, from the admin listener (the codec listener gives no reason).
fn readyz(k: &Kmscodec) -> (u16, String) {
    let reply = http_request("GET", &format!("{}/readyz", k.admin_url()), &[], b"").unwrap();
    (reply.status, reply.text())
}

/// kmscodec configuration with one Vault provider named `vault` and `namespaces`
/// (`(namespace, transit key)`), plus `extra` TOML appended to each namespace entry.
fn vault_config(address: &str, auth: &str, namespaces: &[(&str, &str)], extra: &str) -> String {
    let mut text = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = \"{address}\"\ntimeout = \"2s\"\n\
         [providers.vault.auth]\n{auth}\n"
    );
    for (namespace, key) in namespaces {
        text.push_str(&format!(
            "[namespaces.{namespace}]\nprovider = \"vault\"\nkey = \"{key}\"\n{extra}\n"
        ));
    }
    text
}

fn token_file_auth(path: &Path) -> String {
    format!("method = \"token\"\ntoken_file = \"{}\"", path.display())
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

// ---------------------------------------------------------------------------------------------
// Tests through the kmscodec binary

/// Round trip through the HTTP codec on two namespaces, each with its own transit key, with a
/// token created from `kmscodec-sidecar.hcl` alone (no default policy), given once as a file and
/// once through an environment variable. A payload sealed for one namespace does not open as the
/// other (400); a namespace whose key is outside the policy gets 403; and the same token is
/// refused by OpenBao itself for everything but minting and unwrapping.
#[test]
fn sidecar_policy_token_round_trips_and_is_denied_everything_else() {
    let bao = OpenBao::start();
    let address = bao.addr();
    bao.enable_transit_with_keys(&["kmscodec-alpha", "kmscodec-beta", "other-x"]);
    bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
    let token = bao.token_with_policies(&["kmscodec-sidecar"]);
    let dir = temp_dir("vault-sidecar");
    let token_path = secret_file(dir.path(), "token", &format!("{token}\n"));

    let mut config = vault_config(
        &address,
        &token_file_auth(&token_path),
        &[("alpha", "kmscodec-alpha"), ("gamma", "other-x")],
        "",
    );
    config.push_str(&format!(
        "[providers.vault_env]\nkind = \"vault\"\naddress = \"{address}\"\n\
         [providers.vault_env.auth]\nmethod = \"token\"\ntoken_env = \"SIDECAR_TOKEN\"\n\
         [namespaces.beta]\nprovider = \"vault_env\"\nkey = \"kmscodec-beta\"\n"
    ));
    let k = Kmscodec::start_full(Some(&config), &[], &[("SIDECAR_TOKEN", &token)]);

    let alpha = encode_ok(&k, "alpha", "for alpha");
    let beta = encode_ok(&k, "beta", "for beta");
    assert_eq!(key_id(&alpha), "vault:kmscodec-alpha:v1");
    assert_eq!(key_id(&beta), "vault:kmscodec-beta:v1");
    decode_ok(&k, "alpha", &alpha, "for alpha");
    decode_ok(&k, "beta", &beta, "for beta");
    for (namespace, sealed) in [("beta", &alpha), ("alpha", &beta)] {
        let reply = codec_post(&k, "decode", namespace, sealed);
        assert_eq!(reply.status, 400, "{}", reply.text());
    }
    // other-x is outside kmscodec-*: OpenBao refuses the datakey call, kmscodec answers 403.
    let reply = codec_post(&k, "encode", "gamma", &json_document("x"));
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(!k.guard.log().contains(&token), "the token reached the log");

    // The sidecar token, used directly: exactly datakey/wrapped + decrypt on kmscodec-*, and
    // its own lookup and renewal.
    let aad = b64(b"kmscodec/v1 namespace=alpha");
    let datakey = bao.api_ok(
        &token,
        "POST",
        "transit/datakey/wrapped/kmscodec-alpha",
        Some(json!({"associated_data": aad})),
    );
    let ciphertext = datakey["data"]["ciphertext"].as_str().unwrap().to_string();
    bao.api_ok(
        &token,
        "POST",
        "transit/decrypt/kmscodec-alpha",
        Some(json!({"ciphertext": ciphertext, "associated_data": aad})),
    );
    bao.api_ok(&token, "GET", "auth/token/lookup-self", None);
    bao.api_ok(&token, "POST", "auth/token/renew-self", None);
    let denied: &[(&str, &str, Option<Value>)] = &[
        ("POST", "transit/keys/kmscodec-new", None),
        ("POST", "transit/keys/other-y", None),
        ("POST", "transit/keys/kmscodec-alpha/rotate", None),
        ("GET", "transit/keys/kmscodec-alpha", None),
        ("GET", "transit/keys/other-x", None),
        ("LIST", "transit/keys", None),
        (
            "POST",
            "transit/keys/kmscodec-alpha/config",
            Some(json!({"deletion_allowed": true})),
        ),
        ("DELETE", "transit/keys/kmscodec-alpha", None),
        ("POST", "transit/datakey/plaintext/kmscodec-alpha", None),
        ("POST", "transit/datakey/wrapped/other-x", None),
        (
            "POST",
            "transit/decrypt/other-x",
            Some(json!({"ciphertext": ciphertext})),
        ),
        (
            "POST",
            "transit/encrypt/kmscodec-alpha",
            Some(json!({"plaintext": b64(b"x")})),
        ),
        ("GET", "transit/export/encryption-key/kmscodec-alpha", None),
        ("GET", "transit/backup/kmscodec-alpha", None),
        ("GET", "sys/policies/acl/kmscodec-sidecar", None),
        ("POST", "auth/token/create", Some(json!({}))),
    ];
    for (method, path, body) in denied {
        let reply = bao.api(&token, method, path, body.clone());
        assert_eq!(
            reply.status,
            403,
            "{method} {path} was not denied: {}",
            reply.text()
        );
    }
    // The bao CLI agrees.
    let mut cli = bao.cli(&["write", "-f", "transit/keys/kmscodec-alpha/rotate"]);
    cli.env("BAO_TOKEN", &token);
    let out = common::run(cli, Duration::from_secs(30));
    assert!(!out.status.success(), "{}", out.both());
    assert!(out.stderr.contains("permission denied"), "{}", out.both());
}

/// `kmscodec-admin.hcl` administers the kmscodec-* keys (create, read, configure, rotate,
/// delete) and never reaches data: no datakey, decrypt, encrypt, export, nor other keys.
#[test]
fn admin_policy_administers_keys_but_never_touches_data() {
    let bao = OpenBao::start();
    bao.enable_transit_with_keys(&["other-x"]);
    bao.write_policy("kmscodec-admin", "kmscodec-admin.hcl");
    let admin = bao.token_with_policies(&["kmscodec-admin"]);

    bao.api_ok(&admin, "POST", "transit/keys/kmscodec-z", None);
    bao.api_ok(&admin, "POST", "transit/keys/kmscodec-z/rotate", None);
    let key = bao.api_ok(&admin, "GET", "transit/keys/kmscodec-z", None);
    assert_eq!(key["data"]["latest_version"], 2);
    bao.api_ok(
        &admin,
        "POST",
        "transit/keys/kmscodec-z/config",
        Some(json!({"min_decryption_version": 2, "deletion_allowed": true})),
    );
    let denied: &[(&str, &str, Option<Value>)] = &[
        (
            "POST",
            "transit/datakey/wrapped/kmscodec-z",
            Some(json!({})),
        ),
        (
            "POST",
            "transit/datakey/plaintext/kmscodec-z",
            Some(json!({})),
        ),
        (
            "POST",
            "transit/decrypt/kmscodec-z",
            Some(json!({"ciphertext": "vault:v2:AAAA"})),
        ),
        (
            "POST",
            "transit/encrypt/kmscodec-z",
            Some(json!({"plaintext": b64(b"x")})),
        ),
        ("GET", "transit/export/encryption-key/kmscodec-z", None),
        ("POST", "transit/keys/other-y", None),
        ("GET", "transit/keys/other-x", None),
        ("POST", "transit/keys/other-x/rotate", None),
    ];
    for (method, path, body) in denied {
        let reply = bao.api(&admin, method, path, body.clone());
        assert_eq!(
            reply.status,
            403,
            "{method} {path} was not denied: {}",
            reply.text()
        );
    }
    bao.api_ok(&admin, "DELETE", "transit/keys/kmscodec-z", None);
    let gone = bao.api(BAO_ROOT_TOKEN, "GET", "transit/keys/kmscodec-z", None);
    assert_eq!(gone.status, 404, "{}", gone.text());
}

/// AppRole: kmscodec logs in with role id and secret id files; when every token of the role is
/// revoked behind its back, the next provider call is refused, kmscodec sees (lookup-self) that
/// its token is dead, logs in again and retries, and the encode succeeds. A wrong secret id
/// keeps the process not ready, with the reason in `/readyz`.
#[test]
fn approle_login_and_login_again_after_revocation() {
    let bao = OpenBao::start();
    let address = bao.addr();
    bao.enable_transit_with_keys(&["kmscodec-alpha"]);
    bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
    bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "sys/auth/approle",
        Some(json!({"type": "approle"})),
    );
    bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "auth/approle/role/kmscodec",
        Some(json!({"token_policies": ["kmscodec-sidecar"], "token_ttl": "1h"})),
    );
    let role_id = bao.api_ok(
        BAO_ROOT_TOKEN,
        "GET",
        "auth/approle/role/kmscodec/role-id",
        None,
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "auth/approle/role/kmscodec/secret-id",
        None,
    )["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = temp_dir("vault-approle");
    let role_file = secret_file(dir.path(), "role-id", &role_id);
    let secret_file_path = secret_file(dir.path(), "secret-id", &secret_id);
    let bad_secret = secret_file(dir.path(), "bad-secret-id", "not-the-secret-id");
    let auth = |secret: &Path| {
        format!(
            "method = \"approle\"\nrole_id_file = \"{}\"\nsecret_id_file = \"{}\"",
            role_file.display(),
            secret.display()
        )
    };

    // hard_limit = 1: every encode mints a data key, so every encode calls OpenBao.
    let config = vault_config(
        &address,
        &auth(&secret_file_path),
        &[("alpha", "kmscodec-alpha")],
        "hard_limit = 1\nsoft_limit = 1",
    );
    let k = Kmscodec::start_with(Some(&config), &[]);
    let first = encode_ok(&k, "alpha", "one");
    decode_ok(&k, "alpha", &first, "one");
    assert_eq!(count(&k.guard.log(), "vault login succeeded"), 1);

    bao.cli_ok(&["lease", "revoke", "-prefix", "auth/approle/login"]);
    // The data key minted in the background after "one" predates the revocation; the ones
    // after it need the provider, which finds its token revoked.
    for i in 0..3 {
        let text = format!("after revocation {i}");
        let sealed = encode_ok(&k, "alpha", &text);
        decode_ok(&k, "alpha", &sealed, &text);
    }
    wait_for("a second login", Duration::from_secs(5), || {
        count(&k.guard.log(), "vault login succeeded") >= 2
    });
    let log = k.guard.log();
    assert_eq!(count(&log, "vault login succeeded"), 2, "{log}");
    assert!(log.contains("vault refused the token"), "{log}");
    assert!(!log.contains(&secret_id), "the secret id reached the log");

    let bad = vault_config(
        &address,
        &auth(&bad_secret),
        &[("alpha", "kmscodec-alpha")],
        "",
    );
    let k_bad = Kmscodec::spawn(Some(&bad), &[], &[]);
    let (status, body) = readyz(&k_bad);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("approle login at auth/approle/login failed: invalid role or secret ID"),
        "{body}"
    );
    let reply = codec_post(&k_bad, "encode", "alpha", &json_document("x"));
    assert_eq!(reply.status, 403, "{}", reply.text());
}

/// P-256 public key as PEM SubjectPublicKeyInfo, from its uncompressed point.
fn p256_public_pem(point: &[u8]) -> String {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (point) } (RFC 5480).
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let der: Vec<u8> = PREFIX.iter().chain(point).copied().collect();
    let body = b64(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// An ES256 JWT shaped like a projected Kubernetes service account token.
fn service_account_jwt(pair: &aws_lc_rs::signature::EcdsaKeyPair, subject: &str) -> String {
    let url = common::b64url;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "ES256", "kid": "test-key", "typ": "JWT"});
    let claims = json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": subject,
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "kubernetes.io": {
            "namespace": "temporal",
            "pod": {"name": "worker-0", "uid": "7d8e0c4e-0000-4000-8000-000000000001"},
            "serviceaccount": {"name": "kmscodec", "uid": "7d8e0c4e-0000-4000-8000-000000000002"},
        },
    });
    let signing_input = format!(
        "{}.{}",
        url(header.to_string().as_bytes()),
        url(claims.to_string().as_bytes())
    );
    let signature = pair
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
        )
        .unwrap();
    format!("{signing_input}.{}", url(signature.as_ref()))
}

/// Kubernetes auth: OpenBao's `jwt` method mounted at `kubernetes` with
/// `jwt_validation_pubkeys` takes the same `{role, jwt}` login as the Kubernetes method. The test
/// signs its own service-account-shaped JWT; kmscodec reads it from `jwt_file` and logs in. A JWT
/// for another service account is refused and readiness says why.
#[test]
fn kubernetes_login_with_a_service_account_jwt() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    let bao = OpenBao::start();
    let address = bao.addr();
    bao.enable_transit_with_keys(&["kmscodec-alpha"]);
    bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let public_pem = p256_public_pem(pair.public_key().as_ref());

    bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "sys/auth/kubernetes",
        Some(json!({"type": "jwt"})),
    );
    bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "auth/kubernetes/config",
        Some(json!({
            "jwt_validation_pubkeys": [public_pem],
            "jwt_supported_algs": ["ES256"],
        })),
    );
    bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "auth/kubernetes/role/kmscodec",
        Some(json!({
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_subject": "system:serviceaccount:temporal:kmscodec",
            "bound_audiences": ["https://kubernetes.default.svc.cluster.local"],
            "token_policies": ["kmscodec-sidecar"],
            "token_ttl": "1h",
        })),
    );
    let dir = temp_dir("vault-k8s");
    let jwt = service_account_jwt(&pair, "system:serviceaccount:temporal:kmscodec");
    let jwt_file = dir.path().join("token");
    fs::write(&jwt_file, &jwt).unwrap();
    let auth = |file: &Path| {
        format!(
            "method = \"kubernetes\"\nrole = \"kmscodec\"\njwt_file = \"{}\"",
            file.display()
        )
    };
    let config = vault_config(
        &address,
        &auth(&jwt_file),
        &[("alpha", "kmscodec-alpha")],
        "",
    );
    let k = Kmscodec::start_with(Some(&config), &[]);
    let sealed = encode_ok(&k, "alpha", "from a pod");
    decode_ok(&k, "alpha", &sealed, "from a pod");
    let log = k.guard.log();
    assert!(
        log.contains(
            "vault login succeeded (kubernetes login as role \"kmscodec\" at auth/kubernetes/login)"
        ),
        "{log}"
    );
    assert!(!log.contains(&jwt), "the JWT reached the log");

    let other = dir.path().join("other-token");
    fs::write(
        &other,
        service_account_jwt(&pair, "system:serviceaccount:default:intruder"),
    )
    .unwrap();
    let config = vault_config(&address, &auth(&other), &[("alpha", "kmscodec-alpha")], "");
    let k_other = Kmscodec::spawn(Some(&config), &[], &[]);
    let (status, body) = readyz(&k_other);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("kubernetes login as role \"kmscodec\" at auth/kubernetes/login failed"),
        "{body}"
    );
}

/// Token expiry: AppRole tokens live 3 s (at most 6 s with renewals). Encodes keep working for
/// 9 s, each minting a data key (hard_limit = 1), so the provider renews its token and logs in
/// again as it goes.
#[test]
fn short_lived_tokens_are_renewed_and_replaced() {
    let bao = OpenBao::start();
    let address = bao.addr();
    bao.enable_transit_with_keys(&["kmscodec-alpha"]);
    bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
    bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "sys/auth/approle",
        Some(json!({"type": "approle"})),
    );
    bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "auth/approle/role/short",
        Some(json!({
            "token_policies": ["kmscodec-sidecar"],
            "token_ttl": "3s",
            "token_max_ttl": "6s",
        })),
    );
    let role_id = bao.api_ok(
        BAO_ROOT_TOKEN,
        "GET",
        "auth/approle/role/short/role-id",
        None,
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao.api_ok(
        BAO_ROOT_TOKEN,
        "POST",
        "auth/approle/role/short/secret-id",
        None,
    )["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = temp_dir("vault-expiry");
    let auth = format!(
        "method = \"approle\"\nrole_id_file = \"{}\"\nsecret_id_file = \"{}\"",
        secret_file(dir.path(), "role-id", &role_id).display(),
        secret_file(dir.path(), "secret-id", &secret_id).display()
    );
    let config = vault_config(
        &address,
        &auth,
        &[("alpha", "kmscodec-alpha")],
        "hard_limit = 1\nsoft_limit = 1",
    );
    let k = Kmscodec::start_with(Some(&config), &["--log", "info,kmscodec=debug"]);
    let started = Instant::now();
    let mut encodes = 0;
    while started.elapsed() < Duration::from_secs(9) {
        let text = format!("payload {encodes}");
        let sealed = encode_ok(&k, "alpha", &text);
        decode_ok(&k, "alpha", &sealed, &text);
        encodes += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = k.guard.log();
    let logins = count(&log, "vault login succeeded");
    let renewals = count(&log, "renewed the vault token");
    eprintln!("token expiry: {encodes} encodes over 9 s, {logins} logins, {renewals} renewals");
    assert!(logins >= 2, "no new login past the max TTL:\n{log}");
    assert!(renewals >= 1, "no renewal before expiry:\n{log}");
    assert!(
        !log.contains("vault refused the token"),
        "a call used an expired token:\n{log}"
    );
}

/// Outage: OpenBao (raft storage on disk) is killed mid-run. Decodes of cached data keys and encodes
/// under the active data key keep working; a payload whose data key this process never
/// unwrapped gets 503, and readiness turns 503; once OpenBao is back on the same port and
/// unsealed, it decodes and readiness recovers.
///
/// A real restart rather than a TCP proxy that drops connections: a dev server would lose its
/// keys and tokens, so this one keeps them in raft storage on disk, and comes back sealed until
/// the test unseals it, as a production server does.
#[test]
fn outage_keeps_cached_keys_working_and_recovers() {
    let mut bao = OpenBao::builder().persistent().start();
    let address = bao.addr();
    bao.enable_transit_with_keys(&["kmscodec-alpha"]);
    bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
    let token = bao.token_with_policies(&["kmscodec-sidecar"]);
    let dir = temp_dir("vault-outage");
    // Readiness turns false once the provider has failed for readiness_grace (3 s here).
    let config = vault_config(
        &address,
        &token_file_auth(&secret_file(dir.path(), "token", &token)),
        &[("alpha", "kmscodec-alpha")],
        "",
    ) + "[server]\nreadiness_grace = \"3s\"\n";
    let mut k = Kmscodec::start_with(Some(&config), &[]);
    let never_seen = encode_ok(&k, "alpha", "sealed before a restart");
    // A new process: the data key of `never_seen` is in no cache now.
    k.restart();
    let cached = encode_ok(&k, "alpha", "cached");
    decode_ok(&k, "alpha", &cached, "cached");

    bao.stop();
    let outage = Instant::now();
    decode_ok(&k, "alpha", &cached, "cached");
    let during = encode_ok(&k, "alpha", "sealed during the outage");
    decode_ok(&k, "alpha", &during, "sealed during the outage");
    let reply = codec_post(&k, "decode", "alpha", &never_seen);
    assert_eq!(reply.status, 503, "{}", reply.text());
    wait_for("readiness to turn 503", Duration::from_secs(15), || {
        readyz(&k).0 == 503
    });
    let (_, reason) = readyz(&k);
    assert!(reason.contains("unavailable"), "{reason}");
    eprintln!("outage: readiness 503 after {:?}", outage.elapsed());

    bao.restart();
    decode_ok(&k, "alpha", &never_seen, "sealed before a restart");
    wait_for("readiness to recover", Duration::from_secs(12), || {
        readyz(&k).0 == 200
    });
    let after = encode_ok(&k, "alpha", "after");
    decode_ok(&k, "alpha", &after, "after");
}

/// Readiness does not flap with the KMS: OpenBao stopped for less than `readiness_grace` leaves
/// every replica ready and cached decodes working; past the grace, only a replica that has served
/// a namespace of that provider turns not ready (one that never served one stays ready); once
/// OpenBao is back, readiness recovers.
#[test]
fn readiness_outlasts_a_provider_outage_shorter_than_its_grace() {
    let mut bao = OpenBao::builder().persistent().start();
    let address = bao.addr();
    bao.enable_transit_with_keys(&["kmscodec-alpha"]);
    bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
    let token = bao.token_with_policies(&["kmscodec-sidecar"]);
    let dir = temp_dir("vault-readiness");
    let config = vault_config(
        &address,
        &token_file_auth(&secret_file(dir.path(), "token", &token)),
        &[("alpha", "kmscodec-alpha")],
        "",
    ) + "[server]\nreadiness_grace = \"25s\"\n";
    let serving = Kmscodec::start_with(Some(&config), &[]);
    let idle = Kmscodec::start_with(Some(&config), &[]);
    let cached = encode_ok(&serving, "alpha", "cached");
    decode_ok(&serving, "alpha", &cached, "cached");

    bao.stop();
    let outage = Instant::now();
    // The readiness checker (every 5 s) sees the failure and logs it...
    wait_for("a failed provider check", Duration::from_secs(15), || {
        serving
            .guard
            .log()
            .contains("key provider health check failed; cached keys keep serving")
    });
    // ...and both replicas stay ready, serving cached keys, for the rest of the grace.
    while outage.elapsed() < Duration::from_secs(18) {
        assert_eq!(readyz(&serving), (200, "ready\n".to_owned()));
        assert_eq!(readyz(&idle).0, 200);
        decode_ok(&serving, "alpha", &cached, "cached");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Past the grace: the replica that served `alpha` turns not ready, naming the provider;
    // the one that never served a namespace stays ready.
    wait_for("readiness to turn 503", Duration::from_secs(30), || {
        readyz(&serving).0 == 503
    });
    let not_ready = outage.elapsed();
    // The admin listener's /readyz says why.
    let reason = http_request("GET", &format!("{}/readyz", serving.admin_url()), &[], b"")
        .unwrap()
        .text();
    assert!(reason.contains("key provider vault"), "{reason}");
    assert_eq!(readyz(&idle).0, 200);
    assert!(not_ready >= Duration::from_secs(25), "{not_ready:?}");
    eprintln!("readiness: 503 after {not_ready:?} of outage (grace 25 s)");

    bao.restart();
    wait_for("readiness to recover", Duration::from_secs(15), || {
        readyz(&serving).0 == 200
    });
    decode_ok(&serving, "alpha", &cached, "cached");
    let after = encode_ok(&idle, "alpha", "after");
    decode_ok(&serving, "alpha", &after, "after");
}

/// KEK rotation in OpenBao: data keys minted after `transit/keys/<k>/rotate` are wrapped under
/// v2 (the running process picks it up at its next data key, hard_limit = 2), payloads sealed
/// under v1 still decode (in a fresh process, so OpenBao really unwraps the v1 key), and once
/// `min_decryption_version` moves to 2 they are refused with 403.
#[test]
fn kek_rotation_moves_new_data_keys_to_the_new_version() {
    let bao = OpenBao::start();
    let address = bao.addr();
    bao.enable_transit_with_keys(&["kmscodec-alpha"]);
    bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
    let token = bao.token_with_policies(&["kmscodec-sidecar"]);
    let dir = temp_dir("vault-rotation");
    let config = vault_config(
        &address,
        &token_file_auth(&secret_file(dir.path(), "token", &token)),
        &[("alpha", "kmscodec-alpha")],
        "hard_limit = 2\nsoft_limit = 2",
    );
    let mut k = Kmscodec::start_with(Some(&config), &[]);
    let old: Vec<Value> = (0..2)
        .map(|i| encode_ok(&k, "alpha", &format!("old {i}")))
        .collect();
    for sealed in &old {
        assert_eq!(key_id(sealed), "vault:kmscodec-alpha:v1");
    }
    bao.cli_ok(&["write", "-f", "transit/keys/kmscodec-alpha/rotate"]);
    // The data key minted in the background (soft_limit) before the rotation may still serve
    // two encodes; the one after it is minted under v2.
    let mut new = Value::Null;
    for _ in 0..5 {
        new = encode_ok(&k, "alpha", "new");
        if key_id(&new) != "vault:kmscodec-alpha:v1" {
            break;
        }
    }
    assert_eq!(key_id(&new), "vault:kmscodec-alpha:v2");

    k.restart();
    for (i, sealed) in old.iter().enumerate() {
        decode_ok(&k, "alpha", sealed, &format!("old {i}"));
    }
    decode_ok(&k, "alpha", &new, "new");

    bao.cli_ok(&[
        "write",
        "transit/keys/kmscodec-alpha/config",
        "min_decryption_version=2",
    ]);
    k.restart();
    let reply = codec_post(&k, "decode", "alpha", &old[0]);
    assert_eq!(reply.status, 403, "{}", reply.text());
    decode_ok(&k, "alpha", &new, "new");
}

/// TLS: with `ca_cert` naming OpenBao's dev CA the provider talks https; without it the
/// certificate is not trusted and readiness says so.
#[test]
fn https_with_a_ca_bundle() {
    let bao = OpenBao::builder().tls().start();
    let address = bao.addr();
    let ca = bao.ca_cert().unwrap().to_path_buf();
    bao.enable_transit();
    bao.create_transit_key("kmscodec-alpha");
    let dir = temp_dir("vault-tls");
    let token_path = secret_file(dir.path(), "token", BAO_ROOT_TOKEN);
    let mut config = vault_config(
        &address,
        &token_file_auth(&token_path),
        &[("alpha", "kmscodec-alpha")],
        "",
    );
    config = config.replacen(
        "timeout = \"2s\"\n",
        &format!("timeout = \"2s\"\nca_cert = \"{}\"\n", ca.display()),
        1,
    );
    let k = Kmscodec::start_with(Some(&config), &[]);
    let sealed = encode_ok(&k, "alpha", "over tls");
    decode_ok(&k, "alpha", &sealed, "over tls");

    let untrusted = vault_config(
        &address,
        &token_file_auth(&token_path),
        &[("alpha", "kmscodec-alpha")],
        "",
    );
    let k_untrusted = Kmscodec::spawn(Some(&untrusted), &[], &[]);
    let (status, body) = readyz(&k_untrusted);
    assert_eq!(status, 503, "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");
}

// ---------------------------------------------------------------------------------------------
// In process: error classes, describe, latency

mod in_process {
    use super::*;
    use kmscodec::keys::vault::VaultTransit;
    use kmscodec::keys::vault::{VaultAuth, VaultConfig, VaultToken};
    use kmscodec::keys::{KeyProvider, ProviderError};
    use kmscodec::secret::{Credential, KekRef, WrappedKey};

    fn provider(address: &str, token: &str, retries: u32) -> VaultTransit {
        VaultTransit::new(&VaultConfig {
            address: address.to_owned(),
            mount: "transit".to_owned(),
            namespace: None,
            ca_cert: None,
            timeout: Duration::from_secs(2),
            retries,
            auth: VaultAuth::Token(VaultToken::Env {
                variable: "TEST_TOKEN".to_owned(),
                value: Credential::new(token),
            }),
        })
        .unwrap()
    }

    fn stats(label: &str, samples: &mut [Duration]) -> String {
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        format!(
            "{label}: n={} mean={:.2?} p50={:.2?} p90={:.2?} max={:.2?}",
            samples.len(),
            mean,
            samples[samples.len() / 2],
            samples[samples.len() * 9 / 10],
            samples[samples.len() - 1]
        )
    }

    /// Each Vault answer lands in the error class the transports map to 400/403/404/503, and
    /// the namespace binding is enforced by OpenBao itself. Prints call latencies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn error_classes_describe_and_latency() {
        let bao = tokio::task::spawn_blocking(OpenBao::start).await.unwrap();
        let address = bao.addr();
        // The fixture's calls block: off the runtime's workers, as in a spawn_blocking.
        tokio::task::block_in_place(|| {
            bao.enable_transit_with_keys(&["kmscodec-alpha", "kmscodec-deleted", "other-x"]);
            bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
            bao.api_ok(
                BAO_ROOT_TOKEN,
                "POST",
                "transit/keys/kmscodec-alpha/config",
                Some(json!({"auto_rotate_period": "24h"})),
            );
        });
        let root = provider(&address, BAO_ROOT_TOKEN, 2);
        root.health().await.unwrap();

        // Round trip, and the namespace binding checked by OpenBao.
        let generated = root
            .generate_data_key("alpha", "kmscodec-alpha")
            .await
            .unwrap();
        assert_eq!(
            generated.kek,
            KekRef {
                key: "kmscodec-alpha".into(),
                version: 1
            }
        );
        assert!(generated.wrapped.as_bytes().starts_with(b"vault:v1:"));
        root.unwrap_data_key("alpha", &generated.kek, &generated.wrapped)
            .await
            .unwrap();
        assert_eq!(
            root.unwrap_data_key("beta", &generated.kek, &generated.wrapped)
                .await
                .err(),
            Some(ProviderError::Invalid)
        );
        let mut tampered = generated.wrapped.as_bytes().to_vec();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            root.unwrap_data_key("alpha", &generated.kek, &WrappedKey::new(tampered))
                .await
                .err(),
            Some(ProviderError::Invalid)
        );

        // Not found: a missing key (datakey and decrypt), and a version the key never had.
        let missing = root.generate_data_key("alpha", "kmscodec-missing").await;
        assert!(
            matches!(missing, Err(ProviderError::NotFound(_))),
            "{missing:?}"
        );
        let missing_kek = KekRef {
            key: "kmscodec-missing".into(),
            version: 1,
        };
        let missing = root
            .unwrap_data_key("alpha", &missing_kek, &generated.wrapped)
            .await;
        assert!(
            matches!(missing, Err(ProviderError::NotFound(_))),
            "{missing:?}"
        );
        let wrapped = String::from_utf8(generated.wrapped.as_bytes().to_vec()).unwrap();
        let future = wrapped.replacen("vault:v1:", "vault:v9:", 1);
        let future_kek = KekRef {
            key: "kmscodec-alpha".into(),
            version: 9,
        };
        let result = root
            .unwrap_data_key("alpha", &future_kek, &WrappedKey::new(future.into_bytes()))
            .await;
        assert!(
            matches!(result, Err(ProviderError::NotFound(_))),
            "{result:?}"
        );

        // Disabled: a soft-deleted key.
        tokio::task::block_in_place(|| {
            bao.api_ok(
                BAO_ROOT_TOKEN,
                "DELETE",
                "transit/keys/kmscodec-deleted/soft-delete",
                None,
            )
        });
        let disabled = root.generate_data_key("alpha", "kmscodec-deleted").await;
        assert!(
            matches!(disabled, Err(ProviderError::Disabled(_))),
            "{disabled:?}"
        );

        // Denied: the sidecar policy on a key outside kmscodec-*, and on describe.
        let sidecar_token =
            tokio::task::block_in_place(|| bao.token_with_policies(&["kmscodec-sidecar"]));
        let sidecar = provider(&address, &sidecar_token, 2);
        sidecar.health().await.unwrap();
        let denied = sidecar.generate_data_key("alpha", "other-x").await;
        assert!(
            matches!(denied, Err(ProviderError::Denied(_))),
            "{denied:?}"
        );
        let denied = sidecar.describe("kmscodec-alpha").await;
        assert!(
            matches!(denied, Err(ProviderError::Denied(_))),
            "{denied:?}"
        );
        sidecar
            .unwrap_data_key("alpha", &generated.kek, &generated.wrapped)
            .await
            .unwrap();

        // A revoked token: refused, and (a given token cannot log in again) denied.
        tokio::task::block_in_place(|| {
            bao.api_ok(
                BAO_ROOT_TOKEN,
                "POST",
                "auth/token/revoke",
                Some(json!({"token": sidecar_token})),
            )
        });
        let refused = sidecar.generate_data_key("alpha", "kmscodec-alpha").await;
        match refused {
            Err(ProviderError::Denied(message)) => {
                assert!(message.contains("expired or revoked"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            sidecar.health().await,
            Err(ProviderError::Denied(_))
        ));

        // Describe (needs read on the key: the admin policy, here root).
        let description = root.describe("kmscodec-alpha").await.unwrap();
        assert_eq!(description.provider, "vault");
        assert_eq!(description.primary_version, Some(1));
        assert_eq!(description.versions.len(), 1);
        assert!(description.versions[0].created_at.is_some());
        assert!(description.encrypt_enabled && description.decrypt_enabled);
        let notes = description.notes.join("\n");
        for expected in [
            "type aes256-gcm96",
            "min_decryption_version 1",
            "rotated by vault every 86400 s",
            "exportable: false",
            "deletion_allowed: false",
        ] {
            assert!(notes.contains(expected), "{expected:?} not in {notes}");
        }
        let deleted = root.describe("kmscodec-deleted").await.unwrap();
        assert!(!deleted.encrypt_enabled);
        assert!(matches!(
            root.describe("kmscodec-missing").await,
            Err(ProviderError::NotFound(_))
        ));

        // Latency of the two transit calls (datakey + decrypt per mint, decrypt per unwrap).
        let mut mints = Vec::new();
        let mut unwraps = Vec::new();
        for _ in 0..30 {
            let started = Instant::now();
            let key = root
                .generate_data_key("alpha", "kmscodec-alpha")
                .await
                .unwrap();
            mints.push(started.elapsed());
            let started = Instant::now();
            root.unwrap_data_key("alpha", &key.kek, &key.wrapped)
                .await
                .unwrap();
            unwraps.push(started.elapsed());
        }
        eprintln!(
            "{}\n{}",
            stats("mint (datakey/wrapped + decrypt)", &mut mints),
            stats("unwrap (decrypt)", &mut unwraps)
        );

        // Unavailable: nothing listens any more; 2 retries back off (100 ms, 200 ms, jittered).
        drop(bao);
        let started = Instant::now();
        let down = root
            .unwrap_data_key("gamma", &generated.kek, &generated.wrapped)
            .await;
        let elapsed = started.elapsed();
        assert!(
            matches!(down, Err(ProviderError::Unavailable(_))),
            "{down:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        let no_retries = provider(&address, BAO_ROOT_TOKEN, 0);
        let started = Instant::now();
        assert!(matches!(
            no_retries.health().await,
            Err(ProviderError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_millis(300));
    }
}
