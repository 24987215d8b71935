//! The UI-facing codec listener against the real clients: the Temporal dev server's Web UI in
//! headless Chromium (driven by playwright-core, `tests/e2e/ui_codec.cjs`) and the Temporal CLI.
//!
//! Every test runs a real `temporal server start-dev` whose Web UI's codec endpoint is kmscodec's
//! `[ui]` listener, and a real Python SDK worker that seals its payloads through kmscodec's worker
//! listener. Then a browser (or the CLI) reads the workflow: it sees the plaintext only with a
//! valid token, from an allowed origin; otherwise the page shows the sealed payloads. Each case
//! also checks the audit line kmscodec wrote for the decode requests.
//!
//! How the browser is made to send the token: the Web UI keeps per-browser codec settings in
//! localStorage (`endpoint`, `includeCredentials`, `overrideRemoteCodecConfiguration`, JSON
//! values; see ui_codec.cjs). With "include cross-origin credentials" on, its `fetch` to
//! `<endpoint>/decode` carries the cookies of the codec's host, so the token travels as the
//! `kmscodec_token` cookie (`[ui] token_cookie`).

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
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use common::{
    Kmscodec, Temporal, b64, hermetic_command, http_request, port_open, python_workflow, run,
    temp_dir, tool, tools_dir,
};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The plaintext the workflow carries; it must show up only when decoding is allowed.
const SECRET: &str = "Zanzibar-7781-plaintext";
/// `[ui] token_cookie`.
const COOKIE: &str = "kmscodec_token";
/// `binary/encrypted`, base64 as the UI prints a payload's metadata.
const ENCRYPTED_B64: &str = "YmluYXJ5L2VuY3J5cHRlZA==";
/// How the base64 `data` of every sealed payload begins: the envelope magic `KMSC`
/// (docs/format.md) is `S01TQ…` in base64.
const SEALED_DATA_B64: &str = "S01TQ";

/// Each test runs a Temporal server, a Python worker, kmscodec and Chromium: one at a time, so
/// two cores are enough and the UI's timeouts are never the thing measured.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A random token (hex of 24 bytes from /dev/urandom).
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Temporal dev server whose Web UI decodes through kmscodec's UI listener, kmscodec itself,
/// and one completed workflow whose payloads kmscodec sealed.
struct Setup {
    // Dropped in this order: kmscodec, then Temporal, then the temp dir.
    codec: Kmscodec,
    temporal: Temporal,
    /// kmscodec's `[ui]` listener: `http://127.0.0.1:PORT`.
    ui_codec_url: String,
    /// The `webui` token.
    token: String,
    audit: PathBuf,
    workflow_id: String,
    _dir: TempDir,
}

impl Setup {
    /// `allowed_origin` names the origin put in `[ui.cors] allowed_origins`, given the Web UI's
    /// port.
    fn start(workflow_id: &str, allowed_origin: impl FnOnce(u16) -> String) -> Setup {
        let dir = temp_dir("security");
        // The UI listener's port goes both into kmscodec's config and into the dev server's
        // --ui-codec-endpoint; the dev server does not call it before a page asks.
        let ui_codec_port = common::free_port();
        let ui_codec_url = format!("http://127.0.0.1:{ui_codec_port}");
        let temporal = Temporal::start(Some(&ui_codec_url));

        let token = random_token();
        let token_file = dir.path().join("webui.token");
        fs::write(&token_file, format!("{token}\n")).unwrap();
        fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
        let audit = dir.path().join("audit.log");
        let keyring = common::local_keyring_toml(&dir.path().join("k.json"));
        let origin = allowed_origin(temporal.ui_port);
        let config = format!(
            r#"
{keyring}
[ui]
listen = "127.0.0.1:{ui_codec_port}"
auth = ["token"]
token_cookie = "{COOKIE}"

[ui.cors]
allowed_origins = [{origin:?}]
allow_credentials = true

[auth.tokens.webui]
file = {token_file:?}

[[authz.rules]]
principals = ["token:webui"]
namespaces = ["default"]
roles = ["read"]

[audit]
output = "file"
path = {audit:?}
"#
        );
        let mut codec = Kmscodec::start_with(Some(&config), &[]);
        codec.guard.wait_ready(
            "kmscodec [ui] listener accepting connections",
            common::READY_TIMEOUT,
            || port_open(ui_codec_port),
        );

        // The worker seals through the worker listener (loopback, no authentication).
        let result = python_workflow(&temporal, Some(&codec.url()), workflow_id, SECRET)
            .unwrap_or_else(|output| {
                panic!(
                    "workflow failed:\n{output}\nkmscodec log:\n{}",
                    codec.guard.log_tail(40)
                )
            });
        assert_eq!(result, format!("Hello, {SECRET}!"));

        Setup {
            codec,
            temporal,
            ui_codec_url,
            token,
            audit,
            workflow_id: workflow_id.to_string(),
            _dir: dir,
        }
    }

