//! The text report, for a person at a terminal of 100–120 columns: a few header lines (the
//! capture, the proxy, TLS decryption, the verdicts), the incidents grouped by signature (its
//! cause, fix and workaround once, then each incident's steps), the problem closes one row
//! each with their details, a count of the clean closes (listed with `--all`), and the totals.
//!
//! Display only: the times' style and zone, the width and colour change no answer. Every
//! string from a capture is escaped by [`super::term_safe`] before it is laid out, and colour
//! is added after, so the escapes of the layout are ours alone.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::diagnose::incidents::{Incident, Signature};
use crate::diagnose::legs::Leg;
use crate::diagnose::{Confidence, State};
use crate::model::{Mark, Role, Summary};
use crate::time::{Clock, Timestamp};

use super::{term_safe, NoteFiltered, Report, RunSummary};

/// Rows kept for the text report by default (beyond: counted, and the JSON has them all).
const MAX_ROWS: usize = 200_000;

/// The width used when none is given and standard output is not a terminal.
pub const DEFAULT_WIDTH: usize = 100;

/// How the text report looks: times, width, colour, and whether clean closes are listed.
#[derive(Clone, Debug)]
pub struct Look {
    /// How times are written.
    pub clock: Clock,
    /// Long lines are wrapped to this many columns (0: never).
    pub width: usize,
    /// ANSI colour (on a terminal that wants it).
    pub color: bool,
    /// List the clean closes too, with their details.
    pub all: bool,
}

impl Default for Look {
    fn default() -> Self {
        Look {
            clock: Clock::default(),
            width: DEFAULT_WIDTH,
            color: false,
            all: false,
        }
    }
}

/// What a piece of text is, for its colour.
#[derive(Clone, Copy)]
enum Paint {
    Heading,
    Problem,
    Clean,
    Signature,
    Time,
}

impl Look {
    /// `s` (already escaped) in the colour of `p`, when colour is on.
    fn paint(&self, p: Paint, s: &str) -> String {
        if !self.color || s.is_empty() {
            return s.to_string();
        }
        use anstyle::{AnsiColor, Style};
        let style = match p {
            Paint::Heading => Style::new().bold(),
            Paint::Problem => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            Paint::Clean => Style::new().fg_color(Some(AnsiColor::Green.into())),
            Paint::Signature => Style::new()
                .bold()
                .fg_color(Some(AnsiColor::Magenta.into())),
            Paint::Time => Style::new().fg_color(Some(AnsiColor::Cyan.into())),
        };
        format!("{}{s}{}", style.render(), style.render_reset())
    }

    /// `text` (already escaped) wrapped to the width: the first line after `first`, the
    /// others after `rest` (spaces of the same width, as a rule).
    fn wrap(&self, text: &str, first: &str, rest: &str) -> Vec<String> {
        if self.width == 0 {
            return vec![format!("{first}{text}")];
        }
        let opts = textwrap::Options::new(self.width)
            .initial_indent(first)
            .subsequent_indent(rest);
        textwrap::wrap(text, opts)
            .into_iter()
            .map(|l| l.into_owned())
            .collect()
    }

    fn write_wrapped(
        &self,
        o: &mut dyn Write,
        text: &str,
        first: &str,
        rest: &str,
    ) -> io::Result<()> {
        for l in self.wrap(text, first, rest) {
            writeln!(o, "{l}")?;
        }
        Ok(())
    }
}

/// A string from a capture (or built around one), safe for a terminal and on one line.
fn safe(s: &str) -> String {
    term_safe(&s.replace('\n', "\\n"))
}

/// One connection of the text report: its row and the lines below it (escaped, uncoloured).
#[derive(Clone, Debug)]
pub struct Row {
    id: u64,
    /// When the teardown started (None: still open), written at the end by the clock that
    /// knows the capture's span.
    closed: Option<Timestamp>,
    opened: Timestamp,
    pair: String,
    by: String,
    label: &'static str,
    problem: bool,
    /// Why, what the client saw, leg and protocols.
    details: Vec<String>,
    /// The TCP line after its opening time.
    tcp: String,
    /// The last protocol events.
    last: Option<String>,
}

