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

use super::table::Rule;
use super::{Denied, KeyReservation, Verdict};

/// The GCRA parameters of a limiter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gcra {
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
        let (verdict, next) = self.verdict(s.tat, now, n, true);
        if let Some(next) = next {
            s.tat = next;
        }
        verdict
    }

    fn peek(&self, s: &GcraCell, now: u64, n: u64) -> Verdict {
        self.verdict(s.tat, now, n, false).0
    }

    fn reserve(&self, s: &mut GcraCell, now: u64, n: u64) -> u64 {
        let next = s.tat.max(now).saturating_add(n * self.interval);
        s.tat = next;
        // Saturating: early on a clock's timeline `next` can be below `burst`.
        next.saturating_sub(self.burst).max(now)
    }

    fn cancel(&self, s: &mut GcraCell, _now: u64, reservation: &KeyReservation) {
        // Exact for the latest reservation, conservative for earlier ones
        // (later reservations keep their due times), as TokenBucket::cancel.
        s.tat = s.tat.saturating_sub(reservation.tokens.saturating_mul(self.interval));
    }
}
