//! The lock, the process slots and the bells with real processes: EOWNERDEAD
//! after SIGKILL inside the lock, a killed process's slot found by the OFD
//! probe and reaped, rings across processes and to dead readers, `atexit`
//! (design §2, §3, §4.1).

#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use sluice_shm::{Error, Segment};

#[test]
fn child() {
    child_main();
}

fn open(dir: &TempDir, name: &str) -> std::sync::Arc<Segment> {
    Segment::open(Some(dir.path()), name, &layout(3)).unwrap()
}

#[test]
fn a_holder_killed_inside_the_lock_gives_eownerdead_then_a_consistent_lock() {
    let dir = TempDir::new();
    let seg = open(&dir, "robust");
    for round in 1..=5u64 {
        let mut holder = spawn("lock", dir.path(), "robust", &[]);
        holder.line("LOCKED");
        // Held elsewhere: our lock times out instead of hanging.
        assert!(matches!(
            seg.lock_timeout(Duration::from_millis(20)),
            Err(Error::LockStuck)
        ));
        let t = Instant::now();
        holder.kill9();
        let guard = seg.lock_timeout(Duration::from_secs(5)).unwrap();
        let took = t.elapsed();
        assert!(guard.recovered(), "round {round}: EOWNERDEAD not reported");
        assert_eq!(word(&seg, W_RECOVERED), round, "the layout's recover ran once");
        drop(guard);
        let guard = seg.lock().unwrap();
        assert!(!guard.recovered(), "made consistent: the next lock is clean");
        drop(guard);
        eprintln!("round {round}: SIGKILL -> lock with EOWNERDEAD in {took:?}");
    }
}

#[test]
fn a_killed_process_slot_is_found_by_the_probe_and_reaped_by_the_sweep() {
    let dir = TempDir::new();
    let seg = open(&dir, "slots");
    let mut other = spawn("hold", dir.path(), "slots", &[("SHM_OWNER", "1".into())]);
    let ready = other.line("READY");
    let mut it = ready.split(' ');
    let proc: u32 = it.next().unwrap().parse().unwrap();
    let owner: u32 = it.nth(1).unwrap().parse().unwrap();
    assert_ne!(proc, seg.proc_slot());
    assert_eq!(seg.owners_of(proc), vec![owner]);
    assert_eq!(seg.owner_proc(owner), Some(proc));
    assert!(seg.dead_procs().is_empty(), "a live process is never dead");
    assert!(dir.path().join(format!("slots.b{owner}")).exists());

    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(other.child.id() as i32, libc::SIGKILL) };
    let seen = wait_until(Duration::from_secs(2), || seg.dead_procs() == vec![proc]).expect("slot never freed");
    eprintln!("SIGKILL -> OFD slot seen free by the probe after {seen:?}");
    other.kill9();

    // The sweep is throttled machine-wide; wait for it to be due.
    let mut reaped = 0;
    wait_until(Duration::from_secs(1), || {
        reaped += seg.sweep().unwrap();
        reaped > 0
    });
    assert_eq!(reaped, 1);
    assert_eq!(word(&seg, W_REAPED), 1, "the layout reaped the dead owner");
    assert!(seg.owners_of(proc).is_empty());
    assert_eq!(seg.owner_proc(owner), None);
    assert!(seg.dead_procs().is_empty());
    assert!(
        !dir.path().join(format!("slots.b{owner}")).exists(),
        "the dead owner's bell is removed"
    );
    assert!(!seg.sweep_due(), "a sweep just ran: not due again within 50 ms");
}

#[test]
fn a_new_process_reuses_a_dead_slot_after_reaping_it() {
    let dir = TempDir::new();
    let seg = open(&dir, "reuse");
    let mut a = spawn("hold", dir.path(), "reuse", &[("SHM_OWNER", "1".into())]);
    let slot_a: u32 = a.line("READY").split(' ').next().unwrap().parse().unwrap();
    a.kill9();
    let mut b = spawn("hold", dir.path(), "reuse", &[]);
    let slot_b: u32 = b.line("READY").split(' ').next().unwrap().parse().unwrap();
    assert_eq!(slot_a, slot_b, "the first free OFD byte is the dead one");
    assert_eq!(word(&seg, W_REAPED), 1, "reaped by the opener before reuse");
    assert!(seg.owners_of(slot_b).is_empty());
}

