//! Reports: where finished connections and the run summary go. Text and JSON are two sinks
//! behind one trait, so the pipeline does not care which the user asked for.
//!
//! Both stream: a connection is written when it is finished, so memory does not grow with the
//! number of connections in the capture.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::model::Summary;
use crate::source::FileInfo;
use crate::tcp::Stats;
use crate::time::Timestamp;

/// Everything about a run besides its connections.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// First frame's timestamp (the origin of every `t`).
    #[serde(serialize_with = "ser_opt_ts")]
    pub capture_start: Option<Timestamp>,
    /// Frames read, all files.
    pub frames: u64,
    /// Connections by close kind.
    pub closes: BTreeMap<&'static str, u64>,
    /// Frames that yielded no TCP segment, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// TCP counters.
    pub tcp: Stats,
    /// Retransmitted segments, all connections.
    pub retransmissions: u64,
    /// Gaps (bytes never captured), all connections.
    pub gaps: u64,
    /// Bytes in those gaps.
    pub gap_bytes: u64,
    /// Per-file facts, including where a file broke off.
    pub files: Vec<FileInfo>,
    /// Proxies found by pairing requests across connections (frontend endpoint → backend).
    pub proxies: Vec<crate::diagnose::legs::ProxyPair>,
    /// Proxy listeners known from a ProxySQL log (the servers of the clients it names).
    #[serde(skip)]
    pub listeners: Vec<crate::common::Endpoint>,
    /// Linked closes across the proxy, with matched signatures.
    pub incidents: Vec<crate::diagnose::incidents::Incident>,
    /// Connections by verdict label.
    pub verdicts: BTreeMap<&'static str, u64>,
    /// ProxySQL log lines set against the capture.
    pub proxysql_log: Vec<crate::diagnose::proxysql_log::LogMatch>,
    /// What the memory budget (or a per-item cap) turned away: counted, never silent.
    pub dropped: Dropped,
    /// The capture filter (`-f EXPR`) and the frames it kept and left out; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_filter: Option<CaptureFilterCount>,
}

/// What a capture filter did: `frames` counts only the frames it kept.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptureFilterCount {
    /// The expression (tcpdump's syntax).
    pub expression: String,
    /// Frames that passed.
    pub kept: u64,
    /// Frames left out.
    pub left_out: u64,
}

/// What was evicted, dropped or only counted because a share of the memory budget or a
/// per-item cap was full. All zero on ordinary captures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Dropped {
    /// Connections finished early because the flow table was full (reported, marked
    /// `evicted`; their later packets start a new connection).
    pub connections: u64,
    /// Unanswered SYN-only flows dropped from a full flow table (not reported one by one).
    pub half_open: u64,
    /// Those flows by destination (the first destinations seen; the rest in `half_open_other`).
    pub half_open_by_destination: Vec<(crate::common::Endpoint, u64)>,
    /// Half-open flows to destinations beyond that list.
    pub half_open_other: u64,
    /// Times the run-wide out-of-order share was full and a connection declared its missing
    /// bytes lost early.
    pub out_of_order_overflows: u64,
    /// TLS alerts counted but not kept (beyond the per-connection cap).
    pub alerts: u64,
    /// Times a connection's decoder buffers (a TLS handshake message, a compressed packet being
    /// collected) were given up because their share was full; that part went undecoded.
    pub decoder_buffers: u64,
    /// TLS secrets (key log lines) not kept: the secrets share was full.
    pub secrets: u64,
    /// Bytes of pcapng Decryption Secrets Blocks not read for keys (the per-file cap was full).
    pub secrets_bytes: u64,
    /// pcapng interfaces declared beyond the cap (their packets count as undeclared).
    pub interfaces: u64,
    /// Request-pairing entries forgotten (windows and score tables full).
    pub pairing: u64,
    /// Rows of the text report only counted (the JSON report lists every connection).
    pub report_rows: u64,
    /// IP fragment frames whose datagram was never reassembled (overlapping, timed out, cut
    /// by the snap length, or refused because the fragments' share was full). Absent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub ip_fragments: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Dropped {
    /// True when nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.connections == 0
            && self.half_open == 0
            && self.out_of_order_overflows == 0
            && self.alerts == 0
            && self.decoder_buffers == 0
            && self.secrets == 0
            && self.secrets_bytes == 0
            && self.interfaces == 0
            && self.pairing == 0
            && self.report_rows == 0
            && self.ip_fragments == 0
    }
}

