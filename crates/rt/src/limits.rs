//! Process resource limits: the open-files limit, the descriptor table, and how many
//! connections per worker the open-files limit leaves room for.
//!
//! Every server sizes its connection cap from the limit at start
//! ([`cap_connections`]): each worker may serve as many connections as the descriptors left
//! after what the process holds anyway (its [`DescriptorBudget`]) allow, and never more than the
//! server asked for. A server whose limit leaves room for almost nothing refuses to start
//! ([`DescriptorShortage`]) rather than serve a trickle and fail its clients with EMFILE.

use std::fmt;

/// Descriptors every process holds from its start: standard input, output and error (stderr is
/// a server's log; the others may be `/dev/null`, but they are open).
pub const STDIO_DESCRIPTORS: u64 = 3;

/// Descriptors of one listen address on one worker: its listening socket (a TCP address is
/// bound once per worker with SO_REUSEPORT, a Unix one duplicated for each worker; see
/// `listen.rs`).
pub const LISTENER_DESCRIPTORS: u64 = 1;

/// Descriptors of one worker's runtime: its io_uring, or its epoll instance on the fallback
/// driver. monoio is built without its `sync` feature, so no eventfd for wakeups from other
/// threads comes with either.
pub const RUNTIME_DESCRIPTORS: u64 = 1;

/// Descriptors of the metrics listener, when a server has one (`--metrics`): the listening
/// socket and the one scrape it answers at a time (rinha-metrics answers them one by one).
pub const METRICS_DESCRIPTORS: u64 = 2;

/// Descriptors kept free for what no other line counts: those a parent process left open
/// without close-on-exec, and the socket of a connection that closes a moment after it stopped
/// being counted (on io_uring a socket closes once the runtime has the result of the last
/// operation on it, cancelled or not).
pub const MARGIN_DESCRIPTORS: u64 = 8;

/// Fewest connections per worker a server starts with, unless it asked for fewer. A limit
/// that leaves room for fewer is a mistake (a shell, unit or container that left the open-files
/// limit at a few dozen), and serving clients one or two at a time would look like an outage:
/// the server says so at start and exits instead.
pub const CONNECTIONS_PER_WORKER_MIN: usize = 4;

/// Descriptors a server holds: what each connection holds at most, what each worker holds
/// whatever its connections, and what the process holds once. Each server builds its own from
/// the constants above and its own per-connection and storage figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// Descriptors one open connection holds at most (at least 1: its socket).
    pub connection_descriptors: u64,
    /// Descriptors each worker holds besides its connections.
    pub worker_descriptors: u64,
    /// Descriptors the process holds besides its workers.
    pub process_descriptors: u64,
}

impl DescriptorBudget {
    /// What every server of this crate holds: standard I/O and the margin for the process; per
    /// worker, a listener for each of its `listen_addresses` and its runtime.
    pub fn server(connection_descriptors: u64, listen_addresses: usize) -> DescriptorBudget {
        let listeners = u64::try_from(listen_addresses).unwrap_or(u64::MAX);
        DescriptorBudget {
            connection_descriptors,
            worker_descriptors: listeners
                .saturating_mul(LISTENER_DESCRIPTORS)
                .saturating_add(RUNTIME_DESCRIPTORS),
            process_descriptors: STDIO_DESCRIPTORS + MARGIN_DESCRIPTORS,
        }
    }

    /// The same, plus the metrics listener.
    pub fn with_metrics(self) -> DescriptorBudget {
        DescriptorBudget {
            process_descriptors: self.process_descriptors.saturating_add(METRICS_DESCRIPTORS),
            ..self
        }
    }

    /// Descriptors the process holds besides its connections when it runs `workers` workers.
    pub fn besides_connections(&self, workers: usize) -> u64 {
        let workers = u64::try_from(workers).unwrap_or(u64::MAX);
        self.process_descriptors
            .saturating_add(workers.saturating_mul(self.worker_descriptors))
    }
}

