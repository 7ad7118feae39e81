//! One worker: accepts clients, picks an upstream, relays, and keeps its own limits.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::time::Instant;
use rinha_rt::{AsyncListener, Driver, Stream, WorkerContext};

use crate::config::Config;
use crate::relay::{relay, try_read_first, PipeSet, RelayEnd, SpliceMode};
use crate::upstreams::Upstreams;

/// How long accepting pauses after running out of descriptors or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// How often a worker at its connection cap checks whether a slot freed up.
const CAP_RECHECK: Duration = Duration::from_millis(1);

/// Clean pipe sets kept per worker for reuse by later connections. Each holds four
/// descriptors, so the pool stays small next to common open-files limits (1024).
const PIPE_SETS_POOLED_MAX: usize = 64;

/// How long a stopping worker waits for its open connections to finish.
const DRAIN_MAX: Duration = Duration::from_secs(3);

/// Everything the workers share.
#[derive(Debug)]
pub struct Balancer {
    /// The configuration.
    pub config: Config,
    /// The upstreams with the shared round-robin counter.
    pub upstreams: Upstreams,
}

impl Balancer {
    /// A balancer for `config`.
    pub fn new(config: Config) -> Balancer {
        let upstreams = Upstreams::new(config.upstreams.clone(), config.down_backoff);
        Balancer { config, upstreams }
    }
}

/// Why a worker stopped before it was asked to.
#[derive(Debug)]
pub enum WorkerError {
    /// The worker was given no listener.
    NoListener,
    /// Its listener could not be attached to the runtime.
    Attach(io::Error),
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::NoListener => write!(f, "no listener"),
            WorkerError::Attach(error) => write!(f, "cannot attach listener: {error}"),
        }
    }
}

impl std::error::Error for WorkerError {}

/// The state private to one worker thread.
struct Local {
    driver: Driver,
    splice: SpliceMode,
    active: Cell<usize>,
    pipes: RefCell<Vec<PipeSet>>,
}

/// Runs one worker until shutdown, then waits (bounded) for its connections to end.
pub async fn run_worker(
    context: WorkerContext,
    balancer: Arc<Balancer>,
) -> Result<(), WorkerError> {
    let listener = context
        .listeners
        .into_iter()
        .next()
        .ok_or(WorkerError::NoListener)?;
    let listener = listener.into_monoio().map_err(WorkerError::Attach)?;
    let splice = balancer
        .config
        .splice
        .unwrap_or(SpliceMode::default_for(context.driver));
    let local = Rc::new(Local {
        driver: context.driver,
        splice,
        active: Cell::new(0),
        pipes: RefCell::new(Vec::new()),
    });
    monoio::select! {
        () = accept_loop(&listener, &balancer, &local) => {}
        () = context.shutdown.wait() => {}
    }
    // Dropping the listener does not close it while monoio still holds the descriptor for the
    // readiness poll the accept loop left in flight, and until then the kernel keeps queueing
    // new clients on it. Shutting it down takes it out of service at once, so new clients are
    // refused during the drain instead of hanging until the process exits.
    let _ = rustix::net::shutdown(&listener, rustix::net::Shutdown::Read);
    drop(listener);
    let deadline = Instant::now() + DRAIN_MAX;
    while local.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn accept_loop(listener: &AsyncListener, balancer: &Arc<Balancer>, local: &Rc<Local>) {
    let connections_max = balancer.config.connections_per_worker_max;
    loop {
        while local.active.get() >= connections_max {
            monoio::time::sleep(CAP_RECHECK).await;
        }
        // The relay drives sockets with readiness waits and nonblocking splice(2). monoio's
        // epoll driver makes every socket nonblocking; on io_uring it would leave them blocking.
        let accepted = match local.driver {
            Driver::IoUring => listener.accept_nonblocking().await,
            Driver::Epoll => listener.accept().await,
        };
        match accepted {
            Ok(client) => {
                local.active.set(local.active.get() + 1);
                let guard = ActiveGuard(Rc::clone(local));
                monoio::spawn(serve(client, Arc::clone(balancer), guard));
            }
            Err(error) => accept_failed(&error).await,
        }
    }
}

/// Accept errors are never fatal. Running out of descriptors or memory pauses accepting so the
/// connections already open can finish and free some; a connection that died in the queue is
/// simply skipped.
async fn accept_failed(error: &io::Error) {
    const EMFILE: i32 = libc::EMFILE;
    const ENFILE: i32 = libc::ENFILE;
    const ENOBUFS: i32 = libc::ENOBUFS;
    const ENOMEM: i32 = libc::ENOMEM;
    match error.raw_os_error() {
        Some(EMFILE | ENFILE | ENOBUFS | ENOMEM) => monoio::time::sleep(ACCEPT_PAUSE).await,
        Some(libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO) => {}
        // Anything else is unexpected; pause briefly rather than spin on it.
        _ => monoio::time::sleep(Duration::from_millis(5)).await,
    }
}

/// Counts a connection as open until dropped.
struct ActiveGuard(Rc<Local>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let active = &self.0.active;
        assert!(active.get() > 0);
        active.set(active.get() - 1);
    }
}

