// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

//! The Temporal Codec Server HTTP protocol, driven in process through the handler production
//! serves (`Handler::call`, as the listener calls it): round trips, pass-through, CORS, and the
//! bad-input table from `docs/configuration.md`.

mod common;

use std::collections::BTreeMap;

use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};

use kmscodec::app;
use kmscodec::config::Config;
use kmscodec::server::http::{CodecHandler, handler};
use kmscodec::server::listener::Handler;

use common::{b64, unb64};

struct Harness {
    handler: CodecHandler,
    _dir: tempfile::TempDir,
}

fn harness_with(extra: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.json");
    let text = format!(
        r#"
        [server]
        body_limit_bytes = "8MiB"
        allowed_hosts = ["kmscodec.workers.svc"]
        [server.cors]
        allowed_origins = ["http://localhost:8233"]
        allow_credentials = true
        [providers.dev]
        kind = "local"
        path = {keyring:?}
        create_missing = true
        [namespaces.alpha]
        provider = "dev"
        key = "dev"
        [namespaces.beta]
        provider = "dev"
        key = "dev"
        # Same length as alpha: a header rewritten to name it must still fail.
        [namespaces.alphb]
        provider = "dev"
        key = "dev"
        {extra}
        "#
    );
    let config = Config::from_toml_str(&text, std::iter::empty()).unwrap();
    let app = app::build(config).unwrap();
    let handler = handler(app.state(), app.http_options());
    Harness { handler, _dir: dir }
}

fn harness() -> Harness {
    harness_with("")
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .handler
            .call(request.body(body.into()).unwrap(), None)
            .await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn post(&self, path: &str, namespace: Option<&str>, body: impl Into<Body>) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(namespace) = namespace {
            headers.push(("x-namespace", namespace));
        }
        self.call(Method::POST, path, &headers, body).await
    }

    async fn encode(&self, namespace: &str, document: &Value) -> Value {
        let reply = self
            .post("/encode", Some(namespace), document.to_string())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    async fn decode(&self, namespace: &str, document: &Value) -> Value {
        let reply = self
            .post("/decode", Some(namespace), document.to_string())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }
}

fn payload(encoding: &str, data: &[u8]) -> Value {
    json!({"metadata": {"encoding": b64(encoding.as_bytes())}, "data": b64(data)})
}

/// Metadata, data and external payloads of each payload, decoded.
type Canonical = Vec<(BTreeMap<String, Vec<u8>>, Vec<u8>, Value)>;

/// Metadata and data of every payload, decoded, for byte-exact comparison.
fn canonical(document: &Value) -> Canonical {
    document["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let metadata = p["metadata"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), unb64(v))).collect())
                .unwrap_or_default();
            let data = p.get("data").map(unb64).unwrap_or_default();
            let external = p.get("externalPayloads").cloned().unwrap_or(json!(null));
            (metadata, data, external)
        })
        .collect()
}

async fn round_trip(h: &Harness, document: Value) {
    let sealed = h.encode("alpha", &document).await;
    let sealed_payloads = sealed["payloads"].as_array().unwrap();
    assert_eq!(
        sealed_payloads.len(),
        document["payloads"].as_array().unwrap().len()
    );
    for p in sealed_payloads {
        assert_eq!(unb64(&p["metadata"]["encoding"]), b"binary/encrypted");
        assert!(unb64(&p["metadata"]["encryption-key-id"]).starts_with(b"local:dev"));
    }
    let opened = h.decode("alpha", &sealed).await;
    assert_eq!(canonical(&opened), canonical(&document));
}

