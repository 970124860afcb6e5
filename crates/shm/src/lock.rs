//! The segment lock: a robust, process-shared pthread mutex (design §4.1).
//!
//! When a holder dies inside it (any signal, SIGKILL included), the kernel's
//! robust-futex list marks it, and the next `pthread_mutex_timedlock` returns
//! `EOWNERDEAD` with the lock held: the state may be half-changed. Calling
//! `pthread_mutex_consistent` before the unlock is mandatory; an unlock
//! without it makes the mutex `ENOTRECOVERABLE` for everyone (E4). So
//! [`lock`] calls it at once and reports [`Locked::OwnerDied`]; the segment
//! keeps a "recovery pending" word so that the repair itself survives a
//! second death.

use std::io;
use std::time::Duration;

use crate::Error;

/// How the lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    Clean,
    /// `EOWNERDEAD`, already made consistent.
    OwnerDied,
}

/// Initialises a robust, process-shared mutex in place.
///
/// # Safety
///
/// `m` points to writable memory of at least `size_of::<pthread_mutex_t>()`
/// bytes, suitably aligned, that no thread uses as a mutex right now.
pub(crate) unsafe fn init(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    // SAFETY: a zeroed attr is then initialised by pthread_mutexattr_init.
    let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    let check = |rc: i32| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    };
    // SAFETY: `attr` is a valid attr object for all four calls; `m` is valid
    // per this function's contract.
    unsafe {
        check(libc::pthread_mutexattr_init(&mut attr))?;
        let r = check(libc::pthread_mutexattr_setpshared(
            &mut attr,
            libc::PTHREAD_PROCESS_SHARED,
        ))
        .and_then(|()| check(libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST)))
        .and_then(|()| check(libc::pthread_mutex_init(m, &attr)));
        libc::pthread_mutexattr_destroy(&mut attr);
        r
    }
}

fn deadline(timeout: Duration) -> libc::timespec {
    // pthread_mutex_timedlock measures against CLOCK_REALTIME.
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let nanos = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
    libc::timespec {
        tv_sec: now.tv_sec + timeout.as_secs() as libc::time_t + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as _,
    }
}

/// Takes the mutex, waiting at most `timeout`.
///
/// # Errors
///
/// [`Error::LockStuck`] on timeout (a holder that is stopped, or garbage that
/// looks held) or `EINVAL` (garbage type bits); [`Error::Damaged`] when the
/// mutex is `ENOTRECOVERABLE`.
///
/// # Safety
///
/// `m` points to a mapped mutex that was initialised by [`init`] (or is
/// damaged bytes of a segment: glibc then reports errors or times out).
pub(crate) unsafe fn lock(m: *mut libc::pthread_mutex_t, timeout: Duration) -> Result<Locked, Error> {
    // Uncontended fast path without computing a deadline.
    // SAFETY: per this function's contract.
    let mut rc = unsafe { libc::pthread_mutex_trylock(m) };
    if rc == libc::EBUSY {
        let at = deadline(timeout);
        // SAFETY: per this function's contract; `at` is a valid timespec.
        rc = unsafe { libc::pthread_mutex_timedlock(m, &at) };
    }
    match rc {
        0 => Ok(Locked::Clean),
        libc::EOWNERDEAD => {
            // SAFETY: we hold the mutex (EOWNERDEAD returns it locked).
            unsafe { libc::pthread_mutex_consistent(m) };
            Ok(Locked::OwnerDied)
        }
        libc::ENOTRECOVERABLE => Err(Error::Damaged("the segment lock is not recoverable".into())),
        _ => Err(Error::LockStuck),
    }
}

/// Releases the mutex.
///
/// # Safety
///
/// The calling thread holds `m` (from [`lock`]).
pub(crate) unsafe fn unlock(m: *mut libc::pthread_mutex_t) {
    // SAFETY: per this function's contract.
    unsafe { libc::pthread_mutex_unlock(m) };
}
