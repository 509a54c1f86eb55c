//! Zeek's view of a TCP connection: its per-endpoint state machine, `history` letters and
//! `conn_state`, kept per packet so that `conn.log` users can join our connections with theirs.
//!
//! This follows Zeek's `TCPSessionAdapter::Process`/`UpdateStateMachine`, `update_history` and
//! `conn_state()` in `base/protocols/conn/main.zeek`. Not reproduced: checksum errors (`c`, we
//! do not verify checksums), content gaps (`g`), the `x` letter and Zeek's timers (a connection
//! here ends when our tracker finishes it).

use crate::common::Side;
use crate::decode::Segment;

/// Ports Zeek's analyzers register as likely servers that matter here: a partial connection
/// whose first packet comes from one of them is flipped, as Zeek's `WantConnection` does.
const LIKELY_SERVER_PORTS: &[u16] = &[
    3306, 443, 80, 8080, 22, 25, 53, 110, 143, 993, 995, 5432, 6379, 21,
];

/// Zeek's `TOO_LARGE_SEQ_DELTA`: a SYN or RST this far off is not believed.
const TOO_LARGE_SEQ_DELTA: u32 = 1_048_576;

/// The longest history kept; Zeek's strings are short (letters mostly appear once).
const MAX_HISTORY: usize = 64;

/// Zeek's `TCP_ENDPOINT_*` states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// `update_history` masks: each letter once per direction (S, H, F, R may repeat with a new
/// sequence number).
mod hist {
    pub const SYN: u8 = 0x01;
    pub const FIN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const FIN_RST: u8 = 0x08;
    pub const DATA: u8 = 0x10;
    pub const ACK: u8 = 0x20;
    pub const MULTI_FLAG: u8 = 0x40;
}

/// Letters recorded on a logarithmic scale: at 1, 10, 100, … occurrences.
#[derive(Clone, Copy, Debug)]
struct Scaled {
    count: u32,
    threshold: u32,
}

impl Default for Scaled {
    fn default() -> Self {
        Scaled {
            count: 0,
            threshold: 1,
        }
    }
}

impl Scaled {
    /// Zeek's `ScaledHistoryEntry`: true when this occurrence crosses the next threshold.
    fn hit(&mut self) -> bool {
        self.count = self.count.saturating_add(1);
        if self.count != self.threshold {
            return false;
        }
        match self.threshold.checked_mul(10) {
            Some(t) => self.threshold = t,
            None => self.count = 0,
        }
        true
    }
}

/// One endpoint as Zeek sees it.
#[derive(Clone, Copy, Debug, Default)]
struct End {
    state: State,
    prev: State,
    seen: u8,
    last_syn: Option<u32>,
    last_fin: Option<u32>,
    last_rst: Option<u32>,
    /// One past the highest sequence number sent (Zeek's `last_seq`), for retransmissions.
    last_seq: Option<u32>,
    /// Zeek's `start_seq` (the ISN, or one before the first byte of a partial connection).
    start_seq: Option<u32>,
    rxmit: Scaled,
    zero_window: Scaled,
}

impl End {
    fn set(&mut self, s: State) {
        self.prev = self.state;
        self.state = s;
    }
}

/// Zeek's state for one connection: a few bytes per endpoint and a short history string.
#[derive(Clone, Debug, Default)]
pub struct Zeek {
    /// Which side Zeek calls the originator.
    orig: Side,
    end: [End; 2],
    history: String,
}

fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

impl Zeek {
    /// The state for a connection whose first packet is `seg`.
    pub fn new(seg: &Segment<'_>) -> Zeek {
        let f = seg.flags;
        let mut z = Zeek::default();
        if !f.syn() || f.ack() {
            let likely = |p: u16| LIKELY_SERVER_PORTS.contains(&p);
            let (src, dst) = (seg.src.port, seg.dst.port);
            let flip = likely(src) && (!likely(dst) || (!f.syn() && src < dst));
            if flip {
                z.orig = Side::B;
                z.history.push('^');
            }
        }
        z
    }

    /// The side Zeek names the originator.
    pub fn orig_side(&self) -> Side {
        self.orig
    }

    /// The history string, upper case for the originator.
    pub fn history(&self) -> &str {
        &self.history
    }

    fn add(&mut self, side: Side, code: char) {
        if self.history.len() < MAX_HISTORY {
            let c = if side == self.orig {
                code
            } else {
                code.to_ascii_lowercase()
            };
            self.history.push(c);
        }
    }

