//! The one configuration struct: every flag is also a `PUSHGATE_…` environment variable, and
//! each field's doc comment is its `--help` text. Durations take `humantime` syntax
//! (`250ms`, `30s`, `2m`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::conn::outbox::QueueLimits;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How a register frame's token becomes a userID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// The userID is the token (the old server's default).
    Identity,
    /// Tokens listed in `--static-tokens`, reloaded on SIGHUP.
    Static,
    /// Signed JWTs verified with `--jwt-key`.
    Jwt,
    /// A backend at `--auth-http-url` decides.
    Http,
}

impl AuthMode {
    /// The word `--auth` takes for this mode.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Identity => "identity",
            AuthMode::Static => "static",
            AuthMode::Jwt => "jwt",
            AuthMode::Http => "http",
        }
    }
}

fn duration(value: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(value)
}

/// pushgate: a sharded WebSocket push gateway, wire-compatible with wserver.
#[derive(Debug, Clone, Parser)]
#[command(name = "pushgate", version, about, long_about = None)]
pub struct Config {
    /// Public listener: serves the WebSocket endpoint and health checks. Loopback by
    /// default: expose it deliberately (e.g. `0.0.0.0:8080` behind a load balancer).
    #[arg(long, env = "PUSHGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Internal listener: serves the push endpoint and metrics (and health checks). Keep it
    /// on a private interface.
    #[arg(
        long,
        env = "PUSHGATE_INTERNAL_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub internal_listen: SocketAddr,

    /// Also serve the push endpoints on the public listener: `/push` and all of `/api/v2/`
    /// (push, batch, broadcast, disconnect, alertmanager). Requires push keys.
    #[arg(long, env = "PUSHGATE_PUBLIC_PUSH")]
    pub public_push: bool,

    /// Path of the WebSocket endpoint browsers connect to.
    #[arg(long, env = "PUSHGATE_WS_PATH", default_value = "/ws")]
    pub ws_path: String,

    /// Path of the v1 push endpoint.
    #[arg(long, env = "PUSHGATE_PUSH_PATH", default_value = "/push")]
    pub push_path: String,

    /// Path of the Prometheus metrics endpoint.
    #[arg(long, env = "PUSHGATE_METRICS_PATH", default_value = "/metrics")]
    pub metrics_path: String,

    /// Runtime worker threads (default: available cores). With 1, the gateway runs on tokio's
    /// single-threaded scheduler, which costs less per delivery than a one-worker pool.
    #[arg(long, env = "PUSHGATE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Number of shards the userID → connections map is split into (default: available cores).
    #[arg(long, env = "PUSHGATE_SHARDS")]
    pub shards: Option<usize>,

    /// Commands a shard's channel holds before pushes are refused with 503.
    #[arg(long, env = "PUSHGATE_SHARD_QUEUE", default_value_t = 8192)]
    pub shard_queue: usize,

    /// Frames a connection's outbound queue holds before it is closed as a slow consumer.
    #[arg(long, env = "PUSHGATE_CONN_QUEUE_FRAMES", default_value_t = 1024)]
    pub conn_queue_frames: usize,

    /// Bytes a connection's outbound queue holds before it is closed as a slow consumer.
    #[arg(long, env = "PUSHGATE_CONN_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub conn_queue_bytes: usize,

    /// Largest message a client may send, in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "PUSHGATE_MAX_MESSAGE_SIZE", default_value_t = 64 << 10)]
    pub max_message_size: usize,

    /// Largest push body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "PUSHGATE_MAX_PUSH_BODY", default_value_t = 1 << 20)]
    pub max_push_body: usize,

    /// Most connections the public listener holds at once: WebSockets, and connections still
    /// in their handshake (which hold a descriptor all the same); past it, new connections get
    /// 503 + Retry-After (a liveness probe, `GET /healthz`, 200). 0: the open-file limit minus
    /// a reserve for pushes, metrics and logs.
    #[arg(long, env = "PUSHGATE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Most connections one user may hold; a register frame past it closes the connection
    /// with 4029. 0: unlimited.
    #[arg(long, env = "PUSHGATE_MAX_CONNECTIONS_PER_USER", default_value_t = 0)]
    pub max_connections_per_user: usize,

    /// Most events one connection may register; a register frame adding one more is refused
    /// (`result="too_many_events"`) and the connection keeps the events it has. Each event is
    /// a binding its shard keeps, so without a limit one client could grow the gateway's
    /// memory, and the cost of its own registrations, without bound. 0: unlimited.
    #[arg(long, env = "PUSHGATE_MAX_EVENTS_PER_CONNECTION", default_value_t = 16)]
    pub max_events_per_connection: usize,

