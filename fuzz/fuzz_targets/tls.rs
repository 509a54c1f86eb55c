//! The TLS decoder on arbitrary byte streams, both directions, with gaps and FINs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::common::{At, Side};
use proxyscope::time::Timestamp;
use proxyscope::tls::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut d = Decoder::new(Side::A, ctl & 1 == 1);
    let mut out = Vec::new();
    let size = usize::from(ctl >> 1).max(1);
    for (i, chunk) in rest.chunks(size).enumerate() {
        let at = At {
            ts: Timestamp(i as i64),
            frame: i as u64,
            file: 0,
        };
        let side = Side::b_if(i % 3 == 1);
        match chunk.first() {
            Some(&0xee) => d.gap(side, chunk.len() as u64, at, &mut out),
            Some(&0xef) => d.fin(side, &mut out),
            _ => d.data(side, chunk, at, &mut out),
        }
        out.clear();
    }
    let _ = d.finish();
});
