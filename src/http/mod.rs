//! The HTTP side: request routing, the v1 push endpoint, metrics and health.

pub mod push;
pub mod response;
pub mod service;
