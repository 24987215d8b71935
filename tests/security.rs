//! Who may encode and decode: the authentication and authorization matrix on the UI listener,
//! each case with its status, error code, CORS headers and audit line; the token cookie; client
//! certificates as principals; gRPC authentication; configuration refusals.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Kmscodec, b64url, json_document};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "temporal-ui";
const ORIGIN: &str = "http://127.0.0.1:8233";

/// An ES256 signing key and the JWKS that publishes it.
struct Issuer {
    key: jsonwebtoken::EncodingKey,
    jwks: Value,
}

impl Issuer {
    fn new() -> Issuer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
        }]});
        Issuer {
            key: jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
            jwks,
        }
    }

    fn token(&self, claims: Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a valid access token for `sub`, overridden by `extra`.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
        "iat": now() - 10, "exp": now() + 600,
    });
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

struct Setup {
    codec: Kmscodec,
    ui_url: String,
    audit: PathBuf,
    issuer: Issuer,
    _dir: tempfile::TempDir,
}

fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// kmscodec with an open worker listener and a UI listener that takes tokens and JWTs:
/// `token:reader` reads orders, `token:writer` writes orders, `token:other` reads billing,
/// `group:sre` (JWT) reads every namespace, `email:alice@example.com` reads orders.
fn setup() -> Setup {
    let dir_guard = common::temp_dir("security");
    let dir = dir_guard.path().to_owned();
    let issuer = Issuer::new();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks.to_string()).unwrap();
    for (name, token) in [
        ("reader", "reader-token-0123456789"),
        ("writer", "writer-token-0123456789"),
        ("other", "other-token-0123456789"),
    ] {
        write_secret(&dir.join(name), &format!("{token}\n"));
    }
    let audit = dir.join("audit.log");
    let ui_port = common::free_port();
    let config = format!(
        r#"
[ui]
listen = "127.0.0.1:{ui_port}"
auth = ["token", "jwt"]
token_cookie = "kmscodec_token"
[ui.cors]
allowed_origins = ["{ORIGIN}"]
allow_credentials = true

[auth.tokens.reader]
file = {reader:?}
[auth.tokens.writer]
file = {writer:?}
[auth.tokens.other]
file = {other:?}
[auth.jwt]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_file = {jwks:?}
algorithms = ["ES256"]
leeway = "5s"

[[authz.rules]]
principals = ["token:reader", "email:alice@example.com"]
namespaces = ["orders"]
roles = ["read"]
[[authz.rules]]
principals = ["token:writer"]
namespaces = ["orders"]
roles = ["write"]
[[authz.rules]]
principals = ["token:other"]
namespaces = ["billing"]
roles = ["read"]
[[authz.rules]]
principals = ["group:sre"]
namespaces = ["*"]
roles = ["read"]

[audit]
# Every worker request gets its own line (the default: refusals only, the rest summarized).
worker = "all"
output = "file"
path = {audit:?}

{keyring}
"#,
        reader = dir.join("reader"),
        writer = dir.join("writer"),
        other = dir.join("other"),
        keyring = common::local_keyring_toml(&dir.join("keyring.json")),
    );
    let codec = Kmscodec::start_with(Some(&config), &[]);
    Setup {
        codec,
        ui_url: format!("http://127.0.0.1:{ui_port}"),
        audit,
        issuer,
        _dir: dir_guard,
    }
}

/// POSTs `sealed` to the UI listener's `/decode` for namespace `orders`, with `headers` added.
fn ui_decode(setup: &Setup, sealed: &Value, headers: &[(&str, &str)]) -> common::HttpResponse {
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("X-Namespace", "orders"),
    ];
    all.extend_from_slice(headers);
    common::http_request(
        "POST",
        &format!("{}/decode", setup.ui_url),
        &all,
        sealed.to_string().as_bytes(),
    )
    .unwrap()
}

