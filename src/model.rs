//! The connection model handed to reports: a finished TCP connection summarised with roles,
//! counts, and the record of how it closed, every fact with the frame that shows it.

pub mod diagnosis;

use serde::Serialize;

use crate::common::{At, Endpoint, Side};
use crate::dissect::{AppFacts, Carries};
use crate::event::{
    alert_level_name, alert_name, cipher_name, tls_version_name, Detail, Dir, Event,
};
use crate::mysql;
use crate::tcp::{Connection, RoleBasis};
use crate::time::Timestamp;
use diagnosis::{Confidence, Cut, Leg, Relay, Verdict};

/// The role of an endpoint in a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The side that connected (sent the SYN).
    Client,
    /// The side that accepted.
    Server,
    /// The proxy: the server of a frontend connection or the client of a backend one (verdicts
    /// only).
    Proxy,
}

impl Role {
    /// `client` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Proxy => "proxy",
        }
    }
}

/// Where a fact was seen: frame, file, absolute and relative time.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    /// Frame number within its file (1-based, as tshark counts).
    pub frame: u64,
    /// File index in the run; omitted for the first file.
    #[serde(skip_serializing_if = "is_zero")]
    pub file: usize,
    /// RFC 3339 timestamp with nanoseconds.
    #[serde(serialize_with = "ser_ts")]
    pub ts: Timestamp,
    /// Seconds since the start of the capture.
    pub t: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn ser_ts<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&ts.rfc3339())
}

impl Point {
    /// Capture order, as [`At::capture_order`].
    pub fn capture_order(&self, other: &Point) -> std::cmp::Ordering {
        let at = |p: &Point| At {
            ts: p.ts,
            frame: p.frame,
            file: p.file,
        };
        at(self).capture_order(&at(other))
    }

    /// `at`, with its time relative to `origin`.
    pub fn of(at: At, origin: Timestamp) -> Point {
        Point {
            frame: at.frame,
            file: at.file,
            ts: at.ts,
            t: at.ts.secs_since(origin),
        }
    }
}

/// A packet that is evidence, with who sent it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Mark {
    /// Role of the sender.
    pub by: Role,
    /// Address of the sender.
    #[serde(serialize_with = "ser_display")]
    pub from: Endpoint,
    /// Where it was seen.
    #[serde(flatten)]
    pub at: Point,
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// How a connection ended, at the TCP level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseKind {
    /// One side's FIN, answered by the other's FIN; no RST.
    Fin,
    /// A FIN first, then RST(s).
    FinRst,
    /// A RST with no FIN before it.
    Rst,
    /// The SYN was answered by a RST: nothing listened.
    Refused,
    /// One FIN, never answered, no RST by the end of the capture.
    HalfClose,
    /// Neither FIN nor RST: still open when the capture ended (or idle-expired).
    Open,
}

impl CloseKind {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseKind::Fin => "fin",
            CloseKind::FinRst => "fin_rst",
            CloseKind::Rst => "rst",
            CloseKind::Refused => "refused",
            CloseKind::HalfClose => "half_close",
            CloseKind::Open => "open",
        }
    }
}

/// Who started the teardown and how it went.
#[derive(Clone, Debug, Serialize)]
pub struct Close {
    /// How it ended.
    pub how: CloseKind,
    /// Role of the endpoint that sent the first FIN or RST.
    pub closed_by: Option<Role>,
    /// The first FIN or RST of the connection.
    pub at: Option<Mark>,
    /// The first FIN.
    pub first_fin: Option<Mark>,
    /// The other side's first FIN, if it answered.
    pub peer_fin: Option<Mark>,
    /// The first RST.
    pub first_rst: Option<Mark>,
    /// RSTs sent by each role.
    pub rsts: Dirs<u64>,
    /// Seconds from the first FIN to the peer's FIN (the half-close).
    pub half_close_s: Option<f64>,
    /// No FIN or RST from one side or both by the end.
    pub still_open: bool,
    /// Finished by the idle timeout.
    pub idle_expired: bool,
    /// Finished early because the flow table was full (the memory budget): later packets of
    /// this connection, if any, were tracked as a new connection.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub evicted: bool,
}

