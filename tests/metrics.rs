//! Metrics and alerts: a real server scraped after real traffic shows exactly what was sent,
//! every metric the alert rules use is exported, and the alert rules pass `promtool test rules`.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

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

    // The embedded default serves "orders" through the "*" entry: one data key, 1234 + 14 seals,
    // reported under the Temporal namespace, with the entry beside it.
    let orders = [("temporal_namespace", "orders"), ("entry", "*")];
    assert_eq!(value(&samples, "kmscodec_data_key_uses", &orders), 1_248.0);
    assert_eq!(
        value(&samples, "kmscodec_data_key_hard_limit", &orders),
        16_777_216.0
    );
    assert_eq!(
        value(&samples, "kmscodec_data_key_soft_limit", &orders),
        8_388_608.0
    );
    assert!(
        (value(&samples, "kmscodec_data_key_usage_ratio", &orders) - 1_248.0 / 16_777_216.0).abs()
            < 1e-12
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_data_key_rotations_total",
            &[
                ("temporal_namespace", "orders"),
                ("entry", "*"),
                ("reason", "initial")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "kmscodec_data_key_rotations_total",
            &[
                ("temporal_namespace", "orders"),
                ("entry", "*"),
                ("reason", "count")
            ]
        ),
        0.0
    );
    let age = value(&samples, "kmscodec_data_key_age_seconds", &orders);
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

    // No label of ours is named `namespace` (Prometheus Operator owns that target label).
    assert!(
        samples
            .iter()
            .all(|(_, labels, _)| !labels.contains_key("namespace")),
        "a series carries a `namespace` label"
    );
    // The standard process series (CPU, memory, file descriptors). CPU is counted in whole
    // seconds, so a young process may show 0.
    assert!(value(&samples, "process_cpu_seconds_total", &[]) >= 0.0);
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(value(&samples, name, &[]) > 0.0, "{name}");
    }

    // Every metric an alert rule uses is exported (a renamed metric would silence an alert).
    // And every metric a dashboard panel queries.
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/alerts/kmscodec.rules.yaml"
    ))
    .unwrap()
        + &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/kmscodec.json"
        ))
        .unwrap();
    let mut referenced: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("kmscodec_") || word.starts_with("process_"))
        .collect();
    referenced.sort_unstable();
    referenced.dedup();
    assert!(referenced.len() >= 8, "{referenced:?}");
    // Exported only in some configurations, and checked where they are: the certificate
    // expiry with TLS listeners (tests/security.rs), audit shedding under audit back-pressure.
    let conditional = [
        "kmscodec_tls_certificate_not_after_seconds",
        "kmscodec_audit_shed_total",
    ];
    for name in referenced
        .into_iter()
        .filter(|name| !conditional.contains(name))
    {
        assert!(
            samples.iter().any(|(n, _, _)| n == name),
            "alert rules or the dashboard use {name}, which is not exported"
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

async fn scrape(codec: &Kmscodec) -> Vec<Sample> {
    let text = common::http_client()
        .get(format!("{}/metrics", codec.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse(&text)
}

#[tokio::test]
async fn each_namespace_served_by_the_wildcard_entry_has_its_own_series() {
    let dir = common::temp_dir("metrics-wildcard");
    let keyring = dir.path().join("keyring.json");
    let config = format!(
        "[limits]\nmax_wildcard_namespaces = 2\n\
         [providers.dev]\nkind = \"local\"\npath = {keyring:?}\ncreate_missing = true\n\
         [namespaces.audit]\nprovider = \"dev\"\nkey = \"dev\"\n\
         [namespaces.\"*\"]\nprovider = \"dev\"\nkey = \"dev\"\nsoft_limit = 4\nhard_limit = 8\n",
        keyring = keyring.display().to_string(),
    );
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let client = common::http_client();
    let encode = |namespace: &'static str| {
        client
            .post(format!("{}/encode", codec.url()))
            .header("x-namespace", namespace)
            .header("content-type", "application/json")
            .body(payloads(1).to_string())
            .send()
    };
    // "payments" passes its soft limit of 4 seals: the replacement is minted in the background.
    for _ in 0..6 {
        assert_eq!(encode("payments").await.unwrap().status(), 200);
    }
    assert_eq!(encode("orders").await.unwrap().status(), 200);
    assert_eq!(encode("audit").await.unwrap().status(), 200);
    // A third wildcard namespace is refused (max_wildcard_namespaces = 2): no series for it.
    assert_ne!(encode("overflow").await.unwrap().status(), 200);

    let rotated = [
        ("temporal_namespace", "payments"),
        ("entry", "*"),
        ("reason", "count"),
    ];
    // The background rotation lands within milliseconds; allow a slow machine ten seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let samples = scrape(&codec).await;
        let count = samples.iter().any(|(name, labels, value)| {
            name == "kmscodec_data_key_rotations_total"
                && *value >= 1.0
                && rotated
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        });
        if count {
            break samples;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no count rotation of payments:\n{samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let uses = |namespace, entry| {
        value(
            &samples,
            "kmscodec_data_key_uses",
            &[("temporal_namespace", namespace), ("entry", entry)],
        )
    };
    assert_eq!(uses("orders", "*"), 1.0);
    assert_eq!(uses("audit", "audit"), 1.0);
    assert!(uses("payments", "*") <= 4.0);
    let namespaces: std::collections::BTreeSet<_> = samples
        .iter()
        .filter(|(name, _, _)| name == "kmscodec_data_key_uses")
        .map(|(_, labels, _)| labels["temporal_namespace"].clone())
        .collect();
    assert_eq!(
        namespaces.into_iter().collect::<Vec<_>>(),
        ["audit", "orders", "payments"]
    );
}

/// Every alert links to its own section of docs/runbook.md: `runbook_url` ends in the alert's
/// name in lower case (GitHub's anchor of a `## Name` heading), and the heading exists.
#[test]
fn every_alert_has_its_own_runbook_section() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules =
        std::fs::read_to_string(format!("{root}/deploy/alerts/kmscodec.rules.yaml")).unwrap();
    let runbook = std::fs::read_to_string(format!("{root}/docs/runbook.md")).unwrap();
    let mut alerts = Vec::new();
    let mut current: Option<String> = None;
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            assert!(current.is_none(), "{current:?} has no runbook_url");
            current = Some(name.to_owned());
        } else if let Some(url) = line.strip_prefix("runbook_url: ") {
            let name = current.take().expect("runbook_url outside an alert");
            let expected = format!(
                "https://github.com/kmscodec/kmscodec/blob/main/docs/runbook.md#{}",
                name.to_lowercase()
            );
            assert_eq!(url, expected, "{name}");
            assert!(
                runbook.lines().any(|l| l == format!("## {name}")),
                "docs/runbook.md has no section ## {name}"
            );
            alerts.push(name);
        }
    }
    assert!(current.is_none(), "{current:?} has no runbook_url");
    assert_eq!(alerts.len(), 13, "{alerts:?}");
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
        output.stdout.contains("SUCCESS: 13 rules found"),
        "{}",
        output.both()
    );
    let mut test = std::process::Command::new(common::tool("promtool"));
    test.args(["test", "rules", "kmscodec.rules.test.yaml"])
        .current_dir(dir);
    let output = common::run(test, Duration::from_secs(60));
    assert!(output.status.success(), "{}", output.both());
}

/// The Grafana dashboard (deploy/grafana/kmscodec.json) is a well-formed dashboard: unique panel
/// ids and reference ids, panels inside the 24-column grid, every variable it uses defined, the
/// panels the operations docs promise present; and every panel query parses as PromQL
/// (`promtool check rules`, each query a recording rule, with the Grafana variables substituted).
/// The scrape test checks that every metric it names is exported.
#[test]
fn grafana_dashboard_is_valid_and_every_query_parses() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/deploy/grafana/kmscodec.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["uid"], "kmscodec");
    assert!(dashboard["title"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "temporal_namespace"]);

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in panels {
        let id = panel["id"].as_u64().unwrap();
        assert!(ids.insert(id), "duplicate panel id {id}");
        let grid = &panel["gridPos"];
        let (x, w, h) = (
            grid["x"].as_u64().unwrap(),
            grid["w"].as_u64().unwrap(),
            grid["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "panel {id} outside the grid");
        assert!(grid["y"].is_u64(), "panel {id}");
        let kind = panel["type"].as_str().unwrap();
        if kind == "row" {
            continue;
        }
        assert!(
            ["timeseries", "stat", "gauge", "table", "bargauge"].contains(&kind),
            "{kind}"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {id}");
        assert!(panel["title"].as_str().is_some_and(|t| !t.is_empty()));
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {id} has no query");
        let mut refs = std::collections::BTreeSet::new();
        for target in targets {
            assert!(refs.insert(target["refId"].as_str().unwrap()), "panel {id}");
            let expr = target["expr"].as_str().unwrap();
            // Only the dashboard's own variables and Grafana's interval.
            let mut rest = expr;
            while let Some(at) = rest.find('$') {
                let name: String = rest[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name == "__rate_interval" || variables.contains(&name.as_str()),
                    "panel {id} uses undefined ${name}"
                );
                rest = &rest[at + 1..];
            }
            exprs.push((
                format!("panel_{id}_{}", target["refId"].as_str().unwrap()),
                expr.to_owned(),
            ));
        }
    }
    // What the dashboard is for: per Temporal namespace usage and age, rotations by reason, KMS
    // calls and latency, cache hit ratio, requests by transport.
    let all: String = exprs.iter().map(|(_, e)| e.as_str()).collect();
    for needle in [
        "by (temporal_namespace) (kmscodec_data_key_usage_ratio",
        "by (temporal_namespace) (kmscodec_data_key_age_seconds",
        "by (temporal_namespace, reason) (increase(kmscodec_data_key_rotations_total",
        "by (provider, op, result) (rate(kmscodec_provider_calls_total",
        "kmscodec_provider_call_duration_seconds_bucket",
        "kmscodec_decode_cache_hits_total",
        "by (transport, op) (rate(kmscodec_requests_total",
        "by (transport, op, le) (rate(kmscodec_request_duration_seconds_bucket",
        "by (transport, op, result) (rate(kmscodec_requests_total",
    ] {
        assert!(all.contains(needle), "no panel query has {needle}");
    }

    let dir = common::temp_dir("dashboard-promql");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (name, expr) in &exprs {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$namespace", ".*")
            .replace("$temporal_namespace", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:{name}\n        expr: {}\n",
            serde_json::Value::from(expr)
        ));
    }
    std::fs::write(dir.path().join("dashboard.rules.yaml"), rules).unwrap();
    let mut check = std::process::Command::new(common::tool("promtool"));
    check
        .args(["check", "rules", "dashboard.rules.yaml"])
        .current_dir(dir.path());
    let output = common::run(check, Duration::from_secs(60));
    assert!(output.status.success(), "{}", output.both());
    assert!(
        output
            .stdout
            .contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{}",
        output.both()
    );

    // The chart ships the same file.
    let copy = std::fs::read_to_string(format!(
        "{root}/helm/kmscodec/files/kmscodec-dashboard.json"
    ))
    .unwrap();
    assert!(
        copy == text,
        "helm/kmscodec/files/kmscodec-dashboard.json differs from deploy/grafana/kmscodec.json: \
         cp deploy/grafana/kmscodec.json helm/kmscodec/files/kmscodec-dashboard.json"
    );
}
