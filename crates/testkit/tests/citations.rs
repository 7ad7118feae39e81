//! Every path the repository's text cites exists, so a file that moves takes its citations with
//! it. The test reads the Markdown files, the comments of the Rust sources, and the shell
//! scripts, Dockerfiles and compose files whole, and lists every citation that does not resolve:
//!
//! - from the root: a word that starts with a top directory of [`ROOTS`] (`docs/api.md`,
//!   `./scripts/setup.sh`), braces expanded (`crates/testkit/tests/{layers,citations}.rs`); a
//!   command at the root (`./run`); in Markdown and Rust, a Markdown file's name (`README.md`);
//! - from the citing file's crate: a word that starts with one of [`CRATE_DIRECTORIES`]
//!   (`tests/layers.rs` in `crates/testkit`);
//! - from the citing file's directory: a Markdown link's target (`[text](target#anchor)`) and a
//!   word that starts with `../`, which must stay inside the repository;
//! - any of these with `:N` or `:N-M` (`crates/testkit/src/lib.rs:1-10`): the file has that many
//!   lines; with a trailing `/` (`bench/`): a directory.
//!
//! Not citations: a path with a placeholder (`<id>`, `$DIR`, `*`, `~`), a web link, a path of
//! [`UNCHECKED`] (`bench/results/`, which runs create), and any other short path
//! (`disk/fixture.rs`): a citation meant to stay true is written from the root.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use rinha_testkit::source::{expand_braces, repo_root, split_rust};

/// The repository's top directories: a path that starts with one of them is read from the root.
const ROOTS: [&str; 7] = [
    ".ci", "bench", "crates", "docker", "docs", "gatling", "scripts",
];

/// A crate's directories: a path that starts with one of them is read from the citing crate.
const CRATE_DIRECTORIES: [&str; 3] = ["src", "tests", "benches"];

/// Paths from the root never read nor checked: version control, build output, and what runs
/// create (the `.gitignore` files list them), which a text may cite before a run made them.
const UNCHECKED: [&str; 5] = [".git", "target", "data", "bench/results", "gatling/results"];

/// Characters that mark a path as a pattern or a placeholder rather than a file.
const PLACEHOLDERS: [char; 5] = ['$', '<', '>', '*', '~'];

/// Fewer citations than this means the scan went blind.
const CITATIONS_MIN: usize = 300;

