//! The v1 push body: `{"userId": "...", "event": "...", "message": "..."}`.
//!
//! Parsed with serde_json, not simd-json. simd-json with reused buffers measured ~40 ns
//! faster on a 100-byte body (`benches/hot_path.rs`, docs/ARCHITECTURE.md), but it fails on
//! bytes after the first JSON value (`TrailingData`), which the old server's `json.Decoder`
//! accepted; serde_json's stream deserializer reproduces that exactly. 40 ns is about 1% of
//! what a push costs end to end, so compatibility wins.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::fields::{decode_first, replace_invalid_text, visit_string_fields};

/// A valid push: every field present and non-empty. Fields borrow from the body unless
/// they contain escapes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushRequest<'a> {
    pub user_id: Cow<'a, str>,
    pub event: Cow<'a, str>,
    pub message: Cow<'a, str>,
    /// The body held text that is not UTF-8 or a lone surrogate escape, replaced with U+FFFD
    /// as the old server's decoder did (see [`replace_invalid_text`]): worth counting, since
    /// the message delivered is not the one the pipeline meant.
    pub replaced_invalid_text: bool,
}

/// The one error v1 knows: its reply is `400 request data illegal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request data illegal")]
pub struct IllegalRequest;

impl<'a> PushRequest<'a> {
    /// Parses a push body with the old server's rules (see [`super::fields`]).
    pub fn parse(body: &'a [u8]) -> Result<Self, IllegalRequest> {
        let request = match decode_first::<Self>(body) {
            Some(request) => request,
            None => {
                let repaired = replace_invalid_text(body).ok_or(IllegalRequest)?;
                let request: PushRequest<'_> = decode_first(&repaired).ok_or(IllegalRequest)?;
                PushRequest {
                    user_id: Cow::Owned(request.user_id.into_owned()),
                    event: Cow::Owned(request.event.into_owned()),
                    message: Cow::Owned(request.message.into_owned()),
                    replaced_invalid_text: true,
                }
            }
        };
        if request.user_id.is_empty() || request.event.is_empty() || request.message.is_empty() {
            return Err(IllegalRequest);
        }
        Ok(request)
    }
}

impl<'de> Deserialize<'de> for PushRequest<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PushVisitor;
        impl<'de> Visitor<'de> for PushVisitor {
            type Value = PushRequest<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a push object")
            }
            fn visit_unit<E>(self) -> Result<PushRequest<'de>, E> {
                Ok(PushRequest::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PushRequest<'de>, A::Error> {
                let mut push = PushRequest::default();
                visit_string_fields(map, &["userid", "event", "message"], |index, value| {
                    *[&mut push.user_id, &mut push.event, &mut push.message][index] = value;
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

    fn ok<'a>(
        user_id: &'a str,
        event: &'a str,
        message: &'a str,
    ) -> Result<PushRequest<'a>, IllegalRequest> {
        Ok(PushRequest {
            user_id: user_id.into(),
            event: event.into(),
            message: message.into(),
            replaced_invalid_text: false,
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
    fn invalid_text_is_delivered_replaced_as_the_old_server_did() {
        let request = PushRequest::parse(
            b"{\"userId\":\"u\xff\",\"event\":\"e\",\"message\":\"caf\xe9 \\ud800\"}",
        )
        .unwrap();
        assert_eq!(request.user_id, "u\u{FFFD}");
        assert_eq!(request.message, "caf\u{FFFD} \u{FFFD}");
        assert!(request.replaced_invalid_text);
        assert!(
            !PushRequest::parse(br#"{"userId":"u","event":"e","message":"caf\u00e9"}"#)
                .unwrap()
                .replaced_invalid_text
        );
        // Still 400 when the body is illegal for another reason too.
        assert_eq!(
            PushRequest::parse(b"{\"userId\":\"u\",\"event\":\"e\",\"message\":\"\xff\",}"),
            Err(IllegalRequest)
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
