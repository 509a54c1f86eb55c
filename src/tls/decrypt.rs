//! Decryption with a key log (NSS SSLKEYLOGFILE format, from a file or a pcapng Decryption
//! Secrets Block), for the AEAD suites MySQL stacks use: AES-128/256-GCM and ChaCha20-Poly1305,
//! in TLS 1.2 (from the master secret, RFC 5246 §5/§6.3, RFC 5288) and TLS 1.3 (from the traffic
//! secrets, RFC 8446 §7). CBC suites are not decrypted. The crypto is ring's.

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

/// The AEAD and hash of a cipher suite we can decrypt.
#[derive(Clone, Copy, Debug)]
struct Suite {
    aead: &'static aead::Algorithm,
    sha384: bool,
    /// TLS 1.2 GCM: 4-byte implicit salt plus an 8-byte explicit nonce per record.
    explicit_nonce: bool,
}

fn suite(cipher: u16, tls13: bool) -> Option<Suite> {
    let (aead, sha384, gcm): (&'static aead::Algorithm, bool, bool) = match cipher {
        0x1301 => (&aead::AES_128_GCM, false, true),
        0x1302 => (&aead::AES_256_GCM, true, true),
        0x1303 => (&aead::CHACHA20_POLY1305, false, false),
        // TLS 1.2 ECDHE/DHE/RSA GCM and ChaCha20 suites.
        0x009c | 0x009e | 0xc02b | 0xc02f => (&aead::AES_128_GCM, false, true),
        0x009d | 0x009f | 0xc02c | 0xc030 => (&aead::AES_256_GCM, true, true),
        0xcca8..=0xccaa => (&aead::CHACHA20_POLY1305, false, false),
        _ => return None,
    };
    Some(Suite {
        aead,
        sha384,
        explicit_nonce: gcm && !tls13,
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

/// The TLS 1.2 PRF (P_SHA256 or P_SHA384).
fn prf(secret: &[u8], sha384: bool, label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let alg = if sha384 {
        hmac::HMAC_SHA384
    } else {
        hmac::HMAC_SHA256
    };
    let key = hmac::Key::new(alg, secret);
    let mut label_seed = label.to_vec();
    label_seed.extend_from_slice(seed);
    let mut a = hmac::sign(&key, &label_seed).as_ref().to_vec();
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&a);
        ctx.update(&label_seed);
        out.extend_from_slice(ctx.sign().as_ref());
        a = hmac::sign(&key, &a).as_ref().to_vec();
    }
    out.truncate(len);
    out
}

struct Keys {
    key: LessSafeKey,
    iv: Vec<u8>,
}

fn keys(suite: Suite, key: &[u8], iv: &[u8]) -> Option<Keys> {
    Some(Keys {
        key: LessSafeKey::new(UnboundKey::new(suite.aead, key).ok()?),
        iv: iv.to_vec(),
    })
}

/// Record decryption for one direction.
pub struct Direction {
    suite: Suite,
    tls13: bool,
    /// TLS 1.3: handshake keys, then application keys; TLS 1.2: one set.
    keys: Vec<Keys>,
    current: usize,
    seq: u64,
}

/// A decrypted record: its real content type and plaintext.
pub struct Opened {
    /// Content type (TLS 1.3: the inner type).
    pub content_type: u8,
    /// Plaintext.
    pub data: Vec<u8>,
}

impl Direction {
    /// Both directions' decryptors for a session, or None when the suite or secrets are missing.
    /// Returns (client→server, server→client).
    pub fn pair(
        secrets: &Secrets,
        version: u16,
        cipher: u16,
        client_random: &[u8],
        server_random: &[u8],
    ) -> Option<(Direction, Direction)> {
        let tls13 = version == 0x0304;
        let suite = suite(cipher, tls13)?;
        let klen = suite.aead.key_len();
        if tls13 {
            let make = |secret: &Option<Vec<u8>>| -> Option<Keys> {
                let s = secret.as_ref()?;
                keys(
                    suite,
                    &expand_label(s, suite.sha384, "key", klen)?,
                    &expand_label(s, suite.sha384, "iv", 12)?,
                )
            };
            let side = |hs: &Option<Vec<u8>>, ap: &Option<Vec<u8>>| {
                let keys: Vec<Keys> = [make(hs), make(ap)].into_iter().flatten().collect();
                (!keys.is_empty()).then_some(Direction {
                    suite,
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
        let iv_len = if suite.explicit_nonce { 4 } else { 12 };
        let mut seed = server_random.to_vec();
        seed.extend_from_slice(client_random);
        let block = prf(
            master,
            suite.sha384,
            b"key expansion",
            &seed,
            2 * klen + 2 * iv_len,
        );
        let (ck, rest) = block.split_at(klen);
        let (sk, rest) = rest.split_at(klen);
        let (civ, siv) = rest.split_at(iv_len);
        let one = |k: &[u8], iv: &[u8]| {
            keys(suite, k, iv).map(|k| Direction {
                suite,
                tls13,
                keys: vec![k],
                current: 0,
                seq: 0,
            })
        };
        Some((one(ck, civ)?, one(sk, siv)?))
    }

    /// Decrypts one record (`header` is its 5-byte header, `body` the rest).
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

    fn try_open(&self, header: &[u8; 5], body: &[u8]) -> Option<Opened> {
        let k = self.keys.get(self.current)?;
        let mut nonce = [0u8; 12];
        let (ciphertext, aad): (&[u8], Vec<u8>) = if self.suite.explicit_nonce {
            nonce.get_mut(..4)?.copy_from_slice(k.iv.get(..4)?);
            nonce.get_mut(4..)?.copy_from_slice(body.get(..8)?);
            let ct = body.get(8..)?;
            let plain_len = ct.len().checked_sub(16)? as u16;
            (ct, tls12_aad(self.seq, header, plain_len))
        } else {
            nonce.copy_from_slice(k.iv.get(..12)?);
            for (n, s) in nonce.iter_mut().skip(4).zip(self.seq.to_be_bytes()) {
                *n ^= s;
            }
            if self.tls13 {
                (body, header.to_vec())
            } else {
                let plain_len = body.len().checked_sub(16)? as u16;
                (body, tls12_aad(self.seq, header, plain_len))
            }
        };
        let mut buf = ciphertext.to_vec();
        let plain = k
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        if self.tls13 {
            // Inner plaintext: content, type byte, zero padding.
            let end = buf.iter().rposition(|&b| b != 0)?;
            let content_type = *buf.get(end)?;
            buf.truncate(end);
            Some(Opened {
                content_type,
                data: buf,
            })
        } else {
            Some(Opened {
                content_type: header[0],
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
