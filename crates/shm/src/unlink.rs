//! `unlink` (design §5): close the primitive for everyone who has it open,
//! then free the name.
//!
//! After a bare `unlink(2)` the attached processes would keep the old inode
//! while a new `open` made a second one: one name, two limits. So `unlink`
//! first sets `CLOSED|UNLINKED` in the segment under its lock and lets the
//! layout withdraw every wait and wake every owner; every later operation
//! through an old handle sees the segment closed. Then it removes the file
//! (if the name still names that inode) and every bell.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use crate::bell;
use crate::dir::{self, Dir};
use crate::file::{cname, map, open_file, unmap};
use crate::header::{Found, Geometry, Header};
use crate::liveness::{self, LIFETIME};
use crate::segment::{mismatch, OPEN_PATIENCE, RETRY_SLEEP};
use crate::{check_name, exit, Error, Layout, Region, Segment};

impl Segment {
    /// Closes the primitive for everyone who has it open and frees the name:
    /// under the lock, sets `CLOSED|UNLINKED` and runs the layout's
    /// `on_unlink` (which withdraws the waits and wakes every owner), then
    /// removes the file and its bells. A damaged segment, or one nobody has
    /// open, is just removed. `Ok(false)`: no such name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`], [`Error::Permission`] (another user's file),
    /// [`Error::Mismatch`] on `kind` when the name holds another primitive,
    /// [`Error::Busy`], [`Error::Io`].
    pub fn unlink<L: Layout>(dir: Option<&Path>, name: &str) -> Result<bool, Error> {
        check_name(name)?;
        let Some(dir) = dir::open(dir, false)? else {
            return Ok(false);
        };
        let until = Instant::now() + OPEN_PATIENCE;
        while Instant::now() < until {
            let Some((fd, st)) = open_file(&dir, name, false)? else {
                return Ok(false);
            };
            let key = (st.st_dev, st.st_ino);
            let mine = exit::registry().get(&key).and_then(std::sync::Weak::upgrade);
            if let Some(seg) = mine {
                mismatch("kind", u64::from(seg.header.kind), u64::from(L::KIND))?;
                seg.close_for_everyone();
                Segment::remove_name(&dir, name, key);
                return Ok(true);
            }
            let raw = fd.as_raw_fd();
            if liveness::set(raw, libc::F_WRLCK, LIFETIME)? {
                // Nobody attached (or damaged beyond use): nothing to tell.
                Segment::remove_name(&dir, name, key);
                return Ok(true);
            }
            if !liveness::set(raw, libc::F_RDLCK, LIFETIME)? {
                std::thread::sleep(RETRY_SLEEP);
                continue;
            }
            let size = st.st_size as usize;
            let Some(seg) = Segment::map_existing::<L>(dir.fd.try_clone()?, &dir, fd, name, size)? else {
                Segment::remove_name(&dir, name, key);
                return Ok(true);
            };
            seg.close_for_everyone();
            drop(seg);
            Segment::remove_name(&dir, name, key);
            return Ok(true);
        }
        Err(Error::Busy)
    }

    /// Maps a segment others are attached to, only to unlink it. `None`: its
    /// header is not valid (there is nobody to tell).
    fn map_existing<L: Layout>(
        dirfd: OwnedFd,
        dir: &Dir,
        fd: OwnedFd,
        name: &str,
        size: usize,
    ) -> Result<Option<Segment>, Error> {
        if size < crate::header::HEADER_SIZE {
            return Ok(None);
        }
        let base = map(fd.as_raw_fd(), size)?;
        // SAFETY: mapped until `unmap` or the Segment's drop.
        let header = match Header::read(unsafe { Region::from_raw(base, size) }, size as u64) {
            Ok(Found::Valid(h)) => h,
            _ => {
                unmap(base, size);
                return Ok(None);
            }
        };
        let geo = Geometry::new(
            header.max_procs,
            header.max_owners,
            (header.offsets[6] - header.offsets[4]) as usize,
        );
        let geo = match geo {
            Ok(g) if Header::offsets_of(&g) == header.offsets && g.end == size => g,
            _ => {
                unmap(base, size);
                return Ok(None);
            }
        };
        if let Err(e) = mismatch("kind", u64::from(header.kind), u64::from(L::KIND)) {
            unmap(base, size);
            return Err(e);
        }
        Ok(Some(Segment::mapped::<L>(
            name,
            Dir {
                fd: dirfd,
                path: dir.path.clone(),
            },
            fd,
            base,
            size,
            geo,
            header,
            false,
        )))
    }

    /// Removes the name if it still names inode `key`, and every bell.
    fn remove_name(dir: &Dir, name: &str, key: (u64, u64)) {
        let c = cname(name);
        // SAFETY: an all-zero stat is a valid out value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is NUL-terminated, `st` a valid out-pointer.
        let same = unsafe { libc::fstatat(dir.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0
            && (st.st_dev, st.st_ino) == key;
        if same {
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir.fd.as_raw_fd(), c.as_ptr(), 0) };
        }
        bell::unlink_all(dir.fd.as_raw_fd(), &dir.path, name);
    }
}
