//! Incidents: closes on the two legs of a proxy that belong together — a backend closed by the
//! proxy and, within a few milliseconds, the frontend whose request rode on it; several backend
//! resets close together are one incident — matched against known failure signatures.

use serde::Serialize;

use super::legs::Leg;
use super::{Label, State};
use crate::event::CapabilityFlags;
use crate::model::{Point, Summary};
use crate::time::Timestamp;

/// Closes on the two legs within this window are linked, by default (`--link-window-ms`).
pub const LINK_WINDOW_NS: i64 = 5_000_000;
/// Backend resets this close to each other are one burst.
const BURST_NS: i64 = 5_000_000;
/// #4500: the aborted frontend TLS handshake comes 10–40 ms before the backend break; a margin.
const TRIGGER_MIN_NS: i64 = 5_000_000;
const TRIGGER_MAX_NS: i64 = 100_000_000;
/// Idle-pool form: the break comes at the next keep-alive ping, seconds after the trigger
/// (ProxySQL pings idle backends every `mysql-ping_interval_server_msec`, 10 s by default).
const PING_TRIGGER_MAX_NS: i64 = 30_000_000_000;
/// A backend retired by age is closed within this long after its last response.
const AGE_RETURN_MS: f64 = 5.0;
/// Problem closes kept for incident building (beyond it, the oldest are dropped).
const MAX_KEPT: usize = 100_000;

/// A known failure signature (docs/signatures.md), with its references.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Signature {
    /// Identifier.
    pub id: &'static str,
    /// What the packets show.
    pub shows: &'static str,
    /// Cause and versions.
    pub cause: &'static str,
    /// Upstream references.
    pub references: &'static [&'static str],
    /// Fix.
    pub fix: &'static str,
    /// Workaround.
    pub workaround: &'static str,
}

/// ProxySQL's dirty OpenSSL error queue after an aborted frontend TLS handshake.
pub const DIRTY_SSL: Signature = Signature {
    id: "proxysql-dirty-ssl-error-queue",
    shows: "a frontend aborts its TLS handshake; 10-40 ms later the proxy closes a busy backend \
            with no COM_QUIT, then the frontend whose request rode on it with FIN, no ERR, no \
            close_notify",
    cause: "ProxySQL 2.5.x-2.6.3 with mysql-have_ssl=true (2.6.3 also without it when a client \
            sends an SSLRequest): the failed SSL_shutdown() of the aborted frontend leaves an \
            OpenSSL error on the worker thread and an unrelated backend TLS read then fails \
            with 2013",
    references: &[
        "sysown/proxysql#4500",
        "sysown/proxysql#4556",
        "sysown/proxysql#4555",
        "sysown/proxysql#4602",
    ],
    fix: "upgrade to ProxySQL 2.6.4",
    workaround: "turn frontend TLS off (mysql-have_ssl=false)",
};

/// A plaintext COM_QUIT written inside a TLS backend connection.
pub const PLAINTEXT_QUIT: Signature = Signature {
    id: "proxysql-plaintext-quit-in-tls",
    shows: "on a TLS backend leg the proxy writes 01 00 00 00 01 (a plaintext COM_QUIT, not a \
            TLS record) and then FIN",
    cause: "ProxySQL closing backend TLS connections; the server logs 'Aborted connection ... \
            error reading communication packets'",
    references: &["sysown/proxysql#2800"],
    fix: "harmless for clients; the server-side log noise goes away when ProxySQL sends the \
          COM_QUIT through TLS",
    workaround: "ignore the server's aborted-connection warnings for these",
};

