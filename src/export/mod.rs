//! Timeline export: the events of a run as JSON Lines (schema `proxyscope.events/1`), CSV,
//! Parquet, a self-contained HTML timeline or a Perfetto/Chrome trace, and per-incident pcaps.
//!
//! Every format is made from the same [`Timeline`]: the connections of a run (with their kept
//! events) that pass a [`Filter`], and the run's incidents. JSON Lines and CSV carry one record a
//! line: every decoded event ([`EventLine`]), one `verdict.close` per connection
//! ([`verdict_line`]) and one `verdict.incident` per incident ([`incident_line`]).

pub mod html;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod pcap;
pub mod perfetto;
pub mod table;

use std::collections::BTreeSet;
use std::io;

use serde_json::{json, Map, Value};

use crate::diagnose::incidents::Incident;
use crate::diagnose::legs::Leg;
use crate::event::{Dir, Kind};
use crate::model::{EventLine, Point, Role, Summary};
use crate::report::{NoteFiltered, Report, RunSummary};
use crate::time::{TimeBound, Timestamp};

/// Version of the event records (JSON Lines and CSV), named by the first line of a JSON Lines
/// stream.
pub const SCHEMA: &str = "proxyscope.events/1";

/// Events a timeline keeps per connection by default, from its start and as many from its end;
/// the middle of a long pooled connection is counted as omitted, so memory stays bounded.
pub const KEEP_EVENTS: usize = 1000;

/// A timeline format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON Lines: a schema line, then one event, verdict or incident record a line.
    Jsonl,
    /// CSV: the same records, `detail` as JSON.
    Csv,
    /// One self-contained HTML page with the visual timeline.
    Html,
    /// Chrome Trace Event Format JSON, for ui.perfetto.dev or chrome://tracing.
    Perfetto,
    /// Parquet: the same records, one a row, typed columns (binary: -o FILE or a pipe).
    Parquet,
}

/// Why `--format parquet` cannot be written by this build.
pub const NO_PARQUET: &str =
    "--format parquet: this proxyscope was built without the `parquet` feature";

/// Writes the timeline in `format`; `title` names the capture in the HTML page.
pub fn write(
    tl: &Timeline,
    format: Format,
    title: &str,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    match format {
        Format::Jsonl => table::write_jsonl(tl, out),
        Format::Csv => table::write_csv(tl, out),
        Format::Html => html::write(tl, title, out),
        Format::Perfetto => perfetto::write(tl, out),
        #[cfg(feature = "parquet")]
        Format::Parquet => parquet::write(tl, out),
        #[cfg(not(feature = "parquet"))]
        Format::Parquet => Err(io::Error::new(io::ErrorKind::Unsupported, NO_PARQUET)),
    }
}

/// Writes a JSON array element by element, so that a large export is never one value in memory.
pub struct JsonSeq<'a> {
    out: &'a mut dyn io::Write,
    first: bool,
}

impl<'a> JsonSeq<'a> {
    /// Writes `prefix` (e.g. `"events":`) and opens the array.
    pub fn open(out: &'a mut dyn io::Write, prefix: &str) -> io::Result<JsonSeq<'a>> {
        out.write_all(prefix.as_bytes())?;
        out.write_all(b"[")?;
        Ok(JsonSeq { out, first: true })
    }

    /// Writes one element.
    pub fn push<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut *self.out, v)?;
        Ok(())
    }

    /// Closes the array.
    pub fn close(self) -> io::Result<()> {
        self.out.write_all(b"]")
    }
}

/// The first line of a JSON Lines event stream: `{"schema":"proxyscope.events/1"}`.
pub fn schema_line() -> Value {
    json!({ "schema": SCHEMA })
}

/// The name of a leg as the JSON output writes it (`frontend`, `backend`, `direct`, `unknown`).
pub fn leg_name(leg: Leg) -> &'static str {
    match leg {
        Leg::Frontend => "frontend",
        Leg::Backend => "backend",
        Leg::Direct => "direct",
        Leg::Unknown => "unknown",
    }
}

