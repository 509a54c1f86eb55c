//! Live capture: the same pipeline as `analyze` ([`crate::analyze::Engine`]), fed from a
//! libpcap capture (the `pcap` crate's tokio stream), printing each close verdict as its
//! connection finishes and each incident once it has settled, saving the packets on request,
//! and stopping cleanly on Ctrl-C, SIGTERM, `--duration` or `--count`.
//!
//! Memory stays bounded over hours: connections idle past `--idle-timeout` are expired, closed
//! ones leave the flow table after a short linger, and incident building looks back a bounded
//! horizon.

pub mod device;
#[cfg(feature = "parquet")]
pub mod events_file;
pub mod metrics;
pub mod writer;

use std::cell::RefCell;
use std::io::{self, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pcap::{Packet, PacketCodec};
use serde::Serialize;
use serde_json::json;

use crate::analyze::{Engine, Options};
use crate::diagnose::incidents::Incident;
use crate::diagnose::legs::{Leg, LegFlags, Legs};
use crate::dissect::Carries;
use crate::model::{EventLine, EventOut, Summary};
use crate::report::{Report, RunSummary};
use crate::source::{Frame, Linktype};
use crate::time::Timestamp;

pub use device::{interfaces, DeviceOptions, Interface, LiveError};
pub use writer::Rotation;

/// Output of a live run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveFormat {
    /// A row per close as it happens, incident blocks, a summary at the end.
    Text,
    /// JSON Lines (`proxyscope.events/1`, as `timeline --format jsonl`): the schema line, every
    /// event, a `verdict.close` line per close, a `verdict.incident` line per incident, and a
    /// `live.summary` line at the end.
    Jsonl,
    /// The records of `Jsonl` as Parquet rows (the caller turns the JSON Lines written into
    /// Parquet: [`events_file::EventsFile`]).
    Parquet,
}

impl LiveFormat {
    /// The run writes the JSON Lines event stream (which Parquet is made from).
    fn lines(self) -> bool {
        matches!(self, LiveFormat::Jsonl | LiveFormat::Parquet)
    }
}

/// Settings of a live run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The device and filter.
    pub device: DeviceOptions,
    /// The pipeline's settings (TCP idle timeout and linger, key log, link window).
    pub analysis: Options,
    /// Legs given on the command line; inferred proxies are added as they are found.
    pub leg_flags: LegFlags,
    /// Output format.
    pub format: LiveFormat,
    /// Text: list only problem closes.
    pub only_problems: bool,
    /// Text: times, width and colour of the rows.
    pub look: crate::report::Look,
    /// JSON Lines: no per-event lines, only verdicts, incidents and the summary.
    pub verdicts_only: bool,
    /// Save the packets here.
    pub write: Option<PathBuf>,
    /// Parquet: write the events here (None: standard output).
    pub output: Option<PathBuf>,
    /// Parquet: start a new file this often.
    pub output_rotate: Option<Duration>,
    /// Rotation of the saved files.
    pub rotation: Rotation,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Give up capabilities once the device (and the first file) is open.
    pub drop_privileges: bool,
    /// As root: the account to switch to once the device is open (None: stay uid 0, with no
    /// capabilities).
    pub user: Option<device::Account>,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    pub metrics: Option<std::net::SocketAddr>,
}

/// libpcap's counters at the end of the run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CaptureStats {
    /// Packets that passed the filter.
    pub received: u32,
    /// Packets dropped for lack of buffer space (the kernel's count).
    pub dropped: u32,
    /// Packets dropped by the interface or its driver.
    pub if_dropped: u32,
}

impl From<pcap::Stat> for CaptureStats {
    fn from(s: pcap::Stat) -> Self {
        CaptureStats {
            received: s.received,
            dropped: s.dropped,
            if_dropped: s.if_dropped,
        }
    }
}

/// What a live run did.
#[derive(Clone, Debug, Serialize)]
pub struct LiveSummary {
    /// Why it stopped: `interrupted`, `terminated`, `duration`, `count`, `end of capture`.
    pub stopped_by: &'static str,
    /// libpcap's counters (None if it could not give them).
    pub capture: Option<CaptureStats>,
    /// Packets handed to the pipeline.
    pub packets: u64,
    /// Files written (`--write`).
    pub files: Vec<PathBuf>,
    /// Packets written to them.
    pub packets_written: u64,
    /// Wall-clock seconds the capture ran.
    pub seconds: f64,
    /// The pipeline's summary.
    #[serde(skip)]
    pub run: RunSummary,
}

