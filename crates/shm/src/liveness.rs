//! Process liveness through OFD locks (design §3).
//!
//! An OFD (open-file-description) lock belongs to the description made by
//! `open`, not to a process or an fd: it goes away only when the description
//! does, i.e. when the last fd *and the last mapping* of it are gone, which
//! happens at process death whatever the signal (hazard 2). Byte 0 of the
//! segment file is the lifetime lock; byte `1 + p` is process slot `p`.
//! Holding the write lock on that byte *is* owning the slot, and a peer
//! learns the slot is dead with one `F_OFD_GETLK` (≈0.5 µs), which PID reuse
//! cannot fool.

use std::io;

fn flock(ty: i32, byte: u64) -> libc::flock {
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct;
    // `l_pid` must be 0 for OFD commands, which zeroing gives.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = ty as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l.l_start = byte as libc::off_t;
    l.l_len = 1;
    l
}

/// `F_OFD_SETLK` of `ty` (`F_RDLCK`, `F_WRLCK`, `F_UNLCK`) on one byte.
/// `Ok(false)`: another description holds a conflicting lock.
pub(crate) fn set(fd: i32, ty: i32, byte: u64) -> io::Result<bool> {
    let mut l = flock(ty, byte);
    // SAFETY: `l` is a valid flock for the duration of the call.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut l) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// `true` if another open file description holds a lock on `byte` (our own
/// locks never conflict with our own probe, so never probe our own slot).
pub(crate) fn held_by_other(fd: i32, byte: u64) -> bool {
    let mut l = flock(libc::F_WRLCK, byte);
    // SAFETY: `l` is a valid flock for the duration of the call.
    let rc = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut l) };
    // On an error, say "alive": reaping a live process is the one mistake
    // that must never happen.
    rc != 0 || l.l_type != libc::F_UNLCK as libc::c_short
}

/// Byte of the lifetime lock.
pub(crate) const LIFETIME: u64 = 0;

/// Byte of process slot `p`.
pub(crate) fn slot_byte(p: u32) -> u64 {
    1 + u64::from(p)
}

/// This process's start time in clock ticks since boot (`/proc/self/stat`
/// field 22), for diagnostics next to the pid: a pid alone can be reused.
pub(crate) fn start_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // The command (field 2) may hold spaces and parentheses: count from the
    // last ')'. Field 22 is then the 20th after it.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// The inode of one of this process's namespaces (`/proc/self/ns/<ns>`), 0 if
/// unknown.
pub(crate) fn ns_ino(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/ns/{ns}"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Nanoseconds of `clock`.
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut t) };
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}
