//! Fixtures shared by kmscodec's integration tests.
//!
//! Every external server a test needs (Temporal dev server, OpenBao, moto) is a real binary
//! installed by `scripts/tools.sh` under `$KMSCODEC_TOOLS/bin`; `./scripts/test.sh` installs them
//! and sets `KMSCODEC_TOOLS`. A missing tool is a broken test run, never a skip: [`tool`] panics.
//!
//! Each fixture listens on a fresh loopback port, keeps its temp dir (and the process's log
//! file) alive as long as the struct lives, and kills its process when dropped. When a test
//! panics, the dropped fixtures print the tail of their logs, so the failure shows why.
//!
//! Child processes get a private `HOME` inside their temp dir and none of the developer's
//! `VAULT_*`, `BAO_*`, `AWS_*`, `TEMPORAL_*` or `KMSCODEC_*` variables (so tests never read
//! `~/.aws`, `~/.vault-token` or a Temporal profile), plus `AWS_EC2_METADATA_DISABLED=true`
//! (no IMDS probes leave the machine).
//!
//! In-process tests that need a key backend to go down or slow down wrap a real provider in
//! [`fake_provider::FakeProvider`] rather than breaking the backend itself.
#![allow(dead_code)]
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod fake_provider;
pub mod pki;
pub mod sdk;

/// How long servers get to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Region used with moto (it accepts any).
pub const AWS_REGION: &str = "us-east-1";
/// Root token of the OpenBao dev server.
pub const BAO_ROOT_TOKEN: &str = "root";

/// Environment variable prefixes never inherited by the processes the fixtures start.
const SCRUBBED_ENV_PREFIXES: &[&str] = &["VAULT_", "BAO_", "AWS_", "TEMPORAL_", "KMSCODEC_"];

// ---------------------------------------------------------------------------------------------
// Tools and paths

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$KMSCODEC_TOOLS`, the dir `scripts/tools.sh` installs into. Panics when unset.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("KMSCODEC_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "KMSCODEC_TOOLS is not set: run the tests with ./scripts/test.sh (it installs the test \
             servers into .tools/ and sets KMSCODEC_TOOLS), or run ./scripts/tools.sh and \
             `export KMSCODEC_TOOLS=$PWD/.tools` before `cargo test`"
        ),
    }
}

/// `$KMSCODEC_TOOLS/bin/NAME`. Panics when KMSCODEC_TOOLS is unset or the tool is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join("bin").join(name);
    if !path.exists() {
        panic!(
            "test tool {} is missing: run ./scripts/tools.sh (or ./scripts/test.sh), which \
             installs it",
            path.display()
        );
    }
    path
}

/// The kmscodec binary built for this test run.
pub fn kmscodec_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kmscodec"))
}

/// A port that was free a moment ago on 127.0.0.1 (bind to port 0, read it, drop the socket).
///
/// Never returns the same port twice in one test process: the probe socket is closed before the
/// caller binds, so the kernel could otherwise hand the same port to two callers.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A fresh temp dir, panicking on failure.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("kmscodec-{prefix}-"))
        .tempdir()
        .expect("create temp dir")
}

/// A `Command` for `program` with a hermetic environment: the developer's VAULT_/BAO_/AWS_/
/// TEMPORAL_/KMSCODEC_ variables removed, `HOME=home` (created if missing) and
/// `AWS_EC2_METADATA_DISABLED=true`.
pub fn hermetic_command(program: impl AsRef<OsStr>, home: &Path) -> Command {
    fs::create_dir_all(home).expect("create HOME dir");
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str()
            && SCRUBBED_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed (SIGKILL) and reaped on drop, with stdout and stderr in one log file.
pub struct ChildGuard {
    name: String,
    child: Child,
    log_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin from /dev/null and stdout+stderr appended to `log_dir/NAME.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> ChildGuard {
        fs::create_dir_all(log_dir).expect("create log dir");
        let log_path = log_dir.join(format!("{name}.log"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_string(),
            child,
            log_path,
            exited: None,
        }
    }

    /// The process's name as given to [`ChildGuard::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        match fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("<cannot read {}: {e}>", self.log_path.display()),
        }
    }

    /// The last `lines` lines of [`ChildGuard::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The underlying process.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(status)` once the process has exited (does not block).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Polls `ready` every 100 ms until it returns true. Panics with `what` and the log tail if
    /// the process exits first or `timeout` passes.
    pub fn wait_ready(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited ({status}) before {what}; log {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(80)
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what} ({}); log {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(80)
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL and reap (idempotent).
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Sends SIGTERM (through `kill -TERM`) and waits up to `timeout` for the exit status;
    /// SIGKILLs and panics if the process is still running then.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed", self.id());
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.try_exit() {
                return status;
            }
            sleep(Duration::from_millis(50));
        }
        self.kill();
        panic!(
            "{} did not exit within {timeout:?} of SIGTERM; log:\n{}",
            self.name,
            self.log_tail(80)
        );
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} (pid {}) log tail, {} -----\n{}\n----- end of {} log -----",
                self.name,
                self.child.id(),
                self.log_path.display(),
                self.log_tail(60),
                self.name
            );
        }
        self.kill();
    }
}

