//! One account file: creation without races, the read-only shared mapping, the lock, and the
//! operations that run under it. Runtime-neutral: nothing here knows about monoio or waits on a
//! disk. Bytes reach the file only through `pwrite` (never through the mapping), so that neither
//! writeback nor the next write takes a page fault; the mapping is the lock-free read path, and
//! the page cache keeps the two coherent.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::MmapRaw;
use rustix::fs::FlockOperation;

use crate::error::{FileError, FormatProblem, Invalid, Rejection};
use crate::faults::Faults;
use crate::layout::{
    header_offset, Description, Header, Kind, Record, FORMAT_VERSION, HEADER_SIZE, RECORD_SIZE,
};
use crate::shared::Shared;
use crate::time::now_us;

/// Bytes written per call when creation writes the whole file out (no `fallocate`).
const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;

pub use crate::paths::{account_file_name, shared_file_name};

/// A transaction to append.
#[derive(Clone, Copy, Debug)]
pub struct Transaction<'a> {
    /// Amount in cents; must be positive.
    pub value: i64,
    pub kind: Kind,
    /// At most `DESCRIPTION_BYTES_MAX` bytes; how many characters is the caller's rule.
    pub description: &'a str,
}

/// A transaction whose fields passed their rules, ready to be appended.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    value: i64,
    kind: Kind,
    description: Description,
}

impl Transaction<'_> {
    /// Checks the field rules; nothing that fails them reaches the lock.
    pub fn validate(&self) -> Result<Entry, Invalid> {
        if self.value <= 0 {
            return Err(Invalid::Value);
        }
        let description = Description::new(self.description).ok_or(Invalid::Description)?;
        Ok(Entry {
            value: self.value,
            kind: self.kind,
            description,
        })
    }
}

/// A memory-mapped account file, shared by every thread of the process, read-only.
pub struct Mapping {
    /// INVARIANT: maps the whole file, `header.file_size()` bytes, read-only and shared.
    map: MmapRaw,
    header: Header,
    path: PathBuf,
}

