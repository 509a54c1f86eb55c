//! Stage 4a, MySQL: framing and a per-connection decoder that follows the protocol from the
//! greeting through the login (or the SSLRequest, after which the stream is TLS) to commands and
//! their responses, so that every request is known to be complete or still in flight.
//!
//! Packet layouts come from `mysql_common` where it has them (greeting, handshake response,
//! OK, ERR, auth switch, prepared-statement OK); the framer and the response state machine are
//! ours. Nothing here trusts a length: every read is checked, and a packet that does not parse
//! is counted, not fatal.

pub mod compress;
pub mod decoder;
pub mod framer;

pub use decoder::{Decoder, Facts, InFlight, Phase};

/// Sequence id of a server greeting.
const GREETING_SEQ: u8 = 0;
/// Protocol version byte of HandshakeV10.
const PROTOCOL_V10: u8 = 0x0a;
/// First payload byte of an ERR packet (a server may greet with ERR, e.g. 1130 host not allowed).
const ERR: u8 = 0xff;
/// A greeting's payload is small; anything larger is not one.
const MAX_GREETING: usize = 1024;

/// True if `b` starts with what only a MySQL server sends first: a packet with sequence id 0
/// that is a HandshakeV10 (protocol 10, then a NUL-terminated printable version) or an ERR.
pub fn looks_like_greeting(b: &[u8]) -> bool {
    let (Some(&l0), Some(&l1), Some(&l2), Some(&seq), Some(&first)) =
        (b.first(), b.get(1), b.get(2), b.get(3), b.get(4))
    else {
        return false;
    };
    let len = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
    if seq != GREETING_SEQ || !(3..=MAX_GREETING).contains(&len) {
        return false;
    }
    let payload = b.get(4..).unwrap_or(&[]);
    let payload = payload.get(..len).unwrap_or(payload);
    match first {
        PROTOCOL_V10 => {
            // The version starts with a digit (every MySQL, MariaDB, ProxySQL and TiDB server
            // does); after it, any byte but NUL. A server may send control characters or
            // bidi marks there on purpose: that must not hide the connection as "not MySQL"
            // (the report neutralises them instead). After the NUL: a 4-byte thread id, 8
            // bytes of scramble and a zero filler, checked when present.
            let version = payload.get(1..).unwrap_or(&[]);
            if !version.first().is_some_and(u8::is_ascii_digit) {
                return false;
            }
            match version.iter().position(|&c| c == 0) {
                Some(n) => version.get(n + 13).is_none_or(|&f| f == 0),
                // Cut by the snap length or the segment: judge what is there.
                None => version.len() >= 3,
            }
        }
        ERR => payload.len() >= 3,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_greetings() {
        let mut g = vec![0x0a];
        g.extend_from_slice(b"10.11.6-MariaDB-0+deb12u1\0");
        g.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let mut pkt = vec![g.len() as u8, 0, 0, 0];
        pkt.extend_from_slice(&g);
        assert!(looks_like_greeting(&pkt));
        // A hostile version string is still a greeting.
        let mut evil = vec![0x0a];
        evil.extend_from_slice(b"8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07evil\0");
        evil.extend_from_slice(&[1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0]);
        let mut ev = vec![evil.len() as u8, 0, 0, 0];
        ev.extend_from_slice(&evil);
        assert!(looks_like_greeting(&ev));
        // ... but a non-zero filler after the scramble is not.
        let n = ev.len();
        ev[n - 1] = 7;
        assert!(!looks_like_greeting(&ev));
        pkt[3] = 1;
        assert!(!looks_like_greeting(&pkt));
        // ERR 1130 greeting
        let err = b"\x17\x00\x00\x00\xff\x6a\x04Host is not allowed";
        assert!(looks_like_greeting(err));
        // a COM_QUIT is not a greeting
        assert!(!looks_like_greeting(&[1, 0, 0, 0, 1]));
        assert!(!looks_like_greeting(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_greeting(&[]));
    }
}
