//! Behaviour of the core semaphore: sequential semantics, fairness, cancellation,
//! owner removal, a property test against a reference model, and a stress test
//! on real threads.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::stress;
use proptest::prelude::*;
use sluice_core::{Acquire, AcquireError, Decision, Grant, Refusal, ReleaseError, Semaphore, TryAcquireError};

#[test]
fn smoke() {
    let sem = Semaphore::new(3);
    assert_eq!(sem.capacity(), 3);
    assert_eq!(sem.try_acquire(2), Ok(()));
    assert_eq!(sem.available(), 1);
    assert_eq!(sem.try_acquire(2), Err(TryAcquireError::NoPermits));
    assert_eq!(sem.release(2), Ok(vec![]));
    assert_eq!(sem.available(), 3);
}

#[test]
fn the_fast_path_word_is_the_one_the_methods_use() {
    use sluice_core::semaphore::{CLOSED, PERMIT_SHIFT, QUEUED};
    let sem = Semaphore::new(3);
    let word = sem.fast_path_word();
    assert_eq!(word.load(Ordering::SeqCst), 3 << PERMIT_SHIFT);
    // A take by CAS, as the binding's JavaScript does it, is seen by the methods.
    assert!(word
        .compare_exchange(
            3 << PERMIT_SHIFT,
            2 << PERMIT_SHIFT,
            Ordering::AcqRel,
            Ordering::Relaxed
        )
        .is_ok());
    assert_eq!(sem.available(), 2);
    assert_eq!(sem.capacity_word().load(Ordering::SeqCst), 3);
    assert_eq!(sem.add_permits(1), Ok(vec![]));
    assert_eq!(sem.capacity_word().load(Ordering::SeqCst), 4);
    assert_eq!(sem.try_acquire(3), Ok(()));
    assert_eq!(sem.acquire(1, 7, 1), Ok(Acquire::Queued));
    assert_eq!(word.load(Ordering::SeqCst), QUEUED);
    sem.close();
    assert_eq!(word.load(Ordering::SeqCst) & CLOSED, CLOSED);
}

#[test]
fn try_acquire_up_to_takes_what_is_free_but_never_barges() {
    let sem = Semaphore::new(5);
    assert_eq!(sem.try_acquire_up_to(3), Ok(3));
    assert_eq!(sem.try_acquire_up_to(3), Ok(2));
    assert_eq!(sem.try_acquire_up_to(3), Ok(0));
    sem.release(1).unwrap();
    assert_eq!(sem.acquire(3, 0, 1), Ok(Acquire::Queued)); // the free one is reserved for it
    sem.release(1).unwrap();
    assert_eq!(sem.try_acquire_up_to(1), Ok(0), "the head waiter is owed it");
    sem.close();
    assert_eq!(sem.try_acquire_up_to(1), Err(TryAcquireError::Closed));
}

#[test]
fn release_beyond_capacity_is_refused_and_changes_nothing() {
    let sem = Semaphore::new(2);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(
        sem.release(1),
        Err(ReleaseError {
            released: 1,
            capacity: 2
        })
    );
    assert_eq!(sem.available(), 2);
}

#[test]
fn release_overflow_is_refused_while_waiters_are_queued() {
    let sem = Semaphore::new(2);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(2, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![])); // reserved for the head
    assert_eq!(
        sem.release(2),
        Err(ReleaseError {
            released: 2,
            capacity: 2
        })
    );
    assert_eq!(sem.waiting(), 1);
}

#[test]
fn acquire_more_than_capacity_is_an_error_not_a_hang() {
    let sem = Semaphore::new(2);
    assert_eq!(
        sem.acquire(3, 0, 1),
        Err(AcquireError::TooManyPermits {
            requested: 3,
            capacity: 2
        })
    );
    assert_eq!(sem.waiting(), 0);
}

#[test]
fn duplicate_token_is_refused() {
    let sem = Semaphore::new(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 0, 9), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 0, 9), Err(AcquireError::DuplicateToken));
    assert_eq!(sem.acquire(1, 1, 9), Ok(Acquire::Queued)); // other owner, same token: fine
}

