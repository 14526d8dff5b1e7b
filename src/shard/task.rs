//! Runs a [`ShardState`] on its own tokio task, fed by a bounded channel.
//!
//! The task applies commands and then writes the frames they queued itself, so a delivery
//! needs no wake-up of the connection's task. A fan-out to many connections is written in
//! slices of [`FLUSH_SLICE`] connections; between slices the task takes the commands that
//! arrived and yields to the runtime, so that pushes keep being accepted (and, since the
//! connections are written round-robin, reach every connection within one round) while a
//! long fan-out is still being written.
//!
//! Shard tasks were measured against shard threads fed by crossbeam-channel on the fan-out
//! bench (docs/ARCHITECTURE.md): the task wins here because the pushing HTTP task and the
//! shard live on the same runtime, so handing over a command is a wake-up inside tokio rather
//! than a futex wake of a parked OS thread, and on two cores extra threads only compete.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::command::Command;
use super::state::{ShardState, UserHook};
use crate::config::Config;
use crate::metrics::{Metrics, ShardGauges};

/// Commands taken from the channel per wake-up.
const BATCH: usize = 64;

/// Connections written between two looks at the channel (~5 µs each on loopback).
const FLUSH_SLICE: usize = 64;

/// Spawns shard `index`; it runs until every sender is dropped. `hook` hears users' first
/// and last bindings (cluster mode).
pub fn spawn(
    index: usize,
    config: &Config,
    metrics: Arc<Metrics>,
    hook: Option<Arc<dyn UserHook>>,
) -> (mpsc::Sender<Command>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.shard_queue);
    let gauges = metrics.shard(index);
    let state = ShardState::new(metrics)
        .with_user_cap(config.max_connections_per_user)
        .with_hook(hook);
    let task = tokio::spawn(run(state, rx, gauges));
    (tx, task)
}

async fn run(mut state: ShardState, mut rx: mpsc::Receiver<Command>, gauges: ShardGauges) {
    let mut commands = Vec::with_capacity(BATCH);
    loop {
        if state.unflushed() > 0 {
            // Writes are pending: take what has arrived, without waiting.
            while commands.len() < BATCH {
                match rx.try_recv() {
                    Ok(command) => commands.push(command),
                    Err(_) => break,
                }
            }
        } else if rx.recv_many(&mut commands, BATCH).await == 0 {
            return;
        }
        gauges.queue_depth.set(rx.len() as f64);
        for command in commands.drain(..) {
            state.apply(command);
        }
        state.flush(FLUSH_SLICE);
        gauges.users.set(state.users() as f64);
        gauges.connections.set(state.connections() as f64);
        if state.unflushed() > 0 {
            tokio::task::yield_now().await;
        }
    }
}
