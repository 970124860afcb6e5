//! The header page, layout version 2 (design §1.3), and its validation (§1.4).
//!
//! Version 2 (eventual fairness) grew the named semaphore's wait entry from
//! 64 to 72 bytes (`queued_at`); the header itself is as in version 1. A
//! segment of version 1, still open in a process of an older sluice, is
//! refused as damaged ("layout version 1, this sluice reads 2": a
//! `SegmentError` in JavaScript) rather than misread; one that nobody has
//! open any more starts clean, as a stale segment of this version does.
//!
//! The header is the first 256 bytes of a 4096-byte page and never changes
//! after initialisation, so its FNV-1a checksum stays valid. It is read as 32
//! little-endian words through [`Region`] atomics (another process, or a
//! damaged file, may hold anything there) and every offset it stores is
//! recomputed from the parameters and compared, never trusted.
//!
//! ```text
//! 0 magic "SLUICESH" (written last) | 8 layout_version u32 | 12 kind u32
//! 16 total_size u64 | 24 header_size u32 | 28 abi_tag u32 (arch 8 | libc 8 | sizeof mutex 16)
//! 32 generation u64 (random, non-zero) | 40 created_unix_ms | 48 clock_offset_ns (REALTIME - MONOTONIC)
//! 56 pidns_ino | 64 max_procs u32 | 68 max_owners u32 | 72 reserved (max_waiters: the layout's params) | 76 reserved
//! 80 kind params 8 x u64 | 144 offsets: lock, state, procs, owners, entries, table (0), end, reserved
//! 208 timens_ino | 216..248 reserved | 248 checksum = FNV-1a-64 of bytes [0, 248)
//! ```
//!
//! After the header page, at 64-byte boundaries: the robust mutex (64 B), the
//! segment's state block (64 B), `max_procs` process slots and `max_owners`
//! owner slots of 64 B each, then the layout's region.

use std::sync::atomic::Ordering::Relaxed;

use crate::{Error, Region};

pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SLUICESH");
pub(crate) const LAYOUT_VERSION: u32 = 2;
pub(crate) const HEADER_SIZE: usize = 4096;
/// Bytes covered by the checksum; the checksum word follows.
const CHECKED: usize = 248;
pub(crate) const MAX_PROCS: u32 = 256;
pub(crate) const MAX_OWNERS: u32 = 1024;
pub(crate) const SLOT: usize = 64;
/// Room for the mutex; `sizeof(pthread_mutex_t)` is 40 on glibc x86_64.
const LOCK_ROOM: usize = 64;
const STATE_ROOM: usize = 64;
/// The primitive's region may be at most this big (a limit against a damaged
/// or absurd size reaching `posix_fallocate`).
const MAX_REGION: usize = 1 << 30;

/// Where each part of a segment lives, computed from the parameters alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub max_procs: u32,
    pub max_owners: u32,
    pub lock: usize,
    pub state: usize,
    pub procs: usize,
    pub owners: usize,
    pub entries: usize,
    pub end: usize,
}

impl Geometry {
    pub fn new(max_procs: u32, max_owners: u32, mutable_size: usize) -> Result<Geometry, Error> {
        if !(1..=MAX_PROCS).contains(&max_procs) {
            return Err(Error::Damaged(format!(
                "max_procs {max_procs} is outside 1..={MAX_PROCS}"
            )));
        }
        if !(1..=MAX_OWNERS).contains(&max_owners) {
            return Err(Error::Damaged(format!(
                "max_owners {max_owners} is outside 1..={MAX_OWNERS}"
            )));
        }
        if mutable_size > MAX_REGION {
            return Err(Error::Damaged(format!(
                "region of {mutable_size} bytes is over {MAX_REGION}"
            )));
        }
        let lock = HEADER_SIZE;
        let state = lock + LOCK_ROOM;
        let procs = state + STATE_ROOM;
        let owners = procs + max_procs as usize * SLOT;
        let entries = owners + max_owners as usize * SLOT;
        let end = entries + mutable_size.div_ceil(SLOT) * SLOT;
        Ok(Geometry {
            max_procs,
            max_owners,
            lock,
            state,
            procs,
            owners,
            entries,
            end,
        })
    }
}

/// The ABI tag (hazard 6): a glibc and a musl process must not share a mutex.
pub(crate) fn abi_tag() -> u32 {
    let arch: u32 = if cfg!(target_arch = "x86_64") {
        1
    } else if cfg!(target_arch = "aarch64") {
        2
    } else {
        0xff
    };
    let libc: u32 = if cfg!(target_env = "gnu") {
        1
    } else if cfg!(target_env = "musl") {
        2
    } else {
        0xff
    };
    let size = std::mem::size_of::<libc::pthread_mutex_t>() as u32 & 0xffff;
    arch << 24 | libc << 16 | size
}

/// FNV-1a, 64 bits.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: u32,
    pub total_size: u64,
    pub abi_tag: u32,
    pub generation: u64,
    pub created_unix_ms: u64,
    pub clock_offset_ns: u64,
    pub pidns_ino: u64,
    pub timens_ino: u64,
    pub max_procs: u32,
    pub max_owners: u32,
    pub params: [u64; 8],
    pub offsets: [u64; 8],
}

