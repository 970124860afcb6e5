//! Behaviour of the bounded channel: sequential semantics against a
//! `VecDeque` model, waits granted through its semaphores, close and drain,
//! drops, and stress on real threads with checksums.
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::stress;
use proptest::prelude::*;
use sluice_core::{Acquire, Channel, ClaimError, Grant, SendError, TryRecvError, TrySendError};

#[test]
fn smoke() {
    let channel = Channel::new(2);
    assert!(channel.is_empty());
    assert_eq!(channel.capacity(), 2);
    assert_eq!(channel.try_send(1), Ok(vec![]));
    assert_eq!(channel.try_send(2), Ok(vec![]));
    assert_eq!(channel.try_send(3), Err(TrySendError::Full(3)));
    assert_eq!(channel.len(), 2);
    assert_eq!(channel.try_recv(), Ok((1, vec![])));
    assert_eq!(channel.try_recv(), Ok((2, vec![])));
    assert_eq!(channel.try_recv(), Err(TryRecvError::Empty));
    assert!(!channel.is_closed());
}

#[test]
#[should_panic(expected = "capacity must be non-zero")]
fn zero_capacity() {
    let _ = Channel::<u8>::new(0);
}

#[test]
fn send_wakes_a_waiting_receiver_who_receives_with_the_held_permit() {
    let channel = Channel::new(1);
    assert_eq!(channel.items().acquire(1, 3, 10), Ok(Acquire::Queued));
    // The receiver is queued ahead, so a try_recv does not barge in.
    assert_eq!(channel.try_send('x'), Ok(vec![3]));
    assert_eq!(channel.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(channel.items().take_granted(3), vec![Grant { token: 10, permits: 1 }]);
    assert_eq!(channel.recv_held(), (Some('x'), vec![]));
    assert!(channel.is_empty());
}

#[test]
fn receive_wakes_a_waiting_sender_who_sends_with_the_held_permit() {
    let channel = Channel::new(1);
    channel.try_send(1).unwrap();
    assert_eq!(channel.room().acquire(1, 4, 11), Ok(Acquire::Queued));
    assert_eq!(channel.try_recv(), Ok((1, vec![4])));
    // The freed room is the waiting sender's, not a newcomer's.
    assert_eq!(channel.try_send(9), Err(TrySendError::Full(9)));
    assert_eq!(channel.room().take_granted(4).len(), 1);
    assert_eq!(channel.send_held(2), Ok(vec![]));
    assert_eq!(channel.try_recv(), Ok((2, vec![])));
}

#[test]
fn a_panic_in_a_batch_receive_loses_only_what_it_took_and_keeps_the_room() {
    let channel = Channel::new(8);
    // Eight queued, three at the buffer's end and five wrapped to its start,
    // so a batch of eight takes two runs.
    assert_eq!(channel.try_claim_room(8), Ok(8));
    channel.send_claimed(0..8);
    let mut first = Vec::new();
    assert_eq!(channel.try_recv_many(5, |v| first.push(v)), Ok((5, vec![])));
    assert_eq!(channel.try_claim_room(5), Ok(5));
    channel.send_claimed(8..13);
    let mut seen = Vec::new();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = channel.try_recv_many(8, |v| {
            seen.push(v);
            assert_ne!(v, 6, "the callback fails on 6");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(seen, vec![5, 6], "7, the rest of the first run, is dropped with it");
    // The batch's second run is still queued, and receivable.
    let mut rest = Vec::new();
    assert_eq!(channel.try_recv_many(8, |v| rest.push(v)), Ok((5, vec![])));
    assert_eq!(rest, vec![8, 9, 10, 11, 12]);
    assert_eq!(channel.try_recv(), Err(TryRecvError::Empty));
    // Every place of room is back.
    assert_eq!(channel.try_claim_room(9), Ok(8));
}

#[test]
fn close_wakes_all() {
    let channel = Channel::new(1);
    // Owners 1 and 2 wait to receive; then the channel fills and owners 2
    // and 3 wait to send.
    assert_eq!(channel.items().acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(channel.items().acquire(1, 2, 2), Ok(Acquire::Queued));
    assert_eq!(channel.try_send(0), Ok(vec![1]));
    assert_eq!(channel.room().acquire(1, 2, 3), Ok(Acquire::Queued));
    assert_eq!(channel.room().acquire(1, 3, 4), Ok(Acquire::Queued));
    let mut woken = channel.close();
    woken.sort_unstable();
    // Owner 1's wait was granted, not withdrawn; owner 2 had two waits.
    assert_eq!(woken, vec![2, 3], "every owner with a withdrawn wait, once each");
    assert_eq!(channel.room().waiting() + channel.items().waiting(), 0);
    assert!(channel.is_closed());
    assert_eq!(channel.close(), Vec::<u32>::new(), "closing twice does nothing more");
    // Owner 1 was granted before the close: its message is still there.
    assert_eq!(channel.items().take_granted(1).len(), 1);
    assert_eq!(channel.recv_held(), (Some(0), vec![]));
    assert_eq!(channel.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn close_refuses_senders_and_drains_for_receivers() {
    let channel = Channel::new(3);
    channel.try_send(1).unwrap();
    channel.try_send(2).unwrap();
    assert_eq!(channel.room().acquire(1, 5, 1), Ok(Acquire::Acquired));
    channel.close();
    assert_eq!(channel.try_send(3), Err(TrySendError::Closed(3)));
    assert_eq!(channel.try_claim_room(1), Err(ClaimError));
    // A wait granted before the close cannot send after it; its room goes back.
    assert_eq!(channel.send_held(4), Err(SendError(4)));
    assert_eq!(channel.try_recv(), Ok((1, vec![])));
    let mut rest = Vec::new();
    assert_eq!(channel.try_recv_many(10, |v| rest.push(v)), Ok((1, vec![])));
    assert_eq!(rest, vec![2]);
    assert_eq!(channel.try_recv(), Err(TryRecvError::Closed));
    assert_eq!(channel.try_recv_many(10, |_: i32| ()), Err(TryRecvError::Closed));
}

#[test]
fn a_send_that_reserved_room_before_the_close_is_not_lost() {
    let channel = Channel::new(2);
    assert_eq!(channel.try_claim_room(5), Ok(2));
    channel.close();
    assert_eq!(channel.try_recv(), Err(TryRecvError::Closed), "nothing yet");
    assert_eq!(channel.send_claimed([7, 8]), Vec::<u32>::new());
    assert_eq!(channel.try_recv(), Ok((7, vec![])));
    assert_eq!(channel.try_recv(), Ok((8, vec![])));
}

#[test]
fn reserve_and_unreserve_batch_room() {
    let channel = Channel::new(3);
    channel.try_send(0).unwrap();
    assert_eq!(channel.try_claim_room(5), Ok(2));
    assert_eq!(channel.try_claim_room(5), Ok(0));
    assert_eq!(channel.room().acquire(1, 9, 1), Ok(Acquire::Queued));
    assert_eq!(
        channel.return_room(2),
        vec![9],
        "given-back room goes to the waiting sender"
    );
    let mut got = Vec::new();
    assert_eq!(channel.try_recv_many(5, |v| got.push(v)), Ok((1, vec![])));
    assert_eq!(got, vec![0]);
}

#[test]
fn recv_many_stops_at_max_and_wakes_senders_once() {
    let channel = Channel::new(4);
    assert_eq!(channel.try_claim_room(4), Ok(4));
    channel.send_claimed(1..=4);
    assert_eq!(channel.room().acquire(2, 6, 1), Ok(Acquire::Queued));
    let mut got = Vec::new();
    assert_eq!(channel.try_recv_many(3, |v| got.push(v)), Ok((3, vec![6])));
    assert_eq!(got, vec![1, 2, 3]);
}

#[test]
fn drops() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let channel = Channel::new(4);
    for _ in 0..4 {
        channel.try_send(Counted(dropped.clone())).unwrap();
    }
    let Err(TrySendError::Full(back)) = channel.try_send(Counted(dropped.clone())) else {
        panic!("a full channel takes no more")
    };
    drop(back);
    drop(channel.try_recv().unwrap());
    assert_eq!(dropped.load(Ordering::Relaxed), 2);
    drop(channel);
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        5,
        "what is still queued drops with the channel"
    );
}

/// Sends `value`, spinning while the channel is full (the tests' stand-in for
/// a wait).
fn send_spin<T>(channel: &Channel<T>, mut value: T) {
    loop {
        match channel.try_send(value) {
            Ok(_) => return,
            Err(TrySendError::Full(back)) => {
                value = back;
                thread::yield_now();
            }
            Err(TrySendError::Closed(_)) => panic!("closed"),
        }
    }
}

#[test]
fn spsc() {
    let n = stress(100_000);
    let channel = Arc::new(Channel::new(3));
    let producer = {
        let channel = channel.clone();
        thread::spawn(move || (0..n).for_each(|i| send_spin(&channel, i)))
    };
    let mut next = 0;
    while next < n {
        match channel.try_recv() {
            Ok((value, _)) => {
                assert_eq!(value, next, "FIFO");
                next += 1;
            }
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(TryRecvError::Closed) => panic!("closed"),
        }
    }
    producer.join().unwrap();
    assert!(channel.is_empty());
}

#[test]
fn mpmc() {
    const THREADS: usize = 4;
    let n = stress(25_000);
    let channel = Arc::new(Channel::new(8));
    let barrier = Arc::new(Barrier::new(2 * THREADS));
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (channel, barrier) = (channel.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..n {
                    send_spin(&channel, t * n + i);
                }
            })
        })
        .collect();
    let consumers = spawn_consumers(&channel, &barrier, THREADS, n, 3);
    for producer in producers {
        producer.join().unwrap();
    }
    channel.close();
    check_consumers(consumers, THREADS * n);
}

/// `threads` consumers that start at `barrier` and take up to `max` messages
/// at a time until the channel is closed and drained. Messages are
/// `producer * n + i`: each checks every producer's messages arrive in
/// order, and returns how many it received and their sum.
fn spawn_consumers(
    channel: &Arc<Channel<usize>>,
    barrier: &Arc<Barrier>,
    threads: usize,
    n: usize,
    max: usize,
) -> Vec<thread::JoinHandle<(usize, usize)>> {
    (0..threads)
        .map(|_| {
            let (channel, barrier) = (channel.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let mut next = vec![0usize; threads];
                let (mut count, mut sum) = (0, 0);
                loop {
                    match channel.try_recv_many(max, |v: usize| {
                        let (t, i) = (v / n, v % n);
                        assert!(i >= next[t], "FIFO per producer");
                        next[t] = i + 1;
                        count += 1;
                        sum += v;
                    }) {
                        Ok(_) => {}
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(TryRecvError::Closed) => return (count, sum),
                    }
                }
            })
        })
        .collect()
}

