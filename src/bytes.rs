//! Small helpers shared by the stream decoders (MySQL, compressed MySQL, TLS), which all read a
//! fixed-size header that may arrive split across segments.

/// A fixed-size header being collected from a byte stream.
#[derive(Debug, Clone, Copy)]
pub struct HeaderBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for HeaderBuf<N> {
    fn default() -> Self {
        HeaderBuf {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> HeaderBuf<N> {
    /// True when no byte of a header has been collected.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes bytes from the front of `d` (advancing it); returns the header once all `N` bytes
    /// are in, and starts over.
    pub fn fill(&mut self, d: &mut &[u8]) -> Option<[u8; N]> {
        let take = (N - self.len).min(d.len());
        for (slot, b) in self
            .bytes
            .iter_mut()
            .skip(self.len)
            .zip(d.iter().take(take))
        {
            *slot = *b;
        }
        self.len += take;
        *d = d.get(take..).unwrap_or(&[]);
        (self.len == N).then(|| {
            self.len = 0;
            self.bytes
        })
    }

    /// Forgets a partly collected header.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_arrives_in_pieces() {
        let mut h = HeaderBuf::<4>::default();
        let mut d: &[u8] = &[1, 2];
        assert_eq!(h.fill(&mut d), None);
        assert!(d.is_empty() && !h.is_empty());
        let mut d: &[u8] = &[3, 4, 5];
        assert_eq!(h.fill(&mut d), Some([1, 2, 3, 4]));
        assert_eq!(d, &[5]);
        assert!(h.is_empty());
    }
}
