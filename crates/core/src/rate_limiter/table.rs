//! The keyed rate limiter's table: sharded, bounded, least-recently-used
//! cells, one per live key, generic over the counting [`Rule`].
//!
//! # Implementation
//!
//! The table is up to 64 shards, each a [`Mutex`] around a [`Shard`]; a key's
//! shard is chosen by bits 40..46 of its hash (hashbrown uses the low bits for
//! the bucket and the top 7 for its tag, so the three stay independent). The
//! hash is foldhash's `quality` hasher with a random seed per limiter: keys
//! come from the network, and a fixed seed would let a client send keys that
//! all collide (HashDoS).
//!
//! A shard is a slab (`Vec<Cell>`) of cells and a `HashTable<u32>` of slab
//! indices; a removal moves the slab's last cell into the hole
//! (`swap_remove`) and repoints that cell's index entry and list neighbours.
//! The cells form a doubly linked list in order of use (`u32` links,
//! `NIL` at the ends), so the least recently used one is found in O(1).
//!
//! `max_keys` is split between the shards exactly (the caps sum to it), so
//! the table never holds more than `max_keys` cells; the shard count is
//! `max_keys / 1024` rounded down to a power of two, between 1 and 64, so a
//! shard holds at least 1024 keys and a small limiter is one shard with an
//! exact global LRU. A new key finds its shard full slightly before the
//! table is (hashing spreads keys evenly, not perfectly): the cap and the
//! eviction order are per shard.
//!
//! # Expiry
//!
//! A cell whose state decides like a fresh key's has expired and may be
//! dropped at any time without changing any answer. Each shard keeps
//! `expiry_floor`, a lower bound on the expiry of every cell it holds
//! (lowered by inserts and cancels, made exact by a sweep). A sweep drops every
//! expired cell in one pass, and runs only when the floor says one exists
//! (`now >= expiry_floor`) and either the slab or the index is about to
//! grow (so a sweep is paid for by the growth it replaces: amortized O(1),
//! and a shard's memory follows the keys active within about one refill
//! period, as long as new keys arrive; `RateLimiter::purge` gives it back
//! when they stop) or a new key finds the shard at its cap. A sweep that
//! leaves the slab a quarter full shrinks it.
//!
//! At the cap, a new key first checks the 8 least recently used cells and
//! drops the first expired one it finds: under a stream of new keys (churn,
//! or a client making keys up) that is where they are, in O(1). Only when
//! those are live does it sweep.
//!
//! Takes and reservations only ever move a cell's expiry later, so they
//! leave the floor alone; an insert or a cancel lowers it. A sweep at the cap
//! that finds nothing expired (the floor was a cell since refreshed) costs
//! one pass over the shard and makes the floor exact again, so such wasted
//! passes happen at most once per lifetime of the shard's earliest-expiring
//! cell, and only while new keys keep arriving at a full shard.
//!
//! A key found with an expired cell is a new key in every way but one: its
//! cell already takes a slot, so it always has room. It decides with the
//! expired state as it is, which decides exactly as a fresh one.
//!
//! # Memory
//!
//! A cell is 32 bytes for GCRA (key 16, links 8, `tat` 8) and 40 for the
//! sliding window with `u32` counts (48 with `u64`); the index adds 5 bytes
//! per bucket at a load of 44% to 88%. A million live keys measure 44 bytes
//! each (GCRA) and 52 (sliding window) of resident memory
//! (`examples/rate_limiter_memory.rs`): untouched slab capacity is not
//! resident.

use std::sync::PoisonError;

use foldhash::quality::RandomState;
use hashbrown::HashTable;

use super::key::{hash_key, StoredKey};
use super::{Key, KeyReservation, Verdict, WhenFull};
use crate::cache_padded::CachePadded;
use crate::sync::{Mutex, MutexGuard};

