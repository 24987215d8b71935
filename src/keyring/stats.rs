//! What the keyring counts (provider calls, cache hits, rotations) and the per-namespace
//! snapshot that metrics and the admin API read.

use super::*;

/// Counters and histograms the metrics module registers. Prometheus types, so that there is one
/// source of truth and provider latency keeps its distribution.
pub struct Stats {
    /// Decodes whose data key was in the cache.
    pub cache_hits: prometheus::IntCounter,
    /// Decodes whose data key had to be unwrapped (or awaited an unwrap in flight).
    pub cache_misses: prometheus::IntCounter,
    /// Provider calls by `provider`, `op` (`generate`, `unwrap`) and `result` (`ok` or an error
    /// label from [`ProviderError::label`]).
    pub provider_calls: prometheus::IntCounterVec,
    /// Provider call latency by `provider` and `op`.
    pub provider_seconds: prometheus::HistogramVec,
    /// Payloads of namespaces with compression on, by `namespace` and `result` (`compressed`,
    /// `too_small`, `incompressible`).
    pub compression_payloads: prometheus::IntCounterVec,
    /// Serialized payload bytes that were compressed, by `namespace`.
    pub compression_input_bytes: prometheus::IntCounterVec,
    /// The zstd frames' bytes they became, by `namespace`: input / output is the ratio.
    pub compression_output_bytes: prometheus::IntCounterVec,
}

impl Default for Stats {
    fn default() -> Self {
        // Names and help texts are constants: these constructors cannot fail.
        let counter = |name: &str, help: &str| {
            prometheus::IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric())
        };
        Self {
            cache_hits: counter(
                "kmscodec_decode_cache_hits_total",
                "Decodes whose data key was already unwrapped in the cache.",
            ),
            cache_misses: counter(
                "kmscodec_decode_cache_misses_total",
                "Decodes whose data key had to be unwrapped by the key provider.",
            ),
            provider_calls: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "kmscodec_provider_calls_total",
                    "Key provider calls by provider, operation and result.",
                ),
                &["provider", "op", "result"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            provider_seconds: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "kmscodec_provider_call_duration_seconds",
                    "Key provider call latency.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["provider", "op"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            compression_payloads: counter_vec(
                "kmscodec_compression_payloads_total",
                "Payloads of namespaces with compression on, by whether they were compressed.",
                &["namespace", "result"],
            ),
            compression_input_bytes: counter_vec(
                "kmscodec_compression_input_bytes_total",
                "Serialized payload bytes compressed before sealing.",
                &["namespace"],
            ),
            compression_output_bytes: counter_vec(
                "kmscodec_compression_output_bytes_total",
                "Compressed bytes those payloads became (input / output is the ratio).",
                &["namespace"],
            ),
        }
    }
}

pub(super) fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::IntCounterVec {
    prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_metric())
}

#[cold]
pub(super) fn unreachable_metric() -> ! {
    // Only reachable if a constant metric name above were invalid: a build-time bug.
    std::process::abort()
}

impl Stats {
    pub(super) fn record(
        &self,
        provider: ProviderKind,
        op: &'static str,
        result: &Result<(), &ProviderError>,
        elapsed: Duration,
    ) {
        let outcome = match result {
            Ok(()) => "ok",
            Err(error) => error.label(),
        };
        self.provider_calls
            .with_label_values(&[provider.as_str(), op, outcome])
            .inc();
        self.provider_seconds
            .with_label_values(&[provider.as_str(), op])
            .observe(elapsed.as_secs_f64());
    }

    /// Total provider calls for `op` (all providers and results).
    pub fn provider_call_count(&self, op: &str) -> u64 {
        use prometheus::core::Collector;
        self.provider_calls
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|label| label.name() == "op" && label.value() == op)
            })
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }
}

/// What a namespace's keys look like right now: for metrics, and the answer of the admin API's
/// `GET /admin/v1/namespaces` (`keys describe --sidecar` reads it back).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceSnapshot {
    /// The namespace.
    pub namespace: String,
    /// The configuration entry serving it (the `entry` metrics label): itself or `*`.
    #[serde(default)]
    pub metrics_label: String,
    /// Provider name from config.
    pub provider: String,
    /// KEK reference.
    pub key: String,
    /// `encryption-key-id` of the active data key, if one is active.
    pub active_key_id: Option<String>,
    /// Seals under the active data key (capped at the hard limit).
    pub uses: u64,
    /// Plaintext bytes sealed under the active data key.
    pub bytes: u64,
    /// Soft limit.
    pub soft_limit: u64,
    /// Hard limit.
    pub hard_limit: u64,
    /// Age of the active data key in seconds.
    pub age_seconds: f64,
    /// Maximum age in seconds.
    pub max_age_seconds: f64,
    /// Data keys minted so far, by reason (`initial`, `count`, `age`, `bytes`, `manual`).
    pub rotations: std::collections::BTreeMap<String, u64>,
    /// Reservations refused because the hard limit was reached.
    pub hard_limit_refusals: u64,
    /// Failed attempts to mint a data key.
    pub rotation_failures: u64,
}
