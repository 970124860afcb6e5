//! `NativeNamedRateLimiter`: a keyed rate limiter in shared memory
//! (`sluice_shm::rate_limiter`), one for every process that opens its name.
//!
//! The raw calls are the process-local limiter's (`limiterTryTake`, …): its
//! decision handle carries either kind (`rate_limiter::Backend`), so the
//! TypeScript `RateLimiter` is the same class over both. A thread's pending
//! reservations are kept here as for a process-local limiter, and given back
//! when the thread exits; a process killed mid-wait leaves its reserved
//! tokens spent, the conservative side of `capacity + rate × elapsed`.

use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::Unknown;
use napi::sys::{napi_env, napi_value};
use napi::{Env, JsValue, Result};
use napi_derive::napi;
use sluice_core::{Algorithm, Key, LimiterConfig, RequestError, Verdict, WhenFull};
use sluice_shm::rate_limiter::{LimiterError, SharedRateLimiter};

use crate::attachment::{GiveBack, ThreadUse};
use crate::named;
use crate::rate_limiter::{self, Backend, LimiterHandle, Pending};
use crate::raw;

/// One thread's use of a named limiter: its pending reservations, given back
/// when the thread exits or drops the limiter.
pub(crate) type NamedLimiter = ThreadUse<LimiterUse>;

pub(crate) struct LimiterUse {
    pub(crate) limiter: Arc<SharedRateLimiter>,
    pub(crate) pending: Pending,
}

impl GiveBack for LimiterUse {
    fn give_back(&self) {
        for (_, (key, reservation)) in self.pending.0.borrow_mut().drain() {
            // A damaged segment or a stuck lock: nothing to report to.
            let _ = self.limiter.cancel(key.as_key(), &reservation);
        }
    }
}

impl LimiterUse {
    /// A verdict (or the reason there is none) as `limiterTryTake` answers.
    pub(crate) fn answer(
        &self,
        env: napi_env,
        verdict: std::result::Result<Verdict, LimiterError>,
        handle: &LimiterHandle,
    ) -> napi_value {
        match verdict {
            Ok(verdict) => rate_limiter::answer(env, Ok(verdict), handle),
            Err(LimiterError::Request(error)) => rate_limiter::request_error(env, error),
            Err(LimiterError::Shm(error)) => named::throw(env, error),
        }
    }

    pub(crate) fn reserve(&self, env: napi_env, key: Key<'_>, n: u64, token: u64) -> napi_value {
        match self.limiter.reserve(key, n) {
            Ok(reservation) => {
                let wait = reservation.wait(self.limiter.now());
                if wait > 0 {
                    self.pending.0.borrow_mut().insert(token, (key.into(), reservation));
                }
                raw::number(env, wait as f64)
            }
            Err(LimiterError::Request(RequestError::KeysFull)) => raw::null(env),
            Err(LimiterError::Request(error)) => rate_limiter::request_error(env, error),
            Err(LimiterError::Shm(error)) => named::throw(env, error),
        }
    }

    pub(crate) fn cancel(&self, env: napi_env, token: u64) -> napi_value {
        let pending = self.pending.0.borrow_mut().remove(&token);
        match pending.map(|(key, r)| self.limiter.cancel(key.as_key(), &r)) {
            None => raw::code(env, 0),
            Some(Ok(refunded)) => raw::code(env, u32::from(refunded)),
            Some(Err(error)) => named::throw(env, error),
        }
    }

    pub(crate) fn reset(&self, env: napi_env, key: Key<'_>) -> napi_value {
        match self.limiter.reset(key) {
            Ok(had) => raw::code(env, u32::from(had)),
            Err(error) => named::throw(env, error),
        }
    }
}

#[napi]
pub struct NativeNamedRateLimiter {
    inner: Rc<NamedLimiter>,
}

#[napi]
impl NativeNamedRateLimiter {
    /// Opens (creating it if needed) the named GCRA limiter `name` in `dir`.
    /// `when_full` is `"evict"` or `"refuse"`.
    #[napi(factory, catch_unwind)]
    pub fn open(
        env: Env,
        name: String,
        capacity: f64,
        interval_nanos: f64,
        max_keys: f64,
        when_full: String,
        dir: Option<String>,
    ) -> Result<Self> {
        let count = raw::positive_safe_integer;
        let (Some(capacity), Some(interval_nanos), Some(max_keys)) =
            (count(capacity), count(interval_nanos), count(max_keys))
        else {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "capacity, interval and max_keys must be positive safe integers",
            ));
        };
        let when_full = match when_full.as_str() {
            "evict" => WhenFull::EvictLeastRecent,
            _ => WhenFull::Refuse,
        };
        let config = LimiterConfig {
            capacity,
            interval_nanos,
            algorithm: Algorithm::Gcra,
            max_keys,
            when_full,
        };
        let dir = dir.map(std::path::PathBuf::from);
        let limiter =
            SharedRateLimiter::open(dir.as_deref(), &name, config).map_err(|error| named::fail(&env, error))?;
        let inner = ThreadUse::register(
            &env,
            LimiterUse {
                limiter,
                pending: Pending::default(),
            },
        )?;
        Ok(Self { inner })
    }

    /// Frees `name`; false if there was no such limiter.
    #[napi(catch_unwind)]
    pub fn unlink(env: Env, name: String, dir: Option<String>) -> Result<bool> {
        let dir = dir.map(std::path::PathBuf::from);
        SharedRateLimiter::unlink(dir.as_deref(), &name).map_err(|error| named::fail(&env, error))
    }

    #[napi(getter)]
    pub fn capacity(&self) -> f64 {
        self.inner.limiter.config().capacity as f64
    }

    #[napi(getter)]
    pub fn interval_nanos(&self) -> f64 {
        self.inner.limiter.config().interval_nanos as f64
    }

    #[napi(getter)]
    pub fn algorithm(&self) -> &'static str {
        "gcra"
    }

    #[napi(getter)]
    pub fn max_keys(&self) -> f64 {
        self.inner.limiter.config().max_keys as f64
    }

    #[napi(getter)]
    pub fn when_full(&self) -> &'static str {
        match self.inner.limiter.config().when_full {
            WhenFull::EvictLeastRecent => "evict",
            WhenFull::Refuse => "refuse",
        }
    }

    /// Key cells in use (live or expired but not yet reused).
    #[napi(getter)]
    pub fn size(&self, env: Env) -> Result<f64> {
        self.inner
            .limiter
            .size()
            .map(|n| n as f64)
            .map_err(|error| named::fail(&env, error))
    }

    /// Reservations of this thread still waiting.
    #[napi(getter)]
    pub fn pending(&self) -> u32 {
        self.inner.pending.0.borrow().len() as u32
    }

    /// Whether the name was unlinked (a new `open` makes a new limiter).
    #[napi(getter)]
    pub fn unlinked(&self) -> bool {
        self.inner.limiter.is_closed()
    }

    /// The handle the raw calls take (see `NativeRateLimiter::decisionHandle`).
    #[napi(ts_return_type = "object")]
    pub fn decision_handle(&self, env: Env, out: Unknown) -> Result<napi_value> {
        let env = env.raw();
        let (out, reference) = rate_limiter::decision_array(env, out.raw())?;
        rate_limiter::make_decision_handle(env, Backend::Named(Rc::clone(&self.inner)), out, reference)
    }
}
