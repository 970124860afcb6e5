//! A key as a cell stores it: 16 bytes, short byte strings inline.
//!
//! A rate limiter keeps one cell per live key, up to millions of them, so a
//! key must not cost an allocation: `user:1234567` (12 bytes) and every
//! integer live inside the cell. Longer byte strings (rare: API keys, IPv6
//! text) are boxed.
//!
//! # Implementation
//!
//! [`StoredKey`] is an enum of three variants whose largest payload is 15
//! bytes (`len` + 14 bytes), so with its tag it is exactly 16 bytes, aligned
//! to 8 (checked by a test). A long key is a `Box<Box<[u8]>>`: one pointer in
//! the cell (a `Box<[u8]>` is two words and would make every cell 24 bytes),
//! at the price of a second allocation for keys over [`INLINE`] bytes.
//!
//! Identity is exact: lookups compare the key itself, never only its hash,
//! and `Int(1)` and `Bytes(b"1")` are different keys (their hashes differ by a
//! leading tag, their stored forms by variant).

use std::hash::{BuildHasher, Hasher};

use super::Key;

/// Byte strings up to this length are stored in the cell.
pub(crate) const INLINE: usize = 14;

/// A key owned by a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredKey {
    /// An integer key.
    Int(i64),
    /// A byte string of `len` (1..=INLINE) bytes, the first `len` of `bytes`;
    /// the rest are zero.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A byte string longer than `INLINE`.
    Heap(Box<Box<[u8]>>),
}

impl StoredKey {
    /// Stores `key` (already validated: 1..=MAX_KEY_BYTES bytes).
    pub(crate) fn new(key: Key<'_>) -> Self {
        match key {
            Key::Int(i) => StoredKey::Int(i),
            Key::Bytes(b) if b.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..b.len()].copy_from_slice(b);
                // Cannot truncate: len <= INLINE < 256.
                StoredKey::Inline {
                    len: b.len() as u8,
                    bytes,
                }
            }
            Key::Bytes(b) => StoredKey::Heap(Box::new(b.into())),
        }
    }

    /// The borrowed form.
    pub(crate) fn as_key(&self) -> Key<'_> {
        match self {
            StoredKey::Int(i) => Key::Int(*i),
            StoredKey::Inline { len, bytes } => Key::Bytes(&bytes[..usize::from(*len)]),
            StoredKey::Heap(b) => Key::Bytes(b),
        }
    }

    /// Whether this is `key`, compared exactly.
    #[inline]
    pub(crate) fn is(&self, key: Key<'_>) -> bool {
        self.as_key() == key
    }
}

/// The hash of `key` under `state`. The leading tag keeps `Int(1)` and
/// `Bytes(b"1")` apart in the hash as well (identity never rests on it).
#[inline]
pub(crate) fn hash_key(state: &impl BuildHasher, key: Key<'_>) -> u64 {
    let mut h = state.build_hasher();
    match key {
        Key::Int(i) => {
            h.write_u8(0);
            h.write_i64(i);
        }
        Key::Bytes(b) => {
            h.write_u8(1);
            h.write(b);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_key_is_16_bytes() {
        assert_eq!(std::mem::size_of::<StoredKey>(), 16);
    }

    #[test]
    fn keys_round_trip_inline_and_boxed() {
        for key in [
            Key::Int(-7),
            Key::Bytes(b"u"),
            Key::Bytes(b"user:123456789"),
            Key::Bytes(b"user:1234567890"),
            Key::Bytes(&[0; 512]),
        ] {
            let stored = StoredKey::new(key);
            assert!(stored.is(key));
            assert_eq!(stored.as_key(), key);
        }
        assert!(matches!(
            StoredKey::new(Key::Bytes(&[1; INLINE])),
            StoredKey::Inline { .. }
        ));
        assert!(matches!(
            StoredKey::new(Key::Bytes(&[1; INLINE + 1])),
            StoredKey::Heap(_)
        ));
        assert!(!StoredKey::new(Key::Int(1)).is(Key::Bytes(b"1")));
        assert!(!StoredKey::new(Key::Bytes(b"ab")).is(Key::Bytes(b"ab\0")));
    }
}
