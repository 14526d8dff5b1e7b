//! The gateway as a function of (listeners, config, shutdown signal).
//!
//! `run` wires the shards, the metrics and the accept loops, and returns once shutdown is
//! complete. Shutdown is a drain: `/readyz` turns 503 at once, new WebSockets and pushes get
//! 503, pushes already accepted are still written, and every WebSocket is closed with 1001 at
//! a moment picked at random within `--drain-window`, so that clients do not all reconnect to
//! the remaining nodes at once; the process returns when the last connection is gone or at
//! `--shutdown-timeout`. Tests call `run` on `127.0.0.1:0`; `main.rs` only parses the
//! configuration and calls it.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::cluster::{Cluster, ClusterError, Delivery};
use crate::config::{Config, ConfigError};
use crate::http::head_deadline::{HeadDeadline, RequestPhase};
use crate::http::push_keys::PushKeys;
use crate::http::service::{self, ListenerRole, RequestContext};
use crate::log_throttle::LogThrottle;
use crate::metrics::{HttpErrorKind, Metrics, RefusalReason, UPKEEP_INTERVAL};
use crate::shard::{self, MultiPush, PushRefused, Router, UserHook};
use crate::ws::frame;

/// The two sockets the gateway serves: the public one (WebSockets, health) and the internal
/// one (pushes, metrics, health).
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub internal: TcpListener,
}

/// A listener that could not be bound, named so that the operator knows which address
/// conflicts.
#[derive(Debug, thiserror::Error)]
#[error("binding the {role} listener ({flag} {addr})")]
pub struct BindError {
    role: &'static str,
    flag: &'static str,
    addr: std::net::SocketAddr,
    source: io::Error,
}

impl Listeners {
    /// Binds both addresses of the configuration.
    pub async fn bind(config: &Config) -> Result<Self, BindError> {
        let bind = |role, flag, addr| async move {
            TcpListener::bind(addr).await.map_err(|source| BindError {
                role,
                flag,
                addr,
                source,
            })
        };
        Ok(Self {
            public: bind("public", "--listen", config.listen).await?,
            internal: bind("internal", "--internal-listen", config.internal_listen).await?,
        })
    }
}

/// What every connection and request shares. Read-only after start-up, except the
/// connection counters, the time descriptors last ran out, and what SIGHUP reloads (push
/// keys, static tokens), each behind its own atomic or lock.
pub struct Shared {
    pub config: Config,
    pub router: Router,
    /// Cluster mode (`--nats-url`): pushes also reach the other nodes.
    pub cluster: Option<Cluster>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<dyn Authenticator>,
    /// Keys pipelines must present; `--push-keys-file` is read again on SIGHUP.
    pub push_keys: PushKeys,
    /// The ping every connection receives, encoded once.
    pub ping_frame: Bytes,
    /// Connections held on the public listener (WebSockets, and connections still in their
    /// handshake or serving a health check), and the cap on them (`--max-connections`).
    open_connections: AtomicUsize,
    connection_cap: usize,
    conn_ids: AtomicU64,
    /// Seed for each connection's drain delay.
    drain_seed: u64,
    /// Every WebSocket session; shutdown waits for them.
    sessions: TaskTracker,
    /// Running out of descriptors is logged once per interval, whichever listener hits it.
    fd_exhausted_logged: LogThrottle,
    /// When an accept last failed for lack of descriptors: `/readyz` says 503 for a while.
    fd_exhausted: RecentEvent,
    /// Connections refused at the cap whose request head is still awaited (each holds a
    /// descriptor meanwhile): at most [`MAX_REFUSALS_IN_FLIGHT`], oldest first.
    refusals_waiting: std::sync::Mutex<std::collections::VecDeque<Arc<tokio::sync::Notify>>>,
}

impl Shared {
    /// Whether the process ran out of file descriptors within the last [`FD_NOT_READY`]:
    /// new connections may be refused, so a load balancer should send them elsewhere.
    pub fn recently_out_of_fds(&self) -> bool {
        self.fd_exhausted.within(FD_NOT_READY)
    }

