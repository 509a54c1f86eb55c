//! The visual timeline: one self-contained HTML file (no network; the page and its data are in
//! it). The page (`timeline.html`, hand-written JavaScript on a canvas) draws a lane per
//! connection, frontend lanes above backend lanes, each backend next to the frontends it
//! carried, with markers coloured by sender and incidents linked across legs; it draws only the
//! lanes and the time range in view, so thousands of connections stay usable.
//!
//! The data is JSON in a `<script type="application/json">` element; `<` is written as
//! `\u003c` so no text from a capture can close the element.

use std::collections::HashMap;
use std::io::{self, Write};

use serde_json::{json, Value};

use super::{lane_order, leg_name, requests, Mark, Timeline};
use crate::diagnose::legs::Leg;

const TEMPLATE: &str = include_str!("timeline.html");
const DATA_MARK: &str = "/*DATA*/";

/// Marker kinds in the order the page numbers them.
pub const MARKS: &[Mark] = &[
    Mark::Syn,
    Mark::Login,
    Mark::TlsHandshake,
    Mark::Query,
    Mark::Response,
    Mark::Data,
    Mark::Err,
    Mark::Alert,
    Mark::Fin,
    Mark::Rst,
    Mark::Gap,
];

/// Who sent a packet, as the page colours it: 0 the application (frontend or direct client),
/// 1 the proxy, 2 the MySQL server (or any other server).
fn sender(leg: Leg, c2s: bool) -> u8 {
    match (leg, c2s) {
        (Leg::Frontend, false) | (Leg::Backend, true) => 1,
        (_, true) => 0,
        (_, false) => 2,
    }
}

fn r6(t: f64) -> f64 {
    (t * 1e9).round() / 1e9
}

/// The page's data: lanes, events, requests, incidents.
pub fn data(tl: &Timeline, title: &str) -> Value {
    let f = tl.filter();
    let order = lane_order(&tl.conns);
    let mut lane_of: HashMap<u64, usize> = HashMap::new();
    let mut lanes = Vec::new();
    let mut events = Vec::new();
    let mut reqs = Vec::new();
    let mut kinds: Vec<String> = Vec::new();
    let mut kind_ix: HashMap<String, usize> = HashMap::new();
    let mut omitted = 0u64;
    for (lane, &i) in order.iter().enumerate() {
        let Some(s) = tl.conns.get(i) else { continue };
        lane_of.insert(s.id, lane);
        omitted += s.events_dropped;
        let v = s.verdict.as_ref();
        let mut info = Vec::new();
        if let Some(m) = &s.mysql {
            if let Some(ver) = &m.server_version {
                info.push(format!("mysql {ver}"));
            }
            if let Some(t) = m.thread_id {
                info.push(format!("thread {t}"));
            }
            if let Some(u) = &m.user {
                info.push(format!("user {u}"));
            }
        }
        if let Some(t) = &s.tls {
            info.push(format!(
                "{} {}",
                t.version.as_deref().unwrap_or("TLS"),
                t.cipher_name.as_deref().unwrap_or("")
            ));
        }
        lanes.push(json!({
            "id": s.id,
            "leg": leg_name(s.leg),
            "client": s.client.to_string(),
            "server": s.server.to_string(),
            "vlan": s.vlan,
            "t0": r6(s.start.t),
            "t1": r6(s.end.t),
            "label": v.map(|v| v.label.as_str()),
            "problem": v.is_some_and(|v| v.label.is_problem()),
            "closed_by": v.and_then(|v| v.closed_by).map(|r| r.as_str()),
            "how": v.map(|v| v.how.clone()),
            "state": v.map(|v| v.state),
            "client_sees": v.and_then(|v| v.client_sees),
            "close": s.close.how.as_str(),
            "info": info.join(" · "),
            "dropped": s.events_dropped,
            "pairs": s.relayed.iter().map(|r| r.0).collect::<Vec<_>>(),
        }));
        for e in &s.events {
            if !f.time(e.at.t) {
                continue;
            }
            let name = e.event.kind.name();
            let k = *kind_ix.entry(name.clone()).or_insert_with(|| {
                kinds.push(name);
                kinds.len() - 1
            });
            let m = Mark::of(&e.event.kind);
            let mut text = e.event.kind.brief();
            if text.len() > 240 {
                let cut = (0..=240)
                    .rev()
                    .find(|&n| text.is_char_boundary(n))
                    .unwrap_or(0);
                text.truncate(cut);
                text.push('…');
            }
            events.push(json!([
                lane,
                r6(e.at.t),
                MARKS.iter().position(|x| *x == m).unwrap_or(0),
                sender(s.leg, e.dir == "c2s"),
                e.at.frame,
                k,
                text,
            ]));
        }
        for r in requests(s) {
            if f.time(r.start) || f.time(r.end) {
                reqs.push(json!([
                    lane,
                    r6(r.start),
                    r6(r.end),
                    u8::from(r.unanswered),
                    r.name
                ]));
            }
        }
    }
    let incidents: Vec<Value> = tl
        .incidents
        .iter()
        .map(|(n, inc)| {
            json!({
                "n": n,
                "sig": inc.signature.map(|s| s.id),
                "cause": inc.signature.map(|s| s.cause),
                "refs": inc.signature.map(|s| s.references),
                "fix": inc.signature.map(|s| s.fix),
                "steps": inc.steps.iter().map(|st| json!({
                    "lane": lane_of.get(&st.conn),
                    "conn": st.conn,
                    "leg": leg_name(st.leg),
                    "t": r6(st.at.t),
                    "frame": st.at.frame,
                    "label": st.label.as_str(),
                    "after_ms": st.after_ms,
                    "text": st.text,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let run = tl.run.as_ref();
    json!({
        "schema": super::SCHEMA,
        "title": title,
        "start": run.and_then(|r| r.capture_start).map(|t| t.rfc3339().to_string()),
        "frames": run.map(|r| r.frames),
        "marks": MARKS.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "kinds": kinds,
        "lanes": lanes,
        "events": events,
        "requests": reqs,
        "incidents": incidents,
        "omitted": omitted,
    })
}

/// The JSON text of `v`, safe inside a `<script>` element.
fn script_json(v: &Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

/// Writes the page.
pub fn write(tl: &Timeline, title: &str, out: &mut dyn Write) -> io::Result<()> {
    let (head, tail) = TEMPLATE.split_once(DATA_MARK).unwrap_or((TEMPLATE, ""));
    out.write_all(head.as_bytes())?;
    out.write_all(script_json(&data(tl, title)).as_bytes())?;
    out.write_all(tail.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_element() {
        let v = json!({"q": "SELECT '</script><script>alert(1)</script>'"});
        let s = script_json(&v);
        assert!(!s.contains("</"));
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn template_has_one_data_slot() {
        assert_eq!(TEMPLATE.matches(DATA_MARK).count(), 1);
        assert!(!TEMPLATE.contains("http://") && !TEMPLATE.contains("https://"));
    }

    #[test]
    fn senders_by_leg() {
        assert_eq!(sender(Leg::Frontend, true), 0);
        assert_eq!(sender(Leg::Frontend, false), 1);
        assert_eq!(sender(Leg::Backend, true), 1);
        assert_eq!(sender(Leg::Backend, false), 2);
        assert_eq!(sender(Leg::Direct, false), 2);
    }
}
