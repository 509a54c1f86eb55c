//! The compressed protocol (CLIENT_COMPRESS): after the login each direction is a sequence of
//! compressed packets — 3-byte compressed length, 1-byte sequence id, 3-byte uncompressed length
//! (0: stored as is), then a zlib stream — whose contents are ordinary MySQL packets.

use flate2::{Decompress, FlushDecompress, Status};

use crate::bytes::HeaderBuf;

const HEADER: usize = 7;
/// Largest compressed payload we buffer; past it the direction is given up (and said so).
const MAX_COMPRESSED: usize = 1 << 20;
/// Largest uncompressed payload we produce.
const MAX_INFLATED: usize = 1 << 24;

/// Outer framing and inflation for one direction.
#[derive(Default)]
pub struct Inflater {
    hdr: HeaderBuf<HEADER>,
    remaining: Option<usize>,
    ulen: usize,
    buf: Vec<u8>,
    broken: bool,
}

impl Inflater {
    /// True once the framing or a zlib stream failed: nothing more comes out.
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
                        let clen =
                            usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                        self.ulen =
                            usize::from(h[4]) | usize::from(h[5]) << 8 | usize::from(h[6]) << 16;
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

    /// Bytes were never captured: the zlib streams cannot be followed any more.
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
        let mut z = Decompress::new(true);
        let mut inflated = Vec::with_capacity(self.ulen);
        match z.decompress_vec(&self.buf, &mut inflated, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) | Ok(Status::Ok) if inflated.len() == self.ulen => out(&inflated),
            _ => self.broken = true,
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

    #[test]
    fn garbage_breaks_cleanly() {
        let mut f = Inflater::default();
        f.feed(&[5, 0, 0, 0, 50, 0, 0, 1, 2, 3, 4, 5], &mut |_| {
            panic!("no output")
        });
        assert!(f.broken());
    }
}
