//! Reassembly on crafted segment sequences: reorder, duplicate, overlap, wrap, gap, mid-stream,
//! as the connection summaries show it (so here, after tcp, not beside it).
//! Compiled only under #[cfg(test)] (declared so in model.rs).

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::common::Endpoint;
use crate::decode::{Segment, TcpFlags, Vlans};
use crate::model::{CloseKind, Role, Summary};
use crate::tcp::{Config, StreamEvent, StreamSink, Tracker};

const C: u16 = 40000;
const S: u16 = 3306;
const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Data(Vec<u8>),
    Gap(u64),
    Fin,
    Rst,
}

#[derive(Default)]
struct Rec {
    /// (connection id, sender port, event)
    events: Vec<(u64, u16, Ev)>,
    closed: Vec<Connection>,
}

impl StreamSink for Rec {
    fn event(&mut self, conn: &Connection, side: Side, _at: At, ev: StreamEvent<'_>) {
        let e = match ev {
            StreamEvent::Data(d) => Ev::Data(d.to_vec()),
            StreamEvent::Gap(n) => Ev::Gap(n),
            StreamEvent::Fin => Ev::Fin,
            StreamEvent::Rst => Ev::Rst,
            StreamEvent::Syn => return,
        };
        self.events.push((conn.id, conn.ep[side].port, e));
    }
    fn close(&mut self, conn: Connection) {
        self.closed.push(conn);
    }
}

impl Rec {
    /// The stream sent from `port`, with gaps as `?` bytes, merged across data events.
    fn stream(&self, port: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for (_, p, e) in &self.events {
            if *p != port {
                continue;
            }
            match e {
                Ev::Data(d) => out.extend_from_slice(d),
                Ev::Gap(n) => out.extend(std::iter::repeat_n(b'?', *n as usize)),
                _ => {}
            }
        }
        out
    }
}

struct Lab {
    t: Tracker,
    rec: Rec,
    frame: u64,
    ms: i64,
    window: u16,
    vlans: Vlans,
}

impl Lab {
    fn new() -> Lab {
        Lab::with(Config::default())
    }
    fn with(cfg: Config) -> Lab {
        Lab {
            t: Tracker::new(Config {
                server_greeting: crate::mysql::looks_like_greeting,
                ..cfg
            }),
            rec: Rec::default(),
            frame: 0,
            ms: 0,
            window: 65535,
            vlans: Vlans::default(),
        }
    }
    /// Sends a segment from `from` (C or S) to the other port.
    fn send(&mut self, from: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) {
        self.send_cut(from, seq, ack, flags, payload, 0);
    }
    fn send_cut(&mut self, from: u16, seq: u32, ack: u32, flags: u8, payload: &[u8], missing: u32) {
        let to = if from == C { S } else { C };
        self.frame += 1;
        self.ms += 1;
        let ep = |port| Endpoint {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, if port == C { 1 } else { 2 })),
            port,
        };
        let seg = Segment {
            ts: Timestamp(self.ms * 1_000_000),
            frame_no: self.frame,
            file: 0,
            vlans: self.vlans,
            src: ep(from),
            dst: ep(to),
            seq,
            ack,
            flags: TcpFlags(flags),
            window: self.window,
            payload,
            missing,
        };
        self.t.process(&seg, &mut self.rec);
    }
    fn send_window(&mut self, from: u16, seq: u32, ack: u32, flags: u8, window: u16) {
        self.window = window;
        self.send(from, seq, ack, flags, b"");
        self.window = 65535;
    }
    fn wait(&mut self, ms: i64) {
        self.ms += ms;
    }
    fn handshake(&mut self, cisn: u32, sisn: u32) {
        self.send(C, cisn, 0, SYN, b"");
        self.send(S, sisn, cisn.wrapping_add(1), SYN | ACK, b"");
        self.send(C, cisn.wrapping_add(1), sisn.wrapping_add(1), ACK, b"");
    }
    fn finish(mut self) -> (Rec, Vec<Summary>) {
        self.t.finish_all(&mut self.rec);
        let sums = self
            .rec
            .closed
            .iter()
            .map(|c| Summary::of(c, Timestamp(0), crate::dissect::AppFacts::default()))
            .collect();
        (self.rec, sums)
    }
}

