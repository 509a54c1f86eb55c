//! The offline pipeline: sources → decode → tcp → model → report, driven frame by frame.

use std::collections::BTreeMap;
use std::io;

use crate::decode::{self, Skip};
use crate::dissect::Dissector;
use crate::model::Summary;
use crate::report::{Report, RunSummary};
use crate::source::Sources;
use crate::tcp::{self, At, Connection, StreamEvent, StreamSink, Tracker};
use crate::time::Timestamp;

/// Settings of an analysis run.
#[derive(Clone, Debug)]
pub struct Options {
    /// TCP tracker settings.
    pub tcp: tcp::Config,
    /// Events kept per connection from its start, and as many from its end.
    pub keep_events: usize,
    /// TLS secrets (key log files); pcapng Decryption Secrets Blocks are added as they are read.
    pub keylog: Option<crate::tls::decrypt::KeyLog>,
    /// Legs around a proxy (flags and pairs found by an earlier pass).
    pub legs: crate::diagnose::legs::Legs,
    /// "Detected a broken connection" lines of a ProxySQL log, to match to backends.
    pub proxysql_log: Vec<crate::diagnose::proxysql_log::BrokenLine>,
    /// Closes on the two legs of a proxy this close in time are linked into one incident (ns).
    pub link_window_ns: i64,
    /// Stop after this many frames (a quick first pass that only looks for proxies).
    pub max_frames: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tcp: tcp::Config::default(),
            keep_events: crate::dissect::KEEP_EVENTS,
            keylog: None,
            legs: Default::default(),
            proxysql_log: Vec::new(),
            link_window_ns: crate::diagnose::incidents::LINK_WINDOW_NS,
            max_frames: None,
        }
    }
}

/// Progress of a run, for a progress line on stderr.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Frames read so far.
    pub frames: u64,
    /// Input bytes consumed so far.
    pub bytes: u64,
    /// Connections in the flow table.
    pub open: usize,
    /// The input is read; the summary is about to be written.
    pub done: bool,
}

/// Finished connections wait here so that reports come out in id order when they can; the
/// wait is bounded, so a connection open for the whole capture cannot hold up memory.
const REORDER_LIMIT: usize = 1024;
const PROGRESS_EVERY: u64 = 1 << 16;

struct Collector {
    dissector: Dissector,
    incidents: crate::diagnose::incidents::Incidents,
    verdicts: BTreeMap<&'static str, u64>,
    log: Vec<crate::diagnose::proxysql_log::LogMatch>,
    legs: crate::diagnose::legs::Legs,
    origin: Timestamp,
    pending: BTreeMap<u64, Summary>,
    closes: BTreeMap<&'static str, u64>,
    retransmissions: u64,
    gaps: u64,
    gap_bytes: u64,
}

impl StreamSink for Collector {
    fn event(&mut self, conn: &Connection, side: usize, at: At, ev: StreamEvent<'_>) {
        self.dissector.stream(conn, side, at, ev);
    }

    fn close(&mut self, conn: Connection) {
        let app = self.dissector.finish(&conn);
        let mut s = Summary::of(&conn, self.origin, app);
        s.relayed = self.dissector.pairing.take_links(conn.id);
        s.set_leg(&self.legs);
        self.incidents.add(&s);
        if let Some(v) = &s.verdict {
            *self.verdicts.entry(v.label.as_str()).or_default() += 1;
            let thread = s.mysql.as_ref().and_then(|m| m.thread_id);
            for m in self.log.iter_mut().filter(|m| m.conn.is_none()) {
                if Some(m.log.thread_id) == thread && m.log.port == s.server.port {
                    m.conn = Some(s.id);
                    m.capture_says = format!(
                        "connection {} ({} -> {}): {} by {} with {}{}",
                        s.id,
                        s.client,
                        s.server,
                        v.label.as_str(),
                        v.closed_by.map_or("nobody", |r| r.as_str()),
                        v.how,
                        match v.closed_by {
                            Some(crate::model::Role::Server) => "",
                            _ => " (the MySQL server did not close it)",
                        }
                    );
                }
            }
        }
        *self.closes.entry(s.close.how.as_str()).or_default() += 1;
        self.retransmissions += s.retransmissions.c2s + s.retransmissions.s2c;
        self.gaps += s.gaps.c2s.count + s.gaps.s2c.count;
        self.gap_bytes += s.gaps.c2s.bytes + s.gaps.s2c.bytes;
        self.pending.insert(s.id, s);
    }
}

