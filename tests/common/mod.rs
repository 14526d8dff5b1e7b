//! Test harness: the real gateway on 127.0.0.1:0, a real WebSocket client
//! (tokio-tungstenite) and a real HTTP/1.1 client (hyper).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use pushgate::Config;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Upper bound for anything a test waits for; a test that hits it has failed.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<TcpStream>;

/// A gateway running in this process.
pub struct Gateway {
    /// The public listener (WebSockets, health).
    pub addr: SocketAddr,
    /// The internal listener (pushes, metrics).
    pub internal: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), pushgate::GatewayError>>>,
}

impl Gateway {
    pub async fn start() -> Self {
        Self::start_with(Config::for_tests()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let listeners = pushgate::Listeners {
            public: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            internal: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let addr = listeners.public.local_addr().unwrap();
        let internal = listeners.internal.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(pushgate::run(listeners, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            internal,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown without waiting: the gateway drains; [`Gateway::stop`] then waits
    /// for the end.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("gateway stops in time")
                .unwrap()
                .unwrap();
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Opens a WebSocket connection.
    pub async fn connect(&self) -> Ws {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        // As browsers do: without it, a frame sent right after another waits for the
        // gateway's delayed ACK (Nagle), 40 ms each time.
        stream.set_nodelay(true).unwrap();
        let (ws, _) = tokio_tungstenite::client_async(self.ws_url(), stream)
            .await
            .unwrap();
        ws
    }

    /// Opens a connection and registers it; returns once the registration reached its shard.
    pub async fn client(&self, token: &str, event: &str) -> Ws {
        let mut ws = self.connect().await;
        register(&mut ws, token, event).await;
        ws
    }

    /// An HTTP client on the internal listener (pushes, metrics).
    pub async fn pusher(&self) -> Pusher {
        Pusher::connect(self.internal).await
    }

    /// An HTTP client on the public listener.
    pub async fn public_http(&self) -> Pusher {
        Pusher::connect(self.addr).await
    }

    /// `POST /push` on a fresh connection.
    pub async fn push(&self, user: &str, event: &str, message: &str) -> (StatusCode, String) {
        self.pusher().await.push(user, event, message).await
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = self
            .pusher()
            .await
            .request("GET", "/metrics", &[], Bytes::new())
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends a register frame, then a ping, and waits for the pong. The session handles frames in
/// order and hands the registration to the user's shard before it reads the ping, and a later
/// push for that user goes through the same shard channel: once the pong is back, the
/// registration is visible to every later push. This is the signal tests wait on.
pub async fn register(ws: &mut Ws, token: &str, event: &str) {
    let frame = serde_json::json!({ "token": token, "event": event }).to_string();
    send_and_sync(ws, Message::Text(frame)).await;
}

/// Sends `message` followed by a ping and waits for the matching pong.
pub async fn send_and_sync(ws: &mut Ws, message: Message) {
    ws.send(message).await.unwrap();
    sync(ws).await;
}

/// Sends a ping and waits for its pong, failing on any other frame.
pub async fn sync(ws: &mut Ws) {
    let payload = b"sync".to_vec();
    ws.send(Message::Ping(payload.clone())).await.unwrap();
    loop {
        match next(ws).await {
            Message::Pong(p) if p == payload => return,
            Message::Pong(_) => {}
            other => panic!("expected pong, got {other:?}"),
        }
    }
}

/// Next frame, within [`WAIT`].
pub async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame within the wait bound")
        .expect("connection still open")
        .expect("valid frame")
}

/// Next text frame (pongs are skipped).
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        match next(ws).await {
            Message::Text(text) => return text,
            Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Asserts that nothing but the answer to a ping arrives: proves "no frame was sent" without
/// waiting for a timeout, because the pong is queued behind anything already queued.
pub async fn assert_nothing_queued(ws: &mut Ws) {
    let payload = b"nothing-before-me".to_vec();
    ws.send(Message::Ping(payload.clone())).await.unwrap();
    match next(ws).await {
        Message::Pong(p) => assert_eq!(p, payload),
        other => panic!("expected no frame, got {other:?}"),
    }
}

/// A keep-alive HTTP/1.1 client.
pub struct Pusher {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Pusher {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Self { sender }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, String) {
        let (status, _, body) = self.request_full(method, path, headers, body).await;
        (status, body)
    }

    pub async fn request_full(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, hyper::HeaderMap, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "pushgate.test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        // A keep-alive connection takes a moment to be ready for the next request after a
        // response; sending before that fails with "connection was not ready".
        tokio::time::timeout(WAIT, self.sender.ready())
            .await
            .expect("connection ready within the wait bound")
            .unwrap();
        let response = tokio::time::timeout(WAIT, self.sender.send_request(request))
            .await
            .expect("reply within the wait bound")
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Like `request`, but `None` when the connection fails or closes instead of a reply.
    pub async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Option<(StatusCode, String)> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "pushgate.test")
            .body(Full::new(body.into()))
            .unwrap();
        self.sender.ready().await.ok()?;
        let response = tokio::time::timeout(WAIT, self.sender.send_request(request))
            .await
            .expect("reply within the wait bound")
            .ok()?;
        let status = response.status();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8(body.to_vec()).unwrap()))
    }

    pub async fn push(&mut self, user: &str, event: &str, message: &str) -> (StatusCode, String) {
        let body = serde_json::json!({ "userId": user, "event": event, "message": message });
        self.request("POST", "/push", &[], body.to_string()).await
    }

    /// Pushes and asserts a 200, returning N.
    pub async fn push_ok(&mut self, user: &str, event: &str, message: &str) -> usize {
        let (status, body) = self.push(user, event, message).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sent_count(&body)
    }
}

/// Parses `message sent to N clients`.
pub fn sent_count(body: &str) -> usize {
    body.strip_prefix("message sent to ")
        .and_then(|rest| rest.strip_suffix(" clients"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected push reply {body:?}"))
}

/// Value of an unlabelled or labelled sample in a Prometheus exposition.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// A `pushgate` process started from the built binary, for what only a real process shows
/// (signals, file-descriptor limits). Killed on drop.
pub struct GatewayProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub internal: SocketAddr,
    /// Its log lines after "listening", parsed (JSON format).
    log: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
}

impl GatewayProcess {
    /// Starts the binary (optionally under `prlimit --nofile=N`) on ports the kernel picks,
    /// and waits for its "listening" log line, which names them. (Picking free ports first
    /// and passing them races with other tests doing the same.)
    pub async fn start(extra_args: &[&str], nofile: Option<u32>) -> Self {
        use tokio::io::AsyncBufReadExt;
        let binary = env!("CARGO_BIN_EXE_pushgate");
        let mut command = match nofile {
            Some(n) => {
                let mut c = tokio::process::Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(binary);
                c
            }
            None => tokio::process::Command::new(binary),
        };
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--internal-listen",
                "127.0.0.1:0",
            ])
            .args(if extra_args.contains(&"--log") {
                &["--log-format", "json"][..]
            } else {
                &["--log", "info", "--log-format", "json"][..]
            })
            .args(extra_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the pushgate binary");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        // Every line goes to `wait_for_log`, those before "pushgate listening" too: a line
        // logged while starting (NATS refusing a credential, say) may come before it.
        let (log_tx, log) = tokio::sync::mpsc::unbounded_channel();
        let (addr, internal) = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let fields = &entry["fields"];
                if fields["message"] == "pushgate listening" {
                    let parse = |key: &str| fields[key].as_str().unwrap().parse().unwrap();
                    return (parse("public"), parse("internal"));
                }
                let _ = log_tx.send(entry);
            }
            panic!("the gateway exited before listening");
        })
        .await
        .expect("the gateway listens in time");
        // Keep draining its log so that the pipe never fills.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(entry) = serde_json::from_str(&line) {
                    let _ = log_tx.send(entry);
                }
            }
        });
        Self {
            child,
            addr,
            internal,
            log,
        }
    }

    /// Waits, within [`WAIT`], for the next log line whose message is `message`; returns its
    /// fields.
    pub async fn wait_for_log(&mut self, message: &str) -> serde_json::Value {
        let mut lines = self.lines_until(message).await;
        lines.pop().expect("the awaited line")["fields"].clone()
    }

    /// Waits, within [`WAIT`], for the next log line whose message is `message`; returns the
    /// lines read up to and including it, whole (`level`, `fields`, ...), in order.
    pub async fn lines_until(&mut self, message: &str) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        tokio::time::timeout(WAIT, async {
            while let Some(entry) = self.log.recv().await {
                let found = entry["fields"]["message"] == message;
                lines.push(entry);
                if found {
                    return;
                }
            }
            panic!("the gateway's log ended before {message:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no log line {message:?} within the wait bound"));
        lines
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn connect(&self) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        tokio_tungstenite::client_async(self.ws_url(), stream)
            .await
            .map(|(ws, _)| ws)
    }

    pub async fn client(&self, token: &str, event: &str) -> Ws {
        let mut ws = self.connect().await.unwrap();
        register(&mut ws, token, event).await;
        ws
    }

    pub async fn pusher(&self) -> Pusher {
        Pusher::connect(self.internal).await
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, within [`WAIT`].
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("gateway exits in time")
            .unwrap()
    }
}

