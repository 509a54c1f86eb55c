//! Record decryption on arbitrary records, with real key-derivation paths: TLS 1.3 and TLS 1.2
//! secrets for each supported AEAD suite, and AES-CBC suites in TLS 1.0 (chained IV), 1.1 and
//! 1.2, with and without encrypt-then-MAC; a record must never panic, whatever its length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::tls::decrypt::{Direction, Secrets};

/// (version, cipher, encrypt-then-MAC).
const SESSIONS: [(u16, u16, bool); 14] = [
    (0x0304, 0x1301, false),
    (0x0304, 0x1302, false),
    (0x0304, 0x1303, false),
    (0x0303, 0xc02f, false),
    (0x0303, 0xc030, false),
    (0x0303, 0xcca8, false),
    (0x0301, 0x0039, false),
    (0x0301, 0x002f, true),
    (0x0302, 0xc014, false),
    (0x0303, 0xc013, false),
    (0x0303, 0xc013, true),
    (0x0303, 0x003c, false),
    (0x0303, 0x006b, true),
    (0x0303, 0xc028, false),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let secret = vec![7u8; 48];
    let secrets = Secrets {
        master: Some(secret.clone()),
        client_handshake: Some(secret.clone()),
        server_handshake: Some(secret.clone()),
        client_traffic: Some(secret.clone()),
        server_traffic: Some(secret),
    };
    let (version, cipher, etm) = SESSIONS[usize::from(sel) % SESSIONS.len()];
    let Some((mut c, mut s)) = Direction::pair(&secrets, version, cipher, &[1; 32], &[2; 32], etm)
    else {
        return;
    };
    let [major, minor] = version.min(0x0303).to_be_bytes();
    for chunk in rest.chunks(usize::from(sel >> 3).max(1)) {
        let header = [
            0x17,
            major,
            minor,
            (chunk.len() >> 8) as u8,
            chunk.len() as u8,
        ];
        let _ = c.open(&header, chunk);
        let _ = s.open(&header, chunk);
    }
});
