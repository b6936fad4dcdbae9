//! The registry's modules depend on each other one way only: no module
//! reaches, through others, back to itself. The check reads the crate's
//! sources, collects which top-level module names which (`crate::x`,
//! `super::x` from a top-level module, and `crate::Item` through the
//! re-exports of `lib.rs`), and fails naming a cycle and where each of its
//! edges is written. Comments, strings and `#[cfg(test)] mod tests` are not
//! read: a doc link or a test does not make a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it uses, each with the first place (file:line) it
/// does.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn the_registry_has_no_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The graph is real: the parts are there, and the facade uses them.
    for part in ["db", "blobs", "index", "trust", "verify", "audit", "runs"] {
        assert!(graph.contains_key(part), "no module `{part}` in {graph:?}");
        assert!(
            graph["registry"].contains_key(part),
            "`registry` does not use `{part}`: {:?}",
            graph["registry"]
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("{}", describe(&graph, &cycle));
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph = graph_of(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "a")]);
    let cycle = find_cycle(&graph).expect("a → b → c → a is a cycle");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    let text = describe(&graph, &cycle);
    assert!(text.contains("a → b → c → a"), "{text}");
    assert!(text.contains("`b` uses `c` at b.rs:1"), "{text}");

    // Two modules that use each other.
    let graph = graph_of(&[("store", "audit"), ("audit", "store")]);
    assert_eq!(
        find_cycle(&graph).unwrap(),
        ["audit", "store", "audit"],
        "the cycle starts at the first module in order"
    );

    // A diamond is not a cycle.
    let graph = graph_of(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]);
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn uses_are_read_from_code_only() {
    let root = "pub use index::{ArtifactSummary, Published};\npub use registry::Registry;\nmod x;";
    let exports = reexports(root);
    assert_eq!(exports["Registry"], "registry");
    assert_eq!(exports["Published"], "index");
    let modules: BTreeSet<String> = ["index", "registry", "audit", "db", "blobs", "trust"]
        .map(String::from)
        .into();
    let code = r##"//! Uses [`crate::audit`] in a doc link only.
use crate::{db::Db, blobs};
use crate::Registry; // through the re-export
/* crate::trust in a comment */
const S: &str = "crate::trust in a string";
const R: &str = r#"crate::trust in a raw "string""#;
fn f<'a>(c: char) -> bool { c == '"' || super::index::x() }

#[cfg(test)]
mod tests {
    use crate::trust;
}
"##;
    let uses = uses_in(code, &modules, &exports, true);
    let named: Vec<(&str, usize)> = uses.iter().map(|(m, l)| (m.as_str(), *l)).collect();
    assert_eq!(
        named,
        [("db", 2), ("blobs", 2), ("registry", 3), ("index", 7)]
    );
}

// ----- the check ------------------------------------------------------------

/// The top-level modules of the crate in `src` and the modules each uses.
fn module_graph(src: &Path) -> Graph {
    let root = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let exports = reexports(&strip(&root));
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |file: &Path| -> Option<String> {
        let rel = file.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        (rel != Path::new("lib.rs")).then(|| first.trim_end_matches(".rs").to_string())
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file");
        let rel = file.strip_prefix(src).unwrap();
        let top_level = rel.components().count() == 1
            || rel.file_name().is_some_and(|n| n == "mod.rs") && rel.components().count() == 2;
        for (used, line) in uses_in(&text, &modules, &exports, top_level) {
            if used != module {
                graph
                    .get_mut(&module)
                    .unwrap()
                    .entry(used)
                    .or_insert_with(|| format!("{}:{line}", rel.display()));
            }
        }
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a source directory")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `pub use module::Item` and `pub use module::{A, B}` of the crate root:
/// item name → module.
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in root.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path: String = path.chars().filter(|c| !c.is_whitespace()).collect();
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        let names = rest.trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() {
                out.insert(name.to_string(), module.to_string());
            }
        }
    }
    out
}

/// The modules `text` uses, with the line of each use. `super::` is the
/// crate root only in a top-level module.
fn uses_in(
    text: &str,
    modules: &BTreeSet<String>,
    exports: &BTreeMap<String, String>,
    top_level: bool,
) -> Vec<(String, usize)> {
    let code = strip(text);
    let mut out = Vec::new();
    let prefixes: &[&str] = if top_level {
        &["crate::", "super::"]
    } else {
        &["crate::"]
    };
    for prefix in prefixes {
        let mut at = 0;
        while let Some(i) = code[at..].find(prefix) {
            let start = at + i;
            at = start + prefix.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let line = code[..start].matches('\n').count() + 1;
            for first in first_segments(&code[at..]) {
                let module = if modules.contains(&first) {
                    Some(first)
                } else {
                    exports.get(&first).cloned()
                };
                out.extend(module.map(|m| (m, line)));
            }
        }
    }
    out.sort_by_key(|(_, line)| *line);
    out
}

/// The first segment of each path after `crate::`: `x` of `x::Y`, and `a`
/// and `b` of `{a::X, b}`.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut out = Vec::new();
    let (mut depth, mut entry_start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push(ident(&group[entry_start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(ident(&group[entry_start..i]));
                entry_start = i + 1;
            }
            _ => {}
        }
    }
    out.retain(|s| !s.is_empty() && s != "self");
    out
}

/// The code of a file without comments, string and character literals, and
/// its `#[cfg(test)] mod tests`; newlines are kept, so lines still count.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let newlines = |s: &[char]| -> String { s.iter().filter(|c| **c == '\n').collect() };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push_str(&newlines(&chars[start..i.min(chars.len())]));
        } else if c == 'r' && !ident_before && matches!(next, Some('"' | '#')) {
            // A raw string: r"…", r#"…"#, …
            let start = i;
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            out.push_str(&newlines(&chars[start..j.min(chars.len())]));
            i = j;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str(&newlines(&chars[start..i.min(chars.len())]));
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{…}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A cycle as the modules along it, the first repeated at the end; `None`
/// when the graph has none. The search starts from each module in order,
/// so the answer is the same on every run.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        graph: &Graph,
        node: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::OnPath);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let from = path.iter().position(|m| m == next).unwrap();
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(graph, next, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(cycle) = visit(graph, node, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

/// "modules depend on each other in a cycle: a → b → a; `a` uses `b` at
/// a.rs:3, …".
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let edges: Vec<String> = cycle
        .windows(2)
        .map(|w| format!("`{}` uses `{}` at {}", w[0], w[1], graph[&w[0]][&w[1]]))
        .collect();
    format!(
        "modules depend on each other in a cycle: {}; {}. Move what both need into a module \
         below them, or pass it in.",
        cycle.join(" → "),
        edges.join(", ")
    )
}

/// A graph from (from, to) edges, each written at `<from>.rs:1`.
fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        graph
            .entry(from.to_string())
            .or_default()
            .insert(to.to_string(), format!("{from}.rs:1"));
        graph.entry(to.to_string()).or_default();
    }
    graph
}