/// The counting algorithm for one key: a cell's state and the decisions on
/// it. `n` is at most the capacity; `now` never goes back for one shard.
///
/// Contract the table relies on: an expired state decides exactly like
/// `Default`, and `take` and `reserve` never move a state's expiry earlier
/// (only `cancel` does).
pub(crate) trait Rule {
    /// One key's state; `Default` is a key never seen.
    type State: Copy + Default;
    /// The time from which `s` decides like `Default` (at or before now:
    /// expired).
    fn expires_at(&self, s: &Self::State) -> u64;
    /// Takes `n >= 1` if it conforms now; changes `s` only then.
    fn take(&self, s: &mut Self::State, now: u64, n: u64) -> Verdict;
    /// What a take of `n` would get now.
    fn peek(&self, s: &Self::State, now: u64, n: u64) -> Verdict;
    /// Counts `n` at the earliest time they conform, FIFO; returns it.
    fn reserve(&self, s: &mut Self::State, now: u64, n: u64) -> u64;
    /// Gives back what it can of a reservation not yet due.
    fn cancel(&self, s: &mut Self::State, now: u64, reservation: &KeyReservation);
}

/// End of a list; never a slab index (a shard holds fewer than `u32::MAX`).
const NIL: u32 = u32::MAX;

/// Fewest keys per shard before the table is split further.
const KEYS_PER_SHARD: u64 = 1024;

/// Most shards.
const MAX_SHARDS: u64 = 64;

/// How many of the least recently used cells a new key at the cap checks
/// for an expired one before sweeping the whole shard.
const PROBE: usize = 8;

/// One live (or expired, not yet dropped) key.
struct Cell<S> {
    key: StoredKey,
    /// Slab index of the next more recently used cell, or `NIL` (newest).
    newer: u32,
    /// Slab index of the next less recently used cell, or `NIL` (oldest).
    older: u32,
    state: S,
}

/// One shard: the cells of the keys that hash to it.
struct Shard<S> {
    /// Slab indices, hashed by their cell's key.
    index: HashTable<u32>,
    cells: Vec<Cell<S>>,
    /// Most recently used cell, or `NIL` when empty.
    newest: u32,
    /// Least recently used cell, or `NIL` when empty.
    oldest: u32,
    /// Most cells this shard holds.
    cap: usize,
    /// At or before the expiry of every cell held; `u64::MAX` when exact and
    /// empty.
    expiry_floor: u64,
    /// The latest time any operation here has read: a thread that read the
    /// clock earlier but locks later decides at this time, so time never
    /// goes back for a cell.
    now: u64,
    /// Live cells forgotten so far (reset or evicted): a reservation records
    /// it, and a cancel refunds only if it is unchanged, so tokens reserved
    /// on a forgotten state never go back into the key's new one.
    forgotten: u64,
}

/// A shard behind its lock, on cache lines of its own.
type Locked<S> = CachePadded<Mutex<Shard<S>>>;

/// The sharded table of one limiter.
pub(crate) struct Table<R: Rule> {
    rule: R,
    hasher: RandomState,
    shards: Box<[Locked<R::State>]>,
    when_full: WhenFull,
    /// What a `KeysFull` verdict gives as `retry_after`.
    full_retry_after: u64,
}