    /// Delivers a push to every matching connection: this node's, and in cluster mode every
    /// other node's. Every push endpoint goes through here.
    pub async fn deliver(
        &self,
        user: String,
        event: String,
        frame: Bytes,
        accepted_at: Instant,
    ) -> Result<Delivery, PushRefused> {
        match &self.cluster {
            Some(cluster) => {
                cluster
                    .deliver(&self.router, user, event, frame, accepted_at)
                    .await
            }
            None => Ok(Delivery::local_only(
                self.router.push(user, event, frame, accepted_at).await?,
            )),
        }
    }

    /// Delivers one request's pushes to several users (each push's users deduplicated by the
    /// caller): their shards take them all or none, and in cluster mode every other node
    /// holding any of them gets them too.
    pub async fn deliver_many(
        &self,
        pushes: Vec<MultiPush>,
        accepted_at: Instant,
    ) -> Result<Delivery, PushRefused> {
        match &self.cluster {
            Some(cluster) => {
                cluster
                    .deliver_many(&self.router, pushes, accepted_at)
                    .await
            }
            None => Ok(Delivery::local_only(
                self.router.begin_push_many(pushes, accepted_at)?.await?,
            )),
        }
    }

    /// Queues a broadcast frame to every connection registered for `event`: this node's,
    /// and in cluster mode every live node's.
    pub async fn broadcast(
        &self,
        event: &str,
        frame: Bytes,
        accepted_at: Instant,
    ) -> Result<Delivery, PushRefused> {
        match &self.cluster {
            Some(cluster) => {
                cluster
                    .broadcast(&self.router, event, frame, accepted_at)
                    .await
            }
            None => Ok(Delivery::local_only(
                self.router.broadcast(event, frame, accepted_at).await?,
            )),
        }
    }

    /// Closes the connections of `user` (for `event` only, when given) with `close_frame`:
    /// this node's, and in cluster mode every other node's. `sent` counts closed connections.
    pub async fn disconnect(
        &self,
        user: String,
        event: Option<String>,
        close_frame: Bytes,
    ) -> Result<Delivery, PushRefused> {
        match &self.cluster {
            Some(cluster) => {
                cluster
                    .disconnect(&self.router, user, event, close_frame)
                    .await
            }
            None => Ok(Delivery::local_only(
                self.router.disconnect(user, event, close_frame).await?,
            )),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a connection slot for a public-listener connection just accepted, or `None`
    /// when `--max-connections` is reached. Taken at accept, not at the upgrade: a connection
    /// that never finishes its handshake holds a descriptor all the same, and those must not
    /// be able to use up the ones kept for pushes and scrapes.
    fn reserve_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let previous = self.open_connections.fetch_add(1, Ordering::AcqRel);
        if previous >= self.connection_cap {
            self.open_connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot {
            shared: self.clone(),
            websocket: false,
        })
    }

    /// Spawns a WebSocket session so that shutdown waits for it.
    pub fn spawn_session(&self, session: impl Future<Output = ()> + Send + 'static) {
        self.sessions.spawn(session);
    }

    /// When, within the drain window, connection `conn_id` is closed: spread uniformly and
    /// differently on every node and every run.
    pub fn drain_delay(&self, conn_id: u64) -> Duration {
        let window = self.config.drain_window.as_nanos() as u64;
        if window == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(splitmix64(conn_id ^ self.drain_seed) % window)
    }
}

/// A held connection slot; dropping it frees the slot.
pub struct ConnectionSlot {
    shared: Arc<Shared>,
    /// Counted in `pushgate_connections`: the connection became a WebSocket.
    websocket: bool,
}

impl ConnectionSlot {
    /// The slot's connection is now a WebSocket session, and counts as one.
    pub fn into_websocket(mut self) -> Self {
        if !self.websocket {
            self.websocket = true;
            self.shared.metrics.connections.increment(1.0);
        }
        self
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Ordering::AcqRel);
        if self.websocket {
            self.shared.metrics.connections.decrement(1.0);
        }
    }
}

/// The slot of one public-listener connection, until an upgrade hands it to the WebSocket
/// session; dropped with the connection otherwise. Shared by the connection's requests.
pub struct SlotCell(std::sync::Mutex<Option<ConnectionSlot>>);

impl SlotCell {
    fn holding(slot: ConnectionSlot) -> Self {
        Self(std::sync::Mutex::new(Some(slot)))
    }

