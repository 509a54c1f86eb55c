//! Several capture files with their own clocks (issue 16, part 2), end to end on the #4500
//! lab run (`captures/lab/dirty-ssl*`): a second vantage point is made with Wireshark's
//! `editcap -t 2.5` (the same packets, the clock 2.5 s ahead), whole or with only part of the
//! traffic in common; the offset found must be the one applied, and the merged report must be
//! that of the single full capture (no doubled connection, no retransmission made of a second
//! observation, the 4 #4500 incidents). The lab's front and back legs share no segment: their
//! clocks stay unknown and unshifted, unless a third file shares segments with both, through
//! which they are set. A clock that drifts (the real ProxySQL 2.6.3 capture rewritten at
//! 200 ppm) is measured and corrected. With `PROXYSCOPE_LAB=1`, a fresh lab run written by
//! three tcpdump processes at once (each leg, and both) is merged with two clocks moved.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn lab(name: &str) -> PathBuf {
    repo().join("captures/lab").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxyscope-clocks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `editcap ARGS IN OUT` into the temp dir, once per name (tests run in parallel).
fn editcap(args: &[&str], input: &Path, out: &str) -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let p = tmp(out);
    if !p.exists() {
        let st = Command::new("editcap")
            .args(args)
            .arg(input)
            .arg(&p)
            .status()
            .expect("editcap (Wireshark) is installed");
        assert!(st.success(), "editcap {args:?}");
    }
    p
}

/// The full #4500 capture with its clock 2.5 s ahead.
fn shifted() -> PathBuf {
    editcap(&["-t", "2.5"], &lab("dirty-ssl.pcap.gz"), "shifted.pcap")
}

/// `proxyscope analyze --format json --keylog dirty-ssl.keylog [args]`: the document and stderr.
fn analyze(args: &[&str], files: &[&Path]) -> (Value, String) {
    analyze_with(&lab("dirty-ssl.keylog"), args, files)
}

/// `proxyscope analyze --format json --keylog KEYLOG [args]`: the document and stderr.
fn analyze_with(keylog: &Path, args: &[&str], files: &[&Path]) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["analyze", "-q", "--format", "json", "--keylog"])
        .arg(keylog)
        .args(args)
        .args(files)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    (serde_json::from_slice(&out.stdout).expect("JSON"), err)
}

/// What a connection is: its endpoints, leg and verdict (label, closer, how), and its
/// retransmission counts, sorted.
fn connections(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {} {} {} {}",
                c["client"],
                c["server"],
                c["leg"],
                c["verdict"]["label"],
                c["verdict"]["closed_by"],
                c["verdict"]["how"],
                c["retransmissions"]
            )
        })
        .collect();
    v.sort();
    v
}