/// Joins `spawn_consumers`' threads: `total` messages received, each once.
fn check_consumers(consumers: Vec<thread::JoinHandle<(usize, usize)>>, total: usize) {
    let (count, sum) = consumers
        .into_iter()
        .map(|c| c.join().unwrap())
        .fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
    assert_eq!(count, total, "nothing lost or duplicated");
    assert_eq!(sum, total * (total - 1) / 2, "checksum");
}

/// Batches on both sides: producers claim runs of room and send them with
/// `send_claimed` (long enough for the queue's runs), consumers take up to 7
/// at a time. Nothing is lost or duplicated, and each producer's messages
/// reach each consumer in order.
#[test]
fn mpmc_in_batches() {
    const THREADS: usize = 3;
    let n = stress(30_000);
    let channel = Arc::new(Channel::new(10));
    let barrier = Arc::new(Barrier::new(2 * THREADS));
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (channel, barrier) = (channel.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let mut i = 0;
                while i < n {
                    match channel.try_claim_room((n - i).min(6)) {
                        Ok(0) => thread::yield_now(),
                        Ok(room) => {
                            channel.send_claimed((i..i + room).map(|i| t * n + i));
                            i += room;
                        }
                        Err(_) => unreachable!("closed only after every producer is done"),
                    }
                }
            })
        })
        .collect();
    let consumers = spawn_consumers(&channel, &barrier, THREADS, n, 7);
    for producer in producers {
        producer.join().unwrap();
    }
    channel.close();
    check_consumers(consumers, THREADS * n);
}

