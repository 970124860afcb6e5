//! The shared token bucket against `sluice_core::TokenBucket` as an oracle:
//! the same operations on both, with one `FakeClock`, give the same answers
//! (the shared one runs the core's code on its own `tat` word, so this checks
//! the plumbing: the word, the parameters, the clock).

use std::sync::Arc;

use proptest::prelude::*;
use sluice_core::{FakeClock, Reservation, TokenBucket};
use sluice_shm::token_bucket::SharedTokenBucket;

#[derive(Debug, Clone)]
enum Op {
    Take(u64),
    Reserve(u64),
    Cancel(usize),
    Available,
    Advance(u64),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every answer of the shared bucket equals the core's.
    #[test]
    fn the_shared_bucket_decides_as_the_core_does(
        capacity in 1u64..8,
        interval in 1u64..50,
        ops in proptest::collection::vec(prop_oneof![
            4 => (0u64..10).prop_map(Op::Take),
            2 => (0u64..10).prop_map(Op::Reserve),
            1 => any::<usize>().prop_map(Op::Cancel),
            1 => Just(Op::Available),
            3 => (0u64..150).prop_map(Op::Advance),
        ], 1..150),
    ) {
        let clock = Arc::new(FakeClock::new(500));
        let core = TokenBucket::with_clock(capacity, interval, clock.clone()).unwrap();
        let shared = SharedTokenBucket::in_memory(capacity, interval, clock.clone()).unwrap();
        let mut made: Vec<Reservation> = Vec::new();
        for op in ops {
            match op {
                Op::Take(n) => prop_assert_eq!(core.try_take(n), shared.try_take(n)),
                Op::Reserve(n) => {
                    let r = core.reserve(n);
                    prop_assert_eq!(r, shared.reserve(n));
                    made.extend(r.ok());
                }
                Op::Cancel(pick) if !made.is_empty() => {
                    let r = made[pick % made.len()];
                    prop_assert_eq!(core.cancel(&r), shared.cancel(&r));
                }
                Op::Cancel(_) => {}
                Op::Available => prop_assert_eq!(core.available(), shared.available()),
                Op::Advance(t) => clock.advance(t),
            }
        }
        prop_assert_eq!((shared.capacity(), shared.interval(), shared.now()), (capacity, interval, clock_now(&clock)));
    }
}

fn clock_now(c: &FakeClock) -> u64 {
    sluice_core::Clock::now(c)
}

#[test]
fn a_bad_config_is_invalid() {
    for (c, i) in [(0, 1), (1, 0), (u64::MAX / 2, 3)] {
        assert!(matches!(
            SharedTokenBucket::in_memory(c, i, FakeClock::new(0)),
            Err(sluice_shm::Error::Invalid(_))
        ));
    }
}
