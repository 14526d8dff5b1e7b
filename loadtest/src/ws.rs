//! A deliberately small WebSocket client (RFC 6455).
//!
//! The load generator holds up to ~20,000 connections and reads every pushed
//! frame on the same machine as the server, so the read path is hand-written:
//! one reusable buffer per connection, frames parsed in place, no allocation
//! per frame and one clock read per `read()` call. Only what a push client
//! needs is implemented: the upgrade handshake, masked client frames
//! (registration, pong, close), and unmasked server frames, including
//! fragmented messages, ping and close.

use std::sync::Arc;

use anyhow::{bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clock;
use crate::net::find;
use crate::sink::Shared;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Initial per-connection read buffer; grows for larger frames.
const READ_BUF: usize = 4096;

/// xorshift64*: cheap randomness for handshake keys and frame masks.
pub fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Encode one masked client frame (FIN set).
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 14);
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    f
}

fn mask_from(rng: &mut u64) -> [u8; 4] {
    (next_rand(rng) as u32).to_ne_bytes()
}

/// An established, registered client connection ready for [`read_loop`].
pub struct WsConn {
    pub stream: TcpStream,
    /// Read buffer; `buf[..filled]` holds bytes received after the
    /// handshake response.
    pub buf: Vec<u8>,
    pub filled: usize,
    pub rng: u64,
}

/// Perform the upgrade handshake on `stream`, then send the registration
/// text frame.
pub async fn open(
    mut stream: TcpStream,
    host_header: &str,
    path: &str,
    registration: &[u8],
    mut rng: u64,
) -> Result<WsConn> {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&next_rand(&mut rng).to_ne_bytes());
    key[8..].copy_from_slice(&next_rand(&mut rng).to_ne_bytes());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        STANDARD.encode(key)
    );
    stream.write_all(req.as_bytes()).await?;

    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0;
    let head_end = loop {
        if let Some(p) = find(&buf[..filled], b"\r\n\r\n") {
            break p + 4;
        }
        if filled == buf.len() {
            if buf.len() >= 64 * 1024 {
                bail!("handshake response headers too large");
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            bail!("connection closed during the WebSocket handshake");
        }
        filled += n;
    };
    let status_line = buf[..head_end]
        .split(|&b| b == b'\r')
        .next()
        .unwrap_or_default();
    if !(status_line.starts_with(b"HTTP/1.1 101") || status_line.starts_with(b"HTTP/1.0 101")) {
        bail!(
            "WebSocket upgrade refused: {:?}",
            String::from_utf8_lossy(status_line)
        );
    }
    buf.copy_within(head_end..filled, 0);
    filled -= head_end;

    let frame = client_frame(OP_TEXT, registration, mask_from(&mut rng));
    stream.write_all(&frame).await?;
    Ok(WsConn {
        stream,
        buf,
        filled,
        rng,
    })
}

/// Why a read loop ended.
#[derive(Debug)]
pub enum End {
    /// Server sent a close frame.
    Closed,
    /// TCP EOF without a close frame.
    Eof,
    Error,
}

