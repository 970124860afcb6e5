//! Semaphore costs: ours against `tokio::sync::Semaphore`, in the same group.
//!
//! `cargo bench -p sluice-core --bench semaphore`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("semaphore/uncontended");
    let ours = sluice_core::Semaphore::new(16);
    let theirs = tokio::sync::Semaphore::new(16);
    // Both take a count the compiler cannot see (as the binding's callers
    // pass one) and give the same count back: tokio's permit carries it,
    // ours is passed again. (Ours alone used to take a `black_box`ed count
    // against tokio's constant 1.)
    group.bench_function("tokio try_acquire+release", |b| {
        b.iter(|| drop(black_box(theirs.try_acquire_many(black_box(1)).unwrap())))
    });
    group.bench_function("sluice try_acquire+release", |b| {
        b.iter(|| {
            let n = black_box(1);
            ours.try_acquire(n).unwrap();
            black_box(ours.release(n).unwrap())
        })
    });
    group.finish();
}

/// Two threads each complete `per_thread` acquire+release pairs on a
/// semaphore of one permit, retrying when the other holds it.
fn contended_pairs(per_thread: u64, pair: impl FnMut() -> bool + Clone + Send + 'static) -> Duration {
    let start = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (start, mut pair) = (start.clone(), pair.clone());
            thread::spawn(move || {
                start.wait();
                let mut done = 0;
                while done < per_thread {
                    if pair() {
                        done += 1;
                    } else {
                        std::hint::spin_loop();
                    }
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
    const PER_ITER: u64 = 1_000;
    let mut group = c.benchmark_group("semaphore/contended-2-threads");
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            let sem = Arc::new(tokio::sync::Semaphore::new(1));
            contended_pairs(iters * PER_ITER, move || sem.try_acquire().map(drop).is_ok())
        })
    });
    group.bench_function("sluice", |b| {
        b.iter_custom(|iters| {
            let sem = Arc::new(sluice_core::Semaphore::new(1));
            contended_pairs(iters * PER_ITER, move || {
                sem.try_acquire(1).is_ok() && sem.release(1).is_ok()
            })
        })
    });
    group.finish();
}

/// The slow path alone (no anchor: tokio's queued acquire is a future): a
/// wait queued behind a held permit, granted by the release, collected.
fn handoff(c: &mut Criterion) {
    let sem = sluice_core::Semaphore::new(1);
    let mut token = 0u64;
    c.bench_function("semaphore/handoff/sluice queue+grant+collect", |b| {
        b.iter(|| {
            sem.try_acquire(1).unwrap();
            token += 1;
            black_box(sem.acquire(1, 7, token).unwrap());
            black_box(sem.release(1).unwrap());
            black_box(sem.take_granted(7));
            sem.release(1).unwrap();
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = uncontended, contended, handoff
}
criterion_main!(benches);