/// Column widths of the rows of one listing.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    id: usize,
    closed: usize,
    pair: usize,
    by: usize,
}

impl Columns {
    /// Widths for rows not known in advance (a live capture).
    pub fn fixed(look: &Look) -> Columns {
        Columns {
            id: 4,
            closed: look.clock.at(Timestamp::default()).len().max(6),
            pair: 33,
            by: 14,
        }
    }

    fn fit(rows: &[Row], look: &Look) -> Columns {
        let w =
            |f: &dyn Fn(&Row) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
        Columns {
            id: w(&|r| r.id.to_string().len(), 2),
            closed: w(&|r| r.closed.map_or(4, |t| look.clock.at(t).len()), 6),
            pair: w(&|r| r.pair.chars().count(), 16),
            // A long `how` (a fatal alert's name) does not widen every row.
            by: w(&|r| r.by.chars().count().min(20), 9),
        }
    }
}

impl Row {
    /// The row of `c`, its times written by `look`'s clock.
    pub fn of(c: &Summary) -> Row {
        let v = c.verdict.as_ref();
        let mut pair = format!("{} -> {}", c.client, c.server);
        if let Some(vl) = &c.vlan {
            pair.push_str(&format!(" ({vl})"));
        }
        let closed = v
            .and_then(|v| v.at.as_ref())
            .or(c.close.at.as_ref())
            .map(|m| m.at.ts);
        // A `how` with a qualifier (`COM_QUIT (possibly: the record size fits it)`) keeps its
        // first words in the row; the qualifier goes to the details.
        let how = v.map(|v| match v.how.split_once(" (") {
            Some((short, rest)) => (short, Some(rest.trim_end_matches(')'))),
            None => (v.how.as_str(), None),
        });
        let by = match v {
            Some(v) => match (v.closed_by, how) {
                (Some(r), Some((short, _))) => format!("{} {short}", r.as_str()),
                _ => "-".into(),
            },
            None => c.close.closed_by.map_or("-".into(), |r| {
                format!("{} {}", r.as_str(), c.close.how.as_str())
            }),
        };
        Row {
            id: c.id,
            closed,
            opened: c.start.ts,
            pair: safe(&pair),
            by: safe(&by),
            label: v.map_or("-", |v| v.label.as_str()),
            problem: v.is_some_and(|v| v.label.is_problem()),
            details: how
                .and_then(|(_, q)| q)
                .map(str::to_string)
                .into_iter()
                .chain(details(c))
                .map(|d| safe(&d))
                .collect(),
            tcp: safe(&tcp_line(c)),
            last: last_events(c).map(|l| safe(&l)),
        }
    }

    /// Writes the row and its details.
    pub fn write(&self, o: &mut dyn Write, cols: Columns, look: &Look) -> io::Result<()> {
        let label = look.paint(
            if self.problem {
                Paint::Problem
            } else {
                Paint::Clean
            },
            self.label,
        );
        let closed = self.closed.map_or("open".into(), |t| look.clock.at(t));
        writeln!(
            o,
            "{:>iw$}  {:<cw$}  {:<pw$}  {:<bw$}  {label}",
            self.id,
            closed,
            self.pair,
            self.by,
            iw = cols.id,
            cw = cols.closed,
            pw = cols.pair,
            bw = cols.by,
        )?;
        let indent = " ".repeat(cols.id + 2);
        let rest = format!("{indent}  ");
        for d in &self.details {
            look.write_wrapped(o, d, &indent, &rest)?;
        }
        let tcp = format!("tcp: opened {}, {}", look.clock.at(self.opened), self.tcp);
        look.write_wrapped(o, &tcp, &indent, &rest)?;
        if let Some(l) = &self.last {
            look.write_wrapped(o, l, &indent, &rest)?;
        }
        Ok(())
    }
}

