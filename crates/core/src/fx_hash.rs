//! A fast hasher for the small integer keys of the wait queue's indexes.
//!
//! std's default SipHash resists hash flooding, which these keys cannot do
//! (they are chosen by the binding, not by users), and costs ~20 ns a lookup
//! on the wait path. This is the multiply-rotate hash of rustc's FxHasher
//! (the `rustc-hash` crate, after Firefox's hash).
//!
//! # Implementation
//!
//! The state is the running hash; each word is rotated in, xored and
//! multiplied by `SEED`. Bytes are fed one word each: the keys here are
//! integers, which take the `write_u32`/`write_u64` paths.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The running hash of the words written so far (0 before any).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
