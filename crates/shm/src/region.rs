//! [`Region`]: a bounds-checked view of shared bytes.
//!
//! Another process (or a damaged file) can put anything in shared memory, so
//! nothing here trusts it: every access is an atomic at an offset checked
//! against the length and the alignment, and returns `None` when out of range.
//! There is no `[i]` and no plain reference to shared bytes, so a torn or
//! concurrent write is never undefined behaviour in this process.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

/// A view of `len` shared bytes starting at `base`, valid for `'a` (the life
/// of the mapping it was taken from).
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    base: NonNull<u8>,
    len: usize,
    _mapping: PhantomData<&'a [AtomicU8]>,
}

// SAFETY: a `Region` only hands out atomics, which are `Sync`; the bytes
// behind it are shared with other processes by design.
unsafe impl Send for Region<'_> {}
// SAFETY: as above.
unsafe impl Sync for Region<'_> {}

impl<'a> Region<'a> {
    /// # Safety
    ///
    /// `base..base + len` must be mapped readable and writable for `'a`, and
    /// only ever accessed atomically (by this process and the others).
    #[allow(dead_code)] // used by the Linux segment only
    pub(crate) unsafe fn from_raw(base: NonNull<u8>, len: usize) -> Self {
        Region {
            base,
            len,
            _mapping: PhantomData,
        }
    }

    /// A region over process-local words: for tests and in-process oracles.
    pub fn from_words(words: &'a [AtomicU64]) -> Self {
        let base = NonNull::from(words).cast::<u8>();
        Region {
            base,
            len: std::mem::size_of_val(words),
            _mapping: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sub-region `[off, off + len)`, or `None` if it does not fit.
    pub fn sub(&self, off: usize, len: usize) -> Option<Region<'a>> {
        let end = off.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `off <= self.len`, so the pointer stays inside the mapping.
        let base = unsafe { self.base.add(off) };
        Some(Region {
            base,
            len,
            _mapping: PhantomData,
        })
    }

    fn at<T>(&self, off: usize) -> Option<NonNull<T>> {
        let size = std::mem::size_of::<T>();
        let end = off.checked_add(size)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `off + size <= self.len`: inside the mapping.
        let p = unsafe { self.base.add(off) };
        if !(p.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        Some(p.cast())
    }

    /// The `u64` at byte `off`, or `None` when out of range or unaligned.
    pub fn u64_at(&self, off: usize) -> Option<&'a AtomicU64> {
        // SAFETY: `at` checked bounds and alignment; the bytes are mapped for
        // `'a` and only accessed atomically (`from_raw`'s contract).
        self.at::<AtomicU64>(off).map(|p| unsafe { p.as_ref() })
    }

    /// The `u32` at byte `off`, or `None` when out of range or unaligned.
    pub fn u32_at(&self, off: usize) -> Option<&'a AtomicU32> {
        // SAFETY: as in `u64_at`.
        self.at::<AtomicU32>(off).map(|p| unsafe { p.as_ref() })
    }

    /// The byte at `off`, or `None` when out of range.
    pub fn u8_at(&self, off: usize) -> Option<&'a AtomicU8> {
        // SAFETY: as in `u64_at`.
        self.at::<AtomicU8>(off).map(|p| unsafe { p.as_ref() })
    }

    /// The start of the region, for the segment's own non-Rust objects (the
    /// pthread mutex).
    #[allow(dead_code)] // used by the Linux segment only
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn accessors_refuse_out_of_range_and_unaligned_offsets() {
        let words: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        let r = Region::from_words(&words);
        assert_eq!(r.len(), 32);
        assert!(r.u64_at(24).is_some());
        assert!(r.u64_at(25).is_none());
        assert!(r.u64_at(32).is_none());
        assert!(r.u64_at(usize::MAX - 3).is_none());
        assert!(r.u32_at(28).is_some());
        assert!(r.u32_at(30).is_none());
        assert!(r.sub(8, 24).is_some());
        assert!(r.sub(8, 25).is_none());
        assert!(r.sub(usize::MAX, 2).is_none());
        let s = r.sub(8, 16).unwrap();
        s.u64_at(0).unwrap().store(7, Relaxed);
        assert_eq!(words[1].load(Relaxed), 7);
        assert!(s.u64_at(16).is_none());
    }
}