/// The server's wait_timeout shorter than the proxy's pool idle time.
pub const WAIT_TIMEOUT: Signature = Signature {
    id: "server-wait-timeout",
    shows: "idle pooled backends reset by the server (MariaDB: RST only; MySQL 8.0.24+: ERR \
            4031 then FIN); later a client request lands on a dead backend and the proxy \
            closes that frontend with FIN and no ERR",
    cause: "backend wait_timeout shorter than the time the proxy keeps idle connections pooled",
    references: &["sysown/proxysql#1600"],
    fix: "raise the server's wait_timeout above the pool's idle time",
    workaround: "make the pool ping or retire connections sooner \
                 (mysql-ping_interval_server_msec, mysql-connection_max_age_ms)",
};

/// Backends closed without COM_QUIT at a connection-age boundary.
pub const MAX_AGE: Signature = Signature {
    id: "proxy-close-without-quit",
    shows: "the proxy closes idle backends with FIN and no COM_QUIT, each at about the same age",
    cause: "ProxySQL connection_max_age_ms in 1.4.x",
    references: &["sysown/proxysql#1861"],
    fix: "upgrade ProxySQL (later versions send COM_QUIT, 2.6 resets in place)",
    workaround: "none needed for clients; the server logs aborted connections",
};

/// A client that never finishes its handshake is timed out by the proxy.
pub const CONNECT_TIMEOUT: Signature = Signature {
    id: "client-connect-timeout",
    shows: "greeting, no handshake response from the client, then the proxy's FIN",
    cause: "mysql-connect_timeout_client expired",
    references: &["sysown/proxysql#3089"],
    fix: "find why the client stalls after the greeting (TLS setup, DNS, a health check)",
    workaround: "raise mysql-connect_timeout_client",
};

/// Every signature, for `explain` and documentation.
pub const SIGNATURES: &[Signature] = &[
    DIRTY_SSL,
    PLAINTEXT_QUIT,
    WAIT_TIMEOUT,
    MAX_AGE,
    CONNECT_TIMEOUT,
];

/// One close in an incident.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Connection id.
    pub conn: u64,
    /// Leg.
    pub leg: Leg,
    /// Verdict label.
    pub label: Label,
    /// When.
    pub at: Point,
    /// Milliseconds after the incident's first step.
    pub after_ms: f64,
    /// The sentence.
    pub text: String,
}

/// A group of linked closes.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    /// Matched signature.
    pub signature: Option<Signature>,
    /// The steps in time order (a trigger first, when there is one).
    pub steps: Vec<Step>,
    /// How sure the signature is (None without one).
    pub confidence: Option<super::Confidence>,
    /// What set the confidence, in words.
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug)]
struct Brief {
    conn: u64,
    leg: Leg,
    label: Label,
    state: State,
    at: Point,
    ts: Timestamp,
    text: String,
    /// Connection age at the close, ms.
    age_ms: f64,
    /// The client sent nothing at all.
    client_silent: bool,
    /// Milliseconds since the server last sent data.
    server_idle_ms: f64,
    /// A backend closed under an unanswered frontend request (pairing across the proxy).
    cut: Option<super::legs::Cut>,
    /// A backend closed right after the server answered its keep-alive ping.
    ping: bool,
    /// The relays of a backend that were retries of a frontend request: (frontend conn,
    /// frontend frame, this frame).
    retried: Vec<(u64, u64, u64)>,
    /// How sure the verdict and leg are.
    confidence: super::Confidence,
    /// The greeting offered TLS (CLIENT_SSL), when a greeting was seen.
    tls_offered: Option<bool>,
    /// How sure its leg is.
    leg_confidence: Option<super::Confidence>,
}

/// An incident from its steps, times relative to the first.
fn incident(signature: Option<Signature>, steps: Vec<&Brief>) -> Incident {
    let start = steps.first().map_or(Timestamp(0), |b| b.ts);
    let confidence = signature.map(|_| {
        steps
            .iter()
            .map(|b| b.confidence)
            .min()
            .unwrap_or(super::Confidence::Possible)
    });
    Incident {
        signature,
        confidence,
        evidence: Vec::new(),
        steps: steps
            .into_iter()
            .map(|b| Step {
                conn: b.conn,
                leg: b.leg,
                label: b.label,
                at: b.at,
                after_ms: b.ts.nanos_since(start) as f64 / 1e6,
                text: b.text.clone(),
            })
            .collect(),
    }
}

