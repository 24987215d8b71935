//! Unit tests of `src/envelope.rs`.

use super::*;

fn key(byte: u8) -> EnvelopeKey {
    EnvelopeKey::new(DataKey::from_slice(&[byte; 32]).unwrap())
}

fn template(format: Format, namespace: &str) -> HeaderTemplate {
    HeaderTemplate::new(
        format,
        namespace,
        ProviderKind::LocalFile,
        &KekRef {
            key: "dev".into(),
            version: 3,
        },
        &WrappedKey::new(vec![7; 60]),
    )
    .unwrap()
}

fn sealed(format: Format, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal(&key(1), &template(format, "default"), &mut out, |buf| {
        buf.extend_from_slice(plaintext)
    })
    .unwrap();
    out
}

const FORMATS: [Format; 3] = [Format::V1, Format::V2, Format::V3];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn xaes_matches_the_c2sp_vectors() {
    // The two vectors of https://c2sp.org/XAES-256-GCM.
    let cases = [
        (
            [0x01; 32],
            &b""[..],
            "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
        ),
        (
            [0x03; 32],
            &b"c2sp.org/XAES-256-GCM"[..],
            "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
        ),
    ];
    let nonce = b"ABCDEFGHIJKLMNOPQRSTUVWX";
    for (raw_key, aad, expected) in cases {
        let xaes = XaesKey::new(&raw_key);
        let (head, tail) = nonce.split_first_chunk::<12>().unwrap();
        let tail: [u8; 12] = tail.try_into().unwrap();
        let cipher = gcm_key(&xaes.message_key(head)).unwrap();
        let mut buffer = b"XAES-256-GCM".to_vec();
        let tag = cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(tail),
                Aad::from(aad),
                &mut buffer,
            )
            .unwrap();
        buffer.extend_from_slice(tag.as_ref());
        assert_eq!(buffer, hex(expected));
    }
}

#[test]
fn xaes_agrees_with_rustcrypto_xaes_256_gcm() {
    // RustCrypto's own XAES-256-GCM (derivation and AES-GCM both RustCrypto) against ours
    // (our derivation, aws-lc-rs AES-GCM), across block and page boundaries.
    use aes_gcm::aead::AeadInOut;
    use xaes_256_gcm::Xaes256Gcm;
    for (index, len) in [0usize, 1, 15, 16, 17, 255, 4096, 70_001]
        .into_iter()
        .enumerate()
    {
        let raw_key = [index as u8 ^ 0xa5; 32];
        let nonce: [u8; 24] = std::array::from_fn(|i| (i * 7 + index) as u8);
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 + index) as u8).collect();
        let aad = [index as u8; 40];

        let theirs_cipher = Xaes256Gcm::new(&raw_key.into());
        let mut theirs = plaintext.clone();
        let tag = theirs_cipher
            .encrypt_inout_detached(
                &xaes_256_gcm::Nonce::from(nonce),
                &aad,
                theirs.as_mut_slice().into(),
            )
            .unwrap();
        theirs.extend_from_slice(&tag);

        let xaes = XaesKey::new(&raw_key);
        let (head, tail) = nonce.split_first_chunk::<12>().unwrap();
        let cipher = gcm_key(&xaes.message_key(head)).unwrap();
        let mut ours = plaintext.clone();
        let tag = cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(tail.try_into().unwrap()),
                Aad::from(&aad),
                &mut ours,
            )
            .unwrap();
        ours.extend_from_slice(tag.as_ref());
        assert_eq!(ours, theirs, "length {len}");
    }
}

#[test]
fn xaes_subkey_is_the_cmac_doubling_in_both_branches() {
    // K1 = L << 1, with 0x87 xored in only when L's top bit is set: checked against u128
    // arithmetic for keys until both branches have been seen.
    let mut branches = [false; 2];
    for byte in 0..=255u8 {
        let xaes = XaesKey::new(&[byte; 32]);
        let mut l = [0u8; 16];
        xaes.aes.encrypt_block((&mut l).into());
        let value = u128::from_be_bytes(l);
        let top = usize::from(l[0] >> 7);
        branches[top] = true;
        let doubled = (value << 1) ^ if top == 1 { 0x87 } else { 0 };
        assert_eq!(*xaes.k1, doubled.to_be_bytes(), "key byte {byte}");
    }
    assert_eq!(branches, [true, true]);
}

