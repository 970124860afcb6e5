//! The shared table of a [`SharedRateLimiter`](super::SharedRateLimiter):
//! fixed cells in a region, in shards, each behind its own lock.
//!
//! # Layout
//!
//! ```text
//! shard s header (128 B): lock (64 B) | forgotten u64 | now u64 | 0…
//! cell i (64 B):          hash | tat | last_seen | 0 | key (32 B, key.rs)
//! tag i (1 B, after all the cells): 0 never used, else 7 bits of the hash
//! ```
//!
//! The `max_keys` cells are split exactly between the shards (shard `s` owns
//! a contiguous run). A key's shard is the top 4 bits of its hash; its home
//! cell in the shard is the hash modulo the shard's length, and it lives in
//! the `WINDOW` cells from there (linear probing, wrapping in the shard).
//!
//! # Commit words
//!
//! `hash` is the commit word: 0 a cell never used, 1 a tombstone, anything
//! else a published key. A new key fills the cell (`tat`, `last_seen`, the
//! key), then publishes `hash`; a reused cell is tombstoned first. A decision
//! on a key writes its `tat`, one word. So a process killed at any point
//! inside a shard's lock leaves every published cell whole, and at worst a
//! tombstone where a key was being (re)placed: an expired or evicted key,
//! which decides as a fresh one anyway. `forgotten` is bumped before the live
//! key it counts is dropped, so a crash between the two only costs a refund.
//!
//! # Probing
//!
//! Cells go back to 0 never, so a key is always before the first 0 cell of
//! its window. A lookup scans the window's tags (32 bytes: one cache line
//! instead of 32) until the key's cell or a 0 tag, reading only the cells
//! whose tag matches. A key that has no cell then scans those cells for the
//! first it could reuse (a tombstone, an expired key, or the 0 cell) and the
//! live cell least recently used. A new key takes the reusable cell; with
//! none, the window is full of live keys: evict the least recently used of
//! them, or refuse (`WhenFull`). So a key may find its window full before
//! all `max_keys` cells are live.
//!
//! A tag is written before its cell is published, so a published cell's tag
//! is always right; a tag left on a cell that was never published (a crash)
//! only costs a check of that cell.
//!
//! Nothing read from the region is used as an index: positions come from the
//! key's own hash and the (validated) parameters. A published cell whose key
//! bytes are not well formed is damage: [`Error::Damaged`], no panic.

use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicU8};

use sluice_core::rate_limiter::Gcra;
use sluice_core::{Denied, KeyReservation, Verdict, WhenFull};

use super::key::{self, Encoded, Seeds};
use super::shard_lock::{self, LOCK_BYTES};
use crate::{Error, Region};

/// Most shards.
pub(crate) const MAX_SHARDS: u64 = 16;
/// Fewest cells per shard before the table is split further.
const CELLS_PER_SHARD: u64 = 256;
/// Cells a key may live in, from its home cell.
pub(crate) const WINDOW: u64 = 32;
/// Bytes of a shard header.
const SHARD_BYTES: usize = 128;
/// Bytes of a cell.
pub(crate) const CELL_BYTES: usize = 64;

const FREE: u64 = 0;
const TOMBSTONE: u64 = 1;

// Cell words.
const C_HASH: usize = 0;
const C_TAT: usize = 1;
const C_SEEN: usize = 2;
const C_KEY: usize = 4;
// Shard header words, after the lock.
const S_FORGOTTEN: usize = LOCK_BYTES;
const S_NOW: usize = LOCK_BYTES + 8;

/// How many shards a table of `max_keys` has: 1 to 16, a power of two, with
/// at least 256 cells each (a small table is one shard).
pub(crate) fn shard_count(max_keys: u64) -> u64 {
    let n = (max_keys / CELLS_PER_SHARD).clamp(1, MAX_SHARDS);
    1 << (63 - n.leading_zeros())
}

/// The region's size for `max_keys` cells.
pub(crate) fn region_bytes(max_keys: u64) -> Option<usize> {
    let keys = usize::try_from(max_keys).ok()?;
    let cells = keys.checked_mul(CELL_BYTES)?;
    let tags = keys.checked_next_multiple_of(8)?;
    cells
        .checked_add(tags)?
        .checked_add(shard_count(max_keys) as usize * SHARD_BYTES)
}

