//! What a run observed: every request (its name, start, response time, status and whether its
//! checks passed), failed checks, inconsistencies (counted as the official scoring counts them,
//! see `call`), and how late the client started users (its own health). Each thread fills its own
//! `Recorder`; they are merged at the end, so recording takes no lock.
//!
//! Every request is kept, not only its response time, because the HTML report (`report`) draws
//! the run second by second. A [`Sample`] is at most [`SAMPLE_BYTES_MAX`] bytes: the reference
//! run's 61,503 requests take under 3 MiB, and a ten-minute soak of two clients at the peak
//! (about 210,000 requests each) about 10 MiB per client.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// The challenge's latency bound: slower responses count against the 98% SLA.
pub const SLA: Duration = Duration::from_millis(250);

/// The name of the summary of every request, the last row of the tables.
pub const ALL: &str = "all";

/// Failure messages kept for the report; the counts stay exact beyond it.
pub const MESSAGES_MAX: usize = 20;

/// Size of one recorded request, which bounds a run's memory at this many bytes per request.
pub const SAMPLE_BYTES_MAX: usize = 48;

const _: () = assert!(std::mem::size_of::<Sample>() <= SAMPLE_BYTES_MAX);

/// One finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The request name, which groups it in the report.
    pub name: &'static str,
    /// When it started: before `connect`.
    pub started: Instant,
    /// From `started` to the last byte of the answer, or to the failure, in microseconds.
    pub latency_us: u64,
    /// The answer's status; `None` when there was none (refused connection, timeout, a
    /// malformed or truncated answer).
    pub status: Option<u16>,
    /// Every check on it passed (Gatling's OK).
    pub ok: bool,
}

impl Sample {
    /// A request named `name` that started at `started` and took `latency`.
    pub fn new(
        name: &'static str,
        started: Instant,
        latency: Duration,
        status: Option<u16>,
        ok: bool,
    ) -> Sample {
        Sample {
            name,
            started,
            latency_us: micros(latency),
            status,
            ok,
        }
    }
}

/// Observations of one thread, or of a whole run once merged.
#[derive(Debug, Default)]
pub struct Recorder {
    samples: Vec<Sample>,
    failures_total: u64,
    failures: Vec<String>,
    inconsistencies_total: u64,
    inconsistencies: Vec<String>,
    lags_us: Vec<u64>,
}

