//! Stage 2c, clocks of several captures: the same TCP segment seen in two files tells how far
//! apart their clocks are, and, once the files are shifted, which observations are the same
//! segment seen twice rather than a retransmission.
//!
//! A segment is recognised by what no capture point changes: its 4-tuple (in its direction),
//! sequence and acknowledgement numbers, flags, payload length and window. The IP ID is not
//! used (NAT may rewrite it), nor VLAN tags (a mirror port may add them). Both the offset
//! estimate and the duplicate test keep bounded tables: memory does not grow with the files.

use std::collections::{HashMap, VecDeque};

use crate::common::Endpoint;
use crate::decode::{self, Segment};
use crate::source::CaptureFile;
use crate::time::Timestamp;

/// Frames of each file the estimate reads (from its start).
pub const SAMPLE_FRAMES: u64 = 200_000;
/// Segments of the first file indexed at most (each about 100 bytes).
pub const MAX_INDEX: usize = 1 << 16;
/// Matched deltas kept per file at most.
pub const MAX_MATCHES: usize = 1 << 16;
/// Matches needed to state a drift.
pub const MIN_DRIFT_MATCHES: usize = 20;
/// Time the matches must span (in the first file's clock) to state a drift: over a few
/// seconds a drift of a few ppm is below the timestamps' resolution.
pub const MIN_DRIFT_SPAN_NS: i64 = 10_000_000_000;
/// A second observation counts as the same segment within this of the first, plus twice the
/// offsets' spread.
pub const DUPLICATE_SLACK_NS: i64 = 1_000_000;
/// Recent segments the duplicate test remembers at most.
pub const MAX_RECENT: usize = 1 << 16;

/// What identifies one TCP segment on the wire wherever it was captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    src: Endpoint,
    dst: Endpoint,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    len: u64,
}

impl Key {
    /// The key of a decoded segment.
    pub fn of(seg: &Segment<'_>) -> Key {
        Key {
            src: seg.src,
            dst: seg.dst,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags.0,
            window: seg.window,
            len: seg.payload.len() as u64 + u64::from(seg.missing),
        }
    }

    /// Segments worth indexing for the estimate: with data, or SYN, FIN or RST. Bare ACKs are
    /// left out: duplicate ACKs repeat the same key.
    fn distinctive(&self) -> bool {
        use crate::decode::TcpFlags;
        self.len > 0 || self.flags & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0
    }
}

/// An offset estimated from matched segments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// This file's time − the first file's for the same segment, ns: the median over the
    /// matches ([`estimate`]), or with the one-way delay taken out when connections were
    /// matched both ways ([`symmetric_offset`], as [`estimate_files`] gives it).
    pub offset_ns: i64,
    /// Interquartile range of those deltas, ns.
    pub spread_ns: i64,
    /// Segments matched.
    pub matches: u64,
    /// Slope of the deltas over time in ppm, when the matches span [`MIN_DRIFT_SPAN_NS`].
    pub drift_ppm: Option<f64>,
    /// The time (the first file's clock, ns since the epoch) at which `offset_ns` holds: with
    /// a drift, the offset at another time `t` is `offset_ns + drift_ppm × (t − at_ns) / 10⁶`.
    pub at_ns: i64,
}

impl Estimate {
    /// The offset at `t` (ns since the epoch, the first file's clock), the drift applied.
    pub fn offset_at(&self, t: i64) -> i64 {
        match self.drift_ppm {
            Some(d) => self
                .offset_ns
                .saturating_add((d * t.saturating_sub(self.at_ns) as f64 / 1e6) as i64),
            None => self.offset_ns,
        }
    }
}

/// The median of `v` (sorted in place); the mean of the two middle values for an even count.
pub fn median(v: &mut [i64]) -> Option<i64> {
    v.sort_unstable();
    quantile(v, 1, 2)
}

/// The `num/den` quantile of sorted values, interpolated between the two nearest ranks.
fn quantile(sorted: &[i64], num: u64, den: u64) -> Option<i64> {
    let n = sorted.len() as u64;
    let last = n.checked_sub(1)?;
    // Position num/den × (n − 1), as an integer part and a remainder over den.
    let pos = u128::from(last) * u128::from(num);
    let den = u128::from(den.max(1));
    let i = usize::try_from(pos / den).ok()?;
    let rem = pos % den;
    let lo = i128::from(*sorted.get(i)?);
    let hi = i128::from(*sorted.get(i + 1).unwrap_or(sorted.get(i)?));
    let v = lo + (hi - lo) * rem as i128 / den as i128;
    i64::try_from(v).ok()
}

