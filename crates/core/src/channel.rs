//! A bounded, closeable MPMC channel whose waiting senders and receivers live
//! outside Rust.
//!
//! The algorithm is the textbook bounded buffer (Dijkstra's producer/consumer
//! with two counting semaphores, as in Downey's *The Little Book of
//! Semaphores*, §4.1.4) over a lock-free [`ArrayQueue`]:
//!
//! - `room` counts free places in the queue; senders take one permit each.
//! - `items` counts queued messages; receivers take one permit each.
//!
//! A send takes a `room` permit, pushes, and releases an `items` permit; a
//! receive takes an `items` permit, pops, and releases a `room` permit. The
//! two [`Semaphore`]s give the channel everything the semaphore has: FIFO
//! waiting senders and receivers ([`Semaphore::acquire`] on [`room`] or
//! [`items`], then [`send_held`] or [`recv_held`] once the wait is granted),
//! cancellation, the owners to wake, and a departed owner's waits withdrawn.
//!
//! Closing closes both semaphores, `room` first: senders fail from then on;
//! receivers that were waiting are withdrawn, and every receive after the
//! close pops the queue directly, without permits, until it is empty. A send
//! that took its `room` permit before the close may push after a receiver was
//! told the channel is drained; the message stays in the queue for the next
//! receive rather than being lost.
//!
//! # Implementation
//!
//! A permit says that a step *will* succeed, not that it can succeed this
//! instant, so the push and pop that follow a permit retry until they do
//! (`push_owed`, `pop_owed`):
//!
//! - A receiver's `items` permit may be for a message whose sender claimed an
//!   earlier queue position and is still writing it: [`ArrayQueue::pop`]
//!   itself waits for that writer.
//! - Once the channel is closed, receivers pop without permits, so a message
//!   an `items` permit was counting may have been taken: `pop_owed` then
//!   reports the channel drained instead of waiting forever.
//! - A sender's `room` permit is released only after the pop that made the
//!   room, so the room exists; the queue slot at the tail may still be held
//!   by a receiver of the previous lap mid-way through its pop (another
//!   place was freed first), and `push_owed` retries until it is free.
//!
//! Both loops yield through the crate's `sync` shim, so loom can schedule the
//! thread that ends them.
//!
//! [`room`]: Channel::room
//! [`items`]: Channel::items
//! [`send_held`]: Channel::send_held
//! [`recv_held`]: Channel::recv_held

use std::fmt;

use crate::array_queue::{AllocError, ArrayQueue};
use crate::semaphore::{Owner, Semaphore, TryAcquireError};
use crate::sync::yield_now;

/// Batches at least this long are sent with [`ArrayQueue::push_many`]
/// (a `Vec` and one claim per run); shorter ones a `push` per message, where
/// the `Vec` would cost more than the claims it saves.
const BATCH_MIN: usize = 4;

/// Most messages of a batch collected at once for [`ArrayQueue::push_many`]:
/// 32 KiB of `Message`s, where a whole batch may be as large as the capacity.
const BATCH_CHUNK: usize = 1024;

