//! Fails when the modules of `src/` import each other in a cycle, so layering stays one-way.
//!
//! - Modules are the files of `src/`: `lib.rs` is `crate`, `foo.rs` or `foo/mod.rs` is `crate::foo`,
//!   `foo/bar.rs` is `crate::foo::bar`. `main.rs` (the binary) is not part of the graph.
//! - A module depends on another when its source mentions a path starting with `crate::`,
//!   `super::` or `self::`, in a `use` statement (grouped and multi-line forms included) or in code
//!   such as `crate::protocol::ErrorCode::Malformed`. `use foo::..` counts as `self::foo::..`
//!   when `foo` is declared by `mod foo;` in the same file. Comments and literals are skipped, and
//!   so is everything from a line `#[cfg(test)]` followed by a `mod ` line: test modules are
//!   assumed to come last in their file.
//! - A path resolves to the longest prefix of it that names a module file.
//! - Containment is not a cycle: a module may use its descendants and they may use it. A dependency
//!   of A on B is otherwise an edge between the two siblings under their longest common prefix on
//!   the way to A and to B: `crate::session::pairing` using `crate::state::owners` is the edge
//!   `session → state` among the children of `crate`.
//!
//! Each parent's graph of children must be acyclic; the failure lists every elementary cycle with,
//! for each of its edges, one `file:line` that causes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type ModulePath = Vec<String>;
/// A word or punctuation (`::` is one), with its byte offset.
type Token<'a> = (usize, &'a str);
type Edges = BTreeSet<(String, String)>;
/// Per parent module: sibling edges `(from, to)` with one example cause each.
type SiblingGraphs = BTreeMap<ModulePath, BTreeMap<(String, String), String>>;

/// Beyond this, more cycles under one parent would only bury the first ones.
const MAX_CYCLES_SHOWN: usize = 20;

fn segments(path: &str) -> ModulePath {
    path.split("::").map(String::from).collect()
}

/// `session/mod.rs` → `crate::session`; `None` for the binary and non-Rust files.
fn module_of(relative: &str) -> Option<ModulePath> {
    let module = match relative.strip_suffix(".rs")? {
        "main" => return None,
        "lib" => "crate".to_string(),
        stem => format!("crate::{}", stem.replace('/', "::")),
    };
    Some(segments(module.trim_end_matches("::mod")))
}

fn without_test_module(source: &str) -> &str {
    let mut offset = 0;
    let mut lines = source.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let next_is_mod = lines
            .peek()
            .is_some_and(|next| next.trim_start().starts_with("mod "));
        if line.trim() == "#[cfg(test)]" && next_is_mod {
            return &source[..offset];
        }
        offset += line.len();
    }
    source
}

/// Words (numbers dropped) and punctuation; comments and string and char literals are skipped so
/// that text in them is not read as paths.
fn tokens(code: &str) -> Vec<Token<'_>> {
    let bytes = code.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii();
    let past = |from: usize, end: &str| {
        let found = code.get(from..).and_then(|rest| rest.find(end));
        found.map_or(code.len(), |n| from + n + end.len())
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (start, rest) = (i, &code[i..]);
        if rest.starts_with("//") {
            i = past(i, "\n");
        } else if rest.starts_with("/*") {
            i = past(i + 2, "*/");
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if bytes[i] == b'\'' {
            // A char literal, or else a lifetime or label, whose name is read as a word.
            i = match rest[1..].chars().next() {
                Some('\\') => past(i + 3, "'"),
                Some(c) if rest[1 + c.len_utf8()..].starts_with('\'') => i + 2 + c.len_utf8(),
                _ => i + 1,
            };
        } else if is_word(bytes[i]) {
            while i < bytes.len() && is_word(bytes[i]) {
                i += 1;
            }
            let hashes = code[i..].len() - code[i..].trim_start_matches('#').len();
            if matches!(&code[start..i], "r" | "br") && code[i + hashes..].starts_with('"') {
                i = past(i + hashes + 1, &format!("\"{}", "#".repeat(hashes)));
            } else if !bytes[start].is_ascii_digit() {
                out.push((start, &code[start..i]));
            }
        } else {
            i += if rest.starts_with("::") { 2 } else { 1 };
            if !bytes[start].is_ascii_whitespace() {
                out.push((start, &code[start..i]));
            }
        }
    }
    out
}

fn is_word(token: &str) -> bool {
    !token.starts_with(|c: char| c.is_ascii_punctuation())
}

