//! `NativeRateLimiter`: one thread's handle to a keyed rate limiter shared by
//! threads, and its raw entry points.
//!
//! The algorithm (GCRA or the two-window estimate per key, bounded cells) is
//! `sluice_core::RateLimiter`; this file only translates. A key arrives as a
//! JS string (its UTF-8, copied into a buffer on the stack) or a safe integer,
//! never allocating. A decision comes back as an outcome code, with its three
//! numbers written into a `Float64Array` the caller registered once
//! (`decisionHandle`) instead of a fresh JS object (`ts/rate-limiter.ts`
//! builds the result): reading a typed array argument on every call cost
//! ~75 ns here, a third of a `tryTake`. A waiting `take` reserves as the
//! token bucket's does; the thread's pending reservations are kept here
//! (`Pending`) so that a thread that dies mid-wait gives them back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use napi::bindgen_prelude::Unknown;
use napi::sys::{self, napi_env, napi_value, Status};
use napi::{Env, Error, JsValue, Result};
use napi_derive::napi;
use sluice_core::{
    Algorithm, Clock, Denied, Key, KeyBuf, KeyReservation, LimiterConfig, RateLimiter, RequestError, Verdict, WhenFull,
    MAX_KEY_BYTES,
};

use crate::attachment::{attached_class, Attachment, Primitive};
use crate::js_values::{typed_array, TypedArray};
use crate::raw::{self, code, entry, Arg, Call, Count, Token};

/// A new key and every key cell is live (`whenFull: 'refuse'`): the outcome
/// of `limiterTryTake` and `limiterPeek` that refuses for want of room rather
/// than for the key's own limit.
#[napi]
pub const KEYS_FULL: u32 = 5;

/// The longest key in bytes (the core's `MAX_KEY_BYTES`), for the TypeScript
/// layer (`RateLimiter.MAX_KEY_BYTES`).
#[napi]
pub const MAX_RATE_LIMIT_KEY_BYTES: u32 = MAX_KEY_BYTES as u32;

/// This thread's reservations that are not yet due, by wait token, with the
/// key each was made on (a cancel needs it).
#[derive(Default)]
pub(crate) struct Pending(pub(crate) RefCell<HashMap<u64, (KeyBuf, KeyReservation)>>);

impl Primitive for RateLimiter {
    type Local = Pending;

    const TAG: sys::napi_type_tag = sys::napi_type_tag {
        lower: 0x51d7_0e3b_c962_a84f,
        upper: 0x9a2f_64c8_1b7e_d035,
    };

    fn detach(&self, _slot: u32, pending: &Pending) {
        for (_, (key, reservation)) in pending.0.borrow_mut().drain() {
            self.cancel(key.as_key(), &reservation);
        }
    }
}

type LimiterAttachment = Attachment<RateLimiter>;

#[napi]
pub struct NativeRateLimiter {
    attachment: Rc<LimiterAttachment>,
}

