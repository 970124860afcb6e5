//! One lock per shard of the table, placed in the table's own region.
//!
//! On Linux it is the segment's kind of lock (`crate::lock`): a robust,
//! process-shared pthread mutex. A process killed inside it makes the next
//! locker get `EOWNERDEAD`, which `crate::lock::lock` makes consistent at
//! once; the table needs no repair because every change in it commits with
//! one word (see `table.rs`). Elsewhere no segment opens, and a spin lock on
//! the same bytes keeps the in-memory table usable.

use std::time::Duration;

use crate::{Error, Region};

/// Bytes reserved per lock (a glibc x86-64 `pthread_mutex_t` is 40).
pub(crate) const LOCK_BYTES: usize = 64;

/// How long a shard lock may take before [`Error::LockStuck`] (see `OPERATION_TIMEOUT`).
const TIMEOUT: Duration = crate::OPERATION_TIMEOUT;

/// A held shard lock; unlocks on drop.
pub(crate) struct ShardGuard<'a> {
    region: Region<'a>,
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;

    const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= LOCK_BYTES);

    fn mutex(region: Region<'_>) -> Result<*mut libc::pthread_mutex_t, Error> {
        let p = region.base().as_ptr();
        if region.len() < LOCK_BYTES || !(p as usize).is_multiple_of(std::mem::align_of::<libc::pthread_mutex_t>()) {
            return Err(Error::Damaged("rate limiter shard lock out of place".into()));
        }
        Ok(p.cast())
    }

    /// # Safety
    ///
    /// `region` (LOCK_BYTES, aligned) is not in use as a lock by anyone.
    pub(crate) unsafe fn init(region: Region<'_>) -> Result<(), Error> {
        let m = mutex(region)?;
        // SAFETY: per this function's contract.
        unsafe { crate::lock::init(m) }.map_err(Error::Io)
    }

    pub(crate) fn lock(region: Region<'_>) -> Result<ShardGuard<'_>, Error> {
        let m = mutex(region)?;
        // SAFETY: `m` is in the mapping for the region's lifetime, initialised
        // by `init`, or damaged bytes, which glibc reports as an error or a
        // timeout (crate::lock's contract).
        unsafe { crate::lock::lock(m, TIMEOUT) }?;
        Ok(ShardGuard { region })
    }

    pub(crate) fn unlock(region: Region<'_>) {
        if let Ok(m) = mutex(region) {
            // SAFETY: this thread holds it (a `ShardGuard` exists only then).
            unsafe { crate::lock::unlock(m) };
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
    use std::time::Instant;

    fn word(region: Region<'_>) -> Result<&std::sync::atomic::AtomicU64, Error> {
        region
            .u64_at(0)
            .ok_or_else(|| Error::Damaged("rate limiter shard lock out of place".into()))
    }

    /// # Safety
    ///
    /// As on Linux.
    pub(crate) unsafe fn init(region: Region<'_>) -> Result<(), Error> {
        word(region)?.store(0, Relaxed);
        Ok(())
    }

    pub(crate) fn lock(region: Region<'_>) -> Result<ShardGuard<'_>, Error> {
        let w = word(region)?;
        let start = Instant::now();
        while w.compare_exchange_weak(0, 1, Acquire, Relaxed).is_err() {
            if start.elapsed() > TIMEOUT {
                return Err(Error::LockStuck);
            }
            std::thread::yield_now();
        }
        Ok(ShardGuard { region })
    }

    pub(crate) fn unlock(region: Region<'_>) {
        if let Ok(w) = word(region) {
            w.store(0, Release);
        }
    }
}

pub(crate) use imp::{init, lock};

impl Drop for ShardGuard<'_> {
    fn drop(&mut self) {
        imp::unlock(self.region);
    }
}