/// Read frames until the connection ends, handing every complete data
/// message to `shared.on_message`.
pub async fn read_loop(conn: WsConn, idx: usize, shared: Arc<Shared>) -> End {
    let WsConn {
        mut stream,
        mut buf,
        mut filled,
        mut rng,
    } = conn;
    let mut pos = 0usize;
    let mut frag: Vec<u8> = Vec::new();
    let mut now = clock::now();
    loop {
        // Parse every complete frame in buf[pos..filled].
        let need;
        loop {
            let avail = &buf[pos..filled];
            if avail.len() < 2 {
                need = 2;
                break;
            }
            let b0 = avail[0];
            let b1 = avail[1];
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0F;
            let masked = b1 & 0x80 != 0;
            let (hlen, plen) = match b1 & 0x7F {
                126 => {
                    if avail.len() < 4 {
                        need = 4;
                        break;
                    }
                    (4, u16::from_be_bytes([avail[2], avail[3]]) as usize)
                }
                127 => {
                    if avail.len() < 10 {
                        need = 10;
                        break;
                    }
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&avail[2..10]);
                    let l = u64::from_be_bytes(l);
                    if l > (64 << 20) {
                        return End::Error; // refuse absurd frames
                    }
                    (10, l as usize)
                }
                n => (2, n as usize),
            };
            let mlen = if masked { 4 } else { 0 };
            let total = hlen + mlen + plen;
            if avail.len() < total {
                need = total;
                break;
            }
            let start = pos + hlen + mlen;
            if masked {
                // Servers must not mask, but tolerate it.
                let mask = [
                    buf[pos + hlen],
                    buf[pos + hlen + 1],
                    buf[pos + hlen + 2],
                    buf[pos + hlen + 3],
                ];
                for (i, b) in buf[start..start + plen].iter_mut().enumerate() {
                    *b ^= mask[i & 3];
                }
            }
            let payload = &buf[start..start + plen];
            pos += total;
            match opcode {
                OP_TEXT | OP_BINARY => {
                    if fin {
                        shared.on_message(idx, payload, now);
                    } else {
                        frag.clear();
                        frag.extend_from_slice(payload);
                    }
                }
                OP_CONT => {
                    frag.extend_from_slice(payload);
                    if fin {
                        shared.on_message(idx, &frag, now);
                        frag.clear();
                    }
                }
                OP_PING => {
                    let pong = client_frame(OP_PONG, payload, mask_from(&mut rng));
                    if stream.write_all(&pong).await.is_err() {
                        return End::Error;
                    }
                }
                OP_PONG => {}
                OP_CLOSE => {
                    let code = if plen >= 2 { &payload[..2] } else { &[][..] };
                    let reply = client_frame(OP_CLOSE, code, mask_from(&mut rng));
                    let _ = stream.write_all(&reply).await;
                    return End::Closed;
                }
                _ => return End::Error,
            }
        }
        // Make room: drop consumed bytes, grow for a large frame.
        if pos == filled {
            pos = 0;
            filled = 0;
        } else if pos > 0 && (pos + need > buf.len() || buf.len() - filled < 512) {
            buf.copy_within(pos..filled, 0);
            filled -= pos;
            pos = 0;
        }
        if pos + need > buf.len() {
            buf.resize((pos + need).next_power_of_two(), 0);
        }
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => return End::Eof,
            Ok(n) => {
                filled += n;
                now = clock::now();
            }
            Err(_) => return End::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read one masked client frame; returns (opcode, unmasked payload).
    async fn read_client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        assert!(h[1] & 0x80 != 0, "client frames must be masked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await.unwrap();
                u16::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut mask = [0u8; 4];
        s.read_exact(&mut mask).await.unwrap();
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).await.unwrap();
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        (h[0] & 0x0F, p)
    }

    #[tokio::test]
    async fn handshake_and_read_loop_against_fake_server() {
        use crate::sink::{LoadSink, Sink};
        use std::sync::atomic::Ordering::Relaxed;

        crate::clock::init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).await.unwrap();
                req.push(b[0]);
            }
            let req = String::from_utf8(req).unwrap();
            assert!(req.starts_with("GET /ws HTTP/1.1\r\n"));
            // RFC 6455 4.1: the key is a random 16-byte nonce, base64-encoded.
            let key = req
                .split("\r\n")
                .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
                .expect("a Sec-WebSocket-Key header");
            assert_eq!(STANDARD.decode(key).unwrap().len(), 16, "{key}");
            // 101 and a ping in the same segment.
            let mut out =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            out.extend_from_slice(&[0x89, 2, b'h', b'i']);
            s.write_all(&out).await.unwrap();
            let (op, reg) = read_client_frame(&mut s).await;
            assert_eq!(
                (op, reg.as_slice()),
                (OP_TEXT, &b"{\"token\":\"u\",\"event\":\"e\"}"[..])
            );
            let (op, pong) = read_client_frame(&mut s).await;
            assert_eq!((op, pong.as_slice()), (OP_PONG, &b"hi"[..]));
            // A fragmented warm-up message, then a 300-byte data message
            // (16-bit length), split across writes.
            let mut out = vec![0x01, 5];
            out.extend_from_slice(b"{\"w\":");
            out.extend_from_slice(&[0x80, 2, b'7', b'}']);
            let mut msg = b"{\"s\":1,\"t\":5,\"p\":\"".to_vec();
            msg.resize(299, b'x');
            msg.push(b'}');
            out.extend_from_slice(&[0x81, 126, 1, 44]);
            out.extend_from_slice(&msg);
            let (a, b) = out.split_at(20);
            s.write_all(a).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(b).await.unwrap();
            s.write_all(&[0x88, 2, 0x03, 0xE8]).await.unwrap();
            let (op, code) = read_client_frame(&mut s).await;
            assert_eq!((op, code.as_slice()), (OP_CLOSE, &[0x03, 0xE8][..]));
        });

        let stream = TcpStream::connect(addr).await.unwrap();
        let host = addr.to_string();
        let conn = open(
            stream,
            &host,
            "/ws",
            b"{\"token\":\"u\",\"event\":\"e\"}",
            42,
        )
        .await
        .unwrap();
        let shared = Arc::new(Shared::new(1, Sink::Load(LoadSink::new(1))));
        shared.load().set_window(0, u64::MAX);
        let end = read_loop(conn, 0, shared.clone()).await;
        assert!(matches!(end, End::Closed), "{end:?}");
        server.await.unwrap();
        assert_eq!(shared.warm[0].load(Relaxed), 7);
        let (h, outside, unknown) = shared.load().merged();
        assert_eq!((h.len(), outside, unknown), (1, 0, 0));
    }

    #[test]
    fn frames_are_masked() {
        let f = client_frame(OP_TEXT, b"hi", [1, 2, 3, 4]);
        assert_eq!(f, vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        let big = vec![b'a'; 300];
        let f = client_frame(OP_TEXT, &big, [0; 4]);
        assert_eq!(&f[..4], &[0x81, 0x80 | 126, 1, 44]);
        assert_eq!(f.len(), 4 + 4 + 300);
    }
}