#[test]
fn waiters_are_served_in_fifo_order_across_owners() {
    let sem = Semaphore::new(1);
    sem.try_acquire(1).unwrap();
    for (owner, token) in [(1, 10), (2, 20), (1, 11)] {
        assert_eq!(sem.acquire(1, owner, token), Ok(Acquire::Queued));
    }
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert_eq!(sem.take_granted(1), vec![Grant { token: 10, permits: 1 }]);
    assert_eq!(sem.release(1), Ok(vec![2]));
    assert_eq!(sem.take_granted(2), vec![Grant { token: 20, permits: 1 }]);
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert_eq!(sem.take_granted(1), vec![Grant { token: 11, permits: 1 }]);
    assert_eq!(sem.waiting(), 0);
}

#[test]
fn no_barging_past_a_queued_waiter() {
    let sem = Semaphore::new(2);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(2, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![]));
    // One permit is free in total, but it is promised to the head waiter.
    assert_eq!(sem.try_acquire(1), Err(TryAcquireError::NoPermits));
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![0]));
    assert_eq!(sem.take_granted(0), vec![Grant { token: 1, permits: 2 }]);
}

#[test]
fn higher_priorities_are_served_first_and_fifo_within_a_priority() {
    let sem = Semaphore::new(1);
    sem.try_acquire(1).unwrap();
    for (token, priority) in [(1, 0), (2, 1), (3, 0), (4, -1), (5, 1)] {
        assert_eq!(sem.acquire_with_priority(1, priority, 0, token), Ok(Acquire::Queued));
    }
    let mut order = Vec::new();
    for _ in 0..5 {
        assert_eq!(sem.release(1), Ok(vec![0]));
        order.extend(sem.take_granted(0).into_iter().map(|g| g.token));
    }
    assert_eq!(order, vec![2, 5, 1, 3, 4]);
}

#[test]
fn a_higher_priority_takes_the_permits_reserved_for_the_head() {
    let sem = Semaphore::new(3);
    sem.try_acquire(3).unwrap();
    assert_eq!(sem.acquire(3, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(2), Ok(vec![]));
    assert_eq!(sem.available(), 0);
    assert_eq!(sem.reserved_for_head(), 2);
    // Same priority: queues behind the head, no barging.
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    // Higher priority and enough reserved: granted at once (async-mutex 0.5).
    assert_eq!(sem.acquire_with_priority(1, 5, 2, 1), Ok(Acquire::Acquired));
    assert_eq!(sem.reserved_for_head(), 1);
    // Higher priority but not enough: it becomes the head and takes the rest.
    assert_eq!(sem.acquire_with_priority(2, 5, 2, 2), Ok(Acquire::Queued));
    assert_eq!(sem.reserved_for_head(), 1);
    assert_eq!(sem.release(1), Ok(vec![2]));
    assert_eq!(sem.take_granted(2), vec![Grant { token: 2, permits: 2 }]);
    // Back to the original head, which has nothing reserved until releases come.
    assert_eq!(sem.reserved_for_head(), 0);
    assert_eq!(sem.release(3), Ok(vec![0]));
    assert_eq!(sem.take_granted(0), vec![Grant { token: 1, permits: 3 }]);
    assert_eq!(sem.waiting(), 1);
}

#[test]
fn a_weighted_head_is_not_starved_by_small_requests() {
    let sem = Semaphore::new(4);
    sem.try_acquire(3).unwrap();
    assert_eq!(sem.acquire(4, 0, 1), Ok(Acquire::Queued)); // takes the 1 free permit
    for token in 0..10 {
        assert_eq!(sem.acquire(1, 1, token), Ok(Acquire::Queued));
    }
    assert_eq!(sem.release(3), Ok(vec![0]));
    assert_eq!(sem.take_granted(0), vec![Grant { token: 1, permits: 4 }]);
    assert!(sem.take_granted(1).is_empty());
}

#[test]
fn one_release_can_grant_several_waiters() {
    let sem = Semaphore::new(3);
    sem.try_acquire(3).unwrap();
    for token in 0..3 {
        sem.acquire(1, token as u32, token).unwrap();
    }
    assert_eq!(sem.release(3), Ok(vec![0, 1, 2]));
    assert_eq!(sem.available(), 0);
}

#[test]
fn cancel_returns_a_partial_grant_to_the_next_waiter() {
    let sem = Semaphore::new(3);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(3, 0, 1), Ok(Acquire::Queued)); // holds 1 of 3
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.cancel(0, 1), Some(vec![1]));
    assert_eq!(sem.take_granted(1), vec![Grant { token: 1, permits: 1 }]);
    assert_eq!(sem.cancel(0, 1), None);
    assert_eq!(sem.waiting(), 0);
}

