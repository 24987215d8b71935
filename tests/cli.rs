//! The `kmscodec` binary: startup refusals, `keys init`, `config check`, the stdin/stdout codec
//! helpers and signal handling, each as a real process.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Kmscodec, kmscodec_cmd, temp_dir};

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(mut command: Command, stdin: &str) -> Ran {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A process that refuses its arguments exits without reading stdin: a broken pipe here is
    // part of the behaviour under test, not a failure.
    if let Err(error) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
    }
    let output = child.wait_with_output().unwrap();
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn keys_init_writes_a_private_keyring_and_never_overwrites() {
    let dir = temp_dir("cli");
    let keyring = dir.path().join("keys/keyring.json");
    let keyring_arg = keyring.to_str().unwrap();
    let ran = run(
        kmscodec_cmd(
            dir.path(),
            &[
                "keys",
                "init",
                "--keyring",
                keyring_arg,
                "--key",
                "payments",
            ],
        ),
        "",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("key = \"payments\""), "{}", ran.stdout);
    let mode = fs::metadata(&keyring).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(&keyring).unwrap();
    let material = text
        .split("\"material\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        !ran.stdout.contains(material) && !ran.stderr.contains(material),
        "key material printed"
    );

    let again = run(
        kmscodec_cmd(dir.path(), &["keys", "init", "--keyring", keyring_arg]),
        "",
    );
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(
        fs::read_to_string(&keyring).unwrap(),
        text,
        "keyring changed"
    );
}

#[test]
fn a_world_readable_keyring_refuses_to_start() {
    let dir = temp_dir("cli");
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let ran = run(
        kmscodec_cmd(dir.path(), &["keys", "init", "--data-dir", data_arg]),
        "",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    fs::set_permissions(data.join("keyring.json"), fs::Permissions::from_mode(0o644)).unwrap();
    let port = common::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let ran = run(
        kmscodec_cmd(
            dir.path(),
            &["serve", "--data-dir", data_arg, "--listen", &listen],
        ),
        "",
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("accessible by group or others (mode 0644)"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("chmod 600"), "{}", ran.stderr);
    assert!(
        !common::port_open(port.parse().unwrap()),
        "bound a port before refusing"
    );
}

#[test]
fn config_check_reports_every_problem_with_a_usage_exit_code() {
    let dir = temp_dir("cli");
    let good = dir.path().join("good.toml");
    fs::write(
        &good,
        "[providers.dev]\nkind = \"local\"\npath = \"k.json\"\n[namespaces.\"*\"]\nprovider = \"dev\"\nkey = \"dev\"\n",
    )
    .unwrap();
    let ran = run(
        kmscodec_cmd(dir.path(), &["config", "check", good.to_str().unwrap()]),
        "",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("ok (1 provider, 1 namespace entry)"),
        "{}",
        ran.stdout
    );

    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "[server]\nlisten = \"x\"\n[providers.dev]\nkind = \"vualt\"\n[namespaces.default]\nprovider = \"dev\"\n",
    )
    .unwrap();
    let ran = run(
        kmscodec_cmd(dir.path(), &["config", "check", bad.to_str().unwrap()]),
        "",
    );
    assert_eq!(ran.code, Some(2));
    for expected in [
        "server.listen",
        "providers.dev.kind: unknown provider kind \"vualt\"",
        "namespaces.default.provider: unknown provider \"dev\"",
        "namespaces.default.key: missing",
    ] {
        assert!(
            ran.stderr.contains(expected),
            "{expected:?} missing:\n{}",
            ran.stderr
        );
    }
    let ran = run(
        kmscodec_cmd(dir.path(), &["config", "check", "/nonexistent.toml"]),
        "",
    );
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains("cannot read"), "{}", ran.stderr);
}

#[test]
fn encode_and_decode_helpers_round_trip_through_stdin() {
    let dir = temp_dir("cli");
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let document =
        r#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IkhlbGxvIg=="}]}"#;
    let sealed = run(
        kmscodec_cmd(
            dir.path(),
            &["encode", "-n", "orders", "--data-dir", data_arg],
        ),
        document,
    );
    assert_eq!(sealed.code, Some(0), "{}", sealed.stderr);
    assert!(
        sealed.stdout.contains("YmluYXJ5L2VuY3J5cHRlZA=="),
        "{}",
        sealed.stdout
    );
    assert!(!sealed.stdout.contains("IkhlbGxvIg=="));

    let opened = run(
        kmscodec_cmd(
            dir.path(),
            &["decode", "-n", "orders", "--data-dir", data_arg],
        ),
        &sealed.stdout,
    );
    assert_eq!(opened.code, Some(0), "{}", opened.stderr);
    assert_eq!(opened.stdout.trim(), document);

    let wrong = run(
        kmscodec_cmd(
            dir.path(),
            &["decode", "-n", "billing", "--data-dir", data_arg],
        ),
        &sealed.stdout,
    );
    assert_eq!(wrong.code, Some(1));
    assert!(
        wrong.stderr.contains("could not be decrypted"),
        "{}",
        wrong.stderr
    );

    let garbage = run(
        kmscodec_cmd(
            dir.path(),
            &["encode", "-n", "orders", "--data-dir", data_arg],
        ),
        "{\"payloads\":[{\"data\":7}]}",
    );
    assert_eq!(garbage.code, Some(1));
    assert!(
        garbage.stderr.contains("payloads[0].data"),
        "{}",
        garbage.stderr
    );

    let usage = run(
        kmscodec_cmd(
            dir.path(),
            &["encode", "-n", "bad name", "--data-dir", data_arg],
        ),
        "{}",
    );
    assert_eq!(usage.code, Some(2));
}

#[test]
fn serve_creates_the_dev_keyring_with_a_warning_and_exits_cleanly_on_sigterm() {
    let mut codec = Kmscodec::start();
    let keyring = codec.data_dir().join("keyring.json");
    assert_eq!(
        fs::metadata(&keyring).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let log = codec.guard.log();
    assert!(log.contains("DEVELOPMENT keyring"), "{log}");
    assert!(log.contains("created a new local keyring file"), "{log}");
    let status = codec.guard.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        codec.guard.log_tail(20)
    );
}

#[test]
fn every_toml_example_in_the_docs_passes_config_check() {
    let dir = temp_dir("cli-doc-examples");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Full configuration files only: docs/configuration.md's example, the authentication
    // guide's and the external storage guide's (fragments elsewhere are not meant to stand
    // alone).
    for (doc, needs) in [
        ("docs/configuration.md", "[providers."),
        ("docs/authentication.md", "[auth."),
        ("docs/external-storage.md", "[[external_storage.drivers]]"),
    ] {
        let text = fs::read_to_string(root.join(doc)).unwrap();
        let block = text
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("{doc} has no toml example"));
        assert!(block.contains(needs), "{doc}: first example lacks {needs}");
        // The authentication and external storage examples name no provider: add the smallest.
        let file = dir.path().join("example.toml");
        let mut toml = block.to_owned();
        if !toml.contains("[providers.") {
            toml.push_str(
                "[providers.dev]\nkind = \"local\"\npath = \"k.json\"\n\
                 [namespaces.\"*\"]\nprovider = \"dev\"\nkey = \"dev\"\n",
            );
        }
        fs::write(&file, &toml).unwrap();
        let ran = run(
            kmscodec_cmd(dir.path(), &["config", "check", file.to_str().unwrap()]),
            "",
        );
        assert_eq!(ran.code, Some(0), "{doc}:\n{toml}\n{}", ran.stderr);
    }
}
