//! The Helm chart (`helm/kmscodec`), checked offline with the real tools from `KMSCODEC_TOOLS`:
//! `helm lint --strict` and `helm template` for the default values, the fallback and server
//! variants and every file in `helm/kmscodec/examples/`; the manifests validated by
//! `kubernetes-validate --strict` for Kubernetes 1.29 and 1.33 and the prometheus-operator
//! resources by their CRD schemas (`@kubernetes-models/prometheus-operator`); the rendered
//! alert rules through `promtool`; bad values refused with clear messages; every rendered
//! configuration accepted by `kmscodec config check`; and the sidecar container's security
//! settings and probes, the probes requested from the real binary started on the rendered
//! configuration.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const RELEASE: &str = "kmscodec";
const NAMESPACE: &str = "temporal";

fn chart_dir() -> PathBuf {
    common::repo_root().join("helm/kmscodec")
}

/// One way of rendering the chart: a name and the arguments after `helm template RELEASE CHART`.
struct Case {
    name: String,
    args: Vec<String>,
}

/// The default values, two variants of them, and every example values file.
fn cases() -> Vec<Case> {
    let set = |pairs: &[&str]| -> Vec<String> {
        pairs
            .iter()
            .flat_map(|p| ["--set".to_string(), p.to_string()])
            .collect()
    };
    let mut cases = vec![
        Case {
            name: "default".into(),
            args: vec![],
        },
        // Everything optional in sidecar mode, with the plain-container fallback.
        Case {
            name: "sidecar-fallback".into(),
            args: set(&[
                "sidecar.native=false",
                "admin.tokenSecret.name=kmscodec-admin",
                "exampleWorker.enabled=true",
                "networkPolicy.enabled=true",
                "metrics.serviceMonitor.enabled=true",
                "metrics.prometheusRule.enabled=true",
            ]),
        },
        // Server mode on the development keyring, explicitly unauthenticated.
        Case {
            name: "server-unauthenticated".into(),
            args: set(&[
                "mode=server",
                "server.auth.allowUnauthenticated=true",
                "server.ingress.enabled=true",
                "server.ingress.hosts[0].host=codec.example.com",
                "server.ingress.hosts[0].paths[0].path=/",
                "server.ingress.hosts[0].paths[0].pathType=Prefix",
                "server.autoscaling.enabled=true",
                "networkPolicy.enabled=true",
                "metrics.serviceMonitor.enabled=true",
                "metrics.prometheusRule.enabled=true",
            ]),
        },
    ];
    let mut examples: Vec<PathBuf> = fs::read_dir(chart_dir().join("examples"))
        .expect("read helm/kmscodec/examples")
        .map(|entry| entry.expect("examples entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(
        examples.len() >= 3,
        "expected at least 3 examples: {examples:?}"
    );
    for path in examples {
        cases.push(Case {
            name: format!("examples/{}", path.file_name().unwrap().to_string_lossy()),
            args: vec!["-f".into(), path.to_string_lossy().into_owned()],
        });
    }
    cases
}

/// Runs helm with `args` and `extra` in a fresh, hermetic home, removed afterwards.
fn run_helm(args: &[&str], extra: &[String]) -> common::Output {
    let home = common::temp_dir("helm-home");
    let mut cmd = common::hermetic_command(common::tool("helm"), home.path());
    // helm keeps caches and config under these; keep them out of the developer's home.
    for var in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        cmd.env(var, home.path().join(var));
    }
    cmd.args(args).args(extra);
    common::run(cmd, TOOL_TIMEOUT)
}

/// `helm template` of a case: the YAML stream.
fn template(extra: &[String]) -> common::Output {
    let chart = chart_dir();
    let args = [
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    run_helm(&args, extra)
}

/// The case's rendered documents as JSON, rendered once per test binary.
struct Rendered {
    name: String,
    documents: Vec<Value>,
}

fn rendered() -> &'static [Rendered] {
    static RENDERED: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        cases()
            .into_iter()
            .map(|case| {
                let out = template(&case.args);
                assert!(
                    out.status.success(),
                    "helm template ({}) failed\n{}",
                    case.name,
                    out.both()
                );
                Rendered {
                    documents: yaml_documents(&out.stdout),
                    name: case.name,
                }
            })
            .collect()
    })
}

