//! Command-line flags: what the binaries share on top of clap.
//!
//! Each binary declares its flags once, as a struct deriving [`clap::Parser`]: the field is the
//! flag, its attributes name the environment variable it falls back to and its default, and its
//! doc comment is its `--help` line. Reading a flag is reading a field, so a misspelt flag does
//! not compile. What clap does not do the way these binaries always have is here:
//!
//! - [`ServerArgs`]: the flags both servers take under the same variable, declared once and
//!   flattened into each (`--workers` each declares itself, since each server reads it from a
//!   variable of its own, and passes it to [`worker_count`]);
//! - [`parse_or_exit`]: environment values trimmed (blank ones count as unset, list items are
//!   trimmed and empty items dropped), and a bad command line reported in one line with exit
//!   status 2;
//! - [`table`]: the README's configuration table compared with a binary's declarations.
//!
//! The command line wins over the environment, as a whole: `--listen` replaces all of
//! `RINHA_LISTEN`.

pub mod table;

use std::fmt;

use crate::driver::{DriverPref, DRIVER_ENV};

/// The flags both servers take under the same environment variable. A server flattens them
/// into its own flags (`#[command(flatten)]`).
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// I/O driver: auto (io_uring, epoll when the kernel or seccomp refuses it), io_uring or
    /// epoll
    #[arg(
        long,
        value_name = "auto|io_uring|epoll",
        env = DRIVER_ENV,
        default_value = "auto",
        value_parser = DriverPref::parse
    )]
    pub driver: DriverPref,
}

/// A server's `--workers`, or the CPUs this process may use when it is absent (the affinity
/// mask capped by the cgroup CPU quota, rounded up). Each server declares the flag with
/// [`at_least_one`] as its parser.
pub fn worker_count(workers: Option<usize>) -> usize {
    workers.unwrap_or_else(crate::cpus_available)
}

/// Parses a count that must be at least 1 (workers, connections, threads).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(count) => Ok(count),
        Err(error) => Err(error.to_string()),
    }
}

/// Parses the process's arguments, with their environment fallbacks, into `T`. `--help` and
/// `--version` print to stdout and exit 0. A bad command line prints one line,
/// `<program>: <what is wrong> (see --help)`, to stderr and exits with status 2: a server
/// logs one line per failure.
///
/// Call it before any thread starts: it rewrites the environment variables `T` reads (see
/// [`tidy`]).
pub fn parse_or_exit<T: clap::Parser>() -> T {
    let command = T::command();
    tidy_environment(&command);
    match T::try_parse() {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => exit_usage(command.get_name(), &one_line(&error)),
    }
}

/// Prints `<program>: <error>` to stderr and exits with code 2, the usage-error code.
pub fn exit_usage(program: &str, error: &dyn fmt::Display) -> ! {
    eprintln!("{program}: {error}");
    std::process::exit(2);
}

/// An environment value as the binaries read it: trimmed, and for a comma-separated list each
/// item trimmed and the empty ones dropped (so a trailing comma is harmless). `None` when
/// nothing is left: a blank variable counts as unset. clap takes values as they are given.
pub fn tidy(value: &str, comma_separated: bool) -> Option<String> {
    let tidied = if comma_separated {
        let items: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect();
        items.join(",")
    } else {
        value.trim().to_string()
    };
    (!tidied.is_empty()).then_some(tidied)
}

/// Rewrites each environment variable `command` reads as [`tidy`] reads it, before clap reads
/// them. Changing the environment is only sound while no other thread may read it, hence
/// [`parse_or_exit`]'s condition.
fn tidy_environment(command: &clap::Command) {
    for arg in command.get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        // A value that is not UTF-8 is left for clap to refuse, naming the flag.
        let Some(text) = value.to_str() else { continue };
        match tidy(text, arg.get_value_delimiter() == Some(',')) {
            None => std::env::remove_var(name),
            Some(tidied) if tidied != text => std::env::set_var(name, tidied),
            Some(_) => {}
        }
    }
}

