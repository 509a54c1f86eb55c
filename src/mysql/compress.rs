//! The compressed protocol: after the login each direction is a sequence of compressed packets —
//! 3-byte compressed length, 1-byte compressed sequence id, 3-byte uncompressed length (0: the
//! payload is stored as is) — whose payloads, once decompressed, are ordinary MySQL packets.
//!
//! Two algorithms share that framing: zlib (CLIENT_COMPRESS) and, since MySQL 8.0.18, zstd
//! (CLIENT_ZSTD_COMPRESSION_ALGORITHM; each payload is one zstd frame). Like the server
//! (`parse_client_handshake_packet` in mysql-server's sql_authentication.cc), zlib wins when
//! both sides announce both.
//!
//! # Picked up mid-stream
//!
//! Without the greeting and login nobody told us that the connection is compressed, so each
//! direction is judged on its own first slice of bytes (what one TCP segment delivered):
//!
//! * it is compressed when its bytes are an exact chain of compressed packets ending at the
//!   slice's end ([`looks_compressed`]): every length in bounds, every deflated payload opens
//!   like a zlib stream (0x78, (CMF·256+FLG) % 31 = 0, no preset dictionary) or a zstd frame
//!   (magic 28 B5 2F FD) and decompresses to exactly its announced length, consecutive
//!   compressed sequence ids step by one (or restart at 0 or 1: a new command), and the
//!   decompressed bytes are themselves an exact chain of plausible MySQL packets (a request
//!   starts with a command: sequence id 0, a known command byte) whose sequence ids step by one;
//! * and when the same bytes are not also an exact chain of plain packets: plain wins a tie, so
//!   a plain connection is never taken for a compressed one on ambiguous bytes.
//!
//! A direction whose peer is not judged yet is decided only by such an exact chain, of
//! compressed or of plain packets; other bytes are skipped. In practice the client's first slice
//! decides (the dissector picks a connection up on a client command that is one or the other).
//! A direction whose peer was found compressed waits for a slice that starts like one
//! ([`starts_compressed`]: the same checks, but the last packet may continue past the slice —
//! its opening is checked, and a zlib one inflated as far as it goes — and the MySQL packets
//! inside may too; at least one whole compressed packet, or a cut one that inflated to a MySQL
//! header, is required) and skips bytes until then; one whose peer is plain is plain. The decision looks at nothing but the bytes in capture order, so it is
//! deterministic. The same looser test finds the framing again after a gap.

use std::io::Read;

use flate2::{Decompress, FlushDecompress, Status};
use mysql_common::constants::CapabilityFlags;

use crate::bytes::HeaderBuf;

const HEADER: usize = 7;
/// Largest compressed payload we buffer; past it the direction is given up (and said so).
const MAX_COMPRESSED: usize = 1 << 20;
/// Largest uncompressed payload we produce (the decompression-bomb guard: a payload may not
/// decompress to more than its header announced, and that is at most this).
const MAX_INFLATED: usize = 1 << 24;
/// zlib CMF byte: deflate with a 32 KiB window, what every zlib `compress()` level writes.
const ZLIB_CMF: u8 = 0x78;
/// zlib FLG bit: a preset dictionary follows (never in MySQL's protocol).
const ZLIB_FDICT: u8 = 0x20;
/// Magic number that opens a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd frame header descriptor bits.
const ZSTD_SINGLE_SEGMENT: u8 = 0x20;
const ZSTD_RESERVED: u8 = 0x08;
const ZSTD_DICT_ID: u8 = 0x03;
/// Window a zstd frame may always ask for: libzstd's largest for the non-"ultra" levels (≤ 19).
/// A frame whose size is known (MySQL's ZSTD_compressCCtx) has a window of its content size;
/// one written as a stream has the level's default window.
const ZSTD_MAX_WINDOW: u64 = 1 << 23;
/// Compressed packets looked at when judging a slice.
const JUDGE_PACKETS: usize = 16;
/// Decompressed bytes looked at when judging a slice (past them the inner chain is judged on
/// what was seen).
const JUDGE_INNER: usize = 1 << 16;
/// Inner MySQL packets looked at when judging a slice.
const JUDGE_INNER_PACKETS: usize = 256;
/// Largest command byte a client sends (COM_RESET_CONNECTION is 0x1f) and COM_UNKNOWN... 0xfa
/// is MariaDB's COM_STMT_BULK_EXECUTE.
const MAX_COMMAND: u8 = 0x1f;
const COM_STMT_BULK_EXECUTE: u8 = 0xfa;
/// Inner packet length meaning "the payload continues in the next packet".
const MAX_PACKET: usize = 0x00ff_ffff;

