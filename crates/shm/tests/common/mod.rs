//! Shared by the segment tests: a small test layout, temp directories, and
//! child processes. A test binary re-executes itself (`current_exe()`) with
//! `SHM_ROLE` naming what the child does; the `child` test of each binary
//! dispatches on it (a no-op when the variable is unset), as
//! `/tmp/xproc/rs/src/main.rs` did.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_shm::{Error, Guard, Layout, Region, Segment};

/// Words of the test layout's region.
pub const W_VALUE: usize = 0; // `value` at init
pub const W_RECOVERED: usize = 8; // times `recover` ran
pub const W_REAPED: usize = 16; // owners reaped
pub const W_UNLINKED: usize = 24; // times `on_unlink` ran
pub const W_EXITED: usize = 32; // owners given back at exit
pub const W_MAGIC: usize = 40; // must be 0x5eed for `validate`

/// A layout with one parameter and counters the hooks bump.
pub struct TestLayout {
    pub value: u64,
    pub max_procs: u32,
}

pub fn layout(value: u64) -> TestLayout {
    TestLayout { value, max_procs: 8 }
}

fn bump(guard: &Guard<'_>, word: usize, by: u64) {
    guard.region().u64_at(word).expect("in range").fetch_add(by, SeqCst);
}

impl Layout for TestLayout {
    const KIND: u32 = 99;

    fn param_names() -> [&'static str; 8] {
        ["value", "", "", "", "", "", "", ""]
    }

    fn params(&self) -> [u64; 8] {
        [self.value, 0, 0, 0, 0, 0, 0, 0]
    }

    fn max_procs(&self) -> u32 {
        self.max_procs
    }

    fn max_owners(&self) -> u32 {
        16
    }

    fn mutable_size(&self) -> usize {
        64
    }

    unsafe fn init(&self, region: Region<'_>) {
        region.u64_at(W_VALUE).unwrap().store(self.value, SeqCst);
        region.u64_at(W_MAGIC).unwrap().store(0x5eed, SeqCst);
    }

    fn validate(&self, region: Region<'_>) -> Result<(), Error> {
        match region.u64_at(W_MAGIC).map(|w| w.load(SeqCst)) {
            Some(0x5eed) => Ok(()),
            other => Err(Error::Damaged(format!("test magic {other:?}"))),
        }
    }

    fn recover(guard: &mut Guard<'_>) {
        bump(guard, W_RECOVERED, 1);
    }

    fn reap(guard: &mut Guard<'_>, _proc: u32, owners: &[u32]) {
        bump(guard, W_REAPED, owners.len() as u64);
    }

    fn on_unlink(guard: &mut Guard<'_>) {
        bump(guard, W_UNLINKED, 1);
    }

    fn on_process_exit(guard: &mut Guard<'_>, _proc: u32, owners: &[u32]) {
        bump(guard, W_EXITED, owners.len() as u64);
    }
}

pub fn word(seg: &Segment, w: usize) -> u64 {
    seg.region().u64_at(w).unwrap().load(SeqCst)
}

