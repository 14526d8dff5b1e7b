//! Routes each HTTP request: the WebSocket upgrade, the push endpoint, metrics and health.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::response::{empty, not_found, text, Body};
use crate::conn::session;
use crate::gateway::Shared;
use crate::ws::handshake;

/// What every request handler of one HTTP connection needs.
#[derive(Clone)]
pub struct RequestContext {
    pub shared: Arc<Shared>,
    pub shutdown: watch::Receiver<bool>,
    /// Held by every connection task; shutdown waits until all clones are dropped.
    pub alive: mpsc::Sender<()>,
}

/// Answers one request.
pub async fn handle(request: Request<Incoming>, ctx: RequestContext) -> Response<Body> {
    let shared = &ctx.shared;
    let path = request.uri().path();
    if path == shared.config.ws_path {
        upgrade(request, ctx)
    } else if path == shared.config.push_path {
        super::push::handle(request, shared).await
    } else if path == shared.config.metrics_path {
        metrics(&request, shared)
    } else if path == "/healthz" {
        text(StatusCode::OK, "ok\n")
    } else if path == "/readyz" {
        if *ctx.shutdown.borrow() {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        } else {
            text(StatusCode::OK, "ready\n")
        }
    } else {
        not_found()
    }
}

fn metrics(request: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let mut response = Response::new(Full::new(Bytes::from(shared.metrics.render())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Answers the handshake and hands the upgraded socket to a connection session.
fn upgrade(mut request: Request<Incoming>, ctx: RequestContext) -> Response<Body> {
    if let Err(refusal) = handshake::check(&request) {
        return text(refusal.status(), format!("{refusal}\n"));
    }
    if *ctx.shutdown.borrow() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(parts) => parts,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    tokio::spawn(async move {
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
                session::run(stream, initial, ctx.shared, ctx.shutdown, ctx.alive).await;
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
        }
    });
    response.map(|_| Body::default())
}
