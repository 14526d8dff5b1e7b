//! Routes each HTTP request by listener: the public one serves the WebSocket upgrade and
//! health; the internal one serves pushes, metrics and health. Pushing on the public
//! listener is opt-in (`--public-push`, which requires push keys).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, ORIGIN, RETRY_AFTER, SEC_WEBSOCKET_VERSION};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::response::{
    add_required_headers, is_read, method_not_allowed, not_found, text, Body, ALLOW_GET,
};
use crate::conn::session;
use crate::gateway::{Shared, SlotCell};
use crate::metrics::RefusalReason;
use crate::ws::handshake;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerRole {
    Public,
    Internal,
}

/// What every request handler of one HTTP connection needs.
#[derive(Clone)]
pub struct RequestContext {
    pub shared: Arc<Shared>,
    /// Turns true when shutdown starts.
    pub draining: watch::Receiver<bool>,
    pub role: ListenerRole,
    /// The connection's slot under `--max-connections` (public listener), which a
    /// successful upgrade takes for its WebSocket session.
    pub slot: Option<Arc<SlotCell>>,
}

impl RequestContext {
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }
}

/// Counts a refused WebSocket upgrade, with a debug line.
fn refused(shared: &Shared, reason: RefusalReason) {
    shared.metrics.refused(reason);
    tracing::debug!(reason = reason.label(), "websocket upgrade refused");
}

/// Answers one request.
pub async fn handle(request: Request<Incoming>, ctx: RequestContext) -> Response<Body> {
    let shared = &ctx.shared;
    let config = &shared.config;
    let path = request.uri().path();
    let public = ctx.role == ListenerRole::Public;
    let read_only = path == "/healthz"
        || path == "/readyz"
        || (public && config.demo && path.starts_with("/demo"))
        || (!public && path == config.metrics_path);
    if read_only && !is_read(request.method()) {
        method_not_allowed(ALLOW_GET)
    } else if path == "/healthz" {
        text(StatusCode::OK, "ok\n")
    } else if path == "/readyz" {
        if ctx.is_draining() {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        } else if shared.recently_out_of_fds() {
            text(StatusCode::SERVICE_UNAVAILABLE, "out of file descriptors\n")
        } else if let Some(cluster) = &shared.cluster {
            // Local serving works whatever NATS does: still ready, with the cluster's state.
            text(
                StatusCode::OK,
                format!("ready\ncluster: {}\n", cluster.status()),
            )
        } else {
            text(StatusCode::OK, "ready\n")
        }
    } else if public && path == config.ws_path {
        upgrade(request, ctx)
    } else if public && config.demo && path.starts_with("/demo") {
        demo(path)
    } else if path == config.push_path && (!public || config.public_push) {
        super::push::handle(request, &ctx).await
    } else if path.starts_with(super::v2::PREFIX) && (!public || config.public_push) {
        super::v2::handle(request, &ctx).await
    } else if !public && path == config.metrics_path {
        metrics(shared).await
    } else {
        not_found()
    }
}

/// The demo alert page and the browser client it loads, compiled in (`--demo`).
fn demo(path: &str) -> Response<Body> {
    const PAGE: &str = include_str!("../../clients/demo/index.html");
    const CLIENT: &str = include_str!("../../clients/js/pushgate.js");
    let (body, content_type) = match path {
        "/demo" | "/demo/" => (PAGE, "text/html; charset=utf-8"),
        "/demo/pushgate.js" => (CLIENT, "text/javascript; charset=utf-8"),
        _ => return not_found(),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Renders on the blocking pool: counting the open descriptors lists `/proc/self/fd`, which
/// takes milliseconds with 100,000 connections, and a runtime thread (the only one, with
/// `--worker-threads 1`) would deliver nothing meanwhile.
async fn metrics(shared: &Shared) -> Response<Body> {
    let metrics = shared.metrics.clone();
    let Ok(exposition) = tokio::task::spawn_blocking(move || metrics.render()).await else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n");
    };
    let mut response = Response::new(Full::new(Bytes::from(exposition)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// 503 with `Retry-After`, for refusals a client should retry later (or elsewhere).
pub fn unavailable(reason: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, reason);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Whether the handshake's Origin may open a WebSocket, or the refusal's text. A request with
/// two Origin headers is refused when an allowlist is in force: a browser sends one (RFC 6454
/// section 7.3), and a proxy in front that checked the other would disagree with this check.
fn origin_check(request: &Request<Incoming>, allowed: &[String]) -> Result<(), &'static str> {
    if allowed.is_empty() {
        return Ok(());
    }
    let mut origins = request.headers().get_all(ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err("more than one Origin header\n"),
        (Some(origin), None) => allowed
            .iter()
            .any(|a| a.trim().as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
            .then_some(())
            .ok_or("origin not allowed\n"),
    }
}

/// Answers the handshake and hands the upgraded socket to a connection session.
fn upgrade(mut request: Request<Incoming>, ctx: RequestContext) -> Response<Body> {
    if let Err(refusal) = handshake::check(&request) {
        ctx.shared.metrics.refused(RefusalReason::BadHandshake);
        tracing::debug!(
            reason = RefusalReason::BadHandshake.label(),
            status = refusal.status().as_u16(),
            error = %refusal,
            "websocket upgrade refused"
        );
        let mut response = text(refusal.status(), format!("{refusal}\n"));
        response.headers_mut().insert(
            SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static(handshake::VERSION),
        );
        add_required_headers(&mut response, HeaderValue::from_static("GET"));
        return response;
    }
    let shared = &ctx.shared;
    if let Err(why) = origin_check(&request, &shared.config.allowed_origins) {
        refused(shared, RefusalReason::Origin);
        return text(StatusCode::FORBIDDEN, why);
    }
    if ctx.is_draining() {
        refused(shared, RefusalReason::Draining);
        return unavailable("shutting down\n");
    }
    // Every public connection took its slot when it was accepted (the only place slots are
    // taken); the upgrade hands it to the session.
    let Some(slot) = ctx.slot.as_ref().and_then(|cell| cell.take()) else {
        refused(shared, RefusalReason::GlobalCap);
        return unavailable("connection limit reached\n");
    };
    // The check accepted a version list holding 13; fastwebsockets wants exactly "13".
    request.headers_mut().insert(
        SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static(handshake::VERSION),
    );
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(parts) => parts,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    let session_shared = ctx.shared.clone();
    let slot = slot.into_websocket();
    shared.spawn_session(async move {
        let _slot = slot;
        let websocket = match upgrade.await {
            Ok(websocket) => websocket,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        // Take the raw TCP stream back: its halves need no lock, and the gateway writes
        // pre-encoded frames itself. Bytes hyper read past the handshake are replayed.
        let upgraded = websocket.into_inner().into_inner();
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let stream = parts.io.into_inner();
                // `read_buf` may be a slice of hyper's read buffer: copy what it holds and
                // let the buffer go now rather than keep it for the connection's lifetime.
                let initial = parts.read_buf.to_vec();
                drop(parts.read_buf);
                session::run(stream, initial, session_shared, ctx.draining).await;
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
        }
    });
    response.map(|_| Body::default())
}
