//! Every path the repository's text cites exists, so a file that moves takes its citations with
//! it. The test reads the Markdown files, the comments of the Rust sources, and the shell
//! scripts, Dockerfiles and compose files whole, and lists every citation that does not resolve:
//!
//! - a path from the repository root: one that starts with a top directory of [`ROOTS`]
//!   (`crates/testkit/src/source.rs`, `docs/api.md`, `.ci/run`, `bench/`), braces expanded
//!   (`crates/testkit/tests/{layers,citations}.rs`);
//! - a path relative to the citing file: a Markdown link's target (`[text](target)`) or a path
//!   that starts with `../` (here, `../src/lib.rs`); leaving the repository takes an entry of
//!   [`OUTSIDE`]. One that starts with `./` may also be from the root, as commands are
//!   (`./run`);
//! - a shorter path ending in a file name (`tests/layers.rs`, `src/source.rs`), from the citing
//!   file's directory, its crate, the crate a Markdown heading above it names, or the root,
//!   when its first directory is there (so `bin/gatling.sh`, a path of Gatling's bundle, is not
//!   taken for one of the repository);
//! - a bare Markdown file name (`README.md`), in Markdown and Rust comments: some file of the
//!   repository has that name;
//! - a line citation (`lib.rs:10`, `crates/testkit/src/lib.rs:1-10`): the file, found as
//!   above (a bare name: the citing file's crate first, then anywhere), has that many lines.
//!
//! Paths that tools generate are not citations of files: what a `.gitignore` lists
//! (`bench/results/`) is not checked, nor is a path with a placeholder (`<id>`, `$DIR`, `*`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use rinha_testkit::source::{repo_root, split_rust};

/// The repository's top directories: a path that starts with one of them is read from the root.
const ROOTS: [&str; 7] = [
    ".ci", "bench", "crates", "docker", "docs", "gatling", "scripts",
];

/// Directories never read: build output, version control, vendored sources.
const SKIPPED_DIRECTORIES: [&str; 4] = ["target", ".git", "vendor", "node_modules"];

/// The endings of file names that a shorter relative path (`tests/layers.rs`) is checked for.
const FILE_ENDINGS: [&str; 10] = [
    "rs", "md", "sh", "toml", "yml", "yaml", "json", "lua", "scala", "conf",
];

/// Paths outside the repository that it may cite, relative to the root, each with the reason.
/// Empty: nothing cites outside the repository today. An entry no file cites fails the test.
const OUTSIDE: [(&str, &str); 0] = [];

#[test]
fn every_citation_resolves() {
    let root = repo_root();
    let report = check_repository(&root, &OUTSIDE);
    assert!(
        report.citations > 200,
        "only {} citations read: is the scan broken?",
        report.citations
    );
    assert!(
        report.broken.is_empty(),
        "{} citations do not resolve (fix the text, or the path if the file moved):\n{}",
        report.broken.len(),
        report.broken.join("\n")
    );
}

