//! `espora`: the storage engine's own tool (init, verify, dump, probe-disk).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use espora::file::{self, Mapping, ACCOUNTS};
use espora::layout::{Record, RING_RECORDS_DEFAULT};
use espora::shared;
use espora::verify::{self, Scan};
use espora::{Db, Options};

/// espora: the storage engine's own tool
#[derive(clap::Parser, Debug)]
#[command(name = "espora", version)]
enum Tool {
    /// Create the five seeded account files if missing (idempotent)
    Init {
        /// The data directory, created if missing
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Records per ring, fixed at creation
        #[arg(long, value_name = "N", default_value_t = RING_RECORDS_DEFAULT)]
        ring_records: u64,
    },
    /// Check every record: checksums, sequence, balance chain, limit; prints a summary per
    /// account; exit 0 only if all is sound
    Verify {
        /// A data directory (its five account files) or one account file
        #[arg(value_name = "DIR|FILE")]
        target: PathBuf,
    },
    /// Print every record, oldest first
    Dump {
        /// An account file
        #[arg(value_name = "FILE")]
        path: PathBuf,
        /// One JSON object per line instead of text
        #[arg(long)]
        json: bool,
    },
    /// Time the disk's flush as espora's durable path sees it: writes of one 128-byte record,
    /// each followed by fdatasync, paced, in a temporary file under DIR; prints p50, p99, p99.9
    /// and max
    ProbeDisk {
        /// A directory on the disk to measure, such as the data directory
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Writes
        #[arg(
            long,
            value_name = "N",
            default_value_t = 2000,
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        count: u32,
        /// Milliseconds from the start of one write to the start of the next
        #[arg(long, value_name = "MS", default_value_t = 3)]
        interval_ms: u64,
    },
}

fn main() -> ExitCode {
    // clap prints --help and --version to stdout (exit 0) and a bad command line with the
    // usage to stderr (exit 2).
    let result = match Tool::parse() {
        Tool::Init { dir, ring_records } => init(
            &dir,
            Options {
                ring_records,
                ..Options::default()
            },
        ),
        Tool::Verify { target } => verify_target(&target),
        Tool::Dump { path, json } => dump(&path, json),
        Tool::ProbeDisk {
            dir,
            count,
            interval_ms,
        } => probe_disk(&dir, count, interval_ms),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("espora: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init(dir: &Path, options: Options) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{}: exists and is not a directory", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    Db::open(dir, options).map_err(|e| e.to_string())?;
    println!("{}: {} accounts ready", dir.display(), ACCOUNTS.len());
    Ok(())
}

fn verify_target(target: &Path) -> Result<(), String> {
    let files: Vec<PathBuf> = if target.is_dir() {
        let mut missing = Vec::new();
        let files = ACCOUNTS
            .iter()
            .map(|&(id, _)| target.join(file::account_file_name(id)))
            .inspect(|path| {
                if !path.exists() {
                    missing.push(path.display().to_string());
                }
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!("missing account files: {}", missing.join(", ")));
        }
        files
    } else {
        vec![target.into()]
    };
    let mut failures = 0;
    for path in &files {
        match verify_file(path) {
            Ok(summary) => println!("{summary}"),
            Err(problem) => {
                failures += 1;
                println!("{}: FAILED: {problem}", path.display());
            }
        }
    }
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} of {} files failed verification", files.len())),
    }
}

/// Checks one file under a shared lock, with the durable watermark of its shared-state file when
/// that belongs to it.
fn scan_file(path: &Path) -> Result<(Mapping, Result<Scan, verify::Corruption>), String> {
    let (handle, mapping) = file::open_existing(path).map_err(|e| e.to_string())?;
    file::lock_shared_blocking(&handle).map_err(|e| format!("flock: {e}"))?;
    let shared_path = path.with_extension("espora-shm");
    let scan = verify::scan(
        &mapping,
        shared::peek_durable(&shared_path, mapping.header()),
    );
    file::unlock(&handle);
    Ok((mapping, scan))
}

fn verify_file(path: &Path) -> Result<String, String> {
    let (mapping, scan) = scan_file(path)?;
    let scan = scan.map_err(|c| c.to_string())?;
    let header = mapping.header();
    Ok(format!(
        "{}: ok: account {} limit {} records {} (seq {}..={}) balance {} lowest {} anchor {}{}",
        path.display(),
        header.account_id,
        header.limit,
        retained(&scan),
        scan.oldest,
        scan.newest,
        scan.balance,
        scan.balance_min,
        scan.anchor,
        notes(&scan)
    ))
}

