//! AES-256-GCM throughput per core, backend by backend, at 1 KiB and 1 MiB: the measurement
//! behind the choice of the bulk AEAD (issue 21, docs/performance.md).
//!
//! ```sh
//! cargo bench --bench aead
//! # RustCrypto with every x86 feature it can use compiled in (no runtime dispatch):
//! RUSTFLAGS='-Ctarget-feature=+aes,+ssse3,+pclmulqdq,+avx2,+avx512f,+vaes,+vpclmulqdq' \
//!     cargo bench --bench aead --target-dir target/native
//! ```
//!
//! Prints GB/s (10^9 bytes per second of plaintext) on one thread for:
//!
//! * `aes-gcm` (RustCrypto 0.11, one fixed key): the crate as the build configures it;
//! * `aws-lc-rs` (`LessSafeKey` with `AES_256_GCM`, one fixed key);
//! * `xaes-256-gcm` (RustCrypto 0.1): XAES-256-GCM with its own derivation and `aes-gcm`;
//! * kmscodec's envelope, formats 1 and 2, which derive a fresh AES-256-GCM key per payload.
//!
//! Each figure is the best of five runs of about 0.2 s of the thread's CPU time (not wall time,
//! so that other work on a shared machine does not count against a backend).

// Tests and benches time real servers by the wall clock and find their tools through the
// environment (clippy.toml refuses both in src/).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use kmscodec::envelope::{self, EnvelopeKey, Format, HeaderTemplate};
use kmscodec::secret::{DataKey, KekRef, ProviderKind, WrappedKey};

const SIZES: [(usize, &str); 2] = [(1 << 10, "1 KiB"), (1 << 20, "1 MiB")];
const RUNS: usize = 5;
/// CPU time one run lasts, about.
const RUN_CPU_NS: u64 = 200_000_000;

/// CPU time this thread has run, in nanoseconds (Linux `/proc/thread-self/schedstat`). Timing
/// by CPU time rather than wall time keeps the figures per core on a machine that other work
/// shares: time spent waiting for the CPU is not counted.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Best throughput over [`RUNS`] runs of `operation` on `bytes` bytes, in GB/s of CPU time.
fn throughput(bytes: usize, mut operation: impl FnMut()) -> f64 {
    // Warm-up, and a first estimate of how many iterations fill a run.
    let start = thread_cpu_ns();
    let mut iterations = 0u64;
    while thread_cpu_ns() - start < RUN_CPU_NS / 4 {
        for _ in 0..8 {
            operation();
        }
        iterations += 8;
    }
    let per_run = iterations * 4;
    let mut best = u64::MAX;
    for _ in 0..RUNS {
        let start = thread_cpu_ns();
        for _ in 0..per_run {
            operation();
        }
        best = best.min((thread_cpu_ns() - start).max(1));
    }
    bytes as f64 * per_run as f64 / best as f64
}

fn report(name: &str, size: &str, seal: f64, open: f64) {
    println!("{name:<40} {size:>6}   seal {seal:>6.2} GB/s   open {open:>6.2} GB/s");
}

fn template(format: Format) -> HeaderTemplate {
    HeaderTemplate::new(
        format,
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

fn rust_crypto(size: usize, label: &str) {
    let cipher = aes_gcm::Aes256Gcm::new(&[0x42; 32].into());
    let nonce = aes_gcm::Nonce::from([7; 12]);
    let mut buffer = vec![0x5a; size];
    let seal = throughput(size, || {
        let tag = cipher
            .encrypt_inout_detached(&nonce, b"header", buffer.as_mut_slice().into())
            .unwrap();
        black_box(&tag);
    });
    let mut sealed = vec![0x5a; size];
    let tag = cipher
        .encrypt_inout_detached(&nonce, b"header", sealed.as_mut_slice().into())
        .unwrap();
    let open = throughput(size, || {
        buffer.copy_from_slice(&sealed);
        cipher
            .decrypt_inout_detached(&nonce, b"header", buffer.as_mut_slice().into(), &tag)
            .unwrap();
    });
    report("aes-gcm 0.11 (RustCrypto), fixed key", label, seal, open);
}

fn aws_lc(size: usize, label: &str) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).unwrap());
    let mut buffer = vec![0x5a; size];
    let seal = throughput(size, || {
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([7; 12]),
                Aad::from(b"header"),
                &mut buffer,
            )
            .unwrap();
        black_box(&tag);
    });
    let mut sealed = vec![0x5a; size];
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([7; 12]),
            Aad::from(b"header"),
            &mut sealed,
        )
        .unwrap();
    let open = throughput(size, || {
        buffer.copy_from_slice(&sealed);
        key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key([7; 12]),
            Aad::from(b"header"),
            tag.as_ref(),
            &mut buffer,
        )
        .unwrap();
    });
    report("aws-lc-rs 1.19, fixed key", label, seal, open);
}

