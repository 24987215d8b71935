//! The whole configuration: documented examples, every problem at once, environment overrides.

use std::path::PathBuf;

use super::*;
use crate::envelope::Format;
use crate::keys::aws_kms::AwsKmsOptions;
use crate::keys::vault::{
    KUBERNETES_DEFAULT_JWT_FILE, VAULT_DEFAULT_KUBERNETES_MOUNT, VAULT_DEFAULT_MOUNT,
    VAULT_DEFAULT_RETRIES, VAULT_DEFAULT_TIMEOUT, VaultAuth, VaultToken,
};
use crate::secret::Credential;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, std::iter::empty())
}

const GOOD: &str = r#"
    [server]
    listen = "127.0.0.1:9000"
    body_limit_bytes = "16MiB"
    [server.cors]
    allowed_origins = ["http://localhost:8233"]
    allow_credentials = true
    [data_keys]
    soft_limit = 1000
    hard_limit = 1200
    max_age = "1h"
    [providers.dev]
    kind = "local"
    path = "/tmp/k.json"
    [namespaces.default]
    provider = "dev"
    key = "default-key"
    hard_limit = 5000
    soft_limit = 10
    [namespaces."*"]
    provider = "dev"
    key = "kmscodec-{namespace}"
"#;

#[test]
fn parses_a_full_file() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.server.listen.port(), 9000);
    assert_eq!(config.server.body_limit_bytes, 16 << 20);
    assert!(config.server.cors.allow_credentials);
    let default = &config.namespaces["default"];
    assert_eq!(default.limits.hard_limit, 5000);
    assert_eq!(default.limits.soft_limit, 10);
    assert_eq!(default.limits.max_age, Duration::from_secs(3600));
    let wildcard = &config.namespaces["*"];
    assert_eq!(wildcard.limits.hard_limit, 1200);
    assert_eq!(wildcard.key, "kmscodec-{namespace}");
}

