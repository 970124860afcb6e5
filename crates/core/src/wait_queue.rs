//! The queue of waits behind the semaphore's slow path (`semaphore.rs`): by
//! priority (higher first), FIFO within a priority.
//!
//! # Algorithm
//!
//! A doubly linked list threaded through a slab (a `Vec` of entries whose
//! vacant ones form a free list, as in the `slab` crate), with a hash index
//! from each wait's key to its entry. That gives O(1) push,
//! pop and removal of any wait (a cancelled wait must not cost a scan), and
//! reuses memory instead of allocating a node per wait. Inserting by priority
//! walks back from the tail past lower priorities only, so it stays O(1) while
//! every wait has the same priority (the common case).
//!
//! # Implementation
//!
//! Links are `u32` indexes into `entries`, with [`NIL`] for "none"; a vacant
//! entry links the free list instead. The queue knows nothing of permits
//! granted so far: only the head can hold any, and the semaphore keeps that
//! count beside the queue (`reserved_for_head`). It is not thread-safe by
//! itself: the semaphore keeps it behind its lock. The key type is generic so
//! that this module depends on nothing else in the crate (the semaphore uses
//! `(Owner, Token)`).

use std::hash::Hash;

use crate::fx_hash::FxHashMap;

/// Marks the absence of a link (`prev` of the head, `next` of the tail, end of
/// the free list, `head` and `tail` of an empty queue).
const NIL: u32 = u32::MAX;

/// One queued wait: every field is read by the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiter<K> {
    /// Names the wait: the index maps it to the entry, for `contains` and `remove`.
    pub(crate) key: K,
    /// Permits the wait asked for: `heaviest` and `remove_heavier_than` read it.
    pub(crate) needed: usize,
    /// Where it stands: after every wait of its priority or higher, before
    /// every lower one (`insert` reads it).
    pub(crate) priority: i32,
    /// When its wait began to count, on the semaphore's clock (nanoseconds;
    /// 0 without one): when it was queued, or, counting from the head, when a
    /// release first found it standing first (`UNSEEN` until then). An
    /// eventually fair semaphore hands off to the head once it has waited
    /// long enough. The queue itself never reads it.
    pub(crate) queued_at: u64,
}

enum Entry<K> {
    /// A queued wait; `prev` and `next` are indexes into `entries`, or `NIL`
    /// at either end of the queue.
    Occupied { waiter: Waiter<K>, prev: u32, next: u32 },
    /// An unused entry; `next_free` is the index of the next unused one, or
    /// `NIL` at the end of the free list.
    Vacant { next_free: u32 },
}

pub(crate) struct WaitQueue<K> {
    entries: Vec<Entry<K>>,
    /// Index of the first vacant entry, or `NIL` when every entry is occupied.
    free: u32,
    /// Index of the first wait (served next), or `NIL` when the queue is empty.
    head: u32,
    /// Index of the last wait, or `NIL` when the queue is empty.
    tail: u32,
    len: usize,
    /// From a wait's key to the index of its entry.
    index: FxHashMap<K, u32>,
    /// At least the largest `needed` in the queue (exact after
    /// `remove_heavier_than`, 0 when empty): lets a shrinking capacity skip
    /// the scan when no waiter can be too heavy for it.
    heaviest: usize,
}