mod established {
    use super::*;

    #[test]
    fn a_half_closed_connection_is_a_pending_close_until_finished() {
        let mut l = Lab::new();
        l.handshake(100, 500);
        assert!(l.t.pending_closes().is_empty());
        l.send(S, 501, 101, FIN | ACK, b"");
        // Frame 4 at 4 ms: the server's FIN; the client has not closed its half.
        assert_eq!(l.t.pending_closes(), vec![Timestamp(4_000_000)]);
        l.send(C, 101, 502, FIN | ACK, b"");
        l.send(S, 502, 102, ACK, b"");
        assert_eq!(l.t.pending_closes(), vec![Timestamp(4_000_000)]);
        l.t.finish_all(&mut l.rec);
        assert!(l.t.pending_closes().is_empty());
    }

    #[test]
    fn in_order_streams_and_orderly_close() {
        let mut l = Lab::new();
        l.handshake(100, 500);
        l.send(C, 101, 501, ACK, b"hello");
        l.send(S, 501, 106, ACK, b"world!");
        l.send(C, 106, 507, FIN | ACK, b"");
        l.send(S, 507, 107, FIN | ACK, b"");
        l.send(C, 107, 508, ACK, b"");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"hello");
        assert_eq!(rec.stream(S), b"world!");
        let s = &sums[0];
        assert_eq!(s.client.port, C);
        assert_eq!(s.role_basis, RoleBasis::Syn);
        assert_eq!(s.close.how, CloseKind::Fin);
        assert_eq!(s.close.closed_by, Some(Role::Client));
        assert_eq!(s.close.at.unwrap().at.frame, 6);
        assert_eq!(s.close.peer_fin.unwrap().at.frame, 7);
        assert_eq!((s.bytes.c2s, s.bytes.s2c), (5, 6));
        assert_eq!(s.gaps.c2s.count + s.gaps.s2c.count, 0);
        assert!(!s.close.still_open);
        let fins: Vec<_> = rec
            .events
            .iter()
            .filter(|e| e.2 == Ev::Fin)
            .map(|e| e.1)
            .collect();
        assert_eq!(fins, vec![C, S]);
    }

    #[test]
    fn reordered_segments_are_delivered_in_order() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1006, 5001, ACK, b"world");
        l.send(C, 1011, 5001, ACK, b"!");
        l.send(C, 1001, 5001, ACK, b"hello");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"helloworld!");
        assert_eq!(sums[0].out_of_order.c2s, 2);
        assert_eq!(sums[0].retransmissions.c2s, 0);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1001, 5001, ACK, b"abc");
        l.send(C, 1001, 5001, ACK, b"abc");
        l.send(C, 1002, 5001, ACK, b"bcdef");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"abcdef");
        assert_eq!(sums[0].retransmissions.c2s, 2);
    }

    #[test]
    fn differing_overlap_is_flagged_and_first_copy_wins() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1005, 5001, ACK, b"efgh");
        l.send(C, 1005, 5001, ACK, b"eXgh");
        l.send(C, 1001, 5001, ACK, b"abcd");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"abcdefgh");
        assert_eq!(sums[0].overlap_differs, 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut l = Lab::new();
        let isn = u32::MAX - 3;
        l.handshake(isn, 7);
        // isn+1 = MAX-2: "abc" covers MAX-2..=MAX, "def" starts at 0, "ghi" at 3 (sent first).
        l.send(C, 3, 8, ACK, b"ghi");
        l.send(C, u32::MAX - 2, 8, ACK, b"abc");
        l.send(C, 0, 8, ACK, b"def");
        l.send(C, 6, 8, FIN | ACK, b"");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"abcdefghi");
        assert_eq!(sums[0].close.how, CloseKind::HalfClose);
        assert_eq!(sums[0].gaps.c2s.count, 0);
    }

    #[test]
    fn keepalive_is_not_a_retransmission() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1001, 5001, ACK, b"abc");
        l.send(C, 1003, 5001, ACK, b"c");
        l.send(C, 1003, 5001, ACK, b"");
        let (_, sums) = l.finish();
        assert_eq!(sums[0].keepalives.c2s, 1);
        assert_eq!(sums[0].retransmissions.c2s, 0);
    }
}