    /// Longest userID and event name a connection may register, in bytes; a register frame
    /// with a longer one is refused (`result="name_too_long"`). The shard keeps both for as
    /// long as the connection is bound, so without a limit one connection could make the
    /// gateway hold its events' worth of `--max-message-size` (16 × 64 KiB).
    #[arg(long, env = "PUSHGATE_MAX_NAME_LENGTH", default_value_t = 512)]
    pub max_name_length: usize,

    /// Interval between server pings on every connection (at least 100ms).
    #[arg(long, env = "PUSHGATE_PING_INTERVAL", default_value = "30s", value_parser = duration)]
    pub ping_interval: Duration,

    /// A connection that sends nothing (no pong, no frame) for this long is closed with 4002.
    #[arg(long, env = "PUSHGATE_IDLE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// A connection that has not registered within this time is closed with 4003.
    #[arg(long, env = "PUSHGATE_REGISTER_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub register_timeout: Duration,

    /// Push keys, comma-separated: when any key is configured, pushes need
    /// `Authorization: Bearer <key>` and get 401 otherwise. Several keys allow rotation.
    #[arg(
        long,
        env = "PUSHGATE_PUSH_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub push_keys: Vec<String>,

    /// File with one push key per line (blank lines and `#` comments ignored), added to
    /// `--push-keys`; read again on SIGHUP. A file with no key is refused, at start and on
    /// SIGHUP.
    #[arg(long, env = "PUSHGATE_PUSH_KEYS_FILE")]
    pub push_keys_file: Option<PathBuf>,

    /// How register tokens are authenticated.
    #[arg(long, env = "PUSHGATE_AUTH", value_enum, default_value_t = AuthMode::Identity)]
    pub auth: AuthMode,

    /// With `--auth static`: file of `token userId` lines (`#` comments), reloaded on SIGHUP.
    #[arg(long, env = "PUSHGATE_STATIC_TOKENS")]
    pub static_tokens: Option<PathBuf>,

    /// With `--auth jwt`: a verification key as `KID=ALG:PATH` (ALG: HS256, RS256, ES256; an
    /// HS256 file holds the secret, RS256/ES256 files a PEM public key). Repeat for rotation;
    /// tokens without `kid` use the key named `default`; in the environment, separate keys
    /// with `,`. An HS256 secret holds at least 32 bytes.
    #[arg(long = "jwt-key", env = "PUSHGATE_JWT_KEYS", value_delimiter = ',')]
    pub jwt_keys: Vec<String>,

    /// With `--auth jwt`: required `aud` claim.
    #[arg(long, env = "PUSHGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// With `--auth jwt`: required `iss` claim.
    #[arg(long, env = "PUSHGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// With `--auth jwt`: the claim holding the userID.
    #[arg(long, env = "PUSHGATE_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// With `--auth jwt`: clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "PUSHGATE_JWT_LEEWAY", default_value = "30s", value_parser = duration)]
    pub jwt_leeway: Duration,

    /// With `--auth jwt`: close a connection when its token expires (4408).
    #[arg(long, env = "PUSHGATE_JWT_CLOSE_ON_EXPIRY", default_value_t = true, action = clap::ArgAction::Set)]
    pub jwt_close_on_expiry: bool,

    /// With `--auth http`: the backend URL (http://) the token is POSTed to.
    #[arg(long, env = "PUSHGATE_AUTH_HTTP_URL", hide_env_values = true)]
    pub auth_http_url: Option<String>,

    /// With `--auth http`: time allowed for the backend's answer.
    #[arg(long, env = "PUSHGATE_AUTH_HTTP_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub auth_http_timeout: Duration,

    /// With `--auth http`: most backend requests in flight.
    #[arg(long, env = "PUSHGATE_AUTH_HTTP_CONCURRENCY", default_value_t = 64)]
    pub auth_http_concurrency: usize,

    /// With `--auth http`: how long an accepted token is remembered.
    #[arg(long, env = "PUSHGATE_AUTH_HTTP_CACHE_TTL", default_value = "30s", value_parser = duration)]
    pub auth_http_cache_ttl: Duration,

    /// With `--auth http`: how long a refused token is remembered.
    #[arg(long, env = "PUSHGATE_AUTH_HTTP_NEGATIVE_TTL", default_value = "5s", value_parser = duration)]
    pub auth_http_negative_ttl: Duration,

    /// Most pushes in one `POST /api/v2/batch`.
    #[arg(long, env = "PUSHGATE_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,

    /// `POST /api/v2/alertmanager`: the alert label naming its users (comma-separated).
    #[arg(long, env = "PUSHGATE_ALERTMANAGER_USER_LABEL", default_value = "user")]
    pub alertmanager_user_label: String,

