//! The semaphore's records in a [`Region`] and checked access to them.
//!
//! The storage of design §4.4: a state block, one record per owner (beside
//! the segment's owner slot of the same index), and a fixed table of
//! `max_waiters` wait entries threaded into lists by `u32` links (the queue,
//! the free list, each owner's decided list). Crash consistency (§4.3):
//!
//! - **Facts** are `capacity`, `owed`, each owner's `held`, and each entry's
//!   `state`, `owner`, `priority`, `token`, `needed`, `granted` (of a GRANTED
//!   entry), `ticket`, `queued_at`.
//! - **Caches** are everything else: `free`, `waiting`, `reserved`, a queued
//!   entry's `granted` (the head's reserve), the links, head and tail, the
//!   free list and the decided lists. `Engine::rebuild` (`rebuild.rs`)
//!   derives them from the facts.
//! - A change to *another* owner's facts is one aligned store (the entry's
//!   `state`), data first: a grant writes `granted = needed`, then
//!   `state = GRANTED`. Multi-word changes only touch the lock holder's own
//!   facts: if it dies half-way, its process is dead and reaped as a whole.
//!   Counting from the head, a release also stamps the head's `queued_at`
//!   (`Engine::see_head`): one aligned store of a fact that is valid lost or
//!   kept, so it needs no order with anything.
//!
//! Every value read from the region is checked before it is used: an index
//! out of range, a walk longer than the table, an impossible count, all give
//! [`Error::Damaged`], never a panic. All accesses are `Relaxed` atomics: the
//! segment lock orders them (its acquire and release pair across processes);
//! the lock-free getters are snapshots that publish nothing.

use std::sync::atomic::Ordering::Relaxed;

use sluice_core::Fairness;

use crate::{Error, Region};

/// No entry: the end of a list, an empty queue.
pub(crate) const NIL: u32 = u32::MAX;

/// The most permits a named semaphore holds, as in the core (2^62 − 1).
pub const MAX_PERMITS: u64 = u64::MAX >> 2;

// The state block: one u64 per field, byte offsets.
const S_OWNERS: usize = 0; // max_owners, written at init
const S_WAITERS: usize = 8; // max_waiters, written at init
pub(crate) const S_CAPACITY: usize = 16; // fact
pub(crate) const S_FREE: usize = 24; // cache: the core's `available` (0 while anyone waits)
pub(crate) const S_OWED: usize = 32; // fact: permits owed before any waiter is served (0 for named)
pub(crate) const S_WAITING: usize = 40; // cache: queued entries
pub(crate) const S_RESERVED: usize = 48; // cache: the head's `granted`
pub(crate) const S_TICKET: usize = 56; // next ticket (FIFO sequence), only grows
pub(crate) const S_FLAGS: usize = 64; // CLOSED, EVENTUAL, EVENTUAL_HEAD
pub(crate) const S_HEAD: usize = 72; // cache: first queued entry or NIL
pub(crate) const S_TAIL: usize = 80; // cache: last queued entry or NIL
pub(crate) const S_FREE_LIST: usize = 88; // cache: first FREE entry or NIL
pub(crate) const S_NUDGED: usize = 96; // hint: the owner nudged + 1 while nobody has collected since, else 0
const STATE_BYTES: usize = 128;

/// `flags`: `close()` has run.
pub(crate) const CLOSED: u64 = 1;
/// `flags`: eventual fairness (a creation parameter, written at init and
/// compared with the header's at open): the fast path may take free permits
/// while waits are queued, as long as the head is not due.
pub(crate) const EVENTUAL: u64 = 2;
/// `flags`: eventual fairness counted from the head
/// ([`Fairness::EventualHead`]), only ever set with `EVENTUAL` (so that
/// `EVENTUAL` alone still means "any eventual mode"); a creation parameter
/// like it. Waits are queued with `queued_at = UNSEEN`, and the first
/// release that finds one standing first stamps it (`see_head`). Not a
/// layout change: a sluice that predates it refuses such a segment at open
/// by its `fairness` parameter (2), before it reads the flags.
pub(crate) const EVENTUAL_HEAD: u64 = 4;

