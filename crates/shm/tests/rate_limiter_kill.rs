//! A process SIGKILLed at each commit point inside a shard's lock (the
//! `kill-points` feature: `SLUICE_KILL_POINT`) leaves a table that the next
//! locker (it gets `EOWNERDEAD`) decides with exactly as the commit-word
//! order promises: a cell being placed is either whole or absent, a key being
//! evicted either kept or gone, a decision either made or not.
//!
//! ```text
//! cargo test -p sluice-shm --features kill-points --test rate_limiter_kill
//! ```
#![cfg(all(target_os = "linux", feature = "kill-points"))]

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::{spawn, TempDir};
use sluice_core::{Algorithm, Denied, Key, LimiterConfig, WhenFull};
use sluice_shm::rate_limiter::SharedRateLimiter;

/// 8 keys in one shard (one window), 3 tokens each, 1 s per token.
fn config() -> LimiterConfig {
    LimiterConfig {
        capacity: 3,
        interval_nanos: 1_000_000_000,
        algorithm: Algorithm::Gcra,
        max_keys: 8,
        when_full: WhenFull::EvictLeastRecent,
    }
}

#[test]
fn child() {
    let Ok(role) = std::env::var("SHM_ROLE") else { return };
    assert_eq!(role, "kill-run");
    let dir = std::env::var("SHM_DIR").unwrap();
    let l = SharedRateLimiter::open(Some(Path::new(&dir)), &std::env::var("SHM_NAME").unwrap(), config()).unwrap();
    println!("\nREADY");
    let _ = std::io::stdout().flush();
    // Keys 0..8 take 1 each (placing cells), key 0 takes again (a decision on
    // a found cell), then key 8 arrives (evicting key 1, the oldest).
    for i in 0..8 {
        l.try_take(Key::Int(i), 1).unwrap();
    }
    l.try_take(Key::Int(0), 1).unwrap();
    l.try_take(Key::Int(8), 1).unwrap();
    println!("\nSURVIVED");
    std::process::exit(0);
}

/// Runs the child to `point`, checks it died of SIGKILL; the limiter.
fn killed_at(dir: &TempDir, point: &str) -> std::sync::Arc<SharedRateLimiter> {
    let l = SharedRateLimiter::open(Some(dir.path()), point, config()).unwrap();
    let mut kid = spawn(
        "kill-run",
        dir.path(),
        point,
        &[("SLUICE_KILL_POINT", point.to_owned())],
    );
    kid.line("READY");
    let status = kid.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: {status:?}");
    l
}

/// Tokens `key` has now (a peek's `remaining` is what is left now).
fn left(l: &SharedRateLimiter, key: i64) -> u64 {
    l.peek(Key::Int(key), 1).unwrap().remaining
}

#[test]
fn killed_after_filling_a_cell_before_publishing_it_the_key_is_absent() {
    let dir = TempDir::new();
    let l = killed_at(&dir, "limiter-filled");
    assert_eq!(l.size().unwrap(), 0);
    assert_eq!(left(&l, 0), 3, "the half-placed key decides as new");
    for _ in 0..3 {
        assert_eq!(l.try_take(Key::Int(0), 1).unwrap().denied, None);
    }
    assert_eq!(l.try_take(Key::Int(0), 1).unwrap().denied, Some(Denied::Limited));
    assert_eq!(l.size().unwrap(), 1, "placed once, in the cell the dead one left");
}

#[test]
fn killed_after_a_decision_the_decision_stands() {
    let dir = TempDir::new();
    let l = killed_at(&dir, "limiter-decided");
    // The point is after key 0's second take wrote its tat.
    assert_eq!(l.size().unwrap(), 8);
    assert_eq!(left(&l, 0), 1);
    for i in 1..8 {
        assert_eq!(left(&l, i), 2, "key {i}");
    }
}

#[test]
fn killed_between_counting_an_eviction_and_making_it_nothing_is_lost() {
    let dir = TempDir::new();
    let l = killed_at(&dir, "limiter-forgotten");
    assert_eq!(l.size().unwrap(), 8);
    assert_eq!(left(&l, 1), 2, "key 1 kept its state");
    assert_eq!(left(&l, 8), 3, "key 8 was never placed");
}

#[test]
fn killed_after_tombstoning_an_evicted_cell_the_evicted_key_is_fresh_and_the_table_usable() {
    let dir = TempDir::new();
    let l = killed_at(&dir, "limiter-tombstoned");
    assert_eq!(l.size().unwrap(), 7);
    assert_eq!(left(&l, 1), 3, "key 1 was evicted");
    assert_eq!(left(&l, 0), 1);
    assert_eq!(
        l.try_take(Key::Int(8), 3).unwrap().denied,
        None,
        "the tombstone is reused"
    );
    assert_eq!(l.size().unwrap(), 8);
}
