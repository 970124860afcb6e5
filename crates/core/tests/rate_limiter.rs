//! Behaviour of the keyed rate limiter on a fake clock, and a contended
//! check on the real clock. The step-by-step comparison with a reference is
//! `rate_limiter_model.rs`.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::stress;
use proptest::prelude::*;
use sluice_core::{
    Algorithm, Clock, Denied, FakeClock, Key, KeyBuf, LimiterConfig, LimiterConfigError, RateLimiter, RequestError,
    TokenBucket, Verdict, WhenFull, MAX_KEY_BYTES,
};

fn config(capacity: u64, interval_nanos: u64, algorithm: Algorithm) -> LimiterConfig {
    LimiterConfig {
        capacity,
        interval_nanos,
        algorithm,
        max_keys: 1_000,
        when_full: WhenFull::Refuse,
    }
}

fn limiter(config: LimiterConfig) -> RateLimiter<FakeClock> {
    RateLimiter::with_clock(config, FakeClock::new(1_000)).unwrap()
}

fn allowed(remaining: u64, reset_after: u64) -> Verdict {
    Verdict {
        denied: None,
        remaining,
        retry_after: 0,
        reset_after,
    }
}

fn limited(remaining: u64, retry_after: u64, reset_after: u64) -> Verdict {
    Verdict {
        denied: Some(Denied::Limited),
        remaining,
        retry_after,
        reset_after,
    }
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    let ok = config(3, 10, Algorithm::Gcra);
    let err = |c| RateLimiter::new(c).err();
    assert_eq!(
        err(LimiterConfig { capacity: 0, ..ok }),
        Some(LimiterConfigError::ZeroCapacity)
    );
    assert_eq!(
        err(LimiterConfig {
            interval_nanos: 0,
            ..ok
        }),
        Some(LimiterConfigError::ZeroInterval)
    );
    assert_eq!(
        err(LimiterConfig { max_keys: 0, ..ok }),
        Some(LimiterConfigError::ZeroMaxKeys)
    );
    assert_eq!(
        err(LimiterConfig {
            capacity: u64::MAX,
            interval_nanos: 2,
            ..ok
        }),
        Some(LimiterConfigError::Overflow)
    );
    assert!(RateLimiter::new(ok).is_ok());
    assert_eq!(RateLimiter::new(ok).unwrap().config(), &ok);
}

#[test]
fn bad_keys_and_oversized_requests_are_errors() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(config(3, 10, algorithm));
        assert_eq!(l.try_take(Key::Bytes(b""), 1), Err(RequestError::BadKey));
        let long = [7u8; MAX_KEY_BYTES + 1];
        assert_eq!(l.try_take(Key::Bytes(&long), 1), Err(RequestError::BadKey));
        assert_eq!(l.reserve(Key::Bytes(&long), 1), Err(RequestError::BadKey));
        assert_eq!(l.peek(Key::Bytes(b""), 1), Err(RequestError::BadKey));
        assert!(l.try_take(Key::Bytes(&long[..MAX_KEY_BYTES]), 1).is_ok());
        let too_many = RequestError::TooMany {
            requested: 4,
            capacity: 3,
        };
        assert_eq!(l.try_take(Key::Int(1), 4), Err(too_many));
        assert_eq!(l.reserve(Key::Int(1), 4).map(|r| r.ready_at), Err(too_many));
        assert_eq!(l.peek(Key::Int(1), 4), Err(too_many));
        assert_eq!(l.len(), 1);
    }
}

#[test]
fn an_integer_key_and_its_digits_are_different_keys() {
    let l = limiter(config(1, 10, Algorithm::Gcra));
    assert_eq!(l.try_take(Key::Int(1), 1).unwrap().denied, None);
    assert_eq!(l.try_take(Key::Bytes(b"1"), 1).unwrap().denied, None);
    assert_eq!(l.try_take(Key::Bytes(b"1\0"), 1).unwrap().denied, None);
    assert_eq!(l.try_take(Key::Int(1), 1).unwrap().denied, Some(Denied::Limited));
    assert_eq!(l.len(), 3);
    // Long keys (boxed) are compared exactly too.
    let a = [b'a'; 100];
    let mut b = a;
    b[99] = b'b';
    assert_eq!(l.try_take(Key::Bytes(&a), 1).unwrap().denied, None);
    assert_eq!(l.try_take(Key::Bytes(&b), 1).unwrap().denied, None);
    assert_eq!(l.try_take(Key::Bytes(&a), 1).unwrap().denied, Some(Denied::Limited));
}

