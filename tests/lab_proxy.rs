//! The proxy lab's captures against the lab's own ground truth: every close of a connection the
//! lab faulted (`--fault dirty-ssl`, `plaintext-quit`, `err-then-close`, `drop-burst`,
//! `wait-timeout`, `max-age`, `connect-timeout`) must be visible in the capture of both legs and
//! in the capture of its own leg, closed first by the recorded side, with a FIN or a RST as
//! recorded, at the recorded time ±1 ms (server-side closes the lab only finds out about later,
//! wait-timeout's, within the recorded window).
//!
//! (a) always: every committed `captures/lab/SCENARIO.pcap.gz` with its `SCENARIO.truth.jsonl`;
//! (b) with `PROXYSCOPE_LAB=1` (scripts/test.sh sets it): `scripts/lab-scenario.sh` runs
//! dirty-ssl and wait-timeout afresh (MariaDB, the lab, real clients) into a temp dir, captured by
//! `proxyscope live -i lo --write` (`LAB_CAPTURE=live`): the written file must hold every faulted
//! close as (a) does, the verdicts live streamed must match the ground truth and equal those of
//! `proxyscope analyze` on the written file, and libpcap must report no drops.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use proxyscope::event::Kind;
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

/// The lab's frontend and backend ports, from its `lab_started` record.
fn lab_ports(records: &[Value]) -> (u16, u16) {
    let started = records
        .iter()
        .find(|r| r["event"] == "lab_started")
        .expect("a lab_started record");
    (
        port_of(started["listen"].as_str().unwrap()),
        port_of(started["backend"].as_str().unwrap()),
    )
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Checks one close: the connection (found by `find`) was closed first by `role` with a FIN
/// (`rst`: a RST) within `window` (ns, inclusive, widened by the tolerance). Returns a
/// description of what is wrong, if anything.
fn check_close(
    sums: &[Summary],
    what: &str,
    find: &dyn Fn(&Summary) -> bool,
    role: Role,
    rst: bool,
    window: (i64, i64),
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
    let (lo, hi) = window;
    let dt = if at.at.ts.0 < lo {
        at.at.ts.0 - lo
    } else if at.at.ts.0 > hi {
        at.at.ts.0 - hi
    } else {
        0
    };
    eprintln!(
        "{what}: {} -> {} closed first by {} ({}) at frame {}, {:+.3} ms outside the ground truth, how {}",
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
    if fin_first == rst {
        return Some(format!(
            "{what}: first close is a {}, expected a {}",
            if fin_first { "FIN" } else { "RST" },
            if rst { "RST" } else { "FIN" }
        ));
    }
    if dt.abs() > TOLERANCE_NS {
        return Some(format!(
            "{what}: close {:+.3} ms outside the ground truth",
            dt as f64 / 1e6
        ));
    }
    None
}

/// Picks one connection out of a capture's summaries.
type Finder = Box<dyn Fn(&Summary) -> bool>;

/// The captures of one scenario: both legs, and each leg alone when present.
struct Captures {
    both: Vec<Summary>,
    front: Option<Vec<Summary>>,
    back: Option<Vec<Summary>>,
}

fn load(dir: &Path, scenario: &str, ext: &str) -> Captures {
    let leg = |name: &str| {
        let p = dir.join(format!("{scenario}.{name}.{ext}"));
        p.exists().then(|| analyze_file(&p).0)
    };
    Captures {
        both: analyze_file(&dir.join(format!("{scenario}.{ext}"))).0,
        front: leg("front"),
        back: leg("back"),
    }
}

/// Every faulted close of `scenario` in `dir` against its captures; returns the number of
/// faulted closes checked.
fn check(dir: &Path, scenario: &str, ext: &str) -> usize {
    let caps = load(dir, scenario, ext);
    let records = truth(&dir.join(format!("{scenario}.truth.jsonl")));
    let (front_port, back_port) = lab_ports(&records);
    let mut bad = Vec::new();
    let mut closes = 0;
    for r in &records {
        let Some(fault) = r["fault"].as_str() else {
            continue;
        };
        let ts = r["ts_ns"].as_i64().unwrap();
        let window = match (r["close_after_ns"].as_i64(), r["close_before_ns"].as_i64()) {
            (Some(lo), Some(hi)) => (lo, hi),
            _ => (ts, ts),
        };
        let rst = r["how"] == "rst";
        let by_proxy = r["by"] == "proxy";
        let event = r["event"].as_str().unwrap();
        let (what, find, role, leg): (String, Finder, Role, _) = match event {
            "backend_closed" => {
                let local = r["local_port"].as_u64().unwrap() as u16;
                (
                    format!(
                        "{fault}: backend {} (thread {})",
                        r["backend"], r["thread_id"]
                    ),
                    Box::new(move |s: &Summary| {
                        s.client.port == local && s.server.port == back_port
                    }),
                    if by_proxy { Role::Client } else { Role::Server },
                    &caps.back,
                )
            }
            "frontend_closed" => {
                let client = port_of(r["client"].as_str().unwrap());
                (
                    format!("{fault}: frontend {}", r["frontend"]),
                    Box::new(move |s: &Summary| {
                        s.client.port == client && s.server.port == front_port
                    }),
                    if by_proxy { Role::Server } else { Role::Client },
                    &caps.front,
                )
            }
            _ => continue,
        };
        closes += 1;
        bad.extend(check_close(&caps.both, &what, &find, role, rst, window));
        match leg {
            Some(sums) => bad.extend(check_close(
                sums,
                &format!("{what} (one-leg capture)"),
                &find,
                role,
                rst,
                window,
            )),
            None => bad.push(format!("{what}: no one-leg capture")),
        }
        if fault == "plaintext-quit" && event == "backend_closed" {
            let quit = caps.both.iter().filter(|s| find(s)).any(|s| {
                s.events.iter().any(|e| {
                    e.dir == proxyscope::event::Dir::C2s
                        && matches!(
                            e.event.kind,
                            Kind::PlaintextInTls {
                                mysql: Some(proxyscope::event::Com::QUIT),
                                ..
                            }
                        )
                })
            });
            if !quit {
                bad.push(format!("{what}: no tls.plaintext com_quit from the lab"));
            }
        }
    }
    for r in records
        .iter()
        .filter(|r| r["event"] == "frontend_tls_aborted")
    {
        // The #4500 trigger: the client went away first.
        let ts = r["ts_ns"].as_i64().unwrap();
        let client = port_of(r["client"].as_str().unwrap());
        let what = format!("trigger frontend {}", r["frontend"]);
        let at = caps
            .both
            .iter()
            .find(|s| s.client.port == client && s.server.port == front_port)
            .and_then(|s| s.close.at);
        match at {
            Some(at) if at.by == Role::Client && at.at.ts.0 <= ts => {}
            other => bad.push(format!(
                "{what}: first close {other:?}, expected the client's before {ts}"
            )),
        }
    }
    if scenario == "dirty-ssl" {
        let faults = records.iter().filter(|r| r["event"] == "fault").count();
        let backends = records
            .iter()
            .filter(|r| r["event"] == "backend_closed" && r["fault"] == "dirty-ssl")
            .count();
        assert_eq!(faults, backends, "every fault record has its backend close");
    }
    assert!(
        bad.is_empty(),
        "{scenario} in {}:\n{}",
        dir.display(),
        bad.join("\n")
    );
    closes
}

/// What `proxyscope live` streamed for a lab scenario (`SCENARIO.live.jsonl`) against the
/// lab's ground truth, against `proxyscope analyze` of the file live wrote, and its counters.
fn check_live(dir: &Path, scenario: &str) {
    let lines: Vec<Value> = truth(&dir.join(format!("{scenario}.live.jsonl")));
    let records = truth(&dir.join(format!("{scenario}.truth.jsonl")));
    let (front_port, back_port) = lab_ports(&records);

    // The stream starts as `timeline --format jsonl` does.
    assert_eq!(lines[0]["schema"], "proxyscope.events/1");
    // (c) libpcap's counters: everything the kernel saw was read, and all of it was written.
    let summary = lines.last().expect("live wrote lines");
    assert_eq!(summary["kind"], "live.summary", "last line: {summary}");
    let live = &summary["detail"]["live"];
    eprintln!("{scenario}: live summary {live}");
    assert_eq!(live["stopped_by"], "interrupted");
    assert!(live["capture"]["received"].as_u64().unwrap() > 0);
    assert_eq!(live["capture"]["dropped"], 0, "kernel drops: {live}");
    assert_eq!(live["capture"]["if_dropped"], 0, "interface drops: {live}");
    assert!(live["packets"].as_u64().unwrap() > 0);
    assert_eq!(live["packets_written"], live["packets"]);

    // (a) every faulted close, streamed with the right leg, label and closer.
    let verdicts: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "verdict.close")
        .collect();
    let mut checked = 0;
    for rec in &records {
        let Some((which, leg, label, role)) = expected(rec, false) else {
            continue;
        };
        let found: Vec<&&Value> = verdicts
            .iter()
            .filter(|v| {
                let d = &v["detail"];
                if which == "backend" {
                    port_of(d["client"].as_str().unwrap()) as u64 == rec["local_port"]
                        && port_of(d["server"].as_str().unwrap()) == back_port
                } else {
                    d["client"] == rec["client"]
                        && port_of(d["server"].as_str().unwrap()) == front_port
                }
            })
            .collect();
        let [v] = found.as_slice() else {
            panic!("{scenario}: {} streamed verdicts for {rec}", found.len());
        };
        assert_eq!(v["leg"], serde_json::to_value(leg).unwrap(), "{rec}: {v}");
        assert_eq!(v["detail"]["label"], label.as_str(), "{rec}: {v}");
        assert_eq!(v["detail"]["closed_by"], role.as_str(), "{rec}: {v}");
        checked += 1;
    }
    assert!(checked > 0, "{scenario}: no faulted close to check");

    // (b) the written file, analysed offline with the same legs, gives the same verdicts.
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["analyze", "--format", "json", "-q"])
        .args(["--frontend-port", &front_port.to_string()])
        .args(["--backend-port", &back_port.to_string()])
        .arg(dir.join(format!("{scenario}.pcap")))
        .output()
        .expect("run proxyscope analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let conns = offline["connections"].as_array().unwrap();
    assert_eq!(conns.len(), verdicts.len(), "connections offline vs live");
    for c in conns {
        let v = verdicts
            .iter()
            .find(|v| v["detail"]["client"] == c["client"] && v["detail"]["server"] == c["server"])
            .unwrap_or_else(|| panic!("no live verdict for {} -> {}", c["client"], c["server"]));
        assert_eq!(v["conn"], c["id"], "connection ids");
        assert_eq!(v["leg"], c["leg"]);
        // The record's detail is the verdict object plus facts of the connection.
        let mut verdict = v["detail"].as_object().unwrap().clone();
        for k in [
            "close",
            "client",
            "server",
            "vlan",
            "carries",
            "relayed",
            "relays",
            "leg_confidence",
            "events_dropped",
        ] {
            verdict.remove(k);
        }
        // Facts of the connection that the JSON report keeps beside the verdict: equal too.
        for k in [
            "client_ip",
            "client_port",
            "server_ip",
            "server_port",
            "community_id",
            "conn_state",
            "history",
            "history_orig",
        ] {
            assert_eq!(verdict.remove(k), c.get(k).cloned(), "{k}");
        }
        assert_eq!(v["detail"]["leg_confidence"], c["leg_confidence"]);
        assert_eq!(v["detail"]["close"], c["close"]);
        assert_eq!(
            Value::Object(verdict),
            c["verdict"],
            "{} -> {}: live and offline verdicts differ",
            c["client"],
            c["server"]
        );
    }
    let live_incidents: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "verdict.incident")
        .map(|l| &l["detail"])
        .collect();
    let offline_incidents = offline["summary"]["incidents"].as_array().unwrap();
    assert_eq!(
        live_incidents.len(),
        offline_incidents.len(),
        "incidents live vs offline"
    );
    for (a, b) in live_incidents.iter().zip(offline_incidents) {
        assert_eq!(a["steps"], b["steps"], "incident steps");
        assert_eq!(a["signature"]["id"], b["signature"]["id"]);
    }
    eprintln!(
        "{scenario}: live streamed {} verdicts ({checked} faulted closes checked) and {} incidents, \
         equal to analyze of the written file",
        verdicts.len(),
        live_incidents.len()
    );
}

