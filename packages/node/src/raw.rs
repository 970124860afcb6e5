//! Helpers for the hot paths, which are raw N-API callbacks rather than
//! napi-rs methods.
//!
//! Measured on this machine with napi-rs 3.16: a `#[napi]` method call costs
//! ~230 ns before it does anything (it creates a reference to `this` and
//! registers a borrow on every call), a free function with two `u32`
//! arguments ~95 ns, and a raw N-API call ~20 ns. Acquiring and releasing a
//! permit must cost about what the native crossing costs, so the hot calls take
//! a type-tagged `External` holding the thread's attachment, and everything
//! else stays in ordinary napi-rs code. A value that is not one of our
//! externals (wrong tag, or not an external) is refused with a `TypeError`
//! instead of being read as one.
//!
//! An entry point is a safe function of the env and its typed arguments, in
//! order; `entry!(body)` makes the N-API callback around it:
//!
//! ```ignore
//! /// `semTryAcquire(handle, n) -> 0 | 1 | 2 | 4`
//! fn try_acquire(env: napi_env, semaphore: &Attachment<Semaphore>, Count(n): Count) -> napi_value { … }
//!
//! pub(crate) const RAW: [(&CStr, sys::napi_callback); 1] = [(c"semTryAcquire", entry!(try_acquire))];
//! ```
//!
//! The callback catches panics (`guard`), reads every argument with its type's
//! [`Arg`] (the handle's tag is its primitive's `Primitive::TAG`) and calls
//! the body only if all of them were read; otherwise the first failure's JS
//! error is thrown. This is the only `unsafe` step into a raw entry point.

use std::ffi::{c_void, CStr, CString};
use std::ptr;
use std::rc::Rc;

use napi::sys::{self, napi_callback_info, napi_env, napi_value, Status};

use crate::attachment::{Attachment, Primitive};

/// Outcome codes of the raw calls, exported to JS: `ts/native.ts` re-exports
/// them, so this is their one source.
pub(crate) mod code {
    use napi_derive::napi;

    /// A try call could not complete now: no permits, no tokens, the channel
    /// full or empty.
    #[napi]
    pub const NOT_NOW: u32 = 0;
    /// A wait call queued the wait (`semAcquire`, `chanQueueSend`,
    /// `chanQueueRecv`). Shares `NOT_NOW`'s value: no call returns both.
    #[napi]
    pub const QUEUED: u32 = 0;
    /// Done at once.
    #[napi]
    pub const DONE: u32 = 1;
    /// The primitive is closed.
    #[napi]
    pub const CLOSED: u32 = 2;
    /// `maxWaiters` waits are queued already.
    #[napi]
    pub const QUEUE_FULL: u32 = 3;
    /// More permits asked for than the semaphore's capacity (which may have
    /// shrunk since JS cached it).
    #[napi]
    pub const TOO_HEAVY: u32 = 4;
}

/// The N-API callback of an entry point: `entry!(body)` for a safe
/// `fn body(env: napi_env, a: A, b: B, …) -> napi_value` whose argument types
/// are [`Arg`]s, read from the call's arguments 0, 1, … in order. A panic
/// becomes a thrown JS `Error` with code `ERR_SLUICE_PANIC` (unwinding across
/// `extern "C"` would abort the process).
macro_rules! entry {
    ($body:path) => {{
        unsafe extern "C" fn callback(
            env: napi::sys::napi_env,
            info: napi::sys::napi_callback_info,
        ) -> napi::sys::napi_value {
            $crate::raw::guard(env, || {
                // SAFETY: N-API calls this with the invocation's env and info,
                // and `call` is dropped before the invocation returns.
                let call = unsafe { $crate::raw::Call::new(env, info) };
                $crate::raw::Entry::enter($body, &call)
            })
        }
        Some(callback as unsafe extern "C" fn(_, _) -> _)
    }};
}
pub(crate) use entry;

/// A body `entry!` can call: a function of the env and up to four [`Arg`]s.
pub(crate) trait Entry<'a, Args> {
    fn enter(self, call: &'a Call) -> napi_value;
}