/// Polls `f` every 100 ms until it returns true; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if f() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        sleep(Duration::from_millis(100));
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr, for assertion messages.
    pub fn both(&self) -> String {
        format!(
            "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion (stdin from /dev/null), killing it and panicking after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    let dir = temp_dir("run");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"));
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{desc} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()),
                String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default())
            );
        }
        sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned(),
    }
}

/// Like [`run`], panicking (with both outputs) unless the command exits 0; returns stdout.
pub fn run_ok(cmd: Command, timeout: Duration) -> String {
    let desc = format!("{cmd:?}");
    let out = run(cmd, timeout);
    assert!(out.status.success(), "{desc} failed\n{}", out.both());
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// Blocking HTTP/1.0 over std (usable outside tokio)

/// A response read by [`http_request`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits `http://host[:port][/path]` into (authority with port, path).
fn split_http_url(url: &str) -> std::io::Result<(String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not an http:// URL: {url}"),
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// One blocking HTTP/1.0 request (connection closed after it; 2 s connect and 10 s I/O
/// timeouts). `Host` and `Content-Length` are added.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let (authority, path) = split_http_url(url)?;
    let addr = authority.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no address for {authority}"),
        )
    })?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |msg: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string());
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("response has no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| bad(&format!("bad status line: {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[head_end + 4..].to_vec(),
    })
}

/// GET `url` with HTTP/1.0 over a std TcpStream; the status code, or None when unreachable.
pub fn http_status(url: &str) -> Option<u16> {
    http_request("GET", url, &[], b"").ok().map(|r| r.status)
}

/// True when GET `url` answers 200.
pub fn http_ok(url: &str) -> bool {
    http_status(url) == Some(200)
}

/// True when something accepts TCP connections on 127.0.0.1:port.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// A reqwest client for loopback tests: no proxy from the environment, 30 s timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

// ---------------------------------------------------------------------------------------------
// Temporal dev server

/// `temporal server start-dev` on 127.0.0.1 with a SQLite file in its own temp dir.
pub struct Temporal {
    pub guard: ChildGuard,
    /// Frontend gRPC port.
    pub port: u16,
    /// Web UI port (nothing listens there when started headless).
    pub ui_port: u16,
    /// `127.0.0.1:PORT`, for `--address` and SDK clients.
    pub address: String,
    dir: TempDir,
}

