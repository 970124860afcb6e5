//! Behaviour of the bounded MPMC queue: sequential semantics against a
//! `VecDeque` model, drops, and stress on real threads with checksums.
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::stress;
use proptest::prelude::*;
use sluice_core::ArrayQueue;

#[test]
fn smoke() {
    let q = ArrayQueue::new(1);
    assert!(q.is_empty());
    assert_eq!(q.push(7), Ok(()));
    assert!(q.is_full());
    assert_eq!(q.push(8), Err(8));
    assert_eq!(q.pop(), Some(7));
    assert_eq!(q.pop(), None);
}

#[test]
#[should_panic(expected = "capacity must be non-zero")]
fn zero_capacity() {
    let _ = ArrayQueue::<i32>::new(0);
}

#[test]
fn len_through_many_laps_at_odd_capacity() {
    let q = ArrayQueue::new(3);
    for lap in 0..100 {
        assert_eq!(q.len(), 0);
        for i in 0..3 {
            q.push(lap * 3 + i).unwrap();
            assert_eq!(q.len(), i + 1);
        }
        assert!(q.is_full());
        for i in 0..3 {
            assert_eq!(q.pop(), Some(lap * 3 + i));
        }
    }
}

/// Counts live instances, to check every queued value is dropped once.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn drops() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let q = ArrayQueue::new(10);
    for _ in 0..7 {
        assert!(q.push(Counted(dropped.clone())).is_ok());
    }
    drop(q.pop());
    let rejected = ArrayQueue::new(1);
    rejected.push(Counted(dropped.clone())).ok().unwrap();
    let back = rejected.push(Counted(dropped.clone())).unwrap_err(); // handed back, not dropped
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    drop(back);
    drop(q);
    drop(rejected);
    assert_eq!(dropped.load(Ordering::SeqCst), 9);
}

proptest! {
    /// Any sequence of pushes and pops behaves as a bounded `VecDeque`.
    #[test]
    fn matches_a_vecdeque(capacity in 1usize..9, ops in proptest::collection::vec(any::<Option<u16>>(), 0..300)) {
        let q = ArrayQueue::new(capacity);
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Some(value) => {
                    let expected = if model.len() < capacity { model.push_back(value); Ok(()) } else { Err(value) };
                    prop_assert_eq!(q.push(value), expected);
                }
                None => prop_assert_eq!(q.pop(), model.pop_front()),
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert_eq!(q.is_empty(), model.is_empty());
            prop_assert_eq!(q.is_full(), model.len() == capacity);
        }
    }
}

