//! The connection-abuse suite (issue 20): clients that reset at every stage of a request,
//! half-close either way, send garbage, pipeline 20,000 requests (reading all the answers, or
//! none), or send a request one byte per write. Each attack runs against `rinha-api` alone and
//! against `rinha-lb` in front of two instances, on both I/O drivers, and for the balancer in
//! both splice modes: one `#[test]` per server, driver and mode, so that they run side by side
//! and a failure names them.
//!
//! Each attack asserts what its clients must see (the answers, their order, the close), and
//! after each one every server must let go of what the attack cost it: its open descriptors
//! come back to the figure measured after start and a warm-up, its resident memory stays within
//! a bound of that figure, it is still running, and a normal request is still answered 200.
//! Those checks collect their problems so that one run shows every attack that leaked; the
//! attacks' own asserts stop the test at once. The whole table runs three times, so that a
//! small leak per attack adds up. At the end every acknowledged credit is in its balance and no
//! request cut before its end was applied.
//!
//! Why: a server that leaks a descriptor or a buffer on one rare path (a reset between the head
//! and the body, a half-close while an answer is queued) runs out after hours of real traffic,
//! far from any test that looks at answers alone; the figures printed per attack show where
//! each server stands.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rinha_testkit::bins::api_command;
use rinha_testkit::http::{self, Conn, Reader, Response};
use rinha_testkit::process::Server;
use rinha_testkit::stack::{start_stack, with_args};
use rinha_testkit::{free_tcp, temp_dir, wait_until, Addr, TempDir, XorShift};

/// A client's bound on every connect, read and write: an answer or a close that does not come
/// within it is a hang, and fails the test. Answers take milliseconds; the bound leaves room
/// for a shared machine whose disk takes seconds to sync a burst of 200 credits.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long descriptors may take to come back after an attack. Every attack ends its
/// connections itself (a reset, a FIN, or an error answer after which the API lingers at most
/// 500 ms), so none waits for a server timeout; on io_uring a socket closes a moment after its
/// operations are cancelled.
const SETTLE_WAIT: Duration = Duration::from_secs(10);
/// How much resident memory a server may hold above its figure after the warm-up, once an
/// attack is over. Exact equality would be wrong: the allocator keeps freed memory for reuse,
/// and the API keeps up to 256 connection buffers per worker (`POOLED_BUFFERS_MAX`) at the
/// capacity they grew to (a read buffer up to 40 KiB, a write buffer past the 64 KiB flush
/// threshold). The attacks leave a few MiB at most (the figures are printed); a server that
/// kept what 20,000 pipelined answers or hundreds of connections cost (tens of MiB) fails.
const RSS_GROWTH_MAX_KIB: u64 = 16 * 1024;
/// Rounds of the whole table of attacks: a leak of a little per attack grows round after round
/// while the bounds stay where the warm-up put them.
const ROUNDS: usize = 3;

/// Credits whose answers were read go to this account, and so do the requests cut before
/// their end: its balance must be the sum of the acknowledged credits, exactly.
const ACKED_ACCOUNT: u32 = 1;
/// Credits cut by a reset after they were sent whole: each may or may not be applied.
const UNKNOWN_ACCOUNT: u32 = 2;
/// Credits sent by clients that shut down their reading side: every one must be applied.
const UNREAD_ACCOUNT: u32 = 3;
/// An account no request changes, so that its statement is the same each time (bar its time).
const QUIET_ACCOUNT: u32 = 4;
/// The accounts' credit limits in cents, by id (docs/api.md): a statement names its account
/// through its limit, which is how the pipelined answers are checked to come in order.
const LIMITS: [i64; 5] = [100_000, 80_000, 1_000_000, 10_000_000, 500_000];

/// Connections of the reset and half-close attacks, all open at once: well below every
/// connection cap, enough that a leak of one descriptor per connection is plain.
const CONNECTIONS: usize = 200;
/// Connections per kind of garbage (random bytes: twice as many, each its own bytes).
const GARBAGE_CONNECTIONS: usize = 10;
/// Requests in one pipeline: issue 20's figure.
const PIPELINED: usize = 20_000;
/// Clients of each pipeline attack, at once, in each round.
const PIPELINE_CLIENTS: usize = 1;
/// Requests pipelined by a client that resets while reading their answers (about 4.8 MB of
/// them, more than the sockets on the way hold), and how much of the answers it reads first.
const RESET_PIPELINED: usize = 4_000;
const RESET_AFTER_BYTES: usize = 256 * 1024;
/// The receive buffer of that client. Loopback TCP would otherwise grow it (here up to
/// `tcp_rmem`'s 32 MiB) until every answer fits in the sockets' buffers and the server is done
/// writing before the reset; a small one keeps the server in the middle of a write.
const RESET_RECEIVE_BUFFER_BYTES: usize = 64 * 1024;
/// Clients of the reset-while-reading attack.
const RESET_READERS: usize = 10;
/// Clients that shut down their reading side, and the credits each sends afterwards.
const UNREAD_CLIENTS: usize = 10;
const UNREAD_CREDITS_EACH: usize = 20;
/// Clients sending requests one byte per write, at once, and the pause after each byte: long
/// enough that most bytes arrive on their own (a read each), short enough to keep the attack
/// under a second.
const SPLIT_CLIENTS: usize = 4;
const SPLIT_PAUSE: Duration = Duration::from_micros(500);
/// Concurrent clean relays that fill the balancer's pool of pipe sets before each descriptor
/// count: more than the 64 sets a worker keeps (`POOLED_PIPE_SETS_MAX`, four descriptors each).
/// A relay ended by a reset drops its pipes instead, so without a full pool the balancer's
/// count would wander by up to 256 descriptors and hide a leak.
const POOL_FILL_RELAYS: usize = 80;

