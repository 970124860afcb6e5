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
//!
//! Both run in FIFO mode, then in eventual mode on two clocks the test moves
//! together (`Op::Advance`), the head's patience counted from queueing
//! (`Fairness::Eventual`) and from the first release that finds it standing
//! first (`Fairness::EventualHead`; the test stamps its followed head where
//! the core does: `Eventual::see_head`). There the two differ by design in three places
//! (each shown on its smallest case in `semaphore_eventual_differences.rs`),
//! which the core side is made to follow (each named where it is done), so
//! that every other observable can still be compared step for step:
//!
//! 1. *Bargers and a due head.* The core's fast path reads no clock: a
//!    newcomer may take parked permits even once the head is due. The shared
//!    `try_acquire` and `acquire` first hand parked permits to a due head
//!    (`serve_if_due`). The core side calls `serve` first in that case; to
//!    know when, the test follows the queue (`Eventual::queue`). A request
//!    for no permits still differs (see `eventual_op`): none are asked for.
//! 2. *Every shared hand-off serves what is parked.* The shared `cancel` (of
//!    a refusal too), `forget_held` (with no refusal too), `detach` and
//!    `rebuild` hand parked permits to the queue; the core's `cancel` of a
//!    refusal and `forget_held` refusing nobody leave them parked, and the
//!    binding's detach (`remove_owner`, then `release` of what was held) may
//!    park them again and nudge the head's owner. The core side calls
//!    `serve` after those (a detach's nudge is then no ring: the shared one
//!    rings only whom it grants).
//! 3. *How long a nudge is pending.* The core forgets its nudge whenever it
//!    hands permits to the queue; the shared semaphore keeps it until an
//!    owner collects (or cancels, or detaches), since the nudged owner was
//!    rung and will collect: "one ring until someone collects". They differ
//!    after a barger took every parked permit and a hand-off followed: the
//!    next young release rings the head's owner again in the core, nobody in
//!    the shared one, and parks for a different owner. So before a release,
//!    `add_permits` or `forget_held` with a nudge pending and nothing
//!    parked, the nudged owner collects first (`Eventual::nudged`), on both.
//!    A `forget_held` that refuses every queued wait is such a hand-off
//!    too: the shared one keeps the nudge (it had no queue to serve), so
//!    the test keeps following it (`Eventual::nudged` then names the shared
//!    semaphore's nudge, which the core has forgotten).
//!
//! The doorbell path (the core's `serve`, then `drain_decisions`) is the
//! shared `take_decided`, which does both: `Op::Collect`. In eventual mode the
//! test also checks the invariants directly: parked permits only ever cover
//! the nudged owner's waits, and no permit is lost or made.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use sluice_core::{AcquireError, Decision, Fairness, FakeClock, Semaphore, TryAcquireError};
use sluice_shm::semaphore::{Acquire, SharedSemaphore, FAIR_AFTER_NS};
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
    /// The doorbell path of one owner on both sides (the core's `serve`, a
    /// no-op in FIFO mode, then its decisions; the shared `take_decided`),
    /// compared.
    Collect {
        owner: u32,
    },
    /// Eventual mode: moves both clocks on by this many nanoseconds.
    Advance(u64),
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

