//! Live capture: streaming (the engine hands out verdicts and incidents while the capture goes
//! on, as live feeds it), and `proxyscope live` itself on loopback (root only): rotation of the
//! written files, `--count`, dropped capabilities, and the one-line message without them.
//! The end-to-end test against the proxy lab's ground truth is in tests/lab_proxy.rs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use proxyscope::analyze::{Engine, Options};
use proxyscope::model::Summary;
use proxyscope::report::{Report, RunSummary};
use proxyscope::source::{CaptureFile, Sources};
use proxyscope::time::Timestamp;
use serde_json::Value;

/// Summaries with the capture time at which they reached the report.
struct Timed {
    now: Timestamp,
    got: Vec<(Timestamp, Summary)>,
}

impl Report for Timed {
    fn connection(&mut self, c: &Summary) -> std::io::Result<()> {
        self.got.push((self.now, c.clone()));
        Ok(())
    }
    fn finish(&mut self, _: &RunSummary) -> std::io::Result<()> {
        Ok(())
    }
}

const LINGER_NS: i64 = 500_000_000;
const TICK_NS: i64 = 250_000_000;
const SETTLE_NS: i64 = LINGER_NS + 1_000_000_000;

#[test]
fn the_engine_streams_verdicts_and_incidents_while_the_capture_goes_on() {
    // The #4500 lab capture, fed as `live` feeds packets, with a timer tick every 250 ms of
    // capture time: each verdict must come within the linger (+ one tick) of its connection's
    // last packet once closed, each incident within the settle time of its last close — not at
    // the end — and everything must equal the offline run.
    let path = repo().join("captures/lab/dirty-ssl.pcap.gz");
    let opts = Options {
        tcp: proxyscope::tcp::Config {
            linger: LINGER_NS,
            idle_timeout: Some(900_000_000_000),
            ..Default::default()
        },
        ..Options::default()
    };
    let (offline, _) = analyze_file(&path);
    let legs = find_legs(&[&path], &Options::default());
    let mut engine = Engine::new(&Options {
        legs: legs.clone(),
        ..opts.clone()
    });
    engine.report_as_finished();
    let mut sources = Sources::new(vec![CaptureFile::open(path.to_str().unwrap(), 0).unwrap()]);
    let mut rep = Timed {
        now: Timestamp(0),
        got: Vec::new(),
    };
    let mut incidents = Vec::new();
    let mut next_tick: Option<Timestamp> = None;
    let mut end = Timestamp(0);
    while let Some(frame) = sources.next_frame() {
        let ts = frame.ts;
        while let Some(t) = next_tick.filter(|t| *t <= ts) {
            rep.now = t;
            engine.tick(t, &mut rep).unwrap();
            incidents.extend(
                engine
                    .ready_incidents(t, SETTLE_NS)
                    .into_iter()
                    .map(|i| (t, i)),
            );
            next_tick = Some(Timestamp(t.0 + TICK_NS));
        }
        next_tick.get_or_insert(Timestamp(ts.0 + TICK_NS));
        rep.now = ts;
        end = ts;
        engine.push(&frame, &mut rep).unwrap();
    }
    let streamed = rep.got.len();
    rep.now = end;
    engine.finish_open(&mut rep).unwrap();
    let late: Vec<_> = engine
        .ready_incidents(Timestamp(end.0 + 1), 0)
        .into_iter()
        .map(|i| (end, i))
        .collect();
    let streamed_incidents = incidents.len();
    incidents.extend(late);
    assert!(
        streamed > 0 && streamed < rep.got.len(),
        "{streamed} of {} verdicts came before the end",
        rep.got.len()
    );
    assert!(streamed_incidents > 0, "no incident came before the end");
    eprintln!(
        "{streamed} of {} verdicts and {streamed_incidents} of {} incidents came before the end",
        rep.got.len(),
        incidents.len()
    );

    // Each verdict came within the linger and one tick of its last packet after the close.
    for (at, s) in &rep.got {
        if s.close.at.is_none() {
            continue;
        }
        let due = s.end.ts.0 + LINGER_NS + TICK_NS;
        if due < end.0 {
            assert!(
                at.0 <= due,
                "connection {}: last packet at {}, reported {} ms later",
                s.id,
                s.end.t,
                (at.0 - s.end.ts.0) / 1_000_000
            );
        }
    }
    // Each incident within the settle time and one tick of its last close.
    for (at, inc) in &incidents {
        let last = inc.steps.iter().map(|s| s.at.ts.0).max().unwrap();
        if last + SETTLE_NS + TICK_NS < end.0 {
            assert!(
                at.0 <= last + SETTLE_NS + TICK_NS,
                "incident at t={} came {} ms late",
                inc.steps[0].at.t,
                (at.0 - last) / 1_000_000
            );
        }
    }

    // The same verdicts and incidents as the offline run with the same legs.
    let (offline_legs, offline_run) = run_file(
        &path,
        Options {
            legs,
            ..Options::default()
        },
    );
    assert_eq!(offline_legs.len(), offline.len());
    let mut live: Vec<&Summary> = rep.got.iter().map(|(_, s)| s).collect();
    live.sort_by_key(|s| s.id);
    assert_eq!(live.len(), offline_legs.len());
    for (a, b) in live.iter().zip(&offline_legs) {
        assert_eq!(a.id, b.id);
        assert_eq!(
            serde_json::to_value(&a.verdict).unwrap(),
            serde_json::to_value(&b.verdict).unwrap(),
            "connection {}",
            a.id
        );
    }
    let mut got: Vec<Value> = incidents
        .iter()
        .map(|(_, i)| serde_json::to_value(i).unwrap())
        .collect();
    got.sort_by_key(|i| i["steps"][0]["at"]["frame"].as_u64());
    let want: Vec<Value> = offline_run
        .incidents
        .iter()
        .map(|i| serde_json::to_value(i).unwrap())
        .collect();
    assert_eq!(got, want);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn skip_unless_root(what: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIPPED: {what} needs root (a live capture on lo); CI runs as root");
    true
}

/// Starts `proxyscope live ARGS` and waits until it listens; stdout is piped.
fn start_live(args: &[&str]) -> Child {
    start_live_said(args).0
}

/// [`start_live`], with the lines live wrote on stderr before its "listening on" line.
fn start_live_said(args: &[&str]) -> (Child, Vec<String>) {
    let mut said = Vec::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .arg("live")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start proxyscope live");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = err.read_line(&mut line).unwrap();
        assert!(n > 0, "proxyscope live exited before listening");
        if line.contains("listening on") {
            break;
        }
        said.push(line.trim_end().to_string());
    }
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        if !rest.is_empty() {
            eprintln!("live stderr: {rest}");
        }
    });
    (child, said)
}

