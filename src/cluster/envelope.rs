//! The three messages nodes exchange, as small binary envelopes.
//!
//! - a **push**: the origin node, the routing key (userID, event) and the already-encoded
//!   WebSocket frame, which receivers hand to their shards verbatim (`Bytes::slice`, no copy,
//!   no re-encoding);
//! - a **reply**: how many connections a node queued a push to;
//! - a **presence**: the buckets a node is subscribed to, as a 4,096-bit bitmap.
//!
//! Binary rather than NATS headers because a userID may hold any character, and header
//! values may not. Every length is checked: a malformed message is an error, never a panic.
//! Integers are big-endian; every envelope starts with a version byte.

use bytes::{BufMut, Bytes, BytesMut};

use super::bucket::BITMAP_WORDS;

const VERSION: u8 = 1;

/// Why a message from NATS was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message truncated")]
    Truncated,
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("routing key is not UTF-8")]
    NotUtf8,
    #[error("payload is not one complete unmasked text frame")]
    BadFrame,
}

/// A push as it travels between nodes.
#[derive(Debug, PartialEq, Eq)]
pub struct Push<'a> {
    pub origin: u64,
    pub user: &'a str,
    pub event: &'a str,
    /// The text frame, ready for the wire.
    pub frame: Bytes,
}

/// Bytes of a push envelope besides its user, event and frame.
const PUSH_HEADER: usize = 17;
/// Bytes of a broadcast envelope besides its event and frame.
const BROADCAST_HEADER: usize = 13;
/// Bytes of a disconnect envelope besides its user and event.
const DISCONNECT_HEADER: usize = 18;

/// Length of [`encode_push`]'s envelope, known before encoding it: NATS refuses a message
/// over its `max_payload`, and a push must be refused before any of it is delivered.
pub fn push_len(user: &str, event: &str, frame_len: usize) -> usize {
    PUSH_HEADER + user.len() + event.len() + frame_len
}

/// Length of [`encode_broadcast`]'s envelope.
pub fn broadcast_len(event: &str, frame_len: usize) -> usize {
    BROADCAST_HEADER + event.len() + frame_len
}

/// Length of [`encode_disconnect`]'s envelope.
pub fn disconnect_len(user: &str, event: Option<&str>) -> usize {
    DISCONNECT_HEADER + user.len() + event.map_or(0, str::len)
}

/// Encodes a push: one copy of the frame into the envelope.
pub fn encode_push(origin: u64, user: &str, event: &str, frame: &Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(push_len(user, event, frame.len()));
    buf.put_u8(VERSION);
    buf.put_u64(origin);
    buf.put_u32(user.len() as u32);
    buf.put_u32(event.len() as u32);
    buf.put_slice(user.as_bytes());
    buf.put_slice(event.as_bytes());
    buf.put_slice(frame);
    buf.freeze()
}

/// Decodes a push; the frame is a slice of `payload` (no copy).
pub fn decode_push(payload: &Bytes) -> Result<Push<'_>, EnvelopeError> {
    let mut reader = Reader::new(payload)?;
    let origin = reader.u64()?;
    let user_len = reader.u32()? as usize;
    let event_len = reader.u32()? as usize;
    let user = reader.str(user_len)?;
    let event = reader.str(event_len)?;
    let frame = payload.slice(reader.at..);
    check_text_frame(&frame)?;
    Ok(Push {
        origin,
        user,
        event,
        frame,
    })
}

/// First byte of a disconnect, where a push has [`VERSION`]: both travel on the user's
/// bucket subject (so a disconnect stays ordered after that node's earlier pushes), and a
/// node that predates disconnects rejects it as an unknown version rather than misreading it.
pub const DISCONNECT: u8 = 0x44;

/// A disconnect as it travels between nodes: receivers build the close frame themselves.
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnect<'a> {
    pub origin: u64,
    pub user: &'a str,
    /// Only the connections registered for this event, when given.
    pub event: Option<&'a str>,
}

/// What arrives on a bucket subject.
#[derive(Debug, PartialEq, Eq)]
pub enum Bucketed<'a> {
    Push(Push<'a>),
    Disconnect(Disconnect<'a>),
}

pub fn encode_disconnect(origin: u64, user: &str, event: Option<&str>) -> Bytes {
    let event_bytes = event.unwrap_or("").as_bytes();
    let mut buf = BytesMut::with_capacity(disconnect_len(user, event));
    buf.put_u8(DISCONNECT);
    buf.put_u64(origin);
    buf.put_u8(u8::from(event.is_some()));
    buf.put_u32(user.len() as u32);
    buf.put_u32(event_bytes.len() as u32);
    buf.put_slice(user.as_bytes());
    buf.put_slice(event_bytes);
    buf.freeze()
}

fn decode_disconnect(payload: &[u8]) -> Result<Disconnect<'_>, EnvelopeError> {
    let mut reader = Reader {
        bytes: payload,
        at: 0,
    };
    if reader.u8()? != DISCONNECT {
        return Err(EnvelopeError::Version(payload[0]));
    }
    let origin = reader.u64()?;
    let has_event = reader.u8()? != 0;
    let user_len = reader.u32()? as usize;
    let event_len = reader.u32()? as usize;
    let user = reader.str(user_len)?;
    let event = reader.str(event_len)?;
    if reader.at != payload.len() {
        return Err(EnvelopeError::Truncated);
    }
    Ok(Disconnect {
        origin,
        user,
        event: has_event.then_some(event),
    })
}

