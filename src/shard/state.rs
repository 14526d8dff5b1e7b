//! One shard's part of the userID → connections map, and the rules applied to it.
//!
//! Synchronous and lock-free by construction: only the shard's task touches it. A push
//! clones the already-encoded frame handle into each matching connection's queue; a
//! connection whose queue is full is closed as a slow consumer and unbound on the spot, and
//! the push carries on for everyone else.
//!
//! Event names are interned per shard: every binding for "alarm" shares one `Arc<str>`, so
//! an idle binding holds no string of its own and a push matches bindings by pointer, without
//! reading each binding's copy of the name (one cache miss per binding in a large fan-out).

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use smallvec::{smallvec, SmallVec};

use super::command::{Command, ConnHandle};
use crate::conn::outbox::{Flushed, Queue, QueueError};
use crate::log_throttle::LogThrottle;
use crate::metrics::{DropReason, Metrics, RefusalReason};
use crate::ws::close::CloseCode;
use crate::ws::frame;

/// One connection of a user, and the events it registered for.
#[derive(Debug)]
struct Bound {
    conn: ConnHandle,
    /// The shard's interned copies of the event names; nearly always one, kept inline.
    events: SmallVec<[Arc<str>; 1]>,
}

impl Bound {
    fn holds(&self, event: &Arc<str>) -> bool {
        self.events.iter().any(|held| Arc::ptr_eq(held, event))
    }
}

/// A user holding more connections than this gets an index from connection id to place, so
/// that registering and leaving cost the same for a user with ten thousand connections (a
/// wall of screens, a page shared by a team) as for one with a single tab; below it, a
/// scan of a few entries is cheaper than the table and costs no memory.
const INDEX_FROM: usize = 16;

/// A user's connections, in no particular order: a leaving connection's place is taken by
/// the last one.
#[derive(Debug, Default)]
struct UserConns {
    conns: Vec<Bound>,
    /// Connection id → place in `conns`, kept while the user holds more than
    /// [`INDEX_FROM`] / 2 connections once it has held more than [`INDEX_FROM`].
    index: Option<Box<AHashMap<u64, usize>>>,
}

impl UserConns {
    fn with_one_slot() -> Self {
        // Most users hold one connection: one slot, not Vec's default of four.
        Self {
            conns: Vec::with_capacity(1),
            index: None,
        }
    }

    fn position(&self, conn_id: u64) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&conn_id).copied(),
            None => self.conns.iter().position(|b| b.conn.id == conn_id),
        }
    }

    fn add(&mut self, bound: Bound) {
        let conn_id = bound.conn.id;
        self.conns.push(bound);
        match &mut self.index {
            Some(index) => {
                index.insert(conn_id, self.conns.len() - 1);
            }
            None if self.conns.len() > INDEX_FROM => {
                let index = self
                    .conns
                    .iter()
                    .enumerate()
                    .map(|(at, b)| (b.conn.id, at))
                    .collect();
                self.index = Some(Box::new(index));
            }
            None => {}
        }
    }

    fn remove(&mut self, conn_id: u64) -> Option<Bound> {
        let at = self.position(conn_id)?;
        let bound = self.conns.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(&conn_id);
            if let Some(moved) = self.conns.get(at) {
                index.insert(moved.conn.id, at);
            }
            if self.conns.len() <= INDEX_FROM / 2 {
                self.index = None;
            }
        }
        Some(bound)
    }
}

/// Drops an interned event name from `events` when `event`, a handle about to be dropped,
/// is the last one besides the table's: the shard holds names only while a binding does.
/// Every other handle to a name lives in a binding, so nothing else may hold one across a
/// call that can unbind (see [`ShardState::broadcast`]).
fn forget_if_unbound(events: &mut AHashSet<Arc<str>>, event: &Arc<str>) {
    if Arc::strong_count(event) == 2 {
        events.remove(&**event);
    }
}