    /// The slot, once: the upgrade that takes it owns it from then on.
    pub fn take(&self) -> Option<ConnectionSlot> {
        match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    // The cause is the source, not part of the message: `{:#}` prints the chain once.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error("cluster mode")]
    Cluster(#[from] ClusterError),
}

/// Runs the gateway with the authenticator `--auth` selects until `shutdown` resolves.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let auth = crate::auth::from_config(&config)?;
    run_with_auth(listeners, config, auth, shutdown).await
}

/// Runs the gateway with a given authenticator until `shutdown` resolves.
pub async fn run_with_auth(
    listeners: Listeners,
    config: Config,
    auth: Arc<dyn Authenticator>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    config.validate()?;
    let shard_count = config.shard_count();
    let metrics = Arc::new(Metrics::new(shard_count));
    // Cluster mode: the shards report users' first and last bindings to `interest`.
    let (interest, changes) = if config.nats_url.is_empty() {
        (None, None)
    } else {
        let (interest, changes) = Cluster::interest();
        (Some(interest), Some(changes))
    };
    let (senders, shard_tasks): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|index| {
            let hook = interest.clone().map(|i| i as Arc<dyn UserHook>);
            shard::task::spawn(index, &config, metrics.clone(), hook)
        })
        .unzip();
    let upkeep = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        }
    });
    warn_about_exposure(&config, &listeners);
    warn_about_fd_budget(&config);
    let router = Router::new(senders);
    let cluster = match (interest, changes) {
        (Some(interest), Some(changes)) => {
            Some(Cluster::start(&config, interest, changes, router.clone(), metrics.clone()).await?)
        }
        _ => None,
    };
    let shared = Arc::new(Shared {
        push_keys: PushKeys::new(config.load_push_keys()?),
        router,
        cluster,
        ping_frame: frame::ping(b""),
        open_connections: AtomicUsize::new(0),
        connection_cap: config.connection_cap(),
        conn_ids: AtomicU64::new(1),
        drain_seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        sessions: TaskTracker::new(),
        fd_exhausted_logged: LogThrottle::new(FD_LOG_INTERVAL),
        fd_exhausted: RecentEvent::new(),
        refusals_waiting: Default::default(),
        metrics,
        auth,
        config,
    });
    let reloader = tokio::spawn(reload_on_sighup(shared.clone()));
    let (draining_tx, draining) = watch::channel(false);
    let context = |role| RequestContext {
        shared: shared.clone(),
        draining: draining.clone(),
        role,
        slot: None,
    };
    tracing::info!(
        public = %addr(&listeners.public),
        internal = %addr(&listeners.internal),
        shards = shard_count,
        connection_cap = shared.connection_cap,
        auth = shared.config.auth.name(),
        push_keys = shared.push_keys.count(),
        "pushgate listening"
    );
    let public = tokio::spawn(accept_loop(listeners.public, context(ListenerRole::Public)));
    let internal = tokio::spawn(accept_loop(
        listeners.internal,
        context(ListenerRole::Internal),
    ));

    shutdown.await;
    let started = Instant::now();
    let deadline = shared.config.shutdown_timeout;
    tracing::info!(
        drain_window = ?shared.config.drain_window,
        "draining: readiness off, closing WebSockets"
    );
    let _ = draining_tx.send(true);
    shared.sessions.close();
    if tokio::time::timeout(deadline, shared.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(?deadline, "WebSockets still open at the shutdown deadline");
    }
    public.abort();
    internal.abort();
    upkeep.abort();
    if let Some(cluster) = &shared.cluster {
        cluster.leave().await;
    }
    reloader.abort();
    for task in shard_tasks {
        task.abort();
    }
    tracing::info!(elapsed = ?started.elapsed(), "shutdown complete");
    Ok(())
}

/// Re-reads the authenticator's files on SIGHUP; connections already bound are kept.
async fn reload_on_sighup(shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        // Off the runtime: it reads and parses files.
        let reloading = shared.clone();
        if tokio::task::spawn_blocking(move || reload_files(&reloading))
            .await
            .is_err()
        {
            tracing::warn!("SIGHUP: reload panicked, keeping what was loaded");
        }
    }
}

