//! The local key file backend: KEKs kept in a JSON keyring file on disk.
//!
//! The embedded default: it works with nothing else installed. Each named key has numbered
//! versions of 256-bit key material; data keys are wrapped with AES-256-GCM under the primary
//! version, with the namespace, key name and version bound as associated data.
//!
//! The file is refused when group or others can read it (checked on every provider call, not
//! only when the file changed: `chmod` does not change the modification time), written
//! atomically (temporary file, fsync, rename) with mode 0600, and its material is never printed.
//! Every read-modify-write holds an advisory lock (`flock`) on `<file>.lock` beside it, so two
//! `kmscodec keys ...` commands (or the admin API and a command) never lose each other's change.
//! Changes made by another process are picked up on the next provider call.
//!
//! Shredding a key (`keys shred`) either removes it from the file at once or marks it with
//! `destroy_after`: from then on it neither mints nor unwraps ([`ProviderError::Destroyed`]),
//! and the next write to the file after that time removes its material. Until then
//! `keys cancel-shred` restores it. Backups of the file made earlier still hold the material:
//! shredding a local key is only as final as the destruction of those backups.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    CreatedKek, GeneratedKey, KekVersion, KeyAdmin, KeyDescription, KeyProvider, ProviderError,
    RotatedKek, ShredRequest, ShreddedKek,
};
use crate::secret::{DATA_KEY_LEN, DataKey, KekRef, ProviderKind, WrappedKey};

/// The `format` value of a keyring file this build reads and writes.
pub const FILE_FORMAT: &str = "kmscodec-local-keyring/v1";
const WRAP_LABEL: &[u8] = b"kmscodec local-file wrap v1\0";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// A wrapped data key: nonce, encrypted key, tag.
const WRAPPED_LEN: usize = NONCE_LEN + DATA_KEY_LEN + TAG_LEN;

/// The keyring file as stored on disk.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: String,
    keys: BTreeMap<String, StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    created_at: String,
    /// Whether new data keys may be minted (false: decrypt-only).
    #[serde(default = "yes")]
    encrypt_enabled: bool,
    /// The version new data keys are wrapped under.
    primary: u32,
    versions: Vec<StoredVersion>,
    /// Set by `keys shred`: after this time the key is destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destroy_after: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredVersion {
    version: u32,
    created_at: String,
    /// Base64 of the 32 bytes of key material.
    material: Zeroizing<String>,
}

/// A KEK version's material in memory.
struct Material(Zeroizing<[u8; 32]>);

/// The parsed keyring: key name to versions.
struct Loaded {
    modified: Option<SystemTime>,
    keys: BTreeMap<String, LoadedKey>,
}

struct LoadedKey {
    created_at: String,
    encrypt_enabled: bool,
    primary: u32,
    versions: BTreeMap<u32, (String, Material)>,
    destroy_after: Option<String>,
}

/// Local key file provider.
pub struct LocalFile {
    path: PathBuf,
    state: Mutex<Arc<Loaded>>,
}

impl std::fmt::Debug for LocalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn misconfigured(path: &Path, what: impl std::fmt::Display) -> ProviderError {
    ProviderError::Misconfigured(format!("keyring file {}: {what}", path.display()))
}

fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Whether a `destroy_after` time has passed. An unreadable time counts as passed: the key was
/// meant to go, and failing towards destruction is what the operator asked for.
fn destruction_due(destroy_after: &str, now: time::OffsetDateTime) -> bool {
    time::OffsetDateTime::parse(
        destroy_after,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|at| at <= now)
    .unwrap_or(true)
}

fn destroyed(key: &str, destroy_after: &str) -> ProviderError {
    ProviderError::Destroyed(format!(
        "local key {key:?} was shredded (destruction after {destroy_after})"
    ))
}

/// Refuses a keyring file that group or others can read or write.
pub fn check_permissions(path: &Path) -> Result<(), ProviderError> {
    let metadata = fs::metadata(path).map_err(|error| misconfigured(path, error))?;
    check_mode(path, &metadata)
}

