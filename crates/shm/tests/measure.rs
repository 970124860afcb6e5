//! Figures for the report, not assertions (ignored by default):
//! `cargo test --release -p sluice-shm --test measure -- --ignored --nocapture`
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_shm::Segment;

#[test]
fn child() {
    child_main();
}

fn per_op(n: u32, t: Instant) -> String {
    format!("{:.1} ns", t.elapsed().as_nanos() as f64 / f64::from(n))
}

#[test]
#[ignore = "measurement: run by hand"]
fn measure() {
    let dir = TempDir::new();
    let t = Instant::now();
    let seg = Segment::open(Some(dir.path()), "m", &layout(3)).unwrap();
    eprintln!("open, creating: {:?}", t.elapsed());
    let t = Instant::now();
    let again = Segment::open(Some(dir.path()), "m", &layout(3)).unwrap();
    eprintln!("open, same process (registry): {:?}", t.elapsed());
    drop(again);

    let n = 1_000_000;
    let t = Instant::now();
    for _ in 0..n {
        drop(seg.lock().unwrap());
    }
    eprintln!("lock + unlock, uncontended: {}", per_op(n, t));

    let (owner, fd) = seg.attach_owner().unwrap();
    let t = Instant::now();
    for _ in 0..10_000 {
        seg.ring(owner);
    }
    eprintln!(
        "ring own owner (pipe fills: EAGAIN after 64 KiB): {}",
        per_op(10_000, t)
    );
    // SAFETY: our dup.
    unsafe { libc::close(fd) };

    let mut other = spawn("listen", dir.path(), "m", &[]);
    let theirs: u32 = other.line("OWNER").parse().unwrap();
    let t = Instant::now();
    seg.ring(theirs);
    eprintln!(
        "first ring of another process's owner (open + write): {:?}",
        t.elapsed()
    );
    other.line("RUNG");
    let t = Instant::now();
    for _ in 0..10_000 {
        seg.ring(theirs);
    }
    eprintln!("ring another process's owner, cached writer: {}", per_op(10_000, t));

    let t = Instant::now();
    for _ in 0..10_000 {
        std::hint::black_box(seg.dead_procs());
    }
    eprintln!(
        "dead_procs (probe of {} live slot(s), 8 slots): {}",
        1,
        per_op(10_000, t)
    );

    let mut rounds = Vec::new();
    for _ in 0..10 {
        let mut victim = spawn("hold", dir.path(), "m", &[]);
        let p: u32 = victim.line("READY").split(' ').next().unwrap().parse().unwrap();
        let t = Instant::now();
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(victim.child.id() as i32, libc::SIGKILL) };
        let seen = wait_until(Duration::from_secs(2), || seg.dead_procs().contains(&p)).unwrap();
        rounds.push(seen.max(t.elapsed().min(seen)));
        victim.kill9();
        let mut g = seg.lock().unwrap();
        seg.reap_proc(&mut g, p);
    }
    rounds.sort();
    eprintln!(
        "SIGKILL of a (small Rust) process -> its slot seen dead by the probe: p50 {:?}, max {:?} (10 rounds)",
        rounds[5], rounds[9]
    );

    let mut opens = Vec::new();
    for i in 0..10 {
        let name = format!("o{i}");
        let _mine = Segment::open(Some(dir.path()), &name, &layout(3)).unwrap();
        let mut other = spawn("try-open", dir.path(), &name, &[("SHM_VALUE", "3".into())]);
        let t = Instant::now();
        other.line("RESULT");
        opens.push(t.elapsed());
    }
    opens.sort();
    eprintln!(
        "process start + open of an existing segment: p50 {:?} (includes exec)",
        opens[5]
    );
}
