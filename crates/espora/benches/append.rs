//! Append throughput and group commit: `cargo bench -p espora --bench append`.
//!
//! Runs for a fixed number of appends in each configuration and prints appends/s and fdatasyncs
//! per append (well under 1 means group commit is sharing syncs). The data directory is a temp
//! dir on the same file system as `TMPDIR` (set it to measure another disk).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use espora::{AppendError, Db, Kind, Options, Transaction};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--child") {
        let dir = &args[position + 1];
        let threads: usize = args[position + 2].parse().unwrap();
        let tasks: usize = args[position + 3].parse().unwrap();
        let appends: u64 = args[position + 4].parse().unwrap();
        let (count, syncs) = run(std::path::Path::new(dir), threads, tasks, appends);
        println!("{count} {syncs}");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    println!("| configuration | appends | appends/s | fdatasyncs/append |");
    println!("|---|---:|---:|---:|");
    for (threads, tasks, appends) in [(1, 1, 400), (1, 16, 4_000), (2, 16, 4_000)] {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let (count, syncs) = run(dir.path(), threads, tasks, appends);
        report(
            &format!("1 process x {threads} thread(s) x {tasks} task(s)"),
            count,
            syncs,
            started,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&args[0])
                .args([
                    "--child",
                    &dir.path().display().to_string(),
                    "2",
                    "16",
                    "4000",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut count, mut syncs) = (0, 0);
    for mut child in children {
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut parts = line.split_whitespace().map(|p| p.parse::<u64>().unwrap());
        count += parts.next().unwrap();
        syncs += parts.next().unwrap();
        assert!(child.wait().unwrap().success());
    }
    report(
        "2 processes x 2 threads x 16 tasks, same account",
        count,
        syncs,
        started,
    );
}

fn report(name: &str, count: u64, syncs: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "| {name} | {count} | {:.0} | {:.3} |",
        count as f64 / seconds,
        syncs as f64 / count as f64
    );
}

/// Appends `appends` credits and debits to account 1 from `threads` threads with `tasks`
/// concurrent tasks each; returns the appends done and the syncs issued.
fn run(dir: &std::path::Path, threads: usize, tasks: usize, appends: u64) -> (u64, u64) {
    let options = Options {
        accounts: vec![(1, 100_000)],
        ..Options::default()
    };
    let db = Arc::new(Db::open(dir, options).unwrap());
    let per_task = appends / (threads * tasks) as u64;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let worker = Rc::new(db.worker(espora::Backend::IoUring).unwrap());
                    let joins: Vec<_> = (0..tasks)
                        .map(|task| {
                            let worker = Rc::clone(&worker);
                            monoio::spawn(async move {
                                for i in 0..per_task {
                                    let kind = if (i + task as u64).is_multiple_of(2) {
                                        Kind::Credit
                                    } else {
                                        Kind::Debit
                                    };
                                    let tx = Transaction {
                                        value: 100,
                                        kind,
                                        description: "benchmark",
                                    };
                                    match worker.append(1, &tx.validate().unwrap()).await {
                                        Ok(_) | Err(AppendError::LimitExceeded) => {}
                                        Err(e) => panic!("{e:?}"),
                                    }
                                }
                            })
                        })
                        .collect();
                    for join in joins {
                        join.await;
                    }
                })
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let stats = db.stats();
    (stats.appends, stats.syncs)
}
