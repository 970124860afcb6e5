//! Review: the sequential specification of refusals and debts together,
//! with priorities, cancels, dying owners, closes and adds. After every step:
//! free + reserved + held + granted-uncollected = capacity - debt paid; no
//! queued wait needs more than the capacity; and no fast-path acquire
//! succeeds while a wait is queued or a permit owed (no barging).

use proptest::prelude::*;
use sluice_core::{Acquire, AcquireError, Decision, Semaphore, TryAcquireError};

#[derive(Debug, Clone)]
enum Op {
    Acquire { owner: u32, n: usize, priority: i32 },
    TryAcquire { owner: u32, n: usize },
    Release { owner: u32 },
    Cancel { owner: u32, pick: usize },
    Collect,
    Detach { owner: u32 },
    Forget { owner: u32 },
    AddPermit,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0u32..3;
    prop_oneof![
        4 => (owner.clone(), 1usize..5, -1i32..2).prop_map(|(owner, n, priority)| Op::Acquire { owner, n, priority }),
        1 => (owner.clone(), 1usize..3).prop_map(|(owner, n)| Op::TryAcquire { owner, n }),
        3 => owner.clone().prop_map(|owner| Op::Release { owner }),
        1 => (owner.clone(), any::<usize>()).prop_map(|(owner, pick)| Op::Cancel { owner, pick }),
        2 => Just(Op::Collect),
        1 => owner.clone().prop_map(|owner| Op::Detach { owner }),
        2 => owner.prop_map(|owner| Op::Forget { owner }),
        1 => Just(Op::AddPermit),
        1 => Just(Op::Close),
    ]
}

struct Model {
    /// Permits each owner holds, one entry per acquisition; owner 3 is the
    /// holder of the permits a `with_owed` semaphore starts with.
    held: [Vec<usize>; 4],
    /// Queued waits per owner: (token, n).
    queued: [Vec<(u64, usize)>; 3],
    debt_paid: usize,
}

impl Model {
    fn held_total(&self) -> usize {
        self.held.iter().flatten().sum()
    }
}

fn uncollected(sem: &Semaphore, model: &mut Model) -> Result<usize, TestCaseError> {
    // Collecting is observable only through draining: drain every owner and
    // put the grants in the model (they are then held).
    let mut total = 0;
    for owner in 0..3u32 {
        let mut decisions = Vec::new();
        sem.drain_decisions(owner, |s| decisions.push(s));
        for s in decisions {
            let token = match s {
                Decision::Granted(g) => g.token,
                Decision::Refused(r) => r.token,
            };
            let waits = &mut model.queued[owner as usize];
            let at = waits.iter().position(|&(t, _)| t == token);
            prop_assert!(
                at.is_some(),
                "outcome for an unknown or already decisions token {token}"
            );
            let (_, n) = waits.remove(at.unwrap());
            match s {
                Decision::Granted(g) => {
                    prop_assert_eq!(g.permits, n);
                    total += n;
                    model.held[owner as usize].push(n);
                }
                Decision::Refused(r) => {
                    prop_assert_eq!(r.requested, n);
                    prop_assert!(n > r.capacity);
                }
            }
        }
    }
    Ok(total)
}

