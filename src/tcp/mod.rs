//! Stage 3, TCP: a flow table and per-direction reassembly.
//!
//! The tracker is a passive observer: it never rejects a segment, it records what it saw. Each
//! connection has two halves (one per direction, by the side that sent them: side 0 is the
//! sender of the first packet seen). Client and server are roles laid over the sides, decided
//! by the SYN, else the SYN-ACK, else a server greeting (a test the driver gives in [`Config`]:
//! MySQL's), else port numbers — and the basis is kept so a report can say how sure it is.
//!
//! In-order bytes are handed on as borrowed slices of the packet; out-of-order bytes wait in a
//! bounded [`assembler::Assembler`]. A gap (bytes never captured) is reported with its length
//! when the peer acknowledges past it, when the out-of-order buffer is full, when a snap length
//! cut a packet, or when the connection ends with bytes still missing.

pub mod assembler;
pub mod zeek;

use std::collections::{BTreeSet, HashMap};

use crate::common::{At, Endpoint, Side};
use crate::decode::{Segment, Vlans};
use crate::time::Timestamp;
use assembler::{Assembler, Piece};

/// A TCP sequence number; comparisons are modulo 2^32 (RFC 793 §3.3), never raw `u32` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self - other` as a signed distance, correct across wrap-around.
    pub fn diff(self, other: SeqNum) -> i64 {
        i64::from(self.0.wrapping_sub(other.0) as i32)
    }
    /// `self + n`, wrapping.
    pub fn plus(self, n: u64) -> SeqNum {
        SeqNum(self.0.wrapping_add(n as u32))
    }
}

/// How the client and server roles were decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleBasis {
    /// From port numbers (no SYN seen): a guess.
    Port,
    /// From a MySQL server greeting.
    Greeting,
    /// From the SYN-ACK.
    SynAck,
    /// From the SYN.
    Syn,
}

/// What reassembly delivers for one direction, in stream order.
#[derive(Clone, Copy, Debug)]
pub enum StreamEvent<'a> {
    /// The next bytes of the stream.
    Data(&'a [u8]),
    /// This many bytes of the stream were never captured.
    Gap(u64),
    /// The sender's first SYN (from the client) or SYN-ACK (from the server).
    Syn,
    /// The sender's FIN (first copy).
    Fin,
    /// A RST from this side.
    Rst,
}

