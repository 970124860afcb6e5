//! A fair, weighted counting semaphore whose waiters live outside Rust.
//!
//! The algorithm is tokio's batch semaphore (`tokio/src/sync/batch_semaphore.rs`)
//! reshaped for callers that cannot block: the fast path is one CAS on an atomic
//! permit count; the slow path takes a lock, queues the wait (in the crate's
//! private `wait_queue` module) and returns. A later
//! [`release`](Semaphore::release) hands permits straight to the queued
//! waiters in FIFO order (no barging) and returns the [`Owner`]s that must be
//! woken; the owner collects its grants with
//! [`take_granted`](Semaphore::take_granted). Who an owner is and how it is woken
//! (a thread's doorbell, a callback) is the caller's business.
//!
//! A wait can also be *refused* after it was queued: when
//! [`forget_held`](Semaphore::forget_held) shrinks the capacity below what a
//! queued wait asked for, that wait could never end, so it is taken out of the
//! queue (what it was partly granted goes on to the next waiter), its owner is
//! reported like a granted one, and the owner collects the refusal with
//! [`drain_decisions`](Semaphore::drain_decisions) or
//! [`take_refused`](Semaphore::take_refused).
//!
//! # Implementation
//!
//! `state` holds the permits that the fast path may take, shifted left by two,
//! the `QUEUED` flag in bit 0, set exactly while the wait queue is non-empty
//! or permits are owed (`owed`, a value below zero), and the `CLOSED` flag in
//! bit 1. Two invariants make the fast path fair:
//!
//! - `QUEUED` and `CLOSED` only change under the queue lock;
//! - while `QUEUED` is set, the permit count in `state` is zero (FIFO mode;
//!   eventual fairness, below, relaxes this one): a waiter that
//!   joins an empty queue takes whatever was available, and every later
//!   release goes to the queue. So a fast-path `try_acquire` never takes
//!   permits that a queued waiter is owed, and a fast-path `release` that sees
//!   the flag falls back to the lock.
//!
//! Permits handed to the queue before the head's request is whole are
//! *reserved for the head* (`Queue::reserved_for_head`, read by
//! [`reserved_for_head`](Semaphore::reserved_for_head)). Only the head holds
//! them, so a large request at the head is served before smaller requests
//! behind it (tokio's rule). They belong to whoever stands first: when the head
//! leaves (cancelled, refused, withdrawn) or a higher priority overtakes it,
//! the next head inherits them, and `release_locked` hands them out again with
//! the permits it is given.
//!
//! # Eventual fairness
//!
//! Made with [`with_eventual_fairness`](Semaphore::with_eventual_fairness),
//! a semaphore lets newcomers *barge* for a while (parking_lot's eventual
//! fairness, Go's starvation mode): a FIFO hand-off costs a wake-up of the
//! waiter's thread before the permit is used, while the releasing thread,
//! running anyway, could take it back at once. Each `Waiter` records when
//! it was queued (`queued_at`, on the clock the caller passed in). A release
//! that finds waiters queued (and nothing owed):
//!
//! - hands off exactly as in FIFO mode once the head has waited
//!   `fair_after` (default [`FAIR_AFTER_NANOS`]) or more: the head is *due*;
//! - otherwise *parks* the permits on the fast-path count and returns the
//!   head's owner as *nudged* (rung like a granted one), unless an earlier
//!   nudge is still pending (`nudged`, whose owner `Queue::nudged_owner`
//!   names) — but only while every wait the parked permits (and those
//!   reserved for the head) would grant in FIFO order is the nudged owner's.
//!   Otherwise it hands off as in FIFO mode: another owner's grant must not
//!   wait for the nudged thread's next turn, which may be any time away
//!   (that thread busy or blocked), where FIFO would grant it now. The nudged owner calls
//!   [`serve`](Semaphore::serve), which hands whatever is still parked to the
//!   queue in the order and with the rules of FIFO mode (`release_locked`),
//!   and returns the other owners it granted. If a barger took the permits
//!   first, the head stays queued where it was, with its original
//!   `queued_at`.
//!
//! Made with [`with_eventual_head_fairness`](Semaphore::with_eventual_head_fairness)
//! ([`Fairness::EventualHead`]), a wait's patience counts from the head
//! instead: it is queued with `queued_at` unset (`UNSEEN`), and the first
//! release that finds it standing first sets it to that release's time.
//! Counted from queueing, hand-offs come in chains under contention: the
//! next head has waited about as long as the last one, is due at once, and
//! every release hands the permit to a sleeping thread. Counted from the
//! head, each head in turn may be passed over for `fair_after`. The count
//! starts at a release, not when the wait comes first, because only a
//! release can pass it over.
//!
//! So in the eventual modes only, the fast path may take permits while
//! `QUEUED` is set: the second invariant above becomes "while `QUEUED` is set, the permit
//! count in `state` holds only parked permits, and then `nudged` is set".
//! Every operation under the lock that hands permits to the queue
//! (`release_locked`) first takes the parked permits back (one CAS, after
//! which the count stays zero: only lock holders add to it while `QUEUED` is
//! set) and clears `nudged`.
//!
//! The fast path does not learn that the head is due: it needs no clock and
//! no extra bit. It does not have to: permits are parked only by a release
//! that found the head not due, and every release while `QUEUED` is set goes
//! through the lock, where it checks the head's age. So once the head is
//! due, at most the permits parked before that can still be barged for, each
//! barger's release hands off, and no waiter waits more than `fair_after`
//! plus one hold time plus one wake-up beyond its FIFO turn (counting from
//! the head: once it stands first; the k-th in line up to k times that). The wake-up is
//! of its own thread: permits are parked only for the nudged owner's waits,
//! so no other owner's grant depends on that thread's turn. A FIFO schedule
//! is also an eventually fair one, which is why a semaphore kept by one
//! thread may stay FIFO.
//!
//! Orderings not commented where they appear: a `Relaxed` load that seeds a
//! CAS loop is only a first guess, which the CAS checks; the getters
//! (`available`, `waiting`, `capacity`, `is_closed`) are snapshots that
//! publish nothing; `waiting` and `capacity` are written under the lock.

use std::fmt;
use std::sync::Arc;

use crate::cache_padded::CachePadded;
use crate::clock::Clock;
use crate::fx_hash::FxHashMap;
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};
use crate::wait_queue::{WaitQueue, Waiter};

/// How the semaphore names a queued wait in its [`WaitQueue`].
type WaitKey = (Owner, Token);

