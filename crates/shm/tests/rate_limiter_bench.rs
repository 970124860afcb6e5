//! Decisions per second of one named rate limiter (10,000 keys, keyed
//! `try_take` on random keys) from 1 thread, 4 threads of one process, and 4
//! processes, and of one named token bucket. Ignored (a measurement, not a
//! test); run it in release:
//!
//! ```text
//! cargo test -p sluice-shm --release --test rate_limiter_bench -- --ignored --nocapture
//! ```
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{spawn, TempDir};
use sluice_core::{Algorithm, Key, LimiterConfig, WhenFull};
use sluice_shm::rate_limiter::SharedRateLimiter;
use sluice_shm::token_bucket::SharedTokenBucket;

const KEYS: u64 = 10_000;
const RUN: Duration = Duration::from_millis(1000);

fn config() -> LimiterConfig {
    LimiterConfig {
        capacity: 100,
        interval_nanos: 1_000_000,
        algorithm: Algorithm::Gcra,
        max_keys: KEYS,
        when_full: WhenFull::EvictLeastRecent,
    }
}

/// Keyed decisions on `l` for `RUN`, keys from a xorshift; how many.
fn hammer(l: &SharedRateLimiter, seed: u64) -> u64 {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user:{i}")).collect();
    let (start, mut x, mut n) = (Instant::now(), seed | 1, 0u64);
    while start.elapsed() < RUN {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = &keys[(x % KEYS) as usize];
            l.try_take(Key::Bytes(key.as_bytes()), 1).unwrap();
        }
        n += 256;
    }
    n
}

fn hammer_bucket(b: &SharedTokenBucket) -> u64 {
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < RUN {
        for _ in 0..256 {
            let _ = std::hint::black_box(b.try_take(1));
        }
        n += 256;
    }
    n
}

#[test]
fn child() {
    let Ok(role) = std::env::var("SHM_ROLE") else { return };
    let dir = std::env::var("SHM_DIR").unwrap();
    let name = std::env::var("SHM_NAME").unwrap();
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let n = match role.as_str() {
        "bench-limiter" => hammer(
            &SharedRateLimiter::open(Some(Path::new(&dir)), &name, config()).unwrap(),
            seed,
        ),
        "bench-bucket" => hammer_bucket(&SharedTokenBucket::open(Some(Path::new(&dir)), &name, 1 << 40, 1).unwrap()),
        other => panic!("unknown role {other}"),
    };
    println!("\nDECISIONS {n}");
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

fn threads(l: &Arc<SharedRateLimiter>, count: u64) -> u64 {
    let handles: Vec<_> = (0..count)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || hammer(&l, 0x1234_5678 + t))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn processes(role: &str, dir: &Path, name: &str, count: u64) -> u64 {
    let mut kids: Vec<_> = (0..count)
        .map(|i| spawn(role, dir, name, &[("SEED", (0x9876_5432 + i).to_string())]))
        .collect();
    let n = kids
        .iter_mut()
        .map(|k| k.line("DECISIONS").parse::<u64>().unwrap())
        .sum();
    for k in &mut kids {
        k.wait_ok();
    }
    n
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn decisions_per_second() {
    let dir = TempDir::new();
    let l = SharedRateLimiter::open(Some(dir.path()), "bench", config()).unwrap();
    let per_s = |n: u64| n as f64 / RUN.as_secs_f64() / 1e6;
    println!(
        "limiter, 10,000 keys, 1 process x 1 thread: {:.2} M decisions/s",
        per_s(threads(&l, 1))
    );
    println!(
        "limiter, 10,000 keys, 1 process x 4 threads: {:.2} M decisions/s",
        per_s(threads(&l, 4))
    );
    println!(
        "limiter, 10,000 keys, 4 processes x 1 thread: {:.2} M decisions/s",
        per_s(processes("bench-limiter", dir.path(), "bench", 4))
    );
    let b = SharedTokenBucket::open(Some(dir.path()), "bucket", 1 << 40, 1).unwrap();
    println!(
        "token bucket, 1 process x 1 thread: {:.2} M takes/s",
        per_s(hammer_bucket(&b))
    );
    println!(
        "token bucket, 4 processes x 1 thread: {:.2} M takes/s",
        per_s(processes("bench-bucket", dir.path(), "bucket", 4))
    );
    println!("cells in use: {}", l.size().unwrap());
    // The same loop on the in-process core limiter, for scale on a loaded machine.
    let core = sluice_core::RateLimiter::new(config()).unwrap();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user:{i}")).collect();
    let (start, mut x, mut n) = (Instant::now(), 0x1234_5679u64, 0u64);
    while start.elapsed() < RUN {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            core.try_take(Key::Bytes(keys[(x % KEYS) as usize].as_bytes()), 1)
                .unwrap();
        }
        n += 256;
    }
    println!(
        "sluice_core::RateLimiter in process, 1 thread: {:.2} M decisions/s",
        per_s(n)
    );
}
