//! Namespace key administration, end to end, once per key provider (as rustls runs its API
//! tests once per crypto provider): the real `kmscodec` binary as the sidecar and as the
//! operator's CLI, against a local keyring file, a real OpenBao and a real moto.
//!
//! The scenario: `keys create` (twice: idempotent), encode, `keys rotate`, encode, decode both,
//! `rewrap` (ours re-sealed under the new KEK version, a foreign payload untouched),
//! `keys describe --sidecar` (versions and live usage), `keys disable-encrypt` (encode refused
//! with a clear 403, decode still works), `keys enable-encrypt`, `keys shred` (decode of that
//! namespace fails with a clear error; another namespace is unaffected). Every step's outcome is
//! checked through the sidecar's HTTP codec and the CLI's exit codes, reports and audit lines.
//!
//! Vault runs with the shipped policies: the sidecar's token holds `kmscodec-sidecar` and
//! `kmscodec-decrypt-only`, the operator's token `kmscodec-admin` only, so the test also proves
//! that the admin policy covers everything `kmscodec keys` calls. moto does not refuse keys
//! pending deletion (real KMS answers `KMSInvalidStateException`), so the AWS run goes through a
//! small loopback proxy that answers `GenerateDataKey`/`Decrypt` on such keys as KMS does and
//! forwards everything else to moto unchanged.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use common::{
    HttpResponse, Kmscodec, Moto, OpenBao, b64, http_request, kmscodec_cmd, temp_dir, unb64,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A Payloads document holding one `json/plain` payload of `text`.
fn document(text: &str) -> Value {
    json!({"payloads": [{
        "metadata": {"encoding": b64(b"json/plain")},
        "data": b64(format!("\"{text}\"").as_bytes()),
    }]})
}

fn codec(k: &Kmscodec, op: &str, namespace: &str, body: &Value) -> HttpResponse {
    http_request(
        "POST",
        &format!("{}/{op}", k.url()),
        &[
            ("Content-Type", "application/json"),
            ("X-Namespace", namespace),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap()
}

fn json_of(response: &HttpResponse) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()))
}

fn encode_ok(k: &Kmscodec, namespace: &str, text: &str) -> Value {
    let response = codec(k, "encode", namespace, &document(text));
    assert_eq!(
        response.status,
        200,
        "encode {namespace}: {}",
        response.text()
    );
    json_of(&response)
}

fn decode_ok(k: &Kmscodec, namespace: &str, sealed: &Value, text: &str) {
    let response = codec(k, "decode", namespace, sealed);
    assert_eq!(
        response.status,
        200,
        "decode {namespace}: {}",
        response.text()
    );
    let data = unb64(&json_of(&response)["payloads"][0]["data"]);
    assert_eq!(data, format!("\"{text}\"").as_bytes());
}

/// The `encryption-key-id` of the first payload.
fn key_id(sealed: &Value) -> String {
    String::from_utf8(unb64(
        &sealed["payloads"][0]["metadata"]["encryption-key-id"],
    ))
    .unwrap()
}

/// Runs `cmd` with `stdin` piped in; (exit code, stdout, stderr).
fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// A KMS key-state proxy in front of moto

