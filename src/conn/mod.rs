//! One WebSocket connection: its outbound queue, the writer that drains it, and the session
//! that reads client frames and binds the connection to a user.

pub mod outbox;
pub mod session;
pub mod writer;
