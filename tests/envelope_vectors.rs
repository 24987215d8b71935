//! Frozen test vectors for the envelope format (`tests/vectors/envelope-v1.json`).
//!
//! Sealing the recorded inputs must give exactly the recorded bytes, and opening them must give
//! the recorded plaintext: any change to the layout, the key derivation or the cipher fails here.
//! The negative vectors must never open. Regenerating the file is a format change: bump
//! `FORMAT_VERSION` instead (`docs/format.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use kmscodec::envelope::{self, EnvelopeError, HeaderTemplate};
use kmscodec::secret::{DataKey, KekRef, ProviderKind, WrappedKey};
use serde_json::Value;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/envelope-v1.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn seal(vector: &Value) -> Vec<u8> {
    let key = DataKey::from_slice(&hex(vector["data_key"].as_str().unwrap())).unwrap();
    let provider = ProviderKind::from_code(vector["provider"].as_u64().unwrap() as u8).unwrap();
    let kek = KekRef {
        key: vector["kek_key"].as_str().unwrap().to_owned(),
        version: vector["kek_version"].as_u64().unwrap() as u32,
    };
    let wrapped = WrappedKey::new(hex(vector["wrapped_key"].as_str().unwrap()));
    let template = HeaderTemplate::new(
        vector["namespace"].as_str().unwrap(),
        provider,
        &kek,
        &wrapped,
    )
    .unwrap();
    let message_id: [u8; 32] = hex(vector["message_id"].as_str().unwrap())
        .try_into()
        .unwrap();
    let plaintext = hex(vector["plaintext"].as_str().unwrap());
    let mut out = Vec::new();
    envelope::seal(&key, &template, &message_id, &mut out, |buffer| {
        buffer.extend_from_slice(&plaintext)
    })
    .unwrap();
    out
}

#[test]
fn sealing_the_recorded_inputs_gives_the_recorded_bytes() {
    let vectors = vectors();
    let cases = vectors["valid"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for vector in cases {
        let name = vector["name"].as_str().unwrap();
        let expected = hex(vector["sealed"].as_str().unwrap());
        assert_eq!(
            seal(vector),
            expected,
            "{name}: sealed bytes changed: the format is frozen"
        );

        let (header, body) = envelope::parse(&expected).unwrap();
        assert_eq!(
            header.alleged_namespace,
            vector["namespace"].as_str().unwrap(),
            "{name}"
        );
        let key = DataKey::from_slice(&hex(vector["data_key"].as_str().unwrap())).unwrap();
        let mut plaintext = Vec::new();
        envelope::open(&key, &header, body, &mut plaintext).unwrap();
        assert_eq!(
            plaintext,
            hex(vector["plaintext"].as_str().unwrap()),
            "{name}"
        );
    }
}

#[test]
fn negative_vectors_never_open() {
    let vectors = vectors();
    for vector in vectors["invalid"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let key = DataKey::from_slice(&hex(vector["data_key"].as_str().unwrap())).unwrap();
        let sealed = hex(vector["sealed"].as_str().unwrap());
        let result = envelope::parse(&sealed)
            .and_then(|(header, body)| envelope::open(&key, &header, body, &mut Vec::new()));
        let expected = vector["error"].as_str().unwrap();
        let error = result.expect_err(name);
        let matches = match expected {
            "unopenable" => error == EnvelopeError::Unopenable,
            "malformed" => matches!(error, EnvelopeError::Malformed(_)),
            "version" => matches!(error, EnvelopeError::UnsupportedVersion(_)),
            other => panic!("unknown expected error {other}"),
        };
        assert!(matches, "{name}: expected {expected}, got {error:?}");
    }
}

#[test]
fn an_independent_implementation_agrees_with_every_vector() {
    // tests/vectors/independent_check.py re-derives and re-seals each vector with pyca/cryptography,
    // written from docs/format.md alone.
    let mut command = std::process::Command::new(common::tool("python"));
    command.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/independent_check.py"
    ));
    let output = common::run(command, std::time::Duration::from_secs(60));
    assert!(output.status.success(), "{}", output.both());
    assert_eq!(
        output
            .stdout
            .lines()
            .filter(|line| line.starts_with("ok: "))
            .count(),
        3,
        "{}",
        output.both()
    );
}

/// Writes the vectors file. Run once when the format version changes:
/// `cargo test --test envelope_vectors -- --ignored write_vectors`.
#[test]
#[ignore = "generator, not a check"]
fn write_vectors() {
    use serde_json::json;
    let to_hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let payload = kmscodec::payload::Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())]
            .into_iter()
            .collect(),
        data: b"\"Hello, World!\"".to_vec(),
        external_payloads: vec![],
    };
    let inputs = [
        (
            "empty plaintext, local-file",
            "default",
            1u8,
            "dev",
            1u32,
            vec![0x11; 60],
            vec![],
            0x01u8,
        ),
        (
            "serialized json/plain Payload, vault",
            "payments.prod",
            2,
            "kmscodec-payments.prod",
            3,
            b"vault:v3:c29tZSB3cmFwcGVkIGtleSBieXRlcyBoZXJlIGZvciB0ZXN0aW5n".to_vec(),
            prost::Message::encode_to_vec(&payload),
            0x02,
        ),
        (
            "binary plaintext, aws",
            "orders",
            3,
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            0,
            (0..=255u8).cycle().take(184).collect(),
            (0..=255u8).collect(),
            0x03,
        ),
    ];
    let mut valid = Vec::new();
    for (name, namespace, provider, kek_key, kek_version, wrapped, plaintext, seed) in inputs {
        let mut vector = json!({
            "name": name,
            "data_key": to_hex(&[seed; 32]),
            "namespace": namespace,
            "provider": provider,
            "kek_key": kek_key,
            "kek_version": kek_version,
            "wrapped_key": to_hex(&wrapped),
            "message_id": to_hex(&[seed.wrapping_add(0x40); 32]),
            "plaintext": to_hex(&plaintext),
        });
        vector["sealed"] = json!(to_hex(&seal(&vector)));
        valid.push(vector);
    }
    let base = &valid[1];
    let sealed = hex(base["sealed"].as_str().unwrap());
    let mutate = |name: &str, error: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = sealed.clone();
        f(&mut bytes);
        json!({"name": name, "data_key": base["data_key"], "sealed": to_hex(&bytes), "error": error})
    };
    let n = sealed.len();
    let invalid = vec![
        mutate("flipped ciphertext byte", "unopenable", &|b| b[n - 20] ^= 1),
        mutate("flipped tag byte", "unopenable", &|b| b[n - 1] ^= 0x80),
        mutate("flipped commitment byte", "unopenable", &|b| {
            let at = n - 16 - prost::Message::encoded_len(&payload) - 1;
            b[at] ^= 1
        }),
        mutate("namespace renamed in header", "unopenable", &|b| {
            b[9] = b'q'
        }),
        mutate("version 2", "version", &|b| b[4] = 2),
        mutate("truncated inside the header", "malformed", &|b| {
            b.truncate(40)
        }),
        json!({"name": "wrong data key", "data_key": to_hex(&[0x7f; 32]), "sealed": base["sealed"], "error": "unopenable"}),
    ];
    let document = json!({
        "format": "kmscodec envelope v1 test vectors; see docs/format.md",
        "valid": valid,
        "invalid": invalid,
    });
    std::fs::write(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/envelope-v1.json"
        ),
        serde_json::to_string_pretty(&document).unwrap() + "\n",
    )
    .unwrap();
}
