//! The README's configuration table and a binary's clap declarations as the same rows, so that
//! each binary's test fails when the two part (a flag added, renamed, given another variable
//! or another default on one side only).
//!
//! The table has the columns `| binary | flag | environment | default | meaning |`:
//! - binary: the program, or a label that several share (`both servers`);
//! - flag: in backquotes, `[SUBCOMMAND] [--NAME] [VALUE ...]`, then `(repeatable)` when the
//!   flag may be given more than once; a subcommand's row without `--NAME` shows its
//!   positional arguments;
//! - environment: in backquotes the variable the flag falls back to, then `(comma-separated)`
//!   when it holds a list;
//! - default: in backquotes the value clap fills in; plain words (`CPUs usable`, `(required)`)
//!   for a default computed at start or none;
//! - meaning: free text, not compared.

use std::fmt;

/// The header line that opens the table.
const HEADER: &str = "| binary | flag | environment | default | meaning |";

/// One flag (or a subcommand's positional arguments) with what the table says about it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// `[SUBCOMMAND] [--NAME] [VALUE ...]`.
    pub usage: String,
    /// May be given more than once.
    pub repeatable: bool,
    /// The environment variable it falls back to.
    pub env: Option<String>,
    /// The variable holds a comma-separated list.
    pub comma_separated: bool,
    /// The default clap fills in; `None` when it is computed at start or there is none.
    pub default: Option<String>,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.usage)?;
        if self.repeatable {
            f.write_str(" (repeatable)")?;
        }
        match &self.env {
            Some(env) if self.comma_separated => write!(f, ", env `{env}` (comma-separated)")?,
            Some(env) => write!(f, ", env `{env}`")?,
            None => f.write_str(", no env")?,
        }
        match &self.default {
            Some(default) => write!(f, ", default `{default}`"),
            None => f.write_str(", no fixed default"),
        }
    }
}

/// The rows `command` declares: its own flags, then each subcommand's positional arguments and
/// flags. clap's `--help`, `--version` and `help` subcommand are left out, as are hidden flags.
pub fn declared(command: &clap::Command) -> Vec<Row> {
    let mut rows = Vec::new();
    push_declared(&mut rows, None, command);
    for subcommand in command.get_subcommands() {
        if subcommand.get_name() != "help" {
            push_declared(&mut rows, Some(subcommand.get_name()), subcommand);
        }
    }
    rows.sort();
    rows
}

fn push_declared(rows: &mut Vec<Row>, subcommand: Option<&str>, command: &clap::Command) {
    let positionals: Vec<String> = command.get_positionals().map(value_names).collect();
    if subcommand.is_some() || !positionals.is_empty() {
        let words = subcommand.into_iter().map(String::from).chain(positionals);
        rows.push(Row {
            usage: words.collect::<Vec<_>>().join(" "),
            repeatable: false,
            env: None,
            comma_separated: false,
            default: None,
        });
    }
    for arg in command.get_arguments() {
        let builtin = matches!(arg.get_id().as_str(), "help" | "version");
        if arg.is_positional() || arg.is_hide_set() || builtin {
            continue;
        }
        let long = arg.get_long().expect("every flag has a long name");
        let mut words: Vec<String> = subcommand.into_iter().map(String::from).collect();
        words.push(format!("--{long}"));
        let takes_values = arg.get_action().takes_values();
        if takes_values {
            words.push(value_names(arg));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        rows.push(Row {
            usage: words.join(" "),
            repeatable: matches!(arg.get_action(), clap::ArgAction::Append),
            env: arg.get_env().map(|env| env.to_string_lossy().into_owned()),
            comma_separated: arg.get_value_delimiter() == Some(','),
            // A switch's implicit `false` is no default worth a column.
            default: (takes_values && !defaults.is_empty()).then(|| defaults.join(",")),
        });
    }
}

fn value_names(arg: &clap::Arg) -> String {
    match arg.get_value_names() {
        Some(names) => names
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        None => arg.get_id().as_str().to_uppercase(),
    }
}

/// The rows of the configuration table in `readme` whose binary cell is one of `binaries`.
pub fn documented(readme: &str, binaries: &[&str]) -> Result<Vec<Row>, String> {
    let mut lines = readme.lines().skip_while(|line| line.trim() != HEADER);
    if lines.next().is_none() {
        return Err(format!("no table opening with {HEADER:?}"));
    }
    let mut rows = Vec::new();
    for line in lines.take_while(|line| line.starts_with('|')) {
        let cells = split_cells(line);
        if cells.first().is_some_and(|cell| cell.starts_with("---")) {
            continue;
        }
        let [binary, flag, env, default, _meaning] = cells.as_slice() else {
            return Err(format!("not five cells: {line}"));
        };
        if binaries.contains(&binary.as_str()) {
            rows.push(
                documented_row(flag, env, default).map_err(|error| format!("{error}: {line}"))?,
            );
        }
    }
    rows.sort();
    Ok(rows)
}

fn documented_row(flag: &str, env: &str, default: &str) -> Result<Row, String> {
    let (usage, flag_note) = code(flag).ok_or("the flag cell has no `code`")?;
    let (env, env_note) = match code(env) {
        Some((name, note)) => (Some(name), note),
        None if env.is_empty() => (None, ""),
        None => return Err("the environment cell has no `code`".to_string()),
    };
    Ok(Row {
        usage: usage.to_string(),
        repeatable: flag_note.contains("(repeatable)"),
        env: env.map(String::from),
        comma_separated: env_note.contains("(comma-separated)"),
        default: code(default).map(|(value, _)| value.to_string()),
    })
}

/// The text between the first pair of backquotes, and what follows them.
fn code(cell: &str) -> Option<(&str, &str)> {
    let rest = cell.strip_prefix('`')?;
    rest.split_once('`')
}

/// The cells of a table line, trimmed, with `\|` (a bar inside a cell) unescaped.
fn split_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().expect("one cell").push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            _ => cells.last_mut().expect("one cell").push(c),
        }
    }
    cells.iter().map(|cell| cell.trim().to_string()).collect()
}

