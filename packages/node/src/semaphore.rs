//! `NativeSemaphore`: one thread's handle to a shared `sluice_core::Semaphore`.
//!
//! Waits are identified by a token the JS side picks; the owner is the
//! thread's doorbell slot. The hot calls are raw (see `raw.rs`):
//! `semTryAcquire`, `semAcquire`, `semRelease`, `semTakeGranted`.
//!
//! A wait refused by the core (the capacity shrank below its weight, see
//! `Semaphore::forget_held`) reaches JS as its token negated in what
//! `semTakeGranted` returns; `forgetHeld` rings the refused owners' doorbells
//! (this thread's too) so that they call it.

use std::ffi::CStr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use napi::sys::{self, napi_env, napi_value};
use napi::{Env, Error, Result, Status};
use napi_derive::napi;
use sluice_core::{
    Acquire, AcquireError, Clock, Decision, Fairness, MonotonicClock, Semaphore, TryAcquireError, FAIR_AFTER_NANOS,
    MAX_PERMITS,
};

use crate::attachment::{attached_class, Attachment, Held, Primitive};
use crate::named::{self, SemaphoreArg};
use crate::raw::{self, code, entry, Count, Priority, Token};
use crate::wake;

impl Primitive for Semaphore {
    type Local = Held;

    const TAG: sys::napi_type_tag = sys::napi_type_tag {
        lower: 0x5a1c_e5e7_0a7d_1e55,
        upper: 0x9c4b_2f1d_83e6_0c71,
    };

    /// Also the channel's, for each of its two semaphores.
    fn detach(&self, slot: u32, held: &Held) {
        self.remove_owner(slot);
        let held = held.take_all();
        if held > 0 {
            // Cannot overflow: these permits were taken from this semaphore.
            let _ = self.release(held);
        }
    }
}

type SemaphoreAttachment = Attachment<Semaphore>;

#[napi]
pub struct NativeSemaphore {
    attachment: Rc<SemaphoreAttachment>,
}

