//! Hostile input and overload: a flood of large bodies stays under a memory bound while health
//! checks answer; load shedding answers 503 with Retry-After; oversized heads get 431; TLS is
//! served and a rotated certificate is picked up without a restart.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

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
    let data = common::b64(&vec![0x42u8; 3 << 20]);
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
        "POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Namespace: slow\r\nContent-Type: application/json\r\n\
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
    // The server answers 431 and closes once the head passes its limit, usually before the
    // rest is written: a broken pipe here is the expected end of the write, not a failure. The
    // answer already sent stays readable.
    let _ = write!(
        stream,
        "POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Namespace: n\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
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
        "POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Namespace: n\r\nContent-Type: application/json\r\n\
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
    slow.write_all(b"POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\n")
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

// ---------------------------------------------------------------------------------------------
// Issue 17: a sidecar that no caller can stall. Each test holds a resource the way a hostile
// caller would and asserts that health stays answered and that a well-behaved encode succeeds
// within the bound docs/threat-model.md gives for that resource.

/// How long a well-behaved request may take while the server is under the test's pressure,
/// beyond the bound the resource's own timer gives (scheduling on a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(5);

/// Encodes `x` for `namespace` until it succeeds or `within` has passed; returns how long it
/// took, panicking with the last answer when it never succeeded.
fn encode_succeeds_within(codec: &Kmscodec, namespace: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        match common::http_request(
            "POST",
            &format!("{}/encode", codec.url()),
            &[
                ("Content-Type", "application/json"),
                ("X-Namespace", namespace),
            ],
            common::json_document("x").to_string().as_bytes(),
        ) {
            Ok(response) if response.status == 200 => return started.elapsed(),
            Ok(response) => last = format!("{} {}", response.status, response.text()),
            Err(error) => last = error.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no encode succeeded within {within:?}; last answer: {last}");
}

/// Reads (and drops) what the server sends until it closes the connection: whether it did
/// within `wait`.
fn read_to_close(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// Whether GET `url` answers 200 within `within`.
fn answers_within(url: &str, within: Duration) -> bool {
    let started = Instant::now();
    common::http_ok(url) && started.elapsed() <= within
}

/// The sum of every sample of metric `name` whose labels contain all of `labels`.
fn metric(codec: &Kmscodec, name: &str, labels: &[&str]) -> f64 {
    let text = common::http_request("GET", &format!("{}/metrics", codec.admin_url()), &[], b"")
        .unwrap()
        .text();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.split(['{', ' '])
                .next()
                .is_some_and(|metric| metric == name)
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Case 1: slow bodies hold a permit for at most the request timeout, and callers without
/// credentials hold none at all.
#[test]
fn slow_bodies_and_unauthenticated_callers_cannot_hold_the_permits() {
    let dir = common::temp_dir("permits");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ui-secret-token-0123456789\n").unwrap();
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ui_port = common::free_port();
    let (_keyring, config) = local_config(&format!(
        "[server]\nmax_concurrent_requests = 4\nrequest_timeout = \"3s\"\n\
         [ui]\nlisten = \"127.0.0.1:{ui_port}\"\nauth = [\"token\"]\nmax_concurrent_requests = 2\n\
         [auth.tokens.person]\nfile = {tokens:?}\n\
         [[authz.rules]]\nprincipals = [\"token:person\"]\nnamespaces = [\"*\"]\nroles = [\"read\", \"write\"]\n"
    ));
    let codec = Kmscodec::start_with(Some(&config), &[]);
    // Four heads that promise 100,000 bytes and send one: every worker permit is taken...
    let slow: Vec<TcpStream> = (0..4)
        .map(|_| partial_request(codec.port, 100_000))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let shed = common::codec_post(&codec, "encode", "n", &common::json_document("x"));
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert!(answers_within(&format!("{}/healthz", codec.url()), SLACK));
    // ...for the request timeout at most: then each is answered 408 and closed.
    let took = encode_succeeds_within(&codec, "n", Duration::from_secs(3) + SLACK);
    eprintln!("encode succeeded {took:?} after the worker pool was taken by slow bodies");
    for mut stream in slow {
        let answer = read_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
        assert!(closed_by_server(&mut stream, Duration::from_secs(2)));
    }

    // The UI listener: callers without a token are refused before their body is read and hold
    // nothing, however many of them trickle bodies.
    let ui = |token: Option<&str>| {
        let mut stream = TcpStream::connect(("127.0.0.1", ui_port)).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Namespace: n\r\n\
             Content-Type: application/json\r\n{auth}Content-Length: 100000\r\n\r\n{{"
        )
        .unwrap();
        stream
    };
    let started = Instant::now();
    let mut strangers: Vec<TcpStream> = (0..8).map(|_| ui(None)).collect();
    for stream in &mut strangers {
        let answer = read_answer(stream);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert!(
        started.elapsed() < SLACK,
        "401s took {:?}",
        started.elapsed()
    );
    // Authenticated people in the UI take the UI's own pool, never the workers'.
    let _ui_slow: Vec<TcpStream> = (0..2)
        .map(|_| ui(Some("ui-secret-token-0123456789")))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let took = encode_succeeds_within(&codec, "n", SLACK);
    assert!(
        took < Duration::from_secs(2),
        "worker encode waited {took:?}"
    );
    let ui_shed = common::http_request(
        "POST",
        &format!("http://127.0.0.1:{ui_port}/encode"),
        &[
            ("Content-Type", "application/json"),
            ("X-Namespace", "n"),
            ("Authorization", "Bearer ui-secret-token-0123456789"),
        ],
        common::json_document("x").to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(ui_shed.status, 503, "{}", ui_shed.text());
}

/// Case 2: `PRI` and HTTP/2 connections are timed like HTTP/1 ones.
#[test]
fn partial_http2_prefaces_and_idle_http2_connections_are_closed() {
    let (_keyring, config) = local_config("[server]\nmax_connections = 8\n");
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let started = Instant::now();
    let mut held: Vec<TcpStream> = (0..7)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", codec.port)).unwrap();
            stream.write_all(b"PRI").unwrap();
            stream
        })
        .collect();
    // The eighth: a whole preface and settings, then no stream.
    let mut preface = TcpStream::connect(("127.0.0.1", codec.port)).unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    held.push(preface);
    // Every connection slot is taken: health waits in the backlog, and is answered once the
    // head timeout (10 s) closed the holders.
    let health = format!("{}/healthz", codec.url());
    common::wait_for(
        "health on the codec listener",
        Duration::from_secs(10) + SLACK,
        || common::http_ok(&health),
    );
    eprintln!(
        "health answered {:?} after 8 HTTP/2 holders",
        started.elapsed()
    );
    for stream in &mut held {
        assert!(
            read_to_close(stream, SLACK),
            "an HTTP/2 holder kept its connection"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(9));
    encode_succeeds_within(&codec, "n", SLACK);
}

/// Case 3: an audit output that stops draining sheds codec requests with 503
/// `audit_unavailable`; health, readiness and metrics keep answering; serving resumes when the
/// output drains.
#[test]
fn a_stalled_audit_output_sheds_codec_requests_and_never_freezes_health() {
    let dir = common::temp_dir("audit-fifo");
    let fifo = dir.path().join("audit.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A reader that holds the pipe open and reads nothing until told to.
    let (drain_tx, drain_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            let mut file = std::fs::File::open(fifo).unwrap();
            drain_rx.recv().unwrap();
            let mut sink = Vec::new();
            let mut buf = [0u8; 1 << 16];
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.extend_from_slice(&buf[..n]),
                }
            }
            sink.len()
        }
    });
    let (_keyring, config) = local_config(&format!(
        "[audit]\noutput = \"file\"\npath = {fifo:?}\nworker = \"all\"\n"
    ));
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    while answers.get(&503).copied().unwrap_or(0) < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never shed: {answers:?}"
        );
        let response = client
            .post(format!("{}/encode", codec.url()))
            .header("content-type", "application/json")
            .header("x-namespace", "n")
            .body(common::json_document("x").to_string())
            .send()
            .unwrap();
        let status = response.status().as_u16();
        if status == 503 {
            let body: serde_json::Value = response.json().unwrap();
            assert_eq!(body["code"], "audit_unavailable");
        }
        *answers.entry(status).or_default() += 1;
    }
    eprintln!("answers while the audit output stalled: {answers:?}");
    for url in [
        format!("{}/healthz", codec.url()),
        format!("{}/healthz", codec.admin_url()),
        format!("{}/readyz", codec.admin_url()),
        format!("{}/metrics", codec.admin_url()),
    ] {
        assert!(answers_within(&url, Duration::from_secs(2)), "{url}");
    }
    assert!(
        metric(
            &codec,
            "kmscodec_audit_shed_total",
            &["listener=\"worker\""]
        ) >= 10.0
    );
    drain_tx.send(()).unwrap();
    encode_succeeds_within(&codec, "n", SLACK);
    drop(codec);
    assert!(reader.join().unwrap() > 1 << 20);
}

/// A sealed-looking payload for `namespace` whose header names `kek` (version 1) and a wrapped
/// key of random bytes: what a caller without any key can make.
fn forged(namespace: &str, kek: &str) -> serde_json::Value {
    use kmscodec::envelope::{self, EnvelopeKey, Format, HeaderTemplate};
    use kmscodec::secret::{DataKey, KekRef, ProviderKind, WrappedKey};
    let mut wrapped = [0u8; 60];
    getrandom::fill(&mut wrapped).unwrap();
    let template = HeaderTemplate::new(
        Format::V2,
        namespace,
        ProviderKind::LocalFile,
        &KekRef {
            key: kek.to_owned(),
            version: 1,
        },
        &WrappedKey::new(wrapped.to_vec()),
    )
    .unwrap();
    let key = EnvelopeKey::new(DataKey::generate().unwrap());
    let mut data = Vec::new();
    envelope::seal(&key, &template, &mut data, |out| {
        out.extend_from_slice(b"forged")
    })
    .unwrap();
    serde_json::json!({"payloads": [{
        "metadata": {"encoding": common::b64(b"binary/encrypted")},
        "data": common::b64(&data),
    }]})
}

/// Cases 4 and 5: forged payloads take no namespace slot, reach no provider with a KEK the
/// namespace does not use, tell nothing about which keys exist, and a flood of one forgery
/// costs one provider call.
#[test]
fn forged_payloads_take_no_namespace_slot_and_reach_no_provider() {
    let (_keyring, config) = local_config("[limits]\nmax_wildcard_namespaces = 3\n");
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let unwraps = || metric(&codec, "kmscodec_provider_calls_total", &["op=\"unwrap\""]);
    // Twenty namespaces, each forged, each refused 400; none of them occupies a slot.
    for index in 0..20 {
        let namespace = format!("forged-{index}");
        let response = common::codec_post(&codec, "decode", &namespace, &forged(&namespace, "dev"));
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(common::json_of(&response)["code"], "undecryptable_payload");
    }
    for namespace in ["real-1", "real-2", "real-3"] {
        let response = common::codec_post(&codec, "encode", namespace, &common::json_document("x"));
        assert_eq!(response.status, 200, "{namespace}: {}", response.text());
    }
    // The fourth real namespace is over the limit of three: slots are for namespaces in use.
    let response = common::codec_post(&codec, "encode", "real-4", &common::json_document("x"));
    assert_eq!(response.status, 503, "{}", response.text());

    // A KEK the namespace does not use, existing or not, is the same 400 and no provider call.
    let before = unwraps();
    for kek in ["some-other-key", "no-such-key-anywhere"] {
        let response = common::codec_post(&codec, "decode", "real-1", &forged("real-1", kek));
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(common::json_of(&response)["code"], "undecryptable_payload");
    }
    assert_eq!(unwraps(), before, "a foreign KEK reached the provider");
    // The namespace's own KEK with a forged wrapped key: one provider call, however often sent.
    let one = forged("real-1", "dev");
    for _ in 0..20 {
        let response = common::codec_post(&codec, "decode", "real-1", &one);
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(common::json_of(&response)["code"], "undecryptable_payload");
    }
    assert_eq!(
        unwraps(),
        before + 1.0,
        "a repeated forgery was unwrapped again"
    );
    assert!(answers_within(&format!("{}/healthz", codec.url()), SLACK));
    encode_succeeds_within(&codec, "real-1", SLACK);
}

/// Case 6: what a web page can make a browser send to the open worker listener on loopback
/// (DNS rebinding, cross-site "simple" requests) gets no plaintext.
#[test]
fn cross_site_and_rebinding_requests_get_no_plaintext() {
    let (_keyring, config) =
        local_config("[server.cors]\nallowed_origins = [\"http://localhost:8233\"]\n");
    let codec = Kmscodec::start_with(Some(&config), &[]);
    let sealed = common::json_of(&common::codec_post(
        &codec,
        "encode",
        "ns",
        &common::json_document("top secret"),
    ))
    .to_string();
    let decode = |headers: &[(&str, &str)], path: &str| {
        common::http_request(
            "POST",
            &format!("{}{path}", codec.url()),
            headers,
            sealed.as_bytes(),
        )
        .unwrap()
    };
    for (headers, status, code) in [
        (
            &[("Content-Type", "text/plain")][..],
            415,
            "unsupported_media_type",
        ),
        (
            &[
                ("Content-Type", "application/json"),
                ("X-Namespace", "ns"),
                ("Origin", "http://evil.example"),
            ][..],
            403,
            "origin_not_allowed",
        ),
    ] {
        let response = decode(headers, "/ns/decode");
        assert_eq!(response.status, status, "{headers:?}: {}", response.text());
        assert_eq!(common::json_of(&response)["code"], code);
        assert!(!response.text().contains("top secret"));
    }
    // A rebinding page's Host: a raw request, as a browser would send it after the rebind.
    let mut stream = TcpStream::connect(("127.0.0.1", codec.port)).unwrap();
    write!(
        stream,
        "POST /ns/decode HTTP/1.1\r\nHost: attacker.example:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{sealed}",
        codec.port,
        sealed.len()
    )
    .unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("host_not_allowed"), "{answer}");
    assert!(!answer.contains("top secret"));
    // The allowed origin, and a request without one, still decode.
    let response = decode(
        &[
            ("Content-Type", "application/json"),
            ("X-Namespace", "ns"),
            ("Origin", "http://localhost:8233"),
        ],
        "/decode",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(answers_within(&format!("{}/healthz", codec.url()), SLACK));
    encode_succeeds_within(&codec, "ns", SLACK);
}

/// The codec listener's `/readyz` says whether, never why: the reason stays on the admin
/// listener.
#[test]
fn readiness_on_the_codec_listener_gives_no_reason() {
    // A provider that never answers (nothing listens on port 9): not ready from the start.
    let config = "[providers.vault]\nkind = \"vault\"\naddress = \"http://127.0.0.1:9\"\n\
                  timeout = \"1s\"\nretries = 0\n[providers.vault.auth]\nmethod = \"token\"\n\
                  token_env = \"KMSCODEC_TEST_TOKEN\"\n\
                  [namespaces.\"*\"]\nprovider = \"vault\"\nkey = \"k\"\n";
    let mut codec = Kmscodec::spawn(Some(config), &[], &[("KMSCODEC_TEST_TOKEN", "s.test")]);
    let admin = format!("{}/readyz", codec.admin_url());
    common::wait_for("not ready", Duration::from_secs(30), || {
        common::http_status(&admin) == Some(503)
    });
    let codec_answer =
        common::http_request("GET", &format!("{}/readyz", codec.url()), &[], b"").unwrap();
    assert_eq!(codec_answer.status, 503);
    assert_eq!(codec_answer.text(), "not ready\n");
    let admin_answer = common::http_request("GET", &admin, &[], b"").unwrap();
    assert!(
        admin_answer.text().len() > "not ready\n".len(),
        "{}",
        admin_answer.text()
    );
    codec.guard.kill();
}
