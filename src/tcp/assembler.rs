//! A bounded buffer for one direction's out-of-order bytes.
//!
//! Invariant: the chunks never overlap one another, and together hold at most `cap` bytes of
//! data (holes — bytes the capture never had — cost nothing). When a new segment overlaps bytes
//! already buffered, the first copy wins; overlapped bytes that differ are counted, because two
//! different versions of the same stream position mean the capture cannot be trusted there.

use std::collections::BTreeMap;

use crate::common::At;

/// What a stretch of buffered stream holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes seen in the capture.
    Data(Vec<u8>),
    /// Bytes that were on the wire but not in the capture (snap length).
    Hole(u64),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Data(d) => d.len() as u64,
            Piece::Hole(n) => *n,
        }
    }
}

/// A buffered stretch: its piece and when the segment that brought it was captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes or hole.
    pub piece: Piece,
    /// Arrival of the segment that carried it.
    pub at: At,
}

/// What one buffered chunk is charged beyond its data: the map node and the chunk itself, so
/// that many tiny or empty (snap-length-cut) segments count against the cap too.
pub const CHUNK_COST: usize = 64;

/// Out-of-order chunks keyed by stream offset.
///
/// A stretch that continues the chunk before it exactly is appended to that chunk (keeping the
/// earlier arrival time), so a run of overlapping or tiny segments stays one chunk and an
/// insertion never walks more than the chunks it really overlaps.
#[derive(Debug, Default)]
pub struct Assembler {
    chunks: BTreeMap<u64, Chunk>,
    data_bytes: usize,
}

/// What an insertion found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Bytes that were already buffered (dropped: first copy wins).
    pub duplicate: u64,
    /// Of those, bytes whose values differed from the buffered copy.
    pub differing: u64,
}

impl Assembler {
    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes of data held.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// Memory charged: data plus [`CHUNK_COST`] per chunk.
    pub fn cost(&self) -> usize {
        self.data_bytes + CHUNK_COST * self.chunks.len()
    }

    /// Chunks held.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Offset of the first buffered chunk.
    pub fn first_offset(&self) -> Option<u64> {
        self.chunks.keys().next().copied()
    }

    /// Buffers `piece` at stream offset `off`, keeping earlier copies of any overlapped bytes.
    pub fn insert(&mut self, off: u64, piece: Piece, at: At) -> Inserted {
        let mut found = Inserted::default();
        let end = off.saturating_add(piece.len());
        if end <= off {
            return found;
        }
        // The uncovered stretches of [off, end), found by walking the chunks that overlap it.
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let mut pos = off;
        let start_key = self
            .chunks
            .range(..off)
            .next_back()
            .map(|(k, _)| *k)
            .unwrap_or(off);
        for (&k, c) in self.chunks.range(start_key..end) {
            let c_end = k + c.piece.len();
            if c_end <= pos {
                continue;
            }
            if k > pos {
                gaps.push((pos, k));
            }
            let ov_start = k.max(pos);
            let ov_end = c_end.min(end);
            if ov_end > ov_start {
                found.duplicate += ov_end - ov_start;
                if let (Piece::Data(new), Piece::Data(old)) = (&piece, &c.piece) {
                    let a = new.get(slice_range(ov_start - off, ov_end - off));
                    let b = old.get(slice_range(ov_start - k, ov_end - k));
                    if let (Some(a), Some(b)) = (a, b) {
                        found.differing += a.iter().zip(b).filter(|(x, y)| x != y).count() as u64;
                    }
                }
            }
            pos = pos.max(c_end);
            if pos >= end {
                break;
            }
        }
        if pos < end {
            gaps.push((pos, end));
        }
        for (s, e) in gaps {
            let bytes = match &piece {
                Piece::Data(d) => match d.get(slice_range(s - off, e - off)) {
                    Some(b) => Some(b),
                    None => continue,
                },
                Piece::Hole(_) => None,
            };
            // Appended to the chunk that ends exactly here, when of the same kind.
            let prev = self
                .chunks
                .range_mut(..s)
                .next_back()
                .filter(|(k, c)| **k + c.piece.len() == s);
            match (prev, bytes) {
                (
                    Some((
                        _,
                        Chunk {
                            piece: Piece::Data(v),
                            ..
                        },
                    )),
                    Some(b),
                ) => {
                    v.extend_from_slice(b);
                    self.data_bytes += b.len();
                }
                (
                    Some((
                        _,
                        Chunk {
                            piece: Piece::Hole(n),
                            ..
                        },
                    )),
                    None,
                ) => *n += e - s,
                (_, Some(b)) => {
                    self.data_bytes += b.len();
                    self.chunks.insert(
                        s,
                        Chunk {
                            piece: Piece::Data(b.to_vec()),
                            at,
                        },
                    );
                }
                (_, None) => {
                    self.chunks.insert(
                        s,
                        Chunk {
                            piece: Piece::Hole(e - s),
                            at,
                        },
                    );
                }
            }
        }
        found
    }

