//! The architecture test: every module of the engine imports only from its
//! own layer or lower ones, and modules do not import each other in a
//! circle. The layer of every module is in [`LAYERS`], the one table to
//! change when a module is added (ARCHITECTURE.md explains the layers).
//!
//! It reads the sources: every `crate::` path and every `super::` path
//! outside comments counts as an import, whether in a `use` or inline. A
//! module's own `mod.rs` re-exporting its children (`pub use ring::...`) is
//! not an edge for the circle check: that is how a subsystem publishes
//! what it offers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (as `crate::` would name it; "" is `lib.rs`) and its layer.
const LAYERS: &[(&str, u8)] = &[
    // L0 vocabulary
    ("blob", 0),
    ("clock", 0),
    ("codec", 0),
    ("config", 0),
    ("error", 0),
    ("glob", 0),
    ("mutation", 0),
    ("stats", 0),
    // L1 formats
    ("log", 1),
    ("log::memory", 1),
    ("log::record", 1),
    ("log::ring", 1),
    ("log::tail", 1),
    ("log::view", 1),
    ("snapshot", 1),
    ("snapshot::files", 1),
    ("snapshot::format", 1),
    // L2 keyspace
    ("keyspace", 2),
    ("keyspace::apply", 2),
    ("keyspace::cow", 2),
    ("keyspace::shards", 2),
    ("keyspace::table", 2),
    // L3 core
    ("core", 3),
    ("core::memory", 3),
    ("core::reader", 3),
    ("core::replica_state", 3),
    ("core::snapshot_state", 3),
    ("core::writer", 3),
    // L4 ops
    ("ops", 4),
    ("ops::batch", 4),
    ("ops::hashes", 4),
    ("ops::keys", 4),
    ("ops::scan", 4),
    ("ops::strings", 4),
    // L5 services
    ("services", 5),
    ("services::background", 5),
    ("services::data_dir", 5),
    ("services::expiry", 5),
    ("services::recovery", 5),
    ("services::replica", 5),
    ("services::snapshot", 5),
    ("services::stats", 5),
    // L6 facade
    ("builder", 6),
    ("engine", 6),
    ("internals", 6),
    ("", 6),
];

/// One import found in a source file.
#[derive(Debug, Clone)]
struct Import {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module path of a source file relative to `src/`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src dir")
        .map(|e| e.expect("dir entry").path())
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

/// The longest known module that `segments` starts with.
fn resolve(known: &BTreeSet<&str>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| known.contains(m.as_str()))
}

/// Identifier segments of a path that starts at `rest` (after `crate::` or
/// `super::`), following one level of `{a, b::c}` groups.
fn paths_after(rest: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    let head: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let head = head.trim_end_matches(':');
    let after = &rest[head.len()..];
    let prefix = ident(head);
    let after = after.trim_start_matches(':');
    if let Some(group) = after.strip_prefix('{') {
        let inner = group.split('}').next().unwrap_or("");
        inner
            .split(',')
            .map(|part| prefix.iter().cloned().chain(ident(part)).collect())
            .collect()
    } else {
        vec![prefix]
    }
}

fn parent(module: &str) -> String {
    module.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string())
}

fn collect_imports() -> (Vec<Import>, BTreeMap<String, u8>) {
    let layers: BTreeMap<String, u8> = LAYERS.iter().map(|(m, l)| (m.to_string(), *l)).collect();
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut imports = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src_dir()).expect("under src").to_path_buf();
        let module = module_of(&rel);
        assert!(
            layers.contains_key(&module),
            "{}: module `{module}` has no layer: add it to LAYERS in engine/tests/layers.rs",
            rel.display()
        );
        let text = std::fs::read_to_string(&file).expect("read source");
        let mut in_use = String::new();
        // Inside the file's test module, `super::` is the file's own module.
        let mut in_tests = false;
        for (n, raw) in text.lines().enumerate() {
            let code = raw.split("//").next().unwrap_or("");
            if code.trim_start().starts_with("mod tests") {
                in_tests = true;
            }
            // A multi-line `use` is joined until its `;`.
            let line = if !in_use.is_empty()
                || code.trim_start().starts_with("use ")
                || code.trim_start().starts_with("pub use ")
                || code.trim_start().starts_with("pub(crate) use ")
            {
                in_use.push_str(code.trim());
                if !code.contains(';') {
                    continue;
                }
                std::mem::take(&mut in_use)
            } else {
                code.to_string()
            };
            let mut targets = Vec::new();
            for (i, _) in line.match_indices("crate::") {
                if i > 0 && line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                    continue; // `ringkv_crate::` or `$crate::`
                }
                for segs in paths_after(&line[i + "crate::".len()..]) {
                    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
                    targets.extend(resolve(&known, &segs));
                }
            }
            for (i, _) in line.match_indices("super::") {
                if line[..i].ends_with("super::") {
                    continue;
                }
                let mut base = if in_tests { module.clone() } else { parent(&module) };
                let mut rest = &line[i + "super::".len()..];
                while let Some(r) = rest.strip_prefix("super::") {
                    base = parent(&base);
                    rest = r;
                }
                // `use super::*` in a test module inside the file itself.
                if rest.starts_with('*') {
                    continue;
                }
                for segs in paths_after(rest) {
                    let full: Vec<String> = base
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .chain(segs)
                        .collect();
                    let full: Vec<&str> = full.iter().map(String::as_str).collect();
                    targets.extend(resolve(&known, &full).or_else(|| Some(base.clone())));
                }
            }
            for to in targets {
                if to != module {
                    imports.push(Import {
                        from: module.clone(),
                        to,
                        file: rel.clone(),
                        line: n + 1,
                        text: raw.trim().to_string(),
                    });
                }
            }
        }
    }
    (imports, layers)
}

