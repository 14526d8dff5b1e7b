//! The task that owns a connection after the upgrade.
//!
//! It reads client frames (register frames, pings, close), binds the connection through the
//! shard that owns its user, and unbinds it however the connection ends. Its own frames
//! (ping, pong, ack, close) go through the [`Outbox`] like pushed frames, so that frames never
//! interleave; the shard writes pushed frames itself, and the session writes only what the
//! socket could not take at once and its own frames.
//!
//! Register semantics (documented in the README): the first valid register frame binds the
//! connection to (user, event). A later frame for the same user adds another event; a frame
//! for the same (user, event) changes nothing; a frame whose token names another user is
//! refused and counted, so a connection is never bound to two users.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::outbox::WriterStep;
use super::outbox::{Outbox, QueueError};
use super::writer::Writer;
use crate::auth::{AuthError, RejectReason};
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

/// What woke the connection's loop.
enum Wake {
    Readable,
    SocketError,
    Draining,
    Write(WriterStep),
    Timer,
}

/// Serves one upgraded connection until it ends. `initial` holds bytes the client sent right
/// after the handshake, which hyper had already read.
pub async fn run(
    stream: TcpStream,
    initial: Vec<u8>,
    shared: Arc<Shared>,
    mut draining: watch::Receiver<bool>,
) {
    let conn_id = shared.next_conn_id();
    let socket = Arc::new(stream);
    let outbox = Arc::new(Outbox::with_socket(
        shared.config.queue_limits(),
        socket.clone(),
    ));
    let writer = Writer::new(outbox.clone(), shared.metrics.clone());

    let mut session = Session {
        conn: ConnHandle {
            id: conn_id,
            outbox,
        },
        shared: &shared,
        bound: None,
        token_expiry: None,
        writer,
    };
    let mut reader = FrameReader::with_initial(shared.config.max_message_size, initial);
    let ending = session.read_loop(&socket, &mut reader, &mut draining).await;
    // Rare paths are boxed so that their state does not size every idle connection's task.
    Box::pin(session.unbind()).await;
    let reason = match ending {
        Ending::ClientClosed => CloseReason::Client,
        Ending::Reset => {
            session.conn.outbox.mark_closed(&shared.metrics);
            CloseReason::Reset
        }
        Ending::ServerClosed(reason) => reason,
        Ending::WriterEnded => match session.conn.outbox.close_code().map(CloseCode) {
            Some(CloseCode::SLOW_CONSUMER) => CloseReason::SlowConsumer,
            Some(CloseCode::TOO_MANY_CONNECTIONS) => CloseReason::UserCap,
            Some(CloseCode::DISCONNECTED) => CloseReason::Disconnected,
            _ => CloseReason::Reset,
        },
    };
    shared.metrics.close(reason);
    tracing::debug!(
        conn = session.conn.id,
        reason = reason.label(),
        "connection ended"
    );
    // Write what is still queued, then the close frame (at once when the socket is dead).
    let close_sent = Box::pin(session.writer.finish()).await;
    if close_sent && matches!(ending, Ending::ServerClosed(_) | Ending::WriterEnded) {
        let _ = Box::pin(tokio::time::timeout(
            CLOSE_LINGER,
            linger(&socket, &mut reader),
        ))
        .await;
    }
}

struct Session<'a> {
    conn: ConnHandle,
    shared: &'a Shared,
    bound: Option<Bound>,
    /// When the earliest token this connection registered with expires.
    token_expiry: Option<Instant>,
    /// The write side; this task drives it between reads.
    writer: Writer,
}

/// The moments a connection's timers fire: the next ping, the idle deadline, the register
/// deadline while unbound, and the drain close once shutdown started. The read loop sleeps
/// until the earliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub next_ping: Instant,
    pub idle_deadline: Instant,
    pub register_deadline: Option<Instant>,
    pub token_expiry: Option<Instant>,
    pub drain_close: Option<Instant>,
}

/// What a timer asks the session to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    Nothing,
    Ping,
    CloseIdle,
    CloseUnregistered,
    CloseExpired,
    CloseForDrain,
}

