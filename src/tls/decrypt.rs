//! Decryption with a key log (NSS SSLKEYLOGFILE format, from a file or a pcapng Decryption
//! Secrets Block): AES-128/256-GCM and ChaCha20-Poly1305 in TLS 1.2 (from the master secret,
//! RFC 5246 §5/§6.3, RFC 5288) and TLS 1.3 (from the traffic secrets, RFC 8446 §7), and the
//! AES-CBC suites with HMAC-SHA1/SHA256/SHA384 in TLS 1.0–1.2 (RFC 2246/4346/5246 §6.2.3.2; the
//! TLS 1.0 IV chained across records; encrypt-then-MAC, RFC 7366) that MySQL 5.5–5.7 and
//! yaSSL/wolfSSL builds negotiate. AEADs and HMACs are ring's; AES-CBC and the MD5 of the
//! TLS 1.0/1.1 PRF are RustCrypto's.

use std::collections::HashMap;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::{hkdf, hmac};

/// Secrets of one TLS session, keyed in the log by its ClientHello random.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// TLS ≤ 1.2 master secret (`CLIENT_RANDOM`).
    pub master: Option<Vec<u8>>,
    /// TLS 1.3 client handshake traffic secret.
    pub client_handshake: Option<Vec<u8>>,
    /// TLS 1.3 server handshake traffic secret.
    pub server_handshake: Option<Vec<u8>>,
    /// TLS 1.3 client application traffic secret 0.
    pub client_traffic: Option<Vec<u8>>,
    /// TLS 1.3 server application traffic secret 0.
    pub server_traffic: Option<Vec<u8>>,
}

/// A key log: client random → secrets, holding at most `limit` bytes (the rest counted).
#[derive(Clone, Debug)]
pub struct KeyLog {
    sessions: HashMap<Vec<u8>, Secrets>,
    bytes: usize,
    limit: usize,
    dropped: u64,
}

impl Default for KeyLog {
    fn default() -> Self {
        KeyLog {
            sessions: HashMap::new(),
            bytes: 0,
            limit: usize::MAX,
            dropped: 0,
        }
    }
}

/// One key table shared by the connections of a run: secrets that arrive later (pcapng
/// Decryption Secrets Blocks) are added in place, never by copying the table.
pub type SharedKeyLog = std::sync::Arc<std::sync::RwLock<KeyLog>>;

/// Bytes a table entry is charged beyond its random and secret (map slot, headers).
const ENTRY_COST: usize = 160;

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

impl KeyLog {
    /// Adds the lines of a key log; unknown labels and bad lines are skipped (returns how many
    /// lines were used).
    pub fn add_text(&mut self, text: &str) -> usize {
        let mut used = 0;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(label), Some(random), Some(secret)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Some(random), Some(secret)) = (unhex(random), unhex(secret)) else {
                continue;
            };
            if !self.sessions.contains_key(&random) {
                let cost = ENTRY_COST + random.len() + secret.len();
                if self.bytes.saturating_add(cost) > self.limit {
                    self.dropped += 1;
                    continue;
                }
                self.bytes += cost;
            }
            let s = self.sessions.entry(random).or_default();
            let slot = match label {
                "CLIENT_RANDOM" => &mut s.master,
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut s.client_handshake,
                "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut s.server_handshake,
                "CLIENT_TRAFFIC_SECRET_0" => &mut s.client_traffic,
                "SERVER_TRAFFIC_SECRET_0" => &mut s.server_traffic,
                _ => continue,
            };
            *slot = Some(secret);
            used += 1;
        }
        used
    }

    /// Caps the table at `bytes` (secrets beyond it are counted in [`KeyLog::dropped`]).
    pub fn set_limit(&mut self, bytes: usize) {
        self.limit = bytes;
    }

    /// Key log lines not kept because the table was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sessions known.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is known.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The secrets of the session whose ClientHello random is `random`.
    pub fn get(&self, random: &[u8]) -> Option<&Secrets> {
        self.sessions.get(random)
    }
}

const TLS10: u16 = 0x0301;
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;
/// The AES block, and so the CBC IV, in bytes.
const BLOCK: usize = 16;

/// How a suite protects its records.
#[derive(Clone, Copy, Debug)]
enum Protection {
    /// An AEAD; `explicit_nonce`: TLS 1.2 GCM, a 4-byte implicit salt plus an 8-byte explicit
    /// nonce per record.
    Aead {
        alg: &'static aead::Algorithm,
        explicit_nonce: bool,
    },
    /// AES-CBC with a key of `key_len` bytes, and an HMAC (RFC 5246 §6.2.3.2).
    Cbc {
        key_len: usize,
        mac: hmac::Algorithm,
    },
}

