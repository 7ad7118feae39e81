//! Thread-per-core workers, each with its own monoio runtime, and the main thread that waits
//! for SIGTERM/SIGINT and then shuts them down.
//!
//! The main thread blocks the signals before it starts any worker, so every worker inherits the
//! blocked mask and only the main thread's `sigwait` ever sees them; no handler runs at an
//! arbitrary point of a worker. A worker that stops on its own (an error, a panic) wakes the
//! main thread with SIGUSR1, which is in the same blocked set.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::{build_runtime, Driver, DriverPref};
use crate::listen::Listener;

/// How often a worker waiting on [`Shutdown::wait`] looks at the flag.
const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long the main thread waits for every worker to report its runtime is built.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, after its drain, a worker may take to end its runtime (its tasks dropped, its
/// descriptors closed). A server's shutdown grace is its drain bound plus this.
pub const RUNTIME_END_MARGIN: Duration = Duration::from_secs(1);

/// How the workers are started.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// Thread name prefix; worker `i` is named `<name>-w<i>`.
    pub name: String,
    /// Number of worker threads, at least 1.
    pub workers: usize,
    /// Driver preference, usually `--driver` ([`crate::flags::ServerArgs`]).
    pub driver: DriverPref,
    /// How long workers get to finish in-flight work after shutdown is asked; those still
    /// running then die with the process. Each server derives it from its drain bound and
    /// [`RUNTIME_END_MARGIN`].
    pub shutdown_grace: Duration,
}

/// Everything one worker receives.
#[derive(Debug)]
pub struct WorkerContext {
    /// This worker's index, from 0.
    pub index: usize,
    /// How many workers there are.
    pub workers: usize,
    /// The driver this worker's runtime uses.
    pub driver: Driver,
    /// This worker's listeners, one per listen address in order; attach them with
    /// [`Listener::into_monoio`].
    pub listeners: Vec<Listener>,
    /// Fires when the process is asked to stop.
    pub shutdown: Shutdown,
}

/// A cheap, cloneable "please stop" flag shared by all workers.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A flag not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
    }

    /// True once shutdown was asked.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves once shutdown was asked. It checks the flag every 50 ms on the runtime's timer,
    /// which costs nothing measurable and needs no cross-thread waker.
    pub async fn wait(&self) {
        while !self.is_triggered() {
            monoio::time::sleep(SHUTDOWN_POLL_INTERVAL).await;
        }
    }
}

/// Why the process could not start or did not stop cleanly.
#[derive(Debug)]
pub enum LaunchError {
    /// A worker could not build its runtime (for example io_uring forced where it is refused).
    Runtime {
        /// The worker index.
        worker: usize,
        /// The error text.
        error: String,
    },
    /// A worker could not be started as a thread.
    Thread(std::io::Error),
    /// A worker did not report within the startup timeout.
    StartupTimeout,
    /// A worker's future returned an error, panicked, or returned before shutdown was asked.
    WorkerFailed {
        /// The worker index.
        worker: usize,
        /// What happened.
        error: String,
    },
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Runtime { worker, error } => {
                write!(f, "worker {worker}: cannot build runtime: {error}")
            }
            LaunchError::Thread(error) => write!(f, "cannot start worker thread: {error}"),
            LaunchError::StartupTimeout => write!(f, "workers did not start in time"),
            LaunchError::WorkerFailed { worker, error } => write!(f, "worker {worker}: {error}"),
        }
    }
}

impl std::error::Error for LaunchError {}

/// What a worker thread tells the main thread.
enum WorkerEvent {
    Ready {
        worker: usize,
        driver: Driver,
    },
    Exited {
        worker: usize,
        result: Result<(), String>,
    },
}

/// Running workers, started by [`spawn_workers`].
pub struct Workers {
    shutdown: Shutdown,
    events: mpsc::Receiver<WorkerEvent>,
    handles: Vec<std::thread::JoinHandle<()>>,
    exited: Vec<bool>,
    drivers: Vec<Driver>,
    failure: Option<LaunchError>,
}

/// Starts the workers, blocks the stop signals in this thread first (workers inherit the mask),
/// calls `on_started` with the driver once every runtime is built, waits for SIGTERM or SIGINT,
/// then shuts the workers down within the grace period. Returns an error when startup fails or a
/// worker failed; the caller prints it and exits non-zero.
///
/// Call it from the main thread before starting any other thread: a thread started earlier
/// would not have the signals blocked, and the kernel could deliver SIGTERM to it, killing the
/// process with the default action instead of a clean stop.
pub fn launch<F, Fut, E>(
    options: LaunchOptions,
    listeners: Vec<Vec<Listener>>,
    make_worker: F,
    on_started: impl FnOnce(Driver),
) -> Result<(), LaunchError>
where
    F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: fmt::Display,
{
    let signals = crate::signals::block_stop_signals();
    let grace = options.shutdown_grace;
    let mut workers = start(options, listeners, make_worker, crate::signals::wake_main)?;
    on_started(workers.driver());
    loop {
        let signal = crate::signals::wait(&signals);
        if signal != libc::SIGUSR1 || workers.any_exited() {
            break;
        }
    }
    workers.stop(grace)
}

