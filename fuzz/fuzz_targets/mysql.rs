//! The MySQL decoder on arbitrary byte streams: the first byte picks the starting phase, whether
//! a MySQL 8 login (CLIENT_QUERY_ATTRIBUTES, DEPRECATE_EOF, caching_sha2_password) is replayed
//! first so that the bytes after it are decoded as commands with those capabilities (query
//! attributes, COM_STMT_EXECUTE attributes, COM_CHANGE_USER, LOCAL INFILE, binlog dumps), and the
//! chunking; each chunk goes to one side, or becomes a gap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::mysql::{Decoder, Phase};
use proxyscope::tcp::At;
use proxyscope::time::Timestamp;

fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
    v.extend_from_slice(payload);
    v
}

/// Server and client bytes of a MySQL 8 login, shaped like mysql8-query-attributes.pcap.
fn login8() -> [Vec<u8>; 2] {
    let mut g = vec![0x0a];
    g.extend_from_slice(b"8.0.29\0");
    g.extend_from_slice(&59u32.to_le_bytes());
    g.extend_from_slice(b"abcdefgh\0");
    g.extend_from_slice(&0xffffu16.to_le_bytes());
    g.push(0xff);
    g.extend_from_slice(&2u16.to_le_bytes());
    g.extend_from_slice(&0xdfffu16.to_le_bytes());
    g.push(21);
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(b"ijklmnopqrst\0caching_sha2_password\0");
    let mut r = Vec::new();
    r.extend_from_slice(&0x19ff_a685u32.to_le_bytes());
    r.extend_from_slice(&(1u32 << 24).to_le_bytes());
    r.push(0xff);
    r.extend_from_slice(&[0; 23]);
    r.extend_from_slice(b"ykg\0\x20");
    r.extend_from_slice(&[7; 32]);
    r.extend_from_slice(b"caching_sha2_password\0");
    let mut server = pkt(0, &g);
    server.extend(pkt(2, &[1, 3]));
    server.extend(pkt(3, &[0, 0, 0, 2, 0, 0, 0]));
    [pkt(1, &r), server]
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let phase = if ctl & 1 == 0 { Phase::Greeting } else { Phase::Command };
    let mut d = Decoder::new(1, phase);
    let mut out = Vec::new();
    let mut at = At {
        ts: Timestamp(0),
        frame: 0,
        file: 0,
    };
    if ctl & 3 == 2 {
        let [client, server] = login8();
        let greeting_len = usize::from(server[0]) + 4;
        let _ = d.data(1, &server[..greeting_len], at, &mut out);
        let _ = d.data(0, &client, at, &mut out);
        let _ = d.data(1, &server[greeting_len..], at, &mut out);
        assert_eq!(d.phase(), Phase::Command);
        out.clear();
    }
    let size = usize::from(ctl >> 2).max(1);
    for (i, chunk) in rest.chunks(size).enumerate() {
        at.ts = Timestamp(i as i64 + 1);
        at.frame = i as u64 + 1;
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
