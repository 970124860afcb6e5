//! Turning "these owners were granted" into what JS must do about it.
//!
//! A call that grants waits returns *settle entries*: a positive number is the
//! token of a wait of the calling thread, granted and already collected (its
//! permits now count as held); a negative number `-(slot + 1)` is the doorbell
//! slot of another thread to ring. Collecting the caller's own grants in the
//! same call saves a second crossing in the common single-thread case.

use sluice_core::{Owner, Semaphore};

use crate::attachment::Held;

/// Appends the settle entries for `woken` (owners granted by an operation on
/// `semaphore`) to `out`, collecting the grants of `own` into `held`.
///
/// An eventually fair semaphore may have nudged `own` instead of granting it
/// (see `Semaphore::serve`): nobody rings this thread for that, so it serves
/// at once, as its doorbell would, and rings whoever that grants.
pub(crate) fn wake_list(semaphore: &Semaphore, own: Owner, held: &Held, woken: Vec<Owner>, out: &mut Vec<f64>) {
    for owner in woken {
        if owner == own {
            for other in semaphore.serve() {
                if other != own && !out.contains(&-(f64::from(other) + 1.0)) {
                    out.push(-(f64::from(other) + 1.0));
                }
            }
            collect(semaphore, own, held, out);
        } else {
            out.push(-(f64::from(owner) + 1.0));
        }
    }
}

/// Collects `own`'s grants from `semaphore` into `held`, appending their tokens.
pub(crate) fn collect(semaphore: &Semaphore, own: Owner, held: &Held, out: &mut Vec<f64>) {
    semaphore.drain_granted(own, |grant| {
        held.add(grant.permits);
        out.push(grant.token as f64);
    });
}

/// Ring entries only (for `close`, which grants nothing): every owner's slot.
pub(crate) fn rings(woken: Vec<Owner>) -> Vec<f64> {
    woken.into_iter().map(|owner| -(f64::from(owner) + 1.0)).collect()
}
