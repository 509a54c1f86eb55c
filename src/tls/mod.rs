//! Stage 4b, TLS: record framing per direction, handshake messages reassembled across records
//! and parsed with tls-parser, alerts, change-cipher-spec and application-data sizes. Without
//! keys, what is encrypted stays opaque; the close is then inferred from record sizes and marked
//! so.

pub mod decrypt;

use std::sync::Arc;

use tls_parser::{
    parse_tls_extensions, parse_tls_message_handshake, parse_tls_server_hello_extensions,
    TlsExtension, TlsMessage, TlsMessageHandshake,
};

use crate::bytes::HeaderBuf;
use crate::event::{Event, Kind};
use crate::tcp::At;

const CHANGE_CIPHER_SPEC: u8 = 0x14;
const ALERT: u8 = 0x15;
const HANDSHAKE: u8 = 0x16;
const APPLICATION_DATA: u8 = 0x17;
const HEARTBEAT: u8 = 0x18;
const HEADER: usize = 5;
/// 2^14 plus the largest expansion RFC 5246 allows.
const MAX_RECORD: usize = (1 << 14) + 2048;
/// Handshake messages larger than this are skipped (a certificate chain fits easily).
const MAX_HANDSHAKE: usize = 1 << 18;
const TLS13: u16 = 0x0304;
/// ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// True if `b` starts with a plausible TLS record header.
pub fn looks_like_record(b: &[u8]) -> bool {
    match (b.first(), b.get(1), b.get(2), b.get(3), b.get(4)) {
        (Some(&t), Some(&3), Some(&minor), Some(&hi), Some(&lo)) => {
            (CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&t)
                && minor <= 4
                && (usize::from(hi) << 8 | usize::from(lo)) <= MAX_RECORD
        }
        _ => false,
    }
}

/// Record counts and bytes of one direction.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Records {
    /// Records seen.
    pub records: u64,
    /// Application-data records.
    pub app_records: u64,
    /// Application-data bytes (record bodies).
    pub app_bytes: u64,
    /// Length of the last application-data record.
    pub last_app_len: Option<u16>,
    /// Alert records that were encrypted.
    pub encrypted_alerts: u64,
    /// Bytes that were not TLS records.
    pub plaintext_events: u64,
}

/// What the TLS decoder learnt.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Facts {
    /// Negotiated version (from the ServerHello's supported_versions, else its version).
    pub version: Option<u16>,
    /// Negotiated cipher suite.
    pub cipher: Option<u16>,
    /// Versions the client offered.
    pub offered_versions: Vec<u16>,
    /// Server name (SNI).
    pub sni: Option<String>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// A HelloRetryRequest was sent.
    pub hello_retry: bool,
    /// First certificate's subject (TLS ≤ 1.2).
    pub certificate_subject: Option<String>,
    /// Plaintext alerts: (side, level, description).
    pub alerts: Vec<(usize, u8, u8)>,
    /// Per side (index = side): records and sizes.
    pub sides: [Records; 2],
    /// The handshake was seen from its start (a ClientHello).
    pub saw_client_hello: bool,
    /// Decryption: `keys` (decrypting), `no keys` (none in the key log for this session),
    /// `unsupported cipher`; None without a key log.
    pub decryption: Option<&'static str>,
    /// Records decrypted, per side.
    pub decrypted: [u64; 2],
}

#[derive(Debug, Default)]
struct Side {
    hdr: HeaderBuf<HEADER>,
    header: [u8; HEADER],
    rtype: u8,
    rlen: u16,
    /// Body bytes of the current record still to come (None: expecting a header).
    remaining: Option<usize>,
    body: Vec<u8>,
    body_lossy: bool,
    hs: Vec<u8>,
    /// Records from this side are encrypted from here on.
    encrypted: bool,
    desynced: bool,
    last: Option<(u8, u16, At)>,
    record_at: Option<At>,
}