/// The operations of `op()` and the passing of time: a small step, half the
/// due time (two reach it exactly: due, not young), or one past it at once.
/// The weights are `op()`'s times four, but for more bargers (`TryAcquire`)
/// and fewer `Close`s (nothing parks after one).
///
/// Requests ask for one permit or more, as from JavaScript (weights are
/// validated from 1). A request for none differs while the head is due: the
/// core's fast path grants it (it takes nothing), the shared semaphore
/// refuses it or queues it behind the head (as in FIFO mode).
fn eventual_op() -> impl Strategy<Value = Op> {
    let owner = 0..OWNERS;
    prop_oneof![
        20 => (owner.clone(), 1..4u64).prop_map(|(owner, n)| Op::TryAcquire { owner, n }),
        24 => (owner.clone(), 1..5u64, -1..=1i32).prop_map(|(owner, n, priority)| Op::Acquire { owner, n, priority }),
        24 => (owner.clone(), 1..4u64).prop_map(|(owner, n)| Op::Release { owner, n }),
        8 => (owner.clone(), 0..4usize).prop_map(|(owner, pick)| Op::Cancel { owner, pick }),
        4 => (0..3u64).prop_map(Op::AddPermits),
        4 => (0..3u64).prop_map(Op::ForgetPermits),
        4 => (owner.clone(), 1..3u64).prop_map(|(owner, n)| Op::ForgetHeld { owner, n }),
        1 => Just(Op::Close),
        4 => owner.prop_map(|owner| Op::Detach { owner }),
        4 => Just(Op::Rebuild),
        8 => (0..OWNERS).prop_map(|owner| Op::Collect { owner }),
        3 => (1..FAIR_AFTER_NS / 2).prop_map(Op::Advance),
        2 => Just(Op::Advance(FAIR_AFTER_NS / 2)),
        3 => Just(Op::Advance(FAIR_AFTER_NS + 1)),
    ]
}

/// A wait the core has queued, as the test follows it.
#[derive(Debug)]
struct Queued {
    token: u64,
    owner: u32,
    needed: u64,
    priority: i32,
    /// When its patience started: queued, or counting from the head, first
    /// found standing first by a release (`None` until then).
    at: Option<u64>,
}

/// Eventual mode: the clocks, and what the test follows of the core's state
/// to map the differences listed in the module docs.
struct Eventual {
    clock: Arc<FakeClock>,
    now: u64,
    /// The core's queue in its order (priority, then FIFO: tokens grow), to
    /// tell when the head is due. Grants always take the head, so after
    /// each step the known removals are applied and then heads are dropped
    /// until the length is the core's `waiting`.
    queue: Vec<Queued>,
    /// The owner of the core's pending nudge (`nudged_owner` while `nudged`),
    /// or of the shared one's where the core forgot it (difference 3).
    nudged: Option<u32>,
    /// Patience counted from the head (`Fairness::EventualHead`).
    from_head: bool,
}

impl Eventual {
    fn head_due(&self) -> bool {
        self.queue
            .first()
            .and_then(|head| head.at)
            .is_some_and(|at| self.now.saturating_sub(at) >= FAIR_AFTER_NS)
    }

    /// Counting from the head, a release of the core is about to find the
    /// head standing first (its `young_head`): its count starts now, if it
    /// has not yet. (The core stamps only with nothing owed, as always here.)
    fn see_head(&mut self) {
        if self.from_head {
            if let Some(head) = self.queue.first_mut() {
                head.at.get_or_insert(self.now);
            }
        }
    }

    /// The `at` of a wait the core queues now.
    fn queued_at(&self) -> Option<u64> {
        (!self.from_head).then_some(self.now)
    }

    fn insert(&mut self, wait: Queued) {
        let at = self.queue.partition_point(|w| w.priority >= wait.priority);
        self.queue.insert(at, wait);
    }
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
    /// `Some` in eventual mode.
    eventual: Option<Eventual>,
}

fn set(owners: Vec<u32>) -> BTreeSet<u32> {
    owners.into_iter().collect()
}

/// Where both clocks start: any time will do, as long as it is not 0.
const START: u64 = 1_000_000_000;