/// Collects problem closes as connections finish and builds incidents at the end.
pub struct Incidents {
    kept: std::collections::VecDeque<Brief>,
    window_ns: i64,
    /// Streaming ([`Incidents::ready`]): the closes owned by the incidents handed out, with each
    /// incident's first time; an incident that owns one of them was handed out already (a late
    /// close joined it since), and is not handed out twice.
    emitted: std::collections::HashMap<u64, i64, ahash::RandomState>,
    /// The latest close time kept, and the `now` of the last streaming build.
    latest: Option<Timestamp>,
    built_at: Option<Timestamp>,
    /// A close was kept since the last streaming build.
    dirty: bool,
    /// Retries seen on backends that closed cleanly: (frontend conn, frontend frame) → (backend
    /// conn, backend frame). Bounded.
    retries: std::collections::HashMap<(u64, u64), Vec<(u64, u64)>, ahash::RandomState>,
}

impl Default for Incidents {
    fn default() -> Self {
        Incidents::new(LINK_WINDOW_NS)
    }
}

fn sentence(s: &Summary) -> Option<(Brief, Label)> {
    let v = s.verdict.as_ref()?;
    let at = v.at?;
    let who = match s.leg {
        Leg::Frontend => format!("frontend {} (client {})", s.id, s.client),
        Leg::Backend => match s.mysql.as_ref().and_then(|m| m.thread_id) {
            Some(t) => format!("backend {} (thread {t}, {})", s.id, s.server),
            None => format!("backend {} ({})", s.id, s.server),
        },
        _ => format!("connection {} ({} -> {})", s.id, s.client, s.server),
    };
    let flight = v.in_flight.as_ref().map(|f| match (&f.command, &f.text) {
        (Some(c), Some(t)) => format!(", request in flight: {} {t:?}", c.to_uppercase()),
        (Some(c), None) => format!(", request in flight: {}", c.to_uppercase()),
        _ => ", a request in flight (inferred)".to_string(),
    });
    let text = match v.label {
        Label::ProxyResetBackend => format!(
            "{who} closed by the proxy with {}, no COM_QUIT{}{}",
            v.how,
            match (s.cut, s.teardown.answered_ping()) {
                (Some(c), _) => format!(
                    ", while frontend {}'s request (frame {}) rode on it (frame {}), unanswered",
                    c.conn, c.frame, c.relayed_frame
                ),
                (None, true) => ", right after the server answered its keep-alive ping".into(),
                _ => flight.clone().unwrap_or_default(),
            },
            match v.idle_ms.s2c {
                Some(ms) if ms < 5.0 && s.cut.is_some() =>
                    format!(" (the server's last data {ms:.1} ms before)"),
                _ => String::new(),
            }
        ),
        Label::ProxyClosedFrontend => format!(
            "{who} closed by the proxy with {}, {}{}",
            v.how,
            if s.tls.as_ref().is_some_and(|t| t.decryption != Some("keys")) {
                "no ERR or close_notify visible (TLS not decrypted)"
            } else {
                "no ERR, no close_notify"
            },
            flight.unwrap_or_default()
        ),
        Label::PlaintextInTls => format!(
            "{who}: the proxy wrote a plaintext COM_QUIT inside TLS, then {}",
            match s.close.how {
                crate::model::CloseKind::Fin => "FIN",
                _ => "FIN/RST",
            }
        ),
        Label::ServerIdleTimeout => format!(
            "{who} reset by the server while idle in the pool ({})",
            v.how
        ),
        Label::HandshakeFailed if s.bytes.c2s == 0 => {
            format!(
                "{who}: greeting sent, the client sent nothing, closed by the proxy with {}",
                v.how
            )
        }
        Label::ClientAbort if v.state == State::TlsHandshake => {
            format!(
                "{who} sent an SSLRequest and left before its TLS handshake finished ({})",
                v.how
            )
        }
        other => format!(
            "{who}: {} ({}){}",
            other.as_str(),
            v.how,
            flight.unwrap_or_default()
        ),
    };
    Some((
        Brief {
            conn: s.id,
            leg: s.leg,
            label: v.label,
            state: v.state,
            at: at.at,
            ts: at.at.ts,
            text,
            age_ms: at.at.ts.nanos_since(s.start.ts) as f64 / 1e6,
            client_silent: s.bytes.c2s == 0,
            server_idle_ms: v.idle_ms.s2c.unwrap_or(f64::MAX),
            cut: s.cut,
            ping: s.teardown.answered_ping(),
            retried: s
                .relays
                .iter()
                .filter(|r| r.retry && !r.frontend)
                .map(|r| (r.conn, r.peer_frame, r.frame))
                .collect(),
            confidence: v.confidence,
            leg_confidence: s.leg_confidence,
            tls_offered: s
                .mysql
                .as_ref()
                .and_then(|m| m.server_capabilities)
                .map(|c| c.contains(CapabilityFlags::CLIENT_SSL)),
        },
        v.label,
    ))
}