fn rendered_case(name: &str) -> &'static Rendered {
    rendered()
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rendered case {name}"))
}

/// The documents of a YAML stream, as JSON (PyYAML from the tools' Python, which
/// kubernetes-validate also uses).
fn yaml_documents(yaml: &str) -> Vec<Value> {
    let dir = common::temp_dir("helm-yaml");
    let path = dir.path().join("in.yaml");
    fs::write(&path, yaml).unwrap();
    let mut cmd = Command::new(common::tool("python"));
    cmd.args([
        "-c",
        "import json, sys, yaml\n\
         docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
         json.dump(docs, sys.stdout)",
    ])
    .arg(&path);
    let out = common::run_ok(cmd, TOOL_TIMEOUT);
    match serde_json::from_str(&out).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn is_prometheus_operator(document: &Value) -> bool {
    document["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
}

/// The kmscodec TOML the chart renders into its ConfigMap.
fn config_toml(documents: &[Value]) -> String {
    let maps = of_kind(documents, "ConfigMap");
    assert_eq!(maps.len(), 1, "one ConfigMap");
    maps[0]["data"]["kmscodec.toml"]
        .as_str()
        .expect("ConfigMap data kmscodec.toml")
        .to_string()
}

#[test]
fn chart_lints_clean_for_default_values_and_every_example() {
    let chart = chart_dir();
    for case in cases() {
        let out = run_helm(&["lint", "--strict", chart.to_str().unwrap()], &case.args);
        assert!(
            out.status.success() && out.stdout.contains("0 chart(s) failed"),
            "helm lint --strict ({}) failed\n{}",
            case.name,
            out.both()
        );
        assert!(
            !out.stdout.contains("[WARNING]") && !out.stdout.contains("[ERROR]"),
            "helm lint --strict ({}) reported problems\n{}",
            case.name,
            out.both()
        );
    }
}

#[test]
fn rendered_manifests_pass_kubernetes_validate_strict_for_1_29_and_1_33() {
    let dir = common::temp_dir("helm-validate");
    let mut files = Vec::new();
    let mut core_documents = 0;
    for (i, r) in rendered().iter().enumerate() {
        // kubernetes-validate has no schema for CRDs: those are checked in the next test.
        let core: Vec<&Value> = r
            .documents
            .iter()
            .filter(|d| !is_prometheus_operator(d))
            .collect();
        core_documents += core.len();
        let path = dir.path().join(format!("case-{i}.json"));
        // One JSON document per file is valid input (YAML 1.2 is a superset of JSON); a list
        // is not, so write a YAML stream of JSON documents.
        let stream: String = core
            .iter()
            .map(|d| format!("---\n{d}\n"))
            .collect::<String>();
        fs::write(&path, stream).unwrap();
        files.push(path);
    }
    for version in ["1.29.0", "1.33.0"] {
        let mut cmd = Command::new(common::tool("kubernetes-validate"));
        cmd.args(["--strict", "-k", version]).args(&files);
        let out = common::run(cmd, TOOL_TIMEOUT);
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {version} failed\n{}",
            out.both()
        );
        let all = out.both();
        let passed = all.matches(" passed for resource ").count();
        assert_eq!(
            passed, core_documents,
            "every core resource must be validated against {version}\n{all}"
        );
        assert!(!all.contains("Couldn't find schema"), "{all}");
    }
}

#[test]
fn prometheus_operator_resources_match_their_crd_schemas() {
    let module =
        common::tools_dir().join("node/node_modules/@kubernetes-models/prometheus-operator");
    assert!(
        module.join("package.json").exists(),
        "{} is missing: run ./scripts/tools.sh (npm package pinned in scripts/tools/package.json)",
        module.display()
    );
    let mut resources = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for r in rendered() {
        for d in r.documents.iter().filter(|d| is_prometheus_operator(d)) {
            kinds.insert(d["kind"].as_str().unwrap().to_string());
            resources.push(d.clone());
        }
    }
    let expected: std::collections::BTreeSet<String> =
        ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(kinds, expected, "the cases render each monitoring resource");
    let dir = common::temp_dir("helm-crds");
    let path = dir.path().join("resources.json");
    fs::write(&path, Value::Array(resources.clone()).to_string()).unwrap();
    let mut cmd = Command::new(common::tool("node"));
    cmd.arg(common::repo_root().join("tests/helm/validate_crds.mjs"))
        .arg(&module)
        .arg(&path);
    let out = common::run(cmd, TOOL_TIMEOUT);
    assert!(
        out.status.success(),
        "CRD schema validation failed\n{}",
        out.both()
    );
    assert_eq!(
        out.stdout.matches("ok ").count(),
        resources.len(),
        "{}",
        out.both()
    );

    // The validator is not a rubber stamp: a malformed rule is refused.
    let mut broken = resources
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .unwrap()
        .clone();
    broken["spec"]["groups"][0]["rules"][0]["for"] = Value::from("five minutes");
    fs::write(&path, Value::Array(vec![broken]).to_string()).unwrap();
    let mut cmd = Command::new(common::tool("node"));
    cmd.arg(common::repo_root().join("tests/helm/validate_crds.mjs"))
        .arg(&module)
        .arg(&path);
    let out = common::run(cmd, TOOL_TIMEOUT);
    assert!(
        !out.status.success() && out.stdout.contains("FAIL"),
        "{}",
        out.both()
    );
}

#[test]
fn prometheus_rule_is_the_tested_alert_rules_and_passes_promtool() {
    // One source of truth: the chart cannot read outside its folder, so it carries a copy that
    // must stay byte-identical to deploy/alerts/kmscodec.rules.yaml.
    let source = fs::read(common::repo_root().join("deploy/alerts/kmscodec.rules.yaml")).unwrap();
    let copy = fs::read(chart_dir().join("files/kmscodec.rules.yaml")).unwrap();
    assert!(
        source == copy,
        "helm/kmscodec/files/kmscodec.rules.yaml differs from deploy/alerts/kmscodec.rules.yaml: \
         cp deploy/alerts/kmscodec.rules.yaml helm/kmscodec/files/"
    );

    // The rules as rendered into the PrometheusRule, through promtool and the existing tests.
    for r in rendered() {
        for rule in of_kind(&r.documents, "PrometheusRule") {
            let dir = common::temp_dir("helm-promtool");
            // A plain rules file: the PrometheusRule's spec (JSON is valid YAML).
            fs::write(
                dir.path().join("kmscodec.rules.yaml"),
                rule["spec"].to_string(),
            )
            .unwrap();
            fs::copy(
                common::repo_root().join("deploy/alerts/kmscodec.rules.test.yaml"),
                dir.path().join("kmscodec.rules.test.yaml"),
            )
            .unwrap();
            let mut check = Command::new(common::tool("promtool"));
            check
                .args(["check", "rules", "kmscodec.rules.yaml"])
                .current_dir(dir.path());
            let out = common::run(check, TOOL_TIMEOUT);
            assert!(
                out.status.success() && out.stdout.contains("SUCCESS: 13 rules found"),
                "promtool check rules ({})\n{}",
                r.name,
                out.both()
            );
            let mut test = Command::new(common::tool("promtool"));
            test.args(["test", "rules", "kmscodec.rules.test.yaml"])
                .current_dir(dir.path());
            let out = common::run(test, TOOL_TIMEOUT);
            assert!(
                out.status.success(),
                "promtool test rules ({})\n{}",
                r.name,
                out.both()
            );
        }
    }
}

#[test]
fn bad_values_fail_to_render_with_clear_messages() {
    let dir = common::temp_dir("helm-bad");
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "wrong type",
            "server:\n  replicas: \"two\"\n",
            &["/server/replicas", "got string, want integer"],
        ),
        (
            "unknown provider kind",
            "providers:\n  main:\n    kind: vualt\n    address: https://vault:8200\nnamespaces:\n  \"*\": {provider: main, key: k}\n",
            &["/providers/main/kind", "'local', 'vault', 'aws'"],
        ),
        (
            "unknown key",
            "sidecar:\n  nativ: true\n",
            &["/sidecar", "additional properties 'nativ' not allowed"],
        ),
        (
            "vault provider without auth",
            "providers:\n  v:\n    kind: vault\n    address: https://vault:8200\nnamespaces:\n  \"*\": {provider: v, key: k}\n",
            &["/providers/v", "missing property 'auth'"],
        ),
        (
            "server mode without authentication",
            "mode: server\n",
            &[
                "server mode needs authentication",
                "server.auth.allowUnauthenticated=true",
            ],
        ),
        (
            "authentication without authorization rules",
            "mode: server\nserver:\n  auth:\n    tokens:\n      existingSecret: s\n      principals: [oncall]\n",
            &["server.auth.rules is empty"],
        ),
        (
            "a rule with an unknown role",
            "server:\n  auth:\n    rules:\n      - {principals: [\"token:oncall\"], namespaces: [\"*\"], roles: [decode]}\n",
            &["/server/auth/rules/0/roles/0", "'read', 'write'"],
        ),
        (
            "an unknown audit scope",
            "config:\n  audit:\n    worker: everything\n",
            &[
                "/config/audit/worker",
                "'all', 'decodes', 'refusals', 'off'",
            ],
        ),
        (
            "JWT without audiences",
            "mode: server\nserver:\n  auth:\n    jwt:\n      issuer: https://login.example.com/\n",
            &["server.auth.jwt.audiences"],
        ),
    ];
    for (what, values, expected) in cases {
        let path = dir.path().join("values.yaml");
        fs::write(&path, values).unwrap();
        let out = template(&["-f".into(), path.to_string_lossy().into_owned()]);
        assert!(
            !out.status.success(),
            "{what}: rendered anyway\n{}",
            out.both()
        );
        for needle in *expected {
            assert!(
                out.stderr.contains(needle),
                "{what}: error should mention {needle:?}\n{}",
                out.both()
            );
        }
    }
}

