//! Criterion benches for the per-push hot path: frame encoding, push-body parsing (serde_json
//! vs simd-json), userID → shard hashing, the shard map with 100k users, and one user with
//! many connections.
//! Run: `cargo bench --bench hot_path`. Results: docs/PERFORMANCE.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pushgate::conn::outbox::{Outbox, QueueLimits};
use pushgate::metrics::Metrics;
use pushgate::protocol::push::PushRequest;
use pushgate::shard::{ConnHandle, Router, ShardState};
use pushgate::ws::frame;

const BODY: &[u8] =
    br#"{"userId":"03A3408D-7C1B-4E2A-9F00-5D2B","event":"alarm","message":"CPU > 95% on db-3 for 5m"}"#;

/// A message that is itself JSON, as many pipelines send (and the load generator does):
/// every quote is escaped, so the parser must copy and unescape the string.
const ESCAPED_BODY: &[u8] = br#"{"userId":"03A3408D-7C1B-4E2A-9F00-5D2B","event":"alarm","message":"{\"alertname\":\"HighCPU\",\"instance\":\"db-3\",\"value\":\"97%\"}"}"#;

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_encode");
    for size in [64usize, 1024, 65_536] {
        let message = "m".repeat(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &message, |b, m| {
            b.iter(|| frame::text(black_box(m)))
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_parse");
    group.throughput(Throughput::Bytes(BODY.len() as u64));
    // simd-json needs a mutable copy of the body (hyper's buffer is shared): include it.
    let mut buffers = simd_json::Buffers::new(ESCAPED_BODY.len());
    let mut scratch = Vec::with_capacity(ESCAPED_BODY.len());
    for (suffix, body) in [("", BODY), ("_escaped_message", ESCAPED_BODY)] {
        group.bench_function(format!("serde_json{suffix}"), |b| {
            b.iter(|| PushRequest::parse(black_box(body)).unwrap().message.len())
        });
        group.bench_function(format!("simd_json_reused_buffers{suffix}"), |b| {
            b.iter(|| {
                scratch.clear();
                scratch.extend_from_slice(black_box(body));
                let push: PushRequest =
                    simd_json::serde::from_slice_with_buffers(&mut scratch, &mut buffers).unwrap();
                black_box(push.message.len())
            })
        });
    }
    group.bench_function("simd_json_from_slice", |b| {
        b.iter(|| {
            let mut copy = black_box(BODY).to_vec();
            let push: PushRequest = simd_json::serde::from_slice(&mut copy).unwrap();
            black_box(push.message.len())
        })
    });
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let (senders, _receivers): (Vec<_>, Vec<_>) =
        (0..8).map(|_| tokio::sync::mpsc::channel(1)).unzip();
    let router = Router::new(senders);
    c.bench_function("shard_of", |b| {
        b.iter(|| router.shard_of(black_box("03A3408D-7C1B-4E2A-9F00-5D2B")))
    });
}

fn conn(id: u64) -> ConnHandle {
    ConnHandle {
        id,
        outbox: Arc::new(Outbox::new(QueueLimits {
            max_frames: 1 << 20,
            max_bytes: 1 << 30,
        })),
    }
}

fn binder(c: &mut Criterion) {
    let mut state = ShardState::new(Arc::new(Metrics::new(1)));
    let users: Vec<Arc<str>> = (0..100_000).map(|i| format!("user-{i}").into()).collect();
    let conns: Vec<ConnHandle> = (0..users.len() as u64).map(conn).collect();
    for (user, conn) in users.iter().zip(&conns) {
        state.register(user.clone(), "alarm".into(), conn.clone());
    }
    let mut group = c.benchmark_group("binder_100k");
    let extra = conn(1_000_000);
    let mut i = 0usize;
    group.bench_function("register_unregister", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            state.register(users[i].clone(), "news".into(), extra.clone());
            state.unregister(&users[i], extra.id);
        })
    });
    let frame = frame::text("CPU > 95% on db-3 for 5m");
    group.bench_function("push_lookup_one_conn", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for n in 0..iters {
                let index = (n as usize * 7919) % users.len();
                let start = Instant::now();
                black_box(state.push(&users[index], "alarm", &frame, start));
                total += start.elapsed();
                // Drain outside the timed region so the queue does not grow.
                conns[index].outbox.discard_queued();
                state.flush(usize::MAX);
            }
            total
        })
    });
    group.bench_function("push_lookup_miss", |b| {
        b.iter(|| state.push(black_box("nobody"), "alarm", &frame, Instant::now()))
    });
    group.finish();
}

/// One user holding many connections (a wall of screens, or a shared page token): every
/// connection of that user registers and then leaves, as in a reconnect storm. The cost per
/// connection must not grow with how many the user holds.
fn one_user(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_user_register_unregister");
    group.sample_size(10);
    for n in [1_000usize, 10_000, 50_000] {
        let conns: Vec<ConnHandle> = (0..n as u64).map(conn).collect();
        let user: Arc<str> = "wallboard".into();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut state = ShardState::new(Arc::new(Metrics::new(1)));
                for conn in &conns {
                    state.register(user.clone(), "alarm".into(), conn.clone());
                }
                for conn in &conns {
                    state.unregister(&user, conn.id);
                }
                black_box(state.connections())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, parse, hashing, binder, one_user);
criterion_main!(benches);
