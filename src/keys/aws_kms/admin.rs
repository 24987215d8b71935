//! Key administration ([`KeyAdmin`]: `kmscodec keys ...`): create, rotate, tag decrypt-only,
//! schedule and cancel deletion, list and inspect KMS keys. Every KMS call here goes through the
//! [`Administering`] view, whose operations are [`ADMIN_ACTIONS`].

use super::*;

/// The tag `keys create` puts on a key, naming the namespace it serves.
pub const NAMESPACE_TAG: &str = "kmscodec:namespace";
/// The shortest and longest waiting periods of `ScheduleKeyDeletion`, in days.
pub const DELETION_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;

/// A tag, built from constant-length parts (the builder only fails on missing fields).
fn tag(key: &str, value: &str) -> Result<Tag, ProviderError> {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .map_err(|error| ProviderError::Misconfigured(format!("AWS KMS tag: {error}")))
}

/// The service error code of an SDK error, if KMS answered one.
fn service_code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(context) => context.err().code(),
        _ => None,
    }
}

#[async_trait]
impl KeyAdmin for AwsKms {
    async fn create_kek(&self, namespace: &str, key: &str) -> Result<CreatedKek, ProviderError> {
        let kms = self.kms().await?.administering();
        match kms.describe_key().key_id(key).send().await {
            Ok(described) => {
                let metadata = described.key_metadata().ok_or_else(|| {
                    ProviderError::Unavailable("AWS KMS DescribeKey: no KeyMetadata".into())
                })?;
                let arn = metadata.arn().unwrap_or(metadata.key_id()).to_owned();
                let mut notes = vec![format!("{key} already exists: key {arn}")];
                if let Some(state) = metadata.key_state()
                    && *state != KeyState::Enabled
                {
                    notes.push(format!(
                        "warning: the key's state is {}: it cannot serve the namespace until an \
                         operator acts (`kmscodec keys cancel-shred`, `aws kms enable-key`)",
                        state.as_str()
                    ));
                }
                return Ok(CreatedKek {
                    created: false,
                    key_id: arn,
                    notes,
                });
            }
            Err(error) if service_code(&error) == Some("NotFoundException") => {}
            Err(error) => return Err(classify(Operation::DescribeKey, &error)),
        }
        let Some(alias) = key.strip_prefix("alias/") else {
            return Err(ProviderError::NotFound(format!(
                "AWS KMS key {key} does not exist; `keys create` makes new keys only for alias \
                 references (alias/kmscodec/<namespace>)"
            )));
        };
        let created = kms
            .create_key()
            .description(format!(
                "kmscodec key-encryption key for Temporal namespace {namespace}"
            ))
            .key_usage(KeyUsageType::EncryptDecrypt)
            .key_spec(KeySpec::SymmetricDefault)
            .tags(tag(NAMESPACE_TAG, namespace)?)
            .send()
            .await
            .map_err(|error| classify(Operation::CreateKey, &error))?;
        let arn = created
            .key_metadata()
            .and_then(|metadata| metadata.arn())
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::Unavailable("AWS KMS CreateKey: no key ARN".into()))?;
        kms.enable_key_rotation()
            .key_id(&arn)
            .send()
            .await
            .map_err(|error| classify(Operation::EnableKeyRotation, &error))?;
        match kms
            .create_alias()
            .alias_name(key)
            .target_key_id(&arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) if service_code(&error) == Some("AlreadyExistsException") => {
                // Another `keys create` won the race: retire the key made here, keep theirs.
                let duplicate = created
                    .key_metadata()
                    .map(|metadata| metadata.key_id().to_owned())
                    .unwrap_or_else(|| arn.clone());
                kms.schedule_key_deletion()
                    .key_id(&duplicate)
                    .pending_window_in_days(7)
                    .send()
                    .await
                    .map_err(|error| classify(Operation::ScheduleKeyDeletion, &error))?;
                let existing = kms
                    .describe_key()
                    .key_id(key)
                    .send()
                    .await
                    .map_err(|error| classify(Operation::DescribeKey, &error))?;
                let winner = existing
                    .key_metadata()
                    .and_then(|metadata| metadata.arn())
                    .unwrap_or_default()
                    .to_owned();
                return Ok(CreatedKek {
                    created: false,
                    key_id: winner.clone(),
                    notes: vec![format!(
                        "{key} was created concurrently (key {winner}); the duplicate key {arn} \
                         is scheduled for deletion in 7 days"
                    )],
                });
            }
            Err(error) => return Err(classify(Operation::CreateAlias, &error)),
        }
        Ok(CreatedKek {
            created: true,
            key_id: arn.clone(),
            notes: vec![
                format!(
                    "symmetric key {arn} (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT), tagged \
                     {NAMESPACE_TAG}={namespace}, automatic rotation enabled, alias alias/{alias}"
                ),
                "the key has the default key policy: replace it with \
                 policies/aws/kms-key-policy.json (aws kms put-key-policy)"
                    .to_owned(),
            ],
        })
    }

    async fn rotate_kek(&self, key: &str) -> Result<RotatedKek, ProviderError> {
        let kms = self.kms().await?.administering();
        let arn = key_arn(kms, key).await?;
        kms.rotate_key_on_demand()
            .key_id(&arn)
            .send()
            .await
            .map_err(|error| classify(Operation::RotateKeyOnDemand, &error))?;
        Ok(RotatedKek {
            version: None,
            notes: vec![
                format!("on-demand rotation of {arn} started"),
                "KMS keeps every key material version inside the key; the key ARN (and every \
                 payload header) stays the same"
                    .to_owned(),
            ],
        })
    }

    async fn set_decrypt_only(
        &self,
        key: &str,
        decrypt_only: bool,
    ) -> Result<Vec<String>, ProviderError> {
        let kms = self.kms().await?.administering();
        let arn = key_arn(kms, key).await?;
        if decrypt_only {
            kms.tag_resource()
                .key_id(&arn)
                .tags(tag(DECRYPT_ONLY_TAG, DECRYPT_ONLY_VALUE)?)
                .send()
                .await
                .map_err(|error| classify(Operation::TagResource, &error))?;
            Ok(vec![format!(
                "tagged {arn} {DECRYPT_ONLY_TAG}={DECRYPT_ONLY_VALUE}: kmscodec refuses data keys \
                 minted under it, and the sidecar IAM policy denies GenerateDataKey on it"
            )])
        } else {
            kms.untag_resource()
                .key_id(&arn)
                .tag_keys(DECRYPT_ONLY_TAG)
                .send()
                .await
                .map_err(|error| classify(Operation::UntagResource, &error))?;
            Ok(vec![format!(
                "removed the {DECRYPT_ONLY_TAG} tag from {arn}"
            )])
        }
    }

    async fn shred_kek(
        &self,
        key: &str,
        request: ShredRequest,
    ) -> Result<ShreddedKek, ProviderError> {
        if request.immediately || !DELETION_WINDOW_DAYS.contains(&request.pending_days) {
            return Err(ProviderError::Misconfigured(format!(
                "AWS KMS destroys keys only after a waiting period of {} to {} days",
                DELETION_WINDOW_DAYS.start(),
                DELETION_WINDOW_DAYS.end()
            )));
        }
        let kms = self.kms().await?.administering();
        let (arn, key_id) = key_ids(kms, key).await?;
        let days = i32::try_from(request.pending_days).unwrap_or(30);
        let scheduled = kms
            .schedule_key_deletion()
            .key_id(&key_id)
            .pending_window_in_days(days)
            .send()
            .await
            .map_err(|error| classify(Operation::ScheduleKeyDeletion, &error))?;
        let destroy_after = scheduled.deletion_date().map(|date| date.to_string());
        Ok(ShreddedKek {
            destroyed_now: false,
            destroy_after,
            notes: vec![
                format!(
                    "{arn} is pending deletion: KMS refuses every use of it now and destroys it \
                     after {days} days, with its aliases"
                ),
                "`kmscodec keys cancel-shred` (CancelKeyDeletion, then EnableKey) restores it \
                 until then"
                    .to_owned(),
            ],
        })
    }

    async fn cancel_shred(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        let kms = self.kms().await?.administering();
        let (arn, key_id) = key_ids(kms, key).await?;
        kms.cancel_key_deletion()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|error| classify(Operation::CancelKeyDeletion, &error))?;
        // A cancelled deletion leaves the key disabled.
        kms.enable_key()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|error| classify(Operation::EnableKey, &error))?;
        Ok(vec![format!(
            "deletion of {arn} cancelled and the key enabled again"
        )])
    }

    async fn list_keks(&self) -> Result<Vec<String>, ProviderError> {
        let kms = self.kms().await?.administering();
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = kms
                .list_aliases()
                .set_marker(marker.take())
                .limit(100)
                .send()
                .await
                .map_err(|error| classify(Operation::ListAliases, &error))?;
            names.extend(
                page.aliases()
                    .iter()
                    .filter(|alias| alias.target_key_id().is_some())
                    .filter_map(|alias| alias.alias_name())
                    .filter(|name| !name.starts_with("alias/aws/"))
                    .map(str::to_owned),
            );
            match page.next_marker() {
                Some(next) if page.truncated() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(names)
    }

    async fn inspect_kek(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        let mut description = self.describe(key).await?;
        let kms = self.kms().await?.administering();
        let arn = key_arn(kms, key).await?;
        match kms.list_resource_tags().key_id(&arn).limit(50).send().await {
            Ok(output) if is_tagged_decrypt_only(output.tags()) => {
                description.encrypt_enabled = false;
                description.notes.push(format!(
                    "decrypt-only: tagged {DECRYPT_ONLY_TAG}={DECRYPT_ONLY_VALUE}"
                ));
            }
            Ok(_) => {}
            Err(error) => description.notes.push(format!(
                "decrypt-only state unknown: {}",
                classify(Operation::ListResourceTags, &error)
            )),
        }
        // KMS does not number key material versions; number them by rotation date, the key's
        // creation being version 1.
        match kms
            .list_key_rotations()
            .key_id(&arn)
            .limit(1000)
            .send()
            .await
        {
            Ok(output) => {
                let created = described_creation(kms, &arn).await;
                description.versions.push(KekVersion {
                    version: 1,
                    created_at: created,
                });
                for (index, rotation) in output.rotations().iter().enumerate() {
                    description.versions.push(KekVersion {
                        version: u32::try_from(index + 2).unwrap_or(u32::MAX),
                        created_at: rotation.rotation_date().map(|date| date.to_string()),
                    });
                }
                description.primary_version = u32::try_from(description.versions.len()).ok();
                description.notes.push(
                    "versions are numbered by kmscodec from the key's rotation history; payload \
                     headers name the key ARN only (version 0)"
                        .to_owned(),
                );
            }
            Err(error) => description.notes.push(format!(
                "rotation history not available: {}",
                classify(Operation::ListKeyRotations, &error)
            )),
        }
        Ok(description)
    }
}

