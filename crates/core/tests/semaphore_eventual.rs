//! The eventually fair semaphore: newcomers barge only while the head of the
//! queue is younger than `fair_after`, a due head gets the next release, and a
//! nudged owner's `serve` hands parked permits to the queue in FIFO order.
//! A property test checks these against a model of the queue on a fake clock.
#![cfg(not(loom))]

use std::sync::Arc;

use proptest::prelude::*;
use sluice_core::{Acquire, AcquireError, Fairness, FakeClock, Semaphore};

const FAIR_AFTER: u64 = 500;

fn eventual(permits: usize) -> (Semaphore, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new(0));
    let sem = Semaphore::new(permits).with_eventual_fairness(clock.clone(), FAIR_AFTER);
    (sem, clock)
}

#[test]
fn fairness_is_reported() {
    assert_eq!(Semaphore::new(1).fairness(), Fairness::Fifo);
    assert_eq!(eventual(1).0.fairness(), Fairness::Eventual);
}

#[test]
fn a_young_head_is_nudged_once_until_it_serves() {
    let (sem, _clock) = eventual(2);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(1, 7, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![7]));
    // A nudge is pending: the second release parks without ringing again.
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(sem.available(), 2);
    // The nudged owner serves: the head takes one, the other goes back to the
    // fast path since the queue emptied.
    assert_eq!(sem.serve(), vec![7]);
    assert_eq!(sem.take_granted(7).len(), 1);
    assert_eq!((sem.available(), sem.waiting()), (1, 0));
}

#[test]
fn serve_grants_other_owners_in_queue_order() {
    let (sem, _clock) = eventual(2);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 3, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(2), Ok(vec![1]));
    assert_eq!(sem.serve(), vec![1, 2], "owner 2 is next in line and must be woken");
    assert_eq!(sem.waiting(), 1);
    assert_eq!(sem.available(), 0);
}

#[test]
fn a_barged_head_keeps_its_place_and_its_age() {
    let (sem, clock) = eventual(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    clock.advance(FAIR_AFTER / 2);
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]));
    sem.try_acquire(1).expect("a newcomer takes the parked permit");
    assert!(sem.serve().is_empty());
    assert!(sem.take_granted(1).is_empty());
    // Owner 1 became due half a fair_after later, counted from its first
    // queueing; owner 2 would not be due yet.
    clock.advance(FAIR_AFTER / 2);
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert_eq!(sem.take_granted(1).len(), 1);
}

#[test]
fn a_due_head_is_never_barged_past() {
    let (sem, clock) = eventual(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    clock.advance(FAIR_AFTER);
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert!(sem.try_acquire(1).is_err());
    assert_eq!(sem.take_granted(1).len(), 1);
}

#[test]
fn owed_permits_are_paid_before_anything_is_parked() {
    let clock = Arc::new(FakeClock::new(0));
    let sem = Semaphore::with_owed(2, 1).with_eventual_fairness(clock, FAIR_AFTER);
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![]), "pays the debt");
    assert_eq!(sem.available(), 0);
    assert_eq!(sem.release(1), Ok(vec![1]), "then nudges");
    assert_eq!(sem.available(), 1);
}

#[test]
fn removing_a_nudged_owner_serves_the_parked_permits() {
    let (sem, _clock) = eventual(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]));
    // Owner 1's thread dies before it serves: the parked permit goes to 2.
    assert_eq!(sem.remove_owner(1), vec![2]);
    assert_eq!(sem.take_granted(2).len(), 1);
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
}

