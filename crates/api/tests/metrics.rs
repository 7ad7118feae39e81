//! The live metrics (`--metrics ADDR`), scraped while an instance is under load.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::{free_tcp, post, request, temp_dir, Addr, Server, BINARY, STARTUP_TIMEOUT};

const THREADS: u32 = 4;
const TRANSACTIONS_PER_THREAD: u32 = 60;
const STATEMENT_EVERY: u32 = 5;

/// The text of a scrape of `addr` (which answers one request per connection).
fn scrape(addr: &std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// The value of the sample `series` (name and labels exactly as written) in `text`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_scrape_under_load_counts_every_answer_and_the_storage() {
    let dir = temp_dir("metrics");
    let target = free_tcp();
    let Addr::Tcp(metrics) = free_tcp() else {
        unreachable!()
    };
    let mut command = Command::new(BINARY);
    command.arg("--data-dir").arg(dir.path().join("data"));
    command.args(["--listen", &target.to_string(), "--workers", "2"]);
    command.args(["--metrics", &metrics.to_string()]);
    let mut server = Server::start("metrics", command, dir.path());
    server.startup_line("rinha-api", STARTUP_TIMEOUT);
    let load: Vec<_> = (0..THREADS)
        .map(|thread| {
            let target = target.clone();
            std::thread::spawn(move || {
                for i in 0..TRANSACTIONS_PER_THREAD {
                    let account = 1 + (thread + i) % 5;
                    let answer = post(&target, account, 1, 'c', &format!("m{thread}.{i}"));
                    assert_eq!(answer.status, 200);
                    if i % STATEMENT_EVERY == 0 {
                        common::statement(&target, account);
                    }
                }
            })
        })
        .collect();
    // While the load runs, a scrape answers at once, from its own thread.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (status, during) = scrape(&metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(
        during.contains("# TYPE rinha_api_requests_total counter"),
        "{during}"
    );
    for thread in load {
        thread.join().unwrap();
    }
    let transactions = f64::from(THREADS * TRANSACTIONS_PER_THREAD);
    let statements = f64::from(THREADS * TRANSACTIONS_PER_THREAD / STATEMENT_EVERY);
    let (_, text) = scrape(&metrics, "/metrics");
    let transactions_ok = r#"rinha_api_requests_total{route="transactions",status="200"}"#;
    assert_eq!(value(&text, transactions_ok), transactions);
    let statements_ok = r#"rinha_api_requests_total{route="statement",status="200"}"#;
    assert_eq!(value(&text, statements_ok), statements);
    let count = r#"rinha_api_request_duration_seconds_count{route="transactions"}"#;
    assert_eq!(value(&text, count), transactions);
    let inf = r#"rinha_api_request_duration_seconds_bucket{route="transactions",le="+Inf"}"#;
    assert_eq!(value(&text, inf), transactions);
    assert_eq!(value(&text, "rinha_api_appends_total"), transactions);
    // One process, so its syncs made every record durable, in groups.
    assert_eq!(value(&text, "rinha_api_synced_records_total"), transactions);
    let syncs = value(&text, "rinha_api_fdatasyncs_total");
    assert!((1.0..=transactions).contains(&syncs), "{syncs} fdatasyncs");
    assert!(value(&text, "rinha_api_connections_accepted_total") >= transactions + statements);
    assert_eq!(value(&text, "rinha_api_connections_open"), 0.0);
    assert_eq!(value(&text, "rinha_api_storage_poisoned"), 0.0);
    // The metrics live on their own listener only.
    assert_eq!(request(&target, "GET", "/metrics", None).status, 404);
    assert_eq!(scrape(&metrics, "/clientes/1/extrato").0, 404);
    // Story: the scrape thread once received the SIGUSR1 with which a worker wakes the main
    // thread at shutdown, and the process died of it (exit 138) instead of exiting 0.
    let status = server.terminate(std::time::Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}
