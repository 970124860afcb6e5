//! Hostile keys: many keys aimed at one probe window (what a client who knew
//! the seed could send), and damaged cells.

use std::sync::atomic::Ordering::Relaxed;

use sluice_core::{Algorithm, Denied, FakeClock, Key, LimiterConfig, WhenFull};

use super::key::{encode, Seeds};
use super::table::{shard_count, CELL_BYTES, WINDOW};
use super::SharedRateLimiter;
use crate::Error;

const SEED: u64 = 99;
const MAX_KEYS: u64 = 4096;

fn limiter(when_full: WhenFull) -> SharedRateLimiter<FakeClock> {
    let config = LimiterConfig {
        capacity: 2,
        interval_nanos: 100,
        algorithm: Algorithm::Gcra,
        max_keys: MAX_KEYS,
        when_full,
    };
    SharedRateLimiter::in_memory(config, FakeClock::new(1_000), SEED).unwrap()
}

/// `count` integer keys with the same shard and home cell.
fn colliding(count: usize) -> Vec<i64> {
    let seeds = Seeds::new(SEED);
    let per_shard = MAX_KEYS / shard_count(MAX_KEYS);
    let place = |i: i64| {
        let h = encode(&seeds, Key::Int(i)).hash;
        (h >> 60 & (shard_count(MAX_KEYS) - 1), h % per_shard)
    };
    let target = place(0);
    (0..).filter(|&i| place(i) == target).take(count).collect()
}

#[test]
fn keys_aimed_at_one_window_fill_it_then_are_refused_without_harm_to_others() {
    let l = limiter(WhenFull::Refuse);
    let keys = colliding(WINDOW as usize + 3);
    for &k in &keys[..WINDOW as usize] {
        assert_eq!(l.try_take(Key::Int(k), 2).unwrap().denied, None, "key {k}");
    }
    for &k in &keys[WINDOW as usize..] {
        assert_eq!(
            l.try_take(Key::Int(k), 1).unwrap().denied,
            Some(Denied::KeysFull),
            "key {k}"
        );
    }
    for &k in &keys[..WINDOW as usize] {
        assert_eq!(
            l.try_take(Key::Int(k), 1).unwrap().denied,
            Some(Denied::Limited),
            "key {k} kept its state"
        );
    }
    // Another key of the same shard, elsewhere, is not affected.
    assert_eq!(l.try_take(Key::Bytes(b"bystander"), 2).unwrap().denied, None);
    assert_eq!(l.size().unwrap(), WINDOW + 1);
}

#[test]
fn keys_aimed_at_one_window_evict_the_least_recently_used_there() {
    let l = limiter(WhenFull::EvictLeastRecent);
    let keys = colliding(WINDOW as usize + 1);
    for &k in &keys[..WINDOW as usize] {
        l.try_take(Key::Int(k), 2).unwrap();
        l.clock().advance(1);
    }
    let newcomer = keys[WINDOW as usize];
    assert_eq!(l.try_take(Key::Int(newcomer), 2).unwrap().denied, None);
    assert_eq!(
        l.try_take(Key::Int(keys[0]), 2).unwrap().denied,
        None,
        "the oldest was evicted"
    );
    assert_eq!(l.try_take(Key::Int(newcomer), 1).unwrap().denied, Some(Denied::Limited));
}

#[test]
fn a_cancel_after_an_eviction_in_its_shard_gives_nothing_back() {
    let l = limiter(WhenFull::EvictLeastRecent);
    let keys = colliding(WINDOW as usize + 1);
    let key = Key::Int(keys[1]);
    for &k in &keys[..WINDOW as usize] {
        l.try_take(Key::Int(k), 1).unwrap();
    }
    // Due in one interval; a refund would leave the key a token now.
    let r = l.reserve(key, 2).unwrap();
    l.try_take(Key::Int(keys[WINDOW as usize]), 1).unwrap(); // evicts keys[0]
    assert!(l.cancel(key, &r).unwrap(), "not yet due: withdrawn");
    assert_eq!(
        l.peek(key, 1).unwrap().denied,
        Some(Denied::Limited),
        "but not refunded"
    );
}

#[test]
fn a_damaged_cell_is_reported_not_trusted() {
    let l = limiter(WhenFull::Refuse);
    let key = Key::Bytes(b"victim");
    l.try_take(key, 1).unwrap();
    let region = l.region();
    let cells = shard_count(MAX_KEYS) as usize * 128;
    // Scribble over every published cell's key bytes.
    for i in 0..MAX_KEYS as usize {
        let at = cells + i * CELL_BYTES;
        if region.u64_at(at).unwrap().load(Relaxed) > 1 {
            region.u64_at(at + 32).unwrap().store(0xdead_beef_dead_beef, Relaxed);
        }
    }
    assert!(matches!(
        l.try_take(key, 1),
        Err(super::LimiterError::Shm(Error::Damaged(_)))
    ));
    assert!(matches!(l.table.validate(region), Err(Error::Damaged(_))));
}
