//! `live --format parquet`: the JSON Lines stream of `live --format jsonl`, turned into Parquet
//! rows as it is written (so that both formats carry the same values), into a file that is
//! renamed into place only when complete, optionally rotated every `--output-rotate` seconds so
//! that a fleet can ship finished files; or into standard output (a pipe) as one file.
//!
//! A Parquet file is readable only once its footer is written, so a reader sees rotated files,
//! never the one being written. Rows are written as a row group every
//! [`crate::export::parquet::GROUP_ROWS`] rows or [`GROUP_EVERY`] of wall clock, whichever
//! comes first, which bounds memory whatever the traffic.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::export::parquet::EventWriter;
use crate::outfile::Atomic;

/// Buffered rows are written as a row group at least this often.
pub const GROUP_EVERY: Duration = Duration::from_secs(10);

/// Where the file goes.
enum Dest<O: Write> {
    /// A file renamed into place when complete.
    File(Atomic),
    /// The caller's writer (standard output).
    Out(O),
}

impl<O: Write> Write for Dest<O> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Dest::File(f) => f.write(buf),
            Dest::Out(o) => o.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Dest::File(f) => f.flush(),
            Dest::Out(o) => o.flush(),
        }
    }
}

/// The name of a rotated file started at `at`: FILE's name with the UTC time before its
/// extension (`events.parquet` → `events.20261202T103500Z.parquet`), so that the names sort in
/// time order and a glob (`events.*.parquet`) finds them all.
pub fn stamped_path(base: &Path, at: jiff::Timestamp) -> PathBuf {
    crate::live::writer::with_suffix(base, &at.strftime("%Y%m%dT%H%M%SZ").to_string())
}

/// A [`Write`] that takes JSON Lines (`proxyscope.events/1`) and writes them as Parquet.
/// [`Write::flush`] is where time passes: a due row group or rotation happens there (live
/// flushes at every tick). [`EventsFile::finish`] writes the last footer; dropped without it,
/// an unfinished file is removed.
pub struct EventsFile<O: Write> {
    /// `-o FILE` (None: `out`).
    base: Option<PathBuf>,
    rotate: Option<Duration>,
    out: Option<O>,
    current: Option<(EventWriter<Dest<O>>, PathBuf)>,
    opened: Instant,
    last_group: Instant,
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// Files completed, in order.
    pub files: Vec<PathBuf>,
    /// Rows written to them.
    pub rows: u64,
}

impl<O: Write> EventsFile<O> {
    /// Into `path`, or with `rotate`, into a new time-stamped file every `rotate`.
    pub fn to_file(path: &Path, rotate: Option<Duration>) -> EventsFile<O> {
        EventsFile::new(Some(path.to_path_buf()), rotate, None)
    }

    /// Into `out`, as one file.
    pub fn to_writer(out: O) -> EventsFile<O> {
        EventsFile::new(None, None, Some(out))
    }

    fn new(base: Option<PathBuf>, rotate: Option<Duration>, out: Option<O>) -> EventsFile<O> {
        EventsFile {
            base,
            rotate,
            out,
            current: None,
            opened: Instant::now(),
            last_group: Instant::now(),
            line: Vec::new(),
            files: Vec::new(),
            rows: 0,
        }
    }

    /// The file being written, opened if none is.
    fn open(&mut self) -> io::Result<&mut EventWriter<Dest<O>>> {
        if self.current.is_none() {
            let (dest, path) = match (&self.base, self.out.take()) {
                (Some(base), _) => {
                    let mut path = match self.rotate {
                        Some(_) => stamped_path(base, jiff::Timestamp::now()),
                        None => base.clone(),
                    };
                    // Two files started within a second (a clock step back, a short period).
                    let mut n = 1;
                    while self.rotate.is_some() && self.files.contains(&path) {
                        path = crate::live::writer::nth_path(
                            &stamped_path(base, jiff::Timestamp::now()),
                            n,
                        );
                        n += 1;
                    }
                    (Dest::File(Atomic::create(&path)?), path)
                }
                (None, Some(o)) => (Dest::Out(o), PathBuf::from("-")),
                (None, None) => return Err(io::Error::other("the Parquet output is closed")),
            };
            self.current = Some((EventWriter::new(dest)?, path));
            self.opened = Instant::now();
            self.last_group = Instant::now();
        }
        match self.current.as_mut() {
            Some((w, _)) => Ok(w),
            None => Err(io::Error::other("the Parquet output is closed")),
        }
    }

