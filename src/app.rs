//! The commands, as library calls: each takes plain settings and writers (report on `out`,
//! diagnostics on `err`) and returns an [`Outcome`], which the binary maps to its exit code.
//! [`crate::analyze`] drives the pipeline; this module adds what a command does around
//! it: opening the inputs, reading key logs and ProxySQL logs, the first pass that finds
//! proxies, the progress line, and what it says about inputs that broke off.

pub mod compare;
pub mod explain;
pub mod progress;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::analyze::{self, Budget, Options, Progress};
use crate::diagnose::legs::LegFlags;
use crate::diagnose::proxysql_log::ProxysqlLog;
use crate::export::{self, pcap::KeyRecorder, Filter, Timeline};
use crate::report::{JsonReport, Report, RunSummary, TextReport};
use crate::source::{CaptureFile, Input, Sources};
use crate::tls::decrypt::KeyLog;

pub use compare::{compare, CompareCommand};
pub use explain::{explain, ExplainCommand};
pub use progress::Tty;

/// Why a command could not finish (bad input is not an error: see [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key log named on the command line cannot be read.
    #[error("{path}: cannot read key log")]
    KeyLog {
        /// The path as given.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A ProxySQL log named on the command line cannot be read.
    #[error("{path}: cannot read the ProxySQL log")]
    ProxysqlLog {
        /// The path as given.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `--write-incident` with an input that can be read only once.
    #[error(
        "{path}: --write-incident reads the files again after the analysis: it needs regular \
         files, not a pipe or standard input"
    )]
    NotRereadable {
        /// The input.
        path: String,
    },
    /// `--since`/`--until` before the end (`-30s`) with an input that can be read only once.
    #[error(
        "{path}: a time before the capture's end (-30s) needs the end first: give regular files, \
         not a pipe or standard input"
    )]
    EndUnknown {
        /// The input.
        path: String,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Writing the incident pcaps failed.
    #[error(transparent)]
    Incidents(#[from] export::pcap::Error),
    /// Writing JSON failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The capture filter (`-f`) cannot be compiled, or there is no libpcap to compile it.
    #[error(transparent)]
    Filter(#[from] crate::source::bpf::BpfError),
}

impl Error {
    /// The reader of the output went away (`| head`): a normal way to stop, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Io(e) => e.kind() == io::ErrorKind::BrokenPipe,
            // serde_json wraps the writer's error (`explain --format json | head -1`).
            Error::Json(e) => e.io_error_kind() == Some(io::ErrorKind::BrokenPipe),
            _ => false,
        }
    }
}

/// How a command went, as far as its exit code is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was read (exit 0).
    Done,
    /// An input could not be opened (exit 1).
    Unreadable,
    /// An input stopped early; everything before was analysed (exit 2).
    Partial,
    /// `explain` knows nothing of the text (exit 1, as grep).
    NoMatch,
    /// `compare`: an incident signature got worse after the change (exit 3).
    Worse,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Unreadable | Outcome::NoMatch => 1,
            Outcome::Partial => 2,
            Outcome::Worse => 3,
        }
    }
}

/// Report formats of `analyze`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// For a terminal: header, incidents, problem closes, clean ones counted, totals.
    Text,
    /// One JSON document (schema proxyscope.analyze/1).
    Json,
    /// The event stream (schema proxyscope.events/1), as `timeline --format jsonl` writes it.
    Jsonl,
}

/// Settings of `analyze`.
#[derive(Clone, Debug)]
pub struct AnalyzeCommand {
    /// Capture files (`-` for standard input); several are merged in timestamp order.
    pub files: Vec<String>,
    /// Output format.
    pub format: ReportFormat,
    /// Which connections and which time range are listed (`--only-problems`: the text report
    /// counts the clean closes it leaves out; JSON notes what was left out in `filtered`).
    pub filter: Filter,
    /// The pipeline's settings; its key log, legs and ProxySQL log are filled in from the
    /// fields below.
    pub analysis: Options,
    /// Key log files.
    pub keylogs: Vec<String>,
    /// ProxySQL error logs.
    pub proxysql_logs: Vec<String>,
    /// Legs given on the command line (none: a first pass finds proxies).
    pub leg_flags: LegFlags,
    /// Write a pcap per incident into this directory.
    pub write_incident: Option<PathBuf>,
    /// Progress on stderr, and whether stdout shares its terminal.
    pub tty: Tty,
    /// The text report's times, width, colour, and whether it lists clean closes.
    pub look: crate::report::Look,
}

