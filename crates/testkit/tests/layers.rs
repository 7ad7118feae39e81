//! Every crate's modules form layers: no module reaches, through the paths its non-test code
//! names, back to itself. A newcomer can then read each crate bottom up, every module knowing
//! only those below it; espora's order is in ARCHITECTURE.md's codemap.
//!
//! A module is a file of `crates/*/src` reached from a crate root (`lib.rs`, `main.rs`,
//! `bin/*.rs`) through `mod name;` declarations (a file `name.rs`, or `mod.rs` in a directory
//! `name`), children nested under their parent (`flags::table`). Inline `mod name { ... }`
//! blocks belong to their file, and resolve `super::` and `self::` from where they are. A
//! module imports another when its code outside `#[cfg(test)]` items names it: `crate::a::b`
//! paths and `use` trees (`use crate::{a, b::{c, d}}`), `super::` and `self::` paths, and a
//! child module's bare name. The crate roots are the facades (they declare modules and
//! re-export), not modules of the graph: a path to an item the root re-exports
//! (`crate::Gauge`) counts as an import of the module the item comes from, one to an item the
//! root defines as none. Comments and string contents are not read, so a doc link is not an
//! import.
//!
//! The scan reads text, not the compiler's view: a macro that builds a path from pieces goes
//! unseen, and a `#[path]` attribute is not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use rinha_testkit::source::{repo_root, split_rust};

/// A module's path below its crate root, `["flags", "table"]`; the root is `[]`.
type ModPath = Vec<String>;

/// Each module and the modules its non-test code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_crate_has_a_module_cycle() {
    let mut cycles_found = Vec::new();
    let mut modules_seen = 0;
    for krate in crates() {
        let graph = module_graph(&krate.join("src"));
        modules_seen += graph.len();
        let name = krate
            .strip_prefix(repo_root())
            .unwrap_or(&krate)
            .display()
            .to_string();
        for cycle in cycles(&graph) {
            cycles_found.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(
        modules_seen > 30,
        "the scan found only {modules_seen} modules"
    );
    assert!(
        cycles_found.is_empty(),
        "module cycles (each module imports the next, the last the first; break each so imports \
         go one way):\n{}",
        cycles_found.join("\n")
    );
}

#[test]
fn the_scan_reads_the_imports_of_a_real_crate() {
    let graph = module_graph(&repo_root().join("crates/scenario/src"));
    let imports = |module: &str| graph.get(module).cloned().unwrap_or_default();
    assert!(imports("scenario").contains("load"), "{graph:?}");
    assert!(imports("load").contains("call"), "{graph:?}");
    assert!(imports("call").contains("client"), "{graph:?}");
    assert!(imports("client").is_empty(), "{graph:?}");
}

#[test]
fn cycles_are_found_and_layers_pass() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    let layers = graph(&[("a", "b"), ("a", "c"), ("b", "c"), ("c", "d")]);
    assert_eq!(cycles(&layers), Vec::<Vec<String>>::new());
    let two = graph(&[("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")]);
    assert_eq!(cycles(&two), [["b", "c", "b"]]);
    let three = graph(&[("x", "y"), ("y", "z"), ("z", "x"), ("p", "q"), ("q", "p")]);
    assert_eq!(
        cycles(&three),
        [vec!["p", "q", "p"], vec!["x", "y", "z", "x"]]
    );
}

