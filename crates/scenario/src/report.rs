//! The data of the HTML report (`--report DIR`): pure functions of a run's requests
//! ([`stats::Report::samples`]), one per chart, and nothing drawn. `report/chart.rs` draws them
//! with plotters and `report/html.rs` assembles the page; its table of requests is the text
//! report's own summaries ([`stats::Summary`]), so both agree to the microsecond.
//!
//! Time runs from the start of the run's first request, and a request belongs to the second in
//! which it started. Percentiles are nearest-rank ([`stats::percentile`]) over every request, KO
//! included, as in the text report.

pub mod chart;
pub mod html;

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::machine::Machine;
use crate::stats::{self, Sample, SLA};

/// What a run was, beside what it saw: its settings, when it started and how long it took, and
/// where it ran.
#[derive(Clone, Debug)]
pub struct Run {
    /// The settings of the run.
    pub config: Config,
    /// When the run started, in microseconds since the Unix epoch (UTC).
    pub started_unix_us: i64,
    /// How long the run took, from phase 1 to the last answer.
    pub elapsed: Duration,
    /// The machine the client ran on.
    pub machine: Machine,
}

/// How many kinds of [`Answer`] there are.
pub const ANSWERS: usize = 5;

/// What came back for a request, as the chart of requests per second splits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Ok,
    /// 404: the scenario's unknown account.
    NotFound,
    /// 422: a refused debit or an invalid transaction.
    Unprocessable,
    /// Any other status.
    OtherStatus,
    /// No answer: the connection was refused, timed out, or the answer was cut or malformed.
    NoAnswer,
}

impl Answer {
    /// Every kind, in the order of [`Second::answers`].
    pub const ALL: [Answer; ANSWERS] = [
        Answer::Ok,
        Answer::NotFound,
        Answer::Unprocessable,
        Answer::OtherStatus,
        Answer::NoAnswer,
    ];

    /// The kind of an answer with `status`, `None` for no answer.
    pub fn of(status: Option<u16>) -> Answer {
        match status {
            Some(200) => Answer::Ok,
            Some(404) => Answer::NotFound,
            Some(422) => Answer::Unprocessable,
            Some(_) => Answer::OtherStatus,
            None => Answer::NoAnswer,
        }
    }

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Answer::Ok => "200",
            Answer::NotFound => "404",
            Answer::Unprocessable => "422",
            Answer::OtherStatus => "other status",
            Answer::NoAnswer => "no answer",
        }
    }

    /// Its place in [`Answer::ALL`] and [`Second::answers`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Response-time percentiles of a set of requests, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50_us: u64,
    /// See `p50_us`.
    pub p95_us: u64,
    /// See `p50_us`.
    pub p99_us: u64,
    /// The slowest.
    pub max_us: u64,
}

/// The requests that started in one second of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Second {
    /// How many, by what came back ([`Answer::index`]).
    pub answers: [u64; ANSWERS],
    /// How many were KO: a failed check, or no answer.
    pub ko: u64,
    /// Their response times; `None` when no request started in this second.
    pub latency: Option<Percentiles>,
}

impl Second {
    /// Requests that started in this second.
    pub fn requests(&self) -> u64 {
        self.answers.iter().sum()
    }
}

/// The run second by second, from the first request's start to the last request's: entry `s`
/// holds the requests that started between `s` and `s + 1` seconds after the first one.
pub fn seconds(samples: &[Sample]) -> Vec<Second> {
    let Some(epoch) = samples.iter().map(|sample| sample.started).min() else {
        return Vec::new();
    };
    let mut latencies: Vec<Vec<u64>> = Vec::new();
    let mut seconds: Vec<Second> = Vec::new();
    for sample in samples {
        let second = usize::try_from(since(epoch, sample).as_secs()).unwrap_or(usize::MAX);
        if second >= seconds.len() {
            let empty = Second {
                answers: [0; ANSWERS],
                ko: 0,
                latency: None,
            };
            seconds.resize(second + 1, empty);
            latencies.resize(second + 1, Vec::new());
        }
        seconds[second].answers[Answer::of(sample.status).index()] += 1;
        seconds[second].ko += u64::from(!sample.ok);
        latencies[second].push(sample.latency_us);
    }
    for (second, mut latencies) in seconds.iter_mut().zip(latencies) {
        latencies.sort_unstable();
        second.latency = percentiles(&latencies);
    }
    seconds
}

