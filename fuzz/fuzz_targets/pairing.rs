//! Request pairing across connections on arbitrary sequences of requests, responses, closes and
//! greetings (endpoints from a small pool, times that may step back): no panic, and the tables
//! stay within their caps however long the sequence.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use proxyscope::common::At;
use proxyscope::common::Endpoint;
use proxyscope::diagnose::legs::{Pairing, Request};
use proxyscope::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let mut p = Pairing::new(4);
    let ep = |i: u8| Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i & 3)),
        port: [3306, 6033, 40000, 40001][usize::from(i >> 2 & 3)],
    };
    let mut ts = 0i64;
    for (n, c) in data.chunks(6).enumerate() {
        let b = |i: usize| c.get(i).copied().unwrap_or(0);
        ts += (i64::from(b(1)) - 64) * 1_000_000;
        let at = At {
            ts: Timestamp(ts),
            frame: n as u64 + 1,
            file: 0,
        };
        let conn = u64::from(b(2) & 15);
        match b(0) % 7 {
            0 | 1 => {
                let _ = p.request(Request {
                    conn,
                    client: ep(b(3)),
                    server: ep(b(4)),
                    at,
                    size: (b(5) & 1 == 0)
                        .then(|| (u32::from(b(5)), u32::from(b(5)) + u32::from(b(3) & 7))),
                    text: (b(5) & 2 == 0).then(|| u64::from(b(4))),
                });
            }
            2 => p.response(conn, at),
            3 => p.client_closed(conn, at),
            4 => p.closed(conn),
            5 => p.greeting(
                ep(b(3)),
                if b(4) & 1 == 0 {
                    "5.5.30 (ProxySQL)"
                } else {
                    "8.0.36"
                },
            ),
            _ => {
                let _ = p.take(conn);
            }
        }
        let _ = p.relayed_others(conn);
    }
    let _ = p.pairs();
    let (reqs, waiting, scores, lists, _) = p.footprint();
    assert!(reqs <= 16_384 && waiting <= 1024 && scores <= 4096 && lists <= 16_384);
});
