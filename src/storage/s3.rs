//! The S3 driver (`kind = "s3"`, named `aws.s3driver` by the SDKs): `GetObject` and `PutObject`
//! on the AWS SDK, with the same configuration loader and credential chain as the KMS provider
//! ([`crate::keys::aws_kms::sdk_config`]).
//!
//! It never lists, deletes or reads object metadata beyond the response headers, never logs
//! credentials or object contents, and never reads more than the caller's bound: the size in
//! the `GetObject` response headers is checked before the body is read, and the body is read
//! chunk by chunk with the bound enforced again (a server may lie about the length).

use std::fmt;

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::settings::S3Settings;
use super::{StorageDriver, StorageError};

/// The S3 API actions the sidecar calls: reading resolves references, writing offloads on
/// encode (`docs/external-storage.md` has the IAM policy).
pub const CALLED_ACTIONS: &[&str] = &["s3:GetObject", "s3:PutObject"];

/// An S3 (or S3-compatible) object store.
pub struct S3 {
    settings: S3Settings,
    credentials_override: Option<SharedCredentialsProvider>,
    client: tokio::sync::OnceCell<Client>,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl S3 {
    /// A driver using the standard AWS credential chain. No I/O until the first call.
    pub fn new(settings: S3Settings) -> Self {
        Self {
            settings,
            credentials_override: None,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// A driver signing with `credentials` instead of the standard chain (embedding, tests).
    pub fn with_credentials_provider(
        settings: S3Settings,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        Self {
            credentials_override: Some(credentials),
            ..Self::new(settings)
        }
    }

    async fn client(&self) -> Result<&Client, StorageError> {
        self.client
            .get_or_try_init(|| async {
                let sdk_config = crate::keys::aws_kms::sdk_config(
                    &self.settings.aws,
                    self.credentials_override.clone(),
                )
                .await;
                if sdk_config.region().is_none() {
                    return Err(StorageError::Misconfigured(
                        "S3: no region: set `region` in the driver's configuration, or \
                         AWS_REGION, or a region in the AWS profile"
                            .to_owned(),
                    ));
                }
                let config = aws_sdk_s3::config::Builder::from(&sdk_config)
                    .force_path_style(self.settings.force_path_style)
                    // The object's SHA-256 is verified by the caller against the reference;
                    // the SDK's own CRCs would only add a second pass that S3-compatible
                    // stores do not all support.
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                    .build();
                Ok(Client::from_conf(config))
            })
            .await
    }
}

/// Maps an SDK failure: the service's code when it answered, else a transport failure.
fn classify<E, R>(error: &SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    if let SdkError::ServiceError(service) = error {
        let code = service.err().code().unwrap_or("");
        return match code {
            "NoSuchKey" | "NoSuchBucket" | "NotFound" => StorageError::NotFound,
            "AccessDenied"
            | "AllAccessDisabled"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken" => StorageError::Denied(code.to_owned()),
            "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout" => {
                StorageError::Unavailable(code.to_owned())
            }
            other => StorageError::Failed(format!(
                "S3 answered {}",
                if other.is_empty() { "an error" } else { other }
            )),
        };
    }
    let mut chain = aws_sdk_s3::error::DisplayErrorContext(error).to_string();
    chain.truncate(512);
    StorageError::Unavailable(chain)
}

#[async_trait]
impl StorageDriver for S3 {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, StorageError> {
        let client = self.client().await?;
        let mut output = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| classify(&error))?;
        // Bound first: the length header arrives before the body is read.
        let declared = output.content_length().unwrap_or(0);
        let declared = u64::try_from(declared).unwrap_or(0);
        if declared > max_bytes {
            return Err(StorageError::TooLarge {
                size: declared,
                limit: max_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
        while let Some(chunk) = output
            .body
            .try_next()
            .await
            .map_err(|error| StorageError::Unavailable(format!("S3 body: {error}")))?
        {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(StorageError::TooLarge {
                    size: (bytes.len() + chunk.len()) as u64,
                    limit: max_bytes,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let client = self.client().await?;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `policies/aws/kmscodec-external-storage-iam.json` grants exactly the actions called here.
    #[test]
    fn the_iam_policy_grants_exactly_the_called_actions() {
        let policy: serde_json::Value = serde_json::from_str(include_str!(
            "../../policies/aws/kmscodec-external-storage-iam.json"
        ))
        .unwrap_or_default();
        let mut granted: Vec<&str> = policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|statement| statement["Action"].as_array().into_iter().flatten())
            .filter_map(serde_json::Value::as_str)
            .collect();
        granted.sort_unstable();
        let mut called = CALLED_ACTIONS.to_vec();
        called.sort_unstable();
        assert_eq!(granted, called);
        let source = include_str!("s3.rs");
        assert!(source.contains(".get_object()") && source.contains(".put_object()"));
    }
}
