//! The load client against a small fake API on loopback: every request must arrive on its own
//! TCP connection, every planned user must send exactly one request, and a wrong answer must
//! fail the run (a client whose checks cannot fail proves nothing). The binary's `--report`
//! writes a page that reads offline, and refuses a directory it cannot create before the run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rinha_scenario::{load, scenario, Config, Target};
use rinha_testkit::process;

/// How long the binary may take for the compressed load phase (3 s) and its report.
const BINARY_RUN_MAX: Duration = Duration::from_secs(60);

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

fn scenario_command(target: &Target) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rinha-scenario"));
    command.args(["--target", &target.host, "--ramp", "2s", "--hold", "1s"]);
    command.args(["--threads", "32", "--seed", "7", "--load-only"]);
    command
}

#[test]
fn the_report_is_one_page_that_reads_offline() {
    let (target, _) = serve(Answers::Sound);
    let dir = rinha_testkit::temp_dir("report");
    // A directory that does not exist yet, parents included: the client creates it.
    let report_dir = dir.path().join("runs").join("fake");
    let mut command = scenario_command(&target);
    command.arg("--report").arg(&report_dir);
    let (code, stderr, stdout) = process::run(command, BINARY_RUN_MAX);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let page_path = report_dir.join("index.html");
    assert!(
        stderr.contains(&format!("report: {}", page_path.display())),
        "the client names the page: {stderr}"
    );
    let page = std::fs::read_to_string(&page_path).expect("the report page");
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..100]);
    assert_eq!(page.matches("<svg").count(), 3, "three charts");
    assert_eq!(page.matches("</svg>").count(), 3, "three whole charts");
    for name in [
        load::DEBITS,
        load::CREDITS,
        load::STATEMENTS,
        ">all<",
        "PASSED",
    ] {
        assert!(page.contains(name), "the page names {name}");
    }
    let texts = svg_texts(&page);
    for text in [
        "p50",
        "p99",
        "SLA: 250 ms",
        "200",
        "250 ms",
        "requests (log scale)",
    ] {
        assert!(texts.contains(&text), "a chart labels {text}: {texts:?}");
    }
    // Nothing runs and nothing is fetched: the page reads offline, and a browser that blocks
    // scripts shows it whole.
    let lower = page.to_lowercase();
    for forbidden in [
        "<script",
        "src=\"http",
        "href=\"http",
        "url(",
        "@import",
        "<link",
        "<img",
    ] {
        assert!(!lower.contains(forbidden), "the page holds {forbidden}");
    }
}

#[test]
fn a_report_directory_that_cannot_be_made_fails_before_the_run() {
    let dir = rinha_testkit::temp_dir("report");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write a file");
    // Nothing listens there, and --wait would wait a minute for it: the flag must fail first.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = Target::parse(&closed.local_addr().unwrap().to_string()).unwrap();
    drop(closed);
    let mut command = scenario_command(&target);
    command
        .args(["--wait", "60s", "--report"])
        .arg(file.join("report"));
    let started = Instant::now();
    let (code, stderr, _) = process::run(command, BINARY_RUN_MAX);
    assert_eq!(code, 2, "a bad --report is a bad flag: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it failed before waiting for the API"
    );
    assert!(
        stderr.starts_with("rinha-scenario: --report: cannot create")
            && stderr.lines().count() == 1,
        "one line naming the flag: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
}

/// The text of every SVG `<text>` element in `page`, trimmed.
fn svg_texts(page: &str) -> Vec<&str> {
    let elements = page.split("<text").skip(1);
    let contents =
        elements.filter_map(|element| Some(element.split_once('>')?.1.split_once("</text>")?.0));
    contents.map(str::trim).collect()
}
