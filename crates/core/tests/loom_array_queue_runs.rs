//! loom models of the queue's runs (`push_many`/`pop_many`) racing single
//! `push`/`pop`, and of the channel's batch paths; written by a review of the
//! runs. Run with
//! `RUSTFLAGS='--cfg loom' LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_array_queue_runs`.
//!
//! Every thread runs a fixed script of single attempts (no retry loops of its
//! own), so every model ends; the queue's internal spins wait only for a
//! thread that is mid-way through a claimed slot. Checks: loom's cell
//! tracking (a write racing a read of a slot's value), each pushed value
//! popped exactly once (a read before the write returns the slot's stale
//! value of the previous lap: a duplicate), per-producer order within each
//! consumer, and `len`/`is_empty`/`is_full` once quiescent.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use sluice_core::{ArrayQueue, Channel, TryRecvError, TrySendError};

#[derive(Clone, Debug)]
enum Op {
    /// One `push`; on `Err` the value is not pushed.
    Push(i32),
    /// One `push_many`; what it did not take is not pushed.
    PushMany(Vec<i32>),
    /// One `pop`.
    Pop,
    /// One `pop_many(max)`.
    PopMany(usize),
}

#[derive(Default, Debug)]
struct Log {
    pushed: Vec<i32>,
    popped: Vec<i32>,
}

fn run(q: &ArrayQueue<i32>, ops: &[Op]) -> Log {
    let mut log = Log::default();
    for op in ops {
        match op {
            Op::Push(v) => {
                if q.push(*v).is_ok() {
                    log.pushed.push(*v);
                }
            }
            Op::PushMany(vs) => {
                let mut it = vs.clone().into_iter();
                let n = q.push_many(&mut it);
                assert!(n <= vs.len());
                assert_eq!(it.len(), vs.len() - n, "push_many took exactly what it reported");
                log.pushed.extend_from_slice(&vs[..n]);
            }
            Op::Pop => {
                if let Some(v) = q.pop() {
                    log.popped.push(v);
                }
            }
            Op::PopMany(max) => {
                let before = log.popped.len();
                let n = q.pop_many(*max, |v| log.popped.push(v));
                assert!(n <= *max);
                assert_eq!(log.popped.len() - before, n, "pop_many passed on what it reported");
            }
        }
    }
    log
}

/// Moves head and tail to `index` of lap 0 (or later laps) with push+pop pairs.
fn advance(q: &ArrayQueue<i32>, steps: usize) {
    for _ in 0..steps {
        q.push(-1).unwrap();
        assert_eq!(q.pop(), Some(-1));
    }
}

/// Values are `producer * 100 + seq`, pushed in increasing `seq`: every
/// consumer (and the final drain) must see each producer's values increasing.
fn check(q: &ArrayQueue<i32>, prefilled: &[i32], logs: Vec<Log>) {
    let mut pushed: Vec<i32> = prefilled.to_vec();
    let mut popped = Vec::new();
    let mut sequences = Vec::new();
    for log in logs {
        pushed.extend(log.pushed);
        popped.extend(log.popped.iter().copied());
        sequences.push(log.popped);
    }
    let len = q.len();
    assert!(len <= q.capacity());
    assert_eq!(q.is_empty(), len == 0);
    assert_eq!(q.is_full(), len == q.capacity());
    let mut drained = Vec::new();
    while let Some(v) = q.pop() {
        drained.push(v);
    }
    assert_eq!(drained.len(), len, "len matched what was left");
    assert!(q.is_empty());
    assert_eq!(q.len(), 0);
    popped.extend(drained.iter().copied());
    sequences.push(drained);
    for seq in &sequences {
        for producer in 0..10 {
            let mine: Vec<i32> = seq.iter().copied().filter(|v| v / 100 == producer).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "producer {producer} out of order in {seq:?}"
            );
        }
    }
    pushed.sort_unstable();
    popped.sort_unstable();
    assert_eq!(popped, pushed, "each pushed value popped exactly once: {sequences:?}");
}

fn model(capacity: usize, steps: usize, prefill: &[i32], scripts: Vec<Vec<Op>>) {
    let prefill = prefill.to_vec();
    loom::model(move || {
        let q = Arc::new(ArrayQueue::new(capacity));
        advance(&q, steps);
        for &v in &prefill {
            q.push(v).unwrap();
        }
        let handles: Vec<_> = scripts
            .clone()
            .into_iter()
            .map(|ops| {
                let q = q.clone();
                thread::spawn(move || run(&q, &ops))
            })
            .collect();
        let logs = handles.into_iter().map(|h| h.join().unwrap()).collect();
        check(&q, &prefill, logs);
    });
}

// Single `push`/`pop` spin (with loom yields) while another thread is mid-way
// through a claimed slot. Two threads spinning at once make loom explore a
// schedule that alternates between them forever ("exceeded maximum number of
// branches"), runs or not. So in these models at most one thread calls
// `push`/`pop`; `push_many` and `pop_many` never wait. (The review ran the
// two-spinner shapes too, with the spins bounded by a patch: all passed.)

