//! loom models of a semaphore that owes permits (`Semaphore::with_owed`). Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_semaphore_owed`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::{Acquire, Semaphore};

/// Two releases race a waiter joining: the first released permit pays the
/// debt, the second reaches the waiter (granted or taken at once), never both
/// to the waiter and never lost.
#[test]
fn releases_race_an_acquire_past_the_debt() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::with_owed(4, 1));
        let releasers: Vec<_> = (0..2)
            .map(|_| {
                let sem = sem.clone();
                thread::spawn(move || sem.release(1).unwrap())
            })
            .collect();
        let outcome = sem.acquire(1, 0, 1).unwrap();
        let woken: Vec<_> = releasers.into_iter().flat_map(|r| r.join().unwrap()).collect();
        match outcome {
            Acquire::Acquired => assert!(woken.is_empty()),
            Acquire::Queued => {
                assert_eq!(woken, vec![0]);
                assert_eq!(sem.take_granted(0).len(), 1);
            }
        }
        assert_eq!((sem.owed(), sem.available(), sem.waiting()), (0, 0, 0));
    });
}
