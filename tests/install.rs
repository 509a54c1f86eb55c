//! Installation: the examples under each command's --help, shell completions, man pages, the
//! Dockerfile (checked by parsing: CI has no Docker daemon) and the README's links.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(args)
        .output()
        .expect("runs")
}

fn stdout(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "proxyscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The example command lines under `Examples:` in `help`, from the subcommand on.
fn examples(help: &str, cmd: &str) -> Vec<String> {
    let Some((_, rest)) = help.split_once("\nExamples:\n") else {
        return Vec::new();
    };
    let head = format!("proxyscope {cmd} ");
    rest.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.find(&head).map(|i| l[i + head.len()..].to_string()))
        .collect()
}

#[test]
fn every_main_command_has_two_to_four_examples_whose_flags_exist() {
    for cmd in ["analyze", "timeline", "live", "explain", "compare"] {
        let help = stdout(&[cmd, "--help"]);
        let ex = examples(&help, cmd);
        assert!(
            (2..=4).contains(&ex.len()),
            "{cmd}: {} examples in --help:\n{help}",
            ex.len()
        );
        for line in &ex {
            // The command line ends at a redirection or a pipe.
            let line = line.split(['>', '|']).next().unwrap_or_default();
            for flag in line
                .split_whitespace()
                .filter(|w| w.starts_with('-') && *w != "-")
            {
                let flag = flag.split('=').next().unwrap_or_default();
                let listed = help
                    .lines()
                    .any(|l| l.trim_start().starts_with(flag) || l.contains(&format!(", {flag}")));
                assert!(
                    listed,
                    "{cmd}: example flag {flag} is not an option:\n{help}"
                );
            }
        }
        // -h shows them too, not only --help.
        assert_eq!(examples(&stdout(&[cmd, "-h"]), cmd), ex, "{cmd} -h");
    }
}

#[test]
fn explain_examples_run() {
    let help = stdout(&["explain", "--help"]);
    for line in examples(&help, "explain") {
        // The examples quote one argument with double quotes; no other shell syntax.
        let args: Vec<String> = match line.split_once('"') {
            Some((_, quoted)) => vec![quoted.trim_end_matches('"').to_string()],
            None => line.split_whitespace().map(str::to_string).collect(),
        };
        let mut argv = vec!["explain"];
        argv.extend(args.iter().map(String::as_str));
        let out = stdout(&argv);
        assert!(!out.trim().is_empty(), "explain {args:?} printed nothing");
    }
}

#[test]
fn completions_name_every_command_and_bash_parses_its_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell]);
        for word in [
            "analyze",
            "timeline",
            "live",
            "explain",
            // fish spells long options `-l keylog`.
            "keylog",
            "only-problems",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let dir = tmp("completions");
    let path = dir.join("proxyscope.bash");
    std::fs::write(&path, stdout(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!run(&["completions", "tcsh"]).status.success());
}

#[test]
fn manpage_to_stdout_and_one_page_per_command() {
    let page = stdout(&["manpage"]);
    assert!(
        page.starts_with(".ie") || page.contains("\n.TH proxyscope"),
        "{page}"
    );
    assert!(page.contains("analyze") && page.contains("timeline"));
    let dir = tmp("man");
    stdout(&["manpage", "--dir", dir.to_str().unwrap()]);
    for name in [
        "proxyscope",
        "proxyscope-analyze",
        "proxyscope-live",
        "proxyscope-timeline",
    ] {
        let page = std::fs::read_to_string(dir.join(format!("{name}.1"))).unwrap();
        assert!(page.contains(".TH"), "{name}.1 is not a man page");
    }
    let live = std::fs::read_to_string(dir.join("proxyscope-live.1")).unwrap();
    assert!(live.contains("interface") && live.contains("Examples"));
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("proxyscope-install-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                let (kw, args) = cur.split_once(' ').unwrap_or((&cur, ""));
                out.push((kw.to_string(), args.trim().to_string()));
                cur.clear();
            }
        }
    }
    assert!(cur.is_empty(), "Dockerfile ends in a continuation");
    out
}

#[test]
fn dockerfile_builds_from_repo_files_into_a_slim_runtime_with_libpcap() {
    const KEYWORDS: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    let root = repo();
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let ins = instructions(&text);
    let mut stages: Vec<String> = Vec::new();
    let mut froms = Vec::new();
    for (kw, args) in &ins {
        assert!(KEYWORDS.contains(&kw.as_str()), "unknown instruction {kw}");
        match kw.as_str() {
            "FROM" => {
                froms.push(args.clone());
                if let Some((_, name)) = args.split_once(" AS ") {
                    stages.push(name.trim().to_string());
                }
            }
            "COPY" => {
                let words: Vec<&str> = args.split_whitespace().collect();
                assert!(words.len() >= 2, "COPY {args}");
                if let Some(stage) = words[0].strip_prefix("--from=") {
                    assert!(stages.iter().any(|s| s == stage), "no stage {stage}");
                    continue;
                }
                let (dest, srcs) = words.split_last().unwrap();
                assert!(
                    dest.starts_with('.') || dest.starts_with('/'),
                    "COPY to {dest}"
                );
                for src in srcs {
                    assert!(root.join(src).exists(), "COPY {src}: not in the repository");
                    assert!(
                        !ignored.contains(src),
                        "COPY {src}: excluded by .dockerignore"
                    );
                }
            }
            "ENTRYPOINT" | "CMD" => {
                let v: Vec<String> = serde_json::from_str(args).expect("exec form (JSON)");
                assert!(!v.is_empty());
            }
            _ => {}
        }
    }
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(froms[0].starts_with("rust:") && froms[0].contains("bookworm"));
    assert_eq!(froms[1], "debian:bookworm-slim");
    let runtime: String = text
        .split("FROM debian:bookworm-slim")
        .nth(1)
        .unwrap()
        .into();
    assert!(runtime.contains("libpcap0.8") && !runtime.contains("libpcap-dev"));
    let entry = ins.iter().find(|(k, _)| k == "ENTRYPOINT").unwrap();
    assert_eq!(entry.1, r#"["proxyscope"]"#);
    // Every target the manifest declares must be in the build context.
    // lab/: a workspace member, which cargo reads even to build the analyzer alone.
    for declared in [
        "src/main.rs",
        "src/lib.rs",
        "benches/pipeline.rs",
        "lab/Cargo.toml",
    ] {
        let dir = declared.split('/').next().unwrap();
        assert!(
            ins.iter()
                .any(|(k, a)| k == "COPY" && a.split_whitespace().any(|w| w == dir)),
            "{declared} is not copied into the builder"
        );
    }
}

/// Relative link targets in Markdown text: `](target)`.
fn links(md: &str) -> Vec<String> {
    md.split("](")
        .skip(1)
        .filter_map(|s| s.split_once(')').map(|(t, _)| t.to_string()))
        .filter(|t| !t.contains("://") && !t.starts_with('#') && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn readme_and_docs_point_only_to_files_in_the_repository() {
    let root = repo();
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    assert!(files.len() >= 4, "README and the docs/ pages: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for gone in ["DESIGN.md", "PROTOCOLS.md", "LAB-NOTES"] {
            assert!(!text.contains(gone), "{} mentions {gone}", f.display());
        }
        let base: &Path = f.parent().unwrap();
        for t in links(&text) {
            let path = t.split('#').next().unwrap_or_default();
            assert!(
                base.join(path).exists(),
                "{}: link to {t}, which is not in the repository",
                f.display()
            );
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("cargo install --locked --path ."));
    assert!(readme.contains("--cap-add=NET_RAW --cap-add=NET_ADMIN proxyscope live -i any"));
}