impl Mapping {
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_words<const N: usize>(&self, offset: usize) -> [u8; N] {
        assert!(
            offset.is_multiple_of(8)
                && N.is_multiple_of(8)
                && offset + N <= self.header.file_size() as usize
        );
        let mut bytes = [0u8; N];
        // SAFETY: the range lies inside the mapping and is 8-byte aligned; volatile reads
        // because other processes write the same pages (through the page cache).
        unsafe {
            let source = self.map.as_ptr().add(offset) as *const u64;
            for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&std::ptr::read_volatile(source.add(i)).to_ne_bytes());
            }
        }
        bytes
    }

    /// For each page of the file, whether the page cache holds it (`mincore`): a page it does not
    /// hold is read from the device by anyone who reads it.
    pub(crate) fn resident_pages(&self) -> io::Result<Vec<bool>> {
        let length = self.header.file_size() as usize;
        let page = page_size();
        let mut resident = vec![0u8; length.div_ceil(page)];
        // SAFETY: the mapping is page aligned and `length` bytes long, and `resident` has one
        // byte per page of it, which is what mincore writes.
        let done = unsafe {
            libc::mincore(
                self.map.as_ptr() as *mut libc::c_void,
                length,
                resident.as_mut_ptr(),
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(resident.iter().map(|byte| byte & 1 == 1).collect())
    }

    /// Copies `out.len()` bytes from `offset` in one go. The caller holds the account's
    /// exclusive lock, so no writer changes them meanwhile.
    pub(crate) fn copy_locked(&self, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= self.header.file_size() as usize);
        // SAFETY: the range lies inside the mapping, and under the exclusive lock nothing
        // writes the file, so the bytes do not change while they are copied.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }

    /// Copies the raw bytes of the slot for `seq`.
    pub fn read_slot(&self, seq: u64) -> [u8; RECORD_SIZE] {
        self.read_words(self.header.slot_offset(seq))
    }

    /// Decodes the record for `seq`, if the slot holds exactly that record.
    pub fn read_record(&self, seq: u64) -> Option<Record> {
        Record::decode(&self.read_slot(seq))
            .ok()
            .filter(|r| r.seq == seq)
    }

    /// Appends `entry` after the newest record. The caller holds the account's exclusive lock;
    /// no disk wait happens here, only reads of the page cache and one `pwrite` into it. The
    /// caller publishes the new head after unlocking. Returns the record with the generation of
    /// the shared state it was written in.
    pub fn append_locked(
        &self,
        file: &File,
        shared: &Shared,
        entry: &Entry,
        now_us: i64,
    ) -> Result<(Record, u16), Rejection> {
        // Only a recovery starts a generation, and it holds this lock to do so; one that died
        // halfway is completed here.
        let (hint, durable) = shared.settle_locked();
        let durable = durable.seq;
        let (head, previous) = self.newest_locked(hint.seq)?;
        if head + 1 > durable + self.header.in_flight_max() {
            return Err(Rejection::Window {
                head,
                generation: hint.generation,
            });
        }
        let balance_before = previous.map_or(0, |r| r.balance);
        let balance = match entry.kind {
            Kind::Credit => balance_before.checked_add(entry.value),
            Kind::Debit => balance_before.checked_sub(entry.value),
        }
        .ok_or(Rejection::Overflow)?;
        if balance < -self.header.limit {
            return Err(Rejection::LimitExceeded);
        }
        let record = Record {
            // The durable watermark never passes the head; recovery starts from it.
            anchor: durable.min(head),
            seq: head + 1,
            // Timestamps never go backwards within an account, even if the clock does.
            timestamp_us: now_us.max(previous.map_or(i64::MIN, |r| r.timestamp_us)),
            value: entry.value,
            balance,
            kind: entry.kind,
            description: entry.description,
        };
        assert!(record.seq == head + 1 && record.balance >= -self.header.limit);
        let bytes = record.encode();
        write_slot(file, &self.header, record.seq, &bytes).map_err(Rejection::Write)?;
        // The mapping shares the page that was just written: read it back before anyone can
        // acknowledge it. A mismatch means the file system broke coherence; stop.
        assert!(
            self.read_slot(record.seq) == bytes,
            "{}: record {} reads back different through the mapping",
            self.path.display(),
            record.seq
        );
        Ok((record, hint.generation))
    }

    /// Finds the newest record under the lock. The head hint is published after the record is
    /// written and the lock released, so it may lag: the complete records beyond it are adopted
    /// here (their balance was computed under the lock from the record before them).
    fn newest_locked(&self, start: u64) -> Result<(u64, Option<Record>), Rejection> {
        let mut head = start;
        let mut previous = match head {
            0 => None,
            seq => Some(self.read_record(seq).ok_or(Rejection::Corrupt { seq })?),
        };
        while head - start < self.header.capacity {
            let Some(next) = self.read_record(head + 1) else {
                break;
            };
            if next.balance_before() != Some(previous.map_or(0, |r| r.balance)) {
                return Err(Rejection::Corrupt { seq: head + 1 });
            }
            head += 1;
            previous = Some(next);
        }
        Ok((head, previous))
    }

    /// Copies the newest `count` records up to `head`, newest first, into `out`, without the
    /// lock. Writers only ever write the slot after the head, so these records are immutable
    /// unless the ring laps the reader or another process's recovery puts the device's bytes
    /// back; the checksum, sequence and balance chain checks detect that and the caller retries
    /// with a fresh head. Returns the balance, or the sequence that failed.
    pub fn snapshot(&self, head: u64, count: usize, out: &mut Vec<Record>) -> Result<i64, u64> {
        assert!((count as u64) < self.header.capacity);
        out.clear();
        let oldest = head.saturating_sub(count as u64) + 1;
        for seq in (oldest..=head).rev() {
            let record = self.read_record(seq).ok_or(seq)?;
            // The balance chain holds between neighbours of one history.
            if out
                .last()
                .is_some_and(|newer| newer.balance_before() != Some(record.balance))
            {
                return Err(seq);
            }
            out.push(record);
        }
        Ok(out.first().map_or(0, |r| r.balance))
    }
}

/// The size of a page of memory (of the page cache).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Writes the slot for `seq`. The caller holds the account's lock.
pub fn write_slot(
    file: &File,
    header: &Header,
    seq: u64,
    bytes: &[u8; RECORD_SIZE],
) -> io::Result<()> {
    file.write_all_at(bytes, header.slot_offset(seq) as u64)
}

/// Opens or creates the file of an account, race-free against other processes doing the same at
/// the same moment, and maps it.
pub fn open_account(
    dir: &Path,
    account_id: u32,
    limit: i64,
    capacity: u64,
    faults: &Faults,
) -> Result<(File, Mapping), FileError> {
    let path = dir.join(account_file_name(account_id));
    let file = match open_rw(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_account(dir, &path, account_id, limit, capacity, faults)?;
            open_rw(&path).map_err(|e| FileError::io(&path, "open", e))?
        }
        Err(e) => return Err(FileError::io(&path, "open", e)),
    };
    let mapping = map_file(&file, &path)?;
    if mapping.header.account_id != account_id {
        let problem = FormatProblem::AccountId {
            expected: account_id,
            found: mapping.header.account_id,
        };
        return Err(FileError::format(&path, problem));
    }
    Ok((file, mapping))
}

