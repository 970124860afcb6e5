//! The hot paths (`tryAcquire`, `acquire`, `release`, collecting grants) in raw N-API.
//!
//! Measured on this machine with napi-rs 3.16: a `#[napi]` method call costs
//! ~230 ns before it does anything (it creates a reference to `this` and
//! registers a borrow on every call), a free function with two `u32`
//! arguments ~95 ns, and a raw N-API call ~20 ns. Acquiring and releasing a
//! permit must cost about what the native crossing costs, so these three go
//! through raw callbacks on an `External` that holds this thread's
//! `Attachment`. Everything else stays in ordinary napi-rs code.
//!
//! The `External` is type-tagged, so a value that is not one of ours is
//! refused with a `TypeError` instead of being read as an `Attachment`.

use std::ffi::{c_void, CStr};
use std::ptr;
use std::rc::Rc;

use napi::sys::{self, napi_callback_info, napi_env, napi_value, Status};
use sluice_core::Acquire;

use crate::attachment::Attachment;

/// Marks externals made by `create`; random, fixed for the life of the format.
const TAG: sys::napi_type_tag = sys::napi_type_tag {
    lower: 0x5a1c_e5e7_0a7d_1e55,
    upper: 0x9c4b_2f1d_83e6_0c71,
};

/// Wraps a clone of `attachment` in a tagged `External` for the fast calls.
pub(crate) fn create(env: napi_env, attachment: &Rc<Attachment>) -> napi::Result<napi_value> {
    let data = Rc::into_raw(Rc::clone(attachment)) as *mut c_void;
    let mut external = ptr::null_mut();
    // SAFETY: `env` is the live env of the current call; `finalize` matches the
    // data's type and runs once, when the external is collected.
    let status = unsafe { sys::napi_create_external(env, data, Some(finalize), ptr::null_mut(), &mut external) };
    if status != Status::napi_ok {
        // SAFETY: the external was not created, so we still own this count.
        drop(unsafe { Rc::from_raw(data as *const Attachment) });
        return Err(napi::Error::from_reason("failed to create a semaphore handle"));
    }
    // SAFETY: `external` is a fresh object of this env, tagged once.
    let status = unsafe { sys::napi_type_tag_object(env, external, &TAG) };
    if status != Status::napi_ok {
        return Err(napi::Error::from_reason("failed to tag a semaphore handle"));
    }
    Ok(external)
}

