//! Moving bytes between a client and its upstream without copying them through user space.
//!
//! Each direction owns one pipe for the connection's whole life: bytes are spliced from the
//! source socket into the pipe, then from the pipe into the destination socket, and the pipe is
//! empty again before the next read. In direct mode the client's first bytes are spliced into
//! its pipe by [`try_read_first`] before the upstream is connected. When a source reaches end
//! of stream, the destination's write side is shut down (half-close) and the other direction
//! keeps going until it ends too.
//!
//! Two ways to issue a splice are offered:
//! - [`SpliceMode::Op`] submits monoio's splice operation: IORING_OP_SPLICE on io_uring, or
//!   splice(2) when epoll says the socket is ready. The kernel runs every io_uring splice on an
//!   io-wq worker thread (the opcode is always forced async) and would park that thread on an
//!   idle socket, so sockets are kept nonblocking and, on io_uring, each read first waits for
//!   readiness with a PollAdd. The two hops to an io-wq thread per chunk make this about 50%
//!   dearer in CPU per request than the direct mode (see the crate README).
//! - [`SpliceMode::Direct`] waits for readiness through the runtime (a PollAdd on io_uring) and
//!   then calls splice(2) itself with SPLICE_F_NONBLOCK. The default on io_uring.
//!
//! On epoll the operation mode is the default: monoio already waits for readiness and calls
//! splice(2), while the direct mode would add a poll(2) per readiness wait.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use monoio::io::as_fd::{AsReadFd, AsWriteFd, SharedFdWrapper};
use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::net::Pipe;
use monoio::time::Instant;
use rinha_metrics::Counter;
use rinha_rt::Stream;
use rustix::pipe::SpliceFlags;

use crate::metrics::WorkerMetrics;

/// Most bytes moved by one splice call: the default pipe capacity (16 pages), so a splice
/// into an empty pipe never has to wait for room.
pub const SPLICE_CHUNK_BYTES_MAX: u32 = 64 * 1024;

/// How splices are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceMode {
    /// Through monoio's splice operation (IORING_OP_SPLICE, or epoll readiness + splice(2)).
    Op,
    /// Readiness through the runtime, then splice(2) called directly.
    Direct,
}

impl SpliceMode {
    /// The mode to use when none is forced: direct on io_uring, the operation on epoll.
    pub fn default_for(driver: rinha_rt::Driver) -> SpliceMode {
        match driver {
            rinha_rt::Driver::IoUring => SpliceMode::Direct,
            rinha_rt::Driver::Epoll => SpliceMode::Op,
        }
    }
}

impl std::str::FromStr for SpliceMode {
    type Err = String;

    fn from_str(text: &str) -> Result<SpliceMode, String> {
        match text {
            "op" => Ok(SpliceMode::Op),
            "direct" => Ok(SpliceMode::Direct),
            _ => Err("expected auto, op or direct".to_string()),
        }
    }
}

impl std::fmt::Display for SpliceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpliceMode::Op => "op",
            SpliceMode::Direct => "direct",
        })
    }
}

/// The pipes of one connection, one per direction, each as (read end, write end).
pub enum PipeSet {
    /// monoio pipes, for [`SpliceMode::Op`].
    Op {
        /// Client to upstream.
        up: (Pipe, Pipe),
        /// Upstream to client.
        down: (Pipe, Pipe),
    },
    /// Raw nonblocking pipes, for [`SpliceMode::Direct`].
    Direct {
        /// Client to upstream.
        up: (OwnedFd, OwnedFd),
        /// Upstream to client.
        down: (OwnedFd, OwnedFd),
    },
}

impl PipeSet {
    /// Creates the two pipes for `mode` inside the current runtime.
    pub fn new(mode: SpliceMode) -> io::Result<PipeSet> {
        match mode {
            SpliceMode::Op => {
                let up = monoio::net::unix::new_pipe()?;
                let down = monoio::net::unix::new_pipe()?;
                Ok(PipeSet::Op { up, down })
            }
            SpliceMode::Direct => {
                let flags = rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC;
                let up = rustix::pipe::pipe_with(flags)?;
                let down = rustix::pipe::pipe_with(flags)?;
                Ok(PipeSet::Direct { up, down })
            }
        }
    }
}

