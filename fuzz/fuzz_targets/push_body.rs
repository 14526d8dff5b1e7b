//! Fuzzes the v1 push body parser (`{"userId","event","message"}` with Go's field rules).
//!
//! Invariants: no panic; a successful parse has non-empty userId, event and message; bytes
//! appended after an accepted body (whose first value is an object) change nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate::protocol::push::PushRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = PushRequest::parse(data) else {
        return;
    };
    assert!(!request.user_id.is_empty(), "empty userId accepted: {request:?}");
    assert!(!request.event.is_empty(), "empty event accepted: {request:?}");
    assert!(!request.message.is_empty(), "empty message accepted: {request:?}");

    let mut extended = data.to_vec();
    extended.extend_from_slice(b"}{\"userId\":\"x\"} trailing");
    assert_eq!(
        PushRequest::parse(&extended),
        Ok(request),
        "trailing bytes changed the result"
    );
});