#[test]
fn imports_are_read_from_paths_use_trees_and_super_outside_tests() {
    let dir = rinha_testkit::temp_dir("layers");
    let src = dir.path();
    let files = [
        (
            "lib.rs",
            "mod a; mod b; pub mod c; mod d; mod e;\npub use e::Thing;\n",
        ),
        (
            "a.rs",
            "use crate::{b, c::{deep::X, Y}};\n// crate::d in a comment\n",
        ),
        ("b.rs", "fn f() { let s = \"crate::d\"; crate::c::go(); }\n"),
        (
            "c.rs",
            "pub mod deep;\nmod inner { fn g() { super::helper(); } }\n",
        ),
        ("c/deep.rs", "fn h() { super::super::e::go() }\n"),
        (
            "d.rs",
            "#[cfg(test)]\nmod tests { use crate::a; }\n#[cfg(test)]\nuse crate::b;\n",
        ),
        (
            "e.rs",
            "pub struct Thing;\nfn i() -> [u8; 2] { self::j() }\nfn j() {}\n",
        ),
        ("f.rs", "use crate::a;\n"),
        ("user.rs", "use crate::Thing;\n"),
    ];
    for (path, text) in files {
        let path = src.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    fs::write(src.join("lib.rs"), lib + "mod user;\n").unwrap();
    let graph = module_graph(src);
    let expected: Graph = [
        ("a", &["b", "c", "c::deep"][..]),
        ("b", &["c"]),
        ("c", &[]),
        ("c::deep", &["e"]),
        ("d", &[]),
        ("e", &[]),
        ("user", &["e"]),
    ]
    .into_iter()
    .map(|(module, imports)| {
        let imports = imports.iter().map(|name| name.to_string()).collect();
        (module.to_string(), imports)
    })
    .collect();
    // `f.rs` is declared nowhere, so it is not a module.
    assert_eq!(graph, expected);
}

/// Every crate directory under `crates/` with a `src/`.
fn crates() -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = fs::read_dir(repo_root().join("crates"))
        .expect("the repository has crates/")
        .map(|entry| entry.expect("crates/ is readable").path())
        .filter(|path| path.join("src").is_dir())
        .collect();
    crates.sort();
    crates
}

/// One module file: where it is, its path, and its code outside `#[cfg(test)]` as tokens.
struct Module {
    path: ModPath,
    tokens: Vec<Token>,
}

/// The import graph of the modules of the crate whose sources are in `src`.
fn module_graph(src: &Path) -> Graph {
    let roots = ["lib.rs", "main.rs"]
        .iter()
        .map(|name| src.join(name))
        .chain(
            fs::read_dir(src.join("bin"))
                .into_iter()
                .flatten()
                .map(|entry| entry.expect("src/bin is readable").path())
                .filter(|path| path.extension().is_some_and(|e| e == "rs")),
        )
        .filter(|path| path.is_file());
    // Pass one: the modules, from the roots down through `mod name;`.
    let mut files: Vec<Module> = Vec::new();
    let mut declared: BTreeSet<ModPath> = BTreeSet::new();
    let mut pending: Vec<(PathBuf, ModPath, PathBuf)> = roots
        .map(|root| (root, ModPath::new(), src.to_path_buf()))
        .collect();
    while let Some((file, path, dir)) = pending.pop() {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let tokens = without_test_items(&tokenize(&split_rust(&text).code));
        for (inline, name) in module_declarations(&tokens) {
            let mut child = path.clone();
            child.extend(inline.iter().cloned());
            child.push(name.clone());
            let child_dir = inline.iter().fold(dir.clone(), |dir, name| dir.join(name));
            if inline.is_empty() && !declared.insert(child.clone()) {
                continue;
            }
            let flat = child_dir.join(format!("{name}.rs"));
            let nested = child_dir.join(&name).join("mod.rs");
            let child_file = if flat.is_file() { flat } else { nested };
            if child_file.is_file() {
                pending.push((child_file, child, child_dir.join(&name)));
            }
        }
        files.push(Module { path, tokens });
    }
    let nodes: BTreeSet<ModPath> = files.iter().map(|m| m.path.clone()).collect();
    let mut known = nodes.clone();
    for module in &files {
        known.extend(inline_modules(&module.path, &module.tokens));
    }
    let scope = Scope {
        nodes: &nodes,
        known: &known,
        reexports: BTreeMap::new(),
    };
    // The roots' `use` items, by the name they give: `pub use expose::Gauge` makes
    // `crate::Gauge` a path into `expose`.
    let mut reexports = BTreeMap::new();
    for root in files.iter().filter(|module| module.path.is_empty()) {
        for (_, tree) in use_trees(&root.tokens) {
            for (path, alias) in tree {
                if let (Some(target), Some(alias)) = (scope.node_of(&ModPath::new(), &path), alias)
                {
                    reexports.insert(alias, target);
                }
            }
        }
    }
    let scope = Scope { reexports, ..scope };
    // Pass two: what each module's code names.
    let mut graph = Graph::new();
    for module in files.iter().filter(|module| !module.path.is_empty()) {
        let mut imports = BTreeSet::new();
        for (here, path) in named_paths(&module.path, &module.tokens) {
            if let Some(target) = scope.node_of(&here, &path) {
                if target != module.path {
                    imports.insert(target.join("::"));
                }
            }
        }
        graph.insert(module.path.join("::"), imports);
    }
    graph
}

