//! The wire: Vault's answers as we read them, the raw requests vaultrs cannot build, and the
//! errors of one call (kept apart from [`ProviderError`] until the caller classifies them).

use super::*;

/// Why one call to Vault failed, before it is classified for the caller.
#[derive(Debug)]
pub(super) enum CallError {
    /// Vault answered with an error status.
    Status { code: u16, message: String },
    /// No answer: connection refused, TLS failure, timeout.
    Transport(String),
    /// An answer that could not be read.
    Response(String),
    /// The request could not be built (a bug or a bad setting, never retried).
    Build(String),
    /// Getting a token failed; already classified.
    Session(ProviderError),
}

impl CallError {
    pub(super) fn retryable(&self) -> bool {
        match self {
            Self::Status { code, .. } => *code >= 500,
            Self::Transport(_) => true,
            Self::Response(_) | Self::Build(_) | Self::Session(_) => false,
        }
    }

    pub(super) fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Status {
                code: 401 | 403,
                ..
            }
        )
    }
}

/// `Display` of an error and its sources, joined.
pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    let mut joined = parts.join(": ");
    truncate(&mut joined, 400);
    joined
}

pub(super) fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// The server's message from an error answer: `{"errors": [...]}` flattened (Vault wraps
/// policy denials as `1 error occurred:\n\t* permission denied\n\n`), or the start of the body.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    let mut message = match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => parsed
            .errors
            .iter()
            .map(|error| {
                let flat = error.split_whitespace().collect::<Vec<_>>().join(" ");
                let flat = match flat.split_once(" occurred: ") {
                    Some((count, rest))
                        if count.ends_with("error") || count.ends_with("errors") =>
                    {
                        rest.to_owned()
                    }
                    _ => flat,
                };
                flat.trim_start_matches("* ").replace(" * ", "; ")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body)
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>(),
    };
    if message.trim().is_empty() {
        message = "no message".to_owned();
    }
    truncate(&mut message, 300);
    message
}

/// A request sent as raw JSON through vaultrs's middleware like the typed ones: the calls
/// vaultrs 0.8 does not offer in usable form (datakey with associated data, renew-self) and the
/// administration calls. A method, a path and an optional JSON body.
pub(super) struct RawCall {
    pub(super) method: RequestMethod,
    pub(super) path: String,
    pub(super) body: Option<Vec<u8>>,
}

impl RawCall {
    /// `POST path` with a JSON `body`.
    pub(super) fn post(path: String, body: Vec<u8>) -> Self {
        Self {
            method: RequestMethod::POST,
            path,
            body: Some(body),
        }
    }
}

impl Endpoint for RawCall {
    /// Unused: answers are read by this module, not by rustify.
    type Response = ();
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self.body.clone())
    }
}

/// Turns an endpoint into an HTTP request with the client's token, namespace and API version.
pub(super) fn http_request<E: Endpoint>(
    client: &VaultClient,
    endpoint: E,
) -> Result<http::Request<Vec<u8>>, CallError> {
    endpoint
        .with_middleware(&client.middle)
        .request(&client.http.base)
        .map_err(|error| CallError::Build(error_chain(&error)))
}

pub(super) fn build_error(error: impl fmt::Display) -> CallError {
    CallError::Build(error.to_string())
}

#[derive(Deserialize)]
pub(super) struct DataAnswer<T> {
    pub(super) data: Option<T>,
}

#[derive(Deserialize)]
pub(super) struct AuthAnswer<T> {
    pub(super) auth: Option<T>,
}

#[derive(Deserialize)]
pub(super) struct LoginAuth {
    pub(super) client_token: Zeroizing<String>,
    #[serde(default)]
    pub(super) lease_duration: u64,
    #[serde(default)]
    pub(super) renewable: bool,
}

#[derive(Deserialize)]
pub(super) struct RenewAuth {
    #[serde(default)]
    pub(super) lease_duration: u64,
    #[serde(default)]
    pub(super) renewable: bool,
}

#[derive(Deserialize)]
pub(super) struct LookupData {
    #[serde(default)]
    pub(super) ttl: u64,
    #[serde(default)]
    pub(super) renewable: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct DataKeyData {
    pub(super) ciphertext: String,
    #[serde(default)]
    pub(super) key_version: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct DecryptData {
    pub(super) plaintext: Zeroizing<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct KeyData {
    #[serde(rename = "type")]
    pub(super) key_type: Option<String>,
    pub(super) keys: std::collections::BTreeMap<String, serde_json::Value>,
    pub(super) latest_version: Option<u32>,
    pub(super) min_decryption_version: Option<u32>,
    pub(super) min_encryption_version: Option<u32>,
    pub(super) min_available_version: Option<u32>,
    pub(super) exportable: bool,
    pub(super) deletion_allowed: bool,
    pub(super) derived: bool,
    pub(super) allow_plaintext_backup: bool,
    pub(super) supports_encryption: Option<bool>,
    pub(super) supports_decryption: Option<bool>,
    pub(super) soft_deleted: bool,
    pub(super) auto_rotate_period: Option<u64>,
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, CallError> {
    // serde_json's error text names a position, never the content.
    serde_json::from_slice(body)
        .map_err(|error| CallError::Response(format!("{what}: not the expected JSON ({error})")))
}
