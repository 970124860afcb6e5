//! The shared semaphore against `sluice_core::Semaphore` as an oracle: the
//! same operation sequences, run on both in one process, must give the same
//! outcomes, grants, refusals, owners woken, `available`, `waiting`,
//! `reserved_for_head`, capacity and holdings. The shared one runs in process
//! memory here (`SharedSemaphore::in_process`): the same engine and records
//! as in a segment, with a plain mutex for the lock.
//!
//! After every step the shared state must also pass the full consistency
//! check (`check`), and a `rebuild` (what recovery after `EOWNERDEAD` runs)
//! on a consistent state must change nothing observable.

use std::collections::BTreeSet;

use proptest::prelude::*;
use sluice_core::{AcquireError, Decision, Semaphore, TryAcquireError};
use sluice_shm::semaphore::{Acquire, SharedSemaphore};
use sluice_shm::Error;

const OWNERS: u32 = 3;

#[derive(Debug, Clone)]
enum Op {
    TryAcquire {
        owner: u32,
        n: u64,
    },
    Acquire {
        owner: u32,
        n: u64,
        priority: i32,
    },
    Release {
        owner: u32,
        n: u64,
    },
    /// Cancels the owner's `pick`-th outstanding wait (mod their count), or an
    /// unknown token when it has none.
    Cancel {
        owner: u32,
        pick: usize,
    },
    AddPermits(u64),
    ForgetPermits(u64),
    ForgetHeld {
        owner: u32,
        n: u64,
    },
    Close,
    Detach {
        owner: u32,
    },
    Rebuild,
    /// Collects one owner's decisions on both sides and compares them.
    Collect {
        owner: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0..OWNERS;
    prop_oneof![
        3 => (owner.clone(), 0..4u64).prop_map(|(owner, n)| Op::TryAcquire { owner, n }),
        6 => (owner.clone(), 0..5u64, -1..=1i32).prop_map(|(owner, n, priority)| Op::Acquire { owner, n, priority }),
        6 => (owner.clone(), 1..4u64).prop_map(|(owner, n)| Op::Release { owner, n }),
        2 => (owner.clone(), 0..4usize).prop_map(|(owner, pick)| Op::Cancel { owner, pick }),
        1 => (0..3u64).prop_map(Op::AddPermits),
        1 => (0..3u64).prop_map(Op::ForgetPermits),
        1 => (owner.clone(), 1..3u64).prop_map(|(owner, n)| Op::ForgetHeld { owner, n }),
        1 => Just(Op::Close),
        1 => owner.prop_map(|owner| Op::Detach { owner }),
        1 => Just(Op::Rebuild),
        2 => (0..OWNERS).prop_map(|owner| Op::Collect { owner }),
    ]
}

/// Both semaphores and what the binding would track beside the core.
struct Pair {
    core: Semaphore,
    shared: SharedSemaphore,
    /// Permits each owner holds, as the binding's `Held` counts them for the core.
    held: Vec<u64>,
    /// Each owner's outstanding (queued) tokens.
    waits: Vec<Vec<u64>>,
    next_token: u64,
    /// Collect every owner's decisions after every step (as a prompt binding
    /// does); otherwise only on `Op::Collect`, so that waits are cancelled
    /// after being decided and decisions pile up.
    auto_collect: bool,
}

fn set(owners: Vec<u32>) -> BTreeSet<u32> {
    owners.into_iter().collect()
}

impl Pair {
    fn new(permits: u64, max_waiters: u32, auto_collect: bool) -> Self {
        let shared = SharedSemaphore::in_process(permits, max_waiters, OWNERS);
        for o in 0..OWNERS {
            assert_eq!(shared.attach().unwrap().0, o);
        }
        Pair {
            core: Semaphore::with_max_waiters(permits as usize, max_waiters as usize),
            shared,
            held: vec![0; OWNERS as usize],
            waits: vec![Vec::new(); OWNERS as usize],
            next_token: 1,
            auto_collect,
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        // Owners the core says to wake; compared with those the shared one rang.
        let mut core_woken = BTreeSet::new();
        match *op {
            Op::TryAcquire { owner, n } => {
                let c = self.core.try_acquire(n as usize);
                let s = self.shared.try_acquire(owner, n);
                match c {
                    Ok(()) => {
                        prop_assert!(matches!(s, Ok(true)), "{s:?}");
                        self.held[owner as usize] += n;
                    }
                    Err(TryAcquireError::NoPermits) => prop_assert!(matches!(s, Ok(false)), "{s:?}"),
                    Err(TryAcquireError::Closed) => prop_assert!(matches!(s, Err(Error::Closed)), "{s:?}"),
                }
            }
            Op::Acquire { owner, n, priority } => {
                let token = self.next_token;
                self.next_token += 1;
                let c = self.core.acquire_with_priority(n as usize, priority, owner, token);
                let s = self.shared.acquire(owner, n, token, priority);
                match c {
                    Ok(sluice_core::Acquire::Acquired) => {
                        prop_assert_eq!(s.ok(), Some(Acquire::Granted));
                        self.held[owner as usize] += n;
                    }
                    Ok(sluice_core::Acquire::Queued) => {
                        prop_assert_eq!(s.ok(), Some(Acquire::Queued));
                        self.waits[owner as usize].push(token);
                    }
                    Err(AcquireError::Closed) => prop_assert!(matches!(s, Err(Error::Closed)), "{s:?}"),
                    Err(AcquireError::TooManyPermits { .. }) => prop_assert_eq!(s.ok(), Some(Acquire::TooHeavy)),
                    Err(AcquireError::QueueFull) => prop_assert_eq!(s.ok(), Some(Acquire::QueueFull)),
                    Err(AcquireError::DuplicateToken) => prop_assert!(false, "tokens are unique"),
                }
            }
            Op::Release { owner, n } => {
                let s = self.shared.release(owner, n);
                if self.held[owner as usize] < n {
                    prop_assert!(s.is_err(), "releasing more than held must fail: {s:?}");
                } else {
                    self.held[owner as usize] -= n;
                    core_woken = set(self.core.release(n as usize).expect("the binding checked Held"));
                    // The binding settles its own grants at once (`wake_list`).
                    let mut core_own = Vec::new();
                    if core_woken.remove(&owner) {
                        let held = &mut self.held[owner as usize];
                        self.core.drain_granted(owner, |g| {
                            *held += g.permits as u64;
                            core_own.push(g.token);
                        });
                    }
                    prop_assert_eq!(s.expect("release"), core_own.clone(), "own grants of the release");
                    self.waits[owner as usize].retain(|t| !core_own.contains(t));
                }
            }
            Op::Cancel { owner, pick } => {
                let waits = &self.waits[owner as usize];
                let token = if waits.is_empty() {
                    u64::MAX >> 2
                } else {
                    waits[pick % waits.len()]
                };
                let c = self.core.cancel(owner, token);
                let s = self.shared.cancel(owner, token).expect("cancel");
                prop_assert_eq!(c.is_some(), s, "cancel of {}", token);
                if let Some(w) = c {
                    core_woken = set(w);
                }
                self.waits[owner as usize].retain(|&t| t != token);
            }
            Op::AddPermits(n) => {
                core_woken = set(self.core.add_permits(n as usize).expect("small"));
                self.shared.add_permits(n).expect("small");
            }
            Op::ForgetPermits(n) => {
                let c = self.core.forget_permits(n as usize) as u64;
                prop_assert_eq!(c, self.shared.forget_permits(n).expect("forget_permits"));
            }
            Op::ForgetHeld { owner, n } => {
                let s = self.shared.forget_held(owner, n);
                if self.held[owner as usize] < n {
                    prop_assert!(s.is_err(), "forgetting more than held must fail: {s:?}");
                } else {
                    self.held[owner as usize] -= n;
                    core_woken = set(self.core.forget_held(n as usize).expect("the binding checked Held"));
                    s.expect("forget_held");
                }
            }
            Op::Close => {
                core_woken = set(self.core.close());
                self.shared.close().expect("close");
                self.waits.iter_mut().for_each(Vec::clear);
            }
            Op::Detach { owner } => {
                // The binding's detach: remove_owner, then release what it held.
                let mut woken = self.core.remove_owner(owner);
                let held = std::mem::take(&mut self.held[owner as usize]);
                if held > 0 {
                    woken.extend(self.core.release(held as usize).expect("held"));
                }
                core_woken = set(woken);
                core_woken.remove(&owner);
                self.shared.detach(owner).expect("detach");
                self.waits[owner as usize].clear();
            }
            Op::Rebuild => self.shared.rebuild().expect("rebuild of a consistent state"),
            Op::Collect { owner } => self.collect(owner)?,
        }
        prop_assert_eq!(set(self.shared.take_rung()), core_woken, "owners woken by {:?}", op);
        if self.auto_collect {
            for owner in 0..OWNERS {
                self.collect(owner)?;
            }
        }
        self.compare()
    }

    /// Collects `owner`'s decisions on both sides and compares them and what
    /// it holds.
    fn collect(&mut self, owner: u32) -> Result<(), TestCaseError> {
        let mut core = Vec::new();
        let held = &mut self.held[owner as usize];
        self.core.drain_decisions(owner, |d| match d {
            Decision::Granted(g) => {
                *held += g.permits as u64;
                core.push(g.token as i64);
            }
            Decision::Refused(r) => core.push(-(r.token as i64)),
        });
        let mut shared = self.shared.take_decided(owner).expect("take_decided");
        if !self.auto_collect {
            // The core's cancel of a decided wait `swap_remove`s it from the
            // owner's grants, reordering them: compare as sets here (the
            // auto-collecting test compares the order).
            shared.sort_unstable();
            core.sort_unstable();
        }
        prop_assert_eq!(&shared, &core, "decisions of owner {}", owner);
        self.waits[owner as usize].retain(|t| !core.contains(&(*t as i64)) && !core.contains(&-(*t as i64)));
        prop_assert_eq!(
            self.shared.held(owner),
            self.held[owner as usize],
            "held by owner {}",
            owner
        );
        Ok(())
    }

    /// Compares every count, and checks the shared state's consistency.
    fn compare(&mut self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.shared.available(), self.core.available() as u64, "available");
        prop_assert_eq!(self.shared.waiting(), self.core.waiting() as u64, "waiting");
        prop_assert_eq!(self.shared.capacity(), self.core.capacity() as u64, "capacity");
        prop_assert_eq!(
            self.shared.reserved_for_head(),
            self.core.reserved_for_head() as u64,
            "reserved"
        );
        prop_assert_eq!(self.shared.closed(), self.core.is_closed(), "closed");
        if let Err(e) = self.shared.check() {
            prop_assert!(false, "inconsistent after the step: {}", e);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_shared_semaphore_decides_as_the_core_does(
        permits in 1..6u64,
        max_waiters in 1..6u32,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut pair = Pair::new(permits, max_waiters, true);
        for op in &ops {
            pair.step(op)?;
        }
    }

    /// Decisions left uncollected hold entries, which the core does not
    /// count against `max_waiters`: room enough here that it never matters.
    #[test]
    fn decisions_left_uncollected_and_cancelled_after_the_fact_match_the_core(
        permits in 1..6u64,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut pair = Pair::new(permits, 64, false);
        for op in &ops {
            pair.step(op)?;
        }
    }
}

#[test]
fn releasing_more_than_the_owner_holds_is_an_error_and_changes_nothing() {
    let sem = SharedSemaphore::in_process(3, 4, 2);
    let (a, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 1).unwrap());
    assert!(sem.release(a, 2).is_err());
    assert_eq!((sem.held(a), sem.available()), (1, 2));
    sem.check().unwrap();
}

#[test]
fn a_token_already_waiting_is_refused() {
    let sem = SharedSemaphore::in_process(1, 4, 2);
    let (a, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(a, 1, 5, 0).unwrap(), Acquire::Queued);
    assert!(sem.acquire(a, 1, 5, 0).is_err());
    assert!(
        sem.acquire(a, 1, 0, 0).is_err(),
        "token 0 cannot be told from its refusal"
    );
    assert_eq!(sem.waiting(), 1);
}

#[test]
fn a_cancelled_head_hands_its_reserve_to_the_next_wait() {
    let sem = SharedSemaphore::in_process(3, 4, 3);
    let (a, b, c) = (
        sem.attach().unwrap().0,
        sem.attach().unwrap().0,
        sem.attach().unwrap().0,
    );
    assert!(sem.try_acquire(a, 2).unwrap());
    assert_eq!(sem.acquire(b, 3, 1, 0).unwrap(), Acquire::Queued); // 1 reserved for b
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.reserved_for_head(), 1);
    assert!(sem.cancel(b, 1).unwrap());
    assert_eq!(sem.take_rung(), vec![c]);
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    assert!(!sem.cancel(b, 1).unwrap(), "already withdrawn");
    sem.check().unwrap();
}

#[test]
fn cancelling_a_granted_wait_before_collecting_it_gives_its_permits_on() {
    let sem = SharedSemaphore::in_process(1, 4, 3);
    let (a, b, c) = (
        sem.attach().unwrap().0,
        sem.attach().unwrap().0,
        sem.attach().unwrap().0,
    );
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(c, 1, 2, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(a, 1).unwrap().is_empty());
    assert_eq!(sem.take_rung(), vec![b]);
    // b's wait was granted but b gives up before collecting: c is served.
    assert!(sem.cancel(b, 1).unwrap());
    assert_eq!(sem.take_rung(), vec![c]);
    assert!(sem.take_decided(b).unwrap().is_empty());
    assert_eq!(sem.take_decided(c).unwrap(), vec![2]);
    assert!(!sem.cancel(b, 1).unwrap(), "gone");
    assert_eq!((sem.held(b), sem.held(c)), (0, 1));
    sem.check().unwrap();
}
