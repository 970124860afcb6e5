//! Time for the token bucket, behind a trait so tests can drive it.

use std::sync::OnceLock;
use std::time::Instant;

use crate::sync::{AtomicU64, Ordering};

/// A monotonic timeline in nanoseconds. Every thread that shares a bucket
/// shares its clock, so all of them read the same timeline.
pub trait Clock: Send + Sync {
    /// Nanoseconds since this clock's epoch; never decreases.
    fn now(&self) -> u64;
}

/// The process's monotonic clock (`Instant`), counted from a process-wide
/// epoch, so every `MonotonicClock` reads the same timeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> u64 {
        // 2^64 ns is 584 years of uptime: the conversion cannot truncate in practice.
        epoch().elapsed().as_nanos() as u64
    }
}

/// A clock that only moves when told to: for tests, and for simulations.
///
/// # Examples
///
/// ```
/// use sluice_core::{Clock, FakeClock};
///
/// let clock = FakeClock::new(5);
/// clock.advance(10);
/// assert_eq!(clock.now(), 15);
/// ```
#[derive(Debug, Default)]
pub struct FakeClock {
    nanos: AtomicU64,
}

impl FakeClock {
    /// A clock reading `start`.
    pub fn new(start: u64) -> Self {
        Self {
            nanos: AtomicU64::new(start),
        }
    }

    /// Moves the clock forward by `nanos`.
    pub fn advance(&self, nanos: u64) {
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> u64 {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> u64 {
        (**self).now()
    }
}