/// Requests in all by what came back ([`Answer::index`]).
pub fn answers_total(samples: &[Sample]) -> [u64; ANSWERS] {
    let mut totals = [0; ANSWERS];
    for sample in samples {
        totals[Answer::of(sample.status).index()] += 1;
    }
    totals
}

/// Ten steps per decade (Renard's R10 series, each about 1.26 times the one before), as
/// multiples of 100 µs: fine enough to tell 0.5 ms from 0.63 ms, and 2.5 is one of them, so the
/// SLA's 250 ms is the edge of a bucket.
pub const DECADE_STEPS: [u64; 10] = [100, 125, 160, 200, 250, 315, 400, 500, 630, 800];

/// Decades the distribution spans, from 0.1 ms to 100 s (beyond Gatling's 60 s timeout).
const DECADES: usize = 6;

/// Bucket edges, in microseconds: 100 µs to 100 s.
pub const EDGES_US: [u64; DECADES * DECADE_STEPS.len() + 1] = edges_us();

/// Buckets of the distribution: under the first edge, between each pair, and over the last.
pub const BUCKETS: usize = EDGES_US.len() + 1;

const fn edges_us() -> [u64; DECADES * DECADE_STEPS.len() + 1] {
    let mut edges = [0; DECADES * DECADE_STEPS.len() + 1];
    let mut index = 0;
    let mut scale = 1;
    while index < edges.len() {
        edges[index] = DECADE_STEPS[index % DECADE_STEPS.len()] * scale;
        index += 1;
        if index % DECADE_STEPS.len() == 0 {
            scale *= 10;
        }
    }
    edges
}

/// The bucket whose lower edge is the SLA: it and those above hold the responses that count
/// against it.
pub const SLA_BUCKET: usize = 35;

const _: () = assert!(EDGES_US[SLA_BUCKET - 1] == SLA.as_micros() as u64);

/// One bar of the response-time distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Its lower edge, included, in microseconds.
    pub from_us: u64,
    /// Its upper edge, excluded; `None` for the last bucket.
    pub to_us: Option<u64>,
    /// Requests whose response time falls in it.
    pub requests: u64,
}

/// The bucket of a response time of `latency_us`.
pub fn bucket_of(latency_us: u64) -> usize {
    EDGES_US.partition_point(|&edge| edge <= latency_us)
}

/// The response-time distribution over every request: all [`BUCKETS`] buckets, empty ones too.
pub fn histogram(samples: &[Sample]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = (0..BUCKETS)
        .map(|index| Bucket {
            from_us: if index == 0 { 0 } else { EDGES_US[index - 1] },
            to_us: EDGES_US.get(index).copied(),
            requests: 0,
        })
        .collect();
    for sample in samples {
        buckets[bucket_of(sample.latency_us)].requests += 1;
    }
    buckets
}

fn percentiles(sorted_us: &[u64]) -> Option<Percentiles> {
    Some(Percentiles {
        p50_us: stats::percentile(sorted_us, 50.0),
        p95_us: stats::percentile(sorted_us, 95.0),
        p99_us: stats::percentile(sorted_us, 99.0),
        max_us: *sorted_us.last()?,
    })
}

