//! IPv4 and IPv6 fragment reassembly, bounded in bytes and in time.
//!
//! Policy, as Linux does since 4.19 (CVE-2018-5391, RFC 5722): a fragment that overlaps one
//! already held discards the whole datagram, except an exact duplicate (same offset and end),
//! which alone is discarded. A datagram not complete within [`Config::timeout_ns`] of capture
//! time after its first fragment is given up (Linux's `ipfrag_time`, 30 s). Once the byte
//! budget is full, fragments of new datagrams are refused, as Linux does above `high_thresh`.
//! Every fragment frame whose datagram is never completed is counted in
//! [`Reassembler::dropped`]: nothing is lost silently.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::time::Timestamp;

/// Largest IP payload a datagram can reassemble to (the 16-bit length fields).
const MAX_DATAGRAM: usize = 65_535;
/// Fragments held per datagram at most (a hostile sender could send 8-byte pieces).
const MAX_PIECES: usize = 128;
/// Bookkeeping charged per pending datagram on top of its bytes, and per fragment held.
const PENDING_COST: usize = 256;
const PIECE_COST: usize = 16;
/// Timed-out datagrams are looked for at most this often (capture time).
const SWEEP_EVERY_NS: i64 = 1_000_000_000;

/// Reassembly limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes held across all pending datagrams (each charged its extent plus bookkeeping).
    pub max_bytes: usize,
    /// A datagram not complete this long (capture time, ns) after its first fragment is
    /// given up.
    pub timeout_ns: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_bytes: 8 << 20,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// What identifies a datagram's fragments (RFC 791: source, destination, protocol and
/// identification; RFC 8200: source, destination and identification, protocol 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Protocol (IPv4 only; 0 for IPv6).
    pub proto: u8,
}

/// One fragment: where its bytes go.
#[derive(Clone, Copy, Debug)]
pub struct Piece<'a> {
    /// Byte offset in the datagram's payload.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    /// The fragment's bytes.
    pub data: &'a [u8],
    /// The next protocol this fragment names (meaningful in the first fragment).
    pub proto: u8,
}

#[derive(Debug)]
struct Pending {
    first: Timestamp,
    /// Payload bytes at their offsets (holes are zero until filled).
    data: Vec<u8>,
    /// Received ranges, sorted by start, never overlapping.
    ranges: Vec<(usize, usize)>,
    /// The payload's length, once the last fragment came.
    total: Option<usize>,
    /// The first fragment's next protocol, once it came.
    proto: Option<u8>,
    /// Fragment frames held.
    frames: u64,
}

impl Pending {
    fn cost(&self) -> usize {
        self.data.capacity() + PENDING_COST + self.ranges.capacity() * PIECE_COST
    }

    fn complete(&self) -> bool {
        let Some(total) = self.total else {
            return false;
        };
        let mut end = 0;
        for &(s, e) in &self.ranges {
            if s > end {
                return false;
            }
            end = end.max(e);
        }
        end >= total
    }
}

/// What adding a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Held; the datagram is not complete yet.
    Held,
    /// The datagram is complete: its payload is in the buffer handed over, with this next
    /// protocol.
    Complete(u8),
    /// Discarded (overlap, budget, size or cap); counted in [`Reassembler::dropped`].
    Dropped,
}

/// Datagrams being reassembled.
#[derive(Debug, Default)]
pub struct Reassembler {
    cfg: Config,
    pending: HashMap<Key, Pending, ahash::RandomState>,
    bytes: usize,
    last_sweep: Option<Timestamp>,
    dropped: u64,
}

impl Reassembler {
    /// An empty reassembler with `cfg`.
    pub fn new(cfg: Config) -> Self {
        Reassembler {
            cfg,
            ..Default::default()
        }
    }

    /// Fragment frames whose datagram was given up (overlap, timeout, budget, snap length),
    /// counting those still pending as given up.
    pub fn dropped(&self) -> u64 {
        self.dropped + self.pending.values().map(|p| p.frames).sum::<u64>()
    }

    /// Datagrams pending and the bytes they are charged, for tests.
    pub fn footprint(&self) -> (usize, usize) {
        (self.pending.len(), self.bytes)
    }