impl Incidents {
    /// Links closes on the two legs that happen within `window_ns` of each other.
    pub fn new(window_ns: i64) -> Self {
        Incidents {
            kept: Default::default(),
            window_ns,
            emitted: Default::default(),
            latest: None,
            built_at: None,
            dirty: false,
            retries: Default::default(),
        }
    }

    /// True when `s` can be a step of an incident: a problem close on a leg of a proxy, or a
    /// frontend that left in its TLS handshake (a trigger). Only these are kept.
    pub fn may_be_a_step(s: &Summary) -> bool {
        let Some(v) = s.verdict.as_ref() else {
            return false;
        };
        matches!(s.leg, Leg::Frontend | Leg::Backend)
            && (v.label.is_problem() || (s.leg == Leg::Frontend && v.state == State::TlsHandshake))
    }

    /// Most closes kept (the oldest dropped first).
    pub const MAX_KEPT: usize = MAX_KEPT;

    /// A finished connection.
    pub fn add(&mut self, s: &Summary) {
        if !matches!(s.leg, Leg::Frontend | Leg::Backend) {
            return;
        }
        for r in s.relays.iter().filter(|r| r.retry && !r.frontend) {
            if self.retries.len() >= MAX_KEPT {
                self.retries.clear();
            }
            let v = self.retries.entry((r.conn, r.peer_frame)).or_default();
            if v.len() < 4 {
                v.push((s.id, r.frame));
            }
        }
        let Some((b, _)) = sentence(s) else {
            return;
        };
        if Self::may_be_a_step(s) {
            if self.kept.len() >= MAX_KEPT {
                self.kept.pop_front();
            }
            self.latest = Some(self.latest.map_or(b.ts, |l| l.max(b.ts)));
            self.kept.push_back(b);
            self.dirty = true;
        }
    }

    /// The incidents, in time order.
    pub fn build(&self) -> Vec<Incident> {
        let mut briefs: Vec<Brief> = self.kept.iter().cloned().collect();
        briefs.sort_by_key(|b| b.ts);
        self.build_from(&briefs)
    }

