//! Legs around a proxy and per-statement pairing across it.
//!
//! A proxy is found from what it does, not from addresses: a request on one MySQL connection
//! (to the proxy's listening endpoint P) is followed, before its response starts, by a request
//! from P's host to another server S that is the same query — the same text where both are
//! readable, else the same size once each leg's own TLS record overhead is taken off — and the
//! proxy's response starts only after the server's ([`Pairing`]). Requests are matched one to
//! one, first come first served, so multiplexing (one frontend's queries over many backends)
//! pairs per statement; a frontend request relayed again after its backend broke is a retry.
//!
//! The legs then belong to connections, never to an address alone ([`Legs::decide`]): every
//! connection to P is a frontend (P is a proxy's listener), but a connection from P's host to S
//! is a backend only when its own requests relayed P's (or it is named by the proxy's log, or it
//! carries the same client fingerprint as the proxy's paired backends); a backup job or an
//! exporter talking to S directly stays `direct`. Memory is bounded: requests are kept for a
//! window, scores in a capped table.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::Serialize;

use super::Confidence;
use crate::common::{At, Endpoint};
/// The leg data, defined below the stages that carry it (the summary holds a connection's leg).
pub use crate::model::diagnosis::{Cut, Leg, Match, Relay};

/// A proxy: its listening endpoint and the server it relays to.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyPair {
    /// The proxy's listening endpoint (server of the frontend leg).
    pub frontend: Endpoint,
    /// The server the proxy talks to (server of the backend leg).
    pub backend: Endpoint,
    /// Requests relayed (0 when given on the command line or named by a log).
    pub paired_requests: u64,
    /// Client fingerprints of the backend connections that relayed requests.
    #[serde(skip)]
    pub fingerprints: Vec<u64>,
    /// The weak evidence that helped: the two greetings differ (a proxy greets with its own
    /// version), the listener is on a well-known proxy port.
    pub corroborated_by: Vec<String>,
}

/// Settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct LegFlags {
    /// Server ports of frontend connections.
    pub frontend_ports: Vec<u16>,
    /// Server ports of backend connections.
    pub backend_ports: Vec<u16>,
    /// The proxy's address.
    pub proxy: Option<IpAddr>,
}

/// What a ProxySQL log names: frontends it closed as unhealthy, backends it found broken.
#[derive(Clone, Debug, Default)]
pub struct LogNames {
    /// Client endpoints of frontends (`Closing unhealthy client connection IP:PORT`).
    pub frontend_clients: Vec<Endpoint>,
    /// Backends by server endpoint and thread id (`Detected a broken connection ... on
    /// (HG,HOST,PORT,THREAD)`; a host name that is not an address matches any address).
    pub backends: Vec<(Option<IpAddr>, u16, u32)>,
}

/// What is known of one connection when its leg is decided.
#[derive(Clone, Debug, Default)]
pub struct ConnFacts {
    /// Client endpoint.
    pub client: Option<Endpoint>,
    /// Server endpoint.
    pub server: Option<Endpoint>,
    /// Requests of this connection that relayed another connection's (it is a backend).
    pub relayed_others: u32,
    /// Requests of this connection that others relayed (it is a frontend).
    pub relayed_by_others: u32,
    /// Client fingerprint (capabilities and TLS ClientHello).
    pub fingerprint: Option<u64>,
    /// Thread id from the server's greeting.
    pub thread_id: Option<u32>,
}

/// The leg of one connection, why, and how sure.
#[derive(Clone, Debug)]
pub struct LegDecision {
    /// The leg.
    pub leg: Leg,
    /// Why, in words.
    pub basis: String,
    /// How sure (None for direct connections with no proxy in sight).
    pub confidence: Option<Confidence>,
}

/// Decides legs.
#[derive(Clone, Debug, Default)]
pub struct Legs {
    flags: LegFlags,
    pairs: Vec<ProxyPair>,
    log: LogNames,
    /// Proxy listeners known from the log (the servers of the clients it names).
    listeners: Vec<Endpoint>,
}

impl Legs {
    /// Legs from flags and inferred proxy pairs.
    pub fn new(flags: LegFlags, pairs: Vec<ProxyPair>) -> Legs {
        Legs {
            flags,
            pairs,
            log: LogNames::default(),
            listeners: Vec::new(),
        }
    }

    /// Proxy listeners known from the log (found by an earlier pass).
    pub fn with_listeners(mut self, listeners: Vec<Endpoint>) -> Legs {
        self.listeners = listeners;
        self
    }

    /// The listeners known from the log.
    pub fn listeners(&self) -> &[Endpoint] {
        &self.listeners
    }

    /// Replaces the inferred proxy pairs.
    pub fn set_pairs(&mut self, pairs: Vec<ProxyPair>) {
        self.pairs = pairs;
    }

    /// The log names `client` as a frontend's client.
    pub fn named_frontend(&self, client: Endpoint) -> bool {
        self.log.frontend_clients.contains(&client)
    }

    /// A connection the log names as a frontend goes to `server`: a proxy listener.
    pub fn add_listener(&mut self, server: Endpoint) {
        if !self.listeners.contains(&server) && self.listeners.len() < 64 {
            self.listeners.push(server);
        }
    }

