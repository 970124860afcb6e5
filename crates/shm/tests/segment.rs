//! The segment with real processes: create race, stale after SIGKILL, killed
//! mid-init, parameter mismatch, damaged bytes, permissions, process limit,
//! unlink, the default directory (design §1, §5).

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::*;
use sluice_shm::{Error, Segment};

#[test]
fn child() {
    child_main();
}

fn open(dir: &TempDir, name: &str, value: u64) -> Result<std::sync::Arc<Segment>, Error> {
    Segment::open(Some(dir.path()), name, &layout(value))
}

#[test]
fn a_create_race_has_exactly_one_initialiser_and_one_generation() {
    let dir = TempDir::new();
    for round in 0..30 {
        let name = format!("race{round}");
        let go = dir.path().join(format!("go{round}"));
        let mut kids: Vec<Child> = (0..3)
            .map(|_| spawn("race", dir.path(), &name, &[("SHM_GO", go.display().to_string())]))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&go, b"").unwrap();
        let answers: Vec<String> = kids.iter_mut().map(|k| k.line("OPENED")).collect();
        for k in &mut kids {
            k.say("bye");
        }
        let inits = answers.iter().filter(|a| a.starts_with("true")).count();
        let gens: std::collections::HashSet<&str> =
            answers.iter().map(|a| a.split(' ').nth(1).unwrap_or("?")).collect();
        assert_eq!(inits, 1, "round {round}: {answers:?}");
        assert_eq!(gens.len(), 1, "round {round}: {answers:?}");
        for k in &mut kids {
            k.wait_ok();
        }
    }
}

#[test]
fn a_segment_whose_processes_were_all_killed_starts_clean() {
    let dir = TempDir::new();
    let mut holder = spawn("hold", dir.path(), "stale", &[]);
    let ready = holder.line("READY");
    let old_gen: u64 = ready.split(' ').nth(1).unwrap().parse().unwrap();
    holder.kill9();
    let seg = open(&dir, "stale", 3).unwrap();
    assert!(seg.initialised(), "stale segment was not re-initialised");
    assert_ne!(seg.generation(), old_gen);
    assert_eq!(word(&seg, W_REAPED), 0, "a clean start inherits nothing");
    // Stale with other parameters: nobody is attached, so they win.
    drop(seg);
    let seg = open(&dir, "stale", 5).unwrap();
    assert!(seg.initialised());
    assert_eq!(word(&seg, W_VALUE), 5);
}

#[test]
fn an_initialiser_killed_mid_way_leaves_a_segment_the_next_open_initialises() {
    let dir = TempDir::new();
    let mut half = spawn("half-init", dir.path(), "mid", &[]);
    half.line("HALF");
    // While it holds the lifetime lock exclusively, an open waits (2 s), then gives up.
    let t = std::time::Instant::now();
    assert!(matches!(open(&dir, "mid", 3), Err(Error::Busy)));
    assert!(t.elapsed() >= Duration::from_secs(2));
    half.kill9();
    let seg = open(&dir, "mid", 3).unwrap();
    assert!(seg.initialised());
    assert_eq!(word(&seg, W_VALUE), 3);
}

#[test]
fn a_parameter_mismatch_names_the_field_and_both_values() {
    let dir = TempDir::new();
    let seg = open(&dir, "mm", 3).unwrap();
    // Same process: through the registry.
    let e = open(&dir, "mm", 4).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "value",
                existing: 3,
                requested: 4
            }
        ),
        "{e:?}"
    );
    // Another process: through the header.
    let mut other = spawn("try-open", dir.path(), "mm", &[("SHM_VALUE", "4".into())]);
    let got = other.line("RESULT");
    assert_eq!(
        got,
        "err value mismatch: the existing segment has value 3, this open asked for 4"
    );
    // A different kind is refused by kind.
    struct Other;
    impl sluice_shm::Layout for Other {
        const KIND: u32 = 7;
        fn param_names() -> [&'static str; 8] {
            [""; 8]
        }
        fn params(&self) -> [u64; 8] {
            [0; 8]
        }
        fn mutable_size(&self) -> usize {
            64
        }
        unsafe fn init(&self, _: sluice_shm::Region<'_>) {}
        fn validate(&self, _: sluice_shm::Region<'_>) -> Result<(), Error> {
            Ok(())
        }
    }
    let e = Segment::open(Some(dir.path()), "mm", &Other).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "kind",
                existing: 99,
                requested: 7
            }
        ),
        "{e:?}"
    );
    drop(seg);
}

