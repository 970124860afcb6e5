//! A key as a cell stores it: 16 bytes, short byte strings inline.
//!
//! A rate limiter keeps one cell per live key, up to millions of them, so a
//! key must not cost an allocation: `user:1234567` (12 bytes), every IPv4
//! address as text (up to 15) and every integer live inside the cell. Longer
//! byte strings (API keys, IPv6 text) are boxed.
//!
//! # Implementation
//!
//! [`StoredKey`] is 16 bytes, aligned to 8 (checked by a test), with no
//! separate tag: an inline key's length is a [`Len`], an enum of the values
//! 1 to 15, and the compiler keeps the other variants' tags in the byte
//! values a `Len` never takes (a niche), leaving 15 bytes for the key. An
//! integer or a pointer sits in the other 8 bytes. A long key is a
//! `Box<Box<[u8]>>`: one pointer in the cell (a `Box<[u8]>` is two words and
//! would make every cell 24 bytes), at the price of a second allocation for
//! keys over [`INLINE`] bytes.
//!
//! Identity is exact: lookups compare the key itself, never only its hash,
//! and `Int(1)` and `Bytes(b"1")` are different keys (their hashes differ by a
//! leading tag, their stored forms by variant).

use std::hash::{BuildHasher, Hasher};

use super::Key;

/// Byte strings up to this length are stored in the cell.
pub(crate) const INLINE: usize = 15;

/// The length of an inline key, 1..=INLINE: its 241 impossible byte values
/// hold the other variants' tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Len {
    L1 = 1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
}

impl Len {
    const ALL: [Len; INLINE] = [
        Len::L1,
        Len::L2,
        Len::L3,
        Len::L4,
        Len::L5,
        Len::L6,
        Len::L7,
        Len::L8,
        Len::L9,
        Len::L10,
        Len::L11,
        Len::L12,
        Len::L13,
        Len::L14,
        Len::L15,
    ];

    /// The `Len` of `n` bytes, 1..=INLINE.
    fn of(n: usize) -> Len {
        Len::ALL[n - 1]
    }
}

/// A key owned by a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredKey {
    /// An integer key.
    Int(i64),
    /// A byte string of `len` bytes, the first `len` of `bytes`; the rest
    /// are zero.
    Inline { len: Len, bytes: [u8; INLINE] },
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
                StoredKey::Inline {
                    len: Len::of(b.len()),
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
            StoredKey::Inline { len, bytes } => Key::Bytes(&bytes[..*len as usize]),
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
            Key::Bytes(b"255.255.255.255"),
            Key::Bytes(b"user:12345678901"),
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
