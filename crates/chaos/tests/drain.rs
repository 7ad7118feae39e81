//! The balancer's SIGTERM drain answers every request it passed on.
//!
//! The story: eight clients pipelining POSTs through rinha-lb, SIGTERM to it: it exited after
//! 3.08 s with 30,702 POSTs applied and 30,457 answered: 245 requests reached an instance and
//! were applied, but their answers were cut with the streams when the drain's time ran out
//! (pipelining clients never let a connection go idle). Now a draining relay reads no more from
//! its client, half-closes its upstream once the bytes it read are passed on, and ends when the
//! instance has answered them and closed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rinha_testkit::http::{self, Conn, Reader};
use rinha_testkit::process::Signal;
use rinha_testkit::stack::{api_sockets, start_stack, stop_all, with_args};
use rinha_testkit::{temp_dir, Addr};

const DRIVERS: [&str; 2] = ["io_uring", "epoll"];
const CLIENTS: usize = 8;
/// POSTs each client writes before it reads their answers.
const BATCH: usize = 50;
const ACCOUNTS: [u32; 5] = [1, 2, 3, 4, 5];

#[test]
fn sigterm_to_the_balancer_answers_every_request_it_passed_on() {
    let dir = temp_dir("drain");
    let mut problems = Vec::new();
    for driver in DRIVERS {
        for splice in ["op", "direct"] {
            if let Some(problem) = drain_once(&dir, driver, splice) {
                problems.push(problem);
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// One stack and one drain; a problem, if any.
fn drain_once(dir: &rinha_testkit::TempDir, driver: &str, splice: &str) -> Option<String> {
    let name = format!("{driver}-{splice}");
    let run = dir.path().join(&name);
    std::fs::create_dir_all(&run).unwrap();
    let (args, lb_args) = (["--driver", driver], ["--splice", splice]);
    let (mut servers, front) = start_stack(&run, with_args(&args, &lb_args));
    let [instance, _] = api_sockets(&run);
    let before = balances(&instance);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (front, stop) = (front.clone(), Arc::clone(&stop));
            std::thread::spawn(move || pipeline(&front, ACCOUNTS[client % ACCOUNTS.len()], &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let lb = &mut servers[2];
    lb.signal(Signal::TERM);
    let status = lb.wait(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let answered: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let after = balances(&instance);
    let applied: i64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    stop_all(&mut servers[..2], Duration::from_secs(10));
    eprintln!("{name}: {applied} POSTs applied, {answered} answered; the balancer: {status:?}");
    let clean = status.is_some_and(|status| status.success());
    if !clean || applied != answered as i64 || answered == 0 {
        return Some(format!(
            "{name}: {applied} POSTs applied, {answered} answered 200; the balancer exited \
             {status:?}"
        ));
    }
    None
}

/// Pipelines batches of one-credit POSTs to `account` until `stop`, or until the balancer
/// closes the connection; returns how many were answered 200.
fn pipeline(front: &Addr, account: u32, stop: &AtomicBool) -> u64 {
    let mut answered = 0;
    let mut connections = 0;
    while !stop.load(Ordering::Relaxed) && connections < 1000 {
        connections += 1;
        let Ok(mut conn) = Conn::open(front, Duration::from_secs(10)) else {
            return answered;
        };
        let batch = http::post_request(account, 1, 'c', "drain").repeat(BATCH);
        let mut reader = Reader::new();
        loop {
            if conn.write_all(&batch).is_err() {
                break;
            }
            let mut ended = false;
            for _ in 0..BATCH {
                match reader.next(&mut conn) {
                    Ok(Some(response)) if response.status == 200 => answered += 1,
                    Ok(Some(response)) => panic!("a POST answered {}", response.status),
                    Ok(None) | Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                // The balancer closed this connection: during the drain, it is shutting down.
                return answered;
            }
        }
    }
    answered
}

/// The balances of the accounts, read from one instance directly.
fn balances(instance: &Addr) -> Vec<i64> {
    ACCOUNTS
        .iter()
        .map(|&account| {
            let response = http::statement(instance, account, Duration::from_secs(10)).unwrap();
            response.json()["saldo"]["total"].as_i64().unwrap()
        })
        .collect()
}
