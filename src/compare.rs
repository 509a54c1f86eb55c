//! `compare`: two capture sets, before and after a change (an upgrade, a workaround), side by
//! side. Each set is tallied from its finished connections and run summary ([`SetTally`]),
//! normalised per hour of capture and per 1,000 frontend requests, and every count that
//! changed is tested against chance ([`stats::compare_rates`]). Pure functions over the
//! tallies; the `compare` command ([`crate::app`]) runs the pipeline over each set.

pub mod bins;
pub mod html;
pub mod latency;
pub mod stats;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::diagnosis::Leg;
use crate::model::Summary;
use crate::report::RunSummary;
use crate::time::Timestamp;

use bins::TimeBins;
use latency::{ConnTimes, Hist, Timer};
use stats::RateTest;

/// The JSON schema's name.
pub const SCHEMA: &str = "proxyscope.compare/1";

/// Below this p-value a change is called significant, below [`LIKELY`] likely.
pub const SIGNIFICANT: f64 = 0.01;
/// See [`SIGNIFICANT`]; a signature whose rate rose with a one-sided p below this got worse.
pub const LIKELY: f64 = 0.05;
/// With fewer events than this in both sets together and no significant change, the counts
/// are too few to tell.
pub const FEW: u64 = 10;

/// Incidents with no signature are keyed so (shown, not a gate: see [`Change::worse`]).
pub const UNMATCHED: &str = "(no signature)";

/// What one capture set showed.
#[derive(Clone, Debug, Default)]
pub struct SetTally {
    /// The capture files, as named.
    pub files: Vec<String>,
    /// Per file index: the first and last packet time of its connections.
    spans: BTreeMap<usize, (Timestamp, Timestamp)>,
    /// Frames read.
    pub frames: u64,
    /// Connections reported.
    pub connections: u64,
    /// Closes by leg and verdict label.
    pub closes: BTreeMap<(&'static str, &'static str), u64>,
    /// Incidents by signature id ([`UNMATCHED`] without one).
    pub incidents: BTreeMap<String, u64>,
    /// Requests on frontend connections (decoded commands, or undecrypted turns).
    pub frontend_requests: u64,
    /// Requests on backend connections.
    pub backend_requests: u64,
    /// Requests on direct connections (no proxy).
    pub direct_requests: u64,
    /// Backend connections whose SYN was captured (opened during the capture).
    pub backend_opened: u64,
    /// Frontend and direct connections whose verdict says what the client saw, by that text.
    pub client_errors: BTreeMap<String, u64>,
    /// Request latency by leg.
    pub latency: BTreeMap<&'static str, Hist>,
    /// Per paired statement: the frontend's latency minus its backend copy's.
    pub proxy_added: Hist,
    /// Latencies not kept (memory caps).
    pub latency_dropped: u64,
    /// Frontend requests the proxy relayed again on another backend (hidden retries).
    pub retries: u64,
    /// Problem closes over capture time (when the teardown started).
    pub problems_over_time: TimeBins,
    /// Incidents over capture time (their first step).
    pub incidents_over_time: TimeBins,
}

fn leg_name(l: Leg) -> &'static str {
    match l {
        Leg::Frontend => "frontend",
        Leg::Backend => "backend",
        Leg::Direct => "direct",
        Leg::Unknown => "unknown",
    }
}

impl SetTally {
    /// A tally of the set made of `files`.
    pub fn new(files: Vec<String>) -> SetTally {
        SetTally {
            files,
            ..SetTally::default()
        }
    }

