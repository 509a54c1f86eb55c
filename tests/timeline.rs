//! `proxyscope timeline` and `analyze --write-incident` end to end, on the committed captures:
//! every record matches the schema documented in README.md (and the README's examples are real
//! records), CSV round-trips to the JSON Lines, the Perfetto trace has a track per connection,
//! the incident pcaps hold exactly the incidents' connections (tshark), and the HTML page of the
//! #4500 lab capture opens in headless Chromium with the lanes and incidents the lab's ground
//! truth expects, no script error, and a screenshot.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::schema::*;
use common::*;
use proxyscope::diagnose::legs::Leg;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxyscope-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The key log beside a capture (`x.pcap` → `x.keylog`; a lab leg `x.front.pcap.gz` → `x.keylog`).
fn keylog_for(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    let k = p.with_file_name(format!("{stem}.keylog"));
    k.is_file().then_some(k)
}

/// `proxyscope timeline FILE --format F [extra]` (with the key log beside it), its stdout.
fn timeline(p: &Path, format: &str, extra: &[&str]) -> Vec<u8> {
    let mut c = bin();
    c.arg("timeline")
        .arg(p)
        .args(["--format", format])
        .args(extra);
    if let Some(k) = keylog_for(p) {
        c.arg("--keylog").arg(k);
    }
    let out = c.output().expect("runs");
    // 2: a capture that stops early (a few shared ones are cut on purpose).
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The JSON Lines records (the schema line checked and dropped).
fn records(p: &Path, extra: &[&str]) -> Vec<Value> {
    let out = timeline(p, "jsonl", extra);
    let mut lines = out.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let head: Value = serde_json::from_slice(lines.next().expect("a schema line")).unwrap();
    assert_eq!(head["schema"], "proxyscope.events/1");
    lines.map(|l| serde_json::from_slice(l).unwrap()).collect()
}

fn dirty_ssl() -> PathBuf {
    repo().join("captures/lab/dirty-ssl.pcap.gz")
}

fn committed_captures() -> Vec<PathBuf> {
    let mut v = captures_in(&repo().join("captures"));
    v.extend(captures_in(&repo().join("captures/lab")));
    v
}

/// One example record per kind, as the README shows them: from the #4500 capture when it has
/// the kind, else from the first committed capture that does.
fn examples(all: &[(PathBuf, Vec<Value>)]) -> BTreeMap<String, Value> {
    let mut ex: BTreeMap<String, (bool, Value)> = BTreeMap::new();
    for (p, recs) in all {
        let preferred = *p == dirty_ssl();
        for r in recs {
            let kind = r["kind"].as_str().unwrap_or("").to_string();
            match ex.get(&kind) {
                Some((true, _)) => {}
                Some((false, _)) if !preferred => {}
                _ => {
                    ex.insert(kind, (preferred, r.clone()));
                }
            }
        }
    }
    ex.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

#[test]
fn every_record_matches_the_documented_schema() {
    let rows = schema();
    let mut files = committed_captures();
    if let Some(dir) = shared_captures() {
        files.extend(captures_in(&dir));
    }
    let mut all = Vec::new();
    let mut n = 0;
    for p in files {
        let recs = records(&p, &[]);
        let mut last = f64::MIN;
        for r in &recs {
            if let Err(e) = check(&rows, r) {
                panic!("{}: {e}\n{r}", p.display());
            }
            let t = r["t"].as_f64().unwrap();
            assert!(
                t >= last,
                "{}: records out of time order at {r}",
                p.display()
            );
            last = t;
        }
        let conns: BTreeSet<u64> = recs.iter().filter_map(|r| r["conn"].as_u64()).collect();
        let verdicts = recs.iter().filter(|r| r["kind"] == "verdict.close").count();
        assert_eq!(
            verdicts,
            conns.len(),
            "{}: one verdict.close per connection",
            p.display()
        );
        n += recs.len();
        all.push((p, recs));
    }
    assert!(n > 10_000, "only {n} records checked");

    // The README's examples: one per kind the committed captures produce, each a valid record.
    let committed: Vec<(PathBuf, Vec<Value>)> = all
        .iter()
        .filter(|(p, _)| p.starts_with(repo().join("captures")))
        .cloned()
        .collect();
    let text = readme();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut block = String::from("\n```json\n");
        for v in examples(&all).values() {
            block.push_str(&serde_json::to_string(v).unwrap());
            block.push('\n');
        }
        block.push_str("```\n");
        let r = span(&text, "events-examples");
        let new = format!("{}{block}{}", &text[..r.start], &text[r.end..]);
        std::fs::write(repo().join("README.md"), new).unwrap();
        return;
    }
    let shown: BTreeMap<String, Value> = between(&text, "events-examples")
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("README example is JSON");
            (v["kind"].as_str().unwrap().to_string(), v)
        })
        .collect();
    for (kind, v) in &shown {
        if let Err(e) = check(&rows, v) {
            panic!("README example of {kind}: {e}");
        }
    }
    for kind in examples(&committed).keys() {
        assert!(
            shown.contains_key(kind),
            "README.md has no example of {kind} (UPDATE_GOLDEN=1 cargo test --test timeline)"
        );
    }
}

