//! The HTTP side: request routing, the v1 push endpoint, metrics and health.

pub mod alertmanager;
pub mod body;
pub mod head_deadline;
pub mod push;
pub mod push_keys;
pub mod response;
pub mod service;
pub mod v2;
