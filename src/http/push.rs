//! `POST /push`: the v1 endpoint alerting pipelines already call, with the old server's
//! exact statuses and bodies.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{read_limited, BodyError};
use super::response::{closing, empty, method_not_allowed, text, unauthorized, Body, ALLOW_POST};
use super::service::{unavailable, RequestContext};
use crate::gateway::Shared;
use crate::metrics::PushResult;
use crate::protocol::push::PushRequest;
use crate::shard::PushRefused;
use crate::ws::frame;

/// The body of every 400, byte for byte.
pub const ILLEGAL: &str = "request data illegal";

/// Set on a 200 whose count misses nodes that did not answer in time (cluster mode).
pub const PARTIAL: HeaderName = HeaderName::from_static("x-pushgate-partial");

/// Handles one push request.
pub async fn handle(request: Request<Incoming>, ctx: &RequestContext) -> Response<Body> {
    let started = Instant::now();
    let shared = &ctx.shared;
    let (response, result) = if ctx.is_draining() && request.method() == Method::POST {
        (unavailable("shutting down"), PushResult::Draining)
    } else {
        respond(request, shared).await
    };
    shared.metrics.push(result);
    shared.metrics.push_duration.record(started.elapsed());
    if result != PushResult::Ok {
        tracing::debug!(result = result.label(), status = %response.status(), "push refused");
    }
    response
}

async fn respond(request: Request<Incoming>, shared: &Shared) -> (Response<Body>, PushResult) {
    if request.method() != Method::POST {
        return (method_not_allowed(ALLOW_POST), PushResult::MethodNotAllowed);
    }
    if !shared.push_keys.authorize(&request) {
        return (unauthorized(), PushResult::Unauthorized);
    }
    let config = &shared.config;
    let body = match read_limited(request, config.max_push_body, config.body_timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::TimedOut) => {
            return (
                closing(empty(StatusCode::REQUEST_TIMEOUT)),
                PushResult::BodyTimeout,
            );
        }
        Err(BodyError::Unreadable) => {
            return (
                text(StatusCode::BAD_REQUEST, ILLEGAL),
                PushResult::BadRequest,
            )
        }
    };
    let Ok(push) = PushRequest::parse(&body) else {
        return (
            text(StatusCode::BAD_REQUEST, ILLEGAL),
            PushResult::BadRequest,
        );
    };
    if push.replaced_invalid_text {
        shared.metrics.invalid_text_push.increment(1);
        tracing::debug!(
            "push body held text that is not UTF-8; delivered with U+FFFD in its place"
        );
    }
    let frame = frame::text(&push.message);
    let accepted_at = Instant::now();
    match shared
        .deliver(
            push.user_id.into_owned(),
            push.event.into_owned(),
            frame,
            accepted_at,
        )
        .await
    {
        Ok(delivery) => {
            let mut response = text(
                StatusCode::OK,
                format!("message sent to {} clients", delivery.sent),
            );
            if delivery.partial {
                response
                    .headers_mut()
                    .insert(PARTIAL, HeaderValue::from_static("true"));
            }
            (response, PushResult::Ok)
        }
        Err(refused) => {
            let (reason, result) = match refused {
                PushRefused::Overloaded => ("shard overloaded", PushResult::Overloaded),
                PushRefused::ShuttingDown => ("shutting down", PushResult::Draining),
                PushRefused::TooLargeForCluster { .. } => return too_large(),
            };
            (unavailable(reason), result)
        }
    }
}

fn too_large() -> (Response<Body>, PushResult) {
    (
        text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        PushResult::TooLarge,
    )
}