#[test]
fn zero_window_probe_is_counted_and_its_byte_kept_once() {
    let mut l = Lab::new();
    l.handshake(1000, 5000);
    l.send(C, 1001, 5001, ACK, b"abc");
    // The server's window closes; the client probes with the next byte, then resends it in a
    // larger segment once the window opens.
    l.send_window(S, 5001, 1004, ACK, 0);
    l.send(C, 1004, 5001, ACK, b"d");
    l.send(C, 1004, 5001, ACK, b"defg");
    let (rec, sums) = l.finish();
    assert_eq!(rec.stream(C), b"abcdefg");
    assert_eq!(sums[0].zero_window_probes.c2s, 1);
}

mod gaps {
    use super::*;

    #[test]
    fn peer_ack_past_unseen_bytes_is_a_gap() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1001, 5001, ACK, b"abcde");
        // 1006..1011 lost in the capture
        l.send(C, 1011, 5001, ACK, b"klmno");
        l.send(S, 5001, 1016, ACK, b"");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"abcde?????klmno");
        assert_eq!(sums[0].gaps.c2s.count, 1);
        assert_eq!(sums[0].gaps.c2s.bytes, 5);
        // Stream order: the gap precedes the buffered bytes.
        let evs: Vec<&Ev> = rec
            .events
            .iter()
            .filter(|e| e.1 == C)
            .map(|e| &e.2)
            .collect();
        assert_eq!(evs[1], &Ev::Gap(5));
    }

    #[test]
    fn ack_with_nothing_buffered_is_a_gap_too() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(S, 5001, 1101, ACK, b"");
        l.send(C, 1101, 5001, ACK, b"xy");
        let (rec, _) = l.finish();
        assert_eq!(rec.stream(C).len(), 102);
        assert!(rec.stream(C).ends_with(b"xy"));
    }

    #[test]
    fn ack_of_fin_is_not_a_gap() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1001, 5001, FIN | ACK, b"ab");
        l.send(S, 5001, 1004, ACK, b"");
        let (_, sums) = l.finish();
        assert_eq!(sums[0].gaps.c2s.count, 0);
    }

    #[test]
    fn ack_of_fin_after_lost_data_counts_only_the_data() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1001, 5001, ACK, b"ab");
        // "cd" at 1003 lost; the FIN takes 1005.
        l.send(C, 1005, 5001, FIN | ACK, b"");
        l.send(S, 5001, 1006, ACK, b"");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"ab??");
        assert_eq!(sums[0].gaps.c2s.bytes, 2);
    }

    #[test]
    fn snaplen_cut_is_a_gap_of_the_cut_length() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send_cut(C, 1001, 5001, ACK, b"abc", 7);
        l.send(C, 1011, 5001, ACK, b"z");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"abc???????z");
        assert_eq!(sums[0].gaps.c2s.bytes, 7);
    }

    #[test]
    fn buffer_overflow_declares_the_gap_early() {
        let mut l = Lab::with(Config {
            max_buffer: 10,
            ..Config::default()
        });
        l.handshake(1000, 5000);
        l.send(C, 1001, 5001, ACK, b"ab");
        l.send(C, 1013, 5001, ACK, b"0123456789");
        l.send(C, 1023, 5001, ACK, b"XY");
        assert_eq!(l.t.stats.buffer_overflows, 1);
        let (rec, _) = l.finish();
        assert_eq!(rec.stream(C), b"ab??????????0123456789XY");
    }

    #[test]
    fn end_of_capture_flushes_buffered_bytes_after_a_gap() {
        let mut l = Lab::new();
        l.handshake(1000, 5000);
        l.send(C, 1004, 5001, ACK, b"def");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(C), b"???def");
        assert_eq!(sums[0].close.how, CloseKind::Open);
        assert!(sums[0].close.still_open);
    }
}

mod mid_stream {
    use super::*;

