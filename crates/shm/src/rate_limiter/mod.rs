//! [`SharedRateLimiter`]: a keyed GCRA rate limiter shared by every process
//! that opens the same name (design `docs/design/cross-process.md` §4.5).
//!
//! The decisions are the core's: each key's `tat` goes through
//! [`sluice_core::rate_limiter::Gcra`], the very code of
//! `sluice_core::RateLimiter`, and the answers are its [`Verdict`] and
//! [`KeyReservation`]. What differs is where the cells live: a fixed table of
//! `max_keys` 64-byte cells in the segment, in up to 16 shards with a robust
//! mutex each, open addressing with linear probing (`table.rs`), keys stored
//! inline up to 31 bytes and as a 128-bit digest seeded per segment beyond
//! (`key.rs`). Time is `CLOCK_MONOTONIC` nanoseconds.
//!
//! Differences from the core, on purpose:
//! - **Room for a new key** is its 32-cell probe window, not its shard: a new
//!   key whose window holds only live keys evicts the least recently used of
//!   them (`EvictLeastRecent`) or is refused (`Refuse`), possibly before all
//!   `max_keys` cells are live. Expired cells are reused in place.
//! - [`size`](SharedRateLimiter::size) counts published cells (live, or
//!   expired and not yet reused); nothing sweeps.
//! - Only [`Algorithm::Gcra`]; the sliding window is refused at open.
//!
//! Reservations are stateless, as in the core: a process killed before
//! redeeming or cancelling one leaves its tokens spent (conservative).
//! A process killed inside a shard's lock leaves the table consistent (one
//! commit word per change, see `table.rs`); the next locker goes on.
//!
//! After [`unlink`](SharedRateLimiter::unlink) the name is gone (the next
//! `open` makes a new table); processes holding the old one keep sharing it.

mod key;
mod shard_lock;
mod table;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use sluice_core::rate_limiter::Gcra;
use sluice_core::{Algorithm, Clock, Key, KeyReservation, LimiterConfig, RequestError, Verdict, WhenFull};

use crate::token_bucket::MonotonicNanos;
use crate::{Error, Layout, Region, Segment};
use key::{Encoded, Seeds};
use table::Table;

/// Most keys a named limiter may hold (a table of 1 GiB).
pub const MAX_KEYS: u64 = 1 << 24;

/// Why a limiter call failed.
#[derive(Debug)]
pub enum LimiterError {
    /// The request itself: more than the capacity, a bad key, or (only from
    /// `reserve`) no room for a new key.
    Request(RequestError),
    /// The segment: damaged bytes, a stuck lock.
    Shm(Error),
}

