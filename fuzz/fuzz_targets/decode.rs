//! Frame decoding on arbitrary bytes under every supported (and one unsupported) link type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::decode::decode;
use proxyscope::source::{Frame, Linktype};
use proxyscope::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let lt = [0u32, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147][usize::from(sel) % 11];
    let frame = Frame {
        ts: Timestamp(0),
        frame_no: 1,
        file: 0,
        interface: 0,
        linktype: Linktype(lt),
        data: bytes,
        orig_len: bytes.len() as u32 + u32::from(sel & 0x0f),
    };
    let _ = decode(&frame);
});