/// What a path can resolve to in one crate.
struct Scope<'a> {
    /// The module files, the graph's nodes.
    nodes: &'a BTreeSet<ModPath>,
    /// Every module, inline ones included.
    known: &'a BTreeSet<ModPath>,
    /// The items the roots import or re-export, by name, and the module each comes from.
    reexports: BTreeMap<String, ModPath>,
}

impl Scope<'_> {
    /// The module file that `path`, named in module `here`, leads into; `None` for a path into
    /// another crate or to an item of a root that no module provides.
    fn node_of(&self, here: &ModPath, path: &[String]) -> Option<ModPath> {
        let mut absolute: ModPath = match path.first()?.as_str() {
            "crate" => path[1..].to_vec(),
            "self" => here.iter().chain(&path[1..]).cloned().collect(),
            "super" => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                let base = here.get(..here.len().checked_sub(ups)?)?;
                base.iter().chain(&path[ups..]).cloned().collect()
            }
            first => {
                let mut child = here.clone();
                child.push(first.to_owned());
                if !self.known.contains(&child) {
                    return None;
                }
                here.iter().chain(path).cloned().collect()
            }
        };
        if absolute.last().is_some_and(|last| last == "self") {
            absolute.pop();
        }
        let depth = (0..=absolute.len())
            .rev()
            .find(|&n| self.nodes.contains(&absolute[..n]))?;
        if depth > 0 {
            return Some(absolute[..depth].to_vec());
        }
        // The path stops at a root: follow what the root says the name is.
        let target = self.reexports.get(absolute.first()?)?;
        Some(target.clone())
    }
}

/// A token of Rust code: a word (identifier, keyword or number), `::`, or one other character.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    PathSep,
    Punct(char),
}

fn tokenize(code: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            let mut word = String::from(c);
            while let Some(&next) = chars.peek() {
                if !(next.is_alphanumeric() || next == '_') {
                    break;
                }
                word.push(next);
                chars.next();
            }
            // A raw identifier, `r#type`, is the identifier.
            if word == "r" && chars.peek() == Some(&'#') {
                chars.next();
                word.clear();
                while let Some(&next) = chars.peek() {
                    if !(next.is_alphanumeric() || next == '_') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
            }
            tokens.push(Token::Word(word));
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push(Token::PathSep);
        } else {
            tokens.push(Token::Punct(c));
        }
    }
    tokens
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w == word)
}

