//! Server-to-client frame encoding, done once per push.
//!
//! Server frames are never masked (RFC 6455 §5.1), so the bytes of one frame are valid on
//! every connection: the push path builds them once into a [`Bytes`] and hands each matching
//! connection a refcount clone. The header is written in front of the payload inside one
//! allocation, so a push costs one allocation and one copy of the message, whatever its fan-out.

use bytes::{BufMut, Bytes, BytesMut};

/// Largest header a server frame needs: FIN/opcode byte, length byte, 64-bit extended length.
pub const MAX_HEADER_LEN: usize = 10;

/// WebSocket opcodes the server writes or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// Maps the low nibble of a frame's first byte; `None` for the reserved opcodes.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// Control frames may not be fragmented and carry at most 125 bytes.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Length of the header for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

fn put_header(buf: &mut BytesMut, opcode: OpCode, len: usize) {
    buf.put_u8(0x80 | opcode as u8);
    match len {
        0..=125 => buf.put_u8(len as u8),
        126..=0xFFFF => {
            buf.put_u8(126);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(len as u64);
        }
    }
}

/// Encodes one complete, unfragmented, unmasked frame.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut buf, opcode, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// Encodes a text frame: the frame every push delivers.
pub fn text(payload: &str) -> Bytes {
    encode(OpCode::Text, payload.as_bytes())
}

/// Encodes a close frame with a status code and a short reason (truncated to fit 125 bytes
/// on a character boundary).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

/// Encodes a ping frame carrying `payload` (at most 125 bytes by the caller's contract).
pub fn ping(payload: &[u8]) -> Bytes {
    encode(OpCode::Ping, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_bit_length() {
        let frame = text("hello");
        assert_eq!(&frame[..], b"\x81\x05hello");
        let frame = text(&"a".repeat(125));
        assert_eq!(&frame[..2], &[0x81, 125]);
        assert_eq!(frame.len(), 127);
    }

    #[test]
    fn sixteen_bit_length() {
        let frame = text(&"a".repeat(126));
        assert_eq!(&frame[..4], &[0x81, 126, 0, 126]);
        let frame = text(&"b".repeat(65_535));
        assert_eq!(&frame[..4], &[0x81, 126, 0xFF, 0xFF]);
        assert_eq!(frame.len(), 4 + 65_535);
    }

    #[test]
    fn sixty_four_bit_length() {
        let frame = text(&"c".repeat(65_536));
        assert_eq!(&frame[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(frame.len(), 10 + 65_536);
    }

    #[test]
    fn close_reason_is_truncated_on_a_char_boundary() {
        let frame = close(1001, &"é".repeat(100));
        assert_eq!(frame[0], 0x88);
        let len = frame[1] as usize;
        assert!(len <= 125);
        assert_eq!(&frame[2..4], &1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn control_opcodes() {
        assert!(OpCode::Ping.is_control());
        assert!(OpCode::Close.is_control());
        assert!(!OpCode::Text.is_control());
        assert_eq!(OpCode::from_u8(0x3), None);
        assert_eq!(OpCode::from_u8(0xB), None);
    }
}
