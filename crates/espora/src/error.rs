//! Every error espora reports, typed per layer: a file that cannot be used, damaged history, a
//! database that cannot open, an append refused under the lock, an append or a statement that did
//! not happen. The embedding server words them for its own clients; the `Display` texts here are
//! for operators and logs.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::layout::HeaderError;

/// Why an account file cannot be opened or created.
#[derive(Debug)]
pub enum FileError {
    /// A system call failed.
    Io {
        path: PathBuf,
        operation: &'static str,
        source: io::Error,
    },
    /// The file exists but is not a usable account file.
    Format {
        path: PathBuf,
        problem: FormatProblem,
    },
}

/// What is wrong with an existing account file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatProblem {
    /// Shorter than its header.
    Truncated,
    /// The header cannot be used.
    Header(HeaderError),
    /// The file's size does not match its header.
    Size { actual: u64, expected: u64 },
    /// The header names another account than the file name.
    AccountId { expected: u32, found: u32 },
}

impl fmt::Display for FormatProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatProblem::Truncated => write!(f, "file shorter than its header"),
            FormatProblem::Header(e) => write!(f, "{e}"),
            FormatProblem::Size { actual, expected } => {
                write!(f, "file is {actual} bytes, header says {expected}")
            }
            FormatProblem::AccountId { expected, found } => {
                write!(
                    f,
                    "header is for account {found}, file name says {expected}"
                )
            }
        }
    }
}

impl FileError {
    pub(crate) fn io(path: &Path, operation: &'static str, source: io::Error) -> FileError {
        FileError::Io {
            path: path.into(),
            operation,
            source,
        }
    }

    pub(crate) fn format(path: &Path, problem: FormatProblem) -> FileError {
        FileError::Format {
            path: path.into(),
            problem,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io {
                path,
                operation,
                source,
            } => write!(f, "{}: {operation} failed: {source}", path.display()),
            FileError::Format { path, problem } => write!(f, "{}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { source, .. } => Some(source),
            FileError::Format { .. } => None,
        }
    }
}

/// Damage inside acknowledged history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Sequence number of the record at fault.
    pub seq: u64,
    /// Slot index of the record at fault.
    pub slot: u64,
    pub problem: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record seq {} (slot {}): {}",
            self.seq, self.slot, self.problem
        )
    }
}

impl std::error::Error for Corruption {}

/// Why an append under the lock did not write a record.
#[derive(Debug)]
pub enum Rejection {
    /// The debit would take the balance below `-limit`.
    LimitExceeded,
    /// The new balance would not fit in a signed 64-bit integer.
    Overflow,
    /// The newest record is unreadable: the file is damaged.
    Corrupt { seq: u64 },
    /// Too many records are waiting for a sync: the next one must wait until `head` (adopted
    /// under the lock, in `generation`) is durable (see
    /// [`crate::layout::Header::in_flight_max`]).
    Window { head: u64, generation: u16 },
    /// `pwrite` failed.
    Write(io::Error),
}

/// Why the database cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The data directory is missing or not a directory.
    NoDirectory(PathBuf),
    /// The ring capacity asked for is not one the format allows.
    RingRecords {
        asked: u64,
        min: u64,
        max: u64,
        step: u64,
    },
    /// The statement length asked for is outside what a lock-free snapshot allows.
    StatementRecords { asked: usize, max: usize },
    /// The account table is empty or inconsistent.
    Accounts(&'static str),
    /// A file could not be created, opened or read.
    File(FileError),
    /// Acknowledged history is damaged; the process must not serve it.
    Corrupt {
        path: PathBuf,
        corruption: Corruption,
    },
    /// A write through the file did not show in its mapping: the file system does not keep the
    /// two coherent (some FUSE file systems with direct I/O), and espora reads through the
    /// mapping.
    Incoherent(PathBuf),
    /// The I/O back end asked for cannot be set up here.
    Backend(io::Error),
    /// The header read from the device differs from the one in the page cache.
    HeaderMismatch(PathBuf),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NoDirectory(dir) => write!(
                f,
                "data directory {} does not exist or is not a directory",
                dir.display()
            ),
            OpenError::RingRecords {
                asked,
                min,
                max,
                step,
            } => write!(
                f,
                "ring of {asked} records: rings hold {min}..={max} records, a multiple of {step}"
            ),
            OpenError::StatementRecords { asked, max } => {
                write!(f, "statements of {asked} records are outside 1..={max}")
            }
            OpenError::Accounts(problem) => write!(f, "invalid account table: {problem}"),
            OpenError::File(e) => write!(f, "{e}"),
            OpenError::Corrupt { path, corruption } => write!(
                f,
                "{}: damaged history, {corruption}; refusing to serve (run `espora verify`)",
                path.display()
            ),
            OpenError::Incoherent(path) => write!(
                f,
                "{}: the file system does not show written bytes in the file's memory mapping; \
                 espora cannot run on it",
                path.display()
            ),
            OpenError::Backend(e) => write!(f, "cannot set up the I/O back end: {e}"),
            OpenError::HeaderMismatch(path) => write!(
                f,
                "{}: the header on the device differs from the one in memory; refusing to serve",
                path.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::File(e) => Some(e),
            OpenError::Corrupt { corruption, .. } => Some(corruption),
            OpenError::Backend(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FileError> for OpenError {
    fn from(e: FileError) -> OpenError {
        OpenError::File(e)
    }
}

/// A field of a transaction that breaks its rule. Nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The amount is not positive.
    Value,
    /// The description does not fit in its record field (`DESCRIPTION_BYTES_MAX` bytes).
    Description,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Value => write!(f, "the value must be positive"),
            Invalid::Description => write!(
                f,
                "the description must fit in {} bytes",
                crate::layout::DESCRIPTION_BYTES_MAX
            ),
        }
    }
}

