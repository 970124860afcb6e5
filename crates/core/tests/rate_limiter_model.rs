//! The keyed rate limiter against a straightforward reference, step by step:
//! many keys, random takes, peeks, reservations, cancels, resets, purges and
//! clock advances, both algorithms, small `max_keys` with both `WhenFull`
//! modes. Every `Verdict` field and every reservation's `ready_at` must equal
//! the reference's.
//!
//! The reference keeps, per key, GCRA's `tat` or the sliding window's list of
//! counted requests (time, tokens), and answers by brute force: the earliest
//! conforming time by scanning nanoseconds, the remaining tokens by trying
//! each count. It never drops a key's state when it expires (it only stops
//! counting it as live), so the limiter dropping or sweeping expired cells
//! must change no answer.
#![cfg(not(loom))]

mod common;

use std::collections::HashMap;

use common::stress;

use proptest::prelude::*;
use sluice_core::{
    Algorithm, Clock, Denied, FakeClock, KeyBuf, KeyReservation, LimiterConfig, RateLimiter, RequestError, Verdict,
    WhenFull,
};

#[derive(Debug, Clone, Default)]
struct RefKey {
    /// GCRA: theoretical arrival time.
    tat: u64,
    /// Sliding window: counted requests (time, tokens; negative: a refund).
    events: Vec<(u64, i64)>,
    /// Sliding window: time of the latest counted request.
    last: u64,
    /// Tick of the latest take or reservation (LRU).
    used: u64,
    /// Bumped when the key is reset or evicted.
    epoch: u64,
}

struct Reference {
    config: LimiterConfig,
    keys: HashMap<KeyBuf, RefKey>,
    tick: u64,
    /// Live keys reset or evicted so far (the limiter counts them per shard;
    /// these configurations have one shard). A cancel refunds only when it
    /// is unchanged since its reservation was made.
    forgotten: u64,
}

impl Reference {
    fn w(&self) -> u64 {
        self.config.capacity * self.config.interval_nanos
    }

    fn sum(&self, k: &RefKey, window: i128) -> i128 {
        let w = i128::from(self.w());
        k.events
            .iter()
            .filter(|(t, _)| i128::from(*t) / w == window)
            .map(|(_, n)| i128::from(*n))
            .sum()
    }

    /// Sliding window: `prev * (W - e) + (cur + n) * W` and `limit * W` at `t`.
    fn window_load(&self, k: &RefKey, t: u64, n: u64) -> (i128, i128) {
        let w = i128::from(self.w());
        let (kk, e) = (i128::from(t) / w, i128::from(t) % w);
        let (prev, cur) = (self.sum(k, kk - 1), self.sum(k, kk));
        (
            prev * (w - e) + (cur + i128::from(n)) * w,
            i128::from(self.config.capacity) * w,
        )
    }

    fn conforms(&self, k: &RefKey, t: u64, n: u64) -> bool {
        match self.config.algorithm {
            Algorithm::Gcra => {
                let i = self.config.interval_nanos;
                k.tat.max(t) + n * i - t <= self.config.capacity * i
            }
            Algorithm::SlidingWindow => {
                let (load, limit) = self.window_load(k, t, n);
                t >= k.last && load <= limit
            }
        }
    }

    /// Earliest time from `now` at which `n` conforms, FIFO (brute force).
    fn place(&self, k: &RefKey, now: u64, n: u64) -> u64 {
        let start = match self.config.algorithm {
            Algorithm::Gcra => now,
            Algorithm::SlidingWindow => now.max(k.last),
        };
        (start..).find(|&t| self.conforms(k, t, n)).unwrap()
    }

    fn remaining(&self, k: &RefKey, now: u64) -> u64 {
        (0..=self.config.capacity)
            .rev()
            .find(|&r| match self.config.algorithm {
                Algorithm::Gcra => {
                    let i = self.config.interval_nanos;
                    k.tat.max(now) + r * i - now <= self.config.capacity * i
                }
                Algorithm::SlidingWindow => {
                    let (load, limit) = self.window_load(k, now, r);
                    k.last <= now && load <= limit
                }
            })
            .unwrap_or(0)
    }

