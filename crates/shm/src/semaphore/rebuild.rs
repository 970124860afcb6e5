//! Recovery and validation: the caches rebuilt from the facts (design §4.3),
//! and the full consistency check an opener runs on a segment in use (§1.4).
//!
//! A holder killed inside the lock leaves the caches (free count, queue
//! links, lists) half-updated, but the facts (capacity, owed, each owner's
//! `held`, each entry's state and counts) are each a single word written in
//! an order that keeps them meaningful. `rebuild` trusts only the facts:
//!
//! 1. every entry's state known, owner in range, `granted <= needed`;
//! 2. the queue relinked from the QUEUED entries by (priority desc, ticket
//!    asc), which is the order `insert` keeps;
//! 3. the free list and each owner's decided list relinked (oldest decision
//!    collected first);
//! 4. `pool = capacity − Σ held − Σ granted(GRANTED) − owed`: what a queued
//!    entry had reserved is counted back into the pool, so an entry whose
//!    grant was cut short (`granted == needed`, state still QUEUED) is granted
//!    again at the head in step 6;
//! 5. waits heavier than the capacity (a `forget_held` cut short) refused;
//! 6. `release_locked(pool)`: the head is served, the rest reserved or free.
//!
//! Every fact sequence keeps the sum exact (a move between two facts takes
//! from the source first), so the rebuilt state passes [`Engine::check`] at
//! once, before the dead holder is even reaped. Facts that add up to more
//! than the capacity can only be damage: the rebuild refuses them.

use super::records::*;
use crate::Error;

