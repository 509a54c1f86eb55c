//! Golden text reports: the whole `analyze` output on real captures, reviewed by hand and kept in
//! `tests/golden/`. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them; review the diff.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Every connection (`--all`), times in UTC, at the width a pipe gets (100 columns).
fn check(rel: &str) {
    check_as(rel, &["--all", "--utc"], None);
}

/// The report of `rel` with `args`, compared with `tests/golden/{golden}` (default: the
/// capture's file name with `.txt`).
fn check_as(rel: &str, args: &[&str], golden: Option<&str>) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .current_dir(repo())
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .args(["analyze", "-q"])
        .args(args)
        .arg(rel)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{rel}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).expect("utf-8 report");
    let name = Path::new(rel)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let golden = repo()
        .join("tests/golden")
        .join(golden.map_or(format!("{name}.txt"), str::to_string));
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&golden, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
        panic!(
            "no {}: run with UPDATE_GOLDEN=1 and review",
            golden.display()
        )
    });
    if got != want {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "{rel}: report differs from {} ({} vs {} lines):\n{}",
            golden.display(),
            want.lines().count(),
            got.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn bundled_scenarios() {
    for f in captures_in(&repo().join("captures")) {
        check(&format!(
            "captures/{}",
            f.file_name().unwrap().to_string_lossy()
        ));
    }
}

#[test]
fn lab_captures() {
    for f in captures_in(&repo().join("captures/lab")) {
        check(&format!(
            "captures/lab/{}",
            f.file_name().unwrap().to_string_lossy()
        ));
    }
}

#[test]
fn public_captures() {
    if shared_captures().is_none() {
        return;
    }
    for name in [
        "mysql-app-mixed.pcap",
        "mysql-connect-refused.pcap",
        "mysql-prepared-and-aborts.pcap",
        "mysql-ssl-tls10.pcapng",
        "mysql8-change-user.pcap",
        "mysql8-query-attributes.pcap",
        "starttls-irc-linux-sll.pcap",
        "tcp-bare-fin-then-rst.pcap",
        "tcp-rst-with-data.pcap",
        "tcp-syn-then-rst.pcap",
        "tls13-linux-sll2.pcap",
        "vlan-same-tuple-three-times.pcap",
    ] {
        check(&format!("../shared/captures/{name}"));
    }
}

/// The first thing an operator sees: the #4500 lab capture, decrypted, as `scripts/run.sh`
/// prints it to a 100-column terminal (no --all: clean closes only counted).
#[test]
fn the_4500_report_at_100_columns() {
    check_as(
        "captures/lab/dirty-ssl.pcap.gz",
        &[
            "--utc",
            "--width",
            "100",
            "--keylog",
            "captures/lab/dirty-ssl.keylog",
        ],
        Some("report-4500-100cols.txt"),
    );
    let text = std::fs::read_to_string(repo().join("tests/golden/report-4500-100cols.txt"))
        .expect("golden");
    assert!(
        text.lines().all(|l| l.chars().count() <= 100),
        "a line is wider than 100 columns"
    );
}

/// The real ProxySQL 2.6.3 capture with a plaintext frontend (`../shared/captures/proxysql/`),
/// as it reads at 100 columns.
#[test]
fn the_real_plaintext_4500_capture_at_100_columns() {
    if shared_captures().is_none() {
        return;
    }
    check_as(
        "../shared/captures/proxysql/bug_plain_stream/bug_plain_stream.pcap",
        &["--utc", "--width", "100"],
        Some("report-bug_plain_stream-100cols.txt"),
    );
}
