//! The eventually fair semaphore: newcomers barge only while the head of the
//! queue is younger than `fair_after`, a due head gets the next release, and a
//! nudged owner's `serve` hands parked permits to the queue in FIFO order.
//! A property test checks these against a model of the queue on a fake clock,
//! with the head's patience counted from queueing and from the head.
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

/// Eventually fair, `fair_after` counted from the first release that finds
/// a wait first in line.
fn eventual_head(permits: usize) -> (Semaphore, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new(0));
    let sem = Semaphore::new(permits).with_eventual_head_fairness(clock.clone(), FAIR_AFTER);
    (sem, clock)
}

#[test]
fn fairness_is_reported() {
    assert_eq!(Semaphore::new(1).fairness(), Fairness::Fifo);
    assert_eq!(eventual(1).0.fairness(), Fairness::Eventual);
    assert_eq!(eventual_head(1).0.fairness(), Fairness::EventualHead);
}

#[test]
fn counted_from_queueing_the_next_head_is_due_at_once() {
    let (sem, clock) = eventual(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 2), Ok(Acquire::Queued));
    clock.advance(FAIR_AFTER);
    assert_eq!(sem.release(1), Ok(vec![1]), "due: handed off");
    assert_eq!(sem.take_granted(1).len(), 1);
    assert_eq!(
        sem.release(1),
        Ok(vec![2]),
        "the next head waited as long: handed off too"
    );
    assert!(sem.try_acquire(1).is_err());
}

#[test]
fn counted_from_the_head_each_head_is_young_when_a_release_first_finds_it() {
    let (sem, clock) = eventual_head(1);
    sem.try_acquire(1).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 2), Ok(Acquire::Queued));
    clock.advance(FAIR_AFTER * 4);
    // Queued long ago, but this is the first release to find owner 1 first.
    assert_eq!(sem.release(1), Ok(vec![1]), "young: a nudge");
    sem.try_acquire(1).expect("a newcomer barges");
    assert!(sem.serve().is_empty());
    clock.advance(FAIR_AFTER - 1);
    assert_eq!(sem.release(1), Ok(vec![1]), "still young (it served): nudged again");
    sem.try_acquire(1).expect("a newcomer barges again");
    assert!(sem.serve().is_empty());
    clock.advance(1);
    assert_eq!(sem.release(1), Ok(vec![1]), "due once first for fair_after: handed off");
    assert!(sem.try_acquire(1).is_err(), "a due head is never barged past");
    assert_eq!(sem.take_granted(1).len(), 1);
    // Owner 2 has stood first since that hand-off; its count starts now.
    assert_eq!(sem.release(1), Ok(vec![2]), "young: a nudge, not a hand-off");
    assert!(sem.take_granted(2).is_empty());
    assert_eq!(sem.serve(), vec![2], "owner 2 serves the parked permit to itself");
    assert_eq!(sem.take_granted(2).len(), 1);
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
fn serve_grants_in_queue_order_and_returns_whom_to_wake() {
    let (sem, _clock) = eventual(3);
    sem.try_acquire(3).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 1, 2), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert_eq!(sem.release(1), Ok(vec![]), "still owner 1's waits only: parked");
    // Whoever serves (owner 2's poll, say) learns that owner 1 is to be woken.
    assert_eq!(sem.serve(), vec![1]);
    assert_eq!(sem.take_granted(1).len(), 2);
    assert_eq!((sem.waiting(), sem.available()), (1, 0));
}

/// Review finding: with a nudge pending, a second release parked its permit
/// too, though together they covered owner 2's wait as well: owner 2 was told
/// nothing, and its grant waited on owner 1's thread (blocked, or busy, for
/// any time; at best the 50 ms poll), not on its FIFO turn.
#[test]
fn permits_that_would_reach_another_owners_wait_are_handed_off() {
    let (sem, clock) = eventual(2);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]), "young head: parked, owner 1 nudged");
    // Owner 1 does not serve. This release would give owner 2 its turn in
    // FIFO mode: it hands off both permits instead of parking.
    assert_eq!(sem.release(1), Ok(vec![1, 2]));
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
    assert_eq!(sem.take_granted(1).len(), 1);
    assert_eq!(sem.take_granted(2).len(), 1);
    // The rule holds however late the head is: time alone serves nothing.
    clock.advance(FAIR_AFTER);
    assert!(sem.serve().is_empty());
}

/// Review finding: a higher priority overtook the nudged owner's head; the
/// permits parked next covered the new head, whose owner nobody rang.
#[test]
fn permits_for_a_head_that_overtook_the_nudged_one_are_handed_off() {
    let (sem, _clock) = eventual(2);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]), "owner 1 nudged");
    // Owner 2 needs more than is parked: it cannot barge, it stands first.
    assert_eq!(sem.acquire_with_priority(2, 1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![2]), "owner 2's wait is covered: handed off");
    assert_eq!(sem.take_granted(2).len(), 1);
    assert_eq!((sem.available(), sem.waiting()), (0, 1));
}