impl Engine<'_> {
    /// Rebuilds every cache from the facts; returns the owners granted.
    pub(crate) fn rebuild(&self, woken: &mut Vec<u32>) -> Result<(), Error> {
        let facts = self.check_facts()?;
        let (capacity, owed) = (self.get(S_CAPACITY)?, self.get(S_OWED)?);
        // The queue, in the order insert keeps.
        let mut queued = facts.of(Slot::Queued);
        queued.sort_by_key(|&(i, prio, ticket)| (std::cmp::Reverse(prio), ticket, i));
        self.set(S_HEAD, u64::from(NIL))?;
        self.set(S_TAIL, u64::from(NIL))?;
        let mut prev = NIL;
        for (k, &(i, _, _)) in queued.iter().enumerate() {
            let next = queued.get(k + 1).map_or(NIL, |&(j, _, _)| j);
            self.set_links(i, prev, next)?;
            self.eset(i, E_GRANTED, 0)?;
            prev = i;
        }
        self.set(S_HEAD, u64::from(queued.first().map_or(NIL, |q| q.0)))?;
        self.set(S_TAIL, u64::from(prev))?;
        self.set(S_WAITING, queued.len() as u64)?;
        // The free list, lowest index first.
        self.set(S_FREE_LIST, u64::from(NIL))?;
        for &(i, _, _) in facts.of(Slot::Free).iter().rev() {
            self.push_free(i)?;
        }
        // Decided lists: pushed oldest first, so the newest is at the head.
        for o in 0..self.owners {
            self.oset(o, O_DECIDED, u64::from(NIL))?;
        }
        let mut decided: Vec<_> = facts
            .entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Granted | Slot::Refused))
            .collect();
        decided.sort_by_key(|e| e.ticket);
        for e in decided {
            self.push_decided(e.index, e.owner)?;
        }
        let max_ticket = facts
            .entries
            .iter()
            .filter(|e| e.slot != Slot::Free)
            .map(|e| e.ticket.saturating_add(1))
            .max()
            .unwrap_or(0);
        self.set(S_TICKET, self.get(S_TICKET)?.max(max_ticket))?;
        // `check_facts` saw that they fit the capacity.
        let pool = capacity - facts.held - facts.granted - owed;
        self.set(S_FREE, 0)?;
        self.set(S_RESERVED, 0)?;
        // The free permits are handed to the queue below: no nudge is due.
        self.set(S_NUDGED, 0)?;
        // Queued entries hold nothing after the relink: nothing comes back.
        self.refuse_heavier_than(capacity, woken)?;
        self.release_locked(pool, woken)
    }

    /// Process `owners` are gone: their facts are dropped (holds, waits,
    /// decisions), then the caches are rebuilt and their permits handed on.
    pub(crate) fn reap(&self, owners: &[u32], woken: &mut Vec<u32>) -> Result<(), Error> {
        for &o in owners {
            if o >= self.owners {
                continue;
            }
            self.oset(o, O_HELD, 0)?;
            self.oset(o, O_DECIDED, u64::from(NIL))?;
        }
        for i in 0..self.waiters {
            // An unknown state is left for rebuild to refuse.
            if !matches!(self.slot(i), Ok(Slot::Free) | Err(_)) && owners.contains(&self.owner_of(i)?) {
                self.set_slot(i, Slot::Free)?;
            }
        }
        self.rebuild(woken)?;
        woken.retain(|o| !owners.contains(o));
        Ok(())
    }

    /// The full check of a segment in use: facts valid, every cache agrees
    /// with them, and `free + Σ held + Σ granted + reserved + owed == capacity`.
    pub(crate) fn check(&self) -> Result<(), Error> {
        self.sane()?;
        let facts = self.facts()?;
        let capacity = self.get(S_CAPACITY)?;
        // The queue: a bounded walk, links both ways, sorted, only the head reserved.
        let mut at = self.head()?;
        let (mut prev, mut count, mut last) = (NIL, 0u64, None);
        while at != NIL {
            count += 1;
            if count > u64::from(self.waiters) || self.slot(at)? != Slot::Queued {
                return Err(damaged("the queue is broken"));
            }
            let (p, next) = self.links(at)?;
            let key = (std::cmp::Reverse(self.priority(at)?), self.eget(at, E_TICKET)?);
            if p != prev || last.is_some_and(|l| l > key) {
                return Err(damaged(format!("the queue is out of order at entry {at}")));
            }
            if prev != NIL && self.eget(at, E_GRANTED)? != 0 {
                return Err(damaged(format!("entry {at} holds permits but is not the head")));
            }
            last = Some(key);
            prev = at;
            at = next;
        }
        let head = self.head()?;
        let reserved = if head == NIL { 0 } else { self.eget(head, E_GRANTED)? };
        if prev != self.index(self.get(S_TAIL)?)?
            || count != self.get(S_WAITING)?
            || count != facts.of(Slot::Queued).len() as u64
            || reserved != self.get(S_RESERVED)?
        {
            return Err(damaged("the queue does not match its counts"));
        }
        // The free list and the decided lists cover exactly their entries.
        let walk = |mut at: u32, want: &dyn Fn(u32) -> Result<bool, Error>| -> Result<u64, Error> {
            let mut n = 0u64;
            while at != NIL {
                n += 1;
                if n > u64::from(self.waiters) || !want(at)? {
                    return Err(damaged(format!("a list links entry {at} wrongly")));
                }
                at = self.links(at)?.1;
            }
            Ok(n)
        };
        let free_entries = walk(
            self.index(self.get(S_FREE_LIST)?)?,
            &|i| Ok(self.slot(i)? == Slot::Free),
        )?;
        let mut decided = 0;
        for o in 0..self.owners {
            let first = self.index(self.oget(o, O_DECIDED)?)?;
            decided += walk(first, &|i| {
                Ok(matches!(self.slot(i)?, Slot::Granted | Slot::Refused) && self.owner_of(i)? == o)
            })?;
        }
        if free_entries != facts.of(Slot::Free).len() as u64
            || decided != (facts.of(Slot::Granted).len() + facts.of(Slot::Refused).len()) as u64
        {
            return Err(damaged("the free or decided lists do not match the entries"));
        }
        let total = [
            self.get(S_FREE)?,
            facts.held,
            facts.granted,
            reserved,
            self.get(S_OWED)?,
        ]
        .into_iter()
        .try_fold(0u64, add)?;
        if total != capacity {
            return Err(damaged(format!(
                "permits do not add up: {total} accounted for, capacity {capacity}"
            )));
        }
        Ok(())
    }

    /// Checks the facts alone, which every state a crash can leave passes
    /// (the caches may be half-written): for a segment nobody is attached
    /// to, and as the first step of a rebuild. Every state known, every
    /// index in range, and the permits accounted for within the capacity.
    pub(crate) fn check_facts(&self) -> Result<Facts, Error> {
        let facts = self.facts()?;
        let (capacity, owed, flags) = (self.get(S_CAPACITY)?, self.get(S_OWED)?, self.get(S_FLAGS)?);
        if !flags_known(flags) {
            return Err(damaged(format!("flags {flags:#x}")));
        }
        let used = [facts.held, facts.granted, owed].into_iter().try_fold(0u64, add)?;
        if capacity > MAX_PERMITS || used > capacity {
            return Err(damaged(format!(
                "{used} permits held, granted or owed, capacity {capacity}"
            )));
        }
        Ok(facts)
    }

    /// Reads and checks every fact.
    fn facts(&self) -> Result<Facts, Error> {
        let mut facts = Facts {
            entries: Vec::with_capacity(self.waiters as usize),
            held: 0,
            granted: 0,
        };
        for o in 0..self.owners {
            let held = self.oget(o, O_HELD)?;
            if held > MAX_PERMITS {
                return Err(damaged(format!("owner {o} holds {held}")));
            }
            facts.held = add(facts.held, held)?;
        }
        for i in 0..self.waiters {
            let s = self.slot(i)?;
            if s == Slot::Free {
                facts.entries.push(Fact {
                    index: i,
                    slot: s,
                    owner: 0,
                    priority: 0,
                    ticket: 0,
                });
                continue;
            }
            let owner = self.owner_of(i)?;
            let (needed, granted) = (self.eget(i, E_NEEDED)?, self.eget(i, E_GRANTED)?);
            let priority = self.priority(i)?;
            if needed > MAX_PERMITS || granted > needed {
                return Err(damaged(format!("entry {i} needs {needed} and was granted {granted}")));
            }
            if s == Slot::Granted {
                facts.granted = add(facts.granted, granted)?;
            }
            facts.entries.push(Fact {
                index: i,
                slot: s,
                owner,
                priority,
                ticket: self.eget(i, E_TICKET)?,
            });
        }
        Ok(facts)
    }
}

/// The facts, read once: one per entry, and the sums over them.
pub(crate) struct Facts {
    entries: Vec<Fact>,
    /// Σ owner.held
    held: u64,
    /// Σ granted over GRANTED entries (what queued ones reserved is a cache).
    granted: u64,
}

struct Fact {
    index: u32,
    slot: Slot,
    owner: u32,
    priority: i32,
    ticket: u64,
}

impl Facts {
    /// `(index, priority, ticket)` of the entries in state `s`.
    fn of(&self, s: Slot) -> Vec<(u32, i32, u64)> {
        self.entries
            .iter()
            .filter(|e| e.slot == s)
            .map(|e| (e.index, e.priority, e.ticket))
            .collect()
    }
}
