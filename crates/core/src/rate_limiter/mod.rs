//! A keyed rate limiter: one limit per key (per user, per API key, per IP),
//! shared by any number of threads, bounded in memory.
//!
//! Two algorithms, chosen per limiter:
//! - [`Algorithm::Gcra`] (default): per key the same GCRA as
//!   [`TokenBucket`](crate::TokenBucket), one theoretical arrival time
//!   (see `gcra.rs`).
//! - [`Algorithm::SlidingWindow`]: the two-window weighted estimate. With
//!   `limit = capacity` and `window = capacity * interval`, a request of `n`
//!   at a fraction `f` into window `k` conforms when
//!   `count[k - 1] * (1 - f) + count[k] + n <= limit` (see `window.rs`).
//!
//! Both serve reservations FIFO per key: a [`RateLimiter::try_take`] is
//! refused while a reservation on its key waits ahead.
//!
//! A cell whose state equals a fresh key's may be dropped at any moment (it
//! changes no decision); `max_keys` caps the cells, and [`WhenFull`] says
//! what a new key gets when every cell is live.
//!
//! # Taking nothing
//!
//! `n == 0` is a valid probe: [`RateLimiter::try_take`] of 0 is
//! [`RateLimiter::peek`] of 0 (allowed unless a reservation waits ahead),
//! and [`RateLimiter::reserve`] of 0 is due when the key's earlier
//! reservations are; neither stores a cell for the key nor marks it used.
//!
//! # Implementation
//!
//! `table.rs` is the sharded table of cells (hashing, the `max_keys` cap,
//! eviction, dropping expired cells), generic over a `Rule`, the
//! per-key algorithm: `gcra.rs` or `window.rs`. `key.rs` stores a key in 16
//! bytes. Every operation hashes the key, locks one shard, reads or writes
//! one cell, and unlocks; the clock is read before the lock and raised to the
//! latest time the shard has seen, so time never goes back for a cell.
//!
//! A limiter of `max_keys` of 2048 or more is split into up to 64 shards
//! (at least 1024 keys each), and `max_keys` is split exactly between them:
//! a new key may find its own shard full a little before the whole table
//! is, and eviction takes the least recently used key of that shard.

use std::fmt;

use crate::clock::{Clock, MonotonicClock};
use crate::token_bucket::MAX_BURST_NANOS;

mod gcra;
mod key;
mod table;
mod window;

pub use gcra::Gcra;
use table::Table;
use window::Window;

/// Longest key, in bytes (a string key is its UTF-8).
pub const MAX_KEY_BYTES: usize = 512;

/// A key: an integer or a byte string. `Int(1)` and `Bytes(b"1")` are
/// different keys (as in a JavaScript `Map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// A safe integer.
    Int(i64),
    /// 1..=MAX_KEY_BYTES bytes.
    Bytes(&'a [u8]),
}

/// An owned [`Key`], for remembering which key a reservation was made on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyBuf {
    /// A safe integer.
    Int(i64),
    /// 1..=MAX_KEY_BYTES bytes.
    Bytes(Box<[u8]>),
}

impl KeyBuf {
    /// The borrowed form.
    pub fn as_key(&self) -> Key<'_> {
        match self {
            KeyBuf::Int(i) => Key::Int(*i),
            KeyBuf::Bytes(b) => Key::Bytes(b),
        }
    }
}

impl From<Key<'_>> for KeyBuf {
    fn from(key: Key<'_>) -> Self {
        match key {
            Key::Int(i) => KeyBuf::Int(i),
            Key::Bytes(b) => KeyBuf::Bytes(b.into()),
        }
    }
}

/// How a limiter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Generic cell rate algorithm: a token bucket per key.
    #[default]
    Gcra,
    /// Two-window weighted estimate over windows of `capacity * interval`.
    SlidingWindow,
}

/// What a new key gets when `max_keys` cells are live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Refuse it ([`Denied::KeysFull`]); live keys keep their state.
    #[default]
    Refuse,
    /// Drop the least recently used live cell to make room (that key then
    /// starts fresh, which may let it through early). Least recently used
    /// among the keys of the new key's shard (see the module docs): exact
    /// for a `max_keys` under 2048.
    EvictLeastRecent,
}

