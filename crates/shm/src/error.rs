//! The one error type of the crate. Messages are lowercase, without a trailing
//! period, and say what to do when there is something to do.

use std::fmt;

/// Why an operation on a named segment failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Named primitives need Linux (OFD locks, robust process-shared mutexes).
    Unsupported,
    /// The name is not a valid segment name (1–64 of `[A-Za-z0-9_-]`, starting
    /// with a letter or a digit).
    InvalidName(String),
    /// A directory or a file belongs to another user, has group or other
    /// permission bits, or is not what it should be (a symlink, a FIFO…).
    Permission(String),
    /// The segment's bytes are not a valid segment of this layout; the
    /// message names what is wrong. Nothing re-initialises it silently.
    Damaged(String),
    /// The segment exists with another creation parameter.
    Mismatch {
        /// The parameter, as the primitive names it (`permits`, `kind`…).
        field: &'static str,
        /// Its value in the existing segment.
        existing: u64,
        /// The value this opener asked for.
        requested: u64,
    },
    /// Every process slot of the segment is taken by a live process.
    ProcessLimit(u32),
    /// Every owner slot of the segment is taken.
    OwnerLimit(u32),
    /// `posix_fallocate` found no room; the message names the directory and
    /// the size asked for.
    NoSpace(String),
    /// Another process kept the segment in initialisation for 2 s.
    Busy,
    /// The segment lock could not be taken in time: the segment is damaged,
    /// or a process is stopped (not dead) inside it.
    LockStuck,
    /// The primitive was closed (its own `close`, or `unlink` of its name).
    Closed,
    /// A call that the caller got wrong and that changed nothing (release of
    /// more than is held, a token already waiting, an index out of range).
    Invalid(String),
    /// Any other system call failure.
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported => f.write_str("named primitives need Linux; not supported on this platform"),
            Error::InvalidName(why) => write!(f, "invalid name: {why}"),
            Error::Permission(why) => write!(f, "permission refused: {why}"),
            Error::Damaged(why) => write!(f, "segment damaged: {why}; unlink the name to start over"),
            Error::Mismatch {
                field,
                existing,
                requested,
            } => write!(
                f,
                "{field} mismatch: the existing segment has {field} {existing}, this open asked for {requested}"
            ),
            Error::ProcessLimit(n) => write!(
                f,
                "process limit reached: all {n} process slots of the segment are in use"
            ),
            Error::OwnerLimit(n) => write!(f, "owner limit reached: all {n} owner slots of the segment are in use"),
            Error::NoSpace(why) => write!(f, "no space for the segment: {why}"),
            Error::Busy => f.write_str("segment busy: another process kept initialising it for 2 s"),
            Error::LockStuck => {
                f.write_str("lock stuck: the segment is damaged, or a process is stopped inside its lock")
            }
            Error::Closed => f.write_str("closed: the primitive was closed or its name unlinked"),
            Error::Invalid(why) => write!(f, "invalid call: {why}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_the_field_and_both_values() {
        let e = Error::Mismatch {
            field: "permits",
            existing: 3,
            requested: 4,
        };
        assert_eq!(
            e.to_string(),
            "permits mismatch: the existing segment has permits 3, this open asked for 4"
        );
    }

    #[test]
    fn damaged_tells_the_user_to_unlink() {
        assert!(Error::Damaged("bad magic".into())
            .to_string()
            .contains("unlink the name"));
    }
}
