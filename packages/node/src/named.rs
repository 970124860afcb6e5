//! `NativeNamedSemaphore`: one JS thread's owner of a named semaphore in
//! shared memory (`sluice-shm`), shared by every process of the machine.
//!
//! The hot calls are the process-local semaphore's raw functions
//! (`semTryAcquire`, …): they take either kind of handle (`SemaphoreArg`), so
//! the TypeScript `Semaphore` is the same class over both. The differences:
//!
//! - what a thread holds is counted in the segment (its owner slot), not in a
//!   thread-local `Held`, so another process can give it back when this one
//!   dies;
//! - native code rings the other owners' FIFO bells itself; a call returns
//!   only this thread's own granted tokens;
//! - taking the grants also sweeps for dead processes (throttled machine-wide
//!   in the segment), which the 50 ms safety poll drives.

use std::rc::Rc;
use std::sync::Arc;

use napi::sys::{self, napi_env, napi_value};
use napi::{Env, Error, Result, Status};
use napi_derive::napi;
use sluice_shm::semaphore::{Acquire, SharedSemaphore};
use sluice_shm::Error as ShmError;

use crate::attachment::{Attachment, GiveBack, Primitive, ThreadUse};
use crate::raw::{self, code, Arg, Call};

/// One owner slot of a named semaphore, held by one thread; detached (its
/// waits withdrawn, its permits given back, the slot freed) when the last JS
/// object for it goes, or when the thread exits.
pub(crate) type NamedOwner = ThreadUse<OwnerSlot>;

pub(crate) struct OwnerSlot {
    semaphore: Arc<SharedSemaphore>,
    owner: u32,
    /// This owner's FIFO bell; JS reads a duplicate (`bellFd`).
    #[cfg(unix)]
    bell: std::os::fd::OwnedFd,
}

impl GiveBack for OwnerSlot {
    fn give_back(&self) {
        // Nothing to report to: the thread or the object is going away. A
        // damaged segment or a stuck lock leaves the slot to the reaper.
        let _ = self.semaphore.detach(self.owner);
    }
}

/// Type tag of the externals `fastHandle` makes for a named semaphore.
pub(crate) const NAMED_TAG: sys::napi_type_tag = sys::napi_type_tag {
    lower: 0x7d3a_51e0_c4b2_9f18,
    upper: 0x2e6f_0b97_a15c_d443,
};

/// Throws a crate error as a JS error with a code, for `ts/named.ts` to map
/// to an error class, and returns what tells napi-rs an exception is pending.
/// A mismatch's message is `"<field> <existing> <requested>"`, for
/// `ts/named.ts` to phrase.
pub(crate) fn fail(env: &Env, error: ShmError) -> Error {
    let code = error_code(&error);
    let message = match error {
        ShmError::Mismatch {
            field,
            existing,
            requested,
        } => format!("{field} {existing} {requested}"),
        ShmError::Invalid(_) => return Error::new(Status::InvalidArg, error.to_string()),
        other => other.to_string(),
    };
    raw::throw_with_code(env.raw(), code, &message);
    Error::from_status(Status::PendingException)
}

fn error_code(error: &ShmError) -> &'static str {
    match error {
        ShmError::Unsupported => "ERR_SLUICE_UNSUPPORTED_PLATFORM",
        ShmError::Mismatch { .. } => "ERR_SLUICE_MISMATCH",
        ShmError::ProcessLimit(_) => "ERR_SLUICE_PROCESS_LIMIT",
        ShmError::OwnerLimit(_) => "ERR_SLUICE_THREAD_LIMIT",
        ShmError::Closed => "ERR_SLUICE_CLOSED",
        ShmError::InvalidName(_) => "ERR_INVALID_ARG_VALUE",
        _ => "ERR_SLUICE_SEGMENT",
    }
}

/// Throws `error` from a raw call.
pub(crate) fn throw(env: napi_env, error: ShmError) -> napi_value {
    raw::throw_with_code(env, error_code(&error), &error.to_string())
}

#[napi]
pub struct NativeNamedSemaphore {
    owner: Rc<NamedOwner>,
    permits: u32,
    max_waiters: u32,
}

