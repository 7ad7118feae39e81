//! `rinha-api`: the crebitos HTTP API, one monoio runtime per worker thread, over espora.
//!
//! Module map:
//! - [`http`]: request heads (method, target, version, the fields that frame the body) and the
//!   errors that refuse a request;
//! - [`chunked`]: chunked request bodies, decoded across reads;
//! - [`response`]: statuses, the `Date` value and response writing;
//! - [`body`]: strict validation of the transaction JSON;
//! - [`route`]: which resource a path names;
//! - [`json`]: hand-written JSON output, integer and RFC 3339 time formatting;
//! - [`server`]: a worker's accept loop and drain;
//! - `connection`: one connection's loop, writes, timeouts and linger;
//! - `service`: what a worker's connections share (handlers, drain flag, busy count, `Date`
//!   cache, the pool of their buffers);
//! - `framing`: where the request at the start of a connection's input ends;
//! - `handler`: what a request means for the ledger, and its answer;
//! - [`ledger`]: the one module that names the storage engine;
//! - [`healthcheck`]: the client behind `rinha-api --healthcheck`;
//! - [`limits`]: every limit and timeout;
//! - [`contract`]: the challenge's accounts and statement length, written once;
//! - [`metrics`]: the live metrics behind `--metrics`.
//!
//! Architecture invariant: only this crate parses HTTP, and it never touches account files
//! itself; everything about storage goes through espora's `Worker`.

pub mod body;
pub mod chunked;
mod connection;
pub mod contract;
mod framing;
mod handler;
pub mod healthcheck;
pub mod http;
pub mod json;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod response;
pub mod route;
pub mod server;
mod service;
