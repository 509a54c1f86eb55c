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
            let version = payload.get(1..).unwrap_or(&[]);
            match version.iter().position(|&c| c == 0) {
                Some(n) => n > 0 && version.iter().take(n).all(|c| c.is_ascii_graphic()),
                // Cut by the snap length or the segment: judge what is there.
                None => version.len() >= 3 && version.iter().all(|c| c.is_ascii_graphic()),
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