#[napi]
impl NativeNamedSemaphore {
    /// Opens (creating it if needed) the named semaphore `name` in `dir`
    /// (default: `/dev/shm/sluice-<uid>` or `SLUICE_SHM_DIR`), attaching this
    /// thread as a new owner. `fairness`: `'fifo'`, `'eventual'` or
    /// `'eventual-head'` (a segment parameter: another opener's other choice
    /// is a mismatch).
    #[napi(factory, catch_unwind)]
    pub fn open(
        env: Env,
        name: String,
        permits: u32,
        max_waiters: u32,
        fairness: String,
        dir: Option<String>,
    ) -> Result<Self> {
        let dir = dir.map(std::path::PathBuf::from);
        let fairness = crate::semaphore::parse_fairness(&fairness)?;
        let semaphore = SharedSemaphore::open_with(dir.as_deref(), &name, u64::from(permits), max_waiters, fairness)
            .map_err(|e| fail(&env, e))?;
        let (owner, bell) = semaphore.attach().map_err(|e| fail(&env, e))?;
        #[cfg(unix)]
        // SAFETY: `attach` returned a fresh fd that nobody else owns.
        let bell = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(bell) };
        #[cfg(not(unix))]
        let _ = bell;
        let owner = ThreadUse::register(
            &env,
            OwnerSlot {
                semaphore,
                owner,
                #[cfg(unix)]
                bell,
            },
        )?;
        Ok(Self {
            owner,
            permits,
            max_waiters,
        })
    }

    /// Closes `name` for everyone who has it open and frees the name; false
    /// if there was no such segment.
    #[napi(catch_unwind)]
    pub fn unlink(env: Env, name: String, dir: Option<String>) -> Result<bool> {
        let dir = dir.map(std::path::PathBuf::from);
        SharedSemaphore::unlink(dir.as_deref(), &name).map_err(|e| fail(&env, e))
    }

    /// A new fd on this owner's FIFO bell, for `net.Socket({ fd })`, which
    /// owns and closes it.
    #[napi(catch_unwind)]
    pub fn bell_fd(&self, env: Env) -> Result<i32> {
        #[cfg(unix)]
        {
            use std::os::fd::IntoRawFd;
            let fd = self.owner.bell.try_clone().map_err(|e| fail(&env, ShmError::Io(e)))?;
            Ok(fd.into_raw_fd())
        }
        #[cfg(not(unix))]
        Err(fail(&env, ShmError::Unsupported))
    }

    /// The creation parameters this object was opened with (equal to the segment's).
    #[napi(getter)]
    pub fn permits(&self) -> u32 {
        self.permits
    }

    #[napi(getter)]
    pub fn max_waiters(&self) -> u32 {
        self.max_waiters
    }

    /// This thread's owner slot: its identity as a waiter.
    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.owner.owner
    }

    /// How many owner slots the segment has: every `slot` is below it.
    #[napi(getter)]
    pub fn owners(&self) -> u32 {
        self.owner.semaphore.max_owners()
    }

    #[napi(getter)]
    pub fn capacity(&self) -> u32 {
        saturate(self.owner.semaphore.capacity())
    }

    #[napi(getter)]
    pub fn available(&self) -> u32 {
        saturate(self.owner.semaphore.available())
    }

    #[napi(getter)]
    pub fn waiting(&self) -> u32 {
        saturate(self.owner.semaphore.waiting())
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.owner.semaphore.closed()
    }

    /// Whether the name was unlinked (this object is closed for good).
    #[napi(getter)]
    pub fn unlinked(&self) -> bool {
        // The segment's UNLINKED flag (set by `unlink`, never cleared).
        self.owner
            .semaphore
            .segment()
            .is_some_and(|segment| segment.is_closed())
    }

    /// Withdraws the wait `token`, giving back whatever was granted to it;
    /// `null` (native code rang whoever that served).
    #[napi(catch_unwind)]
    pub fn cancel(&self, env: Env, token: f64) -> Result<Option<Vec<f64>>> {
        let owner = &self.owner;
        owner
            .semaphore
            .cancel(owner.owner, token as u64)
            .map_err(|e| fail(&env, e))?;
        Ok(None)
    }

    /// Adds `n` permits; native code rings the owners it serves (this one too).
    #[napi(catch_unwind)]
    pub fn add_permits(&self, env: Env, n: u32) -> Result<Vec<f64>> {
        self.owner
            .semaphore
            .add_permits(u64::from(n))
            .map_err(|e| fail(&env, e))?;
        Ok(Vec::new())
    }

    /// Removes up to `n` free permits for good; returns how many.
    #[napi(catch_unwind)]
    pub fn forget_permits(&self, env: Env, n: u32) -> Result<u32> {
        self.owner
            .semaphore
            .forget_permits(u64::from(n))
            .map(saturate)
            .map_err(|e| fail(&env, e))
    }

    /// Gives up `n` permits this thread holds, for good.
    #[napi(catch_unwind)]
    pub fn forget_held(&self, env: Env, n: u32) -> Result<Vec<f64>> {
        let owner = &self.owner;
        owner
            .semaphore
            .forget_held(owner.owner, u64::from(n))
            .map_err(|e| fail(&env, e))?;
        Ok(Vec::new())
    }

    /// Closes the semaphore for every process: every queued wait is withdrawn
    /// and its owner rung.
    #[napi(catch_unwind)]
    pub fn close(&self, env: Env) -> Result<Vec<f64>> {
        self.owner.semaphore.close().map_err(|e| fail(&env, e))?;
        Ok(Vec::new())
    }

    /// Reaps the waits and permits of dead processes, if a sweep is due
    /// (throttled machine-wide, as the safety poll's): `metrics()` calls it
    /// so that `waiting` drops a killed process's waits even in a process
    /// with nothing pending to drive the poll.
    #[napi(catch_unwind)]
    pub fn sweep(&self, env: Env) -> Result<u32> {
        self.owner
            .semaphore
            .sweep()
            .map(|reaped| u32::try_from(reaped).unwrap_or(u32::MAX))
            .map_err(|e| fail(&env, e))
    }

    /// A handle for the raw hot calls.
    #[napi(ts_return_type = "object")]
    pub fn fast_handle(&self, env: Env) -> Result<napi_value> {
        raw::external_tagged(env.raw(), &self.owner, &NAMED_TAG)
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The handle of the semaphore raw calls: a process-local semaphore's
/// attachment, or a named semaphore's owner. The process-local tag is checked
/// first, so its calls pay nothing for the other kind.
pub(crate) enum SemaphoreArg<'a> {
    Local(&'a Attachment<sluice_core::Semaphore>),
    Named(&'a NamedOwner),
}

impl<'a> Arg<'a> for SemaphoreArg<'a> {
    fn read(call: &'a Call, i: usize) -> Option<Self> {
        let tag = &<sluice_core::Semaphore as Primitive>::TAG;
        // SAFETY: only `raw::external` tags values with a primitive's TAG, over
        // its `Attachment`, and only `fast_handle` above tags with NAMED_TAG,
        // over a `NamedOwner`.
        unsafe {
            if let Some(local) = raw::tagged(call, i, tag) {
                return Some(SemaphoreArg::Local(local));
            }
            if let Some(named) = raw::tagged(call, i, &NAMED_TAG) {
                return Some(SemaphoreArg::Named(named));
            }
        }
        raw::throw_type(call.env, "the first argument must be a sluice native handle");
        None
    }
}

// The raw hot calls for a named semaphore; `semaphore.rs` dispatches to them.

/// `semTryAcquire` on a named semaphore.
pub(crate) fn try_acquire(env: napi_env, owner: &NamedOwner, n: usize) -> napi_value {
    let semaphore = &owner.semaphore;
    let outcome = match semaphore.try_acquire(owner.owner, n as u64) {
        Ok(true) => code::DONE,
        Ok(false) if n as u64 > semaphore.capacity() => code::TOO_HEAVY,
        Ok(false) => code::NOT_NOW,
        Err(ShmError::Closed) => code::CLOSED,
        Err(error) => return throw(env, error),
    };
    raw::code(env, outcome)
}

/// `semAcquire` on a named semaphore.
pub(crate) fn acquire(env: napi_env, owner: &NamedOwner, n: usize, token: u64, priority: i32) -> napi_value {
    let outcome = match owner.semaphore.acquire(owner.owner, n as u64, token, priority) {
        Ok(Acquire::Granted) => code::DONE,
        Ok(Acquire::Queued) => code::QUEUED,
        Ok(Acquire::QueueFull) => code::QUEUE_FULL,
        Ok(Acquire::TooHeavy) => code::TOO_HEAVY,
        Err(ShmError::Closed) => code::CLOSED,
        Err(error) => return throw(env, error),
    };
    raw::code(env, outcome)
}

/// `semRelease` on a named semaphore: this thread's own granted tokens (others
/// were rung natively).
pub(crate) fn release(env: napi_env, owner: &NamedOwner, n: usize) -> napi_value {
    match owner.semaphore.release(owner.owner, n as u64) {
        Ok(mine) => tokens(env, mine.into_iter().map(|token| token as f64)),
        Err(error @ ShmError::Damaged(_)) | Err(error @ ShmError::LockStuck) => throw(env, error),
        // Releasing more than this thread holds is the caller's mistake.
        Err(error) => raw::throw_range(env, &error.to_string()),
    }
}

/// `semTakeGranted` on a named semaphore; sweeps for dead processes first
/// (throttled in the segment), since the safety poll calls it.
pub(crate) fn take_granted(env: napi_env, owner: &NamedOwner) -> napi_value {
    let semaphore = &owner.semaphore;
    if let Err(error) = semaphore.sweep() {
        return throw(env, error);
    }
    match semaphore.take_decided(owner.owner) {
        Ok(decided) => raw::numbers_or_null(env, &decided.into_iter().map(|t| t as f64).collect::<Vec<_>>()),
        Err(error) => throw(env, error),
    }
}

/// `semClosed` on a named semaphore.
pub(crate) fn closed(owner: &NamedOwner) -> bool {
    owner.semaphore.closed()
}

/// `semValue` on a named semaphore: the free permits (nothing is owed).
pub(crate) fn value(env: napi_env, owner: &NamedOwner) -> napi_value {
    raw::number(env, owner.semaphore.available() as f64)
}

/// A single token as a bare number, several as an array, none as null (as
/// `semRelease` answers for a process-local semaphore).
fn tokens(env: napi_env, tokens: impl ExactSizeIterator<Item = f64>) -> napi_value {
    let tokens: Vec<f64> = tokens.collect();
    match tokens.as_slice() {
        [single] => raw::number(env, *single),
        all => raw::numbers_or_null(env, all),
    }
}
