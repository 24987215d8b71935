//! `kmscodec config check --deep`: every file a valid configuration refers to (keyrings, tokens,
//! TLS certificates and keys, CA bundles, JWKS documents, the audit file's folder), opened once,
//! and every one that cannot be read reported together, so a missing Secret costs one
//! CrashLoopBackOff round rather than one per file.
//!
//! It reads files to see that they open and are not empty; it never prints their contents, and
//! never checks what the server checks again at start (formats, permissions, key material).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::audit::AuditOutput;
use crate::auth::JwksSource;
use crate::config::Config;
use crate::keys::ProviderConfig;
use crate::keys::vault::{VaultAuth, VaultToken};

/// How a referenced path must be usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A file that must exist, open for reading and hold something.
    File,
    /// A file that may be missing, whose folder must then exist (created on first use).
    FileOrFolder,
}

/// One file the configuration refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The configuration key naming it, e.g. `providers.vault.auth.token_file`.
    pub key: String,
    /// The path as configured.
    pub path: PathBuf,
    need: Need,
}

/// Every file `config` refers to, in a stable order.
pub fn references(config: &Config) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut add = |key: String, path: &Path, need: Need| {
        out.push(Reference {
            key,
            path: path.to_path_buf(),
            need,
        })
    };
    for (name, provider) in &config.providers {
        let at = |field: &str| format!("providers.{name}.{field}");
        match provider {
            ProviderConfig::Local {
                path,
                create_missing,
            } => add(
                at("path"),
                path,
                if *create_missing {
                    Need::FileOrFolder
                } else {
                    Need::File
                },
            ),
            ProviderConfig::Vault(vault) => {
                if let Some(ca) = &vault.ca_cert {
                    add(at("ca_cert"), ca, Need::File);
                }
                match &vault.auth {
                    VaultAuth::Token(VaultToken::File(file)) => {
                        add(at("auth.token_file"), file, Need::File)
                    }
                    VaultAuth::Token(VaultToken::Env { .. }) => {}
                    VaultAuth::AppRole {
                        role_id_file,
                        secret_id_file,
                        ..
                    } => {
                        add(at("auth.role_id_file"), role_id_file, Need::File);
                        add(at("auth.secret_id_file"), secret_id_file, Need::File);
                    }
                    VaultAuth::Kubernetes { jwt_file, .. } => {
                        add(at("auth.jwt_file"), jwt_file, Need::File)
                    }
                }
            }
            ProviderConfig::Aws(_) => {}
        }
    }
    let listeners = [
        ("server.tls", config.server.tls.as_ref()),
        ("server.admin_tls", config.server.admin_tls.as_ref()),
        ("server.grpc_tls", config.server.grpc_tls.as_ref()),
        ("ui.tls", config.ui.as_ref().and_then(|ui| ui.tls.as_ref())),
    ];
    for (table, tls) in listeners {
        let Some(tls) = tls else { continue };
        add(format!("{table}.cert_file"), &tls.cert_file, Need::File);
        add(format!("{table}.key_file"), &tls.key_file, Need::File);
        if let Some(ca) = &tls.client_ca_file {
            add(format!("{table}.client_ca_file"), ca, Need::File);
        }
    }
    for (name, token) in &config.auth.tokens {
        add(format!("auth.tokens.{name}.file"), &token.file, Need::File);
    }
    if let Some(jwt) = &config.auth.jwt
        && let JwksSource::File(file) = &jwt.jwks
    {
        add("auth.jwt.jwks_file".to_owned(), file, Need::File);
    }
    if let Some(file) = &config.admin.token_file {
        add("admin.token_file".to_owned(), file, Need::File);
    }
    if let AuditOutput::File(file) = &config.audit {
        add("audit.path".to_owned(), file, Need::FileOrFolder);
    }
    out
}

/// Opens every referenced file; one line per file that is not usable, e.g.
/// `providers.vault.auth.token_file: /var/run/secrets/token: No such file or directory`.
pub fn unreadable(references: &[Reference]) -> Vec<String> {
    references
        .iter()
        .filter_map(|reference| {
            check(reference).err().map(|problem| {
                format!("{}: {}: {problem}", reference.key, reference.path.display())
            })
        })
        .collect()
}

fn check(reference: &Reference) -> Result<(), String> {
    let path = &reference.path;
    if reference.need == Need::FileOrFolder && !path.exists() {
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        return if folder.is_dir() {
            Ok(())
        } else {
            Err(format!(
                "missing, and its folder {} does not exist to create it in",
                folder.display()
            ))
        };
    }
    let mut file = File::open(path).map_err(|error| error.to_string())?;
    if file.metadata().map_err(|error| error.to_string())?.is_dir() {
        return Err("is a folder, not a file".to_owned());
    }
    // One byte says it is readable and not empty; the contents are not looked at.
    let mut first = [0u8; 1];
    match file.read(&mut first) {
        Ok(0) => Err("is empty".to_owned()),
        Ok(_) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}