/// How many connections each of `workers` workers can hold open under the open-files limit
/// `nofile` (the soft limit in force; `None` when there is none) with every connection holding
/// the most `budget` says it may: the descriptors left after what the process holds besides its
/// connections, shared evenly between the workers (each worker caps its own connections).
/// `None` when the limit bounds nothing. The kernel hands out the lowest free descriptor, so
/// `nofile` descriptors can be open at once, and an exact fit counts.
pub fn connections_per_worker_fit(
    nofile: Option<u64>,
    budget: DescriptorBudget,
    workers: usize,
) -> Option<usize> {
    assert!(workers >= 1, "a server has at least one worker");
    assert!(
        budget.connection_descriptors >= 1,
        "a connection holds at least its socket"
    );
    let room = nofile?.saturating_sub(budget.besides_connections(workers));
    let workers = u64::try_from(workers).unwrap_or(u64::MAX);
    let fit = room / workers / budget.connection_descriptors;
    Some(usize::try_from(fit).unwrap_or(usize::MAX))
}

/// A worker's connection cap, after the open-files limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionsCap {
    /// Open connections each worker serves at most: what the server asked for, or fewer when
    /// the limit leaves no room for them.
    pub connections_max: usize,
    /// What the server asked for (a flag, or its own constant).
    pub asked: usize,
    /// The open-files limit the cap was sized from; `None` when there is none.
    pub nofile: Option<u64>,
}

impl ConnectionsCap {
    /// Whether the limit lowered the cap below what was asked.
    pub fn lowered(&self) -> bool {
        self.connections_max < self.asked
    }
}

/// The startup line's words: `connections-max=N`, and why when it was lowered:
/// `connections-max=1704 (lowered from 16384: 10240 open files)`.
impl fmt::Display for ConnectionsCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connections-max={}", self.connections_max)?;
        match self.nofile {
            Some(nofile) if self.lowered() => {
                write!(f, " (lowered from {}: {nofile} open files)", self.asked)
            }
            _ => Ok(()),
        }
    }
}

/// The open-files limit leaves room for fewer than [`CONNECTIONS_PER_WORKER_MIN`] connections
/// per worker (and fewer than were asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorShortage {
    /// The open-files limit in force.
    pub nofile: u64,
    /// The connections per worker it leaves room for.
    pub fit: usize,
    /// The workers it was shared between.
    pub workers: usize,
    /// What the server holds.
    pub budget: DescriptorBudget,
}

impl fmt::Display for DescriptorShortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the open-files limit ({} open files) leaves room for {} per worker, fewer than \
             {CONNECTIONS_PER_WORKER_MIN}: each connection needs {} and the process holds {} \
             besides ({}); raise the limit (ulimit -n, or nofile in the container's ulimits) or \
             run fewer workers",
            self.nofile,
            counted(self.fit as u64, "connection"),
            counted(self.budget.connection_descriptors, "descriptor"),
            self.budget.besides_connections(self.workers),
            counted(self.workers as u64, "worker"),
        )
    }
}

/// `1 worker`, `2 workers`.
fn counted(count: u64, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

impl std::error::Error for DescriptorShortage {}

/// The connection cap of each of `workers` workers: `asked`, lowered to what the open-files
/// limit `nofile` leaves room for ([`connections_per_worker_fit`]), never raised. Fails when
/// the room is smaller than both `asked` and [`CONNECTIONS_PER_WORKER_MIN`].
pub fn cap_connections(
    asked: usize,
    nofile: Option<u64>,
    budget: DescriptorBudget,
    workers: usize,
) -> Result<ConnectionsCap, DescriptorShortage> {
    let fit = connections_per_worker_fit(nofile, budget, workers);
    let connections_max = fit.map_or(asked, |fit| fit.min(asked));
    match (nofile, fit) {
        (Some(nofile), Some(fit)) if fit < asked.min(CONNECTIONS_PER_WORKER_MIN) => {
            Err(DescriptorShortage {
                nofile,
                fit,
                workers,
                budget,
            })
        }
        _ => Ok(ConnectionsCap {
            connections_max,
            asked,
            nofile,
        }),
    }
}

/// Raises the soft open-files limit to the hard limit, so a server is bounded by the operator's
/// hard limit rather than the distribution's small default soft limit. Returns the soft limit
/// now in force (`None`: unlimited).
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        // Refusal (a seccomp profile, an odd container runtime) leaves the old limit in force.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current
}