/// The test every binary runs on its own flags: clap's own consistency checks, then
/// [`compare`] with the README; panics with the report.
pub fn assert_documented<Flags: clap::CommandFactory>(readme: &str, binaries: &[&str]) {
    let command = Flags::command();
    command.clone().debug_assert();
    if let Err(report) = compare(readme, &command, binaries) {
        panic!("{report}");
    }
}

/// Compares the rows the README documents for `binaries` with those `command` declares; the
/// error lists the rows found on one side only.
pub fn compare(readme: &str, command: &clap::Command, binaries: &[&str]) -> Result<(), String> {
    let documented = documented(readme, binaries)?;
    let declared = declared(command);
    if documented == declared {
        return Ok(());
    }
    let mut report = format!(
        "the README's configuration table ({}) and {}'s flags differ",
        binaries.join(", "),
        command.get_name()
    );
    for row in documented.iter().filter(|row| !declared.contains(row)) {
        report.push_str(&format!("\n  only in the README:   {row}"));
    }
    for row in declared.iter().filter(|row| !documented.contains(row)) {
        report.push_str(&format!("\n  only in the binary:   {row}"));
    }
    Err(report)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, Subcommand};

    use super::*;

    #[derive(Parser)]
    #[command(name = "tool")]
    struct Tool {
        /// Addresses
        #[arg(long, value_name = "ADDR", env = "T_LISTEN", value_delimiter = ',')]
        listen: Vec<String>,
        /// A number
        #[arg(long, value_name = "MS", env = "T_MS", default_value_t = 1000)]
        timeout_ms: u64,
        /// A switch
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<Action>,
    }

    #[derive(Subcommand)]
    enum Action {
        /// Creates
        Init {
            #[arg(value_name = "DIR")]
            dir: String,
            /// Records
            #[arg(long, value_name = "N", default_value_t = 64)]
            records: u64,
        },
    }

    const README: &str = "\
Some text.

| binary | flag | environment | default | meaning |
|---|---|---|---|---|
| tool | `--listen ADDR` (repeatable) | `T_LISTEN` (comma-separated) | (required) | addresses |
| tool | `--timeout-ms MS` | `T_MS` | `1000` | a number |
| other | `--elsewhere` | | | another binary's |
| shared | `--json` | | | a switch \\| with a bar |
| tool | `init DIR` | | | creates |
| tool | `init --records N` | | `64` | records |

After the table.
";

    #[test]
    fn a_matching_table_passes() {
        assert_eq!(
            compare(README, &Tool::command(), &["tool", "shared"]),
            Ok(())
        );
    }

    #[test]
    fn each_kind_of_drift_is_reported() {
        #[track_caller]
        fn check(from: &str, to: &str, expected: &str) {
            assert!(README.contains(from), "{from}");
            let readme = README.replace(from, to);
            let error = compare(&readme, &Tool::command(), &["tool", "shared"]).unwrap_err();
            assert!(error.contains(expected), "{from} -> {to}: {error}");
        }
        check(
            "`T_MS` | `1000`",
            "`T_MS` | `100`",
            "only in the README:   `--timeout-ms MS`, env `T_MS`, default `100`",
        );
        check("`T_MS` | `1000`", "`T_MS` | 1000", "no fixed default");
        check("`T_MS`", "`T_MILLIS`", "env `T_MILLIS`");
        check(
            "`--timeout-ms MS`",
            "`--timeout MS`",
            "only in the binary:   `--timeout-ms MS`",
        );
        check(
            " (repeatable)",
            "",
            "only in the binary:   `--listen ADDR` (repeatable)",
        );
        check(
            " (comma-separated)",
            "",
            "only in the README:   `--listen ADDR` (repeatable), env `T_LISTEN`, no",
        );
        check("| shared |", "| other |", "only in the binary:   `--json`");
        check(
            "`init DIR`",
            "`init FILE`",
            "only in the README:   `init FILE`",
        );
        check(
            "`init --records N`",
            "`init --records COUNT`",
            "`init --records COUNT`",
        );
        check(
            "| tool | `--timeout-ms MS`",
            "| tool | --timeout-ms MS",
            "has no `code`",
        );
        check("| binary |", "| program |", "no table opening with");
    }

    #[test]
    fn cells_split_on_bars_that_are_not_escaped() {
        assert_eq!(
            split_cells("| a | `b\\|c` | |"),
            vec!["a".to_string(), "`b|c`".to_string(), String::new()]
        );
    }
}