/// Committed scenarios and the least number of faulted closes each must hold.
const COMMITTED: [(&str, usize); 9] = [
    ("dirty-ssl", 4),
    ("dirty-ssl-plain", 3),
    ("dirty-ssl-ping", 1),
    ("plaintext-quit", 2),
    ("err-then-close", 2),
    ("drop-burst", 3),
    ("wait-timeout", 3),
    ("max-age", 3),
    ("connect-timeout", 2),
];

#[test]
fn committed_lab_captures_match_their_ground_truth() {
    // PROXYSCOPE_LAB_CAPTURES=DIR checks a regenerated set (`scripts/lab-scenario.sh all DIR --gzip`)
    // before it replaces the committed one.
    let dir = std::env::var_os("PROXYSCOPE_LAB_CAPTURES")
        .map_or_else(|| repo().join("captures/lab"), std::path::PathBuf::from);
    for (scenario, least) in COMMITTED {
        let n = check(&dir, scenario, "pcap.gz");
        eprintln!("{scenario}: {n} faulted closes");
        assert!(
            n >= least,
            "{scenario}: only {n} faulted closes, expected {least}+"
        );
    }
}

#[test]
fn fresh_lab_scenarios_match_their_ground_truth() {
    if std::env::var("PROXYSCOPE_LAB").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: set PROXYSCOPE_LAB=1 to run the proxy lab scenarios (scripts/test.sh does)"
        );
        return;
    }
    let out = std::env::temp_dir().join(format!("proxyscope-lab-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    // One after the other: two cores, and each scenario's timings should not suffer the other.
    for (scenario, needle) in [
        ("dirty-ssl", "2026"),
        // Plaintext clients see the proxy's FIN as 2013; the retries hide the other breaks.
        ("dirty-ssl-plain", "2013"),
        // Idle backends broken at their keep-alive ping: no client saw anything.
        ("dirty-ssl-ping", "summary"),
        ("wait-timeout", "unexpected eof"),
    ] {
        let status = Command::new(repo().join("scripts/lab-scenario.sh"))
            .arg(scenario)
            .arg(&out)
            .env("PROXYSCOPE_BIN", env!("CARGO_BIN_EXE_proxyscope"))
            .env("LAB_CAPTURE", "live")
            .status()
            .expect("run scripts/lab-scenario.sh");
        assert!(
            status.success(),
            "scripts/lab-scenario.sh {scenario} failed: {status}"
        );
        check_live(&out, scenario);
        let n = check(&out, scenario, "pcap");
        let clients = std::fs::read_to_string(out.join(format!("{scenario}.clients.txt"))).unwrap();
        eprintln!("{scenario}: {n} faulted closes; clients saw:\n{clients}");
        assert!(n >= 1, "{scenario}: no faulted close in a fresh run");
        if scenario.starts_with("dirty-ssl") {
            // The diagnosis names #4500 once per fault the lab injected.
            let pcap = out.join(format!("{scenario}.pcap"));
            let (_, run) = analyze_two_pass(&pcap, None);
            let records = truth(&out.join(format!("{scenario}.truth.jsonl")));
            let faults = records
                .iter()
                .filter(|r| r["event"] == "fault" && r["fault"] == "dirty-ssl")
                .count();
            let named = run
                .incidents
                .iter()
                .filter(|i| {
                    i.signature
                        .is_some_and(|s| s.id == "proxysql-dirty-ssl-error-queue")
                })
                .count();
            eprintln!("{scenario}: {faults} faults, {named} #4500 incidents");
            assert_eq!(named, faults, "{scenario}: {:#?}", run.incidents);
        }
        assert!(
            clients.contains(needle),
            "{scenario}: no client saw '{needle}'"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
