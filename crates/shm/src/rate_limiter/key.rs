//! A key as a shared cell stores it: 32 bytes, compared word by word.
//!
//! Byte 0 says what follows: `0x40` an integer (8 bytes), `0x80 | len` a byte
//! string of `len` ≤ 31 bytes stored as is, `0x20` a longer byte string
//! stored as its 128-bit seeded digest. The rest is zero. Every process
//! encodes a key the same way (the seed is the segment's), so identity is
//! the equality of four words: exact for integers and short strings, and for
//! long strings up to a 2^-128 chance, against keys nobody can aim at without
//! reading the segment (same uid only).

use std::hash::{BuildHasher, Hasher};

use foldhash::quality::FixedState;
use sluice_core::Key;

/// Byte strings up to this length are stored in the cell.
pub(crate) const INLINE: usize = 31;

const TAG_INT: u8 = 0x40;
const TAG_BYTES: u8 = 0x80;
const TAG_DIGEST: u8 = 0x20;

/// The per-segment hashers: the cell hash and the two halves of a digest.
#[derive(Clone, Debug)]
pub(crate) struct Seeds {
    hash: FixedState,
    digest: [FixedState; 2],
}

impl Seeds {
    /// Three independent seeds from one random 64-bit value (splitmix64).
    pub(crate) fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Seeds {
            hash: FixedState::with_seed(next()),
            digest: [FixedState::with_seed(next()), FixedState::with_seed(next())],
        }
    }
}

/// A key encoded for a cell, with its hash (never 0 or 1: those mark free
/// and tombstoned cells).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub(crate) words: [u64; 4],
    pub(crate) hash: u64,
}

/// Encodes `key` (already checked: 1..=MAX_KEY_BYTES bytes).
pub(crate) fn encode(seeds: &Seeds, key: Key<'_>) -> Encoded {
    let mut bytes = [0u8; 32];
    match key {
        Key::Int(i) => {
            bytes[0] = TAG_INT;
            bytes[1..9].copy_from_slice(&i.to_le_bytes());
        }
        Key::Bytes(b) if b.len() <= INLINE => {
            // Cannot truncate: len <= 31.
            bytes[0] = TAG_BYTES | b.len() as u8;
            bytes[1..=b.len()].copy_from_slice(b);
        }
        Key::Bytes(b) => {
            bytes[0] = TAG_DIGEST;
            for (i, state) in seeds.digest.iter().enumerate() {
                let mut h = state.build_hasher();
                h.write(b);
                let at = 1 + 8 * i;
                bytes[at..at + 8].copy_from_slice(&h.finish().to_le_bytes());
            }
        }
    }
    let mut words = [0u64; 4];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    Encoded {
        words,
        hash: hash_words(seeds, &words),
    }
}

/// The cell hash of encoded words.
pub(crate) fn hash_words(seeds: &Seeds, words: &[u64; 4]) -> u64 {
    let mut h = seeds.hash.build_hasher();
    for &w in words {
        h.write_u64(w);
    }
    match h.finish() {
        h @ 0..=1 => h + 2,
        h => h,
    }
}

/// Whether stored words have the shape of an encoded key (the tag byte is
/// known, its length in range, the padding zero): what damaged bytes almost
/// never have.
pub(crate) fn well_formed(words: &[u64; 4]) -> bool {
    let tag = (words[0] & 0xff) as u8;
    // Bytes used, tag included.
    let used = match tag {
        TAG_INT => 9,
        TAG_DIGEST => 17,
        t if t & TAG_BYTES != 0 && (1..=INLINE as u8).contains(&(t & !TAG_BYTES)) => 1 + usize::from(t & !TAG_BYTES),
        _ => return false,
    };
    words.iter().enumerate().all(|(i, &w)| {
        let first_free = used.saturating_sub(8 * i).min(8);
        first_free == 8 || w >> (8 * first_free) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_short_and_long_strings_encode_apart_and_well_formed() {
        let s = Seeds::new(42);
        let keys = [
            Key::Int(1),
            Key::Int(-1),
            Key::Bytes(b"1"),
            Key::Bytes(&[0]),
            Key::Bytes(&[0, 0]),
            Key::Bytes(&[0xff; 31]),
            Key::Bytes(&[0xff; 32]),
            Key::Bytes(&[0xfe; 32]),
            Key::Bytes(&[7; 512]),
        ];
        let enc: Vec<_> = keys.iter().map(|&k| encode(&s, k)).collect();
        for (i, a) in enc.iter().enumerate() {
            assert!(well_formed(&a.words), "{:?}", keys[i]);
            assert!(a.hash >= 2);
            for b in &enc[i + 1..] {
                assert_ne!(a.words, b.words);
            }
        }
        assert_eq!(
            encode(&s, Key::Bytes(b"abc")),
            encode(&Seeds::new(42), Key::Bytes(b"abc"))
        );
        assert_ne!(
            encode(&s, Key::Bytes(&[7; 40])).words,
            encode(&Seeds::new(43), Key::Bytes(&[7; 40])).words
        );
    }

    #[test]
    fn random_words_are_almost_never_well_formed() {
        assert!(!well_formed(&[0; 4]));
        assert!(!well_formed(&[0x40, 1 << 8, 0, 0]), "a byte after an integer");
        assert!(well_formed(&[0x40, 1, 0, 0]));
        assert!(!well_formed(&[u64::MAX; 4]));
        assert!(!well_formed(&[0x80, 0, 0, 0]), "a zero-length string");
        assert!(!well_formed(&[0x81 | 0x100 << 8, 0, 0, 0]), "a byte after the end");
        assert!(well_formed(&[0x81 | 0xff << 8, 0, 0, 0]));
    }
}