#[test]
fn every_rendered_configuration_passes_kmscodec_config_check() {
    let dir = common::temp_dir("helm-config-check");
    for (i, r) in rendered().iter().enumerate() {
        let toml = config_toml(&r.documents);
        let path = dir.path().join(format!("config-{i}.toml"));
        fs::write(&path, &toml).unwrap();
        let out = common::run(
            common::kmscodec_cmd(
                &dir.path().join("home"),
                &["config", "check", path.to_str().unwrap()],
            ),
            TOOL_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "kmscodec config check refused the configuration of {}\n{toml}\n{}",
            r.name,
            out.both()
        );
    }
}

/// The kmscodec container of the example worker: in initContainers (native) or containers.
fn sidecar_container(documents: &[Value], native: bool) -> (&Value, &Value) {
    let worker = of_kind(documents, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == format!("{RELEASE}-example-worker"))
        .expect("the example worker Deployment");
    let pod = &worker["spec"]["template"]["spec"];
    let list = if native {
        "initContainers"
    } else {
        "containers"
    };
    let container = pod[list]
        .as_array()
        .unwrap_or_else(|| panic!("pod has {list}"))
        .iter()
        .find(|c| c["name"] == "kmscodec")
        .unwrap_or_else(|| panic!("kmscodec in {list}"));
    (pod, container)
}

