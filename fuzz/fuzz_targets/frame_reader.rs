//! Fuzzes the strict client-frame reader, fed incrementally.
//!
//! Input layout: bytes 0-1 = `max_message` (u16, big-endian); byte 2 = chunking seed (low
//! 5 bits: largest chunk - 1; the rest seeds the chunk-size generator and how bytes are
//! fed); bytes 3.. = the client byte stream.
//!
//! Invariants: no panic; `Text` and `Binary` messages are at most `max_message` bytes; ping
//! payloads at most 125 bytes and close reasons at most 123; violations carry 1002, 1007 or
//! 1009 only; and feeding the stream in chunks (with `release_idle_buffer` and
//! `read_buffer` in between) yields exactly what feeding it all at once yields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate::ws::reader::{FrameReader, Message, ProtocolViolation};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Message(Message),
    Violation(u16, &'static str),
}

/// Drains every complete message; returns true when the reader reported a violation.
fn drain(reader: &mut FrameReader, max_message: usize, out: &mut Vec<Outcome>) -> bool {
    loop {
        match reader.next_message() {
            Ok(Some(message)) => {
                check_message(&message, max_message);
                out.push(Outcome::Message(message));
            }
            Ok(None) => return false,
            Err(ProtocolViolation { code, reason }) => {
                assert!(
                    matches!(code.0, 1002 | 1007 | 1009),
                    "unexpected close code {} ({reason})",
                    code.0
                );
                out.push(Outcome::Violation(code.0, reason));
                return true;
            }
        }
    }
}

fn check_message(message: &Message, max_message: usize) {
    match message {
        Message::Text(text) => assert!(
            text.len() <= max_message,
            "text of {} bytes above max_message {max_message}",
            text.len()
        ),
        Message::Binary(len) => assert!(
            *len <= max_message,
            "binary of {len} bytes above max_message {max_message}"
        ),
        Message::Ping(payload) => assert!(payload.len() <= 125, "ping of {}", payload.len()),
        Message::Close(code, reason) => {
            assert!(reason.len() <= 123, "close reason of {}", reason.len());
            assert!(code.is_some() || reason.is_empty(), "reason without code");
        }
        Message::Pong => {}
    }
}

/// A small xorshift generator for chunk sizes.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max_message = u16::from_be_bytes([data[0], data[1]]) as usize;
    let seed = data[2];
    let stream = &data[3..];

    // All at once.
    let mut whole = Vec::new();
    let mut reader = FrameReader::new(max_message);
    reader.feed(stream);
    drain(&mut reader, max_message, &mut whole);

    // In chunks, mixing the two ways bytes reach the reader and releasing idle buffers.
    let max_chunk = (seed & 0x1F) as u32 + 1;
    let mut rng = Rng(u32::from(seed).wrapping_mul(0x9E37_79B9) | 1);
    let mut chunked = Vec::new();
    let mut reader = FrameReader::new(max_message);
    let mut rest = stream;
    while !rest.is_empty() {
        let r = rng.next();
        let size = ((r % max_chunk) + 1) as usize;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        if r & 0x100 != 0 {
            reader.read_buffer().extend_from_slice(chunk);
        } else {
            reader.feed(chunk);
        }
        if drain(&mut reader, max_message, &mut chunked) {
            break;
        }
        if r & 0x200 != 0 {
            reader.release_idle_buffer();
        }
    }

    assert_eq!(whole, chunked, "chunked feeding changed the outcome");
});