    /// First time from `now` at which the key decides like a fresh one.
    fn expiry(&self, k: &RefKey, now: u64) -> u64 {
        match self.config.algorithm {
            Algorithm::Gcra => k.tat.max(now),
            Algorithm::SlidingWindow => (now..)
                .find(|&t| {
                    let w = i128::from(self.w());
                    let kk = i128::from(t) / w;
                    t >= k.last && self.sum(k, kk) == 0 && self.sum(k, kk - 1) == 0
                })
                .unwrap(),
        }
    }

    fn live(&self, k: &RefKey, now: u64) -> bool {
        self.expiry(k, now) > now
    }

    fn verdict(&self, k: &RefKey, now: u64, n: u64, allowed: bool) -> Verdict {
        Verdict {
            denied: (!allowed).then_some(Denied::Limited),
            remaining: self.remaining(k, now),
            retry_after: if allowed { 0 } else { self.place(k, now, n) - now },
            reset_after: self.expiry(k, now) - now,
        }
    }

    /// Sliding window: counts `n` at `t`.
    fn count(&mut self, key: &KeyBuf, t: u64, n: u64) {
        let k = self.keys.get_mut(key).unwrap();
        k.events.push((t, n as i64));
        k.last = t;
    }

    /// Whether `key` is live, or a cell could be made for it without evicting.
    fn room(&self, key: &KeyBuf, now: u64) -> bool {
        let own_live = self.keys.get(key).is_some_and(|k| self.live(k, now));
        own_live
            || (self.keys.iter().filter(|(k, v)| *k != key && self.live(v, now)).count() as u64) < self.config.max_keys
    }

    /// Makes sure `key` may hold state: false if it is new (or expired) and
    /// every other slot is live and the limiter refuses. Evicts if told to.
    fn admit(&mut self, key: &KeyBuf, now: u64) -> bool {
        let own_live = self.keys.get(key).is_some_and(|k| self.live(k, now));
        if !own_live {
            let live: Vec<(u64, KeyBuf)> = self
                .keys
                .iter()
                .filter(|(k, v)| *k != key && self.live(v, now))
                .map(|(k, v)| (v.used, k.clone()))
                .collect();
            if live.len() as u64 >= self.config.max_keys {
                match self.config.when_full {
                    WhenFull::Refuse => return false,
                    WhenFull::EvictLeastRecent => {
                        let victim = live.iter().min_by_key(|(used, _)| *used).unwrap().1.clone();
                        let epoch = self.keys[&victim].epoch + 1;
                        self.forgotten += 1;
                        self.keys.insert(
                            victim,
                            RefKey {
                                epoch,
                                ..RefKey::default()
                            },
                        );
                    }
                }
            }
        }
        self.tick += 1;
        let tick = self.tick;
        self.keys.entry(key.clone()).or_default().used = tick;
        true
    }

    fn get(&self, key: &KeyBuf) -> RefKey {
        self.keys.get(key).cloned().unwrap_or_default()
    }

    fn try_take(&mut self, key: &KeyBuf, n: u64, now: u64) -> Verdict {
        if n == 0 {
            return self.peek(key, 0, now);
        }
        if !self.admit(key, now) {
            return self.keys_full();
        }
        let k = self.get(key);
        if !self.conforms(&k, now, n) {
            return self.verdict(&k, now, n, false);
        }
        match self.config.algorithm {
            Algorithm::Gcra => {
                let i = self.config.interval_nanos;
                self.keys.get_mut(key).unwrap().tat = k.tat.max(now) + n * i;
            }
            Algorithm::SlidingWindow => self.count(key, now, n),
        }
        let k = self.get(key);
        self.verdict(&k, now, n, true)
    }

    /// What a new key with no room gets.
    fn keys_full(&self) -> Verdict {
        Verdict {
            denied: Some(Denied::KeysFull),
            remaining: 0,
            retry_after: self.config.interval_nanos,
            reset_after: 0,
        }
    }

