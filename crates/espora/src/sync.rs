//! How a worker thread waits for the disk and for other processes without blocking: one place
//! per operation (fdatasync, futex wait, pause), each with its two back ends side by side, over
//! one table of the worker's operations in flight that both back ends complete.
//!
//! - **Ring**: the worker's own small io_uring, next to the runtime's: `IORING_OP_FSYNC` with
//!   DATASYNC, `IORING_OP_FUTEX_WAIT` (Linux 6.7) linked to a timeout, `IORING_OP_TIMEOUT`.
//! - **Threads**: where io_uring or its futex operation is not available (every kernel below
//!   6.7, sandboxes that forbid io_uring): helper threads per file make the blocking calls,
//!   taking requests from a channel and posting each result under its operation's id.
//!
//! Either way the runtime waits for one descriptor to become readable (the ring's, or a socket
//! the helpers write a byte to), as it does for a socket (a PollAdd on io_uring, epoll
//! otherwise), and a reaper task hands each result to the operation it belongs to. So under
//! either monoio driver:
//!
//! - **Every future can be dropped.** An operation whose task went away keeps its entry until
//!   its result arrives, so no result ever reaches another operation. A dropped wait is cut
//!   short (its futex word bumped and woken: waiters look again, nothing more).
//! - **A failed fdatasync poisons when it completes**, awaited or not: the kernel reports a
//!   writeback error once per file description, so an error nobody read would let the next
//!   sync on that description succeed without the data.
//! - **One fdatasync per file description in flight.** Of two overlapping ones the kernel may
//!   report the error to the first only; the second starts after the first's result is in.
//!
//! The futex words are woken with a plain FUTEX_WAKE by whoever bumps them, in any process.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

use crate::faults::Faults;
use crate::shared::{Event, Shared};

/// Which back end a worker uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// The ring where the kernel allows it, threads otherwise.
    #[default]
    Auto,
    /// The ring, or fail.
    IoUring,
    /// Helper threads, even where the ring would work (tests of this path).
    Threads,
}

impl Backend {
    /// The back end this kernel allows: [`Backend::IoUring`] where a ring can be set up with
    /// every operation espora needs, [`Backend::Threads`] otherwise. `Auto` decides the same
    /// way for each worker; deciding once lets a process report it.
    pub fn detect() -> Backend {
        match probe_ring() {
            Ok(_) => Backend::IoUring,
            Err(_) => Backend::Threads,
        }
    }

    /// `auto`, `io_uring` or `threads`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io_uring",
            Backend::Threads => "threads",
        }
    }
}

/// A ring with every operation espora needs, or why the kernel refuses one.
fn probe_ring() -> io::Result<IoUring> {
    let ring = IoUring::builder()
        .setup_cqsize(COMPLETION_ENTRIES)
        .build(RING_ENTRIES)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for code in [
        opcode::Fsync::CODE,
        opcode::FutexWait::CODE,
        opcode::LinkTimeout::CODE,
        opcode::Timeout::CODE,
        opcode::Nop::CODE,
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring has no operation {code} here"),
            ));
        }
    }
    Ok(ring)
}

/// Submission entries of a worker's ring. Entries are submitted as soon as they are pushed, so
/// at most two (a wait and its timeout) sit in the queue at once.
const RING_ENTRIES: u32 = 64;
/// Completion entries of a worker's ring: room for the results of every task of a busy worker
/// waiting at once (a wait and its timeout each). More completions than that wait in the
/// kernel until the reaper takes them (see [`Io::reap`]); 16 bytes each.
const COMPLETION_ENTRIES: u32 = 1024;
/// Times a submission the kernel refuses for want of memory or room (EAGAIN, EBUSY) is tried.
const SUBMIT_ATTEMPTS_MAX: u32 = 8;
/// `user_data` of the linked timeouts, whose completions nobody waits for.
const TIMEOUT_TAG: u64 = u64::MAX;
/// `user_data` of the no-op that wakes the reaper when the worker goes away.
const CLOSE_TAG: u64 = u64::MAX - 1;
/// FUTEX2_SIZE_U32, without FUTEX2_PRIVATE: the words are shared between processes.
const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX_BITSET_MATCH_ANY: u64 = 0xffff_ffff;
/// Stack of a helper thread: it makes one system call at a time.
const HELPER_STACK_BYTES: usize = 64 * 1024;