async fn serve(client: Stream, balancer: Arc<Balancer>, guard: ActiveGuard) {
    let local = &guard.0;
    let config = &balancer.config;
    let _ = client.set_nodelay(true);
    let Some((pipes, pending)) = first_bytes(&client, local, config.idle_timeout).await else {
        return;
    };
    let Some(upstream) = connect_upstream(&balancer).await else {
        // No upstream answered: dropping the client closes it at once, and the pipes with
        // whatever the client sent still in them.
        return;
    };
    if local.driver == Driver::IoUring {
        // On io_uring monoio leaves connected sockets blocking. The relay needs them
        // nonblocking: a blocking splice would park a kernel worker thread on an idle socket,
        // and a readiness wait followed by splice(2) must see EAGAIN, not block.
        if rustix::io::ioctl_fionbio(&upstream, true).is_err() {
            return;
        }
    }
    let poll_first = local.driver == Driver::IoUring;
    if let RelayEnd::Clean(pipes) = relay(
        client,
        upstream,
        pipes,
        pending,
        poll_first,
        config.idle_timeout,
    )
    .await
    {
        local.give_back(pipes);
    }
}

/// Waits until the client has sent its first bytes or hung up, at most `wait`, and returns the
/// connection's pipes with the number of bytes already moved into them; `None` when the client
/// stayed silent that long, the socket failed, or no pipe could be made.
///
/// The upstream is connected only after this, so an idle client holds no connection of an
/// instance, and it holds no pipes either: they go back to the pool while it waits. The story:
/// the reliability tests (crates/chaos/tests/idle.rs) opened 10,000 idle connections through
/// the balancer; it connected an upstream for each at once, the two instances (one worker each,
/// at most 4,096 connections per worker) filled up, and every later client was refused by the
/// instances until the idle ones timed out. Later, pipes taken at accept made the same 10,000
/// clients need 50,000 descriptors. A client that sends its request with the connect (every
/// real one) costs no readiness wait: the first attempt finds the bytes.
async fn first_bytes(client: &Stream, local: &Local, wait: Duration) -> Option<(PipeSet, usize)> {
    let deadline = Instant::now() + wait;
    loop {
        let pipes = match local.pipes.borrow_mut().pop() {
            Some(pipes) => pipes,
            None => PipeSet::new(local.splice).ok()?,
        };
        match try_read_first(client, &pipes) {
            Ok(Some(pending)) => return Some((pipes, pending)),
            Ok(None) => local.give_back(pipes),
            Err(_) => {
                local.give_back(pipes);
                return None;
            }
        }
        match monoio::time::timeout_at(deadline, client.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

impl Local {
    /// Keeps an empty pipe set for a later connection, up to the pool's size.
    fn give_back(&self, pipes: PipeSet) {
        let mut pool = self.pipes.borrow_mut();
        if pool.len() < PIPE_SETS_POOLED_MAX {
            pool.push(pipes);
        }
    }
}

/// Tries the upstreams in round-robin order, skipping those in back-off, each at most once.
async fn connect_upstream(balancer: &Balancer) -> Option<Stream> {
    let plan = balancer.upstreams.plan(balancer.config.attempts_max);
    for &index in plan.indices() {
        let addr = balancer.upstreams.addr(index);
        match monoio::time::timeout(balancer.config.connect_timeout, Stream::connect(addr)).await {
            Ok(Ok(stream)) => {
                balancer.upstreams.mark_up(index);
                return Some(stream);
            }
            Ok(Err(error)) if !is_upstream_fault(&error) => {}
            Ok(Err(_)) | Err(_) => balancer.upstreams.mark_down(index),
        }
    }
    None
}

/// True when a failed connect says something about the upstream (refused, unreachable, gone)
/// rather than about this process (out of descriptors, memory or local ports) or a momentary
/// overload (a full Unix socket backlog answers EAGAIN). Only the former marks it down.
fn is_upstream_fault(error: &io::Error) -> bool {
    !matches!(
        error.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EADDRNOTAVAIL
                | libc::EAGAIN
                | libc::EINTR
        )
    )
}
