//! Transit key administration ([`KeyAdmin`]): create, rotate, read, list and delete transit
//! keys with the admin policy's token, and the decrypt-only policy
//! ([`super::DECRYPT_ONLY_POLICY`]) that kmscodec keeps: one `deny` per decrypt-only key on the
//! paths that seal under it.

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyList {
    keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyData {
    policy: String,
}

/// The keys of `mount` that [`DECRYPT_ONLY_POLICY`]'s text marks decrypt-only, and every
/// (mount, key) pair it holds (other mounts' entries are kept when the policy is rewritten).
fn parse_decrypt_only_policy(text: &str) -> std::collections::BTreeSet<(String, String)> {
    let mut entries = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("path \"") else {
            continue;
        };
        let Some((path, _)) = rest.split_once('"') else {
            continue;
        };
        if let Some((mount, key)) = path.rsplit_once("/datakey/wrapped/")
            && !mount.is_empty()
            && valid_transit_key_name(key)
        {
            entries.insert((mount.to_owned(), key.to_owned()));
        }
    }
    entries
}

/// The text of [`DECRYPT_ONLY_POLICY`] denying new data keys under every (mount, key) pair.
/// Exact paths: they outrank the sidecar policy's `kmscodec-*` glob (Vault picks the most
/// specific matching path), so the deny wins while `decrypt` stays allowed.
fn render_decrypt_only_policy(entries: &std::collections::BTreeSet<(String, String)>) -> String {
    let mut text = String::from(
        "# Managed by kmscodec (`kmscodec keys disable-encrypt` / `enable-encrypt`); do not edit.\n\
         # The transit keys below are decrypt-only: no new data key may be sealed under them,\n\
         # decryption keeps working. Attach this policy to the sidecar's tokens next to\n\
         # kmscodec-sidecar. Each path names one key exactly, so it outranks the sidecar\n\
         # policy's kmscodec-* glob.\n",
    );
    if entries.is_empty() {
        text.push_str("# (no key is decrypt-only)\n");
    }
    for (mount, key) in entries {
        for operation in ["datakey/wrapped", "datakey/plaintext", "encrypt"] {
            text.push_str(&format!(
                "path \"{mount}/{operation}/{key}\" {{ capabilities = [\"deny\"] }}\n"
            ));
        }
    }
    text
}

impl VaultTransit {
    /// One administration call; `body` is sent as JSON. Answers the body of a 2xx answer.
    async fn admin_call(
        &self,
        op: Op,
        key: &str,
        method: RequestMethod,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let body = body
            .map(|body| serde_json::to_vec(&body))
            .transpose()
            .map_err(|error| ProviderError::Misconfigured(error.to_string()))?;
        self.call(|client: &VaultClient| {
            http_request(
                client,
                RawCall {
                    method: method.clone(),
                    path: path.clone(),
                    body: body.clone(),
                },
            )
        })
        .await
        .map_err(|error| self.classify(op, key, error))
    }

    fn check_key_name(key: &str) -> Result<(), ProviderError> {
        if valid_transit_key_name(key) {
            Ok(())
        } else {
            Err(ProviderError::NotFound(format!(
                "{key:?} is not a valid transit key name"
            )))
        }
    }

