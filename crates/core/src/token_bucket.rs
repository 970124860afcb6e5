//! A token bucket implemented as GCRA, the generic cell rate algorithm.
//!
//! GCRA (ITU-T I.371; see also Brandur Leach, "Rate limiting, cells, and
//! GCRA") keeps one number per bucket: the theoretical arrival time `tat`, the
//! instant at which the bucket will be full again. With `interval` the time to
//! refill one token and `burst = capacity * interval`, a request for `n`
//! tokens at time `now` conforms when
//!
//! ```text
//! max(tat, now) + n * interval - now <= burst
//! ```
//!
//! and then moves `tat` to `max(tat, now) + n * interval`. That is exactly a
//! bucket of `capacity` tokens refilled continuously at one per `interval`,
//! with no refill timer and one atomic word of state.
//!
//! # Reservations
//!
//! [`reserve`](TokenBucket::reserve) always moves `tat` forward and tells the
//! caller when its tokens will be there. Because every reservation pushes `tat`
//! further, reservations are served in the order they were made, a large one
//! included, and a later `try_take` cannot take tokens a reservation is owed:
//! FIFO without a queue. [`cancel`](TokenBucket::cancel) gives a reservation's
//! tokens back before they are due.
//!
//! # Implementation
//!
//! `tat` is one `AtomicU64` of nanoseconds on the bucket's clock, starting at
//! 0 (at or before any reading: a full bucket). Where that word lives is a
//! type parameter (`S`): by default the bucket's own, padded to a cache line
//! ([`LocalTat`]); `sluice-shm` puts it in a segment shared by processes, so
//! both run this one implementation of GCRA. `try_take` is a CAS loop that
//! moves it only when the request conforms; `reserve` and `cancel` are
//! `fetch_update`s that always move it. Every access is `Relaxed`: the bucket
//! publishes a decision, not data (see "Memory ordering" on [`TokenBucket`]).
//!
//! Under contention a take costs one trip of `tat`'s cache line between
//! cores, which no ordering or padding removes; `try_take` avoids more trips.
//! It reads the clock once, before loading `tat`, not again on a retry: a
//! read inside the loop widens the window between load and CAS (2 threads:
//! ~0.7 failed CASes per take against ~0.1, 1.5x the time). A failed CAS
//! leaves the line here with its current value, so the retry goes at once,
//! with no backoff (1 to 4 pauses first: ~15% slower at 2 threads).

use std::fmt;
use std::ops::Deref;

use crate::cache_padded::CachePadded;
use crate::clock::{Clock, MonotonicClock};
use crate::sync::{AtomicU64, Ordering};

/// Longest burst, `capacity * interval` (and a keyed limiter's window):
/// 2^63 - 1 ns (about 292 years). While the clock reads under 2^63 ns,
/// `now + burst` fits in 64 bits, and a sum that saturates at `u64::MAX` (a
/// take tried on a bucket just emptied, a queue of reservations) is still
/// more than `burst` ahead of now, so it refuses or waits as the exact sum
/// would. With a burst near 2^64 a saturated (or wrapped) `tat` was within
/// `burst` of now and let every take and reservation through.
pub const MAX_BURST_NANOS: u64 = u64::MAX / 2;

/// A GCRA token bucket shared by any number of threads.
///
/// # Examples
///
/// ```
/// use sluice_core::{FakeClock, TakeError, TokenBucket};
///
/// // 2 tokens of burst, one more every 100 ns.
/// let bucket = TokenBucket::with_clock(2, 100, FakeClock::new(0)).unwrap();
/// assert_eq!(bucket.try_take(2), Ok(()));
/// assert_eq!(bucket.try_take(1), Err(TakeError::Insufficient { retry_after: 100 }));
/// bucket.clock().advance(100);
/// assert_eq!(bucket.try_take(1), Ok(()));
/// ```
///
/// # Memory ordering
///
/// The bucket publishes no data, only a decision, so every access to `tat`
/// is `Relaxed`: the CAS alone makes each decision atomic.
pub struct TokenBucket<C: Clock = MonotonicClock, S: Deref<Target = AtomicU64> = LocalTat> {
    /// Theoretical arrival time, in nanoseconds on `clock`'s timeline: the
    /// instant the bucket is full again; at or before now means full.
    tat: S,
    /// Nanoseconds to refill one token.
    interval: u64,
    capacity: u64,
    /// `capacity * interval`: how far `tat` may run ahead of now.
    burst: u64,
    clock: C,
}

