//! [`SharedSemaphore`]: the named semaphore, one for every process of the
//! machine that opens the same name (design `docs/design/cross-process.md`
//! §3.1, §3.3, §4.2–§4.4).
//!
//! The algorithm is `sluice_core::Semaphore`'s (FIFO hand-off, priorities,
//! weights, permits reserved for the head, refusals when the capacity
//! shrinks), run under the segment's robust mutex on fixed records in the
//! segment (`engine.rs`), with crash recovery rebuilt from facts
//! (`rebuild.rs`). There is no lock-free fast path (§4.2): every change takes
//! the lock, so a process killed at any instruction leaves a state that the
//! next locker can recover exactly.
//!
//! Owners are the segment's owner slots (one per thread and name, from
//! [`attach`](SharedSemaphore::attach)); the caller passes its owner to every
//! call. Waits are named by `(owner, token)`. A grant or refusal for another
//! owner is recorded in the segment and that owner's bell is rung after the
//! unlock; it collects with [`take_decided`](SharedSemaphore::take_decided).
//! The calling owner's own grants made by its `release` are collected at once
//! and returned.
//!
//! With [`Fairness::Eventual`] a release may leave its permits free and
//! ring the queue head's owner instead of handing off (`engine.rs`); with
//! [`Fairness::EventualHead`] the head's patience counts from the first
//! release that finds it standing first, not from when it was queued.
//!
//! Each process keeps `(owner, token) → entry` for its own owners' waits and
//! checks the entry before trusting it, so nothing shared is hashed.

mod engine;
#[cfg(all(feature = "kill-points", unix))]
pub(crate) mod kill_points;
mod locked;
mod params;
mod rebuild;
mod records;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use locked::Backing;
use params::Params;
use records::{Engine, O_HELD, S_CAPACITY, S_FREE, S_RESERVED, S_WAITING};
pub use records::{FAIR_AFTER_NS, MAX_PERMITS};

use crate::{BellFd, Error, Layout, Region, Segment};

/// Calls `kill_points::at(name)` in builds with the `kill-points` feature:
/// the test-only hook that kills the process at a commit point.
macro_rules! kill_point {
    ($name:literal) => {
        #[cfg(all(feature = "kill-points", unix))]
        $crate::semaphore::kill_points::at($name);
    };
}
pub(crate) use kill_point;

/// The most waits a semaphore may queue (the design's bound; each is 72 B).
pub const MAX_WAITERS: u32 = 65_536;

/// Who gets permits that a release finds waits for: the core's modes, here a
/// segment parameter, the same in every opener (the header stores 0 for
/// FIFO, 1 for eventual, 2 for eventual counted from the head). In eventual
/// mode a release leaves its permits free for the fast path and rings the
/// head's owner, unless the head has waited [`FAIR_AFTER_NS`]: then it
/// hands off, and bargers are refused until the head is served. Counted
/// from the head ([`Fairness::EventualHead`]), that wait starts at the
/// first release that finds the head standing first.
pub use sluice_core::Fairness;

/// Reads CLOCK_MONOTONIC, one clock for every process of the machine.
fn monotonic_ns() -> u64 {
    crate::liveness::clock_ns(libc::CLOCK_MONOTONIC)
}

/// No test clock set: `now` reads CLOCK_MONOTONIC.
const REAL_CLOCK: u64 = u64::MAX;

/// The outcome of [`SharedSemaphore::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The permits were taken: the owner holds them now.
    Granted,
    /// The wait is queued; a later grant or refusal rings the owner's bell.
    Queued,
    /// `max_waiters` waits (or uncollected decisions) fill the table.
    QueueFull,
    /// More permits asked for than the capacity: the wait could never end.
    TooHeavy,
}

