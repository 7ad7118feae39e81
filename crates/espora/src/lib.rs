//! espora: the embedded storage engine of the crebitos API.
//!
//! One memory-mapped ring file per account, shared by every process that opens the data
//! directory. Appends happen under an exclusive `flock` of the account file, are written with
//! `pwrite`, and are acknowledged only after an fdatasync that covers them; concurrent appends
//! of every thread and process share syncs (group commit), coordinated through a small
//! shared-state file per account. Records are the truth: each carries its sequence number, the
//! transaction, the balance after it and a CRC32C, so the newest valid record gives the balance
//! and a torn write is recognised.
//!
//! The format, locking, device reads and validation ([`layout`], [`file`], [`shared`],
//! [`device`], [`verify`]) are runtime-neutral; [`Db`] and [`Worker`] add the async glue on the monoio runtime (the commit
//! protocol in `commit.rs`, the I/O back ends in `sync.rs`). The byte-by-byte format and the
//! crash reasoning are in `docs/espora-format.md`.

pub mod device;
pub mod file;
pub mod layout;
pub mod paths;
pub mod shared;
pub mod time;
pub mod verify;

mod commit;
mod db;
mod error;
mod faults;
mod sync;

pub use db::{Appended, Db, Options, Statement, Stats, Worker, STATEMENT_RECORDS_MAX};
pub use error::{
    AppendError, Corruption, FileError, FormatProblem, Invalid, OpenError, ReadError, Rejection,
    Unavailable,
};
pub use faults::Faults;
pub use file::{Entry, Transaction};
pub use layout::{Kind, Record};
pub use sync::Backend;