impl<R: Rule> Table<R> {
    pub(crate) fn new(rule: R, max_keys: u64, when_full: WhenFull, full_retry_after: u64) -> Self {
        let shards = (max_keys / KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        // Round down to a power of two (1..=64).
        let shards = 1u64 << (63 - shards.leading_zeros());
        let (base, extra) = (max_keys / shards, max_keys % shards);
        let shards = (0..shards)
            .map(|i| {
                let cap = base + u64::from(i < extra);
                let cap = usize::try_from(cap.min(u64::from(NIL - 1))).unwrap_or(usize::MAX);
                CachePadded(Mutex::new(Shard {
                    index: HashTable::new(),
                    cells: Vec::new(),
                    newest: NIL,
                    oldest: NIL,
                    cap,
                    expiry_floor: u64::MAX,
                    now: 0,
                    forgotten: 0,
                }))
            })
            .collect();
        Self {
            rule,
            hasher: RandomState::default(),
            shards,
            when_full,
            full_retry_after,
        }
    }

    fn lock(&self, hash: u64) -> MutexGuard<'_, Shard<R::State>> {
        let i = (hash >> 40) as usize & (self.shards.len() - 1);
        // A shard's operations do not panic between writes that must go
        // together (short of an allocation failure, which aborts), so a
        // poisoned lock guards a consistent shard.
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn keys_full(&self) -> Verdict {
        Verdict {
            denied: Some(super::Denied::KeysFull),
            remaining: 0,
            retry_after: self.full_retry_after,
            reset_after: 0,
        }
    }

    /// The state `key` decides with: its cell's, or a fresh key's if it has
    /// none. (An expired cell decides exactly as a fresh key: used as is.)
    fn state(shard: &Shard<R::State>, slot: Option<u32>) -> R::State {
        slot.map_or_else(R::State::default, |i| shard.cells[i as usize].state)
    }

    /// Runs `op` (a take or reservation of `n >= 1`) on `key`'s state, in a
    /// new cell if `key` has none and there is room, and marks it the most
    /// recently used; with the shard's `forgotten` count after it. `None`: no
    /// room.
    fn update<T>(&self, key: Key<'_>, now: u64, op: impl Fn(&R, &mut R::State, u64) -> T) -> Option<(T, u64)> {
        let hash = hash_key(&self.hasher, key);
        let mut shard = self.lock(hash);
        let now = shard.observe(now);
        if let Some(i) = shard.find(hash, key) {
            let state = &mut shard.cells[i as usize].state;
            #[cfg(debug_assertions)]
            let before = self.rule.expires_at(state);
            let out = op(&self.rule, state, now);
            // A take or reservation never moves a cell's expiry earlier, so
            // `expiry_floor` stays a lower bound without being read.
            #[cfg(debug_assertions)]
            assert!(self.rule.expires_at(state) >= before.max(now));
            shard.touch(i);
            return Some((out, shard.forgotten));
        }
        if !shard.make_room(&self.rule, &self.hasher, now, self.when_full) {
            return None;
        }
        let mut state = R::State::default();
        let out = op(&self.rule, &mut state, now);
        shard.insert(&self.hasher, hash, key, state);
        shard.expiry_floor = shard.expiry_floor.min(self.rule.expires_at(&state));
        Some((out, shard.forgotten))
    }

    pub(crate) fn take(&self, key: Key<'_>, n: u64, now: u64) -> Verdict {
        self.update(key, now, |rule, s, now| rule.take(s, now, n))
            .map_or_else(|| self.keys_full(), |(verdict, _)| verdict)
    }

    /// A reservation of `n >= 1` on `key`: its due time and the shard's
    /// `forgotten` count once it is made (an eviction making room for it
    /// counted already), which its cancel must find unchanged to refund.
    pub(crate) fn reserve(&self, key: Key<'_>, n: u64, now: u64) -> Option<(u64, u64)> {
        self.update(key, now, |rule, s, now| rule.reserve(s, now, n))
    }

    /// What a take of `n` would get: for `n >= 1`, a new key with no room
    /// (under `Refuse`) is answered `KeysFull`, as `take` would answer it.
    /// Finding room may drop expired cells (which changes no decision), but
    /// stores no cell for `key` and does not mark anything used.
    pub(crate) fn peek(&self, key: Key<'_>, n: u64, now: u64) -> Verdict {
        let hash = hash_key(&self.hasher, key);
        let mut shard = self.lock(hash);
        let now = shard.observe(now);
        let slot = shard.find(hash, key);
        if n > 0
            && slot.is_none()
            && self.when_full == WhenFull::Refuse
            && shard.cells.len() >= shard.cap
            && !shard.make_room(&self.rule, &self.hasher, now, WhenFull::Refuse)
        {
            return self.keys_full();
        }
        self.rule.peek(&Self::state(&shard, slot), now, n)
    }

    /// The due time of a reservation of nothing on `key`: when its earlier
    /// reservations are. Needs no cell and changes nothing.
    pub(crate) fn reserve_nothing(&self, key: Key<'_>, now: u64) -> u64 {
        let hash = hash_key(&self.hasher, key);
        let mut shard = self.lock(hash);
        let now = shard.observe(now);
        let slot = shard.find(hash, key);
        let mut state = Self::state(&shard, slot);
        self.rule.reserve(&mut state, now, 0)
    }

    pub(crate) fn cancel(&self, key: Key<'_>, reservation: &KeyReservation, now: u64) -> bool {
        let hash = hash_key(&self.hasher, key);
        let mut shard = self.lock(hash);
        let now = shard.observe(now);
        if reservation.ready_at <= now {
            return false;
        }
        // A key forgotten since (reset or evicted; maybe not this key: the
        // count is the shard's) may hold a new state that never counted
        // these tokens: refunding into it would over-grant, so give nothing.
        if reservation.forgotten != shard.forgotten {
            return true;
        }
        if let Some(i) = shard.find(hash, key) {
            let mut state = shard.cells[i as usize].state;
            self.rule.cancel(&mut state, now, reservation);
            shard.store(&self.rule, &self.hasher, i, state, now);
        }
        true
    }

    pub(crate) fn reset(&self, key: Key<'_>, now: u64) -> bool {
        let hash = hash_key(&self.hasher, key);
        let mut shard = self.lock(hash);
        let now = shard.observe(now);
        match shard.find(hash, key) {
            Some(i) => {
                let live = self.rule.expires_at(&shard.cells[i as usize].state) > now;
                shard.remove(&self.hasher, i);
                if live {
                    shard.forgotten += 1;
                }
                live
            }
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).cells.len())
            .sum()
    }