    /// Adds what a ProxySQL log names.
    pub fn with_log(mut self, log: LogNames) -> Legs {
        self.log = log;
        self
    }

    /// The proxy pairs found or given.
    pub fn pairs(&self) -> &[ProxyPair] {
        &self.pairs
    }

    fn flags_given(&self) -> bool {
        let f = &self.flags;
        !f.frontend_ports.is_empty() || !f.backend_ports.is_empty() || f.proxy.is_some()
    }

    /// The proxy listener that `server` is, if requests pairing found it.
    fn listener(&self, server: Endpoint) -> Option<&ProxyPair> {
        self.pairs.iter().find(|p| p.frontend == server)
    }

    /// The leg of a connection, from what it did.
    pub fn decide(&self, c: &ConnFacts) -> LegDecision {
        let (Some(client), Some(server)) = (c.client, c.server) else {
            return LegDecision {
                leg: Leg::Unknown,
                basis: "endpoints unknown".into(),
                confidence: None,
            };
        };
        let d = |leg, basis: String, conf| LegDecision {
            leg,
            basis,
            confidence: Some(conf),
        };
        let f = &self.flags;
        if f.frontend_ports.contains(&server.port) {
            return d(
                Leg::Frontend,
                format!("--frontend-port {}", server.port),
                Confidence::Certain,
            );
        }
        if f.backend_ports.contains(&server.port) {
            return d(
                Leg::Backend,
                format!("--backend-port {}", server.port),
                Confidence::Certain,
            );
        }
        if let Some(p) = f.proxy {
            if server.ip == p {
                return d(
                    Leg::Frontend,
                    format!("--proxy {p} is the server"),
                    Confidence::Certain,
                );
            }
            if client.ip == p {
                return d(
                    Leg::Backend,
                    format!("--proxy {p} is the client"),
                    Confidence::Certain,
                );
            }
        }
        if self.log.frontend_clients.contains(&client) {
            return d(
                Leg::Frontend,
                "the ProxySQL log closed it as an unhealthy client connection".into(),
                Confidence::Certain,
            );
        }
        if let Some(t) = c.thread_id {
            let named = self.log.backends.iter().any(|(ip, port, thread)| {
                *thread == t && *port == server.port && ip.is_none_or(|ip| ip == server.ip)
            });
            if named {
                return d(
                    Leg::Backend,
                    format!(
                        "the ProxySQL log names thread {t} on port {} as its backend",
                        server.port
                    ),
                    Confidence::Certain,
                );
            }
        }
        if self.listeners.contains(&server) {
            return d(
                Leg::Frontend,
                format!("to {server}, the listener of the clients the ProxySQL log closed"),
                Confidence::Certain,
            );
        }
        if let Some(p) = self.listener(server) {
            let also = if p.corroborated_by.is_empty() {
                String::new()
            } else {
                format!("; {}", p.corroborated_by.join("; "))
            };
            return d(
                Leg::Frontend,
                format!(
                    "to {}, a proxy listener: it relays requests to {} ({} paired){also}",
                    p.frontend, p.backend, p.paired_requests
                ),
                Confidence::Probable,
            );
        }
        let log_backend = |server: Endpoint| {
            self.log
                .backends
                .iter()
                .any(|(ip, port, _)| *port == server.port && ip.is_none_or(|ip| ip == server.ip))
        };
        if c.relayed_others > 0
            && self.listeners.iter().any(|l| l.ip == client.ip)
            && log_backend(server)
        {
            return d(
                Leg::Backend,
                format!(
                    "from the proxy's host to a server its log names; {} of its requests relayed frontend requests",
                    c.relayed_others
                ),
                Confidence::Probable,
            );
        }
        for p in &self.pairs {
            if server != p.backend || client.ip != p.frontend.ip {
                continue;
            }
            if c.relayed_others > 0 {
                return d(
                    Leg::Backend,
                    format!(
                        "from the proxy {}: {} of its requests relayed frontend requests",
                        p.frontend, c.relayed_others
                    ),
                    Confidence::Probable,
                );
            }
            if c.fingerprint.is_some_and(|fp| p.fingerprints.contains(&fp)) {
                return d(
                    Leg::Backend,
                    format!(
                        "from the proxy {}'s host with the client fingerprint of its backends",
                        p.frontend
                    ),
                    Confidence::Possible,
                );
            }
        }
        if c.relayed_by_others > 0 {
            // Its requests were relayed, but too few pairs made the proxy sure.
            return LegDecision {
                leg: Leg::Direct,
                basis: "some requests look relayed, too few to call a proxy".into(),
                confidence: None,
            };
        }
        let basis = if self.flags_given() || !self.pairs.is_empty() {
            "not to or from a proxy"
        } else {
            "no proxy seen"
        };
        LegDecision {
            leg: Leg::Direct,
            basis: basis.into(),
            confidence: None,
        }
    }

    /// The leg of a connection for a streamed event, from its endpoints and the requests it has
    /// relayed so far (the rest of its evidence is in at its close).
    pub fn leg_only(&self, client: Endpoint, server: Endpoint, relayed_others: u32) -> Leg {
        self.decide(&ConnFacts {
            client: Some(client),
            server: Some(server),
            relayed_others,
            ..ConnFacts::default()
        })
        .leg
    }
}

