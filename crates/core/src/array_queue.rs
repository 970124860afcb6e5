//! A bounded, lock-free, multi-producer multi-consumer queue.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>)
//! in the form crossbeam-queue's `ArrayQueue` gives it: `head` and `tail`
//! carry a lap count above the slot index, so a full queue and an empty one
//! are told apart without a spare slot and any capacity works, not only powers
//! of two.
//!
//! # Implementation
//!
//! Every slot has a `stamp`. With `one_lap` the smallest power of two above the
//! capacity, a position is `lap * one_lap + index`, and a slot at `index`:
//!
//! - is free for the push at position `p` when its stamp equals `p`;
//! - holds the value for the pop at position `p` when its stamp equals `p + 1`.
//!
//! A producer claims position `tail` by CAS-ing `tail` forward, writes the
//! value, then publishes it by storing `stamp = tail + 1`. A consumer claims
//! position `head` the same way, reads the value, then frees the slot for the
//! next lap by storing `stamp = head + one_lap`. Between the CAS and the stamp
//! store, the claiming thread owns the slot's value exclusively: no one else
//! can claim the same position, and the slot's stamp tells everyone else that
//! its turn has not come.
//!
//! `Relaxed` loads of `head` and `tail` only pick the position to try: the
//! slot's `Acquire` stamp and the claiming CAS decide. `len`, `is_empty` and
//! `is_full` use `SeqCst` loads so that, taken alone, they see a head and a
//! tail from one moment of the claims' total order.
//!
//! `push` and `pop` are split in two: an `#[inline]` first attempt (one
//! claim, taken when the slot is ready and the CAS succeeds, as it is
//! whenever no other thread is at the same end) and a `#[cold]` out-of-line
//! loop for everything else (full, empty, a lost race, a slot mid-way
//! through another thread's step), which starts over from a fresh position.
//! Inlined whole, the loop with its backoff was too large for the compiler to
//! inline `pop` into its caller: the call then pushed a return address and
//! five saved registers, stores that the next locked instruction (the claim's
//! CAS) has to wait for: 10.4-10.9 ns a push+pop before, 9.6-9.9 after.
//!
//! # Runs
//!
//! `push_many` and `pop_many` claim a run of consecutive positions with one
//! CAS: they first check each slot's stamp (free, or published) from the
//! tail (or head) up to the end of the buffer, then CAS the counter past the
//! run. The CAS is what makes the run theirs: claims only move the counters
//! forward, so any other claim of a position in the run would have changed
//! the counter. A run never crosses the buffer's end, where positions jump
//! to the next lap. `pop_many` reads its whole run out (onto the stack, at
//! most `RUN_MAX` values) and frees the slots before handing any value on,
//! so its callback may use the queue. `pop_run` returns such a run instead,
//! for a caller that must count what it took before any callback runs.

use std::fmt;
use std::mem::MaybeUninit;

use crate::backoff::Backoff;
use crate::cache_padded::CachePadded;
use crate::sync::{fence, AtomicUsize, Ordering, UnsafeCell};

struct Slot<T> {
    /// The position this slot is ready for: `p` when free for the push at
    /// position `p`, `p + 1` when holding the value for the pop at `p` (see
    /// the module docs).
    stamp: AtomicUsize,
    /// Initialised exactly while `stamp` says the slot holds a value.
    value: UnsafeCell<MaybeUninit<T>>,
}

/// [`ArrayQueue::try_new`] could not allocate the slots of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocError {
    /// The capacity asked for.
    pub capacity: usize,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot allocate a queue of {} slots", self.capacity)
    }
}

impl std::error::Error for AllocError {}

/// A bounded MPMC queue. `push` hands the value back when the queue is full;
/// `pop` returns `None` when it is empty. Neither ever blocks.
///
/// # Examples
///
/// ```
/// use sluice_core::ArrayQueue;
///
/// let queue = ArrayQueue::new(2);
/// assert_eq!(queue.push('a'), Ok(()));
/// assert_eq!(queue.push('b'), Ok(()));
/// assert_eq!(queue.push('c'), Err('c'));
/// assert!(queue.is_full());
/// assert_eq!(queue.pop(), Some('a'));
/// assert_eq!(queue.len(), 1);
/// ```
///
/// # Memory ordering
///
/// A value pushed by one thread is fully visible to the thread that pops it:
/// the producer's `Release` store of the slot's stamp pairs with the consumer's
/// `Acquire` load of it. Likewise the consumer's `Release` store that frees the
/// slot pairs with the next producer's `Acquire` load, so a read of the old
/// value never overlaps the write of the new one.
pub struct ArrayQueue<T> {
    /// The position of the next pop: slot index below `one_lap`, lap above.
    head: CachePadded<AtomicUsize>,
    /// The position of the next push, in the same encoding.
    tail: CachePadded<AtomicUsize>,
    buffer: Box<[Slot<T>]>,
    capacity: usize,
    /// The smallest power of two above `capacity`: adding it to a position
    /// moves to the same index one lap later.
    one_lap: usize,
}

