//! A keyed rate limiter: one limit per key (per user, per API key, per IP),
//! shared by any number of threads, bounded in memory.
//!
//! API CONTRACT (written first so the binding can be built beside it; the
//! implementation replaces every `todo!()`; signatures may only change with
//! the binding's owner agreeing).
//!
//! Two algorithms, chosen per limiter:
//! - [`Algorithm::Gcra`] (default): per key the same GCRA as
//!   [`TokenBucket`](crate::TokenBucket), one theoretical arrival time.
//! - [`Algorithm::SlidingWindow`]: the two-window weighted estimate. With
//!   `limit = capacity` and `window = capacity * interval`, a request of `n`
//!   at a fraction `f` into window `k` conforms when
//!   `count[k - 1] * (1 - f) + count[k] + n <= limit`.
//!
//! A cell whose state equals a fresh key's may be dropped at any moment (it
//! changes no decision); `max_keys` caps the live cells, and
//! [`WhenFull`] says what a new key gets when every cell is live.

use std::fmt;

use crate::clock::{Clock, MonotonicClock};

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
    /// starts fresh, which may let it through early).
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
    /// Most live cells; at least 1.
    pub max_keys: u64,
    /// What a new key gets when `max_keys` cells are live.
    pub when_full: WhenFull,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `None` when allowed (for `peek`: when a take of 1 would be).
    pub denied: Option<Denied>,
    /// Whole tokens left for the key after this decision.
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
    /// `capacity * interval_nanos` does not fit in 64 bits of nanoseconds.
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
}

impl KeyReservation {
    /// Nanoseconds to wait from `now` (zero if already due).
    pub fn wait(&self, now: u64) -> u64 {
        self.ready_at.saturating_sub(now)
    }
}

/// A keyed rate limiter shared by any number of threads.
pub struct RateLimiter<C: Clock = MonotonicClock> {
    config: LimiterConfig,
    clock: C,
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
        let _ = (config, clock);
        todo!()
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
    /// # Errors
    ///
    /// [`RequestError::TooMany`] or [`RequestError::BadKey`]; a refusal is an
    /// `Ok` decision with `denied` set.
    pub fn try_take(&self, key: Key<'_>, n: u64) -> Result<Verdict, RequestError> {
        let _ = (key, n);
        todo!()
    }

    /// What a take of `n` would get now, taking nothing.
    ///
    /// # Errors
    ///
    /// As [`try_take`](Self::try_take).
    pub fn peek(&self, key: Key<'_>, n: u64) -> Result<Verdict, RequestError> {
        let _ = (key, n);
        todo!()
    }

    /// Reserves `n` tokens on `key`, due at the reservation's `ready_at`
    /// (now, if they are there). Reservations on one key are served in the
    /// order made.
    ///
    /// # Errors
    ///
    /// [`RequestError`]: too many, a bad key, or no room for a new key.
    pub fn reserve(&self, key: Key<'_>, n: u64) -> Result<KeyReservation, RequestError> {
        let _ = (key, n);
        todo!()
    }

    /// Gives back a reservation's tokens if it is not yet due; whether it did.
    pub fn cancel(&self, key: Key<'_>, reservation: &KeyReservation) -> bool {
        let _ = (key, reservation);
        todo!()
    }

    /// Forgets `key`'s state (it starts fresh); whether it had any.
    pub fn reset(&self, key: Key<'_>) -> bool {
        let _ = key;
        todo!()
    }

    /// Cells stored now, live or not yet dropped.
    pub fn len(&self) -> usize {
        todo!()
    }

    /// Whether no cell is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
            LimiterConfigError::Overflow => f.write_str("capacity times interval overflows 64-bit nanoseconds"),
        }
    }
}

impl std::error::Error for RequestError {}
impl std::error::Error for LimiterConfigError {}