/// A limiter's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// Burst (GCRA) or limit per window (sliding window); at least 1.
    pub capacity: u64,
    /// Nanoseconds to refill one token (GCRA); the window is
    /// `capacity * interval_nanos` (sliding window). At least 1.
    pub interval_nanos: u64,
    /// How to count.
    pub algorithm: Algorithm,
    /// Most cells (live or not yet dropped); at least 1. Split exactly
    /// between the table's shards.
    pub max_keys: u64,
    /// What a new key gets when `max_keys` cells are live.
    pub when_full: WhenFull,
}

impl LimiterConfig {
    /// Checks a request against this configuration: the key's length and
    /// `n` against the capacity (every limiter on it, in memory or shared,
    /// refuses the same requests).
    ///
    /// # Errors
    ///
    /// [`RequestError::BadKey`] for an empty or too long key,
    /// [`RequestError::TooMany`] for `n` over the capacity.
    pub fn check_request(&self, key: Key<'_>, n: u64) -> Result<(), RequestError> {
        if let Key::Bytes(b) = key {
            if b.is_empty() || b.len() > MAX_KEY_BYTES {
                return Err(RequestError::BadKey);
            }
        }
        if n > self.capacity {
            return Err(RequestError::TooMany {
                requested: n,
                capacity: self.capacity,
            });
        }
        Ok(())
    }
}

/// Why a request was not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The key is over its limit now.
    Limited,
    /// A new key, and `max_keys` cells are live ([`WhenFull::Refuse`]).
    KeysFull,
}

/// The answer to [`RateLimiter::try_take`] or [`RateLimiter::peek`]; times
/// in nanoseconds.
///
/// A [`Denied::KeysFull`] answer says nothing about the key's own limit:
/// `remaining` 0, `reset_after` 0, and `retry_after` one `interval_nanos`
/// (a hint: cells expire all the time, so a later attempt may find room).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `None` when allowed (for `peek`: when a take of the same `n` would be).
    pub denied: Option<Denied>,
    /// Whole tokens left for the key after this decision (for `peek`, and
    /// for a refusal: left now); 0 while a reservation waits ahead.
    pub remaining: u64,
    /// Until a request of the same size would be allowed (0 when allowed).
    pub retry_after: u64,
    /// Until the key is back to a fresh key's state (full bucket / empty windows).
    pub reset_after: u64,
}

/// A request the limiter cannot serve at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// More tokens than `capacity`: it could never be allowed.
    TooMany {
        /// Tokens asked for.
        requested: u64,
        /// The limiter's capacity.
        capacity: u64,
    },
    /// A new key, and `max_keys` cells are live ([`WhenFull::Refuse`]);
    /// only from [`RateLimiter::reserve`] (`try_take` answers [`Denied::KeysFull`]).
    KeysFull,
    /// An empty key, or one over [`MAX_KEY_BYTES`].
    BadKey,
}

/// A configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterConfigError {
    /// Capacity must be at least 1.
    ZeroCapacity,
    /// The interval must be at least 1 ns.
    ZeroInterval,
    /// `max_keys` must be at least 1.
    ZeroMaxKeys,
    /// `capacity * interval_nanos` is over [`MAX_BURST_NANOS`].
    Overflow,
}

/// Tokens promised to a key by [`RateLimiter::reserve`], due at `ready_at`.
/// Cancel it with the same key it was made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reservation is owed its tokens: wait for it or cancel it"]
pub struct KeyReservation {
    /// Tokens reserved.
    pub tokens: u64,
    /// When they are there, in nanoseconds on the limiter's clock.
    pub ready_at: u64,
    /// Live cells its shard had forgotten when it was made (see `cancel`).
    forgotten: u64,
}

impl KeyReservation {
    /// A reservation made by a limiter stored elsewhere (`sluice-shm`'s, in
    /// memory shared by processes): `forgotten` is its shard's count of live
    /// keys forgotten (reset or evicted) once it was made, which its cancel
    /// must find unchanged to refund.
    pub fn from_parts(tokens: u64, ready_at: u64, forgotten: u64) -> Self {
        Self {
            tokens,
            ready_at,
            forgotten,
        }
    }

    /// The shard's count of forgotten live keys when it was made (see
    /// [`from_parts`](Self::from_parts)).
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Nanoseconds to wait from `now` (zero if already due).
    pub fn wait(&self, now: u64) -> u64 {
        self.ready_at.saturating_sub(now)
    }
}