#[napi]
impl NativeRateLimiter {
    /// A limiter of `capacity` tokens per key, one more every `interval_nanos`;
    /// `algorithm` is `"gcra"` or `"sliding-window"`, `when_full` `"evict"`
    /// or `"refuse"`.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        capacity: f64,
        interval_nanos: f64,
        algorithm: String,
        max_keys: f64,
        when_full: String,
    ) -> Result<Self> {
        let count = raw::positive_safe_integer;
        let (Some(capacity), Some(interval_nanos), Some(max_keys)) =
            (count(capacity), count(interval_nanos), count(max_keys))
        else {
            return Err(Error::new(
                napi::Status::InvalidArg,
                "capacity, interval and max_keys must be positive safe integers",
            ));
        };
        let algorithm = match algorithm.as_str() {
            "gcra" => Algorithm::Gcra,
            "sliding-window" => Algorithm::SlidingWindow,
            _ => {
                return Err(Error::new(
                    napi::Status::InvalidArg,
                    "algorithm must be gcra or sliding-window",
                ))
            }
        };
        let when_full = match when_full.as_str() {
            "evict" => WhenFull::EvictLeastRecent,
            "refuse" => WhenFull::Refuse,
            _ => {
                return Err(Error::new(
                    napi::Status::InvalidArg,
                    "when_full must be evict or refuse",
                ))
            }
        };
        let config = LimiterConfig {
            capacity,
            interval_nanos,
            algorithm,
            max_keys,
            when_full,
        };
        let core = RateLimiter::new(config).map_err(|error| Error::new(napi::Status::InvalidArg, error.to_string()))?;
        Self::attach(&env, core)
    }

    #[napi(getter)]
    pub fn capacity(&self) -> f64 {
        self.core().config().capacity as f64
    }

    #[napi(getter)]
    pub fn interval_nanos(&self) -> f64 {
        self.core().config().interval_nanos as f64
    }

    #[napi(getter)]
    pub fn algorithm(&self) -> &'static str {
        match self.core().config().algorithm {
            Algorithm::Gcra => "gcra",
            Algorithm::SlidingWindow => "sliding-window",
        }
    }

    #[napi(getter)]
    pub fn max_keys(&self) -> f64 {
        self.core().config().max_keys as f64
    }

    #[napi(getter)]
    pub fn when_full(&self) -> &'static str {
        match self.core().config().when_full {
            WhenFull::EvictLeastRecent => "evict",
            WhenFull::Refuse => "refuse",
        }
    }

    /// Key cells stored now, live or not yet dropped.
    #[napi(getter)]
    pub fn size(&self) -> f64 {
        self.core().len() as f64
    }

    /// Reservations of this thread still waiting.
    #[napi(getter)]
    pub fn pending(&self) -> u32 {
        self.attachment.local.0.borrow().len() as u32
    }

    /// The handle the raw calls take: this thread's attachment, and `out`, a
    /// `Float64Array` of at least 3 over a `SharedArrayBuffer`, where each
    /// decision's numbers go. A shared buffer cannot be detached or moved,
    /// and the handle holds a reference to the array, so the memory stays
    /// valid for as long as the handle; a `TypeError` for anything else.
    #[napi(ts_return_type = "object")]
    pub fn decision_handle(&self, env: Env, out: Unknown) -> Result<napi_value> {
        let env = env.raw();
        let (out, reference) = decision_array(env, out.raw())?;
        make_decision_handle(env, Backend::Local(Rc::clone(&self.attachment)), out, reference)
    }
}

/// Validates `out` for `decisionHandle` (see `NativeRateLimiter::decision_handle`)
/// and takes a reference to it.
pub(crate) fn decision_array(env: napi_env, array: napi_value) -> Result<(NonNull<AtomicU64>, sys::napi_ref)> {
    let shared = typed_array(env, array).filter(|a| {
        let mut detachable = true;
        // SAFETY: `a.buffer` is this call's; a SharedArrayBuffer is not an
        // `ArrayBuffer` to N-API (V8's IsArrayBuffer excludes it).
        let ok = unsafe { sys::napi_is_arraybuffer(env, a.buffer, &mut detachable) } == Status::napi_ok;
        ok && !detachable && a.kind == sys::TypedarrayType::float64_array && a.length >= 3 && !a.data.is_null()
    });
    // A Float64Array's data is 8-byte aligned; checked all the same, as it
    // is read as `AtomicU64`s.
    let out = shared.and_then(|TypedArray { data, .. }| NonNull::new(data as *mut AtomicU64));
    let Some(out) = out.filter(|out| out.as_ptr().is_aligned()) else {
        return Err(Error::new(
            napi::Status::InvalidArg,
            "out must be a Float64Array of at least 3 over a SharedArrayBuffer",
        ));
    };
    let mut reference = ptr::null_mut();
    // SAFETY: `array` is an object of this call; the out-pointer is valid.
    if unsafe { sys::napi_create_reference(env, array, 1, &mut reference) } != Status::napi_ok {
        return Err(Error::from_reason("failed to reference the decision array"));
    }
    Ok((out, reference))
}

