//! Stage 2, decode: a frame's link layer (Ethernet with VLAN/QinQ, PPPoE sessions, Linux SLL
//! and SLL2, raw IP, BSD null/loopback), IPv4/IPv6 (extension headers skipped, fragments
//! reassembled by [`Decoder`]), tunnels (GRE, GRETAP, ERSPAN I/II/III, VXLAN, IP in IP) and TCP,
//! into a [`Segment`] that borrows the frame's bytes (or the reassembled datagram's).
//!
//! Decoding is lax: a snaplen-cut packet still yields its TCP header, and the bytes the cut
//! removed are reported as `missing` so that reassembly can record a gap of the right length.
//! Anything that is not TCP is counted by [`Skip`] reason.
//!
//! VLAN tags: a tunnel's inner Ethernet frame starts the list afresh, so the tags that identify
//! a connection are those of the traffic itself, not of the mirror session carrying it.

pub mod frag;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// Not IP (ARP, LLDP, PPPoE discovery, PPP control, …).
    NotIp,
    /// An IP header that could not be parsed.
    BadIp,
    /// An IP fragment: held for reassembly (the frame that completes the datagram yields the
    /// segment), or, without a reassembler, not decoded.
    IpFragment,
    /// IP, but not TCP (UDP, ICMP, …).
    NotTcp,
    /// The TCP header is cut short or malformed.
    BadTcp,
    /// A tunnel header (GRE, ERSPAN, VXLAN, PPPoE) cut short or malformed.
    BadTunnel,
    /// More nested encapsulations than [`MAX_ENCAPSULATIONS`].
    TooDeep,
}

impl Skip {
    /// True for reasons that mean damaged or unsupported input rather than other traffic.
    pub fn is_problem(self) -> bool {
        !matches!(self, Skip::NotIp | Skip::NotTcp | Skip::IpFragment)
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
            Skip::BadTunnel => f.write_str("truncated or malformed tunnel header"),
            Skip::TooDeep => f.write_str("too many nested encapsulations"),
        }
    }
}

/// Tunnels (GRE, ERSPAN, VXLAN, IP in IP, bridged Ethernet) followed into at most; deeper
/// frames are skipped, so hostile nesting costs bounded work.
pub const MAX_ENCAPSULATIONS: usize = 4;
/// Headers walked per frame at most (VLAN tags, IPv6 extension headers, tunnels).
const MAX_STEPS: usize = 32;

/// Linux SLL header length and the offset of its protocol field.
const SLL_LEN: usize = 16;
const SLL_PROTO: usize = 14;
/// Linux SLL2 header length; the protocol field comes first.
const SLL2_LEN: usize = 20;
/// BSD null / loopback header: the 4-byte address family.
const NULL_LEN: usize = 4;
/// Ethernet II header.
const ETH_LEN: usize = 14;

/// EtherTypes (and GRE protocol types, which share the registry).
struct EtherType;
impl EtherType {
    const IPV4: u16 = 0x0800;
    const IPV6: u16 = 0x86dd;
    const VLAN: u16 = 0x8100;
    const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag.
    const QINQ_OLD: u16 = 0x9100;
    const PPPOE_DISCOVERY: u16 = 0x8863;
    const PPPOE_SESSION: u16 = 0x8864;
    /// Transparent Ethernet bridging (GRETAP, NVGRE).
    const TEB: u16 = 0x6558;
    /// ERSPAN type I (no GRE sequence number) and II.
    const ERSPAN_2: u16 = 0x88be;
    const ERSPAN_3: u16 = 0x22eb;
}

/// PPP protocol numbers carried in PPPoE sessions.
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
/// PPPoE header: version/type, code, session id, length.
const PPPOE_LEN: usize = 6;
/// PPPoE version 1, type 1.
const PPPOE_VER_TYPE: u8 = 0x11;

