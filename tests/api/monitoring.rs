//! deploy/grafana/customer-api.json and deploy/prometheus/alerts.yaml: well formed, with the
//! panels and alerts the operations guide promises, and naming only metrics the service
//! exports (`tests/api/metrics.rs` checks every name against a live scrape). PromQL itself
//! is parsed by promtool in `make check-monitoring`.

use std::{collections::BTreeSet, path::Path, process::Command};

use serde_json::Value;

use crate::helpers::tool;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/grafana/customer-api.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The alert rules, read by PyYAML from the tools virtualenv (`make tools`).
fn alert_rules() -> Value {
    let output = Command::new(tool("target/tools/venv/bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(Path::new(ROOT).join("deploy/prometheus/alerts.yaml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every query of the dashboard.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// Every alert rule.
fn alerts(rules: &Value) -> Vec<Value> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .collect()
}

/// The metric families named in `expr`: this service's (`grpc_server_`, `customer_api_`,
/// `process_`), by family name (the `_bucket`, `_count`, `_sum` and `_total` of the samples
/// taken off).
fn families(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            ["grpc_server_", "customer_api_", "process_"]
                .iter()
                .any(|prefix| word.starts_with(prefix))
        })
        .map(|word| {
            ["_bucket", "_count", "_sum", "_total"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect()
}

/// Every metric family the dashboard and the alerts name.
pub(crate) fn monitored_families() -> BTreeSet<String> {
    let mut queries = dashboard_queries(&dashboard());
    queries.extend(
        alerts(&alert_rules())
            .iter()
            .map(|rule| rule["expr"].as_str().unwrap().to_owned()),
    );
    queries.iter().flat_map(|expr| families(expr)).collect()
}

fn balanced(expr: &str) -> bool {
    let mut open = Vec::new();
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '(' | '{' | '[' => open.push(c),
            ')' | '}' | ']' => {
                let expected = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if open.pop() != Some(expected) {
                    return false;
                }
            }
            _ => {}
        }
    }
    open.is_empty() && !quoted
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_red_pool_and_outbox_panels() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "customer-api");
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels {
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_i64().unwrap(), grid["w"].as_i64().unwrap());
        assert!(x >= 0 && w > 0 && x + w <= 24, "{panel}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert!(balanced(expr), "unbalanced: {expr}");
            // Every query follows the job and instance the viewer picked.
            assert!(
                expr.contains(r#"job="$job",instance=~"$instance""#),
                "{expr}"
            );
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    let monitored: BTreeSet<String> = dashboard_queries(&dashboard)
        .iter()
        .flat_map(|expr| families(expr))
        .collect();
    for family in [
        "grpc_server_handled",
        "grpc_server_handling_seconds",
        "customer_api_db_pool_connections",
        "customer_api_db_pool_wait_seconds",
        "customer_api_events_outbox_lag_seconds",
        "customer_api_events_publish_seconds",
        "customer_api_registry_requests",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(monitored.contains(family), "no panel shows {family}");
    }
}

#[test]
fn the_alert_rules_cover_errors_latency_the_outbox_and_readiness() {
    let rules = alerts(&alert_rules());
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    let unique: BTreeSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        assert!(balanced(expr), "unbalanced: {expr}");
        assert!(expr.contains(r#"job="customer-api""#), "{expr}");
        assert!(rule["for"].as_str().is_some(), "{rule}");
        let severity = rule["labels"]["severity"].as_str().unwrap();
        assert!(["page", "ticket"].contains(&severity), "{rule}");
        for annotation in ["summary", "description"] {
            assert!(
                !rule["annotations"][annotation].as_str().unwrap().is_empty(),
                "{rule}"
            );
        }
    }
    for (alert, family) in [
        ("CustomerApiHighErrorRate", "grpc_server_handled"),
        ("CustomerApiHighLatency", "grpc_server_handling_seconds"),
        (
            "CustomerApiOutboxLag",
            "customer_api_events_outbox_lag_seconds",
        ),
        ("CustomerApiNotReady", "customer_api_ready"),
    ] {
        let rule = rules
            .iter()
            .find(|r| r["alert"] == alert)
            .unwrap_or_else(|| panic!("no {alert}"));
        assert!(
            families(rule["expr"].as_str().unwrap()).contains(family),
            "{alert}: {rule}"
        );
    }
}