/// The audit line with `request_id`.
fn audit_line(path: &Path, request_id: &str) -> Value {
    let quoted = format!("\"request_id\":{}", Value::from(request_id));
    common::wait_for_audit(path, |text| text.contains(&quoted));
    let lines = common::audit_lines(path);
    lines
        .iter()
        .find(|line| line["request_id"] == request_id)
        .cloned()
        .unwrap_or_else(|| panic!("no audit line for {request_id} in:\n{lines:#?}"))
}

#[test]
fn the_auth_matrix_answers_each_case_with_the_right_status_and_an_audit_line() {
    let setup = setup();
    // Sealed payloads for orders and billing, from the open worker listener.
    let sealed = |namespace: &str| {
        let response =
            common::codec_post(&setup.codec, "encode", namespace, &json_document("matrix"));
        assert_eq!(response.status, 200);
        common::json_of(&response)
    };
    let orders = sealed("orders");
    let plain = json_document("matrix");
    let issuer = &setup.issuer;
    let bearer = |token: &str| format!("Bearer {token}");

    struct Case {
        name: &'static str,
        op: &'static str,
        namespace: &'static str,
        authorization: Option<String>,
        status: u16,
        code: &'static str,
        principal: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "no token",
            op: "decode",
            namespace: "orders",
            authorization: None,
            status: 401,
            code: "missing_credentials",
            principal: None,
        },
        Case {
            name: "bad token",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer("not-a-real-token")),
            status: 401,
            code: "invalid_credentials",
            principal: None,
        },
        Case {
            name: "not a bearer token",
            op: "decode",
            namespace: "orders",
            authorization: Some("Basic dXNlcjpwYXNz".to_owned()),
            status: 401,
            code: "malformed_credentials",
            principal: None,
        },
        Case {
            name: "expired JWT",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer(&issuer.token(claims(
                "u1",
                json!({"groups": ["sre"], "exp": now() - 120, "iat": now() - 900}),
            )))),
            status: 401,
            code: "token_expired",
            principal: None,
        },
        Case {
            name: "wrong audience",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer(&issuer.token(claims(
                "u1",
                json!({"groups": ["sre"], "aud": "someone-else"}),
            )))),
            status: 401,
            code: "wrong_audience",
            principal: None,
        },
        Case {
            name: "wrong issuer",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer(&issuer.token(claims(
                "u1",
                json!({"groups": ["sre"], "iss": "https://evil.test"}),
            )))),
            status: 401,
            code: "wrong_issuer",
            principal: None,
        },
        Case {
            name: "JWT signed by another key",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer(
                &Issuer::new().token(claims("u1", json!({"groups": ["sre"]}))),
            )),
            status: 401,
            code: "invalid_credentials",
            principal: None,
        },
        Case {
            name: "valid token for another namespace",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer("other-token-0123456789")),
            status: 403,
            code: "forbidden",
            principal: Some("token:other"),
        },
        Case {
            name: "reader calling encode",
            op: "encode",
            namespace: "orders",
            authorization: Some(bearer("reader-token-0123456789")),
            status: 403,
            code: "forbidden",
            principal: Some("token:reader"),
        },
        Case {
            name: "writer calling decode",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer("writer-token-0123456789")),
            status: 403,
            code: "forbidden",
            principal: Some("token:writer"),
        },
        Case {
            name: "writer encode",
            op: "encode",
            namespace: "orders",
            authorization: Some(bearer("writer-token-0123456789")),
            status: 200,
            code: "ok",
            principal: Some("token:writer"),
        },
        Case {
            name: "valid reader decode",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer("reader-token-0123456789")),
            status: 200,
            code: "ok",
            principal: Some("token:reader"),
        },
        Case {
            name: "JWT group reader decode",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer(
                &issuer.token(claims("u-sre", json!({"groups": ["sre"]}))),
            )),
            status: 200,
            code: "ok",
            principal: Some("sub:u-sre"),
        },
        Case {
            name: "JWT email reader decode",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer(&issuer.token(claims(
                "u-alice",
                json!({"email": "alice@example.com", "email_verified": true}),
            )))),
            status: 200,
            code: "ok",
            principal: Some("sub:u-alice"),
        },
        Case {
            name: "JWT without a matching rule",
            op: "decode",
            namespace: "orders",
            authorization: Some(bearer(&issuer.token(claims(
                "u-bob",
                json!({"email": "bob@example.com", "email_verified": true}),
            )))),
            status: 403,
            code: "forbidden",
            principal: Some("sub:u-bob"),
        },
    ];
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let request_id = format!("matrix-{index}");
        let body = if case.op == "decode" { &orders } else { &plain };
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("X-Namespace", case.namespace),
            ("Origin", ORIGIN),
            ("X-Request-Id", request_id.as_str()),
        ];
        if let Some(value) = &case.authorization {
            headers.push(("Authorization", value.as_str()));
        }
        let response = common::http_request(
            "POST",
            &format!("{}/{}", setup.ui_url, case.op),
            &headers,
            body.to_string().as_bytes(),
        )
        .unwrap();
        let audit = audit_line(&setup.audit, &request_id);
        let mut problems = Vec::new();
        if response.status != case.status {
            problems.push(format!("status {} (want {})", response.status, case.status));
        }
        // The browser must be able to read refusals: CORS headers on every answer.
        if response.header("access-control-allow-origin") != Some(ORIGIN) {
            problems.push("no CORS header".to_owned());
        }
        if case.status == 401 && response.header("www-authenticate").is_none() {
            problems.push("401 without WWW-Authenticate".to_owned());
        }
        if case.status == 200 {
            let payloads = common::json_of(&response)["payloads"].clone();
            if payloads.as_array().map(Vec::len) != Some(1) {
                problems.push(format!("body {payloads}"));
            }
            if case.op == "decode" && payloads[0] != plain["payloads"][0] {
                problems.push("decode did not restore the payload".to_owned());
            }
        } else {
            let body = common::json_of(&response);
            let want = if case.status == 401 {
                "unauthenticated"
            } else {
                "forbidden"
            };
            if body["code"] != want || body.get("payloads").is_some() {
                problems.push(format!("body {body}"));
            }
            // Never a hint of the credential in the answer.
            if let Some(secret) = &case.authorization
                && response
                    .text()
                    .contains(secret.trim_start_matches("Bearer "))
            {
                problems.push("the answer echoes the credential".to_owned());
            }
        }
        if audit["status"] != case.status
            || audit["result"] != case.code
            || audit["op"] != case.op
            || audit["listener"] != "ui"
            || audit["principal"].as_str() != case.principal
        {
            problems.push(format!("audit {audit}"));
        }
        if let Some(secret) = &case.authorization {
            let log = std::fs::read_to_string(&setup.audit).unwrap();
            if log.contains(secret.trim_start_matches("Bearer ")) {
                problems.push("the audit log contains the credential".to_owned());
            }
        }
        println!(
            "{:<36} {} {:<20} audit principal={} result={}",
            case.name, response.status, case.code, audit["principal"], audit["result"]
        );
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_ui_listener_accepts_the_token_cookie_and_the_worker_listener_stays_open() {
    let setup = setup();
    let sealed = common::json_of(&common::codec_post(
        &setup.codec,
        "encode",
        "orders",
        &json_document("cookie"),
    ));
    let decode = |cookie: Option<&str>| {
        let mut headers = vec![("Origin", ORIGIN)];
        if let Some(cookie) = cookie {
            headers.push(("Cookie", cookie));
        }
        ui_decode(&setup, &sealed, &headers)
    };
    assert_eq!(decode(None).status, 401);
    assert_eq!(
        decode(Some("theme=dark; kmscodec_token=reader-token-0123456789")).status,
        200
    );
    assert_eq!(decode(Some("kmscodec_token=wrong")).status, 401);
    assert_eq!(
        decode(Some("other_cookie=reader-token-0123456789")).status,
        401
    );
    let jwt = setup
        .issuer
        .token(claims("u-sre", json!({"groups": ["sre"]})));
    assert_eq!(decode(Some(&format!("kmscodec_token={jwt}"))).status, 200);
    // The worker listener has no auth configured: anonymous, and audited as such.
    let response = common::codec_post(&setup.codec, "decode", "orders", &sealed);
    assert_eq!(response.status, 200);
    let anonymous_worker = |text: &str| {
        text.lines().any(|line| {
            line.contains("\"listener\":\"worker\"") && line.contains("\"principal\":\"anonymous\"")
        })
    };
    let text = common::wait_for_audit(&setup.audit, anonymous_worker);
    assert!(anonymous_worker(&text), "{text}");
}