/// `tokens` without the items (and statements, fields, arms) under `#[cfg(test)]`.
fn without_test_items(tokens: &[Token]) -> Vec<Token> {
    let cfg_test: Vec<Token> = tokenize("#[cfg(test)]");
    let mut kept = Vec::with_capacity(tokens.len());
    let mut at = 0;
    while at < tokens.len() {
        if !tokens[at..].starts_with(&cfg_test) {
            kept.push(tokens[at].clone());
            at += 1;
            continue;
        }
        at += cfg_test.len();
        // The item ends at a `;` or `,` outside any bracket, at the `}` that closes its body
        // (with a `;` after it, if any), or before a `}` that closes what encloses it.
        let mut depth = 0usize;
        while at < tokens.len() {
            match tokens[at] {
                Token::Punct('(' | '[' | '{') => depth += 1,
                Token::Punct(')' | ']') => depth = depth.saturating_sub(1),
                Token::Punct('}') if depth == 0 => break,
                Token::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        at += 1;
                        if tokens.get(at) == Some(&Token::Punct(';')) {
                            at += 1;
                        }
                        // `#[...]` attributes before the item are bracketed, so a `}` at depth
                        // zero always closes the item's own body.
                        break;
                    }
                }
                Token::Punct(';' | ',') if depth == 0 => {
                    at += 1;
                    break;
                }
                _ => {}
            }
            at += 1;
        }
    }
    kept
}

/// Walks `tokens`, calling `visit` with the inline modules open at each token.
fn walk_inline(tokens: &[Token], mut visit: impl FnMut(&[String], usize) -> usize) {
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut at = 0;
    while at < tokens.len() {
        match &tokens[at] {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if open.last().is_some_and(|(_, opened)| *opened == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Word(w) if w == "mod" => {
                if let (Some(Token::Word(name)), Some(Token::Punct('{'))) =
                    (tokens.get(at + 1), tokens.get(at + 2))
                {
                    open.push((name.clone(), depth + 1));
                }
            }
            _ => {}
        }
        let names: Vec<String> = open.iter().map(|(name, _)| name.clone()).collect();
        let skip = visit(&names, at);
        at += 1 + skip;
    }
}

/// The `mod name;` declarations, each with the inline modules it sits in.
fn module_declarations(tokens: &[Token]) -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    walk_inline(tokens, |inline, at| {
        if let (true, Some(Token::Word(name)), Some(Token::Punct(';'))) = (
            is_word(tokens.get(at), "mod"),
            tokens.get(at + 1),
            tokens.get(at + 2),
        ) {
            found.push((inline.to_vec(), name.clone()));
        }
        0
    });
    found
}

/// The inline modules of a file whose module is `path`.
fn inline_modules(path: &ModPath, tokens: &[Token]) -> Vec<ModPath> {
    let mut found = BTreeSet::new();
    walk_inline(tokens, |inline, _| {
        for n in 1..=inline.len() {
            found.insert(path.iter().chain(&inline[..n]).cloned().collect());
        }
        0
    });
    found.into_iter().collect()
}

/// Each `use` item, with the inline modules it sits in, as its paths and the name each one binds
/// (`None` for a glob).
type UseTree = Vec<(Vec<String>, Option<String>)>;

fn use_trees(tokens: &[Token]) -> Vec<(Vec<String>, UseTree)> {
    let mut found = Vec::new();
    walk_inline(tokens, |inline, at| {
        if !is_word(tokens.get(at), "use") {
            return 0;
        }
        let mut end = at + 1;
        let mut paths = Vec::new();
        use_tree(tokens, &mut end, Vec::new(), &mut paths);
        found.push((inline.to_vec(), paths));
        end - at - 1
    });
    found
}

/// Reads one use tree at `at` under `prefix`.
fn use_tree(tokens: &[Token], at: &mut usize, prefix: Vec<String>, out: &mut UseTree) {
    let mut path = prefix;
    loop {
        match tokens.get(*at) {
            Some(Token::PathSep) => *at += 1,
            Some(Token::Punct('{')) => {
                *at += 1;
                while let Some(token) = tokens.get(*at) {
                    match token {
                        Token::Punct('}') => {
                            *at += 1;
                            return;
                        }
                        Token::Punct(',') => *at += 1,
                        _ => use_tree(tokens, at, path.clone(), out),
                    }
                }
                return;
            }
            Some(Token::Punct('*')) => {
                *at += 1;
                out.push((path, None));
                return;
            }
            Some(Token::Word(word)) if word != "as" => {
                path.push(word.clone());
                *at += 1;
            }
            _ => {
                let mut alias = path.last().cloned();
                if is_word(tokens.get(*at), "as") {
                    if let Some(Token::Word(name)) = tokens.get(*at + 1) {
                        alias = Some(name.clone());
                    }
                    *at += 2;
                }
                if path.last().is_some_and(|last| last == "self") {
                    path.pop();
                    alias = path.last().cloned();
                }
                out.push((path, alias));
                return;
            }
        }
    }
}