#[tokio::test]
async fn round_trips_are_byte_identical() {
    let h = harness();
    round_trip(&h, json!({"payloads": [payload("json/plain", b"")]})).await;
    round_trip(
        &h,
        json!({"payloads": [payload("binary/plain", &(0..=255).collect::<Vec<u8>>())]}),
    )
    .await;
    let big: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    round_trip(&h, json!({"payloads": [payload("binary/plain", &big)]})).await;
    let mut metadata = serde_json::Map::new();
    for i in 0..50 {
        metadata.insert(
            format!("key-{i}"),
            json!(b64(format!("value {i}").as_bytes())),
        );
    }
    metadata.insert("encoding".into(), json!(b64(b"json/plain")));
    round_trip(
        &h,
        json!({"payloads": [{"metadata": metadata, "data": b64(b"{\"a\":1}")}]}),
    )
    .await;
    round_trip(
        &h,
        json!({"payloads": [payload("json/plain", b"\"hello\""), payload("binary/null", b"")]}),
    )
    .await;
    let many: Vec<Value> = (0..100)
        .map(|i| payload("json/plain", format!("{i}").as_bytes()))
        .collect();
    round_trip(&h, json!({"payloads": many})).await;
    // externalPayloads survive, and snake_case input is accepted.
    round_trip(
        &h,
        json!({"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b"1"),
               "externalPayloads": [{"sizeBytes": "1234"}]}]}),
    )
    .await;
    let snake = json!({"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b"1"),
               "external_payloads": [{"size_bytes": 99}]}]});
    let sealed = h.encode("alpha", &snake).await;
    let opened = h.decode("alpha", &sealed).await;
    assert_eq!(
        opened["payloads"][0]["externalPayloads"][0]["sizeBytes"],
        "99"
    );
}

#[tokio::test]
async fn empty_batches_and_missing_payloads_field_give_empty_batches() {
    let h = harness();
    for body in [json!({"payloads": []}), json!({})] {
        assert_eq!(h.encode("alpha", &body).await, json!({"payloads": []}));
        assert_eq!(h.decode("alpha", &body).await, json!({"payloads": []}));
    }
}

#[tokio::test]
async fn decode_passes_foreign_payloads_through_untouched() {
    let h = harness();
    let ours = h
        .encode(
            "alpha",
            &json!({"payloads": [payload("json/plain", b"\"secret\"")]}),
        )
        .await;
    let foreign_encrypted = payload("binary/encrypted", b"\x01\x02other codec ciphertext");
    let plain = payload("json/plain", b"{\"plain\":true}");
    let document = json!({"payloads": [plain.clone(), ours["payloads"][0].clone(), foreign_encrypted.clone()]});
    let opened = h.decode("alpha", &document).await;
    let payloads = canonical(&opened);
    assert_eq!(payloads[0], canonical(&json!({"payloads": [plain]}))[0]);
    assert_eq!(payloads[1].1, b"\"secret\"");
    assert_eq!(
        payloads[2],
        canonical(&json!({"payloads": [foreign_encrypted]}))[0]
    );
}

