//! Prometheus metrics: the registry, the typed label sets, and the text exposition.
//!
//! Label values come from closed sets (`transport`, `op`, `result`, `reason`, `provider`) or from
//! the keyring: `temporal_namespace` is the Temporal namespace a data key serves and `entry` the
//! configuration entry that serves it (the namespace itself, or `*`). A namespace served by the
//! `*` entry gets its own series, so cardinality is bounded by the configured entries plus
//! `max_wildcard_namespaces`, never by callers; a namespace the keyring no longer holds loses its
//! series at the next scrape. Per-namespace key series are refreshed from the keyring at scrape
//! time.
//!
//! No label of ours is called `namespace`: Prometheus Operator sets that target label to the
//! Kubernetes namespace, and ours would be renamed `exported_namespace` under it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::codec::ErrorClass;
use crate::keyring::{Keyring, RotationReason};

/// Which transport served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The Temporal Codec Server HTTP protocol.
    Http,
    /// The gRPC codec service.
    Grpc,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// Which codec operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Seal.
    Encode,
    /// Open.
    Decode,
    /// Resolve storage references and open (`…/download`).
    Download,
}

impl Op {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Decode => "decode",
            Self::Download => "download",
        }
    }
}

/// The `result` label: `ok` or the error class.
pub fn result_label(result: Result<(), ErrorClass>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(ErrorClass::InvalidInput) => "invalid_input",
        Err(ErrorClass::TooLarge) => "too_large",
        Err(ErrorClass::NotFound) => "not_found",
        Err(ErrorClass::Forbidden) => "forbidden",
        Err(ErrorClass::Unauthenticated) => "unauthenticated",
        Err(ErrorClass::SlowClient) => "slow_client",
        Err(ErrorClass::UnsupportedMediaType) => "invalid_input",
        Err(ErrorClass::Unavailable) => "unavailable",
        Err(ErrorClass::Internal) => "internal",
    }
}

/// One transport and operation's request series.
struct RequestSeries {
    ok: prometheus::IntCounter,
    duration: prometheus::Histogram,
    payloads: prometheus::IntCounter,
    payload_bytes: prometheus::IntCounter,
}

/// Per-namespace key series, refreshed at scrape time.
struct KeySeries {
    uses: GaugeVec,
    soft_limit: GaugeVec,
    hard_limit: GaugeVec,
    usage_ratio: GaugeVec,
    age: GaugeVec,
    max_age: GaugeVec,
    rotations: IntCounterVec,
    hard_limit_refusals: IntCounterVec,
    rotation_failures: IntCounterVec,
    cache_entries: IntGauge,
    /// The (`temporal_namespace`, `entry`) pairs published at the last scrape.
    published: BTreeSet<(String, String)>,
}

impl KeySeries {
    /// Drops every series of a namespace the keyring no longer holds.
    fn remove(&self, namespace: &str, entry: &str) {
        let l = [namespace, entry];
        for gauge in [
            &self.uses,
            &self.soft_limit,
            &self.hard_limit,
            &self.usage_ratio,
            &self.age,
            &self.max_age,
        ] {
            let _ = gauge.remove_label_values(&l);
        }
        for counter in [&self.hard_limit_refusals, &self.rotation_failures] {
            let _ = counter.remove_label_values(&l);
        }
        for reason in RotationReason::ALL {
            let _ = self
                .rotations
                .remove_label_values(&[namespace, entry, reason.as_str()]);
        }
    }
}

