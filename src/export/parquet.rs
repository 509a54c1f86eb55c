//! The event records (`proxyscope.events/1`) as Parquet: one row per record, typed columns, for
//! DuckDB, Spark or ClickHouse over months of captures. docs/events-parquet.md documents the
//! columns.
//!
//! Written with the `parquet` crate's low-level typed API (no arrow: it would cost about a
//! minute more per build profile). Rows are made from the very JSON records `--format jsonl`
//! writes, so both formats carry the same values; they are buffered column by column and written
//! as a row group every [`GROUP_ROWS`] rows (or when the caller asks), so memory does not grow
//! with the capture. The file is encoded into a buffer that is handed to the output after each
//! row group: the output need not be `Send` nor seekable (a pipe works).

use std::io::{self, Write};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use serde_json::Value;

use super::{Timeline, SCHEMA};

/// Rows per row group: large enough for good compression and few groups per file, small enough
/// that the buffered columns stay a few MB.
pub const GROUP_ROWS: usize = 65_536;

/// The Parquet schema. `ts` is microseconds since the Unix epoch, UTC (Spark reads no
/// nanosecond timestamps; `t` keeps the sub-microsecond offset from the capture's start).
/// Optional columns are null where the JSON record has null or no field; `file` is 0 where the
/// JSON record leaves it out (the first file).
pub const MESSAGE_TYPE: &str = "
message proxyscope_events {
  REQUIRED INT64 ts (TIMESTAMP(MICROS,true));
  OPTIONAL DOUBLE t;
  OPTIONAL INT64 frame;
  REQUIRED INT32 file;
  OPTIONAL INT64 conn;
  OPTIONAL BYTE_ARRAY leg (UTF8);
  OPTIONAL BYTE_ARRAY dir (UTF8);
  OPTIONAL BYTE_ARRAY from (UTF8);
  OPTIONAL BYTE_ARRAY to (UTF8);
  REQUIRED BYTE_ARRAY layer (UTF8);
  REQUIRED BYTE_ARRAY kind (UTF8);
  REQUIRED BYTE_ARRAY detail (JSON);
  OPTIONAL BYTE_ARRAY label (UTF8);
  OPTIONAL BYTE_ARRAY closed_by (UTF8);
  OPTIONAL BYTE_ARRAY signature (UTF8);
  OPTIONAL INT64 incident;
}
";

/// A column of values with a definition level per row (1: present, 0: null).
#[derive(Default)]
struct Col<T> {
    values: Vec<T>,
    defs: Vec<i16>,
}

impl<T> Col<T> {
    fn push(&mut self, v: Option<T>) {
        match v {
            Some(v) => {
                self.values.push(v);
                self.defs.push(1);
            }
            None => self.defs.push(0),
        }
    }

    fn clear(&mut self) {
        self.values.clear();
        self.defs.clear();
    }
}

/// The rows of one row group, column by column.
#[derive(Default)]
struct Rows {
    ts: Vec<i64>,
    t: Col<f64>,
    frame: Col<i64>,
    file: Vec<i32>,
    conn: Col<i64>,
    leg: Col<ByteArray>,
    dir: Col<ByteArray>,
    from: Col<ByteArray>,
    to: Col<ByteArray>,
    layer: Vec<ByteArray>,
    kind: Vec<ByteArray>,
    detail: Vec<ByteArray>,
    label: Col<ByteArray>,
    closed_by: Col<ByteArray>,
    signature: Col<ByteArray>,
    incident: Col<i64>,
}

fn text(v: Option<&Value>) -> Option<ByteArray> {
    v.and_then(Value::as_str).map(ByteArray::from)
}

fn bad(what: &str, rec: &Value) -> io::Error {
    let mut s = rec.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    io::Error::other(format!("event record without {what}: {s}"))
}

/// Microseconds since the Unix epoch of an RFC 3339 time.
fn micros(ts: &str) -> Option<i64> {
    ts.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_microsecond())
}

impl Rows {
    fn len(&self) -> usize {
        self.ts.len()
    }

