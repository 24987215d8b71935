//! Audit scope per listener, against the real server: by default the worker listener writes a
//! line per refused request and one summary line per namespace, operation and principal per
//! interval for the rest; `decodes` adds a line per decode; `all` a line per request. Prints the
//! bytes each choice writes per 1,000 requests (the figures in docs/configuration.md).

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::Kmscodec;
use serde_json::Value;

const ENCODES: usize = 200;
const DECODES: usize = 100;
const REFUSED: usize = 3;

/// Starts kmscodec with `[audit] worker = scope` into a file, sends ENCODES encodes, DECODES
/// decodes and REFUSED malformed requests to the worker listener, closes it (SIGTERM: pending
/// lines and the last summary are written) and returns the audit lines and the file's size.
fn traffic(dir: &Path, scope: &str) -> (Vec<Value>, u64) {
    let audit = dir.join(format!("audit-{scope}.log"));
    let config = format!(
        "[audit]\noutput = \"file\"\npath = {audit:?}\nworker = \"{scope}\"\nsummary_interval = \"1h\"\n{}",
        common::local_keyring_toml(&dir.join(format!("keyring-{scope}.json")))
    );
    let mut codec = Kmscodec::start_with(Some(&config), &[]);
    let mut sealed = None;
    for _ in 0..ENCODES {
        let reply = common::codec_post(&codec, "encode", "orders", &common::json_document("x"));
        assert_eq!(reply.status, 200);
        sealed = Some(common::json_of(&reply));
    }
    let sealed = sealed.unwrap();
    for _ in 0..DECODES {
        assert_eq!(
            common::codec_post(&codec, "decode", "orders", &sealed).status,
            200
        );
    }
    for _ in 0..REFUSED {
        let reply = common::codec_post(&codec, "decode", "orders", &Value::from("not payloads"));
        assert_eq!(reply.status, 400);
    }
    // The summary interval is an hour: the summary line comes from the drain at SIGTERM.
    assert!(codec.guard.terminate(Duration::from_secs(25)).success());
    let size = fs::metadata(&audit).unwrap().len();
    (common::audit_lines(&audit), size)
}

fn is_summary(line: &Value) -> bool {
    line["kind"] == "summary"
}

#[test]
fn each_scope_writes_what_it_promises_and_summarizes_the_rest() {
    let dir = common::temp_dir("audit-scope");
    let total = (ENCODES + DECODES + REFUSED) as u64;
    let mut figures = Vec::new();

    // The default, `refusals`: a line per refused request, the rest in summary lines.
    let (lines, size) = traffic(dir.path(), "refusals");
    let (summaries, requests): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|l| is_summary(l));
    assert_eq!(requests.len(), REFUSED, "{lines:#?}");
    assert!(
        requests
            .iter()
            .all(|l| l["status"] == 400 && l["listener"] == "worker")
    );
    let mut counted: Vec<(&str, u64, &str, &str)> = summaries
        .iter()
        .map(|l| {
            (
                l["op"].as_str().unwrap(),
                l["requests"].as_u64().unwrap(),
                l["namespace"].as_str().unwrap(),
                l["principal"].as_str().unwrap(),
            )
        })
        .collect();
    counted.sort_unstable();
    assert_eq!(
        counted,
        [
            ("decode", DECODES as u64, "orders", "anonymous"),
            ("encode", ENCODES as u64, "orders", "anonymous")
        ]
    );
    for summary in &summaries {
        assert_eq!(summary["listener"], "worker");
        assert!(summary["since"].is_string() && summary["time"].is_string());
        assert_eq!(
            summary["payloads"].as_u64(),
            summary["requests"].as_u64(),
            "one payload per request"
        );
    }
    figures.push(("refusals", size));

    // `decodes`: a line per decode and per refusal; encodes summarized.
    let (lines, size) = traffic(dir.path(), "decodes");
    let requests: Vec<&Value> = lines.iter().filter(|l| !is_summary(l)).collect();
    assert_eq!(requests.len(), DECODES + REFUSED);
    assert!(requests.iter().all(|l| l["op"] == "decode"));
    let summaries: Vec<&Value> = lines.iter().filter(|l| is_summary(l)).collect();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0]["op"], "encode");
    assert_eq!(summaries[0]["requests"], ENCODES as u64);
    figures.push(("decodes", size));

    // `all`: a line per request, no summary.
    let (lines, size) = traffic(dir.path(), "all");
    assert_eq!(lines.len() as u64, total);
    assert!(!lines.iter().any(is_summary));
    figures.push(("all", size));

    // `off`: nothing at all.
    let (lines, size) = traffic(dir.path(), "off");
    assert!(lines.is_empty() && size == 0);
    figures.push(("off", size));

    for (scope, size) in figures {
        eprintln!(
            "audit scope {scope}: {size} bytes for {total} worker requests \
             ({ENCODES} encodes, {DECODES} decodes, {REFUSED} refused) = {:.0} bytes per 1,000",
            size as f64 * 1000.0 / total as f64
        );
    }
}
