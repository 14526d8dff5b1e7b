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
pub struct Writer {
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    finished: bool,
}

impl Writer {
    pub fn new(outbox: Arc<Outbox>, metrics: Arc<Metrics>) -> Self {
        Self {
            outbox,
            metrics,
            finished: false,
        }
    }

    /// True once the close frame was written, the socket failed, or the outbox closed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Waits until the session has something to write. Cancel-safe.
    pub async fn ready(&mut self) -> WriterStep {
        self.outbox.next_step().await
    }

    /// Carries out a step returned by [`Writer::ready`]; returns false once finished.
    pub async fn perform(&mut self, step: WriterStep) -> bool {
        match step {
            WriterStep::Write => loop {
                match self.outbox.write_now(&self.metrics) {
                    Progress::Idle => break,
                    Progress::Finished => {
                        self.finish_socket();
                        break;
                    }
                    Progress::Blocked => {
                        let Some(socket) = self.outbox.socket() else {
                            break;
                        };
                        let stuck = tokio::select! {
                            biased;
                            _ = self.outbox.aborted() => true,
                            ready = socket.writable() => ready.is_err(),
                        };
                        if stuck {
                            // A slow consumer being closed, or a dead socket: whatever is
                            // still queued would never get through.
                            self.outbox.mark_closed();
                            self.finish_socket();
                            break;
                        }
                    }
                }
            },
            WriterStep::Stop => self.finish_socket(),
        }
        !self.finished
    }

    /// Writes whatever the outbox still holds, up to and including its close frame, for at
    /// most [`CLOSE_WRITE_TIMEOUT`].
    pub async fn finish(&mut self) {
        let drained = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
            while !self.finished {
                let step = self.ready().await;
                self.perform(step).await;
            }
        })
        .await;
        if drained.is_err() {
            self.outbox.mark_closed();
            self.finish_socket();
        }
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
