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

const SERVER: Side = Side::B;
// The wire values, to build packets with.
const CLIENT_PROTOCOL_41: u32 = CapabilityFlags::CLIENT_PROTOCOL_41.bits();
const CLIENT_SSL: u32 = CapabilityFlags::CLIENT_SSL.bits();
const CLIENT_SECURE_CONNECTION: u32 = CapabilityFlags::CLIENT_SECURE_CONNECTION.bits();
const CLIENT_PLUGIN_AUTH: u32 = CapabilityFlags::CLIENT_PLUGIN_AUTH.bits();
const CLIENT_DEPRECATE_EOF: u32 = CapabilityFlags::CLIENT_DEPRECATE_EOF.bits();
const CLIENT_QUERY_ATTRIBUTES: u32 = CapabilityFlags::CLIENT_QUERY_ATTRIBUTES.bits();
const CLIENT: Side = Side::A;

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
            cmd: COM_STMT_EXECUTE,
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

/// Capabilities of the MySQL 8.0.29 login in `mysql8-query-attributes.pcap` (frame 6, client
/// 0x19ffa685 with the server's 0xdfffffff): CLIENT_QUERY_ATTRIBUTES and DEPRECATE_EOF set.
const CAPS8: u32 = 0x19ff_a685;

fn login8(d: &mut Decoder, out: &mut Vec<Event>) {
    login(d, out, CAPS8 | CLIENT_PLUGIN_AUTH);
}

fn command_of(e: &Event) -> (Option<&str>, &[QueryAttr], Option<&str>) {
    match &e.kind {
        Kind::Command {
            text, attrs, user, ..
        } => (text.as_deref(), attrs, user.as_deref()),
        other => panic!("not a command: {other:?}"),
    }
}

fn attr(name: &str, type_name: &'static str, value: Option<&str>) -> QueryAttr {
    QueryAttr {
        name: name.into(),
        type_name,
        value: value.map(Into::into),
    }
}

#[test]
fn query_attributes_are_decoded_and_the_sql_kept_clean() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login8(&mut d, &mut out);
    assert!(d.caps().bits() & CLIENT_QUERY_ATTRIBUTES != 0);
    // Frame 12 of mysql8-query-attributes.pcap: count 0, set count 1, then the SQL.
    let q0 = b"\x03\x00\x01select @@version_comment limit 1";
    d.data(CLIENT, &pkt(0, q0), at(4), &mut out);
    let (text, attrs, _) = command_of(out.last().unwrap());
    assert_eq!(text, Some("select @@version_comment limit 1"));
    assert!(attrs.is_empty());
    d.data(SERVER, &pkt(1, &[0, 0, 0, 2, 0, 0, 0]), at(5), &mut out);
    // Frame 16: two string attributes n1=v1, n2=v2 (types 0xfe00), no NULLs.
    let q2 = b"\x03\x02\x01\x00\x01\xfe\x00\x02n1\xfe\x00\x02n2\x02v1\x02v2select now()";
    d.data(CLIENT, &pkt(0, q2), at(6), &mut out);
    let (text, attrs, _) = command_of(out.last().unwrap());
    assert_eq!(text, Some("select now()"));
    assert_eq!(
        attrs,
        [
            attr("n1", "string", Some("v1")),
            attr("n2", "string", Some("v2"))
        ]
    );
    // The same bytes without the capability negotiated are SQL (the server would say so).
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    login(&mut d, &mut out, CAPS);
    d.data(CLIENT, &pkt(0, q0), at(4), &mut out);
    let (text, attrs, _) = command_of(out.last().unwrap());
    assert_eq!(text, Some("\0\u{1}select @@version_comment limit 1"));
    assert!(attrs.is_empty());
}

#[test]
fn typed_and_null_query_attributes() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login8(&mut d, &mut out);
    // Three attributes: a LONGLONG -2, a DATETIME, a NULL string (bit 2 of the null bitmap),
    // an unsigned TINY 200; values in the binary protocol encoding.
    let mut q = vec![0x03, 4, 1, 0b0000_0100, 1];
    q.extend_from_slice(b"\x08\x00\x01a\x0c\x00\x01b\xfe\x00\x01c\x01\x80\x01d");
    q.extend_from_slice(&(-2i64).to_le_bytes());
    q.extend_from_slice(&[7, 0xe8, 0x07, 12, 2, 1, 2, 3]);
    q.push(200);
    q.extend_from_slice(b"SELECT 1");
    d.data(CLIENT, &pkt(0, &q), at(4), &mut out);
    let (text, attrs, _) = command_of(out.last().unwrap());
    assert_eq!(text, Some("SELECT 1"));
    assert_eq!(
        attrs,
        [
            attr("a", "longlong", Some("-2")),
            attr("b", "datetime", Some("2024-12-02 01:02:03")),
            attr("c", "string", None),
            attr("d", "tiny", Some("200")),
        ]
    );
    // A block that runs past the packet is not attributes: the text is shown as sent.
    let cut = b"\x03\x01\x01\x00\x01\xfe\x00\x05name";
    d.data(CLIENT, &pkt(0, cut), at(5), &mut out);
    let (text, attrs, _) = command_of(out.last().unwrap());
    assert!(attrs.is_empty());
    assert_eq!(text, Some("\u{1}\u{1}\0\u{1}\u{fffd}\0\u{5}name"));
}

