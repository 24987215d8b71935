//! Unit tests of `src/keys/aws_kms/mod.rs`.

use super::*;
use aws_sdk_kms::error::{ConnectorError, ErrorMetadata};
use aws_sdk_kms::operation::decrypt::DecryptError;
use aws_sdk_kms::operation::generate_data_key::GenerateDataKeyError;

fn service_error(code: &str) -> SdkError<GenerateDataKeyError, ()> {
    SdkError::service_error(
        GenerateDataKeyError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("from the test")
                .build(),
        ),
        (),
    )
}

fn decrypt_error(code: &str) -> SdkError<DecryptError, ()> {
    SdkError::service_error(
        DecryptError::generic(ErrorMetadata::builder().code(code).build()),
        (),
    )
}

#[test]
fn service_errors_map_to_provider_errors() {
    let op = Operation::GenerateDataKey;
    for (code, label) in [
        ("AccessDeniedException", "denied"),
        ("UnrecognizedClientException", "denied"),
        ("NotFoundException", "not_found"),
        ("DisabledException", "disabled"),
        ("KMSInvalidStateException", "disabled"),
        ("InvalidCiphertextException", "invalid"),
        ("IncorrectKeyException", "invalid"),
        ("ThrottlingException", "unavailable"),
        ("KMSInternalException", "unavailable"),
        ("DependencyTimeoutException", "unavailable"),
        ("KeyUnavailableException", "unavailable"),
        ("InvalidKeyUsageException", "misconfigured"),
        ("SomethingNew", "misconfigured"),
    ] {
        let mapped = classify(op, &service_error(code));
        assert_eq!(mapped.label(), label, "{code}: {mapped}");
    }
    let throttled = classify(op, &service_error("ThrottlingException"));
    assert!(throttled.is_retryable());
    assert!(
        throttled
            .to_string()
            .contains("GenerateDataKey: ThrottlingException: from the test"),
        "{throttled}"
    );
    // A malformed wrapped key is bad input on Decrypt, a bug on GenerateDataKey.
    assert_eq!(
        classify(Operation::Decrypt, &decrypt_error("ValidationException")),
        ProviderError::Invalid
    );
    assert_eq!(
        classify(op, &service_error("ValidationException")).label(),
        "misconfigured"
    );
}

#[test]
fn transport_errors_are_unavailable() {
    let op = Operation::Decrypt;
    let refused: SdkError<DecryptError, ()> = SdkError::dispatch_failure(ConnectorError::io(
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
    ));
    let mapped = classify(op, &refused);
    assert!(mapped.is_retryable(), "{mapped}");
    assert!(mapped.to_string().contains("connection failed"), "{mapped}");
    let slow: SdkError<DecryptError, ()> = SdkError::dispatch_failure(ConnectorError::timeout(
        std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
    ));
    assert!(classify(op, &slow).to_string().contains("timed out"));
    let timeout: SdkError<DecryptError, ()> = SdkError::timeout_error("3s passed");
    assert!(classify(op, &timeout).is_retryable());
    let construction: SdkError<DecryptError, ()> =
        SdkError::construction_failure("missing signing region");
    assert_eq!(classify(op, &construction).label(), "misconfigured");
}

#[test]
fn credential_errors_say_which_chain_failed() {
    let missing = classify_credentials(&CredentialsError::not_loaded("nothing found"));
    assert_eq!(missing.label(), "misconfigured");
    assert!(missing.to_string().contains("IRSA"), "{missing}");
    let slow = classify_credentials(&CredentialsError::provider_timed_out(Duration::from_secs(
        5,
    )));
    assert!(slow.is_retryable());
}

#[test]
fn context_binds_namespace_and_format() {
    let context = encryption_context("payments");
    assert_eq!(context.len(), 2);
    assert_eq!(context[CONTEXT_NAMESPACE], "payments");
    assert_eq!(context[CONTEXT_FORMAT], "1");
}

