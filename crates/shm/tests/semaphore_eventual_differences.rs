//! The differences between the core's eventual fairness and the shared
//! semaphore's that `semaphore_model.rs` maps (its module docs number them),
//! each on its smallest case: both sides, the same calls, the same clock.
//! Both behaviours are by design; should the two be made to agree, a test
//! here fails and the model's mapping of that difference can go.
//! Difference 1 is about a due head, so it is shown counting from the head
//! too (`Fairness::EventualHead`), where the head is due only once a release
//! found it first; the others do not depend on the clock.

use std::sync::Arc;

use sluice_core::{Fairness, FakeClock, Semaphore};
use sluice_shm::semaphore::{Acquire, SharedSemaphore, FAIR_AFTER_NS};

/// Where both clocks start (any time but 0).
const START: u64 = 1_000_000_000;
const OWNERS: u32 = 3;

/// A core and a shared semaphore in eventual mode at the same time,
/// three owners attached to the shared one (0, 1, 2).
fn both(permits: u64) -> (Semaphore, Arc<FakeClock>, SharedSemaphore) {
    both_in(permits, Fairness::Eventual)
}

/// `both` in `fairness`, an eventual mode.
fn both_in(permits: u64, fairness: Fairness) -> (Semaphore, Arc<FakeClock>, SharedSemaphore) {
    let clock = Arc::new(FakeClock::new(START));
    let core = Semaphore::new(permits as usize);
    let core = match fairness {
        Fairness::Eventual => core.with_eventual_fairness(clock.clone(), FAIR_AFTER_NS),
        Fairness::EventualHead => core.with_eventual_head_fairness(clock.clone(), FAIR_AFTER_NS),
        Fairness::Fifo => unreachable!("eventual modes only"),
    };
    let shared = SharedSemaphore::in_process_with(permits, 8, OWNERS, fairness);
    shared.set_clock(START);
    for o in 0..OWNERS {
        assert_eq!(shared.attach().unwrap().0, o);
    }
    (core, clock, shared)
}

/// Owner 0 holds every permit, owner 1 queues for one, owner 0 releases
/// one: parked for owner 1, who is nudged (rung) on both sides.
fn one_parked_for_owner_1(permits: u64) -> (Semaphore, Arc<FakeClock>, SharedSemaphore) {
    one_parked_for_owner_1_in(permits, Fairness::Eventual)
}

