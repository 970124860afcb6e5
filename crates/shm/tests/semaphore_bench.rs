//! Rough costs of the named semaphore's calls on a real segment, printed, not
//! asserted (speed is never asserted in tests). Run quiet, in release:
//! `cargo test --release -p sluice-shm --test semaphore_bench -- --ignored --nocapture`.
#![cfg(target_os = "linux")]

#[path = "semaphore_support.rs"]
mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use sluice_shm::semaphore::Acquire;
use support::*;

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Role `pingpong`: take the one permit `SEM_ROUNDS` times, each time
/// measuring from the other process's release (its clock reading in the
/// shared counters) to this process seeing the grant; prints p50 and p99.
#[test]
fn child() {
    let Ok(role) = std::env::var("SHM_ROLE") else { return };
    assert_eq!(role, "pingpong");
    let dir = std::path::PathBuf::from(env("SHM_DIR"));
    let sem = open(&dir, &env("SHM_NAME"), 1, 8);
    let counters = Counters::open(&dir.join("counters"));
    let (me, fd) = sem.attach().unwrap();
    let rounds: u64 = env("SEM_ROUNDS").parse().unwrap();
    let mut lat = Vec::new();
    for token in 1..=rounds {
        if sem.acquire(me, 1, token, 0).unwrap() == Acquire::Queued {
            while !sem.take_decided(me).unwrap().contains(&(token as i64)) {
                wait_bell(fd, Duration::from_secs(5));
            }
            lat.push(now_ns().saturating_sub(counters.at(0).load(SeqCst)));
        }
        std::thread::sleep(Duration::from_micros(200));
        counters.at(0).store(now_ns(), SeqCst);
        sem.release(me, 1).unwrap();
    }
    lat.sort_unstable();
    let q = |p: usize| lat.get(lat.len() * p / 100).copied().unwrap_or(0) / 1000;
    say(format!("HANDOFF {} {} {}", lat.len(), q(50), q(99)));
}

fn per_op(label: &str, ops: u64, t: Instant) {
    let ns = t.elapsed().as_nanos() as f64 / ops as f64;
    println!("{label}: {ns:.0} ns/op, {:.2} M ops/s", 1e3 / ns);
}

#[test]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
fn costs_of_the_calls_in_one_process() {
    let dir = TempDir::new();
    let sem = open(dir.path(), "bench", 1, 1024);
    let (a, _) = sem.attach().unwrap();
    let (b, _) = sem.attach().unwrap();
    let n = 1_000_000u64;
    let t = Instant::now();
    for _ in 0..n {
        assert!(sem.try_acquire(a, 1).unwrap());
        sem.release(a, 1).unwrap();
    }
    per_op("try_acquire + release (uncontended pair)", n, t);
    let t = Instant::now();
    for _ in 0..n {
        let _ = std::hint::black_box(sem.available());
    }
    per_op("available (lock-free, sweep check)", n, t);
    // Hand-off between two owners: queue, release (grant + ring), collect.
    assert!(sem.try_acquire(a, 1).unwrap());
    let m = 200_000u64;
    let t = Instant::now();
    for token in 1..=m {
        let (holder, waiter) = if token % 2 == 1 { (a, b) } else { (b, a) };
        assert_eq!(sem.acquire(waiter, 1, token, 0).unwrap(), Acquire::Queued);
        sem.release(holder, 1).unwrap();
        assert_eq!(sem.take_decided(waiter).unwrap(), vec![token as i64]);
    }
    per_op("acquire (queued) + release (grant, ring) + take_decided", m, t);
}

#[test]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
fn hand_off_latency_between_two_processes() {
    let dir = TempDir::new();
    let _sem = open(dir.path(), "pingpong", 1, 8);
    let _counters = Counters::open(&dir.path().join("counters"));
    let extra = [("SEM_ROUNDS", "2000".to_string())];
    let mut kids: Vec<Child> = (0..2)
        .map(|_| spawn("pingpong", dir.path(), "pingpong", &extra))
        .collect();
    for k in &mut kids {
        let line = k.line("HANDOFF");
        let v: Vec<&str> = line.split(' ').collect();
        println!(
            "release in one process -> grant seen in the other: {} hand-offs, p50 {} us, p99 {} us",
            v[0], v[1], v[2]
        );
    }
}
