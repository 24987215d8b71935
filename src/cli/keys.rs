//! `kmscodec keys`: the key administration subcommands (`init`, `create`, `list`, `describe`,
//! `rotate`, `rotate-data-key`, `disable-encrypt`, `enable-encrypt`, `shred`, `cancel-shred`),
//! their clap types and their implementation over [`kmscodec::keyadmin`], with the report printing
//! and the `--sidecar` client.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use kmscodec::config::{self, Config};
use kmscodec::keyadmin::{self, Admin, AdminError, SidecarClient};
use kmscodec::keys::local_file::LocalFile;

use super::error::{EXIT_CODES, Failure, admin_failure};
use super::{Output, SidecarArgs};

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
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

/// Runs a `keys` subcommand on `config`, printing its report in `output` format. `init`, which
/// needs no configuration, is [`keys_init`].
pub(crate) async fn keys(
    config: Config,
    output: Output,
    command: KeysCommand,
) -> Result<(), Failure> {
    let admin = Admin::new(config);
    // The checked `--sidecar` URLs and their client (none without any URL).
    let sidecars = |args: &SidecarArgs| {
        let found = sidecar_client(
            admin.config(),
            &args.sidecars,
            args.sidecar_token_file.as_deref(),
        )
        .map_err(admin_failure)?;
        Ok::<_, Failure>(match found {
            Some((urls, client)) => (urls, Some(client)),
            None => (Vec::new(), None),
        })
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
            let (urls, client) = sidecars(&sidecar)?;
            let report = keyadmin::describe(&admin, &namespace, &urls, client.as_ref())
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
            let (urls, client) = sidecars(&sidecar)?;
            let report = keyadmin::rotate(&admin, &namespace, &urls, client.as_ref())
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
            let (urls, Some(client)) = sidecars(&args)? else {
                return Err(Failure::usage("rotate-data-key needs --sidecar URL"));
            };
            let report = keyadmin::rotate_data_keys(&admin, &namespace, &urls, &client)
                .await
                .map_err(admin_failure)?;
            print_report(output, || report.table(), &report);
            sidecars_told(&report.sidecars, "some data keys were rotated")
        }
        KeysCommand::DisableEncrypt { namespace, sidecar } => {
            let (urls, client) = sidecars(&sidecar)?;
            let report =
                keyadmin::set_decrypt_only(&admin, &namespace, true, &urls, client.as_ref())
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
            let (urls, client) = sidecars(&sidecar)?;
            let report = keyadmin::shred(&admin, &args, &urls, client.as_ref())
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

/// Success when every process named by `--sidecar` was told, else a failure saying that `done`
/// happened all the same.
fn sidecars_told(outcomes: &[keyadmin::SidecarOutcome], done: &str) -> Result<(), Failure> {
    match keyadmin::sidecar_failures(outcomes, done) {
        Some(error) => Err(admin_failure(error)),
        None => Ok(()),
    }
}

/// `keys init`: creates the keyring file at `path` holding `key` (never over an existing file),
/// and prints the configuration that uses it.
pub(crate) fn keys_init(path: &Path, key: &str) -> Result<(), Failure> {
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

/// `text` as a TOML basic string (JSON's string escapes are TOML's).
fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}
