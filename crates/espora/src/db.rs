//! The database of one process and the per-thread handles that append and read: opening and
//! recovering the files, then the append and statement paths over the commit protocol
//! (`commit.rs`) and the worker's I/O back end (`sync.rs`).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::commit::{self, Commit, Counters, Local};
use crate::error::{AppendError, FileError, OpenError, ReadError, Unavailable};
use crate::faults::Faults;
use crate::file::{self, Mapping, Rejection, Transaction};
use crate::layout::{
    Record, FORMAT_VERSION_LEGACY, RING_RECORDS_DEFAULT, RING_RECORDS_MAX, RING_RECORDS_MIN,
};
use crate::shared::Shared;
use crate::sync::{Backend, FileIo, Ring};
use crate::verify;

/// Most records a statement may be asked to return: a statement copies them without the lock,
/// relying on writers never reaching them, so they must be few against the smallest ring.
pub const STATEMENT_RECORDS_MAX: usize = (RING_RECORDS_MIN / 2) as usize;
/// Times a statement re-reads when the ring lapped it mid-copy.
const SNAPSHOT_RETRIES_MAX: u32 = 16;

/// How a database is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// The accounts to serve, as id and credit limit in cents: their files are created when
    /// missing (the limit is fixed at creation) and opened otherwise. None by default: the
    /// embedding application says which accounts exist.
    pub accounts: Vec<(u32, i64)>,
    /// How many of the newest records a statement returns, at most
    /// [`STATEMENT_RECORDS_MAX`].
    pub statement_records: usize,
    /// Ring capacity of files created by this open; existing files keep theirs.
    pub ring_records: u64,
    /// Fault injection for tests.
    pub faults: Faults,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            accounts: Vec::new(),
            statement_records: 10,
            ring_records: RING_RECORDS_DEFAULT,
            faults: Faults::default(),
        }
    }
}

impl Options {
    fn check(&self) -> Result<(), OpenError> {
        if !(RING_RECORDS_MIN..=RING_RECORDS_MAX).contains(&self.ring_records) {
            return Err(OpenError::RingRecords {
                asked: self.ring_records,
                min: RING_RECORDS_MIN,
                max: RING_RECORDS_MAX,
            });
        }
        if !(1..=STATEMENT_RECORDS_MAX).contains(&self.statement_records) {
            return Err(OpenError::StatementRecords {
                asked: self.statement_records,
                max: STATEMENT_RECORDS_MAX,
            });
        }
        if self.accounts.is_empty() {
            return Err(OpenError::Accounts("no account to serve"));
        }
        for (i, &(id, limit)) in self.accounts.iter().enumerate() {
            if limit < 0 {
                return Err(OpenError::Accounts("a credit limit is negative"));
            }
            if self.accounts[..i].iter().any(|&(other, _)| other == id) {
                return Err(OpenError::Accounts("an account id appears twice"));
            }
        }
        Ok(())
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
    /// The newest records, newest first, at most [`Options::statement_records`]. Reused between
    /// calls.
    pub records: Vec<Record>,
}

/// Counters of one process's activity, for benchmarks and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records appended by this process.
    pub appends: u64,
    /// fdatasyncs issued by this process.
    pub syncs: u64,
    /// Records those syncs made durable (syncs / synced records: the group size).
    pub synced_records: u64,
    /// Times a writer of this process slept on a lock held by another thread or process.
    pub lock_sleeps: u64,
    /// Times a task of this process slept waiting for another thread's or process's sync.
    pub sync_sleeps: u64,
    /// Sync claims this process took over because they stayed unchanged too long.
    pub takeovers: u64,
}

struct Account {
    id: u32,
    mapping: Mapping,
    shared: Arc<Shared>,
}

/// The database of one process: the mapped account files, shared by all worker threads.
pub struct Db {
    dir: PathBuf,
    accounts: Vec<Account>,
    options: Options,
    /// Set when a sync fails; never cleared.
    poisoned: AtomicBool,
    /// Every worker's own counters (a worker only ever writes its own, so the hot path shares
    /// no cache line); summed when someone asks.
    counters: Mutex<Vec<Arc<Counters>>>,
}

