//! [`SharedWords`]: a raw block of words in a named segment, moved only by
//! the atomic instructions of whoever maps it (today: the circuit breaker's
//! TypeScript state machine, through `Atomics`, over an external
//! `ArrayBuffer`).
//!
//! The crate does not interpret the words: their meaning, and the recovery
//! from any value a damaged or hostile writer leaves in them, belong to the
//! one algorithm that moves them. What the segment adds is what every
//! process must agree on before touching them:
//!
//! - the block's size and seven opaque parameters, in the checksummed header
//!   and compared at every open ([`Error::Mismatch`] names the first that
//!   differs), so two processes never run the algorithm with different
//!   settings over the same words;
//! - the **origin**: `CLOCK_MONOTONIC` when the segment was (re)initialised,
//!   written once by the creator, so every process measures deadlines from
//!   the same zero on the machine's one monotonic timeline (`Date.now()`
//!   could step, and `performance.timeOrigin` differs per process).
//!
//! ```text
//! region: 0 origin_ns u64 (immutable after init) | 8..64 reserved
//!         64 the block: `bytes` bytes, 8-byte aligned, zeroed at init
//! ```
//!
//! No lock is ever taken after open: every update is one atomic instruction
//! on the block, so a process killed anywhere leaves only states the
//! algorithm already handles.
//!
//! **Process lanes.** A gauge that a killed process would leave inflated
//! (`metrics()`'s waits queued now, ts/metrics.ts) is kept per process: a
//! lane of two u32 words `[tag, value]` per process slot of this segment.
//! [`SharedWords::claim_lane`] zeroes a lane whose tag is not the slot's
//! current generation (low 32 bits; bumped whenever the slot is taken or
//! freed), so a process never inherits a dead one's value; a reader sums
//! only the lanes of [`SharedWords::live_procs`] whose tag matches, so a
//! process killed with SIGKILL stops counting the moment the kernel drops
//! its OFD lock. Where the lanes lie in the block is the caller's choice.

use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

use crate::token_bucket::MonotonicNanos;
use crate::{Error, Layout, Region, Segment};
use sluice_core::Clock;

/// Where the block starts in the region: after the origin, on its own cache line.
const BLOCK: usize = 64;
/// The largest block (a breaker with 1,000 buckets needs 12 KiB).
pub const MAX_BYTES: u64 = 1 << 20;
/// Opaque parameters each opener must give equal.
pub const PARAMS: usize = 7;

/// The creation parameters, as the segment stores and compares them.
struct Params {
    bytes: u64,
    params: [u64; PARAMS],
}

impl Layout for Params {
    const KIND: u32 = 5;

    fn param_names() -> [&'static str; 8] {
        ["bytes", "p1", "p2", "p3", "p4", "p5", "p6", "p7"]
    }

    fn params(&self) -> [u64; 8] {
        let p = self.params;
        [self.bytes, p[0], p[1], p[2], p[3], p[4], p[5], p[6]]
    }

    /// Every process that touches the words is attached; none needs an owner
    /// slot (there is nothing to give back when a thread goes).
    fn max_procs(&self) -> u32 {
        256
    }

    fn max_owners(&self) -> u32 {
        1
    }

    fn mutable_size(&self) -> usize {
        BLOCK + self.bytes as usize
    }

    unsafe fn init(&self, region: Region<'_>) {
        // Zeroed words are the algorithm's start; only the origin is written.
        // A zero origin is reserved for "damaged": a machine up for under a
        // nanosecond is not one we run on, but keep it non-zero regardless.
        let origin = MonotonicNanos.now().max(1);
        if let Some(word) = region.u64_at(0) {
            word.store(origin, Relaxed);
        }
    }

    fn validate(&self, region: Region<'_>) -> Result<(), Error> {
        check_bytes(self.bytes).map_err(Error::Damaged)?;
        if region.sub(BLOCK, self.bytes as usize).is_none() {
            return Err(Error::Damaged(format!(
                "region of {} bytes cannot hold a block of {}",
                region.len(),
                self.bytes
            )));
        }
        let origin = region
            .u64_at(0)
            .ok_or_else(|| Error::Damaged("no origin word".into()))?
            .load(Relaxed);
        if origin == 0 || origin > MonotonicNanos.now() {
            return Err(Error::Damaged(format!(
                "origin {origin} ns is not a past CLOCK_MONOTONIC reading"
            )));
        }
        Ok(())
    }
}

/// The block sizes a segment accepts: whole 8-byte words, 8 B to 1 MiB.
fn check_bytes(bytes: u64) -> Result<(), String> {
    if bytes == 0 || bytes > MAX_BYTES || !bytes.is_multiple_of(8) {
        return Err(format!(
            "a block is 8 to {MAX_BYTES} bytes in whole 8-byte words, got {bytes}"
        ));
    }
    Ok(())
}