#[test]
fn gcra_reports_remaining_retry_and_reset() {
    let l = limiter(config(3, 10, Algorithm::Gcra));
    let k = Key::Bytes(b"user:1");
    assert_eq!(l.peek(k, 1), Ok(allowed(3, 0)));
    assert_eq!(l.try_take(k, 2), Ok(allowed(1, 20)));
    assert_eq!(l.try_take(k, 2), Ok(limited(1, 10, 20)));
    l.clock().advance(5);
    assert_eq!(l.try_take(k, 1), Ok(allowed(0, 25)));
    assert_eq!(l.try_take(k, 1), Ok(limited(0, 5, 25)));
    l.clock().advance(25);
    assert_eq!(l.peek(k, 3), Ok(allowed(3, 0)));
    assert!(!l.reset(k), "full again: nothing to forget");
}

#[test]
fn gcra_decides_as_the_token_bucket_step_for_step() {
    let l = limiter(config(4, 7, Algorithm::Gcra));
    let bucket = TokenBucket::with_clock(4, 7, l.clock()).unwrap();
    let key = Key::Bytes(b"only");
    for step in 0u64..300 {
        let n = 1 + step % 4;
        if step % 5 == 0 {
            let (a, b) = (l.reserve(key, n).unwrap(), bucket.reserve(n).unwrap());
            assert_eq!((a.tokens, a.ready_at), (b.tokens, b.ready_at), "step {step}");
            if step % 3 == 0 {
                assert_eq!(l.cancel(key, &a), bucket.cancel(&b), "step {step}");
            }
        } else {
            let ours = l.try_take(key, n).unwrap();
            let theirs = bucket.try_take(n);
            assert_eq!(ours.denied.is_none(), theirs.is_ok(), "step {step}");
            if let Err(sluice_core::TakeError::Insufficient { retry_after }) = theirs {
                assert_eq!(ours.retry_after, retry_after, "step {step}");
            }
            assert_eq!(ours.remaining, bucket.available(), "step {step}");
        }
        l.clock().advance(step % 11);
    }
}

#[test]
fn sliding_window_weighs_the_previous_window_by_its_overlap() {
    // 4 per window of 40 ns (one token's share: 10 ns).
    let l = RateLimiter::with_clock(config(4, 10, Algorithm::SlidingWindow), FakeClock::new(0)).unwrap();
    let k = Key::Int(42);
    assert_eq!(l.try_take(k, 4), Ok(allowed(0, 80)));
    // Still window 0: nothing until window 1, where 4 weigh 4 * (1 - f).
    // At 10 ns into window 1 the estimate is 3: one more fits.
    assert_eq!(l.try_take(k, 1), Ok(limited(0, 50, 80)));
    l.clock().advance(50);
    assert_eq!(l.try_take(k, 1), Ok(allowed(0, 70)));
    // 4 * 0.75 + 1 = 4: the next needs the weight down by one more: 10 ns.
    assert_eq!(l.try_take(k, 1), Ok(limited(0, 10, 70)));
    l.clock().advance(10);
    assert_eq!(l.try_take(k, 1), Ok(allowed(0, 60)));
    // A whole window later only window 1's 2 weigh, by 0.75 at 90.
    l.clock().advance(30);
    assert_eq!(l.peek(k, 1), Ok(allowed(2, 30)));
    l.clock().advance(30);
    assert_eq!(l.peek(k, 4), Ok(allowed(4, 0)));
}

#[test]
fn a_full_request_after_a_busy_window_waits_for_an_empty_one() {
    let l = RateLimiter::with_clock(config(4, 10, Algorithm::SlidingWindow), FakeClock::new(0)).unwrap();
    let k = Key::Int(1);
    assert_eq!(l.try_take(k, 1), Ok(allowed(3, 80)));
    // 4 more can only fit once window 0's one weighs nothing: at 80.
    assert_eq!(l.try_take(k, 4), Ok(limited(3, 80, 80)));
    let r = l.reserve(k, 4).unwrap();
    assert_eq!(r.ready_at, 80);
    assert_eq!(r.wait(0), 80);
}

