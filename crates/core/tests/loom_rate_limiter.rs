//! loom models of the keyed rate limiter: every cell lives under its shard's
//! lock, so these check that the lock alone makes each decision atomic,
//! for one key and for the `max_keys` cap. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_rate_limiter`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::{Algorithm, Denied, FakeClock, Key, LimiterConfig, RateLimiter, WhenFull};

fn limiter(algorithm: Algorithm, max_keys: u64, when_full: WhenFull) -> Arc<RateLimiter<FakeClock>> {
    let config = LimiterConfig {
        capacity: 3,
        interval_nanos: 10,
        algorithm,
        max_keys,
        when_full,
    };
    Arc::new(RateLimiter::with_clock(config, FakeClock::new(0)).unwrap())
}

/// Two threads take from one key of 3 at a fixed instant: exactly 3 tokens
/// are granted in total, whatever the interleaving.
#[test]
fn concurrent_takes_on_one_key_grant_exactly_the_capacity() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        loom::model(move || {
            let l = limiter(algorithm, 4, WhenFull::Refuse);
            let take = |l: &RateLimiter<FakeClock>| {
                (0..2)
                    .filter(|_| l.try_take(Key::Int(7), 1).unwrap().denied.is_none())
                    .count()
            };
            let other = {
                let l = l.clone();
                thread::spawn(move || take(&l))
            };
            let mine = take(&l);
            assert_eq!(mine + other.join().unwrap(), 3);
        });
    }
}

/// Two new keys race for the last cell: one gets it, the other is refused
/// (or evicts it), and the table never holds more than `max_keys`.
#[test]
fn two_new_keys_race_for_the_last_cell() {
    for when_full in [WhenFull::Refuse, WhenFull::EvictLeastRecent] {
        loom::model(move || {
            let l = limiter(Algorithm::Gcra, 1, when_full);
            let other = {
                let l = l.clone();
                thread::spawn(move || l.try_take(Key::Bytes(b"b"), 1).unwrap().denied)
            };
            let mine = l.try_take(Key::Bytes(b"a"), 1).unwrap().denied;
            let theirs = other.join().unwrap();
            assert_eq!(l.len(), 1);
            match when_full {
                WhenFull::Refuse => {
                    let mut answers = [mine, theirs];
                    answers.sort_by_key(|d| d.is_some());
                    assert_eq!(answers, [None, Some(Denied::KeysFull)]);
                }
                WhenFull::EvictLeastRecent => assert_eq!((mine, theirs), (None, None)),
            }
        });
    }
}