/// A cipher suite we can decrypt.
#[derive(Clone, Copy, Debug)]
struct Suite {
    protection: Protection,
    /// The TLS 1.2 PRF (TLS 1.3: the HKDF) hashes with SHA-384, else SHA-256.
    sha384: bool,
}

fn suite(cipher: u16, version: u16) -> Option<Suite> {
    let tls13 = version == TLS13;
    let aead = |alg: &'static aead::Algorithm, sha384: bool, gcm: bool| {
        Some(Suite {
            protection: Protection::Aead {
                alg,
                explicit_nonce: gcm && !tls13,
            },
            sha384,
        })
    };
    match cipher {
        0x1301 => aead(&aead::AES_128_GCM, false, true),
        0x1302 => aead(&aead::AES_256_GCM, true, true),
        0x1303 => aead(&aead::CHACHA20_POLY1305, false, false),
        // TLS 1.2 ECDHE/DHE/RSA GCM and ChaCha20 suites.
        0x009c | 0x009e | 0xc02b | 0xc02f => aead(&aead::AES_128_GCM, false, true),
        0x009d | 0x009f | 0xc02c | 0xc030 => aead(&aead::AES_256_GCM, true, true),
        0xcca8..=0xccaa => aead(&aead::CHACHA20_POLY1305, false, false),
        // SSL 3.0 MACs differently; TLS 1.3 has no CBC.
        _ if (TLS10..TLS13).contains(&version) => cbc_suite(cipher),
        _ => None,
    }
}

/// An AES-CBC suite with an HMAC-SHA1/SHA256/SHA384, whatever its key exchange (RSA, DHE, ECDHE,
/// PSK, SRP: the key log gives the master secret), from tls-parser's table of suites.
fn cbc_suite(cipher: u16) -> Option<Suite> {
    use tls_parser::{TlsCipherEnc, TlsCipherEncMode, TlsCipherMac, TlsPRF};
    let s = tls_parser::TlsCipherSuite::from_id(cipher)?;
    if !matches!(
        (s.enc, s.enc_mode),
        (TlsCipherEnc::Aes, TlsCipherEncMode::Cbc)
    ) {
        return None;
    }
    let key_len = match s.enc_size {
        128 => 16,
        256 => 32,
        _ => return None,
    };
    let mac = match s.mac {
        TlsCipherMac::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        TlsCipherMac::HmacSha256 => hmac::HMAC_SHA256,
        TlsCipherMac::HmacSha384 => hmac::HMAC_SHA384,
        _ => return None,
    };
    Some(Suite {
        protection: Protection::Cbc { key_len, mac },
        sha384: matches!(s.prf, TlsPRF::Sha384),
    })
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(secret: &[u8], sha384: bool, label: &str, len: usize) -> Option<Vec<u8>> {
    let alg = if sha384 {
        hkdf::HKDF_SHA384
    } else {
        hkdf::HKDF_SHA256
    };
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let full = format!("tls13 {label}");
    let out_len = (len as u16).to_be_bytes();
    let label_len = [full.len() as u8];
    let info: [&[u8]; 5] = [&out_len, &label_len, full.as_bytes(), &[0u8], &[]];
    let okm = prk.expand(&info, Len(len)).ok()?;
    let mut out = vec![0; len];
    okm.fill(&mut out).ok()?;
    Some(out)
}

/// P_hash (RFC 5246 §5) over ring's HMAC.
fn p_hash(alg: hmac::Algorithm, secret: &[u8], label_seed: &[u8], len: usize) -> Vec<u8> {
    let key = hmac::Key::new(alg, secret);
    let mut a = hmac::sign(&key, label_seed).as_ref().to_vec();
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&a);
        ctx.update(label_seed);
        out.extend_from_slice(ctx.sign().as_ref());
        a = hmac::sign(&key, &a).as_ref().to_vec();
    }
    out.truncate(len);
    out
}

