//! The workspace's module graph has no import circle: within each crate, no chain of `use` (or
//! inline `crate::`/`super::` paths) leads from a module file back to itself. A module may use
//! its ancestors' items (a child of `fleet` uses `Fleet`), so edges to an ancestor do not count;
//! everything else does, siblings and cousins alike (the circle this rule was written against
//! ran state → gitops → api/admin → api/sources → api/admin).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

type Module = Vec<String>;

/// Every `.rs` file under `src` with its module path (`src/a/b.rs` and `src/a/b/mod.rs` are
/// `a::b`; `lib.rs` and `main.rs` are the root).
fn module_files(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut parts: Module = relative
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            // Binaries beside the library (`src/bin/x.rs`) are their own roots.
            if parts.first().is_some_and(|p| p == "bin") {
                continue;
            }
            found.insert(parts, path);
        }
    }
    found
}

/// The code of a file without its `#[cfg(test)]` module (tests may use anything) and comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands `use` trees (`crate::{a::{b, c}, d}`) and inline paths into full paths starting at
/// `crate` or `super`, as segment lists.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    // `use` statements (at the start of a line), braces expanded.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
        let lead = rest[line_start..at].trim();
        let start = &rest[at + 4..];
        let end = start.find(';').unwrap_or(start.len());
        if lead.is_empty() || lead == "pub" || lead.starts_with("pub(") {
            let tree: String = start[..end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            expand(&tree, Vec::new(), &mut paths);
            rest = &start[end..];
        } else {
            rest = start;
        }
    }
    // Inline `crate::a::b` and `super::a` paths outside `use`.
    for root in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                paths.push(
                    tail[..len]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
            rest = &tail[len.max(1)..];
        }
    }
    paths.retain(|p| matches!(p.first().map(String::as_str), Some("crate" | "super")));
    paths
}

fn expand(tree: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree.find('{') {
        None => {
            let mut path = prefix;
            path.extend(
                tree.split("::")
                    .filter(|s| !s.is_empty())
                    .map(|s| s.split("as").next().unwrap_or(s).to_string()),
            );
            out.push(path);
        }
        Some(open) => {
            let mut path = prefix;
            path.extend(
                tree[..open]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
            let inner = &tree[open + 1..close];
            let mut depth = 0;
            let mut start = 0;
            for (index, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..index], path.clone(), out);
                        start = index + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&inner[start..], path, out);
            }
        }
    }
}

/// The module file a path names: its longest prefix that is a module.
fn resolve(from: &Module, path: &[String], modules: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut absolute: Module = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => {
            let mut base = from.clone();
            base.pop();
            base
        }
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first().is_some_and(|s| s == "super") {
        absolute.pop();
        rest = &rest[1..];
    }
    let mut best = None;
    for segment in rest {
        absolute.push(segment.clone());
        if modules.contains_key(&absolute) {
            best = Some(absolute.clone());
        }
    }
    best
}

fn cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut found = stack[start..].to_vec();
                found.push(node.clone());
                return Some(found);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, marks, stack) {
                return Some(found);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(found) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(found);
        }
    }
    None
}

#[test]
fn no_crate_in_the_workspace_has_an_import_circle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates dir")
        .to_path_buf();
    let mut checked = 0;
    let mut circles = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("read crates").flatten() {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        let modules = module_files(&src);
        let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (module, file) in &modules {
            // Test-only modules may reach anywhere.
            if module.last().is_some_and(|m| m == "tests" || m == "bench") {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("read module");
            for path in paths_in(&code_of(&text)) {
                let Some(target) = resolve(module, &path, &modules) else {
                    continue;
                };
                let is_ancestor =
                    target.len() <= module.len() && module[..target.len()] == target[..];
                if !is_ancestor {
                    graph.entry(module.clone()).or_default().insert(target);
                }
            }
        }
        checked += modules.len();
        if let Some(found) = cycle(&graph) {
            let names: Vec<String> = found
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "crate".into()
                    } else {
                        m.join("::")
                    }
                })
                .collect();
            circles.push(format!(
                "{}: import circle {}",
                entry.path().display(),
                names.join(" -> ")
            ));
        }
    }
    assert!(circles.is_empty(), "{}", circles.join("\n"));
    assert!(
        checked > 50,
        "only {checked} module files found under {}",
        crates.display()
    );
}

#[test]
fn the_circle_check_finds_a_circle_between_siblings() {
    let modules: BTreeMap<Module, PathBuf> = [vec![], vec!["a".into()], vec!["b".into()]]
        .into_iter()
        .map(|m| (m, PathBuf::new()))
        .collect();
    let from_a = paths_in("use crate::{b::Thing, c};");
    let from_b = paths_in("fn f() { crate::a::run(); }");
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for path in from_a {
        if let Some(target) = resolve(&vec!["a".into()], &path, &modules) {
            graph.entry(vec!["a".into()]).or_default().insert(target);
        }
    }
    for path in from_b {
        if let Some(target) = resolve(&vec!["b".into()], &path, &modules) {
            graph.entry(vec!["b".into()]).or_default().insert(target);
        }
    }
    assert!(cycle(&graph).is_some(), "{graph:?}");
}
