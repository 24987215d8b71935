//! Unit tests of `keys::aws_kms`.

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

/// The action lists are generated from the door's table (`kms.rs`), which is the only way the
/// module reaches KMS. This test pins them, so that a change of what the code may call, and
/// thus of the IAM policies, is deliberate.
#[test]
fn action_lists_are_the_door_s_table() {
    assert_eq!(
        CALLED_ACTIONS,
        ["kms:GenerateDataKey", "kms:Decrypt", "kms:ListResourceTags"]
    );
    assert_eq!(CONTEXTLESS_ACTIONS, ["kms:ListResourceTags"]);
    assert_eq!(
        DESCRIBE_ACTIONS,
        ["kms:DescribeKey", "kms:GetKeyRotationStatus"]
    );
    assert_eq!(
        ADMIN_ACTIONS,
        [
            "kms:CancelKeyDeletion",
            "kms:CreateAlias",
            "kms:CreateKey",
            "kms:DescribeKey",
            "kms:EnableKey",
            "kms:EnableKeyRotation",
            "kms:ListAliases",
            "kms:ListKeyRotations",
            "kms:ListResourceTags",
            "kms:RotateKeyOnDemand",
            "kms:ScheduleKeyDeletion",
            "kms:TagResource",
            "kms:UntagResource",
        ]
    );
    assert!(
        CONTEXTLESS_ACTIONS
            .iter()
            .all(|a| CALLED_ACTIONS.contains(a)),
        "CONTEXTLESS_ACTIONS must be sidecar actions"
    );
}

/// Each method of the door is the SDK operation its row's IAM action names
/// (`kms:GenerateDataKey` is `generate_data_key`), and each list is its view's rows.
#[test]
fn door_methods_are_named_after_their_actions() {
    let snake = |action: &str| -> String {
        let mut name = String::new();
        for c in action.strip_prefix("kms:").unwrap_or(action).chars() {
            if c.is_ascii_uppercase() {
                if !name.is_empty() {
                    name.push('_');
                }
                name.push(c.to_ascii_lowercase());
            } else {
                name.push(c);
            }
        }
        name
    };
    for (list, rows) in [
        (CALLED_ACTIONS, kms::Serving::ROWS),
        (DESCRIBE_ACTIONS, kms::Describing::ROWS),
        (ADMIN_ACTIONS, kms::Administering::ROWS),
    ] {
        let actions: Vec<&str> = rows.iter().map(|(action, _)| *action).collect();
        assert_eq!(actions, list);
        for (action, method) in rows {
            assert_eq!(snake(action), *method, "{action}");
        }
    }
}
