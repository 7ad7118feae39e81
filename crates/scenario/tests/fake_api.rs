//! The load client against a small fake API on loopback: every request must arrive on its own
//! TCP connection, every planned user must send exactly one request, and a wrong answer must
//! fail the run (a client whose checks cannot fail proves nothing).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rinha_scenario::{load, scenario, Config, Target};

/// How the fake API answers.
#[derive(Clone, Copy, PartialEq)]
enum Answers {
    /// Well-formed answers that pass every load check.
    Sound,
    /// Statements whose balance is below the limit.
    BelowLimit,
}

/// Serves until the test ends; counts the connections it accepted.
fn serve(answers: Answers) -> (Target, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = Target::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || answer_all(stream, answers));
        }
    });
    (target, accepted)
}

/// Answers every request of one connection, then returns when the client closes it.
fn answer_all(mut stream: TcpStream, answers: Answers) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(length) = request_length(&pending) {
            let head = String::from_utf8_lossy(&pending[..length]).into_owned();
            pending.drain(..length);
            let body = if head.starts_with("GET") {
                let total = if answers == Answers::BelowLimit {
                    -101
                } else {
                    -5
                };
                format!(
                    r#"{{"saldo":{{"total":{total},"limite":100,"data_extrato":"x"}},"ultimas_transacoes":[]}}"#
                )
            } else {
                r#"{"limite":100,"saldo":-5}"#.to_string()
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(count) => pending.extend_from_slice(&chunk[..count]),
        }
    }
}

/// The length of the first complete request (head and `Content-Length` body) in `bytes`.
fn request_length(bytes: &[u8]) -> Option<usize> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let body_length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse::<usize>().unwrap());
    (bytes.len() >= head_end + body_length).then_some(head_end + body_length)
}

fn config(target: Target) -> Config {
    Config {
        target,
        ramp: Duration::from_secs(2),
        hold: Duration::from_secs(1),
        threads: 32,
        timeout: Duration::from_secs(5),
        seed: 7,
        load_only: true,
    }
}

#[test]
fn one_connection_per_request_and_every_user_sends() {
    let (target, accepted) = serve(Answers::Sound);
    let config = config(target);
    let report = scenario::run(&config);
    let planned = load::plan(&config).len() as u64;
    assert!(report.passed(), "{report}");
    assert_eq!(report.all.count, planned, "{report}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        planned,
        "one connection per request"
    );
}

#[test]
fn a_balance_below_the_limit_fails_the_run() {
    let (target, _) = serve(Answers::BelowLimit);
    let report = scenario::run(&config(target));
    let statements = report
        .groups
        .iter()
        .find(|group| group.name == load::STATEMENTS)
        .expect("statements were sent");
    assert!(statements.count > 0);
    assert_eq!(report.inconsistencies_total, statements.count, "{report}");
    assert_eq!(statements.ko, statements.count);
    assert!(!report.passed());
}
