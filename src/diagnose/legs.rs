//! Legs around a proxy: which MySQL connections are frontend (client → proxy), backend
//! (proxy → server) or direct, from the command line (`--frontend-port`, `--backend-port`,
//! `--proxy`) or inferred by pairing requests: a request to endpoint A followed within a few
//! milliseconds by a request of the same size from A's host to another endpoint B, again and
//! again, means A is a proxy in front of B. On one host (loopback) the addresses are all alike,
//! which is why pairing looks at requests, not only at addresses.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use serde::Serialize;

use crate::decode::Endpoint;
use crate::time::Timestamp;

/// The leg of a MySQL connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    /// Application → proxy.
    Frontend,
    /// Proxy → MySQL server.
    Backend,
    /// Application → MySQL server, no proxy in between.
    Direct,
    /// Not MySQL, or not decided.
    Unknown,
}

/// How a proxy (or legs) were decided.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyPair {
    /// The proxy's listening endpoint (server of the frontend leg).
    pub frontend: Endpoint,
    /// The server the proxy talks to (server of the backend leg).
    pub backend: Endpoint,
    /// Requests paired (0 when given on the command line).
    pub paired_requests: u64,
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

/// Decides legs.
#[derive(Clone, Debug, Default)]
pub struct Legs {
    flags: LegFlags,
    pairs: Vec<ProxyPair>,
}

impl Legs {
    /// Legs from flags and inferred proxy pairs.
    pub fn new(flags: LegFlags, pairs: Vec<ProxyPair>) -> Legs {
        Legs { flags, pairs }
    }

    /// The proxy pairs found or given.
    pub fn pairs(&self) -> &[ProxyPair] {
        &self.pairs
    }

    /// The leg of a MySQL connection from `client` to `server`, and how it was decided.
    pub fn leg(&self, client: Endpoint, server: Endpoint) -> (Leg, String) {
        let (leg, why) = self.classify(client, server);
        let basis = match why {
            Why::FrontendPort(p) => format!("--frontend-port {p}"),
            Why::BackendPort(p) => format!("--backend-port {p}"),
            Why::ProxyIsServer(p) => format!("--proxy {p} is the server"),
            Why::ProxyIsClient(p) => format!("--proxy {p} is the client"),
            Why::Relays(pair) => format!(
                "inferred: {} relays requests to {} ({} paired)",
                pair.frontend, pair.backend, pair.paired_requests
            ),
            Why::RelayedTo(pair) => format!(
                "inferred: from the host of {}, which relays requests here ({} paired)",
                pair.frontend, pair.paired_requests
            ),
            Why::NotProxy => "not to or from the proxy".into(),
            Why::NoProxy => "no proxy seen".into(),
        };
        (leg, basis)
    }

    /// The leg alone, without building the sentence (per event, on the hot path).
    pub fn leg_only(&self, client: Endpoint, server: Endpoint) -> Leg {
        self.classify(client, server).0
    }

    fn classify(&self, client: Endpoint, server: Endpoint) -> (Leg, Why<'_>) {
        let f = &self.flags;
        if f.frontend_ports.contains(&server.port) {
            return (Leg::Frontend, Why::FrontendPort(server.port));
        }
        if f.backend_ports.contains(&server.port) {
            return (Leg::Backend, Why::BackendPort(server.port));
        }
        if let Some(p) = f.proxy {
            if server.ip == p {
                return (Leg::Frontend, Why::ProxyIsServer(p));
            }
            if client.ip == p {
                return (Leg::Backend, Why::ProxyIsClient(p));
            }
        }
        for pair in &self.pairs {
            if server == pair.frontend {
                return (Leg::Frontend, Why::Relays(pair));
            }
            if server == pair.backend && client.ip == pair.frontend.ip {
                return (Leg::Backend, Why::RelayedTo(pair));
            }
        }
        let any = !f.frontend_ports.is_empty() || !f.backend_ports.is_empty() || f.proxy.is_some();
        if any || !self.pairs.is_empty() {
            (Leg::Direct, Why::NotProxy)
        } else {
            (Leg::Direct, Why::NoProxy)
        }
    }
}

/// Why a connection got its leg.
enum Why<'a> {
    FrontendPort(u16),
    BackendPort(u16),
    ProxyIsServer(IpAddr),
    ProxyIsClient(IpAddr),
    Relays(&'a ProxyPair),
    RelayedTo(&'a ProxyPair),
    NotProxy,
    NoProxy,
}

/// Requests closer than this are candidates for one relayed request.
const PAIR_WINDOW_NS: i64 = 5_000_000;
/// Pairs needed before a proxy is declared, and how much stronger than the reverse direction.
const MIN_PAIRS: u64 = 3;
const DOMINANCE: u64 = 3;

/// Watches requests on MySQL connections and counts relayed-looking pairs.
#[derive(Default)]
pub struct Pairing {
    recent: VecDeque<(Timestamp, Endpoint, IpAddr, u64, u64)>,
    scores: HashMap<(Endpoint, Endpoint), u64, ahash::RandomState>,
    /// Per connection: the connections its requests were relayed over (or came from), with
    /// how many requests; bounded, and taken when the connection is finished.
    links: HashMap<u64, BTreeMap<u64, u32>, ahash::RandomState>,
}

/// Connections linked to one connection per relayed request.
const MAX_LINKS: usize = 64;

impl Pairing {
    /// A request of `size` bytes on connection `conn` from `client` to `server` at `ts`.
    pub fn request(
        &mut self,
        ts: Timestamp,
        conn: u64,
        client: Endpoint,
        server: Endpoint,
        size: u64,
    ) {
        while self
            .recent
            .front()
            .is_some_and(|(t, ..)| ts.nanos_since(*t) > PAIR_WINDOW_NS)
        {
            self.recent.pop_front();
        }
        let mut matched = None;
        for (_, front, _, sz, fconn) in self.recent.iter().rev() {
            // The relayed copy comes from the proxy's host, to another server, same size.
            if *sz == size && *front != server && client.ip == front.ip {
                *self.scores.entry((*front, server)).or_default() += 1;
                // The latest such request is the one this relays.
                matched.get_or_insert(*fconn);
            }
        }
        if let Some(front_conn) = matched {
            for (a, b) in [(front_conn, conn), (conn, front_conn)] {
                let m = self.links.entry(a).or_default();
                if m.len() < MAX_LINKS || m.contains_key(&b) {
                    *m.entry(b).or_default() += 1;
                }
            }
        }
        // Bounded: a flood of requests within the window keeps only the newest.
        if self.recent.len() >= 4096 {
            self.recent.pop_front();
        }
        self.recent.push_back((ts, server, client.ip, size, conn));
    }

    /// The links of a finished connection: (other connection id, requests), removed.
    pub fn take_links(&mut self, conn: u64) -> Vec<(u64, u32)> {
        self.links
            .remove(&conn)
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// The proxy pairs the requests support.
    pub fn pairs(&self) -> Vec<ProxyPair> {
        let mut out: Vec<ProxyPair> = self
            .scores
            .iter()
            .filter(|((a, b), n)| {
                let back = self.scores.get(&(*b, *a)).copied().unwrap_or(0);
                **n >= MIN_PAIRS && **n >= DOMINANCE * back.max(1)
            })
            .map(|((a, b), n)| ProxyPair {
                frontend: *a,
                backend: *b,
                paired_requests: *n,
            })
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.paired_requests));
        out
    }
}