#[test]
fn a_ring_wakes_an_owner_in_another_process_and_a_dead_reader_is_not_an_error() {
    let dir = TempDir::new();
    let seg = open(&dir, "bell");
    let mut other = spawn("listen", dir.path(), "bell", &[]);
    let owner: u32 = other.line("OWNER").parse().unwrap();
    seg.ring(owner);
    assert_eq!(other.line("RUNG"), "true");
    other.kill9();
    // EPIPE on the cached writer, then ENXIO on re-open: both "owner gone".
    for _ in 0..3 {
        seg.ring(owner);
    }
    // Out of range and free slots are ignored.
    seg.ring(9999);
    seg.ring(15);
}

#[test]
fn an_owner_in_this_process_is_rung_through_its_own_bell() {
    let dir = TempDir::new();
    let seg = open(&dir, "own");
    let (owner, fd) = seg.attach_owner().unwrap();
    // SAFETY: `fd` is ours (a dup), closed below.
    let js = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    {
        let mut guard = seg.lock().unwrap();
        guard.wake(owner);
        guard.wake(owner); // once is enough
    }
    let mut buf = [0u8; 8];
    // SAFETY: reads into a valid buffer from an open non-blocking fd.
    let n = unsafe { libc::read(js.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    assert_eq!(n, 1, "one ring after the unlock");
    let mut guard = seg.lock().unwrap();
    seg.detach_owner(&mut guard, owner);
    drop(guard);
    assert_eq!(seg.owner_proc(owner), None);
    assert!(!dir.path().join(format!("own.b{owner}")).exists());
}

#[test]
fn the_owner_limit_is_reported() {
    let dir = TempDir::new();
    let seg = open(&dir, "owners");
    let mut fds = Vec::new();
    for _ in 0..16 {
        fds.push(seg.attach_owner().unwrap().1);
    }
    assert!(matches!(seg.attach_owner(), Err(Error::OwnerLimit(16))));
    for fd in fds {
        // SAFETY: our dups.
        unsafe { libc::close(fd) };
    }
}

#[test]
fn a_process_leaving_through_exit_gives_back_at_once_through_atexit() {
    let dir = TempDir::new();
    let seg = open(&dir, "exit");
    let mut other = spawn("hold", dir.path(), "exit", &[("SHM_OWNER", "1".into())]);
    let proc: u32 = other.line("READY").split(' ').next().unwrap().parse().unwrap();
    other.say("exit");
    other.wait_ok();
    // No sweep ran: the child's own atexit handler gave back and freed its slots.
    assert_eq!(word(&seg, W_EXITED), 1);
    assert_eq!(word(&seg, W_REAPED), 0);
    assert!(seg.owners_of(proc).is_empty());
    assert!(seg.dead_procs().is_empty());
}

#[test]
fn dropping_the_last_handle_detaches_and_the_segment_then_starts_clean() {
    let dir = TempDir::new();
    let seg = open(&dir, "drop");
    let first = seg.generation();
    let (_, fd) = seg.attach_owner().unwrap();
    // SAFETY: our dup.
    unsafe { libc::close(fd) };
    drop(seg);
    let seg = open(&dir, "drop");
    assert!(seg.initialised());
    assert_ne!(seg.generation(), first);
}

#[test]
fn a_process_stopped_inside_the_lock_gives_lock_stuck_not_a_hang() {
    let dir = TempDir::new();
    let seg = open(&dir, "stopped");
    let mut holder = spawn("lock", dir.path(), "stopped", &[]);
    holder.line("LOCKED");
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(holder.child.id() as i32, libc::SIGSTOP) };
    let t = Instant::now();
    assert!(matches!(seg.lock(), Err(Error::LockStuck)));
    assert!(t.elapsed() < Duration::from_secs(3));
    // Another process opening it: its open-time check times out too (1 s).
    let mut other = spawn("try-open", dir.path(), "stopped", &[]);
    assert!(other.line("RESULT").starts_with("err lock stuck"));
    holder.kill9();
    assert!(seg.lock().unwrap().recovered());
}

#[test]
fn garbage_in_the_mutex_of_a_segment_in_use_is_an_error_in_bounded_time() {
    use std::os::unix::fs::FileExt;
    let dir = TempDir::new();
    let mut holder = spawn("hold", dir.path(), "garbage", &[]);
    holder.line("READY");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("garbage"))
        .unwrap();
    for pattern in [0xffu8, 0x5a, 0x01] {
        f.write_all_at(&[pattern; 40], 4096).unwrap();
        let t = Instant::now();
        let e = Segment::open(Some(dir.path()), "garbage", &layout(3))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, Error::LockStuck | Error::Damaged(_)), "{pattern:#x}: {e:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{pattern:#x}: {:?}", t.elapsed());
        eprintln!("mutex bytes {pattern:#04x}: {e} after {:?}", t.elapsed());
    }
}