/// Told when a user gets its first binding in this shard and when it loses its last one, so
/// that cluster mode can follow which users this node holds without touching the map. Called
/// on the shard's task, so it must be cheap and must not block.
pub trait UserHook: Send + Sync {
    fn user_bound(&self, user: &str);
    fn user_unbound(&self, user: &str);
}

/// The map a shard owns.
pub struct ShardState {
    users: AHashMap<Arc<str>, UserConns>,
    /// One copy of each event name some binding holds; a name leaves with its last binding.
    events: AHashSet<Arc<str>>,
    /// Distinct connections with at least one binding.
    connections: usize,
    metrics: Arc<Metrics>,
    slow_close_frame: Bytes,
    /// Most connections one user may hold; 0 means unlimited.
    max_per_user: usize,
    hook: Option<Arc<dyn UserHook>>,
    /// Connections with frames queued for the shard to write, in the order they got their
    /// first one: written round-robin, so that a push queued behind a long fan-out reaches
    /// every connection within one round.
    to_flush: VecDeque<ConnHandle>,
    slow_close_log: SlowCloseLog,
}

/// A fan-out that outruns many clients at once closes them all in the same millisecond: one
/// warn line per interval says so, with how many were closed since the last line, rather
/// than one line each. Every close is counted in the metrics, and each connection's end is
/// logged at debug by its session.
#[derive(Debug)]
struct SlowCloseLog {
    throttle: LogThrottle,
    closed_since_line: u64,
}

/// How often a shard may log that it closed slow consumers.
const SLOW_CLOSE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl SlowCloseLog {
    fn new() -> Self {
        Self {
            throttle: LogThrottle::new(SLOW_CLOSE_LOG_INTERVAL),
            closed_since_line: 0,
        }
    }

    fn closed(&mut self, conn_id: u64) {
        self.closed_since_line += 1;
        if self.throttle.ready() {
            tracing::warn!(
                conn = conn_id,
                closed_since_last_line = self.closed_since_line,
                "closing slow consumer"
            );
            self.closed_since_line = 0;
        }
    }
}