    /// `POST /api/v2/alertmanager`: the alert label naming the event.
    #[arg(
        long,
        env = "PUSHGATE_ALERTMANAGER_EVENT_LABEL",
        default_value = "alertname"
    )]
    pub alertmanager_event_label: String,

    /// `POST /api/v2/alertmanager`: users of a receiver, as `RECEIVER=U1,U2` (repeatable;
    /// in the environment, separate entries with `;`).
    #[arg(
        long = "alertmanager-receiver",
        env = "PUSHGATE_ALERTMANAGER_RECEIVERS",
        value_delimiter = ';'
    )]
    pub alertmanager_receivers: Vec<String>,

    /// Serve the demo alert page at `/demo` on the public listener.
    #[arg(long, env = "PUSHGATE_DEMO")]
    pub demo: bool,

    /// Origins allowed to open a WebSocket, comma-separated (e.g. `https://app.example.com`).
    /// Empty: any origin, as the old server did (a warning is logged when the public listener
    /// is not loopback). Requests without an Origin header (non-browser clients) are allowed.
    #[arg(long, env = "PUSHGATE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Time allowed to send request headers.
    #[arg(long, env = "PUSHGATE_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,

    /// Time allowed to send a request body once the headers are in; past it the request gets
    /// 408 (and hyper closes the connection, whose body was left unread), so a pusher that
    /// stalls mid-body does not hold a connection and its task for ever.
    #[arg(long, env = "PUSHGATE_BODY_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub body_timeout: Duration,

    /// On shutdown, WebSockets are closed with 1001 at random moments spread over this
    /// window, so that clients do not all reconnect to the remaining nodes at once.
    #[arg(long, env = "PUSHGATE_DRAIN_WINDOW", default_value = "5s", value_parser = duration)]
    pub drain_window: Duration,

    /// Deadline for the whole shutdown (drain window included); the process exits then.
    #[arg(long, env = "PUSHGATE_SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "PUSHGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing-subscriber syntax, e.g. `info` or `pushgate=debug`).
    #[arg(long, env = "PUSHGATE_LOG", default_value = "info")]
    pub log: String,

    /// NATS server URLs, comma-separated (e.g. `nats://10.0.0.5:4222`): turns cluster mode on,
    /// where a push reaches matching connections on every node (docs/CLUSTER.md). Empty: a
    /// single node.
    #[arg(
        long,
        env = "PUSHGATE_NATS_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub nats_url: Vec<String>,

    /// Cluster mode: user name for NATS, with `--nats-password`. Credentials may instead sit in
    /// the URL (`nats://user:password@host`); either way they are sent with the CONNECT only.
    #[arg(long, env = "PUSHGATE_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,

    /// Cluster mode: password for `--nats-user` (prefer the environment variable: a flag shows
    /// in the process list).
    #[arg(
        long,
        env = "PUSHGATE_NATS_PASSWORD",
        requires = "nats_user",
        hide_env_values = true
    )]
    pub nats_password: Option<String>,

    /// Cluster mode: token for NATS token authentication (or `nats://TOKEN@host`).
    #[arg(
        long,
        env = "PUSHGATE_NATS_TOKEN",
        conflicts_with = "nats_user",
        hide_env_values = true
    )]
    pub nats_token: Option<String>,

    /// Cluster mode: a NATS credentials file (`.creds`: a user JWT and its NKey seed, as
    /// `nsc` or a NATS provider writes it), for servers in operator (decentralized JWT) mode.
    /// Read at start; a new file takes effect at the next start.
    #[arg(
        long,
        env = "PUSHGATE_NATS_CREDS",
        conflicts_with_all = ["nats_user", "nats_token", "nats_nkey"]
    )]
    pub nats_creds: Option<PathBuf>,

    /// Cluster mode: a file holding a user NKey seed (`SU…`), for servers that list their
    /// users by public NKey. Read at start.
    #[arg(
        long,
        env = "PUSHGATE_NATS_NKEY",
        conflicts_with_all = ["nats_user", "nats_token"]
    )]
    pub nats_nkey: Option<PathBuf>,

    /// Cluster mode: PEM file of the CA certificates that sign the NATS servers' certificates;
    /// turns TLS on for every server (as a `tls://` URL does).
    #[arg(long, env = "PUSHGATE_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Cluster mode: this node's client certificate (PEM), for servers that verify clients;
    /// with `--nats-tls-key`.
    #[arg(long, env = "PUSHGATE_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// Cluster mode: the private key (PEM) of `--nats-tls-cert`.
    #[arg(long, env = "PUSHGATE_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,

    /// Cluster mode: first tokens of every NATS subject the nodes use. All nodes of a cluster
    /// need the same; two clusters with different prefixes can share one NATS account.
    #[arg(long, env = "PUSHGATE_NATS_SUBJECT_PREFIX", default_value = crate::cluster::bucket::DEFAULT_SUBJECT_PREFIX)]
    pub nats_subject_prefix: String,

    /// Cluster mode: how long a push waits for other nodes' counts before answering with
    /// what it has (and `X-Pushgate-Partial: true`).
    #[arg(long, env = "PUSHGATE_CLUSTER_REPLY_TIMEOUT", default_value = "50ms", value_parser = duration)]
    pub cluster_reply_timeout: Duration,
}

