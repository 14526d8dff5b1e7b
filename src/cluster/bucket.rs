//! The userID → bucket hash and the NATS subjects built on it.
//!
//! Subjects never carry a userID (it may hold `.`, `*`, `>` or spaces, and it is personal
//! data): a user's pushes travel on `<prefix>.push.<bucket>` (prefix `pushgate` unless
//! `--nats-subject-prefix` says otherwise), where the bucket is a hash of
//! the userID modulo [`BUCKETS`]. The hash must be identical in every process and every
//! version that may share a cluster, so it is spelled out here rather than borrowed from a
//! hasher whose seed or algorithm may change: 64-bit FNV-1a over the userID's UTF-8 bytes,
//! folded to 32 bits (`h ^ (h >> 32)`), modulo 4,096.

use std::sync::Arc;

/// Buckets the userID space is split into. Changing it changes every subject: all nodes of a
/// cluster must agree on it (it is a constant, not a flag, for that reason).
pub const BUCKETS: usize = 4096;

/// Words of a bitmap holding one bit per bucket.
pub const BITMAP_WORDS: usize = BUCKETS / 64;

/// Prefix of every subject pushgate publishes on, unless `--nats-subject-prefix` is given.
pub const DEFAULT_SUBJECT_PREFIX: &str = "pushgate";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The bucket of a userID.
pub fn bucket(user: &str) -> usize {
    let hash = fnv1a64(user.as_bytes());
    ((hash ^ (hash >> 32)) as u32 as usize) % BUCKETS
}

/// The subjects of one cluster. Every node of a cluster uses the same prefix; clusters with
/// different prefixes can share a NATS account without seeing each other's messages.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: Arc<str>,
}

impl Subjects {
    /// `prefix` must have passed [`check_prefix`].
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The subject a bucket's pushes travel on.
    pub fn push(&self, bucket: usize) -> String {
        format!("{}.push.{bucket}", self.prefix)
    }

    /// The subject broadcasts travel on; every node is subscribed to it.
    pub fn broadcast(&self) -> String {
        format!("{}.broadcast", self.prefix)
    }

    /// The subject every node announces the buckets it holds on.
    pub fn presence(&self) -> String {
        format!("{}.presence", self.prefix)
    }

    /// The subject prefix a node's delivery counts come back on (`<prefix>.<request id>`).
    pub fn reply_prefix(&self, node: u64) -> String {
        format!("{}.reply.{node:016x}", self.prefix)
    }
}

/// A prefix is one or more NATS subject tokens: no empty token, no wildcard, no whitespace.
pub fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    let bad_token = |token: &str| {
        token.is_empty()
            || token
                .chars()
                .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
    };
    if prefix.split('.').any(bad_token) {
        return Err("--nats-subject-prefix must be dot-separated NATS subject tokens: no empty token, no '*', '>' or whitespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn buckets_are_pinned_and_spread() {
        // Pinned: a change here splits a rolling upgrade's cluster in two.
        assert_eq!(bucket(""), 4033);
        assert_eq!(bucket("alice"), bucket("alice"));
        let mut per_bucket = vec![0usize; BUCKETS];
        for i in 0..BUCKETS * 16 {
            per_bucket[bucket(&format!("user-{i}"))] += 1;
        }
        let empty = per_bucket.iter().filter(|&&n| n == 0).count();
        assert!(empty < BUCKETS / 100, "{empty} empty buckets");
        assert!(per_bucket.iter().all(|&n| n < 64), "a bucket is overloaded");
    }

    #[test]
    fn subjects_never_hold_the_user() {
        let subjects = Subjects::new(DEFAULT_SUBJECT_PREFIX);
        assert_eq!(
            subjects.push(bucket("a.b *>")),
            format!("pushgate.push.{}", bucket("a.b *>"))
        );
        assert_eq!(
            subjects.reply_prefix(0xab),
            "pushgate.reply.00000000000000ab"
        );
        let staging = Subjects::new("acme.staging");
        assert_eq!(staging.broadcast(), "acme.staging.broadcast");
        assert_eq!(staging.presence(), "acme.staging.presence");
    }

    #[test]
    fn a_prefix_is_made_of_plain_subject_tokens() {
        for good in ["pushgate", "acme.staging", "a-b_c.d1"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "a\tb"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
