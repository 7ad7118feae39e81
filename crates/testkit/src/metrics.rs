//! Scrapes of a server's `--metrics` listener (Prometheus text) and the samples in them.

use std::time::Duration;

use crate::http::{exchange, request_bytes, Response};
use crate::Addr;

/// How long a scrape may take: it is answered from the server's own metrics thread, whatever
/// load its workers carry.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` on the metrics listener at `addr`, one request per connection.
pub fn get(addr: &Addr, path: &str) -> Response {
    exchange(addr, &request_bytes("GET", path, None), SCRAPE_TIMEOUT)
        .unwrap_or_else(|error| panic!("scrape of {addr} {path}: {error}"))
}

/// The text of `GET /metrics` at `addr`; any status but 200 fails the test.
pub fn scrape(addr: &Addr) -> String {
    let response = get(addr, "/metrics");
    let text = String::from_utf8(response.body).expect("metrics are UTF-8");
    assert_eq!(response.status, 200, "{text}");
    text
}

/// The value of the sample `series` (name and labels exactly as written) in `text`; a series
/// that is missing fails the test.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
        .parse()
        .unwrap_or_else(|error| panic!("{series}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn a_sample_is_found_by_its_whole_series_only() {
        let text = "# TYPE a_total counter\na_total 3\na_total_b 7\nb{x=\"1\"} 2.5\n";
        assert_eq!(sample(text, "a_total"), 3.0);
        assert_eq!(sample(text, "a_total_b"), 7.0);
        assert_eq!(sample(text, r#"b{x="1"}"#), 2.5);
    }

    #[test]
    #[should_panic(expected = "missing")]
    fn a_missing_series_fails() {
        sample("a_total 3\n", "a");
    }
}
