//! Test-only: `SLUICE_KILL_POINT=<name>` makes this process `SIGKILL`
//! itself when it reaches the commit point `<name>`, inside the lock.

use std::sync::OnceLock;

/// The environment variable naming the point.
pub const ENV: &str = "SLUICE_KILL_POINT";

pub(crate) fn at(name: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    if WANTED.get_or_init(|| std::env::var(ENV).ok()).as_deref() == Some(name) {
        // SAFETY: raise has no preconditions; SIGKILL ends the process here.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
