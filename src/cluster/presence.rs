//! Who else holds which buckets: what lets a push stop waiting for replies early.
//!
//! Every node announces its subscribed buckets (a 4,096-bit bitmap, 522 bytes) on
//! `pushgate.presence`: at every [`HEARTBEAT`], right after its bucket set changes, and when
//! another node says hello (it just connected). A peer not heard from for [`PEER_TTL`] is
//! forgotten; a node that shuts down says so and is forgotten at once.
//!
//! A push to bucket `b` then waits for replies from exactly the live peers whose bitmap holds
//! `b` (see `Cluster::deliver`); with none, it does not wait at all.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ahash::AHashMap;
use async_nats::connection::State;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::bucket::BITMAP_WORDS;
use super::envelope::{self, Presence as Announcement};
use crate::metrics::Metrics;

/// How often a node announces its buckets even when nothing changed.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A peer silent this long is forgotten (three heartbeats lost).
pub const PEER_TTL: Duration = Duration::from_millis(3_500);

struct Peer {
    buckets: [u64; BITMAP_WORDS],
    seen: Instant,
}

/// This node's bucket bitmap and what it heard from the others.
pub struct Presence {
    node: u64,
    /// The cluster's presence subject.
    subject: String,
    local: Box<[AtomicU64]>,
    peers: Mutex<AHashMap<u64, Peer>>,
    /// Ask the others to announce themselves at the next announcement.
    hello: AtomicBool,
}

impl Presence {
    pub fn new(node: u64, subject: String) -> Self {
        Self {
            node,
            subject,
            local: (0..BITMAP_WORDS).map(|_| AtomicU64::new(0)).collect(),
            peers: Mutex::new(AHashMap::new()),
            hello: AtomicBool::new(true),
        }
    }

    /// Marks a bucket as subscribed (or not) in this node's announcements.
    pub fn set_local(&self, bucket: usize, on: bool) {
        let bit = 1u64 << (bucket % 64);
        if on {
            self.local[bucket / 64].fetch_or(bit, Ordering::AcqRel);
        } else {
            self.local[bucket / 64].fetch_and(!bit, Ordering::AcqRel);
        }
    }

    /// The next announcement asks every peer to announce itself.
    pub fn say_hello(&self) {
        self.hello.store(true, Ordering::Release);
    }

    /// Live peers subscribed to `bucket`: the replies a push to it waits for.
    pub fn expected(&self, bucket: usize) -> Vec<u64> {
        let bit = 1u64 << (bucket % 64);
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .iter()
            .filter(|(_, peer)| peer.buckets[bucket / 64] & bit != 0)
            .filter(|(_, peer)| peer.seen.elapsed() < PEER_TTL)
            .map(|(node, _)| *node)
            .collect()
    }

    /// Every live peer, whatever it holds: the replies a broadcast waits for.
    pub fn live(&self) -> Vec<u64> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .iter()
            .filter(|(_, peer)| peer.seen.elapsed() < PEER_TTL)
            .map(|(node, _)| *node)
            .collect()
    }

    fn announcement(&self, leaving: bool) -> Announcement {
        let mut buckets = [0u64; BITMAP_WORDS];
        if !leaving {
            for (word, local) in buckets.iter_mut().zip(self.local.iter()) {
                *word = local.load(Ordering::Acquire);
            }
        }
        Announcement {
            node: self.node,
            hello: self.hello.swap(false, Ordering::AcqRel),
            leaving,
            buckets,
        }
    }

    /// Records a peer's announcement; true when it asks for ours.
    fn heard(&self, announcement: Announcement) -> bool {
        if announcement.node == self.node {
            return false;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if announcement.leaving {
            peers.remove(&announcement.node);
        } else {
            peers.insert(
                announcement.node,
                Peer {
                    buckets: announcement.buckets,
                    seen: Instant::now(),
                },
            );
        }
        announcement.hello
    }

    /// Forgets silent peers; returns how many are left.
    fn expire(&self) -> usize {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.retain(|_, peer| peer.seen.elapsed() < PEER_TTL);
        peers.len()
    }

    /// Announces that this node leaves (shutdown), so that peers stop waiting for it.
    pub async fn leave(&self, client: &async_nats::Client) {
        let payload = envelope::encode_presence(&self.announcement(true));
        if client.connection_state() == State::Connected {
            let _ = client.publish(self.subject.clone(), payload).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
        }
    }
}

/// Announces this node's buckets and listens to the others' until aborted.
pub async fn run(
    client: async_nats::Client,
    mut subscriber: async_nats::Subscriber,
    presence: Arc<Presence>,
    announce: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let speak = tokio::select! {
            _ = heartbeat.tick() => true,
            _ = announce.notified() => true,
            message = subscriber.next() => match message {
                Some(message) => match envelope::decode_presence(&message.payload) {
                    Ok(announcement) => presence.heard(announcement),
                    Err(error) => {
                        metrics.cluster.invalid.increment(1);
                        tracing::debug!(%error, "malformed presence message");
                        false
                    }
                },
                None => return,
            },
        };
        metrics.cluster.peers.set(presence.expire() as f64);
        // Never queue behind a lost connection: the next heartbeat after it returns speaks.
        if speak && client.connection_state() == State::Connected {
            let payload = envelope::encode_presence(&presence.announcement(false));
            if let Err(error) = client.publish(presence.subject.clone(), payload).await {
                tracing::debug!(%error, "presence not published");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_waits_for_the_live_peers_holding_its_bucket() {
        let presence = Presence::new(1, "pushgate.presence".to_owned());
        let mut buckets = [0u64; BITMAP_WORDS];
        buckets[0] = 1 << 5;
        let heard = |node, leaving| Announcement {
            node,
            hello: false,
            leaving,
            buckets,
        };
        assert!(!presence.heard(heard(2, false)));
        presence.heard(heard(3, false));
        presence.heard(heard(1, false)); // itself: ignored
        let mut expected = presence.expected(5);
        expected.sort_unstable();
        assert_eq!(expected, [2, 3]);
        assert!(presence.expected(6).is_empty());
        let mut live = presence.live();
        live.sort_unstable();
        assert_eq!(live, [2, 3]);
        presence.heard(heard(3, true));
        assert_eq!(presence.expected(5), [2]);
        presence.set_local(4095, true);
        assert_eq!(presence.announcement(false).buckets[63], 1 << 63);
        assert_eq!(presence.announcement(true).buckets[63], 0);
    }
}
