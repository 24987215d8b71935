//! Namespace key administration: the library behind `kmscodec keys ...` and `kmscodec rewrap`.
//!
//! It resolves a namespace to its provider and key-encryption key (KEK) from the configuration,
//! exactly as the keyring does ([`target`]); calls [`KeyAdmin`] on that provider (the
//! operations below); tells running kmscodec processes about a change through their admin API
//! ([`sidecar`], `--sidecar URL`); re-seals payloads ([`rewrap`]); writes one structured audit
//! line per operation (target [`ADMIN_TARGET`]); and builds the reports the CLI prints, as a
//! table for people or JSON for scripts ([`report`]). The in-process side of the admin API is
//! [`crate::server::admin_api`].
//!
//! It must never print or log key material, data keys or tokens (reports carry key names,
//! versions and dates only), never mint or unwrap data keys except through the codec in
//! [`rewrap()`], and never act before every argument is checked: a usage error
//! ([`AdminError::Usage`]) is always raised before any provider is contacted.

pub mod report;
pub mod rewrap;
pub mod sidecar;
pub mod target;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use crate::audit::ADMIN_TARGET;
use crate::keys::aws_kms;
use crate::keys::{KeyAdmin, ProviderConfig, ProviderError, ShredRequest};
pub use report::{
    CreateReport, DataKeyReport, DescribeReport, KeyChangeReport, ListReport, ListRow, ShredReport,
    SidecarUsage,
};
use report::{config_snippet, versions_text};
pub use rewrap::{RewrapSummary, rewrap};
pub use sidecar::{SidecarClient, SidecarOutcome, check_sidecar_url, sidecar_failures};
pub use target::{Admin, Mapping, Target};

/// The waiting period of `keys shred` when none is given, in days (AWS KMS's own default).
pub const DEFAULT_PENDING_DAYS: u32 = 30;

/// Why an administration operation failed. [`AdminError::is_usage`] decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The invocation or the configuration does not allow the operation; nothing was done.
    #[error("{0}")]
    Usage(String),
    /// The key provider refused or failed.
    #[error("{what}: {error}")]
    Provider {
        /// What was being done (`rotate vault key kmscodec-payments`).
        what: String,
        /// What the provider said.
        error: ProviderError,
    },
    /// A running kmscodec process could not be reached or refused.
    #[error("{0}")]
    Sidecar(String),
    /// Payloads could not be re-sealed.
    #[error("{0}")]
    Rewrap(String),
}

impl AdminError {
    /// Whether this is a usage or configuration error (exit code 2) rather than a failed
    /// operation (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Usage(_))
    }
}

impl From<ProviderError> for AdminError {
    fn from(error: ProviderError) -> Self {
        Self::Provider {
            what: "key provider".to_owned(),
            error,
        }
    }
}

fn usage(message: impl Into<String>) -> AdminError {
    AdminError::Usage(message.into())
}

fn provider_error(what: impl Into<String>) -> impl FnOnce(ProviderError) -> AdminError {
    let what = what.into();
    move |error| AdminError::Provider { what, error }
}

/// Writes the audit line of one operation. `detail` never holds key material.
fn audit(via: &str, op: &str, target: &Target, outcome: Result<&str, &AdminError>) {
    match outcome {
        Ok(detail) => tracing::info!(
            target: ADMIN_TARGET,
            audit = true,
            via,
            op,
            namespace = %target.namespace,
            provider = %target.provider,
            provider_kind = target.provider_kind,
            key = %target.key,
            outcome = "ok",
            detail,
            "key administration: {op} {}",
            target.namespace
        ),
        Err(error) => tracing::warn!(
            target: ADMIN_TARGET,
            audit = true,
            via,
            op,
            namespace = %target.namespace,
            provider = %target.provider,
            provider_kind = target.provider_kind,
            key = %target.key,
            outcome = "failed",
            error = %error,
            "key administration: {op} {} failed",
            target.namespace
        ),
    }
}

