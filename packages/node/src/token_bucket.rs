//! `NativeTokenBucket`: one thread's handle to a shared GCRA bucket.
//!
//! Waiting for tokens needs no doorbell: `reserve` tells the waiting thread
//! how long to wait, and it sets a timer. Reservations are FIFO by
//! construction (see `sluice_core::token_bucket`). The thread's pending
//! reservations are remembered here so that a thread that dies mid-wait gives
//! its not-yet-due tokens back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use napi::sys::{self, napi_env, napi_value};
use napi::{Env, Error, Result, Status};
use napi_derive::napi;
use sluice_core::{Clock, MonotonicClock, Reservation, TakeError, TokenBucket};

use crate::attachment::{attached_class, Attachment, Primitive};
use crate::named_bucket::BucketArg;
use crate::raw::{self, code, entry, Count, Token};

/// This thread's reservations that are not yet due, by wait token.
#[derive(Default)]
pub(crate) struct Pending(RefCell<HashMap<u64, Reservation>>);

impl Primitive for TokenBucket {
    type Local = Pending;

    const TAG: sys::napi_type_tag = sys::napi_type_tag {
        lower: 0x7b0c_4e2a_91d3_5f68,
        upper: 0x2e5d_a8c1_07f4_b93a,
    };

    fn detach(&self, _slot: u32, pending: &Pending) {
        for (_, reservation) in pending.0.borrow_mut().drain() {
            self.cancel(&reservation);
        }
    }
}

type BucketAttachment = Attachment<TokenBucket>;

#[napi]
pub struct NativeTokenBucket {
    attachment: Rc<BucketAttachment>,
}

#[napi]
impl NativeTokenBucket {
    /// A full bucket of `capacity` tokens, one more every `interval_nanos`.
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, capacity: f64, interval_nanos: f64) -> Result<Self> {
        let (Some(capacity), Some(interval_nanos)) = (
            raw::positive_safe_integer(capacity),
            raw::positive_safe_integer(interval_nanos),
        ) else {
            return Err(Error::new(
                Status::InvalidArg,
                "capacity and interval must be positive integers",
            ));
        };
        let core = TokenBucket::with_clock(capacity, interval_nanos, Default::default())
            .map_err(|error| Error::new(Status::InvalidArg, error.to_string()))?;
        Self::attach(&env, core)
    }

    /// A bucket moved here from JavaScript (where an unshared bucket lives):
    /// full again `full_in_nanos` from now, with this thread's pending
    /// reservations as flat `[token, tokens, due_in_nanos, ...]` triples. All
    /// are placed against one reading of the clock, which comes after the
    /// caller's: the bucket loses the nanoseconds between the two readings of
    /// refill, and never gains any.
    #[napi(factory, catch_unwind)]
    pub fn adopt(env: Env, capacity: f64, interval_nanos: f64, full_in_nanos: f64, pending: Vec<f64>) -> Result<Self> {
        let nanos = |x: f64| (x.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&x)).then_some(x as u64);
        let (Some(capacity), Some(interval), Some(full_in)) =
            (nanos(capacity), nanos(interval_nanos), nanos(full_in_nanos))
        else {
            return Err(Error::new(
                Status::InvalidArg,
                "capacity, interval and full_in must be safe non-negative integers",
            ));
        };
        if !pending.len().is_multiple_of(3) {
            return Err(Error::new(
                Status::InvalidArg,
                "pending must be [token, tokens, due_in] triples",
            ));
        }
        let clock = MonotonicClock::default();
        let now = clock.now();
        let core = TokenBucket::with_clock_at(capacity, interval, clock, now + full_in)
            .map_err(|error| Error::new(Status::InvalidArg, error.to_string()))?;
        let mut reservations = Vec::with_capacity(pending.len() / 3);
        for triple in pending.chunks_exact(3) {
            let (Some(token), Some(tokens), Some(due_in)) = (nanos(triple[0]), nanos(triple[1]), nanos(triple[2]))
            else {
                return Err(Error::new(
                    Status::InvalidArg,
                    "pending must hold safe non-negative integers",
                ));
            };
            reservations.push((
                token,
                Reservation {
                    tokens,
                    ready_at: now + due_in,
                },
            ));
        }
        let adopted = Self::attach(&env, core)?;
        // Remembered as `reserve` remembers them: a thread that dies mid-wait
        // gives these back too.
        adopted.attachment.local.0.borrow_mut().extend(reservations);
        Ok(adopted)
    }

    #[napi(getter)]
    pub fn capacity(&self) -> f64 {
        self.core().capacity() as f64
    }

    #[napi(getter)]
    pub fn interval_nanos(&self) -> f64 {
        self.core().interval() as f64
    }

    #[napi(getter)]
    pub fn available(&self) -> f64 {
        self.core().available() as f64
    }

    /// Reservations of this thread still waiting.
    #[napi(getter)]
    pub fn pending(&self) -> u32 {
        self.attachment.local.0.borrow().len() as u32
    }
}