/// A value per direction: `c2s` is what the client sent, `s2c` what the server sent.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Dirs<T> {
    /// Client to server.
    pub c2s: T,
    /// Server to client.
    pub s2c: T,
}

/// Gap count and bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Gaps {
    /// Number of gaps.
    pub count: u64,
    /// Bytes never captured.
    pub bytes: u64,
}

/// A finished connection as reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Stable id (order of first packet).
    pub id: u64,
    /// VLAN tags, if any (`vlan 42`, `vlan 10/20`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<String>,
    /// Only one direction carried those tags, the other none (a mirror port's asymmetric
    /// tagging, joined by the tracker).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub vlan_one_way: bool,
    /// Client address.
    #[serde(serialize_with = "ser_display")]
    pub client: Endpoint,
    /// Server address.
    #[serde(serialize_with = "ser_display")]
    pub server: Endpoint,
    /// The client's address alone, for joins (`client` is `ip:port`).
    pub client_ip: std::net::IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The server's address alone.
    pub server_ip: std::net::IpAddr,
    /// The server's port.
    pub server_port: u16,
    /// Community ID v1 of the flow (seed 0), as Zeek, Suricata and Wireshark compute it.
    pub community_id: String,
    /// Zeek's `conn_state` (`SF`, `S0`, `REJ`, `RSTO`, …) as of the end of the capture.
    pub conn_state: &'static str,
    /// Zeek's `history` letters (upper case: Zeek's originator, see `history_orig`).
    pub history: String,
    /// Which role Zeek would call the originator: `client`, or `server` when our roles were
    /// decided by later evidence than Zeek's first-packet rule.
    pub history_orig: Role,
    /// How the roles were decided.
    pub role_basis: RoleBasis,
    /// The start was not captured.
    pub mid_stream: bool,
    /// First packet.
    pub start: Point,
    /// Last packet.
    pub end: Point,
    /// Seconds from first to last packet.
    pub duration_s: f64,
    /// Packets each way.
    pub packets: Dirs<u64>,
    /// Payload bytes each way (in order, without retransmissions).
    pub bytes: Dirs<u64>,
    /// Bytes the capture missed each way.
    pub gaps: Dirs<Gaps>,
    /// Retransmitted segments each way.
    pub retransmissions: Dirs<u64>,
    /// Out-of-order segments each way.
    pub out_of_order: Dirs<u64>,
    /// Overlapping bytes whose values differed from the first copy.
    pub overlap_differs: u64,
    /// Keep-alive probes each way.
    pub keepalives: Dirs<u64>,
    /// Zero-window probes each way.
    pub zero_window_probes: Dirs<u64>,
    /// The SYN.
    pub syn: Option<Point>,
    /// The SYN-ACK.
    pub syn_ack: Option<Point>,
    /// Last segment carrying new data each way.
    pub last_data: Dirs<Option<Point>>,
    /// The close record.
    pub close: Close,
    /// Every FIN (retransmissions too), in capture order.
    pub fins: Vec<Mark>,
    /// Every RST, in capture order.
    pub rsts: Vec<Mark>,
    /// With several capture files: what each file saw of the connection (one entry per
    /// vantage point that saw it), each with its own frames. Absent with one file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seen_in: Vec<Sighting>,
    /// What the connection carried, judged by content.
    pub carries: Carries,
    /// MySQL facts, when it carried MySQL.
    pub mysql: Option<mysql::Facts>,
    /// TLS facts, when TLS was seen.
    pub tls: Option<TlsSummary>,
    /// The first and last events (see `events_dropped`).
    pub events: Vec<EventOut>,
    /// Events between the first and last kept ones, counted only.
    pub events_dropped: u64,
    /// The protocol state when the teardown started (what the verdict reads).
    pub teardown: crate::dissect::teardown::Teardown,
    /// The leg around a proxy.
    pub leg: Leg,
    /// How the leg was decided.
    pub leg_basis: String,
    /// How sure the leg is (null when no proxy is involved).
    pub leg_confidence: Option<Confidence>,
    /// Connections on the other leg that carried this one's requests (or whose requests this
    /// one carried), with the number of requests paired: `[id, requests]`.
    pub relayed: Vec<(u64, u32)>,
    /// Per request, the request(s) on the other leg it was relayed as: the first and the last
    /// `--events` of them (a pooled connection carries millions).
    pub relays: Vec<Relay>,
    /// A backend the proxy closed while a frontend request it relayed was unanswered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
    /// The verdict on the close.
    pub verdict: Option<Verdict>,
    /// The capture's start (times are relative to it).
    #[serde(skip)]
    pub origin: Timestamp,
}