/// `analyze`: the report on `out`; progress (when `cmd.tty` says so) on stderr.
pub fn analyze<W: Write>(
    cmd: &AnalyzeCommand,
    out: W,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    // A bad filter is a usage error before anything is read.
    if let Some(e) = &cmd.analysis.capture_filter {
        crate::source::bpf::Bpf::new(e)?;
    }
    let (inputs, mut unreadable) = prepare(&cmd.files, err);
    if inputs.is_empty() {
        return Ok(Outcome::Unreadable);
    }
    let mut filter = cmd.filter.clone();
    resolve_end(&mut filter, &inputs)?;
    if let Some(i) = inputs.iter().find(|i| !i.rereadable()) {
        if cmd.write_incident.is_some() {
            return Err(Error::NotRereadable {
                path: i.path().to_string(),
            });
        }
    }
    let mut opts = Options {
        keylog: read_keylogs(&cmd.keylogs, err)?,
        proxysql_log: read_proxysql_logs(&cmd.proxysql_logs)?,
        ..cmd.analysis.clone()
    };
    opts.clocks = analyze::clocks(&inputs, &opts.clock_offsets)?;
    opts.legs = analyze::find_legs(&inputs, cmd.leg_flags.clone(), &opts)?;
    log_legs(&cmd.leg_flags, &opts.legs);
    let files = open_all(&inputs, &mut unreadable, err);
    if files.is_empty() {
        return Ok(Outcome::Unreadable);
    }
    let mut sources = Sources::new(files);
    let mut meter = progress::Meter::new(
        progress::style(cmd.tty.progress, &progress::sizes(&inputs)),
        "frames",
    );
    let out = meter.guard(out, cmd.tty.stdout);
    let mut out = out;
    let mut timeline = Timeline::new(filter.clone());
    let mut report: Box<dyn Report + '_> = match cmd.format {
        ReportFormat::Text => Box::new(export::Filtered::new(
            TextReport::new(&mut out, cmd.look.clone())
                .only_problems(filter.only_problems)
                .max_rows(opts.budget.report_rows()),
            filter.clone(),
            false,
        )),
        ReportFormat::Json => Box::new(export::Filtered::new(
            JsonReport::new(&mut out).with_unreadable(unreadable.clone()),
            filter.clone(),
            true,
        )),
        ReportFormat::Jsonl => Box::new(&mut timeline),
    };
    let mut progress = |p: Progress| meter.update(p.frames, p.bytes, Some(p.open));
    let mut incident_keys = Default::default();
    // The keys of incident connections are recorded only when their packets are to be written.
    let run = if cmd.write_incident.is_some() {
        let mut keys = KeyRecorder {
            inner: report.as_mut(),
            keys: Default::default(),
            order: Default::default(),
        };
        let run = analyze::run(&mut sources, &opts, &mut keys, &mut progress)?;
        incident_keys = keys.keys;
        run
    } else {
        analyze::run(&mut sources, &opts, report.as_mut(), &mut progress)?
    };
    log_tls(&run.tls);
    drop(report);
    meter.finish();
    if cmd.format == ReportFormat::Jsonl {
        export::write(&timeline, export::Format::Jsonl, "", &mut out)?;
        out.flush()?;
    }
    log_files(&run);
    if let Some(dir) = &cmd.write_incident {
        let readable: Vec<String> = cmd
            .files
            .iter()
            .filter(|p| CaptureFile::open(p, 0).is_ok())
            .cloned()
            .collect();
        let written =
            export::pcap::write_incidents(&readable, &run.incidents, &incident_keys, dir)?;
        for w in &written {
            let _ = writeln!(
                err,
                "proxyscope: incident {}: {} ({} frames)",
                w.incident,
                w.path.display(),
                w.frames
            );
        }
    }
    Ok(outcome(&run, !unreadable.is_empty(), err))
}

