//! Counts over capture time in bounded memory: fixed-width bins of absolute time that double
//! in width (merging pairs) whenever there would be more than [`MAX_BINS`], so a capture of
//! seconds keeps 1-second bins and one of months a few thousand coarser ones.

use std::collections::BTreeMap;

use crate::time::Timestamp;

/// Bins held at most.
pub const MAX_BINS: usize = 4096;

const SECOND: i64 = 1_000_000_000;

/// Counts of events per time bin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeBins {
    /// Bin width, ns.
    width: i64,
    /// Bin (absolute time / width) → count.
    bins: BTreeMap<i64, u64>,
}

impl Default for TimeBins {
    fn default() -> Self {
        TimeBins {
            width: SECOND,
            bins: BTreeMap::new(),
        }
    }
}

impl TimeBins {
    /// Counts one event at `ts`.
    pub fn add(&mut self, ts: Timestamp) {
        *self.bins.entry(ts.0.div_euclid(self.width)).or_default() += 1;
        while self.bins.len() > MAX_BINS {
            self.coarsen();
        }
    }

    fn coarsen(&mut self) {
        self.width = self.width.saturating_mul(2);
        let old = std::mem::take(&mut self.bins);
        for (k, n) in old {
            *self.bins.entry(k.div_euclid(2)).or_default() += n;
        }
    }

    /// Events counted.
    pub fn total(&self) -> u64 {
        self.bins.values().sum()
    }

    /// `bars` counts covering `from`..`to` (each (to − from) / bars wide, at least one stored
    /// bin), an event in the bar its bin starts in; events outside go to the first or last.
    pub fn bars(&self, from: Timestamp, to: Timestamp, bars: usize) -> Vec<u64> {
        let bars = bars.max(1);
        let span = to.0.saturating_sub(from.0).max(1);
        let step = (span / bars as i64).max(self.width).max(1);
        let n = usize::try_from(span / step + 1).unwrap_or(1).clamp(1, bars);
        let mut out = vec![0u64; n];
        for (&k, &c) in &self.bins {
            let at = k.saturating_mul(self.width);
            let i = (at.saturating_sub(from.0) / step).clamp(0, n as i64 - 1);
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                *slot += c;
            }
        }
        out
    }

    /// The width of a bar that [`TimeBins::bars`] gives, in seconds.
    pub fn bar_secs(&self, from: Timestamp, to: Timestamp, bars: usize) -> f64 {
        let span = to.0.saturating_sub(from.0).max(1);
        (span / bars.max(1) as i64).max(self.width).max(1) as f64 / SECOND as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Timestamp {
        Timestamp((s * 1e9) as i64)
    }

    #[test]
    fn bars_keep_every_event() {
        let mut b = TimeBins::default();
        for s in [0.5, 1.2, 1.9, 7.0, 9.99] {
            b.add(at(1000.0 + s));
        }
        let bars = b.bars(at(1000.0), at(1010.0), 10);
        assert_eq!(bars.iter().sum::<u64>(), 5);
        assert_eq!(bars.first(), Some(&1));
        assert_eq!(bars.get(1), Some(&2));
        assert_eq!(bars.get(7), Some(&1));
        // Fewer bars than bins: merged, nothing lost.
        assert_eq!(b.bars(at(1000.0), at(1010.0), 2), vec![3, 2]);
    }

    #[test]
    fn bins_stay_bounded_over_a_long_capture() {
        let mut b = TimeBins::default();
        // One event a minute for 30 days.
        for m in 0..(30 * 24 * 60) {
            b.add(at(f64::from(m) * 60.0));
        }
        assert!(b.bins.len() <= MAX_BINS);
        assert_eq!(b.total(), 30 * 24 * 60);
        let bars = b.bars(at(0.0), at(30.0 * 86_400.0), 100);
        assert_eq!(bars.iter().sum::<u64>(), 30 * 24 * 60);
        assert!(bars.len() <= 100);
    }
}
