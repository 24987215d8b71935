//! `kmscodec-bench`: a load benchmark that compares `kmscodec serve` with a bare AES-256-GCM
//! ceiling in one run, on the same machine, under the same load.
//!
//! Run it with `scripts/bench.sh` (release build, the servers pinned to CPU 0 and the load
//! generator to CPU 1). For each scenario it drives kmscodec and the baseline with the same load
//! (N keep-alive connections, after a warm-up of each) in alternating rounds: the measured
//! duration is split into `--rounds` slices per server, run kmscodec, baseline, baseline,
//! kmscodec, … so that a machine whose speed drifts (a shared VM) slows both alike. It prints
//! requests/s, MB/s of payload data, p50/p99 latency, server CPU seconds per 1,000 requests, peak
//! RSS and the kmscodec/baseline ratio over all rounds, with the range of the per-round ratios;
//! it writes the same as JSON.
//!
//! The baseline is this program re-executed with `--baseline-server`: it speaks the same JSON
//! protocol (and the same gRPC service) with the same parser, and seals each serialized payload
//! with AES-256-GCM under one fixed key and a random nonce: no header, no HKDF, no keyring. It
//! seals with the fastest AES-256-GCM measured on this machine (aws-lc-rs, VAES/AVX-512 where
//! the CPU has them; `cargo bench --bench aead`), so it is the practical ceiling for the
//! protocol here, "the floor"; the gap to it is kmscodec's own cost.
//!
//! With `--previous PATH` (`scripts/bench.sh --previous REF` builds PATH from a git revision) a
//! second kmscodec binary runs in the same rounds as a third server, so one run shows today's
//! figures beside an older build's under the same machine drift.

// Tests and benches time real servers by the wall clock and find their tools through the
// environment (clippy.toml refuses both in src/).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kmscodec::payload::{self, Payload, Payloads};
use kmscodec::server::grpc::proto::codec_client::CodecClient;
use kmscodec::server::grpc::proto::codec_server::{Codec as CodecService, CodecServer};
use kmscodec::server::grpc::proto::{DecodeRequest, EncodeRequest};
use prost::Message;
use serde_json::json;

const USAGE: &str = "usage: kmscodec-bench [--duration SECS] [--warmup SECS] [--connections N] \
[--rounds N] [--scenarios LIST] [--out FILE] [--kmscodec PATH] [--previous PATH] [--server-cpu N]";

