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

use super::{lane_order, leg_name, requests, JsonSeq, Mark, Timeline};
use crate::diagnose::legs::Leg;
use crate::event::Dir;
use crate::model::Summary;

const TEMPLATE: &str = include_str!("timeline.html");
const DATA_MARK: &str = "/*DATA*/";
const NS_PER_SEC: i64 = 1_000_000_000;

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

/// Seconds rounded to the nanosecond (shorter JSON).
fn r9(t: f64) -> f64 {
    (t * 1e9).round() / 1e9
}

fn lane(s: &Summary) -> Value {
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
            match &m.previous_user {
                Some(was) => info.push(format!("user {u} (changed from {was})")),
                None => info.push(format!("user {u}")),
            }
        }
    }
    if let Some(t) = &s.tls {
        info.push(format!(
            "{} {}",
            t.version.as_deref().unwrap_or("TLS"),
            t.cipher_name.as_deref().unwrap_or("")
        ));
    }
    json!({
        "id": s.id,
        "leg": leg_name(s.leg),
        "client": s.client.to_string(),
        "server": s.server.to_string(),
        "vlan": s.vlan,
        "t0": r9(s.start.t),
        "t1": r9(s.end.t),
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
    })
}

/// The web page of a reference written `owner/repo#N` (a GitHub issue), or `None`.
fn ref_url(r: &str) -> Option<String> {
    let (repo, n) = r.split_once('#')?;
    let ok = n.bytes().all(|b| b.is_ascii_digit())
        && !n.is_empty()
        && repo.split('/').count() == 2
        && repo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    ok.then(|| format!("https://github.com/{repo}/issues/{n}"))
}