/// The external the raw calls take, over either kind of limiter.
pub(crate) fn make_decision_handle(
    env: napi_env,
    backend: Backend,
    out: NonNull<AtomicU64>,
    reference: sys::napi_ref,
) -> Result<napi_value> {
    let handle = Box::new(LimiterHandle {
        backend,
        out,
        array: reference,
    });
    let data = Box::into_raw(handle) as *mut c_void;
    let mut result = ptr::null_mut();
    // SAFETY: `finalize_handle` matches the data's type; N-API runs it
    // once, when the external is collected.
    let status = unsafe { sys::napi_create_external(env, data, Some(finalize_handle), ptr::null_mut(), &mut result) };
    if status != Status::napi_ok {
        // SAFETY: the external was not made, so this still owns the box.
        unsafe { finalize_handle(env, data, ptr::null_mut()) };
        return Err(Error::from_reason("failed to create a native handle"));
    }
    // SAFETY: `result` is a fresh object of this env, tagged once.
    if unsafe { sys::napi_type_tag_object(env, result, &HANDLE_TAG) } != Status::napi_ok {
        return Err(Error::from_reason("failed to tag a native handle"));
    }
    Ok(result)
}

/// Marks the externals `decisionHandle` makes, so an entry point refuses any
/// other value (another primitive's handle included).
const HANDLE_TAG: sys::napi_type_tag = sys::napi_type_tag {
    lower: 0xc2e8_47a1_5f09_3db6,
    upper: 0x6b13_f0d4_a87c_2e59,
};

/// Which limiter a decision handle serves: one of this process's threads'
/// (`NativeRateLimiter`), or a named one in shared memory.
pub(crate) enum Backend {
    Local(Rc<LimiterAttachment>),
    Named(Rc<crate::named_limiter::NamedLimiter>),
}

/// What the raw calls take (see [`NativeRateLimiter::decision_handle`]).
pub(crate) struct LimiterHandle {
    backend: Backend,
    /// The first of three `f64`s (as bits) of the registered array, written
    /// with relaxed atomic stores: a shared buffer may be seen by other
    /// threads, and a plain write would race with them.
    out: NonNull<AtomicU64>,
    /// A strong reference to the registered array, keeping its memory alive.
    array: sys::napi_ref,
}

impl LimiterHandle {
    /// Writes `[remaining, retryAfterMs, resetAfterMs]` into the array.
    fn write(&self, values: [f64; 3]) {
        for (i, value) in values.into_iter().enumerate() {
            // SAFETY: the array holds at least 3 f64s at `out`, 8-byte aligned
            // (checked when the handle was made), alive while `array` is.
            unsafe { &*self.out.as_ptr().add(i) }.store(value.to_bits(), Ordering::Relaxed);
        }
    }
}

