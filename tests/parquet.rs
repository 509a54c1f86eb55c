//! `timeline --format parquet`: the rows, read back with the parquet crate's reader, say what
//! `timeline --format jsonl` says of the same capture, record by record; and DuckDB reads the
//! file with the declared types, and the queries of docs/events-parquet.md count the incidents
//! by signature and the closes by leg and label as `analyze --format json` does.
#![cfg(feature = "parquet")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::parquet_rows::{assert_row_is_record, read_rows};
use common::*;
use serde_json::Value;

fn proxyscope(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(args)
        .output()
        .expect("run proxyscope");
    assert!(
        out.status.success(),
        "proxyscope {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("parquet-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The #4500 lab capture (decrypted with its key log) and a real ProxySQL 2.6.3 capture from
/// `../shared` (decrypted too), as `[--keylog K] FILE` arguments.
fn captures() -> Vec<(String, Vec<String>)> {
    let repo = repo();
    let mut v = vec![(
        "lab-dirty-ssl".to_string(),
        vec![
            "--keylog".to_string(),
            repo.join("captures/lab/dirty-ssl.keylog")
                .display()
                .to_string(),
            repo.join("captures/lab/dirty-ssl.pcap.gz")
                .display()
                .to_string(),
        ],
    )];
    if let Some(shared) = shared_captures() {
        let dir = shared.join("proxysql/bug_tls_stream");
        v.push((
            "proxysql-bug-tls-stream".to_string(),
            vec![
                "--keylog".to_string(),
                dir.join("keys.log").display().to_string(),
                dir.join("bug_tls_stream.pcap").display().to_string(),
            ],
        ));
    }
    v
}

fn export(name: &str, input: &[String]) -> (PathBuf, Vec<Value>) {
    let dir = scratch(name);
    let file = dir.join("events.parquet");
    let mut args = vec!["timeline", "-q", "--format", "parquet", "-o"];
    args.push(file.to_str().unwrap());
    args.extend(input.iter().map(String::as_str));
    proxyscope(&args);
    let mut args = vec!["timeline", "-q", "--format", "jsonl"];
    args.extend(input.iter().map(String::as_str));
    let jsonl = proxyscope(&args).stdout;
    let records: Vec<Value> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (file, records)
}

#[test]
fn every_row_says_what_the_jsonl_record_says() {
    for (name, input) in captures() {
        let (file, records) = export(&name, &input);
        let (rows, groups) = read_rows(&file);
        assert_eq!(groups, 1, "{name}: a small capture is one row group");
        assert_eq!(rows.len(), records.len(), "{name}: one row per record");
        for (i, (row, rec)) in rows.iter().zip(&records).enumerate() {
            assert_row_is_record(row, rec, &format!("{name} row {i}"));
        }
        let kinds = |k: &str| records.iter().filter(|r| r["kind"] == k).count();
        assert!(
            kinds("verdict.close") > 0 && kinds("verdict.incident") > 0,
            "{name}"
        );
        eprintln!(
            "{name}: {} rows, {} closes, {} incidents",
            rows.len(),
            kinds("verdict.close"),
            kinds("verdict.incident")
        );

        // The same bytes through a pipe (no -o): the writer needs no seekable output.
        let mut args = vec!["timeline", "-q", "--format", "parquet"];
        args.extend(input.iter().map(String::as_str));
        let piped = proxyscope(&args).stdout;
        assert_eq!(piped, std::fs::read(&file).unwrap(), "{name}: piped output");
    }
}

/// The `duckdb` Python package, pinned, installed on first use under the target directory by
/// scripts/ensure-python.sh (no dependency needed to run SQL on a Parquet file).
const DUCKDB: &[&str] = &["duckdb==2.0.1"];

/// The documented queries, exactly as docs/events-parquet.md and README.md give them (the file
/// name is replaced).
const INCIDENTS_QUERY: &str = "SELECT signature, count(*) AS incidents
FROM 'events.parquet'
WHERE kind = 'verdict.incident'
GROUP BY signature
ORDER BY signature;";
const CLOSES_QUERY: &str = "SELECT leg, label, count(*) AS closes
FROM 'events.parquet'
WHERE kind = 'verdict.close'
GROUP BY leg, label
ORDER BY leg, label;";

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys
path, incidents, closes = sys.argv[1], sys.argv[2], sys.argv[3]
c = duckdb.connect()
q = lambda s: c.sql(s.replace("'events.parquet'", "'" + path + "'")).fetchall()
print(json.dumps({
    "types": {r[0]: r[1] for r in c.sql("DESCRIBE SELECT * FROM '" + path + "'").fetchall()},
    "incidents": q(incidents),
    "closes": q(closes),
}))
"#;

#[test]
fn duckdb_reads_the_types_and_counts_as_analyze_does() {
    let docs = std::fs::read_to_string(repo().join("docs/events-parquet.md")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for q in [INCIDENTS_QUERY, CLOSES_QUERY] {
        assert!(
            docs.contains(q),
            "docs/events-parquet.md gives the query:\n{q}"
        );
    }
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words(&readme).contains(&words(INCIDENTS_QUERY)),
        "README gives the incidents query"
    );
    for (name, input) in captures() {
        let (file, _) = export(&format!("duckdb-{name}"), &input);
        let mut py = Command::new("python3");
        py.args(["-c", DUCKDB_SCRIPT])
            .arg(&file)
            .args([INCIDENTS_QUERY, CLOSES_QUERY]);
        py.env("PYTHONPATH", common::python::packages(DUCKDB));
        let out = py.output().unwrap();
        assert!(
            out.status.success(),
            "duckdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("{name}: DuckDB says {got}");

        let types = &got["types"];
        for (col, ty) in [
            ("ts", "TIMESTAMP WITH TIME ZONE"),
            ("t", "DOUBLE"),
            ("frame", "BIGINT"),
            ("file", "INTEGER"),
            ("conn", "BIGINT"),
            ("leg", "VARCHAR"),
            ("kind", "VARCHAR"),
            ("detail", "JSON"),
            ("label", "VARCHAR"),
            ("signature", "VARCHAR"),
            ("incident", "BIGINT"),
        ] {
            assert_eq!(types[col], ty, "{name}: DuckDB's type of {col}");
        }

        // What `analyze --format json` says of the same capture.
        let mut args = vec!["analyze", "-q", "--format", "json"];
        args.extend(input.iter().map(String::as_str));
        let report: Value = serde_json::from_slice(&proxyscope(&args).stdout).unwrap();
        let mut want_inc = std::collections::BTreeMap::<String, i64>::new();
        for i in report["summary"]["incidents"].as_array().unwrap() {
            *want_inc
                .entry(i["signature"]["id"].to_string())
                .or_default() += 1;
        }
        let got_inc: std::collections::BTreeMap<String, i64> = got["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].to_string(), r[1].as_i64().unwrap()))
            .collect();
        assert!(!want_inc.is_empty(), "{name}: the capture has incidents");
        assert_eq!(got_inc, want_inc, "{name}: incidents by signature");

        let mut want_close = std::collections::BTreeMap::<(String, String), i64>::new();
        for c in report["connections"].as_array().unwrap() {
            let label = c["verdict"]["label"].to_string();
            *want_close.entry((c["leg"].to_string(), label)).or_default() += 1;
        }
        let got_close: std::collections::BTreeMap<(String, String), i64> = got["closes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| ((r[0].to_string(), r[1].to_string()), r[2].as_i64().unwrap()))
            .collect();
        assert_eq!(got_close, want_close, "{name}: closes by leg and label");
    }
}

#[test]
fn parquet_to_a_terminal_is_refused() {
    // `script` gives the command a terminal as standard output.
    if !have("script") {
        eprintln!("SKIPPED: no `script` to give proxyscope a terminal");
        return;
    }
    let cap = repo().join("captures/plain-clean-quit.pcap");
    let cmd = format!(
        "{} timeline -q --format parquet {}",
        env!("CARGO_BIN_EXE_proxyscope"),
        cap.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("binary file: give -o FILE"), "{text}");
    assert!(!text.contains("PAR1"), "{text}");
}