// --- A run pop racing a single pop and a single push across a lap boundary.

/// Capacity 1 (one_lap 2): every step crosses a lap. Full at the start, head
/// and tail at lap 1. The single pop and push alternate in one thread.
#[test]
fn cap1_run_pop_vs_pop_and_push() {
    model(
        1,
        1,
        &[1],
        vec![
            vec![Op::PopMany(1), Op::PopMany(1)],
            vec![Op::Pop, Op::Push(200), Op::Pop, Op::Push(201)],
            vec![Op::PushMany(vec![300])],
        ],
    );
}

/// Capacity 2 (one_lap 4), head and tail at index 1: a run from index 1 stops
/// at the buffer's end; the next claims go to index 0 of the next lap.
#[test]
fn cap2_run_pop_vs_pop_and_push_at_end() {
    model(
        2,
        1,
        &[1, 2],
        vec![
            vec![Op::PopMany(2), Op::PopMany(2)],
            vec![Op::Pop, Op::Push(200), Op::Pop, Op::Push(201)],
            vec![Op::PushMany(vec![300, 301])],
        ],
    );
}

/// Capacity 3 (one_lap 4, not a power of two), head and tail at index 2.
#[test]
fn cap3_run_pop_vs_pop_and_push_at_end() {
    model(
        3,
        2,
        &[1, 2, 3],
        vec![
            vec![Op::PopMany(3), Op::PopMany(3)],
            vec![Op::Pop, Op::Push(200), Op::Pop, Op::Push(201)],
            vec![Op::PushMany(vec![300, 301])],
        ],
    );
}

/// Capacity 3 from index 0: the run pop covers the whole buffer while a
/// single pop and a run push of the next lap race it.
#[test]
fn cap3_whole_buffer_run_pop_vs_pop_vs_run_push() {
    model(
        3,
        0,
        &[1, 2, 3],
        vec![
            vec![Op::PopMany(3)],
            vec![Op::Pop, Op::Pop],
            vec![Op::PushMany(vec![300, 301, 302]), Op::PushMany(vec![303])],
        ],
    );
}

// --- push_many with a stale tail.

/// Capacity 1: a single producer/consumer moves the tail a lap on (or two)
/// while the run push may still read the old tail (Relaxed) and its slot's
/// stamp; a run pop frees slots meanwhile.
#[test]
fn cap1_push_many_with_stale_tail() {
    model(
        1,
        0,
        &[],
        vec![
            vec![Op::PushMany(vec![100]), Op::PushMany(vec![101])],
            vec![Op::Push(200), Op::Pop, Op::Push(201)],
            vec![Op::PopMany(1), Op::PopMany(1)],
        ],
    );
}

/// Capacity 2 at index 1: a run push (stops at the end) and single pushes on
/// both sides of the lap boundary, with a run pop freeing slots meanwhile.
#[test]
fn cap2_push_many_with_stale_tail() {
    model(
        2,
        1,
        &[1],
        vec![
            vec![Op::PushMany(vec![100, 101]), Op::PushMany(vec![102])],
            vec![Op::Push(200), Op::Pop, Op::Push(201)],
            vec![Op::PopMany(2), Op::PopMany(2)],
        ],
    );
}

/// Capacity 1, stale *head*: two run pops and a run push, no single ops:
/// every run is exactly one slot and every step is a lap.
#[test]
fn cap1_two_run_pops_one_run_push() {
    model(
        1,
        0,
        &[1],
        vec![
            vec![Op::PopMany(1), Op::PopMany(1)],
            vec![Op::PopMany(1)],
            vec![Op::PushMany(vec![200]), Op::PushMany(vec![201])],
        ],
    );
}

// --- Mixed runs on both sides at capacity 3.

#[test]
fn cap3_mixed_runs_both_sides() {
    model(
        3,
        1,
        &[1],
        vec![
            vec![Op::PushMany(vec![100, 101, 102])],
            vec![Op::PushMany(vec![200, 201]), Op::Push(202)],
            vec![Op::PopMany(3), Op::PopMany(3)],
        ],
    );
}

#[test]
fn cap3_two_run_pushers_two_run_poppers() {
    model(
        3,
        2,
        &[1, 2],
        vec![
            vec![Op::PushMany(vec![100, 101])],
            vec![Op::PushMany(vec![200, 201])],
            vec![Op::PopMany(2)],
            vec![Op::PopMany(3)],
        ],
    );
}
// --- Drop accounting: a panicking pop_many callback racing a push of the next lap.