/// One worker thread's operations in flight, and the back end that runs them.
pub(crate) struct Io {
    /// Indexed by operation id (the ring's `user_data`, the helpers' job id).
    ops: RefCell<Vec<Op>>,
    engine: Engine,
    /// Becomes readable when results are waiting: the ring's descriptor, or the read end of the
    /// helpers' wake-up socket. INVARIANT: nothing but `readable` is ever called on it.
    readiness: monoio::net::UnixStream,
    closed: Cell<bool>,
    /// Set (to an errno) when the back end can no longer be used: every operation pending then
    /// failed with it, and every later one fails at once.
    broken: Cell<Option<i32>>,
    /// The database's poison flag (see `Db`).
    poisoned: Arc<AtomicBool>,
    faults: Faults,
    /// Results taken from the back end, reused by every reap.
    scratch: RefCell<Vec<(usize, i32)>>,
}

enum Engine {
    Ring(Box<RefCell<IoUring>>),
    Threads(Arc<Finished>),
}

/// The state of one operation id.
enum Op {
    Free,
    /// Submitted, result not in yet.
    Pending {
        waker: Option<Waker>,
        /// Its task went away: the result is dropped when it arrives.
        abandoned: bool,
        /// Set for an fdatasync: what its completion does whoever waits.
        sync: Option<SyncDone>,
        /// For a wait: the futex word to bump if the task goes away first.
        cut_short: Option<(Arc<Shared>, Event)>,
    },
    /// The result, not taken yet.
    Done(i32),
}

/// What the completion of an fdatasync does, awaited or not.
struct SyncDone {
    gate: Rc<Gate>,
    account: u32,
    /// The witness's newest record written when it was submitted.
    submitted: u64,
}

impl Io {
    /// The ring back end, with every operation it needs checked, and its reaper task started.
    /// Call it inside the worker's monoio runtime.
    pub(crate) fn ring(poisoned: Arc<AtomicBool>, faults: Faults) -> io::Result<Rc<Io>> {
        let ring = probe_ring()?;
        // SAFETY: the ring's descriptor is open for as long as `ring` lives, past this call.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring.as_raw_fd()) };
        let copy = rustix::io::dup(borrowed)?;
        let readiness = monoio::net::UnixStream::from_std(copy.into())?;
        Ok(Io::start(
            Engine::Ring(Box::new(RefCell::new(ring))),
            readiness,
            poisoned,
            faults,
        ))
    }