/// Whether two requests can be one relayed: the same text where both are readable, else sizes
/// that overlap once each leg's TLS overhead is taken off.
fn same_request(a: &Request, b: &Request) -> Option<Match> {
    match (a.text, b.text) {
        (Some(x), Some(y)) => (x == y).then_some(Match::Text),
        _ => match (a.size, b.size) {
            (Some((a0, a1)), Some((b0, b1))) if a0 <= b1 && b0 <= a1 => Some(Match::Size),
            _ => None,
        },
    }
}

/// Listening ports proxies use by default: weak evidence only (anything can listen anywhere).
fn proxy_port(port: u16) -> Option<&'static str> {
    match port {
        6033 => Some("ProxySQL"),
        4006 | 4008 => Some("MariaDB MaxScale"),
        6446 | 6447 => Some("MySQL Router"),
        _ => None,
    }
}

fn q_server(p: &Pairing, seq: u64) -> Option<Endpoint> {
    p.get(seq).map(|q| q.r.server)
}

fn before_at(a: At, b: At) -> bool {
    crate::dissect::teardown::before(a, b)
}

/// A request as pairing sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Connection id.
    pub conn: u64,
    /// Client endpoint.
    pub client: Endpoint,
    /// Server endpoint.
    pub server: Endpoint,
    /// Where.
    pub at: At,
    /// MySQL payload length (without the 4-byte header): exact, or a range (CBC).
    pub size: Option<(u32, u32)>,
    /// Hash of the query text, when readable.
    pub text: Option<u64>,
}

struct Req {
    r: Request,
    responded: Option<At>,
    /// Backend requests that relayed this one (their sequence numbers), at most 4.
    relays: Vec<u64>,
    /// The frontend request this one relays.
    relays_of: Option<u64>,
}

#[derive(Default)]
struct Score {
    relays: u64,
    /// Relays weighed by their evidence: the same query text counts twice (it cannot be chance),
    /// the same size once.
    weight: u64,
    /// Frontend responses that started before their backend's: not a relay after all.
    violations: u64,
    fingerprints: Vec<u64>,
}

/// Connections' relays kept per connection: the first and the last this many.
pub const KEEP_RELAYS: usize = 64;

#[derive(Default)]
struct RelayList {
    first: Vec<Relay>,
    last: VecDeque<Relay>,
    count: u32,
    as_backend: u32,
    as_frontend: u32,
}

impl RelayList {
    fn push(&mut self, r: Relay, keep: usize) {
        self.count += 1;
        if r.frontend {
            self.as_frontend += 1;
        } else {
            self.as_backend += 1;
        }
        if self.first.len() < keep {
            self.first.push(r);
            return;
        }
        if self.last.len() >= keep {
            self.last.pop_front();
        }
        self.last.push_back(r);
    }
}

/// What pairing learnt of one finished connection.
#[derive(Debug, Default)]
pub struct ConnRelays {
    /// Its relays (bounded: the first and last [`KEEP_RELAYS`]).
    pub relays: Vec<Relay>,
    /// Requests of it that relayed others' (it is a backend).
    pub as_backend: u32,
    /// Requests of it that others relayed (it is a frontend).
    pub as_frontend: u32,
    /// Connections on the other leg with the number of requests paired with each.
    pub peers: Vec<(u64, u32)>,
    /// A backend its client (the proxy) closed while the frontend request it had relayed was
    /// still unanswered: that frontend connection and request frame, and this one's frame.
    pub cut: Option<Cut>,
}

/// How long a frontend request waits for its relay (a new backend connection, TLS and login
/// included; the bug captures show 22 ms on loopback).
const RELAY_WINDOW_NS: i64 = 1_000_000_000;
/// A retry follows the break of the backend that carried the request within this long.
const RETRY_WINDOW_NS: i64 = 500_000_000;
/// Requests kept at most (oldest dropped first) and for at most this long.
const MAX_REQS: usize = 16_384;
const HORIZON_NS: i64 = 120_000_000_000;
/// Score table entries at most (the weakest dropped).
const MAX_SCORES: usize = 4096;
/// Relay weight needed before a proxy is declared (three same-size relays, or two of the same
/// text).
const MIN_RELAYS: u64 = 3;
/// Requests waiting for a relay at most (a flood of unanswered requests keeps the first).
const MAX_WAITING: usize = 1024;
/// Connections whose relay lists are kept at once (the oldest dropped).
const MAX_CONNS: usize = 16_384;

/// Matches requests across connections, one to one, and scores proxy candidates.
pub struct Pairing {
    reqs: VecDeque<Req>,
    /// Sequence number of `reqs[0]`.
    base: u64,
    /// Per connection: its latest request (sequence number).
    latest: HashMap<u64, u64, ahash::RandomState>,
    scores: HashMap<(Endpoint, Endpoint), Score, ahash::RandomState>,
    lists: HashMap<u64, RelayList, ahash::RandomState>,
    fingerprints: HashMap<u64, u64, ahash::RandomState>,
    /// Requests that may still be relayed: no response, not relayed, recent.
    waiting: Vec<u64>,
    /// Frontend requests whose backend broke before they were answered, with when it broke.
    retry: Vec<(u64, At)>,
    /// Backends closed by their client: the request they carried last (sequence number) and
    /// when; resolved at `take` (pairing may still swap which frontend it carried).
    cuts: HashMap<u64, (u64, At), ahash::RandomState>,
    /// The greeting version of each server endpoint seen (bounded).
    greetings: HashMap<Endpoint, String, ahash::RandomState>,
    /// Per frontend connection: the backend connection its last request was relayed on.
    last_peer: HashMap<u64, u64, ahash::RandomState>,
    /// Connections that sent a FIN or RST (their requests are no longer relayed or retried).
    gone: std::collections::HashSet<u64, ahash::RandomState>,
    keep: usize,
    /// Entries refused or forgotten early by the caps.
    dropped: u64,
    /// Frontend requests relayed again after their backend broke (hidden retries).
    retries: u64,
}

