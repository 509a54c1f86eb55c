//! The decoder on packet sequences built from the protocol documentation; the captures in
//! `captures/` test it against tshark.
//! Compiled only under #[cfg(test)] (declared so in the parent module).

use super::*;
use crate::time::Timestamp;

fn at(frame: u64) -> At {
    At {
        ts: Timestamp(frame as i64),
        frame,
        file: 0,
    }
}

fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
    v.extend_from_slice(payload);
    v
}

const SERVER: usize = 1;
const CLIENT: usize = 0;

fn greeting(caps: u32) -> Vec<u8> {
    let mut g = vec![0x0a];
    g.extend_from_slice(b"10.11.6-MariaDB\0");
    g.extend_from_slice(&42u32.to_le_bytes());
    g.extend_from_slice(b"abcdefgh\0");
    g.extend_from_slice(&(caps as u16).to_le_bytes());
    g.push(33);
    g.extend_from_slice(&2u16.to_le_bytes());
    g.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    g.push(21);
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(b"ijklmnopqrst\0");
    g.extend_from_slice(b"mysql_native_password\0");
    pkt(0, &g)
}

fn login(d: &mut Decoder, out: &mut Vec<Event>, caps: u32) {
    d.data(SERVER, &greeting(caps), at(1), out);
    let mut r = Vec::new();
    r.extend_from_slice(&caps.to_le_bytes());
    r.extend_from_slice(&(1u32 << 24).to_le_bytes());
    r.push(33);
    r.extend_from_slice(&[0; 23]);
    r.extend_from_slice(b"app\0");
    r.push(20);
    r.extend_from_slice(&[1; 20]);
    r.extend_from_slice(b"shop\0");
    r.extend_from_slice(b"mysql_native_password\0");
    d.data(CLIENT, &pkt(1, &r), at(2), out);
    d.data(SERVER, &pkt(2, &[0, 0, 0, 2, 0, 0, 0]), at(3), out);
}

const CAPS: u32 = 0x0000_a28d | CLIENT_PROTOCOL_41 | 0x0008 | 0x0001_0000 | 0x0002_0000;

fn names(out: &[Event]) -> Vec<String> {
    out.iter().map(|e| e.kind.name()).collect()
}

#[test]
fn plaintext_login_query_and_quit() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login(&mut d, &mut out, CAPS);
    assert_eq!(d.phase(), Phase::Command);
    assert_eq!(d.facts.thread_id, Some(42));
    assert_eq!(d.facts.user.as_deref(), Some("app"));
    assert_eq!(d.facts.database.as_deref(), Some("shop"));
    // COM_QUERY "SELECT 1": column count 1, one column def, EOF, one row, EOF.
    d.data(CLIENT, &pkt(0, b"\x03SELECT 1"), at(4), &mut out);
    assert_eq!(
        d.facts.in_flight.as_ref().map(|f| f.command),
        Some("com_query")
    );
    let mut resp = pkt(1, &[1]);
    resp.extend(pkt(
        2,
        b"\x03def\0\0\0\x011\0\x0c?\0\x01\0\0\0\x08\x81\0\0\0\0",
    ));
    resp.extend(pkt(3, &[0xfe, 0, 0, 2, 0]));
    resp.extend(pkt(4, b"\x011"));
    resp.extend(pkt(5, &[0xfe, 0, 0, 2, 0]));
    // Split mid-way: the response is not complete until its last byte.
    d.data(SERVER, &resp[..20], at(5), &mut out);
    assert!(d.facts.in_flight.is_some());
    d.data(SERVER, &resp[20..], at(6), &mut out);
    assert!(d.facts.in_flight.is_none());
    d.data(CLIENT, &pkt(0, &[1]), at(7), &mut out);
    assert_eq!(d.facts.quit_frame, Some(7));
    assert_eq!(
        names(&out),
        [
            "mysql.greeting",
            "mysql.handshake_response",
            "mysql.ok",
            "mysql.com_query",
            "mysql.result_set",
            "mysql.com_quit"
        ]
    );
    assert!(matches!(
        out[4].kind,
        Kind::ResultSet {
            columns: 1,
            rows: 1,
            more: false
        }
    ));
}

#[test]
fn ssl_request_switches_to_tls_mid_slice() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    d.data(SERVER, &greeting(CAPS | CLIENT_SSL), at(1), &mut out);
    let mut ssl = Vec::new();
    ssl.extend_from_slice(&(CAPS | CLIENT_SSL).to_le_bytes());
    ssl.extend_from_slice(&[0; 28]);
    let mut bytes = pkt(1, &ssl);
    bytes.extend_from_slice(&[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0]);
    assert_eq!(d.data(CLIENT, &bytes, at(2), &mut out), Some(36));
    assert_eq!(d.phase(), Phase::Tls);
    assert!(d.facts.ssl_request);
}

