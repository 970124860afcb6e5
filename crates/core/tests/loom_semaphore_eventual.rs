//! loom models of the eventually fair semaphore: a releaser, a barger and the
//! nudged head race, with the clock before and after `fair_after`. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p sluice-core --release --test loom_semaphore_eventual`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sluice_core::{Acquire, FakeClock, Semaphore};

const FAIR_AFTER: u64 = 100;
const HEAD: u32 = 1;

/// One permit, held by the caller; `HEAD` queued at time 0.
fn contended(clock: &std::sync::Arc<FakeClock>) -> Arc<Semaphore> {
    held_with_head_queued(Semaphore::new(1).with_eventual_fairness(clock.clone(), FAIR_AFTER))
}

/// `sem`'s one permit held by the caller, `HEAD` queued.
fn held_with_head_queued(sem: Semaphore) -> Arc<Semaphore> {
    let sem = Arc::new(sem);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, HEAD, 1).unwrap(), Acquire::Queued);
    sem
}

/// What the nudged head's thread does when rung: serve, then collect.
fn serve_and_collect(sem: &Semaphore) -> usize {
    let _ = sem.serve();
    sem.take_granted(HEAD).len()
}

/// The head is young: the release parks the permit, a barger may take it (and
/// give it back, parking it again), and the head serves when it runs. Whatever
/// the interleaving, the permit exists once: either the head got it, or it is
/// parked with a nudge pending, which a later serve turns into the grant.
#[test]
fn young_head_barger_and_nudged_head_conserve_the_permit() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        barger_and_nudged_head_race(contended(&clock));
    });
}

/// The same race counting from the head: `HEAD` was queued long ago, but
/// the release is the first to find it standing first, so it is young.
#[test]
fn counted_from_the_head_a_long_queued_head_races_as_a_young_one() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        let sem = held_with_head_queued(Semaphore::new(1).with_eventual_head_fairness(clock.clone(), FAIR_AFTER));
        clock.advance(FAIR_AFTER * 10);
        barger_and_nudged_head_race(sem);
    });
}

/// A release, a barger and the nudged head race over `sem`'s one permit,
/// `HEAD` queued and young: see `young_head_barger_and_nudged_head_conserve_the_permit`.
fn barger_and_nudged_head_race(sem: Arc<Semaphore>) {
    let releaser = {
        let sem = sem.clone();
        thread::spawn(move || sem.release(1).unwrap())
    };
    let barger = {
        let sem = sem.clone();
        thread::spawn(move || {
            if sem.try_acquire(1).is_ok() {
                sem.release(1).unwrap();
            }
        })
    };
    let head = {
        let sem = sem.clone();
        thread::spawn(move || serve_and_collect(&sem))
    };
    releaser.join().unwrap();
    barger.join().unwrap();
    let mut granted = head.join().unwrap();
    if granted == 0 {
        // Still queued: the permit must be parked and a nudge pending.
        assert_eq!(sem.available(), 1);
        assert_eq!(sem.waiting(), 1);
        granted = serve_and_collect(&sem);
    }
    assert_eq!(granted, 1, "the nudged head is served in the end");
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
    sem.release(1).unwrap();
    assert_eq!(sem.available(), 1);
}

/// The head is due: the release hands off as in FIFO mode, so a barger never
/// gets the permit, whatever the interleaving.
#[test]
fn due_head_gets_the_release_and_bargers_get_nothing() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        let sem = contended(&clock);
        clock.advance(FAIR_AFTER);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let barger = {
            let sem = sem.clone();
            thread::spawn(move || sem.try_acquire(1).is_ok())
        };
        let head = {
            let sem = sem.clone();
            thread::spawn(move || serve_and_collect(&sem))
        };
        assert_eq!(releaser.join().unwrap(), vec![HEAD]);
        assert!(!barger.join().unwrap(), "a barger took a due head's permit");
        let granted = head.join().unwrap() + sem.take_granted(HEAD).len();
        assert_eq!(granted, 1);
        assert_eq!((sem.available(), sem.waiting()), (0, 0));
    });
}

/// A barger took the parked permit while the head was young; the head became
/// due meanwhile. The barger's release races the nudged head's serve: the
/// release must hand the permit to the head, never park it again.
#[test]
fn a_due_head_is_served_by_the_next_release() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        let sem = contended(&clock);
        assert_eq!(sem.release(1).unwrap(), vec![HEAD], "young head: parked and nudged");
        sem.try_acquire(1).expect("a newcomer may take a parked permit");
        clock.advance(FAIR_AFTER);
        let barger = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let head = {
            let sem = sem.clone();
            thread::spawn(move || serve_and_collect(&sem))
        };
        assert_eq!(barger.join().unwrap(), vec![HEAD]);
        let granted = head.join().unwrap() + sem.take_granted(HEAD).len();
        assert_eq!(granted, 1);
        assert_eq!((sem.available(), sem.waiting()), (0, 0));
        assert!(sem.try_acquire(1).is_err());
    });
}

