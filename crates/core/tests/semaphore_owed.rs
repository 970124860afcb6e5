//! A semaphore whose value starts below zero (`Semaphore::with_owed`,
//! async-mutex's negative initial value): releases pay the debt before any
//! waiter is served, on every path that gives permits back.
#![cfg(not(loom))]

use std::sync::Arc;
use std::thread;

use sluice_core::{Acquire, Grant, Semaphore, TryAcquireError};

#[test]
fn owed_permits_are_paid_before_waiters() {
    let sem = Semaphore::with_owed(100, 2);
    assert_eq!((sem.available(), sem.owed(), sem.reserved_for_head()), (0, 2, 0));
    assert_eq!(sem.try_acquire(1), Err(TryAcquireError::NoPermits));
    assert_eq!(sem.acquire(1, 7, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(sem.owed(), 1);
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(sem.owed(), 0);
    assert_eq!(sem.release(2), Ok(vec![7]));
    assert_eq!(sem.take_granted(7), vec![Grant { token: 1, permits: 1 }]);
    assert_eq!(sem.available(), 1);
    // The fast paths are open again.
    assert_eq!(sem.try_acquire(1), Ok(()));
}

#[test]
fn owed_with_no_waiter_keeps_the_fast_path_closed() {
    let sem = Semaphore::with_owed(100, 3);
    assert_eq!(sem.release(2), Ok(vec![]));
    assert_eq!((sem.available(), sem.owed()), (0, 1));
    assert_eq!(sem.try_acquire(1), Err(TryAcquireError::NoPermits));
    assert_eq!(sem.forget_permits(1), 0);
    assert_eq!(sem.release(3), Ok(vec![]));
    assert_eq!((sem.available(), sem.owed()), (2, 0));
    assert_eq!(sem.try_acquire(2), Ok(()));
}

#[test]
fn added_permits_pay_the_debt_too() {
    let sem = Semaphore::with_owed(10, 2);
    assert_eq!(sem.add_permits(3), Ok(vec![]));
    assert_eq!((sem.capacity(), sem.available(), sem.owed()), (13, 1, 0));
}

#[test]
fn nothing_owed_is_nothing_free() {
    let sem = Semaphore::with_owed(4, 0);
    assert_eq!((sem.available(), sem.owed()), (0, 0));
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(sem.try_acquire(1), Ok(()));
}

#[test]
fn a_withdrawn_waiter_leaves_the_debt_in_place() {
    let sem = Semaphore::with_owed(10, 1);
    assert_eq!(sem.acquire(2, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.cancel(1, 1), Some(vec![]));
    assert_eq!(sem.remove_owner(1), vec![]);
    assert_eq!((sem.available(), sem.owed(), sem.waiting()), (0, 1, 0));
    assert_eq!(sem.try_acquire(1), Err(TryAcquireError::NoPermits));
}

/// Threads release one permit each while others queue: exactly `owed` of the
/// released permits vanish, whatever the interleaving.
#[test]
fn mpmc_conserves_permits_past_the_debt() {
    const OWED: usize = 50;
    const RELEASES: usize = 200;
    let sem = Arc::new(Semaphore::with_owed(1_000, OWED));
    let releasers: Vec<_> = (0..4)
        .map(|_| {
            let sem = sem.clone();
            thread::spawn(move || {
                for _ in 0..RELEASES / 4 {
                    let _ = sem.release(1).unwrap();
                }
            })
        })
        .collect();
    let mut queued = 0;
    let mut acquired = 0;
    for token in 0..20 {
        match sem.acquire(1, 9, token).unwrap() {
            Acquire::Queued => queued += 1,
            Acquire::Acquired => acquired += 1,
        }
    }
    for releaser in releasers {
        releaser.join().unwrap();
    }
    let granted = sem.take_granted(9).len();
    assert_eq!(granted, queued);
    assert_eq!(sem.owed(), 0);
    assert_eq!(sem.waiting(), 0);
    assert_eq!(sem.available(), RELEASES - OWED - queued - acquired);
}
