//! N-API binding of `sluice-core`. Thin on purpose: each class is a handle to a
//! primitive that lives in Rust behind an `Arc`, reachable from every thread by
//! its id. Validation with field-naming messages happens in the TypeScript
//! layer; the checks here only keep the process safe from a caller that skips it.

#![deny(clippy::all)]

mod attachment;
mod channel;
mod raw;
mod registry;
mod semaphore;
mod token_bucket;
mod wake;

pub use channel::NativeChannel;
pub use semaphore::NativeSemaphore;
pub use token_bucket::NativeTokenBucket;

/// Doorbell slots per primitive: how many threads can wait on one primitive at
/// once. The TypeScript layer sizes the doorbell `SharedArrayBuffer` from it.
#[napi_derive::napi]
pub const DOORBELL_SLOTS: u32 = 256;

#[napi_derive::napi(module_exports)]
pub fn init(exports: napi::bindgen_prelude::Object, env: napi::Env) -> napi::Result<()> {
    use napi::JsValue;
    raw::register(env.raw(), exports.raw(), &semaphore::RAW)?;
    raw::register(env.raw(), exports.raw(), &token_bucket::RAW)?;
    raw::register(env.raw(), exports.raw(), &channel::RAW)
}