/// Audits `result` and passes it on.
fn audited<T>(
    op: &str,
    target: &Target,
    detail: impl FnOnce(&T) -> String,
    result: Result<T, AdminError>,
) -> Result<T, AdminError> {
    match &result {
        Ok(value) => audit("cli", op, target, Ok(&detail(value))),
        Err(error) => audit("cli", op, target, Err(error)),
    }
    result
}

/// One call to the target's key-encryption key for `op`: a failure is named after the
/// operation and the key, and the audit line is written either way (`detail` describes a
/// success).
async fn kek_call<T>(
    admin: &Admin,
    op: &str,
    target: &Target,
    call: impl AsyncFnOnce(&dyn KeyAdmin) -> Result<T, ProviderError>,
    detail: impl FnOnce(&T) -> String,
) -> Result<T, AdminError> {
    let result = match admin.provider_for(target) {
        Ok(kek) => call(&*kek).await.map_err(provider_error(format!(
            "{op} {} key {}",
            target.provider_kind, target.key
        ))),
        Err(error) => Err(error),
    };
    audited(op, target, detail, result)
}

// ---------------------------------------------------------------------------------------------
// Operations

/// `keys create`: creates the namespace's KEK with safe settings (idempotent) and returns the
/// configuration that maps the namespace to it.
pub async fn create(
    admin: &Admin,
    namespace: &str,
    provider: Option<&str>,
    key: Option<&str>,
) -> Result<CreateReport, AdminError> {
    let target = admin.target(namespace, provider, key, true)?;
    let result = async {
        let local_missing = matches!(
            admin.config().providers.get(&target.provider),
            Some(ProviderConfig::Local { path, .. }) if !path.exists()
        );
        let kek = admin.provider(&target.provider, Some(&target.key))?;
        let mut created = kek
            .create_kek(&target.namespace, &target.key)
            .await
            .map_err(provider_error(format!(
                "create {} key {}",
                target.provider_kind, target.key
            )))?;
        if local_missing {
            // The file was made for this key just now.
            created.created = true;
        }
        Ok(created)
    }
    .await;
    let created = audited(
        "create",
        &target,
        |created| {
            if created.created {
                format!("created {}", created.key_id)
            } else {
                format!("exists {}", created.key_id)
            }
        },
        result,
    )?;
    let wildcard_key = admin
        .config()
        .namespaces
        .get("*")
        .map(|entry| entry.key.as_str());
    let config = config_snippet(&target, wildcard_key);
    Ok(CreateReport {
        created: created.created,
        key_id: created.key_id,
        notes: created.notes,
        config,
        target,
    })
}

/// `keys describe`: the KEK as the provider reports it, and, for each sidecar URL, the live
/// data key usage of the namespace in that process.
pub async fn describe(
    admin: &Admin,
    namespace: &str,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<DescribeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let kek = admin.provider_for(&target)?;
    let description = kek
        .inspect_kek(&target.key)
        .await
        .map_err(provider_error(format!(
            "describe {} key {}",
            target.provider_kind, target.key
        )))?;
    let mut usages = Vec::new();
    if let Some(client) = client {
        for url in sidecars {
            match client.namespaces(url).await {
                Ok(answer) => usages.push(SidecarUsage {
                    url: url.clone(),
                    usage: answer
                        .namespaces
                        .into_iter()
                        .find(|usage| usage.namespace == target.namespace),
                    error: None,
                }),
                Err(error) => usages.push(SidecarUsage {
                    url: url.clone(),
                    usage: None,
                    error: Some(error.to_string()),
                }),
            }
        }
    }
    Ok(DescribeReport {
        shared_with: admin.shared_with(&target),
        description,
        sidecars: usages,
        target,
    })
}