/// Starts the workers and waits until each has built its runtime, without touching the
/// process's signals: for tests and embedders that stop the workers themselves
/// ([`Workers::stop`]).
pub fn spawn_workers<F, Fut, E>(
    options: LaunchOptions,
    listeners: Vec<Vec<Listener>>,
    make_worker: F,
) -> Result<Workers, LaunchError>
where
    F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: fmt::Display,
{
    start(options, listeners, make_worker, || {})
}

/// Starts the workers and waits until each has built its runtime; a worker that ends calls
/// `on_exit` after reporting ([`launch`] wakes its main thread with it).
fn start<F, Fut, E>(
    options: LaunchOptions,
    listeners: Vec<Vec<Listener>>,
    make_worker: F,
    on_exit: fn(),
) -> Result<Workers, LaunchError>
where
    F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: fmt::Display,
{
    let count = options.workers.max(1);
    assert!(listeners.is_empty() || listeners.len() == count);
    let make_worker = Arc::new(make_worker);
    let shutdown = Shutdown::new();
    let (sender, events) = mpsc::channel();
    let mut listeners = listeners.into_iter();
    let mut workers = Workers {
        shutdown,
        events,
        handles: Vec::new(),
        exited: vec![false; count],
        drivers: Vec::new(),
        failure: None,
    };
    for index in 0..count {
        let seat = Seat {
            index,
            count,
            pref: options.driver,
            listeners: listeners.next().unwrap_or_default(),
            shutdown: workers.shutdown.clone(),
            sender: sender.clone(),
            on_exit,
        };
        let make_worker = Arc::clone(&make_worker);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-w{index}", options.name))
            .spawn(move || seat.run(&*make_worker));
        match spawned {
            Ok(handle) => workers.handles.push(handle),
            Err(error) => {
                workers.shutdown.trigger();
                return Err(LaunchError::Thread(error));
            }
        }
    }
    workers.wait_ready()?;
    Ok(workers)
}

/// What one worker thread needs to start.
struct Seat {
    index: usize,
    count: usize,
    pref: DriverPref,
    listeners: Vec<Listener>,
    shutdown: Shutdown,
    sender: mpsc::Sender<WorkerEvent>,
    on_exit: fn(),
}

impl Seat {
    fn run<F, Fut, E>(self, make_worker: &F)
    where
        F: Fn(WorkerContext) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let mut report = ExitReport {
            worker: self.index,
            sender: self.sender.clone(),
            result: None,
            on_exit: self.on_exit,
        };
        let (mut runtime, driver) = match build_runtime(self.pref) {
            Ok(built) => built,
            Err(error) => {
                report.result = Some(Err(format!("cannot build runtime: {error}")));
                return;
            }
        };
        let _ = self.sender.send(WorkerEvent::Ready {
            worker: self.index,
            driver,
        });
        let context = WorkerContext {
            index: self.index,
            workers: self.count,
            driver,
            listeners: self.listeners,
            shutdown: self.shutdown.clone(),
        };
        let result = runtime.block_on(make_worker(context));
        report.result = Some(match result {
            Ok(()) if self.shutdown.is_triggered() => Ok(()),
            Ok(()) => Err("worker returned before shutdown was asked".to_string()),
            Err(error) => Err(error.to_string()),
        });
    }
}

/// Sends the worker's end to the main thread when dropped, so a panic is reported too.
struct ExitReport {
    worker: usize,
    sender: mpsc::Sender<WorkerEvent>,
    result: Option<Result<(), String>>,
    on_exit: fn(),
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let result = self
            .result
            .take()
            .unwrap_or_else(|| Err("worker panicked".to_string()));
        let _ = self.sender.send(WorkerEvent::Exited {
            worker: self.worker,
            result,
        });
        (self.on_exit)();
    }
}