#[napi]
impl NativeSemaphore {
    /// `maxWaiters`: most waits queued at once (across threads); unbounded if
    /// absent. `available`: how many of the `permits` start free (all if
    /// absent); the rest are held by nobody until `releaseUnowned` frees them.
    /// `owed`: permits owed besides (`Semaphore::with_owed`, a value below
    /// zero); only with `available` 0. `fairness`: `'fifo'` (the default),
    /// `'eventual'` or `'eventual-head'` (see `fairness_of`).
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        permits: u32,
        max_waiters: Option<u32>,
        available: Option<u32>,
        owed: Option<u32>,
        fairness: Option<String>,
    ) -> Result<Self> {
        let permits = permits as usize;
        if permits == 0 || permits > MAX_PERMITS {
            return Err(Error::new(
                Status::InvalidArg,
                format!("permits must be a positive integer, got {permits}"),
            ));
        }
        if let Some(owed) = owed {
            if max_waiters.is_some() || available != Some(0) {
                return Err(Error::new(
                    Status::InvalidArg,
                    "owed needs available 0 and no maxWaiters".to_owned(),
                ));
            }
            return Self::attach(
                &env,
                fairness_of(Semaphore::with_owed(permits, owed as usize), fairness.as_deref())?,
            );
        }
        let core = match (max_waiters, available) {
            (_, Some(free)) if free as usize > permits => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("available must be at most {permits}, got {free}"),
                ))
            }
            (None, Some(free)) => Semaphore::with_available(permits, free as usize),
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    Status::InvalidArg,
                    "maxWaiters and available cannot be combined".to_owned(),
                ))
            }
            (Some(max), None) => Semaphore::with_max_waiters(permits, max as usize),
            (None, None) => Semaphore::new(permits),
        };
        Self::attach(&env, fairness_of(core, fairness.as_deref())?)
    }

    /// A semaphore kept in JavaScript until now (`ts/local-semaphore.ts`),
    /// moved into shared memory with this thread attached: `capacity`
    /// permits, `available` free, `owed` owed, `held` held by this thread
    /// (the rest by nobody), and this thread's queued waits, `waits` as
    /// `[token, permits, priority, ...]` in the order they are served, with
    /// `reservedForHead` permits set aside for the first. Their grants then
    /// reach this thread's doorbell as any wait's do. `fairness`: as in the
    /// constructor (a semaphore kept in JavaScript is FIFO, which is also a
    /// valid eventually fair schedule, and switches mode here).
    #[napi(factory, catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        env: Env,
        capacity: u32,
        max_waiters: Option<u32>,
        available: u32,
        owed: u32,
        held: u32,
        reserved_for_head: u32,
        waits: Vec<f64>,
        fairness: Option<String>,
    ) -> Result<Self> {
        let adopt_error = |what: &str| Error::new(Status::InvalidArg, format!("cannot adopt this semaphore: {what}"));
        let capacity = capacity as usize;
        let (available, held, reserved) = (available as usize, held as usize, reserved_for_head as usize);
        if capacity == 0 || available + held + reserved > capacity {
            return Err(adopt_error("more permits free and held than its capacity"));
        }
        if !waits.len().is_multiple_of(3) {
            return Err(adopt_error("waits must be [token, permits, priority] triples"));
        }
        let mut queued = Vec::with_capacity(waits.len() / 3);
        for triple in waits.chunks_exact(3) {
            let integer = |x: f64, min: f64, max: f64| x.fract() == 0.0 && (min..=max).contains(&x);
            if !(integer(triple[0], 1.0, 9_007_199_254_740_991.0)
                && integer(triple[1], 1.0, capacity as f64)
                && integer(triple[2], f64::from(i32::MIN), f64::from(i32::MAX)))
            {
                return Err(adopt_error("a wait is not [token, permits, priority]"));
            }
            queued.push((triple[0] as u64, triple[1] as usize, triple[2] as i32));
        }
        let max_waiters = max_waiters.map_or(usize::MAX, |max| max as usize);
        let core = Semaphore::with_state(capacity, max_waiters, available, owed as usize)
            .map_err(|error| adopt_error(&error.to_string()))?;
        let core = fairness_of(core, fairness.as_deref())?;
        let adopted = Self::attach(&env, core)?;
        adopted
            .core()
            .adopt_waits(adopted.attachment.slot, reserved, &queued)
            .map_err(|error| adopt_error(&error.to_string()))?;
        adopted.attachment.local.add(held);
        Ok(adopted)
    }

    #[napi(getter)]
    pub fn capacity(&self) -> u32 {
        self.core().capacity() as u32
    }

    #[napi(getter)]
    pub fn available(&self) -> u32 {
        self.core().available() as u32
    }

    #[napi(getter)]
    pub fn waiting(&self) -> u32 {
        self.core().waiting() as u32
    }

    /// `'fifo'`, `'eventual'` or `'eventual-head'`: what
    /// `Semaphore.from(handle)` adopts.
    #[napi(getter)]
    pub fn fairness(&self) -> &'static str {
        match self.core().fairness() {
            Fairness::Fifo => "fifo",
            Fairness::Eventual => "eventual",
            Fairness::EventualHead => "eventual-head",
        }
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core().is_closed()
    }

    /// The fast path's words for JavaScript, as `[state, held, capacity]`:
    /// external `ArrayBuffer`s over the low 32 bits of the core's fast-path
    /// word (`Semaphore::fast_path_word`, shared by every thread), over the
    /// low 32 bits of this thread's held count, and over the whole capacity
    /// word (`Semaphore::capacity_word`, a `usize`). With them this thread
    /// takes and gives back permits with `Atomics.compareExchange`, as the
    /// core's own fast paths do, and no native call (see
    /// `ts/fast-semaphore.ts`). `null` where the runtime forbids external
    /// buffers (a V8 sandbox build): every call then crosses, as before.
    #[napi(catch_unwind, ts_return_type = "[ArrayBuffer, ArrayBuffer, ArrayBuffer] | null")]
    pub fn fast_words(&self, env: Env) -> Result<sys::napi_value> {
        // The low halves alone: JavaScript's take never borrows from the high
        // half of the state nor its give carries into it (it asks native code
        // then), and a held count is at most 2^31 - 1, a JS semaphore's most
        // permits.
        let low = if cfg!(target_endian = "big") {
            std::mem::size_of::<usize>() - 4
        } else {
            0
        };
        let core = self.core();
        let words = [
            (core.fast_path_word().as_ptr().cast::<u8>(), low, 4),
            (self.attachment.local.as_ptr().cast::<u8>(), low, 4),
            (
                core.capacity_word().as_ptr().cast::<u8>(),
                0,
                std::mem::size_of::<usize>(),
            ),
        ];
        let mut buffers = Vec::with_capacity(words.len());
        for (word, offset, len) in words {
            // SAFETY: `word + offset .. + len` lies inside a live `usize` of the
            // attachment (the held count) or of its shared semaphore, which
            // the clone passed along keeps alive until the buffer is freed.
            let buffer = unsafe {
                raw::external_arraybuffer(env.raw(), word.add(offset).cast(), len, Rc::clone(&self.attachment))
            }?;
            match buffer {
                Some(buffer) => buffers.push(buffer),
                None => return Ok(raw::null(env.raw())),
            }
        }
        Ok(raw::array(env.raw(), buffers.into_iter()))
    }

    /// Permits this thread holds.
    #[napi(getter)]
    pub fn held(&self) -> u32 {
        self.attachment.local.get() as u32
    }

    /// Withdraws a wait (giving back anything granted to it). Returns `null` if
    /// the wait is unknown (already collected), else settle entries (`wake.rs`).
    #[napi(catch_unwind)]
    pub fn cancel(&self, token: f64) -> Option<Vec<f64>> {
        let woken = self.core().cancel(self.attachment.slot, token as u64)?;
        Some(self.wake_list(woken))
    }

    /// Adds `n` permits to the capacity, handing them out as a release would;
    /// returns settle entries (`wake.rs`).
    #[napi(catch_unwind)]
    pub fn add_permits(&self, n: u32) -> Result<Vec<f64>> {
        let woken = self.core().add_permits(n as usize).map_err(invalid)?;
        Ok(self.wake_list(woken))
    }

    /// Releases `n` permits that no thread holds (counted out at construction
    /// with `available`, or given up with `forget`), as async-mutex's unchecked
    /// `release` does; returns settle entries. Fails beyond the capacity.
    #[napi(catch_unwind)]
    pub fn release_unowned(&self, n: u32) -> Result<Vec<f64>> {
        let woken = self.core().release(n as usize).map_err(invalid)?;
        Ok(self.wake_list(woken))
    }

    /// Permits still owed (`Semaphore::owed`): the value is `available +
    /// reserved - owed`.
    #[napi(getter)]
    pub fn owed(&self) -> u32 {
        self.core().owed() as u32
    }

    /// Permits set aside for the queue head while it waits for the rest: free
    /// permits that `available` does not show (it reads 0 while anyone waits).
    #[napi(getter)]
    pub fn reserved_for_head(&self) -> u32 {
        self.core().reserved_for_head() as u32
    }

    /// Removes up to `n` free permits for good; returns how many.
    #[napi(catch_unwind)]
    pub fn forget_permits(&self, n: u32) -> u32 {
        self.core().forget_permits(n as usize) as u32
    }

    /// Gives up `n` permits this thread holds, for good (the capacity
    /// shrinks); returns settle entries (`wake.rs`). Waits refused because they
    /// ask for more than the new capacity are rung for, this thread's included,
    /// so that their threads collect the refusals with `semTakeGranted`.
    #[napi(catch_unwind)]
    pub fn forget_held(&self, n: u32) -> Result<Vec<f64>> {
        let n = n as usize;
        self.attachment
            .local
            .take(n)
            .map_err(|reason| Error::new(Status::InvalidArg, reason))?;
        let woken = self.core().forget_held(n).map_err(|e| {
            self.attachment.local.add(n);
            Error::new(Status::InvalidArg, e.to_string())
        })?;
        let own = woken.contains(&self.attachment.slot);
        let mut out = self.wake_list(woken);
        if own {
            // `settle` collected this thread's grants only: ring its own slot
            // too, so its doorbell collects any refusal (a no-op otherwise).
            out.push(-(f64::from(self.attachment.slot) + 1.0));
        }
        Ok(out)
    }

    /// Closes the semaphore; returns ring entries for the threads whose waits
    /// were withdrawn (this one's included).
    #[napi(catch_unwind)]
    pub fn close(&self) -> Vec<f64> {
        wake::rings(self.core().close())
    }

    /// Settle entries (`wake.rs`) for the owners a grant woke.
    fn wake_list(&self, woken: Vec<u32>) -> Vec<f64> {
        let mut out = Vec::new();
        wake::wake_list(
            self.core(),
            self.attachment.slot,
            &self.attachment.local,
            woken,
            &mut out,
        );
        out
    }
}

