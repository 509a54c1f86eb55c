//! The MySQL decoder on arbitrary byte streams: the first byte picks the starting phase and the
//! chunking; each chunk goes to one side, or becomes a gap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::mysql::{Decoder, Phase};
use proxyscope::tcp::At;
use proxyscope::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let phase = if ctl & 1 == 0 { Phase::Greeting } else { Phase::Command };
    let mut d = Decoder::new(1, phase);
    let mut out = Vec::new();
    let size = usize::from(ctl >> 1).max(1);
    for (i, chunk) in rest.chunks(size).enumerate() {
        let at = At {
            ts: Timestamp(i as i64),
            frame: i as u64,
            file: 0,
        };
        let side = chunk.first().map_or(0, |b| usize::from(b & 1));
        if chunk.first() == Some(&0xee) {
            d.gap(side, u64::from(chunk.len() as u32), at, &mut out);
        } else {
            let _ = d.data(side, chunk, at, &mut out);
        }
        out.clear();
    }
    let _ = d.finish();
});