/// Forwards KMS requests to moto, except `GenerateDataKey` and `Decrypt` naming a key that is
/// pending deletion or disabled: those get the error real KMS answers
/// (`KMSInvalidStateException` / `DisabledException`), which moto does not implement.
struct KeyStateProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while request.len() < head_end + length {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    Some((head, request[head_end..].to_vec()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn handle_kms(mut stream: TcpStream, moto_url: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let Some((head, body)) = read_request(&mut stream) else {
        return;
    };
    let target = header(&head, "x-amz-target").unwrap_or_default().to_owned();
    let forward = |target: &str, body: &[u8]| {
        let mut headers: Vec<(&str, &str)> = vec![("X-Amz-Target", target)];
        for name in ["authorization", "content-type", "x-amz-date"] {
            if let Some(value) = header(&head, name) {
                headers.push((name, value));
            }
        }
        http_request("POST", &format!("{moto_url}/"), &headers, body)
    };
    let mut refusal = None;
    if target.ends_with(".GenerateDataKey") || target.ends_with(".Decrypt") {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(key) = request["KeyId"].as_str() {
            let described = forward(
                "TrentService.DescribeKey",
                json!({ "KeyId": key }).to_string().as_bytes(),
            );
            if let Ok(described) = described {
                let metadata: Value =
                    serde_json::from_slice(&described.body).unwrap_or(Value::Null);
                let arn = metadata["KeyMetadata"]["Arn"].as_str().unwrap_or(key);
                refusal = match metadata["KeyMetadata"]["KeyState"].as_str() {
                    Some("PendingDeletion") => Some((
                        "KMSInvalidStateException",
                        format!("{arn} is pending deletion."),
                    )),
                    Some("Disabled") => Some(("DisabledException", format!("{arn} is disabled."))),
                    _ => None,
                };
            }
        }
    }
    let (status, content) = match refusal {
        Some((code, message)) => (
            400,
            json!({ "__type": code, "message": message })
                .to_string()
                .into_bytes(),
        ),
        None => match forward(&target, &body) {
            Ok(response) => (response.status, response.body),
            Err(_) => return,
        },
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\n\
         x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.write_all(&content);
}

impl KeyStateProxy {
    fn start(moto_url: String) -> KeyStateProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let moto_url = moto_url.clone();
                        std::thread::spawn(move || handle_kms(stream, &moto_url));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        KeyStateProxy {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for KeyStateProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One provider's fixture

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Local,
    Vault,
    Aws,
}

/// What the scenario needs from a provider: configurations for the sidecar and the operator,
/// environment, and the answers this provider gives.
struct Fixture {
    provider: Provider,
    dir: TempDir,
    sidecar_config: String,
    admin_config: PathBuf,
    env: Vec<(String, String)>,
    /// The error code of an encode in a decrypt-only namespace (always HTTP 403).
    decrypt_only_code: &'static str,
    /// The error code of a decode after the shred (always HTTP 404).
    shredded_code: &'static str,
    /// Extra arguments of `keys shred`.
    shred_args: &'static [&'static str],
    /// Whether the KEK version shows in the `encryption-key-id` (not with AWS KMS).
    versioned_key_ids: bool,
    _servers: Servers,
}

#[allow(dead_code)]
enum Servers {
    None,
    Vault(OpenBao),
    Aws(Moto, KeyStateProxy),
}

impl Fixture {
    fn new(provider: Provider) -> Fixture {
        let dir = temp_dir("admin-scenario");
        let (sidecar_config, admin_config, env, servers) = match provider {
            Provider::Local => {
                let keys = dir.path().join("keys");
                fs::create_dir_all(&keys).unwrap();
                fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).unwrap();
                let config = format!(
                    "[providers.local]\nkind = \"local\"\npath = \"{}\"\n\
                     [namespaces.\"*\"]\nprovider = \"local\"\nkey = \"kmscodec-{{namespace}}\"\n",
                    keys.join("keyring.json").display()
                );
                (config.clone(), config, Vec::new(), Servers::None)
            }
            Provider::Vault => {
                let bao = OpenBao::start();
                bao.enable_transit();
                bao.write_policy("kmscodec-sidecar", "kmscodec-sidecar.hcl");
                bao.write_policy("kmscodec-admin", "kmscodec-admin.hcl");
                // As documented: the sidecar's tokens hold the decrypt-only policy too, which
                // need not exist yet.
                let sidecar =
                    bao.token_with_policies(&["kmscodec-sidecar", "kmscodec-decrypt-only"]);
                let admin = bao.token_with_policies(&["kmscodec-admin"]);
                let config = |token: &Path| {
                    format!(
                        "[providers.vault]\nkind = \"vault\"\naddress = \"{}\"\ntimeout = \"2s\"\n\
                         [providers.vault.auth]\nmethod = \"token\"\ntoken_file = \"{}\"\n\
                         [namespaces.\"*\"]\nprovider = \"vault\"\nkey = \"kmscodec-{{namespace}}\"\n",
                        bao.addr(),
                        token.display()
                    )
                };
                let sidecar_config = config(&secret_file(dir.path(), "sidecar-token", &sidecar));
                let admin_config = config(&secret_file(dir.path(), "admin-token", &admin));
                (
                    sidecar_config,
                    admin_config,
                    Vec::new(),
                    Servers::Vault(bao),
                )
            }
            Provider::Aws => {
                let moto = Moto::start();
                let proxy = KeyStateProxy::start(moto.url());
                let config = format!(
                    "[providers.kms]\nkind = \"aws\"\nregion = \"{}\"\nendpoint = \"{}\"\n\
                     [namespaces.\"*\"]\nprovider = \"kms\"\nkey = \"alias/kmscodec/{{namespace}}\"\n",
                    common::AWS_REGION,
                    proxy.url()
                );
                let env = moto
                    .aws_env()
                    .into_iter()
                    .filter(|(name, _)| *name != "AWS_ENDPOINT_URL")
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect();
                (config.clone(), config, env, Servers::Aws(moto, proxy))
            }
        };
        let admin_path = dir.path().join("admin.toml");
        fs::write(&admin_path, admin_config).unwrap();
        let (decrypt_only_code, shredded_code, shred_args, versioned_key_ids) = match provider {
            Provider::Local => (
                "namespace_decrypt_only",
                "key_destroyed",
                &["--pending-days", "7"][..],
                true,
            ),
            // Vault's policy refuses datakey with a plain 403; a deleted key is not found, which
            // a decode reports as a payload that does not open (no key oracle).
            Provider::Vault => (
                "key_access_denied",
                "undecryptable_payload",
                &["--now"][..],
                true,
            ),
            Provider::Aws => (
                "namespace_decrypt_only",
                "key_destroyed",
                &["--pending-days", "7"][..],
                false,
            ),
        };
        Fixture {
            provider,
            dir,
            sidecar_config,
            admin_config: admin_path,
            env,
            decrypt_only_code,
            shredded_code,
            shred_args,
            versioned_key_ids,
            _servers: servers,
        }
    }

    /// `kmscodec --config <admin config> ARGS`, as the operator runs it.
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = kmscodec_cmd(&self.dir.path().join("home"), &[]);
        cmd.arg("--config").arg(&self.admin_config).args(args);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs [`Fixture::cli`]; (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = common::run(self.cli(args), Duration::from_secs(60));
        (out.status.code(), out.stdout, out.stderr)
    }

    /// Runs [`Fixture::cli`], panicking unless it exits 0; returns stdout.
    fn run_ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(
            code,
            Some(0),
            "{:?} kmscodec {args:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            self.provider
        );
        assert!(
            stderr.contains("kmscodec::audit") || !is_change(args),
            "no audit line for {args:?}: {stderr}"
        );
        stdout
    }

    fn run_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let stdout = self.run_ok(&all);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
    }

    fn start_sidecar(&self) -> Kmscodec {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Kmscodec::start_full(Some(&self.sidecar_config), &[], &env)
    }

    /// `kmscodec --config <sidecar config> rewrap` (a data operation: it needs the sidecar's
    /// data-path credentials, not the administrator's).
    fn rewrap(&self, input: &Value) -> Value {
        let config = self.dir.path().join("sidecar.toml");
        fs::write(&config, &self.sidecar_config).unwrap();
        let mut cmd = kmscodec_cmd(&self.dir.path().join("home"), &[]);
        cmd.arg("--config").arg(&config).arg("rewrap");
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        let (code, stdout, stderr) = run_with_stdin(cmd, input.to_string().as_bytes());
        assert_eq!(code, Some(0), "rewrap failed: {stderr}");
        assert!(stderr.contains("re-sealed 1 of 2 payloads"), "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    }
}

fn is_change(args: &[&str]) -> bool {
    args.get(1).is_some_and(|command| {
        matches!(
            *command,
            "create"
                | "rotate"
                | "disable-encrypt"
                | "enable-encrypt"
                | "shred"
                | "rotate-data-key"
        )
    })
}

fn error_of(response: &HttpResponse) -> (u16, String, String) {
    let body = json_of(response);
    (
        response.status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// The scenario

fn scenario(provider: Provider) {
    let started = Instant::now();
    let step = |what: &str| {
        eprintln!(
            "[{provider:?} {:>6.2}s] {what}",
            started.elapsed().as_secs_f64()
        )
    };
    let fx = Fixture::new(provider);
    step("servers ready");

    // Create: the namespace's KEK, then again (idempotent), and a second namespace.
    let created = fx.run_json(&["keys", "create", "-n", "alpha"]);
    assert_eq!(created["created"], true, "{created}");
    assert!(
        created["config"]
            .as_str()
            .unwrap()
            .contains("[namespaces.alpha]"),
        "{created}"
    );
    let again = fx.run_json(&["keys", "create", "-n", "alpha"]);
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["key_id"], created["key_id"]);
    fx.run_ok(&["keys", "create", "-n", "beta"]);
    let listed = fx.run_json(&["keys", "list"]);
    let names: Vec<&str> = listed["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"], "{listed}");
    step("created alpha and beta");

    let k = fx.start_sidecar();
    let sidecar = k.admin_url();
    step("sidecar ready");

    // Encode, rotate the KEK (the sidecar switches data keys at once), encode, decode both.
    let first = encode_ok(&k, "alpha", "one");
    let other = encode_ok(&k, "beta", "other");
    let rotated = fx.run_json(&["keys", "rotate", "-n", "alpha", "--sidecar", &sidecar]);
    assert_eq!(
        rotated["sidecars"][0]["answer"]["had_active_key"], true,
        "{rotated}"
    );
    let second = encode_ok(&k, "alpha", "two");
    if fx.versioned_key_ids {
        assert_eq!(rotated["version"], 2, "{rotated}");
        assert!(key_id(&first).ends_with(":v1"), "{}", key_id(&first));
        assert!(key_id(&second).ends_with(":v2"), "{}", key_id(&second));
    } else {
        assert_eq!(key_id(&first), key_id(&second));
    }
    assert_ne!(
        first["payloads"][0]["data"], second["payloads"][0]["data"],
        "a new data key after the rotation"
    );
    decode_ok(&k, "alpha", &first, "one");
    decode_ok(&k, "alpha", &second, "two");
    step("rotated; old and new payloads decode");

    // Rewrap: ours re-sealed under the current KEK version, a foreign payload untouched.
    let foreign = json!({
        "metadata": {"encoding": b64(b"binary/encrypted"), "encryption-key-id": b64(b"someone-else")},
        "data": b64(b"not ours: no KMSC magic"),
    });
    let mixed = json!({"payloads": [first["payloads"][0].clone(), foreign.clone()]});
    let rewrapped = fx.rewrap(&mixed);
    assert_eq!(rewrapped["payloads"][1], foreign, "foreign payload changed");
    let resealed = json!({"payloads": [rewrapped["payloads"][0].clone()]});
    assert_ne!(
        resealed["payloads"][0]["data"],
        first["payloads"][0]["data"]
    );
    if fx.versioned_key_ids {
        assert!(key_id(&resealed).ends_with(":v2"), "{}", key_id(&resealed));
    }
    decode_ok(&k, "alpha", &resealed, "one");
    step("rewrapped");

    // Describe: versions from the provider, live usage from the sidecar.
    let described = fx.run_json(&["keys", "describe", "-n", "alpha", "--sidecar", &sidecar]);
    let description = &described["description"];
    assert_eq!(description["primary_version"], 2, "{described}");
    assert_eq!(
        description["versions"].as_array().unwrap().len(),
        2,
        "{described}"
    );
    assert_eq!(description["encrypt_enabled"], true);
    let usage = &described["sidecars"][0]["usage"];
    assert!(usage["uses"].as_u64().unwrap() >= 1, "{described}");
    assert_eq!(usage["rotations"]["manual"], 1, "{described}");
    assert_eq!(usage["hard_limit"], 1u64 << 24);
    let table = fx.run_ok(&["keys", "describe", "-n", "alpha", "--sidecar", &sidecar]);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("encrypt ") && line.ends_with(" enabled")),
        "{table}"
    );
    step("described");

    // Decrypt-only: encode refused with a clear 403, decode still works.
    fx.run_ok(&[
        "keys",
        "disable-encrypt",
        "-n",
        "alpha",
        "--sidecar",
        &sidecar,
    ]);
    let refused = codec(&k, "encode", "alpha", &document("three"));
    let (status, code, message) = error_of(&refused);
    assert_eq!(
        (status, code.as_str()),
        (403, fx.decrypt_only_code),
        "{message}"
    );
    eprintln!("{provider:?} decrypt-only encode: {status} {code}: {message}");
    decode_ok(&k, "alpha", &first, "one");
    decode_ok(&k, "alpha", &second, "two");
    encode_ok(&k, "beta", "unaffected");
    let described = fx.run_json(&["keys", "describe", "-n", "alpha"]);
    assert_eq!(
        described["description"]["encrypt_enabled"], false,
        "{described}"
    );
    assert_eq!(
        described["description"]["decrypt_enabled"], true,
        "{described}"
    );
    step("decrypt-only");

    fx.run_ok(&["keys", "enable-encrypt", "-n", "alpha"]);
    let third = encode_ok(&k, "alpha", "three");
    decode_ok(&k, "alpha", &third, "three");
    step("encrypt enabled again");

    // Shred: a wrong confirmation does nothing; the right one destroys (or schedules).
    let (code, _, stderr) = fx.run(&["keys", "shred", "-n", "alpha", "--confirm", "beta"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("does not match"), "{stderr}");
    decode_ok(&k, "alpha", &first, "one");
    let mut args = vec!["keys", "shred", "-n", "alpha", "--confirm", "alpha"];
    args.extend(fx.shred_args);
    args.extend(["--sidecar", &sidecar]);
    let (code, report, stderr) = fx.run(&args);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert!(
        report.contains("UNREADABLE: every payload sealed for namespace \"alpha\""),
        "{report}"
    );
    assert!(
        report.contains("Payloads of other namespaces are not affected."),
        "{report}"
    );
    assert!(
        stderr.contains("op=\"shred\"") && stderr.contains("kmscodec::audit"),
        "{stderr}"
    );
    eprintln!("{provider:?} shred report:\n{report}");
    for sealed in [&first, &second, &third, &resealed] {
        let (status, code, message) = error_of(&codec(&k, "decode", "alpha", sealed));
        let expected_status = if fx.shredded_code == "undecryptable_payload" {
            400
        } else {
            404
        };
        assert_eq!(
            (status, code.as_str()),
            (expected_status, fx.shredded_code),
            "{message}"
        );
    }
    let (status, code, message) = error_of(&codec(&k, "decode", "alpha", &first));
    eprintln!("{provider:?} decode after shred: {status} {code}: {message}");
    let (status, _, _) = error_of(&codec(&k, "encode", "alpha", &document("four")));
    assert_eq!(status, 404);
    // Another namespace: old payloads decode (after the cache was emptied), new ones round trip.
    decode_ok(&k, "beta", &other, "other");
    let fresh = encode_ok(&k, "beta", "fresh");
    decode_ok(&k, "beta", &fresh, "fresh");
    step("shredded; beta unaffected");

    // The sidecar audited what it was told to do.
    let log = k.guard.log();
    assert!(log.contains("op=\"rotate-data-key\""), "{log}");
    assert!(log.contains("op=\"forget-data-keys\""), "{log}");
    step("done");
}

macro_rules! scenario_for_each_provider {
    ($($name:ident => $provider:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scenario($provider);
            }
        )*
    };
}

scenario_for_each_provider! {
    scenario_local_file => Provider::Local,
    scenario_vault_transit => Provider::Vault,
    scenario_aws_kms => Provider::Aws,
}
