//! The `kmscodec` binary: parse the command line, load configuration, build, then serve or run
//! one command. Only this file installs signal handlers.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use kmscodec::app::{self, App};
use kmscodec::codec::NamespaceCheck;
use kmscodec::config::{self, Config};
use kmscodec::keys::local_file::LocalFile;
use kmscodec::payload;

/// Exit code for a failed operation (bad input, key provider refusal or outage).
const EXIT_FAILED: u8 = 1;
/// Exit code for a usage or configuration error.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "kmscodec",
    version,
    about = "Key management and payload codec sidecar for Temporal",
    long_about = "Key management and payload codec sidecar for Temporal.\n\n\
        Without --config, kmscodec runs on the embedded default: a local development keyring in \
        --data-dir, created on first start, serving every namespace."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Configuration file (TOML). Without it, the embedded development default is used.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Folder of the embedded default's keyring.
    #[arg(long, global = true, value_name = "DIR", default_value = ".kmscodec")]
    data_dir: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `kmscodec=debug`.
    #[arg(long, global = true, value_name = "FILTER", default_value = "info")]
    log: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the codec server.
    Serve {
        /// Codec HTTP listener address (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Admin listener for /metrics, /healthz, /readyz (overrides server.admin_listen;
        /// `off` turns it off).
        #[arg(long, value_name = "ADDR|off")]
        admin_listen: Option<String>,
        /// gRPC codec listener address (overrides server.grpc_listen).
        #[arg(long, value_name = "ADDR")]
        grpc_listen: Option<std::net::SocketAddr>,
        /// gRPC codec listener on a Unix domain socket (overrides server.grpc_unix_socket).
        #[arg(long, value_name = "PATH")]
        grpc_unix_socket: Option<PathBuf>,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Key administration.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Seal a Payloads JSON document read from stdin; write the result to stdout.
    Encode {
        /// The namespace to seal for.
        #[arg(long, short = 'n')]
        namespace: String,
    },
    /// Open a Payloads JSON document read from stdin; write the result to stdout.
    Decode {
        /// The namespace the payloads must belong to; without it, each payload's own header
        /// names its namespace.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and report every problem at once.
    Check {
        /// The file (defaults to --config).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a local keyring file (mode 0600) holding one key.
    Init {
        /// The keyring file (default: <data-dir>/keyring.json).
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
        /// The key's name.
        #[arg(long, default_value = config::DEV_KEY)]
        key: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.global);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("kmscodec: {}", failure.message.trim_end());
            ExitCode::from(failure.code)
        }
    }
}

struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl ToString) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.to_string(),
        }
    }

    fn failed(message: impl ToString) -> Self {
        Self {
            code: EXIT_FAILED,
            message: message.to_string(),
        }
    }
}

fn init_tracing(global: &Global) {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(global: &Global) -> Result<Config, Failure> {
    match &global.config {
        Some(path) => Config::load(path).map_err(Failure::usage),
        None => {
            Config::embedded_default(&global.data_dir, std::env::vars()).map_err(Failure::usage)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("cannot start the async runtime: {error}")))
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve {
            listen,
            admin_listen,
            grpc_listen,
            grpc_unix_socket,
        } => {
            let mut config = load_config(&cli.global)?;
            if let Some(listen) = listen {
                config.set_listen(listen);
            }
            match admin_listen.as_deref() {
                None => {}
                Some("off") => config.set_admin_listen(None),
                Some(text) => {
                    let address = text.parse().map_err(|_| {
                        Failure::usage(format!(
                            "--admin-listen {text:?}: expected ADDR:PORT or off"
                        ))
                    })?;
                    config.set_admin_listen(Some(address));
                }
            }
            if let Some(listen) = grpc_listen {
                config.set_grpc_listen(Some(listen));
            }
            if let Some(path) = grpc_unix_socket {
                config.server.grpc_unix_socket = Some(path);
            }
            if config.embedded_default {
                tracing::warn!(
                    data_dir = %cli.global.data_dir.display(),
                    "running on the embedded default: a local DEVELOPMENT keyring serving every \
                     namespace; use a config file with Vault or AWS KMS in production"
                );
            }
            let app = app::build(config).map_err(Failure::usage)?;
            runtime()?.block_on(async move {
                app.serve(shutdown_signal()).await.map_err(Failure::failed)
            })
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let Some(file) = file.or(cli.global.config) else {
                return Err(Failure::usage(
                    "config check: name a file (or pass --config FILE)",
                ));
            };
            let config = Config::load(&file).map_err(Failure::usage)?;
            println!(
                "{}: ok ({} provider{}, {} namespace entr{})",
                file.display(),
                config.providers.len(),
                if config.providers.len() == 1 { "" } else { "s" },
                config.namespaces.len(),
                if config.namespaces.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Init { keyring, key }) => {
            let path = keyring.unwrap_or_else(|| cli.global.data_dir.join("keyring.json"));
            keys_init(&path, &key)
        }
        Command::Encode { namespace } => {
            if !config::valid_namespace(&namespace) {
                return Err(Failure::usage(format!(
                    "--namespace {namespace:?} is not a valid namespace"
                )));
            }
            let app = app::build(load_config(&cli.global)?).map_err(Failure::usage)?;
            let input = read_stdin()?;
            runtime()?.block_on(async {
                let payloads = payload::from_json(&input)
                    .map_err(|e| Failure::failed(format!("stdin: {e}")))?;
                let out = app
                    .codec
                    .encode(&namespace, payloads)
                    .await
                    .map_err(|e| codec_failure(&e))?;
                write_stdout(&out)
            })
        }
        Command::Decode { namespace } => {
            let app: App = app::build(load_config(&cli.global)?).map_err(Failure::usage)?;
            let input = read_stdin()?;
            runtime()?.block_on(async {
                let payloads = payload::from_json(&input)
                    .map_err(|e| Failure::failed(format!("stdin: {e}")))?;
                let check = match &namespace {
                    Some(namespace) => NamespaceCheck::Expect(namespace),
                    None => NamespaceCheck::FromHeader,
                };
                let out = app
                    .codec
                    .decode(check, payloads)
                    .await
                    .map_err(|e| codec_failure(&e))?;
                write_stdout(&out)
            })
        }
    }
}

fn codec_failure(error: &kmscodec::codec::CodecError) -> Failure {
    Failure::failed(format!("{} ({})", error.public_message(), error.code()))
}

fn keys_init(path: &Path, key: &str) -> Result<(), Failure> {
    if path.exists() {
        return Err(Failure::failed(format!(
            "{} already exists; refusing to overwrite a keyring (it may hold the only copy of its keys)",
            path.display()
        )));
    }
    LocalFile::create(path, key).map_err(Failure::failed)?;
    println!("created {} (mode 0600) with key {key:?}", path.display());
    println!();
    println!("Configuration that uses it:");
    println!();
    println!("[providers.local]");
    println!("kind = \"local\"");
    println!("path = {}", toml_string(&path.display().to_string()));
    println!();
    println!("[namespaces.\"*\"]");
    println!("provider = \"local\"");
    println!("key = {}", toml_string(key));
    Ok(())
}

fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|error| Failure::failed(format!("cannot read stdin: {error}")))?;
    Ok(input)
}

fn write_stdout(payloads: &[payload::Payload]) -> Result<(), Failure> {
    let mut out = Vec::new();
    payload::to_json(payloads, &mut out);
    out.push(b'\n');
    std::io::stdout()
        .write_all(&out)
        .map_err(|error| Failure::failed(format!("cannot write stdout: {error}")))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot install the SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