impl Timers {
    pub fn new(now: Instant, config: &crate::config::Config) -> Self {
        Self {
            next_ping: now + config.ping_interval,
            idle_deadline: now + config.idle_timeout,
            register_deadline: Some(now + config.register_timeout),
            token_expiry: None,
            drain_close: None,
        }
    }

    /// The earliest moment something is due.
    pub fn earliest(&self) -> Instant {
        [
            Some(self.next_ping),
            Some(self.idle_deadline),
            self.register_deadline,
            self.token_expiry,
            self.drain_close,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.idle_deadline)
    }

    /// Anything heard from the client proves it alive.
    pub fn heard(&mut self, now: Instant, idle_timeout: Duration) {
        self.idle_deadline = now + idle_timeout;
    }

    /// What is due at `now`; a due ping is rescheduled.
    pub fn due(&mut self, now: Instant, ping_interval: Duration) -> TimerAction {
        if self.drain_close.is_some_and(|at| now >= at) {
            TimerAction::CloseForDrain
        } else if self.register_deadline.is_some_and(|at| now >= at) {
            TimerAction::CloseUnregistered
        } else if self.token_expiry.is_some_and(|at| now >= at) {
            TimerAction::CloseExpired
        } else if now >= self.idle_deadline {
            TimerAction::CloseIdle
        } else if now >= self.next_ping {
            self.next_ping = now + ping_interval;
            TimerAction::Ping
        } else {
            TimerAction::Nothing
        }
    }
}

