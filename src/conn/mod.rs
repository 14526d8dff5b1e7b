//! One WebSocket connection: its outbound queue (written by its shard), the writer that
//! takes over when the socket is full, and the session that reads client frames and binds the
//! connection to a user.

pub mod outbox;
pub mod session;
pub mod writer;