attached_class!(NativeSemaphore, Semaphore, "semaphore", slot);

pub(crate) const RAW: [(&CStr, sys::napi_callback); 7] = [
    (c"semTryAcquire", entry!(try_acquire)),
    (c"semAcquire", entry!(acquire)),
    (c"semRelease", entry!(release)),
    (c"semTakeGranted", entry!(take_granted)),
    (c"semServe", entry!(serve)),
    (c"semValue", entry!(value)),
    (c"semClosed", entry!(closed)),
];

/// The state word's bits, as `ts/fast-semaphore.ts` reads them (the core's
/// `QUEUED`, `CLOSED` and `PERMIT_SHIFT`).
#[napi]
pub const SEMAPHORE_QUEUED_BIT: u32 = sluice_core::semaphore::QUEUED as u32;
#[napi]
pub const SEMAPHORE_CLOSED_BIT: u32 = sluice_core::semaphore::CLOSED as u32;
#[napi]
pub const SEMAPHORE_PERMIT_SHIFT: u32 = sluice_core::semaphore::PERMIT_SHIFT;

/// `core` in the `fairness` asked for, eventual modes with
/// `FAIR_AFTER_NANOS` on `FairnessClock`: the mode lives in the core, so
/// every thread attached to it shares it.
fn fairness_of(core: Semaphore, fairness: Option<&str>) -> Result<Semaphore> {
    let clock = || Arc::new(FairnessClock(MonotonicClock::default()));
    Ok(match parse_fairness(fairness.unwrap_or("fifo"))? {
        Fairness::Fifo => core,
        Fairness::Eventual => core.with_eventual_fairness(clock(), FAIR_AFTER_NANOS),
        Fairness::EventualHead => core.with_eventual_head_fairness(clock(), FAIR_AFTER_NANOS),
    })
}

