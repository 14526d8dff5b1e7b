//! Turning a register frame's token into a userID.
//!
//! The old server took a `func(token) (userID, ok)`; [`Authenticator`] is its async
//! counterpart, chosen by `--auth`: `identity` (the userID is the token, the default),
//! `static` (a file of tokens, reloaded on SIGHUP), `jwt` (signed tokens, keys by `kid`) or
//! `http` (a backend decides).
//! An authenticator may say when the identity expires; the session then closes the
//! connection at that moment (4408).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{AuthMode, Config, ConfigError};

pub mod http;
pub mod identity;
pub mod jwt;
pub mod static_file;

pub use identity::IdentityAuthenticator;

/// Who a token stands for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    pub fn forever(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            expires_at: None,
        }
    }
}

/// Why a token was refused. Each variant is a metric label, so the set is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("token is not well-formed")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token names an unknown key")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("token claims are not acceptable")]
    Claims,
    #[error("token is unknown")]
    UnknownToken,
    #[error("the authentication backend refused the token")]
    Refused,
}

impl RejectReason {
    pub const ALL: [Self; 9] = [
        Self::Malformed,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::UnknownKey,
        Self::AlgorithmMismatch,
        Self::Claims,
        Self::UnknownToken,
        Self::Refused,
    ];

    /// Bounded label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownKey => "unknown_key",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::Claims => "claims",
            Self::UnknownToken => "unknown_token",
            Self::Refused => "refused",
        }
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Rejected(RejectReason),
    #[error("authenticator unavailable")]
    Unavailable,
}

/// The future an authenticator returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, AuthError>> + Send + 'a>>;

/// Maps a token to the identity whose pushes the connection receives.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a>;

    /// Re-reads whatever the authenticator loads from disk (on SIGHUP). Connections already
    /// bound are kept.
    fn reload(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Builds the authenticator `--auth` selects; a bad key or token file is a configuration
/// error (exit 64).
pub fn from_config(config: &Config) -> Result<Arc<dyn Authenticator>, ConfigError> {
    Ok(match config.auth {
        AuthMode::Identity => Arc::new(IdentityAuthenticator),
        AuthMode::Static => Arc::new(static_file::StaticAuthenticator::load(
            config
                .static_tokens
                .clone()
                .ok_or(ConfigError::Missing("--static-tokens (with --auth static)"))?,
        )?),
        AuthMode::Jwt => Arc::new(jwt::JwtAuthenticator::from_config(config)?),
        AuthMode::Http => Arc::new(http::HttpAuthenticator::from_config(config)?),
    })
}
