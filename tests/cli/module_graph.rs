//! The modules of src/ form layers: no module imports, directly or through others, one that
//! imports it back. Checked over the source text: every `crate::a` (also `crate::{a, b}`) is
//! an edge to the top-level module `a`; inside a folder module (src/s3/), every `super::f`
//! or `crate::s3::f` naming a sibling file is an edge between files too. Comments and the
//! `#[cfg(test)] mod tests` at the end of a file do not count (a test may look anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Source of a file without comments and without its trailing unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The first path segments after each `prefix` (`crate::`, `super::`, `crate::s3::`), with
/// the members of a `{a, b::c}` group.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        if code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|m| ident(m.trim())));
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

/// The cycles of a graph, each as a path that returns to its start.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        u: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        state.insert(u.to_string(), 1);
        stack.push(u.to_string());
        for v in graph.get(u).into_iter().flatten() {
            match state.get(v.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == v).unwrap();
                    found.push(format!("{} -> {v}", stack[at..].join(" -> ")));
                }
                Some(_) => {}
                None => visit(v, graph, state, stack, found),
            }
        }
        stack.pop();
        state.insert(u.to_string(), 2);
    }
    let (mut state, mut found) = (BTreeMap::new(), Vec::new());
    for u in graph.keys() {
        if !state.contains_key(u) {
            visit(u, graph, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

/// Top-level modules of src/ (file or folder), and for each folder its files.
fn modules(src: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            for f in std::fs::read_dir(&path).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "rs") {
                    let stem = f.file_stem().unwrap().to_string_lossy().to_string();
                    let text = std::fs::read_to_string(&f).unwrap();
                    out.entry(name.clone()).or_default().push((stem, text));
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "main" {
            let text = std::fs::read_to_string(&path).unwrap();
            out.entry(name.clone())
                .or_default()
                .push(("mod".into(), text));
        }
    }
    out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    // lib.rs's `pub use a::b;` and `pub use a::b as c;`: `crate::b` (or `crate::c`) is `a`.
    let mut alias = BTreeMap::new();
    for (_, text) in &modules["lib"] {
        for line in text.lines() {
            if let Some(path) = line.strip_prefix("pub use ") {
                let path = path.trim_end_matches(';');
                let (path, name) = match path.split_once(" as ") {
                    Some((p, n)) => (p, n.to_string()),
                    None => (path, path.rsplit("::").next().unwrap().to_string()),
                };
                alias.insert(name, ident(path));
            }
        }
    }
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, files) in &modules {
        if module == "lib" {
            continue;
        }
        let siblings: BTreeSet<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        let mut inner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (file, text) in files {
            let code = code(text);
            for name in names_after(&code, "crate::") {
                let target = alias.get(&name).cloned().unwrap_or(name);
                if &target != module && modules.contains_key(&target) && target != "lib" {
                    top.entry(module.clone()).or_default().insert(target);
                }
            }
            if file == "mod" {
                continue; // declares and re-exports its files
            }
            let own = format!("crate::{module}::");
            let mut names = names_after(&code, "super::");
            names.extend(names_after(&code, &own));
            for name in names {
                if siblings.contains(name.as_str()) && name != "mod" && &name != file {
                    inner.entry(file.clone()).or_default().insert(name);
                } else {
                    problems.push(format!(
                        "src/{module}/{file}.rs names {module}::{name}: import it from its file"
                    ));
                }
            }
        }
        problems.extend(
            cycles(&inner)
                .into_iter()
                .map(|c| format!("in {module}/: {c}")),
        );
    }
    problems.extend(cycles(&top));
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}
