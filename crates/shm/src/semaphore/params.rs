//! [`Params`]: the semaphore as the segment sees it ([`Layout`]): its
//! creation parameters, its region, and the hooks the segment calls under
//! its lock (recovery, reaping a dead process, unlink).

use super::records::{self, Engine};
use super::Fairness;
use crate::{Error, Guard, Layout, Region};

/// The creation parameters, as the segment stores and compares them.
pub(super) struct Params {
    pub(super) permits: u64,
    pub(super) max_waiters: u32,
    /// Stored as the third parameter (`fairness_param`): 0 FIFO, 1
    /// eventual, 2 eventual counted from the head. A segment made before the
    /// option existed has 0 there, but also 64-byte entries, so it is
    /// refused by its layout version before the parameters compare. One
    /// made before 2 existed has 0 or 1 there and never the
    /// `EVENTUAL_HEAD` flag; a sluice from then refuses a segment with 2 as
    /// a mismatch of this parameter, before it reads the flags.
    pub(super) fairness: Fairness,
}

/// The stored `fairness` parameter.
fn fairness_param(fairness: Fairness) -> u64 {
    match fairness {
        Fairness::Fifo => 0,
        Fairness::Eventual => 1,
        Fairness::EventualHead => 2,
    }
}

impl Layout for Params {
    const KIND: u32 = 1;

    fn param_names() -> [&'static str; 8] {
        ["permits", "max_waiters", "fairness", "", "", "", "", ""]
    }

    fn params(&self) -> [u64; 8] {
        [
            self.permits,
            u64::from(self.max_waiters),
            fairness_param(self.fairness),
            0,
            0,
            0,
            0,
            0,
        ]
    }

    fn mutable_size(&self) -> usize {
        records::region_size(self.max_owners(), self.max_waiters)
    }

    unsafe fn init(&self, region: Region<'_>) {
        // Cannot fail: the segment gives `mutable_size` bytes.
        let done = Engine::init(region, self.max_owners(), self.max_waiters, self.permits, self.fairness);
        debug_assert!(done.is_ok(), "{done:?}");
    }

    fn validate(&self, region: Region<'_>) -> Result<(), Error> {
        let engine = Engine::over(region)?;
        if engine.owners != self.max_owners() || engine.waiters != self.max_waiters {
            return Err(records::damaged("the state block's bounds differ from the header's"));
        }
        if engine.fairness()? != self.fairness {
            return Err(records::damaged("the state block's fairness differs from the header's"));
        }
        engine.check()
    }

    fn recover(guard: &mut Guard<'_>) {
        let mut woken = Vec::new();
        // A failure leaves the damage for the next operation to report.
        let _ = Engine::over(guard.region()).and_then(|e| e.rebuild(&mut woken));
        woken.into_iter().for_each(|o| guard.wake(o));
    }

    fn reap(guard: &mut Guard<'_>, _proc: u32, owners: &[u32]) {
        let mut woken = Vec::new();
        let _ = Engine::over(guard.region()).and_then(|e| e.reap(owners, &mut woken));
        woken.into_iter().for_each(|o| guard.wake(o));
    }

    fn on_unlink(guard: &mut Guard<'_>) {
        let mut woken = Vec::new();
        let _ = Engine::over(guard.region()).and_then(|e| e.close(&mut woken));
        woken.into_iter().for_each(|o| guard.wake(o));
    }
}