/// A bounded MPMC channel: an [`ArrayQueue`] plus a semaphore for free room
/// and one for queued messages. No operation blocks: one that cannot finish
/// says so, and waiting is done by queueing a wait on [`room`](Self::room) or
/// [`items`](Self::items) and calling [`send_held`](Self::send_held) or
/// [`recv_held`](Self::recv_held) once it is granted.
///
/// Operations that release permits return the [`Owner`]s whose queued waits
/// they granted: receivers (on `items`) for a send, senders (on `room`) for a
/// receive. Collect or ring them as for any [`Semaphore`].
///
/// # Examples
///
/// ```
/// use sluice_core::{Acquire, Channel, TryRecvError, TrySendError};
///
/// let channel = Channel::new(1);
/// assert_eq!(channel.try_send('a'), Ok(vec![]));
/// assert_eq!(channel.try_send('b'), Err(TrySendError::Full('b')));
///
/// // Owner 7 waits for room with token 1; the receive below grants it.
/// assert_eq!(channel.room().acquire(1, 7, 1), Ok(Acquire::Queued));
/// assert_eq!(channel.try_recv(), Ok(('a', vec![7])));
/// assert_eq!(channel.room().take_granted(7).len(), 1);
/// assert_eq!(channel.send_held('b'), Ok(vec![]));
///
/// channel.close();
/// assert_eq!(channel.try_send('c'), Err(TrySendError::Closed('c')));
/// assert_eq!(channel.try_recv(), Ok(('b', vec![])));
/// assert_eq!(channel.try_recv(), Err(TryRecvError::Closed));
/// ```
///
/// # Memory ordering
///
/// The channel adds no atomics of its own; it orders its steps so that the
/// pairs inside its parts carry everything:
///
/// - A message's contents: the sender's `Release` store of its queue slot's
///   stamp pairs with the receiver's `Acquire` load of it ([`ArrayQueue`]).
/// - A receiver's permit and the message behind it: a send pushes *before* it
///   releases its `items` permit, and that release (a `Release` CAS, or the
///   queue lock when a wait is granted) pairs with the receiver's `Acquire`
///   CAS in `try_acquire` (or its taking the same lock to collect the grant).
///   So a receiver that holds a permit sees the queue's tail at or past the
///   sender's position, and its pop finds the message or its writer.
/// - A sender's permit and the room behind it, symmetrically: a receive pops
///   *before* it releases its `room` permit, and that release pairs with the
///   sender's `Acquire` in `try_acquire` or the lock.
/// - Closing publishes nothing: each semaphore sets its `CLOSED` flag under
///   its own lock (`room` first), and a receive that finds `items` closed
///   only stops counting permits; what it pops next is ordered by the
///   queue's own pairs.
pub struct Channel<T> {
    /// Free places in `queue`; senders take (and wait for) these permits.
    room: Semaphore,
    /// Messages in `queue` that no receiver has claimed; receivers take (and
    /// wait for) these. Starts at 0 of `capacity`.
    items: Semaphore,
    queue: ArrayQueue<T>,
}

/// [`Channel::try_send`] could not send; the value is handed back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// No free room, or senders are queued ahead.
    Full(T),
    /// The channel is closed.
    Closed(T),
}

/// [`Channel::send_held`] found the channel closed; the value is handed back
/// and the room permit returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// [`Channel::try_recv`] or [`Channel::try_recv_many`] received nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued, or receivers are queued ahead.
    Empty,
    /// The channel is closed and drained.
    Closed,
}

/// [`Channel::try_claim_room`] found the channel closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimError;

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("channel full"),
            Self::Closed(_) => f.write_str("channel closed"),
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel closed")
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("channel empty"),
            Self::Closed => f.write_str("channel closed and drained"),
        }
    }
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel closed")
    }
}

impl<T> std::error::Error for TrySendError<T> {}
impl<T> std::error::Error for SendError<T> {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for ClaimError {}

impl<T> Channel<T> {
    /// Creates a channel that holds at most `capacity` messages.
    ///
    /// # Panics
    ///
    /// If `capacity` is zero, or its queue cannot be allocated (see
    /// [`Channel::try_new`]).
    pub fn new(capacity: usize) -> Self {
        Self::try_new(capacity).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Creates a channel that holds at most `capacity` messages, allocating
    /// its queue up front.
    ///
    /// # Errors
    ///
    /// [`AllocError`] if the queue's slots cannot be allocated.
    ///
    /// # Panics
    ///
    /// If `capacity` is zero.
    pub fn try_new(capacity: usize) -> Result<Self, AllocError> {
        let queue = ArrayQueue::try_new(capacity)?;
        Ok(Self {
            room: Semaphore::new(capacity),
            // Counts messages, so none are free until something is sent.
            items: Semaphore::with_available(capacity, 0),
            queue,
        })
    }

    /// The most messages the channel holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Messages queued right now (a snapshot).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message is queued right now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        self.room.is_closed()
    }

    /// The semaphore of free room: queue a sender's wait here with
    /// [`Semaphore::acquire`]; once granted, send with
    /// [`send_held`](Self::send_held).
    pub fn room(&self) -> &Semaphore {
        &self.room
    }

    /// The semaphore of queued messages: queue a receiver's wait here with
    /// [`Semaphore::acquire`]; once granted, receive with
    /// [`recv_held`](Self::recv_held).
    pub fn items(&self) -> &Semaphore {
        &self.items
    }