    /// Adds one finished connection and what its requests showed.
    pub fn add(&mut self, s: &Summary, times: ConnTimes) {
        self.connections += 1;
        for p in [&s.start, &s.end] {
            let e = self.spans.entry(p.file).or_insert((p.ts, p.ts));
            e.0 = e.0.min(p.ts);
            e.1 = e.1.max(p.ts);
        }
        let leg = leg_name(s.leg);
        let label = s.verdict.as_ref().map_or("unknown", |v| v.label.as_str());
        *self.closes.entry((leg, label)).or_default() += 1;
        if let Some(v) = s.verdict.as_ref().filter(|v| v.label.is_problem()) {
            self.problems_over_time
                .add(v.at.as_ref().map_or(s.end.ts, |m| m.at.ts));
        }
        let mut requests = times.requests();
        // An undecrypted session's COM_QUIT is a client turn too; a clean quit is one.
        if times.commands == 0
            && s.verdict
                .as_ref()
                .is_some_and(|v| v.label == crate::model::diagnosis::Label::CleanQuit)
        {
            requests = requests.saturating_sub(1);
        }
        match s.leg {
            Leg::Frontend => self.frontend_requests += requests,
            Leg::Backend => {
                self.backend_requests += requests;
                if s.syn.is_some() {
                    self.backend_opened += 1;
                }
            }
            Leg::Direct => self.direct_requests += requests,
            Leg::Unknown => {}
        }
        if matches!(s.leg, Leg::Frontend | Leg::Direct) {
            if let Some(sees) = s.verdict.as_ref().and_then(|v| v.client_sees) {
                *self.client_errors.entry(sees.to_string()).or_default() += 1;
            }
        }
        if times.hist.count() > 0 {
            self.latency.entry(leg).or_default().merge(&times.hist);
        }
    }

    /// Adds the run's summary (frames, incidents) and the timer's run-wide results.
    pub fn finish(&mut self, run: &RunSummary, timer: &Timer) {
        self.frames += run.frames;
        for i in &run.incidents {
            let key = i.signature.as_ref().map_or(UNMATCHED, |s| s.id);
            *self.incidents.entry(key.to_string()).or_default() += 1;
            if let Some(first) = i.steps.first() {
                self.incidents_over_time.add(first.at.ts);
            }
        }
        self.proxy_added.merge(&timer.proxy_added);
        self.latency_dropped += timer.dropped;
        self.retries += timer.retries;
    }

    /// Seconds of capture: the union of the files' spans (files of one time from two vantage
    /// points count once; files of different days add up, the days between them do not).
    pub fn capture_s(&self) -> f64 {
        let mut spans: Vec<(Timestamp, Timestamp)> = self.spans.values().copied().collect();
        spans.sort();
        let mut total = 0.0;
        let mut cur: Option<(Timestamp, Timestamp)> = None;
        for (a, b) in spans {
            cur = match cur {
                Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    total += cb.secs_since(ca);
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((ca, cb)) = cur {
            total += cb.secs_since(ca);
        }
        total
    }

    /// The first and last packet time of the set's connections.
    pub fn bounds(&self) -> Option<(Timestamp, Timestamp)> {
        let first = self.spans.values().map(|s| s.0).min()?;
        let last = self.spans.values().map(|s| s.1).max()?;
        Some((first, last))
    }

    /// Client-visible errors, all texts.
    pub fn client_errors_total(&self) -> u64 {
        self.client_errors.values().sum()
    }
}

/// Which way a count moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Seen before, none after.
    WentAway,
    /// None before, seen after.
    New,
    /// The rate rose.
    Up,
    /// The rate fell.
    Down,
    /// The same rate.
    Same,
}

/// How sure a change is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    /// p < [`SIGNIFICANT`].
    Significant,
    /// p < [`LIKELY`].
    Likely,
    /// Not significant, and fewer than [`FEW`] events in all: too few to tell.
    TooFew,
    /// Not significant with enough events: could be chance.
    CouldBeChance,
}

impl Certainty {
    fn phrase(self) -> &'static str {
        match self {
            Certainty::Significant => "significant",
            Certainty::Likely => "likely real",
            Certainty::TooFew => "too few to tell",
            Certainty::CouldBeChance => "could be chance",
        }
    }
}

/// What a count is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exposure {
    /// Hours of capture (rates per hour).
    Hours,
    /// Frontend requests (rates per 1,000).
    FrontendRequests,
}

