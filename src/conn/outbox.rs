//! A connection's bounded outbound queue.
//!
//! Shards put frames in, the connection's one writer takes them all out at once and writes
//! them with a single vectored write. tokio's mpsc is not used because the queue needs what it
//! lacks: a limit in bytes as well as frames, a close request that can discard what is queued
//! and abort a write stuck on a client that stopped reading, and no allocation at all while
//! the connection is idle (an mpsc channel allocates a 32-slot block up front).
//!
//! The lock is per connection and held for a few instructions; no lock is ever held across
//! an await, and the writer is woken only when the queue goes from empty to non-empty.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

/// Limits of one connection's queue; exceeding either marks a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

/// A frame waiting for the writer. Data frames carry the instant their push was accepted,
/// so that the writer can record fan-out latency when the frame reaches the socket.
#[derive(Debug, Clone)]
pub struct Queued {
    pub frame: Bytes,
    pub accepted_at: Option<Instant>,
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

/// What the writer should do next.
#[derive(Debug)]
pub enum WriterStep {
    /// Write these frames (moved into the caller's vector), in order.
    Frames,
    /// Write this close frame, then shut the socket down.
    Close(Bytes),
    /// Stop without writing anything more.
    Stop,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Queued>,
    bytes: usize,
    /// The close frame to write once the queue is drained.
    close: Option<Bytes>,
    /// No frame will be accepted or written any more.
    closed: bool,
    /// The writer must drop whatever it is writing (slow consumer).
    abort: bool,
    /// Status code of the close frame requested, once one was.
    close_code: Option<u16>,
}

/// One connection's outbound queue, shared by the shards (producers), the connection's reader
/// (pong and close replies) and its writer (the only consumer).
#[derive(Debug)]
pub struct Outbox {
    limits: QueueLimits,
    state: Mutex<State>,
    work: Notify,
    abort: Notify,
}

/// The status code of an encoded close frame (pushgate's close frames have a 2-byte header).
fn code_of(close_frame: &Bytes) -> Option<u16> {
    close_frame
        .get(2..4)
        .map(|code| u16::from_be_bytes([code[0], code[1]]))
}

impl Outbox {
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
            work: Notify::new(),
            abort: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update
        // is a single push or swap), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame, refusing it when the queue is full or the connection is closing.
    pub fn push(&self, frame: Bytes, accepted_at: Option<Instant>) -> Result<(), QueueError> {
        let was_empty;
        {
            let mut state = self.lock();
            if state.closed || state.close.is_some() {
                return Err(QueueError::Closed);
            }
            if state.frames.len() >= self.limits.max_frames
                || state.bytes + frame.len() > self.limits.max_bytes
            {
                return Err(QueueError::Full);
            }
            was_empty = state.frames.is_empty();
            state.bytes += frame.len();
            state.frames.push_back(Queued { frame, accepted_at });
        }
        if was_empty {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Asks the writer to write `close_frame` after what is already queued and then stop.
    /// Returns false when a close was already requested (the first one wins).
    pub fn close(&self, close_frame: Bytes) -> bool {
        {
            let mut state = self.lock();
            if state.closed || state.close.is_some() {
                return false;
            }
            state.close_code = code_of(&close_frame);
            state.close = Some(close_frame);
        }
        self.work.notify_one();
        true
    }

    /// Closes a slow consumer: drops what is queued (releasing its memory now), aborts a write
    /// in progress, and leaves `close_frame` for the writer to try. False if already closing.
    pub fn close_slow(&self, close_frame: Bytes) -> bool {
        let dropped;
        {
            let mut state = self.lock();
            if state.closed || state.close.is_some() {
                return false;
            }
            dropped = std::mem::take(&mut state.frames);
            state.bytes = 0;
            state.close_code = code_of(&close_frame);
            state.close = Some(close_frame);
            state.abort = true;
        }
        drop(dropped);
        self.abort.notify_one();
        self.work.notify_one();
        true
    }

    /// Marks the connection dead (write failed or reader gone): nothing more is accepted.
    pub fn mark_closed(&self) {
        let dropped;
        {
            let mut state = self.lock();
            state.closed = true;
            dropped = std::mem::take(&mut state.frames);
            state.bytes = 0;
        }
        drop(dropped);
        self.work.notify_one();
    }

    /// True once a close was requested or the connection died.
    pub fn is_closing(&self) -> bool {
        let state = self.lock();
        state.closed || state.close.is_some()
    }

    /// Waits for work; moves every queued frame into `batch` (which must be empty).
    pub async fn next_step(&self, batch: &mut Vec<Queued>) -> WriterStep {
        loop {
            if let Some(step) = self.try_step(batch) {
                return step;
            }
            self.work.notified().await;
        }
    }

    /// The writer's next step if there is one now; `None` means "wait for work".
    pub fn try_step(&self, batch: &mut Vec<Queued>) -> Option<WriterStep> {
        let mut state = self.lock();
        if !state.frames.is_empty() && !state.abort {
            batch.extend(state.frames.drain(..));
            state.bytes = 0;
            return Some(WriterStep::Frames);
        }
        if state.closed {
            return Some(WriterStep::Stop);
        }
        if let Some(frame) = state.close.take() {
            state.closed = true;
            return Some(WriterStep::Close(frame));
        }
        None
    }

    /// Resolves when a slow-consumer close asks the writer to abandon its current write.
    pub async fn aborted(&self) {
        loop {
            if self.lock().abort {
                return;
            }
            self.abort.notified().await;
        }
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

    fn limits(max_frames: usize, max_bytes: usize) -> QueueLimits {
        QueueLimits {
            max_frames,
            max_bytes,
        }
    }

    #[tokio::test]
    async fn frames_come_out_in_order_then_close() {
        let outbox = Outbox::new(limits(8, 1024));
        outbox.push(Bytes::from_static(b"a"), None).unwrap();
        outbox.push(Bytes::from_static(b"b"), None).unwrap();
        assert!(outbox.close(Bytes::from_static(b"close")));
        assert_eq!(
            outbox.push(Bytes::from_static(b"c"), None),
            Err(QueueError::Closed)
        );
        let mut batch = Vec::new();
        assert!(matches!(
            outbox.next_step(&mut batch).await,
            WriterStep::Frames
        ));
        let frames: Vec<_> = batch.iter().map(|q| q.frame.clone()).collect();
        assert_eq!(
            frames,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
        batch.clear();
        match outbox.next_step(&mut batch).await {
            WriterStep::Close(frame) => assert_eq!(frame, Bytes::from_static(b"close")),
            other => panic!("expected close, got {other:?}"),
        }
        assert!(matches!(
            outbox.next_step(&mut batch).await,
            WriterStep::Stop
        ));
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
    }

    #[tokio::test]
    async fn slow_close_drops_the_queue_and_aborts() {
        let outbox = Outbox::new(limits(2, 1024));
        outbox.push(Bytes::from_static(b"a"), None).unwrap();
        assert!(outbox.close_slow(Bytes::from_static(b"slow")));
        assert!(!outbox.close(Bytes::from_static(b"other")));
        assert!(outbox.is_empty());
        outbox.aborted().await;
        let mut batch = Vec::new();
        assert!(matches!(
            outbox.next_step(&mut batch).await,
            WriterStep::Close(_)
        ));
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn writer_is_woken_by_a_push() {
        let outbox = std::sync::Arc::new(Outbox::new(limits(8, 1024)));
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                outbox.next_step(&mut batch).await;
                batch.len()
            })
        };
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"x"), None).unwrap();
        assert_eq!(writer.await.unwrap(), 1);
    }
}