#[test]
fn cancelling_the_last_waiter_reopens_the_fast_path() {
    let sem = Semaphore::new(2);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(2, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.available(), 0);
    assert_eq!(sem.cancel(0, 1), Some(vec![]));
    assert_eq!(sem.available(), 1);
    assert_eq!(sem.try_acquire(1), Ok(()));
}

#[test]
fn cancel_after_grant_gives_the_permits_back() {
    let sem = Semaphore::new(1);
    sem.try_acquire(1).unwrap();
    sem.acquire(1, 0, 1).unwrap();
    assert_eq!(sem.release(1), Ok(vec![0]));
    assert_eq!(sem.cancel(0, 1), Some(vec![]));
    assert_eq!(sem.available(), 1);
    assert!(sem.take_granted(0).is_empty());
}

#[test]
fn remove_owner_returns_queued_and_uncollected_permits() {
    let sem = Semaphore::new(4);
    sem.try_acquire(4).unwrap();
    sem.acquire(2, 7, 1).unwrap();
    sem.acquire(3, 7, 2).unwrap();
    sem.acquire(2, 8, 1).unwrap();
    assert_eq!(sem.release(3), Ok(vec![7])); // grants 7/1, 1 permit partially to 7/2
    assert_eq!(sem.remove_owner(7), vec![8]); // 2 granted + 1 partial go on to owner 8
    assert_eq!(sem.take_granted(8), vec![Grant { token: 1, permits: 2 }]);
    assert_eq!(sem.available(), 1);
    assert_eq!(sem.waiting(), 0);
}

#[test]
fn close_withdraws_waiters_and_refuses_new_acquires() {
    let sem = Semaphore::new(3);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(3, 4, 1), Ok(Acquire::Queued)); // holds the 1 free permit
    assert_eq!(sem.acquire(1, 5, 1), Ok(Acquire::Queued));
    assert_eq!(sem.close(), vec![4, 5]);
    assert!(sem.is_closed());
    assert_eq!(sem.waiting(), 0);
    assert_eq!(sem.available(), 1, "what was reserved for the head came back");
    assert_eq!(sem.try_acquire(1), Err(TryAcquireError::Closed));
    assert_eq!(sem.acquire(1, 4, 2), Err(AcquireError::Closed));
    assert!(sem.take_granted(4).is_empty());
    // Holders can still give permits back, and closing again does nothing.
    assert_eq!(sem.release(2), Ok(vec![]));
    assert_eq!(sem.available(), 3);
    assert_eq!(sem.close(), vec![]);
}

#[test]
fn with_available_starts_with_the_rest_held() {
    let sem = Semaphore::with_available(3, 0);
    assert_eq!((sem.capacity(), sem.available()), (3, 0));
    assert_eq!(sem.acquire(1, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![0]));
    assert_eq!(sem.release(2), Ok(vec![]));
    assert_eq!(sem.take_granted(0).len(), 1);
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(sem.available(), 3);
    assert_eq!(
        sem.release(1),
        Err(ReleaseError {
            released: 1,
            capacity: 3
        })
    );
}

#[test]
#[should_panic(expected = "available must not exceed capacity")]
fn with_available_above_capacity_panics() {
    let _ = Semaphore::with_available(1, 2);
}