fn finish(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "live exited with {}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Sends `bytes` over a fresh loopback connection to `listener` and closes it.
fn send(listener: TcpListener, bytes: usize) {
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).unwrap();
        sink.len()
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    drop(c);
    assert_eq!(reader.join().unwrap(), bytes);
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("proxyscope-live-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn written_files_rotate_by_size_and_analyse_back_to_the_same_connection() {
    if skip_unless_root("live --write -C") {
        return;
    }
    let dir = temp_dir("rotate");
    // As root, live switches to nobody once the device is open; nobody creates the rotated
    // files, so the directory must let it (as with tcpdump -Z).
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let base = dir.join("r.pcap");
    let (l, port) = listener();
    let bpf = format!("tcp port {port}");
    let child = start_live(&[
        "-i",
        "lo",
        "--bpf",
        &bpf,
        "--write",
        base.to_str().unwrap(),
        "-C",
        "1",
        "--duration",
        "3",
        "--format",
        "jsonl",
        "--verdicts-only",
        "--linger",
        "0.5",
    ]);
    const BYTES: usize = 3_500_000;
    send(l, BYTES);
    let lines = finish(child);
    let summary = &lines.last().unwrap()["detail"]["live"];
    let files: Vec<PathBuf> = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    eprintln!("files: {files:?}, summary {summary}");
    assert!(files.len() >= 4, "3.5 MB in 1 MB files: {files:?}");
    assert_eq!(files[0], base);
    assert_eq!(files[1], dir.join("r.1.pcap"));
    for f in &files {
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            std::fs::metadata(f).unwrap().uid(),
            0,
            "{f:?} owned by root"
        );
    }
    for f in &files[..files.len() - 1] {
        // A file is closed at the first packet past 1 MB: at most one loopback segment more.
        let len = std::fs::metadata(f).unwrap().len();
        assert!(
            (1_000_000..1_000_000 + 70_000).contains(&len),
            "{f:?}: {len} bytes"
        );
    }
    assert_eq!(summary["capture"]["dropped"], 0);
    assert_eq!(summary["packets_written"], summary["packets"]);
    // The files, merged back, hold the one connection whole, closed as live said.
    let paths: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let caps: Vec<CaptureFile> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| CaptureFile::open(p, i).unwrap())
        .collect();
    let mut col = Collect::default();
    let run = proxyscope::analyze::run(
        &mut Sources::new(caps),
        &Options::default(),
        &mut col,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(run.tcp.connections, 1);
    let s = &col.0[0];
    assert_eq!(s.bytes.c2s, BYTES as u64);
    assert_eq!(s.gaps.c2s.count + s.gaps.s2c.count, 0);
    let live_close = lines
        .iter()
        .find(|l| l["kind"] == "verdict.close")
        .expect("a verdict line");
    assert_eq!(
        live_close["detail"]["label"],
        s.verdict.as_ref().unwrap().label.as_str()
    );
    assert_eq!(live_close["detail"]["client"], s.client.to_string());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn count_stops_the_capture_and_capabilities_are_dropped() {
    if skip_unless_root("live --count") {
        return;
    }
    let (l, port) = listener();
    let bpf = format!("tcp port {port}");
    let child = start_live(&[
        "-i", "lo", "--bpf", &bpf, "--count", "5", "--format", "jsonl",
    ]);
    // Once the device is open, the process holds no capability any more.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let eff = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap()
        .to_string();
    assert!(eff.ends_with("0000000000000000"), "{eff}");
    send(l, 200_000);
    let lines = finish(child);
    let summary = &lines.last().unwrap()["detail"]["live"];
    assert_eq!(summary["stopped_by"], "count", "{summary}");
    assert_eq!(summary["packets"], 5);
    // The stream is `proxyscope.events/1`, as `timeline --format jsonl` writes it: the schema
    // line, records that match the README's schema, and the live.summary line last.
    assert_eq!(lines[0]["schema"], "proxyscope.events/1");
    let rows = common::schema::schema();
    let records = &lines[1..lines.len() - 1];
    assert!(records.iter().any(|l| l["layer"] == "tcp"));
    assert!(records.iter().any(|l| l["kind"] == "verdict.close"));
    for r in records {
        if let Err(e) = common::schema::check(&rows, r) {
            panic!("{e}: {r}");
        }
    }
}

#[test]
fn without_the_capability_one_line_says_what_is_missing() {
    if skip_unless_root("dropping to nobody") || !have("setpriv") {
        return;
    }
    // The binary must be reachable by nobody: copy it to a world-readable place.
    let dir = temp_dir("noperm");
    let bin = dir.join("proxyscope");
    std::fs::copy(env!("CARGO_BIN_EXE_proxyscope"), &bin).unwrap();
    set_mode(&dir, 0o755);
    set_mode(&bin, 0o755);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["live", "-i", "lo", "--duration", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(err.contains("CAP_NET_RAW") && err.contains("setcap cap_net_raw"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn interfaces_lists_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .arg("interfaces")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains(".lo ") && l.contains("Loopback")),
        "{text}"
    );
}

#[test]
fn the_engine_expires_idle_connections() {
    // Bounded memory over hours: a connection silent past the idle timeout leaves the table.
    let path = repo().join("captures/lab/wait-timeout.pcap.gz");
    let mut engine = Engine::new(&Options {
        tcp: proxyscope::tcp::Config {
            idle_timeout: Some(100_000_000),
            ..Default::default()
        },
        ..Options::default()
    });
    engine.report_as_finished();
    let mut sources = Sources::new(vec![CaptureFile::open(path.to_str().unwrap(), 0).unwrap()]);
    let mut col = Collect::default();
    let mut last = Timestamp(0);
    while let Some(frame) = sources.next_frame() {
        last = frame.ts;
        engine.push(&frame, &mut col).unwrap();
    }
    assert!(engine.open_connections() > 0);
    engine
        .tick(Timestamp(last.0 + 1_000_000_000), &mut col)
        .unwrap();
    assert_eq!(engine.open_connections(), 0);
    let run = engine.finish(Vec::new(), &mut col).unwrap();
    assert!(run.tcp.idle_expired > 0);
}

#[test]
fn sigterm_stops_cleanly_with_a_summary() {
    if skip_unless_root("live and SIGTERM") {
        return;
    }
    let dir = temp_dir("term");
    let file = dir.join("t.pcap");
    let (l, port) = listener();
    let bpf = format!("tcp port {port}");
    let child = start_live(&["-i", "lo", "--bpf", &bpf, "--write", file.to_str().unwrap()]);
    send(l, 100_000);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    // The connection's row (still lingering when stopped: finished at the stop), the totals, and
    // libpcap's counters; the file is complete.
    assert!(text.contains(&format!(":{port}")), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("live: stopped (terminated)") && last.contains("0 dropped by kernel"),
        "{last}"
    );
    let (sums, _) = analyze_file(&file);
    assert_eq!(sums.len(), 1);
    assert_eq!(sums[0].bytes.c2s, 100_000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_event_hook_names_a_backend_requests_relay_as_it_streams() {
    // As `live --format jsonl` wires it: each backend request event comes with the frontend
    // request it relays, at once; the offline run's final pairing (after its repairs) agrees on
    // nearly all of them.
    let path = repo().join("captures/lab/dirty-ssl.pcap.gz");
    let opts = Options {
        legs: find_legs(&[&path], &Options::default()),
        keep_events: 10_000,
        ..Options::default()
    };
    let streamed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut engine = Engine::new(&opts);
    let sink = streamed.clone();
    engine.on_event(Box::new(move |conn, cx, ev| {
        if !cx.relayed_as.is_empty() {
            sink.lock().unwrap().push((
                conn.id,
                ev.at.frame,
                cx.relayed_as.to_vec(),
                cx.relayed_others,
            ));
        }
    }));
    let mut sources = Sources::new(vec![CaptureFile::open(path.to_str().unwrap(), 0).unwrap()]);
    let mut col = Collect::default();
    while let Some(frame) = sources.next_frame() {
        engine.push(&frame, &mut col).unwrap();
    }
    engine.finish(Vec::new(), &mut col).unwrap();
    let streamed = streamed.lock().unwrap().clone();
    assert!(streamed.len() > 20, "{}", streamed.len());
    let mut agree = 0;
    for (conn, frame, relayed, relayed_others) in &streamed {
        let s = col.0.iter().find(|s| s.id == *conn).unwrap();
        assert_eq!(
            s.leg,
            proxyscope::diagnose::legs::Leg::Backend,
            "conn {conn}"
        );
        assert!(*relayed_others >= 1);
        let fin = s
            .relays
            .iter()
            .find(|r| !r.frontend && r.frame == *frame)
            .map(|r| vec![(r.conn, r.peer_frame)]);
        if fin.as_ref() == Some(relayed) {
            agree += 1;
        }
    }
    assert!(
        agree * 10 >= streamed.len() * 9,
        "{agree} of {} streamed relays kept",
        streamed.len()
    );
}

/// Started as root, live opens the device, then becomes nobody with no capabilities, an empty
/// bounding set and no_new_privs (a later exec could regain nothing); a planted link where the
/// packets are to be written is refused, its target untouched.
#[test]
fn as_root_live_becomes_nobody_and_refuses_a_planted_link() {
    if skip_unless_root("live privilege drop") {
        return;
    }
    let child = start_live(&["-i", "lo", "--bpf", "tcp port 9", "--duration", "2"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(field("Uid:").iter().all(|u| *u == "65534"), "{status}");
    assert!(field("Gid:").iter().all(|g| *g == "65534"), "{status}");
    for caps in ["CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(caps), ["0000000000000000"], "{caps} {status}");
    }
    assert_eq!(field("NoNewPrivs:"), ["1"], "{status}");
    assert!(child.wait_with_output().unwrap().status.success());

    let dir = temp_dir("link");
    let target = dir.join("precious");
    std::fs::write(&target, b"keep").unwrap();
    let planted = dir.join("out.pcap");
    std::os::unix::fs::symlink(&target, &planted).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["live", "-i", "lo", "--duration", "1", "--write"])
        .arg(&planted)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("out.pcap") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
}

/// The samples of a Prometheus text exposition: `name{labels}` to value.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample line {l:?}"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("value in {l:?}")),
            )
        })
        .collect()
}

/// `promtool check metrics` on an exposition: its complaints (lint included), or None when
/// promtool is not installed (`scripts/ensure-packages.sh prometheus`).
fn promtool(text: &str, what: &str) -> Option<String> {
    if !have("promtool") {
        eprintln!(
            "SKIPPED: promtool check of {what}: promtool not installed (Debian package prometheus)"
        );
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        said
    } else {
        format!("promtool failed: {said}")
    })
}