/// `keys list`: every configured namespace, and the namespaces the `*` entry serves whose keys
/// exist in its provider.
pub async fn list(admin: &Admin) -> Result<ListReport, AdminError> {
    let mut targets = Vec::new();
    let mut rows = Vec::new();
    for (name, entry) in &admin.config().namespaces {
        if name != "*" {
            targets.push(admin.target(name, None, None, false)?);
            continue;
        }
        let Some((prefix, suffix)) = entry.key.split_once("{namespace}") else {
            // One key for every namespace of the `*` entry.
            let kind = admin
                .config()
                .providers
                .get(&entry.provider)
                .map(ProviderConfig::kind)
                .unwrap_or("local");
            targets.push(Target {
                namespace: "*".to_owned(),
                provider: entry.provider.clone(),
                provider_kind: kind,
                key: entry.key.clone(),
                mapping: Mapping::Wildcard,
            });
            continue;
        };
        let names = match admin.provider(&entry.provider, None) {
            Ok(kek) => kek.list_keks().await.map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match names {
            Ok(names) => {
                let found: BTreeSet<String> = names
                    .iter()
                    .filter_map(|name| name.strip_prefix(prefix)?.strip_suffix(suffix))
                    .filter(|namespace| {
                        crate::namespace::is_valid(namespace)
                            && !admin.config().namespaces.contains_key(*namespace)
                    })
                    .map(str::to_owned)
                    .collect();
                for namespace in found {
                    targets.push(admin.target(&namespace, None, None, false)?);
                }
            }
            Err(error) => rows.push(ListRow {
                namespace: "*".to_owned(),
                mapping: Mapping::Wildcard,
                provider: entry.provider.clone(),
                key: entry.key.clone(),
                description: None,
                state: "unknown".to_owned(),
                error: Some(format!("cannot list the keys of the \"*\" entry: {error}")),
            }),
        }
    }
    for target in targets {
        let result = match admin.provider_for(&target) {
            Ok(kek) => kek.inspect_kek(&target.key).await.map_err(AdminError::from),
            Err(error) => Err(error),
        };
        let (description, state, error) = match result {
            Ok(description) => (Some(description), "ok".to_owned(), None),
            Err(AdminError::Provider {
                error: ProviderError::NotFound(_),
                ..
            }) => (None, "missing (keys create)".to_owned(), None),
            Err(error) => (None, "unknown".to_owned(), Some(error.to_string())),
        };
        rows.push(ListRow {
            namespace: target.namespace,
            mapping: target.mapping,
            provider: target.provider,
            key: target.key,
            description,
            state,
            error,
        });
    }
    Ok(ListReport { namespaces: rows })
}

/// `keys rotate`: a new KEK version in the provider; sidecars, if named, retire their active
/// data key so the next encode uses the new version at once.
pub async fn rotate(
    admin: &Admin,
    namespace: &str,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<KeyChangeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let rotated = kek_call(
        admin,
        "rotate",
        &target,
        async |kek| kek.rotate_kek(&target.key).await,
        |rotated| match rotated.version {
            Some(version) => format!("new version v{version}"),
            None => "rotated".to_owned(),
        },
    )
    .await?;
    let mut notes = rotated.notes;
    let outcomes = match client {
        Some(client) => client.rotate_data_key(sidecars, &target.namespace).await,
        None => {
            notes.push(
                "running processes switch at their next data key (soft limit or 90% of max_age); \
                 `keys rotate-data-key --sidecar URL` switches them now"
                    .to_owned(),
            );
            Vec::new()
        }
    };
    Ok(KeyChangeReport {
        operation: "rotate",
        shared_with: admin.shared_with(&target),
        version: rotated.version,
        notes,
        sidecars: outcomes,
        target,
    })
}

/// `keys rotate-data-key`: every named process retires the namespace's active data key.
pub async fn rotate_data_keys(
    admin: &Admin,
    namespace: &str,
    sidecars: &[String],
    client: &SidecarClient,
) -> Result<DataKeyReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let outcomes = client.rotate_data_key(sidecars, &target.namespace).await;
    let told = outcomes.iter().filter(|o| o.error.is_none()).count();
    let detail = format!("{told} of {} processes", outcomes.len());
    match sidecar_failures(&outcomes, "data keys rotated") {
        None => audit("cli", "rotate-data-key", &target, Ok(&detail)),
        Some(error) => audit("cli", "rotate-data-key", &target, Err(&error)),
    }
    Ok(DataKeyReport {
        namespace: target.namespace,
        sidecars: outcomes,
    })
}