/// The default home of a [`TokenBucket`]'s `tat`: a word of its own, on a
/// cache line of its own.
pub struct LocalTat(CachePadded<AtomicU64>);

impl LocalTat {
    /// A `tat` word holding `tat`.
    pub fn new(tat: u64) -> Self {
        Self(CachePadded(AtomicU64::new(tat)))
    }
}

impl Deref for LocalTat {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

/// Why [`TokenBucket::try_take`] or [`TokenBucket::reserve`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// Not enough tokens now; they will be after `retry_after` nanoseconds.
    Insufficient {
        /// Nanoseconds until the request would conform.
        retry_after: u64,
    },
    /// More tokens than the bucket holds: the request could never conform.
    TooMany {
        /// Tokens asked for.
        requested: u64,
        /// The bucket's capacity.
        capacity: u64,
    },
}

/// A bucket configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BucketConfigError {
    /// Capacity must be at least 1.
    ZeroCapacity,
    /// The refill rate must be finite, positive, and at most 10^9 per second
    /// (the interval is counted in whole nanoseconds).
    Rate(f64),
    /// The refill interval per token must be at least 1 ns.
    ZeroInterval,
    /// `capacity * interval` is over [`MAX_BURST_NANOS`].
    Overflow,
}

/// Tokens promised by [`TokenBucket::reserve`], due at `ready_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reservation is owed its tokens: wait for it or cancel it"]
pub struct Reservation {
    /// Tokens reserved.
    pub tokens: u64,
    /// When they are there, in nanoseconds on the bucket's clock.
    pub ready_at: u64,
}

impl Reservation {
    /// Nanoseconds to wait from `now` (zero if already due).
    pub fn wait(&self, now: u64) -> u64 {
        self.ready_at.saturating_sub(now)
    }
}

impl fmt::Display for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TakeError::Insufficient { retry_after } => write!(f, "not enough tokens, retry after {retry_after} ns"),
            TakeError::TooMany { requested, capacity } => {
                write!(f, "requested {requested} tokens from a bucket of {capacity}")
            }
        }
    }
}

impl fmt::Display for BucketConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketConfigError::ZeroCapacity => f.write_str("capacity must be at least 1"),
            BucketConfigError::Rate(rate) => {
                write!(
                    f,
                    "refill rate must be a positive number of at most 1e9 per second, got {rate}"
                )
            }
            BucketConfigError::ZeroInterval => f.write_str("the refill interval must be at least 1 ns"),
            BucketConfigError::Overflow => f.write_str("capacity times interval is over 2^63 - 1 nanoseconds"),
        }
    }
}

impl std::error::Error for TakeError {}
impl std::error::Error for BucketConfigError {}

impl TokenBucket<MonotonicClock> {
    /// A full bucket of `capacity` tokens refilled at `refill_per_second`,
    /// on the process's monotonic clock.
    ///
    /// # Errors
    ///
    /// [`BucketConfigError`] for a zero capacity or an unusable rate.
    pub fn new(capacity: u64, refill_per_second: f64) -> Result<Self, BucketConfigError> {
        if !(refill_per_second.is_finite() && refill_per_second > 0.0 && refill_per_second <= 1e9) {
            return Err(BucketConfigError::Rate(refill_per_second));
        }
        let interval = (1e9 / refill_per_second).round() as u64;
        Self::with_clock(capacity, interval, MonotonicClock::default())
    }
}

impl<C: Clock> TokenBucket<C> {
    /// A full bucket of `capacity` tokens, one more every `interval_nanos`,
    /// reading time from `clock`.
    ///
    /// # Errors
    ///
    /// [`BucketConfigError`] for a zero capacity or interval, or when
    /// `capacity * interval_nanos` overflows.
    pub fn with_clock(capacity: u64, interval_nanos: u64, clock: C) -> Result<Self, BucketConfigError> {
        // `tat` of 0 is at or before any `now`: the bucket starts full.
        Self::with_clock_at(capacity, interval_nanos, clock, 0)
    }

