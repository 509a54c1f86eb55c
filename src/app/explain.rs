//! `explain`: what a client's error text or number means on the wire, which verdicts produce
//! it and what to capture next, as text or JSON.

use std::io::{self, Write};

use super::{Error, Outcome};
use crate::diagnose::explain::{self as known, Explanation, Match, CODES, KNOWN};

/// Settings of `explain`.
#[derive(Clone, Debug)]
pub struct ExplainCommand {
    /// The error text, an error number or its name.
    pub text: String,
    /// Every known error and error number instead.
    pub list: bool,
    /// One JSON document (schema proxyscope.explain/1) instead of text.
    pub json: bool,
}

/// `explain`: the entries the text matches, or all of them with `list`, on `out`;
/// [`Outcome::NoMatch`] when nothing matched (as grep), with a hint on `err`.
pub fn explain(
    cmd: &ExplainCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let json = cmd.json;
    if cmd.list {
        if json {
            let doc = serde_json::json!({
                "schema": "proxyscope.explain/1",
                "codes": CODES,
                "entries": KNOWN,
            });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        } else {
            writeln!(out, "Error numbers:")?;
            for c in CODES {
                write_code(out, c)?;
            }
            writeln!(out, "\nKnown errors ({}):", KNOWN.len())?;
            for e in KNOWN {
                writeln!(out)?;
                write_entry(out, e, None)?;
            }
        }
        out.flush()?;
        return Ok(Outcome::Done);
    }
    let text = &cmd.text;
    let codes = known::codes_in(text);
    let found: Vec<Match> = known::explain(text);
    if json {
        let doc = serde_json::json!({
            "schema": "proxyscope.explain/1",
            "query": text,
            "codes": codes,
            "matches": found,
        });
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)?;
    } else {
        for c in &codes {
            write_code(out, c)?;
        }
        for m in &found {
            writeln!(out)?;
            write_entry(out, m.entry, m.matched)?;
        }
    }
    out.flush()?;
    if found.is_empty() {
        let _ = writeln!(
            err,
            "proxyscope explain: no known client error in that text; `proxyscope explain --list` \
             shows what is known"
        );
        return Ok(Outcome::NoMatch);
    }
    Ok(Outcome::Done)
}

fn write_code(out: &mut dyn Write, c: &known::ErrorCode) -> io::Result<()> {
    writeln!(
        out,
        "{:<5} {:<30} {:<9} {}",
        c.code,
        c.name.unwrap_or("-"),
        c.origin.as_str(),
        c.text
    )
}

fn write_entry(out: &mut dyn Write, e: &Explanation, matched: Option<&str>) -> io::Result<()> {
    writeln!(out, "{}: {}", e.id, e.title)?;
    if let Some(p) = matched {
        field(out, "matched", &format!("\"{p}\""))?;
    }
    if !e.codes.is_empty() {
        let codes: Vec<String> = e
            .codes
            .iter()
            .map(|n| match known::code(*n).and_then(|c| c.name) {
                Some(name) => format!("{n} {name}"),
                None => n.to_string(),
            })
            .collect();
        field(out, "codes", &codes.join(", "))?;
    }
    field(out, "reported by", e.reported_by)?;
    field(out, "on the wire", e.on_the_wire)?;
    let verdicts: Vec<&str> = e.verdicts.iter().map(|l| l.as_str()).collect();
    field(
        out,
        "verdicts",
        if verdicts.is_empty() {
            "none (nothing on the MySQL wire shows it)".to_string()
        } else {
            verdicts.join(", ")
        }
        .as_str(),
    )?;
    field(out, "capture next", e.capture_next)
}

/// `  name:  text`, the text wrapped at 100 columns under itself.
fn field(out: &mut dyn Write, name: &str, text: &str) -> io::Result<()> {
    const INDENT: usize = 16;
    const WIDTH: usize = 100;
    let mut line = format!("  {:<w$}", format!("{name}:"), w = INDENT - 2);
    let mut len = INDENT;
    let mut first = true;
    for word in text.split_whitespace() {
        let n = word.chars().count();
        if !first && len + 1 + n > WIDTH {
            writeln!(out, "{line}")?;
            line = " ".repeat(INDENT);
            len = INDENT;
            first = true;
        }
        if !first {
            line.push(' ');
            len += 1;
        }
        line.push_str(word);
        len += n;
        first = false;
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, list: bool, json: bool) -> (Outcome, String, String) {
        let cmd = ExplainCommand {
            text: text.to_string(),
            list,
            json,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = explain(&cmd, &mut out, &mut err).expect("explain");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
        (outcome, text(out), text(err))
    }

    #[test]
    fn a_known_number_is_explained_and_an_unknown_text_is_no_match_with_a_hint() {
        let (outcome, out, err) = run("Lost connection to MySQL server during query", false, false);
        assert_eq!(outcome, Outcome::Done);
        assert!(out.contains("2013"), "{out}");
        assert!(out.contains("  capture next:"), "{out}");
        assert!(err.is_empty(), "{err}");
        let (outcome, out, err) = run("all is well", false, false);
        assert_eq!(outcome, Outcome::NoMatch);
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("`proxyscope explain --list`"), "{err}");
    }

    #[test]
    fn the_list_as_json_has_every_entry() {
        let (outcome, out, _) = run("", true, true);
        assert_eq!(outcome, Outcome::Done);
        let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(doc["schema"], "proxyscope.explain/1");
        assert_eq!(
            doc["entries"].as_array().map(|a| a.len()),
            Some(KNOWN.len())
        );
    }

    #[test]
    fn fields_wrap_at_100_columns_under_themselves() {
        let mut out = Vec::new();
        field(&mut out, "on the wire", &"word ".repeat(60)).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= 100), "{text}");
        assert!(lines[0].starts_with("  on the wire:  word"), "{text}");
        assert!(lines[1..]
            .iter()
            .all(|l| l.starts_with("                word")));
    }
}