#[test]
fn broken_citations_are_found() {
    let dir = rinha_testkit::temp_dir("citations");
    let root = dir.path();
    let files = [
        ("crates/a/src/lib.rs", "//! See docs/x.md and LOAD.md, `tests/t.rs`, lib.rs:3.\nfn f() { let s = \"docs/nope.md\"; }\n"),
        ("crates/a/tests/t.rs", "// crates/a/src/lib.rs:2 and crates/a/src/lib.rs:9 and ../../../../spec/API.md\n"),
        ("docs/x.md", "[up](../README.md), [gone](gone.md#anchor), [web](https://example.com/a.md)\n`crates/a/{src,tests}/`, `bench/results/raw.tsv`, `account-<id>.espora`, `.ci/run:1`\n"),
        ("README.md", "### `crates/a`\n- `tests/t.rs`, `src/lib.rs`\n```sh\n# a comment, not a heading\n```\n- `tests/gone.rs`\n\n### Other\n- `tests/t.rs`, `bin/tool.sh`: not paths of this repository\n"),
        ("bench/.gitignore", "results/\n"),
        ("run", "#!/bin/sh\n. scripts/lib.sh # docker/Dockerfile\n"),
    ];
    for (path, text) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let report = check_repository(root, &[]);
    let expected = [
        "crates/a/src/lib.rs:1: LOAD.md (no such file)",
        "crates/a/src/lib.rs:1: lib.rs:3 (crates/a/src/lib.rs has 2 lines)",
        "crates/a/tests/t.rs:1: ../../../../spec/API.md (outside the repository, not in OUTSIDE)",
        "crates/a/tests/t.rs:1: crates/a/src/lib.rs:9 (crates/a/src/lib.rs has 2 lines)",
        "docs/x.md:1: gone.md (no such file)",
        "docs/x.md:2: .ci/run:1 (no such file)",
        "run:2: docker/Dockerfile (no such file)",
        "run:2: scripts/lib.sh (no such file)",
        "README.md:6: tests/gone.rs (no such file)",
    ];
    let mut expected: Vec<String> = expected.iter().map(|line| line.to_string()).collect();
    expected.sort();
    assert_eq!(report.broken, expected);
    // An entry of OUTSIDE lets its path be cited, and fails when nothing cites it.
    let allowed = check_repository(root, &[("../spec/API.md", "a reason")]);
    assert_eq!(
        allowed.broken.len(),
        expected.len() - 1,
        "{:?}",
        allowed.broken
    );
    let unused = check_repository(root, &[("../elsewhere.md", "a reason")]);
    assert!(
        unused
            .broken
            .iter()
            .any(|line| line.contains("../elsewhere.md")),
        "{:?}",
        unused.broken
    );
}

/// What a scan found.
struct Report {
    /// How many citations were read.
    citations: usize,
    /// Each citation that does not resolve, as `file:line: path (why)`, sorted.
    broken: Vec<String>,
}

/// How a file is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The whole text, with its links and its headings.
    Markdown,
    /// The comments only.
    Rust,
    /// The whole text: shell scripts, Dockerfiles, compose files.
    Plain,
}

/// The repository as the scan sees it.
struct Repository<'a> {
    root: &'a Path,
    /// Every file and directory below the root, relative to it (skipped directories aside).
    paths: BTreeSet<PathBuf>,
    /// Each file name and where files of that name are.
    by_name: BTreeMap<String, Vec<PathBuf>>,
    /// What the `.gitignore` files list: each one's directory and its patterns.
    ignored: Vec<(PathBuf, Vec<String>)>,
}

fn check_repository(root: &Path, outside: &[(&str, &str)]) -> Report {
    let mut paths = BTreeSet::new();
    walk(root, Path::new(""), &mut paths);
    let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut ignored = Vec::new();
    for path in &paths {
        let Some(name) = path.file_name() else {
            continue;
        };
        by_name
            .entry(name.to_string_lossy().into_owned())
            .or_default()
            .push(path.clone());
        if name == ".gitignore" {
            let text = fs::read_to_string(root.join(path)).unwrap_or_default();
            let patterns = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_owned)
                .collect();
            ignored.push((
                path.parent().unwrap_or(Path::new("")).to_path_buf(),
                patterns,
            ));
        }
    }
    let repo = Repository {
        root,
        paths,
        by_name,
        ignored,
    };
    let mut citations = 0;
    let mut broken = BTreeSet::new();
    let mut outside_cited = BTreeSet::new();
    for file in repo.paths.iter().filter(|path| root.join(path).is_file()) {
        if repo.is_ignored(file) {
            continue;
        }
        let Some(kind) = kind_of(root, file) else {
            continue;
        };
        let Ok(text) = fs::read_to_string(root.join(file)) else {
            continue;
        };
        let text = if kind == Kind::Rust {
            split_rust(&text).comments
        } else {
            text
        };
        let mut heading_crate: Option<PathBuf> = None;
        let mut in_code_block = false;
        for (index, line) in text.lines().enumerate() {
            if kind == Kind::Markdown && line.trim_start().starts_with("```") {
                in_code_block = !in_code_block;
            }
            if kind == Kind::Markdown && !in_code_block && line.starts_with('#') {
                heading_crate = cited_tokens(line)
                    .into_iter()
                    .map(PathBuf::from)
                    .find(|path| path.starts_with("crates") && path.components().count() == 2);
            }
            // A link's target first: read as a link (from the file's directory), it is not
            // read again as a plain path.
            let mut cited: Vec<(String, bool)> = Vec::new();
            if kind == Kind::Markdown {
                cited.extend(link_targets(line).into_iter().map(|t| (t, true)));
            }
            cited.extend(cited_tokens(line).into_iter().map(|t| (t, false)));
            let mut seen = BTreeSet::new();
            for (token, is_link) in cited {
                if !seen.insert(token.clone()) {
                    continue;
                }
                let context = Context {
                    file,
                    kind,
                    heading_crate: heading_crate.as_deref(),
                };
                let Some(outcome) = repo.resolve(&token, is_link, &context) else {
                    continue;
                };
                citations += 1;
                let why = match outcome {
                    Outcome::Found => continue,
                    Outcome::Outside(path) => {
                        if outside
                            .iter()
                            .any(|(allowed, _)| Path::new(allowed) == path)
                        {
                            outside_cited.insert(path);
                            continue;
                        }
                        "outside the repository, not in OUTSIDE".to_string()
                    }
                    Outcome::Missing => "no such file".to_string(),
                    Outcome::Short(path, lines) => format!("{} has {lines} lines", path.display()),
                };
                broken.insert(format!("{}:{}: {token} ({why})", file.display(), index + 1));
            }
        }
    }
    for (allowed, _) in outside {
        if !outside_cited.contains(Path::new(allowed)) {
            broken.insert(format!(
                "OUTSIDE: {allowed} (no file cites it: remove the entry)"
            ));
        }
    }
    Report {
        citations,
        broken: broken.into_iter().collect(),
    }
}

