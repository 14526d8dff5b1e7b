//! Every metric pushgate exports: names in one place, handles resolved once.
//!
//! Each gateway instance owns its own Prometheus recorder (not the process-global one), so
//! several gateways can run in one test process and nothing depends on a lazy static. The
//! hot paths hold resolved handles: recording a cached histogram costs ~33 ns, a label lookup
//! per call would cost three times that. Names follow `pushgate_<noun>[_<unit>]`, counters
//! end in `_total`, units are seconds and bytes, and labels are bounded (`shard`, `result`,
//! `reason`): never a userID.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Fan-out latency buckets: 50 µs to 5 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

pub mod names {
    pub const CONNECTIONS: &str = "pushgate_connections";
    pub const SHARD_CONNECTIONS: &str = "pushgate_shard_connections";
    pub const SHARD_USERS: &str = "pushgate_shard_users";
    pub const SHARD_QUEUE_DEPTH: &str = "pushgate_shard_queue_depth";
    pub const REGISTRATIONS: &str = "pushgate_registrations_total";
    pub const PUSHES: &str = "pushgate_pushes_total";
    pub const BATCH_ITEMS: &str = "pushgate_batch_items_total";
    pub const DELIVERIES: &str = "pushgate_deliveries_total";
    pub const FRAMES_WRITTEN: &str = "pushgate_frames_written_total";
    pub const SOCKET_WRITES: &str = "pushgate_socket_writes_total";
    pub const WRITES_HANDED_OVER: &str = "pushgate_writes_handed_over_total";
    pub const OUTBOUND_BYTES: &str = "pushgate_outbound_bytes_total";
    pub const CLOSES: &str = "pushgate_connection_closes_total";
    pub const FRAMES_DROPPED: &str = "pushgate_frames_dropped_total";
    pub const FRAMES_DISCARDED: &str = "pushgate_frames_discarded_total";
    pub const CONNECTIONS_REFUSED: &str = "pushgate_connections_refused_total";
    pub const HTTP_ERRORS: &str = "pushgate_http_errors_total";
    pub const AUTH_REJECTIONS: &str = "pushgate_auth_rejections_total";
    pub const INVALID_TEXT_REPLACED: &str = "pushgate_invalid_text_replaced_total";
    pub const FANOUT_LATENCY: &str = "pushgate_fanout_latency_seconds";
    pub const PUSH_DURATION: &str = "pushgate_push_duration_seconds";
    pub const CLUSTER_CONNECTED: &str = "pushgate_cluster_connected";
    pub const CLUSTER_PEERS: &str = "pushgate_cluster_peers";
    pub const CLUSTER_BUCKETS: &str = "pushgate_cluster_buckets";
    pub const CLUSTER_SUBSCRIPTION_CHANGES: &str = "pushgate_cluster_subscription_changes_total";
    pub const CLUSTER_MESSAGES: &str = "pushgate_cluster_messages_total";
    pub const CLUSTER_PARTIAL_REPLIES: &str = "pushgate_cluster_partial_replies_total";
    pub const CLUSTER_INVALID_MESSAGES: &str = "pushgate_cluster_invalid_messages_total";
}

/// Outcome of a register frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterResult {
    /// The connection was bound to (user, event).
    Ok,
    /// The bound user added another event.
    AddedEvent,
    /// The same (user, event) again: nothing to do.
    Duplicate,
    /// Not a JSON object of the register shape.
    Malformed,
    /// Empty token or event.
    EmptyField,
    /// A binary frame where a register frame was expected.
    Binary,
    /// The authenticator refused the token.
    TokenRejected,
    /// The authenticator could not answer.
    AuthUnavailable,
    /// The token names another user than the one the connection is bound to.
    UserConflict,
    /// The connection already holds `--max-events-per-connection` events.
    TooManyEvents,
    /// The user already holds `--max-connections-per-user` connections: closed with 4029.
    UserCap,
    /// The userID or the event is longer than `--max-name-length`.
    NameTooLong,
}

