//! Chrome Trace Event Format (`{"traceEvents":[...]}`), which ui.perfetto.dev and
//! chrome://tracing open: one process per leg, one thread (track) per connection, the
//! connection's life and its requests as complete slices (`X`), closes, alerts and errors as
//! instant events (`i`), incidents as global instants with flow arrows across their steps.
//! `ts` is microseconds from the capture's start, exact to the nanosecond; `otherData` carries
//! that start (`capture_start`, and as `capture_start_unix_s` + `capture_start_unix_ns`) and
//! every slice and instant carries its wall-clock time as `args.time` (RFC 3339, UTC).
//! Absolute epoch microseconds as `ts` were rejected: as a double they resolve only a quarter
//! microsecond, which loses nanosecond captures and lets nested slices stick out, and both
//! viewers draw their axis from the first event anyway.

use std::io::{self, Write};

use serde_json::json;

use super::{lane_order, leg_name, requests, JsonSeq, Mark, Timeline};
use crate::diagnose::legs::Leg;
use crate::time::Timestamp;

const NS_PER_SEC: i64 = 1_000_000_000;

/// The process id of a leg's tracks.
pub fn pid(leg: Leg) -> u32 {
    match leg {
        Leg::Frontend => 1,
        Leg::Backend => 2,
        Leg::Direct => 3,
        Leg::Unknown => 4,
    }
}

fn us(t: f64) -> f64 {
    (t * 1e6 * 1000.0).round() / 1000.0
}

/// The wall-clock time (RFC 3339, UTC) of `t` seconds from the capture's start, when known.
fn wall(start: Option<Timestamp>, t: f64) -> Option<String> {
    let ns = (t * 1e9).round();
    // Saturating cast: f64 → i64 `as` clamps, and NaN becomes 0.
    start.map(|s| {
        Timestamp(s.0.saturating_add(ns as i64))
            .rfc3339()
            .to_string()
    })
}

/// Writes the trace JSON, event by event.
pub fn write(tl: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    let f = tl.filter();
    let start = tl.run.as_ref().and_then(|r| r.capture_start);
    let meta = json!({"schema": super::SCHEMA, "generator": "proxyscope",
                      "capture_start": start.map(|t| t.rfc3339().to_string()),
                      "capture_start_unix_s": start.map(|t| t.0.div_euclid(NS_PER_SEC)),
                      "capture_start_unix_ns": start.map(|t| t.0.rem_euclid(NS_PER_SEC)),
                      "ts": "microseconds since capture_start"});
    write!(out, "{{\"displayTimeUnit\":\"ms\",\"otherData\":{meta},")?;
    let mut ev = JsonSeq::open(out, "\"traceEvents\":")?;
    for leg in [Leg::Frontend, Leg::Backend, Leg::Direct, Leg::Unknown] {
        if tl.conns.iter().any(|s| s.leg == leg) {
            let p = pid(leg);
            ev.push(
                &json!({"ph": "M", "pid": p, "tid": 0, "name": "process_name",
                           "args": {"name": format!("{} leg", leg_name(leg))}}),
            )?;
            ev.push(
                &json!({"ph": "M", "pid": p, "tid": 0, "name": "process_sort_index",
                           "args": {"sort_index": p}}),
            )?;
        }
    }
    for (n, &i) in lane_order(&tl.conns).iter().enumerate() {
        let Some(s) = tl.conns.get(i) else { continue };
        let (p, tid) = (pid(s.leg), s.id);
        let label = s.verdict.as_ref().map_or("", |v| v.label.as_str());
        ev.push(
            &json!({"ph": "M", "pid": p, "tid": tid, "name": "thread_name",
                       "args": {"name": format!("#{} {} → {} {label}", s.id, s.client, s.server)}}),
        )?;
        ev.push(
            &json!({"ph": "M", "pid": p, "tid": tid, "name": "thread_sort_index",
                       "args": {"sort_index": n}}),
        )?;
        let (a, b) = (
            f.since.map_or(s.start.t, |x| s.start.t.max(x)),
            f.until.map_or(s.end.t, |x| s.end.t.min(x)),
        );
        // A capture's clock can step back: a connection's last packet may be stamped before
        // its first. The slice then has no length, never a negative one.
        let b = b.max(a);
        ev.push(
            &json!({"ph": "X", "pid": p, "tid": tid, "cat": "connection",
                       "name": format!("conn #{} {label}", s.id), "ts": us(a), "dur": us(b) - us(a),
                       "args": {"time": wall(start, a), "client": s.client.to_string(),
                                "server": s.server.to_string(),
                                "verdict": s.verdict, "relayed": s.relayed}}),
        )?;
        for r in requests(s) {
            if !f.span(r.start, r.end) {
                continue;
            }
            // Clipped to the connection's slice, so that slices nest.
            let clip = |t: f64| t.max(a).min(b);
            let (ra, rb) = (clip(r.start), clip(r.end.max(r.start)));
            ev.push(
                &json!({"ph": "X", "pid": p, "tid": tid, "cat": "request", "name": r.name,
                           "ts": us(ra), "dur": us(rb) - us(ra),
                           "args": {"time": wall(start, ra), "frame": r.frame,
                                    "unanswered": r.unanswered}}),
            )?;
        }
        for e in &s.events {
            let m = Mark::of(&e.event.kind);
            if !matches!(
                m,
                Mark::Fin | Mark::Rst | Mark::Alert | Mark::Err | Mark::Syn
            ) || !f.time(e.at.t)
            {
                continue;
            }
            ev.push(
                &json!({"ph": "i", "s": "t", "pid": p, "tid": tid, "cat": m.as_str(),
                           "name": format!("{} {}", e.event.kind.brief(), e.dir),
                           "ts": us(e.at.t),
                           "args": {"time": e.at.ts.rfc3339().to_string(), "frame": e.at.frame,
                                    "from": e.from.to_string()}}),
            )?;
        }
    }
    for (n, inc) in &tl.incidents {
        let name = format!(
            "incident {n}: {}",
            inc.signature.map_or("no known signature", |s| s.id)
        );
        if let Some(first) = inc.steps.first() {
            ev.push(
                &json!({"ph": "i", "s": "g", "pid": pid(first.leg), "tid": first.conn,
                           "cat": "incident", "name": name, "ts": us(first.at.t),
                           "args": {"time": first.at.ts.rfc3339().to_string(),
                                    "steps": inc.steps}}),
            )?;
        }
        let last = inc.steps.len().saturating_sub(1);
        for (k, st) in inc.steps.iter().enumerate() {
            if last == 0 {
                break;
            }
            let ph = match k {
                0 => "s",
                k if k == last => "f",
                _ => "t",
            };
            ev.push(
                &json!({"ph": ph, "id": n, "bp": "e", "pid": pid(st.leg), "tid": st.conn,
                           "cat": "incident", "name": name, "ts": us(st.at.t)}),
            )?;
        }
    }
    ev.close()?;
    out.write_all(b"}\n")
}
