//! The queue of waiters behind [`Semaphore`](crate::Semaphore)'s slow path:
//! by priority (higher first), FIFO within a priority.
//!
//! A doubly linked list threaded through a slab (`Vec` of entries plus a free
//! list), with an index from `(owner, token)` to the entry. That gives O(1)
//! push, pop and removal of any waiter (a cancelled wait must not cost a scan),
//! and reuses memory instead of allocating a node per waiter. Inserting by
//! priority walks back from the tail past lower priorities only, so it stays
//! O(1) while every waiter has the same priority (the common case). It is not
//! thread-safe by itself: the semaphore keeps it behind its lock.

use crate::fx_hash::FxHashMap;
use crate::semaphore::{Owner, Token};

/// Marks the absence of a link (`prev` of the head, `next` of the tail, end of
/// the free list).
const NIL: u32 = u32::MAX;

/// One queued request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) owner: Owner,
    pub(crate) token: Token,
    /// Permits the waiter asked for.
    pub(crate) needed: usize,
    /// Permits already handed to it while it waits at the head (partial grant).
    pub(crate) assigned: usize,
    /// Served before every lower priority, after earlier waiters of its own.
    pub(crate) priority: i32,
}

enum Entry {
    Occupied {
        waiter: Waiter,
        prev: u32,
        next: u32,
    },
    /// A free slot; `next_free` links the free list.
    Vacant {
        next_free: u32,
    },
}

pub(crate) struct WaitQueue {
    entries: Vec<Entry>,
    free: u32,
    head: u32,
    tail: u32,
    len: usize,
    index: FxHashMap<(Owner, Token), u32>,
    /// At least the largest `needed` in the queue (exact after
    /// `remove_heavier_than`, 0 when empty): lets a shrinking capacity skip
    /// the scan when no waiter can be too heavy for it.
    heaviest: usize,
}

impl WaitQueue {
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

    pub(crate) fn contains(&self, owner: Owner, token: Token) -> bool {
        self.index.contains_key(&(owner, token))
    }

    /// The head's priority, if anyone waits.
    pub(crate) fn front_priority(&self) -> Option<i32> {
        match self.entries.get(self.head as usize)? {
            Entry::Occupied { waiter, .. } => Some(waiter.priority),
            Entry::Vacant { .. } => unreachable!("head points at a vacant entry"),
        }
    }

    /// Queues a waiter after every waiter of its priority or higher, and
    /// before every lower one. The caller guarantees `(owner, token)` is not
    /// queued yet.
    pub(crate) fn insert(&mut self, waiter: Waiter) {
        let mut after = self.tail;
        while after != NIL {
            match &self.entries[after as usize] {
                Entry::Occupied { waiter: w, prev, .. } if w.priority < waiter.priority => after = *prev,
                Entry::Occupied { .. } => break,
                Entry::Vacant { .. } => unreachable!("list links a vacant entry"),
            }
        }
        let before = if after == NIL { self.head } else { self.next_of(after) };
        let key = (waiter.owner, waiter.token);
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

    pub(crate) fn front_mut(&mut self) -> Option<&mut Waiter> {
        match self.entries.get_mut(self.head as usize)? {
            Entry::Occupied { waiter, .. } => Some(waiter),
            Entry::Vacant { .. } => unreachable!("head points at a vacant entry"),
        }
    }

    pub(crate) fn pop_front(&mut self) -> Option<Waiter> {
        (self.head != NIL).then(|| self.unlink(self.head))
    }

    /// Removes the waiter `(owner, token)` wherever it stands in the queue.
    pub(crate) fn remove(&mut self, owner: Owner, token: Token) -> Option<Waiter> {
        let at = *self.index.get(&(owner, token))?;
        Some(self.unlink(at))
    }

    /// Removes every waiter of `owner`, in queue order. O(len): only used when a
    /// thread goes away.
    pub(crate) fn remove_owner(&mut self, owner: Owner) -> Vec<Waiter> {
        self.remove_where(|waiter| waiter.owner == owner)
    }

    /// Removes every waiter that needs more than `capacity` permits, in queue
    /// order. O(len) when some waiter may be that heavy, O(1) otherwise.
    pub(crate) fn remove_heavier_than(&mut self, capacity: usize) -> Vec<Waiter> {
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

    fn remove_where(&mut self, mut remove: impl FnMut(&Waiter) -> bool) -> Vec<Waiter> {
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

    fn unlink(&mut self, at: u32) -> Waiter {
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
        self.index.remove(&(waiter.owner, waiter.token));
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

    fn waiter(owner: Owner, token: Token) -> Waiter {
        Waiter {
            owner,
            token,
            needed: 1,
            assigned: 0,
            priority: 0,
        }
    }

    fn drain(q: &mut WaitQueue) -> Vec<Token> {
        std::iter::from_fn(|| q.pop_front()).map(|w| w.token).collect()
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
        assert_eq!(q.remove(0, 2).map(|w| w.token), Some(2));
        assert_eq!(q.remove(0, 0).map(|w| w.token), Some(0));
        assert_eq!(q.remove(0, 4).map(|w| w.token), Some(4));
        assert_eq!(q.remove(0, 4), None);
        assert_eq!(drain(&mut q), vec![1, 3]);
    }

    #[test]
    fn slots_are_reused() {
        let mut q = WaitQueue::new();
        for round in 0..100 {
            q.insert(waiter(0, round));
            q.insert(waiter(1, round));
            assert!(q.remove(0, round).is_some());
            assert_eq!(q.pop_front().map(|w| w.owner), Some(1));
        }
        assert_eq!(q.entries.len(), 2);
    }

    #[test]
    fn remove_owner_takes_only_that_owner() {
        let mut q = WaitQueue::new();
        for t in 0..6 {
            q.insert(waiter((t % 2) as Owner, t));
        }
        let removed: Vec<Token> = q.remove_owner(1).into_iter().map(|w| w.token).collect();
        assert_eq!(removed, vec![1, 3, 5]);
        assert!(!q.contains(1, 3));
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
        let removed: Vec<Token> = q.remove_heavier_than(2).into_iter().map(|w| w.token).collect();
        assert_eq!(removed, vec![1, 3]);
        assert_eq!(q.heaviest, 2, "the bound is exact after a scan");
        assert!(!q.contains(0, 3));
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
        assert_eq!(q.front_priority(), Some(2));
        // Removal in the middle keeps both directions of the links right.
        assert!(q.remove(0, 2).is_some());
        q.insert(Waiter {
            priority: 1,
            ..waiter(0, 8)
        });
        assert_eq!(drain(&mut q), vec![5, 1, 4, 8, 0, 7, 3, 6]);
        assert_eq!(q.front_priority(), None);
    }
}
