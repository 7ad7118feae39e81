//! Every crate's modules form layers: no module reaches, through the paths its non-test code
//! names, back to itself. A newcomer can then read each crate bottom up, every module knowing
//! only those below it; espora's order is in ARCHITECTURE.md's codemap.
//!
//! A module is a file under `crates/*/src`, named by its path: `flags/table.rs` and
//! `flags/table/mod.rs` are `flags::table`. The crate roots (`lib.rs`, `main.rs`, `bin/`) are
//! facades that declare and re-export, not modules of the graph. A module imports another when
//! its code outside `#[cfg(test)]` items names it: `crate::a::b` paths and `use` groups
//! (`use crate::{a, b::{c, d}}`), `super::` and `self::` paths, and a child module's bare name
//! (`table::Row` in `flags`). Comments and strings are not read, so a doc link is no import.
//!
//! The scan reads text, not the compiler's view, and trades precision for size: `mod`
//! declarations and `#[path]` are not followed (every file is a module), an inline module is
//! part of its file (its `super::` resolves from the file), a path to an item a root
//! re-exports (`crate::Gauge`) is no import, and a macro that builds a path goes unseen.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use rinha_testkit::source::{expand_braces, repo_root, split_rust};

/// Each module and the modules its non-test code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The crate roots, with the files of `bin/`: facades, not modules of the graph.
const CRATE_ROOTS: [&str; 2] = ["lib.rs", "main.rs"];

/// The attribute whose item the scan skips, with the item.
const CFG_TEST: &str = "#[cfg(test)]";

/// Fewer modules or imports than these across the crates means the scan went blind.
const MODULES_MIN: usize = 30;
const IMPORTS_MIN: usize = 30;

#[test]
fn no_crate_has_a_module_cycle() {
    let (mut modules, mut imports, mut found) = (0, 0, Vec::new());
    let crates = repo_root().join("crates");
    for entry in fs::read_dir(&crates).expect("the repository has crates/") {
        let name = entry.expect("crates/ is readable").file_name();
        let src = crates.join(&name).join("src");
        if src.is_dir() {
            let graph = module_graph(&src);
            modules += graph.len();
            imports += graph.values().map(BTreeSet::len).sum::<usize>();
            for cycle in cycles(&graph) {
                found.push(format!("crates/{}: {cycle}", name.to_string_lossy()));
            }
        }
    }
    let blind = format!("only {modules} modules and {imports} imports: the scan went blind");
    assert!(modules > MODULES_MIN && imports > IMPORTS_MIN, "{blind}");
    assert!(
        found.is_empty(),
        "module cycles (each module imports the next; break each so imports go one way):\n{}",
        found.join("\n")
    );
}

/// A crate whose modules import each other in every way the scan reads (`a` through a `use`
/// group, `b` a `super::` path, `c` a child's bare name), and that names `a` in `c` only where
/// the scan must not look: were it read, `c` importing `a` would close a cycle.
#[rustfmt::skip]
const LAYERS: [(&str, &str); 5] = [
    ("lib.rs",   "mod a; mod b; mod c;\npub use a::Thing;\n"),
    ("a.rs",     "use crate::{b, c::{d::X, Y as Z}};\npub struct Thing;\n"),
    ("b/mod.rs", "fn f() { super::c::go(); }\n"),
    ("c.rs",     "pub mod d; // crate::a\nfn g() { let _ = \"crate::a\"; d::h(); }\n\
                  #[cfg(test)]\nmod tests { use crate::a; }\n"),
    ("c/d.rs",   "fn h() {}\n"),
];

#[rustfmt::skip]
#[test]
fn cycles_are_found_and_layers_pass() {
    check(("c/d.rs", "fn h() {}\n"),                                &[]);
    check(("c/d.rs", "use self::e::X; fn h() { std::mem::drop(()) }"), &[]);
    check(("c/d.rs", "fn h() { crate::a::f() }\n"),                 &["a -> b -> c -> c::d -> a"]);
    check(("b/mod.rs", "use crate::{c, a};\n"),                     &["a -> b -> a"]);
    check(("c/d.rs", "fn h() { super::super::b::f(); }\n"),         &["b -> c -> c::d -> b"]);
}

/// Checks the cycles of the crate of [`LAYERS`] with one file changed.
#[track_caller]
fn check(changed: (&str, &str), expected: &[&str]) {
    let dir = rinha_testkit::temp_dir("layers");
    for (path, text) in LAYERS.into_iter().chain([changed]) {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a file has a directory")).expect("mkdir");
        fs::write(path, text).expect("write a module");
    }
    assert_eq!(cycles(&module_graph(dir.path())), expected);
}

