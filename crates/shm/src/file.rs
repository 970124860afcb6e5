//! The segment file: opening it inside the checked directory, mapping it,
//! sizing it with `posix_fallocate` (design §1.1, hazards 1 and 3).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::dir::{euid, fstat, Dir};
use crate::liveness;
use crate::Error;

pub(crate) fn cname(name: &str) -> CString {
    CString::new(name).expect("checked names have no NUL")
}

/// Opens `<dir>/<name>` and checks it is a private regular file of ours.
/// `Ok(None)`: it does not exist and `create` is false.
pub(crate) fn open_file(dir: &Dir, name: &str, create: bool) -> Result<Option<(OwnedFd, libc::stat)>, Error> {
    let c = cname(name);
    let base = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let mut created = false;
    let mut fd;
    loop {
        // Try to create it first so that we know whether it is ours to chmod.
        // SAFETY: `c` is NUL-terminated; `dir.fd` is an open directory.
        fd = if create {
            unsafe {
                libc::openat(
                    dir.fd.as_raw_fd(),
                    c.as_ptr(),
                    base | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )
            }
        } else {
            -1
        };
        if fd >= 0 {
            created = true;
            break;
        }
        if create && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            break;
        }
        // SAFETY: as above.
        fd = unsafe { libc::openat(dir.fd.as_raw_fd(), c.as_ptr(), base) };
        if fd >= 0 || !create || io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
            break;
        }
        // Unlinked between our two calls: create it.
    }
    if fd < 0 {
        let e = io::Error::last_os_error();
        let path = dir.path.join(name);
        return match e.raw_os_error() {
            Some(libc::ENOENT) if !create => Ok(None),
            Some(libc::ELOOP) => Err(Error::Permission(format!("{} is a symlink", path.display()))),
            Some(libc::EACCES) | Some(libc::EPERM) => Err(Error::Permission(format!("{}: {e}", path.display()))),
            _ => Err(Error::Io(io::Error::new(
                e.kind(),
                format!("open {}: {e}", path.display()),
            ))),
        };
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if created {
        // 0600 whatever the umask (a umask of 0o777 would leave 0000).
        // SAFETY: `fd` is open.
        unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) };
    }
    let st = fstat(fd.as_raw_fd())?;
    let path = dir.path.join(name);
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::Permission(format!("{} is not a regular file", path.display())));
    }
    if st.st_uid != euid() {
        return Err(Error::Permission(format!(
            "{} is owned by another user (uid {}, this process {})",
            path.display(),
            st.st_uid,
            euid()
        )));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(Error::Permission(format!(
            "{} has mode {:o}; a segment must be 0600",
            path.display(),
            st.st_mode & 0o7777
        )));
    }
    Ok(Some((fd, st)))
}

/// Maps `len` bytes of `fd` shared, not inherited by `fork` (hazard 3).
pub(crate) fn map(fd: i32, len: usize) -> Result<NonNull<u8>, Error> {
    // SAFETY: a fresh mapping chosen by the kernel; no existing memory is
    // affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::Io(io::Error::last_os_error()));
    }
    // A child forked without exec must not keep the mapping, hence the OFD
    // locks, hence a dead parent looking alive. Best effort.
    // SAFETY: `p..p + len` is the mapping just made.
    unsafe { libc::madvise(p, len, libc::MADV_DONTFORK) };
    Ok(NonNull::new(p.cast()).expect("mmap never returns null on success"))
}

pub(crate) fn unmap(p: NonNull<u8>, len: usize) {
    // SAFETY: `p..p + len` is a mapping made by `map` and not used any more.
    unsafe { libc::munmap(p.as_ptr().cast(), len) };
}

pub(crate) fn random_generation() -> u64 {
    let mut g = 0u64;
    // SAFETY: writes at most 8 bytes into `g`.
    let n = unsafe { libc::getrandom((&mut g as *mut u64).cast(), 8, 0) };
    if n != 8 {
        // SAFETY: getpid has no preconditions.
        g = liveness::clock_ns(libc::CLOCK_MONOTONIC) ^ (u64::from(unsafe { libc::getpid() } as u32) << 40);
    }
    g.max(1)
}

/// `posix_fallocate`, with ENOSPC turned into an error naming the directory
/// and the sizes (hazard 1: `ftruncate` alone would SIGBUS later instead).
pub(crate) fn allocate(fd: i32, dir: &Dir, len: usize) -> Result<(), Error> {
    // SAFETY: plain syscall on an open fd.
    let rc = unsafe { libc::posix_fallocate(fd, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    if rc == libc::ENOSPC {
        // SAFETY: an all-zero statvfs is a valid out value.
        let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `sv` is a valid out-pointer.
        let known = unsafe { libc::fstatvfs(dir.fd.as_raw_fd(), &mut sv) } == 0;
        let (size, free) = if known {
            (
                (sv.f_blocks as u64).saturating_mul(sv.f_frsize as u64),
                (sv.f_bavail as u64).saturating_mul(sv.f_frsize as u64),
            )
        } else {
            (0, 0)
        };
        return Err(Error::NoSpace(format!(
            "{} (a filesystem of {} KiB, {} KiB free) has no room for a segment of {} KiB; free some, or choose another directory with SLUICE_SHM_DIR or the dir option",
            dir.path.display(),
            size / 1024,
            free / 1024,
            len.div_ceil(1024)
        )));
    }
    Err(Error::Io(io::Error::from_raw_os_error(rc)))
}

/// A second open file description of the same file, read-only and holding no
/// lock, through `/proc/self/fd` (which works even once the name is gone).
pub(crate) fn reopen(fd: i32) -> Option<OwnedFd> {
    let path = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    let new = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    // SAFETY: `new` was just opened and is owned by nothing else.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}