/// Settings of `timeline`.
#[derive(Clone, Debug)]
pub struct TimelineCommand {
    /// Capture files; several are merged in timestamp order.
    pub files: Vec<String>,
    /// Output format.
    pub format: export::Format,
    /// Write here (atomically) instead of to the `out` writer.
    pub output: Option<PathBuf>,
    /// Which connections and which time range.
    pub filter: Filter,
    /// A capture filter (BPF) on the frames.
    pub capture_filter: Option<String>,
    /// Events kept per connection from its start, and as many from its end.
    pub keep_events: usize,
    /// Clock offsets given (`--clock-offset FILE=SECONDS`).
    pub clock_offsets: Vec<(String, f64)>,
    /// Key log files.
    pub keylogs: Vec<String>,
    /// Legs given on the command line (none: a first pass finds proxies).
    pub leg_flags: LegFlags,
    /// The memory budget.
    pub budget: Budget,
    /// Progress on stderr (the export is written after it is cleared).
    pub tty: Tty,
}

/// `timeline`: the export into `cmd.output`, or on `out` without one.
pub fn timeline(
    cmd: TimelineCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    if let Some(e) = &cmd.capture_filter {
        crate::source::bpf::Bpf::new(e)?;
    }
    let (inputs, mut unreadable) = prepare(&cmd.files, err);
    if inputs.is_empty() {
        return Ok(Outcome::Unreadable);
    }
    let mut filter = cmd.filter.clone();
    resolve_end(&mut filter, &inputs)?;
    let mut opts = Options {
        keep_events: cmd.keep_events,
        capture_filter: cmd.capture_filter.clone(),
        keylog: read_keylogs(&cmd.keylogs, err)?,
        budget: cmd.budget,
        ..Options::default()
    };
    opts.clocks = analyze::clocks(&inputs, &cmd.clock_offsets)?;
    opts.legs = analyze::find_legs(&inputs, cmd.leg_flags.clone(), &opts)?;
    log_legs(&cmd.leg_flags, &opts.legs);
    let files = open_all(&inputs, &mut unreadable, err);
    if files.is_empty() {
        return Ok(Outcome::Unreadable);
    }
    let mut tl = Timeline::new(filter);
    let mut meter = progress::Meter::new(
        progress::style(cmd.tty.progress, &progress::sizes(&inputs)),
        "frames",
    );
    let run = analyze::run(
        &mut Sources::new(files),
        &opts,
        &mut tl,
        &mut |p: Progress| meter.update(p.frames, p.bytes, Some(p.open)),
    )?;
    log_tls(&run.tls);
    meter.finish();
    log_files(&run);
    let title: Vec<String> = cmd
        .files
        .iter()
        .map(|f| {
            let p = Path::new(f);
            p.file_name()
                .map_or(f.clone(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    match &cmd.output {
        // Written under a temporary name and renamed when complete: never through a planted
        // link, never half a file.
        Some(p) => {
            let mut file = crate::outfile::Atomic::create(p)?;
            export::write(&tl, cmd.format, &title.join(", "), &mut file)?;
            file.commit()?;
        }
        None => {
            export::write(&tl, cmd.format, &title.join(", "), out)?;
            out.flush()?;
        }
    }
    Ok(outcome(&run, !unreadable.is_empty(), err))
}

/// `live`: verdicts on `out` as they happen (text neutralised for a terminal, JSON Lines
/// exact); a note on `err` when packets were dropped.
#[cfg(feature = "live")]
pub fn live<W: Write>(
    opts: &crate::live::LiveOptions,
    out: W,
    err: &mut dyn Write,
    tty: Tty,
) -> Result<Outcome, crate::live::LiveError> {
    use crate::live::{self, LiveError, LiveFormat};
    let mut meter =
        progress::Meter::new(tty.progress.then_some(progress::Style::Spinner), "packets");
    let mut out = meter.guard(out, tty.stdout);
    let mut progress = |p: live::LiveProgress| meter.update(p.packets, p.bytes, None);
    let summary = match opts.format {
        // The text rows escape what comes from the capture themselves (and may be coloured).
        LiveFormat::Text => live::run_with_progress(opts, &mut out, &mut progress),
        LiveFormat::Jsonl => live::run_with_progress(opts, &mut out, &mut progress),
        LiveFormat::Parquet => live_parquet(opts, &mut out, &mut progress, err),
    };
    drop(out);
    meter.finish();
    let summary = match summary {
        Ok(s) => s,
        // The reader went away (`| head`): a normal way to stop.
        Err(LiveError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Outcome::Done),
        Err(e) => return Err(e),
    };
    if let Some(c) = summary.capture {
        if c.dropped > 0 || c.if_dropped > 0 {
            let _ = writeln!(
                err,
                "proxyscope live: {} packets dropped by the kernel, {} by the interface: \
                 verdicts may lack evidence (a larger -B/--buffer-size or a narrower filter helps)",
                c.dropped, c.if_dropped
            );
        }
    }
    Ok(Outcome::Done)
}

/// `live --format parquet`: the JSON Lines stream made into Parquet, into `--output` (rotated,
/// each file renamed into place when complete) or `out`; the footer is written on every normal
/// stop (signal, --duration, --count).
#[cfg(feature = "live")]
fn live_parquet(
    opts: &crate::live::LiveOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(crate::live::LiveProgress),
    err: &mut dyn Write,
) -> Result<crate::live::LiveSummary, crate::live::LiveError> {
    #[cfg(feature = "parquet")]
    {
        use crate::live::events_file::EventsFile;
        let mut sink = match &opts.output {
            Some(p) => EventsFile::to_file(p, opts.output_rotate),
            None => EventsFile::to_writer(out),
        };
        let summary = crate::live::run_with_progress(opts, &mut sink, progress)?;
        sink.finish()?;
        if let Some(last) = sink.files.last() {
            let _ = writeln!(
                err,
                "proxyscope live: {} rows in {} Parquet file(s), the last {}",
                sink.rows,
                sink.files.len(),
                last.display()
            );
        }
        Ok(summary)
    }
    #[cfg(not(feature = "parquet"))]
    {
        let _ = (opts, out, progress, err);
        Err(io::Error::new(io::ErrorKind::Unsupported, export::NO_PARQUET).into())
    }
}

/// Reads key log files (None when there are none), saying on `err` which hold no secrets.
pub fn read_keylogs(paths: &[String], err: &mut dyn Write) -> Result<Option<KeyLog>, Error> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut log = KeyLog::default();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|source| Error::KeyLog {
            path: p.clone(),
            source,
        })?;
        let n = log.add_text(&text);
        if n == 0 {
            let _ = writeln!(err, "proxyscope: {p}: no TLS secrets found in this key log");
        } else {
            tracing::info!("{p}: key log, {n} TLS secrets read");
        }
    }
    Ok(Some(log))
}

/// Reads ProxySQL error logs, their lines in the order given.
pub fn read_proxysql_logs(paths: &[String]) -> Result<ProxysqlLog, Error> {
    let mut log = ProxysqlLog::default();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|source| Error::ProxysqlLog {
            path: p.clone(),
            source,
        })?;
        let lines = ProxysqlLog::parse(&text);
        tracing::info!("{p}: ProxySQL log read");
        log.extend(lines);
    }
    Ok(log)
}