    /// Adds a record; a line without `kind` (the JSON Lines schema line) is not a record and is
    /// skipped (false).
    fn push(&mut self, rec: &Value) -> io::Result<bool> {
        let Some(kind) = rec.get("kind").and_then(Value::as_str) else {
            return Ok(false);
        };
        let ts = rec
            .get("ts")
            .and_then(Value::as_str)
            .and_then(micros)
            .ok_or_else(|| bad("an RFC 3339 ts", rec))?;
        let layer = rec
            .get("layer")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("layer", rec))?;
        let file = match rec.get("file").and_then(Value::as_u64) {
            Some(f) => i32::try_from(f).map_err(|_| bad("a file index below 2^31", rec))?,
            None => 0,
        };
        let int = |k: &str| rec.get(k).and_then(Value::as_u64).map(|n| n as i64);
        let detail = rec.get("detail").unwrap_or(&Value::Null);
        let is = |k: &str| kind == k;
        self.ts.push(ts);
        self.t.push(rec.get("t").and_then(Value::as_f64));
        self.frame.push(int("frame"));
        self.file.push(file);
        self.conn.push(int("conn"));
        self.leg.push(text(rec.get("leg")));
        self.dir.push(text(rec.get("dir")));
        self.from.push(text(rec.get("from")));
        self.to.push(text(rec.get("to")));
        self.layer.push(ByteArray::from(layer));
        self.kind.push(ByteArray::from(kind));
        self.detail.push(ByteArray::from(
            serde_json::to_vec(detail).map_err(io::Error::other)?,
        ));
        let close = is("verdict.close");
        let incident = is("verdict.incident");
        self.label.push(text(detail.get("label")).filter(|_| close));
        self.closed_by
            .push(text(detail.get("closed_by")).filter(|_| close));
        self.signature
            .push(text(detail.get("signature").and_then(|s| s.get("id"))).filter(|_| incident));
        self.incident.push(
            detail
                .get("id")
                .and_then(Value::as_u64)
                .map(|n| n as i64)
                .filter(|_| incident),
        );
        Ok(true)
    }

    fn clear(&mut self) {
        self.ts.clear();
        self.t.clear();
        self.frame.clear();
        self.file.clear();
        self.conn.clear();
        self.leg.clear();
        self.dir.clear();
        self.from.clear();
        self.to.clear();
        self.layer.clear();
        self.kind.clear();
        self.detail.clear();
        self.label.clear();
        self.closed_by.clear();
        self.signature.clear();
        self.incident.clear();
    }
}

/// A Parquet file of event records being written to `O`: [`EventWriter::push`] each record,
/// then [`EventWriter::finish`], which writes the last row group and the footer (without it
/// the file is unreadable).
pub struct EventWriter<O: Write> {
    file: SerializedFileWriter<Vec<u8>>,
    rows: Rows,
    out: O,
    written: u64,
}

fn write_required<T: parquet::data_type::DataType>(
    g: &mut parquet::file::writer::SerializedRowGroupWriter<'_, Vec<u8>>,
    values: &[T::T],
    defs: Option<&[i16]>,
) -> io::Result<()> {
    let mut c = g
        .next_column()?
        .ok_or_else(|| io::Error::other("Parquet schema has fewer columns than the rows"))?;
    c.typed::<T>().write_batch(values, defs, None)?;
    c.close()?;
    Ok(())
}

