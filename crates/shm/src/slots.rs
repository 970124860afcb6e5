//! The segment's own mutable part: the lock and its [`Guard`], the state
//! block, process slots (§3.1) and owner slots, sweeping and reaping (§3.3).
//!
//! ```text
//! state block (64 B): flags u64 (CLOSED 1 | UNLINKED 2) @0, last_sweep_ns u64 @8,
//!                     recovering u64 @16 (1 from EOWNERDEAD until the layout's recover returned)
//! process slot (64 B): state u32 @0 (FREE 0, LIVE 1), generation u64 @8, pid u64 @16, start_ticks u64 @24
//! owner slot (64 B):   state u32 @0 (FREE 0, LIVE 1), proc u32 @4, generation u64 @8
//! ```
//!
//! Every write happens under the segment lock, so `Relaxed` is enough for
//! them: the mutex orders them for the next locker. The lock-free readers
//! (`is_closed`, `ring`, `dead_procs`, `sweep_due`) only need some recent
//! value of one word each.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use crate::bell;
use crate::header::SLOT;
use crate::liveness::{self, slot_byte};
use crate::lock::{self, Locked};
use crate::segment::NO_PROC;
use crate::{BellFd, Error, Region, Segment};

const FLAGS: usize = 0;
const LAST_SWEEP: usize = 8;
const RECOVERING: usize = 16;
const CLOSED: u64 = 1;
const UNLINKED: u64 = 2;

const FREE: u32 = 0;
const LIVE: u32 = 1;

const S_STATE: usize = 0;
const O_PROC: usize = 4;
const S_GEN: usize = 8;
const P_PID: usize = 16;
const P_START: usize = 24;

/// At most one sweep per this long per segment, machine-wide (the safety
/// poll's period, `POLL_MS` in `ts/doorbell.ts`).
const SWEEP_EVERY_NS: u64 = 50_000_000;

/// The segment lock, held. Dropping it unlocks, then rings the bells of the
/// owners passed to [`Guard::wake`] (never a syscall to another process's
/// bell while holding the lock).
///
/// Not `Send`: a pthread mutex must be unlocked by the thread that locked it.
#[derive(Debug)]
pub struct Guard<'a> {
    segment: &'a Segment,
    recovered: bool,
    wake: Vec<u32>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: a Guard exists only while this thread holds the mutex.
        unsafe { lock::unlock(self.segment.mutex()) };
        for owner in std::mem::take(&mut self.wake) {
            self.segment.ring(owner);
        }
    }
}

impl Guard<'_> {
    /// `true` when `EOWNERDEAD` was seen (a holder died inside the lock) and
    /// the layout's [`recover`](crate::Layout::recover) has run.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// The segment locked.
    pub fn segment(&self) -> &Segment {
        self.segment
    }

    /// The primitive's region.
    pub fn region(&self) -> Region<'_> {
        self.segment.region()
    }

    /// Rings `owner` once the lock is released.
    pub fn wake(&mut self, owner: u32) {
        if !self.wake.contains(&owner) {
            self.wake.push(owner);
        }
    }
}

impl Segment {
    fn word(&self, off: usize) -> &AtomicU64 {
        self.map_region()
            .u64_at(off)
            .expect("offset inside the checked geometry")
    }

    fn half(&self, off: usize) -> &AtomicU32 {
        self.map_region()
            .u32_at(off)
            .expect("offset inside the checked geometry")
    }

    fn state_word(&self, off: usize) -> &AtomicU64 {
        self.word(self.geo.state + off)
    }

    fn proc_at(&self, p: u32, field: usize) -> usize {
        self.geo.procs + p as usize * SLOT + field
    }

    fn owner_at(&self, o: u32, field: usize) -> usize {
        self.geo.owners + o as usize * SLOT + field
    }