fn point_fields(m: &mut Map<String, Value>, p: &Point) {
    m.insert("ts".into(), json!(p.ts.rfc3339().to_string()));
    m.insert("t".into(), json!(p.t));
    m.insert("frame".into(), json!(p.frame));
    if p.file != 0 {
        m.insert("file".into(), json!(p.file));
    }
}

/// The packet that started the teardown (the verdict's, else the first FIN or RST).
fn teardown(s: &Summary) -> Option<crate::model::Mark> {
    s.verdict.as_ref().and_then(|v| v.at).or(s.close.at)
}

/// The `verdict.close` record of a finished connection: where the teardown started (the
/// verdict's packet; for a connection still open, its last packet with `dir` null), and in
/// `detail` the verdict object plus the close record, endpoints, what it carried and the
/// connections it was relayed with.
pub fn verdict_line(s: &Summary) -> Value {
    let mark = teardown(s);
    let mut m = Map::new();
    point_fields(&mut m, &mark.map_or(s.end, |k| k.at));
    m.insert("conn".into(), json!(s.id));
    m.insert("leg".into(), json!(leg_name(s.leg)));
    let (dir, from, to) = match mark {
        Some(k) if k.by == Role::Server => (json!(Dir::S2c), s.server, s.client),
        Some(_) => (json!(Dir::C2s), s.client, s.server),
        None => (Value::Null, s.client, s.server),
    };
    m.insert("dir".into(), dir);
    m.insert("from".into(), json!(from.to_string()));
    m.insert("to".into(), json!(to.to_string()));
    m.insert("layer".into(), json!("verdict"));
    m.insert("kind".into(), json!("verdict.close"));
    let mut d = match serde_json::to_value(&s.verdict) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    d.insert(
        "close".into(),
        serde_json::to_value(&s.close).unwrap_or(Value::Null),
    );
    d.insert("client".into(), json!(s.client.to_string()));
    d.insert("server".into(), json!(s.server.to_string()));
    d.insert("client_ip".into(), json!(s.client_ip));
    d.insert("client_port".into(), json!(s.client_port));
    d.insert("server_ip".into(), json!(s.server_ip));
    d.insert("server_port".into(), json!(s.server_port));
    d.insert("community_id".into(), json!(s.community_id));
    d.insert("conn_state".into(), json!(s.conn_state));
    d.insert("history".into(), json!(s.history));
    d.insert("history_orig".into(), json!(s.history_orig));
    if let Some(v) = &s.vlan {
        d.insert("vlan".into(), json!(v));
    }
    d.insert("carries".into(), json!(s.carries));
    d.insert("relayed".into(), json!(s.relayed));
    d.insert(
        "relays".into(),
        serde_json::to_value(&s.relays).unwrap_or(Value::Null),
    );
    d.insert("leg_confidence".into(), json!(s.leg_confidence));
    d.insert("events_dropped".into(), json!(s.events_dropped));
    m.insert("detail".into(), Value::Object(d));
    Value::Object(m)
}

/// The `verdict.incident` record of incident number `n` (1-based, as the text report counts):
/// time, frame, connection and leg of its first step; `dir`, `from` and `to` null; `detail` is
/// the incident object (signature and steps) with its number as `id`.
pub fn incident_line(n: usize, inc: &Incident) -> Value {
    let mut m = Map::new();
    let first = inc.steps.first();
    if let Some(s) = first {
        point_fields(&mut m, &s.at);
    }
    m.insert("conn".into(), json!(first.map(|s| s.conn)));
    m.insert(
        "leg".into(),
        json!(first.map_or("unknown", |s| leg_name(s.leg))),
    );
    m.insert("dir".into(), Value::Null);
    m.insert("from".into(), Value::Null);
    m.insert("to".into(), Value::Null);
    m.insert("layer".into(), json!("verdict"));
    m.insert("kind".into(), json!("verdict.incident"));
    let mut d = match serde_json::to_value(inc) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    d.insert("id".into(), json!(n));
    m.insert("detail".into(), Value::Object(d));
    Value::Object(m)
}