fn short(mut text: String) -> String {
    if text.len() > 240 {
        let cut = (0..=240)
            .rev()
            .find(|&n| text.is_char_boundary(n))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Writes the page's data, one JSON object: lanes (in lane order), events as
/// `[lane, t, marker, sender, frame, kind, text]` (kind indexes `kinds`), requests as
/// `[lane, start, end, unanswered, name]`, incidents with the lane of each step.
pub fn write_data(tl: &Timeline, title: &str, out: &mut dyn Write) -> io::Result<()> {
    let f = tl.filter();
    let order: Vec<&Summary> = lane_order(&tl.conns)
        .into_iter()
        .filter_map(|i| tl.conns.get(i))
        .collect();
    let run = tl.run.as_ref();
    let start = run.and_then(|r| r.capture_start);
    let head = json!({
        "schema": super::SCHEMA,
        "title": title,
        "start": start.map(|t| t.rfc3339().to_string()),
        // The start as whole Unix seconds and nanoseconds: a JavaScript number holds epoch
        // microseconds only to a quarter microsecond, so the page adds `t` to these itself.
        "start_s": start.map(|t| t.0.div_euclid(NS_PER_SEC)),
        "start_ns": start.map(|t| t.0.rem_euclid(NS_PER_SEC)),
        "frames": run.map(|r| r.frames),
        "marks": MARKS.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "omitted": order.iter().map(|s| s.events_dropped).sum::<u64>(),
    });
    let head = head.to_string();
    out.write_all(head.strip_suffix('}').unwrap_or(&head).as_bytes())?;
    let mut seq = JsonSeq::open(out, ",\"lanes\":")?;
    for s in &order {
        seq.push(&lane(s))?;
    }
    seq.close()?;
    let mut kinds: Vec<String> = Vec::new();
    let mut kind_ix: HashMap<String, usize> = HashMap::new();
    let mut seq = JsonSeq::open(out, ",\"events\":")?;
    for (n, s) in order.iter().enumerate() {
        for e in s.events.iter().filter(|e| f.time(e.at.t)) {
            let name = e.event.kind.name();
            let k = *kind_ix.entry(name.clone()).or_insert_with(|| {
                kinds.push(name);
                kinds.len() - 1
            });
            let m = Mark::of(&e.event.kind);
            seq.push(&(
                n,
                r9(e.at.t),
                MARKS.iter().position(|x| *x == m).unwrap_or(0),
                sender(s.leg, e.dir == Dir::C2s),
                e.at.frame,
                k,
                short(e.event.kind.brief()),
            ))?;
        }
    }
    seq.close()?;
    let mut seq = JsonSeq::open(out, ",\"requests\":")?;
    for (n, s) in order.iter().enumerate() {
        for r in requests(s) {
            if f.span(r.start, r.end) {
                seq.push(&(
                    n,
                    r9(r.start),
                    r9(r.end),
                    u8::from(r.unanswered),
                    short(r.name),
                ))?;
            }
        }
    }
    seq.close()?;
    let mut seq = JsonSeq::open(out, ",\"kinds\":")?;
    for k in &kinds {
        seq.push(k)?;
    }
    seq.close()?;
    let lane_of: HashMap<u64, usize> = order.iter().enumerate().map(|(n, s)| (s.id, n)).collect();
    let mut seq = JsonSeq::open(out, ",\"incidents\":")?;
    for (n, inc) in &tl.incidents {
        seq.push(&json!({
            "n": n,
            "sig": inc.signature.map(|s| s.id),
            "cause": inc.signature.map(|s| s.cause),
            "refs": inc.signature.map(|s| s.references),
            "fix": inc.signature.map(|s| s.fix),
            "workaround": inc.signature.map(|s| s.workaround),
            "shows": inc.signature.map(|s| s.shows),
            "ref_urls": inc.signature.map(|s| s.references.iter().map(|r| ref_url(r)).collect::<Vec<_>>()),
            "steps": inc.steps.iter().map(|st| json!({
                "lane": lane_of.get(&st.conn),
                "conn": st.conn,
                "leg": leg_name(st.leg),
                "t": r9(st.at.t),
                "frame": st.at.frame,
                "label": st.label.as_str(),
                "after_ms": st.after_ms,
                "text": st.text,
            })).collect::<Vec<_>>(),
        }))?;
    }
    seq.close()?;
    out.write_all(b"}")
}

/// Passes bytes on with every `<` written as `\u003c`: inside JSON a `<` can only be in a
/// string, where the escape means the same, and no text from a capture can then close the
/// `<script>` element that holds the data.
struct NoLt<'a>(&'a mut dyn Write);

impl Write for NoLt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for part in buf.split_inclusive(|&b| b == b'<') {
            match part.split_last() {
                Some((b'<', rest)) => {
                    self.0.write_all(rest)?;
                    self.0.write_all(b"\\u003c")?;
                }
                _ => self.0.write_all(part)?,
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Writes the page.
pub fn write(tl: &Timeline, title: &str, out: &mut dyn Write) -> io::Result<()> {
    let (head, tail) = TEMPLATE.split_once(DATA_MARK).unwrap_or((TEMPLATE, ""));
    out.write_all(head.as_bytes())?;
    write_data(tl, title, &mut NoLt(out))?;
    out.write_all(tail.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_the_script_element() {
        let v = json!({"q": "SELECT '</script><script>alert(1)</script>'", "<": "<<"});
        let mut buf = Vec::new();
        serde_json::to_writer(NoLt(&mut buf), &v).unwrap();
        assert!(!buf.contains(&b'<'));
        let back: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn template_has_one_data_slot() {
        assert_eq!(TEMPLATE.matches(DATA_MARK).count(), 1);
        assert!(!TEMPLATE.contains("http://") && !TEMPLATE.contains("https://"));
    }

    #[test]
    fn references_link_to_github_issues_only() {
        assert_eq!(
            ref_url("sysown/proxysql#4500").as_deref(),
            Some("https://github.com/sysown/proxysql/issues/4500")
        );
        for bad in ["proxysql#1", "a/b#", "a/b#1x", "a/b\"/c#1", "a/b/c#1"] {
            assert_eq!(ref_url(bad), None, "{bad}");
        }
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
