//! Joining with other tools: Zeek's `conn_state`/`history` and the Community ID, checked
//! against Zeek's own published baselines and tshark's `communityid` dissector on real
//! captures.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

/// Zeek's results for captures in `../shared/captures` that come from Zeek's test traces:
/// (capture, expected history, expected conn_state, where Zeek publishes it).
const ZEEK_BASELINES: &[(&str, Option<&str>, &str, &str)] = &[
    (
        "tcp-syn-then-rst.pcap",
        Some("SR"),
        "RSTOS0",
        "testing/btest/Baseline/scripts.base.protocols.conn.conn_state-RST-behavior/out",
    ),
    (
        "starttls-irc-linux-sll.pcap",
        Some("ShADadFRf"),
        "SF",
        "testing/btest/Baseline/scripts.base.protocols.irc.starttls/conn.log",
    ),
    // The baseline prints the endpoint records: orig state=5 (CLOSED), resp state=6 (RESET),
    // which conn_state() in base/protocols/conn/main.zeek maps to RSTR.
    (
        "tcp-bare-fin-then-rst.pcap",
        None,
        "RSTR",
        "testing/btest/Baseline/core.tcp.fin-retransmit/out",
    ),
];

#[test]
fn conn_state_and_history_match_zeek_baselines() {
    let Some(dir) = common::shared_captures() else {
        return;
    };
    for &(file, history, state, source) in ZEEK_BASELINES {
        let (conns, _) = common::analyze_file(&dir.join(file));
        assert_eq!(conns.len(), 1, "{file}: Zeek logs one connection");
        let c = &conns[0];
        assert_eq!(c.conn_state, state, "{file} vs zeek {source}");
        if let Some(h) = history {
            assert_eq!(c.history, h, "{file} vs zeek {source}");
        }
        assert_eq!(c.history_orig.as_str(), "client", "{file}");
    }
}

/// Every TCP Community ID tshark computes for a capture, and ours, must be the same set.
#[test]
fn community_id_matches_tshark() {
    let Some(dir) = common::shared_captures() else {
        return;
    };
    if !common::have("tshark") {
        eprintln!("SKIPPED: tshark absent");
        return;
    }
    let mut compared = 0;
    for path in common::captures_in(&dir) {
        let out = Command::new("tshark")
            .args(["-n", "--enable-protocol", "communityid", "-Y", "tcp"])
            .args(["-T", "fields", "-e", "communityid", "-r"])
            .arg(&path)
            .output()
            .expect("tshark");
        let theirs: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if theirs.is_empty() {
            continue;
        }
        let (conns, _) = common::analyze_file(&path);
        let ours: BTreeSet<String> = conns.iter().map(|c| c.community_id.clone()).collect();
        assert_eq!(ours, theirs, "{}", path.display());
        compared += conns.len();
    }
    assert!(compared > 0, "no capture compared");
    eprintln!("community_id: {compared} connections agree with tshark");
}

/// `analyze --format json`: incidents are numbered and an unreadable file is listed in
/// `summary.files` with its reason (the exit code stays 1).
#[test]
fn json_numbers_incidents_and_lists_unreadable_files() {
    let Some(dir) = common::shared_captures() else {
        return;
    };
    let cap = dir.join("proxysql/bug_plain_stream/bug_plain_stream.pcap");
    let missing = dir.join("no-such-capture.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["analyze", "--format", "json"])
        .arg(&missing)
        .arg(&cap)
        .output()
        .expect("run proxyscope");
    assert_eq!(out.status.code(), Some(1), "an unreadable input exits 1");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let incidents = v["summary"]["incidents"].as_array().expect("incidents");
    assert!(!incidents.is_empty(), "the bug capture has incidents");
    for (n, inc) in incidents.iter().enumerate() {
        assert_eq!(inc["id"].as_u64(), Some(n as u64 + 1));
    }
    let files = v["summary"]["files"].as_array().expect("files");
    let bad: Vec<_> = files.iter().filter(|f| f["error"].is_string()).collect();
    assert_eq!(bad.len(), 1, "{files:?}");
    assert_eq!(bad[0]["path"], missing.display().to_string());
    assert!(files.iter().any(|f| f["frames"].as_u64() > Some(0)));
    for c in v["connections"].as_array().expect("connections") {
        let client = c["client"].as_str().unwrap_or("");
        let port = c["client_port"].as_u64().unwrap_or(0);
        assert!(client.ends_with(&format!(":{port}")), "{client} / {port}");
        assert!(client.contains(c["client_ip"].as_str().unwrap_or("-")));
        assert!(c["community_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("1:")));
        assert!(!c["conn_state"].as_str().unwrap_or("").is_empty());
    }
}
