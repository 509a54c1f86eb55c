//! The offline pipeline: sources → decode → tcp → model → report, driven frame by frame.

use std::collections::BTreeMap;
use std::io;

use std::hash::{Hash, Hasher};

use crate::common::At;
use crate::decode::{self, Skip};
use crate::diagnose::legs::{ConnFacts, LegFlags, Legs, Pairing, Request};
use crate::dissect::{Carries, Dissector};
use crate::event::{Com, Event, Kind};
use crate::model::Summary;
use crate::report::{CaptureFilterCount, Report, RunSummary};
use crate::source::bpf::Bpf;
use crate::source::{CaptureFile, Frame, Input, Sources};
use crate::tcp::{self, Connection, StreamEvent, StreamSink, Tracker};
use crate::time::Timestamp;

/// Settings of an analysis run.
#[derive(Clone, Debug)]
pub struct Options {
    /// TCP tracker settings (its `server_greeting` is the engine's: MySQL's greeting test).
    pub tcp: tcp::Config,
    /// Events kept per connection from its start, and as many from its end.
    pub keep_events: usize,
    /// TLS secrets (key log files); pcapng Decryption Secrets Blocks are added as they are read.
    pub keylog: Option<crate::tls::decrypt::KeyLog>,
    /// Legs around a proxy (flags and pairs found by an earlier pass).
    pub legs: crate::diagnose::legs::Legs,
    /// A ProxySQL log: its "Detected a broken connection" lines are matched to backends, and
    /// the connections it names decide legs.
    pub proxysql_log: crate::diagnose::proxysql_log::ProxysqlLog,
    /// Closes on the two legs of a proxy this close in time are linked into one incident (ns).
    pub link_window_ns: i64,
    /// Stop after this many frames (a quick first pass that only looks for proxies).
    pub max_frames: Option<u64>,
    /// The memory the run's state may take, split among the stages that hold it.
    pub budget: Budget,
    /// A capture filter (BPF, tcpdump's syntax) applied to every frame before decoding;
    /// the first pass sees the same frames.
    pub capture_filter: Option<String>,
    /// Clock offsets given on the command line: (file as named, or its file name; seconds
    /// its clock is ahead).
    pub clock_offsets: Vec<(String, f64)>,
    /// The files' clocks by run index (from [`clocks`]); with several, a segment seen again
    /// from another file is counted as a duplicate observation and not tracked.
    pub clocks: Vec<crate::source::Clock>,
}

/// The default memory budget of `analyze` and `live`, in MB.
pub const DEFAULT_MEMORY_MB: usize = 512;

/// A memory budget and its split among the stages that hold state. Every share is a cap on a
/// count (connections, bytes, entries) derived from measured costs; what a full share turns
/// away is counted in the run summary's `dropped`, never silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Total bytes.
    pub bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::mb(DEFAULT_MEMORY_MB)
    }
}

/// Measured heap per tracked MySQL connection without kept events (flow table entry, decoder
/// and teardown state, pairing and fingerprint entries), and per kept event.
const CONN_BASE_COST: usize = 3 * 1024;
const EVENT_COST: usize = 192;

impl Budget {
    /// A budget of `mb` MB (at least 16 MB).
    pub fn mb(mb: usize) -> Budget {
        Budget {
            bytes: mb.max(16).saturating_mul(1 << 20),
        }
    }
    /// Estimated bytes per tracked connection that keeps `keep_events` events each way.
    pub fn per_connection(keep_events: usize) -> usize {
        CONN_BASE_COST + 2 * keep_events.min(1 << 16) * EVENT_COST
    }
    /// Connections tracked at once: 40% of the budget.
    pub fn connections(&self, keep_events: usize) -> usize {
        (self.bytes / 5 * 2 / Self::per_connection(keep_events)).max(64)
    }
    /// Out-of-order bytes buffered across all connections: 20%.
    pub fn out_of_order(&self) -> usize {
        self.bytes / 5
    }
    /// Decoder buffers across connections (TLS handshake messages, compressed packets being
    /// collected): 10%.
    pub fn decoder_buffers(&self) -> usize {
        self.bytes / 10
    }
    /// IP fragments held for reassembly across datagrams: 2%.
    pub fn ip_fragments(&self) -> usize {
        self.bytes / 50
    }
    /// TLS secrets (the shared key table): 5%.
    pub fn secrets(&self) -> usize {
        self.bytes / 20
    }
    /// Rows a text report holds until the end: 5%, at about 256 bytes a row.
    pub fn report_rows(&self) -> usize {
        (self.bytes / 20 / 256).max(1000)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tcp: tcp::Config::default(),
            keep_events: crate::dissect::KEEP_EVENTS,
            keylog: None,
            legs: Default::default(),
            proxysql_log: Default::default(),
            link_window_ns: crate::diagnose::incidents::LINK_WINDOW_NS,
            max_frames: None,
            capture_filter: None,
            budget: Budget::default(),
            clock_offsets: Vec::new(),
            clocks: Vec::new(),
        }
    }
}