    /// Sends now if there is room and no sender is queued ahead. Returns the
    /// owners of receivers' waits (on [`items`](Self::items)) it granted.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Closed`], with the value.
    pub fn try_send(&self, value: T) -> Result<Vec<Owner>, TrySendError<T>> {
        match self.room.try_acquire(1) {
            Ok(()) => Ok(self.send_claimed(std::iter::once(value))),
            Err(TryAcquireError::NoPermits) => Err(TrySendError::Full(value)),
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed(value)),
        }
    }

    /// Takes as much free room as there is, up to `max`, if no sender is
    /// queued ahead; returns how much (possibly 0). Send that many values with
    /// [`send_claimed`](Self::send_claimed), or give the room back with
    /// [`return_room`](Self::return_room).
    ///
    /// # Errors
    ///
    /// [`ClaimError`] once the channel is closed.
    pub fn try_claim_room(&self, max: usize) -> Result<usize, ClaimError> {
        self.room.try_acquire_up_to(max).map_err(|_| ClaimError)
    }

    /// Gives back `n` places of room taken by [`try_claim_room`](Self::try_claim_room)
    /// and not used. Returns the owners of senders' waits it granted.
    pub fn return_room(&self, n: usize) -> Vec<Owner> {
        // Cannot exceed the capacity: these permits were taken from `room`.
        self.room.release(n).unwrap_or_default()
    }

    /// Sends `values` into room already taken, one place each (from
    /// [`try_claim_room`](Self::try_claim_room)); does not look at `closed`, since the
    /// room was taken before any close that follows. Returns the owners of
    /// receivers' waits it granted, all at once for the batch.
    pub fn send_claimed(&self, values: impl IntoIterator<Item = T>) -> Vec<Owner> {
        let mut values = values.into_iter();
        let mut sent = 0;
        if values.size_hint().0 < BATCH_MIN {
            for value in values {
                self.push_owed(value);
                sent += 1;
            }
        } else {
            // Collected a chunk at a time (a bounded allocation whatever the
            // capacity), then pushed a run of slots per claim.
            loop {
                let mut chunk = values.by_ref().take(BATCH_CHUNK).collect::<Vec<T>>().into_iter();
                if chunk.len() == 0 {
                    break;
                }
                sent += chunk.len();
                while chunk.len() > 0 {
                    if self.queue.push_many(&mut chunk) == 0 {
                        let Some(value) = chunk.next() else { break };
                        self.push_owed(value);
                    }
                }
            }
        }
        if sent == 0 {
            return Vec::new();
        }
        // After the pushes: this release publishes them (see "Memory ordering").
        // Cannot exceed the capacity: each message took a place of room, so
        // items <= capacity.
        self.items.release(sent).unwrap_or_default()
    }

    /// Sends into the place of room that a granted wait on
    /// [`room`](Self::room) holds. Returns the owners of receivers' waits it
    /// granted.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value if the channel was closed since the wait
    /// was granted; the room goes back.
    pub fn send_held(&self, value: T) -> Result<Vec<Owner>, SendError<T>> {
        if self.room.is_closed() {
            // Cannot exceed the capacity: the caller held this permit.
            let _ = self.room.release(1);
            return Err(SendError(value));
        }
        Ok(self.send_claimed(std::iter::once(value)))
    }

    /// Receives now if a message is queued and no receiver is queued ahead;
    /// once closed, takes what is left. Returns the message and the owners of
    /// senders' waits (on [`room`](Self::room)) it granted.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or [`TryRecvError::Closed`] once the channel
    /// is closed and drained.
    pub fn try_recv(&self) -> Result<(T, Vec<Owner>), TryRecvError> {
        match self.items.try_acquire(1) {
            Ok(()) => match self.recv_held() {
                (Some(value), woken) => Ok((value, woken)),
                (None, _) => Err(TryRecvError::Closed),
            },
            Err(TryAcquireError::NoPermits) => Err(TryRecvError::Empty),
            Err(TryAcquireError::Closed) => self.queue.pop().map(|v| (v, Vec::new())).ok_or(TryRecvError::Closed),
        }
    }

