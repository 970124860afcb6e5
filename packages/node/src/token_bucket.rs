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

use napi::sys::{self, napi_callback_info, napi_env, napi_value};
use napi::{Env, Error, Result, Status};
use napi_derive::napi;
use sluice_core::{Clock, Reservation, TakeError, TokenBucket};

use crate::attachment::{Attachment, Primitive};
use crate::raw::{self, code, guarded, Call};
use crate::registry::Shared;

/// This thread's reservations that are not yet due, by wait token.
#[derive(Default)]
pub(crate) struct Pending(RefCell<HashMap<u64, Reservation>>);

impl Primitive for TokenBucket {
    type Local = Pending;

    fn detach(&self, _slot: u32, pending: &Pending) {
        for (_, reservation) in pending.0.borrow_mut().drain() {
            self.cancel(&reservation);
        }
    }
}

type BucketAttachment = Attachment<TokenBucket>;

const TAG: sys::napi_type_tag = sys::napi_type_tag {
    lower: 0x7b0c_4e2a_91d3_5f68,
    upper: 0x2e5d_a8c1_07f4_b93a,
};

#[napi]
pub struct NativeTokenBucket {
    attachment: Rc<BucketAttachment>,
}

#[napi]
impl NativeTokenBucket {
    /// A full bucket of `capacity` tokens, one more every `interval_nanos`.
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, capacity: f64, interval_nanos: f64) -> Result<Self> {
        let valid = |x: f64| x.fract() == 0.0 && (1.0..=9_007_199_254_740_991.0).contains(&x);
        if !valid(capacity) || !valid(interval_nanos) {
            return Err(Error::new(
                Status::InvalidArg,
                "capacity and interval must be positive integers",
            ));
        }
        let core = TokenBucket::with_clock(capacity as u64, interval_nanos as u64, Default::default())
            .map_err(|error| Error::new(Status::InvalidArg, error.to_string()))?;
        Ok(Self {
            attachment: Attachment::get_or_attach(&env, Shared::create(core))?,
        })
    }

    #[napi(factory, catch_unwind)]
    pub fn from_id(env: Env, id: f64) -> Result<Self> {
        Ok(Self {
            attachment: Attachment::by_id(&env, id, "token bucket")?,
        })
    }

    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.attachment.shared.id as f64
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

    #[napi(ts_return_type = "object")]
    pub fn fast_handle(&self, env: Env) -> Result<sys::napi_value> {
        raw::external(env.raw(), &self.attachment, &TAG)
    }

    fn core(&self) -> &TokenBucket {
        &self.attachment.shared.primitive
    }
}

pub(crate) const RAW: [(&CStr, sys::napi_callback); 4] = [
    (c"bucketTryTake", guarded!(try_take)),
    (c"bucketReserve", guarded!(reserve)),
    (c"bucketSettle", guarded!(settle)),
    (c"bucketCancel", guarded!(cancel)),
];

/// `bucketTryTake(handle, n) -> 0 | 1`.
unsafe fn try_take(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let (Some(attachment), Some(n)) = (call.handle::<BucketAttachment>(0, &TAG), call.count(1)) else {
        return std::ptr::null_mut();
    };
    match attachment.shared.primitive.try_take(n as u64) {
        Ok(()) => raw::code(env, code::DONE),
        Err(TakeError::Insufficient { .. }) => raw::code(env, code::NOT_NOW),
        Err(error) => raw::throw_range(env, &error.to_string()),
    }
}

/// `bucketReserve(handle, n, token) -> nanoseconds to wait`. A reservation that
/// is due at once is not remembered (its tokens are taken).
unsafe fn reserve(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let (Some(attachment), Some(n), Some(token)) =
        (call.handle::<BucketAttachment>(0, &TAG), call.count(1), call.token(2))
    else {
        return std::ptr::null_mut();
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

/// `bucketSettle(handle, token)`: the wait ended (its timer fired); forget it.
unsafe fn settle(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let (Some(attachment), Some(token)) = (call.handle::<BucketAttachment>(0, &TAG), call.token(1)) else {
        return std::ptr::null_mut();
    };
    attachment.local.0.borrow_mut().remove(&token);
    raw::null(env)
}

/// `bucketCancel(handle, token) -> boolean`: gives a pending reservation's
/// tokens back; false if it was unknown or already due.
unsafe fn cancel(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: `guarded!` passes this invocation's env and info.
    let call = unsafe { Call::new(env, info) };
    let (Some(attachment), Some(token)) = (call.handle::<BucketAttachment>(0, &TAG), call.token(1)) else {
        return std::ptr::null_mut();
    };
    let reservation = attachment.local.0.borrow_mut().remove(&token);
    let refunded = reservation.is_some_and(|r| attachment.shared.primitive.cancel(&r));
    raw::code(env, u32::from(refunded))
}