macro_rules! impl_entry {
    ($($arg:ident $value:ident $i:tt),*) => {
        impl<'a, F, $($arg: Arg<'a>),*> Entry<'a, ($($arg,)*)> for F
        where
            F: FnOnce(napi_env, $($arg),*) -> napi_value,
        {
            #[inline(always)]
            #[allow(irrefutable_let_patterns)] // for the body without arguments
            fn enter(self, call: &'a Call) -> napi_value {
                // Every argument is read, even after one failed: the first
                // failure's error is the one JS sees (a second throw is ignored
                // while one is pending), as when each entry read its own.
                let ($($value,)*) = ($(<$arg as Arg<'a>>::read(call, $i),)*);
                let ($(Some($value),)*) = ($($value,)*) else {
                    return ptr::null_mut();
                };
                self(call.env, $($value),*)
            }
        }
    };
}
impl_entry!();
impl_entry!(A a 0);
impl_entry!(A a 0, B b 1);
impl_entry!(A a 0, B b 1, C c 2);
impl_entry!(A a 0, B b 1, C c 2, D d 3);

/// A typed argument of an entry point.
pub(crate) trait Arg<'a>: Sized {
    /// Argument `i` of `call`, or `None` once the JS error that says why is
    /// thrown (or, for an absent handle or message, nothing is).
    fn read(call: &'a Call, i: usize) -> Option<Self>;
}

/// Runs `body`, converting a panic into a thrown JS `Error`.
pub(crate) fn guard(env: napi_env, body: impl FnOnce() -> napi_value) -> napi_value {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let reason = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let message = CString::new(format!("sluice internal error: {reason}")).unwrap_or_default();
            // SAFETY: `env` is live; both strings are NUL-terminated.
            unsafe { sys::napi_throw_error(env, c"ERR_SLUICE_PANIC".as_ptr(), message.as_ptr()) };
            ptr::null_mut()
        }
    }
}

/// Registers raw callbacks on the module's exports.
pub(crate) fn register(
    env: napi_env,
    exports: napi_value,
    functions: &[(&CStr, sys::napi_callback)],
) -> napi::Result<()> {
    for (name, callback) in functions {
        let mut function = ptr::null_mut();
        // SAFETY: `env` and `exports` are those of the module being initialised;
        // `name` is NUL-terminated; the callbacks have the N-API signature.
        let ok = unsafe {
            sys::napi_create_function(
                env,
                name.as_ptr(),
                name.count_bytes() as isize,
                *callback,
                ptr::null_mut(),
                &mut function,
            ) == Status::napi_ok
                && sys::napi_set_named_property(env, exports, name.as_ptr(), function) == Status::napi_ok
        };
        if !ok {
            return Err(napi::Error::from_reason(format!("failed to register {name:?}")));
        }
    }
    Ok(())
}

/// Wraps a clone of `attachment` in an `External` tagged with `P::TAG`: the
/// handle the entry points take (`Arg for &Attachment<P>`).
pub(crate) fn external<P: Primitive>(env: napi_env, attachment: &Rc<Attachment<P>>) -> napi::Result<napi_value> {
    external_tagged(env, attachment, &P::TAG)
}

/// Wraps a clone of `value` in an `External` tagged with `tag`, which only
/// values of type `T` carry (see `tagged`).
pub(crate) fn external_tagged<T>(env: napi_env, value: &Rc<T>, tag: &sys::napi_type_tag) -> napi::Result<napi_value> {
    let data = Rc::into_raw(Rc::clone(value)) as *mut c_void;
    let mut result = ptr::null_mut();
    // SAFETY: `env` is the live env of the current call; `finalize::<T>` matches
    // the data's type and N-API runs it once, when the external is collected.
    let status = unsafe { sys::napi_create_external(env, data, Some(finalize::<T>), ptr::null_mut(), &mut result) };
    if status != Status::napi_ok {
        // SAFETY: the external was not created, so we still own this count.
        drop(unsafe { Rc::from_raw(data as *const T) });
        return Err(napi::Error::from_reason("failed to create a native handle"));
    }
    // SAFETY: `result` is a fresh object of this env, tagged once.
    if unsafe { sys::napi_type_tag_object(env, result, tag) } != Status::napi_ok {
        return Err(napi::Error::from_reason("failed to tag a native handle"));
    }
    Ok(result)
}

