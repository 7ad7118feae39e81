//! The database of one process and the per-thread handles that append and read. This is the
//! async glue over the runtime-neutral core: waiting for the lock without blocking the thread,
//! and group commit of fdatasync through the monoio runtime (io_uring, or a plain fdatasync on
//! the epoll driver).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::file::{self, FileError, Mapping, Rejection, Transaction, ACCOUNTS};
use crate::layout::{Record, RING_RECORDS_DEFAULT, RING_RECORDS_MAX, RING_RECORDS_MIN};
use crate::verify::{self, Corruption};

/// Most records a statement returns.
pub const STATEMENT_RECORDS_MAX: usize = 10;
/// Lock attempts that only yield to the runtime before sleeping between attempts.
const LOCK_SPINS_MAX: u32 = 64;
/// Lock attempts in all: with 1 ms sleeps after the spins, about two seconds before giving up.
/// The lock is held for microseconds, so only a stopped process can hold it this long.
const LOCK_RETRIES_MAX: u32 = LOCK_SPINS_MAX + 2_000;
/// Times a statement re-reads when the ring lapped it mid-copy.
const SNAPSHOT_RETRIES_MAX: u32 = 16;

/// How a database is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// Ring capacity of files created by this open; existing files keep theirs.
    pub ring_records: u64,
    /// Fault injection for tests: make fdatasync fail.
    pub faults: Faults,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ring_records: RING_RECORDS_DEFAULT,
            faults: Faults::default(),
        }
    }
}

/// The storage seam for fault injection: tests make syncs fail without a broken disk.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// When set, the sync after this many successful syncs (counted across the process) and
    /// every later one fails with EIO.
    pub fail_sync_after: Option<Arc<AtomicU64>>,
}

impl Faults {
    /// Fails the `n`-th and later syncs from now on (0: the very next one).
    pub fn fail_sync_after(n: u64) -> Faults {
        Faults {
            fail_sync_after: Some(Arc::new(AtomicU64::new(n))),
        }
    }

    fn sync_should_fail(&self) -> bool {
        let Some(remaining) = &self.fail_sync_after else {
            return false;
        };
        remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_err()
    }
}

/// Why the database cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The data directory is missing or not a directory.
    NoDirectory(PathBuf),
    /// An option is out of range.
    Options(&'static str),
    /// A file could not be created, opened or read.
    File(FileError),
    /// Acknowledged history is damaged; the process must not serve it.
    Corrupt {
        path: PathBuf,
        corruption: Corruption,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NoDirectory(dir) => {
                write!(
                    f,
                    "data directory {} does not exist or is not a directory",
                    dir.display()
                )
            }
            OpenError::Options(problem) => write!(f, "invalid options: {problem}"),
            OpenError::File(e) => write!(f, "{e}"),
            OpenError::Corrupt { path, corruption } => write!(
                f,
                "{}: damaged history, {corruption}; refusing to serve (run `espora verify`)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<FileError> for OpenError {
    fn from(e: FileError) -> OpenError {
        OpenError::File(e)
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
    /// The transaction breaks a field rule. Nothing was written.
    Invalid(&'static str),
    /// The store cannot acknowledge: a sync failed, the lock could not be taken, or the file is
    /// damaged. The transaction may or may not be in the file.
    Unavailable(Unavailable),
}

/// Why a statement cannot be read.
#[derive(Debug)]
pub enum ReadError {
    /// No such account.
    UnknownAccount,
    /// The store cannot prove the snapshot durable, or the file is damaged.
    Unavailable(Unavailable),
}

/// A failure of the store itself, as opposed to a rejected request.
#[derive(Debug)]
pub enum Unavailable {
    /// An fdatasync failed earlier: from then on nothing is acknowledged (the page cache may have
    /// dropped the data, so retrying could report success for lost writes).
    Poisoned,
    /// fdatasync failed now.
    Sync(io::Error),
    /// flock failed, or stayed taken for too long.
    Lock(Option<io::Error>),
    /// The newest record of the account is unreadable.
    Corrupt { seq: u64 },
    /// The ring lapped a statement reader repeatedly.
    Contended,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Poisoned => write!(f, "storage stopped after a failed fdatasync"),
            Unavailable::Sync(e) => write!(f, "fdatasync failed: {e}"),
            Unavailable::Lock(Some(e)) => write!(f, "flock failed: {e}"),
            Unavailable::Lock(None) => write!(f, "account lock held too long by another writer"),
            Unavailable::Corrupt { seq } => write!(f, "record {seq} is damaged"),
            Unavailable::Contended => write!(f, "statement kept being overtaken by writers"),
        }
    }
}

/// Result of an acknowledged append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Balance right after the transaction.
    pub balance: i64,
    /// The account's credit limit.
    pub limit: i64,
    /// Sequence number and time of the stored record.
    pub seq: u64,
    pub timestamp_us: i64,
}

/// A consistent, durable view of an account.
#[derive(Clone, Debug, Default)]
pub struct Statement {
    pub balance: i64,
    pub limit: i64,
    /// The newest records, newest first, at most [`STATEMENT_RECORDS_MAX`]. Reused between calls.
    pub records: Vec<Record>,
}

struct Account {
    id: u32,
    mapping: Mapping,
}

/// The database of one process: the mapped account files, shared by all worker threads.
pub struct Db {
    dir: PathBuf,
    accounts: Vec<Account>,
    options: Options,
    /// Set when a sync fails; never cleared.
    poisoned: AtomicBool,
    /// fdatasyncs issued by this process since open.
    syncs: AtomicU64,
    /// Records appended by this process since open.
    appends: AtomicU64,
}

/// Counters of one process's activity, for benchmarks and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// fdatasyncs issued by this process.
    pub syncs: u64,
    /// Records appended by this process.
    pub appends: u64,
}

