//! Routes a userID to the shard that owns it and holds the shards' senders.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::command::{Command, ConnHandle};

/// Why a push was not handed to its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushRefused {
    /// Cluster mode: the message between nodes would exceed the NATS server's
    /// `max_payload`, so NATS would drop it for every other node. Refused (413) before
    /// anything is delivered, rather than delivered on this node only.
    #[error("{size} bytes between nodes, over the NATS server's max_payload of {max_payload}")]
    TooLargeForCluster { size: usize, max_payload: usize },
    /// The shard's channel is full: answer 503 rather than buffer without bound.
    #[error("shard overloaded")]
    Overloaded,
    /// The shard has stopped (shutdown).
    #[error("shutting down")]
    ShuttingDown,
}

/// The senders of every shard and the hash that picks one.
#[derive(Clone)]
pub struct Router {
    shards: Arc<[mpsc::Sender<Command>]>,
    hasher: ahash::RandomState,
}

impl Router {
    pub fn new(shards: Vec<mpsc::Sender<Command>>) -> Self {
        assert!(!shards.is_empty(), "at least one shard");
        Self {
            shards: shards.into(),
            // Fixed seeds: a user maps to the same shard in every run, which keeps benches
            // and logs comparable. The map inside each shard keeps a random seed.
            hasher: ahash::RandomState::with_seeds(
                0x243F_6A88_85A3_08D3,
                0x1319_8A2E_0370_7344,
                0xA409_3822_299F_31D0,
                0x082E_FA98_EC4E_6C89,
            ),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `user`.
    pub fn shard_of(&self, user: &str) -> usize {
        (self.hasher.hash_one(user) % self.shards.len() as u64) as usize
    }

    /// Binds a connection; waits for room in the shard's channel (registration is never
    /// dropped, it only slows down).
    pub async fn register(&self, user: Arc<str>, event: Box<str>, conn: ConnHandle) {
        let shard = self.shard_of(&user);
        let _ = self.shards[shard]
            .send(Command::Register { user, event, conn })
            .await;
    }

    /// Unbinds a connection; waits for room, because a lost unregister would leak a binding.
    pub async fn unregister(&self, user: Arc<str>, conn_id: u64) {
        let shard = self.shard_of(&user);
        let _ = self.shards[shard]
            .send(Command::Unregister { user, conn_id })
            .await;
    }

    /// Queues `frame` to every connection registered for `event` on every shard; waits for
    /// room in each shard's channel (a broadcast is rare and must not be half-delivered).
    pub async fn broadcast(
        &self,
        event: &str,
        frame: Bytes,
        accepted_at: Instant,
    ) -> Result<usize, PushRefused> {
        let mut answers = Vec::with_capacity(self.shards.len());
        for shard in self.shards.iter() {
            let (reply, answer) = oneshot::channel();
            shard
                .send(Command::Broadcast {
                    event: event.to_owned(),
                    frame: frame.clone(),
                    accepted_at,
                    reply,
                })
                .await
                .map_err(|_| PushRefused::ShuttingDown)?;
            answers.push(answer);
        }
        let mut sent = 0;
        for answer in answers {
            sent += answer.await.map_err(|_| PushRefused::ShuttingDown)?;
        }
        Ok(sent)
    }

    /// Closes the connections of `user` (for `event` only, when given) with `close_frame`.
    pub async fn disconnect(
        &self,
        user: String,
        event: Option<String>,
        close_frame: Bytes,
    ) -> Result<usize, PushRefused> {
        let shard = self.shard_of(&user);
        let (reply, answer) = oneshot::channel();
        self.shards[shard]
            .send(Command::Disconnect {
                user,
                event,
                close_frame,
                reply,
            })
            .await
            .map_err(|_| PushRefused::ShuttingDown)?;
        answer.await.map_err(|_| PushRefused::ShuttingDown)
    }

    /// Hands a push to its shard without waiting for room; resolves to the number of
    /// connections the frame was queued to.
    pub async fn push(
        &self,
        user: String,
        event: String,
        frame: Bytes,
        accepted_at: Instant,
    ) -> Result<usize, PushRefused> {
        self.begin_push(user, event, frame, accepted_at)?.await
    }

    /// Hands a push to its shard now (or refuses it now) and returns the future of its
    /// count: cluster mode publishes to other nodes only once the local shard took the push.
    pub fn begin_push(
        &self,
        user: String,
        event: String,
        frame: Bytes,
        accepted_at: Instant,
    ) -> Result<impl std::future::Future<Output = Result<usize, PushRefused>>, PushRefused> {
        let shard = self.shard_of(&user);
        let (reply, answer) = oneshot::channel();
        self.shards[shard]
            .try_send(Command::Push {
                user,
                event,
                frame,
                accepted_at,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PushRefused::Overloaded,
                mpsc::error::TrySendError::Closed(_) => PushRefused::ShuttingDown,
            })?;
        Ok(async move { answer.await.map_err(|_| PushRefused::ShuttingDown) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_shard_channel_refuses_instead_of_buffering() {
        let (tx, mut rx) = mpsc::channel(1);
        let router = Router::new(vec![tx]);
        // Nobody drains the channel: the first push takes the only slot and waits for a reply.
        let first = tokio::spawn({
            let router = router.clone();
            async move {
                router
                    .push("u".into(), "e".into(), Bytes::new(), Instant::now())
                    .await
            }
        });
        let Some(Command::Push { reply, .. }) = rx.recv().await else {
            panic!("expected the first push");
        };
        // Refill the slot with a second push, then a third finds the channel full.
        let second = tokio::spawn({
            let router = router.clone();
            async move {
                router
                    .push("u".into(), "e".into(), Bytes::new(), Instant::now())
                    .await
            }
        });
        while rx.is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            router
                .push("u".into(), "e".into(), Bytes::new(), Instant::now())
                .await,
            Err(PushRefused::Overloaded)
        );
        reply.send(3).unwrap();
        assert_eq!(first.await.unwrap(), Ok(3));
        drop(rx);
        assert_eq!(second.await.unwrap(), Err(PushRefused::ShuttingDown));
    }

    #[test]
    fn users_spread_over_shards_and_stay_put() {
        let senders = (0..4).map(|_| mpsc::channel(1).0).collect();
        let router = Router::new(senders);
        let mut per_shard = [0usize; 4];
        for i in 0..4000 {
            let user = format!("user-{i}");
            let shard = router.shard_of(&user);
            assert_eq!(shard, router.shard_of(&user));
            per_shard[shard] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 800), "{per_shard:?}");
    }
}