#[test]
fn modules_import_only_from_their_layer_or_below() {
    let (imports, layers) = collect_imports();
    assert!(imports.len() > 50, "the scan found too few imports: {}", imports.len());
    let upward: Vec<String> = imports
        .iter()
        .filter(|i| layers[&i.to] > layers[&i.from])
        .map(|i| {
            format!(
                "engine/src/{}:{}: `{}` (L{}) imports `{}` (L{}): {}",
                i.file.display(),
                i.line,
                i.from,
                layers[&i.from],
                i.to,
                layers[&i.to],
                i.text
            )
        })
        .collect();
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn modules_do_not_import_each_other_in_a_circle() {
    let (imports, _) = collect_imports();
    // A parent's `mod.rs` publishing its children is not an edge.
    let is_descendant = |child: &str, of: &str| of.is_empty() || child.starts_with(&format!("{of}::"));
    let mut edges: BTreeMap<&str, Vec<&Import>> = BTreeMap::new();
    for i in &imports {
        if !is_descendant(&i.to, &i.from) {
            edges.entry(i.from.as_str()).or_default().push(i);
        }
    }
    // Depth-first search for a back edge; report the circle with its lines.
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a Import>>,
        stack: &mut Vec<&'a Import>,
        on_stack: &mut BTreeSet<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a Import>> {
        on_stack.insert(node);
        for e in edges.get(node).into_iter().flatten() {
            stack.push(e);
            if on_stack.contains(e.to.as_str()) {
                let start = stack.iter().position(|s| s.from == e.to).unwrap_or(0);
                return Some(stack[start..].to_vec());
            }
            if !done.contains(e.to.as_str()) {
                if let Some(c) = visit(e.to.as_str(), edges, stack, on_stack, done) {
                    return Some(c);
                }
            }
            stack.pop();
        }
        on_stack.remove(node);
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if done.contains(node) {
            continue;
        }
        let mut stack = Vec::new();
        let mut on_stack = BTreeSet::new();
        if let Some(circle) = visit(node, &edges, &mut stack, &mut on_stack, &mut done) {
            let lines: Vec<String> = circle
                .iter()
                .map(|i| {
                    format!(
                        "engine/src/{}:{}: `{}` -> `{}`: {}",
                        i.file.display(),
                        i.line,
                        i.from,
                        i.to,
                        i.text
                    )
                })
                .collect();
            panic!("modules import each other in a circle:\n{}", lines.join("\n"));
        }
    }
}

#[test]
fn the_scanner_sees_an_upward_import() {
    // The checks above are only as good as the scanner: a planted line must
    // be found and classified as upward.
    let line = "use crate::engine::Engine;";
    let segs = paths_after(&line["use crate::".len()..]);
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let segs: Vec<&str> = segs[0].iter().map(String::as_str).collect();
    assert_eq!(resolve(&known, &segs).as_deref(), Some("engine"));
    let grouped = paths_after("{keyspace::cow::walk_step, ops, log::record};");
    let found: Vec<Option<String>> = grouped
        .iter()
        .map(|s| resolve(&known, &s.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    assert_eq!(
        found,
        vec![
            Some("keyspace::cow".into()),
            Some("ops".into()),
            Some("log::record".into())
        ]
    );
}
