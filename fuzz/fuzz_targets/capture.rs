//! Whole pipeline on arbitrary file bytes: pcap/pcapng/gzip parsing, decode, TCP, reports.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use proxyscope::analyze::{self, Options};
use proxyscope::report::JsonReport;
use proxyscope::source::{CaptureFile, Sources};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = CaptureFile::from_read("fuzz", 0, Box::new(Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut s = Sources::new(vec![f]);
    let mut report = JsonReport::new(std::io::sink());
    let _ = analyze::run(&mut s, &Options::default(), &mut report, &mut |_| {});
});