/// Lines waiting for standard output: the event hook and the report both append here, so that
/// a connection's events come out before its verdict.
struct Shared {
    buf: Vec<u8>,
    legs: Legs,
    origin: Option<Timestamp>,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(s: &SharedRef) -> std::sync::MutexGuard<'_, Shared> {
    // A panic elsewhere cannot leave the buffer half-written in a way that matters.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The report side of a live run: rows or verdict lines into the shared buffer.
struct LineReport {
    shared: SharedRef,
    format: LiveFormat,
    only_problems: bool,
    incidents: usize,
    look: crate::report::Look,
    /// The look's clock counts offsets from the first packet once it is known.
    look_has_origin: bool,
    /// Signatures whose cause, fix and workaround were written already.
    signatures_said: Vec<&'static str>,
    /// `--metrics`: counted from the same closes and incidents as the lines.
    metrics: Option<metrics::Metrics>,
}

impl Report for LineReport {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        if let Some(m) = &self.metrics {
            m.close(c);
        }
        let mut sh = lock(&self.shared);
        match self.format {
            LiveFormat::Jsonl | LiveFormat::Parquet => {
                serde_json::to_writer(&mut sh.buf, &crate::export::verdict_line(c))?;
                sh.buf.push(b'\n');
            }
            LiveFormat::Text => {
                let problem = c.verdict.as_ref().is_some_and(|v| v.label.is_problem());
                if problem || !self.only_problems {
                    if !self.look_has_origin {
                        if let Some(o) = sh.origin {
                            self.look = self.look.clone().with_span(Some(o), Some(o));
                            self.look_has_origin = true;
                        }
                    }
                    let cols = crate::report::text::Columns::fixed(&self.look);
                    crate::report::text::Row::of(c).write(&mut sh.buf, cols, &self.look)?;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, _: &RunSummary) -> io::Result<()> {
        Ok(())
    }
}

impl LineReport {
    fn incident(&mut self, inc: &Incident) -> io::Result<()> {
        self.incidents += 1;
        if let Some(m) = &self.metrics {
            m.incident(inc);
        }
        let mut sh = lock(&self.shared);
        match self.format {
            LiveFormat::Jsonl | LiveFormat::Parquet => {
                serde_json::to_writer(
                    &mut sh.buf,
                    &crate::export::incident_line(self.incidents, inc),
                )?;
                sh.buf.push(b'\n');
            }
            LiveFormat::Text => {
                use crate::report::text;
                writeln!(sh.buf)?;
                if let Some(sig) = &inc.signature {
                    if self.signatures_said.contains(&sig.id) {
                        writeln!(sh.buf, "{} (cause and fix above)", sig.id)?;
                    } else {
                        self.signatures_said.push(sig.id);
                        text::write_signature(&mut sh.buf, sig, None, &self.look)?;
                    }
                }
                text::write_incident(&mut sh.buf, self.incidents, inc, &self.look)?;
                writeln!(sh.buf)?;
            }
        }
        Ok(())
    }
}

/// Everything the packet callback touches.
struct Feed {
    engine: Option<Engine>,
    report: LineReport,
    writer: Option<writer::Writer>,
    linktype: Linktype,
    packets: u64,
    /// Captured bytes of those packets.
    bytes: u64,
    count: Option<u64>,
    error: Option<io::Error>,
    /// The last packet's capture time, and when it was handed to the pipeline.
    last: Option<(Timestamp, Instant)>,
}

/// Packets handed over within this long mean the pipeline may still be working through a
/// backlog (a loaded machine, libpcap's buffered blocks).
const CAUGHT_UP: Duration = Duration::from_secs(1);

impl Feed {
    /// The clock that expires lingering connections and settles incidents: the capture time
    /// of the last packet while packets keep coming (so that a backlog under load is judged as
    /// the file would be, never cut by the wall clock), the wall clock once the line is quiet.
    fn clock(&self) -> Timestamp {
        match self.last {
            Some((ts, at)) if at.elapsed() < CAUGHT_UP => ts,
            _ => now(),
        }
    }

    fn packet(&mut self, p: &Packet<'_>) {
        if let Some(w) = self.writer.as_mut() {
            w.write(p);
        }
        self.packets += 1;
        self.bytes += p.data.len() as u64;
        if let Some(m) = &self.report.metrics {
            m.packet();
        }
        let ts = writer::ts_of(p.header);
        self.last = Some((ts, Instant::now()));
        let frame = Frame {
            ts,
            frame_no: self.packets,
            file: 0,
            interface: 0,
            linktype: self.linktype,
            data: p.data,
            orig_len: p.header.len,
        };
        if self.packets == 1 {
            lock(&self.report.shared).origin = Some(ts);
        }
        if let Some(e) = self.engine.as_mut() {
            if let Err(err) = e.push(&frame, &mut self.report) {
                self.error.get_or_insert(err);
            }
        }
    }

    fn done(&self) -> bool {
        self.count.is_some_and(|c| self.packets >= c) || self.error.is_some()
    }
}

/// Hands every captured packet to the feed as it is read: no copy.
struct Codec(Rc<RefCell<Feed>>);

impl PacketCodec for Codec {
    type Item = ();

    fn decode(&mut self, packet: Packet<'_>) {
        self.0.borrow_mut().packet(&packet);
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_parts(d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

/// How often verdicts are flushed, connections expired and incidents looked for.
const TICK: Duration = Duration::from_millis(250);
/// At a stop, packets are still read until none has come for this long (longer than
/// libpcap's 100 ms read timeout, after which a partly filled block is handed over).
const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// Incidents are printed once their last close is this much older than the tracker's linger.
const SETTLE_MARGIN_NS: i64 = 1_000_000_000;

/// Runs a live capture until it is stopped, writing to `out`. Blocks; runs its own
/// single-threaded tokio runtime.
pub fn run_blocking(opts: &LiveOptions, out: &mut dyn Write) -> Result<LiveSummary, LiveError> {
    run_with_progress(opts, out, &mut |_| {})
}

/// Counts of a live capture so far, for a spinner on stderr.
#[derive(Clone, Copy, Debug)]
pub struct LiveProgress {
    /// Packets captured.
    pub packets: u64,
    /// Their captured bytes.
    pub bytes: u64,
}

/// [`run_blocking`], calling `progress` with the counts at every tick (4 times a second).
pub fn run_with_progress(
    opts: &LiveOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(LiveProgress),
) -> Result<LiveSummary, LiveError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(opts, out, progress))
}

/// Writes what is waiting, and flushes `out` even when nothing is: a Parquet output rotates its
/// file or writes a row group on time there, quiet line or not.
fn drain(shared: &SharedRef, out: &mut dyn Write) -> io::Result<()> {
    let buf = std::mem::take(&mut lock(shared).buf);
    out.write_all(&buf)?;
    out.flush()?;
    if !buf.is_empty() {
        // Keep the allocation for the next batch.
        let mut sh = lock(shared);
        if sh.buf.is_empty() {
            sh.buf = buf;
            sh.buf.clear();
        }
    }
    Ok(())
}

async fn run(
    opts: &LiveOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(LiveProgress),
) -> Result<LiveSummary, LiveError> {
    let cap = device::open(&opts.device)?;
    let linktype = Linktype(cap.get_datalink().0 as u32);
    let mut writer = opts
        .write
        .as_ref()
        .map(|p| writer::Writer::new(p.clone(), opts.rotation));
    if let Some(w) = writer.as_mut() {
        // Owned by the user `live` switches to, so that it can rotate back onto it.
        w.owner = opts.user.filter(|_| opts.drop_privileges);
        w.open_next(&cap)?;
    }
    // Bound as the device is opened, before the privileges go (a port below 1024 needs them).
    let metrics_listener = match opts.metrics {
        Some(addr) => {
            let l = metrics::bind(addr).map_err(|e| LiveError::Metrics {
                addr,
                detail: e.to_string(),
            })?;
            let bound = l.local_addr().unwrap_or(addr);
            // Before the "listening on" line: with port 0, scripts read the port from here.
            eprintln!("proxyscope live: metrics on http://{bound}/metrics");
            Some(l)
        }
        None => None,
    };
    if opts.drop_privileges {
        let done = device::drop_privileges(opts.user)?;
        // Not inside the macro: tracing skips its arguments when the level is off.
        tracing::info!("privileges: {done}");
        if let (Some(w), Some(_)) = (writer.as_ref(), opts.user) {
            w.check_rotation_dir()?;
        }
    }
    // As tcpdump does: scripts wait for this line before they start the traffic.
    eprintln!(
        "proxyscope live: listening on {}, link-type {}, snapshot length {} bytes, filter {:?}",
        opts.device.iface,
        linktype.name(),
        opts.device.snaplen,
        opts.device.bpf
    );
    let shared: SharedRef = Arc::new(Mutex::new(Shared {
        buf: Vec::with_capacity(1 << 16),
        legs: Legs::new(opts.leg_flags.clone(), Vec::new()),
        origin: None,
    }));
    let mut engine = Engine::new(&Options {
        legs: Legs::new(opts.leg_flags.clone(), Vec::new()),
        ..opts.analysis.clone()
    });
    engine.report_as_finished();
    if opts.format.lines() && !opts.verdicts_only {
        let hook_shared = shared.clone();
        engine.on_event(Box::new(move |conn, cx, ev| {
            let mut sh = lock(&hook_shared);
            let origin = sh.origin.unwrap_or(ev.at.ts);
            let leg = if cx.carries == Carries::Mysql {
                sh.legs
                    .leg_only(conn.client_ep(), conn.server_ep(), cx.relayed_others)
            } else {
                Leg::Unknown
            };
            // A backend's request names the frontend request it relays at once; a frontend's is
            // streamed before its relay exists (its connection's verdict.close lists them).
            let mut event = EventOut::of(conn, ev, origin);
            event.relayed_as = cx.relayed_as.to_vec();
            let line = EventLine {
                conn: conn.id,
                leg,
                event,
            };
            if serde_json::to_writer(&mut sh.buf, &line).is_ok() {
                sh.buf.push(b'\n');
            }
        }));
    }
    let report = LineReport {
        shared: shared.clone(),
        format: opts.format,
        only_problems: opts.only_problems,
        incidents: 0,
        look: opts.look.clone(),
        look_has_origin: false,
        signatures_said: Vec::new(),
        metrics: metrics_listener.as_ref().map(|_| metrics::Metrics::new()),
    };
    if let (Some(l), Some(m)) = (metrics_listener, report.metrics.as_ref()) {
        tokio::spawn(metrics::serve(l, m.registry()));
    }
    match opts.format {
        LiveFormat::Text => {
            use crate::report::text;
            let cols = text::Columns::fixed(&opts.look);
            text::write_heading(&mut lock(&shared).buf, cols, &opts.look)?;
        }
        LiveFormat::Jsonl | LiveFormat::Parquet => {
            // The same stream as `timeline --format jsonl`: the schema line first.
            let mut sh = lock(&shared);
            serde_json::to_writer(&mut sh.buf, &crate::export::schema_line())
                .map_err(io::Error::other)?;
            sh.buf.push(b'\n');
        }
    }
    let feed = Rc::new(RefCell::new(Feed {
        engine: Some(engine),
        report,
        writer,
        linktype,
        packets: 0,
        bytes: 0,
        count: opts.count,
        error: None,
        last: None,
    }));
    let mut stream = cap
        .stream(Codec(feed.clone()))
        .map_err(|e| LiveError::Pcap {
            what: "starting the capture stream".into(),
            detail: e.to_string(),
        })?;
    let settle = opts.analysis.tcp.linger + SETTLE_MARGIN_NS;
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ticks = 0u64;
    let stopped_by = loop {
        tokio::select! {
            item = stream.next() => {
                match item {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::warn!("capture stopped: {e}");
                        break "capture error";
                    }
                    None => break "end of capture",
                }
                let mut f = feed.borrow_mut();
                if let Some(w) = f.writer.as_mut().filter(|w| w.wants_next()) {
                    w.open_next(stream.capture_mut())?;
                }
                if f.done() {
                    break if f.error.is_some() { "output error" } else { "count" };
                }
                drop(f);
                if lock(&shared).buf.len() >= 1 << 16 {
                    drain(&shared, out)?;
                }
            }
            _ = ticker.tick() => {
                ticks += 1;
                let mut f = feed.borrow_mut();
                let f = &mut *f;
                progress(LiveProgress { packets: f.packets, bytes: f.bytes });
                let t = f.clock();
                if let Some(m) = f.report.metrics.as_mut() {
                    let pcap = stream.capture_mut().stats().ok().map(CaptureStats::from);
                    let (retries, open) = f
                        .engine
                        .as_ref()
                        .map_or((0, 0), |e| (e.relay_retries(), e.open_connections()));
                    m.sample(pcap, retries, open);
                }
                if let Some(e) = f.engine.as_mut() {
                    e.tick(t, &mut f.report)?;
                    if ticks % 4 == 0 {
                        let proxies = e.proxies();
                        lock(&shared).legs.set_pairs(proxies.clone());
                        e.set_proxies(proxies);
                    }
                    for inc in e.ready_incidents(t, settle) {
                        f.report.incident(&inc)?;
                    }
                }
                drain(&shared, out)?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break "duration";
                }
            }
            _ = &mut ctrl_c => break "interrupted",
            _ = term.recv() => break "terminated",
        }
    };
    if matches!(stopped_by, "interrupted" | "terminated" | "duration") {
        // Packets the kernel already holds (a block not yet handed over, in buffered mode) still
        // belong to the capture: read until none comes for longer than the read timeout.
        while let Ok(Some(Ok(()))) = tokio::time::timeout(DRAIN_QUIET, stream.next()).await {
            let mut f = feed.borrow_mut();
            if let Some(w) = f.writer.as_mut().filter(|w| w.wants_next()) {
                w.open_next(stream.capture_mut())?;
            }
            if f.done() {
                break;
            }
        }
    }
    let capture = stream.capture_mut().stats().ok().map(CaptureStats::from);
    drop(stream);
    let mut f = feed.borrow_mut();
    let f = &mut *f;
    if let Some(w) = f.writer.as_mut() {
        w.close()?;
    }
    if let Some(err) = f.error.take() {
        return Err(err.into());
    }
    let Some(mut engine) = f.engine.take() else {
        return Err(io::Error::other("the pipeline is gone").into());
    };
    engine.finish_open(&mut f.report)?;
    for inc in engine.ready_incidents(Timestamp(now().0.saturating_add(1_000_000_000)), 0) {
        f.report.incident(&inc)?;
    }
    let run = engine.finish(Vec::new(), &mut f.report)?;
    let summary = LiveSummary {
        stopped_by,
        capture,
        packets: f.packets,
        files: f
            .writer
            .as_ref()
            .map(|w| w.files.clone())
            .unwrap_or_default(),
        packets_written: f.writer.as_ref().map_or(0, |w| w.packets),
        seconds: started.elapsed().as_secs_f64(),
        run,
    };
    {
        let mut sh = lock(&shared);
        match opts.format {
            LiveFormat::Jsonl | LiveFormat::Parquet => {
                let line = json!({
                    "ts": now().rfc3339().to_string(),
                    "layer": "summary",
                    "kind": "live.summary",
                    "detail": {
                        "live": &summary,
                        "run": &summary.run,
                    },
                });
                serde_json::to_writer(&mut sh.buf, &line).map_err(io::Error::other)?;
                sh.buf.push(b'\n');
            }
            LiveFormat::Text => {
                use crate::report::text;
                let look = opts
                    .look
                    .clone()
                    .with_span(summary.run.capture_start, summary.run.capture_end);
                writeln!(sh.buf)?;
                text::write_header(&mut sh.buf, &summary.run, &look)?;
                text::write_totals(&mut sh.buf, &summary.run, &look)?;
                write_capture_line(&mut sh.buf, &summary)?;
            }
        }
    }
    drain(&shared, out)?;
    Ok(summary)
}

/// The last line of a live text report: why it stopped, libpcap's counters, files written.
pub fn write_capture_line(o: &mut dyn Write, s: &LiveSummary) -> io::Result<()> {
    write!(
        o,
        "live: stopped ({}) after {:.1} s; ",
        s.stopped_by, s.seconds
    )?;
    match s.capture {
        Some(c) => write!(
            o,
            "{} packets received by filter, {} dropped by kernel, {} dropped by interface",
            c.received, c.dropped, c.if_dropped
        )?,
        None => write!(o, "libpcap gave no counters")?,
    }
    if !s.files.is_empty() {
        let names: Vec<String> = s
            .files
            .iter()
            .map(|p| crate::report::term_safe(&p.display().to_string()))
            .collect();
        write!(
            o,
            "; {} packets written to {}",
            s.packets_written,
            names.join(", ")
        )?;
    }
    writeln!(o)
}
