//! GCRA for one key of a [`RateLimiter`](super::RateLimiter): the
//! [`TokenBucket`](crate::TokenBucket)'s algorithm step for step, on a plain
//! `u64` guarded by the shard's lock instead of an atomic.
//!
//! With `interval` the time to refill one token and
//! `burst = capacity * interval`, a request for `n` tokens at `now` conforms
//! when `max(tat, now) + n * interval - now <= burst` and then moves `tat`
//! there; a reservation always moves it and is due at
//! `max(tat, now) + n * interval - burst` (or now); a cancel before that
//! moves `tat` back by `n * interval`.
//!
//! # Implementation
//!
//! The cell is `tat` alone. A cell with `tat <= now` is a full bucket, the
//! same as a key never seen, so it expires at `tat`. A reservation waiting
//! ahead has pushed `tat` past `now + burst`, so every take, even of zero
//! tokens, is refused until it is due: FIFO with no queue.
//!
//! [`Gcra`] is public, with its steps on a bare `tat` (`take_tat`…), so that
//! `sluice-shm`'s limiter, whose cells live in memory shared by processes,
//! decides with this very code and gives the same [`Verdict`]s.

use super::table::Rule;
use super::{Denied, KeyReservation, LimiterConfigError, Verdict};
use crate::token_bucket::MAX_BURST_NANOS;

/// The GCRA parameters of a limiter, and its steps on one key's `tat`.
///
/// Every step takes `n <= capacity` (the limiter checks it first) and a `now`
/// that never goes back for the key.
///
/// # Examples
///
/// ```
/// use sluice_core::rate_limiter::Gcra;
///
/// let gcra = Gcra::new(2, 100).unwrap();
/// let mut tat = 0; // a key never seen
/// assert_eq!(gcra.take_tat(&mut tat, 1_000, 2).denied, None);
/// assert_eq!(gcra.take_tat(&mut tat, 1_000, 1).retry_after, 100);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    /// Nanoseconds to refill one token.
    pub(crate) interval: u64,
    /// `capacity * interval`: how far `tat` may run ahead of now.
    pub(crate) burst: u64,
}

/// One key's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GcraCell {
    /// Theoretical arrival time, nanoseconds on the limiter's clock: the
    /// instant the key's bucket is full again; at or before now means full.
    tat: u64,
}

impl Gcra {
    /// The parameters of `capacity` tokens of burst, one more every
    /// `interval_nanos`.
    ///
    /// # Errors
    ///
    /// As [`RateLimiter::with_clock`](super::RateLimiter::with_clock).
    pub fn new(capacity: u64, interval_nanos: u64) -> Result<Self, LimiterConfigError> {
        if capacity == 0 {
            return Err(LimiterConfigError::ZeroCapacity);
        }
        if interval_nanos == 0 {
            return Err(LimiterConfigError::ZeroInterval);
        }
        let burst = capacity
            .checked_mul(interval_nanos)
            .filter(|&burst| burst <= MAX_BURST_NANOS)
            .ok_or(LimiterConfigError::Overflow)?;
        Ok(Self {
            interval: interval_nanos,
            burst,
        })
    }

    /// Takes `n >= 1` tokens if they conform at `now`; moves `tat` only then.
    pub fn take_tat(&self, tat: &mut u64, now: u64, n: u64) -> Verdict {
        let (verdict, next) = self.verdict(*tat, now, n, true);
        if let Some(next) = next {
            *tat = next;
        }
        verdict
    }

    /// What a take of `n` would get at `now`.
    pub fn peek_tat(&self, tat: u64, now: u64, n: u64) -> Verdict {
        self.verdict(tat, now, n, false).0
    }

    /// Reserves `n` tokens, FIFO: moves `tat` and returns when they are due.
    pub fn reserve_tat(&self, tat: &mut u64, now: u64, n: u64) -> u64 {
        let next = (*tat).max(now).saturating_add(n * self.interval);
        *tat = next;
        // Saturating: early on a clock's timeline `next` can be below `burst`.
        next.saturating_sub(self.burst).max(now)
    }

    /// Gives back `tokens` of a reservation not yet due.
    pub fn cancel_tat(&self, tat: &mut u64, tokens: u64) {
        // Exact for the latest reservation, conservative for earlier ones
        // (later reservations keep their due times), as TokenBucket::cancel.
        *tat = tat.saturating_sub(tokens.saturating_mul(self.interval));
    }

    fn verdict(&self, tat: u64, now: u64, n: u64, take: bool) -> (Verdict, Option<u64>) {
        let base = tat.max(now);
        // n <= capacity, so the cost fits (capacity * interval does).
        let next = base.saturating_add(n * self.interval);
        if next - now > self.burst {
            let verdict = Verdict {
                denied: Some(Denied::Limited),
                remaining: self.burst.saturating_sub(base - now) / self.interval,
                retry_after: next - now - self.burst,
                reset_after: tat.saturating_sub(now),
            };
            return (verdict, None);
        }
        let after = if take { next } else { base };
        let verdict = Verdict {
            denied: None,
            remaining: (self.burst - (after - now)) / self.interval,
            retry_after: 0,
            reset_after: if take { next - now } else { tat.saturating_sub(now) },
        };
        (verdict, take.then_some(next))
    }
}

impl Rule for Gcra {
    type State = GcraCell;

    #[inline]
    fn expires_at(&self, s: &GcraCell) -> u64 {
        s.tat
    }

    fn take(&self, s: &mut GcraCell, now: u64, n: u64) -> Verdict {
        self.take_tat(&mut s.tat, now, n)
    }

    fn peek(&self, s: &GcraCell, now: u64, n: u64) -> Verdict {
        self.peek_tat(s.tat, now, n)
    }

    fn reserve(&self, s: &mut GcraCell, now: u64, n: u64) -> u64 {
        self.reserve_tat(&mut s.tat, now, n)
    }

    fn cancel(&self, s: &mut GcraCell, _now: u64, reservation: &KeyReservation) {
        self.cancel_tat(&mut s.tat, reservation.tokens);
    }
}
