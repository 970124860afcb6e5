//! Moving a semaphore kept by one owner into shared memory
//! (`Semaphore::with_state` + `Semaphore::adopt_waits`): the adopted waits are
//! served in the order given, the head keeps what was set aside for it, and
//! the held permits come back by `release` as any others.
#![cfg(not(loom))]

use sluice_core::{Acquire, AdoptError, Grant, Semaphore, TryAcquireError};

#[test]
fn adopted_waits_are_served_in_order_with_the_head_reserve() {
    // Capacity 4: 1 reserved for the head (wants 2), 3 held by owner 0.
    let sem = Semaphore::with_state(4, usize::MAX, 0, 0).unwrap();
    sem.adopt_waits(0, 1, &[(10, 2, 5), (11, 1, 0), (12, 3, 0)]).unwrap();
    assert_eq!((sem.available(), sem.waiting(), sem.reserved_for_head()), (0, 3, 1));
    assert_eq!(sem.try_acquire(1), Err(TryAcquireError::NoPermits));
    // Another owner queues behind, in its priority class.
    assert_eq!(sem.acquire_with_priority(1, 0, 1, 99), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![0]));
    assert_eq!(sem.take_granted(0), vec![Grant { token: 10, permits: 2 }]);
    assert_eq!(sem.release(2), Ok(vec![0]));
    assert_eq!(sem.take_granted(0), vec![Grant { token: 11, permits: 1 }]);
    assert_eq!(sem.reserved_for_head(), 1);
    assert_eq!(sem.release(2), Ok(vec![0]));
    assert_eq!(sem.take_granted(0), vec![Grant { token: 12, permits: 3 }]);
    assert_eq!(sem.release(2), Ok(vec![1]));
    assert_eq!(sem.take_granted(1), vec![Grant { token: 99, permits: 1 }]);
    assert_eq!(sem.available(), 1);
    // Everything comes back: 2 + 1 + 3 + 1 held now, 1 free, of 4 after the releases above.
    assert_eq!(sem.release(3), Ok(vec![]));
    assert_eq!(sem.available(), 4);
}

#[test]
fn an_adopted_wait_can_be_cancelled_and_its_reserve_moves_on() {
    let sem = Semaphore::with_state(3, usize::MAX, 0, 0).unwrap();
    sem.adopt_waits(7, 2, &[(1, 3, 0), (2, 2, 0)]).unwrap();
    assert_eq!(sem.cancel(7, 1), Some(vec![7]));
    assert_eq!(sem.take_granted(7), vec![Grant { token: 2, permits: 2 }]);
    assert_eq!(sem.waiting(), 0);
}

#[test]
fn with_state_keeps_free_and_owed_permits() {
    let sem = Semaphore::with_state(5, usize::MAX, 2, 0).unwrap();
    assert_eq!(sem.available(), 2);
    assert_eq!(sem.try_acquire(2), Ok(()));
    assert_eq!(sem.try_acquire(1), Err(TryAcquireError::NoPermits));
    let owing = Semaphore::with_state(5, usize::MAX, 0, 2).unwrap();
    assert_eq!((owing.available(), owing.owed()), (0, 2));
    assert_eq!(owing.acquire(1, 3, 1), Ok(Acquire::Queued));
    assert_eq!(owing.release(3), Ok(vec![3]));
    assert_eq!(owing.owed(), 0);
    // Waits adopted while permits are owed: the debt is paid first.
    let owing = Semaphore::with_state(5, usize::MAX, 0, 1).unwrap();
    owing.adopt_waits(3, 0, &[(4, 1, 0)]).unwrap();
    assert_eq!(owing.release(1), Ok(vec![]));
    assert_eq!(owing.release(1), Ok(vec![3]));
}

#[test]
fn max_waiters_holds_for_adopted_waits() {
    let sem = Semaphore::with_state(2, 2, 0, 0).unwrap();
    sem.adopt_waits(0, 0, &[(1, 1, 0), (2, 1, 0)]).unwrap();
    assert_eq!(sem.acquire(1, 0, 3), Err(sluice_core::AcquireError::QueueFull));
    assert_eq!(sem.acquire(1, 0, 1), Err(sluice_core::AcquireError::DuplicateToken));
}

#[test]
fn impossible_states_are_refused() {
    assert_eq!(Semaphore::with_state(2, usize::MAX, 3, 0).err(), Some(AdoptError));
    assert_eq!(Semaphore::with_state(2, usize::MAX, 1, 1).err(), Some(AdoptError));
    let sem = Semaphore::with_state(3, 1, 0, 0).unwrap();
    // Too heavy, reserve not below the head's need, out of priority order,
    // duplicate tokens, too many, a reserve with nothing queued.
    assert_eq!(sem.adopt_waits(0, 0, &[(1, 4, 0)]), Err(AdoptError));
    assert_eq!(sem.adopt_waits(0, 2, &[(1, 2, 0)]), Err(AdoptError));
    let wide = Semaphore::with_state(3, usize::MAX, 0, 0).unwrap();
    assert_eq!(wide.adopt_waits(0, 0, &[(1, 1, 0), (2, 1, 1)]), Err(AdoptError));
    assert_eq!(wide.adopt_waits(0, 0, &[(1, 1, 0), (1, 1, 0)]), Err(AdoptError));
    assert_eq!(sem.adopt_waits(0, 0, &[(1, 1, 0), (2, 1, 0)]), Err(AdoptError));
    assert_eq!(sem.adopt_waits(0, 1, &[]), Err(AdoptError));
    // Free permits, or waits already queued, or closed: not adoptable.
    let free = Semaphore::with_state(3, usize::MAX, 1, 0).unwrap();
    assert_eq!(free.adopt_waits(0, 0, &[(1, 2, 0)]), Err(AdoptError));
    wide.adopt_waits(0, 0, &[(1, 1, 0)]).unwrap();
    assert_eq!(wide.adopt_waits(0, 0, &[(2, 1, 0)]), Err(AdoptError));
    let closed = Semaphore::with_state(3, usize::MAX, 0, 0).unwrap();
    closed.close();
    assert_eq!(closed.adopt_waits(0, 0, &[(1, 1, 0)]), Err(AdoptError));
    // Nothing changed by a refusal.
    assert_eq!((sem.waiting(), sem.reserved_for_head()), (0, 0));
}

#[test]
fn adopting_no_waits_keeps_the_free_permits() {
    let sem = Semaphore::with_state(3, usize::MAX, 2, 0).unwrap();
    sem.adopt_waits(0, 0, &[]).unwrap();
    assert_eq!(sem.available(), 2);
    assert_eq!(sem.try_acquire(2), Ok(()));
}