    /// Counts a fragment that cannot be used (cut by the snap length) and gives up its
    /// datagram.
    pub fn discard(&mut self, key: &Key) {
        self.dropped += 1;
        self.remove(key);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes = self.bytes.saturating_sub(p.cost());
            self.dropped += p.frames;
        }
    }

    fn sweep(&mut self, now: Timestamp) {
        if self
            .last_sweep
            .is_some_and(|l| now.nanos_since(l).abs() < SWEEP_EVERY_NS)
        {
            return;
        }
        self.last_sweep = Some(now);
        let timeout = self.cfg.timeout_ns;
        let old: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| now.nanos_since(p.first) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            self.remove(k);
        }
    }

    /// Adds one fragment seen at `ts`; on completion the payload is written to `out` (cleared
    /// first) and the datagram forgotten.
    pub fn add(&mut self, ts: Timestamp, key: Key, piece: Piece<'_>, out: &mut Vec<u8>) -> Added {
        self.sweep(ts);
        let start = piece.offset;
        let Some(end) = start
            .checked_add(piece.data.len())
            .filter(|&e| e <= MAX_DATAGRAM)
        else {
            self.discard(&key);
            return Added::Dropped;
        };
        // A fragment that is not the last carries a multiple of 8 bytes (RFC 791, RFC 8200).
        if piece.more && (piece.data.is_empty() || piece.data.len() % 8 != 0) {
            self.discard(&key);
            return Added::Dropped;
        }
        if !self.pending.contains_key(&key) {
            let cost = end + PENDING_COST + PIECE_COST;
            if self.bytes.saturating_add(cost) > self.cfg.max_bytes {
                self.dropped += 1;
                return Added::Dropped;
            }
            self.bytes += PENDING_COST;
            self.pending.insert(
                key,
                Pending {
                    first: ts,
                    data: Vec::new(),
                    ranges: Vec::new(),
                    total: None,
                    proto: None,
                    frames: 0,
                },
            );
        }
        let verdict = {
            let Some(p) = self.pending.get(&key) else {
                return Added::Dropped;
            };
            check(p, start, end, piece.more)
        };
        match verdict {
            Check::Duplicate => {
                // The copy is not needed; the datagram goes on.
                if let Some(p) = self.pending.get_mut(&key) {
                    p.frames += 1;
                }
                return Added::Held;
            }
            Check::Conflict => {
                self.dropped += 1;
                self.remove(&key);
                return Added::Dropped;
            }
            Check::Fits => {}
        }
        let grow = self
            .pending
            .get(&key)
            .map_or(0, |p| end.saturating_sub(p.data.capacity()))
            + PIECE_COST;
        if self.bytes.saturating_add(grow) > self.cfg.max_bytes {
            self.dropped += 1;
            self.remove(&key);
            return Added::Dropped;
        }
        let Some(p) = self.pending.get_mut(&key) else {
            return Added::Dropped;
        };
        let before = p.cost();
        if p.data.len() < end {
            // Exactly: what is charged is what is held.
            p.data.reserve_exact(end - p.data.len());
            p.data.resize(end, 0);
        }
        p.ranges.reserve_exact(1);
        if let Some(slot) = p.data.get_mut(start..end) {
            slot.copy_from_slice(piece.data);
        }
        let at = p.ranges.partition_point(|&(s, _)| s < start);
        p.ranges.insert(at, (start, end));
        p.frames += 1;
        self.bytes = (self.bytes + p.cost()).saturating_sub(before);
        if !piece.more {
            p.total = Some(end);
        }
        if start == 0 {
            p.proto = Some(piece.proto);
        }
        if !p.complete() {
            return Added::Held;
        }
        let proto = p.proto.unwrap_or(0);
        let total = p.total.unwrap_or(0);
        let Some(p) = self.pending.remove(&key) else {
            return Added::Dropped;
        };
        self.bytes = self.bytes.saturating_sub(p.cost());
        out.clear();
        out.extend_from_slice(p.data.get(..total).unwrap_or(&[]));
        Added::Complete(proto)
    }
}

enum Check {
    Fits,
    Duplicate,
    Conflict,
}

