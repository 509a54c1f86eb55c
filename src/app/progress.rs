//! Progress on stderr (indicatif): a bar with bytes, percentage, rate and ETA when the inputs'
//! total size is known, a spinner with counts when it is not (standard input, pipes, `live`).
//! Shown only where a person watches stderr (the caller decides: a terminal and no `-q`);
//! cleared at the end; never written to stdout.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::source::Input;

/// At most this often the bar is updated and redrawn, and stdout rows are let through
/// while it is shown.
const EVERY: Duration = Duration::from_millis(100);
/// Redraws per second indicatif allows itself.
const HZ: u8 = 10;

/// What a command shows on stderr while it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The inputs' total size is known: a bar against it.
    Bar {
        /// Sum of the inputs' sizes in bytes (as stored: compressed for gzip).
        total: u64,
    },
    /// Unknown total (a stream, a live capture): a spinner with counts.
    Spinner,
}

/// Where a command runs, as far as progress is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tty {
    /// Show progress: stderr is a terminal and `-q` was not given.
    pub progress: bool,
    /// Standard output is a terminal too: its rows must not be garbled by the bar.
    pub stdout: bool,
}

/// The style for inputs of these sizes (`None`: a stream, size unknown); nothing unless
/// `show`.
pub fn style(show: bool, sizes: &[Option<u64>]) -> Option<Style> {
    if !show {
        return None;
    }
    let total = sizes
        .iter()
        .try_fold(0u64, |sum, s| s.map(|n| sum.saturating_add(n)));
    Some(match total {
        Some(total) if !sizes.is_empty() => Style::Bar { total },
        _ => Style::Spinner,
    })
}

/// `style`'s `sizes` of prepared inputs: a regular file's length (0 when it cannot be read:
/// it is reported as unreadable), `None` for a stream.
pub fn sizes(inputs: &[Input]) -> Vec<Option<u64>> {
    inputs
        .iter()
        .map(|i| match i {
            Input::File(p) => Some(std::fs::metadata(p).map_or(0, |m| m.len())),
            Input::Stream(..) => None,
        })
        .collect()
}

/// A bar or spinner on stderr, or nothing (hidden).
pub struct Meter {
    bar: ProgressBar,
    /// Nothing is drawn (asking indicatif locks and may ask the terminal).
    hidden: bool,
    last: Option<Instant>,
    counts: Arc<Counts>,
}

/// What the `{counts}` of the template shows, read when the bar is drawn (no string is built
/// per update).
struct Counts {
    /// Frames or packets.
    items: AtomicU64,
    /// Open connections plus one; 0: not known.
    open: AtomicU64,
    unit: &'static str,
}

/// The style with `{counts}` bound to `counts`.
fn with_counts(template: &str, fallback: ProgressStyle, counts: &Arc<Counts>) -> ProgressStyle {
    let c = counts.clone();
    ProgressStyle::with_template(template)
        .unwrap_or(fallback)
        .with_key(
            "counts",
            move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let items = c.items.load(Ordering::Relaxed);
                let _ = match c.open.load(Ordering::Relaxed).checked_sub(1) {
                    Some(open) => write!(w, "{items} {}, {open} open", c.unit),
                    None => write!(w, "{items} {}", c.unit),
                };
            },
        )
}

