//! Live metrics for the servers: counters and histograms that each worker thread updates on its
//! own (no sharing on the hot path), summed only when someone scrapes, and served in the
//! Prometheus text format (version 0.0.4) by a listener on a thread of its own, never on the
//! servers' own ports.
//!
//! A server keeps one set of its metrics per worker thread, each an `Arc` shared with the
//! scraper; the worker updates its set with relaxed atomic adds on cache lines no other thread
//! writes, and a scrape reads every set and writes the sums. The listener answers
//! `GET /metrics` (and `/`) with the text, anything else with 404, one request per connection.

mod connections;
mod expose;
mod serve;

pub use connections::{Connections, OpenConnection};
pub use expose::{Counter, Gauge, Histogram, Sets, Text, LATENCY_BOUNDS_US};
pub use serve::{serve, MetricsServer};