/// `keys disable-encrypt` (`decrypt_only = true`) and `keys enable-encrypt`. Disabling also
/// asks the named sidecars to retire their active data key, so that encodes are refused at
/// once rather than when that key ends.
pub async fn set_decrypt_only(
    admin: &Admin,
    namespace: &str,
    decrypt_only: bool,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<KeyChangeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let op = if decrypt_only {
        "disable-encrypt"
    } else {
        "enable-encrypt"
    };
    let mut notes = kek_call(
        admin,
        op,
        &target,
        async |kek| kek.set_decrypt_only(&target.key, decrypt_only).await,
        |notes| notes.join("; "),
    )
    .await?;
    let mut outcomes = Vec::new();
    if decrypt_only {
        match client {
            Some(client) => {
                outcomes = client.rotate_data_key(sidecars, &target.namespace).await;
            }
            None => notes.push(
                "running processes keep sealing under their active data key until it ends (soft \
                 limit or max_age); `keys rotate-data-key --sidecar URL` stops them now"
                    .to_owned(),
            ),
        }
    }
    Ok(KeyChangeReport {
        operation: op,
        shared_with: admin.shared_with(&target),
        version: None,
        notes,
        sidecars: outcomes,
        target,
    })
}

/// The arguments of `keys shred`, checked before anything is done.
#[derive(Debug, Clone)]
pub struct ShredArgs<'a> {
    /// `--namespace`.
    pub namespace: &'a str,
    /// `--confirm`: must repeat the namespace.
    pub confirm: &'a str,
    /// `--pending-days`.
    pub pending_days: Option<u32>,
    /// `--now`.
    pub now: bool,
    /// `--including-shared`: the key also serves other namespaces, and that is intended.
    pub including_shared: bool,
}

