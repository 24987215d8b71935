//! The admin HTTP API's authentication, driven two ways: the router alone with `oneshot` (peer
//! addresses set by hand), and the real binary on a real port with the CLI as its client.
//!
//! Without `[admin] token_file`: reads are open, changes only from loopback peers, never from a
//! browser (`Origin`). With it: every route needs the bearer token (401 otherwise, with
//! `WWW-Authenticate`), loopback included; the file is re-read on every request.

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
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use common::{Kmscodec, http_request, kmscodec_cmd, temp_dir};
use kmscodec::app;
use kmscodec::config::Config;
use kmscodec::server::admin_api::{AdminApiOptions, router};

const TOKEN: &str = "s3cr3t-admin-token-for-tests";

fn config_text(dir: &Path) -> String {
    format!(
        "[providers.local]\nkind = \"local\"\npath = \"{}\"\ncreate_missing = true\n\
         [namespaces.alpha]\nprovider = \"local\"\nkey = \"alpha\"\n",
        dir.join("keys/keyring.json").display()
    )
}

fn app_in(dir: &Path) -> app::App {
    app::build(Config::from_toml_str(&config_text(dir), Vec::new()).unwrap()).unwrap()
}

fn token_file(dir: &Path, token: &str) -> std::path::PathBuf {
    let path = dir.join("admin-token");
    fs::write(&path, format!("{token}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

struct Answer {
    status: StatusCode,
    body: Value,
    www_authenticate: Option<String>,
}

async fn call(
    api: &Router,
    method: &str,
    path: &str,
    peer: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        let peer: SocketAddr = peer.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let response = api.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let www_authenticate = response
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        !text.contains(TOKEN),
        "the token leaked into an answer: {text}"
    );
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::String(text)),
        www_authenticate,
    }
}

const ROTATE: &str = "/admin/v1/namespaces/alpha/rotate-data-key";
const FORGET: &str = "/admin/v1/namespaces/alpha/forget-data-keys";
const LIST: &str = "/admin/v1/namespaces";

#[tokio::test]
async fn without_a_token_reads_are_open_and_changes_need_loopback() {
    let dir = temp_dir("admin-api");
    let app = app_in(dir.path());
    // An active data key, so the snapshot and the rotation have something to show.
    app.codec
        .encode(
            "alpha",
            kmscodec::payload::from_json(br#"{"payloads":[{"data":"eA=="}]}"#).unwrap(),
        )
        .await
        .unwrap();
    let api = router(Arc::clone(&app.keyring), AdminApiOptions::default());

    let listed = call(&api, "GET", LIST, Some("10.1.2.3:5000"), &[]).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["namespaces"][0]["namespace"], "alpha");
    assert_eq!(listed.body["namespaces"][0]["uses"], 1);
    assert_eq!(listed.body["namespaces"][0]["rotations"]["initial"], 1);
    let one = call(&api, "GET", "/admin/v1/namespaces/alpha", None, &[]).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    let unused = call(&api, "GET", "/admin/v1/namespaces/beta", None, &[]).await;
    assert_eq!(unused.status, StatusCode::NOT_FOUND);
    assert_eq!(unused.body["code"], "namespace_not_used");

    // Changes: not from another host, not without a known peer, not from a browser.
    for peer in [Some("10.1.2.3:5000"), Some("[2001:db8::1]:5000"), None] {
        let refused = call(&api, "POST", ROTATE, peer, &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{peer:?}");
        assert_eq!(refused.body["code"], "admin_token_required", "{peer:?}");
    }
    let browser = call(
        &api,
        "POST",
        ROTATE,
        Some("127.0.0.1:5000"),
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(browser.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.body["code"], "admin_browser_refused");
    assert_eq!(
        app.keyring.snapshot()[0].rotations,
        std::collections::BTreeMap::from([
            ("initial".to_owned(), 1),
            ("count".to_owned(), 0),
            ("age".to_owned(), 0),
            ("bytes".to_owned(), 0),
            ("manual".to_owned(), 0)
        ]),
        "nothing refused may have acted"
    );

    // Loopback, over IPv4, IPv6 and IPv4-mapped IPv6.
    let rotated = call(&api, "POST", ROTATE, Some("127.0.0.1:5000"), &[]).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.body["had_active_key"], true);
    for peer in ["[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        let again = call(&api, "POST", ROTATE, Some(peer), &[]).await;
        assert_eq!(again.status, StatusCode::OK, "{peer}: {}", again.body);
    }
    let forgot = call(&api, "POST", FORGET, Some("127.0.0.1:5000"), &[]).await;
    assert_eq!(forgot.status, StatusCode::OK, "{}", forgot.body);
    assert_eq!(forgot.body["cache_cleared"], true);

    // A namespace without configuration, and a name that is not a namespace.
    let unknown = call(
        &api,
        "POST",
        "/admin/v1/namespaces/zeta/rotate-data-key",
        Some("127.0.0.1:5000"),
        &[],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["code"], "namespace_not_configured");
    let invalid = call(
        &api,
        "POST",
        "/admin/v1/namespaces/a%20b/rotate-data-key",
        Some("127.0.0.1:5000"),
        &[],
    )
    .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.body["code"], "invalid_namespace");
}

