//! The MySQL decoder on arbitrary byte streams: the first byte picks the starting phase, whether
//! a MySQL 8 login (CLIENT_QUERY_ATTRIBUTES, DEPRECATE_EOF, caching_sha2_password) is replayed
//! first so that the bytes after it are decoded as commands with those capabilities (query
//! attributes, COM_STMT_EXECUTE attributes, COM_CHANGE_USER, LOCAL INFILE, binlog dumps), and the
//! chunking; each chunk goes to one side, or becomes a gap.
//!
//! A first byte of 0xf0 or more exercises the compressed protocol instead: the mid-stream
//! judges, both decompressors and the zstd level on the raw bytes, then the bytes wrapped as
//! valid compressed packets (zlib, zstd, or stored, chosen per packet) of a connection picked
//! up mid-stream, so that its recognition, decompression and the MySQL decoding behind it run
//! on contents the fuzzer controls.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use proxyscope::common::{At, Side};
use proxyscope::mysql::compress::{self, Algorithm};
use proxyscope::mysql::{Decoder, Phase};
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

fn at(i: usize) -> At {
    At {
        ts: Timestamp(i as i64),
        frame: i as u64,
        file: 0,
    }
}

fn header(clen: usize, seq: u8, ulen: usize) -> [u8; 7] {
    let c = (clen as u32).to_le_bytes();
    let u = (ulen as u32).to_le_bytes();
    [c[0], c[1], c[2], seq, u[0], u[1], u[2]]
}

fn compressed_paths(ctl: u8, rest: &[u8]) {
    let request = ctl & 1 == 1;
    let _ = compress::looks_compressed(rest, request);
    let _ = compress::starts_compressed(rest, request);
    let _ = compress::zstd_level(rest);
    // The announced length comes first; at most 1 MiB keeps executions fast.
    let (len, body) = rest.split_at(rest.len().min(3));
    let ulen = len
        .iter()
        .rev()
        .fold(0usize, |a, &b| a << 8 | usize::from(b))
        & 0xf_ffff;
    let _ = compress::decompress(Algorithm::Zstd, body, ulen);
    let _ = compress::decompress(Algorithm::Zlib, body, ulen);

    // The bytes as the contents of compressed packets, each direction in turn.
    let mut d = Decoder::new(Side::B, Phase::Command);
    let mut out = Vec::new();
    let size = usize::from(ctl & 0x0e).max(1) * 16;
    for (i, chunk) in body.chunks(size).enumerate() {
        let side = Side::b_if(i % 2 == 1 || ctl & 1 == 1);
        let pick = chunk.first().copied().unwrap_or(0) % 3;
        let mut pkt = Vec::new();
        match pick {
            0 => {
                pkt.extend(header(chunk.len(), i as u8, 0));
                pkt.extend_from_slice(chunk);
            }
            1 => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = e.write_all(chunk);
                let z = e.finish().unwrap_or_default();
                pkt.extend(header(z.len(), i as u8, chunk.len()));
                pkt.extend(z);
            }
            _ => {
                let z = ruzstd::encoding::compress_to_vec(
                    chunk,
                    ruzstd::encoding::CompressionLevel::Fastest,
                );
                pkt.extend(header(z.len(), i as u8, chunk.len()));
                pkt.extend(z);
            }
        }
        // Sometimes split across two slices, sometimes a gap.
        if chunk.len() % 5 == 0 {
            d.gap(side, pkt.len() as u64, at(i), &mut out);
        } else if let Some((a, b)) = pkt.split_at_checked(pkt.len() / 2).filter(|_| i % 3 == 2) {
            let _ = d.data(side, a, at(i), &mut out);
            let _ = d.data(side, b, at(i), &mut out);
        } else {
            let _ = d.data(side, &pkt, at(i), &mut out);
        }
        out.clear();
    }
    let _ = d.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    if ctl >= 0xf0 {
        compressed_paths(ctl, rest);
        return;
    }
    let phase = if ctl & 1 == 0 {
        Phase::Greeting
    } else {
        Phase::Command
    };
    let mut d = Decoder::new(Side::B, phase);
    let mut out = Vec::new();
    if ctl & 3 == 2 {
        let at = at(0);
        let [client, server] = login8();
        let greeting_len = usize::from(server[0]) + 4;
        let _ = d.data(Side::B, &server[..greeting_len], at, &mut out);
        let _ = d.data(Side::A, &client, at, &mut out);
        let _ = d.data(Side::B, &server[greeting_len..], at, &mut out);
        assert_eq!(d.phase(), Phase::Command);
        out.clear();
    }
    let size = usize::from(ctl >> 2).max(1);
    for (i, chunk) in rest.chunks(size).enumerate() {
        let side = Side::b_if(chunk.first().is_some_and(|b| b & 1 == 1));
        if chunk.first() == Some(&0xee) {
            d.gap(side, u64::from(chunk.len() as u32), at(i), &mut out);
        } else {
            let _ = d.data(side, chunk, at(i), &mut out);
        }
        out.clear();
    }
    let _ = d.finish();
});