/// A published cell's tag: 1 to 128, from 7 bits of its hash that neither
/// the shard (the top 4) nor, mostly, the home cell (the hash modulo the
/// shard's length: the low bits) use. 0 marks a cell never used.
fn tag_of(hash: u64) -> u8 {
    1 + ((hash >> 48) & 0x7f) as u8
}

fn damaged(what: &str) -> Error {
    Error::Damaged(format!("rate limiter table: {what}"))
}

/// The region's bytes as words: one bounds check for a whole run of cells
/// instead of one per word (the scan of a window is the hot path).
fn words(region: Region<'_>) -> Result<&[AtomicU64], Error> {
    let p = region.base().as_ptr();
    if !(p as usize).is_multiple_of(std::mem::align_of::<AtomicU64>()) {
        return Err(damaged("table not aligned"));
    }
    // SAFETY: the region's bytes are mapped for its lifetime and only ever
    // accessed atomically (`Region`'s contract); `p` is aligned for
    // `AtomicU64` and `len / 8` words end inside the region.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<AtomicU64>(), region.len() / 8) })
}

/// The region's bytes as atomic bytes (for the tags).
fn bytes(region: Region<'_>) -> &[AtomicU8] {
    // SAFETY: as in `words`; bytes need no alignment.
    unsafe { std::slice::from_raw_parts(region.base().as_ptr().cast::<AtomicU8>(), region.len()) }
}

/// A view of one cell's eight words, and its tag.
struct Cell<'a>(&'a [AtomicU64; 8], &'a AtomicU8);

impl<'a> Cell<'a> {
    /// Cell `i` of `cells` (the words of a run of cells) with its tag.
    fn at(cells: &'a [AtomicU64], tags: &'a [AtomicU8], i: usize) -> Result<Self, Error> {
        let words = i.checked_mul(8).and_then(|at| cells.get(at..at + 8));
        match (words.map(<&[AtomicU64; 8]>::try_from), tags.get(i)) {
            (Some(Ok(words)), Some(tag)) => Ok(Cell(words, tag)),
            _ => Err(damaged("cell out of range")),
        }
    }

    fn get(&self, k: usize) -> u64 {
        self.0[k].load(Relaxed)
    }

    fn set(&self, k: usize, v: u64) {
        self.0[k].store(v, Relaxed)
    }

    fn key(&self) -> [u64; 4] {
        [
            self.get(C_KEY),
            self.get(C_KEY + 1),
            self.get(C_KEY + 2),
            self.get(C_KEY + 3),
        ]
    }

    /// Fills the cell with `key` and publishes it (tombstoning it first if it
    /// held another key).
    fn place(&self, key: &Encoded, tat: u64, now: u64) {
        if self.get(C_HASH) > TOMBSTONE {
            self.0[C_HASH].store(TOMBSTONE, Release);
            crate::semaphore::kill_point!("limiter-tombstoned");
        }
        // The tag before the publish: a published cell's tag is always right
        // (a tag on an unpublished cell is only a hint that fails the check).
        self.1.store(tag_of(key.hash), Relaxed);
        self.set(C_TAT, tat);
        self.set(C_SEEN, now);
        for (k, &w) in key.words.iter().enumerate() {
            self.set(C_KEY + k, w);
        }
        crate::semaphore::kill_point!("limiter-filled");
        // Release: a process that dies after this store leaves the fill before
        // it visible to the next locker (x86 keeps store order anyway).
        self.0[C_HASH].store(key.hash, Release);
    }
}

/// What a scan of a key's window found.
struct Found<'a> {
    /// The key's cell.
    cell: Option<Cell<'a>>,
    /// The first cell a new key may take.
    free: Option<Cell<'a>>,
    /// The least recently used live cell (for eviction).
    oldest: Option<Cell<'a>>,
}

