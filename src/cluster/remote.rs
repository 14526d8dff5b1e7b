//! Pushes from other nodes: one task per subscribed bucket hands each to the local shards.
//!
//! The frame is forwarded verbatim (a slice of the NATS payload). A bucket's messages are
//! handled one after the other, so pushes from one node to one connection keep their order.
//! When the publisher asked for a count (a reply subject), the node answers with how many
//! connections it queued the frame to, or that its shard refused it.

use std::sync::Arc;
use std::time::Instant;

use async_nats::connection::State;
use futures_util::StreamExt;

use super::bucket::push_subject;
use super::envelope::{self, Reply};
use super::interest::Subscription;
use crate::metrics::Metrics;
use crate::shard::Router;

/// What serving other nodes' pushes needs.
pub struct Remote {
    pub(super) client: async_nats::Client,
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
        let subscriber = self.client.subscribe(push_subject(bucket)).await?;
        Ok(Subscription(tokio::spawn(self.clone().serve(subscriber))))
    }

    async fn serve(self: Arc<Self>, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            self.deliver(message).await;
        }
    }

    async fn deliver(&self, message: async_nats::Message) {
        let push = match envelope::decode_push(&message.payload) {
            Ok(push) => push,
            Err(error) => {
                self.metrics.cluster.invalid.increment(1);
                tracing::debug!(%error, "malformed cluster push");
                return;
            }
        };
        // The connection is `no_echo`, so this only guards against a misconfigured server.
        if push.origin == self.node {
            return;
        }
        self.metrics.cluster.received.increment(1);
        let envelope::Push {
            user, event, frame, ..
        } = push;
        // Instants do not cross processes: fan-out latency here starts at receipt.
        let result = self
            .router
            .push(user.to_owned(), event.to_owned(), frame, Instant::now())
            .await;
        let reply = match result {
            Ok(sent) => {
                self.metrics.deliveries.increment(sent as u64);
                Reply {
                    node: self.node,
                    sent: u32::try_from(sent).unwrap_or(u32::MAX),
                    refused: false,
                }
            }
            Err(refused) => {
                tracing::debug!(%refused, "cluster push refused");
                Reply {
                    node: self.node,
                    sent: 0,
                    refused: true,
                }
            }
        };
        if let Some(subject) = message.reply {
            if self.client.connection_state() == State::Connected {
                let _ = self
                    .client
                    .publish(subject, envelope::encode_reply(reply))
                    .await;
            }
        }
    }
}