/// Decodes a message from a bucket subject: a push or a disconnect.
pub fn decode_bucketed(payload: &Bytes) -> Result<Bucketed<'_>, EnvelopeError> {
    match payload.first() {
        Some(&DISCONNECT) => decode_disconnect(payload).map(Bucketed::Disconnect),
        _ => decode_push(payload).map(Bucketed::Push),
    }
}

/// A broadcast as it travels between nodes: every node delivers the frame verbatim to its
/// connections registered for `event`.
#[derive(Debug, PartialEq, Eq)]
pub struct Broadcast<'a> {
    pub origin: u64,
    pub event: &'a str,
    pub frame: Bytes,
}

pub fn encode_broadcast(origin: u64, event: &str, frame: &Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(broadcast_len(event, frame.len()));
    buf.put_u8(VERSION);
    buf.put_u64(origin);
    buf.put_u32(event.len() as u32);
    buf.put_slice(event.as_bytes());
    buf.put_slice(frame);
    buf.freeze()
}

/// Decodes a broadcast; the frame is a slice of `payload` (no copy).
pub fn decode_broadcast(payload: &Bytes) -> Result<Broadcast<'_>, EnvelopeError> {
    let mut reader = Reader::new(payload)?;
    let origin = reader.u64()?;
    let event_len = reader.u32()? as usize;
    let event = reader.str(event_len)?;
    let frame = payload.slice(reader.at..);
    check_text_frame(&frame)?;
    Ok(Broadcast {
        origin,
        event,
        frame,
    })
}

/// Checks that `frame` is exactly one unfragmented, unmasked text frame with a non-empty
/// UTF-8 payload, as a node encodes every push it accepts: forwarded bytes go to browsers
/// as they are, and a browser closes the connection on a text frame that is not UTF-8.
fn check_text_frame(frame: &[u8]) -> Result<(), EnvelopeError> {
    let (&first, rest) = frame.split_first().ok_or(EnvelopeError::BadFrame)?;
    let (&second, rest) = rest.split_first().ok_or(EnvelopeError::BadFrame)?;
    if first != 0x81 || second & 0x80 != 0 {
        return Err(EnvelopeError::BadFrame);
    }
    let (len, payload) = match second {
        126 => {
            let (len, payload) = rest.split_at_checked(2).ok_or(EnvelopeError::BadFrame)?;
            (u16::from_be_bytes([len[0], len[1]]) as u64, payload)
        }
        127 => {
            let (len, payload) = rest.split_at_checked(8).ok_or(EnvelopeError::BadFrame)?;
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(len);
            (u64::from_be_bytes(bytes), payload)
        }
        len => (u64::from(len), rest),
    };
    if payload.len() as u64 != len || payload.is_empty() || std::str::from_utf8(payload).is_err() {
        return Err(EnvelopeError::BadFrame);
    }
    Ok(())
}

/// A node's answer to a push: how many connections it queued the frame to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub node: u64,
    pub sent: u32,
    /// The node could not hand the push to its shard (overloaded or stopping): `sent` is
    /// then 0 and the total is not exact.
    pub refused: bool,
}

pub fn encode_reply(reply: Reply) -> Bytes {
    let mut buf = BytesMut::with_capacity(14);
    buf.put_u8(VERSION);
    buf.put_u64(reply.node);
    buf.put_u32(reply.sent);
    buf.put_u8(u8::from(reply.refused));
    buf.freeze()
}

pub fn decode_reply(payload: &[u8]) -> Result<Reply, EnvelopeError> {
    let mut reader = Reader::new(payload)?;
    Ok(Reply {
        node: reader.u64()?,
        sent: reader.u32()?,
        refused: reader.u8()? != 0,
    })
}

/// A node's announcement of the buckets it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub node: u64,
    /// The sender just (re)connected: every node should announce itself now rather than at
    /// its next heartbeat.
    pub hello: bool,
    /// The sender is leaving (shutdown): forget it at once.
    pub leaving: bool,
    pub buckets: [u64; BITMAP_WORDS],
}

pub fn encode_presence(presence: &Presence) -> Bytes {
    let mut buf = BytesMut::with_capacity(10 + BITMAP_WORDS * 8);
    buf.put_u8(VERSION);
    buf.put_u8(u8::from(presence.hello) | u8::from(presence.leaving) << 1);
    buf.put_u64(presence.node);
    for word in presence.buckets {
        buf.put_u64(word);
    }
    buf.freeze()
}