impl Meter {
    /// Shows `style` on stderr (nothing for `None`); `unit` names what is counted ("frames",
    /// "packets").
    pub fn new(style: Option<Style>, unit: &'static str) -> Meter {
        let counts = Arc::new(Counts {
            items: AtomicU64::new(0),
            open: AtomicU64::new(0),
            unit,
        });
        let bar = match style {
            None => ProgressBar::hidden(),
            Some(Style::Bar { total }) => {
                let bar = ProgressBar::with_draw_target(
                    Some(total),
                    ProgressDrawTarget::stderr_with_hz(HZ),
                );
                bar.set_style(with_counts(
                    // About 72 columns besides the bar, which takes the rest of the line.
                    "{wide_bar} {decimal_bytes}/{decimal_total_bytes} {percent}% \
                     {decimal_bytes_per_sec} ETA {eta} {counts}",
                    ProgressStyle::default_bar(),
                    &counts,
                ));
                bar
            }
            Some(Style::Spinner) => {
                let bar =
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(HZ));
                bar.set_style(with_counts(
                    "{spinner} {decimal_bytes} {decimal_bytes_per_sec} {elapsed} {counts}",
                    ProgressStyle::default_spinner(),
                    &counts,
                ));
                bar
            }
        };
        Meter {
            hidden: bar.is_hidden(),
            bar,
            last: None,
            counts,
        }
    }

    /// A meter that shows nothing.
    pub fn hidden() -> Meter {
        Meter::new(None, "frames")
    }

    /// True when nothing is drawn.
    pub fn is_hidden(&self) -> bool {
        self.hidden
    }

    /// The counts so far; cheap when called often (at most one update per `EVERY`).
    /// `open`: connections in the flow table, when known.
    pub fn update(&mut self, count: u64, bytes: u64, open: Option<usize>) {
        if self.hidden || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.counts.items.store(count, Ordering::Relaxed);
        let open = open.map_or(0, |n| (n as u64).saturating_add(1));
        self.counts.open.store(open, Ordering::Relaxed);
        // Draws (at most HZ times a second), reading the counts.
        self.bar.set_position(bytes);
    }

    /// Clears the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// A writer for stdout rows: when `stdout` is the same terminal as the bar, rows are let
    /// through at most every 100 ms (or 64 KiB) with the bar taken off the screen and drawn
    /// again, so neither garbles the other; otherwise the writer is left alone.
    pub fn guard<W: Write>(&self, out: W, stdout: bool) -> BarSafe<W> {
        BarSafe {
            inner: out,
            bar: (stdout && !self.hidden).then(|| self.bar.clone()),
            buf: Vec::new(),
            last: Instant::now(),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Stdout rows kept off a progress bar on the same terminal (see [`Meter::guard`]).
pub struct BarSafe<W: Write> {
    inner: W,
    bar: Option<ProgressBar>,
    buf: Vec<u8>,
    last: Instant,
}

impl<W: Write> BarSafe<W> {
    /// Writes the first `n` bytes held, with the bar off the screen.
    fn emit(&mut self, n: usize) -> io::Result<()> {
        let Some(bar) = &self.bar else {
            return Ok(());
        };
        let n = n.min(self.buf.len());
        if n == 0 {
            return Ok(());
        }
        let inner = &mut self.inner;
        let buf = &self.buf;
        bar.suspend(|| {
            inner.write_all(buf.get(..n).unwrap_or_default())?;
            inner.flush()
        })?;
        self.buf.drain(..n);
        self.last = Instant::now();
        Ok(())
    }
}

impl<W: Write> Write for BarSafe<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.bar.is_none() {
            return self.inner.write(data);
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 16 || self.last.elapsed() >= EVERY {
            // Whole lines only: the bar is drawn again below the last one.
            let upto = self
                .buf
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            self.emit(upto)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.bar.is_none() {
            return self.inner.flush();
        }
        self.emit(self.buf.len())
    }
}

impl<W: Write> Drop for BarSafe<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_unless_a_person_watches() {
        assert_eq!(style(false, &[Some(10)]), None);
        assert_eq!(style(false, &[None]), None);
    }

    #[test]
    fn files_of_known_size_get_a_bar_against_their_sum() {
        assert_eq!(
            style(true, &[Some(1_000), Some(234)]),
            Some(Style::Bar { total: 1_234 })
        );
        assert_eq!(
            style(true, &[Some(u64::MAX), Some(1)]),
            Some(Style::Bar { total: u64::MAX })
        );
    }

    #[test]
    fn a_stream_among_the_inputs_gets_a_spinner() {
        assert_eq!(style(true, &[Some(10), None]), Some(Style::Spinner));
        assert_eq!(style(true, &[]), Some(Style::Spinner));
    }

    #[test]
    fn sizes_are_the_files_lengths_and_none_for_standard_input() {
        let path = format!(
            "{}/captures/plain-clean-quit.pcap",
            env!("CARGO_MANIFEST_DIR")
        );
        let len = std::fs::metadata(&path).expect("capture").len();
        let inputs = [
            Input::new(&path).expect("file"),
            Input::new("-").expect("stdin"),
            Input::new("/nonexistent/x.pcap").expect("checked later"),
        ];
        assert_eq!(sizes(&inputs), [Some(len), None, Some(0)]);
    }

    #[test]
    fn without_a_shared_terminal_rows_pass_straight_through() {
        let meter = Meter::new(Some(Style::Bar { total: 10 }), "frames");
        let mut out = meter.guard(Vec::new(), false);
        out.write_all(b"row\n").expect("write");
        assert_eq!(out.inner, b"row\n");
        // A hidden meter never holds rows back either.
        let mut out = Meter::hidden().guard(Vec::new(), true);
        out.write_all(b"row").expect("write");
        assert_eq!(out.inner, b"row");
    }
}