/// Which connections and which time range an export shows (`--conn`, `--leg`, `--since`,
/// `--until`, `--only-problems`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Filter {
    /// Only these connections (ids as the report numbers them); repeatable.
    #[arg(long = "conn", value_name = "ID")]
    pub conns: Vec<u64>,
    /// Only connections on these legs; repeatable.
    #[arg(long = "leg", value_name = "LEG",
          value_parser = ["frontend", "backend", "direct", "unknown"])]
    pub legs: Vec<String>,
    /// Only what happened from this time: seconds from the capture's start (10, +5s, +2m,
    /// +250ms), seconds before its end (-30s, -2m), an RFC 3339 time (2026-11-24T10:20:32Z,
    /// with an offset, fractions), or a date and time in the local zone as logs write it
    /// ("2026-11-24 11:20:32").
    #[arg(long = "since", value_name = "TIME", allow_hyphen_values = true,
          value_parser = crate::time::parse_bound)]
    pub since_bound: Option<TimeBound>,
    /// Only what happened up to this time (same forms as --since).
    #[arg(long = "until", value_name = "TIME", allow_hyphen_values = true,
          value_parser = crate::time::parse_bound)]
    pub until_bound: Option<TimeBound>,
    /// `--since` in seconds from the capture's start, once [`Filter::resolve`] knows it.
    #[arg(skip)]
    pub since: Option<f64>,
    /// `--until` in seconds from the capture's start, once [`Filter::resolve`] knows it.
    #[arg(skip)]
    pub until: Option<f64>,
    /// Only connections whose close is a problem (and incidents).
    #[arg(long)]
    pub only_problems: bool,
}

impl Filter {
    /// Turns `--since`/`--until` into seconds from `origin`, the capture's start (every
    /// [`Summary`] carries it); the time tests below use those.
    pub fn resolve(&mut self, origin: Timestamp) {
        self.since = self.since_bound.map(|b| b.offset_from(origin));
        self.until = self.until_bound.map(|b| b.offset_from(origin));
    }

    /// A time range is given.
    pub fn has_time(&self) -> bool {
        self.since_bound.is_some() || self.until_bound.is_some()
    }

    /// The connection passes the id, leg and problem filters.
    pub fn connection(&self, s: &Summary) -> bool {
        self.id_and_leg(s) && (!self.only_problems || is_problem(s))
    }

    /// The connection passes the id and leg filters.
    pub fn id_and_leg(&self, s: &Summary) -> bool {
        (self.conns.is_empty() || self.conns.contains(&s.id))
            && (self.legs.is_empty() || self.legs.iter().any(|l| l == leg_name(s.leg)))
    }

    /// `t` (seconds from the capture's start) is in the time range.
    pub fn time(&self, t: f64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }

    /// The interval from `a` to `b` (seconds) overlaps the time range.
    pub fn span(&self, a: f64, b: f64) -> bool {
        self.since.is_none_or(|x| b >= x) && self.until.is_none_or(|y| a <= y)
    }

    /// The connection's life overlaps the time range.
    pub fn overlaps(&self, s: &Summary) -> bool {
        self.span(s.start.t, s.end.t)
    }
}

fn is_problem(s: &Summary) -> bool {
    s.verdict.as_ref().is_some_and(|v| v.label.is_problem())
}

/// A report that sees only the connections passing a [`Filter`] (`analyze --conn/--leg/
/// --since/--until`, and `--only-problems` when `drop_clean`): a connection is kept when it
/// passes the id, leg and problem tests and its life overlaps the time range. The run's
/// summary still counts every connection; the report is told how many were left out.
pub struct Filtered<R> {
    inner: R,
    filter: Filter,
    drop_clean: bool,
    kept: u64,
    dropped: u64,
}