#[test]
fn a_child_forked_without_exec_does_not_keep_a_killed_parent_alive() {
    let dir = TempDir::new();
    let seg = open(&dir, "fork");
    let mut parent = spawn("fork", dir.path(), "fork", &[]);
    let line = parent.line("FORKED");
    let mut it = line.split(' ');
    let proc: u32 = it.next().unwrap().parse().unwrap();
    let grandchild: i32 = it.next().unwrap().parse().unwrap();
    parent.kill9();
    let seen = wait_until(Duration::from_secs(2), || seg.dead_procs() == vec![proc]);
    // SAFETY: kill(2) of the forked grandchild, alive until now.
    let alive = unsafe { libc::kill(grandchild, 0) } == 0;
    // SAFETY: as above.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert!(
        alive,
        "the grandchild must outlive its parent for this test to mean anything"
    );
    assert!(seen.is_some(), "the forked child kept the dead parent's slot locked");
}

#[test]
fn exit_while_another_thread_holds_the_lock_skips_the_give_back_and_the_sweep_covers_it() {
    let dir = TempDir::new();
    let seg = open(&dir, "exitlocked");
    let mut child = spawn("exit-locked", dir.path(), "exitlocked", &[]);
    let proc: u32 = child.line("EXITING").parse().unwrap();
    let t = Instant::now();
    child.wait_ok();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "exit hung on the lock: {:?}",
        t.elapsed()
    );
    assert_eq!(
        word(&seg, W_EXITED),
        0,
        "atexit could not lock, so it gave nothing back"
    );
    // The thread died holding the lock: the next locker recovers...
    assert!(seg.lock().unwrap().recovered());
    // ...and the sweep reaps the slot the kernel released.
    let mut reaped = 0;
    wait_until(Duration::from_secs(1), || {
        reaped += seg.sweep().unwrap();
        reaped > 0
    });
    assert_eq!(reaped, 1);
    assert_eq!(word(&seg, W_REAPED), 1);
    assert!(seg.owners_of(proc).is_empty());
}

#[test]
fn a_child_forked_without_exec_that_calls_exit_does_not_touch_the_parents_segment() {
    let dir = TempDir::new();
    let seg = open(&dir, "forkexit");
    let mut parent = spawn("fork-exit", dir.path(), "forkexit", &[]);
    assert_eq!(parent.line("CHILD"), "exited=true code=0 signal=0");
    assert_eq!(
        parent.line("STILL"),
        "1",
        "the parent's owner is untouched by the child's atexit"
    );
    // (W_EXITED is not checked: the role's process itself exits right after.)
    drop(seg);
}
