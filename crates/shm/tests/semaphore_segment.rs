//! The named semaphore on a real segment: owners in one process, real
//! processes contending, a holder killed with SIGKILL, a holder exiting,
//! damaged state bytes, unlink (design §3, §4).
#![cfg(target_os = "linux")]

#[path = "semaphore_support.rs"]
mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use sluice_shm::semaphore::{Acquire, Fairness, SharedSemaphore};
use sluice_shm::Error;
use support::*;

/// Roles: `contend` (cycles of acquire/hold/release counted in shared
/// counters), `hold` (takes permits, then waits), `hold-exit` (takes permits
/// and exits normally), `open` (opens in `SEM_FAIRNESS`, FIFO if unset, and reports).
#[test]
fn child() {
    let Ok(role) = std::env::var("SHM_ROLE") else { return };
    let dir = std::path::PathBuf::from(env("SHM_DIR"));
    let name = env("SHM_NAME");
    let permits: u64 = env("SEM_PERMITS").parse().unwrap_or(1);
    match role.as_str() {
        "contend" => {
            let sem = open(&dir, &name, permits, 8);
            let counters = Counters::open(&dir.join("counters"));
            let (me, fd) = sem.attach().unwrap();
            let cycles: u64 = env("SEM_CYCLES").parse().unwrap();
            for token in 1..=cycles {
                match sem.acquire(me, 1, token, 0).unwrap() {
                    Acquire::Granted => {}
                    Acquire::Queued => {
                        assert!(
                            await_token(&sem, me, fd, token as i64, Duration::from_secs(10), true),
                            "starved"
                        );
                    }
                    other => panic!("{other:?}"),
                }
                let now = counters.at(0).fetch_add(1, SeqCst) + 1;
                counters.at(1).fetch_max(now, SeqCst);
                std::thread::yield_now();
                counters.at(0).fetch_sub(1, SeqCst);
                counters.at(2).fetch_add(1, SeqCst);
                let own = sem.release(me, 1).unwrap();
                assert!(own.is_empty(), "one wait at a time: {own:?}");
            }
            say("DONE".into());
        }
        // Acquire, hold a moment, release, forever (until killed); some
        // waits are cancelled, some weights are 2, priorities vary.
        "churn" => {
            let sem = open(&dir, &name, permits, 8);
            let (me, fd) = sem.attach().unwrap();
            say("CHURNING".into());
            let mut seed = u64::from(std::process::id()) | 1;
            for token in 1.. {
                let r = noise(&mut seed);
                let n = 1 + r % 2;
                match sem.acquire(me, n, token, (r >> 8) as i32 % 3).unwrap() {
                    Acquire::Granted => {}
                    Acquire::Queued if r.is_multiple_of(7) => {
                        if sem.cancel(me, token).unwrap() {
                            continue;
                        }
                        let _ = sem.take_decided(me).unwrap();
                    }
                    Acquire::Queued => {
                        assert!(await_token(&sem, me, fd, token as i64, Duration::from_secs(10), true));
                    }
                    Acquire::QueueFull => continue,
                    Acquire::TooHeavy => unreachable!(),
                }
                std::thread::sleep(Duration::from_micros(r % 300));
                sem.release(me, sem.held(me)).unwrap();
            }
        }
        "hold" | "hold-exit" => {
            let sem = open(&dir, &name, permits, 8);
            let (me, _) = sem.attach().unwrap();
            assert!(sem.try_acquire(me, permits).unwrap());
            say("HOLDING".into());
            if role == "hold-exit" {
                read_stdin_line();
                // Runs atexit, as process.exit does in Node.
                std::process::exit(0);
            }
            read_stdin_line();
        }
        "open" => match SharedSemaphore::open_with(Some(&dir), &name, permits, 8, fairness(&env("SEM_FAIRNESS"))) {
            Ok(_) => say("OPENED ok".into()),
            Err(e) => say(format!("OPENED {e:?}")),
        },
        other => panic!("unknown role {other}"),
    }
}

/// A fairness by its JavaScript name; FIFO for none.
fn fairness(name: &str) -> Fairness {
    match name {
        "" | "fifo" => Fairness::Fifo,
        "eventual" => Fairness::Eventual,
        "eventual-head" => Fairness::EventualHead,
        other => panic!("unknown fairness {other}"),
    }
}