/// Receives reassembled streams and finished connections.
pub trait StreamSink {
    /// One stream event of `side` of `conn`, observed at `at`.
    fn event(&mut self, _conn: &Connection, _side: Side, _at: At, _ev: StreamEvent<'_>) {}
    /// A connection is finished (closed and lingered, idle-expired, or the capture ended).
    fn close(&mut self, conn: Connection);
}

/// One direction of a connection, named by its sender.
#[derive(Debug, Default)]
pub struct Half {
    /// Initial sequence number, when the SYN (or SYN-ACK) was seen.
    pub isn: Option<SeqNum>,
    /// First SYN (or SYN-ACK) from this side.
    pub syn: Option<At>,
    /// Next expected sequence number, once anything was seen.
    pub next: Option<SeqNum>,
    /// Stream offset that `next` stands for (bytes delivered plus gaps).
    pub offset: u64,
    /// Out-of-order bytes waiting for earlier ones.
    pub asm: Assembler,
    /// Sequence number the FIN occupies.
    pub fin_seq: Option<SeqNum>,
    /// First FIN from this side.
    pub fin: Option<At>,
    /// Payload bytes delivered in order (not counting gaps or retransmissions).
    pub bytes: u64,
    /// Gaps: count and total bytes never captured.
    pub gaps: u64,
    /// Total bytes of all gaps.
    pub gap_bytes: u64,
    /// Segments whose data had all been seen already.
    pub retransmissions: u64,
    /// Segments that arrived ahead of missing bytes.
    pub out_of_order: u64,
    /// Bytes that overlapped earlier copies with different values.
    pub overlap_differs: u64,
    /// Keep-alive probes (one byte or none, one before the next expected byte).
    pub keepalives: u64,
    /// Zero-window probes: one new byte sent while the peer advertised a zero window.
    pub zero_window_probes: u64,
    /// The window this side last advertised (unscaled), once seen.
    pub window: Option<u16>,
    /// Segments sent by this side.
    pub packets: u64,
    /// First and last segment carrying new payload.
    pub first_data: Option<At>,
    /// Last segment carrying new payload.
    pub last_data: Option<At>,
    /// Last segment of any kind from this side.
    pub last_seen: Option<At>,
}

/// At most this many FIN and RST frames are kept per connection as evidence (the rest counted).
pub const MAX_EVIDENCE: usize = 32;

/// One TCP connection as observed.
#[derive(Debug)]
pub struct Connection {
    /// Stable id: order of first packet in the run, from 1.
    pub id: u64,
    /// VLAN tags the connection travelled on (those of its first packet).
    pub vlans: Vlans,
    /// The other tagging of an asymmetrically tagged connection (see
    /// [`Tracker::process`]): one direction tagged, the other not.
    pub vlan_peer: Option<Vlans>,
    /// The endpoints, by [`Side`] (side A sent the first packet seen).
    pub ep: [Endpoint; 2],
    /// Which side is the client.
    pub client: Side,
    /// How that was decided.
    pub role_basis: RoleBasis,
    /// The connection's start was not captured (no SYN).
    pub mid_stream: bool,
    /// First packet.
    pub first: At,
    /// Last packet.
    pub last: At,
    /// The two directions, by sending side.
    pub half: [Half; 2],
    /// Every FIN frame (retransmissions included), with its sending side; capped.
    pub fins: Vec<(Side, At)>,
    /// Every RST frame with its sending side; capped.
    pub rsts: Vec<(Side, At)>,
    /// FIN or RST frames beyond the cap.
    pub evidence_dropped: u64,
    /// When the connection became closed (a RST, or both FINs).
    pub closed_at: Option<Timestamp>,
    /// Finished by the idle timeout rather than a close or the end of the capture.
    pub idle_expired: bool,
    /// Finished early because the flow table was full (the memory budget), not by its close.
    pub evicted: bool,
    /// Bytes carried in RST segments (not part of the stream).
    pub rst_payload: u64,
    /// Zeek's state machine and `history` for this connection.
    pub zeek: zeek::Zeek,
    /// With several capture files ([`Config::vantage_points`]): what each file saw of the
    /// connection, second observations included, in the order the files first saw it (at most
    /// [`MAX_SIGHTINGS`] files).
    pub seen_in: Vec<Sighting>,
}

/// Files recorded per connection at most in [`Connection::seen_in`].
pub const MAX_SIGHTINGS: usize = 16;

/// What one capture file saw of a connection: the same connection seen from two vantage points
/// (two hosts, two interfaces) is one connection with two sightings, each with its own frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sighting {
    /// File index in the run.
    pub file: usize,
    /// Segments of the connection in this file.
    pub packets: u64,
    /// Its first segment in this file.
    pub first: At,
    /// Its last segment in this file.
    pub last: At,
    /// The first FIN this file saw, with its sender.
    pub fin: Option<(Side, At)>,
    /// The first RST this file saw, with its sender.
    pub rst: Option<(Side, At)>,
}

impl Connection {
    /// Records that `seg` (from `side`) was seen in its file.
    fn sight(&mut self, seg: &Segment<'_>, side: Side) {
        let at = at_of(seg);
        let i = match self.seen_in.iter().position(|s| s.file == seg.file) {
            Some(i) => i,
            None if self.seen_in.len() < MAX_SIGHTINGS => {
                self.seen_in.push(Sighting {
                    file: seg.file,
                    packets: 0,
                    first: at,
                    last: at,
                    fin: None,
                    rst: None,
                });
                self.seen_in.len() - 1
            }
            None => return,
        };
        if let Some(s) = self.seen_in.get_mut(i) {
            s.packets += 1;
            s.last = at;
            if seg.flags.fin() && s.fin.is_none() {
                s.fin = Some((side, at));
            }
            if seg.flags.rst() && s.rst.is_none() {
                s.rst = Some((side, at));
            }
        }
    }
}

impl Connection {
    /// The client endpoint.
    pub fn client_ep(&self) -> Endpoint {
        self.ep[self.client]
    }
    /// The server endpoint.
    pub fn server_ep(&self) -> Endpoint {
        self.ep[self.client.other()]
    }
    /// The half sent by the client.
    pub fn client_half(&self) -> &Half {
        &self.half[self.client]
    }
    /// The half sent by the server.
    pub fn server_half(&self) -> &Half {
        &self.half[self.client.other()]
    }
    /// True when `side` is the client.
    pub fn is_client(&self, side: Side) -> bool {
        side == self.client
    }
    /// Nothing but SYNs from the client: no answer, no payload, no close (a SYN flood's
    /// flows). Such flows are counted by destination when evicted, not reported one by one.
    pub fn unanswered(&self) -> bool {
        self.server_half().packets == 0
            && self.client_half().bytes == 0
            && self.client_half().asm.is_empty()
            && self.rsts.is_empty()
            && self.fins.is_empty()
    }
    /// Eviction order when the table is full: unanswered and empty flows first, then closed
    /// ones still lingering, then the rest by how much they carried (a flood of bare logins
    /// goes before a pooled connection that has served queries), and the longest silent first
    /// within each: `(class, log2 of the bytes carried, last packet)`, smallest first.
    fn eviction_key(&self) -> (u8, u8, Timestamp) {
        let bytes = self.half[0].bytes + self.half[1].bytes;
        let empty = bytes == 0 && self.half[0].asm.is_empty() && self.half[1].asm.is_empty();
        let (class, weight) = if empty && self.closed_at.is_none() {
            (0, 0)
        } else if self.closed_at.is_some() {
            (1, 0)
        } else {
            (2, (u64::BITS - bytes.leading_zeros()) as u8)
        };
        (class, weight, self.last.ts)
    }
}