#[test]
fn filters_select_connections_legs_and_time() {
    let p = dirty_ssl();
    let all = records(&p, &[]);
    let back = records(&p, &["--leg", "backend"]);
    // Incidents are kept when one of their steps is; they sit on their first step's leg.
    assert!(!back.is_empty());
    assert!(back
        .iter()
        .all(|r| r["leg"] == "backend" || r["kind"] == "verdict.incident"));
    let one = records(&p, &["--conn", "4"]);
    assert!(one
        .iter()
        .all(|r| r["conn"] == 4 || r["kind"] == "verdict.incident"));
    assert!(one.iter().any(|r| r["kind"] == "verdict.incident"));
    let problems = records(&p, &["--only-problems"]);
    let clean: BTreeSet<u64> = all
        .iter()
        .filter(|r| {
            r["kind"] == "verdict.close"
                && matches!(
                    r["detail"]["label"].as_str(),
                    Some("clean_quit" | "clean_close" | "still_open")
                )
        })
        .map(|r| r["conn"].as_u64().unwrap())
        .collect();
    assert!(!clean.is_empty());
    assert!(problems
        .iter()
        .all(|r| !clean.contains(&r["conn"].as_u64().unwrap())));
    let window = records(&p, &["--since", "0.5", "--until", "1.0"]);
    assert!(!window.is_empty());
    assert!(window.iter().all(|r| {
        let t = r["t"].as_f64().unwrap();
        (0.5..=1.0).contains(&t)
    }));
    let expected = all
        .iter()
        .filter(|r| (0.5..=1.0).contains(&r["t"].as_f64().unwrap()))
        .count();
    assert_eq!(window.len(), expected);
}