/// A block of words shared by every process that opens the same name.
///
/// # Memory ordering
///
/// The crate only hands out the block's address; the accesses are the
/// caller's atomics, which are sequentially consistent in JavaScript
/// (`Atomics.*`). The origin is written before the lifetime lock is
/// downgraded and read after another process's lock is granted (the `fcntl`
/// calls order it, as for the header), and never changes afterwards.
pub struct SharedWords {
    segment: Arc<Segment>,
    block: NonNull<u8>,
    bytes: usize,
    origin_ns: u64,
}

// SAFETY: `block` points into the mapping that `segment` keeps alive, and the
// bytes there are only ever accessed atomically.
unsafe impl Send for SharedWords {}
// SAFETY: as above.
unsafe impl Sync for SharedWords {}

impl std::fmt::Debug for SharedWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWords")
            .field("bytes", &self.bytes)
            .field("origin_ns", &self.origin_ns)
            .finish_non_exhaustive()
    }
}

impl SharedWords {
    /// Opens (or creates, zeroed) the block `name` in `dir` (default:
    /// `$SLUICE_SHM_DIR`, else `/dev/shm/sluice-<euid>`): `bytes` bytes, and
    /// `params` that every opener must give equal.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a size that is not 8 to 1 MiB bytes in whole
    /// words; [`Error::Mismatch`] naming `bytes` or `p1`..`p7` when the
    /// existing block has another; [`Error::Damaged`] for a bad origin; any
    /// error of [`Segment::open`].
    pub fn open(dir: Option<&Path>, name: &str, bytes: u64, params: [u64; PARAMS]) -> Result<Arc<Self>, Error> {
        // Checked before touching the file: a bad size creates nothing.
        check_bytes(bytes).map_err(Error::Invalid)?;
        let segment = Segment::open(dir, name, &Params { bytes, params })?;
        let region = segment.region();
        let block = region
            .sub(BLOCK, bytes as usize)
            .ok_or_else(|| Error::Damaged("region too small for the block".into()))?;
        let origin_ns = region
            .u64_at(0)
            .ok_or_else(|| Error::Damaged("no origin word".into()))?
            .load(Relaxed);
        let block = block.base();
        Ok(Arc::new(SharedWords {
            segment,
            block,
            bytes: bytes as usize,
            origin_ns,
        }))
    }

    /// Removes the name: the next `open` creates a new block. `Ok(false)` if
    /// there was none.
    ///
    /// # Errors
    ///
    /// As [`Segment::unlink`]; [`Error::Mismatch`] on `kind` if the name is
    /// another primitive.
    pub fn unlink(dir: Option<&Path>, name: &str) -> Result<bool, Error> {
        Segment::unlink::<Params>(dir, name)
    }