/// Each leaf of each `use` tree, and each code path starting at `crate`, `super` or `self`, with
/// the offset of its last segment.
fn mentioned_paths(tokens: &[Token]) -> Vec<(usize, ModulePath)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&(offset, word)) = tokens.get(at) {
        at += 1;
        if word == "use" {
            // `groups` holds the length of the path at each open `{`.
            let (mut path, mut groups, mut leaf) = (Vec::new(), Vec::new(), None);
            while let Some(&(offset, token)) = tokens.get(at) {
                at += 1;
                match token {
                    "as" => at += 1,
                    "::" | "*" => {}
                    "{" => groups.push(path.len()),
                    _ if is_word(token) => {
                        path.push(token.to_string());
                        leaf = Some(offset);
                    }
                    _ => {
                        out.extend(leaf.take().map(|leaf| (leaf, path.clone())));
                        match token {
                            "," => {}
                            "}" => _ = groups.pop(),
                            _ => break,
                        }
                        path.truncate(groups.last().copied().unwrap_or(0));
                    }
                }
            }
        } else if matches!(word, "crate" | "super" | "self") {
            let (mut path, mut last) = (vec![word.to_string()], offset);
            while let [(_, "::"), (next, name), ..] = tokens[at..]
                && is_word(name)
            {
                (last, at) = (next, at + 2);
                path.push(name.to_string());
            }
            out.push((last, path));
        }
    }
    out
}

/// Names declared by `mod foo;`, for which `use foo::..` means `self::foo::..`.
fn declared_children(tokens: &[Token]) -> BTreeSet<String> {
    let declaration = |window: &[Token]| match window {
        [(_, "mod"), (_, name), (_, ";")] => Some(name.to_string()),
        _ => None,
    };
    tokens.windows(3).filter_map(declaration).collect()
}

/// The module file that `path`, written in `module`, refers to; `None` outside this crate.
fn resolve(
    module: &[String],
    path: &[String],
    children: &BTreeSet<String>,
    known: &BTreeSet<ModulePath>,
) -> Option<ModulePath> {
    let supers = path.iter().take_while(|s| *s == "super").count();
    let mut full = match path.first()?.as_str() {
        "crate" => path.to_vec(),
        "self" => [module, &path[1..]].concat(),
        "super" => {
            let kept = module.len().checked_sub(supers).filter(|&n| n > 0)?;
            [&module[..kept], &path[supers..]].concat()
        }
        first if children.contains(first) => [module, path].concat(),
        _ => return None,
    };
    while !known.contains(&full) {
        full.pop()?;
    }
    Some(full)
}

/// `(parent, from, to)` among the children of `parent`, or `None` when one module contains the other.
fn sibling_edge(from: &[String], to: &[String]) -> Option<(ModulePath, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let (from_child, to_child) = (from.get(common)?, to.get(common)?);
    Some((
        from[..common].to_vec(),
        from_child.clone(),
        to_child.clone(),
    ))
}

/// Builds the sibling graphs from `(path relative to src/, source)` pairs.
fn sibling_graphs(files: &[(String, String)]) -> SiblingGraphs {
    let known: BTreeSet<ModulePath> = files.iter().filter_map(|f| module_of(&f.0)).collect();
    let mut graphs = SiblingGraphs::new();
    let modules = files
        .iter()
        .filter_map(|(n, s)| Some((n, s, module_of(n)?)));
    for (name, source, module) in modules {
        let code = without_test_module(source);
        let tokens = tokens(code);
        let children = declared_children(&tokens);
        let mut mentions = mentioned_paths(&tokens);
        mentions.sort();
        for (offset, path) in mentions {
            let target = resolve(&module, &path, &children, &known);
            if let Some((parent, from, to)) = target.and_then(|t| sibling_edge(&module, &t)) {
                let line = code[..offset].matches('\n').count() + 1;
                let example = format!("src/{name}:{line} ({})", path.join("::"));
                let edges = graphs.entry(parent).or_default();
                edges.entry((from, to)).or_insert(example);
            }
        }
    }
    graphs
}

/// Every elementary cycle, listed once from its smallest module; shortest first.
fn elementary_cycles(edges: &Edges) -> Vec<Vec<String>> {
    fn extend(path: &mut Vec<String>, edges: &Edges, cycles: &mut Vec<Vec<String>>) {
        let (start, last) = (path[0].clone(), path[path.len() - 1].clone());
        let successors = edges.range((last.clone(), String::new())..);
        for (_, next) in successors.take_while(|(from, _)| *from == last) {
            if *next == start {
                cycles.push(path.clone());
            } else if *next > start && !path.contains(next) {
                path.push(next.clone());
                extend(path, edges, cycles);
                path.pop();
            }
        }
    }
    let mut cycles = Vec::new();
    for start in edges.iter().map(|(from, _)| from).collect::<BTreeSet<_>>() {
        extend(&mut vec![start.clone()], edges, &mut cycles);
    }
    cycles.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    cycles
}

