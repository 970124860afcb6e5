//! The kill-inside-the-lock matrix (design §4.3): a child process runs a
//! script that passes every commit point of the semaphore, and
//! `SLUICE_KILL_POINT` makes it `SIGKILL` itself at one of them, inside the
//! segment lock. The parent (another process, with waits of its own in the
//! queue) then locks (`EOWNERDEAD` → recover), sweeps the dead child, and
//! checks: the full consistency check (queue order, lists, and
//! `free + Σ held + Σ granted + reserved + owed == capacity`), each of its
//! own waits granted or still queued (never lost), and every permit back
//! once it lets go.
//!
//! Run with `cargo test -p sluice-shm --features kill-points --test semaphore_kill`.
#![cfg(all(target_os = "linux", feature = "kill-points"))]

#[path = "semaphore_support.rs"]
mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use sluice_shm::semaphore::{Acquire, Fairness, SharedSemaphore};
use support::*;

/// Every commit point in `engine.rs`, in the order the script reaches them.
const POINTS: [&str; 14] = [
    "forget_permits.capacity",
    "try_acquire.held",
    "acquire.linked",
    "acquire.queued",
    "cancel.freed",
    "release.held",
    "release.granted_data",
    "release.granted",
    "acquire.overtook",
    "forget_held.capacity",
    "forget_held.refused",
    "add_permits.capacity",
    "collect.freed",
    "detach.emptied",
];

const PERMITS: u64 = 5;
const WAITERS: u32 = 16;

/// The child's script; the comments give the state after each step.
#[test]
fn child() {
    let Ok(role) = std::env::var("SHM_ROLE") else { return };
    if role == "nudged" {
        return nudged_child();
    }
    if role == "overtaking" {
        return overtaking_child();
    }
    if role == "head" {
        return head_child();
    }
    assert_eq!(role, "script");
    let sem = open(
        std::path::Path::new(&env("SHM_DIR")),
        &env("SHM_NAME"),
        PERMITS,
        WAITERS,
    );
    let (c, _) = sem.attach().unwrap();
    assert_eq!(sem.forget_permits(1).unwrap(), 1); // capacity 4
    assert!(sem.try_acquire(c, 4).unwrap()); // C holds 4
    say("HOLDING".into());
    assert_eq!(read_stdin_line(), "go"); // queue: P t2 (1, prio 1), P t1 (2)
    assert_eq!(sem.acquire(c, 1, 10, 0).unwrap(), Acquire::Queued); // … C t10
    assert!(sem.cancel(c, 10).unwrap());
    assert!(sem.release(c, 1).unwrap().is_empty()); // grants P t2: another owner's entry
    assert!(sem.release(c, 1).unwrap().is_empty()); // 1 reserved for P t1; C holds 2
    assert_eq!(sem.acquire(c, 1, 11, 5).unwrap(), Acquire::Granted); // overtakes with the reserve; C holds 3
    assert_eq!(sem.acquire(c, 4, 12, 0).unwrap(), Acquire::Queued); // behind P t1
    sem.forget_held(c, 1).unwrap(); // capacity 3: C t12 refused; C holds 2
    sem.add_permits(1).unwrap(); // capacity 4: 1 reserved for P t1
    assert_eq!(sem.acquire(c, 2, 13, 9).unwrap(), Acquire::Queued); // overtakes, takes the reserve
    assert_eq!(sem.release(c, 1).unwrap(), vec![13]); // grants its own wait, collected; C holds 3
    assert_eq!(sem.take_decided(c).unwrap(), vec![-12]);
    sem.detach(c).unwrap(); // gives back 3: P t1 granted, 1 free
    say("END".into());
}

/// Collects the parent's decisions until the dead child is reaped.
fn reap_child(sem: &SharedSemaphore) {
    let segment = sem.segment().unwrap();
    let t = Instant::now();
    while !segment.dead_procs().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(3), "the dead child was never reaped");
        sem.sweep().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(point: &str) {
    let dir = TempDir::new();
    let sem = open(dir.path(), "matrix", PERMITS, WAITERS);
    let (p, _) = sem.attach().unwrap();
    let mut child = spawn(
        "script",
        dir.path(),
        "matrix",
        &[("SLUICE_KILL_POINT", point.to_owned())],
    );
    let killed_early = matches!(point, "forget_permits.capacity" | "try_acquire.held");
    if !killed_early {
        child.line("HOLDING");
        assert_eq!(sem.acquire(p, 2, 1, 0).unwrap(), Acquire::Queued);
        assert_eq!(sem.acquire(p, 1, 2, 1).unwrap(), Acquire::Queued);
        child.say("go");
    }
    let status = child.wait();
    if point == "none" {
        assert!(status.success(), "{status}");
    } else {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{point} was not reached: {status}"
        );
    }
    // The first lock sees EOWNERDEAD and rebuilds from the facts, before
    // any sweep: consistent already (an opener validates right then).
    if let Err(e) = sem.check() {
        panic!("after recovering from a kill at {point}, before the reap: {e}");
    }
    reap_child(&sem);
    if let Err(e) = sem.check() {
        panic!("after a kill at {point}: {e}");
    }
    // Each of the parent's waits is granted or still queued, never lost.
    let granted = sem.take_decided(p).unwrap();
    for token in [1u64, 2] {
        if killed_early {
            break;
        }
        let was_granted = granted.contains(&(token as i64));
        let was_queued = sem.cancel(p, token).unwrap();
        assert!(
            was_granted != was_queued,
            "after {point}: wait {token} granted {was_granted}, queued {was_queued}"
        );
    }
    assert!(granted.iter().all(|&t| t > 0), "after {point}: {granted:?}");
    let held = sem.held(p);
    if held > 0 {
        sem.release(p, held).unwrap();
    }
    assert_eq!(
        (sem.available(), sem.waiting(), sem.capacity() >= 3),
        (sem.capacity(), 0, true),
        "after {point}: every permit back"
    );
    sem.check().unwrap();
}

