//! The event schema documented in README.md (`proxyscope.events/1`), read from the README, and
//! a checker for one record against it: shared by the timeline and live tests.

use serde_json::Value;

use super::repo;

/// One row of the README's kind table: kind patterns (`mysql.com_*`) and detail fields with
/// whether each is always present.
pub struct Row {
    pub kinds: Vec<String>,
    pub fields: Vec<(String, bool)>,
}

pub fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The byte range between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
pub fn span(text: &str, name: &str) -> std::ops::Range<usize> {
    let a = format!("<!-- {name}:begin -->");
    let b = format!("<!-- {name}:end -->");
    let start = text
        .find(&a)
        .unwrap_or_else(|| panic!("README.md has no {a}"))
        + a.len();
    let end = text
        .find(&b)
        .unwrap_or_else(|| panic!("README.md has no {b}"));
    start..end
}

pub fn between<'a>(text: &'a str, name: &str) -> &'a str {
    &text[span(text, name)]
}

/// Backticked words of a table cell, each with whether a `?` follows it.
pub fn ticks(cell: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut parts = cell.split('`');
    parts.next();
    while let (Some(word), Some(after)) = (parts.next(), parts.next()) {
        out.push((word.to_string(), !after.starts_with('?')));
    }
    if let Some(word) = parts.next() {
        out.push((word.to_string(), true));
    }
    out
}

pub fn schema() -> Vec<Row> {
    let text = readme();
    let rows: Vec<Row> = between(&text, "events-schema")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            Row {
                // Only the kind names, not the words of a "(…)" remark.
                kinds: ticks(cells[0].split('(').next().unwrap())
                    .into_iter()
                    .map(|k| k.0)
                    .collect(),
                fields: ticks(cells[1]),
            }
        })
        .collect();
    assert!(rows.len() > 20, "README.md schema table not found");
    rows
}

pub fn row_of<'a>(rows: &'a [Row], kind: &str) -> Option<&'a Row> {
    if let Some(r) = rows.iter().find(|r| r.kinds.iter().any(|k| k == kind)) {
        return Some(r);
    }
    // Patterns: the longest matching prefix wins.
    rows.iter()
        .flat_map(|r| r.kinds.iter().map(move |k| (k, r)))
        .filter_map(|(k, r)| {
            let p = k.strip_suffix('*')?;
            kind.starts_with(p).then_some((p.len(), r))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, r)| r)
}

pub fn is_endpoint(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.parse::<std::net::SocketAddr>().is_ok())
}

/// Checks one record against the README's field list and kind table.
pub fn check(rows: &[Row], r: &Value) -> Result<(), String> {
    let o = r.as_object().ok_or("not an object")?;
    let allowed = [
        "ts", "t", "frame", "file", "conn", "leg", "dir", "from", "to", "layer", "kind", "detail",
    ];
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("undocumented field {k}"));
        }
    }
    let ts = r["ts"].as_str().ok_or("ts")?;
    if !(ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T') {
        return Err(format!("ts {ts} is not RFC 3339 with ns"));
    }
    r["t"].as_f64().ok_or("t")?;
    r["frame"].as_u64().ok_or("frame")?;
    if o.contains_key("file") && r["file"].as_u64().is_none_or(|f| f == 0) {
        return Err("file present but not a positive index".into());
    }
    r["conn"].as_u64().ok_or("conn")?;
    if !matches!(
        r["leg"].as_str(),
        Some("frontend" | "backend" | "direct" | "unknown")
    ) {
        return Err("leg".into());
    }
    let kind = r["kind"].as_str().ok_or("kind")?;
    let layer = r["layer"].as_str().ok_or("layer")?;
    if !matches!(layer, "tcp" | "tls" | "mysql" | "verdict")
        || kind.split('.').next() != Some(layer)
    {
        return Err(format!("layer {layer} of {kind}"));
    }
    let incident = kind == "verdict.incident";
    let dir_ok = match &r["dir"] {
        Value::Null => layer == "verdict",
        d => matches!(d.as_str(), Some("c2s" | "s2c")),
    };
    if !dir_ok {
        return Err("dir".into());
    }
    for f in ["from", "to"] {
        let ok = if incident {
            r[f].is_null()
        } else {
            is_endpoint(&r[f])
        };
        if !ok {
            return Err(format!("{f}: {}", r[f]));
        }
    }
    let row = row_of(rows, kind).ok_or_else(|| format!("kind {kind} is not documented"))?;
    let detail = r["detail"].as_object().ok_or("detail is not an object")?;
    for k in detail.keys() {
        if !row.fields.iter().any(|(f, _)| f == k) {
            return Err(format!("{kind}: undocumented detail field {k}"));
        }
    }
    for (f, required) in &row.fields {
        if *required && !detail.contains_key(f) {
            return Err(format!("{kind}: detail field {f} missing"));
        }
    }
    Ok(())
}