/// Flow-table key: VLANs and the two endpoints in canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    vlans: Vlans,
    lo: Endpoint,
    hi: Endpoint,
}

impl Key {
    fn of(seg: &Segment<'_>) -> Key {
        let (lo, hi) = if seg.src <= seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        Key {
            vlans: seg.vlans,
            lo,
            hi,
        }
    }
}

/// Tracker settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Out-of-order bytes buffered per direction before a gap is declared.
    pub max_buffer: usize,
    /// Connections silent this long are finished (None: never, until the capture ends).
    pub idle_timeout: Option<i64>,
    /// How long a closed connection stays in the table after its last packet, to collect late
    /// ones (ns).
    pub linger: i64,
    /// Connections tracked at once; beyond it the least useful are finished early (evicted).
    pub max_connections: usize,
    /// Out-of-order bytes buffered across all connections (each chunk charged with its
    /// bookkeeping); beyond it the connection adding more declares its missing bytes lost.
    pub max_buffer_total: usize,
    /// Whether a direction's first bytes are a server's greeting, which decides the roles when
    /// no SYN did. The application protocol's test, given by the driver (`analyze::Engine` sets
    /// `mysql::looks_like_greeting`); the default knows no protocol and says no.
    pub server_greeting: fn(&[u8]) -> bool,
    /// Several capture files: record per connection what each file saw of it
    /// ([`Connection::seen_in`]).
    pub vantage_points: bool,
}

/// The default [`Config::server_greeting`]: no payload is taken for a greeting.
fn no_greeting(_: &[u8]) -> bool {
    false
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_buffer: 1 << 20,
            idle_timeout: None,
            linger: 30_000_000_000,
            max_connections: usize::MAX,
            max_buffer_total: usize::MAX,
            server_greeting: no_greeting,
            vantage_points: false,
        }
    }
}

/// Counters over the whole run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// TCP segments processed.
    pub segments: u64,
    /// Connections seen.
    pub connections: u64,
    /// A SYN reused the 4-tuple of a connection still in the table: a new connection.
    pub reused_tuples: u64,
    /// Connections finished by the idle timeout.
    pub idle_expired: u64,
    /// Times the out-of-order buffer overflowed and a gap was declared early.
    pub buffer_overflows: u64,
    /// The peer acknowledged bytes the capture never had.
    pub acked_unseen: u64,
    /// Connections finished early because the flow table was full (reported, marked evicted).
    pub evicted: u64,
    /// Unanswered SYN-only flows dropped from a full table (counted by destination).
    pub half_open_dropped: u64,
    /// Times the run-wide out-of-order budget was full and a gap was declared early.
    pub buffer_budget_overflows: u64,
    /// Connections whose two directions carried different VLAN tagging (one tagged, one
    /// not: a mirror port), joined into one.
    pub asymmetric_vlans: u64,
    /// Segments seen again from another capture file (a second vantage point), not tracked
    /// again: the driver counts them here (absent when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicate_observations: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Destinations of dropped unanswered SYNs kept with their counts (the rest are summed).
pub const MAX_FLOOD_DESTINATIONS: usize = 64;

/// Unanswered SYN-only flows dropped from a full flow table, by destination.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Flood {
    /// (server endpoint, flows), the first [`MAX_FLOOD_DESTINATIONS`] destinations seen.
    pub by_destination: Vec<(Endpoint, u64)>,
    /// Flows to other destinations.
    pub other: u64,
}

impl Flood {
    fn count(&mut self, dst: Endpoint) {
        if let Some(e) = self.by_destination.iter_mut().find(|(d, _)| *d == dst) {
            e.1 += 1;
        } else if self.by_destination.len() < MAX_FLOOD_DESTINATIONS {
            self.by_destination.push((dst, 1));
        } else {
            self.other += 1;
        }
    }
}