/// A real `nats-server` on a loopback port, for cluster tests. Killed on drop. Panics when
/// the binary is missing: scripts/test installs it, and a cluster test must not pass by
/// skipping.
pub struct NatsServer {
    child: Option<std::process::Child>,
    pub port: u16,
    /// A configuration file written for this server (`-c`), removed on drop.
    config: Option<std::path::PathBuf>,
}

impl NatsServer {
    /// Starts on a port the server picks (`-p -1`), learnt from its log.
    pub async fn start() -> Self {
        Self::start_on(-1).await
    }

    /// Starts on `port` (-1: any) and waits until it listens.
    pub async fn start_on(port: i32) -> Self {
        let mut server = Self {
            child: None,
            port: 0,
            config: None,
        };
        server.spawn(port).await;
        server
    }

    /// Starts on any port with `config` as its configuration file (settings that have no
    /// command-line flag, such as `max_payload`).
    pub async fn start_with_config(config: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "pushgate-test-nats-{}-{n}.conf",
            std::process::id()
        ));
        std::fs::write(&path, config).unwrap();
        let mut server = Self {
            child: None,
            port: 0,
            config: Some(path),
        };
        server.spawn(-1).await;
        server
    }

    /// Starts it again on the same port, after [`NatsServer::stop`].
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.spawn(i32::from(self.port)).await;
    }

    async fn spawn(&mut self, port: i32) {
        use std::io::BufRead;
        let mut command = std::process::Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        // After the file: flags override it.
        let mut child = command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nats-server must be installed (scripts/test installs Debian's nats-server)");
        let stderr = child.stderr.take().unwrap();
        self.child = Some(child);
        let listening = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stderr).lines();
            let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.split("Listening for client connections on 127.0.0.1:")
                    .nth(1)
                    .and_then(|port| port.trim().parse::<u16>().ok())
            });
            // Keep draining its log so that the pipe never fills.
            std::thread::spawn(move || lines.for_each(drop));
            port
        });
        self.port = tokio::time::timeout(WAIT, listening)
            .await
            .expect("nats-server listens in time")
            .unwrap()
            .expect("nats-server exited before listening");
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): its connections stay open and nothing comes back, as
    /// with a hung host or a partition that drops packets.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(config) = &self.config {
            let _ = std::fs::remove_file(config);
        }
    }
}

