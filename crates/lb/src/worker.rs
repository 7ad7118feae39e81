//! One worker: how it accepts clients (through rinha-rt's accept loop), then for each one
//! picks an upstream and relays.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use monoio::time::Instant;
use rinha_rt::{
    AcceptPolicy, Driver, Listener, LiveCount, LiveGuard, Sockets, Stream, WhenFull, WorkerContext,
};

use crate::config::Config;
use crate::metrics::{Metrics, WorkerMetrics};
use crate::relay::{relay, try_read_first, Drains, PipeSet, RelayEnd, RelaySettings, SpliceMode};
use crate::upstreams::Upstreams;

/// How long accepting pauses after running out of descriptors or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// How long accepting pauses after an error nothing explains.
const ACCEPT_PAUSE_UNEXPECTED: Duration = Duration::from_millis(5);

/// Clean pipe sets kept per worker for reuse by later connections. Each holds four
/// descriptors, so the pool stays small next to common open-files limits (1024).
const POOLED_PIPE_SETS_MAX: usize = 64;

/// Everything the workers share.
#[derive(Debug)]
pub struct Balancer {
    /// The configuration.
    pub config: Config,
    /// The upstreams with the shared round-robin counter.
    pub upstreams: Upstreams,
    /// Every worker's live metrics.
    pub metrics: Metrics,
}

impl Balancer {
    /// A balancer for `config`.
    pub fn new(config: Config) -> Balancer {
        let upstreams = Upstreams::new(config.upstreams.clone(), config.down_backoff);
        Balancer {
            config,
            upstreams,
            metrics: Metrics::default(),
        }
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
    /// Open client connections, bounded by `Config::connections_per_worker_max`.
    connections: LiveCount,
    /// Connections relaying (holding pipes and an upstream), bounded by
    /// `Config::relays_per_worker_max`.
    relays: Relays,
    pipes: RefCell<Vec<PipeSet>>,
    metrics: Arc<WorkerMetrics>,
    /// Every relay, for the drain at shutdown.
    drains: Drains,
}

/// Runs one worker until shutdown, then waits (bounded) for its connections to end.
pub async fn run_worker(
    context: WorkerContext,
    balancer: Arc<Balancer>,
) -> Result<(), WorkerError> {
    if context.listeners.is_empty() {
        return Err(WorkerError::NoListener);
    }
    let listeners = context
        .listeners
        .into_iter()
        .map(Listener::into_monoio)
        .collect::<io::Result<Vec<_>>>()
        .map_err(WorkerError::Attach)?;
    let splice = balancer
        .config
        .splice
        .unwrap_or(SpliceMode::default_for(context.driver));
    let local = Rc::new(Local {
        driver: context.driver,
        splice,
        connections: LiveCount::new(),
        relays: Relays::new(balancer.config.relays_per_worker_max),
        pipes: RefCell::new(Vec::new()),
        metrics: balancer.metrics.worker(balancer.upstreams.addrs().len()),
        drains: Drains::default(),
    });
    let policy = AcceptPolicy {
        connections_max: balancer.config.connections_per_worker_max,
        // A client beyond the cap waits in the listen backlog until a connection ends.
        when_full: WhenFull::Wait,
        // The relay drives sockets with readiness waits and nonblocking splice(2). monoio's
        // epoll driver makes every socket nonblocking; on io_uring it would leave them
        // blocking.
        sockets: match context.driver {
            Driver::IoUring => Sockets::Nonblocking,
            Driver::Epoll => Sockets::Runtime,
        },
        pause_after: accept_pause,
        // New clients are refused during the drain instead of hanging until the process exits.
        shut_listeners: true,
    };
    let drain_timeout = balancer.config.drain_timeout;
    let serve_client = {
        let local = Rc::clone(&local);
        move |client, open| serve(client, Arc::clone(&balancer), Rc::clone(&local), open)
    };
    rinha_rt::accept_until_shutdown(
        listeners,
        policy,
        &local.connections,
        &context.shutdown,
        serve_client,
    )
    .await;
    // Every relay passes on what it read, half-closes its upstream, and ends once the answers
    // are through; clients still connected after the drain timeout are cut.
    local.drains.start();
    local.connections.drained(drain_timeout).await;
    Ok(())
}

/// Accept errors are never fatal. Running out of descriptors or memory pauses accepting so the
/// connections already open can finish and free some; a connection that died in the queue is
/// simply skipped.
fn accept_pause(error: &io::Error) -> Option<Duration> {
    const EMFILE: i32 = libc::EMFILE;
    const ENFILE: i32 = libc::ENFILE;
    const ENOBUFS: i32 = libc::ENOBUFS;
    const ENOMEM: i32 = libc::ENOMEM;
    match error.raw_os_error() {
        Some(EMFILE | ENFILE | ENOBUFS | ENOMEM) => Some(ACCEPT_PAUSE),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO) => None,
        // Anything else is unexpected; pause briefly rather than spin on it.
        _ => Some(ACCEPT_PAUSE_UNEXPECTED),
    }
}

