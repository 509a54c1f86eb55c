//! Golden text reports: the whole `analyze` output on real captures, reviewed by hand and kept in
//! `tests/golden/`. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them; review the diff.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn check(rel: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .current_dir(repo())
        .args(["analyze", "-q", rel])
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
    let golden = repo().join("tests/golden").join(format!("{name}.txt"));
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
