//! How a worker thread waits for the disk and for other processes without blocking: the two
//! back ends side by side, as monoio keeps each operation's variants together.
//!
//! - **Ring**: the worker's own small io_uring, next to the runtime's, for `fdatasync`
//!   (IORING_OP_FSYNC with DATASYNC) and for sleeping on a futex word of the shared-state file
//!   (IORING_OP_FUTEX_WAIT, Linux 6.7) with a linked timeout. The ring's descriptor becomes
//!   readable when a completion is posted; the runtime waits for that like for a socket (a
//!   PollAdd on io_uring, epoll otherwise), and a reaper task hands each completion to the task
//!   that waits for it. Works under either monoio driver.
//! - **Threads**: where io_uring or its futex operations are not available (old kernels,
//!   sandboxes that forbid io_uring): a helper thread per file and purpose makes the blocking
//!   system call and answers over a socket pair that the runtime polls.
//!
//! Either way, the futex words are woken with a plain FUTEX_WAKE by whoever bumps them (see
//! `commit.rs`), in any process.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

use crate::shared::Shared;

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

/// Which futex word of the shared-state file a wait sleeps on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Bumped when a sync of the file ends.
    Sync,
    /// Bumped when the file's lock is released.
    Lock,
}

impl Event {
    fn word(self, shared: &Shared) -> &AtomicU32 {
        match self {
            Event::Sync => shared.sync_events(),
            Event::Lock => shared.lock_events(),
        }
    }
}

/// Submission slots of a worker's ring: a few sleeping tasks and syncs per file at most.
const RING_ENTRIES: u32 = 64;
/// `user_data` of the linked timeouts, whose completions nobody waits for.
const TIMEOUT_TAG: u64 = u64::MAX;
/// `user_data` of the no-op that wakes the reaper when the worker goes away.
const CLOSE_TAG: u64 = u64::MAX - 1;
/// FUTEX2_SIZE_U32, without FUTEX2_PRIVATE: the words are shared between processes.
const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX_BITSET_MATCH_ANY: u64 = 0xffff_ffff;

/// The I/O of one worker thread on one account file.
pub(crate) enum FileIo {
    Ring {
        ring: Rc<Ring>,
        /// The worker's own file description again, for the fsync operations.
        file: File,
        shared: Arc<Shared>,
    },
    Threads {
        /// fdatasync and sleeps on the sync word (a worker never does both at once on a file).
        sync: Lane,
        /// Sleeps on the lock word.
        lock: Lane,
    },
}

impl FileIo {
    pub(crate) fn ring(ring: &Rc<Ring>, file: File, shared: Arc<Shared>) -> FileIo {
        FileIo::Ring {
            ring: Rc::clone(ring),
            file,
            shared,
        }
    }

    pub(crate) fn threads(file: File, shared: Arc<Shared>, account_id: u32) -> io::Result<FileIo> {
        Ok(FileIo::Threads {
            sync: Lane::start(
                format!("espora-sync-{account_id}"),
                Some(file),
                Arc::clone(&shared),
            )?,
            lock: Lane::start(format!("espora-lock-{account_id}"), None, shared)?,
        })
    }

    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        match self {
            FileIo::Ring { ring, file, .. } => ring.fdatasync(file).await,
            FileIo::Threads { sync, .. } => sync.call(Request::Fdatasync).await,
        }
    }

    /// Sleeps for `duration` (sub-millisecond, unlike the runtime's timer).
    pub(crate) async fn pause(&self, duration: Duration) -> io::Result<()> {
        match self {
            FileIo::Ring { ring, .. } => ring.pause(duration).await,
            FileIo::Threads { sync, .. } => sync.call(Request::Pause(duration)).await,
        }
    }

    /// Sleeps until `event`'s word differs from `seen` and someone wakes it, or `timeout`
    /// passes. Returns at once if the word already differs.
    pub(crate) async fn wait(&self, event: Event, seen: u32, timeout: Duration) -> io::Result<()> {
        match self {
            FileIo::Ring { ring, shared, .. } => {
                ring.futex_wait(event.word(shared), seen, timeout).await
            }
            FileIo::Threads { sync, lock, .. } => {
                let lane = match event {
                    Event::Sync => sync,
                    Event::Lock => lock,
                };
                lane.call(Request::Wait {
                    event,
                    seen,
                    timeout,
                })
                .await
            }
        }
    }
}

