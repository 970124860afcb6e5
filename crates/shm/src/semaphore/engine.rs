//! The semaphore's algorithm on its records (`records.rs`), run under the
//! segment lock.
//!
//! It is `sluice_core::Semaphore` (tokio's batch semaphore: FIFO hand-off,
//! priorities, weights, permits reserved for the head, debt, refusals when the
//! capacity shrinks), step for step, so that every process of the machine
//! decides as one in-process semaphore would; `tests/semaphore_model.rs`
//! checks that against the core. Each step names its commit point
//! (`kill_point!`): the kill-inside-the-lock matrix stops a process there.
//!
//! Eventual fairness (`EVENTUAL` in the flags, design
//! `docs/design/eventual-fairness.md`): a release that finds waits queued
//! and a head younger than `FAIR_AFTER_NS` leaves its permits free and
//! *nudges* the head's owner (rings it) instead of handing off, so that a
//! releaser, which is running anyway, can take its permit straight back
//! without a cross-process wake-up. It does so only while every wait the
//! free permits would grant in order is the nudged owner's (the head's, or
//! the owner a pending nudge rang): another owner's grant must not wait on
//! that owner's collection where FIFO would grant it now, so such a release
//! hands off; and a request overtaking the head that its reserve plus the
//! free permits cover is granted, not queued behind that collection. The
//! fast path may take free permits while waits are queued only in this mode
//! and only while the head is not due; once it is, the next release hands
//! off and bargers are refused (the free permits go to the queue first). A
//! nudged owner that collects serves the queue from the free permits in
//! order. `now` is CLOCK_MONOTONIC nanoseconds, passed in by the caller
//! (tests control it).
//!
//! Counting from the head (`EVENTUAL_HEAD` too, the core's
//! `Fairness::EventualHead`): a wait is queued with `queued_at = UNSEEN`,
//! and the first release that finds it standing first stamps it with its
//! `now` (`see_head`, the core's `young_head`), so each head in turn may be
//! passed over for `FAIR_AFTER_NS` instead of the next head being due at
//! once. Only a release stamps, as in the core, where only a release can
//! pass the head over: `try_acquire` and `acquire` (`may_take`,
//! `serve_if_due`) read an `UNSEEN` head as young and leave it so. Permits
//! are free while waits are queued only after a release left them for a
//! head it stamped; an `UNSEEN` head there overtook that one since, and no
//! release has passed it over yet. Stamped by a barger, its count would
//! start earlier than in the core, whose fast path reads no clock
//! (`tests/semaphore_model.rs` holds the two to the same decisions). The
//! shared `detach` stamps too, where it gives back what its owner held:
//! that is the release of the binding's detach.

use sluice_core::Fairness;

use super::kill_point;
use super::records::*;
use crate::Error;

