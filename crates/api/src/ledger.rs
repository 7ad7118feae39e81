//! The storage seam: the only module that names the storage engine.
//!
//! Everything else in the crate uses the types re-exported here, so the rest of the server does
//! not depend on how espora spells its paths.

pub use espora::{
    AppendError, Appended, Backend, Db, Entry, Faults, Kind, OpenError, Options, ReadError, Record,
    Statement, Transaction, Worker,
};

/// The storage's room for a description, which the contract's limit must fit in.
pub use espora::layout::DESCRIPTION_BYTES_MAX;

/// The wall clock in microseconds since the Unix epoch, as espora stamps records.
pub use espora::time::now_us;

/// RFC 3339 rendering of the records' timestamps, shared with espora's tool.
pub use espora::time::rfc3339_us;