/// One count compared across the sets.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// `incident`, `close`, `client_errors` or `backend_churn`.
    pub metric: &'static str,
    /// The signature, `LEG LABEL`, or the metric's name.
    pub key: String,
    /// Count before.
    pub before: u64,
    /// Count after.
    pub after: u64,
    /// What the rates are per (and what the test weighs the counts by).
    pub exposure: Exposure,
    /// Rate before (per hour, or per 1,000 frontend requests); null without exposure.
    pub before_rate: Option<f64>,
    /// Rate after.
    pub after_rate: Option<f64>,
    /// Which way it moved.
    pub direction: Direction,
    /// Two-sided p-value of "the same rate" (exact conditional binomial test).
    pub p_value: f64,
    /// How sure.
    pub certainty: Certainty,
    /// A signature got worse: new after, or its rate rose with a one-sided p below
    /// [`LIKELY`]. Only incidents with a signature can be worse; this sets the exit code.
    pub worse: bool,
    /// The verdict line.
    pub text: String,
}

/// Compares one count: `a` before over exposure `ea`, `b` after over `eb`; `per` scales the
/// rate (1 per hour, 1000 per 1,000 requests).
pub fn change(
    metric: &'static str,
    key: &str,
    (a, ea): (u64, f64),
    (b, eb): (u64, f64),
    exposure: Exposure,
) -> Change {
    let per = match exposure {
        Exposure::Hours => 1.0,
        Exposure::FrontendRequests => 1000.0,
    };
    let rate = |n: u64, e: f64| (e > 0.0 && e.is_finite()).then(|| n as f64 / e * per);
    let (ra, rb) = (rate(a, ea), rate(b, eb));
    let t: RateTest = stats::compare_rates(a, ea, b, eb);
    let direction = match (a, b, ra, rb) {
        (1.., 0, _, _) => Direction::WentAway,
        (0, 1.., _, _) => Direction::New,
        (_, _, Some(x), Some(y)) if y > x * (1.0 + 1e-9) => Direction::Up,
        (_, _, Some(x), Some(y)) if y < x * (1.0 - 1e-9) => Direction::Down,
        _ => Direction::Same,
    };
    let certainty = if t.p_two_sided < SIGNIFICANT {
        Certainty::Significant
    } else if t.p_two_sided < LIKELY {
        Certainty::Likely
    } else if a.saturating_add(b) < FEW {
        Certainty::TooFew
    } else {
        Certainty::CouldBeChance
    };
    let worse = metric == "incident"
        && key != UNMATCHED
        && match direction {
            Direction::New => true,
            Direction::Up => t.p_up < LIKELY,
            _ => false,
        };
    let unit = match exposure {
        Exposure::Hours => "/h",
        Exposure::FrontendRequests => "/1k req",
    };
    let r = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{}{unit}", num(v)));
    let moved = match direction {
        Direction::WentAway => "went away".to_string(),
        Direction::New => "new".to_string(),
        Direction::Same => "unchanged".to_string(),
        Direction::Up | Direction::Down => {
            let word = if direction == Direction::Up {
                "up"
            } else {
                "down"
            };
            match (ra, rb) {
                (Some(x), Some(y)) if x > 0.0 && y > 0.0 => {
                    let f = if y > x { y / x } else { x / y };
                    format!("{word} x{f:.1}")
                }
                _ => word.to_string(),
            }
        }
    };
    let sure = if direction == Direction::Same {
        format!("p={}", pval(t.p_two_sided))
    } else {
        format!("{} (p={})", certainty.phrase(), pval(t.p_two_sided))
    };
    let name = match metric {
        "incident" | "close" => format!("{metric} {key}"),
        _ => key.to_string(),
    };
    let text = format!(
        "{name}: {moved}, {a} -> {b} ({} -> {}); {sure}{}",
        r(ra),
        r(rb),
        if worse { "  WORSE" } else { "" }
    );
    Change {
        metric,
        key: key.to_string(),
        before: a,
        after: b,
        exposure,
        before_rate: ra,
        after_rate: rb,
        direction,
        p_value: t.p_two_sided,
        certainty,
        worse,
        text,
    }
}