    /// A bucket that carries on from state kept elsewhere (sluice's Node
    /// binding keeps an unshared bucket in JavaScript): its theoretical arrival
    /// time is `tat` on `clock`'s timeline, so it is full again at `tat`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice_core::{FakeClock, TokenBucket};
    ///
    /// // 4 tokens of burst, one every 10 ns, full again 30 ns from now: 1 left.
    /// let bucket = TokenBucket::with_clock_at(4, 10, FakeClock::new(100), 130).unwrap();
    /// assert_eq!(bucket.available(), 1);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`with_clock`](Self::with_clock).
    pub fn with_clock_at(capacity: u64, interval_nanos: u64, clock: C, tat: u64) -> Result<Self, BucketConfigError> {
        TokenBucket::with_storage(capacity, interval_nanos, clock, LocalTat::new(tat))
    }
}

impl<C: Clock, S: Deref<Target = AtomicU64>> TokenBucket<C, S> {
    /// A bucket whose `tat` word is `tat`, wherever that lives, carrying on
    /// from the value it holds (0: full). `sluice-shm` passes a word in
    /// memory shared by processes, with a clock every process reads alike.
    ///
    /// # Errors
    ///
    /// As [`with_clock`](TokenBucket::with_clock).
    pub fn with_storage(capacity: u64, interval_nanos: u64, clock: C, tat: S) -> Result<Self, BucketConfigError> {
        if capacity == 0 {
            return Err(BucketConfigError::ZeroCapacity);
        }
        if interval_nanos == 0 {
            return Err(BucketConfigError::ZeroInterval);
        }
        let burst = capacity
            .checked_mul(interval_nanos)
            .filter(|&burst| burst <= MAX_BURST_NANOS)
            .ok_or(BucketConfigError::Overflow)?;
        Ok(Self {
            tat,
            interval: interval_nanos,
            capacity,
            burst,
            clock,
        })
    }

    /// The most tokens the bucket holds (its burst).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Nanoseconds to refill one token.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// The bucket's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Whole tokens available now.
    pub fn available(&self) -> u64 {
        let now = self.clock.now();
        let tat = self.tat.load(Ordering::Relaxed).max(now);
        (self.burst.saturating_sub(tat - now)) / self.interval
    }

    fn cost(&self, n: u64) -> Result<u64, TakeError> {
        if n > self.capacity {
            return Err(TakeError::TooMany {
                requested: n,
                capacity: self.capacity,
            });
        }
        // Cannot overflow: n <= capacity and capacity * interval fits.
        Ok(n * self.interval)
    }

    /// Takes `n` tokens if they are there now.
    ///
    /// # Errors
    ///
    /// [`TakeError::Insufficient`] with the wait until they would be;
    /// [`TakeError::TooMany`] if `n` exceeds the capacity.
    pub fn try_take(&self, n: u64) -> Result<(), TakeError> {
        let cost = self.cost(n)?;
        let now = self.clock.now();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(cost);
            if next - now > self.burst {
                return Err(TakeError::Insufficient {
                    retry_after: next - now - self.burst,
                });
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Reserves `n` tokens, due at the returned reservation's `ready_at`
    /// (now, if they are there). Reservations are served in the order made.
    ///
    /// # Errors
    ///
    /// [`TakeError::TooMany`] if `n` exceeds the capacity: such a request would
    /// never be served, so it is refused rather than left to hang.
    pub fn reserve(&self, n: u64) -> Result<Reservation, TakeError> {
        let cost = self.cost(n)?;
        let now = self.clock.now();
        // Relaxed: see the type's memory-ordering note.
        let previous = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.max(now).saturating_add(cost))
            })
            .unwrap_or_else(|tat| tat);
        let next = previous.max(now).saturating_add(cost);
        Ok(Reservation {
            tokens: n,
            // Saturating: early on a clock's timeline `next` can be below `burst`.
            ready_at: next.saturating_sub(self.burst).max(now),
        })
    }

    /// Gives back the tokens of a reservation that is not yet due, so later
    /// requests can use them. Returns whether it did: a reservation already due
    /// has had its tokens, and cancelling it changes nothing.
    pub fn cancel(&self, reservation: &Reservation) -> bool {
        let now = self.clock.now();
        if reservation.ready_at <= now {
            return false;
        }
        let refund = reservation.tokens * self.interval;
        // Moving `tat` back by the refund is exact for the last reservation and
        // conservative for earlier ones: later reservations keep their due
        // times, and the freed tokens become available to new requests.
        let _ = self.tat.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
            Some(tat.saturating_sub(refund))
        });
        true
    }
}

impl<C: Clock, S: Deref<Target = AtomicU64>> fmt::Debug for TokenBucket<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("capacity", &self.capacity)
            .field("interval", &self.interval)
            .field("available", &self.available())
            .finish()
    }
}
