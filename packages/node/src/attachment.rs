//! A thread's attachment to a shared primitive: its doorbell slot (its identity
//! as a waiter) and its thread-local state (what it holds or has reserved).
//! One per thread per primitive, however many JS objects that thread makes.
//!
//! When the thread goes away, even by `worker.terminate()`, the env cleanup hook
//! detaches everything the thread was attached to: its waits are withdrawn and
//! what it held goes back. Threads waiting elsewhere learn of grants made then
//! by their own periodic poll, since no JS runs on a dying thread to ring them.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use napi::{Env, Error, Result, Status};

use crate::registry::Shared;
use crate::DOORBELL_SLOTS;

/// A primitive the binding can attach threads to.
pub(crate) trait Primitive: Send + Sync + 'static {
    /// One thread's state for the primitive.
    type Local: Default + 'static;

    /// Marks the externals made by the class's `fastHandle` (`raw::external`),
    /// so that an entry point taking `&Attachment<Self>` refuses any other
    /// value. Random, fixed, one per primitive.
    const TAG: napi::sys::napi_type_tag;

    /// The thread behind `slot` is gone: withdraw its waits and give back what
    /// `local` says it holds.
    fn detach(&self, slot: u32, local: &Self::Local);
}

pub(crate) struct Attachment<P: Primitive> {
    pub(crate) shared: Arc<Shared<P>>,
    pub(crate) slot: u32,
    pub(crate) local: P::Local,
    detached: Cell<bool>,
}

/// Type-erased view of an attachment (or a `ThreadUse`), for the thread's
/// cleanup list.
trait Detach: Any {
    fn detach(&self);
}

impl<P: Primitive> Detach for Attachment<P> {
    fn detach(&self) {
        Attachment::detach(self);
    }
}

#[derive(Default)]
struct ThreadState {
    attachments: HashMap<u64, Weak<dyn Detach>>,
    cleanup_hook_installed: bool,
}

thread_local! {
    static THREAD: RefCell<ThreadState> = RefCell::default();
}

impl<P: Primitive> Attachment<P> {
    /// This thread's attachment to `shared`, made on first use.
    pub(crate) fn get_or_attach(env: &Env, shared: Arc<Shared<P>>) -> Result<Rc<Self>> {
        THREAD.with_borrow_mut(|thread| {
            if let Some(existing) = thread.attachments.get(&shared.id).and_then(Weak::upgrade) {
                // Ids are unique across kinds, so this downcast only fails if the
                // table is corrupt; fall through and attach anew then.
                if let Ok(existing) = (existing as Rc<dyn Any>).downcast::<Self>() {
                    return Ok(existing);
                }
            }
            if !thread.cleanup_hook_installed {
                env.add_env_cleanup_hook((), |()| detach_thread())?;
                thread.cleanup_hook_installed = true;
            }
            // `QueueFull` is this failure's status alone: `ts/native.ts` turns
            // it into a ThreadLimitError instead of an InvalidHandleError.
            let slot = shared.take_slot().ok_or_else(|| {
                Error::new(
                    Status::QueueFull,
                    format!("{DOORBELL_SLOTS} threads are attached already, the most one primitive allows"),
                )
            })?;
            let id = shared.id;
            let attachment = Rc::new(Self {
                shared,
                slot,
                local: P::Local::default(),
                detached: Cell::new(false),
            });
            let weak: Weak<dyn Detach> = Rc::downgrade(&attachment) as Weak<dyn Detach>;
            thread.attachments.insert(id, weak);
            Ok(attachment)
        })
    }

    /// This thread's attachment to the live primitive of this kind with id
    /// `id`, made in any thread; `kind` names it in the error otherwise.
    pub(crate) fn by_id(env: &Env, id: f64, kind: &str) -> Result<Rc<Self>> {
        let shared = Shared::<P>::lookup(id)
            .ok_or_else(|| Error::new(Status::GenericFailure, format!("no live {kind} has id {id}")))?;
        Self::get_or_attach(env, shared)
    }

    /// Withdraws this thread's waits, gives back what it holds and frees its
    /// slot. Idempotent: runs at thread exit and again (as a no-op) on drop.
    fn detach(&self) {
        if self.detached.replace(true) {
            return;
        }
        self.shared.primitive.detach(self.slot, &self.local);
        self.shared.free_slot(self.slot);
    }
}

impl<P: Primitive> Drop for Attachment<P> {
    /// The last JS object for this primitive in this thread was collected. No
    /// permit or wait object can still exist (each keeps its primitive alive),
    /// so what is still held was leaked: give it back.
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

/// What one thread's use of a named primitive gives back when it ends (its
/// waits, what it holds, its reservations).
pub(crate) trait GiveBack: 'static {
    fn give_back(&self);
}

/// One thread's use of a named primitive: given back once, when the last JS
/// object for it is collected or when the thread's env is torn down,
/// whichever comes first. The named primitives' counterpart of `Attachment`.
pub(crate) struct ThreadUse<T: GiveBack> {
    value: T,
    /// Its entry in the thread's cleanup list.
    key: u64,
    given_back: Cell<bool>,
}