fn since(epoch: Instant, sample: &Sample) -> Duration {
    sample.started.saturating_duration_since(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;

    /// A request of the tests: name, start in ms after the first, response time in µs, status
    /// (`None`: no answer), and whether its checks passed.
    type Request = (&'static str, u64, u64, Option<u16>, bool);

    /// The samples of a recording of `requests`, made on two recorders merged, as a run's threads
    /// are.
    fn recorded(requests: &[Request]) -> Vec<Sample> {
        report_of(requests).samples
    }

    /// The report of such a recording.
    fn report_of(requests: &[Request]) -> stats::Report {
        let epoch = Instant::now();
        let (mut left, mut right) = (Recorder::default(), Recorder::default());
        for (index, &(name, at_ms, latency_us, status, ok)) in requests.iter().enumerate() {
            let started = epoch + Duration::from_millis(at_ms);
            let latency = Duration::from_micros(latency_us);
            let recorder = if index % 2 == 0 {
                &mut left
            } else {
                &mut right
            };
            recorder.request(Sample::new(name, started, latency, status, ok));
        }
        left.merge(right);
        left.report()
    }

    /// One second as one line: `answers 200/404/422/other/none, ko, p50/p95/p99/max µs`.
    fn line(second: &Second) -> String {
        let [ok, not_found, unprocessable, other, none] = second.answers;
        let latency = second.latency.map_or("-".to_string(), |p| {
            format!("{}/{}/{}/{}", p.p50_us, p.p95_us, p.p99_us, p.max_us)
        });
        format!(
            "{ok}/{not_found}/{unprocessable}/{other}/{none} ko {} {latency}",
            second.ko
        )
    }

    #[track_caller]
    fn check_seconds(requests: &[Request], expected: &[&str]) {
        let seconds = seconds(&recorded(requests));
        let lines: Vec<String> = seconds.iter().map(line).collect();
        assert_eq!(lines, expected, "{requests:?}");
    }

    #[rustfmt::skip]
    #[test]
    fn per_second_answers_and_percentiles() {
        check_seconds(&[], &[]);
        check_seconds(&[("x", 0, 700, Some(200), true)], &["1/0/0/0/0 ko 0 700/700/700/700"]);
        // Seconds count from the first request; the second from 1,000 ms is the next one; a
        // second without requests stays, empty.
        check_seconds(
            &[
                ("débitos", 250, 1_000, Some(200), true),
                ("débitos", 1_249, 3_000, Some(200), true),
                ("débitos", 1_000, 2_000, Some(422), true),
                ("validações", 1_250, 10_000, Some(404), true),
                ("créditos", 3_750, 400_000, None, false),
                ("créditos", 3_850, 5_000, Some(500), false),
                ("créditos", 3_900, 6_000, Some(200), false),
            ],
            &[
                "2/0/1/0/0 ko 0 2000/3000/3000/3000",
                "0/1/0/0/0 ko 0 10000/10000/10000/10000",
                "0/0/0/0/0 ko 0 -",
                "1/0/0/1/1 ko 3 6000/400000/400000/400000",
            ],
        );
        // A hundred requests in one second: nearest-rank percentiles.
        let hundred: Vec<Request> = (1..=100).map(|ms| ("x", 0, ms * 1_000, Some(200), true)).collect();
        check_seconds(&hundred, &["100/0/0/0/0 ko 0 50000/95000/99000/100000"]);
    }

    #[track_caller]
    fn check_bucket(latency_us: u64, from_us: u64, to_us: Option<u64>) {
        let requests = [("x", 0, latency_us, Some(200), true)];
        let buckets = histogram(&recorded(&requests));
        assert_eq!(buckets.len(), BUCKETS);
        let filled: Vec<Bucket> = buckets.into_iter().filter(|b| b.requests > 0).collect();
        let expected = Bucket {
            from_us,
            to_us,
            requests: 1,
        };
        assert_eq!(filled, [expected], "a response time of {latency_us} µs");
    }

    #[rustfmt::skip]
    #[test]
    fn histogram_buckets() {
        check_bucket(0,                 0,           Some(100));
        check_bucket(99,                0,           Some(100));
        check_bucket(100,               100,         Some(125));
        check_bucket(630,               630,         Some(800));
        check_bucket(1_000,             1_000,       Some(1_250));
        check_bucket(249_999,           200_000,     Some(250_000));
        check_bucket(250_000,           250_000,     Some(315_000));
        check_bucket(60_000_000,        50_000_000,  Some(63_000_000));
        check_bucket(99_999_999,        80_000_000,  Some(100_000_000));
        check_bucket(100_000_000,       100_000_000, None);
        check_bucket(u64::MAX,          100_000_000, None);
        assert_eq!(bucket_of(stats::micros(SLA)), SLA_BUCKET);
        assert_eq!(histogram(&[])[SLA_BUCKET].from_us, 250_000);
    }

    #[test]
    fn histogram_counts_and_shares() {
        let requests = [
            ("x", 0, 450, Some(200), true),
            ("x", 1, 480, Some(200), true),
            ("x", 2, 249_999, Some(422), false),
            ("x", 3, 250_000, Some(200), true),
            ("x", 4, 900_000, None, false),
        ];
        let samples = recorded(&requests);
        let filled: Vec<(u64, u64)> = histogram(&samples)
            .iter()
            .filter(|b| b.requests > 0)
            .map(|b| (b.from_us, b.requests))
            .collect();
        assert_eq!(filled, [(400, 2), (200_000, 1), (250_000, 1), (800_000, 1)]);
        assert_eq!(answers_total(&samples), [3, 0, 1, 0, 1]);
        // Under the SLA: 450, 480 and 249,999 µs; OK among them: the first two.
        let shares = |all: stats::Summary| (all.count, all.under_sla, all.ok_under_sla);
        assert_eq!(shares(report_of(&requests).all), (5, 3, 2));
        assert_eq!(shares(report_of(&[]).all), (0, 0, 0));
    }

    /// One row of the requests table as one line:
    /// `name count ko min/p50/p75/p95/p99/max under_sla ok_under_sla`.
    fn row_line(row: &stats::Summary) -> String {
        format!(
            "{} {} {} {}/{}/{}/{}/{}/{} {} {}",
            row.name,
            row.count,
            row.ko,
            row.min_us,
            row.p50_us,
            row.p75_us,
            row.p95_us,
            row.p99_us,
            row.max_us,
            row.under_sla,
            row.ok_under_sla
        )
    }

    #[track_caller]
    fn check_table(requests: &[Request], expected: &[&str]) {
        let report = report_of(requests);
        let rows = report.groups.iter().chain([&report.all]);
        let lines: Vec<String> = rows.map(row_line).collect();
        assert_eq!(lines, expected, "{requests:?}");
    }

    #[rustfmt::skip]
    #[test]
    fn table_rows() {
        check_table(&[], &["all 0 0 0/0/0/0/0/0 0 0"]);
        check_table(
            &[
                ("validações", 0, 4_000, Some(200), true),
                ("débitos", 5, 1_000, Some(200), true),
                ("débitos", 6, 3_000, Some(422), true),
                ("débitos", 7, 2_000, Some(200), true),
                ("débitos", 8, 300_000, Some(200), true),
                ("créditos", 9, 5_000, None, false),
            ],
            &[
                "créditos 1 1 5000/5000/5000/5000/5000/5000 1 0",
                "débitos 4 0 1000/2000/3000/300000/300000/300000 3 3",
                "validações 1 0 4000/4000/4000/4000/4000/4000 1 1",
                "all 6 1 1000/3000/5000/300000/300000/300000 5 4",
            ],
        );
    }

    #[test]
    fn answers_by_status() {
        let cases: &[(Option<u16>, Answer)] = &[
            (Some(200), Answer::Ok),
            (Some(404), Answer::NotFound),
            (Some(422), Answer::Unprocessable),
            (Some(400), Answer::OtherStatus),
            (Some(500), Answer::OtherStatus),
            (Some(201), Answer::OtherStatus),
            (None, Answer::NoAnswer),
        ];
        for &(status, expected) in cases {
            assert_eq!(Answer::of(status), expected, "{status:?}");
        }
        for (index, answer) in Answer::ALL.iter().enumerate() {
            assert_eq!(answer.index(), index, "{answer:?}");
        }
    }
}
