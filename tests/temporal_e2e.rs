//! Temporal end to end: a real `temporal server start-dev`, a real Python SDK worker and client
//! whose PayloadCodec calls a real `kmscodec serve`, and the real Temporal CLI reading the
//! history with and without the codec endpoint.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use common::{Kmscodec, Temporal, b64, python_workflow, unb64};
use serde_json::Value;

/// Every object in `value` that looks like a Payload (has `metadata` and `data`).
fn payloads(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("metadata") && map.contains_key("data") {
                out.push(value.clone());
            }
            map.values().for_each(|v| payloads(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| payloads(v, out)),
        _ => {}
    }
}

#[test]
fn python_worker_payloads_are_sealed_in_history_and_the_cli_decodes_them() {
    let codec = Kmscodec::start();
    let temporal = Temporal::start(None);
    let secret = "Zanzibar-7781-plaintext";
    let workflow_id = "wf-e2e-sealed";

    let result = python_workflow(&temporal, Some(&codec.url()), workflow_id, secret)
        .unwrap_or_else(|output| {
            panic!(
                "workflow failed:\n{output}\nkmscodec log:\n{}",
                codec.guard.log_tail(40)
            )
        });
    assert_eq!(result, format!("Hello, {secret}!"));

    // Without a codec: every payload is binary/encrypted and no form of the plaintext appears.
    let raw = temporal.cli_ok(&[
        "workflow",
        "show",
        "-w",
        workflow_id,
        "-n",
        "default",
        "--output",
        "json",
    ]);
    assert!(!raw.contains(secret), "plaintext in raw history:\n{raw}");
    for needle in [
        b64(format!("\"{secret}\"").as_bytes()),
        b64(format!("\"Hello, {secret}!\"").as_bytes()),
    ] {
        assert!(!raw.contains(&needle), "base64 plaintext in raw history");
    }
    let history: Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("CLI JSON ({e}):\n{raw}"));
    let mut found = Vec::new();
    payloads(&history, &mut found);
    assert!(
        found.len() >= 3,
        "expected input, activity input/result and workflow result payloads:\n{raw}"
    );
    let encrypted = b64(b"binary/encrypted");
    for payload in &found {
        assert_eq!(
            payload["metadata"]["encoding"],
            Value::String(encrypted.clone()),
            "unsealed payload {payload}"
        );
    }

    // With the codec endpoint, under a {namespace} prefix as the CLI substitutes it: plaintext.
    let endpoint = format!("{}/{{namespace}}", codec.url());
    let decoded = temporal.cli_ok(&[
        "workflow",
        "show",
        "-w",
        workflow_id,
        "-n",
        "default",
        "--output",
        "json",
        "--codec-endpoint",
        &endpoint,
    ]);
    let history: Value = serde_json::from_str(&decoded).unwrap();
    let mut plain = Vec::new();
    payloads(&history, &mut plain);
    let texts: Vec<String> = plain
        .iter()
        .map(|payload| {
            assert_eq!(
                payload["metadata"]["encoding"],
                Value::String(b64(b"json/plain")),
                "{payload}"
            );
            let data = unb64(&payload["data"]);
            String::from_utf8(data).unwrap()
        })
        .collect();
    assert!(
        texts.contains(&format!("\"{secret}\"")),
        "input not decoded: {texts:?}"
    );
    assert!(
        texts.contains(&format!("\"Hello, {secret}!\"")),
        "result not decoded: {texts:?}"
    );
    // The human-readable output shows the plaintext too.
    let text = temporal.cli_ok(&[
        "workflow",
        "show",
        "-w",
        workflow_id,
        "-n",
        "default",
        "--codec-endpoint",
        &endpoint,
    ]);
    assert!(
        text.contains(secret),
        "text output lacks the plaintext:\n{text}"
    );

    // A second kmscodec process (another replica, same keyring) decodes them too.
    let replica_dir = codec.data_dir().to_path_buf();
    let mut replica = common::kmscodec_cmd(codec.dir(), &["decode", "--data-dir"]);
    replica.arg(&replica_dir);
    let sealed_payloads = serde_json::json!({"payloads": found});
    let output = pipe(replica, &sealed_payloads.to_string());
    assert!(
        output.contains(&b64(format!("\"{secret}\"").as_bytes())),
        "CLI decode did not restore the input:\n{output}"
    );
}

fn pipe(mut command: std::process::Command, input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kmscodec decode failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
