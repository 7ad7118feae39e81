//! A frozen instance leaves the balancer's rotation, and comes back when it answers again.
//!
//! The story: with one of two instances stopped (SIGSTOP: its Unix socket still accepts into
//! the backlog), every other request went to it for the whole run, since only a failed connect
//! marked an upstream down: 30 of 60 POSTs answered. Now an upstream that sends no byte within
//! the answer timeout after a client's first bytes reached it is skipped for the back-off, then
//! gets one connection at a time (a probe) until one is answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rinha_testkit::process::Signal;
use rinha_testkit::stack::{api_sockets, start_stack, stop_all, with_args};
use rinha_testkit::{free_tcp, http, metrics, temp_dir, Addr};

const DRIVERS: [&str; 2] = ["io_uring", "epoll"];
/// The balancer's answer timeout and back-off in this test.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1000);
const BACKOFF: Duration = Duration::from_millis(1000);
/// How long the instance stays frozen under load.
const FROZEN: Duration = Duration::from_secs(6);
/// Client threads, each sending one POST per new connection, one after another.
const CLIENTS: usize = 4;
/// A client gives up on an answer after this long (more than the answer timeout).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(4);

#[test]
fn a_frozen_instance_leaves_the_rotation_and_comes_back() {
    let dir = temp_dir("frozen");
    let mut problems = Vec::new();
    for driver in DRIVERS {
        let run = dir.path().join(driver);
        std::fs::create_dir_all(&run).unwrap();
        let scrape = free_tcp();
        let lb_args = [
            "--metrics".to_string(),
            scrape.to_string(),
            "--answer-timeout-ms".to_string(),
            ANSWER_TIMEOUT.as_millis().to_string(),
            "--down-backoff-ms".to_string(),
            BACKOFF.as_millis().to_string(),
        ];
        let (mut servers, front) = start_stack(&run, with_args(&["--driver", driver], &lb_args));
        let upstreams = api_sockets(&run);

        // Frozen under a steady stream of POSTs.
        servers[1].signal(Signal::STOP);
        let frozen_at = Instant::now();
        let outcomes = load(&front, FROZEN);
        servers[1].signal(Signal::CONT);
        // Requests the balancer sent the frozen instance before it noticed, and its probes
        // afterwards (one per back-off at most, each closed after the answer timeout).
        let noticed = ANSWER_TIMEOUT + Duration::from_millis(500);
        let late_failures: Vec<Duration> = outcomes
            .iter()
            .filter(|(sent, ok)| !ok && sent.duration_since(frozen_at) > noticed)
            .map(|(sent, _)| sent.duration_since(frozen_at))
            .collect();
        let answered = outcomes.iter().filter(|(_, ok)| *ok).count();
        let probes_max = (FROZEN.as_millis() / BACKOFF.as_millis()) as usize + 1;
        eprintln!(
            "{driver}: {answered} of {} POSTs answered while an instance was frozen; failures \
             after {noticed:?}: {late_failures:?}",
            outcomes.len()
        );
        if late_failures.len() > probes_max {
            problems.push(format!(
                "{driver}: {} requests failed after the balancer should have noticed the frozen \
                 instance (at most {probes_max} probes): {late_failures:?}",
                late_failures.len()
            ));
        }
        if answered * 10 < outcomes.len() * 8 {
            problems.push(format!(
                "{driver}: only {answered} of {} POSTs answered with an instance frozen",
                outcomes.len()
            ));
        }

        // Thawed: after a probe is answered it takes its share again.
        let picks = |text: &str| {
            metrics::sample(
                text,
                &format!(
                    "rinha_lb_upstream_picks_total{{upstream=\"{}\"}}",
                    upstreams[1]
                ),
            )
        };
        std::thread::sleep(BACKOFF + Duration::from_millis(200));
        let before = picks(&metrics::scrape(&scrape));
        let mut failed = 0;
        // Statements and credits: both instances write the account again, so a writer still
        // stuck since the freeze would show here.
        for index in 0..40 {
            let answer = if index % 2 == 0 {
                http::statement(&front, 1, CLIENT_TIMEOUT)
            } else {
                http::post(&front, 2, 1, 'c', &format!("t{index}"), CLIENT_TIMEOUT)
            };
            match answer {
                Ok(response) if response.status == 200 => {}
                _ => failed += 1,
            }
        }
        let gained = picks(&metrics::scrape(&scrape)) - before;
        eprintln!("{driver}: the thawed instance took {gained} of 40 connections");
        if failed > 0 || gained < 10.0 {
            problems.push(format!(
                "{driver}: after the thaw {failed} of 40 requests failed and the thawed instance \
                 took {gained} of them"
            ));
        }
        if problems.iter().any(|problem| problem.starts_with(driver)) {
            // What the stack said and the balancer's view of its upstreams, while they still
            // run: the servers' logs go with their directory.
            problems.push(format!(
                "{driver}: the balancer's metrics:\n{}",
                metrics::scrape(&scrape)
            ));
            for server in &servers {
                problems.push(format!(
                    "{driver}: {}'s log:\n{}",
                    server.name,
                    server.log()
                ));
            }
        }
        stop_all(&mut servers, Duration::from_secs(10));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// POSTs of one credit each on new connections from `CLIENTS` threads for `period`: when each
/// was sent and whether it was answered 200.
fn load(front: &Addr, period: Duration) -> Vec<(Instant, bool)> {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (front, outcomes, stop) = (front.clone(), Arc::clone(&outcomes), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    index += 1;
                    let description = format!("f{client}{index}");
                    let sent = Instant::now();
                    let ok = matches!(
                        http::post(&front, 2, 1, 'c', &description[..description.len().min(10)], CLIENT_TIMEOUT),
                        Ok(response) if response.status == 200
                    );
                    outcomes.lock().unwrap().push((sent, ok));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    std::thread::sleep(period);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    outcomes.clone()
}
