//! `kmscodec rewrap` as a real process on a local keyring: a large mixed document (payloads of
//! ours from two namespaces, plain payloads, another codec's `binary/encrypted` payload) after a
//! KEK rotation. Ours come back re-sealed under the current KEK version and decode to exactly
//! what they held; the others come back byte for byte; progress goes to stderr. A document with
//! one damaged payload of ours fails whole, with nothing on stdout.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use common::{b64, kmscodec_cmd, temp_dir, unb64};

/// Runs `kmscodec --config CONFIG ARGS` with `stdin`; (exit code, stdout, stderr).
fn kmscodec(dir: &Path, args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    let config = dir.join("kmscodec.toml");
    let mut cmd: Command = kmscodec_cmd(&dir.join("home"), &["--config", config.to_str().unwrap()]);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str], stdin: &[u8]) -> (String, String) {
    let (code, stdout, stderr) = kmscodec(dir, args, stdin);
    assert_eq!(code, Some(0), "kmscodec {args:?}: {stderr}");
    (stdout, stderr)
}

fn documents(texts: impl Iterator<Item = String>) -> Value {
    let payloads: Vec<Value> = texts
        .map(|text| {
            json!({
                "metadata": {"encoding": b64(b"json/plain")},
                "data": b64(format!("\"{text}\"").as_bytes()),
            })
        })
        .collect();
    json!({ "payloads": payloads })
}

fn key_id(payload: &Value) -> String {
    match &payload["metadata"]["encryption-key-id"] {
        Value::Null => String::new(),
        value => String::from_utf8(unb64(value)).unwrap(),
    }
}

#[test]
fn rewrap_reseals_ours_under_the_new_version_and_leaves_the_rest() {
    let dir = temp_dir("rewrap");
    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(
        dir.path().join("kmscodec.toml"),
        format!(
            "[providers.local]\nkind = \"local\"\npath = \"{}\"\n\
             [namespaces.\"*\"]\nprovider = \"local\"\nkey = \"kmscodec-{{namespace}}\"\n",
            keys.join("keyring.json").display()
        ),
    )
    .unwrap();
    ok(dir.path(), &["keys", "create", "-n", "alpha"], b"");
    ok(dir.path(), &["keys", "create", "-n", "beta"], b"");

    // 1,500 payloads of alpha and one of beta, sealed under v1.
    let plain_alpha = documents((0..1500).map(|i| format!("alpha {i}")));
    let (sealed_alpha, _) = ok(
        dir.path(),
        &["encode", "-n", "alpha"],
        plain_alpha.to_string().as_bytes(),
    );
    let sealed_alpha: Value = serde_json::from_str(&sealed_alpha).unwrap();
    let plain_beta = documents(std::iter::once("beta".to_owned()));
    let (sealed_beta, _) = ok(
        dir.path(),
        &["encode", "-n", "beta"],
        plain_beta.to_string().as_bytes(),
    );
    let sealed_beta: Value = serde_json::from_str(&sealed_beta).unwrap();
    assert_eq!(
        key_id(&sealed_alpha["payloads"][0]),
        "local:kmscodec-alpha:v1"
    );

    let (rotated, _) = ok(dir.path(), &["keys", "rotate", "-n", "alpha"], b"");
    assert!(
        rotated.contains("new version   v2") || rotated.contains("v2"),
        "{rotated}"
    );

    // The mixed document: ours, a plain payload, another codec's ciphertext, a null payload.
    let foreign = [
        json!({"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b"\"plain\"")}),
        json!({
            "metadata": {"encoding": b64(b"binary/encrypted"), "encryption-key-id": b64(b"other-codec")},
            "data": b64(b"someone else's ciphertext"),
        }),
        // `data` spelled out: the output always carries it (the same proto3 message).
        json!({"metadata": {"encoding": b64(b"binary/null")}, "data": ""}),
    ];
    let mut payloads: Vec<Value> = sealed_alpha["payloads"].as_array().unwrap().clone();
    payloads.insert(700, sealed_beta["payloads"][0].clone());
    for (index, payload) in foreign.iter().enumerate() {
        payloads.insert(index * 500, payload.clone());
    }
    let input = json!({ "payloads": payloads });

    let started = Instant::now();
    let (output, stderr) = ok(dir.path(), &["rewrap"], input.to_string().as_bytes());
    eprintln!(
        "rewrap of {} payloads: {:?}",
        payloads.len(),
        started.elapsed()
    );
    assert!(stderr.contains("rewrap: 1000/1504 payloads"), "{stderr}");
    assert!(
        stderr.contains(
            "rewrap: re-sealed 1501 of 1504 payloads (alpha: 1500, beta: 1); left 3 untouched"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("op=\"rewrap\""), "no audit line: {stderr}");
    let output: Value = serde_json::from_str(&output).unwrap();
    let out = output["payloads"].as_array().unwrap();
    assert_eq!(out.len(), payloads.len());
    for (index, (before, after)) in payloads.iter().zip(out).enumerate() {
        match key_id(before).as_str() {
            "local:kmscodec-alpha:v1" => {
                assert_eq!(
                    key_id(after),
                    "local:kmscodec-alpha:v2",
                    "payloads[{index}]"
                );
                assert_ne!(before["data"], after["data"], "payloads[{index}]");
            }
            "local:kmscodec-beta:v1" => {
                // Beta's KEK did not rotate: re-sealed under a new data key, same version.
                assert_eq!(key_id(after), "local:kmscodec-beta:v1");
                assert_ne!(before["data"], after["data"]);
            }
            _ => assert_eq!(
                before, after,
                "payloads[{index}] is not ours and must not change"
            ),
        }
    }

    // Everything decodes to what it held before: the originals' decode equals the rewrap's.
    let (decoded_before, _) = ok(dir.path(), &["decode"], input.to_string().as_bytes());
    let (decoded_after, _) = ok(dir.path(), &["decode"], output.to_string().as_bytes());
    let decoded_before: Value = serde_json::from_str(&decoded_before).unwrap();
    let decoded_after: Value = serde_json::from_str(&decoded_after).unwrap();
    assert_eq!(decoded_before, decoded_after);
    assert_eq!(
        unb64(&decoded_after["payloads"][1]["data"]),
        b"\"alpha 0\"",
        "{}",
        decoded_after["payloads"][1]
    );

    // One damaged payload of ours: the whole rewrap fails, nothing on stdout.
    let mut damaged = payloads.clone();
    let mut bytes = unb64(&damaged[1]["data"]);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    damaged[1]["data"] = Value::String(b64(&bytes));
    let (code, stdout, stderr) = kmscodec(
        dir.path(),
        &["rewrap"],
        json!({ "payloads": damaged }).to_string().as_bytes(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "partial output: {stdout}");
    assert!(
        stderr.contains("payloads[1]") && stderr.contains("undecryptable_payload"),
        "{stderr}"
    );
}
