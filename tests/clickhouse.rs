//! The fleet feed (docs/clickhouse.md) end to end on real captures: `timeline --format jsonl` of the
//! lab's sysown/proxysql#4500 capture and of ProxySQL 2.6.3's bug_plain_stream capture
//! (`../shared/captures/proxysql/`) go through the remap program of docs/clickhouse/vector.toml, run
//! by VRL itself (the pyVRL package), into the table docs/clickhouse/events.sql creates, in an
//! embedded ClickHouse (chdb), inserted with the settings that config's sink sends. Every query of
//! docs/clickhouse/queries.sql runs as written; incidents by signature, closes by leg and label and
//! problem closes per host must equal what `proxyscope analyze --format json` says of the same files.
//! Vector itself is not packaged for Debian or PyPI, so `vector validate` is not run here.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// chdb-core: ClickHouse in process, without pandas and pyarrow; pyVRL: Vector's remap language.
const PACKAGES: &[&str] = &["chdb-core==26.9.0", "pyVRL==0.0.2"];

/// A capture as one host of the fleet: its name in the table, the file and its key log.
struct Host {
    name: &'static str,
    pcap: PathBuf,
    keylog: PathBuf,
}

fn hosts() -> Vec<Host> {
    let lab = common::repo().join("captures/lab");
    let mut v = vec![Host {
        name: "lab-4500",
        pcap: lab.join("dirty-ssl.pcap.gz"),
        keylog: lab.join("dirty-ssl.keylog"),
    }];
    if let Some(shared) = common::shared_captures() {
        let d = shared.join("proxysql/bug_plain_stream");
        v.push(Host {
            name: "proxysql-263-plain",
            pcap: d.join("bug_plain_stream.pcap"),
            keylog: d.join("keys.log"),
        });
    }
    v
}

fn proxyscope(args: &[&str], host: &Host) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(args)
        .arg("--keylog")
        .arg(&host.keylog)
        .arg(&host.pcap)
        .output()
        .expect("run proxyscope");
    assert!(
        out.status.success(),
        "proxyscope {args:?} {}: {}",
        host.pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn analyze(host: &Host, only_problems: bool) -> Value {
    let mut args = vec!["analyze", "-q", "--format", "json"];
    if only_problems {
        args.push("--only-problems");
    }
    serde_json::from_slice(&proxyscope(&args, host)).expect("analyze JSON")
}

/// What the report says of one host: incidents by signature, closes by (leg, label), problem
/// closes by label.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    incidents: BTreeMap<String, u64>,
    closes: BTreeMap<(String, String), u64>,
    problems: BTreeMap<String, u64>,
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v}"))
}

/// A count as ClickHouse writes it in JSON (a number, or a quoted 64-bit integer).
fn count(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a count: {v}"))
}

fn report_counts(host: &Host) -> Counts {
    let all = analyze(host, false);
    let mut c = Counts::default();
    for inc in all["summary"]["incidents"].as_array().expect("incidents") {
        let sig = inc["signature"]["id"].as_str().unwrap_or("none");
        *c.incidents.entry(sig.to_string()).or_default() += 1;
    }
    for conn in all["connections"].as_array().expect("connections") {
        let label = conn["verdict"]["label"].as_str().unwrap_or("none");
        let leg = str_of(&conn["leg"], "leg");
        *c.closes
            .entry((leg.to_string(), label.to_string()))
            .or_default() += 1;
    }
    // The verdict totals of the summary say the same as the connections.
    let mut by_label: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, label), n) in &c.closes {
        *by_label.entry(label.clone()).or_default() += n;
    }
    let verdicts: BTreeMap<String, u64> = all["summary"]["verdicts"]
        .as_object()
        .expect("verdicts")
        .iter()
        .map(|(k, v)| (k.clone(), count(v)))
        .collect();
    assert_eq!(by_label, verdicts, "{}: connections vs summary", host.name);
    // Which closes are problems is the report's call (`--only-problems`), not this test's.
    for conn in analyze(host, true)["connections"]
        .as_array()
        .expect("connections")
    {
        let label = str_of(&conn["verdict"]["label"], "label");
        *c.problems.entry(label.to_string()).or_default() += 1;
    }
    c
}

/// The same counts from the rows of the documented queries.
fn table_counts(queries: &Value, host: &str) -> Counts {
    let rows = |name: &str| -> Vec<Value> {
        queries[name]
            .as_array()
            .unwrap_or_else(|| panic!("query {name} missing from docs/clickhouse/queries.sql"))
            .iter()
            .filter(|r| r["host"] == host)
            .cloned()
            .collect()
    };
    let mut c = Counts::default();
    for r in rows("incidents_by_signature") {
        *c.incidents
            .entry(str_of(&r["signature"], "signature").to_string())
            .or_default() += count(&r["incidents"]);
    }
    for r in rows("closes_by_label") {
        let key = (
            str_of(&r["leg"], "leg").to_string(),
            str_of(&r["label"], "label").to_string(),
        );
        *c.closes.entry(key).or_default() += count(&r["closes"]);
    }
    for r in rows("problem_closes_by_proxy") {
        *c.problems
            .entry(str_of(&r["label"], "label").to_string())
            .or_default() += count(&r["closes"]);
    }
    c
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch directory");
    d
}