/// One paragraph per cycle, naming the modules in full and one cause per edge; empty when acyclic.
fn cycle_report(graphs: &SiblingGraphs) -> Vec<String> {
    let mut report = Vec::new();
    for (parent, edges) in graphs {
        let parent = parent.join("::");
        let cycles = elementary_cycles(&edges.keys().cloned().collect());
        for cycle in cycles.iter().take(MAX_CYCLES_SHOWN) {
            let closed: Vec<&String> = cycle.iter().chain(&cycle[..1]).collect();
            let qualified: Vec<_> = closed.iter().map(|m| format!("{parent}::{m}")).collect();
            let mut paragraph = qualified.join(" → ");
            for pair in closed.windows(2) {
                let example = &edges[&(pair[0].clone(), pair[1].clone())];
                paragraph += &format!("\n    {} → {}: {example}", pair[0], pair[1]);
            }
            report.push(paragraph);
        }
        if cycles.len() > MAX_CYCLES_SHOWN {
            let more = cycles.len() - MAX_CYCLES_SHOWN;
            report.push(format!("… and {more} more cycles under {parent}"));
        }
    }
    report
}

fn rust_files(dir: &Path, relative: &str, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let name = format!("{relative}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            rust_files(&entry.path(), &format!("{name}/"), out);
        } else if name.ends_with(".rs") {
            let source = std::fs::read_to_string(entry.path()).expect("sources are UTF-8");
            out.push((name, source));
        }
    }
}

#[test]
fn src_modules_import_each_other_without_cycles() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut files,
    );
    let report = cycle_report(&sibling_graphs(&files));
    let (count, cycles) = (report.len(), report.join("\n\n"));
    assert!(
        report.is_empty(),
        "{count} import cycle(s) in src/:\n\n{cycles}\n"
    );
}

mod checker {
    use super::*;

    fn graphs_of(sources: &[(&str, &str)]) -> SiblingGraphs {
        let files: Vec<_> = sources.iter().map(|&(n, s)| (n.into(), s.into())).collect();
        sibling_graphs(&files)
    }

    fn paths_in(source: &str) -> Vec<String> {
        let tokens = tokens(without_test_module(source));
        let paths = mentioned_paths(&tokens).into_iter();
        paths.map(|(_, path)| path.join("::")).collect()
    }

    #[test]
    fn finds_a_two_module_cycle_with_its_causes() {
        let graphs = graphs_of(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::Thing;\n"),
            ("b/mod.rs", "mod c;\n"),
            ("b/c.rs", "\nfn f() { super::super::a::g(); }\n"),
        ]);
        let expected = "crate::a → crate::b → crate::a\n    \
                        a → b: src/a.rs:1 (crate::b::Thing)\n    \
                        b → a: src/b/c.rs:2 (super::super::a::g)";
        assert_eq!(cycle_report(&graphs), [expected]);
    }

    #[test]
    fn parent_and_child_using_each_other_is_not_a_cycle() {
        let graphs = graphs_of(&[
            ("lib.rs", "mod a;\nuse a::B;\n"),
            ("a/mod.rs", "mod b;\npub use b::B;\nuse self::b::x;\n"),
            (
                "a/b.rs",
                "use super::Other;\nuse crate::{a::Other as O, X};\n",
            ),
        ]);
        assert!(graphs.is_empty(), "{graphs:?}");
    }

    #[test]
    fn grouped_multi_line_use_reaches_every_leaf() {
        let paths =
            paths_in("use crate::{\n    a::B,\n    c::{self, d::E as F, g::*},\n};\nuse std::fmt;");
        let expected = [
            "crate::a::B",
            "crate::c::self",
            "crate::c::d::E",
            "crate::c::g",
            "std::fmt",
        ];
        assert_eq!(paths, expected);
    }

    #[test]
    fn skips_comments_literals_and_test_modules() {
        let source = "// crate::a\nlet s = \"crate::\\\"a\"; let r = r#\"crate::a\"#;\n\
                      fn f<'a>(c: &'a char) {}\nlet c = ['\"', '\\'']; /* crate::a */ crate::b::f();\n\
                      #[cfg(test)]\nmod tests { use crate::a; }\n";
        assert_eq!(paths_in(source), ["crate::b::f"]);
    }

    #[test]
    fn resolves_to_the_longest_known_module() {
        let known = ["crate", "crate::x", "crate::x::y", "crate::z"]
            .map(segments)
            .into();
        let children = BTreeSet::from(["y".to_string()]);
        for (module, path, expected) in [
            ("crate::x", "crate::x::y::Type::new", Some("crate::x::y")),
            ("crate::x::y", "super::super::z::f", Some("crate::z")),
            ("crate::x", "y::Type", Some("crate::x::y")),
            ("crate::x", "std::fmt", None),
            ("crate", "super::z", None),
        ] {
            let resolved = resolve(&segments(module), &segments(path), &children, &known);
            let resolved = resolved.map(|m| m.join("::"));
            assert_eq!(resolved.as_deref(), expected, "{path} in {module}");
        }
    }

    #[test]
    fn lists_each_elementary_cycle_once() {
        let edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "b")];
        let edges = edges
            .map(|(from, to)| (from.to_string(), to.to_string()))
            .into();
        assert_eq!(
            elementary_cycles(&edges),
            [vec!["b", "c"], vec!["a", "b", "c"]]
        );
    }
}
