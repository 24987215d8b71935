//! The `kmscodec` binary: parse the command line, load configuration, build, then serve or run
//! one command. Only this file installs signal handlers.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use kmscodec::app::{self, App};
use kmscodec::codec::NamespaceCheck;
use kmscodec::config::{self, Config};
use kmscodec::keyadmin::{self, Admin, AdminError, SidecarClient};
use kmscodec::keys::local_file::LocalFile;
use kmscodec::payload;

/// Exit code for a failed operation (bad input, key provider refusal or outage).
const EXIT_FAILED: u8 = 1;
/// Exit code for a usage or configuration error.
const EXIT_USAGE: u8 = 2;

/// The exit codes, as `--help` of the key commands shows them.
const EXIT_CODES: &str = "Exit codes:\n  \
    0  success\n  \
    1  the operation failed: the key provider refused or is unreachable, or a running process \
    (--sidecar) could not be told (the report says what was done)\n  \
    2  usage or configuration error: nothing was done";

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
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KMSCODEC_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `kmscodec=debug`.
    #[arg(long, global = true, value_name = "FILTER", default_value = "info", env = "KMSCODEC_LOG", value_parser = log_filter)]
    log: String,
}

/// A log filter that `tracing_subscriber` accepts: a typo in `--log` or `KMSCODEC_LOG` is a
/// usage error, not a silent fallback.
fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_owned())
        .map_err(|error| format!("not a log filter ({error}); e.g. info, kmscodec=debug"))
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
struct KeysArgs {
    /// Output format of the report (stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned text for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Args)]
struct SidecarArgs {
    /// Base URL of a running kmscodec's admin API (repeatable), e.g. http://127.0.0.1:8089.
    #[arg(long = "sidecar", value_name = "URL")]
    sidecars: Vec<String>,
    /// File holding the admin API's bearer token (default: the configuration's
    /// [admin] token_file, when it is readable).
    #[arg(long, value_name = "FILE")]
    sidecar_token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
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
    /// Create a namespace's key-encryption key (idempotent) and print its configuration.
    #[command(
        long_about = "Create the namespace's key-encryption key (KEK) in its provider with safe \
            settings, unless it exists (then nothing changes), and print the configuration that \
            maps the namespace to it. Vault/OpenBao: transit key of type aes256-gcm96, not \
            exportable, no plaintext backup, deletion not allowed. AWS KMS: symmetric key with \
            automatic rotation, tagged with the namespace, behind the alias. Local file: a new \
            key.",
        after_help = EXIT_CODES
    )]
    Create {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
        /// The provider, for a namespace the configuration does not map yet.
        #[arg(long, value_name = "NAME")]
        provider: Option<String>,
        /// The key reference, for a namespace the configuration does not map yet (default:
        /// kmscodec-<namespace>; AWS: alias/kmscodec/<namespace>).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// List the configured namespaces and their keys.
    #[command(after_help = EXIT_CODES)]
    List,
    /// Describe a namespace's key; with --sidecar, also its live data-key usage.
    #[command(
        long_about = "Describe a namespace's key-encryption key as its provider reports it: \
            versions and creation times, rotation settings, whether encryption and decryption \
            are enabled. With --sidecar, also the live data-key usage, limits, age and rotations \
            in each running kmscodec process named.",
        after_help = EXIT_CODES
    )]
    Describe {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
        #[command(flatten)]
        sidecar: SidecarArgs,
    },
    /// Rotate a namespace's key-encryption key in its provider.
    #[command(
        long_about = "Rotate the namespace's key-encryption key in its provider (Vault: \
            keys/<key>/rotate; AWS KMS: RotateKeyOnDemand; local file: a new version). New data \
            keys are wrapped under the new version; payloads sealed earlier keep decoding. With \
            --sidecar, those processes switch to a new data key at once.",
        after_help = EXIT_CODES
    )]
    Rotate {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
        #[command(flatten)]
        sidecar: SidecarArgs,
    },
    /// Make running processes drop their active data key now (emergency rotation).
    #[command(
        long_about = "Make each running kmscodec process named by --sidecar retire the \
            namespace's active data key now (after a suspected leak): its next encode mints a \
            new one. The key-encryption key does not change.",
        after_help = EXIT_CODES
    )]
    RotateDataKey {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
        /// Base URL of a running kmscodec's admin API (repeatable), e.g. http://127.0.0.1:8089.
        #[arg(long = "sidecar", value_name = "URL", required = true)]
        sidecars: Vec<String>,
        /// File holding the admin API's bearer token (default: the configuration's
        /// [admin] token_file, when it is readable).
        #[arg(long, value_name = "FILE")]
        sidecar_token_file: Option<PathBuf>,
    },
    /// Make a namespace decrypt-only: encodes are refused (403), decodes keep working.
    #[command(
        long_about = "Make a namespace decrypt-only (for retiring it): no new data key may be \
            minted under its key, so encodes are refused with 403, while payloads sealed earlier \
            keep decoding. Vault: a deny rule in the kmscodec-decrypt-only policy. AWS KMS: the \
            tag kmscodec:encrypt=disabled. Local file: encrypt_enabled = false. Running processes \
            notice at their next data key; with --sidecar, at once.",
        after_help = EXIT_CODES
    )]
    DisableEncrypt {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
        #[command(flatten)]
        sidecar: SidecarArgs,
    },
    /// Undo disable-encrypt: new data keys may be minted again.
    #[command(after_help = EXIT_CODES)]
    EnableEncrypt {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
    },
    /// Crypto-shred a namespace's key: its payloads become unreadable, for good.
    #[command(
        long_about = "Crypto-shred the namespace's key-encryption key: every payload ever sealed \
            for the namespace becomes unreadable, in every history and export. Irreversible once \
            the waiting period is over; audited. Vault: deletion_allowed, then delete (at once). \
            AWS KMS: ScheduleKeyDeletion with --pending-days (7-30). Local file: unusable now, \
            material removed after --pending-days, or at once with --now. Prints exactly what \
            becomes unreadable. With --sidecar, those processes also forget the namespace's \
            cached data keys.",
        after_help = EXIT_CODES
    )]
    Shred {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
        /// The namespace again: shredding is irreversible.
        #[arg(long, value_name = "NAMESPACE", required = true)]
        confirm: String,
        /// Waiting period before the key material is destroyed (AWS KMS, local file) [default:
        /// 30].
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(7..=30))]
        pending_days: Option<u32>,
        /// Destroy at once (local file; Vault always does).
        #[arg(long)]
        now: bool,
        /// Shred even though the key also protects other namespaces.
        #[arg(long)]
        including_shared: bool,
        #[command(flatten)]
        sidecar: SidecarArgs,
    },
    /// Cancel a scheduled shred while its waiting period lasts (AWS KMS, local file).
    #[command(after_help = EXIT_CODES)]
    CancelShred {
        /// The Temporal namespace.
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: String,
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
        None => Config::load_embedded_default(&global.data_dir).map_err(Failure::usage),
    }
}

