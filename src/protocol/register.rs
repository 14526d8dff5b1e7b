//! The register frame: `{"token": "...", "event": "..."}` sent by a browser after connecting.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::fields::{decode_first, visit_string_fields};

/// A decoded register frame. Empty fields are kept so that the caller can count them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RegisterFrame {
    pub token: String,
    pub event: String,
}

/// Why a register frame binds nothing (the connection stays open and unbound either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("register frame is not a JSON object of the expected shape")]
    Malformed,
    #[error("register frame has an empty token or event")]
    EmptyField,
}

impl RegisterFrame {
    /// Parses a text frame with the old server's rules (see [`super::fields`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, RegisterError> {
        let frame: Self = decode_first(bytes).ok_or(RegisterError::Malformed)?;
        if frame.token.is_empty() || frame.event.is_empty() {
            return Err(RegisterError::EmptyField);
        }
        Ok(frame)
    }
}

impl<'de> Deserialize<'de> for RegisterFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FrameVisitor;
        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = RegisterFrame;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a register object")
            }
            fn visit_unit<E>(self) -> Result<RegisterFrame, E> {
                Ok(RegisterFrame::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RegisterFrame, A::Error> {
                let mut frame = RegisterFrame::default();
                visit_string_fields(map, &["token", "event"], |index, value| {
                    *[&mut frame.token, &mut frame.event][index] = value.into_owned();
                })?;
                Ok(frame)
            }
        }
        deserializer.deserialize_any(FrameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(token: &str, event: &str) -> Result<RegisterFrame, RegisterError> {
        Ok(RegisterFrame {
            token: token.into(),
            event: event.into(),
        })
    }

    #[test]
    fn plain_and_case_insensitive() {
        assert_eq!(
            RegisterFrame::parse(br#"{"token":"t","event":"e"}"#),
            ok("t", "e")
        );
        assert_eq!(
            RegisterFrame::parse(br#"{"Token":"t","EVENT":"e"}"#),
            ok("t", "e")
        );
        assert_eq!(
            RegisterFrame::parse(br#"{"token":"t","event":"e","x":[1,{"a":2}]}"#),
            ok("t", "e")
        );
    }

    #[test]
    fn last_key_wins_and_null_keeps_the_value() {
        assert_eq!(
            RegisterFrame::parse(br#"{"token":"a","TOKEN":"b","event":"e","Event":null}"#),
            ok("b", "e")
        );
    }

    #[test]
    fn trailing_bytes_after_the_object_are_ignored() {
        assert_eq!(
            RegisterFrame::parse(br#" {"token":"t","event":"e"} junk"#),
            ok("t", "e")
        );
    }

    #[test]
    fn malformed_and_empty() {
        use RegisterError::*;
        assert_eq!(RegisterFrame::parse(b"not json"), Err(Malformed));
        assert_eq!(
            RegisterFrame::parse(br#"{"token":1,"event":"e"}"#),
            Err(Malformed)
        );
        assert_eq!(RegisterFrame::parse(br#"["t","e"]"#), Err(Malformed));
        assert_eq!(RegisterFrame::parse(br#"{"token":"t""#), Err(Malformed));
        assert_eq!(
            RegisterFrame::parse(br#"{"token":"","event":"e"}"#),
            Err(EmptyField)
        );
        assert_eq!(RegisterFrame::parse(br#"{"token":"t"}"#), Err(EmptyField));
        assert_eq!(RegisterFrame::parse(b"null"), Err(EmptyField));
    }
}
