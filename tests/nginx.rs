//! `deploy/nginx/pushgate.conf` in front of a two-node cluster: a real `nginx` (Debian's)
//! with a configuration generated from that file (upstreams pointed at the nodes' public
//! listeners, listening on a loopback port), a real `nats-server` and two `pushgate`
//! processes. Browsers' WebSockets go through nginx; pushes too, to show that nginx refuses
//! them, then go to a node's internal listener as documented.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tokio::net::TcpStream;

/// Bound for cluster interest to propagate.
const SETTLE: Duration = Duration::from_secs(10);

/// A real nginx process (master + worker), stopped on drop.
struct Nginx {
    child: std::process::Child,
    dir: PathBuf,
    port: u16,
    internal_port: u16,
}

impl Nginx {
    /// Generates the configuration from the deployed file: its `upstream` servers become
    /// `upstreams`, `listen 80` becomes a loopback port, everything else stays as shipped.
    /// nginx built from the shipped file: its public server in front of the nodes' public
    /// listeners, its internal server in front of their internal listeners.
    async fn start(nodes: &[&GatewayProcess]) -> Self {
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/nginx/pushgate.conf"
        ))
        .unwrap();
        let port = free_port();
        let internal_port = free_port();
        let servers = |addrs: Vec<std::net::SocketAddr>| -> String {
            addrs
                .iter()
                .map(|addr| format!("    server {addr} max_fails=3 fail_timeout=10s;\n"))
                .collect()
        };
        let public = servers(nodes.iter().map(|n| n.addr).collect());
        let internal = servers(nodes.iter().map(|n| n.internal).collect());
        let mut site = String::new();
        let (mut public_written, mut internal_written) = (false, false);
        for line in shipped.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("server 10.0.0.") && trimmed.contains(":8080") {
                if !public_written {
                    site.push_str(&public);
                    public_written = true;
                }
            } else if trimmed.starts_with("server 10.0.0.") && trimmed.contains(":8081") {
                if !internal_written {
                    site.push_str(&internal);
                    internal_written = true;
                }
            } else if trimmed == "listen 80;" {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            } else if trimmed == "listen 10.0.0.10:8081;" {
                site.push_str(&format!("    listen 127.0.0.1:{internal_port};\n"));
            } else {
                site.push_str(line);
                site.push('\n');
            }
        }
        assert!(
            public_written && internal_written,
            "the shipped file's upstream servers were not found"
        );
        assert!(site.contains(&format!("listen 127.0.0.1:{port};")));
        assert!(site.contains(&format!("listen 127.0.0.1:{internal_port};")));

        let dir =
            std::env::temp_dir().join(format!("pushgate-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let temp = |name: &str| dir.join(name).display().to_string();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {pid};\nerror_log stderr warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {body};\n  \
             proxy_temp_path {proxy};\n  fastcgi_temp_path {fastcgi};\n  \
             uwsgi_temp_path {uwsgi};\n  scgi_temp_path {scgi};\n{site}}}\n",
            pid = temp("nginx.pid"),
            body = temp("body"),
            proxy = temp("proxy"),
            fastcgi = temp("fastcgi"),
            uwsgi = temp("uwsgi"),
            scgi = temp("scgi"),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("nginx must be installed (scripts/test installs Debian's nginx)");
        let nginx = Self {
            child,
            dir,
            port,
            internal_port,
        };
        nginx.wait_listening().await;
        nginx
    }

    async fn wait_listening(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err()
            || TcpStream::connect(("127.0.0.1", self.internal_port))
                .await
                .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A WebSocket through nginx, registered for (token, event).
    async fn client(&self, token: &str, event: &str) -> Ws {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://127.0.0.1:{}/ws", self.port);
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        register(&mut ws, token, event).await;
        ws
    }

    async fn http(&self) -> Pusher {
        Pusher::connect(([127, 0, 0, 1], self.port).into()).await
    }

    /// A pusher going through nginx's internal server.
    async fn pusher(&self) -> Pusher {
        Pusher::connect(([127, 0, 0, 1], self.internal_port).into()).await
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT would wait for the proxied WebSockets; SIGTERM is nginx's fast shutdown
        // (master and worker exit at once).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

fn connections(metrics: &str) -> f64 {
    metric(metrics, "pushgate_connections").unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_nginx_on_two_nodes_receive_pushes_with_exact_counts() {
    const USERS: usize = 4;
    const PER_USER: usize = 3;
    let nats = NatsServer::start().await;
    let args = ["--nats-url", &nats.url(), "--shards", "2"];
    let a = GatewayProcess::start(&args, None).await;
    let b = GatewayProcess::start(&args, None).await;
    let nginx = Nginx::start(&[&a, &b]).await;

    // Through nginx: readiness answers, pushes and metrics are refused (404).
    let mut http = nginx.http().await;
    assert_eq!(http.request("GET", "/readyz", &[], "").await.0, 200);
    let body = serde_json::json!({"userId": "u", "event": "e", "message": "m"}).to_string();
    assert_eq!(http.request("POST", "/push", &[], body).await.0, 404);
    assert_eq!(http.request("GET", "/metrics", &[], "").await.0, 404);

    // least_conn spreads the held WebSockets over both nodes.
    let mut clients = Vec::new();
    for i in 0..USERS * PER_USER {
        let user = format!("via-nginx-{}", i % USERS);
        clients.push((user.clone(), nginx.client(&user, "alarm").await));
    }
    let on_a = connections(&a.pusher().await.request("GET", "/metrics", &[], "").await.1);
    let on_b = connections(&b.pusher().await.request("GET", "/metrics", &[], "").await.1);
    assert_eq!(on_a + on_b, (USERS * PER_USER) as f64);
    assert!(on_a >= 1.0 && on_b >= 1.0, "A {on_a}, B {on_b}");

    // Pushes through nginx's internal server land on either node and reach every
    // connection of the user, wherever nginx placed it, with exact counts.
    let mut into_a = nginx.pusher().await;
    for user in 0..USERS {
        let user = format!("via-nginx-{user}");
        let probe = push_until_count(&mut into_a, &user, "alarm", "probe", PER_USER, SETTLE).await;
        for (_, ws) in clients.iter_mut().filter(|(u, _)| *u == user) {
            skip_until(ws, &probe).await;
        }
    }
    for round in 0..5 {
        for user in 0..USERS {
            let user = format!("via-nginx-{user}");
            let message = format!("{user}:{round}");
            assert_eq!(
                push_counted(&mut into_a, &user, "alarm", &message).await,
                (PER_USER, false)
            );
        }
        for (user, ws) in &mut clients {
            assert_eq!(next_text(ws).await, format!("{user}:{round}"));
        }
    }
    for (_, ws) in &mut clients {
        assert_nothing_queued(ws).await;
    }
}