impl Db {
    /// Opens the data directory, creating the seeded accounts that are missing (safe against
    /// other processes doing the same), then recovers and checks every file under its lock.
    pub fn open(dir: &Path, options: Options) -> Result<Db, OpenError> {
        if !(RING_RECORDS_MIN..=RING_RECORDS_MAX).contains(&options.ring_records) {
            return Err(OpenError::Options("ring_records out of range"));
        }
        if !dir.is_dir() {
            return Err(OpenError::NoDirectory(dir.into()));
        }
        let mut accounts = Vec::with_capacity(ACCOUNTS.len());
        for (id, limit) in ACCOUNTS {
            let (handle, mapping) = file::open_account(dir, id, limit, options.ring_records)?;
            recover(&handle, &mapping)?;
            accounts.push(Account { id, mapping });
        }
        Ok(Db {
            dir: dir.into(),
            accounts,
            options,
            poisoned: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            appends: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The credit limit of an account, if it exists.
    pub fn limit(&self, account_id: u32) -> Option<i64> {
        self.account_index(account_id)
            .map(|i| self.accounts[i].mapping.header().limit)
    }

    fn account_index(&self, account_id: u32) -> Option<usize> {
        self.accounts.iter().position(|a| a.id == account_id)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            syncs: self.syncs.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
        }
    }

    /// Whether a failed sync has stopped all acknowledgements.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// A handle for the calling thread, with its own open file descriptions so that its flocks
    /// exclude other threads exactly as they exclude other processes. Call it on the thread
    /// that will use it, inside its monoio runtime; `sync` says how that runtime can wait for
    /// an fdatasync without blocking the thread.
    pub fn worker(self: &Arc<Db>, sync: SyncVia) -> Result<Worker, OpenError> {
        let mut files = Vec::with_capacity(self.accounts.len());
        for account in &self.accounts {
            let path = account.mapping.path();
            let io_error = |operation, source| FileError::Io {
                path: path.into(),
                operation,
                source,
            };
            let handle = file::open_rw(path).map_err(|e| io_error("open", e))?;
            let copy = handle.try_clone().map_err(|e| io_error("dup", e))?;
            let syncer = match sync {
                SyncVia::IoUring => {
                    Syncer::Ring(monoio::fs::File::from_std(copy).map_err(|e| io_error("open", e))?)
                }
                SyncVia::Thread => Syncer::Thread(
                    SyncThread::start(copy, account.id).map_err(|e| io_error("sync thread", e))?,
                ),
            };
            files.push(WorkerFile {
                lock: handle,
                syncer,
                sync: SyncState::default(),
            });
        }
        Ok(Worker {
            db: Arc::clone(self),
            files,
        })
    }
}

/// Brings a file back to a sound state under its exclusive lock: finds the newest record,
/// erases leftovers of a crash, publishes the head, and makes it all durable.
fn recover(handle: &std::fs::File, mapping: &Mapping) -> Result<(), OpenError> {
    let path = mapping.path();
    let io_error = |operation, source| FileError::Io {
        path: path.into(),
        operation,
        source,
    };
    file::lock_exclusive_blocking(handle).map_err(|e| io_error("flock", e))?;
    let result = (|| {
        let scan = verify::scan(mapping).map_err(|corruption| OpenError::Corrupt {
            path: path.into(),
            corruption,
        })?;
        if !scan.orphans.is_empty() {
            eprintln!(
                "espora: {}: erased {} unacknowledged record(s) left beyond seq {} by a crash",
                path.display(),
                scan.orphans.len(),
                scan.newest
            );
            verify::erase(mapping, &scan.orphans);
        }
        mapping.publish_head(scan.newest);
        handle.sync_data().map_err(|e| io_error("fdatasync", e))?;
        mapping.advance_durable(scan.newest);
        Ok(())
    })();
    file::unlock(handle);
    result
}

/// How a worker's runtime waits for fdatasync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncVia {
    /// Submit fdatasync to the io_uring of the runtime (monoio's `File::sync_data`).
    IoUring,
    /// Run fdatasync on a helper thread per file and wait for its answer on a socket. For the
    /// epoll driver, where `File::sync_data` would block the whole worker thread.
    Thread,
}

struct WorkerFile {
    /// This thread's own open file description, for flock.
    lock: std::fs::File,
    /// The same file for fdatasync.
    syncer: Syncer,
    sync: SyncState,
}

enum Syncer {
    Ring(monoio::fs::File),
    Thread(SyncThread),
}

/// A thread that runs fdatasync on one file when asked. The worker writes one byte to its end
/// of a socket pair; the thread syncs and answers with the errno as 4 little-endian bytes (0 on
/// success). Closing the worker's end (dropping the Worker) ends the thread.
struct SyncThread {
    /// The worker's end of the socket pair; taken out while a request is in progress.
    channel: Cell<Option<monoio::net::UnixStream>>,
    /// A request was sent and its answer not read yet (the waiting task was dropped).
    /// INVARIANT: at most one request is outstanding.
    answer_pending: Cell<bool>,
}

impl SyncThread {
    fn start(file: std::fs::File, account_id: u32) -> io::Result<SyncThread> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        std::thread::Builder::new()
            .name(format!("espora-sync-{account_id}"))
            .stack_size(64 * 1024)
            .spawn(move || Self::serve(file, theirs))?;
        ours.set_nonblocking(true)?;
        Ok(SyncThread {
            channel: Cell::new(Some(monoio::net::UnixStream::from_std(ours)?)),
            answer_pending: Cell::new(false),
        })
    }

