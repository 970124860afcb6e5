//! `NativeSharedWords`: a block of words in shared memory
//! (`sluice_shm::words`), handed to JavaScript as an external `ArrayBuffer`
//! over the mapping itself, so `Atomics` in every process move the same
//! bytes. The circuit breaker's TypeScript state machine runs on it
//! unchanged: one algorithm for threads and for processes.
//!
//! N-API cannot make a `SharedArrayBuffer` over external memory on Node 20,
//! but V8's `Atomics` on a non-shared integer typed array compile to the same
//! atomic instructions (test/circuit-breaker-processes.test.ts checks that no
//! update is lost between processes). The buffer holds the mapping alive: its
//! finalizer drops an `Arc` of the block, so the segment is unmapped only
//! once no buffer (and no `NativeSharedWords`) of this process needs it.
//!
//! The seven parameters are numbers, stored as their f64 bits: the segment
//! compares them exactly, and a mismatch is reported back as numbers.

use std::sync::Arc;

use napi::sys::napi_value;
use napi::{Env, Error, Result, Status};
use napi_derive::napi;
use sluice_shm::words::{SharedWords, PARAMS};
use sluice_shm::Error as ShmError;

use crate::{named, raw};

#[napi]
pub struct NativeSharedWords {
    words: Arc<SharedWords>,
}

#[napi]
impl NativeSharedWords {
    /// Opens (creating it, zeroed, if needed) the block `name` in `dir`:
    /// `bytes` bytes, with seven numeric parameters every opener must give
    /// equal (compared bit for bit).
    #[napi(factory, catch_unwind)]
    pub fn open(env: Env, name: String, bytes: u32, params: Vec<f64>, dir: Option<String>) -> Result<Self> {
        let Ok(params) = <[f64; PARAMS]>::try_from(params.as_slice()) else {
            return Err(Error::new(
                Status::InvalidArg,
                format!("params must be {PARAMS} numbers, got {}", params.len()),
            ));
        };
        let dir = dir.map(std::path::PathBuf::from);
        let words = SharedWords::open(dir.as_deref(), &name, u64::from(bytes), params.map(f64::to_bits))
            .map_err(|error| fail(&env, error))?;
        Ok(Self { words })
    }

    /// Frees `name`; false if there was no such block.
    #[napi(catch_unwind)]
    pub fn unlink(env: Env, name: String, dir: Option<String>) -> Result<bool> {
        let dir = dir.map(std::path::PathBuf::from);
        SharedWords::unlink(dir.as_deref(), &name).map_err(|error| named::fail(&env, error))
    }

    /// A new `ArrayBuffer` over the block (not a copy): one per thread, as
    /// an `ArrayBuffer` cannot cross threads without being copied.
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn buffer(&self, env: Env) -> Result<napi_value> {
        // SAFETY: the data lies inside the mapping, which the `Arc` passed
        // along keeps mapped until the buffer is collected or the env torn down.
        let buffer = unsafe {
            raw::external_arraybuffer(
                env.raw(),
                self.words.as_ptr().as_ptr().cast(),
                self.words.len(),
                Arc::clone(&self.words),
            )
        }?;
        buffer.ok_or_else(|| {
            // A copy (napi-rs's fallback) would silently give each process
            // its own breaker: refuse instead.
            raw::throw_with_code(
                env.raw(),
                "ERR_SLUICE_SEGMENT",
                "this runtime does not allow external ArrayBuffers (a V8 sandbox build), which a named circuit breaker needs",
            );
            Error::from_status(Status::PendingException)
        })
    }

    /// When the block was created, on `CLOCK_MONOTONIC` in milliseconds
    /// (what `process.hrtime()` reads): the breaker's origin in every process.
    #[napi(getter)]
    pub fn origin_ms(&self) -> f64 {
        self.words.origin_nanos() as f64 / 1e6
    }

    /// Whether this process created (or re-initialised) the block.
    #[napi(getter)]
    pub fn created(&self) -> bool {
        self.words.created()
    }

    /// Whether the name was unlinked (a new `open` makes a new block).
    #[napi(getter)]
    pub fn unlinked(&self) -> bool {
        self.words.is_closed()
    }

    /// This process's slot in the segment: the index of its process lane
    /// (`sluice_shm::words`, process lanes).
    #[napi(getter)]
    pub fn proc_slot(&self) -> u32 {
        self.words.proc_slot()
    }

    /// The live process slots and the low 32 bits of their generations, as
    /// `[slot, tag, slot, tag, …]`: the lanes a reader sums.
    #[napi]
    pub fn live_procs(&self) -> Vec<u32> {
        self.words
            .live_procs()
            .into_iter()
            .flat_map(|(slot, generation)| [slot, generation as u32])
            .collect()
    }

    /// Makes the lane at byte `offset` this process's (zeroed unless it is
    /// already; see `SharedWords::claim_lane`).
    #[napi(catch_unwind)]
    pub fn claim_lane(&self, env: Env, offset: u32) -> Result<()> {
        self.words
            .claim_lane(offset as usize)
            .map_err(|error| named::fail(&env, error))
    }
}

/// As `named::fail`, but a parameter mismatch (`p1`..`p7`) names the
/// numbers, not their bits, for `ts/circuit-breaker-named.ts` to phrase.
fn fail(env: &Env, error: ShmError) -> Error {
    if let ShmError::Mismatch {
        field,
        existing,
        requested,
    } = &error
    {
        if field.starts_with('p') {
            let message = format!("{field} {} {}", f64::from_bits(*existing), f64::from_bits(*requested));
            raw::throw_with_code(env.raw(), "ERR_SLUICE_MISMATCH", &message);
            return Error::from_status(Status::PendingException);
        }
    }
    named::fail(env, error)
}
