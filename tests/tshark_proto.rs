//! Differential test of the MySQL and TLS decoders against tshark: per connection, the server
//! version and thread id of the greeting, the users (login and COM_CHANGE_USER), the sequence of
//! MySQL commands, every COM_QUERY / COM_STMT_PREPARE text, the ERR codes and SQLSTATEs, the TLS
//! handshake message types, the negotiated version and cipher, and the alert descriptions must
//! equal tshark's (`-d tcp.port==P,mysql` for every port on which we found a MySQL server), with
//! and without key logs. Reviewed differences are listed, with the reason, in
//! `tests/tshark-proto-exceptions.tsv`; each run prints the per-field agreement counts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;
use proxyscope::dissect::Carries;
use proxyscope::event::{Com, Kind};

#[derive(Debug, Default, PartialEq, Eq, Clone)]
struct Proto {
    server_version: Vec<String>,
    thread_id: Vec<u32>,
    users: Vec<String>,
    commands: Vec<u8>,
    queries: Vec<String>,
    sqlstates: Vec<String>,
    errors: Vec<u16>,
    handshakes: Vec<u8>,
    version: Option<u16>,
    cipher: Option<u16>,
    alerts: Vec<u8>,
}

const COM_QUERY: Com = Com::of(proxyscope::event::Command::COM_QUERY);
const COM_STMT_PREPARE: Com = Com::of(proxyscope::event::Command::COM_STMT_PREPARE);

/// The fields compared, in report order.
const FIELDS: [&str; 12] = [
    "server_version",
    "thread_id",
    "users",
    "commands",
    "queries",
    "errors",
    "sqlstates",
    "handshakes",
    "version",
    "cipher",
    "alerts",
    "any",
];

fn hex_or_dec(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Values of one field in one frame: tshark joins them with the aggregator (`AGG`, a character
/// no query text holds) and writes `\n`, `\r`, `\t` and `\\` escaped.
fn strings(s: &str) -> Vec<String> {
    s.split(AGG)
        .filter(|x| !x.is_empty())
        .map(|x| {
            let mut out = String::new();
            let mut it = x.chars();
            while let Some(c) = it.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match it.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                }
            }
            out
        })
        .collect()
}

const AGG: char = '\u{1e}';

fn list(s: &str) -> Vec<u64> {
    s.split(AGG)
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
    cmd.args(["-E", &format!("aggregator={AGG}")]);
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
        "mysql.version",
        "mysql.thread_id",
        "mysql.user",
        "mysql.query",
        "mysql.sqlstate",
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
        p.server_version.extend(strings(get(9)));
        p.thread_id
            .extend(list(get(10)).into_iter().map(|t| t as u32));
        p.users.extend(strings(get(11)));
        p.queries.extend(strings(get(12)));
        p.sqlstates.extend(strings(get(13)));
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
                Kind::Greeting {
                    version, thread_id, ..
                } => {
                    p.server_version.push(version.clone());
                    p.thread_id.push(*thread_id);
                }
                Kind::HandshakeResponse { user, .. } => p.users.push(user.clone()),
                Kind::Command {
                    cmd, text, user, ..
                } => {
                    p.commands.push(cmd.0);
                    p.users.extend(user.clone());
                    if matches!(*cmd, COM_QUERY | COM_STMT_PREPARE) {
                        p.queries.extend(text.clone());
                    }
                }
                Kind::Err { code, sqlstate, .. } => {
                    p.errors.push(*code);
                    if !sqlstate.is_empty() {
                        p.sqlstates.push(sqlstate.clone());
                    }
                }
                Kind::GreetingErr { code, .. } => p.errors.push(*code),
                Kind::ClientHello { .. } => p.handshakes.push(1),
                Kind::ServerHello {
                    version,
                    cipher,
                    retry,
                    ..
                } => {
                    p.handshakes.push(2);
                    if !retry {
                        p.version = Some(version.0);
                        p.cipher = Some(cipher.0);
                    }
                }
                Kind::Certificate { .. } => p.handshakes.push(11),
                Kind::Handshake { msg } => p.handshakes.push(msg.0),
                Kind::Alert { desc, .. } => p.alerts.push(desc.0),
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

/// The key log beside a capture: `NAME.keylog` (NAME without `.pcap`, `.pcapng`, `.gz`), else
/// `keys.log` in its directory (the ProxySQL captures).
fn keylog_of(path: &Path) -> Option<std::path::PathBuf> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .trim_end_matches(".gz")
        .trim_end_matches(".pcapng")
        .trim_end_matches(".pcap");
    [
        path.with_file_name(format!("{stem}.keylog")),
        path.with_file_name("keys.log"),
    ]
    .into_iter()
    .find(|k| k.is_file())
}

