//! Routes a userID to the shard that owns it and holds the shards' senders.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::command::{Command, ConnHandle, MultiPush};

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
    /// dropped, it only slows down) and for the shard's answer: false when the user's
    /// connection cap refused it, so that the client is told before it is closed.
    pub async fn register(
        &self,
        user: Arc<str>,
        event: Box<str>,
        conn: ConnHandle,
        ack: Option<Bytes>,
    ) -> bool {
        let shard = self.shard_of(&user);
        let (reply, answer) = oneshot::channel();
        let sent = self.shards[shard]
            .send(Command::Register {
                user,
                event,
                conn,
                ack,
                reply,
            })
            .await;
        // A shard that is gone (shutdown) binds nothing, but refuses nothing either.
        sent.is_err() || answer.await.unwrap_or(true)
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

    /// Hands pushes to several users (one request's: a v2 push, an Alertmanager webhook's
    /// alerts) to their shards, all of them or none: room is taken in every involved shard's
    /// channel first, then each gets one [`Command::PushMany`] with its users' part, in
    /// order. A saturated shard so refuses the whole request before any frame is queued,
    /// and a retry after 503 cannot deliver twice. Resolves to the connections reached.
    pub fn begin_push_many(
        &self,
        pushes: Vec<MultiPush>,
        accepted_at: Instant,
    ) -> Result<impl std::future::Future<Output = Result<usize, PushRefused>>, PushRefused> {
        // Per shard, its part of each push, in the pushes' order.
        let mut per_shard: Vec<(usize, Vec<MultiPush>)> = Vec::new();
        let mut add =
            |shard: usize, part: MultiPush| match per_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, parts)) => parts.push(part),
                None => per_shard.push((shard, vec![part])),
            };
        for push in pushes {
            let shards: Vec<usize> = push.users.iter().map(|u| self.shard_of(u)).collect();
            match shards.first() {
                None => {}
                // The common case (one user, or users of one shard): the push as it is.
                Some(&first) if shards.iter().all(|&s| s == first) => add(first, push),
                Some(_) => {
                    let mut parts: Vec<(usize, MultiPush)> = Vec::new();
                    for (user, shard) in push.users.into_iter().zip(shards) {
                        match parts.iter_mut().find(|(s, _)| *s == shard) {
                            Some((_, part)) => part.users.push(user),
                            None => parts.push((
                                shard,
                                MultiPush {
                                    users: vec![user],
                                    event: push.event.clone(),
                                    frame: push.frame.clone(),
                                },
                            )),
                        }
                    }
                    for (shard, part) in parts {
                        add(shard, part);
                    }
                }
            }
        }
        let permits = per_shard
            .iter()
            .map(|(shard, _)| {
                self.shards[*shard].try_reserve().map_err(|e| match e {
                    mpsc::error::TrySendError::Full(()) => PushRefused::Overloaded,
                    mpsc::error::TrySendError::Closed(()) => PushRefused::ShuttingDown,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answers: Vec<_> = permits
            .into_iter()
            .zip(per_shard)
            .map(|(permit, (_, pushes))| {
                let (reply, answer) = oneshot::channel();
                permit.send(Command::PushMany {
                    pushes,
                    accepted_at,
                    reply,
                });
                answer
            })
            .collect();
        Ok(async move {
            let mut sent = 0;
            for answer in answers {
                sent += answer.await.map_err(|_| PushRefused::ShuttingDown)?;
            }
            Ok(sent)
        })
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

    #[tokio::test]
    async fn a_push_to_several_users_is_handed_to_all_their_shards_or_to_none() {
        let (channels, mut receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel(1)).unzip();
        let router = Router::new(channels);
        let on = |shard: usize| {
            (0..)
                .map(|i| format!("user-{i}"))
                .find(|user| router.shard_of(user) == shard)
                .unwrap()
        };
        let (on_0, on_1, also_on_1) = (on(0), on(1), {
            let first = on(1);
            (0..)
                .map(|i| format!("other-{i}"))
                .find(|user| router.shard_of(user) == 1 && *user != first)
                .unwrap()
        });
        // Shard 1's only slot is taken: the whole push is refused, shard 0 gets nothing.
        let push = |users: Vec<String>, event: &str| MultiPush {
            users,
            event: event.to_owned(),
            frame: Bytes::new(),
        };
        let _first = router
            .begin_push_many(vec![push(vec![on_1.clone()], "e")], Instant::now())
            .unwrap();
        // Two pushes (say, two alerts of one webhook), the second with users on both shards.
        let pushes = vec![
            push(vec![on_1.clone()], "first"),
            push(
                vec![on_0.clone(), on_1.clone(), also_on_1.clone()],
                "second",
            ),
        ];
        assert_eq!(
            router.begin_push_many(pushes.clone(), Instant::now()).err(),
            Some(PushRefused::Overloaded)
        );
        assert!(
            receivers[0].is_empty(),
            "shard 0 got a push that was refused"
        );
        // Once shard 1 has room: one command per shard, the users of each together.
        let Some(Command::PushMany { reply, .. }) = receivers[1].recv().await else {
            panic!("expected the first push");
        };
        drop(reply);
        let count = router.begin_push_many(pushes, Instant::now()).unwrap();
        // Each shard gets its part of each push, in the pushes' order.
        let expected = [
            vec![("second", vec![on_0])],
            vec![
                ("first", vec![on_1.clone()]),
                ("second", vec![on_1, also_on_1]),
            ],
        ];
        for (shard, expected) in expected.into_iter().enumerate() {
            let Some(Command::PushMany { pushes, reply, .. }) = receivers[shard].recv().await
            else {
                panic!("expected a push on shard {shard}");
            };
            let parts: Vec<(&str, Vec<String>)> = pushes
                .iter()
                .map(|p| (p.event.as_str(), p.users.clone()))
                .collect();
            assert_eq!(parts, expected, "shard {shard}");
            reply
                .send(pushes.iter().map(|p| p.users.len()).sum())
                .unwrap();
        }
        assert_eq!(count.await, Ok(4));
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