    /// The helper-thread back end (the threads start per file, in [`FileIo::threads`]).
    pub(crate) fn threads(poisoned: Arc<AtomicBool>, faults: Faults) -> io::Result<Rc<Io>> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        theirs.set_nonblocking(true)?;
        let finished = Arc::new(Finished {
            results: Mutex::new(Vec::new()),
            wake: theirs,
        });
        let readiness = monoio::net::UnixStream::from_std(ours)?;
        Ok(Io::start(
            Engine::Threads(finished),
            readiness,
            poisoned,
            faults,
        ))
    }

    fn start(
        engine: Engine,
        readiness: monoio::net::UnixStream,
        poisoned: Arc<AtomicBool>,
        faults: Faults,
    ) -> Rc<Io> {
        let io = Rc::new(Io {
            ops: RefCell::new(Vec::new()),
            engine,
            readiness,
            closed: Cell::new(false),
            broken: Cell::new(None),
            poisoned,
            faults,
            scratch: RefCell::new(Vec::new()),
        });
        monoio::spawn(reap(Rc::clone(&io)));
        io
    }

    /// What waits for the disk: `io_uring` or `threads`.
    pub(crate) fn kind(&self) -> &'static str {
        match self.engine {
            Engine::Ring(_) => "io_uring",
            Engine::Threads(_) => "threads",
        }
    }

    /// Ends the reaper task (the worker goes away): its last wait is woken by a no-op on the
    /// ring, or a byte on the helpers' socket. Helper threads end when their channels close.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        match &self.engine {
            Engine::Ring(_) => {
                let nop = opcode::Nop::new().build().user_data(CLOSE_TAG);
                let _ = self.submit(&[nop]);
            }
            Engine::Threads(finished) => finished.wake_worker(),
        }
    }

    /// A new operation, pending until its result arrives; its future owns the id.
    fn begin(
        &self,
        sync: Option<SyncDone>,
        cut_short: Option<(Arc<Shared>, Event)>,
    ) -> Pending<'_> {
        let mut ops = self.ops.borrow_mut();
        let op = Op::Pending {
            waker: None,
            abandoned: false,
            sync,
            cut_short,
        };
        let id = match ops.iter().position(|op| matches!(op, Op::Free)) {
            Some(id) => {
                ops[id] = op;
                id
            }
            None => {
                ops.push(op);
                ops.len() - 1
            }
        };
        Pending {
            io: self,
            id,
            taken: false,
        }
    }

    /// Fails at once when the back end broke down (see `broken`).
    fn usable(&self) -> io::Result<()> {
        match self.broken.get() {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    /// Pushes entries to the ring and submits them. An error means nothing was queued. Once
    /// queued, the entries reach the kernel with this submission or never: if the kernel keeps
    /// refusing it, the ring is given up (every pending operation fails, the database is
    /// poisoned through the pending fdatasyncs, and nothing is submitted or reaped again), so
    /// that no result can ever arrive for an id that was freed or reused.
    fn submit(&self, entries: &[squeue::Entry]) -> io::Result<()> {
        self.usable()?;
        let Engine::Ring(ring) = &self.engine else {
            unreachable!("ring entries for the helper-thread back end")
        };
        // SAFETY: the entries point only at memory that outlives their submission (the futex
        // word lives in a mapping held by the file's `Shared`, which the operation's entry keeps;
        // timeouts are copied in `submit`), and the descriptors they name stay open until their
        // completions arrive (the worker's files outlive its reaper).
        unsafe { ring.borrow_mut().submission().push_multiple(entries) }
            .map_err(|_| io::Error::other("espora's io_uring submission queue is full"))?;
        let mut attempts = 0;
        let failed = loop {
            let submitted = {
                let mut ring = ring.borrow_mut();
                ring.submit().map(|_| ring.submission().is_empty())
            };
            match submitted {
                Ok(true) => return Ok(()),
                // The kernel may take fewer entries than queued (short of memory for one): the
                // rest stay in the queue for the next call.
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Completions overflowed the completion queue, and the kernel takes no more
                // entries until they are reaped: hand them over now, then try again.
                Err(e) if e.raw_os_error() == Some(errno::EBUSY) => self.reap(),
                // Short of memory for requests: try again a few times.
                Err(e) if e.raw_os_error() == Some(errno::EAGAIN) => {}
                Err(e) => break e,
            }
            attempts += 1;
            if attempts == SUBMIT_ATTEMPTS_MAX {
                break io::Error::from_raw_os_error(errno::EAGAIN);
            }
            std::thread::yield_now();
        };
        self.break_down(failed.raw_os_error().unwrap_or(errno::EIO));
        Ok(())
    }

    /// Gives the back end up: fails every pending operation with `errno` and every later one at
    /// once, and ends the reaper.
    fn break_down(&self, errno: i32) {
        self.broken.set(Some(errno));
        self.fail_all(errno);
        self.closed.set(true);
    }

    /// Hands every result the back end has to its operation.
    fn reap(&self) {
        let mut finished = self.scratch.borrow_mut();
        match &self.engine {
            Engine::Ring(ring) => {
                let mut ring = ring.borrow_mut();
                loop {
                    for entry in ring.completion() {
                        let tag = entry.user_data();
                        if tag != TIMEOUT_TAG && tag != CLOSE_TAG {
                            finished.push((tag as usize, entry.result()));
                        }
                    }
                    // Completions the queue had no room for wait in the kernel, which moves
                    // them in at the next enter (the ring stays readable meanwhile, so
                    // without it the reaper would spin and their operations never end).
                    if !ring.submission().cq_overflow() || ring.submit().is_err() {
                        break;
                    }
                }
            }
            Engine::Threads(helpers) => {
                drain(&self.readiness);
                let mut results = helpers.results.lock().unwrap_or_else(|e| e.into_inner());
                finished.append(&mut results);
            }
        }
        for (id, result) in finished.drain(..) {
            self.complete(id, result);
        }
    }

    /// Records the result of operation `id`: an fdatasync's effects first, then the result for
    /// its task, if it still waits.
    fn complete(&self, id: usize, result: i32) {
        let mut ops = self.ops.borrow_mut();
        let Op::Pending {
            waker,
            abandoned,
            sync,
            ..
        } = std::mem::replace(&mut ops[id], Op::Free)
        else {
            unreachable!("a result for operation {id}, which is not pending");
        };
        let result = match sync {
            Some(sync) => self.sync_completed(sync, result),
            None => result,
        };
        if abandoned {
            return;
        }
        ops[id] = Op::Done(result);
        drop(ops);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn sync_completed(&self, sync: SyncDone, result: i32) -> i32 {
        let result = if result >= 0 && self.faults.sync_should_fail() {
            -errno::EIO
        } else {
            result
        };
        if result < 0 {
            self.poisoned.store(true, Ordering::Release);
        } else {
            self.faults.sync_succeeded(sync.account, sync.submitted);
        }
        sync.gate.leave();
        result
    }

    /// Completes every pending operation with `errno` (the runtime cannot watch the back end
    /// any more).
    fn fail_all(&self, errno: i32) {
        let pending: Vec<usize> = (self.ops.borrow().iter().enumerate())
            .filter(|(_, op)| matches!(op, Op::Pending { .. }))
            .map(|(id, _)| id)
            .collect();
        for id in pending {
            self.complete(id, -errno);
        }
    }
}

async fn reap(io: Rc<Io>) {
    while !io.closed.get() {
        if let Err(e) = io.readiness.readable(false).await {
            io.break_down(e.raw_os_error().unwrap_or(errno::EIO));
            return;
        }
        if io.broken.get().is_none() {
            io.reap();
        }
    }
}

/// Reads every wake-up byte waiting on the helpers' socket.
fn drain(socket: &monoio::net::UnixStream) {
    // SAFETY: the descriptor is open for as long as `socket` lives, past this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket.as_raw_fd()) };
    let mut bytes = [0u8; 64];
    while matches!(rustix::io::read(fd, &mut bytes), Ok(n) if n > 0) {}
}

/// Resolves with the result of one operation. Dropped before that, it leaves the operation
/// abandoned (and cuts a wait short); the id stays taken until the result arrives.
struct Pending<'a> {
    io: &'a Io,
    id: usize,
    taken: bool,
}

impl Pending<'_> {
    /// The submission failed: nothing is in flight, so the id is free at once.
    fn unsubmitted(mut self) {
        self.taken = true;
        let mut ops = self.io.ops.borrow_mut();
        if let Op::Pending {
            sync: Some(sync), ..
        } = std::mem::replace(&mut ops[self.id], Op::Free)
        {
            sync.gate.leave();
        }
    }
}

