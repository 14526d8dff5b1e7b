//! The register frame: `{"token": "...", "event": "..."}` sent by a browser after connecting.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::fields::{decode_first, key_matches, replace_invalid_text, Text};

/// A decoded register frame. `ack` is pushgate's opt-in extension: the client asks for a
/// reply frame saying whether the registration succeeded (without it nothing is sent, as
/// with the old server).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RegisterFrame {
    pub token: String,
    pub event: String,
    pub ack: bool,
    /// The frame held a lone surrogate escape, replaced with U+FFFD as the old server's
    /// decoder did (a text frame is UTF-8 already; see [`replace_invalid_text`]).
    pub replaced_invalid_text: bool,
}

/// Why a register frame binds nothing (the connection stays open and unbound either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("register frame is not a JSON object of the expected shape")]
    Malformed,
    #[error("register frame has an empty token or event")]
    EmptyField {
        /// Whether the frame asked for a reply.
        ack: bool,
    },
}

impl RegisterFrame {
    /// Parses a text frame with the old server's rules (see [`super::fields`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, RegisterError> {
        let frame = match decode_first::<Self>(bytes) {
            Some(frame) => frame,
            None => {
                let repaired = replace_invalid_text(bytes).ok_or(RegisterError::Malformed)?;
                let frame: Self = decode_first(&repaired).ok_or(RegisterError::Malformed)?;
                Self {
                    replaced_invalid_text: true,
                    ..frame
                }
            }
        };
        if frame.token.is_empty() || frame.event.is_empty() {
            return Err(RegisterError::EmptyField { ack: frame.ack });
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
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RegisterFrame, A::Error> {
                let mut frame = RegisterFrame::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    if key_matches(&key, "token") || key_matches(&key, "event") {
                        if let Some(Text(value)) = map.next_value::<Option<Text<'de>>>()? {
                            let field = if key_matches(&key, "token") {
                                &mut frame.token
                            } else {
                                &mut frame.event
                            };
                            *field = value.into_owned();
                        }
                    } else if key_matches(&key, "ack") {
                        // To the old server `ack` is an unknown field, ignored whatever its
                        // value: only a boolean means something here, and anything else
                        // must not stop a registration (null keeps the value, as above).
                        if let serde_json::Value::Bool(ack) =
                            map.next_value::<serde_json::Value>()?
                        {
                            frame.ack = ack;
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
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
            ack: false,
            replaced_invalid_text: false,
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
    fn a_lone_surrogate_is_replaced_as_the_old_server_did() {
        let frame = RegisterFrame::parse(br#"{"token":"t\ud800","event":"e"}"#).unwrap();
        assert_eq!(frame.token, "t\u{FFFD}");
        assert!(frame.replaced_invalid_text);
    }

    #[test]
    fn ack_is_an_opt_in_boolean() {
        let frame = RegisterFrame::parse(br#"{"token":"t","event":"e","ACK":true}"#).unwrap();
        assert!(frame.ack);
        assert!(
            !RegisterFrame::parse(br#"{"token":"t","event":"e","ack":null}"#)
                .unwrap()
                .ack
        );
    }

    /// For the old server `ack` was an unknown field: a value of another type is ignored,
    /// and the frame still registers.
    #[test]
    fn an_ack_that_is_not_a_boolean_is_ignored() {
        for frame in [
            br#"{"token":"t","event":"e","ack":1}"#.as_slice(),
            br#"{"token":"t","event":"e","ack":"yes"}"#,
            br#"{"token":"t","event":"e","ack":{"a":1}}"#,
            br#"{"token":"t","event":"e","Ack":[true]}"#,
        ] {
            assert_eq!(
                RegisterFrame::parse(frame),
                ok("t", "e"),
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
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
            Err(EmptyField { ack: false })
        );
        assert_eq!(
            RegisterFrame::parse(br#"{"token":"t","ack":true}"#),
            Err(EmptyField { ack: true })
        );
        assert_eq!(
            RegisterFrame::parse(b"null"),
            Err(EmptyField { ack: false })
        );
    }
}