impl<K: Copy + Eq + Hash> WaitQueue<K> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            len: 0,
            index: FxHashMap::default(),
            heaviest: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn contains(&self, key: K) -> bool {
        self.index.contains_key(&key)
    }

    /// The wait served next, if any.
    pub(crate) fn front(&self) -> Option<&Waiter<K>> {
        match self.entries.get(self.head as usize)? {
            Entry::Occupied { waiter, .. } => Some(waiter),
            Entry::Vacant { .. } => unreachable!("head points at a vacant entry"),
        }
    }

    /// The wait that stands first, to change its `queued_at`.
    pub(crate) fn front_mut(&mut self) -> Option<&mut Waiter<K>> {
        match self.entries.get_mut(self.head as usize)? {
            Entry::Occupied { waiter, .. } => Some(waiter),
            Entry::Vacant { .. } => unreachable!("head points at a vacant entry"),
        }
    }

    /// Queues a wait after every wait of its priority or higher, and before
    /// every lower one. The caller guarantees its key is not queued yet.
    pub(crate) fn insert(&mut self, waiter: Waiter<K>) {
        let mut after = self.tail;
        while after != NIL {
            match &self.entries[after as usize] {
                Entry::Occupied { waiter: w, prev, .. } if w.priority < waiter.priority => after = *prev,
                Entry::Occupied { .. } => break,
                Entry::Vacant { .. } => unreachable!("list links a vacant entry"),
            }
        }
        let before = if after == NIL { self.head } else { self.next_of(after) };
        let key = waiter.key;
        self.heaviest = self.heaviest.max(waiter.needed);
        let entry = Entry::Occupied {
            waiter,
            prev: after,
            next: before,
        };
        let at = if self.free == NIL {
            self.entries.push(entry);
            u32::try_from(self.entries.len() - 1).expect("more than u32::MAX waiters")
        } else {
            let at = self.free;
            match self.entries[at as usize] {
                Entry::Vacant { next_free } => self.free = next_free,
                Entry::Occupied { .. } => unreachable!("free list points at an occupied entry"),
            }
            self.entries[at as usize] = entry;
            at
        };
        if after == NIL {
            self.head = at;
        } else {
            self.set_next(after, at);
        }
        if before == NIL {
            self.tail = at;
        } else {
            self.set_prev(before, at);
        }
        self.len += 1;
        self.index.insert(key, at);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Waiter<K>> {
        (self.head != NIL).then(|| self.unlink(self.head))
    }

    /// Removes the wait `key` wherever it stands in the queue.
    pub(crate) fn remove(&mut self, key: K) -> Option<Waiter<K>> {
        let at = *self.index.get(&key)?;
        Some(self.unlink(at))
    }

    /// Whether `pred` holds for every wait that `permits` would grant, served
    /// from the head in order as the semaphore hands them out (the walk stops
    /// at the first wait needing more than is left). Visits at most those
    /// waits: each takes at least one permit, or the list ends.
    pub(crate) fn all_granted_by(&self, mut permits: usize, mut pred: impl FnMut(&Waiter<K>) -> bool) -> bool {
        let mut at = self.head;
        while let Some(Entry::Occupied { waiter, next, .. }) = self.entries.get(at as usize) {
            if waiter.needed > permits {
                return true;
            }
            if !pred(waiter) {
                return false;
            }
            permits -= waiter.needed;
            at = *next;
        }
        true
    }

    /// Removes every wait that needs more than `capacity` permits, in queue
    /// order. O(len) when some wait may be that heavy, O(1) otherwise.
    pub(crate) fn remove_heavier_than(&mut self, capacity: usize) -> Vec<Waiter<K>> {
        if self.heaviest <= capacity {
            return Vec::new();
        }
        let removed = self.remove_where(|waiter| waiter.needed > capacity);
        // The scan saw every waiter: make the bound exact again.
        self.heaviest = 0;
        let mut at = self.head;
        while let Some(Entry::Occupied { waiter, next, .. }) = self.entries.get(at as usize) {
            self.heaviest = self.heaviest.max(waiter.needed);
            at = *next;
        }
        removed
    }

    /// Removes every wait for which `remove` is true, in queue order. O(len):
    /// the semaphore uses it only when an owner goes away.
    pub(crate) fn remove_where(&mut self, mut remove: impl FnMut(&Waiter<K>) -> bool) -> Vec<Waiter<K>> {
        let mut removed = Vec::new();
        let mut at = self.head;
        while at != NIL {
            let (hit, next) = match &self.entries[at as usize] {
                Entry::Occupied { waiter, next, .. } => (remove(waiter), *next),
                Entry::Vacant { .. } => unreachable!("list links a vacant entry"),
            };
            if hit {
                removed.push(self.unlink(at));
            }
            at = next;
        }
        removed
    }

    fn unlink(&mut self, at: u32) -> Waiter<K> {
        let vacant = Entry::Vacant { next_free: self.free };
        let Entry::Occupied { waiter, prev, next } = std::mem::replace(&mut self.entries[at as usize], vacant) else {
            unreachable!("unlinking a vacant entry")
        };
        self.free = at;
        if prev == NIL {
            self.head = next;
        } else {
            self.set_next(prev, next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.set_prev(next, prev);
        }
        self.len -= 1;
        if self.len == 0 {
            self.heaviest = 0;
        }
        self.index.remove(&waiter.key);
        waiter
    }

    fn next_of(&self, at: u32) -> u32 {
        match &self.entries[at as usize] {
            Entry::Occupied { next, .. } => *next,
            Entry::Vacant { .. } => unreachable!("list links a vacant entry"),
        }
    }

    fn set_next(&mut self, at: u32, to: u32) {
        if let Entry::Occupied { next, .. } = &mut self.entries[at as usize] {
            *next = to;
        }
    }

    fn set_prev(&mut self, at: u32, to: u32) {
        if let Entry::Occupied { prev, .. } = &mut self.entries[at as usize] {
            *prev = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys as the semaphore makes them: `(owner, token)`.
    type Key = (u32, u64);

    fn waiter(owner: u32, token: u64) -> Waiter<Key> {
        Waiter {
            key: (owner, token),
            needed: 1,
            priority: 0,
            queued_at: 0,
        }
    }

    fn drain(q: &mut WaitQueue<Key>) -> Vec<u64> {
        std::iter::from_fn(|| q.pop_front()).map(|w| w.key.1).collect()
    }

    #[test]
    fn fifo_order() {
        let mut q = WaitQueue::new();
        for t in 0..5 {
            q.insert(waiter(0, t));
        }
        assert_eq!(q.len(), 5);
        assert_eq!(drain(&mut q), vec![0, 1, 2, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn remove_from_middle_head_and_tail_keeps_order() {
        let mut q = WaitQueue::new();
        for t in 0..5 {
            q.insert(waiter(0, t));
        }
        assert_eq!(q.remove((0, 2)).map(|w| w.key.1), Some(2));
        assert_eq!(q.remove((0, 0)).map(|w| w.key.1), Some(0));
        assert_eq!(q.remove((0, 4)).map(|w| w.key.1), Some(4));
        assert_eq!(q.remove((0, 4)), None);
        assert_eq!(drain(&mut q), vec![1, 3]);
    }

    #[test]
    fn slots_are_reused() {
        let mut q = WaitQueue::new();
        for round in 0..100 {
            q.insert(waiter(0, round));
            q.insert(waiter(1, round));
            assert!(q.remove((0, round)).is_some());
            assert_eq!(q.pop_front().map(|w| w.key.0), Some(1));
        }
        assert_eq!(q.entries.len(), 2);
    }

    #[test]
    fn remove_where_takes_only_the_matching_waits() {
        let mut q = WaitQueue::new();
        for t in 0..6 {
            q.insert(waiter((t % 2) as u32, t));
        }
        let removed: Vec<u64> = q.remove_where(|w| w.key.0 == 1).into_iter().map(|w| w.key.1).collect();
        assert_eq!(removed, vec![1, 3, 5]);
        assert!(!q.contains((1, 3)));
        assert_eq!(drain(&mut q), vec![0, 2, 4]);
    }

    #[test]
    fn remove_heavier_than_keeps_the_rest_in_order() {
        let mut q = WaitQueue::new();
        for (token, needed) in [(0, 1), (1, 3), (2, 2), (3, 4), (4, 1)] {
            q.insert(Waiter {
                needed,
                ..waiter(0, token)
            });
        }
        assert!(q.remove_heavier_than(4).is_empty());
        let removed: Vec<u64> = q.remove_heavier_than(2).into_iter().map(|w| w.key.1).collect();
        assert_eq!(removed, vec![1, 3]);
        assert_eq!(q.heaviest, 2, "the bound is exact after a scan");
        assert!(!q.contains((0, 3)));
        assert_eq!(drain(&mut q), vec![0, 2, 4]);
        assert_eq!(q.heaviest, 0);
    }

    #[test]
    fn higher_priority_first_fifo_within_a_priority() {
        let mut q = WaitQueue::new();
        // (token, priority) in arrival order.
        for (token, priority) in [(0, 0), (1, 1), (2, 0), (3, -1), (4, 1), (5, 2), (6, -1), (7, 0)] {
            q.insert(Waiter {
                priority,
                ..waiter(0, token)
            });
        }
        assert_eq!(q.front().map(|w| w.priority), Some(2));
        // Removal in the middle keeps both directions of the links right.
        assert!(q.remove((0, 2)).is_some());
        q.insert(Waiter {
            priority: 1,
            ..waiter(0, 8)
        });
        assert_eq!(drain(&mut q), vec![5, 1, 4, 8, 0, 7, 3, 6]);
        assert!(q.front().is_none());
    }
}
