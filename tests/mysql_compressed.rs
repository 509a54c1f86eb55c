//! The MySQL compressed protocol end to end:
//!
//! * picked up mid-stream: the real zlib session `../shared/captures/mysql-compressed.pcap` is
//!   cut after its login with `editcap` (at test time, in a temp dir) and must decode as the
//!   whole capture does after the cut, and as tshark decodes the whole capture (tshark 4.0 cannot
//!   follow the compressed protocol without the login: it reads the cut capture's first
//!   compressed header as a plain COM_SLEEP);
//! * plain captures cut the same way, at many points, must never be taken for compressed ones;
//! * zstd: `tests/crafted/mysql-zstd-crafted.pcap` is CRAFTED (no MySQL 8 server was at hand)
//!   from the same real capture by `scripts/craft-zstd-capture.py`: the login negotiates
//!   CLIENT_ZSTD_COMPRESSION_ALGORITHM with level 3 and the deflated payloads are re-compressed
//!   with libzstd. Every frame must decode in tshark at the TCP level as the original's does, and
//!   ours must decode it as the original, with and without the login.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use proxyscope::event::Kind;
use proxyscope::model::Summary;
use proxyscope::mysql::compress::{Algorithm, Compression};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("proxyscope-zcomp-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// `editcap -r`: frames `from`.. of `src`, renumbered from 1.
fn cut(src: &Path, from: u64, name: &str) -> PathBuf {
    let out = tmp(name);
    let st = Command::new("editcap")
        .arg("-r")
        .arg(src)
        .arg(&out)
        .arg(format!("{from}-{}", u32::MAX))
        .status()
        .expect("editcap runs (it comes with tshark)");
    assert!(st.success(), "editcap failed on {}", src.display());
    out
}

/// tshark's MySQL commands: (frame, command byte).
fn tshark_commands(path: &Path) -> Vec<(u64, u8)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", "mysql.command", "-T", "fields", "-e", "frame.number"])
        .args(["-e", "mysql.command"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success());
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let frame: u64 = f.next().unwrap().parse().unwrap();
        for c in f.next().unwrap_or("").split(',').filter(|c| !c.is_empty()) {
            v.push((frame, c.parse().unwrap()));
        }
    }
    v
}

/// Our MySQL events of every connection, by frame (shifted by `shift`), in capture order.
fn mysql_events(sums: &[Summary], from: u64, shift: u64) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = sums
        .iter()
        .flat_map(|s| &s.events)
        .filter(|e| e.event.kind.name().starts_with("mysql.") && e.event.at.frame >= from)
        .map(|e| (e.event.at.frame + shift, format!("{:?}", e.event.kind)))
        .collect();
    v.sort();
    v
}

