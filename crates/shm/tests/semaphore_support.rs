//! Helpers for the semaphore's process tests (included with `#[path]`; as a
//! test target of its own it has no tests). A test binary re-executes itself
//! (`current_exe()`) with `SHM_ROLE` naming what the child does; the `child`
//! test of each binary runs that role (a no-op when the variable is unset).
#![cfg(target_os = "linux")]
#![allow(dead_code)]

use std::io::Write;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_shm::semaphore::SharedSemaphore;

#[path = "common/mod.rs"]
mod common;
// Not every test binary that includes this file names each of them.
#[allow(unused_imports)]
pub use common::{spawn, Child, TempDir};

pub fn open(dir: &Path, name: &str, permits: u64, max_waiters: u32) -> Arc<SharedSemaphore> {
    SharedSemaphore::open(Some(dir), name, permits, max_waiters).unwrap()
}

pub fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

pub fn say(s: String) {
    println!("{s}");
    let _ = std::io::stdout().flush();
}

pub fn read_stdin_line() -> String {
    let mut s = String::new();
    let _ = std::io::stdin().read_line(&mut s);
    s.trim().to_owned()
}

/// Waits up to `limit` for the bell `fd` to be readable, and drains it.
pub fn wait_bell(fd: RawFd, limit: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n <= 0 {
        return false;
    }
    let mut buf = [0u8; 64];
    // SAFETY: reads into a local buffer of that size; the fd is non-blocking.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    true
}

/// Collects `owner`'s decisions until `token` shows up (rung or not), for at
/// most `limit`; sweeps meanwhile when `sweep` is set.
pub fn await_token(sem: &SharedSemaphore, owner: u32, fd: RawFd, token: i64, limit: Duration, sweep: bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if sem.take_decided(owner).unwrap().contains(&token) {
            return true;
        }
        if sweep {
            sem.sweep().unwrap();
        }
        wait_bell(fd, Duration::from_millis(10));
    }
    false
}

/// Counters in a file every process maps: the test's own view of how many
/// hold a permit at once.
pub struct Counters {
    base: *mut AtomicU64,
    _file: std::fs::File,
}

impl Counters {
    pub fn open(path: &Path) -> Counters {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        file.set_len(4096).unwrap();
        // SAFETY: a fresh shared mapping of a 4096-byte file we keep open.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        Counters {
            base: base.cast(),
            _file: file,
        }
    }

    pub fn at(&self, i: usize) -> &AtomicU64 {
        assert!(i < 512);
        // SAFETY: inside the 4096-byte mapping, 8-aligned, only used atomically.
        unsafe { &*self.base.add(i) }
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`.
        unsafe { libc::munmap(self.base.cast(), 4096) };
    }
}