#[test]
fn cancelling_the_nudged_head_serves_the_next() {
    let (sem, _clock) = eventual(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert_eq!(sem.cancel(1, 1), Some(vec![2]));
    assert_eq!(sem.take_granted(2).len(), 1);
}

#[test]
fn close_returns_parked_permits_to_the_fast_path() {
    let (sem, _clock) = eventual(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert_eq!(sem.close(), vec![1]);
    assert_eq!(sem.available(), 1);
    assert!(sem.serve().is_empty());
}

/// One operation of the property test.
#[derive(Debug, Clone)]
enum Op {
    Acquire { owner: u32, n: usize, priority: i32 },
    Barge { owner: u32, n: usize },
    Release { owner: u32 },
    Serve,
    Cancel { owner: u32, pick: usize },
    RemoveOwner { owner: u32 },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0u32..3;
    prop_oneof![
        (owner.clone(), 1usize..=3, -1i32..=1).prop_map(|(owner, n, priority)| Op::Acquire { owner, n, priority }),
        (owner.clone(), 1usize..=3).prop_map(|(owner, n)| Op::Barge { owner, n }),
        owner.clone().prop_map(|owner| Op::Release { owner }),
        Just(Op::Serve),
        (owner.clone(), any::<usize>()).prop_map(|(owner, pick)| Op::Cancel { owner, pick }),
        owner.prop_map(|owner| Op::RemoveOwner { owner }),
        (0u64..=FAIR_AFTER / 2).prop_map(Op::Advance),
    ]
}

/// A queued wait in the model.
#[derive(Debug, Clone, Copy)]
struct Queued {
    owner: u32,
    token: u64,
    n: usize,
    priority: i32,
    at: u64,
}

/// The head: highest priority, first come within it (tokens only grow).
fn head(queued: &[Queued]) -> Option<Queued> {
    queued.iter().copied().min_by_key(|w| (-w.priority, w.token))
}

proptest! {
    /// Against a model that collects every grant at once: permits are
    /// conserved exactly; a release parks permits (barging allowed) only
    /// while the head is younger than `fair_after`, and a release that finds
    /// the head due leaves nothing free while anyone still waits.
    #[test]
    fn barging_only_while_the_head_is_young(ops in proptest::collection::vec(op(), 1..200)) {
        const CAPACITY: usize = 3;
        let (sem, clock) = eventual(CAPACITY);
        let mut held: [Vec<usize>; 3] = Default::default();
        let mut queued: Vec<Queued> = Vec::new();
        let mut next_token = 0u64;
        for op in ops {
            match op {
                Op::Acquire { owner, n, priority } => {
                    next_token += 1;
                    match sem.acquire_with_priority(n, priority, owner, next_token) {
                        Ok(Acquire::Acquired) => held[owner as usize].push(n),
                        Ok(Acquire::Queued) => queued.push(Queued { owner, token: next_token, n, priority, at: sluice_core::Clock::now(&*clock) }),
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::Barge { owner, n } => {
                    let before = sem.available();
                    if sem.try_acquire(n).is_ok() {
                        prop_assert!(before >= n);
                        held[owner as usize].push(n);
                    }
                }
                Op::Release { owner } => {
                    if let Some(n) = held[owner as usize].pop() {
                        let before = sem.available();
                        let young = head(&queued).is_some_and(|h| sluice_core::Clock::now(&*clock) - h.at < FAIR_AFTER);
                        let waited = !queued.is_empty();
                        sem.release(n).unwrap();
                        if waited && young {
                            prop_assert_eq!(sem.available(), before + n, "a young head: the permits are parked");
                        } else if waited {
                            // Due: handed off; only an emptied queue frees permits.
                            prop_assert!(sem.waiting() == 0 || sem.available() == 0, "a due head was barged past");
                        }
                    }
                }
                Op::Serve => {
                    sem.serve();
                }
                Op::Cancel { owner, pick } => {
                    let mine: Vec<u64> = queued.iter().filter(|w| w.owner == owner).map(|w| w.token).collect();
                    if !mine.is_empty() {
                        let token = mine[pick % mine.len()];
                        prop_assert!(sem.cancel(owner, token).is_some());
                        queued.retain(|w| w.token != token);
                    }
                }
                Op::RemoveOwner { owner } => {
                    sem.remove_owner(owner);
                    queued.retain(|w| w.owner != owner);
                    for n in held[owner as usize].drain(..) {
                        sem.release(n).unwrap();
                    }
                }
                Op::Advance(nanos) => clock.advance(nanos),
            }
            // Every grant is collected at once, so the model's queue is the core's.
            for owner in 0..3u32 {
                for grant in sem.take_granted(owner) {
                    let at = queued.iter().position(|w| w.token == grant.token && w.owner == owner);
                    prop_assert!(at.is_some(), "a grant for an unknown wait");
                    let wait = queued.remove(at.unwrap());
                    prop_assert_eq!(wait.n, grant.permits);
                    held[owner as usize].push(wait.n);
                }
            }
            prop_assert_eq!(sem.waiting(), queued.len());
            let holding: usize = held.iter().flatten().sum();
            prop_assert_eq!(sem.available() + sem.reserved_for_head() + holding, CAPACITY);
        }
        for owner in 0..3u32 {
            sem.remove_owner(owner);
            for n in held[owner as usize].drain(..) {
                sem.release(n).unwrap();
            }
        }
        prop_assert_eq!((sem.available(), sem.waiting()), (CAPACITY, 0));
    }
}

#[test]
fn acquire_errors_are_unchanged() {
    let (sem, _clock) = eventual(1);
    assert_eq!(
        sem.acquire(2, 0, 1),
        Err(AcquireError::TooManyPermits {
            requested: 2,
            capacity: 1
        })
    );
}
