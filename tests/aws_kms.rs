// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

//! The AWS KMS provider against a real KMS-compatible server (`moto_server`, started per test on
//! loopback): round trips through the kmscodec binary's HTTP codec, the encryption context as
//! the server enforces it, outages and throttling mapped to 503 within the configured timeout
//! while cached keys keep working, key rotation, and the IAM policy against the code.
//!
//! Nothing here leaves 127.0.0.1: every provider names a loopback endpoint, the fixtures disable
//! IMDS, and the kmscodec processes also get `AWS_ENDPOINT_URL` pointing at moto, so even a
//! provider that ignored its configured endpoint would not reach AWS (and the outage tests would
//! then fail, because moto would answer).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Kmscodec, Moto, b64, codec_post, http_request, json_document, json_of, unb64};
use kmscodec::envelope;
use kmscodec::keys::aws_kms::{self, AwsKms, AwsKmsOptions};
use kmscodec::keys::{KeyProvider, ProviderError};
use kmscodec::secret::{KekRef, WrappedKey};

/// The provider timeout the outage tests configure, and the slack allowed on top of it for
/// process and HTTP overhead.
const TIMEOUT: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_millis(700);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Encodes one payload, asserting 200; returns the sealed document.
fn encode(k: &Kmscodec, namespace: &str, text: &str) -> Value {
    let response = codec_post(k, "encode", namespace, &json_document(text));
    assert_eq!(response.status, 200, "encode: {}", response.text());
    json_of(&response)
}

/// Decodes `sealed`, asserting 200 and that it opens to `text`.
fn decode_ok(k: &Kmscodec, namespace: &str, sealed: &Value, text: &str) {
    let response = codec_post(k, "decode", namespace, sealed);
    assert_eq!(response.status, 200, "decode: {}", response.text());
    assert_eq!(json_of(&response), json_document(text));
}

/// The KEK reference and wrapped key in a sealed payload's header.
fn header_of(sealed: &Value) -> (KekRef, WrappedKey) {
    let data = unb64(&sealed["payloads"][0]["data"]);
    let (header, _) = envelope::parse(&data).unwrap();
    (
        header.alleged_kek(),
        WrappedKey::new(header.alleged_wrapped_key.to_vec()),
    )
}

fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    moto.aws_env()
}

