//! Keeps a hot atomic on a cache line of its own.

use std::ops::Deref;

/// Aligns `T` to 128 bytes: adjacent-line prefetch on x86-64 pulls cache lines in
/// pairs, and Apple silicon uses 128-byte lines, so 64 would still share.
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