/// `queued_at` of a wait that no release has found standing first yet,
/// counting from the head (the core's `UNSEEN`). Never due.
pub(crate) const UNSEEN: u64 = u64::MAX;

/// The mode bits of `flags` for `fairness`.
pub(crate) fn mode_flags(fairness: Fairness) -> u64 {
    match fairness {
        Fairness::Fifo => 0,
        Fairness::Eventual => EVENTUAL,
        Fairness::EventualHead => EVENTUAL | EVENTUAL_HEAD,
    }
}

/// Whether `flags` holds only known bits, `EVENTUAL_HEAD` only with
/// `EVENTUAL`: anything else is damage (or a sluice newer than this one).
pub(crate) fn flags_known(flags: u64) -> bool {
    flags & !(CLOSED | EVENTUAL | EVENTUAL_HEAD) == 0 && (flags & EVENTUAL_HEAD == 0 || flags & EVENTUAL != 0)
}

/// How long the head may be passed over by bargers in eventual mode before
/// the next release must hand off to it: the core's figure (0.5 ms), so
/// threads and processes keep one bound.
pub const FAIR_AFTER_NS: u64 = sluice_core::FAIR_AFTER_NANOS;

// An owner record (beside the segment's owner slot of the same index).
const OWNER_BYTES: usize = 32;
pub(crate) const O_HELD: usize = 0; // fact: permits this owner holds
pub(crate) const O_DECIDED: usize = 8; // cache: newest decided entry or NIL, linked by `next`

// A wait entry.
// 72 B since eventual fairness added `queued_at` (layout version 2).
const ENTRY_BYTES: usize = 72;
pub(crate) const E_STATE: usize = 0; // the commit word: FREE/QUEUED/GRANTED/REFUSED
pub(crate) const E_OWNER: usize = 8;
pub(crate) const E_PRIORITY: usize = 16; // i32 stored as i64 bits
pub(crate) const E_TOKEN: usize = 24;
pub(crate) const E_NEEDED: usize = 32;
pub(crate) const E_GRANTED: usize = 40; // < needed while queued (only the head has any)
pub(crate) const E_TICKET: usize = 48;
const E_LINKS: usize = 56; // cache: prev in the high 32 bits, next in the low 32
/// CLOCK_MONOTONIC ns when its patience began (eventual mode's `due`): when
/// queued, or counting from the head, when a release first found it standing
/// first (`UNSEEN` until then).
pub(crate) const E_QUEUED_AT: usize = 64;

/// An entry's state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Free = 0,
    Queued = 1,
    Granted = 2,
    Refused = 3,
}

/// Bytes of the region for these bounds.
pub(crate) fn region_size(max_owners: u32, max_waiters: u32) -> usize {
    STATE_BYTES + OWNER_BYTES * max_owners as usize + ENTRY_BYTES * max_waiters as usize
}

pub(crate) fn damaged(why: impl Into<String>) -> Error {
    Error::Damaged(why.into())
}

pub(crate) fn add(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_add(b).ok_or_else(|| damaged("a permit count overflows"))
}

pub(crate) fn sub(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_sub(b)
        .ok_or_else(|| damaged("a permit count went below zero"))
}

/// Adds `owner` to `woken` once.
pub(crate) fn wake(woken: &mut Vec<u32>, owner: u32) {
    if !woken.contains(&owner) {
        woken.push(owner);
    }
}

/// The state machine over one region; cheap to make, holds no state itself.
#[derive(Clone, Copy)]
pub(crate) struct Engine<'a> {
    r: Region<'a>,
    pub(crate) owners: u32,
    pub(crate) waiters: u32,
}