/// Inputs that could not be opened: (path as given, reason).
pub type Unreadable = Vec<(String, String)>;

/// Prepares the inputs (a stream is read once and spooled for the second pass), saying on
/// `err` which cannot be opened: the inputs, and those that could not be.
pub fn prepare(paths: &[String], err: &mut dyn Write) -> (Vec<Input>, Unreadable) {
    let mut inputs = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        match Input::new(path) {
            Ok(i) => inputs.push(i),
            Err(e) => {
                let _ = writeln!(err, "proxyscope: {e}");
                unreadable.push((path.clone(), e.to_string()));
            }
        }
    }
    (inputs, unreadable)
}

/// Turns `--since`/`--until -30s` into instants: reads the inputs' timestamps once for the
/// capture's last frame (frames only, nothing decoded). Nothing to do without such a bound.
pub fn resolve_end(filter: &mut Filter, inputs: &[Input]) -> Result<(), Error> {
    let needs = |b: Option<crate::time::TimeBound>| b.is_some_and(|b| b.needs_end());
    if !needs(filter.since_bound) && !needs(filter.until_bound) {
        return Ok(());
    }
    if let Some(i) = inputs.iter().find(|i| !i.rereadable()) {
        return Err(Error::EndUnknown {
            path: i.path().to_string(),
        });
    }
    let files: Vec<CaptureFile> = inputs
        .iter()
        .enumerate()
        .filter_map(|(n, i)| CaptureFile::open(i.path(), n).ok())
        .collect();
    let mut sources = Sources::new(files);
    let mut end: Option<crate::time::Timestamp> = None;
    while let Some(f) = sources.next_frame() {
        end = end.max(Some(f.ts));
    }
    if let Some(end) = end {
        tracing::info!("capture ends at {}", end.rfc3339());
        filter.since_bound = filter.since_bound.map(|b| b.with_end(end));
        filter.until_bound = filter.until_bound.map(|b| b.with_end(end));
    }
    Ok(())
}

