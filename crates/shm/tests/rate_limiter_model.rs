//! The shared rate limiter against `sluice_core::RateLimiter` as an oracle:
//! the same operation sequences (takes, peeks, reservations, cancels, resets,
//! clock advances) on both, in process memory with one `FakeClock`, must give
//! equal verdicts, reservation due times, cancel and reset answers. The
//! tables are one shard each and never full (few keys), where both define the
//! same answers; the full-table behaviours are the unit tests'.

use std::sync::Arc;

use proptest::prelude::*;
use sluice_core::{Algorithm, FakeClock, Key, KeyReservation, LimiterConfig, RateLimiter, RequestError, WhenFull};
use sluice_shm::rate_limiter::{LimiterError, SharedRateLimiter};

/// Integers, short strings (one with a NUL, one of 31 bytes), long ones
/// (digested), and `Int(1)` next to `b"1"`.
fn keys() -> Vec<Vec<u8>> {
    vec![
        b"1".to_vec(),
        b"user:alice".to_vec(),
        vec![0, 255, 0],
        vec![b'x'; 31],
        vec![b'y'; 32],
        vec![7; 512],
    ]
}

fn key(k: &[Vec<u8>], i: usize) -> Key<'_> {
    match i {
        0 => Key::Int(1),
        1 => Key::Int(-5),
        i => Key::Bytes(&k[(i - 2) % k.len()]),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Take(usize, u64),
    Peek(usize, u64),
    Reserve(usize, u64),
    /// Cancels the `pick`-th reservation made so far (mod their count).
    Cancel(usize),
    Reset(usize),
    Advance(u64),
}

fn op(capacity: u64) -> impl Strategy<Value = Op> {
    let k = 0usize..8;
    let n = 0..=capacity + 1;
    prop_oneof![
        4 => (k.clone(), n.clone()).prop_map(|(k, n)| Op::Take(k, n)),
        1 => (k.clone(), n.clone()).prop_map(|(k, n)| Op::Peek(k, n)),
        2 => (k.clone(), n).prop_map(|(k, n)| Op::Reserve(k, n)),
        2 => any::<usize>().prop_map(Op::Cancel),
        2 => k.prop_map(Op::Reset),
        3 => (0u64..60).prop_map(Op::Advance),
    ]
}

fn same_error(core: RequestError, shared: LimiterError) -> bool {
    matches!(shared, LimiterError::Request(e) if e == core)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every answer of the shared limiter equals the core's.
    #[test]
    fn the_shared_limiter_decides_as_the_core_does(
        capacity in 1u64..6,
        interval in 1u64..40,
        seed in any::<u64>(),
        ops in (1u64..6).prop_flat_map(|c| proptest::collection::vec(op(c), 1..120)),
    ) {
        let config = LimiterConfig {
            capacity,
            interval_nanos: interval,
            algorithm: Algorithm::Gcra,
            max_keys: 64,
            when_full: WhenFull::Refuse,
        };
        let clock = Arc::new(FakeClock::new(1_000));
        let core = RateLimiter::with_clock(config, clock.clone()).unwrap();
        let shared = SharedRateLimiter::in_memory(config, clock.clone(), seed).unwrap();
        let k = keys();
        let mut made: Vec<(usize, KeyReservation, KeyReservation)> = Vec::new();
        for op in ops {
            match op {
                Op::Take(i, n) => match (core.try_take(key(&k, i), n), shared.try_take(key(&k, i), n)) {
                    (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "take {} of {:?}", n, key(&k, i)),
                    (Err(a), Err(b)) => prop_assert!(same_error(a, b)),
                    (a, b) => prop_assert!(false, "take: core {:?}, shared {:?}", a, b),
                },
                Op::Peek(i, n) => match (core.peek(key(&k, i), n), shared.peek(key(&k, i), n)) {
                    (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "peek {} of {:?}", n, key(&k, i)),
                    (Err(a), Err(b)) => prop_assert!(same_error(a, b)),
                    (a, b) => prop_assert!(false, "peek: core {:?}, shared {:?}", a, b),
                },
                Op::Reserve(i, n) => match (core.reserve(key(&k, i), n), shared.reserve(key(&k, i), n)) {
                    (Ok(a), Ok(b)) => {
                        prop_assert_eq!((a.tokens, a.ready_at), (b.tokens, b.ready_at));
                        made.push((i, a, b));
                    }
                    (Err(a), Err(b)) => prop_assert!(same_error(a, b)),
                    (a, b) => prop_assert!(false, "reserve: core {:?}, shared {:?}", a, b),
                },
                Op::Cancel(pick) if !made.is_empty() => {
                    let (i, a, b) = made[pick % made.len()];
                    prop_assert_eq!(core.cancel(key(&k, i), &a), shared.cancel(key(&k, i), &b).unwrap());
                }
                Op::Cancel(_) => {}
                Op::Reset(i) => prop_assert_eq!(core.reset(key(&k, i)), shared.reset(key(&k, i)).unwrap()),
                Op::Advance(t) => clock.advance(t),
            }
        }
    }
}

