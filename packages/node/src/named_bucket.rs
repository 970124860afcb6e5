//! `NativeNamedTokenBucket`: a token bucket in shared memory
//! (`sluice_shm::token_bucket`: the core's GCRA on one word of the segment,
//! one CAS per take, no lock), one for every process that opens its name.
//!
//! The raw calls are the process-local bucket's (`bucketTryTake`, …): they
//! take either kind of handle (`BucketArg`), so the TypeScript `TokenBucket`
//! is the same class over both. A thread's pending reservations are kept
//! here and given back when the thread exits; a process killed mid-wait
//! leaves its reserved tokens spent, the conservative side of the bound.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use napi::sys::{self, napi_env, napi_value};
use napi::{Env, Result};
use napi_derive::napi;
use sluice_core::{Reservation, TakeError, TokenBucket};
use sluice_shm::token_bucket::SharedTokenBucket;

use crate::attachment::{Attachment, GiveBack, Primitive, ThreadUse};
use crate::named;
use crate::raw::{self, code, Arg, Call};

/// One thread's use of a named bucket: its reservations not yet due, given
/// back when the thread exits or drops the bucket.
pub(crate) type NamedBucket = ThreadUse<BucketUse>;

pub(crate) struct BucketUse {
    bucket: Arc<SharedTokenBucket>,
    pending: RefCell<HashMap<u64, Reservation>>,
}

impl GiveBack for BucketUse {
    fn give_back(&self) {
        for (_, reservation) in self.pending.borrow_mut().drain() {
            self.bucket.cancel(&reservation);
        }
    }
}

/// Type tag of the externals `fastHandle` makes for a named bucket.
const NAMED_BUCKET_TAG: sys::napi_type_tag = sys::napi_type_tag {
    lower: 0x3c91_d5a7_e20f_6b48,
    upper: 0xb47e_02c3_9a15_f8d6,
};

/// The handle of the bucket raw calls: a process-local bucket's attachment,
/// or a named bucket (the local tag is checked first).
pub(crate) enum BucketArg<'a> {
    Local(&'a Attachment<TokenBucket>),
    Named(&'a NamedBucket),
}

impl<'a> Arg<'a> for BucketArg<'a> {
    fn read(call: &'a Call, i: usize) -> Option<Self> {
        let tag = &<TokenBucket as Primitive>::TAG;
        // SAFETY: only `raw::external` tags values with a primitive's TAG, over
        // its `Attachment`, and only `fast_handle` below tags with
        // NAMED_BUCKET_TAG, over a `NamedBucket`.
        unsafe {
            if let Some(local) = raw::tagged(call, i, tag) {
                return Some(BucketArg::Local(local));
            }
            if let Some(named) = raw::tagged(call, i, &NAMED_BUCKET_TAG) {
                return Some(BucketArg::Named(named));
            }
        }
        raw::throw_type(call.env, "the first argument must be a sluice native handle");
        None
    }
}

impl BucketUse {
    pub(crate) fn try_take(&self, env: napi_env, n: u64) -> napi_value {
        match self.bucket.try_take(n) {
            Ok(()) => raw::code(env, code::DONE),
            Err(TakeError::Insufficient { .. }) => raw::code(env, code::NOT_NOW),
            Err(error) => raw::throw_range(env, &error.to_string()),
        }
    }

    pub(crate) fn reserve(&self, env: napi_env, n: u64, token: u64) -> napi_value {
        match self.bucket.reserve(n) {
            Ok(reservation) => {
                let wait = reservation.wait(self.bucket.now());
                if wait > 0 {
                    self.pending.borrow_mut().insert(token, reservation);
                }
                raw::number(env, wait as f64)
            }
            Err(error) => raw::throw_range(env, &error.to_string()),
        }
    }

    pub(crate) fn redeem(&self, env: napi_env, token: u64) -> napi_value {
        self.pending.borrow_mut().remove(&token);
        raw::null(env)
    }

    pub(crate) fn cancel(&self, env: napi_env, token: u64) -> napi_value {
        let reservation = self.pending.borrow_mut().remove(&token);
        let refunded = reservation.is_some_and(|r| self.bucket.cancel(&r));
        raw::code(env, u32::from(refunded))
    }
}

#[napi]
pub struct NativeNamedTokenBucket {
    inner: Rc<NamedBucket>,
}

#[napi]
impl NativeNamedTokenBucket {
    /// Opens (creating it if needed) the named bucket `name` in `dir`: a full
    /// bucket of `capacity` tokens, one more every `interval_nanos`.
    #[napi(factory, catch_unwind)]
    pub fn open(env: Env, name: String, capacity: f64, interval_nanos: f64, dir: Option<String>) -> Result<Self> {
        let count = raw::positive_safe_integer;
        let (Some(capacity), Some(interval_nanos)) = (count(capacity), count(interval_nanos)) else {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "capacity and interval must be positive safe integers",
            ));
        };
        let dir = dir.map(std::path::PathBuf::from);
        let bucket = SharedTokenBucket::open(dir.as_deref(), &name, capacity, interval_nanos)
            .map_err(|error| named::fail(&env, error))?;
        let inner = ThreadUse::register(
            &env,
            BucketUse {
                bucket,
                pending: RefCell::default(),
            },
        )?;
        Ok(Self { inner })
    }

    /// Frees `name`; false if there was no such bucket.
    #[napi(catch_unwind)]
    pub fn unlink(env: Env, name: String, dir: Option<String>) -> Result<bool> {
        let dir = dir.map(std::path::PathBuf::from);
        SharedTokenBucket::unlink(dir.as_deref(), &name).map_err(|error| named::fail(&env, error))
    }

    #[napi(getter)]
    pub fn capacity(&self) -> f64 {
        self.inner.bucket.capacity() as f64
    }

    #[napi(getter)]
    pub fn interval_nanos(&self) -> f64 {
        self.inner.bucket.interval() as f64
    }

    #[napi(getter)]
    pub fn available(&self) -> f64 {
        self.inner.bucket.available() as f64
    }

    /// Reservations of this thread still waiting.
    #[napi(getter)]
    pub fn pending(&self) -> u32 {
        self.inner.pending.borrow().len() as u32
    }

    /// Whether the name was unlinked (a new `open` makes a new bucket).
    #[napi(getter)]
    pub fn unlinked(&self) -> bool {
        self.inner.bucket.is_closed()
    }

    /// A handle for the raw hot calls.
    #[napi(ts_return_type = "object")]
    pub fn fast_handle(&self, env: Env) -> Result<napi_value> {
        raw::external_tagged(env.raw(), &self.inner, &NAMED_BUCKET_TAG)
    }
}
