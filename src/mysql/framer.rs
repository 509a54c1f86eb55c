//! MySQL packet framing for one direction: 3-byte length, 1-byte sequence id, payload; a payload
//! of 0xffffff bytes continues in the next packet.
//!
//! Bytes arrive in slices of any size. A packet that sits whole in one slice is handed on as a
//! borrowed slice; otherwise its first [`PREFIX`] bytes are copied and the rest only counted, so
//! a 16 MiB row costs 4 KiB of memory. After a gap that cuts a header the framing is lost; it is
//! found again at the start of a later slice whose bytes are an exact chain of plausible packets.

use crate::bytes::HeaderBuf;
use crate::common::At;

/// Bytes of a payload kept when it does not arrive whole (enough for any header we decode).
pub const PREFIX: usize = 4096;
const MAX_LEN: u32 = 0x00ff_ffff;
const HEADER: usize = 4;

/// One logical packet (continuations joined).
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Sequence id of its first physical packet.
    pub seq: u8,
    /// Payload length, continuations included.
    pub len: u64,
    /// The payload, or its first [`PREFIX`] bytes.
    pub payload: &'a [u8],
    /// Part of the payload was never captured (a gap inside it).
    pub lossy: bool,
    /// Where its first byte was captured.
    pub at: At,
}

impl Packet<'_> {
    /// True if `payload` holds the whole payload.
    pub fn whole(&self) -> bool {
        !self.lossy && self.payload.len() as u64 == self.len
    }
    /// First payload byte.
    pub fn first(&self) -> Option<u8> {
        self.payload.first().copied()
    }
}

/// What the framer says besides packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Framing lost (a gap cut a header).
    Desync,
    /// Framing found again.
    Resync,
}

/// Framing state of one direction.
#[derive(Debug)]
pub struct Framer {
    hdr: HeaderBuf<HEADER>,
    /// Body bytes of the current physical packet still to come (None: expecting a header).
    remaining: Option<u32>,
    /// The current physical packet has length 0xffffff: the payload continues.
    continues: bool,
    in_logical: bool,
    seq: u8,
    len: u64,
    buf: Vec<u8>,
    lossy: bool,
    at: Option<At>,
    synced: bool,
    /// Packets seen.
    pub packets: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            hdr: HeaderBuf::default(),
            remaining: None,
            continues: false,
            in_logical: false,
            seq: 0,
            len: 0,
            buf: Vec::new(),
            lossy: false,
            at: None,
            synced: true,
            packets: 0,
        }
    }
}

fn le24(b: &[u8]) -> Option<u32> {
    Some(u32::from(*b.first()?) | u32::from(*b.get(1)?) << 8 | u32::from(*b.get(2)?) << 16)
}

/// True if `d` is exactly a chain of whole packets with plausible headers (at most 64 of them).
/// `request` also asks the first to be a command (sequence id 0, known command byte).
pub fn exact_chain(d: &[u8], request: bool) -> bool {
    let mut rest = d;
    let mut first = true;
    for _ in 0..64 {
        let (Some(len), Some(&seq)) = (le24(rest), rest.get(3)) else {
            return false;
        };
        let body = rest.get(HEADER..HEADER + len as usize);
        let Some(body) = body else { return false };
        if first && request {
            let cmd = body.first().copied().unwrap_or(0xff);
            if seq != 0 || !(cmd <= 0x1f || cmd == 0xfa) || len == 0 {
                return false;
            }
        }
        first = false;
        rest = rest.get(HEADER + len as usize..).unwrap_or(&[]);
        if rest.is_empty() {
            return true;
        }
    }
    false
}

impl Framer {
    /// Starts afresh at a packet boundary (the outer framing was found again), keeping the count.
    pub fn reset(&mut self) {
        *self = Framer {
            packets: self.packets,
            ..Framer::default()
        };
    }