#[test]
fn a_take_is_refused_while_a_reservation_waits_ahead() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(config(2, 10, algorithm));
        let k = Key::Bytes(b"k");
        assert_eq!(l.try_take(k, 2).unwrap().denied, None);
        let r = l.reserve(k, 1).unwrap();
        assert!(r.ready_at > 1_000, "{algorithm:?}");
        let wait = r.ready_at - 1_000;
        // Even a probe of nothing waits behind it.
        assert_eq!(l.try_take(k, 0).unwrap().denied, Some(Denied::Limited), "{algorithm:?}");
        l.clock().advance(wait - 1);
        assert_eq!(l.try_take(k, 1).unwrap().denied, Some(Denied::Limited), "{algorithm:?}");
        let second = l.reserve(k, 1).unwrap();
        assert!(second.ready_at >= r.ready_at, "FIFO, {algorithm:?}");
        l.clock().advance(1);
        assert!(!l.cancel(k, &r), "due: its tokens are spent, {algorithm:?}");
    }
}

#[test]
fn cancel_gives_back_a_reservation_not_yet_due() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(config(2, 10, algorithm));
        let k = Key::Int(9);
        assert_eq!(l.try_take(k, 2).unwrap().denied, None);
        let r = l.reserve(k, 2).unwrap();
        let before = l.peek(k, 1).unwrap();
        assert!(l.cancel(k, &r), "{algorithm:?}");
        let after = l.peek(k, 1).unwrap();
        assert!(
            after.reset_after < before.reset_after,
            "{algorithm:?}: {before:?} {after:?}"
        );
        l.clock().advance(r.ready_at - 1_000);
        assert!(!l.cancel(k, &r), "{algorithm:?}");
    }
}

#[test]
fn a_reservation_made_before_its_key_was_reset_refunds_nothing_into_the_new_state() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(config(2, 10, algorithm));
        let k = Key::Int(9);
        assert_eq!(l.try_take(k, 2).unwrap().denied, None);
        let r = l.reserve(k, 2).unwrap();
        assert!(l.reset(k));
        assert_eq!(
            l.try_take(k, 2).unwrap().denied,
            None,
            "{algorithm:?}: fresh after reset"
        );
        // Withdrawn (not yet due), but the new state never counted its tokens.
        assert!(l.cancel(k, &r), "{algorithm:?}");
        assert_eq!(
            l.try_take(k, 2).unwrap().denied,
            Some(Denied::Limited),
            "{algorithm:?}: 4 tokens at one instant from a capacity of 2"
        );
    }
}

#[test]
fn a_reservation_made_before_its_key_was_evicted_refunds_nothing_into_the_new_state() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(LimiterConfig {
            max_keys: 1,
            when_full: WhenFull::EvictLeastRecent,
            ..config(2, 10, algorithm)
        });
        let (a, b) = (Key::Int(1), Key::Int(2));
        assert_eq!(l.try_take(a, 2).unwrap().denied, None);
        let r = l.reserve(a, 2).unwrap();
        assert_eq!(l.try_take(b, 1).unwrap().denied, None, "b evicts a");
        assert_eq!(
            l.try_take(a, 2).unwrap().denied,
            None,
            "{algorithm:?}: a is fresh again"
        );
        assert!(l.cancel(a, &r), "{algorithm:?}");
        assert_eq!(l.try_take(a, 2).unwrap().denied, Some(Denied::Limited), "{algorithm:?}");
    }
}

#[test]
fn zero_tokens_probe_without_storing_a_cell() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(config(2, 10, algorithm));
        assert_eq!(l.try_take(Key::Int(5), 0), Ok(allowed(2, 0)));
        let r = l.reserve(Key::Int(5), 0).unwrap();
        assert_eq!((r.tokens, r.ready_at), (0, 1_000));
        assert!(l.is_empty());
    }
}

#[test]
fn a_new_key_is_refused_when_every_cell_is_live() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(LimiterConfig {
            max_keys: 2,
            ..config(2, 10, algorithm)
        });
        assert_eq!(l.try_take(Key::Int(1), 1).unwrap().denied, None);
        assert_eq!(l.try_take(Key::Int(2), 1).unwrap().denied, None);
        let full = l.try_take(Key::Int(3), 1).unwrap();
        assert_eq!(full.denied, Some(Denied::KeysFull), "{algorithm:?}");
        assert_eq!(full.retry_after, 10);
        assert_eq!(l.reserve(Key::Int(3), 1), Err(RequestError::KeysFull));
        // Live keys keep working.
        assert_eq!(l.try_take(Key::Int(1), 1).unwrap().denied, None);
        // Once key 2's cell expires, its slot is free.
        l.clock().advance(100);
        assert_eq!(l.try_take(Key::Int(1), 1).unwrap().denied, None);
        assert_eq!(l.try_take(Key::Int(3), 1).unwrap().denied, None, "{algorithm:?}");
        assert_eq!(l.len(), 2);
        // A reset frees a slot at once.
        assert!(l.reset(Key::Int(1)));
        assert_eq!(l.try_take(Key::Int(4), 1).unwrap().denied, None);
    }
}

