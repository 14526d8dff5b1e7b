//! Everything pushgate exports to Prometheus: the registry of its own metrics (names in one
//! place, handles resolved once) and the process figures read from `/proc` at scrape time.

pub mod process;
mod registry;

pub use registry::*;
