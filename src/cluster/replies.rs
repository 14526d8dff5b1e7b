//! Collecting several replies to one push.
//!
//! NATS' own request/reply returns the first answer only. Here every node holding the bucket
//! answers, so each node subscribes once to `pushgate.reply.<node>.*` and gives each push a
//! request id (`pushgate.reply.<node>.<id>`); replies are routed to the waiting push through a
//! small map of pending ids (this module's own lock, held for a lookup, never across an
//! await). A reply for an id nobody waits for any more (it came after the deadline) is
//! dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ahash::AHashMap;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::envelope::{self, Reply};
use crate::metrics::Metrics;

/// Pushes waiting for replies.
pub struct Replies {
    prefix: String,
    next_id: AtomicU64,
    pending: Mutex<AHashMap<u64, mpsc::UnboundedSender<Reply>>>,
}

/// One push's reply inbox; dropping it stops the routing of its replies.
pub struct Waiter<'a> {
    replies: &'a Replies,
    id: u64,
    pub subject: String,
    pub receiver: mpsc::UnboundedReceiver<Reply>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.replies.lock().remove(&self.id);
    }
}

impl Replies {
    /// `prefix`: [`super::bucket::Subjects::reply_prefix`] of this node.
    pub fn new(prefix: String) -> Self {
        Self {
            prefix,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(AHashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AHashMap<u64, mpsc::UnboundedSender<Reply>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The subject this node's replies arrive on.
    pub fn wildcard(&self) -> String {
        format!("{}.*", self.prefix)
    }

    /// Opens an inbox for one push.
    pub fn open(&self) -> Waiter<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().insert(id, sender);
        Waiter {
            replies: self,
            id,
            subject: format!("{}.{id}", self.prefix),
            receiver,
        }
    }

    /// Routes one reply to its push; false when it was not understood.
    fn route(&self, subject: &str, payload: &[u8]) -> bool {
        let id = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|id| id.parse::<u64>().ok());
        let (Some(id), Ok(reply)) = (id, envelope::decode_reply(payload)) else {
            return false;
        };
        if let Some(sender) = self.lock().get(&id) {
            let _ = sender.send(reply);
        }
        true
    }
}

/// Routes replies until aborted.
pub async fn run(
    mut subscriber: async_nats::Subscriber,
    replies: Arc<Replies>,
    metrics: Arc<Metrics>,
) {
    while let Some(message) = subscriber.next().await {
        if !replies.route(message.subject.as_str(), &message.payload) {
            metrics.cluster.invalid.increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::bucket::Subjects;

    #[test]
    fn replies_reach_their_push_until_it_stops_waiting() {
        let replies = Replies::new(Subjects::new("pushgate").reply_prefix(1));
        let mut waiter = replies.open();
        let reply = Reply {
            node: 2,
            sent: 4,
            refused: false,
        };
        assert!(replies.route(&waiter.subject, &envelope::encode_reply(reply)));
        assert_eq!(waiter.receiver.try_recv(), Ok(reply));
        assert!(!replies.route("pushgate.reply.x.1", &envelope::encode_reply(reply)));
        assert!(!replies.route(&waiter.subject, b"junk"));
        let subject = waiter.subject.clone();
        drop(waiter);
        assert!(replies.lock().is_empty());
        // Late: understood, dropped.
        assert!(replies.route(&subject, &envelope::encode_reply(reply)));
    }
}
