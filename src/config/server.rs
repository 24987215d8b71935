//! `[server]`, `[ui]`, `[audit]` and `[admin]`: the listeners, what they audit, and the admin
//! API, read into the server's and the audit log's own settings types.

use std::path::PathBuf;
use std::time::Duration;

use super::fields::{Fields, Problem};
use crate::audit::{AuditOutput, Scope, Scopes};
use crate::server::admin_api::AdminConfig;
use crate::server::http::CorsConfig;
use crate::server::tls::{ClientAuth, TlsSettings};
use crate::server::{ServerConfig, UiConfig};

pub(super) fn parse_server(
    table: Option<&toml::Table>,
    problems: &mut Vec<Problem>,
    mut server: ServerConfig,
) -> ServerConfig {
    let mut fields = Fields::new("server", table);
    if let Some(listen) = fields.socket("listen", problems) {
        server.listen = listen;
    }
    match fields.raw("admin_listen") {
        // `admin_listen = ""` (or "off") turns the admin listener off.
        Some(toml::Value::String(text)) if text.is_empty() || text == "off" => {
            server.admin_listen = None
        }
        Some(_) => {
            server.admin_listen = fields
                .socket("admin_listen", problems)
                .or(server.admin_listen)
        }
        None => {}
    }
    if let Some(listen) = fields.socket("grpc_listen", problems) {
        server.grpc_listen = Some(listen);
    }
    if let Some(path) = fields.string("grpc_unix_socket", problems) {
        if path.is_empty() {
            fields.problem(problems, "grpc_unix_socket", "must not be empty");
        } else {
            server.grpc_unix_socket = Some(PathBuf::from(path));
        }
    }
    if let Some(limit) = fields.unsigned("body_limit_bytes", problems) {
        if limit < 1024 {
            fields.problem(problems, "body_limit_bytes", "must be at least 1024");
        }
        server.body_limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    }
    if let Some(flag) = fields.boolean("namespace_from_path", problems) {
        server.namespace_from_path = flag;
    }
    if let Some(timeout) = fields.duration("request_timeout", problems) {
        server.request_timeout = timeout;
    }
    if let Some(grace) = fields.duration("shutdown_grace", problems) {
        server.shutdown_grace = grace;
    }
    if let Some(grace) = fields.duration("readiness_grace", problems) {
        server.readiness_grace = grace;
    }
    server.cors = parse_cors("server.cors", fields.table("cors", problems), problems);
    if let Some(methods) = fields.strings("auth", problems) {
        server.auth = methods;
    }
    server.tls = parse_tls("server.tls", fields.table("tls", problems), problems);
    server.admin_tls = parse_tls(
        "server.admin_tls",
        fields.table("admin_tls", problems),
        problems,
    );
    server.grpc_tls = parse_tls(
        "server.grpc_tls",
        fields.table("grpc_tls", problems),
        problems,
    );
    if let Some(max) = fields.unsigned("max_connections", problems) {
        if max == 0 {
            fields.problem(problems, "max_connections", "must be at least 1");
        }
        server.max_connections = usize::try_from(max).unwrap_or(usize::MAX).max(1);
    }
    if let Some(max) = fields.unsigned("max_header_bytes", problems) {
        if !(1024..=1 << 20).contains(&max) {
            fields.problem(
                problems,
                "max_header_bytes",
                "must be between 1024 and 1048576",
            );
        }
        server.max_header_bytes = usize::try_from(max).unwrap_or(usize::MAX);
    }
    if let Some(max) = fields.unsigned("max_concurrent_requests", problems) {
        if max == 0 {
            fields.problem(problems, "max_concurrent_requests", "must be at least 1");
        }
        server.max_concurrent_requests = usize::try_from(max).unwrap_or(usize::MAX).max(1);
    }
    if let Some(hosts) = parse_hosts(&mut fields, problems) {
        server.allowed_hosts = hosts;
    }
    fields.finish(problems);
    server
}