#[test]
fn a_listener_naming_an_unconfigured_method_or_missing_rules_refuses_to_start() {
    let dir = common::temp_dir("security-config");
    for (config, expected) in [
        (
            "[ui]\nlisten = \"127.0.0.1:0\"\nauth = [\"jwt\"]\n",
            "ui.auth[0]",
        ),
        ("[ui]\nlisten = \"127.0.0.1:0\"\n", "ui.auth"),
        (
            "[server]\nauth = [\"token\"]\n[auth.tokens.a]\nfile = \"/nonexistent\"\n",
            "authz",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, config).unwrap();
        let output = common::kmscodec_cmd(dir.path(), &["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{config}");
        assert!(stderr.contains(expected), "{config}: {stderr}");
    }
}

#[test]
fn a_verified_client_certificate_is_a_principal_on_a_tls_listener() {
    use common::pki::{client_pki, pki, tls_client};
    let dir_guard = common::temp_dir("security-mtls");
    let dir = dir_guard.path();
    let server = pki("server");
    let (client_ca, worker_a) = client_pki("worker-a.example");
    let (_, stranger) = client_pki("worker-a.example");
    for (name, text) in [
        ("tls.crt", &server.cert_pem),
        ("tls.key", &server.key_pem),
        ("client-ca.crt", &client_ca),
    ] {
        write_secret(&dir.join(name), text);
    }
    write_secret(&dir.join("reader"), "reader-token-0123456789\n");
    let ui_port = common::free_port();
    let config = format!(
        r#"
[ui]
listen = "127.0.0.1:{ui_port}"
auth = ["mtls", "token"]
[ui.tls]
cert_file = {cert:?}
key_file = {key:?}
client_ca_file = {ca:?}
client_auth = "optional"
[auth.tokens.reader]
file = {reader:?}
[[authz.rules]]
principals = ["cert:worker-a.example"]
namespaces = ["orders"]
roles = ["read", "write"]
[[authz.rules]]
principals = ["token:reader"]
namespaces = ["orders"]
roles = ["read"]
[audit]
output = "file"
path = {audit:?}
{keyring}
"#,
        cert = dir.join("tls.crt"),
        key = dir.join("tls.key"),
        ca = dir.join("client-ca.crt"),
        reader = dir.join("reader"),
        audit = dir.join("audit.log"),
        keyring = common::local_keyring_toml(&dir.join("keyring.json")),
    );
    let codec = Kmscodec::start_with(Some(&config), &[]);
    // The served certificate's expiry is exported for the certificate alerts (rcgen's default
    // notAfter is 4096-01-01); listeners without TLS have no series.
    let metrics = common::http_request("GET", &format!("{}/metrics", codec.admin_url()), &[], b"")
        .unwrap()
        .text();
    let expiry: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("kmscodec_tls_certificate_not_after_seconds{"))
        .collect();
    assert_eq!(
        expiry,
        [format!(
            "kmscodec_tls_certificate_not_after_seconds{{listener=\"ui\"}} {}",
            time::macros::datetime!(4096-01-01 0:00 UTC).unix_timestamp()
        )],
        "{metrics}"
    );
    let url = format!("https://127.0.0.1:{ui_port}/encode");
    let encode = |client: &reqwest::blocking::Client, token: Option<&str>| {
        let mut request = client
            .post(&url)
            .header("x-namespace", "orders")
            .header("content-type", "application/json")
            .body(json_document("mtls").to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().unwrap().status().as_u16()
    };
    // The certificate's DNS name is the principal: it may encode orders.
    assert_eq!(
        encode(&tls_client(&server.ca_pem, Some(&worker_a)), None),
        200
    );
    // Optional client auth: without a certificate, a token is needed, and a reader cannot encode.
    let anonymous = tls_client(&server.ca_pem, None);
    assert_eq!(encode(&anonymous, None), 401);
    assert_eq!(encode(&anonymous, Some("reader-token-0123456789")), 403);
    // A certificate from another CA is refused in the handshake.
    let refused = tls_client(&server.ca_pem, Some(&stranger))
        .post(&url)
        .header("x-namespace", "orders")
        .body(json_document("mtls").to_string())
        .send();
    assert!(refused.is_err());
    let audit = common::wait_for_audit(&dir.join("audit.log"), |text| {
        text.contains("\"principal\":\"cert:worker-a.example\"")
    });
    assert!(
        audit.contains("\"principal\":\"cert:worker-a.example\""),
        "{audit}"
    );
}

#[tokio::test]
async fn grpc_callers_authenticate_with_authorization_metadata() {
    use kmscodec::server::grpc::proto::EncodeRequest;
    use kmscodec::server::grpc::proto::codec_client::CodecClient;
    let dir_guard = common::temp_dir("security-grpc");
    let dir = dir_guard.path();
    write_secret(&dir.join("worker"), "worker-token-0123456789\n");
    let grpc_port = common::free_port();
    let config = format!(
        r#"
[server]
grpc_listen = "127.0.0.1:{grpc_port}"
auth = ["token"]
body_limit_bytes = "64KiB"
[auth.tokens.worker]
file = {worker:?}
[[authz.rules]]
principals = ["token:worker"]
namespaces = ["orders"]
roles = ["write"]
[audit]
# Every gRPC call gets its own line (the default: refusals only).
grpc = "all"
output = "file"
path = {audit:?}
{keyring}
"#,
        worker = dir.join("worker"),
        audit = dir.join("audit.log"),
        keyring = common::local_keyring_toml(&dir.join("keyring.json")),
    );
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let channel = tonic::transport::Endpoint::try_from(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = CodecClient::new(channel);
    let request = |namespace: &str, token: Option<&str>| {
        let mut request = tonic::Request::new(EncodeRequest {
            namespace: namespace.to_owned(),
            payloads: vec![],
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    };
    let missing = client.encode(request("orders", None)).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let wrong = client
        .encode(request("orders", Some("nope")))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let forbidden = client
        .encode(request("billing", Some("worker-token-0123456789")))
        .await
        .unwrap_err();
    assert_eq!(forbidden.code(), tonic::Code::PermissionDenied);
    // Authentication comes from the metadata, before the message is read: a caller without a
    // token learns nothing about the message (here: that it is over the size limit).
    let big = || {
        let mut request = request("orders", None);
        request.get_mut().payloads.push(kmscodec::payload::Payload {
            data: vec![0x42; 256 << 10],
            ..Default::default()
        });
        request
    };
    let unread = client.encode(big()).await.unwrap_err();
    assert_eq!(unread.code(), tonic::Code::Unauthenticated, "{unread:?}");
    let mut read = big();
    read.metadata_mut().insert(
        "authorization",
        "Bearer worker-token-0123456789".parse().unwrap(),
    );
    let over = client.encode(read).await.unwrap_err();
    assert_eq!(over.code(), tonic::Code::OutOfRange, "{over:?}");
    client
        .encode(request("orders", Some("worker-token-0123456789")))
        .await
        .unwrap();
    // The HTTP worker listener shares the methods: a request without a token is refused.
    let response = common::codec_post(&codec, "encode", "orders", &json_document("x"));
    assert_eq!(response.status, 401);
    common::wait_for_audit(&dir.join("audit.log"), |text| {
        text.matches("\"listener\":\"grpc\"").count() >= 6
    });
    let grpc_lines: Vec<Value> = common::audit_lines(&dir.join("audit.log"))
        .into_iter()
        .filter(|line| line["listener"] == "grpc")
        .collect();
    let results: Vec<&str> = grpc_lines
        .iter()
        .map(|line| line["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        // The same words as over HTTP: one pipeline, one vocabulary.
        [
            "missing_credentials",
            "invalid_credentials",
            "forbidden",
            "missing_credentials",
            "body_too_large",
            "ok"
        ]
    );
    assert_eq!(grpc_lines[4]["principal"], "token:worker");
    assert_eq!(grpc_lines[5]["principal"], "token:worker");
}

#[test]
fn the_web_uis_authorization_extras_id_token_adds_its_claims() {
    let setup = setup();
    let sealed = common::json_of(&common::codec_post(
        &setup.codec,
        "encode",
        "orders",
        &json_document("extras"),
    ));
    // The access token alone names no group; the ID token of the same subject does.
    let access = setup.issuer.token(claims("u-carol", json!({})));
    let id_token = setup
        .issuer
        .token(claims("u-carol", json!({"groups": ["sre"]})));
    let other_subject = setup
        .issuer
        .token(claims("u-mallory", json!({"groups": ["sre"]})));
    let decode = |extras: Option<&str>| {
        let authorization = format!("Bearer {access}");
        let mut headers = vec![("Authorization", authorization.as_str())];
        if let Some(extras) = extras {
            headers.push(("Authorization-Extras", extras));
        }
        ui_decode(&setup, &sealed, &headers).status
    };
    assert_eq!(decode(None), 403);
    assert_eq!(decode(Some(&id_token)), 200);
    // An ID token of another subject, or garbage, adds nothing (and fails nothing).
    assert_eq!(decode(Some(&other_subject)), 403);
    assert_eq!(decode(Some("not-a-jwt")), 403);
}

#[tokio::test]
async fn grpc_over_tls_takes_the_client_certificate_as_the_principal() {
    use common::pki::{client_pki, pki};
    use kmscodec::server::grpc::proto::EncodeRequest;
    use kmscodec::server::grpc::proto::codec_client::CodecClient;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir_guard = common::temp_dir("security-grpc-tls");
    let dir = dir_guard.path();
    let server = pki("server");
    let (client_ca, worker_a) = client_pki("worker-a.example");
    for (name, text) in [
        ("tls.crt", &server.cert_pem),
        ("tls.key", &server.key_pem),
        ("client-ca.crt", &client_ca),
    ] {
        write_secret(&dir.join(name), text);
    }
    let grpc_port = common::free_port();
    let config = format!(
        r#"
[server]
grpc_listen = "127.0.0.1:{grpc_port}"
auth = ["mtls"]
[server.grpc_tls]
cert_file = {cert:?}
key_file = {key:?}
client_ca_file = {ca:?}
client_auth = "optional"
[[authz.rules]]
principals = ["cert:worker-a.example"]
namespaces = ["orders"]
roles = ["write"]
{keyring}
"#,
        cert = dir.join("tls.crt"),
        key = dir.join("tls.key"),
        ca = dir.join("client-ca.crt"),
        keyring = common::local_keyring_toml(&dir.join("keyring.json")),
    );
    let _codec = Kmscodec::start_with(Some(&config), &[]);
    let connect = |identity: Option<&str>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&server.ca_pem))
            .domain_name("localhost");
        if let Some(pem) = identity {
            tls = tls.identity(Identity::from_pem(pem, pem));
        }
        async move {
            let channel = Endpoint::try_from(format!("https://127.0.0.1:{grpc_port}"))
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap();
            CodecClient::new(channel)
        }
    };
    let request = || EncodeRequest {
        namespace: "orders".to_owned(),
        payloads: vec![],
    };
    let mut with_cert = connect(Some(&worker_a)).await;
    with_cert.encode(request()).await.unwrap();
    let mut without = connect(None).await;
    let refused = without.encode(request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
