//! The proxy lab's captures against the lab's own ground truth: every close the lab injected
//! (`--fault dirty-ssl`, the sysown/proxysql#4500 pattern) must be visible in the capture of both
//! legs, attributed to the proxy, as a FIN, at the recorded time ±1 ms.
//!
//! (a) always: the committed `captures/lab/dirty-ssl.pcap.gz` with its `dirty-ssl.truth.jsonl`;
//! (b) with `PROXYSCOPE_LAB=1` (scripts/test.sh sets it): `scripts/lab-scenario.sh dirty-ssl` run
//! afresh (MariaDB, the lab, real MySQLdb clients, tcpdump) into a temp dir.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use proxyscope::model::{Role, Summary};
use serde_json::Value;

/// Allowed distance between a ground-truth timestamp and the packet that shows it.
const TOLERANCE_NS: i64 = 1_000_000;

fn truth(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Checks one close: the connection (found by `find`) was closed first by `role` with a FIN at
/// `ts` ± 1 ms. Returns a description of what is wrong, if anything.
fn check_close(
    sums: &[Summary],
    what: &str,
    find: &dyn Fn(&Summary) -> bool,
    role: Role,
    ts: i64,
) -> Option<String> {
    let matching: Vec<&Summary> = sums.iter().filter(|s| find(s)).collect();
    let [s] = matching.as_slice() else {
        return Some(format!(
            "{what}: {} connections match, expected 1",
            matching.len()
        ));
    };
    let Some(at) = s.close.at else {
        return Some(format!("{what}: no FIN or RST in the capture"));
    };
    let fin_first = s.close.first_fin.is_some_and(|f| f.at.frame == at.at.frame);
    let dt = at.at.ts.0 - ts;
    eprintln!(
        "{what}: {} -> {} closed first by {} ({}) at frame {}, {:+.3} ms from the ground truth, how {}",
        s.client.port,
        s.server.port,
        at.by.as_str(),
        if fin_first { "FIN" } else { "RST" },
        at.at.frame,
        dt as f64 / 1e6,
        s.close.how.as_str()
    );
    if at.by != role {
        return Some(format!(
            "{what}: closed first by {}, expected {}",
            at.by.as_str(),
            role.as_str()
        ));
    }
    if !fin_first {
        return Some(format!("{what}: first close is a RST, expected a FIN"));
    }
    if dt.abs() > TOLERANCE_NS {
        return Some(format!(
            "{what}: FIN {:+.3} ms from the ground truth",
            dt as f64 / 1e6
        ));
    }
    None
}

/// Every injected close in `truth_file` against `capture`; returns the number of incidents.
fn check(capture: &Path, truth_file: &Path) -> usize {
    let (sums, _) = analyze_file(capture);
    let records = truth(truth_file);
    let started = records
        .iter()
        .find(|r| r["event"] == "lab_started")
        .expect("a lab_started record");
    let front_port = port_of(started["listen"].as_str().unwrap());
    let back_port = port_of(started["backend"].as_str().unwrap());
    let mut bad = Vec::new();
    let mut incidents = 0;
    for r in &records {
        let faulty = r["fault"] == "dirty-ssl";
        let ts = r["ts_ns"].as_i64().unwrap();
        match r["event"].as_str().unwrap() {
            "backend_closed" if faulty => {
                incidents += 1;
                let local = r["local_port"].as_u64().unwrap() as u16;
                let what = format!("backend {} (thread {})", r["backend"], r["thread_id"]);
                let find = |s: &Summary| s.client.port == local && s.server.port == back_port;
                bad.extend(check_close(&sums, &what, &find, Role::Client, ts));
            }
            "frontend_closed" if faulty => {
                let client = port_of(r["client"].as_str().unwrap());
                let what = format!("frontend {}", r["frontend"]);
                let find = |s: &Summary| s.client.port == client && s.server.port == front_port;
                bad.extend(check_close(&sums, &what, &find, Role::Server, ts));
            }
            "frontend_tls_aborted" => {
                // The trigger: the client went away first.
                let client = port_of(r["client"].as_str().unwrap());
                let what = format!("trigger frontend {}", r["frontend"]);
                let find = |s: &Summary| s.client.port == client && s.server.port == front_port;
                match sums.iter().find(|s| find(s)).and_then(|s| s.close.at) {
                    Some(at) if at.by == Role::Client && at.at.ts.0 <= ts => {}
                    other => bad.push(format!(
                        "{what}: first close {other:?}, expected the client's before {ts}"
                    )),
                }
            }
            _ => {}
        }
    }
    let faults = records.iter().filter(|r| r["event"] == "fault").count();
    assert_eq!(
        faults, incidents,
        "every fault record has its backend close"
    );
    assert!(bad.is_empty(), "{}:\n{}", capture.display(), bad.join("\n"));
    incidents
}

#[test]
fn committed_dirty_ssl_capture_matches_its_ground_truth() {
    let dir = repo().join("captures/lab");
    let n = check(
        &dir.join("dirty-ssl.pcap.gz"),
        &dir.join("dirty-ssl.truth.jsonl"),
    );
    assert!(n >= 2, "only {n} #4500 incidents in the committed capture");
}

#[test]
fn fresh_dirty_ssl_scenario_matches_its_ground_truth() {
    if std::env::var("PROXYSCOPE_LAB").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: set PROXYSCOPE_LAB=1 to run the proxy lab scenario (scripts/test.sh does)"
        );
        return;
    }
    let out = std::env::temp_dir().join(format!("proxyscope-lab-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(repo().join("scripts/lab-scenario.sh"))
        .arg("dirty-ssl")
        .arg(&out)
        .env("PROXYSCOPE_BIN", env!("CARGO_BIN_EXE_proxyscope"))
        .status()
        .expect("run scripts/lab-scenario.sh");
    assert!(status.success(), "scripts/lab-scenario.sh failed: {status}");
    let n = check(
        &out.join("dirty-ssl.pcap"),
        &out.join("dirty-ssl.truth.jsonl"),
    );
    let clients = std::fs::read_to_string(out.join("clients.txt")).unwrap();
    eprintln!("{n} incidents; clients saw:\n{clients}");
    assert!(n >= 1, "no #4500 incident in a fresh run");
    assert!(
        clients.contains("2026"),
        "no client saw the TLS error of a frontend closed under it"
    );
    let _ = std::fs::remove_dir_all(&out);
}