/// Re-reads the files pushgate loads (`--static-tokens`, `--push-keys-file`), each line in
/// the log naming which; a file that fails keeps its old contents in force.
fn reload_files(shared: &Shared) {
    let config = &shared.config;
    if config.auth == crate::config::AuthMode::Static {
        match shared.auth.reload() {
            Ok(()) => tracing::info!("SIGHUP: static tokens reloaded"),
            Err(error) => {
                tracing::warn!(%error, "SIGHUP: static tokens not reloaded, keeping the old ones")
            }
        }
    }
    if let Some(path) = &config.push_keys_file {
        let replaced = config
            .load_push_keys()
            .map_err(|error| error.to_string())
            .and_then(|keys| {
                let count = keys.len();
                shared
                    .push_keys
                    .replace(keys)
                    .map(|()| count)
                    .map_err(|refused| refused.to_string())
            });
        match replaced {
            Ok(keys) => tracing::info!(keys, path = %path.display(), "SIGHUP: push keys reloaded"),
            Err(error) => tracing::warn!(
                %error,
                path = %path.display(),
                "SIGHUP: push keys not reloaded, keeping the old ones"
            ),
        }
    }
}

fn addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// An explicit `--max-connections` past what the open-file limit holds (less the reserve
/// the default keeps for pushers, scrapes and logs) means the process runs out of
/// descriptors before the cap refuses anyone: say so at start-up.
fn warn_about_fd_budget(config: &Config) {
    let limit = crate::metrics::process::ProcessStats::read().max_fds as usize;
    let budget = limit.saturating_sub(limit / 20 + 64);
    if limit > 0 && config.max_connections > budget {
        tracing::warn!(
            max_connections = config.max_connections,
            open_file_limit = limit,
            "--max-connections exceeds what the open-file limit leaves for WebSockets \
             (~{budget}): new connections will be refused for lack of descriptors, and \
             pushes and scrapes may be too"
        );
    }
}

fn warn_about_exposure(config: &Config, listeners: &Listeners) {
    let public_is_loopback = listeners
        .public
        .local_addr()
        .is_ok_and(|a| a.ip().is_loopback());
    if !public_is_loopback && config.allowed_origins.is_empty() {
        tracing::warn!(
            "the public listener is not loopback and --allowed-origins is empty: \
             any web page may open WebSockets here"
        );
    }
    let internal_is_loopback = listeners
        .internal
        .local_addr()
        .is_ok_and(|a| a.ip().is_loopback());
    if !internal_is_loopback && config.push_keys.is_empty() && config.push_keys_file.is_none() {
        tracing::warn!("the internal listener is not loopback and pushes need no key");
    }
}

async fn accept_loop(listener: TcpListener, ctx: RequestContext) {
    let mut reserve = FdReserve::new();
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let mut connection_ctx = ctx.clone();
                match ctx.role {
                    ListenerRole::Public => {
                        let Some(slot) = ctx.shared.reserve_connection() else {
                            if refuse_at_cap(stream, &ctx.shared) == Refusal::CutAnotherShort {
                                // Let the refusal cut short run (woken on this thread, it
                                // runs next) and close its socket before the next accept:
                                // otherwise a storm of accepts outruns those closes.
                                tokio::task::yield_now().await;
                            }
                            continue;
                        };
                        connection_ctx.slot = Some(Arc::new(SlotCell::holding(slot)));
                        tokio::spawn(serve_http(TokioIo::new(stream), connection_ctx, None));
                    }
                    ListenerRole::Internal => {
                        let timeout = ctx.shared.config.header_timeout;
                        let (stream, phase) = HeadDeadline::new(stream, timeout);
                        tokio::spawn(serve_http(
                            TokioIo::new(stream),
                            connection_ctx,
                            Some(phase),
                        ));
                    }
                }
            }
            Err(error) if is_out_of_fds(&error) => {
                reserve.shed(&listener, &ctx).await;
            }
            Err(error) => tracing::debug!(%error, "accept failed"),
        }
    }
}

fn is_out_of_fds(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE)
    )
}

/// One file descriptor held back for the moment the process runs out: it is released to
/// accept the waiting connection, answer it and close it, so that clients get a clear
/// answer instead of hanging in the backlog, and the accept loop does not spin on EMFILE.
/// The answer is 503, except to a liveness probe: the process is alive and still serves
/// its connections, and a restart would drop them all (`/readyz` says 503: not ready for
/// new ones).
struct FdReserve {
    file: Option<std::fs::File>,
}