/// Opens the inputs for the analysis, saying on `err` which cannot be.
pub fn open_all(
    inputs: &[Input],
    unreadable: &mut Unreadable,
    err: &mut dyn Write,
) -> Vec<CaptureFile> {
    let mut files = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        match input.open(i) {
            Ok(f) => {
                // Link types are logged at the end, once every interface block is read.
                tracing::info!(
                    "{}: opened, {}{}{}",
                    f.info.path,
                    f.info.format,
                    if f.info.gzip { ", gzip-compressed" } else { "" },
                    if input.rereadable() {
                        ""
                    } else {
                        ", a stream (the first pass's bytes were spooled)"
                    }
                );
                files.push(f)
            }
            Err(e) => {
                let _ = writeln!(err, "proxyscope: {e}");
                unreadable.push((input.path().to_string(), e.to_string()));
            }
        }
    }
    files
}

/// Says at info level (`-v`) how the legs were settled: given on the command line, or the
/// proxies the first pass found.
fn log_legs(given: &LegFlags, legs: &crate::diagnose::legs::Legs) {
    if !given.frontend_ports.is_empty() || !given.backend_ports.is_empty() || given.proxy.is_some()
    {
        let proxy = given
            .proxy
            .map(|p| format!(" --proxy {p}"))
            .unwrap_or_default();
        tracing::info!(
            "legs given on the command line ({}--frontend-port {:?} --backend-port {:?}): no \
             first pass",
            proxy.trim_start(),
            given.frontend_ports,
            given.backend_ports
        );
        return;
    }
    let pairs = legs.pairs();
    if pairs.is_empty() {
        tracing::info!(
            "first pass ({} frames at most): no proxy found (no request relayed from a frontend \
             connection to a backend one); legs unknown unless --proxy or ports are given",
            analyze::FIRST_PASS_FRAMES
        );
    }
    for p in pairs {
        tracing::info!(
            "first pass: proxy {} → server {}: {} requests relayed{}",
            p.frontend,
            p.backend,
            p.paired_requests,
            if p.corroborated_by.is_empty() {
                String::new()
            } else {
                format!(", corroborated by {}", p.corroborated_by.join(", "))
            }
        );
    }
    for l in legs.listeners() {
        tracing::debug!("first pass: MySQL listener {l}");
    }
}

/// Says at info level (`-v`) what each file held.
fn log_files(run: &RunSummary) {
    for f in &run.files {
        let links: Vec<String> = f
            .linktypes
            .iter()
            .map(|&l| crate::source::Linktype(l).name())
            .collect();
        tracing::info!(
            "{}: {}{}, link types [{}], {} frames, {} bytes read{}",
            f.path,
            f.format,
            if f.gzip { " (gzip)" } else { "" },
            links.join(", "),
            f.frames,
            f.bytes,
            if f.secrets_blocks > 0 {
                format!(", {} decryption secrets blocks", f.secrets_blocks)
            } else {
                String::new()
            }
        );
    }
}

/// Says (with -v) what became of TLS decryption.
fn log_tls(tls: &crate::report::TlsCount) {
    if tls.sessions == 0 {
        tracing::info!("TLS: no TLS connections");
    } else {
        tracing::info!("TLS: {}", tls.describe());
    }
}

