//! Named sluice primitives in shared memory, for every process of a machine.
//!
//! The design is `docs/design/cross-process.md`. This crate holds the OS layer
//! (Linux only; other targets get a stub whose `open` returns
//! [`Error::Unsupported`]) and the primitives stored on it:
//!
//! - a **segment**: a file in a private directory `/dev/shm/sluice-<euid>/`,
//!   mapped shared; its header page (layout v2, checksummed) is immutable
//!   after initialisation;
//! - the **lifetime lock**: an OFD read lock on byte 0 held by every attached
//!   process; whoever gets it exclusively knows nobody is attached and starts
//!   clean (§1.2);
//! - a **robust process-shared pthread mutex** guarding all mutable state
//!   (§4.1), recovered through [`Layout::recover`] after `EOWNERDEAD`;
//! - **process slots**: an OFD write lock on byte `1 + p` is the liveness of
//!   process slot `p`, probed with `F_OFD_GETLK` (§3);
//! - **owner slots** (one per thread and primitive) with a **FIFO bell** each,
//!   which a release in another process rings (§2).
//!
//! A primitive implements [`Layout`] and works in the [`Region`] the segment
//! gives it, under the segment's [`Guard`].
//!
//! # Examples
//!
//! A counter shared by every process that opens `"hits"`:
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! use std::sync::atomic::Ordering::Relaxed;
//! use sluice_shm::{Error, Layout, Region, Segment};
//!
//! struct Counter;
//!
//! impl Layout for Counter {
//!     const KIND: u32 = 100;
//!     fn param_names() -> [&'static str; 8] { [""; 8] }
//!     fn params(&self) -> [u64; 8] { [0; 8] }
//!     fn mutable_size(&self) -> usize { 8 }
//!     unsafe fn init(&self, _region: Region<'_>) {} // zeroed is the start
//!     fn validate(&self, region: Region<'_>) -> Result<(), Error> {
//!         region.u64_at(0).map(|_| ()).ok_or_else(|| Error::Damaged("no counter".into()))
//!     }
//! }
//!
//! let dir = std::env::temp_dir().join(format!("sluice-shm-doc-{}", std::process::id()));
//! std::fs::create_dir(&dir)?;
//! std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
//! let seg = Segment::open(Some(&dir), "hits", &Counter)?;
//! assert!(seg.initialised());
//! {
//!     let guard = seg.lock()?; // robust: a holder killed inside is recovered
//!     guard.region().u64_at(0).unwrap().fetch_add(1, Relaxed);
//! }
//! assert_eq!(seg.region().u64_at(0).unwrap().load(Relaxed), 1);
//! drop(seg);
//! assert!(Segment::unlink::<Counter>(Some(&dir), "hits")?);
//! std::fs::remove_dir(&dir)?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod layout;
pub mod rate_limiter;
pub mod region;
pub mod semaphore;
pub mod token_bucket;
pub mod words;

#[cfg(target_os = "linux")]
mod bell;
#[cfg(target_os = "linux")]
mod dir;
#[cfg(target_os = "linux")]
mod exit;
#[cfg(target_os = "linux")]
mod file;
#[cfg(target_os = "linux")]
mod header;
#[cfg(target_os = "linux")]
mod liveness;
#[cfg(target_os = "linux")]
mod lock;
#[cfg(target_os = "linux")]
mod segment;
#[cfg(target_os = "linux")]
mod slots;
#[cfg(target_os = "linux")]
mod unlink;
#[cfg(not(target_os = "linux"))]
mod unsupported;

/// How long an operation waits for a segment lock before [`Error::LockStuck`].
/// A holder that is alive but not running must not turn into an error: on a
/// loaded machine, or in a container whose CPU quota (CFS bandwidth control)
/// is spent, a process can be held off the CPU for the rest of a 100 ms
/// period while it holds the lock. A dead holder never waits this out (the
/// robust mutex hands the lock over at once); only a stopped process or
/// garbage does.
pub(crate) const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub use error::Error;
pub use layout::Layout;
pub use region::Region;
#[cfg(target_os = "linux")]
pub use segment::{Guard, Segment};
#[cfg(not(target_os = "linux"))]
pub use unsupported::{Guard, Segment};

/// An fd handed to JavaScript (the bell's read side). `i32` on every target,
/// so the API is the same where there is no `RawFd`.
pub type BellFd = i32;

/// The environment variable that overrides the segment directory.
pub const DIR_ENV: &str = "SLUICE_SHM_DIR";

/// The suffix of a primitive's companion block of `metrics()` counters
/// (`<name>.m`, a [`words`] segment): user names cannot contain `.`, so no
/// user name can take it, and bells (`<name>.b<n>`) cannot either.
pub const METRICS_SUFFIX: &str = ".m";

/// Checks a segment name: 1–64 characters of `[A-Za-z0-9_-]`, starting with a
/// letter or a digit, optionally followed by [`METRICS_SUFFIX`]. No other `.`
/// is allowed, so bell names (`<name>.b<n>`) cannot collide with segment names.
///
/// # Errors
///
/// [`Error::InvalidName`] saying what is wrong.
pub fn check_name(name: &str) -> Result<(), Error> {
    check_user_name(name.strip_suffix(METRICS_SUFFIX).unwrap_or(name))
}

/// A name as a user may give it: [`check_name`] without the suffix.
fn check_user_name(name: &str) -> Result<(), Error> {
    let len = name.len();
    if !(1..=64).contains(&len) {
        return Err(Error::InvalidName(format!("a name has 1 to 64 characters, got {len}")));
    }
    let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    if !name.as_bytes()[0].is_ascii_alphanumeric() || !name.bytes().all(ok) {
        return Err(Error::InvalidName(format!(
            "a name is made of [A-Za-z0-9_-] and starts with a letter or a digit, got {name:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_character_set_are_refused() {
        assert!(check_name("db-1_x").is_ok());
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(check_name("db-1_x.m").is_ok(), "a metrics companion");
        for bad in [
            "",
            "-a",
            "_a",
            "a.b",
            "a/b",
            "ä",
            "a b",
            &"a".repeat(65),
            ".m",
            "a.m.m",
            "a.b0",
            "a.M",
        ] {
            assert!(matches!(check_name(bad), Err(Error::InvalidName(_))), "{bad:?}");
        }
    }
}
