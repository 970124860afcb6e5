//! The named rate limiter and token bucket across real processes: this test
//! binary re-executes itself (`SHM_ROLE`) as in `segment.rs`. Two processes
//! hammering one key never get more than `capacity + rate × elapsed` between
//! them; a process SIGKILLed in the middle of a burst leaves a table the
//! others go on deciding with; damaged bytes are an error, never a panic.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::{spawn, Child, TempDir};
use sluice_core::{Algorithm, Clock, Denied, Key, LimiterConfig, WhenFull};
use sluice_shm::rate_limiter::{LimiterError, SharedRateLimiter};
use sluice_shm::token_bucket::{MonotonicNanos, SharedTokenBucket};
use sluice_shm::Error;

const MS: u64 = 1_000_000;

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

fn num(k: &str) -> u64 {
    env(k).parse().unwrap()
}

fn config(capacity: u64, interval: u64, max_keys: u64) -> LimiterConfig {
    LimiterConfig {
        capacity,
        interval_nanos: interval,
        algorithm: Algorithm::Gcra,
        max_keys,
        when_full: WhenFull::EvictLeastRecent,
    }
}

fn open_limiter(dir: &Path, name: &str, c: LimiterConfig) -> std::sync::Arc<SharedRateLimiter> {
    SharedRateLimiter::open(Some(dir), name, c).unwrap()
}

fn child_config() -> LimiterConfig {
    config(num("RL_CAPACITY"), num("RL_INTERVAL"), num("RL_MAX_KEYS"))
}

/// One line for the parent; the newline first ends libtest's "test child ... ".
fn say(s: String) {
    println!("\n{s}");
    let _ = std::io::stdout().flush();
}