#[test]
fn every_citation_resolves() {
    let (citations, broken) = check_repository(&repo_root());
    let blind = format!("only {citations} citations read: is the scan broken?");
    assert!(citations > CITATIONS_MIN, "{blind}");
    assert!(
        broken.is_empty(),
        "{} citations do not resolve (fix the text, or the path if the file moved):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[rustfmt::skip]
#[test]
fn broken_citations_are_found() {
    let dir = rinha_testkit::temp_dir("citations");
    let files = [
        ("crates/a/src/lib.rs", "//! docs/x.md, `docs/gone.md`, crates/a/src/lib.rs:3, \
                                 src/lib.rs:2, tests/gone.rs, LOAD.md.\n\
                                 fn f() { \"docs/nope.md\"; }\n"),
        ("docs/x.md", "[up](../README.md), [gone](gone.md#anchor), [out](../../x.md), \
                       [web](https://a.io/b.md)\n`crates/a/{src,tests}/`, bench/results/raw.tsv, \
                       docs/<id>.md, crates/a/src/lib.rs:1-2, ../README.md:1, ./run.\n"),
        ("run", "#!/bin/sh\n. ./scripts/lib.sh # docs/x.md:9, writes report.md\n"),
        ("README.md", "[docs](docs/x.md), tests/gone.rs\n"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a file has a directory")).expect("mkdir");
        fs::write(path, text).expect("write a file");
    }
    let (citations, broken) = check_repository(dir.path());
    let expected = [
        "crates/a/src/lib.rs:1: LOAD.md (LOAD.md does not exist)",
        "crates/a/src/lib.rs:1: crates/a/src/lib.rs:3 (crates/a/src/lib.rs has 2 lines)",
        "crates/a/src/lib.rs:1: docs/gone.md (docs/gone.md does not exist)",
        "crates/a/src/lib.rs:1: tests/gone.rs (crates/a/tests/gone.rs does not exist)",
        "docs/x.md:1: ../../x.md (outside the repository)",
        "docs/x.md:1: gone.md (docs/gone.md does not exist)",
        "docs/x.md:2: crates/a/{src,tests}/ (crates/a/tests does not exist)",
        "run:2: ./scripts/lib.sh (scripts/lib.sh does not exist)",
        "run:2: docs/x.md:9 (docs/x.md has 2 lines)",
    ];
    assert_eq!((citations, broken), (17, expected.map(String::from).to_vec()));
}

/// How a file is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The whole text, links included.
    Markdown,
    /// The comments only.
    Rust,
    /// The whole text: shell scripts, Dockerfiles, compose files.
    Plain,
}

/// The number of citations read below `root`, and each one that does not resolve, as
/// `file:line: citation (why)`, sorted.
fn check_repository(root: &Path) -> (usize, Vec<String>) {
    let mut files = BTreeSet::new();
    walk(root, Path::new(""), &mut files);
    let (mut citations, mut broken) = (0, BTreeSet::new());
    for file in &files {
        let Some(kind) = kind_of(root, file) else {
            continue;
        };
        let mut text = fs::read_to_string(root.join(file)).unwrap_or_default();
        if kind == Kind::Rust {
            text = split_rust(&text).comments;
        }
        for (index, line) in text.lines().enumerate() {
            for (token, base) in cited(line, file, kind) {
                citations += 1;
                if let Some(why) = problem(root, &base, &token) {
                    broken.insert(format!("{}:{}: {token} ({why})", file.display(), index + 1));
                }
            }
        }
    }
    (citations, broken.into_iter().collect())
}

/// Adds every file below `root.join(relative)` to `files`, as a path from `root`.
fn walk(root: &Path, relative: &Path, files: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = fs::read_dir(root.join(relative)) else {
        return;
    };
    for entry in entries.flatten() {
        let path = relative.join(entry.file_name());
        if unchecked(&path) {
            continue;
        } else if entry.path().is_dir() {
            walk(root, &path, files);
        } else {
            files.insert(path);
        }
    }
}

/// How `file` is read, or `None` when it is not read.
fn kind_of(root: &Path, file: &Path) -> Option<Kind> {
    let name = file.file_name()?.to_string_lossy();
    let compose = name.starts_with("docker-compose") || name.starts_with("compose");
    match file.extension().and_then(|ending| ending.to_str()) {
        Some("md") => Some(Kind::Markdown),
        Some("rs") => Some(Kind::Rust),
        Some("sh") => Some(Kind::Plain),
        Some("yml" | "yaml") if compose => Some(Kind::Plain),
        _ if name.starts_with("Dockerfile") => Some(Kind::Plain),
        // A script without an ending: its first line names a shell.
        None => {
            let text = fs::read(root.join(file)).ok()?;
            let first = text.split(|&b| b == b'\n').next()?;
            let shell = first.starts_with(b"#!") && first.windows(2).any(|w| w == b"sh");
            shell.then_some(Kind::Plain)
        }
        _ => None,
    }
}

/// The citations of a line of `file`, each with the directory it is a path from: the targets
/// of the Markdown links, then the words that [`base_of`] takes for paths.
fn cited(line: &str, file: &Path, kind: Kind) -> Vec<(String, PathBuf)> {
    let here = file.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut cited = Vec::new();
    for link in line.split("](").skip(1).filter(|_| kind == Kind::Markdown) {
        let target = link.split([')', ' ', '#']).next().unwrap_or("");
        if !target.is_empty() && !target.contains(':') {
            cited.push((target.to_string(), here.clone()));
        }
    }
    // Words of path characters, without the punctuation that ends a sentence.
    let path_char = |c: char| c.is_alphanumeric() || "_./-{},:$<>*~".contains(c);
    for word in line.split(|c: char| !path_char(c)) {
        let word = word.trim_end_matches(['.', ',', ':', ';', '-']).to_string();
        if !word.contains(PLACEHOLDERS) && !cited.iter().any(|(link, _)| *link == word) {
            cited.extend(base_of(&word, file, kind).map(|base| (word, base)));
        }
    }
    cited
}

/// The directory `word`, read in `file`, is a path from, or `None` when it is no citation.
fn base_of(word: &str, file: &Path, kind: Kind) -> Option<PathBuf> {
    let path = word.strip_prefix("./").unwrap_or(word);
    let top = path.split('/').next().unwrap_or(path);
    let krate = Some(file.iter().take(2).collect()).filter(|_| file.starts_with("crates"));
    match (top, path.contains('/')) {
        ("..", true) => file.parent().map(Path::to_path_buf),
        (_, true) if ROOTS.contains(&top) => Some(PathBuf::new()),
        (_, true) if CRATE_DIRECTORIES.contains(&top) => krate,
        // A command at the root (`./run`).
        (_, false) if path.len() < word.len() => Some(PathBuf::new()),
        (_, false) if path.ends_with(".md") && kind != Kind::Plain => Some(PathBuf::new()),
        _ => None,
    }
}

/// Why `token`, a path from `base` with an optional `:N` or `:N-M`, does not resolve, or
/// `None` when it does or is one of [`UNCHECKED`].
fn problem(root: &Path, base: &Path, token: &str) -> Option<String> {
    let (path, lines) = token.split_once(':').unwrap_or((token, ""));
    let line = lines.rsplit('-').next()?.parse::<usize>().ok();
    for path in expand_braces(path) {
        let Some(relative) = normalize(&base.join(&path)) else {
            return Some("outside the repository".to_string());
        };
        let full = root.join(&relative);
        if unchecked(&relative) {
            continue;
        } else if !full.exists() || path.ends_with('/') && !full.is_dir() {
            return Some(format!("{} does not exist", relative.display()));
        }
        let count = fs::read_to_string(&full).map_or(0, |text| text.lines().count());
        if line.is_some_and(|line| count < line) {
            return Some(format!("{} has {count} lines", relative.display()));
        }
    }
    None
}

/// Whether `path`, from the root, is one of [`UNCHECKED`] or below one.
fn unchecked(path: &Path) -> bool {
    UNCHECKED
        .iter()
        .any(|unchecked| path.starts_with(unchecked))
}

/// `path` without `.` and `..` parts, or `None` if it leaves the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(part) => parts.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}
