//! `NativeSemaphore`: one thread's handle to a shared `sluice_core::Semaphore`.
//!
//! Waits are identified by a token the JS side picks; the owner is the
//! thread's doorbell slot. Calls that can grant waits return the slots whose
//! doorbells the caller must ring (`undefined` when there are none, which is
//! the common, allocation-free case).

use std::rc::Rc;

use napi::{Env, Error, Result, Status};
use napi_derive::napi;
use sluice_core::MAX_PERMITS;

use crate::attachment::Attachment;
use crate::registry::SharedSemaphore;

#[napi]
pub struct NativeSemaphore {
    attachment: Rc<Attachment>,
}

fn invalid(message: String) -> Error {
    Error::new(Status::InvalidArg, message)
}

fn to_token(token: f64) -> Result<u64> {
    if token.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&token) {
        Ok(token as u64)
    } else {
        Err(invalid(format!(
            "token must be a safe non-negative integer, got {token}"
        )))
    }
}

#[napi]
impl NativeSemaphore {
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, permits: u32) -> Result<Self> {
        let permits = permits as usize;
        if permits == 0 || permits > MAX_PERMITS {
            return Err(invalid(format!("permits must be a positive integer, got {permits}")));
        }
        let attachment = Attachment::get_or_attach(&env, SharedSemaphore::create(permits))?;
        Ok(Self { attachment })
    }

    /// Attaches this thread to the semaphore with id `id`, made in any thread.
    #[napi(factory, catch_unwind)]
    pub fn from_id(env: Env, id: f64) -> Result<Self> {
        let shared = (id.fract() == 0.0 && id >= 1.0)
            .then(|| SharedSemaphore::lookup(id as u64))
            .flatten()
            .ok_or_else(|| Error::new(Status::GenericFailure, format!("no live semaphore has id {id}")))?;
        let attachment = Attachment::get_or_attach(&env, shared)?;
        Ok(Self { attachment })
    }

    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.attachment.shared.id as f64
    }

    /// This thread's doorbell slot for this semaphore.
    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.attachment.slot
    }

    #[napi(getter)]
    pub fn capacity(&self) -> u32 {
        self.attachment.shared.core.capacity() as u32
    }

    #[napi(getter)]
    pub fn available(&self) -> u32 {
        self.attachment.shared.core.available() as u32
    }

    #[napi(getter)]
    pub fn waiting(&self) -> u32 {
        self.attachment.shared.core.waiting() as u32
    }

    /// Permits this thread holds.
    #[napi(getter)]
    pub fn held(&self) -> u32 {
        self.attachment.held() as u32
    }

    /// A handle for the fast calls `semTryAcquire`, `semAcquire` and
    /// `semRelease` (see `fast.rs` for why they are not methods).
    #[napi(ts_return_type = "object")]
    pub fn fast_handle(&self, env: Env) -> Result<napi::sys::napi_value> {
        crate::fast::create(env.raw(), &self.attachment)
    }

    /// Withdraws a wait (giving back anything granted to it). Returns `null` if
    /// the wait is unknown (already collected), else the slots to ring, if any.
    #[napi(catch_unwind)]
    pub fn cancel(&self, token: f64) -> Result<Option<Vec<u32>>> {
        let token = to_token(token)?;
        match self.attachment.shared.core.cancel(self.attachment.slot, token) {
            None => Ok(None),
            Some(woken) => Ok(Some(woken)),
        }
    }
}