fn port_number(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("container port {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

#[test]
fn sidecar_runs_non_root_read_only_and_its_probes_hit_real_endpoints() {
    let started = Instant::now();
    let native = &rendered_case("examples/local-file.yaml").documents;
    let fallback = &rendered_case("sidecar-fallback").documents;

    for (documents, is_native) in [(native, true), (fallback, false)] {
        let (pod, c) = sidecar_container(documents, is_native);
        if is_native {
            assert_eq!(c["restartPolicy"], "Always", "a native sidecar");
            assert!(
                pod["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["name"] != "kmscodec"),
                "not also a plain container"
            );
        } else {
            assert!(c.get("restartPolicy").is_none(), "plain container: {c}");
            assert!(
                pod.get("initContainers").is_none(),
                "no init container in the fallback"
            );
        }
        let security = &c["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{security}");
        assert!(
            security["runAsUser"].as_u64().is_some_and(|uid| uid != 0),
            "{security}"
        );
        assert_eq!(security["readOnlyRootFilesystem"], true, "{security}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{security}");
        assert_eq!(
            security["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{security}"
        );
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{security}"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            c["args"],
            serde_json::json!(["serve", "--config", "/etc/kmscodec/kmscodec.toml"])
        );
        let config_mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/etc/kmscodec/kmscodec.toml")
            .expect("config file mounted");
        assert_eq!(config_mount["subPath"], "kmscodec.toml");
        // Every writable path is a volume (the root filesystem is read-only).
        for path in ["/tmp", "/var/lib/kmscodec", "/var/run/kmscodec"] {
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["mountPath"] == path),
                "{path} is mounted"
            );
        }
    }

    // The probes: named port `admin`, which the configuration's admin_listen binds.
    let (pod, c) = sidecar_container(native, true);
    let toml_text = config_toml(native);
    let config: toml::Table = toml_text.parse().expect("rendered TOML parses");
    let admin_port = port_number(c, "admin");
    let admin_listen = config["server"]["admin_listen"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        admin_listen,
        format!("0.0.0.0:{admin_port}"),
        "probes reach the pod IP"
    );
    let mut probe_paths = Vec::new();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["port"], "admin", "{probe}: {get}");
        probe_paths.push((probe, get["path"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"], "/healthz",
        "liveness never asks the KMS"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");

    // The worker reaches the codec at the addresses the configuration serves.
    let worker = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "worker")
        .unwrap();
    let env = |name: &str| -> String {
        worker["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("worker env {name}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let socket = config["server"]["grpc_unix_socket"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(env("KMSCODEC_GRPC_ENDPOINT"), format!("unix://{socket}"));
    assert_eq!(
        env("KMSCODEC_ENDPOINT"),
        format!("http://{}", config["server"]["listen"].as_str().unwrap())
    );
    assert!(worker["volumeMounts"].as_array().unwrap().iter().any(|m| {
        m["name"] == "kmscodec-socket"
            && Path::new(&socket).starts_with(m["mountPath"].as_str().unwrap())
    }));

    // Start the real binary on the rendered configuration and request the probe paths on the
    // probe port: for the native case as rendered, and for the fallback case, which also sets
    // an admin API token (probes and /metrics must not need it).
    serve_rendered_config_and_probe(config, &probe_paths);
    let (_, fallback_container) = sidecar_container(fallback, false);
    let fallback_config: toml::Table = config_toml(fallback).parse().unwrap();
    assert!(
        fallback_config.contains_key("admin"),
        "the fallback case sets an admin token"
    );
    let fallback_paths: Vec<(&str, String)> = ["startupProbe", "livenessProbe", "readinessProbe"]
        .into_iter()
        .map(|probe| {
            let path = fallback_container[probe]["httpGet"]["path"]
                .as_str()
                .unwrap();
            (probe, path.to_string())
        })
        .collect();
    serve_rendered_config_and_probe(fallback_config, &fallback_paths);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// Starts `kmscodec serve` on a rendered configuration, its listeners moved to free loopback
/// ports, its socket and local keyrings into a temp dir (and an admin token file, if the
/// configuration names one), then requests each probe path on the admin (probe) port.
fn serve_rendered_config_and_probe(mut config: toml::Table, probe_paths: &[(&str, String)]) {
    let dir = common::temp_dir("helm-sidecar");
    let (listen_port, probe_port) = (common::free_port(), common::free_port());
    let server = config["server"].as_table_mut().unwrap();
    server.insert("listen".into(), format!("127.0.0.1:{listen_port}").into());
    server.insert(
        "admin_listen".into(),
        format!("127.0.0.1:{probe_port}").into(),
    );
    let socket_path = dir.path().join("run/grpc.sock");
    fs::create_dir_all(socket_path.parent().unwrap()).unwrap();
    server.insert(
        "grpc_unix_socket".into(),
        socket_path.to_str().unwrap().into(),
    );
    for (_, provider) in config["providers"].as_table_mut().unwrap().iter_mut() {
        let provider = provider.as_table_mut().unwrap();
        if provider["kind"].as_str() == Some("local") {
            let rendered_path = provider["path"].as_str().unwrap().to_string();
            let local = dir.path().join(rendered_path.trim_start_matches('/'));
            provider.insert("path".into(), local.to_str().unwrap().into());
        }
    }
    let admin_token = "helm-test-admin-token";
    let with_token = config
        .get("admin")
        .is_some_and(|admin| admin.get("token_file").is_some());
    // Sidecar mode without a token: the admin API on its own loopback listener.
    let api_port = config
        .get("admin")
        .and_then(|admin| admin.get("listen"))
        .map(|listen| {
            assert!(
                listen.as_str().unwrap().starts_with("127.0.0.1:"),
                "{listen}"
            );
            common::free_port()
        });
    if let Some(port) = api_port {
        let admin = config["admin"].as_table_mut().unwrap();
        admin.insert("listen".into(), format!("127.0.0.1:{port}").into());
    }
    assert!(
        with_token || api_port.is_some(),
        "without a token the admin API must be on loopback"
    );
    if with_token {
        let token_file = dir.path().join("admin-token");
        fs::write(&token_file, admin_token).unwrap();
        fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let admin = config["admin"].as_table_mut().unwrap();
        admin.insert("token_file".into(), token_file.to_str().unwrap().into());
    }
    let config_path = dir.path().join("kmscodec.toml");
    fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let cmd = common::kmscodec_cmd(
        &dir.path().join("home"),
        &["serve", "--config", config_path.to_str().unwrap()],
    );
    let mut codec = common::ChildGuard::spawn("kmscodec", cmd, dir.path());
    let admin = format!("http://127.0.0.1:{probe_port}");
    codec.wait_ready(
        "kmscodec /readyz on the probe port",
        common::READY_TIMEOUT,
        || common::http_ok(&format!("{admin}/readyz")),
    );
    for (probe, path) in probe_paths {
        assert_eq!(
            common::http_status(&format!("{admin}{path}")),
            Some(200),
            "{probe} {path} on the probe port\n{}",
            codec.log_tail(20)
        );
    }
    // Prometheus scrapes without credentials.
    assert_eq!(common::http_status(&format!("{admin}/metrics")), Some(200));
    if with_token {
        let namespaces = format!("{admin}/admin/v1/namespaces");
        assert_eq!(
            common::http_status(&namespaces),
            Some(401),
            "admin API needs the token"
        );
        let bearer = format!("Bearer {admin_token}");
        let answer =
            common::http_request("GET", &namespaces, &[("Authorization", &bearer)], b"").unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    if let Some(port) = api_port {
        // The probe port (the pod IP) carries no admin route; loopback does.
        assert_eq!(
            common::http_status(&format!("{admin}/admin/v1/namespaces")),
            Some(404)
        );
        assert_eq!(
            common::http_status(&format!("http://127.0.0.1:{port}/admin/v1/namespaces")),
            Some(200)
        );
    }
    assert!(common::port_open(listen_port), "the codec listener is up");
    assert!(socket_path.exists(), "the gRPC Unix socket is served");
    assert_eq!(
        common::http_status(&format!("{admin}/no-such-probe")),
        Some(404)
    );
    assert!(
        codec.terminate(Duration::from_secs(25)).success(),
        "{}",
        codec.log_tail(20)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn sidecar_templates_work_from_a_parent_chart() {
    // tests/helm/parent-chart is the worker chart of the README, with this chart as a
    // dependency in charts/ (as `helm dependency build` would put it).
    let dir = common::temp_dir("helm-parent");
    let parent = dir.path().join("workers");
    copy_dir(
        &common::repo_root().join("tests/helm/parent-chart"),
        &parent,
    );
    copy_dir(&chart_dir(), &parent.join("charts/kmscodec"));
    let out = run_helm(&["lint", "--strict", parent.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "helm lint --strict (parent)\n{}",
        out.both()
    );
    let out = run_helm(&["template", "w", parent.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "helm template (parent)\n{}",
        out.both()
    );
    let manifest = dir.path().join("parent.yaml");
    fs::write(&manifest, &out.stdout).unwrap();
    for version in ["1.29.0", "1.33.0"] {
        let mut cmd = Command::new(common::tool("kubernetes-validate"));
        cmd.args(["--strict", "-k", version]).arg(&manifest);
        let out = common::run(cmd, TOOL_TIMEOUT);
        assert!(
            out.status.success(),
            "kubernetes-validate {version}\n{}",
            out.both()
        );
    }
    let documents = yaml_documents(&out.stdout);
    // The dependency's ConfigMap is the one the sidecar mounts, and the parent's values reach it.
    let config_map = of_kind(&documents, "ConfigMap")[0];
    assert_eq!(config_map["metadata"]["name"], "w-kmscodec");
    assert!(config_toml(&documents).contains("[providers.kms]"));
    let worker = of_kind(&documents, "Deployment")[0];
    let pod = &worker["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["name"], "kmscodec");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    let config_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "kmscodec-config")
        .unwrap();
    assert_eq!(config_volume["configMap"]["name"], "w-kmscodec");
    assert_eq!(pod["serviceAccountName"], "w-kmscodec");
}

/// Renders the chart with extra `--set` pairs and arguments; the output, successful or not.
fn template_with(sets: &[&str], extra: &[&str]) -> common::Output {
    let mut args: Vec<String> = sets
        .iter()
        .flat_map(|p| ["--set".to_string(), p.to_string()])
        .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    template(&args)
}

#[test]
fn native_sidecar_is_never_rendered_for_kubernetes_before_1_29() {
    // The default (native) on 1.27 and 1.28: a render failure that says what to do, for this
    // chart's own resources and for the example worker.
    for version in ["1.27.0", "1.28.9"] {
        for sets in [&[][..], &["exampleWorker.enabled=true"][..]] {
            let out = template_with(sets, &["--kube-version", version]);
            assert!(
                !out.status.success(),
                "rendered a native sidecar for {version}\n{}",
                out.stdout
            );
            for needle in [
                "sidecar.native=true needs Kubernetes 1.29",
                "sidecar.native=false",
            ] {
                assert!(out.stderr.contains(needle), "{}", out.both());
            }
        }
    }
    // The classic sidecar by choice on 1.27: a plain container, no init container.
    let out = template_with(
        &["sidecar.native=false", "exampleWorker.enabled=true"],
        &["--kube-version", "1.27.0"],
    );
    assert!(out.status.success(), "{}", out.both());
    let documents = yaml_documents(&out.stdout);
    let (pod, container) = sidecar_container(&documents, false);
    assert!(container.get("restartPolicy").is_none());
    assert!(
        pod.get("initContainers")
            .is_none_or(|c| c.as_array().unwrap().is_empty())
    );
    // 1.29: native.
    let out = template_with(
        &["exampleWorker.enabled=true"],
        &["--kube-version", "1.29.0"],
    );
    assert!(out.status.success(), "{}", out.both());
    let documents = yaml_documents(&out.stdout);
    let (_, container) = sidecar_container(&documents, true);
    assert_eq!(container["restartPolicy"], "Always");
}

#[test]
fn values_reach_the_container_image_and_labels() {
    let chart: Value = {
        let text = fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
        yaml_documents(&text).remove(0)
    };
    let app_version = chart["appVersion"].as_str().unwrap();
    let chart_label = format!("kmscodec-{}", chart["version"].as_str().unwrap());
    let digest = format!("sha256:{}", "ab".repeat(32));
    let out = template_with(
        &[
            "exampleWorker.enabled=true",
            "log.format=json",
            "log.level=kmscodec=debug",
            "extraArgs[0]=--grpc-listen",
            "extraArgs[1]=127.0.0.1:7233",
            "extraEnv[0].name=AWS_REGION",
            "extraEnv[0].value=eu-west-1",
            &format!("image.digest={digest}"),
            "metrics.grafanaDashboard.enabled=true",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", out.both());
    let documents = yaml_documents(&out.stdout);
    let (_, container) = sidecar_container(&documents, true);
    assert_eq!(
        container["image"],
        format!("ghcr.io/kmscodec/kmscodec:{app_version}@{digest}")
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "serve",
            "--config",
            "/etc/kmscodec/kmscodec.toml",
            "--grpc-listen",
            "127.0.0.1:7233"
        ]
    );
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        env,
        [
            ("KMSCODEC_LOG", "kmscodec=debug"),
            ("KMSCODEC_LOG_FORMAT", "json"),
            ("AWS_REGION", "eu-west-1")
        ]
    );
    // Every resource carries the chart and version labels.
    for document in &documents {
        let labels = &document["metadata"]["labels"];
        assert_eq!(labels["helm.sh/chart"], chart_label.as_str(), "{document}");
        assert_eq!(
            labels["app.kubernetes.io/version"], app_version,
            "{document}"
        );
    }
    // The dashboard ConfigMap, labelled for Grafana's sidecar, holds the tested dashboard.
    let dashboard = of_kind(&documents, "ConfigMap")
        .into_iter()
        .find(|d| d["metadata"]["name"] == format!("{RELEASE}-dashboard"))
        .expect("dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dashboard["data"]["kmscodec.json"].as_str().unwrap();
    let shipped: Value = serde_json::from_str(json).unwrap();
    let source: Value = serde_json::from_str(
        &fs::read_to_string(common::repo_root().join("deploy/grafana/kmscodec.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, source);

    // A tag without a digest; a malformed digest is refused.
    let out = template_with(&["exampleWorker.enabled=true", "image.tag=1.2.3"], &[]);
    let documents = yaml_documents(&out.stdout);
    let (_, container) = sidecar_container(&documents, true);
    assert_eq!(container["image"], "ghcr.io/kmscodec/kmscodec:1.2.3");
    let out = template_with(&["image.digest=sha256:1234"], &[]);
    assert!(
        !out.status.success() && out.stderr.contains("/image/digest"),
        "{}",
        out.both()
    );
}

#[test]
fn memory_limit_is_checked_against_the_codec_limits() {
    // The defaults fit: 64 MiB + 8 x 4 x 4 MiB = 192 MiB <= 256Mi.
    let documents = &rendered_case("default").documents;
    let config: toml::Table = config_toml(documents).parse().unwrap();
    let server = config["server"].as_table().unwrap();
    let body = server["body_limit_bytes"].as_integer().unwrap();
    let concurrent = server["max_concurrent_requests"].as_integer().unwrap();
    assert!(64 * 1024 * 1024 + concurrent * 4 * body <= 256 * 1024 * 1024);
    // What the binary would allow without the chart's limits does not fit, and is refused with
    // the formula and the fix.
    for (sets, need) in [
        (&["resources.limits.memory=128Mi"][..], "= 192 MiB"),
        (&["config.server.body_limit_bytes=64MiB"][..], "= 2112 MiB"),
        (
            &[
                "config.server.max_concurrent_requests=64",
                "resources.limits.memory=1Gi",
            ][..],
            "= 1088 MiB",
        ),
    ] {
        let out = template_with(sets, &[]);
        assert!(!out.status.success(), "{sets:?} rendered\n{}", out.stdout);
        for needle in [
            "64 MiB + max_concurrent_requests",
            need,
            "checkMemoryLimit=false",
        ] {
            assert!(out.stderr.contains(needle), "{sets:?}: {}", out.both());
        }
    }
    // Enough memory, or the check off, renders.
    for sets in [
        &[
            "config.server.body_limit_bytes=64MiB",
            "resources.limits.memory=3Gi",
        ][..],
        &[
            "config.server.body_limit_bytes=64MiB",
            "checkMemoryLimit=false",
        ][..],
    ] {
        let out = template_with(sets, &[]);
        assert!(out.status.success(), "{sets:?}: {}", out.both());
    }
}

#[test]
fn server_mode_spreads_replicas_and_has_a_disruption_budget() {
    let documents = &rendered_case("server-unauthenticated").documents;
    // Without authentication the codec listener answers only its Service's names (Host checks
    // against DNS rebinding): the chart lists them.
    let config: toml::Table = config_toml(documents).parse().unwrap();
    let service = of_kind(documents, "Service")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let hosts: Vec<&str> = config["server"]["allowed_hosts"]
        .as_array()
        .expect("allowed_hosts")
        .iter()
        .map(|host| host.as_str().unwrap())
        .collect();
    assert!(hosts.contains(&service.as_str()), "{hosts:?}");
    assert!(
        hosts
            .iter()
            .any(|host| host.ends_with(".svc.cluster.local")),
        "{hosts:?}"
    );
    let deployment = of_kind(documents, "Deployment")[0];
    let spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .expect("topologySpreadConstraints");
    let keys: Vec<&str> = spread
        .iter()
        .map(|c| c["topologyKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
    for constraint in spread {
        assert_eq!(
            constraint["labelSelector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"]
        );
    }
    let budget = of_kind(documents, "PodDisruptionBudget");
    assert_eq!(budget.len(), 1);
    assert_eq!(
        budget[0]["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // Sidecar mode: no admin route on the pod IP without a token.
    let config: toml::Table = config_toml(&rendered_case("default").documents)
        .parse()
        .unwrap();
    assert_eq!(config["admin"]["listen"].as_str(), Some("127.0.0.1:9465"));
    let config: toml::Table = config_toml(&rendered_case("sidecar-fallback").documents)
        .parse()
        .unwrap();
    assert!(config["admin"].get("listen").is_none());
}