#[test]
fn a_full_queue_still_serves_an_overtaking_request_the_reserved_permits_cover() {
    let sem = Semaphore::with_max_waiters(3, 1);
    sem.try_acquire(3).unwrap();
    assert_eq!(sem.acquire(3, 0, 1), Ok(Acquire::Queued));
    sem.release(2).unwrap();
    assert_eq!(sem.reserved_for_head(), 2);
    // The queue is full, but this needs no place in it.
    assert_eq!(sem.acquire_with_priority(1, 1, 1, 1), Ok(Acquire::Acquired));
    // This one would have to wait: refused, and the head keeps what it had.
    assert_eq!(sem.acquire_with_priority(2, 1, 1, 2), Err(AcquireError::QueueFull));
    assert_eq!(sem.reserved_for_head(), 1);
    assert_eq!(sem.waiting(), 1);
}

#[test]
fn max_waiters_refuses_the_wait_beyond_it() {
    let sem = Semaphore::with_max_waiters(1, 2);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 0, 2), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 0, 3), Err(AcquireError::QueueFull));
    assert_eq!(sem.waiting(), 2);
    assert_eq!(sem.cancel(0, 1), Some(vec![]));
    assert_eq!(sem.acquire(1, 0, 3), Ok(Acquire::Queued));
}

#[test]
fn a_wait_granted_before_close_stays_granted() {
    let sem = Semaphore::new(1);
    sem.try_acquire(1).unwrap();
    sem.acquire(1, 0, 1).unwrap();
    sem.release(1).unwrap();
    sem.close();
    assert_eq!(sem.take_granted(0), vec![Grant { token: 1, permits: 1 }]);
}

#[test]
fn add_permits_grows_capacity_and_wakes_waiters() {
    let sem = Semaphore::new(1);
    sem.try_acquire(1).unwrap();
    sem.acquire(2, 3, 1).unwrap_err(); // more than the capacity of 1
    assert_eq!(sem.acquire(1, 3, 1), Ok(Acquire::Queued));
    assert_eq!(sem.add_permits(2), Ok(vec![3]));
    assert_eq!(sem.capacity(), 3);
    assert_eq!(sem.available(), 1);
    assert_eq!(
        sem.acquire(3, 3, 2),
        Ok(Acquire::Queued),
        "3 permits is no longer too many"
    );
    assert_eq!(sem.add_permits(usize::MAX), Err(sluice_core::CapacityOverflow));
}

#[test]
fn forget_held_shrinks_capacity_without_returning_the_permits() {
    let sem = Semaphore::new(3);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.forget_held(1), Ok(vec![]));
    assert_eq!((sem.capacity(), sem.available()), (2, 1));
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(sem.available(), 2);
    assert_eq!(
        sem.release(1),
        Err(ReleaseError {
            released: 1,
            capacity: 2
        })
    );
    assert_eq!(
        sem.forget_held(3),
        Err(ReleaseError {
            released: 3,
            capacity: 2
        })
    );
}

#[test]
fn forget_held_refuses_queued_waits_heavier_than_the_new_capacity() {
    let sem = Semaphore::new(4);
    sem.try_acquire(3).unwrap();
    // Owner 1 waits for 4 at the head with the free permit reserved for it; behind
    // it owner 2 waits for 2 and owner 1 again for 3.
    assert_eq!(sem.acquire(4, 1, 10), Ok(Acquire::Queued));
    assert_eq!(sem.reserved_for_head(), 1);
    assert_eq!(sem.acquire(2, 2, 20), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(3, 1, 11), Ok(Acquire::Queued));
    // Forgetting one held permit: capacity 3. The head (4) is refused and its
    // reserved permit goes on to owner 2, which still needs one more.
    assert_eq!(sem.forget_held(1), Ok(vec![1]));
    assert_eq!(sem.capacity(), 3);
    assert_eq!(sem.waiting(), 2);
    assert_eq!(sem.reserved_for_head(), 1);
    assert_eq!(
        sem.take_refused(1),
        vec![Refusal {
            token: 10,
            requested: 4,
            capacity: 3
        }]
    );
    assert!(sem.take_refused(1).is_empty(), "collected once");
    // Another: capacity 2 refuses owner 1's wait for 3; owner 2 (2 of 2, one
    // reserved) still fits and waits for the last held permit.
    assert_eq!(sem.forget_held(1), Ok(vec![1]));
    assert_eq!(sem.capacity(), 2);
    assert_eq!(sem.waiting(), 1);
    let mut decisions = Vec::new();
    sem.drain_decisions(1, |s| decisions.push(s));
    assert_eq!(
        decisions,
        vec![Decision::Refused(Refusal {
            token: 11,
            requested: 3,
            capacity: 2
        })]
    );
    // The last held permit comes back: owner 2 is granted.
    assert_eq!(sem.release(1), Ok(vec![2]));
    assert_eq!(sem.take_granted(2), vec![Grant { token: 20, permits: 2 }]);
    assert_eq!(sem.release(2), Ok(vec![]));
    assert_eq!((sem.available(), sem.waiting()), (2, 0));
}