impl Pair {
    fn new(permits: u64, max_waiters: u32, auto_collect: bool, fairness: Fairness) -> Self {
        let shared = SharedSemaphore::in_process_with(permits, max_waiters, OWNERS, fairness);
        for o in 0..OWNERS {
            assert_eq!(shared.attach().unwrap().0, o);
        }
        let core = Semaphore::with_max_waiters(permits as usize, max_waiters as usize);
        let (core, eventual) = match fairness {
            Fairness::Fifo => (core, None),
            Fairness::Eventual | Fairness::EventualHead => {
                let clock = Arc::new(FakeClock::new(START));
                shared.set_clock(START);
                let from_head = fairness == Fairness::EventualHead;
                let eventual = Eventual {
                    clock: clock.clone(),
                    now: START,
                    queue: Vec::new(),
                    nudged: None,
                    from_head,
                };
                let core = if from_head {
                    core.with_eventual_head_fairness(clock, FAIR_AFTER_NS)
                } else {
                    core.with_eventual_fairness(clock, FAIR_AFTER_NS)
                };
                (core, Some(eventual))
            }
        };
        Pair {
            core,
            shared,
            held: vec![0; OWNERS as usize],
            waits: vec![Vec::new(); OWNERS as usize],
            next_token: 1,
            auto_collect,
            eventual,
        }
    }

    /// Permits the core has parked for a nudged owner (free while waits are queued).
    fn parked(&self) -> usize {
        if self.core.waiting() > 0 {
            self.core.available()
        } else {
            0
        }
    }

    /// Eventual mode: the core's `serve` (returning whom it grants); nothing in FIFO mode.
    fn serve(&mut self) -> Vec<u32> {
        match &mut self.eventual {
            Some(eventual) => {
                eventual.nudged = None;
                self.core.serve()
            }
            None => Vec::new(),
        }
    }