proptest! {
    /// Batches (`push_many`, `pop_many`) mixed with single pushes and pops
    /// behave as a bounded `VecDeque` whose batches stop at the buffer's end:
    /// a batch takes exactly the run it can, no more and no less.
    #[test]
    fn batches_match_a_vecdeque(
        capacity in 1usize..9,
        ops in proptest::collection::vec((0u8..4, 0usize..12), 0..300),
    ) {
        let q = ArrayQueue::new(capacity);
        let mut model = VecDeque::new();
        // Values ever pushed and popped: the tail's and head's indices are these modulo the capacity.
        let (mut pushed, mut popped, mut next) = (0usize, 0usize, 0u32);
        for (kind, n) in ops {
            match kind {
                0 => {
                    let expected = if model.len() < capacity { model.push_back(next); pushed += 1; Ok(()) } else { Err(next) };
                    prop_assert_eq!(q.push(next), expected);
                    next += 1;
                }
                1 => {
                    let expected = model.pop_front();
                    popped += usize::from(expected.is_some());
                    prop_assert_eq!(q.pop(), expected);
                }
                2 => {
                    let values: Vec<u32> = (next..next + n as u32).collect();
                    next += n as u32;
                    let mut rest = values.clone().into_iter();
                    // The run: free places, but not past the buffer's end.
                    let run = n.min(capacity - model.len()).min(capacity - pushed % capacity);
                    prop_assert_eq!(q.push_many(&mut rest), run);
                    prop_assert_eq!(rest.as_slice(), &values[run..]);
                    model.extend(&values[..run]);
                    pushed += run;
                }
                _ => {
                    let mut out = Vec::new();
                    let run = n.min(model.len()).min(capacity - popped % capacity).min(ArrayQueue::<u32>::RUN_MAX);
                    prop_assert_eq!(q.pop_many(n, |value| out.push(value)), run);
                    let expected: Vec<u32> = model.drain(..run).collect();
                    prop_assert_eq!(out, expected);
                    popped += run;
                }
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert_eq!(q.is_full(), model.len() == capacity);
        }
    }
}

#[test]
fn a_batch_stops_at_the_end_of_the_buffer_and_goes_on_from_its_start() {
    let q = ArrayQueue::new(5);
    for value in 0..3 {
        q.push(value).unwrap();
    }
    assert_eq!(q.pop_many(3, drop), 3);
    // Head and tail at index 3: a run reaches index 4, then wraps to a new lap.
    let mut values = (10..16).collect::<Vec<_>>().into_iter();
    assert_eq!(q.push_many(&mut values), 2);
    assert_eq!(q.push_many(&mut values), 3);
    assert_eq!(values.as_slice(), [15]);
    assert!(q.is_full());
    assert_eq!(q.push_many(&mut values), 0, "full: nothing moves");
    assert_eq!(values.as_slice(), [15]);
    let mut out = Vec::new();
    assert_eq!(q.pop_many(10, |value| out.push(value)), 2);
    assert_eq!(q.pop_many(10, |value| out.push(value)), 3);
    assert_eq!(out, [10, 11, 12, 13, 14]);
    assert_eq!(q.pop_many(10, |value| out.push(value)), 0, "empty");
    assert!(q.is_empty());
}

#[test]
fn a_panic_in_pop_many_drops_the_rest_of_its_run_and_leaves_the_queue_usable() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let q = ArrayQueue::new(4);
    let mut values = (0..4).map(|_| Counted(dropped.clone())).collect::<Vec<_>>().into_iter();
    assert_eq!(q.push_many(&mut values), 4);
    let mut seen = 0;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.pop_many(3, |value| {
            seen += 1;
            drop(value);
            assert!(seen < 2, "the second value makes `each` panic");
        })
    }));
    assert!(outcome.is_err());
    // Two passed to `each` (both dropped by it), the third of the run dropped
    // by the unwind: each exactly once. The fourth is still queued.
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
    assert_eq!(q.len(), 1);
    let mut more = (0..3).map(|_| Counted(dropped.clone())).collect::<Vec<_>>().into_iter();
    assert_eq!(q.push_many(&mut more), 3, "the freed slots take new values");
    // The run to the buffer's end, then the new lap's.
    assert_eq!(q.pop_many(4, drop), 1);
    assert_eq!(q.pop_many(4, drop), 3);
    assert_eq!(dropped.load(Ordering::SeqCst), 7);
    assert!(q.is_empty());
}

/// Runs `f` on a thread of its own; false if it has not finished within
/// `seconds` (a spin that never ends fails the test instead of hanging it).
fn finishes_within(seconds: u64, f: impl FnOnce() + Send + 'static) -> bool {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(seconds)) {
        Ok(()) => true,
        Err(mpsc::RecvTimeoutError::Timeout) => false,
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the scenario panicked (see above)"),
    }
}

#[test]
fn pop_many_frees_its_whole_run_before_its_callback_runs() {
    // Found by review: when `each` ran with the rest of the run still in its
    // slots, a push from `each` that met one of them spun forever (the head
    // had moved past, so the queue did not look full).
    let finished = finishes_within(5, || {
        let q = ArrayQueue::new(2);
        q.push(1).unwrap();
        q.push(2).unwrap();
        let mut pushed = Vec::new();
        let mut seen = Vec::new();
        assert_eq!(
            q.pop_many(2, |value| {
                seen.push(value);
                if value == 1 {
                    pushed.extend([q.push(10), q.push(11), q.push(12)]);
                }
            }),
            2
        );
        assert_eq!(seen, [1, 2]);
        assert_eq!(pushed, [Ok(()), Ok(()), Err(12)], "both slots free, then full");
        assert_eq!(q.pop_many(2, drop), 2);
    });
    assert!(finished, "a push from pop_many's callback never returned");
}