    fn serve(file: std::fs::File, mut channel: std::os::unix::net::UnixStream) {
        use std::io::{Read, Write};
        let mut request = [0u8; 1];
        while let Ok(1) = channel.read(&mut request) {
            let errno = match file.sync_data() {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(libc_eio()),
            };
            if channel.write_all(&errno.to_le_bytes()).is_err() {
                return;
            }
        }
    }

    async fn sync(&self) -> io::Result<()> {
        use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};
        // Only one sync per file is in flight on a worker (see `InFlight`), so the channel is
        // always here; the guard puts it back even if this future is dropped.
        let mut channel = ChannelGuard {
            home: &self.channel,
            stream: self.channel.take(),
        };
        let stream = channel
            .stream
            .as_mut()
            .expect("one sync in flight per file");
        if self.answer_pending.get() {
            // The previous waiter went away: its sync is still running; its answer comes first.
            let (result, _) = stream.read_exact(vec![0u8; 4]).await;
            result?;
            self.answer_pending.set(false);
        }
        let (result, _) = stream.write_all(vec![1u8]).await;
        result?;
        self.answer_pending.set(true);
        let (result, answer) = stream.read_exact(vec![0u8; 4]).await;
        result?;
        self.answer_pending.set(false);
        match i32::from_le_bytes(answer[..4].try_into().expect("4 bytes")) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

struct ChannelGuard<'a> {
    home: &'a Cell<Option<monoio::net::UnixStream>>,
    stream: Option<monoio::net::UnixStream>,
}

impl Drop for ChannelGuard<'_> {
    fn drop(&mut self) {
        self.home.set(self.stream.take());
    }
}

/// Group commit state of one file on one worker thread.
#[derive(Default)]
struct SyncState {
    /// INVARIANT: at most one fdatasync of this file is in flight on this thread.
    in_flight: Cell<bool>,
    /// Tasks waiting for the in-flight sync to finish.
    waiters: RefCell<Vec<Waker>>,
    /// Bumped each time a sync finishes, so waiters know they were woken for real.
    generation: Cell<u64>,
}

/// One thread's handle on the database. Tasks of the same thread share it by reference.
pub struct Worker {
    db: Arc<Db>,
    files: Vec<WorkerFile>,
}