/// A tiny xorshift: the tests need varied bytes, not good randomness.
fn noise(seed: &mut u64) -> u8 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed as u8
}

#[test]
fn random_bytes_in_the_header_are_refused_attached_or_not_and_unlink_frees_the_name() {
    let dir = TempDir::new();
    let path = dir.path().join("dmg");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..40 {
        let mut holder = spawn("hold", dir.path(), "dmg", &[]);
        holder.line("READY");
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let at = u64::from(noise(&mut seed)) % 240;
        let len = 1 + usize::from(noise(&mut seed)) % 16;
        let bytes: Vec<u8> = (0..len).map(|_| noise(&mut seed) | 1).collect();
        f.write_all_at(&bytes, at).unwrap();
        // While attached: refused with a reason, no crash.
        let e = open(&dir, "dmg", 3).unwrap_err();
        assert!(matches!(e, Error::Damaged(_)), "round {round}: {e:?}");
        assert!(e.to_string().contains("unlink the name"));
        holder.kill9();
        // Nobody attached: still refused, never silently reset.
        assert!(matches!(open(&dir, "dmg", 3), Err(Error::Damaged(_))), "round {round}");
        assert!(Segment::unlink::<TestLayout>(Some(dir.path()), "dmg").unwrap());
        assert!(!path.exists());
    }
    // Garbage over the whole file: refused too.
    std::fs::write(&path, (0..20_000).map(|_| noise(&mut seed)).collect::<Vec<u8>>()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(open(&dir, "dmg", 3), Err(Error::Damaged(_))));
    // A file shorter than a header.
    std::fs::write(&path, b"SLUICESH").unwrap();
    assert!(matches!(open(&dir, "dmg", 3), Err(Error::Damaged(_))));
}

#[test]
fn damaged_slots_of_a_segment_in_use_are_refused_at_open() {
    let dir = TempDir::new();
    let mut holder = spawn("hold", dir.path(), "slots", &[]);
    holder.line("READY");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("slots"))
        .unwrap();
    // Process slot 3's state word: 4096 (lock) + 64 (state) + 64 + 3 * 64.
    f.write_all_at(&7u32.to_le_bytes(), 4096 + 128 + 3 * 64).unwrap();
    let e = open(&dir, "slots", 3).unwrap_err();
    assert!(e.to_string().contains("process slot 3 has state 7"), "{e}");
}

#[test]
fn another_users_file_or_directory_is_refused() {
    if !is_root() {
        eprintln!("skipped: chown needs root (the mode tests cover the non-root branch)");
        return;
    }
    let dir = TempDir::new();
    let path = dir.path().join("foreign");
    std::fs::write(&path, b"").unwrap();
    common::set_mode(&path, 0o600);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let e = open(&dir, "foreign", 3).unwrap_err();
    assert!(
        matches!(&e, Error::Permission(m) if m.contains("owned by another user (uid 65534")),
        "{e}"
    );
    let sub = TempDir::new();
    std::os::unix::fs::chown(sub.path(), Some(65534), None).unwrap();
    let e = open(&sub, "x", 3).unwrap_err();
    assert!(
        matches!(&e, Error::Permission(m) if m.contains("owned by uid 65534")),
        "{e}"
    );
}

#[test]
fn a_file_or_directory_open_to_others_or_a_symlink_is_refused() {
    let dir = TempDir::new();
    let path = dir.path().join("open");
    std::fs::write(&path, b"").unwrap();
    common::set_mode(&path, 0o644);
    let e = open(&dir, "open", 3).unwrap_err();
    assert!(matches!(&e, Error::Permission(m) if m.contains("mode 644")), "{e}");

    let loose = TempDir::new();
    common::set_mode(loose.path(), 0o755);
    let e = open(&loose, "x", 3).unwrap_err();
    assert!(matches!(&e, Error::Permission(m) if m.contains("mode 755")), "{e}");

    let target = TempDir::new();
    let link = Path::new(&format!("{}-link", target.path().display())).to_path_buf();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target.path(), &link).unwrap();
    let e = Segment::open(Some(&link), "x", &layout(3)).unwrap_err();
    std::fs::remove_file(&link).unwrap();
    assert!(matches!(e, Error::Permission(_)), "{e:?}");

    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("sym")).unwrap();
    assert!(matches!(open(&dir, "sym", 3), Err(Error::Permission(_))));
}