impl Recorder {
    /// Records one finished request.
    pub fn request(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// Records a failed check (the request itself is recorded by `request`).
    pub fn failure(&mut self, message: String) {
        self.failures_total += 1;
        if self.failures.len() < MESSAGES_MAX {
            self.failures.push(message);
        }
    }

    /// Records an inconsistency: a request whose first failed check is one the official scoring
    /// counts (a balance below its limit, a wrong exact total).
    pub fn inconsistency(&mut self, message: String) {
        self.inconsistencies_total += 1;
        if self.inconsistencies.len() < MESSAGES_MAX {
            self.inconsistencies.push(message);
        }
    }

    /// Records how late a load user started after its scheduled time.
    pub fn lag(&mut self, lag: Duration) {
        self.lags_us.push(micros(lag));
    }

    /// Adds everything `other` saw.
    pub fn merge(&mut self, other: Recorder) {
        self.samples.extend(other.samples);
        self.failures_total += other.failures_total;
        let room = MESSAGES_MAX.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
        self.inconsistencies_total += other.inconsistencies_total;
        let room = MESSAGES_MAX.saturating_sub(self.inconsistencies.len());
        self.inconsistencies
            .extend(other.inconsistencies.into_iter().take(room));
        self.lags_us.extend(other.lags_us);
    }

    /// Summarises the observations.
    pub fn report(self) -> Report {
        let mut samples = self.samples;
        samples.sort_by_key(|sample| sample.started);
        let mut by_name: BTreeMap<&'static str, Vec<&Sample>> = BTreeMap::new();
        for sample in &samples {
            by_name.entry(sample.name).or_default().push(sample);
        }
        let groups = by_name
            .into_iter()
            .map(|(name, group)| Summary::of(name, &group))
            .collect();
        let all = Summary::of(ALL, &samples.iter().collect::<Vec<_>>());
        let mut lags = self.lags_us;
        lags.sort_unstable();
        Report {
            groups,
            all,
            failures_total: self.failures_total,
            failures: self.failures,
            inconsistencies_total: self.inconsistencies_total,
            inconsistencies: self.inconsistencies,
            lag_p99_us: percentile(&lags, 99.0),
            lag_max_us: lags.last().copied().unwrap_or(0),
            samples,
        }
    }
}

/// Response-time figures of one request name (or of all).
#[derive(Clone, Debug)]
pub struct Summary {
    /// The request name.
    pub name: &'static str,
    /// Requests sent.
    pub count: u64,
    /// Requests with a failed check or no answer.
    pub ko: u64,
    /// Requests answered in less than [`SLA`] (the scoring's "t < 250 ms"), KO or not.
    pub under_sla: u64,
    /// Those of them OK: what the SLA counts.
    pub ok_under_sla: u64,
    /// The fastest response, in microseconds.
    pub min_us: u64,
    /// Percentiles 50, 75, 95, 99 and the maximum, in microseconds.
    pub p50_us: u64,
    /// See `p50_us`.
    pub p75_us: u64,
    /// See `p50_us`.
    pub p95_us: u64,
    /// See `p50_us`.
    pub p99_us: u64,
    /// See `p50_us`.
    pub max_us: u64,
}

impl Summary {
    fn of(name: &'static str, samples: &[&Sample]) -> Summary {
        let mut sorted: Vec<u64> = samples.iter().map(|sample| sample.latency_us).collect();
        sorted.sort_unstable();
        let under = || {
            samples
                .iter()
                .filter(|sample| sample.latency_us < micros(SLA))
        };
        Summary {
            name,
            count: samples.len() as u64,
            ko: samples.iter().filter(|sample| !sample.ok).count() as u64,
            under_sla: under().count() as u64,
            ok_under_sla: under().filter(|sample| sample.ok).count() as u64,
            min_us: sorted.first().copied().unwrap_or(0),
            p50_us: percentile(&sorted, 50.0),
            p75_us: percentile(&sorted, 75.0),
            p95_us: percentile(&sorted, 95.0),
            p99_us: percentile(&sorted, 99.0),
            max_us: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// One summary per request name, by name.
    pub groups: Vec<Summary>,
    /// All requests together.
    pub all: Summary,
    /// Failed checks (a request can fail several).
    pub failures_total: u64,
    /// The first failure messages.
    pub failures: Vec<String>,
    /// Inconsistencies as the official scoring counts them: requests whose first failed check
    /// is a balance-within-limit check (`ConsistenciaSaldoLimite`) or an exact `saldo.total`.
    pub inconsistencies_total: u64,
    /// The first inconsistency messages.
    pub inconsistencies: Vec<String>,
    /// How late load users started, 99th percentile and worst (client saturation).
    pub lag_p99_us: u64,
    /// See `lag_p99_us`.
    pub lag_max_us: u64,
    /// Every request, by start time.
    pub samples: Vec<Sample>,
}

impl Report {
    /// True when no check failed and no inconsistency was seen.
    pub fn passed(&self) -> bool {
        self.failures_total == 0 && self.inconsistencies_total == 0 && self.all.ko == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>7} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "request", "count", "ko", "≥250ms", "p50 ms", "p75 ms", "p95 ms", "p99 ms", "max ms"
        )?;
        for summary in self.groups.iter().chain(std::iter::once(&self.all)) {
            writeln!(
                f,
                "{:<12} {:>7} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
                summary.name,
                summary.count,
                summary.ko,
                summary.count - summary.under_sla,
                ms(summary.p50_us),
                ms(summary.p75_us),
                ms(summary.p95_us),
                ms(summary.p99_us),
                ms(summary.max_us)
            )?;
        }
        let within = if self.all.count == 0 {
            100.0
        } else {
            100.0 * self.all.ok_under_sla as f64 / self.all.count as f64
        };
        writeln!(f, "within 250 ms and OK: {within:.3}% (the SLA asks 98%)")?;
        writeln!(
            f,
            "client start lag: p99 {} ms, max {} ms (high values mean the client machine was saturated)",
            ms(self.lag_p99_us),
            ms(self.lag_max_us)
        )?;
        writeln!(f, "failed checks: {}", self.failures_total)?;
        for message in &self.failures {
            writeln!(f, "  - {message}")?;
        }
        writeln!(
            f,
            "inconsistencies (balance below the limit or wrong exact total, as the official \
             scoring counts them): {}",
            self.inconsistencies_total
        )?;
        for message in &self.inconsistencies {
            writeln!(f, "  - {message}")?;
        }
        write!(f, "{}", if self.passed() { "PASSED" } else { "FAILED" })
    }
}

/// Nearest-rank percentile of sorted values; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds in `duration`, saturating.
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(values: &[u64], p: f64, expected: u64) {
        assert_eq!(percentile(values, p), expected, "p{p} of {values:?}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        check(&[], 50.0, 0);
        check(&[7], 99.0, 7);
        check(&[1, 2, 3, 4], 50.0, 2);
        check(&[1, 2, 3, 4], 75.0, 3);
        check(&[1, 2, 3, 4], 100.0, 4);
        let hundred: Vec<u64> = (1..=100).collect();
        check(&hundred, 99.0, 99);
        check(&hundred, 95.0, 95);
        check(&hundred, 0.0, 1);
    }

    /// A request named `name` that started `at_ms` after `epoch` and took `latency_ms`.
    fn sample(epoch: Instant, name: &'static str, at_ms: u64, latency_ms: u64, ok: bool) -> Sample {
        let at = Duration::from_millis(at_ms);
        let status = Some(if ok { 200 } else { 500 });
        Sample::new(
            name,
            epoch + at,
            Duration::from_millis(latency_ms),
            status,
            ok,
        )
    }

    #[test]
    fn merged_recorders_keep_counts_and_fail_the_run() {
        let epoch = Instant::now();
        let mut left = Recorder::default();
        left.request(sample(epoch, "débitos", 5, 1, true));
        left.request(sample(epoch, "débitos", 0, 300, true));
        let mut right = Recorder::default();
        right.request(sample(epoch, "créditos", 3, 2, false));
        // Exactly the SLA counts against it, as in the scoring's "t < 250 ms".
        right.request(sample(epoch, "créditos", 4, 250, true));
        right.failure("credit: status 500".to_string());
        left.merge(right);
        let report = left.report();
        assert_eq!(report.all.count, 4);
        assert_eq!(report.all.ko, 1);
        assert_eq!(report.all.under_sla, 2);
        assert_eq!(report.groups.len(), 2);
        assert_eq!(report.failures_total, 1);
        assert!(!report.passed());
        assert!(report.to_string().ends_with("FAILED"));
        let starts: Vec<Duration> = report.samples.iter().map(|s| s.started - epoch).collect();
        assert_eq!(
            starts,
            [0, 3, 4, 5].map(Duration::from_millis),
            "samples by start time"
        );
        let mut clean = Recorder::default();
        clean.request(Sample::new(
            "extratos",
            epoch,
            Duration::from_micros(900),
            Some(200),
            true,
        ));
        let report = clean.report();
        assert!(report.passed());
        assert_eq!(report.all.p99_us, 900);
    }
}
