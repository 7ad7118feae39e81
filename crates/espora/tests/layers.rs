//! espora's modules form layers: no module reaches, through `crate::` paths in its non-test code,
//! back to itself. A newcomer can then read them bottom up (layout, time, faults, error, paths,
//! shared, file, verify, device, sync, commit, db), each knowing only those below it.

use std::collections::{BTreeMap, BTreeSet};

/// Each module of `src/` and the modules its code outside `#[cfg(test)]` names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "rs") || name == "lib" || name == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let named: BTreeSet<String> = code
            .match_indices("crate::")
            .map(|(at, _)| {
                code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|module| module != &name && !module.is_empty())
            .collect();
        graph.insert(name, named);
    }
    graph
}

/// A cycle through `module`, if any, as the path that closes it.
fn cycle_from(
    module: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|m| m == module) {
        let mut cycle = path[at..].to_vec();
        cycle.push(module.to_owned());
        return Some(cycle);
    }
    path.push(module.to_owned());
    for next in graph.get(module).into_iter().flatten() {
        if let Some(cycle) = cycle_from(next, graph, path) {
            return Some(cycle);
        }
    }
    path.pop();
    None
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let graph = imports();
    assert!(
        graph.contains_key("db") && graph.contains_key("layout"),
        "{graph:?}"
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(module, &graph, &mut Vec::new()) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
    assert!(
        graph["layout"].is_empty(),
        "layout is the bottom layer: {:?}",
        graph["layout"]
    );
}
