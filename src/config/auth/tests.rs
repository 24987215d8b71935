//! The `[auth]` and `[authz]` parsers: documented examples, every problem with its path, and the
//! listeners' methods checked against what is configured.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::auth::Method;

fn parse_text(text: &str) -> (AuthConfig, AuthzConfig, Vec<Problem>) {
    let root: toml::Table = text.parse().unwrap();
    let mut problems = Vec::new();
    let auth = root.get("auth").and_then(toml::Value::as_table);
    let authz = root.get("authz").and_then(toml::Value::as_table);
    let (auth, authz) = parse(auth, authz, &mut problems);
    (auth, authz, problems)
}

fn problem_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_documented_example_parses_with_defaults() {
    let (auth, authz, problems) = parse_text(
        r#"
        [auth.tokens.oncall]
        file = "/etc/kmscodec/auth/tokens/oncall"
        [auth.tokens."ci.bot"]
        file = "/etc/kmscodec/auth/tokens/ci.bot"
        [auth.jwt]
        issuer = "https://issuer.example"
        audiences = ["temporal-ui"]
        jwks_url = "https://issuer.example/jwks"
        [[authz.rules]]
        principals = ["token:oncall", "sub:1234", "email:alice@example.com", "group:temporal-admins", "cert:worker-a", "*"]
        namespaces = ["orders", "*"]
        roles = ["read", "write"]
        [[authz.rules]]
        principals = ["token:ci.bot"]
        namespaces = ["payments.a1b2c"]
        roles = ["write", "write"]
        "#,
    );
    assert!(problems.is_empty(), "{}", problem_text(&problems));
    assert_eq!(
        auth.tokens["oncall"].file,
        Path::new("/etc/kmscodec/auth/tokens/oncall")
    );
    assert!(auth.tokens.contains_key("ci.bot"));
    let jwt = auth.jwt.unwrap();
    assert_eq!(jwt.issuer, "https://issuer.example");
    assert_eq!(jwt.audiences, ["temporal-ui"]);
    assert_eq!(
        jwt.jwks,
        JwksSource::Url(url::Url::parse("https://issuer.example/jwks").unwrap())
    );
    assert_eq!(jwt.algorithms, JwtAlgorithm::ALL);
    assert_eq!(jwt.leeway, DEFAULT_LEEWAY);
    assert_eq!(jwt.groups_claim, DEFAULT_GROUPS_CLAIM);
    assert_eq!(jwt.email_claim, DEFAULT_EMAIL_CLAIM);
    assert_eq!(jwt.jwks_refresh, DEFAULT_JWKS_REFRESH);
    assert_eq!(authz.rules.len(), 2);
    assert_eq!(authz.rules[0].roles, [Role::Read, Role::Write]);
    assert_eq!(authz.rules[1].roles, [Role::Write]);
}