/// The mode a JS `fairness` option names (`ts/validate.ts` checked it first).
pub(crate) fn parse_fairness(fairness: &str) -> Result<Fairness> {
    match fairness {
        "fifo" => Ok(Fairness::Fifo),
        "eventual" => Ok(Fairness::Eventual),
        "eventual-head" => Ok(Fairness::EventualHead),
        other => Err(Error::new(
            Status::InvalidArg,
            format!("fairness must be 'fifo', 'eventual' or 'eventual-head', got {other:?}"),
        )),
    }
}

/// What the fairness clock reads while a test holds it still, or `u64::MAX`
/// for the real clock. Process-wide: vitest runs each test file in its own
/// process (`pool: 'forks'`).
static FROZEN_NOW: AtomicU64 = AtomicU64::new(u64::MAX);

/// The clock of eventually fair semaphores: the real monotonic clock, unless
/// a test froze it with `setFairnessClockForTest`, so that JS tests decide
/// whether a queue head is due without timing anything.
struct FairnessClock(MonotonicClock);

impl Clock for FairnessClock {
    fn now(&self) -> u64 {
        // Relaxed: a reading of time publishes nothing else.
        match FROZEN_NOW.load(Ordering::Relaxed) {
            u64::MAX => self.0.now(),
            frozen => frozen,
        }
    }
}