/// IP protocol numbers (and IPv6 next headers).
struct Proto;
impl Proto {
    const HOP_BY_HOP: u8 = 0;
    const IPIP: u8 = 4;
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const IPV6: u8 = 41;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const GRE: u8 = 47;
    const AH: u8 = 51;
    const DEST_OPTS: u8 = 60;
}

/// GRE flag bits (RFC 2784, RFC 2890) and the version field.
const GRE_CHECKSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQ: u16 = 0x1000;
const GRE_VERSION: u16 = 0x0007;
/// ERSPAN type II header, and type III with its optional platform sub-header.
const ERSPAN2_LEN: usize = 8;
const ERSPAN3_LEN: usize = 12;
const ERSPAN3_SUBHEADER: usize = 8;
/// ERSPAN type III frame types (the FT field): Ethernet, IP.
const ERSPAN3_FT_ETHERNET: u32 = 0;
const ERSPAN3_FT_IP: u32 = 2;
/// VXLAN's IANA UDP port and header (RFC 7348).
const VXLAN_PORT: u16 = 4789;
const VXLAN_LEN: usize = 8;

/// A decoder that reassembles IP fragments; [`decode`] is the same without that state.
#[derive(Debug)]
pub struct Decoder {
    frags: frag::Reassembler,
    /// Reassembled payloads a segment may borrow: one per fragmented layer of a frame (an
    /// outer tunnel datagram and the datagram inside it).
    bufs: [Vec<u8>; 2],
}

impl Decoder {
    /// A decoder reassembling within `cfg`.
    pub fn new(cfg: frag::Config) -> Self {
        Decoder {
            frags: frag::Reassembler::new(cfg),
            bufs: Default::default(),
        }
    }

    /// Decodes one frame down to its TCP segment; a fragment is held, and the frame that
    /// completes its datagram yields the segment.
    pub fn decode<'a>(&'a mut self, frame: &Frame<'a>) -> Result<Segment<'a>, Skip> {
        let Decoder { frags, bufs } = self;
        walk(frame, Some((frags, bufs.as_mut_slice())))
    }

    /// Fragment frames whose datagram was never completed (overlap, timeout, budget, snap
    /// length, or still pending).
    pub fn fragments_dropped(&self) -> u64 {
        self.frags.dropped()
    }

    /// Datagrams pending reassembly and the bytes they are charged.
    pub fn fragments_footprint(&self) -> (usize, usize) {
        self.frags.footprint()
    }
}

/// Decodes one frame down to its TCP segment, without reassembling fragments.
pub fn decode<'a>(frame: &Frame<'a>) -> Result<Segment<'a>, Skip> {
    walk(frame, None)
}

