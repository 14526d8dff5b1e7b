//! The one configuration struct: every flag is also a `PUSHGATE_…` environment variable, and
//! each field's doc comment is its `--help` text.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::conn::outbox::QueueLimits;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// pushgate: a sharded WebSocket push gateway, wire-compatible with wserver.
#[derive(Debug, Clone, Parser)]
#[command(name = "pushgate", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on. Loopback by default: expose it deliberately.
    #[arg(long, env = "PUSHGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Path of the WebSocket endpoint browsers connect to.
    #[arg(long, env = "PUSHGATE_WS_PATH", default_value = "/ws")]
    pub ws_path: String,

    /// Path of the v1 push endpoint.
    #[arg(long, env = "PUSHGATE_PUSH_PATH", default_value = "/push")]
    pub push_path: String,

    /// Path of the Prometheus metrics endpoint.
    #[arg(long, env = "PUSHGATE_METRICS_PATH", default_value = "/metrics")]
    pub metrics_path: String,

    /// Number of shards the userID → connections map is split into (default: available cores).
    #[arg(long, env = "PUSHGATE_SHARDS")]
    pub shards: Option<usize>,

    /// Runtime worker threads (default: available cores).
    #[arg(long, env = "PUSHGATE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Commands a shard's channel holds before pushes are refused with 503.
    #[arg(long, env = "PUSHGATE_SHARD_QUEUE", default_value_t = 8192)]
    pub shard_queue: usize,

    /// Frames a connection's outbound queue holds before it is closed as a slow consumer.
    #[arg(long, env = "PUSHGATE_CONN_QUEUE_FRAMES", default_value_t = 1024)]
    pub conn_queue_frames: usize,

    /// Bytes a connection's outbound queue holds before it is closed as a slow consumer.
    #[arg(long, env = "PUSHGATE_CONN_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub conn_queue_bytes: usize,

    /// Largest message a client may send, in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "PUSHGATE_MAX_MESSAGE_SIZE", default_value_t = 64 << 10)]
    pub max_message_size: usize,

    /// Largest push body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "PUSHGATE_MAX_PUSH_BODY", default_value_t = 1 << 20)]
    pub max_push_body: usize,

    /// Push keys, comma-separated: when set, pushes need `Authorization: Bearer <key>` and
    /// get 401 otherwise. Empty: pushes are not authorised (the old server's default).
    #[arg(
        long,
        env = "PUSHGATE_PUSH_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub push_keys: Vec<String>,

    /// Seconds allowed to read a request's headers before the connection is closed.
    #[arg(long, env = "PUSHGATE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Seconds given to connections to close on shutdown before the process exits anyway.
    #[arg(long, env = "PUSHGATE_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    /// Log format.
    #[arg(long, env = "PUSHGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing-subscriber syntax, e.g. `info` or `pushgate=debug`).
    #[arg(long, env = "PUSHGATE_LOG", default_value = "info")]
    pub log: String,
}

/// A configuration that parses but cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--shards must be at least 1")]
    NoShards,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("{flag} must start with '/' (got {value:?})")]
    BadPath { flag: &'static str, value: String },
    #[error("--ws-path, --push-path and --metrics-path must differ")]
    PathClash,
    #[error("--push-keys contains an empty key")]
    EmptyPushKey,
}

impl Config {
    /// Defaults for an embedded gateway (tests): every flag at its default.
    pub fn for_tests() -> Self {
        Self::parse_from(["pushgate"])
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shards == Some(0) {
            return Err(ConfigError::NoShards);
        }
        if self.worker_threads == Some(0) {
            return Err(ConfigError::Zero("--worker-threads"));
        }
        for (flag, value) in [
            ("--shard-queue", self.shard_queue),
            ("--conn-queue-frames", self.conn_queue_frames),
            ("--conn-queue-bytes", self.conn_queue_bytes),
            ("--max-message-size", self.max_message_size),
            ("--max-push-body", self.max_push_body),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        for (flag, value) in [
            ("--ws-path", &self.ws_path),
            ("--push-path", &self.push_path),
            ("--metrics-path", &self.metrics_path),
        ] {
            if !value.starts_with('/') {
                return Err(ConfigError::BadPath {
                    flag,
                    value: value.clone(),
                });
            }
        }
        if self.ws_path == self.push_path
            || self.ws_path == self.metrics_path
            || self.push_path == self.metrics_path
        {
            return Err(ConfigError::PathClash);
        }
        if self.push_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(ConfigError::EmptyPushKey);
        }
        Ok(())
    }

    /// Shard count, resolving the default.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_frames: self.conn_queue_frames,
            max_bytes: self.conn_queue_bytes,
        }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let config = Config::for_tests();
        config.validate().unwrap();
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(
            (config.ws_path.as_str(), config.push_path.as_str()),
            ("/ws", "/push")
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let parse = |args: &[&str]| {
            Config::try_parse_from(std::iter::once("pushgate").chain(args.iter().copied()))
        };
        assert_eq!(
            parse(&["--shards", "0"]).unwrap().validate(),
            Err(ConfigError::NoShards)
        );
        assert!(matches!(
            parse(&["--ws-path", "ws"]).unwrap().validate(),
            Err(ConfigError::BadPath { .. })
        ));
        assert_eq!(
            parse(&["--push-path", "/ws"]).unwrap().validate(),
            Err(ConfigError::PathClash)
        );
        assert!(parse(&["--listen", "nowhere"]).is_err());
    }
}
