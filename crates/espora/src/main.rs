//! `espora`: the storage engine's own tool (init, verify, dump, probe-disk).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use espora::device::Image;
use espora::file::{self, Mapping};
use espora::layout::{Record, RECORD_SIZE, RING_RECORDS_DEFAULT};
use espora::shared;
use espora::verify::{self, Scan, Slots};
use espora::{Corruption, Db, Options};

/// espora: the storage engine's own tool
#[derive(clap::Parser, Debug)]
#[command(name = "espora", version)]
enum Tool {
    /// Create the files of the given accounts if missing (idempotent)
    Init {
        /// The data directory, created if missing
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// An account to create, as its id and credit limit in cents (repeatable)
        #[arg(
            long = "account",
            value_name = "ID:LIMIT",
            required = true,
            value_parser = parse_account
        )]
        accounts: Vec<(u32, i64)>,
        /// Records per ring, fixed at creation: 64 to 8,388,608, a multiple of 32
        #[arg(long, value_name = "N", default_value_t = RING_RECORDS_DEFAULT)]
        ring_records: u64,
    },
    /// Check every record: checksums, sequence, balance chain, limit; prints a summary per
    /// account; exit 0 only if all is sound
    Verify {
        /// A data directory (every account file in it) or one account file
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
        Tool::Init {
            dir,
            accounts,
            ring_records,
        } => init(
            &dir,
            Options {
                accounts,
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
    let accounts = options.accounts.len();
    Db::open(dir, options).map_err(|e| e.to_string())?;
    println!("{}: {accounts} accounts ready", dir.display());
    Ok(())
}

/// `ID:LIMIT`, both decimal; the limit in cents, not negative.
fn parse_account(text: &str) -> Result<(u32, i64), String> {
    let (id, limit) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected ID:LIMIT"))?;
    let id = id
        .parse()
        .map_err(|_| format!("{id:?}: not an account id"))?;
    let limit = limit
        .parse::<i64>()
        .ok()
        .filter(|&limit| limit >= 0)
        .ok_or_else(|| format!("{limit:?}: not a credit limit in cents"))?;
    Ok((id, limit))
}

/// The account files of `dir` (named `account-<id>.espora`), by id.
fn account_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = name
                .strip_prefix("account-")?
                .strip_suffix(".espora")?
                .parse()
                .ok()?;
            (file::account_file_name(id) == name).then(|| (id, entry.path()))
        })
        .collect();
    if files.is_empty() {
        return Err(format!("{}: no account files", dir.display()));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

fn verify_target(target: &Path) -> Result<(), String> {
    let files: Vec<PathBuf> = if target.is_dir() {
        account_files(target)?
    } else {
        vec![target.into()]
    };
    let mut failures = 0;
    let mut out = Some(io::stdout().lock());
    for path in &files {
        let line = match verify_file(path) {
            Ok(summary) => summary,
            Err(problem) => {
                failures += 1;
                format!("{}: FAILED: {problem}", path.display())
            }
        };
        // A reader that went away (`| head`) ends the report, not the checks or the verdict.
        if out.as_mut().is_some_and(|o| writeln!(o, "{line}").is_err()) {
            out = None;
        }
    }
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} of {} files failed verification", files.len())),
    }
}

/// What one file holds on its device, read under a shared lock.
struct Checked {
    mapping: Mapping,
    image: Image,
    scan: Result<Scan, Corruption>,
    /// 128-byte pieces where the page cache shows other bytes than the device.
    stale: u64,
}

/// Checks one file as its device holds it (not as the page cache shows it), under a shared lock,
/// with the durable watermark of its shared-state file when that belongs to it in this boot.
fn scan_file(path: &Path) -> Result<Checked, String> {
    let (handle, mapping) = file::open_existing(path).map_err(|e| e.to_string())?;
    file::lock_shared_blocking(&handle).map_err(|e| format!("flock: {e}"))?;
    let image = Image::read(path, mapping.header());
    file::unlock(&handle);
    let image = image.map_err(|e| format!("reading the device: {e}"))?;
    let shared_path = path.with_extension("espora-state");
    let scan = verify::scan(&image, shared::peek_durable(&shared_path, mapping.header()));
    let stale = image
        .differences(&mapping)
        .map_err(|e| format!("mincore: {e}"))?
        .iter()
        .map(|run| run.len() as u64 / RECORD_SIZE as u64)
        .sum();
    Ok(Checked {
        mapping,
        image,
        scan,
        stale,
    })
}

fn verify_file(path: &Path) -> Result<String, String> {
    let checked = scan_file(path)?;
    let scan = checked.scan.as_ref().map_err(|c| c.to_string())?;
    let header = checked.mapping.header();
    Ok(format!(
        "{}: ok: account {} limit {} records {} (seq {}..={}) balance {} lowest {} anchor {}{}",
        path.display(),
        header.account_id,
        header.limit,
        retained(scan),
        scan.oldest,
        scan.newest,
        scan.balance,
        scan.balance_min,
        scan.anchor,
        notes(&checked, scan)
    ))
}

fn retained(scan: &Scan) -> u64 {
    if scan.newest == 0 {
        0
    } else {
        scan.newest - scan.oldest + 1
    }
}

fn notes(checked: &Checked, scan: &Scan) -> String {
    let mut notes = String::new();
    if !checked.image.is_direct() {
        notes.push_str("; read through the page cache (the file system has no direct I/O)");
    }
    if checked.stale > 0 {
        notes.push_str(&format!(
            "; {} piece(s) of 128 bytes in the page cache differ from the device (a failed \
             writeback; the next open puts the device's bytes back)",
            checked.stale
        ));
    }
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
    let checked = scan_file(path)?;
    let scan = (checked.scan.as_ref()).map_err(|c| format!("{}: {c}", path.display()))?;
    let records: Vec<Record> = match scan.newest {
        0 => Vec::new(),
        newest => (scan.oldest..=newest)
            .filter_map(|seq| checked.image.record(seq))
            .collect(),
    };
    let header = checked.mapping.header();
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
            "{{\"account\":{account},\"seq\":{},\"time\":\"{time}\",\"kind\":\"{}\",\"value\":{},\"balance\":{},\"description\":{description}}}",
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
    #[test]
    fn the_readme_documents_these_flags() {
        let readme = include_str!("../../../README.md");
        rinha_rt::flags::table::assert_documented::<super::Tool>(readme, &["espora"]);
    }
}