/// A push's status, N and whether the gateway marked the count partial
/// (`X-Pushgate-Partial: true`).
pub async fn push_counted(
    pusher: &mut Pusher,
    user: &str,
    event: &str,
    message: &str,
) -> (usize, bool) {
    let body = serde_json::json!({ "userId": user, "event": event, "message": message });
    // The previous response may still be winding down on the client's connection task:
    // sending before it is ready fails with "connection was not ready".
    pusher
        .sender
        .ready()
        .await
        .expect("push connection still open");
    let (status, headers, body) = pusher
        .request_full("POST", "/push", &[], body.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let partial = headers
        .get("x-pushgate-partial")
        .is_some_and(|v| v.as_bytes() == b"true");
    (sent_count(&body), partial)
}

/// Pushes `<prefix>-<i>` until one reports exactly `expected` connections with an exact
/// count (cluster interest propagates asynchronously), within `bound`. Returns the message
/// that did: every reached connection receives it, after any earlier probe.
pub async fn push_until_count(
    pusher: &mut Pusher,
    user: &str,
    event: &str,
    prefix: &str,
    expected: usize,
    bound: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + bound;
    for attempt in 0.. {
        let message = format!("{prefix}-{attempt}");
        let (sent, partial) = push_counted(pusher, user, event, &message).await;
        if sent == expected && !partial {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "push count never reached {expected} (last: {sent}, partial: {partial})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// Reads text frames until `message`, skipping earlier ones (probes); fails past [`WAIT`].
/// Probes `/readyz` on `addr` until it answers 503, within [`WAIT`]: a new connection per
/// probe, as a load balancer does. A probe connection accepted just before shutdown began
/// may be closed unanswered by the graceful shutdown of idle connections; a load balancer
/// retries, and so does this.
pub async fn wait_until_not_ready(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut probe = Pusher::connect(addr).await;
        if let Some((status, _)) = probe.try_request("GET", "/readyz", "").await {
            if status.as_u16() == 503 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never failed"
        );
    }
}

pub async fn skip_until(ws: &mut Ws, message: &str) {
    while next_text(ws).await != message {}
}

/// A port free right now on loopback (for programs that cannot bind port 0 and report it,
/// such as nats-server; racy, so prefer letting the program pick).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Performs a WebSocket handshake on a raw socket and returns it positioned after the 101
/// response, for tests that send frames no client library would (or must not answer pings).
pub async fn raw_handshake(mut raw: TcpStream) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        raw.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    raw
}

/// A raw WebSocket client with a 4 KiB receive buffer (so that its socket fills up whatever
/// the machine's defaults), which has sent the register frame for (`user`, "alarm") to the
/// public listener at `addr` and then `after` (masked client frames, raw).
pub async fn small_buffer_client(addr: SocketAddr, user: &str, after: &[u8]) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = raw_handshake(socket.connect(addr).await.unwrap()).await;
    let register = format!(r#"{{"token":"{user}","event":"alarm"}}"#);
    let mut frames = vec![0x81, 0x80 | register.len() as u8, 0, 0, 0, 0];
    frames.extend_from_slice(register.as_bytes());
    frames.extend_from_slice(after);
    client.write_all(&frames).await.unwrap();
    client
}

/// [`raw_handshake`] on a new connection to the gateway's public listener.
pub async fn raw_websocket(gw: &Gateway) -> TcpStream {
    raw_handshake(TcpStream::connect(gw.addr).await.unwrap()).await
}

/// A fresh directory under the system temp dir for one test's files, removed on drop (so
/// also when the test fails).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(kind: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pushgate-test-{kind}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path of `name` in this directory, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