/// A configuration that parses but cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--shards must be at least 1")]
    NoShards,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("{flag} must start with '/' and hold no space, '?' or '#' (got {value:?})")]
    BadPath { flag: &'static str, value: String },
    #[error("--ws-path, --push-path and --metrics-path must differ")]
    PathClash,
    #[error("--listen and --internal-listen must differ")]
    ListenerClash,
    #[error("push keys must not be empty")]
    EmptyPushKey,
    #[error("--log {filter:?}: {reason}")]
    LogFilter { filter: String, reason: String },
    #[error("--alertmanager-receiver {0:?}: expected RECEIVER=USER1,USER2 (a name and at least one user)")]
    AlertmanagerReceiver(String),
    #[error("{place}: a push key is one word of visible ASCII (no spaces; `#` comments go on their own line)")]
    InvalidPushKey { place: String },
    #[error("cannot read --push-keys-file {path}: {reason}")]
    PushKeysFile { path: String, reason: String },
    #[error("--public-push exposes pushing to the internet: it requires --push-keys or --push-keys-file")]
    PublicPushWithoutKeys,
    #[error("--idle-timeout must be longer than --ping-interval")]
    IdleShorterThanPing,
    #[error("--shutdown-timeout must be longer than --drain-window")]
    ShutdownShorterThanDrain,
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("cluster mode: {0}")]
    Nats(String),
    #[error("--push-keys-file {path} holds no key: pushes would need none, so anyone reaching the internal listener could push (leave the flag out to run without keys)")]
    PushKeysFileEmpty { path: String },
    #[error("{flag} is only read with --auth {mode}; with --auth {actual} it would be ignored (give --auth {mode}, or leave the flag out)")]
    AuthFlagWithoutMode {
        flag: &'static str,
        mode: &'static str,
        actual: &'static str,
    },
    #[error("{0} is a cluster setting: it needs --nats-url")]
    ClusterFlagWithoutNats(&'static str),
    #[error("{flag} is at most {max} (got {value})")]
    TooLarge {
        flag: &'static str,
        max: usize,
        value: usize,
    },
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    #[error("--ping-interval {0:?} is under 100ms: every connection would be pinged that often (`1ms` for `1m`?)")]
    PingTooOften(Duration),
    #[error("--allowed-origins {0:?}: an origin is scheme://host[:port], as browsers send it (no path, no trailing slash; leave the flag out to allow any origin)")]
    BadOrigin(String),
    #[error("{flag} {value:?}: the gateway serves {reserved} there itself")]
    ReservedPath {
        flag: &'static str,
        value: String,
        reserved: &'static str,
    },
}

impl Config {
    /// Defaults for an embedded gateway (tests): every flag at its default, except that
    /// shutdown closes connections at once rather than over a drain window.
    pub fn for_tests() -> Self {
        let mut config = Self::parse_from(["pushgate"]);
        config.drain_window = Duration::ZERO;
        config
    }

