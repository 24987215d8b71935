//! The `kmscodec` binary: parse the command line, start tracing, then dispatch one command to
//! its runner in [`cli`], in an async runtime where it needs one; a [`Failure`] becomes the
//! message on stderr and the exit code. Only this file installs signal handlers.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use kmscodec::app;

use cli::keys::{self, KeysCommand};
use cli::{Cli, Command, ConfigCommand, Failure, Global, KeysArgs, LogFormat};

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

/// The async runtime of one command.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("cannot start the async runtime: {error}")))
}

/// Runs the command: startup of `serve`, each other command by its runner in [`cli`].
fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve {
            listen,
            admin_listen,
            grpc_listen,
            grpc_unix_socket,
        } => {
            let config = cli::serve_config(
                &cli.global,
                listen,
                admin_listen,
                grpc_listen,
                grpc_unix_socket,
            )?;
            let app = app::build(config).map_err(Failure::usage)?;
            runtime()?.block_on(async move {
                app.serve(shutdown_signal()).await.map_err(Failure::failed)
            })
        }
        Command::Config(ConfigCommand::Check {
            file,
            deep,
            connect,
        }) => cli::config_check::check(file.or(cli.global.config), deep, connect),
        Command::Keys(KeysArgs {
            output: _,
            command: KeysCommand::Init { keyring, key },
        }) => {
            let path = keyring.unwrap_or_else(|| cli.global.data_dir.join("keyring.json"));
            keys::keys_init(&path, &key)
        }
        Command::Keys(KeysArgs { output, command }) => {
            let config = cli::load_config(&cli.global)?;
            runtime()?.block_on(keys::keys(config, output, command))
        }
        Command::Rewrap => {
            let app = app::build(cli::load_config(&cli.global)?).map_err(Failure::usage)?;
            let input = cli::codec::read_stdin()?;
            runtime()?.block_on(cli::codec::rewrap(&app, &input))
        }
        Command::Encode { namespace } => {
            if let Err(error) = kmscodec::namespace::Namespace::new(&namespace) {
                return Err(Failure::usage(format!("--namespace {error}")));
            }
            let app = app::build(cli::load_config(&cli.global)?).map_err(Failure::usage)?;
            let input = cli::codec::read_stdin()?;
            runtime()?.block_on(cli::codec::encode(&app, &namespace, &input))
        }
        Command::Decode { namespace } => {
            let app = app::build(cli::load_config(&cli.global)?).map_err(Failure::usage)?;
            let input = cli::codec::read_stdin()?;
            runtime()?.block_on(cli::codec::decode(&app, namespace.as_deref(), &input))
        }
    }
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