impl Future for Pending<'_> {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let this = self.get_mut();
        let mut ops = this.io.ops.borrow_mut();
        match &mut ops[this.id] {
            Op::Done(result) => {
                let result = *result;
                ops[this.id] = Op::Free;
                this.taken = true;
                Poll::Ready(result)
            }
            Op::Pending { waker, .. } => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Op::Free => unreachable!("operation {} polled while free", this.id),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut ops = self.io.ops.borrow_mut();
        let cut_short = match &mut ops[self.id] {
            Op::Done(_) => {
                ops[self.id] = Op::Free;
                None
            }
            Op::Pending {
                abandoned,
                cut_short,
                ..
            } => {
                *abandoned = true;
                cut_short.take()
            }
            Op::Free => unreachable!("operation {} dropped while free", self.id),
        };
        drop(ops);
        // A wait whose task went away ends now rather than at its timeout: the next wait of
        // the same helper thread would queue behind it.
        if let Some((shared, event)) = cut_short {
            shared.bump_and_wake(event);
        }
    }
}

/// At most one fdatasync of a file description in flight. Entered before submitting, left when
/// the result arrives (in the reaper), whether or not its task still waits.
#[derive(Default)]
pub(crate) struct Gate {
    busy: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Gate {
    fn enter(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.busy.get() {
                self.wakers.borrow_mut().push(cx.waker().clone());
                return Poll::Pending;
            }
            self.busy.set(true);
            Poll::Ready(())
        })
    }

    fn leave(&self) {
        assert!(self.busy.get(), "left a sync gate nobody entered");
        self.busy.set(false);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// The I/O of one worker thread on one account file.
pub(crate) struct FileIo {
    io: Rc<Io>,
    shared: Arc<Shared>,
    account: u32,
    gate: Rc<Gate>,
    lanes: Lanes,
}

enum Lanes {
    /// The worker's own file description again, for the fsync operations.
    Ring { file: File },
    /// Helper threads: fdatasync, pauses and sleeps on the sync word on one (a worker never
    /// does two of those at once on a file unless a dropped one is still running), sleeps on
    /// the lock word on the other.
    Threads {
        sync: Sender<Job>,
        lock: Sender<Job>,
    },
}

/// A request to a helper thread.
struct Job {
    op: usize,
    work: Work,
}

#[derive(Clone, Copy, Debug)]
enum Work {
    Fdatasync,
    Pause(Duration),
    Wait {
        event: Event,
        seen: u32,
        timeout: Duration,
    },
}

impl FileIo {
    pub(crate) fn new(
        io: &Rc<Io>,
        file: File,
        shared: Arc<Shared>,
        account: u32,
    ) -> io::Result<FileIo> {
        let lanes = match &io.engine {
            Engine::Ring(_) => Lanes::Ring { file },
            Engine::Threads(finished) => Lanes::Threads {
                sync: spawn_helper(
                    format!("espora-sync-{account}"),
                    Some(file),
                    Arc::clone(&shared),
                    Arc::clone(finished),
                )?,
                lock: spawn_helper(
                    format!("espora-lock-{account}"),
                    None,
                    Arc::clone(&shared),
                    Arc::clone(finished),
                )?,
            },
        };
        Ok(FileIo {
            io: Rc::clone(io),
            shared,
            account,
            gate: Rc::default(),
            lanes,
        })
    }

    /// fdatasync of the worker's file description. A failure poisons the database when it
    /// completes, also when this future was dropped before.
    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        self.gate.enter().await;
        let sync = SyncDone {
            gate: Rc::clone(&self.gate),
            account: self.account,
            submitted: self.io.faults.sync_submitted(self.account),
        };
        let op = self.io.begin(Some(sync), None);
        let sent = match &self.lanes {
            Lanes::Ring { file } => {
                let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(op.id as u64);
                self.io.submit(&[entry])
            }
            Lanes::Threads { sync, .. } => send(&self.io, sync, op.id, Work::Fdatasync),
        };
        if let Err(e) = sent {
            op.unsubmitted();
            return Err(e);
        }
        match op.await {
            result if result < 0 => Err(io::Error::from_raw_os_error(-result)),
            _ => Ok(()),
        }
    }

    /// Sleeps for `duration` (sub-millisecond, unlike the runtime's timer).
    pub(crate) async fn pause(&self, duration: Duration) -> io::Result<()> {
        let op = self.io.begin(None, None);
        let sent = match &self.lanes {
            Lanes::Ring { .. } => {
                // The kernel copies the time when it takes the entry, inside `submit`.
                let time = timespec(duration);
                let entry = opcode::Timeout::new(&time).build().user_data(op.id as u64);
                self.io.submit(&[entry])
            }
            Lanes::Threads { sync, .. } => send(&self.io, sync, op.id, Work::Pause(duration)),
        };
        if let Err(e) = sent {
            op.unsubmitted();
            return Err(e);
        }
        match op.await {
            result if result >= 0 || result == -errno::ETIME => Ok(()),
            result => Err(io::Error::from_raw_os_error(-result)),
        }
    }

    /// Sleeps until `event`'s word differs from `seen` and someone wakes it, or `timeout`
    /// passes. Returns at once if the word already differs.
    pub(crate) async fn wait(&self, event: Event, seen: u32, timeout: Duration) -> io::Result<()> {
        let op = self.io.begin(None, Some((Arc::clone(&self.shared), event)));
        let sent = match &self.lanes {
            Lanes::Ring { .. } => {
                let word = self.shared.events(event);
                let wait = opcode::FutexWait::new(
                    word.as_ptr() as *const u32,
                    u64::from(seen),
                    FUTEX_BITSET_MATCH_ANY,
                    FUTEX2_SIZE_U32,
                )
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(op.id as u64);
                // The kernel copies the time when it takes the entries, inside `submit`.
                let time = timespec(timeout);
                let timer = opcode::LinkTimeout::new(&time)
                    .build()
                    .user_data(TIMEOUT_TAG);
                self.io.submit(&[wait, timer])
            }
            Lanes::Threads { sync, lock } => {
                let lane = match event {
                    Event::Sync => sync,
                    Event::Lock => lock,
                };
                let work = Work::Wait {
                    event,
                    seen,
                    timeout,
                };
                send(&self.io, lane, op.id, work)
            }
        };
        if let Err(e) = sent {
            op.unsubmitted();
            return Err(e);
        }
        match op.await {
            // Woken, the word had already changed, or the timeout ended the wait.
            result if result >= 0 => Ok(()),
            result if [errno::EAGAIN, errno::ECANCELED, errno::ETIMEDOUT].contains(&-result) => {
                Ok(())
            }
            result => Err(io::Error::from_raw_os_error(-result)),
        }
    }
}