fn small(max_keys: u64, when_full: WhenFull) -> SharedRateLimiter<Arc<FakeClock>> {
    let config = LimiterConfig {
        capacity: 2,
        interval_nanos: 100,
        algorithm: Algorithm::Gcra,
        max_keys,
        when_full,
    };
    SharedRateLimiter::in_memory(config, Arc::new(FakeClock::new(1_000)), 7).unwrap()
}

#[test]
fn a_full_table_refuses_new_keys_and_keeps_the_live_ones() {
    let l = small(4, WhenFull::Refuse);
    for i in 0..4 {
        assert_eq!(l.try_take(Key::Int(i), 2).unwrap().denied, None);
    }
    let v = l.try_take(Key::Int(9), 1).unwrap();
    assert_eq!(v.denied, Some(sluice_core::Denied::KeysFull));
    assert_eq!((v.remaining, v.retry_after, v.reset_after), (0, 100, 0));
    assert_eq!(
        l.peek(Key::Int(9), 1).unwrap().denied,
        Some(sluice_core::Denied::KeysFull)
    );
    assert!(matches!(
        l.reserve(Key::Int(9), 1),
        Err(LimiterError::Request(RequestError::KeysFull))
    ));
    for i in 0..4 {
        assert_eq!(
            l.try_take(Key::Int(i), 1).unwrap().denied,
            Some(sluice_core::Denied::Limited)
        );
    }
    assert_eq!(l.size().unwrap(), 4);
}

#[test]
fn expired_cells_make_room_for_new_keys() {
    let l = small(4, WhenFull::Refuse);
    for i in 0..4 {
        l.try_take(Key::Int(i), 1).unwrap();
    }
    l.clock().advance(100); // every key is full again: expired
    assert_eq!(l.try_take(Key::Int(9), 2).unwrap().denied, None);
    assert_eq!(
        l.try_take(Key::Int(9), 1).unwrap().denied,
        Some(sluice_core::Denied::Limited)
    );
    assert_eq!(l.size().unwrap(), 4, "the new key took an expired cell");
}

#[test]
fn a_full_table_evicts_the_least_recently_used_key() {
    let l = small(4, WhenFull::EvictLeastRecent);
    for i in 0..4 {
        l.try_take(Key::Int(i), 2).unwrap();
        l.clock().advance(1);
    }
    l.try_take(Key::Int(0), 0).unwrap(); // a probe does not count as use
    l.try_take(Key::Int(0), 1).unwrap(); // refused, but used: 1 is now the oldest
    assert_eq!(l.try_take(Key::Int(9), 2).unwrap().denied, None);
    assert_eq!(
        l.try_take(Key::Int(1), 2).unwrap().denied,
        None,
        "key 1 was evicted: fresh"
    );
    // Key 2 was the oldest then; 0, 3, 9 stay limited.
    for i in [0, 3, 9] {
        assert_eq!(
            l.try_take(Key::Int(i), 1).unwrap().denied,
            Some(sluice_core::Denied::Limited),
            "key {i}"
        );
    }
}

#[test]
fn bad_keys_and_too_many_tokens_are_refused_as_the_core_refuses_them() {
    let l = small(16, WhenFull::Refuse);
    assert!(matches!(
        l.try_take(Key::Bytes(b""), 1),
        Err(LimiterError::Request(RequestError::BadKey))
    ));
    assert!(matches!(
        l.try_take(Key::Bytes(&[1; 513]), 1),
        Err(LimiterError::Request(RequestError::BadKey))
    ));
    assert!(matches!(
        l.try_take(Key::Int(1), 3),
        Err(LimiterError::Request(RequestError::TooMany {
            requested: 3,
            capacity: 2
        }))
    ));
    assert!(!l.reset(Key::Bytes(b"")).unwrap());
    assert_eq!(
        l.try_take(Key::Bytes(&[0; 512]), 2).unwrap().denied,
        None,
        "512 zero bytes are a key"
    );
    assert_eq!(
        l.try_take(Key::Bytes(&[0; 511]), 2).unwrap().denied,
        None,
        "and 511 another one"
    );
}

#[test]
fn configs_the_shared_table_cannot_hold_are_invalid() {
    let ok = LimiterConfig {
        capacity: 1,
        interval_nanos: 1,
        algorithm: Algorithm::Gcra,
        max_keys: 1,
        when_full: WhenFull::Refuse,
    };
    let clock = FakeClock::new(0);
    for bad in [
        LimiterConfig { capacity: 0, ..ok },
        LimiterConfig {
            interval_nanos: 0,
            ..ok
        },
        LimiterConfig { max_keys: 0, ..ok },
        LimiterConfig {
            max_keys: (1 << 24) + 1,
            ..ok
        },
        LimiterConfig {
            algorithm: Algorithm::SlidingWindow,
            ..ok
        },
        LimiterConfig {
            capacity: u64::MAX / 2,
            interval_nanos: 3,
            ..ok
        },
    ] {
        assert!(
            matches!(
                SharedRateLimiter::in_memory(bad, &clock, 1),
                Err(sluice_shm::Error::Invalid(_))
            ),
            "{bad:?}"
        );
    }
}