/// For tests only (not part of the TypeScript API): freezes the clock of
/// every eventually fair semaphore of this process at `nanos`, or gives them
/// the real clock back when called without it. Waits queued before or after
/// read the same timeline only while it stays frozen.
#[napi(catch_unwind)]
pub fn set_fairness_clock_for_test(nanos: Option<f64>) -> Result<()> {
    let frozen = match nanos {
        None => u64::MAX,
        Some(n) if n.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&n) => n as u64,
        Some(n) => {
            return Err(Error::new(
                Status::InvalidArg,
                format!("nanos must be a non-negative safe integer, got {n}"),
            ))
        }
    };
    FROZEN_NOW.store(frozen, Ordering::Relaxed);
    Ok(())
}

/// `semServe(handle) -> null | settle entries`: what the doorbell of an
/// eventually fair semaphore calls when rung, before collecting: if this
/// thread was nudged, the permits parked for newcomers go to the queue
/// (`Semaphore::serve`); this thread's grants come back collected, other
/// threads' slots to ring. One load and `null` when nothing is pending.
fn serve(env: napi_env, semaphore: SemaphoreArg) -> napi_value {
    let SemaphoreArg::Local(attachment) = semaphore else {
        // A named semaphore is FIFO: nothing is ever parked.
        return raw::null(env);
    };
    let core = &attachment.shared.primitive;
    let woken = core.serve();
    if woken.is_empty() {
        return raw::null(env);
    }
    let mut out = Vec::with_capacity(woken.len());
    wake::wake_list(core, attachment.slot, &attachment.local, woken, &mut out);
    raw::numbers_or_null(env, &out)
}

/// `semValue(handle) -> number`: free permits (`available` plus those
/// reserved for the head) minus those owed, in one call: the async-mutex
/// adapter reads it on every grant and release, where three getters (napi-rs
/// methods, ~230 ns each) were 40% of its time with 100,000 tasks queued.
fn value(env: napi_env, semaphore: SemaphoreArg) -> napi_value {
    let attachment = match semaphore {
        SemaphoreArg::Local(attachment) => attachment,
        SemaphoreArg::Named(owner) => return named::value(env, owner),
    };
    let core = &attachment.shared.primitive;
    let free = core.available() + core.reserved_for_head();
    raw::number(env, free as f64 - core.owed() as f64)
}

/// `semClosed(handle) -> boolean`: the `closed` getter as a raw call. A
/// thread's doorbell reads it on every collect (twice per wait at least),
/// where the getter, a napi-rs method, cost ~380 ns against ~75.
fn closed(env: napi_env, semaphore: SemaphoreArg) -> napi_value {
    let closed = match semaphore {
        SemaphoreArg::Local(attachment) => attachment.shared.primitive.is_closed(),
        SemaphoreArg::Named(owner) => named::closed(owner),
    };
    raw::boolean(env, closed)
}