/// What one capture file saw of a connection (see [`crate::tcp::Sighting`]).
#[derive(Clone, Debug, Serialize)]
pub struct Sighting {
    /// File index in the run (0 for the first).
    pub file: usize,
    /// Segments of the connection in this file, second observations included.
    pub packets: u64,
    /// Its first segment there.
    pub first: Point,
    /// Its last segment there.
    pub last: Point,
    /// The first FIN this file saw.
    pub fin: Option<Mark>,
    /// The first RST this file saw.
    pub rst: Option<Mark>,
}

/// TLS facts by role.
#[derive(Clone, Debug, Serialize)]
pub struct TlsSummary {
    /// Negotiated version, e.g. `TLS 1.3`.
    pub version: Option<String>,
    /// Negotiated cipher suite number, e.g. `0x1302`.
    pub cipher: Option<String>,
    /// Its IANA name.
    pub cipher_name: Option<String>,
    /// Versions the client offered.
    pub offered_versions: Vec<String>,
    /// Server name (SNI).
    pub sni: Option<String>,
    /// ALPN protocols the client offered.
    pub alpn: Vec<String>,
    /// A HelloRetryRequest happened.
    pub hello_retry: bool,
    /// The server certificate's subject (visible in TLS ≤ 1.2).
    pub certificate_subject: Option<String>,
    /// The handshake was captured from its ClientHello.
    pub handshake_seen: bool,
    /// Plaintext (or decrypted) alerts.
    pub alerts: Vec<AlertOut>,
    /// With a key log: `keys` (decrypted), `no keys` (not in the log), `unsupported cipher`.
    pub decryption: Option<&'static str>,
    /// Records decrypted each way.
    pub decrypted: Dirs<u64>,
    /// Records each way.
    pub records: Dirs<crate::tls::Records>,
}

/// A plaintext TLS alert.
#[derive(Clone, Debug, Serialize)]
pub struct AlertOut {
    /// Who sent it.
    pub by: Role,
    /// `warning` or `fatal`.
    pub level: &'static str,
    /// Description, e.g. `close_notify`.
    pub description: &'static str,
}

/// An event as reports show it: where, which way, and what.
#[derive(Clone, Debug)]
pub struct EventOut {
    /// Where.
    pub at: Point,
    /// Sent by the client (`c2s`) or the server (`s2c`).
    pub dir: Dir,
    /// Sender address.
    pub from: Endpoint,
    /// Receiver address.
    pub to: Endpoint,
    /// The event.
    pub event: Event,
    /// A request: the request(s) on the other leg of a proxy it was relayed as (or relays):
    /// `(connection, frame)`.
    pub relayed_as: Vec<(u64, u64)>,
}

impl EventOut {
    /// An event of connection `c`, times relative to `origin`.
    pub fn of(c: &Connection, e: &Event, origin: Timestamp) -> EventOut {
        EventOut {
            relayed_as: Vec::new(),
            at: Point::of(e.at, origin),
            dir: Dir::from_client(c.is_client(e.side)),
            from: c.ep[e.side],
            to: c.ep[e.side.other()],
            event: e.clone(),
        }
    }
}

/// One line of the JSON Lines event stream (DESIGN's output contract): an event with its
/// connection id and leg.
#[derive(Clone, Debug)]
pub struct EventLine {
    /// Connection id.
    pub conn: u64,
    /// Leg of the connection (as known when the event was written).
    pub leg: Leg,
    /// The event.
    pub event: EventOut,
}

impl Serialize for EventLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.event.serialize_with(s, Some((self.conn, self.leg)))
    }
}

impl Serialize for EventOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize_with(s, None)
    }
}