/// The TLS decoder of one connection.
pub struct Decoder {
    sides: [Side; 2],
    client: usize,
    mysql: bool,
    keylog: Option<Arc<decrypt::KeyLog>>,
    client_random: Vec<u8>,
    /// Decryptors by side, once the ServerHello and a key log allow.
    dec: Option<[decrypt::Direction; 2]>,
    /// Decrypted application data waiting for the caller: (side, where, bytes).
    plaintext: Vec<(usize, At, Vec<u8>)>,
    /// What is known so far.
    pub facts: Facts,
}

impl Decoder {
    /// A decoder; `client` is the client's side; `mysql` says the TLS carries MySQL (so a
    /// 5-byte last record reads as a COM_QUIT).
    pub fn new(client: usize, mysql: bool) -> Decoder {
        Decoder {
            sides: [Side::default(), Side::default()],
            client: client & 1,
            mysql,
            keylog: None,
            client_random: Vec::new(),
            dec: None,
            plaintext: Vec::new(),
            facts: Facts::default(),
        }
    }

    /// Decrypts what the key log has secrets for.
    pub fn with_keys(mut self, keylog: Option<Arc<decrypt::KeyLog>>) -> Decoder {
        self.keylog = keylog;
        self
    }

    /// Decrypted application data since the last call: (side, where, bytes).
    pub fn take_plaintext(&mut self) -> Vec<(usize, At, Vec<u8>)> {
        std::mem::take(&mut self.plaintext)
    }

    /// Stream bytes from `side`.
    pub fn data(&mut self, side: usize, data: &[u8], at: At, out: &mut Vec<Event>) {
        let side = side & 1;
        let mut d = data;
        if self.sides[side].desynced {
            if !looks_like_record(d) {
                return;
            }
            self.sides[side].desynced = false;
            out.push(Event {
                at,
                side,
                kind: Kind::TlsResync,
            });
        }
        while !d.is_empty() {
            // Per record: a ServerHello earlier in this same slice may just have set up keys.
            let decrypting = self.dec.is_some();
            let s = &mut self.sides[side];
            match s.remaining {
                None => {
                    if s.hdr.is_empty() && d.len() >= HEADER && !looks_like_record(d) {
                        self.plaintext(side, d, at, out);
                        return;
                    }
                    if let Some(hdr) = s.hdr.fill(&mut d) {
                        if !looks_like_record(&hdr) {
                            self.plaintext(side, &hdr, at, out);
                            return;
                        }
                        s.header = hdr;
                        s.rtype = hdr[0];
                        s.rlen = u16::from_be_bytes([hdr[3], hdr[4]]);
                        s.remaining = Some(usize::from(s.rlen));
                        s.body.clear();
                        s.body_lossy = false;
                        s.record_at = Some(at);
                        if s.rlen == 0 {
                            self.record(side, out);
                        }
                    }
                }
                Some(rem) => {
                    let take = rem.min(d.len());
                    // Bodies are kept only where we read them.
                    if matches!(s.rtype, ALERT | CHANGE_CIPHER_SPEC)
                        || (s.rtype == HANDSHAKE && !s.encrypted)
                        || (decrypting && s.encrypted)
                    {
                        s.body.extend_from_slice(d.get(..take).unwrap_or(&[]));
                    }
                    s.remaining = Some(rem - take);
                    d = d.get(take..).unwrap_or(&[]);
                    if rem == take {
                        self.record(side, out);
                    }
                }
            }
        }
    }

    /// `n` bytes from `side` were never captured.
    pub fn gap(&mut self, side: usize, n: u64, at: At, out: &mut Vec<Event>) {
        let side = side & 1;
        let s = &mut self.sides[side];
        match s.remaining {
            Some(rem) if rem as u64 > n => {
                // Inside one record's body: the framing survives.
                s.remaining = Some(rem - n as usize);
                s.body_lossy = true;
            }
            Some(rem) if rem as u64 == n => {
                s.body_lossy = true;
                self.record(side, out);
            }
            _ => {
                let was = s.desynced;
                s.remaining = None;
                s.hdr.clear();
                s.hs.clear();
                s.desynced = true;
                if !was {
                    out.push(Event {
                        at,
                        side,
                        kind: Kind::TlsDesync,
                    });
                }
            }
        }
    }

