//! Community ID v1 flow hashes (<https://github.com/corelight/community-id-spec>), so that a
//! connection here can be joined with the same flow in Zeek, Suricata, Arkime or Wireshark.
//!
//! `"1:" + base64(SHA1(seed (2 bytes, big-endian) ‖ src ip ‖ dst ip ‖ proto ‖ 0 ‖ src port ‖
//! dst port))`, the endpoints ordered so that both directions hash alike.

use crate::common::Endpoint;

/// IANA protocol number of TCP, the only transport hashed here.
pub const PROTO_TCP: u8 = 6;

/// The Community ID v1 of a TCP flow between `a` and `b` (either order), with `seed`
/// (0 unless the tools it is joined with use another). Computed by the `community-id` crate
/// (the implementation Vector uses); the spec's vectors and tshark's `communityid` dissector
/// check it in the tests.
pub fn tcp(a: Endpoint, b: Endpoint, seed: u16) -> String {
    ::community_id::calculate_community_id(
        seed,
        a.ip,
        b.ip,
        Some(a.port),
        Some(b.port),
        PROTO_TCP,
        Default::default(),
    )
    // The crate refuses only mixed address families and port-less TCP, which a TCP
    // connection cannot have; an empty id then rather than a panic.
    .unwrap_or_default()
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
}
