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
