//! [`Segment`]: one segment file, mapped and attached to by this process.
//!
//! # Open protocol (design §1.2)
//!
//! Byte 0 of the file is the *lifetime lock*: every attached process holds a
//! shared OFD lock on it for as long as it has the file mapped. An opener
//! first tries it exclusively:
//!
//! - **exclusive**: nobody is attached. A valid header is stale: start clean
//!   (truncate, `posix_fallocate`, new random generation). An invalid header
//!   is refused ([`Error::Damaged`]), never silently reset. A blank one (no
//!   magic: the initialiser died) is initialised. The header is written with
//!   its magic last, then the lock is downgraded to shared in one `fcntl`.
//! - **shared**: others are attached and nobody is initialising. Validate the
//!   header (§1.4) and compare the parameters.
//! - **neither**: someone is initialising; retry every 100 µs for 2 s.
//!
//! A file unlinked under us (`st_nlink == 0`) or flagged `UNLINKED` is
//! re-opened by name. Then the process takes a process slot (§3.1) and, under
//! the segment lock, reaps whatever dead process held it before.
//!
//! One mapping per process per file: a registry keyed by `(st_dev, st_ino)`
//! hands every later opener in the process the same `Arc<Segment>`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bell::{self, Writers};
use crate::dir::{self, fstat, Dir};
use crate::file::{allocate, map, open_file, random_generation, reopen, unmap};
use crate::header::{abi_tag, other_version, Found, Geometry, Header};
use crate::liveness::{self, LIFETIME};
use crate::{check_name, exit, lock, Error, Layout, Region};

pub use crate::slots::Guard;

/// How long an opener retries while another process initialises.
pub(crate) const OPEN_PATIENCE: Duration = Duration::from_secs(2);
pub(crate) const RETRY_SLEEP: Duration = Duration::from_micros(100);
/// The lock timeout for the checks at open and for `unlink` (§1.4).
const OPEN_LOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// `proc` of a segment mapped only to be unlinked: it holds no slot.
pub(crate) const NO_PROC: u32 = u32::MAX;