/// `config check --deep`: every referenced file opened, every unreadable one named at once.
fn config_check_deep(file: &Path, config: &Config) -> Result<(), Failure> {
    let references = kmscodec::config_check::references(config);
    let problems = kmscodec::config_check::unreadable(&references);
    if problems.is_empty() {
        println!(
            "{}: {} referenced file{} readable",
            file.display(),
            references.len(),
            if references.len() == 1 { "" } else { "s" }
        );
        return Ok(());
    }
    Err(Failure::usage(format!(
        "{}: {} of {} referenced files cannot be used:\n  {}",
        file.display(),
        problems.len(),
        references.len(),
        problems.join("\n  ")
    )))
}

/// `config check --connect`: each provider built as `serve` builds it and asked for its health
/// once (Vault logs in, AWS resolves credentials and describes a key, a local keyring is read).
fn config_check_connect(config: Config) -> Result<(), Failure> {
    let app = app::build(config).map_err(Failure::usage)?;
    let results = runtime()?.block_on(app.keyring.check_each_provider());
    let mut failed = Vec::new();
    for (provider, result) in results {
        match result {
            Ok(()) => println!("provider {provider}: ok"),
            Err(error) => failed.push(format!("provider {provider}: {error}")),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::failed(failed.join("\n")))
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
        Command::Config(ConfigCommand::Check {
            file,
            deep,
            connect,
        }) => {
            let Some(file) = file.or(cli.global.config) else {
                return Err(Failure::usage(
                    "config check: name a file (or pass --config FILE)",
                ));
            };
            let config = Config::load(&file).map_err(Failure::usage)?;
            if deep || connect {
                config_check_deep(&file, &config)?;
            }
            if connect {
                config_check_connect(config.clone())?;
            }
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
        Command::Keys(KeysArgs {
            output: _,
            command: KeysCommand::Init { keyring, key },
        }) => {
            let path = keyring.unwrap_or_else(|| cli.global.data_dir.join("keyring.json"));
            keys_init(&path, &key)
        }
        Command::Keys(KeysArgs { output, command }) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(keys(config, output, command))
        }
        Command::Rewrap => {
            let app = app::build(load_config(&cli.global)?).map_err(Failure::usage)?;
            let input = read_stdin()?;
            runtime()?.block_on(async {
                let payloads = payload::from_json(&input)
                    .map_err(|e| Failure::failed(format!("stdin: {e}")))?;
                let total = payloads.len();
                let every = if total >= REWRAP_PROGRESS_FROM {
                    1000
                } else {
                    0
                };
                let (out, summary) =
                    keyadmin::rewrap(&app.codec, payloads, every, |done, total| {
                        eprintln!("rewrap: {done}/{total} payloads");
                    })
                    .await
                    .map_err(admin_failure)?;
                write_stdout(&out)?;
                let namespaces = summary
                    .by_namespace
                    .iter()
                    .map(|(namespace, count)| format!("{namespace}: {count}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                eprintln!(
                    "rewrap: re-sealed {} of {} payloads{}; left {} untouched",
                    summary.rewrapped,
                    summary.total,
                    if namespaces.is_empty() {
                        String::new()
                    } else {
                        format!(" ({namespaces})")
                    },
                    summary.untouched
                );
                Ok(())
            })
        }
        Command::Encode { namespace } => {
            if let Err(error) = kmscodec::namespace::Namespace::new(&namespace) {
                return Err(Failure::usage(format!("--namespace {error}")));
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

/// `rewrap` shows progress on stderr from this many payloads on.
const REWRAP_PROGRESS_FROM: usize = 1000;

fn admin_failure(error: AdminError) -> Failure {
    if error.is_usage() {
        Failure::usage(error)
    } else {
        Failure::failed(error)
    }
}

/// Prints a report as a table or as JSON.
fn print_report(output: Output, table: impl FnOnce() -> String, json: &impl serde::Serialize) {
    let text = match output {
        Output::Table => table(),
        Output::Json => match serde_json::to_string_pretty(json) {
            Ok(text) => text + "\n",
            Err(error) => {
                eprintln!("kmscodec: cannot render the report: {error}");
                return;
            }
        },
    };
    // A closed stdout (`| head`) is not worth a panic: the operation is done and audited.
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// The client of `--sidecar` URLs, or `None` without any. The token comes from
/// `--sidecar-token-file`, else from the configuration's `[admin] token_file` if readable.
fn sidecar_client(
    config: &Config,
    urls: &[String],
    token_file: Option<&Path>,
) -> Result<Option<(Vec<String>, SidecarClient)>, AdminError> {
    if urls.is_empty() {
        return Ok(None);
    }
    let urls = urls
        .iter()
        .map(|url| keyadmin::check_sidecar_url(url))
        .collect::<Result<Vec<_>, _>>()?;
    let token = match token_file {
        Some(path) => Some(kmscodec::secret::read_token_file(path).map_err(AdminError::Usage)?),
        None => config
            .admin
            .token_file
            .as_deref()
            .and_then(|path| kmscodec::secret::read_token_file(path).ok()),
    };
    Ok(Some((urls, SidecarClient::new(token)?)))
}

async fn keys(config: Config, output: Output, command: KeysCommand) -> Result<(), Failure> {
    let admin = Admin::new(config);
    let sidecars = |args: &SidecarArgs| {
        sidecar_client(
            admin.config(),
            &args.sidecars,
            args.sidecar_token_file.as_deref(),
        )
        .map_err(admin_failure)
    };
    let urls = |client: &Option<(Vec<String>, SidecarClient)>| {
        client
            .as_ref()
            .map(|(urls, _)| urls.clone())
            .unwrap_or_default()
    };
    match command {
        KeysCommand::Init { .. } => Err(Failure::usage("keys init is handled before")),
        KeysCommand::Create {
            namespace,
            provider,
            key,
        } => {
            let report = keyadmin::create(&admin, &namespace, provider.as_deref(), key.as_deref())
                .await
                .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            Ok(())
        }
        KeysCommand::List => {
            let report = keyadmin::list(&admin).await.map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            match report.failures() {
                0 => Ok(()),
                failed => Err(Failure::failed(format!(
                    "{failed} namespace{} could not be described",
                    if failed == 1 { "" } else { "s" }
                ))),
            }
        }
        KeysCommand::Describe { namespace, sidecar } => {
            let client = sidecars(&sidecar)?;
            let report = keyadmin::describe(
                &admin,
                &namespace,
                &urls(&client),
                client.as_ref().map(|(_, client)| client),
            )
            .await
            .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            match report.sidecars.iter().filter(|s| s.error.is_some()).count() {
                0 => Ok(()),
                failed => Err(Failure::failed(format!(
                    "{failed} running process{} could not be asked",
                    if failed == 1 { "" } else { "es" }
                ))),
            }
        }
        KeysCommand::Rotate { namespace, sidecar } => {
            let client = sidecars(&sidecar)?;
            let report = keyadmin::rotate(
                &admin,
                &namespace,
                &urls(&client),
                client.as_ref().map(|(_, client)| client),
            )
            .await
            .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            sidecars_told(&report.sidecars, "the key-encryption key was rotated")
        }
        KeysCommand::RotateDataKey {
            namespace,
            sidecars: sidecar_urls,
            sidecar_token_file,
        } => {
            let args = SidecarArgs {
                sidecars: sidecar_urls,
                sidecar_token_file,
            };
            let Some((urls, client)) = sidecars(&args)? else {
                return Err(Failure::usage("rotate-data-key needs --sidecar URL"));
            };
            let report = keyadmin::rotate_data_keys(&admin, &namespace, &urls, &client)
                .await
                .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            sidecars_told(&report.sidecars, "some data keys were rotated")
        }
        KeysCommand::DisableEncrypt { namespace, sidecar } => {
            let client = sidecars(&sidecar)?;
            let report = keyadmin::set_decrypt_only(
                &admin,
                &namespace,
                true,
                &urls(&client),
                client.as_ref().map(|(_, client)| client),
            )
            .await
            .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            sidecars_told(&report.sidecars, "the namespace is decrypt-only")
        }
        KeysCommand::EnableEncrypt { namespace } => {
            let report = keyadmin::set_decrypt_only(&admin, &namespace, false, &[], None)
                .await
                .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            Ok(())
        }
        KeysCommand::Shred {
            namespace,
            confirm,
            pending_days,
            now,
            including_shared,
            sidecar,
        } => {
            let args = keyadmin::ShredArgs {
                namespace: &namespace,
                confirm: &confirm,
                pending_days,
                now,
                including_shared,
            };
            // Every argument is checked before any provider or process is contacted.
            keyadmin::check_shred(&admin, &args).map_err(admin_failure)?;
            let client = sidecars(&sidecar)?;
            let report = keyadmin::shred(
                &admin,
                &args,
                &urls(&client),
                client.as_ref().map(|(_, client)| client),
            )
            .await
            .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            sidecars_told(&report.sidecars, "the key was shredded")
        }
        KeysCommand::CancelShred { namespace } => {
            let report = keyadmin::cancel_shred(&admin, &namespace)
                .await
                .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            Ok(())
        }
    }
}

fn sidecars_told(outcomes: &[keyadmin::SidecarOutcome], done: &str) -> Result<(), Failure> {
    match keyadmin::sidecar_failures(outcomes, done) {
        Some(error) => Err(admin_failure(error)),
        None => Ok(()),
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