/// Says on `err` where input broke off or was skipped; the outcome: [`Outcome::Unreadable`]
/// when a file could not be read, [`Outcome::Partial`] when one stopped early.
pub fn outcome(run: &RunSummary, unreadable: bool, err: &mut dyn Write) -> Outcome {
    let mut partial = false;
    for f in &run.files {
        if let Some(stop) = &f.stop {
            let _ = writeln!(
                err,
                "proxyscope: {}: {stop}; everything before it was analysed",
                f.path
            );
            partial = true;
        }
        if f.undeclared_interface > 0 {
            let _ = writeln!(
                err,
                "proxyscope: {}: {} packets name an undeclared interface (skipped)",
                f.path, f.undeclared_interface
            );
        }
    }
    for (reason, n) in &run.skipped {
        if reason.starts_with("unsupported link type") {
            let _ = writeln!(err, "proxyscope: {n} frames skipped: {reason}");
        }
    }
    if unreadable {
        Outcome::Unreadable
    } else if partial {
        Outcome::Partial
    } else {
        Outcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(name: &str) -> String {
        format!("{}/captures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("proxyscope-app-{}-{name}", std::process::id()))
    }

    fn analyze_files(files: Vec<String>) -> (Outcome, String, String) {
        let cmd = AnalyzeCommand {
            files,
            format: ReportFormat::Text,
            filter: Filter::default(),
            analysis: Options::default(),
            keylogs: Vec::new(),
            proxysql_logs: Vec::new(),
            leg_flags: LegFlags::default(),
            write_incident: None,
            tty: Tty::default(),
            look: Default::default(),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = analyze(&cmd, &mut out, &mut err).expect("analyze");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
        (outcome, text(out), text(err))
    }

    #[test]
    fn outcomes_map_to_the_documented_exit_codes() {
        let codes: Vec<u8> = [
            Outcome::Done,
            Outcome::Unreadable,
            Outcome::Partial,
            Outcome::NoMatch,
            Outcome::Worse,
        ]
        .iter()
        .map(|o| o.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 1, 3]);
    }

    #[test]
    fn a_readable_capture_is_done_and_an_unreadable_one_is_named_on_err() {
        let good = capture("plain-clean-quit.pcap");
        let (outcome, out, err) = analyze_files(vec![good.clone()]);
        assert_eq!(outcome, Outcome::Done, "{err}");
        assert!(err.is_empty(), "{err}");
        assert!(out.contains("CLEAN CLOSES  1 (1 clean_quit)"), "{out}");
        let missing = temp("missing.pcap").display().to_string();
        let (outcome, out2, err) = analyze_files(vec![good, missing.clone()]);
        assert_eq!(outcome, Outcome::Unreadable);
        assert!(err.starts_with(&format!("proxyscope: {missing}")), "{err}");
        // The readable file is still reported.
        assert_eq!(out, out2);
    }

    #[test]
    fn a_capture_cut_short_is_partial_and_says_where() {
        let whole = std::fs::read(capture("plain-clean-quit.pcap")).expect("capture");
        let cut = temp("cut.pcap");
        std::fs::write(&cut, whole.get(..whole.len() - 10).expect("long enough")).expect("write");
        let (outcome, _, err) = analyze_files(vec![cut.display().to_string()]);
        let _ = std::fs::remove_file(&cut);
        assert_eq!(outcome, Outcome::Partial, "{err}");
        assert!(err.contains("everything before it was analysed"), "{err}");
    }

    #[test]
    fn key_logs_unreadable_are_errors_and_empty_ones_a_note() {
        let missing = temp("missing.keylog").display().to_string();
        let e = read_keylogs(std::slice::from_ref(&missing), &mut io::sink()).unwrap_err();
        assert_eq!(e.to_string(), format!("{missing}: cannot read key log"));
        assert!(std::error::Error::source(&e).is_some());
        let empty = temp("empty.keylog");
        std::fs::write(&empty, "# nothing here\n").expect("write");
        let mut err = Vec::new();
        let log = read_keylogs(&[empty.display().to_string()], &mut err).expect("readable");
        let _ = std::fs::remove_file(&empty);
        assert!(log.is_some());
        assert_eq!(
            String::from_utf8(err).expect("utf-8"),
            format!(
                "proxyscope: {}: no TLS secrets found in this key log\n",
                empty.display()
            )
        );
    }

    #[test]
    fn only_a_closed_output_pipe_is_a_broken_pipe() {
        let pipe = Error::Io(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(pipe.is_broken_pipe());
        assert!(!Error::Io(io::Error::from(io::ErrorKind::NotFound)).is_broken_pipe());
        let cmd_error = Error::NotRereadable { path: "-".into() };
        assert!(!cmd_error.is_broken_pipe());
        let json = Error::Json(serde_json::Error::io(io::Error::from(
            io::ErrorKind::BrokenPipe,
        )));
        assert!(json.is_broken_pipe());
    }
}
