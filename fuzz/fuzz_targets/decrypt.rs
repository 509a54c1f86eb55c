//! Record decryption on arbitrary records, with real key-derivation paths: TLS 1.3 and TLS 1.2
//! secrets for each supported suite; a record must never panic, whatever its length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxyscope::tls::decrypt::{Direction, Secrets};

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
    let (version, cipher) = [
        (0x0304, 0x1301),
        (0x0304, 0x1302),
        (0x0304, 0x1303),
        (0x0303, 0xc02f),
        (0x0303, 0xc030),
        (0x0303, 0xcca8),
    ][usize::from(sel) % 6];
    let Some((mut c, mut s)) = Direction::pair(&secrets, version, cipher, &[1; 32], &[2; 32]) else {
        return;
    };
    for chunk in rest.chunks(usize::from(sel >> 3).max(1)) {
        let header = [0x17, 3, 3, (chunk.len() >> 8) as u8, chunk.len() as u8];
        let _ = c.open(&header, chunk);
        let _ = s.open(&header, chunk);
    }
});
