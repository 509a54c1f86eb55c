//! Record framing and the handshake on hand-made records; real handshakes are checked against
//! tshark on the captures.
//! Compiled only under #[cfg(test)] (declared so in the parent module).

use super::*;
use crate::time::Timestamp;

fn at() -> At {
    At {
        ts: Timestamp(0),
        frame: 1,
        file: 0,
    }
}

fn record(t: TlsRecordType, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t.0, 3, 3, (body.len() >> 8) as u8, body.len() as u8];
    v.extend_from_slice(body);
    v
}

fn handshake(t: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut v = vec![t, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    v.extend_from_slice(body);
    v
}

fn server_hello(version_ext: Option<u16>, cipher: u16) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.push(0);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    if let Some(v) = version_ext {
        let ext = [0x00, 0x2b, 0x00, 0x02, (v >> 8) as u8, v as u8];
        b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        b.extend_from_slice(&ext);
    }
    handshake(2, &b)
}

#[test]
fn tls13_server_hello_then_everything_is_encrypted() {
    let mut d = Decoder::new(crate::common::Side::A, true);
    let mut out = Vec::new();
    let mut bytes = record(HANDSHAKE, &server_hello(Some(0x0304), 0x1302));
    bytes.extend(record(CHANGE_CIPHER_SPEC, &[1]));
    bytes.extend(record(APPLICATION_DATA, &[0; 40]));
    // Byte by byte: framing must not depend on segment boundaries.
    for b in &bytes {
        d.data(
            crate::common::Side::B,
            std::slice::from_ref(b),
            at(),
            &mut out,
        );
    }
    let names: Vec<String> = out.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        ["tls.server_hello", "tls.change_cipher_spec", "tls.app_data"]
    );
    assert_eq!(d.facts.version, Some(TlsVersion::Tls13));
    assert_eq!(d.facts.cipher, Some(TlsCipherSuiteID(0x1302)));
    // The client's last record before its FIN: 22 bytes = 5 of MySQL + 17 of AEAD.
    d.data(
        crate::common::Side::A,
        &record(APPLICATION_DATA, &[0; 22]),
        at(),
        &mut out,
    );
    d.fin(crate::common::Side::A, &mut out);
    assert!(matches!(
        out.last().unwrap().kind,
        Kind::InferredClose {
            what: "com_quit",
            inner_len: 5
        }
    ));
    // The server's: 19 = an alert.
    d.data(
        crate::common::Side::B,
        &record(APPLICATION_DATA, &[0; 19]),
        at(),
        &mut out,
    );
    d.fin(crate::common::Side::B, &mut out);
    assert!(matches!(
        out.last().unwrap().kind,
        Kind::InferredClose { inner_len: 2, .. }
    ));
}

#[test]
fn tls12_alerts_plain_and_encrypted() {
    let mut d = Decoder::new(crate::common::Side::A, true);
    let mut out = Vec::new();
    d.data(
        crate::common::Side::B,
        &record(HANDSHAKE, &server_hello(None, 0xc02c)),
        at(),
        &mut out,
    );
    d.data(
        crate::common::Side::A,
        &record(ALERT, &[1, 0]),
        at(),
        &mut out,
    );
    d.data(
        crate::common::Side::A,
        &record(CHANGE_CIPHER_SPEC, &[1]),
        at(),
        &mut out,
    );
    d.data(
        crate::common::Side::A,
        &record(HANDSHAKE, &[0; 40]),
        at(),
        &mut out,
    );
    d.data(
        crate::common::Side::A,
        &record(ALERT, &[0; 26]),
        at(),
        &mut out,
    );
    let names: Vec<String> = out.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "tls.server_hello",
            "tls.close_notify",
            "tls.change_cipher_spec",
            "tls.encrypted_handshake",
            "tls.encrypted_alert"
        ]
    );
    assert_eq!(d.facts.version, Some(TlsVersion::Tls12));
}

#[test]
fn plaintext_com_quit_in_tls_is_an_event_not_a_failure() {
    let mut d = Decoder::new(crate::common::Side::A, true);
    let mut out = Vec::new();
    d.data(
        crate::common::Side::A,
        &record(APPLICATION_DATA, &[0; 30]),
        at(),
        &mut out,
    );
    d.data(crate::common::Side::A, &[1, 0, 0, 0, 1], at(), &mut out);
    assert!(matches!(
        &out.last().unwrap().kind,
        Kind::PlaintextInTls { mysql: Some(crate::event::Com::QUIT), hex } if hex == "0100000001"
    ));
    // Records resume at the next slice that starts with one.
    d.data(
        crate::common::Side::A,
        &record(APPLICATION_DATA, &[0; 3]),
        at(),
        &mut out,
    );
    assert!(matches!(
        out.last().unwrap().kind,
        Kind::AppData { len: 3, .. }
    ));
}

#[test]
fn handshake_split_across_records() {
    let mut d = Decoder::new(crate::common::Side::A, false);
    let mut out = Vec::new();
    let msg = server_hello(None, 0x009c);
    d.data(
        crate::common::Side::B,
        &record(HANDSHAKE, &msg[..10]),
        at(),
        &mut out,
    );
    assert!(out.is_empty());
    d.data(
        crate::common::Side::B,
        &record(HANDSHAKE, &msg[10..]),
        at(),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(d.facts.cipher, Some(TlsCipherSuiteID(0x009c)));
}

#[test]
fn gap_inside_a_record_keeps_framing_and_over_a_header_resyncs() {
    let mut d = Decoder::new(crate::common::Side::A, true);
    let mut out = Vec::new();
    let r = record(APPLICATION_DATA, &[0; 100]);
    d.data(crate::common::Side::A, &r[..40], at(), &mut out);
    d.gap(crate::common::Side::A, 30, at(), &mut out);
    d.data(crate::common::Side::A, &r[70..], at(), &mut out);
    assert!(matches!(
        out.last().unwrap().kind,
        Kind::AppData { len: 100, .. }
    ));
    d.gap(crate::common::Side::A, 10, at(), &mut out);
    assert!(matches!(out.last().unwrap().kind, Kind::TlsDesync));
    d.data(crate::common::Side::A, &r[20..], at(), &mut out);
    assert!(matches!(out.last().unwrap().kind, Kind::TlsDesync));
    d.data(
        crate::common::Side::A,
        &record(APPLICATION_DATA, &[1; 5]),
        at(),
        &mut out,
    );
    let names: Vec<String> = out.iter().rev().take(2).map(|e| e.kind.name()).collect();
    assert_eq!(names, ["tls.app_data", "tls.resync"]);
}

#[test]
fn extension_lookup_walks_the_block() {
    // SNI (0) with 5 bytes of data, then encrypt_then_mac (22), empty.
    let block = [0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 22, 0, 0];
    assert!(has_extension(Some(&block), EXT_ENCRYPT_THEN_MAC));
    assert!(!has_extension(Some(&block[..9]), EXT_ENCRYPT_THEN_MAC));
    // The type inside another extension's data does not count; a length past the end stops.
    assert!(!has_extension(Some(&[0, 0, 0, 4, 0, 22, 0, 0]), 22));
    assert!(!has_extension(Some(&[0, 1, 0xff, 0xff, 0, 22, 0, 0]), 22));
    assert!(!has_extension(None, 22));
}