impl<O: Write> EventWriter<O> {
    /// Starts a file on `out` (nothing is written before the first row group).
    pub fn new(out: O) -> io::Result<EventWriter<O>> {
        let schema = Arc::new(parse_message_type(MESSAGE_TYPE)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            // Nearly every detail differs: a dictionary would only be built to be dropped.
            .set_column_dictionary_enabled(ColumnPath::from("detail"), false)
            .set_created_by(format!("proxyscope {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "proxyscope.schema".to_string(),
                SCHEMA.to_string(),
            )]))
            .build();
        let file = SerializedFileWriter::new(Vec::with_capacity(1 << 20), schema, Arc::new(props))?;
        Ok(EventWriter {
            file,
            rows: Rows::default(),
            out,
            written: 0,
        })
    }

    /// Adds a record (a JSON Lines record of `proxyscope.events/1`); the JSON Lines schema line
    /// is skipped. A full row group is written out.
    pub fn push(&mut self, rec: &Value) -> io::Result<()> {
        if self.rows.push(rec)? && self.rows.len() >= GROUP_ROWS {
            self.flush_group()?;
        }
        Ok(())
    }

    /// Rows not yet written as a row group.
    pub fn pending(&self) -> usize {
        self.rows.len()
    }

    /// Rows written in row groups so far.
    pub fn rows_written(&self) -> u64 {
        self.written
    }

    /// Writes the buffered rows (if any) as a row group and hands its bytes to the output.
    pub fn flush_group(&mut self) -> io::Result<()> {
        if self.rows.len() == 0 {
            return Ok(());
        }
        let r = &self.rows;
        let mut g = self.file.next_row_group()?;
        write_required::<Int64Type>(&mut g, &r.ts, None)?;
        write_required::<DoubleType>(&mut g, &r.t.values, Some(&r.t.defs))?;
        write_required::<Int64Type>(&mut g, &r.frame.values, Some(&r.frame.defs))?;
        write_required::<Int32Type>(&mut g, &r.file, None)?;
        write_required::<Int64Type>(&mut g, &r.conn.values, Some(&r.conn.defs))?;
        for c in [&r.leg, &r.dir, &r.from, &r.to] {
            write_required::<ByteArrayType>(&mut g, &c.values, Some(&c.defs))?;
        }
        for c in [&r.layer, &r.kind, &r.detail] {
            write_required::<ByteArrayType>(&mut g, c, None)?;
        }
        for c in [&r.label, &r.closed_by, &r.signature] {
            write_required::<ByteArrayType>(&mut g, &c.values, Some(&c.defs))?;
        }
        write_required::<Int64Type>(&mut g, &r.incident.values, Some(&r.incident.defs))?;
        g.close()?;
        self.written += self.rows.len() as u64;
        self.rows.clear();
        self.hand_over()
    }

    /// Moves the encoded bytes to the output. The writer counts the bytes it wrote itself (the
    /// footer's offsets come from that count), so emptying its buffer is safe.
    fn hand_over(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let buf = self.file.inner_mut();
        self.out.write_all(buf)?;
        buf.clear();
        self.out.flush()
    }

    /// Writes the last row group and the footer; returns the output.
    pub fn finish(mut self) -> io::Result<O> {
        self.flush_group()?;
        self.file.finish()?;
        self.hand_over()?;
        Ok(self.out)
    }
}

/// Writes the timeline's records (as `--format jsonl` writes them, without the schema line) as
/// a Parquet file.
pub fn write(tl: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    let mut w = EventWriter::new(out)?;
    for r in tl.records() {
        w.push(&r)?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_parses_and_a_record_without_time_is_refused() {
        let mut w = EventWriter::new(Vec::new()).unwrap();
        w.push(&json!({"schema": SCHEMA})).unwrap();
        assert_eq!(w.pending(), 0, "the schema line is no record");
        let e = w
            .push(&json!({"kind": "tcp.syn", "layer": "tcp", "ts": "yesterday"}))
            .unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        w.push(&json!({"kind": "tcp.syn", "layer": "tcp", "ts": "2026-11-24T10:20:32.123456789Z"}))
            .unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(b"PAR1") && out.ends_with(b"PAR1"));
    }

    #[test]
    fn rows_go_out_a_row_group_at_a_time() {
        use parquet::file::reader::FileReader;
        let mut out = Vec::new();
        let mut w = EventWriter::new(&mut out).unwrap();
        let n = 2 * GROUP_ROWS + 10;
        for i in 0..n {
            w.push(&json!({
                "ts": "2026-11-24T10:20:32Z", "t": i as f64, "frame": i, "conn": i % 7,
                "leg": "backend", "layer": "tcp", "kind": "tcp.fin", "detail": {}
            }))
            .unwrap();
            // Never more than a row group held in memory.
            assert!(w.pending() < GROUP_ROWS);
        }
        assert_eq!(w.rows_written(), 2 * GROUP_ROWS as u64);
        w.finish().unwrap();
        let path =
            std::env::temp_dir().join(format!("proxyscope-groups-{}.parquet", std::process::id()));
        std::fs::write(&path, &out).unwrap();
        let r = parquet::file::serialized_reader::SerializedFileReader::try_from(path.as_path())
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(r.metadata().num_row_groups(), 3);
        assert_eq!(r.metadata().file_metadata().num_rows(), n as i64);
    }

    #[test]
    fn times_are_microseconds_since_the_epoch() {
        assert_eq!(micros("1970-01-01T00:00:01.000002999Z"), Some(1_000_002));
        assert_eq!(
            micros("2026-11-24T11:20:32+01:00"),
            micros("2026-11-24T10:20:32Z")
        );
    }
}
