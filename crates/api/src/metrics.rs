//! The API's live metrics (`--metrics ADDR`, the Prometheus text format on a listener of its
//! own): each worker thread counts its requests, answers and connections in its own set, and a
//! scrape sums the sets and adds the storage engine's counters.

use std::sync::Arc;
use std::time::Duration;

use rinha_metrics::{Connections, Counter, Histogram, Sets, Text};

use crate::ledger::Db;
use crate::response::Status;
use crate::route::Resource;

/// The routes as the metrics name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Transactions,
    Statement,
    /// Anything else: unknown paths, unknown accounts, requests that could not be framed.
    Other,
}

impl Route {
    const ALL: [Route; 3] = [Route::Transactions, Route::Statement, Route::Other];

    pub fn of(resource: Resource) -> Route {
        match resource {
            Resource::Transactions(_) => Route::Transactions,
            Resource::Statement(_) => Route::Statement,
            Resource::NoSuchAccount | Resource::NotFound => Route::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Transactions => "transactions",
            Route::Statement => "statement",
            Route::Other => "other",
        }
    }
}

/// One worker's instruments.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Answers by route and status, in the order of `Route::ALL` and `Status::ALL`.
    answers: [[Counter; Status::ALL.len()]; Route::ALL.len()],
    /// From the request being complete to its answer being queued, by route.
    latency: [Histogram; Route::ALL.len()],
    connections: Connections,
}

impl WorkerMetrics {
    /// Counts one answer.
    pub fn answered(&self, route: Route, status: Status, took: Duration) {
        self.answers[route as usize][status_index(status)].inc();
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency[route as usize].observe_us(micros);
    }

    /// Counts an answer to a request that could not be framed (the connection closes after it).
    pub fn rejected(&self, status: Status) {
        self.answers[Route::Other as usize][status_index(status)].inc();
    }
}

impl AsRef<Connections> for WorkerMetrics {
    fn as_ref(&self) -> &Connections {
        &self.connections
    }
}

/// Every worker's set, and the database whose counters a scrape adds.
pub struct Metrics {
    workers: Sets<WorkerMetrics>,
    db: Arc<Db>,
}

impl Metrics {
    pub fn new(db: Arc<Db>) -> Metrics {
        Metrics {
            workers: Sets::default(),
            db,
        }
    }

    /// The set of one more worker.
    pub fn worker(&self) -> Arc<WorkerMetrics> {
        self.workers.add(WorkerMetrics::default())
    }

    /// The text of a scrape.
    pub fn render(&self) -> String {
        let workers = self.workers.all();
        let mut text = Text::default();
        text.family(
            "rinha_api_requests_total",
            "counter",
            "Answers sent, by route and status.",
        );
        for route in Route::ALL {
            for (i, status) in Status::ALL.iter().enumerate() {
                let count: u64 = workers
                    .iter()
                    .map(|w| w.answers[route as usize][i].get())
                    .sum();
                if count > 0 {
                    let labels = [("route", route.label()), ("status", status.code())];
                    text.sample("rinha_api_requests_total", &labels, count);
                }
            }
        }
        text.family(
            "rinha_api_request_duration_seconds",
            "histogram",
            "From a request being complete to its answer being queued (durability included).",
        );
        for route in Route::ALL {
            let parts = workers.iter().map(|w| &w.latency[route as usize]);
            text.histogram(
                "rinha_api_request_duration_seconds",
                &[("route", route.label())],
                parts,
            );
        }
        Connections::render(
            &mut text,
            "rinha_api",
            workers.iter().map(|w| &w.connections),
        );
        self.render_storage(&mut text);
        text.into_string()
    }

    fn render_storage(&self, text: &mut Text) {
        let stats = self.db.stats();
        let rows: [(&str, &str, u64); 6] = [
            (
                "rinha_api_appends_total",
                "Transactions written by this process.",
                stats.appends,
            ),
            (
                "rinha_api_fdatasyncs_total",
                "fdatasyncs issued by this process.",
                stats.syncs,
            ),
            (
                "rinha_api_synced_records_total",
                "Records those fdatasyncs made durable (divided by them: the group size).",
                stats.synced_records,
            ),
            (
                "rinha_api_lock_sleeps_total",
                "Times a writer slept on an account lock held elsewhere.",
                stats.lock_sleeps,
            ),
            (
                "rinha_api_sync_sleeps_total",
                "Times a writer slept waiting for another thread's or process's fdatasync.",
                stats.sync_sleeps,
            ),
            (
                "rinha_api_sync_takeovers_total",
                "Sync claims taken over after staying unchanged too long.",
                stats.takeovers,
            ),
        ];
        for (name, help, value) in rows {
            counter(text, name, help, value);
        }
        text.family(
            "rinha_api_storage_poisoned",
            "gauge",
            "1 once an fdatasync failed: nothing is acknowledged any more.",
        );
        text.sample(
            "rinha_api_storage_poisoned",
            &[],
            u8::from(self.db.is_poisoned()),
        );
    }
}

fn counter(text: &mut Text, name: &str, help: &str, value: u64) {
    text.family(name, "counter", help);
    text.sample(name, &[], value);
}

/// Where `status` stands in `Status::ALL`, the order of a worker's answer counters.
fn status_index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|&s| s == status)
        .expect("Status::ALL holds every status")
}