struct Options {
    duration: Duration,
    warmup: Duration,
    rounds: u32,
    connections: usize,
    scenarios: Vec<String>,
    out: PathBuf,
    kmscodec: PathBuf,
    /// An older kmscodec binary measured in the same rounds.
    previous: Option<PathBuf>,
    server_cpu: Option<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut options = Options {
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        rounds: 5,
        connections: 16,
        scenarios: SCENARIOS.iter().map(|s| s.name.to_owned()).collect(),
        out: PathBuf::from("bench-results/latest.json"),
        kmscodec: exe.with_file_name("kmscodec"),
        previous: None,
        server_cpu: Some("0".to_owned()),
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--duration" => {
                options.duration = Duration::from_secs_f64(value()?.parse().map_err(|_| USAGE)?)
            }
            "--warmup" => {
                options.warmup = Duration::from_secs_f64(value()?.parse().map_err(|_| USAGE)?)
            }
            "--connections" => options.connections = value()?.parse().map_err(|_| USAGE)?,
            "--rounds" => {
                options.rounds = value()?.parse().map_err(|_| USAGE)?;
                if options.rounds == 0 {
                    return Err(format!("--rounds must be at least 1\n{USAGE}"));
                }
            }
            "--scenarios" => options.scenarios = value()?.split(',').map(str::to_owned).collect(),
            "--out" => options.out = PathBuf::from(value()?),
            "--kmscodec" => options.kmscodec = PathBuf::from(value()?),
            "--previous" => options.previous = Some(PathBuf::from(value()?)),
            "--server-cpu" => {
                let cpu = value()?;
                options.server_cpu = (cpu != "none").then_some(cpu);
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    for name in &options.scenarios {
        if !SCENARIOS.iter().any(|s| s.name == name) {
            let known: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
            return Err(format!(
                "unknown scenario {name}; known: {}",
                known.join(", ")
            ));
        }
    }
    Ok(options)
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Http,
    Grpc,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Encode,
    Decode,
}

struct Scenario {
    name: &'static str,
    transport: Transport,
    op: Op,
    payloads: usize,
    size: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "http_encode_1x1KiB",
        transport: Transport::Http,
        op: Op::Encode,
        payloads: 1,
        size: 1 << 10,
    },
    Scenario {
        name: "http_encode_10x1KiB",
        transport: Transport::Http,
        op: Op::Encode,
        payloads: 10,
        size: 1 << 10,
    },
    Scenario {
        name: "http_decode_1x1KiB",
        transport: Transport::Http,
        op: Op::Decode,
        payloads: 1,
        size: 1 << 10,
    },
    Scenario {
        name: "http_encode_1x1MiB",
        transport: Transport::Http,
        op: Op::Encode,
        payloads: 1,
        size: 1 << 20,
    },
    Scenario {
        name: "http_decode_1x1MiB",
        transport: Transport::Http,
        op: Op::Decode,
        payloads: 1,
        size: 1 << 20,
    },
    Scenario {
        name: "grpc_encode_1x1KiB",
        transport: Transport::Grpc,
        op: Op::Encode,
        payloads: 1,
        size: 1 << 10,
    },
    Scenario {
        name: "grpc_decode_1x1KiB",
        transport: Transport::Grpc,
        op: Op::Decode,
        payloads: 1,
        size: 1 << 10,
    },
    Scenario {
        name: "grpc_encode_1x1MiB",
        transport: Transport::Grpc,
        op: Op::Encode,
        payloads: 1,
        size: 1 << 20,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--baseline-server") {
        let http: SocketAddr = args[2].parse().expect("baseline http address");
        let grpc: SocketAddr = args[3].parse().expect("baseline grpc address");
        return baseline::serve(http, grpc);
    }
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Err(message) = runtime.block_on(run(options)) {
        eprintln!("kmscodec-bench: {message}");
        std::process::exit(1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process under test.
struct Server {
    label: &'static str,
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
    admin: Option<SocketAddr>,
    dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn pinned(program: &Path, cpu: &Option<String>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

impl Server {
    /// `kmscodec serve` from `program`, with its own data folder, as `label`.
    fn start_kmscodec(
        options: &Options,
        program: &Path,
        label: &'static str,
    ) -> Result<Server, String> {
        // A bin target cannot use dev-dependencies: a plain folder, removed on drop.
        let dir =
            std::env::temp_dir().join(format!("kmscodec-bench-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (http, grpc, admin) = (free_port(), free_port(), free_port());
        let child = pinned(program, &options.server_cpu)
            .args(["serve", "--log", "warn", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (build it: cargo build --release --bins)",
                    program.display()
                )
            })?;
        Ok(Server {
            label,
            child,
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            grpc: SocketAddr::from(([127, 0, 0, 1], grpc)),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], admin))),
            dir: Some(dir),
        })
    }

    fn start_baseline(options: &Options) -> Result<Server, String> {
        let (http, grpc) = (free_port(), free_port());
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = pinned(&exe, &options.server_cpu)
            .arg("--baseline-server")
            .arg(format!("127.0.0.1:{http}"))
            .arg(format!("127.0.0.1:{grpc}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        Ok(Server {
            label: "baseline",
            child,
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            grpc: SocketAddr::from(([127, 0, 0, 1], grpc)),
            admin: None,
            dir: None,
        })
    }

    fn pid(&self) -> u32 {
        // Under taskset the child execs the server: same pid.
        self.child.id()
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ports_open = tokio::net::TcpStream::connect(self.http).await.is_ok()
                && tokio::net::TcpStream::connect(self.grpc).await.is_ok();
            if ports_open {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{} did not start", self.label))
    }
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn status_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Resets the peak RSS (VmHWM) of a process (Linux: write 5 to clear_refs).
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn payloads(count: usize, size: usize) -> Vec<Payload> {
    (0..count)
        .map(|i| Payload {
            metadata: BTreeMap::from([("encoding".to_owned(), b"binary/plain".to_vec())]),
            data: (0..size)
                .map(|b| (b as u8).wrapping_mul(31).wrapping_add(i as u8))
                .collect(),
            external_payloads: vec![],
        })
        .collect()
}

fn json_body(payloads: &[Payload]) -> Bytes {
    let mut out = Vec::new();
    payload::to_json(payloads, &mut out);
    Bytes::from(out)
}

/// One measured run.
#[derive(Default, Clone)]
struct Figures {
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
    cpu_seconds: f64,
    peak_rss_mib: f64,
    payload_bytes: u64,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn mb_per_s(&self) -> f64 {
        self.payload_bytes as f64 / self.seconds / 1e6
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[index]) / 1000.0
    }

    fn cpu_per_1k(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.cpu_seconds / self.requests as f64 * 1000.0
        }
    }
}

async fn http_load(
    address: SocketAddr,
    path: &'static str,
    body: Bytes,
    connections: usize,
    duration: Duration,
) -> Figures {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut figures = Figures::default();
            let Ok(stream) = tokio::net::TcpStream::connect(address).await else {
                figures.errors += 1;
                return figures;
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, connection)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            else {
                figures.errors += 1;
                return figures;
            };
            tokio::spawn(connection);
            while Instant::now() < deadline {
                let request = http::Request::post(path)
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .header("x-namespace", "bench")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let sent = Instant::now();
                match sender.send_request(request).await {
                    Ok(response) => {
                        let ok = response.status() == 200;
                        let collected = response.into_body().collect().await;
                        if ok && collected.is_ok() {
                            figures.requests += 1;
                            figures
                                .latencies_us
                                .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            figures.errors += 1;
                        }
                    }
                    Err(_) => {
                        figures.errors += 1;
                        break;
                    }
                }
            }
            figures
        }));
    }
    merge(tasks, started).await
}