    /// Drops every expired cell; how many.
    pub(crate) fn purge(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut shard = s.lock().unwrap_or_else(PoisonError::into_inner);
                let now = shard.observe(now);
                let before = shard.cells.len();
                shard.sweep(&self.rule, &self.hasher, now);
                before - shard.cells.len()
            })
            .sum()
    }
}

impl<S: Copy> Shard<S> {
    #[inline]
    fn observe(&mut self, now: u64) -> u64 {
        self.now = self.now.max(now);
        self.now
    }

    #[inline]
    fn find(&self, hash: u64, key: Key<'_>) -> Option<u32> {
        self.index.find(hash, |&i| self.cells[i as usize].key.is(key)).copied()
    }

    /// Writes a cell's state, or drops the cell if the state has expired.
    fn store<R: Rule<State = S>>(&mut self, rule: &R, hasher: &RandomState, i: u32, state: S, now: u64) {
        let expires = rule.expires_at(&state);
        if expires <= now {
            self.remove(hasher, i);
        } else {
            self.cells[i as usize].state = state;
            self.expiry_floor = self.expiry_floor.min(expires);
        }
    }

    /// Makes room for one more cell; false when full of live cells and
    /// told to refuse.
    fn make_room<R: Rule<State = S>>(&mut self, rule: &R, hasher: &RandomState, now: u64, when_full: WhenFull) -> bool {
        let len = self.cells.len();
        if len < self.cap {
            let grows = len == self.cells.capacity() || self.index.len() == self.index.capacity();
            if grows && now >= self.expiry_floor {
                self.sweep(rule, hasher, now);
            }
            return true;
        }
        if now >= self.expiry_floor {
            if self.drop_an_old_expired_cell(rule, hasher, now) {
                return true;
            }
            self.sweep(rule, hasher, now);
            if self.cells.len() < self.cap {
                return true;
            }
        }
        match when_full {
            WhenFull::Refuse => false,
            WhenFull::EvictLeastRecent => {
                // Every cell is live (the floor is past now), the oldest too.
                self.remove(hasher, self.oldest);
                self.forgotten += 1;
                true
            }
        }
    }

