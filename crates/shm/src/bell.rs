//! FIFO bells (design §2.2): one FIFO per owner slot, `<dir>/<name>.b<owner>`.
//!
//! The owner opens its bell `O_RDWR|O_NONBLOCK` (so there is always a writer
//! and never an EOF) and hands a `dup` to JavaScript, which watches it with
//! `net.Socket({ fd })`. A release in any process writes one byte: the bytes
//! carry nothing, a ring only says "look". Writers are cached per process,
//! at most [`WRITERS`] fds (the fd budget matters at `ulimit -n` 1024), and a
//! write that finds the reader gone (`EPIPE`, or `ENXIO` at open: hazard 8)
//! just drops the fd. Node ignores SIGPIPE, and so does a Rust binary.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::dir::{euid, fstat};
use crate::Error;

/// Bound of the per-segment writer cache.
pub(crate) const WRITERS: usize = 64;

fn bell_name(name: &str, owner: u32) -> CString {
    CString::new(format!("{name}.b{owner}")).expect("names have no NUL")
}

/// Removes `owner`'s bell, if any.
pub(crate) fn unlink(dirfd: i32, name: &str, owner: u32) {
    let c = bell_name(name, owner);
    // SAFETY: `c` is NUL-terminated; a missing file is ENOENT, ignored.
    unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) };
}

/// Removes every `<name>.b<digits>` in `dir` (stale bells of a dead
/// generation, or of an unlinked name).
pub(crate) fn unlink_all(dirfd: i32, dir: &Path, name: &str) {
    let prefix = format!("{name}.b");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(n) = file.strip_prefix(&prefix) else { continue };
        if let Ok(owner) = n.parse::<u32>() {
            unlink(dirfd, name, owner);
        }
    }
}

/// Makes `owner`'s bell afresh and opens its read side.
pub(crate) fn create(dirfd: i32, dir: &Path, name: &str, owner: u32) -> Result<OwnedFd, Error> {
    let c = bell_name(name, owner);
    for _ in 0..2 {
        // A FIFO left by a dead owner of this slot may still have unread
        // rings in it; start from a new one.
        // SAFETY: `c` is NUL-terminated.
        unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) };
        // SAFETY: as above.
        if unsafe { libc::mkfifoat(dirfd, c.as_ptr(), 0o600) } == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::Io(io::Error::new(
                e.kind(),
                format!("mkfifo {}/{name}.b{owner}: {e}", dir.display()),
            )));
        }
    }
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: `c` is NUL-terminated.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(Error::Io(io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO || st.st_uid != euid() || st.st_mode & 0o077 != 0 {
        return Err(Error::Permission(format!(
            "bell {}/{name}.b{owner} is not a private FIFO of ours",
            dir.display()
        )));
    }
    Ok(fd)
}

/// Writes one byte. `false` when the reader is gone (drop the fd).
pub(crate) fn ring_fd(fd: i32) -> bool {
    let byte = 1u8;
    // SAFETY: writes one byte from a valid buffer.
    let n = unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    if n == 1 {
        return true;
    }
    // EAGAIN: the pipe is full of unread rings; the reader has bytes to wake
    // on anyway.
    io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// A bounded cache of write sides, keyed by owner slot, checked against the
/// owner slot's generation so a reused slot gets a fresh open.
#[derive(Debug, Default)]
pub(crate) struct Writers {
    map: HashMap<u32, Writer>,
    tick: u64,
}

#[derive(Debug)]
struct Writer {
    fd: OwnedFd,
    generation: u64,
    used: u64,
}

impl Writers {
    /// Rings `owner` (whose slot is at `generation`). Never fails: an owner
    /// that is gone, or a bell that is not there, is simply not rung.
    pub fn ring(&mut self, dirfd: i32, name: &str, owner: u32, generation: u64) {
        self.tick += 1;
        if let Some(w) = self.map.get_mut(&owner) {
            if w.generation == generation {
                w.used = self.tick;
                if !ring_fd(w.fd.as_raw_fd()) {
                    self.map.remove(&owner);
                }
                return;
            }
            self.map.remove(&owner);
        }
        let c = bell_name(name, owner);
        let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: `c` is NUL-terminated. ENXIO (no reader) and ENOENT (no
        // bell) both mean "owner gone".
        let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags) };
        if fd < 0 {
            return;
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        match fstat(fd.as_raw_fd()) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFIFO => {}
            _ => return,
        }
        if !ring_fd(fd.as_raw_fd()) {
            return;
        }
        if self.map.len() >= WRITERS {
            if let Some(&lru) = self.map.iter().min_by_key(|(_, w)| w.used).map(|(k, _)| k) {
                self.map.remove(&lru);
            }
        }
        self.map.insert(
            owner,
            Writer {
                fd,
                generation,
                used: self.tick,
            },
        );
    }

    /// Forgets `owner`'s writer (its slot was freed).
    pub fn forget(&mut self, owner: u32) {
        self.map.remove(&owner);
    }

    /// Cached writers (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_cache_is_bounded_and_skips_bells_without_a_reader() {
        let dir = std::path::PathBuf::from(format!("/dev/shm/sluice-bell-unit-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        let dirfd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        assert!(dirfd >= 0);
        let readers: Vec<OwnedFd> = (0..70).map(|o| create(dirfd, &dir, "u", o).unwrap()).collect();
        let mut w = Writers::default();
        for o in 0..70 {
            w.ring(dirfd, "u", o, 1);
        }
        assert_eq!(w.len(), WRITERS);
        // Every bell got its byte, also those whose writer was evicted.
        for r in &readers {
            let mut b = [0u8; 4];
            // SAFETY: reads into a valid buffer from an open fd.
            assert_eq!(unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 4) }, 1);
        }
        // A bell whose reader closed: ENXIO at open, nothing cached.
        let mut w = Writers::default();
        drop(readers);
        w.ring(dirfd, "u", 3, 1);
        w.ring(dirfd, "u", 999, 1); // no such FIFO
        assert_eq!(w.len(), 0);
        // SAFETY: our fd.
        unsafe { libc::close(dirfd) };
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
