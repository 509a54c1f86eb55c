//! The diagnosis on real ProxySQL captures (`../shared/captures/proxysql/`, taken by nobody
//! here): every close the README there and `multiplex/truth.json` describe gets its closer,
//! first teardown frame and label; the #4500 incidents are named on both bug captures (trigger,
//! backend, frontend, with frames) with and without the key log and the ProxySQL log, and on
//! nothing else; requests are paired per statement across the proxy; and no display setting
//! changes a verdict. Run through the `proxyscope` binary, as a user would.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn proxysql_dir() -> Option<PathBuf> {
    let d = common::shared_captures()?.join("proxysql");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("SKIPPED: {} is absent", d.display());
        None
    }
}

/// `proxyscope analyze --format json ARGS...`, parsed.
fn analyze(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .arg("analyze")
        .arg("-q")
        .arg("--format")
        .arg("json")
        .args(args)
        .output()
        .expect("run proxyscope");
    assert!(
        out.status.success(),
        "proxyscope analyze {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The connection whose verdict starts at `frame`.
fn at_frame(doc: &Value, frame: u64) -> &Value {
    doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["verdict"]["at"]["frame"] == frame)
        .unwrap_or_else(|| panic!("no verdict starting at frame {frame}"))
}

fn check_bug(doc: &Value, what: &str, backend_breaks: &[u64], frontend_closes: &[u64]) {
    let conns = doc["connections"].as_array().unwrap();
    for &f in backend_breaks {
        let c = at_frame(doc, f);
        assert_eq!(c["leg"], "backend", "{what}: frame {f}: {}", c["leg_basis"]);
        assert_eq!(c["verdict"]["closed_by"], "proxy", "{what}: frame {f}");
        assert_eq!(
            c["verdict"]["label"], "proxy_reset_backend",
            "{what}: frame {f}"
        );
        // The frontend request it carried was unanswered (pairing across the proxy).
        assert!(
            c["cut"].is_object(),
            "{what}: frame {f}: no carried request"
        );
    }
    for &f in frontend_closes {
        let c = at_frame(doc, f);
        assert_eq!(c["leg"], "frontend", "{what}: frame {f}");
        assert_eq!(c["verdict"]["closed_by"], "proxy", "{what}: frame {f}");
        assert_eq!(
            c["verdict"]["label"], "proxy_closed_frontend",
            "{what}: frame {f}"
        );
    }
    // The four misbehaving clients: SSLRequest, then their own FIN.
    let triggers: Vec<&Value> = conns
        .iter()
        .filter(|c| c["verdict"]["state"] == "tls_handshake")
        .collect();
    assert_eq!(triggers.len(), 4, "{what}");
    for t in &triggers {
        assert_eq!(t["leg"], "frontend", "{what}");
        assert_eq!(t["verdict"]["closed_by"], "client", "{what}");
        assert_eq!(t["verdict"]["label"], "client_abort", "{what}");
    }
    // Nothing else is blamed on the proxy, and the MySQL server is blamed for nothing.
    let blamed = conns
        .iter()
        .filter(|c| c["verdict"]["closed_by"] == "proxy")
        .count();
    assert_eq!(
        blamed,
        backend_breaks.len() + frontend_closes.len(),
        "{what}"
    );
    assert!(
        conns.iter().all(|c| c["verdict"]["closed_by"] != "server"),
        "{what}"
    );
    // The good client's last connection ends with its COM_QUIT.
    assert!(
        conns.iter().any(|c| c["leg"] == "frontend"
            && c["verdict"]["label"] == "clean_quit"
            && c["verdict"]["closed_by"] == "client"),
        "{what}"
    );
    // One #4500 incident per trigger: the trigger first, then the backend it broke, then the
    // frontend whose request rode on it when the retry was used up.
    let incidents = doc["summary"]["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 4, "{what}: {incidents:#?}");
    let mut fronts_seen = Vec::new();
    for inc in incidents {
        assert_eq!(
            inc["signature"]["id"], "proxysql-dirty-ssl-error-queue",
            "{what}"
        );
        assert!(
            matches!(inc["confidence"].as_str(), Some("certain" | "probable")),
            "{what}: {inc}"
        );
        let steps = inc["steps"].as_array().unwrap();
        assert_eq!(steps[0]["label"], "client_abort", "{what}");
        assert!(
            triggers.iter().any(|t| t["id"] == steps[0]["conn"]),
            "{what}"
        );
        let back = steps
            .iter()
            .find(|s| s["label"] == "proxy_reset_backend")
            .unwrap_or_else(|| panic!("{what}: no backend step"));
        assert!(backend_breaks.contains(&back["at"]["frame"].as_u64().unwrap()));
        if let Some(front) = steps.iter().find(|s| s["label"] == "proxy_closed_frontend") {
            let f = front["at"]["frame"].as_u64().unwrap();
            fronts_seen.push(f);
            // The frontend closed is the one whose request rode on the broken backend.
            let b = at_frame(doc, back["at"]["frame"].as_u64().unwrap());
            assert_eq!(b["cut"]["conn"], front["conn"], "{what}");
        }
    }
    fronts_seen.sort_unstable();
    assert_eq!(fronts_seen, frontend_closes, "{what}");
    // The first break was retried on a new backend: a hidden break, said so.
    let hidden = incidents
        .iter()
        .filter(|i| {
            i["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str().unwrap_or("").starts_with("hidden break"))
        })
        .count();
    assert!(hidden >= 1, "{what}: no hidden break named");
}

#[test]
fn issue_4500_is_named_on_both_real_bug_captures_with_and_without_keys() {
    let Some(dir) = proxysql_dir() else { return };
    let cases: [(&str, &[u64], &[u64]); 2] = [
        // README: backend closes by the proxy 123, 252, 385, 514 (two of them RST,ACK); the
        // plaintext client's connections closed by the proxy at 253 and 515.
        ("bug_plain_stream", &[123, 252, 385, 514], &[253, 515]),
        // README: backend breaks 129, 255, 399, 525; frontend closes 256, 526.
        ("bug_tls_stream", &[129, 255, 399, 525], &[256, 526]),
    ];
    for (name, backs, fronts) in cases {
        let d = dir.join(name);
        let pcap = d.join(format!("{name}.pcap"));
        let keys = d.join("keys.log");
        let log = d.join("proxysql.log");
        let plain = analyze(&[p(&pcap)]);
        check_bug(&plain, &format!("{name} without keys"), backs, fronts);
        let dec = analyze(&["--keylog", p(&keys), p(&pcap)]);
        check_bug(&dec, &format!("{name} with keys"), backs, fronts);
        let logged = analyze(&["--proxysql-log", p(&log), p(&pcap)]);
        check_bug(
            &logged,
            &format!("{name} with the ProxySQL log"),
            backs,
            fronts,
        );
        // The log's broken-connection lines are the backends the proxy closed, and make the
        // legs certain.
        for &f in backs {
            let c = at_frame(&logged, f);
            assert_eq!(c["leg_confidence"], "certain", "{name}: {}", c["leg_basis"]);
        }
        // The log and the capture agree on whose connections these are: the incidents are certain.
        for inc in logged["summary"]["incidents"].as_array().unwrap() {
            assert_eq!(inc["confidence"], "certain", "{name}: {inc}");
        }
        for m in logged["summary"]["proxysql_log"].as_array().unwrap() {
            let says = m["capture_says"].as_str().unwrap();
            assert!(
                says.contains("proxy_reset_backend by proxy"),
                "{name}: {says}"
            );
        }
    }
}

#[test]
fn the_fixed_264_capture_has_no_incident() {
    let Some(dir) = proxysql_dir() else { return };
    let d = dir.join("fixed_v264_tls_stream");
    let pcap = d.join("fixed_v264_tls_stream.pcap");
    for doc in [
        analyze(&[p(&pcap)]),
        analyze(&["--keylog", p(&d.join("keys.log")), p(&pcap)]),
    ] {
        assert!(doc["summary"]["incidents"].as_array().unwrap().is_empty());
        let conns = doc["connections"].as_array().unwrap();
        assert!(conns.iter().all(|c| c["verdict"]["closed_by"] != "proxy"));
        // The proxy is still found, and the one backend survives the capture.
        assert_eq!(doc["summary"]["proxies"].as_array().unwrap().len(), 1);
        let backs: Vec<&Value> = conns.iter().filter(|c| c["leg"] == "backend").collect();
        assert_eq!(backs.len(), 1);
        assert_eq!(backs[0]["verdict"]["label"], "still_open");
        assert_eq!(backs[0]["verdict"]["closed_by"], Value::Null);
    }
}

/// Recall and precision of per-statement pairing against `multiplex/truth.json`.
fn pairing_score(doc: &Value, truth: &Value) -> (f64, f64) {
    let conns = doc["connections"].as_array().unwrap();
    let client_of = |id: &Value| {
        conns
            .iter()
            .find(|c| &c["id"] == id)
            .map(|c| c["client"].as_str().unwrap().to_string())
    };
    let mut ours = std::collections::HashMap::new();
    for c in conns {
        for r in c["relays"].as_array().unwrap() {
            if r["frontend"] == true && r["retry"] == false {
                ours.insert(
                    (
                        c["client"].as_str().unwrap().to_string(),
                        r["frame"].as_u64().unwrap(),
                    ),
                    (client_of(&r["conn"]), r["peer_frame"].as_u64().unwrap()),
                );
            }
        }
    }
    let qs = truth["queries"].as_array().unwrap();
    let (mut hit, mut claimed) = (0, 0);
    for q in qs {
        let key = (
            q["frontend"].as_str().unwrap().to_string(),
            q["frame_front"].as_u64().unwrap(),
        );
        let want = (
            Some(q["backend"].as_str().unwrap().to_string()),
            q["frame_back"].as_u64().unwrap(),
        );
        if let Some(got) = ours.get(&key) {
            claimed += 1;
            if *got == want {
                hit += 1;
            }
        }
    }
    (
        hit as f64 / qs.len() as f64,
        hit as f64 / (claimed.max(1)) as f64,
    )
}

#[test]
fn multiplex_closes_legs_and_statement_pairing_match_the_truth() {
    let Some(dir) = proxysql_dir() else { return };
    let d = dir.join("multiplex");
    let pcap = d.join("multiplex.pcap");
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("truth.json")).unwrap()).unwrap();
    for (keys, min_recall, min_precision) in [(false, 0.95, 0.95), (true, 0.99, 0.99)] {
        let doc = if keys {
            analyze(&["--keylog", p(&d.join("keys.log")), p(&pcap)])
        } else {
            analyze(&[p(&pcap)])
        };
        let conns = doc["connections"].as_array().unwrap();
        for t in truth["connections"].as_array().unwrap() {
            let c = conns
                .iter()
                .find(|c| c["client"] == t["client"] && c["server"] == t["server"])
                .unwrap_or_else(|| panic!("no connection {}", t["client"]));
            assert_eq!(c["leg"], t["leg"], "{}: {}", t["client"], c["leg_basis"]);
            let v = &c["verdict"];
            assert_eq!(v["closed_by"], t["closed_by"], "{}: {v}", t["client"]);
            match t["first_teardown_frame"].as_u64() {
                Some(f) => assert_eq!(v["at"]["frame"], f, "{}", t["client"]),
                None => assert_eq!(v["label"], "still_open"),
            }
            if t["how"] == "com_quit" {
                assert_eq!(v["label"], "clean_quit", "{}", t["client"]);
            }
        }
        let (recall, precision) = pairing_score(&doc, &truth);
        eprintln!("multiplex pairing, keys={keys}: recall {recall:.3}, precision {precision:.3}");
        assert!(recall >= min_recall, "keys={keys}: recall {recall}");
        assert!(
            precision >= min_precision,
            "keys={keys}: precision {precision}"
        );
        assert!(doc["summary"]["incidents"].as_array().unwrap().is_empty());
        // The relays are in the event contract too: request events name their relay.
        let relayed_events = conns
            .iter()
            .flat_map(|c| c["events"].as_array().unwrap())
            .filter(|e| e["detail"]["relayed_as"].is_array())
            .count();
        assert!(relayed_events > 0, "keys={keys}");
    }
}

#[test]
fn a_direct_client_of_the_same_server_stays_direct_when_captures_are_merged() {
    let Some(shared) = common::shared_captures() else {
        return;
    };
    let Some(dir) = proxysql_dir() else { return };
    let bug = dir.join("bug_tls_stream/bug_tls_stream.pcap");
    // Public captures of direct clients of 127.0.0.1:3306, the bug capture's backend server.
    for direct in ["mysql-prepared-and-aborts.pcap", "mysql8-change-user.pcap"] {
        let alone = analyze(&[p(&shared.join(direct))]);
        let n_direct = alone["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["carries"] == "mysql")
            .count();
        let doc = analyze(&[p(&bug), p(&shared.join(direct))]);
        let conns = doc["connections"].as_array().unwrap();
        let from_second: Vec<&Value> = conns
            .iter()
            .filter(|c| c["start"]["file"] == 1 && c["carries"] == "mysql")
            .collect();
        assert_eq!(from_second.len(), n_direct, "{direct}");
        for c in from_second {
            assert_eq!(
                c["leg"], "direct",
                "{direct}: {} {}",
                c["client"], c["leg_basis"]
            );
            assert_ne!(c["verdict"]["closed_by"], "proxy", "{direct}");
        }
        // The bug's own incidents, and none invented.
        assert_eq!(
            doc["summary"]["incidents"].as_array().unwrap().len(),
            4,
            "{direct}"
        );
    }
}

#[test]
fn no_display_setting_changes_a_verdict() {
    let mut files: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let mut dirs = vec![
        common::repo().join("captures"),
        common::repo().join("captures/lab"),
    ];
    if let Some(s) = common::shared_captures() {
        dirs.push(s.clone());
        for sub in [
            "bug_plain_stream",
            "bug_tls_stream",
            "fixed_v264_tls_stream",
            "multiplex",
        ] {
            dirs.push(s.join("proxysql").join(sub));
        }
    }
    for d in dirs.iter().filter(|d| d.is_dir()) {
        for f in common::captures_in(d) {
            let name = f.to_string_lossy().to_string();
            let stem = name
                .trim_end_matches(".gz")
                .trim_end_matches(".pcapng")
                .trim_end_matches(".pcap")
                .to_string();
            let k = [PathBuf::from(format!("{stem}.keylog")), d.join("keys.log")]
                .into_iter()
                .find(|k| k.is_file());
            files.push((f, k));
        }
    }
    assert!(files.len() > 20);
    let key = |doc: &Value| -> Vec<String> {
        doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let v = &c["verdict"];
                format!(
                    "{} {} {} {} {} {} {} {}",
                    c["id"],
                    v["label"],
                    v["closed_by"],
                    v["how"],
                    v["at"]["frame"],
                    v["state"],
                    v["in_flight"]["frame"],
                    c["leg"]
                )
            })
            .collect()
    };
    for (f, k) in &files {
        let mut base: Vec<String> = Vec::new();
        if let Some(k) = k {
            base = vec!["--keylog".into(), p(k).into()];
        }
        let run = |events: &str| {
            let mut a: Vec<&str> = base.iter().map(String::as_str).collect();
            a.extend(["--events", events, p(f)]);
            analyze(&a)
        };
        let none = run("0");
        let one = run("1");
        let all = run("65536");
        assert_eq!(key(&none), key(&all), "{}", f.display());
        assert_eq!(key(&one), key(&all), "{}", f.display());
    }
}