    /// Drops the first expired cell among the `PROBE` least recently used,
    /// if there is one: at the cap under a stream of new keys (churn, or an
    /// attacker making up keys) the oldest cells are the ones that expired,
    /// and finding one there saves a pass over the shard.
    fn drop_an_old_expired_cell<R: Rule<State = S>>(&mut self, rule: &R, hasher: &RandomState, now: u64) -> bool {
        let mut i = self.oldest;
        for _ in 0..PROBE {
            if i == NIL {
                break;
            }
            let cell = &self.cells[i as usize];
            if rule.expires_at(&cell.state) <= now {
                self.remove(hasher, i);
                return true;
            }
            i = cell.newer;
        }
        false
    }

    /// Adds a cell for `key` (not present), newest; its slab index.
    fn insert(&mut self, hasher: &RandomState, hash: u64, key: Key<'_>, state: S) -> u32 {
        // Cannot truncate: len < cap < NIL.
        let i = self.cells.len() as u32;
        self.cells.push(Cell {
            key: StoredKey::new(key),
            newer: NIL,
            older: NIL,
            state,
        });
        let cells = &self.cells;
        self.index
            .insert_unique(hash, i, |&j| hash_key(hasher, cells[j as usize].key.as_key()));
        self.link_newest(i);
        i
    }

    /// Marks cell `i` the most recently used.
    #[inline]
    fn touch(&mut self, i: u32) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    fn link_newest(&mut self, i: u32) {
        let old_newest = self.newest;
        let cell = &mut self.cells[i as usize];
        cell.newer = NIL;
        cell.older = old_newest;
        if old_newest == NIL {
            self.oldest = i;
        } else {
            self.cells[old_newest as usize].newer = i;
        }
        self.newest = i;
    }

    fn unlink(&mut self, i: u32) {
        let Cell { newer, older, .. } = self.cells[i as usize];
        self.set_older(newer, older);
        self.set_newer(older, newer);
    }

    /// Points cell `at`'s `older` link at `to`; when `at` is `NIL` (the
    /// newest end), makes `to` the newest.
    fn set_older(&mut self, at: u32, to: u32) {
        match at {
            NIL => self.newest = to,
            at => self.cells[at as usize].older = to,
        }
    }

    /// Points cell `at`'s `newer` link at `to`; when `at` is `NIL` (the
    /// oldest end), makes `to` the oldest.
    fn set_newer(&mut self, at: u32, to: u32) {
        match at {
            NIL => self.oldest = to,
            at => self.cells[at as usize].newer = to,
        }
    }

    /// Removes cell `i`; the slab's last cell moves into its slot.
    fn remove(&mut self, hasher: &RandomState, i: u32) {
        self.unlink(i);
        let hash = hash_key(hasher, self.cells[i as usize].key.as_key());
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        let last = (self.cells.len() - 1) as u32;
        if i != last {
            let hash = hash_key(hasher, self.cells[last as usize].key.as_key());
            if let Some(slot) = self.index.find_mut(hash, |&j| j == last) {
                *slot = i;
            }
            let Cell { newer, older, .. } = self.cells[last as usize];
            self.set_older(newer, i);
            self.set_newer(older, i);
        }
        self.cells.swap_remove(i as usize);
    }

    /// Drops every expired cell and makes `expiry_floor` exact.
    fn sweep<R: Rule<State = S>>(&mut self, rule: &R, hasher: &RandomState, now: u64) {
        let mut floor = u64::MAX;
        let mut i = 0;
        while i < self.cells.len() {
            let expires = rule.expires_at(&self.cells[i].state);
            if expires <= now {
                // Cannot truncate: i < len < NIL.
                self.remove(hasher, i as u32);
            } else {
                floor = floor.min(expires);
                i += 1;
            }
        }
        self.expiry_floor = floor;
        let len = self.cells.len();
        if self.cells.capacity() > 64 && len * 4 <= self.cells.capacity() {
            self.cells.shrink_to(len * 2);
            let cells = &self.cells;
            self.index
                .shrink_to(len * 2, |&j| hash_key(hasher, cells[j as usize].key.as_key()));
        }
    }
}
