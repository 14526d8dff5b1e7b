//! A connection's bounded outbound queue, and the one place its socket is written.
//!
//! The shard that owns the connection's user queues frames and then writes them itself, with
//! a non-blocking vectored write, right after the push (see `shard::task`): in the common case
//! a delivery costs one `writev` and no task wake-up at all. Only when the socket is full does
//! the shard hand the connection over to its session task, which waits for the socket to
//! drain and writes the rest; frames the session queues itself (pong, ping, ack, close) are
//! written by the session too. Whoever writes holds the queue's lock for the non-blocking
//! write, so frames never interleave and leave in the order they were queued.
//!
//! tokio's mpsc is not used because the queue needs what it lacks: a limit in bytes as well
//! as frames, a close request that can discard what is queued, partial writes kept at the
//! front of the queue, and no allocation at all while the connection is idle.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::metrics::{DropReason, Metrics};

/// Frames per `writev` call (Linux accepts 1024; 64 keeps the slice array small).
const MAX_SLICES: usize = 64;

/// Frames a queue has room for when its first frame arrives (48 bytes each).
const QUEUE_START_FRAMES: usize = 16;

/// Limits of one connection's queue; exceeding either marks a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

/// A frame waiting to be written. Data frames carry the instant their push was accepted,
/// so that fan-out latency can be recorded when the frame reaches the socket.
#[derive(Debug, Clone)]
struct Queued {
    frame: Bytes,
    accepted_at: Option<Instant>,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue is at its limit: the connection is a slow consumer.
    #[error("outbound queue full")]
    Full,
    /// The connection is closing or closed; the frame would never be written.
    #[error("connection closed")]
    Closed,
}

/// What the shard must do after queueing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// The queue was empty and the shard writes: flush it (once) after this batch of pushes.
    Flush,
    /// Someone will write it already: a flush the shard has pending, or the session.
    Pending,
}

/// What a flush by the shard achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// The queue is empty.
    Done,
    /// The socket was full: the session took over.
    HandedOver,
    /// The session writes this connection already (its own frames, or an earlier full
    /// socket); nothing was written.
    SessionWrites,
    /// The connection is closed; nothing was written.
    Closed,
}

/// What the session's writer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStep {
    /// Write what is queued, waiting for the socket as needed.
    Write,
    /// Stop: the connection is closed (close frame written, write failed, or aborted).
    Stop,
}

/// Who writes the queue's frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum WrittenBy {
    /// The shard, right after it queues (the queue is in its flush list while not empty).
    #[default]
    Shard,
    /// The session task: the socket was full, or the session queued a frame of its own.
    Session,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Queued>,
    /// Bytes queued (counted against the limit), including a close frame.
    bytes: usize,
    /// Bytes of the front frame already on the wire.
    front_written: usize,
    writer: WrittenBy,
    /// A close frame is the last frame queued: nothing more is accepted.
    closing: bool,
    /// Nothing will be accepted or written any more; the socket is to be shut down.
    closed: bool,
    /// Status code of the close frame requested, once one was.
    close_code: Option<u16>,
}

/// One connection's outbound queue, shared by its shard (data frames, written by the shard
/// when the socket accepts them) and its session task (its own frames, and whatever the
/// socket could not take at once).
#[derive(Debug)]
pub struct Outbox {
    limits: QueueLimits,
    /// `None` only for queues of benches and unit tests, whose writes go nowhere.
    socket: Option<Arc<TcpStream>>,
    state: Mutex<State>,
    /// Tells the session that it has something to write, or that the queue closed.
    work: Notify,
    /// Wakes a session waiting for room on a full socket when the connection is closed or
    /// starts closing (slow consumer, disconnect, a reset), so that it stops waiting.
    abort: Notify,
}

/// Frames in `frames` that a push queued (counted in its reply), as opposed to the
/// session's own control frames.
fn pushed_frames(frames: &VecDeque<Queued>) -> u64 {
    frames.iter().filter(|q| q.accepted_at.is_some()).count() as u64
}

