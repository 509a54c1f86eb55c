//! The ground truth: one JSON object per line for every event the lab causes or sees, stamped
//! with the wall clock (nanoseconds since the Unix epoch, the clock tcpdump stamps packets with).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::LabError;

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The ground-truth sink (a no-op without a file).
#[derive(Debug, Default)]
pub struct Truth {
    out: Option<Mutex<BufWriter<File>>>,
}

impl Truth {
    /// Writes to `path` (truncated), or nowhere.
    pub fn create(path: Option<&Path>) -> Result<Truth, LabError> {
        let out = match path {
            Some(p) => Some(Mutex::new(BufWriter::new(
                File::create(p).map_err(|e| LabError::File(p.display().to_string(), e))?,
            ))),
            None => None,
        };
        Ok(Truth { out })
    }

    /// Records `event` at `ts_ns` with `fields` (an object; other values are put under
    /// `detail`). The line is flushed at once: the lab may be stopped by a signal.
    pub fn record(&self, ts_ns: i64, event: &str, fields: Value) {
        let Some(out) = &self.out else { return };
        let mut m = Map::new();
        m.insert("ts_ns".into(), ts_ns.into());
        m.insert("event".into(), event.into());
        match fields {
            Value::Object(o) => m.extend(o),
            Value::Null => {}
            other => {
                m.insert("detail".into(), other);
            }
        }
        let line = Value::Object(m).to_string();
        if let Ok(mut w) = out.lock() {
            if writeln!(w, "{line}").and_then(|_| w.flush()).is_err() {
                tracing::warn!("could not write the ground truth");
            }
        }
    }

    /// Records `event` now.
    pub fn now(&self, event: &str, fields: Value) {
        self.record(now_ns(), event, fields);
    }
}