attached_class!(NativeTokenBucket, TokenBucket, "token bucket");

pub(crate) const RAW: [(&CStr, sys::napi_callback); 4] = [
    (c"bucketTryTake", entry!(try_take)),
    (c"bucketReserve", entry!(reserve)),
    (c"bucketRedeem", entry!(redeem)),
    (c"bucketCancel", entry!(cancel)),
];

/// `bucketTryTake(handle, n) -> 0 | 1`.
fn try_take(env: napi_env, bucket: BucketArg, Count(n): Count) -> napi_value {
    let attachment = match bucket {
        BucketArg::Local(attachment) => attachment,
        BucketArg::Named(named) => return named.try_take(env, n as u64),
    };
    match attachment.shared.primitive.try_take(n as u64) {
        Ok(()) => raw::code(env, code::DONE),
        Err(TakeError::Insufficient { .. }) => raw::code(env, code::NOT_NOW),
        Err(error) => raw::throw_range(env, &error.to_string()),
    }
}

/// `bucketReserve(handle, n, token) -> nanoseconds to wait`. A reservation that
/// is due at once is not remembered (its tokens are taken).
fn reserve(env: napi_env, bucket: BucketArg, Count(n): Count, Token(token): Token) -> napi_value {
    let attachment = match bucket {
        BucketArg::Local(attachment) => attachment,
        BucketArg::Named(named) => return named.reserve(env, n as u64, token),
    };
    let bucket = &attachment.shared.primitive;
    match bucket.reserve(n as u64) {
        Ok(reservation) => {
            let wait = reservation.wait(bucket.clock().now());
            if wait > 0 {
                attachment.local.0.borrow_mut().insert(token, reservation);
            }
            raw::number(env, wait as f64)
        }
        Err(error) => raw::throw_range(env, &error.to_string()),
    }
}

/// `bucketRedeem(handle, token)`: the wait ended (its timer fired); forget it.
fn redeem(env: napi_env, bucket: BucketArg, Token(token): Token) -> napi_value {
    let attachment = match bucket {
        BucketArg::Local(attachment) => attachment,
        BucketArg::Named(named) => return named.redeem(env, token),
    };
    attachment.local.0.borrow_mut().remove(&token);
    raw::null(env)
}

/// `bucketCancel(handle, token) -> boolean`: gives a pending reservation's
/// tokens back; false if it was unknown or already due.
fn cancel(env: napi_env, bucket: BucketArg, Token(token): Token) -> napi_value {
    let attachment = match bucket {
        BucketArg::Local(attachment) => attachment,
        BucketArg::Named(named) => return named.cancel(env, token),
    };
    let reservation = attachment.local.0.borrow_mut().remove(&token);
    let refunded = reservation.is_some_and(|r| attachment.shared.primitive.cancel(&r));
    raw::code(env, u32::from(refunded))
}