impl Default for Pairing {
    fn default() -> Self {
        Pairing::new(KEEP_RELAYS)
    }
}

impl Pairing {
    /// Pairing that keeps the first and last `keep` relays of each connection.
    pub fn new(keep: usize) -> Pairing {
        Pairing {
            reqs: VecDeque::new(),
            base: 0,
            latest: HashMap::default(),
            scores: HashMap::default(),
            lists: HashMap::default(),
            fingerprints: HashMap::default(),
            waiting: Vec::new(),
            retry: Vec::new(),
            cuts: HashMap::default(),
            gone: Default::default(),
            last_peer: HashMap::default(),
            greetings: HashMap::default(),
            keep,
            dropped: 0,
            retries: 0,
        }
    }

    /// The score table is full: every weight (and violation count) is halved and the pairs
    /// left at zero are forgotten, so that pairs seen once cannot hold the table against a new
    /// pair (a flood of one-off coincidences before the real proxy shows). Relative weights
    /// survive; one pass frees every pair seen once, so the cost per new pair stays constant
    /// on average.
    fn decay_scores(&mut self) {
        let before = self.scores.len();
        self.scores.retain(|_, sc| {
            sc.weight /= 2;
            sc.violations /= 2;
            sc.weight > 0
        });
        self.dropped += (before - self.scores.len()) as u64;
    }

