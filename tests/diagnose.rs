//! Verdicts and legs against the proxy lab's ground truth: every close the lab injected is
//! found on the right leg with the right closer and label, the proxy is found by pairing
//! requests (with and without the key log), and no direct capture grows a proxy.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use proxyscope::diagnose::legs::Leg;
use proxyscope::diagnose::Label;
use proxyscope::model::Summary;

fn lab_captures() -> Vec<(PathBuf, PathBuf)> {
    let dir = repo().join("captures/lab");
    let mut v: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".truth.jsonl"))
        .filter_map(|t| {
            let stem = t.file_name()?.to_string_lossy().replace(".truth.jsonl", "");
            let pcap = dir.join(format!("{stem}.pcap.gz"));
            pcap.is_file().then_some((pcap, t))
        })
        .collect();
    v.sort();
    v
}

fn find<'a>(sums: &'a [Summary], rec: &serde_json::Value, which: &str) -> Option<&'a Summary> {
    if which == "backend" {
        let port = rec["local_port"].as_u64()? as u16;
        sums.iter()
            .find(|s| s.client.port == port && s.leg == Leg::Backend)
    } else {
        let client = rec["client"].as_str()?;
        sums.iter().find(|s| s.client.to_string() == client)
    }
}

fn check(pcap: &Path, truth: &Path, keylog: Option<&Path>) -> usize {
    let (sums, run) = analyze_two_pass(pcap, keylog);
    assert!(
        !run.proxies.is_empty(),
        "{}: no proxy found by pairing",
        pcap.display()
    );
    let mut checked = 0;
    for line in std::fs::read_to_string(truth).unwrap().lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some((which, leg, label, role)) = expected(&rec, keylog.is_some()) else {
            continue;
        };
        let s = find(&sums, &rec, which)
            .unwrap_or_else(|| panic!("{}: no connection for {rec}", pcap.display()));
        let v = s.verdict.as_ref().unwrap();
        assert_eq!(
            s.leg,
            leg,
            "{}: {rec}: leg ({})",
            pcap.display(),
            s.leg_basis
        );
        assert_eq!(v.label, label, "{}: {rec}: verdict {v:?}", pcap.display());
        assert_eq!(v.closed_by, Some(role), "{}: {rec}", pcap.display());
        checked += 1;
    }
    // Nothing else on the proxy's legs is blamed on the proxy.
    let blamed = sums
        .iter()
        .filter(|s| {
            matches!(
                s.verdict.as_ref().map(|v| v.label),
                Some(Label::ProxyResetBackend | Label::ProxyClosedFrontend)
            )
        })
        .count();
    assert!(
        blamed <= checked,
        "{}: {blamed} proxy closes, {checked} injected",
        pcap.display()
    );
    // The scenario's signature, once per injected fault where each fault is one incident.
    let truth_text = std::fs::read_to_string(truth).unwrap();
    let count = |pat: &[&str]| {
        truth_text
            .lines()
            .filter(|l| pat.iter().all(|p| l.contains(p)))
            .count()
    };
    let name = pcap.file_name().unwrap().to_string_lossy().to_string();
    let sig = |id: &str| {
        run.incidents
            .iter()
            .filter(|i| i.signature.is_some_and(|s| s.id == id))
            .count()
    };
    let want: Option<(&str, usize)> = match name.split('.').next().unwrap_or("") {
        "dirty-ssl" | "dirty-ssl-plain" | "dirty-ssl-ping" => Some((
            "proxysql-dirty-ssl-error-queue",
            count(&["\"event\":\"fault\"", "dirty-ssl"]),
        )),
        "plaintext-quit" => Some((
            "proxysql-plaintext-quit-in-tls",
            count(&["\"event\":\"backend_closed\"", "plaintext-quit"]),
        )),
        "wait-timeout" => Some((
            "server-wait-timeout",
            count(&[
                "\"event\":\"frontend_closed\"",
                "\"by\":\"proxy\"",
                "wait-timeout",
            ]),
        )),
        "connect-timeout" => Some((
            "client-connect-timeout",
            count(&["\"event\":\"frontend_closed\"", "connect-timeout"]),
        )),
        _ => None,
    };
    if let Some((id, n)) = want {
        assert!(n > 0, "{name}: no faults in the ground truth");
        assert_eq!(sig(id), n, "{name}: {:#?}", run.incidents);
    }
    if name.starts_with("max-age") {
        assert!(sig("proxy-close-without-quit") >= 1, "{name}");
    }
    if name.starts_with("drop-burst") || name.starts_with("err-then-close") {
        // Not a known bug's pattern: no signature may be claimed.
        assert!(
            run.incidents.iter().all(|i| i.signature.is_none()),
            "{name}: {:#?}",
            run.incidents
        );
    }
    if name.starts_with("dirty-ssl") {
        for inc in run.incidents.iter().filter(|i| i.signature.is_some()) {
            assert_eq!(inc.steps[0].label, Label::ClientAbort, "{name}: {inc:#?}");
            // The frontend's requests were paired with the backend that broke under it.
            let back = inc
                .steps
                .iter()
                .find(|s| s.label == Label::ProxyResetBackend)
                .unwrap();
            let Some(front) = inc
                .steps
                .iter()
                .find(|s| s.label == Label::ProxyClosedFrontend)
            else {
                // A hidden break (the query was retried) or the idle-pool form: said so.
                assert!(
                    inc.evidence
                        .iter()
                        .any(|e| e.starts_with("hidden break") || e.contains("keep-alive")),
                    "{name}: {inc:#?}"
                );
                continue;
            };
            let f = sums.iter().find(|s| s.id == front.conn).unwrap();
            assert!(
                f.relayed.iter().any(|(id, _)| *id == back.conn),
                "{name}: frontend {} not paired with backend {}: {:?}",
                front.conn,
                back.conn,
                f.relayed
            );
            assert_eq!(inc.steps[0].label, Label::ClientAbort);
            assert!(inc
                .steps
                .iter()
                .any(|s| s.label == Label::ProxyResetBackend));
            assert!(inc
                .steps
                .iter()
                .any(|s| s.label == Label::ProxyClosedFrontend));
        }
    }
    checked
}