/// Checks `keys shred`'s arguments against the target and its provider: the confirmation, the
/// waiting period each provider supports, and keys shared with other namespaces.
pub fn check_shred(
    admin: &Admin,
    args: &ShredArgs<'_>,
) -> Result<(Target, ShredRequest, Vec<String>), AdminError> {
    if args.confirm != args.namespace {
        return Err(usage(format!(
            "--confirm {:?} does not match --namespace {:?}: shredding is irreversible, repeat \
             the namespace exactly",
            args.confirm, args.namespace
        )));
    }
    let target = admin.target(args.namespace, None, None, false)?;
    let pending_days = args.pending_days.unwrap_or(DEFAULT_PENDING_DAYS);
    match target.provider_kind {
        "aws" if args.now => {
            return Err(usage(
                "--now: AWS KMS destroys keys only after a waiting period of 7 to 30 days \
                 (--pending-days)",
            ));
        }
        "aws" if !aws_kms::DELETION_WINDOW_DAYS.contains(&pending_days) => {
            return Err(usage("--pending-days: AWS KMS accepts 7 to 30 days"));
        }
        "vault" if args.pending_days.is_some() => {
            return Err(usage(
                "--pending-days: Vault deletes transit keys at once, without a waiting period \
                 (pass --now to say you know)",
            ));
        }
        _ => {}
    }
    if args.pending_days.is_some() && args.now {
        return Err(usage("--pending-days and --now exclude each other"));
    }
    let shared = admin.shared_with(&target);
    if !shared.is_empty() && !args.including_shared {
        let who = shared
            .iter()
            .map(|name| {
                if name == "*" {
                    "every namespace of the \"*\" entry".to_owned()
                } else {
                    format!("{name:?}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(usage(format!(
            "key {:?} of provider {:?} also protects {who}: shredding it makes their payloads \
             unreadable too; refusing (pass --including-shared if that is intended)",
            target.key, target.provider
        )));
    }
    Ok((
        target,
        ShredRequest {
            pending_days,
            immediately: args.now,
        },
        shared,
    ))
}

/// `keys shred`: crypto-shreds the namespace's KEK. Named sidecars forget the namespace's
/// data keys (active and cached), so nothing sealed under the KEK opens in them any more.
pub async fn shred(
    admin: &Admin,
    args: &ShredArgs<'_>,
    sidecars: &[String],
    client: Option<&SidecarClient>,
) -> Result<ShredReport, AdminError> {
    let (target, request, shared) = check_shred(admin, args)?;
    let kek = admin.provider_for(&target)?;
    let description = kek
        .inspect_kek(&target.key)
        .await
        .map_err(provider_error(format!(
            "describe {} key {}",
            target.provider_kind, target.key
        )))?;
    let versions = versions_text(&description);
    let mut unreadable_namespaces = vec![target.namespace.clone()];
    unreadable_namespaces.extend(shared.iter().cloned());
    let result = kek
        .shred_kek(&target.key, request)
        .await
        .map_err(provider_error(format!(
            "shred {} key {}",
            target.provider_kind, target.key
        )));
    let shredded = audited(
        "shred",
        &target,
        |shredded| match (&shredded.destroy_after, shredded.destroyed_now) {
            (_, true) => format!("destroyed now; versions {versions}"),
            (after, false) => format!(
                "destruction scheduled after {}; versions {versions}",
                after.as_deref().unwrap_or("the waiting period")
            ),
        },
        result,
    )?;
    let when = if shredded.destroyed_now {
        "now, for good".to_owned()
    } else {
        format!(
            "now (the key is unusable), and for good after {}; until then `kmscodec keys \
             cancel-shred --namespace {}` restores it",
            shredded
                .destroy_after
                .as_deref()
                .unwrap_or("the waiting period"),
            target.namespace
        )
    };
    let also = if shared.is_empty() {
        "Payloads of other namespaces are not affected.".to_owned()
    } else {
        format!(
            "The same key also protects {}: their payloads become unreadable too.",
            shared.join(", ")
        )
    };
    let unreadable = format!(
        "every payload sealed for namespace {:?} under {} key {} (versions {versions}) becomes \
         unreadable {when}: workflow inputs, results, signals, queries, memos and encoded \
         failures, in Temporal's histories, in exported or archived histories, and anywhere else \
         they were copied. {also}",
        target.namespace, target.provider_kind, target.key
    );
    let mut notes = shredded.notes;
    let outcomes = match client {
        Some(client) => client.forget_data_keys(sidecars, &target.namespace).await,
        None => {
            notes.push(
                "running processes keep unwrapped data keys cached (cache time_to_live, 24 h by \
                 default) and can still open payloads they opened recently: restart them, or \
                 pass --sidecar URL to make them forget now"
                    .to_owned(),
            );
            Vec::new()
        }
    };
    Ok(ShredReport {
        versions,
        unreadable_namespaces,
        unreadable,
        destroyed_now: shredded.destroyed_now,
        destroy_after: shredded.destroy_after,
        notes,
        sidecars: outcomes,
        target,
    })
}

/// `keys cancel-shred`: cancels a scheduled destruction while its waiting period lasts.
pub async fn cancel_shred(admin: &Admin, namespace: &str) -> Result<KeyChangeReport, AdminError> {
    let target = admin.target(namespace, None, None, false)?;
    let notes = kek_call(
        admin,
        "cancel-shred",
        &target,
        async |kek| kek.cancel_shred(&target.key).await,
        |notes| notes.join("; "),
    )
    .await?;
    Ok(KeyChangeReport {
        operation: "cancel-shred",
        shared_with: admin.shared_with(&target),
        version: None,
        notes,
        sidecars: Vec::new(),
        target,
    })
}