#[test]
fn the_least_recently_used_key_is_evicted_when_told_to() {
    let l = limiter(LimiterConfig {
        max_keys: 3,
        when_full: WhenFull::EvictLeastRecent,
        ..config(2, 10, Algorithm::Gcra)
    });
    for k in 1..=3 {
        assert_eq!(l.try_take(Key::Int(k), 2).unwrap().denied, None);
    }
    // Key 1 used again (even refused, it was used): key 2 is the oldest.
    assert_eq!(l.try_take(Key::Int(1), 1).unwrap().denied, Some(Denied::Limited));
    assert_eq!(l.try_take(Key::Int(4), 1).unwrap().denied, None);
    assert_eq!(l.len(), 3);
    assert_eq!(l.try_take(Key::Int(2), 2).unwrap().denied, None, "evicted: fresh");
    assert_eq!(
        l.try_take(Key::Int(1), 1).unwrap().denied,
        Some(Denied::Limited),
        "kept"
    );
    assert_eq!(l.try_take(Key::Int(4), 1).unwrap().denied, None, "kept, 1 left");
    assert_eq!(l.try_take(Key::Int(3), 2).unwrap().denied, None, "evicted by key 2");
}

#[test]
fn expired_cells_are_dropped_before_the_table_grows() {
    let l = RateLimiter::with_clock(
        LimiterConfig {
            max_keys: 1 << 20,
            ..config(5, 1_000, Algorithm::SlidingWindow)
        },
        FakeClock::new(0),
    )
    .unwrap();
    for round in 0..10i64 {
        for i in 0..10_000 {
            assert_eq!(l.try_take(Key::Int(round * 10_000 + i), 1).unwrap().denied, None);
        }
        // Two windows later every cell of this round has expired.
        l.clock().advance(10_000);
        assert!(l.len() <= 25_000, "round {round}: {} cells", l.len());
    }
    assert!(l.purge() > 0);
    assert!(l.is_empty());
}

proptest! {
    /// A cell that decides like a fresh key may be dropped at any moment:
    /// purging between any two steps changes no answer.
    #[test]
    fn dropping_an_idle_cell_never_changes_a_decision(
        sliding in any::<bool>(),
        steps in proptest::collection::vec((0u64..60, 0u64..4, 0u8..3), 1..100),
    ) {
        let algorithm = if sliding { Algorithm::SlidingWindow } else { Algorithm::Gcra };
        let kept = limiter(config(3, 10, algorithm));
        let purged = limiter(config(3, 10, algorithm));
        let key = KeyBuf::Bytes(b"user:1234567".as_slice().into());
        for (elapsed, n, what) in steps {
            kept.clock().advance(elapsed);
            purged.clock().advance(elapsed);
            purged.purge();
            match what {
                0 => prop_assert_eq!(kept.try_take(key.as_key(), n), purged.try_take(key.as_key(), n)),
                1 => prop_assert_eq!(kept.peek(key.as_key(), n), purged.peek(key.as_key(), n)),
                _ => prop_assert_eq!(kept.reserve(key.as_key(), n), purged.reserve(key.as_key(), n)),
            }
        }
    }
}

