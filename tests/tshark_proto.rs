//! Differential test of the MySQL and TLS decoders against tshark: per connection, the sequence
//! of MySQL commands, the ERR codes, the TLS handshake message types, the negotiated version and
//! cipher, and the plaintext alert descriptions must equal tshark's (`-d tcp.port==P,mysql` for
//! every port on which we found a MySQL server). Reviewed differences are listed, with the reason,
//! in `tests/tshark-proto-exceptions.tsv`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;
use proxyscope::dissect::Carries;
use proxyscope::event::Kind;

#[derive(Debug, Default, PartialEq, Eq, Clone)]
struct Proto {
    commands: Vec<u8>,
    errors: Vec<u16>,
    handshakes: Vec<u8>,
    version: Option<u16>,
    cipher: Option<u16>,
    alerts: Vec<u8>,
}

fn hex_or_dec(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn list(s: &str) -> Vec<u64> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .filter_map(hex_or_dec)
        .collect()
}

fn tshark(path: &Path, ports: &BTreeSet<u16>, keylog: Option<&Path>) -> BTreeMap<u64, Proto> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path);
    if let Some(k) = keylog {
        cmd.arg("-o")
            .arg(format!("tls.keylog_file:{}", k.display()));
    }
    for p in ports {
        cmd.args(["-d", &format!("tcp.port=={p},mysql")]);
    }
    cmd.args(["-Y", "tcp", "-T", "fields", "-E", "separator=/t"]);
    for f in [
        "frame.number",
        "tcp.stream",
        "mysql.command",
        "mysql.error_code",
        "tls.handshake.type",
        "tls.handshake.version",
        "tls.handshake.extensions.supported_version",
        "tls.handshake.ciphersuite",
        "tls.alert_message.desc",
    ] {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "tshark failed on {}", path.display());
    let mut by_stream: BTreeMap<u64, (u64, Proto)> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let frame: u64 = get(0).parse().unwrap();
        let stream = list(get(1)).last().copied().unwrap_or(0);
        let e = by_stream.entry(stream).or_insert((frame, Proto::default()));
        e.0 = e.0.min(frame);
        let p = &mut e.1;
        p.commands.extend(list(get(2)).into_iter().map(|c| c as u8));
        p.errors.extend(list(get(3)).into_iter().map(|c| c as u16));
        let types = list(get(4));
        p.handshakes.extend(types.iter().map(|t| *t as u8));
        if types.contains(&2) {
            // The frame's ServerHello: its version (supported_versions wins) and cipher.
            let sv = list(get(6));
            let v = list(get(5));
            p.version = sv.first().or(v.first()).map(|x| *x as u16);
            p.cipher = list(get(7)).first().map(|x| *x as u16);
        }
        p.alerts.extend(list(get(8)).into_iter().map(|a| a as u8));
    }
    by_stream.into_values().collect()
}

fn ours(path: &Path, keylog: Option<&Path>) -> (BTreeMap<u64, Proto>, BTreeSet<u16>) {
    let (sums, _) = analyze_with_keys(path, keylog);
    let mut map = BTreeMap::new();
    let mut ports = BTreeSet::new();
    for s in &sums {
        assert_eq!(
            s.events_dropped,
            0,
            "{}: connection {} kept too few events to compare",
            path.display(),
            s.id
        );
        if s.carries == Carries::Mysql {
            ports.insert(s.server.port);
        }
        let mut p = Proto::default();
        for e in &s.events {
            match &e.event.kind {
                Kind::Command { cmd, .. } => p.commands.push(*cmd),
                Kind::Err { code, .. } | Kind::GreetingErr { code, .. } => p.errors.push(*code),
                Kind::ClientHello { .. } => p.handshakes.push(1),
                Kind::ServerHello {
                    version,
                    cipher,
                    retry,
                    ..
                } => {
                    p.handshakes.push(2);
                    if !retry {
                        p.version = Some(*version);
                        p.cipher = Some(*cipher);
                    }
                }
                Kind::Certificate { .. } => p.handshakes.push(11),
                Kind::Handshake { msg } => p.handshakes.push(*msg),
                Kind::Alert { desc, .. } => p.alerts.push(*desc),
                _ => {}
            }
        }
        map.insert(s.start.frame, p);
    }
    (map, ports)
}

/// `file<TAB>first frame<TAB>field<TAB>reason`: a reviewed difference; the field is not compared
/// for that connection.
fn exceptions() -> BTreeSet<(String, u64, String)> {
    let text = std::fs::read_to_string(repo().join("tests/tshark-proto-exceptions.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[2].to_string())
        })
        .collect()
}

/// Compares every capture in `dir`; with `keys`, only those with a key log beside them
/// (`NAME.keylog`), decrypting on both sides.
fn compare_dir(dir: &Path, keys: bool) {
    let exc = exceptions();
    let mut failures = Vec::new();
    for path in captures_in(dir) {
        let keylog = keys
            .then(|| path.with_extension("keylog"))
            .filter(|k| k.is_file());
        if keys && keylog.is_none() {
            continue;
        }
        let mut name = path.file_name().unwrap().to_string_lossy().to_string();
        if keys {
            name.push_str(" (decrypted)");
        }
        let (o, ports) = ours(&path, keylog.as_deref());
        let t = tshark(&path, &ports, keylog.as_deref());
        let mut compared = 0;
        for (first, mine) in &o {
            let Some(theirs) = t.get(first) else {
                continue; // connection matching is the TCP differential test's job
            };
            let fields: [(&str, bool); 6] = [
                ("commands", mine.commands == theirs.commands),
                ("errors", mine.errors == theirs.errors),
                ("handshakes", mine.handshakes == theirs.handshakes),
                ("version", mine.version == theirs.version),
                ("cipher", mine.cipher == theirs.cipher),
                ("alerts", mine.alerts == theirs.alerts),
            ];
            for (field, same) in fields {
                if !same && !exc.contains(&(name.clone(), *first, field.to_string())) {
                    failures.push(format!(
                        "{name} connection at frame {first}: {field} differ\n  ours   {mine:?}\n  tshark {theirs:?}"
                    ));
                }
            }
            compared += 1;
        }
        let cmds: usize = o.values().map(|p| p.commands.len()).sum();
        let hs: usize = o.values().map(|p| p.handshakes.len()).sum();
        eprintln!("{name}: {compared} connections compared, {cmds} MySQL commands, {hs} TLS handshake messages");
    }
    assert!(
        failures.is_empty(),
        "differences from tshark:\n{}",
        failures.join("\n")
    );
}

#[test]
fn bundled_captures_decode_like_tshark() {
    compare_dir(&repo().join("captures"), false);
}

#[test]
fn shared_public_captures_decode_like_tshark() {
    if let Some(dir) = shared_captures() {
        compare_dir(&dir, false);
    }
}

#[test]
fn decrypted_captures_decode_like_tshark() {
    compare_dir(&repo().join("captures"), true);
    if let Some(dir) = shared_captures() {
        compare_dir(&dir, true);
    }
}