#[test]
fn query_attributes_mid_stream_by_their_shape() {
    let q2 = b"\x03\x02\x01\x00\x01\xfe\x00\x02n1\xfe\x00\x02n2\x02v1\x02v2select now()";
    for (bytes, want_text, want_attrs) in [
        (&b"\x03\x00\x01select 1"[..], "select 1", 0),
        (&q2[..], "select now()", 2),
        // SQL as usual.
        (&b"\x03select 1"[..], "select 1", 0),
        // Starts like attributes but the SQL after them would start with a control byte.
        (&b"\x03\x00\x01\x02x"[..], "\0\u{1}\u{2}x", 0),
        // Count 1, but no block follows.
        (&b"\x03\x01\x01"[..], "\u{1}\u{1}", 0),
    ] {
        let mut d = Decoder::new(SERVER, Phase::Command);
        let mut out = Vec::new();
        d.data(CLIENT, &pkt(0, bytes), at(1), &mut out);
        let (text, attrs, _) = command_of(&out[0]);
        assert_eq!(text, Some(want_text), "{bytes:?}");
        assert_eq!(attrs.len(), want_attrs, "{bytes:?}");
    }
}

#[test]
fn execute_attributes_follow_the_placeholders() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login8(&mut d, &mut out);
    d.data(CLIENT, &pkt(0, b"\x16SELECT ?"), at(4), &mut out);
    // PREPARE OK: id 7, 1 column, 1 param; DEPRECATE_EOF: the definitions without EOFs.
    let mut resp = pkt(1, &[0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    resp.extend(pkt(2, b"param"));
    resp.extend(pkt(3, b"column"));
    d.data(SERVER, &resp, at(5), &mut out);
    assert!(d.facts.in_flight.is_none());
    // EXECUTE id 7, flags PARAMETER_COUNT_AVAILABLE, iteration 1, count 2 (1 placeholder + 1
    // attribute), null bitmap 0, bound, types LONG "" and STRING "trace", values 42, "abc".
    let mut exec = vec![
        0x17,
        7,
        0,
        0,
        0,
        PARAMETER_COUNT_AVAILABLE,
        1,
        0,
        0,
        0,
        2,
        0,
        1,
    ];
    exec.extend_from_slice(b"\x03\x00\x00\xfe\x00\x05trace");
    exec.extend_from_slice(&42u32.to_le_bytes());
    exec.extend_from_slice(b"\x03abc");
    d.data(CLIENT, &pkt(0, &exec), at(6), &mut out);
    let (_, attrs, _) = command_of(out.last().unwrap());
    assert_eq!(attrs, [attr("trace", "string", Some("abc"))]);
    // Without the flag the count is the placeholders': no attributes.
    exec[5] = 0;
    d.data(CLIENT, &pkt(0, &exec), at(7), &mut out);
    let (_, attrs, _) = command_of(out.last().unwrap());
    assert!(attrs.is_empty());
}

/// Frames 13-16 of mysql8-change-user.pcap (MySQL 8.4, connector-python), attributes cut.
#[test]
fn change_user_switches_the_user_and_its_auth_is_not_commands() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login(
        &mut d,
        &mut out,
        CAPS | CLIENT_PLUGIN_AUTH | CLIENT_SECURE_CONNECTION,
    );
    out.clear();
    let mut cu = b"\x11root2\0\x20".to_vec();
    cu.extend_from_slice(&[0x4e; 32]);
    cu.extend_from_slice(b"\0\xff\0caching_sha2_password\0");
    d.data(CLIENT, &pkt(0, &cu), at(13), &mut out);
    let mut sw = b"\xfemysql_native_password\0".to_vec();
    sw.extend_from_slice(&[0x11; 20]);
    sw.push(0);
    d.data(SERVER, &pkt(1, &sw), at(14), &mut out);
    d.data(CLIENT, &pkt(2, &[0x15; 20]), at(15), &mut out);
    assert_eq!(d.facts.user.as_deref(), Some("app"), "not before the OK");
    d.data(SERVER, &pkt(3, &[0, 0, 0, 2, 0, 0, 0]), at(16), &mut out);
    d.data(CLIENT, &pkt(0, b"\x03SET autocommit=0"), at(17), &mut out);
    assert_eq!(
        names(&out),
        [
            "mysql.com_change_user",
            "mysql.auth_switch",
            "mysql.auth_response",
            "mysql.ok",
            "mysql.com_query"
        ]
    );
    assert_eq!(command_of(&out[0]).2, Some("root2"));
    assert!(matches!(
        out[2].kind,
        Kind::AuthResponse {
            what: "auth_switch_response",
            len: 20
        }
    ));
    assert!(matches!(out[3].kind, Kind::Ok { login: true, .. }));
    assert_eq!(d.facts.user.as_deref(), Some("root2"));
    assert_eq!(d.facts.previous_user.as_deref(), Some("app"));
    assert_eq!(d.facts.database, None);
    assert_eq!(
        d.facts.auth_plugin.as_deref(),
        Some("mysql_native_password")
    );
    assert_eq!(d.facts.commands, 2);
    // A refused change keeps the user.
    d.data(SERVER, &pkt(1, &[0, 0, 0, 2, 0, 0, 0]), at(18), &mut out);
    let mut cu = b"\x11eve\0\x00shop\0\xff\0".to_vec();
    cu.extend_from_slice(b"mysql_native_password\0");
    d.data(CLIENT, &pkt(0, &cu), at(19), &mut out);
    d.data(
        SERVER,
        &pkt(1, b"\xff\x15\x04#28000Access denied"),
        at(20),
        &mut out,
    );
    assert_eq!(d.facts.user.as_deref(), Some("root2"));
    assert!(d.facts.in_flight.is_none());
    // COM_RESET_CONNECTION: an OK, nothing else changes.
    d.data(CLIENT, &pkt(0, &[COM_RESET_CONNECTION.0]), at(21), &mut out);
    d.data(SERVER, &pkt(1, &[0, 0, 0, 2, 0, 0, 0]), at(22), &mut out);
    assert!(d.facts.in_flight.is_none());
    assert_eq!(out.last().unwrap().kind.name(), "mysql.ok");
}