/// The standard `process_*` series (CPU, resident memory, open file descriptors, start time),
/// where the platform has them (Linux).
#[cfg(target_os = "linux")]
fn register_process_metrics(registry: &Registry) -> Result<(), MetricsError> {
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn register_process_metrics(_registry: &Registry) -> Result<(), MetricsError> {
    Ok(())
}

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    payloads: IntCounterVec,
    payload_bytes: IntCounterVec,
    /// The series a successful request touches, per transport and operation, resolved on first
    /// use: label lookups (a hash and a lock each) stay off the hot path.
    resolved: [[std::sync::OnceLock<RequestSeries>; 3]; 2],
    ready: Gauge,
    audit_shed: IntCounterVec,
    keys: Mutex<KeySeries>,
    certificates: Certificates,
    keyring: Arc<Keyring>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// When each TLS listener's served certificate expires, read at scrape time (certificates are
/// reloaded in place).
struct Certificates {
    not_after: GaugeVec,
    sources: Mutex<Vec<(&'static str, CertificateSource)>>,
}

/// Reads a listener's current certificate expiry (Unix seconds), `None` once it is gone.
type CertificateSource = Box<dyn Fn() -> Option<i64> + Send + Sync>;

/// Why the registry could not be built (a duplicate or invalid metric: a bug).
#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, MetricsError> {
    let vec = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

impl Metrics {
    /// Registers every metric, including the keyring's counters.
    pub fn new(keyring: Arc<Keyring>) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let requests = counter_vec(
            &registry,
            "kmscodec_requests_total",
            "Codec requests by transport, operation and result.",
            &["transport", "op", "result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "kmscodec_request_duration_seconds",
                "Codec request latency.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
            &["transport", "op"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let payloads = counter_vec(
            &registry,
            "kmscodec_payloads_total",
            "Payloads received in codec requests.",
            &["transport", "op"],
        )?;
        let payload_bytes = counter_vec(
            &registry,
            "kmscodec_payload_bytes_total",
            "Bytes of payload data and metadata received in codec requests.",
            &["transport", "op"],
        )?;
        let audit_shed = counter_vec(
            &registry,
            "kmscodec_audit_shed_total",
            "Codec requests refused with 503 audit_unavailable because the audit log could not keep up.",
            &["listener"],
        )?;
        let ready = Gauge::new(
            "kmscodec_ready",
            "1 when the key providers are reachable and the process is not draining.",
        )?;
        registry.register(Box::new(ready.clone()))?;
        let build = GaugeVec::new(
            Opts::new("kmscodec_build_info", "Build information."),
            &["version"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);

        let stats = keyring.stats();
        registry.register(Box::new(stats.cache_hits.clone()))?;
        registry.register(Box::new(stats.cache_misses.clone()))?;
        registry.register(Box::new(stats.provider_calls.clone()))?;
        registry.register(Box::new(stats.provider_seconds.clone()))?;
        registry.register(Box::new(stats.compression_payloads.clone()))?;
        registry.register(Box::new(stats.compression_input_bytes.clone()))?;
        registry.register(Box::new(stats.compression_output_bytes.clone()))?;

        let ns = &["temporal_namespace", "entry"];
        let keys = KeySeries {
            uses: gauge_vec(
                &registry,
                "kmscodec_data_key_uses",
                "Seals under the active data key.",
                ns,
            )?,
            soft_limit: gauge_vec(
                &registry,
                "kmscodec_data_key_soft_limit",
                "Seals after which the data key is replaced in the background.",
                ns,
            )?,
            hard_limit: gauge_vec(
                &registry,
                "kmscodec_data_key_hard_limit",
                "Seals after which the data key is never used again.",
                ns,
            )?,
            usage_ratio: gauge_vec(
                &registry,
                "kmscodec_data_key_usage_ratio",
                "Seals under the active data key divided by the hard limit.",
                ns,
            )?,
            age: gauge_vec(
                &registry,
                "kmscodec_data_key_age_seconds",
                "Age of the active data key.",
                ns,
            )?,
            max_age: gauge_vec(
                &registry,
                "kmscodec_data_key_max_age_seconds",
                "Age after which the data key is never used again.",
                ns,
            )?,
            rotations: counter_vec(
                &registry,
                "kmscodec_data_key_rotations_total",
                "New data keys by reason (initial, count, age, bytes, manual).",
                &["temporal_namespace", "entry", "reason"],
            )?,
            hard_limit_refusals: counter_vec(
                &registry,
                "kmscodec_data_key_hard_limit_refusals_total",
                "Seal reservations refused because the data key reached its hard limit.",
                ns,
            )?,
            rotation_failures: counter_vec(
                &registry,
                "kmscodec_data_key_rotation_failures_total",
                "Failed attempts to mint a data key.",
                ns,
            )?,
            cache_entries: {
                let gauge = IntGauge::new(
                    "kmscodec_decode_cache_entries",
                    "Unwrapped data keys in the decode cache.",
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            published: BTreeSet::new(),
        };
        register_process_metrics(&registry)?;
        let certificates = Certificates {
            not_after: gauge_vec(
                &registry,
                "kmscodec_tls_certificate_not_after_seconds",
                "Unix time at which the certificate a TLS listener serves expires.",
                &["listener"],
            )?,
            sources: Mutex::new(Vec::new()),
        };
        Ok(Self {
            registry,
            requests,
            duration,
            payloads,
            payload_bytes,
            resolved: Default::default(),
            ready,
            audit_shed,
            keys: Mutex::new(keys),
            certificates,
            keyring,
        })
    }

    /// Counts a codec request shed because the audit log had no room.
    pub fn audit_shed(&self, listener: &str) {
        self.audit_shed.with_label_values(&[listener]).inc();
    }

    /// Records one codec request.
    pub fn observe(
        &self,
        transport: Transport,
        op: Op,
        result: Result<(), ErrorClass>,
        payloads: usize,
        bytes: usize,
        elapsed: Duration,
    ) {
        let series = self.resolved[transport as usize][op as usize].get_or_init(|| {
            let labels = [transport.as_str(), op.as_str()];
            RequestSeries {
                ok: self
                    .requests
                    .with_label_values(&[labels[0], labels[1], result_label(Ok(()))]),
                duration: self.duration.with_label_values(&labels),
                payloads: self.payloads.with_label_values(&labels),
                payload_bytes: self.payload_bytes.with_label_values(&labels),
            }
        });
        match result {
            Ok(()) => series.ok.inc(),
            Err(_) => self
                .requests
                .with_label_values(&[transport.as_str(), op.as_str(), result_label(result)])
                .inc(),
        }
        series.duration.observe(elapsed.as_secs_f64());
        series.payloads.inc_by(payloads as u64);
        series.payload_bytes.inc_by(bytes as u64);
    }

    /// Registers more metric families (the external storage series).
    pub fn register(
        &self,
        collectors: Vec<Box<dyn prometheus::core::Collector>>,
    ) -> Result<(), MetricsError> {
        for collector in collectors {
            self.registry.register(collector)?;
        }
        Ok(())
    }

    /// Sets the readiness gauge.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(if ready { 1.0 } else { 0.0 });
    }

    /// Refreshes the per-namespace series from the keyring: one series per Temporal namespace
    /// the keyring holds, and none for a namespace it no longer holds.
    async fn refresh_keys(&self) {
        self.keyring.sync_cache().await;
        let snapshot = self.keyring.snapshot();
        let Ok(mut keys) = self.keys.lock() else {
            return;
        };
        keys.cache_entries.set(self.keyring.cached_keys() as i64);
        let mut published = BTreeSet::new();
        for ns in snapshot {
            let l = [ns.namespace.as_str(), ns.metrics_label.as_str()];
            keys.uses.with_label_values(&l).set(ns.uses as f64);
            keys.soft_limit
                .with_label_values(&l)
                .set(ns.soft_limit as f64);
            keys.hard_limit
                .with_label_values(&l)
                .set(ns.hard_limit as f64);
            keys.usage_ratio
                .with_label_values(&l)
                .set(ns.uses as f64 / ns.hard_limit.max(1) as f64);
            keys.age.with_label_values(&l).set(ns.age_seconds);
            keys.max_age.with_label_values(&l).set(ns.max_age_seconds);
            for (reason, count) in &ns.rotations {
                advance(
                    &keys
                        .rotations
                        .with_label_values(&[l[0], l[1], reason.as_str()]),
                    *count,
                );
            }
            advance(
                &keys.hard_limit_refusals.with_label_values(&l),
                ns.hard_limit_refusals,
            );
            advance(
                &keys.rotation_failures.with_label_values(&l),
                ns.rotation_failures,
            );
            published.insert((ns.namespace, ns.metrics_label));
        }
        for (namespace, entry) in keys.published.difference(&published) {
            keys.remove(namespace, entry);
        }
        keys.published = published;
    }

    /// Reports `listener`'s certificate expiry from `source` at every scrape.
    pub fn watch_certificate(
        &self,
        listener: &'static str,
        source: impl Fn() -> Option<i64> + Send + Sync + 'static,
    ) {
        if let Ok(mut sources) = self.certificates.sources.lock() {
            sources.push((listener, Box::new(source)));
        }
    }

    fn refresh_certificates(&self) {
        let Ok(sources) = self.certificates.sources.lock() else {
            return;
        };
        for (listener, source) in sources.iter() {
            match source() {
                Some(not_after) => self
                    .certificates
                    .not_after
                    .with_label_values(&[*listener])
                    .set(not_after as f64),
                None => {
                    let _ = self
                        .certificates
                        .not_after
                        .remove_label_values(&[*listener]);
                }
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub async fn render(&self) -> String {
        self.refresh_keys().await;
        self.refresh_certificates();
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            tracing::warn!("metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Moves a counter that mirrors a monotonic total up to `total`.
fn advance(counter: &prometheus::IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}
