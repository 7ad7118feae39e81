//! The workspace's binaries, for the test's own profile.
//!
//! `cargo test --workspace` builds a package's binaries only for that package's integration
//! tests, so the first test to ask runs `cargo build` for the three binaries (a no-op when they
//! are fresh) into the profile directory of the test executable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::Addr;

const NAMES: [&str; 3] = ["rinha-api", "rinha-lb", "espora"];

/// Paths of the three binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    pub api: PathBuf,
    pub lb: PathBuf,
    pub espora: PathBuf,
}

/// The binaries, built once per test process.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        // Test executables run from target/<profile>/deps/.
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps")
            .to_path_buf();
        if let Ok(cargo) = std::env::var("CARGO") {
            build(&cargo, &dir);
        }
        for name in NAMES {
            assert!(
                dir.join(name).is_file(),
                "{} is missing: run the tests through cargo",
                dir.join(name).display()
            );
        }
        Bins {
            api: dir.join("rinha-api"),
            lb: dir.join("rinha-lb"),
            espora: dir.join("espora"),
        }
    })
}

/// `rinha-api` on `data`, listening on `listen`, with one worker.
pub fn api_command(data: &Path, listen: &Addr) -> Command {
    let mut command = Command::new(&bins().api);
    command.arg("--data-dir").arg(data);
    command.args(["--listen", &listen.to_string(), "--workers", "1"]);
    command
}

/// `rinha-lb` listening on `listen` in front of `upstreams`, with one worker.
pub fn lb_command(listen: &Addr, upstreams: &[Addr]) -> Command {
    let mut command = Command::new(&bins().lb);
    command.args(["--listen", &listen.to_string(), "--workers", "1"]);
    for upstream in upstreams {
        command.args(["--upstream", &upstream.to_string()]);
    }
    command
}

/// Builds the binaries into `bin_dir` (`target[/<triple>]/<profile>`).
fn build(cargo: &str, bin_dir: &Path) {
    let profile = bin_dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("debug");
    let mut target_dir = bin_dir.parent().expect("target dir").to_path_buf();
    let mut command = Command::new(cargo);
    command.args(["build", "--workspace"]);
    let parent_name = target_dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("")
        .to_owned();
    if parent_name.contains("-linux-") {
        command.args(["--target", &parent_name]);
        target_dir = target_dir.parent().expect("target dir").to_path_buf();
    }
    command.arg("--target-dir").arg(&target_dir);
    match profile {
        "debug" => command.args(["--profile", "dev"]),
        other => command.args(["--profile", other]),
    };
    for name in NAMES {
        command.args(["--bin", name]);
    }
    let status = command.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo could not build {NAMES:?}: {status}"
    );
}
