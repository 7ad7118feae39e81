//! The accept loop both servers run on each worker, its connection cap, and the counters the
//! drain waits on.
//!
//! A worker accepts on each of its listeners until shutdown is asked and serves every client
//! in a task of its own, which holds a [`LiveGuard`] counting it as open. What differs between
//! the servers is a parameter, [`AcceptPolicy`]: the API closes a client beyond its cap at
//! once while the balancer leaves it in the listen backlog, each maps accept errors to pauses
//! in its own way, and the balancer takes nonblocking sockets on io_uring. Once accepting has
//! stopped, a server drains by waiting, bounded, for a [`LiveCount`] to reach zero: the open
//! connections (balancer) or the requests in flight (API).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use crate::launch::Shutdown;
use crate::listen::AsyncListener;
use crate::stream::Stream;

/// How often an accept loop at its connection cap checks whether a slot freed up.
const CAP_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// How often [`LiveCount::drained`] checks whether the count has reached zero.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How a worker accepts, and what it does with the clients it cannot serve.
#[derive(Clone, Copy, Debug)]
pub struct AcceptPolicy {
    /// Open connections the worker serves at most.
    pub connections_max: usize,
    /// What becomes of a client that arrives while `connections_max` are open.
    pub when_full: WhenFull,
    /// How the sockets are accepted.
    pub sockets: Sockets,
    /// How long accepting pauses after a failed accept; `None` accepts again at once. The
    /// errors are the listener's (EMFILE, ECONNABORTED...), as they come.
    pub pause_after: fn(&io::Error) -> Option<Duration>,
    /// Whether each listener is shut down as soon as it stops accepting. Dropping a listener
    /// does not close it while the runtime still holds its descriptor for an operation the
    /// accept loop left in flight (on io_uring), and until then the kernel queues new clients
    /// on it that nobody will accept; shutting it down refuses them at once.
    pub shut_listeners: bool,
}

/// What becomes of a client that arrives while the worker is at its cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Accept it and close it at once: the client learns at once and may retry, and the
    /// worker's memory stays bounded.
    Close,
    /// Stop accepting until a connection ends: the client waits in the listen backlog.
    Wait,
}

/// How sockets are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sockets {
    /// With the runtime's accept ([`AsyncListener::accept`]): nonblocking on epoll, blocking
    /// on io_uring, as monoio's own operations expect there.
    Runtime,
    /// Nonblocking, with [`AsyncListener::accept_nonblocking`], for callers that drive the
    /// sockets with readiness waits and nonblocking system calls.
    Nonblocking,
}

/// Accepts on every listener (each in a task of its own) until `shutdown` fires, and runs
/// `serve(stream, open)` in a new task for each client, where `open` counts it in
/// `connections` until the task drops it. Every accepted TCP socket gets TCP_NODELAY first:
/// both servers send whole messages, which Nagle's algorithm would only delay.
///
/// Returns once every listener has stopped accepting and is closed (or only shut down, for as
/// long as the runtime holds its descriptor); the connections' tasks go on.
pub async fn accept_until_shutdown<F, Fut>(
    listeners: Vec<AsyncListener>,
    policy: AcceptPolicy,
    connections: &LiveCount,
    shutdown: &Shutdown,
    serve: F,
) where
    F: Fn(Stream, LiveGuard) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let acceptor = Rc::new(Acceptor {
        policy,
        connections: connections.clone(),
        shutdown: shutdown.clone(),
        serve,
    });
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| monoio::spawn(Rc::clone(&acceptor).run(listener)))
        .collect();
    for accept_loop in loops {
        let listener = accept_loop.await;
        if policy.shut_listeners {
            // ENOTCONN and the like would mean it is already out of service.
            let _ = rustix::net::shutdown(&listener, rustix::net::Shutdown::Read);
        }
    }
}

/// What every accept loop of one call shares.
struct Acceptor<F> {
    policy: AcceptPolicy,
    connections: LiveCount,
    shutdown: Shutdown,
    serve: F,
}

