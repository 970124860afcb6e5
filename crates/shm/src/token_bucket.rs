//! [`SharedTokenBucket`]: a GCRA token bucket shared by every process that
//! opens the same name (design `docs/design/cross-process.md` §4.2, §4.5).
//!
//! The state is one `tat` word in the segment, in `CLOCK_MONOTONIC`
//! nanoseconds: the core's [`MonotonicClock`](sluice_core::MonotonicClock)
//! counts from a per-process epoch, so two processes would disagree about
//! "now" (hazard 5); `CLOCK_MONOTONIC` is one timeline for the machine.
//!
//! The algorithm is `sluice_core::TokenBucket` itself, run on that word
//! (`TokenBucket::with_storage`): `try_take` is one CAS, lock-free across
//! processes, and records nothing else, so a process killed at any
//! instruction leaves a valid state (§4.2).
//!
//! Reservations are stateless, as in the core: the caller keeps the
//! [`Reservation`]. A process killed before redeeming or cancelling one
//! leaves its tokens spent: the conservative side of the bound
//! `capacity + rate × elapsed`, never an over-grant.
//!
//! After [`unlink`](SharedTokenBucket::unlink) the name is gone (the next
//! `open` makes a new bucket); processes that still hold the old one keep
//! sharing it among themselves until they drop it
//! ([`is_closed`](SharedTokenBucket::is_closed) tells them).

use std::ops::Deref;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use sluice_core::{Clock, Reservation, TakeError, TokenBucket};

use crate::{Error, Layout, Region, Segment};

/// `CLOCK_MONOTONIC` in nanoseconds: one timeline for every process of the
/// machine (in one time namespace, which the segment header checks).
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicNanos;

impl Clock for MonotonicNanos {
    #[inline]
    fn now(&self) -> u64 {
        monotonic_nanos()
    }
}

