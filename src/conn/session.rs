//! The task that owns a connection after the upgrade.
//!
//! It reads client frames (register frames, pings, close), binds the connection through the
//! shard that owns its user, and unbinds it however the connection ends. It never writes to
//! the socket itself: pong and close replies go through the [`Outbox`] like pushed frames, so
//! the writer is the only one writing and frames never interleave.
//!
//! Register semantics (documented in the README): the first valid register frame binds the
//! connection to (user, event). A later frame for the same user adds another event; a frame
//! for the same (user, event) changes nothing; a frame whose token names another user is
//! refused and counted, so a connection is never bound to two users.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::outbox::{Outbox, QueueError};
use super::writer;
use crate::gateway::Shared;
use crate::metrics::{CloseReason, RegisterResult};
use crate::protocol::register::{RegisterError, RegisterFrame};
use crate::shard::ConnHandle;
use crate::ws::close::CloseCode;
use crate::ws::frame::{self, OpCode};
use crate::ws::reader::{FrameReader, Message};

/// How long the session keeps reading after the server sent a close frame, waiting for the
/// client's reply, before it drops the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The user a connection is bound to and the events it registered.
struct Bound {
    user: Arc<str>,
    events: Vec<Box<str>>,
}

/// How the read loop ended.
enum Ending {
    /// The client sent a close frame (already echoed).
    ClientClosed,
    /// The server queued a close frame; wait for the client's reply.
    ServerClosed(CloseReason),
    /// The socket ended or failed.
    Reset,
    /// The writer stopped on its own: a slow-consumer close from the push side, or a
    /// failed write.
    WriterEnded,
}

/// What woke the read loop.
enum Wake {
    Readable,
    SocketError,
    Shutdown,
    WriterEnded,
}

/// Serves one upgraded connection until it ends. `initial` holds bytes the client sent right
/// after the handshake, which hyper had already read. `_alive` is dropped on return, which is
/// how shutdown learns that every connection is gone.
pub async fn run(
    stream: TcpStream,
    initial: Vec<u8>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let conn_id = shared.next_conn_id();
    let (read_half, write_half) = stream.into_split();
    let outbox = Arc::new(Outbox::new(shared.config.queue_limits()));
    let writer_task = tokio::spawn(writer::run(
        write_half,
        outbox.clone(),
        shared.metrics.clone(),
    ));
    shared.metrics.connections.increment(1.0);

    let mut session = Session {
        conn: ConnHandle {
            id: conn_id,
            outbox,
        },
        shared: &shared,
        bound: None,
        writer: Some(writer_task),
    };
    let mut reader = FrameReader::with_initial(shared.config.max_message_size, initial);
    let ending = session
        .read_loop(&read_half, &mut reader, &mut shutdown)
        .await;
    session.unbind().await;
    let reason = match ending {
        Ending::ClientClosed => CloseReason::Client,
        Ending::Reset => {
            session.conn.outbox.mark_closed();
            CloseReason::Reset
        }
        Ending::ServerClosed(reason) => reason,
        Ending::WriterEnded if session.conn.outbox.was_slow() => CloseReason::SlowConsumer,
        Ending::WriterEnded => CloseReason::Reset,
    };
    shared.metrics.close(reason);
    // The writer ends after the close frame (or at once when the socket is dead).
    if let Some(writer_task) = session.writer.take() {
        let _ = writer_task.await;
    }
    if matches!(ending, Ending::ServerClosed(_) | Ending::WriterEnded) {
        let _ = tokio::time::timeout(CLOSE_LINGER, linger(&read_half, &mut reader)).await;
    }
    shared.metrics.connections.decrement(1.0);
}

struct Session<'a> {
    conn: ConnHandle,
    shared: &'a Shared,
    bound: Option<Bound>,
    /// The writer task, until it has been seen to end.
    writer: Option<tokio::task::JoinHandle<()>>,
}

/// Resolves when the writer task ends (never, once it has been seen to end).
async fn writer_ended(writer: &mut Option<tokio::task::JoinHandle<()>>) {
    match writer {
        Some(handle) => {
            let _ = handle.await;
            *writer = None;
        }
        None => std::future::pending().await,
    }
}

