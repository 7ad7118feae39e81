//! `rinha-scenario`: runs the reference scenario against a running stack. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rinha_rt::flags;
use rinha_scenario::machine::Machine;
use rinha_scenario::report::{html, Run};
use rinha_scenario::{load, scenario, Config, Target};

const PROGRAM: &str = "rinha-scenario";

/// rinha-scenario: the reference load test (docs/load-test.md) against a running stack
#[derive(clap::Parser, Debug)]
#[command(
    name = PROGRAM,
    version,
    override_usage = "rinha-scenario [--target http://HOST:PORT] [--ramp 2m] [--hold 2m] [options]",
    after_help = AFTER_HELP
)]
struct Args {
    /// The stack, http://HOST:PORT
    #[arg(
        long,
        value_name = "URL",
        env = "RINHA_SCENARIO_TARGET",
        default_value = "http://localhost:9999"
    )]
    target: String,
    /// Ramp length (the reference: 2m)
    #[arg(
        long,
        value_name = "DURATION",
        env = "RINHA_SCENARIO_RAMP",
        default_value = "2m",
        value_parser = parse_duration
    )]
    ramp: Duration,
    /// Peak hold length (the reference: 2m)
    #[arg(
        long,
        value_name = "DURATION",
        env = "RINHA_SCENARIO_HOLD",
        default_value = "2m",
        value_parser = parse_duration
    )]
    hold: Duration,
    /// Client threads for load users
    #[arg(
        long,
        value_name = "N",
        env = "RINHA_SCENARIO_THREADS",
        default_value_t = THREADS_DEFAULT,
        value_parser = flags::at_least_one
    )]
    threads: usize,
    /// Bound on one request (Gatling's default)
    #[arg(
        long,
        value_name = "DURATION",
        env = "RINHA_SCENARIO_TIMEOUT",
        default_value = "60s",
        value_parser = parse_duration
    )]
    timeout: Duration,
    /// How long to wait for GET /clientes/1/extrato to answer 200 before starting
    #[arg(
        long,
        value_name = "DURATION",
        env = "RINHA_SCENARIO_WAIT",
        default_value = "60s",
        value_parser = parse_duration
    )]
    wait: Duration,
    /// Random seed (default: from the clock)
    #[arg(long, value_name = "N", env = "RINHA_SCENARIO_SEED")]
    seed: Option<u64>,
    /// Skip phases 1 to 3, which need fresh accounts
    #[arg(
        long,
        env = "RINHA_SCENARIO_LOAD_ONLY",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    load_only: bool,
    /// Also write an HTML report of the run to DIR/index.html (created before the run starts)
    #[arg(long, value_name = "DIR", env = "RINHA_SCENARIO_REPORT")]
    report: Option<PathBuf>,
}

/// Default client threads: enough for about 0.75 s of peak arrivals to be in flight at once.
const THREADS_DEFAULT: usize = 256;

const AFTER_HELP: &str = "\
Runs phases 1 to 3 (concurrent validations, validation chain of every account, 404), then the
load phase: debits, credits and statements ramping from 1 user/s to 220, 110 and 10 users/s over
--ramp, then holding the peak for --hold. Every request opens a new TCP connection. Durations
take ms, s or m (e.g. 500ms, 20s, 2m). Each flag falls back to its environment variable; the
flag wins.

--report DIR writes one self-contained page that reads offline: the verdict, the table of
requests, response-time percentiles and requests per second (by status) over the run, the
response-time distribution against the 250 ms SLA, the inconsistencies and failed checks, the
run's settings and the machine.

Exit status: 0 when every check passed, 1 when a check failed or a balance was seen below its
limit, 2 for bad flags (a --report DIR that cannot be created included), 3 when the API is not
ready or not fresh, 4 when every check passed but the report could not be written.";