/// A number in a few significant characters.
fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn pval(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Every count of the two sets compared: incidents by signature, problem closes by leg and
/// label (per hour), client-visible errors and backend connections opened (per 1,000
/// frontend requests; per hour when a set has none). Counts zero in both sets are left out.
pub fn changes(before: &SetTally, after: &SetTally) -> Vec<Change> {
    let hours = |s: &SetTally| s.capture_s() / 3600.0;
    let (ha, hb) = (hours(before), hours(after));
    let mut out = Vec::new();
    let mut keys: Vec<&String> = before
        .incidents
        .keys()
        .chain(after.incidents.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let n = |s: &SetTally| s.incidents.get(k).copied().unwrap_or(0);
        out.push(change(
            "incident",
            k,
            (n(before), ha),
            (n(after), hb),
            Exposure::Hours,
        ));
    }
    let mut closes: Vec<&(&str, &str)> = before.closes.keys().chain(after.closes.keys()).collect();
    closes.sort();
    closes.dedup();
    for k in closes {
        let problem = !matches!(k.1, "clean_quit" | "clean_close" | "still_open");
        if !problem {
            continue;
        }
        let n = |s: &SetTally| s.closes.get(k).copied().unwrap_or(0);
        out.push(change(
            "close",
            &format!("{} {}", k.0, k.1),
            (n(before), ha),
            (n(after), hb),
            Exposure::Hours,
        ));
    }
    // Per request where both sets have requests, else per hour.
    let by_requests = before.frontend_requests > 0 && after.frontend_requests > 0;
    let (ea, eb, exposure) = if by_requests {
        (
            before.frontend_requests as f64,
            after.frontend_requests as f64,
            Exposure::FrontendRequests,
        )
    } else {
        (ha, hb, Exposure::Hours)
    };
    // Per-request counts, each only when either set has any.
    let per_request = [
        (
            "client_errors",
            "client-visible errors",
            before.client_errors_total(),
            after.client_errors_total(),
        ),
        (
            "backend_churn",
            "requests re-sent by the proxy",
            before.retries,
            after.retries,
        ),
        (
            "backend_churn",
            "backend connections opened",
            before.backend_opened,
            after.backend_opened,
        ),
    ];
    for (metric, key, a, b) in per_request {
        if a + b > 0 {
            out.push(change(metric, key, (a, ea), (b, eb), exposure));
        }
    }
    out
}

/// The latency summary of one histogram.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Latency {
    /// Requests timed.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

impl Latency {
    fn of(h: Option<&Hist>) -> Latency {
        Latency {
            count: h.map_or(0, Hist::count),
            p50_ms: h.and_then(|h| h.quantile_ms(0.5)),
            p99_ms: h.and_then(|h| h.quantile_ms(0.99)),
        }
    }
}

/// One set as the JSON document shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SetView {
    /// The capture files.
    pub files: Vec<String>,
    /// Seconds of capture (union of the files' spans).
    pub capture_s: f64,
    /// Frames read.
    pub frames: u64,
    /// Connections.
    pub connections: u64,
    /// Frontend requests (the per-1,000 base).
    pub frontend_requests: u64,
    /// Backend requests.
    pub backend_requests: u64,
    /// Direct requests.
    pub direct_requests: u64,
    /// Backend connections opened during the capture.
    pub backend_opened: u64,
    /// Backend connections opened per 1,000 frontend requests.
    pub backend_churn_per_1k: Option<f64>,
    /// Frontend requests the proxy re-sent on another backend (hidden retries).
    pub retries: u64,
    /// Closes by leg and label (key `LEG LABEL`).
    pub closes: Vec<Row>,
    /// Incidents by signature.
    pub incidents: Vec<Row>,
    /// Client-visible errors by what the client most likely saw.
    pub client_errors: Vec<Row>,
    /// Latency by leg (`frontend`: across the proxy as the client sees it; `backend`: at the
    /// server) and `proxy_added` (paired statements: frontend minus backend).
    pub latency: BTreeMap<String, Latency>,
    /// Latencies not kept (memory caps).
    pub latency_dropped: u64,
    /// The histograms behind the HTML page (not in the JSON document).
    #[serde(skip)]
    pub charts: Charts,
}

/// What the HTML page draws of one set.
#[derive(Clone, Debug, Default)]
pub struct Charts {
    /// The first and last packet time.
    pub bounds: Option<(Timestamp, Timestamp)>,
    /// Problem closes over time.
    pub problems: TimeBins,
    /// Incidents over time.
    pub incidents: TimeBins,
    /// Frontend latency (across the proxy); direct latency when there is no proxy.
    pub latency: Hist,
}

