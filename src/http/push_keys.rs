//! The keys pipelines present to push (`Authorization: Bearer <key>`). Read at start from
//! `--push-keys` and `--push-keys-file`; the file is read again on SIGHUP, so that a key can
//! be added or retired without a restart, which would drop every browser connection.

use std::sync::{PoisonError, RwLock};

use hyper::header::AUTHORIZATION;
use hyper::Request;
use subtle::ConstantTimeEq;

/// The push keys in force; none means pushes need no key (loopback-only by default).
#[derive(Debug, Default)]
pub struct PushKeys {
    keys: RwLock<Vec<Vec<u8>>>,
}

/// Why a reload left the keys as they were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysNotReplaced {
    /// Swapping keys for no key would open the push endpoints to anyone who can reach them.
    #[error("the new list holds no key, and an empty list would let anyone push")]
    WouldOpen,
}

impl PushKeys {
    pub fn new(keys: Vec<Vec<u8>>) -> Self {
        Self {
            keys: RwLock::new(keys),
        }
    }

    /// How many keys are in force (0: pushes need none); for the start-up line.
    pub fn count(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether `request` carries a key in force (or no key is needed).
    pub fn authorize<B>(&self, request: &Request<B>) -> bool {
        // Checked under the read lock: writers come only from SIGHUP.
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        if keys.is_empty() {
            return true;
        }
        let Some(presented) = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| bearer_credentials(v.as_bytes()))
        else {
            return false;
        };
        // Check every key so that timing does not tell which one matched.
        keys.iter().fold(false, |found, key| {
            found | bool::from(key.as_slice().ct_eq(presented))
        })
    }

    /// Puts `keys` in force for the next requests; refused when it would turn keys off.
    pub fn replace(&self, keys: Vec<Vec<u8>>) -> Result<(), KeysNotReplaced> {
        let mut current = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.is_empty() && !current.is_empty() {
            return Err(KeysNotReplaced::WouldOpen);
        }
        *current = keys;
        Ok(())
    }
}

/// The credentials of an `Authorization: Bearer <key>` value. The scheme is
/// case-insensitive and followed by one or more spaces (RFC 9110 11.4), so `bearer <key>`
/// from a client that lower-cases it works too.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(b"Bearer".len())?;
    if !scheme.eq_ignore_ascii_case(b"Bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii_start()).filter(|credentials| !credentials.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer_credentials;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_space() {
        for (value, credentials) in [
            (&b"Bearer k1"[..], Some(&b"k1"[..])),
            (b"bearer k1", Some(b"k1")),
            (b"BEARER   k1", Some(b"k1")),
            (b"Bearerk1", None),
            (b"Bearer ", None),
            (b"Basic azE6", None),
            (b"Bear", None),
        ] {
            assert_eq!(
                bearer_credentials(value),
                credentials,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
