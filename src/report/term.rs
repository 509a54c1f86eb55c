//! Terminal-safe text: strings from a capture must not drive the operator's terminal.
//!
//! Every control character but the newline (C0, DEL, C1: ESC sequences, OSC 52 clipboard
//! writes, carriage-return overwrites, BEL) and every bidi or invisible direction mark (U+202E
//! and its kin, which reorder what the operator reads) is written escaped, as `\x1b` or
//! `\u{202e}`, so that strings from a capture (user names, server versions, error messages,
//! queries) cannot drive the terminal. The text report and live's rows escape each string
//! before laying it out, so the only escape sequences they write are their own colours. JSON
//! outputs stay exact.

/// Bidi embeddings, overrides and isolates, and the invisible direction marks.
fn is_direction_mark(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control characters (but the newline) and direction marks escaped.
pub fn term_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push('\n'),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || is_direction_mark(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod term_tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls_and_keeps_text() {
        let evil = "8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07 root\rfake \u{202e}gnp.exe\t\u{85}é\n";
        assert_eq!(
            term_safe(evil),
            "8.0\\x1b[2J\\x1b]52;c;SGVsbG8=\\x07 root\\x0dfake \\u{202e}gnp.exe\\x09\\u{85}é\n"
        );
        assert_eq!(term_safe("a\u{2066}b\u{7f}"), "a\\u{2066}b\\x7f");
    }
}