impl<'a> Engine<'a> {
    /// Writes the initial state into a zeroed region of `region_size` bytes.
    pub(crate) fn init(
        r: Region<'a>,
        max_owners: u32,
        max_waiters: u32,
        permits: u64,
        fairness: Fairness,
    ) -> Result<(), Error> {
        let e = Engine {
            r,
            owners: max_owners,
            waiters: max_waiters,
        };
        if r.len() < region_size(max_owners, max_waiters) {
            return Err(damaged("the semaphore's region is too small"));
        }
        e.set(S_OWNERS, u64::from(max_owners))?;
        e.set(S_WAITERS, u64::from(max_waiters))?;
        e.set(S_CAPACITY, permits)?;
        e.set(S_FREE, permits)?;
        for f in [S_OWED, S_WAITING, S_RESERVED, S_TICKET] {
            e.set(f, 0)?;
        }
        e.set(S_FLAGS, mode_flags(fairness))?;
        e.set(S_NUDGED, 0)?;
        e.set(S_HEAD, u64::from(NIL))?;
        e.set(S_TAIL, u64::from(NIL))?;
        for o in 0..max_owners {
            e.oset(o, O_HELD, 0)?;
            e.oset(o, O_DECIDED, u64::from(NIL))?;
        }
        e.set(S_FREE_LIST, u64::from(NIL))?;
        for i in (0..max_waiters).rev() {
            e.eset(i, E_STATE, Slot::Free as u64)?;
            e.push_free(i)?;
        }
        Ok(())
    }

    /// The engine over an initialised region: its bounds come from the state
    /// block and must fit the region.
    pub(crate) fn over(r: Region<'a>) -> Result<Self, Error> {
        let get = |off| {
            r.u64_at(off)
                .map(|w| w.load(Relaxed))
                .ok_or_else(|| damaged("region too small"))
        };
        let (owners, waiters) = (get(S_OWNERS)?, get(S_WAITERS)?);
        if !(1..=65_536).contains(&owners) || !(1..=65_536).contains(&waiters) {
            return Err(damaged(format!(
                "bounds out of range: {owners} owners, {waiters} waiters"
            )));
        }
        let (owners, waiters) = (owners as u32, waiters as u32);
        if region_size(owners, waiters) > r.len() {
            return Err(damaged("the semaphore's bounds do not fit its region"));
        }
        Ok(Engine { r, owners, waiters })
    }

    // ---- raw access: every offset checked, nothing trusted ----

