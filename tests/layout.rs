//! The root package's modules import each other without a circle (issue #18): read from the
//! source, every `crate::`, `super::` and `self::` path a module names (outside its tests) is an
//! edge to the deepest module the path reaches. Under every module, the edges between its
//! children (each edge lifted to the two children it runs between) must form no cycle; a module
//! naming its own ancestor (a room's `mod.rs`) is not an edge between siblings. The binaries
//! (`src/main.rs`, `src/bin/`) are crates of their own and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below the crate root (`["api", "caller"]`); the root is empty.
type Module = Vec<String>;

/// Every module of the library, from its file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if path != src.join("bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") || path == src.join("main.rs") {
                continue;
            }
            let relative = path
                .strip_prefix(src)
                .expect("below src/")
                .with_extension("");
            let mut module: Module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

/// The code of a file without its tests (`#[cfg(test)]` and what follows it) and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts with `crate::`, `super::` or `self::`, with `{…}` groups spread out.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start).map(|at| at + from) {
            from = at + start.len();
            let preceded =
                at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            if preceded {
                continue;
            }
            let first = start.trim_end_matches(':').to_owned();
            tree(code, from, vec![first], &mut found);
        }
    }
    found
}

/// Reads `ident(::ident)*` and an optional `::{tree, …}` at `at`, adding each full path to
/// `found`; the position after what was read.
fn tree(code: &str, mut at: usize, mut prefix: Vec<String>, found: &mut Vec<Vec<String>>) -> usize {
    let bytes = code.as_bytes();
    let skip_space = |at: &mut usize| {
        while *at < bytes.len() && bytes[*at].is_ascii_whitespace() {
            *at += 1;
        }
    };
    loop {
        skip_space(&mut at);
        if at < bytes.len() && bytes[at] == b'{' {
            at += 1;
            loop {
                at = tree(code, at, prefix.clone(), found);
                skip_space(&mut at);
                match bytes.get(at) {
                    Some(b',') => at += 1,
                    Some(b'}') => return at + 1,
                    _ => return at,
                }
                skip_space(&mut at);
                if bytes.get(at) == Some(&b'}') {
                    return at + 1;
                }
            }
        }
        let end = code[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(code.len(), |len| at + len);
        if end == at {
            break;
        }
        prefix.push(code[at..end].to_owned());
        at = end;
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            break;
        }
    }
    found.push(prefix);
    at
}

/// Each module's edges to the modules its paths reach.
fn edges(modules: &BTreeMap<Module, PathBuf>) -> BTreeSet<(Module, Module)> {
    let mut edges = BTreeSet::new();
    for (module, file) in modules {
        let text = std::fs::read_to_string(file).expect("read a module");
        for path in paths(&code(&text)) {
            let (mut base, rest) = match path[0].as_str() {
                "crate" => (Vec::new(), &path[1..]),
                "self" => (module.clone(), &path[1..]),
                _ => (
                    module[..module.len().saturating_sub(1)].to_vec(),
                    &path[1..],
                ),
            };
            let mut rest = rest;
            while rest.first().is_some_and(|segment| segment == "super") {
                base.pop();
                rest = &rest[1..];
            }
            let full: Module = base.into_iter().chain(rest.iter().cloned()).collect();
            let reached = (1..=full.len())
                .rev()
                .map(|len| full[..len].to_vec())
                .find(|prefix| modules.contains_key(prefix));
            if let Some(reached) = reached
                && &reached != module
            {
                edges.insert((module.clone(), reached));
            }
        }
    }
    edges
}

/// The edges between siblings, by their parent: an edge from `a::b::c` to `a::d` is `b → d`
/// under `a`.
fn lifted(edges: &BTreeSet<(Module, Module)>) -> BTreeMap<Module, BTreeSet<(String, String)>> {
    let mut levels: BTreeMap<Module, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, to) in edges {
        let shared = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if shared == from.len() || shared == to.len() {
            continue;
        }
        levels
            .entry(from[..shared].to_vec())
            .or_default()
            .insert((from[shared].clone(), to[shared].clone()));
    }
    levels
}

/// A cycle among `edges`, as the nodes along it, if there is one.
fn cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(from).or_default().push(to);
    }
    // 0: not seen, 1: on the current path, 2: done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(node, 1);
        path.push(node);
        for &to in next.get(node).into_iter().flatten() {
            match state.get(to).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|&n| n == to).unwrap_or(0);
                    let mut around: Vec<String> =
                        path[start..].iter().map(|n| (*n).to_owned()).collect();
                    around.push(to.to_owned());
                    return Some(around);
                }
                0 => {
                    if let Some(found) = visit(to, next, state, path) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node, 2);
        None
    }
    let nodes: Vec<&str> = next.keys().copied().collect();
    for node in nodes {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(found) = visit(node, &next, &mut state, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

#[test]
fn the_modules_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(
        modules.len() > 20 && modules.contains_key(&vec!["api".to_owned()]),
        "the library's modules were found: {:?}",
        modules.keys().collect::<Vec<_>>()
    );
    let edges = edges(&modules);
    let circles: Vec<String> = lifted(&edges)
        .iter()
        .filter_map(|(parent, siblings)| {
            let around = cycle(siblings)?;
            let under = if parent.is_empty() {
                "crate".to_owned()
            } else {
                format!("crate::{}", parent.join("::"))
            };
            Some(format!("under {under}: {}", around.join(" → ")))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "modules that import each other in a circle (each arrow: a module, or one inside it, \
         names the next):\n{}",
        circles.join("\n")
    );
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    assert_eq!(
        cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let straight: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("a", "c")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    assert_eq!(cycle(&straight), None);
}

#[test]
fn paths_are_read_through_groups_and_relative_prefixes() {
    let found = paths(
        "use crate::{api::caller, settings::{Settings, tls::TlsSettings}};\nuse super::State;\nlet x = crate::telemetry::exporting();",
    );
    for expected in [
        vec!["crate", "api", "caller"],
        vec!["crate", "settings", "Settings"],
        vec!["crate", "settings", "tls", "TlsSettings"],
        vec!["super", "State"],
        vec!["crate", "telemetry", "exporting"],
    ] {
        let expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        assert!(found.contains(&expected), "{expected:?} in {found:?}");
    }
}
