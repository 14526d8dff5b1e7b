//! The internal listener's header timeout, counted from a request's first byte.
//!
//! hyper's own header timeout starts as soon as it waits for a request head, so on a
//! keep-alive connection it also closes a connection that is merely idle between two
//! requests. Pipelines keep their push connection open between alerts, and the old server
//! never closed an idle one: a pipeline that pushes less often than every `--header-timeout`
//! would find its connection gone. So on the internal listener an idle connection may wait
//! for its next request as long as it likes, and once the first byte of a request head
//! arrives, the whole head must follow within `--header-timeout`, as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Where the connection is in its requests, shared between the connection's stream and
/// its request handler: whether it is between requests (the next bytes read start a head),
/// and how many heads were parsed (so that a deadline armed for one head is known to be over
/// even when hyper parsed it without reading again).
#[derive(Clone)]
pub struct RequestPhase(Arc<PhaseState>);

struct PhaseState {
    between_requests: AtomicBool,
    started: AtomicU64,
}

impl RequestPhase {
    /// A request head was parsed: until it is answered, bytes read are its body.
    pub fn request_started(&self) {
        self.0.started.fetch_add(1, Ordering::AcqRel);
        self.0.between_requests.store(false, Ordering::Release);
    }

    /// The request was answered: the next bytes start another head.
    pub fn request_answered(&self) {
        self.0.between_requests.store(true, Ordering::Release);
    }

    /// Between requests, and how many heads were parsed so far.
    fn now(&self) -> (bool, u64) {
        (
            self.0.between_requests.load(Ordering::Acquire),
            self.0.started.load(Ordering::Acquire),
        )
    }
}

/// A stream that fails reads with [`io::ErrorKind::TimedOut`] when a request head has begun
/// and not been parsed within the timeout. hyper then ends the connection, as it does for
/// its own header timeout.
///
/// One gap, accepted: bytes of a next request that hyper read while answering the previous
/// one (pipelining) start no deadline; a client that sends part of a head that way and
/// then nothing holds its connection like an idle one, which it may do anyway.
pub struct HeadDeadline<S> {
    inner: S,
    timeout: Duration,
    phase: RequestPhase,
    /// Made once and reset for every head, as hyper does with its own timer: no allocation
    /// per request.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The head `deadline` runs for (the count of heads parsed before it), if any.
    armed_for: Option<u64>,
}

impl<S> HeadDeadline<S> {
    /// Wraps `inner`; `phase` is told by the request handler when a request starts and ends.
    pub fn new(inner: S, timeout: Duration) -> (Self, RequestPhase) {
        let phase = RequestPhase(Arc::new(PhaseState {
            between_requests: AtomicBool::new(true),
            started: AtomicU64::new(0),
        }));
        let stream = Self {
            inner,
            timeout,
            phase: phase.clone(),
            deadline: None,
            armed_for: None,
        };
        (stream, phase)
    }
}

impl<S> HeadDeadline<S> {
    fn arm(&mut self, head: u64) {
        let at = tokio::time::Instant::now() + self.timeout;
        match self.deadline.as_mut() {
            Some(deadline) => deadline.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed_for = Some(head);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (between_requests, heads_parsed) = self.phase.now();
        if !between_requests || self.armed_for.is_some_and(|head| head != heads_parsed) {
            // The head it ran for was parsed: whatever is read now is a body, or the wait
            // for another request, which may be as long as it likes.
            self.armed_for = None;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) => {
                let got_bytes = buf.filled().len() > before;
                if got_bytes && between_requests && self.armed_for.is_none() {
                    self.arm(heads_parsed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = self.armed_for.is_some()
                    && self
                        .deadline
                        .as_mut()
                        .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within --header-timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_millis(100);

    /// The byte the client sends after fifty timeouts of silence, as `stream` reads it: the
    /// read must wait for it rather than fail.
    async fn byte_after_a_long_idle(
        mut stream: HeadDeadline<tokio::io::DuplexStream>,
        client: &mut tokio::io::DuplexStream,
    ) -> u8 {
        let reading = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.map(|_| byte[0])
        });
        tokio::time::sleep(TIMEOUT * 50).await;
        client.write_all(b"G").await.unwrap();
        reading.await.unwrap().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_waits_as_long_as_it_likes() {
        let (mut client, server) = tokio::io::duplex(64);
        let (stream, _phase) = HeadDeadline::new(server, TIMEOUT);
        assert_eq!(byte_after_a_long_idle(stream, &mut client).await, b'G');
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_must_be_parsed_within_the_timeout() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut stream, _phase) = HeadDeadline::new(server, TIMEOUT);
        client.write_all(b"GET / HT").await.unwrap();
        let mut head = [0u8; 64];
        assert_eq!(stream.read(&mut head).await.unwrap(), 8);
        let error = stream.read(&mut head).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    /// hyper may parse a head (and answer it) from what it has read, without reading again:
    /// the deadline armed for that head must not then close the idle connection.
    #[tokio::test(start_paused = true)]
    async fn a_head_answered_without_another_read_leaves_no_deadline_behind() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut stream, phase) = HeadDeadline::new(server, TIMEOUT);
        client
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 25);
        phase.request_started();
        phase.request_answered();
        assert_eq!(byte_after_a_long_idle(stream, &mut client).await, b'G');
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_read_while_a_request_is_handled_has_no_head_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut stream, phase) = HeadDeadline::new(server, TIMEOUT);
        client.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 19);
        phase.request_started();
        let reading = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .await
                .map(|_| (byte[0], stream))
        });
        tokio::time::sleep(TIMEOUT * 5).await;
        client.write_all(b"{").await.unwrap();
        let (byte, mut stream) = reading.await.unwrap().unwrap();
        assert_eq!(byte, b'{');
        // Answered: the next head's first byte starts a deadline again.
        phase.request_answered();
        client.write_all(b"G").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 1);
        let error = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
