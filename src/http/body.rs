//! Reading a request body under a size limit, shared by every endpoint that takes one.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::Request;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Declared or actual length over the limit (413).
    #[error("request body too large")]
    TooLarge,
    /// The connection failed while the body was read.
    #[error("could not read the request body")]
    Unreadable,
    /// The body did not arrive within `--body-timeout` (408).
    #[error("request body not received in time")]
    TimedOut,
}

/// Reads the whole body, refusing at once a declared length over `limit`, stopping as soon
/// as more than `limit` bytes arrive, and giving up after `timeout`.
pub async fn read_limited(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut collect = pin!(Limited::new(request.into_body(), limit).collect());
    // A push body usually arrives with its headers: try once before arming a timer, whose
    // registration and removal cost ~0.5 µs of a push in `load` (docs/PERFORMANCE.md).
    let collected = match poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await {
        Poll::Ready(collected) => collected,
        Poll::Pending => tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| BodyError::TimedOut)?,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}