fn retained(scan: &Scan) -> u64 {
    if scan.newest == 0 {
        0
    } else {
        scan.newest - scan.oldest + 1
    }
}

fn notes(scan: &Scan) -> String {
    let mut notes = String::new();
    if scan.torn_tail {
        notes.push_str("; torn unacknowledged write after the newest record (harmless)");
    }
    if !scan.orphans.is_empty() {
        notes.push_str(&format!(
            "; {} unacknowledged leftover slot(s) beyond the newest record (erased at next open)",
            scan.orphans.len()
        ));
    }
    notes
}

fn dump(path: &Path, json: bool) -> Result<(), String> {
    let (mapping, scan) = scan_file(path)?;
    let records: Vec<Record> = match &scan {
        Ok(scan) if scan.newest > 0 => (scan.oldest..=scan.newest)
            .filter_map(|seq| mapping.read_record(seq))
            .collect(),
        _ => Vec::new(),
    };
    let scan = scan.map_err(|c| format!("{}: {c}", path.display()))?;
    let header = mapping.header();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = (|| -> io::Result<()> {
        if !json {
            writeln!(
                out,
                "# {}: account {} limit {} balance {} records {}",
                path.display(),
                header.account_id,
                header.limit,
                scan.balance,
                records.len()
            )?;
        }
        for record in &records {
            write_record(&mut out, header.account_id, record, json)?;
        }
        out.flush()
    })();
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| format!("writing output: {e}")),
    }
}

fn write_record(out: &mut impl Write, account: u32, record: &Record, json: bool) -> io::Result<()> {
    let time = espora::time::rfc3339_us(record.timestamp_us);
    let time = std::str::from_utf8(&time).expect("ASCII timestamp");
    if json {
        let description = serde_json::to_string(record.description()).expect("string");
        writeln!(
            out,
            "{{\"conta\":{account},\"seq\":{},\"realizada_em\":\"{time}\",\"tipo\":\"{}\",\"valor\":{},\"saldo\":{},\"descricao\":{description}}}",
            record.seq,
            record.kind.as_char(),
            record.value,
            record.balance,
        )
    } else {
        writeln!(
            out,
            "{:>8} {time} {} {:>12} {:>14} {:?}",
            record.seq,
            record.kind.as_char(),
            record.value,
            record.balance,
            record.description()
        )
    }
}

/// Paced flushes: the latency an acknowledgement pays for the disk alone, with nothing else
/// going on (the benchmark's disk row).
fn probe_disk(dir: &Path, count: u32, interval_ms: u64) -> Result<(), String> {
    let path = dir.join(format!(".espora-probe.{}", std::process::id()));
    let result = time_flushes(&path, count, std::time::Duration::from_millis(interval_ms));
    let _ = std::fs::remove_file(&path);
    let mut micros = result.map_err(|e| format!("{}: {e}", path.display()))?;
    micros.sort_unstable();
    let at =
        |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)] as f64 / 1000.0;
    println!(
        "probe-disk {}: {count} writes of 128 bytes + fdatasync every {interval_ms} ms: \
         p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        dir.display(),
        at(0.50),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    Ok(())
}

fn time_flushes(path: &Path, count: u32, interval: std::time::Duration) -> io::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    // Allocated and on disk first, so that each flush writes data only, as an append's does.
    file.write_all_at(&vec![0u8; 64 * 1024], 0)?;
    file.sync_all()?;
    let started = std::time::Instant::now();
    let mut micros = Vec::with_capacity(count as usize);
    for i in 0..count {
        let due = started + interval * i;
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        let record = [i as u8 | 1; 128];
        let before = std::time::Instant::now();
        file.write_all_at(&record, u64::from(i % 512) * 128)?;
        file.sync_data()?;
        micros.push(before.elapsed().as_micros() as u64);
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Tool;

    #[test]
    fn the_readme_documents_these_flags() {
        let command = Tool::command();
        command.clone().debug_assert();
        let readme = include_str!("../../../README.md");
        if let Err(report) = rinha_rt::flags::table::compare(readme, &command, &["espora"]) {
            panic!("{report}");
        }
    }
}
