//! The TCP tracker on arbitrary segment sequences between two endpoints: sequence numbers, flags
//! and payloads chosen by the fuzzer, with a small buffer cap and idle timeout to reach every path.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use proxyscope::common::Endpoint;
use proxyscope::decode::{Segment, TcpFlags, Vlans};
use proxyscope::tcp::{Config, Connection, StreamSink, Tracker};
use proxyscope::time::Timestamp;

struct Sink;
impl StreamSink for Sink {
    fn close(&mut self, conn: Connection) {
        let _ = proxyscope::model::Summary::of(&conn, Timestamp(0), Default::default());
    }
}

fuzz_target!(|data: &[u8]| {
    // Tiny caps so that eviction and the run-wide out-of-order budget are reached too.
    let mut t = Tracker::new(Config {
        max_buffer: 64,
        idle_timeout: Some(3_000_000_000),
        linger: 2_000_000_000,
        max_connections: 3,
        max_buffer_total: 200,
        server_greeting: proxyscope::mysql::looks_like_greeting,
        // Two files: per-file sightings, and second observations recorded, not processed.
        vantage_points: true,
    });
    let ep = |i: u8| Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + (i & 1))),
        port: 3306 + u16::from(i & 6),
    };
    let mut ts = 0i64;
    for (n, chunk) in data.chunks(12).enumerate() {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0);
        let dir = b(0);
        let seq = u32::from_le_bytes([b(1), b(2), b(3), b(4)]);
        let ack = u32::from_le_bytes([b(5), b(6), b(7), b(8)]);
        let len = usize::from(b(10) % 40);
        let payload = vec![b(11); len];
        ts += i64::from(b(9)) * 50_000_000;
        let seg = Segment {
            ts: Timestamp(ts),
            frame_no: n as u64 + 1,
            file: usize::from(dir >> 5 & 1),
            // Taggings that differ by direction reach the asymmetric-VLAN rule.
            vlans: match (dir >> 3) & 3 {
                0 => Vlans::default(),
                1 => Vlans([42 | 0x1000, 0]),
                2 => Vlans([43 | 0x1000, 0]),
                _ => Vlans([10 | 0x1000, 20 | 0x1000]),
            },
            src: ep(dir),
            dst: ep(dir ^ 1),
            seq,
            ack,
            flags: TcpFlags(b(9) & 0x1f),
            window: 1000,
            payload: &payload,
            missing: u32::from(b(10) >> 6),
        };
        if dir >> 6 == 3 {
            t.seen_again(&seg);
        } else {
            t.process(&seg, &mut Sink);
        }
    }
    assert!(t.open_connections() <= 3);
    t.finish_all(&mut Sink);
});
