//! The storage seam: the only module that names the storage engine.
//!
//! Everything else in the crate uses the types re-exported here, so the engine can be swapped
//! (for the in-memory stand-in used while espora was being written) by changing one line.

pub use crate::shim::{
    AppendError, Appended, Db, Kind, OpenError, Options, ReadError, Record, Statement, Transaction,
    Worker, STATEMENT_RECORDS_MAX,
};