/// Runs scripts/clickhouse_events.py on `HOST=STREAM` pairs: its JSON answer.
fn through_clickhouse(dir: &Path, streams: &[(String, PathBuf)]) -> Value {
    let pythonpath = common::python::packages(PACKAGES);
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", &pythonpath)
        .arg(common::repo().join("scripts/clickhouse_events.py"))
        .arg("--session")
        .arg(dir.join("chdb"));
    for (host, path) in streams {
        cmd.arg(format!("{host}={}", path.display()));
    }
    let out = cmd
        .output()
        .expect("python3 runs scripts/clickhouse_events.py");
    assert!(
        out.status.success(),
        "clickhouse_events.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("clickhouse_events.py prints JSON")
}

#[test]
fn events_in_clickhouse_equal_the_report() {
    let dir = fresh_dir("clickhouse");
    let hosts = hosts();
    let mut streams = Vec::new();
    let mut lines = BTreeMap::new();
    for h in &hosts {
        let jsonl = proxyscope(&["timeline", "-q", "--format", "jsonl"], h);
        let path = dir.join(format!("{}.jsonl", h.name));
        std::fs::write(&path, &jsonl).expect("write the stream");
        lines.insert(
            h.name,
            jsonl
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
        );
        streams.push((h.name.to_string(), path));
    }
    // The same events as Parquet, loaded with docs/clickhouse/load-parquet.sql as other hosts.
    let mut parquet_rows = BTreeMap::new();
    for h in &hosts {
        let path = dir.join(format!("{}.parquet", h.name));
        let p = path.display().to_string();
        proxyscope(&["timeline", "-q", "--format", "parquet", "-o", &p], h);
        parquet_rows.insert(h.name, lines[h.name] - 1);
        streams.push((format!("{}-parquet", h.name), path));
    }
    let got = through_clickhouse(&dir, &streams);

    // Every line but the schema line became a row; the remap dropped nothing else.
    let mut total = 0;
    for h in &hosts {
        let rows = count(&got["hosts"][format!("{}-parquet", h.name)]["rows"]);
        assert_eq!(
            rows as usize, parquet_rows[h.name],
            "{}: Parquet rows",
            h.name
        );
        total += rows;
    }
    for h in &hosts {
        let s = &got["hosts"][h.name];
        assert_eq!(count(&s["aborted"]), 1, "{}: the schema line: {s}", h.name);
        assert_eq!(count(&s["errors"]), 0, "{}: {s}", h.name);
        assert_eq!(count(&s["rows"]) as usize, lines[h.name] - 1, "{}", h.name);
        total += count(&s["rows"]);
    }
    assert_eq!(count(&got["storage"]["rows"]), total);
    // Every field of a record has its column (the sink skips unknown fields, so this is where a
    // field missing from the table would show).
    assert_eq!(got["unknown_fields"], serde_json::json!([]));

    let mut sigs = 0;
    for h in &hosts {
        let want = report_counts(h);
        let have = table_counts(&got["queries"], h.name);
        assert_eq!(have, want, "{}: ClickHouse vs analyze", h.name);
        let from_parquet = table_counts(&got["queries"], &format!("{}-parquet", h.name));
        assert_eq!(
            from_parquet, want,
            "{}: ClickHouse from Parquet vs analyze",
            h.name
        );
        sigs += want
            .incidents
            .get("proxysql-dirty-ssl-error-queue")
            .copied()
            .unwrap_or(0);
    }
    // The captures show the #4500 bug: the queries had something to count.
    assert!(sigs >= 4, "{sigs} dirty-ssl incidents");

    // The table panel lists the incidents with their first step and the fix.
    let recent = got["queries"]["recent_incidents"]
        .as_array()
        .expect("recent_incidents");
    // Each incident twice: from the JSON Lines stream and from the Parquet file.
    assert_eq!(recent.len() as u64, (2 * sigs).min(50));
    for r in recent {
        assert!(
            str_of(&r["first_step"], "first_step").contains("frontend"),
            "{r}"
        );
        assert_eq!(r["fix"], "upgrade to ProxySQL 2.6.4", "{r}");
    }
}

/// The exec source's command line is one `live` takes: every flag is in `live --help`, and it
/// writes JSON Lines. As root, a real `live` stream (its schema line and its `live.summary`
/// record, which has only `ts`, `layer`, `kind` and `detail`) goes into the table too.
#[cfg(feature = "live")]
#[test]
fn vector_runs_a_live_that_exists() {
    let dir = fresh_dir("clickhouse-config");
    let stream = dir.join("live.jsonl");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let lines = if root {
        // Port 9 (discard) on lo: nothing to see, so the stream is its first and last line.
        let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
            .args(["live", "-i", "lo", "--quiet", "--format", "jsonl"])
            .args(["--verdicts-only", "--duration", "1", "tcp", "port", "9"])
            .output()
            .expect("run live");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stream, &out.stdout).expect("write");
        2
    } else {
        eprintln!("SKIPPED: a real live stream into the table needs root; CI runs as root");
        std::fs::write(&stream, "{\"schema\":\"proxyscope.events/1\"}\n").expect("write");
        1
    };
    let got = through_clickhouse(&dir, &[("h".to_string(), stream)]);
    let h = &got["hosts"]["h"];
    assert_eq!(count(&h["lines"]), lines, "{h}");
    assert_eq!(count(&h["rows"]), lines - 1, "{h}");
    assert_eq!(count(&h["errors"]), 0, "{h}");
    assert_eq!(got["unknown_fields"], serde_json::json!([]));
    assert_eq!(got["table"], "proxyscope.events");
    assert_eq!(got["settings"]["date_time_input_format"], "best_effort");
    let command: Vec<&str> = got["command"]
        .as_array()
        .expect("an exec source with a command")
        .iter()
        .map(|a| str_of(a, "argument"))
        .collect();
    assert_eq!(command.get(1), Some(&"live"), "{command:?}");
    let w = command.windows(2);
    assert!(w.clone().any(|p| p == ["--format", "jsonl"]), "{command:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["live", "--help"])
        .output()
        .expect("live --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in command.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag), "live has no {flag}");
    }
}
