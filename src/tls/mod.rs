//! Stage 4b, TLS: record framing per direction, handshake messages reassembled across records
//! and parsed with tls-parser, alerts, change-cipher-spec and application-data sizes. Without
//! keys, what is encrypted stays opaque; the close is then inferred from record sizes and marked
//! so.

pub mod decrypt;

use tls_parser::{
    parse_tls_extensions, parse_tls_message_handshake, parse_tls_server_hello_extensions,
    TlsAlertDescription, TlsAlertSeverity, TlsCipherSuiteID, TlsExtension, TlsHandshakeType,
    TlsMessage, TlsMessageHandshake, TlsRecordType, TlsVersion,
};

use crate::bytes::HeaderBuf;
use crate::common::{self, At};
use crate::event::{Event, Kind, PlainLen};

const CHANGE_CIPHER_SPEC: TlsRecordType = TlsRecordType::ChangeCipherSpec;
const ALERT: TlsRecordType = TlsRecordType::Alert;
const HANDSHAKE: TlsRecordType = TlsRecordType::Handshake;
const APPLICATION_DATA: TlsRecordType = TlsRecordType::ApplicationData;
const HEARTBEAT: TlsRecordType = TlsRecordType::Heartbeat;
const HEADER: usize = 5;
/// 2^14 plus the largest expansion RFC 5246 allows.
const MAX_RECORD: usize = (1 << 14) + 2048;
/// Handshake messages larger than this are skipped (a certificate chain fits easily).
const MAX_HANDSHAKE: usize = 1 << 18;
const TLS13: TlsVersion = TlsVersion::Tls13;
/// The encrypt_then_mac extension (RFC 7366).
const EXT_ENCRYPT_THEN_MAC: u16 = 22;
/// ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// True if `b` starts with a plausible TLS record header.
pub fn looks_like_record(b: &[u8]) -> bool {
    match (b.first(), b.get(1), b.get(2), b.get(3), b.get(4)) {
        (Some(&t), Some(&3), Some(&minor), Some(&hi), Some(&lo)) => {
            (CHANGE_CIPHER_SPEC.0..=HEARTBEAT.0).contains(&t)
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
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// Negotiated version (from the ServerHello's supported_versions, else its version).
    pub version: Option<TlsVersion>,
    /// Negotiated cipher suite.
    pub cipher: Option<TlsCipherSuiteID>,
    /// Versions the client offered.
    pub offered_versions: Vec<TlsVersion>,
    /// Server name (SNI).
    pub sni: Option<String>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// A HelloRetryRequest was sent.
    pub hello_retry: bool,
    /// First certificate's subject (TLS ≤ 1.2).
    pub certificate_subject: Option<String>,
    /// Plaintext alerts: (side, level, description), the first [`MAX_ALERTS`].
    pub alerts: Vec<(common::Side, TlsAlertSeverity, TlsAlertDescription)>,
    /// Plaintext alerts beyond [`MAX_ALERTS`], only counted.
    pub alerts_dropped: u64,
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

#[derive(Debug)]
struct Side {
    hdr: HeaderBuf<HEADER>,
    header: [u8; HEADER],
    rtype: TlsRecordType,
    rlen: u16,
    /// Body bytes of the current record still to come (None: expecting a header).
    remaining: Option<usize>,
    body: Vec<u8>,
    body_lossy: bool,
    /// A handshake message was given up (the memory budget): the handshake records that follow
    /// on this side are skipped until the ChangeCipherSpec, rather than misread.
    hs_lost: bool,
    hs: Vec<u8>,
    /// Records from this side are encrypted from here on.
    encrypted: bool,
    desynced: bool,
    last: Option<(TlsRecordType, u16, At)>,
    record_at: Option<At>,
}

impl Default for Side {
    fn default() -> Side {
        Side {
            hdr: HeaderBuf::default(),
            header: [0; HEADER],
            rtype: TlsRecordType(0),
            rlen: 0,
            remaining: None,
            body: Vec::new(),
            body_lossy: false,
            hs_lost: false,
            hs: Vec::new(),
            encrypted: false,
            desynced: false,
            last: None,
            record_at: None,
        }
    }
}

/// A handshake buffer emptied with more capacity than this is freed.
const SHRINK_ABOVE: usize = 1 << 16;

/// Plaintext alerts kept per connection (a real close has one or two; a stream of them is an
/// attack or garbage, and is counted).
pub const MAX_ALERTS: usize = 16;

impl Facts {
    fn alert(&mut self, side: common::Side, level: TlsAlertSeverity, desc: TlsAlertDescription) {
        if self.alerts.len() < MAX_ALERTS {
            self.alerts.push((side, level, desc));
        } else {
            self.alerts_dropped += 1;
        }
    }
}

/// The TLS decoder of one connection.
pub struct Decoder {
    sides: [Side; 2],
    client: common::Side,
    mysql: bool,
    keylog: Option<decrypt::SharedKeyLog>,
    client_random: Vec<u8>,
    /// The ClientHello offered encrypt-then-MAC.
    client_etm: bool,
    /// Decryptors by side, once the ServerHello and a key log allow.
    dec: Option<[decrypt::Direction; 2]>,
    /// Decrypted application data waiting for the caller: (side, where, bytes).
    plaintext: Vec<(common::Side, At, Vec<u8>)>,
    /// What is known so far.
    pub facts: Facts,
}

impl Decoder {
    /// A decoder; `client` is the client's side; `mysql` says the TLS carries MySQL (so a
    /// 5-byte last record reads as a COM_QUIT).
    pub fn new(client: common::Side, mysql: bool) -> Decoder {
        Decoder {
            sides: [Side::default(), Side::default()],
            client,
            mysql,
            keylog: None,
            client_random: Vec::new(),
            client_etm: false,
            dec: None,
            plaintext: Vec::new(),
            facts: Facts::default(),
        }
    }

    /// Decrypts what the key log has secrets for.
    pub fn with_keys(mut self, keylog: Option<decrypt::SharedKeyLog>) -> Decoder {
        self.keylog = keylog;
        self
    }

    /// Decrypted application data since the last call: (side, where, bytes).
    pub fn take_plaintext(&mut self) -> Vec<(common::Side, At, Vec<u8>)> {
        std::mem::take(&mut self.plaintext)
    }

    /// Stream bytes from `side`.
    pub fn data(&mut self, side: common::Side, data: &[u8], at: At, out: &mut Vec<Event>) {
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
                        s.rtype = TlsRecordType(hdr[0]);
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
    pub fn gap(&mut self, side: common::Side, n: u64, at: At, out: &mut Vec<Event>) {
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
    pub fn fin(&mut self, side: common::Side, out: &mut Vec<Event>) {
        if self.dec.is_some() {
            // Nothing to infer when the records were read.
            return;
        }
        let Some(rec) = self.last_app_record(side) else {
            return;
        };
        let Some(what) = rec.meaning(self.mysql && side == self.client) else {
            return;
        };
        out.push(Event {
            at: rec.at,
            side,
            kind: Kind::InferredClose {
                what: what.as_str(),
                inner_len: rec.plain.lo,
            },
        });
    }

    /// The last record `side` sent, when it was application data of a session that is not
    /// decrypted and whose framing held: its size, and the plaintext size that implies.
    pub fn last_app_record(&self, side: common::Side) -> Option<LastRecord> {
        let s = &self.sides[side];
        if s.desynced {
            return None;
        }
        let (APPLICATION_DATA, len, at) = s.last? else {
            return None;
        };
        let plain = overhead(self.facts.version?, self.facts.cipher?)
            .map(|o| o.plaintext(len))
            .unwrap_or(PlainLen { lo: 0, hi: len });
        Some(LastRecord { at, len, plain })
    }

    /// The negotiated version and cipher are known and records are being decrypted.
    pub fn decrypting(&self) -> bool {
        self.dec.is_some()
    }

    fn plaintext(&mut self, side: common::Side, d: &[u8], at: At, out: &mut Vec<Event>) {
        let s = &mut self.sides[side];
        s.desynced = true;
        s.hs.clear();
        self.facts.sides[side].plaintext_events += 1;
        let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let mysql = if crate::mysql::framer::exact_chain(d, true) {
            d.get(4).map(|&c| crate::event::Com(c))
        } else {
            None
        };
        out.push(Event {
            at,
            side,
            kind: Kind::PlaintextInTls { hex, mysql },
        });
    }

    fn record(&mut self, side: common::Side, out: &mut Vec<Event>) {
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
                let plain = self
                    .facts
                    .version
                    .zip(self.facts.cipher)
                    .and_then(|(v, c)| overhead(v, c))
                    .map(|o| o.plaintext(rlen));
                out.push(ev(Kind::AppData {
                    len: rlen,
                    plain,
                    decrypted: false,
                }));
            }
            ALERT => match (body.first(), body.get(1)) {
                (Some(&level), Some(&desc)) if rlen == 2 && !lossy => {
                    let (level, desc) = (TlsAlertSeverity(level), TlsAlertDescription(desc));
                    self.facts.alert(side, level, desc);
                    out.push(ev(Kind::Alert { level, desc }));
                }
                _ => {
                    stats.encrypted_alerts += 1;
                    out.push(ev(Kind::EncryptedAlert { len: rlen }));
                }
            },
            CHANGE_CIPHER_SPEC => {
                out.push(ev(Kind::ChangeCipherSpec));
                self.sides[side].hs_lost = false;
                // TLS ≤ 1.2: encrypted from here. In 1.3 (and around a HelloRetryRequest, before
                // any version is settled) a CCS is only for middlebox compatibility.
                if matches!(self.facts.version, Some(v) if v.0 < TLS13.0) {
                    self.sides[side].encrypted = true;
                }
            }
            HANDSHAKE if encrypted => out.push(ev(Kind::EncryptedHandshake { len: rlen })),
            HANDSHAKE if lossy || self.sides[side].hs_lost => self.sides[side].hs.clear(),
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
    fn opened(
        &mut self,
        side: common::Side,
        rlen: u16,
        at: At,
        o: decrypt::Opened,
        out: &mut Vec<Event>,
    ) {
        let ev = |kind| Event { at, side, kind };
        match o.content_type {
            APPLICATION_DATA => {
                let stats = &mut self.facts.sides[side];
                stats.app_records += 1;
                stats.app_bytes += u64::from(rlen);
                stats.last_app_len = Some(rlen);
                let n = u16::try_from(o.data.len()).unwrap_or(u16::MAX);
                let plain = Some(PlainLen { lo: n, hi: n });
                out.push(ev(Kind::AppData {
                    len: rlen,
                    plain,
                    decrypted: true,
                }));
                self.plaintext.push((side, at, o.data));
            }
            ALERT => {
                if let (Some(&level), Some(&desc)) = (o.data.first(), o.data.get(1)) {
                    let (level, desc) = (TlsAlertSeverity(level), TlsAlertDescription(desc));
                    self.facts.alert(side, level, desc);
                    out.push(ev(Kind::Alert { level, desc }));
                }
            }
            HANDSHAKE => {
                let mut rest = o.data.as_slice();
                while let (Some(&t), Some(&a), Some(&b), Some(&c)) =
                    (rest.first(), rest.get(1), rest.get(2), rest.get(3))
                {
                    out.push(ev(Kind::Handshake {
                        msg: TlsHandshakeType(t),
                    }));
                    let n = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                    rest = rest.get(4 + n..).unwrap_or(&[]);
                }
            }
            _ => {}
        }
    }

    fn handshake_messages(&mut self, side: common::Side, at: At, out: &mut Vec<Event>) {
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
                    kind: Kind::Handshake {
                        msg: TlsHandshakeType(t),
                    },
                });
                return;
            }
            if hs.len() < 4 + mlen {
                return;
            }
            let msg: Vec<u8> = self.sides[side].hs.drain(..4 + mlen).collect();
            let s = &mut self.sides[side];
            if s.hs.is_empty() && s.hs.capacity() > SHRINK_ABOVE {
                // A large certificate chain must not pin its buffer for the connection's life.
                s.hs = Vec::new();
            }
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
        let t = TlsHandshakeType(t);
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
                                versions = v.iter().copied().filter(|v| !is_grease(v.0)).collect()
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
                    versions.push(ch.version);
                }
                self.facts.saw_client_hello = true;
                self.client_random = ch.random.to_vec();
                self.client_etm = has_extension(ch.ext, EXT_ENCRYPT_THEN_MAC);
                self.facts.offered_versions = versions.clone();
                self.facts.sni = sni.clone();
                self.facts.alpn = alpn.clone();
                Kind::ClientHello {
                    versions,
                    ciphers: ch
                        .ciphers
                        .iter()
                        .copied()
                        .filter(|c| !is_grease(c.0))
                        .collect(),
                    sni,
                    alpn,
                    groups,
                    random: hex(ch.random),
                }
            }
            TlsMessageHandshake::ServerHello(sh) => {
                let mut version = sh.version;
                if let Some(Ok((_, exts))) = sh.ext.map(parse_tls_server_hello_extensions) {
                    for e in exts {
                        if let TlsExtension::SupportedVersions(v) = e {
                            if let Some(&v) = v.first() {
                                version = v;
                            }
                        }
                    }
                }
                let retry = sh.random == HRR_RANDOM;
                if retry {
                    self.facts.hello_retry = true;
                } else {
                    self.facts.version = Some(version);
                    self.facts.cipher = Some(sh.cipher);
                    // The server echoes encrypt-then-MAC only when offered (RFC 7366 §2).
                    let etm = self.client_etm && has_extension(sh.ext, EXT_ENCRYPT_THEN_MAC);
                    self.keys_for(version, sh.cipher, sh.random, etm);
                    if version == TLS13 {
                        // Everything after the ServerHello is encrypted, both ways.
                        for s in &mut self.sides {
                            s.encrypted = true;
                        }
                    }
                }
                Kind::ServerHello {
                    version,
                    cipher: sh.cipher,
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

    fn keys_for(
        &mut self,
        version: TlsVersion,
        cipher: TlsCipherSuiteID,
        server_random: &[u8],
        etm: bool,
    ) {
        let Some(log) = self.keylog.as_ref() else {
            return;
        };
        // One table shared by every connection: read under the lock, the secrets copied out.
        let found = log
            .read()
            .ok()
            .and_then(|l| l.get(&self.client_random).cloned());
        let Some(secrets) = found else {
            self.facts.decryption = Some("no keys");
            return;
        };
        // The key schedule works on the wire values.
        match decrypt::Direction::pair(
            &secrets,
            version.0,
            cipher.0,
            &self.client_random,
            server_random,
            etm,
        ) {
            Some((c2s, s2c)) => {
                self.dec = Some(if self.client == common::Side::A {
                    [c2s, s2c]
                } else {
                    [s2c, c2s]
                });
                self.facts.decryption = Some("keys");
            }
            None => self.facts.decryption = Some("unsupported cipher"),
        }
    }

    /// Heap held in per-side buffers that grow with what the peer sends (a handshake message
    /// being collected, up to 256 KiB; a record body, up to 18 KiB).
    pub fn buffered(&self) -> usize {
        self.sides
            .iter()
            .map(|s| s.hs.capacity() + s.body.capacity())
            .sum()
    }

    /// Frees the handshake messages being collected (the memory budget is full); the rest of
    /// that side's handshake is skipped. True if anything was held.
    pub fn shed(&mut self) -> bool {
        let mut any = false;
        for s in &mut self.sides {
            if s.hs.capacity() > 0 {
                any |= !s.hs.is_empty();
                s.hs_lost |= !s.hs.is_empty();
                s.hs = Vec::new();
            }
        }
        any
    }

    /// Final facts.
    pub fn finish(self) -> Facts {
        self.facts
    }
}

/// What a last record before a close most likely was, from its plaintext size alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordMeaning {
    /// Two bytes: an alert (close_notify or fatal; the size cannot tell which).
    Alert,
    /// Five bytes from a MySQL client: a 1-byte command, as COM_QUIT is.
    ComQuit,
}

impl RecordMeaning {
    /// The name `tls.inferred_close` events use.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordMeaning::Alert => "alert (close_notify or fatal)",
            RecordMeaning::ComQuit => "com_quit",
        }
    }
}