impl Session<'_> {
    async fn read_loop(
        &mut self,
        read_half: &OwnedReadHalf,
        reader: &mut FrameReader,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ending {
        loop {
            match reader.next_message() {
                Ok(Some(message)) => {
                    if let Some(ending) = self.handle(message).await {
                        return ending;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(violation) => {
                    let reason = match violation.code {
                        CloseCode::INVALID_PAYLOAD => CloseReason::InvalidPayload,
                        CloseCode::MESSAGE_TOO_BIG => CloseReason::MessageTooBig,
                        _ => CloseReason::ProtocolError,
                    };
                    tracing::debug!(conn = self.conn.id, %violation, "closing on protocol violation");
                    self.conn
                        .outbox
                        .close(frame::close(violation.code.0, violation.reason));
                    return Ending::ServerClosed(reason);
                }
            }
            reader.release_idle_buffer();
            if *shutdown.borrow() {
                return self.close_for_shutdown();
            }
            let wake = tokio::select! {
                ready = read_half.readable() => match ready {
                    Ok(()) => Wake::Readable,
                    Err(_) => Wake::SocketError,
                },
                _ = shutdown.changed() => Wake::Shutdown,
                _ = writer_ended(&mut self.writer) => Wake::WriterEnded,
            };
            match wake {
                Wake::Readable => {}
                Wake::SocketError => return Ending::Reset,
                Wake::Shutdown => return self.close_for_shutdown(),
                Wake::WriterEnded => return Ending::WriterEnded,
            }
            match read_half.try_read_buf(reader.read_buffer()) {
                Ok(0) => return Ending::Reset,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Ending::Reset,
            }
        }
    }

    fn close_for_shutdown(&self) -> Ending {
        self.conn.outbox.close(frame::close(
            CloseCode::GOING_AWAY.0,
            "server shutting down",
        ));
        Ending::ServerClosed(CloseReason::Shutdown)
    }

    /// Handles one client message; `Some` ends the read loop.
    async fn handle(&mut self, message: Message) -> Option<Ending> {
        match message {
            Message::Text(text) => self.register(text.as_bytes()).await,
            Message::Binary(_) => self.shared.metrics.registration(RegisterResult::Binary),
            Message::Ping(payload) => {
                let pong = frame::encode(OpCode::Pong, &payload);
                if let Err(QueueError::Full) = self.conn.outbox.push(pong, None) {
                    self.conn
                        .outbox
                        .close_slow(frame::close(CloseCode::SLOW_CONSUMER.0, "slow consumer"));
                    return Some(Ending::ServerClosed(CloseReason::SlowConsumer));
                }
            }
            Message::Pong => {}
            Message::Close(code, _) => {
                // Unbind before echoing: once the client sees the echo, no later push can
                // count this connection.
                self.unbind().await;
                let echo = match code {
                    Some(code) => frame::close(code, ""),
                    None => frame::encode(OpCode::Close, &[]),
                };
                self.conn.outbox.close(echo);
                return Some(Ending::ClientClosed);
            }
        }
        None
    }

    async fn register(&mut self, text: &[u8]) {
        let metrics = &self.shared.metrics;
        let frame = match RegisterFrame::parse(text) {
            Ok(frame) => frame,
            Err(RegisterError::Malformed) => {
                return metrics.registration(RegisterResult::Malformed)
            }
            Err(RegisterError::EmptyField) => {
                return metrics.registration(RegisterResult::EmptyField)
            }
        };
        let user = match self.shared.auth.authenticate(&frame.token).await {
            Ok(user) if user.is_empty() => {
                return metrics.registration(RegisterResult::TokenRejected)
            }
            Ok(user) => user,
            Err(crate::auth::AuthError::Rejected) => {
                return metrics.registration(RegisterResult::TokenRejected)
            }
            Err(crate::auth::AuthError::Unavailable) => {
                return metrics.registration(RegisterResult::AuthUnavailable)
            }
        };
        let event: Box<str> = frame.event.into();
        let (user, result) = match &mut self.bound {
            None => {
                let user: Arc<str> = user.into();
                self.bound = Some(Bound {
                    user: user.clone(),
                    events: vec![event.clone()],
                });
                (user, RegisterResult::Ok)
            }
            Some(bound) if *bound.user != *user => {
                return metrics.registration(RegisterResult::UserConflict)
            }
            Some(bound) if bound.events.contains(&event) => {
                return metrics.registration(RegisterResult::Duplicate)
            }
            Some(bound) => {
                bound.events.push(event.clone());
                (bound.user.clone(), RegisterResult::AddedEvent)
            }
        };
        self.shared
            .router
            .register(user, event, self.conn.clone())
            .await;
        metrics.registration(result);
    }

    async fn unbind(&mut self) {
        if let Some(bound) = self.bound.take() {
            self.shared
                .router
                .unregister(bound.user, self.conn.id)
                .await;
        }
    }
}

/// Reads and discards until the client closes its side (or sends its close reply).
async fn linger(read_half: &OwnedReadHalf, reader: &mut FrameReader) {
    loop {
        if read_half.readable().await.is_err() {
            return;
        }
        match read_half.try_read_buf(reader.read_buffer()) {
            Ok(0) => return,
            Ok(_) => loop {
                match reader.next_message() {
                    Ok(Some(Message::Close(..))) | Err(_) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                }
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_state_stays_small() {
        // Each idle connection keeps its session and writer futures alive: their sizes are
        // per-connection memory (docs/PERFORMANCE.md, idle target).
        let reader = std::mem::size_of::<crate::ws::reader::FrameReader>();
        let outbox = std::mem::size_of::<crate::conn::outbox::Outbox>();
        assert!(reader <= 64, "FrameReader is {reader} bytes");
        assert!(outbox <= 256, "Outbox is {outbox} bytes");
    }
}