/// Review finding (from the property test): a request overtaking the head
/// inherits its reserve; with the permits parked for the nudged owner that
/// covered it, yet it was queued, its grant hanging on that owner's serve.
#[test]
fn an_overtaking_request_covered_by_reserve_and_parked_permits_is_granted() {
    let (sem, _clock) = eventual(3);
    sem.try_acquire(1).unwrap();
    assert_eq!(
        sem.acquire(3, 2, 1),
        Ok(Acquire::Queued),
        "two free permits reserved for it"
    );
    assert_eq!(sem.release(1), Ok(vec![2]), "young head: parked, owner 2 nudged");
    assert_eq!(sem.acquire_with_priority(3, 1, 0, 1), Ok(Acquire::Acquired));
    assert_eq!((sem.available(), sem.reserved_for_head(), sem.waiting()), (0, 0, 1));
    assert!(sem.serve().is_empty());
    assert_eq!(sem.release(3), Ok(vec![2]));
}

/// One release covering the head and the next owner's wait hands off: only
/// the head's owner would have been nudged.
#[test]
fn a_release_covering_two_owners_hands_off() {
    let (sem, _clock) = eventual(2);
    sem.try_acquire(2).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(2), Ok(vec![1, 2]));
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
}

/// Permits that cover only the nudged owner's waits stay parked: the mutex
/// case, where barging pays, is unchanged.
#[test]
fn permits_covering_only_the_nudged_owners_waits_stay_parked() {
    let (sem, _clock) = eventual(3);
    sem.try_acquire(3).unwrap();
    assert_eq!(sem.acquire(1, 1, 1), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 1, 2), Ok(Acquire::Queued));
    assert_eq!(sem.acquire(1, 2, 1), Ok(Acquire::Queued));
    assert_eq!(sem.release(1), Ok(vec![1]));
    assert_eq!(sem.release(1), Ok(vec![]), "both of owner 1's waits covered: parked");
    assert_eq!(sem.available(), 2);
    assert_eq!(
        sem.release(1),
        Ok(vec![1, 2]),
        "owner 2's wait would be covered too: handed off"
    );
    assert_eq!((sem.available(), sem.waiting()), (0, 0));
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
    /// When its patience started: queued, or first found at the head by a
    /// release (`None` until then, counting from the head).
    at: Option<u64>,
}

/// The head: highest priority, first come within it (tokens only grow).
fn head(queued: &[Queued]) -> Option<Queued> {
    queued.iter().copied().min_by_key(|w| (-w.priority, w.token))
}

/// Whether every wait that `permits` would grant (in queue order, stopping
/// at the first that needs more than is left) is `owner`'s.
fn granted_all_owned_by(queued: &[Queued], mut permits: usize, owner: u32) -> bool {
    let mut order = queued.to_vec();
    order.sort_by_key(|w| (-w.priority, w.token));
    for wait in order {
        if wait.n > permits {
            return true;
        }
        if wait.owner != owner {
            return false;
        }
        permits -= wait.n;
    }
    true
}

/// The model's state: waits queued, permits held per owner, and the owner
/// whose nudge is pending (the core's `nudged` and `nudged_owner`).
#[derive(Default)]
struct Model {
    /// Patience counted from the head (`EventualHead`), else from queueing.
    from_head: bool,
    queued: Vec<Queued>,
    held: [Vec<usize>; 3],
    nudged: Option<u32>,
}

impl Model {
    /// Every grant is collected at once, so the model's queue is the core's.
    fn collect(&mut self, sem: &Semaphore) -> Result<(), TestCaseError> {
        for owner in 0..3u32 {
            for grant in sem.take_granted(owner) {
                let at = self
                    .queued
                    .iter()
                    .position(|w| w.token == grant.token && w.owner == owner);
                prop_assert!(at.is_some(), "a grant for an unknown wait");
                let wait = self.queued.remove(at.unwrap());
                prop_assert_eq!(wait.n, grant.permits);
                self.held[owner as usize].push(wait.n);
            }
        }
        Ok(())
    }