impl Temporal {
    /// Starts the dev server and waits (60 s) until `temporal operator namespace describe -n
    /// default` answers. Without `ui_codec_endpoint` it runs `--headless`; with one it serves
    /// the Web UI on `ui_port` with `--ui-codec-endpoint URL --ui-disable-news-fetch`.
    pub fn start(ui_codec_endpoint: Option<&str>) -> Temporal {
        // The dev server's internal services (history, matching) bind ports of their own; with
        // several test processes starting servers at once, one of them can be taken between the
        // choice and the bind. The server then exits at once: start again with fresh ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Temporal::start_once(ui_codec_endpoint) {
                Ok(temporal) => return temporal,
                Err(log) if attempt < 4 => {
                    eprintln!("temporal dev server lost a port race, starting again:\n{log}")
                }
                Err(log) => panic!("temporal dev server did not start:\n{log}"),
            }
        }
    }

    /// One start of the dev server: `Err` with its log when it exited because a port was taken.
    fn start_once(ui_codec_endpoint: Option<&str>) -> Result<Temporal, String> {
        let dir = temp_dir("temporal");
        let (port, ui_port) = (free_port(), free_port());
        let address = format!("127.0.0.1:{port}");
        let mut cmd = hermetic_command(tool("temporal"), &dir.path().join("home"));
        cmd.args(["server", "start-dev", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--ui-port", &ui_port.to_string()])
            // Both default to random free ports; pin them so nothing lands on a guessed port.
            .args(["--http-port", &free_port().to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .arg("--db-filename")
            .arg(dir.path().join("t.db"))
            .args(["--log-level", "error"]);
        match ui_codec_endpoint {
            None => {
                cmd.arg("--headless");
            }
            Some(url) => {
                cmd.args(["--ui-codec-endpoint", url, "--ui-disable-news-fetch"]);
            }
        }
        let mut guard = ChildGuard::spawn("temporal", cmd, dir.path());
        let home = dir.path().join("home");
        // Ready when `namespace describe` answers; an exit over a taken port is retried by
        // the caller, any other exit or the timeout fails the test with the log.
        let described = || {
            if !port_open(port) {
                return false;
            }
            let mut c = hermetic_command(tool("temporal"), &home);
            c.args(["operator", "namespace", "describe", "-n", "default"])
                .args(["--address", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c.status().is_ok_and(|s| s.success())
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !described() {
            if let Some(status) = guard.try_exit() {
                let log = guard.log();
                if log.contains("address already in use") {
                    return Err(log);
                }
                panic!(
                    "temporal exited ({status}) before its namespace was described\n{}",
                    guard.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "temporal dev server not ready within {READY_TIMEOUT:?}\n{}",
                guard.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if ui_codec_endpoint.is_some() {
            let ui = format!("http://127.0.0.1:{ui_port}/");
            guard.wait_ready("temporal web UI", READY_TIMEOUT, || http_ok(&ui));
        }
        Ok(Temporal {
            guard,
            port,
            ui_port,
            address,
            dir,
        })
    }

    /// `http://127.0.0.1:UI_PORT`.
    pub fn ui_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ui_port)
    }

    /// The server's temp dir (database, log, HOME of the CLI).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `temporal` CLI command with `args` followed by `--address 127.0.0.1:PORT`, hermetic
    /// environment (no TEMPORAL_* variables, private HOME).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = hermetic_command(tool("temporal"), &self.dir.path().join("home"));
        cmd.args(args).args(["--address", &self.address]);
        cmd
    }

    /// Runs [`Temporal::cli`] (60 s limit), panicking unless it exits 0; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        run_ok(self.cli(args), Duration::from_secs(60))
    }
}

// ---------------------------------------------------------------------------------------------
// OpenBao

/// A `bao server` on 127.0.0.1, started by [`OpenBaoBuilder::start`]: the one place that knows
/// how to run OpenBao for the tests.
///
/// - [`OpenBao::start`] (the default): a dev server, in memory, unsealed, root token
///   [`BAO_ROOT_TOKEN`]; ready when `GET /v1/sys/health` answers 200.
/// - [`OpenBaoBuilder::tls`]: the same dev server on https with its own CA
///   ([`OpenBao::ca_cert`]); ready when it listens and the CA file is written.
/// - [`OpenBaoBuilder::persistent`]: integrated (raft) storage on disk, initialised with one
///   unseal key and unsealed, so its keys and tokens survive [`OpenBao::stop`] and
///   [`OpenBao::restart`] on the same port (a dev server keeps everything in memory; OpenBao 2
///   has no `file` backend). Its root token is the one `sys/init` returned.
pub struct OpenBao {
    pub guard: ChildGuard,
    pub port: u16,
    /// The root token.
    pub token: String,
    mode: BaoMode,
    dir: TempDir,
}

/// How an [`OpenBao`] runs.
enum BaoMode {
    /// `bao server -dev`, with the dev CA when on https.
    Dev { ca_cert: Option<PathBuf> },
    /// `bao server -config=FILE` on raft storage, unsealed with `unseal_key`.
    Persistent { config: PathBuf, unseal_key: String },
}

/// What [`OpenBao::builder`] starts.
#[derive(Debug, Default)]
pub struct OpenBaoBuilder {
    persistent: bool,
    tls: bool,
}

impl OpenBaoBuilder {
    /// Raft storage on disk, initialised and unsealed; survives a restart.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// A dev server on https (`-dev-tls`), its CA at [`OpenBao::ca_cert`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Starts the server on a free loopback port and waits until it is ready.
    pub fn start(self) -> OpenBao {
        match (self.persistent, self.tls) {
            (false, false) => OpenBao::start_dev(),
            (false, true) => OpenBao::start_dev_tls(),
            (true, false) => OpenBao::start_persistent(),
            (true, true) => panic!("a persistent OpenBao on https is not implemented"),
        }
    }
}

impl OpenBao {
    /// What to start: a dev server unless the builder says otherwise.
    pub fn builder() -> OpenBaoBuilder {
        OpenBaoBuilder::default()
    }

    /// Starts a dev server (in memory, http, root token [`BAO_ROOT_TOKEN`]).
    pub fn start() -> OpenBao {
        OpenBao::builder().start()
    }

    /// A `bao` command (any arguments) with a hermetic environment and HOME in `dir`; the dev
    /// server writes ~/.vault-token there.
    fn command(dir: &Path) -> Command {
        hermetic_command(tool("bao"), &dir.join("home"))
    }

    fn start_dev() -> OpenBao {
        let dir = temp_dir("openbao");
        let port = free_port();
        let mut cmd = OpenBao::command(dir.path());
        cmd.args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={BAO_ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
        let mut guard = ChildGuard::spawn("openbao", cmd, dir.path());
        let health = format!("http://127.0.0.1:{port}/v1/sys/health");
        guard.wait_ready("openbao /v1/sys/health 200", READY_TIMEOUT, || {
            http_ok(&health)
        });
        OpenBao {
            guard,
            port,
            token: BAO_ROOT_TOKEN.to_string(),
            mode: BaoMode::Dev { ca_cert: None },
            dir,
        }
    }

    fn start_dev_tls() -> OpenBao {
        let dir = temp_dir("openbao-tls");
        let port = free_port();
        let certs = dir.path().join("certs");
        fs::create_dir_all(&certs).expect("create certs dir");
        let mut cmd = OpenBao::command(dir.path());
        cmd.args(["server", "-dev", "-dev-tls"])
            .arg(format!("-dev-root-token-id={BAO_ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-tls-cert-dir={}", certs.display()));
        let mut guard = ChildGuard::spawn("openbao-tls", cmd, dir.path());
        let ca = certs.join("vault-ca.pem");
        guard.wait_ready("openbao (tls) listening", READY_TIMEOUT, || {
            port_open(port) && ca.exists()
        });
        OpenBao {
            guard,
            port,
            token: BAO_ROOT_TOKEN.to_string(),
            mode: BaoMode::Dev { ca_cert: Some(ca) },
            dir,
        }
    }

    fn start_persistent() -> OpenBao {
        let dir = temp_dir("openbao-file");
        let port = free_port();
        let cluster_port = free_port();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create raft data dir");
        let config = dir.path().join("bao.hcl");
        fs::write(
            &config,
            format!(
                "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"node1\"\n}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  \
                 cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
                 api_addr = \"http://127.0.0.1:{port}\"\n\
                 cluster_addr = \"http://127.0.0.1:{cluster_port}\"\n",
                data.display()
            ),
        )
        .expect("write bao.hcl");
        let guard = OpenBao::spawn_persistent(dir.path(), &config, port);
        let address = format!("http://127.0.0.1:{port}");
        let init = bao_api_ok(
            &address,
            "",
            "PUT",
            "sys/init",
            Some(serde_json::json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        let mut bao = OpenBao {
            guard,
            port,
            token: init["root_token"]
                .as_str()
                .expect("sys/init root_token")
                .to_string(),
            mode: BaoMode::Persistent {
                config,
                unseal_key: init["keys_base64"][0]
                    .as_str()
                    .expect("sys/init keys_base64")
                    .to_string(),
            },
            dir,
        };
        bao.unseal();
        bao
    }

    /// Starts `bao server -config=CONFIG` and waits until it listens (it is sealed then).
    fn spawn_persistent(dir: &Path, config: &Path, port: u16) -> ChildGuard {
        let mut cmd = OpenBao::command(dir);
        cmd.arg("server")
            .arg(format!("-config={}", config.display()));
        let mut guard = ChildGuard::spawn("openbao-file", cmd, dir);
        guard.wait_ready("openbao listening", READY_TIMEOUT, || port_open(port));
        guard
    }

    /// Unseals a persistent server and waits until it is active (health 200).
    fn unseal(&mut self) {
        let BaoMode::Persistent { unseal_key, .. } = &self.mode else {
            panic!("only a persistent OpenBao is sealed");
        };
        let address = self.addr();
        bao_api_ok(
            &address,
            "",
            "PUT",
            "sys/unseal",
            Some(serde_json::json!({"key": unseal_key})),
        );
        let health = format!("{address}/v1/sys/health");
        self.guard
            .wait_ready("openbao active (health 200)", READY_TIMEOUT, || {
                http_status(&health) == Some(200)
            });
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        self.guard.kill();
    }

    /// Starts a persistent server again on the same port and storage, and unseals it.
    pub fn restart(&mut self) {
        let BaoMode::Persistent { config, .. } = &self.mode else {
            panic!("only a persistent OpenBao keeps its state over a restart");
        };
        self.guard.kill();
        self.guard = OpenBao::spawn_persistent(self.dir.path(), config, self.port);
        self.unseal();
    }

    /// `http://127.0.0.1:PORT` (`https://` with [`OpenBaoBuilder::tls`]).
    pub fn addr(&self) -> String {
        let scheme = match &self.mode {
            BaoMode::Dev { ca_cert: Some(_) } => "https",
            _ => "http",
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the server's certificate, with [`OpenBaoBuilder::tls`].
    pub fn ca_cert(&self) -> Option<&Path> {
        match &self.mode {
            BaoMode::Dev { ca_cert } => ca_cert.as_deref(),
            BaoMode::Persistent { .. } => None,
        }
    }

    /// The server's temp dir (storage, config, log, HOME of the CLI).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `bao` CLI command talking to this server as root (BAO_ADDR/BAO_TOKEN set, and
    /// BAO_CACERT on https).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = OpenBao::command(self.dir.path());
        cmd.args(args)
            .env("BAO_ADDR", self.addr())
            .env("BAO_TOKEN", &self.token);
        if let Some(ca) = self.ca_cert() {
            cmd.env("BAO_CACERT", ca);
        }
        cmd
    }

    /// Runs [`OpenBao::cli`] (30 s limit), panicking unless it exits 0; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        run_ok(self.cli(args), Duration::from_secs(30))
    }

    /// `bao secrets enable transit`.
    pub fn enable_transit(&self) {
        self.cli_ok(&["secrets", "enable", "transit"]);
    }

    /// `bao write -f transit/keys/NAME` (aes256-gcm96).
    pub fn create_transit_key(&self, name: &str) {
        self.cli_ok(&["write", "-f", &format!("transit/keys/{name}")]);
    }

    /// Calls the HTTP API (not on https) with `token`: see [`bao_api`].
    pub fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> HttpResponse {
        bao_api(&self.addr(), token, method, path, body)
    }

    /// Like [`OpenBao::api`], panicking unless the answer is 2xx: see [`bao_api_ok`].
    pub fn api_ok(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        bao_api_ok(&self.addr(), token, method, path, body)
    }

    /// Mounts transit (through the API, as root) and creates `keys` in it.
    pub fn enable_transit_with_keys(&self, keys: &[&str]) {
        self.api_ok(
            &self.token,
            "POST",
            "sys/mounts/transit",
            Some(serde_json::json!({"type": "transit"})),
        );
        for key in keys {
            self.api_ok(&self.token, "POST", &format!("transit/keys/{key}"), None);
        }
    }

    /// Loads the shipped policy file `policies/vault/FILE` under `name` (as root).
    pub fn write_policy(&self, name: &str, file: &str) {
        let path = repo_root().join("policies/vault").join(file);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        self.api_ok(
            &self.token,
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(serde_json::json!({ "policy": text })),
        );
    }

    /// A token (1 h) holding only `policies`, not even `default`.
    pub fn token_with_policies(&self, policies: &[&str]) -> String {
        let created = self.api_ok(
            &self.token,
            "POST",
            "auth/token/create",
            Some(serde_json::json!({
                "policies": policies, "no_default_policy": true, "ttl": "1h"
            })),
        );
        created["auth"]["client_token"]
            .as_str()
            .unwrap_or_else(|| panic!("auth/token/create: no auth.client_token in {created}"))
            .to_string()
    }
}

/// Calls the OpenBao HTTP API at `address` (`http://127.0.0.1:PORT`): `METHOD /v1/PATH` with a
/// JSON `body`, and `token` as `X-Vault-Token` unless empty. Panics only when the server cannot
/// be reached.
pub fn bao_api(
    address: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> HttpResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Content-Type", "application/json")];
    if !token.is_empty() {
        headers.push(("X-Vault-Token", token));
    }
    http_request(
        method,
        &format!("{address}/v1/{path}"),
        &headers,
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Like [`bao_api`], panicking unless the answer is 2xx; returns the JSON body (null when
/// empty).
pub fn bao_api_ok(
    address: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let reply = bao_api(address, token, method, path, body);
    assert!(
        (200..300).contains(&reply.status),
        "{method} {path}: {} {}",
        reply.status,
        reply.text()
    );
    if reply.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("{method} {path}: bad JSON ({e}): {}", reply.text()))
    }
}

// ---------------------------------------------------------------------------------------------
// moto (AWS KMS mock)

/// `moto_server` on 127.0.0.1: accepts any region and static credentials.
pub struct Moto {
    pub guard: ChildGuard,
    pub port: u16,
    dir: TempDir,
}

impl Moto {
    /// Starts moto; ready when `GET /moto-api/` answers 200.
    pub fn start() -> Moto {
        let dir = temp_dir("moto");
        let port = free_port();
        let mut cmd = hermetic_command(tool("moto_server"), &dir.path().join("home"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut guard = ChildGuard::spawn("moto", cmd, dir.path());
        let api = format!("http://127.0.0.1:{port}/moto-api/");
        guard.wait_ready("moto_server /moto-api/ 200", READY_TIMEOUT, || {
            http_ok(&api)
        });
        Moto { guard, port, dir }
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for the AWS SDK.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a process that should use this moto through the AWS SDK's default
    /// chain: static credentials, [`AWS_REGION`], `AWS_ENDPOINT_URL`, IMDS disabled.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", AWS_REGION.to_string()),
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// Calls a KMS action (`TrentService.<action>`) with a JSON body; panics unless 200.
    /// moto does not check signatures: only the credential scope (region, service) is sent.
    pub fn kms(&self, action: &str, body: &serde_json::Value) -> serde_json::Value {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{AWS_REGION}/kms/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let target = format!("TrentService.{action}");
        let resp = http_request(
            "POST",
            &format!("{}/", self.url()),
            &[
                ("Authorization", auth.as_str()),
                ("X-Amz-Target", target.as_str()),
                ("Content-Type", "application/x-amz-json-1.1"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("moto KMS {action}: {e}"));
        assert_eq!(resp.status, 200, "moto KMS {action}: {}", resp.text());
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("moto KMS {action}: bad JSON ({e}): {}", resp.text()))
    }

    /// Creates a symmetric KMS key; returns its ARN
    /// (`arn:aws:kms:us-east-1:123456789012:key/<uuid>`).
    pub fn create_kms_key(&self, description: &str) -> String {
        let out = self.kms(
            "CreateKey",
            &serde_json::json!({ "Description": description }),
        );
        out["KeyMetadata"]["Arn"]
            .as_str()
            .unwrap_or_else(|| panic!("moto CreateKey: no KeyMetadata.Arn in {out}"))
            .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// kmscodec itself

/// Two distinct free loopback ports.
fn two_free_ports() -> (u16, u16) {
    (free_port(), free_port())
}

/// `kmscodec serve --listen 127.0.0.1:PORT --data-dir DIR [--config FILE] [extra args]`.
pub struct Kmscodec {
    pub guard: ChildGuard,
    pub port: u16,
    launch: KmscodecLaunch,
    dir: TempDir,
}

/// What [`Kmscodec`] starts, kept for [`Kmscodec::restart`].
struct KmscodecLaunch {
    port: u16,
    admin_port: u16,
    home: PathBuf,
    data_dir: PathBuf,
    config_path: Option<PathBuf>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl KmscodecLaunch {
    fn command(&self) -> Command {
        let mut cmd = hermetic_command(kmscodec_bin(), &self.home);
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin_port)])
            .arg("--data-dir")
            .arg(&self.data_dir);
        if let Some(path) = &self.config_path {
            cmd.arg("--config").arg(path);
        }
        cmd.args(&self.extra_args);
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Spawns the process and waits until its port accepts connections.
    fn spawn(&self, log_dir: &Path) -> ChildGuard {
        let mut guard = ChildGuard::spawn("kmscodec", self.command(), log_dir);
        let port = self.port;
        guard.wait_ready("kmscodec listening", READY_TIMEOUT, || port_open(port));
        guard
    }
}

impl Kmscodec {
    /// No config file, no extra arguments; waits for `GET /readyz` 200.
    pub fn start() -> Kmscodec {
        Kmscodec::start_full(None, &[], &[])
    }

    /// With an optional config file (written to the temp dir) and extra `serve` arguments;
    /// waits for `GET /readyz` 200.
    pub fn start_with(config_toml: Option<&str>, extra_args: &[&str]) -> Kmscodec {
        Kmscodec::start_full(config_toml, extra_args, &[])
    }

    /// [`Kmscodec::start_with`] plus environment variables (e.g. [`Moto::aws_env`]).
    pub fn start_full(
        config_toml: Option<&str>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Kmscodec {
        let mut k = Kmscodec::spawn(config_toml, extra_args, env);
        k.wait_ready(READY_TIMEOUT);
        k
    }

    /// Starts the process and waits only until its port accepts connections (so a test can
    /// look at a server that is not ready). Panics if it exits first.
    pub fn spawn(config_toml: Option<&str>, extra_args: &[&str], env: &[(&str, &str)]) -> Kmscodec {
        let dir = temp_dir("kmscodec");
        let data_dir = dir.path().join("data");
        fs::create_dir_all(&data_dir).expect("create data dir");
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700)).expect("chmod data dir");
        let config_path = config_toml.map(|toml| {
            let path = dir.path().join("kmscodec.toml");
            fs::write(&path, toml).expect("write config file");
            path
        });
        let (port, admin_port) = two_free_ports();
        let mut launch = KmscodecLaunch {
            port,
            admin_port,
            home: dir.path().join("home"),
            data_dir,
            config_path,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        // free_port() can race with another process taking the port before kmscodec binds it:
        // when kmscodec exits saying it cannot listen, try again with fresh ports.
        let mut attempts = 0;
        let guard = loop {
            attempts += 1;
            let mut guard = ChildGuard::spawn("kmscodec", launch.command(), dir.path());
            let deadline = Instant::now() + READY_TIMEOUT;
            let outcome = loop {
                if port_open(launch.port) {
                    break Ok(());
                }
                if let Some(status) = guard.try_exit() {
                    break Err(status);
                }
                if Instant::now() > deadline {
                    panic!(
                        "kmscodec did not listen within {READY_TIMEOUT:?}\n{}",
                        guard.log_tail(40)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            match outcome {
                Ok(()) => break guard,
                Err(_) if attempts < 4 && guard.log().contains("cannot listen on") => {
                    let (port, admin_port) = two_free_ports();
                    launch.port = port;
                    launch.admin_port = admin_port;
                }
                Err(status) => panic!(
                    "kmscodec exited ({status}) before listening\n{}",
                    guard.log_tail(40)
                ),
            }
        };
        Kmscodec {
            guard,
            port: launch.port,
            launch,
            dir,
        }
    }

    /// Waits until the admin listener's `GET /readyz` answers 200 (panics with the log on
    /// timeout or exit). The admin listener, not the codec one, so a codec listener with TLS
    /// works too.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let readyz = format!("{}/readyz", self.admin_url());
        self.guard
            .wait_ready("kmscodec GET /readyz 200", timeout, || http_ok(&readyz));
    }

    /// Kills the process (SIGKILL) and starts it again with the same port, data dir, config,
    /// arguments and environment; waits for `/readyz`. The log file is appended to.
    pub fn restart(&mut self) {
        self.guard.kill();
        self.guard = self.launch.spawn(self.dir.path());
        self.wait_ready(READY_TIMEOUT);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin listener (`/metrics`, `/healthz`, `/readyz`): `http://127.0.0.1:ADMIN_PORT`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.launch.admin_port)
    }

    /// The `--data-dir` (mode 0700, inside the fixture's temp dir).
    pub fn data_dir(&self) -> &Path {
        &self.launch.data_dir
    }

    /// The `--config` file, when one was given.
    pub fn config_path(&self) -> Option<&Path> {
        self.launch.config_path.as_deref()
    }

    /// The fixture's temp dir (data dir, config, log, HOME).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A `kmscodec` command (any subcommand) with a hermetic environment and HOME under `home`.
pub fn kmscodec_cmd(home: &Path, args: &[&str]) -> Command {
    let mut cmd = hermetic_command(kmscodec_bin(), home);
    cmd.args(args);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Python SDK end to end

/// Runs `tests/e2e/python_workflow.py` with `.tools/bin/python`: a GreetingWorkflow whose
/// payloads go through `codec_endpoint` (`None`: the SDK's default converter, no codec).
/// `Ok(result)` is the workflow's result ("Hello, INPUT!"); `Err` holds the script's output.
pub fn python_workflow(
    temporal: &Temporal,
    codec_endpoint: Option<&str>,
    workflow_id: &str,
    input: &str,
) -> Result<String, String> {
    let home = temporal.dir().join("home");
    let mut cmd = hermetic_command(tool("python"), &home);
    cmd.arg(repo_root().join("tests/e2e/python_workflow.py"))
        .args(["--address", &temporal.address])
        .args(["--namespace", "default"])
        .args(["--task-queue", &format!("tq-{workflow_id}")])
        .args(["--workflow-id", workflow_id])
        .args(["--input", input])
        .args(["--timeout", "60"]);
    match codec_endpoint {
        Some(url) => cmd.args(["--codec-endpoint", url]),
        None => cmd.arg("--no-codec"),
    };
    let out = run(cmd, Duration::from_secs(120));
    if !out.status.success() {
        return Err(out.both());
    }
    let line = out.stdout.lines().rev().find(|l| l.starts_with('{'));
    let parsed: Option<serde_json::Value> = line.and_then(|l| serde_json::from_str(l).ok());
    match parsed.as_ref().and_then(|v| v["result"].as_str()) {
        Some(result) => Ok(result.to_string()),
        None => Err(format!("no {{\"result\": ...}} line\n{}", out.both())),
    }
}

// ---------------------------------------------------------------------------------------------
// Codec request helpers shared by the provider tests

/// Standard base64.
pub fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// Unpadded URL-safe base64 (JWT segments, JWK coordinates).
pub fn b64url(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Decodes a JSON string of standard base64.
pub fn unb64(value: &serde_json::Value) -> Vec<u8> {
    base64_simd::STANDARD
        .decode_to_vec(value.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// A Payloads document with one `json/plain` payload holding `text` as a JSON string.
pub fn json_document(text: &str) -> serde_json::Value {
    serde_json::json!({"payloads": [{
        "metadata": {"encoding": b64(b"json/plain")},
        "data": b64(format!("{text:?}").as_bytes()),
    }]})
}

/// POSTs `body` to kmscodec's `/encode` or `/decode` for `namespace`.
pub fn codec_post(
    k: &Kmscodec,
    op: &str,
    namespace: &str,
    body: &serde_json::Value,
) -> HttpResponse {
    http_request(
        "POST",
        &format!("{}/{op}", k.url()),
        &[
            ("Content-Type", "application/json"),
            ("X-Namespace", namespace),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("POST /{op}: {e}"))
}

/// The body of a response, as JSON.
pub fn json_of(response: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()))
}

/// The smallest key setup for a kmscodec config file: a local keyring at `path` (created on
/// first start) serving every namespace. Append it to a test's own settings.
pub fn local_keyring_toml(path: &Path) -> String {
    format!(
        "\n[providers.dev]\nkind = \"local\"\npath = {path:?}\ncreate_missing = true\n\
         [namespaces.\"*\"]\nprovider = \"dev\"\nkey = \"dev\"\n"
    )
}

/// The audit log's text once `ready` holds for it (lines are written in batches a few
/// milliseconds after the answer), or its text after 10 s for the caller's assertion to report.
pub fn wait_for_audit(path: &Path, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if ready(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line of an audit log file, each parsed and checked to be a JSON object.
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    let raw = fs::read_to_string(path).unwrap_or_default();
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"));
            assert!(line.is_object(), "audit line is not an object: {l}");
            line
        })
        .collect()
}