    /// Streaming: the incidents that can no longer change at capture time `now` and were not
    /// handed out before. An incident is settled when its last close is `settle_ns` in the
    /// past (closes reach here only when their connection is finished, so `settle_ns` must
    /// cover the tracker's linger too). Only closes within `horizon_ns` of `now` are looked at,
    /// so the work per call stays bounded over hours.
    pub fn ready(
        &mut self,
        now: Timestamp,
        settle_ns: i64,
        horizon_ns: i64,
        pending: &[Timestamp],
    ) -> Vec<Incident> {
        let Some(latest) = self.latest else {
            return Vec::new();
        };
        // Nothing kept since the last build, which came after everything had settled.
        if !self.dirty
            && self
                .built_at
                .is_some_and(|b| b.nanos_since(latest) > settle_ns)
        {
            return Vec::new();
        }
        // Closes past the horizon can no longer join an incident: streaming drops them, so that
        // memory stays flat over hours (the end-of-run `build` then covers the horizon only).
        self.kept.retain(|b| now.nanos_since(b.ts) <= horizon_ns);
        let mut briefs: Vec<Brief> = self.kept.iter().cloned().collect();
        briefs.sort_by_key(|b| b.ts);
        let mut out = Vec::new();
        let mut held = false;
        for i in self.build_from(&briefs) {
            let (Some(first), Some(last)) = (i.steps.first(), i.steps.last()) else {
                continue;
            };
            let last_ts = i.steps.iter().map(|s| s.at.ts).max().unwrap_or(last.at.ts);
            if now.nanos_since(last_ts) < settle_ns {
                continue;
            }
            // A close seen on a connection not finished yet, within the link window of this
            // incident's steps, may still join it (`pending` is sorted).
            let first_ts = i.steps.iter().map(|s| s.at.ts).min().unwrap_or(first.at.ts);
            let from = Timestamp(first_ts.0.saturating_sub(self.window_ns));
            let to = Timestamp(last_ts.0.saturating_add(self.window_ns));
            let k = pending.partition_point(|p| *p < from);
            if pending.get(k).is_some_and(|p| *p <= to) {
                // Built again at the next call even if nothing new is kept (the pending
                // connection may finish clean and add no close).
                held = true;
                continue;
            }
            // A close the incident owns (not a trigger or a dead backend that other incidents
            // may cite too) already handed out: this is that incident, grown by a late close.
            let owned =
                |s: &&Step| !matches!(s.label, Label::ClientAbort | Label::ServerIdleTimeout);
            if i.steps
                .iter()
                .filter(owned)
                .any(|s| self.emitted.contains_key(&s.conn))
            {
                continue;
            }
            for s in i.steps.iter().filter(owned) {
                self.emitted.insert(s.conn, first.at.ts.0);
            }
            out.push(i);
        }
        self.built_at = Some(now);
        self.dirty = held;
        self.emitted
            .retain(|_, ts| now.nanos_since(Timestamp(*ts)) <= 2 * horizon_ns);
        out
    }

    fn build_from(&self, briefs: &[Brief]) -> Vec<Incident> {
        let mut out = self.resets(briefs);
        let linked: Vec<u64> = out
            .iter()
            .flat_map(|i| i.steps.iter().map(|s| s.conn))
            .collect();
        for b in briefs {
            if b.leg == Leg::Backend && b.label == Label::PlaintextInTls {
                out.push(incident(Some(PLAINTEXT_QUIT), vec![b]));
            }
            if b.leg == Leg::Frontend && b.label == Label::HandshakeFailed && b.client_silent {
                out.push(incident(Some(CONNECT_TIMEOUT), vec![b]));
            }
            if b.leg == Leg::Frontend
                && b.label == Label::ProxyClosedFrontend
                && !linked.contains(&b.conn)
            {
                // A request that landed on a dead pooled backend: the server reset it earlier.
                let dead: Vec<&Brief> = briefs
                    .iter()
                    .filter(|r| {
                        r.leg == Leg::Backend && r.label == Label::ServerIdleTimeout && r.ts < b.ts
                    })
                    .collect();
                if !dead.is_empty() {
                    let mut steps: Vec<&Brief> = dead.iter().rev().take(3).rev().copied().collect();
                    steps.push(b);
                    out.push(incident(Some(WAIT_TIMEOUT), steps));
                }
            }
        }
        out.sort_by(|a, b| match (a.steps.first(), b.steps.first()) {
            (Some(x), Some(y)) => x.at.capture_order(&y.at),
            (x, y) => x.is_some().cmp(&y.is_some()),
        });
        out
    }

