//! Keeps a hot atomic on a cache line of its own.
//!
//! The technique and the 128-byte choice are crossbeam-utils' `CachePadded`:
//! two atomics that different cores write must not share a line, or every
//! write invalidates the other core's copy (false sharing).
//!
//! # Implementation
//!
//! A `#[repr(align(128))]` newtype that derefs to what it pads. crossbeam
//! picks the alignment per target; this crate uses 128 on every target (what
//! x86-64 and Apple silicon need), spending a few bytes where 64 would do.

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
