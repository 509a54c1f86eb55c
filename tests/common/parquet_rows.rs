//! Parquet event files read back with the `parquet` crate's own reader (row by row), and the
//! check that a row says what the JSON Lines record of the same event says.

use std::path::Path;

use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::record::Field;
use serde_json::{json, Map, Value};

/// The rows of a Parquet events file, each as column name → value (timestamps as epoch µs,
/// `detail` parsed), with the number of row groups.
pub fn read_rows(path: &Path) -> (Vec<Map<String, Value>>, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = SerializedFileReader::new(file)
        .unwrap_or_else(|e| panic!("{}: not a readable Parquet file: {e}", path.display()));
    let groups = reader.metadata().num_row_groups();
    let kv = reader.metadata().file_metadata().key_value_metadata();
    assert!(
        kv.is_some_and(|kv| kv
            .iter()
            .any(|k| k.key == "proxyscope.schema"
                && k.value.as_deref() == Some("proxyscope.events/1"))),
        "{}: the schema version is in the file's metadata",
        path.display()
    );
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            row.get_column_iter()
                .map(|(name, f)| {
                    let v = match f {
                        Field::Null => Value::Null,
                        Field::Int(i) => json!(i),
                        Field::Long(i) => json!(i),
                        Field::Double(d) => json!(d),
                        Field::TimestampMicros(us) => json!(us),
                        Field::Str(s) if name == "detail" => serde_json::from_str(s)
                            .unwrap_or_else(|e| panic!("detail is not JSON: {e}: {s}")),
                        Field::Str(s) => json!(s),
                        other => panic!("column {name}: unexpected type {other:?}"),
                    };
                    (name.clone(), v)
                })
                .collect()
        })
        .collect();
    (rows, groups)
}

/// Epoch microseconds of an RFC 3339 time.
pub fn micros(ts: &str) -> i64 {
    ts.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{ts}: {e}"))
        .as_microsecond()
}

/// Asserts that `row` holds what the JSON Lines record `rec` says: every field typed, `file` 0
/// where the record leaves it out, `detail` the same JSON, and the promoted columns (`label`,
/// `closed_by` of a `verdict.close`; `signature`, `incident` of a `verdict.incident`) equal to
/// the detail's fields, null elsewhere.
pub fn assert_row_is_record(row: &Map<String, Value>, rec: &Value, what: &str) {
    check(row, rec, what, false);
}

/// [`assert_row_is_record`] for a record of another capture of the same packets (two `live`
/// processes at once): the kernel stamps each capture's copy of a packet on its own, a few µs
/// apart, so times (and durations made of them) may differ by up to 1 ms; everything else is
/// exact.
pub fn assert_row_is_record_of_twin_capture(row: &Map<String, Value>, rec: &Value, what: &str) {
    check(row, rec, what, true);
}

/// `a` and `b` are the same JSON, floats within 1e-3 (seconds or ms) and RFC 3339 times
/// within 1 ms when `near`.
fn same(a: &Value, b: &Value, near: bool) -> bool {
    if !near {
        return a == b;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-3
        }
        (Value::String(x), Value::String(y)) if x != y => {
            match (x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()) {
                (Ok(x), Ok(y)) => (x.as_microsecond() - y.as_microsecond()).abs() <= 1000,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y, near))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(v, w, near)))
        }
        _ => a == b,
    }
}

fn check(row: &Map<String, Value>, rec: &Value, what: &str, near: bool) {
    let col = |k: &str| {
        row.get(k)
            .unwrap_or_else(|| panic!("{what}: no column {k}"))
    };
    let field = |k: &str| rec.get(k).cloned().unwrap_or(Value::Null);
    let ts = col("ts").as_i64().unwrap();
    let want = micros(rec["ts"].as_str().unwrap());
    assert!(
        ts == want || (near && (ts - want).abs() <= 1000),
        "{what}: ts {ts} of {rec}"
    );
    for k in [
        "t", "frame", "conn", "leg", "dir", "from", "to", "layer", "kind",
    ] {
        assert!(
            same(col(k), &field(k), near),
            "{what}: {k} {} of {rec}",
            col(k)
        );
    }
    assert_eq!(
        col("file"),
        &json!(rec.get("file").and_then(Value::as_u64).unwrap_or(0))
    );
    let detail = &rec["detail"];
    assert!(
        same(col("detail"), detail, near),
        "{what}: detail {} of {rec}",
        col("detail")
    );
    let kind = rec["kind"].as_str().unwrap();
    let when = |yes: bool, v: &Value| if yes { v.clone() } else { Value::Null };
    let close = kind == "verdict.close";
    let incident = kind == "verdict.incident";
    assert_eq!(
        col("label"),
        &when(close, &detail["label"]),
        "{what}: label"
    );
    assert_eq!(
        col("closed_by"),
        &when(close, &detail["closed_by"]),
        "{what}: closed_by"
    );
    assert_eq!(
        col("signature"),
        &when(incident, &detail["signature"]["id"]),
        "{what}: signature"
    );
    assert_eq!(
        col("incident"),
        &when(incident, &detail["id"]),
        "{what}: incident"
    );
}