/// Runs `take` on 4 threads until `budget` has passed (bounded loops).
fn on_four_threads(budget: Duration, take: impl Fn(usize, u64) + Send + Sync + 'static) {
    let take = Arc::new(take);
    let began = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let take = take.clone();
            thread::spawn(move || {
                for round in 0..stress(50_000_000) as u64 {
                    if round % 256 == 0 && began.elapsed() > budget {
                        break;
                    }
                    take(t, round);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Four threads on 4 hot keys and 100,000 distinct ones: no key is granted
/// more than its burst plus its rate over the time elapsed.
#[test]
fn contended_grants_stay_within_the_rate_per_key() {
    const DISTINCT: usize = 100_000;
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        // 10 per ms per key.
        let cfg = LimiterConfig {
            max_keys: 200_000,
            ..config(10, 100_000, algorithm)
        };
        let limiter = Arc::new(RateLimiter::new(cfg).unwrap());
        let grants: Arc<Vec<AtomicU32>> = Arc::new((0..DISTINCT + 4).map(|_| AtomicU32::new(0)).collect());
        let (l, g) = (limiter.clone(), grants.clone());
        on_four_threads(Duration::from_millis(400), move |t, round| {
            let i = if round % 2 == 0 {
                DISTINCT + (round as usize / 2 + t) % 4
            } else {
                (round as usize * 7 + t * 25_000) % DISTINCT
            };
            if l.try_take(Key::Int(i as i64), 1 + round % 2).unwrap().denied.is_none() {
                g[i].fetch_add(1 + (round % 2) as u32, Ordering::Relaxed);
            }
        });
        let elapsed = limiter.clock().now();
        let window = cfg.capacity * cfg.interval_nanos;
        let bound = match algorithm {
            Algorithm::Gcra => cfg.capacity + elapsed / cfg.interval_nanos + 1,
            // At most `limit` per window, over every window touched.
            Algorithm::SlidingWindow => cfg.capacity * (elapsed / window + 2),
        };
        let most = grants.iter().map(|g| g.load(Ordering::Relaxed)).max().unwrap();
        let hot: u32 = grants[DISTINCT..].iter().map(|g| g.load(Ordering::Relaxed)).sum();
        assert!(
            u64::from(most) <= bound,
            "{algorithm:?}: {most} grants to one key, bound {bound}"
        );
        assert!(hot > 0, "{algorithm:?}");
        assert!(limiter.len() <= DISTINCT + 4);
    }
}

/// Four threads inserting distinct keys into a small table, evicting or
/// refusing: it never holds more than `max_keys` cells.
#[test]
fn contended_new_keys_never_exceed_max_keys() {
    for (when_full, algorithm) in [
        (WhenFull::EvictLeastRecent, Algorithm::Gcra),
        (WhenFull::Refuse, Algorithm::SlidingWindow),
    ] {
        let cfg = LimiterConfig {
            max_keys: 5_000,
            when_full,
            ..config(10, 1_000_000_000, algorithm)
        };
        let limiter = Arc::new(RateLimiter::new(cfg).unwrap());
        // A fixed count of new keys, not a time budget: twice what fits, so
        // the table is full at the end however slow the run (valgrind).
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let l = limiter.clone();
                thread::spawn(move || {
                    for round in 0..2_500u64 {
                        let key = format!("user:{}", round * 4 + t);
                        let _ = l.try_take(Key::Bytes(key.as_bytes()), 1).unwrap();
                        if round % 256 == 0 {
                            assert!(l.len() <= 5_000);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(limiter.len() <= 5_000, "{}", limiter.len());
        assert!(limiter.len() >= 4_000, "a full table: {}", limiter.len());
    }
}

#[test]
fn a_sliding_window_over_u32_max_counts_in_64_bits() {
    let capacity = u64::from(u32::MAX) + 2;
    let l = RateLimiter::with_clock(config(capacity, 1, Algorithm::SlidingWindow), FakeClock::new(0)).unwrap();
    let k = Key::Int(1);
    assert_eq!(l.try_take(k, capacity - 1), Ok(allowed(1, 2 * capacity)));
    assert_eq!(l.try_take(k, 1), Ok(allowed(0, 2 * capacity)));
    // Window 1 starts with all of window 0 weighing: 1 ns in, one token fits.
    assert_eq!(l.try_take(k, 1), Ok(limited(0, capacity + 1, 2 * capacity)));
    l.clock().advance(capacity + 1);
    assert_eq!(l.try_take(k, 1), Ok(allowed(0, 2 * capacity - 1)));
}

#[test]
fn a_sharded_table_evicts_only_the_least_recently_used_of_each_shard() {
    // 4,096 keys: 4 shards of 1,024, each with its own LRU order.
    let l = limiter(LimiterConfig {
        max_keys: 4_096,
        when_full: WhenFull::EvictLeastRecent,
        ..config(2, 1_000_000, Algorithm::Gcra)
    });
    for user in 0..20_000 {
        assert_eq!(l.try_take(Key::Int(user), 1).unwrap().denied, None);
    }
    assert_eq!(l.len(), 4_096);
    // No shard got more than 1,000 of the last 1,000 keys: all are kept.
    for user in 19_000..20_000 {
        assert_eq!(l.peek(Key::Int(user), 1).unwrap().remaining, 1, "key {user}");
    }
    // The first keys were evicted: they start fresh.
    let fresh = (0..1_000)
        .filter(|&u| l.peek(Key::Int(u), 1).unwrap().remaining == 2)
        .count();
    assert_eq!(fresh, 1_000);
}

#[test]
fn a_limiter_is_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<RateLimiter>();
    shared::<RateLimiter<FakeClock>>();
}

#[test]
fn a_cancel_after_the_key_was_reset_refunds_nothing_it_did_not_take() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(config(2, 10, algorithm));
        let k = Key::Int(3);
        assert_eq!(l.try_take(k, 2).unwrap().denied, None);
        let r = l.reserve(k, 2).unwrap();
        assert!(l.reset(k));
        assert!(l.cancel(k, &r), "not yet due, {algorithm:?}");
        assert!(l.is_empty(), "no state was made for it, {algorithm:?}");
        assert_eq!(l.try_take(k, 2).unwrap().denied, None);
        assert_eq!(l.try_take(k, 1).unwrap().denied, Some(Denied::Limited), "{algorithm:?}");
    }
}

#[test]
fn debug_shows_the_config_and_the_cells() {
    let l = limiter(config(2, 10, Algorithm::Gcra));
    l.try_take(Key::Int(1), 1).unwrap();
    let shown = format!("{l:?}");
    assert!(
        shown.starts_with("RateLimiter { config: LimiterConfig { capacity: 2,"),
        "{shown}"
    );
    assert!(shown.ends_with("cells: 1 }"), "{shown}");
}

#[test]
fn peek_answers_keys_full_for_a_new_key_as_try_take_does() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let l = limiter(LimiterConfig {
            max_keys: 1,
            ..config(2, 10, algorithm)
        });
        assert_eq!(l.try_take(Key::Int(1), 1).unwrap().denied, None);
        let peeked = l.peek(Key::Int(2), 1).unwrap();
        assert_eq!(peeked, l.try_take(Key::Int(2), 1).unwrap(), "{algorithm:?}");
        assert_eq!(peeked.denied, Some(Denied::KeysFull), "{algorithm:?}");
        // A probe of nothing needs no cell: still allowed.
        assert_eq!(l.peek(Key::Int(2), 0).unwrap().denied, None);
        // Once key 1's cell expires there is room, for peek as for take.
        l.clock().advance(100);
        assert_eq!(l.peek(Key::Int(2), 1).unwrap().denied, None, "{algorithm:?}");
    }
}

#[test]
fn a_burst_over_2_pow_63_ns_is_refused_and_the_longest_allowed_still_limits() {
    use sluice_core::MAX_BURST_NANOS;
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        // (2^32 - 1) * (2^32 + 1) = 2^64 - 1 ns: a saturated `tat` sat within
        // the burst of now, and every take went through.
        let err = |c, i| RateLimiter::new(config(c, i, algorithm)).err();
        assert_eq!(
            err(u64::from(u32::MAX), (1 << 32) + 1),
            Some(LimiterConfigError::Overflow)
        );
        assert_eq!(err(2, 1 << 62), Some(LimiterConfigError::Overflow));
        assert_eq!(err(1, MAX_BURST_NANOS), None);
    }
    // 2^31 tokens, one per 2^32 - 1 ns: a burst just under 2^63 ns.
    let cfg = config(1 << 31, (1 << 32) - 1, Algorithm::Gcra);
    let l = RateLimiter::with_clock(cfg, FakeClock::new(1 << 40)).unwrap();
    let k = Key::Int(1);
    assert_eq!(l.try_take(k, cfg.capacity).unwrap().denied, None);
    assert_eq!(l.try_take(k, cfg.capacity).unwrap().denied, Some(Denied::Limited));
    assert_eq!(l.try_take(k, 1).unwrap().denied, Some(Denied::Limited));
    for _ in 0..3 {
        let r = l.reserve(k, cfg.capacity).unwrap();
        assert!(
            r.ready_at > l.clock().now(),
            "a reservation on an empty key is not due at once"
        );
    }
    assert_eq!(l.try_take(k, 1).unwrap().denied, Some(Denied::Limited));
}
