//! Temporal External Storage end to end (issue 19), against real servers only: moto's S3 with a
//! bucket, `temporal server start-dev` with its Web UI, a Python SDK worker and client whose
//! DataConverter seals through kmscodec and offloads through the SDK's S3 driver (threshold
//! 1 KiB), the Temporal CLI, and headless Chromium.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{
    HttpResponse, Kmscodec, Moto, Temporal, b64, hermetic_command, http_request, json_of, run,
    temp_dir, tool, tools_dir, unb64,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BUCKET: &str = "temporal-payloads";
const MARKER: &str = "EXTSTORE-PLAINTEXT-MARKER-5521";
const SIZE: usize = 300 * 1024;
const REFERENCE_TYPE: &str = "temporal.api.sdk.v1.ExternalStorageReference";

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every object in `value` that looks like a Payload (has `metadata`).
fn payloads(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("metadata")
                && (map.contains_key("data") || map.contains_key("externalPayloads"))
            {
                out.push(value.clone());
            }
            map.values().for_each(|v| payloads(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| payloads(v, out)),
        _ => {}
    }
}

fn metadata(payload: &Value, key: &str) -> Option<String> {
    payload["metadata"][key]
        .as_str()
        .and_then(|v| base64_simd::STANDARD.decode_to_vec(v).ok())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn is_reference(payload: &Value) -> bool {
    metadata(payload, "encoding").as_deref() == Some("json/protobuf")
        && metadata(payload, "messageType").as_deref() == Some(REFERENCE_TYPE)
}

/// The kmscodec configuration: a local keyring, the S3 driver at moto, the UI listener.
fn config(dir: &Path, moto: &Moto, ui_port: u16, ui_origin: &str, offload: bool) -> String {
    let keyring = common::local_keyring_toml(&dir.join("k.json"));
    let audit = dir.join(if offload {
        "audit-offload.log"
    } else {
        "audit.log"
    });
    let offload = if offload {
        "[external_storage.namespaces.\"*\"]\noffload_threshold = \"1KiB\"\noffload_driver = \"aws.s3driver\"\n"
    } else {
        ""
    };
    format!(
        r#"
{keyring}
[ui]
listen = "127.0.0.1:{ui_port}"
allow_unauthenticated = true

[ui.cors]
allowed_origins = [{ui_origin:?}]

[audit]
output = "file"
path = {audit:?}

[[external_storage.drivers]]
name = "aws.s3driver"
kind = "s3"
region = "us-east-1"
endpoint = "{url}"
force_path_style = true
buckets = ["{BUCKET}", "second-bucket"]
max_object_bytes = "50MiB"

# The same bucket through a driver whose bound is 1 KiB: every object is too large for it.
[[external_storage.drivers]]
name = "small.s3driver"
kind = "s3"
region = "us-east-1"
endpoint = "{url}"
force_path_style = true
buckets = ["{BUCKET}"]
max_object_bytes = "1KiB"

# Namespace "restricted" may read only the second bucket.
[external_storage.namespaces.restricted]
buckets = ["second-bucket"]

{offload}
"#,
        url = moto.url()
    )
}

/// Static credentials for moto (the endpoint comes from the driver's configuration).
fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    moto.aws_env()
        .into_iter()
        .filter(|(key, _)| *key != "AWS_ENDPOINT_URL")
        .collect()
}

fn python(moto: &Moto, home: &Path, args: &[&str], timeout: Duration) -> Result<Value, String> {
    let mut cmd = hermetic_command(tool("python"), home);
    cmd.arg(common::repo_root().join("tests/e2e/external_storage.py"))
        .args(["--s3-endpoint", &moto.url(), "--bucket", BUCKET])
        .args(args);
    for (key, value) in moto.aws_env() {
        if key != "AWS_ENDPOINT_URL" {
            cmd.env(key, value);
        }
    }
    let out = run(cmd, timeout);
    if !out.status.success() {
        return Err(out.both());
    }
    out.stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no JSON line\n{}", out.both()))
}