/// Estimates an offset from `(time in the first file, delta)` pairs, ns: the median delta,
/// its interquartile range, and the drift when the pairs span long enough. With a drift, the
/// deltas are detrended first and the offset is the one at the inliers' mean time (`at_ns`):
/// over an hour a few ppm move the raw deltas by more than the spread they are judged by.
pub fn estimate(samples: &[(i64, i64)]) -> Option<Estimate> {
    let mut deltas: Vec<i64> = samples.iter().map(|s| s.1).collect();
    deltas.sort_unstable();
    let q1 = quantile(&deltas, 1, 4)?;
    let q3 = quantile(&deltas, 3, 4)?;
    let iqr = q3.saturating_sub(q1);
    // Tukey's fences leave the odd retransmission or reordering out of the slope.
    let lo = q1.saturating_sub(iqr.saturating_mul(3) / 2);
    let hi = q3.saturating_add(iqr.saturating_mul(3) / 2);
    let mut times: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let fit = drift_fit(samples, lo, hi);
    let at_ns = match fit {
        Some((_, at)) => at,
        None => median(&mut times)?,
    };
    let detrended: Vec<i64> = samples
        .iter()
        .map(|&(t, d)| detrend(d, t, fit, at_ns))
        .collect();
    let mut sorted = detrended;
    sorted.sort_unstable();
    let offset_ns = quantile(&sorted, 1, 2)?;
    let spread_ns = quantile(&sorted, 3, 4)?.saturating_sub(quantile(&sorted, 1, 4)?);
    Some(Estimate {
        offset_ns,
        spread_ns,
        matches: samples.len() as u64,
        drift_ppm: fit.map(|f| f.0),
        at_ns,
    })
}

/// `delta` at time `t` with the drift's share since `at_ns` taken out.
fn detrend(delta: i64, t: i64, fit: Option<(f64, i64)>, at_ns: i64) -> i64 {
    match fit {
        Some((ppm, _)) => delta.saturating_sub((ppm * t.saturating_sub(at_ns) as f64 / 1e6) as i64),
        None => delta,
    }
}

/// The offset with the one-way delay between the two capture points taken out, as NTP does:
/// per connection matched both ways, the mean of its two directions' median deltas (a segment
/// is seen later where it arrives, by the delay one way, earlier by it the other way); the
/// median over such connections. `flows` holds `(sender, receiver, delta)`; None when no
/// connection was matched in both directions.
pub fn symmetric_offset(flows: &[(Endpoint, Endpoint, i64)]) -> Option<i64> {
    let keyed: Vec<((Endpoint, Endpoint), i64)> =
        flows.iter().map(|&(s, d, delta)| ((s, d), delta)).collect();
    symmetric_offset_by(&keyed, |(s, d)| (d, s))
}

/// [`symmetric_offset`] over any flow key: `rev` names the flow that goes the other way (for a
/// relay, the response's pair of directions for the request's).
fn symmetric_offset_by<K: Ord + Copy>(flows: &[(K, i64)], rev: impl Fn(K) -> K) -> Option<i64> {
    let mut by_flow: std::collections::BTreeMap<K, Vec<i64>> = Default::default();
    for &(k, d) in flows {
        by_flow.entry(k).or_default().push(d);
    }
    let mut mids: Vec<i64> = Vec::new();
    for (k, fwd) in &by_flow {
        if *k >= rev(*k) {
            continue;
        }
        if let Some(back) = by_flow.get(&rev(*k)) {
            let (mut fwd, mut back) = (fwd.clone(), back.clone());
            if let (Some(a), Some(b)) = (median(&mut fwd), median(&mut back)) {
                mids.push(((i128::from(a) + i128::from(b)) / 2) as i64);
            }
        }
    }
    median(&mut mids)
}

/// Least-squares slope of the deltas (within `lo..=hi`) over time, in ppm (µs per s); None
/// with fewer than [`MIN_DRIFT_MATCHES`] or a span under [`MIN_DRIFT_SPAN_NS`].
pub fn drift_ppm(samples: &[(i64, i64)], lo: i64, hi: i64) -> Option<f64> {
    drift_fit(samples, lo, hi).map(|f| f.0)
}

