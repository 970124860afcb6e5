//! Process-wide table from a primitive's id to the primitive, shared by every
//! thread's copy of the addon. It holds `Weak` references: a primitive lives as
//! long as some thread has a JS object for it, and an id whose primitive is gone
//! (or is of another kind) fails to resolve instead of reaching freed memory.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use crate::DOORBELL_SLOTS;

/// A primitive plus what the binding needs to wake its waiters.
pub(crate) struct Shared<P> {
    pub(crate) id: u64,
    pub(crate) primitive: P,
    /// Which doorbell slots are taken, one per attached thread; the slot number
    /// is the thread's `Owner` in the core primitives.
    slots: Mutex<Vec<bool>>,
}

type Table = HashMap<u64, Weak<dyn Any + Send + Sync>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REGISTRY: LazyLock<Mutex<Table>> = LazyLock::new(Default::default);

fn registry() -> MutexGuard<'static, Table> {
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A number no other primitive or owner of this process has (ids and the
/// thread cleanup list's keys share this sequence).
pub(crate) fn fresh_id() -> u64 {
    // Relaxed: the id only has to be unique; the registry lock orders the rest.
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl<P: Send + Sync + 'static> Shared<P> {
    pub(crate) fn create(primitive: P) -> Arc<Self> {
        let id = fresh_id();
        let shared = Arc::new(Self {
            id,
            primitive,
            slots: Mutex::new(vec![false; DOORBELL_SLOTS as usize]),
        });
        let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(&shared) as Weak<dyn Any + Send + Sync>;
        registry().insert(id, weak);
        shared
    }

    /// The live primitive of this kind with this id, if any.
    pub(crate) fn lookup(id: f64) -> Option<Arc<Self>> {
        if !(id.fract() == 0.0 && id >= 1.0 && id <= u64::MAX as f64) {
            return None;
        }
        // The guard is dropped at the end of this statement, before the `Arc` can
        // be: dropping the last `Arc` takes the registry lock in `Drop`.
        let found = registry().get(&(id as u64)).and_then(Weak::upgrade);
        found?.downcast::<Self>().ok()
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

impl<P> Drop for Shared<P> {
    fn drop(&mut self) {
        registry().remove(&self.id);
    }
}