async fn grpc_load(
    address: SocketAddr,
    op: Op,
    payloads: Vec<Payload>,
    connections: usize,
    duration: Duration,
) -> Figures {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let payloads = payloads.clone();
        tasks.push(tokio::spawn(async move {
            let mut figures = Figures::default();
            let Ok(client) = CodecClient::connect(format!("http://{address}")).await else {
                figures.errors += 1;
                return figures;
            };
            let mut client = client
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            while Instant::now() < deadline {
                let sent = Instant::now();
                let result = match op {
                    Op::Encode => {
                        client
                            .encode(EncodeRequest {
                                namespace: "bench".into(),
                                payloads: payloads.clone(),
                            })
                            .await
                    }
                    Op::Decode => {
                        client
                            .decode(DecodeRequest {
                                namespace: "bench".into(),
                                payloads: payloads.clone(),
                            })
                            .await
                    }
                };
                match result {
                    Ok(_) => {
                        figures.requests += 1;
                        figures
                            .latencies_us
                            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(_) => figures.errors += 1,
                }
            }
            figures
        }));
    }
    merge(tasks, started).await
}

async fn merge(tasks: Vec<tokio::task::JoinHandle<Figures>>, started: Instant) -> Figures {
    let mut total = Figures::default();
    for task in tasks {
        let figures = task.await.unwrap_or_default();
        total.requests += figures.requests;
        total.errors += figures.errors;
        total.latencies_us.extend(figures.latencies_us);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    total
}

/// Sum of `kmscodec_provider_calls_total` over every label set.
async fn provider_calls(admin: SocketAddr) -> Result<f64, String> {
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| e.to_string())?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("kmscodec_provider_calls_total"))
        .filter_map(|line| {
            line.rsplit_once(' ')
                .and_then(|(_, v)| v.parse::<f64>().ok())
        })
        .sum())
}

