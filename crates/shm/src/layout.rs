//! [`Layout`]: what a primitive tells the segment about itself.

use crate::{Error, Guard, Region};

/// A primitive stored in a segment (the semaphore, later the token bucket…).
///
/// The segment owns the header page, the robust mutex, the process slots and
/// the owner slots; the primitive owns one [`Region`] of `mutable_size()`
/// bytes after them. The hooks are associated functions (no `self`) so that
/// the segment can keep them as plain `fn` pointers and call them from places
/// that have no layout value: `unlink`, the `atexit` handler, a sweep.
///
/// Every hook runs with the segment lock held (`guard`); to wake an owner,
/// call [`Guard::wake`], which rings its bell after the unlock.
pub trait Layout {
    /// The kind stored in the header: 1 Semaphore, 2 Mutex, 3 TokenBucket,
    /// 4 RateLimiter, 5 SharedWords (the circuit breaker's block).
    const KIND: u32;

    /// The names of the eight kind parameters, for [`Error::Mismatch`]
    /// (unused ones: `""`).
    fn param_names() -> [&'static str; 8];

    /// The creation parameters, compared at every open (unused ones: 0).
    fn params(&self) -> [u64; 8];

    /// Process slots (1..=256). Compared at open as `max_procs`.
    fn max_procs(&self) -> u32 {
        64
    }

    /// Owner slots (1..=1024). Compared at open as `max_owners`.
    fn max_owners(&self) -> u32 {
        256
    }

    /// Bytes of the primitive's own region (rounded up to 64 by the segment).
    fn mutable_size(&self) -> usize;

    /// Writes the initial state into a zeroed region.
    ///
    /// # Safety
    ///
    /// Called once per (re)initialisation, by the only process attached (it
    /// holds the lifetime lock exclusively), before any other process can map
    /// the segment.
    unsafe fn init(&self, region: Region<'_>);

    /// Checks the region of an existing segment (under the segment lock, at
    /// open): every index in range, every walk bounded, every state known.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`] naming what is wrong.
    fn validate(&self, region: Region<'_>) -> Result<(), Error>;

    /// After `EOWNERDEAD`: the last holder died inside the lock. Rebuild the
    /// caches from the facts (design §4.3). Runs inside [`Segment::lock`]
    /// before it returns, so every lock site is covered.
    ///
    /// [`Segment::lock`]: crate::Segment::lock
    fn recover(guard: &mut Guard<'_>) {
        let _ = guard;
    }

    /// Process `proc` is gone: give back what its `owners` held and withdraw
    /// their waits. The segment frees the owner slots and the process slot
    /// afterwards.
    fn reap(guard: &mut Guard<'_>, proc: u32, owners: &[u32]) {
        let _ = (guard, proc, owners);
    }

    /// `unlink` is closing the primitive for everyone: withdraw every wait
    /// and wake every owner. The segment has already set `CLOSED|UNLINKED`.
    fn on_unlink(guard: &mut Guard<'_>) {
        let _ = guard;
    }

    /// This process is exiting (`atexit`): give back what its owners held.
    /// Defaults to [`Layout::reap`] of this process, which is the same job.
    fn on_process_exit(guard: &mut Guard<'_>, proc: u32, owners: &[u32]) {
        Self::reap(guard, proc, owners)
    }
}
