//! Data flows one way: no module of the library names a module of a later pipeline stage.
//!
//! Every `crate::NAME` in `src/` outside `//` comments (in `use` lines, `use crate::{…}` groups
//! and inline paths, test modules included) must name a module of the same or an earlier rank
//! than the file's own top module. Every top module must have a rank, so a new one is placed on
//! purpose, and `src/lib.rs` declares them in this order.
//!
//! What a stage needs from a later one comes from the drivers: the last test checks, on a real
//! capture, that the engine still gives tcp MySQL's greeting test.

use std::path::{Path, PathBuf};

use proxyscope::analyze::{Engine, Options};
use proxyscope::dissect::Carries;
use proxyscope::model::Summary;
use proxyscope::report::{Report, RunSummary};
use proxyscope::source::{CaptureFile, Sources};
use proxyscope::tcp::RoleBasis;

/// The stages, earliest first; modules on one line share a rank (`lib.rs` says the same).
const RANKS: &[&[&str]] = &[
    // Small shared types and helpers below all stages.
    &["bytes", "time", "common", "outfile", "http_head"],
    &["source"],
    &["decode"],
    &["community_id"],
    &["clock"],
    &["tcp"],
    &["event"],
    &["mysql"],
    &["tls"],
    &["dissect"],
    &["model"],
    &["diagnose"],
    &["report"],
    &["compare"],
    &["export"],
    // The drivers, which wire the stages.
    &["analyze"],
    &["live"],
    &["app"],
    &["cli"],
];

fn rank(name: &str) -> Option<usize> {
    RANKS.iter().position(|r| r.contains(&name))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top module a file belongs to: `src/tcp/mod.rs` and `src/tcp/assembler.rs` are `tcp`,
/// `src/decode.rs` and `src/decode/frag.rs` are `decode`; None for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" | "bin" => None,
        f => Some(f.strip_suffix(".rs").unwrap_or(f).to_string()),
    }
}

/// The text with `//` comments (doc comments included) blanked, line breaks kept.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every module named through `crate::`, with its byte offset: `crate::a::b` gives `a`,
/// `crate::{a, b::c, d::{e}}` gives `a`, `b` and `d`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue; // e.g. `other_crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first segment of each top-level item of the group, up to its closing brace.
            let (mut depth, mut item, mut first) = (0usize, String::new(), true);
            for c in group.chars() {
                if depth == 0 && first && is_ident(c) {
                    item.push(c);
                    continue;
                }
                if !item.is_empty() {
                    out.push((at, std::mem::take(&mut item)));
                    first = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => first = true,
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            out.push((at, name));
        }
    }
    out
}

#[test]
fn stages_import_only_earlier_stages() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut bad = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        let Some(own) = rank(&module) else {
            bad.push(format!(
                "{}: module `{module}` has no rank: place it in RANKS (tests/pipeline.rs) and src/lib.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        let code = without_comments(&text);
        for (at, name) in crate_paths(&code) {
            checked += 1;
            let line = code[..at].matches('\n').count() + 1;
            let rel = file.strip_prefix(&src).unwrap_or(file).display();
            match rank(&name) {
                Some(r) if r <= own => {}
                Some(r) => bad.push(format!(
                    "src/{rel}:{line}: `{module}` (stage {own}) names `crate::{name}` (stage {r}), a later stage"
                )),
                None => bad.push(format!(
                    "src/{rel}:{line}: `crate::{name}` is not a ranked module (add it to RANKS)"
                )),
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate:: paths found: is the scan broken?"
    );
    assert!(
        bad.is_empty(),
        "imports against the pipeline:\n{}",
        bad.join("\n")
    );
}

#[test]
fn lib_declares_the_modules_in_pipeline_order() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    let mut last = 0;
    let mut seen = 0;
    for (n, line) in without_comments(&lib).lines().enumerate() {
        let Some(decl) = line
            .trim()
            .strip_prefix("pub mod ")
            .or(line.trim().strip_prefix("mod "))
        else {
            continue;
        };
        let name = decl.trim_end_matches(';').trim();
        seen += 1;
        let r = rank(name).unwrap_or_else(|| {
            panic!(
                "src/lib.rs:{}: module `{name}` has no rank in tests/pipeline.rs",
                n + 1
            )
        });
        assert!(
            r >= last,
            "src/lib.rs:{}: `{name}` (stage {r}) is declared after a stage-{last} module",
            n + 1
        );
        last = r;
    }
    assert!(
        seen > 10,
        "found only {seen} module declarations in src/lib.rs"
    );
}

#[test]
fn the_scan_finds_groups_and_inline_paths() {
    let code = without_comments(
        "use crate::a::B;\nuse crate::{c, d::E, f::{g, h}};\nlet x = crate::i::j(); // crate::k\n\
         /// [`crate::l`]\nmy_crate::m;",
    );
    let names: Vec<String> = crate_paths(&code).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["a", "c", "d", "f", "i"]);
}

struct Keep(Vec<Summary>);

impl Report for Keep {
    fn connection(&mut self, c: &Summary) -> std::io::Result<()> {
        self.0.push(c.clone());
        Ok(())
    }
    fn finish(&mut self, _: &RunSummary) -> std::io::Result<()> {
        Ok(())
    }
}

/// The summaries of a capture run through the engine, without the frames `drop` picks.
fn run(path: &Path, drop: impl Fn(&proxyscope::source::Frame<'_>) -> bool) -> Vec<Summary> {
    let mut engine = Engine::new(&Options::default());
    let file = CaptureFile::open(path.to_str().expect("utf-8 path"), 0).expect("open capture");
    let mut sources = Sources::new(vec![file]);
    let mut out = Keep(Vec::new());
    while let Some(frame) = sources.next_frame() {
        if !drop(&frame) {
            engine.push(&frame, &mut out).expect("push");
        }
    }
    engine.finish(Vec::new(), &mut out).expect("finish");
    out.0
}

#[test]
fn the_engine_gives_tcp_the_mysql_greeting_test() {
    // Real captures with every SYN and SYN-ACK taken out: only the server's greeting can tell
    // the roles (the port guess would say `port`), and it must name the same server as the SYNs.
    let mut greeted = 0;
    for name in [
        "commands-plain.pcap",
        "prepared-statements.pcap",
        "login-failure.pcap",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("captures")
            .join(name);
        let full = run(&path, |_| false);
        let no_syn = run(&path, |f| {
            proxyscope::decode::decode(f).is_ok_and(|seg| seg.flags.syn())
        });
        for s in no_syn.iter().filter(|s| s.carries == Carries::Mysql) {
            let with_syn = full
                .iter()
                .find(|f| {
                    [f.client, f.server] == [s.client, s.server]
                        || [f.client, f.server] == [s.server, s.client]
                })
                .expect("the same connection in the full run");
            assert_eq!(with_syn.role_basis, RoleBasis::Syn, "{name} {}", s.client);
            assert_eq!(s.role_basis, RoleBasis::Greeting, "{name} {}", s.client);
            assert_eq!(
                (s.client, s.server),
                (with_syn.client, with_syn.server),
                "{name}"
            );
            greeted += 1;
        }
    }
    assert!(
        greeted >= 3,
        "only {greeted} MySQL connections in the captures"
    );
}