/// Every path the code names, `use` trees included, each with the module it is named in.
fn named_paths(path: &ModPath, tokens: &[Token]) -> Vec<(ModPath, Vec<String>)> {
    let here = |inline: &[String]| -> ModPath { path.iter().chain(inline).cloned().collect() };
    let mut found = Vec::new();
    for (inline, tree) in use_trees(tokens) {
        found.extend(tree.into_iter().map(|(p, _)| (here(&inline), p)));
    }
    walk_inline(tokens, |inline, at| {
        if is_word(tokens.get(at), "use") {
            // Read above; skip to the end of the item.
            return tokens[at..]
                .iter()
                .position(|t| *t == Token::Punct(';'))
                .map_or(0, |end| end.saturating_sub(1));
        }
        let starts_path = matches!(tokens.get(at), Some(Token::Word(_)))
            && tokens.get(at + 1) == Some(&Token::PathSep)
            && !matches!(
                at.checked_sub(1).and_then(|i| tokens.get(i)),
                Some(Token::PathSep | Token::Punct('$'))
            );
        if !starts_path {
            return 0;
        }
        // Words joined by `::`, up to what is not a word (`{`, `*`, `<`).
        let mut segments = Vec::new();
        let mut last = at;
        while let Some(Token::Word(word)) = tokens.get(last) {
            segments.push(word.clone());
            if tokens.get(last + 1) != Some(&Token::PathSep) {
                break;
            }
            last += 2;
        }
        found.push((here(inline), segments));
        last.min(tokens.len()).saturating_sub(at + 1)
    });
    found
}

/// One cycle through each group of modules that reach each other (a strongly connected
/// component of more than one module), the shortest from the group's first module back to it,
/// written with that module at both ends; groups in order of their first module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(module) = todo.pop() {
            for next in graph.get(module).into_iter().flatten() {
                if seen.insert(next.as_str()) {
                    todo.push(next);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<&str>> = graph
        .keys()
        .map(|module| (module.as_str(), reach(module)))
        .collect();
    let mut placed = BTreeSet::new();
    let mut found = Vec::new();
    for (&module, reached) in &reaches {
        if placed.contains(module) || !reached.contains(module) {
            continue;
        }
        let group: BTreeSet<&str> = reached
            .iter()
            .copied()
            .filter(|other| reaches[other].contains(module))
            .collect();
        placed.extend(group.iter().copied());
        found.push(shortest_cycle(graph, module, &group));
    }
    found
}

/// The shortest path from `start` back to itself inside `group` (breadth first).
fn shortest_cycle(graph: &Graph, start: &str, group: &BTreeSet<&str>) -> Vec<String> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(module) = queue.pop_front() {
        for next in graph.get(module).into_iter().flatten() {
            let next = next.as_str();
            if !group.contains(next) || came_from.contains_key(next) {
                continue;
            }
            came_from.insert(next, module);
            if next == start {
                let mut cycle = vec![start.to_owned()];
                let mut at = module;
                while at != start {
                    cycle.push(at.to_owned());
                    at = came_from[at];
                }
                cycle.push(start.to_owned());
                cycle.reverse();
                return cycle;
            }
            queue.push_back(next);
        }
    }
    unreachable!("{start} is in a group of modules that reach it")
}
