//! Eventual fairness of the named semaphore's engine (design
//! `docs/design/eventual-fairness.md`), in process memory with the clock
//! set by the test (`set_clock`), so that whether the queue head is due
//! (has waited `FAIR_AFTER_NS`) is decided here, not by the scheduler.

use sluice_shm::semaphore::{Acquire, Fairness, SharedSemaphore, FAIR_AFTER_NS};

/// An eventual semaphore of `permits` with three owners, the clock at 1 s.
fn eventual(permits: u64) -> (SharedSemaphore, [u32; 3]) {
    let sem = SharedSemaphore::in_process_with(permits, 8, 3, Fairness::Eventual);
    sem.set_clock(1_000_000_000);
    let owners = [0; 3].map(|_| sem.attach().unwrap().0);
    (sem, owners)
}

#[test]
fn a_release_before_the_head_is_due_leaves_the_permit_free_and_nudges_the_head() {
    let (sem, [a, b, _]) = eventual(1);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 7, 0).unwrap(), Acquire::Queued);
    sem.set_clock(1_000_000_000 + FAIR_AFTER_NS - 1);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "the head's owner is rung");
    assert_eq!((sem.available(), sem.waiting()), (1, 1), "free, not handed off");
    sem.check().unwrap();
    // The releaser barges: it takes the permit straight back.
    assert!(sem.try_acquire(a, 1).unwrap());
    // The nudged head finds nothing free: it stays queued, at its place.
    assert!(sem.take_decided(b).unwrap().is_empty());
    assert_eq!((sem.held(a), sem.held(b), sem.waiting()), (1, 0, 1));
    sem.check().unwrap();
}

#[test]
fn a_nudged_head_that_finds_the_permits_free_serves_its_waits_in_order() {
    let (sem, [a, b, c]) = eventual(3);
    assert!(sem.try_acquire(a, 3).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(b, 1, 2, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 3, 0).unwrap(), Acquire::Queued);
    // Two permits cover only b's two waits: left free, b rung.
    assert!(sem.release(a, 2).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert_eq!((sem.available(), sem.waiting()), (2, 3));
    assert_eq!(sem.take_decided(b).unwrap(), vec![1, 2], "served in order");
    assert!(sem.take_rung().is_empty(), "nothing left for c");
    assert_eq!((sem.held(b), sem.available(), sem.waiting()), (2, 0, 1));
    sem.check().unwrap();
}

#[test]
fn once_the_head_is_due_bargers_are_refused_and_the_next_release_hands_off() {
    let (sem, [a, b, c]) = eventual(1);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 7, 0).unwrap(), Acquire::Queued);
    // A nudge whose permit a barger takes: b keeps its place and its time.
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert!(sem.try_acquire(c, 1).unwrap());
    assert!(sem.take_decided(b).unwrap().is_empty());
    // b has now waited fair_after (since it queued, not since the nudge).
    sem.set_clock(1_000_000_000 + FAIR_AFTER_NS);
    assert!(sem.release(c, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert_eq!(sem.available(), 0, "handed off, not left free");
    assert!(!sem.try_acquire(a, 1).unwrap(), "no barging once the head is due");
    assert_eq!(sem.take_decided(b).unwrap(), vec![7]);
    assert_eq!(sem.held(b), 1);
    sem.check().unwrap();
}

#[test]
fn permits_left_free_when_the_head_falls_due_go_to_it_not_to_a_barger() {
    let (sem, [a, b, c]) = eventual(1);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 7, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty()); // nudged: 1 free
    assert_eq!(sem.take_rung(), vec![b]);
    // b is slow to collect (or dead) and falls due: a barger's try is
    // refused and the permit goes to b.
    sem.set_clock(1_000_000_000 + 2 * FAIR_AFTER_NS);
    assert!(!sem.try_acquire(c, 1).unwrap());
    assert_eq!(sem.take_rung(), vec![b]);
    assert_eq!(sem.acquire(c, 1, 9, 0).unwrap(), Acquire::Queued, "queued, behind b");
    assert_eq!(sem.take_decided(b).unwrap(), vec![7]);
    assert_eq!((sem.held(b), sem.waiting()), (1, 1));
    sem.check().unwrap();
}