fn commands(sums: &[Summary], from: u64, shift: u64) -> Vec<(u64, u8)> {
    let mut v: Vec<(u64, u8)> = sums
        .iter()
        .flat_map(|s| &s.events)
        .filter(|e| e.event.at.frame >= from)
        .filter_map(|e| match e.event.kind {
            Kind::Command { cmd, .. } => Some((e.event.at.frame + shift, cmd.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn compression(sums: &[Summary]) -> Vec<Option<Compression>> {
    sums.iter()
        .map(|s| s.mysql.as_ref().and_then(|m| m.compression))
        .collect()
}

/// The first frame with a command after the login: where the cut goes.
fn first_command(path: &Path) -> u64 {
    tshark_commands(path).first().expect("a command").0
}

#[test]
fn compressed_capture_cut_after_the_login_decodes_mid_stream_like_the_whole() {
    let Some(shared) = shared_captures() else {
        return;
    };
    let full = shared.join("mysql-compressed.pcap");
    let at = first_command(&full);
    let mid = cut(&full, at, "compressed-mid.pcap");
    let (whole, _) = analyze_file(&full);
    let (part, _) = analyze_file(&mid);
    assert_eq!(part.len(), 1);
    assert!(part[0].mid_stream);
    assert_eq!(
        compression(&part),
        vec![Some(Compression {
            algorithm: Some(Algorithm::Zlib),
            level: None,
            mid_stream: true,
        })]
    );
    assert_eq!(
        compression(&whole)
            .first()
            .copied()
            .flatten()
            .map(|c| c.mid_stream),
        Some(false)
    );
    // Every MySQL event after the cut, the query text and the result set included.
    let want = mysql_events(&whole, at, 0);
    let got = mysql_events(&part, 1, at - 1);
    assert!(
        want.iter().any(|(_, k)| k.contains("ResultSet")),
        "{want:?}"
    );
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(got, want);
    // tshark follows the whole capture's compressed commands: ours agree with it.
    let theirs: Vec<(u64, u8)> = tshark_commands(&full)
        .into_iter()
        .filter(|(f, _)| *f >= at)
        .collect();
    assert_eq!(commands(&part, 1, at - 1), theirs);
    // ... but not the cut one's (this is why the whole capture is the reference).
    let blind: Vec<(u64, u8)> = tshark_commands(&mid)
        .into_iter()
        .map(|(f, c)| (f + at - 1, c))
        .collect();
    if blind != theirs {
        eprintln!("tshark without the login: {blind:?}; with it: {theirs:?}");
    }
}

#[test]
fn plain_captures_cut_anywhere_are_not_taken_for_compressed() {
    let Some(shared) = shared_captures() else {
        return;
    };
    for name in ["mysql-app-mixed.pcap", "mysql-prepared-and-aborts.pcap"] {
        let full = shared.join(name);
        let (whole, _) = analyze_file(&full);
        assert!(compression(&whole).iter().all(Option::is_none));
        // Cut at every command of the first ones, and between them at arbitrary frames (in
        // the middle of result sets, at server bytes, at ACKs).
        let cmds = tshark_commands(&full);
        let mut cuts: Vec<u64> = cmds.iter().map(|c| c.0).take(12).collect();
        let last = cmds.last().map_or(1, |c| c.0);
        cuts.extend((2..last).step_by((last as usize / 12).max(1)));
        cuts.sort();
        cuts.dedup();
        let mut picked = 0;
        let n = cuts.len();
        for at in cuts {
            let mid = cut(&full, at, &format!("plain-{at}-{name}"));
            let (part, _) = analyze_file(&mid);
            assert!(
                compression(&part).iter().all(Option::is_none),
                "{name} cut at {at}: taken for compressed"
            );
            // A cut at a command: it is picked up and decoded like the whole capture.
            if cmds.iter().any(|c| c.0 == at) {
                let got = commands(&part, 1, at - 1);
                let want = commands(&whole, at, 0);
                assert_eq!(got, want, "{name} cut at {at}");
                picked += 1;
            }
            let _ = std::fs::remove_file(mid);
        }
        eprintln!("{name}: {n} cuts, {picked} at commands, none taken for compressed");
        assert!(picked >= 2, "{name}: only {picked} cuts at commands");
    }
}

/// tshark's TCP view of each frame: ports, flags, payload length, analysis flags, IPv4 and TCP
/// checksum status (checked).
fn tcp_view(path: &Path) -> Vec<Vec<String>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-T", "fields"])
        .args(["-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.flags"])
        .args([
            "-e",
            "tcp.len",
            "-e",
            "tcp.analysis.flags",
            "-e",
            "ip.checksum.status",
        ])
        .args([
            "-e",
            "tcp.checksum.status",
            "-e",
            "tcp.nxtseq",
            "-e",
            "tcp.ack",
        ])
        .output()
        .expect("tshark runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn crafted_zstd_capture_decodes_like_the_real_zlib_one() {
    let Some(shared) = shared_captures() else {
        return;
    };
    let real = shared.join("mysql-compressed.pcap");
    let crafted = repo().join("tests/crafted/mysql-zstd-crafted.pcap");

    // tshark sees the same TCP conversation, frame by frame: same ports and flags, no analysis
    // flag (no lost segment, no retransmission: the shifted sequence numbers are consistent),
    // good IPv4 checksums; payload lengths differ only where the script changed bytes (the
    // login and the re-compressed result set). The real capture's TCP checksums are blank
    // (loopback offload); the crafted ones are computed, so they are good.
    let (a, b) = (tcp_view(&real), tcp_view(&crafted));
    assert_eq!(a.len(), b.len());
    let mut changed = Vec::new();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x[..3], y[..3], "frame {}", i + 1);
        assert_eq!(x[4], "", "frame {}", i + 1);
        assert_eq!(y[4], "", "frame {}", i + 1);
        assert_eq!(
            (x[5].as_str(), y[5].as_str()),
            ("1", "1"),
            "frame {}",
            i + 1
        );
        assert_eq!(y[6], "1", "frame {}", i + 1);
        if x[3] != y[3] {
            changed.push(i + 1);
        }
    }
    let (ours_real, _) = analyze_file(&real);
    let (ours_crafted, _) = analyze_file(&crafted);
    // The handshake response and the deflated result set changed; nothing else.
    let result_frame = ours_real[0]
        .events
        .iter()
        .find(|e| matches!(e.event.kind, Kind::ResultSet { .. }))
        .map(|e| e.event.at.frame as usize);
    let login_frame = ours_real[0]
        .events
        .iter()
        .find(|e| matches!(e.event.kind, Kind::HandshakeResponse { .. }))
        .map(|e| e.event.at.frame as usize);
    let mut expect_changed: Vec<usize> =
        [login_frame, result_frame].into_iter().flatten().collect();
    expect_changed.sort();
    assert_eq!(changed, expect_changed);

    assert_eq!(
        compression(&ours_crafted),
        vec![Some(Compression {
            algorithm: Some(Algorithm::Zstd),
            level: Some(3),
            mid_stream: false,
        })]
    );
    assert_eq!(
        compression(&ours_real),
        vec![Some(Compression {
            algorithm: Some(Algorithm::Zlib),
            level: None,
            mid_stream: false,
        })]
    );
    // After the login, the same MySQL events at the same frames.
    let at = first_command(&real);
    let want = mysql_events(&ours_real, at, 0);
    assert!(want.iter().any(|(_, k)| k.contains("ResultSet")));
    assert_eq!(mysql_events(&ours_crafted, at, 0), want);
    let (r, c) = (ours_real[0].mysql.as_ref(), ours_crafted[0].mysql.as_ref());
    assert_eq!(r.map(|m| &m.user), c.map(|m| &m.user));
    assert_eq!(r.and_then(|m| m.login_ok), c.and_then(|m| m.login_ok));

    // And without the login: zstd recognised mid-stream by the frames' magic.
    let mid = cut(&crafted, at, "zstd-mid.pcap");
    let (part, _) = analyze_file(&mid);
    assert_eq!(
        compression(&part),
        vec![Some(Compression {
            algorithm: Some(Algorithm::Zstd),
            level: None,
            mid_stream: true,
        })]
    );
    assert_eq!(mysql_events(&part, 1, at - 1), want);
}