/// A worker's own io_uring (see the module documentation).
pub(crate) struct Ring {
    ring: RefCell<IoUring>,
    /// The ring's descriptor again, wrapped as a stream only so that the runtime can wait for
    /// it to become readable. INVARIANT: nothing but `readable` is ever called on it.
    readiness: monoio::net::UnixStream,
    /// Indexed by `user_data`.
    slots: RefCell<Vec<Slot>>,
    closed: Cell<bool>,
}

enum Slot {
    Free,
    Waiting(Option<Waker>),
    Done(i32),
    /// Its task went away; freed when the completion arrives.
    Abandoned,
}

impl Ring {
    /// Sets up the ring, checks that the kernel has every operation it needs, and starts its
    /// reaper task. Call it inside the worker's monoio runtime.
    pub(crate) fn start() -> io::Result<Rc<Ring>> {
        let ring = IoUring::new(RING_ENTRIES)?;
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
        // SAFETY: the ring's descriptor is open for as long as `ring` lives, past this call.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring.as_raw_fd()) };
        let copy = rustix::io::dup(borrowed)?;
        let stream = std::os::unix::net::UnixStream::from(copy);
        let ring = Rc::new(Ring {
            ring: RefCell::new(ring),
            readiness: monoio::net::UnixStream::from_std(stream)?,
            slots: RefCell::new(Vec::new()),
            closed: Cell::new(false),
        });
        monoio::spawn(reap(Rc::clone(&ring)));
        Ok(ring)
    }

    /// Ends the reaper task (the worker goes away): its last wait is woken by a no-op.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        let nop = opcode::Nop::new().build().user_data(CLOSE_TAG);
        let _ = self.submit(&[nop]);
    }

    async fn fdatasync(&self, file: &File) -> io::Result<()> {
        let slot = self.slot();
        let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(slot as u64);
        self.run(slot, &[entry]).await.map(drop)
    }

    async fn futex_wait(&self, word: &AtomicU32, seen: u32, timeout: Duration) -> io::Result<()> {
        let slot = self.slot();
        let wait = opcode::FutexWait::new(
            word.as_ptr() as *const u32,
            u64::from(seen),
            FUTEX_BITSET_MATCH_ANY,
            FUTEX2_SIZE_U32,
        )
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(slot as u64);
        // The kernel copies the time when it takes the entries, inside `submit`.
        let time = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let timer = opcode::LinkTimeout::new(&time)
            .build()
            .user_data(TIMEOUT_TAG);
        match self.run(slot, &[wait, timer]).await {
            // Woken, the word had already changed, or the timeout cancelled the wait.
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc_errno::EAGAIN | libc_errno::ECANCELED)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn pause(&self, duration: Duration) -> io::Result<()> {
        let slot = self.slot();
        // The kernel copies the time when it takes the entry, inside `submit`.
        let time = types::Timespec::new()
            .sec(duration.as_secs())
            .nsec(duration.subsec_nanos());
        let entry = opcode::Timeout::new(&time).build().user_data(slot as u64);
        match self.run(slot, &[entry]).await {
            Err(e) if e.raw_os_error() == Some(libc_errno::ETIME) => Ok(()),
            other => other.map(drop),
        }
    }

    fn slot(&self) -> usize {
        let mut slots = self.slots.borrow_mut();
        match slots.iter().position(|s| matches!(s, Slot::Free)) {
            Some(index) => {
                slots[index] = Slot::Waiting(None);
                index
            }
            None => {
                slots.push(Slot::Waiting(None));
                slots.len() - 1
            }
        }
    }

    fn submit(&self, entries: &[squeue::Entry]) -> io::Result<()> {
        let mut ring = self.ring.borrow_mut();
        // SAFETY: the entries point only at memory that outlives their submission (the futex
        // word lives in a mapping held by the file's `Shared`; the timeout is copied in
        // `submit`), and the descriptors they name stay open until their completions arrive.
        unsafe { ring.submission().push_multiple(entries) }
            .map_err(|_| io::Error::other("espora's io_uring submission queue is full"))?;
        ring.submit()?;
        Ok(())
    }

    /// Submits `entries` for `slot` and waits for its completion.
    async fn run(&self, slot: usize, entries: &[squeue::Entry]) -> io::Result<i32> {
        if let Err(e) = self.submit(entries) {
            self.slots.borrow_mut()[slot] = Slot::Free;
            return Err(e);
        }
        let result = Completion {
            ring: self,
            slot,
            done: false,
        }
        .await;
        if result < 0 {
            Err(io::Error::from_raw_os_error(-result))
        } else {
            Ok(result)
        }
    }

    /// Hands every posted completion to its slot and wakes its task.
    fn reap(&self) {
        let mut ring = self.ring.borrow_mut();
        let mut slots = self.slots.borrow_mut();
        for entry in ring.completion() {
            let tag = entry.user_data();
            if tag == TIMEOUT_TAG || tag == CLOSE_TAG {
                continue;
            }
            let slot = &mut slots[tag as usize];
            match std::mem::replace(slot, Slot::Done(entry.result())) {
                Slot::Waiting(waker) => waker.into_iter().for_each(Waker::wake),
                Slot::Abandoned => *slot = Slot::Free,
                Slot::Free | Slot::Done(_) => unreachable!("completion for slot {tag} twice"),
            }
        }
    }

    /// Completes every waiting slot with `errno` (the runtime cannot watch the ring any more).
    fn fail_all(&self, errno: i32) {
        for slot in self.slots.borrow_mut().iter_mut() {
            match std::mem::replace(slot, Slot::Done(-errno)) {
                Slot::Waiting(waker) => waker.into_iter().for_each(Waker::wake),
                other => *slot = other,
            }
        }
    }
}