/// A fast-path release (QUEUED clear) races a waiter that closes the fast
/// path, and a barger: whichever wins, the permit exists once, and a waiter
/// that queued is granted by the serve its nudge asks for or holds it already.
#[test]
fn fast_path_release_races_the_acquire_that_sets_queued() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        let sem = Arc::new(Semaphore::new(1).with_eventual_fairness(clock, FAIR_AFTER));
        sem.try_acquire(1).unwrap();
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let waiter = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire(1, HEAD, 1).unwrap())
        };
        let barger = {
            let sem = sem.clone();
            thread::spawn(move || sem.try_acquire(1).is_ok())
        };
        let woken = releaser.join().unwrap();
        let acquired = waiter.join().unwrap() == Acquire::Acquired;
        let barged = barger.join().unwrap();
        if barged {
            // The barger holds the only permit; the waiter cannot have it yet.
            assert!(!acquired);
            assert_eq!(sem.waiting(), 1);
            // Parked for the young head (its owner nudged now, or still).
            sem.release(1).unwrap();
            assert_eq!(sem.available(), 1);
        } else if !acquired {
            assert_eq!(woken, vec![HEAD], "a queued waiter is nudged by the release");
        }
        let granted = acquired || serve_and_collect(&sem) == 1;
        assert!(granted, "the waiter ends with the permit");
        assert_eq!((sem.available(), sem.waiting()), (0, 0));
        sem.release(1).unwrap();
        assert_eq!(sem.available(), 1);
    });
}

/// Two releases race while two owners wait (the head young, its owner never
/// serving): permits are parked only for the nudged owner's wait, so owner 2
/// is granted by a release, never left to the nudged owner's serve.
#[test]
fn racing_releases_never_park_a_permit_for_another_owners_wait() {
    const NEXT: u32 = 2;
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        let sem = Arc::new(Semaphore::new(2).with_eventual_fairness(clock, FAIR_AFTER));
        sem.try_acquire(2).unwrap();
        assert_eq!(sem.acquire(1, HEAD, 1).unwrap(), Acquire::Queued);
        assert_eq!(sem.acquire(1, NEXT, 1).unwrap(), Acquire::Queued);
        let releasers: Vec<_> = (0..2)
            .map(|_| {
                let sem = sem.clone();
                thread::spawn(move || sem.release(1).unwrap())
            })
            .collect();
        let woken: Vec<Vec<u32>> = releasers.into_iter().map(|r| r.join().unwrap()).collect();
        assert!(woken.iter().any(|w| w.contains(&NEXT)), "owner 2 was told: {woken:?}");
        assert_eq!(sem.take_granted(NEXT).len(), 1);
        assert_eq!(sem.take_granted(HEAD).len(), 1);
        assert_eq!((sem.available(), sem.waiting()), (0, 0));
    });
}

/// The nudged head is cancelled (abort, timeout) while a barger races for
/// the parked permit and the releaser's permit is being parked: the permit
/// goes to the barger or back to the fast path, never lost, and nothing is
/// left to serve.
#[test]
fn cancelling_the_nudged_head_races_a_barger() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        let sem = contended(&clock);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release(1).unwrap())
        };
        let canceller = {
            let sem = sem.clone();
            thread::spawn(move || sem.cancel(HEAD, 1))
        };
        let barger = {
            let sem = sem.clone();
            thread::spawn(move || sem.try_acquire(1).is_ok())
        };
        releaser.join().unwrap();
        // Queued, or granted meanwhile (which cancel gives back): known either way.
        assert!(canceller.join().unwrap().is_some());
        let barged = barger.join().unwrap();
        assert_eq!(sem.waiting(), 0);
        assert!(sem.serve().is_empty());
        assert!(sem.take_granted(HEAD).is_empty());
        assert_eq!(sem.available(), if barged { 0 } else { 1 });
        if barged {
            sem.release(1).unwrap();
        }
        assert_eq!(sem.available(), 1);
    });
}

/// A newcomer's `acquire` races a release that parks two permits for the
/// young head, which needs one: whether the newcomer's fast-path try ran
/// before or after the park, it must not end up queued behind the head with
/// a parked permit covering it, where only the nudged owner's `serve` would
/// grant it (its owner is never rung; at best the doorbell's 50 ms poll).
/// It takes a parked permit (a barge, as its fast path would have), or
/// queued first, it is granted by the release.
#[test]
fn a_newcomer_queueing_as_a_release_parks_is_never_left_to_the_nudge() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        newcomer_races_a_parking_release(Semaphore::new(2).with_eventual_fairness(clock, FAIR_AFTER));
    });
}

/// The same race counting from the head, the head queued long ago: there
/// the release is the first to see it and parks (`'eventual'` would hand off).
#[test]
fn counted_from_the_head_a_newcomer_queueing_as_a_release_parks_is_never_left_to_the_nudge() {
    loom::model(|| {
        let clock = std::sync::Arc::new(FakeClock::new(0));
        let sem = Semaphore::new(2).with_eventual_head_fairness(clock.clone(), FAIR_AFTER);
        clock.advance(FAIR_AFTER * 10);
        newcomer_races_a_parking_release(sem);
    });
}

/// `sem` (2 permits, both held here, `HEAD` queued for one and young when
/// the release runs): a release of both races a newcomer's acquire of one.
fn newcomer_races_a_parking_release(sem: Semaphore) {
    const NEWCOMER: u32 = 2;
    let sem = Arc::new(sem);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(1, HEAD, 1).unwrap(), Acquire::Queued);
    let releaser = {
        let sem = sem.clone();
        thread::spawn(move || sem.release(2).unwrap())
    };
    let newcomer = {
        let sem = sem.clone();
        thread::spawn(move || sem.acquire(1, NEWCOMER, 1).unwrap())
    };
    let woken = releaser.join().unwrap();
    let acquired = newcomer.join().unwrap() == Acquire::Acquired;
    if !acquired {
        assert!(
            woken.contains(&NEWCOMER),
            "queued, so granted by the release: {woken:?}"
        );
        assert_eq!(sem.take_granted(NEWCOMER).len(), 1);
    }
    // The head's permit: granted by the release, or parked for its serve.
    let head = sem.take_granted(HEAD).len() + serve_and_collect(&sem);
    assert_eq!(head, 1);
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
}