impl Db {
    /// Opens the data directory, creating the files of the accounts that are missing (safe
    /// against other processes doing the same), then recovers and checks every file under its
    /// lock.
    pub fn open(dir: &Path, options: Options) -> Result<Db, OpenError> {
        options.check()?;
        if !dir.is_dir() {
            return Err(OpenError::NoDirectory(dir.into()));
        }
        let mut accounts = Vec::with_capacity(options.accounts.len());
        for &(id, limit) in &options.accounts {
            let (handle, mapping) =
                file::open_account(dir, id, limit, options.ring_records, &options.faults)?;
            let shared = Arc::new(Shared::open(&dir.join(file::shared_file_name(id)))?);
            let mapping = recover(&handle, mapping, &shared)?;
            accounts.push(Account {
                id,
                mapping,
                shared,
            });
        }
        Ok(Db {
            dir: dir.into(),
            accounts,
            options,
            poisoned: AtomicBool::new(false),
            counters: Mutex::new(Vec::new()),
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

    /// The counters of every worker this database has made, summed.
    pub fn stats(&self) -> Stats {
        let workers = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let sum = |field: fn(&Counters) -> &AtomicU64| -> u64 {
            workers
                .iter()
                .map(|c| field(c).load(Ordering::Relaxed))
                .sum()
        };
        Stats {
            appends: sum(|c| &c.appends),
            syncs: sum(|c| &c.syncs),
            synced_records: sum(|c| &c.synced_records),
            lock_sleeps: sum(|c| &c.lock_sleeps),
            sync_sleeps: sum(|c| &c.sync_sleeps),
            takeovers: sum(|c| &c.takeovers),
        }
    }

    /// Whether a failed sync has stopped all acknowledgements.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// A handle for the calling thread, with its own open file descriptions so that its flocks
    /// exclude other threads exactly as they exclude other processes. Call it on the thread
    /// that will use it, inside its monoio runtime (either driver); `backend` says how it waits
    /// for the disk and for other processes.
    pub fn worker(self: &Arc<Db>, backend: Backend) -> Result<Worker, OpenError> {
        let ring = match backend {
            Backend::Threads => None,
            Backend::IoUring => Some(Ring::start().map_err(OpenError::Backend)?),
            Backend::Auto => Ring::start().ok(),
        };
        let mut files = Vec::with_capacity(self.accounts.len());
        for account in &self.accounts {
            let path = account.mapping.path();
            let file = file::open_rw(path).map_err(|e| FileError::io(path, "open", e))?;
            let copy = file
                .try_clone()
                .map_err(|e| FileError::io(path, "dup", e))?;
            let shared = Arc::clone(&account.shared);
            let io = match &ring {
                Some(ring) => FileIo::ring(ring, copy, shared),
                None => FileIo::threads(copy, shared, account.id)
                    .map_err(|e| FileError::io(path, "start helper threads", e))?,
            };
            files.push(WorkerFile {
                file,
                io,
                local: Local::default(),
            });
        }
        let counters = Arc::new(Counters::default());
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&counters));
        Ok(Worker {
            db: Arc::clone(self),
            files,
            ring,
            tokens: Cell::new(commit::token_seed()),
            counters,
        })
    }
}

/// Brings a file back to a sound state under its exclusive lock: finds the newest record,
/// erases leftovers of a crash, makes it all durable, upgrades a version-1 file, and rebuilds
/// the shared state.
fn recover(
    handle: &std::fs::File,
    mapping: Mapping,
    shared: &Shared,
) -> Result<Mapping, OpenError> {
    let path = mapping.path().to_path_buf();
    let io_error = |operation, source| FileError::io(&path, operation, source);
    file::lock_exclusive_blocking(handle).map_err(|e| io_error("flock", e))?;
    let result = (|| {
        let known_durable = shared.durable_if_bound(mapping.header());
        let scan =
            verify::scan(&mapping, known_durable).map_err(|corruption| OpenError::Corrupt {
                path: path.clone(),
                corruption,
            })?;
        if !scan.orphans.is_empty() {
            eprintln!(
                "espora: {}: erased {} unacknowledged record(s) left beyond seq {} by a crash",
                path.display(),
                scan.orphans.len(),
                scan.newest
            );
            verify::erase(handle, &mapping, &scan.orphans).map_err(|e| io_error("erase", e))?;
        }
        let probed = shared.coherent();
        if !probed.map_err(|e| FileError::io(shared.path(), "probe", e))? {
            return Err(OpenError::Incoherent(shared.path().into()));
        }
        handle.sync_data().map_err(|e| io_error("fdatasync", e))?;
        let mapping = if mapping.header().version == FORMAT_VERSION_LEGACY {
            let upgraded = file::upgrade_header(handle, &mapping, scan.newest)?;
            handle.sync_data().map_err(|e| io_error("fdatasync", e))?;
            eprintln!(
                "espora: {}: upgraded to format version {}",
                path.display(),
                upgraded.header().version
            );
            upgraded
        } else {
            mapping
        };
        shared.reset(mapping.header(), scan.newest);
        Ok(mapping)
    })();
    file::unlock(handle);
    result
}

/// One worker thread's own handles on one file.
struct WorkerFile {
    /// This thread's own open file description: flock and pwrite.
    file: std::fs::File,
    io: FileIo,
    local: Local,
}

/// One thread's handle on the database. Tasks of the same thread share it by reference.
pub struct Worker {
    db: Arc<Db>,
    files: Vec<WorkerFile>,
    ring: Option<Rc<Ring>>,
    tokens: Cell<u64>,
    counters: Arc<Counters>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(ring) = &self.ring {
            ring.close();
        }
    }
}

