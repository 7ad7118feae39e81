//! The shared-state file of an account, `account-<id>.espora-shm`: the words through which every
//! thread of every process that serves the account coordinates (the head hint, the durable
//! watermark, the sync in flight, and the futex words that waiting writers sleep on).
//!
//! It is a separate file so that the account file is only ever written with `pwrite`: stores
//! into a mapping of the account file would dirty its pages, so every fdatasync would write them
//! back and write-protect them again, and the next store would take a page fault (possibly
//! waiting on the file system) while holding the account lock. This file is never synced: the
//! kernel writes it back now and then, and nothing in it needs to survive a crash, because the
//! open rebuilds it from the records under the account's exclusive lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::error::FileError;
use crate::layout::{shared_identity, shared_offset, Header, SHARED_SIZE};

/// The mapped shared-state file of one account.
pub struct Shared {
    /// INVARIANT: maps `SHARED_SIZE` bytes of `file`, read-write and shared.
    map: MmapRaw,
    file: File,
    path: PathBuf,
}

impl Shared {
    /// Opens the file, creating it (zero-filled) if it does not exist. Creation needs no care
    /// against races: every process that creates or grows it produces the same zero bytes, and
    /// the identity is checked and written only under the account's exclusive lock.
    pub fn open(path: &Path) -> Result<Shared, FileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(path)
            .map_err(|e| FileError::io(path, "open", e))?;
        let length = file
            .metadata()
            .map_err(|e| FileError::io(path, "stat", e))?
            .len();
        // Never shrink: another process may have it mapped.
        if length < SHARED_SIZE as u64 {
            file.set_len(SHARED_SIZE as u64)
                .map_err(|e| FileError::io(path, "extend", e))?;
        }
        let map = memmap2::MmapOptions::new()
            .len(SHARED_SIZE)
            .map_raw(&file)
            .map_err(|e| FileError::io(path, "mmap", e))?;
        Ok(Shared {
            map,
            file,
            path: path.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= SHARED_SIZE);
        // SAFETY: inside the mapping and 8-byte aligned (the mapping is page aligned). Every
        // process accesses these words only atomically.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU64) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= SHARED_SIZE);
        // SAFETY: as in `u64_at`, for a 4-byte aligned word.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU32) }
    }

    /// Sequence number of the newest record written, as far as writers have said so. Records
    /// are the truth: a writer killed after its `pwrite` leaves the hint one behind, and the
    /// next writer adopts the record (see `Mapping::newest_locked`).
    pub fn head(&self) -> u64 {
        self.u64_at(shared_offset::HEAD).load(Ordering::Acquire)
    }

    /// Raises the head hint to `seq` (writers publish after unlocking, in any order).
    pub fn publish_head(&self, seq: u64) {
        self.u64_at(shared_offset::HEAD)
            .fetch_max(seq, Ordering::AcqRel);
    }

    /// Highest sequence number known to be on disk.
    pub fn durable(&self) -> u64 {
        self.u64_at(shared_offset::DURABLE).load(Ordering::Acquire)
    }

    /// Records that a sync which started when `seq` was the head has completed.
    pub fn advance_durable(&self, seq: u64) {
        self.u64_at(shared_offset::DURABLE)
            .fetch_max(seq, Ordering::AcqRel);
    }

    /// The sync in flight: 0 when none, else the claim token of its owner.
    pub fn sync_claim(&self) -> &AtomicU64 {
        self.u64_at(shared_offset::SYNC_CLAIM)
    }

    /// When the last sync started, in nanoseconds of the monotonic clock (0: never).
    pub fn sync_started(&self) -> &AtomicU64 {
        self.u64_at(shared_offset::SYNC_STARTED)
    }

    /// How many records the last completed sync made durable.
    pub fn sync_group(&self) -> &AtomicU64 {
        self.u64_at(shared_offset::SYNC_GROUP)
    }

    /// Futex word bumped whenever a sync ends.
    pub fn sync_events(&self) -> &AtomicU32 {
        self.u32_at(shared_offset::SYNC_EVENTS)
    }

    pub fn sync_sleepers(&self) -> &AtomicU32 {
        self.u32_at(shared_offset::SYNC_SLEEPERS)
    }

    /// Futex word bumped whenever the account lock is released.
    pub fn lock_events(&self) -> &AtomicU32 {
        self.u32_at(shared_offset::LOCK_EVENTS)
    }

    pub fn lock_sleepers(&self) -> &AtomicU32 {
        self.u32_at(shared_offset::LOCK_SLEEPERS)
    }

    /// Writes a fresh value with `pwrite` and reads it back through the mapping: false when the
    /// file system does not keep the two coherent (some FUSE file systems with direct I/O),
    /// which espora, writing with `pwrite` and reading through mappings, cannot run on. The
    /// caller holds the account's exclusive lock, so no other prober races it.
    pub fn coherent(&self) -> io::Result<bool> {
        let value = (crate::file::now_us() as u64) ^ u64::from(std::process::id()).rotate_left(32);
        self.file
            .write_all_at(&value.to_le_bytes(), shared_offset::PROBE as u64)?;
        Ok(self.u64_at(shared_offset::PROBE).load(Ordering::Acquire) == value)
    }

    /// The durable watermark, if this file belongs to the account file `header` describes; 0
    /// otherwise (a new file, or one zeroed or left from another account file).
    pub fn durable_if_bound(&self, header: &Header) -> u64 {
        if self.bound_to(header) {
            self.durable()
        } else {
            0
        }
    }

    fn bound_to(&self, header: &Header) -> bool {
        let identity = shared_identity(header);
        let base = self.map.as_mut_ptr();
        (0..identity.len()).all(|i| {
            // SAFETY: inside the mapping; the identity bytes are only written under the
            // account's exclusive lock, which the callers hold.
            unsafe { std::ptr::read_volatile(base.add(i)) == identity[i] }
        })
    }

    /// Binds the file to the account file described by `header` and publishes the history that
    /// recovery found. The caller holds the account's exclusive lock and has made every record
    /// up to `newest` durable.
    ///
    /// When the identity does not match (a first open, an account file made anew, a file zeroed
    /// or left stale by a power loss), every word is cleared first. When it matches, the sync
    /// claim and the futex words are left alone: other processes may be waiting on them right
    /// now (for this very lock), and a stale claim is taken over by its waiters anyway.
    pub fn reset(&self, header: &Header, newest: u64) {
        if !self.bound_to(header) {
            let identity = shared_identity(header);
            let base = self.map.as_mut_ptr();
            for offset in (shared_offset::HEAD..SHARED_SIZE).step_by(8) {
                self.u64_at(offset).store(0, Ordering::Release);
            }
            for (i, byte) in identity.iter().enumerate() {
                // SAFETY: as above.
                unsafe { std::ptr::write_volatile(base.add(i), *byte) };
            }
        }
        self.u64_at(shared_offset::HEAD)
            .store(newest, Ordering::Release);
        self.u64_at(shared_offset::DURABLE)
            .store(newest, Ordering::Release);
    }
}

/// The durable watermark that the shared-state file at `path` holds for the account file
/// `header` describes, read without creating or changing anything (for the tool): 0 when the
/// file is missing, unreadable, or belongs to another account file.
pub fn peek_durable(path: &Path, header: &Header) -> u64 {
    let mut bytes = [0u8; shared_offset::DURABLE + 8];
    let read = File::open(path).and_then(|file| file.read_exact_at(&mut bytes, 0));
    let identity = shared_identity(header);
    if read.is_err() || bytes[..identity.len()] != identity {
        return 0;
    }
    let at = shared_offset::DURABLE;
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
