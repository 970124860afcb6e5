//! Keyed rate limiter `try_take` cost: ours against governor's keyed GCRA
//! (`RateLimiter::keyed`, its default DashMap store), in the same groups.
//! Limits are large and fast-refilling, so every take is granted and the
//! lookup and decision, clock read included, are what is measured.
//!
//! - `one-key`: every take on the same key (a hot key).
//! - `many-keys`: takes cycle over 100,000 string keys (`user:<n>`), all
//!   present after the first pass.
//!
//! `cargo bench -p sluice-core --bench rate_limiter`, then
//! `node scripts/criterion-ratios.mjs` for the ratios.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use governor::{DefaultKeyedRateLimiter, Quota};
use sluice_core::{Algorithm, Key, LimiterConfig, RateLimiter, WhenFull};

const RATE: u32 = 1_000_000_000;
const KEYS: usize = 100_000;

fn ours(algorithm: Algorithm) -> RateLimiter {
    RateLimiter::new(LimiterConfig {
        capacity: u64::from(RATE),
        interval_nanos: 1,
        algorithm,
        max_keys: 1 << 20,
        when_full: WhenFull::Refuse,
    })
    .unwrap()
}

fn governor() -> DefaultKeyedRateLimiter<String> {
    governor::RateLimiter::keyed(Quota::per_second(NonZeroU32::new(RATE).unwrap()))
}

fn keys() -> Arc<Vec<String>> {
    Arc::new((0..KEYS).map(|i| format!("user:{}", 1_000_000 + i * 7)).collect())
}

fn uncontended(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("rate_limiter/uncontended-one-key");
    let (gcra, window, theirs) = (ours(Algorithm::Gcra), ours(Algorithm::SlidingWindow), governor());
    let hot = keys[0].clone();
    group.bench_function("governor", |b| {
        b.iter(|| black_box(theirs.check_key(black_box(&hot)).is_ok()))
    });
    group.bench_function("sluice", |b| {
        b.iter(|| black_box(gcra.try_take(Key::Bytes(black_box(hot.as_bytes())), 1).is_ok()))
    });
    group.bench_function("sluice-sliding-window", |b| {
        b.iter(|| black_box(window.try_take(Key::Bytes(black_box(hot.as_bytes())), 1).is_ok()))
    });
    group.finish();

    let mut group = c.benchmark_group("rate_limiter/uncontended-many-keys");
    let mut i = 0;
    group.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(theirs.check_key(&keys[i]).is_ok())
        })
    });
    group.bench_function("sluice", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(gcra.try_take(Key::Bytes(keys[i].as_bytes()), 1).is_ok())
        })
    });
    group.bench_function("sluice-sliding-window", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(window.try_take(Key::Bytes(keys[i].as_bytes()), 1).is_ok())
        })
    });
    group.finish();
}

/// Runs `take(thread, i)` `iters` times on each of two threads; the wall time.
fn two_threads(iters: u64, take: impl Fn(usize, usize) -> bool + Send + Sync + 'static) -> Duration {
    let take = Arc::new(take);
    let start = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let (start, take) = (start.clone(), take.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..iters as usize {
                    black_box(take(t, i));
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    began.elapsed()
}

fn contended(c: &mut Criterion) {
    let keys = keys();
    for (name, spread) in [("one-key", 1), ("many-keys", KEYS)] {
        let mut group = c.benchmark_group(format!("rate_limiter/contended-2-threads-{name}"));
        let k = keys.clone();
        group.bench_function("governor", move |b| {
            let limiter = Arc::new(governor());
            let k = k.clone();
            b.iter_custom(|iters| {
                let (limiter, k) = (limiter.clone(), k.clone());
                two_threads(iters, move |t, i| limiter.check_key(&k[(i * 2 + t) % spread]).is_ok())
            })
        });
        let k = keys.clone();
        group.bench_function("sluice", move |b| {
            let limiter = Arc::new(ours(Algorithm::Gcra));
            let k = k.clone();
            b.iter_custom(|iters| {
                let (limiter, k) = (limiter.clone(), k.clone());
                two_threads(iters, move |t, i| {
                    limiter
                        .try_take(Key::Bytes(k[(i * 2 + t) % spread].as_bytes()), 1)
                        .is_ok()
                })
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = uncontended, contended
}
criterion_main!(benches);
