//! The database of one process and the per-thread handles that append and read: opening and
//! recovering the files, then the append and statement paths over the commit protocol
//! (`commit.rs`) and the worker's I/O back end (`sync.rs`).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::commit::{self, Commit, Counters, Durable, Local};
use crate::device::Image;
use crate::error::{AppendError, FileError, OpenError, ReadError, Rejection, Unavailable};
use crate::faults::Faults;
use crate::file::{self, Entry, Mapping};
use crate::layout::{
    ring_records_valid, Header, Record, RECORD_SIZE, RING_RECORDS_DEFAULT, RING_RECORDS_MAX,
    RING_RECORDS_MIN, RING_RECORDS_STEP,
};
use crate::shared::{Event, Shared, Tagged};
use crate::sync::{Backend, FileIo, Io};
use crate::verify::{self, Slots};

/// Most records a statement may be asked to return: a statement copies them without the lock,
/// relying on writers never reaching them, so they must be few against the smallest ring.
pub const STATEMENT_RECORDS_MAX: usize = (RING_RECORDS_MIN / 2) as usize;
/// Times a statement re-reads when the ring lapped it mid-copy, or a recovery changed it.
const SNAPSHOT_RETRIES_MAX: u32 = 16;
/// Times an open starts a file's recovery over when reading the device or the sync after it
/// fails: the first fdatasync of a new file description reports a writeback error that no
/// description has seen yet, however old, and the first direct read after a failed writeback
/// reports it too. An error that persists is the disk's own, and the open fails.
const RECOVERY_ATTEMPTS_MAX: u32 = 3;

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
        if !ring_records_valid(self.ring_records) {
            return Err(OpenError::RingRecords {
                asked: self.ring_records,
                min: RING_RECORDS_MIN,
                max: RING_RECORDS_MAX,
                step: RING_RECORDS_STEP,
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
    /// The file description recovery used, kept open: it was open before any writeback error
    /// that its workers' descriptions, opened later, may never be told of (see
    /// [`Db::worker`]). Locked while synced, so that of two workers starting together neither
    /// goes on before an error the other's sync consumed has poisoned the database.
    recovered: Mutex<std::fs::File>,
}

/// The database of one process: the mapped account files, shared by all worker threads.
pub struct Db {
    dir: PathBuf,
    accounts: Vec<Account>,
    options: Options,
    /// Set when a sync fails, or a record turns out not to have reached the disk; never
    /// cleared. Shared with the workers' back ends, which set it when a failed fdatasync
    /// completes, whether or not its task still waits.
    poisoned: Arc<AtomicBool>,
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
        for path in crate::paths::remove_abandoned(dir) {
            eprintln!(
                "espora: removed {}, left by a file creation that did not finish",
                path.display()
            );
        }
        let mut accounts = Vec::with_capacity(options.accounts.len());
        for &(id, limit) in &options.accounts {
            let (handle, mapping) =
                file::open_account(dir, id, limit, options.ring_records, &options.faults)?;
            let shared = Arc::new(Shared::open(&dir.join(file::shared_file_name(id)))?);
            recover(&handle, &mapping, &shared)?;
            accounts.push(Account {
                id,
                mapping,
                shared,
                recovered: Mutex::new(handle),
            });
        }
        Ok(Db {
            dir: dir.into(),
            accounts,
            options,
            poisoned: Arc::new(AtomicBool::new(false)),
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
        let poisoned = Arc::clone(&self.poisoned);
        let faults = self.options.faults.clone();
        let io = match backend {
            Backend::Threads => Io::threads(poisoned, faults),
            Backend::IoUring => Io::ring(poisoned, faults),
            Backend::Auto => Io::ring(Arc::clone(&poisoned), faults.clone())
                .or_else(|_| Io::threads(poisoned, faults)),
        }
        .map_err(OpenError::Backend)?;
        // A worker that fails to start ends the reaper task it started.
        let started = self.worker_files(&io);
        let files = started.inspect_err(|_| io.close())?;
        // A writeback error that another process reported before these descriptions were
        // opened is never reported to them (the kernel tells each description of an error once,
        // and a description opened after one was seen starts past it). The description recovery
        // used was open before any error since recovery, so one fdatasync of it tells: from
        // here on, every error is reported to the worker's own descriptions.
        for account in &self.accounts {
            let recovered = account.recovered.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = recovered.sync_data() {
                self.poisoned.store(true, Ordering::Release);
                eprintln!(
                    "espora: {}: fdatasync failed: {e}; stopping",
                    account.mapping.path().display()
                );
            }
        }
        let counters = Arc::new(Counters::default());
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&counters));
        Ok(Worker {
            db: Arc::clone(self),
            files,
            io,
            tokens: Cell::new(commit::token_seed()),
            counters,
        })
    }

    /// The calling worker's own descriptions and I/O of every account file.
    fn worker_files(&self, io: &Rc<Io>) -> Result<Vec<WorkerFile>, OpenError> {
        let mut files = Vec::with_capacity(self.accounts.len());
        for account in &self.accounts {
            let path = account.mapping.path();
            let file = file::open_rw(path).map_err(|e| FileError::io(path, "open", e))?;
            let copy = file
                .try_clone()
                .map_err(|e| FileError::io(path, "dup", e))?;
            let io = FileIo::new(io, copy, Arc::clone(&account.shared), account.id)
                .map_err(|e| FileError::io(path, "start helper threads", e))?;
            files.push(WorkerFile {
                file,
                io,
                local: Local::default(),
            });
        }
        Ok(files)
    }
}

/// Brings a file back to a sound state from what its device holds, then tells the other
/// processes (see `device.rs` for why the page cache is not trusted). An attempt that fails on
/// I/O starts over (see [`RECOVERY_ATTEMPTS_MAX`]); damage is reported at once.
fn recover(handle: &std::fs::File, mapping: &Mapping, shared: &Shared) -> Result<(), OpenError> {
    let mut attempt = 1;
    loop {
        match recover_once(handle, mapping, shared) {
            Err(OpenError::File(e)) if attempt < RECOVERY_ATTEMPTS_MAX => {
                eprintln!("espora: {e}; recovering again from the device");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One recovery, in three steps:
///
/// 1. Without the lock, while the other processes go on serving: read the whole file from the
///    device.
/// 2. Under the exclusive lock: read again the pages that writers touched meanwhile (all of it
///    if another recovery ran), decide the history from the device's bytes (`verify::scan`),
///    write those bytes back wherever the page cache differs (records the disk never got, and
///    leftovers of a crash, which are erased), and publish the history as a new generation of
///    the shared state, with the durable watermark at the highest anchor. Unlock and wake the
///    writers waiting for it.
/// 3. After the lock: fdatasync (the device may hold what it returned in a volatile cache, and
///    the rewritten pages must reach it), then raise the durable watermark over the history.
fn recover_once(
    handle: &std::fs::File,
    mapping: &Mapping,
    shared: &Shared,
) -> Result<(), OpenError> {
    let path = mapping.path();
    let header = *mapping.header();
    let io_error = |operation, source| OpenError::File(FileError::io(path, operation, source));
    // Unbound shared state: no process serves the file in this boot yet, so there are no
    // writers to keep going, and the read happens under the lock.
    let generation = shared.generation_if_bound(&header);
    let early = match generation {
        Some(_) => {
            let before = newest_cached(mapping, shared);
            let image = Image::read(path, &header).map_err(|e| io_error("read the device", e))?;
            Some((before, image))
        }
        None => None,
    };
    file::lock_exclusive_blocking(handle).map_err(|e| io_error("flock", e))?;
    let locked = (|| {
        let read_all = || Image::read(path, &header).map_err(|e| io_error("read the device", e));
        let mut image = match early {
            Some((before, mut image)) if shared.generation_if_bound(&header) == generation => {
                let after = newest_cached(mapping, shared);
                if after < before || after - before > header.in_flight_max() {
                    image = read_all()?;
                } else if after > before {
                    image
                        .reread(path, before + 1..=after)
                        .map_err(|e| io_error("read the device", e))?;
                }
                image
            }
            // Another recovery ran meanwhile (it may have rewritten any slot), or none yet.
            _ => read_all()?,
        };
        if Header::decode(image.header_bytes()).ok() != Some(header) {
            return Err(OpenError::HeaderMismatch(path.into()));
        }
        let scan =
            verify::scan(&image, shared.durable_if_bound(&header)).map_err(|corruption| {
                OpenError::Corrupt {
                    path: path.into(),
                    corruption,
                }
            })?;
        let stale = image
            .differences(mapping)
            .map_err(|e| io_error("mincore", e))?;
        if !stale.is_empty() {
            let pieces: usize = stale.iter().map(|run| run.len() / RECORD_SIZE).sum();
            eprintln!(
                "espora: {}: {pieces} piece(s) of 128 bytes in the page cache differ from the \
                 device (a failed writeback); the device's bytes are put back",
                path.display()
            );
        }
        if !scan.orphans.is_empty() {
            eprintln!(
                "espora: {}: erased {} unacknowledged record(s) left beyond seq {} by a crash",
                path.display(),
                scan.orphans.len(),
                scan.newest
            );
            image.erase(&scan.orphans);
        }
        // Written from the image after the erasure, so a stale run over an orphan writes zeros;
        // erased orphans reach the device whether or not the cache holds them.
        let mut runs = stale;
        runs.extend(scan.orphans.iter().map(|&slot| {
            let offset = header.slot_offset(slot + 1);
            offset..offset + RECORD_SIZE
        }));
        let repaired = image
            .repair(path, handle, mapping, &runs)
            .map_err(|e| io_error("write back", e))?;
        if repaired.pieces > 0 && image.is_direct() {
            eprintln!(
                "espora: {}: {} piece(s) still differed after the direct write; written \
                 through the page cache",
                path.display(),
                repaired.pieces
            );
        }
        if !shared
            .coherent()
            .map_err(|e| OpenError::File(FileError::io(shared.path(), "probe", e)))?
        {
            return Err(OpenError::Incoherent(shared.path().into()));
        }
        let generation = shared.reset(&header, scan.newest, scan.anchor.min(scan.newest));
        let history = Tagged {
            generation,
            seq: scan.newest,
        };
        Ok((history, image.is_direct()))
    })();
    file::unlock(handle);
    shared.bump_and_wake(Event::Lock);
    let (history, direct) = locked?;
    if !direct {
        eprintln!(
            "espora: {}: the file system refuses direct reads; recovery read the page cache",
            path.display()
        );
    }
    handle.sync_data().map_err(|e| io_error("fdatasync", e))?;
    shared.raise_durable(history);
    // The direct reads left the page cache as it was: bring the file in now, before serving, as
    // a scan through the mapping used to. Otherwise every append into a page the cache does not
    // hold reads that page from the disk first, under the account's lock (and a readahead in the
    // background competes with the first syncs for the disk).
    crate::device::warm(handle, mapping.header().file_size());
    Ok(())
}

/// The newest record in the page cache, as a writer would find it: the head hint, then the
/// records that follow it. Read without the lock, so only a bound for what writers may write
/// next (they write after it).
fn newest_cached(mapping: &Mapping, shared: &Shared) -> u64 {
    let start = shared.head().seq;
    let mut newest = start;
    while newest - start < mapping.header().capacity && mapping.record(newest + 1).is_some() {
        newest += 1;
    }
    newest
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
    io: Rc<Io>,
    tokens: Cell<u64>,
    counters: Arc<Counters>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.io.close();
    }
}

impl Worker {
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// What this worker waits for the disk and other processes with: `io_uring` (its own ring)
    /// or `threads` (helper threads, where the kernel's io_uring lacks what it needs).
    pub fn backend(&self) -> &'static str {
        self.io.kind()
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

    /// Appends a transaction, checked beforehand by [`crate::Transaction::validate`], and
    /// returns once it is durable (an fdatasync that started after the write has completed, on
    /// this thread or any other, in this process or another).
    pub async fn append(&self, account_id: u32, entry: &Entry) -> Result<Appended, AppendError> {
        let index = self
            .db
            .account_index(account_id)
            .ok_or(AppendError::UnknownAccount)?;
        let account = &self.db.accounts[index];
        let commit = self.commit(index);
        let unavailable = AppendError::Unavailable;
        let (record, generation) = loop {
            if self.db.is_poisoned() {
                return Err(unavailable(Unavailable::Poisoned));
            }
            let locked = commit.lock().await.map_err(unavailable)?;
            let written = account.mapping.append_locked(
                commit.file,
                &account.shared,
                entry,
                crate::time::now_us(),
            );
            drop(locked);
            match written {
                Ok(written) => break written,
                Err(Rejection::Window { head, generation }) => {
                    // Announce the record this writer adopted (its writer may have died before
                    // publishing it), so that the sync it waits for covers it.
                    let head = Tagged {
                        generation,
                        seq: head,
                    };
                    account.shared.publish_head(head);
                    commit.wait_durable(head).await.map_err(unavailable)?;
                }
                Err(rejection) => return Err(rejected(rejection)),
            }
        };
        self.db.options.faults.wrote(account_id, record.seq);
        // Published after the unlock: a store into the shared page never happens under the
        // lock, and the next writer adopts the record if it comes first.
        let mut target = Tagged {
            generation,
            seq: record.seq,
        };
        account.shared.publish_head(target);
        self.counters.appends.fetch_add(1, Ordering::Relaxed);
        loop {
            match commit.wait_durable(target).await.map_err(unavailable)? {
                // No recovery ran since the record was written: the sync that covered it
                // started after it was in the page cache.
                Durable::Covered => break,
                // A recovery ran: it read the device and put its bytes back in the cache, so the
                // record counts only if its slot still holds it. Decided under the lock: no
                // writer is in the middle of a slot then, and no recovery between its stores.
                Durable::NewGeneration => {
                    let locked = commit.lock().await.map_err(unavailable)?;
                    let (_, durable) = account.shared.settle_locked();
                    let slot = Record::decode(&account.mapping.read_slot(record.seq));
                    drop(locked);
                    match slot {
                        Ok(found) if found == record => {
                            target.generation = durable.generation;
                            account.shared.publish_head(target);
                        }
                        // The ring went round since: whether the recovery found the record
                        // cannot be told any more.
                        Ok(newer) if newer.seq > record.seq => {
                            return Err(unavailable(Unavailable::Overtaken { seq: record.seq }));
                        }
                        _ => {
                            self.db.poisoned.store(true, Ordering::Release);
                            return Err(unavailable(Unavailable::Lost { seq: record.seq }));
                        }
                    }
                }
            }
        }
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
            let durable = commit
                .wait_durable(head)
                .await
                .map_err(ReadError::Unavailable)?;
            if durable == Durable::NewGeneration {
                continue;
            }
            let snapshot = account.mapping.snapshot(
                head.seq,
                self.db.options.statement_records,
                &mut out.records,
            );
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
        Rejection::Write(e) => AppendError::Unavailable(Unavailable::Write(e)),
        Rejection::Window { .. } => unreachable!("the window is waited for"),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{Backend, Db, OpenError, Options, RING_RECORDS_MAX};

    fn block_on<F: Future>(future: F) -> F::Output {
        let built = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build();
        match built {
            Ok(mut runtime) => runtime.block_on(future),
            Err(_) => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("epoll runtime")
                .block_on(future),
        }
    }

    /// Two databases on one directory stand for two processes. One holds an account's lock for
    /// 10 ms; the other's writer, after its yields, sleeps on the lock word (whose sleeps time
    /// out every 2 ms for dead holders). It must get the lock when the holder releases it, not
    /// at its next timeout.
    #[test]
    fn a_writer_waiting_for_the_lock_is_woken_by_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let options = || Options {
            accounts: vec![(1, 0)],
            ..Options::default()
        };
        let holder_db = Arc::new(Db::open(dir.path(), options()).unwrap());
        let waiter_db = Arc::new(Db::open(dir.path(), options()).unwrap());
        let mut lags = Vec::new();
        for _ in 0..7 {
            let (held, wait_for_held) = std::sync::mpsc::channel();
            let holder = {
                let db = Arc::clone(&holder_db);
                std::thread::spawn(move || {
                    block_on(async move {
                        let worker = db.worker(Backend::Auto).unwrap();
                        let commit = worker.commit(0);
                        let locked = commit.lock().await.unwrap();
                        held.send(()).unwrap();
                        monoio::time::sleep(Duration::from_millis(10)).await;
                        drop(locked);
                        Instant::now()
                    })
                })
            };
            wait_for_held.recv().unwrap();
            let acquired = block_on(async {
                let worker = waiter_db.worker(Backend::Auto).unwrap();
                let commit = worker.commit(0);
                let locked = commit.lock().await.unwrap();
                let at = Instant::now();
                drop(locked);
                at
            });
            let released = holder.join().unwrap();
            lags.push(acquired.saturating_duration_since(released));
        }
        lags.sort();
        eprintln!("lock handed over after its release: {lags:?}");
        assert!(waiter_db.stats().lock_sleeps >= 7, "the waiter never slept");
        let median = lags[lags.len() / 2];
        assert!(
            median < Duration::from_micros(500),
            "woken {median:?} after the release"
        );
    }

    /// A ring is a whole number of 4 KiB pages of records (recovery writes pages back with
    /// direct I/O) within the bounds; anything else is refused before a file is made.
    #[test]
    fn rings_of_partial_pages_or_out_of_bounds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = |ring_records| Options {
            accounts: vec![(1, 0)],
            ring_records,
            ..Options::default()
        };
        for ring_records in [32, 100, 1000, RING_RECORDS_MAX + 32] {
            let refused = Db::open(dir.path(), options(ring_records)).err();
            let message = refused
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                matches!(refused, Some(OpenError::RingRecords { asked, .. }) if asked == ring_records)
                    && message.contains("a multiple of 32"),
                "{ring_records}: {message:?}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(Db::open(dir.path(), options(96)).unwrap());
    }
}