/// Whoever waits: the binding uses one owner per thread. Permits granted to an
/// owner's waiters are reported per owner, and [`Semaphore::remove_owner`]
/// returns everything an owner was granted but had not collected.
pub type Owner = u32;

/// Names one wait of an owner; chosen by the caller, unique per owner while queued.
pub type Token = u64;

/// The most permits a semaphore can hold (the count is stored shifted by two bits).
pub const MAX_PERMITS: usize = usize::MAX >> 2;

/// How long a queued head may be barged past before releases hand off to it
/// (0.5 ms, parking_lot's figure): see the module docs on eventual fairness.
pub const FAIR_AFTER_NANOS: u64 = 500_000;

/// How a semaphore serves its queue against callers that arrive later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fairness {
    /// Releases hand permits to the queue, oldest first; nobody barges.
    #[default]
    Fifo,
    /// Newcomers may take released permits while the head has waited less
    /// than `fair_after` since it was queued; see the module docs.
    Eventual,
    /// As `Eventual`, but the head's `fair_after` counts from the first
    /// release that finds it standing first; see the module docs.
    EventualHead,
}

/// What an eventually fair semaphore needs: its clock and its patience.
struct Eventual {
    clock: Arc<dyn Clock>,
    /// Nanoseconds the head may wait before releases hand off to it.
    fair_after: u64,
    /// Whether a wait's `fair_after` counts from the first release that
    /// finds it standing first (`Fairness::EventualHead`) rather than from
    /// when it was queued.
    from_head: bool,
}

/// `Waiter::queued_at` of a wait no release has found first in line yet
/// (`Fairness::EventualHead`).
const UNSEEN: u64 = u64::MAX;

/// Bit 0 of `state`: waiters are queued or permits owed; the fast paths are
/// closed (but for taking parked permits, in the eventual modes).
pub const QUEUED: usize = 1;
/// Bit 1 of `state`: the semaphore is closed.
pub const CLOSED: usize = 2;
/// The free permit count sits above the two flag bits of `state`.
pub const PERMIT_SHIFT: u32 = 2;

/// A counting semaphore with FIFO hand-off to queued waiters.
///
/// # Examples
///
/// ```
/// use sluice_core::{Acquire, Grant, Semaphore};
///
/// let sem = Semaphore::new(2);
/// assert!(sem.try_acquire(2).is_ok());
/// assert!(sem.try_acquire(1).is_err());
///
/// // Owner 7 queues a wait with token 1; nothing is free, so it is queued.
/// assert_eq!(sem.acquire(1, 7, 1), Ok(Acquire::Queued));
/// // Releasing one permit hands it to owner 7 and says so.
/// assert_eq!(sem.release(1), Ok(vec![7]));
/// assert_eq!(sem.take_granted(7), vec![Grant { token: 1, permits: 1 }]);
/// assert_eq!(sem.available(), 0);
/// ```
///
/// # Memory ordering
///
/// A successful acquire (fast or slow path) synchronises with the release that
/// made its permits available, so whatever the releasing thread wrote before
/// `release` is visible to the acquiring thread after its acquire: the fast path
/// pairs an `Acquire` CAS with the `Release` CAS or store that published the
/// permits; the slow path goes through the queue lock on both sides.
pub struct Semaphore {
    /// `permits << 2 | CLOSED | QUEUED`; see the module docs for the invariants.
    state: CachePadded<AtomicUsize>,
    /// Permits in existence: free, held, or promised to waiters.
    capacity: AtomicUsize,
    queue: Mutex<Queue>,
    /// Number of queued waiters, mirrored from the queue for lock-free reads.
    waiting: AtomicUsize,
    /// Most waiters that may queue at once; more fail with `QueueFull`.
    max_waiters: usize,
    /// Permits owed (a value below zero, see [`Semaphore::with_owed`]): the next
    /// `owed` permits given back pay the debt instead of becoming free. Written
    /// under the lock; while non-zero, `QUEUED` is set (the fast paths closed)
    /// even if the queue is empty.
    owed: AtomicUsize,
    /// `Some` in eventual mode (see the module docs), `None` for FIFO.
    eventual: Option<Eventual>,
    /// Eventual mode: permits are parked on the fast path and an owner was
    /// nudged to serve them, which has not happened yet. Written under the
    /// lock; read without it by [`Semaphore::serve`] to skip the lock.
    nudged: AtomicBool,
}

struct Queue {
    waiters: WaitQueue<WaitKey>,
    /// Permits handed to the wait at the head of `waiters` that are not yet
    /// all it asked for (always fewer); 0 while the queue is empty. See the
    /// module docs.
    reserved_for_head: usize,
    /// Waits that ended (granted or refused) but were not yet collected by
    /// their owner. Entries stay once made (one per owner that ever waited),
    /// so their `Vec`s keep their capacity and a grant allocates nothing.
    decisions: FxHashMap<Owner, Decisions>,
    /// Eventual mode: the owner last nudged; meaningful while `nudged` is set.
    nudged_owner: Owner,
}

/// One owner's uncollected outcomes.
#[derive(Default)]
struct Decisions {
    grants: Vec<Grant>,
    refusals: Vec<Refusal>,
}

impl Decisions {
    fn has(&self, token: Token) -> bool {
        self.grants.iter().any(|g| g.token == token) || self.refusals.iter().any(|r| r.token == token)
    }
}

/// The outcome of [`Semaphore::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The permits were taken; the caller holds them now.
    Acquired,
    /// The request waits in the queue; its owner will be reported by a later
    /// `release`, `cancel` or `remove_owner`.
    Queued,
}

/// Permits handed to a queued wait, collected by [`Semaphore::take_granted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The token the wait was queued with.
    pub token: Token,
    /// How many permits it holds now.
    pub permits: usize,
}

/// A queued wait taken out of the queue because the capacity shrank below
/// what it asked for (see [`Semaphore::forget_held`]); it holds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The token the wait was queued with.
    pub token: Token,
    /// Permits it asked for.
    pub requested: usize,
    /// The capacity that refused it.
    pub capacity: usize,
}

/// How a queued wait ended, as handed out by [`Semaphore::drain_decisions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It was granted; its permits are the owner's from now on.
    Granted(Grant),
    /// It was refused: it could never have been granted.
    Refused(Refusal),
}

/// Why [`Semaphore::try_acquire`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryAcquireError {
    /// The semaphore was closed.
    Closed,
    /// Not enough permits are free, or waiters are queued ahead.
    NoPermits,
}

