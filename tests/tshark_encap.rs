//! The encapsulation captures (`captures/encap/`, made by `scripts/make-encap-captures.sh`):
//! frame by frame, the TCP segments we decode (through PPPoE, 802.1Q/QinQ, GRE, GRETAP,
//! ERSPAN II/III, VXLAN, reassembled IPv4 and IPv6 fragments) must be those tshark decodes:
//! same frame, addresses, ports, raw sequence and acknowledgement numbers, flags and length.
//! Several of these captures wrap real packets in headers written by a script (the kernel here
//! has no GRE, ERSPAN, VLAN or PPPoE), so this agreement is what vouches for them.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use proxyscope::decode::{frag, Decoder};
use proxyscope::source::{CaptureFile, Sources};

/// (frame, src ip, src port, dst ip, dst port, seq, ack, flags, TCP length).
type Facts = BTreeSet<(u64, String, u16, String, u16, u32, u32, u8, u64)>;

fn encap_dir() -> PathBuf {
    repo().join("captures/encap")
}

fn tshark(path: &Path) -> Facts {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path);
    cmd.args(["-Y", "tcp", "-T", "fields", "-E", "separator=/t"]);
    for f in [
        "frame.number",
        "ip.src",
        "ipv6.src",
        "tcp.srcport",
        "ip.dst",
        "ipv6.dst",
        "tcp.dstport",
        "tcp.seq_raw",
        "tcp.ack_raw",
        "tcp.flags",
        "tcp.len",
        "frame.protocols",
    ] {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark failed on {}", path.display());
    let mut facts = Facts::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        // The innermost value: outer headers of a tunnel come first.
        let last = |i: usize| f[i].rsplit(',').next().unwrap_or("").to_string();
        // Inside a tunnel, the innermost network layer is the last of ip/ipv6 in the list.
        let protos = f[11];
        let inner_v6 = protos.rfind(":ipv6:").unwrap_or(0) > protos.rfind(":ip:").unwrap_or(0);
        let ip = |v4: usize, v6: usize| {
            if last(v4).is_empty() || inner_v6 {
                last(v6)
            } else {
                last(v4)
            }
        };
        let flags = u16::from_str_radix(last(9).trim_start_matches("0x"), 16).unwrap();
        facts.insert((
            last(0).parse().unwrap(),
            ip(1, 2),
            last(3).parse().unwrap(),
            ip(4, 5),
            last(6).parse().unwrap(),
            last(7).parse().unwrap(),
            last(8).parse().unwrap(),
            (flags & 0xff) as u8,
            last(10).parse().unwrap(),
        ));
    }
    facts
}

/// Our facts, and the fragment frames our decoder gave up.
fn ours(path: &Path) -> (Facts, u64) {
    let file = CaptureFile::open(path.to_str().unwrap(), 0).unwrap();
    let mut sources = Sources::new(vec![file]);
    let mut dec = Decoder::new(frag::Config::default());
    let mut facts = Facts::new();
    while let Some(frame) = sources.next_frame() {
        if let Ok(s) = dec.decode(&frame) {
            facts.insert((
                s.frame_no,
                s.src.ip.to_string(),
                s.src.port,
                s.dst.ip.to_string(),
                s.dst.port,
                s.seq,
                s.ack,
                s.flags.0,
                s.payload.len() as u64 + u64::from(s.missing),
            ));
        }
    }
    (facts, dec.fragments_dropped())
}

