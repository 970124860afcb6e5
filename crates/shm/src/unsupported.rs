//! The stub every target but Linux builds: the same API, and `open` returns
//! [`Error::Unsupported`]. No value of [`Segment`] or [`Guard`] can exist, so
//! every other method is unreachable by construction.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{BellFd, Error, Layout, Region};

/// A segment; never constructed on this platform.
#[derive(Debug)]
pub struct Segment {
    never: Infallible,
}

/// The segment lock; never constructed on this platform.
#[derive(Debug)]
pub struct Guard<'a> {
    never: Infallible,
    _segment: std::marker::PhantomData<&'a Segment>,
}

impl Segment {
    /// Always [`Error::Unsupported`] on this platform.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`].
    pub fn open<L: Layout>(dir: Option<&Path>, name: &str, layout: &L) -> Result<Arc<Segment>, Error> {
        let _ = (dir, name, layout);
        Err(Error::Unsupported)
    }

    /// Always [`Error::Unsupported`] on this platform.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`].
    pub fn unlink<L: Layout>(dir: Option<&Path>, name: &str) -> Result<bool, Error> {
        let _ = (dir, name);
        Err(Error::Unsupported)
    }

    /// See the Linux version.
    pub fn name(&self) -> &str {
        match self.never {}
    }

    /// See the Linux version.
    pub fn region(&self) -> Region<'_> {
        match self.never {}
    }

    /// See the Linux version.
    ///
    /// # Errors
    ///
    /// Never returns.
    pub fn lock(&self) -> Result<Guard<'_>, Error> {
        match self.never {}
    }

    /// See the Linux version.
    ///
    /// # Errors
    ///
    /// Never returns.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Guard<'_>, Error> {
        let _ = timeout;
        match self.never {}
    }

    /// See the Linux version.
    pub fn is_closed(&self) -> bool {
        match self.never {}
    }

    /// See the Linux version.
    pub fn is_unlinked(&self) -> bool {
        match self.never {}
    }

    /// See the Linux version.
    pub fn dir(&self) -> &Path {
        match self.never {}
    }

    /// See the Linux version.
    pub fn initialised(&self) -> bool {
        match self.never {}
    }

    /// See the Linux version.
    pub fn proc_slot(&self) -> u32 {
        match self.never {}
    }

    /// See the Linux version.
    pub fn generation(&self) -> u64 {
        match self.never {}
    }

    /// See the Linux version.
    ///
    /// # Errors
    ///
    /// Never returns.
    pub fn attach_owner(&self) -> Result<(u32, BellFd), Error> {
        match self.never {}
    }

    /// See the Linux version.
    pub fn detach_owner(&self, guard: &mut Guard<'_>, owner: u32) {
        let _ = (guard, owner);
        match self.never {}
    }

    /// See the Linux version.
    pub fn ring(&self, owner: u32) {
        let _ = owner;
        match self.never {}
    }

    /// See the Linux version.
    pub fn owner_proc(&self, owner: u32) -> Option<u32> {
        let _ = owner;
        match self.never {}
    }

    /// See the Linux version.
    pub fn owners_of(&self, proc: u32) -> Vec<u32> {
        let _ = proc;
        match self.never {}
    }

    /// See the Linux version.
    pub fn dead_procs(&self) -> Vec<u32> {
        match self.never {}
    }

    /// See the Linux version.
    pub fn live_procs(&self) -> Vec<(u32, u64)> {
        match self.never {}
    }

    /// See the Linux version.
    pub fn proc_generation(&self, proc: u32) -> Option<u64> {
        let _ = proc;
        match self.never {}
    }

    /// See the Linux version.
    pub fn sweep_due(&self) -> bool {
        match self.never {}
    }

    /// See the Linux version.
    pub fn reap_proc(&self, guard: &mut Guard<'_>, proc: u32) {
        let _ = (guard, proc);
        match self.never {}
    }

    /// See the Linux version.
    ///
    /// # Errors
    ///
    /// Never returns.
    pub fn sweep(&self) -> Result<usize, Error> {
        match self.never {}
    }
}

impl Guard<'_> {
    /// See the Linux version.
    pub fn recovered(&self) -> bool {
        match self.never {}
    }

    /// See the Linux version.
    pub fn segment(&self) -> &Segment {
        match self.never {}
    }

    /// See the Linux version.
    pub fn region(&self) -> Region<'_> {
        match self.never {}
    }

    /// See the Linux version.
    pub fn wake(&mut self, owner: u32) {
        let _ = owner;
        match self.never {}
    }
}
