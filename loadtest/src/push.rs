//! Keep-alive HTTP/1.1 push client: a hand-written request writer and a
//! small response parser (status line, Content-Length or chunked body).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{find, parse_u64, tcp_connect};

pub struct PushTarget {
    pub addr: SocketAddr,
    /// Request line and fixed headers, up to and including `Content-Length: `.
    pub head: Vec<u8>,
    pub source_ips: Vec<IpAddr>,
    /// Longest a push may wait for its reply (connecting included) before it counts as
    /// failed, so that a server that stops answering cannot hold a run past its bounds.
    pub request_timeout: Duration,
}

impl PushTarget {
    pub fn new(
        addr: SocketAddr,
        host_header: &str,
        path: &str,
        key: Option<&str>,
        source_ips: Vec<IpAddr>,
        request_timeout: Duration,
    ) -> Self {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n"
        );
        if let Some(k) = key {
            head.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        head.push_str("Content-Length: ");
        PushTarget {
            addr,
            head: head.into_bytes(),
            source_ips,
            request_timeout,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// N from a `message sent to N clients` body.
    pub delivered: Option<u64>,
}

pub struct Pusher {
    target: Arc<PushTarget>,
    id: usize,
    stream: Option<TcpStream>,
    /// The JSON body of the next request; fill it, then call [`Pusher::send`].
    pub body: Vec<u8>,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    rlen: usize,
    pub connects: u64,
}

impl Pusher {
    pub fn new(target: Arc<PushTarget>, id: usize) -> Self {
        Pusher {
            target,
            id,
            stream: None,
            body: Vec::with_capacity(512),
            out: Vec::with_capacity(1024),
            rbuf: vec![0; 4096],
            rlen: 0,
            connects: 0,
        }
    }

    pub async fn connect(&mut self) -> io::Result<()> {
        let src = if self.target.source_ips.is_empty() {
            None
        } else {
            Some(self.target.source_ips[self.id % self.target.source_ips.len()])
        };
        self.stream = Some(tcp_connect(self.target.addr, src).await?);
        self.rlen = 0;
        self.connects += 1;
        Ok(())
    }

    /// POST the current body and wait for the reply. A reused keep-alive
    /// connection that turns out to be closed is reopened once.
    /// Sends `body` and reads the reply, within the target's request timeout.
    pub async fn send(&mut self) -> io::Result<Reply> {
        self.send_within(self.target.request_timeout).await
    }

    /// [`Pusher::send`] with a tighter bound (the end of a run's drain). A push unanswered
    /// in time fails with [`io::ErrorKind::TimedOut`] and its connection is dropped.
    pub async fn send_within(&mut self, limit: Duration) -> io::Result<Reply> {
        let limit = limit.min(self.target.request_timeout);
        match tokio::time::timeout(limit, self.send_unbounded()).await {
            Ok(result) => result,
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply within {limit:?}"),
                ))
            }
        }
    }

    async fn send_unbounded(&mut self) -> io::Result<Reply> {
        self.out.clear();
        self.out.extend_from_slice(&self.target.head);
        write!(self.out, "{}\r\n\r\n", self.body.len())?;
        self.out.extend_from_slice(&self.body);
        let mut retried = false;
        loop {
            let fresh = self.stream.is_none();
            if fresh {
                self.connect().await?;
            }
            let stream = self.stream.as_mut().expect("connected");
            let res = match stream.write_all(&self.out).await {
                Ok(()) => read_response(stream, &mut self.rbuf, &mut self.rlen).await,
                Err(e) => Err(e),
            };
            match res {
                Ok((reply, keep_alive)) => {
                    if !keep_alive {
                        self.stream = None;
                    }
                    return Ok(reply);
                }
                Err(e) => {
                    self.stream = None;
                    let stale = matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                    );
                    if !fresh && !retried && stale {
                        retried = true;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>, len: &mut usize) -> io::Result<()> {
    if *len == buf.len() {
        if buf.len() >= 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response too large",
            ));
        }
        buf.resize(buf.len() * 2, 0);
    }
    let n = s.read(&mut buf[*len..]).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    *len += n;
    Ok(())
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Read one response; returns it and whether the connection stays open.
async fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: &mut usize,
) -> io::Result<(Reply, bool)> {
    let head_end = loop {
        if let Some(p) = find(&buf[..*len], b"\r\n\r\n") {
            break p + 4;
        }
        read_more(s, buf, len).await?;
    };
    let head = &buf[..head_end - 4];
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with(b"HTTP/1.") || status_line.len() < 12 {
        return Err(bad("malformed status line"));
    }
    let http10 = status_line.starts_with(b"HTTP/1.0");
    let status = parse_u64(&status_line[9..])
        .map(|(v, _)| v as u16)
        .ok_or_else(|| bad("malformed status code"))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_ascii_lowercase();
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = Some(value.parse().map_err(|_| bad("bad content-length"))?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.contains("chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }

    let mut body: Vec<u8> = Vec::new();
    let consumed;
    if chunked {
        let mut pos = head_end;
        loop {
            let line_end = loop {
                if let Some(p) = find(&buf[pos..*len], b"\r\n") {
                    break pos + p;
                }
                read_more(s, buf, len).await?;
            };
            let size_str = String::from_utf8_lossy(&buf[pos..line_end]).to_string();
            let size_str = size_str.split(';').next().unwrap_or("").trim().to_string();
            let size = usize::from_str_radix(&size_str, 16).map_err(|_| bad("bad chunk size"))?;
            let data = line_end + 2;
            if size == 0 {
                // Optional trailers, then an empty line.
                let end = loop {
                    if *len >= data + 2 && &buf[data..data + 2] == b"\r\n" {
                        break data + 2;
                    }
                    if let Some(p) = find(&buf[data..*len], b"\r\n\r\n") {
                        break data + p + 4;
                    }
                    read_more(s, buf, len).await?;
                };
                consumed = end;
                break;
            }
            while *len < data + size + 2 {
                read_more(s, buf, len).await?;
            }
            body.extend_from_slice(&buf[data..data + size]);
            pos = data + size + 2;
        }
    } else if let Some(cl) = content_length {
        while *len < head_end + cl {
            read_more(s, buf, len).await?;
        }
        body.extend_from_slice(&buf[head_end..head_end + cl]);
        consumed = head_end + cl;
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        consumed = head_end;
    } else {
        // Body delimited by connection close.
        loop {
            match read_more(s, buf, len).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        body.extend_from_slice(&buf[head_end..*len]);
        consumed = *len;
        keep_alive = false;
    }
    buf.copy_within(consumed..*len, 0);
    *len -= consumed;
    Ok((
        Reply {
            status,
            delivered: parse_sent_count(&body),
        },
        keep_alive,
    ))
}

/// N from `message sent to N clients`.
pub fn parse_sent_count(body: &[u8]) -> Option<u64> {
    let p = find(body, b"sent to ")?;
    parse_u64(&body[p + 8..]).map(|(n, _)| n)
}

/// Append a push body: `{"userId":U,"event":E,"message":"` + message + `"}`.
/// `user_json` and `event_json` are already JSON string literals (quoted);
/// `message` writes the *escaped* message text.
pub fn write_body(
    out: &mut Vec<u8>,
    user_json: &str,
    event_json: &str,
    message: impl FnOnce(&mut Vec<u8>),
) {
    out.clear();
    out.extend_from_slice(b"{\"userId\":");
    out.extend_from_slice(user_json.as_bytes());
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(event_json.as_bytes());
    out.extend_from_slice(b",\"message\":\"");
    message(out);
    out.extend_from_slice(b"\"}");
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Write the JSON-escaped form of the data message
/// `{"s":SEQ,"t":T,"p":"xxx…"}`, padded so that the *delivered* (unescaped)
/// message is `size` bytes; messages shorter than the minimum form
/// `{"s":SEQ,"t":T}` are not padded.
pub fn write_data_message(out: &mut Vec<u8>, seq: u64, t: u64, size: usize) {
    // Unescaped length without padding: {"s": + seq + ,"t": + t + }
    let base = 5 + digits(seq) + 5 + digits(t) + 1;
    let _ = write!(out, "{{\\\"s\\\":{seq},\\\"t\\\":{t}");
    if size >= base + 7 {
        // ,"p":"  + pad + "
        out.extend_from_slice(b",\\\"p\\\":\\\"");
        out.resize(out.len() + (size - base - 7), b'x');
        out.extend_from_slice(b"\\\"");
    }
    out.push(b'}');
}

/// Write the JSON-escaped warm-up message `{"w":ROUND}`.
pub fn write_warm_message(out: &mut Vec<u8>, round: u32) {
    let _ = write!(out, "{{\\\"w\\\":{round}}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_message_has_requested_size() {
        for size in [0usize, 10, 30, 31, 32, 64, 200, 4096] {
            let mut esc = Vec::new();
            write_data_message(&mut esc, 12345, 987654321, size);
            let json = format!("\"{}\"", String::from_utf8(esc).unwrap());
            let msg: String = serde_json::from_str(&json).unwrap();
            let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
            assert_eq!(v["s"], 12345);
            assert_eq!(v["t"], 987654321u64);
            // The unpadded form is 25 bytes here; padding needs 7 more.
            if size >= 32 {
                assert_eq!(msg.len(), size, "size {size}: {msg}");
            } else {
                assert_eq!(msg.len(), 25);
            }
            assert_eq!(
                crate::sink::parse_data(msg.as_bytes()),
                Some((12345, 987654321))
            );
        }
    }

    #[test]
    fn body_is_valid_json() {
        let mut b = Vec::new();
        write_body(&mut b, "\"u\\\"1\"", "\"lt\"", |o| write_warm_message(o, 7));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["userId"], "u\"1");
        assert_eq!(v["message"], "{\"w\":7}");
    }

    #[tokio::test]
    async fn pusher_handles_keep_alive_chunked_and_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let replies: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\ncontent-length: 26\r\n\r\nmessage sent to 3 clients!",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nmessage \r\n11\r\nsent to 12 client\r\n1\r\ns\r\n0\r\n\r\n",
                b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            ];
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for reply in replies {
                let mut got = Vec::new();
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if let Some(p) = find(&got, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..p]).to_string();
                        assert!(head.contains("Authorization: Bearer k"));
                        let cl: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if got.len() >= p + 4 + cl {
                            break;
                        }
                    }
                }
                s.write_all(reply).await.unwrap();
            }
            // The pusher must reconnect after `Connection: close`.
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 20\r\n\r\nrequest data illegal",
            )
            .await
            .unwrap();
        });
        let target = Arc::new(PushTarget::new(
            addr,
            "h",
            "/push",
            Some("k"),
            Vec::new(),
            Duration::from_secs(10),
        ));
        let mut p = Pusher::new(target, 0);
        let mut statuses = Vec::new();
        for _ in 0..4 {
            write_body(&mut p.body, "\"u\"", "\"e\"", |o| {
                write_data_message(o, 1, 2, 64)
            });
            let r = p.send().await.unwrap();
            statuses.push((r.status, r.delivered));
        }
        server.await.unwrap();
        assert_eq!(
            statuses,
            vec![(200, Some(3)), (200, Some(12)), (503, None), (400, None)]
        );
        assert_eq!(p.connects, 2);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_fails_the_push_in_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts every connection and never answers; holds the sockets until the test ends.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let target = Arc::new(PushTarget::new(
            addr,
            "h",
            "/push",
            None,
            Vec::new(),
            Duration::from_millis(200),
        ));
        let mut p = Pusher::new(target, 0);
        write_body(&mut p.body, "\"u\"", "\"e\"", |o| {
            write_data_message(o, 1, 2, 64)
        });
        let error = p.send().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let error = p.send_within(Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(error.to_string(), "no reply within 50ms");
        server.abort();
    }

    #[test]
    fn parses_count() {
        assert_eq!(parse_sent_count(b"message sent to 12 clients"), Some(12));
        assert_eq!(parse_sent_count(b"request data illegal"), None);
    }
}
