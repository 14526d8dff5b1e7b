//! Cluster mode: several gateways joined by NATS core pub/sub (`--nats-url`).
//!
//! A push accepted by one node is delivered through its own shards and published once, as the
//! already-encoded frame plus its routing key, on the subject of the user's bucket; every
//! other node holding users in that bucket is subscribed to it and hands the frame, verbatim,
//! to its own shards. The accepting node adds up the counts the others send back, so the v1
//! reply stays `message sent to N clients` over the whole cluster. docs/CLUSTER.md has the
//! full story; the parts:
//!
//! - [`bucket`]: the stable userID → bucket hash and the subjects;
//! - [`connect`]: the servers, the credentials and TLS a node connects with;
//! - [`envelope`]: the binary messages (push, reply, presence);
//! - [`interest`]: per-bucket counts fed by the shards, and the subscriptions that follow;
//! - [`presence`]: which peer holds which bucket, so a push knows whose replies to await;
//! - [`replies`]: routing several replies back to one push;
//! - [`remote`]: serving other nodes' pushes, disconnects and broadcasts.
//!
//! `POST /api/v2/broadcast` and `/disconnect` travel the same way: a broadcast on
//! `pushgate.broadcast`, which every node subscribes to and every live peer answers; a
//! disconnect on the user's bucket subject, answered by the nodes holding that bucket.
//!
//! Without `--nats-url` none of this runs and a node behaves exactly as a single gateway.