fn ser_opt_ts<S: serde::Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(t) => s.collect_str(&t.rfc3339()),
        None => s.serialize_none(),
    }
}

/// A destination for the analysis.
pub trait Report {
    /// One finished connection.
    fn connection(&mut self, c: &Summary) -> io::Result<()>;
    /// The end of the run.
    fn finish(&mut self, run: &RunSummary) -> io::Result<()>;
}

impl<R: Report + ?Sized> Report for &mut R {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        (**self).connection(c)
    }

    fn finish(&mut self, run: &RunSummary) -> io::Result<()> {
        (**self).finish(run)
    }
}

/// A report that can say, in its summary, what a filter left out of its connection list.
pub trait NoteFiltered {
    /// `note` describes the filter and its counts; called once, before `finish`.
    fn note_filtered(&mut self, _note: serde_json::Value) {}
}

impl<W: Write> NoteFiltered for TextReport<W> {
    fn note_filtered(&mut self, note: serde_json::Value) {
        self.left_out = note.get("left_out").and_then(|n| n.as_u64());
    }
}

/// Rows kept for the text report by default (beyond: counted, and the JSON has them all).
const MAX_ROWS: usize = 200_000;

/// Human-readable report: incidents first, then the problem closes, then the clean ones (unless
/// `only_problems`), then the summary. Rows wait until the end so that incidents — which need
/// the whole capture — can lead; their number is capped.
pub struct TextReport<W: Write> {
    out: W,
    only_problems: bool,
    problems: Vec<String>,
    clean: Vec<String>,
    clean_count: u64,
    unlisted: u64,
    max_rows: usize,
    /// Connections a filter (`--conn`, `--leg`, `--since`, `--until`) kept from this report.
    left_out: Option<u64>,
}

impl<W: Write> TextReport<W> {
    /// Holds at most `n` rows until the end (the memory budget's share; the rest are counted).
    pub fn max_rows(mut self, n: usize) -> Self {
        self.max_rows = n;
        self
    }

    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        TextReport {
            out,
            only_problems: false,
            problems: Vec::new(),
            clean: Vec::new(),
            clean_count: 0,
            unlisted: 0,
            max_rows: MAX_ROWS,
            left_out: None,
        }
    }

    /// Lists only connections whose close is a problem (clean ones are counted).
    pub fn only_problems(mut self, yes: bool) -> Self {
        self.only_problems = yes;
        self
    }

    fn header(&mut self) -> io::Result<()> {
        write_header(&mut self.out)
    }
}