fn post(url: &str, query: &str, body: &Value) -> HttpResponse {
    http_request(
        "POST",
        &format!("{url}{query}"),
        &[
            ("Content-Type", "application/json"),
            ("X-Namespace", "default"),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("POST {url}{query}: {e}"))
}

fn s3_object(moto: &Moto, key: &str) -> Vec<u8> {
    // moto checks that a request is signed, not the signature: the credential scope suffices.
    let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
                SignedHeaders=host, Signature=0";
    let response = http_request(
        "GET",
        &format!("{}/{BUCKET}/{key}", moto.url()),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap_or_else(|e| panic!("GET object {key}: {e}"));
    assert_eq!(
        response.status,
        200,
        "GET object {key}: {}",
        response.text()
    );
    response.body
}

/// The decoded value of a `json/plain` payload, as the JSON string it holds.
fn plain_value(payload: &Value) -> String {
    assert_eq!(
        metadata(payload, "encoding").as_deref(),
        Some("json/plain"),
        "{payload}"
    );
    let data = unb64(&payload["data"]);
    serde_json::from_slice::<String>(&data).unwrap()
}

fn marker_forms() -> Vec<String> {
    // The marker at each of the three base64 alignments, so no encoding of it hides.
    let mut forms = vec![MARKER.to_string()];
    for pad in ["", "a", "ab"] {
        let encoded = b64(format!("{pad}{MARKER}").as_bytes());
        forms.push(encoded[4..encoded.len() - 8].to_string());
    }
    forms
}

#[test]
fn python_worker_offloads_sealed_payloads_and_kmscodec_resolves_them() {
    let dir = temp_dir("extstore");
    let moto = Moto::start();
    let ui_codec_port = common::free_port();
    let ui_codec_url = format!("http://127.0.0.1:{ui_codec_port}");
    let temporal = Temporal::start(Some(&ui_codec_url));
    let ui_origin = temporal.ui_url();
    let env = aws_env(&moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut codec = Kmscodec::start_full(
        Some(&config(dir.path(), &moto, ui_codec_port, &ui_origin, false)),
        &[],
        &env,
    );
    codec
        .guard
        .wait_ready("kmscodec ui listener", common::READY_TIMEOUT, || {
            common::port_open(ui_codec_port)
        });
    let home = dir.path().join("home");
    python(&moto, &home, &["create-bucket"], Duration::from_secs(60)).unwrap();

    // The Python worker: activity returns ~300 KiB, the workflow returns it too.
    let workflow_id = "wf-extstore-big";
    let result = python(
        &moto,
        &home,
        &[
            "--address",
            &temporal.address,
            "--codec-endpoint",
            &codec.url(),
            "--threshold",
            "1024",
            "--task-queue",
            "tq-extstore",
            "--workflow-id",
            workflow_id,
            "big-result",
            "--size",
            &SIZE.to_string(),
        ],
        Duration::from_secs(150),
    )
    .unwrap_or_else(|out| {
        panic!(
            "workflow failed:\n{out}\nkmscodec:\n{}",
            codec.guard.log_tail(30)
        )
    });
    assert_eq!(result["length"], SIZE);
    let expected_hash = result["sha256"].as_str().unwrap().to_string();

    // Raw history: references, no plaintext.
    let raw = temporal.cli_ok(&["workflow", "show", "-w", workflow_id, "--output", "json"]);
    for form in marker_forms() {
        assert!(
            !raw.contains(&form),
            "plaintext marker {form:?} in raw history"
        );
    }
    let history: Value = serde_json::from_str(&raw).unwrap();
    let mut found = Vec::new();
    payloads(&history, &mut found);
    let references: Vec<Value> = found.iter().filter(|p| is_reference(p)).cloned().collect();
    assert!(
        references.len() >= 2,
        "expected the activity result and the workflow result as references:\n{raw}"
    );

    // Each object: SHA-256 equals the claim; it is a kmscodec-sealed payload; no plaintext.
    for reference in &references {
        let data = unb64(&reference["data"]);
        let parsed: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(parsed["driverName"], "aws.s3driver");
        let claim = &parsed["claimData"];
        assert_eq!(claim["bucket"], BUCKET);
        assert_eq!(claim["hash_algorithm"], "sha256");
        let key = claim["key"].as_str().unwrap();
        assert!(key.starts_with("v0/ns/default/"), "{key}");
        let object = s3_object(&moto, key);
        assert_eq!(hex_sha256(&object), claim["hash_value"].as_str().unwrap());
        let size = reference["externalPayloads"][0]["sizeBytes"]
            .as_str()
            .map(|s| s.parse::<usize>().unwrap())
            .or_else(|| {
                reference["externalPayloads"][0]["sizeBytes"]
                    .as_u64()
                    .map(|n| n as usize)
            })
            .unwrap();
        assert_eq!(size, object.len());
        eprintln!("figures: object {key}: {size} bytes for a {SIZE}-character value");
        let text = String::from_utf8_lossy(&object);
        assert!(
            text.contains("binary/encrypted"),
            "object is not a sealed payload"
        );
        assert!(
            text.contains("encryption-key-id"),
            "object is not a kmscodec payload"
        );
        for form in marker_forms() {
            assert!(
                !text.contains(&form),
                "plaintext marker in the stored object {key}"
            );
        }
    }

    // preserveStorageRefs=true (any case): references come back unchanged.
    let body = json!({"payloads": references});
    for query in ["?preserveStorageRefs=true", "?preserveStorageRefs=TRUE"] {
        let response = post(&ui_codec_url, &format!("/decode{query}"), &body);
        assert_eq!(response.status, 200, "{}", response.text());
        let answer = json_of(&response);
        for (sent, back) in references
            .iter()
            .zip(answer["payloads"].as_array().unwrap())
        {
            assert_eq!(back["metadata"], sent["metadata"]);
            assert_eq!(unb64(&back["data"]), unb64(&sent["data"]));
            assert_eq!(
                back["externalPayloads"][0]["sizeBytes"],
                json!(
                    sent["externalPayloads"][0]["sizeBytes"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| sent["externalPayloads"][0]["sizeBytes"].to_string())
                )
            );
        }
    }

    // /decode without it (and the CLI's snake_case dialect) resolves; /download too.
    let snake = json!({"payloads": references.iter().map(|r| json!({
        "metadata": r["metadata"],
        "data": r["data"],
        "external_payloads": [{"size_bytes": r["externalPayloads"][0]["sizeBytes"].as_str().unwrap().parse::<u64>().unwrap()}],
    })).collect::<Vec<_>>()});
    for (path, body) in [
        ("/decode", &body),
        ("/decode", &snake),
        ("/download", &body),
    ] {
        let response = post(&codec.url(), path, body);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let answer = json_of(&response);
        for payload in answer["payloads"].as_array().unwrap() {
            let value = plain_value(payload);
            assert_eq!(value.len(), SIZE);
            assert!(value.starts_with(MARKER));
            assert_eq!(hex_sha256(value.as_bytes()), expected_hash);
        }
    }

    // /download with a non-reference: 400 with the protocol's message.
    let plain = common::json_document("not a reference");
    let response = post(&codec.url(), "/download", &plain);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response
            .text()
            .contains("all payloads must be storage references")
    );

    // A claim whose hash does not match the object: refused, nothing decoded.
    let tamper = |field: &str, value: &str| {
        let mut reference = references[0].clone();
        let mut parsed: Value = serde_json::from_slice(&unb64(&reference["data"])).unwrap();
        parsed["claimData"][field] = json!(value);
        reference["data"] = json!(b64(parsed.to_string().as_bytes()));
        json!({"payloads": [reference]})
    };
    let response = post(
        &codec.url(),
        "/decode",
        &tamper("hash_value", &"0".repeat(64)),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("storage_hash_mismatch"),
        "{}",
        response.text()
    );
    assert!(!response.text().contains(MARKER));

    // A bucket outside the allowlist: 403, and moto never sees a request for it.
    let response = post(
        &codec.url(),
        "/download",
        &tamper("bucket", "someone-elses-bucket"),
    );
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(response.text().contains("storage_bucket_not_allowed"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !moto.guard.log().contains("someone-elses-bucket"),
        "moto saw a request for the refused bucket:\n{}",
        moto.guard.log_tail(20)
    );

    // The namespace's own rules: "restricted" may not read this bucket (403, no call).
    let response = http_request(
        "POST",
        &format!("{}/decode", codec.url()),
        &[
            ("Content-Type", "application/json"),
            ("X-Namespace", "restricted"),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(response.text().contains("storage_bucket_not_allowed"));

    // An object over the driver's max_object_bytes: 413, refused on its declared size.
    let response = post(
        &codec.url(),
        "/decode",
        &tamper_driver(&references[0], "small.s3driver"),
    );
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(
        response.text().contains("storage_object_too_large"),
        "{}",
        response.text()
    );

    // A driver this server does not have: 400, no call.
    let response = post(
        &codec.url(),
        "/decode",
        &tamper_driver(&references[0], "gcp.gcsdriver"),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("unknown_storage_driver"),
        "{}",
        response.text()
    );

    // The audit log names the object keys, never the content.
    let audit = common::wait_for_audit(&dir.path().join("audit.log"), |text| {
        text.contains("\"event\":\"storage\"") && text.contains("bucket_refused")
    });
    let key = serde_json::from_slice::<Value>(&unb64(&references[0]["data"])).unwrap()["claimData"]
        ["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(audit.contains(&key), "audit lacks the object key:\n{audit}");
    assert!(audit.contains("\"result\":\"hash_mismatch\""), "{audit}");
    assert!(audit.contains("\"op\":\"download\""), "{audit}");
    for form in marker_forms() {
        assert!(!audit.contains(&form), "plaintext in the audit log");
    }

    // Metrics: storage calls by driver, op and result; /download as its own op.
    let metrics = common::http_request("GET", &format!("{}/metrics", codec.admin_url()), &[], b"")
        .unwrap()
        .text();
    for series in [
        "kmscodec_storage_requests_total{driver=\"aws.s3driver\",op=\"get\",result=\"ok\"}",
        "kmscodec_storage_requests_total{driver=\"aws.s3driver\",op=\"get\",result=\"bucket_refused\"}",
        "kmscodec_storage_requests_total{driver=\"aws.s3driver\",op=\"get\",result=\"hash_mismatch\"}",
        "kmscodec_storage_bytes_total{driver=\"aws.s3driver\",op=\"get\"}",
        "kmscodec_storage_request_duration_seconds_count{driver=\"aws.s3driver\",op=\"get\"}",
        "kmscodec_requests_total{op=\"download\",result=\"ok\",transport=\"http\"}",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }

    // The CLI: `workflow show --codec-endpoint` prints the decoded value.
    let shown = temporal.cli_ok(&[
        "workflow",
        "show",
        "-w",
        workflow_id,
        "--output",
        "json",
        "--codec-endpoint",
        &codec.url(),
    ]);
    let history: Value = serde_json::from_str(&shown).unwrap();
    let mut decoded = Vec::new();
    payloads(&history, &mut decoded);
    assert!(
        decoded.iter().all(|p| !is_reference(p)),
        "the CLI still shows a reference"
    );
    let big: Vec<String> = decoded
        .iter()
        .filter(|p| metadata(p, "encoding").as_deref() == Some("json/plain"))
        .map(plain_value_any)
        .filter(|v| v.starts_with(&format!("\"{MARKER}")))
        .collect();
    assert!(
        big.len() >= 2,
        "the CLI did not print the decoded ~300 KiB values"
    );
    for value in big {
        let value: String = serde_json::from_str(&value).unwrap();
        assert_eq!(hex_sha256(value.as_bytes()), expected_hash);
    }

    // The Web UI: shows the reference with its size; the download button saves the value.
    let page = browse(&temporal, &ui_codec_url, workflow_id, dir.path());
    assert!(
        page["done"].as_bool().unwrap_or(false),
        "UI did not settle: {page}"
    );
    let saved = page["download"]["content"].as_str().unwrap_or_default();
    let saved: Value = serde_json::from_str(saved)
        .unwrap_or_else(|e| panic!("the saved download is not JSON ({e}): {page}"));
    // The UI saves the decoded value (the payload's data, as JSON).
    let value = match &saved {
        Value::String(text) => text.clone(),
        other => plain_value(other),
    };
    assert!(
        value.starts_with(MARKER),
        "{}",
        &value[..value.len().min(80)]
    );
    assert_eq!(hex_sha256(value.as_bytes()), expected_hash);
    let calls = page["codecCalls"].as_array().unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c["url"].as_str().unwrap_or("").contains("/download") && c["status"] == 200),
        "no successful /download call: {calls:?}"
    );
    let size_text = page["sizeText"].as_str().unwrap_or_default();
    eprintln!(
        "figures: {} references, UI size label {size_text:?}, saved file {:?}",
        references.len(),
        page["download"]["filename"]
    );
    assert!(
        !size_text.is_empty() && !size_text.starts_with('0'),
        "the UI did not show a non-zero size: {size_text:?}"
    );
}

/// `{"payloads": [reference]}` with its driver name replaced.
fn tamper_driver(reference: &Value, driver: &str) -> Value {
    let mut reference = reference.clone();
    let mut parsed: Value = serde_json::from_slice(&unb64(&reference["data"])).unwrap();
    parsed["driverName"] = json!(driver);
    reference["data"] = json!(b64(parsed.to_string().as_bytes()));
    json!({"payloads": [reference]})
}

/// The decoded text of a `json/plain` payload (the JSON as written).
fn plain_value_any(payload: &Value) -> String {
    String::from_utf8(unb64(&payload["data"])).unwrap()
}

/// Opens the workflow in the Web UI with headless Chromium and clicks the first payload download
/// button (tests/e2e/ui_download.cjs).
fn browse(temporal: &Temporal, codec_url: &str, workflow_id: &str, dir: &Path) -> Value {
    let options = json!({
        "chromium": tool("chromium"),
        "url": format!("{}/namespaces/default/workflows/{workflow_id}", temporal.ui_url()),
        "codecEndpoint": codec_url,
        "downloadDir": dir.join("downloads"),
        "timeoutMs": 60_000,
    });
    let mut cmd = hermetic_command(tool("node"), &dir.join("browser-home"));
    cmd.arg(common::repo_root().join("tests/e2e/ui_download.cjs"))
        .arg(options.to_string())
        .env("NODE_PATH", tools_dir().join("node").join("node_modules"));
    let out = run(cmd, Duration::from_secs(150));
    assert!(
        out.status.success(),
        "ui_download.cjs failed\n{}",
        out.both()
    );
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from ui_download.cjs\n{}", out.both()));
    serde_json::from_str(line).unwrap()
}

#[test]
fn cli_start_with_offload_reaches_the_python_worker() {
    let dir = temp_dir("extstore-cli");
    let moto = Moto::start();
    let temporal = Temporal::start(None);
    let ui_port = common::free_port();
    let env = aws_env(&moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let codec = Kmscodec::start_full(
        Some(&config(
            dir.path(),
            &moto,
            ui_port,
            "http://127.0.0.1:1",
            true,
        )),
        &[],
        &env,
    );
    let home = dir.path().join("home");
    python(&moto, &home, &["create-bucket"], Duration::from_secs(60)).unwrap();

    let value = format!("{MARKER}{}", "z".repeat(SIZE - MARKER.len()));
    let input = dir.path().join("big.json");
    fs::write(&input, serde_json::to_string(&value).unwrap()).unwrap();
    let workflow_id = "wf-extstore-cli-start";
    temporal.cli_ok(&[
        "workflow",
        "start",
        "--type",
        "BigInputWorkflow",
        "--task-queue",
        "tq-extstore-cli",
        "-w",
        workflow_id,
        "--input-file",
        input.to_str().unwrap(),
        "--codec-endpoint",
        &codec.url(),
    ]);
    // History holds a reference to what kmscodec stored, and no plaintext.
    let raw = temporal.cli_ok(&["workflow", "show", "-w", workflow_id, "--output", "json"]);
    assert!(!raw.contains(MARKER));
    let history: Value = serde_json::from_str(&raw).unwrap();
    let mut found = Vec::new();
    payloads(&history, &mut found);
    let reference = found
        .iter()
        .find(|p| is_reference(p))
        .unwrap_or_else(|| panic!("the input is not a reference:\n{raw}"));
    let claim: Value = serde_json::from_slice(&unb64(&reference["data"])).unwrap();
    let key = claim["claimData"]["key"].as_str().unwrap();
    assert!(key.starts_with("v0/ns/default/d/sha256/"), "{key}");
    let object = s3_object(&moto, key);
    assert_eq!(
        hex_sha256(&object),
        claim["claimData"]["hash_value"].as_str().unwrap()
    );
    assert!(!String::from_utf8_lossy(&object).contains(MARKER));

    // The Python worker (the SDK's S3 driver, then kmscodec's /decode) receives the value.
    let result = python(
        &moto,
        &home,
        &[
            "--address",
            &temporal.address,
            "--codec-endpoint",
            &codec.url(),
            "--task-queue",
            "tq-extstore-cli",
            "--workflow-id",
            workflow_id,
            "big-input",
        ],
        Duration::from_secs(150),
    )
    .unwrap_or_else(|out| {
        panic!(
            "worker failed:\n{out}\nkmscodec:\n{}",
            codec.guard.log_tail(30)
        )
    });
    assert_eq!(result["length"], SIZE, "{result}");
    assert_eq!(result["sha256"], hex_sha256(value.as_bytes()), "{result}");
    assert_eq!(result["starts_with_marker"], true);
}
