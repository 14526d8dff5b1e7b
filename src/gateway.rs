//! The gateway as a function of (listener, config, shutdown signal).
//!
//! `run` wires the shards, the metrics and the accept loop, and returns once shutdown is
//! complete: stop accepting → `/readyz` fails → WebSockets closed with 1001 after what was
//! already accepted is written → wait for connections with a deadline → stop the shards.
//! Tests call it on `127.0.0.1:0`; `main.rs` only parses the config and calls it.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::auth::{Authenticator, IdentityAuthenticator};
use crate::config::{Config, ConfigError};
use crate::http::service::{self, RequestContext};
use crate::metrics::{Metrics, UPKEEP_INTERVAL};
use crate::shard::{self, Router};

/// What every connection and request shares. Read-only after start-up, except the
/// connection-id counter.
pub struct Shared {
    pub config: Config,
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<dyn Authenticator>,
    pub push_keys: Vec<Vec<u8>>,
    conn_ids: AtomicU64,
}

impl Shared {
    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
}

/// Runs the gateway with the default (identity) authenticator until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    run_with_auth(listener, config, Arc::new(IdentityAuthenticator), shutdown).await
}

/// Runs the gateway with a given authenticator until `shutdown` resolves.
pub async fn run_with_auth(
    listener: TcpListener,
    config: Config,
    auth: Arc<dyn Authenticator>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    config.validate()?;
    let shard_count = config.shard_count();
    let metrics = Arc::new(Metrics::new(shard_count));
    let (senders, shard_tasks): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|index| shard::task::spawn(index, config.shard_queue, metrics.clone()))
        .unzip();
    let upkeep = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        }
    });
    let shared = Arc::new(Shared {
        push_keys: config
            .push_keys
            .iter()
            .map(|k| k.trim().as_bytes().to_vec())
            .collect(),
        router: Router::new(senders),
        metrics,
        auth,
        conn_ids: AtomicU64::new(1),
        config,
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let ctx = RequestContext {
        shared: shared.clone(),
        shutdown: shutdown_rx,
        alive: alive_tx,
    };

    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        shards = shard_count,
        "pushgate listening"
    );
    accept_loop(&listener, &ctx, shutdown).await;

    tracing::info!("shutting down: closing connections");
    drop(listener);
    let _ = shutdown_tx.send(true);
    drop(ctx);
    let deadline = shared.config.shutdown_timeout();
    if tokio::time::timeout(deadline, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(?deadline, "connections still open at the shutdown deadline");
    }
    upkeep.abort();
    drop(shared);
    for task in shard_tasks {
        task.abort();
    }
    Ok(())
}

async fn accept_loop(
    listener: &TcpListener,
    ctx: &RequestContext,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_http(TokioIo::new(stream), ctx.clone()));
            }
            Err(error) => accept_error(error).await,
        }
    }
}

/// Errors from `accept` are about one connection or about the process running out of file
/// descriptors; neither may stop the gateway or spin the loop.
async fn accept_error(error: io::Error) {
    let out_of_fds = matches!(error.raw_os_error(), Some(code) if code == 24 || code == 23);
    if out_of_fds {
        tracing::warn!(%error, "out of file descriptors; backing off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    } else {
        tracing::debug!(%error, "accept failed");
    }
}

async fn serve_http(io: TokioIo<tokio::net::TcpStream>, ctx: RequestContext) {
    let mut shutdown = ctx.shutdown.clone();
    let header_timeout = ctx.shared.config.header_timeout();
    let service = service_fn(move |request| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(service::handle(request, ctx).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = async { let _ = shutdown.wait_for(|draining| *draining).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