/// The flow table.
pub struct Tracker {
    cfg: Config,
    /// Boxed: a free slot of the table costs a pointer, not a whole connection, and growing
    /// the table moves pointers.
    table: HashMap<Key, Box<Connection>, ahash::RandomState>,
    /// The taggings (VLANs) under which each endpoint pair is in the table, for the
    /// asymmetric-tagging rule; in step with `table`.
    tuples: HashMap<(Endpoint, Endpoint), Vec<Vlans>, ahash::RandomState>,
    /// Keys of the other direction of asymmetrically tagged connections, to the table's key.
    aliases: HashMap<Key, Key, ahash::RandomState>,
    open_ids: BTreeSet<u64>,
    next_id: u64,
    last_sweep: Option<Timestamp>,
    /// Out-of-order bytes (with bookkeeping) buffered across the table.
    buffered: usize,
    /// End of capture: the keys still to finish, in descending id order.
    closing: Vec<(u64, Key)>,
    /// Run counters.
    pub stats: Stats,
    /// Unanswered SYN flows dropped from a full table.
    pub flood: Flood,
}

const SWEEP_EVERY_NS: i64 = 1_000_000_000;

impl Tracker {
    /// An empty tracker.
    pub fn new(cfg: Config) -> Self {
        Tracker {
            cfg,
            table: HashMap::default(),
            tuples: HashMap::default(),
            aliases: HashMap::default(),
            open_ids: BTreeSet::new(),
            next_id: 1,
            last_sweep: None,
            buffered: 0,
            closing: Vec::new(),
            stats: Stats::default(),
            flood: Flood::default(),
        }
    }

    /// Connections currently in the table.
    pub fn open_connections(&self) -> usize {
        self.table.len()
    }

    /// No direction joins (VLAN tuples, aliases) are left: a test's view of the private tables.
    #[cfg(test)]
    pub(crate) fn joins_empty(&self) -> bool {
        self.tuples.is_empty() && self.aliases.is_empty()
    }

