//! The sliding-window estimate for one key of a
//! [`RateLimiter`](super::RateLimiter), with FIFO reservations.
//!
//! Time is cut into windows of `W = capacity * interval` nanoseconds; window
//! `k` is `[k * W, (k + 1) * W)`. At a time `e` nanoseconds into window `k`
//! the key's estimate is `count[k - 1] * (W - e) / W + count[k]` (the
//! previous window weighted by how much of it still overlaps the last `W`
//! nanoseconds; Cloudflare's "counting things, a lot of different things"),
//! and a request of `n` conforms when the estimate plus `n` is at most
//! `limit = capacity`. Decided exactly in `u128`:
//! `count[k-1] * (W - e) + (count[k] + n) * W <= limit * W`.
//!
//! # Reservations
//!
//! A reservation is placed at the earliest `t >= max(now, last)` at which it
//! conforms, and counted into window `k(t)`; `last` becomes `t`. So requests
//! are counted in the order made and `last` is the latest counted time: a
//! `try_take` while `last > now` is refused (someone waits ahead), which
//! makes reservations FIFO per key. The earliest `t` lies in the window of
//! `max(now, last)`, the next one, or (only for `n == limit` after a
//! non-empty window) the one after, which starts empty.
//!
//! A cancel before `ready_at` subtracts the reservation's tokens from its
//! window's count when that window is one the cell still keeps (the window of
//! `last` or the one before); a reservation in an older window weighs nothing
//! any more for the times that are left, so it refunds nothing: never
//! over-granting. `last` stays where it was, so takes still wait until then
//! (conservative: the limiter cannot know the due time of the reservation
//! before the cancelled one).
//!
//! # Implementation
//!
//! A cell keeps `last` and the counts of windows `k(last) - 1` and
//! `k(last)`: every counted request is at or before `last`, so no later time
//! reads an older window, and window `k(last) + 1` is empty. Reading the
//! counts at a later window shifts them (`k + 1`: the current count becomes
//! the previous one; `k + 2` and later: both zero). A cell whose windows weigh
//! nothing from now on and with `last <= now` decides exactly like a key never
//! seen, so it expires at `max(last, end of the weight)`.

use super::table::Rule;
use super::{Denied, KeyReservation, Verdict};

/// The sliding-window parameters of a limiter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Requests (tokens) per window: the capacity.
    pub(crate) limit: u64,
    /// The window, `capacity * interval` nanoseconds (at least 1).
    pub(crate) window: u64,
}

/// One key's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowCell {
    /// The time of the latest counted request, nanoseconds on the limiter's
    /// clock (a take's now, a reservation's `ready_at`); `k(last)` is the
    /// cell's current window.
    last: u64,
    /// Tokens counted in window `k(last) - 1`.
    prev: u64,
    /// Tokens counted in window `k(last)`.
    cur: u64,
}

impl Window {
    /// The counts (previous, current) seen from window `k >= k(last)`.
    #[inline]
    fn counts_at(&self, s: &WindowCell, k: u64) -> (u64, u64) {
        match k - s.last / self.window {
            0 => (s.prev, s.cur),
            1 => (s.cur, 0),
            _ => (0, 0),
        }
    }

    /// Whether `n` more conforms `e` nanoseconds into a window with counts
    /// `prev`, `cur`.
    #[inline]
    fn conforms(&self, prev: u64, cur: u64, e: u64, n: u64) -> bool {
        let w = u128::from(self.window);
        u128::from(prev) * (w - u128::from(e)) + (u128::from(cur) + u128::from(n)) * w <= u128::from(self.limit) * w
    }

    /// Whole tokens left: `floor(limit - estimate)`.
    #[inline]
    fn remaining(&self, prev: u64, cur: u64, e: u64) -> u64 {
        let w = u128::from(self.window);
        let room =
            (u128::from(self.limit) * w).saturating_sub(u128::from(prev) * (w - u128::from(e)) + u128::from(cur) * w);
        // At most `limit`, so it fits.
        (room / w) as u64
    }

