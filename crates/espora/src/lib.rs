//! espora: the embedded storage engine of the crebitos API.
//!
//! One memory-mapped ring file per account, shared by every process that opens the data
//! directory. Appends happen under an exclusive `flock` of the account file and are acknowledged
//! only after an fdatasync that covers them; concurrent appends share syncs (group commit).
//! Records are the truth: each carries its sequence number, the transaction, the balance after it
//! and a CRC32C, so the newest valid record gives the balance and a torn write is recognised.
//!
//! The format, locking and validation ([`layout`], [`file`], [`verify`]) are runtime-neutral;
//! [`Db`] and [`Worker`] add the async glue on the monoio runtime. The byte-by-byte format and the
//! crash reasoning are in `docs/espora-format.md`.

pub mod file;
pub mod layout;
pub mod time;
pub mod verify;

mod db;

pub use db::{
    AppendError, Appended, Db, Faults, OpenError, Options, ReadError, Statement, Stats, SyncVia,
    Unavailable, Worker, STATEMENT_RECORDS_MAX,
};
pub use file::{Transaction, ACCOUNTS};
pub use layout::{Kind, Record};
