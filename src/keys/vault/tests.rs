//! Unit tests of `src/keys/vault/mod.rs`.

use super::*;

#[test]
fn associated_data_names_the_namespace() {
    let decoded = base64_simd::STANDARD
        .decode_to_vec(associated_data("payments").as_bytes())
        .unwrap_or_default();
    assert_eq!(decoded, b"kmscodec/v1 namespace=payments");
}

#[test]
fn ciphertext_versions() {
    assert_eq!(ciphertext_version("vault:v1:AAAA"), Some(1));
    assert_eq!(ciphertext_version("vault:v12:ab+/="), Some(12));
    for bad in [
        "vault:v0:AAAA",
        "vault:v:AAAA",
        "vault:v1:",
        "vault:v1",
        "vault:vx:AAAA",
        "vault:v1:AA AA",
        "vault:v99999999999:AAAA",
        "v1:AAAA",
    ] {
        assert_eq!(ciphertext_version(bad), None, "{bad}");
    }
}

#[test]
fn error_messages_are_flattened() {
    assert_eq!(
        error_message(br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#),
        "permission denied"
    );
    assert_eq!(
        error_message(br#"{"errors":["encryption key not found"]}"#),
        "encryption key not found"
    );
    assert_eq!(
        error_message(b"<html>bad gateway</html>"),
        "<html>bad gateway</html>"
    );
    assert_eq!(error_message(b""), "no message");
}

#[test]
fn backoff_grows_and_is_capped() {
    assert!(backoff(0) >= BACKOFF_BASE && backoff(0) <= BACKOFF_BASE.mul_f64(1.5));
    assert!(backoff(1) >= BACKOFF_BASE * 2);
    assert!(backoff(30) <= BACKOFF_MAX.mul_f64(1.5));
}

fn config(address: &str) -> VaultConfig {
    VaultConfig {
        address: address.to_owned(),
        mount: "transit".to_owned(),
        namespace: Some("team-a".to_owned()),
        ca_cert: None,
        timeout: Duration::from_secs(1),
        retries: 0,
        auth: VaultAuth::Token(VaultToken::Env {
            variable: "T".to_owned(),
            value: crate::secret::Credential::new("s.secret-token"),
        }),
    }
}

#[test]
fn requests_carry_version_token_and_namespace() {
    let provider = VaultTransit::new(&config("http://127.0.0.1:8200")).unwrap_or_else(|e| {
        panic!("{e}");
    });
    let client = provider.client("s.secret-token");
    let request = http_request(&client, LookupTokenSelfRequest::default())
        .unwrap_or_else(|_| panic!("request"));
    assert_eq!(
        request.uri().to_string(),
        "http://127.0.0.1:8200/v1/auth/token/lookup-self"
    );
    assert_eq!(request.headers()["x-vault-token"], "s.secret-token");
    assert_eq!(request.headers()["x-vault-namespace"], "team-a");
    let login = LoginWithApproleRequest::builder()
        .mount("approle")
        .role_id("r")
        .secret_id("s")
        .build()
        .unwrap_or_else(|_| panic!("builder"));
    let request = http_request(&provider.anonymous, login).unwrap_or_else(|_| panic!("login"));
    assert_eq!(
        request.uri().to_string(),
        "http://127.0.0.1:8200/v1/auth/approle/login"
    );
    assert!(request.headers().get("x-vault-token").is_none());
    let datakey = RawCall::post("transit/datakey/wrapped/kmscodec-a".to_owned(), Vec::new());
    let request = http_request(&client, datakey).unwrap_or_else(|_| panic!("datakey"));
    assert_eq!(
        request.uri().to_string(),
        "http://127.0.0.1:8200/v1/transit/datakey/wrapped/kmscodec-a"
    );
    assert!(!format!("{provider:?}").contains("secret-token"));
}

#[tokio::test]
async fn header_input_is_checked_before_any_call() {
    // Nothing listens on port 9: a call would fail as unavailable, not invalid.
    let provider = VaultTransit::new(&config("http://127.0.0.1:9")).unwrap_or_else(|e| {
        panic!("{e}");
    });
    let kek = |key: &str, version| KekRef {
        key: key.to_owned(),
        version,
    };
    for (kek, wrapped) in [
        (kek("kmscodec-a", 2), "vault:v1:AAAA"),
        (kek("../sys/seal", 1), "vault:v1:AAAA"),
        (kek("kmscodec-a?x=1", 1), "vault:v1:AAAA"),
        (kek("kmscodec-a", 1), "not-a-ciphertext"),
    ] {
        assert_eq!(
            provider
                .unwrap_data_key("ns", &kek, &WrappedKey::new(wrapped.as_bytes().to_vec()))
                .await
                .err(),
            Some(ProviderError::Invalid),
            "{kek} {wrapped}"
        );
    }
    assert!(matches!(
        provider.generate_data_key("ns", "a/b").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        provider.health().await,
        Err(ProviderError::Unavailable(_))
    ));
}
