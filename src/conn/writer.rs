//! The writing half of a connection: the only code that writes to its socket.
//!
//! It takes everything queued in the [`Outbox`] at once and writes it with as few `writev`
//! calls as the kernel allows: a small write to loopback costs ~4.4 µs of kernel time whatever
//! its size, so coalescing the frames that piled up while the last write ran is the main
//! lever on CPU per delivery. Fan-out latency is recorded here, when a frame has been handed
//! to the socket.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use super::outbox::{Outbox, Queued, WriterStep};
use crate::metrics::Metrics;

/// Frames per `writev` call (Linux accepts 1024; 64 keeps the slice array small).
const MAX_SLICES: usize = 64;

/// How long a close frame may take to reach the socket before the connection is dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The write side of a connection, driven by the connection's session task: one task per
/// connection reads and writes, which saves a task (and its memory) per idle connection.
pub struct Writer {
    sink: OwnedWriteHalf,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    batch: Vec<Queued>,
    finished: bool,
}

impl Writer {
    pub fn new(sink: OwnedWriteHalf, outbox: Arc<Outbox>, metrics: Arc<Metrics>) -> Self {
        Self {
            sink,
            outbox,
            metrics,
            batch: Vec::new(),
            finished: false,
        }
    }

    /// True once the close frame was written, the socket failed, or the outbox said stop.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Waits until there is something to write. Cancel-safe: frames leave the outbox only
    /// in the poll that returns them.
    pub async fn ready(&mut self) -> WriterStep {
        self.outbox.next_step(&mut self.batch).await
    }

    /// Carries out a step returned by [`Writer::ready`]; returns false once finished.
    pub async fn perform(&mut self, step: WriterStep) -> bool {
        match step {
            WriterStep::Frames => {
                let written = tokio::select! {
                    biased;
                    _ = self.outbox.aborted() => Err(io::Error::other("slow consumer")),
                    // Boxed: the write path's state would otherwise size every idle connection.
                    result = Box::pin(write_batch(self.sink.as_ref(), &self.batch)) => result,
                };
                match written {
                    Ok(bytes) => record_delivery(&self.metrics, &self.batch, bytes),
                    Err(_) => {
                        self.outbox.mark_closed();
                        self.finish_socket().await;
                    }
                }
                self.batch.clear();
                if self.batch.capacity() > 4 * MAX_SLICES {
                    self.batch.shrink_to(MAX_SLICES);
                }
            }
            WriterStep::Close(frame) => {
                let _ =
                    tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.sink.write_all(&frame)).await;
                self.finish_socket().await;
            }
            WriterStep::Stop => self.finish_socket().await,
        }
        !self.finished
    }

    /// Writes whatever the outbox still holds, up to and including its close frame.
    pub async fn finish(&mut self) {
        while !self.finished {
            let step = self.ready().await;
            self.perform(step).await;
        }
    }

    async fn finish_socket(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.sink.shutdown()).await;
        }
    }
}

fn record_delivery(metrics: &Metrics, batch: &[Queued], bytes: usize) {
    let now = Instant::now();
    let mut delivered = 0u64;
    for queued in batch {
        if let Some(accepted_at) = queued.accepted_at {
            metrics
                .fanout_latency
                .record(now.saturating_duration_since(accepted_at));
            delivered += 1;
        }
    }
    metrics.outbound_bytes.increment(bytes as u64);
    // Writes and frames count pushed frames only, so that their ratio is the coalescing
    // factor; pings and pongs show in the bytes.
    if delivered > 0 {
        metrics.frames_written.increment(delivered);
        metrics.writes.increment(1);
    }
}

/// Writes every frame of `batch` in order, coalescing them into vectored writes. The slices
/// are built in a synchronous block between awaits, so they never live in the task's state.
async fn write_batch(stream: &TcpStream, batch: &[Queued]) -> io::Result<usize> {
    let total: usize = batch.iter().map(|q| q.frame.len()).sum();
    let mut index = 0;
    let mut offset = 0;
    let mut written_total = 0;
    while index < batch.len() {
        let attempt = {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (i, queued) in batch[index..].iter().take(MAX_SLICES).enumerate() {
                let bytes: &Bytes = &queued.frame;
                slices[i] = IoSlice::new(if i == 0 { &bytes[offset..] } else { bytes });
                count += 1;
            }
            stream.try_write_vectored(&slices[..count])
        };
        let mut written = match attempt {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stream.writable().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        written_total += written;
        while written > 0 {
            let left = batch[index].frame.len() - offset;
            if written >= left {
                written -= left;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    debug_assert_eq!(written_total, total);
    Ok(written_total)
}
