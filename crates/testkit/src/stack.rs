//! The deployment's shape on one machine: two `rinha-api` on one data directory behind
//! `rinha-lb`, over Unix sockets, one worker each.

use std::process::Command;
use std::time::Duration;

use crate::bins::bins;
use crate::client::{self, Endpoint};
use crate::process::Server;
use crate::{wait_until, TempDir};

/// How long the servers may take to answer after start.
const READY_WAIT: Duration = Duration::from_secs(20);

/// Starts two instances (`api1`, `api2`) on `dir/data` and the balancer (`lb`) in front of them
/// on a free TCP port, passing each command through `prepare` first (for extra settings), and
/// waits until all three answer. Returns the servers, balancer last, and its address.
pub fn start_stack(dir: &TempDir, prepare: impl Fn(Command) -> Command) -> (Vec<Server>, Endpoint) {
    let bins = bins();
    let data = dir.path().join("data");
    let mut servers = Vec::new();
    let mut upstreams = Vec::new();
    for index in 1..=2 {
        let socket = Endpoint::Unix(dir.path().join(format!("api{index}.sock")));
        let mut command = Command::new(&bins.api);
        command.arg("--data-dir").arg(&data);
        command.args(["--listen", &socket.flag(), "--workers", "1"]);
        servers.push(Server::start(
            &format!("api{index}"),
            prepare(command),
            dir.path(),
        ));
        upstreams.push(socket);
    }
    let front = Endpoint::free_tcp();
    let mut command = Command::new(&bins.lb);
    command.args(["--listen", &front.flag(), "--workers", "1"]);
    for upstream in &upstreams {
        command.args(["--upstream", &upstream.flag()]);
    }
    servers.push(Server::start("lb", prepare(command), dir.path()));
    for endpoint in upstreams.iter().chain([&front]) {
        assert!(
            wait_until(READY_WAIT, || client::is_ready(endpoint)),
            "{} never answered",
            endpoint.flag()
        );
    }
    (servers, front)
}