rinha_testkit::tests! {
    rinha_api_on_io_uring => run_suite(Target::api("io_uring"));
    rinha_api_on_epoll => run_suite(Target::api("epoll"));
    rinha_lb_on_io_uring_splice_direct => run_suite(Target::lb("io_uring", "direct"));
    rinha_lb_on_io_uring_splice_op => run_suite(Target::lb("io_uring", "op"));
    rinha_lb_on_epoll_splice_op => run_suite(Target::lb("epoll", "op"));
    rinha_lb_on_epoll_splice_direct => run_suite(Target::lb("epoll", "direct"));
}

/// One attack: its clients and what they must see. `at` names the target and the attack for
/// every message.
type Attack = fn(&Target, &mut Ledger, &str);

/// Every attack, in the order they run.
const ATTACKS: [(&str, Attack); 14] = [
    ("reset right after connect", reset_after_connect),
    ("reset inside a request head", reset_inside_head),
    ("reset inside a body", reset_inside_body),
    ("reset before reading the answer", reset_before_answer),
    ("reset while reading pipelined answers", reset_while_reading),
    ("write side shut after a request", shut_write_after_request),
    (
        "write side shut inside a request",
        shut_write_inside_request,
    ),
    ("read side shut, requests still sent", shut_read_then_send),
    ("garbage: random bytes", garbage_random),
    ("garbage: other protocols", garbage_protocols),
    ("garbage: oversized heads and NUL bytes", garbage_heads),
    ("20,000 pipelined, every answer read", pipeline_read_all),
    ("20,000 pipelined, no answer read", pipeline_unread),
    ("one byte per write", byte_by_byte),
];

/// The servers under attack and what they held after the warm-up.
struct Target {
    /// Server, driver and splice mode: the start of every message.
    label: String,
    servers: Vec<Server>,
    /// Where clients connect: the API itself, or the balancer.
    front: Addr,
    /// Whether the front is the balancer (its pipe pool is filled before each count).
    balanced: bool,
    /// Per server, in the order of `servers`.
    baseline: Vec<Footprint>,
    _dir: TempDir,
}

/// What a server holds at one moment.
#[derive(Clone, Copy)]
struct Footprint {
    fds: usize,
    rss_kib: u64,
}

/// What the balances must show at the end.
#[derive(Default)]
struct Ledger {
    /// Credits to `ACKED_ACCOUNT` answered 200, in cents.
    acknowledged: i64,
    /// Credits to `UNKNOWN_ACCOUNT` sent whole and cut by a reset: the most it can hold.
    unknown_max: i64,
    /// Credits to `UNREAD_ACCOUNT`, all of which must be applied.
    unread: i64,
}

impl Target {
    /// One `rinha-api` with one worker on `driver`, on TCP.
    fn api(driver: &str) -> Target {
        let dir = temp_dir("abuse-api");
        let front = free_tcp();
        let mut command = api_command(&dir.path().join("data"), &front);
        command.args(["--driver", driver]);
        let server = Server::start_ready("api", command, dir.path(), &front);
        Target {
            label: format!("rinha-api driver={driver}"),
            servers: vec![server],
            front,
            balanced: false,
            baseline: Vec::new(),
            _dir: dir,
        }
    }

    /// `rinha-lb` in front of two `rinha-api` (one worker each, Unix sockets, as deployed),
    /// every process on `driver`, the balancer in `splice` mode.
    fn lb(driver: &str, splice: &str) -> Target {
        let dir = temp_dir("abuse-lb");
        let (args, lb_args) = (["--driver", driver], ["--splice", splice]);
        let (servers, front) = start_stack(dir.path(), with_args(&args, &lb_args));
        Target {
            label: format!("rinha-lb driver={driver} splice={splice}"),
            servers,
            front,
            balanced: true,
            baseline: Vec::new(),
            _dir: dir,
        }
    }
}