/// Opens and maps an existing account file whatever its id (for the tool).
pub fn open_existing(path: &Path) -> Result<(File, Mapping), FileError> {
    let file = open_rw(path).map_err(|e| FileError::io(path, "open", e))?;
    let mapping = map_file(&file, path)?;
    Ok((file, mapping))
}

/// Opens another open file description of `path`, for a thread's own lock.
pub fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
        .open(path)
}

fn map_file(file: &File, path: &Path) -> Result<Mapping, FileError> {
    let length = file
        .metadata()
        .map_err(|e| FileError::io(path, "stat", e))?
        .len();
    if length < HEADER_SIZE as u64 {
        return Err(FileError::format(path, FormatProblem::Truncated));
    }
    let mut first = [0u8; header_offset::IMMUTABLE_END];
    file.read_exact_at(&mut first, 0)
        .map_err(|e| FileError::io(path, "read header", e))?;
    let header =
        Header::decode(&first).map_err(|e| FileError::format(path, FormatProblem::Header(e)))?;
    if length != header.file_size() {
        let problem = FormatProblem::Size {
            actual: length,
            expected: header.file_size(),
        };
        return Err(FileError::format(path, problem));
    }
    let map = memmap2::MmapOptions::new()
        .len(header.file_size() as usize)
        .map_raw_read_only(file)
        .map_err(|e| FileError::io(path, "mmap", e))?;
    Ok(Mapping {
        map,
        header,
        path: path.into(),
    })
}

/// Builds the file under a temporary name, makes it durable, then links it into place. `link`
/// fails with EEXIST if another process won the race, so an existing file is never replaced.
fn create_account(
    dir: &Path,
    path: &Path,
    account_id: u32,
    limit: i64,
    capacity: u64,
    faults: &Faults,
) -> Result<(), FileError> {
    let header = Header {
        version: FORMAT_VERSION,
        account_id,
        limit,
        capacity,
        created_us: now_us(),
    };
    crate::paths::create_linked(path, |file, temp| {
        write_new_file(file, temp, &header, faults)
    })?;
    sync_dir(dir)
}

fn write_new_file(
    file: &File,
    temp: &Path,
    header: &Header,
    faults: &Faults,
) -> Result<(), FileError> {
    reserve_blocks(file, temp, header.file_size(), faults)?;
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| FileError::io(temp, "write header", e))?;
    file.sync_all().map_err(|e| FileError::io(temp, "fsync", e))
}

/// Reserves every block of the file now, so that no later write can fail for lack of space in
/// the file system. `fallocate` does it in one call and leaves the blocks *unwritten* (they read
/// as zeros until written; recovery repairs a page whose writeback into one failed, see
/// `device.rs`); file systems without it (FUSE, some network file systems) get the file written
/// out with zeros instead, which reserves the same blocks. Neither reserves room on a
/// thin-provisioned device under the file system: there a full pool fails the writeback, and
/// the fdatasync that reports it keeps the record from being acknowledged.
fn reserve_blocks(file: &File, path: &Path, size: u64, faults: &Faults) -> Result<(), FileError> {
    let allocated = if faults.fallocate_refused() {
        Err(rustix::io::Errno::OPNOTSUPP)
    } else {
        rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size)
    };
    match allocated {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {}
        Err(e) => return Err(FileError::io(path, "allocate", e.into())),
    }
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
    let mut offset = 0;
    while offset < size {
        let length = (size - offset).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..length], offset)
            .map_err(|e| FileError::io(path, "write out (no fallocate here)", e))?;
        offset += length as u64;
    }
    Ok(())
}

/// Makes a directory entry change durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    let handle = File::open(dir).map_err(|e| FileError::io(dir, "open directory", e))?;
    handle
        .sync_all()
        .map_err(|e| FileError::io(dir, "fsync directory", e))
}

/// Tries to take the exclusive lock without blocking; `Ok(false)` if another holds it.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes the exclusive lock, blocking the calling thread (startup and tools only).
pub fn lock_exclusive_blocking(file: &File) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

/// Takes a shared lock, blocking the calling thread (tools only): writers wait meanwhile.
pub fn lock_shared_blocking(file: &File) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, FlockOperation::LockShared) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

pub fn unlock(file: &File) {
    // Unlocking an open file description we hold cannot fail; if the kernel says otherwise
    // the lock state is unknown and continuing could interleave writers.
    rustix::fs::flock(file, FlockOperation::Unlock).expect("flock unlock");
}
