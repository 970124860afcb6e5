//! loom models of the semaphore's races. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_semaphore`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::{Acquire, AcquireError, Semaphore};

/// A fast-path release races a waiter joining the queue: the waiter must end up
/// granted (no lost wake-up) and every permit must come back.
#[test]
fn release_races_enqueue() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        sem.try_acquire(1).unwrap();
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let outcome = sem.acquire(1, 0, 1).unwrap();
        let woken = releaser.join().unwrap();
        match outcome {
            Acquire::Acquired => assert!(woken.is_empty()),
            Acquire::Queued => {
                // The release came after we queued, so it must have granted us.
                assert_eq!(woken, vec![0]);
                assert_eq!(sem.take_granted(0).len(), 1);
            }
        }
        assert_eq!(sem.available(), 0);
        sem.release(1).unwrap();
        assert_eq!(sem.available(), 1);
        assert_eq!(sem.waiting(), 0);
    });
}

/// Two threads contend through both paths for a weighted semaphore; permits
/// are conserved whatever the interleaving.
#[test]
fn weighted_contention_conserves_permits() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        let other = {
            let sem = sem.clone();
            thread::spawn(move || {
                if sem.try_acquire(1).is_ok() {
                    sem.release(1).unwrap();
                }
            })
        };
        match sem.acquire(2, 0, 1).unwrap() {
            Acquire::Acquired => {}
            Acquire::Queued => {
                other.join().unwrap();
                assert_eq!(sem.take_granted(0).len(), 1, "the release must have granted the head");
                sem.release(2).unwrap();
                assert_eq!(sem.available(), 2);
                return;
            }
        }
        sem.release(2).unwrap();
        other.join().unwrap();
        assert_eq!(sem.available(), 2);
    });
}

/// A cancel races the release that would grant the waiter: either way the
/// permit ends up free exactly once.
#[test]
fn cancel_races_grant() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        sem.try_acquire(1).unwrap();
        assert_eq!(sem.acquire(1, 0, 1).unwrap(), Acquire::Queued);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let cancelled = sem.cancel(0, 1);
        releaser.join().unwrap();
        assert!(cancelled.is_some(), "queued or granted-uncollected, the wait is found");
        assert!(sem.take_granted(0).is_empty());
        assert_eq!(sem.available(), 1);
        assert_eq!(sem.waiting(), 0);
    });
}

/// `close` races a waiter joining the queue: either the wait is refused with
/// `Closed`, or it is queued and then withdrawn with its owner reported.
#[test]
fn close_races_enqueue() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        sem.try_acquire(1).unwrap();
        let closer = {
            let sem = sem.clone();
            thread::spawn(move || sem.close())
        };
        let outcome = sem.acquire(1, 3, 1);
        let told = closer.join().unwrap();
        match outcome {
            Err(sluice_core::AcquireError::Closed) => assert!(told.is_empty()),
            Ok(Acquire::Queued) => assert_eq!(told, vec![3]),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(sem.waiting(), 0);
        sem.release(1).unwrap();
        assert_eq!(sem.available(), 1);
    });
}

/// A high-priority acquire overtakes a weighted head while another thread
/// releases: whatever the interleaving, no permit is created or lost, and
/// both waits end up served.
#[test]
fn priority_overtake_races_release() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        sem.try_acquire(2).unwrap();
        // The head waits for 2; one permit comes back and is reserved for it.
        assert_eq!(sem.acquire(2, 0, 1).unwrap(), Acquire::Queued);
        sem.release(1).unwrap();
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let urgent = sem.acquire_with_priority(1, 1, 1, 1).unwrap();
        releaser.join().unwrap();
        let granted_to = |owner| sem.take_granted(owner).iter().map(|g| g.permits).sum::<usize>();
        let mut urgent_held = match urgent {
            Acquire::Acquired => 1,
            Acquire::Queued => granted_to(1),
        };
        let mut head_held = granted_to(0);
        // Two permits in all, wherever they are; and someone was served.
        assert_eq!(urgent_held + head_held + sem.available() + sem.reserved_for_head(), 2);
        assert!(urgent_held + head_held > 0);
        // Whoever holds releases; the other one is served by that.
        let (mut urgent_served, mut head_served) = (urgent_held == 1, head_held == 2);
        for _ in 0..2 {
            if urgent_held > 0 {
                sem.release(urgent_held).unwrap();
                urgent_held = 0;
            }
            if head_held > 0 {
                sem.release(head_held).unwrap();
                head_held = 0;
            }
            if !urgent_served && granted_to(1) == 1 {
                (urgent_served, urgent_held) = (true, 1);
            }
            if !head_served && granted_to(0) == 2 {
                (head_served, head_held) = (true, 2);
            }
        }
        assert!(urgent_served && head_served, "both waits are served");
        assert_eq!(sem.available(), 2);
        assert_eq!(sem.waiting(), 0);
    });
}

/// `forget_held` shrinks the capacity while a wait for the old capacity
/// queues: either the acquire is refused with `TooManyPermits`, or it is queued
/// and then refused by the forget, its owner told. It is never left queued.
#[test]
fn forget_held_races_enqueue_of_a_heavy_wait() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        sem.try_acquire(2).unwrap();
        let forgetter = {
            let sem = sem.clone();
            thread::spawn(move || sem.forget_held(1).unwrap())
        };
        let outcome = sem.acquire(2, 0, 1);
        let told = forgetter.join().unwrap();
        match outcome {
            Err(AcquireError::TooManyPermits {
                requested: 2,
                capacity: 1,
            }) => assert!(told.is_empty()),
            Ok(Acquire::Queued) => {
                assert_eq!(told, vec![0]);
                assert_eq!(sem.take_refused(0).len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(sem.waiting(), 0);
        assert_eq!(sem.capacity(), 1);
        sem.release(1).unwrap();
        assert_eq!(sem.available(), 1);
    });
}

/// The head waits for 3 with one permit reserved for it and a small wait behind
/// it; one holder forgets its permit (refusing the head) while another
/// releases. The reserved permit is not lost: the small wait is granted and
/// every permit of the new capacity comes back.
#[test]
fn forget_held_refusing_the_head_races_release() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(3));
        sem.try_acquire(3).unwrap();
        assert_eq!(sem.acquire(3, 0, 1).unwrap(), Acquire::Queued);
        assert_eq!(sem.acquire(1, 1, 1).unwrap(), Acquire::Queued);
        sem.release(1).unwrap(); // reserved for the head
        let forgetter = {
            let sem = sem.clone();
            thread::spawn(move || sem.forget_held(1).unwrap())
        };
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let mut told = forgetter.join().unwrap();
        told.extend(releaser.join().unwrap());
        assert!(told.contains(&0) && told.contains(&1));
        assert_eq!(sem.take_refused(0).len(), 1);
        assert_eq!(sem.take_granted(1).len(), 1);
        assert_eq!(sem.waiting(), 0);
        assert_eq!(sem.capacity(), 2);
        assert_eq!(sem.available(), 1, "2 permits: one free, one held by owner 1");
        sem.release(1).unwrap();
        assert_eq!(sem.available(), 2);
    });
}
