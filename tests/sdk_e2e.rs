//! Temporal SDK workers on kmscodec, end to end, with the shipped examples (`examples/python`,
//! `examples/typescript`) against a real `temporal server start-dev`:
//!
//! - Python and TypeScript workers, each over HTTP and over gRPC (TCP and a Unix socket), run the
//!   demo workflow (activity, child workflow, failing activity with encoded failure attributes,
//!   query, signal, search attribute); the raw history holds none of the run's values in any
//!   form, the CLI with `--codec-endpoint` shows all of them, and the search attribute stays
//!   readable and indexed.
//! - A Python worker and a TypeScript client on two kmscodec processes that share a keyring file
//!   interoperate, through an outage of the worker's sidecar (the workflow task fails and
//!   retries, nothing leaves unsealed).
//! - The TypeScript examples type-check.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::sdk::{
    DemoRun, Language, TypeScriptExample, assert_demo_result, run_client, start_worker,
};
use common::{
    Kmscodec, Temporal, free_port, hermetic_command, kmscodec_cmd, repo_root, run, run_ok,
    temp_dir, tool, wait_for,
};
use serde_json::Value;

const ENCRYPTED: &str = "binary/encrypted";

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn python_and_typescript_workers_seal_every_payload_over_http_and_grpc() {
    let started = Instant::now();
    let temporal = Temporal::start(None);
    register_order_id(&temporal);
    let socket_dir = temp_dir("sdk-socket");
    let socket = socket_dir.path().join("codec.sock");
    let grpc_port = free_port();
    let codec = Kmscodec::start_with(
        None,
        &[
            "--grpc-listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--grpc-unix-socket",
            socket.to_str().unwrap(),
        ],
    );
    let typescript = TypeScriptExample::new();
    let logs = temp_dir("sdk-logs");
    let setup = started.elapsed();

    let http = codec.url();
    let grpc_tcp = format!("grpc://127.0.0.1:{grpc_port}");
    let grpc_unix = format!("unix://{}", socket.display());
    // Each gRPC variant's worker and client use the two address forms, so both languages are
    // tested on TCP and on the Unix socket.
    let variants = [
        Variant::new("py-http", Language::Python, &http, &http),
        Variant::new("py-grpc", Language::Python, &grpc_unix, &grpc_tcp),
        Variant::new("ts-http", Language::TypeScript, &http, &http),
        Variant::new("ts-grpc", Language::TypeScript, &grpc_tcp, &grpc_unix),
    ];
    // The four run in parallel: separate task queues, workflow ids and values.
    let outcomes: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = variants
            .iter()
            .map(|variant| {
                let (temporal, typescript, logs, http) = (&temporal, &typescript, &logs, &http);
                scope.spawn(move || variant.run(temporal, typescript, logs.path(), http))
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut failed = Vec::new();
    for (variant, outcome) in variants.iter().zip(&outcomes) {
        match outcome {
            Ok(timing) => eprintln!("{}: {timing}", variant.label),
            Err(_) => failed.push(variant.label),
        }
    }
    assert!(
        failed.is_empty(),
        "variants failed: {failed:?} (their panics are printed above); kmscodec log:\n{}",
        codec.guard.log_tail(40)
    );
    eprintln!(
        "setup (dev server, kmscodec, example copy) {setup:.1?}, total {:.1?}",
        started.elapsed()
    );
}

#[test]
fn python_worker_and_typescript_client_interoperate_through_two_sidecars() {
    let started = Instant::now();
    let temporal = Temporal::start(None);
    register_order_id(&temporal);
    // One keyring file read by two kmscodec processes, as two replicas would share a KMS key.
    let keys = temp_dir("sdk-keyring");
    let keyring = keys.path().join("keyring.json");
    let mut init = kmscodec_cmd(
        &keys.path().join("home"),
        &["keys", "init", "--key", "shared"],
    );
    init.arg("--keyring").arg(&keyring);
    run_ok(init, Duration::from_secs(30));
    let config = format!(
        "[providers.local]\nkind = \"local\"\npath = \"{}\"\n\n\
         [namespaces.\"*\"]\nprovider = \"local\"\nkey = \"shared\"\n",
        keyring.display()
    );
    let socket_dir = temp_dir("sdk-socket");
    let socket = socket_dir.path().join("codec.sock");
    let mut worker_sidecar = Kmscodec::start_with(
        Some(&config),
        &["--grpc-unix-socket", socket.to_str().unwrap()],
    );
    let client_sidecar = Kmscodec::start_with(Some(&config), &[]);
    let typescript = TypeScriptExample::new();
    let logs = temp_dir("sdk-logs");
    let demo = DemoRun::new("interop");

    let mut worker = start_worker(
        Language::Python,
        None,
        &temporal,
        &demo.task_queue,
        &format!("unix://{}", socket.display()),
        logs.path(),
    );
    // The worker's sidecar goes down before the workflow starts: the worker cannot open the
    // workflow's input, so its first workflow task fails (and nothing it would send is sealed,
    // so nothing is sent).
    worker_sidecar.guard.kill();
    let output = thread::scope(|scope| {
        let client = scope.spawn(|| {
            run_client(
                Language::TypeScript,
                Some(&typescript),
                &temporal,
                &client_sidecar.url(),
                &demo,
                &logs.path().join("home"),
            )
        });
        wait_for("a failed workflow task", Duration::from_secs(90), || {
            raw_history(&temporal, &demo.workflow_id)
                .is_some_and(|h| !events(&h, "EVENT_TYPE_WORKFLOW_TASK_FAILED").is_empty())
        });
        let seen = Instant::now();
        worker_sidecar.restart();
        let restarted = seen.elapsed();
        let output = client.join().expect("client thread");
        eprintln!(
            "failed workflow task seen; worker sidecar back after {restarted:.1?}, workflow \
             done {:.1?} after the failure was seen",
            seen.elapsed()
        );
        output
    })
    .unwrap_or_else(|out| {
        panic!(
            "TypeScript client failed:\n{out}\nPython worker log:\n{}",
            worker.log_tail(60)
        )
    });
    assert_demo_result(&output, &demo);

    let history = assert_sealed_in_history(&temporal, &demo, Language::Python.stack_marker());
    let failed_task = events(&history, "EVENT_TYPE_WORKFLOW_TASK_FAILED");
    assert!(!failed_task.is_empty(), "no failed workflow task recorded");
    eprintln!(
        "recorded workflow task failure (plain text, no payload data): {}",
        failed_task[0]["workflowTaskFailedEventAttributes"]["failure"]["message"]
    );
    // Both sidecars open everything: each payload carries its wrapped data key.
    assert_decoded_by(&temporal, &client_sidecar.url(), &demo, Language::Python);
    assert_decoded_by(&temporal, &worker_sidecar.url(), &demo, Language::Python);
    assert_listed_by_order(&temporal, &demo);
    let status = worker.terminate(Duration::from_secs(30));
    assert!(status.success(), "worker exited with {status} on SIGTERM");
    eprintln!("interop test total {:.1?}", started.elapsed());
}

#[test]
fn sdk_codecs_answer_in_milliseconds_on_every_transport() {
    let socket_dir = temp_dir("sdk-socket");
    let socket = socket_dir.path().join("codec.sock");
    let grpc_port = free_port();
    let codec = Kmscodec::start_with(
        None,
        &[
            "--grpc-listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--grpc-unix-socket",
            socket.to_str().unwrap(),
        ],
    );
    let endpoints = [
        codec.url(),
        format!("grpc://127.0.0.1:{grpc_port}"),
        format!("unix://{}", socket.display()),
    ];
    let scripts = repo_root().join("tests/e2e");
    let mut python = hermetic_command(tool("python"), &socket_dir.path().join("home"));
    python
        .arg(scripts.join("codec_latency.py"))
        .args(["--calls", "200"])
        .args(&endpoints);
    let typescript = TypeScriptExample::new();
    typescript.add_source(&scripts.join("codec_latency.ts"));
    let mut node = typescript.command("codec_latency");
    node.args(["--calls", "200"]).args(&endpoints);

    let mut lines = 0;
    for command in [python, node] {
        let out = run(command, Duration::from_secs(180));
        assert!(
            out.status.success(),
            "latency script failed\n{}",
            out.both()
        );
        for line in out.stdout.lines() {
            let figures: Value = serde_json::from_str(line).unwrap();
            eprintln!("{figures}");
            // A healthy loopback call takes about a millisecond; 40 ms is the signature of
            // Nagle's algorithm meeting a delayed ACK (a listener without TCP_NODELAY).
            for key in ["encode_p50_ms", "decode_p50_ms"] {
                let p50 = figures[key].as_f64().unwrap();
                assert!(p50 < 25.0, "{key} {p50} ms: {figures}");
            }
            lines += 1;
        }
    }
    assert_eq!(lines, 12, "2 SDKs x 3 endpoints x 2 batch sizes");
}

#[test]
fn typescript_examples_typecheck() {
    let example = TypeScriptExample::new();
    let tsc = common::tools_dir().join("node/node_modules/typescript/bin/tsc");
    let mut cmd = hermetic_command(tool("node"), &example.dir().join("home"));
    cmd.current_dir(example.dir()).arg(tsc).args(["-p", "."]);
    let out = run(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "tsc -p examples/typescript failed\n{}",
        out.both()
    );
}

// ---------------------------------------------------------------------------------------------
// One worker + client run

struct Variant {
    label: &'static str,
    language: Language,
    worker_codec: String,
    client_codec: String,
}

impl Variant {
    fn new(label: &'static str, language: Language, worker: &str, client: &str) -> Variant {
        Variant {
            label,
            language,
            worker_codec: worker.to_string(),
            client_codec: client.to_string(),
        }
    }

    /// Starts the worker, runs the client, checks the history three ways, stops the worker.
    fn run(
        &self,
        temporal: &Temporal,
        typescript: &TypeScriptExample,
        logs: &Path,
        decode_url: &str,
    ) -> String {
        let label = self.label;
        let demo = DemoRun::new(label);
        let t0 = Instant::now();
        let mut worker = start_worker(
            self.language,
            Some(typescript),
            temporal,
            &demo.task_queue,
            &self.worker_codec,
            logs,
        );
        let ready = t0.elapsed();
        let output = run_client(
            self.language,
            Some(typescript),
            temporal,
            &self.client_codec,
            &demo,
            &logs.join("home"),
        )
        .unwrap_or_else(|out| panic!("{label}: client failed:\n{out}"));
        let workflow = t0.elapsed() - ready;
        assert_demo_result(&output, &demo);
        assert_sealed_in_history(temporal, &demo, self.language.stack_marker());
        assert_decoded_by(temporal, decode_url, &demo, self.language);
        assert_listed_by_order(temporal, &demo);
        let checks = t0.elapsed() - ready - workflow;
        let status = worker.terminate(Duration::from_secs(30));
        assert!(
            status.success(),
            "{label}: worker exited with {status} on SIGTERM"
        );
        format!(
            "worker ready {ready:.1?}, client (start, query, signal, result) {workflow:.1?}, \
             history checks {checks:.1?}"
        )
    }
}

// ---------------------------------------------------------------------------------------------
// History checks

/// `OrderId`, a Keyword search attribute the demo workflow upserts. The dev server predefines no
/// custom search attributes, so the test registers it, as a user does once per namespace.
fn register_order_id(temporal: &Temporal) {
    temporal.cli_ok(&[
        "operator",
        "search-attribute",
        "create",
        "--name",
        "OrderId",
        "--type",
        "Keyword",
        "-n",
        "default",
    ]);
}

fn show_args(workflow_id: &str) -> Vec<&str> {
    vec![
        "workflow",
        "show",
        "-w",
        workflow_id,
        "-n",
        "default",
        "--output",
        "json",
    ]
}

/// `temporal workflow show --output json` without a codec, or None while it fails.
fn raw_history(temporal: &Temporal, workflow_id: &str) -> Option<Value> {
    let out = run(
        temporal.cli(&show_args(workflow_id)),
        Duration::from_secs(60),
    );
    out.status
        .success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

/// The events of `event_type` (`EVENT_TYPE_…`) in a history.
fn events<'a>(history: &'a Value, event_type: &str) -> Vec<&'a Value> {
    history["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["eventType"] == event_type)
                .collect()
        })
        .unwrap_or_default()
}

