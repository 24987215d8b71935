//! The reports `kmscodec keys ...` prints: a table for people, the same fields as JSON for
//! scripts. They carry key names, versions and dates, never key material.

use std::fmt::Write as _;

use serde::Serialize;

use super::sidecar::SidecarOutcome;
use super::target::{Mapping, Target, toml_key, toml_string};
use crate::keyring::NamespaceSnapshot;
use crate::keys::KeyDescription;

/// Renders rows under headers, columns padded to their widest cell.
pub(super) fn render_rows(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let width = widths.get(index).copied().unwrap_or(0);
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `key: value` lines, keys padded.
pub(super) fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (name, value) in fields {
        let _ = writeln!(out, "{name:<width$}  {value}");
    }
    out
}

pub(super) fn versions_text(description: &KeyDescription) -> String {
    if description.versions.is_empty() {
        return "(kept inside the provider)".to_owned();
    }
    description
        .versions
        .iter()
        .map(|version| match &version.created_at {
            Some(at) => format!("v{} ({at})", version.version),
            None => format!("v{}", version.version),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn enabled(flag: bool) -> String {
    if flag { "enabled" } else { "disabled" }.to_owned()
}

pub(super) fn mapping_text(target: &Target) -> String {
    match target.mapping {
        Mapping::Exact => format!("[namespaces.{}]", toml_key(&target.namespace)),
        Mapping::Wildcard => "[namespaces.\"*\"]".to_owned(),
        Mapping::Unconfigured => "not configured".to_owned(),
    }
}

pub(super) fn sidecar_lines(fields: &mut Vec<(&str, String)>, outcomes: &[SidecarOutcome]) {
    for outcome in outcomes {
        let text = match (&outcome.answer, &outcome.error) {
            (Some(answer), _) if answer.cache_cleared => format!(
                "{}: forgot its data keys ({})",
                outcome.url,
                if answer.had_active_key {
                    "active data key retired, decode cache emptied"
                } else {
                    "no active data key, decode cache emptied"
                }
            ),
            (Some(answer), _) => format!(
                "{}: {}",
                outcome.url,
                if answer.had_active_key {
                    "active data key retired; the next encode mints a new one"
                } else {
                    "had no active data key"
                }
            ),
            (None, Some(error)) => format!("FAILED: {error}"),
            (None, None) => format!("{}: no answer", outcome.url),
        };
        fields.push(("sidecar", text));
    }
}

/// The configuration lines mapping the target's namespace to its key.
pub fn config_snippet(target: &Target, wildcard_key: Option<&str>) -> String {
    let entry = format!(
        "[namespaces.{}]\nprovider = {}\nkey = {}\n",
        toml_key(&target.namespace),
        toml_string(&target.provider),
        toml_string(&target.key)
    );
    match target.mapping {
        Mapping::Exact => format!("# already in the configuration:\n{entry}"),
        Mapping::Wildcard => format!(
            "# served by the \"*\" entry (key = {}); no change needed. To pin it:\n{entry}",
            toml_string(wildcard_key.unwrap_or("?"))
        ),
        Mapping::Unconfigured => format!("# add to the configuration:\n{entry}"),
    }
}

/// What `keys create` did.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// Whether the key was created (false: it existed; nothing changed).
    pub created: bool,
    /// The provider's identifier of the key.
    pub key_id: String,
    /// Details.
    pub notes: Vec<String>,
    /// The configuration mapping the namespace to the key.
    pub config: String,
}

impl CreateReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("namespace", self.target.namespace.clone()),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
            ("key id", self.key_id.clone()),
            (
                "result",
                if self.created {
                    "created".to_owned()
                } else {
                    "already exists (nothing changed)".to_owned()
                },
            ),
        ];
        for note in &self.notes {
            fields.push(("note", note.clone()));
        }
        format!("{}\n{}", render_fields(&fields), self.config)
    }
}

/// What `keys describe` found.
#[derive(Debug, Clone, Serialize)]
pub struct DescribeReport {
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// Other namespaces protected by the same KEK.
    pub shared_with: Vec<String>,
    /// What the provider says.
    pub description: KeyDescription,
    /// What running processes say, by sidecar URL.
    pub sidecars: Vec<SidecarUsage>,
}

/// One sidecar's live data key usage for the namespace.
#[derive(Debug, Clone, Serialize)]
pub struct SidecarUsage {
    /// The sidecar's base URL.
    pub url: String,
    /// Its usage of the namespace; `None` when it has not used the namespace yet.
    pub usage: Option<NamespaceSnapshot>,
    /// Why it could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(super) fn usage_text(usage: &NamespaceSnapshot) -> String {
    let rotations = usage
        .rotations
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| format!("{reason}={count}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "active data key {}; {} of {} seals (soft limit {}), {} bytes; age {:.0} s of {:.0} s; \
         data keys minted: {}; hard limit refusals {}; mint failures {}",
        usage.active_key_id.as_deref().unwrap_or("none"),
        usage.uses,
        usage.hard_limit,
        usage.soft_limit,
        usage.bytes,
        usage.age_seconds,
        usage.max_age_seconds,
        if rotations.is_empty() {
            "none".to_owned()
        } else {
            rotations
        },
        usage.hard_limit_refusals,
        usage.rotation_failures
    )
}