/// One nonblocking attempt at the client's first bytes. In direct mode they are spliced into
/// the client-to-upstream pipe; monoio's pipes do not expose their descriptors, so operation
/// mode only peeks and leaves them in the socket for the relay's first read. Returns how many
/// bytes the pipe now holds (0 also when the client closed without sending anything, which the
/// relay then passes on), `None` when nothing has arrived yet (the pipes are still empty).
///
/// `pipes` must be empty and `client` nonblocking (the io_uring worker accepts with
/// [`rinha_rt::AsyncListener::accept_nonblocking`]; monoio's epoll driver makes every socket
/// nonblocking).
pub fn try_read_first(client: &Stream, pipes: &PipeSet) -> io::Result<Option<usize>> {
    let attempt = match pipes {
        PipeSet::Direct { up, .. } => {
            let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
            rustix::pipe::splice(client.as_fd(), None, up.1.as_fd(), None, chunk(), flags)
        }
        PipeSet::Op { .. } => {
            use rustix::net::RecvFlags;
            let mut byte = [0u8; 1];
            rustix::net::recv(client, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT).map(|_| 0)
        }
    };
    match attempt {
        Ok(moved) => Ok(Some(moved)),
        Err(errno) if errno == rustix::io::Errno::AGAIN || errno == rustix::io::Errno::INTR => {
            Ok(None)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// How a relay ended.
pub enum RelayEnd {
    /// Both directions reached end of stream; the pipes are empty and may be reused.
    Clean(PipeSet),
    /// No byte moved in either direction for the idle timeout.
    Idle,
    /// The upstream sent no byte within the answer timeout after the client's first bytes
    /// reached it: frozen, or too slow to keep in the rotation.
    Unanswered,
    /// A socket error (reset, broken pipe...) ended the connection.
    Failed(io::Error),
}

/// The relays of one worker, for the drain at shutdown: once [`Drains::start`] is called, each
/// relay stops reading its client, half-closes its upstream once the bytes already read are
/// passed on (so the instance answers every request it got, then closes), and ends when the
/// answers are through.
#[derive(Default)]
pub struct Drains {
    started: Cell<bool>,
    /// Per live relay, the waker of its drain wait; `None` in free slots.
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Drains {
    /// Starts the drain of every relay, present and future.
    pub fn start(&self) {
        self.started.set(true);
        for waker in self.wakers.borrow_mut().iter_mut() {
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }

    fn register(&self) -> DrainSlot<'_> {
        let slot = match self.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                let mut wakers = self.wakers.borrow_mut();
                wakers.push(None);
                wakers.len() - 1
            }
        };
        DrainSlot { drains: self, slot }
    }
}

/// A relay's place in [`Drains`], given back when the relay ends.
struct DrainSlot<'a> {
    drains: &'a Drains,
    slot: usize,
}

impl DrainSlot<'_> {
    /// Resolves once the drain has started.
    async fn started(&self) {
        std::future::poll_fn(|context| {
            if self.drains.started.get() {
                return Poll::Ready(());
            }
            self.drains.wakers.borrow_mut()[self.slot] = Some(context.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for DrainSlot<'_> {
    fn drop(&mut self) {
        self.drains.wakers.borrow_mut()[self.slot] = None;
        self.drains.free.borrow_mut().push(self.slot);
    }
}

/// What the client-to-upstream direction shares with the driver for a drain.
#[derive(Default)]
struct Draining {
    /// The drain started: read no more from the client.
    started: Cell<bool>,
    /// The direction is waiting for the client's next bytes, with nothing in its pipe: it can be
    /// dropped there without losing a byte already read.
    idle: Cell<bool>,
}

/// How a relay ended, and whether the upstream answered at all.
pub struct Relayed {
    pub end: RelayEnd,
    /// The upstream sent at least one byte.
    pub answered: bool,
}

/// How one relay runs.
#[derive(Clone, Copy, Debug)]
pub struct RelaySettings {
    /// Operation-mode reads wait for readiness first (wanted on io_uring, not on epoll).
    pub poll_first: bool,
    /// No byte either way this long ends the connection.
    pub idle: Duration,
    /// The upstream's first byte must come this soon after the relay starts (the client's first
    /// bytes are already waiting to go to it); `None` waits as long as the idle timeout allows.
    pub answer: Option<Duration>,
}

/// Relays until both directions end, one fails, the connection idles out or the upstream
/// leaves the client's first bytes unanswered. The client's first `pending` bytes are already
/// in the client-to-upstream pipe ([`try_read_first`]).
pub async fn relay(
    client: Stream,
    upstream: Stream,
    mut pipes: PipeSet,
    pending: usize,
    settings: RelaySettings,
    drains: &Drains,
    metrics: &WorkerMetrics,
) -> Relayed {
    let drain_slot = drains.register();
    let draining = Draining::default();
    let client = Rc::new(UnsafeCell::new(client));
    let upstream = Rc::new(UnsafeCell::new(upstream));
    let (mut client_read, mut client_write) = (Side(Rc::clone(&client)), Side(Rc::clone(&client)));
    let (mut upstream_read, mut upstream_write) =
        (Side(Rc::clone(&upstream)), Side(Rc::clone(&upstream)));
    // The sides through which the ends are shut down: their descriptors stay borrowed until
    // the relay returns, and the streams, which the relay owns, close only after that.
    let (client_end, upstream_end) = (Side(client), Side(upstream));
    let started = Instant::now();
    let activity = Cell::new(started);
    let answered = Cell::new(false);
    let ends = Ends {
        client: client_end.fd(),
        upstream: upstream_end.fd(),
        activity: &activity,
        idle: settings.idle,
        answered: &answered,
        answer_deadline: settings.answer.map(|answer| started + answer),
        draining: &draining,
    };
    let outcome = match &mut pipes {
        PipeSet::Op { up, down } => {
            let to_upstream = pump_op(
                &mut client_read,
                &mut upstream_write,
                up,
                pending,
                settings.poll_first,
                (&activity, &metrics.bytes_to_upstreams, None),
                Some(&draining),
            );
            let to_client = pump_op(
                &mut upstream_read,
                &mut client_write,
                down,
                0,
                settings.poll_first,
                (&activity, &metrics.bytes_to_clients, Some(&answered)),
                None,
            );
            ends.drive(to_upstream, to_client, drain_slot.started())
                .await
        }
        PipeSet::Direct { up, down } => {
            let to_upstream = pump_direct(
                &client_read,
                &upstream_write,
                up,
                pending,
                (&activity, &metrics.bytes_to_upstreams, None),
                Some(&draining),
            );
            let to_client = pump_direct(
                &upstream_read,
                &client_write,
                down,
                0,
                (&activity, &metrics.bytes_to_clients, Some(&answered)),
                None,
            );
            ends.drive(to_upstream, to_client, drain_slot.started())
                .await
        }
    };
    let end = match outcome {
        Ok(()) => RelayEnd::Clean(pipes),
        Err(end) => {
            // Wake anything still parked on these sockets so their operations finish quickly
            // and the descriptors can close.
            shutdown(ends.client, rustix::net::Shutdown::Both);
            shutdown(ends.upstream, rustix::net::Shutdown::Both);
            end
        }
    };
    Relayed {
        end,
        answered: answered.get(),
    }
}

/// One direction's view of a stream that both directions use.
///
/// INVARIANT: the runtime is single-threaded and the stream is only reached through `Side`s
/// of one relay; no `&mut Stream` outlives a single synchronous call.
struct Side(Rc<UnsafeCell<Stream>>);

impl Side {
    fn stream(&self) -> &Stream {
        // SAFETY: per the type invariant, the only `&mut Stream` ever made is inside
        // `as_reader_fd`/`as_writer_fd` below and ends before they return, and no other thread
        // can reach the stream, so a shared reference cannot overlap a live mutable one.
        unsafe { &*self.0.get() }
    }

    /// The stream's descriptor, borrowed for as long as this side lives.
    fn fd(&self) -> BorrowedFd<'_> {
        self.stream().as_fd()
    }
}

impl AsReadFd for Side {
    fn as_reader_fd(&mut self) -> &SharedFdWrapper {
        // SAFETY: the mutable borrow only selects the fd wrapper, which the stream never
        // mutates; monoio clones the fd out of it synchronously when it submits the operation.
        // The same pattern backs monoio's own `OwnedReadHalf`.
        unsafe { (*self.0.get()).as_reader_fd() }
    }
}

impl AsWriteFd for Side {
    fn as_writer_fd(&mut self) -> &SharedFdWrapper {
        // SAFETY: as in `as_reader_fd`.
        unsafe { (*self.0.get()).as_writer_fd() }
    }
}

/// What the driver of the two directions needs to propagate ends and watch idleness.
struct Ends<'a> {
    client: BorrowedFd<'a>,
    upstream: BorrowedFd<'a>,
    activity: &'a Cell<Instant>,
    idle: Duration,
    /// Set by the upstream-to-client direction when it first moves bytes.
    answered: &'a Cell<bool>,
    /// When the upstream must have answered by, if it is watched.
    answer_deadline: Option<Instant>,
    draining: &'a Draining,
}

impl Ends<'_> {
    /// Runs both directions to their ends. A direction that ends cleanly while the other goes
    /// on shuts down the write side of its destination, so that peer sees end of stream; when
    /// it is the last to end, closing both sockets right after says the same with one system
    /// call less (both receive queues are drained to end of stream, so the close sends a FIN,
    /// not a reset). The first error, idleness, or an upstream silent past the answer deadline
    /// ends the whole relay. Once `drain` resolves, the client-to-upstream direction reads no
    /// more: it ends when the bytes it holds are passed on (at once if it holds none), and the
    /// upstream's write side is shut down as for an end of stream.
    async fn drive<A, B, D>(&self, to_upstream: A, to_client: B, drain: D) -> Result<(), RelayEnd>
    where
        A: Future<Output = io::Result<()>>,
        B: Future<Output = io::Result<()>>,
        D: Future<Output = ()>,
    {
        let mut to_upstream = pin!(to_upstream);
        let mut to_client = pin!(to_client);
        let mut drain = pin!(drain);
        let (mut up_done, mut down_done) = (false, false);
        // One timer for the relay's life (the idle deadline moves with traffic, this one does
        // not); far enough never to fire when no answer is watched.
        let never = Instant::now() + self.idle;
        let mut answer_timer = pin!(monoio::time::sleep_until(
            self.answer_deadline.unwrap_or(never)
        ));
        while !(up_done && down_done) {
            let deadline = self.activity.get() + self.idle;
            let watching = self.answer_deadline.is_some() && !self.answered.get() && !down_done;
            monoio::select! {
                biased;
                result = &mut to_upstream, if !up_done => {
                    result.map_err(RelayEnd::Failed)?;
                    up_done = true;
                    if !down_done {
                        shutdown(self.upstream, rustix::net::Shutdown::Write);
                    }
                }
                result = &mut to_client, if !down_done => {
                    result.map_err(RelayEnd::Failed)?;
                    down_done = true;
                    if !up_done {
                        shutdown(self.client, rustix::net::Shutdown::Write);
                    }
                }
                _ = monoio::time::sleep_until(deadline) => {
                    if self.activity.get() + self.idle <= Instant::now() {
                        return Err(RelayEnd::Idle);
                    }
                }
                _ = &mut drain, if !self.draining.started.get() => {
                    self.draining.started.set(true);
                    if !up_done && self.draining.idle.get() {
                        up_done = true;
                        if !down_done {
                            shutdown(self.upstream, rustix::net::Shutdown::Write);
                        }
                    }
                }
                _ = &mut answer_timer, if watching => {
                    if !self.answered.get() {
                        return Err(RelayEnd::Unanswered);
                    }
                }
            }
        }
        Ok(())
    }
}

fn shutdown(fd: BorrowedFd<'_>, how: rustix::net::Shutdown) {
    // ENOTCONN (the peer is already gone) and the like change nothing for us.
    let _ = rustix::net::shutdown(fd, how);
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// One direction through monoio's splice operation: first the `pending` bytes already in the
/// pipe go out, then each chunk read from the source.
async fn pump_op(
    source: &mut Side,
    destination: &mut Side,
    pipe: &mut (Pipe, Pipe),
    pending: usize,
    poll_first: bool,
    (activity, moved, answered): (&Cell<Instant>, &Counter, Option<&Cell<bool>>),
    draining: Option<&Draining>,
) -> io::Result<()> {
    let (pipe_read, pipe_write) = pipe;
    let mut left = u32::try_from(pending).expect("at most one chunk pending");
    loop {
        while left > 0 {
            match destination.splice_from_pipe(pipe_read, left).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    left -= written;
                    moved.add(u64::from(written));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    destination.stream().writable().await?;
                }
                Err(error) if is_transient(&error) => {}
                Err(error) => return Err(error),
            }
        }
        if draining.is_some_and(|draining| draining.started.get()) {
            return Ok(());
        }
        // Until bytes are read the direction can be dropped (see `Draining`): with
        // `poll_first` the splice starts only after the readiness wait; without it (epoll), the
        // operation moves bytes only while it is polled.
        let mut idle = Some(IdleWhile::new(draining));
        if poll_first {
            source.stream().readable().await?;
            idle = None;
        }
        let spliced = source
            .splice_to_pipe(pipe_write, SPLICE_CHUNK_BYTES_MAX)
            .await;
        drop(idle);
        left = match spliced {
            Ok(0) => return Ok(()),
            Ok(moved) => moved,
            Err(error) if is_transient(&error) => continue,
            Err(error) => return Err(error),
        };
        activity.set(Instant::now());
        if let Some(answered) = answered {
            answered.set(true);
        }
    }
}