    /// The workflow's page in the Web UI.
    fn workflow_page(&self) -> String {
        format!(
            "{}/namespaces/default/workflows/{}",
            self.temporal.ui_url(),
            self.workflow_id
        )
    }

    /// Opens the workflow's page in a fresh browser profile with the UI's codec settings set to
    /// kmscodec's UI listener with "include cross-origin credentials", and `cookie` (if any) as
    /// the token cookie. Waits for every `expect` string and for the decode calls to finish.
    fn browse(&self, cookie: Option<&str>, expect: &[&str]) -> Page {
        let cookies: Vec<Value> = cookie
            .map(|value| json!({"name": COOKIE, "value": value}))
            .into_iter()
            .collect();
        let options = json!({
            "chromium": tool("chromium"),
            "url": self.workflow_page(),
            "codecEndpoint": self.ui_codec_url,
            "includeCredentials": true,
            "cookies": cookies,
            "expect": expect,
            // The workflow's input and its result: one /decode each.
            "minCodecCalls": 2,
            "timeoutMs": 45_000,
        });
        let home = self.temporal.dir().join("browser-home");
        let mut cmd = hermetic_command(tool("node"), &home);
        cmd.arg(common::repo_root().join("tests/e2e/ui_codec.cjs"))
            .arg(options.to_string())
            .env("NODE_PATH", tools_dir().join("node").join("node_modules"));
        let out = run(cmd, Duration::from_secs(120));
        assert!(out.status.success(), "ui_codec.cjs failed\n{}", out.both());
        let line = out
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON line from ui_codec.cjs\n{}", out.both()));
        let report: Value = serde_json::from_str(line).unwrap();
        let page = Page {
            done: report["done"].as_bool().unwrap_or(false),
            text: report["text"].as_str().unwrap_or_default().to_string(),
            calls: report["codecCalls"].as_array().cloned().unwrap_or_default(),
            report,
        };
        assert!(
            page.done,
            "the page did not settle with {expect:?} shown (missing {}); codec calls {:?}\n\
             page text:\n{}\nkmscodec log:\n{}",
            page.report["missing"],
            page.calls,
            page.text,
            self.codec.guard.log_tail(30)
        );
        page
    }

    /// `temporal workflow show` through kmscodec's UI listener; `auth` is `--codec-auth`.
    fn cli_show(&self, auth: Option<&str>) -> common::Output {
        let mut args = vec![
            "workflow",
            "show",
            "-w",
            &self.workflow_id,
            "-n",
            "default",
            "--codec-endpoint",
            &self.ui_codec_url,
        ];
        if let Some(auth) = auth {
            args.extend(["--codec-auth", auth]);
        }
        run(self.temporal.cli(&args), Duration::from_secs(90))
    }

    /// Every audit line so far (each must be a JSON object).
    fn audit_lines(&self) -> Vec<Value> {
        common::audit_lines(&self.audit)
    }

    /// Audit lines of `/decode` calls on the UI listener.
    fn ui_decodes(&self) -> Vec<Value> {
        self.audit_lines()
            .into_iter()
            .filter(|l| l["listener"] == "ui" && l["op"] == "decode")
            .collect()
    }

    /// Audit lines of UI-listener decodes that succeeded.
    fn successful_ui_decodes(&self) -> Vec<Value> {
        self.ui_decodes()
            .into_iter()
            .filter(|l| l["status"] == 200 || l["result"] == "ok")
            .collect()
    }