pub mod bucket;
pub mod connect;
pub mod envelope;
pub mod interest;
pub mod presence;
pub mod remote;
pub mod replies;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{ConnectOptions, Event};
use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use self::bucket::{bucket, Subjects};
use self::interest::{Changes, Interest};
use self::presence::Presence;
use self::remote::Remote;
use self::replies::Replies;
use crate::config::Config;
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::shard::{MultiPush, PushRefused, Router};

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid --nats-url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{0}")]
    Setting(&'static str),
    #[error("{flag} {path}: {reason}")]
    File {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error("NATS client")]
    Connect(#[from] async_nats::ConnectError),
    #[error("NATS subscription")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// What a push reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Connections the frame was queued to on this node.
    pub local: usize,
    /// Connections the frame was queued to, on this node and on every node that answered.
    pub sent: usize,
    /// Some node that may hold matching connections did not answer in time, could not take
    /// the push, or NATS was unreachable: `sent` is a lower bound.
    pub partial: bool,
}

impl Delivery {
    /// A delivery on this node alone (single-node mode): exact by construction.
    pub fn local_only(sent: usize) -> Self {
        Self {
            local: sent,
            sent,
            partial: false,
        }
    }

    fn remote(sent: usize, partial: bool) -> Self {
        Self {
            local: 0,
            sent,
            partial,
        }
    }
}

/// This node's membership in the cluster.
pub struct Cluster {
    node: u64,
    client: async_nats::Client,
    subjects: Subjects,
    presence: Arc<Presence>,
    replies: Arc<Replies>,
    reply_timeout: Duration,
    metrics: Arc<Metrics>,
    tasks: Vec<JoinHandle<()>>,
    /// Pushes too large for NATS are each counted, and logged once per interval.
    too_large_logged: LogThrottle,
}

/// How often a push refused as too large for NATS is logged (each one is counted).
const TOO_LARGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Cluster {
    /// The shards' hook and the queue of bucket changes, to create before the shards.
    pub fn interest() -> (Arc<Interest>, Changes) {
        Interest::new()
    }

    /// Connects (in the background: an unreachable NATS does not stop the node, it keeps
    /// retrying) and starts following interest.
    pub async fn start(
        config: &Config,
        interest: Arc<Interest>,
        changes: Changes,
        router: Router,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClusterError> {
        let servers = connect::servers(config)?;
        let node = node_id();
        let (events_tx, events) = mpsc::unbounded_channel();
        let options = connect::secure(ConnectOptions::new(), servers.credentials, config)?;
        let client = options
            .name(format!("pushgate-{node:016x}"))
            // Our own publications never come back: a node delivers its pushes once.
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .ping_interval(NATS_PING_INTERVAL)
            .event_callback(move |event| {
                let _ = events_tx.send(event);
                async {}
            })
            .connect(servers.addresses)
            .await?;

        let subjects = Subjects::new(&config.nats_subject_prefix);
        let presence = Arc::new(Presence::new(node, subjects.presence()));
        let replies = Arc::new(Replies::new(subjects.reply_prefix(node)));
        let announce = Arc::new(Notify::new());
        let remote = Arc::new(Remote {
            client: client.clone(),
            subjects: subjects.clone(),
            router,
            node,
            metrics: metrics.clone(),
        });
        // Subscriptions made before the connection exists are sent once it does, and again
        // after every reconnect (async-nats replays them).
        let presence_sub = client.subscribe(subjects.presence()).await?;
        let replies_sub = client.subscribe(replies.wildcard()).await?;
        // Before the first announcement on the same connection: a peer that knows this node
        // can count on its answer to a broadcast.
        let broadcast_sub = client.subscribe(subjects.broadcast()).await?;
        let tasks = vec![
            tokio::spawn(follow_events(
                events,
                presence.clone(),
                announce.clone(),
                metrics.clone(),
            )),
            tokio::spawn(presence::run(
                client.clone(),
                presence_sub,
                presence.clone(),
                announce.clone(),
                metrics.clone(),
            )),
            tokio::spawn(replies::run(replies_sub, replies.clone(), metrics.clone())),
            tokio::spawn(remote.clone().serve_broadcasts(broadcast_sub)),
            tokio::spawn(interest::manage(
                interest,
                changes,
                remote,
                presence.clone(),
                announce,
            )),
        ];
        let servers: Vec<String> = config.nats_url.iter().map(|url| redact(url)).collect();
        tracing::info!(node = %format!("{node:016x}"), ?servers, "cluster mode");
        Ok(Self {
            node,
            client,
            subjects,
            presence,
            replies,
            reply_timeout: config.cluster_reply_timeout,
            metrics,
            tasks,
            too_large_logged: LogThrottle::new(TOO_LARGE_LOG_INTERVAL),
        })
    }

    /// This node's id in subjects and logs.
    pub fn node(&self) -> u64 {
        self.node
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// `connected`, `connecting` (never connected yet) or `disconnected`, for `/readyz`.
    pub fn status(&self) -> &'static str {
        match self.client.connection_state() {
            State::Connected => "connected",
            State::Pending => "connecting",
            State::Disconnected => "disconnected",
        }
    }

    /// Delivers a push through the local shards and every other node holding its bucket.
    /// Refused (503) only when the local shard refuses it, and then it is not published.
    pub async fn deliver(
        &self,
        router: &Router,
        user: String,
        event: String,
        frame: Bytes,
        accepted_at: Instant,
    ) -> Result<Delivery, PushRefused> {
        self.fits(envelope::push_len(&user, &event, frame.len()))?;
        let bucket = bucket(&user);
        let envelope = self
            .is_connected()
            .then(|| envelope::encode_push(self.node, &user, &event, &frame));
        let local = router.begin_push(user, event, frame, accepted_at)?;
        let remote = self.gather(
            self.subjects.push(bucket),
            || self.presence.expected(bucket),
            envelope,
        );
        let (local, remote) = tokio::join!(local, remote);
        Ok(self.total(local?, remote))
    }

    /// Delivers pushes to several users (one request's): through their local shards, all of
    /// them or none ([`Router::begin_push_many`]), and through every other node holding any
    /// of their buckets (one message per user and push, on that user's bucket). Refused
    /// before anything is delivered or published when NATS could not carry one of them, or
    /// when a local shard refuses.
    pub async fn deliver_many(
        &self,
        router: &Router,
        pushes: Vec<MultiPush>,
        accepted_at: Instant,
    ) -> Result<Delivery, PushRefused> {
        for push in &pushes {
            if let Some(longest) = push.users.iter().max_by_key(|user| user.len()) {
                self.fits(envelope::push_len(longest, &push.event, push.frame.len()))?;
            }
        }
        let connected = self.is_connected();
        let remotes: Vec<_> = pushes
            .iter()
            .flat_map(|push| push.users.iter().map(move |user| (push, user)))
            .map(|(push, user)| {
                let bucket = bucket(user);
                let envelope = connected
                    .then(|| envelope::encode_push(self.node, user, &push.event, &push.frame));
                self.gather(
                    self.subjects.push(bucket),
                    move || self.presence.expected(bucket),
                    envelope,
                )
            })
            .collect();
        let local = router.begin_push_many(pushes, accepted_at)?;
        let (local, remotes) = tokio::join!(local, futures_util::future::join_all(remotes));
        let remote = remotes
            .into_iter()
            .fold(Delivery::remote(0, false), |sum, one| {
                Delivery::remote(sum.sent + one.sent, sum.partial || one.partial)
            });
        Ok(self.total(local?, remote))
    }

    /// Queues a broadcast frame to every connection registered for `event`, on this node
    /// and on every live peer (each forwards the frame verbatim). Every live peer answers,
    /// whatever buckets it holds. The local shards and the peers work at the same time: a
    /// local refusal (only when the shards have stopped, i.e. at shutdown) still answers 503.
    pub async fn broadcast(
        &self,
        router: &Router,
        event: &str,
        frame: Bytes,
        accepted_at: Instant,
    ) -> Result<Delivery, PushRefused> {
        self.fits(envelope::broadcast_len(event, frame.len()))?;
        let envelope = self
            .is_connected()
            .then(|| envelope::encode_broadcast(self.node, event, &frame));
        let local = router.broadcast(event, frame, accepted_at);
        let remote = self.gather(self.subjects.broadcast(), || self.presence.live(), envelope);
        let (local, remote) = tokio::join!(local, remote);
        Ok(self.total(local?, remote))
    }

    /// Closes the connections of `user` (for `event` only, when given) on this node and on
    /// every node holding the user's bucket, like a push; each node builds its own close
    /// frame (4000). The disconnect travels on the bucket's subject, after that node's
    /// earlier pushes to the user.
    pub async fn disconnect(
        &self,
        router: &Router,
        user: String,
        event: Option<String>,
        close_frame: Bytes,
    ) -> Result<Delivery, PushRefused> {
        self.fits(envelope::disconnect_len(&user, event.as_deref()))?;
        let bucket = bucket(&user);
        let envelope = self
            .is_connected()
            .then(|| envelope::encode_disconnect(self.node, &user, event.as_deref()));
        let local = router.disconnect(user, event, close_frame);
        let remote = self.gather(
            self.subjects.push(bucket),
            || self.presence.expected(bucket),
            envelope,
        );
        let (local, remote) = tokio::join!(local, remote);
        Ok(self.total(local?, remote))
    }

    /// Compares an envelope with the NATS server's `max_payload`: the last one it announced,
    /// so the answer does not depend on whether NATS is reachable at this moment (before the
    /// first connection, async-nats assumes the server default, 1 MiB).
    fn fits(&self, size: usize) -> Result<(), PushRefused> {
        let max_payload = self.client.max_payload();
        if size <= max_payload {
            return Ok(());
        }
        // An operator's mismatch (`--max-push-body` above the server's max_payload), not
        // one bad request: say it at warn level, but not once per push.
        if self.too_large_logged.ready() {
            tracing::warn!(
                size,
                max_payload,
                "push refused with 413: NATS would not carry it to the other nodes; \
                 lower --max-push-body or raise max_payload in the NATS server's configuration"
            );
        }
        Err(PushRefused::TooLargeForCluster { size, max_payload })
    }

    fn total(&self, local: usize, remote: Delivery) -> Delivery {
        let delivery = Delivery {
            local,
            sent: local + remote.sent,
            partial: remote.partial,
        };
        if delivery.partial {
            self.metrics.cluster.partial.increment(1);
        }
        delivery
    }

    /// Publishes `envelope` on `subject` and adds up the replies of the peers expected to
    /// answer (read once NATS is known reachable), until they all did or
    /// `--cluster-reply-timeout` passed.
    async fn gather(
        &self,
        subject: String,
        expected: impl FnOnce() -> Vec<u64>,
        envelope: Option<Bytes>,
    ) -> Delivery {
        let Some(payload) = envelope else {
            // NATS is unreachable: local connections only.
            return Delivery::remote(0, true);
        };
        let deadline = tokio::time::Instant::now() + self.reply_timeout;
        let mut expected = expected();
        self.metrics.cluster.published.increment(1);
        if expected.is_empty() {
            // Nobody is known to hold the bucket: publish for a peer whose announcement is
            // still on its way, and do not wait.
            let published =
                tokio::time::timeout_at(deadline, self.client.publish(subject, payload));
            return Delivery::remote(0, !matches!(published.await, Ok(Ok(()))));
        }
        let mut waiter = self.replies.open();
        let published = tokio::time::timeout_at(
            deadline,
            self.client
                .publish_with_reply(subject, waiter.subject.clone(), payload),
        );
        if !matches!(published.await, Ok(Ok(()))) {
            return Delivery::remote(0, true);
        }
        let mut delivery = Delivery::remote(0, false);
        while !expected.is_empty() {
            match tokio::time::timeout_at(deadline, waiter.receiver.recv()).await {
                Ok(Some(reply)) => {
                    expected.retain(|node| *node != reply.node);
                    delivery.sent += reply.sent as usize;
                    delivery.partial |= reply.refused;
                }
                Ok(None) | Err(_) => {
                    delivery.partial = true;
                    break;
                }
            }
        }
        delivery
    }

    /// Tells the peers this node leaves, then stops every cluster task.
    pub async fn leave(&self) {
        self.presence.leave(&self.client).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How long the NATS connection may carry nothing from the server before the client pings
/// it; after three unanswered pings (two outstanding is async-nats's limit) it counts the
/// server as lost. So a server that hangs without closing the connection (a frozen host, a
/// partition that drops packets) is noticed ~3 s after its last message, before its peers'
/// presence expires ([`presence::PEER_TTL`], 3.5 s): until then pushes wait for those peers and
/// are marked partial when they do not answer, and from then on NATS is "disconnected" and
/// they are marked partial for that. With the async-nats default (60 s), replies looked exact
/// for minutes while NATS held everything published. A healthy cluster exchanges presence
/// every second, so these pings only flow when the server goes quiet.
const NATS_PING_INTERVAL: Duration = Duration::from_secs(1);

/// Follows the client's connection events: the gauge, the logs, and a hello after each
/// (re)connection so that peers and this node learn each other's buckets at once.
async fn follow_events(
    mut events: mpsc::UnboundedReceiver<Event>,
    presence: Arc<Presence>,
    announce: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    // A node that cannot reach NATS from the start is as isolated as one that lost it, and
    // must say so at the same level, once (async-nats retries and logs each attempt).
    let mut ever_connected = false;
    let mut warned_unreachable = false;
    let mut warned_refused = false;
    while let Some(event) = events.recv().await {
        match event {
            // A wrong credential is not an outage: say which it is, at error level, once.
            ref refused if is_authorization_violation(refused) => {
                if !warned_refused {
                    warned_refused = true;
                    warned_unreachable = true;
                    tracing::error!(
                        "NATS refused this node's credentials (authorization violation): \
                         check --nats-user/--nats-password, --nats-token, --nats-creds or \
                         --nats-nkey; serving local connections only, retrying"
                    );
                }
            }
            Event::Connected => {
                ever_connected = true;
                tracing::info!("connected to NATS");
                metrics.cluster.connected.set(1.0);
                presence.say_hello();
                announce.notify_one();
            }
            Event::Disconnected => {
                tracing::warn!("lost NATS: serving local connections only until it returns");
                metrics.cluster.connected.set(0.0);
            }
            Event::SlowConsumer(sid) => {
                tracing::warn!(sid, "NATS subscription overflowed: cluster pushes dropped");
            }
            Event::ClientError(error) if !ever_connected && !warned_unreachable => {
                warned_unreachable = true;
                tracing::warn!(
                    %error,
                    "NATS unreachable since start: serving local connections only until it \
                     connects (retrying in the background)"
                );
            }
            // async-nats logs each event itself at info level; once is enough.
            other => tracing::debug!(event = %other, "NATS event"),
        }
    }
}

/// Whether the server turned this node's credentials down (async-nats reports it as a
/// server error once connected, as a client error while connecting).
fn is_authorization_violation(event: &Event) -> bool {
    match event {
        Event::ServerError(async_nats::ServerError::AuthorizationViolation) => true,
        Event::ClientError(error) => error
            .to_string()
            .to_ascii_lowercase()
            .contains("authorization violation"),
        _ => false,
    }
}

/// `url` without the user and password (or token) it may carry, for logs and errors: a
/// NATS URL is the one place a credential can sit in pushgate's configuration.
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let host = &rest[at + 1..];
    match scheme {
        Some(scheme) => format!("{scheme}://***@{host}"),
        None => format!("***@{host}"),
    }
}

/// A random id for this node's lifetime: subjects of its replies, and presence.
fn node_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    ahash::RandomState::new().hash_one((nanos, std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_in_a_nats_url_never_reach_a_log() {
        for (url, shown) in [
            (
                "nats://alice:s3cret@10.0.0.5:4222",
                "nats://***@10.0.0.5:4222",
            ),
            (
                "tls://t0ken@nats.example:4222/",
                "tls://***@nats.example:4222/",
            ),
            ("alice:p@ss@10.0.0.5", "***@10.0.0.5"),
            ("nats://10.0.0.5:4222", "nats://10.0.0.5:4222"),
            ("nats://10.0.0.5:4222/path@x", "nats://10.0.0.5:4222/path@x"),
            ("10.0.0.5", "10.0.0.5"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
