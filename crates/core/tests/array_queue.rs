//! Behaviour of the bounded MPMC queue: sequential semantics against a
//! `VecDeque` model, drops, and stress on real threads with checksums.
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

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

/// Producers push distinct values, consumers pop until all are accounted for:
/// every value comes out exactly once (count, sum and xor all match).
fn mpmc(producers: usize, consumers: usize, capacity: usize, per_producer: usize) {
    let q = Arc::new(ArrayQueue::new(capacity));
    let popped = Arc::new(AtomicUsize::new(0));
    let total = producers * per_producer;
    let start = Arc::new(Barrier::new(producers + consumers));
    let producer_handles: Vec<_> = (0..producers)
        .map(|p| {
            let (q, start) = (q.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..per_producer {
                    let mut value = p * per_producer + i;
                    while let Err(back) = q.push(value) {
                        value = back;
                        thread::yield_now();
                    }
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
                while popped.load(Ordering::SeqCst) < total {
                    match q.pop() {
                        Some(value) => {
                            popped.fetch_add(1, Ordering::SeqCst);
                            count += 1;
                            sum += value;
                            xor ^= value;
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