impl Collector {
    fn release(&mut self, oldest_open: Option<u64>, report: &mut dyn Report) -> io::Result<()> {
        while let Some(&first) = self.pending.keys().next() {
            let ready = oldest_open.is_none_or(|o| first < o);
            if !ready && self.pending.len() <= REORDER_LIMIT {
                break;
            }
            if let Some(s) = self.pending.remove(&first) {
                report.connection(&s)?;
            }
        }
        Ok(())
    }
}

/// Runs the whole pipeline over `sources`, writing to `report`. Errors are only those of
/// writing the report; bad input is counted in the returned summary instead.
pub fn run(
    sources: &mut Sources,
    opts: &Options,
    report: &mut dyn Report,
    progress: &mut dyn FnMut(Progress),
) -> io::Result<RunSummary> {
    let mut tracker = Tracker::new(opts.tcp);
    let mut col = Collector {
        dissector: Dissector::new(opts.keep_events),
        incidents: crate::diagnose::incidents::Incidents::new(opts.link_window_ns),
        verdicts: BTreeMap::new(),
        log: opts
            .proxysql_log
            .iter()
            .map(|l| crate::diagnose::proxysql_log::LogMatch {
                log: l.clone(),
                conn: None,
                capture_says: "no backend connection with this thread id and port in the capture"
                    .into(),
            })
            .collect(),
        legs: opts.legs.clone(),
        origin: Timestamp::default(),
        pending: BTreeMap::new(),
        closes: BTreeMap::new(),
        retransmissions: 0,
        gaps: 0,
        gap_bytes: 0,
    };
    let mut keylog = opts.keylog.clone();
    col.dissector
        .set_keylog(keylog.clone().map(std::sync::Arc::new));
    let mut secrets_seen = 0;
    let mut skipped: BTreeMap<Skip, u64> = BTreeMap::new();
    let mut frames = 0u64;
    let mut start: Option<Timestamp> = None;
    loop {
        let secrets = sources.secrets_count();
        if secrets != secrets_seen {
            // A pcapng Decryption Secrets Block (TLS key log) was read with the last frame;
            // keys are needed from the ServerHello on, never for the packet that brought them.
            let log = keylog.get_or_insert_with(Default::default);
            for text in sources.tls_secrets().skip(secrets_seen) {
                log.add_text(&String::from_utf8_lossy(text));
            }
            secrets_seen = secrets;
            col.dissector
                .set_keylog(Some(std::sync::Arc::new(log.clone())));
        }
        if opts.max_frames.is_some_and(|m| frames >= m) {
            break;
        }
        let Some(frame) = sources.next_frame() else {
            break;
        };
        frames += 1;
        if start.is_none() {
            start = Some(frame.ts);
            col.origin = frame.ts;
        }
        match decode::decode(&frame) {
            Ok(seg) => {
                let before = tracker.stats.connections;
                tracker.process(&seg, &mut col);
                if !col.pending.is_empty() || tracker.stats.connections != before {
                    col.release(tracker.oldest_open(), report)?;
                }
            }
            Err(reason) => *skipped.entry(reason).or_default() += 1,
        }
        if frames % PROGRESS_EVERY == 0 {
            progress(Progress {
                frames,
                bytes: sources.consumed(),
                open: tracker.open_connections(),
                done: false,
            });
        }
    }
    progress(Progress {
        frames,
        bytes: sources.consumed(),
        open: tracker.open_connections(),
        done: true,
    });
    tracker.finish_all(&mut col);
    col.release(None, report)?;
    let run = RunSummary {
        capture_start: start,
        frames,
        closes: col.closes,
        skipped: skipped
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        tcp: tracker.stats.clone(),
        retransmissions: col.retransmissions,
        gaps: col.gaps,
        gap_bytes: col.gap_bytes,
        files: sources.files().iter().map(|f| f.info.clone()).collect(),
        proxies: col.dissector.pairing.pairs(),
        incidents: col.incidents.build(),
        verdicts: col.verdicts,
        proxysql_log: col.log,
    };
    report.finish(&run)?;
    Ok(run)
}