/// Descriptor-table slots a server reserves at start ([`reserve_descriptor_table`]): room for
/// about 2,700 relayed connections of the balancer (two sockets and two pipes each) before the
/// table grows again. 16,384 slots cost 128 KiB.
pub const DESCRIPTOR_TABLE_RESERVED: u64 = 16_384;

/// Grows the process's descriptor table to `slots` (capped by the soft open-files limit) while
/// the process is still single-threaded. Call it before any thread starts.
///
/// The kernel grows the table by doubling when a descriptor beyond its end is opened, and in a
/// multi-threaded process every growth waits for an RCU grace period inside the system call
/// that opened the descriptor. In the balancer that stalled the worker thread for 10-25 ms at
/// 64, 128, 256... open descriptors, the first time a burst of clients arrived after start
/// (rinha-lb's max latency in the first seconds was 10-22 ms against nginx's 2-4). A table grown
/// before any other thread exists costs no grace period. Best effort: a closed stderr or a
/// refusal leaves the table as it was.
pub fn reserve_descriptor_table(slots: u64) {
    use rustix::process::{getrlimit, Resource};
    let limit = getrlimit(Resource::Nofile).current.unwrap_or(slots);
    let Ok(highest) = rustix::fd::RawFd::try_from(slots.min(limit).saturating_sub(1)) else {
        return;
    };
    // The lowest free descriptor at or above `highest`: opening it grows the table to cover
    // it, closing it leaves the table grown (tables never shrink).
    if let Ok(probe) = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), highest) {
        drop(probe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget with round figures: 6 descriptors a connection, 2 a worker, 10 the process.
    const BUDGET: DescriptorBudget = DescriptorBudget {
        connection_descriptors: 6,
        worker_descriptors: 2,
        process_descriptors: 10,
    };

    #[test]
    fn connections_per_worker_fit_table() {
        #[track_caller]
        fn check(
            nofile: Option<u64>,
            budget: DescriptorBudget,
            workers: usize,
            expected: Option<usize>,
        ) {
            assert_eq!(
                connections_per_worker_fit(nofile, budget, workers),
                expected
            );
        }
        // No limit, nothing to fit.
        check(None, BUDGET, 1, None);
        check(None, BUDGET, 64, None);
        // A limit below what the process holds anyway, or just at it: no room at all.
        check(Some(0), BUDGET, 1, Some(0));
        check(Some(11), BUDGET, 1, Some(0));
        check(Some(12), BUDGET, 1, Some(0));
        // Exact fits, and one descriptor short of them.
        check(Some(18), BUDGET, 1, Some(1));
        check(Some(17), BUDGET, 1, Some(0));
        check(Some(12 + 6 * 1000), BUDGET, 1, Some(1000));
        check(Some(12 + 6 * 1000 - 1), BUDGET, 1, Some(999));
        // Workers share the room evenly, each after its own descriptors.
        check(Some(10 + 2 * 2 + 2 * 6 * 500), BUDGET, 2, Some(500));
        check(Some(10 + 2 * 2 + 2 * 6 * 500 - 1), BUDGET, 2, Some(499));
        check(Some(10240), BUDGET, 4, Some(425));
        check(Some(10), BUDGET, 4, Some(0));
        // 10,240 files for one worker with 6 descriptors a connection and 4 besides.
        let lean = DescriptorBudget {
            worker_descriptors: 1,
            process_descriptors: 3,
            ..BUDGET
        };
        check(Some(10240), lean, 1, Some(1706));
        // One descriptor a connection (the API), and the largest limits do not overflow.
        let api = DescriptorBudget {
            connection_descriptors: 1,
            ..BUDGET
        };
        check(Some(1024), api, 2, Some(505));
        check(Some(u64::MAX), api, 1, Some((u64::MAX - 12) as usize));
        check(Some(u64::MAX), BUDGET, usize::MAX, Some(0));
    }

    #[test]
    fn cap_connections_table() {
        #[track_caller]
        fn check(asked: usize, nofile: Option<u64>, workers: usize, expected: Result<&str, &str>) {
            let cap = cap_connections(asked, nofile, BUDGET, workers);
            let text = cap.map(|cap| cap.to_string()).map_err(|e| e.to_string());
            match (text, expected) {
                (Ok(text), Ok(expected)) => assert_eq!(text, expected),
                (Err(text), Err(expected)) => assert!(text.starts_with(expected), "{text}"),
                (text, expected) => panic!("{text:?}, expected {expected:?}"),
            }
        }
        // Room for all that was asked: the cap stays, and the line says only the cap.
        check(16384, None, 2, Ok("connections-max=16384"));
        check(16384, Some(1 << 20), 2, Ok("connections-max=16384"));
        check(1000, Some(12 + 6 * 1000), 1, Ok("connections-max=1000"));
        // Never raised above what was asked, however much room there is.
        check(1, Some(1 << 20), 1, Ok("connections-max=1"));
        // Lowered, with why.
        check(
            1001,
            Some(12 + 6 * 1000),
            1,
            Ok("connections-max=1000 (lowered from 1001: 6012 open files)"),
        );
        check(
            16384,
            Some(10240),
            4,
            Ok("connections-max=425 (lowered from 16384: 10240 open files)"),
        );
        // The fewest a server starts with, and one fewer.
        check(
            16384,
            Some(12 + 6 * 4),
            1,
            Ok("connections-max=4 (lowered from 16384: 36 open files)"),
        );
        check(
            16384,
            Some(12 + 6 * 4 - 1),
            1,
            Err(
                "the open-files limit (35 open files) leaves room for 3 connections per worker, \
                 fewer than 4: each connection needs 6 descriptors and the process holds 12 \
                 besides (1 worker); raise the limit",
            ),
        );
        check(
            16384,
            Some(40),
            2,
            Err("the open-files limit (40 open files) leaves room for 2 "),
        );
        check(
            16384,
            Some(3),
            1,
            Err("the open-files limit (3 open files) leaves room for 0 "),
        );
        // Fewer than the minimum is fine when that is all the server asked for and it fits.
        check(2, Some(12 + 6 * 2), 1, Ok("connections-max=2"));
        check(
            2,
            Some(12 + 6 * 2 - 1),
            1,
            Err("the open-files limit (23 open files) leaves room for 1 connection per worker, "),
        );
        // One descriptor a connection (the API), two workers.
        let api = DescriptorBudget {
            connection_descriptors: 1,
            ..BUDGET
        };
        let shortage = cap_connections(4096, Some(20), api, 2).unwrap_err();
        assert_eq!(
            shortage.to_string(),
            "the open-files limit (20 open files) leaves room for 3 connections per worker, fewer \
             than 4: each connection needs 1 descriptor and the process holds 14 besides (2 \
             workers); raise the limit (ulimit -n, or nofile in the container's ulimits) or run \
             fewer workers"
        );
    }

    #[test]
    fn server_budget_counts_listeners_runtime_stdio_margin_and_metrics() {
        let budget = DescriptorBudget::server(6, 2);
        assert_eq!(budget.connection_descriptors, 6);
        assert_eq!(
            budget.worker_descriptors,
            2 * LISTENER_DESCRIPTORS + RUNTIME_DESCRIPTORS
        );
        assert_eq!(
            budget.process_descriptors,
            STDIO_DESCRIPTORS + MARGIN_DESCRIPTORS
        );
        let metered = budget.with_metrics();
        assert_eq!(
            metered.process_descriptors,
            budget.process_descriptors + METRICS_DESCRIPTORS
        );
        assert_eq!(
            metered.besides_connections(3),
            metered.process_descriptors + 3 * 3
        );
    }

    #[test]
    fn raised_limit_is_readable() {
        let limit = super::raise_nofile_limit();
        assert!(limit.is_none_or(|n| n >= 64));
    }

    #[test]
    fn descriptor_table_is_grown() {
        fn table_size() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
            line["FDSize:".len()..].trim().parse().unwrap()
        }
        let limit = super::raise_nofile_limit().unwrap_or(1024);
        let wanted = 4096.min(limit);
        super::reserve_descriptor_table(wanted);
        assert!(table_size() >= wanted, "FDSize {} < {wanted}", table_size());
    }
}