/// A private directory under /dev/shm, removed on drop.
pub struct TempDir(pub PathBuf);

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new() -> TempDir {
        let p = PathBuf::from(format!(
            "/dev/shm/sluice-shm-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        set_mode(&p, 0o700);
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A child process of this test binary in some role. Killed and reaped on
/// drop, also when the test fails.
pub struct Child {
    pub child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

pub fn spawn(role: &str, dir: &Path, name: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("SHM_ROLE", role)
        .env("SHM_DIR", dir)
        .env("SHM_NAME", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    // SAFETY: prctl is async-signal-safe. The child dies with the test
    // thread that spawned it, even when the test binary is killed.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    Child { child, out }
}

impl Child {
    /// The rest of the first stdout line that starts with `prefix` (the test
    /// harness prints its own lines too). Panics at EOF: the child died.
    pub fn line(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.out.read_line(&mut line).unwrap();
            assert!(n > 0, "child exited before printing {prefix:?}");
            // The harness may print "test child ... " on the same line.
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].trim().to_owned();
            }
        }
    }

    /// Sends one line to the child's stdin.
    pub fn say(&mut self, what: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{what}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn wait_ok(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` every 100 µs for at most `limit`; returns how long it took.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

// ---- the child side ------------------------------------------------------

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

fn read_stdin_line() -> String {
    let mut s = String::new();
    let _ = std::io::stdin().read_line(&mut s);
    s.trim().to_owned()
}

fn open_here(value: u64) -> Result<Arc<Segment>, Error> {
    let max_procs = env("SHM_MAXPROCS").parse().unwrap_or(8);
    Segment::open(
        Some(Path::new(&env("SHM_DIR"))),
        &env("SHM_NAME"),
        &TestLayout { value, max_procs },
    )
}

fn value() -> u64 {
    env("SHM_VALUE").parse().unwrap_or(3)
}

/// Runs the role named by `SHM_ROLE`, if any. Roles print `KEY value` lines.
pub fn child_main() {
    let Ok(role) = std::env::var("SHM_ROLE") else { return };
    // Every child ends by itself: a parent stuck on a line gets EOF.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(30));
        std::process::exit(3);
    });
    let say = |s: String| {
        println!("{s}");
        let _ = std::io::stdout().flush();
    };
    match role.as_str() {
        // Open when the go file appears; report; stay attached until told.
        "race" => {
            let go = PathBuf::from(env("SHM_GO"));
            let t = Instant::now();
            while !go.exists() && t.elapsed() < Duration::from_secs(10) {
                std::hint::spin_loop();
            }
            match open_here(value()) {
                Ok(seg) => {
                    say(format!("OPENED {} {}", seg.initialised(), seg.generation()));
                    read_stdin_line();
                }
                Err(e) => say(format!("OPENED err {e}")),
            }
        }
        // Open (and optionally attach an owner), then hold until killed or told.
        "hold" => {
            let seg = open_here(value()).unwrap();
            let owner = if env("SHM_OWNER") == "1" {
                Some(seg.attach_owner().unwrap())
            } else {
                None
            };
            say(format!(
                "READY {} {} {}",
                seg.proc_slot(),
                seg.generation(),
                owner.map_or(-1, |(o, _)| i64::from(o))
            ));
            match read_stdin_line().as_str() {
                "closed?" => say(format!("CLOSED {}", seg.is_closed())),
                "exit" => {
                    // Leave through exit(): atexit must give back, not Drop.
                    std::mem::forget(seg);
                    std::process::exit(0);
                }
                _ => {}
            }
            read_stdin_line();
        }
        // Open, then fork a child that does not exec and outlives us.
        "fork" => {
            let seg = open_here(value()).unwrap();
            let _owner = seg.attach_owner().unwrap();
            // SAFETY: the child only sleeps and exits (async-signal-safe).
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: as above.
                unsafe {
                    libc::sleep(20);
                    libc::_exit(0);
                }
            }
            say(format!("FORKED {} {pid}", seg.proc_slot()));
            read_stdin_line();
        }
        // Fork without exec; the child leaves through exit(), running the
        // atexit handler in a process that has no mapping.
        "fork-exit" => {
            let seg = open_here(value()).unwrap();
            let _owner = seg.attach_owner().unwrap();
            // SAFETY: the child calls exit() only.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: as above.
                unsafe { libc::exit(0) };
            }
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            say(format!(
                "CHILD exited={} code={} signal={}",
                libc::WIFEXITED(status),
                libc::WEXITSTATUS(status),
                if libc::WIFSIGNALED(status) {
                    libc::WTERMSIG(status)
                } else {
                    0
                }
            ));
            say(format!("STILL {}", seg.owners_of(seg.proc_slot()).len()));
        }
        // A thread holds the lock while the main thread exits: the atexit
        // handler must give up after its 100 ms timedlock, not hang.
        "exit-locked" => {
            let seg = open_here(value()).unwrap();
            let _owner = seg.attach_owner().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let held = Arc::clone(&seg);
            std::thread::spawn(move || {
                let _guard = held.lock().unwrap();
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_secs(20));
            });
            rx.recv().unwrap();
            say(format!("EXITING {}", seg.proc_slot()));
            std::process::exit(0);
        }
        // Open, take the lock, hold it until killed.
        "lock" => {
            let seg = open_here(value()).unwrap();
            let guard = seg.lock().unwrap();
            say("LOCKED".into());
            std::thread::sleep(Duration::from_secs(40));
            drop(guard);
        }
        // Attach an owner, then wait (bounded) for one ring on its bell.
        "listen" => {
            let seg = open_here(value()).unwrap();
            let (owner, fd) = seg.attach_owner().unwrap();
            say(format!("OWNER {owner}"));
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
            say(format!("RUNG {}", n == 1));
            read_stdin_line();
        }
        // Open with no `dir`: `$SLUICE_SHM_DIR` or the default decides.
        "open-env" => match Segment::open(None, &env("SHM_NAME"), &layout(value())) {
            Ok(seg) => say(format!("DIR {}", seg.dir().display())),
            Err(e) => say(format!("DIR err {e}")),
        },
        // Open and report the error, if any.
        "try-open" => match open_here(value()) {
            Ok(seg) => say(format!("RESULT ok {}", seg.initialised())),
            Err(e) => say(format!("RESULT err {e}")),
        },
        // Take the lifetime lock exclusively and half-write a header, as an
        // initialiser killed mid-way would leave it.
        "half-init" => {
            let path = Path::new(&env("SHM_DIR")).join(env("SHM_NAME"));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap();
            set_mode(&path, 0o600);
            use std::os::fd::AsRawFd;
            // SAFETY: zeroed flock is valid; OFD lock on byte 0.
            let mut l: libc::flock = unsafe { std::mem::zeroed() };
            l.l_type = libc::F_WRLCK as i16;
            l.l_whence = libc::SEEK_SET as i16;
            l.l_len = 1;
            // SAFETY: valid flock.
            assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut l) }, 0);
            f.set_len(8192).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[7u8; 32], 8).unwrap(); // fields, but no magic yet
            say("HALF".into());
            std::thread::sleep(Duration::from_secs(40));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}
