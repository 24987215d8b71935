//! Seal and open throughput at 1 KiB, 64 KiB and 1 MiB, and the cost the keyring adds to a seal
//! on the hot path (reserve a use of the active data key, then seal).
//!
//! `cargo bench --bench envelope`. The keyring overhead is printed as a percentage at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kmscodec::envelope::{self, HeaderTemplate};
use kmscodec::keyring::{CacheOptions, Keyring, Limits, NamespacePolicy, Policies};
use kmscodec::keys::local_file::LocalFile;
use kmscodec::secret::{DataKey, KekRef, ProviderKind, WrappedKey};

const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

fn template() -> HeaderTemplate {
    HeaderTemplate::new(
        "orders",
        ProviderKind::LocalFile,
        &KekRef {
            key: "dev".into(),
            version: 1,
        },
        &WrappedKey::new(vec![7; 60]),
    )
    .unwrap()
}

fn seal_and_open(c: &mut Criterion) {
    let key = DataKey::from_slice(&[1; 32]).unwrap();
    let template = template();
    let mut group = c.benchmark_group("envelope");
    for (size, name) in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(template.sealed_len(size));
        group.bench_with_input(
            BenchmarkId::new("seal", name),
            &plaintext,
            |b, plaintext| {
                b.iter(|| {
                    out.clear();
                    let id = envelope::random_message_id().unwrap();
                    envelope::seal(&key, &template, &id, &mut out, |buf| {
                        buf.extend_from_slice(plaintext)
                    })
                    .unwrap();
                    black_box(out.len())
                })
            },
        );
        let mut sealed = Vec::new();
        envelope::seal(&key, &template, &[3; 32], &mut sealed, |buf| {
            buf.extend_from_slice(&plaintext)
        })
        .unwrap();
        let mut opened = Vec::with_capacity(size);
        group.bench_with_input(BenchmarkId::new("open", name), &sealed, |b, sealed| {
            b.iter(|| {
                opened.clear();
                let (header, body) = envelope::parse(sealed).unwrap();
                envelope::open(&key, &header, body, &mut opened).unwrap();
                black_box(opened.len())
            })
        });
    }
    group.finish();
}

fn keyring() -> (tempfile::TempDir, Arc<Keyring>) {
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalFile::create(dir.path().join("k.json"), "dev").unwrap());
    let policy = NamespacePolicy {
        provider_name: "dev".into(),
        provider: local,
        key: "dev".into(),
        limits: Limits::new(
            1 << 31,
            1 << 32,
            Duration::from_secs(86400),
            None,
            Duration::from_secs(5),
        ),
        metrics_label: "orders".into(),
    };
    let policies = Policies {
        exact: HashMap::from([("orders".to_owned(), policy)]),
        wildcard: None,
    };
    (
        dir,
        Arc::new(Keyring::new(policies, &CacheOptions::default(), 1)),
    )
}

/// Bare seal vs keyring lease + seal at 1 KiB, measured the same way (inside one async block).
fn keyring_hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_dir, keyring) = keyring();
    let plaintext = vec![0x5a; 1 << 10];
    let key = DataKey::from_slice(&[1; 32]).unwrap();
    let template = template();
    runtime.block_on(async { keyring.lease("orders", 1024).await.unwrap() });

    let mut group = c.benchmark_group("hot_path_1KiB");
    group.throughput(Throughput::Bytes(1024));
    let mut results = HashMap::new();
    group.bench_function("bare_seal", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut out = Vec::with_capacity(2048);
                let start = Instant::now();
                for _ in 0..iterations {
                    out.clear();
                    let id = envelope::random_message_id().unwrap();
                    envelope::seal(&key, &template, &id, &mut out, |buf| {
                        buf.extend_from_slice(&plaintext)
                    })
                    .unwrap();
                    black_box(out.len());
                }
                let elapsed = start.elapsed();
                results.insert("bare", elapsed.as_secs_f64() / iterations as f64);
                elapsed
            })
        })
    });
    group.bench_function("keyring_lease_and_seal", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut out = Vec::with_capacity(2048);
                let start = Instant::now();
                for _ in 0..iterations {
                    out.clear();
                    let active = keyring.lease("orders", 1024).await.unwrap();
                    active
                        .seal(&mut out, |buf| buf.extend_from_slice(&plaintext))
                        .unwrap();
                    black_box(out.len());
                }
                let elapsed = start.elapsed();
                results.insert("keyring", elapsed.as_secs_f64() / iterations as f64);
                elapsed
            })
        })
    });
    group.finish();
    if let (Some(bare), Some(with_keyring)) = (results.get("bare"), results.get("keyring")) {
        println!(
            "keyring overhead at 1 KiB: bare seal {:.3} us, lease + seal {:.3} us, overhead {:+.2}%",
            bare * 1e6,
            with_keyring * 1e6,
            (with_keyring / bare - 1.0) * 100.0
        );
    }
}

criterion_group!(benches, seal_and_open, keyring_hot_path);
criterion_main!(benches);
