//! Exponential backoff for CAS loops: spin a little, then yield.
//!
//! The algorithm is crossbeam-utils' `Backoff` (same limits: spin up to 2^6
//! times, then yield, counting to 10).
//!
//! # Implementation
//!
//! After a failed CAS, retrying at once mostly fails again (the line is still
//! moving between cores); spinning 2^step times first lets the winner finish.
//! Past a few steps, spinning wastes the core that the winner may need (on
//! this project's 2-core machines, always), so `snooze` yields instead.

use crate::sync::{spin_loop, yield_now};

const SPIN_LIMIT: u32 = 6;
const YIELD_LIMIT: u32 = 10;

pub(crate) struct Backoff {
    /// Calls so far, capped: `spin` stops counting past `SPIN_LIMIT` and
    /// `snooze` past `YIELD_LIMIT`. Spins run 2^step times.
    step: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { step: 0 }
    }

    /// After losing a race: the other party is making progress, spin briefly.
    #[inline]
    pub(crate) fn spin(&mut self) {
        for _ in 0..1u32 << self.step.min(SPIN_LIMIT) {
            spin_loop();
        }
        if self.step <= SPIN_LIMIT {
            self.step += 1;
        }
    }

    /// While waiting for another thread to finish a step (a slot half written):
    /// spin at first, then yield the core to it.
    #[inline]
    pub(crate) fn snooze(&mut self) {
        if self.step <= SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                spin_loop();
            }
        } else {
            yield_now();
        }
        if self.step <= YIELD_LIMIT {
            self.step += 1;
        }
    }
}