impl Worker {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn commit(&self, index: usize) -> Commit<'_> {
        let file = &self.files[index];
        Commit {
            shared: &self.db.accounts[index].shared,
            file: &file.file,
            io: &file.io,
            local: &file.local,
            poisoned: &self.db.poisoned,
            counters: &self.counters,
            faults: &self.db.options.faults,
            tokens: &self.tokens,
        }
    }

    /// Appends a transaction and returns once it is durable (an fdatasync that started after
    /// the write has completed, on this thread or any other, in this process or another).
    pub async fn append(
        &self,
        account_id: u32,
        tx: &Transaction<'_>,
    ) -> Result<Appended, AppendError> {
        let index = self
            .db
            .account_index(account_id)
            .ok_or(AppendError::UnknownAccount)?;
        let entry = tx.validate().map_err(AppendError::Invalid)?;
        let account = &self.db.accounts[index];
        let commit = self.commit(index);
        let unavailable = AppendError::Unavailable;
        let record = loop {
            if self.db.is_poisoned() {
                return Err(unavailable(Unavailable::Poisoned));
            }
            let locked = commit.lock().await.map_err(unavailable)?;
            let written =
                account
                    .mapping
                    .append_locked(commit.file, &account.shared, &entry, file::now_us());
            drop(locked);
            match written {
                Ok(record) => break record,
                Err(Rejection::Window { head }) => {
                    commit.wait_durable(head).await.map_err(unavailable)?
                }
                Err(rejection) => return Err(rejected(rejection)),
            }
        };
        // Published after the unlock: a store into the shared page never happens under the
        // lock, and the next writer adopts the record if it comes first.
        account.shared.publish_head(record.seq);
        self.counters.appends.fetch_add(1, Ordering::Relaxed);
        commit.wait_durable(record.seq).await.map_err(unavailable)?;
        Ok(Appended {
            balance: record.balance,
            limit: account.mapping.header().limit,
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
        let account = &self.db.accounts[index];
        let commit = self.commit(index);
        out.limit = account.mapping.header().limit;
        for _ in 0..SNAPSHOT_RETRIES_MAX {
            // Every acknowledged append published its head before it was acknowledged.
            let head = account.shared.head();
            commit
                .wait_durable(head)
                .await
                .map_err(ReadError::Unavailable)?;
            let snapshot =
                account
                    .mapping
                    .snapshot(head, self.db.options.statement_records, &mut out.records);
            if let Ok(balance) = snapshot {
                out.balance = balance;
                return Ok(());
            }
        }
        Err(ReadError::Unavailable(Unavailable::Contended))
    }
}

fn rejected(rejection: Rejection) -> AppendError {
    match rejection {
        Rejection::LimitExceeded => AppendError::LimitExceeded,
        Rejection::Overflow => AppendError::Overflow,
        Rejection::Corrupt { seq } => AppendError::Unavailable(Unavailable::Corrupt { seq }),
        Rejection::LegacyWriter => AppendError::Unavailable(Unavailable::LegacyWriter),
        Rejection::Write(e) => AppendError::Unavailable(Unavailable::Write(e)),
        Rejection::Window { .. } => unreachable!("the window is waited for"),
    }
}