    /// Waits until at least `count` UI-listener decode lines after the first `skip` ones
    /// answered `status`; returns them.
    fn wait_for_ui_decodes(&self, skip: usize, status: u16, count: usize) -> Vec<Value> {
        let mut lines = Vec::new();
        let what = format!("{count} audit lines of UI decodes answered {status}");
        // Up to 10 s: the line is written when the answer is, the browser may be faster.
        let found = (0..100).any(|_| {
            lines = self
                .ui_decodes()
                .into_iter()
                .skip(skip)
                .filter(|l| l["status"] == status)
                .collect();
            if lines.len() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
            false
        });
        assert!(
            found,
            "timed out waiting for {what}; audit log:\n{}",
            fs::read_to_string(&self.audit).unwrap_or_default()
        );
        lines
    }

    /// The audit log names principals and counts, never the token or the plaintext.
    fn assert_audit_holds_no_secret(&self) {
        let raw = fs::read_to_string(&self.audit).unwrap_or_default();
        assert!(!raw.contains(&self.token), "the token is in the audit log");
        assert!(!raw.contains(SECRET), "the plaintext is in the audit log");
    }
}

/// What ui_codec.cjs saw.
struct Page {
    done: bool,
    text: String,
    calls: Vec<Value>,
    report: Value,
}

impl Page {
    /// The page shows the sealed form only: no plaintext (not even base64 of the JSON value),
    /// and the sealed data.
    fn assert_sealed(&self) {
        for needle in [
            SECRET.to_string(),
            b64(format!("\"{SECRET}\"").as_bytes()),
            b64(format!("\"Hello, {SECRET}!\"").as_bytes()),
        ] {
            assert!(
                !self.text.contains(&needle),
                "the page shows {needle:?}:\n{}",
                self.text
            );
        }
        assert!(
            self.text.contains(SEALED_DATA_B64),
            "the page does not show the sealed payloads:\n{}",
            self.text
        );
    }
}

/// Did the browser attach the token cookie to this codec call?
fn sent_token_cookie(call: &Value) -> bool {
    call["cookieNames"]
        .as_array()
        .is_some_and(|names| names.iter().any(|name| name == COOKIE))
}

/// A successful decode by the `webui` token in namespace `default`.
fn assert_decoded_by_webui(line: &Value) {
    assert_eq!(line["principal"], "token:webui", "{line}");
    assert_eq!(line["namespace"], "default", "{line}");
    assert_eq!(line["op"], "decode", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["result"], "ok", "{line}");
}

/// A decode refused (401) because no valid credential came with it; `code` says why
/// (`missing_credentials`, `invalid_credentials`). kmscodec authenticates before it reads
/// anything else, so the line names no namespace.
fn assert_unauthenticated(line: &Value, code: &str) {
    assert_eq!(line["principal"], Value::Null, "{line}");
    assert_eq!(line["namespace"], Value::Null, "{line}");
    assert_eq!(line["op"], "decode", "{line}");
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["result"], code, "{line}");
    assert_eq!(line["payloads"], 0, "{line}");
}

#[test]
fn web_ui_with_the_token_cookie_from_an_allowed_origin_shows_plaintext() {
    let _serial = serial();
    let setup = Setup::start("wf-ui-decoded", |ui_port| {
        format!("http://127.0.0.1:{ui_port}")
    });

    let page = setup.browse(
        Some(&setup.token),
        &["Input", "Result", &format!("Hello, {SECRET}!")],
    );
    assert!(
        page.text.contains(&format!("\"{SECRET}\"")),
        "{}",
        page.text
    );
    assert!(
        !page.text.contains(ENCRYPTED_B64),
        "a payload stayed sealed:\n{}",
        page.text
    );
    for call in &page.calls {
        assert_eq!(call["status"], 200, "codec calls {:?}", page.calls);
        assert!(sent_token_cookie(call), "codec calls {:?}", page.calls);
    }

    let lines = setup.wait_for_ui_decodes(0, 200, 2);
    lines.iter().for_each(assert_decoded_by_webui);
    let refused: Vec<_> = setup
        .ui_decodes()
        .into_iter()
        .filter(|l| l["status"] != 200)
        .collect();
    assert!(refused.is_empty(), "refused UI decodes: {refused:?}");
    setup.assert_audit_holds_no_secret();
}

