//! N-API binding of `sluice-core`. Thin on purpose: each class is a handle to a
//! primitive that lives in Rust behind an `Arc`, reachable from every thread by
//! its id. Validation with field-naming messages happens in the TypeScript
//! layer; the checks here only keep the process safe from a caller that skips it.

#![deny(clippy::all)]

mod attachment;
mod channel;
mod js_values;
mod named;
mod named_bucket;
mod named_limiter;
mod named_words;
mod rate_limiter;
mod raw;
mod registry;
mod semaphore;
mod token_bucket;
mod wake;

/// A byte message is allocated by the sending thread and freed by the
/// receiving one. glibc's malloc takes that free through the sender's arena
/// (a lock, and chunks that pile up in the receiver's cache): malloc and free
/// were 13% of a 64 B channel message's time in a profile. mimalloc frees
/// across threads with one atomic push. Not on musl, where mimalloc has had
/// aarch64 failures that we cannot test here; musl keeps its own allocator.
///
/// mimalloc 2.x (the crate's `v2` feature), not 3.x: in 3.x, once the first
/// thread that allocated here ends (a worker thread, in a host that never
/// loads sluice on its main thread), the next thread given the same thread
/// id crashes the process on its first allocation (microsoft/mimalloc#1287,
/// rolldown/rolldown#9722). test/addon-in-workers-only.test.ts.
#[cfg(not(target_env = "musl"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use channel::NativeChannel;
pub use named::NativeNamedSemaphore;
pub use named_bucket::NativeNamedTokenBucket;
pub use named_limiter::NativeNamedRateLimiter;
pub use named_words::NativeSharedWords;
pub use rate_limiter::NativeRateLimiter;
pub use semaphore::{
    set_fairness_clock_for_test, NativeSemaphore, SEMAPHORE_CLOSED_BIT, SEMAPHORE_PERMIT_SHIFT, SEMAPHORE_QUEUED_BIT,
};
pub use token_bucket::NativeTokenBucket;

/// Doorbell slots per primitive: how many threads can wait on one primitive at
/// once. The TypeScript layer sizes the doorbell `SharedArrayBuffer` from it.
#[napi_derive::napi]
pub const DOORBELL_SLOTS: u32 = 256;

#[napi_derive::napi(module_exports)]
pub fn init(exports: napi::bindgen_prelude::Object, env: napi::Env) -> napi::Result<()> {
    use napi::JsValue;
    #[cfg(feature = "test-panic")]
    raw::register(env.raw(), exports.raw(), &test_panic::RAW)?;
    raw::register(env.raw(), exports.raw(), &semaphore::RAW)?;
    raw::register(env.raw(), exports.raw(), &token_bucket::RAW)?;
    raw::register(env.raw(), exports.raw(), &rate_limiter::RAW)?;
    raw::register(env.raw(), exports.raw(), &channel::RAW)
}

/// Entry points that panic on purpose, compiled only with `--features test-panic`.
#[cfg(feature = "test-panic")]
mod test_panic {
    use std::ffi::CStr;

    use napi::sys::{self, napi_env, napi_value};

    use crate::raw::entry;

    /// A napi-rs function that panics: napi-rs's `catch_unwind` must turn it into a JS Error.
    #[napi_derive::napi(catch_unwind)]
    pub fn panic_for_test(message: String) {
        panic!("{message}");
    }

    pub(crate) const RAW: [(&CStr, sys::napi_callback); 1] = [(c"rawPanicForTest", entry!(raw_panic))];

    /// A raw entry point that panics: `entry!` must turn it into a JS Error.
    fn raw_panic(_env: napi_env) -> napi_value {
        panic!("raw panic for test");
    }
}