impl<R: Report + NoteFiltered> Filtered<R> {
    /// Filters what reaches `inner`; `drop_clean` applies `--only-problems` here (the text
    /// report applies it itself, counting the clean closes).
    pub fn new(inner: R, filter: Filter, drop_clean: bool) -> Self {
        Filtered {
            inner,
            filter,
            drop_clean,
            kept: 0,
            dropped: 0,
        }
    }

    fn active(&self) -> bool {
        !self.filter.conns.is_empty()
            || !self.filter.legs.is_empty()
            || self.filter.has_time()
            || (self.drop_clean && self.filter.only_problems)
    }
}

impl<R: Report + NoteFiltered> Report for Filtered<R> {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        self.filter.resolve(c.origin);
        let f = &self.filter;
        let pass = f.id_and_leg(c)
            && (!(f.only_problems && self.drop_clean) || is_problem(c))
            && f.overlaps(c);
        if pass {
            self.kept += 1;
            self.inner.connection(c)
        } else {
            self.dropped += 1;
            Ok(())
        }
    }

    fn finish(&mut self, run: &RunSummary) -> io::Result<()> {
        if self.active() {
            let f = &self.filter;
            self.inner.note_filtered(json!({
                "conns": f.conns,
                "legs": f.legs,
                "since": f.since,
                "until": f.until,
                "only_problems": f.only_problems && self.drop_clean,
                "kept": self.kept,
                "left_out": self.dropped,
            }));
        }
        self.inner.finish(run)
    }
}

/// Everything a timeline shows: the connections that passed the filter, in id order, and the
/// incidents that involve them.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Connections (with their kept events), by id.
    pub conns: Vec<Summary>,
    /// Incidents with at least one step on a kept connection and in the time range, with their
    /// numbers in the whole run (1-based).
    pub incidents: Vec<(usize, Incident)>,
    /// The run's summary, once finished.
    pub run: Option<RunSummary>,
    filter: Filter,
}

impl Timeline {
    /// An empty timeline that will keep what passes `filter`.
    pub fn new(filter: Filter) -> Timeline {
        Timeline {
            filter,
            ..Timeline::default()
        }
    }

    /// The filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Every record in time order (ties: connection id, then capture order): the events of the
    /// kept connections, their `verdict.close` records and the incidents, all in the time range.
    /// Only the order is held in memory; each record is made as the iterator reaches it.
    pub fn records(&self) -> impl Iterator<Item = Value> + '_ {
        enum Rec {
            Event(usize, usize),
            Verdict(usize),
            Incident(usize),
        }
        let mut order: Vec<(f64, u64, Rec)> = Vec::new();
        for (i, s) in self.conns.iter().enumerate() {
            for (k, e) in s.events.iter().enumerate() {
                if self.filter.time(e.at.t) {
                    order.push((e.at.t, s.id, Rec::Event(i, k)));
                }
            }
            let t = teardown(s).map_or(s.end.t, |m| m.at.t);
            if self.filter.time(t) {
                order.push((t, s.id, Rec::Verdict(i)));
            }
        }
        for (i, (_, inc)) in self.incidents.iter().enumerate() {
            if let Some(first) = inc.steps.first() {
                order.push((first.at.t, first.conn, Rec::Incident(i)));
            }
        }
        // Stable: events of one connection stay in capture order.
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        order.into_iter().map(move |(_, _, r)| match r {
            Rec::Event(i, k) => {
                let (Some(s), Some(e)) = (
                    self.conns.get(i),
                    self.conns.get(i).and_then(|s| s.events.get(k)),
                ) else {
                    return Value::Null;
                };
                let line = EventLine {
                    conn: s.id,
                    leg: s.leg,
                    event: e.clone(),
                };
                serde_json::to_value(&line).unwrap_or(Value::Null)
            }
            Rec::Verdict(i) => self.conns.get(i).map_or(Value::Null, verdict_line),
            Rec::Incident(i) => self
                .incidents
                .get(i)
                .map_or(Value::Null, |(n, inc)| incident_line(*n, inc)),
        })
    }
}