fn signatures(doc: &Value) -> Vec<String> {
    doc["summary"]["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["signature"]["id"].to_string())
        .collect()
}

fn clock(doc: &Value, i: usize) -> &Value {
    &doc["summary"]["files"][i]["clock"]
}

fn secs(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The merged run must tell the story of the single full capture.
fn same_story(merged: &Value, single: &Value) {
    assert_eq!(connections(merged), connections(single));
    assert_eq!(signatures(merged), signatures(single));
    assert_eq!(
        merged["summary"]["retransmissions"],
        single["summary"]["retransmissions"]
    );
    assert_eq!(merged["summary"]["verdicts"], single["summary"]["verdicts"]);
    assert_eq!(
        merged["summary"]["tcp"]["segments"],
        single["summary"]["tcp"]["segments"]
    );
}

#[test]
fn a_copy_with_its_clock_ahead_is_found_shifted_back_and_not_counted_twice() {
    let full = lab("dirty-ssl.pcap.gz");
    let (single, _) = analyze(&[], &[&full]);
    assert_eq!(signatures(&single).len(), 4, "the lab's 4 #4500 incidents");
    assert!(single["summary"]["files"][0].get("clock").is_none());
    let (merged, err) = analyze(&["-v"], &[&full, &shifted()]);
    let c = clock(&merged, 1);
    assert_eq!(c["basis"], "matched segments");
    assert!((secs(&c["offset_s"]) - 2.5).abs() < 1e-3, "{c}");
    assert!(secs(&c["spread_s"]) < 1e-3, "{c}");
    assert!(c["matches"].as_u64().unwrap() > 100, "{c}");
    // 3 s of capture: too short to tell a drift.
    assert!(c["drift_ppm"].is_null());
    assert_eq!(clock(&merged, 0)["basis"], "reference");
    assert_eq!(clock(&merged, 0)["offset_s"], 0.0);
    same_story(&merged, &single);
    // Every segment of the copy was a second observation, none a retransmission.
    assert_eq!(
        merged["summary"]["tcp"]["duplicate_observations"],
        single["summary"]["tcp"]["segments"]
    );
    assert_eq!(
        merged["summary"]["capture_start"],
        single["summary"]["capture_start"]
    );
    assert_eq!(
        merged["summary"]["capture_end"],
        single["summary"]["capture_end"]
    );
    assert!(err.contains("clock +2.500000 s against"), "{err}");
}

#[test]
fn files_that_overlap_in_part_give_the_story_of_the_whole_capture() {
    let full = lab("dirty-ssl.pcap.gz");
    let (single, _) = analyze(&[], &[&full]);
    // The frontend leg on the true clock, both legs on a clock 2.5 s ahead: only the
    // frontend's segments are in both.
    let front = lab("dirty-ssl.front.pcap.gz");
    let (merged, _) = analyze(&[], &[&front, &shifted()]);
    let c = clock(&merged, 1);
    assert_eq!(c["basis"], "matched segments");
    assert!((secs(&c["offset_s"]) - 2.5).abs() < 1e-3, "{c}");
    same_story(&merged, &single);
    let front_segments = analyze(&[], &[&front]).0["summary"]["tcp"]["segments"].clone();
    assert_eq!(
        merged["summary"]["tcp"]["duplicate_observations"],
        front_segments
    );
    // The backend leg only, cut to its second half, ahead; the full capture first: the
    // reference is the full capture, the story still its own.
    let back_half = editcap(
        // From 10:20:32.7 UTC (the lab's clock), past the second incident.
        &["-t", "2.5", "-A", "1795515632.7"],
        &lab("dirty-ssl.back.pcap.gz"),
        "back-half.pcap",
    );
    let (merged, _) = analyze(&[], &[&full, &back_half]);
    let c = clock(&merged, 1);
    assert!((secs(&c["offset_s"]) - 2.5).abs() < 1e-3, "{c}");
    same_story(&merged, &single);
    // The copy first: the full capture's clock is 2.5 s behind it.
    let (merged, _) = analyze(&[], &[&shifted(), &full]);
    let c = clock(&merged, 1);
    assert!((secs(&c["offset_s"]) + 2.5).abs() < 1e-3, "{c}");
    same_story(&merged, &single);
}

#[test]
fn a_given_offset_overrides_the_estimate() {
    let full = lab("dirty-ssl.pcap.gz");
    let (single, _) = analyze(&[], &[&full]);
    let copy = shifted();
    // By file name, and wrong by 0.1 s: the copy's frames land 0.1 s late, too late to be
    // second observations.
    let (merged, _) = analyze(&["--clock-offset", "shifted.pcap=2.4"], &[&full, &copy]);
    let c = clock(&merged, 1);
    assert_eq!(c["basis"], "given");
    assert!((secs(&c["offset_s"]) - 2.4).abs() < 1e-9, "{c}");
    let end = |d: &Value| {
        let s = d["summary"]["capture_end"].as_str().unwrap().to_string();
        // "...:34.172787000Z": seconds of the minute.
        s.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('Z')
            .parse::<f64>()
            .unwrap()
    };
    assert!((end(&merged) - end(&single) - 0.1).abs() < 1e-6);
    assert!(merged["summary"]["tcp"]["duplicate_observations"].is_null());
    // By the path as given, exact: the story of the single capture.
    let arg = format!("{}=2.5", copy.display());
    let (merged, _) = analyze(&["--clock-offset", &arg], &[&full, &copy]);
    assert_eq!(clock(&merged, 1)["basis"], "given");
    same_story(&merged, &single);
    // A name that is not among the files is an error.
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["analyze", "-q", "--clock-offset", "nosuch.pcap=1"])
        .arg(&full)
        .arg(&copy)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch.pcap"));
}

#[test]
fn legs_that_share_no_segment_keep_their_clocks() {
    let (single, _) = analyze(&[], &[&lab("dirty-ssl.pcap.gz")]);
    let front = lab("dirty-ssl.front.pcap.gz");
    let back = lab("dirty-ssl.back.pcap.gz");
    let (merged, _) = analyze(&[], &[&front, &back]);
    let c = clock(&merged, 1);
    assert_eq!(c["basis"], "none");
    assert_eq!(c["offset_s"], 0.0);
    assert_eq!(c["matches"], 0);
    // Not shifted: the two legs are the full capture again.
    same_story(&merged, &single);
    assert_eq!(
        merged["summary"]["capture_end"],
        single["summary"]["capture_end"]
    );
    assert!(merged["summary"]["tcp"]["duplicate_observations"].is_null());
}

#[test]
fn the_text_report_and_the_timeline_say_and_use_the_offset() {
    let full = lab("dirty-ssl.pcap.gz");
    let copy = shifted();
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["analyze", "-q", "--width", "200", "--keylog"])
        .arg(lab("dirty-ssl.keylog"))
        .arg(&full)
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "file {}: pcapng, link ETHERNET, 1378 frames, clock +2.500000 s against {} (",
            copy.display(),
            full.display()
        )),
        "{text}"
    );
    assert!(text.contains("1378 segments seen again from another file"));
    // The timeline of both files is the full capture's, event for event.
    let timeline = |files: &[&Path]| {
        let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
            .args(["timeline", "-q", "--format", "jsonl", "--keylog"])
            .arg(lab("dirty-ssl.keylog"))
            .args(files)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let one = timeline(&[&full]);
    assert!(one.lines().count() > 1000);
    assert_eq!(timeline(&[&full, &copy]), one);
}

