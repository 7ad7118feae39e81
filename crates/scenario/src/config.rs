//! The settings of a run, which every phase reads: the scenario's phases 1 to 3 and the load
//! phase.

use std::time::Duration;

use crate::client::Target;

/// How a run is driven.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the API (normally the balancer) listens.
    pub target: Target,
    /// Length of the linear ramp of the load phase (the reference: 2 minutes).
    pub ramp: Duration,
    /// Length of the peak hold after the ramp (the reference: 2 minutes).
    pub hold: Duration,
    /// Client threads running load users; a user waits for a free thread.
    pub threads: usize,
    /// Bound on one request, from connect to the last byte.
    pub timeout: Duration,
    /// Seed of the random accounts, values and descriptions.
    pub seed: u64,
    /// Skip phases 1 to 3 and run only the load phase (for a stack that is not fresh).
    pub load_only: bool,
}