    /// The block's first byte: 8-byte aligned, `len()` bytes, mapped while
    /// `self` (or a clone of its `Arc`) lives. Access it only atomically.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.block
    }

    /// The block's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Never: a block has at least one word.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The block as a bounds-checked [`Region`], for Rust callers and tests.
    pub fn region(&self) -> Region<'_> {
        // SAFETY: `block..block + bytes` lies inside the mapping, which
        // `self.segment` keeps alive for the borrow of `self`.
        unsafe { Region::from_raw(self.block, self.bytes) }
    }

    /// When the block was created, on `CLOCK_MONOTONIC` in nanoseconds: the
    /// zero every process measures the algorithm's deadlines from.
    pub fn origin_nanos(&self) -> u64 {
        self.origin_ns
    }

    /// `true` if this process created (or re-initialised) the block: every
    /// opener in the process shares the one mapping, hence the answer.
    pub fn created(&self) -> bool {
        self.segment.initialised()
    }

    /// Whether the name was unlinked (a new `open` makes a new block).
    pub fn is_closed(&self) -> bool {
        self.segment.is_closed()
    }

    /// This process's slot in the segment: the index of its lane.
    pub fn proc_slot(&self) -> u32 {
        self.segment.proc_slot()
    }

    /// The process slots alive now with their generations (see the module's
    /// process lanes): a lane counts if its tag is its slot's generation.
    pub fn live_procs(&self) -> Vec<(u32, u64)> {
        self.segment.live_procs()
    }

    /// Makes the lane at byte `offset` of the block (`[tag u32, value u32]`)
    /// this process's: unless its tag is already this slot's generation, the
    /// value is zeroed and the tag set. Serialised within the process (a
    /// second thread must not zero what the first has counted since); other
    /// processes have other slots, hence other lanes.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for an offset that is not 8-aligned inside the block.
    pub fn claim_lane(&self, offset: usize) -> Result<(), Error> {
        static CLAIMS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let region = self.region();
        let value = offset.checked_add(4).and_then(|at| region.u32_at(at));
        let (Some(tag), Some(value)) = (region.u32_at(offset), value) else {
            return Err(Error::Invalid(format!(
                "lane offset {offset} is outside a block of {} bytes",
                self.bytes
            )));
        };
        if !offset.is_multiple_of(8) {
            return Err(Error::Invalid(format!("lane offset {offset} is not 8-aligned")));
        }
        let generation = self
            .segment
            .proc_generation(self.proc_slot())
            .ok_or_else(|| Error::Invalid("no process slot".into()))? as u32;
        let _claims = CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
        if tag.load(SeqCst) != generation {
            // Value first: a reader that sees the new tag sees the zero.
            value.store(0, SeqCst);
            tag.store(generation, SeqCst);
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn private_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-words-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn smoke() {
        let dir = private_dir("smoke");
        let a = SharedWords::open(Some(&dir), "w", 64, [1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert!(a.created());
        assert_eq!(a.len(), 64);
        assert_eq!(a.region().u64_at(56).unwrap().load(SeqCst), 0, "zeroed at creation");
        a.region().u64_at(8).unwrap().fetch_add(3, SeqCst);
        // A second opener in the process shares the mapping, hence the words.
        let b = SharedWords::open(Some(&dir), "w", 64, [1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert!(b.created(), "one mapping per process: the creator's");
        assert_eq!(b.as_ptr(), a.as_ptr());
        assert_eq!(b.region().u64_at(8).unwrap().load(SeqCst), 3);
        assert!(a.origin_nanos() <= MonotonicNanos.now());
        assert_eq!(a.origin_nanos(), b.origin_nanos());
        drop((a, b));
        assert!(SharedWords::unlink(Some(&dir), "w").unwrap());
        assert!(!SharedWords::unlink(Some(&dir), "w").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lane_is_zeroed_once_per_process_slot_generation() {
        let dir = private_dir("lanes");
        let a = SharedWords::open(Some(&dir), "w.m", 64, [0; PARAMS]).unwrap();
        let lane = 8 * a.proc_slot() as usize;
        a.region().u32_at(lane).unwrap().store(12345, SeqCst);
        a.region().u32_at(lane + 4).unwrap().store(7, SeqCst);
        a.claim_lane(lane).unwrap();
        assert_eq!(
            a.region().u32_at(lane + 4).unwrap().load(SeqCst),
            0,
            "a stale value is dropped"
        );
        a.region().u32_at(lane + 4).unwrap().fetch_add(2, SeqCst);
        a.claim_lane(lane).unwrap();
        assert_eq!(
            a.region().u32_at(lane + 4).unwrap().load(SeqCst),
            2,
            "a second claim keeps the count"
        );
        let live = a.live_procs();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, a.proc_slot());
        assert_eq!(live[0].1 as u32, a.region().u32_at(lane).unwrap().load(SeqCst));
        for bad in [4, 60, 64, usize::MAX - 3] {
            assert!(matches!(a.claim_lane(bad), Err(Error::Invalid(_))), "{bad}");
        }
        drop(a);
        SharedWords::unlink(Some(&dir), "w.m").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_size_or_parameter_is_a_mismatch_naming_it() {
        let dir = private_dir("mismatch");
        let _a = SharedWords::open(Some(&dir), "w", 64, [1, 2, 3, 4, 5, 6, 7]).unwrap();
        match SharedWords::open(Some(&dir), "w", 128, [1, 2, 3, 4, 5, 6, 7]) {
            Err(Error::Mismatch {
                field: "bytes",
                existing: 64,
                requested: 128,
            }) => {}
            other => panic!("{other:?}"),
        }
        match SharedWords::open(Some(&dir), "w", 64, [1, 2, 3, 9, 5, 6, 7]) {
            Err(Error::Mismatch {
                field: "p4",
                existing: 4,
                requested: 9,
            }) => {}
            other => panic!("{other:?}"),
        }
        drop(_a);
        SharedWords::unlink(Some(&dir), "w").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_that_are_not_whole_words_are_refused_before_creating_anything() {
        let dir = private_dir("sizes");
        for bytes in [0, 4, 12, MAX_BYTES + 8] {
            assert!(
                matches!(
                    SharedWords::open(Some(&dir), "w", bytes, [0; PARAMS]),
                    Err(Error::Invalid(_))
                ),
                "{bytes}"
            );
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validate_refuses_a_bad_origin_or_a_short_region() {
        let words: Vec<std::sync::atomic::AtomicU64> = (0..16).map(|_| Default::default()).collect();
        let region = Region::from_words(&words);
        let params = Params {
            bytes: 64,
            params: [0; PARAMS],
        };
        // SAFETY: a zeroed, process-local region nobody else sees.
        unsafe { params.init(region) };
        params.validate(region).unwrap();
        words[0].store(0, SeqCst);
        assert!(matches!(params.validate(region), Err(Error::Damaged(_))));
        words[0].store(u64::MAX, SeqCst);
        assert!(matches!(params.validate(region), Err(Error::Damaged(why)) if why.contains("origin")));
        words[0].store(1, SeqCst);
        let bigger = Params {
            bytes: 72,
            params: [0; PARAMS],
        };
        assert!(matches!(bigger.validate(region), Err(Error::Damaged(why)) if why.contains("cannot hold")));
    }
}
