//! The layout is the architecture, checked rather than promised:
//! - the core's top-level modules depend only on those before them in the data flow
//!   (decode → imaging → model → explain → infer → train);
//! - no module cycles: in every crate, at every level of the module tree, the sibling modules
//!   (a file, or a folder with everything in it) reference each other without a cycle;
//! - every module opens with a doc comment saying its one job;
//! - the web façade is the only `cdylib`, and neither the lab nor the command line's
//!   dependencies are in the browser build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::repo_root;

/// The core's top-level modules in data-flow order.
const CORE_LAYERS: [&str; 6] = ["decode", "imaging", "model", "explain", "infer", "train"];

/// One source file as a module: its path in the crate (`["imaging", "window"]`) and its text
/// without comments and without its `#[cfg(test)]` module.
struct Module {
    path: Vec<String>,
    code: String,
    first_line: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source folder").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The modules of the crate rooted at `root` (its `lib.rs` or `main.rs`), skipping `skip`.
fn modules(root: &Path, skip: &[&str]) -> Vec<Module> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).expect("inside the crate");
        let mut path: Vec<String> = rel.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
        if skip.iter().any(|s| path.first().is_some_and(|p| p == s)) {
            continue;
        }
        if matches!(path.last().map(String::as_str), Some("mod" | "lib" | "main")) {
            path.pop();
        }
        let text = std::fs::read_to_string(&f).expect("readable source");
        let first_line = text.lines().next().unwrap_or_default().to_string();
        let body = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let code: String = body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        out.push(Module { path, code, first_line });
    }
    out
}

/// The module paths that `m` refers to through `crate::…`, `super::…` and `self::…`, resolved
/// to the longest existing module path.
fn references(m: &Module, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut refs = BTreeSet::new();
    let bytes = m.code.as_bytes();
    for (start, prefix) in [("crate::", 0usize), ("super::", 1), ("self::", 2)] {
        let mut from = 0;
        while let Some(i) = m.code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // Not part of a longer identifier (`ctxr::crate::` never occurs; `my_super::` might).
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let tail: String = m.code[from..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut base: Vec<String> = match prefix {
                0 => Vec::new(),
                // `super` of a folder's mod.rs is the folder's parent; of a file, its folder.
                1 => m.path[..m.path.len().saturating_sub(1)].to_vec(),
                _ => m.path.clone(),
            };
            for seg in tail.split("::").filter(|s| !s.is_empty()) {
                let mut next = base.clone();
                next.push(seg.to_string());
                if known.contains(&next) {
                    base = next;
                } else {
                    break;
                }
            }
            refs.insert(base);
        }
    }
    refs
}

/// Edges between the children of `parent`: child A → child B when a module inside A refers to
/// one inside B.
fn sibling_edges(mods: &[Module], known: &BTreeSet<Vec<String>>, parent: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let child_of = |p: &[String]| -> Option<String> { (p.len() > parent.len() && p.starts_with(parent)).then(|| p[parent.len()].clone()) };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in mods {
        let Some(a) = child_of(&m.path) else { continue };
        edges.entry(a.clone()).or_default();
        for r in references(m, known) {
            if let Some(b) = child_of(&r)
                && b != a
            {
                edges.entry(a.clone()).or_default().insert(b);
            }
        }
    }
    edges
}

/// A cycle in `edges`, if any, as the list of nodes along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, edges: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let i = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut c = stack[i..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    edges.keys().find_map(|n| visit(n, edges, &mut state, &mut Vec::new()))
}

/// Every crate's modules: (crate name, modules).
fn crates() -> Vec<(&'static str, Vec<Module>)> {
    let src = repo_root().join("src");
    vec![
        ("ctxr", modules(&src.join("core"), &[])),
        ("ctxr-lab", modules(&src.join("lab"), &["cli"])),
        ("ctxr (cli)", modules(&src.join("lab/cli"), &[])),
        ("ctxr-web", modules(&src.join("web"), &[])),
    ]
}

#[test]
fn no_module_cycles_at_any_level_of_any_crate() {
    let mut levels = 0;
    for (name, mods) in crates() {
        assert!(!mods.is_empty(), "{name} has modules");
        let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
        for parent in &known {
            let edges = sibling_edges(&mods, &known, parent);
            if edges.len() < 2 {
                continue;
            }
            levels += 1;
            if let Some(c) = find_cycle(&edges) {
                panic!("{name}: module cycle under `{}`: {}", parent.join("::"), c.join(" → "));
            }
        }
    }
    assert!(levels >= 8, "only {levels} module levels checked");
}

#[test]
fn core_modules_depend_only_on_earlier_layers() {
    let mods = modules(&repo_root().join("src/core"), &[]);
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let edges = sibling_edges(&mods, &known, &[]);
    let tops: BTreeSet<&str> = edges.keys().map(String::as_str).collect();
    assert_eq!(tops, CORE_LAYERS.into_iter().collect(), "the core's top-level modules");
    let layer = |m: &str| CORE_LAYERS.iter().position(|l| *l == m).unwrap_or(usize::MAX);
    for (a, bs) in &edges {
        for b in bs {
            assert!(layer(b) < layer(a), "core module `{a}` depends on the later `{b}` (order: {})", CORE_LAYERS.join(" → "));
        }
    }
    eprintln!("core layer dependencies: {edges:?}");
}

#[test]
fn every_module_opens_with_its_job() {
    for (name, mods) in crates() {
        for m in mods {
            assert!(m.first_line.starts_with("//!"), "{name}::{} does not open with a `//!` doc comment", m.path.join("::"));
        }
    }
}

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo).args(args).current_dir(repo_root()).output().expect("cargo runs");
    assert!(out.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_web_facade_is_the_only_cdylib_and_the_browser_build_holds_no_lab() {
    let meta: serde_json::Value = serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--no-deps"])).expect("metadata JSON");
    let mut cdylibs = Vec::new();
    for p in meta["packages"].as_array().expect("packages") {
        for t in p["targets"].as_array().expect("targets") {
            if t["crate_types"].as_array().expect("crate types").iter().any(|c| c == "cdylib") {
                cdylibs.push(p["name"].as_str().unwrap_or("?").to_string());
            }
        }
    }
    assert_eq!(cdylibs, ["ctxr-web"], "the only cdylib");
    let tree = cargo(&["tree", "-p", "ctxr-web", "--target", "wasm32-unknown-unknown", "-e", "normal", "--prefix", "none", "--no-dedupe"]);
    let crates: BTreeSet<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for banned in ["ctxr-lab", "clap"] {
        assert!(!crates.contains(banned), "`{banned}` is in the browser build:\n{tree}");
    }
    assert!(crates.contains("ctxr") && crates.contains("wasm-bindgen"), "the browser build is the core and wasm-bindgen:\n{tree}");
}