impl Report for Timeline {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        if self.filter.since.is_none() && self.filter.until.is_none() {
            self.filter.resolve(c.origin);
        }
        if self.filter.connection(c) && self.filter.overlaps(c) {
            self.conns.push(c.clone());
        }
        Ok(())
    }

    fn finish(&mut self, run: &RunSummary) -> io::Result<()> {
        self.conns.sort_by_key(|s| s.id);
        let kept: BTreeSet<u64> = self.conns.iter().map(|s| s.id).collect();
        self.incidents = run
            .incidents
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i.steps
                    .iter()
                    .any(|s| kept.contains(&s.conn) && self.filter.time(s.at.t))
            })
            .map(|(n, i)| (n + 1, i.clone()))
            .collect();
        self.run = Some(run.clone());
        Ok(())
    }
}

/// The order of lanes (indexes into `conns`): frontend connections by start, then backend
/// connections next to the frontends they carried requests for (by the first such frontend's
/// place, then start), then direct and unknown ones.
pub fn lane_order(conns: &[Summary]) -> Vec<usize> {
    let rank = |l: Leg| match l {
        Leg::Frontend => 0,
        Leg::Backend => 1,
        Leg::Direct => 2,
        Leg::Unknown => 3,
    };
    let mut front: Vec<usize> = (0..conns.len())
        .filter(|&i| conns.get(i).is_some_and(|s| s.leg == Leg::Frontend))
        .collect();
    front.sort_by(|&a, &b| {
        let t = |i: usize| conns.get(i).map_or(0.0, |s| s.start.t);
        t(a).total_cmp(&t(b))
    });
    let place: std::collections::HashMap<u64, usize> = front
        .iter()
        .enumerate()
        .filter_map(|(n, &i)| conns.get(i).map(|s| (s.id, n)))
        .collect();
    let key = |i: usize| {
        let s = conns.get(i);
        let leg = s.map_or(3, |s| rank(s.leg));
        let paired = s
            .and_then(|s| s.relayed.iter().filter_map(|(id, _)| place.get(id)).min())
            .copied()
            .unwrap_or(usize::MAX);
        (
            leg,
            if leg == 0 { 0 } else { paired },
            s.map_or(0.0, |s| s.start.t),
        )
    };
    let mut rest: Vec<usize> = (0..conns.len())
        .filter(|&i| conns.get(i).is_some_and(|s| s.leg != Leg::Frontend))
        .collect();
    rest.sort_by(|&a, &b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
    });
    front.extend(rest);
    front
}

/// What a marker on a timeline lane shows, by event kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// SYN or SYN-ACK.
    Syn,
    /// MySQL greeting, SSLRequest, login, auth.
    Login,
    /// A TLS handshake message (or change-cipher-spec).
    TlsHandshake,
    /// A MySQL command (a request).
    Query,
    /// A MySQL response (OK, result set, prepared statement).
    Response,
    /// Opaque TLS application data.
    Data,
    /// A MySQL ERR.
    Err,
    /// A TLS alert (close_notify included, decrypted, encrypted or inferred) or plaintext in TLS.
    Alert,
    /// TCP FIN.
    Fin,
    /// TCP RST.
    Rst,
    /// Bytes never captured, or framing lost and found.
    Gap,
}