/// P_MD5 (RFC 2246 §5), for the TLS 1.0/1.1 PRF: ring has no MD5.
fn p_md5(secret: &[u8], label_seed: &[u8], len: usize) -> Option<Vec<u8>> {
    use ::hmac::{KeyInit, Mac};
    type HmacMd5 = ::hmac::Hmac<md5::Md5>;
    let mac = |parts: &[&[u8]]| -> Option<Vec<u8>> {
        // HMAC takes a key of any length: this never fails.
        let mut m = <HmacMd5 as KeyInit>::new_from_slice(secret).ok()?;
        for p in parts {
            m.update(p);
        }
        Some(m.finalize().into_bytes().to_vec())
    };
    let mut a = mac(&[label_seed])?;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(&mac(&[&a, label_seed])?);
        a = mac(&[&a])?;
    }
    out.truncate(len);
    Some(out)
}

/// The PRF of `version`: TLS 1.0/1.1 XOR P_MD5 over the secret's first half with P_SHA1 over
/// its second (RFC 2246 §5); TLS 1.2 is P_SHA256, or P_SHA384 where the suite says so (RFC 5246
/// §5).
fn prf(
    version: u16,
    secret: &[u8],
    sha384: bool,
    label: &[u8],
    seed: &[u8],
    len: usize,
) -> Option<Vec<u8>> {
    let mut label_seed = label.to_vec();
    label_seed.extend_from_slice(seed);
    if version >= TLS12 {
        let alg = if sha384 {
            hmac::HMAC_SHA384
        } else {
            hmac::HMAC_SHA256
        };
        return Some(p_hash(alg, secret, &label_seed, len));
    }
    // The halves overlap by a byte when the secret's length is odd.
    let half = secret.len().div_ceil(2);
    let s1 = secret.get(..half)?;
    let s2 = secret.get(secret.len() - half..)?;
    let mut out = p_md5(s1, &label_seed, len)?;
    let sha1 = p_hash(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s2, &label_seed, len);
    for (o, x) in out.iter_mut().zip(sha1) {
        *o ^= x;
    }
    Some(out)
}

/// An AES decryption key schedule.
#[derive(Clone)]
enum Aes {
    A128(Box<aes::Aes128Dec>),
    A256(Box<aes::Aes256Dec>),
}

impl Aes {
    fn new(key: &[u8]) -> Option<Aes> {
        use aes::cipher::KeyInit;
        match key.len() {
            16 => aes::Aes128Dec::new_from_slice(key)
                .ok()
                .map(|k| Aes::A128(Box::new(k))),
            32 => aes::Aes256Dec::new_from_slice(key)
                .ok()
                .map(|k| Aes::A256(Box::new(k))),
            _ => None,
        }
    }

    /// CBC-decrypts `buf` in place (a whole number of blocks, else None).
    fn decrypt_cbc(&self, iv: &[u8; BLOCK], buf: &mut [u8]) -> Option<()> {
        use cbc::cipher::{block_padding::NoPadding, BlockModeDecrypt, InnerIvInit};
        let iv = (*iv).into();
        let done = match self {
            Aes::A128(k) => cbc::Decryptor::inner_iv_init((**k).clone(), &iv)
                .decrypt_padded::<NoPadding>(buf)
                .is_ok(),
            Aes::A256(k) => cbc::Decryptor::inner_iv_init((**k).clone(), &iv)
                .decrypt_padded::<NoPadding>(buf)
                .is_ok(),
        };
        done.then_some(())
    }
}

/// One direction's CBC state (RFC 5246 §6.2.3.2, RFC 2246 §6.2.3.2, RFC 7366).
struct Cbc {
    aes: Aes,
    mac: hmac::Key,
    mac_len: usize,
    /// The negotiated version, which the MAC covers.
    version: u16,
    /// TLS 1.0: the IV of the next record, which is the last ciphertext block of the one before
    /// (the first comes from the key block). None from TLS 1.1 on: each record carries its own.
    chained_iv: Option<[u8; BLOCK]>,
    /// RFC 7366 encrypt-then-MAC: the MAC follows the (IV and) ciphertext and covers them.
    encrypt_then_mac: bool,
}