#[test]
fn reports_every_problem_at_once() {
    let error = parse(
        r#"
        [server]
        listen = "nowhere"
        body_limit_bytes = -1
        [data_keys]
        hard_limit = 5000000000
        [providers.dev]
        kind = "vualt"
        [providers.file]
        kind = "local"
        [namespaces.default]
        provider = "nope"
        key = "k"
        colour = "blue"
        [namespaces.other]
        key = "{namespace}"
        [surprise]
        "#,
    )
    .unwrap_err();
    let text = error.to_string();
    for expected in [
        "server.listen: expected an address",
        "server.body_limit_bytes: expected a non-negative integer",
        "data_keys.hard_limit: 5000000000 exceeds 2^32",
        "providers.dev.kind: unknown provider kind \"vualt\"",
        "providers.file.path: missing",
        "namespaces.default.provider: unknown provider \"nope\"",
        "namespaces.default.colour: unknown field",
        "namespaces.other.provider: missing",
        "namespaces.other.key: {namespace} is only allowed",
        "surprise: unknown field",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(error.problems.len(), 10, "{text}");
}

#[test]
fn environment_overrides_apply_and_are_typed() {
    let env = vec![
        (
            "KMSCODEC_SERVER__LISTEN".to_owned(),
            "127.0.0.1:7777".to_owned(),
        ),
        (
            "KMSCODEC_NAMESPACES__DEFAULT__HARD_LIMIT".to_owned(),
            "2000".to_owned(),
        ),
        (
            "KMSCODEC_SERVER__CORS__ALLOWED_ORIGINS".to_owned(),
            "http://a.example, http://b.example".to_owned(),
        ),
        ("KMSCODEC_TOOLS".to_owned(), "/ignored".to_owned()),
        ("OTHER".to_owned(), "x".to_owned()),
    ];
    let config = Config::from_toml_str(GOOD, env).unwrap();
    assert_eq!(config.server.listen.port(), 7777);
    assert_eq!(config.namespaces["default"].limits.hard_limit, 2000);
    assert_eq!(
        config.server.cors.allowed_origins,
        ["http://a.example", "http://b.example"]
    );

    let bad = vec![(
        "KMSCODEC_SERVER__BODY_LIMIT_BYTES".to_owned(),
        "lots".to_owned(),
    )];
    let error = Config::from_toml_str(GOOD, bad).unwrap_err().to_string();
    assert!(error.contains("server.body_limit_bytes"), "{error}");
}

#[test]
fn payload_format_defaults_to_2_and_is_overridden_per_namespace() {
    let config = parse(
        r#"
        [data_keys]
        format = 1
        [providers.dev]
        kind = "local"
        path = "k.json"
        [namespaces.old]
        provider = "dev"
        key = "k"
        [namespaces.new]
        provider = "dev"
        key = "k"
        format = 2
        "#,
    )
    .unwrap();
    assert_eq!(config.namespaces["old"].limits.format, Format::V1);
    assert_eq!(config.namespaces["new"].limits.format, Format::V2);
    assert_eq!(
        parse(GOOD).unwrap().namespaces["default"].limits.format,
        Format::V2
    );

    let error = parse(
        r#"
        [providers.dev]
        kind = "local"
        path = "k.json"
        [namespaces."*"]
        provider = "dev"
        key = "k"
        format = 4
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(
            "namespaces.\"*\".format: expected 1, 2 or 3 (the sealed payload format), found 4"
        ),
        "{error}"
    );
}

#[test]
fn compression_is_off_by_default_and_set_per_namespace() {
    use crate::compression::{DEFAULT_LEVEL, DEFAULT_MIN_SIZE, Settings};
    let config = parse(
        r#"
        [data_keys]
        compression_level = 5
        [providers.dev]
        kind = "local"
        path = "k.json"
        [namespaces.plain]
        provider = "dev"
        key = "k"
        [namespaces.packed]
        provider = "dev"
        key = "k"
        compression = "zstd"
        compression_min_size = "8KiB"
        "#,
    );
    // A level without compression is a mistake, reported.
    let error = config.unwrap_err().to_string();
    assert!(
        error.contains("data_keys.compression_level: set compression = \"zstd\""),
        "{error}"
    );
    let config = parse(
        r#"
        [data_keys]
        compression = "zstd"
        compression_level = 5
        [providers.dev]
        kind = "local"
        path = "k.json"
        [namespaces.inherits]
        provider = "dev"
        key = "k"
        [namespaces.small]
        provider = "dev"
        key = "k"
        compression_min_size = "8KiB"
        [namespaces.off]
        provider = "dev"
        key = "k"
        compression = "none"
        "#,
    )
    .unwrap();
    let limits = |name: &str| config.namespaces[name].limits.clone();
    assert_eq!(
        limits("inherits").compression,
        Some(Settings {
            level: 5,
            min_size: DEFAULT_MIN_SIZE
        })
    );
    assert_eq!(limits("inherits").sealing_format(), Format::V3);
    assert_eq!(limits("small").compression.unwrap().min_size, 8192);
    assert_eq!(limits("off").compression, None);
    assert_eq!(limits("off").sealing_format(), Format::V2);
    let default = parse(GOOD).unwrap().namespaces["default"].limits.clone();
    assert_eq!(default.compression, None);
    assert_eq!(default.sealing_format(), Format::V2);
    assert_eq!(Settings::default().level, DEFAULT_LEVEL);

    for (table, message) in [
        (
            "compression = \"lz4\"",
            "compression: expected \"zstd\" or \"none\", found \"lz4\"",
        ),
        (
            "compression = \"zstd\"\ncompression_level = 23",
            "compression_level: expected a zstd level from 1 to 22, found 23",
        ),
        (
            "compression = \"zstd\"\nformat = 2",
            "format: compression = \"zstd\" seals in format 3",
        ),
    ] {
        let error = parse(&format!(
            "[providers.dev]\nkind = \"local\"\npath = \"k.json\"\n\
             [namespaces.x]\nprovider = \"dev\"\nkey = \"k\"\n{table}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains(message), "{error}");
    }
}

#[test]
fn soft_limit_above_hard_and_credentials_with_star_are_refused() {
    let error = parse(
        r#"
        [server.cors]
        allowed_origins = ["*"]
        allow_credentials = true
        [data_keys]
        soft_limit = 10
        hard_limit = 5
        [providers.dev]
        kind = "local"
        path = "k.json"
        [namespaces."*"]
        provider = "dev"
        key = "k"
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("data_keys.soft_limit: must be between 1 and hard_limit (5)"),
        "{error}"
    );
    assert!(
        error.contains("server.cors.allow_credentials: cannot be combined"),
        "{error}"
    );
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("8MiB"), Some(8 << 20));
    assert_eq!(parse_size("10kB"), Some(10_000));
    assert_eq!(parse_size("12"), Some(12));
    assert_eq!(parse_size("12 parsecs"), None);
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
    assert_eq!(parse_duration("-1s"), None);
    assert_eq!(parse_duration("soon"), None);
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
    assert_eq!(
        parse_duration("2d 12h"),
        Some(Duration::from_secs(60 * 3600))
    );
    assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("0.5"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration(""), None);
    assert_eq!(parse_duration("1e400"), None);
    assert_eq!(parse_duration("1y"), None);
    assert_eq!(parse_duration("1M"), None);
}

#[test]
fn embedded_default_serves_every_namespace_from_the_data_dir() {
    let config = Config::embedded_default(Path::new("/data"), std::iter::empty()).unwrap();
    assert!(config.embedded_default);
    assert_eq!(
        config.providers[DEV_PROVIDER],
        ProviderConfig::Local {
            path: PathBuf::from("/data/keyring.json"),
            create_missing: true
        }
    );
    assert_eq!(config.namespaces["*"].key, DEV_KEY);
    assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
}

#[test]
fn vault_providers_parse_with_defaults_and_env_tokens() {
    let text = r#"
        [providers.vault]
        kind = "vault"
        address = "https://vault.example.com:8200/"
        [providers.vault.auth]
        method = "token"
        token_env = "SIDECAR_VAULT_TOKEN"
        [providers.k8s]
        kind = "vault"
        address = "http://127.0.0.1:8200"
        mount = "/kv/transit/"
        namespace = "admin/team-a"
        timeout = "750ms"
        retries = 0
        [providers.k8s.auth]
        method = "kubernetes"
        role = "kmscodec"
        [providers.app]
        kind = "vault"
        address = "https://vault.example.com"
        ca_cert = "/etc/vault/ca.pem"
        [providers.app.auth]
        method = "approle"
        role_id_file = "/run/role-id"
        secret_id_file = "/run/secret-id"
        [namespaces."*"]
        provider = "vault"
        key = "kmscodec-{namespace}"
    "#;
    let env = vec![(
        "SIDECAR_VAULT_TOKEN".to_owned(),
        " s.secret-value\n".to_owned(),
    )];
    let config = Config::from_toml_str(text, env).unwrap();
    let ProviderConfig::Vault(vault) = &config.providers["vault"] else {
        panic!("not vault");
    };
    assert_eq!(vault.address, "https://vault.example.com:8200");
    assert_eq!(vault.mount, VAULT_DEFAULT_MOUNT);
    assert_eq!(vault.timeout, VAULT_DEFAULT_TIMEOUT);
    assert_eq!(vault.retries, VAULT_DEFAULT_RETRIES);
    assert_eq!(
        vault.auth,
        VaultAuth::Token(VaultToken::Env {
            variable: "SIDECAR_VAULT_TOKEN".to_owned(),
            value: Credential::new("s.secret-value"),
        })
    );
    assert!(!format!("{config:?}").contains("secret-value"));
    let ProviderConfig::Vault(k8s) = &config.providers["k8s"] else {
        panic!("not vault");
    };
    assert_eq!(k8s.mount, "kv/transit");
    assert_eq!(k8s.namespace.as_deref(), Some("admin/team-a"));
    assert_eq!(k8s.timeout, Duration::from_millis(750));
    assert_eq!(k8s.retries, 0);
    assert_eq!(
        k8s.auth,
        VaultAuth::Kubernetes {
            mount: VAULT_DEFAULT_KUBERNETES_MOUNT.to_owned(),
            role: "kmscodec".to_owned(),
            jwt_file: PathBuf::from(KUBERNETES_DEFAULT_JWT_FILE),
        }
    );
    let ProviderConfig::Vault(app) = &config.providers["app"] else {
        panic!("not vault");
    };
    assert_eq!(app.ca_cert.as_deref(), Some(Path::new("/etc/vault/ca.pem")));
    assert!(matches!(&app.auth, VaultAuth::AppRole { mount, .. } if mount == "approle"));
}

#[test]
fn vault_problems_are_all_reported_without_echoing_secrets() {
    let error = Config::from_toml_str(
        r#"
        [providers.a]
        kind = "vault"
        address = "vault.example.com/v1"
        mount = "transit/../sys"
        ca_cert = "/ca.pem"
        timeout = "1y"
        retries = 50
        token_file = "/misplaced"
        [providers.a.auth]
        method = "token"
        token_env = "BAD_TOKEN"
        [providers.b]
        kind = "vault"
        address = "http://127.0.0.1:8200"
        [providers.c]
        kind = "vault"
        address = "http://127.0.0.1:8200"
        [providers.c.auth]
        method = "approle"
        secret_id_file = ""
        [providers.d]
        kind = "vault"
        address = "http://127.0.0.1:8200"
        [providers.d.auth]
        method = "userpass"
        [providers.e]
        kind = "vault"
        address = "http://127.0.0.1:8200"
        [providers.e.auth]
        method = "token"
        token_env = "UNSET_TOKEN"
        [namespaces.x]
        provider = "a"
        key = "kmscodec-x"
        [namespaces.y]
        provider = "e"
        key = "bad/key"
        "#,
        vec![("BAD_TOKEN".to_owned(), "tok en\u{7f}".to_owned())],
    )
    .unwrap_err();
    let text = error.to_string();
    for expected in [
        "providers.a.address: \"vault.example.com/v1\": not a URL",
        "providers.a.mount: \"transit/../sys\" is not a mount path",
        "providers.a.ca_cert: only used with an https address",
        "providers.a.timeout: expected a duration",
        "providers.a.retries: must be at most 10",
        "providers.a.token_file: unknown field",
        "providers.a.auth.token_env: environment variable BAD_TOKEN does not hold a token",
        "providers.b.auth: missing",
        "providers.c.auth.role_id_file: missing",
        "providers.c.auth.secret_id_file: must not be empty",
        "providers.d.auth.method: unknown auth method \"userpass\"",
        "providers.e.auth.token_env: environment variable UNSET_TOKEN is not set",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The namespaces naming those providers are reported too (the providers are unusable).
    assert!(
        text.contains("namespaces.x.provider: unknown provider \"a\""),
        "{text}"
    );
    assert!(!text.contains("tok en"), "{text}");
    assert_eq!(error.problems.len(), 14, "{text}");
}

#[test]
fn plain_http_to_vault_is_for_this_machine_unless_allowed() {
    let config = |address: &str, allow: &str| {
        format!(
            "[providers.v]\nkind = \"vault\"\naddress = \"{address}\"\n{allow}\
             [providers.v.auth]\nmethod = \"token\"\ntoken_env = \"T\"\n\
             [namespaces.x]\nprovider = \"v\"\nkey = \"k\"\n"
        )
    };
    let env = || vec![("T".to_owned(), "s.token".to_owned())];
    for address in [
        "http://127.0.0.1:8200",
        "http://localhost:8200",
        "http://[::1]:8200",
        "https://vault.example.com",
    ] {
        Config::from_toml_str(&config(address, ""), env())
            .unwrap_or_else(|e| panic!("{address}: {e}"));
    }
    for address in ["http://vault.example.com:8200", "http://10.0.0.7:8200"] {
        let error = Config::from_toml_str(&config(address, ""), env())
            .unwrap_err()
            .to_string();
        assert!(error.contains("providers.v.address"), "{error}");
        assert!(error.contains("allow_insecure_http = true"), "{error}");
        Config::from_toml_str(&config(address, "allow_insecure_http = true\n"), env())
            .unwrap_or_else(|e| panic!("{address} with allow_insecure_http: {e}"));
    }
}

#[test]
fn vault_key_names_are_checked() {
    let error = parse(
        r#"
        [providers.v]
        kind = "vault"
        address = "http://127.0.0.1:8200"
        [providers.v.auth]
        method = "kubernetes"
        role = "r"
        [namespaces.a]
        provider = "v"
        key = "bad/key"
        [namespaces."*"]
        provider = "v"
        key = "kmscodec-{namespace}?"
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("namespaces.a.key: \"bad/key\" is not a valid transit key name"),
        "{error}"
    );
    assert!(error.contains("is not a valid transit key name"), "{error}");
    assert!(valid_transit_key_name("kmscodec-payments.prod_1"));
    assert!(!valid_transit_key_name("-x"));
    assert!(!valid_transit_key_name("x."));
    assert!(!valid_transit_key_name(".."));
}

#[test]
fn aws_providers_parse_with_defaults_and_report_every_bad_field() {
    let config = parse(
        r#"
        [providers.kms]
        kind = "aws"
        region = "eu-west-1"
        endpoint = "http://127.0.0.1:4566"
        timeout = "1.5s"
        max_attempts = 2
        [providers.chain]
        kind = "aws"
        [namespaces.default]
        provider = "kms"
        key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        [namespaces."*"]
        provider = "chain"
        key = "alias/kmscodec/{namespace}"
        "#,
    )
    .unwrap();
    let ProviderConfig::Aws(kms) = &config.providers["kms"] else {
        panic!("not aws: {:?}", config.providers["kms"]);
    };
    assert_eq!(kms.region.as_deref(), Some("eu-west-1"));
    assert_eq!(kms.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
    assert_eq!(kms.timeout, Duration::from_millis(1500));
    assert_eq!(kms.connect_timeout, aws_kms::DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(kms.max_attempts, 2);
    assert_eq!(
        config.providers["chain"],
        ProviderConfig::Aws(AwsKmsOptions::default())
    );
    assert_eq!(config.providers["chain"].kind(), "aws");

    let error = parse(
        r#"
        [providers.kms]
        kind = "aws"
        region = "Europe West"
        endpoint = "kms.example.com"
        timeout = "soon"
        max_attempts = 0
        profile = ""
        secret_access_key = "never here"
        [namespaces.default]
        provider = "kms"
        key = "alias/aws/s3"
        [namespaces.other]
        provider = "kms"
        key = "arn:aws:s3:::bucket"
        "#,
    )
    .unwrap_err();
    let text = error.to_string();
    for expected in [
        "providers.kms.region: \"Europe West\" is not an AWS region",
        "providers.kms.endpoint: \"kms.example.com\" is not an endpoint URL",
        "providers.kms.timeout: expected a duration",
        "providers.kms.max_attempts: must be between 1 and 10, found 0",
        "providers.kms.profile: must not be empty",
        "providers.kms.secret_access_key: unknown field",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The provider is dropped, so its namespaces report the unknown provider instead.
    assert!(
        text.contains("namespaces.default.provider: unknown provider"),
        "{text}"
    );

    let error = parse(
        r#"
        [providers.kms]
        kind = "aws"
        [namespaces.default]
        provider = "kms"
        key = "alias/aws/s3"
        [namespaces.other]
        provider = "kms"
        key = "arn:aws:s3:::bucket"
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("namespaces.default.key: \"alias/aws/s3\""),
        "{error}"
    );
    assert!(
        error.contains("namespaces.other.key: \"arn:aws:s3:::bucket\""),
        "{error}"
    );
}

#[test]
fn admin_token_file_is_optional_and_checked() {
    let base = "[providers.local]\nkind = \"local\"\npath = \"/k.json\"\n\
                [namespaces.\"*\"]\nprovider = \"local\"\nkey = \"dev\"\n";
    assert_eq!(parse(base).unwrap().admin.token_file, None);
    let with = parse(&format!(
        "{base}[admin]\ntoken_file = \"/run/admin-token\"\n"
    ))
    .unwrap();
    assert_eq!(
        with.admin.token_file.as_deref(),
        Some(Path::new("/run/admin-token"))
    );
    let error = parse(&format!(
        "{base}[admin]\ntoken_file = \"\"\ntoken = \"x\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("admin.token_file: must not be empty"),
        "{error}"
    );
    assert!(error.contains("admin.token: unknown field"), "{error}");
}