// SAFETY: values move between threads through the queue, hence `T: Send`; the
// stamp protocol gives at most one thread access to a slot's value at a time,
// so sharing `&ArrayQueue<T>` never shares a `&T`, and `T: Sync` is not needed.
unsafe impl<T: Send> Send for ArrayQueue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for ArrayQueue<T> {}

/// See [`ArrayQueue::RUN_MAX`].
const RUN_MAX: usize = 32;

impl<T> ArrayQueue<T> {
    /// Most values one [`pop_many`](Self::pop_many) takes: its run is read
    /// out onto the stack before any is handed on. One claim per 32 values
    /// already leaves the claim a small part of a value's cost.
    pub const RUN_MAX: usize = RUN_MAX;

    /// Creates a queue that holds at most `capacity` values.
    ///
    /// # Panics
    ///
    /// If `capacity` is zero, or so large that positions would overflow, or
    /// its slots cannot be allocated (see [`ArrayQueue::try_new`]).
    pub fn new(capacity: usize) -> Self {
        Self::try_new(capacity).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Creates a queue that holds at most `capacity` values, reporting a
    /// failed allocation of its slots instead of aborting the process, as
    /// `Vec::try_reserve` does: the slots are allocated up front, so a caller
    /// that takes the capacity from its user can refuse what does not fit.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice_core::ArrayQueue;
    ///
    /// assert_eq!(ArrayQueue::<u64>::try_new(4).map(|q| q.capacity()), Ok(4));
    /// // More bytes than an allocation may have: refused, not an abort.
    /// assert!(ArrayQueue::<u64>::try_new(usize::MAX / 16).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`AllocError`] if the slots cannot be allocated.
    ///
    /// # Panics
    ///
    /// If `capacity` is zero, or so large that positions would overflow.
    pub fn try_new(capacity: usize) -> Result<Self, AllocError> {
        assert!(capacity > 0, "capacity must be non-zero");
        let one_lap = (capacity + 1).next_power_of_two();
        assert!(one_lap <= usize::MAX / 4, "capacity is too large");
        let mut buffer = Vec::new();
        buffer
            .try_reserve_exact(capacity)
            .map_err(|_| AllocError { capacity })?;
        buffer.extend((0..capacity).map(|index| Slot {
            stamp: AtomicUsize::new(index),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }));
        let buffer = buffer.into_boxed_slice();
        Ok(Self {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            buffer,
            capacity,
            one_lap,
        })
    }

    /// The most values the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot of `position`.
    #[inline]
    fn slot(&self, position: usize) -> &Slot<T> {
        let index = position & (self.one_lap - 1);
        debug_assert!(index < self.capacity);
        // SAFETY: positions are only ever made by `new` (index 0), `advance`
        // and `advance_by`, which wrap to index 0 on reaching `capacity`, and
        // by runs (`tail + i`, `head + i`), which stop before it: every index
        // is in bounds. Skipping the check is worth ~1 ns a call.
        unsafe { self.buffer.get_unchecked(index) }
    }

    /// The position after `position`: the next index, or index 0 of the next lap.
    #[inline]
    fn advance(&self, position: usize) -> usize {
        let index = position & (self.one_lap - 1);
        if index + 1 < self.capacity {
            position + 1
        } else {
            (position & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Appends `value`, or hands it back if the queue is full.
    ///
    /// # Errors
    ///
    /// `Err(value)` when the queue is full.
    #[inline]
    pub fn push(&self, value: T) -> Result<(), T> {
        // The common case, one claim that succeeds, inlined into the caller;
        // every other case (full, a lost race, a slot not yet freed) goes to
        // `push_slow`, which starts over with a fresh `tail`.
        let tail = self.tail.load(Ordering::Relaxed);
        let slot = self.slot(tail);
        let next = self.advance(tail);
        // Acquire, SeqCst: as in `push_slow`.
        if slot.stamp.load(Ordering::Acquire) == tail
            && self
                .tail
                .compare_exchange_weak(tail, next, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            // SAFETY: as in `push_slow`: the CAS made us the slot's only owner
            // until the stamp store, and the slot is empty.
            slot.value
                .with_mut(|cell| unsafe { cell.write(MaybeUninit::new(value)) });
            // Release: pairs with the Acquire load in `pop`.
            slot.stamp.store(tail + 1, Ordering::Release);
            return Ok(());
        }
        self.push_slow(value)
    }

    /// `push`'s loop: claims a position, or reports the queue full, waiting
    /// out other producers and consumers that are mid-way through a slot.
    #[cold]
    #[inline(never)]
    fn push_slow(&self, value: T) -> Result<(), T> {
        let mut backoff = Backoff::new();
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(tail);
            // Computed before the Acquire load below: after it the compiler
            // reads `one_lap` again (an Acquire load orders later reads of
            // plain fields too), one more load and a branch per call.
            let next = self.advance(tail);
            // Acquire: pairs with the Release store in `pop` that freed this
            // slot, so the old value was read before we overwrite it.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                // SeqCst: claims are totally ordered with the fences of the
                // full/empty checks below, so a check that finds this slot
                // taken sees a `tail` at least as new as this claim.
                match self
                    .tail
                    .compare_exchange_weak(tail, next, Ordering::SeqCst, Ordering::Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: the CAS made us the only owner of this slot
                        // until the stamp store below; the slot is empty (its
                        // previous value, if any, was read out by `pop`).
                        slot.value
                            .with_mut(|cell| unsafe { cell.write(MaybeUninit::new(value)) });
                        // Release: pairs with the Acquire load in `pop`, which
                        // then sees the value written above.
                        slot.stamp.store(tail + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => {
                        tail = current;
                        backoff.spin();
                    }
                }
            } else if stamp.wrapping_add(self.one_lap) == tail + 1 {
                // The slot still holds the value pushed one lap ago: full,
                // unless a pop has claimed it since. SeqCst fence: ordered
                // with the SeqCst claiming CAS on `head` in `pop`, so the load
                // below sees every claim that precedes this check.
                fence(Ordering::SeqCst);
                let head = self.head.load(Ordering::Relaxed);
                if head.wrapping_add(self.one_lap) == tail {
                    return Err(value);
                }
                backoff.spin();
                tail = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer claimed this position and has not finished,
                // or our `tail` is stale: wait for it to move on.
                backoff.snooze();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Removes the oldest value, or returns `None` if the queue is empty.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        // As in `push`: one claim inlined, everything else in `pop_slow`.
        let head = self.head.load(Ordering::Relaxed);
        let slot = self.slot(head);
        let next = self.advance(head);
        // Acquire, SeqCst: as in `pop_slow`.
        if slot.stamp.load(Ordering::Acquire) == head + 1
            && self
                .head
                .compare_exchange_weak(head, next, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            // SAFETY: as in `pop_slow`: the CAS made us the slot's only owner
            // until the stamp store, and the stamp said it holds a value.
            let value = slot.value.with_mut(|cell| unsafe { cell.read().assume_init() });
            // Release: pairs with the Acquire load in `push` of the next lap.
            slot.stamp.store(head.wrapping_add(self.one_lap), Ordering::Release);
            return Some(value);
        }
        self.pop_slow()
    }

    /// `pop`'s loop: claims a position, or reports the queue empty, waiting
    /// out producers and consumers that are mid-way through a slot.
    #[cold]
    #[inline(never)]
    fn pop_slow(&self) -> Option<T> {
        let mut backoff = Backoff::new();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Computed before the Acquire load below: after it the compiler
            // reads `one_lap` again (an Acquire load orders later reads of
            // plain fields too), one more load and a branch per call.
            let next = self.advance(head);
            // Acquire: pairs with the Release store in `push` that published
            // the value.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head + 1 {
                // SeqCst: as in `push`.
                match self
                    .head
                    .compare_exchange_weak(head, next, Ordering::SeqCst, Ordering::Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: the CAS made us the only owner of this slot
                        // until the stamp store below, and the stamp said a
                        // value was written into it; we read it out once.
                        let value = slot.value.with_mut(|cell| unsafe { cell.read().assume_init() });
                        // Release: pairs with the Acquire load in `push` of
                        // the next lap, which may then overwrite the slot.
                        slot.stamp.store(head.wrapping_add(self.one_lap), Ordering::Release);
                        return Some(value);
                    }
                    Err(current) => {
                        head = current;
                        backoff.spin();
                    }
                }
            } else if stamp == head {
                // Nothing written at this position yet: empty, unless a push
                // has claimed it since. SeqCst fence: ordered with the SeqCst
                // claiming CAS on `tail` in `push`, as the fence there is with
                // ours on `head`.
                fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::Relaxed);
                if tail == head {
                    return None;
                }
                backoff.spin();
                head = self.head.load(Ordering::Relaxed);
            } else {
                // A consumer of the previous lap has not freed the slot yet, or
                // our `head` is stale.
                backoff.snooze();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// The position `count` places after `position`, whose index plus `count`
    /// is at most `capacity`: reaching `capacity` wraps to index 0 of the next lap.
    #[inline]
    fn advance_by(&self, position: usize, count: usize) -> usize {
        let index = position & (self.one_lap - 1);
        debug_assert!(count > 0 && index + count <= self.capacity);
        if index + count < self.capacity {
            position + count
        } else {
            (position & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Claims a run of up to `max` positions from `counter` (`tail` or `head`)
    /// with one CAS: the slots in a row whose stamp is their position plus
    /// `ready` (0: free for a push, 1: published for a pop), up to the end of
    /// the buffer. Returns the run's first position and length, or `None`
    /// when the first slot is not ready or another thread claimed first.
    #[inline]
    fn claim_run(&self, counter: &AtomicUsize, max: usize, ready: usize) -> Option<(usize, usize)> {
        if max == 0 {
            return None;
        }
        let start = counter.load(Ordering::Relaxed);
        let index = start & (self.one_lap - 1);
        let most = max.min(self.capacity - index);
        // Acquire, each: pairs with the Release store that made the slot ready
        // (a pop freeing it, a push publishing it), so the old value was read
        // before a push overwrites it, and the new one written before a pop
        // reads it. A slot stays ready until its position is claimed, and any
        // claim of these positions moves `counter` past `start`, which fails
        // our CAS.
        let count = (0..most)
            .take_while(|&i| self.slot(start + i).stamp.load(Ordering::Acquire) == start + i + ready)
            .count();
        if count == 0 {
            return None;
        }
        let next = self.advance_by(start, count);
        // SeqCst: as in `push` and `pop`.
        counter
            .compare_exchange(start, next, Ordering::SeqCst, Ordering::Relaxed)
            .ok()
            .map(|_| (start, count))
    }

    /// Moves values from the front of `values` into the queue with one claim:
    /// as many as there are free slots in a row at the tail, up to the end of
    /// the buffer. Returns how many moved (they are gone from `values`); 0 when
    /// the tail's slot is not free (full, or a pop of the previous lap has not
    /// freed it yet) or another producer claimed first: fall back to [`push`](Self::push),
    /// which waits those out.
    ///
    /// One claim for a run of slots is what makes a batch cheap: `push` costs
    /// a `SeqCst` CAS per value, this one per run.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice_core::ArrayQueue;
    ///
    /// let queue = ArrayQueue::new(3);
    /// let mut values = vec!['a', 'b', 'c', 'd'].into_iter();
    /// assert_eq!(queue.push_many(&mut values), 3);
    /// assert_eq!(values.as_slice(), ['d']);
    /// let mut popped = Vec::new();
    /// assert_eq!(queue.pop_many(2, |value| popped.push(value)), 2);
    /// assert_eq!(popped, ['a', 'b']);
    /// ```
    pub fn push_many(&self, values: &mut std::vec::IntoIter<T>) -> usize {
        // `std::vec::IntoIter`, not any iterator: its `next` cannot panic, so
        // every slot this claims is filled and published.
        let wanted = values.len();
        // A slot is free for the push at `position` when its stamp is `position`.
        let Some((tail, count)) = self.claim_run(&self.tail, wanted, 0) else {
            return 0;
        };
        for i in 0..count {
            let slot = self.slot(tail + i);
            let Some(value) = values.next() else {
                unreachable!("`values` had {wanted} left, and {count} <= {wanted}")
            };
            // SAFETY: the CAS made us the only owner of the positions
            // `tail..tail + count` until their stamp stores, and each slot was
            // free (its stamp equalled its position).
            slot.value
                .with_mut(|cell| unsafe { cell.write(MaybeUninit::new(value)) });
            // Release: pairs with the Acquire load in `pop`.
            slot.stamp.store(tail + i + 1, Ordering::Release);
        }
        count
    }

    /// Removes up to `max` values with one claim, oldest first, passing each to
    /// `each`: as many as are published in a row at the head, up to the end of
    /// the buffer and at most [`RUN_MAX`](Self::RUN_MAX). Returns how many; 0
    /// when the head's slot holds no value yet (empty, or its push has not
    /// finished) or another consumer claimed first: fall back to [`pop`](Self::pop).
    ///
    /// The whole run is read out and its slots freed before `each` first
    /// runs, so `each` may use the queue as it likes (push into the room the
    /// run made, for one), and a slow `each` holds no slot up. If `each`
    /// panics, the values it had not been passed are dropped.
    pub fn pop_many(&self, max: usize, mut each: impl FnMut(T)) -> usize {
        let run = self.pop_run(max);
        let count = run.len();
        for value in run {
            each(value);
        }
        count
    }

    /// As [`pop_many`](Self::pop_many), but returns the run (empty when
    /// `pop_many` would return 0): its values are out of the queue, and
    /// their slots free, before the caller sees any of them, so the caller
    /// knows how many it took whatever it then does with them.
    pub fn pop_run(&self, max: usize) -> Run<T> {
        let mut run = Run::<T>::new();
        // A slot holds the value for the pop at `position` when its stamp is `position + 1`.
        let Some((head, count)) = self.claim_run(&self.head, max.min(Self::RUN_MAX), 1) else {
            return run;
        };
        for i in 0..count {
            let slot = self.slot(head + i);
            // SAFETY: the CAS made us the only owner of the positions
            // `head..head + count` until their stamp stores, and each stamp
            // said a value was written into the slot; we read each out once.
            let value = slot.value.with_mut(|cell| unsafe { cell.read().assume_init() });
            run.push(value);
            // Release: pairs with the Acquire load in `push` of the next lap.
            slot.stamp
                .store((head + i).wrapping_add(self.one_lap), Ordering::Release);
        }
        run
    }

    /// Number of values in the queue; exact when no push or pop runs concurrently.
    pub fn len(&self) -> usize {
        loop {
            // SeqCst loads: ordered with the SeqCst claiming CASes in `push`
            // and `pop`, and re-checking `tail` makes the pair consistent.
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                let head_index = head & (self.one_lap - 1);
                let tail_index = tail & (self.one_lap - 1);
                return if head_index < tail_index {
                    tail_index - head_index
                } else if head_index > tail_index {
                    self.capacity - head_index + tail_index
                } else if tail == head {
                    0
                } else {
                    self.capacity
                };
            }
        }
    }

    /// Whether the queue holds no value.
    pub fn is_empty(&self) -> bool {
        // SeqCst: as in `len`.
        let head = self.head.load(Ordering::SeqCst);
        let tail = self.tail.load(Ordering::SeqCst);
        tail == head
    }

    /// Whether the queue holds `capacity` values.
    pub fn is_full(&self) -> bool {
        // SeqCst: as in `len`.
        let tail = self.tail.load(Ordering::SeqCst);
        let head = self.head.load(Ordering::SeqCst);
        head.wrapping_add(self.one_lap) == tail
    }
}

/// The values of a run ([`ArrayQueue::pop_run`]), read out of the queue
/// before any is handed on: a fixed array on the stack, handed out in order;
/// those not handed out when it drops (a callback panicked) are dropped with it.
pub struct Run<T> {
    values: [MaybeUninit<T>; RUN_MAX],
    /// Values `values[taken..len]` are initialised and not yet handed out.
    taken: usize,
    len: usize,
}

impl<T> Run<T> {
    fn new() -> Self {
        Self {
            values: std::array::from_fn(|_| MaybeUninit::uninit()),
            taken: 0,
            len: 0,
        }
    }

    fn push(&mut self, value: T) {
        self.values[self.len].write(value);
        self.len += 1;
    }
}

impl<T> Iterator for Run<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.taken == self.len {
            return None;
        }
        let value = &self.values[self.taken];
        self.taken += 1;
        // SAFETY: `values[taken]` was written by `push` and, `taken` having
        // moved past it, is read out exactly once.
        Some(unsafe { value.assume_init_read() })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.taken;
        (left, Some(left))
    }
}

impl<T> ExactSizeIterator for Run<T> {}

impl<T> Drop for Run<T> {
    fn drop(&mut self) {
        for value in self.by_ref() {
            drop(value);
        }
    }
}

impl<T> Drop for ArrayQueue<T> {
    /// Drops the values still queued, each exactly once.
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

impl<T> fmt::Debug for Run<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run").field("left", &self.len()).finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for ArrayQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayQueue")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}
