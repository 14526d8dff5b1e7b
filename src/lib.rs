//! pushgate: a sharded WebSocket push gateway, wire-compatible with wserver.
//!
//! # Layout
//!
//! The path of a push, module by module:
//!
//! - [`http`] receives `POST /push`; [`protocol::push`] parses the body once;
//!   [`ws::frame`] encodes the text frame once into a `Bytes`.
//! - [`shard::Router`] hashes the userID to the [`shard`] that owns it and hands it the push
//!   over a bounded channel (full → 503).
//! - The shard's [`shard::ShardState`], owned by one task and never locked, clones the frame
//!   handle into the [`conn::outbox::Outbox`] of every connection of that user registered
//!   for that event (full → slow consumer, closed with 4001).
//! - The shard writes each outbox it filled with one non-blocking vectored write; when a
//!   socket is full, the connection's [`conn::writer`] (driven by its session) takes over
//!   until the queue is empty.
//!
//! The other direction: [`http::service`] upgrades `GET /ws` (fastwebsockets on hyper), and
//! [`conn::session`] reads client frames with the strict [`ws::reader`], authenticates the
//! register frame's token with an [`auth::Authenticator`] and binds the connection through
//! its shard. [`gateway::run`] wires everything and is what `main.rs` and the tests call.

#![deny(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod gateway;
pub mod http;
pub mod log_throttle;
pub mod metrics;
pub mod protocol;
pub mod shard;
pub mod ws;

pub use config::Config;
pub use gateway::{run, run_with_auth, GatewayError, Listeners};
