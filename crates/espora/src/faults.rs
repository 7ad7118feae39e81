//! The fault-injection seam: tests make syncs fail or crawl, and file creation meet a file system
//! without `fallocate`, without a broken disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Faults to inject; the default injects none.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// When set, the sync after this many successful syncs (counted across the process) and
    /// every later one fails with EIO.
    fail_sync_after: Option<Arc<AtomicU64>>,
    /// Every sync holds its claim this long before it starts, as a slow disk would.
    sync_delay: Option<Duration>,
    /// `fallocate` answers EOPNOTSUPP, as on file systems that lack it (FUSE).
    fallocate_refused: bool,
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
