//! Telling running kmscodec processes about a key change: a client of their admin API
//! (`--sidecar URL`), and what each one answered.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{AdminError, usage};
use crate::server::admin_api::{API_PREFIX, DataKeyAnswer, NamespacesAnswer};

/// How long one call to a sidecar's admin API may take.
const SIDECAR_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of running kmscodec processes' admin API.
pub struct SidecarClient {
    http: reqwest::Client,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for SidecarClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarClient")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What one sidecar said.
#[derive(Debug, Clone, Serialize)]
pub struct SidecarOutcome {
    /// The sidecar's base URL.
    pub url: String,
    /// Its answer, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<DataKeyAnswer>,
    /// Why it could not be told, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks a sidecar base URL (`http://127.0.0.1:8089`, `https://host/prefix`) and returns it
/// without a trailing `/`.
pub fn check_sidecar_url(url: &str) -> Result<String, AdminError> {
    let parsed = url::Url::parse(url)
        .map_err(|error| usage(format!("--sidecar {url:?} is not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(usage(format!(
            "--sidecar {url:?}: expected http(s)://host[:port][/prefix], without query or \
             credentials"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

impl SidecarClient {
    /// A client sending `token` (if any) as `Authorization: Bearer`.
    pub fn new(token: Option<Zeroizing<String>>) -> Result<Self, AdminError> {
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(SIDECAR_TIMEOUT)
            .build()
            .map_err(|error| {
                AdminError::Sidecar(format!("cannot build the HTTP client: {error}"))
            })?;
        Ok(Self { http, token })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        path: &str,
    ) -> Result<Vec<u8>, AdminError> {
        let full = format!("{url}{API_PREFIX}{path}");
        let mut request = self.http.request(method, &full);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|error| AdminError::Sidecar(format!("{url}: {error}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| AdminError::Sidecar(format!("{url}: {error}")))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body)
            .map(|error| format!("{} ({})", error.message, error.code))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        let hint = match status.as_u16() {
            401 => ": pass the admin token with --sidecar-token-file",
            404 if detail.contains("not_found") && !detail.contains("namespace") => {
                ": is this a kmscodec admin API?"
            }
            _ => "",
        };
        Err(AdminError::Sidecar(format!(
            "{url}: HTTP {}: {detail}{hint}",
            status.as_u16()
        )))
    }

    /// `GET /admin/v1/namespaces`.
    pub async fn namespaces(&self, url: &str) -> Result<NamespacesAnswer, AdminError> {
        let body = self.send(reqwest::Method::GET, url, "/namespaces").await?;
        serde_json::from_slice(&body)
            .map_err(|error| AdminError::Sidecar(format!("{url}: unexpected answer: {error}")))
    }

    async fn data_key_call(&self, url: &str, namespace: &str, route: &str) -> SidecarOutcome {
        let encoded: String = url::form_urlencoded::byte_serialize(namespace.as_bytes()).collect();
        let result = self
            .send(
                reqwest::Method::POST,
                url,
                &format!("/namespaces/{encoded}/{route}"),
            )
            .await
            .and_then(|body| {
                serde_json::from_slice::<DataKeyAnswer>(&body).map_err(|error| {
                    AdminError::Sidecar(format!("{url}: unexpected answer: {error}"))
                })
            });
        match result {
            Ok(answer) => SidecarOutcome {
                url: url.to_owned(),
                answer: Some(answer),
                error: None,
            },
            Err(error) => SidecarOutcome {
                url: url.to_owned(),
                answer: None,
                error: Some(error.to_string()),
            },
        }
    }

    /// Asks every sidecar to retire `namespace`'s active data key.
    pub async fn rotate_data_key(&self, urls: &[String], namespace: &str) -> Vec<SidecarOutcome> {
        let mut outcomes = Vec::new();
        for url in urls {
            outcomes.push(self.data_key_call(url, namespace, "rotate-data-key").await);
        }
        outcomes
    }

    /// Asks every sidecar to forget `namespace`'s data keys (after a shred).
    pub async fn forget_data_keys(&self, urls: &[String], namespace: &str) -> Vec<SidecarOutcome> {
        let mut outcomes = Vec::new();
        for url in urls {
            outcomes.push(self.data_key_call(url, namespace, "forget-data-keys").await);
        }
        outcomes
    }
}

/// The sidecars that could not be told, as one error, if any.
pub fn sidecar_failures(outcomes: &[SidecarOutcome], done: &str) -> Option<AdminError> {
    let failed: Vec<&str> = outcomes
        .iter()
        .filter_map(|outcome| outcome.error.as_deref())
        .collect();
    if failed.is_empty() {
        return None;
    }
    Some(AdminError::Sidecar(format!(
        "{done}, but {} of {} running process{} could not be told: {}",
        failed.len(),
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "es" },
        failed.join("; ")
    )))
}