#[test]
fn forget_held_that_refuses_the_whole_queue_reopens_the_fast_path() {
    let sem = Semaphore::new(3);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(3, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.available(), 0, "the free permit is reserved for the head");
    assert_eq!(sem.forget_held(1), Ok(vec![0]));
    assert_eq!((sem.capacity(), sem.waiting(), sem.available()), (2, 0, 1));
    assert_eq!(sem.take_refused(0).len(), 1);
    assert_eq!(sem.try_acquire(1), Ok(()), "no longer queued: the fast path is open");
    // An uncollected refusal can be cancelled (a timeout firing before the
    // owner collected it); nothing is returned for it.
    assert_eq!(sem.acquire(2, 0, 2), Ok(Acquire::Queued));
    assert_eq!(sem.forget_held(1), Ok(vec![0]));
    assert_eq!(sem.cancel(0, 2), Some(vec![]));
    assert!(sem.take_refused(0).is_empty());
    assert_eq!(
        sem.acquire(2, 0, 3),
        Err(AcquireError::TooManyPermits {
            requested: 2,
            capacity: 1
        })
    );
}

#[test]
fn forget_held_refuses_nobody_who_still_fits() {
    let sem = Semaphore::new(3);
    sem.try_acquire(3).unwrap();
    assert_eq!(sem.acquire(2, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.forget_held(1), Ok(vec![]));
    assert_eq!(sem.waiting(), 1);
    assert_eq!(sem.release(2), Ok(vec![0]));
    assert_eq!(sem.take_granted(0), vec![Grant { token: 1, permits: 2 }]);
}

#[test]
fn forget_permits_takes_only_free_permits_and_shrinks_capacity() {
    let sem = Semaphore::new(4);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.forget_permits(2), 2);
    assert_eq!((sem.capacity(), sem.available()), (2, 1));
    assert_eq!(sem.forget_permits(5), 1);
    assert_eq!((sem.capacity(), sem.available()), (1, 0));
    assert_eq!(sem.acquire(1, 0, 1), Ok(Acquire::Queued));
    assert_eq!(sem.forget_permits(1), 0, "nothing is free while someone waits");
    assert_eq!(sem.release(1), Ok(vec![0]));
    assert_eq!(sem.take_granted(0).len(), 1);
    assert_eq!(sem.release(1), Ok(vec![]));
    assert_eq!(sem.available(), 1);
    assert_eq!(
        sem.release(1),
        Err(ReleaseError {
            released: 1,
            capacity: 1
        }),
        "capacity shrank"
    );
}