    fn word(&self, off: usize) -> Result<&'a std::sync::atomic::AtomicU64, Error> {
        self.r
            .u64_at(off)
            .ok_or_else(|| damaged("an offset outside the region"))
    }

    pub(crate) fn get(&self, off: usize) -> Result<u64, Error> {
        Ok(self.word(off)?.load(Relaxed))
    }

    pub(crate) fn set(&self, off: usize, v: u64) -> Result<(), Error> {
        self.word(off)?.store(v, Relaxed);
        Ok(())
    }

    pub(crate) fn ooff(&self, o: u32) -> Result<usize, Error> {
        if o >= self.owners {
            return Err(damaged(format!("owner {o} out of range")));
        }
        Ok(STATE_BYTES + OWNER_BYTES * o as usize)
    }

    fn eoff(&self, i: u32) -> Result<usize, Error> {
        if i >= self.waiters {
            return Err(damaged(format!("entry {i} out of range")));
        }
        Ok(STATE_BYTES + OWNER_BYTES * self.owners as usize + ENTRY_BYTES * i as usize)
    }

    pub(crate) fn oget(&self, o: u32, f: usize) -> Result<u64, Error> {
        self.get(self.ooff(o)? + f)
    }

    pub(crate) fn oset(&self, o: u32, f: usize, v: u64) -> Result<(), Error> {
        self.set(self.ooff(o)? + f, v)
    }

    pub(crate) fn eget(&self, i: u32, f: usize) -> Result<u64, Error> {
        self.get(self.eoff(i)? + f)
    }

    pub(crate) fn eset(&self, i: u32, f: usize, v: u64) -> Result<(), Error> {
        self.set(self.eoff(i)? + f, v)
    }

    /// An index read from the region: `NIL` or a valid entry.
    pub(crate) fn index(&self, v: u64) -> Result<u32, Error> {
        match u32::try_from(v) {
            Ok(NIL) => Ok(NIL),
            Ok(i) if i < self.waiters => Ok(i),
            _ => Err(damaged(format!("link {v} out of range"))),
        }
    }

    pub(crate) fn slot(&self, i: u32) -> Result<Slot, Error> {
        match self.eget(i, E_STATE)? {
            0 => Ok(Slot::Free),
            1 => Ok(Slot::Queued),
            2 => Ok(Slot::Granted),
            3 => Ok(Slot::Refused),
            s => Err(damaged(format!("entry {i} has state {s}"))),
        }
    }

    pub(crate) fn set_slot(&self, i: u32, s: Slot) -> Result<(), Error> {
        self.eset(i, E_STATE, s as u64)
    }

    /// The owner of a live entry, checked.
    pub(crate) fn owner_of(&self, i: u32) -> Result<u32, Error> {
        let o = self.eget(i, E_OWNER)?;
        match u32::try_from(o) {
            Ok(o) if o < self.owners => Ok(o),
            _ => Err(damaged(format!("entry {i} names owner {o}"))),
        }
    }

    pub(crate) fn priority(&self, i: u32) -> Result<i32, Error> {
        let p = self.eget(i, E_PRIORITY)? as i64;
        i32::try_from(p).map_err(|_| damaged(format!("entry {i} has priority {p}")))
    }

    pub(crate) fn links(&self, i: u32) -> Result<(u32, u32), Error> {
        let l = self.eget(i, E_LINKS)?;
        Ok((self.index(l >> 32)?, self.index(l & 0xffff_ffff)?))
    }

    pub(crate) fn set_links(&self, i: u32, prev: u32, next: u32) -> Result<(), Error> {
        self.eset(i, E_LINKS, (u64::from(prev) << 32) | u64::from(next))
    }

    pub(crate) fn set_prev(&self, i: u32, prev: u32) -> Result<(), Error> {
        let (_, next) = self.links(i)?;
        self.set_links(i, prev, next)
    }

    pub(crate) fn set_next(&self, i: u32, next: u32) -> Result<(), Error> {
        let (prev, _) = self.links(i)?;
        self.set_links(i, prev, next)
    }

    pub(crate) fn head(&self) -> Result<u32, Error> {
        self.index(self.get(S_HEAD)?)
    }

    pub(crate) fn is_closed(&self) -> Result<bool, Error> {
        Ok(self.get(S_FLAGS)? & CLOSED != 0)
    }

    pub(crate) fn is_eventual(&self) -> Result<bool, Error> {
        Ok(self.get(S_FLAGS)? & EVENTUAL != 0)
    }

    /// The mode the segment was made in, from the flags.
    pub(crate) fn fairness(&self) -> Result<Fairness, Error> {
        let flags = self.get(S_FLAGS)?;
        Ok(if flags & EVENTUAL_HEAD != 0 {
            Fairness::EventualHead
        } else if flags & EVENTUAL != 0 {
            Fairness::Eventual
        } else {
            Fairness::Fifo
        })
    }

    /// Whether the queue head has waited `FAIR_AFTER_NS` at `now` (false
    /// with nobody queued). A `queued_at` in the future (another process's
    /// clock read just before ours, or a damaged word) only counts as young,
    /// and so does an `UNSEEN` head: only a release starts its count
    /// (`see_head`), as in the core, so this reads and never stamps.
    pub(crate) fn head_due(&self, now: u64) -> Result<bool, Error> {
        let head = self.head()?;
        if head == NIL {
            return Ok(false);
        }
        let queued_at = self.eget(head, E_QUEUED_AT)?;
        Ok(queued_at != UNSEEN && now.saturating_sub(queued_at) >= FAIR_AFTER_NS)
    }

    /// Counting from the head (`EVENTUAL_HEAD`): a release found the head
    /// standing first at `now`; if it is `UNSEEN`, its count starts now (the
    /// core's `young_head`). Nothing otherwise.
    ///
    /// Crash consistency: `queued_at` is a fact of another owner's entry, and
    /// the stamp is one aligned store of it that is safe to lose or keep,
    /// like a cache: `UNSEEN` and `now` are both valid for a queued entry,
    /// nothing else depends on which (no count, no link; `rebuild` does not
    /// read it), and a lost stamp only lets the next release start the
    /// count a little later (that head may be passed over up to the time
    /// between the two releases longer).
    pub(crate) fn see_head(&self, now: u64) -> Result<(), Error> {
        if self.fairness()? != Fairness::EventualHead {
            return Ok(());
        }
        let head = self.head()?;
        if head != NIL && self.eget(head, E_QUEUED_AT)? == UNSEEN {
            self.eset(head, E_QUEUED_AT, now)?;
        }
        Ok(())
    }

    /// The cache words are in range: every locked operation starts here, so
    /// damaged state bytes are refused before anything acts on them.
    pub(crate) fn sane(&self) -> Result<(), Error> {
        let [cap, free, owed, waiting, reserved, flags] =
            [S_CAPACITY, S_FREE, S_OWED, S_WAITING, S_RESERVED, S_FLAGS].map(|f| self.get(f).unwrap_or(u64::MAX));
        let head = self.head()?;
        self.index(self.get(S_TAIL)?)?;
        self.index(self.get(S_FREE_LIST)?)?;
        let ok = cap <= MAX_PERMITS
            && flags_known(flags)
            && owed <= cap
            && free.checked_add(reserved).is_some_and(|f| f <= cap)
            && waiting <= u64::from(self.waiters)
            && (waiting == 0) == (head == NIL)
            // Only eventual mode leaves permits free while anyone waits.
            && (waiting == 0 || free == 0 || flags & EVENTUAL != 0);
        if ok {
            Ok(())
        } else {
            Err(damaged(format!(
                "state block inconsistent: capacity {cap}, free {free}, owed {owed}, waiting {waiting}, \
                 reserved {reserved}, flags {flags:#x}"
            )))
        }
    }

    // ---- lists ----

    pub(crate) fn push_free(&self, i: u32) -> Result<(), Error> {
        let first = self.index(self.get(S_FREE_LIST)?)?;
        self.set_links(i, NIL, first)?;
        self.set(S_FREE_LIST, u64::from(i))
    }

    pub(crate) fn pop_free(&self) -> Result<Option<u32>, Error> {
        let i = self.index(self.get(S_FREE_LIST)?)?;
        if i == NIL {
            return Ok(None);
        }
        if self.slot(i)? != Slot::Free {
            return Err(damaged(format!("free list links entry {i}, which is in use")));
        }
        let (_, next) = self.links(i)?;
        self.set(S_FREE_LIST, u64::from(next))?;
        Ok(Some(i))
    }

    /// Pushes a decided entry on its owner's decided list (newest first).
    pub(crate) fn push_decided(&self, i: u32, owner: u32) -> Result<(), Error> {
        let first = self.index(self.oget(owner, O_DECIDED)?)?;
        self.set_links(i, NIL, first)?;
        self.oset(owner, O_DECIDED, u64::from(i))
    }

    /// Links `i` into the queue after every entry of its priority or higher.
    pub(crate) fn insert(&self, i: u32, priority: i32) -> Result<(), Error> {
        let mut after = self.index(self.get(S_TAIL)?)?;
        let mut steps = 0;
        while after != NIL && self.priority(after)? < priority {
            steps += 1;
            if steps > self.waiters {
                return Err(damaged("the queue has a cycle"));
            }
            after = self.links(after)?.0;
        }
        let before = if after == NIL {
            self.head()?
        } else {
            self.links(after)?.1
        };
        self.set_links(i, after, before)?;
        if after == NIL {
            self.set(S_HEAD, u64::from(i))?;
        } else {
            self.set_next(after, i)?;
        }
        if before == NIL {
            self.set(S_TAIL, u64::from(i))
        } else {
            self.set_prev(before, i)
        }
    }

    /// Takes a queued entry out of the queue (its state is the caller's).
    pub(crate) fn unlink(&self, i: u32) -> Result<(), Error> {
        let (prev, next) = self.links(i)?;
        if prev == NIL {
            self.set(S_HEAD, u64::from(next))?;
        } else {
            self.set_next(prev, next)?;
        }
        if next == NIL {
            self.set(S_TAIL, u64::from(prev))?;
        } else {
            self.set_prev(next, prev)?;
        }
        self.set(S_WAITING, sub(self.get(S_WAITING)?, 1)?)
    }
}