fn check_mode(path: &Path, metadata: &fs::Metadata) -> Result<(), ProviderError> {
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(misconfigured(
            path,
            format!(
                "is accessible by group or others (mode {mode:04o}); it holds key material: \
                 run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Loaded, ProviderError> {
    check_permissions(path)?;
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
    let bytes = Zeroizing::new(fs::read(path).map_err(|error| misconfigured(path, error))?);
    let file: KeyringFile = serde_json::from_slice(&bytes)
        .map_err(|error| misconfigured(path, format!("not a valid keyring: {error}")))?;
    if file.format != FILE_FORMAT {
        return Err(misconfigured(
            path,
            format!("format is {:?}, expected {FILE_FORMAT:?}", file.format),
        ));
    }
    let mut keys = BTreeMap::new();
    for (name, stored) in file.keys {
        let mut versions = BTreeMap::new();
        for version in stored.versions {
            let decoded = Zeroizing::new(
                base64_simd::STANDARD
                    .decode_to_vec(version.material.as_bytes())
                    .map_err(|_| {
                        misconfigured(
                            path,
                            format!("key {name} v{}: bad material", version.version),
                        )
                    })?,
            );
            let material: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
                misconfigured(
                    path,
                    format!("key {name} v{}: material is not 32 bytes", version.version),
                )
            })?;
            versions.insert(
                version.version,
                (version.created_at, Material(Zeroizing::new(material))),
            );
        }
        if !versions.contains_key(&stored.primary) {
            return Err(misconfigured(
                path,
                format!(
                    "key {name}: primary version {} does not exist",
                    stored.primary
                ),
            ));
        }
        keys.insert(
            name,
            LoadedKey {
                created_at: stored.created_at,
                encrypt_enabled: stored.encrypt_enabled,
                primary: stored.primary,
                versions,
                destroy_after: stored.destroy_after,
            },
        );
    }
    Ok(Loaded { modified, keys })
}

fn write_file(path: &Path, loaded: &Loaded) -> Result<(), ProviderError> {
    let file = KeyringFile {
        format: FILE_FORMAT.to_owned(),
        keys: loaded
            .keys
            .iter()
            .map(|(name, key)| {
                (
                    name.clone(),
                    StoredKey {
                        created_at: key.created_at.clone(),
                        encrypt_enabled: key.encrypt_enabled,
                        primary: key.primary,
                        destroy_after: key.destroy_after.clone(),
                        versions: key
                            .versions
                            .iter()
                            .map(|(version, (created_at, material))| StoredVersion {
                                version: *version,
                                created_at: created_at.clone(),
                                material: Zeroizing::new(
                                    base64_simd::STANDARD.encode_to_string(material.0.as_slice()),
                                ),
                            })
                            .collect(),
                    },
                )
            })
            .collect(),
    };
    let bytes = Zeroizing::new(
        serde_json::to_vec_pretty(&file).map_err(|error| misconfigured(path, error))?,
    );
    write_atomically(path, &bytes).map_err(|error| misconfigured(path, error))
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same folder, fsynced and renamed
/// over the target, so a reader sees the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(std::io::Error::other)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyring".to_owned());
    let temporary = dir.join(format!(".{name}.tmp-{}", u64::from_le_bytes(suffix)));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn new_material() -> Result<Material, ProviderError> {
    let mut material = Zeroizing::new([0u8; 32]);
    getrandom::fill(material.as_mut_slice())
        .map_err(|error| ProviderError::Unavailable(format!("random number generator: {error}")))?;
    Ok(Material(material))
}

/// The associated data binding a wrap to its namespace, key name and version.
fn wrap_aad(namespace: &str, key: &str, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_LABEL.len() + 8 + namespace.len() + key.len());
    aad.extend_from_slice(WRAP_LABEL);
    aad.extend_from_slice(&(namespace.len() as u32).to_be_bytes());
    aad.extend_from_slice(namespace.as_bytes());
    aad.extend_from_slice(&(key.len() as u32).to_be_bytes());
    aad.extend_from_slice(key.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

impl LocalFile {
    /// Opens an existing keyring file, checking its permissions and contents.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ProviderError> {
        let path = path.into();
        let loaded = read_file(&path)?;
        Ok(Self {
            path,
            state: Mutex::new(Arc::new(loaded)),
        })
    }

    /// Creates a new keyring file holding one key named `key`. Fails if the file exists.
    pub fn create(path: impl Into<PathBuf>, key: &str) -> Result<Self, ProviderError> {
        let path = path.into();
        if path.exists() {
            return Err(misconfigured(&path, "already exists"));
        }
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|error| misconfigured(&path, error))?;
        }
        let mut loaded = Loaded {
            modified: None,
            keys: BTreeMap::new(),
        };
        loaded.keys.insert(key.to_owned(), new_key()?);
        write_file(&path, &loaded)?;
        Self::open(path)
    }

    /// Opens the keyring at `path`, creating it with one key named `key` if it does not exist.
    /// Returns whether it was created.
    pub fn open_or_create(
        path: impl Into<PathBuf>,
        key: &str,
    ) -> Result<(Self, bool), ProviderError> {
        let path = path.into();
        if path.exists() {
            Ok((Self::open(path)?, false))
        } else {
            Ok((Self::create(path, key)?, true))
        }
    }

    /// The keyring file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current contents, re-read when the file changed on disk.
    fn current(&self) -> Result<Arc<Loaded>, ProviderError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| misconfigured(&self.path, "state lock poisoned"))?;
        let metadata = fs::metadata(&self.path).map_err(|error| {
            ProviderError::Unavailable(format!("keyring file {}: {error}", self.path.display()))
        })?;
        check_mode(&self.path, &metadata)?;
        let modified = metadata.modified().map_err(|error| {
            ProviderError::Unavailable(format!("keyring file {}: {error}", self.path.display()))
        })?;
        if state.modified != Some(modified) {
            *state = Arc::new(read_file(&self.path)?);
        }
        Ok(Arc::clone(&state))
    }

    /// Takes the advisory lock on `<file>.lock` (created 0600 beside the file), waiting for
    /// another process that holds it. Released when the returned file is dropped.
    fn lock_file(&self) -> Result<fs::File, ProviderError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let path = self.path.with_file_name(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| misconfigured(&path, error))?;
        file.lock().map_err(|error| misconfigured(&path, error))?;
        Ok(file)
    }

    /// Applies `change` to a fresh read of the file and writes the result atomically.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Loaded) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| misconfigured(&self.path, "state lock poisoned"))?;
        // Held until the write is done: other processes wait here rather than read what this
        // one is about to replace.
        let _lock = self.lock_file()?;
        let mut loaded = read_file(&self.path)?;
        let value = change(&mut loaded)?;
        // Every write also removes the material of keys whose destruction is due.
        let now = time::OffsetDateTime::now_utc();
        loaded.keys.retain(|name, key| {
            let due = key
                .destroy_after
                .as_deref()
                .is_some_and(|after| destruction_due(after, now));
            if due {
                tracing::info!(path = %self.path.display(), key = %name, "shredded local key destroyed");
            }
            !due
        });
        write_file(&self.path, &loaded)?;
        *state = Arc::new(read_file(&self.path)?);
        Ok(value)
    }

    /// Creates key `key` if it does not exist. Returns whether it was created.
    pub fn create_key(&self, key: &str) -> Result<bool, ProviderError> {
        self.update(|loaded| {
            if loaded.keys.contains_key(key) {
                return Ok(false);
            }
            loaded.keys.insert(key.to_owned(), new_key()?);
            Ok(true)
        })
    }

    /// Adds a new version to `key` and makes it primary. Returns the new version.
    pub fn rotate_key(&self, key: &str) -> Result<u32, ProviderError> {
        self.update(|loaded| {
            let stored = loaded
                .keys
                .get_mut(key)
                .ok_or_else(|| ProviderError::NotFound(key.to_owned()))?;
            if let Some(after) = &stored.destroy_after {
                return Err(destroyed(key, after));
            }
            let next = stored.versions.keys().next_back().copied().unwrap_or(0) + 1;
            stored
                .versions
                .insert(next, (now_rfc3339(), new_material()?));
            stored.primary = next;
            Ok(next)
        })
    }

    /// Turns minting of new data keys under `key` on or off.
    pub fn set_encrypt_enabled(&self, key: &str, enabled: bool) -> Result<(), ProviderError> {
        self.update(|loaded| {
            let stored = loaded
                .keys
                .get_mut(key)
                .ok_or_else(|| ProviderError::NotFound(key.to_owned()))?;
            if let Some(after) = &stored.destroy_after {
                return Err(destroyed(key, after));
            }
            stored.encrypt_enabled = enabled;
            Ok(())
        })
    }

    /// Removes `key` and all its versions from the file: payloads wrapped under it can never be
    /// opened again.
    pub fn destroy_key(&self, key: &str) -> Result<(), ProviderError> {
        self.update(|loaded| {
            loaded
                .keys
                .remove(key)
                .map(|_| ())
                .ok_or_else(|| ProviderError::NotFound(key.to_owned()))
        })
    }

    /// Marks `key` for destruction at `after`: from now on it neither mints nor unwraps, and the
    /// first write to the file after `after` removes its material. Returns the time (RFC 3339).
    pub fn schedule_destruction(
        &self,
        key: &str,
        after: time::OffsetDateTime,
    ) -> Result<String, ProviderError> {
        let after = rfc3339(after);
        self.update(|loaded| {
            let stored = loaded
                .keys
                .get_mut(key)
                .ok_or_else(|| ProviderError::NotFound(key.to_owned()))?;
            if let Some(existing) = &stored.destroy_after {
                // Never postpone a destruction already scheduled.
                return Ok(existing.clone());
            }
            stored.destroy_after = Some(after.clone());
            Ok(after)
        })
    }

    /// Cancels a scheduled destruction of `key` (before it is due). Returns whether one was
    /// scheduled. The key comes back as it was before, encryption setting included.
    pub fn cancel_destruction(&self, key: &str) -> Result<bool, ProviderError> {
        self.update(|loaded| {
            let stored = loaded
                .keys
                .get_mut(key)
                .ok_or_else(|| ProviderError::NotFound(key.to_owned()))?;
            if let Some(after) = &stored.destroy_after
                && destruction_due(after, time::OffsetDateTime::now_utc())
            {
                return Err(destroyed(key, after));
            }
            Ok(stored.destroy_after.take().is_some())
        })
    }

    /// The names of all keys.
    pub fn key_names(&self) -> Result<Vec<String>, ProviderError> {
        Ok(self.current()?.keys.keys().cloned().collect())
    }
}

