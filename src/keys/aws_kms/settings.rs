//! The AWS KMS provider's settings (`kind = "aws"`), as `config` reads them, their defaults and
//! bounds, and the syntax of the key references a namespace may name.

use std::time::Duration;

/// Default operation timeout: the whole call, every retry included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default TCP/TLS connect timeout of one attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default total attempts per call (the SDK's standard retry mode).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Most attempts the configuration accepts.
pub const MAX_MAX_ATTEMPTS: u32 = 10;

/// Settings of one AWS KMS provider (`[providers.NAME] kind = "aws"`), validated by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKmsOptions {
    /// The region (`us-east-1`); `None`: the SDK chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (`https://kms.eu-west-1.amazonaws.com`, a VPC endpoint, a test server).
    pub endpoint: Option<String>,
    /// Named profile of the shared config files; `None`: `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Operation timeout: one KMS call including every retry.
    pub timeout: Duration,
    /// Connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Total attempts per call (1 disables retries).
    pub max_attempts: u32,
}

impl Default for AwsKmsOptions {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            profile: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// Checks the syntax of a configured key reference: a key id (UUID or `mrk-...`), a key ARN, an
/// alias name (`alias/...`) or an alias ARN. `{namespace}` may stand for part of it.
pub fn check_key_reference(key: &str) -> Result<(), String> {
    let sample = key.replace("{namespace}", "ns");
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/_-:.".contains(c);
    if sample.is_empty() || sample.len() > 2048 || !sample.chars().all(allowed) {
        return Err(format!(
            "{key:?} is not a KMS key reference (a key id, key ARN, alias/NAME or alias ARN)"
        ));
    }
    if let Some(name) = sample.strip_prefix("alias/") {
        if name.is_empty() || name.starts_with("aws/") {
            return Err(format!(
                "{key:?}: an alias needs a name, and AWS managed aliases (alias/aws/...) cannot \
                 carry an encryption-context policy"
            ));
        }
        return Ok(());
    }
    if sample.starts_with("arn:") {
        let parts: Vec<&str> = sample.splitn(6, ':').collect();
        let resource_ok = parts.get(5).is_some_and(|resource| {
            resource
                .strip_prefix("key/")
                .is_some_and(|id| !id.is_empty())
                || resource
                    .strip_prefix("alias/")
                    .is_some_and(|a| !a.is_empty())
        });
        if parts.len() == 6 && parts[2] == "kms" && resource_ok {
            return Ok(());
        }
        return Err(format!(
            "{key:?} is not a KMS key or alias ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/ID)"
        ));
    }
    if sample.contains('/') || sample.contains(':') {
        return Err(format!(
            "{key:?} is not a KMS key reference (a key id, key ARN, alias/NAME or alias ARN)"
        ));
    }
    Ok(())
}