/// Warms the target up, takes its baseline, runs every attack with the checks after each, then
/// checks the balances.
fn run_suite(mut target: Target) {
    let started = Instant::now();
    let mut ledger = Ledger::default();
    warm_up(&target, &mut ledger);
    if target.balanced {
        fill_pipe_pool(&target.front, &format!("{}: warm-up", target.label));
    }
    target.baseline = target.servers.iter().map(quiet_footprint).collect();
    for (server, baseline) in target.servers.iter().zip(&target.baseline) {
        eprintln!(
            "{}: {}: baseline {} descriptors, RSS {} KiB",
            target.label, server.name, baseline.fds, baseline.rss_kib
        );
    }
    let mut problems = Vec::new();
    for round in 1..=ROUNDS {
        for (name, attack) in ATTACKS {
            let at = format!("{}: round {round}: {name}", target.label);
            let attack_started = Instant::now();
            attack(&target, &mut ledger, &at);
            let attacked = attack_started.elapsed();
            settle(&mut target, &at, &mut problems);
            eprintln!(
                "{at}: attack {:.2} s, settled after {:.2} s",
                attacked.as_secs_f64(),
                attack_started.elapsed().as_secs_f64()
            );
        }
    }
    check_balances(&target, &ledger, &mut problems);
    eprintln!(
        "{}: the suite took {:.1} s",
        target.label,
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every kind of request once, and enough acknowledged credits that a statement of
/// `ACKED_ACCOUNT` lists its ten entries (the largest answer), before the baseline is taken.
fn warm_up(target: &Target, ledger: &mut Ledger) {
    let at = format!("{}: warm-up", target.label);
    for index in 0..10 {
        credit(&target.front, ledger, &format!("{at}: credit {index}"));
    }
    for account in 1..=5 {
        let status = http::statement(&target.front, account, CLIENT_TIMEOUT).map(|r| r.status);
        assert!(
            matches!(status, Ok(200)),
            "{at}: statement {account}: {status:?}"
        );
    }
    let mut conn = connect(&target.front, &at);
    send(&mut conn, &cycling_statements(100), &at);
    let mut reader = Reader::new();
    for index in 0..100 {
        expect_statement(&response(&mut reader, &mut conn, &at), index, &at);
    }
    drop(conn);
    let mut conn = connect(&target.front, &at);
    send(&mut conn, b"\x00\x01\x02\r\n\r\n", &at);
    assert_eq!(reader_status(&mut conn, &at), Some(400), "{at}: garbage");
}

/// One credit of one cent to `ACKED_ACCOUNT` on a new connection, which must be answered 200.
fn credit(front: &Addr, ledger: &mut Ledger, at: &str) {
    let response = http::post(front, ACKED_ACCOUNT, 1, 'c', "abuse", CLIENT_TIMEOUT);
    match response {
        Ok(response) if response.status == 200 => ledger.acknowledged += 1,
        other => panic!("{at}: a credit got {other:?}"),
    }
}

/// Descriptors and memory of `server` once it is quiet: the fewest descriptors over half a
/// second (connections that the client closed may still be on their way out), and the resident
/// memory then.
fn quiet_footprint(server: &Server) -> Footprint {
    let fds = server.quiet_fds();
    Footprint {
        fds,
        rss_kib: server.rss_kib().unwrap_or(0),
    }
}

/// The checks after an attack: each server's descriptors back to the baseline (the
/// balancer's pipe pool filled first), its memory within `RSS_GROWTH_MAX_KIB` of it, still
/// running, and a normal request answered 200. Problems are collected, not asserted, so that
/// every attack runs.
fn settle(target: &mut Target, at: &str, problems: &mut Vec<String>) {
    if target.balanced {
        fill_pipe_pool(&target.front, at);
    }
    for (server, baseline) in target.servers.iter_mut().zip(&target.baseline) {
        let back = wait_until(SETTLE_WAIT, || server.open_fds() <= baseline.fds);
        let fds = server.open_fds();
        let rss_kib = server.rss_kib().unwrap_or(0);
        eprintln!(
            "{at}: {}: descriptors {} -> {fds}, RSS {} -> {rss_kib} KiB ({:+} KiB)",
            server.name,
            baseline.fds,
            baseline.rss_kib,
            rss_kib as i64 - baseline.rss_kib as i64
        );
        if !back {
            problems.push(format!(
                "{at}: {} holds {fds} descriptors {SETTLE_WAIT:?} after the attack, {} after \
                 the warm-up",
                server.name, baseline.fds
            ));
        }
        if rss_kib > baseline.rss_kib + RSS_GROWTH_MAX_KIB {
            problems.push(format!(
                "{at}: {} holds {rss_kib} KiB resident after the attack, {} KiB after the \
                 warm-up (at most {RSS_GROWTH_MAX_KIB} KiB more allowed)",
                server.name, baseline.rss_kib
            ));
        }
        if !server.is_running() {
            problems.push(format!("{at}: {} exited: {}", server.name, server.log()));
        }
    }
    match http::statement(&target.front, QUIET_ACCOUNT, CLIENT_TIMEOUT) {
        Ok(response) if response.status == 200 => {}
        other => problems.push(format!("{at}: a normal request afterwards got {other:?}")),
    }
}

/// Runs `POOL_FILL_RELAYS` relays at once through the balancer, each a statement answered and
/// then a clean end (the client shuts its writing side, the instance closes, the balancer
/// closes the client), so that each gives its pipe set back and the pool is full.
fn fill_pipe_pool(front: &Addr, at: &str) {
    let request = http::statement_request(QUIET_ACCOUNT);
    let mut conns = Vec::with_capacity(POOL_FILL_RELAYS);
    for _ in 0..POOL_FILL_RELAYS {
        let mut conn = connect(front, at);
        send(&mut conn, &request, at);
        let answer = response(&mut Reader::new(), &mut conn, at);
        assert_eq!(answer.status, 200, "{at}: a relay filling the pipe pool");
        conns.push(conn);
    }
    for mut conn in conns {
        shut_write(&conn, at);
        let rest = read_to_close(&mut conn, at);
        assert!(rest.is_empty(), "{at}: {rest:?} after the answer");
    }
}

/// The final check: `ACKED_ACCOUNT` holds exactly the acknowledged credits (no request cut
/// before its end was applied, no acknowledged one lost), `UNREAD_ACCOUNT` every credit its
/// clients sent, and `UNKNOWN_ACCOUNT` at most what was sent to it.
fn check_balances(target: &Target, ledger: &Ledger, problems: &mut Vec<String>) {
    let at = format!("{}: balances", target.label);
    let acknowledged = balance(&target.front, ACKED_ACCOUNT, &at);
    let unread = balance(&target.front, UNREAD_ACCOUNT, &at);
    let unknown = balance(&target.front, UNKNOWN_ACCOUNT, &at);
    eprintln!(
        "{at}: account {ACKED_ACCOUNT} {acknowledged} (acknowledged {}), account \
         {UNREAD_ACCOUNT} {unread} (sent {}), account {UNKNOWN_ACCOUNT} {unknown} (at most {})",
        ledger.acknowledged, ledger.unread, ledger.unknown_max
    );
    if acknowledged != ledger.acknowledged {
        problems.push(format!(
            "{at}: account {ACKED_ACCOUNT} holds {acknowledged}, the acknowledged credits sum \
             to {}",
            ledger.acknowledged
        ));
    }
    if unread != ledger.unread {
        problems.push(format!(
            "{at}: account {UNREAD_ACCOUNT} holds {unread}, {} was sent",
            ledger.unread
        ));
    }
    if !(0..=ledger.unknown_max).contains(&unknown) {
        problems.push(format!(
            "{at}: account {UNKNOWN_ACCOUNT} holds {unknown}, at most {} was sent",
            ledger.unknown_max
        ));
    }
}

/// The balance of `account`, from its statement.
fn balance(front: &Addr, account: u32, at: &str) -> i64 {
    let response = http::statement(front, account, CLIENT_TIMEOUT)
        .unwrap_or_else(|error| panic!("{at}: statement {account}: {error}"));
    assert_eq!(response.status, 200, "{at}: statement {account}");
    response.json()["saldo"]["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("{at}: statement {account} without a balance"))
}

// ---- Resets at every stage ----

/// How long the servers get to read what the clients of a reset attack sent before the resets,
/// when they are to find the servers waiting for the rest of a request.
const READ_PAUSE: Duration = Duration::from_millis(100);

/// Connects `CONNECTIONS` clients and has each send `bytes(index)`; then, `pause` after the
/// last, resets them all, first to last.
fn reset_all_after(target: &Target, at: &str, pause: Duration, bytes: impl Fn(usize) -> Vec<u8>) {
    let conns: Vec<Conn> = (0..CONNECTIONS)
        .map(|index| {
            let mut conn = connect(&target.front, at);
            send(&mut conn, &bytes(index), at);
            conn
        })
        .collect();
    std::thread::sleep(pause);
    conns.into_iter().for_each(reset);
}

/// Resets before a byte was sent: the balancer has not chosen an instance yet.
fn reset_after_connect(target: &Target, _: &mut Ledger, at: &str) {
    reset_all_after(target, at, Duration::ZERO, |_| Vec::new());
}

/// Resets inside a head, anywhere from its first byte to its last field.
fn reset_inside_head(target: &Target, _: &mut Ledger, at: &str) {
    let post = http::post_request(ACKED_ACCOUNT, 1, 'c', "cut-head");
    reset_all_after(target, at, READ_PAUSE, |index| {
        // Cut anywhere in the head, the request line included.
        let head = post.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        post[..1 + index % head].to_vec()
    });
}

/// A credit whose head is whole and whose body is not: it must never be applied.
fn reset_inside_body(target: &Target, _: &mut Ledger, at: &str) {
    let post = http::post_request(ACKED_ACCOUNT, 1, 'c', "cut-body");
    let body = post.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    reset_all_after(target, at, READ_PAUSE, |index| {
        post[..body + index % (post.len() - body)].to_vec()
    });
}

/// Whole requests (credits to `UNKNOWN_ACCOUNT` and statements), reset without a pause before
/// their answers are read: the resets reach the servers anywhere from before they read the
/// request to after they wrote the answer (a credit waits for its sync in between).
fn reset_before_answer(target: &Target, ledger: &mut Ledger, at: &str) {
    let post = http::post_request(UNKNOWN_ACCOUNT, 1, 'c', "cut-answer");
    let get = http::statement_request(ACKED_ACCOUNT);
    let posts = CONNECTIONS.div_ceil(2);
    ledger.unknown_max += posts as i64;
    reset_all_after(target, at, Duration::ZERO, |index| {
        if index % 2 == 0 {
            post.clone()
        } else {
            get.clone()
        }
    });
}

/// Statements pipelined, reset once the first 256 KiB of their answers is read: the server is
/// in the middle of writing the rest.
fn reset_while_reading(target: &Target, _: &mut Ledger, at: &str) {
    let pipelined = http::statement_request(ACKED_ACCOUNT).repeat(RESET_PIPELINED);
    let mut conns: Vec<Conn> = (0..RESET_READERS)
        .map(|_| {
            let conn = connect(&target.front, at);
            rustix::net::sockopt::set_socket_recv_buffer_size(
                tcp_stream(&conn),
                RESET_RECEIVE_BUFFER_BYTES,
            )
            .expect("SO_RCVBUF");
            // The server may stop reading before it has all: it then waits on a write, which
            // is where the reset is to find it.
            write_what_fits(tcp_stream(&conn), &pipelined, at);
            conn
        })
        .collect();
    let mut chunk = vec![0u8; 64 * 1024];
    for (index, conn) in conns.iter_mut().enumerate() {
        let mut read = 0;
        while read < RESET_AFTER_BYTES {
            match conn.read(&mut chunk) {
                Ok(0) => panic!("{at}: client {index} closed after {read} bytes of answers"),
                Ok(count) => read += count,
                Err(error) => panic!("{at}: client {index} after {read} bytes: {error}"),
            }
        }
    }
    conns.into_iter().for_each(reset);
}

// ---- Half-closes ----

/// A whole credit, then the client's writing side shut: the server answers it, then closes.
fn shut_write_after_request(target: &Target, ledger: &mut Ledger, at: &str) {
    let post = http::post_request(ACKED_ACCOUNT, 1, 'c', "half-close");
    let conns: Vec<Conn> = (0..CONNECTIONS)
        .map(|_| {
            let mut conn = connect(&target.front, at);
            send(&mut conn, &post, at);
            shut_write(&conn, at);
            conn
        })
        .collect();
    for (index, mut conn) in conns.into_iter().enumerate() {
        let received = read_to_close(&mut conn, at);
        match http::parse_response(&received) {
            Ok(Some((response, used))) if response.status == 200 && used == received.len() => {
                ledger.acknowledged += 1;
            }
            other => panic!(
                "{at}: client {index}: one 200 then the close was expected, got {other:?} from \
                 {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Part of a credit (head or body), then the client's writing side shut: the request can
/// never complete, so the server closes without an answer (`Connection::read_more` sees the
/// end of the input) and never applies it.
fn shut_write_inside_request(target: &Target, _: &mut Ledger, at: &str) {
    let post = http::post_request(ACKED_ACCOUNT, 1, 'c', "half-cut");
    let conns: Vec<Conn> = (0..CONNECTIONS)
        .map(|index| {
            let mut conn = connect(&target.front, at);
            send(&mut conn, &post[..1 + index % (post.len() - 1)], at);
            shut_write(&conn, at);
            conn
        })
        .collect();
    for (index, mut conn) in conns.into_iter().enumerate() {
        let received = read_to_close(&mut conn, at);
        assert!(
            received.is_empty(),
            "{at}: client {index} (cut after {} bytes) got {:?}; the close alone was expected",
            1 + index % (post.len() - 1),
            String::from_utf8_lossy(&received)
        );
    }
}

/// Clients shut their reading side, then send credits one request per write: the servers
/// cannot tell, and must apply every one (their answers pile up unread in the clients'
/// sockets, which a close then resets).
fn shut_read_then_send(target: &Target, ledger: &mut Ledger, at: &str) {
    let post = http::post_request(UNREAD_ACCOUNT, 1, 'c', "unread");
    let expected = ledger.unread + (UNREAD_CLIENTS * UNREAD_CREDITS_EACH) as i64;
    let conns: Vec<Conn> = (0..UNREAD_CLIENTS)
        .map(|_| {
            let mut conn = connect(&target.front, at);
            tcp_stream(&conn)
                .shutdown(Shutdown::Read)
                .expect("shut down the reading side");
            for _ in 0..UNREAD_CREDITS_EACH {
                send(&mut conn, &post, at);
            }
            conn
        })
        .collect();
    let mut held = 0;
    let applied = wait_until(SETTLE_WAIT, || {
        held = balance(&target.front, UNREAD_ACCOUNT, at);
        held == expected
    });
    assert!(
        applied,
        "{at}: account {UNREAD_ACCOUNT} holds {held}, {expected} after every credit was sent"
    );
    ledger.unread = expected;
    drop(conns);
}

// ---- Garbage ----

/// Sends `bytes` on a new connection and expects `status` then the close, within
/// `CLIENT_TIMEOUT`.
fn expect_refusal(front: &Addr, bytes: &[u8], status: u16, at: &str) {
    let mut conn = connect(front, at);
    send(&mut conn, bytes, at);
    let got = reader_status(&mut conn, at);
    assert_eq!(
        got,
        Some(status),
        "{at}: {} bytes starting {:?}",
        bytes.len(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(48)])
    );
}

/// The status of the one answer on `conn`, which must then close (`None`: closed without an
/// answer). A read that times out fails the test: a server that neither answers nor closes
/// hangs its client.
fn reader_status(conn: &mut Conn, at: &str) -> Option<u16> {
    let mut reader = Reader::new();
    let status = match reader.next(conn) {
        Ok(Some(response)) => Some(response.status),
        Ok(None) => None,
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => None,
        Err(error) => panic!("{at}: no answer and no close: {error}"),
    };
    let rest = read_to_close(conn, at);
    assert!(
        reader.pending().is_empty() && rest.is_empty(),
        "{at}: bytes after the answer: {:?}{:?}",
        String::from_utf8_lossy(reader.pending()),
        String::from_utf8_lossy(&rest)
    );
    status
}

/// Random bytes, a different kilobyte on each connection from a fixed seed: a byte outside
/// the request line's grammar comes within the first few, so each is malformed (400).
fn garbage_random(target: &Target, _: &mut Ledger, at: &str) {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    for index in 0..2 * GARBAGE_CONNECTIONS {
        let bytes: Vec<u8> = (0..1024).map(|_| random.next_u64() as u8).collect();
        expect_refusal(
            &target.front,
            &bytes,
            400,
            &format!("{at}: connection {index}"),
        );
    }
}

/// Clients of other protocols: a TLS ClientHello is malformed HTTP (400); the HTTP/2 preface
/// is a well-formed request line of another version (505).
fn garbage_protocols(target: &Target, _: &mut Ledger, at: &str) {
    let hello = tls_client_hello();
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame, as a client sends it right after the preface.
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for (what, bytes, status) in [("TLS", &hello, 400), ("HTTP/2", &preface, 505)] {
        for index in 0..GARBAGE_CONNECTIONS {
            expect_refusal(
                &target.front,
                bytes,
                status,
                &format!("{at}: {what} {index}"),
            );
        }
    }
}

/// Heads beyond the 8 KiB limit (a long request line, a long field, too many fields: 431)
/// and NUL bytes (in a field, or nothing else: 400).
fn garbage_heads(target: &Target, _: &mut Ledger, at: &str) {
    let long = "a".repeat(16 * 1024);
    let many: String = (0..100).map(|n| format!("X-Field-{n}: {n}\r\n")).collect();
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "a 16 KiB request line",
            format!("GET /clientes/1/extrato?{long} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            431,
        ),
        (
            "a 16 KiB field",
            format!("GET /clientes/1/extrato HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\n\r\n")
                .into_bytes(),
            431,
        ),
        (
            "100 fields",
            format!("GET /clientes/1/extrato HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes(),
            431,
        ),
        (
            "a NUL in a field",
            b"GET /clientes/1/extrato HTTP/1.1\r\nHost: x\0y\r\n\r\n".to_vec(),
            400,
        ),
        ("NUL bytes only", vec![0u8; 512], 400),
    ];
    for (what, bytes, status) in &cases {
        for index in 0..GARBAGE_CONNECTIONS {
            expect_refusal(
                &target.front,
                bytes,
                *status,
                &format!("{at}: {what} {index}"),
            );
        }
    }
}

/// A TLS 1.2 ClientHello record for `localhost` (RFC 5246, 7.4.1.2, with the server name
/// extension of RFC 6066), as a browser opening `https://` on the HTTP port sends it.
fn tls_client_hello() -> Vec<u8> {
    fn with_u16_length(bytes: &[u8]) -> Vec<u8> {
        let length = u16::try_from(bytes.len()).expect("a short field");
        [&length.to_be_bytes()[..], bytes].concat()
    }
    let name = b"localhost";
    let server_name = with_u16_length(&[&[0u8][..], &with_u16_length(name)].concat());
    let extension = [&[0u8, 0][..], &with_u16_length(&server_name)].concat();
    let mut hello = vec![3, 3];
    hello.extend_from_slice(&[0x5a; 32]);
    hello.push(0);
    hello.extend(with_u16_length(&[0x13, 0x01, 0xc0, 0x2f]));
    hello.extend_from_slice(&[1, 0]);
    hello.extend(with_u16_length(&extension));
    let length = u32::try_from(hello.len())
        .expect("a short hello")
        .to_be_bytes();
    let handshake = [&[1u8][..], &length[1..], &hello].concat();
    [&[0x16u8, 3, 1][..], &with_u16_length(&handshake)].concat()
}

// ---- Pipelines ----

/// `count` statements pipelined in one buffer, cycling through the five accounts.
fn cycling_statements(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|index| http::statement_request(1 + (index % 5) as u32))
        .collect()
}

/// The answer to statement `index` of [`cycling_statements`]: a 200 naming its account's limit.
#[track_caller]
fn expect_statement(response: &Response, index: usize, at: &str) {
    let limit = LIMITS[index % 5];
    assert_eq!(response.status, 200, "{at}: answer {index}");
    let json = response.json();
    assert_eq!(
        json["saldo"]["limite"].as_i64(),
        Some(limit),
        "{at}: answer {index} is not account {}'s: {json}",
        1 + index % 5
    );
}

/// `PIPELINED` statements written in one go by clients that read every answer meanwhile (a
/// thread writes, so that neither side waits on the other): all answered, in order.
fn pipeline_read_all(target: &Target, _: &mut Ledger, at: &str) {
    let pipelined = cycling_statements(PIPELINED);
    std::thread::scope(|scope| {
        for client in 0..PIPELINE_CLIENTS {
            let (pipelined, at) = (&pipelined, format!("{at}: client {client}"));
            let mut conn = connect(&target.front, &at);
            let mut writer = conn.try_clone().expect("clone the stream");
            let writer_at = at.clone();
            scope.spawn(move || send(&mut writer, pipelined, &writer_at));
            scope.spawn(move || {
                let mut reader = Reader::new();
                for index in 0..PIPELINED {
                    expect_statement(&response(&mut reader, &mut conn, &at), index, &at);
                }
                shut_write(&conn, &at);
                let rest = read_to_close(&mut conn, &at);
                assert!(
                    reader.pending().is_empty() && rest.is_empty(),
                    "{at}: bytes after {PIPELINED} answers"
                );
            });
        }
    });
}

/// `PIPELINED` statements (about 24 MB of answers) written by clients that never read, then
/// close: the servers' memory stays within `RSS_GROWTH_MAX_KIB` of the baseline while the
/// clients hold on (the API flushes its answers every 64 KiB and stops reading while a write
/// waits; one that buffered the answers it cannot send would need the 24 MB), and the close
/// (a reset, as answers are left unread) lets everything go.
fn pipeline_unread(target: &Target, _: &mut Ledger, at: &str) {
    let pipelined = cycling_statements(PIPELINED);
    let conns: Vec<Conn> = (0..PIPELINE_CLIENTS)
        .map(|_| {
            let conn = connect(&target.front, at);
            write_what_fits(tcp_stream(&conn), &pipelined, at);
            conn
        })
        .collect();
    // Memory while the answers pile up, sampled for a second.
    let mut peaks = vec![0u64; target.servers.len()];
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        for (peak, server) in peaks.iter_mut().zip(&target.servers) {
            *peak = (*peak).max(server.rss_kib().unwrap_or(0));
        }
    }
    for ((server, baseline), peak) in target.servers.iter().zip(&target.baseline).zip(peaks) {
        eprintln!(
            "{at}: {}: RSS {} KiB after the warm-up, at most {peak} KiB with the answers unread",
            server.name, baseline.rss_kib
        );
        assert!(
            peak <= baseline.rss_kib + RSS_GROWTH_MAX_KIB,
            "{at}: {} grew to {peak} KiB resident with answers unread, {} KiB after the warm-up",
            server.name,
            baseline.rss_kib
        );
    }
    drop(conns);
}

/// Writes as much of `bytes` as the connection takes: stops when a write has made no progress
/// for 300 ms (the server stopped reading because its answers are not read).
fn write_what_fits(stream: &TcpStream, bytes: &[u8], at: &str) {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut written = 0;
    let mut stalled_since = Instant::now();
    while written < bytes.len() && stalled_since.elapsed() < Duration::from_millis(300) {
        match (&*stream).write(&bytes[written..]) {
            Ok(count) => {
                written += count;
                stalled_since = Instant::now();
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("{at}: a write failed after {written} bytes: {error}"),
        }
    }
    stream.set_nonblocking(false).expect("blocking");
}

// ---- One byte per write ----

/// A credit and a statement pipelined, sent one byte per write, are answered as the same two
/// requests sent in one write: same statuses and fields, same statement (bar its time), the
/// credit's limit and balance.
fn byte_by_byte(target: &Target, ledger: &mut Ledger, at: &str) {
    let requests = [
        http::post_request(ACKED_ACCOUNT, 1, 'c', "split"),
        http::statement_request(QUIET_ACCOUNT),
    ]
    .concat();
    let answers = |conn: &mut Conn, at: &str| {
        let mut reader = Reader::new();
        [
            response(&mut reader, conn, at),
            response(&mut reader, conn, at),
        ]
    };
    let mut conn = connect(&target.front, at);
    send(&mut conn, &requests, at);
    let whole = answers(&mut conn, at);
    drop(conn);
    assert_eq!(
        [whole[0].status, whole[1].status],
        [200, 200],
        "{at}: the requests in one write: {whole:?}"
    );
    ledger.acknowledged += 1;
    let split: Vec<[Response; 2]> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..SPLIT_CLIENTS)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = connect(&target.front, at);
                    for byte in &requests {
                        send(&mut conn, std::slice::from_ref(byte), at);
                        std::thread::sleep(SPLIT_PAUSE);
                    }
                    answers(&mut conn, at)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (client, answers) in split.iter().enumerate() {
        let at = format!("{at}: client {client}");
        for (whole, split) in whole.iter().zip(answers) {
            assert_eq!(split.status, whole.status, "{at}: {split:?}");
            assert_eq!(field_names(split), field_names(whole), "{at}: {split:?}");
        }
        let (whole_post, split_post) = (whole[0].json(), answers[0].json());
        assert_eq!(
            split_post["limite"], whole_post["limite"],
            "{at}: {split_post}"
        );
        assert!(
            split_post["saldo"].as_i64() > whole_post["saldo"].as_i64(),
            "{at}: the split credit's balance {split_post} after the whole one's {whole_post}"
        );
        let untimed = |response: &Response| {
            let mut json = response.json();
            json["saldo"]["data_extrato"] = serde_json::Value::Null;
            json
        };
        assert_eq!(untimed(&answers[1]), untimed(&whole[1]), "{at}");
        ledger.acknowledged += 1;
    }
}

/// The names of a response's fields, in order.
fn field_names(response: &Response) -> Vec<String> {
    response
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect()
}

// ---- Connections ----

/// A TCP connection to `front` (`TCP_NODELAY`, `CLIENT_TIMEOUT` on every operation).
fn connect(front: &Addr, at: &str) -> Conn {
    Conn::open(front, CLIENT_TIMEOUT).unwrap_or_else(|error| panic!("{at}: connect: {error}"))
}

fn tcp_stream(conn: &Conn) -> &TcpStream {
    match conn {
        Conn::Tcp(stream) => stream,
        Conn::Unix(_) => unreachable!("the fronts listen on TCP"),
    }
}

/// Writes all of `bytes`; a failure names the attack.
fn send(conn: &mut Conn, bytes: &[u8], at: &str) {
    conn.write_all(bytes)
        .unwrap_or_else(|error| panic!("{at}: a write failed: {error}"));
}

/// Shuts down the writing side of `conn` (the server reads the end of the input).
fn shut_write(conn: &Conn, at: &str) {
    conn.shutdown_write()
        .unwrap_or_else(|error| panic!("{at}: shutdown of the writing side: {error}"));
}

/// Reads one answer; a close, a timeout or bytes that do not parse fail the test, naming the
/// attack.
fn response(reader: &mut Reader, conn: &mut Conn, at: &str) -> Response {
    match reader.next(conn) {
        Ok(Some(response)) => response,
        Ok(None) => panic!("{at}: the connection closed where an answer was due"),
        Err(error) => panic!(
            "{at}: no answer ({error}); received {:?}",
            String::from_utf8_lossy(reader.pending())
        ),
    }
}

/// Reads until the server closes (end of file or a reset) and returns what came; a server
/// that neither closes nor sends within `CLIENT_TIMEOUT` fails the test, naming the attack.
fn read_to_close(conn: &mut Conn, at: &str) -> Vec<u8> {
    conn.try_read_until_closed()
        .unwrap_or_else(|(error, received)| {
            panic!(
                "{at}: the server neither closed nor sent within {CLIENT_TIMEOUT:?} ({error}); \
             received {:?}",
                String::from_utf8_lossy(&received)
            )
        })
}

/// Closes `conn` with a reset: `SO_LINGER` of zero, then the close.
fn reset(conn: Conn) {
    rustix::net::sockopt::set_socket_linger(tcp_stream(&conn), Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(conn);
}