#[test]
fn two_owners_in_one_process_hand_off_and_the_waiter_is_rung() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "pair", 2, 8);
    let (a, _) = sem.attach().unwrap();
    let (b, bell) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 2).unwrap());
    assert!(!sem.try_acquire(b, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 9, 0).unwrap(), Acquire::Queued);
    assert_eq!((sem.available(), sem.waiting()), (0, 1));
    assert_eq!(
        sem.release(a, 1).unwrap(),
        Vec::<u64>::new(),
        "b's grant is b's to collect"
    );
    assert!(wait_bell(bell, Duration::from_secs(1)), "b's bell was not rung");
    assert_eq!(sem.take_decided(b).unwrap(), vec![9]);
    assert_eq!((sem.held(a), sem.held(b), sem.available()), (1, 1, 0));
    sem.check().unwrap();
    // A release that grants the releaser's own wait returns it instead of ringing.
    assert_eq!(sem.acquire(a, 2, 10, 0).unwrap(), Acquire::Queued);
    sem.release(b, 1).unwrap();
    assert_eq!(sem.release(a, 1).unwrap(), vec![10]);
    assert_eq!(sem.held(a), 2);
    sem.check().unwrap();
}

#[test]
fn a_second_open_in_the_process_shares_the_semaphore_and_other_parameters_are_refused() {
    let dir = TempDir::new();
    let one = open(dir.path(), "same", 3, 8);
    let two = open(dir.path(), "same", 3, 8);
    assert!(std::sync::Arc::ptr_eq(&one, &two));
    match SharedSemaphore::open(Some(dir.path()), "same", 4, 8) {
        Err(Error::Mismatch {
            field: "permits",
            existing: 3,
            requested: 4,
        }) => {}
        other => panic!("{other:?}"),
    }
    match SharedSemaphore::open(Some(dir.path()), "same", 3, 9) {
        Err(Error::Mismatch {
            field: "max_waiters",
            existing: 8,
            requested: 9,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        SharedSemaphore::open(Some(dir.path()), "zero", 0, 8),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn an_opener_asking_for_another_fairness_is_refused_naming_both() {
    let dir = TempDir::new();
    let fifo = open(dir.path(), "fair", 2, 8);
    assert_eq!(fifo.fairness(), Fairness::Fifo);
    match SharedSemaphore::open_with(Some(dir.path()), "fair", 2, 8, Fairness::Eventual) {
        Err(Error::Mismatch {
            field: "fairness",
            existing: 0,
            requested: 1,
        }) => {}
        other => panic!("{other:?}"),
    }
    let eventual = SharedSemaphore::open_with(Some(dir.path()), "ev", 2, 8, Fairness::Eventual).unwrap();
    assert_eq!(eventual.fairness(), Fairness::Eventual);
    match SharedSemaphore::open(Some(dir.path()), "ev", 2, 8) {
        Err(Error::Mismatch {
            field: "fairness",
            existing: 1,
            requested: 0,
        }) => {}
        other => panic!("{other:?}"),
    }
    let again = SharedSemaphore::open_with(Some(dir.path()), "ev", 2, 8, Fairness::Eventual).unwrap();
    assert!(std::sync::Arc::ptr_eq(&eventual, &again));
}

/// The stored `fairness` parameter is 2 counting from the head: an opener
/// asking for FIFO (0) or eventual (1), as a sluice from before that mode
/// can only ask, is refused by it before anything reads the state block.
#[test]
fn counting_from_the_head_is_a_third_fairness_openers_must_agree_on() {
    let dir = TempDir::new();
    let head = SharedSemaphore::open_with(Some(dir.path()), "head", 2, 8, Fairness::EventualHead).unwrap();
    assert_eq!(head.fairness(), Fairness::EventualHead);
    for (other, requested) in [(Fairness::Fifo, 0), (Fairness::Eventual, 1)] {
        match SharedSemaphore::open_with(Some(dir.path()), "head", 2, 8, other) {
            Err(Error::Mismatch {
                field: "fairness",
                existing: 2,
                requested: r,
            }) if r == requested => {}
            other => panic!("{other:?}"),
        }
    }
    match SharedSemaphore::open_with(Some(dir.path()), "ev", 2, 8, Fairness::Eventual)
        .and_then(|_| SharedSemaphore::open_with(Some(dir.path()), "ev", 2, 8, Fairness::EventualHead))
    {
        Err(Error::Mismatch {
            field: "fairness",
            existing: 1,
            requested: 2,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Same mode: the open validates the state block (its flags say the
    // same mode) and returns this process's object.
    let again = SharedSemaphore::open_with(Some(dir.path()), "head", 2, 8, Fairness::EventualHead).unwrap();
    assert!(std::sync::Arc::ptr_eq(&head, &again));
    // Another process validates it as well.
    let mut kid = spawn(
        "open",
        dir.path(),
        "head",
        &[("SEM_PERMITS", "2".into()), ("SEM_FAIRNESS", "eventual-head".into())],
    );
    assert_eq!(kid.line("OPENED"), "ok");
    assert!(kid.wait().success());
}

/// `EVENTUAL_HEAD` (flag 4) only ever comes with `EVENTUAL` (2): alone, or
/// with a FIFO semaphore, it is damage.
#[test]
fn the_head_flag_without_the_eventual_flag_is_damage() {
    let dir = TempDir::new();
    let sem = SharedSemaphore::open_with(Some(dir.path()), "flags", 2, 8, Fairness::EventualHead).unwrap();
    let (a, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 1).unwrap());
    sem.check().unwrap();
    // The state block's flags (offset 64): EVENTUAL | EVENTUAL_HEAD.
    let flags = sem.segment().unwrap().region().u64_at(64).unwrap();
    assert_eq!(flags.load(SeqCst), 2 | 4);
    flags.store(4, SeqCst);
    assert!(matches!(sem.check(), Err(Error::Damaged(why)) if why.contains("flags 0x4")));
    assert!(matches!(sem.rebuild(), Err(Error::Damaged(_))));
    assert!(matches!(sem.try_acquire(a, 1), Err(Error::Damaged(_))));
    assert!(
        matches!(sem.release(a, 1), Err(Error::Damaged(_))),
        "the process keeps refusing"
    );
}

#[test]
fn an_owner_of_another_process_or_out_of_range_is_refused() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "owners", 1, 8);
    let (a, _) = sem.attach().unwrap();
    assert!(matches!(sem.try_acquire(a + 1, 1), Err(Error::Invalid(_))));
    assert!(matches!(sem.release(100_000, 1), Err(Error::Invalid(_))));
    assert!(matches!(sem.release(a, 1), Err(Error::Invalid(_))), "holds nothing");
}

#[test]
fn detach_gives_back_what_the_owner_held_and_withdraws_its_waits() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "detach", 2, 8);
    let (a, _) = sem.attach().unwrap();
    let (b, bell) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 2).unwrap());
    assert_eq!(sem.acquire(a, 1, 1, 0).unwrap(), Acquire::Queued);
    assert_eq!(sem.acquire(b, 2, 2, 0).unwrap(), Acquire::Queued);
    sem.detach(a).unwrap();
    assert!(wait_bell(bell, Duration::from_secs(1)));
    assert_eq!(sem.take_decided(b).unwrap(), vec![2]);
    assert_eq!((sem.held(b), sem.waiting()), (2, 0));
    sem.check().unwrap();
}

#[test]
fn two_processes_contending_never_hold_more_than_the_permits() {
    let dir = TempDir::new();
    let permits = 2;
    // The parent keeps it open: the end state must be the one they left.
    let sem = open(dir.path(), "contend", permits, 8);
    let counters = Counters::open(&dir.path().join("counters"));
    let extra = [("SEM_PERMITS", permits.to_string()), ("SEM_CYCLES", "300".to_string())];
    let mut kids: Vec<Child> = (0..3)
        .map(|_| spawn("contend", dir.path(), "contend", &extra))
        .collect();
    for k in &mut kids {
        k.line("DONE");
        assert!(k.wait().success());
    }
    assert_eq!(counters.at(2).load(SeqCst), 900, "every cycle ran");
    let most = counters.at(1).load(SeqCst);
    assert!(most <= permits, "{most} held at once, permits {permits}");
    assert_eq!((sem.available(), sem.waiting()), (permits, 0), "all permits back");
    sem.check().unwrap();
}

#[test]
fn a_holder_killed_with_sigkill_is_reaped_by_a_sweep_and_the_waiter_granted() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "kill", 2, 8);
    let (me, bell) = sem.attach().unwrap();
    let mut holder = spawn("hold", dir.path(), "kill", &[("SEM_PERMITS", "2".into())]);
    holder.line("HOLDING");
    assert_eq!(sem.acquire(me, 2, 5, 0).unwrap(), Acquire::Queued);
    holder.kill9();
    assert!(
        await_token(&sem, me, bell, 5, Duration::from_secs(3), true),
        "the dead holder's permits did not come back"
    );
    assert_eq!(sem.held(me), 2);
    sem.check().unwrap();
}