/// One operation of the property test.
#[derive(Debug, Clone)]
enum Op {
    Acquire { owner: u32, n: usize, priority: i32 },
    Release { owner: u32 },
    Cancel { owner: u32, pick: usize },
    Collect { owner: u32 },
    RemoveOwner { owner: u32 },
    Forget { owner: u32 },
    AddPermit,
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0u32..3;
    prop_oneof![
        (owner.clone(), 1usize..=4, -1i32..=1).prop_map(|(owner, n, priority)| Op::Acquire { owner, n, priority }),
        owner.clone().prop_map(|owner| Op::Release { owner }),
        (owner.clone(), any::<usize>()).prop_map(|(owner, pick)| Op::Cancel { owner, pick }),
        owner.clone().prop_map(|owner| Op::Collect { owner }),
        owner.clone().prop_map(|owner| Op::RemoveOwner { owner }),
        owner.prop_map(|owner| Op::Forget { owner }),
        Just(Op::AddPermit),
    ]
}

/// Collects `owner`'s outcomes into the model: grants move from `queued` to
/// `held`, refusals leave `queued`, and each must match what was asked.
fn collect(
    sem: &Semaphore,
    owner: u32,
    held: &mut Vec<usize>,
    queued: &mut Vec<(u64, usize)>,
) -> Result<(), TestCaseError> {
    let mut decisions = Vec::new();
    sem.drain_decisions(owner, |s| decisions.push(s));
    for settlement in decisions {
        let token = match settlement {
            Decision::Granted(grant) => grant.token,
            Decision::Refused(refusal) => refusal.token,
        };
        let at = queued.iter().position(|&(t, _)| t == token);
        prop_assert!(at.is_some(), "outcome for an unknown token");
        let (_, n) = queued.remove(at.unwrap());
        match settlement {
            Decision::Granted(grant) => {
                prop_assert_eq!(n, grant.permits);
                held.push(n);
            }
            Decision::Refused(refusal) => {
                prop_assert_eq!(n, refusal.requested);
                prop_assert!(n > refusal.capacity, "refused a wait that fit");
            }
        }
    }
    Ok(())
}

