//! A real Prometheus Alertmanager (Debian `prometheus-alertmanager`) whose webhook receiver
//! points at pushgate: an alert posted to Alertmanager reaches a registered WebSocket client.

mod common;

use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_posted_to_alertmanager_reaches_the_users_browser() {
    let gw = Gateway::start().await;
    let mut alice = gw.client("alice", "DiskFull").await;

    let dir = std::env::temp_dir().join(format!("pushgate-am-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: pushgate\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: pushgate\n    webhook_configs:\n      - url: http://{}/api/v2/alertmanager\n        send_resolved: false\n",
            gw.internal
        ),
    )
    .unwrap();
    let port = free_port();
    let mut alertmanager = tokio::process::Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus-alertmanager is installed (scripts/test installs it)");
    // Wait for its "Listening on" log line, then keep draining the log.
    let mut log = tokio::io::BufReader::new(alertmanager.stderr.take().unwrap()).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("Listening on") {
                return;
            }
        }
        panic!("Alertmanager exited before listening");
    })
    .await
    .expect("Alertmanager listens in time");
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });

    let alert = json!([{
        "labels": {"alertname": "DiskFull", "user": "alice", "instance": "db-3"},
        "annotations": {"summary": "disk 97% full"}
    }]);
    let api = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, reply) = Pusher::connect(api)
        .await
        .request(
            "POST",
            "/api/v2/alerts",
            &[("content-type", "application/json")],
            alert.to_string(),
        )
        .await;
    assert!(status.is_success(), "{status}: {reply}");
    let received: Value = serde_json::from_str(&next_text(&mut alice).await).unwrap();
    assert_eq!(received["labels"]["alertname"], "DiskFull");
    assert_eq!(received["annotations"]["summary"], "disk 97% full");
    assert_eq!(received["status"], "firing");
    alertmanager.kill().await.unwrap();
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