#[test]
fn a_holder_that_exits_gives_back_at_once_without_a_sweep() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "exit", 1, 8);
    let (me, bell) = sem.attach().unwrap();
    let mut holder = spawn("hold-exit", dir.path(), "exit", &[]);
    holder.line("HOLDING");
    assert_eq!(sem.acquire(me, 1, 3, 0).unwrap(), Acquire::Queued);
    holder.say("exit");
    assert!(holder.wait().success());
    assert!(
        wait_bell(bell, Duration::from_secs(2)),
        "the exit hook did not ring the waiter"
    );
    assert_eq!(sem.take_decided(me).unwrap(), vec![3]);
    sem.check().unwrap();
}

/// Deterministic noise for the damage tests.
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn damaged_state_bytes_make_the_next_operation_fail_as_damaged_and_opens_refuse() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "damaged", 3, 8);
    let (a, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 1).unwrap());
    let region = sem.segment().unwrap().region();
    // The state block's free count, past the capacity.
    region.u64_at(24).unwrap().store(u64::MAX - 5, SeqCst);
    assert!(matches!(sem.try_acquire(a, 1), Err(Error::Damaged(_))));
    assert!(
        matches!(sem.release(a, 1), Err(Error::Damaged(_))),
        "the process keeps refusing"
    );
    // Another process refuses it at open.
    let mut kid = spawn("open", dir.path(), "damaged", &[("SEM_PERMITS", "3".into())]);
    let said = kid.line("OPENED");
    assert!(said.starts_with("Damaged"), "{said}");
}