impl EventOut {
    fn serialize_with<S: serde::Serializer>(
        &self,
        s: S,
        conn: Option<(u64, Leg)>,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("ts", &self.at.ts.rfc3339().to_string())?;
        m.serialize_entry("t", &self.at.t)?;
        m.serialize_entry("frame", &self.at.frame)?;
        if self.at.file != 0 {
            m.serialize_entry("file", &self.at.file)?;
        }
        if let Some((conn, leg)) = conn {
            m.serialize_entry("conn", &conn)?;
            m.serialize_entry("leg", &leg)?;
        }
        m.serialize_entry("dir", &self.dir)?;
        m.serialize_entry("from", &self.from.to_string())?;
        m.serialize_entry("to", &self.to.to_string())?;
        m.serialize_entry("layer", &self.event.kind.layer())?;
        m.serialize_entry("kind", &self.event.kind.name())?;
        m.serialize_entry(
            "detail",
            &Detail {
                kind: &self.event.kind,
                relayed_as: &self.relayed_as,
            },
        )?;
        m.end()
    }
}

/// Capture order of two evidence points: frame order within a file, time across files.
fn before(a: At, b: At) -> bool {
    a.capture_order(&b).is_lt()
}

impl Summary {
    /// Summarises `c` with its protocol facts; `origin` is the capture's start.
    pub fn of(c: &Connection, origin: Timestamp, app: AppFacts) -> Summary {
        let role = |side: Side| {
            if c.is_client(side) {
                Role::Client
            } else {
                Role::Server
            }
        };
        let mark = |(side, at): (Side, At)| Mark {
            by: role(side),
            from: c.ep[side],
            at: Point::of(at, origin),
        };
        let pt = |at: At| Point::of(at, origin);
        let (ch, sh) = (c.client_half(), c.server_half());
        let dirs = |f: &dyn Fn(&crate::tcp::Half) -> u64| Dirs {
            c2s: f(ch),
            s2c: f(sh),
        };

        let first_fin = c.fins.first().copied();
        let first_rst = c.rsts.first().copied();
        let peer_fin =
            first_fin.and_then(|(side, _)| c.fins.iter().find(|(s, _)| *s != side).copied());
        let teardown = match (first_fin, first_rst) {
            (Some(f), Some(r)) => Some(if before(r.1, f.1) { r } else { f }),
            (f, r) => f.or(r),
        };
        let syn_ack = c.server_half().syn;
        let how = match (first_fin, first_rst) {
            (None, None) => CloseKind::Open,
            (Some(f), Some(r)) if before(f.1, r.1) => CloseKind::FinRst,
            (_, Some((side, _)))
                if !c.is_client(side)
                    && c.client_half().syn.is_some()
                    && syn_ack.is_none()
                    && c.client_half().bytes == 0 =>
            {
                CloseKind::Refused
            }
            (_, Some(_)) => CloseKind::Rst,
            (Some(_), None) if peer_fin.is_some() => CloseKind::Fin,
            (Some(_), None) => CloseKind::HalfClose,
        };
        let close = Close {
            how,
            closed_by: teardown.map(|(side, _)| role(side)),
            at: teardown.map(mark),
            first_fin: first_fin.map(mark),
            peer_fin: peer_fin.map(mark),
            first_rst: first_rst.map(mark),
            rsts: Dirs {
                c2s: c.rsts.iter().filter(|(s, _)| c.is_client(*s)).count() as u64,
                s2c: c.rsts.iter().filter(|(s, _)| !c.is_client(*s)).count() as u64,
            },
            half_close_s: match (first_fin, peer_fin) {
                (Some((_, a)), Some((_, b))) => Some(b.ts.secs_since(a.ts)),
                _ => None,
            },
            still_open: matches!(how, CloseKind::Open | CloseKind::HalfClose),
            idle_expired: c.idle_expired,
            evicted: c.evicted,
        };
        Summary {
            id: c.id,
            vlan: (!c.vlans.is_empty())
                .then(|| c.vlans.to_string())
                .or_else(|| c.vlan_peer.map(|v| v.to_string())),
            vlan_one_way: c.vlan_peer.is_some(),
            client: c.client_ep(),
            server: c.server_ep(),
            client_ip: c.client_ep().ip,
            client_port: c.client_ep().port,
            server_ip: c.server_ep().ip,
            server_port: c.server_ep().port,
            community_id: crate::community_id::tcp(c.client_ep(), c.server_ep(), 0),
            conn_state: c
                .zeek
                .conn_state([c.half[Side::A].bytes, c.half[Side::B].bytes]),
            history: c.zeek.history().to_string(),
            history_orig: role(c.zeek.orig_side()),
            role_basis: c.role_basis,
            mid_stream: c.mid_stream,
            start: pt(c.first),
            end: pt(c.last),
            duration_s: c.last.ts.secs_since(c.first.ts),
            packets: dirs(&|h| h.packets),
            bytes: dirs(&|h| h.bytes),
            gaps: Dirs {
                c2s: Gaps {
                    count: ch.gaps,
                    bytes: ch.gap_bytes,
                },
                s2c: Gaps {
                    count: sh.gaps,
                    bytes: sh.gap_bytes,
                },
            },
            retransmissions: dirs(&|h| h.retransmissions),
            out_of_order: dirs(&|h| h.out_of_order),
            overlap_differs: ch.overlap_differs + sh.overlap_differs,
            keepalives: dirs(&|h| h.keepalives),
            zero_window_probes: dirs(&|h| h.zero_window_probes),
            syn: c.client_half().syn.map(pt),
            syn_ack: syn_ack.map(pt),
            last_data: Dirs {
                c2s: ch.last_data.map(pt),
                s2c: sh.last_data.map(pt),
            },
            close,
            fins: c.fins.iter().copied().map(mark).collect(),
            rsts: c.rsts.iter().copied().map(mark).collect(),
            seen_in: c
                .seen_in
                .iter()
                .map(|v| Sighting {
                    file: v.file,
                    packets: v.packets,
                    first: pt(v.first),
                    last: pt(v.last),
                    fin: v.fin.map(mark),
                    rst: v.rst.map(mark),
                })
                .collect(),
            carries: app.carries.unwrap_or(Carries::Unknown),
            mysql: app.mysql,
            tls: app.tls.map(|t| {
                let by = |side: Side| role(side);
                TlsSummary {
                    version: t.version.map(tls_version_name),
                    cipher: t.cipher.map(|c| format!("0x{:04x}", c.0)),
                    cipher_name: t.cipher.map(cipher_name),
                    offered_versions: t
                        .offered_versions
                        .iter()
                        .map(|v| tls_version_name(*v))
                        .collect(),
                    sni: t.sni,
                    alpn: t.alpn,
                    hello_retry: t.hello_retry,
                    certificate_subject: t.certificate_subject,
                    handshake_seen: t.saw_client_hello,
                    decryption: t.decryption,
                    decrypted: Dirs {
                        c2s: t.decrypted[c.client],
                        s2c: t.decrypted[c.client.other()],
                    },
                    alerts: t
                        .alerts
                        .iter()
                        .map(|&(side, level, desc)| AlertOut {
                            by: by(side),
                            level: alert_level_name(level),
                            description: alert_name(desc),
                        })
                        .collect(),
                    records: Dirs {
                        c2s: t.sides[c.client],
                        s2c: t.sides[c.client.other()],
                    },
                }
            }),
            events: app
                .events
                .iter()
                .map(|e| EventOut::of(c, e, origin))
                .collect(),
            events_dropped: app.events.dropped,
            teardown: app.teardown,
            leg: Leg::Unknown,
            leg_basis: String::new(),
            leg_confidence: None,
            relayed: Vec::new(),
            relays: Vec::new(),
            cut: None,
            verdict: None,
            origin,
        }
    }

    /// Sets the connection's relays and marks its request events with the requests on the
    /// other leg they were relayed as.
    pub fn set_relays(&mut self, relays: Vec<Relay>) {
        for e in &mut self.events {
            let request = match e.event.kind {
                crate::event::Kind::Command { .. } => e.dir == Dir::C2s,
                crate::event::Kind::AppData { .. } => e.dir == Dir::C2s,
                _ => false,
            };
            if !request {
                continue;
            }
            e.relayed_as = relays
                .iter()
                .filter(|r| r.frame == e.at.frame && r.file == e.at.file)
                .map(|r| (r.conn, r.peer_frame))
                .collect();
        }
        self.relays = relays;
    }

    /// A point of this connection's capture, with its time relative to the capture start.
    pub fn point(&self, at: At) -> Point {
        Point::of(at, self.origin)
    }
}

#[cfg(test)]
mod tests;