pub fn decode_presence(payload: &[u8]) -> Result<Presence, EnvelopeError> {
    let mut reader = Reader::new(payload)?;
    let flags = reader.u8()?;
    let node = reader.u64()?;
    let mut buckets = [0u64; BITMAP_WORDS];
    for word in &mut buckets {
        *word = reader.u64()?;
    }
    Ok(Presence {
        node,
        hello: flags & 1 != 0,
        leaving: flags & 2 != 0,
        buckets,
    })
}

/// Bounds-checked big-endian reads.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut reader = Self { bytes, at: 0 };
        match reader.u8()? {
            VERSION => Ok(reader),
            other => Err(EnvelopeError::Version(other)),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self.at.checked_add(len).ok_or(EnvelopeError::Truncated)?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(EnvelopeError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn str(&mut self, len: usize) -> Result<&'a str, EnvelopeError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| EnvelopeError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame;

    #[test]
    fn a_push_round_trips_and_its_frame_is_not_copied() {
        for message in ["hello", &"x".repeat(300), &"y".repeat(70_000)] {
            let text = frame::text(message);
            let payload = encode_push(7, "user.with *>", "alarm", &text);
            let push = decode_push(&payload).unwrap();
            assert_eq!(
                (push.origin, push.user, push.event),
                (7, "user.with *>", "alarm")
            );
            assert_eq!(push.frame, text);
            // A slice of the received buffer, not a copy.
            assert!(payload.as_ptr_range().contains(&push.frame.as_ptr()));
        }
    }

    #[test]
    fn every_envelope_is_as_long_as_announced_before_encoding() {
        for (user, event, message) in [
            ("", "", ""),
            ("u", "alarm", "hi"),
            ("ü", "é", &*"x".repeat(70_000)),
        ] {
            let text = frame::text(message);
            assert_eq!(
                encode_push(7, user, event, &text).len(),
                push_len(user, event, text.len())
            );
            assert_eq!(
                encode_broadcast(7, event, &text).len(),
                broadcast_len(event, text.len())
            );
            for filter in [None, Some(event)] {
                assert_eq!(
                    encode_disconnect(7, user, filter).len(),
                    disconnect_len(user, filter)
                );
            }
        }
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let good = encode_push(1, "u", "e", &frame::text("m"));
        for cut in 0..good.len() {
            assert!(decode_push(&good.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut longer = good.to_vec();
        longer.push(b'!');
        assert_eq!(
            decode_push(&Bytes::from(longer)),
            Err(EnvelopeError::BadFrame)
        );
        let mut huge_len = good.to_vec();
        huge_len[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_push(&Bytes::from(huge_len)),
            Err(EnvelopeError::Truncated)
        );
        let binary = encode_push(1, "u", "e", &frame::ping(b"m"));
        assert_eq!(decode_push(&binary), Err(EnvelopeError::BadFrame));
        // Text frames no node sends: a payload that is not UTF-8 (a browser would close on
        // it), an empty one (every push endpoint refuses an empty message).
        for payload in [&b"\xff\xfebad"[..], b""] {
            let mut text = vec![0x81, payload.len() as u8];
            text.extend_from_slice(payload);
            let forged = encode_push(1, "u", "e", &Bytes::from(text));
            assert_eq!(
                decode_push(&forged),
                Err(EnvelopeError::BadFrame),
                "{payload:?}"
            );
        }
        assert_eq!(decode_reply(&[2, 0]), Err(EnvelopeError::Version(2)));
        assert_eq!(decode_presence(&[]), Err(EnvelopeError::Truncated));
    }

    #[test]
    fn disconnects_and_broadcasts_round_trip() {
        for event in [None, Some(""), Some("alarm")] {
            let payload = encode_disconnect(3, "u.*>", event);
            let expected = Disconnect {
                origin: 3,
                user: "u.*>",
                event,
            };
            assert_eq!(
                decode_bucketed(&payload),
                Ok(Bucketed::Disconnect(expected))
            );
            for cut in 0..payload.len() {
                assert!(decode_bucketed(&payload.slice(..cut)).is_err(), "cut {cut}");
            }
        }
        let push = encode_push(1, "u", "e", &frame::text("m"));
        assert!(matches!(decode_bucketed(&push), Ok(Bucketed::Push(_))));
        let text = frame::text("to everyone");
        let payload = encode_broadcast(4, "news", &text);
        let broadcast = decode_broadcast(&payload).unwrap();
        assert_eq!((broadcast.origin, broadcast.event), (4, "news"));
        assert_eq!(broadcast.frame, text);
        assert!(payload.as_ptr_range().contains(&broadcast.frame.as_ptr()));
        for cut in 0..payload.len() {
            assert!(
                decode_broadcast(&payload.slice(..cut)).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn replies_and_presence_round_trip() {
        let reply = Reply {
            node: 9,
            sent: 3,
            refused: true,
        };
        assert_eq!(decode_reply(&encode_reply(reply)), Ok(reply));
        let mut buckets = [0u64; BITMAP_WORDS];
        buckets[3] = 0b101;
        let presence = Presence {
            node: 5,
            hello: true,
            leaving: false,
            buckets,
        };
        assert_eq!(decode_presence(&encode_presence(&presence)), Ok(presence));
    }
}
