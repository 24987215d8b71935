//! Metrics and alerts: a real server scraped after real traffic shows exactly what was sent,
//! every metric the alert rules use is exported, and the alert rules pass `promtool test rules`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Kmscodec;
use serde_json::json;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').unwrap();
                            (key.to_owned(), value.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            (name, labels, value.parse().unwrap())
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<_> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(matching.len(), 1, "{name} {labels:?}: {matching:?}");
    matching[0].2
}

fn payloads(n: usize) -> serde_json::Value {
    let one = json!({"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IkhlbGxvIg=="});
    json!({"payloads": vec![one; n]})
}

#[tokio::test]
async fn a_scrape_after_real_traffic_shows_exactly_what_was_sent() {
    let grpc_port = common::free_port();
    let grpc_listen = format!("127.0.0.1:{grpc_port}");
    let codec = Kmscodec::start_with(None, &["--grpc-listen", &grpc_listen]);
    let client = common::http_client();
    let post = |path: &'static str, body: String| {
        client
            .post(format!("{}{path}", codec.url()))
            .header("x-namespace", "orders")
            .header("content-type", "application/json")
            .body(body)
    };
    let mut last_sealed = None;
    for _ in 0..1_234 {
        let reply = post("/encode", payloads(1).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        last_sealed = Some(reply.text().await.unwrap());
    }
    let sealed: serde_json::Value = serde_json::from_str(&last_sealed.unwrap()).unwrap();
    let three =
        json!({"payloads": [sealed["payloads"][0], sealed["payloads"][0], sealed["payloads"][0]]});
    for _ in 0..17 {
        assert_eq!(
            post("/decode", three.to_string())
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for _ in 0..5 {
        assert_eq!(
            post("/decode", "not json".to_owned())
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
    }
    let mut grpc = kmscodec::server::grpc::proto::codec_client::CodecClient::connect(format!(
        "http://{grpc_listen}"
    ))
    .await
    .unwrap();
    for _ in 0..7 {
        grpc.encode(kmscodec::server::grpc::proto::EncodeRequest {
            namespace: "orders".into(),
            payloads: vec![kmscodec::payload::Payload::default(); 2],
        })
        .await
        .unwrap();
    }

    let text = client
        .get(format!("{}/metrics", codec.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse(&text);
    let http = |op, result| {
        value(
            &samples,
            "kmscodec_requests_total",
            &[("transport", "http"), ("op", op), ("result", result)],
        )
    };
    assert_eq!(http("encode", "ok"), 1_234.0);
    assert_eq!(http("decode", "ok"), 17.0);
    assert_eq!(http("decode", "invalid_input"), 5.0);
    let grpc_ok = value(
        &samples,
        "kmscodec_requests_total",
        &[("transport", "grpc"), ("op", "encode"), ("result", "ok")],
    );
    assert_eq!(grpc_ok, 7.0);
    assert_eq!(
        value(
            &samples,
            "kmscodec_payloads_total",
            &[("transport", "http"), ("op", "encode")]
        ),
        1_234.0
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_payloads_total",
            &[("transport", "http"), ("op", "decode")]
        ),
        51.0
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_payloads_total",
            &[("transport", "grpc"), ("op", "encode")]
        ),
        14.0
    );
    // Each payload: "encoding" (8) + "json/plain" (10) + data (7) = 25 bytes.
    assert_eq!(
        value(
            &samples,
            "kmscodec_payload_bytes_total",
            &[("transport", "http"), ("op", "encode")]
        ),
        1_234.0 * 25.0
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_request_duration_seconds_count",
            &[("transport", "http"), ("op", "encode")]
        ),
        1_234.0
    );

    // The embedded default serves "orders" through the "*" entry: one data key, 1234 + 14 seals.
    assert_eq!(
        value(&samples, "kmscodec_data_key_uses", &[("namespace", "*")]),
        1_248.0
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_data_key_hard_limit",
            &[("namespace", "*")]
        ),
        16_777_216.0
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_data_key_soft_limit",
            &[("namespace", "*")]
        ),
        8_388_608.0
    );
    assert!(
        (value(
            &samples,
            "kmscodec_data_key_usage_ratio",
            &[("namespace", "*")]
        ) - 1_248.0 / 16_777_216.0)
            .abs()
            < 1e-12
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_data_key_rotations_total",
            &[("namespace", "*"), ("reason", "initial")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_data_key_rotations_total",
            &[("namespace", "*"), ("reason", "count")]
        ),
        0.0
    );
    let age = value(
        &samples,
        "kmscodec_data_key_age_seconds",
        &[("namespace", "*")],
    );
    assert!(age > 0.0 && age < 120.0, "age {age}");
    assert_eq!(
        value(
            &samples,
            "kmscodec_provider_calls_total",
            &[("provider", "local"), ("op", "generate"), ("result", "ok")]
        ),
        1.0
    );
    // Decodes of what this process sealed come from the cache: 51 hits, no unwrap.
    assert_eq!(
        value(&samples, "kmscodec_decode_cache_hits_total", &[]),
        51.0
    );
    assert_eq!(
        value(&samples, "kmscodec_decode_cache_misses_total", &[]),
        0.0
    );
    assert_eq!(value(&samples, "kmscodec_decode_cache_entries", &[]), 1.0);
    assert_eq!(value(&samples, "kmscodec_ready", &[]), 1.0);
    assert_eq!(
        value(
            &samples,
            "kmscodec_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // Every metric an alert rule uses is exported (a renamed metric would silence an alert).
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/alerts/kmscodec.rules.yaml"
    ))
    .unwrap();
    let mut referenced: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("kmscodec_"))
        .collect();
    referenced.sort_unstable();
    referenced.dedup();
    assert!(referenced.len() >= 8, "{referenced:?}");
    for name in referenced {
        assert!(
            samples.iter().any(|(n, _, _)| n == name),
            "alert rules use {name}, which is not exported"
        );
    }

    // Health answers on the admin listener too; the codec listener has no /metrics.
    assert_eq!(
        client
            .get(format!("{}/readyz", codec.admin_url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{}/metrics", codec.url()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn alert_rules_pass_promtool() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/alerts");
    let mut check = std::process::Command::new(common::tool("promtool"));
    check
        .args(["check", "rules", "kmscodec.rules.yaml"])
        .current_dir(dir);
    let output = common::run(check, Duration::from_secs(60));
    assert!(output.status.success(), "{}", output.both());
    assert!(
        output.stdout.contains("SUCCESS: 7 rules found"),
        "{}",
        output.both()
    );
    let mut test = std::process::Command::new(common::tool("promtool"));
    test.args(["test", "rules", "kmscodec.rules.test.yaml"])
        .current_dir(dir);
    let output = common::run(test, Duration::from_secs(60));
    assert!(output.status.success(), "{}", output.both());
}