impl DescribeReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let d = &self.description;
        let mut fields = vec![
            ("namespace", self.target.namespace.clone()),
            ("mapped by", mapping_text(&self.target)),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
            (
                "primary",
                d.primary_version
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            ("versions", versions_text(d)),
            ("encrypt", enabled(d.encrypt_enabled)),
            ("decrypt", enabled(d.decrypt_enabled)),
        ];
        if !self.shared_with.is_empty() {
            fields.push(("shared with", self.shared_with.join(", ")));
        }
        for note in &d.notes {
            fields.push(("note", note.clone()));
        }
        for sidecar in &self.sidecars {
            let text = match (&sidecar.usage, &sidecar.error) {
                (_, Some(error)) => format!("FAILED: {error}"),
                (Some(usage), None) => format!("{}: {}", sidecar.url, usage_text(usage)),
                (None, None) => format!("{}: has not used this namespace yet", sidecar.url),
            };
            fields.push(("sidecar", text));
        }
        render_fields(&fields)
    }
}

/// One row of `keys list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListRow {
    /// The namespace (`*` for a key shared by every namespace of the `*` entry).
    pub namespace: String,
    /// Where the mapping comes from.
    pub mapping: Mapping,
    /// The provider's configured name.
    pub provider: String,
    /// The KEK reference.
    pub key: String,
    /// What the provider says, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<KeyDescription>,
    /// `missing` when the key does not exist yet.
    pub state: String,
    /// Why the provider could not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `keys list` found.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// One row per namespace.
    pub namespaces: Vec<ListRow>,
}

impl ListReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .namespaces
            .iter()
            .map(|row| {
                let (primary, versions, encrypt, decrypt) = match &row.description {
                    Some(d) => (
                        d.primary_version
                            .map(|v| format!("v{v}"))
                            .unwrap_or_else(|| "-".to_owned()),
                        d.versions.len().to_string(),
                        enabled(d.encrypt_enabled),
                        enabled(d.decrypt_enabled),
                    ),
                    None => ("-".into(), "-".into(), "-".into(), "-".into()),
                };
                let state = match &row.error {
                    Some(error) => format!("error: {error}"),
                    None => row.state.clone(),
                };
                vec![
                    row.namespace.clone(),
                    row.provider.clone(),
                    row.key.clone(),
                    primary,
                    versions,
                    encrypt,
                    decrypt,
                    state,
                ]
            })
            .collect();
        render_rows(
            &[
                "NAMESPACE",
                "PROVIDER",
                "KEY",
                "PRIMARY",
                "VERSIONS",
                "ENCRYPT",
                "DECRYPT",
                "STATE",
            ],
            &rows,
        )
    }

    /// Rows whose provider failed (not counting keys that do not exist yet).
    pub fn failures(&self) -> usize {
        self.namespaces
            .iter()
            .filter(|row| row.error.is_some())
            .count()
    }
}

/// What a key operation (`rotate`, `disable-encrypt`, `enable-encrypt`, `cancel-shred`) did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyChangeReport {
    /// The operation.
    pub operation: &'static str,
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// The new primary version (`rotate`, where the provider numbers versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Other namespaces protected by the same KEK, which the change affects too.
    pub shared_with: Vec<String>,
    /// Details.
    pub notes: Vec<String>,
    /// What running processes said.
    pub sidecars: Vec<SidecarOutcome>,
}

impl KeyChangeReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("operation", self.operation.to_owned()),
            ("namespace", self.target.namespace.clone()),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
        ];
        if let Some(version) = self.version {
            fields.push(("new version", format!("v{version}")));
        }
        if !self.shared_with.is_empty() {
            fields.push((
                "also affects",
                format!("namespaces {}", self.shared_with.join(", ")),
            ));
        }
        for note in &self.notes {
            fields.push(("note", note.clone()));
        }
        sidecar_lines(&mut fields, &self.sidecars);
        render_fields(&fields)
    }
}

/// What `keys rotate-data-key` did.
#[derive(Debug, Clone, Serialize)]
pub struct DataKeyReport {
    /// The namespace.
    pub namespace: String,
    /// What each running process said.
    pub sidecars: Vec<SidecarOutcome>,
}

impl DataKeyReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("operation", "rotate-data-key".to_owned()),
            ("namespace", self.namespace.clone()),
        ];
        sidecar_lines(&mut fields, &self.sidecars);
        render_fields(&fields)
    }
}

/// What `keys shred` made unreadable, and how.
#[derive(Debug, Clone, Serialize)]
pub struct ShredReport {
    /// The namespace and its key.
    #[serde(flatten)]
    pub target: Target,
    /// The KEK versions destroyed, with their creation times.
    pub versions: String,
    /// The namespaces whose payloads become unreadable (the target first).
    pub unreadable_namespaces: Vec<String>,
    /// What becomes unreadable, in words.
    pub unreadable: String,
    /// Whether the key material is gone already.
    pub destroyed_now: bool,
    /// When it will be, if the provider waits.
    pub destroy_after: Option<String>,
    /// Details.
    pub notes: Vec<String>,
    /// What running processes said.
    pub sidecars: Vec<SidecarOutcome>,
}

impl ShredReport {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut fields = vec![
            ("operation", "shred".to_owned()),
            ("namespace", self.target.namespace.clone()),
            (
                "provider",
                format!("{} ({})", self.target.provider, self.target.provider_kind),
            ),
            ("key", self.target.key.clone()),
            ("versions", self.versions.clone()),
            (
                "destroyed",
                match (&self.destroy_after, self.destroyed_now) {
                    (_, true) => "now".to_owned(),
                    (Some(after), false) => format!("after {after} (unusable now)"),
                    (None, false) => "scheduled (unusable now)".to_owned(),
                },
            ),
        ];
        for note in &self.notes {
            fields.push(("note", note.clone()));
        }
        sidecar_lines(&mut fields, &self.sidecars);
        format!(
            "{}\nUNREADABLE: {}\n",
            render_fields(&fields),
            self.unreadable
        )
    }
}
