//! Go's `encoding/json` rules for struct fields, which every existing client relies on.
//!
//! The old server decoded with `json.NewDecoder(r).Decode(&v)`, so:
//! - a key matches a field case-insensitively (with Unicode simple folding: `K` KELVIN SIGN
//!   matches `k`, `ſ` LONG S matches `s`), and when a key repeats the last one wins;
//! - unknown keys are ignored, `null` leaves a field empty, any other type is an error;
//! - only the first JSON value is read: bytes after it are ignored;
//! - inside a string, a byte that is not UTF-8 and a `\uXXXX` escape of a UTF-16 surrogate
//!   that is not half of a pair each decode to U+FFFD instead of failing the value.
//!
//! [`decode_first`] gives the third rule, [`key_matches`] the first, [`replace_invalid_text`]
//! the last.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

/// True when a JSON object key names `field` (lower-case ASCII) under Go's folding.
pub fn key_matches(key: &str, field: &str) -> bool {
    let mut key_chars = key.chars();
    for expected in field.chars() {
        let Some(c) = key_chars.next() else {
            return false;
        };
        let folded = match c {
            '\u{212A}' => 'k',
            '\u{017F}' => 's',
            c => c.to_ascii_lowercase(),
        };
        if folded != expected {
            return false;
        }
    }
    key_chars.next().is_none()
}

/// Decodes the first JSON value of `bytes`, ignoring whatever follows it, as Go's
/// `Decoder.Decode` does.
pub fn decode_first<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Option<T> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<T>()
        .next()
        .and_then(Result::ok)
}