fn new_key() -> Result<LoadedKey, ProviderError> {
    let created_at = now_rfc3339();
    Ok(LoadedKey {
        created_at: created_at.clone(),
        encrypt_enabled: true,
        primary: 1,
        versions: BTreeMap::from([(1, (created_at, new_material()?))]),
        destroy_after: None,
    })
}

/// Creates `dir` (and parents) with mode 0700 where it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

use std::os::unix::fs::DirBuilderExt;

#[async_trait]
impl KeyProvider for LocalFile {
    fn kind(&self) -> ProviderKind {
        ProviderKind::LocalFile
    }

    async fn generate_data_key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<GeneratedKey, ProviderError> {
        let loaded = self.current()?;
        let stored = loaded
            .keys
            .get(key)
            .ok_or_else(|| ProviderError::NotFound(format!("local key {key:?}")))?;
        if let Some(after) = &stored.destroy_after {
            return Err(destroyed(key, after));
        }
        if !stored.encrypt_enabled {
            return Err(ProviderError::Disabled(format!(
                "local key {key:?} is in decrypt-only mode"
            )));
        }
        let version = stored.primary;
        let (_, material) = stored
            .versions
            .get(&version)
            .ok_or_else(|| ProviderError::NotFound(format!("local key {key:?} v{version}")))?;
        let plaintext = DataKey::generate().map_err(|error| {
            ProviderError::Unavailable(format!("random number generator: {error}"))
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| {
            ProviderError::Unavailable(format!("random number generator: {error}"))
        })?;
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(plaintext.expose_secret());
        let cipher = Aes256Gcm::new((&*material.0).into());
        let tag = cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &wrap_aad(namespace, key, version),
                (&mut wrapped[NONCE_LEN..]).into(),
            )
            .map_err(|_| ProviderError::Misconfigured("wrap failed".to_owned()))?;
        wrapped.extend_from_slice(&tag);
        Ok(GeneratedKey {
            plaintext,
            wrapped: WrappedKey::new(wrapped),
            kek: KekRef {
                key: key.to_owned(),
                version,
            },
        })
    }

