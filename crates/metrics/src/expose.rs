//! The instruments and the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count, written by one worker thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open connections), written by one worker thread.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in microseconds: fine below a millisecond (where a
/// durable answer on a fast disk lands), coarse up to the challenge's 250 ms and beyond.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A latency histogram over [`LATENCY_BOUNDS_US`], written by one worker thread.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    buckets: [Counter; LATENCY_BOUNDS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    pub fn observe_us(&self, micros: u64) {
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < micros);
        self.buckets[bucket].inc();
        self.sum_us.add(micros);
    }
}

/// A scrape's text, written one metric family at a time.
#[derive(Default)]
pub struct Text(String);

impl Text {
    pub fn into_string(self) -> String {
        self.0
    }

    /// Writes the `# HELP` and `# TYPE` lines of a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// Writes one sample; `labels` are name and value pairs (values are escaped).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{label}=\"");
                for c in text.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// Writes the samples of one labelled histogram: the sum of `parts` (one per thread),
    /// cumulative buckets in seconds, `_sum` in seconds and `_count`.
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        parts: impl Iterator<Item = &'a Histogram>,
    ) {
        let mut buckets = [0u64; LATENCY_BOUNDS_US.len() + 1];
        let mut sum_us = 0u64;
        for part in parts {
            for (total, bucket) in buckets.iter_mut().zip(&part.buckets) {
                *total += bucket.get();
            }
            sum_us += part.sum_us.get();
        }
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, count) in buckets.iter().enumerate() {
            cumulative += count;
            let le = match LATENCY_BOUNDS_US.get(i) {
                Some(&bound) => format!("{}", bound as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket_name, &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_in_seconds() {
        let a = Histogram::default();
        let b = Histogram::default();
        a.observe_us(80);
        a.observe_us(100);
        b.observe_us(101);
        b.observe_us(7_000_000);
        let mut text = Text::default();
        text.histogram("lat", &[("route", "x")], [&a, &b].into_iter());
        let text = text.into_string();
        assert!(
            text.contains("lat_bucket{route=\"x\",le=\"0.0001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{route=\"x\",le=\"0.00025\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{route=\"x\",le=\"5\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{route=\"x\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("lat_count{route=\"x\"} 4\n"), "{text}");
        assert!(text.contains("lat_sum{route=\"x\"} 7.000281\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut text = Text::default();
        text.sample("up", &[("path", "a\"b\\c\nd")], 1);
        assert_eq!(text.into_string(), "up{path=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}

/// Every worker's set of instruments: each worker registers one at start and writes only its
/// own; a scrape reads them all.
#[derive(Debug)]
pub struct Sets<T> {
    sets: std::sync::Mutex<Vec<std::sync::Arc<T>>>,
}

impl<T> Default for Sets<T> {
    fn default() -> Sets<T> {
        Sets {
            sets: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl<T> Sets<T> {
    /// Registers the set of one more worker.
    pub fn add(&self, set: T) -> std::sync::Arc<T> {
        let set = std::sync::Arc::new(set);
        self.lock().push(std::sync::Arc::clone(&set));
        set
    }

    /// The sets registered so far, for a scrape.
    pub fn all(&self) -> Vec<std::sync::Arc<T>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<std::sync::Arc<T>>> {
        // A panic while holding the lock cannot leave the list half-changed.
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}