unsafe extern "C" fn finalize(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` came from `Rc::into_raw` in `create`; N-API calls this once.
    drop(unsafe { Rc::from_raw(data as *const Attachment) });
}

/// Registers the fast functions on the module's exports.
pub(crate) fn register(env: napi_env, exports: napi_value) -> napi::Result<()> {
    let functions: [(&CStr, sys::napi_callback); 4] = [
        (c"semTryAcquire", Some(try_acquire)),
        (c"semAcquire", Some(acquire)),
        (c"semRelease", Some(release)),
        (c"semTakeGranted", Some(take_granted)),
    ];
    for (name, callback) in functions {
        let mut function = ptr::null_mut();
        // SAFETY: `env` and `exports` are those of the module being initialised;
        // `name` is NUL-terminated; the callbacks have the N-API signature.
        let ok = unsafe {
            sys::napi_create_function(
                env,
                name.as_ptr(),
                name.count_bytes() as isize,
                callback,
                ptr::null_mut(),
                &mut function,
            ) == Status::napi_ok
                && sys::napi_set_named_property(env, exports, name.as_ptr(), function) == Status::napi_ok
        };
        if !ok {
            return Err(napi::Error::from_reason(
                "failed to register the fast semaphore functions",
            ));
        }
    }
    Ok(())
}

/// Throws a JS error of the given constructor and returns `undefined`'s stand-in.
fn throw(env: napi_env, type_error: bool, message: &str) -> napi_value {
    let message = std::ffi::CString::new(message).unwrap_or_default();
    // SAFETY: `env` is live; both strings are NUL-terminated and outlive the call.
    unsafe {
        if type_error {
            sys::napi_throw_type_error(env, c"ERR_INVALID_ARG_TYPE".as_ptr(), message.as_ptr());
        } else {
            sys::napi_throw_range_error(env, c"ERR_SLUICE_MISUSE".as_ptr(), message.as_ptr());
        }
    }
    ptr::null_mut()
}

/// The arguments of a fast call: this thread's attachment and up to two numbers.
struct Args<'a> {
    attachment: &'a Attachment,
    numbers: [f64; 2],
}

/// Reads `(external, a, b?)`. Returns `None` after throwing if they are malformed.
///
/// # Safety
///
/// `env` and `info` must be those of the current callback invocation. The
/// returned reference must not outlive it: the external (which owns a count of
/// the `Rc`) is an argument of this call, so it cannot be collected before the
/// call returns.
unsafe fn args<'a>(env: napi_env, info: napi_callback_info, expected: usize) -> Option<Args<'a>> {
    let mut argc = 3;
    let mut argv = [ptr::null_mut(); 3];
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
    if argc < expected + 1 {
        throw(env, true, "missing arguments");
        return None;
    }
    let mut tagged = false;
    // SAFETY: `argv[0]` is a value of this call; a non-object just fails the check.
    let status = unsafe { sys::napi_check_object_type_tag(env, argv[0], &TAG, &mut tagged) };
    let mut data = ptr::null_mut();
    // SAFETY: as above; only reached for a value carrying our tag, i.e. an external we made.
    if status != Status::napi_ok
        || !tagged
        || unsafe { sys::napi_get_value_external(env, argv[0], &mut data) } != Status::napi_ok
    {
        throw(env, true, "the first argument must be a sluice semaphore handle");
        return None;
    }
    let mut numbers = [0.0; 2];
    for (i, number) in numbers.iter_mut().enumerate().take(expected) {
        // SAFETY: `argv[i + 1]` is a value of this call.
        if unsafe { sys::napi_get_value_double(env, argv[i + 1], number) } != Status::napi_ok {
            throw(env, true, "expected a number");
            return None;
        }
    }
    // SAFETY: `data` is the pointer `create` made with `Rc::into_raw`; the
    // external holding it is alive for the duration of this call.
    let attachment = unsafe { &*(data as *const Attachment) };
    Some(Args { attachment, numbers })
}

/// A permit count from JS: an integer in 1..=u32::MAX (the TS layer has
/// checked the exact range already).
fn permits(env: napi_env, n: f64) -> Option<usize> {
    if n.fract() == 0.0 && (1.0..=u32::MAX as f64).contains(&n) {
        Some(n as usize)
    } else {
        throw(env, false, &format!("permits must be a positive integer, got {n}"));
        None
    }
}

fn boolean(env: napi_env, value: bool) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: `env` is live; `result` is a valid out-pointer.
    unsafe { sys::napi_get_boolean(env, value, &mut result) };
    result
}

/// `semTryAcquire(handle, n) -> boolean`
unsafe extern "C" fn try_acquire(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: called by N-API with this invocation's env and info.
    let Some(Args {
        attachment,
        numbers: [n, _],
    }) = (unsafe { args(env, info, 1) })
    else {
        return ptr::null_mut();
    };
    let Some(n) = permits(env, n) else {
        return ptr::null_mut();
    };
    let acquired = attachment.shared.core.try_acquire(n).is_ok();
    if acquired {
        attachment.add_held(n);
    }
    boolean(env, acquired)
}

/// `semAcquire(handle, n, token) -> boolean`: true if taken now, false if queued.
unsafe extern "C" fn acquire(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: called by N-API with this invocation's env and info.
    let Some(Args {
        attachment,
        numbers: [n, token],
    }) = (unsafe { args(env, info, 2) })
    else {
        return ptr::null_mut();
    };
    let Some(n) = permits(env, n) else {
        return ptr::null_mut();
    };
    if !(token.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&token)) {
        return throw(
            env,
            false,
            &format!("token must be a safe non-negative integer, got {token}"),
        );
    }
    match attachment.shared.core.acquire(n, attachment.slot, token as u64) {
        Ok(Acquire::Acquired) => {
            attachment.add_held(n);
            boolean(env, true)
        }
        Ok(Acquire::Queued) => boolean(env, false),
        Err(misuse) => throw(env, false, &misuse.to_string()),
    }
}

/// `semRelease(handle, n) -> number[] | null`: what the release granted.
///
/// Each entry is either the token of a wait of *this* thread, now granted and
/// collected (a positive number), or a doorbell slot of another thread to
/// ring, encoded as `-(slot + 1)`. Collecting this thread's grants in the
/// same call saves a second crossing in the common single-thread case.
unsafe extern "C" fn release(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: called by N-API with this invocation's env and info.
    let Some(Args {
        attachment,
        numbers: [n, _],
    }) = (unsafe { args(env, info, 1) })
    else {
        return ptr::null_mut();
    };
    let Some(n) = permits(env, n) else {
        return ptr::null_mut();
    };
    if let Err(error) = attachment.take_held(n) {
        return throw(env, false, &error.reason);
    }
    let woken = match attachment.shared.core.release(n) {
        Ok(woken) => woken,
        Err(misuse) => {
            attachment.add_held(n);
            return throw(env, false, &misuse.to_string());
        }
    };
    if woken.is_empty() {
        return numbers_or_null(env, std::iter::empty());
    }
    let mut out = Vec::with_capacity(woken.len());
    for slot in woken {
        if slot == attachment.slot {
            let grants = attachment.shared.core.take_granted(slot);
            attachment.add_held(grants.iter().map(|grant| grant.permits).sum());
            out.extend(grants.iter().map(|grant| grant.token as f64));
        } else {
            out.push(-(f64::from(slot) + 1.0));
        }
    }
    numbers_or_null(env, out.into_iter())
}

/// `semTakeGranted(handle) -> number[] | null`: tokens of this thread's waits
/// granted since the last call; their permits count as held from now on.
unsafe extern "C" fn take_granted(env: napi_env, info: napi_callback_info) -> napi_value {
    // SAFETY: called by N-API with this invocation's env and info.
    let Some(Args { attachment, .. }) = (unsafe { args(env, info, 0) }) else {
        return ptr::null_mut();
    };
    let grants = attachment.shared.core.take_granted(attachment.slot);
    attachment.add_held(grants.iter().map(|grant| grant.permits).sum());
    numbers_or_null(env, grants.into_iter().map(|grant| grant.token as f64))
}

/// `null` for none (no allocation in the common case), else a JS array.
fn numbers_or_null(env: napi_env, numbers: impl ExactSizeIterator<Item = f64>) -> napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: `env` is live; out-pointers are valid; indices are in bounds.
    unsafe {
        if numbers.len() == 0 {
            sys::napi_get_null(env, &mut result);
        } else {
            sys::napi_create_array_with_length(env, numbers.len(), &mut result);
            for (i, number) in numbers.enumerate() {
                let mut value = ptr::null_mut();
                sys::napi_create_double(env, number, &mut value);
                sys::napi_set_element(env, result, i as u32, value);
            }
        }
    }
    result
}