    /// The first FIN or RST of each connection still in the table, sorted: closes that have
    /// happened on connections not finished yet (the peer has not closed its half, or the
    /// connection lingers). Live streaming holds the incidents they could still join. Walks the
    /// table: call it per tick, not per packet.
    pub fn pending_closes(&self) -> Vec<Timestamp> {
        let mut out: Vec<Timestamp> = self
            .table
            .values()
            .filter_map(|c| {
                let fin = c.fins.first().map(|(_, at)| at.ts);
                let rst = c.rsts.first().map(|(_, at)| at.ts);
                fin.into_iter().chain(rst).min()
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The smallest id still in the table: every connection below it has been handed to
    /// [`StreamSink::close`].
    pub fn oldest_open(&self) -> Option<u64> {
        self.open_ids.first().copied()
    }

    /// The key a segment belongs to: its own, or that of the connection it is the other
    /// direction of under asymmetric VLAN tagging.
    ///
    /// A mirror (SPAN) port often tags one direction of a connection and not the other. The
    /// rule that joins them, which depends only on the order of packets (the same in both
    /// offline passes and live): a segment whose own key is not in the table joins the
    /// connection with the same endpoints when that connection is the only one in the table
    /// with those endpoints, exactly one of the two is tagged, it has not been joined yet,
    /// and it has seen no packet in this segment's direction (else this would be a copy of the
    /// same direction on another VLAN: another flow). The same 5-tuple tagged differently in
    /// both directions, or seen on two VLANs, stays separate connections.
    fn resolve(&mut self, seg: &Segment<'_>) -> Key {
        let key = Key::of(seg);
        if self.table.contains_key(&key) {
            return key;
        }
        if let Some(k) = self.aliases.get(&key) {
            return *k;
        }
        let Some(&[other]) = self.tuples.get(&(key.lo, key.hi)).map(Vec::as_slice) else {
            return key;
        };
        if other.is_empty() == key.vlans.is_empty() {
            return key;
        }
        let target = Key {
            vlans: other,
            ..key
        };
        let Some(c) = self.table.get_mut(&target) else {
            return key;
        };
        let side = Side::b_if(c.ep[Side::A] != seg.src);
        if c.vlan_peer.is_some() || c.half[side].packets != 0 {
            return key;
        }
        c.vlan_peer = Some(key.vlans);
        self.aliases.insert(key, target);
        self.stats.asymmetric_vlans += 1;
        target
    }

    /// A segment already seen from another file (a second vantage point): recorded in its
    /// connection's [`Connection::seen_in`], not processed again.
    pub fn seen_again(&mut self, seg: &Segment<'_>) {
        let key = Key::of(seg);
        let key = self.aliases.get(&key).copied().unwrap_or(key);
        if let Some(c) = self.table.get_mut(&key) {
            let side = Side::b_if(c.ep[Side::A] != seg.src);
            c.sight(seg, side);
        }
    }

    /// Feeds one segment.
    pub fn process(&mut self, seg: &Segment<'_>, sink: &mut impl StreamSink) {
        self.stats.segments += 1;
        self.maybe_sweep(seg.ts, sink);
        let mut key = self.resolve(seg);
        if seg.flags.syn() && !seg.flags.ack() {
            let reuse = self.table.get(&key).is_some_and(|c| {
                let side = Side::b_if(c.ep[Side::A] != seg.src);
                let h = &c.half[side];
                !(c.client == side && h.syn.is_some() && h.isn == Some(SeqNum(seg.seq)))
            });
            if reuse {
                self.stats.reused_tuples += 1;
                if let Some(old) = self.table.remove(&key) {
                    self.finish(*old, sink);
                }
                // The new connection goes under its own tagging.
                key = self.resolve(seg);
            }
        }
        if self.table.len() >= self.cfg.max_connections.max(1) && !self.table.contains_key(&key) {
            self.evict(sink);
        }
        let conn = match self.table.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let id = self.next_id;
                self.next_id += 1;
                self.stats.connections += 1;
                self.open_ids.insert(id);
                self.tuples
                    .entry((key.lo, key.hi))
                    .or_default()
                    .push(key.vlans);
                e.insert(Box::new(Connection::new(id, seg)))
            }
        };
        let side = Side::b_if(conn.ep[Side::A] != seg.src);
        if self.cfg.vantage_points {
            conn.sight(seg, side);
        }
        let before = conn.buffered();
        let mut overflowed = conn.handle(seg, side, &self.cfg, &mut self.stats, sink);
        let mut after = conn.buffered();
        if after > before && self.buffered + after - before > self.cfg.max_buffer_total {
            // The run-wide budget is full: this connection gives up what it waits for.
            for s in Side::BOTH {
                conn.flush(s, sink);
            }
            after = conn.buffered();
            self.stats.buffer_budget_overflows += 1;
            overflowed = true;
        }
        self.buffered = (self.buffered + after).saturating_sub(before);
        if overflowed {
            self.stats.buffer_overflows += 1;
        }
    }

    /// The table is full: finishes the least useful eighth of it (unanswered and empty flows
    /// first, then lingering closed ones, then the longest silent), so that the work per new
    /// connection stays constant on average.
    fn evict(&mut self, sink: &mut impl StreamSink) {
        let mut order: Vec<((u8, u8, Timestamp), Key)> = self
            .table
            .iter()
            .map(|(k, c)| (c.eviction_key(), *k))
            .collect();
        let n = (order.len() / 8).max(1).min(order.len());
        if n < order.len() {
            order.select_nth_unstable_by_key(n, |(key, _)| *key);
        }
        order.truncate(n);
        order.sort_unstable_by_key(|(key, _)| *key);
        for (_, k) in order {
            let Some(mut c) = self.table.remove(&k) else {
                continue;
            };
            c.evicted = true;
            if c.unanswered() {
                self.stats.half_open_dropped += 1;
                self.flood.count(c.server_ep());
            } else {
                self.stats.evicted += 1;
            }
            self.finish(*c, sink);
        }
    }

    /// Finishes every connection still in the table (end of capture), in id order.
    pub fn finish_all(&mut self, sink: &mut impl StreamSink) {
        while self.finish_first(sink) {}
    }

    /// Finishes the connection with the smallest id (end of capture, one at a time so that a
    /// driver can release each report before the next); false when the table is empty.
    pub fn finish_first(&mut self, sink: &mut impl StreamSink) -> bool {
        if self.closing.is_empty() {
            // Keys in descending id order, popped from the end: small next to the connections.
            let mut keys: Vec<(u64, Key)> = self.table.iter().map(|(k, c)| (c.id, *k)).collect();
            keys.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
            self.closing = keys;
        }
        while let Some((_, k)) = self.closing.pop() {
            if let Some(c) = self.table.remove(&k) {
                self.finish(*c, sink);
                return true;
            }
        }
        false
    }

    fn maybe_sweep(&mut self, now: Timestamp, sink: &mut impl StreamSink) {
        let Some(last) = self.last_sweep else {
            self.last_sweep = Some(now);
            return;
        };
        // Either direction: a bogus far-future timestamp must not stop sweeps for good.
        if now.nanos_since(last).abs() < SWEEP_EVERY_NS {
            return;
        }
        self.expire(now, sink);
    }

    /// Finishes connections that lingered long enough after their close, or were idle past
    /// the idle timeout, as of `now` (capture time). Packets trigger this once a second; a
    /// live capture also calls it on a timer, for when no packets come.
    pub fn expire(&mut self, now: Timestamp, sink: &mut impl StreamSink) {
        self.last_sweep = Some(now);
        let cfg = self.cfg;
        let mut done: Vec<Key> = Vec::new();
        for (k, c) in &self.table {
            // Quiet for the linger since its last packet, once closed: a half-closed connection
            // whose other side still talks is not cut off.
            let lingered = c.closed_at.is_some() && now.nanos_since(c.last.ts) >= cfg.linger;
            let idle = cfg
                .idle_timeout
                .is_some_and(|t| now.nanos_since(c.last.ts) >= t);
            if lingered || idle {
                done.push(*k);
            }
        }
        let mut finished: Vec<Box<Connection>> =
            done.iter().filter_map(|k| self.table.remove(k)).collect();
        finished.sort_by_key(|c| c.id);
        for mut c in finished {
            if c.closed_at.is_none() {
                c.idle_expired = true;
                self.stats.idle_expired += 1;
            }
            self.finish(*c, sink);
        }
    }

    fn finish(&mut self, mut conn: Connection, sink: &mut impl StreamSink) {
        self.buffered = self.buffered.saturating_sub(conn.buffered());
        let (lo, hi) = if conn.ep[0] <= conn.ep[1] {
            (conn.ep[0], conn.ep[1])
        } else {
            (conn.ep[1], conn.ep[0])
        };
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.tuples.entry((lo, hi)) {
            let list = e.get_mut();
            if let Some(i) = list.iter().position(|v| *v == conn.vlans) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                e.remove();
            }
        }
        if let Some(v) = conn.vlan_peer {
            self.aliases.remove(&Key { vlans: v, lo, hi });
        }
        for side in Side::BOTH {
            conn.flush(side, sink);
        }
        self.open_ids.remove(&conn.id);
        sink.close(conn);
    }
}