async fn reap(ring: Rc<Ring>) {
    while !ring.closed.get() {
        if let Err(e) = ring.readiness.readable(false).await {
            ring.fail_all(e.raw_os_error().unwrap_or(libc_errno::EIO));
            return;
        }
        ring.reap();
    }
}

/// Resolves with the result of the operation of one slot.
struct Completion<'a> {
    ring: &'a Ring,
    slot: usize,
    /// The result was taken (the slot is free again, perhaps already reused).
    done: bool,
}

impl Future for Completion<'_> {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let this = self.get_mut();
        let mut slots = this.ring.slots.borrow_mut();
        match &mut slots[this.slot] {
            Slot::Done(result) => {
                let result = *result;
                slots[this.slot] = Slot::Free;
                this.done = true;
                Poll::Ready(result)
            }
            Slot::Waiting(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Slot::Free | Slot::Abandoned => unreachable!("slot {} not in use", this.slot),
        }
    }
}

impl Drop for Completion<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut slots = self.ring.slots.borrow_mut();
        match slots[self.slot] {
            Slot::Done(_) => slots[self.slot] = Slot::Free,
            Slot::Waiting(_) => slots[self.slot] = Slot::Abandoned,
            Slot::Free | Slot::Abandoned => unreachable!("slot {} not in use", self.slot),
        }
    }
}

/// What a helper thread is asked to do.
#[derive(Clone, Copy, Debug)]
enum Request {
    Fdatasync,
    Pause(Duration),
    Wait {
        event: Event,
        seen: u32,
        timeout: Duration,
    },
}

impl Request {
    /// 16 bytes: kind, 3 zero bytes, `seen` and the timeout in microseconds, little-endian.
    fn encode(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        match self {
            Request::Fdatasync => bytes[0] = 1,
            Request::Pause(duration) => {
                bytes[0] = 4;
                let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
                bytes[8..16].copy_from_slice(&micros.to_le_bytes());
            }
            Request::Wait {
                event,
                seen,
                timeout,
            } => {
                bytes[0] = if event == Event::Sync { 2 } else { 3 };
                bytes[4..8].copy_from_slice(&seen.to_le_bytes());
                let micros = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
                bytes[8..16].copy_from_slice(&micros.to_le_bytes());
            }
        }
        bytes
    }