/// Adds every file and directory below `root.join(relative)` to `paths`.
fn walk(root: &Path, relative: &Path, paths: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = fs::read_dir(root.join(relative)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let path = relative.join(&name);
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if SKIPPED_DIRECTORIES.iter().any(|skipped| name == *skipped) {
                continue;
            }
            paths.insert(path.clone());
            walk(root, &path, paths);
        } else {
            paths.insert(path);
        }
    }
}

/// How `file` is read, or `None` when it is not read.
fn kind_of(root: &Path, file: &Path) -> Option<Kind> {
    let name = file.file_name()?.to_string_lossy();
    let ending = file.extension().map(|e| e.to_string_lossy().into_owned());
    match ending.as_deref() {
        Some("md") => return Some(Kind::Markdown),
        Some("rs") => return Some(Kind::Rust),
        Some("sh") => return Some(Kind::Plain),
        _ => {}
    }
    let compose = (name.starts_with("docker-compose") || name.starts_with("compose"))
        && matches!(ending.as_deref(), Some("yml" | "yaml"));
    if name.starts_with("Dockerfile") || compose {
        return Some(Kind::Plain);
    }
    // A script without an ending: its first line names a shell.
    if ending.is_none() {
        let text = fs::read(root.join(file)).ok()?;
        let first = text.split(|&b| b == b'\n').next()?;
        let first = String::from_utf8_lossy(first);
        if first.starts_with("#!") && first.contains("sh") {
            return Some(Kind::Plain);
        }
    }
    None
}

/// The runs of a line that may be paths, trimmed of the punctuation that ends a sentence, with
/// commas outside braces splitting them.
fn cited_tokens(line: &str) -> Vec<String> {
    let path_char = |c: char| c.is_alphanumeric() || "_./-{},*$<>~:".contains(c);
    let mut tokens = Vec::new();
    for run in line.split(|c: char| !path_char(c)) {
        let mut depth = 0i32;
        let mut start = 0;
        for (at, c) in run.char_indices().chain([(run.len(), ',')]) {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    let token = run[start..at].trim_end_matches(['.', ',', ':', ';', '-']);
                    if token.contains('/') || token.contains('.') {
                        tokens.push(token.to_string());
                    }
                    start = at + 1;
                }
                _ => {}
            }
        }
    }
    tokens
}

