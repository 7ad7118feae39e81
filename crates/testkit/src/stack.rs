//! The deployment's shape on one machine: two `rinha-api` on one data directory behind
//! `rinha-lb`, over Unix sockets, one worker each.

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::bins::bins;
use crate::http::is_ready;
use crate::process::Server;
use crate::{free_tcp, wait_until, Addr};

/// How long the servers may take to answer after start.
const READY_WAIT: Duration = Duration::from_secs(20);

/// Starts two instances (`api1`, `api2`) on `dir/data` and the balancer (`lb`) in front of them
/// on a free TCP port, passing each command through `prepare` first (for extra settings), and
/// waits until all three answer. Returns the servers, balancer last, and its address. Sockets
/// and logs are in `dir`.
pub fn start_stack(dir: &Path, prepare: impl Fn(Command) -> Command) -> (Vec<Server>, Addr) {
    let bins = bins();
    let data = dir.join("data");
    let mut servers = Vec::new();
    let mut upstreams = Vec::new();
    for index in 1..=2 {
        let socket = Addr::Unix(dir.join(format!("api{index}.sock")));
        let mut command = Command::new(&bins.api);
        command.arg("--data-dir").arg(&data);
        command.args(["--listen", &socket.to_string(), "--workers", "1"]);
        servers.push(Server::start(&format!("api{index}"), prepare(command), dir));
        upstreams.push(socket);
    }
    let front = free_tcp();
    let mut command = Command::new(&bins.lb);
    command.args(["--listen", &front.to_string(), "--workers", "1"]);
    for upstream in &upstreams {
        command.args(["--upstream", &upstream.to_string()]);
    }
    servers.push(Server::start("lb", prepare(command), dir));
    for addr in upstreams.iter().chain([&front]) {
        assert!(
            wait_until(READY_WAIT, || is_ready(addr)),
            "{addr} never answered"
        );
    }
    (servers, front)
}

/// Sends SIGTERM to every server, last started first (so the balancer of [`start_stack`]
/// stops before the instances behind it), and returns each name with its exit status. A server
/// that does not exit within `wait` fails the test.
pub fn stop_all(servers: &mut [Server], wait: Duration) -> Vec<(String, ExitStatus)> {
    servers
        .iter_mut()
        .rev()
        .map(|server| (server.name.clone(), server.terminate(wait)))
        .collect()
}
