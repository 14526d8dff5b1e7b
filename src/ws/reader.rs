//! Strict RFC 6455 reader for the frames clients send.
//!
//! fastwebsockets does the HTTP upgrade, but its frame reader accepts unmasked client frames,
//! keeps a fixed 8 KiB buffer per connection and maps every violation to one error. A push
//! gateway holds tens of thousands of mostly idle connections that only ever send a register
//! frame and pongs, so this reader is pure (bytes in, messages out), owns no socket, keeps no
//! buffer while idle, and names the close code every violation deserves (1002, 1007, 1009).
//! Being pure, it is also what the fuzz target drives.

use super::close::CloseCode;
use super::frame::OpCode;

/// A violation of the protocol by the client, with the close code that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close {code})", code = .code.0)]
pub struct ProtocolViolation {
    pub code: CloseCode,
    pub reason: &'static str,
}

impl ProtocolViolation {
    const fn protocol(reason: &'static str) -> Self {
        Self {
            code: CloseCode::PROTOCOL_ERROR,
            reason,
        }
    }
}

/// A complete message (or control frame) from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message, already checked to be UTF-8.
    Text(String),
    /// A binary message; pushgate has no use for its contents.
    Binary(usize),
    Ping(Vec<u8>),
    Pong,
    /// A close frame: its code (if any) and reason.
    Close(Option<u16>, String),
}

struct Partial {
    opcode: OpCode,
    data: Vec<u8>,
}

/// Turns bytes read from a client socket into messages.
pub struct FrameReader {
    buf: Vec<u8>,
    partial: Option<Partial>,
    max_message: usize,
}

/// Bytes reserved for a read when the buffer holds nothing: enough for a register frame.
const READ_CHUNK: usize = 512;

impl FrameReader {
    /// A reader refusing messages longer than `max_message` bytes (with 1009).
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::new(),
            partial: None,
            max_message,
        }
    }

    /// A reader that starts with bytes already read past the HTTP handshake.
    pub fn with_initial(max_message: usize, initial: Vec<u8>) -> Self {
        let mut reader = Self::new(max_message);
        reader.buf = initial;
        reader
    }

    /// The buffer to read into, with at least some spare capacity.
    pub fn read_buffer(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() - self.buf.len() < 64 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// Appends raw bytes (used by tests and the fuzzer).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Frees the read buffer when it holds nothing, so that an idle connection costs no buffer.
    pub fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
        }
    }

    /// Parses the next complete message from buffered bytes; `Ok(None)` means "read more".
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolViolation> {
        loop {
            let Some((fin, opcode, payload)) = self.next_frame()? else {
                return Ok(None);
            };
            if let Some(message) = self.assemble(fin, opcode, payload)? {
                return Ok(Some(message));
            }
        }
    }

    fn next_frame(&mut self) -> Result<Option<(bool, OpCode, Vec<u8>)>, ProtocolViolation> {
        let buf = &self.buf;
        if buf.len() < 2 {
            return Ok(None);
        }
        let fin = buf[0] & 0x80 != 0;
        if buf[0] & 0x70 != 0 {
            return Err(ProtocolViolation::protocol("reserved bits set"));
        }
        let opcode =
            OpCode::from_u8(buf[0] & 0x0F).ok_or(ProtocolViolation::protocol("unknown opcode"))?;
        if buf[1] & 0x80 == 0 {
            return Err(ProtocolViolation::protocol("unmasked client frame"));
        }
        let (extended, len7) = match buf[1] & 0x7F {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(n as u64)),
        };
        let header = 2 + extended + 4;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolViolation::protocol("fragmented control frame"));
            }
            if len7.is_none() {
                // Over 125 bytes, or 125 or fewer written with a longer length field than
                // needed (RFC 6455 5.2 asks for the shortest): the 7-bit field holds it all.
                return Err(ProtocolViolation::protocol(
                    "control frame length must fit in 7 bits (125 bytes at most)",
                ));
            }
        }
        if buf.len() < header {
            return Ok(None);
        }
        let len = match len7 {
            Some(n) => n,
            None if extended == 2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
            None => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(be);
                if n >> 63 != 0 {
                    return Err(ProtocolViolation::protocol("frame length high bit set"));
                }
                n
            }
        };
        let assembled = self.partial.as_ref().map_or(0, |p| p.data.len()) as u64;
        if !opcode.is_control() && assembled.saturating_add(len) > self.max_message as u64 {
            return Err(ProtocolViolation {
                code: CloseCode::MESSAGE_TOO_BIG,
                reason: "message too big",
            });
        }
        // `len` is bounded by max_message (a usize) or by 125 from here on.
        let len = len as usize;
        if buf.len() < header + len {
            self.buf.reserve(header + len - buf.len());
            return Ok(None);
        }
        let mask = [
            buf[header - 4],
            buf[header - 3],
            buf[header - 2],
            buf[header - 1],
        ];
        let mut payload = self.buf[header..header + len].to_vec();
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        self.buf.drain(..header + len);
        Ok(Some((fin, opcode, payload)))
    }

    fn assemble(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: Vec<u8>,
    ) -> Result<Option<Message>, ProtocolViolation> {
        let (opcode, data) = match opcode {
            OpCode::Ping => return Ok(Some(Message::Ping(payload))),
            OpCode::Pong => return Ok(Some(Message::Pong)),
            OpCode::Close => return close_message(&payload).map(Some),
            OpCode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(ProtocolViolation::protocol("unexpected continuation frame"));
                };
                partial.data.extend_from_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                let Some(Partial { opcode, data }) = self.partial.take() else {
                    return Ok(None);
                };
                (opcode, data)
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(ProtocolViolation::protocol("expected continuation frame"));
                }
                if !fin {
                    self.partial = Some(Partial {
                        opcode,
                        data: payload,
                    });
                    return Ok(None);
                }
                (opcode, payload)
            }
        };
        if opcode == OpCode::Binary {
            return Ok(Some(Message::Binary(data.len())));
        }
        String::from_utf8(data)
            .map(|text| Some(Message::Text(text)))
            .map_err(|_| ProtocolViolation {
                code: CloseCode::INVALID_PAYLOAD,
                reason: "invalid utf-8 in text message",
            })
    }
}

