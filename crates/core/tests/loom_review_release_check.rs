//! Review model: a fast-path `release` whose double-release check races a
//! shrinking capacity (`forget_permits`). Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_review_release_check`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::Semaphore;

/// One permit is held, two are free; another thread forgets the two free
/// ones (capacity 3 -> 1) while the holder releases its permit. The release
/// is legitimate in every interleaving (1 free + 1 released <= capacity 1
/// afterwards), so it must never be refused as a double release: a refused
/// release loses the permit for good (the binding's `detach` ignores the
/// error, `semRelease` throws after the `Permit` is marked released).
#[test]
fn release_races_forget_permits() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(3));
        sem.try_acquire(1).unwrap();
        let forgetter = {
            let sem = sem.clone();
            thread::spawn(move || sem.forget_permits(2))
        };
        let released = sem.release(1);
        let forgotten = forgetter.join().unwrap();
        assert!(
            released.is_ok(),
            "a legitimate release was refused: {released:?} (forgot {forgotten})"
        );
        assert_eq!(forgotten, 2, "both free permits were taken");
        assert_eq!(sem.capacity(), 1);
        assert_eq!(sem.available(), sem.capacity(), "every permit is free again");
    });
}