impl Session<'_> {
    async fn read_loop(
        &mut self,
        socket: &TcpStream,
        reader: &mut FrameReader,
        draining: &mut watch::Receiver<bool>,
    ) -> Ending {
        let config = &self.shared.config;
        let mut timers = Timers::new(Instant::now(), config);
        // One timer entry for the connection's life, moved only when the earliest deadline
        // changes: re-arming it on every wake-up (each write) showed in profiles.
        let sleep = tokio::time::sleep_until(timers.earliest());
        tokio::pin!(sleep);
        loop {
            match reader.next_message() {
                Ok(Some(message)) => {
                    if let Some(ending) = Box::pin(self.handle(message)).await {
                        return ending;
                    }
                    if self.bound.is_some() {
                        timers.register_deadline = None;
                    }
                    timers.token_expiry = self.token_expiry;
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
                    return self.close(violation.code, violation.reason, reason);
                }
            }
            reader.release_idle_buffer();
            if timers.drain_close.is_none() && *draining.borrow() {
                timers.drain_close = Some(Instant::now() + self.shared.drain_delay(self.conn.id));
            }
            let due = timers.earliest();
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
            let wake = tokio::select! {
                // poll_read_ready keeps no future state (a readable() future is 152 bytes,
                // paid by every idle connection); only this task waits for reads.
                ready = std::future::poll_fn(|cx| socket.poll_read_ready(cx)) => match ready {
                    Ok(()) => Wake::Readable,
                    Err(_) => Wake::SocketError,
                },
                _ = draining.changed(), if timers.drain_close.is_none() => Wake::Draining,
                step = self.writer.ready(), if !self.writer.is_finished() => Wake::Write(step),
                _ = &mut sleep => Wake::Timer,
            };
            match wake {
                Wake::Readable => {}
                Wake::SocketError => return Ending::Reset,
                Wake::Draining => continue,
                Wake::Write(step) => {
                    if !self.writer.perform(step) || self.conn.outbox.is_closing() {
                        // Finished, or closed from the push side (slow consumer, user cap,
                        // disconnect): what is left and the close frame get their bounded
                        // time in `Writer::finish`.
                        return Ending::WriterEnded;
                    }
                    continue;
                }
                Wake::Timer => {
                    match timers.due(Instant::now(), config.ping_interval) {
                        TimerAction::Nothing => {}
                        TimerAction::Ping => {
                            if let Err(QueueError::Full) =
                                self.conn.outbox.push_own(self.shared.ping_frame.clone())
                            {
                                return self.close_slow();
                            }
                        }
                        TimerAction::CloseIdle => {
                            return self.close(
                                CloseCode::IDLE_TIMEOUT,
                                "idle timeout",
                                CloseReason::IdleTimeout,
                            )
                        }
                        TimerAction::CloseUnregistered => {
                            return self.close(
                                CloseCode::REGISTER_TIMEOUT,
                                "register timeout",
                                CloseReason::RegisterTimeout,
                            )
                        }
                        TimerAction::CloseExpired => {
                            return self.close(
                                CloseCode::TOKEN_EXPIRED,
                                "token expired",
                                CloseReason::TokenExpired,
                            )
                        }
                        TimerAction::CloseForDrain => {
                            return self.close(
                                CloseCode::GOING_AWAY,
                                "server shutting down",
                                CloseReason::Shutdown,
                            )
                        }
                    }
                    continue;
                }
            }
            match socket.try_read_buf(reader.read_buffer()) {
                Ok(0) => return Ending::Reset,
                Ok(_) => timers.heard(Instant::now(), config.idle_timeout),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Ending::Reset,
            }
        }
    }

    /// Queues a close frame behind what is already queued and ends the read loop.
    fn close(&self, code: CloseCode, reason: &str, counted_as: CloseReason) -> Ending {
        self.conn.outbox.close(frame::close(code.0, reason));
        Ending::ServerClosed(counted_as)
    }

    fn close_slow(&self) -> Ending {
        self.conn.outbox.close_slow(
            frame::close(CloseCode::SLOW_CONSUMER.0, "slow consumer"),
            &self.shared.metrics,
        );
        Ending::ServerClosed(CloseReason::SlowConsumer)
    }

    /// Handles one client message; `Some` ends the read loop.
    async fn handle(&mut self, message: Message) -> Option<Ending> {
        match message {
            Message::Text(text) => return self.register(text.as_bytes()).await,
            Message::Binary(_) => self.count_registration(RegisterResult::Binary),
            Message::Ping(payload) => {
                let pong = frame::encode(OpCode::Pong, &payload);
                if let Err(QueueError::Full) = self.conn.outbox.push_own(pong) {
                    return Some(self.close_slow());
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

    /// Handles a register frame; `Some` ends the read loop (a refused token, when the client
    /// asked for an ack, is answered and closed with 4401).
    async fn register(&mut self, text: &[u8]) -> Option<Ending> {
        let metrics = &self.shared.metrics;
        let frame = match RegisterFrame::parse(text) {
            Ok(frame) if frame.replaced_invalid_text => {
                metrics.invalid_text_register.increment(1);
                tracing::debug!(
                    "register frame held a lone surrogate; read with U+FFFD in its place"
                );
                frame
            }
            Ok(frame) => frame,
            Err(RegisterError::Malformed) => {
                self.count_registration(RegisterResult::Malformed);
                return None;
            }
            Err(RegisterError::EmptyField { ack }) => {
                self.count_registration(RegisterResult::EmptyField);
                return self.reply_error(ack, "empty_field");
            }
        };
        // Checked before the authenticator is asked, and the userID after: both are kept by
        // the shard for as long as the connection is bound.
        let max_name = self.shared.config.max_name_length;
        if frame.event.len() > max_name {
            self.count_registration(RegisterResult::NameTooLong);
            return self.reply_error(frame.ack, "name_too_long");
        }
        let identity = match self.shared.auth.authenticate(&frame.token).await {
            Ok(identity) if !identity.user_id.is_empty() => identity,
            Ok(_) => return self.refuse(frame.ack, RejectReason::Claims),
            Err(AuthError::Rejected(reason)) => return self.refuse(frame.ack, reason),
            Err(AuthError::Unavailable) => {
                self.count_registration(RegisterResult::AuthUnavailable);
                return self.reply_error(frame.ack, "auth_unavailable");
            }
        };
        if identity.user_id.len() > max_name {
            self.count_registration(RegisterResult::NameTooLong);
            return self.reply_error(frame.ack, "name_too_long");
        }
        let event: Box<str> = frame.event.into();
        let user_id = identity.user_id.as_str();
        let (user, result) = match &mut self.bound {
            None => {
                let user: Arc<str> = user_id.into();
                self.bound = Some(Bound {
                    user: user.clone(),
                    events: vec![event.clone()],
                });
                (user, RegisterResult::Ok)
            }
            Some(bound) if *bound.user != *user_id => {
                self.count_registration(RegisterResult::UserConflict);
                return self.reply_error(frame.ack, "user_conflict");
            }
            Some(bound) if bound.events.contains(&event) => {
                self.count_registration(RegisterResult::Duplicate);
                return self.reply_registered(frame.ack, &event);
            }
            Some(bound)
                if self.shared.config.max_events_per_connection > 0
                    && bound.events.len() >= self.shared.config.max_events_per_connection =>
            {
                self.count_registration(RegisterResult::TooManyEvents);
                return self.reply_error(frame.ack, "too_many_events");
            }
            Some(bound) => {
                bound.events.push(event.clone());
                (bound.user.clone(), RegisterResult::AddedEvent)
            }
        };
        if self.shared.config.jwt_close_on_expiry {
            if let Some(expires_at) = identity.expires_at {
                let left = expires_at
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                // Past what the monotonic clock can hold: never, in practice.
                if let Some(at) = Instant::now().checked_add(left) {
                    self.token_expiry = Some(self.token_expiry.map_or(at, |t| t.min(at)));
                }
            }
        }
        // The shard queues the `registered` reply as it binds, so that no push overtakes it.
        let ack = frame
            .ack
            .then(|| ack_frame(&AckReply::Registered { event: &event }))
            .flatten();
        let bound = self
            .shared
            .router
            .register(user, event.clone(), self.conn.clone(), ack)
            .await;
        if !bound {
            // The user's connection cap (the shard counted the refusal): only a first
            // binding can be refused, so the connection is bound to nothing.
            self.bound = None;
            self.count_registration(RegisterResult::UserCap);
            if let Some(slow) = self.reply_error(frame.ack, "too_many_connections") {
                return Some(slow);
            }
            return Some(self.close(
                CloseCode::TOO_MANY_CONNECTIONS,
                "too many connections for this user",
                CloseReason::UserCap,
            ));
        }
        self.count_registration(result);
        None
    }

    fn refuse(&self, ack: bool, reason: RejectReason) -> Option<Ending> {
        let metrics = &self.shared.metrics;
        self.count_registration(RegisterResult::TokenRejected);
        metrics.auth_rejected(reason);
        if !ack {
            // The old server's behaviour: silently unbound.
            return None;
        }
        if let Some(slow) = self.reply_error(true, "token_rejected") {
            return Some(slow);
        }
        Some(self.close(
            CloseCode::UNAUTHORIZED,
            "unauthorized",
            CloseReason::Unauthorized,
        ))
    }

    /// Counts a register frame's outcome; one that binds nothing also gets a debug line.
    fn count_registration(&self, result: RegisterResult) {
        self.shared.metrics.registration(result);
        if !matches!(
            result,
            RegisterResult::Ok | RegisterResult::AddedEvent | RegisterResult::Duplicate
        ) {
            tracing::debug!(
                conn = self.conn.id,
                result = result.label(),
                "register frame refused"
            );
        }
    }

    /// Queues an ack frame for a client that asked for one. A client that sends register
    /// frames faster than it reads their replies fills its queue like any slow consumer, and
    /// is closed as one (`Some`): a reply is never dropped unseen.
    fn reply(&self, ack: bool, body: &AckReply<'_>) -> Option<Ending> {
        if !ack {
            return None;
        }
        match self.conn.outbox.push_own(ack_frame(body)?) {
            Ok(()) => None,
            Err(QueueError::Full) => Some(self.close_slow()),
            // Closing already: the close frame is on its way.
            Err(QueueError::Closed) => None,
        }
    }

    fn reply_registered(&self, ack: bool, event: &str) -> Option<Ending> {
        self.reply(ack, &AckReply::Registered { event })
    }

    fn reply_error(&self, ack: bool, reason: &str) -> Option<Ending> {
        self.reply(ack, &AckReply::Error { reason })
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

/// The opt-in ack, `type` first, as the README shows it byte for byte.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AckReply<'a> {
    Registered { event: &'a str },
    Error { reason: &'a str },
}

/// An ack as the text frame the client receives.
fn ack_frame(body: &AckReply<'_>) -> Option<bytes::Bytes> {
    serde_json::to_string(body)
        .ok()
        .map(|text| frame::text(&text))
}

/// Reads and discards until the client closes its side (or sends its close reply).
async fn linger(socket: &TcpStream, reader: &mut FrameReader) {
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        match socket.try_read_buf(reader.read_buffer()) {
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
    use super::{TimerAction, Timers};
    use std::time::Duration;
    use tokio::time::Instant;

    fn config() -> crate::config::Config {
        let mut config = crate::config::Config::for_tests();
        config.ping_interval = Duration::from_secs(30);
        config.idle_timeout = Duration::from_secs(75);
        config.register_timeout = Duration::from_secs(20);
        config
    }

    /// On tokio's paused clock: the timers fire in the documented order at the documented
    /// moments, and anything heard from the client pushes the idle deadline back.
    #[tokio::test(start_paused = true)]
    async fn timers_fire_on_a_paused_clock() {
        let config = config();
        let mut timers = Timers::new(Instant::now(), &config);
        assert_eq!(timers.earliest(), Instant::now() + Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            timers.due(Instant::now(), config.ping_interval),
            TimerAction::CloseUnregistered
        );

        // Registered: pings every 30 s; the client answers each one.
        let mut timers = Timers::new(Instant::now(), &config);
        timers.register_deadline = None;
        for _ in 0..5 {
            tokio::time::sleep_until(timers.earliest()).await;
            assert_eq!(
                timers.due(Instant::now(), config.ping_interval),
                TimerAction::Ping
            );
            timers.heard(Instant::now(), config.idle_timeout);
        }
        // Then it goes silent: two more pings, then the idle close, 75 s after it was last heard.
        let last_heard = Instant::now();
        let mut actions = Vec::new();
        loop {
            tokio::time::sleep_until(timers.earliest()).await;
            let action = timers.due(Instant::now(), config.ping_interval);
            actions.push(action);
            if action == TimerAction::CloseIdle {
                break;
            }
        }
        assert_eq!(
            actions,
            vec![TimerAction::Ping, TimerAction::Ping, TimerAction::CloseIdle]
        );
        assert_eq!(Instant::now() - last_heard, Duration::from_secs(75));
    }

    #[tokio::test(start_paused = true)]
    async fn token_expiry_and_drain_close_before_anything_else() {
        let config = config();
        let mut timers = Timers::new(Instant::now(), &config);
        timers.register_deadline = None;
        timers.token_expiry = Some(Instant::now() + Duration::from_secs(5));
        tokio::time::sleep_until(timers.earliest()).await;
        assert_eq!(
            timers.due(Instant::now(), config.ping_interval),
            TimerAction::CloseExpired
        );
        timers.drain_close = Some(Instant::now());
        assert_eq!(
            timers.due(Instant::now(), config.ping_interval),
            TimerAction::CloseForDrain
        );
    }

    #[test]
    fn session_state_stays_small() {
        // Each idle connection keeps its session and writer futures alive: their sizes are
        // per-connection memory (docs/PERFORMANCE.md, idle target).
        let reader = std::mem::size_of::<crate::ws::reader::FrameReader>();
        let outbox = std::mem::size_of::<crate::conn::outbox::Outbox>();
        assert!(reader <= 64, "FrameReader is {reader} bytes");
        assert!(outbox <= 256, "Outbox is {outbox} bytes");
    }

    #[tokio::test]
    async fn an_idle_session_task_stays_small() {
        // The session future's size is paid by every idle connection (docs/PERFORMANCE.md,
        // idle target): rare paths are boxed to keep it down.
        let shared = crate::gateway::Shared::for_tests();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let session = super::run(stream, Vec::new(), shared, rx);
        let size = std::mem::size_of_val(&session);
        // It includes the writer's state since the session drives the writes too.
        assert!(size <= 900, "session future is {size} bytes");
    }
}
