//! Request latency from the event stream: per connection, a request (a client command other
//! than COM_QUIT) to the end of its response (the OK, ERR or EOF that ends it, or the end of
//! the last result set: when the client has all of it). Across the proxy, a backend request
//! that relays a frontend one (per-statement pairing) links the two, so that each paired
//! statement also gives the time the proxy added: frontend latency minus backend latency.
//!
//! Only decoded MySQL (plaintext, or TLS decrypted with a key log) is timed: an undecrypted
//! session shows where records are, not where responses end, so its requests are counted (as
//! the client's turns of application data after the handshake) but not timed.
//!
//! Memory is bounded: latencies go into log-bucketed histograms (2% wide buckets, so a
//! quantile is within 1% of the sample's), per connection until its leg is known at its
//! close, with a cap on the connections and buckets held; what does not fit is counted.

use std::collections::HashMap;

use crate::common::At;
use crate::event::{Com, Kind, StatusFlags};
use crate::time::Timestamp;

/// Each bucket is this many times wider than the one before.
const RATIO: f64 = 1.02;
/// Bucket 0 holds everything below this (1 µs); bucket i ≥ 1 holds [FLOOR·R^(i−1), FLOOR·R^i).
const FLOOR_NS: f64 = 1_000.0;

/// Connections timed at once (about 130 bytes each).
pub const MAX_CONNS: usize = 1 << 18;
/// Buckets held across the open connections' histograms (16 bytes each).
pub const MAX_BUCKETS: usize = 1 << 21;

/// A log-bucketed histogram of durations in nanoseconds (sparse: only buckets used).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hist {
    /// (bucket, count), by bucket.
    buckets: Vec<(u16, u64)>,
    count: u64,
}

fn bucket(ns: i64) -> u16 {
    let ns = ns.max(0) as f64;
    if ns < FLOOR_NS {
        return 0;
    }
    let i = ((ns / FLOOR_NS).ln() / RATIO.ln()).floor() + 1.0;
    // Beyond the last bucket (2^16 · 2% is far beyond any capture) everything shares it.
    i.min(f64::from(u16::MAX)) as u16
}

/// The lower bound of a bucket, in nanoseconds.
pub fn lower(b: u16) -> f64 {
    if b == 0 {
        return 0.0;
    }
    FLOOR_NS * RATIO.powi(i32::from(b) - 1)
}

/// The middle (geometric) of a bucket, in nanoseconds.
fn middle(b: u16) -> f64 {
    if b == 0 {
        return FLOOR_NS / 2.0;
    }
    FLOOR_NS * RATIO.powi(i32::from(b) - 1) * RATIO.sqrt()
}

impl Hist {
    /// Adds one duration (negative ones, from clocks stepping back, count as 0).
    pub fn add(&mut self, ns: i64) {
        self.add_n(bucket(ns), 1);
    }

    fn add_n(&mut self, b: u16, n: u64) {
        match self.buckets.binary_search_by_key(&b, |&(k, _)| k) {
            Ok(i) => {
                if let Some(e) = self.buckets.get_mut(i) {
                    e.1 = e.1.saturating_add(n);
                }
            }
            Err(i) => self.buckets.insert(i, (b, n)),
        }
        self.count = self.count.saturating_add(n);
    }

    /// Whether adding `ns` would take a new bucket.
    fn needs_bucket(&self, ns: i64) -> bool {
        let b = bucket(ns);
        self.buckets.binary_search_by_key(&b, |&(k, _)| k).is_err()
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Hist) {
        for &(b, n) in &other.buckets {
            self.add_n(b, n);
        }
    }

    /// Durations added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Buckets in use (the memory it holds).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Counts grouped `group` buckets at a time (a coarser histogram to draw): (group index,
    /// its lower bound in ms, count), by group.
    pub fn grouped(&self, group: u16) -> Vec<(u16, f64, u64)> {
        let group = group.max(1);
        let mut out: Vec<(u16, f64, u64)> = Vec::new();
        for &(b, n) in &self.buckets {
            let g = b / group;
            match out.last_mut() {
                Some(last) if last.0 == g => last.2 += n,
                _ => out.push((g, lower(g.saturating_mul(group)) / 1e6, n)),
            }
        }
        out
    }