/// A keyed rate limiter shared by any number of threads.
///
/// # Examples
///
/// ```
/// use sluice_core::{Algorithm, Denied, FakeClock, Key, LimiterConfig, RateLimiter, WhenFull};
///
/// // 2 requests of burst per key, one more every 100 ns.
/// let config = LimiterConfig {
///     capacity: 2,
///     interval_nanos: 100,
///     algorithm: Algorithm::Gcra,
///     max_keys: 10_000,
///     when_full: WhenFull::EvictLeastRecent,
/// };
/// let limiter = RateLimiter::with_clock(config, FakeClock::new(0)).unwrap();
/// let alice = Key::Bytes(b"user:alice");
/// assert_eq!(limiter.try_take(alice, 2).unwrap().denied, None);
/// let refused = limiter.try_take(alice, 1).unwrap();
/// assert_eq!(refused.denied, Some(Denied::Limited));
/// assert_eq!(refused.retry_after, 100);
/// // Another key has its own limit.
/// assert_eq!(limiter.try_take(Key::Int(7), 1).unwrap().remaining, 1);
/// limiter.clock().advance(100);
/// assert_eq!(limiter.try_take(alice, 1).unwrap().denied, None);
/// ```
///
/// # Memory ordering
///
/// Each key's cell is read and written under its shard's [`Mutex`](std::sync::Mutex):
/// every decision on one key is totally ordered, and the limiter publishes no
/// data beyond its decisions.
pub struct RateLimiter<C: Clock = MonotonicClock> {
    config: LimiterConfig,
    clock: C,
    engine: Engine,
}

/// The table, typed by algorithm.
enum Engine {
    Gcra(Table<Gcra>),
    /// Sliding window with a capacity that fits `u32` counts.
    Window(Table<Window<u32>>),
    /// Sliding window with a capacity over `u32::MAX`.
    WideWindow(Table<Window<u64>>),
}

/// Runs `$body` with `$t` bound to the limiter's table, whichever algorithm.
macro_rules! with_table {
    ($self:ident, $t:ident => $body:expr) => {
        match &$self.engine {
            Engine::Gcra($t) => $body,
            Engine::Window($t) => $body,
            Engine::WideWindow($t) => $body,
        }
    };
}

