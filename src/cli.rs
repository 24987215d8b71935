//! The command line: the clap types of the global options and of every command (the `keys`
//! subcommands are in [`keys`]), and the runners of the commands other than `keys`: `serve`'s
//! configuration, `config check` ([`config_check`]), `encode`, `decode` and `rewrap` ([`codec`]).

pub(crate) mod codec;
pub(crate) mod config_check;
mod error;
pub(crate) mod keys;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use kmscodec::config::Config;

use error::EXIT_CODES;
pub(crate) use error::Failure;
use keys::KeysCommand;

#[derive(Parser)]
#[command(
    name = "kmscodec",
    version,
    about = "Key management and payload codec sidecar for Temporal",
    long_about = "Key management and payload codec sidecar for Temporal.\n\n\
        Without --config, kmscodec runs on the embedded default: a local development keyring in \
        --data-dir, created on first start, serving every namespace."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args)]
pub(crate) struct Global {
    /// Configuration file (TOML). Without it, the embedded development default is used.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Folder of the embedded default's keyring.
    #[arg(long, global = true, value_name = "DIR", default_value = ".kmscodec")]
    pub(crate) data_dir: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KMSCODEC_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Log filter, e.g. `info`, `kmscodec=debug`.
    #[arg(long, global = true, value_name = "FILTER", default_value = "info", env = "KMSCODEC_LOG", value_parser = log_filter)]
    pub(crate) log: String,
}

/// A log filter that `tracing_subscriber` accepts: a typo in `--log` or `KMSCODEC_LOG` is a
/// usage error, not a silent fallback.
fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_owned())
        .map_err(|error| format!("not a log filter ({error}); e.g. info, kmscodec=debug"))
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Key administration: create, inspect, rotate, retire and shred namespace keys.
    Keys(KeysArgs),
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
    /// Re-seal every payload of ours in a Payloads JSON document (stdin) under the current keys.
    #[command(
        long_about = "Re-seal every payload of ours in a Payloads JSON document read from stdin \
            under the current keys of the namespace its header names (after a KEK rotation, so \
            that old KEK versions can be retired), and write the document to stdout. Payloads \
            that kmscodec did not seal are left untouched. Progress goes to stderr for large \
            inputs. All or nothing: on any failure nothing is written to stdout.",
        after_help = EXIT_CODES
    )]
    Rewrap,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct KeysArgs {
    /// Output format of the report (stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
    #[command(subcommand)]
    pub(crate) command: KeysCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned text for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Args)]
pub(crate) struct SidecarArgs {
    /// Base URL of a running kmscodec's admin API (repeatable), e.g. http://127.0.0.1:8089.
    #[arg(long = "sidecar", value_name = "URL")]
    pub(crate) sidecars: Vec<String>,
    /// File holding the admin API's bearer token (default: the configuration's
    /// [admin] token_file, when it is readable).
    #[arg(long, value_name = "FILE")]
    pub(crate) sidecar_token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file and report every problem at once.
    Check {
        /// The file (defaults to --config).
        file: Option<PathBuf>,
        /// Also open every file the configuration refers to (keyrings, tokens, TLS certificates
        /// and keys, CA bundles) and report every unreadable one at once.
        #[arg(long)]
        deep: bool,
        /// Also log in to each key provider once (implies --deep).
        #[arg(long)]
        connect: bool,
    },
}

/// The configuration: the `--config` file, else the embedded default in `--data-dir`.
pub(crate) fn load_config(global: &Global) -> Result<Config, Failure> {
    match &global.config {
        Some(path) => Config::load(path).map_err(Failure::usage),
        None => Config::load_embedded_default(&global.data_dir).map_err(Failure::usage),
    }
}

/// `serve`'s configuration: the configuration with the command line's listener overrides, and
/// a warning when it is the embedded development default.
pub(crate) fn serve_config(
    global: &Global,
    listen: Option<std::net::SocketAddr>,
    admin_listen: Option<String>,
    grpc_listen: Option<std::net::SocketAddr>,
    grpc_unix_socket: Option<PathBuf>,
) -> Result<Config, Failure> {
    let mut config = load_config(global)?;
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
            data_dir = %global.data_dir.display(),
            "running on the embedded default: a local DEVELOPMENT keyring serving every \
             namespace; use a config file with Vault or AWS KMS in production"
        );
    }
    Ok(config)
}