    /// Receives up to `max` messages, passing each to `each` in order: all
    /// that are queued with no receiver ahead, taken in one step; once closed,
    /// what is left. Returns how many and the owners of senders' waits it
    /// granted, all at once for the batch.
    ///
    /// If `each` panics, the messages taken out of the queue so far (the one
    /// it panicked on, and the rest of its run, which are dropped) are gone
    /// and their room goes back; the batch's messages still queued are left
    /// for the next receive. The owners that giving the room back granted are
    /// not returned: they find their grants when they next look.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), when it received nothing.
    pub fn try_recv_many(&self, max: usize, mut each: impl FnMut(T)) -> Result<(usize, Vec<Owner>), TryRecvError> {
        match self.items.try_acquire_up_to(max) {
            Ok(0) => Err(TryRecvError::Empty),
            Ok(owed) => {
                let mut batch = BatchReceive {
                    channel: self,
                    owed,
                    taken: 0,
                };
                while batch.taken < owed {
                    // A run of published messages per claim; one at a time
                    // (waiting for a sender mid-way) when the head's is not.
                    // Counted as taken before `each` sees them.
                    let run = self.queue.pop_run(owed - batch.taken);
                    if run.len() > 0 {
                        batch.taken += run.len();
                        run.for_each(&mut each);
                        continue;
                    }
                    let Some(value) = self.pop_owed() else { break };
                    batch.taken += 1;
                    each(value);
                }
                let count = batch.taken;
                let woken = batch.finish();
                if count == 0 {
                    return Err(TryRecvError::Closed);
                }
                Ok((count, woken))
            }
            Err(_) => {
                // Closed: drain without permits.
                let mut count = 0;
                while count < max {
                    let Some(value) = self.queue.pop() else { break };
                    each(value);
                    count += 1;
                }
                if count == 0 {
                    Err(TryRecvError::Closed)
                } else {
                    Ok((count, Vec::new()))
                }
            }
        }
    }

    /// Receives with the message that a granted wait on [`items`](Self::items)
    /// (or a taken `items` permit) holds. Returns the message, or `None` if the
    /// channel was closed and drained meanwhile, and the owners of senders'
    /// waits it granted.
    pub fn recv_held(&self) -> (Option<T>, Vec<Owner>) {
        let value = self.pop_owed();
        // After the pop: this release publishes the room it made. Cannot
        // exceed the capacity: the permit is for a message that took room.
        let woken = self.room.release(1).unwrap_or_default();
        (value, woken)
    }

    /// Closes the channel: later sends fail, queued waits on both semaphores
    /// are withdrawn, and receives take what is left without permits. Returns
    /// every owner with a withdrawn wait, once each. Closing twice does
    /// nothing more.
    pub fn close(&self) -> Vec<Owner> {
        // `room` first: see "Memory ordering" on `Channel`.
        let mut owners = self.room.close();
        for owner in self.items.close() {
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        owners
    }

    /// Pops the message an `items` permit guarantees (see the module docs);
    /// `None` once closed and drained.
    fn pop_owed(&self) -> Option<T> {
        loop {
            if let Some(value) = self.queue.pop() {
                return Some(value);
            }
            if self.items.is_closed() {
                return self.queue.pop();
            }
            yield_now();
        }
    }

    /// Pushes into the place a `room` permit guarantees (see the module docs).
    fn push_owed(&self, value: T) {
        let mut value = value;
        while let Err(back) = self.queue.push(value) {
            value = back;
            yield_now();
        }
    }
}

/// A batch receive's permits: `owed` items permits taken, `taken` messages
/// out of the queue so far. Settled by `finish`, or, if a callback panics,
/// when it drops.
struct BatchReceive<'a, T> {
    channel: &'a Channel<T>,
    owed: usize,
    taken: usize,
}

impl<T> BatchReceive<'_, T> {
    /// The batch is done: the room of all `owed` messages goes back (fewer
    /// were taken only if the channel was closed and drained meanwhile).
    fn finish(self) -> Vec<Owner> {
        // After the pops: this release publishes the room they made. Cannot
        // exceed the capacity: these permits are for messages that took room.
        let woken = self.channel.room.release(self.owed).unwrap_or_default();
        std::mem::forget(self);
        woken
    }
}

impl<T> Drop for BatchReceive<'_, T> {
    /// Unwinding from a callback's panic: the room of the messages taken
    /// goes back, and the items permits of those still queued, so that
    /// neither the channel's capacity nor those messages are lost.
    fn drop(&mut self) {
        // After the pops: this release publishes the room they made. Neither
        // release can exceed the capacity: these permits were taken here.
        let _ = self.channel.room.release(self.taken);
        if self.owed > self.taken {
            let _ = self.channel.items.release(self.owed - self.taken);
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
