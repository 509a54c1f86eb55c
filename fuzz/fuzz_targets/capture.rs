//! Whole pipeline on arbitrary file bytes: pcap/pcapng/gzip parsing, decode, TCP, reports, and
//! `compare`'s tally and renderings.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use proxyscope::analyze::{self, Options};
use proxyscope::app::compare;
use proxyscope::compare::{Comparison, SetTally};
use proxyscope::report::JsonReport;
use proxyscope::source::{CaptureFile, Sources};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = CaptureFile::from_read("fuzz", 0, Box::new(Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut s = Sources::new(vec![f]);
    // Half the inputs (by length) go through `compare`'s tally instead of the JSON report:
    // request timing, pairing links, time bins and the three renderings.
    if data.len() % 2 == 1 {
        if let Ok((t, _)) = compare::tally_sources(&mut s, &Options::default(), Vec::new()) {
            let c = Comparison::of(&t, &SetTally::default());
            let _ = (c.text(), c.html(), Comparison::of(&SetTally::default(), &t).text());
        }
        return;
    }
    let mut report = JsonReport::new(std::io::sink());
    let _ = analyze::run(&mut s, &Options::default(), &mut report, &mut |_| {});
});