    /// `side` sent its FIN: say what its last record most likely was, where sizes tell.
    pub fn fin(&mut self, side: usize, out: &mut Vec<Event>) {
        let side = side & 1;
        if self.sides[side].desynced || self.dec.is_some() {
            // Nothing to infer when the records were read.
            return;
        }
        let Some((APPLICATION_DATA, len, at)) = self.sides[side].last else {
            return;
        };
        let Some(overhead) = self.aead_overhead() else {
            return;
        };
        let Some(inner) = len.checked_sub(overhead) else {
            return;
        };
        let what = match inner {
            2 => "alert (close_notify or fatal)",
            5 if self.mysql && side == self.client => "com_quit",
            _ => return,
        };
        out.push(Event {
            at,
            side,
            kind: Kind::InferredClose {
                what,
                inner_len: inner,
            },
        });
    }

    /// Bytes an AEAD record adds to its plaintext, for the negotiated version and cipher.
    fn aead_overhead(&self) -> Option<u16> {
        let cipher = self.facts.cipher?;
        let name = crate::event::cipher_name(cipher);
        if self.facts.version? == TLS13 {
            // Inner content type byte plus a 16-byte tag (8 for CCM_8).
            return Some(if name.ends_with("CCM_8_SHA256") {
                9
            } else {
                17
            });
        }
        if name.contains("CHACHA20") {
            Some(16)
        } else if name.contains("_GCM_") || (name.contains("_CCM") && !name.contains("CCM_8")) {
            Some(24)
        } else {
            None
        }
    }

    fn plaintext(&mut self, side: usize, d: &[u8], at: At, out: &mut Vec<Event>) {
        let s = &mut self.sides[side];
        s.desynced = true;
        s.hs.clear();
        self.facts.sides[side].plaintext_events += 1;
        let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let mysql = if crate::mysql::framer::exact_chain(d, true) {
            d.get(4).map(|&c| crate::event::command_name(c))
        } else {
            None
        };
        out.push(Event {
            at,
            side,
            kind: Kind::PlaintextInTls { hex, mysql },
        });
    }

    fn record(&mut self, side: usize, out: &mut Vec<Event>) {
        let s = &mut self.sides[side];
        s.remaining = None;
        let at = s.record_at.unwrap_or(At {
            ts: crate::time::Timestamp(0),
            frame: 0,
            file: 0,
        });
        let (rtype, rlen, encrypted, header) = (s.rtype, s.rlen, s.encrypted, s.header);
        let body = std::mem::take(&mut s.body);
        let lossy = s.body_lossy;
        if encrypted && rtype != CHANGE_CIPHER_SPEC && !lossy {
            if let Some(dec) = self.dec.as_mut() {
                if let Some(opened) = dec[side].open(&header, &body) {
                    self.facts.decrypted[side] += 1;
                    s.last = Some((rtype, rlen, at));
                    self.facts.sides[side].records += 1;
                    self.opened(side, rlen, at, opened, out);
                    return;
                }
            }
        }
        s.last = Some((rtype, rlen, at));
        let stats = &mut self.facts.sides[side];
        stats.records += 1;
        let ev = |kind| Event { at, side, kind };
        match rtype {
            APPLICATION_DATA => {
                stats.app_records += 1;
                stats.app_bytes += u64::from(rlen);
                stats.last_app_len = Some(rlen);
                out.push(ev(Kind::AppData { len: rlen }));
            }
            ALERT => match (body.first(), body.get(1)) {
                (Some(&level), Some(&desc)) if rlen == 2 && !lossy => {
                    self.facts.alerts.push((side, level, desc));
                    out.push(ev(Kind::Alert { level, desc }));
                }
                _ => {
                    stats.encrypted_alerts += 1;
                    out.push(ev(Kind::EncryptedAlert { len: rlen }));
                }
            },
            CHANGE_CIPHER_SPEC => {
                out.push(ev(Kind::ChangeCipherSpec));
                // TLS ≤ 1.2: encrypted from here. In 1.3 (and around a HelloRetryRequest, before
                // any version is settled) a CCS is only for middlebox compatibility.
                if matches!(self.facts.version, Some(v) if v < TLS13) {
                    self.sides[side].encrypted = true;
                }
            }
            HANDSHAKE if encrypted => out.push(ev(Kind::EncryptedHandshake { len: rlen })),
            HANDSHAKE if lossy => self.sides[side].hs.clear(),
            HANDSHAKE => {
                let s = &mut self.sides[side];
                s.hs.extend_from_slice(&body);
                self.handshake_messages(side, at, out);
            }
            _ => {}
        }
        // Reuse the allocation.
        let s = &mut self.sides[side];
        if s.body.capacity() == 0 {
            s.body = body;
            s.body.clear();
        }
    }