/// The layout's hooks, as plain function pointers (see [`Layout`]).
#[derive(Clone, Copy)]
pub(crate) struct Hooks {
    pub kind: u32,
    pub recover: fn(&mut Guard<'_>),
    pub reap: fn(&mut Guard<'_>, u32, &[u32]),
    pub on_unlink: fn(&mut Guard<'_>),
    pub on_process_exit: fn(&mut Guard<'_>, u32, &[u32]),
}

impl Hooks {
    pub(crate) fn of<L: Layout>() -> Hooks {
        Hooks {
            kind: L::KIND,
            recover: L::recover,
            reap: L::reap,
            on_unlink: L::on_unlink,
            on_process_exit: L::on_process_exit,
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A segment mapped in this process: one per (device, inode) per process.
///
/// Dropping the last `Arc` detaches: under the lock, the layout's
/// `on_process_exit` for this process's owners, then its slots are freed, then
/// the file is unmapped and closed (which drops its OFD locks).
///
/// # Memory ordering
///
/// Every change to shared state happens under the segment lock, whose
/// lock/unlock are the acquire/release that order it for the next holder in
/// any process, so the accessors' `Relaxed` atomics are enough there. The
/// lock-free readers (`is_closed`, `ring`, `dead_procs`, `sweep_due`) each
/// read one word and need only some recent value of it. The header is
/// written before the lifetime lock is downgraded, and read after another
/// process's lock is granted: the `fcntl` calls order it.
#[derive(Debug)]
pub struct Segment {
    pub(crate) name: String,
    pub(crate) dir: Dir,
    /// Once attached: a second, lock-free description of the file, used for
    /// probes only. The locked description (lifetime and slot locks) lives on
    /// in the mapping alone (hazard 2), and the mapping is `MADV_DONTFORK`,
    /// so a child forked without exec inherits no lock and cannot keep a
    /// dead parent looking alive (hazard 3). Until then: the locked one.
    pub(crate) file: OwnedFd,
    pub(crate) base: NonNull<u8>,
    pub(crate) len: usize,
    pub(crate) geo: Geometry,
    pub(crate) header: Header,
    pub(crate) proc: u32,
    pub(crate) initialised: bool,
    pub(crate) hooks: Hooks,
    /// Read sides of this process's owners' bells (also used to ring them).
    pub(crate) bells: Mutex<HashMap<u32, OwnedFd>>,
    pub(crate) writers: Mutex<Writers>,
    /// Set once the open completed: only then does dropping detach.
    pub(crate) attached: AtomicBool,
    pub(crate) detached: AtomicBool,
    /// The process that mapped it. A child forked without exec has no
    /// mapping (`MADV_DONTFORK`) and must not touch it, e.g. from `atexit`.
    pub(crate) pid: u32,
}

// SAFETY: the mapping is shared memory accessed only through atomics (via
// `Region`) and the process-shared pthread mutex; the rest is owned data
// behind `Mutex`es.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Drop for Segment {
    fn drop(&mut self) {
        self.detach(Duration::from_millis(100));
        // SAFETY: `base..base + len` is our mapping; no `Region` of it
        // outlives `&self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One round of the protocol.
enum Round {
    Retry,
    Attached(Box<Segment>),
}

pub(crate) fn mismatch(field: &'static str, existing: u64, requested: u64) -> Result<(), Error> {
    if existing == requested {
        Ok(())
    } else {
        Err(Error::Mismatch {
            field,
            existing,
            requested,
        })
    }
}

/// Compares a valid header with what this opener asks for.
fn compare<L: Layout>(h: &Header, layout: &L, geo: &Geometry) -> Result<(), Error> {
    mismatch("kind", u64::from(h.kind), u64::from(L::KIND))?;
    let names = L::param_names();
    for (i, (had, want)) in h.params.iter().zip(layout.params()).enumerate() {
        mismatch(if names[i].is_empty() { "parameter" } else { names[i] }, *had, want)?;
    }
    mismatch("max_procs", u64::from(h.max_procs), u64::from(geo.max_procs))?;
    mismatch("max_owners", u64::from(h.max_owners), u64::from(geo.max_owners))?;
    if h.offsets != Header::offsets_of(geo) {
        return Err(Error::Damaged(format!(
            "stored region offsets {:?} differ from the computed {:?}",
            &h.offsets[..7],
            &Header::offsets_of(geo)[..7]
        )));
    }
    for (ns, had) in [("pid", h.pidns_ino), ("time", h.timens_ino)] {
        let mine = liveness::ns_ino(ns);
        if had != 0 && mine != 0 && had != mine {
            return Err(Error::Permission(format!(
                "the segment was made in another {ns} namespace (inode {had}, this process {mine}); one namespace is required"
            )));
        }
    }
    Ok(())
}

impl Segment {
    /// Opens the segment `name` in `dir` (default: `$SLUICE_SHM_DIR`, else
    /// `/dev/shm/sluice-<euid>`, created 0700), creating it, or starting it
    /// clean if every process that had it open is gone.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`], [`Error::Permission`] (foreign or too open
    /// directory or file, another namespace), [`Error::Damaged`],
    /// [`Error::Mismatch`] naming the first parameter that differs,
    /// [`Error::ProcessLimit`], [`Error::NoSpace`], [`Error::Busy`],
    /// [`Error::LockStuck`], [`Error::Io`].
    pub fn open<L: Layout>(dir: Option<&Path>, name: &str, layout: &L) -> Result<Arc<Segment>, Error> {
        check_name(name)?;
        let geo =
            Geometry::new(layout.max_procs(), layout.max_owners(), layout.mutable_size()).map_err(|e| match e {
                Error::Damaged(why) => Error::Invalid(why),
                other => other,
            })?;
        let dir = dir::open(dir, true)?.expect("created when missing");
        exit::register_once();
        // Held through the whole protocol: two threads of one process must
        // not map the same file twice.
        let mut registry = exit::registry();
        let until = Instant::now() + OPEN_PATIENCE;
        while Instant::now() < until {
            let (fd, st) = open_file(&dir, name, true)?.expect("created when missing");
            let key = (st.st_dev, st.st_ino);
            if let Some(seg) = registry.get(&key).and_then(std::sync::Weak::upgrade) {
                if !seg.is_closed() {
                    compare(&seg.header, layout, &geo)?;
                    return Ok(seg);
                }
                std::thread::sleep(RETRY_SLEEP);
                continue;
            }
            let dir = Dir {
                fd: dir.fd.try_clone()?,
                path: dir.path.clone(),
            };
            match Segment::round(dir, fd, name, layout, geo)? {
                Round::Retry => std::thread::sleep(RETRY_SLEEP),
                Round::Attached(seg) => {
                    let mut seg = *seg;
                    seg.take_slot()?;
                    if let Some(probe) = reopen(seg.file.as_raw_fd()) {
                        // Closes the locked fd; its locks stay with the mapping.
                        seg.file = probe;
                    }
                    seg.attached.store(true, Relaxed);
                    let seg = Arc::new(seg);
                    registry.retain(|_, w| w.strong_count() > 0);
                    registry.insert(key, Arc::downgrade(&seg));
                    return Ok(seg);
                }
            }
        }
        Err(Error::Busy)
    }

    fn round<L: Layout>(dir: Dir, fd: OwnedFd, name: &str, layout: &L, geo: Geometry) -> Result<Round, Error> {
        let raw = fd.as_raw_fd();
        let exclusive = liveness::set(raw, libc::F_WRLCK, LIFETIME)?;
        if !exclusive && !liveness::set(raw, libc::F_RDLCK, LIFETIME)? {
            return Ok(Round::Retry); // someone is initialising
        }
        let st = fstat(raw)?;
        if st.st_nlink == 0 {
            return Ok(Round::Retry); // unlinked under us: reopen the name
        }
        let size = st.st_size as usize;
        let found = if size == 0 {
            Found::Blank
        } else {
            let base = map(raw, size)?;
            // SAFETY: `base..base + size` is mapped until the `unmap` below,
            // and the region does not escape.
            let region = unsafe { Region::from_raw(base, size) };
            let found = Header::read(region, size as u64);
            unmap(base, size);
            found?
        };
        let header = match (exclusive, found) {
            (false, Found::Blank) => return Ok(Round::Retry), // initialiser died: we may win next time
            (false, Found::Valid(h)) => {
                compare(&h, layout, &geo)?;
                h
            }
            (false, Found::OtherVersion(version)) => return Err(other_version(version)),
            // Nobody has it open: blank, stale, or another sluice's (a version
            // from before an upgrade) alike start clean. Damage was refused above.
            (true, _) => {
                let h = Segment::initialise(&dir, raw, name, layout, &geo)?;
                // Atomic downgrade: attached like everyone else from now on.
                liveness::set(raw, libc::F_RDLCK, LIFETIME)?;
                h
            }
        };
        let base = map(raw, geo.end)?;
        let len = geo.end;
        let seg = Segment::mapped::<L>(name, dir, fd, base, len, geo, header, exclusive);
        if !exclusive {
            if seg.is_closed() {
                return Ok(Round::Retry); // being unlinked: the name will be free soon
            }
            let guard = seg.lock_timeout(OPEN_LOCK_TIMEOUT)?;
            seg.validate_slots()?;
            layout.validate(seg.region())?;
            drop(guard);
        }
        Ok(Round::Attached(Box::new(seg)))
    }

    /// Starts the file clean. We hold the lifetime lock exclusively: nobody
    /// has it mapped.
    /// A segment over a mapping of `file`, not yet attached (no process
    /// slot): what `open` attaches and `unlink` closes.
    #[allow(clippy::too_many_arguments)] // the fields of one value, named at the call
    pub(crate) fn mapped<L: Layout>(
        name: &str,
        dir: Dir,
        file: OwnedFd,
        base: NonNull<u8>,
        len: usize,
        geo: Geometry,
        header: Header,
        initialised: bool,
    ) -> Segment {
        Segment {
            name: name.to_owned(),
            dir,
            file,
            base,
            len,
            geo,
            header,
            proc: NO_PROC,
            initialised,
            hooks: Hooks::of::<L>(),
            bells: Mutex::new(HashMap::new()),
            writers: Mutex::new(Writers::default()),
            attached: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            pid: std::process::id(),
        }
    }

    fn initialise<L: Layout>(dir: &Dir, fd: i32, name: &str, layout: &L, geo: &Geometry) -> Result<Header, Error> {
        // Truncating to 0 first gives zeroed pages whatever the old size.
        // SAFETY: plain syscall on an open fd.
        if unsafe { libc::ftruncate(fd, 0) } != 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        allocate(fd, dir, geo.end)?;
        bell::unlink_all(dir.fd.as_raw_fd(), &dir.path, name);
        let base = map(fd, geo.end)?;
        // SAFETY: `base..base + end` is mapped until `unmap` below.
        let whole = unsafe { Region::from_raw(base, geo.end) };
        let result = (|| {
            // SAFETY: the mutex room is inside the mapping (geometry), 64-byte
            // aligned (page + 4096), and nobody else has the file mapped.
            unsafe { lock::init(base.as_ptr().add(geo.lock).cast())? };
            let region = whole
                .sub(geo.entries, geo.end - geo.entries)
                .expect("inside the geometry");
            // SAFETY: the region is zeroed and only we have it mapped.
            unsafe { layout.init(region) };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let h = Header {
                kind: L::KIND,
                total_size: geo.end as u64,
                abi_tag: abi_tag(),
                generation: random_generation(),
                created_unix_ms: now_ms,
                clock_offset_ns: liveness::clock_ns(libc::CLOCK_REALTIME)
                    .wrapping_sub(liveness::clock_ns(libc::CLOCK_MONOTONIC)),
                pidns_ino: liveness::ns_ino("pid"),
                timens_ino: liveness::ns_ino("time"),
                max_procs: geo.max_procs,
                max_owners: geo.max_owners,
                params: layout.params(),
                offsets: Header::offsets_of(geo),
            };
            h.write(whole).expect("the header fits the header page");
            Ok(h)
        })();
        unmap(base, geo.end);
        result
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory it lives in.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// `true` if this open (re)initialised the segment.
    pub fn initialised(&self) -> bool {
        self.initialised
    }

    /// The random, non-zero generation of this initialisation: a new one
    /// every time the segment starts clean.
    pub fn generation(&self) -> u64 {
        self.header.generation
    }

    /// This process's slot (`u32::MAX` for a segment mapped only to unlink it).
    pub fn proc_slot(&self) -> u32 {
        self.proc
    }

    /// The whole mapping.
    pub(crate) fn map_region(&self) -> Region<'_> {
        // SAFETY: `base..base + len` stays mapped while `self` lives.
        unsafe { Region::from_raw(self.base, self.len) }
    }

    /// The primitive's region.
    pub fn region(&self) -> Region<'_> {
        self.map_region()
            .sub(self.geo.entries, self.geo.end - self.geo.entries)
            .expect("inside the geometry")
    }

    pub(crate) fn mutex(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: `geo.lock + 64 <= len` (geometry checked at open).
        unsafe { self.base.as_ptr().add(self.geo.lock).cast() }
    }
}