/// The targets of the Markdown links of a line, without anchors; web and mail links left out.
fn link_targets(line: &str) -> Vec<String> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            let target = &rest[..rest.find(')')?];
            let target = target.split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            let target = target.split('#').next().unwrap_or("");
            let web = target.contains("://") || target.starts_with("mailto:");
            (!target.is_empty() && !web && !target.contains("::")).then(|| target.to_string())
        })
        .collect()
}

/// Where a citation is read.
struct Context<'a> {
    /// The citing file, relative to the root.
    file: &'a Path,
    /// How it is read.
    kind: Kind,
    /// In Markdown, the crate (`crates/api`) the nearest heading above names.
    heading_crate: Option<&'a Path>,
}

/// What a citation leads to.
enum Outcome {
    Found,
    /// No file there.
    Missing,
    /// The file has fewer lines than the citation says.
    Short(PathBuf, usize),
    /// A path outside the repository, relative to its root.
    Outside(PathBuf),
}

impl Repository<'_> {
    /// Checks one citation, or `None` when `token` is not one.
    fn resolve(&self, token: &str, is_link: bool, context: &Context) -> Option<Outcome> {
        if token.contains(['$', '<', '>', '*', '~']) {
            return None;
        }
        let (path, line) = match token.rsplit_once(':') {
            Some((path, line)) => {
                let last = line.rsplit('-').next()?;
                (path, Some(last.parse::<usize>().ok()?))
            }
            None => (token, None),
        };
        if path.contains(':') || path.is_empty() {
            return None;
        }
        let mut outcomes = Vec::new();
        for path in expand_braces(path) {
            let candidates = match self.candidates(&path, line.is_some(), is_link, context)? {
                Candidates::Outside(path) => {
                    outcomes.push(Outcome::Outside(path));
                    continue;
                }
                Candidates::Some(candidates) => candidates,
            };
            if candidates
                .iter()
                .any(|candidate| self.is_ignored(candidate))
            {
                return None;
            }
            // `dir/` must be a directory, a line citation a file; a bare path either.
            let wanted_dir = path.ends_with('/').then_some(true).or(line.map(|_| false));
            let existing: Vec<&PathBuf> = candidates
                .iter()
                .filter(|candidate| self.paths.contains(*candidate))
                .filter(|candidate| {
                    wanted_dir.is_none_or(|dir| self.root.join(candidate).is_dir() == dir)
                })
                .collect();
            let Some(first) = existing.first() else {
                outcomes.push(Outcome::Missing);
                continue;
            };
            if let Some(line) = line {
                let counted = |file: &PathBuf| {
                    fs::read_to_string(self.root.join(file)).map_or(0, |t| t.lines().count())
                };
                if !existing.iter().any(|file| counted(file) >= line) {
                    outcomes.push(Outcome::Short(first.to_path_buf(), counted(first)));
                    continue;
                }
            }
            outcomes.push(Outcome::Found);
        }
        let worst = outcomes
            .into_iter()
            .find(|outcome| !matches!(outcome, Outcome::Found));
        Some(worst.unwrap_or(Outcome::Found))
    }

    /// Where a cited `path` may be, nearest first, or `None` when it is not a citation.
    fn candidates(
        &self,
        path: &str,
        has_line: bool,
        is_link: bool,
        context: &Context,
    ) -> Option<Candidates> {
        let here = context.file.parent().unwrap_or(Path::new(""));
        let trimmed = path.trim_end_matches('/');
        let first = trimmed.split('/').next()?;
        if !trimmed.contains(char::is_alphanumeric) || trimmed.starts_with('/') {
            return None;
        }
        if is_link || first == ".." {
            let joined = here.join(trimmed);
            return Some(match normalize(&joined) {
                Some(path) => Candidates::Some(vec![path]),
                None => Candidates::Outside(normalize_outside(&joined)),
            });
        }
        if first == "." {
            let bases = [here.to_path_buf(), PathBuf::new()];
            return self.under_bases(&bases, trimmed.trim_start_matches("./"));
        }
        if ROOTS.contains(&first) && path.contains('/') {
            return Some(Candidates::Some(vec![PathBuf::from(trimmed)]));
        }
        let ending = Path::new(trimmed)
            .extension()?
            .to_string_lossy()
            .into_owned();
        if !FILE_ENDINGS.contains(&ending.as_str()) {
            return None;
        }
        let krate = crate_of(context.file);
        if !trimmed.contains('/') {
            // A bare name: a line citation, or a Markdown file named in prose (a script's bare
            // names are as often files it writes), looked for everywhere.
            let prose = context.kind != Kind::Plain;
            return (ending == "md" && prose || has_line)
                .then(|| Candidates::Some(self.named(trimmed, krate.as_deref())));
        }
        let mut bases = vec![here.to_path_buf()];
        for krate in [krate.as_deref(), context.heading_crate]
            .into_iter()
            .flatten()
        {
            bases.push(krate.to_path_buf());
            bases.push(krate.join("src"));
        }
        bases.push(PathBuf::new());
        self.under_bases(&bases, trimmed)
    }

    /// `path` below each of `bases`, or `None` when its first directory is under none of them:
    /// then it is a path of something else than the repository.
    fn under_bases(&self, bases: &[PathBuf], path: &str) -> Option<Candidates> {
        if let Some((first, _)) = path.split_once('/') {
            let known = bases
                .iter()
                .filter_map(|base| normalize(&base.join(first)))
                .any(|dir| self.paths.contains(&dir));
            if !known {
                return None;
            }
        }
        let candidates = bases.iter().filter_map(|base| normalize(&base.join(path)));
        Some(Candidates::Some(candidates.collect()))
    }

    /// The files named `name`, those of `krate` first.
    fn named(&self, name: &str, krate: Option<&Path>) -> Vec<PathBuf> {
        let mut found = self.by_name.get(name).cloned().unwrap_or_default();
        found.sort_by_key(|path| !krate.is_some_and(|krate| path.starts_with(krate)));
        found
    }

    /// Whether a `.gitignore` lists `path` or a directory above it.
    fn is_ignored(&self, path: &Path) -> bool {
        self.ignored.iter().any(|(dir, patterns)| {
            let Ok(below) = path.strip_prefix(dir) else {
                return false;
            };
            let parts: Vec<String> = below
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            patterns.iter().any(|pattern| {
                let anchored = pattern.trim_end_matches('/').contains('/');
                let pattern: Vec<&str> = pattern
                    .trim_start_matches('/')
                    .trim_end_matches('/')
                    .split('/')
                    .collect();
                // An anchored pattern matches from the `.gitignore`'s directory; a bare name,
                // at any depth below it. A match of a directory covers what is inside.
                let starts: Vec<usize> = if anchored {
                    vec![0]
                } else {
                    (0..parts.len()).collect()
                };
                starts.into_iter().any(|start| {
                    parts.len() >= start + pattern.len()
                        && pattern
                            .iter()
                            .zip(&parts[start..])
                            .all(|(pattern, part)| glob(pattern, part))
                })
            })
        })
    }
}