/// Why an append did not happen, or is not known to be durable.
#[derive(Debug)]
pub enum AppendError {
    /// No such account.
    UnknownAccount,
    /// The debit would take the balance below `-limit`. Nothing was written.
    LimitExceeded,
    /// The new balance would overflow a signed 64-bit integer. Nothing was written.
    Overflow,
    /// The store cannot acknowledge: a sync or write failed, the lock could not be taken, or the
    /// file is damaged. The transaction may or may not be in the file.
    Unavailable(Unavailable),
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::UnknownAccount => write!(f, "no such account"),
            AppendError::LimitExceeded => write!(f, "the debit exceeds the limit"),
            AppendError::Overflow => write!(f, "the balance would overflow"),
            AppendError::Unavailable(why) => write!(f, "storage unavailable: {why}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// Why a statement cannot be read.
#[derive(Debug)]
pub enum ReadError {
    /// No such account.
    UnknownAccount,
    /// The store cannot prove the snapshot durable, or the file is damaged.
    Unavailable(Unavailable),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::UnknownAccount => write!(f, "no such account"),
            ReadError::Unavailable(why) => write!(f, "storage unavailable: {why}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// A failure of the store itself, as opposed to a rejected request.
#[derive(Debug)]
pub enum Unavailable {
    /// An fdatasync failed earlier: from then on nothing is acknowledged (the page cache may have
    /// dropped the data, so retrying could report success for lost writes).
    Poisoned,
    /// fdatasync failed now.
    Sync(io::Error),
    /// Writing the record into the file failed; nothing was acknowledged.
    Write(io::Error),
    /// flock failed, or stayed taken for too long.
    Lock(Option<io::Error>),
    /// Waiting for the lock or for a sync failed in the I/O back end.
    Wait(io::Error),
    /// The newest record of the account is unreadable.
    Corrupt { seq: u64 },
    /// The ring lapped a statement reader repeatedly.
    Contended,
    /// The record was written to the page cache, but another process's recovery found that the
    /// device never got it (a failed writeback) and put the device's bytes back: it was not
    /// acknowledged, and the process stops as after a failed fdatasync.
    Lost { seq: u64 },
    /// Another process recovered the file while this append waited, and the ring has gone round
    /// since: whether the record was on the device cannot be told. Not acknowledged; nothing
    /// else is wrong.
    Overtaken { seq: u64 },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Poisoned => write!(f, "storage stopped after a failed fdatasync"),
            Unavailable::Sync(e) => write!(f, "fdatasync failed: {e}"),
            Unavailable::Write(e) => write!(f, "write failed: {e}"),
            Unavailable::Lock(Some(e)) => write!(f, "flock failed: {e}"),
            Unavailable::Lock(None) => write!(f, "account lock held too long by another writer"),
            Unavailable::Wait(e) => write!(f, "waiting failed: {e}"),
            Unavailable::Corrupt { seq } => write!(f, "record {seq} is damaged"),
            Unavailable::Contended => write!(f, "statement kept being overtaken by writers"),
            Unavailable::Lost { seq } => write!(
                f,
                "record {seq} never reached the disk (found by another process's recovery)"
            ),
            Unavailable::Overtaken { seq } => write!(
                f,
                "record {seq} waited across another process's recovery and a whole ring"
            ),
        }
    }
}

impl std::error::Error for Unavailable {}
