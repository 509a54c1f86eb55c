//! Frame decoding on arbitrary bytes under every supported (and one unsupported) link type:
//! each input once alone (stateless), then cut into several frames fed to one reassembling
//! decoder with a tiny fragment budget, so that tunnels (PPPoE, GRE, ERSPAN, VXLAN), IPv6
//! extension headers and fragment reassembly, overlap, timeout and budget paths are reached;
//! Ethernet/IPv4 frames are checked to decode as the same packet behind SLL does (the first
//! takes the hand-read fast path, the second etherparse).
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::decode::{decode, frag, Decoder};
use proxyscope::source::{Frame, Linktype};
use proxyscope::time::Timestamp;

const LINKTYPES: [u32; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let lt = LINKTYPES[usize::from(sel) % LINKTYPES.len()];
    let frame = Frame {
        ts: Timestamp(0),
        frame_no: 1,
        file: 0,
        interface: 0,
        linktype: Linktype(lt),
        data: bytes,
        orig_len: bytes.len() as u32 + u32::from(sel & 0x0f),
    };
    let eth = decode(&frame);

    // Ethernet/IPv4 goes through a hand-read fast path; the same IP packet behind a Linux SLL
    // header is parsed by etherparse alone, and must decode the same.
    if lt == 1 && bytes.get(12..14) == Some(&[0x08, 0x00]) {
        let mut sll = vec![0u8; 16];
        sll[14..].copy_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&bytes[14..]);
        let other = Frame {
            linktype: Linktype(113),
            data: &sll,
            orig_len: frame.orig_len + 2,
            ..frame
        };
        let key = |s: proxyscope::decode::Segment<'_>| {
            (
                s.src,
                s.dst,
                s.seq,
                s.ack,
                s.flags,
                s.window,
                s.payload.to_vec(),
                s.missing,
            )
        };
        assert_eq!(eth.map(key), decode(&other).map(key));
    }

    // Frames: [len: u8][ts step: u8][bytes; len], all under the first byte's link type.
    let mut dec = Decoder::new(frag::Config {
        max_bytes: 4096,
        timeout_ns: 2_000_000_000,
    });
    let mut rest = bytes;
    let mut ts = 0i64;
    let mut n = 0u64;
    while let [len, step, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (data, next) = tail.split_at(len);
        rest = next;
        n += 1;
        ts += i64::from(*step) * 100_000_000;
        let f = Frame {
            ts: Timestamp(ts),
            frame_no: n,
            file: 0,
            interface: 0,
            linktype: Linktype(lt),
            data,
            orig_len: data.len() as u32,
        };
        if let Ok(s) = dec.decode(&f) {
            assert!(s.payload.len() <= 65_535);
        }
        let (_, bytes) = dec.fragments_footprint();
        assert!(bytes <= 4096);
    }
    let _ = dec.fragments_dropped();
});
