//! The architecture test: every module of the engine imports only from its
//! own layer or lower ones, and modules do not import each other in a
//! circle. The layer of every module is in [`LAYERS`], the one table to
//! change when a module is added (ARCHITECTURE.md explains the layers).
//!
//! It reads the sources: every `crate::` path and every `super::` path
//! outside comments counts as an import, whether in a `use` (groups nested
//! at any depth) or inline; a path that names no module (`crate::Engine`,
//! a root re-export) is the crate root, layer 6.
//!
//! The circle check treats a directory as one subsystem: edges between a
//! `mod.rs` and its own children are not counted (the parent publishes its
//! children, and a child may use the types its parent defines, as
//! `keyspace/cow.rs` does with `keyspace/mod.rs`'s `Shard`). Circles
//! between siblings, or across subsystems, fail.
//!
//! Imports are not the only way to reach up: an `impl Inner` block in a
//! service would let the core call it with no import at all, so a third
//! test keeps the inherent impls of the engine's central types in their
//! own layer.

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
    ("failpoints", 0),
    ("glob", 0),
    ("mutation", 0),
    ("slot", 0),
    ("stats", 0),
    // L1 formats
    ("log", 1),
    ("log::file", 1),
    ("log::loom_tests", 1),
    ("log::memory", 1),
    ("log::power", 1),
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
    ("keyspace::slots", 2),
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
    ("ops::import", 4),
    ("ops::keys", 4),
    ("ops::scan", 4),
    ("ops::slots", 4),
    ("ops::strings", 4),
    // L5 services
    ("services", 5),
    ("services::background", 5),
    ("services::data_dir", 5),
    ("services::expiry", 5),
    ("services::parallel_apply", 5),
    ("services::parallel_load", 5),
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

/// The longest known module that `segments` starts with; a path naming no
/// module (`crate::Engine`, a root re-export) is the crate root itself.
fn resolve(known: &BTreeSet<&str>, segments: &[&str]) -> String {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| known.contains(m.as_str()))
        .unwrap_or_default()
}

/// The paths named by a use tree or inline path starting at `rest` (just
/// after `crate::` or `super::`): `a::b::C` gives `[a, b, C]`, and groups
/// `a::{b, c::{d, e}}` expand at any depth. `self` inside a group names
/// the group's own prefix.
fn paths_after(rest: &str) -> Vec<Vec<String>> {
    fn ident(s: &str) -> (String, &str) {
        let s = s.trim_start();
        let end = s
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(s.len(), |(i, _)| i);
        (s[..end].to_string(), &s[end..])
    }
    /// Parses one tree at `s` with `prefix`; returns the rest of the input.
    fn tree<'a>(mut s: &'a str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> &'a str {
        let mut path = prefix;
        loop {
            s = s.trim_start();
            if let Some(group) = s.strip_prefix('{') {
                s = group;
                loop {
                    s = tree(s, path.clone(), out);
                    s = s.trim_start();
                    if let Some(r) = s.strip_prefix(',') {
                        s = r;
                        if s.trim_start().starts_with('}') {
                            s = s.trim_start();
                        } else {
                            continue;
                        }
                    }
                    if let Some(r) = s.strip_prefix('}') {
                        return r;
                    }
                    return s;
                }
            }
            let (id, r) = ident(s);
            if id.is_empty() {
                if !path.is_empty() {
                    out.push(path);
                }
                return r;
            }
            if id != "self" {
                path.push(id);
            }
            s = r;
            match s.strip_prefix("::") {
                Some(r) => s = r,
                None => {
                    out.push(path);
                    return s;
                }
            }
        }
    }
    let mut out = Vec::new();
    tree(rest, Vec::new(), &mut out);
    if out.is_empty() {
        // `crate::*` or a bare `crate::`: the crate root.
        out.push(Vec::new());
    }
    out
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
            if code.contains("mod tests")
                && (code.trim_start().starts_with("mod tests") || code.contains("#[cfg(test)]"))
            {
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
                    targets.push(resolve(&known, &segs));
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
                    let found = resolve(&known, &full);
                    // `super::Item` re-exported by the parent: the parent.
                    targets.push(if found.is_empty() { base.clone() } else { found });
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
    // A subsystem's `mod.rs` and its own children are one unit.
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
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let found = |text: &str| -> Vec<String> {
        paths_after(text)
            .iter()
            .map(|s| resolve(&known, &s.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect()
    };
    assert_eq!(found("engine::Engine;"), vec!["engine"]);
    assert_eq!(
        found("{keyspace::cow::walk_step, ops, log::record};"),
        vec!["keyspace::cow", "ops", "log::record"]
    );
    // Nested groups at any depth, `self`, and root re-exports.
    assert_eq!(
        found("{core::{Inner, writer::{self, Writer}}, Engine, stats::Op};"),
        vec!["core", "core::writer", "core::writer", "", "stats"]
    );
    assert_eq!(found("*;"), vec![""]);
}

#[test]
fn inherent_impls_stay_in_their_layer() {
    // (type, modules allowed to hold `impl Type` blocks)
    const OWNERS: &[(&str, &[&str])] = &[
        ("Engine", &["engine", "builder"]),
        ("Inner", &["core", "core::memory", "core::reader", "core::writer"]),
        ("Writer", &["core::writer"]),
        ("Keyspace", &["keyspace::shards"]),
        ("Shard", &["keyspace"]),
    ];
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src_dir()).expect("under src").to_path_buf();
        let module = module_of(&rel);
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            let Some(rest) = t.strip_prefix("impl") else { continue };
            // `impl Type {` or `impl<'a> Type<'a> {`, not `impl Trait for Type`.
            let rest = if rest.starts_with('<') {
                rest.split_once('>').map_or("", |(_, r)| r)
            } else {
                rest
            };
            if line.contains(" for ") {
                continue;
            }
            let ty: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some((_, owners)) = OWNERS.iter().find(|(name, _)| *name == ty) {
                if !owners.contains(&module.as_str()) {
                    wrong.push(format!(
                        "engine/src/{}:{}: `impl {ty}` in `{module}`: {}",
                        rel.display(),
                        n + 1,
                        t
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "inherent impls outside their layer:\n{}",
        wrong.join("\n")
    );
}