/// Well-known server ports, used only when no SYN says who connected to whom.
const SERVER_PORTS: &[u16] = &[
    3306, 3307, 4567, 6032, 6033, 33060, 443, 80, 8080, 5432, 6379,
];

fn server_side_by_port(p0: u16, p1: u16) -> Side {
    let known = |p| SERVER_PORTS.contains(&p);
    match (known(p0), known(p1)) {
        (true, false) => return Side::A,
        (false, true) => return Side::B,
        _ => {}
    }
    if p0 < 1024 && p1 >= 1024 {
        Side::A
    } else if p1 < 1024 && p0 >= 1024 {
        Side::B
    } else if p0 <= p1 {
        Side::A
    } else {
        Side::B
    }
}

impl Connection {
    fn new(id: u64, seg: &Segment<'_>) -> Connection {
        let at = at_of(seg);
        let (client, role_basis) = if seg.flags.syn() && !seg.flags.ack() {
            (Side::A, RoleBasis::Syn)
        } else if seg.flags.syn() {
            (Side::B, RoleBasis::SynAck)
        } else {
            (
                server_side_by_port(seg.src.port, seg.dst.port).other(),
                RoleBasis::Port,
            )
        };
        Connection {
            id,
            vlans: seg.vlans,
            vlan_peer: None,
            ep: [seg.src, seg.dst],
            client,
            role_basis,
            mid_stream: !seg.flags.syn(),
            first: at,
            last: at,
            half: [Half::default(), Half::default()],
            fins: Vec::new(),
            rsts: Vec::new(),
            evidence_dropped: 0,
            closed_at: None,
            idle_expired: false,
            evicted: false,
            rst_payload: 0,
            zeek: zeek::Zeek::new(seg),
            seen_in: Vec::new(),
        }
    }

    /// Out-of-order bytes held, with their bookkeeping.
    fn buffered(&self) -> usize {
        self.half[0].asm.cost() + self.half[1].asm.cost()
    }

    fn mark_closed(&mut self, ts: Timestamp) {
        if self.closed_at.is_none() {
            self.closed_at = Some(ts);
        }
    }

    fn push_evidence(list: &mut Vec<(Side, At)>, dropped: &mut u64, side: Side, at: At) {
        if list.len() < MAX_EVIDENCE {
            list.push((side, at));
        } else {
            *dropped += 1;
        }
    }

