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
//!
//! The counts are `u32` when the limit fits (a cell of 16 bytes instead of
//! 24: what keeps a million keys under 64 bytes each) and `u64` otherwise.
//! A decision needs one division: with `a = prev * (W - e)`, the whole
//! tokens left are `limit - cur - ceil(a / W)`, and `n` conforms when it is
//! at most that (`a <= m * W` iff `ceil(a / W) <= m`); `a` is computed in
//! `u64` when it fits and in `u128` otherwise.

use super::table::Rule;
use super::{Denied, KeyReservation, Verdict};

/// A window's count: `u32` when the limit fits, else `u64`.
pub(crate) trait Count: Copy + Default + Eq + Into<u64> + std::fmt::Debug {
    /// `v`, which is at most the limit, so it fits.
    fn new(v: u64) -> Self;
}

impl Count for u32 {
    #[inline]
    fn new(v: u64) -> Self {
        debug_assert!(v <= u64::from(u32::MAX));
        v as u32
    }
}

impl Count for u64 {
    #[inline]
    fn new(v: u64) -> Self {
        v
    }
}

/// The sliding-window parameters of a limiter, counting in `C`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window<C> {
    /// Requests (tokens) per window: the capacity; fits in `C`.
    pub(crate) limit: u64,
    /// The window, `capacity * interval` nanoseconds (at least 1).
    pub(crate) window: u64,
    pub(crate) count: std::marker::PhantomData<C>,
}

/// One key's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowCell<C> {
    /// The time of the latest counted request, nanoseconds on the limiter's
    /// clock (a take's now, a reservation's `ready_at`); `k(last)` is the
    /// cell's current window.
    last: u64,
    /// Tokens counted in window `k(last) - 1`.
    prev: C,
    /// Tokens counted in window `k(last)`.
    cur: C,
}

impl<C: Count> Window<C> {
    pub(crate) fn new(limit: u64, window: u64) -> Self {
        Self {
            limit,
            window,
            count: std::marker::PhantomData,
        }
    }

    /// The counts (previous, current) seen from the window starting at
    /// `start`, which is `k(last)`'s or a later one (no division: `last` is
    /// in that window, the one before, or an older one).
    #[inline]
    fn counts_at(&self, s: &WindowCell<C>, start: u64) -> (u64, u64) {
        if s.last >= start {
            (s.prev.into(), s.cur.into())
        } else if start - s.last <= self.window {
            (s.cur.into(), 0)
        } else {
            (0, 0)
        }
    }

    /// Whole tokens left `e` nanoseconds into a window with counts `prev`,
    /// `cur`: `floor(limit - prev * (W - e) / W - cur)`; `n` more conform
    /// exactly when `n` is at most this.
    #[inline]
    fn left(&self, prev: u64, cur: u64, e: u64) -> u64 {
        let w = self.window;
        let weighed = if prev == 0 {
            0
        } else if let Some(a) = prev.checked_mul(w - e) {
            a.div_ceil(w)
        } else {
            // At most prev <= limit, so it fits.
            (u128::from(prev) * u128::from(w - e)).div_ceil(u128::from(w)) as u64
        };
        self.limit.saturating_sub(cur).saturating_sub(weighed)
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
    fn place(&self, s: &WindowCell<C>, now: u64, n: u64) -> u64 {
        let start = now.max(s.last);
        let k = start / self.window;
        let e = start - k * self.window;
        let (prev, cur) = self.counts_at(s, start - e);
        let at = |k: u128, e: u64| {
            let t = k * u128::from(self.window) + u128::from(e);
            u64::try_from(t).unwrap_or(u64::MAX)
        };
        if let Some(e) = self.earliest(prev, cur, n, e) {
            return at(u128::from(k), e);
        }
        if let Some(e) = self.earliest(cur, 0, n, 0) {
            return at(u128::from(k) + 1, e);
        }
        // Windows k + 1 and k + 2 are empty, and n <= limit.
        at(u128::from(k) + 2, 0)
    }

    /// Counts `n` at `t >= last`.
    fn count(&self, s: &mut WindowCell<C>, t: u64, n: u64) {
        let (prev, cur) = self.counts_at(s, t - t % self.window);
        *s = WindowCell {
            last: t,
            prev: C::new(prev),
            cur: C::new(cur + n),
        };
    }

    /// Until a cell of window `k` with counts `prev`, `cur` and latest
    /// request at `last` weighs nothing, from `now`.
    #[inline]
    fn reset_after(&self, k: u64, prev: u64, cur: u64, last: u64, now: u64) -> u64 {
        let weighs_until = if cur > 0 {
            u128::from(k) + 2
        } else if prev > 0 {
            u128::from(k) + 1
        } else {
            0
        } * u128::from(self.window);
        u64::try_from(weighs_until)
            .unwrap_or(u64::MAX)
            .max(last)
            .saturating_sub(now)
    }

    /// The answer for a take (`take`) or peek of `n` at `now`, and the new
    /// counts (previous, current) of window `k(now)` if a take conforms.
    #[inline]
    fn decide(&self, s: &WindowCell<C>, now: u64, n: u64, take: bool) -> (Verdict, Option<(u64, u64)>) {
        if s.last > now {
            let verdict = Verdict {
                denied: Some(Denied::Limited),
                remaining: 0,
                retry_after: self.place(s, now, n) - now,
                reset_after: self.expires_at(s) - now,
            };
            return (verdict, None);
        }
        let k = now / self.window;
        let e = now - k * self.window;
        let (prev, cur) = self.counts_at(s, now - e);
        let left = self.left(prev, cur, e);
        if n > left {
            let verdict = Verdict {
                denied: Some(Denied::Limited),
                remaining: left,
                retry_after: self.place(s, now, n) - now,
                reset_after: self.expires_at(s).saturating_sub(now),
            };
            return (verdict, None);
        }
        if !take {
            let verdict = Verdict {
                denied: None,
                remaining: left,
                retry_after: 0,
                reset_after: self.expires_at(s).saturating_sub(now),
            };
            return (verdict, None);
        }
        let verdict = Verdict {
            denied: None,
            remaining: left - n,
            retry_after: 0,
            reset_after: self.reset_after(k, prev, cur + n, now, now),
        };
        (verdict, Some((prev, cur + n)))
    }
}

impl<C: Count> Rule for Window<C> {
    type State = WindowCell<C>;

    fn expires_at(&self, s: &WindowCell<C>) -> u64 {
        let k = s.last / self.window;
        self.reset_after(k, s.prev.into(), s.cur.into(), s.last, 0)
    }

    fn take(&self, s: &mut WindowCell<C>, now: u64, n: u64) -> Verdict {
        let (verdict, counts) = self.decide(s, now, n, true);
        if let Some((prev, cur)) = counts {
            *s = WindowCell {
                last: now,
                prev: C::new(prev),
                cur: C::new(cur),
            };
        }
        verdict
    }

    fn peek(&self, s: &WindowCell<C>, now: u64, n: u64) -> Verdict {
        self.decide(s, now, n, false).0
    }

    fn reserve(&self, s: &mut WindowCell<C>, now: u64, n: u64) -> u64 {
        let t = self.place(s, now, n);
        if n > 0 {
            self.count(s, t, n);
        }
        t
    }

    fn cancel(&self, s: &mut WindowCell<C>, _now: u64, reservation: &KeyReservation) {
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
        *count = C::new(Into::<u64>::into(*count).saturating_sub(reservation.tokens));
    }
}