/// [`drift_ppm`] and the mean time of the samples it kept (where the fitted line is best
/// known).
fn drift_fit(samples: &[(i64, i64)], lo: i64, hi: i64) -> Option<(f64, i64)> {
    let kept: Vec<(i64, i64)> = samples
        .iter()
        .copied()
        .filter(|&(_, d)| (lo..=hi).contains(&d))
        .collect();
    if kept.len() < MIN_DRIFT_MATCHES {
        return None;
    }
    let t0 = kept.iter().map(|s| s.0).min()?;
    let t1 = kept.iter().map(|s| s.0).max()?;
    if t1.saturating_sub(t0) < MIN_DRIFT_SPAN_NS {
        return None;
    }
    // Seconds since the first match and deltas relative to the first kept one: small numbers,
    // so f64 keeps nanoseconds.
    let d0 = kept.first()?.1;
    let n = kept.len() as f64;
    let xs = kept.iter().map(|s| s.0.saturating_sub(t0) as f64 / 1e9);
    let ys = kept.iter().map(|s| s.1.saturating_sub(d0) as f64);
    let mx = xs.clone().sum::<f64>() / n;
    let my = ys.clone().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs.zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    // ns per s is 1e-9 s/s; a ppm is 1e-6 s/s.
    let at = t0.saturating_add((mx * 1e9) as i64);
    (sxx > 0.0).then(|| (sxy / sxx / 1e3, at))
}

/// The first file's distinctive segments, each with its time; a key seen twice (a
/// retransmission) is ambiguous and matches nothing.
#[derive(Default)]
pub struct Index {
    map: HashMap<Key, Entry, ahash::RandomState>,
}

#[derive(Clone, Copy)]
struct Entry {
    ts: Timestamp,
    ambiguous: bool,
    /// The last file that matched it: a key matches once per file (its first observation).
    matched_by: Option<usize>,
}

impl Index {
    /// Indexes one segment of the first file (nothing once [`MAX_INDEX`] keys are held).
    pub fn add(&mut self, seg: &Segment<'_>) {
        let key = Key::of(seg);
        if !key.distinctive() {
            return;
        }
        if let Some(e) = self.map.get_mut(&key) {
            e.ambiguous = true;
        } else if self.map.len() < MAX_INDEX {
            self.map.insert(
                key,
                Entry {
                    ts: seg.ts,
                    ambiguous: false,
                    matched_by: None,
                },
            );
        }
    }