    /// A decrypted record: alerts and handshake types become plain events, application data
    /// goes to the caller.
    fn opened(&mut self, side: usize, rlen: u16, at: At, o: decrypt::Opened, out: &mut Vec<Event>) {
        let ev = |kind| Event { at, side, kind };
        match o.content_type {
            APPLICATION_DATA => {
                let stats = &mut self.facts.sides[side];
                stats.app_records += 1;
                stats.app_bytes += u64::from(rlen);
                stats.last_app_len = Some(rlen);
                out.push(ev(Kind::AppData { len: rlen }));
                self.plaintext.push((side, at, o.data));
            }
            ALERT => {
                if let (Some(&level), Some(&desc)) = (o.data.first(), o.data.get(1)) {
                    self.facts.alerts.push((side, level, desc));
                    out.push(ev(Kind::Alert { level, desc }));
                }
            }
            HANDSHAKE => {
                let mut rest = o.data.as_slice();
                while let (Some(&t), Some(&a), Some(&b), Some(&c)) =
                    (rest.first(), rest.get(1), rest.get(2), rest.get(3))
                {
                    out.push(ev(Kind::Handshake { msg: t }));
                    let n = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                    rest = rest.get(4 + n..).unwrap_or(&[]);
                }
            }
            _ => {}
        }
    }

    fn handshake_messages(&mut self, side: usize, at: At, out: &mut Vec<Event>) {
        loop {
            let hs = &self.sides[side].hs;
            let (Some(&t), Some(&a), Some(&b), Some(&c)) =
                (hs.first(), hs.get(1), hs.get(2), hs.get(3))
            else {
                return;
            };
            let mlen = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if mlen > MAX_HANDSHAKE {
                self.sides[side].hs.clear();
                out.push(Event {
                    at,
                    side,
                    kind: Kind::Handshake { msg: t },
                });
                return;
            }
            if hs.len() < 4 + mlen {
                return;
            }
            let msg: Vec<u8> = self.sides[side].hs.drain(..4 + mlen).collect();
            let kind = self.handshake(t, &msg);
            out.push(Event { at, side, kind });
            if self.sides[side].encrypted {
                // A TLS 1.3 ServerHello: what follows in this record buffer is encrypted.
                self.sides[side].hs.clear();
                return;
            }
        }
    }

