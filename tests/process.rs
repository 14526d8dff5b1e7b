//! What only a real process shows: running out of file descriptors or threads, and SIGTERM
//! drain.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Sends `request_line` as an HTTP/1.1 request on a new connection and returns the status
/// code of the answer.
async fn raw_status(addr: std::net::SocketAddr, request_line: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer within the wait bound")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_refuses_cleanly_and_recovers() {
    // The pusher opened before the descriptors run out stays open however slow the run: the
    // internal listener keeps idle keep-alive connections.
    let mut gw = GatewayProcess::start(&["--max-connections", "1000"], Some(64)).await;
    let mut pusher = gw.pusher().await;
    let mut kept = gw.client("keeper", "alarm").await;
    let mut clients = Vec::new();
    let mut refused = None;
    for attempt in 0..200 {
        match gw.connect().await {
            Ok(ws) => clients.push(ws),
            Err(WsError::Http(response)) => {
                refused = Some(response.status().as_u16());
                break;
            }
            Err(other) => panic!("attempt {attempt}: expected a 503, got {other}"),
        }
    }
    assert_eq!(
        refused,
        Some(503),
        "connections are refused with 503 at the limit"
    );
    // Alive but not ready: a liveness probe still gets 200 (a restart would drop every
    // connection it serves), readiness and everything else 503.
    for (request, status) in [
        ("GET /healthz", "200"),
        ("HEAD /healthz", "200"),
        ("GET /readyz", "503"),
        ("GET /ws", "503"),
    ] {
        // Several times: a probe must never be the one answered 503 (the process would be
        // restarted for it).
        for _ in 0..10 {
            assert_eq!(raw_status(gw.addr, request).await, status, "{request}");
        }
    }
    // The gateway still serves its existing clients.
    assert_eq!(pusher.push_ok("keeper", "alarm", "still served").await, 1);
    assert_eq!(next_text(&mut kept).await, "still served");
    // Free some descriptors: new connections are accepted again, but readiness stays 503
    // for a while (`FD_NOT_READY`, 5 s) after the last refusal, then returns.
    for mut ws in clients.drain(..10) {
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    }
    assert_eq!(raw_status(gw.addr, "GET /readyz").await, "503");
    let deadline = tokio::time::Instant::now() + WAIT;
    while raw_status(gw.addr, "GET /readyz").await != "200" {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // polling interval
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut again = loop {
        if let Ok(ws) = gw.connect().await {
            break ws;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never accepted again"
        );
        tokio::task::yield_now().await;
    };
    register(&mut again, "keeper", "alarm").await;
    // Descriptors are free again: new pusher connections work too.
    let mut pusher = gw.pusher().await;
    assert_eq!(pusher.push_ok("keeper", "alarm", "recovered").await, 2);
    assert_eq!(next_text(&mut again).await, "recovered");
    let (_, metrics) = pusher.request("GET", "/metrics", &[], "").await;
    assert!(
        metric(
            &metrics,
            r#"pushgate_connections_refused_total{reason="fd_exhausted"}"#
        ) >= Some(1.0)
    );
    assert!(gw.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_client_with_1001_and_loses_no_answered_push() {
    sigterm_drains_every_client(&[], None).await;
}

/// The same on one worker thread, where the gateway runs on tokio's single-threaded
/// scheduler, on its main thread, instead of a pool (src/main.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_worker_thread_sigterm_drains_every_client_and_loses_no_answered_push() {
    sigterm_drains_every_client(&["--worker-threads", "1"], Some(1)).await;
}

async fn sigterm_drains_every_client(extra_args: &[&str], threads: Option<usize>) {
    const USERS: usize = 20;
    let mut args = vec!["--drain-window", "300ms", "--shutdown-timeout", "5s"];
    args.extend_from_slice(extra_args);
    let mut gw = GatewayProcess::start(&args, None).await;
    if let Some(threads) = threads {
        let pid = gw.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let running: usize = status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        assert_eq!(running, threads, "threads of the gateway process");
    }
    let mut clients = Vec::new();
    for user in 0..USERS {
        clients.push(gw.client(&format!("d{user}"), "alarm").await);
    }
    // Pushes answered 200, per user.
    let answered: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let pushing = tokio::spawn({
        let answered = answered.clone();
        let internal = gw.internal;
        async move {
            let mut pusher = Pusher::connect(internal).await;
            for i in 0.. {
                let user = format!("d{}", i % USERS);
                let body =
                    serde_json::json!({"userId": user, "event": "alarm", "message": i.to_string()});
                // The connection closes when draining ends; then pushing stops.
                let Some((status, reply)) =
                    pusher.try_request("POST", "/push", body.to_string()).await
                else {
                    return i;
                };
                match status.as_u16() {
                    200 => {
                        assert_eq!(reply, "message sent to 1 clients");
                        *answered.lock().unwrap().entry(user).or_default() += 1;
                    }
                    503 => return i,
                    other => panic!("unexpected status {other}"),
                }
            }
            unreachable!()
        }
    });
    // Let some pushes through before the signal.
    let first = next_text(&mut clients[0]).await;
    assert_eq!(first, "0");
    gw.terminate();
    // Readiness fails at once.
    wait_until_not_ready(gw.internal).await;
    let pushes = tokio::time::timeout(WAIT, pushing).await.unwrap().unwrap();
    assert!(pushes > 0);
    let mut received: HashMap<String, usize> = HashMap::new();
    for (user, mut ws) in clients.into_iter().enumerate() {
        let user = format!("d{user}");
        if user == "d0" {
            *received.entry(user.clone()).or_default() += 1; // the one read above
        }
        loop {
            match next(&mut ws).await {
                Message::Text(_) => *received.entry(user.clone()).or_default() += 1,
                Message::Close(Some(frame)) => {
                    assert_eq!(frame.code, CloseCode::Away, "{user}");
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("{user}: unexpected {other:?}"),
            }
        }
    }
    let answered = answered.lock().unwrap().clone();
    for user in (0..USERS).map(|u| format!("d{u}")) {
        assert_eq!(
            received.get(&user).copied().unwrap_or(0),
            answered.get(&user).copied().unwrap_or(0),
            "{user}: every push answered 200 was delivered before the close"
        );
    }
    let status = gw.wait_exit().await;
    assert!(status.success(), "{status:?}");
}

/// A node started while NATS is unreachable is as isolated as one that lost it: it says so
/// at warn level, once, and keeps serving.
#[tokio::test]
async fn a_node_that_cannot_reach_nats_at_start_warns_once() {
    use tokio::io::AsyncBufReadExt;
    let nobody = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json"])
        .args(["--nats-url", &format!("nats://127.0.0.1:{nobody}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["level"] == "WARN" {
                return entry["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        panic!("the gateway exited");
    })
    .await
    .expect("a warning within the wait bound");
    assert!(
        warning.starts_with("NATS unreachable since start"),
        "{warning}"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
}

/// A worker thread the OS refuses (here: an address space too small for 1,000 thread stacks;
/// in production, a cgroup's `pids.max`) ends the process with 71 and the reason, instead of
/// leaving it hung without listening, which is what tokio's panic inside the runtime's build
/// did.
#[tokio::test]
async fn a_worker_thread_the_os_refuses_exits_71_with_the_reason() {
    let output = tokio::process::Command::new("prlimit")
        .arg("--as=1073741824")
        .arg(env!("CARGO_BIN_EXE_pushgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
        ])
        .args(["--worker-threads", "1000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("the gateway exits rather than hanging")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(71), "{stderr}");
    assert!(
        stderr.contains("starting the tokio runtime: OS can't spawn worker thread"),
        "{stderr}"
    );
    assert!(!stderr.contains("pushgate listening"), "{stderr}");
}

/// Clients that re-open every connection the gateway refuses at the connection cap (a
/// slowloris that keeps the public listener's slots full and hammers it for more) must not
/// spend the descriptors kept for the internal listener: refused connections are answered
/// with at most a bounded number held open at once. Under a 128-descriptor limit (a cap of
/// 58), with 200 such clients, every push on a fresh internal connection is answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hammering_the_connection_cap_leave_pushes_their_descriptors() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;
    let gw = GatewayProcess::start(&["--header-timeout", "5m"], Some(128)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (addr, stop) = (gw.addr, stop.clone());
        attackers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                // Send nothing; read until the gateway answers and closes (a held slot never
                // does), checking now and then whether the test is over.
                let mut answer = [0u8; 256];
                loop {
                    let read = tokio::time::timeout(
                        std::time::Duration::from_millis(50),
                        socket.read(&mut answer),
                    );
                    match read.await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(_)) => {}
                        Err(_) if stop.load(Ordering::Relaxed) => return,
                        Err(_) => {}
                    }
                }
            }
        });
    }
    // The attack is on once the gateway has refused many of them at the cap.
    let refused_at_cap = r#"pushgate_connections_refused_total{reason="global_cap"}"#;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = gw.pusher().await.request("GET", "/metrics", &[], "").await;
        if metric(&metrics, refused_at_cap) >= Some(500.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusals at the cap"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // polling interval
    }
    for i in 0..30 {
        let (status, body) = gw.pusher().await.push("nobody", "alarm", "m").await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "message sent to 0 clients"),
            "push {i}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    while attackers.join_next().await.is_some() {}
    let (_, metrics) = gw.pusher().await.request("GET", "/metrics", &[], "").await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connections_refused_total{reason="fd_exhausted"}"#
        ),
        Some(0.0)
    );
}
