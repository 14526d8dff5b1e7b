//! pushgate's once-per-push frame encoder, checked against an independent implementation's
//! parser (tungstenite, the client most Rust services use) for every length form.

use std::io::Cursor;

use pushgate::ws::frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

fn parse(bytes: &[u8]) -> (FrameHeader, u64, usize) {
    let mut cursor = Cursor::new(bytes);
    let (header, len) = FrameHeader::parse(&mut cursor)
        .expect("valid header")
        .expect("complete header");
    (header, len, cursor.position() as usize)
}

#[test]
fn every_length_form_parses_as_one_final_unmasked_text_frame() {
    // 7-bit: 0..=125; 16-bit: 126..=65535; 64-bit: 65536 and up.
    for (len, header_len) in [
        (0, 2),
        (1, 2),
        (125, 2),
        (126, 4),
        (1000, 4),
        (65_535, 4),
        (65_536, 10),
        (1 << 20, 10),
    ] {
        let message: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let encoded = frame::text(&message);
        let (header, payload_len, consumed) = parse(&encoded);
        assert!(header.is_final, "{len}");
        assert_eq!(header.opcode, OpCode::Data(Data::Text), "{len}");
        assert_eq!(header.mask, None, "server frames are unmasked");
        assert!(!header.rsv1 && !header.rsv2 && !header.rsv3);
        assert_eq!(payload_len, len as u64);
        assert_eq!(consumed, header_len, "{len}");
        assert_eq!(&encoded[consumed..], message.as_bytes());
    }
}

#[test]
fn close_frames_parse_with_their_code() {
    let encoded = frame::close(4001, "slow consumer");
    let (header, len, consumed) = parse(&encoded);
    assert_eq!(
        header.opcode,
        OpCode::Control(tokio_tungstenite::tungstenite::protocol::frame::coding::Control::Close,)
    );
    assert_eq!(len as usize, 2 + "slow consumer".len());
    assert_eq!(&encoded[consumed..consumed + 2], &4001u16.to_be_bytes());
}