    /// Zeek's `CheckHistory`: records `code` the first time `mask` is seen from `side`; true
    /// when it had been seen before.
    fn check(&mut self, side: Side, mask: u8, code: char) -> bool {
        if (code == 'A' || code == 'D') && self.history == "H" {
            // Began with a SYN-ACK and now real traffic: Zeek flips and pretends it saw the SYN.
            self.orig = self.orig.other();
            self.history.clear();
            self.history.push_str("^h");
        }
        let e = &mut self.end[side];
        if e.seen & mask == 0 {
            e.seen |= mask;
            self.add(side, code);
            false
        } else {
            true
        }
    }

    /// Applies one segment sent by `side`.
    pub fn packet(&mut self, seg: &Segment<'_>, side: Side) {
        let peer = side.other();
        let f = seg.flags;
        let len = u32::try_from(seg.payload.len())
            .unwrap_or(u32::MAX)
            .saturating_add(seg.missing);
        let seq = seg.seq;
        let seg_len = len
            .wrapping_add(u32::from(f.syn()))
            .wrapping_add(u32::from(f.fin()));
        let one_past = seq.wrapping_add(seg_len);

        self.history_letters(side, seg, len);

        // Zero windows (`update_window`): not with or after a RST, nor after the peer's FIN.
        if seg.window == 0
            && !f.rst()
            && self.end[peer].state != State::Closed
            && self.end[side].state != State::Reset
            && self.end[side].zero_window.hit()
        {
            self.add(side, 'W');
        }

        // `init_endpoint`, then `update_last_seq`: a segment that does not advance is a
        // retransmission.
        let e = &mut self.end[side];
        let reinit = match e.state {
            State::Inactive => true,
            State::SynSent | State::SynAckSent => f.syn() && Some(seq) != e.start_seq,
            State::Established | State::Partial => f.syn(),
            _ => false,
        };
        if reinit || e.last_seq.is_none() {
            let start = if f.syn() { seq } else { seq.wrapping_sub(1) };
            e.start_seq = Some(start);
            e.last_seq = Some(if f.syn() { one_past } else { seq });
        }
        if let Some(last) = e.last_seq {
            let delta = seq_delta(one_past, last);
            let wild = (f.syn() || f.rst()) && delta.unsigned_abs() > TOO_LARGE_SEQ_DELTA;
            let fin_only = f.fin() && Some(last) == e.start_seq.map(|s| s.wrapping_add(1));
            let trusted = !wild && e.state != State::Reset;
            if trusted && (fin_only || delta > 0) {
                e.last_seq = Some(one_past);
            } else if trusted && len > 0 && e.rxmit.hit() {
                self.add(side, 'T');
            }
        }
        self.state_machine(side, seg, len);
    }

    fn history_letters(&mut self, side: Side, seg: &Segment<'_>, len: u32) {
        let f = seg.flags;
        let bits = u8::from(f.syn()) + u8::from(f.fin()) + u8::from(f.rst());
        if bits > 1 {
            if f.fin() && f.rst() {
                self.check(side, hist::FIN_RST, 'I');
            } else {
                self.check(side, hist::MULTI_FLAG, 'Q');
            }
        } else if bits == 1 {
            let seq = seg.seq;
            if f.syn() {
                let code = if f.ack() { 'H' } else { 'S' };
                if self.check(side, hist::SYN, code) && self.end[side].last_syn != Some(seq) {
                    self.add(side, code);
                }
                self.end[side].last_syn = Some(seq);
            }
            if f.fin() {
                let at = seq.wrapping_add(len);
                if self.check(side, hist::FIN, 'F') && self.end[side].last_fin != Some(at) {
                    self.add(side, 'F');
                }
                self.end[side].last_fin = Some(at);
            }
            if f.rst() {
                if self.check(side, hist::RST, 'R') && self.end[side].last_rst != Some(seq) {
                    self.add(side, 'R');
                }
                self.end[side].last_rst = Some(seq);
            }
        } else if len > 0 {
            self.check(side, hist::DATA, 'D');
        } else if f.ack() {
            self.check(side, hist::ACK, 'A');
        }
    }