/// The key ARN behind a key reference (alias, id or ARN).
async fn key_arn(kms: Administering<'_>, key: &str) -> Result<String, ProviderError> {
    Ok(key_ids(kms, key).await?.0)
}

/// The key ARN and the bare key id behind a key reference. Key state changes
/// (`ScheduleKeyDeletion`, `CancelKeyDeletion`, `EnableKey`) are sent the bare id: KMS accepts
/// either, and moto 5.2 (the test server) only the id.
async fn key_ids(kms: Administering<'_>, key: &str) -> Result<(String, String), ProviderError> {
    let described = kms
        .describe_key()
        .key_id(key)
        .send()
        .await
        .map_err(|error| classify(Operation::DescribeKey, &error))?;
    let metadata = described
        .key_metadata()
        .ok_or_else(|| ProviderError::Unavailable("AWS KMS DescribeKey: no KeyMetadata".into()))?;
    let arn = metadata
        .arn()
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::Unavailable("AWS KMS DescribeKey: no key ARN".into()))?;
    Ok((arn, metadata.key_id().to_owned()))
}

/// The creation date of the key `arn`, if KMS says.
async fn described_creation(kms: Administering<'_>, arn: &str) -> Option<String> {
    let described = kms.describe_key().key_id(arn).send().await.ok()?;
    described
        .key_metadata()?
        .creation_date()
        .map(|date| date.to_string())
}