#[test]
fn the_script_runs_to_its_end_without_a_kill_point() {
    run("none");
}

#[test]
fn a_process_killed_at_any_commit_point_leaves_a_state_the_next_locker_recovers() {
    for point in POINTS {
        run(point);
    }
}

/// The eventual-mode child: it queues as the head, is nudged by the
/// parent's release, and then either collects (where `collect.nudged` kills
/// it inside the lock) or is killed by the parent before it collects.
fn nudged_child() {
    let dir = env("SHM_DIR");
    let sem = SharedSemaphore::open_with(
        Some(std::path::Path::new(&dir)),
        &env("SHM_NAME"),
        1,
        WAITERS,
        Fairness::Eventual,
    )
    .unwrap();
    let (c, _) = sem.attach().unwrap();
    assert_eq!(sem.acquire(c, 1, 20, 0).unwrap(), Acquire::Queued);
    say("QUEUED".into());
    assert_eq!(read_stdin_line(), "go");
    assert_eq!(sem.take_decided(c).unwrap(), vec![20]);
    say("COLLECTED".into());
}

/// A nudged owner dies before it collects (inside the lock at
/// `collect.nudged`, or outside it): the permit its nudge left free must
/// reach the next wait, the parent's, so that nobody waits forever.
fn nudged_but_dead(killed_in_the_lock: bool) {
    let dir = TempDir::new();
    let sem = SharedSemaphore::open_with(Some(dir.path()), "nudged", 1, WAITERS, Fairness::Eventual).unwrap();
    // The parent's clock stands still at 0: the child's wait (queued at the
    // real time) is never due, so the release below nudges, not hands off.
    sem.set_clock(0);
    let (p, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(p, 1).unwrap());
    let point = if killed_in_the_lock { "collect.nudged" } else { "none" };
    let mut child = spawn(
        "nudged",
        dir.path(),
        "nudged",
        &[("SLUICE_KILL_POINT", point.to_owned())],
    );
    child.line("QUEUED");
    assert_eq!(sem.acquire(p, 1, 1, 0).unwrap(), Acquire::Queued);
    assert!(sem.release(p, 1).unwrap().is_empty());
    assert_eq!(sem.available(), 1, "nudged: the permit is left free");
    if killed_in_the_lock {
        child.say("go");
    } else {
        child.kill9();
    }
    let status = child.wait();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    sem.check().unwrap();
    reap_child(&sem);
    sem.check().unwrap();
    assert_eq!(sem.take_decided(p).unwrap(), vec![1], "the next wait is served");
    assert_eq!((sem.held(p), sem.waiting()), (1, 0));
    sem.release(p, 1).unwrap();
    assert_eq!(sem.available(), 1);
    sem.check().unwrap();
}

#[test]
fn a_nudged_owner_killed_while_collecting_leaves_its_permits_to_the_next_wait() {
    nudged_but_dead(true);
}

#[test]
fn a_nudged_owner_killed_before_collecting_leaves_its_permits_to_the_next_wait() {
    nudged_but_dead(false);
}

/// The eventual-mode child that overtakes a nudged head: the old head's
/// reserve plus the permit its nudge left free cover it, so it is granted
/// at once (`acquire.overtook` kills it there, inside the lock).
fn overtaking_child() {
    let dir = env("SHM_DIR");
    let sem = SharedSemaphore::open_with(
        Some(std::path::Path::new(&dir)),
        &env("SHM_NAME"),
        3,
        WAITERS,
        Fairness::Eventual,
    )
    .unwrap();
    let (c, _) = sem.attach().unwrap();
    assert_eq!(read_stdin_line(), "go");
    assert_eq!(sem.acquire(c, 3, 30, 1).unwrap(), Acquire::Granted);
    say("GRANTED".into());
}