#[test]
fn child() {
    let Ok(role) = std::env::var("SHM_ROLE") else { return };
    let dir = env("SHM_DIR");
    let (dir, name) = (Path::new(&dir), env("SHM_NAME"));
    let run_for = Duration::from_millis(env("RL_MS").parse().unwrap_or(0));
    match role.as_str() {
        // Take 1 from one key as fast as possible for RL_MS; report the grants.
        "limiter-hammer" => {
            let l = open_limiter(dir, &name, child_config());
            let (start, mut granted) = (Instant::now(), 0u64);
            while start.elapsed() < run_for {
                if l.try_take(Key::Bytes(b"hot"), 1).unwrap().denied.is_none() {
                    granted += 1;
                }
            }
            say(format!("GRANTED {granted}"));
        }
        "bucket-hammer" => {
            let b = SharedTokenBucket::open(Some(dir), &name, num("RL_CAPACITY"), num("RL_INTERVAL")).unwrap();
            let (start, mut granted) = (Instant::now(), 0u64);
            while start.elapsed() < run_for {
                granted += u64::from(b.try_take(1).is_ok());
            }
            say(format!("GRANTED {granted}"));
        }
        // Empties the bucket, reserves RL_CAPACITY more (due later), waits to be killed.
        "bucket-reserve" => {
            let b = SharedTokenBucket::open(Some(dir), &name, num("RL_CAPACITY"), num("RL_INTERVAL")).unwrap();
            b.try_take(b.capacity()).unwrap();
            let r = b.reserve(b.capacity()).unwrap();
            say(format!("RESERVED {}", r.ready_at - b.now()));
            std::thread::sleep(Duration::from_secs(20));
        }
        // Takes, reserves and resets over many keys (new ones too, so cells
        // are placed and evicted) until killed; at most 20 s.
        "limiter-burst" => {
            let l = open_limiter(dir, &name, child_config());
            say("READY".into());
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < Duration::from_secs(20) {
                let key = i.to_le_bytes();
                let key = if i.is_multiple_of(3) {
                    Key::Int(i as i64 % 5000)
                } else {
                    Key::Bytes(&key)
                };
                match i % 7 {
                    0 => drop(l.reserve(key, 1)),
                    1 => drop(l.reset(key)),
                    _ => drop(l.try_take(key, 1).unwrap()),
                }
                i += 1;
            }
        }
        // Open, take from a fresh key, report.
        "limiter-try" => {
            let r = SharedRateLimiter::open(Some(dir), &name, child_config())
                .map_err(LimiterError::Shm)
                .and_then(|l| l.try_take(Key::Bytes(b"fresh"), 1));
            match r {
                Ok(v) => say(format!("RESULT ok {:?}", v.denied)),
                Err(e) => say(format!("RESULT err {e}")),
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn spawn_role(role: &str, dir: &Path, name: &str, c: LimiterConfig, ms: u64) -> Child {
    let extra = [
        ("RL_CAPACITY", c.capacity.to_string()),
        ("RL_INTERVAL", c.interval_nanos.to_string()),
        ("RL_MAX_KEYS", c.max_keys.to_string()),
        ("RL_MS", ms.to_string()),
    ];
    spawn(role, dir, name, &extra)
}

/// Two processes hammer one key for 300 ms; the grants between them stay
/// within `capacity + elapsed / interval`, elapsed from before the first
/// take to after the last, on CLOCK_MONOTONIC.
fn two_processes_stay_within_the_bound(role: &str, open: impl FnOnce(&Path, LimiterConfig)) {
    let dir = TempDir::new();
    let c = config(20, MS, 100);
    open(dir.path(), c); // created, full, before t0
    let t0 = MonotonicNanos.now();
    let mut kids = [
        spawn_role(role, dir.path(), "x", c, 300),
        spawn_role(role, dir.path(), "x", c, 300),
    ];
    let granted: u64 = kids.iter_mut().map(|k| k.line("GRANTED").parse::<u64>().unwrap()).sum();
    let t1 = MonotonicNanos.now();
    for k in &mut kids {
        k.wait_ok();
    }
    let bound = c.capacity + (t1 - t0) / c.interval_nanos;
    eprintln!("{role}: {granted} granted, bound {bound}");
    assert!(granted <= bound, "{granted} granted > bound {bound}");
    assert!(granted >= c.capacity, "the burst at least: {granted}");
}

#[test]
fn two_processes_on_one_limiter_key_never_exceed_capacity_plus_rate_times_elapsed() {
    let mut keep = None;
    two_processes_stay_within_the_bound("limiter-hammer", |dir, c| keep = Some(open_limiter(dir, "x", c)));
}

#[test]
fn two_processes_on_one_bucket_never_exceed_capacity_plus_rate_times_elapsed() {
    let mut keep = None;
    two_processes_stay_within_the_bound("bucket-hammer", |dir, c| {
        keep = Some(SharedTokenBucket::open(Some(dir), "x", c.capacity, c.interval_nanos).unwrap())
    });
}

#[test]
fn an_unredeemed_reservation_of_a_killed_process_stays_spent() {
    let dir = TempDir::new();
    let c = config(3, 1_000 * MS, 1);
    let b = SharedTokenBucket::open(Some(dir.path()), "r", c.capacity, c.interval_nanos).unwrap();
    let mut kid = spawn_role("bucket-reserve", dir.path(), "r", c, 0);
    let wait: u64 = kid.line("RESERVED").parse().unwrap();
    kid.kill9();
    assert!(wait > 2_000 * MS, "the reservation was due later: {wait}");
    assert_eq!(b.available(), 0);
    match b.try_take(1) {
        // Behind the dead one's 3 tokens: nothing comes back at its death.
        Err(sluice_core::TakeError::Insufficient { retry_after }) => assert!(retry_after > 3_000 * MS, "{retry_after}"),
        r => panic!("{r:?}"),
    }
}

#[test]
fn a_process_killed_mid_burst_leaves_a_table_the_others_decide_with() {
    let dir = TempDir::new();
    // Tokens come back slowly (1 s each), so the burst's keys stay live.
    let c = config(5, 1_000 * MS, 1000);
    let l = open_limiter(dir.path(), "t", c);
    for round in 0..6u64 {
        let mut burst = spawn_role("limiter-burst", dir.path(), "t", c, 0);
        burst.line("READY");
        std::thread::sleep(Duration::from_millis(5 + round * 7));
        burst.kill9();
        // A fresh key: exactly the capacity, then refused.
        let probe = format!("probe-{round}");
        let key = Key::Bytes(probe.as_bytes());
        for _ in 0..c.capacity {
            assert_eq!(l.try_take(key, 1).unwrap().denied, None, "round {round}");
        }
        assert_eq!(
            l.try_take(key, 1).unwrap().denied,
            Some(Denied::Limited),
            "round {round}"
        );
        // Every key the burst touched still decides, without error.
        for i in 0..200u64 {
            l.peek(Key::Bytes(&i.to_le_bytes()), 1).unwrap();
            l.peek(Key::Int(i as i64), 1).unwrap();
        }
        assert!(l.size().unwrap() <= c.max_keys);
        // Another process opens it (validating every cell) and decides.
        let mut other = spawn_role("limiter-try", dir.path(), "t", c, 0);
        assert!(other.line("RESULT").starts_with("ok"), "round {round}");
        other.wait_ok();
    }
}

#[test]
fn damaged_table_bytes_are_an_error_in_every_process_never_a_panic() {
    let dir = TempDir::new();
    let c = config(5, 1_000 * MS, 1000);
    let l = open_limiter(dir.path(), "d", c);
    l.try_take(Key::Bytes(b"a"), 1).unwrap();
    let region = l.segment().unwrap().region();
    // Deterministic garbage over every cell and tag, after the shard headers
    // (128 B each; the region is the headers, 1000 cells of 64 B and 1000 tag
    // bytes). Starting past 4 headers when this table has 2 left 4 cells
    // whole, and key "a" lived in one of them in about 1 run in 250.
    let shards = (region.len() - 1000 * 64 - 1000) / 128;
    assert_eq!(shards, 2, "the layout this test assumes");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for off in (shards * 128..region.len()).step_by(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        region.u64_at(off).unwrap().store(x, Relaxed);
    }
    let result = l.try_take(Key::Bytes(b"a"), 1);
    assert!(
        matches!(result, Err(LimiterError::Shm(Error::Damaged(_)))),
        "{result:?}"
    );
    let mut other = spawn_role("limiter-try", dir.path(), "d", c, 0);
    let result = other.line("RESULT");
    assert!(result.starts_with("err segment damaged"), "{result}");
    other.wait_ok();
}

#[test]
fn damaged_shard_locks_are_an_error_not_a_hang_or_a_panic() {
    let dir = TempDir::new();
    let c = config(5, MS, 1000);
    let l = open_limiter(dir.path(), "m", c);
    let region = l.segment().unwrap().region();
    for off in (0..4 * 128).step_by(8) {
        region
            .u64_at(off)
            .unwrap()
            .store(0x5a5a_5a5a_5a5a_5a5a ^ off as u64, Relaxed);
    }
    let start = Instant::now();
    for i in 0..50i64 {
        assert!(l.try_take(Key::Int(i), 1).is_err());
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn reopening_with_other_parameters_names_the_parameter() {
    let dir = TempDir::new();
    let c = config(5, MS, 1000);
    let _l = open_limiter(dir.path(), "p", c);
    for (other, field) in [
        (config(6, MS, 1000), "capacity"),
        (config(5, 2 * MS, 1000), "interval_nanos"),
        (config(5, MS, 999), "max_keys"),
        (
            LimiterConfig {
                when_full: WhenFull::Refuse,
                ..c
            },
            "when_full",
        ),
    ] {
        match SharedRateLimiter::open(Some(dir.path()), "p", other) {
            Err(Error::Mismatch { field: f, .. }) => assert_eq!(f, field),
            r => panic!("{field}: {r:?}"),
        }
    }
    let _b = SharedTokenBucket::open(Some(dir.path()), "b", 5, MS).unwrap();
    assert!(matches!(
        SharedTokenBucket::open(Some(dir.path()), "b", 5, 2 * MS),
        Err(Error::Mismatch {
            field: "interval_nanos",
            existing: 1_000_000,
            requested: 2_000_000
        })
    ));
    assert!(matches!(
        SharedRateLimiter::open(Some(dir.path()), "b", c),
        Err(Error::Mismatch { field: "kind", .. })
    ));
}

#[test]
fn unlink_frees_the_name_and_the_next_open_starts_fresh() {
    let dir = TempDir::new();
    let c = config(2, 1_000 * MS, 100);
    let l = open_limiter(dir.path(), "u", c);
    l.try_take(Key::Int(1), 2).unwrap();
    assert!(SharedRateLimiter::unlink(Some(dir.path()), "u").unwrap());
    assert!(l.is_closed());
    let fresh = open_limiter(dir.path(), "u", c);
    assert_eq!(fresh.try_take(Key::Int(1), 2).unwrap().denied, None);
    assert!(!SharedRateLimiter::unlink(Some(dir.path()), "nothing").unwrap());
}