#[test]
fn a_new_segment_file_is_0600_and_the_directory_0700() {
    let dir = TempDir::new();
    let sub = dir.path().join("made");
    let seg = Segment::open(Some(&sub), "m", &layout(1)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sub), 0o700);
    assert_eq!(mode(&sub.join("m")), 0o600);
    drop(seg);
}

#[test]
fn invalid_names_are_refused_before_touching_the_filesystem() {
    let dir = TempDir::new();
    for bad in ["", "../x", "a.b1", "a/b", "-x"] {
        assert!(matches!(open(&dir, bad, 1), Err(Error::InvalidName(_))), "{bad:?}");
    }
}

#[test]
fn the_process_limit_refuses_one_process_too_many() {
    let dir = TempDir::new();
    let one = sluice_shm::Segment::open(Some(dir.path()), "lim", &TestLayout { value: 3, max_procs: 1 }).unwrap();
    let mut other = spawn("try-open", dir.path(), "lim", &[("SHM_MAXPROCS", "1".into())]);
    assert_eq!(
        other.line("RESULT"),
        "err process limit reached: all 1 process slots of the segment are in use"
    );
    let mut other = spawn("try-open", dir.path(), "lim", &[]);
    assert!(other.line("RESULT").contains("max_procs mismatch"));
    drop(one);
}

#[test]
fn one_mapping_per_process_every_open_gets_the_same_segment() {
    let dir = TempDir::new();
    let a = open(&dir, "same", 3).unwrap();
    let b = open(&dir, "same", 3).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let t = std::thread::spawn({
        let p = dir.path().to_path_buf();
        move || Segment::open(Some(&p), "same", &layout(3)).unwrap().generation()
    });
    assert_eq!(t.join().unwrap(), a.generation());
}

#[test]
fn unlink_closes_the_primitive_for_everyone_and_frees_the_name() {
    let dir = TempDir::new();
    let mine = open(&dir, "gone", 3).unwrap();
    let (owner, fd) = mine.attach_owner().unwrap();
    // SAFETY: the fd is ours to close.
    unsafe { libc::close(fd) };
    let bell = dir.path().join(format!("gone.b{owner}"));
    assert!(bell.exists());
    let mut other = spawn("hold", dir.path(), "gone", &[]);
    let old_gen: u64 = other.line("READY").split(' ').nth(1).unwrap().parse().unwrap();

    assert!(Segment::unlink::<TestLayout>(Some(dir.path()), "gone").unwrap());
    assert!(mine.is_closed());
    assert!(mine.is_unlinked());
    assert_eq!(word(&mine, W_UNLINKED), 1, "on_unlink ran once, under the lock");
    assert!(!dir.path().join("gone").exists());
    assert!(!bell.exists(), "bells are removed with the name");
    assert!(matches!(mine.attach_owner(), Err(Error::Closed)));
    other.say("closed?");
    assert_eq!(other.line("CLOSED"), "true");

    // The name is free: a new open is a different segment.
    let fresh = open(&dir, "gone", 3).unwrap();
    assert!(fresh.initialised());
    assert_ne!(fresh.generation(), old_gen);
    assert!(!fresh.is_closed());
    drop(fresh);
    assert!(Segment::unlink::<TestLayout>(Some(dir.path()), "gone").unwrap());
    assert!(
        !Segment::unlink::<TestLayout>(Some(dir.path()), "gone").unwrap(),
        "no such name: false"
    );
    assert!(!Segment::unlink::<TestLayout>(Some(&dir.path().join("nodir")), "gone").unwrap());
}

#[test]
fn unlink_from_a_process_that_never_opened_it_reaches_the_others() {
    let dir = TempDir::new();
    let mut other = spawn("hold", dir.path(), "far", &[]);
    other.line("READY");
    // Unlink from this process, which has no mapping of it.
    assert!(Segment::unlink::<TestLayout>(Some(dir.path()), "far").unwrap());
    other.say("closed?");
    assert_eq!(other.line("CLOSED"), "true");
    assert!(!dir.path().join("far").exists());
}