/// The import graph of the modules of the crate whose sources are in `src`.
fn module_graph(src: &Path) -> Graph {
    let mut modules = BTreeMap::new();
    for file in rust_files(src, "") {
        if CRATE_ROOTS.contains(&file.as_str()) || file.starts_with("bin/") {
            continue;
        }
        let text = fs::read_to_string(src.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let name = file.trim_end_matches(".rs").trim_end_matches("/mod");
        modules.insert(
            name.replace('/', "::"),
            without_test_items(&split_rust(&text).code),
        );
    }
    let graph = modules.iter().map(|(module, code)| {
        let here: Vec<&str> = module.split("::").collect();
        let imports = named_paths(code).into_iter();
        let imports = imports.filter_map(|path| resolve(&here, &path, &modules));
        (module.clone(), imports.filter(|to| to != module).collect())
    });
    graph.collect()
}

/// The `.rs` files below `src.join(dir)`, as paths from `src` with `/` between directories.
fn rust_files(src: &Path, dir: &str) -> Vec<String> {
    let mut files = Vec::new();
    for entry in fs::read_dir(src.join(dir)).expect("a source directory is readable") {
        let entry = entry.expect("a source directory is readable");
        let path = format!("{dir}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            files.extend(rust_files(src, &format!("{path}/")));
        } else if path.ends_with(".rs") {
            files.push(path);
        }
    }
    files
}

/// `code` without each `#[cfg(test)]` item: up to its first `;` outside brackets, or to the `}`
/// that closes its first brace.
fn without_test_items(code: &str) -> String {
    let (mut kept, mut rest) = (String::new(), code);
    while let Some(at) = rest.find(CFG_TEST) {
        kept.push_str(&rest[..at]);
        let item = &rest[at + CFG_TEST.len()..];
        let mut depth = 0;
        let end = item.char_indices().find_map(|(i, c)| {
            depth += i32::from("([{".contains(c)) - i32::from(")]}".contains(c));
            (depth == 0 && (c == ';' || c == '}')).then_some(i + 1)
        });
        rest = &item[end.unwrap_or(item.len())..];
    }
    kept + rest
}

/// Every path of two segments or more that `code` names, `use` groups expanded, as written
/// (`crate::a::b`, `super::c`, `d::X`).
fn named_paths(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let (mut found, mut end) = (Vec::new(), 0);
    for at in 0..bytes.len() {
        let inside = at > 0 && (ident(bytes[at - 1]) || b":$".contains(&bytes[at - 1]));
        if at < end || inside || !ident(bytes[at]) {
            continue;
        }
        // Words joined by `::`, and a `{…}` group (commas and spaces inside) after a `::`.
        let mut depth = 0;
        end = at;
        while let Some(&b) = bytes.get(end) {
            let opens = b == b'{' && (depth > 0 || bytes[..end].ends_with(b"::"));
            let closes = b == b'}' && depth > 0;
            if !(opens || closes || ident(b) || b == b':' || depth > 0 && b != b';') {
                break;
            }
            (depth, end) = (depth + usize::from(opens) - usize::from(closes), end + 1);
            if closes && depth == 0 {
                break;
            }
        }
        let paths = expand_braces(&code[at..end]).into_iter();
        found.extend(paths.filter(|path| path.contains("::")));
    }
    found
}

/// The module that `path`, named in module `here`, leads into; `None` for a path into another
/// crate, to an item of a root, or into `here` itself through `self::` or a bare name.
fn resolve(here: &[&str], path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    let ups = segments.iter().take_while(|&&s| s == "super").count();
    let above = &here[..here.len().saturating_sub(ups)];
    let (absolute, shortest) = match segments[0] {
        "crate" => (segments[1..].to_vec(), 1),
        "super" => ([above, &segments[ups..]].concat(), 1),
        "self" => ([here, &segments[1..]].concat(), here.len() + 1),
        _ => ([here, &segments].concat(), here.len() + 1),
    };
    let mut prefixes = (shortest..=absolute.len())
        .rev()
        .map(|n| absolute[..n].join("::"));
    prefixes.find(|module| modules.contains_key(module))
}

/// One cycle for each import that closes a loop in a depth-first walk from each module in
/// order, written `a -> b -> a`; none when the modules form layers.
fn cycles(graph: &Graph) -> Vec<String> {
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for module in graph.keys() {
        if done.insert(module.as_str()) {
            found.extend(walk(graph, &mut vec![module.as_str()], &mut done));
        }
    }
    found
}

/// The cycles a depth-first walk finds below the last module of `path`, skipping the `done`.
fn walk<'a>(
    graph: &'a Graph,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Vec<String> {
    let mut found = Vec::new();
    for next in graph[*path.last().expect("a walk starts at a module")].iter() {
        if let Some(start) = path.iter().position(|module| module == next) {
            found.push(format!("{} -> {next}", path[start..].join(" -> ")));
        } else if done.insert(next) {
            path.push(next);
            found.extend(walk(graph, path, done));
            path.pop();
        }
    }
    found
}
