//! The metrics exposition as Prometheus and Grafana will read it: a live scrape checked by
//! `promtool`, and every metric the dashboard queries present in that scrape.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// A gateway that has seen a little of everything, so that every series has a sample.
async fn busy_gateway() -> (Gateway, Vec<Ws>) {
    let gw = Gateway::start().await;
    let mut client = gw.client("obs", "alarm").await;
    let mut pusher = gw.pusher().await;
    assert_eq!(pusher.push_ok("obs", "alarm", "m").await, 1);
    next_text(&mut client).await;
    let (status, _) = pusher.request("POST", "/push", &[], "not json").await;
    assert_eq!(status.as_u16(), 400);
    (gw, vec![client])
}

#[tokio::test]
async fn promtool_accepts_a_live_scrape() {
    let (gw, _clients) = busy_gateway().await;
    let exposition = gw.metrics().await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package `prometheus`; scripts/test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    gw.stop().await;
}

/// Every `pushgate_…` name in the dashboard's PromQL expressions.
fn dashboard_metric_names() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/pushgate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut expressions = Vec::new();
    collect_exprs(&dashboard, &mut expressions);
    assert!(
        expressions.len() >= 10,
        "the dashboard has its panels' queries"
    );
    let mut names = BTreeSet::new();
    for expr in expressions {
        let mut rest = expr.as_str();
        while let Some(start) = rest.find("pushgate_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_exists_in_a_live_scrape() {
    let names = dashboard_metric_names();
    assert!(!names.is_empty());
    let (gw, _clients) = busy_gateway().await;
    let exposition = gw.metrics().await;
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<_> = names
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics the gateway does not export: {missing:?}"
    );
    gw.stop().await;
}
