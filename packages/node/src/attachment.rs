//! A thread's attachment to a shared primitive: its doorbell slot (its identity
//! as a waiter) and the permits it holds. One per thread per primitive, however
//! many JS objects that thread makes for it.
//!
//! When the thread goes away, even by `worker.terminate()`, the env cleanup hook
//! detaches everything the thread was attached to: its waits are withdrawn and
//! its permits go back. Threads waiting elsewhere learn of grants made then by
//! their own periodic poll, since no JS runs on a dying thread to ring a doorbell.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use napi::{Env, Error, Result, Status};

use crate::registry::SharedSemaphore;
use crate::DOORBELL_SLOTS;

pub(crate) struct Attachment {
    pub(crate) shared: Arc<SharedSemaphore>,
    pub(crate) slot: u32,
    /// Permits this thread has collected and not released. Only this thread
    /// touches it, hence a `Cell`.
    held: Cell<usize>,
    detached: Cell<bool>,
}

#[derive(Default)]
struct ThreadState {
    attachments: HashMap<u64, Weak<Attachment>>,
    cleanup_hook_installed: bool,
}

thread_local! {
    static THREAD: RefCell<ThreadState> = RefCell::default();
}

impl Attachment {
    /// This thread's attachment to `shared`, made on first use.
    pub(crate) fn get_or_attach(env: &Env, shared: Arc<SharedSemaphore>) -> Result<Rc<Self>> {
        THREAD.with_borrow_mut(|thread| {
            if let Some(existing) = thread.attachments.get(&shared.id).and_then(Weak::upgrade) {
                return Ok(existing);
            }
            if !thread.cleanup_hook_installed {
                env.add_env_cleanup_hook((), |()| detach_thread())?;
                thread.cleanup_hook_installed = true;
            }
            let slot = shared.take_slot().ok_or_else(|| {
                Error::new(
                    Status::GenericFailure,
                    format!("more than {DOORBELL_SLOTS} threads are attached to one primitive"),
                )
            })?;
            let attachment = Rc::new(Self {
                shared,
                slot,
                held: Cell::new(0),
                detached: Cell::new(false),
            });
            thread
                .attachments
                .insert(attachment.shared.id, Rc::downgrade(&attachment));
            Ok(attachment)
        })
    }

    pub(crate) fn held(&self) -> usize {
        self.held.get()
    }

    pub(crate) fn add_held(&self, n: usize) {
        self.held.set(self.held.get() + n);
    }

    /// Records that `n` held permits are being released; refuses to release
    /// permits this thread does not hold, so no release can create a permit.
    pub(crate) fn take_held(&self, n: usize) -> Result<()> {
        let held = self.held.get();
        if n > held {
            return Err(Error::new(
                Status::InvalidArg,
                format!("cannot release {n} permits: this thread holds {held}"),
            ));
        }
        self.held.set(held - n);
        Ok(())
    }

    /// Withdraws this thread's waits, returns its permits and frees its slot.
    /// Idempotent: runs at thread exit and again (as a no-op) on drop.
    fn detach(&self) {
        if self.detached.replace(true) {
            return;
        }
        let core = &self.shared.core;
        core.remove_owner(self.slot);
        let held = self.held.replace(0);
        if held > 0 {
            // Cannot overflow: these permits were taken from this semaphore.
            let _ = core.release(held);
        }
        self.shared.free_slot(self.slot);
    }
}

impl Drop for Attachment {
    /// The last JS object for this primitive in this thread was collected. No
    /// permit object can still exist (each keeps its semaphore alive), so what
    /// is still held was leaked: give it back.
    fn drop(&mut self) {
        self.detach();
        let id = self.shared.id;
        // `try_with`: during thread teardown the thread-local may be gone already.
        let _ = THREAD.try_with(|thread| {
            if let Ok(mut thread) = thread.try_borrow_mut() {
                if thread.attachments.get(&id).is_some_and(|weak| weak.strong_count() == 0) {
                    thread.attachments.remove(&id);
                }
            }
        });
    }
}

/// The env cleanup hook: this thread's JS is gone for good.
fn detach_thread() {
    let attachments: Vec<Rc<Attachment>> = THREAD
        .try_with(|thread| thread.borrow().attachments.values().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    for attachment in attachments {
        attachment.detach();
    }
}