#[cfg(unix)]
fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(unix))]
fn monotonic_nanos() -> u64 {
    // No segment opens on these targets; a process-local timeline will do.
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The creation parameters, as the segment stores and compares them.
struct Params {
    capacity: u64,
    interval: u64,
}

impl Layout for Params {
    const KIND: u32 = 3;

    fn param_names() -> [&'static str; 8] {
        ["capacity", "interval_nanos", "", "", "", "", "", ""]
    }

    fn params(&self) -> [u64; 8] {
        [self.capacity, self.interval, 0, 0, 0, 0, 0, 0]
    }

    fn mutable_size(&self) -> usize {
        64
    }

    unsafe fn init(&self, _region: Region<'_>) {
        // A zeroed `tat` is at or before any reading: the bucket starts full.
    }

    fn validate(&self, region: Region<'_>) -> Result<(), Error> {
        // Every `tat` is a valid state (reservations may push it far ahead),
        // so only its place is checked.
        region
            .u64_at(0)
            .map(|_| ())
            .ok_or_else(|| Error::Damaged("token bucket region too small".into()))
    }
}

/// Where the `tat` word lives: in a segment (kept mapped by the `Arc`), or
/// in this process (for tests and oracles).
struct Tat {
    word: NonNull<AtomicU64>,
    _home: Home,
}

enum Home {
    Segment(#[allow(dead_code)] Arc<Segment>),
    Local(#[allow(dead_code)] Box<AtomicU64>),
}

// SAFETY: `word` points at an atomic that `_home` keeps alive (the mapping of
// the segment, or the box); atomics are `Send + Sync`.
unsafe impl Send for Tat {}
// SAFETY: as above.
unsafe impl Sync for Tat {}

impl Deref for Tat {
    type Target = AtomicU64;

    #[inline]
    fn deref(&self) -> &AtomicU64 {
        // SAFETY: `_home` keeps the word mapped (or allocated) while `self`
        // lives; it was bounds- and alignment-checked by `Region::u64_at`.
        unsafe { self.word.as_ref() }
    }
}

/// A GCRA token bucket in a named segment, shared by every process (and
/// thread) that opens the name.
pub struct SharedTokenBucket<C: Clock = MonotonicNanos> {
    bucket: TokenBucket<C, Tat>,
    segment: Option<Arc<Segment>>,
}

fn config_error(e: sluice_core::BucketConfigError) -> Error {
    Error::Invalid(format!("token bucket: {e}"))
}

impl SharedTokenBucket<MonotonicNanos> {
    /// Opens (or creates, full) the bucket `name` in `dir` (default:
    /// `$SLUICE_SHM_DIR`, else `/dev/shm/sluice-<euid>`): `capacity` tokens
    /// of burst, one more every `interval_nanos`.
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] naming `capacity` or `interval_nanos` when the
    /// existing bucket has another; [`Error::Invalid`] for a zero capacity or
    /// interval or a burst over 2^63 - 1 ns; any error of [`Segment::open`].
    pub fn open(dir: Option<&Path>, name: &str, capacity: u64, interval_nanos: u64) -> Result<Arc<Self>, Error> {
        // Checked before touching the file: a bad config creates nothing.
        TokenBucket::with_clock(capacity, interval_nanos, MonotonicNanos).map_err(config_error)?;
        let params = Params {
            capacity,
            interval: interval_nanos,
        };
        let segment = Segment::open(dir, name, &params)?;
        let word = segment
            .region()
            .u64_at(0)
            .ok_or_else(|| Error::Damaged("token bucket region too small".into()))?;
        let tat = Tat {
            word: NonNull::from(word),
            _home: Home::Segment(segment.clone()),
        };
        let bucket = TokenBucket::with_storage(capacity, interval_nanos, MonotonicNanos, tat).map_err(config_error)?;
        Ok(Arc::new(Self {
            bucket,
            segment: Some(segment),
        }))
    }

    /// Removes the name: the next `open` creates a new bucket. `Ok(false)`
    /// if there was none.
    ///
    /// # Errors
    ///
    /// As [`Segment::unlink`]; [`Error::Mismatch`] on `kind` if the name is
    /// another primitive.
    pub fn unlink(dir: Option<&Path>, name: &str) -> Result<bool, Error> {
        Segment::unlink::<Params>(dir, name)
    }
}

impl<C: Clock> SharedTokenBucket<C> {
    /// A bucket in this process's memory, full, on `clock`: the same code as
    /// a named one, for tests and for comparing with the core.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] as [`open`](SharedTokenBucket::open).
    pub fn in_memory(capacity: u64, interval_nanos: u64, clock: C) -> Result<Self, Error> {
        let home = Box::new(AtomicU64::new(0));
        let tat = Tat {
            word: NonNull::from(&*home),
            _home: Home::Local(home),
        };
        let bucket = TokenBucket::with_storage(capacity, interval_nanos, clock, tat).map_err(config_error)?;
        Ok(Self { bucket, segment: None })
    }

    /// Takes `n` tokens if they are there now (one CAS, no lock).
    ///
    /// # Errors
    ///
    /// As [`TokenBucket::try_take`].
    #[inline]
    pub fn try_take(&self, n: u64) -> Result<(), TakeError> {
        self.bucket.try_take(n)
    }

    /// Reserves `n` tokens, due at the reservation's `ready_at` (on
    /// [`now`](Self::now)'s timeline). The caller keeps the reservation.
    ///
    /// # Errors
    ///
    /// [`TakeError::TooMany`] if `n` exceeds the capacity.
    pub fn reserve(&self, n: u64) -> Result<Reservation, TakeError> {
        self.bucket.reserve(n)
    }

    /// Gives back a reservation not yet due; whether it did.
    pub fn cancel(&self, reservation: &Reservation) -> bool {
        self.bucket.cancel(reservation)
    }

    /// Whole tokens available now.
    pub fn available(&self) -> u64 {
        self.bucket.available()
    }

    /// The most tokens the bucket holds.
    pub fn capacity(&self) -> u64 {
        self.bucket.capacity()
    }

    /// Nanoseconds to refill one token.
    pub fn interval(&self) -> u64 {
        self.bucket.interval()
    }

    /// Now on the bucket's timeline (`CLOCK_MONOTONIC` ns for a named
    /// bucket): what `Reservation::ready_at` counts in.
    pub fn now(&self) -> u64 {
        self.bucket.clock().now()
    }

    /// The bucket's clock.
    pub fn clock(&self) -> &C {
        self.bucket.clock()
    }

    /// Whether the name was unlinked (the bucket still works for those who
    /// hold it; see the module docs). Always `false` in memory.
    pub fn is_closed(&self) -> bool {
        self.segment.as_ref().is_some_and(|s| s.is_closed())
    }

    /// The segment, for the binding (`None` in memory).
    pub fn segment(&self) -> Option<&Arc<Segment>> {
        self.segment.as_ref()
    }
}

impl<C: Clock> std::fmt::Debug for SharedTokenBucket<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTokenBucket")
            .field("capacity", &self.capacity())
            .field("interval", &self.interval())
            .field("available", &self.available())
            .finish()
    }
}