#[test]
fn inline_rules_and_optional_jwt_keys_parse() {
    let (auth, authz, problems) = parse_text(
        r#"
        [auth.jwt]
        issuer = "https://issuer.example"
        audiences = ["a", "b"]
        jwks_file = "/etc/kmscodec/jwks.json"
        algorithms = ["ES256"]
        leeway = "30s"
        groups_claim = "realm_access.roles"
        email_claim = "upn"
        jwks_refresh = "1h"
        [authz]
        rules = [{ principals = ["group:ops"], namespaces = ["*"], roles = ["read"] }]
        "#,
    );
    assert!(problems.is_empty(), "{}", problem_text(&problems));
    let jwt = auth.jwt.unwrap();
    assert_eq!(jwt.jwks, JwksSource::File("/etc/kmscodec/jwks.json".into()));
    assert_eq!(jwt.algorithms, [JwtAlgorithm::Es256]);
    assert_eq!(jwt.leeway, Duration::from_secs(30));
    assert_eq!(jwt.groups_claim, "realm_access.roles");
    assert_eq!(jwt.email_claim, "upn");
    assert_eq!(jwt.jwks_refresh, Duration::from_secs(3600));
    assert_eq!(authz.rules[0].principals, ["group:ops"]);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let (_, authz, problems) = parse_text(
        r#"
        [auth]
        token = "oops"
        [auth.tokens.oncall]
        file = "/t/oncall"
        mode = "0600"
        [auth.tokens.nofile]
        [auth.tokens."bad name"]
        file = "/t/bad"
        [auth.jwt]
        audience = ["temporal-ui"]
        audiences = []
        jwks_url = "http://issuer.example/jwks"
        algorithms = ["RS256", "HS256", "none"]
        leeway = "1h"
        [[authz.rules]]
        principals = ["token:oncal", "user:bob", "bob", "email:"]
        namespaces = ["orders", "has space"]
        roles = ["read", "admin"]
        [[authz.rules]]
        principals = []
        roles = ["read"]
        [[authz.rules]]
        principals = ["*"]
        namespaces = ["*"]
        roles = ["write"]
        colour = "blue"
        "#,
    );
    let text = problem_text(&problems);
    for expected in [
        "auth.token: unknown field",
        "auth.tokens.oncall.mode: unknown field",
        "auth.tokens.nofile.file: missing",
        "auth.tokens.\"bad name\": not a valid principal name",
        "auth.jwt.issuer: missing",
        "auth.jwt.audience: unknown field",
        "auth.jwt.audiences: must name at least one audience",
        "auth.jwt.jwks_url: \"http://issuer.example/jwks\": the key set must be fetched over https",
        "auth.jwt.algorithms: \"HS256\" is not accepted",
        "auth.jwt.algorithms: \"none\" is not accepted",
        "auth.jwt.leeway: must be at most 10m",
        "authz.rules[0].principals: \"token:oncal\": no [auth.tokens.oncal] is configured",
        "authz.rules[0].principals: \"user:bob\": unknown principal kind \"user\"",
        "authz.rules[0].principals: \"bob\" has no kind",
        "authz.rules[0].principals: \"email:\": the name after email: is empty",
        "authz.rules[0].namespaces: \"has space\" is not a valid namespace",
        "authz.rules[0].roles: unknown role \"admin\"",
        "authz.rules[1].principals: must not be empty",
        "authz.rules[1].namespaces: missing",
        "authz.rules[2].colour: unknown field",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(problems.len(), 20, "{text}");
    // Bad rules are dropped; the valid third one (apart from its unknown key) is kept.
    assert_eq!(authz.rules.len(), 1);
}

#[test]
fn jwks_sources_are_checked() {
    let problems = |jwt: &str| {
        let (_, _, problems) = parse_text(&format!(
            "[auth.jwt]\nissuer = \"i\"\naudiences = [\"a\"]\n{jwt}\n"
        ));
        problem_text(&problems)
    };
    assert!(problems("").contains("auth.jwt.jwks_url: missing"));
    assert!(
        problems("jwks_url = \"https://i/jwks\"\njwks_file = \"/j\"")
            .contains("auth.jwt.jwks_file: set either jwks_url or jwks_file, not both")
    );
    assert!(problems("jwks_url = \"http://127.0.0.1:9/jwks\"").is_empty());
    assert!(problems("jwks_url = \"http://localhost:9/jwks\"").is_empty());
    assert!(problems("jwks_url = \"ftp://i/jwks\"").contains("unsupported scheme"));
    assert!(problems("jwks_url = \"jwks\"").contains("is not a URL"));
    let with_password = problems("jwks_url = \"https://user:hunter2@i/jwks\"");
    assert!(
        with_password.contains("credentials in the URL") && !with_password.contains("hunter2"),
        "{with_password}"
    );
    assert!(
        problems("jwks_url = \"https://i/jwks\"\njwks_refresh = \"1s\"").contains("at least 30s")
    );
    assert!(
        problems("jwks_url = \"https://i/jwks\"\ngroups_claim = \"a..b\"").contains("groups_claim")
    );
}

#[test]
fn listener_methods_must_be_configured_and_need_rules() {
    let (auth, authz, problems) = parse_text(
        r#"
        [auth.tokens.oncall]
        file = "/t/oncall"
        [[authz.rules]]
        principals = ["token:oncall"]
        namespaces = ["*"]
        roles = ["read"]
        "#,
    );
    assert!(problems.is_empty(), "{}", problem_text(&problems));
    let mut problems = Vec::new();
    let methods = validate_methods(
        &["token".to_owned(), "mtls".to_owned()],
        &auth,
        &authz,
        "server.auth",
        &mut problems,
    );
    assert!(problems.is_empty(), "{}", problem_text(&problems));
    assert_eq!(methods, [Method::Token, Method::Mtls]);

    let names: Vec<String> = ["jwt", "password", "token", "token"]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    let methods = validate_methods(&names, &auth, &authz, "server.auth", &mut problems);
    let text = problem_text(&problems);
    assert!(
        text.contains("server.auth[0]: \"jwt\" needs an [auth.jwt] table"),
        "{text}"
    );
    assert!(
        text.contains("server.auth[1]: unknown authentication method \"password\""),
        "{text}"
    );
    assert!(
        text.contains("server.auth[3]: \"token\" is listed twice"),
        "{text}"
    );
    assert_eq!(problems.len(), 3, "{text}");
    assert_eq!(methods, [Method::Jwt, Method::Token]);

    let mut problems = Vec::new();
    validate_methods(
        &["token".to_owned()],
        &AuthConfig::default(),
        &AuthzConfig::default(),
        "server.auth",
        &mut problems,
    );
    let text = problem_text(&problems);
    assert!(
        text.contains("server.auth[0]: \"token\" needs at least one [auth.tokens"),
        "{text}"
    );
    assert!(
        text.contains("server.auth: authentication is on but [authz] has no rules"),
        "{text}"
    );

    // An open listener needs nothing.
    let mut problems = Vec::new();
    assert!(
        validate_methods(
            &[],
            &AuthConfig::default(),
            &AuthzConfig::default(),
            "x",
            &mut problems
        )
        .is_empty()
    );
    assert!(problems.is_empty());
}

#[test]
fn config_files_carry_auth_and_authz() {
    let base = "[providers.local]\nkind = \"local\"\npath = \"/k.json\"\n\
                [namespaces.\"*\"]\nprovider = \"local\"\nkey = \"dev\"\n";
    let config = crate::config::Config::from_toml_str(base, std::iter::empty()).unwrap();
    assert_eq!(config.auth, AuthConfig::default());
    assert!(config.authz.rules.is_empty());
    let text = format!(
        "{base}[auth.tokens.oncall]\nfile = \"/t/oncall\"\n[[authz.rules]]\n\
         principals = [\"token:oncall\"]\nnamespaces = [\"*\"]\nroles = [\"read\"]\n"
    );
    let config = crate::config::Config::from_toml_str(&text, std::iter::empty()).unwrap();
    assert!(config.auth.tokens.contains_key("oncall"));
    assert_eq!(config.authz.rules.len(), 1);
    // Environment overrides reach these tables like any other.
    let env = vec![(
        "KMSCODEC_AUTH__TOKENS__ONCALL__FILE".to_owned(),
        "/run/oncall".to_owned(),
    )];
    let config = crate::config::Config::from_toml_str(&text, env).unwrap();
    assert_eq!(config.auth.tokens["oncall"].file, Path::new("/run/oncall"));
    let error = crate::config::Config::from_toml_str(
        &format!("{base}[authz]\nrules = \"everyone\"\n[auth.jwt]\nissuer = \"x\"\n"),
        std::iter::empty(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("authz.rules: expected an array of tables"),
        "{error}"
    );
    assert!(error.contains("auth.jwt.audiences: missing"), "{error}");
}

#[test]
fn the_helm_charts_rendering_parses() {
    // The shape helm/kmscodec/templates/_helpers.tpl renders from examples/vault-kubernetes.yaml.
    let (auth, authz, problems) = parse_text(
        r#"
        [auth.jwt]
        audiences = ["kmscodec"]
        issuer = "https://login.example.com/"
        jwks_url = "https://login.example.com/.well-known/jwks.json"
        [auth.tokens.oncall]
        file = "/etc/kmscodec/auth/tokens/oncall"
        [authz]
        rules = [{namespaces = ["*"], principals = ["group:temporal-operators", "token:oncall"], roles = ["read"]}]
        "#,
    );
    assert!(problems.is_empty(), "{}", problem_text(&problems));
    assert!(auth.jwt.is_some() && auth.tokens.contains_key("oncall"));
    assert_eq!(authz.rules.len(), 1);
}