    async fn unwrap_data_key(
        &self,
        namespace: &str,
        kek: &KekRef,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, ProviderError> {
        let loaded = self.current()?;
        let stored = loaded
            .keys
            .get(&kek.key)
            .ok_or_else(|| ProviderError::NotFound(format!("local key {:?}", kek.key)))?;
        if let Some(after) = &stored.destroy_after {
            return Err(destroyed(&kek.key, after));
        }
        let (_, material) = stored
            .versions
            .get(&kek.version)
            .ok_or_else(|| ProviderError::NotFound(format!("local key {kek}")))?;
        let bytes = wrapped.as_bytes();
        if bytes.len() != WRAPPED_LEN {
            return Err(ProviderError::Invalid);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(DATA_KEY_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| ProviderError::Invalid)?;
        let tag = Tag::try_from(tag).map_err(|_| ProviderError::Invalid)?;
        let mut plaintext = Zeroizing::new([0u8; DATA_KEY_LEN]);
        plaintext.copy_from_slice(ciphertext);
        Aes256Gcm::new((&*material.0).into())
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &wrap_aad(namespace, &kek.key, kek.version),
                plaintext.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| ProviderError::Invalid)?;
        DataKey::from_slice(plaintext.as_slice()).ok_or(ProviderError::Invalid)
    }

    async fn describe(&self, key: &str) -> Result<KeyDescription, ProviderError> {
        let loaded = self.current()?;
        let stored = loaded
            .keys
            .get(key)
            .ok_or_else(|| ProviderError::NotFound(format!("local key {key:?}")))?;
        let mut notes = vec![format!("keyring file {}", self.path.display())];
        notes.push(format!("created {}", stored.created_at));
        if let Some(after) = &stored.destroy_after {
            notes.push(format!(
                "shredded: unusable now, material destroyed at the first write to the file after \
                 {after} (`kmscodec keys cancel-shred` restores it until then)"
            ));
        }
        Ok(KeyDescription {
            provider: ProviderKind::LocalFile.as_str().to_owned(),
            key: key.to_owned(),
            primary_version: Some(stored.primary),
            versions: stored
                .versions
                .iter()
                .map(|(version, (created_at, _))| KekVersion {
                    version: *version,
                    created_at: Some(created_at.clone()),
                })
                .collect(),
            encrypt_enabled: stored.encrypt_enabled && stored.destroy_after.is_none(),
            decrypt_enabled: stored.destroy_after.is_none(),
            notes,
        })
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.current().map(|_| ())
    }
}

#[async_trait]
impl KeyAdmin for LocalFile {
    async fn create_kek(&self, _namespace: &str, key: &str) -> Result<CreatedKek, ProviderError> {
        let created = self.create_key(key)?;
        let mut notes = vec![format!("keyring file {}", self.path.display())];
        if !created {
            let loaded = self.current()?;
            if let Some(stored) = loaded.keys.get(key) {
                if let Some(after) = &stored.destroy_after {
                    notes.push(format!(
                        "the existing key is shredded (destruction after {after}): it cannot be \
                         used; cancel with `kmscodec keys cancel-shred` or pick another key name"
                    ));
                } else if !stored.encrypt_enabled {
                    notes.push("the existing key is decrypt-only".to_owned());
                }
            }
        }
        Ok(CreatedKek {
            created,
            key_id: key.to_owned(),
            notes,
        })
    }