#[test]
fn web_ui_from_an_origin_not_allowed_shows_only_sealed_payloads() {
    let _serial = serial();
    // Same host and port as far as the user is concerned, but a different origin.
    let setup = Setup::start("wf-ui-wrong-origin", |ui_port| {
        format!("http://localhost:{ui_port}")
    });

    // The preflight from the UI's real origin is not granted.
    let preflight = http_request(
        "OPTIONS",
        &format!("{}/decode", setup.ui_codec_url),
        &[
            ("Origin", &setup.temporal.ui_url()),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,x-namespace"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        None,
        "preflight from a foreign origin granted: {preflight:?}"
    );

    let page = setup.browse(
        Some(&setup.token),
        &["Input", "Result", ENCRYPTED_B64, SEALED_DATA_B64],
    );
    page.assert_sealed();
    // The browser refused every call itself (CORS): no status reached the page.
    for call in &page.calls {
        assert_eq!(call["status"], Value::Null, "codec calls {:?}", page.calls);
        assert!(call["failure"].is_string(), "codec calls {:?}", page.calls);
    }

    // No decode happened: Chromium never sends the POST after a refused preflight.
    let decoded = setup.successful_ui_decodes();
    assert!(
        decoded.is_empty(),
        "decoded for a foreign origin: {decoded:?}"
    );
    setup.assert_audit_holds_no_secret();
}

#[test]
fn web_ui_without_a_valid_token_gets_401_and_shows_only_sealed_payloads() {
    let _serial = serial();
    let setup = Setup::start("wf-ui-no-token", |ui_port| {
        format!("http://127.0.0.1:{ui_port}")
    });

    // No cookie at all.
    let page = setup.browse(None, &["Input", "Result", SEALED_DATA_B64]);
    page.assert_sealed();
    for call in &page.calls {
        // A status (not a CORS failure) proves the 401 carried the CORS headers.
        assert_eq!(call["status"], 401, "codec calls {:?}", page.calls);
        assert!(!sent_token_cookie(call), "codec calls {:?}", page.calls);
    }
    let lines = setup.wait_for_ui_decodes(0, 401, 2);
    lines
        .iter()
        .for_each(|line| assert_unauthenticated(line, "missing_credentials"));

    // A cookie with a wrong token.
    let wrong = random_token();
    let before = setup.ui_decodes().len();
    let page = setup.browse(Some(&wrong), &["Input", "Result", SEALED_DATA_B64]);
    page.assert_sealed();
    for call in &page.calls {
        assert_eq!(call["status"], 401, "codec calls {:?}", page.calls);
        assert!(sent_token_cookie(call), "codec calls {:?}", page.calls);
    }
    let lines = setup.wait_for_ui_decodes(before, 401, 2);
    lines
        .iter()
        .for_each(|line| assert_unauthenticated(line, "invalid_credentials"));

    let decoded = setup.successful_ui_decodes();
    assert!(
        decoded.is_empty(),
        "decoded without a valid token: {decoded:?}"
    );
    let raw = fs::read_to_string(&setup.audit).unwrap_or_default();
    assert!(
        !raw.contains(&wrong),
        "the presented token is in the audit log"
    );
    setup.assert_audit_holds_no_secret();
}

#[test]
fn cli_shows_plaintext_only_with_codec_auth() {
    let _serial = serial();
    let setup = Setup::start("wf-cli-auth", |ui_port| {
        format!("http://127.0.0.1:{ui_port}")
    });

    let bearer = format!("Bearer {}", setup.token);
    let out = setup.cli_show(Some(&bearer));
    assert!(out.status.success(), "{}", out.both());
    assert!(
        out.stdout.contains(&format!("Hello, {SECRET}!")),
        "the CLI did not decode the result:\n{}",
        out.both()
    );
    let lines = setup.wait_for_ui_decodes(0, 200, 1);
    lines.iter().for_each(assert_decoded_by_webui);
    let before = setup.ui_decodes().len();

    // Without --codec-auth the codec answers 401; the CLI retries the failing codec call until
    // its deadline and exits non-zero without printing the history's payloads.
    let out = setup.cli_show(None);
    assert!(
        !out.status.success(),
        "succeeded without a token:\n{}",
        out.both()
    );
    assert!(
        !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
        "plaintext without a token:\n{}",
        out.both()
    );
    common::wait_for_audit(&setup.audit, |_| setup.ui_decodes().len() > before);
    let after: Vec<Value> = setup.ui_decodes().split_off(before);
    assert!(
        !after.is_empty(),
        "no audit line for the CLI's unauthenticated calls"
    );
    after
        .iter()
        .for_each(|line| assert_unauthenticated(line, "missing_credentials"));
    setup.assert_audit_holds_no_secret();
}