/// The column headings above [`Row`]s.
pub fn write_heading(o: &mut dyn Write, cols: Columns, look: &Look) -> io::Result<()> {
    let h = format!(
        "{:>iw$}  {:<cw$}  {:<pw$}  {:<bw$}  verdict",
        "id",
        "closed",
        "client -> server",
        "closed by",
        iw = cols.id,
        cw = cols.closed,
        pw = cols.pair,
        bw = cols.by,
    );
    writeln!(o, "{}", look.paint(Paint::Heading, &h))
}

/// The first lines under a connection's row: why (state, request in flight, confidence), what
/// the client saw, the leg and the protocols.
fn details(c: &Summary) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(v) = &c.verdict {
        let mut parts = Vec::new();
        let state = match v.state {
            State::Handshake => Some("during the MySQL handshake"),
            State::TlsHandshake => Some("during the TLS handshake"),
            State::Idle => Some("while idle"),
            State::RequestInFlight => Some("with a request in flight"),
            State::Streaming => Some("while a response was being sent"),
            State::Unknown => None,
        };
        let mut s = state.unwrap_or_default().to_string();
        if let Some(f) = &v.in_flight {
            match f.command.as_deref() {
                Some(cmd) => {
                    s.push_str(if s.is_empty() { "in flight: " } else { ": " });
                    s.push_str(&cmd.to_uppercase());
                    if let Some(t) = &f.text {
                        s.push_str(&format!(" {t:?}"));
                    }
                }
                None if s.is_empty() => s.push_str("a request in flight"),
                None => {}
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
        }
        if !s.is_empty() {
            parts.push(s);
        }
        if v.closed_by.is_some() && v.confidence != Confidence::Certain {
            parts.push(format!("{} verdict", v.confidence.as_str()));
        }
        if !parts.is_empty() {
            lines.push(parts.join("; "));
        }
        if v.label.is_problem() && c.leg != Leg::Backend {
            if let Some(seen) = v.client_sees {
                lines.push(format!("the client likely saw {seen}"));
            }
        }
    }
    let mut about = Vec::new();
    if c.leg != Leg::Unknown && c.leg != Leg::Direct {
        let mut leg = format!("{:?} leg", c.leg).to_lowercase();
        if !c.relayed.is_empty() {
            let ids: Vec<String> = c.relayed.iter().map(|(id, _)| id.to_string()).collect();
            leg.push_str(&format!(", requests paired with {}", ids.join(", ")));
        }
        about.push(leg);
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
        about.push(s);
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
        match t.decryption {
            Some("keys") if t.decrypted.c2s + t.decrypted.s2c > 0 => s.push_str(", decrypted"),
            Some("keys") => s.push_str(", keys found but nothing decrypted"),
            Some("no keys") => s.push_str(", not in the key log"),
            Some(other) => s.push_str(&format!(", not decrypted ({other})")),
            None => {}
        }
        about.push(s);
    }
    if !about.is_empty() {
        lines.push(about.join(" · "));
    }
    lines
}

/// The last three protocol events, `last: s2c result 1 rows #1346, c2s app data 22 B #1348`.
fn last_events(c: &Summary) -> Option<String> {
    let last: Vec<String> = c
        .events
        .iter()
        .rev()
        .filter(|e| e.event.kind.layer() != crate::event::Layer::Tcp)
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
    (!last.is_empty()).then(|| format!("last: {}", last.join(", ")))
}

