//! The v1 push body: `{"userId": "...", "event": "...", "message": "..."}`.
//!
//! Parsed with serde_json rather than simd-json: on bodies of about 100 bytes the two cost
//! the same once simd-json reuses its buffers (see `benches/parse.rs` and
//! docs/PERFORMANCE.md), and serde_json reads the first JSON value of a stream and ignores
//! the rest, which is exactly what the old server's `json.Decoder` did; simd-json would need
//! a copy of the body into a mutable buffer and rejects trailing bytes.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::fields::{decode_first, visit_string_fields};

/// A valid push: every field present and non-empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushRequest {
    pub user_id: String,
    pub event: String,
    pub message: String,
}

/// The one error v1 knows: its reply is `400 request data illegal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request data illegal")]
pub struct IllegalRequest;

impl PushRequest {
    /// Parses a push body with the old server's rules (see [`super::fields`]).
    pub fn parse(body: &[u8]) -> Result<Self, IllegalRequest> {
        let request: Self = decode_first(body).ok_or(IllegalRequest)?;
        if request.user_id.is_empty() || request.event.is_empty() || request.message.is_empty() {
            return Err(IllegalRequest);
        }
        Ok(request)
    }
}

impl<'de> Deserialize<'de> for PushRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PushVisitor;
        impl<'de> Visitor<'de> for PushVisitor {
            type Value = PushRequest;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a push object")
            }
            fn visit_unit<E>(self) -> Result<PushRequest, E> {
                Ok(PushRequest::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PushRequest, A::Error> {
                let mut push = PushRequest::default();
                visit_string_fields(map, &["userid", "event", "message"], |index, value| {
                    if let Some(value) = value {
                        *[&mut push.user_id, &mut push.event, &mut push.message][index] = value;
                    }
                })?;
                Ok(push)
            }
        }
        deserializer.deserialize_any(PushVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(user_id: &str, event: &str, message: &str) -> Result<PushRequest, IllegalRequest> {
        Ok(PushRequest {
            user_id: user_id.into(),
            event: event.into(),
            message: message.into(),
        })
    }

    #[test]
    fn plain_and_case_insensitive() {
        assert_eq!(
            PushRequest::parse(br#"{"userId":"u","event":"e","message":"m"}"#),
            ok("u", "e", "m")
        );
        assert_eq!(
            PushRequest::parse(br#"{"USERID":"u","Event":"e","MeSsAgE":"m","other":true}"#),
            ok("u", "e", "m")
        );
    }

    #[test]
    fn escapes_and_unicode_are_decoded() {
        assert_eq!(
            PushRequest::parse(
                br#"{"user\u0049d":"u","event":"e","message":"a\"b\n\u00e9\ud83d\ude00"}"#
            ),
            ok("u", "e", "a\"b\né😀")
        );
    }

    #[test]
    fn illegal_bodies() {
        for body in [
            &br#"{"userId":"u","event":"e","message":5}"#[..],
            br#"{"userId":"u","event":"e"}"#,
            br#"{"userId":"","event":"e","message":"m"}"#,
            br#"{"userId":"u","event":null,"message":"m"}"#,
            br#"["u","e","m"]"#,
            b"",
            b"{",
            b"null",
            b"\"string\"",
        ] {
            assert_eq!(PushRequest::parse(body), Err(IllegalRequest), "{body:?}");
        }
    }

    #[test]
    fn only_the_first_value_counts() {
        assert_eq!(
            PushRequest::parse(br#"{"userId":"u","event":"e","message":"m"}{"x":1} trailing"#),
            ok("u", "e", "m")
        );
    }
}
