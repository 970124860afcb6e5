//! Queue throughput: ours against crossbeam-queue's `ArrayQueue`, in the same
//! group, moving the same items through the same capacity.
//!
//! `cargo bench -p sluice-core --bench array_queue`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CAPACITY: usize = 1024;
/// Items moved per benchmark iteration.
const BATCH: u64 = 10_000;

trait Queue: Send + Sync + 'static {
    fn new(capacity: usize) -> Self;
    fn push(&self, value: u64) -> Result<(), u64>;
    fn pop(&self) -> Option<u64>;
}

impl Queue for sluice_core::ArrayQueue<u64> {
    fn new(capacity: usize) -> Self {
        Self::new(capacity)
    }
    fn push(&self, value: u64) -> Result<(), u64> {
        self.push(value)
    }
    fn pop(&self) -> Option<u64> {
        self.pop()
    }
}

impl Queue for crossbeam_queue::ArrayQueue<u64> {
    fn new(capacity: usize) -> Self {
        Self::new(capacity)
    }
    fn push(&self, value: u64) -> Result<(), u64> {
        self.push(value)
    }
    fn pop(&self) -> Option<u64> {
        self.pop()
    }
}

/// What a producer finding the queue full, or a consumer finding it empty,
/// does before trying again: gives its core away. With more threads than
/// cores (4P4C on this project's 2-core machines, any row beside other
/// work) a thread that spins instead keeps the core from the thread that
/// would make room, for the rest of its time slice: a row then measured the
/// scheduler (1P1C ran from 0.23x to 0.89x between two runs), not the queue.
fn idle() {
    thread::yield_now();
}

/// Moves `total` items from `producers` threads to `consumers` threads and
/// returns the time from the start barrier to the last item popped.
fn run<Q: Queue>(producers: usize, consumers: usize, total: u64) -> Duration {
    let q = Arc::new(Q::new(CAPACITY));
    let start = Arc::new(Barrier::new(producers + consumers + 1));
    let per_producer = total / producers as u64;
    let per_consumer = per_producer * producers as u64 / consumers as u64;
    let mut handles = Vec::new();
    for _ in 0..producers {
        let (q, start) = (q.clone(), start.clone());
        handles.push(thread::spawn(move || {
            start.wait();
            for i in 0..per_producer {
                let mut value = i;
                while let Err(back) = q.push(value) {
                    value = back;
                    idle();
                }
            }
        }));
    }
    for _ in 0..consumers {
        let (q, start) = (q.clone(), start.clone());
        handles.push(thread::spawn(move || {
            start.wait();
            let mut got = 0;
            while got < per_consumer {
                if let Some(value) = q.pop() {
                    black_box(value);
                    got += 1;
                } else {
                    idle();
                }
            }
        }));
    }
    start.wait();
    let began = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    began.elapsed()
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("array_queue/throughput");
    group.throughput(Throughput::Elements(BATCH));
    for (producers, consumers) in [(1, 1), (2, 2), (4, 4)] {
        let label = format!("{producers}P{consumers}C");
        group.bench_function(BenchmarkId::new("crossbeam", &label), |b| {
            b.iter_custom(|iters| run::<crossbeam_queue::ArrayQueue<u64>>(producers, consumers, iters * BATCH))
        });
        group.bench_function(BenchmarkId::new("sluice", &label), |b| {
            b.iter_custom(|iters| run::<sluice_core::ArrayQueue<u64>>(producers, consumers, iters * BATCH))
        });
    }
    group.finish();
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("array_queue/uncontended");
    let ours = sluice_core::ArrayQueue::new(CAPACITY);
    let theirs = crossbeam_queue::ArrayQueue::new(CAPACITY);
    group.bench_function("crossbeam push+pop", |b| {
        b.iter(|| {
            theirs.push(black_box(1u64)).unwrap();
            black_box(theirs.pop())
        })
    });
    group.bench_function("sluice push+pop", |b| {
        b.iter(|| {
            ours.push(black_box(1u64)).unwrap();
            black_box(ours.pop())
        })
    });
    group.finish();
}

/// A batch of 64 in and out of an empty queue: crossbeam a push and a pop per
/// item; ours one `push_many` and one `pop_many` (a claim per run), with the
/// `Vec` `push_many` takes made inside the timed loop, as `Channel` makes it.
fn runs(c: &mut Criterion) {
    const RUN: u64 = 64;
    let mut group = c.benchmark_group("array_queue/runs of 64");
    group.throughput(Throughput::Elements(RUN));
    let ours = sluice_core::ArrayQueue::new(CAPACITY);
    let theirs = crossbeam_queue::ArrayQueue::new(CAPACITY);
    group.bench_function("crossbeam push+pop", |b| {
        b.iter(|| {
            for value in 0..RUN {
                theirs.push(black_box(value)).unwrap();
            }
            let mut sum = 0;
            while let Some(value) = theirs.pop() {
                sum += value;
            }
            black_box(sum)
        })
    });
    group.bench_function("sluice push+pop", |b| {
        b.iter(|| {
            let mut values = (0..RUN).map(black_box).collect::<Vec<_>>().into_iter();
            while values.len() > 0 {
                ours.push_many(&mut values);
            }
            let mut sum = 0;
            while ours.pop_many(RUN as usize, |value| sum += value) > 0 {}
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = uncontended, runs, throughput
}
criterion_main!(benches);
