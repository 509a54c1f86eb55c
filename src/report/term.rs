//! Terminal-safe text: strings from a capture must not drive the operator's terminal.

use std::io::{self, Write};

/// A writer for terminal-bound text: every control character but the newline (C0, DEL, C1:
/// ESC sequences, OSC 52 clipboard writes, carriage-return overwrites, BEL) and every bidi or
/// invisible direction mark (U+202E and its kin, which reorder what the operator reads) is
/// written escaped, as `\x1b` or `\u{202e}`, so that strings from a capture (user names,
/// server versions, error messages, queries) cannot drive the terminal. Bytes that are not
/// UTF-8 are written as `\xNN`. JSON outputs do not go through this: they stay exact.
pub struct TermSafe<W: Write> {
    inner: W,
    /// The start of a UTF-8 sequence cut by a write boundary.
    pending: Vec<u8>,
}

impl<W: Write> TermSafe<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        TermSafe {
            inner,
            pending: Vec::new(),
        }
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        for c in s.chars() {
            match c {
                '\n' => out.push(b'\n'),
                c if (c as u32) < 0x80 && c.is_control() => {
                    out.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes())
                }
                c if c.is_control() || is_direction_mark(c) => {
                    out.extend_from_slice(format!("\\u{{{:x}}}", c as u32).as_bytes())
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }
}

/// Bidi embeddings, overrides and isolates, and the invisible direction marks.
fn is_direction_mark(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control characters and direction marks escaped, as [`TermSafe`] writes it.
pub fn term_safe(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    TermSafe::<io::Sink>::put_str(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

impl<W: Write> Write for TermSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(buf);
        let mut out = Vec::with_capacity(bytes.len() + 16);
        let mut rest: &[u8] = &bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    Self::put_str(&mut out, s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    Self::put_str(&mut out, std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        // Cut by the write boundary: wait for the rest of the character.
                        None => {
                            self.pending = bad.to_vec();
                            break;
                        }
                        Some(n) => {
                            for b in bad.iter().take(n) {
                                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                            }
                            rest = bad.get(n..).unwrap_or_default();
                        }
                    }
                }
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            let mut out = Vec::new();
            for b in p {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
            self.inner.write_all(&out)?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod term_tests {
    use super::*;

    fn through(chunks: &[&[u8]]) -> String {
        let mut t = TermSafe::new(Vec::new());
        for c in chunks {
            t.write_all(c).unwrap();
        }
        t.flush().unwrap();
        String::from_utf8(t.inner).unwrap()
    }

    #[test]
    fn escapes_terminal_controls_and_keeps_text() {
        let evil = "8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07 root\rfake \u{202e}gnp.exe\t\u{85}é\n";
        assert_eq!(
            through(&[evil.as_bytes()]),
            "8.0\\x1b[2J\\x1b]52;c;SGVsbG8=\\x07 root\\x0dfake \\u{202e}gnp.exe\\x09\\u{85}é\n"
        );
        assert_eq!(term_safe("a\u{2066}b\u{7f}"), "a\\u{2066}b\\x7f");
    }

    #[test]
    fn a_character_cut_by_a_write_boundary_is_whole_and_bad_bytes_are_escaped() {
        let s = "\u{202e}é".as_bytes();
        assert_eq!(through(&[&s[..2], &s[2..4], &s[4..]]), "\\u{202e}é");
        assert_eq!(through(&[b"a\xffb", b"\xe2\x80"]), "a\\xffb\\xe2\\x80");
    }
}