impl Cbc {
    /// The plaintext of a record, or None when its length, padding or MAC does not check. The
    /// TLS 1.0 IV chain moves on either way, as the sender's did.
    fn open(&mut self, seq: u64, header: &[u8; 5], body: &[u8]) -> Option<Vec<u8>> {
        let (iv, rest): ([u8; BLOCK], &[u8]) = match self.chained_iv {
            Some(iv) => (iv, body),
            None => {
                let (iv, rest) = body.split_at_checked(BLOCK)?;
                (iv.try_into().ok()?, rest)
            }
        };
        let (ciphertext, etm_tag) = if self.encrypt_then_mac {
            let (c, tag) = rest.split_at_checked(rest.len().checked_sub(self.mac_len)?)?;
            (c, Some(tag))
        } else {
            (rest, None)
        };
        if ciphertext.is_empty() || ciphertext.len() % BLOCK != 0 {
            return None;
        }
        if let Some(next) = self.chained_iv.as_mut() {
            next.copy_from_slice(ciphertext.get(ciphertext.len() - BLOCK..)?);
        }
        if let Some(tag) = etm_tag {
            // Over what precedes the MAC: the explicit IV (TLS 1.1+) and the ciphertext.
            let covered = body.get(..body.len() - self.mac_len)?;
            if !self.mac_checks(seq, header, covered, tag) {
                return None;
            }
        }
        let mut buf = ciphertext.to_vec();
        self.aes.decrypt_cbc(&iv, &mut buf)?;
        // The padding: `pad` bytes then the length byte, all of value `pad`.
        let pad = *buf.last()?;
        let unpadded = buf.len().checked_sub(usize::from(pad) + 1)?;
        if buf.get(unpadded..)?.iter().any(|&b| b != pad) {
            return None;
        }
        buf.truncate(unpadded);
        if etm_tag.is_none() {
            let n = buf.len().checked_sub(self.mac_len)?;
            let (content, tag) = buf.split_at(n);
            if !self.mac_checks(seq, header, content, tag) {
                return None;
            }
            buf.truncate(n);
        }
        Some(buf)
    }

    /// HMAC(seq ‖ type ‖ version ‖ length ‖ covered) equals `tag`.
    fn mac_checks(&self, seq: u64, header: &[u8; 5], covered: &[u8], tag: &[u8]) -> bool {
        let Ok(len) = u16::try_from(covered.len()) else {
            return false;
        };
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(&seq.to_be_bytes());
        ctx.update(&[header[0]]);
        ctx.update(&self.version.to_be_bytes());
        ctx.update(&len.to_be_bytes());
        ctx.update(covered);
        ctx.sign().as_ref() == tag
    }
}

/// The keys of one direction.
enum Keys {
    Aead {
        key: Box<LessSafeKey>,
        iv: Vec<u8>,
        explicit_nonce: bool,
    },
    Cbc(Cbc),
}

fn aead_keys(
    alg: &'static aead::Algorithm,
    explicit_nonce: bool,
    key: &[u8],
    iv: &[u8],
) -> Option<Keys> {
    Some(Keys::Aead {
        key: Box::new(LessSafeKey::new(UnboundKey::new(alg, key).ok()?)),
        iv: iv.to_vec(),
        explicit_nonce,
    })
}

/// Record decryption for one direction.
pub struct Direction {
    tls13: bool,
    /// TLS 1.3: handshake keys, then application keys; TLS ≤ 1.2: one set.
    keys: Vec<Keys>,
    current: usize,
    seq: u64,
}

/// A decrypted record: its real content type and plaintext.
pub struct Opened {
    /// Content type (TLS 1.3: the inner type).
    pub content_type: tls_parser::TlsRecordType,
    /// Plaintext.
    pub data: Vec<u8>,
}

impl Direction {
    fn one(keys: Keys) -> Direction {
        Direction {
            tls13: false,
            keys: vec![keys],
            current: 0,
            seq: 0,
        }
    }