    /// The key's settings, `None` when it does not exist.
    async fn read_key(&self, key: &str) -> Result<Option<KeyData>, ProviderError> {
        Self::check_key_name(key)?;
        let answer = self
            .admin_call(
                Op::Describe,
                key,
                RequestMethod::GET,
                format!("{}/keys/{key}", self.mount),
                None,
            )
            .await;
        match answer {
            Ok(body) => {
                let answer: DataAnswer<KeyData> = parse(&body, "read key")
                    .map_err(|error| self.classify(Op::Describe, key, error))?;
                Ok(Some(answer.data.unwrap_or_default()))
            }
            Err(ProviderError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn existing_key(&self, key: &str) -> Result<KeyData, ProviderError> {
        self.read_key(key).await?.ok_or_else(|| {
            ProviderError::NotFound(format!(
                "vault transit key {}/{key} does not exist",
                self.mount
            ))
        })
    }

    /// Every (mount, key) pair in [`DECRYPT_ONLY_POLICY`]; empty when the policy does not exist.
    async fn decrypt_only_entries(
        &self,
    ) -> Result<std::collections::BTreeSet<(String, String)>, ProviderError> {
        let answer = self
            .admin_call(
                Op::ReadPolicy,
                "",
                RequestMethod::GET,
                format!("sys/policies/acl/{DECRYPT_ONLY_POLICY}"),
                None,
            )
            .await;
        match answer {
            Ok(body) => {
                let answer: DataAnswer<PolicyData> = parse(&body, "read policy")
                    .map_err(|error| self.classify(Op::ReadPolicy, "", error))?;
                Ok(parse_decrypt_only_policy(
                    &answer.data.unwrap_or_default().policy,
                ))
            }
            Err(ProviderError::NotFound(_)) => Ok(Default::default()),
            Err(error) => Err(error),
        }
    }

    /// Adds or removes `key` of this mount in [`DECRYPT_ONLY_POLICY`]. Read, change, write: two
    /// administrators changing it at the same moment can lose one change (Vault policies have no
    /// check-and-set); `keys describe` shows the outcome.
    async fn update_decrypt_only(
        &self,
        key: &str,
        decrypt_only: bool,
    ) -> Result<bool, ProviderError> {
        let mut entries = self.decrypt_only_entries().await?;
        let entry = (self.mount.clone(), key.to_owned());
        let changed = if decrypt_only {
            entries.insert(entry)
        } else {
            entries.remove(&entry)
        };
        if changed {
            self.admin_call(
                Op::WritePolicy,
                "",
                RequestMethod::PUT,
                format!("sys/policies/acl/{DECRYPT_ONLY_POLICY}"),
                Some(serde_json::json!({ "policy": render_decrypt_only_policy(&entries) })),
            )
            .await?;
        }
        Ok(changed)
    }

    /// What differs in an existing key from what `create_kek` would have set.
    fn unsafe_settings(&self, key: &str, data: &KeyData) -> Vec<String> {
        let mut notes = Vec::new();
        let key_type = data.key_type.as_deref().unwrap_or("unknown");
        if !matches!(
            key_type,
            "aes256-gcm96" | "aes128-gcm96" | "chacha20-poly1305"
        ) {
            notes.push(format!(
                "warning: {}/{key} has type {key_type}, which cannot bind the namespace as \
                 associated data; kmscodec needs an AEAD type ({CREATED_KEY_TYPE})",
                self.mount
            ));
        }
        if data.exportable || data.allow_plaintext_backup {
            notes.push(format!(
                "warning: {}/{key} is exportable or allows plaintext backup: its material can \
                 leave vault (this cannot be undone)",
                self.mount
            ));
        }
        if data.deletion_allowed {
            notes.push(format!(
                "warning: {}/{key} has deletion_allowed = true: anyone with delete on it can \
                 destroy every payload sealed under it",
                self.mount
            ));
        }
        if data.soft_deleted {
            notes.push(format!(
                "{}/{key} is soft-deleted: unusable until restored",
                self.mount
            ));
        }
        notes
    }
}

#[async_trait]
impl KeyAdmin for VaultTransit {
    async fn create_kek(&self, _namespace: &str, key: &str) -> Result<CreatedKek, ProviderError> {
        if let Some(existing) = self.read_key(key).await? {
            let mut notes = vec![format!(
                "vault transit key {}/{key} already exists (type {}, latest version {})",
                self.mount,
                existing.key_type.as_deref().unwrap_or("unknown"),
                existing.latest_version.unwrap_or(0)
            )];
            notes.extend(self.unsafe_settings(key, &existing));
            return Ok(CreatedKek {
                created: false,
                key_id: key.to_owned(),
                notes,
            });
        }
        self.admin_call(
            Op::CreateKey,
            key,
            RequestMethod::POST,
            format!("{}/keys/{key}", self.mount),
            Some(serde_json::json!({
                "type": CREATED_KEY_TYPE,
                "exportable": false,
                "allow_plaintext_backup": false,
            })),
        )
        .await?;
        // deletion_allowed is false on a new key; read back to prove every setting.
        let created = self.existing_key(key).await?;
        let mut notes = vec![format!(
            "vault transit key {}/{key}: type {}, exportable {}, allow_plaintext_backup {}, \
             deletion_allowed {}",
            self.mount,
            created.key_type.as_deref().unwrap_or("unknown"),
            created.exportable,
            created.allow_plaintext_backup,
            created.deletion_allowed
        )];
        notes.extend(self.unsafe_settings(key, &created));
        Ok(CreatedKek {
            created: true,
            key_id: key.to_owned(),
            notes,
        })
    }

    async fn rotate_kek(&self, key: &str) -> Result<RotatedKek, ProviderError> {
        Self::check_key_name(key)?;
        self.existing_key(key).await?;
        self.admin_call(
            Op::RotateKey,
            key,
            RequestMethod::POST,
            format!("{}/keys/{key}/rotate", self.mount),
            Some(serde_json::json!({})),
        )
        .await?;
        let rotated = self.existing_key(key).await?;
        Ok(RotatedKek {
            version: rotated.latest_version,
            notes: vec![format!(
                "vault transit key {}/{key} rotated; older versions stay for decryption \
                 (min_decryption_version {})",
                self.mount,
                rotated.min_decryption_version.unwrap_or(1)
            )],
        })
    }

    async fn set_decrypt_only(
        &self,
        key: &str,
        decrypt_only: bool,
    ) -> Result<Vec<String>, ProviderError> {
        self.existing_key(key).await?;
        let changed = self.update_decrypt_only(key, decrypt_only).await?;
        let mut notes = vec![format!(
            "vault policy {DECRYPT_ONLY_POLICY} {} {}/datakey/wrapped/{key}{}",
            if decrypt_only {
                "denies"
            } else {
                "no longer denies"
            },
            self.mount,
            if changed { "" } else { " (unchanged)" }
        )];
        if decrypt_only {
            notes.push(format!(
                "enforced only for tokens holding the {DECRYPT_ONLY_POLICY} policy: the sidecar's \
                 role must list it in token_policies (policies/README.md)"
            ));
        }
        Ok(notes)
    }

    async fn shred_kek(
        &self,
        key: &str,
        _request: ShredRequest,
    ) -> Result<ShreddedKek, ProviderError> {
        self.existing_key(key).await?;
        self.admin_call(
            Op::ConfigureKey,
            key,
            RequestMethod::POST,
            format!("{}/keys/{key}/config", self.mount),
            Some(serde_json::json!({ "deletion_allowed": true })),
        )
        .await?;
        self.admin_call(
            Op::DeleteKey,
            key,
            RequestMethod::DELETE,
            format!("{}/keys/{key}", self.mount),
            None,
        )
        .await?;
        let mut notes = vec![
            format!(
                "vault transit key {}/{key} deleted, every version: vault has no waiting period",
                self.mount
            ),
            "vault snapshots and backups taken earlier still hold the key: destroy them too"
                .to_owned(),
        ];
        // A key created later under the same name must not start decrypt-only.
        match self.update_decrypt_only(key, false).await {
            Ok(true) => notes.push(format!("removed from the {DECRYPT_ONLY_POLICY} policy")),
            Ok(false) => {}
            Err(error) => notes.push(format!(
                "could not remove it from the {DECRYPT_ONLY_POLICY} policy: {error}"
            )),
        }
        Ok(ShreddedKek {
            destroyed_now: true,
            destroy_after: None,
            notes,
        })
    }

    async fn cancel_shred(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        Err(ProviderError::Destroyed(format!(
            "vault deletes transit keys at once: {}/{key} has no scheduled destruction to cancel",
            self.mount
        )))
    }

    async fn list_keks(&self) -> Result<Vec<String>, ProviderError> {
        let answer = self
            .admin_call(
                Op::ListKeys,
                "",
                RequestMethod::LIST,
                format!("{}/keys", self.mount),
                None,
            )
            .await;
        match answer {
            Ok(body) => {
                let answer: DataAnswer<KeyList> = parse(&body, "list keys")
                    .map_err(|error| self.classify(Op::ListKeys, "", error))?;
                Ok(answer.data.unwrap_or_default().keys)
            }
            // An empty mount answers 404.
            Err(ProviderError::NotFound(_)) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    async fn inspect_kek(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        let mut description = self.describe(key).await?;
        match self.decrypt_only_entries().await {
            Ok(entries) => {
                if entries.contains(&(self.mount.clone(), key.to_owned())) {
                    description.encrypt_enabled = false;
                    description.notes.push(format!(
                        "decrypt-only: the {DECRYPT_ONLY_POLICY} policy denies new data keys"
                    ));
                }
            }
            Err(error) => description.notes.push(format!(
                "decrypt-only state unknown: cannot read policy {DECRYPT_ONLY_POLICY}: {error}"
            )),
        }
        Ok(description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypt_only_policy_round_trips_and_keeps_other_mounts() {
        let mut entries = std::collections::BTreeSet::new();
        assert!(parse_decrypt_only_policy(&render_decrypt_only_policy(&entries)).is_empty());
        entries.insert(("transit".to_owned(), "kmscodec-a".to_owned()));
        entries.insert(("team/transit".to_owned(), "kmscodec-b".to_owned()));
        let text = render_decrypt_only_policy(&entries);
        assert!(
            text.contains(
                "path \"transit/datakey/wrapped/kmscodec-a\" { capabilities = [\"deny\"] }"
            )
        );
        assert!(text.contains("path \"team/transit/encrypt/kmscodec-b\""));
        assert_eq!(parse_decrypt_only_policy(&text), entries);
        // Lines that are not ours are ignored, never turned into entries.
        assert!(
            parse_decrypt_only_policy("path \"sys/*\" { capabilities = [\"sudo\"] }").is_empty()
        );
    }
}