/// CSV rows parsed by Python's csv module (an independent reader), as string maps.
fn parse_csv(csv: &[u8]) -> Vec<BTreeMap<String, String>> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys\n\
             print(json.dumps(list(csv.DictReader(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(csv).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn csv_round_trips_to_the_json_lines() {
    for name in [
        "lab/dirty-ssl.pcap.gz",
        "commands-plain.pcap",
        "prepared-statements.pcap",
    ] {
        let p = repo().join("captures").join(name);
        let want = records(&p, &[]);
        let rows = parse_csv(&timeline(&p, "csv", &[]));
        assert_eq!(rows.len(), want.len(), "{name}");
        for (row, want) in rows.iter().zip(&want) {
            let mut got = serde_json::Map::new();
            for (k, v) in row {
                let value = match k.as_str() {
                    _ if v.is_empty() => match k.as_str() {
                        "file" => continue,
                        _ => Value::Null,
                    },
                    "ts" | "leg" | "dir" | "from" | "to" | "layer" | "kind" => {
                        Value::String(v.clone())
                    }
                    _ => serde_json::from_str(v).unwrap_or_else(|e| panic!("{k}={v}: {e}")),
                };
                got.insert(k.clone(), value);
            }
            assert_eq!(&Value::Object(got), want, "{name}");
        }
    }
}

#[test]
fn perfetto_trace_has_a_track_per_connection() {
    let p = dirty_ssl();
    let recs = records(&p, &[]);
    let trace: Value = serde_json::from_slice(&timeline(&p, "perfetto", &[])).unwrap();
    let ev = trace["traceEvents"].as_array().expect("traceEvents");
    let pid = |leg: &str| match leg {
        "frontend" => 1,
        "backend" => 2,
        "direct" => 3,
        _ => 4,
    };
    let want: BTreeSet<(u64, u64)> = recs
        .iter()
        .filter(|r| r["kind"] == "verdict.close")
        .map(|r| (pid(r["leg"].as_str().unwrap()), r["conn"].as_u64().unwrap()))
        .collect();
    let tracks: BTreeSet<(u64, u64)> = ev
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
        .collect();
    assert_eq!(tracks, want);
    let processes: BTreeSet<u64> = ev
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(processes, want.iter().map(|w| w.0).collect());
    for e in ev {
        let ph = e["ph"].as_str().unwrap();
        assert!(matches!(ph, "M" | "X" | "i" | "s" | "t" | "f"), "{e}");
        if ph != "M" {
            assert!(e["ts"].as_f64().unwrap() >= 0.0, "{e}");
            assert!(tracks.contains(&(e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap())));
        }
        if ph == "X" {
            assert!(e["dur"].as_f64().unwrap() >= 0.0, "{e}");
        }
    }
    let count = |f: &dyn Fn(&Value) -> bool| ev.iter().filter(|e| f(e)).count();
    // A connection slice per track; closes as instants, as many as FIN and RST events.
    assert_eq!(
        count(&|e| e["ph"] == "X" && e["cat"] == "connection"),
        want.len()
    );
    assert_eq!(
        count(&|e| e["ph"] == "i" && (e["cat"] == "fin" || e["cat"] == "rst")),
        recs.iter()
            .filter(|r| r["kind"] == "tcp.fin" || r["kind"] == "tcp.rst")
            .count()
    );
    assert_eq!(
        count(&|e| e["ph"] == "i" && e["cat"] == "incident"),
        recs.iter()
            .filter(|r| r["kind"] == "verdict.incident")
            .count()
    );
    // A connection whose verdict has a request in flight ends with an unanswered request.
    for r in recs.iter().filter(|r| r["kind"] == "verdict.close") {
        if r["detail"]["state"] == "request_in_flight" {
            let c = r["conn"].as_u64().unwrap();
            assert!(
                ev.iter().any(|e| e["cat"] == "request"
                    && e["tid"] == c
                    && e["args"]["unanswered"] == true),
                "connection {c}: no unanswered request slice"
            );
        }
    }
    // Slices nest: each request within its connection's slice, also when a time window cuts them.
    for extra in [&[][..], &["--since", "0.5", "--until", "1.0"][..]] {
        let t: Value = serde_json::from_slice(&timeline(&p, "perfetto", extra)).unwrap();
        let t = t["traceEvents"].as_array().unwrap();
        let conn: BTreeMap<u64, (f64, f64)> = t
            .iter()
            .filter(|e| e["cat"] == "connection")
            .map(|e| {
                let ts = e["ts"].as_f64().unwrap();
                (
                    e["tid"].as_u64().unwrap(),
                    (ts, ts + e["dur"].as_f64().unwrap()),
                )
            })
            .collect();
        for e in t.iter().filter(|e| e["cat"] == "request") {
            let (a, b) = conn[&e["tid"].as_u64().unwrap()];
            let ts = e["ts"].as_f64().unwrap();
            let end = ts + e["dur"].as_f64().unwrap();
            assert!(
                ts >= a && end <= b + 1e-6,
                "{extra:?}: {e} outside [{a}, {b}]"
            );
        }
    }
    // Every connection that sent a query has request slices.
    let queried: BTreeSet<u64> = recs
        .iter()
        .filter(|r| r["kind"] == "mysql.com_query")
        .map(|r| r["conn"].as_u64().unwrap())
        .collect();
    for c in queried {
        assert!(ev
            .iter()
            .any(|e| e["ph"] == "X" && e["cat"] == "request" && e["tid"] == c));
    }
}

/// Normalised 4-tuple.
fn tuple(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// The Ethernet capture `src` rewritten as Linux SLL (`tcpdump -i any`): each frame's
/// 14-byte Ethernet header becomes a 16-byte SLL header with the same EtherType and source.
fn as_sll(src: &Path, dst: &Path) {
    // editcap (beside tshark) makes it a classic pcap first.
    let plain = dst.with_extension("eth.pcap");
    let ok = Command::new("editcap")
        .args(["-F", "pcap"])
        .arg(src)
        .arg(&plain)
        .status()
        .unwrap();
    assert!(ok.success());
    let data = std::fs::read(&plain).unwrap();
    assert_eq!(
        &data[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian µs pcap"
    );
    let mut out = data[..20].to_vec();
    out.extend_from_slice(&113u32.to_le_bytes()); // LINKTYPE_LINUX_SLL
    let mut off = 24;
    while off + 16 <= data.len() {
        let u = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
        let (incl, orig) = (u(off + 8) as usize, u(off + 12));
        let frame = &data[off + 16..off + 16 + incl];
        out.extend_from_slice(&data[off..off + 8]);
        out.extend_from_slice(&(incl as u32 + 2).to_le_bytes());
        out.extend_from_slice(&(orig + 2).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 1, 0, 6]); // to us, ARPHRD_ETHER, 6-byte address
        out.extend_from_slice(&frame[6..12]);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&frame[12..]);
        off += 16 + incl;
    }
    std::fs::write(dst, out).unwrap();
}

#[test]
fn incident_pcaps_hold_exactly_the_incident_connections() {
    if !have("tshark") {
        eprintln!("SKIPPED: tshark not found; incident pcaps not checked");
        return;
    }
    let lab = repo().join("captures/lab");
    // The backend leg as `tcpdump -i any` would have it, merged with the Ethernet frontend leg:
    // each incident then has frames of two link types, in two files.
    let sll = tmp("dirty-ssl.back.sll.pcap");
    as_sll(&lab.join("dirty-ssl.back.pcap.gz"), &sll);
    let runs: Vec<(&str, Vec<PathBuf>, usize)> = vec![
        ("dirty-ssl", vec![lab.join("dirty-ssl.pcap.gz")], 1),
        ("drop-burst", vec![lab.join("drop-burst.pcap.gz")], 1),
        (
            "plaintext-quit",
            vec![lab.join("plaintext-quit.pcap.gz")],
            1,
        ),
        (
            "dirty-ssl-two-links",
            vec![lab.join("dirty-ssl.front.pcap.gz"), sll],
            2,
        ),
    ];
    for (name, inputs, links) in runs {
        let dir = tmp(&format!("incidents-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = bin();
        c.arg("analyze")
            .args(&inputs)
            .args(["--format", "json", "--write-incident"])
            .arg(&dir)
            .arg("--keylog")
            .arg(lab.join(format!(
                "{}.keylog",
                name.split('-').take(2).collect::<Vec<_>>().join("-")
            )));
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let conns: BTreeMap<u64, &Value> = doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_u64().unwrap(), c))
            .collect();
        let incidents = doc["summary"]["incidents"].as_array().unwrap();
        assert!(!incidents.is_empty(), "{name}: no incidents");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(
            files.len(),
            incidents.len() * links,
            "{name}: {links} pcap(s) per incident"
        );
        for (n, inc) in incidents.iter().enumerate() {
            let prefix = format!("incident-{:03}-", n + 1);
            let mine: Vec<&PathBuf> = files
                .iter()
                .filter(|f| {
                    f.file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with(&prefix)
                })
                .collect();
            assert_eq!(mine.len(), links, "{name}: {prefix}");
            let ids: BTreeSet<u64> = inc["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["conn"].as_u64().unwrap())
                .collect();
            let want: BTreeSet<(String, String)> = ids
                .iter()
                .map(|id| {
                    let c = conns[id];
                    tuple(c["client"].as_str().unwrap(), c["server"].as_str().unwrap())
                })
                .collect();
            let packets: u64 = ids
                .iter()
                .map(|id| {
                    let c = conns[id];
                    c["packets"]["c2s"].as_u64().unwrap() + c["packets"]["s2c"].as_u64().unwrap()
                })
                .sum();
            let mut got = BTreeSet::new();
            let mut frames = 0;
            for f in mine {
                let out = Command::new("tshark")
                    .arg("-r")
                    .arg(f)
                    .args(["-T", "fields", "-E", "separator=,"])
                    .args([
                        "-e",
                        "ip.src",
                        "-e",
                        "tcp.srcport",
                        "-e",
                        "ip.dst",
                        "-e",
                        "tcp.dstport",
                    ])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                for l in String::from_utf8(out.stdout).unwrap().lines() {
                    let v: Vec<&str> = l.split(',').collect();
                    got.insert(tuple(
                        &format!("{}:{}", v[0], v[1]),
                        &format!("{}:{}", v[2], v[3]),
                    ));
                    frames += 1;
                }
            }
            assert_eq!(got, want, "{name}: {prefix}");
            assert_eq!(
                frames, packets,
                "{name}: {prefix}: every packet of those connections"
            );
        }
    }
}

/// Every frame's time as tshark gives it (`frame.time_epoch`), as Unix seconds and nanoseconds.
fn frame_epochs(p: &Path) -> BTreeMap<u64, (i64, u32)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(p)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "frame.time_epoch",
        ])
        .output()
        .expect("tshark runs");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, t) = l.split_once('\t').unwrap();
            let (s, f) = t.split_once('.').unwrap_or((t, "0"));
            let ns: u32 = format!("{f:0<9}")[..9].parse().unwrap();
            (n.parse().unwrap(), (s.parse().unwrap(), ns))
        })
        .collect()
}

