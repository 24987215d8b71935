//! The keyring's guarantees, through the real codec and the local-file provider:
//! no data key past its hard limit under concurrency, age-based rotation on a paused clock,
//! KMS outage behaviour (the local file behind a switch, `common::fake_provider`), and exactly
//! one unwrap per data key however many decodes.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kmscodec::codec::{Codec, CodecError, CodecOptions, ErrorClass, NamespaceCheck};
use kmscodec::envelope;
use kmscodec::keyring::{CacheOptions, Keyring, Limits, NamespacePolicy, Policies};
use kmscodec::keys::KeyProvider;
use kmscodec::keys::local_file::LocalFile;
use kmscodec::payload::Payload;

use common::fake_provider::{BackendControl, FakeProvider};

const NS: &str = "orders";

struct Setup {
    dir: tempfile::TempDir,
    codec: Codec,
}

fn keyring_over(path: &std::path::Path, limits: Limits) -> Arc<Keyring> {
    keyring_with(Arc::new(LocalFile::open(path).unwrap()), limits)
}

/// A keyring serving [`NS`] from `provider`.
fn keyring_with(provider: Arc<dyn KeyProvider>, limits: Limits) -> Arc<Keyring> {
    let policy = NamespacePolicy {
        provider_name: "dev".into(),
        provider,
        key: "dev".into(),
        limits,
        metrics_label: NS.into(),
    };
    let policies = Policies {
        exact: HashMap::from([(NS.to_owned(), policy)]),
        wildcard: None,
    };
    Arc::new(Keyring::new(policies, &CacheOptions::default(), 16))
}

/// A local keyring file behind a [`BackendControl`] switch, as a key backend that can go down
/// or slow down; [`FakeBackend::keyring`] opens one more process's keyring over it.
struct FakeBackend {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    control: BackendControl,
}

impl FakeBackend {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        LocalFile::create(&path, "dev").unwrap();
        Self {
            _dir: dir,
            path,
            control: BackendControl::new(),
        }
    }

    fn keyring(&self, limits: Limits) -> Arc<Keyring> {
        let local = Arc::new(LocalFile::open(&self.path).unwrap());
        keyring_with(
            Arc::new(FakeProvider::new(local, self.control.clone())),
            limits,
        )
    }
}

fn setup(limits: Limits) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    LocalFile::create(&path, "dev").unwrap();
    let codec = Codec::new(keyring_over(&path, limits), CodecOptions::default());
    Setup { dir, codec }
}

fn payload(i: usize) -> Payload {
    Payload {
        metadata: BTreeMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: format!("{i}").into_bytes(),
        external_payloads: vec![],
    }
}

/// The wrapped data key in a sealed payload's header: it identifies the data key.
fn data_key_of(sealed: &Payload) -> Vec<u8> {
    envelope::parse(&sealed.data)
        .unwrap()
        .0
        .alleged_wrapped_key
        .to_vec()
}

async fn encode_one(codec: &Codec, i: usize) -> Result<Payload, CodecError> {
    Ok(codec.encode(NS, vec![payload(i)]).await?.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_data_key_is_used_past_its_hard_limit_under_concurrency() {
    const TOTAL: usize = 50_000;
    const TASKS: usize = 16;
    let limits = Limits::new(
        1_000,
        1_200,
        Duration::from_secs(3600),
        None,
        Duration::from_secs(10),
    );
    let Setup { dir: _dir, codec } = setup(limits);
    let codec = Arc::new(codec);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let codec = Arc::clone(&codec);
        tasks.push(tokio::spawn(async move {
            let mut sealed = Vec::with_capacity(TOTAL / TASKS);
            for i in (task..TOTAL).step_by(TASKS) {
                sealed.push((i, encode_one(&codec, i).await.expect("no encode may fail")));
            }
            sealed
        }));
    }
    let mut all = Vec::with_capacity(TOTAL);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), TOTAL);

    let mut uses: HashMap<Vec<u8>, usize> = HashMap::new();
    for (_, sealed) in &all {
        *uses.entry(data_key_of(sealed)).or_default() += 1;
    }
    let most = uses.values().max().copied().unwrap();
    assert!(
        most <= 1_200,
        "a data key sealed {most} payloads, over the hard limit of 1200"
    );
    // Every key but the last reached the soft limit before it was replaced.
    let below_soft = uses.values().filter(|&&n| n < 1_000).count();
    assert!(
        below_soft <= 1,
        "{below_soft} keys were replaced before their soft limit"
    );

    let generated = codec.keyring().stats().provider_call_count("generate") as usize;
    // 50,000 / 1,200 rounds up to 42 keys at the least, 50,000 / 1,000 = 50 at the most, plus
    // one replacement fetched in the background after the last seal.
    assert!((42..=51).contains(&generated), "{generated} provider calls");
    assert!(
        uses.len() <= generated && generated <= uses.len() + 1,
        "{} keys, {generated} calls",
        uses.len()
    );

    // Everything decodes back to its input, from the cache (no unwrap calls).
    for chunk in all.chunks(5_000) {
        let sealed: Vec<Payload> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let opened = codec
            .decode(NamespaceCheck::Expect(NS), sealed)
            .await
            .unwrap();
        for ((i, _), payload) in chunk.iter().zip(opened) {
            assert_eq!(payload.data, format!("{i}").into_bytes());
        }
    }
    assert_eq!(codec.keyring().stats().provider_call_count("unwrap"), 0);
    println!(
        "keys: {}, provider generate calls: {generated}, most uses of one key: {most}",
        uses.len()
    );
}