    /// The first file's time of a segment of file `file`, the first time it is asked.
    pub fn find(&mut self, file: usize, seg: &Segment<'_>) -> Option<Timestamp> {
        let e = self.map.get_mut(&Key::of(seg))?;
        if e.ambiguous || e.matched_by == Some(file) {
            return None;
        }
        e.matched_by = Some(file);
        Some(e.ts)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Estimates the clocks of `files[1..]` against `files[0]` from their first `max_frames`
/// frames each (timestamps as read, before any shift): one entry per later file, None when it
/// has no segment in common with the first. Reads the files; they are not reused.
pub fn estimate_files(mut files: Vec<CaptureFile>, max_frames: u64) -> Vec<Option<Estimate>> {
    if files.is_empty() {
        return Vec::new();
    }
    let first = files.remove(0);
    estimate_against(first, files, max_frames)
}

/// Estimates the clocks of `others` against `anchor` (timestamps as read, before any shift),
/// from their first `max_frames` frames each: one entry per file of `others`, None when it has
/// no segment in common with the anchor. Reads the files; they are not reused.
pub fn estimate_against(
    mut anchor: CaptureFile,
    others: Vec<CaptureFile>,
    max_frames: u64,
) -> Vec<Option<Estimate>> {
    let mut index = Index::default();
    each_segment(&mut anchor, max_frames, |seg| index.add(seg));
    others
        .into_iter()
        .map(|mut f| {
            let file = f.index();
            let mut samples: Vec<(i64, i64)> = Vec::new();
            let mut flows: Vec<(Endpoint, Endpoint, i64)> = Vec::new();
            each_segment(&mut f, max_frames, |seg| {
                if samples.len() < MAX_MATCHES {
                    if let Some(t) = index.find(file, seg) {
                        let delta = seg.ts.nanos_since(t);
                        samples.push((t.0, delta));
                        flows.push((seg.src, seg.dst, delta));
                    }
                }
            });
            let mut e = estimate(&samples)?;
            // The one-way delay is taken out of the detrended deltas.
            let fit = e.drift_ppm.map(|d| (d, e.at_ns));
            for (flow, s) in flows.iter_mut().zip(&samples) {
                flow.2 = detrend(s.1, s.0, fit, e.at_ns);
            }
            if let Some(o) = symmetric_offset(&flows) {
                e.offset_ns = o;
            }
            Some(e)
        })
        .collect()
}

/// Relayed payloads shorter than this are not matched: OK packets, COM_QUIT, pings and
/// keep-alives are the same bytes on every connection.
pub const MIN_RELAY_LEN: usize = 16;
/// A payload seen more often than this in either file is not matched: a statement run in a
/// loop pairs every copy with every other, a comb of coincidences one loop period apart.
pub const MAX_RELAY_OCCURRENCES: usize = 4;
/// Payloads of the anchor file indexed at most.
pub const MAX_RELAY_INDEX: usize = 1 << 16;
/// The width of the window in which the relayed copies' deltas must cluster: a proxy relays a
/// request or a response within a few milliseconds.
pub const RELAY_WINDOW_NS: i64 = 2_000_000;
/// Deltas needed in that window to state an offset.
pub const MIN_RELAY_MATCHES: usize = 8;

/// The same payload bytes sent on two different connections: what a proxy does when it relays a
/// statement from a frontend to a backend and its result back. Where two files share no TCP
/// segment (the application host's capture of the frontend leg and the database host's of the
/// backend leg, with no capture on the proxy or load balancer between them), the relayed copies
/// still tell their clocks apart: a request reaches the backend leg a little after the frontend
/// leg, a response the frontend leg a little after the backend leg, so the deltas cluster
/// around the offset, within the proxy's delay. Only payloads seen at most
/// [`MAX_RELAY_OCCURRENCES`] times in each file are paired (statements with their own literals;
/// a statement repeated verbatim is left out), and only the densest [`RELAY_WINDOW_NS`] of the
/// deltas is taken, when it holds at least [`MIN_RELAY_MATCHES`] and twice as many as any
/// window away from it. TLS legs never match (each leg has its own keys).
///
/// Estimates the clocks of `others` against `anchor` from relayed payloads in their first
/// `max_frames` frames each: one entry per file of `others`.
pub fn estimate_relayed(
    mut anchor: CaptureFile,
    others: Vec<CaptureFile>,
    max_frames: u64,
) -> Vec<Option<Estimate>> {
    let hasher = ahash::RandomState::new();
    let key = |seg: &Segment<'_>| {
        (seg.payload.len() >= MIN_RELAY_LEN && seg.missing == 0)
            .then(|| (hasher.hash_one(seg.payload), seg.payload.len()))
    };
    type Seen = Vec<(Timestamp, Endpoint, Endpoint)>;
    let mut index: HashMap<(u64, usize), Seen, ahash::RandomState> = HashMap::default();
    each_segment(&mut anchor, max_frames, |seg| {
        let Some(k) = key(seg) else { return };
        let full = index.len() >= MAX_RELAY_INDEX;
        match index.get_mut(&k) {
            // One past the limit marks the payload as too common.
            Some(v) if v.len() <= MAX_RELAY_OCCURRENCES => v.push((seg.ts, seg.src, seg.dst)),
            Some(_) => {}
            None if !full => {
                index.insert(k, vec![(seg.ts, seg.src, seg.dst)]);
            }
            None => {}
        }
    });
    index.retain(|_, v| v.len() <= MAX_RELAY_OCCURRENCES);
    others
        .into_iter()
        .map(|mut f| {
            let mut mine: HashMap<(u64, usize), usize, ahash::RandomState> = HashMap::default();
            let mut found: Vec<((u64, usize), Relay)> = Vec::new();
            each_segment(&mut f, max_frames, |seg| {
                let Some(k) = key(seg) else { return };
                let Some(copies) = index.get(&k) else { return };
                *mine.entry(k).or_default() += 1;
                for &(t, src, dst) in copies {
                    // The same connection (either way) is a shared segment, not a relay.
                    let same = (src, dst) == (seg.src, seg.dst) || (src, dst) == (seg.dst, seg.src);
                    if !same && found.len() < MAX_MATCHES {
                        let flows = (src, dst, seg.src, seg.dst);
                        found.push((k, (t.0, seg.ts.nanos_since(t), flows)));
                    }
                }
            });
            let mut relays: Vec<Relay> = found
                .into_iter()
                .filter(|(k, _)| mine.get(k).is_some_and(|&n| n <= MAX_RELAY_OCCURRENCES))
                .map(|(_, s)| s)
                .collect();
            relays.sort_unstable_by_key(|r| r.1);
            let mut samples: Vec<(i64, i64)> = relays.iter().map(|r| (r.0, r.1)).collect();
            let peak = densest(&mut samples, RELAY_WINDOW_NS)?;
            let mut e = estimate(&peak)?;
            // A request is seen later on the backend leg, its response later on the frontend
            // leg: per pair of connections, the mean of the two directions' medians takes the
            // proxy's delay out, as the one-way delay is for shared segments.
            let (lo, hi) = (peak.first()?.1, peak.last()?.1);
            let fit = e.drift_ppm.map(|d| (d, e.at_ns));
            let flows: Vec<(RelayFlows, i64)> = relays
                .iter()
                .filter(|r| (lo..=hi).contains(&r.1))
                .map(|r| (r.2, detrend(r.1, r.0, fit, e.at_ns)))
                .collect();
            let rev = |(a, b, c, d): RelayFlows| (b, a, d, c);
            if let Some(o) = causal_offset(&flows, rev).or(symmetric_offset_by(&flows, rev)) {
                e.offset_ns = o;
            }
            Some(e)
        })
        .collect()
}

/// The middle of the offsets that keep every relay after its original: a request is seen on
/// the leg it is relayed to after the leg it came from, so the offset is at most each request's
/// delta; a response the other way round, so at least each response's delta. Per pair of
/// connections, the direction with the larger median is the requests'. None when the bounds
/// cross, or no pair was seen both ways: the medians' estimate is used then. The
/// medians alone put the offset off by half the difference of the proxy's delays each way, and
/// a request relayed faster than that would come out before its original and go unpaired.
fn causal_offset<K: Ord + Copy>(flows: &[(K, i64)], rev: impl Fn(K) -> K) -> Option<i64> {
    let mut by_flow: std::collections::BTreeMap<K, Vec<i64>> = Default::default();
    for &(k, d) in flows {
        by_flow.entry(k).or_default().push(d);
    }
    let (mut requests, mut responses): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    for (k, a) in &by_flow {
        if *k >= rev(*k) {
            continue;
        }
        let Some(b) = by_flow.get(&rev(*k)) else {
            continue;
        };
        let (mut a, mut b) = (a.clone(), b.clone());
        let (ma, mb) = (median(&mut a)?, median(&mut b)?);
        let (q, r) = if ma >= mb { (a, b) } else { (b, a) };
        requests.extend(q);
        responses.extend(r);
    }
    // The 1st and 99th percentiles rather than the extremes: a copy matched by chance (the
    // same bytes sent for another reason) must not move the bounds.
    requests.sort_unstable();
    responses.sort_unstable();
    let hi = quantile(&requests, 1, 100)?;
    let lo = quantile(&responses, 99, 100)?;
    (lo <= hi).then(|| lo + (hi - lo) / 2)
}

/// The anchor file's flow and this file's flow a relayed payload was seen on.
type RelayFlows = (Endpoint, Endpoint, Endpoint, Endpoint);
/// A relayed payload: its time in the anchor file, this file's time minus it, and its flows.
type Relay = (i64, i64, RelayFlows);

/// The samples whose deltas fall in the densest window `width` wide, if it holds at least
/// [`MIN_RELAY_MATCHES`] and twice as many as the densest window that does not overlap it.
fn densest(samples: &mut [(i64, i64)], width: i64) -> Option<Vec<(i64, i64)>> {
    samples.sort_unstable_by_key(|s| s.1);
    let deltas: Vec<i64> = samples.iter().map(|s| s.1).collect();
    // For each start, how many deltas lie within `width` of it (two pointers).
    let mut counts: Vec<usize> = Vec::with_capacity(deltas.len());
    let mut j = 0;
    for (i, &d) in deltas.iter().enumerate() {
        j = j.max(i);
        while deltas
            .get(j + 1)
            .is_some_and(|&e| e.saturating_sub(d) <= width)
        {
            j += 1;
        }
        counts.push(j + 1 - i);
    }
    let (start, &n) = counts
        .iter()
        .enumerate()
        .max_by_key(|&(i, n)| (*n, std::cmp::Reverse(i)))?;
    let lo = *deltas.get(start)?;
    let second = counts
        .iter()
        .zip(&deltas)
        .filter(|&(_, &d)| d.saturating_sub(lo).saturating_abs() > 2 * width)
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0);
    if n < MIN_RELAY_MATCHES || n < 2 * second {
        return None;
    }
    samples.get(start..start + n).map(<[_]>::to_vec)
}

