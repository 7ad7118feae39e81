//! The reference scenario against the real stack: `rinha-lb` on loopback TCP in front of two
//! `rinha-api` processes over Unix sockets, sharing one fresh data directory.
//!
//! The ramp and hold are compressed (15 s each) but the peak rates are the reference's, every
//! request opens a new connection, and the run must end with zero failed checks and zero
//! inconsistencies. Afterwards the stack is stopped with SIGTERM (each process must exit 0) and
//! `espora verify` must find every account file sound.
//!
//! The binaries are the workspace's own, found and built for this test's profile, and the stack
//! is started and stopped by `rinha-testkit`.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use rinha_scenario::{scenario, Config, Target};
use rinha_testkit::stack::{start_stack, stop_all};
use rinha_testkit::temp_dir;

/// Compressed load phase: 15 s of ramp, 15 s at the reference peak rates.
const RAMP: Duration = Duration::from_secs(15);
const HOLD: Duration = Duration::from_secs(15);

/// How long the stack may take to answer its first statement through the balancer.
const READY_WAIT_MAX: Duration = Duration::from_secs(20);

/// How long a process may take to stop after SIGTERM.
const STOP_WAIT_MAX: Duration = Duration::from_secs(10);

#[test]
fn reference_scenario_passes_against_the_real_stack() {
    let bins = rinha_testkit::bins::bins();
    let dir = temp_dir("scenario");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("create the data directory");
    let (mut servers, lb_addr) = start_stack(dir.path(), |command| command);

    let config = Config {
        target: Target::parse(&format!("http://{lb_addr}")).expect("loopback target"),
        ramp: RAMP,
        hold: HOLD,
        threads: 256,
        timeout: Duration::from_secs(10),
        seed: 20_240_101,
        load_only: false,
    };
    scenario::wait_ready(&config.target, READY_WAIT_MAX).expect("the stack never became ready");
    scenario::check_fresh(&config).expect("a fresh data directory has fresh accounts");
    let started = Instant::now();
    let report = scenario::run(&config);
    // Written to the stderr stream itself, not through eprintln!, so that the percentiles show in
    // the output of a passing `cargo test` too (the harness captures only the print macros).
    let _ = writeln!(
        std::io::stderr(),
        "\n{report}\nscenario elapsed: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(report.passed(), "the scenario failed:\n{report}");
    // Phases 1 to 3 send 123 requests (all named validações, the 404 too); the load phase one per
    // user.
    let planned = rinha_scenario::load::plan(&config).len() as u64;
    assert_eq!(
        report.all.count,
        123 + planned,
        "every user sent its requests"
    );

    for (name, status) in stop_all(&mut servers, STOP_WAIT_MAX) {
        assert!(
            status.success(),
            "{name} did not exit 0 after SIGTERM: {status}"
        );
    }
    let verify = Command::new(&bins.espora)
        .arg("verify")
        .arg(&data)
        .output()
        .expect("run espora verify");
    let summary = String::from_utf8_lossy(&verify.stdout);
    eprintln!("{summary}");
    assert!(
        verify.status.success(),
        "espora verify failed: {summary}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