/// `2026-11-24T10:20:31.905507Z`: date(1) formats the seconds, the microseconds are cut.
fn iso_utc_micros((secs, ns): (i64, u32)) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .expect("date runs");
    format!(
        "{}.{:06}Z",
        String::from_utf8(out.stdout).unwrap().trim(),
        ns / 1000
    )
}

#[test]
fn perfetto_times_are_the_frames_wall_clock() {
    if !have("tshark") {
        eprintln!("SKIPPED: tshark not found; Perfetto times not checked");
        return;
    }
    let p = dirty_ssl();
    let trace: Value = serde_json::from_slice(&timeline(&p, "perfetto", &[])).unwrap();
    let meta = &trace["otherData"];
    let (s0, ns0) = (
        meta["capture_start_unix_s"].as_i64().unwrap(),
        meta["capture_start_unix_ns"].as_i64().unwrap(),
    );
    let epochs = frame_epochs(&p);
    // The capture starts at frame 1.
    assert_eq!(epochs[&1], (s0, u32::try_from(ns0).unwrap()));
    let mut checked = 0;
    for e in trace["traceEvents"].as_array().unwrap() {
        let Some(frame) = e["args"]["frame"].as_u64() else {
            continue;
        };
        if e["ph"] != "i" {
            continue;
        }
        let (s, ns) = epochs[&frame];
        // ts (µs from the start) + the start = the frame's epoch time, to the nanosecond.
        let want_ns = (s - s0) * 1_000_000_000 + i64::from(ns) - ns0;
        let ts_ns = (e["ts"].as_f64().unwrap() * 1000.0).round() as i64;
        assert_eq!(ts_ns, want_ns, "{e}");
        let time = e["args"]["time"].as_str().unwrap();
        let micros = iso_utc_micros((s, ns));
        assert_eq!(
            time,
            format!("{}{:03}Z", micros.trim_end_matches('Z'), ns % 1000),
            "{e}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} instants with a frame");
}

// ---- the HTML page in headless Chromium ----

fn chromium() -> Option<&'static str> {
    let found = || {
        ["chromium", "chromium-browser"]
            .into_iter()
            .find(|c| have(c))
    };
    if let Some(c) = found() {
        return Some(c);
    }
    // scripts/test.sh installs it; a plain `cargo test` as root may still get it.
    let _ = Command::new(repo().join("scripts/ensure-packages.sh"))
        .arg("chromium")
        .status();
    found()
}