fn rotations(codec: &Codec, reason: &str) -> u64 {
    let snapshot = codec.keyring().snapshot();
    let ns = snapshot.iter().find(|s| s.namespace == NS).unwrap();
    ns.rotations[reason]
}

#[tokio::test(start_paused = true)]
async fn data_keys_rotate_at_their_configured_age_and_retired_keys_still_decode() {
    let limits = Limits::new(
        1_000_000,
        2_000_000,
        Duration::from_secs(100),
        None,
        Duration::from_secs(5),
    );
    let Setup { dir: _dir, codec } = setup(limits);
    let first = encode_one(&codec, 1).await.unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    let second = encode_one(&codec, 2).await.unwrap();
    assert_eq!(
        data_key_of(&first),
        data_key_of(&second),
        "rotated before its age"
    );

    // Past max_age (100 s): the key is never used again; the encode waits for a new one.
    tokio::time::advance(Duration::from_secs(51)).await;
    let third = encode_one(&codec, 3).await.unwrap();
    assert_ne!(
        data_key_of(&second),
        data_key_of(&third),
        "used past its maximum age"
    );
    assert_eq!(rotations(&codec, "age"), 1);

    // At 90% of max_age the replacement is fetched in the background; the encode does not wait.
    tokio::time::advance(Duration::from_secs(91)).await;
    let fourth = encode_one(&codec, 4).await.unwrap();
    assert_eq!(
        data_key_of(&third),
        data_key_of(&fourth),
        "soft age must not block the encode"
    );
    for _ in 0..100 {
        if rotations(&codec, "age") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        rotations(&codec, "age"),
        2,
        "no background rotation at the soft age"
    );
    let fifth = encode_one(&codec, 5).await.unwrap();
    assert_ne!(data_key_of(&fourth), data_key_of(&fifth));

    let all = vec![first, second, third, fourth, fifth];
    let opened = codec.decode(NamespaceCheck::Expect(NS), all).await.unwrap();
    let data: Vec<_> = opened
        .iter()
        .map(|p| String::from_utf8(p.data.clone()).unwrap())
        .collect();
    assert_eq!(data, ["1", "2", "3", "4", "5"]);
    assert_eq!(
        codec.keyring().stats().provider_call_count("unwrap"),
        0,
        "retired keys come from the cache"
    );
}