    /// Drops the empty entries of comma-separated lists: `PUSHGATE_NATS_URL=` (an empty line
    /// in an env file) means a single node, as documented, not a server named "", and an
    /// empty `PUSHGATE_ALLOWED_ORIGINS=` means any origin, not none.
    pub fn normalize(&mut self) {
        for list in [&mut self.nats_url, &mut self.allowed_origins] {
            list.retain(|entry| !entry.trim().is_empty());
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_counts()?;
        self.check_paths()?;
        self.check_mode_flags()?;
        for origin in &self.allowed_origins {
            if !is_origin(origin.trim()) {
                return Err(ConfigError::BadOrigin(origin.clone()));
            }
        }
        self.check_rest()
    }

    /// Counts and sizes: none may be zero; those that size memory or threads up front are
    /// bounded, so that a typo is refused rather than a panic or an abort at start.
    fn check_counts(&self) -> Result<(), ConfigError> {
        if self.shards == Some(0) {
            return Err(ConfigError::NoShards);
        }
        if self.worker_threads == Some(0) {
            return Err(ConfigError::Zero("--worker-threads"));
        }
        for (flag, value) in [
            ("--shard-queue", self.shard_queue),
            ("--conn-queue-frames", self.conn_queue_frames),
            ("--conn-queue-bytes", self.conn_queue_bytes),
            ("--max-message-size", self.max_message_size),
            ("--max-push-body", self.max_push_body),
            ("--max-batch", self.max_batch),
            ("--max-name-length", self.max_name_length),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        for (flag, value, max) in [
            ("--shards", self.shards.unwrap_or(1), MAX_SHARDS),
            (
                "--worker-threads",
                self.worker_threads.unwrap_or(1),
                MAX_WORKERS,
            ),
            ("--shard-queue", self.shard_queue, MAX_SHARD_QUEUE),
            ("--max-push-body", self.max_push_body, MAX_BYTES),
            ("--max-message-size", self.max_message_size, MAX_BYTES),
            ("--conn-queue-bytes", self.conn_queue_bytes, MAX_BYTES),
        ] {
            if value > max {
                return Err(ConfigError::TooLarge { flag, max, value });
            }
        }
        Ok(())
    }

    /// Paths: well formed, distinct, and not one the gateway answers itself.
    fn check_paths(&self) -> Result<(), ConfigError> {
        for (flag, value) in [
            ("--ws-path", &self.ws_path),
            ("--push-path", &self.push_path),
            ("--metrics-path", &self.metrics_path),
        ] {
            let well_formed = value.starts_with('/')
                && value
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
            if !well_formed {
                return Err(ConfigError::BadPath {
                    flag,
                    value: value.clone(),
                });
            }
            let reserved = match value.as_str() {
                "/healthz" | "/readyz" => Some("health checks"),
                "/demo" => Some("the demo page"),
                v if v == "/api/v2" || v.starts_with("/api/v2/") => Some("the v2 API"),
                _ => None,
            };
            if let Some(reserved) = reserved {
                return Err(ConfigError::ReservedPath {
                    flag,
                    value: value.clone(),
                    reserved,
                });
            }
        }
        if self.ws_path == self.push_path
            || self.ws_path == self.metrics_path
            || self.push_path == self.metrics_path
        {
            return Err(ConfigError::PathClash);
        }
        Ok(())
    }

    /// Flags of an authenticator or of cluster mode given without it: silently ignoring
    /// `--static-tokens` would run the identity authenticator, where any client may claim
    /// any user.
    fn check_mode_flags(&self) -> Result<(), ConfigError> {
        let actual = self.auth.name();
        for (flag, given, mode) in [
            (
                "--static-tokens",
                self.static_tokens.is_some(),
                AuthMode::Static,
            ),
            ("--jwt-key", !self.jwt_keys.is_empty(), AuthMode::Jwt),
            ("--jwt-audience", self.jwt_audience.is_some(), AuthMode::Jwt),
            ("--jwt-issuer", self.jwt_issuer.is_some(), AuthMode::Jwt),
            (
                "--auth-http-url",
                self.auth_http_url.is_some(),
                AuthMode::Http,
            ),
        ] {
            if given && self.auth != mode {
                return Err(ConfigError::AuthFlagWithoutMode {
                    flag,
                    mode: mode.name(),
                    actual,
                });
            }
        }
        if self.nats_url.is_empty() {
            for (flag, given) in [
                ("--nats-user", self.nats_user.is_some()),
                ("--nats-token", self.nats_token.is_some()),
                ("--nats-creds", self.nats_creds.is_some()),
                ("--nats-nkey", self.nats_nkey.is_some()),
                ("--nats-tls-ca", self.nats_tls_ca.is_some()),
                ("--nats-tls-cert", self.nats_tls_cert.is_some()),
            ] {
                if given {
                    return Err(ConfigError::ClusterFlagWithoutNats(flag));
                }
            }
        }
        Ok(())
    }

    fn check_rest(&self) -> Result<(), ConfigError> {
        if self.listen == self.internal_listen && self.listen.port() != 0 {
            return Err(ConfigError::ListenerClash);
        }
        let keys = self.load_push_keys()?;
        if let Some(path) = &self.push_keys_file {
            // Refused on SIGHUP for the same reason: a file that is not mounted yet, or whose
            // keys are all commented out, must not open pushing to anyone.
            if keys.len() == self.push_keys.len() {
                return Err(ConfigError::PushKeysFileEmpty {
                    path: path.display().to_string(),
                });
            }
        }
        if self.public_push && keys.is_empty() {
            return Err(ConfigError::PublicPushWithoutKeys);
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(ConfigError::IdleShorterThanPing);
        }
        if self.shutdown_timeout <= self.drain_window {
            return Err(ConfigError::ShutdownShorterThanDrain);
        }
        // Durations that mean nothing at zero: a ping on every poll, connections closed
        // before they can register, requests timed out before they arrive.
        for (flag, value) in [
            ("--ping-interval", self.ping_interval),
            ("--register-timeout", self.register_timeout),
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--auth-http-timeout", self.auth_http_timeout),
            ("--cluster-reply-timeout", self.cluster_reply_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration(flag));
            }
        }
        if self.ping_interval < MIN_PING_INTERVAL {
            return Err(ConfigError::PingTooOften(self.ping_interval));
        }
        if !self.nats_url.is_empty() {
            crate::cluster::connect::check(self)
                .map_err(|error| ConfigError::Nats(error.to_string()))?;
        }
        check_log_filter(&self.log)?;
        for spec in &self.alertmanager_receivers {
            let well_formed = spec.split_once('=').is_some_and(|(name, users)| {
                !name.trim().is_empty() && users.split(',').any(|u| !u.trim().is_empty())
            });
            if !well_formed {
                return Err(ConfigError::AlertmanagerReceiver(spec.clone()));
            }
        }
        Ok(())
    }

    /// Every push key, from `--push-keys` and `--push-keys-file`. A key must be what an
    /// `Authorization: Bearer` header can carry intact: one word of visible ASCII. So a
    /// file line like `key # old one` is refused at startup instead of becoming a key
    /// nobody can send.
    pub fn load_push_keys(&self) -> Result<Vec<Vec<u8>>, ConfigError> {
        fn check(key: &str, place: impl FnOnce() -> String) -> Result<Vec<u8>, ConfigError> {
            if key.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(key.as_bytes().to_vec())
            } else {
                Err(ConfigError::InvalidPushKey { place: place() })
            }
        }
        let mut keys = Vec::new();
        for (index, key) in self.push_keys.iter().enumerate() {
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError::EmptyPushKey);
            }
            keys.push(check(key, || format!("--push-keys, key {}", index + 1))?);
        }
        if let Some(path) = &self.push_keys_file {
            let text =
                std::fs::read_to_string(path).map_err(|error| ConfigError::PushKeysFile {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                })?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(check(line, || {
                    format!("--push-keys-file {} line {}", path.display(), number + 1)
                })?);
            }
        }
        Ok(keys)
    }

    /// Runtime worker threads, resolving the default (one per core).
    pub fn worker_count(&self) -> usize {
        self.worker_threads.unwrap_or_else(available_cores)
    }

    /// Shard count, resolving the default.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(available_cores)
    }

    /// The global connection cap, resolving the default from the open-file limit.
    pub fn connection_cap(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let limit = crate::metrics::process::ProcessStats::read().max_fds as usize;
        // Keep room for the listeners, pushers, scrapes and logs.
        limit.saturating_sub(limit / 20 + 64).max(1)
    }

    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_frames: self.conn_queue_frames,
            max_bytes: self.conn_queue_bytes,
        }
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

