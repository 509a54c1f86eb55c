//! Line formats: JSON Lines (a schema line, then one record a line) and CSV (a header, then the
//! same records with `detail` as a JSON string).

use std::io::{self, Write};

use serde_json::Value;

use super::{schema_line, Timeline};

/// CSV columns, in order: the fields of an event record.
pub const COLUMNS: &[&str] = &[
    "ts", "t", "frame", "file", "conn", "leg", "dir", "from", "to", "layer", "kind", "detail",
];

/// Writes the timeline as JSON Lines: `{"schema":"proxyscope.events/1"}`, then every record.
pub fn write_jsonl(tl: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &schema_line())?;
    out.write_all(b"\n")?;
    for r in tl.records() {
        serde_json::to_writer(&mut *out, &r)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes the timeline as CSV (RFC 4180: fields with a comma, quote or line break are quoted,
/// quotes doubled). A missing field or null is empty; numbers are written as in JSON; `detail`
/// is compact JSON.
pub fn write_csv(tl: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{}", COLUMNS.join(","))?;
    let mut row = String::new();
    for r in tl.records() {
        row.clear();
        for (i, c) in COLUMNS.iter().enumerate() {
            if i > 0 {
                row.push(',');
            }
            let cell = match r.get(*c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            };
            push_cell(&mut row, &cell);
        }
        row.push('\n');
        out.write_all(row.as_bytes())?;
    }
    Ok(())
}

fn push_cell(row: &mut String, cell: &str) {
    if cell.contains([',', '"', '\n', '\r']) {
        row.push('"');
        row.push_str(&cell.replace('"', "\"\""));
        row.push('"');
    } else {
        row.push_str(cell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_only_when_needed() {
        let mut row = String::new();
        push_cell(&mut row, "plain");
        row.push(',');
        push_cell(&mut row, r#"{"a":"x,y"}"#);
        assert_eq!(row, r#"plain,"{""a"":""x,y""}""#);
    }
}