struct Counted(i32, Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

/// pop_many's callback panics on its first value; the guard frees the rest of
/// the run while a producer pushes into the slots being freed. Every value is
/// dropped exactly once; the producer's values survive.
#[test]
fn cap2_panicking_run_pop_vs_run_push() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(ArrayQueue::new(2));
        q.push(Counted(1, drops.clone())).ok().unwrap();
        q.push(Counted(2, drops.clone())).ok().unwrap();
        let consumer = {
            let q = q.clone();
            thread::spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    q.pop_many(2, |v| {
                        drop(v);
                        panic!("callback");
                    })
                }));
                assert!(result.is_err());
            })
        };
        let producer = {
            let q = q.clone();
            let drops = drops.clone();
            thread::spawn(move || {
                let mut values = vec![Counted(200, drops.clone()), Counted(201, drops.clone())].into_iter();
                let mut pushed = q.push_many(&mut values);
                if let Some(v) = values.next() {
                    if q.push(v).is_ok() {
                        pushed += 1;
                    }
                }
                pushed
            })
        };
        consumer.join().unwrap();
        let pushed = producer.join().unwrap();
        // 1 and 2 dropped (one by the callback, one by the guard), plus what
        // the producer could not push.
        assert_eq!(drops.load(Ordering::Relaxed), 2 + (2 - pushed));
        let mut seen = Vec::new();
        while let Some(v) = q.pop() {
            seen.push(v.0);
        }
        assert_eq!(seen, [200, 201][..pushed].to_vec());
        assert_eq!(drops.load(Ordering::Relaxed), 4);
    });
}

// --- The channel: a batch send (push_many) and a batch receive (pop_many) racing a close.

/// Capacity 4, batches of 4 (BATCH_MIN) on the send side: every message
/// claimed with room is received exactly once, in order, by a receiver or by
/// the drain after the close; no receive spins forever on a permit.
#[test]
fn channel_batch_send_recv_many_and_close() {
    loom::model(|| {
        let channel = Arc::new(Channel::<u32>::new(4));
        // Move the queue's head and tail to index 2, so runs stop at the end.
        for v in [90, 91] {
            channel.try_send(v).unwrap();
            assert_eq!(channel.try_recv().unwrap().0, v);
        }
        let sender = {
            let channel = channel.clone();
            thread::spawn(move || match channel.try_claim_room(4) {
                Ok(room) => {
                    let values: Vec<u32> = (0..room as u32).collect();
                    channel.send_claimed(values.clone());
                    values
                }
                Err(_) => Vec::new(),
            })
        };
        let receiver = {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                for _ in 0..2 {
                    match channel.try_recv_many(4, |v| seen.push(v)) {
                        Ok(_) | Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => {}
                    }
                }
                seen
            })
        };
        let closer = {
            let channel = channel.clone();
            thread::spawn(move || {
                channel.close();
                match channel.try_send(99) {
                    Err(TrySendError::Closed(_)) => {}
                    other => panic!("send after close: {other:?}"),
                }
            })
        };
        let sent = sender.join().unwrap();
        let mut seen = receiver.join().unwrap();
        closer.join().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
        loop {
            match channel.try_recv_many(4, |v| seen.push(v)) {
                Ok(_) => {}
                Err(TryRecvError::Closed) => break,
                Err(TryRecvError::Empty) => panic!("empty after close"),
            }
        }
        assert_eq!(seen, sent, "each message exactly once, in order");
        assert!(channel.is_empty());
    });
}

/// Capacity 2: two receivers' `try_recv_many` (runs via `pop_many`, then
/// `pop_owed`) share the messages of two claimed sends (batches of at most 2,
/// so `send_claimed` pushes one at a time: `push_many` needs 4). Nothing is
/// lost or duplicated, and every permit comes back.
#[test]
fn channel_two_batch_receivers_two_claimed_sends() {
    loom::model(|| {
        let channel = Arc::new(Channel::<u32>::new(2));
        channel.try_send(90).unwrap();
        assert_eq!(channel.try_recv().unwrap().0, 90);
        let sender = {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut sent = Vec::new();
                let mut next = 0;
                for _ in 0..2 {
                    let room = channel.try_claim_room(2).unwrap();
                    let batch: Vec<u32> = (next..next + room as u32).collect();
                    next += room as u32;
                    channel.send_claimed(batch.clone());
                    sent.extend(batch);
                    if room == 0 {
                        thread::yield_now();
                    }
                }
                sent
            })
        };
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let channel = channel.clone();
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    match channel.try_recv_many(2, |v| seen.push(v)) {
                        Ok(_) | Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Closed) => panic!("closed"),
                    }
                    seen
                })
            })
            .collect();
        let sent = sender.join().unwrap();
        let mut all = Vec::new();
        for r in receivers {
            let seen = r.join().unwrap();
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
            all.extend(seen);
        }
        while channel.try_recv_many(2, |v| all.push(v)).is_ok() {}
        all.sort_unstable();
        assert_eq!(all, sent);
        assert_eq!(channel.room().available(), 2, "every room permit back");
        assert_eq!(channel.items().available(), 0);
    });
}