fn main() -> ExitCode {
    let args: Args = flags::parse_or_exit();
    let report_dir = args.report.clone();
    let (config, wait) = configure(args).unwrap_or_else(|error| flags::exit_usage(PROGRAM, &error));
    // Before the run, so that a directory that cannot hold the page fails at once.
    let output = report_dir.map(|dir| {
        html::Output::create(&dir)
            .unwrap_or_else(|error| flags::exit_usage(PROGRAM, &format!("--report: {error}")))
    });
    match scenario::wait_ready(&config.target, wait) {
        Ok(waited) => eprintln!("{PROGRAM}: API ready after {} ms", waited.as_millis()),
        Err(error) => {
            eprintln!("{PROGRAM}: {error}");
            return ExitCode::from(3);
        }
    }
    if !config.load_only {
        if let Err(error) = scenario::check_fresh(&config) {
            eprintln!("{PROGRAM}: {error}");
            return ExitCode::from(3);
        }
    }
    print_plan(&config);
    let started_unix_us = unix_us(SystemTime::now());
    let started = Instant::now();
    let report = scenario::run(&config);
    let elapsed = started.elapsed();
    println!("{report}");
    println!("elapsed: {:.1} s", elapsed.as_secs_f64());
    let mut status = if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if let Some(output) = output {
        let path = output.path().to_path_buf();
        let run = Run {
            config,
            started_unix_us,
            elapsed,
            machine: Machine::read(),
        };
        match output.write(&report, &run) {
            Ok(bytes) => eprintln!("{PROGRAM}: report: {} ({bytes} bytes)", path.display()),
            Err(error) => {
                eprintln!("{PROGRAM}: report: {error}");
                if report.passed() {
                    status = ExitCode::from(4);
                }
            }
        }
    }
    status
}

fn configure(args: Args) -> Result<(Config, Duration), String> {
    let target = Target::parse(&args.target).map_err(|error| format!("--target: {error}"))?;
    if args.timeout.is_zero() {
        return Err("--timeout must be positive".to_string());
    }
    let config = Config {
        target,
        ramp: args.ramp,
        hold: args.hold,
        threads: args.threads,
        timeout: args.timeout,
        seed: args.seed.unwrap_or_else(clock_seed),
        load_only: args.load_only,
    };
    Ok((config, args.wait))
}

/// Parses `500ms`, `20s`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    duration(text).ok_or_else(|| "expected e.g. 500ms, 20s or 2m".to_string())
}

fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1_000)
    };
    let number: u64 = number.trim().parse().ok()?;
    Some(Duration::from_millis(number.checked_mul(unit_ms)?))
}

fn unix_us(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(1)
}

fn print_plan(config: &Config) {
    let users = |kind| load::injection(config, kind).users_total();
    println!(
        "{PROGRAM}: target {} ({}), ramp {:?}, hold {:?}, seed {}{}",
        config.target.host,
        config.target.addr,
        config.ramp,
        config.hold,
        config.seed,
        if config.load_only { ", load only" } else { "" }
    );
    println!(
        "load users: debits {} (peak {}/s), credits {} (peak {}/s), statements {} (peak {}/s)",
        users(load::Kind::Debit),
        load::DEBITS_PEAK_PER_S,
        users(load::Kind::Credit),
        load::CREDITS_PEAK_PER_S,
        users(load::Kind::Statement),
        load::STATEMENTS_PEAK_PER_S
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Option<Duration>) {
        assert_eq!(duration(input), expected, "input {input:?}");
    }

    #[test]
    fn durations() {
        check("500ms", Some(Duration::from_millis(500)));
        check("20s", Some(Duration::from_secs(20)));
        check("2m", Some(Duration::from_secs(120)));
        check("7", Some(Duration::from_secs(7)));
        check("0s", Some(Duration::ZERO));
        check("1h", None);
        check("-1s", None);
        check("s", None);
    }

    #[test]
    fn the_readme_documents_these_flags() {
        let readme = include_str!("../../../README.md");
        flags::table::assert_documented::<Args>(readme, &[PROGRAM]);
    }
}
