//! The engine of sluice: concurrency primitives written against plain atomics,
//! with no dependency on Node.
//!
//! - [`ArrayQueue`]: a bounded lock-free MPMC queue (Vyukov's algorithm).
//! - [`Channel`]: a bounded, closeable MPMC channel: an `ArrayQueue` plus two
//!   semaphores (free room, queued messages) whose waiters live outside Rust.
//! - [`Semaphore`]: a fair, weighted, closeable semaphore whose waiters are
//!   woken by the caller, however it likes.
//! - [`TokenBucket`]: a GCRA rate limiter on one atomic word.
//! - [`RateLimiter`]: a keyed rate limiter (GCRA or sliding window per key),
//!   sharded and bounded in keys.
//!
//! Every primitive is safe to share between OS threads (`Send + Sync`) and never
//! blocks: operations that cannot complete at once hand back a decision (queue a
//! waiter, report which owners to wake, say how long to wait) and leave the
//! waiting to the caller. That is what lets the Node binding wait on an event
//! loop instead of a thread.
//!
//! # Layout
//!
//! One primitive per module; the modules depend on each other in one
//! direction only (no circle):
//!
//! ```text
//! channel ──> semaphore ──> wait_queue ──> fx_hash
//!    │            ├───────> fx_hash, cache_padded, sync
//!    └──> array_queue ──> backoff ──> sync
//!                  └───> cache_padded, sync
//! token_bucket ──> clock ──> sync;  token_bucket ──> cache_padded, sync
//! rate_limiter ──> clock, cache_padded, sync (+ hashbrown, foldhash)
//! ```

#![warn(missing_docs)]

pub mod array_queue;
mod backoff;
mod cache_padded;
pub mod channel;
pub mod clock;
mod fx_hash;
pub mod rate_limiter;
pub mod semaphore;
mod sync;
pub mod token_bucket;
mod wait_queue;

pub use array_queue::{AllocError, ArrayQueue};
pub use channel::{Channel, ClaimError, SendError, TryRecvError, TrySendError};
pub use clock::{Clock, FakeClock, MonotonicClock};
pub use rate_limiter::{
    Algorithm, Denied, Key, KeyBuf, KeyReservation, LimiterConfig, LimiterConfigError, RateLimiter, RequestError,
    Verdict, WhenFull, MAX_KEY_BYTES,
};
pub use semaphore::{
    Acquire, AcquireError, AdoptError, CapacityOverflow, Decision, Fairness, Grant, Owner, Refusal, ReleaseError,
    Semaphore, Token, TryAcquireError, FAIR_AFTER_NANOS, MAX_PERMITS,
};
pub use token_bucket::{BucketConfigError, Reservation, TakeError, TokenBucket, MAX_BURST_NANOS};
