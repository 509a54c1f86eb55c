//! `analyze` and `timeline` filters end to end on real ProxySQL captures: `--since/--until` in
//! RFC 3339 select exactly what the equivalent seconds select, `--leg`/`--conn` keep what they
//! name, `--only-problems` applies to `--format json` (the summary still counts everything and
//! says what was left out), `analyze --format jsonl` is `timeline --format jsonl`, and bad
//! filter arguments are usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
}

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/captures/proxysql")
        .join(name)
        .join(format!("{name}.pcap"))
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(file: &Path, extra: &[&str]) -> Value {
    let mut a = vec!["analyze", "-q", "--format", "json"];
    a.extend_from_slice(extra);
    a.push(file.to_str().unwrap());
    serde_json::from_slice(&run(&a).stdout).unwrap()
}

fn conns(v: &Value) -> Vec<Value> {
    v["connections"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u64> {
    conns(v).iter().map(|c| c["id"].as_u64().unwrap()).collect()
}

fn jsonl(cmd: &str, file: &Path, extra: &[&str]) -> Vec<Value> {
    let mut a = vec![cmd, "-q", "--format", "jsonl"];
    a.extend_from_slice(extra);
    a.push(file.to_str().unwrap());
    String::from_utf8(run(&a).stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A connection's start in the middle of the capture: (RFC 3339, the same with a +01:00
/// offset, seconds from the capture's start).
fn middle_start(all: &Value) -> (String, String, f64) {
    let c = conns(all);
    let mid = &c[c.len() / 2]["start"];
    let ts = mid["ts"].as_str().unwrap().to_string();
    // 2026-11-24T08:09:25.781044000Z → 2026-11-24T09:09:25.781044000+01:00
    let hour: u32 = ts[11..13].parse().unwrap();
    let shifted = format!(
        "{}{:02}{}+01:00",
        &ts[..11],
        hour + 1,
        &ts[13..ts.len() - 1]
    );
    (ts, shifted, mid["t"].as_f64().unwrap())
}

#[test]
fn rfc3339_bounds_select_what_seconds_select() {
    let f = capture("bug_plain_stream");
    let all = json(&f, &[]);
    let (ts, shifted, t) = middle_start(&all);
    let secs = format!("{t}");
    for flag in ["--since", "--until"] {
        let by_secs = json(&f, &[flag, &secs]);
        let by_ts = json(&f, &[flag, &ts]);
        let by_offset = json(&f, &[flag, &shifted]);
        assert_eq!(ids(&by_secs), ids(&by_ts), "{flag} {ts}");
        assert_eq!(ids(&by_secs), ids(&by_offset), "{flag} {shifted}");
        // Independently: the connections whose life overlaps the range, from the unfiltered run.
        let want: Vec<u64> = conns(&all)
            .iter()
            .filter(|c| {
                let (a, b) = (
                    c["start"]["t"].as_f64().unwrap(),
                    c["end"]["t"].as_f64().unwrap(),
                );
                if flag == "--since" {
                    b >= t
                } else {
                    a <= t
                }
            })
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids(&by_ts), want, "{flag}");
        assert!(!want.is_empty() && want.len() < conns(&all).len(), "{flag}");
        // The summary still counts every connection, and says what was left out.
        assert_eq!(by_ts["summary"]["verdicts"], all["summary"]["verdicts"]);
        let note = &by_ts["summary"]["filtered"];
        assert_eq!(note["kept"].as_u64(), Some(want.len() as u64));
        assert_eq!(
            note["left_out"].as_u64(),
            Some((conns(&all).len() - want.len()) as u64)
        );
    }
    // The unfiltered document has no `filtered` note.
    assert!(all["summary"].get("filtered").is_none());
    // Relative forms: +Ns is N seconds from the start; +Nm is 60 N seconds.
    assert_eq!(
        ids(&json(&f, &["--since", "+5s"])),
        ids(&json(&f, &["--since", "5"]))
    );
    assert_eq!(
        ids(&json(&f, &["--until", "+0.1m"])),
        ids(&json(&f, &["--until", "6"]))
    );
    // timeline: the same records with either form, all of them within the range.
    let a = jsonl("timeline", &f, &["--since", &ts]);
    let b = jsonl("timeline", &f, &["--since", &secs]);
    assert_eq!(a, b);
    assert!(a.len() > 10);
    // (The first line names the schema; incidents start at their first step.)
    for r in a
        .iter()
        .filter(|r| r.get("schema").is_none() && r["kind"] != "verdict.incident")
    {
        assert!(r["t"].as_f64().unwrap() >= t, "{r}");
    }
}

#[test]
fn leg_conn_and_only_problems_filter_the_json_report() {
    let f = capture("bug_plain_stream");
    let all = json(&f, &[]);
    let backend = json(&f, &["--leg", "backend"]);
    let want: Vec<u64> = conns(&all)
        .iter()
        .filter(|c| c["leg"] == "backend")
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert!(!want.is_empty() && want.len() < conns(&all).len());
    assert_eq!(ids(&backend), want);
    assert_eq!(ids(&json(&f, &["--conn", "3", "--conn", "5"])), vec![3, 5]);
    // The text report says how many it left out.
    let text = run(&["analyze", "-q", "--leg", "backend", f.to_str().unwrap()]).stdout;
    let line = format!(
        "{} connections left out by --conn/--leg/--since/--until",
        conns(&all).len() - want.len()
    );
    assert!(String::from_utf8(text).unwrap().contains(&line), "{line}");

    // --only-problems: the JSON lists exactly the rows the text report lists.
    let problems = json(&f, &["--only-problems"]);
    let text = run(&["analyze", "-q", "--only-problems", f.to_str().unwrap()]).stdout;
    let text = String::from_utf8(text).unwrap();
    // A row: `id  closed  client -> server  closed by  verdict`.
    let mut text_labels: Vec<String> = text
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|id| id.parse::<u64>().is_ok())
                && l.contains(" -> ")
        })
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    let mut json_labels: Vec<String> = conns(&problems)
        .iter()
        .map(|c| c["verdict"]["label"].as_str().unwrap().to_string())
        .collect();
    text_labels.sort();
    json_labels.sort();
    assert!(!json_labels.is_empty());
    assert_eq!(json_labels, text_labels);
    assert!(conns(&problems).len() < conns(&all).len());
    assert!(!json_labels.iter().any(|l| l == "clean_quit"));
    assert_eq!(problems["summary"]["verdicts"], all["summary"]["verdicts"]);
    assert_eq!(problems["summary"]["filtered"]["only_problems"], true);
}