#[test]
fn random_bytes_anywhere_in_a_segment_in_use_never_panic() {
    let dir = TempDir::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..60 {
        let name = format!("noise{round}");
        let sem = open(dir.path(), &name, 4, 8);
        let (a, _) = sem.attach().unwrap();
        let (b, _) = sem.attach().unwrap();
        sem.try_acquire(a, 3).unwrap();
        sem.acquire(b, 2, 1, 0).unwrap();
        sem.acquire(b, 1, 2, 1).unwrap();
        let region = sem.segment().unwrap().region();
        for _ in 0..1 + round % 4 {
            let word = (noise(&mut seed) as usize % (region.len() / 8)) * 8;
            region
                .u64_at(word)
                .unwrap()
                .store(noise(&mut seed) >> (noise(&mut seed) % 64), SeqCst);
        }
        // Any outcome but a panic; damage found once is reported from then on.
        let _ = sem.release(a, 1);
        let _ = sem.cancel(b, 1);
        let _ = sem.acquire(a, 1, 3, 0);
        let _ = sem.take_decided(b);
        let _ = sem.detach(b);
        let _ = (
            sem.available(),
            sem.waiting(),
            sem.capacity(),
            sem.held(a),
            sem.closed(),
        );
        let _ = sem.check();
        drop(sem);
        let _ = SharedSemaphore::unlink(Some(dir.path()), &name);
    }
}

#[test]
fn unlink_withdraws_every_wait_and_later_acquires_fail_as_closed() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "gone", 1, 8);
    let (a, _) = sem.attach().unwrap();
    let (b, bell) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 4, 0).unwrap(), Acquire::Queued);
    assert!(SharedSemaphore::unlink(Some(dir.path()), "gone").unwrap());
    assert!(wait_bell(bell, Duration::from_secs(1)), "the waiter was not told");
    assert!(sem.closed());
    assert_eq!(sem.waiting(), 0);
    assert!(matches!(sem.acquire(b, 1, 5, 0), Err(Error::Closed)));
    assert!(sem.take_decided(b).unwrap().is_empty(), "withdrawn, not granted");
    sem.release(a, 1).unwrap();
}