    fn peek(&self, key: &KeyBuf, n: u64, now: u64) -> Verdict {
        if n > 0 && self.config.when_full == WhenFull::Refuse && !self.room(key, now) {
            return self.keys_full();
        }
        let k = self.get(key);
        let allowed = self.conforms(&k, now, n);
        self.verdict(&k, now, n, allowed)
    }

    fn reserve(&mut self, key: &KeyBuf, n: u64, now: u64) -> Result<u64, RequestError> {
        let k = self.get(key);
        if n == 0 {
            return Ok(self.place(&k, now, 0));
        }
        if !self.admit(key, now) {
            return Err(RequestError::KeysFull);
        }
        let k = self.get(key);
        match self.config.algorithm {
            Algorithm::Gcra => {
                let i = self.config.interval_nanos;
                let next = k.tat.max(now) + n * i;
                self.keys.get_mut(key).unwrap().tat = next;
                Ok(next.saturating_sub(self.config.capacity * i).max(now))
            }
            Algorithm::SlidingWindow => {
                let t = self.place(&k, now, n);
                self.count(key, t, n);
                Ok(t)
            }
        }
    }

    fn cancel(&mut self, key: &KeyBuf, r: &KeyReservation, forgotten: u64, now: u64) -> bool {
        if r.ready_at <= now {
            return false;
        }
        if forgotten != self.forgotten {
            // Withdrawn, nothing given back: the key may have a new state.
            return true;
        }
        let w = self.w();
        let i = self.config.interval_nanos;
        let algorithm = self.config.algorithm;
        if let Some(k) = self.keys.get_mut(key) {
            match algorithm {
                Algorithm::Gcra => k.tat = k.tat.saturating_sub(r.tokens * i),
                Algorithm::SlidingWindow => {
                    if r.ready_at / w + 1 >= k.last / w {
                        k.events.push((r.ready_at, -(r.tokens as i64)));
                    }
                }
            }
        }
        true
    }

    fn reset(&mut self, key: &KeyBuf, now: u64) -> bool {
        let live = self.keys.get(key).is_some_and(|k| self.live(k, now));
        self.forgotten += u64::from(live);
        if let Some(k) = self.keys.get_mut(key) {
            *k = RefKey {
                epoch: k.epoch + 1,
                ..RefKey::default()
            };
        }
        live
    }

    fn live_count(&self, now: u64) -> usize {
        self.keys.values().filter(|k| self.live(k, now)).count()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Take(usize, u64),
    Peek(usize, u64),
    Reserve(usize, u64),
    Cancel(usize),
    Reset(usize),
    Purge,
    Advance(u64),
}

fn keys() -> Vec<KeyBuf> {
    let mut keys: Vec<KeyBuf> = (0..4).map(KeyBuf::Int).collect();
    keys.extend(
        [
            "1",
            "255.255.255.255",
            "user:1234567",
            "a key longer than fifteen bytes",
        ]
        .map(|s| KeyBuf::Bytes(s.as_bytes().into())),
    );
    keys
}

/// Operations on the 8 keys, asking for up to `most` tokens, moving the
/// clock up to `far` at a time.
fn op(most: u64, far: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8usize, 0..=most).prop_map(|(k, n)| Op::Take(k, n)),
        1 => (0..8usize, 0..=most).prop_map(|(k, n)| Op::Peek(k, n)),
        2 => (0..8usize, 0..=most).prop_map(|(k, n)| Op::Reserve(k, n)),
        1 => (0..16usize).prop_map(Op::Cancel),
        1 => (0..8usize).prop_map(Op::Reset),
        1 => Just(Op::Purge),
        3 => (0..far).prop_map(Op::Advance),
    ]
}