/// A shard, locked, with its part of the table.
struct Shard<'a> {
    region: Region<'a>,
    header: usize,
    /// The shard's cells, as words, their tags, and their count.
    cells: &'a [AtomicU64],
    tags: &'a [AtomicU8],
    len: u64,
    _guard: shard_lock::ShardGuard<'a>,
}

impl<'a> Shard<'a> {
    fn word(&self, off: usize) -> Result<&'a AtomicU64, Error> {
        self.region
            .u64_at(self.header + off)
            .ok_or_else(|| damaged("shard header out of range"))
    }

    /// Raises `now` to the latest time this shard has decided at, so time
    /// never goes back for a cell (as the core's shard does).
    fn observe(&self, now: u64) -> Result<u64, Error> {
        let w = self.word(S_NOW)?;
        let now = now.max(w.load(Relaxed));
        w.store(now, Relaxed);
        Ok(now)
    }

    fn forgotten(&self) -> Result<u64, Error> {
        Ok(self.word(S_FORGOTTEN)?.load(Relaxed))
    }

    fn forget_one(&self) -> Result<(), Error> {
        self.word(S_FORGOTTEN)?.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Scans `key`'s window at `now`: the tags first (one cache line), which
    /// is all a key that has a cell costs; the cells themselves only for a
    /// key that has none, to find it room.
    fn find(&self, key: &Encoded, now: u64) -> Result<Found<'a>, Error> {
        let mut found = Found {
            cell: None,
            free: None,
            oldest: None,
        };
        // Cannot truncate: len <= max_keys, whose bytes fit usize.
        let len = self.len as usize;
        let home = (key.hash % self.len) as usize;
        let tag = tag_of(key.hash);
        let mut scanned = 0;
        let mut i = home;
        while scanned < WINDOW.min(self.len) as usize {
            let t = self
                .tags
                .get(i)
                .ok_or_else(|| damaged("tag out of range"))?
                .load(Relaxed);
            scanned += 1;
            if t == 0 {
                break;
            }
            if t == tag {
                let cell = Cell::at(self.cells, self.tags, i)?;
                if cell.get(C_HASH) == key.hash && cell.key() == key.words {
                    found.cell = Some(cell);
                    return Ok(found);
                }
            }
            i = if i + 1 == len { 0 } else { i + 1 };
        }
        // Not there: the first reusable cell, else the least recently used.
        let mut oldest_seen = u64::MAX;
        let mut i = home;
        for _ in 0..scanned {
            let cell = Cell::at(self.cells, self.tags, i)?;
            i = if i + 1 == len { 0 } else { i + 1 };
            match cell.get(C_HASH) {
                FREE | TOMBSTONE => {
                    found.free = Some(cell);
                    break;
                }
                _ if !key::well_formed(&cell.key()) => {
                    return Err(damaged("a published cell holds no valid key"));
                }
                _ if cell.get(C_TAT) <= now => {
                    found.free = Some(cell);
                    break;
                }
                _ => {
                    let seen = cell.get(C_SEEN);
                    if seen < oldest_seen || found.oldest.is_none() {
                        oldest_seen = seen;
                        found.oldest = Some(cell);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The table's parameters and algorithm; the cells are in a region.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) gcra: Gcra,
    pub(crate) interval: u64,
    pub(crate) max_keys: u64,
    pub(crate) when_full: WhenFull,
    pub(crate) seeds: Seeds,
}

impl Table {
    fn shards(&self) -> u64 {
        shard_count(self.max_keys)
    }

    /// Shard `s`'s header offset, first cell offset, and length.
    fn shard_place(&self, s: u64) -> (usize, usize, u64) {
        let shards = self.shards();
        let (base, extra) = (self.max_keys / shards, self.max_keys % shards);
        let start = s * base + s.min(extra);
        let len = base + u64::from(s < extra);
        let cells = shards as usize * SHARD_BYTES;
        // Cannot truncate: the region's size (which fits usize) was computed
        // from these numbers.
        (s as usize * SHARD_BYTES, cells + start as usize * CELL_BYTES, len)
    }

    /// The tags of `len` cells from the one at byte `first`.
    fn tags<'a>(&self, region: Region<'a>, first: usize, len: u64) -> Result<&'a [AtomicU8], Error> {
        let (_, first_cell, _) = self.shard_place(0);
        let index = (first - first_cell) / CELL_BYTES;
        // Cannot truncate: the table's size fits usize.
        let tags = first_cell + self.max_keys as usize * CELL_BYTES + index;
        let tags = usize::try_from(len)
            .ok()
            .and_then(|len| region.sub(tags, len))
            .ok_or_else(|| damaged("tags out of range"))?;
        Ok(bytes(tags))
    }

    /// The words of `len` cells from byte `first`.
    fn cells<'a>(&self, region: Region<'a>, first: usize, len: u64) -> Result<&'a [AtomicU64], Error> {
        let cells = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_mul(CELL_BYTES))
            .and_then(|bytes| region.sub(first, bytes))
            .ok_or_else(|| damaged("cells out of range"))?;
        words(cells)
    }

    fn lock<'a>(&self, region: Region<'a>, hash: u64) -> Result<Shard<'a>, Error> {
        let s = (hash >> 60) & (self.shards() - 1);
        let (header, first, len) = self.shard_place(s);
        let lock = region
            .sub(header, LOCK_BYTES)
            .ok_or_else(|| damaged("shard out of range"))?;
        let cells = self.cells(region, first, len)?;
        let tags = self.tags(region, first, len)?;
        let guard = shard_lock::lock(lock)?;
        Ok(Shard {
            region,
            header,
            cells,
            tags,
            len,
            _guard: guard,
        })
    }

    /// Writes the initial state: every shard's lock; the cells are zero.
    ///
    /// # Safety
    ///
    /// Nobody else uses the region yet.
    pub(crate) unsafe fn init(&self, region: Region<'_>) -> Result<(), Error> {
        for s in 0..self.shards() {
            let (header, _, _) = self.shard_place(s);
            let lock = region
                .sub(header, LOCK_BYTES)
                .ok_or_else(|| damaged("shard out of range"))?;
            // SAFETY: per this function's contract.
            unsafe { shard_lock::init(lock) }?;
        }
        Ok(())
    }

    /// Checks every cell's shape (at open, for a segment that exists).
    pub(crate) fn validate(&self, region: Region<'_>) -> Result<(), Error> {
        let need = region_bytes(self.max_keys).ok_or_else(|| damaged("too large"))?;
        if region.len() < need {
            return Err(damaged("region smaller than the table"));
        }
        let (_, first, _) = self.shard_place(0);
        let cells = self.cells(region, first, self.max_keys)?;
        let tags = self.tags(region, first, self.max_keys)?;
        for i in 0..self.max_keys as usize {
            let cell = Cell::at(cells, tags, i)?;
            let hash = cell.get(C_HASH);
            if hash > TOMBSTONE && (!key::well_formed(&cell.key()) || cell.1.load(Relaxed) != tag_of(hash)) {
                return Err(damaged(&format!("cell {i} holds no valid key")));
            }
        }
        Ok(())
    }

    fn keys_full(&self) -> Verdict {
        Verdict {
            denied: Some(Denied::KeysFull),
            remaining: 0,
            retry_after: self.interval,
            reset_after: 0,
        }
    }

    /// Runs `op` on `key`'s `tat` (a take or a reservation of `n >= 1`), in a
    /// new cell if the key has none; with the shard's `forgotten` count after
    /// it. `None`: no room ([`WhenFull::Refuse`]).
    fn update<T>(
        &self,
        region: Region<'_>,
        key: &Encoded,
        now: u64,
        op: impl Fn(&Gcra, &mut u64, u64) -> T,
    ) -> Result<Option<(T, u64)>, Error> {
        let shard = self.lock(region, key.hash)?;
        let now = shard.observe(now)?;
        let found = shard.find(key, now)?;
        if let Some(cell) = found.cell {
            let mut tat = cell.get(C_TAT);
            let out = op(&self.gcra, &mut tat, now);
            cell.set(C_TAT, tat);
            crate::semaphore::kill_point!("limiter-decided");
            cell.set(C_SEEN, now);
            return Ok(Some((out, shard.forgotten()?)));
        }
        let cell = match (found.free, found.oldest) {
            (Some(cell), _) => cell,
            (None, Some(victim)) if self.when_full == WhenFull::EvictLeastRecent => {
                // Counted before the key goes: a crash between costs a refund only.
                shard.forget_one()?;
                crate::semaphore::kill_point!("limiter-forgotten");
                victim
            }
            _ => return Ok(None),
        };
        // A fresh key's state (an expired cell's decides the same).
        let mut tat = 0;
        let out = op(&self.gcra, &mut tat, now);
        cell.place(key, tat, now);
        Ok(Some((out, shard.forgotten()?)))
    }

    pub(crate) fn take(&self, region: Region<'_>, key: &Encoded, n: u64, now: u64) -> Result<Verdict, Error> {
        Ok(self
            .update(region, key, now, |g, tat, now| g.take_tat(tat, now, n))?
            .map_or_else(|| self.keys_full(), |(v, _)| v))
    }

    pub(crate) fn reserve(
        &self,
        region: Region<'_>,
        key: &Encoded,
        n: u64,
        now: u64,
    ) -> Result<Option<KeyReservation>, Error> {
        if n == 0 {
            // Due when the key's earlier reservations are; needs no cell.
            let shard = self.lock(region, key.hash)?;
            let now = shard.observe(now)?;
            let mut tat = shard.find(key, now)?.cell.map_or(0, |c| c.get(C_TAT));
            let ready_at = self.gcra.reserve_tat(&mut tat, now, 0);
            return Ok(Some(KeyReservation::from_parts(0, ready_at, shard.forgotten()?)));
        }
        Ok(self
            .update(region, key, now, |g, tat, now| g.reserve_tat(tat, now, n))?
            .map(|(ready_at, forgotten)| KeyReservation::from_parts(n, ready_at, forgotten)))
    }

    pub(crate) fn peek(&self, region: Region<'_>, key: &Encoded, n: u64, now: u64) -> Result<Verdict, Error> {
        let shard = self.lock(region, key.hash)?;
        let now = shard.observe(now)?;
        let found = shard.find(key, now)?;
        let tat = match found.cell {
            Some(cell) => cell.get(C_TAT),
            None if n > 0 && self.when_full == WhenFull::Refuse && found.free.is_none() => return Ok(self.keys_full()),
            None => 0,
        };
        Ok(self.gcra.peek_tat(tat, now, n))
    }

    pub(crate) fn cancel(
        &self,
        region: Region<'_>,
        key: &Encoded,
        r: &KeyReservation,
        now: u64,
    ) -> Result<bool, Error> {
        let shard = self.lock(region, key.hash)?;
        let now = shard.observe(now)?;
        if r.ready_at <= now {
            return Ok(false);
        }
        // A key of this shard forgotten since may hold a new state that never
        // counted these tokens: refunding into it would over-grant.
        if r.forgotten() != shard.forgotten()? {
            return Ok(true);
        }
        if let Some(cell) = shard.find(key, now)?.cell {
            let mut tat = cell.get(C_TAT);
            self.gcra.cancel_tat(&mut tat, r.tokens);
            cell.set(C_TAT, tat);
        }
        Ok(true)
    }

    pub(crate) fn reset(&self, region: Region<'_>, key: &Encoded, now: u64) -> Result<bool, Error> {
        let shard = self.lock(region, key.hash)?;
        let now = shard.observe(now)?;
        let Some(cell) = shard.find(key, now)?.cell else {
            return Ok(false);
        };
        let live = cell.get(C_TAT) > now;
        if live {
            shard.forget_one()?;
        }
        cell.0[C_HASH].store(TOMBSTONE, Release);
        Ok(live)
    }

    /// Published cells (live or expired, not yet reused), read without locks.
    pub(crate) fn size(&self, region: Region<'_>) -> Result<u64, Error> {
        let (_, first, _) = self.shard_place(0);
        let cells = self.cells(region, first, self.max_keys)?;
        let published = cells
            .chunks_exact(8)
            .filter(|cell| cell[C_HASH].load(Relaxed) > TOMBSTONE);
        Ok(published.count() as u64)
    }
}
