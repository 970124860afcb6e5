//! Where a [`SharedSemaphore`]'s state lives, and the one locked path every
//! operation takes: lock (recovering if needed), run the engine, unlock,
//! ring the owners it served. Also the process-local wait map.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

use super::records::{self, Engine};
use super::{invalid, SharedSemaphore};
use crate::{Error, Guard, Region, Segment};

/// Where the state lives: a segment shared by processes, or (for tests and
/// oracles) process memory behind a plain mutex, recording whom it would ring.
pub(super) enum Backing {
    Segment(Arc<Segment>),
    Heap {
        words: Box<[AtomicU64]>,
        lock: Mutex<()>,
        rung: Mutex<Vec<u32>>,
        next_owner: AtomicU32,
    },
}

impl SharedSemaphore {
    pub(super) fn region(&self) -> Region<'_> {
        match &self.backing {
            Backing::Segment(s) => s.region(),
            Backing::Heap { words, .. } => Region::from_words(words),
        }
    }

    /// Runs `op` under the lock, then rings the owners it woke.
    pub(super) fn locked<T>(
        &self,
        op: impl FnOnce(&Engine<'_>, &mut Waits<'_>, &mut Vec<u32>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.locked_then(op, |_, _| {})
    }

    /// [`locked`](Self::locked), then `after` under the same segment lock if
    /// `op` succeeded.
    pub(super) fn locked_then<T>(
        &self,
        op: impl FnOnce(&Engine<'_>, &mut Waits<'_>, &mut Vec<u32>) -> Result<T, Error>,
        after: impl FnOnce(&Segment, &mut Guard<'_>),
    ) -> Result<T, Error> {
        self.locked_with(true, op, after)
    }

    /// The one locked path; with `poison`, damage found makes every later
    /// call of this process refuse at once.
    pub(super) fn locked_with<T>(
        &self,
        poison: bool,
        op: impl FnOnce(&Engine<'_>, &mut Waits<'_>, &mut Vec<u32>) -> Result<T, Error>,
        after: impl FnOnce(&Segment, &mut Guard<'_>),
    ) -> Result<T, Error> {
        if self.poisoned.load(Relaxed) {
            return Err(records::damaged(
                "an earlier operation in this process found the segment damaged",
            ));
        }
        let mut woken = Vec::new();
        let run = |woken: &mut Vec<u32>| {
            let engine = self.engine()?;
            let mut waits = Waits {
                map: &self.waits,
                guard: None,
            };
            op(&engine, &mut waits, woken)
        };
        let result = match &self.backing {
            Backing::Segment(segment) => {
                let mut guard = segment.lock()?;
                let result = run(&mut woken);
                woken.drain(..).for_each(|o| guard.wake(o));
                if result.is_ok() {
                    after(segment, &mut guard);
                }
                result
            }
            Backing::Heap { lock, rung, .. } => {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let result = run(&mut woken);
                rung.lock().unwrap_or_else(|p| p.into_inner()).append(&mut woken);
                result
            }
        };
        if let (Err(Error::Damaged(_)), true) = (&result, poison) {
            self.poisoned.store(true, Relaxed);
        }
        result
    }

    /// The engine over this semaphore's region, whose bounds must be those
    /// it was opened with (a damaged state block could name others).
    pub(super) fn engine(&self) -> Result<Engine<'_>, Error> {
        let engine = Engine::over(self.region())?;
        if (engine.owners, engine.waiters) != self.bounds {
            return Err(records::damaged("the state block's bounds changed"));
        }
        Ok(engine)
    }

    pub(super) fn check_owner(&self, owner: u32) -> Result<(), Error> {
        let owners = self.bounds.0;
        if owner >= owners {
            return Err(invalid(format!(
                "owner {owner} out of range: the semaphore has {owners} owner slots"
            )));
        }
        // An owner of another process would act on that process's permits.
        if let Backing::Segment(s) = &self.backing {
            if s.owner_proc(owner) != Some(s.proc_slot()) {
                return Err(invalid(format!("owner {owner} is not attached in this process")));
            }
        }
        Ok(())
    }
}

/// The wait map, locked on first use (most calls never touch it).
pub(super) struct Waits<'a> {
    map: &'a Mutex<HashMap<(u32, u64), u32>>,
    guard: Option<MutexGuard<'a, HashMap<(u32, u64), u32>>>,
}

impl Waits<'_> {
    fn map(&mut self) -> &mut HashMap<(u32, u64), u32> {
        let map = self.map;
        self.guard
            .get_or_insert_with(|| map.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The entry of `(owner, token)` if it is still that wait.
    pub(super) fn find(&mut self, e: &Engine<'_>, owner: u32, token: u64) -> Result<Option<u32>, Error> {
        let Some(&i) = self.map().get(&(owner, token)) else {
            return Ok(None);
        };
        if e.is_wait(i, owner, token)? {
            Ok(Some(i))
        } else {
            // Withdrawn by a close in another process, or collected.
            self.map().remove(&(owner, token));
            Ok(None)
        }
    }

    pub(super) fn insert(&mut self, owner: u32, token: u64, i: u32) {
        self.map().insert((owner, token), i);
    }

    pub(super) fn forget(&mut self, owner: u32, token: u64) {
        self.map().remove(&(owner, token));
    }

    pub(super) fn forget_owner(&mut self, owner: u32) {
        self.map().retain(|&(o, _), _| o != owner);
    }
}