    fn decode(bytes: &[u8; 16]) -> Request {
        let seen = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let micros = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let timeout = Duration::from_micros(micros);
        match bytes[0] {
            1 => Request::Fdatasync,
            2 => Request::Wait {
                event: Event::Sync,
                seen,
                timeout,
            },
            3 => Request::Wait {
                event: Event::Lock,
                seen,
                timeout,
            },
            4 => Request::Pause(timeout),
            kind => unreachable!("request kind {kind} from our own worker"),
        }
    }
}

/// A helper thread that makes one kind of blocking call for a worker. The worker writes a
/// 16-byte request to its end of a socket pair; the thread answers with the errno as 4
/// little-endian bytes (0 on success). Closing the worker's end (dropping the worker) ends the
/// thread once its current call returns.
pub(crate) struct Lane {
    /// The worker's end of the socket pair; taken out while a request is in progress.
    channel: Cell<Option<monoio::net::UnixStream>>,
    /// A request was sent and its answer not read yet (the waiting task was dropped).
    /// INVARIANT: at most one request is outstanding.
    answer_pending: Cell<bool>,
}

impl Lane {
    fn start(name: String, file: Option<File>, shared: Arc<Shared>) -> io::Result<Lane> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        std::thread::Builder::new()
            .name(name)
            .stack_size(64 * 1024)
            .spawn(move || serve(file, &shared, theirs))?;
        ours.set_nonblocking(true)?;
        Ok(Lane {
            channel: Cell::new(Some(monoio::net::UnixStream::from_std(ours)?)),
            answer_pending: Cell::new(false),
        })
    }

    async fn call(&self, request: Request) -> io::Result<()> {
        use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};
        // The commit protocol never has two calls of one lane in flight (one sync or sleep per
        // file and purpose on a worker); the guard puts the channel back even if this future
        // is dropped.
        let mut channel = ChannelGuard {
            home: &self.channel,
            stream: self.channel.take(),
        };
        let stream = channel
            .stream
            .as_mut()
            .expect("one call in flight per lane");
        if self.answer_pending.get() {
            // The previous caller went away: its call is still running; its answer comes first.
            let (result, _) = stream.read_exact(vec![0u8; 4]).await;
            result?;
            self.answer_pending.set(false);
        }
        let (result, _) = stream.write_all(request.encode().to_vec()).await;
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

fn serve(file: Option<File>, shared: &Shared, mut channel: std::os::unix::net::UnixStream) {
    use std::io::{Read, Write};
    let mut bytes = [0u8; 16];
    while channel.read_exact(&mut bytes).is_ok() {
        let result = match Request::decode(&bytes) {
            Request::Fdatasync => file
                .as_ref()
                .expect("the sync lane has the file")
                .sync_data(),
            Request::Pause(duration) => {
                std::thread::sleep(duration);
                Ok(())
            }
            Request::Wait {
                event,
                seen,
                timeout,
            } => {
                let time = rustix::time::Timespec {
                    tv_sec: timeout.as_secs() as i64,
                    tv_nsec: i64::from(timeout.subsec_nanos()),
                };
                match rustix::thread::futex::wait(
                    event.word(shared),
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
        let errno = match result {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(libc_errno::EIO),
        };
        if channel.write_all(&errno.to_le_bytes()).is_err() {
            return;
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

/// The errno values this module maps, from rustix so that no libc crate is needed.
mod libc_errno {
    pub const EAGAIN: i32 = rustix::io::Errno::AGAIN.raw_os_error();
    pub const ECANCELED: i32 = rustix::io::Errno::CANCELED.raw_os_error();
    pub const ETIME: i32 = rustix::io::Errno::TIME.raw_os_error();
    pub const EIO: i32 = rustix::io::Errno::IO.raw_os_error();
}
