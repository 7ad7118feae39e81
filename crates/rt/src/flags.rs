//! Command-line flags with environment fallbacks, shared by both binaries.
//!
//! Accepted forms: `--flag VALUE`, `--flag=VALUE`, repeated flags (`--listen A --listen B`),
//! switches (`--verbose`), `--help`/`-h` and `--version`. A flag not given on the command line
//! is read from its environment variable; lists there are comma-separated. The command line
//! wins over the environment, as a whole: `--listen` replaces all of `RINHA_LISTEN`.

use std::fmt;
use std::str::FromStr;

/// How a flag takes values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagKind {
    /// Exactly one value; giving it twice is an error.
    Value,
    /// Any number of values, from repetition or a comma-separated environment variable.
    Repeated,
    /// No value: present or absent (environment: 1, true or yes).
    Switch,
}

/// One flag a binary accepts.
#[derive(Clone, Copy, Debug)]
pub struct FlagSpec {
    /// The long name without dashes, e.g. `listen`.
    pub name: &'static str,
    /// The environment variable read when the flag is absent.
    pub env: Option<&'static str>,
    /// How it takes values.
    pub kind: FlagKind,
}

/// Why the command line was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagError {
    /// A flag this binary does not know.
    Unknown(String),
    /// A flag that needs a value came last, or a switch got `=VALUE`.
    MissingValue(String),
    /// A single-value flag given more than once.
    Repeated(String),
    /// A bare word where a flag was expected.
    Positional(String),
    /// A required flag is absent from both the command line and the environment.
    Required(String),
    /// A value that does not parse; `source` names the flag or the environment variable.
    Invalid {
        /// `--flag` or the environment variable name.
        source: String,
        /// The text given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Unknown(flag) => write!(f, "unknown flag {flag} (see --help)"),
            FlagError::MissingValue(flag) => write!(f, "flag {flag} needs a value"),
            FlagError::Repeated(flag) => write!(f, "flag {flag} given more than once"),
            FlagError::Positional(word) => write!(f, "unexpected argument {word:?} (see --help)"),
            FlagError::Required(what) => write!(f, "missing {what}"),
            FlagError::Invalid {
                source,
                value,
                reason,
            } => {
                write!(f, "invalid {source} {value:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for FlagError {}

/// The outcome of parsing.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these values.
    Run(Flags),
    /// `--help` or `-h` was given.
    Help,
    /// `--version` was given.
    Version,
}

/// Parsed values, one entry per spec.
#[derive(Debug)]
pub struct Flags {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    spec: FlagSpec,
    values: Vec<String>,
    /// `--name` or the environment variable the values came from.
    source: String,
}

/// Parses `args` (without the program name) against `specs`, reading absent flags through
/// `env` (normally `|name| std::env::var(name).ok()`).
pub fn parse(
    specs: &[FlagSpec],
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, FlagError> {
    let mut entries: Vec<Entry> = specs
        .iter()
        .map(|spec| Entry {
            spec: *spec,
            values: Vec::new(),
            source: format!("--{}", spec.name),
        })
        .collect();
    let mut given = vec![false; specs.len()];
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;
        match arg.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(FlagError::Positional(arg.clone()));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let position = specs
            .iter()
            .position(|spec| spec.name == name)
            .ok_or_else(|| FlagError::Unknown(format!("--{name}")))?;
        let entry = &mut entries[position];
        let value = match (entry.spec.kind, inline) {
            (FlagKind::Switch, Some(_)) => return Err(FlagError::MissingValue(arg.clone())),
            (FlagKind::Switch, None) => "true".to_string(),
            (_, Some(value)) => value,
            (_, None) => {
                let value = args
                    .get(index)
                    .ok_or_else(|| FlagError::MissingValue(arg.clone()))?;
                index += 1;
                value.clone()
            }
        };
        if entry.spec.kind != FlagKind::Repeated && given[position] {
            return Err(FlagError::Repeated(format!("--{name}")));
        }
        given[position] = true;
        entry.values.push(value);
    }
    for (entry, given) in entries.iter_mut().zip(given) {
        if !given {
            fill_from_env(entry, env);
        }
    }
    Ok(Parsed::Run(Flags { entries }))
}

fn fill_from_env(entry: &mut Entry, env: &dyn Fn(&str) -> Option<String>) {
    let Some(name) = entry.spec.env else { return };
    let Some(text) = env(name) else { return };
    entry.source = name.to_string();
    match entry.spec.kind {
        FlagKind::Value => {
            if !text.trim().is_empty() {
                entry.values.push(text.trim().to_string());
            }
        }
        FlagKind::Repeated => entry.values.extend(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(String::from),
        ),
        FlagKind::Switch => {
            if matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes"
            ) {
                entry.values.push("true".to_string());
            }
        }
    }
}

impl Flags {
    fn entry(&self, name: &str) -> &Entry {
        self.entries
            .iter()
            .find(|entry| entry.spec.name == name)
            .unwrap_or_else(|| panic!("flag --{name} is not among the specs"))
    }

    /// The value of a single-value flag, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.entry(name).values.first().map(String::as_str)
    }

    /// Every value of a repeated flag, in order.
    pub fn values(&self, name: &str) -> &[String] {
        &self.entry(name).values
    }

    /// True when a switch is on.
    pub fn switch(&self, name: &str) -> bool {
        !self.entry(name).values.is_empty()
    }

    /// `--name` or the environment variable the values of `name` came from, for messages.
    pub fn source(&self, name: &str) -> &str {
        &self.entry(name).source
    }

    /// The value of a single-value flag, or a `Required` error naming flag and variable.
    pub fn required(&self, name: &str) -> Result<&str, FlagError> {
        self.value(name)
            .ok_or_else(|| FlagError::Required(self.describe(name)))
    }

    /// Every value of a repeated flag; at least one is required.
    pub fn required_values(&self, name: &str) -> Result<&[String], FlagError> {
        let values = self.values(name);
        if values.is_empty() {
            return Err(FlagError::Required(self.describe(name)));
        }
        Ok(values)
    }

    /// Parses the value of a single-value flag, if given.
    pub fn parsed<T>(&self, name: &str) -> Result<Option<T>, FlagError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.value(name) {
            None => Ok(None),
            Some(text) => self.parse_one(name, text).map(Some),
        }
    }

    /// Parses every value of a repeated flag.
    pub fn parsed_values<T>(&self, name: &str) -> Result<Vec<T>, FlagError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.values(name)
            .iter()
            .map(|text| self.parse_one(name, text))
            .collect()
    }

    fn parse_one<T>(&self, name: &str, text: &str) -> Result<T, FlagError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        text.parse::<T>().map_err(|error| FlagError::Invalid {
            source: self.source(name).to_string(),
            value: text.to_string(),
            reason: error.to_string(),
        })
    }

    fn describe(&self, name: &str) -> String {
        match self.entry(name).spec.env {
            Some(env) => format!("--{name} (or {env})"),
            None => format!("--{name}"),
        }
    }
}