/// What comes next while walking a frame's headers.
enum Next<'a> {
    /// An Ethernet II frame.
    Ethernet(&'a [u8]),
    /// A payload of this EtherType.
    Ether(u16, &'a [u8]),
    /// An IP packet (either version).
    Ip(&'a [u8]),
}

/// The reassembler and the buffers a frame may fill.
type Reasm<'a> = (&'a mut frag::Reassembler, &'a mut [Vec<u8>]);

/// The network layer found: addresses, the next protocol and its bytes.
struct Net<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &'a [u8],
    /// The snap length cut the packet.
    cut: bool,
    /// The packet is a fragment: (key, offset, more).
    frag: Option<(frag::Key, usize, bool)>,
    v6: bool,
}

fn walk<'a>(frame: &Frame<'a>, mut reasm: Option<Reasm<'a>>) -> Result<Segment<'a>, Skip> {
    let data = frame.data;
    let mut next = match frame.linktype {
        Linktype::ETHERNET => {
            if data.len() < ETH_LEN {
                return Err(Skip::ShortLinkHeader);
            }
            Next::Ethernet(data)
        }
        Linktype::LINUX_SLL => {
            let proto = be16(data, SLL_PROTO).ok_or(Skip::ShortLinkHeader)?;
            Next::Ether(proto, data.get(SLL_LEN..).unwrap_or(&[]))
        }
        Linktype::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(Skip::ShortLinkHeader)?;
            Next::Ether(proto, data.get(SLL2_LEN..).ok_or(Skip::ShortLinkHeader)?)
        }
        Linktype::NULL | Linktype::LOOP => {
            // The family's byte order depends on the capturing host; the IP version nibble
            // says the same thing without guessing.
            Next::Ip(data.get(NULL_LEN..).ok_or(Skip::ShortLinkHeader)?)
        }
        Linktype::RAW
        | Linktype::RAW_BSD12
        | Linktype::RAW_BSD14
        | Linktype::IPV4
        | Linktype::IPV6 => Next::Ip(data),
        other => return Err(Skip::UnsupportedLinktype(other)),
    };
    let mut vlans = Vlans::default();
    let mut n_vlans = 0;
    let mut depth = 0;
    let mut cut = false;
    for _ in 0..MAX_STEPS {
        next = match next {
            Next::Ethernet(d) => {
                let t = be16(d, 12).ok_or(if depth == 0 {
                    Skip::ShortLinkHeader
                } else {
                    Skip::BadTunnel
                })?;
                Next::Ether(t, d.get(ETH_LEN..).unwrap_or(&[]))
            }
            Next::Ether(t, d) => match t {
                EtherType::VLAN | EtherType::QINQ | EtherType::QINQ_OLD => {
                    let tci = be16(d, 0).ok_or(Skip::ShortLinkHeader)?;
                    let inner = be16(d, 2).ok_or(Skip::ShortLinkHeader)?;
                    if let Some(slot) = vlans.0.get_mut(n_vlans) {
                        // Keep the id only; 0 stays "absent" by storing id | 0x1000.
                        *slot = (tci & 0x0fff) | 0x1000;
                        n_vlans += 1;
                    }
                    Next::Ether(inner, d.get(4..).unwrap_or(&[]))
                }
                EtherType::PPPOE_SESSION => pppoe(d)?,
                // Session set-up: no IP in it.
                EtherType::PPPOE_DISCOVERY => return Err(Skip::NotIp),
                EtherType::IPV4 | EtherType::IPV6 => Next::Ip(d),
                _ => return Err(Skip::NotIp),
            },
            Next::Ip(d) => {
                let mut net = ip(d)?;
                cut |= net.cut;
                if let Some((key, offset, more)) = net.frag {
                    let Some((frags, bufs)) = reasm.take() else {
                        return Err(Skip::IpFragment);
                    };
                    if net.cut {
                        frags.discard(&key);
                        return Err(Skip::IpFragment);
                    }
                    let Some((buf, rest)) = bufs.split_first_mut() else {
                        frags.discard(&key);
                        return Err(Skip::IpFragment);
                    };
                    let piece = frag::Piece {
                        offset,
                        more,
                        data: net.payload,
                        proto: net.proto,
                    };
                    match frags.add(frame.ts, key, piece, buf) {
                        frag::Added::Complete(proto) => {
                            let whole: &'a [u8] = buf;
                            net.payload = whole;
                            net.proto = proto;
                            if net.v6 {
                                (net.proto, net.payload) = v6_extensions(net.proto, net.payload)?;
                            }
                        }
                        frag::Added::Held | frag::Added::Dropped => return Err(Skip::IpFragment),
                    }
                    reasm = Some((frags, rest));
                }
                match net.proto {
                    Proto::TCP => return tcp(frame, &net, vlans, cut),
                    Proto::UDP => {
                        let Some(vx) = vxlan(net.payload) else {
                            return Err(Skip::NotTcp);
                        };
                        tunnel(&mut depth)?;
                        (vlans, n_vlans) = (Vlans::default(), 0);
                        Next::Ethernet(vx?)
                    }
                    Proto::GRE => {
                        tunnel(&mut depth)?;
                        (vlans, n_vlans) = (Vlans::default(), 0);
                        gre(net.payload)?
                    }
                    Proto::IPIP | Proto::IPV6 => {
                        tunnel(&mut depth)?;
                        Next::Ip(net.payload)
                    }
                    _ => return Err(Skip::NotTcp),
                }
            }
        };
    }
    Err(Skip::TooDeep)
}

