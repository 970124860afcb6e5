//! loom models of the bounded MPMC queue. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_array_queue`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use sluice_core::ArrayQueue;

/// Pops with a bounded number of attempts (loom explores every interleaving,
/// so an unbounded spin would never end).
fn pop_some<T>(q: &ArrayQueue<T>, attempts: usize) -> Option<T> {
    (0..attempts).find_map(|_| {
        let value = q.pop();
        if value.is_none() {
            thread::yield_now();
        }
        value
    })
}

#[test]
fn spsc() {
    loom::model(|| {
        let q = Arc::new(ArrayQueue::new(1));
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                q.push(1).unwrap();
                let mut value = 2;
                while let Err(back) = q.push(value) {
                    value = back;
                    thread::yield_now();
                }
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 2 {
            if let Some(v) = q.pop() {
                seen.push(v);
            } else {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(seen, vec![1, 2], "FIFO, nothing lost or duplicated");
    });
}

#[test]
fn two_producers_two_consumers() {
    loom::model(|| {
        let q = Arc::new(ArrayQueue::new(2));
        let producers: Vec<_> = [10, 20]
            .into_iter()
            .map(|value| {
                let q = q.clone();
                thread::spawn(move || q.push(value).unwrap())
            })
            .collect();
        let consumer = {
            let q = q.clone();
            thread::spawn(move || pop_some(&q, 2))
        };
        let mine = q.pop();
        for p in producers {
            p.join().unwrap();
        }
        let theirs = consumer.join().unwrap();
        let mut all: Vec<i32> = [mine, theirs].into_iter().flatten().collect();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all, vec![10, 20], "each value exactly once");
    });
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn drops() {
    loom::model(|| {
        let dropped = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(ArrayQueue::new(2));
        let producer = {
            let (q, dropped) = (q.clone(), dropped.clone());
            thread::spawn(move || {
                let _ = q.push(Counted(dropped.clone()));
                let _ = q.push(Counted(dropped));
            })
        };
        drop(q.pop());
        producer.join().unwrap();
        drop(q);
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
    });
}

/// Pushes every value in order: runs with `push_many`, one `push` (retried
/// while full) when a run cannot start.
fn push_all(q: &ArrayQueue<i32>, values: Vec<i32>) {
    let mut values = values.into_iter();
    while values.len() > 0 {
        if q.push_many(&mut values) > 0 {
            continue;
        }
        let Some(mut value) = values.next() else { break };
        while let Err(back) = q.push(value) {
            value = back;
            thread::yield_now();
        }
    }
}

/// Pops up to `want` values in runs of up to `run`, with a bounded number of
/// attempts that find nothing.
fn pop_runs(q: &ArrayQueue<i32>, want: usize, run: usize, attempts: usize) -> Vec<i32> {
    let mut seen = Vec::new();
    for _ in 0..attempts {
        if seen.len() == want {
            break;
        }
        if q.pop_many(run.min(want - seen.len()), |value| seen.push(value)) == 0 {
            thread::yield_now();
        }
    }
    seen
}

#[test]
fn a_run_and_a_single_push_race_for_the_tail() {
    loom::model(|| {
        let q = Arc::new(ArrayQueue::new(3));
        let batch = {
            let q = q.clone();
            thread::spawn(move || push_all(&q, vec![1, 2]))
        };
        let single = {
            let q = q.clone();
            thread::spawn(move || push_all(&q, vec![10]))
        };
        let early = pop_runs(&q, 3, 3, 2);
        batch.join().unwrap();
        single.join().unwrap();
        let mut all = early.clone();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        let position = |v| all.iter().position(|&x| x == v);
        assert!(position(1) < position(2), "a run keeps its order: {all:?}");
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 10], "each value exactly once");
    });
}

#[test]
fn runs_race_across_the_end_of_the_buffer() {
    loom::model(|| {
        let q = Arc::new(ArrayQueue::new(2));
        // Head and tail at index 1: a run of two stops at the buffer's end
        // and goes on from index 0 of the next lap. Two values fit, so the
        // producer never waits for room (a model must end).
        q.push(0).unwrap();
        assert_eq!(q.pop(), Some(0));
        let producer = {
            let q = q.clone();
            thread::spawn(move || push_all(&q, vec![1, 2]))
        };
        let consumer = {
            let q = q.clone();
            thread::spawn(move || pop_runs(&q, 2, 2, 2))
        };
        let mine = pop_runs(&q, 2, 2, 2);
        producer.join().unwrap();
        let theirs = consumer.join().unwrap();
        for seen in [&mine, &theirs] {
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "each consumer sees the producer's order: {seen:?}"
            );
        }
        let mut all: Vec<i32> = mine.into_iter().chain(theirs).collect();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all, vec![1, 2], "each value exactly once");
    });
}

#[test]
fn a_run_fills_slots_while_a_run_of_the_previous_lap_frees_them() {
    loom::model(|| {
        let q = Arc::new(ArrayQueue::new(2));
        q.push(1).unwrap();
        q.push(2).unwrap();
        // Full: the producer's run waits for each slot's value to be read out
        // before writing its own (loom checks the slot's cell for races).
        let consumer = {
            let q = q.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                while seen.len() < 2 {
                    if q.pop_many(2, |value| seen.push(value)) == 0 {
                        thread::yield_now();
                    }
                }
                seen
            })
        };
        let producer = {
            let q = q.clone();
            thread::spawn(move || push_all(&q, vec![3, 4]))
        };
        assert_eq!(consumer.join().unwrap(), vec![1, 2]);
        producer.join().unwrap();
        assert_eq!(pop_runs(&q, 2, 2, 1), vec![3, 4]);
    });
}
