//! `kmscodec config check`: a configuration file validated (every problem reported at once),
//! with `--deep` every file it refers to opened, with `--connect` every key provider asked once.

use std::path::{Path, PathBuf};

use kmscodec::app;
use kmscodec::config::Config;

use super::Failure;

/// `config check [--deep] [--connect]` of `file` (the argument, else `--config`).
pub(crate) fn check(file: Option<PathBuf>, deep: bool, connect: bool) -> Result<(), Failure> {
    let Some(file) = file else {
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
    // The runtime is `main`'s, started once the providers are built.
    let results = crate::runtime()?.block_on(app.keyring.check_each_provider());
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
