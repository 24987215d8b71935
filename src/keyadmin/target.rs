//! Which provider and key-encryption key serve a namespace, resolved from the configuration
//! exactly as the keyring resolves them; the providers, opened once per run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{AdminError, usage};
use crate::config::Config;
use crate::keys::aws_kms;
use crate::keys::vault::valid_transit_key_name;
use crate::keys::{self, KeyAdmin, ProviderConfig, ProviderError};
use crate::namespace::Namespace;

/// How the configuration maps a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// A `[namespaces.NAME]` entry.
    Exact,
    /// The `[namespaces."*"]` entry.
    Wildcard,
    /// No entry (only `keys create --provider` accepts this).
    Unconfigured,
}

/// A namespace, its provider and its KEK.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The Temporal namespace.
    pub namespace: String,
    /// The provider's name in `[providers]`.
    pub provider: String,
    /// The provider's kind (`local`, `vault`, `aws`).
    pub provider_kind: &'static str,
    /// The KEK reference, `{namespace}` substituted.
    pub key: String,
    /// Where the mapping comes from.
    pub mapping: Mapping,
}

/// The administration side of one configuration: providers are built on first use.
pub struct Admin {
    config: Config,
    providers: Mutex<BTreeMap<String, Arc<dyn KeyAdmin>>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// The KEK name `keys create --provider` uses for a namespace without a configuration entry:
/// the prefixes the shipped policies grant (`kmscodec-*` transit keys, `alias/kmscodec/*`).
pub fn default_key(provider_kind: &str, namespace: &str) -> String {
    match provider_kind {
        "aws" => format!("alias/kmscodec/{namespace}"),
        _ => format!("kmscodec-{namespace}"),
    }
}

fn provider_names(config: &Config) -> String {
    if config.providers.is_empty() {
        "none".to_owned()
    } else {
        config
            .providers
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `NAME` as a TOML table key: bare when it is a plain word, quoted otherwise.
pub(super) fn toml_key(name: &str) -> String {
    if crate::config::is_bare_key(name) {
        name.to_owned()
    } else {
        toml_string(name)
    }
}

pub(super) fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

impl Admin {
    /// Administration over `config`'s providers and namespaces. Does no I/O.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            providers: Mutex::new(BTreeMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Resolves `namespace`. `provider` (from `--provider`) must exist and, when the namespace
    /// is configured, agree with the configuration; `allow_unconfigured` lets `keys create`
    /// name a namespace the configuration does not cover yet (then `provider` is required).
    pub fn target(
        &self,
        namespace: &str,
        provider: Option<&str>,
        key: Option<&str>,
        allow_unconfigured: bool,
    ) -> Result<Target, AdminError> {
        if let Err(error) = Namespace::new(namespace) {
            return Err(usage(format!("--namespace {error}")));
        }
        if let Some(name) = provider
            && !self.config.providers.contains_key(name)
        {
            return Err(usage(format!(
                "unknown provider {name:?} (configured: {})",
                provider_names(&self.config)
            )));
        }
        let entry = self
            .config
            .namespaces
            .get(namespace)
            .map(|entry| (entry, Mapping::Exact))
            .or_else(|| {
                self.config
                    .namespaces
                    .get("*")
                    .map(|entry| (entry, Mapping::Wildcard))
            });
        let (provider_name, key, mapping) = match entry {
            Some((entry, mapping)) => {
                if let Some(name) = provider
                    && name != entry.provider
                {
                    let by = match mapping {
                        Mapping::Exact => format!("[namespaces.{}]", toml_key(namespace)),
                        _ => "the \"*\" entry".to_owned(),
                    };
                    return Err(usage(format!(
                        "namespace {namespace:?} uses provider {:?} ({by}), not {name:?}",
                        entry.provider
                    )));
                }
                let configured = entry.key.replace("{namespace}", namespace);
                if let Some(key) = key
                    && key != configured
                {
                    return Err(usage(format!(
                        "namespace {namespace:?} uses key {configured:?} in the configuration, \
                         not {key:?}"
                    )));
                }
                (entry.provider.clone(), configured, mapping)
            }
            None if allow_unconfigured => {
                let Some(name) = provider else {
                    return Err(usage(format!(
                        "namespace {namespace:?} is not in the configuration (no \
                         [namespaces.{}] and no \"*\" entry): name the provider with --provider \
                         (configured: {})",
                        toml_key(namespace),
                        provider_names(&self.config)
                    )));
                };
                let kind = self
                    .config
                    .providers
                    .get(name)
                    .map(ProviderConfig::kind)
                    .unwrap_or("local");
                let key = key
                    .map(str::to_owned)
                    .unwrap_or_else(|| default_key(kind, namespace));
                (name.to_owned(), key, Mapping::Unconfigured)
            }
            None => {
                return Err(usage(format!(
                    "namespace {namespace:?} is not in the configuration (no [namespaces.{}] and \
                     no \"*\" entry)",
                    toml_key(namespace)
                )));
            }
        };
        let provider_kind = self
            .config
            .providers
            .get(&provider_name)
            .map(ProviderConfig::kind)
            .unwrap_or("local");
        match provider_kind {
            "vault" if !valid_transit_key_name(&key) => {
                return Err(usage(format!(
                    "{key:?} is not a valid transit key name (letters, digits, '_', '-' and '.', \
                     with a letter, digit or '_' at each end)"
                )));
            }
            "aws" => {
                aws_kms::check_key_reference(&key).map_err(usage)?;
            }
            _ if key.is_empty() => return Err(usage("the key name must not be empty")),
            _ => {}
        }
        Ok(Target {
            namespace: namespace.to_owned(),
            provider: provider_name,
            provider_kind,
            key,
            mapping,
        })
    }

    /// The other namespaces whose payloads the target's KEK also protects: exact entries naming
    /// the same provider and key, and every namespace of a `*` entry whose key has no
    /// `{namespace}` (`"*"` in the list).
    pub fn shared_with(&self, target: &Target) -> Vec<String> {
        let mut shared = Vec::new();
        for (name, entry) in &self.config.namespaces {
            if *name == target.namespace || entry.provider != target.provider {
                continue;
            }
            if name == "*" {
                if !entry.key.contains("{namespace}") && entry.key == target.key {
                    shared.push("*".to_owned());
                }
            } else if entry.key == target.key {
                shared.push(name.clone());
            }
        }
        shared
    }

    /// The provider named `name`, built on first use. `create_with`: when the provider is a
    /// local file that does not exist yet, create it holding this key.
    pub(super) fn provider(
        &self,
        name: &str,
        create_with: Option<&str>,
    ) -> Result<Arc<dyn KeyAdmin>, AdminError> {
        let mut providers = self
            .providers
            .lock()
            .map_err(|_| AdminError::Usage("provider table lock poisoned".to_owned()))?;
        if let Some(provider) = providers.get(name) {
            return Ok(Arc::clone(provider));
        }
        let Some(config) = self.config.providers.get(name) else {
            return Err(usage(format!(
                "unknown provider {name:?} (configured: {})",
                provider_names(&self.config)
            )));
        };
        let failed = |error: ProviderError| AdminError::Provider {
            what: format!("provider {name}"),
            error,
        };
        if let ProviderConfig::Local {
            path,
            create_missing: true,
        } = config
            && create_with.is_none()
            && !path.exists()
        {
            return Err(usage(format!(
                "keyring file {} does not exist yet: `kmscodec keys create` makes it",
                path.display()
            )));
        }
        let provider = keys::open(config, create_with).map_err(failed)?.provider;
        providers.insert(name.to_owned(), Arc::clone(&provider));
        Ok(provider)
    }

    pub(super) fn provider_for(&self, target: &Target) -> Result<Arc<dyn KeyAdmin>, AdminError> {
        self.provider(&target.provider, None)
    }
}