impl ShardState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            users: AHashMap::new(),
            events: AHashSet::new(),
            connections: 0,
            metrics,
            slow_close_frame: frame::close(CloseCode::SLOW_CONSUMER.0, "slow consumer"),
            max_per_user: 0,
            hook: None,
            to_flush: VecDeque::new(),
            slow_close_log: SlowCloseLog::new(),
        }
    }

    /// Limits the connections one user may hold (0: unlimited).
    pub fn with_user_cap(mut self, max_per_user: usize) -> Self {
        self.max_per_user = max_per_user;
        self
    }

    /// Reports users' first and last bindings to `hook`.
    pub fn with_hook(mut self, hook: Option<Arc<dyn UserHook>>) -> Self {
        self.hook = hook;
        self
    }

    /// Users with at least one bound connection.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Connections with at least one binding.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Distinct event names bound in this shard.
    #[cfg(test)]
    fn events(&self) -> usize {
        self.events.len()
    }

    /// Connections whose queues wait for [`ShardState::flush`].
    pub fn unflushed(&self) -> usize {
        self.to_flush.len()
    }

    /// Writes the queues of up to `limit` connections, oldest first; a connection whose
    /// socket is full is left to its session. Returns how many were written.
    pub fn flush(&mut self, limit: usize) -> usize {
        let count = limit.min(self.to_flush.len());
        for conn in self.to_flush.drain(..count) {
            if conn.outbox.flush(&self.metrics) == Flushed::HandedOver {
                self.metrics.handed_over.increment(1);
            }
        }
        count
    }

    /// Applies one command.
    pub fn apply(&mut self, command: Command) {
        match command {
            Command::Register {
                user,
                event,
                conn,
                ack,
                reply,
            } => {
                let bound = self.register(user.clone(), event, conn.clone());
                if let (true, Some(ack)) = (bound, ack) {
                    self.queue_ack(&user, &conn, ack);
                }
                // The session may be gone (the client left): nothing was bound for it to
                // undo if the cap refused it, and an unregister follows otherwise.
                let _ = reply.send(bound);
            }
            Command::Unregister { user, conn_id } => self.unregister(&user, conn_id),
            Command::Push {
                user,
                event,
                frame,
                accepted_at,
                reply,
            } => {
                let sent = self.push(&user, &event, &frame, accepted_at);
                // The pusher may have gone (request cancelled): the frames are queued anyway.
                let _ = reply.send(sent);
            }
            Command::PushMany {
                pushes,
                accepted_at,
                reply,
            } => {
                let mut sent = 0;
                for push in &pushes {
                    for user in &push.users {
                        sent += self.queue(user, &push.event, &push.frame, accepted_at);
                    }
                }
                self.count_deliveries(sent);
                let _ = reply.send(sent);
            }
            Command::Broadcast {
                event,
                frame,
                accepted_at,
                reply,
            } => {
                let _ = reply.send(self.broadcast(&event, &frame, accepted_at));
            }
            Command::Disconnect {
                user,
                event,
                close_frame,
                reply,
            } => {
                let _ = reply.send(self.disconnect(&user, event.as_deref(), &close_frame));
            }
        }
    }

    /// Binds `conn` to (user, event); binding the same pair twice is a no-op. Returns false
    /// when the user already holds `--max-connections-per-user` connections: nothing is
    /// bound, and the connection's session answers and closes it (4029).
    pub fn register(&mut self, user: Arc<str>, event: Box<str>, conn: ConnHandle) -> bool {
        if conn.outbox.is_closing() {
            // Closed by this shard (a slow consumer, a disconnect) while its session was
            // still reading a register frame: binding it again would count it and take a
            // place under the user's cap until the session unbinds. Not a refusal either.
            return true;
        }
        let event = match self.events.get(&*event) {
            Some(interned) => interned.clone(),
            None => {
                let interned: Arc<str> = event.into();
                self.events.insert(interned.clone());
                interned
            }
        };
        let user_conns = match self.users.entry(user) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                // A new user is never refused by the cap, so it does get this binding.
                if let Some(hook) = &self.hook {
                    hook.user_bound(entry.key());
                }
                entry.insert(UserConns::with_one_slot())
            }
        };
        if let Some(at) = user_conns.position(conn.id) {
            // A bound connection registering again: one more event, or nothing new.
            let bound = &mut user_conns.conns[at];
            if !bound.holds(&event) {
                bound.events.push(event);
            }
            return true;
        }
        if self.max_per_user > 0 && user_conns.conns.len() >= self.max_per_user {
            self.metrics.refused(RefusalReason::UserCap);
            forget_if_unbound(&mut self.events, &event);
            return false;
        }
        self.connections += 1;
        user_conns.add(Bound {
            conn,
            events: smallvec![event],
        });
        true
    }

    /// Queues a register reply ahead of whatever this shard pushes to `conn` next. A queue
    /// too full for it makes the connection a slow consumer, as a full queue does for a push.
    fn queue_ack(&mut self, user: &str, conn: &ConnHandle, ack: Bytes) {
        match conn.outbox.push(ack, None) {
            Ok(Queue::Flush) => self.to_flush.push_back(conn.clone()),
            Ok(Queue::Pending) | Err(QueueError::Closed) => {}
            Err(QueueError::Full) => {
                if conn
                    .outbox
                    .close_slow(self.slow_close_frame.clone(), &self.metrics)
                {
                    self.slow_close_log.closed(conn.id);
                }
                self.unregister(user, conn.id);
            }
        }
    }

    /// Removes every binding of a connection.
    pub fn unregister(&mut self, user: &str, conn_id: u64) {
        let Some(user_conns) = self.users.get_mut(user) else {
            return;
        };
        let Some(bound) = user_conns.remove(conn_id) else {
            return;
        };
        self.connections -= 1;
        for event in &bound.events {
            forget_if_unbound(&mut self.events, event);
        }
        if user_conns.conns.is_empty() {
            self.users.remove(user);
            if let Some(hook) = &self.hook {
                hook.user_unbound(user);
            }
        }
    }

    /// Queues `frame` to every connection of this shard registered for `event`.
    pub fn broadcast(&mut self, event: &str, frame: &Bytes, accepted_at: Instant) -> usize {
        // Only borrowed: a handle held across the pushes below would keep the name in the
        // table when a slow consumer's unbinding removes its last binding.
        let Some(interned) = self.events.get(event) else {
            return 0;
        };
        let users: Vec<Arc<str>> = self
            .users
            .iter()
            .filter(|(_, user_conns)| user_conns.conns.iter().any(|b| b.holds(interned)))
            .map(|(user, _)| user.clone())
            .collect();
        let sent = users
            .iter()
            .map(|user| self.queue(user, event, frame, accepted_at))
            .sum();
        self.count_deliveries(sent);
        sent
    }

    /// Closes the connections of `user` (only those registered for `event`, when given) and
    /// unbinds them; returns how many were closed.
    pub fn disconnect(&mut self, user: &str, event: Option<&str>, close_frame: &Bytes) -> usize {
        let Some(user_conns) = self.users.get(user) else {
            return 0;
        };
        let closing: Vec<u64> = user_conns
            .conns
            .iter()
            .filter(|b| event.is_none_or(|e| b.events.iter().any(|held| **held == *e)))
            .filter(|b| b.conn.outbox.close(close_frame.clone()))
            .map(|b| b.conn.id)
            .collect();
        for conn_id in &closing {
            self.unregister(user, *conn_id);
        }
        closing.len()
    }

    /// Queues `frame` to every connection of `user` registered for `event`.
    pub fn push(&mut self, user: &str, event: &str, frame: &Bytes, accepted_at: Instant) -> usize {
        let sent = self.queue(user, event, frame, accepted_at);
        self.count_deliveries(sent);
        sent
    }

    /// Deliveries are counted here, where the frames are queued, rather than by the request
    /// that asked: a request dropped while waiting for its count still delivers them. Once
    /// per command, not per user of a batch: the counter is shared by every shard.
    fn count_deliveries(&self, sent: usize) {
        if sent > 0 {
            self.metrics.deliveries.increment(sent as u64);
        }
    }

    /// [`ShardState::push`] without counting the deliveries.
    fn queue(&mut self, user: &str, event: &str, frame: &Bytes, accepted_at: Instant) -> usize {
        let Some(user_conns) = self.users.get(user) else {
            return 0;
        };
        let Some(event) = self.events.get(event) else {
            // No connection of this shard registered for it.
            return 0;
        };
        let mut sent = 0;
        let mut dead: Vec<u64> = Vec::new();
        for bound in user_conns.conns.iter().filter(|b| b.holds(event)) {
            match bound.conn.outbox.push(frame.clone(), Some(accepted_at)) {
                Ok(Queue::Flush) => {
                    sent += 1;
                    self.to_flush.push_back(bound.conn.clone());
                }
                Ok(Queue::Pending) => sent += 1,
                Err(QueueError::Full) => {
                    if bound
                        .conn
                        .outbox
                        .close_slow(self.slow_close_frame.clone(), &self.metrics)
                    {
                        self.slow_close_log.closed(bound.conn.id);
                    }
                    self.metrics.dropped(DropReason::SlowConsumer);
                    dead.push(bound.conn.id);
                }
                Err(QueueError::Closed) => {
                    self.metrics.dropped(DropReason::Closed);
                    dead.push(bound.conn.id);
                }
            }
        }
        if !dead.is_empty() {
            for conn_id in dead {
                self.unregister(user, conn_id);
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::outbox::{Outbox, QueueLimits};

    fn conn(id: u64, max_frames: usize) -> ConnHandle {
        ConnHandle {
            id,
            outbox: Arc::new(Outbox::new(QueueLimits {
                max_frames,
                max_bytes: 1 << 20,
            })),
        }
    }

    fn state() -> ShardState {
        ShardState::new(Arc::new(Metrics::new(1)))
    }

    #[test]
    fn push_reaches_only_matching_events() {
        let mut s = state();
        let (a, b, c) = (conn(1, 8), conn(2, 8), conn(3, 8));
        s.register("u".into(), "alarm".into(), a.clone());
        s.register("u".into(), "alarm".into(), b.clone());
        s.register("u".into(), "other".into(), c.clone());
        let frame = frame::text("m");
        assert_eq!(s.push("u", "alarm", &frame, Instant::now()), 2);
        assert_eq!((a.outbox.len(), b.outbox.len(), c.outbox.len()), (1, 1, 0));
        assert_eq!(s.push("nobody", "alarm", &frame, Instant::now()), 0);
        assert_eq!((s.users(), s.connections()), (1, 3));
        // The shard counts what it queued, whoever asked and whether or not they wait.
        assert!(s
            .metrics
            .render()
            .lines()
            .any(|line| line == "pushgate_deliveries_total 2"));
    }

    /// The flush list is a round: connections are written in the order they got their first
    /// frame, a connection is on it once however many frames it has, and one written out goes
    /// to the back when it gets a new frame.
    #[test]
    fn queues_are_written_round_robin_each_connection_once_per_round() {
        let mut s = state();
        let conns = [conn(1, 8), conn(2, 8), conn(3, 8)];
        for c in &conns {
            s.register("u".into(), "e".into(), c.clone());
        }
        let lens = |conns: &[ConnHandle; 3]| conns.clone().map(|c| c.outbox.len());
        let frame = frame::text("m");
        assert_eq!(s.push("u", "e", &frame, Instant::now()), 3);
        assert_eq!(s.unflushed(), 3);
        assert_eq!(s.flush(2), 2);
        assert_eq!(lens(&conns), [0, 0, 1]);
        // A second push mid-round: connection 3 is still waiting (now with two frames),
        // 1 and 2 join the back of the round.
        assert_eq!(s.push("u", "e", &frame, Instant::now()), 3);
        assert_eq!(s.unflushed(), 3);
        assert_eq!(lens(&conns), [1, 1, 2]);
        assert_eq!(s.flush(1), 1);
        assert_eq!(lens(&conns), [1, 1, 0]);
        assert_eq!(s.flush(usize::MAX), 2);
        assert_eq!(lens(&conns), [0, 0, 0]);
        assert_eq!(s.unflushed(), 0);
    }

    #[test]
    fn same_pair_twice_is_one_binding_and_two_events_count_one_connection() {
        let mut s = state();
        let a = conn(1, 8);
        s.register("u".into(), "e".into(), a.clone());
        s.register("u".into(), "e".into(), a.clone());
        s.register("u".into(), "f".into(), a.clone());
        assert_eq!(s.connections(), 1);
        assert_eq!(s.push("u", "e", &frame::text("m"), Instant::now()), 1);
        s.unregister("u", 1);
        assert_eq!((s.users(), s.connections()), (0, 0));
    }

    #[test]
    fn slow_consumer_is_closed_and_unbound_while_others_receive() {
        let mut s = state();
        let (slow, fine) = (conn(1, 1), conn(2, 8));
        s.register("u".into(), "e".into(), slow.clone());
        s.register("u".into(), "e".into(), fine.clone());
        let frame = frame::text("m");
        assert_eq!(s.push("u", "e", &frame, Instant::now()), 2);
        assert_eq!(s.push("u", "e", &frame, Instant::now()), 1);
        assert!(slow.outbox.is_closing());
        assert_eq!(s.connections(), 1);
        assert_eq!(fine.outbox.len(), 2);
    }

    #[test]
    fn connections_past_the_user_cap_are_refused() {
        let mut s = state().with_user_cap(2);
        let (a, b, c) = (conn(1, 8), conn(2, 8), conn(3, 8));
        assert!(s.register("u".into(), "e".into(), a.clone()));
        assert!(s.register("u".into(), "f".into(), a.clone()));
        assert!(s.register("u".into(), "e".into(), b.clone()));
        assert!(!s.register("u".into(), "e".into(), c.clone()));
        assert_eq!(s.connections(), 2);
        assert_eq!(s.push("u", "e", &frame::text("m"), Instant::now()), 2);
        assert_eq!(c.outbox.len(), 0);
        // Another user is not affected.
        assert!(s.register("v".into(), "e".into(), c.clone()));
        assert_eq!(s.users(), 2);
    }

    /// A connection that adds an event after other connections joined still counts once
    /// against the cap (the cap counts connections, not bindings).
    #[test]
    fn a_connection_with_a_later_second_event_counts_once_against_the_cap() {
        let mut s = state().with_user_cap(3);
        let (a, b, c, d) = (conn(1, 8), conn(2, 8), conn(3, 8), conn(4, 8));
        s.register("u".into(), "e".into(), a.clone());
        s.register("u".into(), "e".into(), b.clone());
        s.register("u".into(), "f".into(), a.clone());
        assert!(s.register("u".into(), "e".into(), c.clone()));
        assert_eq!(s.connections(), 3);
        assert!(!s.register("u".into(), "e".into(), d.clone()));
        assert_eq!(s.push("u", "e", &frame::text("m"), Instant::now()), 3);
        assert_eq!(s.push("u", "f", &frame::text("m"), Instant::now()), 1);
        // Unbinding the connection with two events frees one place.
        s.unregister("u", 1);
        assert!(s.register("u".into(), "e".into(), conn(5, 8)));
        assert_eq!(s.connections(), 3);
    }

    #[test]
    fn the_hook_hears_first_and_last_bindings_only() {
        use std::sync::Mutex;
        #[derive(Default)]
        struct Log(Mutex<Vec<String>>);
        impl UserHook for Log {
            fn user_bound(&self, user: &str) {
                self.0.lock().unwrap().push(format!("+{user}"));
            }
            fn user_unbound(&self, user: &str) {
                self.0.lock().unwrap().push(format!("-{user}"));
            }
        }
        let log = Arc::new(Log::default());
        let mut s = state().with_hook(Some(log.clone()));
        let (a, b) = (conn(1, 1), conn(2, 8));
        s.register("u".into(), "e".into(), a.clone());
        s.register("u".into(), "f".into(), a.clone());
        s.register("u".into(), "e".into(), b.clone());
        s.unregister("u", 2);
        // The slow consumer is unbound by a push: its user's last binding goes with it.
        let frame = frame::text("m");
        s.push("u", "e", &frame, Instant::now());
        s.push("u", "e", &frame, Instant::now());
        s.register("v".into(), "e".into(), b.clone());
        assert_eq!(*log.0.lock().unwrap(), ["+u", "-u", "+v"]);
    }

    /// Bindings share one copy of an event name, which goes with its last binding, whether
    /// that binding is removed, unbound by a push, or was never made (refused by the cap).
    #[test]
    fn an_event_name_is_kept_once_while_some_binding_holds_it() {
        let mut s = state().with_user_cap(1);
        let (a, b, c) = (conn(1, 8), conn(2, 1), conn(3, 8));
        s.register("u".into(), "e".into(), a.clone());
        s.register("u".into(), "f".into(), a.clone());
        s.register("v".into(), "e".into(), b.clone());
        assert_eq!(s.events(), 2);
        // Refused by the cap (u holds one connection already): "g" is not kept.
        s.register("u".into(), "g".into(), c.clone());
        assert_eq!(s.events(), 2);
        s.unregister("u", 1);
        assert_eq!(s.events(), 1);
        assert_eq!(s.push("v", "f", &frame::text("m"), Instant::now()), 0);
        // b's queue holds one frame: the second push closes it as a slow consumer and
        // unbinds it, and "e" goes with it.
        assert_eq!(s.push("v", "e", &frame::text("m"), Instant::now()), 1);
        assert_eq!(s.push("v", "e", &frame::text("m"), Instant::now()), 0);
        assert_eq!((s.users(), s.events()), (0, 0));
        // A name comes back with a new binding.
        let d = conn(4, 8);
        s.register("w".into(), "e".into(), d.clone());
        assert_eq!(s.events(), 1);
        assert_eq!(s.push("w", "e", &frame::text("m"), Instant::now()), 1);
    }

    /// A broadcast that unbinds a slow consumer (its event's last binding) lets the name go.
    #[test]
    fn a_broadcast_that_unbinds_the_last_binding_forgets_the_event() {
        let mut s = state();
        let slow = conn(1, 1);
        s.register("v".into(), "e".into(), slow.clone());
        assert_eq!(s.broadcast("e", &frame::text("m"), Instant::now()), 1);
        assert_eq!(s.broadcast("e", &frame::text("m"), Instant::now()), 0);
        assert!(slow.outbox.is_closing());
        assert_eq!((s.users(), s.events()), (0, 0));
    }

    /// A user's connections come and go in any order across the size where the index is
    /// built and dropped; every push still reaches exactly the connections bound to its
    /// event, and each leaving connection takes only its own bindings.
    #[test]
    fn many_connections_of_one_user_come_and_go_in_any_order() {
        use std::collections::BTreeMap;
        let mut s = state();
        // Connection id → (handle, bound to "f" too).
        let mut model: BTreeMap<u64, (ConnHandle, bool)> = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let frame = frame::text("m");
        for step in 0..4_000 {
            // Grow to ~3 × INDEX_FROM, shrink to nothing, grow again.
            let grow = (step / 400) % 2 == 0;
            let id = next() % (3 * INDEX_FROM as u64);
            if grow {
                let c = conn(id, 1 << 16);
                let also_f = next() % 3 == 0;
                let c = model.entry(id).or_insert((c, false));
                s.register("u".into(), "e".into(), c.0.clone());
                if also_f {
                    s.register("u".into(), "f".into(), c.0.clone());
                    c.1 = true;
                }
            } else if model.remove(&id).is_some() {
                s.unregister("u", id);
            }
            if step % 50 == 0 {
                let bound_f = model.values().filter(|(_, f)| *f).count();
                assert_eq!(s.connections(), model.len(), "step {step}");
                assert_eq!(s.push("u", "e", &frame, Instant::now()), model.len());
                assert_eq!(s.push("u", "f", &frame, Instant::now()), bound_f);
                for (c, f) in model.values() {
                    assert_eq!(c.outbox.len(), 1 + usize::from(*f), "step {step}");
                    c.outbox.discard_queued();
                }
                s.flush(usize::MAX);
            }
        }
        for id in std::mem::take(&mut model).into_keys() {
            s.unregister("u", id);
        }
        assert_eq!((s.users(), s.connections(), s.events()), (0, 0, 0));
    }

    /// A register frame read after this shard closed the connection binds nothing and
    /// refuses nothing (no cap place taken, no hook call, no refusal counted).
    #[test]
    fn a_closing_connection_is_not_bound_again() {
        let mut s = state().with_user_cap(1);
        let (a, b) = (conn(1, 8), conn(2, 8));
        assert!(s.register("u".into(), "e".into(), a.clone()));
        s.disconnect("u", None, &frame::close(4000, "bye"));
        assert_eq!(s.connections(), 0);
        assert!(s.register("u".into(), "f".into(), a.clone()));
        assert_eq!((s.users(), s.connections(), s.events()), (0, 0, 0));
        assert!(s.register("u".into(), "e".into(), b));
        assert_eq!(s.connections(), 1);
    }

    #[test]
    fn closed_connections_are_unbound_lazily() {
        let mut s = state();
        let a = conn(1, 8);
        s.register("u".into(), "e".into(), a.clone());
        a.outbox.mark_closed(&s.metrics);
        assert_eq!(s.push("u", "e", &frame::text("m"), Instant::now()), 0);
        assert_eq!(s.users(), 0);
    }
}