    /// Both directions' decryptors for a session, or None when the suite or secrets are missing.
    /// `encrypt_then_mac`: both hellos carried the extension (RFC 7366; CBC suites only).
    /// Returns (client→server, server→client).
    pub fn pair(
        secrets: &Secrets,
        version: u16,
        cipher: u16,
        client_random: &[u8],
        server_random: &[u8],
        encrypt_then_mac: bool,
    ) -> Option<(Direction, Direction)> {
        let tls13 = version == TLS13;
        let suite = suite(cipher, version)?;
        if tls13 {
            let Protection::Aead { alg, .. } = suite.protection else {
                return None;
            };
            let klen = alg.key_len();
            let make = |secret: &Option<Vec<u8>>| -> Option<Keys> {
                let s = secret.as_ref()?;
                aead_keys(
                    alg,
                    false,
                    &expand_label(s, suite.sha384, "key", klen)?,
                    &expand_label(s, suite.sha384, "iv", 12)?,
                )
            };
            let side = |hs: &Option<Vec<u8>>, ap: &Option<Vec<u8>>| {
                let keys: Vec<Keys> = [make(hs), make(ap)].into_iter().flatten().collect();
                (!keys.is_empty()).then_some(Direction {
                    tls13,
                    keys,
                    current: 0,
                    seq: 0,
                })
            };
            return Some((
                side(&secrets.client_handshake, &secrets.client_traffic)?,
                side(&secrets.server_handshake, &secrets.server_traffic)?,
            ));
        }
        let master = secrets.master.as_ref()?;
        let mut seed = server_random.to_vec();
        seed.extend_from_slice(client_random);
        let expand = |len: usize| prf(version, master, suite.sha384, b"key expansion", &seed, len);
        match suite.protection {
            Protection::Aead {
                alg,
                explicit_nonce,
            } => {
                let klen = alg.key_len();
                let iv_len = if explicit_nonce { 4 } else { 12 };
                let block = expand(2 * klen + 2 * iv_len)?;
                let (ck, rest) = block.split_at_checked(klen)?;
                let (sk, rest) = rest.split_at_checked(klen)?;
                let (civ, siv) = rest.split_at_checked(iv_len)?;
                Some((
                    Direction::one(aead_keys(alg, explicit_nonce, ck, civ)?),
                    Direction::one(aead_keys(alg, explicit_nonce, sk, siv)?),
                ))
            }
            Protection::Cbc { key_len, mac } => {
                let mac_len = mac.digest_algorithm().output_len();
                // Only TLS 1.0 takes its first IVs from the key block.
                let iv_len = if version == TLS10 { BLOCK } else { 0 };
                let block = expand(2 * (mac_len + key_len + iv_len))?;
                // client MAC key, server MAC key, client key, server key, client IV, server IV.
                let (cm, rest) = block.split_at_checked(mac_len)?;
                let (sm, rest) = rest.split_at_checked(mac_len)?;
                let (ck, rest) = rest.split_at_checked(key_len)?;
                let (sk, rest) = rest.split_at_checked(key_len)?;
                let (civ, siv) = rest.split_at_checked(iv_len)?;
                let one = |m: &[u8], k: &[u8], iv: &[u8]| -> Option<Direction> {
                    Some(Direction::one(Keys::Cbc(Cbc {
                        aes: Aes::new(k)?,
                        mac: hmac::Key::new(mac, m),
                        mac_len,
                        version,
                        chained_iv: if iv_len == 0 {
                            None
                        } else {
                            Some(iv.try_into().ok()?)
                        },
                        encrypt_then_mac,
                    })))
                };
                Some((one(cm, ck, civ)?, one(sm, sk, siv)?))
            }
        }
    }

    /// Decrypts one record (`header` is its 5-byte header, `body` the rest). None: it does not
    /// decrypt (a failed AEAD tag, or a CBC record whose length, padding or MAC does not check).
    pub fn open(&mut self, header: &[u8; 5], body: &[u8]) -> Option<Opened> {
        loop {
            if let Some(o) = self.try_open(header, body) {
                self.seq += 1;
                return Some(o);
            }
            // TLS 1.3: the first record that fails under the handshake keys is the first under
            // the application keys.
            if self.tls13 && self.current + 1 < self.keys.len() {
                self.current += 1;
                self.seq = 0;
                continue;
            }
            return None;
        }
    }

    fn try_open(&mut self, header: &[u8; 5], body: &[u8]) -> Option<Opened> {
        let seq = self.seq;
        let tls13 = self.tls13;
        let (key, iv, explicit_nonce) = match self.keys.get_mut(self.current)? {
            Keys::Cbc(c) => {
                return Some(Opened {
                    content_type: tls_parser::TlsRecordType(header[0]),
                    data: c.open(seq, header, body)?,
                })
            }
            Keys::Aead {
                key,
                iv,
                explicit_nonce,
            } => (&*key, &*iv, *explicit_nonce),
        };
        let mut nonce = [0u8; 12];
        let (ciphertext, aad): (&[u8], Vec<u8>) = if explicit_nonce {
            nonce.get_mut(..4)?.copy_from_slice(iv.get(..4)?);
            nonce.get_mut(4..)?.copy_from_slice(body.get(..8)?);
            let ct = body.get(8..)?;
            let plain_len = ct.len().checked_sub(16)? as u16;
            (ct, tls12_aad(seq, header, plain_len))
        } else {
            nonce.copy_from_slice(iv.get(..12)?);
            for (n, s) in nonce.iter_mut().skip(4).zip(seq.to_be_bytes()) {
                *n ^= s;
            }
            if tls13 {
                (body, header.to_vec())
            } else {
                let plain_len = body.len().checked_sub(16)? as u16;
                (body, tls12_aad(seq, header, plain_len))
            }
        };
        let mut buf = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        if tls13 {
            // Inner plaintext: content, type byte, zero padding.
            let end = buf.iter().rposition(|&b| b != 0)?;
            let content_type = *buf.get(end)?;
            buf.truncate(end);
            Some(Opened {
                content_type: tls_parser::TlsRecordType(content_type),
                data: buf,
            })
        } else {
            Some(Opened {
                content_type: tls_parser::TlsRecordType(header[0]),
                data: buf,
            })
        }
    }
}

