//! The comparison as one self-contained HTML page (no script, no network): the verdict lines,
//! each set's problem closes and incidents over its capture time, the frontend latency
//! histograms of both sets on one log axis, and the table of counts. Every bar carries its
//! count (`data-set`, `data-count`), which the tests add up against the JSON document.

use std::fmt::Write as _;

use super::{Change, Comparison, Direction, Row, SetView};

/// Bars of a time chart.
const TIME_BARS: usize = 120;
/// 2% buckets grouped 12 at a time: each latency bar is 1.02^12 ≈ 1.27 times wider.
const LATENCY_GROUP: u16 = 12;
const W: f64 = 520.0;
const H: f64 = 110.0;

/// Text for HTML (element content and quoted attributes).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}\
h1{font-size:20px}h2{font-size:16px;margin-top:1.6em}\
li.worse{color:#b00;font-weight:bold}li.better{color:#060}li.same{color:#777}\
.pair{display:flex;gap:2em;flex-wrap:wrap}figure{margin:0}figcaption{font-size:12px;color:#555}\
svg{background:#fafafa;border:1px solid #ddd}rect.problem{fill:#e8a33d}rect.incident{fill:#c0392b}\
rect.before{fill:#3b73b9}rect.after{fill:#e8a33d}text{font-size:10px;fill:#555}\
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}td:first-child,th:first-child\
{text-align:left}tr.head td{font-weight:bold;text-align:left;padding-top:8px}\
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}";

impl Comparison {
    /// The HTML page.
    pub fn html(&self) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>proxyscope compare</title><style>{STYLE}</style></head><body>\n\
             <h1>proxyscope compare</h1>\n"
        );
        for (name, s) in [("before", &self.before), ("after", &self.after)] {
            let _ = writeln!(
                o,
                "<p><b>{name}</b>: {:.1} s of capture, {} connections, {} frontend requests; \
                 files: {}</p>",
                s.capture_s,
                s.connections,
                s.frontend_requests,
                esc(&s.files.join(", "))
            );
        }
        o.push_str("<h2>Verdicts</h2>\n<ul>\n");
        for c in &self.changes {
            let _ = writeln!(o, "<li class=\"{}\">{}</li>", class(c), esc(&c.text));
        }
        let _ = writeln!(
            o,
            "</ul>\n<p>{}</p>",
            if self.worse.is_empty() {
                "No signature got worse (exit 0).".to_string()
            } else {
                format!(
                    "<b style=\"color:#b00\">Worse: {}</b> (exit 3).",
                    esc(&self.worse.join(", "))
                )
            }
        );
        o.push_str(
            "<h2>Over capture time</h2>\n<p><span class=\"key\" style=\"background:#e8a33d\">\
             </span>problem closes<span class=\"key\" style=\"background:#c0392b\"></span>\
             incidents</p>\n<div class=\"pair\">\n",
        );
        for (name, s) in [("before", &self.before), ("after", &self.after)] {
            time_chart(&mut o, name, s);
        }
        o.push_str("</div>\n");
        latency_chart(&mut o, &self.before, &self.after);
        o.push_str(
            "<h2>Counts</h2>\n<table>\n<tr><th></th><th>before</th><th>per h</th>\
                    <th>per 1k req</th><th>after</th><th>per h</th><th>per 1k req</th></tr>\n",
        );
        let (b, a) = (&self.before, &self.after);
        table(&mut o, "Incidents by signature", &b.incidents, &a.incidents);
        table(&mut o, "Closes by leg and label", &b.closes, &a.closes);
        table(
            &mut o,
            "Client-visible errors",
            &b.client_errors,
            &a.client_errors,
        );
        o.push_str("</table>\n</body></html>\n");
        o
    }
}

fn class(c: &Change) -> &'static str {
    if c.worse {
        "worse"
    } else {
        match c.direction {
            Direction::WentAway | Direction::Down => "better",
            Direction::Same => "same",
            Direction::New | Direction::Up => "",
        }
    }
}