unsafe extern "C" fn finalize<T>(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` came from `Rc::into_raw` in `external`, for this `T`;
    // N-API calls this once.
    drop(unsafe { Rc::from_raw(data as *const T) });
}

/// The arguments of one raw call.
pub(crate) struct Call {
    pub(crate) env: napi_env,
    argv: [napi_value; 4],
    argc: usize,
}

impl Call {
    /// # Safety
    ///
    /// `env` and `info` must be those of the current callback invocation, and
    /// the `Call` must not outlive it: what an [`Arg`] borrows from a call
    /// (an attachment, a typed array's data) lives as long as the invocation.
    pub(crate) unsafe fn new(env: napi_env, info: napi_callback_info) -> Self {
        let mut argc = 4;
        let mut argv = [ptr::null_mut(); 4];
        // SAFETY: argv has room for `argc` values.
        unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        Self { env, argv, argc }
    }

    pub(crate) fn arg(&self, i: usize) -> Option<napi_value> {
        (i < self.argc.min(4)).then(|| self.argv[i])
    }

    /// Argument `i` as a number; throws a `TypeError` otherwise.
    fn number(&self, i: usize) -> Option<f64> {
        let mut number = 0.0;
        // SAFETY: the value is one of this call's; `number` is a valid out-pointer.
        let ok = self
            .arg(i)
            .is_some_and(|v| unsafe { sys::napi_get_value_double(self.env, v, &mut number) } == Status::napi_ok);
        if ok {
            Some(number)
        } else {
            throw_type(self.env, &format!("argument {i} must be a number"));
            None
        }
    }
}

/// A handle: the attachment inside one of our externals tagged `P::TAG`;
/// a `TypeError` otherwise. The reference is valid for the rest of the call:
/// the external (which owns a count of the `Rc`) is an argument of this call,
/// so it cannot be collected before the call returns.
impl<'a, P: Primitive> Arg<'a> for &'a Attachment<P> {
    fn read(call: &'a Call, i: usize) -> Option<Self> {
        // SAFETY: only `external::<P>` tags values with `P::TAG`, over an `Attachment<P>`.
        let attachment = unsafe { tagged::<Attachment<P>>(call, i, &P::TAG) };
        if attachment.is_none() {
            throw_type(call.env, "the first argument must be a sluice native handle");
        }
        attachment
    }
}

/// Argument `i` as the `T` inside one of our externals tagged `tag`; `None`
/// (nothing thrown) if it is not one. The reference is valid for the rest of
/// the call: the external, which owns a count of the `Rc`, is an argument of
/// this call, so it cannot be collected before the call returns.
///
/// # Safety
///
/// Every external tagged `tag` must have been made by `external_tagged::<T>`.
pub(crate) unsafe fn tagged<'a, T>(call: &'a Call, i: usize, tag: &sys::napi_type_tag) -> Option<&'a T> {
    let value = call.arg(i)?;
    let mut is_tagged = false;
    // SAFETY: `value` is a value of this call; a non-object just fails the check.
    let status = unsafe { sys::napi_check_object_type_tag(call.env, value, tag, &mut is_tagged) };
    let mut data = ptr::null_mut();
    if status != Status::napi_ok
        || !is_tagged
        // SAFETY: only reached for a value carrying our tag: an external we made.
        || unsafe { sys::napi_get_value_external(call.env, value, &mut data) } != Status::napi_ok
    {
        return None;
    }
    // SAFETY: `data` is the pointer `external_tagged::<T>` made with
    // `Rc::into_raw` (the caller's contract), alive for this call (see above).
    Some(unsafe { &*(data as *const T) })
}

/// A count in 1..=u32::MAX; a `RangeError` otherwise.
pub(crate) struct Count(pub(crate) usize);

/// Whether `x` is a whole number within the i64 range (NaN and the
/// infinities are not). `f64::fract` calls libm's `trunc` on x86-64 without
/// SSE4.1, a call per argument on the hot paths; the round trip through
/// `i64` compiles to two instructions. Callers accept less than 2^63 anyway.
#[inline(always)]
pub(crate) fn is_whole(x: f64) -> bool {
    x == (x as i64) as f64
}

/// `x` as a count in 1..=2^53 - 1 (a positive safe integer), if it is one:
/// the parameters the constructors take as JS numbers.
pub(crate) fn positive_safe_integer(x: f64) -> Option<u64> {
    (is_whole(x) && (1.0..=9_007_199_254_740_991.0).contains(&x)).then_some(x as u64)
}

impl Arg<'_> for Count {
    fn read(call: &Call, i: usize) -> Option<Self> {
        let n = call.number(i)?;
        if is_whole(n) && (1.0..=u32::MAX as f64).contains(&n) {
            Some(Count(n as usize))
        } else {
            throw_range(call.env, &format!("argument {i} must be a positive integer, got {n}"));
            None
        }
    }
}

/// A priority: an integer in the i32 range, 0 when absent or undefined; a
/// `RangeError` otherwise.
pub(crate) struct Priority(pub(crate) i32);

impl Arg<'_> for Priority {
    fn read(call: &Call, i: usize) -> Option<Self> {
        let Some(value) = call.arg(i) else {
            return Some(Priority(0));
        };
        let mut kind = sys::ValueType::napi_undefined;
        // SAFETY: the value is one of this call's; `kind` is a valid out-pointer.
        if unsafe { sys::napi_typeof(call.env, value, &mut kind) } == Status::napi_ok
            && kind == sys::ValueType::napi_undefined
        {
            return Some(Priority(0));
        }
        let p = call.number(i)?;
        if is_whole(p) && (i32::MIN as f64..=i32::MAX as f64).contains(&p) {
            Some(Priority(p as i32))
        } else {
            throw_range(
                call.env,
                &format!("priority must be an integer in the 32-bit range, got {p}"),
            );
            None
        }
    }
}

/// A wait token: a safe non-negative integer; a `RangeError` otherwise.
pub(crate) struct Token(pub(crate) u64);

impl Arg<'_> for Token {
    fn read(call: &Call, i: usize) -> Option<Self> {
        let token = call.number(i)?;
        if is_whole(token) && (0.0..=9_007_199_254_740_991.0).contains(&token) {
            Some(Token(token as u64))
        } else {
            throw_range(
                call.env,
                &format!("token must be a safe non-negative integer, got {token}"),
            );
            None
        }
    }
}

pub(crate) fn throw_type(env: napi_env, message: &str) -> napi_value {
    throw(env, true, message)
}

pub(crate) fn throw_range(env: napi_env, message: &str) -> napi_value {
    throw(env, false, message)
}

/// Throws a plain `Error` with `code` (a named segment's failures, which
/// `ts/named.ts` maps to error classes).
pub(crate) fn throw_with_code(env: napi_env, code: &str, message: &str) -> napi_value {
    let code = CString::new(code).unwrap_or_default();
    let message = CString::new(message).unwrap_or_default();
    // SAFETY: `env` is live; both strings are NUL-terminated and outlive the call.
    unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
    ptr::null_mut()
}

fn throw(env: napi_env, type_error: bool, message: &str) -> napi_value {
    let message = CString::new(message).unwrap_or_default();
    // SAFETY: `env` is live; both strings are NUL-terminated and outlive the call.
    unsafe {
        if type_error {
            sys::napi_throw_type_error(env, c"ERR_INVALID_ARG_TYPE".as_ptr(), message.as_ptr());
        } else {
            sys::napi_throw_range_error(env, c"ERR_OUT_OF_RANGE".as_ptr(), message.as_ptr());
        }
    }
    ptr::null_mut()
}

pub(crate) fn number(env: napi_env, value: f64) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: `env` is live; `result` is a valid out-pointer.
    unsafe { sys::napi_create_double(env, value, &mut result) };
    result
}

pub(crate) fn code(env: napi_env, value: u32) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_create_uint32(env, value, &mut result) };
    result
}

pub(crate) fn boolean(env: napi_env, value: bool) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_get_boolean(env, value, &mut result) };
    result
}

pub(crate) fn null(env: napi_env) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_get_null(env, &mut result) };
    result
}

pub(crate) fn undefined(env: napi_env) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_get_undefined(env, &mut result) };
    result
}

/// A JS array of `values`.
pub(crate) fn array(env: napi_env, values: impl ExactSizeIterator<Item = napi_value>) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: `env` is live; out-pointers are valid; indices are in bounds.
    unsafe {
        sys::napi_create_array_with_length(env, values.len(), &mut result);
        for (i, value) in values.enumerate() {
            sys::napi_set_element(env, result, i as u32, value);
        }
    }
    result
}

/// `null` for none (no allocation in the common case), else a JS array.
pub(crate) fn numbers_or_null(env: napi_env, numbers: &[f64]) -> napi_value {
    if numbers.is_empty() {
        null(env)
    } else {
        array(env, numbers.iter().map(|&n| number(env, n)))
    }
}

/// An external `ArrayBuffer` over `len` bytes at `data` (not a copy), which
/// `owner` keeps valid until the buffer is collected or the env torn down;
/// `None` where the runtime forbids external buffers (a V8 sandbox build),
/// for the caller to decide what to do without one.
///
/// # Safety
///
/// `data .. data + len` must stay valid while `owner` lives.
pub(crate) unsafe fn external_arraybuffer<T: 'static>(
    env: napi_env,
    data: *mut c_void,
    len: usize,
    owner: T,
) -> napi::Result<Option<napi_value>> {
    let hint = Box::into_raw(Box::new(owner));
    let mut result = ptr::null_mut();
    // SAFETY: the caller vouches for `data`; `hint` keeps it valid until
    // `drop_owner` runs (N-API calls it once).
    let status = unsafe {
        sys::napi_create_external_arraybuffer(env, data, len, Some(drop_owner::<T>), hint.cast(), &mut result)
    };
    if status == Status::napi_ok {
        return Ok(Some(result));
    }
    // On failure the hint stays ours (N-API contract): reclaim it.
    // SAFETY: `hint` came from `Box::into_raw` above and N-API did not take it.
    drop(unsafe { Box::from_raw(hint) });
    if status == Status::napi_no_external_buffers_allowed {
        return Ok(None);
    }
    Err(napi::Error::new(
        napi::Status::GenericFailure,
        format!("napi_create_external_arraybuffer failed with status {status}"),
    ))
}

unsafe extern "C" fn drop_owner<T>(_env: napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<T>` that `external_arraybuffer` leaked for
    // this buffer; N-API calls the finalizer once.
    let owner = unsafe { Box::from_raw(hint.cast::<T>()) };
    // Dropping the owner may drop the last reference to a primitive (and
    // detach, or unmap a segment); a panic must not unwind into N-API (that
    // would abort the process).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(owner)));
}
