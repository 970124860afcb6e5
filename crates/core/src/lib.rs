//! The engine of sluice: concurrency primitives written against plain atomics,
//! with no dependency on Node.
//!
//! Every primitive is safe to share between OS threads (`Send + Sync`) and never
//! blocks: operations that cannot complete at once hand back a decision (queue a
//! waiter, report which owners to wake) and leave the waiting to the caller. That
//! is what lets the Node binding wait on an event loop instead of a thread.

#![warn(missing_docs)]

mod cache_padded;
pub mod semaphore;
mod sync;
mod wait_queue;

pub use semaphore::{
    Acquire, Grant, Misuse, Owner, Semaphore, Token, TryAcquireError, MAX_PERMITS,
};
