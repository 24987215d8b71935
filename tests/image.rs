//! The container image (`scripts/image.sh`): the OCI archive is built, unpacked as a container
//! runtime would (index, manifest, configuration, layer, each checked against its digest), and
//! its root file system runs kmscodec as the image's user through `chroot`: `--version`, then a
//! server on the embedded default that encodes and decodes over loopback.
//!
//! The first run builds the `image` profile (a release build: minutes); later runs reuse it.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The release build behind the image can take a long time on a busy machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads a blob by its descriptor, checking its size and digest.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let data = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        data.len() as u64,
        descriptor["size"].as_u64().unwrap(),
        "{digest} size"
    );
    assert_eq!(sha256_hex(&data), hex, "{digest} content");
    data
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    cmd.stdin(std::process::Stdio::null());
    let out = common::run(cmd, TOOL_TIMEOUT);
    assert!(out.status.success(), "{what}\n{}", out.both());
    out.stdout
}

/// Whether this process runs as root (then `chroot --userspec` drops to the image's user;
/// otherwise `unshare -r` maps us to root in a user namespace first).
fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// `program args` inside `rootfs`, as `user` (uid:gid) when we can switch users.
fn in_rootfs(rootfs: &Path, user: &str, args: &[&str]) -> Command {
    let mut cmd = if running_as_root() {
        let mut cmd = Command::new("chroot");
        cmd.arg(format!("--userspec={user}"));
        cmd
    } else {
        let mut cmd = Command::new("unshare");
        cmd.args(["-r", "chroot"]);
        cmd
    };
    // Only PATH survives (to find chroot/unshare on this host): the image's own environment is
    // empty of everything the host's could lend it.
    cmd.arg(rootfs)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

#[test]
fn the_image_archive_unpacks_and_serves_from_its_own_root() {
    let dir = common::temp_dir("image");
    let archive = dir.path().join("kmscodec-oci.tar");
    let mut build = Command::new(common::repo_root().join("scripts/image.sh"));
    build.arg(&archive).current_dir(common::repo_root());
    let out = common::run(build, BUILD_TIMEOUT);
    assert!(out.status.success(), "scripts/image.sh\n{}", out.both());
    eprintln!(
        "{}",
        out.stderr
            .lines()
            .filter(|l| l.starts_with("image.sh:"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The OCI layout.
    let layout = dir.path().join("layout");
    fs::create_dir_all(&layout).unwrap();
    let mut untar = Command::new("tar");
    untar.arg("-xf").arg(&archive).arg("-C").arg(&layout);
    run_ok(untar, "tar -x of the archive");
    let oci_layout: Value =
        serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        env!("CARGO_PKG_VERSION")
    );
    let manifest: Value = serde_json::from_slice(&blob(&layout, &manifests[0])).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/kmscodec"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["serve", "--config", "/etc/kmscodec/kmscodec.toml"])
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let compressed = blob(&layout, &layers[0]);
    let layer_path = dir.path().join("layer.tar.gz");
    fs::write(&layer_path, &compressed).unwrap();

    // The layer: its uncompressed digest is the configuration's diff_id.
    let mut gunzip = Command::new("gzip");
    gunzip.args(["-dc"]).arg(&layer_path);
    let gunzip = common::run(gunzip, TOOL_TIMEOUT);
    assert!(gunzip.status.success());
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let mut extract = Command::new("tar");
    extract
        .args(["--same-owner", "-xzpf"])
        .arg(&layer_path)
        .arg("-C")
        .arg(&rootfs);
    run_ok(extract, "tar -x of the layer");
    let mut diff = Command::new("sh");
    diff.arg("-c")
        .arg("gzip -dc \"$1\" | sha256sum")
        .arg("sh")
        .arg(&layer_path);
    let diff_id = run_ok(diff, "sha256 of the uncompressed layer");
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", diff_id.split_whitespace().next().unwrap())
    );

    // What the layer holds: a stripped binary, CA certificates, the non-root user.
    let binary = fs::read(rootfs.join("usr/local/bin/kmscodec")).unwrap();
    assert!(
        !binary.windows(8).any(|w| w == b".symtab\0"),
        "the image's binary has a symbol table"
    );
    let certificates =
        fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(certificates.matches("BEGIN CERTIFICATE").count() > 50);
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert!(!rootfs.join("bin/sh").exists(), "no shell in the image");
    eprintln!(
        "image: binary {} bytes, layer {} bytes compressed",
        binary.len(),
        compressed.len()
    );

    // It runs from its own root, as its own user.
    let version = run_ok(
        in_rootfs(
            &rootfs,
            "65532:65532",
            &["/usr/local/bin/kmscodec", "--version"],
        ),
        "kmscodec --version in the image",
    );
    assert_eq!(
        version.trim(),
        format!("kmscodec {}", env!("CARGO_PKG_VERSION"))
    );

    serve_encode_decode(&rootfs, dir.path());
}

/// `kmscodec serve` from the image's root on the embedded default (keyring in /tmp), then one
/// encode and its decode over loopback.
fn serve_encode_decode(rootfs: &Path, log_dir: &Path) {
    let (port, admin_port) = (common::free_port(), common::free_port());
    let listen = format!("127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{admin_port}");
    let cmd = in_rootfs(
        rootfs,
        "65532:65532",
        &[
            "/usr/local/bin/kmscodec",
            "serve",
            "--listen",
            &listen,
            "--admin-listen",
            &admin,
            "--data-dir",
            "/tmp/kmscodec",
        ],
    );
    let mut server = common::ChildGuard::spawn("kmscodec-image", cmd, log_dir);
    let readyz = format!("http://{admin}/readyz");
    server.wait_ready("kmscodec in the image ready", common::READY_TIMEOUT, || {
        common::http_ok(&readyz)
    });
    let post = |op: &str, body: &Value| {
        common::http_request(
            "POST",
            &format!("http://{listen}/{op}"),
            &[
                ("Content-Type", "application/json"),
                ("X-Namespace", "orders"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap()
    };
    let document = common::json_document("from the image");
    let sealed = post("encode", &document);
    assert_eq!(sealed.status, 200, "{}", sealed.text());
    let sealed = common::json_of(&sealed);
    assert_ne!(sealed, document);
    let opened = post("decode", &sealed);
    assert_eq!(opened.status, 200, "{}", opened.text());
    assert_eq!(common::json_of(&opened), document);
    let keyring: PathBuf = rootfs.join("tmp/kmscodec/keyring.json");
    assert!(
        keyring.exists(),
        "the keyring is written inside the image's /tmp"
    );
    server.kill();
}
