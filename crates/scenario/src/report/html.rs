//! The report page, `DIR/index.html`: one self-contained file that reads offline (the charts as
//! inline SVG, the style inline, no script, no external asset, no web font), in the spirit of
//! Gatling's report: the verdict and the figures the challenge scores, the table of requests,
//! the charts, the inconsistencies and failed checks, the run's settings and the machine.

use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::chart::{self, ChartError};
use super::{Answer, Run};
use crate::stats::{Report, ALL, MESSAGES_MAX};

/// The page's file name in the report directory.
pub const PAGE: &str = "index.html";

/// Why the report could not be written.
#[derive(Debug)]
pub enum ReportError {
    /// The directory or the page could not be created (before the run).
    Create(PathBuf, io::Error),
    /// A chart could not be drawn.
    Chart(ChartError),
    /// The page could not be written (after the run).
    Write(PathBuf, io::Error),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Create(path, error) => {
                write!(f, "cannot create {}: {error}", path.display())
            }
            ReportError::Chart(error) => write!(f, "{error}"),
            ReportError::Write(path, error) => {
                write!(f, "cannot write {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ReportError {}

/// Where the page goes, created before the run so that a directory that cannot hold it fails in
/// a second rather than after minutes of load.
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    file: File,
}

impl Output {
    /// Creates `dir` (with its parents) and an empty `dir/index.html`, replacing an older page.
    pub fn create(dir: &Path) -> Result<Output, ReportError> {
        fs::create_dir_all(dir).map_err(|error| ReportError::Create(dir.to_path_buf(), error))?;
        let path = dir.join(PAGE);
        let file = File::create(&path).map_err(|error| ReportError::Create(path.clone(), error))?;
        Ok(Output { path, file })
    }

    /// The page's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the page of `report`; returns its size in bytes.
    pub fn write(mut self, report: &Report, run: &Run) -> Result<usize, ReportError> {
        let page = render(report, run).map_err(ReportError::Chart)?;
        let written = self
            .file
            .write_all(page.as_bytes())
            .and_then(|()| self.file.sync_all());
        written.map_err(|error| ReportError::Write(self.path.clone(), error))?;
        Ok(page.len())
    }
}

/// The whole page.
pub fn render(report: &Report, run: &Run) -> Result<String, ChartError> {
    let samples = &report.samples;
    let seconds = super::seconds(samples);
    let mut page = String::with_capacity(256 * 1024);
    head(&mut page, report);
    summary(&mut page, report, run);
    requests_table(&mut page, report);
    problems(&mut page, report);

    section(&mut page, "Response time per second");
    page.push_str(&chart::percentiles(&seconds)?);
    para(
        &mut page,
        "The 50th, 95th and 99th percentiles and the slowest response of the requests that \
         started in each second, every request counted (KO too), on a log scale; the dashed line \
         is the SLA's 250 ms.",
    );

    section(&mut page, "Requests per second");
    page.push_str(&chart::requests_per_second(&seconds)?);
    let totals = super::answers_total(samples);
    let totals: Vec<String> = (Answer::ALL.iter())
        .map(|answer| format!("{}: {}", answer.label(), totals[answer.index()]))
        .collect();
    para(
        &mut page,
        &format!(
            "Requests started in each second, in all and by what came back (only the kinds that \
             occurred are drawn), and those KO (dashed). In all: {}.",
            totals.join(", ")
        ),
    );

    section(&mut page, "Response-time distribution");
    page.push_str(&chart::distribution(&super::histogram(samples))?);
    let all = &report.all;
    para(
        &mut page,
        &format!(
            "Requests per response-time bucket (ten per decade), every request counted; the \
             shaded band, 250 ms or more, counts against the SLA. Under 250 ms: {} of {} ({}); \
             OK and under 250 ms: {} (the SLA asks at least 98%).",
            all.under_sla,
            all.count,
            percent(all.under_sla, all.count),
            percent(all.ok_under_sla, all.count),
        ),
    );

    settings(&mut page, report, run);
    page.push_str("</main>\n</body>\n</html>\n");
    Ok(page)
}

const STYLE: &str = "\
body { font-family: system-ui, sans-serif; color: #222; background: #fff; margin: 0; }
main { max-width: 1220px; margin: 0 auto; padding: 8px 16px 32px; }
h1 { font-size: 26px; margin: 16px 0 4px; }
h2 { font-size: 20px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
p { margin: 6px 0; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.all td { font-weight: bold; border-top: 2px solid #999; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: bold; }
.passed { background: #2c8c2c; }
.failed { background: #c62828; }
.figures td:first-child { color: #555; }
ul.messages { font-family: ui-monospace, monospace; font-size: 13px; }
svg { display: block; max-width: 100%; height: auto; border: 1px solid #ddd; }
";

fn head(page: &mut String, report: &Report) {
    let verdict = if report.passed() { "PASSED" } else { "FAILED" };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>rinha-scenario: {verdict}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <main>\n<h1>rinha-scenario report <span class=\"verdict {}\">{verdict}</span></h1>\n",
        verdict.to_lowercase()
    );
}

/// The figures the challenge scores, and the run in one line.
fn summary(page: &mut String, report: &Report, run: &Run) {
    let config = &run.config;
    para(
        page,
        &format!(
            "The reference load test (docs/load-test.md) against http://{}, ramp {:?}, hold {:?}, \
             started {} and ran {:.1} s.",
            escape(&config.target.host),
            config.ramp,
            config.hold,
            utc(run.started_unix_us),
            run.elapsed.as_secs_f64()
        ),
    );
    page.push_str("<table class=\"figures\">\n");
    let rows = [
        ("requests", report.all.count.to_string()),
        (
            "KO (a failed check or no answer)",
            report.all.ko.to_string(),
        ),
        (
            "OK and under 250 ms (the SLA asks at least 98%)",
            percent(report.all.ok_under_sla, report.all.count),
        ),
        (
            "inconsistencies (as the official scoring counts them)",
            report.inconsistencies_total.to_string(),
        ),
        ("failed checks", report.failures_total.to_string()),
        (
            "p99 / max, ms",
            format!("{} / {}", ms(report.all.p99_us), ms(report.all.max_us)),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(page, "<tr><td>{name}</td><td class=\"n\">{value}</td></tr>");
    }
    page.push_str("</table>\n");
}

/// One row per request name, as the text report names them, then all.
fn requests_table(page: &mut String, report: &Report) {
    section(page, "Requests");
    page.push_str("<table>\n<tr><th>request</th>");
    for heading in [
        "count",
        "KO",
        "min ms",
        "p50 ms",
        "p75 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "under 250 ms",
    ] {
        let _ = write!(page, "<th class=\"n\">{heading}</th>");
    }
    page.push_str("</tr>\n");
    for row in report.groups.iter().chain([&report.all]) {
        let class = if row.name == ALL {
            " class=\"all\""
        } else {
            ""
        };
        let _ = write!(page, "<tr{class}><td>{}</td>", escape(row.name));
        let figures = [
            row.count.to_string(),
            row.ko.to_string(),
            ms(row.min_us),
            ms(row.p50_us),
            ms(row.p75_us),
            ms(row.p95_us),
            ms(row.p99_us),
            ms(row.max_us),
            percent(row.under_sla, row.count),
        ];
        for figure in figures {
            let _ = write!(page, "<td class=\"n\">{figure}</td>");
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

/// Inconsistencies and failed checks: the counts, and the messages kept.
fn problems(page: &mut String, report: &Report) {
    section(page, "Inconsistencies and failed checks");
    let lists = [
        (
            "Inconsistencies (requests whose first failed check is a balance below its limit or a \
             wrong exact total, as the official scoring counts them)",
            report.inconsistencies_total,
            &report.inconsistencies,
        ),
        (
            "Failed checks (a request can fail several)",
            report.failures_total,
            &report.failures,
        ),
    ];
    for (what, total, messages) in lists {
        let _ = writeln!(page, "<p>{what}: <b>{total}</b>.</p>");
        if messages.is_empty() {
            continue;
        }
        page.push_str("<ul class=\"messages\">\n");
        for message in messages {
            let _ = writeln!(page, "<li>{}</li>", escape(message));
        }
        page.push_str("</ul>\n");
        if (messages.len() as u64) < total {
            para(
                page,
                &format!("Only the first {MESSAGES_MAX} messages are kept."),
            );
        }
    }
}

/// The run's settings, the client's own health, and the machine.
fn settings(page: &mut String, report: &Report, run: &Run) {
    section(page, "Run and machine");
    let config = &run.config;
    let machine = &run.machine;
    let unknown = || "unknown".to_string();
    let rows = [
        (
            "target",
            format!("http://{} ({})", config.target.host, config.target.addr),
        ),
        ("ramp", format!("{:?}", config.ramp)),
        ("hold", format!("{:?}", config.hold)),
        ("client threads", config.threads.to_string()),
        ("timeout", format!("{:?}", config.timeout)),
        ("seed", config.seed.to_string()),
        ("load only", config.load_only.to_string()),
        ("started", utc(run.started_unix_us)),
        ("duration", format!("{:.1} s", run.elapsed.as_secs_f64())),
        (
            "client start lag, p99 / max",
            format!(
                "{} / {} ms (high values mean the client machine was saturated)",
                ms(report.lag_p99_us),
                ms(report.lag_max_us)
            ),
        ),
        ("host", machine.hostname.clone().unwrap_or_else(unknown)),
        ("kernel", machine.kernel.clone().unwrap_or_else(unknown)),
        (
            "CPUs",
            format!(
                "{} online, {} usable by the client",
                machine.cpus_online.map_or_else(unknown, |n| n.to_string()),
                machine.cpus_usable.map_or_else(unknown, |n| n.to_string())
            ),
        ),
        (
            "CPU model",
            machine.cpu_model.clone().unwrap_or_else(unknown),
        ),
        (
            "memory",
            machine.memory_bytes.map_or_else(unknown, |bytes| {
                format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
            }),
        ),
    ];
    page.push_str("<table class=\"figures\">\n");
    for (name, value) in rows {
        let _ = writeln!(page, "<tr><td>{name}</td><td>{}</td></tr>", escape(&value));
    }
    page.push_str("</table>\n");
}

fn section(page: &mut String, title: &str) {
    let _ = writeln!(page, "<h2>{}</h2>", escape(title));
}

fn para(page: &mut String, text: &str) {
    let _ = writeln!(page, "<p>{text}</p>");
}

/// `text` with the characters HTML gives a meaning replaced by references.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `part` of `whole` as a percentage with three decimals, as the text report writes it.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "none sent".to_string();
    }
    format!("{:.3}%", 100.0 * part as f64 / whole as f64)
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// A Unix time in microseconds as `2024-01-17 02:34:41 UTC`.
fn utc(unix_us: i64) -> String {
    let text = espora::time::rfc3339_us(unix_us);
    let text = String::from_utf8_lossy(&text);
    format!("{} {} UTC", &text[..10], &text[11..19])
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::client::Target;
    use crate::config::Config;
    use crate::machine::Machine;
    use crate::stats::{Recorder, Sample};

    fn run() -> Run {
        Run {
            config: Config {
                target: Target::parse("127.0.0.1:9999").unwrap(),
                ramp: Duration::from_secs(20),
                hold: Duration::from_secs(20),
                threads: 256,
                timeout: Duration::from_secs(60),
                seed: 42,
                load_only: false,
            },
            started_unix_us: 1_705_458_881_217_753,
            elapsed: Duration::from_millis(41_234),
            machine: Machine {
                hostname: Some("box".to_string()),
                kernel: None,
                cpus_online: Some(2),
                cpus_usable: Some(2),
                cpu_model: Some("Some <CPU>".to_string()),
                memory_bytes: Some(8 << 30),
            },
        }
    }

    #[test]
    fn the_page_holds_every_part() {
        let epoch = Instant::now();
        let mut recorder = Recorder::default();
        let requests = [
            ("validações", 0, Some(200), true),
            ("débitos", 300, Some(422), true),
            ("créditos", 1_200, None, false),
            ("extratos", 2_500, Some(200), false),
        ];
        for (name, at_ms, status, ok) in requests {
            let started = epoch + Duration::from_millis(at_ms);
            let latency = Duration::from_micros(800);
            recorder.request(Sample::new(name, started, latency, status, ok));
        }
        recorder.failure("[créditos] POST /x: no answer: connect: refused".to_string());
        recorder.inconsistency("[extratos] GET /y: saldo <b>-101</b>".to_string());
        let page = render(&recorder.report(), &run()).unwrap();
        assert_eq!(page.matches("<svg").count(), 3, "three charts");
        let expected = [
            "<span class=\"verdict failed\">FAILED</span>",
            "<td>validações</td>",
            "<td>débitos</td>",
            "<td>créditos</td>",
            "<td>extratos</td>",
            "<tr class=\"all\"><td>all</td><td class=\"n\">4</td><td class=\"n\">2</td>",
            "<p>Inconsistencies (requests whose first failed check",
            "<li>[extratos] GET /y: saldo &lt;b&gt;-101&lt;/b&gt;</li>",
            "<li>[créditos] POST /x: no answer: connect: refused</li>",
            "In all: 200: 2, 404: 0, 422: 1, other status: 0, no answer: 1.",
            "Under 250 ms: 4 of 4 (100.000%); OK and under 250 ms: 50.000%",
            "<tr><td>started</td><td>2024-01-17 02:34:41 UTC</td></tr>",
            "<tr><td>duration</td><td>41.2 s</td></tr>",
            "<tr><td>kernel</td><td>unknown</td></tr>",
            "<tr><td>CPU model</td><td>Some &lt;CPU&gt;</td></tr>",
            "<tr><td>memory</td><td>8.0 GiB</td></tr>",
        ];
        for text in expected {
            assert!(page.contains(text), "the page holds {text}");
        }
        assert!(!page.contains("<b>-101"), "messages are escaped");
    }

    #[test]
    fn a_run_without_requests_has_a_page() {
        let page = render(&Recorder::default().report(), &run()).unwrap();
        assert_eq!(page.matches("<svg").count(), 3, "three charts, empty");
        assert!(page.contains("<tr class=\"all\"><td>all</td><td class=\"n\">0</td>"));
        assert!(page.contains("Under 250 ms: 0 of 0 (none sent)"));
    }

    #[test]
    fn escaping() {
        let cases: &[(&str, &str)] = &[
            ("débitos", "débitos"),
            ("<script>", "&lt;script&gt;"),
            (r#"body "a" & 'b'"#, "body &quot;a&quot; &amp; &#39;b&#39;"),
        ];
        for &(input, expected) in cases {
            assert_eq!(escape(input), expected, "{input:?}");
        }
        assert_eq!(utc(1_705_458_881_217_753), "2024-01-17 02:34:41 UTC");
        assert_eq!(percent(1, 3), "33.333%");
        assert_eq!(percent(0, 0), "none sent");
    }
}