/// Parses the process's own arguments and environment. Prints `usage` (to stdout, exit 0) for
/// `--help`, `version_line` for `--version`, and for an error one line `<program>: <error>` to
/// stderr with exit code 2.
pub fn parse_or_exit(specs: &[FlagSpec], program: &str, usage: &str, version_line: &str) -> Flags {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(specs, &args, &|name| std::env::var(name).ok()) {
        Ok(Parsed::Run(flags)) => flags,
        Ok(Parsed::Help) => {
            print!("{usage}");
            std::process::exit(0);
        }
        Ok(Parsed::Version) => {
            println!("{version_line}");
            std::process::exit(0);
        }
        Err(error) => exit_usage(program, &error),
    }
}

/// Prints `<program>: <error>` to stderr and exits with code 2, the usage-error code.
pub fn exit_usage(program: &str, error: &dyn fmt::Display) -> ! {
    eprintln!("{program}: {error}");
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        FlagSpec {
            name: "listen",
            env: Some("T_LISTEN"),
            kind: FlagKind::Repeated,
        },
        FlagSpec {
            name: "workers",
            env: Some("T_WORKERS"),
            kind: FlagKind::Value,
        },
        FlagSpec {
            name: "data-dir",
            env: None,
            kind: FlagKind::Value,
        },
        FlagSpec {
            name: "verbose",
            env: Some("T_VERBOSE"),
            kind: FlagKind::Switch,
        },
    ];

    /// What a parse should give: listen values, workers, data-dir, verbose; or an error; or
    /// help/version.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Run(
            Vec<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            bool,
        ),
        Error(FlagError),
        Help,
        Version,
    }

    fn check(args: &[&str], env: &[(&str, &str)], expected: Expect) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env_lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        let got = match parse(SPECS, &args, &env_lookup) {
            Ok(Parsed::Run(flags)) => Expect::Run(
                flags
                    .values("listen")
                    .iter()
                    .map(|s| &*s.clone().leak())
                    .collect(),
                flags.value("workers").map(|s| &*s.to_string().leak()),
                flags.value("data-dir").map(|s| &*s.to_string().leak()),
                flags.switch("verbose"),
            ),
            Ok(Parsed::Help) => Expect::Help,
            Ok(Parsed::Version) => Expect::Version,
            Err(error) => Expect::Error(error),
        };
        assert_eq!(got, expected, "args {args:?} env {env:?}");
    }

    #[test]
    fn parse_table() {
        use Expect::*;
        check(&[], &[], Run(vec![], None, None, false));
        check(
            &["--listen", "a:1", "--listen=b:2"],
            &[],
            Run(vec!["a:1", "b:2"], None, None, false),
        );
        check(
            &["--workers=3", "--data-dir", "/d"],
            &[],
            Run(vec![], Some("3"), Some("/d"), false),
        );
        check(&["--verbose"], &[], Run(vec![], None, None, true));
        check(&[], &[("T_VERBOSE", "yes")], Run(vec![], None, None, true));
        check(&[], &[("T_VERBOSE", "0")], Run(vec![], None, None, false));
        check(
            &[],
            &[("T_LISTEN", "a:1, b:2,")],
            Run(vec!["a:1", "b:2"], None, None, false),
        );
        check(
            &["--listen", "c:3"],
            &[("T_LISTEN", "a:1,b:2")],
            Run(vec!["c:3"], None, None, false),
        );
        check(
            &["--workers", "2"],
            &[("T_WORKERS", "9")],
            Run(vec![], Some("2"), None, false),
        );
        check(
            &[],
            &[("T_WORKERS", "9")],
            Run(vec![], Some("9"), None, false),
        );
        check(&["--help"], &[], Help);
        check(&["--workers", "2", "-h"], &[], Help);
        check(&["--version"], &[], Version);
        check(&["--nope"], &[], Error(FlagError::Unknown("--nope".into())));
        check(
            &["--workers"],
            &[],
            Error(FlagError::MissingValue("--workers".into())),
        );
        check(
            &["--verbose=1"],
            &[],
            Error(FlagError::MissingValue("--verbose=1".into())),
        );
        check(
            &["--workers", "1", "--workers=2"],
            &[],
            Error(FlagError::Repeated("--workers".into())),
        );
        check(
            &["stray"],
            &[],
            Error(FlagError::Positional("stray".into())),
        );
    }

    #[test]
    fn typed_values_and_errors_name_their_source() {
        let args = vec!["--workers".to_string(), "x".to_string()];
        let Ok(Parsed::Run(flags)) = parse(SPECS, &args, &|_| None) else {
            panic!()
        };
        let error = flags.parsed::<usize>("workers").unwrap_err();
        assert!(
            error.to_string().starts_with("invalid --workers \"x\""),
            "{error}"
        );
        let Ok(Parsed::Run(flags)) = parse(SPECS, &[], &|_| Some("7".into())) else {
            panic!()
        };
        assert_eq!(flags.parsed::<usize>("workers").unwrap(), Some(7));
        assert_eq!(flags.source("workers"), "T_WORKERS");
        let Ok(Parsed::Run(flags)) = parse(SPECS, &[], &|_| None) else {
            panic!()
        };
        assert_eq!(
            flags.required("workers").unwrap_err().to_string(),
            "missing --workers (or T_WORKERS)"
        );
        assert_eq!(
            flags.required_values("listen").unwrap_err().to_string(),
            "missing --listen (or T_LISTEN)"
        );
    }
}