/// The status code of an encoded close frame (pushgate's close frames have a 2-byte header).
fn code_of(close_frame: &Bytes) -> Option<u16> {
    close_frame
        .get(2..4)
        .map(|code| u16::from_be_bytes([code[0], code[1]]))
}

/// What one non-blocking write achieved.
enum Wrote {
    /// Everything queued is on the wire.
    All,
    /// The socket took less than everything: wait until it is writable again.
    Blocked,
    /// The write failed: the connection is dead.
    Failed,
}

/// What the session's write achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The queue is empty; the shard writes the next frames again.
    Idle,
    /// The socket is full: wait until it is writable.
    Blocked,
    /// The connection is finished (close frame written, write failed, or closed): shut the
    /// socket down.
    Finished,
}

impl Outbox {
    /// A queue without a socket, whose frames are dropped when written: for unit tests and
    /// benches of the shard.
    pub fn new(limits: QueueLimits) -> Self {
        Self::build(limits, None)
    }

    /// The queue of a live connection, written to `socket`.
    pub fn with_socket(limits: QueueLimits, socket: Arc<TcpStream>) -> Self {
        Self::build(limits, Some(socket))
    }

    fn build(limits: QueueLimits, socket: Option<Arc<TcpStream>>) -> Self {
        Self {
            limits,
            socket,
            state: Mutex::new(State::default()),
            work: Notify::new(),
            abort: Notify::new(),
        }
    }