/// A slow key backend: an encode that needs a data key waits at most `rotation_wait`, then gets
/// 503, never as long as the backend takes; callers waiting meanwhile share the one mint in
/// flight, which goes on after they gave up, so later encodes seal with its key and the backend
/// was asked once. (Real time: the local file provider works on a blocking thread, which a
/// paused clock would skip past. The bounds are wide for a busy machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_backend_bounds_the_wait_and_mints_once() {
    let limits = Limits::new(
        1_000,
        2_000,
        Duration::from_secs(3600),
        None,
        Duration::from_millis(300),
    );
    let backend = FakeBackend::new();
    backend.control.set_latency(Duration::from_secs(3));
    let codec = Codec::new(backend.keyring(limits), CodecOptions::default());

    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(encode_one(&codec, 0), encode_one(&codec, 1));
    let waited = started.elapsed();
    for result in [first, second] {
        let error = result.unwrap_err();
        assert_eq!(error.class(), ErrorClass::Unavailable, "{error}");
    }
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(2500)).contains(&waited),
        "encodes waited {waited:?} for a data key (rotation_wait 300 ms, backend 3 s)"
    );

    // The one mint lands when the backend answers; then encodes seal with its key.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while codec.keyring().stats().provider_call_count("generate") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the mint never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    encode_one(&codec, 2).await.unwrap();
    encode_one(&codec, 3).await.unwrap();
    assert_eq!(codec.keyring().stats().provider_call_count("generate"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_backend_outage_keeps_cached_work_going_then_fails_with_503_and_recovers() {
    let limits = Limits::new(
        5,
        10,
        Duration::from_secs(3600),
        None,
        Duration::from_millis(300),
    );
    // One backend behind a switch, for this process and (below) a replica.
    let backend = FakeBackend::new();
    let codec = Codec::new(backend.keyring(limits), CodecOptions::default());
    let mut sealed = Vec::new();
    for i in 0..3 {
        sealed.push(encode_one(&codec, i).await.unwrap());
    }

    // The backend goes away.
    backend.control.go_down();
    let opened = codec
        .decode(NamespaceCheck::Expect(NS), sealed.clone())
        .await
        .unwrap();
    assert_eq!(opened.len(), 3, "cached decodes must keep working");
    // Encodes continue under the active key up to its hard limit (uses 4..=10)...
    for i in 3..10 {
        sealed.push(
            encode_one(&codec, i)
                .await
                .unwrap_or_else(|e| panic!("encode {i}: {e}")),
        );
    }
    // ...and then fail with 503, never sealing with the exhausted key.
    let error = encode_one(&codec, 10).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Unavailable, "{error}");
    assert_eq!(
        kmscodec::server::error::http_status(error.class()),
        http::StatusCode::SERVICE_UNAVAILABLE
    );

    // A replica with a cold cache cannot unwrap while the backend is down: 503 as well.
    let replica = Codec::new(backend.keyring(Limits::default()), CodecOptions::default());
    let error = replica
        .decode(NamespaceCheck::Expect(NS), sealed.clone())
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Unavailable, "{error}");

    // The backend returns: encodes recover with a new key, and the replica decodes.
    backend.control.come_back();
    let recovered = encode_one(&codec, 11).await.unwrap();
    assert_ne!(data_key_of(&recovered), data_key_of(&sealed[9]));
    sealed.push(recovered);
    let opened = replica
        .decode(NamespaceCheck::Expect(NS), sealed)
        .await
        .unwrap();
    assert_eq!(opened.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hundred_thousand_decodes_under_ten_data_keys_cost_exactly_ten_unwraps() {
    // hard_limit 1: every payload gets its own data key.
    let Setup { dir, codec } = setup(Limits::new(
        1,
        1,
        Duration::from_secs(3600),
        None,
        Duration::from_secs(5),
    ));
    let mut sealed = Vec::new();
    for i in 0..10 {
        sealed.push(encode_one(&codec, i).await.unwrap());
    }
    let distinct: HashSet<_> = sealed.iter().map(data_key_of).collect();
    assert_eq!(distinct.len(), 10);

    // A second process's keyring: same keys, cold cache.
    let replica = Arc::new(Codec::new(
        keyring_over(&dir.path().join("keyring.json"), Limits::default()),
        CodecOptions::default(),
    ));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let replica = Arc::clone(&replica);
        let batch: Vec<Payload> = (0..100).map(|i| sealed[i % 10].clone()).collect();
        tasks.push(tokio::spawn(async move {
            for _ in 0..125 {
                let opened = replica
                    .decode(NamespaceCheck::Expect(NS), batch.clone())
                    .await
                    .unwrap();
                assert_eq!(opened.len(), 100);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = replica.keyring().stats();
    assert_eq!(
        stats.provider_call_count("unwrap"),
        10,
        "100,000 decodes must cost exactly 10 unwraps"
    );
    let hits = stats.cache_hits.get();
    let misses = stats.cache_misses.get();
    assert_eq!(hits + misses, 100_000);
    replica.keyring().sync_cache().await;
    assert_eq!(replica.keyring().cached_keys(), 10);
}

#[tokio::test]
async fn decodes_under_the_active_key_skip_the_cache_until_the_namespace_is_forgotten() {
    let setup = setup(Limits::default());
    let codec = &setup.codec;
    let stats = codec.keyring().stats();
    let sealed = encode_one(codec, 7).await.unwrap();
    let (hits, misses) = (stats.cache_hits.get(), stats.cache_misses.get());
    for _ in 0..3 {
        let opened = codec
            .decode(NamespaceCheck::Expect(NS), vec![sealed.clone()])
            .await
            .unwrap();
        assert_eq!(opened[0].data, b"7");
    }
    // Served from memory (counted as cache hits), no provider call.
    assert_eq!(stats.cache_hits.get(), hits + 3);
    assert_eq!(stats.cache_misses.get(), misses);
    assert_eq!(stats.provider_call_count("unwrap"), 0);
    // A header that differs from the active key's in one byte of the wrapped key is not served
    // by the active key: it goes to the provider, which refuses it.
    let mut tampered = sealed.clone();
    let wrapped = data_key_of(&sealed);
    let wrapped_at = sealed
        .data
        .windows(wrapped.len())
        .position(|window| window == wrapped)
        .unwrap();
    tampered.data[wrapped_at + wrapped.len() / 2] ^= 1;
    let refused = codec
        .decode(NamespaceCheck::Expect(NS), vec![tampered])
        .await
        .unwrap_err();
    assert_eq!(refused.class(), ErrorClass::InvalidInput, "{refused}");
    assert_eq!(stats.provider_call_count("unwrap"), 1);
    // Once the namespace is forgotten (as after a shred), the active key serves no decode: the
    // provider is asked again.
    assert!(codec.keyring().forget_namespace(NS).unwrap());
    let opened = codec
        .decode(NamespaceCheck::Expect(NS), vec![sealed])
        .await
        .unwrap();
    assert_eq!(opened[0].data, b"7");
    assert_eq!(stats.provider_call_count("unwrap"), 2);
}

/// A rolling upgrade: a process pinned to format 1 (`[data_keys] format = 1`) and one on the
/// default format 2 share a namespace and its keys. Each opens what the other sealed, and each
/// seals in its own format (docs/operations.md, "Upgrading to payload format 2").
#[tokio::test]
async fn processes_on_formats_1_and_2_open_each_others_payloads() {
    let setup = setup(Limits::default());
    let path = setup.dir.path().join("keyring.json");
    let pinned = Codec::new(
        keyring_over(
            &path,
            Limits {
                format: envelope::Format::V1,
                ..Limits::default()
            },
        ),
        CodecOptions::default(),
    );
    let current = &setup.codec;

    let old_payloads = pinned
        .encode(NS, (0..3).map(payload).collect())
        .await
        .unwrap();
    let new_payloads = current
        .encode(NS, (3..6).map(payload).collect())
        .await
        .unwrap();
    for (sealed, version) in old_payloads
        .iter()
        .map(|p| (p, 1))
        .chain(new_payloads.iter().map(|p| (p, 2)))
    {
        assert_eq!(sealed.data[4], version);
        let (header, _) = envelope::parse(&sealed.data).unwrap();
        assert_eq!(header.format.version(), version);
    }

    for codec in [&pinned, current] {
        let mixed: Vec<Payload> = old_payloads.iter().chain(&new_payloads).cloned().collect();
        let opened = codec
            .decode(NamespaceCheck::Expect(NS), mixed)
            .await
            .unwrap();
        assert_eq!(opened, (0..6).map(payload).collect::<Vec<_>>());
    }
}

/// Batches on the blocking pool take turns when `blocking_parallelism` is 1: sixteen concurrent
/// encodes and then decodes, every one through the pool, all finish and round-trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_batches_queue_for_their_turn_and_all_complete() {
    let setup = setup(Limits::default());
    let codec = Arc::new(Codec::new(
        keyring_over(&setup.dir.path().join("keyring.json"), Limits::default()),
        CodecOptions {
            blocking_threshold_bytes: 0,
            blocking_parallelism: 1,
            ..CodecOptions::default()
        },
    ));
    let batch = |task: usize| (0..4).map(|i| payload(task * 4 + i)).collect::<Vec<_>>();
    let encodes: Vec<_> = (0..16)
        .map(|task| {
            let codec = Arc::clone(&codec);
            tokio::spawn(async move { codec.encode(NS, batch(task)).await })
        })
        .collect();
    let mut sealed = Vec::new();
    for encode in encodes {
        sealed.push(encode.await.unwrap().unwrap());
    }
    let decodes: Vec<_> = sealed
        .into_iter()
        .map(|payloads| {
            let codec = Arc::clone(&codec);
            tokio::spawn(async move { codec.decode(NamespaceCheck::Expect(NS), payloads).await })
        })
        .collect();
    for (task, decode) in decodes.into_iter().enumerate() {
        assert_eq!(decode.await.unwrap().unwrap(), batch(task));
    }
}

/// Namespaces served by the wildcard take a slot only while in use: one without an encode for
/// the idle period is forgotten and its slot goes to the next namespace.
#[tokio::test(start_paused = true)]
async fn idle_wildcard_namespaces_are_forgotten_and_free_their_slots() {
    use kmscodec::keyring::KeyringError;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    LocalFile::create(&path, "dev").unwrap();
    let local: Arc<LocalFile> = Arc::new(LocalFile::open(&path).unwrap());
    let wildcard = NamespacePolicy {
        provider_name: "dev".into(),
        provider: local,
        key: "dev".into(),
        limits: Limits::default(),
        metrics_label: "*".into(),
    };
    let policies = Policies {
        exact: HashMap::new(),
        wildcard: Some(wildcard),
    };
    let keyring = Keyring::new(policies, &CacheOptions::default(), 2)
        .with_dynamic_idle(Duration::from_secs(60));
    keyring.lease("a", 10).await.unwrap();
    keyring.lease("b", 10).await.unwrap();
    assert!(matches!(
        keyring.lease("c", 10).await,
        Err(KeyringError::TooManyNamespaces(2))
    ));
    assert_eq!(keyring.evict_idle(), 0, "nothing is idle yet");
    tokio::time::advance(Duration::from_secs(30)).await;
    keyring.lease("a", 10).await.unwrap();
    tokio::time::advance(Duration::from_secs(31)).await;
    // b has been idle for 61 s, a for 31 s.
    assert_eq!(keyring.evict_idle(), 1);
    keyring.lease("c", 10).await.unwrap();
    let names: Vec<String> = keyring
        .snapshot()
        .into_iter()
        .map(|snapshot| snapshot.namespace)
        .collect();
    assert_eq!(names, ["a", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_reserve_their_uses_at_once_and_never_pass_the_hard_limit() {
    // Batches of 7 against a hard limit of 30: a batch that straddles the limit seals what the
    // key has room for and the rest under the next key, so every key seals exactly 30 except
    // the last, and no batch fails.
    const BATCH: usize = 7;
    const BATCHES: usize = 40;
    let limits = Limits::new(
        30,
        30,
        Duration::from_secs(3600),
        None,
        Duration::from_secs(10),
    );
    let Setup { dir: _dir, codec } = setup(limits);
    let codec = Arc::new(codec);
    let mut tasks = Vec::new();
    for task in 0..4 {
        let codec = Arc::clone(&codec);
        tasks.push(tokio::spawn(async move {
            let mut sealed = Vec::new();
            for batch in (task..BATCHES).step_by(4) {
                let inputs: Vec<Payload> = (0..BATCH).map(|i| payload(batch * BATCH + i)).collect();
                let output = codec.encode(NS, inputs).await.expect("no batch may fail");
                assert_eq!(output.len(), BATCH);
                sealed.extend(
                    output
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| (batch * BATCH + i, p)),
                );
            }
            sealed
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), BATCH * BATCHES);
    let mut uses: HashMap<Vec<u8>, usize> = HashMap::new();
    for (_, sealed) in &all {
        *uses.entry(data_key_of(sealed)).or_default() += 1;
    }
    let most = uses.values().max().copied().unwrap();
    assert!(
        most <= 30,
        "a data key sealed {most} payloads, over the hard limit of 30"
    );
    // 280 seals at 30 per key: 10 keys when no use is lost to a straddling batch.
    assert_eq!(uses.len(), (BATCH * BATCHES).div_ceil(30), "{uses:?}");
    let opened = codec
        .decode(
            NamespaceCheck::Expect(NS),
            all.iter().map(|(_, p)| p.clone()).collect(),
        )
        .await
        .unwrap();
    for ((i, _), payload) in all.iter().zip(opened) {
        assert_eq!(payload.data, format!("{i}").into_bytes());
    }
}

#[tokio::test]
async fn a_small_batch_seals_under_one_reservation_of_one_key() {
    let Setup { dir: _dir, codec } = setup(Limits::default());
    let inputs: Vec<Payload> = (0..10).map(payload).collect();
    let sealed = codec.encode(NS, inputs).await.unwrap();
    let keys: HashSet<Vec<u8>> = sealed.iter().map(data_key_of).collect();
    assert_eq!(keys.len(), 1);
    let snapshot = codec.keyring().snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].uses, 10);
}