#[test]
fn login_error_and_unsolicited_error() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    d.data(SERVER, &greeting(CAPS), at(1), &mut out);
    d.data(CLIENT, &pkt(1, &[0; 40]), at(2), &mut out);
    let err = b"\xff\x15\x04#28000Access denied for user 'app'@'localhost'";
    d.data(SERVER, &pkt(2, err), at(3), &mut out);
    assert_eq!(d.facts.login_ok, Some(false));
    assert!(matches!(
        &out.last().unwrap().kind,
        Kind::Err {
            code: 1045,
            login: true,
            ..
        }
    ));

    let mut d = Decoder::new(SERVER, Phase::Command);
    let mut out = Vec::new();
    let err = b"\xff\xbf\x0f#HY000The client was disconnected by the server because of inactivity";
    d.data(SERVER, &pkt(0, err), at(9), &mut out);
    assert!(matches!(
        &out[0].kind,
        Kind::Err {
            code: 4031,
            unsolicited: true,
            ..
        }
    ));
}

#[test]
fn deprecate_eof_result_and_more_results() {
    let caps = CAPS | CLIENT_DEPRECATE_EOF;
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login(&mut d, &mut out, caps);
    d.data(CLIENT, &pkt(0, b"\x03SELECT 1; SELECT 2"), at(4), &mut out);
    // First result: 1 column, 1 row, OK terminator (0xfe) with MORE_RESULTS.
    let mut resp = pkt(1, &[1]);
    resp.extend(pkt(
        2,
        b"\x03def\0\0\0\x011\0\x0c?\0\x01\0\0\0\x08\x81\0\0\0\0",
    ));
    resp.extend(pkt(3, b"\x011"));
    resp.extend(pkt(4, &[0xfe, 0, 0, 0x0a, 0, 0, 0]));
    resp.extend(pkt(5, &[1]));
    resp.extend(pkt(
        6,
        b"\x03def\0\0\0\x012\0\x0c?\0\x01\0\0\0\x08\x81\0\0\0\0",
    ));
    resp.extend(pkt(7, b"\x012"));
    resp.extend(pkt(8, &[0xfe, 0, 0, 0x02, 0, 0, 0]));
    d.data(SERVER, &resp, at(5), &mut out);
    let sets: Vec<_> = out
        .iter()
        .filter(|e| matches!(e.kind, Kind::ResultSet { .. }))
        .collect();
    assert_eq!(sets.len(), 2);
    assert!(matches!(sets[0].kind, Kind::ResultSet { more: true, .. }));
    assert!(d.facts.in_flight.is_none());
}

#[test]
fn prepared_statement_definitions_are_skipped() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login(&mut d, &mut out, CAPS);
    d.data(CLIENT, &pkt(0, b"\x16SELECT ?"), at(4), &mut out);
    let mut resp = pkt(1, &[0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    resp.extend(pkt(2, b"param"));
    resp.extend(pkt(3, &[0xfe, 0, 0, 2, 0]));
    resp.extend(pkt(4, b"column"));
    resp.extend(pkt(5, &[0xfe, 0, 0, 2, 0]));
    d.data(SERVER, &resp, at(5), &mut out);
    assert!(d.facts.in_flight.is_none());
    assert!(out.iter().any(|e| matches!(
        e.kind,
        Kind::StmtPrepared {
            stmt_id: 7,
            columns: 1,
            params: 1
        }
    )));
    let mut exec = vec![0x17];
    exec.extend_from_slice(&7u32.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 0, 0, 0]);
    d.data(CLIENT, &pkt(0, &exec), at(6), &mut out);
    assert!(matches!(
        out.last().unwrap().kind,
        Kind::Command {
            cmd: 0x17,
            stmt_id: Some(7),
            ..
        }
    ));
}

#[test]
fn greeting_that_would_overflow_mysql_common_is_parsed_by_hand() {
    let mut g = greeting(CAPS);
    // auth_plugin_data_len sits 20 bytes after the version's NUL (+4 header).
    let off = 4 + 1 + "10.11.6-MariaDB".len() + 1 + 20;
    g[off] = 0x80;
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    d.data(SERVER, &g, at(1), &mut out);
    assert_eq!(d.facts.server_version.as_deref(), Some("10.11.6-MariaDB"));
    assert_eq!(d.facts.thread_id, Some(42));
}