#[tokio::test]
async fn namespace_comes_from_header_or_path_and_query_is_ignored() {
    let h = harness();
    let document = json!({"payloads": [payload("json/plain", b"1")]});
    let reply = h
        .post(
            "/codec/alpha/encode?preserveStorageRefs=true",
            None,
            document.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let sealed = reply.json();
    // The header wins over the path.
    let reply = h
        .post("/beta/decode", Some("alpha"), sealed.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // Sealed for alpha, presented as beta: refused with the opaque error.
    let reply = h.post("/x/decode", Some("beta"), sealed.to_string()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["code"], "undecryptable_payload");
}

#[tokio::test]
async fn cors_preflight_answers_allowed_origins_only_and_errors_carry_cors() {
    let h = harness();
    let preflight = |origin: &'static str| {
        vec![
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-namespace"),
        ]
    };
    for path in ["/decode", "/prefix/encode", "/anything"] {
        let reply = h
            .call(
                Method::OPTIONS,
                path,
                &preflight("http://localhost:8233"),
                Body::empty(),
            )
            .await;
        assert!(reply.status.is_success(), "{path}: {}", reply.status);
        let headers = &reply.headers;
        assert_eq!(
            headers["access-control-allow-origin"],
            "http://localhost:8233"
        );
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert!(
            headers["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        let allowed = headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        for needed in [
            "content-type",
            "x-namespace",
            "authorization",
            "authorization-extras",
        ] {
            assert!(allowed.contains(needed), "{needed} missing from {allowed}");
        }
    }
    let reply = h
        .call(
            Method::OPTIONS,
            "/decode",
            &preflight("http://evil.example"),
            Body::empty(),
        )
        .await;
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    assert!(
        reply
            .headers
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(reply.headers.get("access-control-allow-headers").is_none());

    // An error answered to an allowed origin still carries CORS headers.
    let reply = h
        .call(
            Method::POST,
            "/decode",
            &[
                ("origin", "http://localhost:8233"),
                ("x-namespace", "alpha"),
                ("content-type", "application/json"),
            ],
            "not json",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "http://localhost:8233"
    );
}

/// Produces a sealed payload document for `alpha` and lets `mutate` change its data bytes.
async fn tampered(h: &Harness, mutate: impl Fn(&mut Vec<u8>)) -> String {
    let sealed = h
        .encode(
            "alpha",
            &json!({"payloads": [payload("json/plain", b"\"top secret\"")]}),
        )
        .await;
    let mut data = unb64(&sealed["payloads"][0]["data"]);
    mutate(&mut data);
    let mut document = sealed.clone();
    document["payloads"][0]["data"] = json!(b64(&data));
    document.to_string()
}

#[tokio::test]
async fn bad_input_table() {
    let h = harness();
    let good = json!({"payloads": [payload("json/plain", b"1")]}).to_string();
    let sealed_len = unb64(
        &h.encode(
            "alpha",
            &json!({"payloads": [payload("json/plain", b"\"top secret\"")]}),
        )
        .await["payloads"][0]["data"],
    )
    .len();
    // Format 2 header for namespace "alpha", key "dev", 60-byte wrapped key (docs/format.md):
    // the 24-byte nonce, then the 32-byte commitment.
    let header_len = 4 + 1 + 2 + 1 + 1 + 5 + 2 + 3 + 4 + 2 + 60 + 24 + 32;
    assert!(sealed_len > header_len + 16);

    struct Case {
        name: &'static str,
        path: &'static str,
        namespace: Option<&'static str>,
        body: String,
        status: StatusCode,
        code: &'static str,
    }
    let case = |name, path, namespace, body: String, status, code| Case {
        name,
        path,
        namespace,
        body,
        status,
        code,
    };
    let cases = vec![
        case(
            "invalid JSON",
            "/decode",
            Some("alpha"),
            "{\"payloads\": [".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "not an object",
            "/encode",
            Some("alpha"),
            "[1,2]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "wrong type for payloads",
            "/encode",
            Some("alpha"),
            r#"{"payloads":"x"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "wrong type for data",
            "/encode",
            Some("alpha"),
            r#"{"payloads":[{"data":42}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "wrong type for metadata",
            "/encode",
            Some("alpha"),
            r#"{"payloads":[{"metadata":[]}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "bad base64",
            "/decode",
            Some("alpha"),
            r#"{"payloads":[{"data":"!!not base64!!"}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "truncated header",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| d.truncate(30)).await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "truncated tag",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| {
                let n = d.len();
                d.truncate(n - 1)
            })
            .await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "wrong version",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| d[4] = 9).await,
            StatusCode::BAD_REQUEST,
            "unsupported_format_version",
        ),
        case(
            "swapped namespace",
            "/decode",
            Some("beta"),
            tampered(&h, |_| {}).await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "namespace rewritten in header",
            "/decode",
            Some("alphb"),
            tampered(&h, |d| d[13] = b'b').await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "flipped byte in wrapped key",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| d[30] ^= 1).await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "flipped byte in nonce",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| d[header_len - 40] ^= 1).await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "flipped byte in commitment",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| d[header_len - 1] ^= 1).await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "flipped byte in ciphertext",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| d[header_len + 2] ^= 1).await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "flipped byte in tag",
            "/decode",
            Some("alpha"),
            tampered(&h, |d| {
                let n = d.len();
                d[n - 1] ^= 1
            })
            .await,
            StatusCode::BAD_REQUEST,
            "undecryptable_payload",
        ),
        case(
            "oversize body",
            "/encode",
            Some("alpha"),
            format!(
                "{{\"payloads\":[{{\"data\":\"{}\"}}]}}",
                "A".repeat(9 << 20)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        case(
            "missing namespace",
            "/encode",
            None,
            good.clone(),
            StatusCode::BAD_REQUEST,
            "missing_namespace",
        ),
        case(
            "invalid namespace",
            "/encode",
            Some("has space"),
            good.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_namespace",
        ),
        case(
            "namespace without a key",
            "/encode",
            Some("gamma"),
            good.clone(),
            StatusCode::NOT_FOUND,
            "namespace_not_configured",
        ),
        case(
            "unknown route",
            "/metrics/encodex",
            Some("alpha"),
            good.clone(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        case(
            "download",
            "/download",
            Some("alpha"),
            good.clone(),
            StatusCode::NOT_FOUND,
            "download_not_supported",
        ),
    ];
    for case in cases {
        let reply = h.post(case.path, case.namespace, case.body).await;
        assert_eq!(
            reply.status,
            case.status,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        assert_eq!(body["code"], case.code, "{}: {body}", case.name);
        let message = body["message"].as_str().unwrap();
        assert!(
            !message.contains("top secret"),
            "{}: plaintext leaked in {message}",
            case.name
        );
        // After every bad request the server still serves a good one.
        let ok = h.post("/encode", Some("alpha"), good.clone()).await;
        assert_eq!(ok.status, StatusCode::OK, "after {}", case.name);
    }
    // Wrong methods.
    let reply = h
        .call(
            Method::GET,
            "/encode",
            &[("x-namespace", "alpha")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "POST, OPTIONS");
    let reply = h
        .call(
            Method::PUT,
            "/decode",
            &[("x-namespace", "alpha")],
            good.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_single_bad_payload_fails_the_whole_batch() {
    let h = harness();
    let sealed = h
        .encode(
            "alpha",
            &json!({"payloads": [payload("json/plain", b"1"), payload("json/plain", b"2")]}),
        )
        .await;
    let mut document = sealed.clone();
    let mut data = unb64(&document["payloads"][1]["data"]);
    let last = data.len() - 1;
    data[last] ^= 0x80;
    document["payloads"][1]["data"] = json!(b64(&data));
    let reply = h.post("/decode", Some("alpha"), document.to_string()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("payloads[1]")
    );
    assert!(reply.json().get("payloads").is_none(), "no partial decode");
}

#[tokio::test]
async fn skip_encodings_pass_through_on_encode() {
    let h = harness_with("[encode]\nskip_encodings = [\"binary/null\"]");
    let document = json!({"payloads": [payload("binary/null", b""), payload("json/plain", b"1")]});
    let sealed = h.encode("alpha", &document).await;
    assert_eq!(
        unb64(&sealed["payloads"][0]["metadata"]["encoding"]),
        b"binary/null"
    );
    assert_eq!(
        unb64(&sealed["payloads"][1]["metadata"]["encoding"]),
        b"binary/encrypted"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness();
    let reply = h.call(Method::GET, "/healthz", &[], Body::empty()).await;
    assert_eq!(reply.status, StatusCode::OK);
    // Not checked yet in this in-process handler: not ready. The reason is for operators (the
    // admin listener and the log), not for codec callers.
    let reply = h.call(Method::GET, "/readyz", &[], Body::empty()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(String::from_utf8_lossy(&reply.body), "not ready\n");
}

/// What a web page could make a browser send to the open worker listener is refused before the
/// body is read: "simple" requests (not JSON), other origins, and DNS-rebinding hosts.
#[tokio::test]
async fn an_open_listener_refuses_what_a_browser_could_be_tricked_into_sending() {
    let h = harness();
    let sealed = h
        .encode(
            "alpha",
            &json!({"payloads": [payload("json/plain", b"\"secret\"")]}),
        )
        .await
        .to_string();
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Headers, StatusCode, &str)] = &[
        // A cross-site form or fetch without a preflight can only send these types.
        (
            &[("content-type", "text/plain"), ("x-namespace", "alpha")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            &[("x-namespace", "alpha")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            &[
                ("content-type", "application/json"),
                ("x-namespace", "alpha"),
                ("origin", "http://evil.example"),
            ],
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
        ),
        (
            &[
                ("content-type", "application/json"),
                ("x-namespace", "alpha"),
                ("host", "rebound.evil.example:8089"),
            ],
            StatusCode::FORBIDDEN,
            "host_not_allowed",
        ),
    ];
    for (headers, status, code) in cases {
        let reply = h
            .call(Method::POST, "/decode", headers, sealed.clone())
            .await;
        assert_eq!(reply.status, *status, "{headers:?}");
        assert_eq!(reply.json()["code"], *code, "{headers:?}");
        assert!(!String::from_utf8_lossy(&reply.body).contains("secret"));
    }
    // Loopback names, listed hosts, allowed origins and JSON with parameters pass.
    for headers in [
        &[("host", "127.0.0.1:8089")][..],
        &[("host", "localhost")][..],
        &[("host", "[::1]:8089")][..],
        &[("host", "kmscodec.workers.svc:8089")][..],
        &[("origin", "http://localhost:8233")][..],
    ] {
        let mut all = vec![
            ("content-type", "application/json; charset=utf-8"),
            ("x-namespace", "alpha"),
        ];
        all.extend_from_slice(headers);
        let reply = h.call(Method::POST, "/decode", &all, sealed.clone()).await;
        assert_eq!(reply.status, StatusCode::OK, "{headers:?}");
    }
}