#[test]
fn close_withdraws_the_waits_and_keeps_releases_working() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "close", 1, 8);
    let (a, _) = sem.attach().unwrap();
    let (b, bell) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 1).unwrap());
    assert_eq!(sem.acquire(b, 1, 4, 0).unwrap(), Acquire::Queued);
    sem.close().unwrap();
    assert!(wait_bell(bell, Duration::from_secs(1)));
    assert!(matches!(sem.try_acquire(b, 1), Err(Error::Closed)));
    assert!(!sem.cancel(b, 4).unwrap(), "already withdrawn");
    sem.release(a, 1).unwrap();
    assert_eq!(sem.available(), 1);
    sem.check().unwrap();
}

#[test]
fn threads_of_one_process_contending_never_hold_more_than_the_permits() {
    use std::sync::atomic::AtomicU64;
    let dir = TempDir::new();
    let permits = 2;
    let sem = open(dir.path(), "threads", permits, 8);
    let (now, most) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let (me, bell) = sem.attach().unwrap();
                for token in 1..=500u64 {
                    if sem.acquire(me, 1, token, 0).unwrap() == Acquire::Queued {
                        assert!(await_token(
                            &sem,
                            me,
                            bell,
                            token as i64,
                            Duration::from_secs(10),
                            false
                        ));
                    }
                    let n = now.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(n, SeqCst);
                    std::thread::yield_now();
                    now.fetch_sub(1, SeqCst);
                    assert!(sem.release(me, 1).unwrap().is_empty());
                }
                sem.detach(me).unwrap();
            });
        }
    });
    assert!(most.load(SeqCst) <= permits);
    assert_eq!((sem.available(), sem.waiting()), (permits, 0));
    sem.check().unwrap();
}

/// Infra's decision (INTERFACE.md, 15:25): with nobody attached the file is
/// truncated and initialised afresh, so damage there reaches no one.
#[test]
fn damaged_state_bytes_in_a_segment_nobody_uses_are_dropped_by_a_clean_start() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "stale", 3, 8);
    let (a, _) = sem.attach().unwrap();
    assert!(sem.try_acquire(a, 2).unwrap());
    let region = sem.segment().unwrap().region();
    for word in (0..region.len()).step_by(8) {
        region.u64_at(word).unwrap().store(0xdead_beef_dead_beef, SeqCst);
    }
    drop(sem);
    let sem = open(dir.path(), "stale", 3, 8);
    assert!(sem.segment().unwrap().initialised());
    assert_eq!((sem.available(), sem.capacity(), sem.waiting()), (3, 3, 0));
    sem.check().unwrap();
}

#[test]
fn a_storm_of_sigkills_at_random_moments_leaves_every_permit_back() {
    let dir = TempDir::new();
    let permits = 3;
    let sem = open(dir.path(), "storm", permits, 8);
    let extra = [("SEM_PERMITS", permits.to_string())];
    let mut kids: Vec<Child> = (0..4).map(|_| spawn("churn", dir.path(), "storm", &extra)).collect();
    for k in &mut kids {
        k.line("CHURNING");
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..30 {
        std::thread::sleep(Duration::from_millis(2 + noise(&mut seed) % 20));
        let victim = (noise(&mut seed) % kids.len() as u64) as usize;
        kids[victim].kill9();
        kids[victim] = spawn("churn", dir.path(), "storm", &extra);
        kids[victim].line("CHURNING");
        if let Err(e) = sem.check() {
            panic!("round {round}: {e}");
        }
    }
    for k in &mut kids {
        k.kill9();
    }
    let segment = sem.segment().unwrap();
    let t = std::time::Instant::now();
    while !segment.dead_procs().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(3), "dead processes left unreaped");
        sem.sweep().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!((sem.available(), sem.waiting(), sem.capacity()), (permits, 0, permits));
    sem.check().unwrap();
}
