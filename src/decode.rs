//! Stage 2, decode: a frame's link layer (Ethernet with VLAN/QinQ, Linux SLL and SLL2, raw IP,
//! BSD null/loopback), IPv4/IPv6 and TCP, into a [`Segment`] that borrows the frame's bytes.
//!
//! Decoding is lax, as in etherparse's `LaxSlicedPacket`: a snaplen-cut packet still yields its
//! TCP header, and the bytes the cut removed are reported as `missing` so that reassembly can
//! record a gap of the right length. Anything that is not TCP is counted by [`Skip`] reason.

use std::fmt;
use std::net::IpAddr;

use etherparse::{EtherType, LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::source::{Frame, Linktype};
use crate::time::Timestamp;

/// One end of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Endpoint {
    /// IP address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// The VLAN ids a frame carried, outermost first (up to two; 0 where absent).
///
/// Part of a connection's identity: the same 5-tuple on different VLANs is a different
/// connection (tshark folds them, Zeek does not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vlans(pub [u16; 2]);

impl Vlans {
    /// True when the frame had no VLAN tag.
    pub fn is_empty(&self) -> bool {
        self.0 == [0, 0]
    }
}

impl fmt::Display for Vlans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [0, 0] => Ok(()),
            [a, 0] => write!(f, "vlan {}", a & 0x0fff),
            [a, b] => write!(f, "vlan {}/{}", a & 0x0fff, b & 0x0fff),
        }
    }
}

/// TCP header flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// FIN is set.
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN is set.
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// RST is set.
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// ACK is set.
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A decoded TCP segment, borrowing its payload from the frame.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Frame number within its file.
    pub frame_no: u64,
    /// File index within the run.
    pub file: usize,
    /// VLAN tags.
    pub vlans: Vlans,
    /// Sender.
    pub src: Endpoint,
    /// Receiver.
    pub dst: Endpoint,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when ACK is set).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Advertised window (unscaled).
    pub window: u16,
    /// Captured payload bytes.
    pub payload: &'a [u8],
    /// Payload bytes the capture did not keep (snap length), which follow `payload` on the wire.
    pub missing: u32,
}

/// Why a frame yielded no TCP segment. Counted, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// The interface's link type is not one we decode.
    UnsupportedLinktype(Linktype),
    /// The frame is shorter than its link-layer header.
    ShortLinkHeader,
    /// Not IP (ARP, LLDP, …).
    NotIp,
    /// An IP header that could not be parsed.
    BadIp,
    /// An IP fragment (not reassembled; TCP to MySQL does not fragment in practice).
    IpFragment,
    /// IP, but not TCP (UDP, ICMP, …).
    NotTcp,
    /// The TCP header is cut short or malformed.
    BadTcp,
}

impl Skip {
    /// True for reasons that mean damaged or unsupported input rather than other traffic.
    pub fn is_problem(self) -> bool {
        !matches!(self, Skip::NotIp | Skip::NotTcp)
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::UnsupportedLinktype(lt) => write!(f, "unsupported link type {}", lt.name()),
            Skip::ShortLinkHeader => f.write_str("frame shorter than its link header"),
            Skip::NotIp => f.write_str("not IP"),
            Skip::BadIp => f.write_str("malformed IP header"),
            Skip::IpFragment => f.write_str("IP fragment"),
            Skip::NotTcp => f.write_str("IP but not TCP"),
            Skip::BadTcp => f.write_str("truncated or malformed TCP header"),
        }
    }
}

/// Linux SLL header length and the offset of its protocol field.
const SLL_LEN: usize = 16;
const SLL_PROTO: usize = 14;
/// Linux SLL2 header length; the protocol field comes first.
const SLL2_LEN: usize = 20;
/// BSD null / loopback header: the 4-byte address family.
const NULL_LEN: usize = 4;