#[test]
fn random_bytes_never_repeat_across_pool_refills_and_threads() {
    let per_thread = 3 * RANDOM_POOL_LEN / MESSAGE_ID_LEN + 7;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        // Alternate the two lengths the formats draw.
                        let mut bytes = [0u8; MESSAGE_ID_LEN];
                        let len = if i % 2 == 0 {
                            MESSAGE_ID_LEN
                        } else {
                            XAES_NONCE_LEN
                        };
                        fill_random(&mut bytes[..len]).unwrap();
                        bytes
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for thread in threads {
        for id in thread.join().unwrap() {
            assert_ne!(id[..XAES_NONCE_LEN], [0u8; XAES_NONCE_LEN]);
            assert!(seen.insert(id), "random bytes repeated");
        }
    }
    assert_eq!(seen.len(), 4 * per_thread);
}

#[test]
fn round_trip_and_fields() {
    for format in FORMATS {
        let out = sealed(format, b"hello");
        assert_eq!(out.len(), template(format, "default").sealed_len(5));
        assert_eq!(out[4], format.version());
        let (header, body) = parse(&out).unwrap();
        assert_eq!(header.format, format);
        assert_eq!(header.alleged_namespace, "default");
        assert_eq!(header.alleged_kek_key, "dev");
        assert_eq!(header.alleged_kek_version, 3);
        assert_eq!(header.alleged_provider, ProviderKind::LocalFile);
        assert_eq!(header.alleged_wrapped_key, &[7; 60][..]);
        assert!(template(format, "default").laid_out(&header));
        let other = match format {
            Format::V1 => Format::V2,
            Format::V2 | Format::V3 => Format::V1,
        };
        assert!(!template(other, "default").laid_out(&header));
        let mut plain = b"prefix".to_vec();
        open(&key(1), &header, body, &mut plain).unwrap();
        assert_eq!(plain, b"prefixhello");
    }
}

#[test]
fn format_2_is_24_bytes_of_nonce_and_commits_per_data_key() {
    let first = sealed(Format::V2, b"same");
    let second = sealed(Format::V2, b"same");
    assert_eq!(
        first.len() + MESSAGE_ID_LEN - XAES_NONCE_LEN,
        sealed(Format::V1, b"same").len()
    );
    let (a, _) = parse(&first).unwrap();
    let (b, _) = parse(&second).unwrap();
    assert_ne!(a.random, b.random, "a nonce repeated");
    assert_eq!(a.commitment, b.commitment);
    assert_ne!(first, second);
    let mut third = Vec::new();
    seal(
        &key(2),
        &template(Format::V2, "default"),
        &mut third,
        |_| {},
    )
    .unwrap();
    let (c, _) = parse(&third).unwrap();
    assert_ne!(a.commitment, c.commitment);
}

#[test]
fn wrong_key_is_unopenable_and_leaves_output_untouched() {
    for format in FORMATS {
        let out = sealed(format, b"hello");
        let (header, body) = parse(&out).unwrap();
        let mut plain = b"keep".to_vec();
        assert_eq!(
            open(&key(2), &header, body, &mut plain),
            Err(EnvelopeError::Unopenable)
        );
        assert_eq!(plain, b"keep");
    }
}

#[test]
fn open_in_place_agrees_with_open_and_refuses_every_flip() {
    for format in FORMATS {
        let out = sealed(format, b"some plaintext bytes");
        let mut buffer = out.clone();
        let (compression, range) = open_in_place(&key(1), &mut buffer).unwrap();
        assert_eq!(compression, Algorithm::None);
        assert_eq!(&buffer[range], b"some plaintext bytes");
        for index in 0..out.len() {
            let mut tampered = out.clone();
            tampered[index] ^= 0x01;
            assert!(
                open_in_place(&key(1), &mut tampered).is_err(),
                "{format:?}: flip at byte {index} was accepted"
            );
        }
        let mut wrong = out.clone();
        assert_eq!(
            open_in_place(&key(2), &mut wrong),
            Err(EnvelopeError::Unopenable)
        );
    }
}

#[test]
fn every_single_byte_flip_fails() {
    for format in FORMATS {
        let out = sealed(format, b"some plaintext bytes");
        for index in 0..out.len() {
            let mut tampered = out.clone();
            tampered[index] ^= 0x01;
            let result = parse(&tampered)
                .and_then(|(header, body)| open(&key(1), &header, body, &mut Vec::new()));
            assert!(
                result.is_err(),
                "{format:?}: flip at byte {index} was accepted"
            );
        }
    }
}