/// Sealed inputs for a decode scenario, made by the server under test itself.
async fn sealed_by(
    server: &Server,
    transport: Transport,
    inputs: &[Payload],
) -> Result<Vec<Payload>, String> {
    match transport {
        Transport::Http => {
            let stream = tokio::net::TcpStream::connect(server.http)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let request = http::Request::post("/encode")
                .header("host", "127.0.0.1")
                .header("content-type", "application/json")
                .header("x-namespace", "bench")
                .body(Full::new(json_body(inputs)))
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status != 200 {
                return Err(format!(
                    "{} refused to seal the decode scenario's payloads: {status} {}",
                    server.label,
                    String::from_utf8_lossy(&body)
                ));
            }
            payload::from_json(&body).map_err(|e| e.to_string())
        }
        Transport::Grpc => {
            let mut client = CodecClient::connect(format!("http://{}", server.grpc))
                .await
                .map_err(|e| e.to_string())?
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            let reply = client
                .encode(EncodeRequest {
                    namespace: "bench".into(),
                    payloads: inputs.to_vec(),
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(reply.into_inner().payloads)
        }
    }
}

/// One server's load for a scenario: the request it repeats.
struct Load<'a> {
    server: &'a Server,
    scenario: &'a Scenario,
    body: Bytes,
    request_payloads: Vec<Payload>,
}

impl<'a> Load<'a> {
    async fn prepare(server: &'a Server, scenario: &'a Scenario) -> Result<Self, String> {
        let inputs = payloads(scenario.payloads, scenario.size);
        let request_payloads = match scenario.op {
            Op::Encode => inputs.clone(),
            Op::Decode => sealed_by(server, scenario.transport, &inputs).await?,
        };
        if request_payloads.len() != inputs.len() {
            return Err(format!(
                "{} returned {} payloads for {} inputs",
                server.label,
                request_payloads.len(),
                inputs.len()
            ));
        }
        Ok(Self {
            server,
            scenario,
            body: json_body(&request_payloads),
            request_payloads,
        })
    }

    async fn drive(&self, connections: usize, duration: Duration) -> Figures {
        let path = match self.scenario.op {
            Op::Encode => "/encode",
            Op::Decode => "/decode",
        };
        match self.scenario.transport {
            Transport::Http => {
                http_load(
                    self.server.http,
                    path,
                    self.body.clone(),
                    connections,
                    duration,
                )
                .await
            }
            Transport::Grpc => {
                grpc_load(
                    self.server.grpc,
                    self.scenario.op,
                    self.request_payloads.clone(),
                    connections,
                    duration,
                )
                .await
            }
        }
    }

    /// One measured slice: load figures plus the server's CPU time and peak RSS during it.
    async fn measure(&self, connections: usize, duration: Duration) -> Figures {
        let pid = self.server.pid();
        reset_peak_rss(pid);
        let cpu_before = cpu_seconds(pid);
        let mut figures = self.drive(connections, duration).await;
        figures.cpu_seconds = cpu_seconds(pid) - cpu_before;
        figures.peak_rss_mib = status_kib(pid, "VmHWM:") / 1024.0;
        figures.payload_bytes =
            figures.requests * (self.scenario.payloads * self.scenario.size) as u64;
        figures
    }
}

impl Figures {
    /// Adds a later slice of the same scenario and server.
    fn absorb(&mut self, slice: Figures) {
        self.requests += slice.requests;
        self.errors += slice.errors;
        self.seconds += slice.seconds;
        self.latencies_us.extend(slice.latencies_us);
        self.cpu_seconds += slice.cpu_seconds;
        self.peak_rss_mib = self.peak_rss_mib.max(slice.peak_rss_mib);
        self.payload_bytes += slice.payload_bytes;
    }
}

/// Every server's figures for a scenario, measured in alternating rounds, and each round's
/// ratio of every server to the last one (the baseline).
async fn measure(
    servers: &[&Server],
    scenario: &Scenario,
    options: &Options,
) -> Result<(Vec<Figures>, Vec<Vec<f64>>), String> {
    let mut loads = Vec::with_capacity(servers.len());
    for server in servers {
        loads.push(Load::prepare(server, scenario).await?);
    }
    for load in &loads {
        load.drive(options.connections, options.warmup).await;
    }
    let slice = options.duration / options.rounds;
    let count = loads.len();
    let mut totals = vec![Figures::default(); count];
    let mut ratios = vec![Vec::new(); count];
    for round in 0..options.rounds as usize {
        // Two servers: k, b, b, k, k, b, …; three: k, b, p, p, b, k, …: no server always
        // goes first or last.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..count).collect()
        } else {
            (0..count).rev().collect()
        };
        let mut slices = vec![Figures::default(); count];
        for index in order {
            slices[index] = loads[index].measure(options.connections, slice).await;
        }
        let baseline_rps = slices[count - 1].rps();
        for (index, slice) in slices.into_iter().enumerate() {
            if baseline_rps > 0.0 {
                ratios[index].push(slice.rps() / baseline_rps);
            }
            totals[index].absorb(slice);
        }
    }
    for total in &mut totals {
        total.latencies_us.sort_unstable();
    }
    Ok((totals, ratios))
}

