//! The session's share of the writing: what the shard could not write at once.
//!
//! The shard writes pushed frames itself when the socket takes them (see [`Outbox`]). The
//! session steps in when the socket is full, waiting for it to drain, and for the frames it
//! queues itself (pings, pongs, acks, the close frame). It also shuts the socket down at the
//! end, once the close frame is out or the connection failed.

use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use super::outbox::{Outbox, Progress, WriterStep};
use crate::metrics::Metrics;

/// How long the frames still queued at the end (the close frame last) may take to reach the
/// socket before the connection is dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The write side of a connection, driven by the connection's session task: one task per
/// connection reads and writes, which saves a task (and its memory) per idle connection.
///
/// Nothing here waits inside [`Writer::perform`]: a full socket is waited for in
/// [`Writer::ready`], which the session selects on beside reads and its timers, so that a
/// client that stops reading is still timed out, drained and closed on time.
pub struct Writer {
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    finished: bool,
    /// The last write left the socket full: wait for room before writing again.
    blocked: bool,
}

impl Writer {
    pub fn new(outbox: Arc<Outbox>, metrics: Arc<Metrics>) -> Self {
        Self {
            outbox,
            metrics,
            finished: false,
            blocked: false,
        }
    }

    /// True once the close frame was written, the socket failed, or the outbox closed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Waits until the session has something to write: queued frames, or room on a socket
    /// that was full (or a close of the connection, which ends that wait). Cancel-safe.
    pub async fn ready(&mut self) -> WriterStep {
        if self.blocked {
            // The rare path, boxed so that its state does not size every idle connection's
            // task.
            Box::pin(self.room_on_socket()).await
        } else {
            self.outbox.next_step().await
        }
    }

    async fn room_on_socket(&mut self) -> WriterStep {
        let Some(socket) = self.outbox.socket() else {
            self.blocked = false;
            return WriterStep::Write;
        };
        let ready = tokio::select! {
            biased;
            _ = self.outbox.aborted() => Ok(()),
            ready = socket.writable() => ready,
        };
        self.blocked = false;
        match ready {
            Ok(()) => WriterStep::Write,
            Err(_) => {
                // A dead socket: whatever is still queued would never get through.
                self.outbox.mark_closed(&self.metrics);
                WriterStep::Stop
            }
        }
    }

    /// Carries out a step returned by [`Writer::ready`], without waiting: writes what the
    /// socket takes now. Returns false once finished.
    pub fn perform(&mut self, step: WriterStep) -> bool {
        match step {
            WriterStep::Write => match self.outbox.write_now(&self.metrics) {
                Progress::Idle => {}
                Progress::Finished => self.finish_socket(),
                Progress::Blocked => self.blocked = true,
            },
            WriterStep::Stop => self.finish_socket(),
        }
        !self.finished
    }

    /// Writes whatever the outbox still holds, up to and including its close frame, for at
    /// most [`CLOSE_WRITE_TIMEOUT`]; past it the connection is reset, which drops what the
    /// kernel still holds for a client that stopped reading. Returns false in that case: no
    /// close frame went out, so no close reply is worth waiting for.
    pub async fn finish(&mut self) -> bool {
        let drained = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
            while !self.finished {
                let step = self.ready().await;
                self.perform(step);
            }
        })
        .await;
        if drained.is_ok() {
            return true;
        }
        self.outbox.mark_closed(&self.metrics);
        if let Some(socket) = self.outbox.socket() {
            // Closing with a zero linger sends a reset and frees the socket's buffers when
            // the last handle drops, at the end of the session, instead of leaving the
            // kernel to push them at a stalled reader.
            let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
        }
        self.finished = true;
        false
    }

    fn finish_socket(&mut self) {
        if !self.finished {
            self.finished = true;
            if let Some(socket) = self.outbox.socket() {
                // Sends the FIN now rather than when the last handle to the socket drops.
                let _ = socket2::SockRef::from(socket).shutdown(Shutdown::Write);
            }
        }
    }
}