/// The places a citation may be, or a path outside the repository.
enum Candidates {
    Some(Vec<PathBuf>),
    Outside(PathBuf),
}

/// The crate directory (`crates/api`) a file belongs to.
fn crate_of(file: &Path) -> Option<PathBuf> {
    let mut parts = file.components();
    let top = parts.next()?;
    let name = parts.next()?;
    (top.as_os_str() == "crates" && parts.next().is_some())
        .then(|| Path::new("crates").join(name.as_os_str()))
}

/// `path` without `.` and `..` parts, or `None` if it leaves the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
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

/// `path`, which leaves the root, with the `..` parts it keeps (`../<dir>/<file>`).
fn normalize_outside(path: &Path) -> PathBuf {
    let mut parts: Vec<Component> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

/// `a/{b,c}/d{e,f}` as every path it names.
fn expand_braces(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_string()];
    };
    let Some(close) = path[open..].find('}').map(|at| open + at) else {
        return vec![path.to_string()];
    };
    let (head, tail) = (&path[..open], &path[close + 1..]);
    path[open + 1..close]
        .split(',')
        .flat_map(|choice| expand_braces(&format!("{head}{choice}{tail}")))
        .collect()
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(after) = name.strip_prefix(head) else {
                return false;
            };
            (0..=after.len())
                .filter(|&at| after.is_char_boundary(at))
                .any(|at| glob(rest, &after[at..]))
        }
    }
}
