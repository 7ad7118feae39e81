//! One account file: creation without races, the shared mapping, the lock, and the operations
//! that run under it. Runtime-neutral: nothing here knows about monoio or waits on a disk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::MmapRaw;
use rustix::fs::FlockOperation;

use crate::layout::{header_offset, Description, Header, Kind, Record, HEADER_SIZE, RECORD_SIZE};

// The shared counters are native atomics in the mapping; the format says little-endian.
#[cfg(not(target_endian = "little"))]
compile_error!("espora's shared counters assume a little-endian host");

/// The five accounts that exist from the first start, with their credit limits in cents.
pub const ACCOUNTS: [(u32, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// The file name of an account inside the data directory.
pub fn account_file_name(account_id: u32) -> String {
    format!("account-{account_id}.espora")
}

/// Current time in microseconds since the Unix epoch, UTC.
pub fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// A transaction to append.
#[derive(Clone, Copy, Debug)]
pub struct Transaction<'a> {
    /// Amount in cents; must be positive.
    pub value: i64,
    pub kind: Kind,
    /// 1 to 10 Unicode scalar values.
    pub description: &'a str,
}

/// Why an append under the lock did not write a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The debit would take the balance below `-limit`.
    LimitExceeded,
    /// The new balance would not fit in a signed 64-bit integer.
    Overflow,
    /// The transaction breaks a field rule.
    Invalid(&'static str),
    /// The newest record is unreadable: the file is damaged.
    Corrupt { seq: u64 },
}

/// A memory-mapped account file, shared by every thread of the process.
pub struct Mapping {
    /// INVARIANT: maps the whole file, `header.file_size()` bytes, read-write and shared.
    map: MmapRaw,
    header: Header,
    path: PathBuf,
}

// SAFETY: the mapping is only read and written through volatile word copies and atomics, and
// cross-thread and cross-process exclusion of writers is done with flock; `MmapRaw` is a raw
// pointer plus a length, safe to move and share between threads.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn counter(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= HEADER_SIZE);
        // SAFETY: the offset is inside the mapping and 8-byte aligned (the mapping is page
        // aligned); the counters are only ever accessed atomically, by every process.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU64) }
    }

    /// Sequence number of the newest record written (0: no record yet).
    pub fn head(&self) -> u64 {
        self.counter(header_offset::HEAD_SEQ)
            .load(Ordering::Acquire)
    }

    pub(crate) fn publish_head(&self, seq: u64) {
        self.counter(header_offset::HEAD_SEQ)
            .store(seq, Ordering::Release);
    }

    /// Highest sequence number known to be on disk.
    pub fn durable(&self) -> u64 {
        self.counter(header_offset::DURABLE_SEQ)
            .load(Ordering::Acquire)
    }

    /// Records that a sync which started when `seq` was the head has completed.
    pub fn advance_durable(&self, seq: u64) {
        self.counter(header_offset::DURABLE_SEQ)
            .fetch_max(seq, Ordering::AcqRel);
    }

    /// Copies the raw bytes of the slot for `seq`.
    pub fn read_slot(&self, seq: u64) -> [u8; RECORD_SIZE] {
        let offset = self.header.slot_offset(seq);
        let mut words = [0u64; RECORD_SIZE / 8];
        // SAFETY: the slot lies inside the mapping (slot_offset is below file_size) and is
        // 8-byte aligned; volatile reads because other processes write the same memory.
        unsafe {
            let source = self.map.as_ptr().add(offset) as *const u64;
            for (i, word) in words.iter_mut().enumerate() {
                *word = std::ptr::read_volatile(source.add(i));
            }
        }
        let mut bytes = [0u8; RECORD_SIZE];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        bytes
    }

    /// Decodes the record for `seq`, if the slot holds exactly that record.
    pub fn read_record(&self, seq: u64) -> Option<Record> {
        Record::decode(&self.read_slot(seq))
            .ok()
            .filter(|r| r.seq == seq)
    }

    /// Overwrites the slot for `seq`. The caller holds the account's lock.
    pub fn write_slot(&self, seq: u64, bytes: &[u8; RECORD_SIZE]) {
        let offset = self.header.slot_offset(seq);
        // SAFETY: as in `read_slot`; the lock guarantees no other writer touches this slot, and
        // readers check the checksum of whatever they copy.
        unsafe {
            let target = self.map.as_mut_ptr().add(offset) as *mut u64;
            for (i, chunk) in bytes.chunks_exact(8).enumerate() {
                let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
                std::ptr::write_volatile(target.add(i), word);
            }
        }
    }

    /// Appends `tx` after the newest record. The caller holds the account's exclusive lock; no
    /// disk wait happens here, only memory copies into the shared page cache.
    pub fn append_locked(&self, tx: &Transaction<'_>, now_us: i64) -> Result<Record, Rejection> {
        if tx.value <= 0 {
            return Err(Rejection::Invalid("valor must be a positive integer"));
        }
        let description = Description::new(tx.description)
            .ok_or(Rejection::Invalid("descricao must have 1 to 10 characters"))?;
        let (head, previous) = self.newest_locked()?;
        let balance_before = previous.map_or(0, |r| r.balance);
        let balance = match tx.kind {
            Kind::Credit => balance_before.checked_add(tx.value),
            Kind::Debit => balance_before.checked_sub(tx.value),
        }
        .ok_or(Rejection::Overflow)?;
        if balance < -self.header.limit {
            return Err(Rejection::LimitExceeded);
        }
        let record = Record {
            seq: head + 1,
            // Timestamps never go backwards within an account, even if the clock does.
            timestamp_us: now_us.max(previous.map_or(i64::MIN, |r| r.timestamp_us)),
            value: tx.value,
            balance,
            kind: tx.kind,
            description,
        };
        self.write_slot(record.seq, &record.encode());
        self.publish_head(record.seq);
        Ok(record)
    }

    /// Finds the newest record under the lock. The head counter is a hint written after the
    /// record: a writer killed between the two leaves a complete record beyond the head, which
    /// is adopted here (its balance was computed under the lock from the record before it).
    fn newest_locked(&self) -> Result<(u64, Option<Record>), Rejection> {
        let mut head = self.head();
        let mut previous = match head {
            0 => None,
            seq => Some(self.read_record(seq).ok_or(Rejection::Corrupt { seq })?),
        };
        let start = head;
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
        if head != start {
            self.publish_head(head);
        }
        Ok((head, previous))
    }

    /// Copies the newest `count` records up to `head`, newest first, into `out`, without the
    /// lock. Writers only ever write the slot after the head, so these records are immutable
    /// unless the ring laps the reader; the checksum and sequence checks detect that and the
    /// caller retries with a fresh head.
    pub fn snapshot(&self, head: u64, count: usize, out: &mut Vec<Record>) -> Result<i64, u64> {
        assert!((count as u64) < self.header.capacity);
        out.clear();
        let oldest = head.saturating_sub(count as u64) + 1;
        for seq in (oldest..=head).rev() {
            out.push(self.read_record(seq).ok_or(seq)?);
        }
        Ok(out.first().map_or(0, |r| r.balance))
    }
}

