//! The live metrics (`--metrics ADDR`), scraped while an instance is under load.

mod support;

use rinha_testkit::metrics::{get, sample, scrape};
use support::{free_tcp, post, request, temp_dir, Driver, Instance};

const THREADS: u32 = 4;
const TRANSACTIONS_PER_THREAD: u32 = 60;
const STATEMENT_EVERY: u32 = 5;

#[test]
fn a_scrape_under_load_counts_every_answer_and_the_storage() {
    let dir = temp_dir("metrics");
    let metrics = free_tcp();
    let (data, socket) = (dir.path().join("data"), dir.path().join("metrics.sock"));
    let mut instance = Instance::start_with(&data, &socket, Driver::Default, |command| {
        command.args(["--metrics", &metrics.to_string()]);
    });
    let target = instance.tcp.clone();
    let load: Vec<_> = (0..THREADS)
        .map(|thread| {
            let target = target.clone();
            std::thread::spawn(move || {
                for i in 0..TRANSACTIONS_PER_THREAD {
                    let account = 1 + (thread + i) % 5;
                    let answer = post(&target, account, 1, 'c', &format!("m{thread}.{i}"));
                    assert_eq!(answer.status, 200);
                    if i % STATEMENT_EVERY == 0 {
                        support::statement(&target, account);
                    }
                }
            })
        })
        .collect();
    // While the load runs, a scrape answers at once, from its own thread.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let during = scrape(&metrics);
    assert!(
        during.contains("# TYPE rinha_api_requests_total counter"),
        "{during}"
    );
    for thread in load {
        thread.join().unwrap();
    }
    let transactions = f64::from(THREADS * TRANSACTIONS_PER_THREAD);
    let statements = f64::from(THREADS * TRANSACTIONS_PER_THREAD / STATEMENT_EVERY);
    let text = scrape(&metrics);
    let transactions_ok = r#"rinha_api_requests_total{route="transactions",status="200"}"#;
    assert_eq!(sample(&text, transactions_ok), transactions);
    let statements_ok = r#"rinha_api_requests_total{route="statement",status="200"}"#;
    assert_eq!(sample(&text, statements_ok), statements);
    let count = r#"rinha_api_request_duration_seconds_count{route="transactions"}"#;
    assert_eq!(sample(&text, count), transactions);
    let inf = r#"rinha_api_request_duration_seconds_bucket{route="transactions",le="+Inf"}"#;
    assert_eq!(sample(&text, inf), transactions);
    assert_eq!(sample(&text, "rinha_api_appends_total"), transactions);
    // One process, so its syncs made every record durable, in groups.
    assert_eq!(
        sample(&text, "rinha_api_synced_records_total"),
        transactions
    );
    let syncs = sample(&text, "rinha_api_fdatasyncs_total");
    assert!((1.0..=transactions).contains(&syncs), "{syncs} fdatasyncs");
    assert!(sample(&text, "rinha_api_connections_accepted_total") >= transactions + statements);
    // The clients have closed; the server notices each close when it next reads that socket.
    let open = || sample(&scrape(&metrics), "rinha_api_connections_open");
    assert!(
        rinha_testkit::wait_until(std::time::Duration::from_secs(5), || open() == 0.0),
        "{} connections still open",
        open()
    );
    assert_eq!(sample(&text, "rinha_api_storage_poisoned"), 0.0);
    // The metrics live on their own listener only.
    assert_eq!(request(&target, "GET", "/metrics", None).status, 404);
    assert_eq!(get(&metrics, "/clientes/1/extrato").status, 404);
    // Story: the scrape thread once received the SIGUSR1 with which a worker wakes the main
    // thread at shutdown, and the process died of it (exit 138) instead of exiting 0.
    let status = instance
        .server
        .terminate(std::time::Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}
