//! The MySQL decoder on arbitrary byte streams: the first byte picks the starting phase and the
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
use proxyscope::mysql::compress::{self, Algorithm};
use proxyscope::mysql::{Decoder, Phase};
use proxyscope::tcp::At;
use proxyscope::time::Timestamp;

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
    let mut d = Decoder::new(1, Phase::Command);
    let mut out = Vec::new();
    let size = usize::from(ctl & 0x0e).max(1) * 16;
    for (i, chunk) in body.chunks(size).enumerate() {
        let side = usize::from(i % 2 == 1 || ctl & 1 == 1) & 1;
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
    let mut d = Decoder::new(1, phase);
    let mut out = Vec::new();
    let size = usize::from(ctl >> 1).max(1);
    for (i, chunk) in rest.chunks(size).enumerate() {
        let side = chunk.first().map_or(0, |b| usize::from(b & 1));
        if chunk.first() == Some(&0xee) {
            d.gap(side, u64::from(chunk.len() as u32), at(i), &mut out);
        } else {
            let _ = d.data(side, chunk, at(i), &mut out);
        }
        out.clear();
    }
    let _ = d.finish();
});