fn tls12_aad(seq: u64, header: &[u8; 5], plain_len: u16) -> Vec<u8> {
    let mut aad = seq.to_be_bytes().to_vec();
    aad.extend_from_slice(&header[..3]);
    aad.extend_from_slice(&plain_len.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_log_lines() {
        let mut k = KeyLog::default();
        let n = k.add_text(
            "# comment\nCLIENT_RANDOM 0001 aabb\nCLIENT_TRAFFIC_SECRET_0 0001 ccdd\nbogus line\nEXPORTER_SECRET 0001 00\n",
        );
        assert_eq!(n, 2);
        let s = k.get(&[0, 1]).unwrap();
        assert_eq!(s.master.as_deref(), Some(&[0xaa, 0xbb][..]));
        assert_eq!(s.client_traffic.as_deref(), Some(&[0xcc, 0xdd][..]));
    }

    /// The TLS 1.0/1.1 PRF on an odd-length secret (the halves share a byte), against Python's
    /// `hmac`/`hashlib` computing RFC 2246 §5 independently.
    #[test]
    fn tls10_prf_matches_an_independent_computation() {
        let secret: Vec<u8> = (0..47).collect();
        let seed: Vec<u8> = (100..132).collect();
        assert_eq!(
            prf(TLS10, &secret, false, b"test label", &seed, 80).unwrap(),
            unhex(
                "84de2a1e3728271279f9fdc72bb22396d552aac3c52d720f265eaadf31e7c4a064895501000d3aa7\
                 c44b1a78c2e54a1ff29c90bee23d36abbf546ea29630fec0ebcff88791a4756bb0f1296ccc428a0d"
            )
            .unwrap()
        );
    }

    /// The TLS 1.2 P_SHA256 test vector published on the IETF TLS list (first 32 bytes).
    #[test]
    fn tls12_prf_matches_the_published_vector() {
        let out = prf(
            TLS12,
            &unhex("9bbe436ba940f017b17652849a71db35").unwrap(),
            false,
            b"test label",
            &unhex("a0ba9f936cda311827a6f796ffd5198c").unwrap(),
            100,
        )
        .unwrap();
        assert_eq!(out.len(), 100);
        assert_eq!(
            out[..32],
            unhex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a").unwrap()[..]
        );
    }

    /// What to spoil in a sealed CBC record.
    #[derive(Clone, Copy, PartialEq)]
    enum Spoil {
        Nothing,
        Mac,
        Padding,
    }

    /// The client side of a CBC session, sealing records the way RFC 2246/5246 §6.2.3.2 and RFC
    /// 7366 say, with the same key block `Direction::pair` derives; the round trip checks the
    /// record layer (the real captures check the derivation against tshark).
    struct Sealer {
        version: u16,
        mac: hmac::Key,
        mac_len: usize,
        key: Vec<u8>,
        chained_iv: Option<[u8; BLOCK]>,
        etm: bool,
        seq: u64,
    }

    const MASTER: [u8; 48] = [0x42; 48];
    const CLIENT_RANDOM: [u8; 32] = [1; 32];
    const SERVER_RANDOM: [u8; 32] = [2; 32];

    /// (client sealer, client→server decryptor) for `cipher` under `version`.
    fn session(version: u16, cipher: u16, etm: bool) -> (Sealer, Direction) {
        let secrets = Secrets {
            master: Some(MASTER.to_vec()),
            ..Secrets::default()
        };
        let (c2s, _) = Direction::pair(
            &secrets,
            version,
            cipher,
            &CLIENT_RANDOM,
            &SERVER_RANDOM,
            etm,
        )
        .unwrap();
        let suite = suite(cipher, version).unwrap();
        let Protection::Cbc { key_len, mac } = suite.protection else {
            panic!("not CBC")
        };
        let mac_len = mac.digest_algorithm().output_len();
        let iv_len = if version == TLS10 { BLOCK } else { 0 };
        let mut seed = SERVER_RANDOM.to_vec();
        seed.extend_from_slice(&CLIENT_RANDOM);
        let block = prf(
            version,
            &MASTER,
            suite.sha384,
            b"key expansion",
            &seed,
            2 * (mac_len + key_len + iv_len),
        )
        .unwrap();
        let key_at = 2 * mac_len;
        let iv_at = key_at + 2 * key_len;
        let sealer = Sealer {
            version,
            mac: hmac::Key::new(mac, &block[..mac_len]),
            mac_len,
            key: block[key_at..key_at + key_len].to_vec(),
            chained_iv: (iv_len > 0).then(|| block[iv_at..iv_at + BLOCK].try_into().unwrap()),
            etm,
            seq: 0,
        };
        (sealer, c2s)
    }

    impl Sealer {
        fn mac(&self, ctype: u8, covered: &[u8]) -> Vec<u8> {
            let mut ctx = hmac::Context::with_key(&self.mac);
            ctx.update(&self.seq.to_be_bytes());
            ctx.update(&[ctype]);
            ctx.update(&self.version.to_be_bytes());
            ctx.update(&(covered.len() as u16).to_be_bytes());
            ctx.update(covered);
            ctx.sign().as_ref().to_vec()
        }

        fn encrypt(&self, iv: &[u8; BLOCK], msg: &[u8]) -> Vec<u8> {
            use cbc::cipher::{block_padding::NoPadding, BlockModeEncrypt, KeyIvInit};
            let mut out = vec![0; msg.len()];
            match self.key.len() {
                16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&self.key, iv)
                    .unwrap()
                    .encrypt_padded_b2b::<NoPadding>(msg, &mut out)
                    .unwrap(),
                _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(&self.key, iv)
                    .unwrap()
                    .encrypt_padded_b2b::<NoPadding>(msg, &mut out)
                    .unwrap(),
            };
            out
        }

        /// One record (header, body); `extra_pad` blocks of padding beyond the least.
        fn seal(
            &mut self,
            ctype: u8,
            plain: &[u8],
            extra_pad: usize,
            spoil: Spoil,
        ) -> ([u8; 5], Vec<u8>) {
            let v = self.version.to_be_bytes();
            let mut msg = plain.to_vec();
            if !self.etm {
                msg.extend(self.mac(ctype, plain));
            }
            if spoil == Spoil::Mac && !self.etm {
                *msg.last_mut().unwrap() ^= 1;
            }
            let pad = BLOCK - 1 - msg.len() % BLOCK + extra_pad * BLOCK;
            msg.extend(std::iter::repeat_n(pad as u8, pad + 1));
            if spoil == Spoil::Padding {
                let n = msg.len();
                msg[n - 2] ^= 0x80;
            }
            let explicit: [u8; BLOCK] = [0x5a ^ self.seq as u8; BLOCK];
            let iv = self.chained_iv.unwrap_or(explicit);
            let ct = self.encrypt(&iv, &msg);
            let mut body = if self.chained_iv.is_some() {
                self.chained_iv = Some(ct[ct.len() - BLOCK..].try_into().unwrap());
                Vec::new()
            } else {
                explicit.to_vec()
            };
            body.extend(ct);
            if self.etm {
                let mut tag = self.mac(ctype, &body);
                if spoil == Spoil::Mac {
                    tag[0] ^= 1;
                }
                body.extend(tag);
            }
            assert!(body.len() > self.mac_len);
            self.seq += 1;
            let n = body.len() as u16;
            ([ctype, v[0], v[1], (n >> 8) as u8, n as u8], body)
        }
    }

    #[test]
    fn tls10_cbc_chains_the_iv_across_records() {
        // DHE-RSA-AES256-SHA, as MySQL 5.5 servers negotiate it.
        let (mut tx, mut rx) = session(TLS10, 0x0039, false);
        // A Finished, an empty fragment (OpenSSL's TLS 1.0 countermeasure), a COM_QUIT, a
        // longer record with two blocks of extra padding.
        let records = [
            (
                0x16,
                vec![20, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                0,
            ),
            (0x17, vec![], 0),
            (0x17, vec![1, 0, 0, 0, 1], 0),
            (0x17, (0..=99).collect::<Vec<u8>>(), 2),
        ];
        for (i, (ctype, plain, pad)) in records.iter().enumerate() {
            let (header, body) = tx.seal(*ctype, plain, *pad, Spoil::Nothing);
            let o = rx.open(&header, &body).unwrap();
            assert_eq!((o.content_type.0, &o.data), (*ctype, plain), "record {i}");
        }
    }

    #[test]
    fn tls11_and_tls12_cbc_take_the_iv_from_the_record() {
        for (version, cipher) in [
            (0x0302, 0x002f), // RSA AES128-SHA, TLS 1.1
            (TLS12, 0xc013),  // ECDHE-RSA-AES128-SHA
            (TLS12, 0xc00a),  // ECDHE-ECDSA-AES256-SHA
            (TLS12, 0x003c),  // RSA AES128-SHA256
            (TLS12, 0x006b),  // DHE-RSA-AES256-SHA256
            (TLS12, 0xc028),  // ECDHE-RSA-AES256-SHA384, SHA-384 PRF
        ] {
            let (mut tx, mut rx) = session(version, cipher, false);
            for n in [0usize, 1, 15, 16, 17, 300] {
                let plain = vec![n as u8; n];
                let (header, body) = tx.seal(0x17, &plain, n % 3, Spoil::Nothing);
                let o = rx.open(&header, &body);
                assert_eq!(o.map(|o| o.data), Some(plain), "{cipher:#06x} {n}");
            }
        }
    }

    #[test]
    fn bad_padding_or_mac_is_undecryptable_and_leaves_the_direction_usable() {
        for (version, etm) in [(TLS10, false), (TLS12, false), (TLS12, true), (TLS10, true)] {
            for spoil in [Spoil::Mac, Spoil::Padding] {
                let (mut tx, mut rx) = session(version, 0xc014, etm);
                // TLS 1.0 chains the IV: the spoilt record and the good one each get their own
                // sealer, from the same start.
                let (mut tx2, _) = session(version, 0xc014, etm);
                let (header, body) = tx.seal(0x15, &[1, 0], 0, spoil);
                assert!(
                    rx.open(&header, &body).is_none(),
                    "{version:#06x} etm {etm} {}",
                    spoil == Spoil::Mac
                );
                let (header, body) = tx2.seal(0x15, &[1, 0], 0, Spoil::Nothing);
                if version == TLS10 {
                    // The chain moved on with the spoilt record, as the sender's would have.
                    assert!(rx.open(&header, &body).is_none());
                } else {
                    assert_eq!(rx.open(&header, &body).unwrap().data, [1, 0]);
                }
            }
        }
    }

    #[test]
    fn encrypt_then_mac_only_when_negotiated() {
        for version in [TLS10, TLS12] {
            let (mut tx, mut rx) = session(version, 0x0035, true);
            let (_, mut mte) = session(version, 0x0035, false);
            let (header, body) = tx.seal(0x17, b"\x01\x00\x00\x00\x01", 0, Spoil::Nothing);
            assert!(mte.open(&header, &body).is_none());
            assert_eq!(
                rx.open(&header, &body).unwrap().data,
                b"\x01\x00\x00\x00\x01"
            );
        }
    }

    #[test]
    fn short_and_odd_cbc_records_do_not_decrypt() {
        for (version, etm) in [(TLS10, false), (TLS10, true), (TLS12, false), (TLS12, true)] {
            let (_, mut rx) = session(version, 0xc028, etm);
            for n in 0..200 {
                let body: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
                let header = [0x17, 3, (version & 0xff) as u8, 0, n as u8];
                assert!(rx.open(&header, &body).is_none(), "{n}");
            }
        }
        // SSL 3.0 and TLS 1.3 have no CBC suite we decrypt; neither have 3DES suites.
        assert!(suite(0x0035, 0x0300).is_none());
        assert!(suite(0x0035, TLS13).is_none());
        assert!(suite(0x000a, TLS12).is_none());
    }

    /// RFC 8448 §3: the server handshake traffic secret gives this key and IV.
    #[test]
    fn hkdf_expand_label_matches_rfc8448() {
        let secret =
            unhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38").unwrap();
        assert_eq!(
            expand_label(&secret, false, "key", 16).unwrap(),
            unhex("3fce516009c21727d0f2e4e86ee403bc").unwrap()
        );
        assert_eq!(
            expand_label(&secret, false, "iv", 12).unwrap(),
            unhex("5d313eb2671276ee13000b30").unwrap()
        );
    }
}