    /// Releases `n` and checks what the core did against the rule: a young
    /// head's release parks only if every wait the parked permits would grant
    /// is the nudged owner's (the head's, if no nudge is pending), and nudges
    /// only if none is pending; anything else hands off as in FIFO mode.
    fn release(&mut self, sem: &Semaphore, now: u64, n: usize) -> Result<(), TestCaseError> {
        let before = sem.available();
        let reserved = sem.reserved_for_head();
        let head = head(&self.queued).map(|h| {
            // The core starts a head's count at the first release that finds it.
            let wait = self.queued.iter_mut().find(|w| w.token == h.token).unwrap();
            wait.at.get_or_insert(now);
            *wait
        });
        let woken = sem.release(n).unwrap();
        match head {
            Some(h) if now - h.at.unwrap() < FAIR_AFTER => {
                let server = self.nudged.unwrap_or(h.owner);
                if granted_all_owned_by(&self.queued, before + n + reserved, server) {
                    prop_assert_eq!(sem.available(), before + n, "a young head: the permits are parked");
                    let expected = if self.nudged.is_some() { vec![] } else { vec![h.owner] };
                    prop_assert_eq!(woken, expected, "one nudge at a time");
                    self.nudged = Some(server);
                } else {
                    // Another owner's wait would be granted: handed off.
                    prop_assert!(sem.waiting() == 0 || sem.available() == 0, "parked for another owner");
                    self.nudged = None;
                }
            }
            Some(_) => {
                // Due: handed off; only an emptied queue frees permits.
                prop_assert!(sem.waiting() == 0 || sem.available() == 0, "a due head was barged past");
                self.nudged = None;
            }
            None => {}
        }
        self.collect(sem)
    }
}

proptest! {
    /// Against a model that collects every grant at once: permits are
    /// conserved exactly; a release parks permits (barging allowed) only
    /// while the head is younger than `fair_after`, only for the nudged
    /// owner's waits, and a release that finds the head due leaves nothing
    /// free while anyone still waits.
    #[test]
    fn barging_only_while_the_head_is_young(ops in proptest::collection::vec(op(), 1..200)) {
        check_barging(ops, false)?;
    }

    /// The same, with each head's patience counted from the first release
    /// that finds it standing first.
    #[test]
    fn barging_only_while_the_head_is_young_counting_from_the_head(ops in proptest::collection::vec(op(), 1..200)) {
        check_barging(ops, true)?;
    }
}

fn check_barging(ops: Vec<Op>, from_head: bool) -> Result<(), TestCaseError> {
    {
        const CAPACITY: usize = 3;
        let (sem, clock) = if from_head {
            eventual_head(CAPACITY)
        } else {
            eventual(CAPACITY)
        };
        let mut model = Model {
            from_head,
            ..Model::default()
        };
        let mut next_token = 0u64;
        for op in ops {
            let now = sluice_core::Clock::now(&*clock);
            match op {
                Op::Acquire { owner, n, priority } => {
                    next_token += 1;
                    match sem.acquire_with_priority(n, priority, owner, next_token) {
                        Ok(Acquire::Acquired) => model.held[owner as usize].push(n),
                        Ok(Acquire::Queued) => {
                            let at = (!model.from_head).then_some(now);
                            model.queued.push(Queued {
                                owner,
                                token: next_token,
                                n,
                                priority,
                                at,
                            });
                        }
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::Barge { owner, n } => {
                    let before = sem.available();
                    if sem.try_acquire(n).is_ok() {
                        prop_assert!(before >= n);
                        model.held[owner as usize].push(n);
                    }
                }
                Op::Release { owner } => {
                    if let Some(n) = model.held[owner as usize].pop() {
                        model.release(&sem, now, n)?;
                    }
                }
                Op::Serve => {
                    sem.serve();
                    model.nudged = None;
                }
                Op::Cancel { owner, pick } => {
                    let mine: Vec<u64> = model
                        .queued
                        .iter()
                        .filter(|w| w.owner == owner)
                        .map(|w| w.token)
                        .collect();
                    if !mine.is_empty() {
                        let token = mine[pick % mine.len()];
                        prop_assert!(sem.cancel(owner, token).is_some());
                        model.queued.retain(|w| w.token != token);
                        model.nudged = None;
                    }
                }
                Op::RemoveOwner { owner } => {
                    sem.remove_owner(owner);
                    model.queued.retain(|w| w.owner != owner);
                    model.nudged = None;
                    model.collect(&sem)?;
                    let held: Vec<usize> = model.held[owner as usize].drain(..).collect();
                    for n in held {
                        model.release(&sem, now, n)?;
                    }
                }
                Op::Advance(nanos) => clock.advance(nanos),
            }
            model.collect(&sem)?;
            prop_assert_eq!(sem.waiting(), model.queued.len());
            let holding: usize = model.held.iter().flatten().sum();
            prop_assert_eq!(sem.available() + sem.reserved_for_head() + holding, CAPACITY);
            // Parked permits never stand between another owner and its grant.
            if sem.available() > 0 && !model.queued.is_empty() {
                prop_assert!(model.nudged.is_some(), "permits parked with no nudge pending");
                let budget = sem.available() + sem.reserved_for_head();
                prop_assert!(granted_all_owned_by(&model.queued, budget, model.nudged.unwrap()));
            }
        }
        for owner in 0..3u32 {
            sem.remove_owner(owner);
            for n in model.held[owner as usize].drain(..) {
                sem.release(n).unwrap();
            }
        }
        prop_assert_eq!((sem.available(), sem.waiting()), (CAPACITY, 0));
    }
    Ok(())
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