    fn resets(&self, briefs: &[Brief]) -> Vec<Incident> {
        let resets: Vec<&Brief> = briefs
            .iter()
            .filter(|b| b.label == Label::ProxyResetBackend)
            .collect();
        let triggers: Vec<&Brief> = briefs
            .iter()
            .filter(|b| {
                b.leg == Leg::Frontend
                    && b.label == Label::ClientAbort
                    && b.state == State::TlsHandshake
            })
            .collect();
        // Idle resets at about the same connection age: the proxy retires by age.
        let idle_ages: Vec<f64> = resets
            .iter()
            .filter(|b| b.state == State::Idle && b.cut.is_none() && !b.ping)
            .map(|b| b.age_ms)
            .collect();
        let (lo, hi) = idle_ages
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), a| (lo.min(*a), hi.max(*a)));
        let by_age = idle_ages.len() >= 2 && lo > 100.0 && hi <= lo * 1.3;
        let mut out = Vec::new();
        let mut i = 0;
        while i < resets.len() {
            // A burst: resets within BURST_NS of the previous one.
            let mut j = i + 1;
            while j < resets.len() && resets[j].ts.nanos_since(resets[j - 1].ts) <= BURST_NS {
                j += 1;
            }
            let burst = &resets[i..j];
            i = j;
            let first = burst[0].ts;
            let last = burst[burst.len() - 1].ts;
            // The frontends whose requests rode on these backends, closed by the proxy soon
            // after; failing pairing, any frontend the proxy closed in the window.
            let carried: Vec<u64> = burst.iter().filter_map(|b| b.cut.map(|c| c.conn)).collect();
            let fronts: Vec<&Brief> = briefs
                .iter()
                .filter(|b| {
                    b.label == Label::ProxyClosedFrontend
                        && b.ts.nanos_since(first) >= 0
                        && b.ts.nanos_since(last) <= self.window_ns
                        && (carried.is_empty() || carried.contains(&b.conn))
                })
                .collect();
            // #4500's victim: a backend the proxy closed with no COM_QUIT while the server was
            // answering a request it had relayed, or with a frontend dropped by the proxy right
            // after it (the server's answer may have come just before the break, never relayed:
            // busy), or right after the server answered its keep-alive ping (idle pool).
            let busy = !fronts.is_empty()
                || burst.iter().any(|b| {
                    b.cut.is_some() || matches!(b.state, State::RequestInFlight | State::Streaming)
                });
            let ping = burst.iter().any(|b| b.ping);
            let trigger = triggers.iter().rev().copied().find(|t| {
                let since = first.nanos_since(t.ts);
                (busy && (TRIGGER_MIN_NS..=TRIGGER_MAX_NS).contains(&since))
                    || (ping && (0..=PING_TRIGGER_MAX_NS).contains(&since))
            });
            let mut steps: Vec<&Brief> = trigger.into_iter().collect();
            steps.extend(burst.iter().copied());
            steps.extend(fronts.iter().copied());
            // Retired by age: idle, closed just as it came back from a response (a pool sweep
            // closes connections that have sat idle), at about the same age as the others.
            let idle = burst.iter().all(|b| {
                b.state == State::Idle
                    && b.cut.is_none()
                    && !b.ping
                    && b.server_idle_ms < AGE_RETURN_MS
            });
            let signature = match trigger {
                Some(_) => Some(DIRTY_SSL),
                None if busy || ping => Some(DIRTY_SSL),
                None if idle && by_age => Some(MAX_AGE),
                None => None,
            };
            let mut inc = incident(signature, steps);
            if signature.is_some_and(|s| s.id == DIRTY_SSL.id) {
                let mut ev = Vec::new();
                // The closes themselves are facts; what can be doubted is whose connections they
                // are (the legs) and whether the trigger is there.
                let mut conf = trigger
                    .iter()
                    .chain(burst.iter())
                    .chain(fronts.iter())
                    .map(|b| b.leg_confidence.unwrap_or(super::Confidence::Possible))
                    .min()
                    .unwrap_or(super::Confidence::Possible);
                if conf == super::Confidence::Certain {
                    ev.push("legs certain: named by the command line or the ProxySQL log".into());
                }
                match trigger {
                    Some(t) => {
                        ev.push(format!(
                            "trigger: frontend {} aborted its TLS handshake {:.1} ms before the first break",
                            t.conn,
                            first.nanos_since(t.ts) as f64 / 1e6
                        ));
                        if t.tls_offered == Some(false) {
                            ev.push(
                                "the proxy's greeting offered no TLS (mysql-have_ssl=false), yet the client sent \
                                 an SSLRequest: ProxySQL 2.6.3 still starts TLS for it, and \
                                 is hit all the same"
                                    .into(),
                            );
                        }
                    }
                    None => {
                        ev.push(
                            "no aborted frontend TLS handshake in the capture before the break \
                             (the trigger may be on another interface, or before the capture \
                             started)"
                                .into(),
                        );
                        conf = conf.min(super::Confidence::Possible);
                    }
                }
                for b in burst {
                    if let Some(c) = b.cut {
                        ev.push(format!(
                            "backend {} carried frontend {}'s request (frame {} relayed at frame {}), unanswered, when the proxy closed it",
                            b.conn, c.conn, c.frame, c.relayed_frame
                        ));
                        match self.retry_of(briefs, c.conn, c.frame, b.conn) {
                            Some((bc, bf)) => ev.push(format!(
                                "hidden break: the proxy re-sent frontend {}'s request on backend {bc} (frame {bf}); the client saw nothing",
                                c.conn
                            )),
                            None if !fronts.iter().any(|f| f.conn == c.conn) => ev.push(format!(
                                "frontend {} was not closed with it: a retry the capture may not show",
                                c.conn
                            )),
                            None => {}
                        }
                    } else if b.ping {
                        ev.push(format!(
                            "backend {} was closed right after the server answered its keep-alive COM_PING (idle-pool form)",
                            b.conn
                        ));
                    }
                }
                inc.confidence = Some(conf);
                inc.evidence = ev;
            }
            out.push(inc);
        }
        out
    }

    /// The backend request, on another backend than `broken`, that re-sent frontend `conn`'s
    /// request at `frame` after `broken` broke (a retry). Retries go to new backends, so the
    /// first one after the broken backend's own (a higher connection id) is it.
    fn retry_of(&self, briefs: &[Brief], conn: u64, frame: u64, broken: u64) -> Option<(u64, u64)> {
        let mut found: Vec<(u64, u64)> = briefs
            .iter()
            .flat_map(|b| {
                b.retried
                    .iter()
                    .filter(move |(c, f, _)| *c == conn && *f == frame)
                    .map(move |&(_, _, mine)| (b.conn, mine))
            })
            .chain(
                self.retries
                    .get(&(conn, frame))
                    .into_iter()
                    .flatten()
                    .copied(),
            )
            .filter(|(b, _)| *b > broken)
            .collect();
        found.sort_unstable();
        found.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend the proxy reset while idle (no trigger, no ping): a step of an unnamed burst.
    fn reset(conn: u64, ms: i64) -> Brief {
        let ts = Timestamp(1_000_000_000 + ms * 1_000_000);
        Brief {
            conn,
            leg: Leg::Backend,
            label: Label::ProxyResetBackend,
            state: State::Idle,
            at: Point {
                frame: conn,
                file: 0,
                ts,
                t: 0.0,
            },
            ts,
            text: format!("backend {conn} reset"),
            age_ms: 50.0,
            client_silent: false,
            server_idle_ms: 10.0,
            cut: None,
            ping: false,
            retried: Vec::new(),
            confidence: super::super::Confidence::Probable,
            tls_offered: None,
            leg_confidence: None,
        }
    }

    /// Streaming's settle time and horizon in the tests below.
    const SETTLE: i64 = 2_000_000_000;
    const HORIZON: i64 = 600_000_000_000;

    fn keep(inc: &mut Incidents, b: Brief) {
        inc.latest = Some(inc.latest.map_or(b.ts, |l| l.max(b.ts)));
        inc.kept.push_back(b);
        inc.dirty = true;
    }

    #[test]
    fn a_streamed_incident_is_handed_out_once_even_when_a_late_close_joins_it() {
        let mut inc = Incidents::default();
        keep(&mut inc, reset(1, 0));
        let first = inc.ready(Timestamp(4_000_000_000), SETTLE, HORIZON, &[]);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].steps.len(), 1);
        // A close 3 ms after the first, finished late (a long linger, a loaded capture): the
        // burst grows to two steps, but it was handed out already.
        keep(&mut inc, reset(2, 3));
        assert_eq!(inc.build()[0].steps.len(), 2);
        assert!(inc
            .ready(Timestamp(5_000_000_000), SETTLE, HORIZON, &[])
            .is_empty());
        // A burst of its own is a new incident.
        keep(&mut inc, reset(3, 500));
        let next = inc.ready(Timestamp(6_000_000_000), SETTLE, HORIZON, &[]);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].steps[0].conn, 3);
    }

    #[test]
    fn a_close_on_a_connection_not_finished_holds_the_incident_it_could_join() {
        let mut inc = Incidents::default();
        keep(&mut inc, reset(1, 0));
        // Connection 2 closed 1 ms later but is not finished (its peer has not closed yet).
        let pending = [Timestamp(1_001_000_000)];
        assert!(inc
            .ready(Timestamp(4_000_000_000), SETTLE, HORIZON, &pending)
            .is_empty());
        // Connection 2 finishes: it joins, and the incident comes out whole, once; a pending
        // close outside the link window holds nothing.
        keep(&mut inc, reset(2, 1));
        let far = [Timestamp(3_500_000_000)];
        let out = inc.ready(Timestamp(4_200_000_000), SETTLE, HORIZON, &far);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].steps.len(), 2);
        assert!(inc
            .ready(Timestamp(4_300_000_000), SETTLE, HORIZON, &far)
            .is_empty());
    }

    #[test]
    fn a_held_incident_comes_out_when_the_pending_connection_finishes_clean() {
        let mut inc = Incidents::default();
        keep(&mut inc, reset(1, 0));
        let pending = [Timestamp(1_001_000_000)];
        assert!(inc
            .ready(Timestamp(4_000_000_000), SETTLE, HORIZON, &pending)
            .is_empty());
        // Nothing new is kept (a clean close); the incident still comes out.
        let out = inc.ready(Timestamp(5_000_000_000), SETTLE, HORIZON, &[]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].steps.len(), 1);
    }

    #[test]
    fn two_streamed_incidents_may_cite_the_same_trigger() {
        let mut inc = Incidents::default();
        let mut trigger = reset(1, 0);
        trigger.leg = Leg::Frontend;
        trigger.label = Label::ClientAbort;
        trigger.state = State::TlsHandshake;
        keep(&mut inc, trigger);
        // Two idle backends broken at their keep-alive pings, a second apart, after one trigger.
        for (conn, ms) in [(2, 400), (3, 1400)] {
            let mut b = reset(conn, ms);
            b.ping = true;
            keep(&mut inc, b);
        }
        let out = inc.ready(Timestamp(6_000_000_000), SETTLE, HORIZON, &[]);
        let steps: Vec<Vec<u64>> = out
            .iter()
            .map(|i| i.steps.iter().map(|s| s.conn).collect())
            .collect();
        assert_eq!(steps, vec![vec![1, 2], vec![1, 3]]);
    }
}