impl RegisterResult {
    const ALL: [Self; 12] = [
        Self::Ok,
        Self::AddedEvent,
        Self::Duplicate,
        Self::Malformed,
        Self::EmptyField,
        Self::Binary,
        Self::TokenRejected,
        Self::AuthUnavailable,
        Self::UserConflict,
        Self::TooManyEvents,
        Self::UserCap,
        Self::NameTooLong,
    ];
    /// The metric label, also the word the debug log uses.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::AddedEvent => "added_event",
            Self::Duplicate => "duplicate",
            Self::Malformed => "malformed",
            Self::EmptyField => "empty_field",
            Self::Binary => "binary",
            Self::TokenRejected => "token_rejected",
            Self::AuthUnavailable => "auth_unavailable",
            Self::UserConflict => "user_conflict",
            Self::TooManyEvents => "too_many_events",
            Self::NameTooLong => "name_too_long",
            Self::UserCap => "user_cap",
        }
    }
}

/// Outcome of a push request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushResult {
    Ok,
    BadRequest,
    Unauthorized,
    Overloaded,
    TooLarge,
    MethodNotAllowed,
    /// The body did not arrive within `--body-timeout`.
    BodyTimeout,
    /// Refused with 503 because the gateway is draining (shutting down).
    Draining,
}

impl PushResult {
    const ALL: [Self; 8] = [
        Self::Ok,
        Self::BadRequest,
        Self::Unauthorized,
        Self::Overloaded,
        Self::TooLarge,
        Self::MethodNotAllowed,
        Self::BodyTimeout,
        Self::Draining,
    ];
    /// The metric label, also the word the debug log uses.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Overloaded => "overloaded",
            Self::TooLarge => "too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTimeout => "body_timeout",
            Self::Draining => "draining",
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close frame.
    Client,
    /// The socket ended without a close frame (EOF, reset, read or write error).
    Reset,
    /// The outbound queue overflowed.
    SlowConsumer,
    /// RFC 6455 violation (1002).
    ProtocolError,
    /// Invalid UTF-8 (1007).
    InvalidPayload,
    /// Message above the limit (1009).
    MessageTooBig,
    /// The gateway is shutting down (1001).
    Shutdown,
    /// Nothing heard from the client within the idle timeout (4002).
    IdleTimeout,
    /// No registration within the register timeout (4003).
    RegisterTimeout,
    /// The user already holds the most connections allowed (4029).
    UserCap,
    /// The token was refused and the client asked for an ack (4401).
    Unauthorized,
    /// The token expired while connected (4408).
    TokenExpired,
    /// Closed by `POST /api/v2/disconnect` (4000).
    Disconnected,
}

impl CloseReason {
    const ALL: [Self; 13] = [
        Self::Client,
        Self::Reset,
        Self::SlowConsumer,
        Self::ProtocolError,
        Self::InvalidPayload,
        Self::MessageTooBig,
        Self::Shutdown,
        Self::IdleTimeout,
        Self::RegisterTimeout,
        Self::UserCap,
        Self::Unauthorized,
        Self::TokenExpired,
        Self::Disconnected,
    ];
    /// The metric label, also the word the debug log uses.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Reset => "reset",
            Self::SlowConsumer => "slow_consumer",
            Self::ProtocolError => "protocol_error",
            Self::InvalidPayload => "invalid_payload",
            Self::MessageTooBig => "message_too_big",
            Self::Shutdown => "shutdown",
            Self::IdleTimeout => "idle_timeout",
            Self::RegisterTimeout => "register_timeout",
            Self::UserCap => "user_cap",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::Disconnected => "disconnected",
        }
    }
}

/// Why a connection was refused before it became a WebSocket (or, for `UserCap`, at its
/// register frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// `--max-connections` reached (503).
    GlobalCap,
    /// `--max-connections-per-user` reached (close 4029).
    UserCap,
    /// `accept` failed for lack of file descriptors (503 from the reserve descriptor).
    FdExhausted,
    /// Origin not in `--allowed-origins` (403).
    Origin,
    /// The gateway is draining (503).
    Draining,
    /// Not a valid WebSocket handshake: not GET (405), no upgrade headers, a bad key or an
    /// unsupported version (400).
    BadHandshake,
}

impl RefusalReason {
    const ALL: [Self; 6] = [
        Self::GlobalCap,
        Self::UserCap,
        Self::FdExhausted,
        Self::Origin,
        Self::Draining,
        Self::BadHandshake,
    ];
    /// The metric label, also the word the debug log uses.
    pub fn label(self) -> &'static str {
        match self {
            Self::GlobalCap => "global_cap",
            Self::UserCap => "user_cap",
            Self::FdExhausted => "fd_exhausted",
            Self::Origin => "origin",
            Self::Draining => "draining",
            Self::BadHandshake => "bad_handshake",
        }
    }
}