/// Compares every capture in `dir`; with `keys`, only those with a key log beside them
/// (`NAME.keylog`), decrypting on both sides.
fn compare_dir(dir: &Path, keys: bool) -> Vec<String> {
    let exc = exceptions();
    let mut failures = Vec::new();
    // Per field: connections equal, different as reviewed, different.
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for path in captures_in(dir) {
        let keylog = keys.then(|| keylog_of(&path)).flatten();
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
            let fields: [(&str, bool); 11] = [
                (
                    "server_version",
                    mine.server_version == theirs.server_version,
                ),
                ("thread_id", mine.thread_id == theirs.thread_id),
                ("users", mine.users == theirs.users),
                ("commands", mine.commands == theirs.commands),
                ("queries", mine.queries == theirs.queries),
                ("sqlstates", mine.sqlstates == theirs.sqlstates),
                ("errors", mine.errors == theirs.errors),
                ("handshakes", mine.handshakes == theirs.handshakes),
                ("version", mine.version == theirs.version),
                ("cipher", mine.cipher == theirs.cipher),
                ("alerts", mine.alerts == theirs.alerts),
            ];
            let mut all = true;
            for (field, same) in fields {
                let tally = counts.entry(field).or_default();
                all &= same;
                if same {
                    tally.0 += 1;
                } else if exc.contains(&(name.clone(), *first, field.to_string())) {
                    tally.1 += 1;
                } else {
                    tally.2 += 1;
                    failures.push(format!(
                        "{name} connection at frame {first}: {field} differ\n  ours   {mine:?}\n  tshark {theirs:?}"
                    ));
                }
            }
            let tally = counts.entry("any").or_default();
            if all {
                tally.0 += 1;
            } else {
                tally.1 += 1;
            }
            compared += 1;
        }
        let cmds: usize = o.values().map(|p| p.commands.len()).sum();
        let hs: usize = o.values().map(|p| p.handshakes.len()).sum();
        eprintln!("{name}: {compared} connections compared, {cmds} MySQL commands, {hs} TLS handshake messages");
    }
    eprintln!(
        "per-field agreement with tshark in {} (connections equal / reviewed exceptions / different):",
        dir.display()
    );
    for f in FIELDS {
        let (same, reviewed, bad) = counts.get(f).copied().unwrap_or_default();
        let f = if f == "any" { "all fields" } else { f };
        eprintln!("  {f:<15} {same:>4} / {reviewed:>3} / {bad}");
    }
    failures
}

/// Every directory of captures: ours (with the lab's), the shared public ones and the real
/// ProxySQL captures.
fn dirs() -> Vec<std::path::PathBuf> {
    let mut v = vec![repo().join("captures"), repo().join("captures/lab")];
    if let Some(shared) = shared_captures() {
        let proxysql = shared.join("proxysql");
        v.push(shared);
        if let Ok(rd) = std::fs::read_dir(&proxysql) {
            let mut sub: Vec<_> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            sub.sort();
            v.extend(sub);
        }
    }
    v
}

#[test]
fn captures_decode_like_tshark() {
    let failures: Vec<String> = dirs().iter().flat_map(|d| compare_dir(d, false)).collect();
    assert!(
        failures.is_empty(),
        "differences from tshark:\n{}",
        failures.join("\n")
    );
}

#[test]
fn decrypted_captures_decode_like_tshark() {
    let failures: Vec<String> = dirs().iter().flat_map(|d| compare_dir(d, true)).collect();
    assert!(
        failures.is_empty(),
        "differences from tshark:\n{}",
        failures.join("\n")
    );
}