/// An owner killed as it overtakes a nudged head with the reserve and the
/// free permits (or exiting after) leaves a consistent state, and its
/// permits reach the head once it is reaped.
fn overtaking_killed(point: &str) {
    let dir = TempDir::new();
    let sem = SharedSemaphore::open_with(Some(dir.path()), "overtaking", 3, WAITERS, Fairness::Eventual).unwrap();
    // The parent's clock far ahead of the real one: the head it queues is
    // young for the child too (its age saturates at 0), so nothing is due.
    sem.set_clock(u64::MAX / 2);
    let (p, _) = sem.attach().unwrap();
    let (q, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(q, 1).unwrap());
    assert_eq!(sem.acquire(p, 3, 1, 0).unwrap(), Acquire::Queued); // 2 reserved
    assert!(sem.release(q, 1).unwrap().is_empty()); // p nudged: 1 free
    assert_eq!((sem.available(), sem.reserved_for_head()), (1, 2));
    let mut child = spawn(
        "overtaking",
        dir.path(),
        "overtaking",
        &[("SLUICE_KILL_POINT", point.to_owned())],
    );
    child.say("go");
    if point == "none" {
        child.line("GRANTED");
    }
    let status = child.wait();
    if point == "none" {
        assert!(status.success(), "{status}");
    } else {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{point} was not reached: {status}"
        );
    }
    sem.check().unwrap();
    reap_child(&sem);
    sem.check().unwrap();
    assert_eq!(sem.take_decided(p).unwrap(), vec![1], "the head is served");
    sem.release(p, 3).unwrap();
    assert_eq!((sem.available(), sem.waiting()), (3, 0));
    sem.check().unwrap();
}

#[test]
fn an_owner_killed_overtaking_a_nudged_head_with_free_permits_leaves_them_to_it() {
    overtaking_killed("acquire.overtook");
}

#[test]
fn an_owner_that_overtook_a_nudged_head_with_free_permits_and_exited_leaves_them_to_it() {
    overtaking_killed("none");
}

/// The child counting from the head: it holds the permit, and its release
/// is the first to find the parent's wait standing first, so it stamps that
/// wait's `queued_at` (`release.seen_head` kills it right after, inside the
/// lock). Alive, it stays attached until told to exit: its exit detaches,
/// which would hand the free permit to the queue whatever the stamp.
fn head_child() {
    let dir = env("SHM_DIR");
    let sem = SharedSemaphore::open_with(
        Some(std::path::Path::new(&dir)),
        &env("SHM_NAME"),
        1,
        WAITERS,
        Fairness::EventualHead,
    )
    .unwrap();
    let (c, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(c, 1).unwrap());
    say("HOLDING".into());
    assert_eq!(read_stdin_line(), "go");
    assert!(sem.release(c, 1).unwrap().is_empty());
    say("RELEASED".into());
    assert_eq!(read_stdin_line(), "exit");
}

/// Counting from the head, a release stamps another owner's entry (its
/// `queued_at`). Killed right after, the state recovers and the head is
/// served; alive, the stamp stays: the head is due on the parent's clock,
/// far ahead of the child's, so a barger is refused and the permit left
/// free goes to the head.
fn head_seen(point: &str) {
    let dir = TempDir::new();
    let sem = SharedSemaphore::open_with(Some(dir.path()), "head", 1, WAITERS, Fairness::EventualHead).unwrap();
    sem.set_clock(u64::MAX / 2);
    let (p, _) = sem.attach().unwrap();
    let (q, _) = sem.attach().unwrap();
    let mut child = spawn("head", dir.path(), "head", &[("SLUICE_KILL_POINT", point.to_owned())]);
    child.line("HOLDING");
    assert_eq!(sem.acquire(p, 1, 1, 0).unwrap(), Acquire::Queued);
    child.say("go");
    if point == "none" {
        child.line("RELEASED");
        assert_eq!(
            sem.available(),
            1,
            "young when the child's release first saw it: left free"
        );
    } else {
        let status = child.wait();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{point} was not reached: {status}"
        );
    }
    sem.check().unwrap();
    assert!(
        !sem.try_acquire(q, 1).unwrap(),
        "the head is served first (stamped: due on this clock)"
    );
    if point == "none" {
        child.say("exit");
        assert!(child.wait().success());
    }
    reap_child(&sem);
    sem.check().unwrap();
    assert_eq!(sem.take_decided(p).unwrap(), vec![1], "the head is served");
    sem.release(p, 1).unwrap();
    assert_eq!((sem.available(), sem.waiting()), (1, 0));
    sem.check().unwrap();
}

#[test]
fn counted_from_the_head_a_release_killed_after_stamping_the_head_leaves_it_to_be_served() {
    head_seen("release.seen_head");
}

#[test]
fn counted_from_the_head_the_stamp_a_release_leaves_makes_the_head_due_later() {
    head_seen("none");
}
