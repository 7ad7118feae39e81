//! The fault-injection seam: tests make syncs fail or crawl, and file creation meet a file system
//! without `fallocate`, without a broken disk; and a witness that tells them which records a
//! successful fdatasync really covered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults to inject; the default injects none.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// When set, the sync completing after this many successful syncs (counted across the
    /// process) and every later one report EIO, as a device that failed the writeback would.
    fail_sync_after: Option<Arc<AtomicU64>>,
    /// Every sync holds its claim this long before it starts, as a slow disk would.
    sync_delay: Option<Duration>,
    /// `fallocate` answers EOPNOTSUPP, as on file systems that lack it (FUSE).
    fallocate_refused: bool,
    witness: Option<Arc<Witness>>,
}

/// Per account: the newest record written with `pwrite`, and the newest one that a successful
/// fdatasync covered, that is, the newest written when that fdatasync was submitted.
#[derive(Debug, Default)]
struct Witness {
    accounts: Mutex<HashMap<u32, (u64, u64)>>,
}

impl Faults {
    /// Fails the `n`-th and later syncs from now on (0: the very next one).
    pub fn fail_sync_after(n: u64) -> Faults {
        Faults {
            fail_sync_after: Some(Arc::new(AtomicU64::new(n))),
            ..Faults::default()
        }
    }

    /// Makes every sync take at least `delay` longer.
    pub fn with_sync_delay(self, delay: Duration) -> Faults {
        Faults {
            sync_delay: Some(delay),
            ..self
        }
    }

    /// Makes file creation find no `fallocate`.
    pub fn with_fallocate_refused(self) -> Faults {
        Faults {
            fallocate_refused: true,
            ..self
        }
    }

    /// Keeps the witness of what the syncs of this process covered (see [`Faults::covered`]).
    pub fn with_witness(self) -> Faults {
        Faults {
            witness: Some(Arc::default()),
            ..self
        }
    }

    /// The newest record of `account` that a successful fdatasync of this process covered:
    /// one that completed after being submitted when that record was already written. 0 without
    /// the witness.
    pub fn covered(&self, account: u32) -> u64 {
        self.with_account(account, |entry| entry.1).unwrap_or(0)
    }

    fn with_account<T>(&self, account: u32, f: impl FnOnce(&mut (u64, u64)) -> T) -> Option<T> {
        let witness = self.witness.as_ref()?;
        let mut accounts = witness.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(accounts.entry(account).or_default()))
    }

    /// A record of `account` was written.
    pub(crate) fn wrote(&self, account: u32, seq: u64) {
        self.with_account(account, |entry| entry.0 = entry.0.max(seq));
    }

    /// An fdatasync of `account` is being submitted: what it will cover.
    pub(crate) fn sync_submitted(&self, account: u32) -> u64 {
        self.with_account(account, |entry| entry.0).unwrap_or(0)
    }

    /// An fdatasync submitted when `submitted` was the newest record succeeded.
    pub(crate) fn sync_succeeded(&self, account: u32, submitted: u64) {
        self.with_account(account, |entry| entry.1 = entry.1.max(submitted));
    }

    pub(crate) fn sync_should_fail(&self) -> bool {
        let Some(remaining) = &self.fail_sync_after else {
            return false;
        };
        remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_err()
    }

    pub(crate) fn sync_delay(&self) -> Option<Duration> {
        self.sync_delay
    }

    pub(crate) fn fallocate_refused(&self) -> bool {
        self.fallocate_refused
    }
}
