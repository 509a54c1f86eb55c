//! tcpdump habits (`-r`, `-f`, a trailing filter expression, `-s`, `-B`, `-i N`), `-v` saying
//! what each stage found, and the progress bar on a terminal (through `script`'s
//! pseudo-terminal) — the binary end to end on real captures.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

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

fn capture(name: &str) -> String {
    repo().join("captures").join(name).display().to_string()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxyscope-tcpdump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn dash_r_reads_the_same_files_as_arguments_on_analyze_and_timeline() {
    let (a, b) = (
        capture("tls13-clean-quit.pcap"),
        capture("plain-clean-quit.pcap"),
    );
    let positional = run(&["analyze", "--format", "json", &a, &b]);
    let flags = run(&["analyze", "--format", "json", "-r", &a, "--read", &b]);
    assert!(positional.status.success(), "{}", text(&positional.stderr));
    assert_eq!(flags.status.code(), positional.status.code());
    assert_eq!(text(&flags.stdout), text(&positional.stdout));
    // Both files were read, not only the last -r.
    let v: serde_json::Value = serde_json::from_slice(&flags.stdout).expect("JSON");
    assert_eq!(
        v["summary"]["files"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    // -r first, then the arguments.
    let mixed = run(&["analyze", "--format", "json", "-r", &a, &b]);
    assert_eq!(text(&mixed.stdout), text(&positional.stdout));
    let tl = |args: &[&str]| run(&[&["timeline", "--format", "jsonl"][..], args].concat());
    let tl_pos = tl(&[&a, &b]);
    assert!(tl_pos.status.success(), "{}", text(&tl_pos.stderr));
    assert_eq!(
        text(&tl(&["-r", &a, "-r", &b]).stdout),
        text(&tl_pos.stdout)
    );
    // No file at all is still a usage error.
    let none = run(&["analyze", "--format", "json"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none.stderr).contains("FILE"),
        "{}",
        text(&none.stderr)
    );
}

#[test]
fn verbose_says_what_each_stage_found_on_stderr_and_leaves_stdout_alone() {
    let plain = capture("large-result.pcap.gz");
    let quiet = run(&["analyze", &plain]);
    let loud = run(&["-v", "analyze", &plain]);
    assert_eq!(loud.status.code(), quiet.status.code());
    assert_eq!(text(&loud.stdout), text(&quiet.stdout));
    assert!(quiet.stderr.is_empty(), "{}", text(&quiet.stderr));
    let err = text(&loud.stderr);
    assert!(
        err.contains("large-result.pcap.gz: opened, pcap, gzip-compressed"),
        "{err}"
    );
    assert!(err.contains("link types [ETHERNET]"), "{err}");
    assert!(
        err.contains("first pass") && err.contains("no proxy found"),
        "{err}"
    );
    assert!(err.contains("TLS: no TLS connections"), "{err}");
    // Plain text in a pipe: no colour codes.
    assert!(!err.contains('\x1b'), "{err:?}");
    let given = text(&run(&["-v", "analyze", "--proxy", "10.0.0.5", &plain]).stderr);
    assert!(
        given.contains("legs given on the command line (--proxy 10.0.0.5"),
        "{given}"
    );

    // A real ProxySQL capture with its key log: the proxy found and why, and decryption.
    let Some(shared) = shared_captures() else {
        return;
    };
    let dir = shared.join("proxysql/bug_tls_stream");
    let pcap = dir.join("bug_tls_stream.pcap").display().to_string();
    let keys = dir.join("keys.log").display().to_string();
    let out = run(&["-v", "analyze", "--keylog", &keys, &pcap]);
    let err = text(&out.stderr);
    assert!(
        err.contains("keys.log: key log, ") && err.contains(" TLS secrets read"),
        "{err}"
    );
    assert!(
        err.contains("first pass: proxy 127.0.0.1:6033 → server 127.0.0.1:3306")
            && err.contains("requests relayed"),
        "{err}"
    );
    let tls = err
        .lines()
        .find(|l| l.contains("TLS: "))
        .unwrap_or_default();
    assert!(tls.contains(" decrypted"), "{err}");
    assert_eq!(
        text(&out.stdout),
        text(&run(&["analyze", "--keylog", &keys, &pcap]).stdout)
    );
}

#[test]
fn live_flags_parse_like_tcpdump() {
    let help = text(&run(&["live", "--help"]).stdout);
    for flag in [
        "-f, --bpf <EXPR>",
        "-s, --snaplen <BYTES>",
        "-B <KIB>",
        "--buffer-size <MIB>",
        "-q, --quiet",
        "[EXPRESSION]...",
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
    for cmd in ["analyze", "timeline"] {
        let help = text(&run(&[cmd, "--help"]).stdout);
        assert!(help.contains("-r, --read <FILE>"), "{cmd}:\n{help}");
        assert!(help.contains("-q, --quiet"), "{cmd}:\n{help}");
    }
    // A unit -B does not know is a usage error, before any capture.
    let bad = run(&["live", "-i", "lo", "-B", "3X"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("unknown unit"),
        "{}",
        text(&bad.stderr)
    );
    // -B is tcpdump's KiB, --buffer-size stays MiB as it always was: both at once is ambiguous.
    let both = run(&["live", "-i", "lo", "-B", "64", "--buffer-size", "64"]);
    assert_eq!(both.status.code(), Some(1));
    assert!(
        text(&both.stderr).contains("cannot be used with"),
        "{}",
        text(&both.stderr)
    );
}

#[test]
fn two_different_filters_are_an_error_naming_both() {
    let out = run(&[
        "live",
        "-i",
        "lo",
        "-f",
        "tcp port 6033",
        "tcp",
        "port",
        "3306",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("two different capture filters")
            && err.contains("\"tcp port 6033\"")
            && err.contains("\"tcp port 3306\""),
        "{err}"
    );
}

#[test]
fn an_interface_number_beyond_the_list_names_proxyscope_interfaces() {
    let out = run(&["live", "-i", "999"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no interface number 999") && err.contains("`proxyscope interfaces` lists"),
        "{err}"
    );
    // The number counts the list `interfaces` prints.
    let list = text(&run(&["interfaces"]).stdout);
    let n = list.lines().count();
    assert!(
        err.contains(&format!("lists {n},")),
        "{n} listed:\n{list}\n{err}"
    );
}

/// Root only (a capture on lo): the trailing words are the filter libpcap compiled, and `-i N`
/// opens the N-th interface of the list.
#[test]
fn a_short_live_run_takes_the_trailing_filter_and_an_interface_number() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0");
    if !root {
        eprintln!("SKIPPED: live capture on lo needs root; CI runs as root");
        return;
    }
    let list = text(&run(&["interfaces"]).stdout);
    let Some(lo) = list.lines().position(|l| l.contains(".lo ")) else {
        eprintln!("SKIPPED: no lo in `proxyscope interfaces`:\n{list}");
        return;
    };
    let index = (lo + 1).to_string();
    let out = run(&[
        "-v",
        "live",
        "-i",
        &index,
        "--duration",
        "0.3",
        "-s",
        "0",
        "tcp",
        "port",
        "3306",
    ]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("listening on lo,") && err.contains("filter \"tcp port 3306\""),
        "{err}"
    );
    assert!(err.contains("snapshot length 262144"), "{err}");
    assert!(err.contains("filter \"tcp port 3306\" compiled"), "{err}");
    assert!(err.contains("lo: opened"), "{err}");
    assert!(err.contains("privileges: "), "{err}");
}

/// `script` (util-linux) gives the command a pseudo-terminal for stderr while stdout goes to a
/// file: the bar appears, and the report is byte for byte the one written without a terminal.
#[test]
fn the_progress_bar_shows_on_a_terminal_stderr_and_never_touches_stdout() {
    if !have("script") {
        eprintln!("SKIPPED: script (util-linux) is not installed");
        return;
    }
    // Enough input for the bar to be drawn: the gzip capture 30 times (its compressed size
    // is the total).
    let gz = capture("large-result.pcap.gz");
    let files: Vec<String> = std::iter::repeat_n(gz.clone(), 30).collect();
    let plain_out = bin().arg("analyze").args(&files).output().expect("runs");
    assert!(plain_out.status.success(), "{}", text(&plain_out.stderr));
    let report = tmp("report.txt");
    let shell = |quiet: &str| {
        let cmd = format!(
            "{} analyze {quiet} {} > {}",
            env!("CARGO_BIN_EXE_proxyscope"),
            files.join(" "),
            report.display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .expect("script runs");
        assert!(out.status.success(), "{}", text(&out.stdout));
        (
            text(&out.stdout),
            std::fs::read(&report).expect("report written"),
        )
    };
    let (terminal, written) = shell("");
    assert_eq!(written, plain_out.stdout, "stdout differs under a terminal");
    assert!(
        terminal.contains('%') && terminal.contains("MB"),
        "{terminal:?}"
    );
    let size = std::fs::metadata(&gz).expect("capture").len() * 30;
    // The total is the files' compressed size, in indicatif's decimal units.
    let total = format!("{:.2} MB", size as f64 / 1e6);
    assert!(terminal.contains(&total), "{total} not in {terminal:?}");
    let (quiet, written) = shell("-q");
    assert_eq!(written, plain_out.stdout);
    assert!(!quiet.contains('%'), "{quiet:?}");
    let _ = std::fs::remove_file(&report);
}

/// Stdout on the same terminal as the bar: rows are let through with the bar off the screen,
/// so taking out the bar's drawings leaves exactly the report written without a terminal.
#[test]
fn report_rows_on_the_bars_terminal_are_not_garbled() {
    if !have("script") {
        eprintln!("SKIPPED: script (util-linux) is not installed");
        return;
    }
    let gz = capture("large-result.pcap.gz");
    let files: Vec<String> = std::iter::repeat_n(gz, 30).collect();
    let plain = bin().arg("analyze").args(&files).output().expect("runs");
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let cmd = format!(
        "{} analyze {}",
        env!("CARGO_BIN_EXE_proxyscope"),
        files.join(" ")
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script runs");
    let screen = text(&out.stdout).replace("\r\n", "\n");
    assert!(screen.contains(" ETA "), "no bar drawn: {screen:?}");
    // A drawing is a carriage-return-separated segment holding the bar's " ETA "; escape
    // sequences (clear line, cursor up) are the bar's too.
    let rows: Vec<String> = screen
        .split('\n')
        .map(|line| {
            line.split('\r')
                .map(strip_escapes)
                .filter(|seg| !seg.contains(" ETA "))
                .collect::<String>()
        })
        .collect();
    assert_eq!(rows.join("\n"), text(&plain.stdout));
}

/// `s` without ANSI CSI sequences (ESC [ digits letter).
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            while chars.next_if(|c| c.is_ascii_digit() || *c == ';').is_some() {}
            chars.next();
        } else {
            out.push(c);
        }
    }
    out
}