impl std::fmt::Display for LimiterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimiterError::Request(e) => e.fmt(f),
            LimiterError::Shm(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LimiterError {}

impl From<Error> for LimiterError {
    fn from(e: Error) -> Self {
        LimiterError::Shm(e)
    }
}

impl From<RequestError> for LimiterError {
    fn from(e: RequestError) -> Self {
        LimiterError::Request(e)
    }
}

/// The creation parameters, as the segment stores and compares them.
struct Params {
    table: Table,
    config: LimiterConfig,
}

impl Layout for Params {
    const KIND: u32 = 4;

    fn param_names() -> [&'static str; 8] {
        [
            "capacity",
            "interval_nanos",
            "algorithm",
            "max_keys",
            "when_full",
            "",
            "",
            "",
        ]
    }

    fn params(&self) -> [u64; 8] {
        let c = &self.config;
        let when_full = match c.when_full {
            WhenFull::Refuse => 0,
            WhenFull::EvictLeastRecent => 1,
        };
        [c.capacity, c.interval_nanos, 0, c.max_keys, when_full, 0, 0, 0]
    }

    fn mutable_size(&self) -> usize {
        // Checked in `check_config`.
        table::region_bytes(self.config.max_keys).unwrap_or(usize::MAX)
    }

    unsafe fn init(&self, region: Region<'_>) {
        // SAFETY: the segment's contract: only this process sees the region.
        // A failure (a lock that cannot be initialised) shows at first use.
        let _ = unsafe { self.table.init(region) };
    }

    fn validate(&self, region: Region<'_>) -> Result<(), Error> {
        self.table.validate(region)
    }
}

/// Where the table lives: a segment, or this process (tests and oracles).
enum Home {
    Segment(Arc<Segment>),
    Local(Box<[AtomicU64]>),
}

/// A keyed rate limiter in a named segment, shared by every process (and
/// thread) that opens the name.
pub struct SharedRateLimiter<C: Clock = MonotonicNanos> {
    config: LimiterConfig,
    table: Table,
    clock: C,
    home: Home,
}

fn check_config(config: &LimiterConfig) -> Result<Gcra, Error> {
    let invalid = |why: String| Error::Invalid(format!("rate limiter: {why}"));
    let gcra = Gcra::new(config.capacity, config.interval_nanos).map_err(|e| invalid(e.to_string()))?;
    if config.algorithm != Algorithm::Gcra {
        return Err(invalid("only the GCRA algorithm is shared between processes".into()));
    }
    if !(1..=MAX_KEYS).contains(&config.max_keys) {
        return Err(invalid(format!(
            "max_keys must be 1 to {MAX_KEYS}, got {}",
            config.max_keys
        )));
    }
    Ok(gcra)
}

fn table(config: &LimiterConfig, gcra: Gcra, seed: u64) -> Table {
    Table {
        gcra,
        interval: config.interval_nanos,
        max_keys: config.max_keys,
        when_full: config.when_full,
        seeds: Seeds::new(seed),
    }
}

impl SharedRateLimiter<MonotonicNanos> {
    /// Opens (or creates, empty) the limiter `name` in `dir` (default:
    /// `$SLUICE_SHM_DIR`, else `/dev/shm/sluice-<euid>`).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a config that cannot work (as the core's, plus
    /// `max_keys` over [`MAX_KEYS`] and the sliding window);
    /// [`Error::Mismatch`] naming the parameter when the existing limiter has
    /// another; [`Error::Damaged`] for a table whose bytes are not valid; any
    /// error of [`Segment::open`].
    pub fn open(dir: Option<&Path>, name: &str, config: LimiterConfig) -> Result<Arc<Self>, Error> {
        let gcra = check_config(&config)?;
        // The seed is not known before the open: `init` and `validate` do
        // not hash.
        let params = Params {
            table: table(&config, gcra, 0),
            config,
        };
        let segment = Segment::open(dir, name, &params)?;
        let table = table(&config, gcra, segment.generation());
        Ok(Arc::new(Self {
            config,
            table,
            clock: MonotonicNanos,
            home: Home::Segment(segment),
        }))
    }

    /// Removes the name: the next `open` creates a new, empty limiter.
    /// `Ok(false)` if there was none.
    ///
    /// # Errors
    ///
    /// As [`Segment::unlink`]; [`Error::Mismatch`] on `kind` if the name is
    /// another primitive.
    pub fn unlink(dir: Option<&Path>, name: &str) -> Result<bool, Error> {
        Segment::unlink::<Params>(dir, name)
    }
}

impl<C: Clock> SharedRateLimiter<C> {
    /// A limiter in this process's memory on `clock`, hashing with `seed`:
    /// the same code as a named one, for tests and for comparing with the
    /// core.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] as [`open`](SharedRateLimiter::open).
    pub fn in_memory(config: LimiterConfig, clock: C, seed: u64) -> Result<Self, Error> {
        let gcra = check_config(&config)?;
        let table = table(&config, gcra, seed);
        let bytes = table::region_bytes(config.max_keys).ok_or_else(|| Error::Invalid("too many keys".into()))?;
        let words: Box<[AtomicU64]> = (0..bytes / 8).map(|_| AtomicU64::new(0)).collect();
        // SAFETY: nobody else has the words yet.
        unsafe { table.init(Region::from_words(&words)) }?;
        Ok(Self {
            config,
            table,
            clock,
            home: Home::Local(words),
        })
    }

    fn region(&self) -> Region<'_> {
        match &self.home {
            Home::Segment(s) => s.region(),
            Home::Local(w) => Region::from_words(w),
        }
    }

    /// Checks a request and encodes its key, as the core checks it.
    fn encode(&self, key: Key<'_>, n: u64) -> Result<Encoded, RequestError> {
        self.config.check_request(key, n)?;
        Ok(key::encode(&self.table.seeds, key))
    }

    /// The parameters it was opened with.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// The limiter's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Now on the limiter's timeline (`CLOCK_MONOTONIC` ns for a named one):
    /// what `KeyReservation::ready_at` counts in.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Takes `n` tokens from `key` if they are there now and no reservation
    /// on it waits ahead, as `sluice_core::RateLimiter::try_take`.
    ///
    /// # Errors
    ///
    /// [`RequestError::TooMany`] or [`RequestError::BadKey`]; a segment
    /// error. A refusal is an `Ok` verdict with `denied` set.
    pub fn try_take(&self, key: Key<'_>, n: u64) -> Result<Verdict, LimiterError> {
        let key = self.encode(key, n)?;
        let now = self.clock.now();
        let region = self.region();
        Ok(if n == 0 {
            self.table.peek(region, &key, 0, now)
        } else {
            self.table.take(region, &key, n, now)
        }?)
    }

    /// What a take of `n` would get now, taking nothing, as
    /// `sluice_core::RateLimiter::peek`.
    ///
    /// # Errors
    ///
    /// As [`try_take`](Self::try_take).
    pub fn peek(&self, key: Key<'_>, n: u64) -> Result<Verdict, LimiterError> {
        let key = self.encode(key, n)?;
        Ok(self.table.peek(self.region(), &key, n, self.clock.now())?)
    }

    /// Reserves `n` tokens on `key`, due at the reservation's `ready_at`;
    /// reservations on one key are served in the order made. The caller
    /// keeps the reservation (and the key, to cancel it).
    ///
    /// # Errors
    ///
    /// [`RequestError`]: too many, a bad key, or no room for a new key; a
    /// segment error.
    pub fn reserve(&self, key: Key<'_>, n: u64) -> Result<KeyReservation, LimiterError> {
        let key = self.encode(key, n)?;
        self.table
            .reserve(self.region(), &key, n, self.clock.now())?
            .ok_or(LimiterError::Request(RequestError::KeysFull))
    }

    /// Gives back a reservation's tokens if it is not yet due; whether it was
    /// not yet due, as `sluice_core::RateLimiter::cancel` (a key of its shard
    /// forgotten since means no refund).
    ///
    /// # Errors
    ///
    /// A segment error (a bad key gives `Ok(false)`).
    pub fn cancel(&self, key: Key<'_>, reservation: &KeyReservation) -> Result<bool, Error> {
        let Ok(key) = self.encode(key, 0) else { return Ok(false) };
        self.table.cancel(self.region(), &key, reservation, self.clock.now())
    }

    /// Forgets `key`'s state (it starts fresh); whether it had a live one.
    ///
    /// # Errors
    ///
    /// A segment error (a bad key gives `Ok(false)`).
    pub fn reset(&self, key: Key<'_>) -> Result<bool, Error> {
        let Ok(key) = self.encode(key, 0) else { return Ok(false) };
        self.table.reset(self.region(), &key, self.clock.now())
    }

    /// Cells in use: live keys and expired ones not yet reused (a snapshot,
    /// read without locks; O(`max_keys`)).
    ///
    /// # Errors
    ///
    /// A segment error.
    pub fn size(&self) -> Result<u64, Error> {
        self.table.size(self.region())
    }

    /// Whether the name was unlinked (the limiter still works for those who
    /// hold it). Always `false` in memory.
    pub fn is_closed(&self) -> bool {
        matches!(&self.home, Home::Segment(s) if s.is_closed())
    }

    /// The segment, for the binding (`None` in memory).
    pub fn segment(&self) -> Option<&Arc<Segment>> {
        match &self.home {
            Home::Segment(s) => Some(s),
            Home::Local(_) => None,
        }
    }
}

impl<C: Clock> std::fmt::Debug for SharedRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRateLimiter")
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests;
