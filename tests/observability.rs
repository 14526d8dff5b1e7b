//! The metrics exposition as Prometheus and Grafana will read it: a live scrape checked by
//! `promtool`, every metric the dashboard queries present in that scrape, and every panel's
//! query evaluated by a real Prometheus scraping the gateway.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
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

/// A real Prometheus server (Debian package `prometheus`) scraping one target every 200 ms,
/// killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    async fn start(target: std::net::SocketAddr) -> Self {
        use std::io::BufRead;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: pushgate\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.file("data")))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "prometheus is installed (Debian package `prometheus`; scripts/test installs it)",
            );
        let stderr = child.stderr.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stderr).lines();
            let ready = lines
                .by_ref()
                .map_while(Result::ok)
                .any(|line| line.contains("Server is ready to receive web requests"));
            // Keep draining its log so that the pipe never fills.
            std::thread::spawn(move || lines.for_each(drop));
            ready
        });
        let ready = tokio::time::timeout(WAIT, ready)
            .await
            .expect("prometheus is ready in time")
            .unwrap();
        assert!(ready, "prometheus exited before it was ready");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Evaluates `query` now; the `data` object of a successful answer.
    async fn query(&self, query: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let (status, body) = Pusher::connect(self.addr)
            .await
            .request("GET", &path, &[], Bytes::new())
            .await;
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status.as_u16(), 200, "query {query:?} failed: {body}");
        assert_eq!(
            answer["status"], "success",
            "query {query:?} failed: {body}"
        );
        answer["data"].clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The expression as Grafana sends it, its template variables replaced by what they hold
/// when every instance is selected. Panics on a variable this test does not know, so that a
/// new one gets a value here rather than a query that cannot parse.
fn as_grafana_sends_it(expr: &str) -> String {
    let sent = expr
        .replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$instance", ".*");
    assert!(
        !sent.contains('$'),
        "unknown template variable in dashboard query {expr:?}"
    );
    sent
}

/// The labels of a `by (...)` clause at the outermost aggregation, if any.
fn grouping_labels(expr: &str) -> Vec<String> {
    let Some(start) = expr.find(" by (") else {
        return Vec::new();
    };
    let rest = &expr[start + " by (".len()..];
    let end = rest.find(')').unwrap();
    rest[..end]
        .split(',')
        .map(|label| label.trim().to_string())
        .filter(|label| label != "le")
        .collect()
}

/// Every panel query evaluates on a real Prometheus that scrapes a live gateway: it parses,
/// it returns series, and each series carries the labels the query groups by (a `by (shard)`
/// over a metric without that label would draw one nameless line).
#[tokio::test]
async fn every_dashboard_query_evaluates_on_a_real_prometheus() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/pushgate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The panels' queries only: the template variables' are Grafana's own language.
    let mut expressions = Vec::new();
    collect_exprs(&dashboard["panels"], &mut expressions);
    assert!(
        expressions.len() >= 10,
        "the dashboard has its panels' queries"
    );

    let (gw, _clients) = busy_gateway().await;
    let prometheus = Prometheus::start(gw.internal).await;
    // rate() needs two samples of a series inside its window; Prometheus says when it has
    // them only through its query API.
    let scraped = tokio::time::timeout(WAIT, async {
        loop {
            let data = prometheus
                .query("count_over_time(pushgate_connections[1m])")
                .await;
            let samples = data["result"][0]["value"][1]
                .as_str()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
            if samples >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    scraped
        .await
        .expect("prometheus scraped the gateway three times within the wait bound");

    let mut problems = Vec::new();
    for expr in &expressions {
        let data = prometheus.query(&as_grafana_sends_it(expr)).await;
        let series = data["result"].as_array().cloned().unwrap_or_default();
        if series.is_empty() {
            problems.push(format!("{expr}: no series"));
            continue;
        }
        for label in grouping_labels(expr) {
            if series.iter().any(|s| s["metric"].get(&label).is_none()) {
                problems.push(format!("{expr}: a series without the label {label:?}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard queries that draw nothing or the wrong lines:\n{}",
        problems.join("\n")
    );
    gw.stop().await;
}
