//! Whole pipeline on arbitrary file bytes: pcap/pcapng/gzip parsing, decode, TCP, reports,
//! `compare`'s tally and renderings, and two files' clocks (the bytes read as two files: the
//! offset estimate, the shift and the duplicate test, with offsets and spreads from the bytes).
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use proxyscope::analyze::{self, Options};
use proxyscope::app::compare;
use proxyscope::compare::{Comparison, SetTally};
use proxyscope::report::JsonReport;
use proxyscope::source::{CaptureFile, Clock, ClockBasis, Sources};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = CaptureFile::from_read("fuzz", 0, Box::new(Cursor::new(data.to_vec()))) else {
        return;
    };
    if data.len() % 4 == 2 {
        two_clocks(data);
        return;
    }
    let mut s = Sources::new(vec![f]);
    // Half the inputs (by length) go through `compare`'s tally instead of the JSON report:
    // request timing, pairing links, time bins and the three renderings.
    if data.len() % 2 == 1 {
        if let Ok((t, _)) = compare::tally_sources(&mut s, &Options::default(), Vec::new()) {
            let c = Comparison::of(&t, &SetTally::default());
            let _ = (
                c.text(),
                c.html(),
                Comparison::of(&SetTally::default(), &t).text(),
            );
        }
        return;
    }
    let mut report = JsonReport::new(std::io::sink());
    let _ = analyze::run(&mut s, &Options::default(), &mut report, &mut |_| {});
});

/// The bytes as two capture files: the clock estimate between them, then a run with the
/// second shifted and the duplicate test on, its offset and spread the estimate's or, when the
/// last byte is odd, taken from the bytes with a drift (any i64 and f64: shifts and windows must
/// saturate); and the relayed-payload estimate between them.
fn two_clocks(data: &[u8]) {
    let open = |i| CaptureFile::from_read("fuzz", i, Box::new(Cursor::new(data.to_vec()))).ok();
    let (Some(a), Some(b)) = (open(0), open(1)) else {
        return;
    };
    let found = proxyscope::clock::estimate_files(vec![a, b], 20_000);
    if let (Some(a), Some(b)) = (open(0), open(1)) {
        let _ = proxyscope::clock::estimate_relayed(a, vec![b], 20_000);
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        for (i, x) in w.iter_mut().enumerate() {
            *x = data.get(at + i).copied().unwrap_or(0);
        }
        i64::from_le_bytes(w)
    };
    let second = match found.first().copied().flatten() {
        Some(e) if data.last().is_some_and(|b| b % 2 == 0) => Clock {
            offset_ns: e.offset_ns,
            spread_ns: Some(e.spread_ns),
            matches: e.matches,
            drift_ppm: e.drift_ppm,
            at_ns: Some(e.at_ns),
            via: None,
            basis: ClockBasis::MatchedSegments,
        },
        _ => Clock {
            offset_ns: word(data.len().saturating_sub(16)),
            spread_ns: Some(word(data.len().saturating_sub(8))),
            matches: 0,
            // Any f64 (NaN, infinities) and any time: the per-frame shift must saturate.
            drift_ppm: Some(f64::from_bits(word(data.len().saturating_sub(24)) as u64)),
            at_ns: Some(word(data.len().saturating_sub(32))),
            via: None,
            basis: ClockBasis::Given,
        },
    };
    let (Some(a), Some(b)) = (open(0), open(1)) else {
        return;
    };
    let opts = Options {
        clocks: vec![Clock::reference(None), second],
        ..Options::default()
    };
    let mut s = Sources::new(vec![a, b]);
    let mut report = JsonReport::new(std::io::sink());
    let _ = analyze::run(&mut s, &opts, &mut report, &mut |_| {});
}
