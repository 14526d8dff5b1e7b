//! The WebSocket wire: the handshake checks, the strict client-frame reader and the
//! once-per-push server-frame encoder.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod reader;