/// The TCP side: when it started, how long, bytes each way, the first FIN/RST and its sender
/// (a detail: the verdict's closer is who started the teardown), what followed, and gaps.
fn tcp_line(c: &Summary) -> String {
    let mut s = format!(
        "{:.3} s, {} B up, {} B down",
        c.duration_s, c.bytes.c2s, c.bytes.s2c
    );
    let since = |m: &Mark| match &c.close.at {
        Some(first) => format!(
            "+{:.3} ms (frame {})",
            m.at.ts.nanos_since(first.at.ts) as f64 / 1e6,
            frame_ref(m.at.file, m.at.frame)
        ),
        None => String::new(),
    };
    let same = |a: &Mark, b: &Mark| a.at.frame == b.at.frame && a.at.file == b.at.file;
    if let Some(first) = &c.close.at {
        let what = match c.close.how.as_str() {
            "rst" => "RST",
            _ if c.close.first_fin.is_some() => "FIN",
            _ => "close",
        };
        s.push_str(&format!(
            "; first {what} by {} (frame {})",
            first.by.as_str(),
            frame_ref(first.at.file, first.at.frame)
        ));
    } else {
        s.push_str("; not closed in the capture");
    }
    let mut followed: Vec<(&Mark, String)> = Vec::new();
    if let Some(p) = &c.close.peer_fin {
        followed.push((p, format!("FIN by {} {}", p.by.as_str(), since(p))));
    }
    if let (Some(r), Some(first)) = (&c.close.first_rst, &c.close.at) {
        if !same(r, first) {
            followed.push((r, format!("RST by {} {}", r.by.as_str(), since(r))));
        }
    }
    followed.sort_by(|(a, _), (b, _)| a.at.capture_order(&b.at));
    let mut parts: Vec<String> = followed.into_iter().map(|(_, t)| t).collect();
    if c.close.first_fin.is_some() && c.close.peer_fin.is_none() && c.close.first_rst.is_none() {
        let other = match c.close.closed_by {
            Some(Role::Client) => "server",
            _ => "client",
        };
        parts.push(format!("no FIN from the {other}"));
    }
    let n_rst = c.close.rsts.c2s + c.close.rsts.s2c;
    if n_rst > 1 {
        parts.push(format!("{n_rst} RSTs"));
    }
    if c.close.idle_expired {
        parts.push("expired idle".into());
    }
    if c.close.evicted {
        parts.push("evicted (flow table full)".into());
    }
    let gaps = c.gaps.c2s.bytes + c.gaps.s2c.bytes;
    if gaps > 0 {
        parts.push(format!("{gaps} bytes not captured"));
    }
    if c.mid_stream {
        parts.push(format!("start not captured (roles by {:?})", c.role_basis).to_lowercase());
    }
    if !parts.is_empty() {
        s.push_str(", then ");
        s.push_str(&parts.join(", "));
    }
    if c.seen_in.len() > 1 {
        s.push_str(&format!("; {}", seen_in(&c.seen_in)));
    }
    s
}

/// Where each capture file saw a connection seen from several: `seen in 2 files: file 1
/// frames 12-380 (FIN 377), file 3 frames 3-95 (FIN 52)`; a file's frames are its own.
fn seen_in(seen: &[crate::model::Sighting]) -> String {
    let each: Vec<String> = seen
        .iter()
        .map(|v| {
            let mut t = format!(
                "file {} frames {}-{}",
                v.file + 1,
                v.first.frame,
                v.last.frame
            );
            let close: Vec<String> = [("FIN", &v.fin), ("RST", &v.rst)]
                .into_iter()
                .filter_map(|(what, m)| m.as_ref().map(|m| format!("{what} {}", m.at.frame)))
                .collect();
            if !close.is_empty() {
                t.push_str(&format!(" ({})", close.join(", ")));
            }
            t
        })
        .collect();
    format!("seen in {} files: {}", seen.len(), each.join(", "))
}

/// `117`, or `2:117` for frame 117 of the second file named (files count from 1 here).
pub fn frame_ref(file: usize, frame: u64) -> String {
    if file == 0 {
        frame.to_string()
    } else {
        format!("{}:{frame}", file + 1)
    }
}

