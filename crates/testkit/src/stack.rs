//! The deployment's shape on one machine: two `rinha-api` on one data directory behind
//! `rinha-lb`, over Unix sockets, one worker each.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, ExitStatus};

use crate::bins::{api_command, bins, lb_command};
use crate::http::is_ready;
use crate::process::{Server, READY_WAIT};
use crate::{free_tcp, wait_until, Addr};

/// The Unix sockets of the two instances of a stack in `dir`: `api1.sock` and `api2.sock`.
pub fn api_sockets(dir: &Path) -> [Addr; 2] {
    [1, 2].map(|index| Addr::Unix(dir.join(format!("api{index}.sock"))))
}

/// Starts two instances (`api1`, `api2`) on `dir/data` and the balancer (`lb`) in front of them
/// on a free TCP port, passing each command through `prepare` first (for extra settings), and
/// waits until all three answer. Returns the servers, balancer last, and its address. Sockets
/// and logs are in `dir`.
pub fn start_stack(dir: &Path, prepare: impl Fn(Command) -> Command) -> (Vec<Server>, Addr) {
    let data = dir.join("data");
    let upstreams = api_sockets(dir);
    let mut servers: Vec<Server> = upstreams
        .iter()
        .enumerate()
        .map(|(index, socket)| {
            let command = prepare(api_command(&data, socket));
            Server::start(&format!("api{}", index + 1), command, dir)
        })
        .collect();
    let front = free_tcp();
    servers.push(Server::start(
        "lb",
        prepare(lb_command(&front, &upstreams)),
        dir,
    ));
    for addr in upstreams.iter().chain([&front]) {
        assert!(
            wait_until(READY_WAIT, || is_ready(addr)),
            "{addr} never answered"
        );
    }
    (servers, front)
}

/// A `prepare` for [`start_stack`]: `args` for every server, then `lb_args` for the balancer.
pub fn with_args<'a>(
    args: &'a [&'a str],
    lb_args: &'a [impl AsRef<OsStr>],
) -> impl Fn(Command) -> Command + 'a {
    move |mut command| {
        command.args(args);
        if command.get_program() == bins().lb.as_os_str() {
            command.args(lb_args);
        }
        command
    }
}

/// Sends SIGTERM to every server, last started first (so the balancer of [`start_stack`]
/// stops before the instances behind it), and returns each name with its exit status. A server
/// that does not exit within `wait` fails the test.
pub fn stop_all(servers: &mut [Server], wait: std::time::Duration) -> Vec<(String, ExitStatus)> {
    servers
        .iter_mut()
        .rev()
        .map(|server| (server.name.clone(), server.terminate(wait)))
        .collect()
}