/// Relays one client; `_open` counts it among the worker's open connections until it ends.
async fn serve(client: Stream, balancer: Arc<Balancer>, local: Rc<Local>, _open: LiveGuard) {
    let _counted = rinha_metrics::OpenConnection::new(&local.metrics);
    let config = &balancer.config;
    let Some((pipes, pending, _relaying)) = first_bytes(&client, &local, config.idle_timeout).await
    else {
        return;
    };
    let Some((upstream, index)) = connect_upstream(&balancer, &local.metrics).await else {
        // No upstream answered: dropping the client closes it at once, and the pipes with
        // whatever the client sent still in them.
        local.metrics.unserved();
        return;
    };
    if local.driver == Driver::IoUring {
        // On io_uring monoio leaves connected sockets blocking. The relay needs them
        // nonblocking: a blocking splice would park a kernel worker thread on an idle socket,
        // and a readiness wait followed by splice(2) must see EAGAIN, not block.
        if rustix::io::ioctl_fionbio(&upstream, true).is_err() {
            balancer.upstreams.finished(index, false, false);
            return;
        }
    }
    let settings = RelaySettings {
        poll_first: local.driver == Driver::IoUring,
        idle: config.idle_timeout,
        answer: config.answer_timeout,
    };
    let relayed = relay(
        client,
        upstream,
        pipes,
        pending,
        settings,
        &local.drains,
        &local.metrics,
    )
    .await;
    // The client's bytes are never sent to another upstream: a request may have been applied.
    let silent = matches!(relayed.end, RelayEnd::Unanswered);
    if silent {
        local.metrics.failed(index);
    }
    if balancer.upstreams.finished(index, relayed.answered, silent) {
        eprintln!(
            "rinha-lb: upstream {} sent nothing for {} ms after a client's request; skipped \
             until it answers a probe",
            balancer.upstreams.addr(index),
            config.answer_timeout.unwrap_or_default().as_millis()
        );
    }
    if let RelayEnd::Clean(pipes) = relayed.end {
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
///
/// While every relay the open-files limit leaves room for is busy, a client waits here holding
/// only its socket, and takes pipes once one ends: the relay it returns is its own.
async fn first_bytes<'a>(
    client: &Stream,
    local: &'a Local,
    wait: Duration,
) -> Option<(PipeSet, usize, Relay<'a>)> {
    let deadline = Instant::now() + wait;
    loop {
        // Free at once but at saturation: no timer then.
        let relay = match local.relays.try_take() {
            Some(relay) => relay,
            None => match monoio::time::timeout_at(deadline, local.relays.take()).await {
                Ok(relay) => relay,
                Err(_) => {
                    client.shut_down_now();
                    local.metrics.unserved();
                    return None;
                }
            },
        };
        let pooled = local.pipes.borrow_mut().pop();
        let pipes = match pooled.map_or_else(|| PipeSet::new(local.splice), Ok) {
            Ok(pipes) => pipes,
            // Out of descriptors for a moment (on io_uring the sockets of ended connections
            // close a moment after they stop being counted): wait, as accepting does.
            Err(error) if is_descriptor_shortage(&error) && Instant::now() < deadline => {
                monoio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
            Err(_) => return None,
        };
        match try_read_first(client, &pipes) {
            Ok(Some(pending)) => return Some((pipes, pending, relay)),
            // Nothing yet: the pipes and the relay go back while the client is silent.
            Ok(None) => {
                local.give_back(pipes);
                drop(relay);
            }
            Err(_) => {
                local.give_back(pipes);
                return None;
            }
        }
        match monoio::time::timeout_at(deadline, client.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                // The dropped wait is cancelled in the ring, and the shutdown completes it
                // wherever the cancellation is not honoured: the socket closes now, not when
                // the silent client next sends.
                client.shut_down_now();
                return None;
            }
        }
    }
}

/// The relays of one worker, at most `max` at once (each holds an upstream socket and two
/// pipes: the open-files limit sizes `max`). A client that finds them all busy waits for one.
struct Relays {
    max: usize,
    count: Cell<usize>,
    /// Clients waiting for a relay; every one is woken when a relay ends, and looks again.
    waiters: RefCell<Vec<Waker>>,
}

impl Relays {
    fn new(max: usize) -> Relays {
        assert!(max >= 1, "room for a relay");
        Relays {
            max,
            count: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// Waits until fewer than `max` relays run, then counts one more until the returned
    /// guard is dropped.
    async fn take(&self) -> Relay<'_> {
        std::future::poll_fn(|context| match self.try_take() {
            Some(relay) => Poll::Ready(relay),
            None => {
                self.waiters.borrow_mut().push(context.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// A relay if one is free now.
    fn try_take(&self) -> Option<Relay<'_>> {
        let count = self.count.get();
        (count < self.max).then(|| {
            self.count.set(count + 1);
            Relay(self)
        })
    }
}

/// One relay of [`Relays`], counted until dropped.
struct Relay<'a>(&'a Relays);

impl Drop for Relay<'_> {
    fn drop(&mut self) {
        let relays = self.0;
        relays.count.set(relays.count.get() - 1);
        let waiters = std::mem::take(&mut *relays.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Local {
    /// Keeps an empty pipe set for a later connection, up to the pool's size.
    fn give_back(&self, pipes: PipeSet) {
        let mut pool = self.pipes.borrow_mut();
        if pool.len() < POOLED_PIPE_SETS_MAX {
            pool.push(pipes);
        }
    }
}

/// Tries the upstreams in round-robin order, skipping those in back-off, each at most once;
/// the stream and the upstream's index.
async fn connect_upstream(balancer: &Balancer, metrics: &WorkerMetrics) -> Option<(Stream, usize)> {
    let upstreams = &balancer.upstreams;
    let plan = upstreams.plan(balancer.config.attempts_max);
    let connect =
        |addr| monoio::time::timeout(balancer.config.connect_timeout, Stream::connect(addr));
    for &index in plan.indices() {
        let addr = upstreams.addr(index);
        let mut connected = connect(addr).await;
        if matches!(&connected, Ok(Err(error)) if is_descriptor_shortage(error)) {
            // Out of descriptors for a moment: the same upstream once more after a pause.
            monoio::time::sleep(ACCEPT_PAUSE).await;
            connected = connect(addr).await;
        }
        match connected {
            Ok(Ok(stream)) => {
                upstreams.mark_up(index);
                metrics.picked(index);
                return Some((stream, index));
            }
            Ok(Err(error)) if !is_upstream_fault(&error) => metrics.failed(index),
            Ok(Err(_)) | Err(_) => {
                metrics.failed(index);
                upstreams.mark_down(index);
            }
        }
        upstreams.connect_failed(index);
    }
    None
}

/// Whether an error says this process is out of descriptors (its own limit, or the system's).
fn is_descriptor_shortage(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
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
