//! One push fanned out to N in-process connection queues, through the two shard designs the
//! architecture weighed: a shard task fed by tokio mpsc (what pushgate runs) and a shard OS
//! thread fed by crossbeam-channel. Both run the same `ShardState`; the pusher is a tokio task
//! awaiting the reply, as the HTTP handler is. N = 1 isolates the hand-over cost, N = 10,000
//! the fan-out itself. Run: `cargo bench --bench fanout`. Results: docs/ARCHITECTURE.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pushgate::conn::outbox::{Outbox, QueueLimits};
use pushgate::metrics::Metrics;
use pushgate::shard::{Command, ConnHandle, ShardState};
use pushgate::ws::frame;
use tokio::sync::oneshot;

fn connections(n: usize) -> Vec<ConnHandle> {
    (0..n as u64)
        .map(|id| ConnHandle {
            id,
            outbox: Arc::new(Outbox::new(QueueLimits {
                max_frames: 1 << 20,
                max_bytes: 1 << 30,
            })),
        })
        .collect()
}

fn registered_state(conns: &[ConnHandle]) -> ShardState {
    let mut state = ShardState::new(Arc::new(Metrics::new(1)));
    let user: Arc<str> = "fan".into();
    for conn in conns {
        state.register(user.clone(), "alarm".into(), conn.clone());
    }
    state
}

fn drain(conns: &[ConnHandle]) {
    for conn in conns {
        conn.outbox.discard_queued();
    }
}

fn push_command(frame: &Bytes) -> (Command, oneshot::Receiver<usize>) {
    let (reply, answer) = oneshot::channel();
    (
        Command::Push {
            user: "fan".into(),
            event: "alarm".into(),
            frame: frame.clone(),
            accepted_at: Instant::now(),
            reply,
        },
        answer,
    )
}

/// Times one push per iteration, from handing the command to the shard (`send`) to the
/// pusher holding the reply, as the HTTP handler waits for it; the queues are emptied
/// outside the timed part.
fn time_pushes(
    b: &mut criterion::Bencher<'_>,
    runtime: &tokio::runtime::Runtime,
    frame: &Bytes,
    conns: &[ConnHandle],
    n: usize,
    send: impl Fn(Command),
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let (command, answer) = push_command(frame);
            let start = Instant::now();
            let sent = runtime.block_on(async {
                send(command);
                answer.await.unwrap()
            });
            total += start.elapsed();
            assert_eq!(sent, n);
            drain(conns);
        }
        total
    })
}

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frame = frame::text(&"m".repeat(64));
    let mut group = c.benchmark_group("fanout");
    group.sample_size(30);
    for n in [1usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        let conns = connections(n);

        // Shard task + tokio mpsc.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Command>(1024);
        let mut state = registered_state(&conns);
        runtime.spawn(async move {
            while let Some(command) = rx.recv().await {
                state.apply(command);
                // The frames go nowhere (no sockets), but the shard's flush list is emptied.
                state.flush(usize::MAX);
            }
        });
        group.bench_with_input(BenchmarkId::new("task_mpsc", n), &n, |b, &n| {
            time_pushes(b, &runtime, &frame, &conns, n, |command| {
                tx.try_send(command).unwrap()
            })
        });
        drop(tx);

        // Shard thread + crossbeam-channel.
        let (tx, rx) = crossbeam_channel::bounded::<Command>(1024);
        let mut state = registered_state(&conns);
        let thread = std::thread::spawn(move || {
            while let Ok(command) = rx.recv() {
                state.apply(command);
                // The frames go nowhere (no sockets), but the shard's flush list is emptied.
                state.flush(usize::MAX);
            }
        });
        group.bench_with_input(BenchmarkId::new("thread_crossbeam", n), &n, |b, &n| {
            time_pushes(b, &runtime, &frame, &conns, n, |command| {
                tx.try_send(command).unwrap()
            })
        });
        drop(tx);
        thread.join().unwrap();
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