/// U+FFFD REPLACEMENT CHARACTER, UTF-8 encoded.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Returns a copy of `json` in which every string's invalid text is replaced as Go's
/// `encoding/json` decodes it, or `None` when there is nothing to replace.
///
/// serde_json refuses such text; the old server delivered it altered, and a pipeline that
/// pastes a Latin-1 log line into a push relies on that. Go's rules, reproduced exactly:
/// each byte that does not start a valid UTF-8 sequence becomes one U+FFFD (so `\xE2\x82`
/// cut short is two, not one as Rust's lossy conversion gives), and a `\uD800`-`\uDFFF`
/// escape that is not a high surrogate followed by a low one becomes `\uFFFD` (the escape
/// after a lone high surrogate is then read on its own). Bytes outside strings are left
/// alone: they are a syntax error either way. The caller parses the copy again.
pub fn replace_invalid_text(json: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut replaced = false;
    let mut in_string = false;
    let mut i = 0;
    while i < json.len() {
        let byte = json[i];
        match byte {
            b'"' => {
                in_string = !in_string;
                out.push(byte);
                i += 1;
            }
            b'\\' if in_string => {
                if let Some(unit) = escaped_utf16_unit(&json[i..]) {
                    if (0xD800..0xE000).contains(&unit) {
                        let paired = (0xD800..0xDC00).contains(&unit)
                            && escaped_utf16_unit(&json[i + 6..])
                                .is_some_and(|low| (0xDC00..0xE000).contains(&low));
                        if paired {
                            out.extend_from_slice(&json[i..i + 12]);
                            i += 12;
                        } else {
                            out.extend_from_slice(b"\\uFFFD");
                            replaced = true;
                            i += 6;
                        }
                        continue;
                    }
                }
                // Any other escape: the backslash and the byte it escapes, as they are.
                let end = (i + 2).min(json.len());
                out.extend_from_slice(&json[i..end]);
                i = end;
            }
            0x80.. if in_string => {
                // Valid multi-byte sequences never hold an ASCII byte: take the run up to the
                // next one and keep its valid parts.
                let end = json[i..]
                    .iter()
                    .position(u8::is_ascii)
                    .map_or(json.len(), |run| i + run);
                for chunk in json[i..end].utf8_chunks() {
                    out.extend_from_slice(chunk.valid().as_bytes());
                    for _ in chunk.invalid() {
                        out.extend_from_slice(REPLACEMENT);
                        replaced = true;
                    }
                }
                i = end;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    replaced.then_some(out)
}

/// The code unit of a `\uXXXX` escape at the start of `json`, if there is one.
fn escaped_utf16_unit(json: &[u8]) -> Option<u16> {
    let hex = json.strip_prefix(b"\\u")?.get(..4)?;
    u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// A string borrowed from the input when it holds no escapes, owned otherwise. serde's own
/// `Cow<str>` always allocates; on the push path that was three allocations per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Visits a JSON object, handing each value of a known field to `assign`, skipping the rest.
///
/// `fields` lists lower-case names; `assign(i, value)` gets the field index and its value.
/// `null` leaves a field as it was (Go's rule); a non-string value fails the whole object.
pub(crate) fn visit_string_fields<'de, A>(
    mut map: A,
    fields: &[&str],
    mut assign: impl FnMut(usize, Cow<'de, str>),
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
{
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        match fields.iter().position(|f| key_matches(&key, f)) {
            Some(index) => {
                if let Some(Text(value)) = map.next_value::<Option<Text<'de>>>()? {
                    assign(index, value);
                }
            }
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(json: &[u8]) -> Option<String> {
        replace_invalid_text(json).map(|bytes| String::from_utf8(bytes).unwrap())
    }

    /// Each expected string is what Go's `json.Unmarshal` decodes the input to, re-encoded
    /// with ASCII escapes where it holds them (checked with Go 1.19, Debian's `golang-go`).
    #[test]
    fn invalid_text_is_replaced_as_go_decodes_it() {
        for (json, expected) in [
            (&b"\"caf\xe9\""[..], "\"caf\u{FFFD}\""),
            (b"\"\xe2\x82x\"", "\"\u{FFFD}\u{FFFD}x\""),
            (b"\"\xc0\xaf\"", "\"\u{FFFD}\u{FFFD}\""),
            (b"\"\xed\xa0\x80\"", "\"\u{FFFD}\u{FFFD}\u{FFFD}\""),
            (b"\"\xe2\x82\xe2\x82\xac\"", "\"\u{FFFD}\u{FFFD}\u{20AC}\""),
            (b"\"\xf0\x9f\x98\"", "\"\u{FFFD}\u{FFFD}\u{FFFD}\""),
            (br#""a\ud800b""#, r#""a\uFFFDb""#),
            (br#""\udc00""#, r#""\uFFFD""#),
            (br#""\ud83d\ud83d\ude00""#, r#""\uFFFD\ud83d\ude00""#),
            (br#""\ud83dx""#, r#""\uFFFDx""#),
            (br#"{"\ud800":"\"\ud800"}"#, r#"{"\uFFFD":"\"\uFFFD"}"#),
        ] {
            assert_eq!(replaced(json).as_deref(), Some(expected), "{json:?}");
        }
    }

    #[test]
    fn valid_text_and_what_is_not_inside_a_string_are_left_alone() {
        for json in [
            // `\\ud800` is a backslash, then the letters `ud800`.
            &br#"{"m":"caf\u00e9 \ud83d\ude00 \\ud800 \"q\""}"#[..],
            "{\"m\":\"caf\u{e9} \u{1F600}\"}".as_bytes(),
            b"{\"m\":1}\xff",
            br#"{"m":"\u12"}"#,
            b"\"\\",
        ] {
            assert_eq!(replaced(json), None, "{json:?}");
        }
    }

    #[test]
    fn folding() {
        assert!(key_matches("userId", "userid"));
        assert!(key_matches("USERID", "userid"));
        assert!(key_matches("u\u{017F}erid", "userid"));
        assert!(key_matches("To\u{212A}en", "token"));
        assert!(!key_matches("user_id", "userid"));
        assert!(!key_matches("useri", "userid"));
        assert!(!key_matches("userids", "userid"));
        assert!(!key_matches("", "userid"));
    }
}