/// Counts one more tunnel entered.
fn tunnel(depth: &mut usize) -> Result<(), Skip> {
    *depth += 1;
    if *depth > MAX_ENCAPSULATIONS {
        Err(Skip::TooDeep)
    } else {
        Ok(())
    }
}

/// A PPPoE session header and the PPP protocol field.
fn pppoe(d: &[u8]) -> Result<Next<'_>, Skip> {
    let ver_type = *d.first().ok_or(Skip::BadTunnel)?;
    let len = usize::from(be16(d, 4).ok_or(Skip::BadTunnel)?);
    if ver_type != PPPOE_VER_TYPE {
        return Err(Skip::BadTunnel);
    }
    let ppp = d.get(PPPOE_LEN..).unwrap_or(&[]);
    // The length covers the PPP frame; bytes past it are Ethernet padding. A snap-length cut
    // leaves fewer.
    let ppp = ppp.get(..len).unwrap_or(ppp);
    let proto = be16(ppp, 0).ok_or(Skip::BadTunnel)?;
    let rest = ppp.get(2..).unwrap_or(&[]);
    match proto {
        PPP_IPV4 | PPP_IPV6 => Ok(Next::Ip(rest)),
        _ => Err(Skip::NotIp),
    }
}

/// A GRE header (RFC 2784 with RFC 2890's key and sequence number), and ERSPAN inside it.
fn gre(d: &[u8]) -> Result<Next<'_>, Skip> {
    let flags = be16(d, 0).ok_or(Skip::BadTunnel)?;
    let proto = be16(d, 2).ok_or(Skip::BadTunnel)?;
    if flags & GRE_VERSION != 0 || flags & GRE_ROUTING != 0 {
        // Version 1 is PPTP's enhanced GRE (PPP inside); routing is RFC 1701's, obsolete.
        return Err(Skip::NotIp);
    }
    let mut len = 4;
    for bit in [GRE_CHECKSUM, GRE_KEY, GRE_SEQ] {
        if flags & bit != 0 {
            len += 4;
        }
    }
    let rest = d.get(len..).ok_or(Skip::BadTunnel)?;
    match proto {
        EtherType::IPV4 | EtherType::IPV6 => Ok(Next::Ip(rest)),
        EtherType::TEB => Ok(Next::Ethernet(rest)),
        // Type I has no sequence number and no ERSPAN header; type II has both.
        EtherType::ERSPAN_2 if flags & GRE_SEQ == 0 => Ok(Next::Ethernet(rest)),
        EtherType::ERSPAN_2 => Ok(Next::Ethernet(
            rest.get(ERSPAN2_LEN..).ok_or(Skip::BadTunnel)?,
        )),
        EtherType::ERSPAN_3 => {
            let word = be32(rest, 8).ok_or(Skip::BadTunnel)?;
            let optional = word & 1 != 0;
            let frame_type = (word >> 10) & 0x1f;
            let skip = ERSPAN3_LEN + if optional { ERSPAN3_SUBHEADER } else { 0 };
            let inner = rest.get(skip..).ok_or(Skip::BadTunnel)?;
            match frame_type {
                ERSPAN3_FT_ETHERNET => Ok(Next::Ethernet(inner)),
                ERSPAN3_FT_IP => Ok(Next::Ip(inner)),
                _ => Err(Skip::NotIp),
            }
        }
        _ => Err(Skip::NotIp),
    }
}