    /// Difference 1 (module docs): the shared `try_acquire` and `acquire`
    /// hand parked permits to a due head before looking at them.
    fn serve_if_due(&mut self) -> Result<Vec<u32>, TestCaseError> {
        let due = self.eventual.as_ref().is_some_and(Eventual::head_due);
        if !due || self.parked() == 0 {
            return Ok(Vec::new());
        }
        let woken = self.serve();
        self.follow_queue(|_| false)?;
        Ok(woken)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        // Difference 3 (module docs): the nudged owner collects before a
        // hand-off could make the two forget its nudge differently.
        if matches!(op, Op::Release { .. } | Op::AddPermits(_) | Op::ForgetHeld { .. }) && self.parked() == 0 {
            if let Some(owner) = self.eventual.as_ref().and_then(|e| e.nudged) {
                self.step(&Op::Collect { owner })?;
            }
        }
        // Owners the core says to wake; compared with those the shared one rang.
        let mut core_woken = BTreeSet::new();
        // The core's nudge after the step, if it changed (see `Eventual::nudged`).
        let mut nudged = Nudge::Kept;
        // Eventual mode: whether the head was due before the step, and
        // whether the step must then leave nothing parked (a release, or a
        // request looking at the free permits).
        let due = self.eventual.as_ref().is_some_and(Eventual::head_due);
        let mut serves_a_due_head = false;
        match *op {
            Op::TryAcquire { owner, n } => {
                core_woken = set(self.serve_if_due()?);
                serves_a_due_head = true;
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
                if n <= self.core.capacity() as u64 {
                    core_woken = set(self.serve_if_due()?);
                    serves_a_due_head = true;
                }
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
                        if let Some(eventual) = &mut self.eventual {
                            let at = eventual.queued_at();
                            eventual.insert(Queued {
                                token,
                                owner,
                                needed: n,
                                priority,
                                at,
                            });
                        }
                    }
                    Err(AcquireError::Closed) => prop_assert!(matches!(s, Err(Error::Closed)), "{s:?}"),
                    Err(AcquireError::TooManyPermits { .. }) => prop_assert_eq!(s.ok(), Some(Acquire::TooHeavy)),
                    Err(AcquireError::QueueFull) => prop_assert_eq!(s.ok(), Some(Acquire::QueueFull)),
                    Err(AcquireError::DuplicateToken) => prop_assert!(false, "tokens are unique"),
                }
            }
            Op::Release { owner, n } => {
                // Eventual mode: at most what the owner holds, if anything,
                // so that most releases happen (each may park). FIFO mode
                // checks the refusal of the rest as well.
                let held = self.held[owner as usize];
                let n = if self.eventual.is_some() && held > 0 {
                    n.min(held)
                } else {
                    n
                };
                let s = self.shared.release(owner, n);
                if self.held[owner as usize] < n {
                    prop_assert!(s.is_err(), "releasing more than held must fail: {s:?}");
                } else {
                    self.held[owner as usize] -= n;
                    if let Some(eventual) = &mut self.eventual {
                        eventual.see_head();
                    }
                    let released = self.core.release(n as usize).expect("the binding checked Held");
                    serves_a_due_head = true;
                    nudged = match (self.parked(), released.first()) {
                        // Parked, and the head's owner returned: a new nudge.
                        (1.., Some(&head_owner)) => Nudge::To(head_owner),
                        // Parked for the owner already nudged.
                        (1.., None) => Nudge::Kept,
                        // Handed off: the core forgets its nudge.
                        (0, _) => Nudge::Gone,
                    };
                    core_woken = set(released);
                    // The binding settles its own grants at once (`wake_list`);
                    // nudged itself, it serves first, as its doorbell would.
                    let mut core_own = Vec::new();
                    if core_woken.remove(&owner) {
                        if nudged == Nudge::To(owner) {
                            core_woken.extend(self.serve());
                            core_woken.remove(&owner);
                            nudged = Nudge::Gone;
                        }
                        let held = &mut self.held[owner as usize];
                        self.core.drain_granted(owner, |g| {
                            *held += g.permits as u64;
                            core_own.push(g.token);
                        });
                    }
                    let mut own = s.expect("release");
                    if !self.auto_collect {
                        // As in `collect`: a cancel of a decided wait
                        // reorders the core's grants.
                        own.sort_unstable();
                        core_own.sort_unstable();
                    }
                    prop_assert_eq!(own, core_own.clone(), "own grants of the release");
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
                    // Difference 2: the shared cancel hands parked permits
                    // on, of a refusal too.
                    core_woken.extend(self.serve());
                    nudged = Nudge::Gone;
                }
                self.waits[owner as usize].retain(|&t| t != token);
                self.follow_queue(|w| w.token == token)?;
            }
            Op::AddPermits(n) => {
                core_woken = set(self.core.add_permits(n as usize).expect("small"));
                self.shared.add_permits(n).expect("small");
                nudged = Nudge::Gone;
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
                    // Difference 2: the shared one hands parked permits on,
                    // refusing nobody too. (With none parked, no nudge is
                    // pending here, by difference 3: nothing to forget.)
                    if self.parked() > 0 {
                        core_woken.extend(self.serve());
                    }
                    // Difference 3: refusing every queued wait, the shared
                    // hand-off finds no queue to serve and keeps a pending
                    // nudge (its owner was rung); the core forgot it.
                    nudged = if self.core.waiting() == 0 {
                        Nudge::Kept
                    } else {
                        Nudge::Gone
                    };
                    let capacity = self.core.capacity() as u64;
                    self.follow_queue(|w| w.needed > capacity)?;
                }
            }
            Op::Close => {
                core_woken = set(self.core.close());
                self.shared.close().expect("close");
                self.waits.iter_mut().for_each(Vec::clear);
                nudged = Nudge::Gone;
                self.follow_queue(|_| true)?;
            }
            Op::Detach { owner } => {
                // The binding's detach: remove_owner, then release what it held.
                let mut woken = self.core.remove_owner(owner);
                let held = std::mem::take(&mut self.held[owner as usize]);
                if held > 0 {
                    // The release finds the head left after `remove_owner`.
                    self.follow_queue(|w| w.owner == owner)?;
                    if let Some(eventual) = &mut self.eventual {
                        eventual.see_head();
                    }
                    let released = self.core.release(held as usize).expect("held");
                    if self.parked() > 0 {
                        // Difference 2: parked, the head's owner nudged; the
                        // shared detach hands off and rings only whom it grants.
                        woken.extend(self.serve());
                    } else {
                        woken.extend(released);
                    }
                }
                core_woken = set(woken);
                core_woken.remove(&owner);
                self.shared.detach(owner).expect("detach");
                self.waits[owner as usize].clear();
                nudged = Nudge::Gone;
                self.follow_queue(|w| w.owner == owner)?;
            }
            Op::Rebuild => {
                // Difference 2: a rebuild hands whatever is free to the queue.
                core_woken = set(self.serve());
                self.shared.rebuild().expect("rebuild of a consistent state");
                nudged = Nudge::Gone;
            }
            Op::Collect { owner } => {
                self.collect(owner)?;
                nudged = Nudge::Gone;
            }
            Op::Advance(ns) => {
                let eventual = self.eventual.as_mut().expect("eventual mode only");
                eventual.clock.advance(ns);
                eventual.now += ns;
                self.shared.set_clock(eventual.now);
            }
        }
        if let Some(eventual) = &mut self.eventual {
            match nudged {
                Nudge::Kept => {}
                Nudge::Gone => eventual.nudged = None,
                Nudge::To(owner) => eventual.nudged = Some(owner),
            }
        }
        prop_assert_eq!(set(self.shared.take_rung()), core_woken, "owners woken by {:?}", op);
        self.follow_queue(|_| false)?;
        if due && serves_a_due_head {
            // No barger passes a due head, and its next release is its own.
            // (`compare` below holds the shared semaphore to the same.)
            prop_assert_eq!(self.parked(), 0, "permits left parked past a due head by {:?}", op);
        }
        if self.auto_collect {
            for owner in 0..OWNERS {
                self.collect(owner)?;
            }
        }
        self.compare()
    }

    /// Eventual mode: applies to the followed queue the removals of the last
    /// call (`gone`), then drops heads (granted) down to the core's length.
    fn follow_queue(&mut self, gone: impl Fn(&Queued) -> bool) -> Result<(), TestCaseError> {
        let waiting = self.core.waiting();
        let Some(eventual) = &mut self.eventual else {
            return Ok(());
        };
        eventual.queue.retain(|w| !gone(w));
        prop_assert!(
            eventual.queue.len() >= waiting,
            "the test lost track of the queue: {:?}, {} waiting",
            eventual.queue,
            waiting
        );
        let granted = eventual.queue.len() - waiting;
        eventual.queue.drain(..granted);
        Ok(())
    }

    /// The doorbell path of `owner` on both sides: the core's `serve` (none
    /// in FIFO mode) and its decisions, against the shared `take_decided`.
    /// Compares the decisions, whom the serve rang and what `owner` holds.
    fn collect(&mut self, owner: u32) -> Result<(), TestCaseError> {
        let mut core_woken = set(self.serve());
        core_woken.remove(&owner);
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
        prop_assert_eq!(
            set(self.shared.take_rung()),
            core_woken,
            "owners woken by {}'s collection",
            owner
        );
        if !self.auto_collect {
            // The core's cancel of a decided wait `swap_remove`s it from the
            // owner's grants, reordering them: compare as sets here (the
            // auto-collecting test compares the order).
            shared.sort_unstable();
            core.sort_unstable();
        }
        prop_assert_eq!(&shared, &core, "decisions of owner {}", owner);
        self.follow_queue(|_| false)?;
        if let Some(eventual) = &self.eventual {
            let decided = |w: &Queued| core.contains(&(w.token as i64)) || core.contains(&-(w.token as i64));
            prop_assert!(!eventual.queue.iter().any(decided), "decided waits are not queued");
        }
        self.waits[owner as usize].retain(|t| !core.contains(&(*t as i64)) && !core.contains(&-(*t as i64)));
        prop_assert_eq!(
            self.shared.held(owner),
            self.held[owner as usize],
            "held by owner {}",
            owner
        );
        Ok(())
    }

    /// Compares every count, and checks the shared state's consistency; in
    /// eventual mode also the invariants of parking.
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
        if let Some(eventual) = &self.eventual {
            self.check_eventual(eventual)?;
        }
        Ok(())
    }

    /// No permit lost or made: free, reserved and held add up to the
    /// capacity once every grant is collected (at most it, with grants
    /// uncollected). Parked permits, with what is reserved for the head,
    /// grant in queue order only waits of the owner nudged.
    fn check_eventual(&self, eventual: &Eventual) -> Result<(), TestCaseError> {
        let held: u64 = self.held.iter().sum();
        let accounted = self.shared.available() + self.shared.reserved_for_head() + held;
        if self.auto_collect {
            prop_assert_eq!(accounted, self.shared.capacity(), "free + reserved + held");
        } else {
            prop_assert!(accounted <= self.shared.capacity(), "free + reserved + held");
        }
        if self.parked() == 0 {
            return Ok(());
        }
        let Some(nudged) = eventual.nudged else {
            return Err(TestCaseError::fail("permits parked with no nudge pending"));
        };
        let mut pool = self.parked() as u64 + self.shared.reserved_for_head();
        for wait in &eventual.queue {
            if pool < wait.needed {
                break;
            }
            prop_assert_eq!(wait.owner, nudged, "parked permits would grant another owner's wait");
            pool -= wait.needed;
        }
        Ok(())
    }
}

