//! Pushes, disconnects and broadcasts from other nodes, handed to the local shards.
//!
//! One task per subscribed bucket serves that bucket's pushes and disconnects; one task
//! serves every broadcast. A push or broadcast frame is forwarded verbatim (a slice of the
//! NATS payload); a disconnect's close frame is built here. A subject's messages are handled
//! one after the other, so pushes (and a disconnect after them) from one node to one
//! connection keep their order. When the publisher asked for a count (a reply subject), the
//! node answers with how many connections it queued the frame to (or closed), or that its
//! shard refused it.

use std::sync::Arc;
use std::time::Instant;

use async_nats::connection::State;
use futures_util::StreamExt;

use super::bucket::Subjects;
use super::envelope::{self, Bucketed, Reply};
use super::interest::Subscription;
use crate::metrics::Metrics;
use crate::shard::{PushRefused, Router};
use crate::ws::close::CloseCode;
use crate::ws::frame;

/// The reason of the close frame `POST /api/v2/disconnect` sends, on every node.
pub const DISCONNECTED_REASON: &str = "disconnected by server";

/// What serving other nodes' pushes needs.
pub struct Remote {
    pub(super) client: async_nats::Client,
    pub(super) subjects: Subjects,
    pub(super) router: Router,
    pub(super) node: u64,
    pub(super) metrics: Arc<Metrics>,
}

impl Remote {
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Subscribes to a bucket and serves it on its own task.
    pub async fn subscribe(
        self: &Arc<Self>,
        bucket: usize,
    ) -> Result<Subscription, async_nats::SubscribeError> {
        let subscriber = self.client.subscribe(self.subjects.push(bucket)).await?;
        Ok(Subscription(tokio::spawn(self.clone().serve(subscriber))))
    }

    async fn serve(self: Arc<Self>, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            self.deliver(message).await;
        }
    }

    async fn deliver(&self, message: async_nats::Message) {
        let result = match envelope::decode_bucketed(&message.payload) {
            Ok(Bucketed::Push(push)) => {
                // `no_echo` makes this a guard against a misconfigured server only.
                if push.origin == self.node {
                    return;
                }
                self.metrics.cluster.received.increment(1);
                // Instants do not cross processes: fan-out latency here starts at receipt.
                self.router
                    .push(
                        push.user.to_owned(),
                        push.event.to_owned(),
                        push.frame,
                        Instant::now(),
                    )
                    .await
            }
            Ok(Bucketed::Disconnect(disconnect)) => {
                if disconnect.origin == self.node {
                    return;
                }
                self.metrics.cluster.received.increment(1);
                // Built here rather than carried: it is the same few bytes on every node.
                let close = frame::close(CloseCode::DISCONNECTED.0, DISCONNECTED_REASON);
                self.router
                    .disconnect(
                        disconnect.user.to_owned(),
                        disconnect.event.map(str::to_owned),
                        close,
                    )
                    .await
            }
            Err(error) => {
                self.metrics.cluster.invalid.increment(1);
                tracing::debug!(%error, "malformed cluster push");
                return;
            }
        };
        self.answer(message.reply, result).await;
    }

    /// Serves other nodes' broadcasts (`pushgate.broadcast`) one after the other.
    pub async fn serve_broadcasts(self: Arc<Self>, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            let broadcast = match envelope::decode_broadcast(&message.payload) {
                Ok(broadcast) => broadcast,
                Err(error) => {
                    self.metrics.cluster.invalid.increment(1);
                    tracing::debug!(%error, "malformed cluster broadcast");
                    continue;
                }
            };
            if broadcast.origin == self.node {
                continue;
            }
            self.metrics.cluster.received.increment(1);
            let result = self
                .router
                .broadcast(broadcast.event, broadcast.frame, Instant::now())
                .await;
            self.answer(message.reply, result).await;
        }
    }

    /// Sends this node's count back to the node that asked for it.
    async fn answer(
        &self,
        subject: Option<async_nats::Subject>,
        result: Result<usize, PushRefused>,
    ) {
        let reply = match result {
            Ok(sent) => Reply {
                node: self.node,
                sent: u32::try_from(sent).unwrap_or(u32::MAX),
                refused: false,
            },
            Err(refused) => {
                tracing::debug!(%refused, "cluster request refused");
                Reply {
                    node: self.node,
                    sent: 0,
                    refused: true,
                }
            }
        };
        if let Some(subject) = subject {
            if self.client.connection_state() == State::Connected {
                let _ = self
                    .client
                    .publish(subject, envelope::encode_reply(reply))
                    .await;
            }
        }
    }
}