proptest! {
    /// Permits are conserved: free + reserved for the head + granted + held always
    /// equals the capacity, whatever the sequence of operations, including
    /// forgetting held permits (which refuses waits grown too heavy) and
    /// adding permits back; no queued wait ever needs more than the capacity.
    #[test]
    fn permits_are_conserved(ops in proptest::collection::vec(op(), 1..200)) {
        const START: usize = 4;
        let mut capacity = START;
        // A bounded queue, so the QueueFull paths run too.
        let sem = Semaphore::with_max_waiters(START, 3);
        // Model: what each owner holds (collected), what is waiting (token -> n),
        // and what was granted but not collected.
        let mut held: [Vec<usize>; 3] = Default::default();
        let mut queued: [Vec<(u64, usize)>; 3] = Default::default();
        let mut next_token = 0u64;
        for op in ops {
            match op {
                Op::Acquire { owner, n, priority } => {
                    next_token += 1;
                    match sem.acquire_with_priority(n, priority, owner, next_token) {
                        Ok(Acquire::Acquired) => held[owner as usize].push(n),
                        Ok(Acquire::Queued) => queued[owner as usize].push((next_token, n)),
                        Err(AcquireError::QueueFull) => prop_assert!(sem.waiting() >= 3),
                        Err(AcquireError::TooManyPermits { requested, capacity: c }) => {
                            prop_assert_eq!((requested, c), (n, capacity));
                            prop_assert!(n > capacity);
                        }
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::Forget { owner } => {
                    if let Some(n) = held[owner as usize].pop() {
                        // The model forgets one of the permits; the rest stay held.
                        sem.forget_held(1).unwrap();
                        capacity -= 1;
                        if n > 1 {
                            held[owner as usize].push(n - 1);
                        }
                    }
                }
                Op::AddPermit => {
                    if capacity < START {
                        sem.add_permits(1).unwrap();
                        capacity += 1;
                    }
                }
                Op::Release { owner } => {
                    if let Some(n) = held[owner as usize].pop() {
                        sem.release(n).unwrap();
                    }
                }
                Op::Cancel { owner, pick } => {
                    let waits = &mut queued[owner as usize];
                    if !waits.is_empty() {
                        let (token, _) = waits.remove(pick % waits.len());
                        // A wait already granted but uncollected is cancelled too.
                        let found = sem.cancel(owner, token);
                        prop_assert!(found.is_some());
                    }
                }
                Op::Collect { owner } => {
                    collect(&sem, owner, &mut held[owner as usize], &mut queued[owner as usize])?;
                }
                Op::RemoveOwner { owner } => {
                    sem.remove_owner(owner);
                    queued[owner as usize].clear();
                    for n in held[owner as usize].drain(..) {
                        sem.release(n).unwrap();
                    }
                }
            }
            // Uncollected grants cannot be observed from outside, so check the
            // bound always and the exact sum whenever nothing is outstanding.
            prop_assert_eq!(sem.capacity(), capacity);
            let holding: usize = held.iter().flatten().sum();
            prop_assert!(sem.available() + holding <= capacity);
            let waiting: usize = queued.iter().map(Vec::len).sum();
            prop_assert!(sem.waiting() <= waiting);
            if waiting == 0 {
                prop_assert_eq!(sem.available() + holding, capacity);
            }
            prop_assert!(sem.available() + sem.reserved_for_head() + holding <= capacity);
            // Every wait still queued can end: none needs more than the
            // capacity. The model's waits include uncollected outcomes, so an
            // owner with a wait too heavy collects first (which must refuse it).
            for owner in 0..3 {
                if queued[owner].iter().any(|&(_, n)| n > capacity) {
                    collect(&sem, owner as u32, &mut held[owner], &mut queued[owner])?;
                    prop_assert!(
                        queued[owner].iter().all(|&(_, n)| n <= capacity),
                        "a wait heavier than the capacity is still queued"
                    );
                }
            }
        }
        // Drain: everyone collects, then releases everything.
        for owner in 0..3u32 {
            sem.remove_owner(owner);
            for n in held[owner as usize].drain(..) {
                sem.release(n).unwrap();
            }
        }
        prop_assert_eq!(sem.available(), capacity);
        prop_assert_eq!(sem.waiting(), 0);
    }
}

/// Real threads hammer one semaphore through both paths; a shared counter of
/// holders must never exceed the capacity and every permit must come back.
#[test]
fn mpmc_stress_never_exceeds_capacity() {
    const CAPACITY: usize = 3;
    const THREADS: u32 = 6;
    let rounds = stress(20_000) as u64;
    let sem = Arc::new(Semaphore::new(CAPACITY));
    let holders = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|owner| {
            let (sem, holders, max_seen) = (sem.clone(), holders.clone(), max_seen.clone());
            thread::spawn(move || {
                for token in 0..rounds {
                    let n = 1 + (token as usize + owner as usize) % 2;
                    if let Ok(Acquire::Queued) = sem.acquire(n, owner, token) {
                        // Spin until granted; every 8th wait gives up after a few
                        // spins instead, so cancellation races with grants.
                        let impatient = token % 8 == 0;
                        let mut spins = 0u32;
                        let granted = loop {
                            if sem.take_granted(owner).iter().any(|g| g.token == token) {
                                break true;
                            }
                            spins += 1;
                            if impatient && spins > 3 && sem.cancel(owner, token).is_some() {
                                break false;
                            }
                            thread::yield_now();
                        };
                        if !granted {
                            continue;
                        }
                    }
                    let now = holders.fetch_add(n, Ordering::SeqCst) + n;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    holders.fetch_sub(n, Ordering::SeqCst);
                    sem.release(n).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert!(max_seen.load(Ordering::SeqCst) <= CAPACITY);
    assert_eq!(sem.available(), CAPACITY);
    assert_eq!(sem.waiting(), 0);
}

#[test]
fn forget_held_of_permits_nobody_holds_is_an_error() {
    let sem = Semaphore::new(3);
    // Nothing is held: forgetting one would leave 3 free against a capacity of 2.
    assert!(sem.forget_held(1).is_err());
    assert_eq!((sem.capacity(), sem.available()), (3, 3));
    sem.try_acquire(1).unwrap();
    assert!(sem.forget_held(1).is_ok());
    assert_eq!((sem.capacity(), sem.available()), (2, 2));
}