#[derive(Debug, Clone)]
enum Op {
    TrySend,
    Reserve(usize),
    TryRecv,
    RecvMany(usize),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::TrySend),
        1 => (0usize..9).prop_map(Op::Reserve),
        4 => Just(Op::TryRecv),
        1 => (0usize..9).prop_map(Op::RecvMany),
        1 => Just(Op::Close),
    ]
}

proptest! {
    /// Sequentially the channel is a bounded FIFO that refuses sends once
    /// closed and drains what was queued: checked against a `VecDeque`.
    #[test]
    fn sequential_spec(capacity in 1usize..9, ops in prop::collection::vec(op(), 0..60)) {
        let channel = Channel::new(capacity);
        let mut model = VecDeque::new();
        let mut closed = false;
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::TrySend => {
                    let result = channel.try_send(next);
                    if closed {
                        prop_assert_eq!(result, Err(TrySendError::Closed(next)));
                    } else if model.len() == capacity {
                        prop_assert_eq!(result, Err(TrySendError::Full(next)));
                    } else {
                        prop_assert_eq!(result, Ok(vec![]));
                        model.push_back(next);
                    }
                    next += 1;
                }
                Op::Reserve(max) => {
                    let result = channel.try_claim_room(max);
                    if closed {
                        prop_assert_eq!(result, Err(ClaimError));
                    } else {
                        let room = max.min(capacity - model.len());
                        prop_assert_eq!(result, Ok(room));
                        let values: Vec<u32> = (next..next + room as u32).collect();
                        next += room as u32;
                        prop_assert_eq!(channel.send_claimed(values.iter().copied()), Vec::<u32>::new());
                        model.extend(values);
                    }
                }
                Op::TryRecv => {
                    let expected = match model.pop_front() {
                        Some(value) => Ok((value, vec![])),
                        None if closed => Err(TryRecvError::Closed),
                        None => Err(TryRecvError::Empty),
                    };
                    prop_assert_eq!(channel.try_recv(), expected);
                }
                Op::RecvMany(max) => {
                    let mut got = Vec::new();
                    let result = channel.try_recv_many(max, |v| got.push(v));
                    let take = max.min(model.len());
                    let expected: Vec<u32> = model.drain(..take).collect();
                    if take > 0 {
                        prop_assert_eq!(result, Ok((take, vec![])));
                    } else if closed {
                        prop_assert_eq!(result, Err(TryRecvError::Closed));
                    } else {
                        prop_assert_eq!(result, Err(TryRecvError::Empty));
                    }
                    prop_assert_eq!(got, expected);
                }
                Op::Close => {
                    prop_assert_eq!(channel.close(), Vec::<u32>::new());
                    closed = true;
                }
            }
            prop_assert_eq!(channel.len(), model.len());
            prop_assert_eq!(channel.is_closed(), closed);
            // Permit accounting: free room plus queued messages is the capacity
            // while open (after a close, receives take no permits).
            if !closed {
                prop_assert_eq!(channel.room().available(), capacity - model.len());
                prop_assert_eq!(channel.items().available(), model.len());
            }
        }
    }
}