    /// True while the framing is known.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Feeds a slice of the stream; `request` says it is the client's direction (for resync).
    /// `out` returns false to stop after a packet (the protocol changed, e.g. to TLS); the
    /// return value is the number of bytes consumed.
    pub fn feed(
        &mut self,
        data: &[u8],
        at: At,
        request: bool,
        out: &mut dyn FnMut(Packet<'_>) -> bool,
        note: &mut dyn FnMut(Note),
    ) -> usize {
        if !self.synced {
            if !exact_chain(data, request) {
                return data.len();
            }
            self.synced = true;
            note(Note::Resync);
        }
        let mut d = data;
        while !d.is_empty() {
            // Fast path: a whole packet at the start of `d`, nothing half-read.
            if self.hdr.is_empty() && self.remaining.is_none() && !self.in_logical {
                if let (Some(len), Some(&seq)) = (le24(d), d.get(3)) {
                    if len < MAX_LEN {
                        if let Some(body) = d.get(HEADER..HEADER + len as usize) {
                            self.packets += 1;
                            let go = out(Packet {
                                seq,
                                len: u64::from(len),
                                payload: body,
                                lossy: false,
                                at,
                            });
                            d = d.get(HEADER + len as usize..).unwrap_or(&[]);
                            if !go {
                                return data.len() - d.len();
                            }
                            continue;
                        }
                    }
                }
            }
            match self.remaining {
                None => {
                    if let Some(hdr) = self.hdr.fill(&mut d) {
                        let len = le24(&hdr).unwrap_or(0);
                        if !self.in_logical {
                            self.in_logical = true;
                            self.seq = hdr[3];
                            self.len = 0;
                            self.buf.clear();
                            self.lossy = false;
                            self.at = Some(at);
                        }
                        self.continues = len == MAX_LEN;
                        self.remaining = Some(len);
                        if len == 0 && !self.end_physical(out) {
                            return data.len() - d.len();
                        }
                    }
                }
                Some(rem) => {
                    let take = (rem as usize).min(d.len());
                    let room = PREFIX.saturating_sub(self.buf.len()).min(take);
                    self.buf.extend_from_slice(d.get(..room).unwrap_or(&[]));
                    self.len += take as u64;
                    self.remaining = Some(rem - take as u32);
                    d = d.get(take..).unwrap_or(&[]);
                    if rem as usize == take && !self.end_physical(out) {
                        return data.len() - d.len();
                    }
                }
            }
        }
        data.len()
    }

    /// Ends a physical packet; returns what `out` said (true when nothing was handed on).
    fn end_physical(&mut self, out: &mut dyn FnMut(Packet<'_>) -> bool) -> bool {
        self.remaining = None;
        if self.continues {
            return true;
        }
        self.in_logical = false;
        self.packets += 1;
        let at = self.at.unwrap_or(At {
            ts: crate::time::Timestamp(0),
            frame: 0,
            file: 0,
        });
        out(Packet {
            seq: self.seq,
            len: self.len,
            payload: &self.buf,
            lossy: self.lossy,
            at,
        })
    }

    /// `n` bytes of the stream were never captured.
    pub fn gap(
        &mut self,
        n: u64,
        note: &mut dyn FnMut(Note),
        out: &mut dyn FnMut(Packet<'_>) -> bool,
    ) {
        if !self.synced {
            return;
        }
        if let Some(rem) = self.remaining {
            if u64::from(rem) >= n {
                // Inside one packet's body: the framing survives, the payload is lossy.
                self.lossy = true;
                self.len += n;
                let left = rem - n as u32;
                self.remaining = Some(left);
                if left == 0 {
                    self.end_physical(out);
                }
                return;
            }
        }
        *self = Framer {
            synced: false,
            packets: self.packets,
            ..Framer::default()
        };
        note(Note::Desync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn at() -> At {
        At {
            ts: Timestamp(0),
            frame: 1,
            file: 0,
        }
    }

    fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        v.extend_from_slice(payload);
        v
    }

    fn run(f: &mut Framer, chunks: &[&[u8]]) -> Vec<(u8, u64, Vec<u8>)> {
        let mut got = Vec::new();
        for c in chunks {
            f.feed(
                c,
                at(),
                false,
                &mut |p| {
                    got.push((p.seq, p.len, p.payload.to_vec()));
                    true
                },
                &mut |_| {},
            );
        }
        got
    }

    #[test]
    fn whole_and_split_packets() {
        let mut bytes = pkt(0, b"\x03SELECT 1");
        bytes.extend(pkt(1, b"\x01"));
        let mut f = Framer::default();
        let all = run(&mut f, &[&bytes]);
        assert_eq!(all.len(), 2);
        // Every split point gives the same packets.
        for cut in 0..bytes.len() {
            let mut f = Framer::default();
            let got = run(&mut f, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got, all, "cut at {cut}");
        }
    }

    #[test]
    fn continuation_packets_join() {
        let big = vec![b'x'; 0xff_ffff];
        let mut bytes = pkt(1, &big);
        bytes.extend(pkt(2, b"tail"));
        bytes.extend(pkt(3, b"\xfe\x00\x00\x02\x00"));
        let mut f = Framer::default();
        let got = run(&mut f, &[&bytes[..100_000], &bytes[100_000..]]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[0].1, 0xff_ffff + 4);
        assert_eq!(got[0].2.len(), PREFIX);
        assert_eq!(got[1].2, b"\xfe\x00\x00\x02\x00");
    }

    #[test]
    fn gap_inside_a_body_keeps_framing_and_gap_over_a_header_resyncs() {
        let p = pkt(1, &[7u8; 100]);
        let mut f = Framer::default();
        let mut got = Vec::new();
        let mut notes = Vec::new();
        f.feed(
            &p[..50],
            at(),
            false,
            &mut |p| {
                got.push(p.len);
                true
            },
            &mut |n| notes.push(n),
        );
        f.gap(30, &mut |n| notes.push(n), &mut |p| {
            got.push(p.len);
            true
        });
        f.feed(
            &p[80..],
            at(),
            false,
            &mut |p| {
                got.push(p.len);
                true
            },
            &mut |n| notes.push(n),
        );
        assert_eq!(got, vec![100]);
        assert!(notes.is_empty());
        // A gap that swallows the next header.
        f.gap(10, &mut |n| notes.push(n), &mut |p| {
            got.push(p.len);
            true
        });
        assert_eq!(notes, vec![Note::Desync]);
        f.feed(
            &p[20..],
            at(),
            false,
            &mut |p| {
                got.push(p.len);
                true
            },
            &mut |n| notes.push(n),
        );
        assert_eq!(got, vec![100]);
        f.feed(
            &pkt(0, b"\x0e"),
            at(),
            true,
            &mut |p| {
                got.push(p.len);
                true
            },
            &mut |n| notes.push(n),
        );
        assert_eq!(notes, vec![Note::Desync, Note::Resync]);
        assert_eq!(got, vec![100, 1]);
    }

    #[test]
    fn exact_chain_rules() {
        let mut two = pkt(0, b"\x03SELECT 1");
        two.extend(pkt(1, b"x"));
        assert!(exact_chain(&two, true));
        assert!(!exact_chain(&two[..two.len() - 1], true));
        assert!(!exact_chain(&pkt(1, b"\x03x"), true));
        assert!(exact_chain(&pkt(1, b"\x03x"), false));
        assert!(!exact_chain(&[], false));
    }
}