fn ratio_range(ratios: &[f64]) -> (f64, f64) {
    let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = ratios.iter().copied().fold(0.0, f64::max);
    (lowest, highest)
}

async fn run(options: Options) -> Result<(), String> {
    let kmscodec = Server::start_kmscodec(&options, &options.kmscodec, "kmscodec")?;
    let previous = match &options.previous {
        Some(program) => Some(Server::start_kmscodec(&options, program, "previous")?),
        None => None,
    };
    let baseline = Server::start_baseline(&options)?;
    // The baseline last: every ratio is to it.
    let servers: Vec<&Server> = std::iter::once(&kmscodec)
        .chain(previous.as_ref())
        .chain(std::iter::once(&baseline))
        .collect();
    for server in &servers {
        server.wait_ready().await?;
    }
    // Warm each kmscodec's data key for the namespace, then read idle memory.
    sealed_by(&kmscodec, Transport::Http, &payloads(1, 16)).await?;
    if let Some(previous) = &previous {
        sealed_by(previous, Transport::Http, &payloads(1, 16)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = status_kib(kmscodec.pid(), "VmRSS:") / 1024.0;
    let admin = kmscodec.admin.ok_or("kmscodec has no admin listener")?;
    let calls_before = provider_calls(admin).await?;

    println!(
        "kmscodec-bench: {} connections, {:?} per scenario and server in {} alternating rounds, after {:?} warm-up; servers on CPU {}, load on the other",
        options.connections,
        options.duration,
        options.rounds,
        options.warmup,
        options.server_cpu.as_deref().unwrap_or("any")
    );
    if let Some(program) = &options.previous {
        println!("previous: {}", program.display());
    }
    println!("kmscodec idle RSS after warm-up: {idle_rss:.1} MiB");
    println!();
    println!(
        "{:<22} {:<9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>9} {:>7}",
        "scenario", "server", "req/s", "MB/s", "p50 ms", "p99 ms", "CPU s/1k", "peak MiB", "errors"
    );
    let mut results = Vec::new();
    for scenario in SCENARIOS
        .iter()
        .filter(|s| options.scenarios.iter().any(|n| n == s.name))
    {
        let (figures, round_ratios) = measure(&servers, scenario, &options).await?;
        for (server, figures) in servers.iter().zip(&figures) {
            println!(
                "{:<22} {:<9} {:>9.0} {:>9.1} {:>8.3} {:>8.3} {:>10.4} {:>9.1} {:>7}",
                scenario.name,
                server.label,
                figures.rps(),
                figures.mb_per_s(),
                figures.percentile(0.5),
                figures.percentile(0.99),
                figures.cpu_per_1k(),
                figures.peak_rss_mib,
                figures.errors
            );
        }
        let floor = &figures[figures.len() - 1];
        let ratio_to_floor = |f: &Figures| {
            if floor.rps() > 0.0 {
                f.rps() / floor.rps()
            } else {
                0.0
            }
        };
        for (index, server) in servers.iter().enumerate().take(servers.len() - 1) {
            let (lowest, highest) = ratio_range(&round_ratios[index]);
            let name = if server.label == "kmscodec" {
                "ratio".to_owned()
            } else {
                format!("{}/floor", server.label)
            };
            println!(
                "{:<22} {:<9} {:>8.1}%  (rounds {:.1}% to {:.1}%)",
                scenario.name,
                name,
                ratio_to_floor(&figures[index]) * 100.0,
                lowest * 100.0,
                highest * 100.0
            );
        }
        let speedup = previous.as_ref().map(|_| {
            let rounds: Vec<f64> = round_ratios[0]
                .iter()
                .zip(&round_ratios[1])
                .filter(|(_, old)| **old > 0.0)
                .map(|(new, old)| new / old)
                .collect();
            (
                figures[0].rps() / figures[1].rps().max(f64::MIN_POSITIVE),
                rounds,
            )
        });
        if let Some((speedup, rounds)) = &speedup {
            let (lowest, highest) = ratio_range(rounds);
            println!(
                "{:<22} {:<9} {:>8.2}x  (rounds {:.2}x to {:.2}x)",
                scenario.name, "vs prev", speedup, lowest, highest
            );
        }
        let figures_json = |f: &Figures| {
            json!({
                "requests_per_second": f.rps(),
                "mb_per_second": f.mb_per_s(),
                "p50_ms": f.percentile(0.5),
                "p99_ms": f.percentile(0.99),
                "cpu_seconds_per_1000_requests": f.cpu_per_1k(),
                "peak_rss_mib": f.peak_rss_mib,
                "requests": f.requests,
                "errors": f.errors,
            })
        };
        let mut result = json!({
            "scenario": scenario.name,
            "kmscodec": figures_json(&figures[0]),
            "baseline": figures_json(floor),
            "ratio": ratio_to_floor(&figures[0]),
            "round_ratios": round_ratios[0],
        });
        if let Some((speedup, rounds)) = speedup {
            result["previous"] = figures_json(&figures[1]);
            result["previous_ratio"] = json!(ratio_to_floor(&figures[1]));
            result["speedup_vs_previous"] = json!(speedup);
            result["round_speedups_vs_previous"] = json!(rounds);
        }
        results.push(result);
    }
    let calls_after = provider_calls(admin).await?;
    println!();
    println!(
        "kmscodec provider calls during the measured scenarios: {}",
        calls_after - calls_before
    );
    let document = json!({
        "machine": machine(),
        "connections": options.connections,
        "duration_seconds": options.duration.as_secs_f64(),
        "rounds": options.rounds,
        "previous": options.previous.as_ref().map(|p| p.display().to_string()),
        "kmscodec_idle_rss_mib": idle_rss,
        "provider_calls_during_measurement": calls_after - calls_before,
        "scenarios": results,
    });
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        &options.out,
        serde_json::to_string_pretty(&document).unwrap() + "\n",
    )
    .map_err(|e| e.to_string())?;
    println!("wrote {}", options.out.display());
    drop(servers);
    drop(baseline);
    drop(previous);
    drop(kmscodec);
    Ok(())
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    json!({
        "cpu": model,
        // The machine's CPUs, not this process's affinity (the bench runs pinned to one).
        "cpus": std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| text.lines().filter(|line| line.starts_with("processor")).count())
            .unwrap_or(0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// The baseline server: same protocol and parser, bare AES-256-GCM.
mod baseline {
    use super::*;

    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    const KEY: [u8; 32] = [0x42; 32];

    /// The fastest AES-256-GCM on the machine (`cargo bench --bench aead`): aws-lc-rs.
    fn cipher() -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap())
    }

    fn seal(cipher: &LessSafeKey, payload: &Payload) -> Payload {
        let mut data = Vec::with_capacity(12 + payload.encoded_len() + 16);
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).unwrap();
        data.extend_from_slice(&nonce);
        payload.encode_raw(&mut data);
        let tag = cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut data[12..],
            )
            .unwrap();
        data.extend_from_slice(tag.as_ref());
        Payload {
            metadata: BTreeMap::from([("encoding".to_owned(), b"binary/encrypted".to_vec())]),
            data,
            external_payloads: vec![],
        }
    }

    /// Opens in place, in the request's own buffer, then decodes the Payload out of it.
    fn open(cipher: &LessSafeKey, payload: Payload) -> Option<Payload> {
        let mut data = payload.data;
        if data.len() < 28 {
            return None;
        }
        let nonce: [u8; 12] = data[..12].try_into().ok()?;
        let body_len = data.len() - 28;
        let (body, tag) = data[12..].split_at_mut(body_len);
        let plain = cipher
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                tag,
                body,
            )
            .ok()?;
        Payload::decode(&*plain).ok()
    }

    fn apply(encode: bool, payloads: Vec<Payload>) -> Option<Vec<Payload>> {
        let cipher = cipher();
        if encode {
            Some(payloads.iter().map(|p| seal(&cipher, p)).collect())
        } else {
            payloads.into_iter().map(|p| open(&cipher, p)).collect()
        }
    }

    async fn handle(request: axum::extract::Request) -> axum::response::Response {
        let encode = request.uri().path().ends_with("/encode");
        let Ok(body) = axum::body::to_bytes(request.into_body(), 64 << 20).await else {
            return axum::response::Response::builder()
                .status(413)
                .body(axum::body::Body::empty())
                .unwrap();
        };
        let Ok(payloads) = payload::from_json(&body) else {
            return axum::response::Response::builder()
                .status(400)
                .body(axum::body::Body::empty())
                .unwrap();
        };
        let total: usize = payloads.iter().map(Payload::size).sum();
        // The same large-request rule as kmscodec: big batches on the blocking pool.
        let result = if total >= 256 << 10 {
            tokio::task::spawn_blocking(move || apply(encode, payloads))
                .await
                .ok()
                .flatten()
        } else {
            apply(encode, payloads)
        };
        match result {
            Some(out) => {
                let mut json = Vec::new();
                payload::to_json(&out, &mut json);
                axum::response::Response::builder()
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(json))
                    .unwrap()
            }
            None => axum::response::Response::builder()
                .status(400)
                .body(axum::body::Body::empty())
                .unwrap(),
        }
    }

    #[derive(Clone)]
    struct Grpc;

    #[tonic::async_trait]
    impl CodecService for Grpc {
        async fn encode(
            &self,
            request: tonic::Request<EncodeRequest>,
        ) -> Result<tonic::Response<Payloads>, tonic::Status> {
            let payloads = apply(true, request.into_inner().payloads)
                .ok_or_else(|| tonic::Status::internal("seal"))?;
            Ok(tonic::Response::new(Payloads { payloads }))
        }

        async fn decode(
            &self,
            request: tonic::Request<DecodeRequest>,
        ) -> Result<tonic::Response<Payloads>, tonic::Status> {
            let payloads = apply(false, request.into_inner().payloads)
                .ok_or_else(|| tonic::Status::invalid_argument("open"))?;
            Ok(tonic::Response::new(Payloads { payloads }))
        }
    }

    pub fn serve(http: SocketAddr, grpc: SocketAddr) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(http).await.unwrap();
            let app = axum::Router::new().fallback(handle);
            tokio::spawn(async move { axum::serve(listener, app).await });
            tonic::transport::Server::builder()
                .add_service(
                    CodecServer::new(Grpc)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                )
                .serve(grpc)
                .await
                .unwrap();
        });
    }
}