/// Calls `f` with each TCP segment of the file's first `max_frames` frames (no IP reassembly:
/// a sample needs none).
fn each_segment(file: &mut CaptureFile, max_frames: u64, mut f: impl FnMut(&Segment<'_>)) {
    let mut n = 0;
    while n < max_frames && file.advance() {
        n += 1;
        if let Some(frame) = file.current() {
            if let Ok(seg) = decode::decode(&frame) {
                f(&seg);
            }
        }
    }
}

/// Tells a segment seen again from another file (a second vantage point, after the shift) from
/// a retransmission: the same key from a different file within the pair's window.
pub struct Duplicates {
    /// Window per file index: twice its offset's spread plus [`DUPLICATE_SLACK_NS`].
    windows: Vec<i64>,
    max_window: i64,
    recent: HashMap<Key, (usize, Timestamp), ahash::RandomState>,
    order: VecDeque<(Timestamp, Key)>,
    /// Observations found to be duplicates.
    pub duplicates: u64,
    /// Entries forgotten early because [`MAX_RECENT`] were held (a duplicate may then be
    /// taken for a retransmission).
    pub forgotten: u64,
}

impl Duplicates {
    /// A test for files whose offsets spread by `spreads_ns` (by file index).
    pub fn new(spreads_ns: &[i64]) -> Duplicates {
        let windows: Vec<i64> = spreads_ns
            .iter()
            .map(|s| {
                s.max(&0)
                    .saturating_mul(2)
                    .saturating_add(DUPLICATE_SLACK_NS)
            })
            .collect();
        Duplicates {
            max_window: windows.iter().copied().max().unwrap_or(DUPLICATE_SLACK_NS),
            windows,
            recent: HashMap::default(),
            order: VecDeque::new(),
            duplicates: 0,
            forgotten: 0,
        }
    }

    fn window(&self, file: usize) -> i64 {
        self.windows
            .get(file)
            .copied()
            .unwrap_or(DUPLICATE_SLACK_NS)
    }

    /// True when `seg` is a segment already seen from another file (count it, do not track
    /// it); false for a first observation, which is remembered.
    pub fn observe(&mut self, seg: &Segment<'_>) -> bool {
        let key = Key::of(seg);
        // Forget what is older than any window (frames come in time order across files), and
        // the oldest when the table is full.
        while let Some(&(t, k)) = self.order.front() {
            let old = seg.ts.nanos_since(t) > self.max_window;
            if !old && self.order.len() < MAX_RECENT {
                break;
            }
            if !old {
                self.forgotten += 1;
            }
            self.order.pop_front();
            if self.recent.get(&k).is_some_and(|e| e.1 == t) {
                self.recent.remove(&k);
            }
        }
        if let Some(&(file, t)) = self.recent.get(&key) {
            let window = self.window(file).max(self.window(seg.file));
            if file != seg.file && seg.ts.nanos_since(t).saturating_abs() <= window {
                self.duplicates += 1;
                return true;
            }
        }
        self.recent.insert(key, (seg.file, seg.ts));
        self.order.push_back((seg.ts, key));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{TcpFlags, Vlans};

    const S: i64 = 1_000_000_000;

    fn seg(file: usize, ts: i64, seq: u32, flags: u8, payload: &[u8]) -> Segment<'_> {
        Segment {
            ts: Timestamp(ts),
            frame_no: 1,
            file,
            vlans: Vlans::default(),
            src: Endpoint {
                ip: "10.0.0.1".parse().unwrap(),
                port: 40000,
            },
            dst: Endpoint {
                ip: "10.0.0.2".parse().unwrap(),
                port: 3306,
            },
            seq,
            ack: 7,
            flags: TcpFlags(flags),
            window: 512,
            payload,
            missing: 0,
        }
    }

    #[test]
    fn median_and_quartiles() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5]), Some(5));
        assert_eq!(median(&mut [9, 1, 5]), Some(5));
        assert_eq!(median(&mut [1, 2, 3, 10]), Some(2));
        assert_eq!(median(&mut [1, 4, 3, 10]), Some(3));
        let v: Vec<i64> = (0..=100).collect();
        assert_eq!(quantile(&v, 1, 4), Some(25));
        assert_eq!(quantile(&v, 3, 4), Some(75));
        assert_eq!(quantile(&[i64::MIN, i64::MAX], 1, 2), Some(-1));
    }

    #[test]
    fn estimate_takes_the_median_and_the_spread_and_shrugs_off_outliers() {
        // 2.5 s ahead, ±100 µs of jitter, and a few wild deltas (retransmissions matched to
        // the original).
        let mut samples: Vec<(i64, i64)> = (0..200)
            .map(|i| (i * 10_000_000, 2 * S + S / 2 + (i % 5 - 2) * 50_000))
            .collect();
        samples.extend([(0, 9 * S), (1, -3 * S), (2, 7 * S)]);
        let e = estimate(&samples).unwrap();
        assert_eq!(e.offset_ns, 2_500_000_000);
        assert_eq!(e.matches, 203);
        assert!(
            (50_000..=100_000).contains(&e.spread_ns),
            "spread {}",
            e.spread_ns
        );
        // 2 s of matches: too short for a drift.
        assert_eq!(e.drift_ppm, None);
        assert_eq!(estimate(&[]), None);
    }

    #[test]
    fn drift_is_the_slope_when_the_matches_span_long_enough() {
        // 20 ppm: 20 µs more every second, over 60 s, with jitter and outliers.
        let mut samples: Vec<(i64, i64)> = (0..600)
            .map(|i| {
                let t = i * S / 10;
                (t, -S + t / 50_000 + (i % 3 - 1) * 20_000)
            })
            .collect();
        samples.push((5 * S, 40 * S));
        let e = estimate(&samples).unwrap();
        let d = e.drift_ppm.unwrap();
        assert!((d - 20.0).abs() < 0.5, "drift {d}");
        // The offset is the one at the samples' mean time: 30 s × 20 ppm = 600 µs above −1 s;
        // with the drift, −1 s at the start and 1.2 ms above it at the end.
        assert!((e.at_ns - 30 * S).abs() < S, "{e:?}");
        assert!((e.offset_ns - (-S + 600_000)).abs() < 20_000, "{e:?}");
        assert!((e.offset_at(0) - (-S)).abs() < 20_000, "{e:?}");
        assert!(
            (e.offset_at(60 * S) - (-S + 1_200_000)).abs() < 20_000,
            "{e:?}"
        );
        // Detrended, the spread is the jitter's, not the 1.2 ms the drift adds.
        assert!(e.spread_ns <= 40_000, "{e:?}");
        // Too few matches: none.
        assert_eq!(drift_ppm(&samples[..10], i64::MIN, i64::MAX), None);
    }

    #[test]
    fn the_one_way_delay_between_capture_points_cancels_out() {
        let ep = |port| Endpoint {
            ip: "10.0.0.1".parse().unwrap(),
            port,
        };
        // Offset 2 s; 3 ms on the way from the first capture point to the second. Requests
        // (seen first at the first point) outnumber responses 3 to 1 and pull the median.
        let mut flows = Vec::new();
        for c in 0..5u16 {
            for _ in 0..30 {
                flows.push((ep(40000 + c), ep(3306), 2 * S + 3_000_000));
            }
            for _ in 0..10 {
                flows.push((ep(3306), ep(40000 + c), 2 * S - 3_000_000));
            }
        }
        // A connection seen one way only does not count.
        flows.push((ep(50000), ep(3306), 9 * S));
        assert_eq!(symmetric_offset(&flows), Some(2 * S));
        let mut plain: Vec<i64> = flows.iter().map(|f| f.2).collect();
        assert_eq!(median(&mut plain), Some(2 * S + 3_000_000));
        assert_eq!(symmetric_offset(&flows[..30]), None);
    }

    #[test]
    fn the_causal_offset_keeps_every_relay_after_its_original() {
        // Offset 1 s; requests relayed in 20-40 µs, responses in 60-100 µs: the medians' mean
        // is 20 µs off, more than the fastest request; the causal bounds are 1 s − 60 µs and
        // 1 s + 20 µs.
        let mut flows = Vec::new();
        for c in 0..3u8 {
            for i in 0..100i64 {
                flows.push(((c, 0u8), S + 20_000 + i % 20 * 1_000));
                flows.push(((c, 1u8), S - 60_000 - i % 20 * 2_000));
            }
        }
        let rev = |(c, d): (u8, u8)| (c, 1 - d);
        let o = causal_offset(&flows, rev).unwrap();
        assert_eq!(o, S - 20_000);
        assert!(flows
            .iter()
            .all(|&((_, d), x)| if d == 0 { x >= o } else { x <= o }));
        // A stray match does not move the bounds; responses overlapping the requests: none.
        flows.push(((0, 1), S + 90_000));
        assert_eq!(causal_offset(&flows, rev), Some(S - 20_000));
        let crossed: Vec<((u8, u8), i64)> = flows
            .iter()
            .map(|&((c, d), x)| ((c, d), if d == 1 { x + 100_000 } else { x }))
            .collect();
        assert_eq!(causal_offset(&crossed, rev), None);
    }

    #[test]
    fn the_densest_window_of_relayed_deltas_is_the_offset() {
        // 40 relays at −0.8 s give or take the proxy's 100-300 µs, among coincidences spread
        // over ±2 s.
        let mut samples: Vec<(i64, i64)> = (0..40)
            .map(|i| {
                (
                    i * S / 10,
                    -800_000_000 + if i % 2 == 0 { 100_000 } else { -300_000 },
                )
            })
            .collect();
        samples.extend((0..60).map(|i| (i * S / 10, -2 * S + i * 67_000_000)));
        let peak = densest(&mut samples.clone(), RELAY_WINDOW_NS).unwrap();
        assert_eq!(peak.len(), 40);
        let e = estimate(&peak).unwrap();
        assert!((e.offset_ns + 800_000_000).abs() <= 300_000, "{e:?}");
        // Two peaks of equal height: no offset is stated.
        samples.extend((0..40).map(|i| (i * S / 10, 500_000_000)));
        assert!(densest(&mut samples, RELAY_WINDOW_NS).is_none());
        // Too few.
        let mut few: Vec<(i64, i64)> = (0..5).map(|i| (i, 7)).collect();
        assert!(densest(&mut few, RELAY_WINDOW_NS).is_none());
    }

    #[test]
    fn the_index_is_bounded() {
        let mut idx = Index::default();
        for i in 0..(MAX_INDEX as u32 + 100) {
            idx.add(&seg(0, S, i, TcpFlags::ACK, b"a"));
        }
        assert_eq!(idx.len(), MAX_INDEX);
    }

    #[test]
    fn index_matches_each_unique_segment_once_per_file() {
        let mut idx = Index::default();
        idx.add(&seg(0, S, 100, TcpFlags::ACK | TcpFlags::PSH, b"abc"));
        // A retransmission in the first file: its key matches nothing.
        idx.add(&seg(0, S, 200, TcpFlags::ACK, b"xyz"));
        idx.add(&seg(0, 2 * S, 200, TcpFlags::ACK, b"xyz"));
        // A bare ACK is not indexed.
        idx.add(&seg(0, S, 300, TcpFlags::ACK, b""));
        assert_eq!(idx.len(), 2);
        let later = seg(1, 3 * S, 100, TcpFlags::ACK | TcpFlags::PSH, b"abc");
        assert_eq!(idx.find(1, &later), Some(Timestamp(S)));
        assert_eq!(idx.find(1, &later), None, "once per file");
        assert_eq!(idx.find(2, &later), Some(Timestamp(S)));
        assert_eq!(
            idx.find(1, &seg(1, 3 * S, 200, TcpFlags::ACK, b"xyz")),
            None
        );
        // Another length or flags: another segment.
        assert_eq!(
            idx.find(
                3,
                &seg(1, 3 * S, 100, TcpFlags::ACK | TcpFlags::PSH, b"abcd")
            ),
            None
        );
        assert_eq!(
            idx.find(
                3,
                &seg(1, 3 * S, 100, TcpFlags::ACK | TcpFlags::FIN, b"abc")
            ),
            None
        );
    }

    #[test]
    fn a_second_vantage_point_is_a_duplicate_a_retransmission_is_not() {
        // File 1 spreads by 0.2 ms: window 1.4 ms.
        let mut d = Duplicates::new(&[0, 200_000]);
        let a = seg(0, S, 100, TcpFlags::ACK | TcpFlags::PSH, b"abc");
        assert!(!d.observe(&a));
        // The same segment from the other file, 1 ms later after the shift: a duplicate.
        assert!(d.observe(&seg(1, S + 1_000_000, 100, 0x18, b"abc")));
        // From the same file again, 200 ms later: a retransmission, tracked.
        assert!(!d.observe(&seg(0, S + 200_000_000, 100, 0x18, b"abc")));
        // ... and its second observation from the other file is a duplicate again.
        assert!(d.observe(&seg(1, S + 200_300_000, 100, 0x18, b"abc")));
        // The other file, too late to be the same observation: tracked.
        assert!(!d.observe(&seg(1, S + 202_000_000, 100, 0x18, b"abc")));
        // A duplicate ACK twice in one file then twice in the other: two tracked, two dups.
        let ack = |f, t| seg(f, t, 500, TcpFlags::ACK, b"");
        assert!(!d.observe(&ack(0, 3 * S)));
        assert!(!d.observe(&ack(0, 3 * S + 100_000)));
        assert!(d.observe(&ack(1, 3 * S + 150_000)));
        assert!(d.observe(&ack(1, 3 * S + 250_000)));
        assert_eq!(d.duplicates, 4);
    }

    #[test]
    fn the_duplicate_test_forgets_old_segments() {
        let mut d = Duplicates::new(&[0, 0]);
        for i in 0..(MAX_RECENT as u32 * 3) {
            d.observe(&seg(0, S + i64::from(i) * 10_000_000, i, 0x18, b"a"));
        }
        assert!(d.recent.len() <= 1 && d.order.len() <= 1);
        assert_eq!(d.forgotten, 0);
        // All at the same moment: the cap holds, the surplus is counted.
        for i in 0..(MAX_RECENT as u32 + 10) {
            d.observe(&seg(0, 1000 * S, i, 0x18, b"a"));
        }
        assert!(d.order.len() <= MAX_RECENT && d.recent.len() <= MAX_RECENT);
        assert!(d.forgotten > 0);
    }
}