/// What was found at the start of a file.
#[derive(Debug)]
pub(crate) enum Found {
    /// No magic: never initialised, or the initialiser died before the end.
    Blank,
    /// A complete, self-consistent header (parameters not yet compared).
    Valid(Header),
    /// A sound header (magic and checksum hold) of another layout version:
    /// a segment made by another sluice, typically one from before an
    /// upgrade. Versions keep the magic, the checksum word and what it
    /// covers where they are, so this is told apart from damage.
    OtherVersion(u32),
}

/// The refusal of a segment of `version` that others are still attached to.
pub(crate) fn other_version(version: u32) -> Error {
    Error::Damaged(format!("layout version {version}, this sluice reads {LAYOUT_VERSION}"))
}

fn words(region: Region<'_>) -> Option<[u64; 32]> {
    let mut w = [0u64; 32];
    for (i, slot) in w.iter_mut().enumerate() {
        *slot = region.u64_at(i * 8)?.load(Relaxed);
    }
    Some(w)
}

fn lo(w: u64) -> u32 {
    w as u32
}

fn hi(w: u64) -> u32 {
    (w >> 32) as u32
}

impl Header {
    /// Reads and checks the header at the start of `region` (the whole
    /// mapping, `file_size` bytes long).
    pub fn read(region: Region<'_>, file_size: u64) -> Result<Found, Error> {
        let Some(w) = words(region) else {
            return Err(Error::Damaged(format!(
                "file of {file_size} bytes is shorter than its header"
            )));
        };
        if w[0] == 0 {
            return Ok(Found::Blank);
        }
        if w[0] != MAGIC {
            return Err(Error::Damaged(format!("bad magic {:#018x}", w[0])));
        }
        // The checksum before the version: a sound header of another version
        // (an older sluice's segment) is not damage, random bytes are.
        let mut bytes = [0u8; 256];
        for (i, word) in w.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        let sum = fnv1a(&bytes[..CHECKED]);
        if sum != w[31] {
            return Err(Error::Damaged(format!(
                "header checksum {:#018x}, expected {sum:#018x}",
                w[31]
            )));
        }
        let version = lo(w[1]);
        if version != LAYOUT_VERSION {
            return Ok(Found::OtherVersion(version));
        }
        let h = Header {
            kind: hi(w[1]),
            total_size: w[2],
            abi_tag: hi(w[3]),
            generation: w[4],
            created_unix_ms: w[5],
            clock_offset_ns: w[6],
            pidns_ino: w[7],
            max_procs: lo(w[8]),
            max_owners: hi(w[8]),
            params: w[10..18].try_into().expect("8 words"),
            offsets: w[18..26].try_into().expect("8 words"),
            timens_ino: w[26],
        };
        if lo(w[3]) as usize != HEADER_SIZE {
            return Err(Error::Damaged(format!(
                "header size {}, expected {HEADER_SIZE}",
                lo(w[3])
            )));
        }
        let mine = abi_tag();
        if h.abi_tag != mine {
            return Err(Error::Damaged(format!(
                "made by another ABI (tag {:#010x}, this process {mine:#010x}: arch, libc or pthread_mutex_t size differ)",
                h.abi_tag
            )));
        }
        if h.generation == 0 {
            return Err(Error::Damaged("generation 0".into()));
        }
        if h.total_size != file_size {
            return Err(Error::Damaged(format!(
                "header says {} bytes, the file has {file_size}",
                h.total_size
            )));
        }
        // The offsets must at least describe this file; `check_geometry`
        // compares them with the ones the opener computes.
        let end = h.offsets[6];
        let ordered = h.offsets[..5].windows(2).all(|p| p[0] < p[1]) && h.offsets[4] <= end;
        if !ordered || end != h.total_size || h.offsets[0] != HEADER_SIZE as u64 {
            return Err(Error::Damaged(format!(
                "region offsets {:?} do not fit the file",
                &h.offsets[..7]
            )));
        }
        Geometry::new(h.max_procs, h.max_owners, 0)?;
        Ok(Found::Valid(h))
    }

    /// The offsets this header must store for geometry `g`.
    pub fn offsets_of(g: &Geometry) -> [u64; 8] {
        [g.lock, g.state, g.procs, g.owners, g.entries, 0, g.end, 0].map(|o| o as u64)
    }

