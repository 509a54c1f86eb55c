//! The binary end to end: exit codes, messages and outputs on good, odd and corrupt input.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxyscope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A small real capture from the bundled set (always in the repo).
fn sample() -> PathBuf {
    repo().join("captures/tls13-clean-quit.pcap")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[test]
fn not_a_capture_is_one_clear_line_and_exit_1() {
    for (name, bytes, want) in [
        ("empty.pcap", &b""[..], "empty: 0 bytes"),
        ("notes.pcap", &b"this is a text file\n"[..], "text starting"),
        (
            "garbage.pcap",
            &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3][..],
            "unknown magic deadbeef",
        ),
    ] {
        let p = tmp(name);
        std::fs::write(&p, bytes).unwrap();
        let out = run(&["analyze", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(
            err.contains(name) && err.contains("not a pcap or pcapng") && err.contains(want),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let out = run(&["analyze", "/nonexistent/x.pcap"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/x.pcap"));
}

#[test]
fn truncated_file_is_analysed_up_to_the_cut_and_exits_2() {
    let data = std::fs::read(sample()).unwrap();
    let cut = data.len() - 30;
    let p = tmp("cut.pcap");
    std::fs::write(&p, &data[..cut]).unwrap();
    let out = run(&["analyze", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("truncated at byte") && err.contains("after frame"),
        "{err}"
    );
    // The connections before the cut are all there.
    let full = json(&["analyze", "--format", "json", sample().to_str().unwrap()]);
    let out = run(&["analyze", "--format", "json", p.to_str().unwrap()]);
    let part: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        part["connections"].as_array().unwrap().len(),
        full["connections"].as_array().unwrap().len()
    );
    let stop = &part["summary"]["files"][0]["stop"];
    assert_eq!(stop["what"], "truncated");
    let frames = full["summary"]["frames"].as_u64().unwrap();
    assert_eq!(stop["after_frame"].as_u64().unwrap(), frames - 1);
}

#[test]
fn a_bogus_link_type_is_reported_not_fatal() {
    let mut data = std::fs::read(sample()).unwrap();
    data[20..24].copy_from_slice(&147u32.to_le_bytes());
    let p = tmp("linktype147.pcap");
    std::fs::write(&p, &data).unwrap();
    let out = run(&["analyze", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("unsupported link type 147"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("unsupported link type 147"));
}

#[test]
fn gzip_and_stdin_give_the_same_report() {
    let plain = run(&["analyze", sample().to_str().unwrap()]);
    assert!(plain.status.success());
    let gz = tmp("sample.pcap.gz");
    let f = std::fs::File::create(&gz).unwrap();
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    enc.write_all(&std::fs::read(sample()).unwrap()).unwrap();
    enc.finish().unwrap();
    let zipped = run(&["analyze", gz.to_str().unwrap()]);
    assert!(zipped.status.success(), "{}", text(&zipped.stderr));
    let body = |o: &Output| {
        text(&o.stdout)
            .lines()
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&plain), body(&zipped));

    let mut child = bin()
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(sample()).unwrap())
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(body(&plain), body(&piped));
}

/// Rewrites a little-endian microsecond pcap as big-endian (as a SPARC or PowerPC would write).
fn to_big_endian(le: &[u8]) -> Vec<u8> {
    let u32le = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
    out.extend_from_slice(&2u16.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u32le(le, 16).to_be_bytes());
    out.extend_from_slice(&u32le(le, 20).to_be_bytes());
    let mut o = 24;
    while o + 16 <= le.len() {
        for k in 0..4 {
            out.extend_from_slice(&u32le(le, o + 4 * k).to_be_bytes());
        }
        let len = u32le(le, o + 8) as usize;
        out.extend_from_slice(&le[o + 16..o + 16 + len]);
        o += 16 + len;
    }
    out
}

fn closes(path: &Path) -> Vec<(String, String, Option<u64>)> {
    let (sums, _) = analyze_file(path);
    sums.iter()
        .map(|s| {
            (
                s.client.to_string(),
                s.close.how.as_str().to_string(),
                s.close.at.map(|m| m.at.frame),
            )
        })
        .collect()
}

#[test]
fn every_file_flavour_gives_the_same_closes() {
    let base = sample();
    let want = closes(&base);
    assert!(!want.is_empty());
    let be = tmp("be.pcap");
    std::fs::write(&be, to_big_endian(&std::fs::read(&base).unwrap())).unwrap();
    assert_eq!(closes(&be), want, "big-endian pcap");
    if have("editcap") {
        for (name, args) in [
            ("ns.pcap", vec!["-F", "nsecpcap"]),
            ("ng.pcapng", vec!["-F", "pcapng"]),
        ] {
            let p = tmp(name);
            let st = Command::new("editcap")
                .args(&args)
                .arg(&base)
                .arg(&p)
                .status()
                .unwrap();
            assert!(st.success());
            assert_eq!(closes(&p), want, "{name}");
        }
        // Two pcapng sections in one file (concatenation is valid pcapng): frames add up.
        let ng = std::fs::read(tmp("ng.pcapng")).unwrap();
        let two = tmp("two-sections.pcapng");
        std::fs::write(&two, [ng.clone(), ng].concat()).unwrap();
        let (sums, run) = analyze_file(&two);
        let (one, run1) = analyze_file(&base);
        assert_eq!(run.frames, 2 * run1.frames);
        // The second copy reuses every 4-tuple with the same SYNs: it folds into the first
        // connections as retransmissions, exactly as tshark does for a replayed copy.
        assert_eq!(sums.len(), one.len());
    } else {
        panic!("editcap missing: scripts/test.sh installs tshark, which brings it");
    }
}

#[test]
fn snaplen_cut_packets_become_gaps_and_closes_hold() {
    let base = sample();
    let cut = tmp("snap80.pcap");
    let st = Command::new("editcap")
        .args(["-s", "80"])
        .arg(&base)
        .arg(&cut)
        .status()
        .expect("editcap");
    assert!(st.success());
    assert_eq!(closes(&cut), closes(&base));
    let (sums, _) = analyze_file(&cut);
    let gap_bytes: u64 = sums
        .iter()
        .map(|s| s.gaps.c2s.bytes + s.gaps.s2c.bytes)
        .sum();
    let (full, _) = analyze_file(&base);
    let full_bytes: u64 = full.iter().map(|s| s.bytes.c2s + s.bytes.s2c).sum();
    let cut_bytes: u64 = sums.iter().map(|s| s.bytes.c2s + s.bytes.s2c).sum();
    assert!(gap_bytes > 0);
    // Every byte is accounted for: captured plus never-captured equals the full stream.
    assert_eq!(cut_bytes + gap_bytes, full_bytes);
}

#[test]
fn several_files_are_merged_in_time_order() {
    let a = repo().join("captures/plain-clean-quit.pcap");
    let b = sample();
    let v = json(&[
        "analyze",
        "--format",
        "json",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    let conns = v["connections"].as_array().unwrap();
    let (na, _) = analyze_file(&a);
    let (nb, _) = analyze_file(&b);
    assert_eq!(conns.len(), na.len() + nb.len());
    assert_eq!(v["summary"]["files"].as_array().unwrap().len(), 2);
    // Ids follow first-packet time across files.
    let starts: Vec<&str> = conns
        .iter()
        .map(|c| c["start"]["ts"].as_str().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted);
}

#[test]
fn json_has_the_documented_shape() {
    let v = json(&["analyze", "--format", "json", sample().to_str().unwrap()]);
    assert_eq!(v["schema"], "proxyscope.analyze/1");
    let c = &v["connections"][0];
    for key in [
        "id",
        "client",
        "server",
        "role_basis",
        "start",
        "end",
        "bytes",
        "close",
        "fins",
        "rsts",
    ] {
        assert!(!c[key].is_null(), "missing {key}");
    }
    assert!(c["start"]["ts"].as_str().unwrap().ends_with('Z'));
    assert!(["client", "server"].contains(&c["close"]["closed_by"].as_str().unwrap()));
}

#[test]
fn key_log_from_a_file_or_a_pcapng_secrets_block_decrypts() {
    let pcap = repo().join("captures/tls13-python-keylog.pcap");
    let keys = repo().join("captures/tls13-python-keylog.keylog");
    let plain = json(&["analyze", "--format", "json", pcap.to_str().unwrap()]);
    assert!(plain["connections"][0]["mysql"]["user"].is_null());
    let with_file = json(&[
        "analyze",
        "--format",
        "json",
        "--keylog",
        keys.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    let c = &with_file["connections"][0];
    assert_eq!(c["tls"]["decryption"], "keys");
    assert_eq!(c["mysql"]["user"], "app");
    assert!(c["mysql"]["quit_frame"].as_u64().is_some());
    // The same secrets inside the file, as `editcap --inject-secrets` writes them.
    let ng = tmp("with-secrets.pcapng");
    let st = Command::new("editcap")
        .arg("--inject-secrets")
        .arg(format!("tls,{}", keys.display()))
        .arg(&pcap)
        .arg(&ng)
        .status()
        .expect("editcap");
    assert!(st.success());
    let from_dsb = json(&["analyze", "--format", "json", ng.to_str().unwrap()]);
    assert_eq!(from_dsb["connections"][0]["mysql"]["user"], "app");
    assert_eq!(from_dsb["summary"]["files"][0]["secrets_blocks"], 1);
}

#[test]
fn explain_says_what_a_client_error_means() {
    let out = run(&[
        "explain",
        "OperationalError: (2026, 'TLS/SSL error: Success (0)')",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(t.starts_with("2026  CR_SSL_CONNECTION_ERROR"), "{t}");
    assert!(
        t.contains("tls-eof-success: ")
            && t.contains("no TLS close_notify")
            && t.contains("proxy_closed_frontend")
            && t.contains("capture next:"),
        "{t}"
    );
    // A wrapped driver error, pasted whole, in several words: the most specific entry first,
    // then the OS cause it quotes.
    let out = run(&[
        "explain",
        "(pymysql.err.OperationalError)",
        "(2013, 'Lost connection to MySQL server during query ([Errno 104] Connection reset by peer)')",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    let lost = t.find("\nserver-lost: ").expect("server-lost");
    let reset = t.find("\nconnection-reset: ").expect("connection-reset");
    assert!(lost < reset, "{t}");
    assert!(!t.contains("server-lost-greeting"), "{t}");
    // Nothing known: nothing on stdout, a hint on stderr, exit 1 (as grep).
    let out = run(&["explain", "something else"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("explain --list"));
}

#[test]
fn explain_looks_up_error_numbers_and_names() {
    let by_number = run(&["explain", "2013"]);
    assert_eq!(by_number.status.code(), Some(0));
    let t = text(&by_number.stdout);
    assert!(t.starts_with("2013  CR_SERVER_LOST"), "{t}");
    let lost = t.find("\nserver-lost: ").expect("server-lost");
    let greeting = t.find("\nserver-lost-greeting: ").expect("greeting");
    assert!(lost < greeting, "{t}");
    let by_name = run(&["explain", "CR_SERVER_LOST"]);
    assert_eq!(text(&by_name.stdout), t);
    let t = text(&run(&["explain", "4031"]).stdout);
    assert!(
        t.contains("ER_CLIENT_INTERACTION_TIMEOUT") && t.contains("server_idle_timeout"),
        "{t}"
    );
    let doc = json(&[
        "explain",
        "--format",
        "json",
        "Error 9001 (HY000): Max connect timeout reached while reaching hostgroup 10 after 10000ms",
    ]);
    assert_eq!(doc["schema"], "proxyscope.explain/1");
    assert_eq!(doc["codes"][0]["code"], 9001);
    assert_eq!(doc["codes"][0]["origin"], "proxysql");
    assert_eq!(doc["matches"][0]["id"], "proxysql-max-connect-timeout");
    assert_eq!(
        doc["matches"][0]["matched"],
        "max connect timeout reached while reaching hostgroup"
    );
    assert!(doc["matches"][0]["verdicts"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("refused")));
}

#[test]
fn explain_list_prints_every_entry_and_number() {
    use proxyscope::diagnose::explain::{CODES, KNOWN};
    let out = run(&["explain", "--list"]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    for e in KNOWN {
        assert!(t.contains(&format!("\n{}: ", e.id)), "{}", e.id);
    }
    for c in CODES {
        assert!(t.contains(&format!("\n{:<5} ", c.code)), "{}", c.code);
    }
    for c in [
        2002, 2003, 2005, 2006, 2013, 2026, 2027, 2055, 4031, 1040, 1045, 1053, 1152, 1153, 1205,
        1317, 9001,
    ] {
        assert!(CODES.iter().any(|k| k.code == c), "{c}");
    }
    let doc = json(&["explain", "--list", "--format", "json"]);
    assert_eq!(doc["entries"].as_array().unwrap().len(), KNOWN.len());
    assert_eq!(doc["codes"].as_array().unwrap().len(), CODES.len());
    assert!(doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["capture_next"].as_str().is_some_and(|s| !s.is_empty())));
    // --list takes no text; no text and no --list is a usage error.
    assert_eq!(run(&["explain", "--list", "2013"]).status.code(), Some(1));
    assert_eq!(run(&["explain"]).status.code(), Some(1));
}

#[test]
fn exit_codes_have_one_meaning_each() {
    // 0: help and version (on stdout), and a run that read everything.
    for args in [
        &["--help"][..],
        &["--version"],
        &["analyze", "--help"],
        &["help"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
    let ok = run(&["analyze", sample().to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    // 1: usage errors, with clap's message on stderr and nothing on stdout.
    let usage: [(&[&str], &str); 5] = [
        (&[], "Usage:"),
        (&["analyze"], "required"),
        (
            &["analyze", "--bogus", "x.pcap"],
            "unexpected argument '--bogus'",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
        (
            &["analyze", "--format", "xml", "x.pcap"],
            "invalid value 'xml'",
        ),
    ];
    for (args, want) in usage {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // 1: a file that cannot be read (see also not_a_capture_is_one_clear_line_and_exit_1);
    // 2: a capture that stops early (truncated_file_is_analysed_up_to_the_cut_and_exits_2).
    assert_eq!(
        run(&["analyze", "/nonexistent/x.pcap"]).status.code(),
        Some(1)
    );
    // Both at once: 1, the worse (a file was not read at all).
    let data = std::fs::read(sample()).unwrap();
    let cut = tmp("cut-and-missing.pcap");
    std::fs::write(&cut, &data[..data.len() - 30]).unwrap();
    let out = run(&["analyze", cut.to_str().unwrap(), "/nonexistent/x.pcap"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("truncated at byte"));
}

#[test]
fn proxysql_log_lines_are_set_against_the_capture() {
    let lab = repo().join("captures/lab");
    let out = run(&[
        "analyze",
        "--proxysql-log",
        lab.join("dirty-ssl.lab.log").to_str().unwrap(),
        lab.join("dirty-ssl.pcap.gz").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("\nINCIDENTS  4, 1 known signature\n")
            && t.contains("\nproxysql-dirty-ssl-error-queue  4 incidents\n"),
        "{t}"
    );
    assert!(
        t.contains("proxysql log line") && t.contains("the MySQL server did not close it"),
        "{t}"
    );
}

/// A copy of the binary alone in a fresh directory, so that what lies beside it is the test's.
fn binary_in(dir: &str) -> PathBuf {
    let d = tmp(dir);
    std::fs::create_dir_all(&d).unwrap();
    let exe = d.join("proxyscope");
    write_executable(&exe, None);
    exe
}

/// Writes an executable (a copy of proxyscope, or `script`) from a child process: a file this
/// process held open for writing would leak into the children other test threads fork meanwhile,
/// and executing it would then fail with ETXTBSY ("Text file busy", seen in CI).
fn write_executable(path: &Path, script: Option<&str>) {
    let status = match script {
        None => Command::new("cp")
            .arg(env!("CARGO_BIN_EXE_proxyscope"))
            .arg(path)
            .status(),
        Some(text) => Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$1\" >\"$2\" && chmod 755 \"$2\"",
                "sh",
                text,
            ])
            .arg(path)
            .status(),
    };
    assert!(status.unwrap().success(), "writing {}", path.display());
}

#[cfg(unix)]
#[test]
fn lab_runs_the_lab_binary_beside_it_in_its_own_process() {
    let exe = binary_in("lab-beside");
    // A stand-in for proxyscope-lab (the real one needs a MySQL server): says what it got, and
    // which process it runs in, and exits 3.
    let lab = exe.with_file_name("proxyscope-lab");
    write_executable(&lab, Some("#!/bin/sh\necho \"pid=$$ args=$*\"\nexit 3\n"));
    let child = Command::new(&exe)
        .args(["-v", "lab", "--help", "--fault", "dirty-ssl", "--", "x"])
        .env("PATH", "")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "the lab's exit status");
    assert_eq!(
        text(&out.stdout).trim(),
        // The same process (exec), so the scripts' SIGTERM reaches the lab; -v goes along.
        format!("pid={pid} args=-v --help --fault dirty-ssl -- x")
    );
}

#[test]
fn lab_without_the_lab_binary_says_how_to_get_it() {
    let exe = binary_in("lab-missing");
    let out = Command::new(&exe)
        .args(["lab", "--backend", "127.0.0.1:3306"])
        .env("PATH", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("proxyscope-lab is not installed"), "{err}");
    assert!(err.contains("cargo install --locked --path lab"), "{err}");
}

/// The closer a row shows is the verdict's (who started the teardown), on every bundled
/// capture: the first FIN/RST sender is a TCP detail below it (they differ when a client's
/// COM_QUIT makes the server send the first FIN).
#[test]
fn the_closer_column_is_the_verdicts_closer() {
    let mut checked = 0;
    let mut fin_differs = 0;
    for dir in ["captures", "captures/lab"] {
        for f in captures_in(&repo().join(dir)) {
            let path = f.to_str().unwrap();
            let doc = json(&["analyze", "-q", "--format", "json", path]);
            let report = text(&run(&["analyze", "-q", "--all", "--width", "0", path]).stdout);
            for c in doc["connections"].as_array().unwrap() {
                let id = c["id"].as_u64().unwrap();
                let row = report
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
                    .unwrap_or_else(|| panic!("{path}: no row {id}\n{report}"));
                let want = c["verdict"]["closed_by"].as_str().unwrap_or("-");
                // `id  closed  client -> server  CLOSER HOW  verdict`
                let after = row.split(" -> ").nth(1).unwrap().split_whitespace();
                let got: Vec<&str> = after.collect();
                assert_eq!(got.get(1).copied(), Some(want), "{path} {id}: {row}");
                if c["close"]["closed_by"]
                    .as_str()
                    .is_some_and(|tcp| tcp != want)
                {
                    fin_differs += 1;
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 200 && fin_differs > 10, "{checked} {fin_differs}");
}

#[test]
fn a_key_log_of_another_run_is_said_in_the_header() {
    let lab = repo().join("captures/lab");
    let pcap = lab.join("dirty-ssl.pcap.gz");
    let good = lab.join("dirty-ssl.keylog");
    let report = |keylog: &Path| {
        let out = run(&[
            "analyze",
            "-q",
            "--keylog",
            keylog.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ]);
        text(&out.stdout)
    };
    let tls_line = |r: &str| {
        r.lines()
            .find(|l| l.starts_with("TLS "))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        tls_line(&report(&good)),
        "TLS       18 sessions, 14 decrypted: 4 without a handshake to decrypt"
    );
    // Another lab run's key log: the client randoms are not in it.
    let other = lab.join("plaintext-quit.keylog");
    let other = if other.exists() {
        other
    } else {
        captures_in(&lab)
            .into_iter()
            .map(|p| p.with_extension("").with_extension("keylog"))
            .find(|k| k.exists() && *k != good)
            .expect("another key log")
    };
    let wrong = tls_line(&report(&other));
    assert_eq!(
        wrong,
        "TLS       18 sessions, 0 decrypted: 14 not in the key log, 4 without a handshake to \
         decrypt"
    );
}