/// Why [`Semaphore::acquire`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// The semaphore was closed.
    Closed,
    /// More permits asked for than the semaphore has: the wait could never end.
    TooManyPermits {
        /// Permits asked for.
        requested: usize,
        /// The semaphore's capacity.
        capacity: usize,
    },
    /// The token is already queued or granted for that owner.
    DuplicateToken,
    /// `max_waiters` waits are queued already.
    QueueFull,
}

/// Releasing this many permits would leave more than the capacity: a double
/// release. [`Semaphore::release`] refuses it and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseError {
    /// Permits released.
    pub released: usize,
    /// The semaphore's capacity.
    pub capacity: usize,
}

/// [`Semaphore::with_state`] or [`Semaphore::adopt_waits`] was given a state
/// no semaphore can be in; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdoptError;

impl fmt::Display for AdoptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no semaphore can be in the state given to adopt")
    }
}

impl std::error::Error for AdoptError {}

/// [`Semaphore::add_permits`] would take the capacity past [`MAX_PERMITS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityOverflow;

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::Closed => f.write_str("semaphore closed"),
            TryAcquireError::NoPermits => f.write_str("no permits available"),
        }
    }
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Closed => f.write_str("semaphore closed"),
            AcquireError::TooManyPermits { requested, capacity } => {
                write!(f, "requested {requested} permits from a semaphore of {capacity}")
            }
            AcquireError::DuplicateToken => f.write_str("token is already waiting"),
            AcquireError::QueueFull => f.write_str("too many waiters"),
        }
    }
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "releasing {} permits would exceed the capacity of {}",
            self.released, self.capacity
        )
    }
}

impl fmt::Display for CapacityOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a semaphore holds at most {MAX_PERMITS} permits")
    }
}

impl std::error::Error for TryAcquireError {}
impl std::error::Error for AcquireError {}
impl std::error::Error for ReleaseError {}
impl std::error::Error for CapacityOverflow {}

impl Semaphore {
    /// Creates a semaphore with `permits` free permits, which is also its capacity.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`MAX_PERMITS`].
    pub fn new(permits: usize) -> Self {
        assert!(
            permits <= MAX_PERMITS,
            "a semaphore holds at most {MAX_PERMITS} permits"
        );
        Self {
            state: CachePadded(AtomicUsize::new(permits << PERMIT_SHIFT)),
            capacity: AtomicUsize::new(permits),
            queue: Mutex::new(Queue {
                waiters: WaitQueue::new(),
                reserved_for_head: 0,
                decisions: FxHashMap::default(),
                nudged_owner: 0,
            }),
            waiting: AtomicUsize::new(0),
            max_waiters: usize::MAX,
            owed: AtomicUsize::new(0),
            eventual: None,
            nudged: AtomicBool::new(false),
        }
    }

    /// This semaphore, eventually fair instead of FIFO (see the module docs):
    /// a release hands off to the head of the queue only once it has waited
    /// `fair_after` nanoseconds on `clock` ([`FAIR_AFTER_NANOS`] is the
    /// default the binding uses); before that, newcomers may take the
    /// permits. Waits already queued count as queued now.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sluice_core::{Acquire, FakeClock, Semaphore};
    ///
    /// let clock = Arc::new(FakeClock::new(0));
    /// let sem = Semaphore::new(1).with_eventual_fairness(clock.clone(), 100);
    /// assert!(sem.try_acquire(1).is_ok());
    /// assert_eq!(sem.acquire(1, 7, 1), Ok(Acquire::Queued));
    /// // The head is young: the permit is parked and owner 7 nudged...
    /// assert_eq!(sem.release(1), Ok(vec![7]));
    /// // ...and a newcomer may take it first.
    /// assert!(sem.try_acquire(1).is_ok());
    /// assert_eq!(sem.serve(), vec![]); // nothing left: 7 stays queued
    /// clock.advance(100);
    /// // The head is due: the next release hands off, as in FIFO mode.
    /// assert_eq!(sem.release(1), Ok(vec![7]));
    /// assert!(sem.try_acquire(1).is_err());
    /// assert_eq!(sem.take_granted(7).len(), 1);
    /// ```
    pub fn with_eventual_fairness(mut self, clock: Arc<dyn Clock>, fair_after: u64) -> Self {
        self.eventual = Some(Eventual {
            clock,
            fair_after,
            from_head: false,
        });
        self
    }

    /// Like [`with_eventual_fairness`](Self::with_eventual_fairness), but a
    /// wait's `fair_after` counts from the first release that finds it
    /// standing first, not from when it was queued
    /// ([`Fairness::EventualHead`], see the module docs): each head in turn
    /// may be passed over for `fair_after`, so a wait k-th in line may be
    /// passed over for about k times that in all. Fewer hand-offs to a
    /// sleeping thread, more throughput under contention.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sluice_core::{FakeClock, Semaphore};
    ///
    /// let clock = Arc::new(FakeClock::new(0));
    /// let sem = Semaphore::new(1).with_eventual_head_fairness(clock.clone(), 100);
    /// assert!(sem.try_acquire(1).is_ok());
    /// sem.acquire(1, 7, 1).unwrap();
    /// clock.advance(1_000); // queued long ago, but no release has seen it first
    /// assert_eq!(sem.release(1), Ok(vec![7])); // a nudge: the permit is parked
    /// assert!(sem.try_acquire(1).is_ok()); // and a newcomer barges
    /// clock.advance(100);
    /// assert_eq!(sem.release(1), Ok(vec![7])); // due now: handed off
    /// assert_eq!(sem.take_granted(7).len(), 1);
    /// ```
    pub fn with_eventual_head_fairness(mut self, clock: Arc<dyn Clock>, fair_after: u64) -> Self {
        self.eventual = Some(Eventual {
            clock,
            fair_after,
            from_head: true,
        });
        self
    }

    /// Whether this semaphore is FIFO or eventually fair, and how it counts the head's wait.
    pub fn fairness(&self) -> Fairness {
        match &self.eventual {
            None => Fairness::Fifo,
            Some(Eventual { from_head: false, .. }) => Fairness::Eventual,
            Some(Eventual { from_head: true, .. }) => Fairness::EventualHead,
        }
    }

    /// The `queued_at` a wait queued now records: the clock's time, 0 in
    /// FIFO mode, or `UNSEEN` when it counts from the head.
    fn queued_at(&self) -> u64 {
        match &self.eventual {
            None => 0,
            Some(Eventual { from_head: true, .. }) => UNSEEN,
            Some(eventual) => eventual.clock.now(),
        }
    }

