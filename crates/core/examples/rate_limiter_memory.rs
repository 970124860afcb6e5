//! Resident memory per live key of a `RateLimiter`: inserts 1,000,000
//! distinct keys (strings like `user:1234567`, or integers) and reads the
//! process's RSS from `/proc/self/statm` before and after (Linux only).
//!
//! ```text
//! cargo run --release -p sluice-core --example rate_limiter_memory            # all four
//! cargo run --release -p sluice-core --example rate_limiter_memory gcra string
//! ```
//!
//! Each measurement runs in a fresh child process, so one run's freed memory
//! does not flatter the next.

use std::process::Command;

use sluice_core::{Algorithm, Key, LimiterConfig, RateLimiter, WhenFull};

const KEYS: u64 = 1_000_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux only)");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn measure(algorithm: Algorithm, strings: bool) -> f64 {
    let limiter = RateLimiter::new(LimiterConfig {
        capacity: 100,
        // One token an hour: nothing expires while we measure.
        interval_nanos: 3_600_000_000_000,
        algorithm,
        max_keys: 4 * KEYS,
        when_full: WhenFull::Refuse,
    })
    .unwrap();
    let mut key = String::with_capacity(32);
    let before = rss_bytes();
    for i in 0..KEYS {
        let verdict = if strings {
            use std::fmt::Write;
            key.clear();
            write!(key, "user:{}", 1_000_000 + i).unwrap();
            limiter.try_take(Key::Bytes(key.as_bytes()), 1)
        } else {
            limiter.try_take(Key::Int(i as i64 * 7919), 1)
        };
        assert!(verdict.unwrap().denied.is_none());
    }
    let after = rss_bytes();
    assert_eq!(limiter.len() as u64, KEYS);
    (after - before) as f64 / KEYS as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [algorithm, kind] = args.as_slice() {
        let algorithm = match algorithm.as_str() {
            "gcra" => Algorithm::Gcra,
            "window" => Algorithm::SlidingWindow,
            other => panic!("algorithm must be gcra or window, got {other}"),
        };
        let per_key = measure(algorithm, kind == "string");
        println!("{per_key:.1}");
        return;
    }
    let me = std::env::current_exe().unwrap();
    println!("RSS per live key, {KEYS} distinct keys:");
    for algorithm in ["gcra", "window"] {
        for kind in ["string", "int"] {
            let out = Command::new(&me).args([algorithm, kind]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let per_key = String::from_utf8(out.stdout).unwrap();
            println!("  {algorithm:6} {kind:6} keys: {} bytes", per_key.trim());
        }
    }
}