/// clap's message for `error` in one line: its first paragraph without the `error: ` prefix,
/// lines joined, then where to read more.
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let paragraph = rendered.split("\n\n").next().unwrap_or_default();
    let message = paragraph.strip_prefix("error: ").unwrap_or(paragraph);
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    format!("{} (see --help)", lines.join(" "))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// A binary's flags as the servers declare theirs.
    #[derive(clap::Parser, Debug)]
    #[command(name = "t")]
    struct Args {
        /// Addresses to serve
        #[arg(long, value_name = "ADDR", env = "T_LISTEN", value_delimiter = ',')]
        listen: Vec<String>,
        /// A switch
        #[arg(long, env = "T_VERBOSE", value_parser = clap::builder::BoolishValueParser::new())]
        verbose: bool,
        /// Worker threads
        #[arg(long, value_name = "N", env = "T_WORKERS", value_parser = at_least_one)]
        workers: Option<usize>,
        #[command(flatten)]
        server: ServerArgs,
    }

    /// Held by every test that parses [`Args`], which reads the environment, so that the one
    /// test that sets variables races with none of them.
    static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// What a parse gives: listen values, workers, driver and verbose.
    type Values<'a> = (Vec<&'a str>, Option<usize>, DriverPref, bool);

    /// What a parse should give: the values, or the error line.
    #[track_caller]
    fn check(args: &[&str], expected: Result<Values, &str>) {
        let got = Args::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map(|parsed| {
                (
                    parsed.listen,
                    parsed.workers,
                    parsed.server.driver,
                    parsed.verbose,
                )
            })
            .map_err(|error| one_line(&error));
        let expected = expected
            .map(|(listen, workers, driver, verbose)| {
                let listen = listen.into_iter().map(String::from).collect();
                (listen, workers, driver, verbose)
            })
            .map_err(String::from);
        assert_eq!(got, expected, "args {args:?}");
    }

    #[test]
    fn parse_table() {
        let _environment = ENVIRONMENT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        use DriverPref::*;
        check(&[], Ok((vec![], None, Auto, false)));
        check(
            &["--listen", "a:1", "--listen=b:2,c:3"],
            Ok((vec!["a:1", "b:2", "c:3"], None, Auto, false)),
        );
        check(
            &["--workers=3", "--driver", "epoll", "--verbose"],
            Ok((vec![], Some(3), Epoll, true)),
        );
        check(&["--driver=uring"], Ok((vec![], None, IoUring, false)));
        check(
            &["--workers", "0"],
            Err("invalid value '0' for '--workers <N>': must be at least 1 (see --help)"),
        );
        check(
            &["--workers", "two"],
            Err("invalid value 'two' for '--workers <N>': invalid digit found in string (see --help)"),
        );
        check(
            &["--driver", "kqueue"],
            Err(
                "invalid value 'kqueue' for '--driver <auto|io_uring|epoll>': expected auto, \
                 io_uring or epoll (see --help)",
            ),
        );
        check(
            &["--workers", "1", "--workers=2"],
            Err("the argument '--workers <N>' cannot be used multiple times (see --help)"),
        );
        check(
            &["--nope"],
            Err("unexpected argument '--nope' found (see --help)"),
        );
        check(
            &["stray"],
            Err("unexpected argument 'stray' found (see --help)"),
        );
        check(
            &["--workers"],
            Err("a value is required for '--workers <N>' but none was supplied (see --help)"),
        );
        check(
            &["--verbose=1"],
            Err("unexpected value '1' for '--verbose' found; no more were expected (see --help)"),
        );
    }

    #[test]
    fn environment_values_are_tidied_as_they_were_always_read() {
        #[track_caller]
        fn check(value: &str, comma_separated: bool, expected: Option<&str>) {
            assert_eq!(
                tidy(value, comma_separated).as_deref(),
                expected,
                "{value:?} (list: {comma_separated})"
            );
        }
        check("a:1, b:2,", true, Some("a:1,b:2"));
        check(" , ", true, None);
        check(" 7 ", false, Some("7"));
        check("   ", false, None);
        check("", false, None);
        check("a, b", false, Some("a, b"));
    }

    #[test]
    fn the_environment_is_read_when_a_flag_is_absent() {
        let _environment = ENVIRONMENT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::env::set_var("T_LISTEN", "a:1, b:2,");
        std::env::set_var("T_WORKERS", " 9 ");
        std::env::set_var("T_VERBOSE", "yes");
        std::env::set_var("RINHA_DRIVER", "");
        tidy_environment(&Args::command());
        check(
            &[],
            Ok((vec!["a:1", "b:2"], Some(9), DriverPref::Auto, true)),
        );
        check(
            &["--listen", "c:3", "--workers", "2"],
            Ok((vec!["c:3"], Some(2), DriverPref::Auto, true)),
        );
        std::env::set_var("T_VERBOSE", "0");
        std::env::set_var("RINHA_DRIVER", "epoll");
        check(
            &[],
            Ok((vec!["a:1", "b:2"], Some(9), DriverPref::Epoll, false)),
        );
        for name in ["T_LISTEN", "T_WORKERS", "T_VERBOSE", "RINHA_DRIVER"] {
            std::env::remove_var(name);
        }
    }

    #[test]
    fn counts_are_at_least_one() {
        assert_eq!(at_least_one("1"), Ok(1));
        assert_eq!(at_least_one("0"), Err("must be at least 1".to_string()));
        assert!(at_least_one("-1").is_err());
    }

    #[test]
    fn the_help_names_flags_and_variables() {
        let _environment = ENVIRONMENT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let help = Args::command().render_help().to_string();
        for needle in [
            "--workers <N>",
            "T_WORKERS",
            "--driver",
            "RINHA_DRIVER",
            "T_LISTEN",
        ] {
            assert!(help.contains(needle), "--help lacks {needle}: {help}");
        }
    }
}