#[test]
fn a_nudged_head_that_cancels_passes_the_permits_to_the_next_wait() {
    let (sem, [a, b, c]) = eventual(1);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert!(sem.cancel(b, 1).unwrap());
    assert_eq!(sem.take_rung(), vec![c], "the next wait is served, not left unrung");
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    assert_eq!((sem.held(c), sem.available(), sem.waiting()), (1, 0, 0));
    assert!(!sem.cancel(b, 1).unwrap(), "gone");
    sem.check().unwrap();
}

#[test]
fn a_rebuild_while_nudged_hands_the_free_permits_to_the_queue() {
    let (sem, [a, b, _]) = eventual(3);
    assert!(sem.try_acquire(a, 3).unwrap());
    assert_eq!(sem.acquire(b, 2, 1, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty()); // nudged: 1 free, b needs 2
    assert_eq!(sem.available(), 1);
    sem.rebuild().unwrap();
    sem.check().unwrap();
    assert_eq!((sem.available(), sem.reserved_for_head()), (0, 1), "reserved for b");
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_decided(b).unwrap(), vec![1]);
    sem.check().unwrap();
}

#[test]
fn a_higher_priority_wait_is_served_first_by_a_nudged_collection() {
    let (sem, [a, b, c]) = eventual(1);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 5).unwrap(), Acquire::Queued); // c is the head now
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![c]);
    // b collects first (its safety poll, say): the queue is served in its
    // order, so the permit goes to c, not to b.
    assert!(sem.take_decided(b).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![c]);
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    sem.check().unwrap();
}

#[test]
fn fifo_mode_never_leaves_permits_free_while_anyone_waits() {
    let sem = SharedSemaphore::in_process(1, 8, 3);
    sem.set_clock(0); // FIFO mode never reads it: the head is never "young"
    let (a, b) = (sem.attach().unwrap().0, sem.attach().unwrap().0);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 7, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert!(!sem.try_acquire(a, 1).unwrap(), "handed off: no barging");
    assert_eq!(sem.take_decided(b).unwrap(), vec![7]);
    assert_eq!(sem.fairness(), Fairness::Fifo);
}

#[test]
fn a_nudge_rings_once_until_collected_and_again_for_the_next_head() {
    let (sem, [a, b, c]) = eventual(2);
    assert!(sem.try_acquire(a, 2).unwrap());
    assert_eq!(sem.acquire(b, 2, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert!(sem.take_rung().is_empty(), "b is rung already and has not collected");
    // A barger takes both; b collects nothing; the next nudge rings again.
    assert!(sem.try_acquire(a, 2).unwrap());
    assert!(sem.take_decided(b).unwrap().is_empty());
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    // b withdraws before collecting: the permit its nudge left free goes to
    // c, and the next nudge rings the new head.
    assert!(sem.cancel(b, 1).unwrap());
    assert_eq!(sem.take_rung(), vec![c]);
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    assert_eq!(sem.acquire(b, 1, 3, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "the new head is rung");
    sem.check().unwrap();
}

#[test]
fn a_nudged_head_withdrawn_after_a_barger_took_the_permit_does_not_silence_the_next_nudge() {
    let (sem, [a, b, c]) = eventual(1);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert!(sem.try_acquire(a, 1).unwrap()); // barged before b collected
    assert!(sem.cancel(b, 1).unwrap());
    assert!(sem.take_rung().is_empty(), "nothing free to serve");
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![c], "the new head is nudged");
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    sem.check().unwrap();
}

/// Review finding (ported from the core, commit 16c5564): with a nudge
/// pending, a second release left its permit free too and rang nobody,
/// though the two covered c's wait as well: c's grant waited on b's process
/// collecting (busy or blocked for any time; at best its 50 ms poll), not
/// on its FIFO turn, this release.
#[test]
fn permits_that_would_reach_another_owners_wait_are_handed_off() {
    let (sem, [a, b, c]) = eventual(2);
    assert!(sem.try_acquire(a, 2).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "young head: left free, b nudged");
    // b does not collect. This release gives c its turn in FIFO mode: both
    // permits are handed off instead of left free.
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert!(sem.take_rung().contains(&c), "c is rung");
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    assert_eq!(sem.take_decided(b).unwrap(), vec![1]);
    assert_eq!((sem.held(b), sem.held(c)), (1, 1));
    sem.check().unwrap();
}

/// Review finding: a higher priority overtook the nudged owner's head; the
/// permits left free next covered the new head, whose owner nobody rang.
#[test]
fn permits_for_a_head_that_overtook_the_nudged_one_are_handed_off() {
    let (sem, [a, b, c]) = eventual(2);
    assert!(sem.try_acquire(a, 2).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "b nudged");
    // c needs more than is free: it cannot barge, it stands first.
    assert_eq!(sem.acquire(c, 2, 2, 1).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![c], "c's wait is covered: handed off");
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    assert_eq!((sem.held(c), sem.available(), sem.waiting()), (2, 0, 1));
    sem.check().unwrap();
}

/// Review finding: a request overtaking the head inherits its reserve; with
/// the permits left free for the nudged owner that covered it, yet it was
/// queued, its grant hanging on that owner's collection.
#[test]
fn an_overtaking_request_covered_by_reserve_and_free_permits_is_granted() {
    let (sem, [a, b, c]) = eventual(3);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 3, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.reserved_for_head(), 2, "two free permits reserved for b");
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "young head: left free, b nudged");
    assert_eq!(sem.acquire(c, 3, 2, 1).unwrap(), Acquire::Granted);
    assert_eq!(
        (sem.held(c), sem.available(), sem.reserved_for_head(), sem.waiting()),
        (3, 0, 0, 1)
    );
    sem.check().unwrap();
    assert!(sem.take_decided(b).unwrap().is_empty());
    assert!(sem.release(c, 3).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert_eq!(sem.take_decided(b).unwrap(), vec![1]);
    sem.check().unwrap();
}

/// One release covering the head and another owner's wait hands off: only
/// the head's owner would have been nudged, and c would wait on b.
#[test]
fn a_release_covering_two_owners_hands_off() {
    let (sem, [a, b, c]) = eventual(2);
    assert!(sem.try_acquire(a, 2).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 2).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b, c]);
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
    assert!(!sem.try_acquire(a, 1).unwrap(), "nothing left to barge for");
    sem.check().unwrap();
}

