//! Differential test against tshark, the reference decoder: on every capture in `captures/`,
//! `captures/encap/` and `../shared/captures/`, the TCP connections we find and, per connection, the frames carrying
//! FIN and RST and their senders must equal what tshark reports. Known, reviewed differences
//! are listed in `tests/tshark-exceptions.tsv`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;

/// Per connection: first frame → (FIN frames with sender, RST frames with sender).
type Frames = BTreeSet<(u64, String)>;
type Conns = BTreeMap<u64, (Frames, Frames)>;

struct Tshark {
    conns: Conns,
    tcp_frames: u64,
}

fn tshark(path: &Path) -> Tshark {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", "tcp", "-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "frame.number",
            "-e",
            "tcp.stream",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
        ])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.flags.fin",
            "-e",
            "tcp.flags.reset",
            "-e",
            "frame.protocols",
        ])
        .output()
        .expect("tshark runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "tshark failed on {}", path.display());
    let mut streams: BTreeMap<u64, (u64, Frames, Frames)> = BTreeMap::new();
    let mut tcp_frames = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let last = |s: &str| s.rsplit(',').next().unwrap_or("").to_string();
        let frame: u64 = f[0].parse().unwrap();
        let stream: u64 = last(f[1]).parse().unwrap();
        // Inside a tunnel, the innermost network layer is the last of ip/ipv6 in the list.
        let protos = f.get(7).copied().unwrap_or("");
        let inner_v6 = protos.rfind(":ipv6:").unwrap_or(0) > protos.rfind(":ip:").unwrap_or(0);
        let from = if !f[2].is_empty() && !inner_v6 {
            format!("{}:{}", last(f[2]), last(f[4]))
        } else {
            format!("[{}]:{}", last(f[3]), last(f[4]))
        };
        let flag = |s: &str| s == "1" || s.eq_ignore_ascii_case("true");
        tcp_frames += 1;
        let e = streams
            .entry(stream)
            .or_insert((frame, BTreeSet::new(), BTreeSet::new()));
        e.0 = e.0.min(frame);
        if flag(&last(f[5])) {
            e.1.insert((frame, from.clone()));
        }
        if flag(&last(f[6])) {
            e.2.insert((frame, from));
        }
    }
    Tshark {
        conns: streams
            .into_values()
            .map(|(first, f, r)| (first, (f, r)))
            .collect(),
        tcp_frames,
    }
}

/// Exceptions: file name → rule. `vlan-fold`: tshark puts the same 5-tuple on different VLANs
/// into one stream; we keep them apart, so ours are folded before comparing.
fn exceptions() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("tests/tshark-exceptions.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect()
}

fn ours(path: &Path, fold_vlans: bool) -> (Conns, u64) {
    let (sums, run) = analyze_file(path);
    let mut conns = Conns::new();
    let mut by_tuple: BTreeMap<(String, String), u64> = BTreeMap::new();
    for s in &sums {
        let mut key = s.start.frame;
        if fold_vlans {
            key = *by_tuple
                .entry((s.client.to_string(), s.server.to_string()))
                .or_insert(key);
        }
        let e = conns.entry(key).or_default();
        for m in &s.fins {
            e.0.insert((m.at.frame, m.from.to_string()));
        }
        for m in &s.rsts {
            e.1.insert((m.at.frame, m.from.to_string()));
        }
    }
    (conns, run.tcp.segments)
}

fn compare_dir(dir: &Path) -> usize {
    let exc = exceptions();
    let files = captures_in(dir);
    assert!(!files.is_empty(), "no captures in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let rule = exc.get(&name).map(String::as_str);
        let t = tshark(path);
        let (o, segments) = ours(path, rule == Some("vlan-fold"));
        if segments != t.tcp_frames {
            failures.push(format!(
                "{name}: {segments} TCP segments, tshark {}",
                t.tcp_frames
            ));
        }
        if o != t.conns {
            failures.push(format!("{name}:\n  ours   {o:?}\n  tshark {:?}", t.conns));
        }
        eprintln!(
            "{name}: {} connections, {} FIN frames, {} RST frames: {}",
            t.conns.len(),
            t.conns.values().map(|c| c.0.len()).sum::<usize>(),
            t.conns.values().map(|c| c.1.len()).sum::<usize>(),
            if o == t.conns {
                "same as tshark"
            } else {
                "DIFFERENT"
            }
        );
    }
    assert!(
        failures.is_empty(),
        "differences from tshark:\n{}",
        failures.join("\n")
    );
    files.len()
}

#[test]
fn bundled_captures_match_tshark() {
    let n = compare_dir(&repo().join("captures"));
    assert!(n >= 9, "expected the bundled scenario captures, found {n}");
}

#[test]
fn encapsulation_captures_match_tshark() {
    let n = compare_dir(&repo().join("captures/encap"));
    assert!(n >= 6, "expected the encapsulation captures, found {n}");
}

#[test]
fn shared_public_captures_match_tshark() {
    if let Some(dir) = shared_captures() {
        compare_dir(&dir);
    }
}
