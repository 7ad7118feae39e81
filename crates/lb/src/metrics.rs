//! The balancer's live metrics (`--metrics ADDR`, the Prometheus text format on a listener of
//! its own): each worker thread counts its connections, upstream picks and failures, and the
//! bytes it splices, in its own set; a scrape sums the sets and reads the upstreams' down marks.

use std::sync::Arc;

use rinha_metrics::{Connections, Counter, Sets, Text};

use crate::upstreams::Upstreams;

/// One worker's instruments.
#[derive(Debug)]
pub struct WorkerMetrics {
    connections: Connections,
    /// Clients closed because no upstream accepted a connection.
    unserved: Counter,
    /// Per upstream (in the order of `Upstreams::addrs`): connections made, connects failed.
    picks: Vec<Counter>,
    failures: Vec<Counter>,
    /// Bytes spliced from clients to upstreams and back.
    pub(crate) bytes_to_upstreams: Counter,
    pub(crate) bytes_to_clients: Counter,
}

impl WorkerMetrics {
    fn new(upstreams: usize) -> WorkerMetrics {
        WorkerMetrics {
            connections: Connections::default(),
            unserved: Counter::default(),
            picks: (0..upstreams).map(|_| Counter::default()).collect(),
            failures: (0..upstreams).map(|_| Counter::default()).collect(),
            bytes_to_upstreams: Counter::default(),
            bytes_to_clients: Counter::default(),
        }
    }

    pub fn picked(&self, upstream: usize) {
        self.picks[upstream].inc();
    }

    pub fn failed(&self, upstream: usize) {
        self.failures[upstream].inc();
    }

    pub fn unserved(&self) {
        self.unserved.inc();
    }
}

impl AsRef<Connections> for WorkerMetrics {
    fn as_ref(&self) -> &Connections {
        &self.connections
    }
}

/// Every worker's set.
#[derive(Debug, Default)]
pub struct Metrics {
    workers: Sets<WorkerMetrics>,
}

impl Metrics {
    /// The set of one more worker, for `upstreams` upstreams.
    pub fn worker(&self, upstreams: usize) -> Arc<WorkerMetrics> {
        self.workers.add(WorkerMetrics::new(upstreams))
    }

    /// The text of a scrape; `upstreams` gives the names and the down marks.
    pub fn render(&self, upstreams: &Upstreams) -> String {
        let workers = self.workers.all();
        let total = |get: fn(&WorkerMetrics) -> &Counter| -> u64 {
            workers.iter().map(|w| get(w).get()).sum()
        };
        let mut text = Text::default();
        Connections::render(
            &mut text,
            "rinha_lb",
            workers.iter().map(|w| &w.connections),
        );
        text.family(
            "rinha_lb_unserved_total",
            "counter",
            "Clients closed because no upstream accepted a connection.",
        );
        text.sample("rinha_lb_unserved_total", &[], total(|w| &w.unserved));
        text.family(
            "rinha_lb_bytes_total",
            "counter",
            "Bytes spliced, by direction.",
        );
        let up = total(|w| &w.bytes_to_upstreams);
        let down = total(|w| &w.bytes_to_clients);
        text.sample("rinha_lb_bytes_total", &[("direction", "to_upstreams")], up);
        text.sample("rinha_lb_bytes_total", &[("direction", "to_clients")], down);
        render_upstreams(&mut text, upstreams, &workers);
        text.into_string()
    }
}

/// Picks one per-upstream family out of a worker's set.
type PerUpstream = fn(&WorkerMetrics) -> &Vec<Counter>;

fn render_upstreams(text: &mut Text, upstreams: &Upstreams, workers: &[Arc<WorkerMetrics>]) {
    let families: [(&str, &str, PerUpstream); 2] = [
        (
            "rinha_lb_upstream_picks_total",
            "Connections made to each upstream.",
            |w| &w.picks,
        ),
        (
            "rinha_lb_upstream_failures_total",
            "Failed connects to each upstream, and connections it left unanswered past the answer timeout (each marks it down for the back-off).",
            |w| &w.failures,
        ),
    ];
    for (name, help, counters) in families {
        text.family(name, "counter", help);
        for (index, addr) in upstreams.addrs().iter().enumerate() {
            let value: u64 = workers.iter().map(|w| counters(w)[index].get()).sum();
            text.sample(name, &[("upstream", &addr.to_string())], value);
        }
    }
    text.family(
        "rinha_lb_upstream_down",
        "gauge",
        "1 while an upstream is skipped: after a failed connect, or until it answers a probe after leaving a client unanswered.",
    );
    for (index, addr) in upstreams.addrs().iter().enumerate() {
        let down = u8::from(upstreams.is_down(index));
        text.sample(
            "rinha_lb_upstream_down",
            &[("upstream", &addr.to_string())],
            down,
        );
    }
}
