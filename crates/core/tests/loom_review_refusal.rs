//! Review models: a refusal (`forget_held` shrinking the capacity below a
//! queued wait) racing the other ways a wait ends or permits move: a cancel,
//! a dying owner (`remove_owner`, what the binding's `detach` runs), a close,
//! a priority overtake, a debt (`with_owed`). In every interleaving each
//! permit ends up free or held exactly once. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_review_refusal`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::{Acquire, Decision, Semaphore};

/// Everything `owner` has decisions: (granted permits, refusals).
fn decisions(sem: &Semaphore, owner: u32) -> (usize, usize) {
    let (mut granted, mut refused) = (0, 0);
    sem.drain_decisions(owner, |s| match s {
        Decision::Granted(g) => granted += g.permits,
        Decision::Refused(_) => refused += 1,
    });
    (granted, refused)
}

/// The head (owner 0, 3 permits, one reserved for it) is refused by a
/// forget while owner 0's thread dies and owner 1's wait behind it is
/// cancelled. The reserved permit is never lost nor given twice.
#[test]
fn refusal_races_remove_owner_and_cancel() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(3));
        sem.try_acquire(3).unwrap(); // the holder: 3
        assert_eq!(sem.acquire(3, 0, 1).unwrap(), Acquire::Queued);
        assert_eq!(sem.acquire(1, 1, 2).unwrap(), Acquire::Queued);
        sem.release(1).unwrap(); // reserved for the head; the holder: 2
        let forgetter = {
            let sem = sem.clone();
            thread::spawn(move || sem.forget_held(1).unwrap()) // the holder: 1
        };
        let dying = {
            let sem = sem.clone();
            thread::spawn(move || sem.remove_owner(0))
        };
        let cancelled = sem.cancel(1, 2);
        forgetter.join().unwrap();
        dying.join().unwrap();
        // The cancel found the wait queued or granted (then it gave it back);
        // never already refused (1 permit fits any capacity here).
        assert!(cancelled.is_some());
        assert_eq!(decisions(&sem, 0), (0, 0), "remove_owner leaves nothing to collect");
        assert_eq!(decisions(&sem, 1), (0, 0), "the cancel left nothing to collect");
        assert_eq!(sem.waiting(), 0);
        assert_eq!(sem.capacity(), 2);
        assert_eq!(sem.reserved_for_head(), 0);
        sem.release(1).unwrap(); // the holder's last
        assert_eq!(sem.available(), 2, "every permit of the new capacity is free");
        assert!(sem.release(1).is_err(), "and none more");
    });
}

/// A refusal races a close and a release: the wait is refused or withdrawn
/// (never both, never granted over capacity) and the permits all come back.
#[test]
fn refusal_races_close_and_release() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        sem.try_acquire(2).unwrap(); // the holder: 2
        assert_eq!(sem.acquire(2, 0, 1).unwrap(), Acquire::Queued);
        let forgetter = {
            let sem = sem.clone();
            thread::spawn(move || sem.forget_held(1).unwrap()) // the holder: 1
        };
        let closer = {
            let sem = sem.clone();
            thread::spawn(move || sem.close())
        };
        let released = sem.release(1); // the holder: 0
        forgetter.join().unwrap();
        closer.join().unwrap();
        assert!(released.unwrap().is_empty(), "nobody can be granted 2 of 1");
        let (granted, refused) = decisions(&sem, 0);
        assert_eq!(granted, 0);
        assert!(refused <= 1);
        assert_eq!((sem.capacity(), sem.available(), sem.waiting()), (1, 1, 0));
    });
}

/// A higher-priority request overtakes the head (taking its reserved
/// permit) while a forget refuses that head: the reserved permit goes to
/// exactly one of them, or back to the fast path.
#[test]
fn refusal_races_priority_overtake() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(3));
        sem.try_acquire(3).unwrap(); // the holder: 3
        assert_eq!(sem.acquire(3, 0, 1).unwrap(), Acquire::Queued);
        sem.release(1).unwrap(); // reserved for the head; the holder: 2
        let overtaker = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire_with_priority(1, 5, 1, 2).unwrap())
        };
        let forgetter = {
            let sem = sem.clone();
            thread::spawn(move || sem.forget_held(1).unwrap()) // the holder: 1
        };
        let outcome = overtaker.join().unwrap();
        forgetter.join().unwrap();
        // Owner 0 (3 of capacity 2) is refused in every interleaving.
        assert_eq!(decisions(&sem, 0), (0, 1));
        let (granted, refused) = decisions(&sem, 1);
        assert_eq!(refused, 0);
        let overtaker_holds = match outcome {
            Acquire::Acquired => 1,
            Acquire::Queued => granted,
        };
        assert_eq!(overtaker_holds, 1, "the overtaker ends up holding its permit");
        assert_eq!(sem.waiting(), 0);
        sem.release(1).unwrap(); // the holder's last
        sem.release(1).unwrap(); // the overtaker's
        assert_eq!((sem.capacity(), sem.available()), (2, 2));
    });
}

/// A debt is being paid while a forget refuses the only waiter: the permit
/// that pays the debt never reaches anyone, the fast path stays closed
/// until the debt is paid, and what is left after it is free.
#[test]
fn refusal_races_paying_a_debt() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::with_owed(3, 1)); // the holder: 3, value -1
        assert_eq!(sem.acquire(3, 0, 1).unwrap(), Acquire::Queued);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap()) // pays the debt
        };
        let forgetter = {
            let sem = sem.clone();
            thread::spawn(move || sem.forget_held(1).unwrap()) // capacity 2
        };
        // A fast-path acquire can never succeed before the debt is paid.
        let early = sem.try_acquire(1);
        let paid_before = sem.owed() == 0;
        releaser.join().unwrap();
        forgetter.join().unwrap();
        if early.is_ok() {
            assert!(paid_before, "a fast-path acquire succeeded while a permit was owed");
        }
        assert!(early.is_err(), "nothing was free: 1 released, 1 owed");
        assert_eq!(decisions(&sem, 0), (0, 1), "3 of capacity 2 is refused");
        assert_eq!((sem.owed(), sem.waiting(), sem.available()), (0, 0, 0));
        sem.release(1).unwrap(); // the holder's last
        assert_eq!((sem.capacity(), sem.available()), (2, 1), "value -1 + 2 released");
        assert!(sem.try_acquire(1).is_ok(), "the fast path is open again");
    });
}