/// How often running out of descriptors is logged (it is counted every time).
const FD_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long `/readyz` answers 503 after an accept failed for lack of descriptors: longer
/// than the gap between two failures while the pressure lasts, short enough to turn ready
/// soon after it ends.
pub const FD_NOT_READY: Duration = Duration::from_secs(5);

/// How long a shed connection's request head is awaited, to tell a liveness probe from
/// anything else (a probe sends it with the connection) and to read it all before closing.
const FD_HEAD_WAIT: Duration = Duration::from_millis(100);

/// Most of a shed connection's request head read before answering it: an upgrade request
/// with cookies fits. What is left unread when the socket closes makes it send a reset,
/// which can reach the client before the answer does.
const SHED_HEAD_BYTES: usize = 8192;

/// Pause after shedding a connection, so that a flood costs little CPU.
const FD_BACKOFF: Duration = Duration::from_millis(10);

/// An answer the gateway writes itself, to a connection hyper never sees (shed for want of
/// a descriptor or a slot), so it carries by hand what hyper would add: a `Date` (RFC 9110
/// section 6.6.1: required in a 200) and no body in the answer to a `HEAD`.
struct ShedAnswer {
    status: &'static str,
    retry_after: bool,
    body: &'static str,
}

const FD_EXHAUSTED: ShedAnswer = ShedAnswer {
    status: "503 Service Unavailable",
    retry_after: true,
    body: "out of file descriptors\n",
};

const AT_CAP: ShedAnswer = ShedAnswer {
    status: "503 Service Unavailable",
    retry_after: true,
    body: "connection limit reached\n",
};

const ALIVE: ShedAnswer = ShedAnswer {
    status: "200 OK",
    retry_after: false,
    body: "ok\n",
};

impl ShedAnswer {
    /// The whole answer as sent at `now`; `with_body` false for a `HEAD` request.
    fn render(&self, now: std::time::SystemTime, with_body: bool) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut answer = format!(
            "HTTP/1.1 {}\r\nDate: {}\r\n",
            self.status,
            httpdate::fmt_http_date(now)
        );
        if self.retry_after {
            answer.push_str("Retry-After: 1\r\n");
        }
        let _ = write!(
            answer,
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.body.len()
        );
        if with_body {
            answer.push_str(self.body);
        }
        answer.into_bytes()
    }
}

/// Whether the start of a request is a liveness probe (`GET` or `HEAD` of `/healthz`).
fn is_liveness_probe(head: &[u8]) -> bool {
    [&b"GET /healthz "[..], b"GET /healthz?", b"HEAD /healthz "]
        .iter()
        .any(|probe| head.starts_with(probe))
}

impl FdReserve {
    fn new() -> Self {
        Self {
            file: std::fs::File::open("/dev/null").ok(),
        }
    }

    async fn shed(&mut self, listener: &TcpListener, ctx: &RequestContext) {
        if self.file.is_none() {
            // Another thread took the descriptor between its release and the re-open.
            self.file = std::fs::File::open("/dev/null").ok();
        }
        let shared = &ctx.shared;
        shared.fd_exhausted.record();
        shared.metrics.refused(RefusalReason::FdExhausted);
        if shared.fd_exhausted_logged.ready() {
            tracing::warn!(
                listener = ?ctx.role,
                open_connections = shared.open_connections.load(Ordering::Relaxed),
                "out of file descriptors: refusing new connections with 503 \
                 (lower --max-connections or raise the open-file limit)"
            );
        }
        if self.file.take().is_some() {
            if let Ok(Ok((stream, _))) = tokio::time::timeout(FD_BACKOFF, listener.accept()).await {
                let (mut head, mut read) = ([0u8; SHED_HEAD_BYTES], 0);
                read_head(&stream, &mut head, &mut read).await;
                answer_shed(&stream, &head[..read], &FD_EXHAUSTED);
            }
            self.file = std::fs::File::open("/dev/null").ok();
        }
        tokio::time::sleep(FD_BACKOFF).await;
    }
}

