//! The bundled scenario captures (real MariaDB, real clients, tcpdump) against their ground
//! truth in `captures/expected.tsv`; and, with `PROXYSCOPE_LAB=1` (scripts/test.sh sets it),
//! the same scenarios captured afresh from real software in a temp dir.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use proxyscope::event::Kind;
use proxyscope::model::{CloseKind, Role};

struct Row {
    file: String,
    conn: usize,
    closer: String,
    first: String,
    peer_fin: bool,
    note: String,
}

fn expected() -> Vec<Row> {
    let text = std::fs::read_to_string(repo().join("captures/expected.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                file: f[0].into(),
                conn: f[1].parse().unwrap(),
                closer: f[2].into(),
                first: f[3].into(),
                peer_fin: f[4] == "yes",
                note: f.get(5).unwrap_or(&"").to_string(),
            }
        })
        .collect()
}

fn check_dir(dir: &Path) -> Vec<String> {
    let rows = expected();
    let mut bad = Vec::new();
    let mut files: Vec<&str> = rows.iter().map(|r| r.file.as_str()).collect();
    files.dedup();
    for file in files {
        let (sums, _) = analyze_file(&dir.join(file));
        let want: Vec<&Row> = rows.iter().filter(|r| r.file == file).collect();
        if sums.len() != want.len() {
            bad.push(format!(
                "{file}: {} connections, expected {}",
                sums.len(),
                want.len()
            ));
            continue;
        }
        for r in want {
            let s = &sums[r.conn];
            let closer = s.close.closed_by.map(Role::as_str).unwrap_or("none");
            let first = match (s.close.at, s.close.first_rst) {
                (Some(at), Some(rst)) if at.at.frame == rst.at.frame => "rst",
                (Some(_), _) => "fin",
                (None, _) => "none",
            };
            let ok_closer = if r.closer == "either" {
                s.close.how == CloseKind::Fin && closer != "none"
            } else {
                closer == r.closer
            };
            let ok = ok_closer && first == r.first && s.close.peer_fin.is_some() == r.peer_fin;
            eprintln!(
                "{file} #{}: closer {closer}, first {first}, peer FIN {}, how {} — expected {} {} {} ({}): {}",
                r.conn,
                s.close.peer_fin.is_some(),
                s.close.how.as_str(),
                r.closer,
                r.first,
                r.peer_fin,
                r.note,
                if ok { "ok" } else { "WRONG" }
            );
            if !ok {
                bad.push(format!(
                    "{file} #{}: got closer {closer} first {first} how {}",
                    r.conn,
                    s.close.how.as_str()
                ));
            }
        }
    }
    bad
}

/// MySQL and TLS facts per connection against `captures/expected-mysql.tsv` (`-`: none).
fn check_mysql(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("captures/expected-mysql.tsv")).unwrap();
    let mut bad = Vec::new();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let want = |k: &str| f[header.iter().position(|h| *h == k).unwrap()];
        let (sums, _) = analyze_file(&dir.join(want("file")));
        let s = &sums[want("conn").parse::<usize>().unwrap()];
        let m = s.mysql.clone().unwrap_or_default();
        let t = s.tls.as_ref();
        let events = |kind: &dyn Fn(&Kind) -> Option<String>| {
            let v: Vec<String> = s
                .events
                .iter()
                .filter_map(|e| kind(&e.event.kind))
                .collect();
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        let got = [
            (
                "login",
                match m.login_ok {
                    Some(true) => "ok",
                    Some(false) => "failed",
                    None => "-",
                }
                .to_string(),
            ),
            ("ssl_request", yes(m.ssl_request)),
            (
                "tls_version",
                t.and_then(|t| t.version.clone()).unwrap_or("-".into()),
            ),
            (
                "cipher",
                t.and_then(|t| t.cipher_name.clone()).unwrap_or("-".into()),
            ),
            (
                "commands",
                events(&|k| match k {
                    Kind::Command { cmd, .. } => Some(cmd.name().to_string()),
                    _ => None,
                }),
            ),
            (
                "errors",
                events(&|k| match k {
                    Kind::Err { code, .. } => Some(code.to_string()),
                    _ => None,
                }),
            ),
            (
                "rows",
                events(&|k| match k {
                    Kind::ResultSet { rows, .. } => Some(rows.to_string()),
                    _ => None,
                }),
            ),
            (
                "in_flight",
                m.in_flight
                    .as_ref()
                    .map_or("-".to_string(), |f| f.command.to_string()),
            ),
            (
                "inferred",
                events(&|k| match k {
                    Kind::InferredClose { what, .. } => Some(what.to_string()),
                    _ => None,
                }),
            ),
            (
                "tls_offered",
                events(&|k| match k {
                    Kind::Greeting { capabilities, .. } => Some(yes(
                        capabilities.contains(proxyscope::event::CapabilityFlags::CLIENT_SSL)
                    )),
                    _ => None,
                }),
            ),
        ];
        for (k, v) in got {
            if v != want(k) {
                bad.push(format!(
                    "{} #{}: {k} = {v:?}, expected {:?}",
                    want("file"),
                    want("conn"),
                    want(k)
                ));
            }
        }
    }
    bad
}

/// Verdicts per connection against `captures/expected-verdicts.tsv`.
fn check_verdicts(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("captures/expected-verdicts.tsv")).unwrap();
    let mut bad = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let (sums, _) = analyze_file(&dir.join(f[0]));
        let s = &sums[f[1].parse::<usize>().unwrap()];
        let v = s.verdict.as_ref().expect("every connection has a verdict");
        let state = serde_json::to_value(v.state).unwrap();
        let got = (
            v.label.as_str(),
            v.closed_by.map(Role::as_str).unwrap_or("none"),
            state.as_str().unwrap_or(""),
        );
        eprintln!(
            "{} #{}: {:?} (expected {} {} {})",
            f[0], f[1], got, f[2], f[3], f[4]
        );
        if got != (f[2], f[3], f[4]) {
            bad.push(format!(
                "{} #{}: verdict {:?}, expected {} {} {}",
                f[0], f[1], got, f[2], f[3], f[4]
            ));
        }
    }
    bad
}

#[test]
fn committed_captures_match_ground_truth() {
    let mut bad = check_dir(&repo().join("captures"));
    bad.extend(check_mysql(&repo().join("captures")));
    bad.extend(check_verdicts(&repo().join("captures")));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn freshly_captured_scenarios_match_ground_truth() {
    if std::env::var("PROXYSCOPE_LAB").as_deref() != Ok("1") {
        eprintln!("SKIPPED: set PROXYSCOPE_LAB=1 (scripts/test.sh does) to capture the scenarios afresh from MariaDB");
        return;
    }
    let dir = std::env::temp_dir().join(format!("proxyscope-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("bash")
        .arg(repo().join("scripts/make-captures.sh"))
        .arg(&dir)
        .output()
        .expect("make-captures.sh runs");
    assert!(
        out.status.success(),
        "make-captures.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bad = check_dir(&dir);
    bad.extend(check_mysql(&dir));
    bad.extend(check_verdicts(&dir));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