    /// The `q` quantile (0 < q ≤ 1, nearest rank) in milliseconds; None when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(q > 0.0 && q <= 1.0) {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for &(b, n) in &self.buckets {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Some(middle(b) / 1e6);
            }
        }
        None
    }
}

/// A request waiting for the end of its response.
#[derive(Clone, Copy, Debug)]
struct Pending {
    at: Timestamp,
    frame: u64,
    /// The frontend request this one relays: (connection, frame).
    relays: Option<(u64, u64)>,
    /// For a frontend request: its backend copy's latency, once answered.
    server_ns: Option<i64>,
    /// For a frontend request: a backend copy was seen.
    relayed: bool,
}

/// What one connection's requests showed.
#[derive(Clone, Debug, Default)]
pub struct ConnTimes {
    /// Decoded requests (client commands other than COM_QUIT).
    pub commands: u64,
    /// Undecrypted TLS: the client's turns of application data after the handshake.
    pub turns: u64,
    /// Latencies of the decoded requests that were answered.
    pub hist: Hist,
    pending: Option<Pending>,
    tls13: bool,
    client_records: u32,
    client_last: bool,
}

impl ConnTimes {
    /// The requests the connection carried: decoded ones when any were decoded, else the
    /// client's turns of undecrypted application data.
    pub fn requests(&self) -> u64 {
        if self.commands > 0 {
            self.commands
        } else {
            self.turns
        }
    }
}

/// Times requests on every MySQL connection of a run, fed the decoded events in order.
#[derive(Debug, Default)]
pub struct Timer {
    conns: HashMap<u64, ConnTimes>,
    buckets: usize,
    /// Latencies not kept (connection or bucket caps full).
    pub dropped: u64,
    /// Per paired statement: frontend latency minus its backend copy's.
    pub proxy_added: Hist,
    /// Frontend requests the proxy relayed again (retries).
    pub retries: u64,
}

impl Timer {
    /// One decoded event of MySQL connection `conn`; `relayed_as`: for a request that relays
    /// another connection's, that request, `(connection, frame)`.
    pub fn event(
        &mut self,
        conn: u64,
        from_client: bool,
        kind: &Kind,
        at: At,
        relayed_as: &[(u64, u64)],
    ) {
        if !self.conns.contains_key(&conn) && self.conns.len() >= MAX_CONNS {
            if matches!(kind, Kind::Command { .. }) {
                self.dropped += 1;
            }
            return;
        }
        if let (true, Kind::Command { .. }, Some(&(front, frame))) =
            (from_client, kind, relayed_as.first())
        {
            // A frontend request relayed a second time: the proxy re-sent it (a retry after it
            // broke the first backend; the client sees nothing).
            if let Some(fp) = self
                .conns
                .get_mut(&front)
                .and_then(|f| f.pending.as_mut())
                .filter(|fp| fp.frame == frame)
            {
                if fp.relayed {
                    self.retries += 1;
                }
                fp.relayed = true;
            }
        }
        let c = self.conns.entry(conn).or_default();
        if from_client {
            match kind {
                Kind::Command { cmd, .. } if *cmd != Com::QUIT => {
                    c.commands += 1;
                    // MySQL does not pipeline: a command while one is pending means the last
                    // had no response (COM_STMT_CLOSE) or it was not seen.
                    c.pending = Some(Pending {
                        at: at.ts,
                        frame: at.frame,
                        relays: relayed_as.first().copied(),
                        server_ns: None,
                        relayed: false,
                    });
                }
                Kind::AppData {
                    decrypted: false, ..
                } => {
                    c.client_records = c.client_records.saturating_add(1);
                    // The handshake's own records (TLS 1.3's client Finished, the login inside
                    // TLS) are not requests; a request starts the client's turn.
                    let skip = if c.tls13 { 2 } else { 1 };
                    if !c.client_last && c.client_records > skip {
                        c.turns += 1;
                    }
                    c.client_last = true;
                }
                _ => {}
            }
            return;
        }
        if let Kind::ServerHello { version, .. } = kind {
            c.tls13 = *version == tls_parser::TlsVersion::Tls13;
        }
        if kind.layer() != crate::event::Layer::Tcp {
            c.client_last = false;
        }
        if !ends_response(kind) {
            return;
        }
        let Some(p) = c.pending.take() else {
            return;
        };
        let ns = at.ts.nanos_since(p.at);
        let full = self.buckets >= MAX_BUCKETS && c.hist.needs_bucket(ns);
        if full {
            self.dropped += 1;
        } else {
            let before = c.hist.buckets();
            c.hist.add(ns);
            self.buckets += c.hist.buckets() - before;
        }
        if let Some(server) = p.server_ns {
            self.proxy_added.add(ns.saturating_sub(server));
        }
        // A backend copy answered: its frontend request learns the server's part.
        if let Some((front, frame)) = p.relays {
            if let Some(f) = self.conns.get_mut(&front) {
                if let Some(fp) = f.pending.as_mut().filter(|fp| fp.frame == frame) {
                    fp.server_ns = Some(ns);
                }
            }
        }
    }