/// `allowed_hosts`: host names (a port is ignored) or `"*"`.
fn parse_hosts(fields: &mut Fields<'_>, problems: &mut Vec<Problem>) -> Option<Vec<String>> {
    let hosts = fields.strings("allowed_hosts", problems)?;
    for host in &hosts {
        let valid = host == "*"
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)));
        if !valid {
            fields.problem(
                problems,
                "allowed_hosts",
                format!("{host:?} is not a host name"),
            );
        }
    }
    Some(hosts)
}

/// Parses a `cors` table; without one, no origin is allowed.
fn parse_cors(path: &str, table: Option<&toml::Table>, problems: &mut Vec<Problem>) -> CorsConfig {
    let mut cors = CorsConfig {
        max_age: Duration::from_secs(600),
        ..CorsConfig::default()
    };
    let Some(table) = table else { return cors };
    let mut fields = Fields::new(path, Some(table));
    if let Some(origins) = fields.strings("allowed_origins", problems) {
        for origin in &origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                fields.problem(
                    problems,
                    "allowed_origins",
                    format!("{origin:?} is not an origin like https://temporal.example.com"),
                );
            }
            if origin.ends_with('/') {
                fields.problem(
                    problems,
                    "allowed_origins",
                    format!("{origin:?}: an origin has no trailing '/'"),
                );
            }
        }
        cors.allowed_origins = origins;
    }
    if let Some(flag) = fields.boolean("allow_credentials", problems) {
        cors.allow_credentials = flag;
    }
    if let Some(age) = fields.duration("max_age", problems) {
        cors.max_age = age;
    }
    if cors.allow_credentials && cors.allowed_origins.iter().any(|o| o == "*") {
        fields.problem(
            problems,
            "allow_credentials",
            "cannot be combined with allowed_origins = [\"*\"]: name the exact origins",
        );
    }
    fields.finish(problems);
    cors
}

/// Parses a listener's `tls` table.
fn parse_tls(
    path: &str,
    table: Option<&toml::Table>,
    problems: &mut Vec<Problem>,
) -> Option<TlsSettings> {
    let table = table?;
    let mut fields = Fields::new(path, Some(table));
    let cert_file = fields.string("cert_file", problems);
    let key_file = fields.string("key_file", problems);
    let client_ca_file = fields.string("client_ca_file", problems);
    let client_auth = match fields.string("client_auth", problems).as_deref() {
        None | Some("off") => ClientAuth::Off,
        Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            fields.problem(
                problems,
                "client_auth",
                format!("expected \"off\", \"optional\" or \"required\", found {other:?}"),
            );
            ClientAuth::Off
        }
    };
    if cert_file.is_none() {
        fields.problem(problems, "cert_file", "missing (the PEM certificate chain)");
    }
    if key_file.is_none() {
        fields.problem(problems, "key_file", "missing (the PEM private key)");
    }
    if client_auth != ClientAuth::Off && client_ca_file.is_none() {
        fields.problem(
            problems,
            "client_ca_file",
            "missing: client_auth needs the CA that signs client certificates",
        );
    }
    fields.finish(problems);
    Some(TlsSettings {
        cert_file: PathBuf::from(cert_file?),
        key_file: PathBuf::from(key_file?),
        client_ca_file: client_ca_file.map(PathBuf::from),
        client_auth,
    })
}