fn check(p: &Pending, start: usize, end: usize, more: bool) -> Check {
    if p.ranges.len() >= MAX_PIECES {
        return Check::Conflict;
    }
    // The datagram's end, once known, is fixed: nothing may reach past it, and a second
    // "last" fragment must end at the same place.
    if let Some(total) = p.total {
        if end > total || (!more && end != total) {
            return Check::Conflict;
        }
    } else if !more && p.ranges.iter().any(|&(_, e)| e > end) {
        return Check::Conflict;
    }
    for &(s, e) in &p.ranges {
        if s == start && e == end {
            return Check::Duplicate;
        }
        if start < e && s < end {
            return Check::Conflict;
        }
    }
    Check::Fits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> Key {
        Key {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id,
            proto: 6,
        }
    }

    fn piece(offset: usize, more: bool, data: &[u8]) -> Piece<'_> {
        Piece {
            offset,
            more,
            data,
            proto: 6,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_parts(s, 0)
    }

    #[test]
    fn out_of_order_pieces_reassemble() {
        let mut r = Reassembler::new(Config::default());
        let mut out = Vec::new();
        let whole: Vec<u8> = (0..40u8).collect();
        assert_eq!(
            r.add(at(0), key(1), piece(32, false, &whole[32..]), &mut out),
            Added::Held
        );
        assert_eq!(
            r.add(at(0), key(1), piece(0, true, &whole[..16]), &mut out),
            Added::Held
        );
        // An exact duplicate is ignored, not an overlap.
        assert_eq!(
            r.add(at(0), key(1), piece(0, true, &whole[..16]), &mut out),
            Added::Held
        );
        assert_eq!(
            r.add(at(0), key(1), piece(16, true, &whole[16..32]), &mut out),
            Added::Complete(6)
        );
        assert_eq!(out, whole);
        assert_eq!(r.footprint(), (0, 0));
        assert_eq!(r.dropped(), 0);
    }

    #[test]
    fn overlap_discards_the_datagram() {
        let mut r = Reassembler::new(Config::default());
        let mut out = Vec::new();
        let d = [0u8; 24];
        assert_eq!(
            r.add(at(0), key(1), piece(0, true, &d[..16]), &mut out),
            Added::Held
        );
        assert_eq!(
            r.add(at(0), key(1), piece(8, true, &d[..16]), &mut out),
            Added::Dropped
        );
        // The datagram is gone: its remaining piece starts a new, incomplete one.
        assert_eq!(
            r.add(at(0), key(1), piece(16, false, &d[..8]), &mut out),
            Added::Held
        );
        assert_eq!(r.dropped(), 3);
    }

    #[test]
    fn timeout_and_budget_are_counted() {
        let mut r = Reassembler::new(Config {
            max_bytes: 2 * (PENDING_COST + PIECE_COST) + 64,
            timeout_ns: 30_000_000_000,
        });
        let mut out = Vec::new();
        let d = [0u8; 32];
        assert_eq!(
            r.add(at(0), key(1), piece(0, true, &d), &mut out),
            Added::Held
        );
        assert_eq!(
            r.add(at(1), key(2), piece(0, true, &d), &mut out),
            Added::Held
        );
        // Full: a third datagram is refused.
        assert_eq!(
            r.add(at(2), key(3), piece(0, true, &d), &mut out),
            Added::Dropped
        );
        assert_eq!(r.dropped(), 3);
        // 31 s later both pending ones time out and room is back.
        assert_eq!(
            r.add(at(31), key(4), piece(0, false, &d), &mut out),
            Added::Complete(6)
        );
        assert_eq!(r.footprint(), (0, 0));
        assert_eq!(r.dropped(), 3);
    }

    #[test]
    fn hostile_shapes_are_refused() {
        let mut r = Reassembler::new(Config::default());
        let mut out = Vec::new();
        // Past 64 KiB.
        assert_eq!(
            r.add(at(0), key(1), piece(65_528, false, &[0; 16]), &mut out),
            Added::Dropped
        );
        // A middle fragment whose length is not a multiple of 8.
        assert_eq!(
            r.add(at(0), key(2), piece(0, true, &[0; 5]), &mut out),
            Added::Dropped
        );
        // A last fragment that ends before bytes already held.
        assert_eq!(
            r.add(at(0), key(3), piece(16, true, &[0; 8]), &mut out),
            Added::Held
        );
        assert_eq!(
            r.add(at(0), key(3), piece(0, false, &[0; 8]), &mut out),
            Added::Dropped
        );
        assert_eq!(r.footprint(), (0, 0));
    }

    #[test]
    fn a_flood_of_tiny_pieces_stays_within_budget() {
        let max = 64 * 1024;
        let mut r = Reassembler::new(Config {
            max_bytes: max,
            timeout_ns: 30_000_000_000,
        });
        let mut out = Vec::new();
        let mut x: u32 = 1;
        let mut refused = 0;
        for n in 0..20_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let offset = ((x >> 8) % 8192) as usize * 8;
            let added = r.add(at(0), key(n % 500), piece(offset, true, &[1; 8]), &mut out);
            refused += u32::from(added == Added::Dropped);
            assert!(r.footprint().1 <= max, "{:?}", r.footprint());
            // What is charged is what is held.
            let held: usize = r.pending.values().map(Pending::cost).sum();
            assert_eq!(held, r.footprint().1);
        }
        assert!(refused > 0);
        assert_eq!(r.dropped(), 20_000);
    }
}