/// The algorithm of a connection's compressed payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// zlib streams (CLIENT_COMPRESS).
    Zlib,
    /// zstd frames (CLIENT_ZSTD_COMPRESSION_ALGORITHM).
    Zstd,
}

impl Algorithm {
    /// The algorithm whose stream `payload` opens like, if any.
    pub fn sniff(payload: &[u8]) -> Option<Algorithm> {
        if payload.starts_with(&ZSTD_MAGIC) {
            return Some(Algorithm::Zstd);
        }
        let (&cmf, &flg) = (payload.first()?, payload.get(1)?);
        (cmf == ZLIB_CMF
            && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
            && flg & ZLIB_FDICT == 0)
            .then_some(Algorithm::Zlib)
    }

    /// What the login negotiated, from the capability flags both sides announced.
    pub fn negotiated(caps: CapabilityFlags) -> Option<Algorithm> {
        if caps.contains(CapabilityFlags::CLIENT_COMPRESS) {
            Some(Algorithm::Zlib)
        } else if caps.contains(CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM) {
            Some(Algorithm::Zstd)
        } else {
            None
        }
    }
}

/// What the decoder learnt about a connection's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Compression {
    /// The algorithm; `None` for a connection picked up mid-stream whose payloads were all
    /// stored so far.
    pub algorithm: Option<Algorithm>,
    /// zstd level the client asked for in its handshake response.
    pub level: Option<u8>,
    /// Recognised from the bytes, without the login.
    pub mid_stream: bool,
}

/// The zstd level at the end of a handshake response (`payload`) whose client announced
/// CLIENT_ZSTD_COMPRESSION_ALGORITHM: the byte after the connect attributes.
pub fn zstd_level(payload: &[u8]) -> Option<u8> {
    use mysql_common::io::ParseBuf;
    use mysql_common::packets::HandshakeResponse;
    let mut buf = ParseBuf(payload);
    let r = buf.parse::<HandshakeResponse<'_>>(()).ok()?;
    if !r
        .capabilities()
        .contains(CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM)
    {
        return None;
    }
    buf.0.first().copied()
}

