//! `rinha-lb`: the layer-4 round-robin balancer in front of the API instances.
//!
//! Codemap:
//! - [`config`]: flags and environment into a [`Config`];
//! - [`upstreams`]: the upstream list, the round-robin counter shared by all workers, and the
//!   mark-down back-off after a failed connect;
//! - [`worker`]: per worker, the accept policy and connection cap (the loop is rinha-rt's),
//!   upstream choice with failover;
//! - [`metrics`]: the live metrics behind `--metrics`;
//! - [`relay`]: the zero-copy data path (splice through one pipe per direction) with
//!   half-close propagation and the idle timeout.
//!
//! Architecture invariant: the balancer never parses HTTP and never reads account files; it
//! moves bytes.

pub mod config;
pub mod metrics;
pub mod relay;
pub mod upstreams;
pub mod worker;

pub use config::Config;
pub use worker::{run_worker, Balancer};