#[test]
fn err_without_greeting_reads_the_sqlstate_marker() {
    let mut d = Decoder::new(SERVER, Phase::Command);
    let mut out = Vec::new();
    d.data(CLIENT, &pkt(0, b"\x03select * from t"), at(1), &mut out);
    d.data(
        SERVER,
        &pkt(1, b"\xff\x16\x04#3D000No database selected"),
        at(2),
        &mut out,
    );
    assert!(matches!(
        &out[1].kind,
        Kind::Err { code: 1046, sqlstate, message, .. }
            if sqlstate == "3D000" && message == "No database selected"
    ));
    // A `#` not followed by a SQLSTATE is message text (pre-4.1 layout).
    d.data(SERVER, &pkt(0, b"\xff\x16\x04#no state"), at(3), &mut out);
    assert!(matches!(
        &out[2].kind,
        Kind::Err { sqlstate, message, .. } if sqlstate.is_empty() && message == "#no state"
    ));
}

/// caching_sha2_password full authentication with the RSA key exchange (MySQL 8 docs,
/// `page_caching_sha2_authentication_exchanges`).
#[test]
fn caching_sha2_full_authentication_is_auth_not_commands() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    d.data(
        SERVER,
        &greeting(CAPS | CLIENT_PLUGIN_AUTH),
        at(1),
        &mut out,
    );
    let mut r = Vec::new();
    r.extend_from_slice(&(CAPS | CLIENT_PLUGIN_AUTH).to_le_bytes());
    r.extend_from_slice(&(1u32 << 24).to_le_bytes());
    r.push(33);
    r.extend_from_slice(&[0; 23]);
    r.extend_from_slice(b"app\0\x20");
    r.extend_from_slice(&[7; 32]);
    r.extend_from_slice(b"caching_sha2_password\0");
    d.data(CLIENT, &pkt(1, &r), at(2), &mut out);
    d.data(
        SERVER,
        &pkt(2, &[AUTH_MORE_DATA, PERFORM_FULL_AUTHENTICATION]),
        at(3),
        &mut out,
    );
    d.data(CLIENT, &pkt(3, &[REQUEST_PUBLIC_KEY]), at(4), &mut out);
    let key = b"\x01-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----\n";
    d.data(SERVER, &pkt(4, key), at(5), &mut out);
    d.data(CLIENT, &pkt(5, &[0x5a; 256]), at(6), &mut out);
    d.data(SERVER, &pkt(6, &[0, 0, 0, 2, 0, 0, 0]), at(7), &mut out);
    assert_eq!(
        names(&out),
        [
            "mysql.greeting",
            "mysql.handshake_response",
            "mysql.auth_more_data",
            "mysql.auth_response",
            "mysql.auth_more_data",
            "mysql.auth_response",
            "mysql.ok"
        ]
    );
    let whats: Vec<String> = out
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::AuthMoreData { what } => Some(format!("s:{}", what.unwrap_or("?"))),
            Kind::AuthResponse { what, .. } => Some(format!("c:{what}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        whats,
        [
            "s:perform_full_authentication",
            "c:public_key_request",
            "s:public_key",
            "c:password"
        ]
    );
    assert_eq!(d.phase(), Phase::Command);
    assert_eq!(d.facts.commands, 0);
    assert_eq!(d.facts.login_ok, Some(true));
}