// Most shards, worker threads, shard-queue slots and bytes a gateway may be given: far above
// any use, low enough that a typo is refused before it costs gigabytes or panics tokio.
const MAX_SHARDS: usize = 4096;
const MAX_WORKERS: usize = 1024;
const MAX_SHARD_QUEUE: usize = 1 << 24;
/// A push body, a client's message or a connection's queue: 1 GiB.
const MAX_BYTES: usize = 1 << 30;

/// Shortest ping interval: below it pings cost every connection more than they find out
/// (a dead peer is noticed at `--idle-timeout` anyway), and `1ms` is a typo of `1m`.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(100);

/// An origin as a browser sends it: `http` or `https`, `://`, a host, an optional port; no
/// path, query or trailing slash (which no browser's Origin header holds, so such an entry
/// would match nothing and lock every page out).
fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return false;
    }
    // `[v6]` or a name / IPv4 address, then an optional `:port`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after))
                if !v6.is_empty()
                    && v6
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                (v6, after.strip_prefix(':'))
            }
            _ => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    port_ok && host_ok
}

/// The log filter must parse, and a directive without `=` must be a level: tracing takes
/// a bare word such as `verbose` for a target name and then logs nothing at all, which is
/// a configuration mistake, not a wish.
/// An empty filter is refused for the same reason.
fn check_log_filter(filter: &str) -> Result<(), ConfigError> {
    let refuse = |reason: String| ConfigError::LogFilter {
        filter: filter.to_owned(),
        reason,
    };
    if filter
        .split(',')
        .all(|directive| directive.trim().is_empty())
    {
        return Err(refuse(
            "empty: nothing would be logged, warnings included (use `off` to mean that)".into(),
        ));
    }
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| refuse(e.to_string()))?;
    const LEVELS: [&str; 12] = [
        "trace", "debug", "info", "warn", "error", "off", "0", "1", "2", "3", "4", "5",
    ];
    for directive in filter.split(',').map(str::trim) {
        if !directive.is_empty()
            && !directive.contains('=')
            && !LEVELS.iter().any(|l| directive.eq_ignore_ascii_case(l))
        {
            return Err(refuse(format!(
                "{directive:?} is neither a level ({}) nor TARGET=LEVEL",
                LEVELS.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("pushgate").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_safe() {
        let config = parse(&[]);
        config.validate().unwrap();
        assert_eq!(config.drain_window, Duration::from_secs(5));
        assert!(config.listen.ip().is_loopback());
        assert!(config.internal_listen.ip().is_loopback());
        assert_eq!(config.listen.port(), 8080);
        assert!(!config.public_push);
        assert_eq!(
            (config.ws_path.as_str(), config.push_path.as_str()),
            ("/ws", "/push")
        );
        assert_eq!(config.ping_interval, Duration::from_secs(30));
        assert_eq!(config.max_events_per_connection, 16);
        assert_eq!(config.max_name_length, 512);
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(
            parse(&["--shards", "0"]).validate(),
            Err(ConfigError::NoShards)
        );
        assert!(matches!(
            parse(&["--ws-path", "ws"]).validate(),
            Err(ConfigError::BadPath { .. })
        ));
        assert_eq!(
            parse(&["--push-path", "/ws"]).validate(),
            Err(ConfigError::PathClash)
        );
        assert_eq!(
            parse(&["--public-push"]).validate(),
            Err(ConfigError::PublicPushWithoutKeys)
        );
        assert_eq!(
            parse(&["--public-push", "--push-keys", "k"]).validate(),
            Ok(())
        );
        assert_eq!(
            parse(&["--idle-timeout", "10s", "--ping-interval", "10s"]).validate(),
            Err(ConfigError::IdleShorterThanPing)
        );
        for flag in [
            "--ping-interval",
            "--register-timeout",
            "--header-timeout",
            "--body-timeout",
            "--auth-http-timeout",
            "--cluster-reply-timeout",
        ] {
            assert_eq!(
                parse(&[flag, "0s"]).validate(),
                Err(ConfigError::ZeroDuration(flag)),
                "{flag}"
            );
        }
        assert!(matches!(
            parse(&["--push-keys-file", "/nonexistent/keys"]).validate(),
            Err(ConfigError::PushKeysFile { .. })
        ));
        assert!(Config::try_parse_from(["pushgate", "--listen", "nowhere"]).is_err());
        assert!(Config::try_parse_from(["pushgate", "--ping-interval", "soon"]).is_err());
        assert_eq!(
            parse(&["--ping-interval", "1ms"]).validate(),
            Err(ConfigError::PingTooOften(Duration::from_millis(1)))
        );
        assert_eq!(parse(&["--ping-interval", "100ms"]).validate(), Ok(()));
    }

    #[test]
    fn an_empty_list_entry_is_no_entry() {
        let mut config = parse(&["--nats-url", "", "--allowed-origins", " , "]);
        config.normalize();
        assert!(config.nats_url.is_empty(), "a single node");
        assert!(config.allowed_origins.is_empty(), "any origin");
        config.validate().unwrap();
        let mut config = parse(&["--nats-url", "nats://a:4222, ,nats://b:4222"]);
        config.normalize();
        assert_eq!(config.nats_url, ["nats://a:4222", "nats://b:4222"]);
    }

    #[test]
    fn a_push_keys_file_with_no_key_is_refused_at_start() {
        let path = std::env::temp_dir().join(format!("pushgate-nokeys-{}", std::process::id()));
        std::fs::write(&path, "# all commented out\n# old-key\n\n").unwrap();
        let flag_path = path.to_str().unwrap();
        assert!(matches!(
            parse(&["--push-keys-file", flag_path]).validate(),
            Err(ConfigError::PushKeysFileEmpty { .. })
        ));
        // Keys given on the command line do not make up for an empty file.
        assert!(matches!(
            parse(&["--push-keys", "k", "--push-keys-file", flag_path]).validate(),
            Err(ConfigError::PushKeysFileEmpty { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn flags_of_a_mode_not_in_force_are_refused() {
        for (args, flag) in [
            (&["--static-tokens", "/etc/tokens"][..], "--static-tokens"),
            (&["--jwt-key", "default=HS256:/k"], "--jwt-key"),
            (&["--auth", "static", "--jwt-issuer", "me"], "--jwt-issuer"),
            (&["--auth-http-url", "http://auth"], "--auth-http-url"),
        ] {
            assert!(
                matches!(
                    parse(args).validate(),
                    Err(ConfigError::AuthFlagWithoutMode { flag: f, .. }) if f == flag
                ),
                "{args:?}"
            );
        }
        for flag in [
            "--nats-tls-ca",
            "--nats-creds",
            "--nats-nkey",
            "--nats-token",
        ] {
            assert_eq!(
                parse(&[flag, "x"]).validate(),
                Err(ConfigError::ClusterFlagWithoutNats(flag))
            );
        }
    }

    #[test]
    fn sizes_that_would_panic_or_exhaust_memory_are_refused() {
        for (flag, value) in [
            ("--shard-queue", "2305843009213693952"),
            ("--shards", "100000"),
            ("--worker-threads", "100000"),
            ("--max-push-body", "1073741825"),
            ("--max-message-size", "10000000000"),
            ("--conn-queue-bytes", "1073741825"),
        ] {
            assert!(
                matches!(
                    parse(&[flag, value]).validate(),
                    Err(ConfigError::TooLarge { flag: f, .. }) if f == flag
                ),
                "{flag}"
            );
        }
        assert_eq!(parse(&["--shards", "4096"]).validate(), Ok(()));
        assert_eq!(parse(&["--max-push-body", "1073741824"]).validate(), Ok(()));
    }

    #[test]
    fn paths_the_gateway_answers_itself_or_that_cannot_match_are_refused() {
        for (flag, value) in [
            ("--metrics-path", "/healthz"),
            ("--ws-path", "/readyz"),
            ("--push-path", "/api/v2/push"),
            ("--ws-path", "/demo"),
        ] {
            assert!(
                matches!(
                    parse(&[flag, value]).validate(),
                    Err(ConfigError::ReservedPath { .. })
                ),
                "{flag} {value}"
            );
        }
        for value in ["/a b", "/ws?x", "/ws#x"] {
            assert!(matches!(
                parse(&["--ws-path", value]).validate(),
                Err(ConfigError::BadPath { .. })
            ));
        }
        assert_eq!(parse(&["--push-path", "/api/v1/push"]).validate(), Ok(()));
    }

    #[test]
    fn origins_must_be_what_browsers_send() {
        for origin in [
            "https://app.example",
            "http://localhost:3000",
            "https://[::1]:8443",
            "http://10.0.0.5",
        ] {
            assert_eq!(
                parse(&["--allowed-origins", origin]).validate(),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "https://a.example/",
            "*",
            "a.example",
            "ftp://a.example",
            "https://a.example:port",
            "https://",
        ] {
            assert_eq!(
                parse(&["--allowed-origins", origin]).validate(),
                Err(ConfigError::BadOrigin(origin.into())),
                "{origin}"
            );
        }
    }

    #[test]
    fn an_empty_log_filter_is_refused() {
        for filter in ["", ",", " , "] {
            assert!(matches!(
                parse(&["--log", filter]).validate(),
                Err(ConfigError::LogFilter { .. })
            ));
        }
        assert_eq!(parse(&["--log", "off"]).validate(), Ok(()));
    }

    #[test]
    fn push_keys_come_from_flags_and_file() {
        let path = std::env::temp_dir().join(format!("pushgate-keys-{}", std::process::id()));
        std::fs::write(&path, "# rotation\nnew-key\n\n  old-key  \n").unwrap();
        let config = parse(&[
            "--push-keys",
            "a,b",
            "--push-keys-file",
            path.to_str().unwrap(),
        ]);
        let keys = config.load_push_keys().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            keys,
            vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b"new-key".to_vec(),
                b"old-key".to_vec()
            ]
        );
    }

    #[test]
    fn log_filters_max_batch_and_receivers_are_checked() {
        for good in [
            "info",
            "warn,pushgate=debug",
            "pushgate::http=trace",
            "OFF",
            "3",
        ] {
            assert!(parse(&["--log", good]).validate().is_ok(), "{good}");
        }
        for bad in ["verbose", "warn,pushgate=bogus", "pushgate=bogus["] {
            assert!(
                matches!(
                    parse(&["--log", bad]).validate(),
                    Err(ConfigError::LogFilter { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(&["--max-batch", "0"]).validate(),
            Err(ConfigError::Zero("--max-batch"))
        ));
        assert!(parse(&["--alertmanager-receiver", "ops=ann, bob"])
            .validate()
            .is_ok());
        for bad in ["bad", "=u1", "r=", "r= , "] {
            assert!(
                matches!(
                    parse(&["--alertmanager-receiver", bad]).validate(),
                    Err(ConfigError::AlertmanagerReceiver(_))
                ),
                "{bad}"
            );
        }
    }

    /// A key no `Authorization: Bearer` header can carry intact (an inline comment, inner
    /// spaces, a control character) is a startup error naming where it is, not a key that
    /// silently never matches.
    #[test]
    fn a_push_key_that_cannot_be_sent_is_refused_with_its_place() {
        let path = std::env::temp_dir().join(format!("pushgate-badkeys-{}", std::process::id()));
        std::fs::write(
            &path,
            "# keys
fine-key
new-key # rotated in May
",
        )
        .unwrap();
        let error = parse(&["--push-keys-file", path.to_str().unwrap()])
            .load_push_keys()
            .unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(&error, ConfigError::InvalidPushKey { place } if place.ends_with("line 3")),
            "{error}"
        );
        for keys in ["good,two words", "good,tab\there"] {
            assert!(matches!(
                parse(&["--push-keys", keys]).load_push_keys(),
                Err(ConfigError::InvalidPushKey { .. })
            ));
        }
        let keys = parse(&["--push-keys", "b64+/key==,hex-0f,dotted.key_~"]).load_push_keys();
        assert_eq!(keys.unwrap().len(), 3);
    }
}