/// Collects every owner's outcomes, then checks the conservation law, the
/// debt, the queue length and that no queued wait exceeds the capacity.
fn check(sem: &Semaphore, model: &mut Model, owed: usize) -> Result<(), TestCaseError> {
    uncollected(sem, model)?;
    let lhs = sem.available() + sem.reserved_for_head() + model.held_total();
    prop_assert_eq!(lhs, sem.capacity() - model.debt_paid, "permits not conserved");
    prop_assert_eq!(sem.owed(), owed - model.debt_paid);
    prop_assert_eq!(sem.waiting(), model.queued.iter().map(Vec::len).sum::<usize>());
    prop_assert!(
        model.queued.iter().flatten().all(|&(_, n)| n <= sem.capacity()),
        "a queued wait exceeds the capacity"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn refusals_and_debts_conserve_permits(
        start in 2usize..5,
        owed in 0usize..3,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let sem = Semaphore::with_owed(start, owed);
        let mut model = Model {
            held: [vec![], vec![], vec![], vec![1; start]],
            queued: Default::default(),
            debt_paid: 0,
        };
        let mut next_token = 0u64;
        for op in ops {
            let op: Op = op;
            // No barging: the fast path is shut while anyone waits or a debt remains.
            let shut = sem.waiting() > 0 || sem.owed() > 0;
            match op.clone() {
                Op::Acquire { owner, n, priority } => {
                    next_token += 1;
                    match sem.acquire_with_priority(n, priority, owner, next_token) {
                        Ok(Acquire::Acquired) => {
                            prop_assert!(sem.owed() == 0, "acquired while a permit is owed");
                            model.held[owner as usize].push(n);
                        }
                        Ok(Acquire::Queued) => model.queued[owner as usize].push((next_token, n)),
                        Err(AcquireError::TooManyPermits { requested, capacity }) => {
                            prop_assert!(requested > capacity && capacity == sem.capacity());
                        }
                        Err(AcquireError::Closed) => prop_assert!(sem.is_closed()),
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::TryAcquire { owner, n } => match sem.try_acquire(n) {
                    Ok(()) => {
                        prop_assert!(!shut, "a fast-path acquire barged past a queue or a debt");
                        model.held[owner as usize].push(n);
                    }
                    Err(TryAcquireError::Closed) => prop_assert!(sem.is_closed()),
                    Err(TryAcquireError::NoPermits) => {}
                },
                Op::Release { owner } => {
                    let owner = if model.held[3].is_empty() { owner as usize } else { 3 };
                    if let Some(n) = model.held[owner].pop() {
                        let before = sem.owed();
                        sem.release(n).unwrap();
                        model.debt_paid += before - sem.owed();
                    }
                }
                Op::Cancel { owner, pick } => {
                    let waits = &mut model.queued[owner as usize];
                    if !waits.is_empty() {
                        let (token, _) = waits.remove(pick % waits.len());
                        let before = sem.owed();
                        prop_assert!(sem.cancel(owner, token).is_some(), "a queued or decisions wait is known");
                        model.debt_paid += before - sem.owed();
                    }
                }
                Op::Collect => {}
                Op::Detach { owner } => {
                    // What the binding's detach does: withdraw, then release what it held.
                    let before = sem.owed();
                    sem.remove_owner(owner);
                    model.queued[owner as usize].clear();
                    let held: usize = model.held[owner as usize].drain(..).sum();
                    if held > 0 {
                        sem.release(held).unwrap();
                    }
                    model.debt_paid += before - sem.owed();
                }
                Op::Forget { owner } => {
                    let owner = if model.held[3].is_empty() { owner as usize } else { 3 };
                    if let Some(n) = model.held[owner].pop() {
                        sem.forget_held(1).unwrap();
                        if n > 1 {
                            model.held[owner].push(n - 1);
                        }
                    }
                }
                Op::AddPermit => {
                    if sem.capacity() < 6 {
                        let before = sem.owed();
                        sem.add_permits(1).unwrap();
                        model.debt_paid += before - sem.owed();
                    }
                }
                Op::Close => {
                    // Withdraws every queued wait; decisions ones stay to collect,
                    // so collect them first to tell them from the withdrawn.
                    uncollected(&sem, &mut model)?;
                    sem.close();
                    for waits in &mut model.queued {
                        waits.clear();
                    }
                }
            }
            prop_assert_eq!(sem.owed(), owed - model.debt_paid);
            prop_assert!(sem.waiting() <= model.queued.iter().map(Vec::len).sum::<usize>());
            if matches!(op, Op::Collect) {
                check(&sem, &mut model, owed)?;
            }
        }
        check(&sem, &mut model, owed)?;
    }
}