#[tokio::test]
async fn with_a_token_every_route_needs_it() {
    let dir = temp_dir("admin-api");
    let app = app_in(dir.path());
    let path = token_file(dir.path(), TOKEN);
    let api = router(
        Arc::clone(&app.keyring),
        AdminApiOptions {
            token_file: Some(path.clone()),
        },
    );
    let loopback = Some("127.0.0.1:5000");
    let bearer = format!("Bearer {TOKEN}");

    // No token: 401 with a challenge, for reads and changes, loopback included.
    for (method, route) in [("GET", LIST), ("POST", ROTATE)] {
        let missing = call(&api, method, route, loopback, &[]).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{method} {route}");
        assert_eq!(missing.body["code"], "admin_unauthenticated");
        assert_eq!(
            missing.www_authenticate.as_deref(),
            Some("Bearer realm=\"kmscodec-admin\"")
        );
    }
    // Wrong tokens: a prefix, a longer one, another scheme.
    for wrong in [
        format!("Bearer {}", &TOKEN[..5]),
        format!("Bearer {TOKEN}x"),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
    ] {
        let refused = call(&api, "POST", ROTATE, loopback, &[("Authorization", &wrong)]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    // The right token works from anywhere.
    let ok = call(
        &api,
        "POST",
        ROTATE,
        Some("10.1.2.3:5000"),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let listed = call(&api, "GET", LIST, None, &[("Authorization", &bearer)]).await;
    assert_eq!(listed.status, StatusCode::OK);
    // Even with the token, never from a browser.
    let browser = call(
        &api,
        "POST",
        ROTATE,
        loopback,
        &[("Authorization", &bearer), ("Origin", "http://127.0.0.1")],
    )
    .await;
    assert_eq!(browser.status, StatusCode::FORBIDDEN);

    // A rotated token applies at once; an unreadable file refuses everything.
    token_file(dir.path(), "the-next-token");
    let old = call(
        &api,
        "POST",
        ROTATE,
        loopback,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = call(
        &api,
        "POST",
        ROTATE,
        loopback,
        &[("Authorization", "Bearer the-next-token")],
    )
    .await;
    assert_eq!(new.status, StatusCode::OK);
    fs::remove_file(&path).unwrap();
    let gone = call(
        &api,
        "GET",
        LIST,
        loopback,
        &[("Authorization", "Bearer the-next-token")],
    )
    .await;
    assert_eq!(gone.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gone.body["code"], "admin_token_unavailable");
}

/// The binary on a real port, the admin API mounted next to the codec routes, with a token; the
/// CLI as its client, without and with the token.
#[test]
fn the_cli_talks_to_a_running_process_with_the_token() {
    let dir = temp_dir("admin-api-bin");
    let token = token_file(dir.path(), TOKEN);
    let config = format!(
        "{}[admin]\ntoken_file = \"{}\"\n",
        config_text(dir.path()),
        token.display()
    );
    let k = Kmscodec::start_with(Some(&config), &[]);
    let encoded = http_request(
        "POST",
        &format!("{}/encode", k.url()),
        &[
            ("X-Namespace", "alpha"),
            ("Content-Type", "application/json"),
        ],
        br#"{"payloads":[{"data":"eA=="}]}"#,
    )
    .unwrap();
    assert_eq!(encoded.status, 200, "{}", encoded.text());

    let anonymous = http_request(
        "GET",
        &format!("{}/admin/v1/namespaces", k.admin_url()),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());

    let config_path = dir.path().join("cli.toml");
    fs::write(&config_path, config_text(dir.path())).unwrap();
    let url = k.admin_url();
    let cli = |extra: &[&str]| {
        let mut cmd = kmscodec_cmd(
            &dir.path().join("home"),
            &[
                "--config",
                config_path.to_str().unwrap(),
                "keys",
                "rotate-data-key",
                "-n",
                "alpha",
                "--sidecar",
                &url,
            ],
        );
        cmd.args(extra);
        common::run(cmd, Duration::from_secs(30))
    };
    let refused = cli(&[]);
    assert_eq!(refused.status.code(), Some(1), "{}", refused.both());
    assert!(refused.stderr.contains("HTTP 401"), "{}", refused.both());
    assert!(
        refused.stderr.contains("--sidecar-token-file"),
        "{}",
        refused.both()
    );

    let told = cli(&[
        "--sidecar-token-file",
        token.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(told.status.code(), Some(0), "{}", told.both());
    let report: Value = serde_json::from_str(&told.stdout).unwrap();
    assert_eq!(
        report["sidecars"][0]["answer"]["had_active_key"], true,
        "{report}"
    );
    assert!(!told.stdout.contains(TOKEN) && !told.stderr.contains(TOKEN));
    let log = k.guard.log();
    assert!(log.contains("authenticated_by=\"token\""), "{log}");
    assert!(!log.contains(TOKEN), "the token leaked into the log");
}