fn xaes_crate(size: usize, label: &str) {
    use xaes_256_gcm::Xaes256Gcm;
    let cipher = Xaes256Gcm::new(&[0x42; 32].into());
    let nonce = xaes_256_gcm::Nonce::from([7; 24]);
    let mut buffer = vec![0x5a; size];
    let seal = throughput(size, || {
        let tag = cipher
            .encrypt_inout_detached(&nonce, b"header", buffer.as_mut_slice().into())
            .unwrap();
        black_box(&tag);
    });
    let mut sealed = vec![0x5a; size];
    let tag = cipher
        .encrypt_inout_detached(&nonce, b"header", sealed.as_mut_slice().into())
        .unwrap();
    let open = throughput(size, || {
        buffer.copy_from_slice(&sealed);
        cipher
            .decrypt_inout_detached(&nonce, b"header", buffer.as_mut_slice().into(), &tag)
            .unwrap();
    });
    report("xaes-256-gcm 0.1 (RustCrypto)", label, seal, open);
}

fn kmscodec_envelope(size: usize, label: &str, format: Format) {
    let key = EnvelopeKey::new(DataKey::from_slice(&[1; 32]).unwrap());
    let template = template(format);
    let plaintext = vec![0x5a; size];
    let mut out = Vec::with_capacity(template.sealed_len(size));
    let seal = throughput(size, || {
        out.clear();
        envelope::seal(&key, &template, &mut out, |buffer| {
            buffer.extend_from_slice(&plaintext)
        })
        .unwrap();
        black_box(out.len());
    });
    let mut sealed = Vec::new();
    envelope::seal(&key, &template, &mut sealed, |buffer| {
        buffer.extend_from_slice(&plaintext)
    })
    .unwrap();
    let mut opened = Vec::with_capacity(size);
    let open = throughput(size, || {
        opened.clear();
        let (header, body) = envelope::parse(&sealed).unwrap();
        envelope::open(&key, &header, body, &mut opened).unwrap();
        black_box(opened.len());
    });
    report(
        &format!("kmscodec envelope, format {}", format.version()),
        label,
        seal,
        open,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported. `cargo test
    // --all-targets` runs bench targets without it, in the unoptimized test profile: figures
    // from there would mean nothing, and measuring takes minutes, so it only says so.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("aead: measured by `cargo bench --bench aead` (skipped without --bench)");
        return;
    }
    let compiled: Vec<&str> = [
        ("aes", cfg!(target_feature = "aes")),
        ("pclmulqdq", cfg!(target_feature = "pclmulqdq")),
        ("avx2", cfg!(target_feature = "avx2")),
        ("avx512f", cfg!(target_feature = "avx512f")),
        ("vaes", cfg!(target_feature = "vaes")),
        ("vpclmulqdq", cfg!(target_feature = "vpclmulqdq")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    #[cfg(target_arch = "x86_64")]
    let detected: Vec<&str> = [
        ("aes", std::arch::is_x86_feature_detected!("aes")),
        (
            "pclmulqdq",
            std::arch::is_x86_feature_detected!("pclmulqdq"),
        ),
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
        ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ("vaes", std::arch::is_x86_feature_detected!("vaes")),
        (
            "vpclmulqdq",
            std::arch::is_x86_feature_detected!("vpclmulqdq"),
        ),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    #[cfg(not(target_arch = "x86_64"))]
    let detected: Vec<&str> = Vec::new();
    println!(
        "AES-256-GCM on one thread; target features compiled in: [{}]; detected at run time: [{}]",
        compiled.join(", "),
        detected.join(", ")
    );
    for (size, label) in SIZES {
        rust_crypto(size, label);
        xaes_crate(size, label);
        aws_lc(size, label);
        kmscodec_envelope(size, label, Format::V1);
        kmscodec_envelope(size, label, Format::V2);
    }
}