    /// Applies one segment from `side`; returns true if the out-of-order buffer overflowed.
    fn handle(
        &mut self,
        seg: &Segment<'_>,
        side: Side,
        cfg: &Config,
        stats: &mut Stats,
        sink: &mut impl StreamSink,
    ) -> bool {
        let other = side.other();
        let at = at_of(seg);
        self.last = at;
        self.zeek.packet(seg, side);
        // The peer's last advertised window, before this segment can change ours.
        let peer_window = self.half[other].window;
        {
            let h = &mut self.half[side];
            h.packets += 1;
            h.last_seen = Some(at);
            if !seg.flags.rst() {
                h.window = Some(seg.window);
            }
        }
        let flags = seg.flags;
        if flags.rst() {
            Self::push_evidence(&mut self.rsts, &mut self.evidence_dropped, side, at);
            self.rst_payload += seg.payload.len() as u64 + u64::from(seg.missing);
            self.mark_closed(seg.ts);
            sink.event(self, side, at, StreamEvent::Rst);
            return false;
        }
        if flags.syn() {
            let h = &mut self.half[side];
            let first_syn = h.syn.is_none();
            if first_syn {
                h.syn = Some(at);
            }
            let fresh = h.bytes == 0 && h.gap_bytes == 0 && h.asm.is_empty();
            if h.isn.is_none() || fresh {
                h.isn = Some(SeqNum(seg.seq));
                h.next = Some(SeqNum(seg.seq).plus(1));
                h.offset = 0;
            }
            if !flags.ack() {
                if self.role_basis < RoleBasis::Syn {
                    self.client = side;
                    self.role_basis = RoleBasis::Syn;
                }
            } else if self.role_basis < RoleBasis::SynAck {
                self.client = other;
                self.role_basis = RoleBasis::SynAck;
            }
            if first_syn {
                sink.event(self, side, at, StreamEvent::Syn);
            }
        }
        if flags.ack() {
            self.check_ack(other, SeqNum(seg.ack), at, stats, sink);
        }
        let data_seq = SeqNum(seg.seq).plus(u64::from(flags.syn()));
        let len = seg.payload.len() as u64 + u64::from(seg.missing);
        let mut overflowed = false;
        if len > 0 {
            let h = &mut self.half[side];
            if len == 1 && peer_window == Some(0) && h.next == Some(data_seq) {
                h.zero_window_probes += 1;
            }
            overflowed = self.data(side, data_seq, seg.payload, seg.missing, at, cfg, sink);
        }
        if flags.fin() {
            Self::push_evidence(&mut self.fins, &mut self.evidence_dropped, side, at);
            let h = &mut self.half[side];
            if h.next.is_none() {
                h.next = Some(data_seq);
            }
            if h.fin.is_none() {
                h.fin = Some(at);
                h.fin_seq = Some(data_seq.plus(len));
                sink.event(self, side, at, StreamEvent::Fin);
            }
            if self.half[other].fin.is_some() {
                self.mark_closed(seg.ts);
            }
        }
        overflowed
    }

    /// The peer acknowledged up to `ack` of `side`'s stream: bytes before it that the capture
    /// never had are a gap.
    fn check_ack(
        &mut self,
        side: Side,
        ack: SeqNum,
        at: At,
        stats: &mut Stats,
        sink: &mut impl StreamSink,
    ) {
        let h = &self.half[side];
        let Some(next) = h.next else { return };
        // The FIN occupies one sequence number after the data: an ACK of it covers no data byte.
        let upto = match h.fin_seq {
            Some(fin) if ack.diff(fin) > 0 => fin,
            _ => ack,
        };
        let ahead = upto.diff(next);
        // Bounded so that a garbage ACK field cannot open a 1 GiB hole.
        if ahead <= 0 || ahead > (1 << 30) {
            return;
        }
        stats.acked_unseen += 1;
        let target = h.offset + ahead as u64;
        self.advance_to(side, target, at, sink);
    }

