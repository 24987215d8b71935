//! Static bearer tokens: per principal, a file of tokens (one per line, several during a
//! rotation), kept in memory only as SHA-256 digests and compared in constant time.
//!
//! Files are re-read when their modification time, size or inode changes, checked at most once
//! per [`CHECK_INTERVAL`] from the request path, so a rotation (add the new token, roll the
//! clients, remove the old one) needs no restart. A file that cannot be read at a reload leaves
//! its principal with no valid token until it can be: revocation must not depend on the file
//! staying readable. This module never logs a token, nor a digest of one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::AuthSetupError;
use super::settings::TokenConfig;

/// How often the request path looks at the token files' metadata.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Largest token file read: a token file holds a few lines.
const MAX_FILE_BYTES: u64 = 64 << 10;

/// The SHA-256 digest of one token. Zeroized on drop; never printed.
struct TokenDigest(Zeroizing<[u8; 32]>);

impl TokenDigest {
    fn of(token: &[u8]) -> Self {
        let mut digest = Zeroizing::new([0u8; 32]);
        digest.copy_from_slice(&Sha256::digest(token));
        Self(digest)
    }
}

/// What identifies one version of a file, cheaply (a `stat`).
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl FileStamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            #[cfg(unix)]
            inode: metadata.ino(),
        }
    }
}

/// One principal's tokens as last read.
struct Loaded {
    /// `None` when the file could not be read: nothing matches.
    stamp: Option<FileStamp>,
    digests: Vec<TokenDigest>,
}

/// One token principal.
struct Source {
    /// `token:<name>`.
    principal: String,
    path: PathBuf,
}

