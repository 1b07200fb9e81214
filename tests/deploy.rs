//! The operations pack under `deploy/`: the alert rules pass promtool's
//! check and their unit tests, every metric the rules and the dashboard
//! name is in a running replicator's /metrics, the dashboard is a dashboard,
//! and the Kubernetes example passes the API's schemas.
//!
//! promtool (Debian's prometheus package) and kubernetes-validate (PyPI)
//! are installed by scripts/install-build-deps.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{http_get as get, sample, TestDb};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Runs a checking tool; its output on failure.
fn tool(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}. scripts/install-build-deps installs it",
                program.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?}:\n{text}",
        program.display()
    );
    text
}

fn promtool() -> PathBuf {
    PathBuf::from("promtool")
}

#[test]
fn alert_rules_pass_promtool_check() {
    let rules = deploy("prometheus/alerts.yml");
    let out = tool(&promtool(), &["check", "rules", rules.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    let config = deploy("prometheus/prometheus.yml");
    tool(&promtool(), &["check", "config", config.to_str().unwrap()]);
}

#[test]
fn every_alert_has_unit_tests_that_pass() {
    let tests = deploy("prometheus/alerts.test.yml");
    tool(&promtool(), &["test", "rules", tests.to_str().unwrap()]);
    // Each alert is tested both ways: firing, and quiet.
    let text = read("prometheus/alerts.test.yml");
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in doc["tests"].as_sequence().unwrap() {
        for check in test["alert_rule_test"].as_sequence().unwrap() {
            let name = check["alertname"].as_str().unwrap().to_string();
            match check["exp_alerts"].as_sequence().unwrap().is_empty() {
                true => quiet.insert(name),
                false => fires.insert(name),
            };
        }
    }
    for alert in alerts() {
        assert!(
            fires.contains(&alert.name),
            "no test where {} fires",
            alert.name
        );
        assert!(
            quiet.contains(&alert.name),
            "no test where {} stays quiet",
            alert.name
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                alert.annotations.contains(&key.to_string()),
                "{} has no {key}",
                alert.name
            );
        }
    }
}

struct Alert {
    name: String,
    expr: String,
    annotations: Vec<String>,
}

fn alerts() -> Vec<Alert> {
    let doc: serde_norway::Value = serde_norway::from_str(&read("prometheus/alerts.yml")).unwrap();
    let mut alerts = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let annotations = rule["annotations"].as_mapping().unwrap();
            alerts.push(Alert {
                name: rule["alert"].as_str().unwrap().to_string(),
                expr: rule["expr"].as_str().unwrap().to_string(),
                annotations: annotations
                    .keys()
                    .map(|k| k.as_str().unwrap().to_string())
                    .collect(),
            });
        }
    }
    alerts
}

/// Every query of the dashboard, with its panel's title.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((title.clone(), target["expr"].as_str().unwrap().to_string()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push((variable["name"].to_string(), query.to_string()));
        }
    }
    queries
}

/// The replicator's metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("replicator_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn dashboard_is_valid_grafana_json() {
    let text = read("grafana/dashboards/replicator.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "replicator");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id used twice"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: off the grid"
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: `{expr}` ignores the instance picker"
            );
        }
    }
    // What the issue asks the dashboard to show.
    let queries = dashboard_queries(&dashboard);
    for metric in [
        "replicator_lag_seconds",
        "replicator_row_events_total",
        "replicator_groups_total",
        "replicator_redis_commands_total",
        "replicator_redis_errors_total",
        "replicator_reconnects_total",
        "replicator_checkpoint_offset_bytes",
        "replicator_checkpoint_timestamp_seconds",
        "replicator_snapshot_rows",
        "replicator_ready",
    ] {
        assert!(
            queries
                .iter()
                .any(|(_, q)| metric_names(q).iter().any(|m| m == metric)),
            "no panel shows {metric}"
        );
    }
    // The provisioning files point where the compose file mounts them.
    let provider = read("grafana/provisioning/dashboards/replicator.yml");
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    let source = read("grafana/provisioning/datasources/prometheus.yml");
    assert!(source.contains("uid: prometheus") && source.contains("http://prometheus:9090"));
}

#[test]
fn compose_monitoring_profile_mounts_the_pack() {
    let compose = common::compose_file();
    for service in ["prometheus", "grafana"] {
        let s = &compose["services"][service];
        assert_eq!(s["profiles"][0].as_str(), Some("monitoring"), "{service}");
        for volume in s["volumes"].as_sequence().unwrap() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/docker")).join(host);
            assert!(path.exists(), "{service}: {} is missing", path.display());
        }
    }
    // Prometheus scrapes the sidecar where it listens, as the job the rules select.
    let prometheus = read("prometheus/prometheus.yml");
    assert!(prometheus.contains("job_name: replicator"));
    assert!(prometheus.contains("replicator:9187"));
    assert_eq!(
        compose["services"]["replicator"]["environment"]["METRICS_ADDR"].as_str(),
        Some("0.0.0.0:9187")
    );
    for alert in alerts().iter().filter(|a| a.expr.contains("up{")) {
        assert!(alert.expr.contains("job=\"replicator\""), "{}", alert.name);
    }
}

