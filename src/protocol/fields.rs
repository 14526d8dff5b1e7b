//! Go's `encoding/json` rules for struct fields, which every existing client relies on.
//!
//! The old server decoded with `json.NewDecoder(r).Decode(&v)`, so:
//! - a key matches a field case-insensitively (with Unicode simple folding: `K` KELVIN SIGN
//!   matches `k`, `ſ` LONG S matches `s`), and when a key repeats the last one wins;
//! - unknown keys are ignored, `null` leaves a field empty, any other type is an error;
//! - only the first JSON value is read: bytes after it are ignored.
//!
//! [`decode_first`] gives the last rule; [`key_matches`] the first.

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