/// Most connections refused at the cap whose request head is awaited (for up to
/// [`FD_HEAD_WAIT`], so that a liveness probe is told apart and no reset overtakes the
/// answer). A newcomer past this many cuts the oldest one's wait short: it is answered from
/// what it has sent so far and closed. So clients reconnecting in a loop at the cap cannot
/// spend the descriptors kept for the internal listener, and a probe, which sends its request
/// at once, is still read and answered 200 however many silent connections come with it.
const MAX_REFUSALS_IN_FLIGHT: usize = 32;

/// Whether taking a refused connection in cut another one's wait short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Waiting,
    CutAnotherShort,
}

/// Answers a connection the public listener has no slot for (`--max-connections` reached,
/// counting connections still in their handshake) with 503, or 200 to a liveness probe.
fn refuse_at_cap(stream: tokio::net::TcpStream, shared: &Arc<Shared>) -> Refusal {
    let cut_short = Arc::new(tokio::sync::Notify::new());
    let mut refusal = Refusal::Waiting;
    {
        let mut waiting = shared
            .refusals_waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if waiting.len() >= MAX_REFUSALS_IN_FLIGHT {
            if let Some(oldest) = waiting.pop_front() {
                oldest.notify_one();
                refusal = Refusal::CutAnotherShort;
            }
        }
        waiting.push_back(cut_short.clone());
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut head = [0u8; SHED_HEAD_BYTES];
        let mut read = 0;
        let cut = tokio::select! {
            () = read_head(&stream, &mut head, &mut read) => false,
            () = cut_short.notified() => true,
        };
        if cut {
            // Whatever did arrive still decides the answer.
            read_arrived(&stream, &mut head, &mut read);
        }
        count_refusal_at_cap(&shared, answer_shed(&stream, &head[..read], &AT_CAP));
        drop(stream);
        shared
            .refusals_waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|waiter| !Arc::ptr_eq(waiter, &cut_short));
    });
    refusal
}

/// Counts a connection refused at the cap; a liveness probe answered 200 is not one.
fn count_refusal_at_cap(shared: &Shared, answered: Shed) {
    if answered == Shed::Refused {
        shared.metrics.refused(RefusalReason::GlobalCap);
        tracing::debug!(
            reason = RefusalReason::GlobalCap.label(),
            "connection refused at accept"
        );
    }
}

/// How a connection the gateway would not serve was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shed {
    /// With the refusal (503).
    Refused,
    /// With 200: a liveness probe. The process is alive and serves its connections; a
    /// restart would drop them all.
    Alive,
}

/// Answers a connection the gateway will not serve, given the start of its request, with
/// `refusal` or, to a liveness probe, 200. The socket closes when the caller drops it.
fn answer_shed(stream: &tokio::net::TcpStream, head: &[u8], refusal: &ShedAnswer) -> Shed {
    let (answer, shed) = if is_liveness_probe(head) {
        (&ALIVE, Shed::Alive)
    } else {
        (refusal, Shed::Refused)
    };
    let with_body = !head.starts_with(b"HEAD ");
    let _ = stream.try_write(&answer.render(std::time::SystemTime::now(), with_body));
    shed
}