    #[test]
    fn roles_from_ports_without_a_syn() {
        let mut l = Lab::new();
        l.send(S, 9000, 100, ACK, b"rows");
        l.send(C, 100, 9004, ACK, b"");
        let (rec, sums) = l.finish();
        assert_eq!(rec.stream(S), b"rows");
        assert!(sums[0].mid_stream);
        assert_eq!(sums[0].role_basis, RoleBasis::Port);
        assert_eq!(sums[0].server.port, S);
    }

    #[test]
    fn mysql_greeting_overrides_the_port_guess() {
        let mut l = Lab::new();
        // From 40000 (the port guess says client) comes a greeting: it is the server.
        let mut g = vec![0x0a];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&[7, 0, 0, 0]);
        let mut pkt = vec![g.len() as u8, 0, 0, 0];
        pkt.extend_from_slice(&g);
        l.send(C, 1, 1, ACK, &pkt);
        let (_, sums) = l.finish();
        assert_eq!(sums[0].role_basis, RoleBasis::Greeting);
        assert_eq!(sums[0].server.port, C);
    }

    #[test]
    fn syn_ack_alone_decides_roles() {
        let mut l = Lab::new();
        l.send(S, 500, 101, SYN | ACK, b"");
        l.send(C, 101, 501, ACK, b"q");
        let (rec, sums) = l.finish();
        assert_eq!(sums[0].role_basis, RoleBasis::SynAck);
        assert_eq!(sums[0].client.port, C);
        assert_eq!(rec.stream(C), b"q");
    }
}

mod closes {
    use super::*;

    #[test]
    fn reused_tuple_after_close_is_a_new_connection() {
        let mut l = Lab::new();
        l.handshake(100, 500);
        l.send(C, 101, 501, RST, b"");
        l.handshake(90_000, 7_000);
        l.send(S, 7001, 90_001, FIN | ACK, b"");
        let (_, sums) = l.finish();
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[0].close.how, CloseKind::Rst);
        assert_eq!(sums[0].close.closed_by, Some(Role::Client));
        assert_eq!(sums[1].close.how, CloseKind::HalfClose);
        assert_eq!(sums[1].close.closed_by, Some(Role::Server));
    }

    #[test]
    fn retransmitted_syn_is_the_same_connection() {
        let mut l = Lab::new();
        l.send(C, 100, 0, SYN, b"");
        l.send(C, 100, 0, SYN, b"");
        l.send(S, 500, 101, RST | ACK, b"");
        let (_, sums) = l.finish();
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[0].close.how, CloseKind::Refused);
        assert_eq!(sums[0].close.closed_by, Some(Role::Server));
    }

    #[test]
    fn fin_then_rst_keeps_both_facts() {
        let mut l = Lab::new();
        l.handshake(100, 500);
        l.send(C, 101, 501, FIN | ACK, b"");
        l.send(S, 501, 102, ACK, b"\x15\x03\x03\x00\x02\x02\x32");
        l.send(C, 102, 0, RST, b"");
        let (rec, sums) = l.finish();
        let s = &sums[0];
        assert_eq!(s.close.how, CloseKind::FinRst);
        assert_eq!(s.close.closed_by, Some(Role::Client));
        assert_eq!(s.close.first_rst.unwrap().by, Role::Client);
        assert!(s.close.peer_fin.is_none());
        assert!(rec.events.iter().any(|e| e.2 == Ev::Rst));
    }

    #[test]
    fn idle_connections_expire() {
        let mut l = Lab::with(Config {
            idle_timeout: Some(5_000_000_000),
            ..Config::default()
        });
        l.handshake(100, 500);
        l.wait(10_000);
        // Another connection's packet moves the clock on.
        l.send(S, 1, 1, ACK, b"");
        assert_eq!(l.t.stats.idle_expired, 1);
        let (_, sums) = l.finish();
        assert!(sums[0].close.idle_expired);
    }

    #[test]
    fn closed_connections_leave_the_table_after_linger() {
        let mut l = Lab::new();
        l.handshake(100, 500);
        l.send(C, 101, 501, RST, b"");
        assert_eq!(l.t.open_connections(), 1);
        l.wait(31_000);
        l.send(C, 200, 0, SYN, b"");
        // The old one went at the sweep; the SYN opened a fresh one.
        assert_eq!(l.rec.closed.len(), 1);
        assert_eq!(l.t.oldest_open(), Some(2));
    }
}