/// A counting semaphore shared by every process that opens its name.
///
/// # Examples
///
/// ```
/// use sluice_shm::semaphore::{Acquire, SharedSemaphore};
///
/// // The same engine in process memory (a segment needs Linux).
/// let sem = SharedSemaphore::in_process(2, 16, 4);
/// let (a, _) = sem.attach().unwrap();
/// let (b, _) = sem.attach().unwrap();
/// assert!(sem.try_acquire(a, 2).unwrap());
/// assert_eq!(sem.acquire(b, 1, 7, 0).unwrap(), Acquire::Queued);
/// assert_eq!(sem.release(a, 1).unwrap(), Vec::<u64>::new()); // b is rung
/// assert_eq!(sem.take_decided(b).unwrap(), vec![7]);
/// assert_eq!(sem.held(b), 1);
/// ```
///
/// # Memory ordering
///
/// Every change happens under the segment's robust mutex, whose lock and
/// unlock are an acquire and a release across processes: whatever a process
/// wrote to memory it shares with the others before `release` is visible to
/// the owner that collects the grant (`take_decided`) or is handed it by its
/// own `release`. The lock-free getters (`available`, `waiting`, `capacity`,
/// `closed`, `held`) are `Relaxed` snapshots that publish nothing.
pub struct SharedSemaphore {
    backing: Backing,
    /// This process's owners' waits: `(owner, token) → entry`, checked
    /// against the entry before use. Locked only under the segment lock.
    waits: Mutex<HashMap<(u32, u64), u32>>,
    /// Set when an operation found damage: every later call refuses at once.
    poisoned: AtomicBool,
    /// `(max_owners, max_waiters)` as opened: the state block must agree.
    bounds: (u32, u32),
    /// As opened: in FIFO mode no clock is read.
    fairness: Fairness,
    /// A test's clock in ns ([`set_clock`](Self::set_clock)), or `REAL_CLOCK`.
    clock: AtomicU64,
}

impl std::fmt::Debug for SharedSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSemaphore")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .field("waiting", &self.waiting())
            .field("closed", &self.closed())
            .finish()
    }
}

/// One `SharedSemaphore` per segment per process, so that every thread shares
/// one wait map.
static OPEN: Mutex<Vec<Weak<SharedSemaphore>>> = Mutex::new(Vec::new());

/// A caller's misuse that changed nothing.
fn invalid(why: String) -> Error {
    Error::Invalid(why)
}

impl SharedSemaphore {
    /// Opens (or creates) the semaphore `name` in `dir` (default
    /// `$SLUICE_SHM_DIR`, else `/dev/shm/sluice-<euid>`) with `permits`
    /// permits and room for `max_waiters` queued waits. Every process and
    /// thread that opens the name gets the same semaphore.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for `permits` outside `1..=MAX_PERMITS` or
    /// `max_waiters` outside `1..=MAX_WAITERS`; [`Error::Mismatch`] if the
    /// segment exists with other parameters; the segment's errors otherwise
    /// (`Damaged`, `Permission`, `ProcessLimit`, `Unsupported`…).
    pub fn open(dir: Option<&Path>, name: &str, permits: u64, max_waiters: u32) -> Result<Arc<Self>, Error> {
        Self::open_with(dir, name, permits, max_waiters, Fairness::Fifo)
    }