#[test]
fn key_references() {
    for good in [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/kmscodec/default",
        "alias/kmscodec/default",
        "alias/kmscodec/{namespace}",
    ] {
        assert_eq!(check_key_reference(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "alias/",
        "alias/aws/s3",
        "arn:aws:s3:::bucket",
        "arn:aws:kms:us-east-1:123456789012:grant/x",
        "key with spaces",
        "a/b",
    ] {
        assert!(check_key_reference(bad).is_err(), "{bad}");
    }
    assert!(is_key_arn(
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    ));
    assert!(!is_key_arn("arn:aws:kms:us-east-1:123456789012:alias/x"));
    assert!(!is_key_arn("alias/x"));
    assert!(!is_key_arn("arn:aws:kms:us-east-1:123456789012:key/a/../b"));
}

#[tokio::test]
async fn headers_that_no_generate_could_produce_are_refused_without_a_call() {
    // No region, no endpoint: any network attempt would fail differently.
    let provider = AwsKms::new(AwsKmsOptions::default());
    let wrapped = WrappedKey::new(vec![1; 64]);
    for kek in [
        KekRef {
            key: "alias/kmscodec/default".into(),
            version: 0,
        },
        KekRef {
            key: "arn:aws:kms:us-east-1:123456789012:key/abc".into(),
            version: 7,
        },
    ] {
        assert!(matches!(
            provider.unwrap_data_key("ns", &kek, &wrapped).await,
            Err(ProviderError::Invalid)
        ));
    }
    assert!(!format!("{provider:?}").contains("secret"));
}

/// `CALLED_ACTIONS`, `DESCRIBE_ACTIONS` and `ADMIN_ACTIONS` are exactly the operations
/// called on a `client` in this file: by the serving code, by `describe`, and by the
/// administration section.
#[test]
fn called_actions_match_the_call_sites() {
    let source = include_str!("mod.rs");
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let describe_start = code.find("async fn describe(").unwrap_or(0);
    let describe_end = code[describe_start..]
        .find("async fn health(")
        .map_or(code.len(), |end| describe_start + end);
    // Administration: from the marker comment to the tests.
    let admin_start = code
        .find("// Administration: every KMS call below")
        .unwrap_or(code.len());
    let mut serving = std::collections::BTreeSet::new();
    let mut describing = std::collections::BTreeSet::new();
    let mut administering = std::collections::BTreeSet::new();
    let mut rest = code;
    let mut offset = 0;
    while let Some(found) = rest.find("client") {
        let start = offset + found;
        let before = code[..start].chars().next_back();
        let after = code[start + "client".len()..].trim_start();
        offset = start + "client".len();
        rest = &code[offset..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(call) = after.strip_prefix('.') else {
            continue;
        };
        let name: String = call
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name.is_empty() || !call[name.len()..].starts_with("()") {
            continue;
        }
        let action: String = name
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let action = format!("kms:{action}");
        if start >= admin_start {
            administering.insert(action);
        } else if (describe_start..describe_end).contains(&start) {
            describing.insert(action);
        } else {
            serving.insert(action);
        }
    }
    let called: std::collections::BTreeSet<String> =
        CALLED_ACTIONS.iter().map(|a| a.to_string()).collect();
    let described: std::collections::BTreeSet<String> =
        DESCRIBE_ACTIONS.iter().map(|a| a.to_string()).collect();
    let administered: std::collections::BTreeSet<String> =
        ADMIN_ACTIONS.iter().map(|a| a.to_string()).collect();
    assert_eq!(serving, called, "operations called by the serving code");
    assert_eq!(describing, described, "operations called by describe");
    assert_eq!(administering, administered, "operations called by KeyAdmin");
    assert!(
        CONTEXTLESS_ACTIONS
            .iter()
            .all(|a| CALLED_ACTIONS.contains(a)),
        "CONTEXTLESS_ACTIONS must be sidecar actions"
    );
}