/// Permits that cover only the nudged owner's waits stay free: the mutex
/// case, where barging pays, is unchanged.
#[test]
fn permits_covering_only_the_nudged_owners_waits_stay_free() {
    let (sem, [a, b, c]) = eventual(3);
    assert!(sem.try_acquire(a, 3).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(b, 1, 2, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 3, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert!(sem.take_rung().is_empty(), "both of b's waits covered: left free");
    assert_eq!(sem.available(), 2);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert!(
        sem.take_rung().contains(&c),
        "c's wait would be covered too: handed off"
    );
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
    assert_eq!(sem.take_decided(b).unwrap(), vec![1, 2]);
    assert_eq!(sem.take_decided(c).unwrap(), vec![3]);
    sem.check().unwrap();
}

/// Permits that reach another owner's wait only in part stay free: they
/// would only be reserved for it, so it waits no longer on the nudged owner.
#[test]
fn permits_reaching_another_owners_wait_only_in_part_stay_free() {
    let (sem, [a, b, c]) = eventual(2);
    assert!(sem.try_acquire(a, 2).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 2, 2, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    // b's wait and 1 of c's 2: c is not covered, so the permit stays free.
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert!(sem.take_rung().is_empty());
    assert_eq!(sem.available(), 2);
    // b collects: the rest is reserved for c, nothing left free.
    assert_eq!(sem.take_decided(b).unwrap(), vec![1]);
    assert_eq!((sem.available(), sem.reserved_for_head()), (0, 1));
    sem.check().unwrap();
}

/// Eventual fairness counted from the head (`Fairness::EventualHead`), the
/// clock at 1 s: a wait's `FAIR_AFTER_NS` starts at the first release that
/// finds it standing first.
fn eventual_head(permits: u64) -> (SharedSemaphore, [u32; 3]) {
    let sem = SharedSemaphore::in_process_with(permits, 8, 3, Fairness::EventualHead);
    sem.set_clock(T0);
    let owners = [0; 3].map(|_| sem.attach().unwrap().0);
    (sem, owners)
}

/// Where `eventual` and `eventual_head` start their clocks.
const T0: u64 = 1_000_000_000;

/// The core's test of the same name (`crates/core/tests/semaphore_eventual.rs`).
#[test]
fn counted_from_queueing_the_next_head_is_due_at_once() {
    let (sem, [a, b, c]) = eventual(1);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    sem.set_clock(T0 + FAIR_AFTER_NS);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "due: handed off");
    assert_eq!(sem.take_decided(b).unwrap(), vec![1]);
    assert!(sem.release(b, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![c], "the next head waited as long: handed off too");
    assert_eq!(sem.available(), 0);
    assert!(!sem.try_acquire(a, 1).unwrap());
    sem.check().unwrap();
}

/// The core's test of the same name: each head in turn may be passed over
/// for `FAIR_AFTER_NS`, counted from the first release that finds it first.
#[test]
fn counted_from_the_head_each_head_is_young_when_a_release_first_finds_it() {
    let (sem, [a, b, c]) = eventual_head(1);
    assert_eq!(sem.fairness(), Fairness::EventualHead);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    sem.set_clock(T0 + 4 * FAIR_AFTER_NS);
    // Queued long ago, but this is the first release to find b first.
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "young: a nudge");
    assert_eq!(sem.available(), 1, "left free");
    assert!(sem.try_acquire(a, 1).unwrap(), "a newcomer barges");
    assert!(sem.take_decided(b).unwrap().is_empty());
    sem.set_clock(T0 + 5 * FAIR_AFTER_NS - 1);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "still young (it collected): nudged again");
    assert!(sem.try_acquire(a, 1).unwrap(), "a newcomer barges again");
    assert!(sem.take_decided(b).unwrap().is_empty());
    sem.set_clock(T0 + 5 * FAIR_AFTER_NS);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "due once first for fair_after: handed off");
    assert_eq!(sem.available(), 0);
    assert!(!sem.try_acquire(a, 1).unwrap(), "a due head is never barged past");
    assert_eq!(sem.take_decided(b).unwrap(), vec![1]);
    // c has stood first since that hand-off; its count starts now.
    assert!(sem.release(b, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![c], "young: a nudge, not a hand-off");
    assert_eq!((sem.available(), sem.waiting()), (1, 1), "left free for c");
    assert_eq!(
        sem.take_decided(c).unwrap(),
        vec![2],
        "c serves the free permit to itself"
    );
    sem.check().unwrap();
}

/// Only a release starts a head's count, as in the core (whose fast path
/// reads no clock): a barger that finds an unseen head (here one that
/// overtook the nudged head) takes what is free without stamping it, so
/// the next release, `FAIR_AFTER_NS` later, still finds it young.
#[test]
fn counted_from_the_head_a_barger_does_not_start_the_count() {
    let (sem, [a, b, c]) = eventual_head(3);
    assert!(sem.try_acquire(a, 3).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b], "b seen first: young, nudged");
    // c needs more than the reserve and the free permit: it stands first, unseen.
    assert_eq!(sem.acquire(c, 3, 2, 1).unwrap(), Acquire::Queued);
    assert!(
        sem.try_acquire(a, 1).unwrap(),
        "an unseen head is young: a barger takes the free permit"
    );
    sem.set_clock(T0 + FAIR_AFTER_NS);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(
        (sem.available(), sem.reserved_for_head()),
        (1, 0),
        "c first seen by this release: young, the permit left free"
    );
    assert!(sem.take_rung().is_empty(), "b's nudge is still pending");
    sem.set_clock(T0 + 2 * FAIR_AFTER_NS);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(
        (sem.available(), sem.reserved_for_head()),
        (0, 2),
        "c due: both handed to it"
    );
    sem.check().unwrap();
}

/// A detach gives back what its owner held as a release does (the
/// binding's detach in the core: `remove_owner`, then `release`): it finds
/// the head first and starts its count, though it hands off.
#[test]
fn counted_from_the_head_a_detach_giving_back_held_permits_starts_the_count() {
    let (sem, [a, b, c]) = eventual_head(3);
    assert!(sem.try_acquire(a, 1).unwrap());
    assert!(sem.try_acquire(b, 2).unwrap());
    assert_eq!(sem.acquire(c, 3, 1, 0).unwrap(), Acquire::Queued);
    sem.detach(a).unwrap();
    assert_eq!((sem.available(), sem.reserved_for_head()), (0, 1), "handed off");
    assert!(sem.take_rung().is_empty());
    sem.set_clock(T0 + FAIR_AFTER_NS);
    assert!(sem.release(b, 1).unwrap().is_empty());
    assert_eq!(
        (sem.available(), sem.reserved_for_head()),
        (0, 2),
        "c was first seen by the detach: due, handed off"
    );
    sem.check().unwrap();
}