/// One set's problem closes and incidents per time bar.
fn time_chart(o: &mut String, name: &str, s: &SetView) {
    let c = &s.charts;
    let Some((from, to)) = c.bounds else {
        let _ = writeln!(
            o,
            "<figure><figcaption>{name}: no connections</figcaption></figure>"
        );
        return;
    };
    let problems = c.problems.bars(from, to, TIME_BARS);
    let incidents = c.incidents.bars(from, to, TIME_BARS);
    let secs = c.problems.bar_secs(from, to, TIME_BARS);
    let max = problems
        .iter()
        .chain(&incidents)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let n = problems.len().max(incidents.len()).max(1);
    let bw = W / n as f64;
    let span = to.secs_since(from);
    // Files of different times: the chart spans the gaps between them too.
    let gaps = if span > s.capture_s + 1.0 {
        format!(" (the files span {span:.1} s)")
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "<figure><figcaption>{name}: {} problem closes, {} incidents in {:.1} s of capture{gaps}; \
         a bar is {secs:.3} s, the tallest {max}</figcaption>\n<svg width=\"{W}\" \
         height=\"{}\" viewBox=\"0 0 {W} {}\">",
        c.problems.total(),
        c.incidents.total(),
        s.capture_s,
        H + 14.0,
        H + 14.0
    );
    for (series, bars, inset) in [("problem", &problems, 0.0), ("incident", &incidents, 0.25)] {
        for (i, &v) in bars.iter().enumerate().filter(|(_, &v)| v > 0) {
            let h = v as f64 / max as f64 * H;
            let _ = writeln!(
                o,
                "<rect class=\"{series}\" data-set=\"{name}\" data-count=\"{v}\" x=\"{:.2}\" \
                 y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\"><title>{v} {series}{} at \
                 +{:.1} s</title></rect>",
                i as f64 * bw + bw * inset,
                H - h,
                (bw * (1.0 - 2.0 * inset) - 0.5).max(0.5),
                if v == 1 { "" } else { "s" },
                i as f64 * secs
            );
        }
    }
    let _ = writeln!(
        o,
        "<text x=\"2\" y=\"{}\">0 s</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">\
         {:.1} s</text></svg></figure>",
        H + 12.0,
        W - 2.0,
        H + 12.0,
        span
    );
}

/// Both sets' frontend latency on one log axis, bars side by side.
fn latency_chart(o: &mut String, b: &SetView, a: &SetView) {
    let (gb, ga) = (
        b.charts.latency.grouped(LATENCY_GROUP),
        a.charts.latency.grouped(LATENCY_GROUP),
    );
    o.push_str(
        "<h2>Request latency across the proxy (frontend)</h2>\n<p><span class=\"key\" \
         style=\"background:#3b73b9\"></span>before<span class=\"key\" \
         style=\"background:#e8a33d\"></span>after (share of each set's timed requests; \
         decoded MySQL only)</p>\n",
    );
    let groups = gb.iter().chain(&ga).map(|g| g.0);
    let (Some(lo), Some(hi)) = (groups.clone().min(), groups.max()) else {
        o.push_str("<p>No request was timed.</p>\n");
        return;
    };
    let n = usize::from(hi - lo) + 1;
    let bw = W / n as f64;
    let share = |v: u64, total: u64| v as f64 / total.max(1) as f64;
    let max = gb
        .iter()
        .map(|g| share(g.2, b.charts.latency.count()))
        .chain(ga.iter().map(|g| share(g.2, a.charts.latency.count())))
        .fold(0.0, f64::max)
        .max(1e-9);
    let _ = writeln!(
        o,
        "<svg width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\">",
        H + 14.0,
        H + 14.0
    );
    for (name, groups, total, offset) in [
        ("before", &gb, b.charts.latency.count(), 0.0),
        ("after", &ga, a.charts.latency.count(), 0.5),
    ] {
        for &(g, ms, v) in groups.iter() {
            let h = share(v, total) / max * H;
            let _ = writeln!(
                o,
                "<rect class=\"{name}\" data-set=\"{name}\" data-count=\"{v}\" x=\"{:.2}\" \
                 y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\"><title>{name}: {v} requests \
                 from {} ms</title></rect>",
                f64::from(g - lo) * bw + bw * offset,
                H - h,
                (bw / 2.0 - 0.5).max(0.5),
                ms_label(ms)
            );
        }
    }
    let at = |g: u16| super::latency::lower(g.saturating_mul(LATENCY_GROUP)) / 1e6;
    let _ = writeln!(
        o,
        "<text x=\"2\" y=\"{}\">{} ms</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} \
         ms</text></svg>",
        H + 12.0,
        ms_label(at(lo)),
        W - 2.0,
        H + 12.0,
        ms_label(at(hi.saturating_add(1)))
    );
}

fn ms_label(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 0.1 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.4}")
    }
}

fn table(o: &mut String, title: &str, b: &[Row], a: &[Row]) {
    let _ = writeln!(
        o,
        "<tr class=\"head\"><td colspan=\"7\">{}</td></tr>",
        esc(title)
    );
    let mut keys: Vec<&String> = b.iter().chain(a).map(|r| &r.key).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let cells = |rows: &[Row]| {
            let r = rows.iter().find(|r| &r.key == k);
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            format!(
                "<td>{}</td><td>{}</td><td>{}</td>",
                r.map_or(0, |r| r.count),
                f(r.map_or(Some(0.0), |r| r.per_hour)),
                f(r.map_or(Some(0.0), |r| r.per_1k_requests))
            )
        };
        let _ = writeln!(o, "<tr><td>{}</td>{}{}</tr>", esc(k), cells(b), cells(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }

    #[test]
    fn an_empty_comparison_is_a_whole_page() {
        let empty = super::super::SetTally::default();
        let page = Comparison::of(&empty, &empty).html();
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.trim_end().ends_with("</html>"));
        assert!(page.contains("no connections"));
        assert!(page.contains("No request was timed."));
    }
}
