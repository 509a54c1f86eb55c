//! Incidents: closes on the two legs of a proxy that belong together — a backend closed by the
//! proxy and, within a few milliseconds, the frontend whose request rode on it; several backend
//! resets close together are one incident — matched against known failure signatures.

use serde::Serialize;

use super::legs::Leg;
use super::{Label, State};
use crate::model::{Point, Summary};
use crate::time::Timestamp;

/// Closes on the two legs within this window are linked.
pub const LINK_WINDOW_NS: i64 = 5_000_000;
/// Backend resets this close to each other are one burst.
const BURST_NS: i64 = 5_000_000;
/// #4500: the aborted frontend TLS handshake comes 10–40 ms before the backend break; a margin.
const TRIGGER_MIN_NS: i64 = 5_000_000;
const TRIGGER_MAX_NS: i64 = 80_000_000;
/// Problem closes kept for incident building (beyond it, the oldest are dropped).
const MAX_KEPT: usize = 100_000;

/// A known failure signature (PROTOCOLS.md), with its references.
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
    cause: "ProxySQL 2.5.x-2.6.3 with mysql-have_ssl=true: the failed SSL_shutdown() of the \
            aborted frontend leaves an OpenSSL error on the worker thread and an unrelated \
            backend TLS read then fails with 2013",
    references: &[
        "sysown/proxysql#4500",
        "sysown/proxysql#4556",
        "sysown/proxysql#4555",
        "sysown/proxysql#4602",
    ],
    fix: "upgrade to ProxySQL 2.6.4",
    workaround: "turn frontend TLS off (mysql-have_ssl=false)",
};

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
}

/// Collects problem closes as connections finish and builds incidents at the end.
#[derive(Default)]
pub struct Incidents {
    kept: Vec<Brief>,
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
            "{who} closed by the proxy with {}, no COM_QUIT{}",
            v.how,
            flight.unwrap_or_default()
        ),
        Label::ProxyClosedFrontend => format!(
            "{who} closed by the proxy with {}, no ERR, no close_notify{}",
            v.how,
            flight.unwrap_or_default()
        ),
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
        },
        v.label,
    ))
}

impl Incidents {
    /// A finished connection.
    pub fn add(&mut self, s: &Summary) {
        if !matches!(s.leg, Leg::Frontend | Leg::Backend) {
            return;
        }
        let Some((b, label)) = sentence(s) else {
            return;
        };
        let keep = label.is_problem() || (b.leg == Leg::Frontend && b.state == State::TlsHandshake);
        if keep {
            if self.kept.len() >= MAX_KEPT {
                self.kept.remove(0);
            }
            self.kept.push(b);
        }
    }

    /// The incidents, in time order.
    pub fn build(&self) -> Vec<Incident> {
        let mut briefs = self.kept.clone();
        briefs.sort_by_key(|b| b.ts);
        let resets: Vec<&Brief> = briefs
            .iter()
            .filter(|b| b.label == Label::ProxyResetBackend)
            .collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < resets.len() {
            // A burst: resets within BURST_NS of the previous one.
            let mut j = i + 1;
            while j < resets.len() && resets[j].ts.nanos_since(resets[j - 1].ts) <= BURST_NS {
                j += 1;
            }
            let burst = &resets[i..j];
            let first = burst[0].ts;
            let last = burst[burst.len() - 1].ts;
            let fronts = briefs.iter().filter(|b| {
                b.label == Label::ProxyClosedFrontend
                    && b.ts.nanos_since(first) >= 0
                    && b.ts.nanos_since(last) <= LINK_WINDOW_NS
            });
            let trigger = briefs.iter().rfind(|b| {
                b.leg == Leg::Frontend
                    && b.label == Label::ClientAbort
                    && b.state == State::TlsHandshake
                    && (TRIGGER_MIN_NS..=TRIGGER_MAX_NS).contains(&first.nanos_since(b.ts))
            });
            let mut steps: Vec<&Brief> = trigger.into_iter().collect();
            steps.extend(burst.iter().copied());
            steps.extend(fronts);
            let start = steps.first().map_or(first, |b| b.ts);
            out.push(Incident {
                signature: trigger.map(|_| DIRTY_SSL),
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
            });
            i = j;
        }
        out
    }
}
