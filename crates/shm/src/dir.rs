//! The private segment directory (design §1.1): `/dev/shm/sluice-<euid>/`,
//! mode 0700, or the directory given by the `dir` argument or
//! `$SLUICE_SHM_DIR`. All three pass the same checks: a real directory (not a
//! symlink), owned by the effective uid, with no group or other bits. A
//! directory nobody else can write means nobody else can squat a name or
//! plant a FIFO in it; everything inside is then reached with `openat`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{Error, DIR_ENV};

/// An open, checked segment directory.
#[derive(Debug)]
pub(crate) struct Dir {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The directory to use: the argument, else `$SLUICE_SHM_DIR`, else the
/// default under `/dev/shm`.
pub(crate) fn resolve(dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_path_buf();
    }
    match std::env::var_os(DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(format!("/dev/shm/sluice-{}", euid())),
    }
}

pub(crate) fn cstr(path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Permission(format!("path {} contains a NUL byte", path.display())))
}

/// `fstat` of an fd.
pub(crate) fn fstat(fd: i32) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer; a bad fd is reported as EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Refuses anything but a private directory of ours.
fn check(st: &libc::stat, path: &Path) -> Result<(), Error> {
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Error::Permission(format!("{} is not a directory", path.display())));
    }
    let me = euid();
    if st.st_uid != me {
        return Err(Error::Permission(format!(
            "directory {} is owned by uid {}, not {me}",
            path.display(),
            st.st_uid
        )));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(Error::Permission(format!(
            "directory {} has mode {:o}; it must be 0700 (no group or other bits)",
            path.display(),
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// Opens (creating it 0700 if missing, one level only) and checks the
/// directory.
pub(crate) fn open(dir: Option<&Path>, create: bool) -> Result<Option<Dir>, Error> {
    let path = resolve(dir);
    let c = cstr(&path)?;
    if create {
        // SAFETY: `c` is a NUL-terminated path.
        if unsafe { libc::mkdir(c.as_ptr(), 0o700) } == 0 {
            // The umask may have taken bits away (0o777 makes it unusable);
            // a new directory of ours gets exactly 0700.
            // SAFETY: as above.
            unsafe { libc::chmod(c.as_ptr(), 0o700) };
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::Io(io::Error::new(
                    e.kind(),
                    format!("mkdir {}: {e}", path.display()),
                )));
            }
        }
    }
    // O_NOFOLLOW refuses a symlink in the last component; the checks run on
    // the fd itself, so the directory cannot be swapped between check and use.
    // SAFETY: `c` is a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) if !create => Ok(None),
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => Err(Error::Permission(format!(
                "{} is not a directory (a symlink?)",
                path.display()
            ))),
            Some(libc::EACCES) => Err(Error::Permission(format!("{}: {e}", path.display()))),
            _ => Err(Error::Io(io::Error::new(
                e.kind(),
                format!("open {}: {e}", path.display()),
            ))),
        };
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    check(&fstat(fd.as_raw_fd())?, &path)?;
    Ok(Some(Dir { fd, path }))
}