impl RateLimiter<MonotonicClock> {
    /// A limiter on the process's monotonic clock.
    ///
    /// # Errors
    ///
    /// [`LimiterConfigError`] for a configuration that cannot work.
    pub fn new(config: LimiterConfig) -> Result<Self, LimiterConfigError> {
        Self::with_clock(config, MonotonicClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter reading time from `clock`.
    ///
    /// # Errors
    ///
    /// [`LimiterConfigError`] for a configuration that cannot work.
    pub fn with_clock(config: LimiterConfig, clock: C) -> Result<Self, LimiterConfigError> {
        if config.capacity == 0 {
            return Err(LimiterConfigError::ZeroCapacity);
        }
        if config.interval_nanos == 0 {
            return Err(LimiterConfigError::ZeroInterval);
        }
        if config.max_keys == 0 {
            return Err(LimiterConfigError::ZeroMaxKeys);
        }
        let burst = config
            .capacity
            .checked_mul(config.interval_nanos)
            .filter(|&burst| burst <= MAX_BURST_NANOS)
            .ok_or(LimiterConfigError::Overflow)?;
        let (max_keys, when_full, retry) = (config.max_keys, config.when_full, config.interval_nanos);
        let engine = match config.algorithm {
            Algorithm::Gcra => Engine::Gcra(Table::new(
                Gcra {
                    interval: config.interval_nanos,
                    burst,
                },
                max_keys,
                when_full,
                retry,
            )),
            Algorithm::SlidingWindow if config.capacity <= u64::from(u32::MAX) => Engine::Window(Table::new(
                Window::new(config.capacity, burst),
                max_keys,
                when_full,
                retry,
            )),
            Algorithm::SlidingWindow => Engine::WideWindow(Table::new(
                Window::new(config.capacity, burst),
                max_keys,
                when_full,
                retry,
            )),
        };
        Ok(Self { config, clock, engine })
    }

    /// Checks a request: the key's length and `n` against the capacity.
    fn check(&self, key: Key<'_>, n: u64) -> Result<(), RequestError> {
        self.config.check_request(key, n)
    }

    /// The parameters it was made with.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// The limiter's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Takes `n` tokens from `key` if they are there now and no reservation
    /// on that key is waiting ahead.
    ///
    /// # Examples
    ///
    /// A sliding window of 4 per 40 ns: the previous window weighs by how
    /// much of it the last 40 ns still cover.
    ///
    /// ```
    /// # use sluice_core::{Algorithm, Denied, FakeClock, Key, LimiterConfig, RateLimiter, WhenFull};
    /// # let config = LimiterConfig { capacity: 4, interval_nanos: 10, algorithm: Algorithm::SlidingWindow,
    /// #     max_keys: 100, when_full: WhenFull::Refuse };
    /// # let limiter = RateLimiter::with_clock(config, FakeClock::new(0)).unwrap();
    /// let ip = Key::Bytes(b"203.0.113.9");
    /// assert_eq!(limiter.try_take(ip, 4).unwrap().remaining, 0);
    /// limiter.clock().advance(50); // 10 ns into the next window: 4 * 0.75 = 3
    /// let verdict = limiter.try_take(ip, 2).unwrap();
    /// assert_eq!(verdict.denied, Some(Denied::Limited));
    /// assert_eq!(verdict.remaining, 1);
    /// assert_eq!(verdict.retry_after, 10); // 4 * 0.5 + 2 = 4
    /// assert_eq!(limiter.try_take(ip, 1).unwrap().denied, None);
    /// ```
    ///
    /// # Errors
    ///
    /// [`RequestError::TooMany`] or [`RequestError::BadKey`]; a refusal is an
    /// `Ok` decision with `denied` set.
    pub fn try_take(&self, key: Key<'_>, n: u64) -> Result<Verdict, RequestError> {
        self.check(key, n)?;
        let now = self.clock.now();
        Ok(with_table!(self, t => if n == 0 { t.peek(key, 0, now) } else { t.take(key, n, now) }))
    }

    /// What a take of `n` would get now, taking nothing: a new key with no
    /// room for its cell (`max_keys` cells live, [`WhenFull::Refuse`]) is
    /// answered [`Denied::KeysFull`] for `n >= 1`, as a take would be.
    /// Peeking stores no cell and does not count as using the key.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluice_core::{Algorithm, Denied, FakeClock, Key, LimiterConfig, RateLimiter, WhenFull};
    /// # let config = LimiterConfig { capacity: 4, interval_nanos: 10, algorithm: Algorithm::Gcra,
    /// #     max_keys: 100, when_full: WhenFull::Refuse };
    /// # let limiter = RateLimiter::with_clock(config, FakeClock::new(0)).unwrap();
    /// let key = Key::Int(1);
    /// limiter.try_take(key, 3).unwrap();
    /// let verdict = limiter.peek(key, 2).unwrap();
    /// assert_eq!((verdict.denied, verdict.remaining, verdict.retry_after), (Some(Denied::Limited), 1, 10));
    /// assert_eq!(limiter.peek(key, 1).unwrap().remaining, 1, "peeking took nothing");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`try_take`](Self::try_take).
    pub fn peek(&self, key: Key<'_>, n: u64) -> Result<Verdict, RequestError> {
        self.check(key, n)?;
        let now = self.clock.now();
        Ok(with_table!(self, t => t.peek(key, n, now)))
    }

    /// Reserves `n` tokens on `key`, due at the reservation's `ready_at`
    /// (now, if they are there). Reservations on one key are served in the
    /// order made.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluice_core::{Algorithm, Denied, FakeClock, Key, LimiterConfig, RateLimiter, WhenFull};
    /// # let config = LimiterConfig { capacity: 4, interval_nanos: 10, algorithm: Algorithm::Gcra,
    /// #     max_keys: 100, when_full: WhenFull::Refuse };
    /// # let limiter = RateLimiter::with_clock(config, FakeClock::new(0)).unwrap();
    /// let key = Key::Bytes(b"api-key-1");
    /// limiter.try_take(key, 4).unwrap();
    /// let first = limiter.reserve(key, 2).unwrap();
    /// assert_eq!(first.ready_at, 20);
    /// // A take waits behind the reservation, whatever its size.
    /// assert_eq!(limiter.try_take(key, 1).unwrap().retry_after, 30);
    /// assert!(limiter.cancel(key, &first), "not yet due: withdrawn");
    /// limiter.clock().advance(10);
    /// assert_eq!(limiter.try_take(key, 1).unwrap().denied, None);
    /// ```
    ///
    /// # Errors
    ///
    /// [`RequestError`]: too many, a bad key, or no room for a new key.
    pub fn reserve(&self, key: Key<'_>, n: u64) -> Result<KeyReservation, RequestError> {
        self.check(key, n)?;
        let now = self.clock.now();
        let made = with_table!(self, t => if n == 0 {
            // Nothing to refund: the count does not matter.
            Some((t.reserve_nothing(key, now), 0))
        } else {
            t.reserve(key, n, now)
        });
        match made {
            Some((ready_at, forgotten)) => Ok(KeyReservation {
                tokens: n,
                ready_at,
                forgotten,
            }),
            None => Err(RequestError::KeysFull),
        }
    }

    /// Gives back a reservation's tokens if it is not yet due; whether it
    /// was not yet due (then it is withdrawn).
    ///
    /// GCRA moves the key's `tat` back by the tokens, as
    /// [`TokenBucket::cancel`](crate::TokenBucket::cancel): exact for the
    /// latest reservation, and for an earlier one the later ones keep their
    /// due times. The sliding window takes the tokens out of the count of the
    /// reservation's window when the key's cell still keeps that window (the
    /// window of its latest request or the one before), and otherwise gives
    /// back nothing, which never over-grants; takes still wait until the
    /// latest reservation's due time. Cancel each reservation once, on the
    /// key it was made on. Once a live key of its shard has been reset or
    /// evicted since the reservation was made, the cancel gives back
    /// nothing: the key's state may be a new one that never counted these
    /// tokens (a rare loss of a refund, never an over-grant).
    pub fn cancel(&self, key: Key<'_>, reservation: &KeyReservation) -> bool {
        if self.check(key, 0).is_err() {
            return false;
        }
        let now = self.clock.now();
        with_table!(self, t => t.cancel(key, reservation, now))
    }

    /// Forgets `key`'s state (it starts fresh); whether it had any (a live
    /// cell: an expired one decided as a fresh key already).
    pub fn reset(&self, key: Key<'_>) -> bool {
        if self.check(key, 0).is_err() {
            return false;
        }
        let now = self.clock.now();
        with_table!(self, t => t.reset(key, now))
    }

    /// Drops every expired cell now; how many. The table also does this on
    /// its own, before it grows and when a new key finds it full, so calling
    /// this is never needed for correctness, only to give memory back sooner
    /// (after a burst of keys that then went quiet, say).
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluice_core::{Algorithm, Denied, FakeClock, Key, LimiterConfig, RateLimiter, WhenFull};
    /// # let config = LimiterConfig { capacity: 4, interval_nanos: 10, algorithm: Algorithm::Gcra,
    /// #     max_keys: 100, when_full: WhenFull::Refuse };
    /// # let limiter = RateLimiter::with_clock(config, FakeClock::new(0)).unwrap();
    /// for user in 0..10 {
    ///     limiter.try_take(Key::Int(user), 1).unwrap();
    /// }
    /// assert!(limiter.reset(Key::Int(0)));
    /// assert_eq!(limiter.len(), 9);
    /// limiter.clock().advance(10); // every bucket is full again
    /// assert_eq!(limiter.purge(), 9);
    /// assert!(limiter.is_empty());
    /// ```
    pub fn purge(&self) -> usize {
        let now = self.clock.now();
        with_table!(self, t => t.purge(now))
    }

    /// Cells stored now, live or not yet dropped.
    pub fn len(&self) -> usize {
        with_table!(self, t => t.len())
    }

    /// Whether no cell is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<C: Clock> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("cells", &self.len())
            .finish()
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooMany { requested, capacity } => {
                write!(f, "requested {requested} tokens from a limit of {capacity}")
            }
            RequestError::KeysFull => f.write_str("every key cell is in use (max_keys)"),
            RequestError::BadKey => write!(f, "a key must be 1 to {MAX_KEY_BYTES} bytes"),
        }
    }
}

impl fmt::Display for LimiterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimiterConfigError::ZeroCapacity => f.write_str("capacity must be at least 1"),
            LimiterConfigError::ZeroInterval => f.write_str("the refill interval must be at least 1 ns"),
            LimiterConfigError::ZeroMaxKeys => f.write_str("max_keys must be at least 1"),
            LimiterConfigError::Overflow => f.write_str("capacity times interval is over 2^63 - 1 ns"),
        }
    }
}

impl std::error::Error for RequestError {}
impl std::error::Error for LimiterConfigError {}