    /// What connection `conn` showed (taken out: called once it is finished).
    pub fn take(&mut self, conn: u64) -> ConnTimes {
        let c = self.conns.remove(&conn).unwrap_or_default();
        self.buckets = self.buckets.saturating_sub(c.hist.buckets());
        c
    }
}

/// The server's packet that ends a response: the client has all of it.
fn ends_response(kind: &Kind) -> bool {
    match kind {
        Kind::Ok {
            login: false,
            status,
            ..
        } => !status.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS),
        Kind::Err {
            login: false,
            unsolicited: false,
            ..
        } => true,
        Kind::ResultSet { more, .. } => !more,
        Kind::Eof { .. } | Kind::StmtPrepared { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: f64, frame: u64) -> At {
        At {
            ts: Timestamp((ms * 1e6) as i64),
            frame,
            file: 0,
        }
    }

    fn query() -> Kind {
        Kind::Command {
            cmd: Com::of(crate::event::Command::COM_QUERY),
            stmt_id: None,
            text: Some("SELECT 1".into()),
            len: 9,
            attrs: Vec::new(),
            user: None,
        }
    }

    fn ok() -> Kind {
        Kind::Ok {
            affected_rows: 0,
            status: StatusFlags::empty(),
            login: false,
        }
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Hist::default();
        // 1..=1000 ms.
        for ms in 1..=1000i64 {
            h.add(ms * 1_000_000);
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile_ms(0.5).expect("p50");
        let p99 = h.quantile_ms(0.99).expect("p99");
        assert!((p50 / 500.0 - 1.0).abs() < 0.011, "{p50}");
        assert!((p99 / 990.0 - 1.0).abs() < 0.011, "{p99}");
        assert!(h.buckets() < 400, "{}", h.buckets());
        assert_eq!(Hist::default().quantile_ms(0.5), None);
        // Merging two halves gives the whole.
        let (mut a, mut b) = (Hist::default(), Hist::default());
        for ms in 1..=1000i64 {
            if ms % 2 == 0 { &mut a } else { &mut b }.add(ms * 1_000_000);
        }
        a.merge(&b);
        assert_eq!(a, h);
        // Below 1 µs and negative share bucket 0.
        let mut z = Hist::default();
        z.add(-5);
        z.add(10);
        assert_eq!(z.buckets(), 1);
    }

    #[test]
    fn a_request_is_timed_to_the_end_of_its_response() {
        let mut t = Timer::default();
        t.event(1, true, &query(), at(10.0, 5), &[]);
        // A result set still to come: not the end.
        let more = Kind::Ok {
            affected_rows: 0,
            status: StatusFlags::SERVER_MORE_RESULTS_EXISTS,
            login: false,
        };
        t.event(1, false, &more, at(12.0, 6), &[]);
        t.event(1, false, &ok(), at(30.0, 7), &[]);
        // COM_QUIT is not a request.
        let quit = Kind::Command {
            cmd: Com::QUIT,
            stmt_id: None,
            text: None,
            len: 1,
            attrs: Vec::new(),
            user: None,
        };
        t.event(1, true, &quit, at(40.0, 8), &[]);
        let c = t.take(1);
        assert_eq!(c.requests(), 1);
        let p50 = c.hist.quantile_ms(0.5).expect("timed");
        assert!((p50 / 20.0 - 1.0).abs() < 0.011, "{p50}");
        assert_eq!(t.take(1).requests(), 0);
    }

    #[test]
    fn a_paired_statement_gives_the_time_the_proxy_added() {
        let mut t = Timer::default();
        // Frontend 1's request at 0 ms, relayed on backend 2 at 1 ms, answered there at 9 ms,
        // answered to the client at 10 ms: the proxy added 2 ms.
        t.event(1, true, &query(), at(0.0, 3), &[]);
        t.event(2, true, &query(), at(1.0, 4), &[(1, 3)]);
        t.event(2, false, &ok(), at(9.0, 5), &[]);
        t.event(1, false, &ok(), at(10.0, 6), &[]);
        let added = t.proxy_added.quantile_ms(0.5).expect("paired");
        assert!((added / 2.0 - 1.0).abs() < 0.011, "{added}");
        assert_eq!(t.proxy_added.count(), 1);
        let back = t.take(2).hist.quantile_ms(0.5).expect("backend");
        assert!((back / 8.0 - 1.0).abs() < 0.011, "{back}");
        assert_eq!(t.retries, 0);
    }

    #[test]
    fn a_request_relayed_twice_is_a_retry_and_the_answer_that_counts_is_the_last() {
        let mut t = Timer::default();
        t.event(1, true, &query(), at(0.0, 3), &[]);
        // Backend 2 carries it and is broken (no answer); backend 3 carries it again.
        t.event(2, true, &query(), at(1.0, 4), &[(1, 3)]);
        t.event(3, true, &query(), at(30.0, 9), &[(1, 3)]);
        t.event(3, false, &ok(), at(40.0, 10), &[]);
        t.event(1, false, &ok(), at(41.0, 11), &[]);
        assert_eq!(t.retries, 1);
        // 41 ms across the proxy, 10 ms at the server that answered.
        let added = t.proxy_added.quantile_ms(0.5).expect("paired");
        assert!((added / 31.0 - 1.0).abs() < 0.011, "{added}");
    }

    #[test]
    fn undecrypted_sessions_count_turns_after_the_handshake() {
        let mut t = Timer::default();
        let rec = |decrypted| Kind::AppData {
            len: 40,
            plain: None,
            decrypted,
        };
        let hello = Kind::ServerHello {
            version: tls_parser::TlsVersion::Tls13,
            cipher: tls_parser::TlsCipherSuiteID(0x1302),
            random: String::new(),
            retry: false,
        };
        t.event(1, false, &hello, at(0.0, 1), &[]);
        // Client Finished, then the login: handshake.
        t.event(1, true, &rec(false), at(1.0, 2), &[]);
        t.event(1, true, &rec(false), at(1.1, 3), &[]);
        t.event(1, false, &rec(false), at(2.0, 4), &[]);
        // Two requests of two records each, each answered.
        for (i, ms) in [3.0, 5.0].into_iter().enumerate() {
            let f = 10 + 3 * i as u64;
            t.event(1, true, &rec(false), at(ms, f), &[]);
            t.event(1, true, &rec(false), at(ms + 0.1, f + 1), &[]);
            t.event(1, false, &rec(false), at(ms + 1.0, f + 2), &[]);
        }
        let c = t.take(1);
        assert_eq!((c.turns, c.commands, c.requests()), (2, 0, 2));
        assert_eq!(c.hist.count(), 0);
    }
}