#[test]
fn a_batch_longer_than_a_chunk_arrives_whole_and_in_order() {
    // `send_claimed` collects a batch 1,024 messages at a time.
    let channel = Channel::new(3000);
    assert_eq!(channel.try_claim_room(2500), Ok(2500));
    assert!(channel.send_claimed(0..2500u32).is_empty());
    assert_eq!(channel.len(), 2500);
    let mut got = Vec::new();
    // Runs stop at the buffer's end, not before: all 2,500 in one call.
    assert_eq!(channel.try_recv_many(3000, |v| got.push(v)), Ok((2500, vec![])));
    assert_eq!(got, (0..2500).collect::<Vec<_>>());
    assert_eq!(channel.try_claim_room(3000), Ok(3000), "all the room is back");
}

#[test]
fn a_receive_many_callback_may_receive_and_send_on_its_channel() {
    // Found by review: a `try_send` from the callback spun forever when the
    // batch's later messages still sat in their queue slots.
    let (done, finished) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let channel = Channel::new(3);
        for v in [1, 2, 3] {
            channel.try_send(v).unwrap();
        }
        let mut got = Vec::new();
        let received = channel.try_recv_many(2, |value| {
            got.push(value);
            if value == 1 {
                let (third, _) = channel.try_recv().unwrap();
                channel.try_send(4).unwrap();
                let (fourth, _) = channel.try_recv().unwrap();
                channel.try_send(5).unwrap();
                got.extend([third, fourth]);
            }
        });
        assert_eq!(received, Ok((2, vec![])));
        assert_eq!(got, [1, 3, 4, 2]);
        let mut rest = Vec::new();
        assert_eq!(channel.try_recv_many(3, |v| rest.push(v)), Ok((1, vec![])));
        assert_eq!(rest, [5]);
        assert_eq!(channel.room().available(), 3, "every place of room is back");
        let _ = done.send(());
    });
    let outcome = finished.recv_timeout(std::time::Duration::from_secs(5));
    assert!(
        outcome.is_ok(),
        "a send from try_recv_many's callback never returned (or the scenario panicked)"
    );
}