impl Mark {
    /// The marker for an event kind.
    pub fn of(k: &Kind) -> Mark {
        use Kind::*;
        match k {
            Syn | SynAck => Mark::Syn,
            Fin => Mark::Fin,
            Rst => Mark::Rst,
            Gap { .. } | Desync { .. } | Resync | TlsDesync | TlsResync => Mark::Gap,
            Greeting { .. }
            | SslRequest { .. }
            | HandshakeResponse { .. }
            | AuthSwitch { .. }
            | AuthMoreData { .. }
            | AuthResponse { .. } => Mark::Login,
            GreetingErr { .. } | Err { .. } => Mark::Err,
            Command { .. } => Mark::Query,
            Ok { .. }
            | StmtPrepared { .. }
            | ResultSet { .. }
            | Eof { .. }
            | LocalInfile { .. }
            | BinlogStream => Mark::Response,
            InfileData { .. } => Mark::Query,
            Alert { .. } | EncryptedAlert { .. } | InferredClose { .. } | PlaintextInTls { .. } => {
                Mark::Alert
            }
            AppData { .. } => Mark::Data,
            ClientHello { .. }
            | ServerHello { .. }
            | Certificate { .. }
            | Handshake { .. }
            | EncryptedHandshake { .. }
            | ChangeCipherSpec => Mark::TlsHandshake,
        }
    }

    /// Short name (the HTML legend and the trace's categories).
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Syn => "syn",
            Mark::Login => "login",
            Mark::TlsHandshake => "tls",
            Mark::Query => "query",
            Mark::Response => "response",
            Mark::Data => "data",
            Mark::Err => "err",
            Mark::Alert => "alert",
            Mark::Fin => "fin",
            Mark::Rst => "rst",
            Mark::Gap => "gap",
        }
    }
}

/// A request on a connection: from the client's request (a MySQL command, or a TLS record that
/// carries one) to the last response before the next request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Seconds from the capture's start, at the request.
    pub start: f64,
    /// Seconds at the last response packet (or at the close when none came).
    pub end: f64,
    /// Frame of the request.
    pub frame: u64,
    /// What it was (`COM_QUERY "SELECT 1"`, `app data 38 B`).
    pub name: String,
    /// No response was seen.
    pub unanswered: bool,
}

/// The requests of a connection, from its kept events. Opaque TLS counts record by record: the
/// first request of an undecrypted MySQL-in-TLS connection is its login.
pub fn requests(s: &Summary) -> Vec<Request> {
    let mut out: Vec<Request> = Vec::new();
    let mut open: Option<Request> = None;
    let mut answered = false;
    for e in &s.events {
        let mark = Mark::of(&e.event.kind);
        match (e.dir == Dir::C2s, mark) {
            (true, Mark::Query) | (true, Mark::Data) => {
                if let (Some(r), false) = (open.as_mut(), answered) {
                    // A request in several records, or the command inside a TLS record.
                    if mark == Mark::Query {
                        r.name = e.event.kind.brief();
                    }
                    continue;
                }
                if let Some(r) = open.take() {
                    out.push(r);
                }
                open = Some(Request {
                    start: e.at.t,
                    end: e.at.t,
                    frame: e.at.frame,
                    name: e.event.kind.brief(),
                    unanswered: true,
                });
                answered = false;
            }
            (false, Mark::Response | Mark::Err | Mark::Data) => {
                if let Some(r) = open.as_mut() {
                    r.end = e.at.t;
                    r.unanswered = false;
                    answered = true;
                }
            }
            (_, Mark::Fin | Mark::Rst) => {
                if let Some(mut r) = open.take() {
                    if r.unanswered {
                        r.end = e.at.t;
                    }
                    out.push(r);
                }
            }
            _ => {}
        }
    }
    if let Some(mut r) = open {
        if r.unanswered {
            r.end = s.end.t;
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_line_names_the_version() {
        assert_eq!(schema_line()["schema"], SCHEMA);
    }

    #[test]
    fn filter_time_bounds_are_inclusive() {
        let f = Filter {
            since: Some(1.0),
            until: Some(2.0),
            ..Filter::default()
        };
        assert!(f.time(1.0) && f.time(2.0) && !f.time(0.999) && !f.time(2.001));
        assert!(Filter::default().time(-5.0));
        assert!(f.span(0.0, 3.0) && f.span(1.5, 1.6) && !f.span(0.0, 0.9) && !f.span(2.1, 3.0));
    }
}