    /// [`open`](Self::open) with a [`Fairness`], a parameter like `permits`:
    /// an opener giving another value gets [`Error::Mismatch`] (`fairness`,
    /// 0 FIFO, 1 eventual, 2 eventual counted from the head).
    ///
    /// # Errors
    ///
    /// Those of [`open`](Self::open).
    pub fn open_with(
        dir: Option<&Path>,
        name: &str,
        permits: u64,
        max_waiters: u32,
        fairness: Fairness,
    ) -> Result<Arc<Self>, Error> {
        if !(1..=MAX_PERMITS).contains(&permits) {
            return Err(invalid(format!("permits must be 1 to {MAX_PERMITS}, got {permits}")));
        }
        if !(1..=MAX_WAITERS).contains(&max_waiters) {
            return Err(invalid(format!(
                "max_waiters must be 1 to {MAX_WAITERS}, got {max_waiters}"
            )));
        }
        let params = Params {
            permits,
            max_waiters,
            fairness,
        };
        let segment = Segment::open(dir, name, &params)?;
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|w| w.strong_count() > 0);
        let found = open.iter().filter_map(Weak::upgrade).find(|s| match &s.backing {
            Backing::Segment(seg) => Arc::ptr_eq(seg, &segment),
            Backing::Heap { .. } => false,
        });
        if let Some(found) = found {
            return Ok(found);
        }
        let owners = params.max_owners();
        let sem = Arc::new(Self::with(Backing::Segment(segment), (owners, max_waiters), fairness));
        open.push(Arc::downgrade(&sem));
        drop(open);
        let _ = sem.sweep();
        Ok(sem)
    }

    /// Closes the semaphore `name` for every process that has it open (their
    /// waits are withdrawn) and frees the name; `Ok(false)` if there is none.
    ///
    /// # Errors
    ///
    /// The segment's errors.
    pub fn unlink(dir: Option<&Path>, name: &str) -> Result<bool, Error> {
        Segment::unlink::<Params>(dir, name)
    }

    /// The same semaphore in process memory, with `max_owners` owners: no
    /// segment, no bells (whom it would ring is kept for
    /// [`take_rung`](Self::take_rung)). For tests and differential checks.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`MAX_PERMITS`] or a bound is 0 or above 65,536.
    #[doc(hidden)]
    pub fn in_process(permits: u64, max_waiters: u32, max_owners: u32) -> Self {
        Self::in_process_with(permits, max_waiters, max_owners, Fairness::Fifo)
    }

    /// [`in_process`](Self::in_process) with a [`Fairness`].
    ///
    /// # Panics
    ///
    /// As [`in_process`](Self::in_process).
    #[doc(hidden)]
    pub fn in_process_with(permits: u64, max_waiters: u32, max_owners: u32, fairness: Fairness) -> Self {
        assert!(permits <= MAX_PERMITS && (1..=MAX_WAITERS).contains(&max_waiters));
        assert!((1..=65_536).contains(&max_owners));
        let words = records::region_size(max_owners, max_waiters) / 8;
        let words: Box<[AtomicU64]> = (0..words).map(|_| AtomicU64::new(0)).collect();
        Engine::init(Region::from_words(&words), max_owners, max_waiters, permits, fairness).expect("the region fits");
        let bounds = (max_owners, max_waiters);
        Self::with(
            Backing::Heap {
                words,
                lock: Mutex::new(()),
                rung: Mutex::new(Vec::new()),
                next_owner: AtomicU32::new(0),
            },
            bounds,
            fairness,
        )
    }

    fn with(backing: Backing, bounds: (u32, u32), fairness: Fairness) -> Self {
        Self {
            backing,
            bounds,
            fairness,
            clock: AtomicU64::new(REAL_CLOCK),
            waits: Mutex::new(HashMap::new()),
            poisoned: AtomicBool::new(false),
        }
    }

    /// The fairness this semaphore was opened with.
    pub fn fairness(&self) -> Fairness {
        self.fairness
    }

    /// Makes this object's calls see the clock at `ns` (CLOCK_MONOTONIC
    /// nanoseconds) instead of reading it, so that a test decides when the
    /// queue head is due. For tests.
    #[doc(hidden)]
    pub fn set_clock(&self, ns: u64) {
        self.clock.store(ns.min(REAL_CLOCK - 1), Relaxed);
    }

    /// The time eventual mode compares `queued_at` with; 0 in FIFO mode,
    /// which never looks.
    fn now(&self) -> u64 {
        if self.fairness == Fairness::Fifo {
            return 0;
        }
        match self.clock.load(Relaxed) {
            REAL_CLOCK => monotonic_ns(),
            t => t,
        }
    }

    /// Owner slots: every owner index is below this.
    pub fn max_owners(&self) -> u32 {
        self.bounds.0
    }

    /// The segment, if this semaphore lives in one.
    pub fn segment(&self) -> Option<&Arc<Segment>> {
        match &self.backing {
            Backing::Segment(s) => Some(s),
            Backing::Heap { .. } => None,
        }
    }

    /// Owners an in-process semaphore would have rung since the last call.
    #[doc(hidden)]
    pub fn take_rung(&self) -> Vec<u32> {
        match &self.backing {
            Backing::Heap { rung, .. } => std::mem::take(&mut *rung.lock().unwrap_or_else(|p| p.into_inner())),
            Backing::Segment(_) => Vec::new(),
        }
    }

    /// Attaches the calling thread: its owner slot and its bell's read fd
    /// (for JavaScript to watch and close; -1 in process memory).
    ///
    /// # Errors
    ///
    /// [`Error::OwnerLimit`] when every owner slot is taken; the segment's errors.
    pub fn attach(&self) -> Result<(u32, BellFd), Error> {
        match &self.backing {
            Backing::Segment(s) => s.attach_owner(),
            Backing::Heap { next_owner, .. } => {
                let owner = next_owner.fetch_add(1, Relaxed);
                self.check_owner(owner)?;
                Ok((owner, -1))
            }
        }
    }

    /// Detaches `owner`: its waits are withdrawn, its uncollected grants and
    /// what it holds are given back (and handed on), and its slot is freed.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`], [`Error::LockStuck`].
    pub fn detach(&self, owner: u32) -> Result<(), Error> {
        self.check_owner(owner)?;
        let now = self.now();
        self.locked_then(
            |e, waits, woken| {
                waits.forget_owner(owner);
                e.detach(owner, now, woken)
            },
            |segment, guard| segment.detach_owner(guard, owner),
        )
    }

    /// Takes `n` permits for `owner` if they are free and nobody waits.
    /// `Ok(false)` otherwise (also when `n` exceeds the capacity).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closed; [`Error::Damaged`], [`Error::LockStuck`].
    pub fn try_acquire(&self, owner: u32, n: u64) -> Result<bool, Error> {
        self.check_owner(owner)?;
        let now = self.now();
        match self.locked(|e, _, woken| e.try_acquire(owner, n, now, woken))? {
            engine::TryAcquire::Acquired => Ok(true),
            engine::TryAcquire::Closed => Err(Error::Closed),
            engine::TryAcquire::NotNow | engine::TryAcquire::TooHeavy => {
                self.sweep_if_due();
                Ok(false)
            }
        }
    }

    /// Takes `n` permits now, or queues the wait `(owner, token)` at
    /// `priority` (higher first, FIFO within a priority).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closed; [`Error::Invalid`] for token 0, a token
    /// of 2^63 or more (decisions carry it as a signed number), or one
    /// already waiting; [`Error::Damaged`], [`Error::LockStuck`].
    pub fn acquire(&self, owner: u32, n: u64, token: u64, priority: i32) -> Result<Acquire, Error> {
        self.check_owner(owner)?;
        if token == 0 || token > i64::MAX as u64 {
            return Err(invalid(format!("token must be 1 to 2^63 - 1, got {token}")));
        }
        let now = self.now();
        let outcome = self.locked(|e, waits, woken| {
            if waits.find(e, owner, token)?.is_some() {
                return Err(invalid(format!("token {token} of owner {owner} is already waiting")));
            }
            let outcome = e.acquire(owner, n, token, priority, now, woken)?;
            if let engine::Acquire::Queued(i) = outcome {
                waits.insert(owner, token, i);
            }
            Ok(outcome)
        })?;
        Ok(match outcome {
            engine::Acquire::Granted => Acquire::Granted,
            engine::Acquire::Queued(_) => {
                self.sweep_if_due();
                Acquire::Queued
            }
            engine::Acquire::QueueFull => Acquire::QueueFull,
            engine::Acquire::TooHeavy => Acquire::TooHeavy,
            engine::Acquire::Closed => return Err(Error::Closed),
        })
    }

    /// Withdraws the wait `(owner, token)`, as the core's `cancel` does:
    /// queued, it leaves the queue (what was reserved for it goes on);
    /// granted but not yet collected, its permits are given back and handed
    /// on; refused, the refusal is forgotten. `false` if there is no such
    /// wait (already collected, withdrawn by `close`, or never queued).
    /// Owners served meanwhile are rung, this one too.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`], [`Error::LockStuck`].
    pub fn cancel(&self, owner: u32, token: u64) -> Result<bool, Error> {
        self.check_owner(owner)?;
        self.locked(|e, waits, woken| {
            let Some(i) = waits.find(e, owner, token)? else {
                return Ok(false);
            };
            e.cancel(i, woken)?;
            waits.forget(owner, token);
            Ok(true)
        })
    }

    /// `owner` gives back `n` permits; they go to the waiters in order (in
    /// eventual mode, while the head is not due, they stay free and the
    /// head's owner is rung instead: a nudge, collected by `take_decided`). Other
    /// owners granted are rung after the unlock; `owner`'s own waits granted
    /// by this release are collected (they count as held) and their tokens
    /// returned.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `owner` holds fewer than `n` (nothing changes);
    /// [`Error::Damaged`], [`Error::LockStuck`].
    pub fn release(&self, owner: u32, n: u64) -> Result<Vec<u64>, Error> {
        self.check_owner(owner)?;
        let now = self.now();
        self.locked(|e, waits, woken| {
            if let Err(held) = e.release(owner, n, now, woken)? {
                return Err(invalid(format!(
                    "cannot release {n} permits: owner {owner} holds {held}"
                )));
            }
            if !woken.contains(&owner) {
                return Ok(Vec::new());
            }
            woken.retain(|&o| o != owner);
            let own = e.take_decided(owner, true, woken)?;
            woken.retain(|&o| o != owner);
            own.iter().for_each(|&t| waits.forget(owner, t.unsigned_abs()));
            Ok(own.into_iter().map(i64::unsigned_abs).collect())
        })
    }

    /// Collects `owner`'s decided waits: `+token` for each grant (its permits
    /// are held from now on), oldest first, then `-token` for each refusal
    /// (the capacity shrank below what it asked for). In eventual mode it
    /// first serves the queue from the permits a nudge left free, in order
    /// (other owners served are rung), so a nudged head collects its grant.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`], [`Error::LockStuck`].
    pub fn take_decided(&self, owner: u32) -> Result<Vec<i64>, Error> {
        self.check_owner(owner)?;
        self.locked(|e, waits, woken| {
            let decided = e.take_decided(owner, false, woken)?;
            woken.retain(|&o| o != owner);
            decided.iter().for_each(|&t| waits.forget(owner, t.unsigned_abs()));
            Ok(decided)
        })
    }

    /// Adds `n` permits to the capacity and hands them out.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] past [`MAX_PERMITS`] (nothing changes);
    /// [`Error::Damaged`], [`Error::LockStuck`].
    pub fn add_permits(&self, n: u64) -> Result<(), Error> {
        if self.locked(|e, _, woken| e.add_permits(n, woken))? {
            Ok(())
        } else {
            Err(invalid(format!("a semaphore holds at most {MAX_PERMITS} permits")))
        }
    }

    /// Removes up to `n` free permits for good; returns how many (none while
    /// anyone waits).
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`], [`Error::LockStuck`].
    pub fn forget_permits(&self, n: u64) -> Result<u64, Error> {
        self.locked(|e, _, _| e.forget_permits(n))
    }

    /// `owner` gives up `n` permits it holds, for good: the capacity shrinks.
    /// Queued waits asking for more than the new capacity are refused, and
    /// their owners rung (`owner` too, if one is its own).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `owner` holds fewer than `n`; [`Error::Damaged`],
    /// [`Error::LockStuck`].
    pub fn forget_held(&self, owner: u32, n: u64) -> Result<(), Error> {
        self.check_owner(owner)?;
        self.locked(|e, _, woken| match e.forget_held(owner, n, woken)? {
            Ok(()) => Ok(()),
            Err(held) => Err(invalid(format!(
                "cannot forget {n} permits: owner {owner} holds {held}"
            ))),
        })
    }

    /// Closes the semaphore for every process: every queued wait is withdrawn
    /// and its owner rung; later acquires fail with [`Error::Closed`]. Held
    /// permits can still be released. Closing twice does nothing more.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`], [`Error::LockStuck`].
    pub fn close(&self) -> Result<(), Error> {
        self.locked(|e, _, woken| e.close(woken))
    }

    /// Reaps processes that died (throttled machine-wide to once per 50 ms):
    /// what they held goes back, their waits are withdrawn, grantees are
    /// rung. Returns how many processes were reaped.
    ///
    /// # Errors
    ///
    /// The segment's errors.
    pub fn sweep(&self) -> Result<usize, Error> {
        match &self.backing {
            Backing::Segment(s) => s.sweep(),
            Backing::Heap { .. } => Ok(0),
        }
    }

    fn sweep_if_due(&self) {
        // Best effort: a failure shows up in the next operation.
        let _ = self.sweep();
    }

    fn snapshot(&self, off: usize) -> u64 {
        self.engine().and_then(|e| e.get(off)).unwrap_or(0)
    }

    /// Free permits (0 while anyone waits, except in eventual mode between a
    /// nudge and its collection), a lock-free snapshot. Sweeps
    /// first if due, so that a dead process's permits show up.
    pub fn available(&self) -> u64 {
        self.sweep_if_due();
        self.snapshot(S_FREE)
    }

    /// Permits reserved for the queue head, which waits for more.
    pub fn reserved_for_head(&self) -> u64 {
        self.snapshot(S_RESERVED)
    }

    /// Waits queued, a lock-free snapshot.
    pub fn waiting(&self) -> u64 {
        self.snapshot(S_WAITING)
    }

    /// Permits in existence: free, held, granted or reserved.
    pub fn capacity(&self) -> u64 {
        self.snapshot(S_CAPACITY)
    }

    /// Whether [`close`](Self::close) (or `unlink`) ran.
    pub fn closed(&self) -> bool {
        self.engine().and_then(|e| e.is_closed()).unwrap_or(false)
    }

    /// Whether the name was unlinked (a lock-free read of the segment's
    /// flag): this object is dead for good, and a new `open` of the name
    /// makes a new semaphore.
    pub fn unlinked(&self) -> bool {
        self.segment().is_some_and(|s| s.is_unlinked())
    }

    /// Permits `owner` holds, a lock-free snapshot (0 for an owner out of range).
    pub fn held(&self, owner: u32) -> u64 {
        self.engine().and_then(|e| e.oget(owner, O_HELD)).unwrap_or(0)
    }

    /// Rebuilds every cache from the facts, as after `EOWNERDEAD`: on a
    /// consistent state it changes nothing observable. For tests.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`] if a fact is impossible.
    #[doc(hidden)]
    pub fn rebuild(&self) -> Result<(), Error> {
        self.locked(|e, _, woken| e.rebuild(woken))
    }

    /// Runs the full consistency check (the one `open` runs on a segment in
    /// use) under the lock: for tests and diagnostics.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`] naming the first inconsistency.
    pub fn check(&self) -> Result<(), Error> {
        // A diagnostic: it reports damage without poisoning the semaphore.
        self.locked_with(false, |e, _, _| e.check(), |_, _| {})
    }
}