#[test]
fn lab_faults_get_the_right_leg_closer_and_label() {
    let caps = lab_captures();
    assert!(!caps.is_empty(), "no lab captures");
    let mut total = 0;
    for (pcap, truth) in &caps {
        let keylog = PathBuf::from(pcap.to_string_lossy().replace(".pcap.gz", ".keylog"));
        let keys = keylog.is_file().then_some(keylog.as_path());
        let with = check(pcap, truth, keys);
        let without = check(pcap, truth, None);
        assert_eq!(
            with,
            without,
            "{}: keys change what is found",
            pcap.display()
        );
        eprintln!(
            "{}: {with} injected closes found with their verdicts",
            pcap.display()
        );
        total += with;
    }
    assert!(total > 0);
}

#[test]
fn direct_captures_have_no_proxy() {
    let mut dirs = vec![repo().join("captures")];
    if let Some(d) = shared_captures() {
        dirs.push(d);
    }
    for dir in dirs {
        for p in captures_in(&dir) {
            let (sums, run) = analyze_two_pass(&p, None);
            assert!(run.proxies.is_empty(), "{}: {:?}", p.display(), run.proxies);
            assert!(run.incidents.is_empty(), "{}", p.display());
            assert!(
                sums.iter()
                    .all(|s| s.leg == Leg::Direct || s.leg == Leg::Unknown),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn proxysql_log_lines_are_matched_to_backends() {
    let mut matched = 0;
    for (pcap, _) in lab_captures() {
        let log = PathBuf::from(pcap.to_string_lossy().replace(".pcap.gz", ".lab.log"));
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        let lines = proxyscope::diagnose::proxysql_log::ProxysqlLog::parse(&text);
        let f = proxyscope::source::CaptureFile::open(pcap.to_str().unwrap(), 0).unwrap();
        let mut sources = proxyscope::source::Sources::new(vec![f]);
        let opts = proxyscope::analyze::Options {
            legs: common::find_legs(&[&pcap], &Default::default()),
            proxysql_log: lines,
            ..Default::default()
        };
        let mut c = Collect::default();
        let run = proxyscope::analyze::run(&mut sources, &opts, &mut c, &mut |_| {}).unwrap();
        for m in &run.proxysql_log {
            let id = m
                .conn
                .unwrap_or_else(|| panic!("{}: unmatched {:?}", log.display(), m.log));
            let s = c.0.iter().find(|s| s.id == id).unwrap();
            assert_eq!(s.leg, Leg::Backend, "{}", m.capture_says);
            // The log blames the server ("Lost connection"); the capture shows who closed.
            assert!(m
                .capture_says
                .contains(s.verdict.as_ref().unwrap().label.as_str()));
            matched += 1;
        }
    }
    assert!(
        matched > 0,
        "no ProxySQL-style log lines in the lab captures"
    );
    eprintln!("{matched} log lines matched");
}

#[test]
fn a_capture_without_the_trigger_names_4500_as_possible_and_says_why() {
    // Only the backend leg was captured (`SCENARIO.back.pcap.gz`): the aborted frontend handshakes
    // are not in it. Each busy backend the proxy closed without COM_QUIT is still named, as
    // possible, and the missing trigger is said; the other one-leg captures name nothing.
    for name in [
        "dirty-ssl",
        "drop-burst",
        "max-age",
        "plaintext-quit",
        "wait-timeout",
    ] {
        let dir = repo().join("captures/lab");
        let truth = std::fs::read_to_string(dir.join(format!("{name}.truth.jsonl"))).unwrap();
        let first: serde_json::Value = serde_json::from_str(truth.lines().next().unwrap()).unwrap();
        let port: u16 = first["backend"]
            .as_str()
            .and_then(|b| b.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        let path = dir.join(format!("{name}.back.pcap.gz"));
        let flags = proxyscope::diagnose::legs::LegFlags {
            backend_ports: vec![port],
            ..Default::default()
        };
        let (_, run) = common::run_file(
            &path,
            proxyscope::analyze::Options {
                legs: common::legs_of(&[&path], flags, &Default::default()),
                ..Default::default()
            },
        );
        let named: Vec<_> = run
            .incidents
            .iter()
            .filter(|i| {
                i.signature
                    .is_some_and(|s| s.id == "proxysql-dirty-ssl-error-queue")
            })
            .collect();
        if name == "dirty-ssl" {
            let faults = truth
                .lines()
                .filter(|l| l.contains("\"event\":\"fault\""))
                .count();
            assert_eq!(named.len(), faults, "{name}");
            for i in named {
                assert_eq!(
                    i.confidence,
                    Some(proxyscope::diagnose::Confidence::Possible)
                );
                assert!(i
                    .evidence
                    .iter()
                    .any(|e| e.contains("no aborted frontend TLS handshake")));
            }
        } else {
            assert!(named.is_empty(), "{name}: {named:#?}");
        }
    }
}

/// The verdict of the first connection of `file` in `../shared/captures/`, decrypted with the key
/// log beside it when there is one.
fn first_verdict(file: &str) -> Option<Summary> {
    let dir = shared_captures()?;
    let path = dir.join(file);
    let stem = file.split(".pcap").next().unwrap_or(file);
    let keylog = dir.join(format!("{stem}.keylog"));
    let (sums, _) = analyze_with_keys(&path, keylog.is_file().then_some(keylog.as_path()));
    sums.into_iter().next()
}

#[test]
fn public_captures_once_called_wrong() {
    // A COM_QUIT over TLS 1.0 CBC (DHE-RSA-AES256-SHA). Without keys, record sizes cannot
    // support "a request in flight"; the small last record fits a COM_QUIT, said as possible.
    if let Some(dir) = shared_captures() {
        let (sums, _) = analyze_file(&dir.join("mysql-ssl-tls10.pcapng"));
        let v = sums[0].verdict.as_ref().unwrap();
        assert_eq!(v.label, Label::CleanQuit, "{v:?}");
        assert_eq!(v.closed_by, Some(proxyscope::model::Role::Client));
        assert!(v.in_flight.is_none(), "{v:?}");
        assert_eq!(v.confidence, proxyscope::diagnose::Confidence::Possible);
    }
    // With the key log every record after the ChangeCipherSpecs decrypts (IV chained across
    // records, HMAC-SHA1, MD5+SHA1 PRF) and the COM_QUIT is read, the client's last command.
    if let Some(s) = first_verdict("mysql-ssl-tls10.pcapng") {
        let v = s.verdict.as_ref().unwrap();
        assert_eq!(v.label, Label::CleanQuit, "{v:?}");
        assert_eq!(v.closed_by, Some(proxyscope::model::Role::Client));
        assert_eq!(v.confidence, proxyscope::diagnose::Confidence::Certain);
        let tls = s.tls.as_ref().unwrap();
        assert_eq!(tls.decryption, Some("keys"));
        // Finished + 22 application-data records from the client, Finished + 20 from the server.
        assert_eq!((tls.decrypted.c2s, tls.decrypted.s2c), (23, 21));
        let last_cmd = s.events.iter().rev().find_map(|e| match &e.event.kind {
            proxyscope::event::Kind::Command { cmd, .. } => Some(*cmd),
            _ => None,
        });
        assert_eq!(last_cmd, Some(proxyscope::event::Com::QUIT), "COM_QUIT");
    }
    // Graceful TLS closes (a close_notify, encrypted, before the client's FIN), RSTs or not.
    for f in ["tls13-hrr-raw-ip.pcap", "tls12-cbc-ipv6-null.pcap"] {
        if let Some(s) = first_verdict(f) {
            let v = s.verdict.unwrap();
            assert_eq!(v.label, Label::CleanClose, "{f}: {v:?}");
            assert_eq!(v.closed_by, Some(proxyscope::model::Role::Client), "{f}");
        }
    }
    // TLS 1.2 ECDHE-RSA-AES128-SHA decrypted: the client's close_notify is read, not inferred.
    if let Some(s) = first_verdict("tls12-cbc-ipv6-null.pcap") {
        let v = s.verdict.as_ref().unwrap();
        assert_eq!(v.confidence, proxyscope::diagnose::Confidence::Certain);
        let tls = s.tls.as_ref().unwrap();
        assert_eq!((tls.decrypted.c2s, tls.decrypted.s2c), (3, 2));
        assert!(s.events.iter().any(|e| e.dir == proxyscope::event::Dir::C2s
            && matches!(
                e.event.kind,
                proxyscope::event::Kind::Alert {
                    level: tls_parser::TlsAlertSeverity::Warning,
                    desc: tls_parser::TlsAlertDescription::CloseNotify
                }
            )));
    }
    // A connection still open carries no closer.
    if let Some(s) = first_verdict("mysql8-query-attributes.pcap") {
        let v = s.verdict.unwrap();
        assert_eq!(
            (v.label, v.closed_by, v.how.as_str()),
            (Label::StillOpen, None, "-")
        );
    }
    // The client's FIN before the server's greeting ERR 1130 arrived: the client left first, in
    // the handshake.
    if let Some(dir) = shared_captures() {
        let (sums, _) = analyze_file(&dir.join("mysql-connect-refused.pcap"));
        let s = sums
            .iter()
            .find(|s| s.carries == proxyscope::dissect::Carries::Mysql)
            .unwrap();
        let v = s.verdict.as_ref().unwrap();
        assert_eq!(
            (v.label, v.state),
            (Label::ClientAbort, proxyscope::diagnose::State::Handshake),
            "{v:?}"
        );
    }
}

#[test]
fn an_alert_in_the_proxys_fin_segment_is_not_called_a_missing_close_notify() {
    // err-then-close: the lab's ERR record, close_notify and FIN leave in one segment. Without the
    // key log the close is the proxy's (the ERR is not readable), but the client did get an alert
    // with the FIN; with it, the ERR starts the close.
    let pcap = repo().join("captures/lab/err-then-close.pcap.gz");
    let keylog = repo().join("captures/lab/err-then-close.keylog");
    let (sums, _) = analyze_two_pass(&pcap, None);
    let closed: Vec<_> = sums
        .iter()
        .filter(|s| {
            s.verdict
                .as_ref()
                .is_some_and(|v| v.label == Label::ProxyClosedFrontend)
        })
        .collect();
    assert!(!closed.is_empty());
    for s in &closed {
        let sees = s.verdict.as_ref().unwrap().client_sees.unwrap_or("");
        assert!(!sees.contains("no close_notify"), "{}: {sees}", s.id);
        assert!(
            sees.contains("TLS alert came with the close"),
            "{}: {sees}",
            s.id
        );
    }
    let (sums, _) = analyze_two_pass(&pcap, Some(&keylog));
    for s in sums.iter().filter(|s| closed.iter().any(|c| c.id == s.id)) {
        let v = s.verdict.as_ref().unwrap();
        assert_eq!(v.label, Label::ServerError, "{}: {v:?}", s.id);
        assert_eq!(v.how, "ERR 2013");
    }
}

#[test]
fn two_proxies_in_one_run_keep_their_own_legs_and_incidents() {
    // Two lab runs (two proxies in front of two servers) read together: each proxy is found, each
    // connection keeps the leg it has alone, and the #4500 incidents are those of the one run
    // that had them.
    let dir = repo().join("captures/lab");
    let a = dir.join("dirty-ssl.pcap.gz");
    let b = dir.join("max-age.pcap.gz");
    let (alone_a, run_a) = analyze_two_pass(&a, None);
    let (alone_b, _) = analyze_two_pass(&b, None);
    let legs = common::find_legs(&[&a, &b], &proxyscope::analyze::Options::default());
    assert_eq!(legs.pairs().len(), 2, "{:?}", legs.pairs());
    let files: Vec<proxyscope::source::CaptureFile> = [&a, &b]
        .iter()
        .enumerate()
        .map(|(i, p)| proxyscope::source::CaptureFile::open(p.to_str().unwrap(), i).unwrap())
        .collect();
    let mut c = Collect::default();
    let run = proxyscope::analyze::run(
        &mut proxyscope::source::Sources::new(files),
        &proxyscope::analyze::Options {
            legs,
            ..Default::default()
        },
        &mut c,
        &mut |_| {},
    )
    .unwrap();
    let key = |s: &Summary| (s.client, s.server, s.leg);
    let mut together: Vec<_> = c.0.iter().map(key).collect();
    let mut apart: Vec<_> = alone_a.iter().chain(alone_b.iter()).map(key).collect();
    together.sort_by_key(|k| format!("{k:?}"));
    apart.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(together, apart);
    let dirty = |r: &proxyscope::report::RunSummary| {
        r.incidents
            .iter()
            .filter(|i| {
                i.signature
                    .is_some_and(|s| s.id == "proxysql-dirty-ssl-error-queue")
            })
            .count()
    };
    assert_eq!(dirty(&run), dirty(&run_a));
}