    async fn rotate_kek(&self, key: &str) -> Result<RotatedKek, ProviderError> {
        let version = self.rotate_key(key)?;
        Ok(RotatedKek {
            version: Some(version),
            notes: vec![format!(
                "new version v{version} in {}; older versions stay in the file",
                self.path.display()
            )],
        })
    }

    async fn set_decrypt_only(
        &self,
        key: &str,
        decrypt_only: bool,
    ) -> Result<Vec<String>, ProviderError> {
        self.set_encrypt_enabled(key, !decrypt_only)?;
        Ok(vec![format!(
            "encrypt_enabled = {} in {}",
            !decrypt_only,
            self.path.display()
        )])
    }

    async fn shred_kek(
        &self,
        key: &str,
        request: ShredRequest,
    ) -> Result<ShreddedKek, ProviderError> {
        let backups = "copies of the keyring file (backups, snapshots) still hold the material: \
                       destroy them too"
            .to_owned();
        if request.immediately {
            self.destroy_key(key)?;
            return Ok(ShreddedKek {
                destroyed_now: true,
                destroy_after: None,
                notes: vec![format!("removed from {}", self.path.display()), backups],
            });
        }
        let after =
            time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(request.pending_days));
        let after = self.schedule_destruction(key, after)?;
        Ok(ShreddedKek {
            destroyed_now: false,
            destroy_after: Some(after.clone()),
            notes: vec![
                format!(
                    "unusable now; its material is removed from {} by the first `kmscodec keys` \
                     write after {after} (or now with `kmscodec keys shred --now`)",
                    self.path.display()
                ),
                "`kmscodec keys cancel-shred` restores it until then".to_owned(),
                backups,
            ],
        })
    }

    async fn cancel_shred(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        if self.cancel_destruction(key)? {
            Ok(vec![format!(
                "destruction cancelled: key {key:?} in {} is usable again",
                self.path.display()
            )])
        } else {
            Ok(vec![format!(
                "key {key:?} was not scheduled for destruction"
            )])
        }
    }

    async fn list_keks(&self) -> Result<Vec<String>, ProviderError> {
        self.key_names()
    }
}

#[cfg(test)]
mod tests;