#[test]
fn mariadb_cached_metadata_sends_no_column_definitions() {
    // Server announces MARIADB_CLIENT_CACHE_METADATA; the client too (CLIENT_MYSQL clear).
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    let mut g = greeting(CAPS & !1);
    let ext = 4 + 1 + "10.11.6-MariaDB".len() + 1 + 27;
    g[ext] = 0x10;
    d.data(SERVER, &g, at(1), &mut out);
    let mut r = Vec::new();
    r.extend_from_slice(&(CAPS & !1).to_le_bytes());
    r.extend_from_slice(&(1u32 << 24).to_le_bytes());
    r.push(33);
    r.extend_from_slice(&[0; 19]);
    r.extend_from_slice(&0x10u32.to_le_bytes());
    r.extend_from_slice(b"app\0\0");
    d.data(CLIENT, &pkt(1, &r), at(2), &mut out);
    d.data(SERVER, &pkt(2, &[0, 0, 0, 2, 0, 0, 0]), at(3), &mut out);
    assert_eq!(d.facts.mariadb_capabilities, 0x10);
    let mut exec = vec![0x17];
    exec.extend_from_slice(&1u32.to_le_bytes());
    d.data(CLIENT, &pkt(0, &exec), at(4), &mut out);
    // Column count 2, metadata follows = 0, EOF, three rows, EOF.
    let mut resp = pkt(1, &[2, 0]);
    resp.extend(pkt(2, &[0xfe, 0, 0, 2, 0]));
    for i in 0..3u8 {
        resp.extend(pkt(3 + i, &[0, 0, i, 0, 0, 0, 0, 0, 0, 0]));
    }
    resp.extend(pkt(6, &[0xfe, 0, 0, 2, 0]));
    d.data(SERVER, &resp, at(5), &mut out);
    assert!(matches!(
        out.last().unwrap().kind,
        Kind::ResultSet {
            columns: 2,
            rows: 3,
            more: false
        }
    ));
    assert!(d.facts.in_flight.is_none());
}

/// A compressed packet holding `inner`: zlib-deflated, or stored as is.
fn zpkt(seq: u8, inner: &[u8], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let body = if deflate {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(inner).unwrap();
        e.finish().unwrap()
    } else {
        inner.to_vec()
    };
    let ulen = if deflate { inner.len() } else { 0 };
    let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend(&(ulen as u32).to_le_bytes()[..3]);
    v.extend(body);
    v
}

#[test]
fn compressed_connection_picked_up_mid_stream() {
    let mut d = Decoder::new(SERVER, Phase::Command);
    let mut out = Vec::new();
    let query = zpkt(0, &pkt(0, b"\x03SELECT 1"), false);
    let ok = zpkt(1, &pkt(1, &[0, 0, 0, 2, 0, 0, 0]), true);
    // The server's first bytes are the tail of an earlier response: skipped, not misread.
    d.data(SERVER, &ok[5..], at(1), &mut out);
    d.data(CLIENT, &query, at(2), &mut out);
    d.data(SERVER, &ok[3..], at(3), &mut out);
    assert_eq!(names(&out), ["mysql.com_query"]);
    d.data(SERVER, &ok, at(4), &mut out);
    assert_eq!(names(&out), ["mysql.com_query", "mysql.ok"]);
    // A gap breaks the compressed framing (and, as in plain framing, forgets what response
    // was expected); the next slice that starts with a compressed packet finds it again.
    out.clear();
    d.data(CLIENT, &query, at(5), &mut out);
    d.gap(SERVER, 10, at(6), &mut out);
    d.data(SERVER, &ok[2..], at(7), &mut out);
    d.data(SERVER, &ok, at(8), &mut out);
    d.data(CLIENT, &query, at(9), &mut out);
    d.data(SERVER, &ok, at(10), &mut out);
    assert_eq!(
        names(&out),
        [
            "mysql.com_query",
            "mysql.desync",
            "mysql.resync",
            "mysql.com_query",
            "mysql.ok"
        ]
    );
    let f = d.finish();
    assert_eq!(
        f.compression,
        Some(Compression {
            algorithm: Some(Algorithm::Zlib),
            level: None,
            mid_stream: true
        })
    );
}

#[test]
fn plain_connection_picked_up_mid_stream_stays_plain() {
    let mut d = Decoder::new(SERVER, Phase::Command);
    let mut out = Vec::new();
    d.data(CLIENT, &pkt(0, b"\x03SELECT 1"), at(1), &mut out);
    d.data(SERVER, &pkt(1, &[0, 0, 0, 2, 0, 0, 0]), at(2), &mut out);
    assert_eq!(names(&out), ["mysql.com_query", "mysql.ok"]);
    assert_eq!(d.finish().compression, None);
}
