//! Turning a register frame's token into a userID.
//!
//! The old server took a `func(token) (userID, ok)`; this trait is its async counterpart, so
//! that later authenticators (static file, JWT, HTTP backend) can plug in without touching
//! the connection code. The default is identity: the userID is the token.

use std::future::Future;
use std::pin::Pin;

/// Why a token was refused; the reason becomes a metric label, so the set is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token rejected")]
    Rejected,
    #[error("authenticator unavailable")]
    Unavailable,
}

impl AuthError {
    /// Bounded label value for metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Rejected => "token_rejected",
            Self::Unavailable => "auth_unavailable",
        }
    }
}

/// The future an authenticator returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<String, AuthError>> + Send + 'a>>;

/// Maps a token to the userID whose pushes the connection receives.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a>;
}

/// The old server's default: the token is the userID.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityAuthenticator;

impl Authenticator for IdentityAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(std::future::ready(Ok(token.to_owned())))
    }
}