/// A signature's heading: its id (and how many incidents match it, when known), then cause,
/// fix, workaround and references.
pub fn write_signature(
    o: &mut dyn Write,
    sig: &Signature,
    count: Option<usize>,
    look: &Look,
) -> io::Result<()> {
    let id = look.paint(Paint::Signature, sig.id);
    match count {
        Some(n) => writeln!(o, "{id}  {n} incident{}", if n == 1 { "" } else { "s" })?,
        None => writeln!(o, "{id}")?,
    }
    let pad = " ".repeat(14);
    for (name, text) in [
        ("cause", sig.cause.to_string()),
        ("fix", sig.fix.to_string()),
        ("workaround", sig.workaround.to_string()),
        ("see", sig.references.join(", ")),
    ] {
        look.write_wrapped(o, &text, &format!("  {name:<10}  "), &pad)?;
    }
    Ok(())
}

/// One incident, numbered `n`: its time and confidence, its evidence, then its steps with
/// their times, milliseconds after the first step and frames.
pub fn write_incident(o: &mut dyn Write, n: usize, inc: &Incident, look: &Look) -> io::Result<()> {
    let when = inc
        .steps
        .first()
        .map(|s| look.paint(Paint::Time, &look.clock.at(s.at.ts)))
        .unwrap_or_default();
    let mut head = format!("  incident {n}  {when}");
    if let Some(c) = inc.confidence {
        head.push_str(&format!("  {}", c.as_str()));
    }
    writeln!(o, "{}", head.trim_end())?;
    for e in &inc.evidence {
        look.write_wrapped(o, &safe(e), "    evidence: ", &" ".repeat(14))?;
    }
    let fw = inc
        .steps
        .iter()
        .map(|s| frame_ref(s.at.file, s.at.frame).len())
        .max()
        .unwrap_or(0);
    let after = |ms: f64| format!("{ms:+.3}");
    let mw = inc
        .steps
        .iter()
        .map(|s| after(s.after_ms).len())
        .max()
        .unwrap_or(0);
    for st in &inc.steps {
        let time = look.clock.at(st.at.ts);
        let prefix = format!(
            "    {time}  {:>mw$} ms  #{:<fw$}  ",
            after(st.after_ms),
            frame_ref(st.at.file, st.at.frame)
        );
        let rest = " ".repeat(prefix.chars().count());
        let lines = look.wrap(&safe(&st.text), &prefix, &rest);
        for (i, l) in lines.iter().enumerate() {
            if i == 0 && look.color {
                // The time in colour: it is the first thing after the indent.
                let painted = look.paint(Paint::Time, &time);
                writeln!(o, "{}", l.replacen(&time, &painted, 1))?;
            } else {
                writeln!(o, "{l}")?;
            }
        }
    }
    Ok(())
}

/// The header lines: the capture's span and zone, the proxies, TLS decryption, the verdicts.
pub fn write_header(o: &mut dyn Write, run: &RunSummary, look: &Look) -> io::Result<()> {
    let span = match (run.capture_start, run.capture_end) {
        (Some(a), Some(b)) => format!(
            "{} to {} ({:.3} s), ",
            look.clock.full(a),
            look.clock.at(b),
            b.secs_since(a)
        ),
        _ => String::new(),
    };
    let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut lines = vec![(
        "capture",
        format!(
            "{span}{}, {}",
            plural(run.frames, "frame"),
            plural(run.tcp.connections, "connection")
        ),
    )];
    for p in &run.proxies {
        lines.push((
            "proxy",
            format!(
                "{} relays to {} ({} requests paired)",
                p.frontend, p.backend, p.paired_requests
            ),
        ));
    }
    if run.tls.sessions > 0 {
        lines.push(("TLS", run.tls.describe()));
    }
    if !run.verdicts.is_empty() {
        lines.push(("verdicts", verdict_counts(&run.verdicts)));
    }
    for (name, text) in lines {
        look.write_wrapped(o, &safe(&text), &format!("{name:<10}"), &" ".repeat(10))?;
    }
    Ok(())
}

