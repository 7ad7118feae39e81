//! `rinha-lb` binary: flags, listeners, workers, signals.

use std::sync::Arc;

use rinha_lb::config::{Config, FLAGS, USAGE};
use rinha_lb::relay::SpliceMode;
use rinha_lb::{run_worker, Balancer};
use rinha_rt::{flags, LaunchOptions};

const NAME: &str = "rinha-lb";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() {
    let parsed = flags::parse_or_exit(FLAGS, NAME, USAGE, &format!("{NAME} {VERSION}"));
    let config = Config::from_flags(&parsed).unwrap_or_else(|e| flags::exit_usage(NAME, &e));
    let driver = rinha_rt::DriverPref::from_env().unwrap_or_else(|e| flags::exit_usage(NAME, &e));
    let workers = config.workers.unwrap_or_else(rinha_rt::cpus_available);
    rinha_rt::raise_nofile_limit();
    let listeners = match rinha_rt::bind_listeners(std::slice::from_ref(&config.listen), workers) {
        Ok(listeners) => listeners,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            std::process::exit(1);
        }
    };
    let mut options = LaunchOptions::new(NAME, workers);
    options.driver = driver;
    let listen = vec![config.listen.clone()];
    let upstreams = rinha_rt::join_addrs(&config.upstreams);
    let splice = config.splice;
    let balancer = Arc::new(Balancer::new(config));
    let result = rinha_rt::launch(
        options,
        listeners,
        move |context| run_worker(context, Arc::clone(&balancer)),
        |driver| {
            let splice = splice.unwrap_or(SpliceMode::default_for(driver));
            let extra = format!("upstreams={upstreams} splice={splice}");
            rinha_rt::print_startup_line(NAME, VERSION, driver, workers, &listen, &extra);
        },
    );
    if let Err(error) = result {
        eprintln!("{NAME}: {error}");
        std::process::exit(1);
    }
}