/// `one_parked_for_owner_1` in `fairness` (counting from the head, the
/// release finds owner 1's wait first: its count starts at `START`).
fn one_parked_for_owner_1_in(permits: u64, fairness: Fairness) -> (Semaphore, Arc<FakeClock>, SharedSemaphore) {
    let (core, clock, shared) = both_in(permits, fairness);
    core.try_acquire(permits as usize).unwrap();
    assert!(shared.try_acquire(0, permits).unwrap());
    assert_eq!(core.acquire(1, 1, 1), Ok(sluice_core::Acquire::Queued));
    assert_eq!(shared.acquire(1, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(core.release(1), Ok(vec![1]));
    assert!(shared.release(0, 1).unwrap().is_empty());
    assert_eq!(shared.take_rung(), vec![1]);
    assert_eq!((core.available(), shared.available()), (1, 1));
    (core, clock, shared)
}

/// Difference 1: the core's fast path reads no clock.
#[test]
fn a_barger_takes_a_parked_permit_from_a_due_head_in_the_core_only() {
    let (core, clock, shared) = one_parked_for_owner_1(2);
    a_barger_takes_a_parked_permit_from_a_due_head_in_the_core_only_in(core, clock, shared);
}

/// Difference 1 counting from the head: due once `FAIR_AFTER_NS` has
/// passed since the release that found it first.
#[test]
fn counted_from_the_head_a_barger_takes_a_parked_permit_from_a_due_head_in_the_core_only() {
    let (core, clock, shared) = one_parked_for_owner_1_in(2, Fairness::EventualHead);
    a_barger_takes_a_parked_permit_from_a_due_head_in_the_core_only_in(core, clock, shared);
}

fn a_barger_takes_a_parked_permit_from_a_due_head_in_the_core_only_in(
    core: Semaphore,
    clock: Arc<FakeClock>,
    shared: SharedSemaphore,
) {
    clock.advance(FAIR_AFTER_NS);
    shared.set_clock(START + FAIR_AFTER_NS);
    assert_eq!(core.try_acquire(1), Ok(()));
    assert!(!shared.try_acquire(0, 1).unwrap(), "handed to the due head first");
    assert_eq!(shared.take_rung(), vec![1]);
    assert_eq!(shared.take_decided(1).unwrap(), vec![1]);
}

/// Difference 1 with no permit parked: a request for none (JavaScript
/// never makes one).
#[test]
fn a_request_for_no_permits_passes_a_due_head_in_the_core_only() {
    let (core, clock, shared) = both(1);
    core.try_acquire(1).unwrap();
    assert!(shared.try_acquire(0, 1).unwrap());
    assert_eq!(core.acquire(1, 1, 1), Ok(sluice_core::Acquire::Queued));
    assert_eq!(shared.acquire(1, 1, 1, 0).unwrap(), Acquire::Queued);
    clock.advance(FAIR_AFTER_NS);
    shared.set_clock(START + FAIR_AFTER_NS);
    assert_eq!(core.try_acquire(0), Ok(()));
    assert!(!shared.try_acquire(0, 0).unwrap());
    assert_eq!(core.acquire(0, 2, 2), Ok(sluice_core::Acquire::Acquired));
    assert_eq!(shared.acquire(2, 0, 2, 0).unwrap(), Acquire::Queued);
}

/// Difference 1 with no permit parked, counting from the head: the head
/// is due only once a release found it first (here one that parked a
/// permit, which the nudged owner then took as its reserve).
#[test]
fn counted_from_the_head_a_request_for_no_permits_passes_a_due_head_in_the_core_only() {
    let (core, clock, shared) = both_in(2, Fairness::EventualHead);
    core.try_acquire(2).unwrap();
    assert!(shared.try_acquire(0, 2).unwrap());
    assert_eq!(core.acquire(2, 1, 1), Ok(sluice_core::Acquire::Queued));
    assert_eq!(shared.acquire(1, 2, 1, 0).unwrap(), Acquire::Queued);
    clock.advance(FAIR_AFTER_NS);
    shared.set_clock(START + FAIR_AFTER_NS);
    assert_eq!(core.try_acquire(0), Ok(()), "unseen, so young on both sides");
    assert!(shared.try_acquire(0, 0).unwrap());
    assert_eq!(core.release(1), Ok(vec![1]), "first seen: young, parked");
    assert!(shared.release(0, 1).unwrap().is_empty());
    assert_eq!(shared.take_rung(), vec![1]);
    assert!(core.serve().is_empty());
    assert!(shared.take_decided(1).unwrap().is_empty());
    assert_eq!((core.reserved_for_head(), shared.reserved_for_head()), (1, 1));
    clock.advance(FAIR_AFTER_NS);
    shared.set_clock(START + 2 * FAIR_AFTER_NS);
    assert_eq!(core.try_acquire(0), Ok(()));
    assert!(!shared.try_acquire(0, 0).unwrap());
}

/// Difference 2: the shared `forget_held` hands parked permits on even
/// when it refuses nobody (`cancel` of a refusal does the same).
#[test]
fn forgetting_held_permits_serves_the_parked_ones_in_shared_memory_only() {
    let (core, _clock, shared) = one_parked_for_owner_1(3);
    assert_eq!(core.forget_held(1), Ok(vec![]));
    shared.forget_held(0, 1).unwrap();
    assert_eq!((core.available(), core.waiting()), (1, 1), "still parked");
    assert_eq!((shared.available(), shared.waiting()), (0, 0), "granted");
    assert_eq!(shared.take_rung(), vec![1]);
}

/// Difference 2: the binding's detach releases what the owner held, and
/// a release may park; the shared detach hands off.
#[test]
fn a_detach_parks_what_it_gives_back_in_the_core_only() {
    let (core, _clock, shared) = both(2);
    core.try_acquire(2).unwrap();
    assert!(shared.try_acquire(0, 2).unwrap());
    assert_eq!(core.acquire(1, 1, 1), Ok(sluice_core::Acquire::Queued));
    assert_eq!(shared.acquire(1, 1, 1, 0).unwrap(), Acquire::Queued);
    assert!(core.remove_owner(0).is_empty());
    assert_eq!(core.release(2), Ok(vec![1]), "parked, owner 1 nudged");
    shared.detach(0).unwrap();
    assert_eq!((core.available(), core.waiting()), (2, 1));
    assert_eq!((shared.available(), shared.waiting()), (1, 0));
    assert_eq!(shared.take_rung(), vec![1]);
}

/// Difference 3: owner 1's nudge is pending, a barger took the parked
/// permit, and a hand-off granted owner 1. The core forgets the nudge,
/// the shared semaphore keeps it until owner 1 collects: with owner 2
/// at the head, the next release parks for owner 2 in the core and
/// hands off in the shared one (it would park only for owner 1).
#[test]
fn a_nudge_outlives_a_hand_off_in_shared_memory_only() {
    let (core, _clock, shared) = one_parked_for_owner_1(2);
    assert_eq!(core.try_acquire(1), Ok(()));
    assert!(shared.try_acquire(0, 1).unwrap());
    assert_eq!(core.add_permits(1), Ok(vec![1]));
    shared.add_permits(1).unwrap();
    assert_eq!(shared.take_rung(), vec![1]);
    assert_eq!(core.acquire(1, 2, 2), Ok(sluice_core::Acquire::Queued));
    assert_eq!(shared.acquire(2, 1, 2, 0).unwrap(), Acquire::Queued);
    assert_eq!(core.release(1), Ok(vec![2]), "parked, owner 2 nudged");
    assert!(shared.release(0, 1).unwrap().is_empty());
    assert_eq!(shared.take_rung(), vec![2], "granted");
    assert_eq!((core.available(), core.waiting()), (1, 1));
    assert_eq!((shared.available(), shared.waiting()), (0, 0));
}