    /// New payload (`data` then `missing` uncaptured bytes) at `seq` from `side`.
    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        side: Side,
        seq: SeqNum,
        data: &[u8],
        missing: u32,
        at: At,
        cfg: &Config,
        sink: &mut impl StreamSink,
    ) -> bool {
        let len = data.len() as u64 + u64::from(missing);
        let h = &mut self.half[side];
        let next = *h.next.get_or_insert(seq);
        let rel = seq.diff(next);
        let end = rel + len as i64;
        if end <= 0 {
            if len <= 1 && rel == -1 {
                h.keepalives += 1;
            } else {
                h.retransmissions += 1;
            }
            return false;
        }
        if h.first_data.is_none() {
            h.first_data = Some(at);
        }
        h.last_data = Some(at);
        if rel > 0 {
            h.out_of_order += 1;
            let off = h.offset + rel as u64;
            let mut ins = h.asm.insert(off, Piece::Data(data.to_vec()), at);
            if missing > 0 {
                let r = h
                    .asm
                    .insert(off + data.len() as u64, Piece::Hole(u64::from(missing)), at);
                ins.duplicate += r.duplicate;
            }
            if ins.duplicate > 0 {
                h.retransmissions += 1;
            }
            h.overlap_differs += ins.differing;
            if h.asm.cost() > cfg.max_buffer {
                // Declare the bytes before the first buffered chunk lost and move on.
                if let Some(first) = h.asm.first_offset() {
                    self.advance_to(side, first, at, sink);
                }
                return true;
            }
            return false;
        }
        // In order, possibly overlapping what was already delivered.
        let skip = (-rel) as u64;
        if skip > 0 {
            h.retransmissions += 1;
        }
        let fresh = data
            .get(skip.min(data.len() as u64) as usize..)
            .unwrap_or(&[]);
        let hole = len - skip - fresh.len() as u64;
        h.next = Some(next.plus(skip + fresh.len() as u64 + hole));
        h.offset += fresh.len() as u64 + hole;
        h.bytes += fresh.len() as u64;
        if hole > 0 {
            h.gaps += 1;
            h.gap_bytes += hole;
        }
        if !fresh.is_empty() {
            self.learn_role(side, fresh, cfg.server_greeting);
            sink.event(self, side, at, StreamEvent::Data(fresh));
        }
        if hole > 0 {
            sink.event(self, side, at, StreamEvent::Gap(hole));
        }
        self.drain(side, sink);
        false
    }

    /// A server greeting (MySQL's, by the driver's test) decides the roles when no SYN did.
    fn learn_role(&mut self, side: Side, first_bytes: &[u8], is_greeting: fn(&[u8]) -> bool) {
        if self.role_basis < RoleBasis::Greeting
            && self.half[side].bytes == first_bytes.len() as u64
            && is_greeting(first_bytes)
        {
            self.client = side.other();
            self.role_basis = RoleBasis::Greeting;
        }
    }

    /// Delivers buffered chunks that now continue the stream.
    fn drain(&mut self, side: Side, sink: &mut impl StreamSink) {
        loop {
            let h = &mut self.half[side];
            let mut dropped = 0;
            let Some(chunk) = h.asm.pop_at(h.offset, &mut dropped) else {
                return;
            };
            let n = match &chunk.piece {
                Piece::Data(d) => d.len() as u64,
                Piece::Hole(n) => *n,
            };
            h.offset += n;
            h.next = h.next.map(|s| s.plus(n));
            match &chunk.piece {
                Piece::Data(d) => {
                    h.bytes += n;
                    sink.event(self, side, chunk.at, StreamEvent::Data(d));
                }
                Piece::Hole(n) => {
                    h.gaps += 1;
                    h.gap_bytes += n;
                    sink.event(self, side, chunk.at, StreamEvent::Gap(*n));
                }
            }
        }
    }

    /// Moves `side`'s stream forward to `target`, reporting never-captured stretches as gaps
    /// and delivering buffered chunks on the way.
    fn advance_to(&mut self, side: Side, target: u64, at: At, sink: &mut impl StreamSink) {
        loop {
            self.drain(side, sink);
            let h = &mut self.half[side];
            if h.offset >= target {
                return;
            }
            let stop = h.asm.first_offset().map_or(target, |f| f.min(target));
            let gap = stop.saturating_sub(h.offset);
            if gap == 0 {
                return;
            }
            h.offset += gap;
            h.next = h.next.map(|s| s.plus(gap));
            h.gaps += 1;
            h.gap_bytes += gap;
            sink.event(self, side, at, StreamEvent::Gap(gap));
        }
    }

    /// End of the connection: whatever is still buffered is delivered, with gaps before it.
    fn flush(&mut self, side: Side, sink: &mut impl StreamSink) {
        loop {
            self.drain(side, sink);
            let h = &self.half[side];
            let Some(first) = h.asm.first_offset() else {
                return;
            };
            let at = h.last_seen.unwrap_or(self.last);
            self.advance_to(side, first, at, sink);
        }
    }
}

fn at_of(seg: &Segment<'_>) -> At {
    At {
        ts: seg.ts,
        frame: seg.frame_no,
        file: seg.file,
    }
}
