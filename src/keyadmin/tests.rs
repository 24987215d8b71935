//! Targets, argument checks and reports, without a provider call.

use super::report::render_rows;
use super::target::toml_key;
use super::*;
use crate::config::Config;

fn admin(toml: &str) -> Admin {
    Admin::new(Config::from_toml_str(toml, Vec::new()).unwrap())
}

const CONFIG: &str = r#"
    [providers.local]
    kind = "local"
    path = "/nonexistent/keyring.json"
    [providers.vault]
    kind = "vault"
    address = "http://127.0.0.1:1"
    [providers.vault.auth]
    method = "token"
    token_file = "/nonexistent/token"
    [namespaces.payments]
    provider = "vault"
    key = "kmscodec-payments"
    [namespaces.orders]
    provider = "vault"
    key = "kmscodec-payments"
    [namespaces."*"]
    provider = "local"
    key = "kmscodec-{namespace}"
"#;

#[test]
fn targets_follow_the_configuration() {
    let admin = admin(CONFIG);
    let exact = admin.target("payments", None, None, false).unwrap();
    assert_eq!(
        (exact.provider.as_str(), exact.key.as_str(), exact.mapping),
        ("vault", "kmscodec-payments", Mapping::Exact)
    );
    let wild = admin.target("alpha", None, None, false).unwrap();
    assert_eq!(
        (wild.provider.as_str(), wild.key.as_str(), wild.mapping),
        ("local", "kmscodec-alpha", Mapping::Wildcard)
    );
    let wrong = admin
        .target("payments", Some("local"), None, true)
        .unwrap_err();
    assert!(
        wrong.is_usage() && wrong.to_string().contains("uses provider"),
        "{wrong}"
    );
    let unknown = admin
        .target("payments", Some("vualt"), None, true)
        .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown provider \"vualt\""),
        "{unknown}"
    );
    assert!(
        admin
            .target("a b", None, None, false)
            .unwrap_err()
            .is_usage()
    );
    assert_eq!(admin.shared_with(&exact), vec!["orders".to_owned()]);
    assert!(admin.shared_with(&wild).is_empty());
}

#[test]
fn shred_is_refused_before_anything_is_done() {
    let admin = admin(CONFIG);
    let args = |namespace, confirm| ShredArgs {
        namespace,
        confirm,
        pending_days: None,
        now: false,
        including_shared: false,
    };
    let mismatch = check_shred(&admin, &args("alpha", "beta")).unwrap_err();
    assert!(
        mismatch.to_string().contains("does not match"),
        "{mismatch}"
    );
    let shared = check_shred(&admin, &args("payments", "payments")).unwrap_err();
    assert!(shared.to_string().contains("\"orders\""), "{shared}");
    let vault_days = ShredArgs {
        pending_days: Some(7),
        including_shared: true,
        ..args("payments", "payments")
    };
    assert!(check_shred(&admin, &vault_days).unwrap_err().is_usage());
    let (_, request, _) = check_shred(&admin, &args("alpha", "alpha")).unwrap();
    assert_eq!(request.pending_days, DEFAULT_PENDING_DAYS);
}

#[test]
fn snippets_and_tables() {
    let admin = admin(CONFIG);
    let target = admin.target("new.ns", Some("vault"), None, true);
    // The "*" entry covers every namespace: --provider must agree with it.
    assert!(target.is_err());
    let target = admin.target("alpha", None, None, false).unwrap();
    let snippet = config_snippet(&target, Some("kmscodec-{namespace}"));
    assert!(snippet.contains("[namespaces.alpha]\nprovider = \"local\"\nkey = \"kmscodec-alpha\""));
    assert!(snippet.contains("no change needed"));
    let table = render_rows(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
    assert_eq!(table, "A    BB\nxxx  y\n");
    assert_eq!(toml_key("a.b"), "\"a.b\"");
    assert!(check_sidecar_url("http://127.0.0.1:8089/").is_ok());
    assert!(check_sidecar_url("ftp://x").is_err());
    assert!(check_sidecar_url("http://u:p@x").is_err());
}
