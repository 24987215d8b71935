//! TLS for the HTTP listeners: rustls server configurations loaded from PEM files, reloaded when
//! the files change (cert-manager and Vault agent rotate them in place), with optional client
//! certificate authentication.
//!
//! A reload that fails (a half-written file, a key that does not match) keeps serving with the
//! previous configuration and logs why; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Whether a listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates are requested.
    #[default]
    Off,
    /// A client may present a certificate signed by the client CA; one that does not is still
    /// served (and must authenticate otherwise).
    Optional,
    /// Every client must present a certificate signed by the client CA.
    Required,
}

/// One listener's TLS settings (`[server.tls]`, `[ui.tls]`, `[admin.tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that sign client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// Client certificate policy; anything but `Off` needs `client_ca_file`.
    pub client_auth: ClientAuth,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A listener's current TLS configuration, swapped atomically on reload.
pub struct TlsReloader {
    settings: TlsSettings,
    current: ArcSwap<rustls::ServerConfig>,
    /// The served leaf certificate's `notAfter` (Unix seconds), `i64::MIN` when unreadable.
    not_after: std::sync::atomic::AtomicI64,
    stamps: std::sync::Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader")
            .field("cert_file", &self.settings.cert_file)
            .finish_non_exhaustive()
    }
}

/// How often the certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

impl TlsReloader {
    /// Loads the files once; fails startup when they are unusable.
    pub fn load(settings: TlsSettings) -> Result<Arc<Self>, TlsError> {
        let (config, not_after) = build(&settings)?;
        let stamps = stamps(&settings);
        Ok(Arc::new(Self {
            settings,
            current: ArcSwap::from_pointee(config),
            not_after: std::sync::atomic::AtomicI64::new(not_after.unwrap_or(i64::MIN)),
            stamps: std::sync::Mutex::new(stamps),
        }))
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load_full()
    }

    /// When the served leaf certificate expires (Unix seconds), if its encoding could be read.
    pub fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(std::sync::atomic::Ordering::Relaxed)).filter(|&t| t != i64::MIN)
    }

    /// Whether client certificates are requested.
    pub fn client_auth(&self) -> ClientAuth {
        self.settings.client_auth
    }

    /// Reloads when any file's modification time or size changed. Returns whether a new
    /// configuration is now in use.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.settings);
        let Ok(mut seen) = self.stamps.lock() else {
            return false;
        };
        if *seen == now {
            return false;
        }
        match build(&self.settings) {
            Ok((config, not_after)) => {
                self.current.store(Arc::new(config));
                self.not_after.store(
                    not_after.unwrap_or(i64::MIN),
                    std::sync::atomic::Ordering::Relaxed,
                );
                *seen = now;
                tracing::info!(cert = %self.settings.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(error) => {
                // Keep the old stamps so the next check tries again (the writer may not be
                // done yet).
                tracing::warn!(%error, "TLS reload failed: still serving the previous certificate");
                false
            }
        }
    }

    /// Checks for changed files every [`RELOAD_INTERVAL`] until the process exits.
    pub fn spawn_watcher(self: &Arc<Self>) {
        let reloader = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let Some(reloader) = reloader.upgrade() else {
                    return;
                };
                let _ = tokio::task::spawn_blocking(move || reloader.reload_if_changed()).await;
            }
        });
    }
}

fn stamps(settings: &TlsSettings) -> Vec<Option<(SystemTime, u64)>> {
    [
        Some(&settings.cert_file),
        Some(&settings.key_file),
        settings.client_ca_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|meta| Some((meta.modified().ok()?, meta.len())))
    })
    .collect()
}

fn file_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|error| file_error(path, error.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(path, format!("not PEM certificates: {error}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The configuration and the leaf certificate's `notAfter`.
fn build(settings: &TlsSettings) -> Result<(rustls::ServerConfig, Option<i64>), TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = read_certs(&settings.cert_file)?;
    let not_after = chain.first().and_then(super::cert_expiry::not_after);
    let key_data = std::fs::read(&settings.key_file)
        .map_err(|error| file_error(&settings.key_file, error.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_data).map_err(|error| {
        file_error(
            &settings.key_file,
            format!("no usable private key: {error}"),
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?;
    let builder = match (settings.client_auth, &settings.client_ca_file) {
        (ClientAuth::Off, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config(
                "client_auth needs client_ca_file".to_owned(),
            ));
        }
        (mode, Some(ca_file)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca_file)? {
                roots.add(cert).map_err(|error| {
                    file_error(ca_file, format!("not a CA certificate: {error}"))
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Config(error.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, not_after))
}

/// The names a verified client certificate is known by: its DNS subject alternative names.
/// Authorization rules name them as `cert:NAME`.
pub fn client_cert_names(certs: Option<&[CertificateDer<'_>]>) -> Vec<String> {
    let Some(leaf) = certs.and_then(<[_]>::first) else {
        return Vec::new();
    };
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(cert) => cert.valid_dns_names().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}
