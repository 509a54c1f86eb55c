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
    // -v also lists the clean closes, as --all does.
    let quiet = run(&["analyze", "--all", &plain]);
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
        text(&run(&["analyze", "--all", "--keylog", &keys, &pcap]).stdout)
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

/// `(time, frame)` of every incident step of a text report.
fn step_times(report: &str) -> Vec<(String, u64)> {
    report
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // `    TIME  +0.000 ms  #374  text`
            match w.as_slice() {
                [time, after, "ms", frame, ..] if after.starts_with(['+', '-']) => {
                    Some((time.to_string(), frame.strip_prefix('#')?.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn times_are_wall_clock_in_tcpdumps_styles_and_equal_tsharks() {
    if !have("tshark") {
        return;
    }
    let lab = repo().join("captures/lab");
    let pcap = lab.join("dirty-ssl.pcap.gz").display().to_string();
    // tshark's epoch times of every frame, to the microsecond as tcpdump -tt prints them.
    let tshark = Command::new("tshark")
        .args(["-r", &pcap, "-T", "fields", "-e", "frame.number", "-e"])
        .arg("frame.time_epoch")
        .output()
        .expect("tshark");
    let epoch: std::collections::HashMap<u64, String> = text(&tshark.stdout)
        .lines()
        .filter_map(|l| {
            let (n, t) = l.split_once('\t')?;
            let (s, frac) = t.split_once('.')?;
            Some((n.parse().ok()?, format!("{s}.{}", frac.get(..6)?)))
        })
        .collect();
    let tt = run(&["analyze", "-q", "-tt", &pcap]);
    let steps = step_times(&text(&tt.stdout));
    assert_eq!(steps.len(), 12, "{}", text(&tt.stdout));
    for (time, frame) in &steps {
        assert_eq!(Some(time), epoch.get(frame), "frame {frame}");
    }
    // The default is the time of day in the local zone; --utc and TZ agree on the instant.
    let berlin = bin()
        .env("TZ", "Europe/Berlin")
        .args(["analyze", "-q", &pcap])
        .output()
        .expect("runs");
    let berlin = text(&berlin.stdout);
    assert!(
        berlin.starts_with("capture   2026-11-24 11:20:31.142926 CET (+01:00) to 11:20:34"),
        "{berlin}"
    );
    let utc = text(&run(&["analyze", "-q", "--utc", &pcap]).stdout);
    assert!(
        utc.starts_with("capture   2026-11-24 10:20:31.142926 UTC to"),
        "{utc}"
    );
    let (b, u) = (step_times(&berlin), step_times(&utc));
    assert_eq!(b.len(), u.len());
    for ((bt, bf), (ut, uf)) in b.iter().zip(&u) {
        assert_eq!(bf, uf);
        assert_eq!(bt.get(2..), ut.get(2..), "same minutes and seconds");
        let h = |t: &str| t.get(..2).and_then(|h| h.parse::<u32>().ok()).unwrap();
        assert_eq!(h(bt), (h(ut) + 1) % 24, "{bt} is {ut} + 1 h");
    }
    // -tttt: date and time; -ttttt and --time offset: seconds from the first frame.
    let dated = step_times(&text(
        &run(&["analyze", "-q", "--utc", "-tttt", &pcap]).stdout,
    ));
    assert!(
        dated.is_empty(),
        "a date has a space: the steps read as two words"
    );
    let step_374 = |report: &str| {
        let line = report
            .lines()
            .find(|l| l.contains(" ms  #374  "))
            .unwrap_or_default();
        line.split("  +")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let dated = text(&run(&["analyze", "-q", "--utc", "-tttt", &pcap]).stdout);
    assert_eq!(step_374(&dated), "2026-11-24 10:20:31.905507", "{dated}");
    let offsets = text(&run(&["analyze", "-q", "-ttttt", &pcap]).stdout);
    assert_eq!(
        offsets,
        text(&run(&["analyze", "-q", "--time", "offset", &pcap]).stdout)
    );
    assert_eq!(step_374(&offsets), "0.762581", "{offsets}");
    // A local date and time without a zone, as ProxySQL logs it, selects what the same instant
    // in RFC 3339 does.
    let since = |tz: &str, at: &str| {
        let out = bin()
            .env("TZ", tz)
            .args(["analyze", "-q", "--format", "json", "--since", at, &pcap])
            .output()
            .expect("runs");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        doc["connections"].as_array().map(|a| a.len()).unwrap_or(0)
    };
    let n = since("Europe/Berlin", "2026-11-24 11:20:33");
    assert!(n > 0 && n < 18, "{n}");
    assert_eq!(n, since("UTC", "2026-11-24T10:20:33Z"));
    assert_eq!(n, since("UTC", "2026-11-24 10:20:33"));
}

#[test]
fn the_text_report_fits_the_width_it_is_given() {
    let pcap = repo()
        .join("captures/lab/dirty-ssl.pcap.gz")
        .display()
        .to_string();
    for width in [60usize, 100, 120] {
        let w = width.to_string();
        let out = bin()
            .env_remove("COLUMNS")
            .args(["analyze", "-q", "--all", "--width", &w, &pcap])
            .output()
            .expect("runs");
        let report = text(&out.stdout);
        // The table rows are not wrapped (they are cut by nothing: a terminal wraps them);
        // every other line is.
        let is_row = |l: &str| {
            l.split_whitespace()
                .next()
                .is_some_and(|id| id.parse::<u64>().is_ok())
                && l.contains(" -> ")
        };
        let heading = |l: &str| l.trim_start().starts_with("id  closed");
        for l in report.lines().filter(|l| !is_row(l) && !heading(l)) {
            assert!(l.chars().count() <= width, "{width}: {l:?}");
        }
    }
    // COLUMNS sets the width when --width does not; 0 never wraps.
    let wide = bin()
        .env("COLUMNS", "300")
        .args(["analyze", "-q", &pcap])
        .output()
        .expect("runs");
    let unwrapped = run(&["analyze", "-q", "--width", "0", &pcap]);
    assert_eq!(text(&wide.stdout), text(&unwrapped.stdout));
    assert!(text(&unwrapped.stdout)
        .lines()
        .any(|l| l.chars().count() > 120));
}

#[test]
fn a_filter_expression_after_the_files_is_dash_f() {
    let pcap = repo()
        .join("captures/lab/dirty-ssl.pcap.gz")
        .display()
        .to_string();
    let words = run(&[
        "analyze", "-q", "--format", "json", &pcap, "tcp", "port", "51935",
    ]);
    let flag = run(&[
        "analyze",
        "-q",
        "--format",
        "json",
        "-f",
        "tcp port 51935",
        &pcap,
    ]);
    assert_eq!(words.status.code(), Some(0), "{}", text(&words.stderr));
    assert_eq!(text(&words.stdout), text(&flag.stdout));
    let doc: serde_json::Value = serde_json::from_slice(&words.stdout).expect("json");
    assert_eq!(
        doc["summary"]["capture_filter"]["expression"],
        "tcp port 51935"
    );
    // The same on timeline, and after -r as tcpdump -r FILE EXPR.
    let tl =
        |args: &[&str]| text(&run(&[&["timeline", "--format", "jsonl"][..], args].concat()).stdout);
    assert_eq!(
        tl(&["-r", &pcap, "not", "port", "51935"]),
        tl(&["-f", "not port 51935", &pcap])
    );
    // Two different filters are an error naming both; a missing file is still a missing file.
    let both = run(&[
        "analyze",
        "-q",
        "-f",
        "tcp port 1",
        &pcap,
        "tcp",
        "port",
        "2",
    ]);
    assert_eq!(both.status.code(), Some(1));
    assert!(
        text(&both.stderr).contains("\"tcp port 1\""),
        "{}",
        text(&both.stderr)
    );
    let missing = run(&["analyze", "-q", &pcap, "port.pcap"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("port.pcap: cannot read"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn a_time_before_the_end_is_counted_from_the_last_frame() {
    let pcap = repo()
        .join("captures/lab/dirty-ssl.pcap.gz")
        .display()
        .to_string();
    let doc = |since: &str| {
        let out = run(&["analyze", "-q", "--format", "json", "--since", since, &pcap]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let all = doc("0");
    let end = all["summary"]["capture_end"].as_str().unwrap().to_string();
    let before = doc("-1s");
    // The bound is the last frame's time less a second, in seconds from the first frame.
    let since = before["summary"]["filtered"]["since"].as_f64().unwrap();
    let span = doc("0")["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["end"]["t"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        (since - (span - 1.0)).abs() < 0.001,
        "{since} vs {span} ({end})"
    );
    let ids = |d: &serde_json::Value| -> Vec<u64> {
        d["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&before), ids(&doc(&format!("{since:.6}"))));
    assert!(ids(&before).len() < ids(&all).len());
    // Standard input is read once: its end is not known first.
    let piped = bin()
        .args(["analyze", "-q", "--since", "-1s", "-"])
        .stdin(std::fs::File::open(&pcap).unwrap())
        .output()
        .expect("runs");
    assert_eq!(piped.status.code(), Some(1));
    assert!(
        text(&piped.stderr).contains("needs the end first"),
        "{}",
        text(&piped.stderr)
    );
}