impl Workers {
    /// The shutdown flag the workers watch.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    fn wait_ready(&mut self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut ready = vec![None; self.exited.len()];
        while ready.iter().any(Option::is_none) {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(timeout) {
                Ok(WorkerEvent::Ready { worker, driver }) => ready[worker] = Some(driver),
                Ok(WorkerEvent::Exited { worker, result }) if ready[worker].is_some() => {
                    // It started and already ended; `launch` sees it on its first check.
                    self.record(WorkerEvent::Exited { worker, result });
                }
                Ok(WorkerEvent::Exited { worker, result }) => {
                    self.exited[worker] = true;
                    let error = result
                        .err()
                        .unwrap_or_else(|| "exited during startup".into());
                    self.shutdown.trigger();
                    return Err(LaunchError::Runtime { worker, error });
                }
                Err(_) => {
                    self.shutdown.trigger();
                    return Err(LaunchError::StartupTimeout);
                }
            }
        }
        self.drivers = ready.into_iter().flatten().collect();
        Ok(())
    }

    /// The driver in use. Workers build their runtimes independently; should one of them have
    /// fallen back to epoll while another got io_uring, epoll is reported, the weaker claim.
    pub fn driver(&self) -> Driver {
        if self.drivers.contains(&Driver::Epoll) {
            Driver::Epoll
        } else {
            Driver::IoUring
        }
    }

    /// Collects pending exit reports; true when some worker has ended.
    pub fn any_exited(&mut self) -> bool {
        while let Ok(event) = self.events.try_recv() {
            self.record(event);
        }
        self.exited.iter().any(|&exited| exited)
    }

    fn record(&mut self, event: WorkerEvent) {
        if let WorkerEvent::Exited { worker, result } = event {
            self.exited[worker] = true;
            if let Err(error) = result {
                if self.failure.is_none() {
                    self.failure = Some(LaunchError::WorkerFailed { worker, error });
                }
            }
        }
    }

    /// Asks every worker to stop and waits up to `grace` for them. Workers still running after
    /// that are left to die with the process. Returns the first worker failure, if any.
    pub fn stop(mut self, grace: Duration) -> Result<(), LaunchError> {
        self.shutdown.trigger();
        let deadline = Instant::now() + grace;
        while self.exited.iter().any(|&exited| !exited) {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(timeout) {
                Ok(event) => self.record(event),
                Err(_) => break,
            }
        }
        let handles = std::mem::take(&mut self.handles);
        for (handle, exited) in handles.into_iter().zip(self.exited.iter()) {
            if *exited {
                let _ = handle.join();
            }
        }
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::listen::bind_listeners;
    use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};

    #[derive(Debug)]
    struct Failure(&'static str);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    fn options(workers: usize, driver: DriverPref) -> LaunchOptions {
        LaunchOptions {
            name: "rt-test".to_string(),
            workers,
            driver,
            shutdown_grace: RUNTIME_END_MARGIN,
        }
    }

    /// Every worker serves an echo of one byte on its listener until shutdown.
    async fn echo_worker(context: WorkerContext) -> Result<(), Failure> {
        let mut listeners = context.listeners;
        let listener = listeners
            .pop()
            .unwrap()
            .into_monoio()
            .map_err(|_| Failure("attach"))?;
        loop {
            monoio::select! {
                accepted = listener.accept() => {
                    let mut stream = accepted.map_err(|_| Failure("accept"))?;
                    let (result, buf) = stream.read_exact(vec![0u8; 1]).await;
                    result.map_err(|_| Failure("read"))?;
                    let (result, _) = stream.write_all(buf).await;
                    result.map_err(|_| Failure("write"))?;
                }
                _ = context.shutdown.wait() => return Ok(()),
            }
        }
    }

    fn check_serves_and_stops(driver: DriverPref) {
        let sets = bind_listeners(&[Addr::parse("127.0.0.1:0").unwrap()], 2).unwrap();
        let Addr::Tcp(addr) = sets[0][0].local_addr().unwrap() else {
            unreachable!()
        };
        let workers = spawn_workers(options(2, driver), sets, echo_worker).unwrap();
        if driver == DriverPref::Epoll {
            assert_eq!(workers.driver(), Driver::Epoll);
        }
        for round in 0..20u8 {
            use std::io::{Read, Write};
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            client.write_all(&[round]).unwrap();
            let mut answer = [0u8; 1];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(answer[0], round);
        }
        let started = Instant::now();
        workers.stop(Duration::from_secs(3)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn serves_and_stops_epoll() {
        check_serves_and_stops(DriverPref::Epoll);
    }

    #[test]
    fn serves_and_stops_auto() {
        check_serves_and_stops(DriverPref::Auto);
    }

    #[test]
    fn worker_error_is_reported() {
        let make = |context: WorkerContext| async move {
            if context.index == 1 {
                return Err(Failure("boom"));
            }
            context.shutdown.wait().await;
            Ok(())
        };
        let mut workers = spawn_workers(options(2, DriverPref::Epoll), Vec::new(), make).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !workers.any_exited() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        match workers.stop(Duration::from_secs(3)) {
            Err(LaunchError::WorkerFailed { worker: 1, error }) => assert_eq!(error, "boom"),
            other => panic!("expected a failure of worker 1, got {other:?}"),
        }
    }
}