impl<W: Write> Report for TextReport<W> {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        let problem = c.verdict.as_ref().is_some_and(|v| v.label.is_problem());
        if !problem {
            self.clean_count += 1;
            if self.only_problems {
                return Ok(());
            }
        }
        if self.problems.len() + self.clean.len() >= self.max_rows {
            self.unlisted += 1;
            return Ok(());
        }
        let text = connection_row(c);
        if problem {
            self.problems.push(text);
        } else {
            self.clean.push(text);
        }
        Ok(())
    }

    fn finish(&mut self, run: &RunSummary) -> io::Result<()> {
        for (n, inc) in run.incidents.iter().enumerate() {
            write_incident(&mut self.out, n + 1, inc)?;
        }
        if !run.incidents.is_empty() {
            writeln!(self.out)?;
        }
        for m in &run.proxysql_log {
            writeln!(
                self.out,
                "proxysql log line {} (thread {}, {}:{}): {}",
                m.log.line, m.log.thread_id, m.log.host, m.log.port, m.capture_says
            )?;
        }
        if !run.proxysql_log.is_empty() {
            writeln!(self.out)?;
        }
        if self.problems.is_empty() && self.clean.is_empty() {
            writeln!(self.out, "no TCP connections listed")?;
        } else {
            self.header()?;
            let rows = std::mem::take(&mut self.problems);
            let clean = std::mem::take(&mut self.clean);
            for r in rows.iter().chain(clean.iter()) {
                writeln!(self.out, "{r}")?;
            }
        }
        let o = &mut self.out;
        writeln!(o)?;
        if self.only_problems && self.clean_count > 0 {
            writeln!(
                o,
                "{} clean closes not listed (--only-problems)",
                self.clean_count
            )?;
        }
        if let Some(n) = self.left_out {
            writeln!(
                o,
                "{n} connections left out by --conn/--leg/--since/--until (the counts below have \
                 them all)"
            )?;
        }
        if self.unlisted > 0 {
            writeln!(
                o,
                "{} more connections not listed (--format json has them all)",
                self.unlisted
            )?;
        }
        write_totals(o, run)?;
        o.flush()
    }
}