    fn handshake(&mut self, t: u8, msg: &[u8]) -> Kind {
        let parsed = match parse_tls_message_handshake(msg) {
            Ok((_, TlsMessage::Handshake(h))) => h,
            _ => return Kind::Handshake { msg: t },
        };
        match parsed {
            TlsMessageHandshake::ClientHello(ch) => {
                let mut versions = Vec::new();
                let mut sni = None;
                let mut alpn = Vec::new();
                let mut groups = Vec::new();
                if let Some(Ok((_, exts))) = ch.ext.map(parse_tls_extensions) {
                    for e in exts {
                        match e {
                            TlsExtension::SupportedVersions(v) => {
                                versions =
                                    v.iter().map(|v| v.0).filter(|v| !is_grease(*v)).collect()
                            }
                            TlsExtension::SNI(names) => {
                                sni = names
                                    .first()
                                    .map(|(_, n)| String::from_utf8_lossy(n).into_owned())
                            }
                            TlsExtension::ALPN(p) => {
                                alpn = p
                                    .iter()
                                    .map(|n| String::from_utf8_lossy(n).into_owned())
                                    .collect()
                            }
                            TlsExtension::KeyShare(raw) => groups = key_share_groups(raw),
                            _ => {}
                        }
                    }
                }
                if versions.is_empty() {
                    versions.push(ch.version.0);
                }
                self.facts.saw_client_hello = true;
                self.client_random = ch.random.to_vec();
                self.facts.offered_versions = versions.clone();
                self.facts.sni = sni.clone();
                self.facts.alpn = alpn.clone();
                Kind::ClientHello {
                    versions,
                    ciphers: ch
                        .ciphers
                        .iter()
                        .map(|c| c.0)
                        .filter(|c| !is_grease(*c))
                        .collect(),
                    sni,
                    alpn,
                    groups,
                    random: hex(ch.random),
                }
            }
            TlsMessageHandshake::ServerHello(sh) => {
                let mut version = sh.version.0;
                if let Some(Ok((_, exts))) = sh.ext.map(parse_tls_server_hello_extensions) {
                    for e in exts {
                        if let TlsExtension::SupportedVersions(v) = e {
                            if let Some(v) = v.first() {
                                version = v.0;
                            }
                        }
                    }
                }
                let retry = sh.random == HRR_RANDOM;
                if retry {
                    self.facts.hello_retry = true;
                } else {
                    self.facts.version = Some(version);
                    self.facts.cipher = Some(sh.cipher.0);
                    self.keys_for(version, sh.cipher.0, sh.random);
                    if version == TLS13 {
                        // Everything after the ServerHello is encrypted, both ways.
                        for s in &mut self.sides {
                            s.encrypted = true;
                        }
                    }
                }
                Kind::ServerHello {
                    version,
                    cipher: sh.cipher.0,
                    random: hex(sh.random),
                    retry,
                }
            }
            TlsMessageHandshake::Certificate(c) => {
                let first = c.cert_chain.first().map(|r| r.data);
                let (subject, issuer, not_before, not_after) = first
                    .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
                    .map(|(_, cert)| {
                        let v = cert.validity();
                        (
                            cert.subject().to_string(),
                            cert.issuer().to_string(),
                            v.not_before.to_string(),
                            v.not_after.to_string(),
                        )
                    })
                    .unwrap_or_default();
                if !subject.is_empty() {
                    self.facts.certificate_subject = Some(subject.clone());
                }
                Kind::Certificate {
                    count: c.cert_chain.len(),
                    subject,
                    issuer,
                    not_before,
                    not_after,
                }
            }
            _ => Kind::Handshake { msg: t },
        }
    }

    fn keys_for(&mut self, version: u16, cipher: u16, server_random: &[u8]) {
        let Some(log) = self.keylog.as_ref() else {
            return;
        };
        let Some(secrets) = log.get(&self.client_random) else {
            self.facts.decryption = Some("no keys");
            return;
        };
        match decrypt::Direction::pair(secrets, version, cipher, &self.client_random, server_random)
        {
            Some((c2s, s2c)) => {
                self.dec = Some(if self.client == 0 {
                    [c2s, s2c]
                } else {
                    [s2c, c2s]
                });
                self.facts.decryption = Some("keys");
            }
            None => self.facts.decryption = Some("unsupported cipher"),
        }
    }

    /// Final facts.
    pub fn finish(self) -> Facts {
        self.facts
    }
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// Groups in a ClientHello key_share extension: a 2-byte list length, then (group, len, key).
fn key_share_groups(raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = raw.get(2..).unwrap_or(&[]);
    while let (Some(&g0), Some(&g1), Some(&l0), Some(&l1)) =
        (rest.first(), rest.get(1), rest.get(2), rest.get(3))
    {
        let g = u16::from_be_bytes([g0, g1]);
        if !is_grease(g) {
            out.push(g);
        }
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        rest = rest.get(4 + len..).unwrap_or(&[]);
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests;