    /// Removes and returns the chunk that continues the stream at `base`, trimming any part
    /// before `base` (already delivered by an in-order segment). Chunks wholly before `base`
    /// are dropped; their length is added to `*dropped`.
    pub fn pop_at(&mut self, base: u64, dropped: &mut u64) -> Option<Chunk> {
        loop {
            let (&k, c) = self.chunks.iter().next()?;
            if k > base {
                return None;
            }
            let len = c.piece.len();
            let (_, mut chunk) = self.chunks.pop_first()?;
            if let Piece::Data(d) = &chunk.piece {
                self.data_bytes -= d.len();
            }
            if k + len <= base {
                *dropped += len;
                continue;
            }
            let skip = base - k;
            if skip > 0 {
                *dropped += skip;
                chunk.piece = match chunk.piece {
                    Piece::Data(d) => Piece::Data(d.get(skip as usize..).unwrap_or(&[]).to_vec()),
                    Piece::Hole(n) => Piece::Hole(n - skip),
                };
            }
            return Some(chunk);
        }
    }
}

fn slice_range(a: u64, b: u64) -> std::ops::Range<usize> {
    a as usize..b as usize
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

    /// Drains everything from `base`, filling holes between chunks with `None`s.
    fn drain(a: &mut Assembler, mut base: u64) -> Vec<Option<u8>> {
        let mut out = Vec::new();
        let mut dropped = 0;
        while let Some(first) = a.first_offset() {
            while base < first {
                out.push(None);
                base += 1;
            }
            let c = a.pop_at(base, &mut dropped).unwrap();
            match c.piece {
                Piece::Data(d) => out.extend(d.into_iter().map(Some)),
                Piece::Hole(n) => out.extend(std::iter::repeat_n(None, n as usize)),
            }
            base = out.len() as u64;
        }
        out
    }

    #[test]
    fn first_copy_wins_and_differences_are_counted() {
        let mut a = Assembler::default();
        a.insert(2, Piece::Data(b"cdef".to_vec()), at());
        let r = a.insert(0, Piece::Data(b"abXDEFgh".to_vec()), at());
        assert_eq!(r.duplicate, 4);
        assert_eq!(r.differing, 4);
        let got: Vec<u8> = drain(&mut a, 0).into_iter().map(|b| b.unwrap()).collect();
        assert_eq!(got, b"abcdefgh");
        assert_eq!(a.data_bytes(), 0);
    }

    #[test]
    fn pop_trims_what_was_delivered() {
        let mut a = Assembler::default();
        a.insert(10, Piece::Data(b"0123456789".to_vec()), at());
        let mut dropped = 0;
        let c = a.pop_at(15, &mut dropped).unwrap();
        assert_eq!(c.piece, Piece::Data(b"56789".to_vec()));
        assert_eq!(dropped, 5);
        assert!(a.is_empty());
    }

    /// Random inserts of slices of one true stream, checked against a naive byte map.
    #[test]
    fn matches_naive_model_on_random_input() {
        let truth: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let mut a = Assembler::default();
            let mut model: Vec<Option<Option<u8>>> = vec![None; truth.len()];
            for _ in 0..rnd(12) + 1 {
                let s = rnd(truth.len() as u64) as usize;
                let e = (s + rnd(60) as usize + 1).min(truth.len());
                let hole = rnd(5) == 0;
                let piece = if hole {
                    Piece::Hole((e - s) as u64)
                } else {
                    Piece::Data(truth[s..e].to_vec())
                };
                a.insert(s as u64, piece, at());
                for m in &mut model[s..e] {
                    if m.is_none() {
                        *m = Some(if hole { None } else { Some(0) });
                    }
                }
            }
            // Compare coverage and content from offset 0.
            let got = drain(&mut a, 0);
            let last = model.iter().rposition(|m| m.is_some()).map_or(0, |p| p + 1);
            assert_eq!(got.len(), last);
            for (i, g) in got.iter().enumerate() {
                match model[i] {
                    None | Some(None) => assert_eq!(*g, None, "offset {i}"),
                    Some(Some(_)) => assert_eq!(*g, Some(truth[i]), "offset {i}"),
                }
            }
        }
    }
}