fn timespec(duration: Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(duration.as_secs())
        .nsec(duration.subsec_nanos())
}

fn send(io: &Io, lane: &Sender<Job>, op: usize, work: Work) -> io::Result<()> {
    io.usable()?;
    lane.send(Job { op, work })
        .map_err(|_| io::Error::other("an espora helper thread has stopped"))
}

/// Results that helper threads post for their worker, and the socket that wakes it.
struct Finished {
    results: Mutex<Vec<(usize, i32)>>,
    /// The helpers' end of the wake-up socket pair (non-blocking).
    wake: std::os::unix::net::UnixStream,
}

impl Finished {
    fn post(&self, op: usize, result: i32) {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = results.is_empty();
        results.push((op, result));
        drop(results);
        // One byte per batch: the reaper takes every result waiting when it wakes.
        if was_empty {
            self.wake_worker();
        }
    }

    fn wake_worker(&self) {
        // A full socket already wakes the worker; a closed one has no worker to wake.
        let _ = rustix::net::send(
            &self.wake,
            &[1],
            rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT,
        );
    }
}

/// Starts a helper thread for one file of a worker; it ends when the worker drops the sender.
fn spawn_helper(
    name: String,
    file: Option<File>,
    shared: Arc<Shared>,
    finished: Arc<Finished>,
) -> io::Result<Sender<Job>> {
    let (sender, jobs) = mpsc::channel();
    std::thread::Builder::new()
        .name(name)
        .stack_size(HELPER_STACK_BYTES)
        .spawn(move || serve(&jobs, file.as_ref(), &shared, &finished))?;
    Ok(sender)
}

