//! Reports: where finished connections and the run summary go. Text and JSON are two sinks
//! behind one trait, so the pipeline does not care which the user asked for.
//!
//! Both stream: a connection is written when it is finished, so memory does not grow with the
//! number of connections in the capture.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

pub mod term;
pub mod text;

pub use term::term_safe;
pub use text::{Look, TextReport};

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
    /// Last frame's timestamp (the latest, when files are merged).
    #[serde(serialize_with = "ser_opt_ts")]
    pub capture_end: Option<Timestamp>,
    /// Frames read, all files.
    pub frames: u64,
    /// TLS connections and what became of their decryption.
    pub tls: TlsCount,
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

/// TLS connections by what their decryption came to, so that a key log that fits nothing
/// does not go unnoticed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsCount {
    /// Connections that carried TLS.
    pub sessions: u64,
    /// Keys found and records decrypted.
    pub decrypted: u64,
    /// Keys found but no record decrypted (a key log from another run, or damaged secrets).
    pub keys_failed: u64,
    /// Handshake seen, its client random not in the key log.
    pub no_keys: u64,
    /// Keys found for a cipher suite we cannot decrypt.
    pub unsupported: u64,
    /// Not tried: no key log was given, or the handshake was not captured.
    pub not_tried: u64,
    /// A key log (a file or a pcapng secrets block) was given.
    pub keylog: bool,
}

impl TlsCount {
    /// Counts `c`'s TLS, if it carried any.
    pub fn add(&mut self, c: &Summary) {
        let Some(t) = &c.tls else { return };
        self.sessions += 1;
        let records = t.decrypted.c2s + t.decrypted.s2c;
        let app = t.records.c2s.app_records + t.records.s2c.app_records;
        match t.decryption {
            Some("keys") if records > 0 || app == 0 => self.decrypted += 1,
            Some("keys") => self.keys_failed += 1,
            Some("no keys") => self.no_keys += 1,
            Some(_) => self.unsupported += 1,
            None => self.not_tried += 1,
        }
    }

    /// `14 sessions, 14 decrypted`, `3 sessions, 0 decrypted: 3 not in the key log`, or
    /// `2 sessions, not decrypted (no key log given)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} session{}",
            self.sessions,
            if self.sessions == 1 { "" } else { "s" }
        );
        if !self.keylog {
            s.push_str(", not decrypted (no key log given: --keylog FILE)");
            return s;
        }
        s.push_str(&format!(", {} decrypted", self.decrypted));
        let mut why = Vec::new();
        for (n, what) in [
            (
                self.keys_failed,
                "keys found that decrypted nothing (a key log of another run?)",
            ),
            (self.no_keys, "not in the key log"),
            (self.unsupported, "cipher suite not supported"),
            (self.not_tried, "without a handshake to decrypt"),
        ] {
            if n > 0 {
                why.push(format!("{n} {what}"));
            }
        }
        if !why.is_empty() {
            s.push_str(": ");
            s.push_str(&why.join(", "));
        }
        s
    }
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

#[cfg(test)]
mod tls_count_tests {
    use super::TlsCount;

    #[test]
    fn a_key_log_that_fits_nothing_is_said() {
        let none = TlsCount {
            sessions: 2,
            not_tried: 2,
            ..Default::default()
        };
        assert_eq!(
            none.describe(),
            "2 sessions, not decrypted (no key log given: --keylog FILE)"
        );
        let wrong = TlsCount {
            sessions: 3,
            no_keys: 2,
            keys_failed: 1,
            keylog: true,
            ..Default::default()
        };
        assert_eq!(
            wrong.describe(),
            "3 sessions, 0 decrypted: 1 keys found that decrypted nothing (a key log of another \
             run?), 2 not in the key log"
        );
    }
}