fn run_chromium(chrome: &str, args: &[String]) -> std::process::Output {
    let profile = tmp(&format!("chromium-profile-{}", args.len()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let out = Command::new("timeout")
        .args(["120", chrome])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The attributes of the first `<TAG ... id="ID"` (or `<body`) element in a dumped DOM.
fn attrs(dom: &str, start: &str) -> BTreeMap<String, String> {
    let at = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM"));
    let tag = &dom[at..at + dom[at..].find('>').unwrap()];
    let mut m = BTreeMap::new();
    for part in tag.split("\" ") {
        if let Some((k, v)) = part.rsplit(' ').next().and_then(|kv| kv.split_once("=\"")) {
            m.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
    }
    m
}

#[test]
fn html_timeline_opens_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        eprintln!(
            "SKIPPED: chromium not found and not installable (scripts/ensure-packages.sh chromium); \
             the HTML timeline was not opened"
        );
        return;
    };
    let p = dirty_ssl();
    let recs = records(&p, &[]);
    let html = tmp("timeline-dirty-ssl.html");
    std::fs::write(&html, timeline(&p, "html", &[])).unwrap();
    let url = format!("file://{}", html.display());

    // What the page must show, from the lab's ground truth: a lane per connection the lab
    // accepted or opened, an incident per injected fault, a marker per party of each fault.
    let truth: Vec<Value> =
        std::fs::read_to_string(repo().join("captures/lab/dirty-ssl.truth.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let lanes = truth
        .iter()
        .filter(|r| r["event"] == "frontend_accepted" || r["event"] == "backend_opened")
        .count();
    let faults: Vec<&Value> = truth.iter().filter(|r| r["event"] == "fault").collect();
    let parties: usize = faults
        .iter()
        .map(|f| {
            [
                ("f", &f["trigger_frontend"]),
                ("f", &f["frontend"]),
                ("b", &f["backend"]),
            ]
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(leg, v)| (leg.to_string(), v.to_string()))
            .collect::<BTreeSet<_>>()
            .len()
        })
        .sum();
    // ...and the same numbers from the analysis itself.
    let conns: BTreeSet<u64> = recs.iter().filter_map(|r| r["conn"].as_u64()).collect();
    let incidents: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "verdict.incident")
        .collect();
    let steps: usize = incidents
        .iter()
        .map(|i| i["detail"]["steps"].as_array().unwrap().len())
        .sum();
    assert_eq!(conns.len(), lanes, "analysis vs ground truth: connections");
    assert_eq!(
        incidents.len(),
        faults.len(),
        "analysis vs ground truth: incidents"
    );
    assert_eq!(steps, parties, "analysis vs ground truth: incident steps");

    // The page's data: every connection a lane, frontend lanes first, then backend lanes.
    let page = std::fs::read_to_string(&html).unwrap();
    let open = "<script type=\"application/json\" id=\"data\">";
    let at = page.find(open).unwrap() + open.len();
    let data: Value = serde_json::from_str(&page[at..at + page[at..].find("</script>").unwrap()])
        .expect("the page's data is JSON");
    let legs: Vec<&str> = data["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["leg"].as_str().unwrap())
        .collect();
    assert_eq!(legs.len(), conns.len());
    let first_back = legs.iter().position(|l| *l == "backend").unwrap();
    assert!(legs[..first_back].iter().all(|l| *l == "frontend"));
    assert!(legs[first_back..].iter().all(|l| *l == "backend"));

    let dom = String::from_utf8(run_chromium(chrome, &["--dump-dom".into(), url.clone()]).stdout)
        .unwrap();
    let body = attrs(&dom, "<body");
    assert_eq!(
        body.get("data-errors").map(String::as_str),
        Some("0"),
        "script errors: {:?}",
        body.get("data-last-error")
    );
    let status = attrs(&dom, "<div id=\"status\"");
    let num = |k: &str| -> usize {
        status
            .get(k)
            .unwrap_or_else(|| panic!("status has no {k}: {status:?}"))
            .parse()
            .unwrap()
    };
    assert_eq!(num("data-ready"), 1);
    assert_eq!(num("data-lanes"), lanes);
    assert_eq!(num("data-lanes-drawn"), lanes, "all lanes fit in 1400x900");
    assert_eq!(num("data-incidents"), faults.len());
    assert_eq!(num("data-incident-markers-drawn"), parties);
    assert!(num("data-events-drawn") > 0);
    assert_eq!(dom.matches("class=\"incident\"").count(), faults.len());
    assert_eq!(dom.matches("class=\"step\"").count(), parties);

    // The incident panel shows the remedy (from the analysis's own records) and each incident's
    // first step at its wall-clock time, in UTC, as tshark gives that frame's time; a legend.
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    for inc in &incidents {
        let sig = &inc["detail"]["signature"];
        for (class, key) in [
            ("fix", "fix"),
            ("workaround", "workaround"),
            ("cause", "cause"),
        ] {
            let want = format!(
                "<dd class=\"{class}\">{}</dd>",
                esc(sig[key].as_str().unwrap())
            );
            assert!(dom.contains(&want), "panel lacks {want}");
        }
        for r in sig["references"].as_array().unwrap() {
            let r = r.as_str().unwrap();
            assert!(
                dom.contains(&format!(">{r}</a>")),
                "panel lacks a link to {r}"
            );
        }
    }
    if have("tshark") {
        let epochs = frame_epochs(&p);
        for inc in &incidents {
            let frame = inc["detail"]["steps"][0]["at"]["frame"].as_u64().unwrap();
            let want = format!(
                "<span class=\"wall\">{}</span>",
                iso_utc_micros(epochs[&frame])
            );
            assert!(dom.contains(&want), "panel lacks {want} (frame {frame})");
        }
    } else {
        eprintln!("SKIPPED: tshark not found; wall-clock times not checked");
    }
    let legend = &dom[dom.find("id=\"legend\"").expect("a legend")..];
    let legend = &legend[..legend.find("</span></span>").unwrap_or(legend.len())];
    for item in [
        "FIN",
        "RST",
        "TLS alert",
        "problem verdict",
        "incident step",
        "unanswered",
    ] {
        assert!(legend.contains(item), "legend lacks {item}");
    }

    // The page driven as a person would: hover, zoom, pan, scroll, keys, the incident list.
    let dom = String::from_utf8(
        run_chromium(chrome, &["--dump-dom".into(), format!("{url}#selftest")]).stdout,
    )
    .unwrap();
    let body = attrs(&dom, "<body");
    assert_eq!(
        body.get("data-errors").map(String::as_str),
        Some("0"),
        "{body:?}"
    );
    let status = attrs(&dom, "<div id=\"status\"");
    assert_eq!(status.get("data-selftest").map(String::as_str), Some("ok"));

    let dir = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    // The whole capture, and incident 1 (its lanes pinned on top).
    for (file, fragment) in [
        ("timeline-dirty-ssl.png", ""),
        ("timeline-dirty-ssl-incident-1.png", "#incident=1"),
    ] {
        let png = dir.join(file);
        let _ = std::fs::remove_file(&png);
        run_chromium(
            chrome,
            &[
                format!("--screenshot={}", png.display()),
                format!("{url}{fragment}"),
            ],
        );
        let bytes = std::fs::read(&png).expect("screenshot written");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000);
        eprintln!("screenshot: {}", png.display());
        if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
            std::fs::create_dir_all(repo().join("docs")).unwrap();
            std::fs::copy(&png, repo().join("docs").join(file)).unwrap();
        }
    }
}

#[test]
fn requests_end_at_their_response_or_stay_in_flight() {
    // MariaDB killed the query: the last request is the SLEEP, never answered.
    let (sums, _) = analyze_file(&repo().join("captures/server-kill-query-plain.pcap"));
    let s = &sums[0];
    let reqs = proxyscope::export::requests(s);
    let commands = s
        .events
        .iter()
        .filter(|e| {
            e.dir == proxyscope::event::Dir::C2s && e.event.kind.name().starts_with("mysql.com_")
        })
        .count();
    assert_eq!(reqs.len(), commands);
    let last = reqs.last().unwrap();
    assert!(
        last.unanswered && last.name.contains("SLEEP(10)"),
        "{last:?}"
    );
    assert!(reqs[..reqs.len() - 1]
        .iter()
        .all(|r| !r.unanswered && r.end >= r.start));
}

#[test]
fn backend_lanes_follow_the_frontends_they_carried() {
    let (sums, _) = analyze_two_pass(&dirty_ssl(), keylog_for(&dirty_ssl()).as_deref());
    let order: Vec<&proxyscope::model::Summary> = proxyscope::export::lane_order(&sums)
        .into_iter()
        .map(|i| &sums[i])
        .collect();
    assert_eq!(order.len(), sums.len());
    let place: BTreeMap<u64, usize> = order.iter().enumerate().map(|(n, s)| (s.id, n)).collect();
    let (mut last, mut paired) = (0, 0);
    for s in order.iter().filter(|s| s.leg == Leg::Backend) {
        let first = s.relayed.iter().filter_map(|(id, _)| place.get(id)).min();
        if let Some(&p) = first {
            assert!(p >= last, "backend {} out of its frontends' order", s.id);
            last = p;
            paired += 1;
        }
    }
    assert!(paired >= 3, "only {paired} backends paired with frontends");
}
