//! Shards: each alone owns part of the userID → connections map.
//!
//! `state` is the map and the rules applied to it (pure, synchronous, benchmarked);
//! `task` runs one state on a tokio task fed by a bounded channel; `router` hashes a userID
//! to its shard and holds the senders.

pub mod command;
pub mod router;
pub mod state;
pub mod task;

pub use command::{Command, ConnHandle, MultiPush};
pub use router::{PushRefused, Router};
pub use state::{ShardState, UserHook};