/// A VXLAN packet inside a UDP datagram: None when the datagram is not to VXLAN's port.
fn vxlan(udp: &[u8]) -> Option<Result<&[u8], Skip>> {
    if be16(udp, 2)? != VXLAN_PORT {
        return None;
    }
    let len = usize::from(be16(udp, 4).unwrap_or(0));
    let body = udp.get(8..).unwrap_or(&[]);
    // The UDP length bounds the payload (Ethernet padding follows); a cut leaves fewer.
    let body = body.get(..len.saturating_sub(8)).unwrap_or(body);
    Some(body.get(VXLAN_LEN..).ok_or(Skip::BadTunnel))
}

/// An IPv4 or IPv6 header, with IPv6 extension headers skipped.
fn ip(d: &[u8]) -> Result<Net<'_>, Skip> {
    match d.first().map(|b| b >> 4) {
        Some(4) => ipv4(d),
        Some(6) => ipv6(d),
        Some(_) => Err(Skip::NotIp),
        None => Err(Skip::BadIp),
    }
}

fn ipv4(d: &[u8]) -> Result<Net<'_>, Skip> {
    let ihl = usize::from(d.first().copied().unwrap_or(0) & 0x0f) * 4;
    let total = usize::from(be16(d, 2).ok_or(Skip::BadIp)?);
    if ihl < 20 || d.len() < ihl {
        return Err(Skip::BadIp);
    }
    // A total length of 0 is what TCP segmentation offload leaves in captures of large
    // segments: the packet is the rest of the frame.
    let total = if total == 0 { d.len() } else { total };
    if total < ihl {
        return Err(Skip::BadIp);
    }
    let cut = d.len() < total;
    let payload = d.get(ihl..total.min(d.len())).unwrap_or(&[]);
    let src = IpAddr::V4(addr4(d, 12).ok_or(Skip::BadIp)?);
    let dst = IpAddr::V4(addr4(d, 16).ok_or(Skip::BadIp)?);
    let proto = d.get(9).copied().ok_or(Skip::BadIp)?;
    let id = be16(d, 4).ok_or(Skip::BadIp)?;
    let flags_offset = be16(d, 6).ok_or(Skip::BadIp)?;
    let more = flags_offset & 0x2000 != 0;
    let offset = usize::from(flags_offset & 0x1fff) * 8;
    let frag = (more || offset != 0).then_some((
        frag::Key {
            src,
            dst,
            id: u32::from(id),
            proto,
        },
        offset,
        more,
    ));
    Ok(Net {
        src,
        dst,
        proto,
        payload,
        cut,
        frag,
        v6: false,
    })
}

fn ipv6(d: &[u8]) -> Result<Net<'_>, Skip> {
    let plen = usize::from(be16(d, 4).ok_or(Skip::BadIp)?);
    let nh = d.get(6).copied().ok_or(Skip::BadIp)?;
    let src = IpAddr::V6(addr6(d, 8).ok_or(Skip::BadIp)?);
    let dst = IpAddr::V6(addr6(d, 24).ok_or(Skip::BadIp)?);
    let body = d.get(40..).unwrap_or(&[]);
    // 0 is a jumbogram's or TSO's length: the packet is the rest of the frame.
    let cut = plen != 0 && body.len() < plen;
    let body = if plen == 0 {
        body
    } else {
        body.get(..plen).unwrap_or(body)
    };
    let (mut proto, mut payload) = v6_extensions(nh, body)?;
    let mut frag = None;
    if proto == Proto::FRAGMENT {
        let h = payload.get(..8).ok_or(Skip::BadIp)?;
        let next = h.first().copied().unwrap_or(0);
        let off_flags = be16(h, 2).ok_or(Skip::BadIp)?;
        let id = be32(h, 4).ok_or(Skip::BadIp)?;
        let offset = usize::from(off_flags & 0xfff8);
        let more = off_flags & 1 != 0;
        let rest = payload.get(8..).unwrap_or(&[]);
        if offset == 0 && !more {
            // An atomic fragment (RFC 6946): the whole datagram.
            (proto, payload) = v6_extensions(next, rest)?;
        } else {
            proto = next;
            payload = rest;
            frag = Some((
                frag::Key {
                    src,
                    dst,
                    id,
                    proto: 0,
                },
                offset,
                more,
            ));
        }
    }
    Ok(Net {
        src,
        dst,
        proto,
        payload,
        cut,
        frag,
        v6: true,
    })
}