#[test]
fn truncation_at_every_length_fails_without_panic() {
    for format in FORMATS {
        let out = sealed(format, b"abc");
        for len in 0..out.len() {
            let result = parse(&out[..len])
                .and_then(|(header, body)| open(&key(1), &header, body, &mut Vec::new()));
            assert!(
                result.is_err(),
                "{format:?}: truncation to {len} bytes was accepted"
            );
        }
    }
}

#[test]
fn version_and_suite_are_checked() {
    let mut out = sealed(Format::V1, b"x");
    out[4] = 4;
    assert_eq!(
        parse(&out).unwrap_err(),
        EnvelopeError::UnsupportedVersion(4)
    );
    let mut out = sealed(Format::V1, b"x");
    out[5] = 0;
    out[6] = 0x14;
    assert_eq!(
        parse(&out).unwrap_err(),
        EnvelopeError::UnsupportedSuite(0x0014)
    );
    // Each version allows exactly its own suite.
    let mut out = sealed(Format::V2, b"x");
    out[5..7].copy_from_slice(&SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY.to_be_bytes());
    assert_eq!(
        parse(&out).unwrap_err(),
        EnvelopeError::UnsupportedSuite(SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY)
    );
}

#[test]
fn format_3_records_the_compression_inside_the_authenticated_header() {
    let v3 = template(Format::V3, "default");
    let mut out = Vec::new();
    seal_with_compression(&key(1), &v3, Algorithm::Zstd, &mut out, |buffer| {
        buffer.extend_from_slice(b"frame")
    })
    .unwrap();
    assert_eq!(out.len(), v3.sealed_len(5));
    let (header, body) = parse(&out).unwrap();
    assert_eq!(header.format, Format::V3);
    assert_eq!(header.alleged_compression, Algorithm::Zstd);
    let mut plain = Vec::new();
    open(&key(1), &header, body, &mut plain).unwrap();
    assert_eq!(plain, b"frame");
    // Flipping the recorded compression fails authentication; an unknown code is malformed.
    let at = v3.bytes.len();
    let mut flipped = out.clone();
    flipped[at] = Algorithm::None.code();
    let mut buffer = flipped.clone();
    assert_eq!(
        open_in_place(&key(1), &mut buffer),
        Err(EnvelopeError::Unopenable)
    );
    flipped[at] = 7;
    assert_eq!(
        parse(&flipped).unwrap_err(),
        EnvelopeError::Malformed("compression")
    );
    // Formats 1 and 2 cannot record compression.
    for format in [Format::V1, Format::V2] {
        let result = seal_with_compression(
            &key(1),
            &template(format, "default"),
            Algorithm::Zstd,
            &mut Vec::new(),
            |_| {},
        );
        assert_eq!(result, Err(EnvelopeError::Malformed("compression")));
    }
}

#[test]
fn seal_with_random_refuses_the_other_formats_length() {
    let mut out = b"keep".to_vec();
    let template = template(Format::V2, "default");
    let result = seal_with_random(&key(1), &template, &[5; 32], &mut out, |_| {});
    assert_eq!(result, Err(EnvelopeError::Malformed("nonce")));
    assert_eq!(out, b"keep");
}

#[test]
fn template_rejects_oversized_fields() {
    let wrapped = WrappedKey::new(vec![1; 8]);
    let kek = KekRef {
        key: "k".into(),
        version: 1,
    };
    let new = |namespace: &str, kek: &KekRef, wrapped: &WrappedKey| {
        HeaderTemplate::new(
            Format::DEFAULT,
            namespace,
            ProviderKind::LocalFile,
            kek,
            wrapped,
        )
    };
    assert!(new("", &kek, &wrapped).is_err());
    assert!(new(&"n".repeat(256), &kek, &wrapped).is_err());
    let long_kek = KekRef {
        key: "k".repeat(MAX_KEK_REF_LEN + 1),
        version: 1,
    };
    assert!(new("ns", &long_kek, &wrapped).is_err());
    let long_wrapped = WrappedKey::new(vec![1; MAX_WRAPPED_KEY_LEN + 1]);
    assert!(new("ns", &kek, &long_wrapped).is_err());
}