fn close_message(payload: &[u8]) -> Result<Message, ProtocolViolation> {
    match payload.len() {
        0 => Ok(Message::Close(None, String::new())),
        1 => Err(ProtocolViolation::protocol("close frame of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !CloseCode(code).may_be_sent_by_peer() {
                return Err(ProtocolViolation::protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| ProtocolViolation {
                code: CloseCode::INVALID_PAYLOAD,
                reason: "invalid utf-8 in close reason",
            })?;
            Ok(Message::Close(Some(code), reason.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a masked client frame the way a browser would.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let mut out = vec![first];
        match payload.len() {
            0..=125 => out.push(0x80 | payload.len() as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Message>, ProtocolViolation> {
        let mut reader = FrameReader::new(1024);
        reader.feed(bytes);
        let mut out = Vec::new();
        while let Some(message) = reader.next_message()? {
            out.push(message);
        }
        Ok(out)
    }

    #[test]
    fn text_frame_byte_by_byte() {
        let bytes = client_frame(0x81, "héllo".as_bytes());
        let mut reader = FrameReader::new(1024);
        for (i, byte) in bytes.iter().enumerate() {
            reader.feed(&[*byte]);
            let message = reader.next_message().unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(message, None);
            } else {
                assert_eq!(message, Some(Message::Text("héllo".into())));
            }
        }
    }

    #[test]
    fn fragmented_text_with_interleaved_ping() {
        let mut bytes = client_frame(0x01, b"ab");
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x80, b"cd"));
        assert_eq!(
            read_all(&bytes).unwrap(),
            vec![Message::Ping(b"p".to_vec()), Message::Text("abcd".into())]
        );
    }

    #[test]
    fn sixteen_and_sixty_four_bit_lengths() {
        let long = "x".repeat(300);
        assert_eq!(
            read_all(&client_frame(0x81, long.as_bytes())).unwrap(),
            vec![Message::Text(long)]
        );
        let mut reader = FrameReader::new(1 << 20);
        let big = "y".repeat(70_000);
        reader.feed(&client_frame(0x81, big.as_bytes()));
        assert_eq!(reader.next_message().unwrap(), Some(Message::Text(big)));
    }

    fn violation(bytes: &[u8]) -> ProtocolViolation {
        read_all(bytes).unwrap_err()
    }

    #[test]
    fn unmasked_frame_is_a_protocol_error() {
        assert_eq!(violation(b"\x81\x02hi").code, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn reserved_bits_and_unknown_opcodes_are_protocol_errors() {
        assert_eq!(
            violation(&client_frame(0xC1, b"x")).code,
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            violation(&client_frame(0x83, b"x")).code,
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            violation(&client_frame(0x8B, b"x")).code,
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn fragmented_or_long_control_frames_are_protocol_errors() {
        assert_eq!(
            violation(&client_frame(0x09, b"x")).code,
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            violation(&client_frame(0x89, &[0u8; 126])).code,
            CloseCode::PROTOCOL_ERROR
        );
        // A 5-byte ping whose length is written in the 16-bit field: short, but not allowed
        // there, and the reason says so rather than "too long".
        let mut ping = vec![0x89, 0x80 | 126, 0, 5, 0, 0, 0, 0];
        ping.extend_from_slice(b"hello");
        let refused = violation(&ping);
        assert_eq!(refused.code, CloseCode::PROTOCOL_ERROR);
        assert_eq!(
            refused.reason,
            "control frame length must fit in 7 bits (125 bytes at most)"
        );
    }

    #[test]
    fn continuation_without_start_and_start_without_continuation() {
        assert_eq!(
            violation(&client_frame(0x80, b"x")).code,
            CloseCode::PROTOCOL_ERROR
        );
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x81, b"b"));
        assert_eq!(violation(&bytes).code, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn invalid_utf8_is_1007() {
        assert_eq!(
            violation(&client_frame(0x81, &[0xFF, 0xFE])).code,
            CloseCode::INVALID_PAYLOAD
        );
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.push(0xFF);
        assert_eq!(
            violation(&client_frame(0x88, &close)).code,
            CloseCode::INVALID_PAYLOAD
        );
    }

    #[test]
    fn oversized_message_is_1009_before_its_payload_arrives() {
        let mut reader = FrameReader::new(1024);
        let frame = client_frame(0x81, &[b'a'; 2000]);
        reader.feed(&frame[..8]);
        assert_eq!(
            reader.next_message().unwrap_err().code,
            CloseCode::MESSAGE_TOO_BIG
        );
        // Fragments count towards the same limit.
        let mut bytes = client_frame(0x01, &[b'a'; 600]);
        bytes.extend(client_frame(0x80, &[b'a'; 600]));
        assert_eq!(violation(&bytes).code, CloseCode::MESSAGE_TOO_BIG);
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            read_all(&client_frame(0x88, b"")).unwrap(),
            vec![Message::Close(None, String::new())]
        );
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        assert_eq!(
            read_all(&client_frame(0x88, &payload)).unwrap(),
            vec![Message::Close(Some(1000), "bye".into())]
        );
        assert_eq!(
            violation(&client_frame(0x88, b"x")).code,
            CloseCode::PROTOCOL_ERROR
        );
        let bad = 1005u16.to_be_bytes();
        assert_eq!(
            violation(&client_frame(0x88, &bad)).code,
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn binary_is_reported_by_length() {
        assert_eq!(
            read_all(&client_frame(0x82, &[1, 2, 3])).unwrap(),
            vec![Message::Binary(3)]
        );
    }

    #[test]
    fn idle_buffer_is_released() {
        let mut reader = FrameReader::new(1024);
        reader.read_buffer();
        reader.release_idle_buffer();
        assert_eq!(reader.buf.capacity(), 0);
    }
}