#[test]
fn analyze_jsonl_is_the_timeline_stream() {
    for name in ["bug_plain_stream", "bug_tls_stream"] {
        let f = capture(name);
        let keys = f.with_file_name("keys.log");
        let k = keys.to_str().unwrap();
        for extra in [
            vec!["--keylog", k],
            vec!["--keylog", k, "--leg", "backend", "--since", "+3s"],
        ] {
            let a = jsonl("analyze", &f, &extra);
            let t = jsonl("timeline", &f, &extra);
            assert!(a.len() > 20, "{name} {extra:?}");
            assert_eq!(a, t, "{name} {extra:?}");
        }
    }
}

#[test]
fn bad_filters_are_usage_errors() {
    let f = capture("bug_plain_stream");
    let f = f.to_str().unwrap();
    for (args, says) in [
        // Seconds before the end are fine (tests/cli_tcpdump.rs); a time before the end in
        // another form is not.
        (
            vec!["analyze", "--since=-2026-11-24T10:20:32Z", f],
            "before the capture's end",
        ),
        (
            vec!["analyze", "--until", "2026-13-01T00:00:00Z", f],
            "RFC 3339",
        ),
        (
            vec!["timeline", "--format", "jsonl", "--since", "soon", f],
            "RFC 3339",
        ),
        (vec!["analyze", "--leg", "sideways", f], "sideways"),
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Frames `tcpdump -r FILE EXPR` keeps (None when tcpdump is not installed).
fn tcpdump_count(file: &Path, expr: &str) -> Option<u64> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(file)
        .arg(expr)
        .output()
        .ok()?;
    assert!(out.status.success(), "tcpdump {expr}: {:?}", out.status);
    Some(out.stdout.iter().filter(|&&b| b == b'\n').count() as u64)
}

#[cfg(feature = "live")]
#[test]
fn capture_filters_keep_the_frames_tcpdump_keeps() {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let files = [
        capture("bug_plain_stream"),
        capture("bug_tls_stream"),
        local.join("encap/vlan-asymmetric.pcap"),
        local.join("encap/pppoe.pcap"),
        local.join("any-sll2.pcap"),
        local.join("server-kill-query-plain.pcap"),
    ];
    let exprs = [
        "tcp port 3306",
        "tcp[tcpflags] & (tcp-fin|tcp-rst) != 0 or port 6033",
        "greater 200",
    ];
    let mut compared = 0;
    for f in &files {
        for e in exprs {
            let v = json(f, &["-f", e]);
            let c = &v["summary"]["capture_filter"];
            let kept = c["kept"].as_u64().unwrap();
            assert_eq!(c["expression"], e);
            assert_eq!(v["summary"]["frames"].as_u64(), Some(kept), "{f:?} {e}");
            let total: u64 = v["summary"]["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["frames"].as_u64().unwrap())
                .sum();
            assert_eq!(kept + c["left_out"].as_u64().unwrap(), total, "{f:?} {e}");
            if let Some(want) = tcpdump_count(f, e) {
                assert_eq!(kept, want, "{f:?} {e}: tcpdump keeps {want}");
                compared += 1;
            }
        }
    }
    eprintln!("{compared} filter counts compared with tcpdump");

    // On a two-leg capture, `tcp port 3306` leaves exactly the backend connections, with the
    // packets, bytes and close the unfiltered run saw on them (passing frames are not altered).
    let f = capture("bug_plain_stream");
    let all = json(&f, &[]);
    let back = json(&f, &["-f", "tcp port 3306"]);
    let key = |c: &Value| {
        (
            c["client"].to_string(),
            c["packets"].to_string(),
            c["bytes"].to_string(),
            // Times from the capture's start move (it is the first kept frame); frame numbers
            // and timestamps do not.
            [
                &c["close"]["how"],
                &c["close"]["at"]["frame"],
                &c["close"]["at"]["ts"],
            ]
            .map(|v| v.to_string()),
        )
    };
    let want: Vec<_> = conns(&all)
        .iter()
        .filter(|c| c["server_port"] == 3306)
        .map(key)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(conns(&back).iter().map(key).collect::<Vec<_>>(), want);
    // timeline takes the same filter.
    let t = jsonl("timeline", &f, &["-f", "tcp port 3306"]);
    assert!(t.len() > 10);
    assert!(t
        .iter()
        .filter(|r| r.get("schema").is_none() && r["kind"] != "verdict.incident")
        .all(|r| r["leg"] != "frontend"));

    // A filter libpcap refuses is a usage error, before any output.
    let out = bin()
        .args(["analyze", "-q", "-f", "tcp port", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("syntax error"));
}