    /// Eventual mode, called by a nudged owner (see the module docs): hands
    /// the permits still parked on the fast path to the queue, in order, as
    /// a release would. Returns the owners granted, the caller's included,
    /// whose grants it then collects with
    /// [`take_granted`](Self::take_granted). Cheap (one load) when no nudge
    /// is pending; does nothing in FIFO mode.
    pub fn serve(&self) -> Vec<Owner> {
        // Relaxed: the flag is set under the lock before the nudged owner is
        // rung, and the ring (the caller's wake-up) orders that store before
        // this load; a stale `false` only leaves the permits to the next
        // serve, release or poll.
        if !self.nudged.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut queue = self.lock();
        self.release_locked(0, &mut queue)
    }

    /// A semaphore of `capacity` permits, none free, that owes `owed` more:
    /// its value starts at `-owed` (async-mutex's negative initial value). The
    /// first `owed` permits released (or added, or given back by a cancelled
    /// wait) pay the debt, before any waiter is served; all `capacity` permits
    /// count as held until released.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice_core::{Acquire, Semaphore};
    ///
    /// let sem = Semaphore::with_owed(10, 2);
    /// assert_eq!(sem.acquire(1, 7, 1), Ok(Acquire::Queued));
    /// assert_eq!(sem.release(2), Ok(vec![])); // pays the debt
    /// assert_eq!(sem.owed(), 0);
    /// assert_eq!(sem.release(2), Ok(vec![7]));
    /// assert_eq!(sem.available(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// If `capacity` exceeds [`MAX_PERMITS`].
    pub fn with_owed(capacity: usize, owed: usize) -> Self {
        let semaphore = Self::new(capacity);
        let state = if owed > 0 { QUEUED } else { 0 };
        semaphore.state.store(state, Ordering::Relaxed);
        semaphore.owed.store(owed, Ordering::Relaxed);
        semaphore
    }

    /// A semaphore of `capacity` permits of which only `available` are free at
    /// first: the rest count as held. A channel counts its queued items this
    /// way (capacity = room, none available until something is sent).
    ///
    /// # Panics
    ///
    /// If `available > capacity` or `capacity` exceeds [`MAX_PERMITS`].
    pub fn with_available(capacity: usize, available: usize) -> Self {
        assert!(available <= capacity, "available must not exceed capacity");
        let semaphore = Self::new(capacity);
        semaphore.state.store(available << PERMIT_SHIFT, Ordering::Relaxed);
        semaphore
    }

    /// A semaphore in a state built elsewhere, for moving one that a single
    /// owner kept on its own (the binding keeps a semaphore in JavaScript
    /// until it is first shared) into shared memory: `capacity` permits, of
    /// which `available` are free, `owed` more owed (see
    /// [`with_owed`](Self::with_owed)), at most `max_waiters` waits queued.
    /// The rest count as held. Waits already queued elsewhere follow with
    /// [`adopt_waits`](Self::adopt_waits).
    ///
    /// # Errors
    ///
    /// [`AdoptError`] if the state is impossible: `capacity` beyond
    /// [`MAX_PERMITS`], `available` beyond `capacity`, or permits both free and
    /// owed.
    pub fn with_state(capacity: usize, max_waiters: usize, available: usize, owed: usize) -> Result<Self, AdoptError> {
        if capacity > MAX_PERMITS || available > capacity || (owed > 0 && available > 0) {
            return Err(AdoptError);
        }
        let semaphore = Self::with_max_waiters(capacity, max_waiters);
        let state = if owed > 0 { QUEUED } else { available << PERMIT_SHIFT };
        semaphore.state.store(state, Ordering::Relaxed);
        semaphore.owed.store(owed, Ordering::Relaxed);
        Ok(semaphore)
    }

    /// Queues `waits` (`(token, permits, priority)`, in the order they are to
    /// be served) for `owner`, with `reserved_for_head` permits already set
    /// aside for the first, as if each had been
    /// [`acquire_with_priority`](Self::acquire_with_priority)d in turn: the
    /// second half of moving a semaphore into shared memory (see
    /// [`with_state`](Self::with_state)). The reserved permits come out of
    /// those counted as held.
    ///
    /// # Errors
    ///
    /// [`AdoptError`], changing nothing, unless: nothing is queued yet, the
    /// semaphore is open, no permit is free (unless `waits` is empty, which
    /// queues nothing and needs `reserved_for_head` 0), the waits are in
    /// priority order, with distinct tokens, each
    /// for 1 to `capacity` permits, no more than `max_waiters`, the first for
    /// more than `reserved_for_head`, which are held permits, and none while
    /// permits are owed.
    pub fn adopt_waits(
        &self,
        owner: Owner,
        reserved_for_head: usize,
        waits: &[(Token, usize, i32)],
    ) -> Result<(), AdoptError> {
        if waits.is_empty() {
            // Nothing to queue: nothing can be set aside for a head either.
            return if reserved_for_head == 0 {
                Ok(())
            } else {
                Err(AdoptError)
            };
        }
        let mut queue = self.lock();
        let capacity = self.capacity();
        let current = self.state.load(Ordering::Relaxed);
        let valid = queue.waiters.is_empty()
            && queue.reserved_for_head == 0
            && current & CLOSED == 0
            && current >> PERMIT_SHIFT == 0
            && waits.len() <= self.max_waiters
            && (reserved_for_head == 0 || (self.owed() == 0 && waits[0].1 > reserved_for_head))
            && reserved_for_head <= capacity
            && waits.iter().all(|&(_, needed, _)| (1..=capacity).contains(&needed))
            && waits.windows(2).all(|pair| pair[0].2 >= pair[1].2)
            && !queue
                .decisions
                .get(&owner)
                .is_some_and(|d| waits.iter().any(|w| d.has(w.0)));
        if !valid {
            return Err(AdoptError);
        }
        let mut seen = std::collections::HashSet::with_capacity(waits.len());
        if !waits.iter().all(|w| seen.insert(w.0)) {
            return Err(AdoptError);
        }
        // Their age elsewhere is on another clock: they count from now (or,
        // counting from the head, from the first release that finds them
        // first), which can only delay their hand-off by one `fair_after`.
        let now = self.queued_at();
        for &(token, needed, priority) in waits {
            queue.waiters.insert(Waiter {
                key: (owner, token),
                needed,
                priority,
                queued_at: now,
            });
        }
        queue.reserved_for_head = reserved_for_head;
        self.waiting.store(queue.waiters.len(), Ordering::Relaxed);
        // Relaxed: nobody else can reach a semaphore being adopted, and the
        // lock publishes the queue to whoever takes it next.
        self.state.store(QUEUED, Ordering::Relaxed);
        Ok(())
    }