    /// The connection's socket (`None` for a queue made by [`Outbox::new`]).
    pub fn socket(&self) -> Option<&TcpStream> {
        self.socket.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update
        // is a single push or swap), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A frame is refused when the queue holds its limit of frames or bytes; one frame larger
    /// than the byte limit is still admitted into an empty queue (a client with nothing
    /// pending is not slow, however large the message: `--max-push-body` may exceed
    /// `--conn-queue-bytes`), and anything queued behind it counts against the limit.
    fn admit(&self, state: &State, frame: &Bytes) -> Result<(), QueueError> {
        if state.closed || state.closing {
            Err(QueueError::Closed)
        } else if state.frames.len() >= self.limits.max_frames
            || (state.bytes + frame.len() > self.limits.max_bytes && !state.frames.is_empty())
        {
            Err(QueueError::Full)
        } else {
            Ok(())
        }
    }

    /// Queues a pushed frame (the shard's path), refusing it when the queue is full or the
    /// connection is closing. [`Queue::Flush`] asks the shard to call [`Outbox::flush`] once
    /// it has queued its current batch of pushes.
    pub fn push(&self, frame: Bytes, accepted_at: Option<Instant>) -> Result<Queue, QueueError> {
        let mut state = self.lock();
        self.admit(&state, &frame)?;
        let was_empty = state.frames.is_empty();
        if state.frames.capacity() == 0 {
            // The buffer was released when the queue was last written out. Frames pile up
            // while a fan-out round is written (~9 per write in `fanout`): start with room
            // for them rather than growing 4 → 8 → 16 on every round.
            state.frames.reserve(QUEUE_START_FRAMES);
        }
        state.bytes += frame.len();
        state.frames.push_back(Queued { frame, accepted_at });
        Ok(if was_empty && state.writer == WrittenBy::Shard {
            Queue::Flush
        } else {
            Queue::Pending
        })
    }

    /// Queues a frame of the session's own (ping, pong, ack); the session writes it.
    pub fn push_own(&self, frame: Bytes) -> Result<(), QueueError> {
        {
            let mut state = self.lock();
            self.admit(&state, &frame)?;
            state.bytes += frame.len();
            state.frames.push_back(Queued {
                frame,
                accepted_at: None,
            });
            state.writer = WrittenBy::Session;
        }
        self.work.notify_one();
        Ok(())
    }

    /// Queues `close_frame` behind what is already queued; the session writes them and then
    /// shuts the socket down. Returns false when a close was already requested (the first one
    /// wins) or the connection is closed.
    pub fn close(&self, close_frame: Bytes) -> bool {
        {
            let mut state = self.lock();
            if state.closed || state.closing {
                return false;
            }
            state.closing = true;
            state.close_code = code_of(&close_frame);
            state.bytes += close_frame.len();
            state.frames.push_back(Queued {
                frame: close_frame,
                accepted_at: None,
            });
            state.writer = WrittenBy::Session;
        }
        self.work.notify_one();
        // A session waiting for room on a full socket must start its bounded close now.
        self.abort.notify_one();
        true
    }

    /// Closes a slow consumer: drops the frames not yet started (releasing their memory
    /// now) and queues `close_frame` behind the one partly on the wire, if any, which must be
    /// finished before a close frame can follow it. The session gives them
    /// `CLOSE_WRITE_TIMEOUT` (conn::writer) and then abandons the socket; a session waiting
    /// for room on a full socket is woken so that the countdown starts now. Returns false
    /// if the connection was already closing. The pushed frames dropped are counted as
    /// discarded.
    pub fn close_slow(&self, close_frame: Bytes, metrics: &Metrics) -> bool {
        let dropped;
        {
            let mut state = self.lock();
            if state.closed || state.closing {
                return false;
            }
            let mut frames = std::mem::take(&mut state.frames);
            let started = if state.front_written > 0 {
                frames.pop_front()
            } else {
                None
            };
            dropped = frames;
            state.close_code = code_of(&close_frame);
            state.writer = WrittenBy::Session;
            state.closing = true;
            state.bytes = close_frame.len() + started.as_ref().map_or(0, |q| q.frame.len());
            state.frames.extend(started);
            state.frames.push_back(Queued {
                frame: close_frame,
                accepted_at: None,
            });
        }
        metrics.discarded(DropReason::SlowConsumer, pushed_frames(&dropped));
        drop(dropped);
        self.abort.notify_one();
        self.work.notify_one();
        true
    }

    /// Marks the connection dead (write failed, reader gone, close not taken in time):
    /// nothing more is accepted, and the pushed frames still queued are counted as discarded.
    pub fn mark_closed(&self, metrics: &Metrics) {
        let dropped;
        {
            let mut state = self.lock();
            state.closed = true;
            dropped = std::mem::take(&mut state.frames);
            state.bytes = 0;
        }
        metrics.discarded(DropReason::Closed, pushed_frames(&dropped));
        drop(dropped);
        self.work.notify_one();
        self.abort.notify_one();
    }

    /// True once a close was requested or the connection died.
    pub fn is_closing(&self) -> bool {
        let state = self.lock();
        state.closed || state.closing
    }

    /// The shard's write: writes what is queued with non-blocking vectored writes. When the
    /// socket cannot take it all, the session is told to take over.
    pub fn flush(&self, metrics: &Metrics) -> Flushed {
        let mut state = self.lock();
        if state.closed {
            return Flushed::Closed;
        }
        if state.writer == WrittenBy::Session {
            return Flushed::SessionWrites;
        }
        match self.write_locked(&mut state, WrittenBy::Shard, metrics) {
            Wrote::All => Flushed::Done,
            Wrote::Blocked => {
                state.writer = WrittenBy::Session;
                drop(state);
                self.work.notify_one();
                Flushed::HandedOver
            }
            Wrote::Failed => {
                Self::fail(state, metrics);
                self.work.notify_one();
                Flushed::Closed
            }
        }
    }

    /// Waits until the session has something to do: frames to write, or a closed queue.
    /// Cancel-safe: it only looks.
    pub async fn next_step(&self) -> WriterStep {
        loop {
            {
                let state = self.lock();
                if state.closed {
                    return WriterStep::Stop;
                }
                if state.writer == WrittenBy::Session {
                    return WriterStep::Write;
                }
            }
            self.work.notified().await;
        }
    }

    /// The session's write: writes what the socket takes now. Once the queue is empty the
    /// shard writes the next frames again.
    pub fn write_now(&self, metrics: &Metrics) -> Progress {
        let mut state = self.lock();
        if state.closed {
            return Progress::Finished;
        }
        match self.write_locked(&mut state, WrittenBy::Session, metrics) {
            Wrote::All if state.closing => {
                state.closed = true;
                Progress::Finished
            }
            Wrote::All => {
                state.writer = WrittenBy::Shard;
                Progress::Idle
            }
            Wrote::Blocked => Progress::Blocked,
            Wrote::Failed => {
                Self::fail(state, metrics);
                Progress::Finished
            }
        }
    }

    fn fail(mut state: MutexGuard<'_, State>, metrics: &Metrics) {
        state.closed = true;
        let dropped = std::mem::take(&mut state.frames);
        state.bytes = 0;
        drop(state);
        metrics.discarded(DropReason::Closed, pushed_frames(&dropped));
        drop(dropped);
    }

    /// Resolves when a close wakes a session waiting for the socket.
    pub async fn aborted(&self) {
        self.abort.notified().await;
    }

    /// Writes queued frames, in order, until the queue is empty or the socket is full. The
    /// caller holds the lock, so nobody else writes in between.
    ///
    /// The shard writes straight to the socket, bypassing tokio's readiness flag: reading
    /// that flag is a cache miss per connection (2.6 % of the server's CPU in `load`), and
    /// only a writer that then waits for the socket needs it, which the shard never does.
    /// The session goes through tokio, whose flag a `WouldBlock` clears, so that its wait
    /// for the socket ends only when the socket has room (a full socket the shard saw
    /// leaves the flag stale: the session's first try then fails once and clears it).
    fn write_locked(&self, state: &mut State, by: WrittenBy, metrics: &Metrics) -> Wrote {
        let Some(socket) = &self.socket else {
            // No socket: the frames go nowhere, as if written at once.
            let queued = state.frames.iter().map(|q| q.frame.len()).sum::<usize>();
            Self::advance(state, queued - state.front_written, metrics);
            return Wrote::All;
        };
        while !state.frames.is_empty() {
            let attempt = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, queued) in slices.iter_mut().zip(state.frames.iter()) {
                    let bytes: &[u8] = &queued.frame;
                    *slot = IoSlice::new(if count == 0 {
                        &bytes[state.front_written..]
                    } else {
                        bytes
                    });
                    count += 1;
                }
                match by {
                    WrittenBy::Shard => SockRef::from(&**socket).send_vectored(&slices[..count]),
                    WrittenBy::Session => socket.try_write_vectored(&slices[..count]),
                }
            };
            match attempt {
                Ok(0) => return Wrote::Failed,
                Ok(written) => Self::advance(state, written, metrics),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Wrote::Failed,
            }
        }
        // An idle connection keeps no queue buffer (~200 bytes each); the next push
        // allocates one again, which costs far less than the write it precedes.
        state.frames = VecDeque::new();
        Wrote::All
    }

    /// Removes what `written` bytes completed from the front of the queue and records their
    /// fan-out latency: a frame counts as delivered once the kernel has it.
    fn advance(state: &mut State, mut written: usize, metrics: &Metrics) {
        metrics.outbound_bytes.increment(written as u64);
        let mut now = None;
        let mut delivered = 0u64;
        while written > 0 {
            let Some(front) = state.frames.front() else {
                break;
            };
            let left = front.frame.len() - state.front_written;
            if written < left {
                state.front_written += written;
                break;
            }
            written -= left;
            state.front_written = 0;
            if let Some(done) = state.frames.pop_front() {
                state.bytes -= done.frame.len();
                if let Some(accepted_at) = done.accepted_at {
                    let now = *now.get_or_insert_with(Instant::now);
                    metrics
                        .fanout_latency
                        .record(now.saturating_duration_since(accepted_at));
                    delivered += 1;
                }
            }
        }
        // Writes and frames count pushed frames only, so that their ratio is the coalescing
        // factor; pings and pongs show in the bytes.
        if delivered > 0 {
            metrics.frames_written.increment(delivered);
            metrics.writes.increment(1);
        }
    }

    /// Empties the queue without writing it, as if it had been written (benches).
    pub fn discard_queued(&self) -> usize {
        let mut state = self.lock();
        let count = state.frames.len();
        state.frames.clear();
        state.bytes = 0;
        state.front_written = 0;
        state.writer = WrittenBy::Shard;
        count
    }

    /// The status code of the close frame requested, if any: how the session learns why the
    /// push side closed its connection.
    pub fn close_code(&self) -> Option<u16> {
        self.lock().close_code
    }

    /// Frames currently queued (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn limits(max_frames: usize, max_bytes: usize) -> QueueLimits {
        QueueLimits {
            max_frames,
            max_bytes,
        }
    }

    fn metrics() -> Metrics {
        Metrics::new(1)
    }

    /// An outbox on one end of a loopback connection, and the other end.
    async fn connected(limits: QueueLimits) -> (Outbox, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Outbox::with_socket(limits, Arc::new(server)), client)
    }

    async fn read_exactly(peer: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        peer.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn the_shard_writes_what_it_queued_without_waking_the_session() {
        let (outbox, mut peer) = connected(limits(8, 1024)).await;
        let metrics = metrics();
        assert_eq!(
            outbox.push(Bytes::from_static(b"a"), Some(Instant::now())),
            Ok(Queue::Flush)
        );
        // A second frame before the flush rides on the same write.
        assert_eq!(
            outbox.push(Bytes::from_static(b"b"), Some(Instant::now())),
            Ok(Queue::Pending)
        );
        assert_eq!(outbox.flush(&metrics), Flushed::Done);
        assert_eq!(read_exactly(&mut peer, 2).await, b"ab");
        assert!(outbox.is_empty());
        // The session was never asked to write.
        let step = tokio::time::timeout(std::time::Duration::from_millis(20), outbox.next_step());
        assert!(step.await.is_err());
    }

    #[tokio::test]
    async fn own_frames_and_the_close_frame_are_written_by_the_session_in_order() {
        let (outbox, mut peer) = connected(limits(8, 1024)).await;
        let metrics = metrics();
        outbox.push(Bytes::from_static(b"a"), None).unwrap();
        outbox.push_own(Bytes::from_static(b"p")).unwrap();
        // The session writes now: the shard's flush defers to it.
        assert_eq!(outbox.flush(&metrics), Flushed::SessionWrites);
        assert!(outbox.close(Bytes::from_static(b"close")));
        assert!(!outbox.close(Bytes::from_static(b"other")));
        assert_eq!(
            outbox.push(Bytes::from_static(b"c"), None),
            Err(QueueError::Closed)
        );
        assert_eq!(outbox.next_step().await, WriterStep::Write);
        assert_eq!(outbox.write_now(&metrics), Progress::Finished);
        assert_eq!(read_exactly(&mut peer, 7).await, b"apclose");
        assert_eq!(outbox.next_step().await, WriterStep::Stop);
    }

    #[tokio::test]
    async fn a_full_socket_hands_the_queue_to_the_session_and_keeps_the_order() {
        let (outbox, mut peer) = connected(limits(100_000, 1 << 30)).await;
        let metrics = metrics();
        let frame = Bytes::from(vec![7u8; 64 * 1024]);
        let mut queued = 0;
        loop {
            outbox.push(frame.clone(), None).unwrap();
            queued += 1;
            if outbox.flush(&metrics) == Flushed::HandedOver {
                break;
            }
            assert!(queued < 10_000, "loopback never filled up");
        }
        // Now the shard only queues; the session writes, in order, as the peer reads.
        assert_eq!(
            outbox.push(Bytes::from_static(b"end"), None),
            Ok(Queue::Pending)
        );
        assert_eq!(outbox.next_step().await, WriterStep::Write);
        let reader = tokio::spawn(async move {
            let body = read_exactly(&mut peer, queued * frame.len() + 3).await;
            assert!(body[..queued * frame.len()].iter().all(|&b| b == 7));
            body[queued * frame.len()..].to_vec()
        });
        loop {
            match outbox.write_now(&metrics) {
                Progress::Idle => break,
                Progress::Blocked => outbox.socket().unwrap().writable().await.unwrap(),
                Progress::Finished => panic!("connection ended"),
            }
        }
        assert_eq!(reader.await.unwrap(), b"end");
        // Idle again: the shard writes the next frame itself.
        assert_eq!(
            outbox.push(Bytes::from_static(b"x"), None),
            Ok(Queue::Flush)
        );
    }

    #[test]
    fn frame_and_byte_limits() {
        let outbox = Outbox::new(limits(2, 1024));
        outbox.push(Bytes::from_static(b"a"), None).unwrap();
        outbox.push(Bytes::from_static(b"b"), None).unwrap();
        assert_eq!(
            outbox.push(Bytes::from_static(b"c"), None),
            Err(QueueError::Full)
        );
        let outbox = Outbox::new(limits(100, 4));
        outbox.push(Bytes::from_static(b"abc"), None).unwrap();
        assert_eq!(
            outbox.push(Bytes::from_static(b"de"), None),
            Err(QueueError::Full)
        );
        outbox.push(Bytes::from_static(b"d"), None).unwrap();
        // One frame over the byte limit fits an empty queue, and nothing fits behind it.
        let outbox = Outbox::new(limits(100, 4));
        outbox.push(Bytes::from_static(b"abcdef"), None).unwrap();
        assert_eq!(
            outbox.push(Bytes::from_static(b"g"), None),
            Err(QueueError::Full)
        );
    }

    fn discarded(metrics: &Metrics, reason: &str) -> String {
        let series = format!("pushgate_frames_discarded_total{{reason=\"{reason}\"}} ");
        let exposition = metrics.render();
        let line = exposition.lines().find(|l| l.starts_with(&series));
        line.unwrap_or_default()[series.len()..].to_owned()
    }

    #[tokio::test]
    async fn slow_close_drops_the_queue_keeps_the_close_frame_and_aborts() {
        let metrics = metrics();
        let outbox = Outbox::new(limits(4, 1024));
        outbox
            .push(Bytes::from_static(b"a"), Some(Instant::now()))
            .unwrap();
        outbox.push_own(Bytes::from_static(b"pong")).unwrap();
        outbox
            .push(Bytes::from_static(b"b"), Some(Instant::now()))
            .unwrap();
        assert!(outbox.close_slow(Bytes::from_static(b"slow"), &metrics));
        assert!(!outbox.close(Bytes::from_static(b"other")));
        // The two pushed frames count as discarded; the session's own pong does not.
        assert_eq!(discarded(&metrics, "slow_consumer"), "2");
        assert_eq!(discarded(&metrics, "closed"), "0");
        assert_eq!(outbox.len(), 1);
        assert!(outbox.is_closing());
        outbox.aborted().await;
        assert_eq!(outbox.next_step().await, WriterStep::Write);
    }

    #[tokio::test]
    async fn the_session_is_woken_by_its_own_frame() {
        let outbox = Arc::new(Outbox::new(limits(8, 1024)));
        let session = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.next_step().await })
        };
        tokio::task::yield_now().await;
        outbox.push_own(Bytes::from_static(b"x")).unwrap();
        assert_eq!(session.await.unwrap(), WriterStep::Write);
    }
}
