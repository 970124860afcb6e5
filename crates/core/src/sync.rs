//! One place to import synchronisation types from, so that `--cfg loom` swaps
//! every atomic, lock and cell for loom's model-checked versions.
//!
//! The pattern is tokio's `src/loom/` facade and crossbeam's `primitive`
//! module: the rest of the crate never names `std::sync` or `std::thread`
//! directly, so a loom model (`tests/loom_*.rs`, run with
//! `RUSTFLAGS="--cfg loom"`) explores every interleaving of every atomic
//! access, lock and spin in the crate.
//!
//! # Implementation
//!
//! Re-exports for the types whose APIs match; small wrappers where they do not:
//! `spin_loop` and `yield_now` become loom yields (so the model checker can
//! run the thread that ends a spin), and without loom [`UnsafeCell`] is a thin
//! wrapper over `std::cell::UnsafeCell` with loom's closure-based `with_mut`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// A hint that this thread is spinning; under loom, a yield so the model
/// checker can schedule the thread that will end the spin.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives up the rest of this thread's time slice.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// `UnsafeCell` with loom's closure-based API, so that loom can check every
/// access to the cell's contents; without loom it compiles to plain pointers.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