/// The static token principals of one listener.
pub(crate) struct TokenTable {
    sources: Vec<Source>,
    /// Parallel to `sources`.
    loaded: ArcSwap<Vec<Arc<Loaded>>>,
    /// When the files were last looked at; `try_lock`ed so one request does the check.
    last_check: Mutex<Instant>,
    check_interval: Duration,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable")
            .field(
                "principals",
                &self
                    .sources
                    .iter()
                    .map(|s| &s.principal)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TokenTable {
    /// Reads every token file. Fails on a file that cannot be read, holds no token, or holds a
    /// token another principal also has.
    pub(crate) fn load<'a>(
        tokens: impl IntoIterator<Item = (&'a String, &'a TokenConfig)>,
    ) -> Result<Self, AuthSetupError> {
        let sources: Vec<Source> = tokens
            .into_iter()
            .map(|(name, config)| Source {
                principal: format!("token:{name}"),
                path: config.file.clone(),
            })
            .collect();
        let mut loaded = Vec::with_capacity(sources.len());
        for source in &sources {
            let file =
                read_token_file(&source.path).map_err(|message| AuthSetupError::TokenFile {
                    principal: source.principal.clone(),
                    path: source.path.clone(),
                    message,
                })?;
            if file.digests.is_empty() {
                return Err(AuthSetupError::TokenFile {
                    principal: source.principal.clone(),
                    path: source.path.clone(),
                    message: "holds no token (one per line; blank lines and '#' comments are \
                              ignored)"
                        .to_owned(),
                });
            }
            loaded.push(Arc::new(file));
        }
        if let Some((first, second)) = shared_token(&loaded) {
            return Err(AuthSetupError::TokenFile {
                principal: sources[second].principal.clone(),
                path: sources[second].path.clone(),
                message: format!(
                    "holds a token that {} also has: each principal needs its own",
                    sources[first].principal
                ),
            });
        }
        Ok(Self {
            sources,
            loaded: ArcSwap::from_pointee(loaded),
            last_check: Mutex::new(Instant::now()),
            check_interval: CHECK_INTERVAL,
        })
    }

    #[cfg(test)]
    pub(crate) fn set_check_interval(&mut self, interval: Duration) {
        self.check_interval = interval;
    }

    /// The principal (`token:<name>`) holding `presented`, if any.
    ///
    /// Every stored digest is compared, in constant time, whatever matched before.
    pub(crate) fn find(&self, presented: &str) -> Option<&str> {
        self.reload_if_due(Instant::now());
        let presented = TokenDigest::of(presented.as_bytes());
        let loaded = self.loaded.load();
        let mut found = None;
        for (index, file) in loaded.iter().enumerate() {
            for digest in &file.digests {
                let equal = bool::from(digest.0[..].ct_eq(&presented.0[..]));
                if equal && found.is_none() {
                    found = Some(index);
                }
            }
        }
        found
            .and_then(|index| self.sources.get(index))
            .map(|source| source.principal.as_str())
    }

    /// Looks at the files' metadata when the last look is older than the check interval, and
    /// re-reads those that changed.
    fn reload_if_due(&self, now: Instant) {
        // A request that finds another one checking goes on with the current tokens.
        let Ok(mut last_check) = self.last_check.try_lock() else {
            return;
        };
        if now.saturating_duration_since(*last_check) < self.check_interval {
            return;
        }
        *last_check = now;
        self.reload(false);
    }

    /// Re-reads the token files: those whose metadata changed, or all of them when `force`.
    /// Returns how many principals have at least one token.
    pub(crate) fn reload(&self, force: bool) -> usize {
        let current = self.loaded.load_full();
        let mut changed = false;
        let mut next = Vec::with_capacity(self.sources.len());
        for (source, old) in self.sources.iter().zip(current.iter()) {
            let stamp = std::fs::metadata(&source.path)
                .ok()
                .map(|metadata| FileStamp::of(&metadata));
            if !force && stamp.is_some() && stamp == old.stamp {
                next.push(Arc::clone(old));
                continue;
            }
            changed = true;
            let file = match read_token_file(&source.path) {
                Ok(file) => {
                    if file.digests.is_empty() {
                        tracing::warn!(
                            principal = %source.principal,
                            path = %source.path.display(),
                            "token file holds no token: the principal cannot authenticate"
                        );
                    } else {
                        tracing::info!(
                            principal = %source.principal,
                            path = %source.path.display(),
                            tokens = file.digests.len(),
                            "token file reloaded"
                        );
                    }
                    file
                }
                Err(message) => {
                    tracing::warn!(
                        principal = %source.principal,
                        path = %source.path.display(),
                        %message,
                        "token file unreadable: the principal cannot authenticate until it is"
                    );
                    Loaded {
                        stamp: None,
                        digests: Vec::new(),
                    }
                }
            };
            next.push(Arc::new(file));
        }
        let count = next.iter().filter(|file| !file.digests.is_empty()).count();
        if changed {
            if let Some((first, second)) = shared_token(&next) {
                tracing::warn!(
                    first = %self.sources[first].principal,
                    second = %self.sources[second].principal,
                    "two principals' token files hold the same token: it authenticates as the \
                     first only"
                );
            }
            self.loaded.store(Arc::new(next));
        }
        count
    }
}

/// The indices of two principals sharing a token, if any.
fn shared_token(files: &[Arc<Loaded>]) -> Option<(usize, usize)> {
    for (first, a) in files.iter().enumerate() {
        for (offset, b) in files.iter().skip(first + 1).enumerate() {
            let shared = a.digests.iter().any(|x| {
                b.digests
                    .iter()
                    .any(|y| bool::from(x.0[..].ct_eq(&y.0[..])))
            });
            if shared {
                return Some((first, first + 1 + offset));
            }
        }
    }
    None
}

/// Reads one token file: one token per line, surrounding white space trimmed, blank lines and
/// lines starting with `#` skipped. The error message never contains file content.
fn read_token_file(path: &Path) -> Result<Loaded, String> {
    let metadata = std::fs::metadata(path).map_err(|error| format!("cannot read: {error}"))?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes: larger than a token file ({MAX_FILE_BYTES} bytes at most)",
            metadata.len()
        ));
    }
    warn_if_world_readable(path, &metadata);
    let bytes =
        Zeroizing::new(std::fs::read(path).map_err(|error| format!("cannot read: {error}"))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let digests = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| TokenDigest::of(line.as_bytes()))
        .collect();
    Ok(Loaded {
        stamp: Some(FileStamp::of(&metadata)),
        digests,
    })
}