/// Parses `[ui]`.
pub(super) fn parse_ui(table: &toml::Table, problems: &mut Vec<Problem>) -> Option<UiConfig> {
    let mut fields = Fields::new("ui", Some(table));
    let listen = fields.socket("listen", problems);
    if listen.is_none() && table.get("listen").is_none() {
        fields.problem(problems, "listen", "missing (an address like 0.0.0.0:8443)");
    }
    let auth = fields.strings("auth", problems).unwrap_or_default();
    let allow_unauthenticated = fields
        .boolean("allow_unauthenticated", problems)
        .unwrap_or(false);
    if auth.is_empty() && !allow_unauthenticated {
        fields.problem(
            problems,
            "auth",
            "the UI listener needs at least one method (\"token\", \"jwt\", \"mtls\"), or allow_unauthenticated = true",
        );
    }
    let token_cookie = fields.string("token_cookie", problems);
    if let Some(name) = &token_cookie {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            fields.problem(
                problems,
                "token_cookie",
                format!("{name:?} is not a cookie name"),
            );
        }
    }
    let cors = parse_cors("ui.cors", fields.table("cors", problems), problems);
    let tls = parse_tls("ui.tls", fields.table("tls", problems), problems);
    let max_concurrent_requests = fields.unsigned("max_concurrent_requests", problems);
    if max_concurrent_requests == Some(0) {
        fields.problem(problems, "max_concurrent_requests", "must be at least 1");
    }
    let allowed_hosts = parse_hosts(&mut fields, problems).unwrap_or_default();
    fields.finish(problems);
    Some(UiConfig {
        listen: listen?,
        auth,
        token_cookie,
        cors,
        tls,
        max_concurrent_requests: max_concurrent_requests
            .map(|max| usize::try_from(max).unwrap_or(usize::MAX).max(1)),
        allowed_hosts,
    })
}

/// Parses `[audit]`: the output, and what each listener records.
pub(super) fn parse_audit(
    table: &toml::Table,
    problems: &mut Vec<Problem>,
) -> (AuditOutput, Scopes) {
    let mut fields = Fields::new("audit", Some(table));
    let output = fields.string("output", problems);
    let path = fields.string("path", problems);
    let mut scopes = Scopes::default();
    for (key, slot) in [
        ("worker", &mut scopes.worker),
        ("ui", &mut scopes.ui),
        ("grpc", &mut scopes.grpc),
    ] {
        if let Some(name) = fields.string(key, problems) {
            match Scope::from_name(&name) {
                Some(scope) => *slot = scope,
                None => fields.problem(
                    problems,
                    key,
                    format!(
                        "expected one of {}, found {name:?}",
                        Scope::NAMES.map(|n| format!("\"{n}\"")).join(", ")
                    ),
                ),
            }
        }
    }
    if let Some(interval) = fields.duration("summary_interval", problems) {
        if interval < Duration::from_secs(1) {
            fields.problem(problems, "summary_interval", "must be at least 1s");
        } else {
            scopes.summary_interval = interval;
        }
    }
    let audit = match output.as_deref() {
        Some("off") => AuditOutput::Off,
        None | Some("stdout") => AuditOutput::Stdout,
        Some("stderr") => AuditOutput::Stderr,
        Some("file") => match path.as_deref() {
            Some(path) if !path.is_empty() => AuditOutput::File(PathBuf::from(path)),
            _ => {
                fields.problem(problems, "path", "missing: output = \"file\" needs a path");
                AuditOutput::Off
            }
        },
        Some(other) => {
            fields.problem(
                problems,
                "output",
                format!("expected \"stdout\", \"stderr\", \"file\" or \"off\", found {other:?}"),
            );
            AuditOutput::Off
        }
    };
    if path.is_some() && output.as_deref() != Some("file") {
        fields.problem(problems, "path", "only used with output = \"file\"");
    }
    fields.finish(problems);
    (audit, scopes)
}

/// Parses `[admin]`.
pub(super) fn parse_admin(table: &toml::Table, problems: &mut Vec<Problem>) -> AdminConfig {
    let mut fields = Fields::new("admin", Some(table));
    let mut admin = AdminConfig::default();
    if let Some(file) = fields.string("token_file", problems) {
        if file.is_empty() {
            fields.problem(problems, "token_file", "must not be empty");
        } else {
            admin.token_file = Some(PathBuf::from(file));
        }
    }
    admin.listen = fields.socket("listen", problems);
    fields.finish(problems);
    admin
}