/// One direction with readiness from the runtime and splice(2) called directly: first the
/// `pending` bytes already in the pipe go out, then each chunk read from the source. Reads
/// always wait for readiness first: the client's first bytes were read by [`try_read_first`],
/// and after that a peer has rarely sent more by the time the previous chunk is passed on (a
/// request waits for its answer), so trying first would mostly cost an EAGAIN.
async fn pump_direct(
    source: &Side,
    destination: &Side,
    pipe: &(OwnedFd, OwnedFd),
    pending: usize,
    (activity, moved, answered): (&Cell<Instant>, &Counter, Option<&Cell<bool>>),
    draining: Option<&Draining>,
) -> io::Result<()> {
    let (pipe_read, pipe_write) = (pipe.0.as_fd(), pipe.1.as_fd());
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut left = pending;
    loop {
        while left > 0 {
            let destination_fd = destination.stream().as_fd();
            match rustix::pipe::splice(pipe_read, None, destination_fd, None, left, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    left -= written;
                    moved.add(written as u64);
                }
                Err(errno) if errno == rustix::io::Errno::AGAIN => {
                    destination.stream().writable().await?;
                }
                Err(errno) if errno == rustix::io::Errno::INTR => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        if draining.is_some_and(|draining| draining.started.get()) {
            return Ok(());
        }
        let idle = IdleWhile::new(draining);
        source.stream().readable().await?;
        drop(idle);
        let source_fd = source.stream().as_fd();
        left = match rustix::pipe::splice(source_fd, None, pipe_write, None, chunk(), flags) {
            Ok(0) => return Ok(()),
            Ok(moved) => moved,
            Err(errno) if errno == rustix::io::Errno::AGAIN || errno == rustix::io::Errno::INTR => {
                continue
            }
            Err(errno) => return Err(errno.into()),
        };
        activity.set(Instant::now());
        if let Some(answered) = answered {
            answered.set(true);
        }
    }
}

/// Marks the client-to-upstream direction idle (see [`Draining`]) for as long as it lives.
struct IdleWhile<'a>(Option<&'a Draining>);

impl<'a> IdleWhile<'a> {
    fn new(draining: Option<&'a Draining>) -> IdleWhile<'a> {
        if let Some(draining) = draining {
            draining.idle.set(true);
        }
        IdleWhile(draining)
    }
}

impl Drop for IdleWhile<'_> {
    fn drop(&mut self) {
        if let Some(draining) = self.0 {
            draining.idle.set(false);
        }
    }
}

fn chunk() -> usize {
    SPLICE_CHUNK_BYTES_MAX as usize
}
