//! Process-wide table from a primitive's id to the primitive, shared by every
//! thread's copy of the addon. It holds `Weak` references: a primitive lives as
//! long as some thread has a JS object for it, and an id whose primitive is gone
//! fails to resolve instead of reaching freed memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use sluice_core::Semaphore;

use crate::DOORBELL_SLOTS;

/// A semaphore plus what the binding needs to wake its waiters.
pub(crate) struct SharedSemaphore {
    pub(crate) id: u64,
    pub(crate) core: Semaphore,
    /// Which doorbell slots are taken, one per attached thread; the slot number
    /// is the thread's `Owner` in the core semaphore.
    slots: Mutex<Vec<bool>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REGISTRY: LazyLock<Mutex<HashMap<u64, Weak<SharedSemaphore>>>> = LazyLock::new(Default::default);

fn registry() -> std::sync::MutexGuard<'static, HashMap<u64, Weak<SharedSemaphore>>> {
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SharedSemaphore {
    pub(crate) fn create(permits: usize) -> Arc<Self> {
        // Relaxed: the id only has to be unique; the registry lock orders the rest.
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Self {
            id,
            core: Semaphore::new(permits),
            slots: Mutex::new(vec![false; DOORBELL_SLOTS as usize]),
        });
        registry().insert(id, Arc::downgrade(&shared));
        shared
    }

    /// The live primitive with this id, if any.
    pub(crate) fn lookup(id: u64) -> Option<Arc<Self>> {
        // The guard is dropped at the end of this statement, before the `Arc` can
        // be: dropping the last `Arc` takes the registry lock in `Drop`.
        let found = registry().get(&id).and_then(Weak::upgrade);
        found
    }

    pub(crate) fn take_slot(&self) -> Option<u32> {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let free = slots.iter().position(|taken| !taken)?;
        slots[free] = true;
        u32::try_from(free).ok()
    }

    pub(crate) fn free_slot(&self, slot: u32) {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(taken) = slots.get_mut(slot as usize) {
            *taken = false;
        }
    }
}

impl Drop for SharedSemaphore {
    fn drop(&mut self) {
        registry().remove(&self.id);
    }
}