/// Reads into `head[*read..]` until it holds the end of a request head (a blank line), it is
/// full, the peer stops, or [`FD_HEAD_WAIT`] passes; `read` counts the bytes held, also when
/// the caller stops waiting first.
async fn read_head(stream: &tokio::net::TcpStream, head: &mut [u8], read: &mut usize) {
    let reading = async {
        while *read < head.len() && !head[..*read].windows(4).any(|w| w == b"\r\n\r\n") {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut head[*read..]) {
                Ok(0) => return,
                Ok(n) => *read += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(FD_HEAD_WAIT, reading).await;
}

/// Reads into `head[*read..]` what the peer has already sent, without waiting.
fn read_arrived(stream: &tokio::net::TcpStream, head: &mut [u8], read: &mut usize) {
    while *read < head.len() {
        match stream.try_read(&mut head[*read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => *read += n,
        }
    }
}

/// When something last happened, readable from any thread without a lock.
struct RecentEvent {
    started: Instant,
    /// Milliseconds after `started`, plus one (0: never).
    last_ms: AtomicU64,
}

impl RecentEvent {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn record(&self) {
        let now_ms = self.started.elapsed().as_millis() as u64 + 1;
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }

    fn within(&self, window: Duration) -> bool {
        let last_ms = self.last_ms.load(Ordering::Relaxed);
        last_ms != 0
            && (self.started.elapsed().as_millis() as u64 + 1).saturating_sub(last_ms)
                < window.as_millis() as u64
    }
}

/// Serves one HTTP connection. With `phase` (the internal listener), the header timeout is
/// the stream's, counted from a request's first byte ([`HeadDeadline`]), and an idle
/// keep-alive connection stays open; without it, hyper's, which also closes a connection
/// idle for that long (the public listener, where idle connections hold capped slots).
async fn serve_http<S>(io: TokioIo<S>, ctx: RequestContext, phase: Option<RequestPhase>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut draining = ctx.draining.clone();
    // A connection opened while draining answers one request (a readiness probe, a push
    // that gets 503) and closes; an older one finishes its request in flight and closes.
    let already_draining = ctx.is_draining();
    let header_timeout = ctx.shared.config.header_timeout;
    let shared = ctx.shared.clone();
    let internal = ctx.role == ListenerRole::Internal;
    let hyper_header_timeout = phase.is_none().then_some(header_timeout);
    let service = service_fn(move |request| {
        let ctx = ctx.clone();
        let phase = phase.clone();
        async move {
            if let Some(phase) = &phase {
                phase.request_started();
            }
            let response = service::handle(request, ctx).await;
            if let Some(phase) = &phase {
                phase.request_answered();
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(hyper_header_timeout)
        .keep_alive(!already_draining)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                let kind = HttpErrorKind::of(&error);
                shared.metrics.http_error(internal, kind);
                // hyper's message for an I/O error is "connection error": say which.
                let error = match std::error::Error::source(&error) {
                    Some(cause) => format!("{error}: {cause}"),
                    None => error.to_string(),
                };
                tracing::debug!(
                    %error,
                    kind = kind.label(),
                    listener = if internal { "internal" } else { "public" },
                    "http connection ended with an error"
                );
            }
        }
        _ = async { let _ = draining.wait_for(|draining| *draining).await; }, if !already_draining => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

#[cfg(test)]
impl Shared {
    /// A `Shared` with default configuration and one idle shard, for unit tests.
    pub(crate) fn for_tests() -> Arc<Self> {
        let config = Config::for_tests();
        let metrics = Arc::new(Metrics::new(1));
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        Arc::new(Self {
            push_keys: PushKeys::default(),
            router: Router::new(vec![tx]),
            cluster: None,
            ping_frame: frame::ping(b""),
            open_connections: AtomicUsize::new(0),
            connection_cap: 1,
            conn_ids: AtomicU64::new(1),
            drain_seed: 0,
            sessions: TaskTracker::new(),
            fd_exhausted_logged: LogThrottle::new(FD_LOG_INTERVAL),
            fd_exhausted: RecentEvent::new(),
            refusals_waiting: Default::default(),
            metrics,
            auth: Arc::new(crate::auth::IdentityAuthenticator),
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_event_is_recent_for_its_window_only() {
        let event = RecentEvent::new();
        assert!(!event.within(Duration::from_secs(3600)), "never happened");
        event.record();
        assert!(event.within(Duration::from_secs(3600)));
        assert!(!event.within(Duration::ZERO));
    }

    #[test]
    fn shed_answers_carry_their_length_a_date_and_no_body_for_head() {
        let now = std::time::SystemTime::now();
        for shed in [&FD_EXHAUSTED, &AT_CAP, &ALIVE] {
            let text = String::from_utf8(shed.render(now, true)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert_eq!(body, shed.body);
            assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
            let date = head
                .lines()
                .find_map(|line| line.strip_prefix("Date: "))
                .expect("a Date header");
            let sent = httpdate::parse_http_date(date).unwrap();
            assert!(now.duration_since(sent).unwrap() < Duration::from_secs(1));
            let to_head = String::from_utf8(shed.render(now, false)).unwrap();
            assert_eq!(to_head, format!("{head}\r\n\r\n"), "same head, no body");
        }
    }

    #[test]
    fn drain_delays_spread_over_the_window() {
        let window = 1_000_000u64;
        let mut buckets = [0usize; 10];
        for id in 0..10_000u64 {
            let delay = splitmix64(id ^ 42) % window;
            buckets[(delay * 10 / window) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 800), "{buckets:?}");
    }
}