impl<T: GiveBack> ThreadUse<T> {
    /// Wraps `value` and puts it on this thread's cleanup list.
    pub(crate) fn register(env: &Env, value: T) -> Result<Rc<Self>> {
        let key = crate::registry::fresh_id();
        let this = Rc::new(Self {
            value,
            key,
            given_back: Cell::new(false),
        });
        let weak: Weak<dyn Detach> = Rc::downgrade(&this) as Weak<dyn Detach>;
        THREAD.with_borrow_mut(|thread| {
            if !thread.cleanup_hook_installed {
                env.add_env_cleanup_hook((), |()| detach_thread())?;
                thread.cleanup_hook_installed = true;
            }
            thread.attachments.insert(key, weak);
            Ok(this)
        })
    }
}

impl<T: GiveBack> std::ops::Deref for ThreadUse<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: GiveBack> Detach for ThreadUse<T> {
    fn detach(&self) {
        if !self.given_back.replace(true) {
            self.value.give_back();
        }
    }
}

impl<T: GiveBack> Drop for ThreadUse<T> {
    fn drop(&mut self) {
        Detach::detach(self);
        let key = self.key;
        // `try_with`: during thread teardown the thread-local may be gone already.
        let _ = THREAD.try_with(|thread| {
            if let Ok(mut thread) = thread.try_borrow_mut() {
                thread.attachments.remove(&key);
            }
        });
    }
}

/// The env cleanup hook: this thread's JS is gone for good.
fn detach_thread() {
    let attachments: Vec<Rc<dyn Detach>> = THREAD
        .try_with(|thread| thread.borrow().attachments.values().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    for attachment in attachments {
        attachment.detach();
    }
}

/// The members every napi class over an `attachment: Rc<Attachment<P>>`
/// field has, written once: `fromId`, `id`, `fastHandle`, with `slot` too if
/// asked for, and the Rust-side `attach` (for constructors) and `core`.
///
/// A macro, not a trait with default methods or a shared inner struct:
/// napi-rs 3 exports only the methods of inherent `#[napi] impl` blocks (a
/// trait's methods never reach JS, so each class would still need its own
/// forwarding `#[napi]` methods), and it merges several such blocks of one
/// class, so this adds one more to each class.
macro_rules! attached_class {
    ($class:ident, $primitive:ty, $kind:literal, slot) => {
        attached_class!($class, $primitive, $kind);

        #[napi_derive::napi]
        impl $class {
            /// This thread's doorbell slot for this primitive.
            #[napi(getter)]
            pub fn slot(&self) -> u32 {
                self.attachment.slot
            }
        }
    };
    ($class:ident, $primitive:ty, $kind:literal) => {
        #[napi_derive::napi]
        impl $class {
            /// Attaches this thread to the primitive with id `id`, made in any thread.
            #[napi(factory, catch_unwind)]
            pub fn from_id(env: napi::Env, id: f64) -> napi::Result<Self> {
                Ok(Self {
                    attachment: $crate::attachment::Attachment::by_id(&env, id, $kind)?,
                })
            }

            #[napi(getter)]
            pub fn id(&self) -> f64 {
                self.attachment.shared.id as f64
            }

            /// A handle for the raw hot calls.
            #[napi(ts_return_type = "object")]
            pub fn fast_handle(&self, env: napi::Env) -> napi::Result<napi::sys::napi_value> {
                $crate::raw::external(env.raw(), &self.attachment)
            }
        }

        impl $class {
            /// Shares `primitive` with every thread, attaching this one.
            fn attach(env: &napi::Env, primitive: $primitive) -> napi::Result<Self> {
                let shared = $crate::registry::Shared::create(primitive);
                Ok(Self {
                    attachment: $crate::attachment::Attachment::get_or_attach(env, shared)?,
                })
            }

            fn core(&self) -> &$primitive {
                &self.attachment.shared.primitive
            }
        }
    };
}
pub(crate) use attached_class;

/// A count of permits a thread holds, kept so that a release can never give
/// back more than the thread took, and a dead thread's permits can be returned.
#[derive(Default)]
pub(crate) struct Held(Cell<usize>);

impl Held {
    /// Where the count lives, for JavaScript to keep it on the fast path
    /// (`NativeSemaphore::fast_words`) between this thread's native calls.
    pub(crate) fn as_ptr(&self) -> *mut usize {
        self.0.as_ptr()
    }

    pub(crate) fn get(&self) -> usize {
        self.0.get()
    }

    pub(crate) fn add(&self, n: usize) {
        self.0.set(self.0.get() + n);
    }

    /// Takes `n` from the count, or says why not.
    pub(crate) fn take(&self, n: usize) -> std::result::Result<(), String> {
        let held = self.0.get();
        if n > held {
            return Err(format!("cannot release {n} permits: this thread holds {held}"));
        }
        self.0.set(held - n);
        Ok(())
    }

    /// Empties the count, returning it.
    pub(crate) fn take_all(&self) -> usize {
        self.0.replace(0)
    }
}
