//! loom models of the bounded channel. Run with `npm run test:loom`, or
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_channel`.
//! Capacities stay at 1 or 2 and threads at two or three, so each model runs
//! in seconds.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::{Acquire, Channel, TryRecvError, TrySendError};

/// Sends, yielding while the channel is full (the model's stand-in for a wait).
fn send_spin(channel: &Channel<u32>, mut value: u32) {
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

/// Receives `n` messages, yielding while the channel is empty.
fn recv_spin(channel: &Channel<u32>, n: usize) -> Vec<u32> {
    let mut seen = Vec::new();
    while seen.len() < n {
        match channel.try_recv() {
            Ok((value, _)) => seen.push(value),
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(TryRecvError::Closed) => panic!("closed"),
        }
    }
    seen
}

/// One sender, one receiver, capacity 1: the second send needs the room the
/// first receive gives back. FIFO, nothing lost or duplicated.
#[test]
fn spsc() {
    loom::model(|| {
        let channel = Arc::new(Channel::new(1));
        let sender = {
            let channel = channel.clone();
            thread::spawn(move || {
                send_spin(&channel, 1);
                send_spin(&channel, 2);
            })
        };
        assert_eq!(recv_spin(&channel, 2), vec![1, 2], "FIFO, nothing lost or duplicated");
        sender.join().unwrap();
        assert!(channel.is_empty());
    });
}

/// Two senders race each other and the receiver; the receiver gets both
/// messages. (With capacity 1 and spinning senders, the model exceeds loom's
/// branch limit; `spsc` covers room handed back.)
#[test]
fn mpsc() {
    loom::model(|| {
        let channel = Arc::new(Channel::new(2));
        let senders: Vec<_> = [10, 20]
            .into_iter()
            .map(|value| {
                let channel = channel.clone();
                thread::spawn(move || channel.try_send(value).unwrap())
            })
            .collect();
        let mut seen = recv_spin(&channel, 2);
        for sender in senders {
            sender.join().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![10, 20], "nothing lost or duplicated");
    });
}

/// A receiver queues a wait on `items` while a sender sends: whichever way
/// they interleave, the receiver is granted (at once or through the owners
/// the send returns) and its held permit finds the message.
#[test]
fn waiting_receiver_gets_the_message() {
    loom::model(|| {
        const RECEIVER: u32 = 1;
        let channel = Arc::new(Channel::new(1));
        let sender = {
            let channel = channel.clone();
            thread::spawn(move || channel.try_send(7).unwrap())
        };
        let granted = match channel.items().acquire(1, RECEIVER, 1) {
            Ok(Acquire::Acquired) => true,
            Ok(Acquire::Queued) => false,
            Err(error) => panic!("{error}"),
        };
        let woken = sender.join().unwrap();
        if !granted {
            // The send must have granted the queued wait and named its owner.
            assert_eq!(woken, vec![RECEIVER], "the send wakes the waiting receiver");
            assert_eq!(channel.items().take_granted(RECEIVER).len(), 1);
        }
        assert_eq!(channel.recv_held(), (Some(7), vec![]));
    });
}

/// A close races a sender and a receiver. Every send that succeeded is
/// received exactly once, in order, by the racing receiver or by a drain
/// after the close; a send after the close fails; the racing receiver stops
/// only when it is told the channel is closed and drained.
#[test]
fn close_races_send_and_recv() {
    loom::model(|| {
        let channel = Arc::new(Channel::new(2));
        let sender = {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut sent = Vec::new();
                for value in [1, 2] {
                    match channel.try_send(value) {
                        Ok(_) => sent.push(value),
                        Err(TrySendError::Closed(_)) => break,
                        Err(TrySendError::Full(_)) => unreachable!("two places for two messages"),
                    }
                }
                sent
            })
        };
        let receiver = {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                loop {
                    match channel.try_recv() {
                        Ok((value, _)) => seen.push(value),
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(TryRecvError::Closed) => return seen,
                    }
                }
            })
        };
        channel.close();
        assert!(matches!(channel.try_send(3), Err(TrySendError::Closed(3))));
        let sent = sender.join().unwrap();
        let mut seen = receiver.join().unwrap();
        // A send that took its room before the close may land after the
        // receiver was told "drained": it stays for the next receive.
        while let Ok((value, _)) = channel.try_recv() {
            seen.push(value);
        }
        assert_eq!(seen, sent, "every message sent is received once, in order");
    });
}