/// Decodes one frame down to its TCP segment.
pub fn decode<'a>(frame: &Frame<'a>) -> Result<Segment<'a>, Skip> {
    let data = frame.data;
    let sliced = match frame.linktype {
        Linktype::ETHERNET => {
            LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::ShortLinkHeader)?
        }
        Linktype::LINUX_SLL => {
            let proto = be16(data, SLL_PROTO).ok_or(Skip::ShortLinkHeader)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), data.get(SLL_LEN..).unwrap_or(&[]))
        }
        Linktype::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(Skip::ShortLinkHeader)?;
            let rest = data.get(SLL2_LEN..).ok_or(Skip::ShortLinkHeader)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), rest)
        }
        Linktype::NULL | Linktype::LOOP => {
            // The family's byte order depends on the capturing host; the IP version nibble
            // says the same thing without guessing.
            let rest = data.get(NULL_LEN..).ok_or(Skip::ShortLinkHeader)?;
            LaxSlicedPacket::from_ip(rest).map_err(|_| ip_or_not(rest))?
        }
        Linktype::RAW
        | Linktype::RAW_BSD12
        | Linktype::RAW_BSD14
        | Linktype::IPV4
        | Linktype::IPV6 => LaxSlicedPacket::from_ip(data).map_err(|_| ip_or_not(data))?,
        other => return Err(Skip::UnsupportedLinktype(other)),
    };
    let mut vlans = Vlans::default();
    let mut n = 0;
    for ext in &sliced.link_exts {
        if let LaxLinkExtSlice::Vlan(v) = ext {
            if let Some(slot) = vlans.0.get_mut(n) {
                // Keep the id only; 0 stays "absent" by storing id | 0x1000.
                *slot = v.vlan_identifier().value() | 0x1000;
                n += 1;
            }
        }
    }
    let (src_ip, dst_ip, payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                ip.payload(),
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                ip.payload(),
            )
        }
        Some(_) => return Err(Skip::NotIp),
        None => {
            return Err(match sliced.stop_err {
                Some((_, etherparse::err::Layer::Ethernet2Header)) => Skip::ShortLinkHeader,
                Some(_) => Skip::BadIp,
                None => Skip::NotIp,
            })
        }
    };
    if payload.fragmented {
        return Err(Skip::IpFragment);
    }
    if payload.ip_number != etherparse::IpNumber::TCP {
        return Err(Skip::NotTcp);
    }
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return Err(Skip::BadTcp);
    };
    // Bytes the snap length removed; the IP header's length is checked against the frame's
    // original length so that a lying IP length cannot invent a huge gap.
    let missing = if payload.incomplete {
        frame.orig_len.saturating_sub(data.len() as u32)
    } else {
        0
    };
    Ok(Segment {
        ts: frame.ts,
        frame_no: frame.frame_no,
        file: frame.file,
        vlans,
        src: Endpoint {
            ip: src_ip,
            port: tcp.source_port(),
        },
        dst: Endpoint {
            ip: dst_ip,
            port: tcp.destination_port(),
        },
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(tcp_flags(tcp.header_slice())),
        window: tcp.window_size(),
        payload: tcp.payload(),
        missing,
    })
}

fn tcp_flags(header: &[u8]) -> u8 {
    header.get(13).copied().unwrap_or(0)
}

fn ip_or_not(data: &[u8]) -> Skip {
    match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => Skip::BadIp,
        _ => Skip::NotIp,
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(linktype: Linktype, data: &[u8]) -> Frame<'_> {
        Frame {
            ts: Timestamp(0),
            frame_no: 1,
            file: 0,
            interface: 0,
            linktype,
            data,
            orig_len: data.len() as u32,
        }
    }

    /// IPv4 + TCP (SYN|ACK) from 10.0.0.1:3306 to 10.0.0.2:40000 with `payload`.
    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut v = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        v.extend_from_slice(&[0x0c, 0xea, 0x9c, 0x40]);
        v.extend_from_slice(&1000u32.to_be_bytes());
        v.extend_from_slice(&2000u32.to_be_bytes());
        v.extend_from_slice(&[0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn raw_ipv4_tcp() {
        let pkt = ipv4_tcp(b"hello");
        let s = decode(&frame(Linktype::RAW, &pkt)).unwrap();
        assert_eq!(s.src.to_string(), "10.0.0.1:3306");
        assert_eq!(s.dst.port, 40000);
        assert_eq!((s.seq, s.ack), (1000, 2000));
        assert!(s.flags.syn() && s.flags.ack() && !s.flags.fin());
        assert_eq!(s.payload, b"hello");
        assert_eq!(s.missing, 0);
    }

    #[test]
    fn sll2_and_null_and_vlan() {
        let ip = ipv4_tcp(b"x");
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        assert_eq!(
            decode(&frame(Linktype::LINUX_SLL2, &sll2)).unwrap().payload,
            b"x"
        );

        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(decode(&frame(Linktype::NULL, &null)).unwrap().payload, b"x");

        // Ethernet, 802.1ad outer tag 10, 802.1Q inner tag 20.
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x88, 0xa8, 0x00, 10, 0x81, 0x00, 0x00, 20, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        let s = decode(&frame(Linktype::ETHERNET, &eth)).unwrap();
        assert_eq!(s.vlans.to_string(), "vlan 10/20");
    }

    #[test]
    fn snaplen_cut_reports_missing_bytes() {
        let pkt = ipv4_tcp(&[7u8; 100]);
        let mut f = frame(Linktype::RAW, &pkt[..60]);
        f.orig_len = pkt.len() as u32;
        let s = decode(&f).unwrap();
        assert_eq!(s.payload.len(), 20);
        assert_eq!(s.missing, 80);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        assert_eq!(
            decode(&frame(Linktype(147), &[1, 2, 3])).unwrap_err(),
            Skip::UnsupportedLinktype(Linktype(147))
        );
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &[1, 2])).unwrap_err(),
            Skip::ShortLinkHeader
        );
        assert!(decode(&frame(Linktype::RAW, &[0x45, 0, 0])).is_err());
        let pkt = ipv4_tcp(b"");
        assert_eq!(
            decode(&frame(Linktype::RAW, &pkt[..30])).unwrap_err(),
            Skip::BadTcp
        );
    }
}