/// How a step changed the core's pending nudge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nudge {
    Kept,
    Gone,
    To(u32),
}

/// Runs `ops` on both sides of `pair`, comparing after each step.
fn run(mut pair: Pair, ops: &[Op]) -> Result<(), TestCaseError> {
    for op in ops {
        pair.step(op)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_shared_semaphore_decides_as_the_core_does(
        permits in 1..6u64,
        max_waiters in 1..6u32,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(Pair::new(permits, max_waiters, true, Fairness::Fifo), &ops)?;
    }

    /// Decisions left uncollected hold entries, which the core does not
    /// count against `max_waiters`: room enough here that it never matters.
    #[test]
    fn decisions_left_uncollected_and_cancelled_after_the_fact_match_the_core(
        permits in 1..6u64,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(Pair::new(permits, 64, false, Fairness::Fifo), &ops)?;
    }

    /// Eventual mode, every owner collecting after every step (a prompt
    /// binding): a nudge is served in the step that made it.
    #[test]
    fn in_eventual_mode_the_shared_semaphore_decides_as_the_core_does(
        permits in 1..6u64,
        max_waiters in 1..6u32,
        ops in prop::collection::vec(eventual_op(), 1..100),
    ) {
        run(Pair::new(permits, max_waiters, true, Fairness::Eventual), &ops)?;
    }

    /// Eventual mode, collecting only on `Op::Collect`: parked permits stay
    /// parked across steps, for bargers, a due head and later hand-offs.
    #[test]
    fn in_eventual_mode_bargers_nudges_and_due_heads_match_the_core(
        permits in 1..6u64,
        ops in prop::collection::vec(eventual_op(), 1..100),
    ) {
        run(Pair::new(permits, 64, false, Fairness::Eventual), &ops)?;
    }

    /// Eventual mode counted from the head, every owner collecting after
    /// every step.
    #[test]
    fn counting_from_the_head_the_shared_semaphore_decides_as_the_core_does(
        permits in 1..6u64,
        max_waiters in 1..6u32,
        ops in prop::collection::vec(eventual_op(), 1..100),
    ) {
        run(Pair::new(permits, max_waiters, true, Fairness::EventualHead), &ops)?;
    }

    /// Eventual mode counted from the head, collecting only on `Op::Collect`.
    #[test]
    fn counting_from_the_head_bargers_nudges_and_due_heads_match_the_core(
        permits in 1..6u64,
        ops in prop::collection::vec(eventual_op(), 1..100),
    ) {
        run(Pair::new(permits, 64, false, Fairness::EventualHead), &ops)?;
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