impl Engine<'_> {
    /// Takes `n` permits for `owner` if they are free and nobody waits:
    /// `Ok(None)` if taken, `Ok(Some(too_heavy))` if not.
    pub(crate) fn try_acquire(&self, owner: u32, n: u64, now: u64, woken: &mut Vec<u32>) -> Result<TryAcquire, Error> {
        self.sane()?;
        self.ooff(owner)?;
        if self.is_closed()? {
            return Ok(TryAcquire::Closed);
        }
        self.serve_if_due(now, woken)?;
        let free = self.get(S_FREE)?;
        if !self.may_take(n, free, now)? {
            return Ok(if n > self.get(S_CAPACITY)? {
                TryAcquire::TooHeavy
            } else {
                TryAcquire::NotNow
            });
        }
        self.take(owner, n, free)?;
        Ok(TryAcquire::Acquired)
    }

    /// Whether a new request for `n` may take from the `free` permits now:
    /// nobody queued and nothing owed, or (eventual mode) a head not yet due.
    fn may_take(&self, n: u64, free: u64, now: u64) -> Result<bool, Error> {
        if free < n || self.get(S_OWED)? > 0 {
            return Ok(false);
        }
        if self.get(S_WAITING)? == 0 {
            return Ok(true);
        }
        Ok(self.is_eventual()? && !self.head_due(now)?)
    }

    /// Eventual mode: if permits are free while waits are queued and the
    /// head is due, they go to the queue now (the head's owner may be dead
    /// or slow to collect its nudge; a barger must not take them).
    fn serve_if_due(&self, now: u64, woken: &mut Vec<u32>) -> Result<(), Error> {
        if self.get(S_FREE)? > 0 && self.get(S_WAITING)? > 0 && self.head_due(now)? {
            self.hand_off(0, woken)?;
        }
        Ok(())
    }

    /// `release_locked(pool)` with the permits left free by nudges added:
    /// every hand-off serves the queue from all that is free. (In FIFO mode
    /// nothing is free while anyone waits, so this is `release_locked`.)
    fn hand_off(&self, pool: u64, woken: &mut Vec<u32>) -> Result<(), Error> {
        let free = self.get(S_FREE)?;
        if free == 0 || self.get(S_WAITING)? == 0 {
            return self.release_locked(pool, woken);
        }
        // A cache: a crash after this store is rebuilt from the facts.
        self.set(S_FREE, 0)?;
        // Nothing is left free for a nudged owner to serve: the next young
        // head's release may nudge (and leave permits free) again.
        self.set(S_NUDGED, 0)?;
        self.release_locked(add(pool, free)?, woken)
    }

    /// `owner` takes `n` of the `free` permits.
    fn take(&self, owner: u32, n: u64, free: u64) -> Result<(), Error> {
        // `free` is a cache: either order is exact after a rebuild.
        self.oset(owner, O_HELD, add(self.oget(owner, O_HELD)?, n)?)?;
        kill_point!("try_acquire.held");
        self.set(S_FREE, free - n)
    }

    /// Takes `n` permits now or queues `(owner, token)` for them.
    pub(crate) fn acquire(
        &self,
        owner: u32,
        n: u64,
        token: u64,
        priority: i32,
        now: u64,
        woken: &mut Vec<u32>,
    ) -> Result<Acquire, Error> {
        self.sane()?;
        self.ooff(owner)?;
        let capacity = self.get(S_CAPACITY)?;
        if n > capacity {
            return Ok(Acquire::TooHeavy);
        }
        if self.is_closed()? {
            return Ok(Acquire::Closed);
        }
        self.serve_if_due(now, woken)?;
        let free = self.get(S_FREE)?;
        let queued = self.get(S_WAITING)? > 0 || self.get(S_OWED)? > 0;
        if self.may_take(n, free, now)? {
            self.take(owner, n, free)?;
            return Ok(Acquire::Granted);
        }
        let head = self.head()?;
        // A request that will stand first takes what is reserved for the head
        // it overtakes; granted at once if that covers it.
        let overtakes = head != NIL && self.priority(head)? < priority;
        let reserve = if overtakes { self.eget(head, E_GRANTED)? } else { 0 };
        // Eventual mode: with the permits a nudge left free too. Queued, it
        // would stand first, covered by permits left for the nudged owner,
        // and its grant would wait on that owner's collection (see
        // `release`). (`free` is 0 here in FIFO mode and once the head is due.)
        let spare = if overtakes && self.is_eventual()? { free } else { 0 };
        if overtakes && add(reserve, spare)? >= n {
            let from_reserve = reserve.min(n);
            self.oset(owner, O_HELD, add(self.oget(owner, O_HELD)?, n)?)?;
            kill_point!("acquire.overtook");
            // Caches after the fact: a rebuild counts them exactly.
            self.eset(head, E_GRANTED, reserve - from_reserve)?;
            self.set(S_RESERVED, reserve - from_reserve)?;
            self.set(S_FREE, free - (n - from_reserve))?;
            return Ok(Acquire::Granted);
        }
        if self.get(S_WAITING)? >= u64::from(self.waiters) {
            return Ok(Acquire::QueueFull);
        }
        // Uncollected decisions hold entries too: with none free, the table is full.
        let Some(i) = self.pop_free()? else {
            return Ok(Acquire::QueueFull);
        };
        // An empty queue with no debt: this request becomes the head and the
        // free permits are reserved for it. (queued == false here means free < n.)
        let took = if queued { 0 } else { free };
        let ticket = self.next_ticket()?;
        self.eset(i, E_OWNER, u64::from(owner))?;
        self.eset(i, E_PRIORITY, i64::from(priority) as u64)?;
        self.eset(i, E_TOKEN, token)?;
        self.eset(i, E_NEEDED, n)?;
        self.eset(i, E_TICKET, ticket)?;
        // Counting from the head, its count starts at a release (`see_head`).
        let queued_at = if self.fairness()? == Fairness::EventualHead {
            UNSEEN
        } else {
            now
        };
        self.eset(i, E_QUEUED_AT, queued_at)?;
        if overtakes && reserve > 0 {
            // Taken from the old head before given to the new one: a crash in
            // between leaves them unaccounted, which recovery frees.
            self.eset(head, E_GRANTED, 0)?;
        }
        self.eset(i, E_GRANTED, took + reserve)?;
        self.insert(i, priority)?;
        kill_point!("acquire.linked");
        self.set_slot(i, Slot::Queued)?;
        kill_point!("acquire.queued");
        self.set(S_FREE, free - took)?;
        self.set(S_WAITING, add(self.get(S_WAITING)?, 1)?)?;
        let head = self.head()?;
        self.set(S_RESERVED, self.eget(head, E_GRANTED)?)?;
        Ok(Acquire::Queued(i))
    }

    /// The next number of the FIFO sequence.
    fn next_ticket(&self) -> Result<u64, Error> {
        let ticket = self.get(S_TICKET)?;
        self.set(S_TICKET, add(ticket, 1)?)?;
        Ok(ticket)
    }

    /// A decided entry takes a new ticket, after its state commit, so that a
    /// rebuild lists decisions in the order they were made (a queued
    /// entry's ticket is its place in the queue and must not move first).
    fn stamp(&self, i: u32) -> Result<(), Error> {
        let ticket = self.next_ticket()?;
        self.eset(i, E_TICKET, ticket)
    }

    /// Pays the debt from `pool`, then hands it (with what the head had) to
    /// the queue in order; what is left is free once nobody waits. Returns the
    /// owners granted.
    pub(crate) fn release_locked(&self, mut pool: u64, woken: &mut Vec<u32>) -> Result<(), Error> {
        let owed = self.get(S_OWED)?;
        if owed > 0 {
            let paid = pool.min(owed);
            self.set(S_OWED, owed - paid)?;
            pool -= paid;
            if owed > paid {
                return Ok(());
            }
        }
        let mut head = self.head()?;
        let mut steps = 0;
        while head != NIL {
            self.queued_step(head, &mut steps)?;
            pool = add(pool, self.eget(head, E_GRANTED)?)?;
            let needed = self.eget(head, E_NEEDED)?;
            if pool < needed {
                self.eset(head, E_GRANTED, pool)?;
                pool = 0;
                break;
            }
            pool -= needed;
            let owner = self.owner_of(head)?;
            let next = self.links(head)?.1;
            self.eset(head, E_GRANTED, needed)?;
            kill_point!("release.granted_data");
            self.set_slot(head, Slot::Granted)?;
            kill_point!("release.granted");
            self.stamp(head)?;
            self.unlink(head)?;
            self.push_decided(head, owner)?;
            wake(woken, owner);
            head = next;
        }
        let reserved = if head == NIL { 0 } else { self.eget(head, E_GRANTED)? };
        self.set(S_RESERVED, reserved)?;
        if pool > 0 {
            self.set(S_FREE, add(self.get(S_FREE)?, pool)?)?;
        }
        Ok(())
    }

    /// `owner` gives back `n` permits it holds. In eventual mode, with
    /// waits queued and a head not yet due, they stay free and the head's
    /// owner is nudged (rung) instead, as long as every wait they would
    /// grant is the nudged owner's.
    pub(crate) fn release(&self, owner: u32, n: u64, now: u64, woken: &mut Vec<u32>) -> Result<Result<(), u64>, Error> {
        self.sane()?;
        let held = self.oget(owner, O_HELD)?;
        if n > held {
            return Ok(Err(held));
        }
        self.oset(owner, O_HELD, held - n)?;
        kill_point!("release.held");
        let young = self.is_eventual()? && self.get(S_OWED)? == 0 && self.get(S_WAITING)? > 0 && {
            // Counting from the head, this release finds it standing first.
            self.see_head(now)?;
            kill_point!("release.seen_head");
            !self.head_due(now)?
        };
        if young {
            // One ring until someone collects: that collection serves every
            // permit freed meanwhile, so more rings would only cost the
            // releaser a write and the head's process more wake-ups. So
            // leave them free only if every wait they would grant (as
            // `hand_off` would, with what the head has reserved) is the
            // nudged owner's: a wait of anyone else would hang on that
            // process's next collection (busy or blocked for any time; at
            // best its 50 ms poll) instead of this release, its FIFO turn.
            // Otherwise hand off below, a FIFO schedule. (`S_NUDGED` is a
            // hint from shared memory: a value naming no queued owner only
            // makes this hand off.)
            let nudged = self.get(S_NUDGED)?;
            let head_owner = self.owner_of(self.head()?)?;
            let server = if nudged == 0 { u64::from(head_owner) } else { nudged - 1 };
            let free = add(self.get(S_FREE)?, n)?;
            if self.grants_only(server, free)? {
                self.set(S_FREE, free)?;
                if nudged == 0 {
                    self.set(S_NUDGED, add(server, 1)?)?;
                    wake(woken, head_owner);
                }
                return Ok(Ok(()));
            }
        }
        self.hand_off(n, woken)?;
        Ok(Ok(()))
    }

    /// One step of a walk down the queue from its head (`release_locked`,
    /// `grants_only`): the links are bytes another process wrote, so a walk
    /// longer than the wait table is a cycle, and a link to an entry that is
    /// not queued is damage.
    fn queued_step(&self, at: u32, steps: &mut u32) -> Result<(), Error> {
        *steps += 1;
        if *steps > self.waiters {
            return Err(damaged("the queue has a cycle"));
        }
        if self.slot(at)? != Slot::Queued {
            return Err(damaged(format!("queue links entry {at}, which is not queued")));
        }
        Ok(())
    }

    /// Whether every wait that `pool` free permits would grant, served from
    /// the head in order as `release_locked` does (each with what it has
    /// reserved), is `owner`'s. The walk stops at the first wait they do
    /// not cover, so it visits at most the waits granted plus one.
    fn grants_only(&self, owner: u64, mut pool: u64) -> Result<bool, Error> {
        let mut at = self.head()?;
        let mut steps = 0;
        while at != NIL {
            self.queued_step(at, &mut steps)?;
            pool = add(pool, self.eget(at, E_GRANTED)?)?;
            let needed = self.eget(at, E_NEEDED)?;
            if pool < needed {
                return Ok(true);
            }
            if self.eget(at, E_OWNER)? != owner {
                return Ok(false);
            }
            pool -= needed;
            at = self.links(at)?.1;
        }
        Ok(true)
    }

    /// Moves `owner`'s decided entries out: grants into its `held` (tokens
    /// positive, oldest first), then refusals (tokens negated). With
    /// `grants_only`, refusals stay on the list. In eventual mode the
    /// permits a nudge left free are first served to the queue in order
    /// (others served are added to `woken`): a barger that took them first
    /// leaves the queue as it was, each wait at its place.
    pub(crate) fn take_decided(&self, owner: u32, grants_only: bool, woken: &mut Vec<u32>) -> Result<Vec<i64>, Error> {
        self.sane()?;
        // Collected: the next nudge rings again (a hint, no fact).
        self.set(S_NUDGED, 0)?;
        if self.get(S_FREE)? > 0 && self.get(S_WAITING)? > 0 {
            // A nudged owner killed here leaves the permits free with waits
            // queued: the rebuild (and the reap) hands them to the queue.
            kill_point!("collect.nudged");
            self.hand_off(0, woken)?;
        }
        let mut list = Vec::new();
        let mut at = self.index(self.oget(owner, O_DECIDED)?)?;
        while at != NIL {
            if list.len() >= self.waiters as usize {
                return Err(damaged("a decided list has a cycle"));
            }
            let s = self.slot(at)?;
            if !matches!(s, Slot::Granted | Slot::Refused) || self.owner_of(at)? != owner {
                return Err(damaged(format!("owner {owner}'s decided list links entry {at}")));
            }
            list.push((at, s));
            at = self.links(at)?.1;
        }
        list.reverse();
        let mut out = Vec::with_capacity(list.len());
        for &(i, _) in list.iter().filter(|(_, s)| *s == Slot::Granted) {
            let granted = self.eget(i, E_GRANTED)?;
            // The entry freed, then held: a crash in between loses the grant
            // of an owner whose process is dying (the lock holder), and the
            // rebuild counts exactly. The other order would count it twice
            // until that process is reaped, and an opener validating
            // meanwhile would see more permits than the capacity.
            self.set_slot(i, Slot::Free)?;
            kill_point!("collect.freed");
            self.oset(owner, O_HELD, add(self.oget(owner, O_HELD)?, granted)?)?;
            out.push(self.eget(i, E_TOKEN)? as i64);
        }
        self.oset(owner, O_DECIDED, u64::from(NIL))?;
        for &(i, s) in &list {
            if s == Slot::Granted {
                self.push_free(i)?;
            } else if grants_only {
                self.push_decided(i, owner)?;
            } else {
                self.set_slot(i, Slot::Free)?;
                self.push_free(i)?;
                out.push(-(self.eget(i, E_TOKEN)? as i64));
            }
        }
        Ok(out)
    }

    /// Whether entry `i` is `(owner, token)`'s live wait.
    pub(crate) fn is_wait(&self, i: u32, owner: u32, token: u64) -> Result<bool, Error> {
        if i >= self.waiters {
            return Ok(false);
        }
        Ok(
            self.slot(i)? != Slot::Free
                && self.eget(i, E_OWNER)? == u64::from(owner)
                && self.eget(i, E_TOKEN)? == token,
        )
    }

    /// Withdraws the wait in entry `i`, as the core's `cancel`: queued, it
    /// leaves the queue (what the head had reserved goes on); granted but not
    /// collected, its permits are given back and handed on; refused, the
    /// refusal is forgotten.
    pub(crate) fn cancel(&self, i: u32, woken: &mut Vec<u32>) -> Result<(), Error> {
        self.sane()?;
        let slot = self.slot(i)?;
        let back = if slot == Slot::Refused {
            0
        } else {
            self.eget(i, E_GRANTED)?
        };
        match slot {
            Slot::Free => return Ok(()),
            Slot::Queued => self.unlink(i)?,
            Slot::Granted | Slot::Refused => self.unlink_decided(i, self.owner_of(i)?)?,
        }
        self.set_slot(i, Slot::Free)?;
        kill_point!("cancel.freed");
        self.push_free(i)?;
        // A nudged head that withdraws leaves its nudge's permits free:
        // they go to the next waits with `back` (a hand-off, as in FIFO mode),
        // and the next nudge rings whoever is the head then.
        self.set(S_NUDGED, 0)?;
        self.hand_off(back, woken)
    }

    /// Takes decided entry `i` off `owner`'s decided list.
    fn unlink_decided(&self, i: u32, owner: u32) -> Result<(), Error> {
        let (mut prev, mut at, mut steps) = (NIL, self.index(self.oget(owner, O_DECIDED)?)?, 0);
        while at != NIL && at != i {
            steps += 1;
            if steps > self.waiters {
                return Err(damaged("a decided list has a cycle"));
            }
            prev = at;
            at = self.links(at)?.1;
        }
        if at == NIL {
            return Err(damaged(format!(
                "entry {i} is missing from owner {owner}'s decided list"
            )));
        }
        let next = self.links(i)?.1;
        if prev == NIL {
            self.oset(owner, O_DECIDED, u64::from(next))
        } else {
            self.set_next(prev, next)
        }
    }

    /// `owner` goes away: withdraw every wait, drop its decisions, give back
    /// all it holds and was granted. Counting from the head, what it held
    /// goes back as a release does (`now`): the head after the rest went
    /// back is stamped if unseen (the binding's detach in the core:
    /// `remove_owner`, then `release` of what it held).
    pub(crate) fn detach(&self, owner: u32, now: u64, woken: &mut Vec<u32>) -> Result<(), Error> {
        self.sane()?;
        let held = self.oget(owner, O_HELD)?;
        let mut back = 0;
        for i in 0..self.waiters {
            let s = self.slot(i)?;
            if s == Slot::Free || self.eget(i, E_OWNER)? != u64::from(owner) {
                continue;
            }
            if s == Slot::Queued {
                self.unlink(i)?;
            }
            if s != Slot::Refused {
                back = add(back, self.eget(i, E_GRANTED)?)?;
            }
            self.set_slot(i, Slot::Free)?;
            self.push_free(i)?;
        }
        self.oset(owner, O_DECIDED, u64::from(NIL))?;
        self.oset(owner, O_HELD, 0)?;
        kill_point!("detach.emptied");
        self.set(S_NUDGED, 0)?;
        self.hand_off(back, woken)?;
        if held > 0 && self.get(S_OWED)? == 0 && self.get(S_WAITING)? > 0 {
            self.see_head(now)?;
        }
        // Everything free went to the queue above: this serves it as one
        // `hand_off(held + back)` would.
        self.release_locked(held, woken)
    }

    /// Closes: every queued wait is withdrawn (its owner woken), later
    /// acquires fail; held permits can still be released.
    pub(crate) fn close(&self, woken: &mut Vec<u32>) -> Result<(), Error> {
        self.sane()?;
        self.set(S_FLAGS, self.get(S_FLAGS)? | CLOSED)?;
        let mut pool = 0;
        let mut steps = 0;
        loop {
            let head = self.head()?;
            if head == NIL {
                break;
            }
            steps += 1;
            if steps > self.waiters || self.slot(head)? != Slot::Queued {
                return Err(damaged("the queue is broken"));
            }
            pool = add(pool, self.eget(head, E_GRANTED)?)?;
            wake(woken, self.owner_of(head)?);
            self.unlink(head)?;
            self.set_slot(head, Slot::Free)?;
            self.push_free(head)?;
        }
        self.release_locked(pool, &mut Vec::new())
    }

    /// Adds `n` permits to the capacity and hands them out. `Ok(false)` past
    /// [`MAX_PERMITS`] (nothing changes).
    pub(crate) fn add_permits(&self, n: u64, woken: &mut Vec<u32>) -> Result<bool, Error> {
        self.sane()?;
        let capacity = self.get(S_CAPACITY)?;
        if capacity.checked_add(n).is_none_or(|c| c > MAX_PERMITS) {
            return Ok(false);
        }
        self.set(S_CAPACITY, capacity + n)?;
        kill_point!("add_permits.capacity");
        self.hand_off(n, woken)?;
        Ok(true)
    }

    /// Removes up to `n` free permits for good; none while anyone waits.
    pub(crate) fn forget_permits(&self, n: u64) -> Result<u64, Error> {
        self.sane()?;
        if self.get(S_WAITING)? > 0 || self.get(S_OWED)? > 0 {
            return Ok(0);
        }
        let free = self.get(S_FREE)?;
        let taken = n.min(free);
        // The fact first: a crash in between leaves fewer free, never more.
        self.set(S_CAPACITY, self.get(S_CAPACITY)? - taken)?;
        kill_point!("forget_permits.capacity");
        self.set(S_FREE, free - taken)?;
        Ok(taken)
    }

    /// `owner` gives up `n` held permits for good; queued waits heavier than
    /// the new capacity are refused. `Ok(Err(held))` if it holds fewer.
    pub(crate) fn forget_held(&self, owner: u32, n: u64, woken: &mut Vec<u32>) -> Result<Result<(), u64>, Error> {
        self.sane()?;
        let held = self.oget(owner, O_HELD)?;
        if n > held {
            return Ok(Err(held));
        }
        // Held before capacity: a crash in between frees them again (consistent).
        self.oset(owner, O_HELD, held - n)?;
        let capacity = sub(self.get(S_CAPACITY)?, n)?;
        self.set(S_CAPACITY, capacity)?;
        kill_point!("forget_held.capacity");
        // What a refused head had reserved goes on to the next head.
        let reserved = self.refuse_heavier_than(capacity, woken)?;
        self.hand_off(reserved, woken)?;
        Ok(Ok(()))
    }

    /// Refuses every queued wait needing more than `capacity`, in queue
    /// order; returns the permits they had reserved.
    pub(crate) fn refuse_heavier_than(&self, capacity: u64, woken: &mut Vec<u32>) -> Result<u64, Error> {
        let mut pool = 0;
        let mut at = self.head()?;
        let mut steps = 0;
        while at != NIL {
            steps += 1;
            if steps > self.waiters {
                return Err(damaged("the queue has a cycle"));
            }
            let next = self.links(at)?.1;
            if self.eget(at, E_NEEDED)? > capacity {
                let owner = self.owner_of(at)?;
                pool = add(pool, self.eget(at, E_GRANTED)?)?;
                self.unlink(at)?;
                self.set_slot(at, Slot::Refused)?;
                kill_point!("forget_held.refused");
                self.stamp(at)?;
                self.eset(at, E_GRANTED, 0)?;
                self.push_decided(at, owner)?;
                wake(woken, owner);
            }
            at = next;
        }
        Ok(pool)
    }
}

/// The outcome of [`Engine::try_acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TryAcquire {
    Acquired,
    NotNow,
    TooHeavy,
    Closed,
}

/// The outcome of [`Engine::acquire`]; `Queued` carries the entry index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquire {
    Granted,
    Queued(u32),
    QueueFull,
    TooHeavy,
    Closed,
}