/// The last application-data record of one side (see [`Decoder::last_app_record`]).
#[derive(Clone, Copy, Debug)]
pub struct LastRecord {
    /// Where it was seen.
    pub at: At,
    /// Record length.
    pub len: u16,
    /// The plaintext length it implies.
    pub plain: PlainLen,
}

impl LastRecord {
    /// What the record most likely held; `mysql_client` when it came from a MySQL client. Only
    /// exact (AEAD) sizes, or a CBC range that holds nothing larger than 16 bytes, say anything.
    pub fn meaning(&self, mysql_client: bool) -> Option<RecordMeaning> {
        if self.plain.hi > 16 {
            return None;
        }
        if self.plain.exact() && self.plain.lo == 2 {
            Some(RecordMeaning::Alert)
        } else if mysql_client && self.plain.fits(COM_QUIT_LEN) {
            Some(RecordMeaning::ComQuit)
        } else {
            None
        }
    }
}

/// A 1-byte MySQL command with its 4-byte header (COM_QUIT, COM_PING, ...).
const COM_QUIT_LEN: u16 = 5;

/// Bytes a protected record adds to its plaintext: the least and the most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overhead {
    /// Least.
    pub min: u16,
    /// Most.
    pub max: u16,
}

impl Overhead {
    /// The plaintext length range of a record of `len` bytes.
    pub fn plaintext(self, len: u16) -> PlainLen {
        PlainLen {
            lo: len.saturating_sub(self.max),
            hi: len.saturating_sub(self.min),
        }
    }
}

