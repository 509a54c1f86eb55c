//! Hostile input at the command line (issue 12): strings from a capture cannot drive the
//! operator's terminal, timestamps that step back and NaN arguments do not panic, a pipe is read
//! once with the same answers as the file, and outputs never follow a planted link.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::repo;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("proxyscope-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn generate(dir: &Path, attack: &str) -> PathBuf {
    common::attack_gen(dir, attack, None).0
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

#[test]
fn capture_strings_reach_the_text_report_neutralised_and_the_json_exact() {
    let d = scratch("inject");
    let pcap = generate(&d, "inject");
    let text = ok(&bin().arg("analyze").arg(&pcap).output().unwrap());
    for (raw, name) in [
        ('\x1b', "ESC"),
        ('\x07', "BEL"),
        ('\r', "CR"),
        ('\u{202e}', "RLO"),
    ] {
        assert!(
            !text.contains(raw),
            "raw {name} in the text report:\n{text}"
        );
    }
    // Shown escaped, where the operator can read them.
    assert!(
        text.contains(r"8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07evil"),
        "{text}"
    );
    assert!(
        text.contains(r"root\x0d\x1b[31mfake\u{202e}gnp.exe"),
        "{text}"
    );
    // The hostile greeting is still a greeting: the failed login is not hidden.
    assert!(text.contains("handshake_failed"), "{text}");
    // In colour, every escape sequence on the wire out is one of our colours (SGR: ESC [
    // digits and semicolons, then m); the capture's own stay escaped as text.
    let coloured = ok(&bin()
        .args(["analyze", "--all", "--color", "always"])
        .arg(&pcap)
        .output()
        .unwrap());
    assert!(
        coloured.contains("\x1b[0m"),
        "no colour at all:\n{coloured}"
    );
    for (i, _) in coloured.match_indices('\x1b') {
        let seq: String = coloured[i + 1..]
            .chars()
            .take_while(|&c| c != 'm')
            .collect();
        assert!(
            seq.starts_with('[') && seq[1..].chars().all(|c| c.is_ascii_digit() || c == ';'),
            "escape sequence not ours: {seq:?}"
        );
    }
    assert!(
        coloured.contains(r"8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07evil"),
        "{coloured}"
    );
    for raw in ['\x07', '\r', '\u{202e}'] {
        assert!(!coloured.contains(raw), "{coloured}");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(&bin()
        .arg("analyze")
        .arg(&pcap)
        .args(["--format", "json"])
        .output()
        .unwrap()))
    .unwrap();
    let versions: Vec<&str> = json["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["mysql"]["server_version"].as_str())
        .collect();
    assert!(
        versions.contains(&"8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07evil"),
        "JSON keeps the exact string: {versions:?}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_clock_that_steps_back_gives_a_whole_perfetto_trace() {
    let d = scratch("backwards");
    let pcap = generate(&d, "backwards");
    let out = d.join("trace.json");
    ok(&bin()
        .args(["timeline", "--format", "perfetto", "-o"])
        .arg(&out)
        .arg(&pcap)
        .output()
        .unwrap());
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("complete JSON");
    let events = trace["traceEvents"].as_array().unwrap();
    assert!(events
        .iter()
        .all(|e| e["dur"].as_f64().is_none_or(|d| d >= 0.0)));
    assert!(events.len() > 10);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn nan_negative_and_out_of_range_arguments_are_refused_not_panicked_on() {
    for args in [
        &["live", "-i", "lo", "--duration", "NaN"][..],
        &["live", "-i", "lo", "--idle-timeout=-1"],
        &["analyze", "x.pcap", "--idle-timeout", "inf"],
        &["timeline", "x.pcap", "--format", "csv", "--since", "nan"],
        &["analyze", "x.pcap", "--events", "99999999999"],
    ] {
        let out = bin().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // A usage error: 1 (2 is a capture that stopped early).
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("finite number")
                || err.contains("not a number")
                || err.contains("more than 65536"),
            "{err}"
        );
    }
}

#[test]
fn a_pipe_is_read_once_with_the_same_answers_as_the_file() {
    let d = scratch("pipe");
    let pcap = generate(&d, "pairing");
    let from_file = ok(&bin()
        .arg("analyze")
        .arg(&pcap)
        .args(["--format", "json", "-q"])
        .output()
        .unwrap());
    let mut child = bin()
        .args(["analyze", "/dev/stdin", "--format", "json", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&pcap).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let from_pipe = ok(&out);
    let norm = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        v["summary"]["files"][0]["path"] = serde_json::Value::Null;
        v
    };
    let (a, b) = (norm(&from_file), norm(&from_pipe));
    assert_eq!(
        a["summary"]["proxies"].as_array().unwrap().len(),
        1,
        "the proxy is found"
    );
    assert_eq!(a, b, "a pipe and the file give the same report");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn outputs_replace_a_planted_link_and_never_write_through_it() {
    let d = scratch("links");
    let target = d.join("precious");
    std::fs::write(&target, b"keep").unwrap();
    let out = d.join("trace.json");
    std::os::unix::fs::symlink(&target, &out).unwrap();
    let pcap = repo().join("captures/lab/dirty-ssl.pcap.gz");
    ok(&bin()
        .args(["timeline", "--format", "jsonl", "-o"])
        .arg(&out)
        .arg(&pcap)
        .output()
        .unwrap());
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert!(!std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_symlink());
    // Incident pcaps: a link planted at the first incident's name.
    let dir = d.join("incidents");
    std::fs::create_dir_all(&dir).unwrap();
    let planted = dir.join("incident-001-proxysql-dirty-ssl-error-queue.pcap");
    std::os::unix::fs::symlink(&target, &planted).unwrap();
    let out = bin()
        .arg("analyze")
        .arg(&pcap)
        .arg("--write-incident")
        .arg(&dir)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    let meta = std::fs::symlink_metadata(&planted).unwrap();
    assert!(
        meta.is_file() && meta.len() > 24,
        "the incident pcap replaced the link"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