/// `GET path` over a plain TCP connection: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response head");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[cfg(feature = "live")]
#[test]
fn metrics_count_what_the_pipeline_reports_on_a_real_capture() {
    // The #4500 lab capture with a plaintext frontend (TLS backends, FIN and RST breaks,
    // retries), fed as live feeds it: the counters must equal the verdicts, TLS counts,
    // incidents and retries of the same run, and promtool must accept the exposition.
    use proxyscope::live::metrics::Metrics;
    struct Counted<'a>(&'a Metrics, Collect);
    impl Report for Counted<'_> {
        fn connection(&mut self, c: &Summary) -> std::io::Result<()> {
            self.0.close(c);
            self.1.connection(c)
        }
        fn finish(&mut self, _: &RunSummary) -> std::io::Result<()> {
            Ok(())
        }
    }
    let path = repo().join("captures/lab/dirty-ssl-plain.pcap.gz");
    let keylog = repo().join("captures/lab/dirty-ssl-plain.keylog");
    let mut log = proxyscope::tls::decrypt::KeyLog::default();
    log.add_text(&std::fs::read_to_string(&keylog).unwrap());
    let mut opts = Options {
        keylog: Some(log),
        ..Options::default()
    };
    opts.legs = find_legs(&[&path], &opts);
    let mut m = Metrics::new();
    let mut engine = Engine::new(&opts);
    engine.report_as_finished();
    let mut sources = Sources::new(vec![CaptureFile::open(path.to_str().unwrap(), 0).unwrap()]);
    let mut rep = Counted(&m, Collect::default());
    let mut end = Timestamp(0);
    while let Some(frame) = sources.next_frame() {
        end = frame.ts;
        m.packet();
        engine.push(&frame, &mut rep).unwrap();
    }
    engine.finish_open(&mut rep).unwrap();
    let incidents = engine.ready_incidents(Timestamp(end.0 + 1), 0);
    for inc in &incidents {
        m.incident(inc);
    }
    let retries = engine.relay_retries();
    let frames = engine.frames();
    let sums = rep.1 .0;
    m.sample(None, retries, engine.open_connections());
    let run = engine.finish(Vec::new(), &mut Collect::default()).unwrap();
    let text = m.encode();
    let got = samples(&text);

    let mut want = std::collections::BTreeMap::new();
    for s in &sums {
        let label = s.verdict.as_ref().map_or("none", |v| v.label.as_str());
        let key = format!(
            "proxyscope_closes_total{{leg=\"{}\",label=\"{label}\"}}",
            proxyscope::export::leg_name(s.leg)
        );
        *want.entry(key).or_insert(0.0) += 1.0;
    }
    for inc in &incidents {
        let sig = inc.signature.as_ref().map_or("none", |s| s.id);
        *want
            .entry(format!("proxyscope_incidents_total{{signature=\"{sig}\"}}"))
            .or_insert(0.0) += 1.0;
    }
    for (n, name) in [
        (run.tls.decrypted, "decrypted"),
        (run.tls.keys_failed, "keys_failed"),
        (run.tls.no_keys, "no_keys"),
        (run.tls.unsupported, "unsupported"),
        (run.tls.not_tried, "not_tried"),
    ] {
        if n > 0 {
            want.insert(
                format!("proxyscope_tls_sessions_total{{decryption=\"{name}\"}}"),
                n as f64,
            );
        }
    }
    // Relay lists are whole in a capture this small: each retry is flagged on its backend.
    let flagged = sums
        .iter()
        .flat_map(|s| &s.relays)
        .filter(|r| r.retry && !r.frontend)
        .count() as u64;
    assert_eq!(retries, flagged);
    want.insert("proxyscope_hidden_retries_total".into(), flagged as f64);
    want.insert("proxyscope_packets_total".into(), frames as f64);
    for k in ["received", "dropped", "if_dropped"] {
        want.insert(format!("proxyscope_pcap_{k}_total"), 0.0);
    }
    want.insert("proxyscope_open_connections".into(), 0.0);
    let memory = got
        .get("proxyscope_memory_bytes")
        .copied()
        .expect("a memory gauge");
    assert!(memory > 1e6, "{memory}");
    let mut got_rest = got.clone();
    got_rest.remove("proxyscope_memory_bytes");
    assert_eq!(got_rest, want, "{text}");
    // The capture has what the counters are for: decrypted TLS, incidents, retries.
    assert!(
        run.tls.decrypted > 0 && !incidents.is_empty() && flagged > 0,
        "{text}"
    );
    // The same incidents as the offline run.
    let (_, offline) = run_file(&path, opts.clone());
    assert_eq!(incidents.len(), offline.incidents.len());
    if let Some(said) = promtool(&text, "the capture's metrics") {
        assert!(said.trim().is_empty(), "{said}\n{text}");
    }

    // The cost of counting a close (the label lookups), and the size of the exposition.
    const ROUNDS: usize = 2000;
    let t = std::time::Instant::now();
    for _ in 0..ROUNDS {
        for s in &sums {
            m.close(s);
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (ROUNDS * sums.len()) as f64;
    eprintln!(
        "{} closes, {} incidents, {retries} retries, {} TLS sessions; {ns:.0} ns per close \
         counted; exposition {} bytes, {} samples",
        sums.len(),
        incidents.len(),
        run.tls.sessions,
        text.len(),
        got.len()
    );
}

#[test]
fn live_serves_metrics_that_agree_with_its_verdict_lines() {
    if skip_unless_root("live --metrics") {
        return;
    }
    let (l, port) = listener();
    let bpf = format!("tcp port {port}");
    let (child, said) = start_live_said(&[
        "-i",
        "lo",
        "--bpf",
        &bpf,
        "--metrics",
        "127.0.0.1:0",
        "--linger",
        "0.3",
        "--duration",
        "6",
        "--format",
        "jsonl",
        "--verdicts-only",
    ]);
    let addr = said
        .iter()
        .find_map(|l| l.strip_prefix("proxyscope live: metrics on http://"))
        .and_then(|a| a.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in {said:?}"))
        .to_string();
    // Three connections the client closes after sending, three the server cuts with the
    // client's bytes unread (a reset): two different verdicts.
    const EACH: usize = 3;
    let server = std::thread::spawn(move || {
        for i in 0..2 * EACH {
            let (mut s, _) = l.accept().unwrap();
            if i < EACH {
                let mut sink = Vec::new();
                s.read_to_end(&mut sink).unwrap();
            } else {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    });
    for i in 0..2 * EACH {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(&[0x5a; 1000]).unwrap();
        if i >= EACH {
            let mut buf = [0u8; 16];
            let _ = c.read(&mut buf);
        }
    }
    server.join().unwrap();
    // Wait until every verdict is out (the linger and a tick), then one tick more for the
    // libpcap counters.
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (status, body) = http_get(&addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let closes: f64 = samples(&body)
            .iter()
            .filter(|(k, _)| k.starts_with("proxyscope_closes_total"))
            .map(|(_, v)| v)
            .sum();
        if closes >= (2 * EACH) as f64 {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    let text = http_get(&addr, "/metrics").1;
    let (status, _) = http_get(&addr, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let got = samples(&text);
    let lines = finish(child);

    let mut want = std::collections::BTreeMap::new();
    for l in lines.iter().filter(|l| l["kind"] == "verdict.close") {
        let label = l["detail"]["label"].as_str().unwrap_or("none");
        let key = format!(
            "proxyscope_closes_total{{leg=\"{}\",label=\"{label}\"}}",
            l["leg"].as_str().unwrap()
        );
        *want.entry(key).or_insert(0.0) += 1.0;
    }
    let closes: std::collections::BTreeMap<String, f64> = got
        .iter()
        .filter(|(k, _)| k.starts_with("proxyscope_closes_total"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    eprintln!("{text}");
    assert_eq!(closes, want);
    assert!(want.len() >= 2, "two kinds of close: {want:?}");
    assert!(!got
        .keys()
        .any(|k| k.starts_with("proxyscope_incidents_total")));
    let summary = &lines.last().unwrap()["detail"]["live"];
    assert_eq!(
        got["proxyscope_packets_total"],
        summary["packets"].as_f64().unwrap()
    );
    for k in ["received", "dropped", "if_dropped"] {
        assert_eq!(
            got[&format!("proxyscope_pcap_{k}_total")],
            summary["capture"][k].as_f64().unwrap(),
            "{k}"
        );
    }
    assert_eq!(got["proxyscope_open_connections"], 0.0);
    assert!(got["proxyscope_memory_bytes"] > 1e6);
    if let Some(said) = promtool(&text, "live's scrape") {
        assert!(said.trim().is_empty(), "{said}\n{text}");
    }
}

/// Sorts records (JSON Lines records, or Parquet rows as read back) by connection, frame, kind
/// and time: two captures of the same traffic may interleave verdicts and events in another
/// order (and stamp packets a few µs apart), never with other values.
#[cfg(feature = "parquet")]
fn by_time<T>(v: &mut [T], rec: impl Fn(&T) -> &serde_json::Map<String, Value>) {
    v.sort_by(|a, b| {
        let (a, b) = (rec(a), rec(b));
        let f = |m: &serde_json::Map<String, Value>, k: &str| m.get(k).cloned().unwrap_or_default();
        let n = |m: &serde_json::Map<String, Value>, k: &str| f(m, k).as_u64().unwrap_or(u64::MAX);
        n(a, "conn")
            .cmp(&n(b, "conn"))
            .then_with(|| n(a, "frame").cmp(&n(b, "frame")))
            .then_with(|| f(a, "kind").to_string().cmp(&f(b, "kind").to_string()))
            .then_with(|| {
                f(a, "t")
                    .as_f64()
                    .unwrap_or(f64::MAX)
                    .total_cmp(&f(b, "t").as_f64().unwrap_or(f64::MAX))
            })
    });
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_files_rotate_complete_and_hold_what_jsonl_says() {
    use common::parquet_rows::{
        assert_row_is_record_of_twin_capture as assert_row_is_record, read_rows,
    };
    if skip_unless_root("live --format parquet") {
        return;
    }
    // Three captures of the same traffic at once: JSON Lines on stdout, Parquet into files
    // rotated every second, and Parquet on stdout (a pipe).
    let dir = temp_dir("parquet");
    // As root, live becomes nobody, who creates the files.
    set_mode(&dir, 0o777);
    let base = dir.join("ev.parquet");
    let ls: Vec<(TcpListener, u16)> = (0..3).map(|_| listener()).collect();
    let bpf = ls
        .iter()
        .map(|(_, p)| format!("tcp port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let common = [
        "-i",
        "lo",
        "--bpf",
        &bpf,
        "--duration",
        "4",
        "--linger",
        "0.3",
    ];
    let jsonl = start_live(&[&common[..], &["--format", "jsonl"]].concat());
    let files = start_live(
        &[
            &common[..],
            &[
                "--format",
                "parquet",
                "-o",
                base.to_str().unwrap(),
                "--output-rotate",
                "1",
            ],
        ]
        .concat(),
    );
    let piped = start_live(&[&common[..], &["--format", "parquet"]].concat());
    for (l, _) in ls {
        send(l, 50_000);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let mut want: Vec<Value> = finish(jsonl)
        .into_iter()
        .filter(|r| r.get("kind").is_some_and(|k| k != "live.summary"))
        .collect();
    let out = files.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    let out = piped.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    let piped_file = dir.join("piped.parquet.out");
    std::fs::write(&piped_file, &out.stdout).unwrap();

    // Only complete, time-stamped files: no temporary file left, every one readable.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "piped.parquet.out")
        .collect();
    names.sort();
    eprintln!("files: {names:?}");
    assert!(names.len() >= 3, "3 s of traffic in 1 s files: {names:?}");
    for n in &names {
        let stamp = n
            .strip_prefix("ev.")
            .and_then(|n| n.strip_suffix(".parquet"))
            .unwrap_or_else(|| panic!("{n}: not ev.STAMP.parquet"));
        assert!(
            stamp.len() == 16 && stamp.ends_with('Z') && stamp.chars().nth(8) == Some('T'),
            "{n}"
        );
    }
    let mut rows = Vec::new();
    for n in &names {
        rows.extend(read_rows(&dir.join(n)).0);
    }
    let summary = rows.pop().expect("rows");
    assert_eq!(
        summary["kind"], "live.summary",
        "the last row of the last file"
    );
    assert_eq!(summary["detail"]["live"]["stopped_by"], "duration");
    assert_eq!(summary["t"], Value::Null);
    assert_eq!(rows.len(), want.len(), "as many rows as JSON Lines records");
    assert_eq!(
        rows.iter().filter(|r| r["kind"] == "verdict.close").count(),
        3,
        "the three connections' verdicts"
    );
    by_time(&mut want, |r| r.as_object().unwrap());
    by_time(&mut rows, |r| r);
    for (i, (row, rec)) in rows.iter().zip(&want).enumerate() {
        assert_row_is_record(row, rec, &format!("live row {i}"));
    }

    // The pipe got one complete file with the same rows.
    let (mut piped_rows, _) = read_rows(&piped_file);
    assert_eq!(piped_rows.pop().unwrap()["kind"], "live.summary");
    by_time(&mut piped_rows, |r| r);
    for (i, (row, rec)) in piped_rows.iter().zip(&want).enumerate() {
        assert_row_is_record(row, rec, &format!("piped row {i}"));
    }
    assert_eq!(piped_rows.len(), want.len());
    let _ = std::fs::remove_dir_all(&dir);
}