    /// Takes the lock (`OPERATION_TIMEOUT`, 1 s, then [`Error::LockStuck`]). If the last holder
    /// died inside it, the layout's `recover` runs before this returns and
    /// [`Guard::recovered`] says so.
    ///
    /// # Errors
    ///
    /// [`Error::LockStuck`], or [`Error::Damaged`] for an unrecoverable mutex.
    pub fn lock(&self) -> Result<Guard<'_>, Error> {
        self.lock_timeout(crate::OPERATION_TIMEOUT)
    }

    /// [`lock`](Segment::lock), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Segment::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Guard<'_>, Error> {
        // SAFETY: the mutex was initialised with the segment (or is damaged
        // bytes of a validated geometry, which glibc reports or times out on).
        let locked = unsafe { lock::lock(self.mutex(), timeout)? };
        let mut guard = Guard {
            segment: self,
            recovered: false,
            wake: Vec::new(),
            _not_send: std::marker::PhantomData,
        };
        let pending = self.state_word(RECOVERING);
        if locked == Locked::OwnerDied {
            pending.store(1, Relaxed);
        }
        if pending.load(Relaxed) != 0 {
            (self.hooks.recover)(&mut guard);
            pending.store(0, Relaxed);
            guard.recovered = true;
        }
        Ok(guard)
    }

    /// `true` once `unlink` closed the segment for everyone.
    pub fn is_closed(&self) -> bool {
        self.state_word(FLAGS).load(Relaxed) & (CLOSED | UNLINKED) != 0
    }

    /// `true` once `unlink` removed the name: a cached handle is dead, and a
    /// new `open` of the name makes a new segment. Lock-free.
    pub fn is_unlinked(&self) -> bool {
        self.state_word(FLAGS).load(Relaxed) & UNLINKED != 0
    }

    /// Sets `CLOSED|UNLINKED` and runs the layout's `on_unlink` under the
    /// lock; if the lock is stuck, sets the flags anyway (one atomic word) so
    /// that every later operation sees the segment closed.
    pub(crate) fn close_for_everyone(&self) {
        match self.lock_timeout(Duration::from_secs(1)) {
            Ok(mut guard) => {
                self.state_word(FLAGS).fetch_or(CLOSED | UNLINKED, Relaxed);
                (self.hooks.on_unlink)(&mut guard);
            }
            Err(_) => {
                self.state_word(FLAGS).fetch_or(CLOSED | UNLINKED, Relaxed);
            }
        }
    }

    /// Checks the segment's own slots (at open, under the lock).
    pub(crate) fn validate_slots(&self) -> Result<(), Error> {
        for p in 0..self.geo.max_procs {
            let s = self.half(self.proc_at(p, S_STATE)).load(Relaxed);
            if s != FREE && s != LIVE {
                return Err(Error::Damaged(format!("process slot {p} has state {s}")));
            }
        }
        for o in 0..self.geo.max_owners {
            let s = self.half(self.owner_at(o, S_STATE)).load(Relaxed);
            let p = self.half(self.owner_at(o, O_PROC)).load(Relaxed);
            if s != FREE && s != LIVE {
                return Err(Error::Damaged(format!("owner slot {o} has state {s}")));
            }
            if s == LIVE && p >= self.geo.max_procs {
                return Err(Error::Damaged(format!("owner slot {o} names process slot {p}")));
            }
        }
        let flags = self.state_word(FLAGS).load(Relaxed);
        if flags & !(CLOSED | UNLINKED) != 0 {
            return Err(Error::Damaged(format!("state flags {flags:#x}")));
        }
        Ok(())
    }

    /// Takes a free process slot: the first byte `1 + p` whose OFD write lock
    /// we get. A slot still marked LIVE had a dead process: reap it first.
    /// Then reap every other dead slot (design §1.2, last line).
    pub(crate) fn take_slot(&mut self) -> Result<(), Error> {
        let fd = self.file.as_raw_fd();
        let mut mine = None;
        for p in 0..self.geo.max_procs {
            if liveness::set(fd, libc::F_WRLCK, slot_byte(p))? {
                mine = Some(p);
                break;
            }
        }
        let Some(p) = mine else {
            return Err(Error::ProcessLimit(self.geo.max_procs));
        };
        // Set once, before anyone else can see this Segment.
        self.proc = p;
        let this = &*self;
        let mut guard = this.lock_timeout(Duration::from_secs(1))?;
        if this.half(this.proc_at(p, S_STATE)).load(Relaxed) == LIVE {
            this.reap_proc(&mut guard, p);
        }
        for dead in this.dead_procs() {
            this.reap_proc(&mut guard, dead);
        }
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as u64;
        this.word(this.proc_at(p, S_GEN)).fetch_add(1, Relaxed);
        this.word(this.proc_at(p, P_PID)).store(pid, Relaxed);
        this.word(this.proc_at(p, P_START))
            .store(liveness::start_ticks(), Relaxed);
        this.half(this.proc_at(p, S_STATE)).store(LIVE, Relaxed);
        Ok(())
    }

    /// Takes an owner slot for the calling thread and makes its bell. Returns
    /// the slot and a `dup` of the bell's read side (`O_RDWR|O_NONBLOCK`,
    /// close-on-exec) for JavaScript to own and close; the segment keeps its
    /// own fd until [`detach_owner`](Segment::detach_owner).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::OwnerLimit`], [`Error::LockStuck`],
    /// [`Error::Io`] / [`Error::Permission`] from the FIFO.
    pub fn attach_owner(&self) -> Result<(u32, BellFd), Error> {
        let _guard = self.lock()?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if self.proc == NO_PROC {
            return Err(Error::Closed);
        }
        let free = (0..self.geo.max_owners).find(|&o| self.half(self.owner_at(o, S_STATE)).load(Relaxed) == FREE);
        let Some(o) = free else {
            return Err(Error::OwnerLimit(self.geo.max_owners));
        };
        let fd = bell::create(self.dir.fd.as_raw_fd(), &self.dir.path, &self.name, o)?;
        // SAFETY: plain fcntl on an open fd.
        let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            bell::unlink(self.dir.fd.as_raw_fd(), &self.name, o);
            return Err(Error::Io(std::io::Error::last_os_error()));
        }
        self.bells.lock().unwrap_or_else(|e| e.into_inner()).insert(o, fd);
        self.half(self.owner_at(o, O_PROC)).store(self.proc, Relaxed);
        self.word(self.owner_at(o, S_GEN)).fetch_add(1, Relaxed);
        // The commit word, last: a ringer that sees LIVE finds the FIFO.
        self.half(self.owner_at(o, S_STATE)).store(LIVE, Relaxed);
        Ok((o, dup))
    }

    /// Frees owner slot `owner` of this process (the primitive gave back what
    /// it held first, under the same `guard`). Others' owners are ignored.
    pub fn detach_owner(&self, guard: &mut Guard<'_>, owner: u32) {
        let _ = guard;
        if self.owner_proc(owner) == Some(self.proc) {
            self.free_owner(owner);
        }
    }

    fn free_owner(&self, o: u32) {
        self.half(self.owner_at(o, S_STATE)).store(FREE, Relaxed);
        self.word(self.owner_at(o, S_GEN)).fetch_add(1, Relaxed);
        self.bells.lock().unwrap_or_else(|e| e.into_inner()).remove(&o);
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).forget(o);
        bell::unlink(self.dir.fd.as_raw_fd(), &self.name, o);
    }

    /// Rings `owner`'s bell. Never an error: an owner that is gone (free
    /// slot, `EPIPE`, `ENXIO`, no FIFO) is simply not rung.
    pub fn ring(&self, owner: u32) {
        if owner >= self.geo.max_owners {
            return;
        }
        if self.half(self.owner_at(owner, S_STATE)).load(Relaxed) != LIVE {
            return;
        }
        if let Some(fd) = self.bells.lock().unwrap_or_else(|e| e.into_inner()).get(&owner) {
            bell::ring_fd(fd.as_raw_fd());
            return;
        }
        let generation = self.word(self.owner_at(owner, S_GEN)).load(Relaxed);
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).ring(
            self.dir.fd.as_raw_fd(),
            &self.name,
            owner,
            generation,
        );
    }

    /// The process slot of a live owner; `None` for a free or out-of-range slot.
    pub fn owner_proc(&self, owner: u32) -> Option<u32> {
        if owner >= self.geo.max_owners || self.half(self.owner_at(owner, S_STATE)).load(Relaxed) != LIVE {
            return None;
        }
        Some(self.half(self.owner_at(owner, O_PROC)).load(Relaxed))
    }

    /// The live owners of process slot `proc`.
    pub fn owners_of(&self, proc: u32) -> Vec<u32> {
        (0..self.geo.max_owners)
            .filter(|&o| self.owner_proc(o) == Some(proc))
            .collect()
    }

    /// Process slots marked LIVE whose OFD byte nobody holds: their process
    /// is dead (kernel-released, whatever the signal). Never this process's.
    pub fn dead_procs(&self) -> Vec<u32> {
        let fd = self.file.as_raw_fd();
        (0..self.geo.max_procs)
            .filter(|&p| p != self.proc)
            .filter(|&p| self.half(self.proc_at(p, S_STATE)).load(Relaxed) == LIVE)
            .filter(|&p| !liveness::held_by_other(fd, slot_byte(p)))
            .collect()
    }

    /// The process slots whose process is alive, each with its generation
    /// (bumped whenever the slot is taken or freed): this process's own, and
    /// every LIVE slot whose OFD byte another description holds. Lock-free:
    /// a slot may be freed or re-taken the instant after, which the
    /// generation tells.
    pub fn live_procs(&self) -> Vec<(u32, u64)> {
        let fd = self.file.as_raw_fd();
        (0..self.geo.max_procs)
            .filter(|&p| self.half(self.proc_at(p, S_STATE)).load(Relaxed) == LIVE)
            .filter(|&p| p == self.proc || liveness::held_by_other(fd, slot_byte(p)))
            .map(|p| (p, self.word(self.proc_at(p, S_GEN)).load(Relaxed)))
            .collect()
    }

    /// The generation of process slot `proc` (`None` out of range).
    pub fn proc_generation(&self, proc: u32) -> Option<u64> {
        (proc < self.geo.max_procs).then(|| self.word(self.proc_at(proc, S_GEN)).load(Relaxed))
    }

    /// `true` at most once per 50 ms per segment, machine-wide: a CAS on the
    /// state block's `last_sweep_ns` (CLOCK_MONOTONIC, one clock for every
    /// process of one time namespace, which open requires).
    pub fn sweep_due(&self) -> bool {
        let now = liveness::clock_ns(libc::CLOCK_MONOTONIC);
        let last = self.state_word(LAST_SWEEP);
        let seen = last.load(Relaxed);
        now.saturating_sub(seen) >= SWEEP_EVERY_NS && last.compare_exchange(seen, now, Relaxed, Relaxed).is_ok()
    }

    /// Reaps process slot `proc` (the caller knows it is dead: `dead_procs`
    /// under this guard): the layout's `reap` for its owners, then frees the
    /// owner slots (bells unlinked) and the process slot.
    pub fn reap_proc(&self, guard: &mut Guard<'_>, proc: u32) {
        if proc >= self.geo.max_procs {
            return;
        }
        let owners = self.owners_of(proc);
        (self.hooks.reap)(guard, proc, &owners);
        for o in owners {
            self.free_owner(o);
        }
        self.word(self.proc_at(proc, S_GEN)).fetch_add(1, Relaxed);
        self.half(self.proc_at(proc, S_STATE)).store(FREE, Relaxed);
    }

    /// If a sweep is due: probe the process slots, and reap the dead ones
    /// under the lock (probing again there, so that a slot re-taken meanwhile
    /// is left alone). Returns how many were reaped.
    ///
    /// # Errors
    ///
    /// From [`lock`](Segment::lock).
    pub fn sweep(&self) -> Result<usize, Error> {
        if !self.sweep_due() || self.dead_procs().is_empty() {
            return Ok(0);
        }
        let mut guard = self.lock()?;
        let dead = self.dead_procs();
        for &p in &dead {
            self.reap_proc(&mut guard, p);
        }
        Ok(dead.len())
    }

    /// Gives back what this process's owners hold and frees its slots (once):
    /// on drop of the last `Arc` and from the `atexit` handler. Skipped if the
    /// lock cannot be had in `timeout`: the OFD path covers it (hazard 10).
    pub(crate) fn detach(&self, timeout: Duration) {
        if !self.attached.load(Relaxed) || self.pid != std::process::id() || self.detached.swap(true, Relaxed) {
            return;
        }
        let Ok(mut guard) = self.lock_timeout(timeout) else {
            return;
        };
        let owners = self.owners_of(self.proc);
        (self.hooks.on_process_exit)(&mut guard, self.proc, &owners);
        for o in owners {
            self.free_owner(o);
        }
        self.word(self.proc_at(self.proc, S_GEN)).fetch_add(1, Relaxed);
        self.half(self.proc_at(self.proc, S_STATE)).store(FREE, Relaxed);
    }
}