#[test]
fn every_segment_matches_tshark() {
    let files = captures_in(&encap_dir());
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for want in [
        "pppoe.pcap",
        "gre.pcap",
        "erspan.pcap",
        "vxlan.pcap",
        "vxlan-mysql.pcap",
        "ip-fragments.pcap",
        "vlan-asymmetric.pcap",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for path in &files {
        let t = tshark(path);
        let (o, dropped) = ours(path);
        assert!(!t.is_empty(), "{}: tshark found no TCP", path.display());
        let only_t: Vec<_> = t.difference(&o).take(5).collect();
        let only_o: Vec<_> = o.difference(&t).take(5).collect();
        assert!(
            only_t.is_empty() && only_o.is_empty(),
            "{}: only tshark {only_t:?}\nonly ours {only_o:?}",
            path.display()
        );
        assert_eq!(dropped, 0, "{}: fragments given up", path.display());
        eprintln!(
            "{}: {} TCP segments, all as tshark",
            path.display(),
            t.len()
        );
    }
}

#[test]
fn fragments_are_reassembled_not_skipped() {
    let (sums, run) = analyze_file(&encap_dir().join("ip-fragments.pcap"));
    assert_eq!(sums.len(), 3);
    for s in &sums {
        // Both sides closed with a FIN, and no byte went missing: every fragmented segment
        // (6000 bytes up, 9000 down) was put back together.
        assert_eq!(s.fins.len(), 2, "{s:?}");
    }
    assert_eq!(run.gaps, 0);
    assert_eq!(run.dropped.ip_fragments, 0);
    assert!(run.skipped.get("IP fragment").copied().unwrap_or(0) > 50);
}

#[test]
fn vxlan_fragments_from_the_kernel() {
    let (sums, run) = analyze_file(&encap_dir().join("vxlan.pcap"));
    assert_eq!(sums.len(), 2, "{sums:?}");
    let clients: BTreeSet<String> = sums.iter().map(|s| s.client.ip.to_string()).collect();
    assert_eq!(
        clients,
        ["10.42.0.1", "10.66.0.1"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // The IPv4 underlay's outer datagrams were fragmented by the kernel.
    assert!(run.skipped.get("IP fragment").copied().unwrap_or(0) > 5);
    assert_eq!(run.dropped.ip_fragments, 0);
    assert!(sums.iter().all(|s| s.fins.len() == 2));
}

#[test]
fn asymmetric_vlan_tagging_is_one_connection() {
    let (sums, run) = analyze_file(&encap_dir().join("vlan-asymmetric.pcap"));
    // Two connections tagged client to server only, one untagged both ways.
    assert_eq!(sums.len(), 3, "{sums:?}");
    assert_eq!(run.tcp.asymmetric_vlans, 2);
    let tagged = sums
        .iter()
        .filter(|s| s.vlan.as_deref() == Some("vlan 42") && s.vlan_one_way)
        .count();
    assert_eq!(tagged, 2);
    assert!(sums.iter().all(|s| s.fins.len() == 2));
}

#[test]
fn pppoe_discovery_is_counted_not_decoded() {
    let (sums, run) = analyze_file(&encap_dir().join("pppoe.pcap"));
    assert_eq!(sums.len(), 3);
    assert_eq!(run.skipped.get("not IP"), Some(&1));
    let vlans: BTreeSet<Option<String>> = sums.iter().map(|s| s.vlan.clone()).collect();
    assert_eq!(
        vlans,
        [None, Some("vlan 100".into()), Some("vlan 200/300".into())]
            .into_iter()
            .collect()
    );
}

#[test]
fn same_tuple_on_three_taggings_stays_three_connections() {
    let Some(dir) = shared_captures() else {
        return;
    };
    let (sums, run) = analyze_file(&dir.join("vlan-same-tuple-three-times.pcap"));
    assert_eq!(sums.len(), 3, "{sums:?}");
    assert_eq!(run.tcp.asymmetric_vlans, 0);
    let vlans: BTreeSet<Option<String>> = sums.iter().map(|s| s.vlan.clone()).collect();
    assert_eq!(vlans.len(), 3, "{vlans:?}");
}

#[test]
fn mysql_over_vxlan_is_dissected() {
    // Two passes, as the CLI runs: the same single connection either way.
    let (sums, run) = analyze_two_pass(&encap_dir().join("vxlan-mysql.pcap"), None);
    assert_eq!(sums.len(), 1, "{sums:?}");
    let s = &sums[0];
    assert_eq!(s.carries, proxyscope::dissect::Carries::Mysql);
    assert_eq!(s.server.to_string(), "10.42.0.2:3306");
    let m = s.mysql.as_ref().expect("MySQL facts");
    assert_eq!(m.user.as_deref(), Some("app"));
    assert_eq!(m.login_ok, Some(true));
    // INSERT, two SELECTs, QUIT.
    assert!(m.commands >= 4, "{m:?}");
    assert!(m.quit_frame.is_some() && m.in_flight.is_none());
    assert_eq!(
        s.bytes.s2c, 6302,
        "greeting, OKs and the 6000-byte row, all reassembled"
    );
    assert_eq!(run.gaps, 0);
}

#[test]
fn asymmetric_join_is_the_same_in_both_passes() {
    let (sums, run) = analyze_two_pass(&encap_dir().join("vlan-asymmetric.pcap"), None);
    assert_eq!(sums.len(), 3);
    assert_eq!(run.tcp.asymmetric_vlans, 2);
}