/// Window size and content size of the zstd frame that opens `p`; `None` if the header is
/// malformed, asks for a dictionary or sets the reserved bit.
fn zstd_header(p: &[u8]) -> Option<(u64, Option<u64>)> {
    if !p.starts_with(&ZSTD_MAGIC) {
        return None;
    }
    let fhd = *p.get(4)?;
    if fhd & ZSTD_RESERVED != 0 || fhd & ZSTD_DICT_ID != 0 {
        return None;
    }
    let single = fhd & ZSTD_SINGLE_SEGMENT != 0;
    let mut at = 5;
    let window = if single {
        None
    } else {
        let wd = *p.get(at)?;
        at += 1;
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        Some(base + base / 8 * u64::from(wd & 7))
    };
    let fcs_len = match fhd >> 6 {
        0 if single => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let content = if fcs_len == 0 {
        None
    } else {
        let b = p.get(at..at + fcs_len)?;
        let v = b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
        Some(if fcs_len == 2 { v + 256 } else { v })
    };
    Some((window.or(content)?, content))
}

/// Decompresses one payload that must come out as exactly `ulen` bytes; `None` if it does not
/// (corrupt, truncated, or a bomb that would grow past `ulen`).
pub fn decompress(algo: Algorithm, payload: &[u8], ulen: usize) -> Option<Vec<u8>> {
    if ulen > MAX_INFLATED {
        return None;
    }
    match algo {
        Algorithm::Zlib => {
            let mut z = Decompress::new(true);
            // decompress_vec never grows the vector past its capacity: ulen bounds the output.
            let mut out = Vec::with_capacity(ulen);
            match z.decompress_vec(payload, &mut out, FlushDecompress::Finish) {
                Ok(Status::StreamEnd) | Ok(Status::Ok) if out.len() == ulen => Some(out),
                _ => None,
            }
        }
        Algorithm::Zstd => {
            let (window, content) = zstd_header(payload)?;
            // The decoder reserves the window up front: a frame may not ask for more than its
            // content needs (an encoder never does), whatever its header claims.
            let cap = (ulen as u64).saturating_mul(2).max(ZSTD_MAX_WINDOW);
            if window > cap || content.is_some_and(|c| c != ulen as u64) {
                return None;
            }
            let mut dec = ruzstd::decoding::StreamingDecoder::new(payload).ok()?;
            let mut out = vec![0u8; ulen];
            dec.read_exact(&mut out).ok()?;
            // Nothing may follow the announced length.
            let mut more = [0u8; 1];
            match dec.read(&mut more) {
                Ok(0) => Some(out),
                _ => None,
            }
        }
    }
}

fn le24(b: &[u8]) -> Option<usize> {
    Some(usize::from(*b.first()?) | usize::from(*b.get(1)?) << 8 | usize::from(*b.get(2)?) << 16)
}

/// The two lengths of a compressed header at the start of `d`.
fn header(d: &[u8]) -> Option<(usize, u8, usize)> {
    Some((le24(d)?, *d.get(3)?, le24(d.get(4..)?)?))
}

/// True if `d` is exactly a chain of compressed packets holding well-formed MySQL packets, and
/// not also a chain of plain ones (see the module documentation). `request`: the client's bytes.
pub fn looks_compressed(d: &[u8], request: bool) -> bool {
    judge(d, request, true) && !super::framer::exact_chain(d, request)
}

/// True if `d` starts like compressed packets holding MySQL packets, the last compressed packet
/// allowed to continue past the slice (see the module documentation).
pub fn starts_compressed(d: &[u8], request: bool) -> bool {
    judge(d, request, false) && !super::framer::exact_chain(d, request)
}

fn judge(d: &[u8], request: bool, exact: bool) -> bool {
    let mut rest = d;
    let mut inner = Vec::new();
    let mut cut = false;
    let mut stored_cut = false;
    let mut whole = 0usize;
    let mut last_seq: Option<u8> = None;
    for _ in 0..JUDGE_PACKETS {
        let Some((clen, seq, ulen)) = header(rest) else {
            return false;
        };
        if clen == 0 || clen > MAX_COMPRESSED || ulen > MAX_INFLATED {
            return false;
        }
        if last_seq.is_some_and(|l| seq != l.wrapping_add(1) && seq > 1) {
            return false;
        }
        last_seq = Some(seq);
        let body = rest.get(HEADER..).unwrap_or(&[]);
        let room = JUDGE_INNER.saturating_sub(inner.len());
        match body.get(..clen) {
            Some(payload) => {
                if ulen == 0 {
                    inner.extend_from_slice(payload.get(..room).unwrap_or(payload));
                } else {
                    let Some(algo) = Algorithm::sniff(payload) else {
                        return false;
                    };
                    let Some(plain) = decompress(algo, payload, ulen) else {
                        return false;
                    };
                    inner.extend_from_slice(plain.get(..room).unwrap_or(&plain));
                }
                whole += 1;
                rest = body.get(clen..).unwrap_or(&[]);
                if rest.is_empty() {
                    break;
                }
            }
            None => {
                if exact {
                    return false;
                }
                // Continues in a later slice: judge how it opens.
                match (ulen, Algorithm::sniff(body)) {
                    (0, _) => {
                        inner.extend_from_slice(body.get(..room).unwrap_or(body));
                        stored_cut = true;
                    }
                    (_, Some(Algorithm::Zlib)) => {
                        // zlib inflates what is there: its opening must be MySQL packets too.
                        let mut z = Decompress::new(true);
                        let mut out = Vec::with_capacity(room.min(ulen));
                        if z.decompress_vec(body, &mut out, FlushDecompress::None)
                            .is_err()
                        {
                            return false;
                        }
                        inner.extend_from_slice(&out);
                    }
                    (_, Some(Algorithm::Zstd)) => {}
                    (_, None) => return false,
                }
                cut = true;
                rest = &[];
                break;
            }
        }
    }
    // Without one whole packet, only a deflated opening that inflated to a MySQL header counts.
    if !rest.is_empty() || (whole == 0 && (inner.len() < 4 || stored_cut)) {
        return false;
    }
    // A cut deflated packet contributes no inner bytes; what the whole ones held must still
    // chain (cut at their end when the next packet continues a MySQL packet).
    let truncated = cut || inner.len() >= JUDGE_INNER;
    inner_chain(&inner, request, exact && !truncated)
}

/// True if `b` is a chain of plausible MySQL packets: exactly, or (`exact` false) with the last
/// one allowed to run past the end. Sequence ids step by one, or restart at a new command.
fn inner_chain(b: &[u8], request: bool, exact: bool) -> bool {
    let mut rest = b;
    let mut last: Option<u8> = None;
    for _ in 0..JUDGE_INNER_PACKETS {
        if rest.is_empty() {
            return last.is_some();
        }
        let (Some(len), Some(&seq)) = (le24(rest), rest.get(3)) else {
            // A header cut by the end.
            return !exact && last.is_some();
        };
        let starts_command = request && seq == 0;
        match last {
            None if request && !starts_command => return false,
            Some(l) if seq != l.wrapping_add(1) && !starts_command => return false,
            _ => {}
        }
        if starts_command {
            let cmd = rest.get(4).copied();
            if len == 0 || len == MAX_PACKET {
                return false;
            }
            if cmd.is_some_and(|c| c > MAX_COMMAND && c != COM_STMT_BULK_EXECUTE) {
                return false;
            }
        }
        last = Some(seq);
        match rest.get(4 + len..) {
            Some(r) => rest = r,
            None => return !exact,
        }
    }
    // Many packets, all plausible.
    true
}

/// Outer framing and decompression for one direction.
#[derive(Default)]
pub struct Inflater {
    hdr: HeaderBuf<HEADER>,
    remaining: Option<usize>,
    ulen: usize,
    buf: Vec<u8>,
    broken: bool,
    /// `None` (picked up mid-stream): told by the first compressed payload.
    algo: Option<Algorithm>,
}

impl Inflater {
    /// An inflater for payloads of `algo` (`None`: whatever the first one opens like).
    pub fn new(algo: Option<Algorithm>) -> Inflater {
        Inflater {
            algo,
            ..Inflater::default()
        }
    }

    /// The algorithm in use, once known.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algo
    }

    /// True once the framing or a compressed payload failed: nothing more comes out.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Feeds compressed-protocol bytes; `out` gets the uncompressed contents in order.
    pub fn feed(&mut self, data: &[u8], out: &mut dyn FnMut(&[u8])) {
        let mut d = data;
        while !d.is_empty() && !self.broken {
            match self.remaining {
                None => {
                    if let Some(h) = self.hdr.fill(&mut d) {
                        let (clen, _, ulen) = header(&h).unwrap_or((usize::MAX, 0, 0));
                        self.ulen = ulen;
                        if clen > MAX_COMPRESSED || self.ulen > MAX_INFLATED {
                            self.broken = true;
                            return;
                        }
                        self.buf.clear();
                        self.remaining = Some(clen);
                        if clen == 0 {
                            self.finish(out);
                        }
                    }
                }
                Some(rem) => {
                    let take = rem.min(d.len());
                    self.buf.extend_from_slice(d.get(..take).unwrap_or(&[]));
                    d = d.get(take..).unwrap_or(&[]);
                    self.remaining = Some(rem - take);
                    if rem == take {
                        self.finish(out);
                    }
                }
            }
        }
    }

    /// Bytes were never captured: the compressed framing cannot be followed any more.
    pub fn gap(&mut self) {
        self.broken = true;
    }

    /// Heap held for a compressed packet being collected.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives up the packet being collected (the memory budget is full): the direction cannot be
    /// followed any more, as after a gap. True if anything was held.
    pub fn shed(&mut self) -> bool {
        if self.buf.capacity() == 0 {
            return false;
        }
        self.buf = Vec::new();
        self.broken = true;
        true
    }

    fn finish(&mut self, out: &mut dyn FnMut(&[u8])) {
        self.remaining = None;
        if self.ulen == 0 {
            out(&self.buf);
            return;
        }
        let algo = match self.algo.or_else(|| Algorithm::sniff(&self.buf)) {
            Some(a) => a,
            None => {
                self.broken = true;
                return;
            }
        };
        self.algo = Some(algo);
        match decompress(algo, &self.buf, self.ulen) {
            Some(plain) => out(&plain),
            None => self.broken = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::ZlibEncoder, Compression};
    use std::io::Write;

    fn compressed(seq: u8, inner: &[u8], zip: bool) -> Vec<u8> {
        let body = if zip {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            e.write_all(inner).unwrap();
            e.finish().unwrap()
        } else {
            inner.to_vec()
        };
        let c = body.len();
        let u = if zip { inner.len() } else { 0 };
        let mut v = vec![
            c as u8,
            (c >> 8) as u8,
            (c >> 16) as u8,
            seq,
            u as u8,
            (u >> 8) as u8,
            (u >> 16) as u8,
        ];
        v.extend(body);
        v
    }

    #[test]
    fn stored_and_deflated_packets_come_out_in_order() {
        let mut bytes = compressed(0, b"\x09\x00\x00\x00\x03SELECT 1", false);
        bytes.extend(compressed(1, &[b'x'; 300], true));
        let mut got = Vec::new();
        let mut f = Inflater::default();
        for chunk in bytes.chunks(5) {
            f.feed(chunk, &mut |b| got.extend_from_slice(b));
        }
        assert!(!f.broken());
        let mut want = b"\x09\x00\x00\x00\x03SELECT 1".to_vec();
        want.extend([b'x'; 300]);
        assert_eq!(got, want);
    }

    /// Six result-set rows (packets with sequence ids 2..=7), 222 bytes, compressed by the
    /// zstd command-line tool v1.5.4 (libzstd) as MySQL's ZSTD_compressCCtx would (content size
    /// known, no checksum): `zstd -3 --no-check --stream-size=222`.
    const ZSTD_ROWS: [u8; 77] = [
        0x28, 0xb5, 0x2f, 0xfd, 0x20, 0xde, 0x25, 0x02, 0x00, 0xa4, 0x02, 0x21, 0x00, 0x00, 0x02,
        0x0b, 0x63, 0x75, 0x73, 0x74, 0x6f, 0x6d, 0x65, 0x72, 0x2d, 0x30, 0x30, 0x16, 0x40, 0x65,
        0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x21, 0x00, 0x00, 0x03, 0x31,
        0x04, 0x32, 0x05, 0x33, 0x06, 0x34, 0x07, 0x35, 0x0b, 0x00, 0xe0, 0x0b, 0x30, 0x0e, 0x00,
        0x06, 0x62, 0x01, 0xe0, 0x40, 0xcc, 0x00, 0x10, 0x10, 0x1f, 0x00, 0x0c, 0x52, 0x11, 0xfc,
        0x5b, 0xc0,
    ];

    /// What ZSTD_ROWS holds, built independently.
    fn rows() -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..6u8 {
            let row = format!("\x0bcustomer-{i:02}\x16customer@example.com");
            out.extend([row.len() as u8, 0, 0, 2 + i]);
            out.extend(row.as_bytes());
        }
        out
    }

    fn header7(clen: usize, seq: u8, ulen: usize) -> Vec<u8> {
        let mut v = (clen as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend(&(ulen as u32).to_le_bytes()[..3]);
        v
    }

    /// Frames 10 and 12 of ../shared/captures/mysql-compressed.pcap (a real MySQL 5.7 zlib
    /// session): a stored COM_QUERY and the deflated result set.
    fn real() -> (Vec<u8>, Vec<u8>) {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        (
            hex("18000000000000140000000353454c454354202a2046524f4d207065657073"),
            hex(concat!(
                "62000001a10000789c6364606064d6606060624e494d634949cdcd672d484d2d2886904c99",
                "2940c463cfc0cdc0c0c0ccec042475400c6c6a59f2127353c1040f07831b50e55f0610d062",
                "6060c1aa9e39313d158461a68355b302d13f06062510830dcc0000369921d5"
            )),
        )
    }

    #[test]
    fn zstd_frames_decompress_to_exactly_their_length() {
        let want = rows();
        assert_eq!(want.len(), 222);
        assert_eq!(Algorithm::sniff(&ZSTD_ROWS), Some(Algorithm::Zstd));
        assert_eq!(decompress(Algorithm::Zstd, &ZSTD_ROWS, 222), Some(want));
        // The bomb guard: a frame may not give more (or less) than announced.
        assert_eq!(decompress(Algorithm::Zstd, &ZSTD_ROWS, 221), None);
        assert_eq!(decompress(Algorithm::Zstd, &ZSTD_ROWS, 223), None);
        // Truncated or corrupt frames fail cleanly.
        for n in 0..ZSTD_ROWS.len() {
            assert_eq!(
                decompress(Algorithm::Zstd, &ZSTD_ROWS[..n], 222),
                None,
                "{n}"
            );
        }
        let mut bad = ZSTD_ROWS;
        bad[20] ^= 0xff;
        let _ = decompress(Algorithm::Zstd, &bad, 222);
        // The wrong algorithm never yields bytes.
        assert_eq!(decompress(Algorithm::Zlib, &ZSTD_ROWS, 222), None);
    }

    #[test]
    fn zstd_windows_beyond_the_cap_are_refused_before_allocating() {
        // Not single-segment, window descriptor 0x88: 2^27 = 128 MiB.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x88, 0x01, 0x00, 0x00];
        assert_eq!(zstd_header(&frame), Some((1 << 27, None)));
        assert_eq!(decompress(Algorithm::Zstd, &frame, 100), None);
        // Dictionaries and the reserved bit are refused.
        assert_eq!(zstd_header(&[0x28, 0xb5, 0x2f, 0xfd, 0x21, 1, 0]), None);
        assert_eq!(zstd_header(&[0x28, 0xb5, 0x2f, 0xfd, 0x28, 1]), None);
        assert_eq!(zstd_header(&ZSTD_ROWS), Some((222, Some(222))));
    }

    #[test]
    fn an_inflater_follows_zstd_and_learns_the_algorithm_mid_stream() {
        let mut bytes = header7(ZSTD_ROWS.len(), 1, 222);
        bytes.extend(ZSTD_ROWS);
        bytes.extend(header7(5, 2, 0));
        bytes.extend(b"\x01\x00\x00\x08\xfe");
        for algo in [Some(Algorithm::Zstd), None] {
            let mut f = Inflater::new(algo);
            let mut got = Vec::new();
            for chunk in bytes.chunks(3) {
                f.feed(chunk, &mut |b| got.extend_from_slice(b));
            }
            assert!(!f.broken());
            assert_eq!(f.algorithm(), Some(Algorithm::Zstd));
            let mut want = rows();
            want.extend(b"\x01\x00\x00\x08\xfe");
            assert_eq!(got, want);
        }
        // Negotiated zlib does not accept a zstd frame.
        let mut f = Inflater::new(Some(Algorithm::Zlib));
        f.feed(&bytes, &mut |_| panic!("no output"));
        assert!(f.broken());
    }

    #[test]
    fn real_compressed_packets_are_recognised_mid_stream() {
        let (query, result) = real();
        assert!(looks_compressed(&query, true));
        assert!(looks_compressed(&result, false));
        // The result as a request is not (no command inside), nor the query with a byte less.
        assert!(!looks_compressed(&result, true));
        assert!(!looks_compressed(&query[..query.len() - 1], true));
        // Cut by a segment end: starts like compressed packets, is not an exact chain.
        for n in [20, 40, result.len() - 1] {
            assert!(!looks_compressed(&result[..n], false), "{n}");
            assert!(starts_compressed(&result[..n], false), "{n}");
        }
        // Nor is a header with a bare zlib opening (nothing inflated yet to judge).
        assert!(!starts_compressed(&result[..9], false));
        // A corrupt zlib opening is not.
        let mut bad = result.clone();
        bad[8] ^= 0x01;
        assert!(!starts_compressed(&bad, false));
        // Two packets in one slice chain; a plain packet of the same bytes does not.
        let mut two = query.clone();
        two.extend(header7(5, 0, 0));
        two.extend(b"\x01\x00\x00\x00\x01");
        assert!(looks_compressed(&two, true));
    }

    #[test]
    fn plain_packets_are_not_taken_for_compressed_ones() {
        let plain = |seq: u8, body: &[u8]| {
            let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
            v.push(seq);
            v.extend(body);
            v
        };
        let mut cases = vec![
            plain(0, b"\x03SELECT 1"),
            plain(0, b"\x0e"),
            plain(0, b"\x01"),
            plain(1, &[0, 0, 0, 2, 0, 0, 0]),
            plain(0, b"\x16SELECT * FROM t WHERE id = ?"),
        ];
        // A plain packet that also parses as one stored compressed packet: plain wins.
        let mut amb = plain(0, &[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]);
        amb.extend(plain(0, b"\x01"));
        cases.push(amb);
        // ... and a stored compressed packet that also parses as plain is not taken either way.
        for c in &cases {
            for request in [true, false] {
                assert!(!looks_compressed(c, request), "{c:?}");
                assert!(!starts_compressed(c, request), "{c:?}");
            }
        }
    }

    #[test]
    fn the_zstd_level_follows_the_connect_attributes() {
        // Frame 6 of tests/crafted/mysql-zstd-crafted.pcap (the real login of
        // mysql-compressed.pcap with CLIENT_ZSTD_COMPRESSION_ALGORITHM and level 3 added).
        let mut r = Vec::new();
        let caps: u32 = 0x04be_a28f;
        r.extend(caps.to_le_bytes());
        r.extend(0x4000_0000u32.to_le_bytes());
        r.push(8);
        r.extend([0; 23]);
        r.extend(b"site\0");
        r.push(20);
        r.extend([7; 20]);
        r.extend(b"demo\0mysql_native_password\0");
        r.extend(b"\x07\x03_os\x02Li");
        r.push(3);
        assert_eq!(zstd_level(&r), Some(3));
        // Without the capability there is no level byte.
        let mut plain = r.clone();
        plain[3] = 0;
        assert_eq!(zstd_level(&plain), None);
        assert_eq!(zstd_level(&r[..r.len() - 1]), None);
        let caps = CapabilityFlags::from_bits_retain(caps);
        assert_eq!(Algorithm::negotiated(caps), Some(Algorithm::Zstd));
        assert_eq!(
            Algorithm::negotiated(caps | CapabilityFlags::CLIENT_COMPRESS),
            Some(Algorithm::Zlib)
        );
        assert_eq!(
            Algorithm::negotiated(CapabilityFlags::from_bits_retain(0x0000_a28f)),
            None
        );
    }

    #[test]
    fn garbage_breaks_cleanly() {
        let mut f = Inflater::default();
        f.feed(&[5, 0, 0, 0, 50, 0, 0, 1, 2, 3, 4, 5], &mut |_| {
            panic!("no output")
        });
        assert!(f.broken());
    }
}
