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

use std::ffi::{c_void, CStr, CString};
use std::ptr;
use std::rc::Rc;

use napi::sys::{self, napi_callback_info, napi_env, napi_value, Status};

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

/// Turns `unsafe fn(env, info) -> napi_value` into a raw N-API callback that
/// cannot unwind into Node: a panic becomes a thrown JS `Error` with code
/// `ERR_SLUICE_PANIC` (unwinding across `extern "C"` would abort the process).
macro_rules! guarded {
    ($body:path) => {{
        unsafe extern "C" fn callback(
            env: napi::sys::napi_env,
            info: napi::sys::napi_callback_info,
        ) -> napi::sys::napi_value {
            // SAFETY: N-API calls this with the invocation's env and info,
            // which is all `$body` asks for.
            $crate::raw::guard(env, || unsafe { $body(env, info) })
        }
        Some(callback as unsafe extern "C" fn(_, _) -> _)
    }};
}
pub(crate) use guarded;

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

/// Wraps a clone of `value` in an `External` tagged with `tag`.
pub(crate) fn external<T: 'static>(env: napi_env, value: &Rc<T>, tag: &sys::napi_type_tag) -> napi::Result<napi_value> {
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
    // SAFETY: `data` came from `Rc::into_raw` in `external::<T>`; N-API calls this once.
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
    /// `env` and `info` must be those of the current callback invocation.
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

    /// Argument `i` as the `T` inside one of our externals tagged `tag`; throws
    /// a `TypeError` and returns `None` otherwise. The reference is valid for
    /// the rest of the call: the external (which owns a count of the `Rc`) is
    /// an argument of this call, so it cannot be collected before it returns.
    pub(crate) fn handle<T>(&self, i: usize, tag: &sys::napi_type_tag) -> Option<&T> {
        let value = self.arg(i)?;
        let mut tagged = false;
        // SAFETY: `value` is a value of this call; a non-object just fails the check.
        let status = unsafe { sys::napi_check_object_type_tag(self.env, value, tag, &mut tagged) };
        let mut data = ptr::null_mut();
        if status != Status::napi_ok
            || !tagged
            // SAFETY: only reached for a value carrying our tag: an external we made.
            || unsafe { sys::napi_get_value_external(self.env, value, &mut data) } != Status::napi_ok
        {
            throw_type(self.env, "the first argument must be a sluice native handle");
            return None;
        }
        // SAFETY: `data` is the pointer `external::<T>` made with `Rc::into_raw`
        // for this tag, alive for this call (see above).
        Some(unsafe { &*(data as *const T) })
    }

    /// Argument `i` as a number; throws a `TypeError` otherwise.
    pub(crate) fn number(&self, i: usize) -> Option<f64> {
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

    /// Argument `i` as a count in 1..=u32::MAX; throws a `RangeError` otherwise.
    pub(crate) fn count(&self, i: usize) -> Option<usize> {
        let n = self.number(i)?;
        if n.fract() == 0.0 && (1.0..=u32::MAX as f64).contains(&n) {
            Some(n as usize)
        } else {
            throw_range(self.env, &format!("argument {i} must be a positive integer, got {n}"));
            None
        }
    }

    /// Argument `i` as a priority: an integer in the i32 range, 0 when absent
    /// or undefined; throws a `RangeError` otherwise.
    pub(crate) fn priority(&self, i: usize) -> Option<i32> {
        let Some(value) = self.arg(i) else { return Some(0) };
        let mut kind = sys::ValueType::napi_undefined;
        // SAFETY: the value is one of this call's; `kind` is a valid out-pointer.
        if unsafe { sys::napi_typeof(self.env, value, &mut kind) } == Status::napi_ok
            && kind == sys::ValueType::napi_undefined
        {
            return Some(0);
        }
        let p = self.number(i)?;
        if p.fract() == 0.0 && (i32::MIN as f64..=i32::MAX as f64).contains(&p) {
            Some(p as i32)
        } else {
            throw_range(
                self.env,
                &format!("priority must be an integer in the 32-bit range, got {p}"),
            );
            None
        }
    }

    /// Argument `i` as a wait token: a safe non-negative integer.
    pub(crate) fn token(&self, i: usize) -> Option<u64> {
        let token = self.number(i)?;
        if token.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&token) {
            Some(token as u64)
        } else {
            throw_range(
                self.env,
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