/// Token files should be readable by kmscodec only. A warning, not a refusal: Kubernetes mounts
/// Secret volumes 0644 unless `defaultMode` says otherwise.
fn warn_if_world_readable(path: &Path, metadata: &std::fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode();
        if mode & 0o004 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "token file is readable by every user on the host: chmod 0600 it (or set the \
                 Secret volume's defaultMode to 0400)"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, metadata);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn table(dir: &Path, files: &[(&str, &str)]) -> Result<TokenTable, AuthSetupError> {
        let mut tokens = BTreeMap::new();
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            tokens.insert((*name).to_owned(), TokenConfig { file: path });
        }
        TokenTable::load(&tokens)
    }

    #[test]
    fn tokens_match_their_principal_only() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(
            dir.path(),
            &[
                ("oncall", "# on-call\n\n  s3cret-oncall  \n"),
                ("ci", "ci-token\n"),
            ],
        )
        .unwrap();
        assert_eq!(table.find("s3cret-oncall"), Some("token:oncall"));
        assert_eq!(table.find("ci-token"), Some("token:ci"));
        assert_eq!(table.find("s3cret-oncal"), None);
        assert_eq!(table.find("# on-call"), None);
        assert_eq!(table.find(""), None);
        let shown = format!("{table:?}");
        assert!(
            shown.contains("token:oncall") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn two_lines_are_both_valid_during_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path(), &[("oncall", "old-token\nnew-token\n")]).unwrap();
        assert_eq!(table.find("old-token"), Some("token:oncall"));
        assert_eq!(table.find("new-token"), Some("token:oncall"));
    }

    #[test]
    fn changed_files_are_reloaded_and_unreadable_ones_match_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = table(dir.path(), &[("oncall", "old-token\n")]).unwrap();
        table.set_check_interval(Duration::ZERO);
        let path = dir.path().join("oncall");
        // A different length changes the stamp even within one mtime tick.
        std::fs::write(&path, "old-token\nnew-token\n").unwrap();
        assert_eq!(table.find("new-token"), Some("token:oncall"));
        std::fs::write(&path, "new-token\n").unwrap();
        assert_eq!(table.find("old-token"), None);
        assert_eq!(table.find("new-token"), Some("token:oncall"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(table.find("new-token"), None);
        std::fs::write(&path, "newer-token\n").unwrap();
        assert_eq!(table.find("newer-token"), Some("token:oncall"));
    }

    #[test]
    fn reload_is_rate_limited_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path(), &[("oncall", "old-token\n")]).unwrap();
        std::fs::write(dir.path().join("oncall"), "new-token-longer\n").unwrap();
        // Within CHECK_INTERVAL of loading: the file is not looked at.
        assert_eq!(table.find("new-token-longer"), None);
        assert_eq!(table.reload(true), 1);
        assert_eq!(table.find("new-token-longer"), Some("token:oncall"));
    }

    #[test]
    fn bad_files_fail_at_startup_without_showing_content() {
        let dir = tempfile::tempdir().unwrap();
        let error = table(dir.path(), &[("empty", "# nothing\n\n")]).unwrap_err();
        assert!(error.to_string().contains("holds no token"), "{error}");
        let error = table(
            dir.path(),
            &[("a", "same-secret\n"), ("b", "same-secret\n")],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("token:a also has"), "{error}");
        assert!(!error.contains("same-secret"), "{error}");
        let mut tokens = BTreeMap::new();
        tokens.insert(
            "gone".to_owned(),
            TokenConfig {
                file: dir.path().join("missing"),
            },
        );
        let error = TokenTable::load(&tokens).unwrap_err().to_string();
        assert!(
            error.contains("token:gone") && error.contains("cannot read"),
            "{error}"
        );
    }
}