/// The #4500 capture as a second capture point 3 ms down the wire from the first would write
/// it, its clock 2.5 s ahead: a segment in one direction of its connection (sender's endpoint
/// lower) is seen 3 ms later there, in the other 3 ms earlier (µs pcap, Ethernet).
fn three_ms_away() -> PathBuf {
    use proxyscope::source::CaptureFile;
    let p = tmp("three-ms-away.pcap");
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut f = CaptureFile::open(lab("dirty-ssl.pcap.gz").to_str().unwrap(), 0).unwrap();
    while f.advance() {
        let fr = f.current().unwrap();
        let seg = proxyscope::decode::decode(&fr).expect("all TCP");
        let way: i64 = if seg.src < seg.dst { 1 } else { -1 };
        let ts = fr.ts.0 + 2_500_000_000 + way * 3_000_000;
        for v in [
            (ts / 1_000_000_000) as u32,
            (ts % 1_000_000_000 / 1000) as u32,
            fr.data.len() as u32,
            fr.orig_len,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(fr.data);
    }
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn the_one_way_delay_between_two_capture_points_does_not_bias_the_offset() {
    let full = lab("dirty-ssl.pcap.gz");
    let (single, _) = analyze(&[], &[&full]);
    let (merged, _) = analyze(&[], &[&full, &three_ms_away()]);
    let c = clock(&merged, 1);
    assert_eq!(c["basis"], "matched segments");
    // The median of all deltas would be 2.497 or 2.503 s (whichever direction has more
    // matches); taking each connection's two directions together gives 2.5 s.
    assert!((secs(&c["offset_s"]) - 2.5).abs() < 1e-4, "{c}");
    // The spread shows the delay: half the deltas are 6 ms above the other half.
    assert!((secs(&c["spread_s"]) - 0.006).abs() < 1e-3, "{c}");
    // Every segment of the second point is a second observation (within 2 × 6 ms + 1 ms).
    assert_eq!(
        merged["summary"]["tcp"]["duplicate_observations"],
        single["summary"]["tcp"]["segments"]
    );
}

/// The clocks of three vantage points, as on three hosts: the application host's capture of the
/// frontend leg (the reference), the database host's of the backend leg (0.8 s behind), and
/// the proxy host's of both (1.25 s ahead), given in that order.
fn three_hosts(front: &Path, back: &Path, both: &Path, tag: &str) -> [PathBuf; 3] {
    let app = editcap(&["-t", "0"], front, &format!("{tag}-app.pcap"));
    let db = editcap(&["-t", "-0.8"], back, &format!("{tag}-db.pcap"));
    let proxy = editcap(&["-t", "1.25"], both, &format!("{tag}-proxy.pcap"));
    [app, db, proxy]
}

/// The database host's file shares no segment with the first (the application host's), only
/// with the proxy host's: its clock is set through that one.
fn check_three_hosts(merged: &Value, single: &Value, frames: u64) {
    assert_eq!(clock(merged, 0)["basis"], "reference");
    let proxy = clock(merged, 2);
    assert_eq!(proxy["basis"], "matched segments", "{proxy}");
    assert!((secs(&proxy["offset_s"]) - 1.25).abs() < 5e-6, "{proxy}");
    assert!(proxy.get("via").is_none(), "{proxy}");
    let db = clock(merged, 1);
    assert_eq!(db["basis"], "matched segments", "{db}");
    assert_eq!(db["via"], 2, "{db}");
    assert!((secs(&db["offset_s"]) + 0.8).abs() < 1e-5, "{db}");
    same_story(merged, single);
    // Every frame of the two one-leg files was seen again in the proxy host's file.
    assert_eq!(merged["summary"]["tcp"]["duplicate_observations"], frames);
}

/// Per connection (client port, server port) and file: its frames and its first FIN's frame,
/// as tshark reads each file.
type Seen = std::collections::BTreeMap<(u64, u64, usize), (u64, Option<u64>)>;

fn tshark_seen(files: &[&Path]) -> Seen {
    let mut seen = Seen::new();
    for (i, f) in files.iter().enumerate() {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(f)
            .args([
                "-Y",
                "tcp",
                "-T",
                "fields",
                "-e",
                "frame.number",
                "-e",
                "tcp.srcport",
            ])
            .args(["-e", "tcp.dstport", "-e", "tcp.flags.fin"])
            .output()
            .expect("tshark is installed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: Vec<&str> = line.split('\t').collect();
            let n = |k: usize| v[k].parse::<u64>().unwrap();
            let (a, b) = (n(1), n(2));
            let e = seen.entry((a.min(b), a.max(b), i)).or_insert((0, None));
            e.0 += 1;
            if matches!(v[3], "1" | "True") && e.1.is_none() {
                e.1 = Some(n(0));
            }
        }
    }
    seen
}

/// Each connection's `seen_in`: every file that saw it, with its own frame numbers, as tshark
/// counts them.
fn check_seen_in(merged: &Value, files: &[&Path]) {
    let want = tshark_seen(files);
    let mut got = Seen::new();
    for c in merged["connections"].as_array().unwrap() {
        let (a, b) = (
            c["client_port"].as_u64().unwrap(),
            c["server_port"].as_u64().unwrap(),
        );
        for v in c["seen_in"].as_array().expect("seen_in with several files") {
            let file = v["file"].as_u64().unwrap() as usize;
            let fin = v["fin"].get("frame").and_then(Value::as_u64);
            got.insert(
                (a.min(b), a.max(b), file),
                (v["packets"].as_u64().unwrap(), fin),
            );
        }
    }
    assert_eq!(got, want);
}

#[test]
fn a_file_sharing_segments_only_with_another_is_set_through_it() {
    let [app, db, proxy] = three_hosts(
        &lab("dirty-ssl.front.pcap.gz"),
        &lab("dirty-ssl.back.pcap.gz"),
        &lab("dirty-ssl.pcap.gz"),
        "bundled",
    );
    let (single, _) = analyze(&[], &[&lab("dirty-ssl.pcap.gz")]);
    let (merged, err) = analyze(&["-v"], &[&app, &db, &proxy]);
    check_three_hosts(&merged, &single, 1378);
    check_seen_in(&merged, &[&app, &db, &proxy]);
    assert!(
        err.contains(&format!(
            "against {} through {}",
            app.display(),
            proxy.display()
        )),
        "{err}"
    );
    // Without the proxy host's file nothing links the two: both clocks stay as they are, and
    // the report says so.
    let (apart, _) = analyze(&[], &[&app, &db]);
    assert_eq!(clock(&apart, 1)["basis"], "none");
}

/// A copy of a classic pcap whose clock runs `ppm` fast and starts `offset_s` ahead.
fn drifted(input: &Path, offset_s: f64, ppm: f64, out: &str) -> PathBuf {
    let b = std::fs::read(input).unwrap();
    let magic = u32::from_le_bytes(b[..4].try_into().unwrap());
    let unit: i64 = match magic {
        0xa1b2_c3d4 => 1_000,
        0xa1b2_3c4d => 1,
        m => panic!(
            "{}: not a little-endian classic pcap ({m:#x})",
            input.display()
        ),
    };
    let mut o = b[..24].to_vec();
    let (mut i, mut t0) = (24, None);
    while i + 16 <= b.len() {
        let word = |k: usize| u32::from_le_bytes(b[i + 4 * k..i + 4 * k + 4].try_into().unwrap());
        let t = i64::from(word(0)) * 1_000_000_000 + i64::from(word(1)) * unit;
        let t0 = *t0.get_or_insert(t);
        let moved = t + (offset_s * 1e9) as i64 + ((t - t0) as f64 * ppm / 1e6) as i64;
        let frac = moved.rem_euclid(1_000_000_000) / unit;
        o.extend_from_slice(&((moved.div_euclid(1_000_000_000)) as u32).to_le_bytes());
        o.extend_from_slice(&(frac as u32).to_le_bytes());
        let len = word(2) as usize;
        o.extend_from_slice(&b[i + 8..i + 16 + len]);
        i += 16 + len;
    }
    let p = tmp(out);
    std::fs::write(&p, o).unwrap();
    p
}

#[test]
fn a_drifting_clock_is_measured_and_corrected() {
    let Some(shared) = shared_captures() else {
        eprintln!("SKIPPED: ../shared/captures is not here");
        return;
    };
    let dir = shared.join("proxysql/bug_plain_stream");
    let real = dir.join("bug_plain_stream.pcap");
    let keys = dir.join("keys.log");
    // 200 ppm fast, 0.3 s ahead: over the capture's 12.6 s the clock gains 2.5 ms, more than
    // the window in which a second observation is recognised without the correction.
    let copy = drifted(&real, 0.3, 200.0, "drift-200ppm.pcap");
    let (single, _) = analyze_with(&keys, &[], &[&real]);
    let (merged, err) = analyze_with(&keys, &["-v"], &[&real, &copy]);
    let c = clock(&merged, 1);
    assert_eq!(c["basis"], "matched segments", "{c}");
    let drift = secs(&c["drift_ppm"]);
    assert!((drift - 200.0).abs() < 1.0, "{c}");
    // The offset holds at `offset_at`; back at the first frame it is the 0.3 s applied.
    let at = c["offset_at"].as_str().expect("offset_at with a drift");
    let first = single["summary"]["capture_start"].as_str().unwrap();
    let since = |a: &str| -> f64 {
        // Both are RFC 3339 UTC times of the same minute in this capture.
        let s = |x: &str| -> f64 {
            let t = x.split('T').nth(1).unwrap().trim_end_matches('Z');
            let mut p = t.split(':');
            let (h, m, s): (f64, f64, f64) = (
                p.next().unwrap().parse().unwrap(),
                p.next().unwrap().parse().unwrap(),
                p.next().unwrap().parse().unwrap(),
            );
            h * 3600.0 + m * 60.0 + s
        };
        s(a) - s(first)
    };
    let at_first = secs(&c["offset_s"]) - drift * since(at) / 1e6;
    assert!((at_first - 0.3).abs() < 20e-6, "{at_first} {c}");
    assert!(err.contains("drift +200."), "{err}");
    // Corrected, every frame of the copy is a second observation, and the story is the same.
    assert_eq!(
        merged["summary"]["tcp"]["duplicate_observations"],
        single["summary"]["frames"]
    );
    same_story(&merged, &single);
}

/// Runs `scripts/lab-scenario.sh SCENARIO` into the temp dir `dir`, with `PROXYSCOPE_LAB=1`
/// (else None: the test is skipped).
fn fresh_lab(scenario: &str, dir: &str) -> Option<PathBuf> {
    if std::env::var("PROXYSCOPE_LAB").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: set PROXYSCOPE_LAB=1 to capture a lab run afresh (scripts/test.sh does)"
        );
        return None;
    }
    let out = tmp(dir);
    let status = Command::new(repo().join("scripts/lab-scenario.sh"))
        .arg(scenario)
        .arg(&out)
        .env("PROXYSCOPE_BIN", env!("CARGO_BIN_EXE_proxyscope"))
        .status()
        .expect("run scripts/lab-scenario.sh");
    assert!(
        status.success(),
        "scripts/lab-scenario.sh {scenario} failed"
    );
    Some(out)
}

