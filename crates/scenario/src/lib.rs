//! `rinha-scenario`: the reference load test (docs/load-test.md) as a Rust load client.
//!
//! It reproduces every phase and check of the challenge's Gatling simulation (the one in
//! `gatling/` is its twin): 25 concurrent debits then credits with exact totals, the validation
//! chain of each account, the 404, then the open-model load phase (debits 220/s, credits 110/s,
//! statements 10/s at peak). Every request uses a new TCP connection. The ramp and hold can be
//! shortened while keeping the peak rates, so CI can run the whole scenario in under a minute.
//!
//! Use: [`scenario::wait_ready`], optionally [`scenario::check_fresh`], then [`scenario::run`],
//! which returns a [`stats::Report`] (latency percentiles, failed checks, inconsistencies, and
//! every request, which [`report`] turns into a self-contained HTML page of charts and tables).

pub mod call;
pub mod client;
pub mod config;
pub mod load;
pub mod machine;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod schedule;
pub mod stats;

pub use client::Target;
pub use config::Config;
pub use scenario::{check_fresh, run, wait_ready};
pub use stats::Report;