fn start_kmscodec(config: &str, env: &[(&'static str, String)]) -> Kmscodec {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Kmscodec::start_full(Some(config), &[], &env)
}

/// A kmscodec config with one AWS provider at `endpoint` and `namespaces` appended.
fn config(endpoint: &str, namespaces: &str) -> String {
    format!(
        r#"
        [providers.kms]
        kind = "aws"
        region = "{region}"
        endpoint = "{endpoint}"
        timeout = "{timeout}ms"
        connect_timeout = "250ms"
        max_attempts = 3
        {namespaces}
        "#,
        region = common::AWS_REGION,
        timeout = TIMEOUT.as_millis(),
    )
}

/// The provider in process, signing with moto's static test credentials (no chain, no env).
fn provider(endpoint: &str, timeout: Duration) -> AwsKms {
    provider_with_attempts(endpoint, timeout, 3)
}

fn provider_with_attempts(endpoint: &str, timeout: Duration, max_attempts: u32) -> AwsKms {
    let credentials =
        aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "test");
    AwsKms::with_credentials_provider(
        AwsKmsOptions {
            region: Some(common::AWS_REGION.to_owned()),
            endpoint: Some(endpoint.to_owned()),
            timeout,
            connect_timeout: Duration::from_millis(250),
            max_attempts,
            ..AwsKmsOptions::default()
        },
        aws_sdk_kms::config::SharedCredentialsProvider::new(credentials),
    )
}

/// A KMS call to moto that may fail: (HTTP status, JSON body).
fn kms_raw(moto: &Moto, action: &str, body: &Value) -> (u16, Value) {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/kms/aws4_request, \
         SignedHeaders=host, Signature=0",
        common::AWS_REGION
    );
    let target = format!("TrentService.{action}");
    let response = http_request(
        "POST",
        &format!("{}/", moto.url()),
        &[
            ("Authorization", auth.as_str()),
            ("X-Amz-Target", target.as_str()),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap();
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap_or(Value::Null),
    )
}

fn create_alias(moto: &Moto, alias: &str, key_arn: &str) {
    moto.kms(
        "CreateAlias",
        &json!({"AliasName": alias, "TargetKeyId": key_arn}),
    );
}

/// A fake KMS endpoint on loopback answering every request with `ThrottlingException`, as KMS
/// does past its request quota (moto cannot throttle). Counts the requests it sees.
struct ThrottlingKms {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThrottlingKms {
    fn start() -> ThrottlingKms {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                // Read the head, then the body it announces.
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                let head_end = loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(end + 4);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
                     x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        ThrottlingKms {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ThrottlingKms {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Two namespaces, two KMS keys (one named by ARN, one through `alias/kmscodec/{namespace}`),
/// round trips through the real binary; a payload sealed for one namespace never opens as the
/// other: our header check answers 400 before any KMS call, and KMS itself refuses the other
/// namespace's context (the provider called directly, and moto's Decrypt called raw).
#[test]
fn two_namespaces_two_keys_round_trip_and_stay_apart() {
    let moto = Moto::start();
    let alpha_key = moto.create_kms_key("kmscodec alpha");
    let beta_key = moto.create_kms_key("kmscodec beta");
    create_alias(&moto, "alias/kmscodec/beta", &beta_key);
    let k = start_kmscodec(
        &config(
            &moto.url(),
            &format!(
                r#"
                [namespaces.alpha]
                provider = "kms"
                key = "{alpha_key}"
                [namespaces."*"]
                provider = "kms"
                key = "alias/kmscodec/{{namespace}}"
                "#
            ),
        ),
        &aws_env(&moto),
    );

    let alpha = encode(&k, "alpha", "for alpha");
    let beta = encode(&k, "beta", "for beta");
    let key_id = |sealed: &Value| {
        String::from_utf8(unb64(
            &sealed["payloads"][0]["metadata"]["encryption-key-id"],
        ))
        .unwrap()
    };
    assert!(key_id(&alpha).contains(&alpha_key), "{}", key_id(&alpha));
    assert!(key_id(&beta).contains(&beta_key), "{}", key_id(&beta));
    // The header names the key ARN KMS returned (the alias resolved), version 0.
    let (alpha_kek, alpha_wrapped) = header_of(&alpha);
    let (beta_kek, _) = header_of(&beta);
    assert_eq!(
        alpha_kek,
        KekRef {
            key: alpha_key.clone(),
            version: 0
        }
    );
    assert_eq!(
        beta_kek,
        KekRef {
            key: beta_key.clone(),
            version: 0
        }
    );

    decode_ok(&k, "alpha", &alpha, "for alpha");
    decode_ok(&k, "beta", &beta, "for beta");

    // A namespace whose alias does not exist: KMS NotFoundException, 404.
    let response = codec_post(&k, "encode", "gamma", &json_document("nobody"));
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(json_of(&response)["code"], "key_not_found");

    // Our header check refuses first.
    for (sealed, other) in [(&alpha, "beta"), (&beta, "alpha")] {
        let response = codec_post(&k, "decode", other, sealed);
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(json_of(&response)["code"], "undecryptable_payload");
    }

    // KMS refuses too: the same wrapped key, unwrapped for another namespace, is rejected by
    // the server (moto enforces the encryption context: InvalidCiphertextException).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let direct = provider(&moto.url(), Duration::from_secs(5));
    runtime.block_on(async {
        direct
            .unwrap_data_key("alpha", &alpha_kek, &alpha_wrapped)
            .await
            .unwrap();
        assert_eq!(
            direct
                .unwrap_data_key("beta", &alpha_kek, &alpha_wrapped)
                .await
                .map(|_| ()),
            Err(ProviderError::Invalid)
        );
    });
    let wrong_context = json!({
        "CiphertextBlob": b64(alpha_wrapped.as_bytes()),
        "KeyId": alpha_key,
        "EncryptionContext": aws_kms::encryption_context("beta"),
    });
    let (status, body) = kms_raw(&moto, "Decrypt", &wrong_context);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["__type"], "InvalidCiphertextException", "{body}");
}

/// The context is really sent on both calls: moto's Decrypt refuses a wrapped key minted by the
/// provider unless given exactly the context the provider builds; the provider's own Decrypt
/// with another namespace is refused by the server. Prints the call latencies against moto.
#[tokio::test]
async fn the_server_enforces_the_encryption_context() {
    let moto = Moto::start();
    let key = moto.create_kms_key("kmscodec context");
    let kms = provider(&moto.url(), Duration::from_secs(5));
    kms.health().await.unwrap();

    let mut generate = Vec::new();
    let mut unwrap = Vec::new();
    let mut minted = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let generated = kms.generate_data_key("payments", &key).await.unwrap();
        generate.push(started.elapsed());
        assert_eq!(
            generated.kek,
            KekRef {
                key: key.clone(),
                version: 0
            }
        );
        let started = Instant::now();
        kms.unwrap_data_key("payments", &generated.kek, &generated.wrapped)
            .await
            .unwrap();
        unwrap.push(started.elapsed());
        minted.push(generated);
    }
    generate.sort();
    unwrap.sort();
    eprintln!(
        "latency against moto (10 calls): GenerateDataKey median {:?} max {:?}; Decrypt median \
         {:?} max {:?}",
        generate[5], generate[9], unwrap[5], unwrap[9]
    );

    let generated = &minted[0];
    assert_eq!(
        kms.unwrap_data_key("orders", &generated.kek, &generated.wrapped)
            .await
            .map(|_| ()),
        Err(ProviderError::Invalid)
    );

    let decrypt = |context: Option<Value>| {
        let mut body = json!({
            "CiphertextBlob": b64(generated.wrapped.as_bytes()),
            "KeyId": key,
        });
        if let Some(context) = context {
            body["EncryptionContext"] = context;
        }
        kms_raw(&moto, "Decrypt", &body)
    };
    let exact = serde_json::to_value(aws_kms::encryption_context("payments")).unwrap();
    let (status, body) = decrypt(Some(exact.clone()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["KeyId"], key.as_str());
    assert_eq!(unb64(&body["Plaintext"]).len(), 32);
    let mut wrong_format = exact.clone();
    wrong_format[aws_kms::CONTEXT_FORMAT] = json!("2");
    let mut extra = exact.clone();
    extra["kmscodec:other"] = json!("x");
    for (what, context) in [
        ("no context", None),
        ("empty context", Some(json!({}))),
        (
            "namespace only",
            Some(json!({aws_kms::CONTEXT_NAMESPACE: "payments"})),
        ),
        (
            "other namespace",
            Some(serde_json::to_value(aws_kms::encryption_context("orders")).unwrap()),
        ),
        ("other format", Some(wrong_format)),
        ("extra pair", Some(extra)),
    ] {
        let (status, body) = decrypt(context);
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(
            body["__type"], "InvalidCiphertextException",
            "{what}: {body}"
        );
    }
}

/// With KMS gone, cached keys keep working (decoding payloads already opened, encoding under the
/// active data key) and a decode that needs KMS answers 503 within the configured timeout.
#[test]
fn kms_outage_gives_503_within_the_timeout_while_cached_keys_work() {
    let mut moto = Moto::start();
    let key = moto.create_kms_key("kmscodec outage");
    let mut k = start_kmscodec(
        &config(
            &moto.url(),
            &format!(
                r#"
                [namespaces."*"]
                provider = "kms"
                key = "{key}"
                "#
            ),
        ),
        &aws_env(&moto),
    );
    let warm = encode(&k, "alpha", "warm");
    let cold = encode(&k, "beta", "cold");
    // A fresh process: nothing cached, no active data keys. Decoding `warm` unwraps its data key
    // through KMS and caches it; encoding mints alpha's active data key. Beta's stays cold.
    k.restart();
    decode_ok(&k, "alpha", &warm, "warm");
    let sealing = encode(&k, "alpha", "sealing");

    moto.guard.kill();

    decode_ok(&k, "alpha", &warm, "warm");
    decode_ok(&k, "alpha", &sealing, "sealing");
    let again = encode(&k, "alpha", "still sealing");
    decode_ok(&k, "alpha", &again, "still sealing");

    let started = Instant::now();
    let response = codec_post(&k, "decode", "beta", &cold);
    let elapsed = started.elapsed();
    eprintln!(
        "decode needing Decrypt with KMS down: {} after {elapsed:?}",
        response.status
    );
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(json_of(&response)["code"], "key_provider_unavailable");
    assert!(elapsed < TIMEOUT + SLACK, "503 took {elapsed:?}");

    // A namespace without a data key yet cannot mint one: 503 too, within the same bound.
    let started = Instant::now();
    let response = codec_post(&k, "encode", "gamma", &json_document("new"));
    let elapsed = started.elapsed();
    eprintln!(
        "encode needing GenerateDataKey with KMS down: {} after {elapsed:?}",
        response.status
    );
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(elapsed < TIMEOUT + SLACK, "503 took {elapsed:?}");

    // Still cached after the failures.
    decode_ok(&k, "alpha", &warm, "warm");
}

/// Endpoints that refuse connections, accept and never answer, or throttle: always
/// `Unavailable` (503) within the configured operation timeout, retries included.
#[tokio::test]
async fn unreachable_silent_and_throttling_endpoints_are_unavailable_within_the_timeout() {
    let wrapped = WrappedKey::new(vec![7; 100]);
    let kek = KekRef {
        key: "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000".into(),
        version: 0,
    };

    // Nothing listening: connection refused on every attempt.
    let refused = format!("http://127.0.0.1:{}", common::free_port());
    // Accepts (the kernel completes the handshake) and never answers.
    let silent_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent_listener.local_addr().unwrap());
    let throttling = ThrottlingKms::start();

    for (what, endpoint) in [
        ("refused", refused.as_str()),
        ("silent", silent.as_str()),
        ("throttling", throttling.url().as_str()),
    ] {
        let kms = provider(endpoint, TIMEOUT);
        let started = Instant::now();
        let error = kms
            .unwrap_data_key("ns", &kek, &wrapped)
            .await
            .map(|_| ())
            .unwrap_err();
        let unwrap_elapsed = started.elapsed();
        let started = Instant::now();
        let generate_error = kms
            .generate_data_key("ns", &kek.key)
            .await
            .map(|_| ())
            .unwrap_err();
        let generate_elapsed = started.elapsed();
        eprintln!(
            "{what}: Decrypt -> {error} after {unwrap_elapsed:?}; GenerateDataKey -> \
             {generate_error} after {generate_elapsed:?}"
        );
        for (error, elapsed) in [
            (&error, unwrap_elapsed),
            (&generate_error, generate_elapsed),
        ] {
            assert!(
                matches!(error, ProviderError::Unavailable(_)),
                "{what}: {error:?}"
            );
            assert!(
                elapsed < TIMEOUT + Duration::from_millis(300),
                "{what}: {elapsed:?}"
            );
        }
        if what == "silent" {
            // Only the operation timeout ends a call that gets no answer.
            assert!(
                unwrap_elapsed >= TIMEOUT - Duration::from_millis(50),
                "{unwrap_elapsed:?}"
            );
            assert!(error.to_string().contains("timed out"), "{error}");
        }
    }
    // The SDK retried the throttled calls (ThrottlingException is retryable): more requests than
    // calls, never more than max_attempts (3) per call, all within the timeout above.
    let requests = throttling.requests.load(Ordering::SeqCst);
    eprintln!("throttling endpoint saw {requests} requests for 2 calls");
    assert!(requests > 2, "no retries: {requests}");
    assert!(requests <= 6, "more than max_attempts: {requests}");

    // With one attempt the throttling answer itself surfaces (with retries, the operation
    // timeout may end the call first): Unavailable, naming the KMS error and request id.
    let kms = provider_with_attempts(&throttling.url(), TIMEOUT, 1);
    let started = Instant::now();
    let error = kms
        .unwrap_data_key("ns", &kek, &wrapped)
        .await
        .map(|_| ())
        .unwrap_err();
    eprintln!(
        "throttling, 1 attempt: {error} after {:?}",
        started.elapsed()
    );
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("ThrottlingException: Rate exceeded"),
        "{error}"
    );
    assert!(error.to_string().contains("request id"), "{error}");
    assert_eq!(throttling.requests.load(Ordering::SeqCst), requests + 1);
    drop(silent_listener);
}

/// Throttling through the binary: encode answers 503 with the provider error code.
#[test]
fn throttled_kms_gives_503_through_the_codec() {
    let throttling = ThrottlingKms::start();
    let k = start_kmscodec(
        &config(
            &throttling.url(),
            r#"
            [namespaces."*"]
            provider = "kms"
            key = "alias/kmscodec/{namespace}"
            "#,
        ),
        // No moto here: credentials and region only; nothing else is reachable.
        &[
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ],
    );
    let started = Instant::now();
    let response = codec_post(&k, "encode", "alpha", &json_document("x"));
    let elapsed = started.elapsed();
    eprintln!(
        "encode with KMS throttling: {} after {elapsed:?}",
        response.status
    );
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(elapsed < TIMEOUT.max(kmscodec::keyring::DEFAULT_ROTATION_WAIT) + SLACK);
    assert!(throttling.requests.load(Ordering::SeqCst) >= 1);
}

/// Rotation keeps old payloads decodable: `RotateKeyOnDemand` on the key (moto records the
/// rotation; real KMS adds key material and keeps the old), then the alias re-pointed to a new
/// key. After a restart (empty caches) the old payload still opens, through KMS, because its
/// header names the old key's ARN; new payloads name the new key.
#[test]
fn rotation_and_alias_repointing_keep_old_payloads_decodable() {
    let moto = Moto::start();
    let old_key = moto.create_kms_key("kmscodec rotation v1");
    create_alias(&moto, "alias/kmscodec/orders", &old_key);
    let mut k = start_kmscodec(
        &config(
            &moto.url(),
            r#"
            [namespaces."*"]
            provider = "kms"
            key = "alias/kmscodec/{namespace}"
            "#,
        ),
        &aws_env(&moto),
    );
    let before = encode(&k, "orders", "before rotation");
    assert_eq!(header_of(&before).0.key, old_key);

    moto.kms("RotateKeyOnDemand", &json!({"KeyId": old_key}));
    let rotations = moto.kms("ListKeyRotations", &json!({"KeyId": old_key}));
    assert_eq!(
        rotations["Rotations"][0]["RotationType"], "ON_DEMAND",
        "{rotations}"
    );
    k.restart();
    decode_ok(&k, "orders", &before, "before rotation");

    let new_key = moto.create_kms_key("kmscodec rotation v2");
    moto.kms(
        "UpdateAlias",
        &json!({"AliasName": "alias/kmscodec/orders", "TargetKeyId": new_key}),
    );
    k.restart();
    let after = encode(&k, "orders", "after re-pointing");
    assert_eq!(header_of(&after).0.key, new_key);
    decode_ok(&k, "orders", &before, "before rotation");
    decode_ok(&k, "orders", &after, "after re-pointing");
}

/// The sidecar's IAM policy grants exactly the KMS actions the serving code calls
/// (`CALLED_ACTIONS`, generated with the only methods that reach KMS while serving), only on key
/// ARNs, only with the namespace encryption context; the key policy template agrees.
#[test]
fn iam_policy_names_exactly_the_actions_the_code_calls() {
    let read = |path: &str| -> Value {
        let text = std::fs::read_to_string(common::repo_root().join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let as_list = |value: &Value| -> Vec<String> {
        match value {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("not a string or list: {other}"),
        }
    };
    let called: BTreeSet<String> = aws_kms::CALLED_ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    let context_key = format!("kms:EncryptionContext:{}", aws_kms::CONTEXT_NAMESPACE);

    let contextless: BTreeSet<String> = aws_kms::CONTEXTLESS_ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    let with_context: BTreeSet<String> = called.difference(&contextless).cloned().collect();
    let decrypt_only_tag = format!("aws:ResourceTag/{}", aws_kms::DECRYPT_ONLY_TAG);

    let iam = read("policies/aws/kmscodec-sidecar-iam.json");
    assert_eq!(iam["Version"], "2012-10-17");
    let mut granted = BTreeSet::new();
    for statement in iam["Statement"].as_array().unwrap() {
        let actions: BTreeSet<String> = as_list(&statement["Action"]).into_iter().collect();
        let condition = statement["Condition"].to_string();
        if statement["Effect"] == "Deny" {
            // Only the decrypt-only refusal: no new data keys under a tagged key.
            assert!(actions.is_subset(&called), "{statement}");
            assert!(condition.contains(&decrypt_only_tag), "{statement}");
            continue;
        }
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        for resource in as_list(&statement["Resource"]) {
            assert!(
                resource.starts_with("arn:")
                    && resource.contains(":kms:")
                    && resource.contains(":key/"),
                "resource must be a key ARN: {resource}"
            );
            assert!(!resource.ends_with('*'), "no wildcard keys: {resource}");
        }
        if actions.is_subset(&contextless) {
            // Calls that carry no encryption context (reading the key's tags).
        } else {
            assert!(condition.contains(&context_key), "{statement}");
            assert!(actions.is_disjoint(&contextless), "{statement}");
        }
        granted.extend(actions);
    }
    assert_eq!(granted, called);

    let key_policy = read("policies/aws/kms-key-policy.json");
    let statements = key_policy["Statement"].as_array().unwrap();
    let sidecar: Vec<&Value> = statements
        .iter()
        .filter(|s| s["Condition"].to_string().contains(&context_key))
        .collect();
    assert!(!sidecar.is_empty(), "no statement for the sidecar role");
    let mut sidecar_actions = BTreeSet::new();
    for statement in sidecar {
        assert_eq!(statement["Effect"], "Allow");
        sidecar_actions.extend(as_list(&statement["Action"]));
    }
    assert_eq!(sidecar_actions, with_context);
    // No statement grants the sidecar role anything else; together they grant exactly the
    // calls; a Deny only refuses data keys under decrypt-only keys.
    let mut sidecar_granted = BTreeSet::new();
    for statement in statements {
        let principal = statement["Principal"].to_string();
        if principal.contains("SIDECAR_ROLE") {
            let actions: BTreeSet<String> = as_list(&statement["Action"]).into_iter().collect();
            assert!(actions.is_subset(&called), "{statement}");
            if statement["Effect"] == "Deny" {
                assert!(
                    statement["Condition"]
                        .to_string()
                        .contains(&decrypt_only_tag),
                    "{statement}"
                );
            } else {
                sidecar_granted.extend(actions);
            }
        }
    }
    assert_eq!(sidecar_granted, called);
}

/// The administrators' IAM policy grants exactly what `kmscodec keys` calls
/// (`ADMIN_ACTIONS` and `DESCRIBE_ACTIONS`, each generated with the only methods that reach KMS
/// in its role), and the key policy template lets `ADMIN_ROLE` do all of it on the key.
#[test]
fn admin_policies_name_exactly_the_actions_key_administration_calls() {
    let read = |path: &str| -> Value {
        let text = std::fs::read_to_string(common::repo_root().join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let as_set = |value: &Value| -> BTreeSet<String> {
        match value {
            Value::String(one) => BTreeSet::from([one.clone()]),
            Value::Array(many) => many
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("not a string or list: {other}"),
        }
    };
    let expected: BTreeSet<String> = aws_kms::ADMIN_ACTIONS
        .iter()
        .chain(aws_kms::DESCRIBE_ACTIONS)
        .map(|a| a.to_string())
        .collect();
    let iam = read("policies/aws/kmscodec-admin-iam.json");
    let mut granted = BTreeSet::new();
    for statement in iam["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        let actions = as_set(&statement["Action"]);
        // No data path for administrators.
        for action in [
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:GenerateDataKey",
            "kms:ReEncryptFrom",
        ] {
            assert!(!actions.contains(action), "{statement}");
        }
        granted.extend(actions);
    }
    assert_eq!(granted, expected);

    let key_policy = read("policies/aws/kms-key-policy.json");
    let admin = key_policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Principal"].to_string().contains("ADMIN_ROLE"))
        .expect("an ADMIN_ROLE statement");
    let on_the_key = as_set(&admin["Action"]);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|action| *action != "kms:CreateKey" && !on_the_key.contains(*action))
        .collect();
    assert!(
        missing.is_empty(),
        "key policy lacks {missing:?} for ADMIN_ROLE"
    );
}

/// Without a region (none configured, none in the environment), the process starts but is not
/// ready, and says why; nothing is sent anywhere.
#[test]
fn a_missing_region_is_a_clear_readiness_error() {
    let config = r#"
        [providers.kms]
        kind = "aws"
        endpoint = "http://127.0.0.1:9"
        [namespaces."*"]
        provider = "kms"
        key = "alias/kmscodec/{namespace}"
    "#;
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let k = Kmscodec::spawn(Some(config), &[], &env);
    // The reason is for operators: the admin listener says it; the codec listener does not.
    let readyz = format!("{}/readyz", k.admin_url());
    let mut last = None;
    common::wait_for(
        "a /readyz answer naming the region",
        Duration::from_secs(20),
        || {
            let response = http_request("GET", &readyz, &[], b"").ok();
            let done = response
                .as_ref()
                .is_some_and(|r| r.status == 503 && r.text().contains("no region"));
            last = response.map(|r| (r.status, r.text()));
            done
        },
    );
    eprintln!("readiness without a region: {last:?}");
    let codec_readyz = http_request("GET", &format!("{}/readyz", k.url()), &[], b"").unwrap();
    assert_eq!(
        (codec_readyz.status, codec_readyz.text()),
        (503, "not ready\n".to_owned())
    );
    let response = codec_post(&k, "encode", "alpha", &json_document("x"));
    assert_eq!(response.status, 500, "{}", response.text());
}