/// The closing lines of a text report: capture start, counts by close and verdict, TCP
/// trouble, skipped frames, proxies found, files read.
pub fn write_totals(o: &mut dyn Write, run: &RunSummary) -> io::Result<()> {
    let start = run
        .capture_start
        .map_or("-".to_string(), |t| t.rfc3339().to_string());
    writeln!(
        o,
        "capture start {start}; {} frames, {} TCP segments, {} connections",
        run.frames, run.tcp.segments, run.tcp.connections
    )?;
    if !run.closes.is_empty() {
        let parts: Vec<String> = run.closes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        writeln!(o, "closes: {}", parts.join(", "))?;
    }
    if !run.verdicts.is_empty() {
        let parts: Vec<String> = run
            .verdicts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(o, "verdicts: {}", parts.join(", "))?;
    }
    writeln!(
        o,
        "tcp: {} retransmissions, {} gaps ({} bytes never captured), {} reused 4-tuples, {} idle-expired",
        run.retransmissions, run.gaps, run.gap_bytes, run.tcp.reused_tuples, run.tcp.idle_expired
    )?;
    let d = &run.dropped;
    if !d.is_empty() {
        let mut parts = Vec::new();
        for (n, what) in [
            (d.connections, "connections evicted early (flow table full)"),
            (d.half_open, "unanswered SYN flows dropped"),
            (d.out_of_order_overflows, "out-of-order waits cut short"),
            (d.alerts, "TLS alerts only counted"),
            (d.decoder_buffers, "decoder buffers given up"),
            (d.secrets, "TLS secrets not kept"),
            (d.secrets_bytes, "bytes of secrets blocks not read"),
            (d.interfaces, "pcapng interfaces beyond the cap"),
            (d.pairing, "pairing entries forgotten"),
            (d.ip_fragments, "IP fragments never reassembled"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        writeln!(
            o,
            "memory budget (--memory): {}",
            if parts.is_empty() {
                "-".to_string()
            } else {
                parts.join(", ")
            }
        )?;
        if !d.half_open_by_destination.is_empty() {
            let mut by: Vec<&(crate::common::Endpoint, u64)> =
                d.half_open_by_destination.iter().collect();
            by.sort_by_key(|e| std::cmp::Reverse(e.1));
            let top: Vec<String> = by.iter().take(5).map(|(e, n)| format!("{e} {n}")).collect();
            writeln!(o, "unanswered SYN flows by destination: {}", top.join(", "))?;
        }
    }
    if let Some(c) = &run.capture_filter {
        writeln!(
            o,
            "capture filter {:?}: {} frames kept, {} left out",
            c.expression, c.kept, c.left_out
        )?;
    }
    if !run.skipped.is_empty() {
        let parts: Vec<String> = run
            .skipped
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(o, "frames without TCP: {}", parts.join(", "))?;
    }
    for p in &run.proxies {
        writeln!(
            o,
            "proxy: {} relays to {} ({} requests paired)",
            p.frontend, p.backend, p.paired_requests
        )?;
    }
    for f in &run.files {
        let lts: Vec<String> = f
            .linktypes
            .iter()
            .map(|l| crate::source::Linktype(*l).name())
            .collect();
        write!(
            o,
            "file {}: {}{}, link {}, {} frames",
            f.path,
            f.format,
            if f.gzip { " (gzip)" } else { "" },
            lts.join("/"),
            f.frames
        )?;
        if let Some(stop) = &f.stop {
            write!(o, ", {stop}")?;
        }
        writeln!(o)?;
    }
    Ok(())
}

/// One incident as the text report shows it, numbered `n`.
pub fn write_incident(
    o: &mut dyn Write,
    n: usize,
    inc: &crate::diagnose::incidents::Incident,
) -> io::Result<()> {
    match &inc.signature {
        Some(sig) => writeln!(
            o,
            "incident {n}: {}\n  cause: {}\n  see {}; fix: {}; workaround: {}",
            sig.id,
            sig.cause,
            sig.references.join(", "),
            sig.fix,
            sig.workaround
        )?,
        None => writeln!(o, "incident {n}:")?,
    }
    if let Some(c) = inc.confidence {
        writeln!(o, "  confidence: {}", c.as_str())?;
    }
    for e in &inc.evidence {
        writeln!(o, "  evidence: {e}")?;
    }
    for st in &inc.steps {
        writeln!(
            o,
            "  {:>+9.3} ms  t={:.6} frame {:>6}  {}",
            st.after_ms,
            st.at.t,
            frame_ref(st.at.file, st.at.frame),
            st.text
        )?;
    }
    Ok(())
}

/// The column header above [`connection_row`]s.
pub fn write_header(o: &mut dyn Write) -> io::Result<()> {
    writeln!(
        o,
        "{:>5}  {:<46}  {:>10}  {:>10}  {:>10}  {:>10}  {:<6}  {:<10}  {:>10}  {:>7}  then",
        "id",
        "client -> server",
        "start",
        "duration",
        "bytes c>s",
        "bytes s>c",
        "closer",
        "how",
        "at",
        "frame",
    )
}

/// One connection as the text report lists it: the row, then its protocol line.
pub fn connection_row(c: &Summary) -> String {
    let mut pair = format!("{} -> {}", c.client, c.server);
    if let Some(v) = &c.vlan {
        pair.push_str(&format!(" ({v})"));
    }
    let closer = c.close.closed_by.map_or("-", |r| r.as_str());
    let (at, frame) = match &c.close.at {
        Some(m) => (format!("{:.6}", m.at.t), frame_ref(m.at.file, m.at.frame)),
        None => ("-".into(), "-".into()),
    };
    let mut how = c.close.how.as_str().to_string();
    if c.close.idle_expired {
        how.push_str("(idle)");
    }
    if c.close.evicted {
        how.push_str("(evicted)");
    }
    let row = format!(
        "{:>5}  {:<46}  {:>10.6}  {:>10.6}  {:>10}  {:>10}  {:<6}  {:<10}  {:>10}  {:>7}  {}",
        c.id,
        pair,
        c.start.t,
        c.duration_s,
        c.bytes.c2s,
        c.bytes.s2c,
        closer,
        how,
        at,
        frame,
        detail(c)
    );
    let mut text = row.trim_end().to_string();
    if let Some(line) = protocol_line(c) {
        text.push_str("\n       ");
        text.push_str(&line);
    }
    text
}

/// What followed the first FIN/RST, in capture order, and anything else a reader should not
/// miss, in a few words.
fn detail(c: &Summary) -> String {
    use crate::model::{Mark, Role};
    let since = |m: &Mark| match &c.close.at {
        Some(first) => format!(
            "+{:.3}ms (frame {})",
            m.at.ts.nanos_since(first.at.ts) as f64 / 1e6,
            frame_ref(m.at.file, m.at.frame)
        ),
        None => String::new(),
    };
    let same = |a: &Mark, b: &Mark| a.at.frame == b.at.frame && a.at.file == b.at.file;
    let mut followed: Vec<(&Mark, String)> = Vec::new();
    if let Some(p) = &c.close.peer_fin {
        followed.push((p, format!("{} FIN {}", p.by.as_str(), since(p))));
    }
    if let (Some(r), Some(first)) = (&c.close.first_rst, &c.close.at) {
        if !same(r, first) {
            followed.push((r, format!("RST by {} {}", r.by.as_str(), since(r))));
        }
    }
    followed.sort_by_key(|(m, _)| (m.at.file, m.at.frame));
    let mut parts: Vec<String> = followed.into_iter().map(|(_, t)| t).collect();
    if c.close.first_fin.is_some() && c.close.peer_fin.is_none() && c.close.first_rst.is_none() {
        let other = match c.close.closed_by {
            Some(Role::Client) => "server",
            _ => "client",
        };
        parts.push(format!("no FIN from {other}"));
    }
    let n_rst = c.close.rsts.c2s + c.close.rsts.s2c;
    if n_rst > 1 {
        parts.push(format!("{n_rst} RSTs"));
    }
    let gaps = c.gaps.c2s.bytes + c.gaps.s2c.bytes;
    if gaps > 0 {
        parts.push(format!("{gaps} bytes not captured"));
    }
    if c.mid_stream {
        parts.push(format!("start not captured (roles by {:?})", c.role_basis).to_lowercase());
    }
    parts.join("; ")
}

/// `117`, or `2:117` for frame 117 of the second file named (files count from 1 here).
/// MySQL and TLS facts of a connection on one line, ending with its last protocol events.
fn protocol_line(c: &Summary) -> Option<String> {
    use crate::event::Layer;
    let mut parts: Vec<String> = Vec::new();
    if c.leg != crate::diagnose::legs::Leg::Unknown && c.leg != crate::diagnose::legs::Leg::Direct {
        let mut leg = format!("{:?} leg", c.leg).to_lowercase();
        if !c.relayed.is_empty() {
            let ids: Vec<String> = c.relayed.iter().map(|(id, _)| id.to_string()).collect();
            leg.push_str(&format!(" (requests paired with {})", ids.join(", ")));
        }
        parts.push(leg);
    }

    if let Some(v) = &c.verdict {
        let mut s = format!("verdict {}", v.label.as_str());
        if let Some(by) = v.closed_by {
            s.push_str(&format!(": {} {}", by.as_str(), v.how));
        }
        if v.closed_by.is_some() && v.confidence != crate::diagnose::Confidence::Certain {
            s.push_str(&format!(" [{}]", v.confidence.as_str()));
        }
        if !matches!(v.state, crate::diagnose::State::Unknown) {
            s.push_str(&format!(
                " ({})",
                serde_json::to_value(v.state)
                    .ok()
                    .and_then(|x| x.as_str().map(str::to_string))
                    .unwrap_or_default()
                    .replace('_', " ")
            ));
        }
        parts.push(s);
    }
    if let Some(seen) = c
        .verdict
        .as_ref()
        .filter(|v| v.label.is_problem() && c.leg != crate::diagnose::legs::Leg::Backend)
        .and_then(|v| v.client_sees)
    {
        parts.push(format!("the client likely saw {seen}"));
    }
    if let Some(m) = &c.mysql {
        let mut s = String::from("mysql");
        if let Some(v) = &m.server_version {
            s.push_str(&format!(" {v}"));
        }
        if let Some(t) = m.thread_id {
            s.push_str(&format!(" thread {t}"));
        }
        if let Some(u) = &m.user {
            s.push_str(&format!(" user {u}"));
            if let Some(was) = &m.previous_user {
                s.push_str(&format!(" (changed from {was})"));
            }
        }
        if m.login_ok == Some(false) {
            s.push_str(" login failed");
        }
        parts.push(s);
    }
    if let Some(t) = &c.tls {
        let mut s = t.version.clone().unwrap_or_else(|| "TLS".into());
        if let Some(n) = &t.cipher_name {
            s.push_str(&format!(" {n}"));
        }
        if !t.handshake_seen {
            // After an SSLRequest the ClientHello must follow: if none came, the client gave up.
            let upgraded = c.mysql.as_ref().is_some_and(|m| m.ssl_request);
            s.push_str(if upgraded {
                " (no complete ClientHello after the SSLRequest)"
            } else {
                " (handshake not captured)"
            });
        }
        parts.push(s);
    }
    if let Some(f) = c.verdict.as_ref().and_then(|v| v.in_flight.as_ref()) {
        let mut s = format!(
            "in flight: {}",
            f.command
                .as_deref()
                .map_or("a request".to_string(), str::to_uppercase)
        );
        if let Some(t) = &f.text {
            s.push_str(&format!(" {t:?}"));
        }
        s.push_str(&format!(
            " (frame {}{})",
            f.frame,
            if f.inferred {
                ", inferred from TLS record order"
            } else {
                ""
            }
        ));
        parts.push(s);
    }
    if parts.len() <= 1 && c.carries != crate::dissect::Carries::Mysql && c.tls.is_none() {
        // Not MySQL or TLS: the verdict alone, only when it says something.
        if !c.verdict.as_ref().is_some_and(|v| v.label.is_problem()) {
            return None;
        }
    }
    let last: Vec<String> = c
        .events
        .iter()
        .rev()
        .filter(|e| e.event.kind.layer() != Layer::Tcp)
        .take(3)
        .map(|e| {
            format!(
                "{} {} #{}",
                e.dir,
                e.event.kind.brief(),
                frame_ref(e.at.file, e.at.frame)
            )
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if !last.is_empty() {
        parts.push(format!("last: {}", last.join(", ")));
    }
    Some(parts.join(" · "))
}

fn frame_ref(file: usize, frame: u64) -> String {
    if file == 0 {
        frame.to_string()
    } else {
        format!("{}:{frame}", file + 1)
    }
}

/// One JSON document: `{"schema":…, "connections":[…], "summary":{…}}`, written as it goes.
pub struct JsonReport<W: Write> {
    out: W,
    started: bool,
    unreadable: Vec<(String, String)>,
    filtered: Option<serde_json::Value>,
}

impl<W: Write> NoteFiltered for JsonReport<W> {
    fn note_filtered(&mut self, note: serde_json::Value) {
        self.filtered = Some(note);
    }
}

/// Schema name and version of the `analyze --format json` document.
pub const JSON_SCHEMA: &str = "proxyscope.analyze/1";

impl<W: Write> JsonReport<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        JsonReport {
            out,
            started: false,
            unreadable: Vec::new(),
            filtered: None,
        }
    }

    /// Files that could not be opened (path, reason): listed in `summary.files` as
    /// `{"path", "error"}` after the files that were read.
    pub fn with_unreadable(mut self, unreadable: Vec<(String, String)>) -> Self {
        self.unreadable = unreadable;
        self
    }

    fn start(&mut self) -> io::Result<bool> {
        let first = !self.started;
        if first {
            self.started = true;
            write!(self.out, "{{\"schema\":\"{JSON_SCHEMA}\",\"connections\":[")?;
        }
        Ok(first)
    }
}

impl<W: Write> Report for JsonReport<W> {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        if !self.start()? {
            self.out.write_all(b",")?;
        }
        self.out.write_all(b"\n")?;
        serde_json::to_writer(&mut self.out, c)?;
        Ok(())
    }

    fn finish(&mut self, run: &RunSummary) -> io::Result<()> {
        self.start()?;
        self.out.write_all(b"\n],\"summary\":")?;
        let mut v = serde_json::to_value(run)?;
        // Each incident gets its number (1-based, as the text report and the timeline's
        // `verdict.incident` records count them), so that jq users can refer to one.
        if let Some(list) = v.get_mut("incidents").and_then(|i| i.as_array_mut()) {
            for (n, inc) in list.iter_mut().enumerate() {
                if let Some(o) = inc.as_object_mut() {
                    o.insert("id".into(), serde_json::json!(n + 1));
                }
            }
        }
        if let Some(files) = v.get_mut("files").and_then(|f| f.as_array_mut()) {
            for (path, error) in &self.unreadable {
                files.push(serde_json::json!({"path": path, "error": error}));
            }
        }
        if let (Some(note), Some(o)) = (self.filtered.take(), v.as_object_mut()) {
            o.insert("filtered".into(), note);
        }
        serde_json::to_writer(&mut self.out, &v)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()
    }
}

/// A writer for terminal-bound text: every control character but the newline (C0, DEL, C1:
/// ESC sequences, OSC 52 clipboard writes, carriage-return overwrites, BEL) and every bidi or
/// invisible direction mark (U+202E and its kin, which reorder what the operator reads) is
/// written escaped, as `\x1b` or `\u{202e}`, so that strings from a capture (user names,
/// server versions, error messages, queries) cannot drive the terminal. Bytes that are not
/// UTF-8 are written as `\xNN`. JSON outputs do not go through this: they stay exact.
pub struct TermSafe<W: Write> {
    inner: W,
    /// The start of a UTF-8 sequence cut by a write boundary.
    pending: Vec<u8>,
}

impl<W: Write> TermSafe<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        TermSafe {
            inner,
            pending: Vec::new(),
        }
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        for c in s.chars() {
            match c {
                '\n' => out.push(b'\n'),
                c if (c as u32) < 0x80 && c.is_control() => {
                    out.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes())
                }
                c if c.is_control() || is_direction_mark(c) => {
                    out.extend_from_slice(format!("\\u{{{:x}}}", c as u32).as_bytes())
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }
}

/// Bidi embeddings, overrides and isolates, and the invisible direction marks.
fn is_direction_mark(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control characters and direction marks escaped, as [`TermSafe`] writes it.
pub fn term_safe(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    TermSafe::<io::Sink>::put_str(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

impl<W: Write> Write for TermSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(buf);
        let mut out = Vec::with_capacity(bytes.len() + 16);
        let mut rest: &[u8] = &bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    Self::put_str(&mut out, s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    Self::put_str(&mut out, std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        // Cut by the write boundary: wait for the rest of the character.
                        None => {
                            self.pending = bad.to_vec();
                            break;
                        }
                        Some(n) => {
                            for b in bad.iter().take(n) {
                                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                            }
                            rest = bad.get(n..).unwrap_or_default();
                        }
                    }
                }
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            let mut out = Vec::new();
            for b in p {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
            self.inner.write_all(&out)?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod term_tests {
    use super::*;

    fn through(chunks: &[&[u8]]) -> String {
        let mut t = TermSafe::new(Vec::new());
        for c in chunks {
            t.write_all(c).unwrap();
        }
        t.flush().unwrap();
        String::from_utf8(t.inner).unwrap()
    }

    #[test]
    fn escapes_terminal_controls_and_keeps_text() {
        let evil = "8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07 root\rfake \u{202e}gnp.exe\t\u{85}é\n";
        assert_eq!(
            through(&[evil.as_bytes()]),
            "8.0\\x1b[2J\\x1b]52;c;SGVsbG8=\\x07 root\\x0dfake \\u{202e}gnp.exe\\x09\\u{85}é\n"
        );
        assert_eq!(term_safe("a\u{2066}b\u{7f}"), "a\\u{2066}b\\x7f");
    }

    #[test]
    fn a_character_cut_by_a_write_boundary_is_whole_and_bad_bytes_are_escaped() {
        let s = "\u{202e}é".as_bytes();
        assert_eq!(through(&[&s[..2], &s[2..4], &s[4..]]), "\\u{202e}é");
        assert_eq!(through(&[b"a\xffb", b"\xe2\x80"]), "a\\xffb\\xe2\\x80");
    }
}