    /// The earliest offset `>= from` into a window with counts `prev`, `cur`
    /// at which `n` more conforms, if any.
    fn earliest(&self, prev: u64, cur: u64, n: u64, from: u64) -> Option<u64> {
        let left = self.limit.checked_sub(cur)?.checked_sub(n)?;
        if prev == 0 {
            return Some(from);
        }
        // prev * (W - e) <= left * W  <=>  W - e <= floor(left * W / prev).
        let w = u128::from(self.window);
        let slack = u128::from(left) * w / u128::from(prev);
        if slack >= w {
            return Some(from);
        }
        // slack < W, so it fits.
        let e = from.max(self.window - slack as u64);
        (e < self.window).then_some(e)
    }

    /// When `n` tokens would conform next, FIFO behind every counted request.
    fn place(&self, s: &WindowCell, now: u64, n: u64) -> u64 {
        let start = now.max(s.last);
        let k = start / self.window;
        let (prev, cur) = self.counts_at(s, k);
        let at = |k: u128, e: u64| {
            let t = k * u128::from(self.window) + u128::from(e);
            u64::try_from(t).unwrap_or(u64::MAX)
        };
        if let Some(e) = self.earliest(prev, cur, n, start % self.window) {
            return at(u128::from(k), e);
        }
        if let Some(e) = self.earliest(cur, 0, n, 0) {
            return at(u128::from(k) + 1, e);
        }
        // Windows k + 1 and k + 2 are empty, and n <= limit.
        at(u128::from(k) + 2, 0)
    }

    fn count(&self, s: &mut WindowCell, t: u64, n: u64) {
        let (prev, cur) = self.counts_at(s, t / self.window);
        *s = WindowCell {
            last: t,
            prev,
            cur: cur + n,
        };
    }

    fn verdict(&self, s: &WindowCell, now: u64, n: u64) -> Result<Verdict, Verdict> {
        let denied = |remaining| Verdict {
            denied: Some(Denied::Limited),
            remaining,
            retry_after: self.place(s, now, n) - now,
            reset_after: self.expires_at(s).saturating_sub(now),
        };
        if s.last > now {
            return Err(denied(0));
        }
        let (k, e) = (now / self.window, now % self.window);
        let (prev, cur) = self.counts_at(s, k);
        if !self.conforms(prev, cur, e, n) {
            return Err(denied(self.remaining(prev, cur, e)));
        }
        Ok(Verdict {
            denied: None,
            remaining: self.remaining(prev, cur, e),
            retry_after: 0,
            reset_after: self.expires_at(s).saturating_sub(now),
        })
    }
}

impl Rule for Window {
    type State = WindowCell;

    fn expires_at(&self, s: &WindowCell) -> u64 {
        let k = u128::from(s.last / self.window);
        let weighs_until = if s.cur > 0 {
            (k + 2) * u128::from(self.window)
        } else if s.prev > 0 {
            (k + 1) * u128::from(self.window)
        } else {
            0
        };
        u64::try_from(weighs_until).unwrap_or(u64::MAX).max(s.last)
    }

    fn take(&self, s: &mut WindowCell, now: u64, n: u64) -> Verdict {
        match self.verdict(s, now, n) {
            Ok(_) => {
                self.count(s, now, n);
                let (prev, cur) = (s.prev, s.cur);
                Verdict {
                    denied: None,
                    remaining: self.remaining(prev, cur, now % self.window),
                    retry_after: 0,
                    reset_after: self.expires_at(s).saturating_sub(now),
                }
            }
            Err(verdict) => verdict,
        }
    }

    fn peek(&self, s: &WindowCell, now: u64, n: u64) -> Verdict {
        self.verdict(s, now, n).unwrap_or_else(|v| v)
    }

    fn reserve(&self, s: &mut WindowCell, now: u64, n: u64) -> u64 {
        let t = self.place(s, now, n);
        if n > 0 {
            self.count(s, t, n);
        }
        t
    }

    fn cancel(&self, s: &mut WindowCell, _now: u64, reservation: &KeyReservation) {
        let own = s.last / self.window;
        let k = reservation.ready_at / self.window;
        let count = if k == own {
            &mut s.cur
        } else if Some(own) == k.checked_add(1) {
            &mut s.prev
        } else {
            // Its window no longer weighs on any time still ahead (or it was
            // made before a reset): nothing to give back.
            return;
        };
        *count = count.saturating_sub(reservation.tokens);
    }
}