#[test]
fn the_default_directory_is_private_and_per_user() {
    // The one test on the real default path; it cleans up after itself.
    let name = format!("shm-test-default-{}", std::process::id());
    let seg = Segment::open(None, &name, &layout(1)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let want = format!("/dev/shm/sluice-{}", unsafe { libc::geteuid() });
    assert_eq!(seg.dir(), Path::new(&want));
    let md = std::fs::metadata(&want).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    drop(seg);
    assert!(Segment::unlink::<TestLayout>(None, &name).unwrap());
    // Leave the directory if others (other tests, Node) use it.
    let _ = std::fs::remove_dir(&want);
}

#[test]
fn a_full_filesystem_is_a_clear_no_space_error_not_a_sigbus() {
    // Hazard 1: `ftruncate` would succeed here and the first touch SIGBUS.
    let mnt = std::path::PathBuf::from(format!("/tmp/sluice-shm-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let _ = std::fs::remove_dir(&mnt);
        eprintln!("skipped: cannot mount a small tmpfs (needs root)");
        return;
    }
    struct Big;
    impl sluice_shm::Layout for Big {
        const KIND: u32 = 98;
        fn param_names() -> [&'static str; 8] {
            [""; 8]
        }
        fn params(&self) -> [u64; 8] {
            [0; 8]
        }
        fn mutable_size(&self) -> usize {
            1 << 20
        }
        unsafe fn init(&self, _: sluice_shm::Region<'_>) {}
        fn validate(&self, _: sluice_shm::Region<'_>) -> Result<(), Error> {
            Ok(())
        }
    }
    let result = Segment::open(Some(&mnt), "big", &Big).map(|_| ());
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    let _ = std::fs::remove_dir(&mnt);
    let e = result.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::NoSpace(_)), "{e:?}");
    assert!(
        msg.contains(&mnt.display().to_string()) && msg.contains("64 KiB"),
        "{msg}"
    );
}

#[test]
fn sluice_shm_dir_overrides_the_default_with_the_same_checks() {
    let dir = TempDir::new();
    let env = [("SLUICE_SHM_DIR", dir.path().display().to_string())];
    let mut child = spawn("open-env", dir.path(), "env", &env);
    assert_eq!(child.line("DIR"), dir.path().display().to_string());
    child.wait_ok();
    assert!(dir.path().join("env").exists());
    common::set_mode(dir.path(), 0o770);
    let mut child = spawn("open-env", dir.path(), "env", &env);
    assert!(child.line("DIR").contains("mode 770"));
}

#[test]
fn limits_out_of_range_are_the_callers_error() {
    let dir = TempDir::new();
    let e = Segment::open(
        Some(dir.path()),
        "lim",
        &TestLayout {
            value: 1,
            max_procs: 300,
        },
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "invalid call: max_procs 300 is outside 1..=256");
}

/// Rewrites the segment file's layout version and seals the header again
/// (FNV-1a over its first 248 bytes, in word 31): a sound header of another
/// sluice, as one left in /dev/shm from before an upgrade.
fn restamp_version(path: &Path, version: u32) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut header = [0u8; 256];
    f.read_exact_at(&mut header, 0).unwrap();
    header[8..12].copy_from_slice(&version.to_le_bytes());
    let sum = header[..248].iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    header[248..256].copy_from_slice(&sum.to_le_bytes());
    f.write_all_at(&header, 0).unwrap();
}

#[test]
fn a_segment_of_another_layout_version_is_refused_while_in_use_and_starts_clean_once_nobody_has_it() {
    let dir = TempDir::new();
    let path = dir.path().join("old");
    let mut holder = spawn("hold", dir.path(), "old", &[]);
    holder.line("READY");
    restamp_version(&path, 1);
    // Another sluice still has it open: refused, naming both versions.
    let e = open(&dir, "old", 3).unwrap_err();
    assert!(e.to_string().contains("layout version 1, this sluice reads 2"), "{e}");
    holder.kill9();
    // Nobody has it any more: an upgrade must not leave the name unusable.
    // A child that another test of this binary forks at the same moment
    // holds a copy of every open fd (and so of its lock) until its exec: the
    // refused open above may still be seen in use for a moment, so this one
    // is tried again for up to 2 s before it must succeed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let seg = loop {
        match open(&dir, "old", 3) {
            Err(Error::Damaged(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            result => break result.unwrap(),
        }
    };
    assert!(seg.initialised(), "the old segment was not started clean");
    drop(seg);
    // Damage stays refused, attached or not (the checksum tells it apart).
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0x5a], 40).unwrap();
    assert!(matches!(open(&dir, "old", 3), Err(Error::Damaged(_))));
}