/// Verdict counts, problems first, each group by count.
fn verdict_counts(v: &BTreeMap<&'static str, u64>) -> String {
    use crate::diagnose::Label;
    let clean = [Label::CleanQuit, Label::CleanClose, Label::StillOpen];
    let problem = |k: &str| !clean.iter().any(|l| l.as_str() == k);
    let mut all: Vec<(&&str, &u64)> = v.iter().collect();
    all.sort_by_key(|(k, n)| (!problem(k), std::cmp::Reverse(**n)));
    all.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closing lines: closes by kind, TCP trouble, what the memory budget dropped, the capture
/// filter, frames without TCP, the files read.
pub fn write_totals(o: &mut dyn Write, run: &RunSummary, look: &Look) -> io::Result<()> {
    let mut lines: Vec<String> = Vec::new();
    if !run.closes.is_empty() {
        let parts: Vec<String> = run.closes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        lines.push(format!("closes: {}", parts.join(", ")));
    }
    lines.push(format!(
        "tcp: {} retransmissions, {} gaps ({} bytes never captured), {} reused 4-tuples, {} \
         idle-expired{}",
        run.retransmissions,
        run.gaps,
        run.gap_bytes,
        run.tcp.reused_tuples,
        run.tcp.idle_expired,
        match run.tcp.duplicate_observations {
            0 => String::new(),
            n => format!(", {n} segments seen again from another file (not retransmissions)"),
        }
    ));
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
            (d.report_rows, "report rows only counted"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        lines.push(format!(
            "memory budget (--memory): {}",
            if parts.is_empty() {
                "-".to_string()
            } else {
                parts.join(", ")
            }
        ));
        if !d.half_open_by_destination.is_empty() {
            let mut by: Vec<&(crate::common::Endpoint, u64)> =
                d.half_open_by_destination.iter().collect();
            by.sort_by_key(|e| std::cmp::Reverse(e.1));
            let top: Vec<String> = by.iter().take(5).map(|(e, n)| format!("{e} {n}")).collect();
            lines.push(format!(
                "unanswered SYN flows by destination: {}",
                top.join(", ")
            ));
        }
    }
    if let Some(c) = &run.capture_filter {
        lines.push(format!(
            "capture filter {:?}: {} frames kept, {} left out",
            c.expression, c.kept, c.left_out
        ));
    }
    if !run.skipped.is_empty() {
        let parts: Vec<String> = run
            .skipped
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        lines.push(format!("frames without TCP: {}", parts.join(", ")));
    }
    for f in &run.files {
        let lts: Vec<String> = f
            .linktypes
            .iter()
            .map(|l| crate::source::Linktype(*l).name())
            .collect();
        let mut s = format!(
            "file {}: {}{}, link {}, {} frames",
            f.path,
            f.format,
            if f.gzip { " (gzip)" } else { "" },
            lts.join("/"),
            f.frames
        );
        if let Some(stop) = &f.stop {
            s.push_str(&format!(", {stop}"));
        }
        if let Some(c) = f.clock.filter(|_| run.files.len() > 1) {
            let first = run.files.first().map_or("", |f| f.path.as_str());
            let via = c
                .via
                .and_then(|v| run.files.get(v))
                .map(|v| v.path.as_str());
            s.push_str(&format!(", {}", c.describe(first, via)));
        }
        lines.push(s);
    }
    for l in lines {
        look.write_wrapped(o, &safe(&l), "", "  ")?;
    }
    Ok(())
}

/// The incidents of a run, grouped by signature (in the order each first appears), numbered
/// as in the JSON summary.
pub fn write_incidents(o: &mut dyn Write, incidents: &[Incident], look: &Look) -> io::Result<()> {
    let mut groups: Vec<(Option<&'static str>, Vec<usize>)> = Vec::new();
    for (i, inc) in incidents.iter().enumerate() {
        let key = inc.signature.as_ref().map(|s| s.id);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let sigs = groups.iter().filter(|(k, _)| k.is_some()).count();
    writeln!(
        o,
        "{}",
        look.paint(
            Paint::Heading,
            &format!(
                "INCIDENTS  {}, {sigs} known signature{}",
                incidents.len(),
                if sigs == 1 { "" } else { "s" }
            )
        )
    )?;
    for (_, members) in &groups {
        writeln!(o)?;
        let first = members.first().and_then(|&i| incidents.get(i));
        match first.and_then(|f| f.signature.as_ref()) {
            Some(sig) => write_signature(o, sig, Some(members.len()), look)?,
            None => writeln!(
                o,
                "{}  {} linked close{} across the proxy",
                look.paint(Paint::Signature, "no known signature"),
                members.len(),
                if members.len() == 1 { "" } else { "s" }
            )?,
        }
        for &i in members {
            if let Some(inc) = incidents.get(i) {
                writeln!(o)?;
                write_incident(o, i + 1, inc, look)?;
            }
        }
    }
    Ok(())
}

/// Human-readable report: header, incidents, problem closes, the clean ones counted (listed
/// with [`Look::all`]), totals. Rows wait until the end so that incidents — which need the
/// whole capture — can lead; their number is capped.
pub struct TextReport<W: Write> {
    out: W,
    look: Look,
    only_problems: bool,
    rows: Vec<Row>,
    problems: u64,
    clean: BTreeMap<&'static str, u64>,
    unlisted: u64,
    max_rows: usize,
    /// Connections a filter (`--conn`, `--leg`, `--since`, `--until`) kept from this report.
    left_out: Option<u64>,
}

impl<W: Write> TextReport<W> {
    /// Writes to `out` (raw: the report escapes what comes from the capture itself).
    pub fn new(out: W, look: Look) -> Self {
        TextReport {
            out,
            look,
            only_problems: false,
            rows: Vec::new(),
            problems: 0,
            clean: BTreeMap::new(),
            unlisted: 0,
            max_rows: MAX_ROWS,
            left_out: None,
        }
    }

    /// Holds at most `n` rows until the end (the memory budget's share; the rest are counted).
    pub fn max_rows(mut self, n: usize) -> Self {
        self.max_rows = n;
        self
    }

    /// Lists only connections whose close is a problem, even with [`Look::all`].
    pub fn only_problems(mut self, yes: bool) -> Self {
        self.only_problems = yes;
        self
    }

    fn lists_clean(&self) -> bool {
        self.look.all && !self.only_problems
    }
}

impl<W: Write> NoteFiltered for TextReport<W> {
    fn note_filtered(&mut self, note: serde_json::Value) {
        self.left_out = note.get("left_out").and_then(|n| n.as_u64());
    }
}

impl<W: Write> Report for TextReport<W> {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        let v = c.verdict.as_ref();
        let problem = v.is_some_and(|v| v.label.is_problem());
        if problem {
            self.problems += 1;
        } else {
            *self
                .clean
                .entry(v.map_or("no verdict", |v| v.label.as_str()))
                .or_default() += 1;
            if !self.lists_clean() {
                return Ok(());
            }
        }
        if self.rows.len() >= self.max_rows {
            self.unlisted += 1;
            return Ok(());
        }
        self.rows.push(Row::of(c));
        Ok(())
    }

    fn finish(&mut self, run: &RunSummary) -> io::Result<()> {
        let look = self
            .look
            .clone()
            .with_span(run.capture_start, run.capture_end);
        let listed = self.lists_clean();
        let o = &mut self.out;
        write_header(o, run, &look)?;
        writeln!(o)?;
        if !run.incidents.is_empty() {
            write_incidents(o, &run.incidents, &look)?;
            writeln!(o)?;
        }
        for m in &run.proxysql_log {
            look.write_wrapped(
                o,
                &safe(&format!(
                    "proxysql log line {} (thread {}, {}:{}): {}",
                    m.log.line, m.log.thread_id, m.log.host, m.log.port, m.capture_says
                )),
                "",
                "  ",
            )?;
        }
        if !run.proxysql_log.is_empty() {
            writeln!(o)?;
        }
        let mut rows = std::mem::take(&mut self.rows);
        rows.sort_by_key(|r| (!r.problem, r.id));
        let cols = Columns::fit(&rows, &look);
        let listed_problems = rows.iter().filter(|r| r.problem).count();
        let clean_total: u64 = self.clean.values().sum();
        let heading = |what: &str| look.paint(Paint::Heading, what);
        if self.problems == 0 {
            writeln!(o, "{}  none", heading("PROBLEMS"))?;
        } else {
            writeln!(
                o,
                "{}  {} of {} connections",
                heading("PROBLEMS"),
                self.problems,
                self.problems + clean_total
            )?;
            writeln!(o)?;
            write_heading(o, cols, &look)?;
            for r in rows.iter().filter(|r| r.problem) {
                r.write(o, cols, &look)?;
            }
        }
        writeln!(o)?;
        let clean_words: Vec<String> = self.clean.iter().map(|(k, n)| format!("{n} {k}")).collect();
        if clean_total > 0 {
            writeln!(
                o,
                "{}  {clean_total} ({}){}",
                heading("CLEAN CLOSES"),
                clean_words.join(", "),
                match (listed, self.only_problems) {
                    (true, _) => "",
                    (false, true) => ", not listed (--only-problems)",
                    (false, false) => ", not listed (--all lists them)",
                }
            )?;
            if listed && rows.len() > listed_problems {
                writeln!(o)?;
                write_heading(o, cols, &look)?;
                for r in rows.iter().filter(|r| !r.problem) {
                    r.write(o, cols, &look)?;
                }
            }
            writeln!(o)?;
        }
        if run.tcp.connections == 0 {
            writeln!(o, "no TCP connections")?;
        }
        if let Some(n) = self.left_out {
            writeln!(
                o,
                "{n} connections left out by --conn/--leg/--since/--until (the counts have \
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
        write_totals(o, run, &look)?;
        o.flush()
    }
}

impl Look {
    /// The same look with the clock set to the capture's span (offsets from its first frame;
    /// dates when it crosses midnight).
    pub fn with_span(mut self, start: Option<Timestamp>, end: Option<Timestamp>) -> Look {
        if let Some(s) = start {
            self.clock = self.clock.with_span(s, end.unwrap_or(s));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_the_indents_and_zero_never_wraps() {
        let look = Look {
            width: 20,
            ..Look::default()
        };
        let lines = look.wrap("one two three four five six", "  ", "    ");
        assert_eq!(lines, ["  one two three four", "    five six"]);
        let never = Look {
            width: 0,
            ..Look::default()
        };
        assert_eq!(never.wrap("a b", "> ", ""), ["> a b"]);
    }

    #[test]
    fn verdicts_list_problems_first_then_by_count() {
        let v: BTreeMap<&'static str, u64> = [
            ("clean_quit", 9),
            ("client_abort", 1),
            ("proxy_closed_frontend", 4),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            verdict_counts(&v),
            "4 proxy_closed_frontend, 1 client_abort, 9 clean_quit"
        );
    }

    #[test]
    fn colour_only_when_asked_and_capture_strings_stay_escaped() {
        let plain = Look::default();
        assert_eq!(plain.paint(Paint::Problem, "x"), "x");
        let colour = Look {
            color: true,
            ..Look::default()
        };
        let s = colour.paint(Paint::Problem, &safe("a\x1b[2Jb\nc"));
        assert!(s.starts_with('\x1b') && s.ends_with("\x1b[0m"), "{s:?}");
        assert!(s.contains(r"a\x1b[2Jb\nc"), "{s:?}");
    }
}