    /// Like [`new`](Self::new), but at most `max_waiters` waits may be queued
    /// at once; [`acquire`](Self::acquire) fails with
    /// [`AcquireError::QueueFull`] beyond that instead of queueing.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`MAX_PERMITS`].
    pub fn with_max_waiters(permits: usize, max_waiters: usize) -> Self {
        Self {
            max_waiters,
            ..Self::new(permits)
        }
    }

    /// Permits in existence: those it was created with, plus
    /// [`add_permits`](Self::add_permits), minus [`forget_permits`](Self::forget_permits).
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Whether [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// Permits free right now (zero while waiters are queued, but for the
    /// permits an eventually fair semaphore parked for newcomers).
    pub fn available(&self) -> usize {
        self.state.load(Ordering::Relaxed) >> PERMIT_SHIFT
    }

    /// The word the fast paths work on, for a caller that runs them itself on
    /// the same memory (the Node binding lets JavaScript CAS it, as a futex's
    /// user space does): `permits << PERMIT_SHIFT | CLOSED | QUEUED`. Such a
    /// caller may only do what [`try_acquire`](Self::try_acquire) and
    /// [`release`](Self::release) do without the lock, with the same
    /// conditions: take `n` permits with one CAS while the word is not
    /// closed, holds `n` or more, and (FIFO mode) `QUEUED` is clear; give
    /// back `n` permits with one CAS while `QUEUED` is clear and the count
    /// stays within the capacity ([`capacity_word`](Self::capacity_word)).
    /// Anything else goes through the methods.
    #[cfg(not(loom))]
    pub fn fast_path_word(&self) -> &AtomicUsize {
        &self.state
    }

    /// The word [`capacity`](Self::capacity) reads, for a caller that runs
    /// the fast paths itself (see [`fast_path_word`](Self::fast_path_word)):
    /// a give must keep the count within it, as `release` checks. Written
    /// only under the lock.
    #[cfg(not(loom))]
    pub fn capacity_word(&self) -> &AtomicUsize {
        &self.capacity
    }

    /// Permits still owed (see [`with_owed`](Self::with_owed)): the value is
    /// `available() + reserved_for_head() - owed()`.
    pub fn owed(&self) -> usize {
        self.owed.load(Ordering::Relaxed)
    }

    /// Waits queued right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Takes `n` permits if they are free and nobody is queued ahead.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::Closed`] once closed; [`TryAcquireError::NoPermits`]
    /// when fewer than `n` are free or waiters are queued.
    pub fn try_acquire(&self, n: usize) -> Result<(), TryAcquireError> {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & CLOSED != 0 {
                return Err(TryAcquireError::Closed);
            }
            // With QUEUED set the count is zero, or (eventual mode only)
            // parked permits that a newcomer may take: see the module docs.
            if current >> PERMIT_SHIFT < n || (current & QUEUED != 0 && self.eventual.is_none()) {
                return Err(TryAcquireError::NoPermits);
            }
            // Acquire: pairs with the Release CAS in `release` or the Release
            // store or add in `release_locked` that put these permits into `state`.
            match self.state.compare_exchange_weak(
                current,
                current - (n << PERMIT_SHIFT),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes as many free permits as there are, up to `max`, if nobody is
    /// queued; returns how many (possibly 0). For batches: one CAS instead of
    /// one per item.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::Closed`] once closed.
    pub fn try_acquire_up_to(&self, max: usize) -> Result<usize, TryAcquireError> {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & CLOSED != 0 {
                return Err(TryAcquireError::Closed);
            }
            let free = if current & QUEUED != 0 && self.eventual.is_none() {
                0
            } else {
                current >> PERMIT_SHIFT
            };
            let n = free.min(max);
            if n == 0 {
                return Ok(0);
            }
            // Acquire: as in `try_acquire`.
            match self.state.compare_exchange_weak(
                current,
                current - (n << PERMIT_SHIFT),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(n),
                Err(actual) => current = actual,
            }
        }
    }

    /// Permits reserved for the queue head, which waits for more: free
    /// permits that [`available`](Self::available) does not count (it is 0
    /// while anyone waits). Takes the lock only while someone waits.
    pub fn reserved_for_head(&self) -> usize {
        if self.state.load(Ordering::Relaxed) & QUEUED == 0 {
            return 0;
        }
        self.lock().reserved_for_head
    }

    /// Takes `n` permits now, or queues a wait for them under `(owner, token)`.
    ///
    /// A queued wait ends in one of four ways: a `release` grants it (its owner
    /// is then returned by that call and the grant is collected with
    /// [`take_granted`](Self::take_granted)), [`forget_held`](Self::forget_held)
    /// refuses it (collected with [`take_refused`](Self::take_refused)),
    /// [`cancel`](Self::cancel), or [`remove_owner`](Self::remove_owner).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Closed`] once closed; [`AcquireError::TooManyPermits`]
    /// if `n` exceeds the capacity; [`AcquireError::DuplicateToken`] if
    /// `(owner, token)` is already waiting or granted; [`AcquireError::QueueFull`]
    /// if it would have to wait behind `max_waiters` others.
    pub fn acquire(&self, n: usize, owner: Owner, token: Token) -> Result<Acquire, AcquireError> {
        self.acquire_with_priority(n, 0, owner, token)
    }

    /// [`acquire`](Self::acquire) in a priority class: the wait is queued
    /// after every waiter of `priority` or higher and before every lower one
    /// (`acquire` is priority 0). A request that would stand first in the
    /// queue takes the permits reserved for the head it overtakes, so it is
    /// granted at once when they suffice (the semantics of async-mutex 0.5).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_with_priority(
        &self,
        n: usize,
        priority: i32,
        owner: Owner,
        token: Token,
    ) -> Result<Acquire, AcquireError> {
        let capacity = self.capacity();
        if n > capacity {
            return Err(AcquireError::TooManyPermits { requested: n, capacity });
        }
        match self.try_acquire(n) {
            Ok(()) => return Ok(Acquire::Acquired),
            Err(TryAcquireError::Closed) => return Err(AcquireError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        let mut queue = self.lock();
        if queue.waiters.contains((owner, token)) || queue.decisions.get(&owner).is_some_and(|s| s.has(token)) {
            return Err(AcquireError::DuplicateToken);
        }
        if self.is_closed() {
            return Err(AcquireError::Closed);
        }
        // Again under the lock: a `forget_held` that shrank the capacity since
        // the check above has already refused the queued waits too heavy for
        // it, and would not see this one.
        let capacity = self.capacity();
        if n > capacity {
            return Err(AcquireError::TooManyPermits { requested: n, capacity });
        }
        // No room in an empty queue (max_waiters 0): refuse before the loop
        // below could close the fast path for a waiter we will not queue.
        if queue.waiters.is_empty() && self.max_waiters == 0 {
            return Err(AcquireError::QueueFull);
        }
        let mut current = self.state.load(Ordering::Relaxed);
        while current & QUEUED == 0 {
            // The queue is empty, so only fast-path calls race with us here.
            let free = current >> PERMIT_SHIFT;
            let (next, took) = if free >= n {
                (current - (n << PERMIT_SHIFT), n)
            } else {
                // Take what is there, reserved for this request (the head to
                // be), and close the fast path (CLOSED is known clear: it only
                // changes under our lock).
                (QUEUED, free)
            };
            // Acquire: pairs with the Release CAS of a fast-path `release`, or
            // the Release store or add in `release_locked`, that put these
            // permits into `state`.
            match self
                .state
                .compare_exchange_weak(current, next, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if took == n => return Ok(Acquire::Acquired),
                Ok(_) => {
                    queue.reserved_for_head = took;
                    break;
                }
                Err(actual) => current = actual,
            }
        }
        // Overtaking: a request of higher priority than the head's will stand
        // first, and the permits reserved for the head belong to whoever
        // stands first (QUEUED is set, so they are all the free permits). If
        // they cover it, it takes them and needs no wait, nor room in the
        // queue; otherwise it is queued at the front below and they are
        // reserved for it from then on.
        let overtakes = queue.waiters.front().is_some_and(|head| head.priority < priority);
        if overtakes && queue.reserved_for_head >= n {
            queue.reserved_for_head -= n;
            return Ok(Acquire::Acquired);
        }
        if overtakes && self.eventual.is_some() && self.take_from_parked(n - queue.reserved_for_head) {
            // Eventual mode: the reserve plus parked permits cover it. Queued,
            // it would stand first and be covered by permits parked for the
            // nudged owner, whom serving it waits on (see `release`).
            queue.reserved_for_head = 0;
            return Ok(Acquire::Acquired);
        }
        if !overtakes && self.eventual.is_some() && self.take_from_parked(n) {
            // Eventual mode: a release parked permits after this request's
            // fast-path try failed. Queued behind the nudged owner's waits,
            // it could be covered by them and then be granted only when that
            // owner serves, its own owner never rung: it takes them now, as
            // its try would have a moment later.
            return Ok(Acquire::Acquired);
        }
        if queue.waiters.len() >= self.max_waiters {
            return Err(AcquireError::QueueFull);
        }
        queue.waiters.insert(Waiter {
            key: (owner, token),
            needed: n,
            priority,
            queued_at: self.queued_at(),
        });
        self.waiting.store(queue.waiters.len(), Ordering::Relaxed);
        Ok(Acquire::Queued)
    }

    /// Gives back `n` permits and hands them to queued waiters, oldest first.
    /// Returns the owners whose waits became fully granted, without repeats.
    ///
    /// # Errors
    ///
    /// [`ReleaseError`] if the release would leave more free permits than the
    /// capacity (a double release); nothing changes then.
    #[inline]
    pub fn release(&self, n: usize) -> Result<Vec<Owner>, ReleaseError> {
        let mut current = self.state.load(Ordering::Relaxed);
        while current & QUEUED == 0 {
            if (current >> PERMIT_SHIFT) + n > self.capacity() {
                // A double release, or a capacity that shrank between the two
                // reads (`forget_permits` takes free permits, then lowers the
                // capacity, so `current` may predate both): decide under the
                // lock, where the forgets run and both values are stable. An
                // error here would lose a legitimate release's permits.
                break;
            }
            // Release: pairs with the Acquire CAS of whoever takes these permits.
            match self.state.compare_exchange_weak(
                current,
                current + (n << PERMIT_SHIFT),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Vec::new()),
                Err(actual) => current = actual,
            }
        }
        self.release_queued(n)
    }

    /// `release` when the fast path is closed (waiters queued, permits owed)
    /// or the count needs checking under the lock. Kept out of line so that
    /// the fast path above inlines into its callers: as one function it was
    /// always a call, with a six-register prologue, and its `Ok(Vec::new())`
    /// came back through memory, read before the stores had landed (perf put
    /// most of the uncontended try_acquire+release there; the criterion row
    /// went from ~15 ns to ~6 ns).
    #[inline(never)]
    fn release_queued(&self, n: usize) -> Result<Vec<Owner>, ReleaseError> {
        let mut queue = self.lock();
        let capacity = self.capacity();
        if self.available() + queue.reserved_for_head + n > capacity {
            return Err(ReleaseError { released: n, capacity });
        }
        if let Some(head_owner) = self.young_head(&mut queue) {
            // Eventual mode, the head not due yet. One nudge at a time: the
            // owner nudged serves whatever is parked when it runs. So park
            // only if every wait the parked permits would grant (with those
            // reserved for the head, as `release_locked` would hand them
            // out) is that owner's: a wait of anyone else would hang on the
            // nudged thread's next turn (blocked or busy, for any time; at
            // best the doorbell's 50 ms poll) instead of this release, its
            // FIFO turn. Otherwise hand off below, a FIFO schedule. With
            // QUEUED set, `available` counts only parked permits; a barger
            // may take some meanwhile, which only makes us hand off sooner.
            let pending = self.nudged.load(Ordering::Relaxed);
            let server = if pending { queue.nudged_owner } else { head_owner };
            let parked = self.available() + n + queue.reserved_for_head;
            if queue.waiters.all_granted_by(parked, |waiter| waiter.key.0 == server) {
                // Release: pairs with the Acquire CAS of the barger that
                // takes them, or of `release_locked` taking them back.
                self.state.fetch_add(n << PERMIT_SHIFT, Ordering::Release);
                if pending {
                    return Ok(Vec::new());
                }
                self.nudged.store(true, Ordering::Relaxed);
                queue.nudged_owner = head_owner;
                return Ok(vec![head_owner]);
            }
        }
        Ok(self.release_locked(n, &mut queue))
    }

    /// Eventual mode only: the owner of the head of the queue if it has
    /// waited less than `fair_after` and nothing is owed (a debt is paid
    /// first, never parked), so that a release may park its permits.
    /// Counting from the head, a head no release has seen yet starts its
    /// count now.
    fn young_head(&self, queue: &mut Queue) -> Option<Owner> {
        let eventual = self.eventual.as_ref()?;
        if self.owed.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = queue.waiters.front_mut()?;
        let now = eventual.clock.now();
        if head.queued_at == UNSEEN {
            head.queued_at = now;
        }
        let waited = now.saturating_sub(head.queued_at);
        (waited < eventual.fair_after).then_some(head.key.0)
    }

    /// Closes the semaphore: every queued wait is withdrawn (permits partly
    /// granted to it go back), and every later `acquire` or `try_acquire`
    /// fails with `Closed`. Permits already held can still be released, and
    /// waits already granted stay granted. Returns the owners whose waits were
    /// withdrawn, to be told. Closing twice does nothing more.
    pub fn close(&self) -> Vec<Owner> {
        let mut queue = self.lock();
        // Relaxed: CLOSED is only acted on under the lock (slow path) or as a
        // refusal (fast path), which publishes nothing.
        self.state.fetch_or(CLOSED, Ordering::Relaxed);
        let mut owners = Vec::new();
        while let Some(Waiter { key: (owner, _), .. }) = queue.waiters.pop_front() {
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        // The queue is empty: what was reserved for the head goes back to
        // the fast path.
        self.release_locked(0, &mut queue);
        owners
    }

    /// Adds `n` permits to the capacity and hands them out as a release would.
    /// Returns the owners to wake.
    ///
    /// # Errors
    ///
    /// [`CapacityOverflow`] if the capacity would exceed [`MAX_PERMITS`];
    /// nothing changes then.
    pub fn add_permits(&self, n: usize) -> Result<Vec<Owner>, CapacityOverflow> {
        let mut queue = self.lock();
        let capacity = self.capacity();
        if capacity.checked_add(n).is_none_or(|total| total > MAX_PERMITS) {
            return Err(CapacityOverflow);
        }
        self.capacity.store(capacity + n, Ordering::Relaxed);
        Ok(self.release_locked(n, &mut queue))
    }

    /// The caller gives up `n` permits it holds, for good: the capacity
    /// shrinks by `n` instead of the permits coming back (tokio's
    /// `SemaphorePermit::forget`).
    ///
    /// Queued waits that ask for more than the new capacity could never be
    /// granted: they are refused (taken out of the queue; what they were
    /// partly granted goes on to the next waiter). Returns the owners to wake:
    /// those refused, to collect their refusals, and those granted meanwhile.
    ///
    /// # Errors
    ///
    /// [`ReleaseError`] if `n` permits cannot be held (free permits plus `n`
    /// would exceed the capacity); nothing changes then.
    pub fn forget_held(&self, n: usize) -> Result<Vec<Owner>, ReleaseError> {
        // Under the lock: orders with add_permits and the slow path's capacity
        // check, so no wait too heavy for the new capacity queues after the scan.
        let mut queue = self.lock();
        let capacity = self.capacity();
        // The caller must hold `n`: free (available + reserved) plus held never
        // exceeds the capacity.
        if self.available() + queue.reserved_for_head + n > capacity {
            return Err(ReleaseError { released: n, capacity });
        }
        let capacity = capacity - n;
        self.capacity.store(capacity, Ordering::Relaxed);
        let mut woken = Vec::new();
        for Waiter {
            key: (owner, token),
            needed,
            ..
        } in queue.waiters.remove_heavier_than(capacity)
        {
            queue.decisions.entry(owner).or_default().refusals.push(Refusal {
                token,
                requested: needed,
                capacity,
            });
            if !woken.contains(&owner) {
                woken.push(owner);
            }
        }
        if !woken.is_empty() {
            // If the head was refused, what was reserved for it goes on to the
            // next head. Also clears QUEUED if the queue emptied.
            for owner in self.release_locked(0, &mut queue) {
                if !woken.contains(&owner) {
                    woken.push(owner);
                }
            }
        }
        Ok(woken)
    }

    /// Removes up to `n` free permits from the semaphore for good, shrinking
    /// its capacity; returns how many it removed. Permits promised to queued
    /// waiters are not free, so nothing is removed while anyone waits.
    pub fn forget_permits(&self, n: usize) -> usize {
        // Under the lock, so no waiter can queue (against the old capacity)
        // between taking the permits and shrinking the capacity: with QUEUED
        // clear below, the queue is empty and stays so until we are done.
        let _queue = self.lock();
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let free = if current & QUEUED != 0 {
                0
            } else {
                current >> PERMIT_SHIFT
            };
            let taken = n.min(free);
            if taken == 0 {
                return 0;
            }
            // Acquire: these permits are taken, as by `try_acquire`: pairs
            // with the Release CAS or store that put them into `state`.
            match self.state.compare_exchange_weak(
                current,
                current - (taken << PERMIT_SHIFT),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // After the permits left `state`. A fast-path release that
                    // read `state` before the CAS and `capacity` after this
                    // store sees a count the capacity no longer allows: it
                    // does not fail on that, it rechecks under the lock (see
                    // `release`).
                    self.capacity.fetch_sub(taken, Ordering::Relaxed);
                    return taken;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Collects the waits of `owner` that were granted since the last call.
    pub fn take_granted(&self, owner: Owner) -> Vec<Grant> {
        let mut grants = Vec::new();
        self.drain_granted(owner, |grant| grants.push(grant));
        grants
    }

    /// Like [`take_granted`](Self::take_granted), but hands each grant to
    /// `collect` instead of allocating a `Vec` (the binding's hot path).
    /// Refusals stay for [`drain_decisions`](Self::drain_decisions) or
    /// [`take_refused`](Self::take_refused): an owner that never has a wait
    /// refused (one that never forgets permits) need not look for them.
    /// `collect` runs under the semaphore's lock: it must not call back into it.
    pub fn drain_granted(&self, owner: Owner, collect: impl FnMut(Grant)) {
        if let Some(decisions) = self.lock().decisions.get_mut(&owner) {
            decisions.grants.drain(..).for_each(collect);
        }
    }

    /// Collects the waits of `owner` that were refused since the last call
    /// (see [`forget_held`](Self::forget_held)).
    pub fn take_refused(&self, owner: Owner) -> Vec<Refusal> {
        self.lock()
            .decisions
            .get_mut(&owner)
            .map_or_else(Vec::new, |decisions| decisions.refusals.drain(..).collect())
    }

    /// Hands every uncollected outcome of `owner`'s waits to `collect`, grants
    /// first, under one lock. `collect` runs under the semaphore's lock: it
    /// must not call back into it.
    pub fn drain_decisions(&self, owner: Owner, mut collect: impl FnMut(Decision)) {
        if let Some(decisions) = self.lock().decisions.get_mut(&owner) {
            decisions.grants.drain(..).for_each(|g| collect(Decision::Granted(g)));
            decisions.refusals.drain(..).for_each(|r| collect(Decision::Refused(r)));
        }
    }

    /// Withdraws the wait `(owner, token)`. Permits it was partly or fully
    /// granted go back to the semaphore (and on to other waiters); an
    /// uncollected refusal is forgotten. Returns the owners to wake as a
    /// result, or `None` if there was no such wait (it was already collected,
    /// or never queued).
    pub fn cancel(&self, owner: Owner, token: Token) -> Option<Vec<Owner>> {
        let mut queue = self.lock();
        // A queued wait gives back nothing itself: if it was the head, what was
        // reserved for it goes on to the next head in `release_locked`.
        let returned = if queue.waiters.remove((owner, token)).is_some() {
            0
        } else {
            let decisions = queue.decisions.get_mut(&owner)?;
            if let Some(at) = decisions.grants.iter().position(|g| g.token == token) {
                decisions.grants.swap_remove(at).permits
            } else {
                let at = decisions.refusals.iter().position(|r| r.token == token)?;
                decisions.refusals.swap_remove(at);
                return Some(Vec::new());
            }
        };
        Some(self.release_locked(returned, &mut queue))
    }

    /// Withdraws every wait of `owner` and returns what it was granted but had
    /// not collected, as when the thread behind `owner` has gone away. Permits
    /// the owner had collected are the caller's to `release`. Returns the owners
    /// to wake.
    pub fn remove_owner(&self, owner: Owner) -> Vec<Owner> {
        let mut queue = self.lock();
        // Its queued waits give back nothing themselves: see `cancel`.
        queue.waiters.remove_where(|waiter| waiter.key.0 == owner);
        let granted: usize = queue
            .decisions
            .remove(&owner)
            .unwrap_or_default()
            .grants
            .iter()
            .map(|g| g.permits)
            .sum();
        self.release_locked(granted, &mut queue)
    }

    /// Pays the debt from `n` returned permits, then hands them, with those
    /// reserved for the head, to the queue in order, and publishes the rest on
    /// the fast path. The head may have changed since the permits were
    /// reserved (removed, overtaken), so this runs even with `n == 0` after a
    /// removal: it grants a new head that the reserve covers, and clears
    /// `QUEUED` when the queue has emptied.
    fn release_locked(&self, mut n: usize, queue: &mut Queue) -> Vec<Owner> {
        if self.eventual.is_some() {
            n += self.take_parked();
        }
        let owed = self.owed.load(Ordering::Relaxed);
        if owed > 0 {
            // The debt is paid first; those permits stay out (held by nobody).
            let paid = n.min(owed);
            self.owed.store(owed - paid, Ordering::Relaxed);
            n -= paid;
        }
        // Nothing is reserved while a debt remains: permits reach the queue
        // only after the debt is paid, and it never grows.
        debug_assert!(owed == 0 || queue.reserved_for_head == 0);
        n += std::mem::take(&mut queue.reserved_for_head);
        let mut woken = Vec::new();
        while let Some(head) = queue.waiters.front() {
            if n < head.needed {
                queue.reserved_for_head = n;
                n = 0;
                break;
            }
            n -= head.needed;
            let Waiter {
                key: (owner, token),
                needed,
                ..
            } = queue.waiters.pop_front().expect("head exists");
            queue
                .decisions
                .entry(owner)
                .or_default()
                .grants
                .push(Grant { token, permits: needed });
            if !woken.contains(&owner) {
                woken.push(owner);
            }
        }
        self.waiting.store(queue.waiters.len(), Ordering::Relaxed);
        // While a debt remains, n is 0 and QUEUED stays set.
        if queue.waiters.is_empty() && self.owed.load(Ordering::Relaxed) == 0 {
            let current = self.state.load(Ordering::Relaxed);
            if current & QUEUED != 0 {
                // While QUEUED is set nobody but a lock holder writes `state`, and
                // its permit count is zero, so a plain store is exact (CLOSED is
                // kept). Release: pairs with the Acquire CAS of the fast path
                // that takes these.
                self.state
                    .store(n << PERMIT_SHIFT | (current & CLOSED), Ordering::Release);
            } else if n > 0 {
                // The queue was already empty: the fast path is open and may
                // race. Release: as the store above.
                self.state.fetch_add(n << PERMIT_SHIFT, Ordering::Release);
            }
        } else {
            debug_assert_eq!(n, 0, "permits left over while waiters are queued");
        }
        woken
    }

    /// Eventual mode, under the lock: takes back the permits parked on the
    /// fast path (none unless `QUEUED` is set) and clears `nudged`, since
    /// nothing is left to serve. Afterwards the count stays zero until the
    /// caller stores it: while `QUEUED` is set only lock holders add to it.
    fn take_parked(&self) -> usize {
        self.nudged.store(false, Ordering::Relaxed);
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let parked = current >> PERMIT_SHIFT;
            if current & QUEUED == 0 || parked == 0 {
                return 0;
            }
            // Acquire: pairs with the Release add in `release` that parked them.
            match self.state.compare_exchange_weak(
                current,
                current & (QUEUED | CLOSED),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return parked,
                Err(actual) => current = actual,
            }
        }
    }

    /// Eventual mode, under the lock: takes `n` parked permits for a request
    /// that would otherwise queue (as a barger's fast path may), if that
    /// many are parked. Leaves `nudged` as it is: the rest stay parked for
    /// the owner nudged, and fewer permits can only grant fewer of its waits.
    fn take_from_parked(&self, n: usize) -> bool {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            // With QUEUED set (the queue holds the head overtaken), the count
            // is parked permits only.
            if current & QUEUED == 0 || current >> PERMIT_SHIFT < n {
                return false;
            }
            // Acquire: pairs with the Release add in `release` that parked them.
            match self.state.compare_exchange_weak(
                current,
                current - (n << PERMIT_SHIFT),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, Queue> {
        // A panic while the lock was held cannot leave the queue half-updated in
        // a way that matters more than losing the process, and the binding must
        // never panic into Node: so recover the guard instead of propagating.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .field("available", &self.available())
            .field("waiting", &self.waiting())
            .field("owed", &self.owed())
            .field("fairness", &self.fairness())
            .finish()
    }
}