fn serve(jobs: &Receiver<Job>, file: Option<&File>, shared: &Shared, finished: &Finished) {
    while let Ok(job) = jobs.recv() {
        let result = match job.work {
            Work::Fdatasync => file.expect("the sync lane has the file").sync_data(),
            Work::Pause(duration) => {
                std::thread::sleep(duration);
                Ok(())
            }
            Work::Wait {
                event,
                seen,
                timeout,
            } => {
                let time = rustix::time::Timespec {
                    tv_sec: timeout.as_secs() as i64,
                    tv_nsec: i64::from(timeout.subsec_nanos()),
                };
                match rustix::thread::futex::wait(
                    shared.events(event),
                    rustix::thread::futex::Flags::empty(),
                    seen,
                    Some(&time),
                ) {
                    Ok(())
                    | Err(rustix::io::Errno::AGAIN)
                    | Err(rustix::io::Errno::TIMEDOUT)
                    | Err(rustix::io::Errno::INTR) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        };
        let result = match result {
            Ok(()) => 0,
            Err(e) => -e.raw_os_error().unwrap_or(errno::EIO),
        };
        finished.post(job.op, result);
    }
}

/// The errno values this module maps, from rustix so that no libc crate is needed.
mod errno {
    pub const EAGAIN: i32 = rustix::io::Errno::AGAIN.raw_os_error();
    pub const ECANCELED: i32 = rustix::io::Errno::CANCELED.raw_os_error();
    pub const ETIME: i32 = rustix::io::Errno::TIME.raw_os_error();
    pub const ETIMEDOUT: i32 = rustix::io::Errno::TIMEDOUT.raw_os_error();
    pub const EIO: i32 = rustix::io::Errno::IO.raw_os_error();
    pub const EBUSY: i32 = rustix::io::Errno::BUSY.raw_os_error();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More completions than the completion queue holds arrive while the runtime is blocked
    /// (nothing reaps): the next submission must hand them over and go on, not give the ring
    /// up (older kernels refuse submissions with EBUSY until the overflow is reaped).
    #[test]
    fn completions_that_overflow_the_queue_are_reaped_and_the_ring_goes_on() {
        // A reaper that never takes the overflow spins inside one poll, where no timer of the
        // runtime can end the test: a watchdog thread fails it instead of letting it hang.
        let finished = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let finished = Arc::clone(&finished);
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while !finished.load(Ordering::Acquire) {
                    if std::time::Instant::now() > deadline {
                        eprintln!("the ring never handed over the completions past its queue");
                        std::process::abort();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        // Also when the test fails: the watchdog must not abort the tests that run after it.
        let done = SetOnDrop(finished);
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("an epoll runtime");
        runtime.block_on(async {
            let poisoned = Arc::new(AtomicBool::new(false));
            let Ok(io) = Io::ring(Arc::clone(&poisoned), Faults::default()) else {
                eprintln!("SKIP: this kernel's io_uring lacks what espora needs");
                return;
            };
            let dir = tempfile::tempdir().unwrap();
            let shared = Arc::new(Shared::open(&dir.path().join("state")).unwrap());
            let file = File::create(dir.path().join("file")).unwrap();
            let file_io = Rc::new(FileIo::new(&io, file, shared, 1).unwrap());
            let sleepers = COMPLETION_ENTRIES as usize + RING_ENTRIES as usize;
            let tasks: Vec<_> = (0..sleepers)
                .map(|_| {
                    let file_io = Rc::clone(&file_io);
                    monoio::spawn(async move { file_io.pause(Duration::from_millis(20)).await })
                })
                .collect();
            // Every task submits its timeout, then the thread blocks: they all complete, and
            // the completion queue (twice the submission queue) overflows.
            monoio::time::sleep(Duration::from_millis(2)).await;
            assert_eq!(
                io.ops
                    .borrow()
                    .iter()
                    .filter(|op| matches!(op, Op::Pending { .. }))
                    .count(),
                sleepers,
                "not every task submitted before the thread blocked"
            );
            std::thread::sleep(Duration::from_millis(100));
            let Engine::Ring(ring) = &io.engine else {
                unreachable!("a ring back end")
            };
            assert!(
                ring.borrow_mut().submission().cq_overflow(),
                "the completion queue did not overflow"
            );
            let after = file_io.pause(Duration::from_micros(100)).await;
            assert!(after.is_ok(), "the pause after the overflow: {after:?}");
            for task in tasks {
                assert!(task.await.is_ok());
            }
            assert!(io.broken.get().is_none(), "the ring was given up");
            assert!(!poisoned.load(Ordering::Acquire));
            io.close();
        });
        drop(done);
        watchdog.join().unwrap();
    }

    struct SetOnDrop(Arc<AtomicBool>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
}