    /// Writes the header into `region` (zeroed), the checksum, then the magic
    /// last: a header with a magic is complete.
    pub fn write(&self, region: Region<'_>) -> Option<()> {
        let mut w = [0u64; 32];
        w[1] = u64::from(LAYOUT_VERSION) | u64::from(self.kind) << 32;
        w[2] = self.total_size;
        w[3] = HEADER_SIZE as u64 | u64::from(self.abi_tag) << 32;
        w[4] = self.generation;
        w[5] = self.created_unix_ms;
        w[6] = self.clock_offset_ns;
        w[7] = self.pidns_ino;
        w[8] = u64::from(self.max_procs) | u64::from(self.max_owners) << 32;
        w[10..18].copy_from_slice(&self.params);
        w[18..26].copy_from_slice(&self.offsets);
        w[26] = self.timens_ino;
        w[0] = MAGIC;
        let mut bytes = [0u8; 256];
        for (i, word) in w.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        w[31] = fnv1a(&bytes[..CHECKED]);
        for (i, word) in w.iter().enumerate().skip(1) {
            region.u64_at(i * 8)?.store(*word, Relaxed);
        }
        // Release: pairs with nothing in-process; the lifetime-lock downgrade
        // (a syscall) is what orders this before another process's read.
        region.u64_at(0)?.store(MAGIC, std::sync::atomic::Ordering::Release);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn sample(g: &Geometry) -> Header {
        Header {
            kind: 1,
            total_size: g.end as u64,
            abi_tag: abi_tag(),
            generation: 42,
            created_unix_ms: 1,
            clock_offset_ns: 2,
            pidns_ino: 3,
            timens_ino: 4,
            max_procs: g.max_procs,
            max_owners: g.max_owners,
            params: [3, 0, 0, 0, 0, 0, 0, 0],
            offsets: Header::offsets_of(g),
        }
    }

    #[test]
    fn a_written_header_reads_back_equal() {
        let g = Geometry::new(64, 256, 1000).unwrap();
        let words: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
        let r = Region::from_words(&words);
        let h = sample(&g);
        h.write(r).unwrap();
        match Header::read(r, g.end as u64).unwrap() {
            Found::Valid(back) => assert_eq!(back, h),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn any_flipped_byte_of_the_header_is_refused() {
        let g = Geometry::new(4, 4, 64).unwrap();
        let words: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
        let r = Region::from_words(&words);
        sample(&g).write(r).unwrap();
        for byte in 0..256 {
            let w = r.u64_at(byte / 8 * 8).unwrap();
            let before = w.load(Relaxed);
            w.store(before ^ (0x5a << (byte % 8 * 8)), Relaxed);
            assert!(
                matches!(Header::read(r, g.end as u64), Err(Error::Damaged(_))),
                "byte {byte}"
            );
            w.store(before, Relaxed);
        }
    }

    fn refused(h: &Header, g: &Geometry) -> String {
        let words: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
        let r = Region::from_words(&words);
        h.write(r).unwrap();
        match Header::read(r, g.end as u64) {
            Err(Error::Damaged(why)) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn another_abi_or_a_wrong_size_with_a_valid_checksum_is_refused_with_the_reason() {
        let g = Geometry::new(4, 4, 64).unwrap();
        let mut h = sample(&g);
        h.abi_tag ^= 0x0001_0000; // musl instead of glibc, say
        assert!(refused(&h, &g).contains("another ABI"));
        let mut h = sample(&g);
        h.total_size += 64;
        assert!(refused(&h, &g).contains("the file has"));
        let mut h = sample(&g);
        h.offsets[2] = h.offsets[4] + 64; // out of order
        assert!(refused(&h, &g).contains("offsets"));
        let mut h = sample(&g);
        h.max_procs = 0;
        assert!(refused(&h, &g).contains("max_procs 0"));
    }

    #[test]
    fn another_layout_version_is_named() {
        let g = Geometry::new(4, 4, 64).unwrap();
        let words: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
        let r = Region::from_words(&words);
        sample(&g).write(r).unwrap();
        r.u64_at(8).unwrap().store(1 | 1 << 32, Relaxed);
        // The checksum no longer holds: damage, whatever the version says.
        match Header::read(r, g.end as u64) {
            Err(Error::Damaged(why)) => assert!(why.starts_with("header checksum"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Sealed again: a sound header of version 1, named as such.
        let mut bytes = [0u8; 256];
        for i in 0..32 {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&r.u64_at(i * 8).unwrap().load(Relaxed).to_le_bytes());
        }
        r.u64_at(31 * 8).unwrap().store(fnv1a(&bytes[..CHECKED]), Relaxed);
        assert!(matches!(Header::read(r, g.end as u64), Ok(Found::OtherVersion(1))));
        assert!(other_version(1)
            .to_string()
            .contains("layout version 1, this sluice reads 2"));
    }

    #[test]
    fn a_header_without_magic_is_blank_and_a_short_file_is_damaged() {
        let words: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
        assert!(matches!(
            Header::read(Region::from_words(&words), 64),
            Err(Error::Damaged(_))
        ));
        let words: Vec<AtomicU64> = (0..32).map(|_| AtomicU64::new(0)).collect();
        assert!(matches!(
            Header::read(Region::from_words(&words), 256),
            Ok(Found::Blank)
        ));
    }

    #[test]
    fn geometry_refuses_limits_out_of_range() {
        assert!(Geometry::new(0, 1, 0).is_err());
        assert!(Geometry::new(257, 1, 0).is_err());
        assert!(Geometry::new(1, 1025, 0).is_err());
        let g = Geometry::new(64, 256, 100).unwrap();
        assert_eq!(g.entries % 64, 0);
        assert_eq!(g.end, 4096 + 128 + 64 * 64 + 256 * 64 + 128);
    }
}