fn run(config: LimiterConfig, start: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let limiter = RateLimiter::with_clock(config, FakeClock::new(start)).unwrap();
    let mut reference = Reference {
        config,
        keys: HashMap::new(),
        tick: 0,
        forgotten: 0,
    };
    let keys = keys();
    let mut outstanding: Vec<(KeyBuf, KeyReservation, u64)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let now = limiter.clock().now();
        let too_many = |n: u64| RequestError::TooMany {
            requested: n,
            capacity: config.capacity,
        };
        match op {
            Op::Take(k, n) => {
                let got = limiter.try_take(keys[k].as_key(), n);
                if n > config.capacity {
                    prop_assert_eq!(got, Err(too_many(n)), "step {}", step);
                } else {
                    let want = reference.try_take(&keys[k], n, now);
                    prop_assert_eq!(got, Ok(want), "step {} take {:?} {}", step, keys[k], n);
                }
            }
            Op::Peek(k, n) => {
                let got = limiter.peek(keys[k].as_key(), n);
                if n > config.capacity {
                    prop_assert_eq!(got, Err(too_many(n)), "step {}", step);
                } else {
                    prop_assert_eq!(got, Ok(reference.peek(&keys[k], n, now)), "step {} peek", step);
                }
            }
            Op::Reserve(k, n) => {
                let got = limiter.reserve(keys[k].as_key(), n);
                if n > config.capacity {
                    prop_assert_eq!(got, Err(too_many(n)), "step {}", step);
                    continue;
                }
                let want = reference.reserve(&keys[k], n, now);
                prop_assert_eq!(
                    got.map(|r| r.ready_at),
                    want,
                    "step {} reserve {:?} {}",
                    step,
                    keys[k],
                    n
                );
                if let Ok(r) = got {
                    prop_assert_eq!(r.tokens, n);
                    outstanding.push((keys[k].clone(), r, reference.forgotten));
                }
            }
            Op::Cancel(i) => {
                if outstanding.is_empty() {
                    continue;
                }
                let (key, r, forgotten) = outstanding.swap_remove(i % outstanding.len());
                let want = reference.cancel(&key, &r, forgotten, now);
                prop_assert_eq!(limiter.cancel(key.as_key(), &r), want, "step {} cancel", step);
            }
            Op::Reset(k) => {
                let want = reference.reset(&keys[k], now);
                prop_assert_eq!(limiter.reset(keys[k].as_key()), want, "step {} reset", step);
            }
            Op::Purge => {
                limiter.purge();
                prop_assert_eq!(
                    limiter.len(),
                    reference.live_count(now),
                    "step {}: a purge leaves the live cells",
                    step
                );
            }
            Op::Advance(d) => limiter.clock().advance(d),
        }
        prop_assert!(
            limiter.len() as u64 <= config.max_keys,
            "step {}: {} cells",
            step,
            limiter.len()
        );
        prop_assert!(
            limiter.len() >= reference.live_count(limiter.clock().now()),
            "step {}: a live cell is missing",
            step
        );
    }
    Ok(())
}

fn config(capacity: u64, interval: u64) -> impl Strategy<Value = LimiterConfig> {
    (
        1..=capacity,
        1..=interval,
        prop_oneof![Just(Algorithm::Gcra), Just(Algorithm::SlidingWindow)],
        1u64..7,
        prop_oneof![Just(WhenFull::Refuse), Just(WhenFull::EvictLeastRecent)],
    )
        .prop_map(
            |(capacity, interval_nanos, algorithm, max_keys, when_full)| LimiterConfig {
                capacity,
                interval_nanos,
                algorithm,
                max_keys,
                when_full,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: stress(512) as u32, ..ProptestConfig::default() })]

    /// Every answer equals the reference's, from the start of the clock's
    /// timeline and from later on it.
    #[test]
    fn every_answer_matches_the_reference(
        config in config(4, 6),
        start in prop_oneof![Just(0u64), 0u64..1_000],
        ops in proptest::collection::vec(op(6, 40), 1..120),
    ) {
        run(config, start, ops)?;
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: stress(256) as u32, ..ProptestConfig::default() })]

    /// The same with bigger limits and windows (more partial weights, longer
    /// queues of reservations) and more keys than cells.
    #[test]
    fn every_answer_matches_the_reference_with_bigger_limits(
        config in config(9, 13),
        start in 0u64..100_000,
        ops in proptest::collection::vec(op(10, 150), 1..100),
    ) {
        run(config, start, ops)?;
    }
}
