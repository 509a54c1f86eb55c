//! Python packages from PyPI for the tests that drive a Python tool (embedded ClickHouse, DuckDB,
//! VRL): installed on first use by `scripts/ensure-python.sh` into `target/tmp/python`, kept there
//! for the next run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Installs the pinned packages (`NAME==VERSION`, dependencies named too) that are missing and
/// returns the directory to put on `PYTHONPATH`. Panics when pip fails: the test needs them.
pub fn packages(specs: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python");
    let started = Instant::now();
    let out = Command::new(super::repo().join("scripts/ensure-python.sh"))
        .arg(&dir)
        .args(specs)
        .output()
        .expect("run scripts/ensure-python.sh");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "installing {specs:?} from PyPI failed: {said}"
    );
    if !said.is_empty() {
        // How long a fresh machine spends here (the suite's time budget counts it).
        eprintln!(
            "{}python packages ready in {:.1} s",
            said,
            started.elapsed().as_secs_f64()
        );
    }
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