#[test]
fn a_run_is_at_most_run_max_values() {
    let q = ArrayQueue::new(100);
    let mut values = (0..100).collect::<Vec<_>>().into_iter();
    assert_eq!(q.push_many(&mut values), 100);
    let mut out = Vec::new();
    assert_eq!(q.pop_many(100, |value| out.push(value)), ArrayQueue::<i32>::RUN_MAX);
    while q.pop_many(100, |value| out.push(value)) > 0 {}
    assert_eq!(out, (0..100).collect::<Vec<_>>());
}

/// Producers push distinct values, consumers pop until all are accounted for:
/// every value comes out exactly once (count, sum and xor all match).
fn mpmc(producers: usize, consumers: usize, capacity: usize, per_producer: usize) {
    mpmc_in_batches(producers, consumers, capacity, per_producer, 1);
}

/// As `mpmc`; with `batch > 1`, producers push runs of up to `batch` values
/// with `push_many` and consumers take runs with `pop_many` (each falling back
/// to `push`/`pop` when a run cannot start). Every consumer also sees each
/// producer's values in the order they were pushed.
fn mpmc_in_batches(producers: usize, consumers: usize, capacity: usize, per_producer: usize, batch: usize) {
    let q = Arc::new(ArrayQueue::new(capacity));
    let popped = Arc::new(AtomicUsize::new(0));
    let total = producers * per_producer;
    let start = Arc::new(Barrier::new(producers + consumers));
    let producer_handles: Vec<_> = (0..producers)
        .map(|p| {
            let (q, start) = (q.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut i = 0;
                while i < per_producer {
                    let end = (i + batch).min(per_producer);
                    let mut values = (p * per_producer + i..p * per_producer + end)
                        .collect::<Vec<_>>()
                        .into_iter();
                    while values.len() > 0 {
                        if batch > 1 && q.push_many(&mut values) > 0 {
                            continue;
                        }
                        let Some(mut value) = values.next() else { break };
                        while let Err(back) = q.push(value) {
                            value = back;
                            thread::yield_now();
                        }
                    }
                    i = end;
                }
            })
        })
        .collect();
    let consumer_handles: Vec<_> = (0..consumers)
        .map(|_| {
            let (q, popped, start) = (q.clone(), popped.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let (mut count, mut sum, mut xor) = (0usize, 0usize, 0usize);
                let mut last_of = vec![None::<usize>; producers];
                let mut take = |value: usize| {
                    let producer = value / per_producer;
                    assert!(
                        last_of[producer] < Some(value),
                        "a producer's values in the order pushed"
                    );
                    last_of[producer] = Some(value);
                    count += 1;
                    sum += value;
                    xor ^= value;
                };
                while popped.load(Ordering::SeqCst) < total {
                    let run = if batch > 1 { q.pop_many(batch, &mut take) } else { 0 };
                    if run > 0 {
                        popped.fetch_add(run, Ordering::SeqCst);
                        continue;
                    }
                    match q.pop() {
                        Some(value) => {
                            take(value);
                            popped.fetch_add(1, Ordering::SeqCst);
                        }
                        None => thread::yield_now(),
                    }
                }
                (count, sum, xor)
            })
        })
        .collect();
    for handle in producer_handles {
        handle.join().unwrap();
    }
    let (count, sum, xor) = consumer_handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0, 0), |(c, s, x), (c2, s2, x2)| (c + c2, s + s2, x ^ x2));
    assert_eq!(count, total);
    assert_eq!(sum, total * (total - 1) / 2);
    assert_eq!(xor, (0..total).fold(0, |x, v| x ^ v));
    assert!(q.is_empty());
}

#[test]
fn spsc() {
    mpmc(1, 1, 4, stress(100_000));
}

#[test]
fn mpmc_2x2() {
    mpmc(2, 2, 16, stress(50_000));
}

#[test]
fn mpmc_4x4_small_capacity() {
    mpmc(4, 4, 3, stress(20_000));
}

#[test]
fn mpmc_in_batches_2x2() {
    mpmc_in_batches(2, 2, 16, stress(50_000), 5);
}

#[test]
fn mpmc_in_batches_4x4_small_capacity() {
    mpmc_in_batches(4, 4, 3, stress(20_000), 4);
}

#[test]
fn spsc_in_batches_of_the_capacity() {
    mpmc_in_batches(1, 1, 7, stress(100_000), 7);
}
