//! Community ID v1 flow hashes (<https://github.com/corelight/community-id-spec>), so that a
//! connection here can be joined with the same flow in Zeek, Suricata, Arkime or Wireshark.
//!
//! `"1:" + base64(SHA1(seed (2 bytes, big-endian) ‖ src ip ‖ dst ip ‖ proto ‖ 0 ‖ src port ‖
//! dst port))`, the endpoints ordered so that both directions hash alike.

use sha1::{Digest, Sha1};

use crate::decode::Endpoint;

/// IANA protocol number of TCP, the only transport hashed here.
pub const PROTO_TCP: u8 = 6;

/// The Community ID v1 of a TCP flow between `a` and `b` (either order), with `seed`
/// (0 unless the tools it is joined with use another).
pub fn tcp(a: Endpoint, b: Endpoint, seed: u16) -> String {
    let key = |e: &Endpoint| (e.ip, e.port);
    // The spec orders by address, then port: the smaller endpoint is the source.
    let (src, dst) = if key(&a) <= key(&b) { (a, b) } else { (b, a) };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    for ip in [src.ip, dst.ip] {
        match ip {
            std::net::IpAddr::V4(v4) => h.update(v4.octets()),
            std::net::IpAddr::V6(v6) => h.update(v6.octets()),
        }
    }
    h.update([PROTO_TCP, 0]);
    h.update(src.port.to_be_bytes());
    h.update(dst.port.to_be_bytes());
    let digest = h.finalize();
    format!("1:{}", base64(&digest))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            port,
        }
    }

    /// The TCP flows of the spec's `baseline/baseline_deflt.json` (seed 0) and
    /// `baseline_seed1.json` (seed 1), both directions.
    const VECTORS: &[(&str, u16, &str, u16, u16, &str)] = &[
        (
            "128.232.110.120",
            34855,
            "66.35.250.204",
            80,
            0,
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        ),
        (
            "66.35.250.204",
            80,
            "128.232.110.120",
            34855,
            0,
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        ),
        (
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            63943,
            "2607:f8b0:400c:c03::1a",
            25,
            0,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
        ),
        (
            "2607:f8b0:400c:c03::1a",
            25,
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            63943,
            0,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
        ),
        (
            "128.232.110.120",
            34855,
            "66.35.250.204",
            80,
            1,
            "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
        ),
        (
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            63943,
            "2607:f8b0:400c:c03::1a",
            25,
            1,
            "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        ),
    ];

    #[test]
    fn spec_vectors() {
        for &(sip, sp, dip, dp, seed, want) in VECTORS {
            assert_eq!(
                tcp(ep(sip, sp), ep(dip, dp), seed),
                want,
                "{sip}:{sp} {dip}:{dp}"
            );
        }
    }

    #[test]
    fn base64_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
