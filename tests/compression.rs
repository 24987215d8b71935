//! Opt-in compression through the real codec and keyring (local-file provider): what is
//! compressed, what is not, that everything decodes, and the ratio metric.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kmscodec::codec::{Codec, CodecOptions, NamespaceCheck};
use kmscodec::compression::{Algorithm, Settings};
use kmscodec::envelope::{self, Format};
use kmscodec::keyring::{CacheOptions, Keyring, Limits, NamespacePolicy, Policies};
use kmscodec::keys::local_file::LocalFile;
use kmscodec::payload::Payload;
use prost::Message;

fn codec(dir: &std::path::Path, compression: Option<Settings>) -> Codec {
    let path = dir.join("keyring.json");
    let local = Arc::new(LocalFile::create(&path, "dev").unwrap());
    let limits = Limits {
        compression,
        ..Limits::default()
    };
    let policy = NamespacePolicy {
        provider_name: "dev".into(),
        provider: local,
        key: "dev".into(),
        limits,
        metrics_label: "orders".into(),
    };
    let policies = Policies {
        exact: HashMap::from([("orders".to_owned(), policy)]),
        wildcard: None,
    };
    Codec::new(
        Arc::new(Keyring::new(policies, &CacheOptions::default(), 1)),
        CodecOptions::default(),
    )
}

/// A JSON document of about `len` bytes shaped like workflow input: records with repeated keys.
fn json_payload(len: usize) -> Payload {
    let mut data = b"[".to_vec();
    let mut i = 0u64;
    while data.len() < len {
        data.extend_from_slice(
            format!(
                r#"{{"orderId":"ord-{i:08}","customer":{{"id":{},"tier":"{}"}},"total":{}.{:02},"status":"PENDING"}},"#,
                i * 7919 % 100_000,
                ["gold", "silver", "bronze"][(i % 3) as usize],
                i * 37 % 1000,
                i % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    data.truncate(len - 1);
    data.push(b']');
    Payload {
        metadata: BTreeMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data,
        external_payloads: vec![],
    }
}

fn header_of(sealed: &Payload) -> (Format, Algorithm) {
    let (header, _) = envelope::parse(&sealed.data).unwrap();
    (header.format, header.alleged_compression)
}

#[tokio::test]
async fn json_of_64_kib_shrinks_three_times_and_1_kib_stays_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let codec = codec(dir.path(), Some(Settings::default()));
    let large = json_payload(64 << 10);
    let small = json_payload(1 << 10);
    let sealed = codec
        .encode("orders", vec![large.clone(), small.clone()])
        .await
        .unwrap();

    assert_eq!(header_of(&sealed[0]), (Format::V3, Algorithm::Zstd));
    let ratio = large.encoded_len() as f64 / sealed[0].data.len() as f64;
    assert!(
        ratio >= 3.0,
        "64 KiB of JSON sealed at a ratio of {ratio:.2}"
    );
    println!(
        "64 KiB of JSON: serialized {} bytes, sealed {} bytes, ratio {ratio:.2}",
        large.encoded_len(),
        sealed[0].data.len()
    );
    // 1 KiB is under the default minimum size (4 KiB): stored, in format 3.
    assert_eq!(header_of(&sealed[1]), (Format::V3, Algorithm::None));
    assert!(sealed[1].data.len() > small.encoded_len());

    let opened = codec
        .decode(NamespaceCheck::Expect("orders"), sealed)
        .await
        .unwrap();
    assert_eq!(opened, vec![large.clone(), small]);

    let stats = codec.keyring().stats();
    let payloads = |result: &str| {
        stats
            .compression_payloads
            .with_label_values(&["orders", result])
            .get()
    };
    assert_eq!(payloads("compressed"), 1);
    assert_eq!(payloads("too_small"), 1);
    assert_eq!(payloads("incompressible"), 0);
    let input = stats
        .compression_input_bytes
        .with_label_values(&["orders"])
        .get();
    let output = stats
        .compression_output_bytes
        .with_label_values(&["orders"])
        .get();
    assert_eq!(input, large.encoded_len() as u64);
    assert!(input as f64 / output as f64 >= 3.0, "{input} / {output}");
}

#[tokio::test]
async fn incompressible_payloads_are_stored_and_compression_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let codec_on = codec(dir.path(), Some(Settings::default()));
    let noise = Payload {
        metadata: BTreeMap::from([("encoding".to_owned(), b"binary/plain".to_vec())]),
        data: {
            // xorshift64: no structure zstd can use.
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            (0..32_768)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 32) as u8
                })
                .collect()
        },
        external_payloads: vec![],
    };
    let sealed = codec_on
        .encode("orders", vec![noise.clone()])
        .await
        .unwrap();
    assert_eq!(header_of(&sealed[0]), (Format::V3, Algorithm::None));
    assert_eq!(
        codec_on
            .decode(NamespaceCheck::Expect("orders"), sealed)
            .await
            .unwrap(),
        vec![noise]
    );

    let other = tempfile::tempdir().unwrap();
    let codec_off = codec(other.path(), None);
    let large = json_payload(64 << 10);
    let sealed = codec_off
        .encode("orders", vec![large.clone()])
        .await
        .unwrap();
    assert_eq!(header_of(&sealed[0]), (Format::V2, Algorithm::None));
    assert!(sealed[0].data.len() > large.encoded_len());
}