const FIXTURE: &str = "
INSERT INTO users (user_id, username, email, password_hash) VALUES (1, 'ann', 'ann@x', 'h');
INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s1', 1, NOW(), NOW() + INTERVAL 1 DAY);
INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s1', 'k', 'v');
INSERT INTO user_preferences (user_id, theme) VALUES (1, 'dark');
";

/// A renamed or removed metric breaks the dashboard or an alert silently;
/// here it breaks the build.
#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_rules_is_exported() {
    let db = TestDb::new("deploy_metrics").await;
    db.sql(FIXTURE).await;
    let (mut child, port) = db.sidecar_with_metrics(&[], std::process::Stdio::null());
    db.wait_for("/readyz to answer 200", Duration::from_secs(30), || async {
        matches!(get(port, "/readyz").await, Some((200, _)))
    })
    .await;
    // Series that appear once something happened: a change of each kind,
    // and the source position read.
    db.sql("UPDATE users SET username = 'bea' WHERE user_id = 1; DELETE FROM session_data WHERE attribute_key = 'k'")
        .await;
    let applied = "replicator_row_events_total{table=\"session_data\",kind=\"delete\"}";
    db.wait_for(
        "the changes in /metrics",
        Duration::from_secs(30),
        || async {
            let (_, m) = get(port, "/metrics").await.unwrap();
            sample(&m, applied) == Some(1.0)
                && sample(&m, "replicator_source_offset_bytes").is_some()
        },
    )
    .await;
    let (_, metrics) = get(port, "/metrics").await.unwrap();
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/replicator.json")).unwrap();
    let mut used: Vec<(String, String)> = dashboard_queries(&dashboard)
        .into_iter()
        .flat_map(|(panel, q)| {
            metric_names(&q)
                .into_iter()
                .map(move |m| (format!("panel {panel}"), m))
        })
        .collect();
    for alert in alerts() {
        used.extend(
            metric_names(&alert.expr)
                .into_iter()
                .map(|m| (format!("alert {}", alert.name), m)),
        );
    }
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<String> = used
        .iter()
        .filter(|(_, m)| !exported.contains(m.as_str()))
        .map(|(user, m)| format!("{m} (used by {user})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not in /metrics: {missing:?}\nexported: {exported:?}"
    );
    // Every exported metric is described.
    for name in &exported {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

fn kubernetes_validate() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("replicator/tools/bin/kubernetes-validate")
}

#[test]
fn kubernetes_example_passes_the_api_schemas() {
    let files = ["deployment.yaml", "pvc.yaml", "secret.yaml"];
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| deploy(&format!("kubernetes/{f}")))
        .collect();
    let mut args = vec!["--strict"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let out = tool(&kubernetes_validate(), &args);
    assert_eq!(
        out.matches(" passed for resource ").count(),
        files.len(),
        "{out}"
    );
    // Kustomize has no schema there: its resources are these files.
    let kustomization: serde_norway::Value =
        serde_norway::from_str(&read("kubernetes/kustomization.yaml")).unwrap();
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(listed, files.into_iter().collect());
}

#[test]
fn kubernetes_deployment_keeps_one_replicator_with_its_state_and_probes() {
    let d: serde_norway::Value =
        serde_norway::from_str(&read("kubernetes/deployment.yaml")).unwrap();
    // Two replicators on one prefix must never run, not even during an update.
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(d["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    let pod = &d["spec"]["template"];
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    let c = &pod["spec"]["containers"][0];
    let env = |name: &str| {
        c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    let metrics_port = env("METRICS_ADDR")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(metrics_port.as_str())
    );
    assert_eq!(
        c["ports"][0]["containerPort"].as_u64().unwrap().to_string(),
        metrics_port
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    // STATE_DIR on the claim.
    let state_dir = env("STATE_DIR").unwrap();
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("state"))
        .unwrap();
    assert!(state_dir.starts_with(mount["mountPath"].as_str().unwrap()));
    let pvc: serde_norway::Value = serde_norway::from_str(&read("kubernetes/pvc.yaml")).unwrap();
    let volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("state"))
        .unwrap();
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    // The URLs come from the Secret, which holds both.
    let secret: serde_norway::Value =
        serde_norway::from_str(&read("kubernetes/secret.yaml")).unwrap();
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"],
        secret["metadata"]["name"]
    );
    for key in ["MYSQL_URL", "REDIS_URL"] {
        assert!(secret["stringData"][key].as_str().is_some(), "{key}");
    }
    // Memory requested above the measured peak (190 MiB).
    let memory = c["resources"]["requests"]["memory"].as_str().unwrap();
    let mib: u64 = memory.strip_suffix("Mi").unwrap().parse().unwrap();
    assert!(mib >= 190, "{memory}");
}
