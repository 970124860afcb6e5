//! loom models of the GCRA token bucket. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_token_bucket`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::{Clock, FakeClock, TokenBucket};

/// Two threads take from a bucket of 3 at a fixed instant: exactly 3 tokens
/// are granted in total, whatever the interleaving.
#[test]
fn concurrent_takes_grant_exactly_the_capacity() {
    loom::model(|| {
        let b = Arc::new(TokenBucket::with_clock(3, 10, FakeClock::new(0)).unwrap());
        let other = {
            let b = b.clone();
            thread::spawn(move || (0..2).filter(|_| b.try_take(1).is_ok()).count())
        };
        let mine = (0..2).filter(|_| b.try_take(1).is_ok()).count();
        assert_eq!(mine + other.join().unwrap(), 3);
    });
}

/// A reservation, a take and a refund race: afterwards the bucket's state is
/// that of the operations that count (take and, if not refunded, nothing
/// else), so exactly the take's token is missing.
#[test]
fn reserve_take_and_refund_race() {
    loom::model(|| {
        let b = Arc::new(TokenBucket::with_clock(2, 10, FakeClock::new(0)).unwrap());
        b.try_take(2).unwrap();
        let reserver = {
            let b = b.clone();
            thread::spawn(move || {
                let r = b.reserve(1).unwrap();
                assert!(r.ready_at > 0);
                assert!(b.cancel(&r), "not yet due, so refunded");
            })
        };
        let took = b.try_take(1).is_ok();
        reserver.join().unwrap();
        assert!(!took, "the bucket was empty at this instant");
        b.clock().advance(20);
        assert_eq!(b.available(), 2, "the refund left no debt behind");
        assert_eq!(b.clock().now(), 20);
    });
}
