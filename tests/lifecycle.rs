//! Graceful shutdown: SIGTERM during load finishes every in-flight request, turns readiness off
//! first, stops accepting new connections, and exits 0.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Kmscodec;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_load_fails_no_in_flight_request() {
    let keyring_dir = common::temp_dir("lifecycle");
    let mut codec = Kmscodec::start_with(
        Some("[server]\nshutdown_grace = \"20s\"\n[providers.dev]\nkind = \"local\"\npath = \"KEYRING\"\ncreate_missing = true\n[namespaces.\"*\"]\nprovider = \"dev\"\nkey = \"dev\"\n"
            .replace("KEYRING", keyring_dir.path().join("k.json").to_str().unwrap())
            .as_str()),
        &[],
    );
    let url = codec.url();
    let admin = codec.admin_url();
    // 1 MiB payloads keep each request in flight for a noticeable time.
    let big = common::b64(&vec![0x5a; 1 << 20]);
    let body = Arc::new(
        json!({"payloads": [{"metadata": {"encoding": "YmluYXJ5L3BsYWlu"}, "data": big}]})
            .to_string(),
    );

    let started = Arc::new(AtomicUsize::new(0));
    let succeeded = Arc::new(AtomicUsize::new(0));
    let failed_in_flight = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (url, body) = (url.clone(), Arc::clone(&body));
        let (started, succeeded, failed, stop) = (
            Arc::clone(&started),
            Arc::clone(&succeeded),
            Arc::clone(&failed_in_flight),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            // One client per task; a request counts as in flight once its body was sent.
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                started.fetch_add(1, Ordering::AcqRel);
                let result = client
                    .post(format!("{url}/encode"))
                    .header("x-namespace", "orders")
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                match result {
                    Ok(response) if response.status() == 200 => {
                        response.bytes().await.unwrap();
                        succeeded.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(response) => {
                        failed.fetch_add(1, Ordering::AcqRel);
                        panic!("in-flight request failed with {}", response.status());
                    }
                    // After the drain starts, a *new* connection is refused: that is not an
                    // in-flight failure. Stop this client.
                    Err(error) if error.is_connect() => break,
                    Err(error) => {
                        // The request was sent on an existing connection that the server
                        // closed without answering: an in-flight failure.
                        if !stop.load(Ordering::Acquire) {
                            failed.fetch_add(1, Ordering::AcqRel);
                        }
                        let _ = error;
                        break;
                    }
                }
            }
        }));
    }
    // Let the load build up, then SIGTERM.
    common::wait_for("20 requests done", Duration::from_secs(60), || {
        succeeded.load(Ordering::Acquire) >= 20
    });
    let before = succeeded.load(Ordering::Acquire);
    let pid = codec.guard.id();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Readiness turns false at once while in-flight work finishes.
    let readyz = format!("{admin}/readyz");
    let mut saw_not_ready = false;
    for _ in 0..100 {
        match common::http_status(&readyz) {
            Some(503) => {
                saw_not_ready = true;
                break;
            }
            None => break,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let exit = codec.guard.terminate(Duration::from_secs(30));
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        exit.success(),
        "exit {exit:?}\n{}",
        codec.guard.log_tail(20)
    );
    assert_eq!(
        failed_in_flight.load(Ordering::Acquire),
        0,
        "in-flight requests failed during shutdown"
    );
    assert!(
        succeeded.load(Ordering::Acquire) >= before,
        "no request completed"
    );
    assert!(
        saw_not_ready || !common::port_open(codec.port),
        "readiness never turned false"
    );
    let log = codec.guard.log();
    assert!(log.contains("shutdown requested: draining"), "{log}");
    assert!(log.contains("drained: exiting"), "{log}");
    println!(
        "requests started {}, succeeded {}, failed in flight {}",
        started.load(Ordering::Acquire),
        succeeded.load(Ordering::Acquire),
        failed_in_flight.load(Ordering::Acquire)
    );
}
