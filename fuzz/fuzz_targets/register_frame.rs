//! Fuzzes the register frame parser (`{"token","event"}` with Go's field rules).
//!
//! Invariants: no panic; a successful parse has a non-empty token and event; since a
//! successful parse means the first JSON value was an object (self-delimiting), bytes
//! appended after the input must not change the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate::protocol::register::RegisterFrame;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = RegisterFrame::parse(data) else {
        return;
    };
    assert!(!frame.token.is_empty(), "empty token accepted: {frame:?}");
    assert!(!frame.event.is_empty(), "empty event accepted: {frame:?}");

    let mut extended = data.to_vec();
    extended.extend_from_slice(b"}{\"token\":\"x\"} trailing");
    assert_eq!(
        RegisterFrame::parse(&extended),
        Ok(frame),
        "trailing bytes changed the result"
    );
});
