//! What the HTTP and WebSocket tasks ask of a shard.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::conn::outbox::Outbox;

/// A connection as a shard sees it: an id and the queue its frames go to.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: u64,
    pub outbox: Arc<Outbox>,
}

/// One frame for several users (on their shards, the part of them each shard owns).
#[derive(Debug, Clone)]
pub struct MultiPush {
    pub users: Vec<String>,
    pub event: String,
    pub frame: Bytes,
}

/// A message to the shard that owns `user`.
#[derive(Debug)]
pub enum Command {
    /// Bind a connection to (user, event); reply false when the user's connection cap
    /// refused it (nothing bound), so that the session answers and closes it.
    Register {
        user: Arc<str>,
        event: Box<str>,
        conn: ConnHandle,
        /// The `registered` reply the client asked for, queued by the shard as it binds:
        /// in the connection's queue it then comes before any push the binding lets in,
        /// which a client relies on to tell its ack from pushed text.
        ack: Option<Bytes>,
        reply: oneshot::Sender<bool>,
    },
    /// Remove every binding of a connection (it closed).
    Unregister { user: Arc<str>, conn_id: u64 },
    /// Queue `frame` to every connection of `user` registered for `event`; reply with how
    /// many it was queued to.
    Push {
        user: String,
        event: String,
        frame: Bytes,
        accepted_at: Instant,
        reply: oneshot::Sender<usize>,
    },
    /// [`Command::Push`] for several users of this shard, and possibly several frames, at
    /// once, in order: a request pushing to several users (or several alerts) takes one slot
    /// in each of their shards' channels, all of them or none. Replies with the total.
    PushMany {
        pushes: Vec<MultiPush>,
        accepted_at: Instant,
        reply: oneshot::Sender<usize>,
    },
    /// Queue `frame` to every connection of this shard registered for `event`.
    Broadcast {
        event: String,
        frame: Bytes,
        accepted_at: Instant,
        reply: oneshot::Sender<usize>,
    },
    /// Close every connection of `user` (those registered for `event`, when given) with
    /// `close_frame`, unbind them, and reply how many.
    Disconnect {
        user: String,
        event: Option<String>,
        close_frame: Bytes,
        reply: oneshot::Sender<usize>,
    },
}