fn event<'a>(history: &'a Value, event_type: &str) -> &'a Value {
    events(history, event_type)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {event_type} in history:\n{history:#}"))
}

/// Every Payload (an object with `metadata` and `data`) with its JSON path.
fn payloads<'a>(value: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("metadata") && map.contains_key("data") {
                out.push((path.to_string(), value));
            }
            for (key, child) in map {
                payloads(child, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                payloads(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn all_payloads(history: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    payloads(history, "", &mut out);
    out
}

/// Standard base64 (the CLI's JSON output for bytes) decoded as lossy UTF-8.
fn unbase64(text: &str) -> Option<String> {
    base64_simd::STANDARD
        .decode_to_vec(text.as_bytes())
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn encoding(payload: &Value) -> String {
    payload["metadata"]["encoding"]
        .as_str()
        .and_then(unbase64)
        .unwrap_or_else(|| format!("<no encoding in {payload}>"))
}

fn data_text(payload: &Value) -> String {
    payload["data"]
        .as_str()
        .and_then(unbase64)
        .unwrap_or_default()
}

fn data_json(payload: &Value) -> Value {
    let text = data_text(payload);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("payload data is not JSON ({e}): {text}"))
}

/// Every string in `value`, plus the decoded text of each one that is base64: whatever the CLI
/// prints as a string (messages, stack traces) or as base64 bytes (payload data, metadata).
fn readable_texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            out.push(text.clone());
            if let Some(decoded) = unbase64(text) {
                out.push(decoded);
            }
        }
        Value::Object(map) => {
            for (key, child) in map {
                out.push(key.clone());
                readable_texts(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|child| readable_texts(child, out)),
        _ => {}
    }
}

/// The raw history (no codec) holds none of the run's values, in plain text or base64, and no
/// stack trace of the failing activity; every payload but the search attribute is sealed; the
/// activity failure keeps only "Encoded failure" in clear; the search attribute is readable.
/// Returns the raw history.
fn assert_sealed_in_history(temporal: &Temporal, demo: &DemoRun, stack_marker: &str) -> Value {
    let raw = temporal.cli_ok(&show_args(&demo.workflow_id));
    let history: Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("CLI JSON ({e}):\n{raw}"));
    let mut texts = Vec::new();
    readable_texts(&history, &mut texts);
    for secret in demo.secrets().into_iter().chain([stack_marker]) {
        if let Some(text) = texts.iter().find(|t| t.contains(secret)) {
            panic!(
                "{}: {secret:?} readable in the raw history: {text:?}",
                demo.workflow_id
            );
        }
    }

    let found = all_payloads(&history);
    let mut sealed = 0;
    for (path, payload) in &found {
        if path.contains("/searchAttributes/") {
            continue;
        }
        assert_eq!(encoding(payload), ENCRYPTED, "unsealed payload at {path}");
        sealed += 1;
    }
    // Input, activity input and result, child input and result, failing activity input, its
    // failure (and last failure), signal, result.
    assert!(
        sealed >= 9,
        "{}: only {sealed} sealed payloads:\n{raw}",
        demo.workflow_id
    );

    let failure = &event(&history, "EVENT_TYPE_ACTIVITY_TASK_FAILED")["activityTaskFailedEventAttributes"]
        ["failure"];
    assert_eq!(failure["message"], "Encoded failure", "{failure}");
    assert!(
        failure["stackTrace"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "stack trace in clear: {failure}"
    );
    assert_eq!(encoding(&failure["encodedAttributes"]), ENCRYPTED);

    let order = &event(&history, "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES")["upsertWorkflowSearchAttributesEventAttributes"]
        ["searchAttributes"]["indexedFields"]["OrderId"];
    assert_eq!(encoding(order), "json/plain", "search attribute {order}");
    assert_eq!(data_json(order), Value::String(demo.order.clone()));
    history
}

/// With `--codec-endpoint codec_url` the CLI shows every value of the run: input, activity
/// input and result, child result, the failing activity's message and stack trace, the signal,
/// the result.
fn assert_decoded_by(temporal: &Temporal, codec_url: &str, demo: &DemoRun, worker: Language) {
    let mut args = show_args(&demo.workflow_id);
    args.extend(["--codec-endpoint", codec_url]);
    let decoded = temporal.cli_ok(&args);
    let history: Value = serde_json::from_str(&decoded).unwrap();
    let found = all_payloads(&history);
    for (path, payload) in &found {
        assert_ne!(encoding(payload), ENCRYPTED, "still sealed at {path}");
    }
    let texts: Vec<String> = found.iter().map(|(_, p)| data_text(p)).collect();
    let greeting = format!("Hello, {}!", demo.name);
    for expected in [
        format!("\"{}\"", demo.name),
        format!("\"{greeting}\""),
        format!("\"{greeting} (checked by a child workflow)\""),
        format!("\"{}\"", demo.card),
        format!("\"{}\"", demo.note),
    ] {
        assert!(
            texts.contains(&expected),
            "{}: {expected} not among the decoded payloads {texts:#?}",
            demo.workflow_id
        );
    }

    let input = &event(&history, "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED")["workflowExecutionStartedEventAttributes"]
        ["input"]["payloads"][0];
    assert_eq!(
        data_json(input),
        serde_json::json!({"order": demo.order, "name": demo.name, "card": demo.card})
    );
    let result = &event(&history, "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED")["workflowExecutionCompletedEventAttributes"]
        ["result"]["payloads"][0];
    assert_eq!(
        data_json(result),
        serde_json::json!({
            "greeting": greeting,
            "child": format!("{greeting} (checked by a child workflow)"),
            "declined": format!("card {} was declined", demo.card),
            "approval": demo.note,
        })
    );
    let attributes = data_json(
        &event(&history, "EVENT_TYPE_ACTIVITY_TASK_FAILED")["activityTaskFailedEventAttributes"]["failure"]
            ["encodedAttributes"],
    );
    assert_eq!(
        attributes["message"],
        Value::String(format!("card {} was declined", demo.card)),
        "{attributes}"
    );
    let stack = attributes["stack_trace"].as_str().unwrap_or_default();
    assert!(
        stack.contains(worker.stack_marker()),
        "{}: decoded stack trace lacks {}: {stack:?}",
        demo.workflow_id,
        worker.stack_marker()
    );
}

/// `temporal workflow list --query 'OrderId = "…"'` finds the workflow: the search attribute is
/// indexed in clear (visibility is eventually consistent, hence the wait).
fn assert_listed_by_order(temporal: &Temporal, demo: &DemoRun) {
    let query = format!("OrderId = \"{}\"", demo.order);
    wait_for(
        &format!("{query} to list {}", demo.workflow_id),
        Duration::from_secs(30),
        || {
            let out = run(
                temporal.cli(&[
                    "workflow", "list", "-n", "default", "--query", &query, "--output", "json",
                ]),
                Duration::from_secs(30),
            );
            out.status.success() && out.stdout.contains(&demo.workflow_id)
        },
    );
}