    /// Zeek's `UpdateStateMachine`, keeping only the state changes.
    fn state_machine(&mut self, side: Side, seg: &Segment<'_>, len: u32) {
        let f = seg.flags;
        let peer = side.other();
        let is_orig = side == self.orig;
        match self.end[side].state {
            State::Inactive => {
                if f.syn() {
                    if is_orig {
                        self.end[side].set(if f.ack() {
                            State::SynAckSent
                        } else {
                            State::SynSent
                        });
                    } else {
                        if !f.ack() && self.end[peer].state == State::SynAckSent {
                            // SYN/SYN-ACK reversal: Zeek flips the roles.
                            self.orig = side;
                            self.end[peer].set(State::Established);
                        }
                        if self.end[peer].state == State::SynSent {
                            self.end[peer].set(State::Established);
                        }
                        self.end[side].set(State::Established);
                    }
                }
                if f.fin() {
                    self.end[side].set(State::Closed);
                }
                if f.rst() {
                    self.end[side].set(State::Reset);
                }
                if self.end[side].state == State::Inactive {
                    let orig_syn_sent = self.end[self.orig].state == State::SynSent;
                    if !is_orig && len == 0 && orig_syn_sent {
                        // An ACK of the SYN before the SYN-ACK: not a partial connection.
                    } else if f.ack() && self.end[peer].state == State::Established {
                        self.end[side].set(State::Established);
                    } else {
                        self.end[side].set(State::Partial);
                    }
                }
            }
            State::SynSent | State::SynAckSent => {
                if f.fin() {
                    self.end[side].set(State::Closed);
                }
                if f.rst() {
                    self.end[side].set(State::Reset);
                }
            }
            State::Established | State::Partial => {
                if f.syn()
                    && !f.ack()
                    && self.end[side].state == State::Partial
                    && self.end[peer].state == State::Inactive
                {
                    self.end[side].set(State::SynSent);
                }
                if f.fin() && !f.rst() {
                    self.end[side].set(State::Closed);
                    if self.end[peer].state == State::Reset && self.end[peer].prev == State::Closed
                    {
                        // FIN then RST from the peer was a normal close after all.
                        self.end[peer].set(State::Closed);
                    }
                }
                if f.rst() {
                    self.end[side].set(State::Reset);
                }
            }
            State::Closed => {
                if f.rst() && self.end[peer].state != State::Closed {
                    self.end[side].set(State::Reset);
                }
            }
            State::Reset => {}
        }
    }

    /// Zeek's `conn_state` for a TCP connection, given the payload bytes each side sent
    /// (by [`Side`]).
    pub fn conn_state(&self, bytes: [u64; 2]) -> &'static str {
        let o = self.end[self.orig].state;
        let r = self.end[self.orig.other()].state;
        let inactive = |s: State| matches!(s, State::Inactive | State::Partial);
        let (o_in, r_in) = (inactive(o), inactive(r));
        if r == State::Reset {
            if matches!(o, State::SynSent | State::SynAckSent)
                || (o == State::Reset && bytes == [0, 0])
            {
                "REJ"
            } else if o_in {
                "RSTRH"
            } else {
                "RSTR"
            }
        } else if o == State::Reset {
            if r_in {
                if self.rstos0() {
                    "RSTOS0"
                } else {
                    "OTH"
                }
            } else {
                "RSTO"
            }
        } else if r == State::Closed && o == State::Closed {
            "SF"
        } else if o == State::Closed {
            if r_in {
                "SH"
            } else {
                "S2"
            }
        } else if r == State::Closed {
            if o_in {
                "SHR"
            } else {
                "S3"
            }
        } else if o == State::SynSent && r == State::Inactive {
            "S0"
        } else if o == State::Established && r == State::Established {
            "S1"
        } else {
            "OTH"
        }
    }

    /// `/\^?S[^HAFGIQ]*R.*/`: the originator's SYN, then its RST with nothing between that
    /// shows an answer or a handshake.
    fn rstos0(&self) -> bool {
        let h = self.history.strip_prefix('^').unwrap_or(&self.history);
        let Some(rest) = h.strip_prefix('S') else {
            return false;
        };
        for c in rest.chars() {
            match c {
                'R' => return true,
                'H' | 'A' | 'F' | 'G' | 'I' | 'Q' => return false,
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_letters_at_powers_of_ten() {
        let mut s = Scaled::default();
        let hits: Vec<u32> = (1..=1000).filter(|_| s.hit()).collect();
        assert_eq!(hits.len(), 4);
        assert_eq!(s.threshold, 10_000);
    }

    #[test]
    fn rstos0_pattern() {
        let mut z = Zeek {
            history: "SR".into(),
            ..Zeek::default()
        };
        assert!(z.rstos0());
        z.history = "^SdR".into();
        assert!(z.rstos0());
        z.history = "ShR".into();
        assert!(
            z.rstos0(),
            "lower-case h is the responder's and allowed by the regex"
        );
        z.history = "SHR".into();
        assert!(!z.rstos0());
        z.history = "DR".into();
        assert!(!z.rstos0());
    }
}
