//! The per-process registry of mapped segments, and the `atexit` handler.
//!
//! `atexit` runs on a natural exit, `process.exit`, an uncaught throw and a
//! SIGTERM handler's `process.exit` (E3c), unlike `napi_add_env_cleanup_hook`.
//! It gives back at once what this process held in every segment, so that
//! waiters elsewhere do not wait for the 50 ms sweep. Other threads may still
//! run (hazard 10): the lock is taken with a 100 ms timeout and the give-back
//! skipped on timeout, and nothing is unmapped here.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, Once, Weak};
use std::time::Duration;

use crate::Segment;

type Registry = HashMap<(u64, u64), Weak<Segment>>;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(HashMap::new()));
static REGISTER: Once = Once::new();

/// The registry, keyed by `(st_dev, st_ino)`.
pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers the `atexit` handler, once per process.
pub(crate) fn register_once() {
    REGISTER.call_once(|| {
        // SAFETY: `at_exit` is a plain `extern "C" fn()` that lives for the
        // whole process.
        unsafe { libc::atexit(at_exit) };
    });
}

extern "C" fn at_exit() {
    // A panic must not unwind into libc.
    let _ = std::panic::catch_unwind(|| {
        // Another thread may hold the registry (inside `open`): wait a
        // little, then give up; the kernel path still covers everything.
        let mut segments = Vec::new();
        for _ in 0..100 {
            if let Ok(reg) = REGISTRY.try_lock() {
                segments = reg.values().filter_map(Weak::upgrade).collect();
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for seg in &segments {
            seg.detach(Duration::from_millis(100));
        }
        // Our `Arc`s are dropped here; if one is the last, the segment is
        // unmapped, which is safe because nobody else holds it.
    });
}