/// Skips IPv6 extension headers (hop-by-hop, routing, destination options, authentication)
/// up to the upper layer or a fragment header.
fn v6_extensions(mut nh: u8, mut d: &[u8]) -> Result<(u8, &[u8]), Skip> {
    for _ in 0..MAX_STEPS {
        let len = match nh {
            Proto::HOP_BY_HOP | Proto::ROUTING | Proto::DEST_OPTS => {
                (usize::from(*d.get(1).ok_or(Skip::BadIp)?) + 1) * 8
            }
            Proto::AH => (usize::from(*d.get(1).ok_or(Skip::BadIp)?) + 2) * 4,
            _ => return Ok((nh, d)),
        };
        nh = *d.first().ok_or(Skip::BadIp)?;
        d = d.get(len..).ok_or(Skip::BadIp)?;
    }
    Err(Skip::BadIp)
}

fn tcp<'a>(frame: &Frame<'a>, net: &Net<'a>, vlans: Vlans, cut: bool) -> Result<Segment<'a>, Skip> {
    let d = net.payload;
    let doff = usize::from(d.get(12).copied().ok_or(Skip::BadTcp)? >> 4) * 4;
    if doff < 20 {
        return Err(Skip::BadTcp);
    }
    let payload = d.get(doff..).ok_or(Skip::BadTcp)?;
    // Bytes the snap length removed; the IP header's length is checked against the frame's
    // original length so that a lying IP length cannot invent a huge gap.
    let missing = if cut {
        frame.orig_len.saturating_sub(frame.data.len() as u32)
    } else {
        0
    };
    Ok(Segment {
        ts: frame.ts,
        frame_no: frame.frame_no,
        file: frame.file,
        vlans,
        src: Endpoint {
            ip: net.src,
            port: be16(d, 0).ok_or(Skip::BadTcp)?,
        },
        dst: Endpoint {
            ip: net.dst,
            port: be16(d, 2).ok_or(Skip::BadTcp)?,
        },
        seq: be32(d, 4).ok_or(Skip::BadTcp)?,
        ack: be32(d, 8).ok_or(Skip::BadTcp)?,
        flags: TcpFlags(d.get(13).copied().unwrap_or(0)),
        window: be16(d, 14).ok_or(Skip::BadTcp)?,
        payload,
        missing,
    })
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn addr4(data: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn addr6(data: &[u8], at: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = data.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
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

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// IPv4 header (no options) around `payload`, with `proto` and fragment fields.
    fn ipv4(proto: u8, id: u16, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut v = vec![0x45, 0];
        v.extend_from_slice(&total.to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&flags_offset.to_be_bytes());
        v.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        v.extend_from_slice(payload);
        v
    }

    fn tcp_of(pkt: &[u8]) -> &[u8] {
        &pkt[20..]
    }

    #[test]
    fn pppoe_over_vlan_and_discovery() {
        let ip = ipv4_tcp(b"pp");
        let mut body = vec![0x11, 0, 0x12, 0x34];
        body.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
        body.extend_from_slice(&PPP_IPV4.to_be_bytes());
        body.extend_from_slice(&ip);
        // Ethernet padding past the PPPoE length is ignored.
        body.extend_from_slice(&[0; 6]);
        let mut tagged = vec![0x00, 100];
        tagged.extend_from_slice(&EtherType::PPPOE_SESSION.to_be_bytes());
        tagged.extend_from_slice(&body);
        let f = eth(EtherType::VLAN, &tagged);
        let s = decode(&frame(Linktype::ETHERNET, &f)).unwrap();
        assert_eq!(s.payload, b"pp");
        assert_eq!(s.vlans.to_string(), "vlan 100");
        let disc = eth(EtherType::PPPOE_DISCOVERY, &[0x11, 0x09, 0, 0, 0, 0]);
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &disc)).unwrap_err(),
            Skip::NotIp
        );
        // LCP, not IP.
        let mut lcp = body.clone();
        lcp[6..8].copy_from_slice(&0xc021u16.to_be_bytes());
        let f = eth(EtherType::PPPOE_SESSION, &lcp);
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &f)).unwrap_err(),
            Skip::NotIp
        );
    }

    #[test]
    fn gre_with_options_teb_and_erspan() {
        let inner = ipv4_tcp(b"in");
        let inner_eth = eth(EtherType::IPV4, &inner);
        // Checksum, key and sequence number: 12 bytes of options.
        let mut g = vec![0xb0, 0x00];
        g.extend_from_slice(&EtherType::TEB.to_be_bytes());
        g.extend_from_slice(&[0; 12]);
        g.extend_from_slice(&inner_eth);
        let f = eth(EtherType::IPV4, &ipv4(Proto::GRE, 1, 0, &g));
        let s = decode(&frame(Linktype::ETHERNET, &f)).unwrap();
        assert_eq!(
            (s.payload, s.src.to_string().as_str()),
            (&b"in"[..], "10.0.0.1:3306")
        );

        // ERSPAN II: sequence number, 8-byte header.
        let mut g = vec![0x10, 0x00];
        g.extend_from_slice(&EtherType::ERSPAN_2.to_be_bytes());
        g.extend_from_slice(&[0, 0, 0, 1]);
        g.extend_from_slice(&[0x10, 0, 0, 10, 0, 0, 0, 0]);
        g.extend_from_slice(&inner_eth);
        let f = eth(EtherType::IPV4, &ipv4(Proto::GRE, 2, 0, &g));
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &f)).unwrap().payload,
            b"in"
        );

        // ERSPAN III with the optional sub-header (O bit), and cut inside its header.
        let mut g = vec![0x10, 0x00];
        g.extend_from_slice(&EtherType::ERSPAN_3.to_be_bytes());
        g.extend_from_slice(&[0, 0, 0, 1]);
        g.extend_from_slice(&[0x20, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0x01]);
        g.extend_from_slice(&[0; ERSPAN3_SUBHEADER]);
        g.extend_from_slice(&inner_eth);
        let f = eth(EtherType::IPV4, &ipv4(Proto::GRE, 3, 0, &g));
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &f)).unwrap().payload,
            b"in"
        );
        let cut = eth(EtherType::IPV4, &ipv4(Proto::GRE, 3, 0, &g[..14]));
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &cut)).unwrap_err(),
            Skip::BadTunnel
        );
    }

    #[test]
    fn vxlan_and_nesting_bound() {
        let inner = eth(EtherType::IPV4, &ipv4_tcp(b"vx"));
        let vx = |inner: &[u8]| {
            let mut u = vec![0x9c, 0x40];
            u.extend_from_slice(&VXLAN_PORT.to_be_bytes());
            u.extend_from_slice(&((8 + VXLAN_LEN + inner.len()) as u16).to_be_bytes());
            // UDP checksum, then VXLAN: I flag, VNI 42.
            u.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 0x2a, 0]);
            u.extend_from_slice(inner);
            eth(EtherType::IPV4, &ipv4(Proto::UDP, 9, 0, &u))
        };
        let once = vx(&inner);
        let s = decode(&frame(Linktype::ETHERNET, &once)).unwrap();
        assert_eq!(s.payload, b"vx");
        let mut f = inner.clone();
        for _ in 0..MAX_ENCAPSULATIONS {
            f = vx(&f);
        }
        assert!(decode(&frame(Linktype::ETHERNET, &f)).is_ok());
        let f = vx(&f);
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &f)).unwrap_err(),
            Skip::TooDeep
        );
        // Other UDP is not TCP.
        let mut dns = once.clone();
        dns[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &dns)).unwrap_err(),
            Skip::NotTcp
        );
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        let seg = tcp_of(&ipv4_tcp(b"0123456789abcdef-tail")).to_vec();
        let v6 = |nh: u8, body: &[u8]| {
            let mut v = vec![0x60, 0, 0, 0];
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            v.extend_from_slice(&[nh, 64]);
            v.extend_from_slice(&[0x20, 1, 0x0d, 0xb8]);
            v.extend_from_slice(&[0; 11]);
            v.push(1);
            v.extend_from_slice(&[0x20, 1, 0x0d, 0xb8]);
            v.extend_from_slice(&[0; 11]);
            v.push(2);
            v.extend_from_slice(body);
            v
        };
        // Hop-by-hop then destination options, then TCP.
        let mut body = vec![Proto::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        body.extend_from_slice(&[Proto::TCP, 0, 1, 4, 0, 0, 0, 0]);
        body.extend_from_slice(&seg);
        let p = v6(Proto::HOP_BY_HOP, &body);
        let s = decode(&frame(Linktype::RAW, &p)).unwrap();
        assert_eq!(s.payload, b"0123456789abcdef-tail");
        assert_eq!(s.src.to_string(), "[2001:db8::1]:3306");

        // Two fragments, second first; the stateless decoder only skips them.
        let (a, b) = seg.split_at(24);
        let frag = |off_more: u16, data: &[u8]| {
            let mut h = vec![Proto::TCP, 0];
            h.extend_from_slice(&off_more.to_be_bytes());
            h.extend_from_slice(&7u32.to_be_bytes());
            h.extend_from_slice(data);
            v6(Proto::FRAGMENT, &h)
        };
        let second = frag(24, b);
        let first = frag(1, a);
        assert_eq!(
            decode(&frame(Linktype::RAW, &first)).unwrap_err(),
            Skip::IpFragment
        );
        let mut dec = Decoder::new(frag::Config::default());
        assert_eq!(
            dec.decode(&frame(Linktype::RAW, &second)).unwrap_err(),
            Skip::IpFragment
        );
        let mut f = frame(Linktype::RAW, &first);
        f.frame_no = 2;
        let s = dec.decode(&f).unwrap();
        assert_eq!((s.payload, s.frame_no), (&b"0123456789abcdef-tail"[..], 2));
        assert_eq!(dec.fragments_dropped(), 0);
        assert_eq!(dec.fragments_footprint(), (0, 0));
    }

    #[test]
    fn ipv4_fragments_in_a_tunnel_reassemble() {
        // A VXLAN datagram fragmented on the IPv4 underlay.
        let inner = eth(EtherType::IPV4, &ipv4_tcp(b"payload!"));
        let mut u = vec![0x9c, 0x40];
        u.extend_from_slice(&VXLAN_PORT.to_be_bytes());
        u.extend_from_slice(&((8 + VXLAN_LEN + inner.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 0x2a, 0]);
        u.extend_from_slice(&inner);
        let (a, b) = u.split_at(32);
        let f1 = eth(EtherType::IPV4, &ipv4(Proto::UDP, 5, 0x2000, a));
        let f2 = eth(EtherType::IPV4, &ipv4(Proto::UDP, 5, 32 / 8, b));
        let mut dec = Decoder::new(frag::Config::default());
        assert_eq!(
            dec.decode(&frame(Linktype::ETHERNET, &f1)).unwrap_err(),
            Skip::IpFragment
        );
        let s = dec.decode(&frame(Linktype::ETHERNET, &f2)).unwrap();
        assert_eq!(s.payload, b"payload!");
        // A fragment cut by the snap length cannot be used: counted.
        let mut cut = frame(Linktype::ETHERNET, &f1[..40]);
        cut.orig_len = f1.len() as u32;
        assert_eq!(dec.decode(&cut).unwrap_err(), Skip::IpFragment);
        assert_eq!(dec.fragments_dropped(), 1);
    }
}