impl Worker {
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends a transaction and returns once it is durable (an fdatasync that started after
    /// the write has completed, on this thread or any other process).
    pub async fn append(
        &self,
        account_id: u32,
        tx: &Transaction<'_>,
    ) -> Result<Appended, AppendError> {
        let index = self
            .db
            .account_index(account_id)
            .ok_or(AppendError::UnknownAccount)?;
        if self.db.is_poisoned() {
            return Err(AppendError::Unavailable(Unavailable::Poisoned));
        }
        let mapping = &self.db.accounts[index].mapping;
        let file = &self.files[index];
        self.lock(file).await.map_err(AppendError::Unavailable)?;
        let written = mapping.append_locked(tx, file::now_us());
        file::unlock(&file.lock);
        if written.is_ok() {
            self.db.appends.fetch_add(1, Ordering::Relaxed);
        }
        let record = written.map_err(|rejection| match rejection {
            Rejection::LimitExceeded => AppendError::LimitExceeded,
            Rejection::Overflow => AppendError::Overflow,
            Rejection::Invalid(why) => AppendError::Invalid(why),
            Rejection::Corrupt { seq } => AppendError::Unavailable(Unavailable::Corrupt { seq }),
        })?;
        self.wait_durable(index, record.seq)
            .await
            .map_err(AppendError::Unavailable)?;
        Ok(Appended {
            balance: record.balance,
            limit: mapping.header().limit,
            seq: record.seq,
            timestamp_us: record.timestamp_us,
        })
    }

    /// Reads the balance and newest records as one snapshot that holds every transaction
    /// acknowledged before the call, and only durable ones.
    pub async fn statement(&self, account_id: u32, out: &mut Statement) -> Result<(), ReadError> {
        let index = self
            .db
            .account_index(account_id)
            .ok_or(ReadError::UnknownAccount)?;
        let mapping = &self.db.accounts[index].mapping;
        out.limit = mapping.header().limit;
        for _ in 0..SNAPSHOT_RETRIES_MAX {
            let head = mapping.head();
            self.wait_durable(index, head)
                .await
                .map_err(ReadError::Unavailable)?;
            if let Ok(balance) = mapping.snapshot(head, STATEMENT_RECORDS_MAX, &mut out.records) {
                out.balance = balance;
                return Ok(());
            }
        }
        Err(ReadError::Unavailable(Unavailable::Contended))
    }

    /// Takes the file's exclusive lock without blocking the thread: the lock is held for
    /// microseconds, so first yield to other tasks, then sleep a millisecond between attempts.
    async fn lock(&self, file: &WorkerFile) -> Result<(), Unavailable> {
        for attempt in 0..LOCK_RETRIES_MAX {
            match file::try_lock_exclusive(&file.lock) {
                Ok(true) => return Ok(()),
                Ok(false) if attempt < LOCK_SPINS_MAX => yield_now().await,
                Ok(false) => monoio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => return Err(Unavailable::Lock(Some(e))),
            }
        }
        Err(Unavailable::Lock(None))
    }

    /// Waits until `seq` is durable, sharing syncs between the tasks of this thread: at most
    /// one fdatasync per file is in flight here, and a task whose write came after the start of
    /// the in-flight sync waits for it to end and then for the next one.
    async fn wait_durable(&self, index: usize, seq: u64) -> Result<(), Unavailable> {
        let mapping = &self.db.accounts[index].mapping;
        let state = &self.files[index].sync;
        loop {
            if self.db.is_poisoned() {
                return Err(Unavailable::Poisoned);
            }
            if mapping.durable() >= seq {
                return Ok(());
            }
            if state.in_flight.get() {
                SyncFinished {
                    state,
                    generation: state.generation.get(),
                }
                .await;
                continue;
            }
            // Everything written up to the current head is in the page cache now, so a sync
            // that starts after this load covers it.
            let target = mapping.head();
            let result = {
                let _in_flight = InFlight::start(state);
                self.sync_file(index).await
            };
            match result {
                Ok(()) => mapping.advance_durable(target),
                Err(e) => {
                    self.db.poisoned.store(true, Ordering::Release);
                    return Err(Unavailable::Sync(e));
                }
            }
        }
    }

    async fn sync_file(&self, index: usize) -> io::Result<()> {
        self.db.syncs.fetch_add(1, Ordering::Relaxed);
        if self.db.options.faults.sync_should_fail() {
            return Err(io::Error::from_raw_os_error(libc_eio()));
        }
        match &self.files[index].syncer {
            Syncer::Ring(file) => file.sync_data().await,
            Syncer::Thread(thread) => thread.sync().await,
        }
    }
}

fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

/// Marks a sync in flight; ending it (also when the waiting task is dropped mid-sync) clears
/// the mark and wakes the waiters, so that one of them starts the next sync.
struct InFlight<'a>(&'a SyncState);

impl<'a> InFlight<'a> {
    fn start(state: &'a SyncState) -> InFlight<'a> {
        assert!(!state.in_flight.get());
        state.in_flight.set(true);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let state = self.0;
        state.in_flight.set(false);
        state.generation.set(state.generation.get() + 1);
        for waker in state.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// Resolves when the in-flight sync of a file finishes.
struct SyncFinished<'a> {
    state: &'a SyncState,
    generation: u64,
}

impl Future for SyncFinished<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.generation.get() != self.generation {
            return Poll::Ready(());
        }
        self.state.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// Gives other tasks of this thread a turn.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}