/// How an HTTP connection ended in an error hyper saw before any handler did (a handler's
/// own refusals are counted by the handler: pushes, upgrades).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// A request hyper could not parse (answered 400): a bad request line, header or
    /// `Content-Length`, a folded header.
    Malformed,
    /// A request line or header section too large (answered 414 or 431).
    TooLarge,
    /// No complete header section within `--header-timeout` (the connection is closed).
    HeaderTimeout,
    /// The client closed the connection in the middle of a request.
    Incomplete,
    /// Anything else: a reset, a failed write.
    Other,
}

impl HttpErrorKind {
    const ALL: [Self; 5] = [
        Self::Malformed,
        Self::TooLarge,
        Self::HeaderTimeout,
        Self::Incomplete,
        Self::Other,
    ];

    /// The kind of a connection error hyper returned (a head timeout is hyper's own, or the
    /// `TimedOut` read error of the internal listener's `HeadDeadline`).
    pub fn of(error: &hyper::Error) -> Self {
        let read_timed_out = std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if error.is_parse_too_large() {
            Self::TooLarge
        } else if error.is_parse() || error.is_parse_status() {
            Self::Malformed
        } else if error.is_timeout() || read_timed_out {
            Self::HeaderTimeout
        } else if error.is_incomplete_message() {
            Self::Incomplete
        } else {
            Self::Other
        }
    }

    /// The metric label, also the word the debug log uses.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::HeaderTimeout => "header_timeout",
            Self::Incomplete => "incomplete",
            Self::Other => "other",
        }
    }
}

/// Why a frame bound for a connection was not queued, or was thrown away once queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The connection's queue overflowed: it is closed as a slow consumer.
    SlowConsumer,
    /// The connection was closing, or died (reset, failed write, close not taken in time).
    Closed,
}

/// Per-shard gauges.
#[derive(Clone)]
pub struct ShardGauges {
    pub connections: Gauge,
    pub users: Gauge,
    pub queue_depth: Gauge,
}

/// Cluster mode's metrics (docs/CLUSTER.md); they stay at 0 on a single node.
pub struct ClusterMetrics {
    /// 1 while connected to NATS.
    pub connected: Gauge,
    /// Peers heard from within the presence TTL.
    pub peers: Gauge,
    /// Buckets this node is subscribed to.
    pub buckets: Gauge,
    pub subscribes: Counter,
    pub unsubscribes: Counter,
    /// Pushes published to other nodes.
    pub published: Counter,
    /// Pushes received from other nodes.
    pub received: Counter,
    /// Pushes answered with a lower bound (`X-Pushgate-Partial: true`).
    pub partial: Counter,
    /// Cluster messages that could not be decoded.
    pub invalid: Counter,
}

/// Resolved handles for every metric, plus the handle that renders them.
pub struct Metrics {
    handle: PrometheusHandle,
    pub connections: Gauge,
    pub deliveries: Counter,
    pub frames_written: Counter,
    pub writes: Counter,
    pub handed_over: Counter,
    pub outbound_bytes: Counter,
    pub fanout_latency: Histogram,
    pub push_duration: Histogram,
    /// v1 push bodies whose invalid text was replaced with U+FFFD.
    pub invalid_text_push: Counter,
    /// Register frames whose invalid text was replaced with U+FFFD.
    pub invalid_text_register: Counter,
    pub cluster: ClusterMetrics,
    registrations: Vec<Counter>,
    pushes: Vec<Counter>,
    batch_items: Vec<Counter>,
    closes: Vec<Counter>,
    refusals: Vec<Counter>,
    /// Indexed by listener (public, internal) times [`HttpErrorKind`].
    http_errors: Vec<Counter>,
    auth_rejections: Vec<Counter>,
    dropped_slow: Counter,
    dropped_closed: Counter,
    discarded_slow: Counter,
    discarded_closed: Counter,
    shards: Vec<ShardGauges>,
}

static METADATA: Metadata<'static> = Metadata::new("pushgate", metrics::Level::INFO, None);

