//! Frozen test vectors for the envelope formats (`tests/vectors/envelope-v1.json`,
//! `envelope-v2.json` and `envelope-v3.json`).
//!
//! Sealing the recorded inputs must give exactly the recorded bytes, and opening them must give
//! the recorded plaintext: any change to the layout, the key derivation or the cipher fails here.
//! The negative vectors must never open. A valid vector never changes: a new layout or algorithm
//! is a new format version with its own file (`docs/format.md`).

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use kmscodec::compression::Algorithm;
use kmscodec::envelope::{self, EnvelopeError, EnvelopeKey, Format, HeaderTemplate};
use kmscodec::secret::{DataKey, KekRef, ProviderKind, WrappedKey};
use serde_json::Value;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

const FORMATS: [Format; 3] = [Format::V1, Format::V2, Format::V3];

fn path(format: Format) -> String {
    format!(
        "{}/tests/vectors/envelope-v{}.json",
        env!("CARGO_MANIFEST_DIR"),
        format.version()
    )
}

fn vectors(format: Format) -> Value {
    let text = std::fs::read_to_string(path(format)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The compression a vector records (format 3; none before).
fn compression(vector: &Value) -> Algorithm {
    vector["compression"]
        .as_u64()
        .map_or(Algorithm::None, |code| {
            Algorithm::from_code(code as u8).unwrap()
        })
}

/// The per-payload random field's name in a vector of `format`.
fn random_field(format: Format) -> &'static str {
    match format {
        Format::V1 => "message_id",
        Format::V2 | Format::V3 => "nonce",
    }
}

fn key(vector: &Value) -> EnvelopeKey {
    EnvelopeKey::new(DataKey::from_slice(&hex(vector["data_key"].as_str().unwrap())).unwrap())
}

fn seal(format: Format, vector: &Value) -> Vec<u8> {
    let provider = ProviderKind::from_code(vector["provider"].as_u64().unwrap() as u8).unwrap();
    let kek = KekRef {
        key: vector["kek_key"].as_str().unwrap().to_owned(),
        version: vector["kek_version"].as_u64().unwrap() as u32,
    };
    let wrapped = WrappedKey::new(hex(vector["wrapped_key"].as_str().unwrap()));
    let template = HeaderTemplate::new(
        format,
        vector["namespace"].as_str().unwrap(),
        provider,
        &kek,
        &wrapped,
    )
    .unwrap();
    let random = hex(vector[random_field(format)].as_str().unwrap());
    let plaintext = hex(vector["plaintext"].as_str().unwrap());
    let mut out = Vec::new();
    envelope::seal_with_random_and_compression(
        &key(vector),
        &template,
        &random,
        compression(vector),
        &mut out,
        |buffer| buffer.extend_from_slice(&plaintext),
    )
    .unwrap();
    out
}

#[test]
fn sealing_the_recorded_inputs_gives_the_recorded_bytes() {
    for format in FORMATS {
        sealing_gives_the_recorded_bytes(format);
    }
}

fn sealing_gives_the_recorded_bytes(format: Format) {
    let vectors = vectors(format);
    let cases = vectors["valid"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for vector in cases {
        let name = vector["name"].as_str().unwrap();
        let expected = hex(vector["sealed"].as_str().unwrap());
        assert_eq!(
            seal(format, vector),
            expected,
            "{name}: sealed bytes changed: format {} is frozen",
            format.version()
        );

        let (header, body) = envelope::parse(&expected).unwrap();
        assert_eq!(header.format, format, "{name}");
        assert_eq!(
            header.alleged_namespace,
            vector["namespace"].as_str().unwrap(),
            "{name}"
        );
        let mut plaintext = Vec::new();
        envelope::open(&key(vector), &header, body, &mut plaintext).unwrap();
        assert_eq!(
            plaintext,
            hex(vector["plaintext"].as_str().unwrap()),
            "{name}"
        );
        assert_eq!(header.alleged_compression, compression(vector), "{name}");
        if let Some(decompressed) = vector["decompressed"].as_str() {
            assert_eq!(
                kmscodec::compression::decompress(&plaintext, 1 << 20).unwrap(),
                hex(decompressed),
                "{name}"
            );
        }
    }
}

#[test]
fn negative_vectors_never_open() {
    for format in FORMATS {
        let vectors = vectors(format);
        let invalid = vectors["invalid"].as_array().unwrap();
        assert!(invalid.len() >= 7);
        for vector in invalid {
            never_opens(vector);
        }
    }
}

fn never_opens(vector: &Value) {
    let name = vector["name"].as_str().unwrap();
    let key = key(vector);
    let sealed = hex(vector["sealed"].as_str().unwrap());
    let result = envelope::parse(&sealed)
        .and_then(|(header, body)| envelope::open(&key, &header, body, &mut Vec::new()));
    let expected = vector["error"].as_str().unwrap();
    let error = result.expect_err(name);
    // A "version N" vector was written while N was unknown. A build that reads N must still
    // refuse it (its bytes are laid out for another version), with whichever error N's layout
    // gives.
    let now_known = sealed
        .get(4)
        .is_some_and(|version| Format::from_version(*version).is_some());
    let matches = match expected {
        "version" if now_known => true,
        "unopenable" => error == EnvelopeError::Unopenable,
        "malformed" => matches!(error, EnvelopeError::Malformed(_)),
        "version" => matches!(error, EnvelopeError::UnsupportedVersion(_)),
        "suite" => matches!(error, EnvelopeError::UnsupportedSuite(_)),
        other => panic!("unknown expected error {other}"),
    };
    assert!(matches, "{name}: expected {expected}, got {error:?}");
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
        FORMATS
            .iter()
            .map(|format| vectors(*format)["valid"].as_array().unwrap().len())
            .sum::<usize>(),
        "{}",
        output.both()
    );
}

/// Writes the vectors files. Run once when a format version is added:
/// `cargo test --test envelope_vectors -- --ignored write_vectors`; an existing file's valid
/// vectors must come out byte for byte the same (check `git diff`).
#[test]
#[ignore = "generator, not a check"]
fn write_vectors() {
    // Only files that do not exist yet: a committed file is frozen.
    for format in FORMATS {
        if !std::path::Path::new(&path(format)).exists() {
            write_vectors_of(format);
        }
    }
}

fn write_vectors_of(format: Format) {
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
        // Format 3: the Payload is stored as a zstd frame (level 3), the others as they are.
        let (name, plaintext, compressed) =
            if format.records_compression() && name.starts_with("serialized") {
                let mut frame = Vec::new();
                assert!(kmscodec::compression::compress(
                    &[plaintext.as_slice(); 4].concat(),
                    kmscodec::compression::DEFAULT_LEVEL,
                    &mut frame
                ));
                (
                    "four serialized json/plain Payloads, zstd, vault",
                    frame,
                    Some([plaintext.as_slice(); 4].concat()),
                )
            } else {
                (name, plaintext, None)
            };
        let mut vector = json!({
            "name": name,
            "data_key": to_hex(&[seed; 32]),
            "namespace": namespace,
            "provider": provider,
            "kek_key": kek_key,
            "kek_version": kek_version,
            "wrapped_key": to_hex(&wrapped),
            random_field(format): to_hex(&vec![seed.wrapping_add(0x40); format.random_len()]),
            "plaintext": to_hex(&plaintext),
        });
        if format.records_compression() {
            let algorithm = if compressed.is_some() {
                Algorithm::Zstd
            } else {
                Algorithm::None
            };
            vector["compression"] = json!(algorithm.code());
        }
        if let Some(decompressed) = &compressed {
            vector["decompressed"] = json!(to_hex(decompressed));
        }
        vector["sealed"] = json!(to_hex(&seal(format, &vector)));
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
    let plaintext_len = hex(base["plaintext"].as_str().unwrap()).len();
    let mut invalid = vec![
        mutate("flipped ciphertext byte", "unopenable", &|b| b[n - 20] ^= 1),
        mutate("flipped tag byte", "unopenable", &|b| b[n - 1] ^= 0x80),
        mutate("flipped commitment byte", "unopenable", &|b| {
            let at = n - 16 - plaintext_len - 1;
            b[at] ^= 1
        }),
        mutate("namespace renamed in header", "unopenable", &|b| {
            b[9] = b'q'
        }),
        mutate("version 4", "version", &|b| b[4] = 4),
        mutate("the other format's version byte", "suite", &|b| {
            b[4] = match format {
                Format::V1 => 2,
                Format::V2 | Format::V3 => 1,
            }
        }),
        mutate("truncated inside the header", "malformed", &|b| {
            b.truncate(40)
        }),
        json!({"name": "wrong data key", "data_key": to_hex(&[0x7f; 32]), "sealed": base["sealed"], "error": "unopenable"}),
    ];
    if format.records_compression() {
        // The compression byte follows the wrapped key: 32 + 24 + 1 bytes before the body.
        let at = n - 16 - plaintext_len - 32 - 24 - 1;
        invalid.push(mutate("compression byte says stored", "unopenable", &|b| {
            b[at] = 0
        }));
        invalid.push(mutate("unknown compression code", "malformed", &|b| {
            b[at] = 9
        }));
    }
    let document = json!({
        "format": format!(
            "kmscodec envelope v{} test vectors; see docs/format.md",
            format.version()
        ),
        "valid": valid,
        "invalid": invalid,
    });
    std::fs::write(
        path(format),
        serde_json::to_string_pretty(&document).unwrap() + "\n",
    )
    .unwrap();
}
