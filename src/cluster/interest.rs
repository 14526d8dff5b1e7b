//! Which buckets this node holds users in, and the NATS subscriptions that follow them.
//!
//! The shards report each user's first and last binding ([`UserHook`]); [`Interest`] keeps a
//! count of bound users per bucket in atomics (no lock, nothing added to the shard map) and,
//! on a 0 ↔ 1 transition, queues the bucket for the subscription manager. A per-bucket
//! "queued" flag keeps at most one entry per bucket in that queue, so a connect/disconnect
//! storm cannot grow it past 4,096 entries.
//!
//! The [`manage`] task owns the subscriptions. It never trusts the order of transitions (two
//! shards may report the same bucket concurrently): for a queued bucket it reads the current
//! count and makes the subscription match. A bucket that empties is unsubscribed only after
//! [`UNSUBSCRIBE_LINGER`], so a page reload (disconnect, reconnect a second later) costs no
//! subscription churn. After each batch of changes it asks the presence task to announce the
//! new bucket set; the SUBs were sent before that announcement on the same connection, so a
//! peer that learns of the interest can rely on it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::bucket::{bucket, BUCKETS};
use super::presence::Presence;
use super::remote::Remote;
use crate::shard::UserHook;

/// How long a bucket with no bound user stays subscribed (and announced).
pub const UNSUBSCRIBE_LINGER: Duration = Duration::from_secs(5);

/// Between announcing a bucket gone and unsubscribing from it, so that peers stop counting
/// on this node's reply before it stops answering.
pub const RETIRE_GRACE: Duration = Duration::from_secs(1);

/// Bound users per bucket on this node.
pub struct Interest {
    counts: Box<[AtomicU32]>,
    queued: Box<[AtomicBool]>,
    changes: mpsc::UnboundedSender<u16>,
}

/// The receiving end of the bucket queue, for [`manage`].
pub struct Changes(mpsc::UnboundedReceiver<u16>);

impl Interest {
    pub fn new() -> (Arc<Self>, Changes) {
        let (changes, rx) = mpsc::unbounded_channel();
        let interest = Self {
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            queued: (0..BUCKETS).map(|_| AtomicBool::new(false)).collect(),
            changes,
        };
        (Arc::new(interest), Changes(rx))
    }

    /// Users bound in `bucket` on this node.
    pub fn count(&self, bucket: usize) -> u32 {
        self.counts[bucket].load(Ordering::Acquire)
    }

    fn queue(&self, bucket: usize) {
        if !self.queued[bucket].swap(true, Ordering::AcqRel) {
            let _ = self.changes.send(bucket as u16);
        }
    }
}

impl UserHook for Interest {
    fn user_bound(&self, user: &str) {
        let bucket = bucket(user);
        if self.counts[bucket].fetch_add(1, Ordering::AcqRel) == 0 {
            self.queue(bucket);
        }
    }

    fn user_unbound(&self, user: &str) {
        let bucket = bucket(user);
        if self.counts[bucket].fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue(bucket);
        }
    }
}

/// Keeps one subscription per bucket that holds a user, until the task is aborted (which
/// drops every subscriber, i.e. unsubscribes).
pub async fn manage(
    interest: Arc<Interest>,
    mut changes: Changes,
    remote: Arc<Remote>,
    presence: Arc<Presence>,
    announce: Arc<Notify>,
) {
    let mut subscribed: AHashMap<usize, Subscription> = AHashMap::new();
    // Buckets that emptied, and when they stop being announced.
    let mut lingering: AHashMap<usize, Instant> = AHashMap::new();
    // Buckets no longer announced, and when they are unsubscribed.
    let mut retiring: AHashMap<usize, Instant> = AHashMap::new();
    let mut batch = Vec::with_capacity(64);
    let metrics = remote.metrics().clone();
    loop {
        let next_expiry = lingering.values().chain(retiring.values()).min().copied();
        tokio::select! {
            received = changes.0.recv_many(&mut batch, 256) => {
                if received == 0 {
                    return;
                }
            }
            _ = sleep_until(next_expiry) => {}
        }
        let mut changed = false;
        for bucket in batch.drain(..).map(usize::from) {
            // Clear the flag before reading the count: a transition after this read queues
            // the bucket again.
            interest.queued[bucket].store(false, Ordering::Release);
            if interest.count(bucket) > 0 {
                lingering.remove(&bucket);
                if retiring.remove(&bucket).is_some() {
                    presence.set_local(bucket, true);
                    changed = true;
                }
                if !subscribed.contains_key(&bucket) {
                    match remote.subscribe(bucket).await {
                        Ok(subscription) => {
                            subscribed.insert(bucket, subscription);
                            presence.set_local(bucket, true);
                            metrics.cluster.subscribes.increment(1);
                            changed = true;
                        }
                        Err(error) => {
                            tracing::warn!(%error, bucket, "cluster subscribe failed");
                        }
                    }
                }
            } else if subscribed.contains_key(&bucket) && !retiring.contains_key(&bucket) {
                lingering
                    .entry(bucket)
                    .or_insert_with(|| Instant::now() + UNSUBSCRIBE_LINGER);
            }
        }
        let now = Instant::now();
        for bucket in expired(&mut lingering, now) {
            if interest.count(bucket) == 0 {
                // Announce the bucket gone first; unsubscribe once peers have heard it.
                presence.set_local(bucket, false);
                retiring.insert(bucket, now + RETIRE_GRACE);
                changed = true;
            }
        }
        for bucket in expired(&mut retiring, now) {
            if interest.count(bucket) == 0 {
                subscribed.remove(&bucket);
                metrics.cluster.unsubscribes.increment(1);
            } else {
                presence.set_local(bucket, true);
                changed = true;
            }
        }
        metrics.cluster.buckets.set(subscribed.len() as f64);
        if changed {
            announce.notify_one();
        }
    }
}

/// Removes and returns the entries due at `now`.
fn expired(deadlines: &mut AHashMap<usize, Instant>, now: Instant) -> Vec<usize> {
    let due: Vec<usize> = deadlines
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(bucket, _)| *bucket)
        .collect();
    for bucket in &due {
        deadlines.remove(bucket);
    }
    due
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A bucket's subscription: the task that serves it owns the subscriber; aborting the task
/// drops the subscriber, which unsubscribes.
pub struct Subscription(pub(super) JoinHandle<()>);

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transitions_are_queued_and_each_bucket_once() {
        let (interest, mut changes) = Interest::new();
        interest.user_bound("a");
        interest.user_bound("a");
        interest.user_unbound("a");
        interest.user_unbound("a");
        assert_eq!(changes.0.try_recv(), Ok(bucket("a") as u16));
        assert!(changes.0.try_recv().is_err(), "queued once while pending");
        assert_eq!(interest.count(bucket("a")), 0);
        interest.queued[bucket("a")].store(false, Ordering::Release);
        interest.user_bound("a");
        assert_eq!(changes.0.try_recv(), Ok(bucket("a") as u16));
    }
}