impl Metrics {
    /// Builds a recorder for `shards` shards and resolves every handle.
    pub fn new(shards: usize) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(names::FANOUT_LATENCY.into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::PUSH_DURATION.into()),
                    LATENCY_BUCKETS,
                )
            })
            .expect("bucket lists are non-empty constants")
            .build_recorder();
        let handle = recorder.handle();

        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            (name, unit, SharedString::const_str(help))
        };
        for (name, unit, help) in [
            describe(
                names::CONNECTIONS,
                None,
                "Open WebSocket connections, bound or not.",
            ),
            describe(
                names::SHARD_CONNECTIONS,
                None,
                "Connections bound to a user, per shard.",
            ),
            describe(
                names::SHARD_USERS,
                None,
                "Users with at least one bound connection, per shard.",
            ),
            describe(
                names::SHARD_QUEUE_DEPTH,
                None,
                "Commands waiting in a shard's channel.",
            ),
            describe(names::REGISTRATIONS, None, "Register frames by result."),
            describe(names::PUSHES, None, "Push requests by result."),
            describe(
                names::BATCH_ITEMS,
                None,
                "Pushes carried by /api/v2/batch requests, by result of each item.",
            ),
            describe(
                names::DELIVERIES,
                None,
                "Frames queued to connections by pushes (the N of replies).",
            ),
            describe(
                names::FRAMES_WRITTEN,
                None,
                "Pushed frames handed to a socket.",
            ),
            describe(
                names::SOCKET_WRITES,
                None,
                "Vectored socket writes carrying pushed frames (frames written / writes = coalescing).",
            ),
            describe(
                names::WRITES_HANDED_OVER,
                None,
                "Shard writes that found the socket full and left the rest to the connection's task.",
            ),
            describe(
                names::OUTBOUND_BYTES,
                Some(Unit::Bytes),
                "Bytes written to WebSocket connections.",
            ),
            describe(names::CLOSES, None, "Connections ended, by reason."),
            describe(
                names::FRAMES_DROPPED,
                None,
                "Frames not queued to a matching connection, by reason.",
            ),
            describe(
                names::FRAMES_DISCARDED,
                None,
                "Frames queued to a connection (and counted in a push's reply) but thrown away unwritten when it closed, by reason.",
            ),
            describe(
                names::CONNECTIONS_REFUSED,
                None,
                "Connections refused, by reason.",
            ),
            describe(
                names::HTTP_ERRORS,
                None,
                "HTTP connections ended by an error before a handler saw the request, by listener and kind.",
            ),
            describe(
                names::AUTH_REJECTIONS,
                None,
                "Register tokens refused by the authenticator, by reason.",
            ),
            describe(
                names::INVALID_TEXT_REPLACED,
                None,
                "v1 push bodies and register frames holding bytes that are not UTF-8 or lone surrogate escapes, replaced with U+FFFD as the old server did, by source.",
            ),
            describe(
                names::FANOUT_LATENCY,
                Some(Unit::Seconds),
                "From push accepted to frame written to the socket, per delivery.",
            ),
            describe(
                names::PUSH_DURATION,
                Some(Unit::Seconds),
                "Push request handling time, body read to reply.",
            ),
            describe(
                names::CLUSTER_CONNECTED,
                None,
                "1 while connected to NATS (cluster mode), else 0.",
            ),
            describe(
                names::CLUSTER_PEERS,
                None,
                "Other nodes heard from within the presence TTL.",
            ),
            describe(
                names::CLUSTER_BUCKETS,
                None,
                "User buckets this node is subscribed to.",
            ),
            describe(
                names::CLUSTER_SUBSCRIPTION_CHANGES,
                None,
                "Bucket subscriptions made and dropped, by change.",
            ),
            describe(
                names::CLUSTER_MESSAGES,
                None,
                "Pushes exchanged with other nodes, by direction.",
            ),
            describe(
                names::CLUSTER_PARTIAL_REPLIES,
                None,
                "Push replies whose count misses nodes that did not answer in time.",
            ),
            describe(
                names::CLUSTER_INVALID_MESSAGES,
                None,
                "Cluster messages that could not be decoded.",
            ),
        ] {
            match name {
                n if n.ends_with("_total") => recorder.describe_counter(n.into(), unit, help),
                names::FANOUT_LATENCY | names::PUSH_DURATION => {
                    recorder.describe_histogram(name.into(), unit, help)
                }
                _ => recorder.describe_gauge(name.into(), unit, help),
            }
        }

        let counter = |name: &'static str, label: Option<(&'static str, &'static str)>| {
            let key = match label {
                Some((k, v)) => Key::from_parts(name, vec![Label::new(k, v)]),
                None => Key::from_name(name),
            };
            recorder.register_counter(&key, &METADATA)
        };
        let registrations = RegisterResult::ALL
            .iter()
            .map(|r| counter(names::REGISTRATIONS, Some(("result", r.label()))))
            .collect();
        let pushes = PushResult::ALL
            .iter()
            .map(|r| counter(names::PUSHES, Some(("result", r.label()))))
            .collect();
        let batch_items = PushResult::ALL
            .iter()
            .map(|r| counter(names::BATCH_ITEMS, Some(("result", r.label()))))
            .collect();
        let closes = CloseReason::ALL
            .iter()
            .map(|r| counter(names::CLOSES, Some(("reason", r.label()))))
            .collect();
        let refusals = RefusalReason::ALL
            .iter()
            .map(|r| counter(names::CONNECTIONS_REFUSED, Some(("reason", r.label()))))
            .collect();
        let http_errors = ["public", "internal"]
            .iter()
            .flat_map(|listener| {
                HttpErrorKind::ALL.iter().map(|kind| {
                    let labels = vec![
                        Label::new("listener", *listener),
                        Label::new("kind", kind.label()),
                    ];
                    recorder
                        .register_counter(&Key::from_parts(names::HTTP_ERRORS, labels), &METADATA)
                })
            })
            .collect();
        let auth_rejections = crate::auth::RejectReason::ALL
            .iter()
            .map(|r| counter(names::AUTH_REJECTIONS, Some(("reason", r.label()))))
            .collect();
        let shards = (0..shards)
            .map(|shard| {
                let labels = || vec![Label::new("shard", shard.to_string())];
                ShardGauges {
                    connections: recorder.register_gauge(
                        &Key::from_parts(names::SHARD_CONNECTIONS, labels()),
                        &METADATA,
                    ),
                    users: recorder
                        .register_gauge(&Key::from_parts(names::SHARD_USERS, labels()), &METADATA),
                    queue_depth: recorder.register_gauge(
                        &Key::from_parts(names::SHARD_QUEUE_DEPTH, labels()),
                        &METADATA,
                    ),
                }
            })
            .collect();

        let metrics = Self {
            connections: recorder.register_gauge(&Key::from_name(names::CONNECTIONS), &METADATA),
            deliveries: counter(names::DELIVERIES, None),
            frames_written: counter(names::FRAMES_WRITTEN, None),
            writes: counter(names::SOCKET_WRITES, None),
            handed_over: counter(names::WRITES_HANDED_OVER, None),
            outbound_bytes: counter(names::OUTBOUND_BYTES, None),
            fanout_latency: recorder
                .register_histogram(&Key::from_name(names::FANOUT_LATENCY), &METADATA),
            push_duration: recorder
                .register_histogram(&Key::from_name(names::PUSH_DURATION), &METADATA),
            invalid_text_push: counter(names::INVALID_TEXT_REPLACED, Some(("source", "push"))),
            invalid_text_register: counter(
                names::INVALID_TEXT_REPLACED,
                Some(("source", "register")),
            ),
            cluster: ClusterMetrics {
                connected: recorder
                    .register_gauge(&Key::from_name(names::CLUSTER_CONNECTED), &METADATA),
                peers: recorder.register_gauge(&Key::from_name(names::CLUSTER_PEERS), &METADATA),
                buckets: recorder
                    .register_gauge(&Key::from_name(names::CLUSTER_BUCKETS), &METADATA),
                subscribes: counter(
                    names::CLUSTER_SUBSCRIPTION_CHANGES,
                    Some(("change", "subscribe")),
                ),
                unsubscribes: counter(
                    names::CLUSTER_SUBSCRIPTION_CHANGES,
                    Some(("change", "unsubscribe")),
                ),
                published: counter(names::CLUSTER_MESSAGES, Some(("direction", "published"))),
                received: counter(names::CLUSTER_MESSAGES, Some(("direction", "received"))),
                partial: counter(names::CLUSTER_PARTIAL_REPLIES, None),
                invalid: counter(names::CLUSTER_INVALID_MESSAGES, None),
            },
            registrations,
            pushes,
            batch_items,
            closes,
            refusals,
            http_errors,
            auth_rejections,
            dropped_slow: counter(names::FRAMES_DROPPED, Some(("reason", "slow_consumer"))),
            dropped_closed: counter(names::FRAMES_DROPPED, Some(("reason", "closed"))),
            discarded_slow: counter(names::FRAMES_DISCARDED, Some(("reason", "slow_consumer"))),
            discarded_closed: counter(names::FRAMES_DISCARDED, Some(("reason", "closed"))),
            shards,
            handle,
        };
        // Gauges and counters exist from the first scrape, so dashboards never see gaps.
        metrics.connections.set(0.0);
        metrics.cluster.connected.set(0.0);
        metrics.cluster.peers.set(0.0);
        metrics.cluster.buckets.set(0.0);
        for shard in &metrics.shards {
            shard.connections.set(0.0);
            shard.users.set(0.0);
            shard.queue_depth.set(0.0);
        }
        metrics
    }

    pub fn registration(&self, result: RegisterResult) {
        self.registrations[result as usize].increment(1);
    }

    pub fn push(&self, result: PushResult) {
        self.pushes[result as usize].increment(1);
    }

    /// Counts one item of a batch: the request is counted once in `pushes_total`, its
    /// items here, so that an overloaded shard shows even when pushes come in batches.
    pub fn batch_item(&self, result: PushResult) {
        self.batch_items[result as usize].increment(1);
    }

    pub fn close(&self, reason: CloseReason) {
        self.closes[reason as usize].increment(1);
    }

    pub fn auth_rejected(&self, reason: crate::auth::RejectReason) {
        self.auth_rejections[reason as usize].increment(1);
    }

    /// Counts an HTTP connection that ended in `kind` of error on the public listener
    /// (`internal` false) or the internal one.
    pub fn http_error(&self, internal: bool, kind: HttpErrorKind) {
        let listener = usize::from(internal);
        self.http_errors[listener * HttpErrorKind::ALL.len() + kind as usize].increment(1);
    }

    pub fn refused(&self, reason: RefusalReason) {
        self.refusals[reason as usize].increment(1);
    }

    pub fn dropped(&self, reason: DropReason) {
        match reason {
            DropReason::SlowConsumer => self.dropped_slow.increment(1),
            DropReason::Closed => self.dropped_closed.increment(1),
        }
    }

    /// Counts `frames` pushed frames thrown away from a closing connection's queue.
    pub fn discarded(&self, reason: DropReason, frames: u64) {
        if frames == 0 {
            return;
        }
        match reason {
            DropReason::SlowConsumer => self.discarded_slow.increment(frames),
            DropReason::Closed => self.discarded_closed.increment(frames),
        }
    }

    /// Gauges of one shard.
    pub fn shard(&self, shard: usize) -> ShardGauges {
        self.shards[shard].clone()
    }

    /// Prometheus text exposition of every metric, process figures included.
    pub fn render(&self) -> String {
        let mut out = self.handle.render();
        super::process::ProcessStats::read().render(&mut out);
        out
    }

    /// Drains histogram samples into their buckets; must run periodically even when nobody
    /// scrapes, or samples pile up in memory.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// How often [`Metrics::run_upkeep`] runs.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    /// Each label set's counters are built from `ALL` and indexed by the enum's value: an
    /// entry out of place would count one result under another's label.
    #[test]
    fn every_label_list_is_in_the_order_of_its_enum() {
        fn in_order<T: Copy>(all: &[T], index: impl Fn(T) -> usize) -> bool {
            all.iter().enumerate().all(|(i, item)| index(*item) == i)
        }
        assert!(in_order(&RegisterResult::ALL, |r| r as usize));
        assert!(in_order(&PushResult::ALL, |r| r as usize));
        assert!(in_order(&CloseReason::ALL, |r| r as usize));
        assert!(in_order(&RefusalReason::ALL, |r| r as usize));
        assert!(in_order(&HttpErrorKind::ALL, |r| r as usize));
        assert!(in_order(&crate::auth::RejectReason::ALL, |r| r as usize));
    }
}