mod vlan_tagging {
    use super::*;

    const UNTAGGED: Vlans = Vlans([0, 0]);
    const V42: Vlans = Vlans([42 | 0x1000, 0]);
    const V43: Vlans = Vlans([43 | 0x1000, 0]);
    const QINQ: Vlans = Vlans([10 | 0x1000, 20 | 0x1000]);

    impl Lab {
        fn on(&mut self, vlans: Vlans) -> &mut Lab {
            self.vlans = vlans;
            self
        }
        /// A whole exchange on the current tagging, client side tagged `c`, server side `s`.
        fn exchange(&mut self, c: Vlans, s: Vlans) {
            self.on(c).send(C, 100, 0, SYN, b"");
            self.on(s).send(S, 500, 101, SYN | ACK, b"");
            self.on(c).send(C, 101, 501, ACK, b"INSERT");
            self.on(s).send(S, 501, 107, ACK, b"OK");
            self.on(c).send(C, 107, 503, FIN | ACK, b"");
            self.on(s).send(S, 503, 108, FIN | ACK, b"");
            self.on(c).send(C, 108, 504, ACK, b"");
        }
    }

    #[test]
    fn one_direction_tagged_is_one_connection() {
        for (c, s) in [(V42, UNTAGGED), (UNTAGGED, V42), (QINQ, UNTAGGED)] {
            let mut l = Lab::new();
            l.exchange(c, s);
            assert_eq!(l.t.stats.asymmetric_vlans, 1);
            let (rec, sums) = l.finish();
            assert_eq!(sums.len(), 1, "{c:?} {s:?}");
            assert_eq!(rec.stream(C), b"INSERT");
            assert_eq!(rec.stream(S), b"OK");
            assert_eq!(rec.closed[0].vlans, c);
            assert_eq!(rec.closed[0].vlan_peer, Some(s));
            assert_eq!(sums[0].close.closed_by, Some(Role::Client));
        }
    }

    #[test]
    fn same_tuple_on_other_taggings_stays_apart() {
        // Untagged, then VLAN 42, then QinQ, each complete both ways: three connections, as
        // in vlan-same-tuple-three-times.pcap.
        let mut l = Lab::new();
        l.exchange(UNTAGGED, UNTAGGED);
        l.exchange(V42, V42);
        l.exchange(QINQ, QINQ);
        assert_eq!(l.t.stats.asymmetric_vlans, 0);
        let (_, sums) = l.finish();
        assert_eq!(sums.len(), 3);
    }

    #[test]
    fn a_same_direction_copy_is_another_flow() {
        // The client's SYN seen untagged and on VLAN 42: two flows; the answer on a third
        // tagging has two candidates and joins neither.
        let mut l = Lab::new();
        l.on(UNTAGGED).send(C, 100, 0, SYN, b"");
        l.on(V42).send(C, 100, 0, SYN, b"");
        l.on(V43).send(S, 500, 101, SYN | ACK, b"");
        assert_eq!(l.t.stats.asymmetric_vlans, 0);
        assert_eq!(l.t.open_connections(), 3);
        // Two tagged directions on different VLANs are not joined either.
        let mut l = Lab::new();
        l.exchange(V42, V43);
        assert_eq!(l.t.stats.asymmetric_vlans, 0);
        assert_eq!(l.t.open_connections(), 2);
    }

    #[test]
    fn the_join_ends_with_its_connection() {
        let mut l = Lab::new();
        l.exchange(V42, UNTAGGED);
        // The port is reused later by a connection untagged both ways: its own connection.
        l.wait(60_000);
        l.exchange(UNTAGGED, UNTAGGED);
        assert_eq!(l.t.stats.asymmetric_vlans, 1);
        l.t.finish_all(&mut l.rec);
        assert!(l.t.joins_empty());
        let (_, sums) = l.finish();
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[1].vlan, None);
    }
}