#[test]
fn three_capture_processes_of_a_fresh_lab_run_merge_into_one_story() {
    let Some(out) = fresh_lab("dirty-ssl", "lab") else {
        return;
    };
    let file = |ext: &str| out.join(format!("dirty-ssl.{ext}"));
    let keys = file("keylog");
    let [app, db, proxy] = three_hosts(
        &file("front.pcap"),
        &file("back.pcap"),
        &file("pcap"),
        "fresh",
    );
    let (single, _) = analyze_with(&keys, &[], &[&file("pcap")]);
    let (merged, _) = analyze_with(&keys, &[], &[&app, &db, &proxy]);
    // Three processes stamp the same packet a microsecond apart at times: the offsets are
    // found to within a few microseconds, and the story is still the single capture's.
    let legs: u64 = [&app, &db]
        .iter()
        .map(|p| {
            let (d, _) = analyze_with(&keys, &[], &[p]);
            d["summary"]["frames"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(Some(legs), single["summary"]["frames"].as_u64());
    check_three_hosts(&merged, &single, legs);
    check_seen_in(&merged, &[&app, &db, &proxy]);
    assert_eq!(signatures(&single).len(), signatures(&merged).len());
    assert!(!signatures(&single).is_empty());
}

#[test]
fn legs_captured_apart_are_aligned_by_the_payloads_the_proxy_relays() {
    // Plaintext on both legs, a distinct statement per query; the frontend leg captured as on
    // the application host, the backend leg as on the database host with its clock 0.8 s
    // behind, and nothing captured in between.
    let Some(out) = fresh_lab("plain-relay", "relay") else {
        return;
    };
    let file = |ext: &str| out.join(format!("plain-relay.{ext}"));
    let app = file("front.pcap");
    let db = editcap(&["-t", "-0.8"], &file("back.pcap"), "relay-db.pcap");
    let none = out.join("no.keylog");
    std::fs::write(&none, "").unwrap();
    let (single, _) = analyze_with(&none, &[], &[&file("pcap")]);
    let (merged, _) = analyze_with(&none, &[], &[&app, &db]);
    let c = clock(&merged, 1);
    assert_eq!(c["basis"], "relayed payloads", "{c}");
    assert!((secs(&c["offset_s"]) + 0.8).abs() < 1e-3, "{c}");
    assert!(c["matches"].as_u64().unwrap() >= 100, "{c}");
    // Aligned, the two legs give the same verdicts and incidents as the capture of both, and
    // pair across the files: all requests but those the proxy relayed faster than the
    // estimate's error (the difference between its delays each way, tens of µs on loopback)
    // at most 2 %.
    same_story(&merged, &single);
    let paired = |d: &Value| {
        d["summary"]["proxies"][0]["paired_requests"]
            .as_u64()
            .unwrap()
    };
    assert!(paired(&single) > 100);
    assert!(
        paired(&merged) * 50 >= paired(&single) * 49,
        "{} of {}",
        paired(&merged),
        paired(&single)
    );
    assert!(paired(&merged) <= paired(&single));
    // Unshifted (as before this estimate), the backend leg's requests come before the
    // frontend's and the story is another.
    let (apart, _) = analyze_with(&none, &["--clock-offset", "relay-db.pcap=0"], &[&app, &db]);
    assert_ne!(connections(&apart), connections(&single));
}
