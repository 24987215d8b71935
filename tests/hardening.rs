//! Hostile input and overload: a flood of large bodies stays under a memory bound while health
//! checks answer; load shedding answers 503 with Retry-After; oversized heads get 431; TLS is
//! served and a rotated certificate is picked up without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Kmscodec;
use common::pki::{client_pki, pki, tls_client};

/// A config with `extra` and a local keyring in a temp dir; keep the dir while the server runs.
fn local_config(extra: &str) -> (tempfile::TempDir, String) {
    let dir = common::temp_dir("hardening");
    let keyring = dir.path().join("k.json");
    let config = format!("{extra}{}", common::local_keyring_toml(&keyring));
    (dir, config)
}

/// Peak resident set size of a process, from `/proc/PID/status` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The documented bound (docs/operations.md, "Memory under load"): 64 MiB of base plus four
/// body sizes per request in flight.
fn memory_bound(max_in_flight: u64, body: u64) -> u64 {
    (64 << 20) + max_in_flight * 4 * body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_large_bodies_stays_under_the_memory_bound_and_health_answers() {
    const CLIENTS: usize = 64;
    const MAX_IN_FLIGHT: u64 = 16;
    let (_keyring, config) = local_config(&format!(
        "[server]\nbody_limit_bytes = \"8MiB\"\nmax_concurrent_requests = {MAX_IN_FLIGHT}\n\
         [limits]\nmax_payload_bytes = \"4MiB\"\n[audit]\noutput = \"off\"\n"
    ));
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let url = codec.url();
    // A 4 MiB body: one payload of 3 MiB (base64 makes it 4 MiB of JSON).
    let data = base64_simd::STANDARD.encode_to_string(vec![0x42u8; 3 << 20]);
    let body = Arc::new(
        serde_json::json!({"payloads": [{"metadata": {"encoding": "YmluYXJ5L3BsYWlu"}, "data": data}]})
            .to_string(),
    );
    let body_len = body.len() as u64;
    assert!(body_len >= 4 << 20, "{body_len}");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, shed, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (url, body, stop) = (url.clone(), Arc::clone(&body), Arc::clone(&stop));
        let (ok, shed, other) = (Arc::clone(&ok), Arc::clone(&shed), Arc::clone(&other));
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            while !stop.load(Ordering::Acquire) {
                let response = client
                    .post(format!("{url}/encode"))
                    .header("x-namespace", "flood")
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == 200 => {
                        response.bytes().await.unwrap();
                        ok.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(response) if response.status() == 503 => {
                        assert_eq!(
                            response
                                .headers()
                                .get("retry-after")
                                .map(|v| v.to_str().unwrap().to_owned()),
                            Some("1".to_owned())
                        );
                        shed.fetch_add(1, Ordering::AcqRel);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    failed => {
                        if other.fetch_add(1, Ordering::AcqRel) < 3 {
                            eprintln!("flood request failed: {failed:?}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    // Health checks on both listeners keep answering quickly during the flood.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut checks = 0;
    let health = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    while started.elapsed() < Duration::from_secs(12) {
        for url in [
            format!("{}/healthz", codec.admin_url()),
            format!("{url}/healthz"),
        ] {
            let before = Instant::now();
            let status = health.get(&url).send().await.map(|r| r.status().as_u16());
            assert_eq!(status.ok(), Some(200), "{url} during the flood");
            slowest = slowest.max(before.elapsed());
            checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }
    let peak = peak_rss(codec.guard.id());
    let bound = memory_bound(MAX_IN_FLIGHT, body_len);
    println!(
        "flood: {CLIENTS} clients x {} MiB bodies: {} encoded, {} shed (503), {} other; \
         {checks} health checks, slowest {slowest:?}; peak RSS {} MiB (bound {} MiB)",
        body_len >> 20,
        ok.load(Ordering::Acquire),
        shed.load(Ordering::Acquire),
        other.load(Ordering::Acquire),
        peak >> 20,
        bound >> 20
    );
    assert!(ok.load(Ordering::Acquire) > 0, "no request succeeded");
    assert_eq!(
        other.load(Ordering::Acquire),
        0,
        "requests failed other than by shedding"
    );
    assert!(peak <= bound, "peak RSS {peak} over the bound {bound}");
}

/// Sends a request head and part of its body, and keeps the connection open.
fn partial_request(port: u16, declared: usize) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /encode HTTP/1.1\r\nHost: x\r\nX-Namespace: slow\r\nContent-Type: application/json\r\n\
         Content-Length: {declared}\r\n\r\n{{\"payloads\": ["
    )
    .unwrap();
    stream.flush().unwrap();
    stream
}

#[test]
fn a_request_over_the_concurrency_limit_is_shed_with_retry_after() {
    let (_keyring, config) = local_config("[server]\nmax_concurrent_requests = 1\n");
    let codec = Kmscodec::start_with(Some(&config), &[]);
    // The one slot is taken by a request whose body is still arriving. Which of two requests
    // arriving together takes the slot is a race, so retry until the slow one holds it.
    let mut slow = partial_request(codec.port, 1000);
    let mut shed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while shed.is_none() && Instant::now() < deadline {
        let response = common::codec_post(&codec, "encode", "other", &common::json_document("x"));
        if response.status == 503 {
            shed = Some(response);
            continue;
        }
        assert_eq!(response.status, 200, "{}", response.text());
        // Was the slow request the one shed? Then it has an answer: start another.
        slow.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut probe = [0u8; 1];
        if slow.read(&mut probe).is_ok() {
            slow = partial_request(codec.port, 1000);
        }
    }
    let shed = shed.unwrap_or_else(|| panic!("{}", codec.guard.log()));
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(common::json_of(&shed)["code"], "overloaded");
    // Health is never shed.
    assert_eq!(
        common::http_status(&format!("{}/healthz", codec.url())),
        Some(200)
    );
    // Finishing the slow request frees the slot.
    let rest = format!(
        "{:width$}]}}",
        "",
        width = 1000 - "{\"payloads\": [".len() - 2
    );
    slow.write_all(rest.as_bytes()).unwrap();
    let answer = read_answer(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let response = common::codec_post(&codec, "encode", "other", &common::json_document("x"));
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn an_oversized_request_head_gets_431() {
    let (_keyring, config) = local_config("[server]\nmax_header_bytes = \"8KiB\"\n");
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let mut stream = TcpStream::connect(("127.0.0.1", codec.port)).unwrap();
    let big = "a".repeat(64 << 10);
    write!(
        stream,
        "POST /encode HTTP/1.1\r\nHost: x\r\nX-Namespace: n\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // A normal request still works.
    let response = common::codec_post(&codec, "encode", "n", &common::json_document("x"));
    assert_eq!(response.status, 200);
}

fn encode_over(client: &reqwest::blocking::Client, url: &str) -> Result<u16, String> {
    client
        .post(format!("{url}/encode"))
        .header("x-namespace", "tls")
        .header("content-type", "application/json")
        .body(common::json_document("over tls").to_string())
        .send()
        .map(|response| response.status().as_u16())
        .map_err(|error| format!("{error:?}"))
}

#[test]
fn tls_is_served_and_a_rotated_certificate_is_picked_up_without_restart() {
    let dir_guard = common::temp_dir("tls");
    let dir = dir_guard.path();
    let first = pki("first");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let (_keyring, config) = local_config(&format!(
        "[server.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n"
    ));
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let url = format!("https://127.0.0.1:{}", codec.port);
    let trusts_first = tls_client(&first.ca_pem, None);
    assert_eq!(encode_over(&trusts_first, &url), Ok(200));
    // Plain HTTP on the TLS port is not served.
    assert!(common::http_status(&format!("http://127.0.0.1:{}/healthz", codec.port)).is_none());

    // Rotate in place: a certificate from another CA.
    let second = pki("second");
    std::fs::write(&key, &second.key_pem).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    let trusts_second = tls_client(&second.ca_pem, None);
    common::wait_for("the rotated certificate", Duration::from_secs(30), || {
        encode_over(&trusts_second, &url) == Ok(200)
    });
    // A new connection (a new client: pooled connections keep their handshake) gets the new one.
    assert!(encode_over(&tls_client(&first.ca_pem, None), &url).is_err());
    assert!(codec.guard.log().contains("TLS certificate reloaded"));

    // A broken file keeps the current certificate.
    std::fs::write(&cert, "not a certificate").unwrap();
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(
        encode_over(&tls_client(&second.ca_pem, None), &url),
        Ok(200)
    );
    assert!(codec.guard.log().contains("TLS reload failed"));
}

#[test]
fn required_client_certificates_refuse_clients_without_one() {
    let dir_guard = common::temp_dir("mtls");
    let dir = dir_guard.path();
    let server = pki("server");
    let (client_ca, client_identity) = client_pki("worker-a.example");
    let (cert, key, ca) = (
        dir.join("tls.crt"),
        dir.join("tls.key"),
        dir.join("client-ca.crt"),
    );
    std::fs::write(&cert, &server.cert_pem).unwrap();
    std::fs::write(&key, &server.key_pem).unwrap();
    std::fs::write(&ca, &client_ca).unwrap();
    let (_keyring, config) = local_config(&format!(
        "[server.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\nclient_ca_file = {ca:?}\n\
         client_auth = \"required\"\n"
    ));
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let url = format!("https://127.0.0.1:{}", codec.port);
    assert!(encode_over(&tls_client(&server.ca_pem, None), &url).is_err());
    let (_, stranger) = client_pki("worker-a.example");
    assert!(encode_over(&tls_client(&server.ca_pem, Some(&stranger)), &url).is_err());
    assert_eq!(
        encode_over(&tls_client(&server.ca_pem, Some(&client_identity)), &url),
        Ok(200)
    );
}

/// Sends one encode request on `stream` and reads the answer.
fn exchange(stream: &mut TcpStream) -> String {
    let body = common::json_document("keep-alive").to_string();
    write!(
        stream,
        "POST /encode HTTP/1.1\r\nHost: x\r\nX-Namespace: n\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    read_answer(stream)
}

/// Reads one HTTP/1.1 answer from `stream`: its head and its `Content-Length` body.
fn read_answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if rest.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
}

/// Whether the server has closed `stream` (end of file or reset), waiting up to `wait`.
fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut probe = [0u8; 1];
    match stream.read(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn an_idle_keep_alive_connection_stays_usable_while_slow_and_silent_heads_are_cut_off() {
    let (_keyring, config) = local_config("");
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let connect = || TcpStream::connect(("127.0.0.1", codec.port)).unwrap();
    let mut keep = connect();
    assert!(exchange(&mut keep).starts_with("HTTP/1.1 200"));
    let mut slow = connect();
    slow.write_all(b"POST /encode HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut silent = connect();
    // Five seconds in, both are still open.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!closed_by_server(&mut slow, Duration::from_millis(100)));
    assert!(!closed_by_server(&mut silent, Duration::from_millis(100)));
    // Past the 10 s head timeout, both are closed without an answer; the keep-alive connection,
    // idle for 12 s, still serves its next request.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        closed_by_server(&mut slow, Duration::from_secs(2)),
        "slow head kept open"
    );
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(2)),
        "silent connection kept open"
    );
    let second = exchange(&mut keep);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}