/// Progress of a run, for a progress line on stderr.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Frames read so far.
    pub frames: u64,
    /// Input bytes consumed so far, as stored: compressed bytes for a gzip input, so that it
    /// compares with the files' sizes.
    pub bytes: u64,
    /// Connections in the flow table.
    pub open: usize,
    /// The input is read; the summary is about to be written.
    pub done: bool,
}

/// Finished connections wait here so that reports come out in id order when they can; the
/// wait is bounded, so a connection open for the whole capture cannot hold up memory.
const REORDER_LIMIT: usize = 1024;
// Often enough for a 100 ms update with large (loopback) frames; the callback checks a clock.
const PROGRESS_EVERY: u64 = 1 << 12;

/// What the driver knows of an event's connection when the event is decoded.
#[derive(Clone, Copy, Debug)]
pub struct EventContext<'a> {
    /// What the connection carries so far.
    pub carries: Carries,
    /// Requests of the connection that relayed another connection's so far (a proxy's backend).
    pub relayed_others: u32,
    /// For a request that relays another connection's: that request, `(connection, frame)`.
    pub relayed_as: &'a [(u64, u64)],
}

/// A consumer of every event as it is decoded, with its connection and context.
pub type EventHook = Box<dyn FnMut(&Connection, EventContext<'_>, &Event) + Send>;

/// Per-connection facts the driver gathers from the event stream for pairing and legs.
#[derive(Default)]
struct Aux {
    /// Client fingerprint: capabilities and the TLS ClientHello.
    fp: Option<std::collections::hash_map::DefaultHasher>,
    /// Capabilities are in the fingerprint (only the first set: a TLS connection's handshake
    /// response repeats them, readable only where its keys are known).
    caps_mixed: bool,
    /// TLS 1.3 was negotiated (its client Finished is an application-data record).
    tls13: bool,
    /// Client application records so far, and whether the last record came from the client.
    client_records: u32,
    client_last: bool,
}

impl Aux {
    /// Mixes `v` into the fingerprint and gives the fingerprint so far.
    fn mix(&mut self, v: impl Hash) -> u64 {
        let h = self.fp.get_or_insert_with(Default::default);
        v.hash(h);
        h.finish()
    }
}

/// A stable hash (SipHash with fixed keys: the same in both passes).
fn stable_hash(v: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Feeds request pairing from one decoded event of a MySQL connection; a request that relays
/// another connection's gives that one's `(connection, frame)`.
fn pair_event(
    pairing: &mut Pairing,
    aux: &mut Aux,
    conn: &Connection,
    e: &Event,
) -> Option<(u64, u64)> {
    let from_client = conn.is_client(e.side);
    let request = |size: Option<(u32, u32)>, text: Option<u64>| Request {
        conn: conn.id,
        client: conn.client_ep(),
        server: conn.server_ep(),
        at: e.at,
        size,
        text,
    };
    match &e.kind {
        Kind::SslRequest { capabilities } | Kind::HandshakeResponse { capabilities, .. }
            if from_client && !aux.caps_mixed =>
        {
            aux.caps_mixed = true;
            // Pairing keeps the fingerprints of the backends that relay requests, so that a
            // pooled backend of the same proxy that never relayed one is still known as one.
            pairing.fingerprint(conn.id, aux.mix(capabilities.bits()));
        }
        Kind::ClientHello {
            versions,
            ciphers,
            alpn,
            groups,
            sni,
            ..
        } if from_client => {
            // Hashed as the wire values (once per ClientHello).
            let versions: Vec<u16> = versions.iter().map(|v| v.0).collect();
            let ciphers: Vec<u16> = ciphers.iter().map(|c| c.0).collect();
            let fp = aux.mix((versions, ciphers, alpn, groups, sni.is_some()));
            pairing.fingerprint(conn.id, fp)
        }
        Kind::ServerHello { version, .. } => aux.tls13 = *version == tls_parser::TlsVersion::Tls13,
        Kind::Greeting { version, .. } if !from_client => {
            pairing.greeting(conn.server_ep(), version)
        }
        // A COM_QUIT is never relayed.
        Kind::Command { cmd, text, len, .. } if from_client && *cmd != Com::QUIT => {
            return pairing.request(request(Some((*len, *len)), text.as_ref().map(stable_hash)));
        }
        Kind::AppData {
            plain,
            decrypted: false,
            ..
        } if from_client => {
            aux.client_records += 1;
            // A new request starts the client's turn; the handshake's own records (the TLS 1.3
            // client Finished, the MySQL login inside TLS) are not requests.
            let skip = if aux.tls13 { 2 } else { 1 };
            let first_of_turn = !aux.client_last;
            aux.client_last = true;
            if first_of_turn && aux.client_records > skip {
                let size = plain.map(|p| {
                    (
                        u32::from(p.lo.saturating_sub(4)),
                        u32::from(p.hi.saturating_sub(4)),
                    )
                });
                return pairing.request(request(size, None));
            }
        }
        Kind::Fin | Kind::Rst => {
            if from_client {
                pairing.client_closed(conn.id, e.at);
            }
            pairing.closed(conn.id);
        }
        k if !from_client && k.layer() != crate::event::Layer::Tcp => {
            aux.client_last = false;
            pairing.response(conn.id, e.at);
        }
        _ => {}
    }
    None
}

struct Collector {
    dissector: Dissector,
    pairing: Pairing,
    aux: std::collections::HashMap<u64, Aux, ahash::RandomState>,
    hook: Option<EventHook>,
    incidents: crate::diagnose::incidents::Incidents,
    verdicts: BTreeMap<&'static str, u64>,
    tls: crate::report::TlsCount,
    log: Vec<crate::diagnose::proxysql_log::LogMatch>,
    legs: crate::diagnose::legs::Legs,
    origin: Timestamp,
    pending: BTreeMap<u64, Summary>,
    closes: BTreeMap<&'static str, u64>,
    retransmissions: u64,
    gaps: u64,
    gap_bytes: u64,
    alerts_dropped: u64,
}

impl StreamSink for Collector {
    fn event(&mut self, conn: &Connection, side: crate::common::Side, at: At, ev: StreamEvent<'_>) {
        let Collector {
            dissector,
            pairing,
            aux,
            hook,
            ..
        } = self;
        dissector.stream(conn, side, at, ev, &mut |conn, carries, e| {
            let relayed = if carries == Carries::Mysql {
                pair_event(pairing, aux.entry(conn.id).or_default(), conn, e)
            } else {
                None
            };
            if let Some(h) = hook.as_mut() {
                let relayed_as: &[(u64, u64)] = match &relayed {
                    Some(r) => std::slice::from_ref(r),
                    None => &[],
                };
                let cx = EventContext {
                    carries,
                    relayed_others: pairing.relayed_others(conn.id),
                    relayed_as,
                };
                h(conn, cx, e);
            }
        });
    }

    fn close(&mut self, conn: Connection) {
        let app = self.dissector.finish(&conn);
        let aux = self.aux.remove(&conn.id);
        let rel = self.pairing.take(conn.id);
        if conn.evicted && conn.unanswered() {
            // A SYN flood's flow, dropped from a full table: counted by destination instead.
            return;
        }
        self.alerts_dropped += app.tls.as_ref().map_or(0, |t| t.alerts_dropped);
        let mut s = Summary::of(&conn, self.origin, app);
        s.relayed = rel.peers;
        s.cut = rel.cut;
        if s.carries == Carries::Mysql {
            let d = self.legs.decide(&ConnFacts {
                client: Some(s.client),
                server: Some(s.server),
                relayed_others: rel.as_backend,
                relayed_by_others: rel.as_frontend,
                fingerprint: aux.and_then(|a| a.fp).map(|h| h.finish()),
                thread_id: s.mysql.as_ref().and_then(|m| m.thread_id),
            });
            if self.legs.named_frontend(s.client) {
                self.legs.add_listener(s.server);
            }
            s.leg = d.leg;
            s.leg_basis = d.basis;
            s.leg_confidence = d.confidence;
        }
        s.set_relays(rel.relays);
        let v = crate::diagnose::verdict(
            &s,
            s.leg,
            s.leg_confidence
                .unwrap_or(crate::diagnose::Confidence::Certain),
        );
        s.verdict = Some(v);
        self.incidents.add(&s);
        self.tls.add(&s);
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

/// The pipeline fed one frame at a time: the offline run and the live capture both drive it.
pub struct Engine {
    decoder: decode::Decoder,
    tracker: Tracker,
    col: Collector,
    keylog: Option<crate::tls::decrypt::SharedKeyLog>,
    secrets_limit: usize,
    skipped: BTreeMap<Skip, u64>,
    frames: u64,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    in_order: bool,
    /// What the driver's capture filter did, for the summary.
    capture_filter: Option<CaptureFilterCount>,
    /// With several files: the test for segments seen again from another file.
    duplicates: Option<crate::clock::Duplicates>,
}

impl Engine {
    /// A new engine with `opts` (`max_frames` is the driver's business).
    pub fn new(opts: &Options) -> Engine {
        let mut col = Collector {
            dissector: Dissector::new(opts.keep_events),
            pairing: Pairing::new(opts.keep_events.max(1)),
            aux: Default::default(),
            hook: None,
            incidents: crate::diagnose::incidents::Incidents::new(opts.link_window_ns),
            verdicts: BTreeMap::new(),
            tls: crate::report::TlsCount {
                keylog: opts.keylog.is_some(),
                ..Default::default()
            },
            log: opts
                .proxysql_log
                .broken
                .iter()
                .map(|l| crate::diagnose::proxysql_log::LogMatch {
                    log: l.clone(),
                    conn: None,
                    capture_says:
                        "no backend connection with this thread id and port in the capture".into(),
                })
                .collect(),
            legs: opts.legs.clone().with_log(opts.proxysql_log.names()),
            origin: Timestamp::default(),
            pending: BTreeMap::new(),
            closes: BTreeMap::new(),
            retransmissions: 0,
            gaps: 0,
            gap_bytes: 0,
            alerts_dropped: 0,
        };
        let keys = opts.keylog.clone().map(|mut k| {
            k.set_limit(opts.budget.secrets());
            std::sync::Arc::new(std::sync::RwLock::new(k))
        });
        col.dissector.set_keylog(keys.clone());
        col.dissector
            .set_buffer_limit(opts.budget.decoder_buffers());
        let mut tcp = opts.tcp;
        tcp.max_connections = tcp
            .max_connections
            .min(opts.budget.connections(opts.keep_events));
        tcp.max_buffer_total = tcp.max_buffer_total.min(opts.budget.out_of_order());
        // The dissectors speak MySQL, so a MySQL greeting names the server when no SYN did.
        tcp.server_greeting = crate::mysql::looks_like_greeting;
        tcp.vantage_points = opts.clocks.len() > 1;
        Engine {
            decoder: decode::Decoder::new(decode::frag::Config {
                max_bytes: opts.budget.ip_fragments(),
                ..Default::default()
            }),
            tracker: Tracker::new(tcp),
            col,
            keylog: keys,
            secrets_limit: opts.budget.secrets(),
            skipped: BTreeMap::new(),
            frames: 0,
            start: None,
            end: None,
            in_order: true,
            capture_filter: None,
            duplicates: (opts.clocks.len() > 1).then(|| {
                let spreads: Vec<i64> = opts
                    .clocks
                    .iter()
                    .map(|c| c.spread_ns.unwrap_or(0))
                    .collect();
                crate::clock::Duplicates::new(&spreads)
            }),
        }
    }

    /// Report connections as soon as they finish, not in id order (live: nothing waits).
    pub fn report_as_finished(&mut self) {
        self.in_order = false;
    }

    /// Adds TLS secrets (key log text) from now on; keys are needed from the ServerHello on.
    pub fn add_secrets<'a>(&mut self, texts: impl Iterator<Item = &'a [u8]>) {
        let limit = self.secrets_limit;
        let shared = self.keylog.get_or_insert_with(|| {
            let mut k = crate::tls::decrypt::KeyLog::default();
            k.set_limit(limit);
            std::sync::Arc::new(std::sync::RwLock::new(k))
        });
        if let Ok(mut log) = shared.write() {
            for text in texts {
                log.add_text(&String::from_utf8_lossy(text));
            }
        }
        self.col.dissector.set_keylog(Some(shared.clone()));
        self.col.tls.keylog = true;
    }

    /// Sets a consumer of every decoded event, in stream order.
    pub fn on_event(&mut self, hook: EventHook) {
        self.col.hook = Some(hook);
    }

    /// Frames fed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Connections in the flow table.
    pub fn open_connections(&self) -> usize {
        self.tracker.open_connections()
    }

    /// The legs connections are given when they finish.
    pub fn legs(&self) -> &crate::diagnose::legs::Legs {
        &self.col.legs
    }

    /// Sets the proxies request pairing found (live: as it finds them), keeping the flags,
    /// the log and the listeners.
    pub fn set_proxies(&mut self, pairs: Vec<crate::diagnose::legs::ProxyPair>) {
        self.col.legs.set_pairs(pairs);
    }

    /// Pairing's table sizes (requests, waiting, scores, relay lists, relays), for memory tests.
    pub fn pairing_footprint(&self) -> (usize, usize, usize, usize, usize) {
        self.col.pairing.footprint()
    }

    /// Frontend requests relayed again after their backend broke, so far (hidden retries).
    pub fn relay_retries(&self) -> u64 {
        self.col.pairing.retries()
    }

    /// The proxies request pairing supports so far.
    pub fn proxies(&self) -> Vec<crate::diagnose::legs::ProxyPair> {
        self.col.pairing.pairs()
    }

    /// Feeds one frame; finished connections go to `report`.
    pub fn push(&mut self, frame: &Frame<'_>, report: &mut dyn Report) -> io::Result<()> {
        self.frames += 1;
        if self.start.is_none() {
            self.start = Some(frame.ts);
            self.col.origin = frame.ts;
        }
        self.end = self.end.max(Some(frame.ts));
        match self.decoder.decode(frame) {
            Ok(seg) => {
                // A second vantage point's copy of a segment is not a retransmission.
                if self.duplicates.as_mut().is_some_and(|d| d.observe(&seg)) {
                    self.tracker.stats.duplicate_observations += 1;
                    self.tracker.seen_again(&seg);
                    return Ok(());
                }
                let before = self.tracker.stats.connections;
                self.tracker.process(&seg, &mut self.col);
                if !self.col.pending.is_empty() || self.tracker.stats.connections != before {
                    self.release(report)?;
                }
            }
            Err(reason) => *self.skipped.entry(reason).or_default() += 1,
        }
        Ok(())
    }

    /// Expires lingering and idle connections as of `now` (live: on a timer).
    pub fn tick(&mut self, now: Timestamp, report: &mut dyn Report) -> io::Result<()> {
        if self.start.is_some() {
            self.tracker.expire(now, &mut self.col);
            self.release(report)?;
        }
        Ok(())
    }

    /// Incidents settled by `now` and not handed out yet (see [`Incidents::ready`]).
    ///
    /// [`Incidents::ready`]: crate::diagnose::incidents::Incidents::ready
    pub fn ready_incidents(
        &mut self,
        now: Timestamp,
        settle_ns: i64,
    ) -> Vec<crate::diagnose::incidents::Incident> {
        const HORIZON_NS: i64 = 600_000_000_000;
        // A close already seen on a connection that is not finished yet (a client slow to close
        // its half, a connection lingering) may still join an incident: such incidents wait, so
        // that live hands out what the file's analysis would — for at most PENDING_WAIT_NS, so
        // that a half-closed connection left open for minutes holds nothing back for long.
        const PENDING_WAIT_NS: i64 = 10_000_000_000;
        let mut pending = self.tracker.pending_closes();
        pending.retain(|p| now.nanos_since(*p) < PENDING_WAIT_NS);
        self.col
            .incidents
            .ready(now, settle_ns, HORIZON_NS, &pending)
    }

    fn release(&mut self, report: &mut dyn Report) -> io::Result<()> {
        let oldest = if self.in_order {
            self.tracker.oldest_open()
        } else {
            None
        };
        self.col.release(oldest, report)
    }

    /// Finishes every connection still open (the end of a live capture: before the last
    /// incidents are taken).
    pub fn finish_open(&mut self, report: &mut dyn Report) -> io::Result<()> {
        // One at a time, each report out before the next: the table's connections never all
        // wait as summaries at once.
        while self.tracker.finish_first(&mut self.col) {
            let oldest = if self.in_order {
                self.tracker.oldest_open()
            } else {
                None
            };
            self.col.release(oldest, report)?;
        }
        self.col.release(None, report)
    }

    /// Finishes every connection still open and writes the run summary; `files` describes
    /// the inputs (none for a live capture).
    pub fn finish(
        mut self,
        files: Vec<crate::source::FileInfo>,
        report: &mut dyn Report,
    ) -> io::Result<RunSummary> {
        self.finish_open(report)?;
        let col = self.col;
        let t = &self.tracker;
        let dropped = crate::report::Dropped {
            connections: t.stats.evicted,
            half_open: t.stats.half_open_dropped,
            half_open_by_destination: t.flood.by_destination.clone(),
            half_open_other: t.flood.other,
            out_of_order_overflows: t.stats.buffer_budget_overflows,
            alerts: col.alerts_dropped,
            decoder_buffers: col.dissector.shed,
            secrets: self
                .keylog
                .as_ref()
                .and_then(|k| k.read().ok().map(|k| k.dropped()))
                .unwrap_or(0),
            interfaces: files.iter().map(|f| f.interfaces_dropped).sum(),
            secrets_bytes: files.iter().map(|f| f.secrets_dropped).sum(),
            pairing: col.pairing.dropped(),
            report_rows: 0,
            ip_fragments: self.decoder.fragments_dropped(),
        };
        let run = RunSummary {
            dropped,
            capture_start: self.start,
            capture_end: self.end,
            frames: self.frames,
            tls: col.tls,
            closes: col.closes,
            skipped: self
                .skipped
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            tcp: self.tracker.stats.clone(),
            retransmissions: col.retransmissions,
            gaps: col.gaps,
            gap_bytes: col.gap_bytes,
            files,
            proxies: col.pairing.pairs(),
            listeners: col.legs.listeners().to_vec(),
            incidents: col.incidents.build(),
            verdicts: col.verdicts,
            proxysql_log: col.log,
            capture_filter: self.capture_filter,
        };
        report.finish(&run)?;
        Ok(run)
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
    run_with_hook(sources, opts, report, progress, None)
}

/// [`run`], with `hook` seeing every decoded event as it comes (`compare` times requests).
pub fn run_with_hook(
    sources: &mut Sources,
    opts: &Options,
    report: &mut dyn Report,
    progress: &mut dyn FnMut(Progress),
    hook: Option<EventHook>,
) -> io::Result<RunSummary> {
    sources.set_clocks(&opts.clocks);
    let mut engine = Engine::new(opts);
    if let Some(h) = hook {
        engine.on_event(h);
    }
    let mut bpf = match &opts.capture_filter {
        Some(e) => Some(Bpf::new(e).map_err(io::Error::other)?),
        None => None,
    };
    loop {
        if sources.has_secrets() {
            // A pcapng Decryption Secrets Block (TLS key log) was read with the last frame;
            // keys are needed from the ServerHello on, never for the packet that brought them.
            let texts = sources.take_secrets();
            engine.add_secrets(texts.iter().map(|t| t.as_slice()));
        }
        if opts.max_frames.is_some_and(|m| engine.frames >= m) {
            break;
        }
        let Some(frame) = sources.next_frame() else {
            break;
        };
        if let Some(b) = bpf.as_mut() {
            if !b.pass(&frame).map_err(io::Error::other)? {
                continue;
            }
        }
        engine.push(&frame, report)?;
        if engine.frames % PROGRESS_EVERY == 0 {
            progress(Progress {
                frames: engine.frames,
                bytes: sources.consumed(),
                open: engine.open_connections(),
                done: false,
            });
        }
    }
    progress(Progress {
        frames: engine.frames,
        bytes: sources.consumed(),
        open: engine.open_connections(),
        done: true,
    });
    let files = sources.files().iter().map(|f| f.info.clone()).collect();
    engine.capture_filter = bpf.map(|b| CaptureFilterCount {
        expression: b.expr().to_string(),
        kept: b.passed,
        left_out: b.left_out,
    });
    engine.finish(files, report)
}

/// Frames the first pass reads to find proxies (a few seconds of a busy proxy).
pub const FIRST_PASS_FRAMES: u64 = 100_000;

/// A report that writes nothing (the first pass).
struct NullReport;

impl Report for NullReport {
    fn connection(&mut self, _: &Summary) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self, _: &RunSummary) -> io::Result<()> {
        Ok(())
    }
}

/// The legs: from the flags when given; otherwise a light first pass finds proxies by pairing
/// requests across connections, so that every verdict of the real pass already knows its leg.
/// A stream (pipe, FIFO, standard input) is read once: the first pass's bytes are spooled and
/// replayed to the second, so it gets the same answers as a file. Inputs that cannot be opened
/// are left out (the second pass says why).
pub fn find_legs(inputs: &[Input], flags: LegFlags, opts: &Options) -> io::Result<Legs> {
    let given = !flags.frontend_ports.is_empty()
        || !flags.backend_ports.is_empty()
        || flags.proxy.is_some();
    if given {
        return Ok(Legs::new(flags, Vec::new()));
    }
    let again: Vec<CaptureFile> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.open_first(i).ok())
        .collect();
    let mut first = Sources::new(again);
    // Pairing needs no kept events, and a proxy shows within the first requests: the first
    // pass is light and reads at most FIRST_PASS_FRAMES frames.
    let light = Options {
        keep_events: 0,
        max_frames: Some(FIRST_PASS_FRAMES),
        ..opts.clone()
    };
    let found = run(&mut first, &light, &mut NullReport, &mut |_| {})?;
    Ok(Legs::new(flags, found.proxies).with_listeners(found.listeners))
}

/// Sets the clocks of the `unknown` inputs by matching each against the inputs whose clock is
/// known, one anchor at a time (`known` first, then each file set on the way), with `estimate`;
/// returns every anchor used or found, in order, and leaves in `unknown` what no anchor matched.
fn anchor_clocks(
    inputs: &[Input],
    out: &mut [crate::source::Clock],
    known: Vec<usize>,
    unknown: &mut Vec<usize>,
    estimate: fn(CaptureFile, Vec<CaptureFile>, u64) -> Vec<Option<crate::clock::Estimate>>,
    basis: crate::source::ClockBasis,
) -> Vec<usize> {
    let mut anchors: std::collections::VecDeque<usize> = known.into();
    let mut done = Vec::new();
    while let Some(a) = anchors.pop_front() {
        done.push(a);
        if unknown.is_empty() {
            continue;
        }
        let Some(Ok(af)) = inputs.get(a).filter(|x| x.rereadable()).map(|x| x.open(a)) else {
            continue;
        };
        let mut files = Vec::new();
        let mut opened = Vec::new();
        for &i in unknown.iter() {
            if let Some(Ok(f)) = inputs.get(i).map(|x| x.open(i)) {
                files.push(f);
                opened.push(i);
            }
        }
        let Some(base) = out.get(a).copied() else {
            continue;
        };
        let found = estimate(af, files, crate::clock::SAMPLE_FRAMES);
        for (i, e) in opened.into_iter().zip(found) {
            if let (Some(c), Some(e)) = (out.get_mut(i), e) {
                *c = chain(&base, a, &e);
                c.basis = basis;
                unknown.retain(|&u| u != i);
                anchors.push_back(i);
            }
        }
    }
    done
}

/// The clock of a file matched with the file `a` whose clock is `base`: the estimate `e`
/// (this file against `a`, in `a`'s own clock) added to `a`'s offset and drift.
fn chain(
    base: &crate::source::Clock,
    a: usize,
    e: &crate::clock::Estimate,
) -> crate::source::Clock {
    use crate::source::{Clock, ClockBasis};
    // `e` is timed in `a`'s clock; the first file's clock is `base` behind it.
    let at = e.at_ns.saturating_sub(base.shift_at(e.at_ns));
    let drift = match (e.drift_ppm, base.drift_ppm) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
    };
    Clock {
        offset_ns: e.offset_ns.saturating_add(base.shift_at(e.at_ns)),
        spread_ns: Some(e.spread_ns.saturating_add(base.spread_ns.unwrap_or(0))),
        matches: e.matches,
        drift_ppm: drift,
        at_ns: drift.map(|_| at),
        via: (a != 0).then_some(a),
        basis: ClockBasis::MatchedSegments,
    }
}

/// The clock of each input by run index (none for a single input without a given offset):
/// given with `--clock-offset` (matched against the name as given or its file name), else
/// estimated against the first input from the segments both saw in their first
/// [`clock::SAMPLE_FRAMES`](crate::clock::SAMPLE_FRAMES) frames, or through another input
/// whose clock is known and which shares segments with it. A stream (read once) is not
/// sampled: its clock is unknown unless given. An offset given for a name that is not among
/// the inputs is an error.
pub fn clocks(inputs: &[Input], given: &[(String, f64)]) -> io::Result<Vec<crate::source::Clock>> {
    use crate::source::{Clock, ClockBasis};
    let name_of = |p: &str| {
        std::path::Path::new(p)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    for (name, _) in given {
        if !inputs
            .iter()
            .any(|i| i.path() == name || name_of(i.path()).as_deref() == Some(name.as_str()))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--clock-offset {name}=...: no capture file of that name was given"),
            ));
        }
    }
    if inputs.len() < 2 && given.is_empty() {
        return Ok(Vec::new());
    }
    let given_ns: Vec<Option<i64>> = inputs
        .iter()
        .map(|i| {
            given
                .iter()
                .rev()
                .find(|(n, _)| i.path() == n || name_of(i.path()).as_deref() == Some(n.as_str()))
                .map(|(_, s)| (s * 1e9).clamp(i64::MIN as f64, i64::MAX as f64) as i64)
        })
        .collect();
    let mut out: Vec<Clock> = given_ns
        .iter()
        .map(|g| Clock {
            offset_ns: g.unwrap_or(0),
            spread_ns: None,
            matches: 0,
            drift_ppm: None,
            at_ns: None,
            via: None,
            basis: if g.is_some() {
                ClockBasis::Given
            } else {
                ClockBasis::None
            },
        })
        .collect();
    if let (Some(first), Some(g)) = (out.first_mut(), given_ns.first()) {
        *first = Clock::reference(*g);
    }
    // Files whose clock is known are anchors: the first, and those given. Each anchor in turn
    // is matched against the files still unknown, so that a file sharing no segment with the
    // first (the database host's capture of the backend leg, when the first file is the
    // application host's) is still set through one that shares segments with both (the proxy
    // host's).
    let mut unknown: Vec<usize> = (1..inputs.len())
        .filter(|&i| given_ns.get(i).is_some_and(|g| g.is_none()))
        .filter(|&i| inputs.get(i).is_some_and(|x| x.rereadable()))
        .collect();
    let known: Vec<usize> = (0..inputs.len())
        .filter(|&i| i == 0 || given_ns.get(i).is_some_and(|g| g.is_some()))
        .collect();
    // Shared segments first; payloads a proxy relayed between two legs for what is left.
    let set = anchor_clocks(
        inputs,
        &mut out,
        known,
        &mut unknown,
        crate::clock::estimate_against,
        ClockBasis::MatchedSegments,
    );
    if !unknown.is_empty() {
        anchor_clocks(
            inputs,
            &mut out,
            set,
            &mut unknown,
            crate::clock::estimate_relayed,
            ClockBasis::RelayedPayloads,
        );
    }
    let first = inputs.first().map_or("", |i| i.path());
    for (i, c) in inputs.iter().zip(&out) {
        let via = c.via.and_then(|v| inputs.get(v)).map(|v| v.path());
        tracing::info!("{}: {}", i.path(), c.describe(first, via));
    }
    Ok(out)
}