/// `semTryAcquire(handle, n) -> 0 | 1 | 2 | 4` (not now, acquired, closed,
/// more than the capacity).
fn try_acquire(env: napi_env, semaphore: SemaphoreArg, Count(n): Count) -> napi_value {
    let attachment = match semaphore {
        SemaphoreArg::Local(attachment) => attachment,
        SemaphoreArg::Named(owner) => return named::try_acquire(env, owner, n),
    };
    let outcome = match attachment.shared.primitive.try_acquire(n) {
        Ok(()) => {
            attachment.local.add(n);
            code::DONE
        }
        // The capacity is read only when refused: the success path stays one CAS.
        Err(TryAcquireError::NoPermits) if n > attachment.shared.primitive.capacity() => code::TOO_HEAVY,
        Err(TryAcquireError::NoPermits) => code::NOT_NOW,
        Err(TryAcquireError::Closed) => code::CLOSED,
    };
    raw::code(env, outcome)
}

/// `semAcquire(handle, n, token, priority = 0) -> 0 | 1 | 2 | 3 | 4` (queued,
/// acquired, closed, queue full, more than the capacity).
fn acquire(
    env: napi_env,
    semaphore: SemaphoreArg,
    Count(n): Count,
    Token(token): Token,
    Priority(priority): Priority,
) -> napi_value {
    let attachment = match semaphore {
        SemaphoreArg::Local(attachment) => attachment,
        SemaphoreArg::Named(owner) => return named::acquire(env, owner, n, token, priority),
    };
    let outcome = match attachment
        .shared
        .primitive
        .acquire_with_priority(n, priority, attachment.slot, token)
    {
        Ok(Acquire::Acquired) => {
            attachment.local.add(n);
            code::DONE
        }
        Ok(Acquire::Queued) => code::QUEUED,
        Err(AcquireError::Closed) => code::CLOSED,
        Err(AcquireError::QueueFull) => code::QUEUE_FULL,
        Err(AcquireError::TooManyPermits { .. }) => code::TOO_HEAVY,
        Err(misuse) => return raw::throw_range(env, &misuse.to_string()),
    };
    raw::code(env, outcome)
}

/// `semRelease(handle, n) -> null | entry | settle entries`: a single entry
/// (the common case: one waiter granted) comes back as a bare number, which
/// saves creating an array.
fn release(env: napi_env, semaphore: SemaphoreArg, Count(n): Count) -> napi_value {
    let attachment = match semaphore {
        SemaphoreArg::Local(attachment) => attachment,
        SemaphoreArg::Named(owner) => return named::release(env, owner, n),
    };
    if let Err(message) = attachment.local.take(n) {
        return raw::throw_range(env, &message);
    }
    let core = &attachment.shared.primitive;
    match core.release(n) {
        Ok(woken) if woken.is_empty() => raw::null(env),
        Ok(woken) => {
            let mut out = Vec::with_capacity(woken.len());
            wake::wake_list(core, attachment.slot, &attachment.local, woken, &mut out);
            match out.as_slice() {
                [single] => raw::number(env, *single),
                entries => raw::numbers_or_null(env, entries),
            }
        }
        Err(error) => {
            attachment.local.add(n);
            raw::throw_range(env, &error.to_string())
        }
    }
}

/// `semTakeGranted(handle) -> tokens | null`: this thread's waits granted since
/// the last call, whose permits count as held from now on, and, negated, the
/// tokens of its waits refused since (the capacity shrank below them).
fn take_granted(env: napi_env, semaphore: SemaphoreArg) -> napi_value {
    let attachment = match semaphore {
        SemaphoreArg::Local(attachment) => attachment,
        SemaphoreArg::Named(owner) => return named::take_granted(env, owner),
    };
    let mut out = Vec::new();
    attachment
        .shared
        .primitive
        .drain_decisions(attachment.slot, |decision| match decision {
            Decision::Granted(grant) => {
                attachment.local.add(grant.permits);
                out.push(grant.token as f64);
            }
            Decision::Refused(refusal) => out.push(-(refusal.token as f64)),
        });
    raw::numbers_or_null(env, &out)
}

/// A core error as napi-rs's InvalidArg, which the TS layer reports as is.
fn invalid(error: impl std::fmt::Display) -> Error {
    Error::new(Status::InvalidArg, error.to_string())
}
