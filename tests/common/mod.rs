//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};

#[cfg(feature = "parquet")]
pub mod parquet_rows;
pub mod python;
pub mod schema;

use proxyscope::analyze::{self, Options};
use proxyscope::diagnose::legs::{Leg, LegFlags, Legs};
use proxyscope::diagnose::Label;
use proxyscope::model::{Role, Summary};
use proxyscope::report::{Report, RunSummary};
use proxyscope::source::{CaptureFile, Input, Sources};

/// Collects summaries in memory.
#[derive(Default)]
pub struct Collect(pub Vec<Summary>);

impl Report for Collect {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        self.0.push(c.clone());
        Ok(())
    }
    fn finish(&mut self, _run: &RunSummary) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the library pipeline on one file, keeping every event of small captures.
pub fn analyze_file(path: &Path) -> (Vec<Summary>, RunSummary) {
    analyze_with_keys(path, None)
}

/// The same, decrypting with a key log file.
pub fn analyze_with_keys(path: &Path, keylog: Option<&Path>) -> (Vec<Summary>, RunSummary) {
    run_file(
        path,
        Options {
            keep_events: 10_000,
            keylog: load_keylog(keylog),
            ..Options::default()
        },
    )
}

fn load_keylog(keylog: Option<&Path>) -> Option<proxyscope::tls::decrypt::KeyLog> {
    keylog.map(|k| {
        let mut log = proxyscope::tls::decrypt::KeyLog::default();
        log.add_text(&std::fs::read_to_string(k).expect("key log readable"));
        log
    })
}

pub fn run_file(path: &Path, opts: Options) -> (Vec<Summary>, RunSummary) {
    let f = CaptureFile::open(path.to_str().expect("utf-8 path"), 0)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut sources = Sources::new(vec![f]);
    let mut c = Collect::default();
    let run = analyze::run(&mut sources, &opts, &mut c, &mut |_| {}).expect("run");
    (c.0, run)
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/captures` beside the repository, if present (CI has it); otherwise a visible
/// message and `None`.
pub fn shared_captures() -> Option<PathBuf> {
    let dir = repo().join("..").join("shared").join("captures");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; shared public captures not tested",
            dir.display()
        );
        None
    }
}

/// Capture files (pcap, pcapng, gzip) directly in `dir`, sorted.
pub fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".pcap.gz")
        })
        .collect();
    v.sort();
    v
}

/// Whether a command is on PATH.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Two passes, as the CLI does: the first finds proxies, the second knows every leg.
pub fn analyze_two_pass(path: &Path, keylog: Option<&Path>) -> (Vec<Summary>, RunSummary) {
    let mut opts = Options {
        keep_events: 10_000,
        keylog: load_keylog(keylog),
        ..Options::default()
    };
    opts.legs = find_legs(&[path], &opts);
    let proxies = opts.legs.pairs().to_vec();
    let (sums, mut run) = run_file(path, opts);
    run.proxies = proxies;
    (sums, run)
}

/// The legs the CLI's first pass finds in these files when no leg flags are given.
pub fn find_legs(paths: &[&Path], opts: &Options) -> Legs {
    legs_of(paths, LegFlags::default(), opts)
}

/// The legs the CLI uses for these files and leg flags.
pub fn legs_of(paths: &[&Path], flags: LegFlags, opts: &Options) -> Legs {
    let inputs: Vec<Input> = paths
        .iter()
        .map(|p| {
            Input::new(p.to_str().expect("utf-8 path"))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect();
    analyze::find_legs(&inputs, flags, opts).expect("first pass")
}

/// The leg, label and closer a faulted close must get, from the lab's own record of it.
/// `keys`: the TLS was decrypted (an ERR inside TLS is only visible then).
pub fn expected(rec: &serde_json::Value, keys: bool) -> Option<(&'static str, Leg, Label, Role)> {
    let fault = rec["fault"].as_str()?;
    let by_proxy = rec["by"] == "proxy";
    let p = Role::Proxy;
    Some(match rec["event"].as_str()? {
        "backend_closed" if fault == "plaintext-quit" && by_proxy => {
            ("backend", Leg::Backend, Label::PlaintextInTls, p)
        }
        "backend_closed" if by_proxy && rec["quit"] != true => {
            ("backend", Leg::Backend, Label::ProxyResetBackend, p)
        }
        "backend_closed" if rec["by"] == "server" && rec["how"] == "rst" => (
            "backend",
            Leg::Backend,
            Label::ServerIdleTimeout,
            Role::Server,
        ),
        "frontend_closed" if by_proxy && rec["err"] == true && keys => {
            ("frontend", Leg::Frontend, Label::ServerError, p)
        }
        "frontend_closed" if by_proxy && fault == "connect-timeout" => {
            ("frontend", Leg::Frontend, Label::HandshakeFailed, p)
        }
        "frontend_closed" if by_proxy => ("frontend", Leg::Frontend, Label::ProxyClosedFrontend, p),
        _ => return None,
    })
}

/// Writes attack `attack` of `scripts/attack_gen.py` (size `n`, or its own) into `dir`: the
/// file and its packet count.
pub fn attack_gen(dir: &Path, attack: &str, n: Option<u64>) -> (PathBuf, u64) {
    let ext = if matches!(attack, "dsb" | "idb") {
        "pcapng"
    } else {
        "pcap"
    };
    let path = dir.join(format!("{attack}.{ext}"));
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(repo().join("scripts/attack_gen.py")).arg(attack);
    if let Some(n) = n {
        cmd.args(["--n", &n.to_string()]);
    }
    let out = cmd
        .arg("-o")
        .arg(&path)
        .output()
        .expect("python3 runs scripts/attack_gen.py");
    assert!(
        out.status.success(),
        "{attack}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "PATH\tN packets\t..."
    let text = String::from_utf8_lossy(&out.stdout);
    let packets = text
        .split('\t')
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{attack}: no packet count in {text:?}"));
    (path, packets)
}