    /// Entries not kept or forgotten early because a table was full (for the run summary).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Frontend requests the proxy relayed again after the backend carrying them broke (each
    /// is a relay with `retry` set), counted whole: relay lists keep only some.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    fn get(&self, seq: u64) -> Option<&Req> {
        self.reqs
            .get(usize::try_from(seq.checked_sub(self.base)?).ok()?)
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Req> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.reqs.get_mut(i)
    }

    /// The client fingerprint of connection `conn`.
    pub fn fingerprint(&mut self, conn: u64, fp: u64) {
        if self.fingerprints.len() < MAX_CONNS {
            self.fingerprints.insert(conn, fp);
        } else {
            self.dropped += 1;
        }
    }

    /// A request; when it relays a waiting one (this is a backend request), that one's
    /// connection and frame.
    pub fn request(&mut self, r: Request) -> Option<(u64, u64)> {
        self.expire(r.at);
        let seq = self.base + self.reqs.len() as u64;
        let relays_of = self.find_front(&r);
        self.reqs.push_back(Req {
            r,
            responded: None,
            relays: Vec::new(),
            relays_of: relays_of.map(|(s, _, _)| s),
        });
        self.latest.insert(r.conn, seq);
        if let Some((front, by, retry)) = relays_of {
            self.link(front, seq, by, retry);
            self.retry.retain(|&(s, _)| s != front);
            return self.get(front).map(|f| (f.r.conn, f.r.at.frame));
        }
        // Full (a flood of requests nobody relays): the oldest waiting request gives way, as it
        // is the least likely to be relayed still.
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.remove(0);
            self.dropped += 1;
        }
        self.waiting.push(seq);
        None
    }

    fn expire(&mut self, now: At) {
        while let Some(front) = self.reqs.front() {
            let old = now.ts.nanos_since(front.r.at.ts) > HORIZON_NS;
            if !old && self.reqs.len() < MAX_REQS {
                break;
            }
            // Forgotten early while it could still be relayed or answered: a real loss.
            if !old && front.responded.is_none() && front.relays.is_empty() {
                self.dropped += 1;
            }
            self.reqs.pop_front();
            self.base += 1;
        }
    }

    /// The frontend request `b` relays, if any: (its sequence number, how, a retry). Only
    /// requests still waiting (no response, not relayed yet) and those whose backend just broke
    /// are looked at, so the work per request is bounded by the concurrency, not the rate.
    fn find_front(&mut self, b: &Request) -> Option<(u64, Match, bool)> {
        let now = b.at.ts;
        // Drop what can no longer be relayed.
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.retain(|&seq| {
            self.get(seq).is_some_and(|q| {
                q.responded.is_none()
                    && q.relays.is_empty()
                    && q.relays_of.is_none()
                    && now.nanos_since(q.r.at.ts) <= RELAY_WINDOW_NS
            })
        });
        self.waiting = waiting;
        self.retry.retain(|&(seq, broke)| {
            now.nanos_since(broke.ts) <= RETRY_WINDOW_NS
                && self
                    .reqs
                    .get((seq.wrapping_sub(self.base)) as usize)
                    .is_some_and(|q| q.responded.is_none())
        });
        let candidates = self
            .waiting
            .iter()
            .map(|&s| (s, false))
            .chain(self.retry.iter().map(|&(s, _)| (s, true)));
        let mut best: Option<(u64, Match, bool, bool)> = None;
        for (seq, retry) in candidates {
            let Some(f) = self.get(seq) else { continue };
            if f.r.conn == b.conn
                || self.gone.contains(&f.r.conn)
                || f.r.server == b.server
                || f.r.server.ip != b.client.ip
                || before_at(b.at, f.r.at)
                || (retry && f.relays.len() >= 4)
            {
                continue;
            }
            let Some(by) = same_request(&f.r, b) else {
                continue;
            };
            // Text beats size; then the frontend that used this backend last (a session keeps
            // its backend while it can); then first come, first served.
            let sticky = self.last_peer.get(&f.r.conn) == Some(&b.conn);
            let better = match best {
                None => true,
                Some((bs, bb, _, bsticky)) => {
                    (by == Match::Text && bb == Match::Size)
                        || (by == bb && sticky && !bsticky)
                        || (by == bb && sticky == bsticky && seq < bs)
                }
            };
            if better {
                best = Some((seq, by, retry, sticky));
            }
        }
        best.map(|(seq, by, retry, _)| (seq, by, retry))
    }

    fn link(&mut self, front: u64, back: u64, by: Match, retry: bool) {
        let (Some(f), Some(b)) = (self.get(front), self.get(back)) else {
            return;
        };
        let (fr, br) = (f.r, b.r);
        self.retries += u64::from(retry);
        if let Some(f) = self.get_mut(front) {
            f.relays.push(back);
        }
        if self.last_peer.len() < MAX_CONNS || self.last_peer.contains_key(&fr.conn) {
            self.last_peer.insert(fr.conn, br.conn);
        }
        let fp = self.fingerprints.get(&br.conn).copied();
        if self.scores.len() >= MAX_SCORES && !self.scores.contains_key(&(fr.server, br.server)) {
            self.decay_scores();
        }
        let room = self.scores.len() < MAX_SCORES;
        if !room && !self.scores.contains_key(&(fr.server, br.server)) {
            self.dropped += 1;
        } else {
            let sc = self.scores.entry((fr.server, br.server)).or_default();
            sc.relays += 1;
            sc.weight += if by == Match::Text { 2 } else { 1 };
            if let Some(fp) = fp {
                if !sc.fingerprints.contains(&fp) && sc.fingerprints.len() < 16 {
                    sc.fingerprints.push(fp);
                }
            }
        }
        let keep = self.keep;
        for (conn, mine, peer, peer_conn, frontend) in [
            (fr.conn, fr.at, br.at, br.conn, true),
            (br.conn, br.at, fr.at, fr.conn, false),
        ] {
            if self.lists.len() >= MAX_CONNS && !self.lists.contains_key(&conn) {
                self.dropped += 1;
                continue;
            }
            self.lists.entry(conn).or_default().push(
                Relay {
                    frame: mine.frame,
                    file: mine.file,
                    conn: peer_conn,
                    peer_frame: peer.frame,
                    peer_file: peer.file,
                    by,
                    frontend,
                    retry,
                },
                keep,
            );
        }
    }

    /// The latest request of connection `conn`, unless the connection has sent a FIN or RST.
    fn latest_open(&self, conn: u64) -> Option<u64> {
        if self.gone.contains(&conn) {
            return None;
        }
        self.latest.get(&conn).copied()
    }

    /// The first server message after connection `conn`'s latest request: its response started.
    pub fn response(&mut self, conn: u64, at: At) {
        // Data after the connection's first FIN/RST never reached the proxy (a server answering
        // into a socket the proxy closed): not a response.
        let Some(seq) = self.latest_open(conn) else {
            return;
        };
        let Some(q) = self.get_mut(seq) else { return };
        if q.responded.is_some() {
            return;
        }
        q.responded = Some(at);
        let Some(&back) = q.relays.first() else {
            return;
        };
        // The proxy answers after the server does: a frontend answered before the backend that
        // was thought to carry it was carried by another one (two requests alike came in close
        // together) — swap with a backend that has answered for a frontend still waiting.
        if self.get(back).is_some_and(|b| b.responded.is_none()) && !self.swap(seq, back) {
            let key = self.get(back).map(|b| (q_server(self, seq), b.r.server));
            if let Some(Some(k)) = key.map(|(a, b)| a.map(|a| (a, b))) {
                if let Some(sc) = self.scores.get_mut(&k) {
                    sc.violations += 1;
                }
            }
        }
    }

    /// Frontend `f` (answered) was linked to backend `b` (not answered): find a backend `b2`
    /// that answered for a frontend `f2` still waiting, of sizes that fit, and swap.
    fn swap(&mut self, f: u64, b: u64) -> bool {
        let (Some(fr), Some(br)) = (self.get(f).map(|x| x.r), self.get(b).map(|x| x.r)) else {
            return false;
        };
        let fits = |x: &Request, y: &Request| same_request(x, y).is_some();
        let mut found = None;
        for (i, q) in self.reqs.iter().enumerate().rev().take(512) {
            let b2 = self.base + i as u64;
            if b2 == b || q.responded.is_none() {
                continue;
            }
            let Some(f2) = q.relays_of else { continue };
            let Some(f2q) = self.get(f2) else { continue };
            if f2 == f
                || f2q.responded.is_some()
                || f2q.relays.first() != Some(&b2)
                || f2q.r.server != fr.server
                || !fits(&fr, &q.r)
                || !fits(&f2q.r, &br)
            {
                continue;
            }
            found = Some((b2, f2, q.r, f2q.r));
            break;
        }
        let Some((b2, f2, b2r, f2r)) = found else {
            return false;
        };
        if let Some(x) = self.get_mut(f) {
            x.relays[0] = b2;
        }
        if let Some(x) = self.get_mut(f2) {
            x.relays[0] = b;
        }
        if let Some(x) = self.get_mut(b) {
            x.relays_of = Some(f2);
        }
        if let Some(x) = self.get_mut(b2) {
            x.relays_of = Some(f);
        }
        self.last_peer.insert(fr.conn, b2r.conn);
        self.last_peer.insert(f2r.conn, br.conn);
        self.fix(fr.conn, fr.at, br, b2r);
        self.fix(f2r.conn, f2r.at, b2r, br);
        self.fix(br.conn, br.at, fr, f2r);
        self.fix(b2r.conn, b2r.at, f2r, fr);
        true
    }

    /// In `conn`'s relay list, the entry for its request at `at` that named `old` names `new`.
    fn fix(&mut self, conn: u64, at: At, old: Request, new: Request) {
        let Some(l) = self.lists.get_mut(&conn) else {
            return;
        };
        for r in l.first.iter_mut().chain(l.last.iter_mut()) {
            if r.frame == at.frame
                && r.file == at.file
                && r.conn == old.conn
                && r.peer_frame == old.at.frame
            {
                r.conn = new.conn;
                r.peer_frame = new.at.frame;
                r.peer_file = new.at.file;
                return;
            }
        }
    }

    /// The client side of connection `conn` sent its first FIN or RST (a proxy breaking a
    /// backend, if it is one): the frontend request it was carrying, unanswered, may be retried.
    pub fn client_closed(&mut self, conn: u64, at: At) {
        let Some(seq) = self.latest_open(conn) else {
            return;
        };
        let Some(b) = self.get(seq) else { return };
        if b.responded.is_some() && b.relays_of.is_none() {
            return;
        }
        if let Some(front) = b.relays_of {
            let open = self
                .get(front)
                .is_some_and(|f| f.responded.is_none() && !self.gone.contains(&f.r.conn));
            if open && self.retry.len() < MAX_WAITING {
                self.retry.push((front, at));
            }
        }
        if self.cuts.len() < MAX_CONNS {
            self.cuts.insert(conn, (seq, at));
        }
    }

    /// Connection `conn` sent its first FIN or RST (either side): its requests can no longer
    /// be relayed or retried.
    pub fn closed(&mut self, conn: u64) {
        if self.gone.len() < MAX_CONNS {
            self.gone.insert(conn);
        }
        let reqs = &self.reqs;
        let base = self.base;
        let of = |seq: u64| {
            seq.checked_sub(base)
                .and_then(|i| reqs.get(usize::try_from(i).ok()?))
                .map(|q| q.r.conn)
        };
        self.retry.retain(|&(seq, _)| of(seq) != Some(conn));
        self.waiting.retain(|&seq| of(seq) != Some(conn));
    }

    /// What pairing learnt of connection `conn`, which is finished (removed).
    pub fn take(&mut self, conn: u64) -> ConnRelays {
        self.latest.remove(&conn);
        self.gone.remove(&conn);
        self.last_peer.remove(&conn);
        self.fingerprints.remove(&conn);
        // The frontend request this backend carried when its client closed it, unanswered then.
        let cut = self.cuts.remove(&conn).and_then(|(seq, at)| {
            let b = self.get(seq)?;
            let f = self.get(b.relays_of?)?;
            let unanswered = f.responded.is_none_or(|r| before_at(at, r));
            unanswered.then_some(Cut {
                conn: f.r.conn,
                frame: f.r.at.frame,
                relayed_frame: b.r.at.frame,
            })
        });
        let Some(l) = self.lists.remove(&conn) else {
            return ConnRelays {
                cut,
                ..ConnRelays::default()
            };
        };
        let relays: Vec<Relay> = l.first.into_iter().chain(l.last).collect();
        let mut peers: Vec<(u64, u32)> = Vec::new();
        for r in &relays {
            match peers.iter_mut().find(|(c, _)| *c == r.conn) {
                Some(p) => p.1 += 1,
                None => peers.push((r.conn, 1)),
            }
        }
        peers.sort_unstable();
        ConnRelays {
            relays,
            as_backend: l.as_backend,
            as_frontend: l.as_frontend,
            peers,
            cut,
        }
    }

    /// Requests of connection `conn` that relayed another connection's, so far.
    pub fn relayed_others(&self, conn: u64) -> u32 {
        self.lists.get(&conn).map_or(0, |l| l.as_backend)
    }

    /// Entries held: requests, waiting requests, scored pairs, relay lists and the relays in them
    /// (for tests of the bounds).
    pub fn footprint(&self) -> (usize, usize, usize, usize, usize) {
        let relays = self
            .lists
            .values()
            .map(|l| l.first.len() + l.last.len())
            .sum();
        (
            self.reqs.len(),
            self.waiting.len(),
            self.scores.len(),
            self.lists.len(),
            relays,
        )
    }

    /// A server greeted with `version` (its MySQL greeting).
    pub fn greeting(&mut self, server: Endpoint, version: &str) {
        if self.greetings.len() < MAX_SCORES && !self.greetings.contains_key(&server) {
            self.greetings
                .insert(server, version.chars().take(64).collect());
        }
    }

    /// Weak evidence for `a` relaying to `b`: their greetings differ (a proxy greets with its own
    /// server version; a relay of the same server's bytes would not), `a` is on a well-known proxy
    /// port. Each lowers the relay weight needed by one, never below two relays' worth.
    fn corroboration(&self, a: &Endpoint, b: &Endpoint) -> Vec<String> {
        let mut v = Vec::new();
        if let (Some(ga), Some(gb)) = (self.greetings.get(a), self.greetings.get(b)) {
            if ga != gb {
                v.push(format!("its greeting ({ga}) is not the server's ({gb})"));
            }
        }
        if let Some(name) = proxy_port(a.port) {
            v.push(format!("port {} is {name}'s", a.port));
        }
        v
    }

    /// The proxies the relays support: enough relays (weighed with the weak evidence), few
    /// violations, and far more than the reverse direction (two symmetric flows are not a proxy).
    pub fn pairs(&self) -> Vec<ProxyPair> {
        let mut out: Vec<ProxyPair> = self
            .scores
            .iter()
            .filter_map(|((a, b), sc)| {
                let good = sc.weight.saturating_sub(2 * sc.violations);
                let back = self.scores.get(&(*b, *a)).map_or(0, |r| r.weight);
                let corroborated_by = self.corroboration(a, b);
                let need = MIN_RELAYS
                    .saturating_sub(corroborated_by.len() as u64)
                    .max(2);
                (good >= need && good >= 3 * back).then(|| ProxyPair {
                    frontend: *a,
                    backend: *b,
                    paired_requests: sc.relays,
                    fingerprints: sc.fingerprints.clone(),
                    corroborated_by,
                })
            })
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.paired_requests));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            ip: "127.0.0.1".parse().unwrap(),
            port,
        }
    }

    fn at(ms: f64, frame: u64) -> At {
        At {
            ts: Timestamp((ms * 1e6) as i64),
            frame,
            file: 0,
        }
    }

    fn req(conn: u64, client: u16, server: u16, a: At, size: u32) -> Request {
        Request {
            conn,
            client: ep(client),
            server: ep(server),
            at: a,
            size: Some((size, size)),
            text: None,
        }
    }

    /// Four requests to 6033 relayed as same-size requests to 3306, the proxy answering after
    /// the server.
    fn relayed_four_times() -> Pairing {
        let mut p = Pairing::default();
        for i in 0..4u64 {
            let t = i as f64 * 100.0;
            p.request(req(1, 5000, 6033, at(t, 10 * i + 1), 57));
            p.request(req(2, 40000, 3306, at(t + 0.2, 10 * i + 2), 57));
            p.response(2, at(t + 20.0, 10 * i + 3));
            p.response(1, at(t + 20.1, 10 * i + 4));
        }
        p
    }

    #[test]
    fn pairs_a_relayed_request_by_size_and_finds_the_proxy() {
        let mut p = relayed_four_times();
        let pairs = p.pairs();
        assert_eq!(pairs.len(), 1);
        assert_eq!(
            (pairs[0].frontend.port, pairs[0].backend.port),
            (6033, 3306)
        );
        let front = p.take(1);
        assert_eq!(front.as_frontend, 4);
        assert_eq!(front.relays[0].peer_frame, 2);
        let back = p.take(2);
        assert_eq!((back.as_backend, back.relays[0].peer_frame), (4, 1));
    }

    #[test]
    fn two_relays_make_a_proxy_only_with_weak_evidence_beside_them() {
        let two = || {
            let mut p = Pairing::default();
            for i in 0..2u64 {
                let t = i as f64 * 100.0;
                p.request(req(1, 5000, 7000, at(t, 10 * i + 1), 57));
                p.request(req(2, 40000, 3306, at(t + 0.2, 10 * i + 2), 57));
                p.response(2, at(t + 20.0, 10 * i + 3));
                p.response(1, at(t + 20.1, 10 * i + 4));
            }
            p
        };
        assert!(two().pairs().is_empty());
        let mut p = two();
        p.greeting(ep(7000), "10.11.19-MariaDB");
        p.greeting(ep(3306), "5.5.5-10.11.19-MariaDB-0+deb12u1");
        let pairs = p.pairs();
        assert_eq!(pairs.len(), 1);
        assert!(pairs[0].corroborated_by[0].contains("greeting"));
        // The same greeting on both sides is no evidence.
        let mut p = two();
        p.greeting(ep(7000), "8.0.36");
        p.greeting(ep(3306), "8.0.36");
        assert!(p.pairs().is_empty());
    }

    #[test]
    fn different_sizes_or_an_earlier_response_do_not_pair() {
        let mut p = Pairing::default();
        for i in 0..4u64 {
            let t = i as f64 * 100.0;
            p.request(req(1, 5000, 6033, at(t, 10 * i + 1), 57));
            p.request(req(2, 40000, 3306, at(t + 0.2, 10 * i + 2), 58));
        }
        assert!(p.pairs().is_empty());
        let mut p = Pairing::default();
        for i in 0..4u64 {
            let t = i as f64 * 100.0;
            p.request(req(1, 5000, 6033, at(t, 10 * i + 1), 57));
            p.request(req(2, 40000, 3306, at(t + 0.2, 10 * i + 2), 57));
            // The "frontend" answered before the "backend": unrelated flows.
            p.response(1, at(t + 1.0, 10 * i + 3));
            p.response(2, at(t + 20.0, 10 * i + 4));
        }
        assert!(p.pairs().is_empty());
    }

    #[test]
    fn a_retry_after_the_backend_broke_is_a_second_relay() {
        let mut p = Pairing::default();
        p.request(req(1, 5000, 6033, at(0.0, 1), 57));
        p.request(req(2, 40000, 3306, at(0.2, 2), 57));
        p.response(2, at(5.0, 3));
        p.client_closed(2, at(900.0, 4));
        p.request(req(3, 40002, 3306, at(921.0, 5), 57));
        let f = p.take(1);
        assert_eq!(f.relays.len(), 2);
        assert!(f.relays[1].retry);
        assert_eq!(f.relays[1].conn, 3);
        assert_eq!(p.retries(), 1);
        // Without the break, a later same-size request is not a retry.
        let mut p = Pairing::default();
        p.request(req(1, 5000, 6033, at(0.0, 1), 57));
        p.request(req(2, 40000, 3306, at(0.2, 2), 57));
        p.request(req(3, 40002, 3306, at(21.0, 5), 57));
        assert_eq!(p.take(1).relays.len(), 1);
        assert_eq!(p.retries(), 0);
    }

    #[test]
    fn memory_stays_bounded_whatever_the_traffic() {
        // 180,000 requests on 30,000 frontends relayed over 30,000 backends that never close,
        // plus unanswered requests that never find a relay.
        let mut p = Pairing::new(8);
        let mut frame = 0;
        for i in 0..60_000u64 {
            let t = i as f64 * 0.01;
            let f = i % 30_000;
            frame += 3;
            p.request(req(
                f,
                1000 + (f % 60_000) as u16,
                6033,
                at(t, frame),
                (i % 500) as u32,
            ));
            p.request(req(
                100_000 + f,
                2000 + (f % 60_000) as u16,
                3306,
                at(t + 0.001, frame + 1),
                (i % 500) as u32,
            ));
            p.request(req(
                500_000 + i,
                3000,
                7000 + (i % 3000) as u16,
                at(t + 0.002, frame + 2),
                9999,
            ));
        }
        let (reqs, waiting, scores, lists, relays) = p.footprint();
        assert!(reqs <= MAX_REQS, "{reqs}");
        assert!(waiting <= MAX_WAITING, "{waiting}");
        assert!(scores <= MAX_SCORES, "{scores}");
        assert!(lists <= MAX_CONNS, "{lists}");
        assert!(relays <= MAX_CONNS * 16, "{relays}");
        assert!(relays > 0);
    }

    #[test]
    fn a_flood_of_one_off_pairs_cannot_hide_a_proxy_that_shows_later() {
        let mut p = Pairing::new(8);
        let mut frame = 0;
        // 6,000 coincidences, each a different pair of servers seen once: more than the table.
        for k in 0..6_000u64 {
            let t = k as f64 * 2.0;
            frame += 2;
            let size = (k % 1000) as u32 + 10;
            p.request(req(k, 1000, 10_000 + k as u16, at(t, frame), size));
            p.request(req(
                100_000 + k,
                2000,
                30_000 + k as u16,
                at(t + 0.1, frame + 1),
                size,
            ));
        }
        assert!(p.footprint().2 <= MAX_SCORES);
        // Then the real proxy relays ten requests.
        for k in 0..10u64 {
            let t = 20_000.0 + k as f64 * 2.0;
            frame += 2;
            p.request(req(200_000, 5000, 6033, at(t, frame), 77 + k as u32));
            p.request(req(
                300_000,
                40000,
                3306,
                at(t + 0.1, frame + 1),
                77 + k as u32,
            ));
        }
        let pairs = p.pairs();
        assert!(
            pairs
                .iter()
                .any(|x| x.frontend.port == 6033 && x.backend.port == 3306),
            "{pairs:?}"
        );
        assert!(p.dropped() >= 4096);
    }

    #[test]
    fn a_direct_client_of_the_backend_server_stays_direct() {
        let p = relayed_four_times();
        let legs = Legs::new(LegFlags::default(), p.pairs());
        let facts = |client: u16, server: u16, relayed: u32| ConnFacts {
            client: Some(ep(client)),
            server: Some(ep(server)),
            relayed_others: relayed,
            ..ConnFacts::default()
        };
        assert_eq!(legs.decide(&facts(5000, 6033, 0)).leg, Leg::Frontend);
        assert_eq!(legs.decide(&facts(40000, 3306, 4)).leg, Leg::Backend);
        // A backup job on the proxy host, talking to the same server, relayed nothing.
        assert_eq!(legs.decide(&facts(41000, 3306, 0)).leg, Leg::Direct);
    }
}