    /// Writes the footer of the current file and renames it into place.
    fn close(&mut self) -> io::Result<()> {
        if let Some((w, path)) = self.current.take() {
            self.rows += w.rows_written() + w.pending() as u64;
            match w.finish()? {
                Dest::File(f) => {
                    f.commit()?;
                    tracing::info!("{}: Parquet events file complete", path.display());
                    self.files.push(path);
                }
                Dest::Out(o) => self.out = Some(o),
            }
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let rec: serde_json::Value = serde_json::from_slice(line).map_err(io::Error::other)?;
        if rec.get("kind").is_none() {
            // The schema line: the file's metadata says it.
            return Ok(());
        }
        self.open()?.push(&rec)
    }

    /// Writes the last row group and footer (and renames the file into place); [`Self::files`]
    /// and [`Self::rows`] are then complete.
    pub fn finish(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.line);
        self.line(&rest)?;
        // A run that wrote no row at all still leaves a valid (empty) file.
        if self.files.is_empty() {
            self.open()?;
        }
        self.close()
    }
}

impl<O: Write> Write for EventsFile<O> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            if self.line.is_empty() {
                self.line(head)?;
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(head);
                self.line(&whole)?;
            }
            rest = tail.get(1..).unwrap_or_default();
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // The first file is created at once, so that an unwritable directory stops live at its
        // start rather than at the first event.
        if self.base.is_some() && self.current.is_none() && self.files.is_empty() {
            self.open()?;
        }
        let rotate_due = self
            .rotate
            .is_some_and(|r| self.current.is_some() && self.opened.elapsed() >= r);
        if rotate_due {
            return self.close();
        }
        if self.last_group.elapsed() >= GROUP_EVERY {
            self.last_group = Instant::now();
            if let Some((w, _)) = self.current.as_mut() {
                w.flush_group()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_carry_the_time_before_the_extension() {
        let at: jiff::Timestamp = "2026-12-02T10:35:07.5Z".parse().unwrap();
        assert_eq!(
            stamped_path(Path::new("/var/tmp/events.parquet"), at),
            PathBuf::from("/var/tmp/events.20261202T103507Z.parquet")
        );
        assert_eq!(
            stamped_path(Path::new("events"), at),
            PathBuf::from("events.20261202T103507Z")
        );
    }

    #[test]
    fn lines_split_anywhere_make_the_same_rows() {
        let text = concat!(
            "{\"schema\":\"proxyscope.events/1\"}\n",
            "{\"ts\":\"2026-11-24T10:20:32.5Z\",\"t\":0.0,\"frame\":1,\"conn\":1,",
            "\"leg\":\"frontend\",\"dir\":\"c2s\",\"from\":\"a:1\",\"to\":\"b:2\",",
            "\"layer\":\"tcp\",\"kind\":\"tcp.syn\",\"detail\":{}}\n",
            "{\"ts\":\"2026-11-24T10:20:33Z\",\"layer\":\"summary\",\"kind\":\"live.summary\",",
            "\"detail\":{\"live\":{}}}\n",
        );
        let mut whole = EventsFile::to_writer(Vec::new());
        whole.write_all(text.as_bytes()).unwrap();
        let mut bytewise = EventsFile::to_writer(Vec::new());
        for b in text.as_bytes() {
            bytewise.write_all(std::slice::from_ref(b)).unwrap();
            bytewise.flush().unwrap();
        }
        for f in [whole, bytewise] {
            let mut f = f;
            f.finish().unwrap();
            assert_eq!(f.rows, 2);
        }
    }
}
