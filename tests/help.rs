//! Every command's `--help`, as a golden file reviewed by hand (`tests/golden/help/`), so that
//! a change of wording, a flag or a default shows up in review; and no help line is wider than
//! the 100 columns a pipe gets. `UPDATE_GOLDEN=1 cargo test --test help` rewrites them.

mod common;

use std::process::Command;

use common::*;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .env_remove("COLUMNS")
        .args(args)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The commands `proxyscope help` lists.
fn commands() -> Vec<String> {
    let top = help(&["--help"]);
    top.split_once("Commands:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.starts_with("  "))
        // A wrapped description continues further in.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_commands_help_is_reviewed_and_fits_100_columns() {
    let cmds = commands();
    assert!(
        ["analyze", "timeline", "live", "explain", "interfaces"]
            .iter()
            .all(|c| cmds.iter().any(|x| x == c)),
        "{cmds:?}"
    );
    let dir = repo().join("tests/golden/help");
    let update = std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1");
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut pages = vec![("proxyscope".to_string(), help(&["--help"]))];
    for c in cmds.iter().filter(|c| *c != "help") {
        pages.push((c.clone(), help(&["help", c])));
    }
    for (name, text) in &pages {
        for l in text.lines() {
            assert!(l.chars().count() <= 100, "{name}: {l:?}");
        }
        let golden = dir.join(format!("{name}.txt"));
        if update {
            std::fs::write(&golden, text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("no {}: UPDATE_GOLDEN=1 and review", golden.display()));
        let first = text
            .lines()
            .zip(want.lines())
            .find(|(a, b)| a != b)
            .map(|(got, want)| format!("- {want}\n+ {got}"));
        assert!(
            text == &want,
            "{name} --help differs from {} (UPDATE_GOLDEN=1 and review):\n{}",
            golden.display(),
            first.unwrap_or_else(|| "(a line added or removed at the end)".into())
        );
    }
    // `CMD --help` and `help CMD` are the same page.
    for c in ["analyze", "timeline", "explain"] {
        assert_eq!(help(&[c, "--help"]), help(&["help", c]), "{c}");
    }
}