/// CCM suites with an 8-byte tag (RFC 6655, RFC 7251, RFC 8446): the suite table cannot tell
/// them from 16-byte-tag CCM.
const CCM_8_SUITES: &[u16] = &[
    0x1305, 0xc0a0, 0xc0a1, 0xc0a2, 0xc0a3, 0xc0a8, 0xc0a9, 0xc0aa, 0xc0ab, 0xc0ae, 0xc0af,
];

/// The record overhead of `cipher` under `version`, from the cipher-suite table (tls-parser's,
/// keyed by the suite): AEAD suites add a tag (and in TLS 1.2 an 8-byte explicit nonce for GCM
/// and CCM; in TLS 1.3 the inner content-type byte), CBC suites a MAC, the padding-length byte,
/// up to one block of padding (minimal padding, as OpenSSL and its kin send) and from TLS 1.1 an
/// explicit IV. None when the suite is unknown.
pub fn overhead(version: TlsVersion, cipher: TlsCipherSuiteID) -> Option<Overhead> {
    use tls_parser::{TlsCipherEnc, TlsCipherEncMode, TlsCipherMac};
    let tag = if CCM_8_SUITES.contains(&cipher.0) {
        8
    } else {
        16
    };
    if version.0 >= TLS13.0 {
        let n = 1 + tag;
        return Some(Overhead { min: n, max: n });
    }
    let suite = cipher.get_ciphersuite()?;
    let fixed = |n: u16| Some(Overhead { min: n, max: n });
    match (suite.enc, suite.enc_mode, suite.mac) {
        (TlsCipherEnc::Chacha20_Poly1305, ..) => fixed(16),
        (_, TlsCipherEncMode::Gcm | TlsCipherEncMode::Ccm, _) | (_, _, TlsCipherMac::Aead) => {
            fixed(8 + tag)
        }
        (enc, TlsCipherEncMode::Cbc, mac) => {
            let block: u16 = match enc {
                TlsCipherEnc::Des
                | TlsCipherEnc::TripleDes
                | TlsCipherEnc::Idea
                | TlsCipherEnc::Rc2 => 8,
                _ => 16,
            };
            let mac = mac_len(mac)?;
            let iv = if version.0 >= TlsVersion::Tls11.0 {
                block
            } else {
                0
            };
            Some(Overhead {
                min: iv + mac + 1,
                max: iv + mac + block,
            })
        }
        (_, TlsCipherEncMode::Null, mac) => fixed(mac_len(mac)?),
    }
}

fn mac_len(mac: tls_parser::TlsCipherMac) -> Option<u16> {
    use tls_parser::TlsCipherMac;
    match mac {
        TlsCipherMac::Null => Some(0),
        TlsCipherMac::HmacMd5 => Some(16),
        TlsCipherMac::HmacSha1 => Some(20),
        TlsCipherMac::HmacSha256 => Some(32),
        TlsCipherMac::HmacSha384 => Some(48),
        TlsCipherMac::HmacSha512 => Some(64),
        TlsCipherMac::Aead => None,
    }
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A hello's extension block (the bytes after its length) holds an extension of type `ty`. Walked
/// by hand: tls-parser gives up on the whole block at one extension it cannot parse.
fn has_extension(raw: Option<&[u8]>, ty: u16) -> bool {
    let mut rest = raw.unwrap_or(&[]);
    while let (Some(&t0), Some(&t1), Some(&l0), Some(&l1)) =
        (rest.first(), rest.get(1), rest.get(2), rest.get(3))
    {
        if u16::from_be_bytes([t0, t1]) == ty {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        rest = rest.get(4 + len..).unwrap_or(&[]);
    }
    false
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