impl<F, Fut> Acceptor<F>
where
    F: Fn(Stream, LiveGuard) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    /// Accepts on `listener` until shutdown; gives the listener back for the caller to close.
    async fn run(self: Rc<Self>, listener: AsyncListener) -> AsyncListener {
        let mut stop = pin!(self.shutdown.wait());
        loop {
            monoio::select! {
                () = self.accept_one(&listener) => {}
                () = &mut stop => break,
            }
        }
        listener
    }

    /// Waits for room under the cap if the policy says so, accepts one client and starts
    /// serving it, or pauses after an error as the policy says.
    async fn accept_one(&self, listener: &AsyncListener) {
        let policy = &self.policy;
        if policy.when_full == WhenFull::Wait {
            while self.connections.count() >= policy.connections_max {
                monoio::time::sleep(CAP_POLL_INTERVAL).await;
            }
        }
        let accepted = match policy.sockets {
            Sockets::Runtime => listener.accept().await,
            Sockets::Nonblocking => listener.accept_nonblocking().await,
        };
        match accepted {
            Ok(stream) => self.admit(stream),
            Err(error) => {
                if let Some(pause) = (policy.pause_after)(&error) {
                    monoio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Starts serving an accepted client, or closes it at once when the policy says so.
    fn admit(&self, stream: Stream) {
        let full = self.connections.count() >= self.policy.connections_max;
        if full && self.policy.when_full == WhenFull::Close {
            return;
        }
        let _ = stream.set_nodelay(true);
        // Counted here, not when the task first runs, so a burst of accepts respects the cap.
        let open = self.connections.enter();
        monoio::spawn((self.serve)(stream, open));
    }
}

/// A count of live things on one worker thread: open connections, requests in flight. Each is
/// counted by holding the [`LiveGuard`] that [`LiveCount::enter`] returns, so it is counted once
/// and uncounted however its task ends.
#[derive(Clone, Debug, Default)]
pub struct LiveCount(Rc<Cell<usize>>);

impl LiveCount {
    /// A count at zero.
    pub fn new() -> LiveCount {
        LiveCount::default()
    }

    /// How many guards are alive.
    pub fn count(&self) -> usize {
        self.0.get()
    }

    /// Counts one more thing until the returned guard drops.
    pub fn enter(&self) -> LiveGuard {
        let count = self.0.get();
        self.0
            .set(count.checked_add(1).expect("a live count cannot overflow"));
        LiveGuard(Rc::clone(&self.0))
    }

    /// Waits until the count is zero, at most `timeout`; returns whether it reached zero.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            monoio::time::sleep(DRAIN_POLL_INTERVAL).await;
        }
        true
    }
}

/// One thing counted in a [`LiveCount`] until this guard drops.
///
/// A connection's guard drops with its task, and its socket closes with the task's stream: at
/// once on epoll; on io_uring within the runtime's next turns, once the operations still
/// pending on it have completed (the close waits for them). Every timeout shuts its socket
/// down before letting it go ([`Stream::shut_down_now`]), which completes them at once, so a
/// socket outlives its count by a turn at most; the descriptor budget's margin covers those
/// (`crate::limits`), and `crates/chaos/tests/{timeouts,abuse}.rs` see the descriptors back.
#[derive(Debug)]
#[must_use = "the thing stops being counted when the guard drops"]
pub struct LiveGuard(Rc<Cell<usize>>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let count = self.0.get();
        // Every guard was counted by `enter`; a zero here would mean the count lost track.
        assert!(count > 0, "a live guard outlived its count");
        self.0.set(count - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::driver::{build_runtime, DriverPref};
    use crate::launch::{spawn_workers, LaunchOptions, WorkerContext, RUNTIME_END_MARGIN};
    use crate::listen::bind_listeners;
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    #[test]
    fn live_count_counts_guards_and_drains() {
        let (mut runtime, _) = build_runtime(DriverPref::Epoll).unwrap();
        runtime.block_on(async {
            let live = LiveCount::new();
            let first = live.enter();
            let second = live.enter();
            assert_eq!(live.count(), 2);
            drop(first);
            assert_eq!(live.count(), 1);
            assert!(!live.drained(Duration::from_millis(20)).await);
            monoio::spawn(async move {
                monoio::time::sleep(Duration::from_millis(20)).await;
                drop(second);
            });
            assert!(live.drained(Duration::from_secs(5)).await);
            assert_eq!(live.count(), 0);
        });
    }

    /// Serves each client an echo of every byte until it hangs up.
    async fn echo(mut stream: Stream, _open: LiveGuard) {
        let mut buf = vec![0u8; 1];
        loop {
            let (read, back) = stream.read(buf).await;
            if !matches!(read, Ok(1)) {
                return;
            }
            let (written, back) = stream.write_all(back).await;
            if written.is_err() {
                return;
            }
            buf = back;
        }
    }

    fn never_pause(_: &io::Error) -> Option<Duration> {
        None
    }

    /// One worker with one TCP listener serving `echo` at most one client at a time, drained
    /// for up to 3 s after shutdown.
    fn start(when_full: WhenFull, shut_listeners: bool) -> (crate::launch::Workers, SocketAddr) {
        let sets = bind_listeners(&[Addr::parse("127.0.0.1:0").unwrap()], 1).unwrap();
        let Addr::Tcp(addr) = sets[0][0].local_addr().unwrap() else {
            unreachable!()
        };
        let policy = AcceptPolicy {
            connections_max: 1,
            when_full,
            sockets: Sockets::Runtime,
            pause_after: never_pause,
            shut_listeners,
        };
        let worker = move |context: WorkerContext| async move {
            let listeners: Vec<_> = context
                .listeners
                .into_iter()
                .map(|listener| listener.into_monoio())
                .collect::<io::Result<_>>()?;
            let connections = LiveCount::new();
            accept_until_shutdown(listeners, policy, &connections, &context.shutdown, echo).await;
            connections.drained(Duration::from_secs(3)).await;
            Ok::<(), io::Error>(())
        };
        let options = LaunchOptions {
            name: "rt-accept".to_string(),
            workers: 1,
            driver: DriverPref::Auto,
            shutdown_grace: RUNTIME_END_MARGIN,
        };
        (spawn_workers(options, sets, worker).unwrap(), addr)
    }

    /// Whether `client` echoes a byte within `wait`.
    fn echoes(client: &mut TcpStream, wait: Duration) -> bool {
        client.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        client.write_all(b"x").is_ok() && matches!(client.read(&mut byte), Ok(1))
    }

    #[test]
    fn a_client_beyond_the_cap_is_closed_at_once_when_full_says_close() {
        let (workers, addr) = start(WhenFull::Close, false);
        let mut first = TcpStream::connect(addr).unwrap();
        assert!(echoes(&mut first, Duration::from_secs(5)));
        let mut second = TcpStream::connect(addr).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(
            matches!(second.read(&mut byte), Ok(0) | Err(_)),
            "served beyond the cap"
        );
        drop(first);
        // The slot frees up once the first connection's task has seen it close.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut third = TcpStream::connect(addr).unwrap();
        while !echoes(&mut third, Duration::from_secs(5)) {
            assert!(std::time::Instant::now() < deadline, "the slot never freed");
            third = TcpStream::connect(addr).unwrap();
        }
        drop(third);
        workers.stop(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_client_beyond_the_cap_waits_when_full_says_wait() {
        let (workers, addr) = start(WhenFull::Wait, false);
        let mut first = TcpStream::connect(addr).unwrap();
        assert!(echoes(&mut first, Duration::from_secs(5)));
        let mut second = TcpStream::connect(addr).unwrap();
        assert!(
            !echoes(&mut second, Duration::from_millis(300)),
            "served beyond the cap"
        );
        drop(first);
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        second.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        drop(second);
        workers.stop(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn shut_listeners_refuse_new_clients_while_open_ones_finish() {
        // Under `WhenFull::Close` the loop has an accept in flight while the client is open,
        // which is what keeps a dropped listener open on io_uring.
        let (workers, addr) = start(WhenFull::Close, true);
        let mut open = TcpStream::connect(addr).unwrap();
        assert!(echoes(&mut open, Duration::from_secs(5)));
        workers.shutdown().trigger();
        // Shutdown is seen within 50 ms; the listener is out of service right after.
        std::thread::sleep(Duration::from_millis(300));
        assert!(TcpStream::connect(addr).is_err(), "a new client was queued");
        assert!(echoes(&mut open, Duration::from_secs(5)));
        drop(open);
        workers.stop(Duration::from_secs(5)).unwrap();
    }
}
