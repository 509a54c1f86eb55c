//! `compare BEFORE... -- AFTER...`: each set analysed as `analyze` would (its own first pass
//! for the legs, the same key logs), tallied, and the two tallies compared
//! ([`crate::compare`]).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{log_legs, open_all, outcome, prepare, read_keylogs, Error, Outcome};
use crate::analyze::{self, Options};
use crate::compare::latency::Timer;
use crate::compare::{Comparison, SetTally};
use crate::diagnose::legs::LegFlags;
use crate::dissect::Carries;
use crate::model::Summary;
use crate::report::{Report, RunSummary};
use crate::source::Sources;

/// Output formats of `compare`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Verdict lines, then the counts and rates side by side (100 columns).
    Text,
    /// One JSON document (schema `proxyscope.compare/1`).
    Json,
    /// One self-contained HTML page with both sets' histograms.
    Html,
}

/// Settings of `compare`.
#[derive(Clone, Debug)]
pub struct CompareCommand {
    /// The capture files (or directories of them) before the change.
    pub before: Vec<String>,
    /// The capture files (or directories of them) after it.
    pub after: Vec<String>,
    /// Output format.
    pub format: Format,
    /// The pipeline's settings (its key log and legs are filled in per set).
    pub analysis: Options,
    /// Key log files, used for both sets.
    pub keylogs: Vec<String>,
    /// Legs given on the command line (none: a first pass per set finds proxies).
    pub leg_flags: LegFlags,
}

/// `compare`: the comparison on `out`; exit outcome [`Outcome::Worse`] when a signature got
/// worse (an input that cannot be read is [`Outcome::Unreadable`] first, whatever it says).
pub fn compare(
    cmd: &CompareCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    if let Some(e) = &cmd.analysis.capture_filter {
        crate::source::bpf::Bpf::new(e)?;
    }
    let keylog = read_keylogs(&cmd.keylogs, err)?;
    let opts = Options {
        keylog,
        ..cmd.analysis.clone()
    };
    let (before, ob) = tally(&cmd.before, &opts, &cmd.leg_flags, err)?;
    let (after, oa) = tally(&cmd.after, &opts, &cmd.leg_flags, err)?;
    let cmp = Comparison::of(&before, &after);
    match cmd.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &cmp)?;
            writeln!(out)?;
        }
        Format::Text => out.write_all(cmp.text().as_bytes())?,
        Format::Html => out.write_all(cmp.html().as_bytes())?,
    }
    out.flush()?;
    Ok(if ob == Outcome::Unreadable || oa == Outcome::Unreadable {
        Outcome::Unreadable
    } else if !cmp.worse.is_empty() {
        Outcome::Worse
    } else if ob == Outcome::Partial || oa == Outcome::Partial {
        Outcome::Partial
    } else {
        Outcome::Done
    })
}

/// The capture files of a set: a directory stands for the capture files directly in it
/// (`.pcap`, `.pcapng`, `.cap`, optionally `.gz`), sorted by name.
pub fn expand(paths: &[String]) -> Vec<String> {
    let mut files = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if !path.is_dir() {
            files.push(p.clone());
            continue;
        }
        let mut found: Vec<String> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.is_file())
            .filter(|f| {
                let n = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let n = n.strip_suffix(".gz").unwrap_or(n);
                [".pcap", ".pcapng", ".cap"].iter().any(|x| n.ends_with(x))
            })
            .map(|f| f.display().to_string())
            .collect();
        found.sort();
        if found.is_empty() {
            // Named as given, so that the read fails and says so.
            files.push(p.clone());
        }
        files.extend(found);
    }
    files
}

fn lock(t: &Mutex<Timer>) -> MutexGuard<'_, Timer> {
    // A panic elsewhere cannot leave the timer half-updated in a way that matters here.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Feeds finished connections, with their requests' times, into the tally.
struct Sink<'a> {
    tally: &'a mut SetTally,
    timer: Arc<Mutex<Timer>>,
}

impl Report for Sink<'_> {
    fn connection(&mut self, c: &Summary) -> std::io::Result<()> {
        let times = lock(&self.timer).take(c.id);
        self.tally.add(c, times);
        Ok(())
    }
    fn finish(&mut self, run: &RunSummary) -> std::io::Result<()> {
        self.tally.finish(run, &lock(&self.timer));
        Ok(())
    }
}

/// One set: its legs, then the run, tallied; the outcome says whether it was all read.
fn tally(
    paths: &[String],
    opts: &Options,
    flags: &LegFlags,
    err: &mut dyn Write,
) -> Result<(SetTally, Outcome), Error> {
    let files = expand(paths);
    let (inputs, mut unreadable) = prepare(&files, err);
    if inputs.is_empty() {
        return Ok((SetTally::new(files), Outcome::Unreadable));
    }
    let mut opts = opts.clone();
    // A set may hold several vantage points of the same traffic: their clocks are aligned and
    // second observations recognised, as `analyze` does, so nothing is counted twice.
    opts.clocks = analyze::clocks(&inputs, &opts.clock_offsets)?;
    opts.legs = analyze::find_legs(&inputs, flags.clone(), &opts)?;
    log_legs(flags, &opts.legs);
    let captures = open_all(&inputs, &mut unreadable, err);
    if captures.is_empty() {
        return Ok((SetTally::new(files), Outcome::Unreadable));
    }
    let (tally, run) = tally_sources(&mut Sources::new(captures), &opts, files)?;
    let o = outcome(&run, !unreadable.is_empty(), err);
    Ok((tally, o))
}

/// Runs the pipeline over `sources` (legs already in `opts`) and tallies the set made of
/// `files`: the tally and the run's summary.
pub fn tally_sources(
    sources: &mut Sources,
    opts: &Options,
    files: Vec<String>,
) -> std::io::Result<(SetTally, RunSummary)> {
    let mut tally = SetTally::new(files);
    let timer = Arc::new(Mutex::new(Timer::default()));
    let hook_timer = timer.clone();
    let hook: analyze::EventHook = Box::new(move |conn, cx, ev| {
        if cx.carries == Carries::Mysql {
            lock(&hook_timer).event(
                conn.id,
                conn.is_client(ev.side),
                &ev.kind,
                ev.at,
                cx.relayed_as,
            );
        }
    });
    let mut sink = Sink {
        tally: &mut tally,
        timer,
    };
    let run = analyze::run_with_hook(sources, opts, &mut sink, &mut |_| {}, Some(hook))?;
    drop(sink);
    Ok((tally, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_stands_for_its_capture_files() {
        let dir = std::env::temp_dir().join(format!("proxyscope-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for n in ["b.pcap", "a.pcapng.gz", "keys.log", "c.cap"] {
            std::fs::write(dir.join(n), b"x").expect("write");
        }
        let d = dir.display().to_string();
        let got = expand(&[d.clone(), "other.pcap".into()]);
        let names: Vec<&str> = got
            .iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f))
            .collect();
        assert_eq!(names, ["a.pcapng.gz", "b.pcap", "c.cap", "other.pcap"]);
        let _ = std::fs::remove_dir_all(&dir);
        // An empty directory is kept as named, so that reading it fails visibly.
        let empty =
            std::env::temp_dir().join(format!("proxyscope-compare-e-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("dir");
        let e = empty.display().to_string();
        assert_eq!(expand(std::slice::from_ref(&e)), [e]);
        let _ = std::fs::remove_dir_all(&empty);
    }
}