#[test]
fn binlog_dump_stream_is_labelled_not_decoded() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login(&mut d, &mut out, CAPS);
    out.clear();
    // COM_BINLOG_DUMP: position 4, flags 1 (non-blocking), server id 2, file name.
    d.data(
        CLIENT,
        &pkt(0, b"\x12\x04\0\0\0\x01\0\x02\0\0\0binlog.000001"),
        at(4),
        &mut out,
    );
    // Binlog events are OK-byte prefixed; one looks like an ERR-free column count.
    let mut resp = Vec::new();
    for (i, ev) in [
        &[0u8, 0, 0, 0, 0, 4][..],
        &[0, 1, 2, 3],
        &[0, 0xfe, 9, 9, 9, 9, 9, 9, 9, 9],
    ]
    .iter()
    .enumerate()
    {
        resp.extend(pkt(i as u8 + 1, ev));
    }
    resp.extend(pkt(4, &[0xfe, 0, 0, 2, 0]));
    d.data(SERVER, &resp, at(5), &mut out);
    assert_eq!(
        names(&out),
        ["mysql.com_binlog_dump", "mysql.binlog_stream", "mysql.eof"]
    );
    assert_eq!(d.facts.binlog_events, 3);
    assert!(d.facts.in_flight.is_none());
}

#[test]
fn local_infile_is_followed_to_its_ok() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login(&mut d, &mut out, CAPS);
    out.clear();
    let q = b"\x03LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t";
    d.data(CLIENT, &pkt(0, q), at(4), &mut out);
    d.data(SERVER, &pkt(1, b"\xfb/tmp/x.csv"), at(5), &mut out);
    d.data(CLIENT, &pkt(2, b"1,a\n2,b\n"), at(6), &mut out);
    d.data(CLIENT, &pkt(3, b"3,c\n"), at(7), &mut out);
    d.data(CLIENT, &pkt(4, b""), at(8), &mut out);
    assert!(d.facts.in_flight.is_some());
    d.data(SERVER, &pkt(5, &[0, 3, 0, 2, 0, 0, 0]), at(9), &mut out);
    assert_eq!(
        names(&out),
        [
            "mysql.com_query",
            "mysql.local_infile",
            "mysql.infile_data",
            "mysql.ok"
        ]
    );
    assert!(matches!(&out[1].kind, Kind::LocalInfile { file } if file == "/tmp/x.csv"));
    assert!(matches!(
        out[2].kind,
        Kind::InfileData {
            bytes: 12,
            packets: 2
        }
    ));
    assert!(matches!(
        out[3].kind,
        Kind::Ok {
            affected_rows: 3,
            ..
        }
    ));
    assert!(d.facts.in_flight.is_none());
    assert_eq!(d.facts.commands, 1);
}

#[test]
fn eof_responses_are_events() {
    let mut d = Decoder::new(SERVER, Phase::Greeting);
    let mut out = Vec::new();
    login(&mut d, &mut out, CAPS);
    out.clear();
    // COM_SET_OPTION (0x1b) multi-statements off: an EOF answers (warnings 0, status 2).
    d.data(CLIENT, &pkt(0, &[0x1b, 1, 0]), at(4), &mut out);
    d.data(SERVER, &pkt(1, &[0xfe, 0, 0, 2, 0]), at(5), &mut out);
    // COM_FIELD_LIST: one definition then EOF with a warning.
    d.data(CLIENT, &pkt(0, b"\x04t\0"), at(6), &mut out);
    let mut resp = pkt(1, b"\x03def\0\0\0\x01a\0\x0c?\0\x01\0\0\0\x08\x81\0\0\0\0");
    resp.extend(pkt(2, &[0xfe, 1, 0, 2, 0]));
    d.data(SERVER, &resp, at(7), &mut out);
    let eofs: Vec<(u16, u16)> = out
        .iter()
        .filter_map(|e| match e.kind {
            Kind::Eof { warnings, status } => Some((warnings, status.bits())),
            _ => None,
        })
        .collect();
    assert_eq!(eofs, [(0, 2), (1, 2)]);
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
