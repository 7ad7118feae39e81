//! `rinha-scenario`: runs the reference scenario against a running stack. See `--help`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rinha_rt::flags::{self, FlagKind, FlagSpec, Flags};
use rinha_scenario::{load, scenario, Config, Target};

const PROGRAM: &str = "rinha-scenario";
const VERSION: &str = env!("CARGO_PKG_VERSION");

const SPECS: &[FlagSpec] = &[
    spec("target", "RINHA_SCENARIO_TARGET", FlagKind::Value),
    spec("ramp", "RINHA_SCENARIO_RAMP", FlagKind::Value),
    spec("hold", "RINHA_SCENARIO_HOLD", FlagKind::Value),
    spec("threads", "RINHA_SCENARIO_THREADS", FlagKind::Value),
    spec("timeout", "RINHA_SCENARIO_TIMEOUT", FlagKind::Value),
    spec("wait", "RINHA_SCENARIO_WAIT", FlagKind::Value),
    spec("seed", "RINHA_SCENARIO_SEED", FlagKind::Value),
    spec("load-only", "RINHA_SCENARIO_LOAD_ONLY", FlagKind::Switch),
];

const fn spec(name: &'static str, env: &'static str, kind: FlagKind) -> FlagSpec {
    FlagSpec {
        name,
        env: Some(env),
        kind,
    }
}

const USAGE: &str = "\
rinha-scenario: the reference load test (LOAD.md) against a running stack

Usage:
  rinha-scenario [--target http://HOST:PORT] [--ramp 2m] [--hold 2m] [options]

Runs phases 1 to 3 (concurrent validations, validation chain of every account, 404), then the
load phase: debits, credits and statements ramping from 1 user/s to 220, 110 and 10 users/s over
--ramp, then holding the peak for --hold. Every request opens a new TCP connection. Durations
take ms, s or m (e.g. 500ms, 20s, 2m). Exit status: 0 when every check passed, 1 when a check
failed or a balance was seen below its limit, 2 for bad flags, 3 when the API is not ready or
not fresh.

Flags (each falls back to the environment variable in brackets; the flag wins):
  --target URL      the stack, http://HOST:PORT (default http://localhost:9999)
                    [RINHA_SCENARIO_TARGET]
  --ramp DURATION   ramp length (default 2m, the reference)      [RINHA_SCENARIO_RAMP]
  --hold DURATION   peak hold length (default 2m, the reference) [RINHA_SCENARIO_HOLD]
  --threads N       client threads for load users (default 256)  [RINHA_SCENARIO_THREADS]
  --timeout DURATION  bound on one request (default 60s, Gatling's) [RINHA_SCENARIO_TIMEOUT]
  --wait DURATION   how long to wait for GET /clientes/1/extrato to answer 200 before
                    starting (default 60s)                       [RINHA_SCENARIO_WAIT]
  --seed N          random seed (default: from the clock)        [RINHA_SCENARIO_SEED]
  --load-only       skip phases 1 to 3, which need fresh accounts [RINHA_SCENARIO_LOAD_ONLY]
  --help, --version
";

/// Default client threads: enough for about 0.75 s of peak arrivals to be in flight at once.
const THREADS_DEFAULT: usize = 256;

fn main() -> ExitCode {
    let flags = flags::parse_or_exit(SPECS, PROGRAM, USAGE, &format!("{PROGRAM} {VERSION}"));
    let (config, wait) =
        configure(&flags).unwrap_or_else(|error| flags::exit_usage(PROGRAM, &error));
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
    let started = std::time::Instant::now();
    let report = scenario::run(&config);
    println!("{report}");
    println!("elapsed: {:.1} s", started.elapsed().as_secs_f64());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn configure(flags: &Flags) -> Result<(Config, Duration), String> {
    let target_text = flags.value("target").unwrap_or("http://localhost:9999");
    let target = Target::parse(target_text).map_err(|error| format!("--target: {error}"))?;
    let duration = |name: &str, default: Duration| -> Result<Duration, String> {
        match flags.value(name) {
            None => Ok(default),
            Some(text) => parse_duration(text).ok_or_else(|| {
                format!(
                    "invalid {} {text:?}: expected e.g. 500ms, 20s or 2m",
                    flags.source(name)
                )
            }),
        }
    };
    let threads = flags
        .parsed::<usize>("threads")
        .map_err(|e| e.to_string())?
        .unwrap_or(THREADS_DEFAULT);
    if threads == 0 {
        return Err("--threads must be at least 1".to_string());
    }
    let seed = flags
        .parsed::<u64>("seed")
        .map_err(|e| e.to_string())?
        .unwrap_or_else(clock_seed);
    let config = Config {
        target,
        ramp: duration("ramp", Duration::from_secs(120))?,
        hold: duration("hold", Duration::from_secs(120))?,
        threads,
        timeout: duration("timeout", Duration::from_secs(60))?,
        seed,
        load_only: flags.switch("load-only"),
    };
    if config.timeout.is_zero() {
        return Err("--timeout must be positive".to_string());
    }
    Ok((config, duration("wait", Duration::from_secs(60))?))
}

/// Parses `500ms`, `20s`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
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

    fn check(input: &str, expected: Option<Duration>) {
        assert_eq!(parse_duration(input), expected, "input {input:?}");
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
}