/// A count with its rates.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What is counted.
    pub key: String,
    /// How many.
    pub count: u64,
    /// Per hour of capture.
    pub per_hour: Option<f64>,
    /// Per 1,000 frontend requests.
    pub per_1k_requests: Option<f64>,
}

impl SetView {
    /// The view of a tally.
    pub fn of(s: &SetTally) -> SetView {
        let secs = s.capture_s();
        let row = |key: String, count: u64| Row {
            key,
            count,
            per_hour: (secs > 0.0).then(|| count as f64 / secs * 3600.0),
            per_1k_requests: (s.frontend_requests > 0)
                .then(|| count as f64 / s.frontend_requests as f64 * 1000.0),
        };
        let mut latency = BTreeMap::new();
        for leg in ["frontend", "backend", "direct"] {
            if let Some(h) = s.latency.get(leg) {
                latency.insert(leg.to_string(), Latency::of(Some(h)));
            }
        }
        latency.insert("proxy_added".into(), Latency::of(Some(&s.proxy_added)));
        SetView {
            files: s.files.clone(),
            capture_s: secs,
            frames: s.frames,
            connections: s.connections,
            frontend_requests: s.frontend_requests,
            backend_requests: s.backend_requests,
            direct_requests: s.direct_requests,
            backend_opened: s.backend_opened,
            backend_churn_per_1k: row(String::new(), s.backend_opened).per_1k_requests,
            retries: s.retries,
            closes: s
                .closes
                .iter()
                .map(|(&(leg, label), &n)| row(format!("{leg} {label}"), n))
                .collect(),
            incidents: s
                .incidents
                .iter()
                .map(|(k, &n)| row(k.clone(), n))
                .collect(),
            client_errors: s
                .client_errors
                .iter()
                .map(|(k, &n)| row(k.clone(), n))
                .collect(),
            latency,
            latency_dropped: s.latency_dropped,
            charts: Charts {
                bounds: s.bounds(),
                problems: s.problems_over_time.clone(),
                incidents: s.incidents_over_time.clone(),
                latency: s
                    .latency
                    .get("frontend")
                    .or_else(|| s.latency.get("direct"))
                    .cloned()
                    .unwrap_or_default(),
            },
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The set before the change.
    pub before: SetView,
    /// The set after.
    pub after: SetView,
    /// Every count compared.
    pub changes: Vec<Change>,
    /// The signatures that got worse (the exit code is 3 when there is one).
    pub worse: Vec<String>,
}

impl Comparison {
    /// Compares two tallies.
    pub fn of(before: &SetTally, after: &SetTally) -> Comparison {
        let changes = changes(before, after);
        let worse = changes
            .iter()
            .filter(|c| c.worse)
            .map(|c| c.key.clone())
            .collect();
        Comparison {
            schema: SCHEMA,
            before: SetView::of(before),
            after: SetView::of(after),
            changes,
            worse,
        }
    }

    /// The text report (lines of at most [`WIDTH`] columns).
    pub fn text(&self) -> String {
        let mut o = String::new();
        let (b, a) = (&self.before, &self.after);
        let set = |name: &str, s: &SetView, o: &mut String| {
            let files = s
                .files
                .iter()
                .map(|f| f.rsplit('/').next().unwrap_or(f))
                .collect::<Vec<_>>()
                .join(", ");
            // A file name is the only text here that did not come from us.
            let files = crate::report::term_safe(&files);
            let head = format!(
                "{name}: {:.1} s of capture, {} connections, {} frontend requests, files: ",
                s.capture_s, s.connections, s.frontend_requests
            );
            wrap(o, &format!("{head}{files}"), "  ");
        };
        set("before", b, &mut o);
        set("after ", a, &mut o);
        o.push('\n');
        let _ = writeln!(
            o,
            "Verdicts (exact Poisson rate test, two-sided p; p < {SIGNIFICANT} significant, < {LIKELY} likely):"
        );
        let moved: Vec<&Change> = self
            .changes
            .iter()
            .filter(|c| c.direction != Direction::Same)
            .collect();
        if moved.is_empty() {
            let _ = writeln!(o, "  nothing changed");
        }
        for c in moved {
            wrap(&mut o, &format!("  {}", c.text), "      ");
        }
        for c in self
            .changes
            .iter()
            .filter(|c| c.direction == Direction::Same)
        {
            wrap(&mut o, &format!("  {}", c.text), "      ");
        }
        let _ = writeln!(
            o,
            "  {}",
            if self.worse.is_empty() {
                "no signature got worse".to_string()
            } else {
                format!("WORSE: {}", self.worse.join(", "))
            }
        );
        o.push('\n');
        let _ = writeln!(o, "{:<34}{:<28}after", "", "before");
        let _ = writeln!(
            o,
            "{:<34}{:>8}{:>9}{:>11}{:>8}{:>9}{:>11}",
            "", "count", "per h", "per 1k req", "count", "per h", "per 1k req"
        );
        let table = |o: &mut String, title: &str, b: &[Row], a: &[Row]| {
            let mut keys: Vec<&String> = b.iter().chain(a).map(|r| &r.key).collect();
            keys.sort();
            keys.dedup();
            let _ = writeln!(o, "{title}{}", if keys.is_empty() { ": none" } else { "" });
            for k in keys {
                let cells = |rows: &[Row]| {
                    let r = rows.iter().find(|r| &r.key == k);
                    let f = |v: Option<f64>| v.map_or("-".to_string(), num);
                    format!(
                        "{:>8}{:>9}{:>11}",
                        r.map_or(0, |r| r.count),
                        f(r.map_or(Some(0.0), |r| r.per_hour)),
                        f(r.map_or(Some(0.0), |r| r.per_1k_requests))
                    )
                };
                let _ = writeln!(o, "  {:<32}{}{}", cut(k, 32), cells(b), cells(a));
            }
        };
        table(&mut o, "Incidents by signature", &b.incidents, &a.incidents);
        table(&mut o, "Closes by leg and label", &b.closes, &a.closes);
        table(
            &mut o,
            "Client-visible errors (frontend, direct)",
            &b.client_errors,
            &a.client_errors,
        );
        let churn = |s: &SetView| {
            let row = |key: &str, count: u64| Row {
                key: key.into(),
                count,
                per_hour: (s.capture_s > 0.0).then(|| count as f64 / s.capture_s * 3600.0),
                per_1k_requests: (s.frontend_requests > 0)
                    .then(|| count as f64 / s.frontend_requests as f64 * 1000.0),
            };
            vec![
                row("backend connections opened", s.backend_opened),
                row("requests re-sent by the proxy", s.retries),
            ]
        };
        table(&mut o, "Backend churn", &churn(b), &churn(a));
        o.push('\n');
        let _ = writeln!(
            o,
            "{:<34}{:>8}{:>9}{:>11}{:>8}{:>9}{:>11}",
            "Request latency (ms)", "timed", "p50", "p99", "timed", "p50", "p99"
        );
        for (key, name) in [
            ("frontend", "frontend: across the proxy"),
            ("backend", "backend: at the server"),
            ("proxy_added", "added by the proxy (paired)"),
            ("direct", "direct"),
        ] {
            let (lb, la) = (b.latency.get(key), a.latency.get(key));
            if lb.is_none_or(|l| l.count == 0) && la.is_none_or(|l| l.count == 0) {
                continue;
            }
            let cells = |l: Option<&Latency>| {
                let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
                format!(
                    "{:>8}{:>9}{:>11}",
                    l.map_or(0, |l| l.count),
                    f(l.and_then(|l| l.p50_ms)),
                    f(l.and_then(|l| l.p99_ms))
                )
            };
            let _ = writeln!(o, "  {:<32}{}{}", name, cells(lb), cells(la));
        }
        let _ = writeln!(
            o,
            "  (decoded MySQL only: request to the end of its response; not tested for chance)"
        );
        o
    }
}

/// The text report's width.
pub const WIDTH: usize = 100;

/// `s` cut to `n` characters (an ellipsis marks the cut).
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Writes `line` wrapped at [`WIDTH`] columns on word boundaries, continuation lines indented.
fn wrap(o: &mut String, line: &str, indent: &str) {
    // The line's own indentation is kept; words are what follows it.
    let body = line.trim_start_matches(' ');
    let mut cur = line
        .get(..line.len() - body.len())
        .unwrap_or("")
        .to_string();
    for word in body.split(' ') {
        let len = cur.chars().count();
        let started = !cur.trim().is_empty();
        if started && len + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(o, "{}", cur.trim_end());
            cur = indent.to_string();
        } else if started {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    let _ = writeln!(o, "{}", cur.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_gone_is_not_worse_and_a_new_one_is() {
        let gone = change("incident", "sig", (4, 1.0), (0, 1.0), Exposure::Hours);
        assert_eq!(gone.direction, Direction::WentAway);
        assert_eq!(gone.certainty, Certainty::TooFew);
        assert!(!gone.worse);
        assert!(gone.text.contains("went away, 4 -> 0"), "{}", gone.text);
        let new = change("incident", "sig", (0, 1.0), (4, 1.0), Exposure::Hours);
        assert_eq!(new.direction, Direction::New);
        assert!(new.worse);
        // Unmatched incidents and other metrics never gate.
        assert!(!change("incident", UNMATCHED, (0, 1.0), (4, 1.0), Exposure::Hours).worse);
        assert!(!change("close", "x", (0, 1.0), (40, 1.0), Exposure::Hours).worse);
    }

    #[test]
    fn a_rise_is_worse_only_when_unlikely_to_be_chance() {
        // 10 → 12 in the same time: could be chance, not worse.
        let small = change("incident", "sig", (10, 1.0), (12, 1.0), Exposure::Hours);
        assert_eq!(small.direction, Direction::Up);
        assert_eq!(small.certainty, Certainty::CouldBeChance);
        assert!(!small.worse);
        // 10 → 40: worse, significant.
        let big = change("incident", "sig", (10, 1.0), (40, 1.0), Exposure::Hours);
        assert_eq!(big.certainty, Certainty::Significant);
        assert!(big.worse);
        // 10 in 1 h → 20 in 2 h: the same rate.
        let same = change("incident", "sig", (10, 1.0), (20, 2.0), Exposure::Hours);
        assert_eq!(same.direction, Direction::Same);
        assert!(!same.worse);
        assert_eq!(same.before_rate, same.after_rate);
    }

    #[test]
    fn rates_are_per_hour_or_per_thousand_requests() {
        let c = change(
            "backend_churn",
            "b",
            (5, 10.0),
            (1, 7.0),
            Exposure::FrontendRequests,
        );
        assert_eq!(c.before_rate, Some(500.0));
        assert!(c.after_rate.is_some_and(|r| (r - 142.857).abs() < 0.01));
        assert_eq!(c.direction, Direction::Down);
        let none = change("close", "x", (3, 0.0), (1, 1.0), Exposure::Hours);
        assert_eq!(none.before_rate, None);
        assert_eq!(none.p_value, 1.0);
    }

    #[test]
    fn long_lines_wrap_within_the_width() {
        let mut o = String::new();
        let long = "word ".repeat(60);
        wrap(&mut o, &long, "    ");
        assert!(o.lines().count() >= 3);
        assert!(o.lines().all(|l| l.chars().count() <= WIDTH), "{o}");
        assert!(o.lines().skip(1).all(|l| l.starts_with("    word")), "{o}");
        let mut k = String::new();
        wrap(&mut k, "  two words", "    ");
        assert_eq!(k, "  two words\n");
        assert_eq!(cut("abcdef", 4), "abc…");
    }

    #[test]
    fn file_names_cannot_drive_the_terminal() {
        let t = SetTally::new(vec!["/tmp/a\x1b[2Jb.pcap".into()]);
        let text = Comparison::of(&t, &t).text();
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("a\\x1b[2Jb.pcap"), "{text}");
    }

    #[test]
    fn capture_time_is_the_union_of_the_files_spans() {
        let mut t = SetTally::default();
        let s = |a: i64, b: i64| (Timestamp(a * 1_000_000_000), Timestamp(b * 1_000_000_000));
        // File 0: 0–10 s, file 1: 5–12 s (overlapping vantage point), file 2: 100–103 s.
        t.spans.insert(0, s(0, 10));
        t.spans.insert(1, s(5, 12));
        t.spans.insert(2, s(100, 103));
        assert!((t.capture_s() - 15.0).abs() < 1e-9, "{}", t.capture_s());
    }
}