unsafe extern "C" fn finalize_handle(env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` came from `Box::into_raw` in `decision_handle`; N-API
    // calls this once.
    let handle = unsafe { Box::from_raw(data as *mut LimiterHandle) };
    // SAFETY: the reference was made in this env and is deleted once, here.
    unsafe { sys::napi_delete_reference(env, handle.array) };
}

/// A handle argument: the `LimiterHandle` inside one of `decisionHandle`'s
/// externals; a `TypeError` otherwise. Valid for the rest of the call: the
/// external is an argument of it, so it cannot be collected meanwhile.
impl<'a> Arg<'a> for &'a LimiterHandle {
    fn read(call: &'a Call, i: usize) -> Option<Self> {
        let value = call.arg(i)?;
        let mut tagged = false;
        // SAFETY: `value` is a value of this call; a non-object just fails the check.
        let status = unsafe { sys::napi_check_object_type_tag(call.env, value, &HANDLE_TAG, &mut tagged) };
        let mut data = ptr::null_mut();
        if status != Status::napi_ok
            || !tagged
            // SAFETY: only reached for a value carrying our tag: an external we made.
            || unsafe { sys::napi_get_value_external(call.env, value, &mut data) } != Status::napi_ok
        {
            raw::throw_type(
                call.env,
                "the first argument must be a sluice rate limiter decision handle",
            );
            return None;
        }
        // SAFETY: `data` is the `Box<LimiterHandle>` made for this tag, alive
        // for this call (see above).
        Some(unsafe { &*(data as *const LimiterHandle) })
    }
}

attached_class!(NativeRateLimiter, RateLimiter, "rate limiter");

pub(crate) const RAW: [(&CStr, sys::napi_callback); 6] = [
    (c"limiterTryTake", entry!(try_take)),
    (c"limiterPeek", entry!(peek)),
    (c"limiterReserve", entry!(reserve)),
    (c"limiterRedeem", entry!(redeem)),
    (c"limiterCancel", entry!(cancel)),
    (c"limiterReset", entry!(reset)),
];

/// `limiterTryTake(handle, key, n) -> DONE | NOT_NOW | KEYS_FULL`, with the
/// decision's numbers in the handle's array (see [`answer`]).
fn try_take(env: napi_env, handle: &LimiterHandle, key: KeyArg, Count(n): Count) -> napi_value {
    match &handle.backend {
        Backend::Local(attachment) => {
            let limiter = &attachment.shared.primitive;
            with_key(env, key, |key| answer(env, limiter.try_take(key, n as u64), handle))
        }
        Backend::Named(named) => with_key(env, key, |key| {
            named.answer(env, named.limiter.try_take(key, n as u64), handle)
        }),
    }
}

/// `limiterPeek(handle, key, n)`: as `limiterTryTake`, taking nothing.
fn peek(env: napi_env, handle: &LimiterHandle, key: KeyArg, Count(n): Count) -> napi_value {
    match &handle.backend {
        Backend::Local(attachment) => {
            let limiter = &attachment.shared.primitive;
            with_key(env, key, |key| answer(env, limiter.peek(key, n as u64), handle))
        }
        Backend::Named(named) => with_key(env, key, |key| {
            named.answer(env, named.limiter.peek(key, n as u64), handle)
        }),
    }
}

/// `limiterReserve(handle, key, n, token) -> nanoseconds to wait | null`;
/// null when the key is new and every cell is live (`whenFull: 'refuse'`).
/// A reservation due at once is not remembered (its tokens are taken).
fn reserve(env: napi_env, handle: &LimiterHandle, key: KeyArg, Count(n): Count, Token(token): Token) -> napi_value {
    let attachment = match &handle.backend {
        Backend::Local(attachment) => attachment,
        Backend::Named(named) => return with_key(env, key, |key| named.reserve(env, key, n as u64, token)),
    };
    let limiter = &attachment.shared.primitive;
    with_key(env, key, |key| match limiter.reserve(key, n as u64) {
        Ok(reservation) => {
            let wait = reservation.wait(limiter.clock().now());
            if wait > 0 {
                attachment.local.0.borrow_mut().insert(token, (key.into(), reservation));
            }
            raw::number(env, wait as f64)
        }
        Err(RequestError::KeysFull) => raw::null(env),
        Err(error) => request_error(env, error),
    })
}

/// `limiterRedeem(handle, token)`: the wait ended (its timer fired); forget it.
fn redeem(env: napi_env, handle: &LimiterHandle, Token(token): Token) -> napi_value {
    match &handle.backend {
        Backend::Local(attachment) => attachment.local.0.borrow_mut().remove(&token),
        Backend::Named(named) => named.pending.0.borrow_mut().remove(&token),
    };
    raw::null(env)
}

/// `limiterCancel(handle, token) -> 0 | 1`: gives a pending reservation's
/// tokens back; 0 if it was unknown or already due.
fn cancel(env: napi_env, handle: &LimiterHandle, Token(token): Token) -> napi_value {
    let attachment = match &handle.backend {
        Backend::Local(attachment) => attachment,
        Backend::Named(named) => return named.cancel(env, token),
    };
    let pending = attachment.local.0.borrow_mut().remove(&token);
    let refunded = pending.is_some_and(|(key, r)| attachment.shared.primitive.cancel(key.as_key(), &r));
    raw::code(env, u32::from(refunded))
}

/// `limiterReset(handle, key) -> 0 | 1`: forgets the key; 1 if it had state.
fn reset(env: napi_env, handle: &LimiterHandle, key: KeyArg) -> napi_value {
    let limiter = match &handle.backend {
        Backend::Local(attachment) => &attachment.shared.primitive,
        Backend::Named(named) => return with_key(env, key, |key| named.reset(env, key)),
    };
    with_key(env, key, |key| raw::code(env, u32::from(limiter.reset(key))))
}

/// A verdict as an outcome code, its numbers into the handle's array: whole
/// tokens left, then milliseconds (rounded up) to retry and to reset.
/// Integers in u64 arithmetic, so the rounding is exact.
pub(crate) fn answer(
    env: napi_env,
    verdict: std::result::Result<Verdict, RequestError>,
    handle: &LimiterHandle,
) -> napi_value {
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(error) => return request_error(env, error),
    };
    let ms = |nanos: u64| nanos.div_ceil(1_000_000) as f64;
    handle.write([
        verdict.remaining as f64,
        ms(verdict.retry_after),
        ms(verdict.reset_after),
    ]);
    raw::code(
        env,
        match verdict.denied {
            None => code::DONE,
            Some(Denied::Limited) => code::NOT_NOW,
            Some(Denied::KeysFull) => KEYS_FULL,
        },
    )
}

pub(crate) fn request_error(env: napi_env, error: RequestError) -> napi_value {
    match error {
        RequestError::BadKey => raw::throw_range(env, &key_message("a key the limiter refused")),
        // `n` is checked against the capacity in TypeScript; reaching this is
        // a caller that skipped it.
        _ => raw::throw_range(env, &error.to_string()),
    }
}

/// A key argument: a safe integer, read at once, or a string of at most
/// [`MAX_KEY_BYTES`] UTF-16 units (an upper bound on its UTF-8 length once
/// known to be at most 3 bytes a unit), whose bytes [`with_key`] copies.
pub(crate) enum KeyArg {
    Int(i64),
    Str(napi_value),
}

/// UTF-8 of at most `MAX_KEY_BYTES` UTF-16 units: 3 bytes a unit at most (a
/// lone surrogate becomes U+FFFD), plus N-API's terminating NUL. A key that
/// fits is never truncated, so its length is exact; a longer string is cut
/// at a character boundary past `MAX_KEY_BYTES` and refused.
const KEY_BUFFER: usize = 3 * MAX_KEY_BYTES + 1;

/// The largest safe integer, 2^53 - 1.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

impl Arg<'_> for KeyArg {
    fn read(call: &Call, i: usize) -> Option<Self> {
        let env = call.env;
        let Some(value) = call.arg(i) else {
            raw::throw_type(env, "key must be a string or a safe integer, got nothing");
            return None;
        };
        // Numbers first: one N-API call for an integer key.
        let mut number = 0.0;
        // SAFETY: `value` is one of this call's; the out-pointer is valid.
        if unsafe { sys::napi_get_value_double(env, value, &mut number) } == Status::napi_ok {
            if raw::is_whole(number) && number.abs() <= MAX_SAFE_INTEGER {
                // -0 reads as 0, as a Map compares them.
                return Some(KeyArg::Int(number as i64));
            }
            raw::throw_range(env, &format!("key must be a string or a safe integer, got {number}"));
            return None;
        }
        // Anything else is read (or refused) as a string by `with_key`: one
        // N-API call for a string key.
        Some(KeyArg::Str(value))
    }
}

/// Runs `body` with `key` as a [`Key`]: a string's UTF-8 in a buffer on this
/// stack frame, so no key allocates.
fn with_key(env: napi_env, key: KeyArg, body: impl FnOnce(Key<'_>) -> napi_value) -> napi_value {
    match key {
        KeyArg::Int(int) => body(Key::Int(int)),
        KeyArg::Str(value) => {
            let mut buffer = MaybeUninit::<[u8; KEY_BUFFER]>::uninit();
            let mut len = 0usize;
            // SAFETY: `value` is one of this call's (anything but a string
            // fails with `string_expected`, writing nothing); the buffer has
            // room for `KEY_BUFFER` bytes, NUL included.
            let status = unsafe {
                sys::napi_get_value_string_utf8(env, value, buffer.as_mut_ptr() as *mut c_char, KEY_BUFFER, &mut len)
            };
            if status != Status::napi_ok {
                let mut kind = sys::ValueType::napi_undefined;
                // SAFETY: as above.
                unsafe { sys::napi_typeof(env, value, &mut kind) };
                return raw::throw_type(
                    env,
                    &format!("key must be a string or a safe integer, got {}", type_name(kind)),
                );
            }
            // A string of at most MAX_KEY_BYTES UTF-16 units is never cut
            // short (3 bytes a unit at most); a longer one may be, at a
            // character boundary, but is then over MAX_KEY_BYTES anyway.
            if len == 0 || len > MAX_KEY_BYTES {
                let got = match len {
                    0 => "an empty string".to_string(),
                    len if len + 4 >= KEY_BUFFER => format!("a string of at least {len} bytes"),
                    len => format!("a string of {len} bytes"),
                };
                return raw::throw_range(env, &key_message(&got));
            }
            // SAFETY: N-API wrote `len` bytes (< KEY_BUFFER) at the buffer's start.
            let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr() as *const u8, len) };
            // N-API writes a lone surrogate as U+FFFD (EF BF BD), which would
            // make '\ud800', '\udc00' and '\ufffd' one key: only when that
            // sequence appears, read the UTF-16 to tell them apart.
            if bytes.windows(3).any(|w| w == [0xEF, 0xBF, 0xBD]) && !well_formed(env, value) {
                return raw::throw_range(env, &key_message("a string with a lone surrogate"));
            }
            body(Key::Bytes(bytes))
        }
    }
}

/// Whether string `value` pairs every surrogate. Called only for a string
/// whose UTF-8 is at most `MAX_KEY_BYTES` bytes, so it has at most as many
/// UTF-16 units and fits the buffer.
fn well_formed(env: napi_env, value: napi_value) -> bool {
    let mut units = [0u16; MAX_KEY_BYTES + 1];
    let mut len = 0usize;
    // SAFETY: `value` is a string of this call; the buffer holds
    // `MAX_KEY_BYTES + 1` units, NUL included.
    let status = unsafe { sys::napi_get_value_string_utf16(env, value, units.as_mut_ptr(), units.len(), &mut len) };
    status == Status::napi_ok && char::decode_utf16(units[..len.min(MAX_KEY_BYTES)].iter().copied()).all(|c| c.is_ok())
}

/// The `RangeError` message for a string key of the wrong length.
fn key_message(got: &str) -> String {
    format!("key must be a string of 1 to {MAX_RATE_LIMIT_KEY_BYTES} UTF-8 bytes or a safe integer, got {got}")
}

fn type_name(kind: sys::napi_valuetype) -> &'static str {
    match kind {
        sys::ValueType::napi_undefined => "undefined",
        sys::ValueType::napi_null => "null",
        sys::ValueType::napi_boolean => "a boolean",
        sys::ValueType::napi_symbol => "a symbol",
        sys::ValueType::napi_object => "an object",
        sys::ValueType::napi_function => "a function",
        sys::ValueType::napi_external => "an external",
        sys::ValueType::napi_bigint => "a bigint",
        _ => "a value of another type",
    }
}
