//! The runtime's modules import each other in one direction only: `device` → `ops` → `backend`
//! → `optim` → `network` → `train`, lowest first (see the docs of `ops`). Read from the sources:
//! every `crate::<module>` path in a file of one top-level module is an edge to that module, and
//! the graph of those edges must have no cycle. A cycle fails with the files that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level module each `.rs` file under `src/` belongs to, with the modules it names.
fn edges() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let from = top_module(&src, file);
        if from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for to in named_modules(code) {
                if to != from && modules.contains(&to) {
                    let at = format!("{}:{}", file.strip_prefix(&src).unwrap().display(), n + 1);
                    graph.entry(from.clone()).or_default().entry(to).or_insert(at);
                }
            }
        }
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn top_module(src: &Path, file: &Path) -> String {
    let first = file.strip_prefix(src).unwrap().components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The modules a line of code names after `crate::`, also inside `crate::{a, b::c}`.
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|p| p.trim().split("::").next().unwrap_or("").to_string()));
        } else {
            out.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    out
}

#[test]
fn the_runtime_modules_import_in_one_direction() {
    let graph = edges();
    // Depth-first search for a back edge.
    fn visit(node: &str, graph: &BTreeMap<String, BTreeMap<String, String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
        if let Some(start) = path.iter().position(|p| p == node) {
            let cycle: Vec<String> = path[start..].iter().chain([&node.to_string()]).cloned().collect();
            let evidence: Vec<String> = cycle.windows(2).map(|w| format!("{} → {} ({})", w[0], w[1], graph[&w[0]][&w[1]])).collect();
            panic!("an import cycle: {}", evidence.join(", "));
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node.to_string());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph.get("network").is_some_and(|e| e.contains_key("backend")), "the scan found no edge network → backend: has the code moved?");
}

#[test]
fn nothing_below_network_imports_it() {
    let graph = edges();
    for low in ["device", "ops", "backend", "optim", "state_dict"] {
        if let Some(at) = graph.get(low).and_then(|e| e.get("network")) {
            panic!("{low} imports network ({at}): the op descriptions and the optimizer's view of the parameters live below it");
        }
    }
}