/// Opens or creates the file of a seeded account, race-free against other processes doing the
/// same at the same moment, and maps it.
pub fn open_account(
    dir: &Path,
    account_id: u32,
    limit: i64,
    capacity: u64,
) -> Result<(File, Mapping), FileError> {
    let path = dir.join(account_file_name(account_id));
    let file = match open_rw(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_account(dir, &path, account_id, limit, capacity)?;
            open_rw(&path).map_err(|e| FileError::io(&path, "open", e))?
        }
        Err(e) => return Err(FileError::io(&path, "open", e)),
    };
    let mapping = map_file(&file, &path)?;
    if mapping.header.account_id != account_id {
        return Err(FileError::Format {
            path,
            problem: "account id does not match file name".into(),
        });
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
        .custom_flags(libc_o_cloexec())
        .open(path)
}

fn libc_o_cloexec() -> i32 {
    rustix::fs::OFlags::CLOEXEC.bits() as i32
}

fn map_file(file: &File, path: &Path) -> Result<Mapping, FileError> {
    let length = file
        .metadata()
        .map_err(|e| FileError::io(path, "stat", e))?
        .len();
    if length < HEADER_SIZE as u64 {
        return Err(FileError::Format {
            path: path.into(),
            problem: "file shorter than its header".into(),
        });
    }
    let mut first = [0u8; header_offset::IMMUTABLE_END];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut first, 0)
        .map_err(|e| FileError::io(path, "read header", e))?;
    let header = Header::decode(&first).map_err(|e| FileError::Format {
        path: path.into(),
        problem: e.to_string(),
    })?;
    if length != header.file_size() {
        return Err(FileError::Format {
            path: path.into(),
            problem: format!("file is {length} bytes, header says {}", header.file_size()),
        });
    }
    let map = memmap2::MmapOptions::new()
        .len(header.file_size() as usize)
        .map_raw(file)
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
) -> Result<(), FileError> {
    let header = Header {
        account_id,
        limit,
        capacity,
        created_us: now_us(),
    };
    let temp = dir.join(format!(
        ".{}.tmp.{}.{}",
        account_file_name(account_id),
        std::process::id(),
        now_us()
    ));
    let result =
        write_new_file(&temp, &header).and_then(|()| match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(FileError::io(path, "link", e)),
        });
    let _ = std::fs::remove_file(&temp);
    result?;
    sync_dir(dir)
}

fn write_new_file(temp: &Path, header: &Header) -> Result<(), FileError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc_o_cloexec())
        .open(temp)
        .map_err(|e| FileError::io(temp, "create", e))?;
    // Reserve every block now: writing into a hole of a shared mapping on a full disk would
    // kill the process with SIGBUS later, instead of failing cleanly here.
    rustix::fs::fallocate(
        &file,
        rustix::fs::FallocateFlags::empty(),
        0,
        header.file_size(),
    )
    .map_err(|e| FileError::io(temp, "allocate", e.into()))?;
    std::os::unix::fs::FileExt::write_all_at(&file, &header.encode(), 0)
        .map_err(|e| FileError::io(temp, "write header", e))?;
    file.sync_all().map_err(|e| FileError::io(temp, "fsync", e))
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
    Format { path: PathBuf, problem: String },
}

impl FileError {
    fn io(path: &Path, operation: &'static str, source: io::Error) -> FileError {
        FileError::Io {
            path: path.into(),
            operation,
            source,
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Io {
                path,
                operation,
                source,
            } => {
                write!(f, "{}: {operation} failed: {source}", path.display())
            }
            FileError::Format { path, problem } => write!(f, "{}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for FileError {}
