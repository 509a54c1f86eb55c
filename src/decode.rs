//! Stage 2, decode: a frame's link layer (Ethernet with VLAN/QinQ, PPPoE sessions, Linux SLL
//! and SLL2, raw IP, BSD null/loopback), IPv4/IPv6 (extension headers skipped, fragments
//! reassembled by [`Decoder`]), tunnels (GRE, GRETAP, ERSPAN I/II/III, VXLAN, IP in IP) and TCP,
//! into a [`Segment`] that borrows the frame's bytes (or the reassembled datagram's).
//!
//! etherparse parses the standard layers (Ethernet, VLAN tags, IPv4, IPv6 and its extension
//! headers, UDP, TCP), again on each inner frame; what it lacks is read here: the SLL, SLL2
//! and null link headers, PPPoE, GRE, ERSPAN, VXLAN, and the walk from a tunnel to its inner
//! frame. Plain Ethernet/IPv4/TCP is read by hand first, for speed.
//!
//! Decoding is lax: a snaplen-cut packet still yields its TCP header, and the bytes the cut
//! removed are reported as `missing` so that reassembly can record a gap of the right length.
//! Anything that is not TCP is counted by [`Skip`] reason.
//!
//! VLAN tags: a tunnel's inner Ethernet frame starts the list afresh, so the tags that identify
//! a connection are those of the traffic itself, not of the mirror session carrying it.

pub mod frag;

use std::fmt;
use std::net::IpAddr;

use etherparse::err::Layer;
use etherparse::{
    ip_number, EtherType, IpAuthHeaderSlice, IpNumber, Ipv6ExtensionsSlice,
    Ipv6FragmentHeaderSlice, Ipv6RawExtHeaderSlice, LaxIpv4Slice, LaxIpv6Slice, LaxLinkExtSlice,
    LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice, UdpSlice,
};

use crate::common::Endpoint;
use crate::source::{Frame, Linktype};
use crate::time::Timestamp;

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

/// Linux SLL header length and the offset of its protocol field. Read by hand: etherparse's
/// SLL parser rejects the ARPHRD types of loopback, tun and PPP devices (it knows only
/// Ethernet, netlink, IPGRE and radiotap), which `tcpdump -i any` captures are full of.
const SLL_LEN: usize = 16;
const SLL_PROTO: usize = 14;
/// Linux SLL2 header length; the protocol field comes first (etherparse has no SLL2).
const SLL2_LEN: usize = 20;
/// BSD null / loopback header: the 4-byte address family (etherparse has none).
const NULL_LEN: usize = 4;

/// Ethernet II header, and the offset of its EtherType.
const ETH_LEN: usize = 14;
const ETH_TYPE: usize = 12;
/// Shortest IPv4 and TCP headers; IPv4's more-fragments flag and offset bits.
const IPV4_MIN_LEN: usize = 20;
const TCP_MIN_LEN: usize = 20;
const IPV4_FRAGMENTING: u16 = 0x3fff;
/// IPv6 fixed header.
const IPV6_LEN: usize = 40;

/// EtherTypes (and GRE protocol types, which share the registry) etherparse does not name.
struct Ether;
impl Ether {
    const PPPOE_DISCOVERY: EtherType = EtherType(0x8863);
    const PPPOE_SESSION: EtherType = EtherType(0x8864);
    /// Transparent Ethernet bridging (GRETAP, NVGRE).
    const TEB: EtherType = EtherType(0x6558);
    /// ERSPAN type I (no GRE sequence number) and II.
    const ERSPAN_2: EtherType = EtherType(0x88be);
    const ERSPAN_3: EtherType = EtherType(0x22eb);
}

/// PPP protocol numbers carried in PPPoE sessions.
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
/// PPPoE header: version/type, code, session id, length.
const PPPOE_LEN: usize = 6;
/// PPPoE version 1, type 1.
const PPPOE_VER_TYPE: u8 = 0x11;

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

/// What comes next while walking a frame's headers; etherparse parses each from here down to
/// TCP or to the first header it does not know (PPPoE, GRE, VXLAN, an inner IP packet).
#[derive(Clone, Copy)]
enum Next<'a> {
    /// An Ethernet II frame.
    Ethernet(&'a [u8]),
    /// A payload of this EtherType.
    Ether(EtherType, &'a [u8]),
    /// An IP packet (either version).
    Ip(&'a [u8]),
}

/// The reassembler and the buffers a frame may fill.
type Reasm<'a> = (&'a mut frag::Reassembler, &'a mut [Vec<u8>]);

/// The network layer found: addresses, the next protocol and its bytes.
struct Net<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: IpNumber,
    payload: &'a [u8],
    /// The snap length cut the packet.
    cut: bool,
    /// The packet is a fragment: (key, offset, more).
    frag: Option<(frag::Key, usize, bool)>,
    v6: bool,
}

fn walk<'a>(frame: &Frame<'a>, mut reasm: Option<Reasm<'a>>) -> Result<Segment<'a>, Skip> {
    let data = frame.data;
    if frame.linktype == Linktype::ETHERNET && be16(data, ETH_TYPE) == Some(EtherType::IPV4.0) {
        if let Some(seg) = data.get(ETH_LEN..).and_then(|ip| plain_ipv4_tcp(frame, ip)) {
            return Ok(seg);
        }
    }
    let mut next = match frame.linktype {
        Linktype::ETHERNET => Next::Ethernet(data),
        Linktype::LINUX_SLL => {
            let proto = be16(data, SLL_PROTO).ok_or(Skip::ShortLinkHeader)?;
            Next::Ether(EtherType(proto), data.get(SLL_LEN..).unwrap_or(&[]))
        }
        Linktype::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(Skip::ShortLinkHeader)?;
            Next::Ether(
                EtherType(proto),
                data.get(SLL2_LEN..).ok_or(Skip::ShortLinkHeader)?,
            )
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
        let p = match next {
            Next::Ethernet(d) => LaxSlicedPacket::from_ethernet(d).map_err(|_| {
                if depth == 0 {
                    Skip::ShortLinkHeader
                } else {
                    Skip::BadTunnel
                }
            })?,
            Next::Ether(t, d) => LaxSlicedPacket::from_ether_type(t, d),
            Next::Ip(d) => LaxSlicedPacket::from_ip(d).map_err(|_| ip_error(d))?,
        };
        for ext in &p.link_exts {
            if let LaxLinkExtSlice::Vlan(v) = ext {
                if let Some(slot) = vlans.0.get_mut(n_vlans) {
                    // Keep the id only; 0 stays "absent" by storing id | 0x1000.
                    *slot = v.vlan_identifier().value() | 0x1000;
                    n_vlans += 1;
                }
            }
        }
        // The bytes etherparse read the IP header from (wanted only off the common path).
        let ip_bytes = |p: &LaxSlicedPacket<'a>| match next {
            Next::Ip(d) => d,
            _ => p.ether_payload().map(|e| e.payload).unwrap_or(&[]),
        };
        let mut net = match &p.net {
            Some(LaxNetSlice::Ipv4(ip)) => ipv4(ip, &p)?,
            Some(LaxNetSlice::Ipv6(ip)) => ipv6(ip, &p, ip_bytes(&p))?,
            Some(LaxNetSlice::Arp(_)) => return Err(Skip::NotIp),
            None => {
                next = beyond_link(&p, ip_bytes(&p))?;
                continue;
            }
        };
        cut |= net.cut;
        let mut whole = false;
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
                proto: net.proto.0,
            };
            match frags.add(frame.ts, key, piece, buf) {
                frag::Added::Complete(proto) => {
                    let datagram: &'a [u8] = buf;
                    (net.proto, net.payload) = (IpNumber(proto), datagram);
                    if net.v6 {
                        let (_, nh, rest, err) =
                            Ipv6ExtensionsSlice::from_slice_lax(net.proto, datagram);
                        if err.is_some() {
                            return Err(Skip::BadIp);
                        }
                        (net.proto, net.payload) = (nh, rest);
                    }
                    whole = true;
                }
                frag::Added::Held | frag::Added::Dropped => return Err(Skip::IpFragment),
            }
            reasm = Some((frags, rest));
        }
        // etherparse parsed the transport header unless the payload is our reassembly.
        let transport = if whole { None } else { p.transport };
        next = match net.proto {
            ip_number::TCP => {
                let tcp = match transport {
                    Some(TransportSlice::Tcp(t)) => t,
                    _ => TcpSlice::from_slice(net.payload).map_err(|_| Skip::BadTcp)?,
                };
                return Ok(segment(frame, &net, &tcp, vlans, cut));
            }
            ip_number::UDP => {
                let udp = match transport {
                    Some(TransportSlice::Udp(u)) => u,
                    _ => UdpSlice::from_slice_lax(net.payload).map_err(|_| Skip::NotTcp)?,
                };
                if udp.destination_port() != VXLAN_PORT {
                    return Err(Skip::NotTcp);
                }
                tunnel(&mut depth)?;
                (vlans, n_vlans) = (Vlans::default(), 0);
                Next::Ethernet(udp.payload().get(VXLAN_LEN..).ok_or(Skip::BadTunnel)?)
            }
            ip_number::GRE => {
                tunnel(&mut depth)?;
                (vlans, n_vlans) = (Vlans::default(), 0);
                gre(net.payload)?
            }
            ip_number::IPV4 | ip_number::IPV6 => {
                tunnel(&mut depth)?;
                Next::Ip(net.payload)
            }
            _ => return Err(Skip::NotTcp),
        };
    }
    Err(Skip::TooDeep)
}

/// The common case read by hand: an untagged, unfragmented, uncut IPv4 packet carrying a
/// well-formed TCP header. Measured on 1M-frame captures, etherparse's lax slicing costs about
/// twice our whole per-frame decode (see the commit); anything else, or anything odd here,
/// returns None and goes to etherparse, which gives the same answer for these packets.
fn plain_ipv4_tcp<'a>(frame: &Frame<'a>, ip: &'a [u8]) -> Option<Segment<'a>> {
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    let flags_offset = be16(ip, 6)?;
    let proto = *ip.get(9)?;
    // Version 4, no fragment fields, TCP, a total length that fits what was captured.
    if first >> 4 != 4
        || ihl < IPV4_MIN_LEN
        || total < ihl
        || flags_offset & IPV4_FRAGMENTING != 0
        || IpNumber(proto) != ip_number::TCP
    {
        return None;
    }
    let tcp = ip.get(ihl..total)?;
    let doff = usize::from(*tcp.get(12)? >> 4) * 4;
    if doff < TCP_MIN_LEN {
        return None;
    }
    let b4 = |at: usize| -> Option<[u8; 4]> { ip.get(at..at.checked_add(4)?)?.try_into().ok() };
    Some(Segment {
        ts: frame.ts,
        frame_no: frame.frame_no,
        file: frame.file,
        vlans: Vlans::default(),
        src: Endpoint {
            ip: IpAddr::from(b4(12)?),
            port: be16(tcp, 0)?,
        },
        dst: Endpoint {
            ip: IpAddr::from(b4(16)?),
            port: be16(tcp, 2)?,
        },
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        flags: TcpFlags(*tcp.get(13)?),
        window: be16(tcp, 14)?,
        payload: tcp.get(doff..)?,
        missing: 0,
    })
}

/// Where etherparse stopped before the network layer: a damaged link or IP header, or an
/// EtherType it does not follow (PPPoE, more VLAN tags than it holds).
fn beyond_link<'a>(p: &LaxSlicedPacket<'a>, ip_bytes: &'a [u8]) -> Result<Next<'a>, Skip> {
    if let Some((_, layer)) = &p.stop_err {
        return Err(match layer {
            Layer::VlanHeader | Layer::Ethernet2Header => Skip::ShortLinkHeader,
            Layer::IpHeader => ip_error(ip_bytes),
            _ => Skip::NotIp,
        });
    }
    let Some(e) = p.ether_payload() else {
        return Err(Skip::NotIp);
    };
    match e.ether_type {
        Ether::PPPOE_SESSION => pppoe(e.payload),
        // Session set-up: no IP in it.
        Ether::PPPOE_DISCOVERY => Err(Skip::NotIp),
        // etherparse holds three tags; the walk goes on past them.
        t @ (EtherType::VLAN_TAGGED_FRAME
        | EtherType::PROVIDER_BRIDGING
        | EtherType::VLAN_DOUBLE_TAGGED_FRAME)
            if p.link_exts.is_full() =>
        {
            Ok(Next::Ether(t, e.payload))
        }
        _ => Err(Skip::NotIp),
    }
}

/// An IP header etherparse refused: malformed when it says IPv4 or IPv6, else not IP.
fn ip_error(d: &[u8]) -> Skip {
    match d.first().map(|b| b >> 4) {
        Some(4) | Some(6) | None => Skip::BadIp,
        Some(_) => Skip::NotIp,
    }
}

/// True when etherparse stopped inside the IP layer (IPv4 authentication header, IPv6
/// extension headers) rather than in the transport header.
fn ip_layer_error(p: &LaxSlicedPacket<'_>) -> bool {
    matches!(
        p.stop_err,
        Some((
            _,
            Layer::IpAuthHeader
                | Layer::Ipv6HopByHopHeader
                | Layer::Ipv6DestOptionsHeader
                | Layer::Ipv6RouteHeader
                | Layer::Ipv6FragHeader
                | Layer::IpHeader
        ))
    )
}

fn ipv4<'a>(ip: &LaxIpv4Slice<'a>, p: &LaxSlicedPacket<'a>) -> Result<Net<'a>, Skip> {
    let h = ip.header();
    // A total length of 0 is what TCP segmentation offload leaves in captures of large
    // segments: the packet is the rest of the frame (etherparse does the same). Any other
    // length shorter than the header is damage.
    let total = usize::from(h.total_len());
    if total != 0 && total < h.slice().len() {
        return Err(Skip::BadIp);
    }
    if ip_layer_error(p) {
        return Err(Skip::BadIp);
    }
    let (src, dst) = (
        IpAddr::V4(h.source_addr()),
        IpAddr::V4(h.destination_addr()),
    );
    let payload = ip.payload();
    let frag = h.is_fragmenting_payload().then(|| {
        (
            frag::Key {
                src,
                dst,
                id: u32::from(h.identification()),
                proto: h.protocol().0,
            },
            usize::from(h.fragments_offset().byte_offset()),
            h.more_fragments(),
        )
    });
    Ok(Net {
        src,
        dst,
        proto: payload.ip_number,
        payload: payload.payload,
        cut: payload.incomplete,
        frag,
        v6: false,
    })
}

fn ipv6<'a>(
    ip: &LaxIpv6Slice<'a>,
    p: &LaxSlicedPacket<'a>,
    bytes: &'a [u8],
) -> Result<Net<'a>, Skip> {
    let h = ip.header();
    let (src, dst) = (
        IpAddr::V6(h.source_addr()),
        IpAddr::V6(h.destination_addr()),
    );
    let payload = ip.payload();
    if !payload.fragmented {
        if ip_layer_error(p) {
            return Err(Skip::BadIp);
        }
        return Ok(Net {
            src,
            dst,
            proto: payload.ip_number,
            payload: payload.payload,
            cut: payload.incomplete,
            frag: None,
            v6: true,
        });
    }
    // etherparse reads on past a fragment header as if the next header followed, but in a
    // fragment that is not the first those bytes are the datagram's middle; and its iterator
    // over the headers it read can run past their end when that reading stopped on an error
    // (found by the decode fuzz target: a heap overflow in `Ipv6ExtensionSliceIter`). So the
    // headers are walked again here with its checked parsers, up to the fragment header, and
    // the fragment's data is everything after it, up to the end of the IPv6 payload.
    let base = bytes.as_ptr() as usize;
    let end = (payload.payload.as_ptr() as usize)
        .checked_add(payload.payload.len())
        .and_then(|a| a.checked_sub(base))
        .ok_or(Skip::BadIp)?;
    let mut rest = bytes.get(IPV6_LEN..end).ok_or(Skip::BadIp)?;
    let mut nh = h.next_header();
    for _ in 0..MAX_STEPS {
        let len = match nh {
            ip_number::IPV6_FRAG => {
                let f = Ipv6FragmentHeaderSlice::from_slice(rest).map_err(|_| Skip::BadIp)?;
                let after = rest.get(f.slice().len()..).ok_or(Skip::BadIp)?;
                if !f.is_fragmenting_payload() {
                    (nh, rest) = (f.next_header(), after);
                    continue;
                }
                return Ok(Net {
                    src,
                    dst,
                    proto: f.next_header(),
                    payload: after,
                    cut: payload.incomplete,
                    frag: Some((
                        frag::Key {
                            src,
                            dst,
                            id: f.identification(),
                            proto: 0,
                        },
                        usize::from(f.fragment_offset().byte_offset()),
                        f.more_fragments(),
                    )),
                    v6: true,
                });
            }
            ip_number::IPV6_HOP_BY_HOP | ip_number::IPV6_ROUTE | ip_number::IPV6_DEST_OPTIONS => {
                let x = Ipv6RawExtHeaderSlice::from_slice(rest).map_err(|_| Skip::BadIp)?;
                nh = x.next_header();
                x.slice().len()
            }
            ip_number::AUTH => {
                let x = IpAuthHeaderSlice::from_slice(rest).map_err(|_| Skip::BadIp)?;
                nh = x.next_header();
                x.slice().len()
            }
            _ => return Err(Skip::BadIp),
        };
        rest = rest.get(len..).ok_or(Skip::BadIp)?;
    }
    Err(Skip::BadIp)
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

/// A PPPoE session header and the PPP protocol field (etherparse has neither).
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

/// A GRE header (RFC 2784 with RFC 2890's key and sequence number), and ERSPAN inside it
/// (etherparse has neither).
fn gre(d: &[u8]) -> Result<Next<'_>, Skip> {
    let flags = be16(d, 0).ok_or(Skip::BadTunnel)?;
    let proto = EtherType(be16(d, 2).ok_or(Skip::BadTunnel)?);
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
        Ether::TEB => Ok(Next::Ethernet(rest)),
        // Type I has no sequence number and no ERSPAN header; type II has both.
        Ether::ERSPAN_2 if flags & GRE_SEQ == 0 => Ok(Next::Ethernet(rest)),
        Ether::ERSPAN_2 => Ok(Next::Ethernet(
            rest.get(ERSPAN2_LEN..).ok_or(Skip::BadTunnel)?,
        )),
        Ether::ERSPAN_3 => {
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

fn segment<'a>(
    frame: &Frame<'a>,
    net: &Net<'a>,
    tcp: &TcpSlice<'a>,
    vlans: Vlans,
    cut: bool,
) -> Segment<'a> {
    // Bytes the snap length removed; the IP header's length is checked against the frame's
    // original length so that a lying IP length cannot invent a huge gap.
    let missing = if cut {
        frame.orig_len.saturating_sub(frame.data.len() as u32)
    } else {
        0
    };
    Segment {
        ts: frame.ts,
        frame_no: frame.frame_no,
        file: frame.file,
        vlans,
        src: Endpoint {
            ip: net.src,
            port: tcp.source_port(),
        },
        dst: Endpoint {
            ip: net.dst,
            port: tcp.destination_port(),
        },
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(tcp.header_slice().get(13).copied().unwrap_or(0)),
        window: tcp.window_size(),
        payload: tcp.payload(),
        missing,
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
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
    fn hand_read_fast_path_agrees_with_etherparse() {
        // Ethernet takes the hand-read path; the same IP packet behind SLL goes to etherparse.
        let mut with_options = ipv4_tcp(b"opt");
        with_options[0] = 0x46;
        with_options[3] += 4;
        with_options.splice(20..20, [1u8, 1, 1, 0]);
        for ip in [ipv4_tcp(b"hello"), ipv4_tcp(b""), with_options] {
            let mut ether = eth(EtherType::IPV4.0, &ip);
            ether.extend_from_slice(&[0; 6]);
            let mut sll = vec![0u8; SLL_LEN];
            sll[SLL_PROTO..].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
            sll.extend_from_slice(&ip);
            let a = decode(&frame(Linktype::ETHERNET, &ether)).unwrap();
            let b = decode(&frame(Linktype::LINUX_SLL, &sll)).unwrap();
            assert_eq!(
                (a.src, a.dst, a.seq, a.ack, a.flags, a.window, a.payload, a.missing),
                (b.src, b.dst, b.seq, b.ack, b.flags, b.window, b.payload, b.missing)
            );
        }
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
        tagged.extend_from_slice(&Ether::PPPOE_SESSION.0.to_be_bytes());
        tagged.extend_from_slice(&body);
        let f = eth(EtherType::VLAN_TAGGED_FRAME.0, &tagged);
        let s = decode(&frame(Linktype::ETHERNET, &f)).unwrap();
        assert_eq!(s.payload, b"pp");
        assert_eq!(s.vlans.to_string(), "vlan 100");
        let disc = eth(Ether::PPPOE_DISCOVERY.0, &[0x11, 0x09, 0, 0, 0, 0]);
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &disc)).unwrap_err(),
            Skip::NotIp
        );
        // LCP, not IP.
        let mut lcp = body.clone();
        lcp[6..8].copy_from_slice(&0xc021u16.to_be_bytes());
        let f = eth(Ether::PPPOE_SESSION.0, &lcp);
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &f)).unwrap_err(),
            Skip::NotIp
        );
    }

    #[test]
    fn gre_with_options_teb_and_erspan() {
        let inner = ipv4_tcp(b"in");
        let inner_eth = eth(EtherType::IPV4.0, &inner);
        // Checksum, key and sequence number: 12 bytes of options.
        let mut g = vec![0xb0, 0x00];
        g.extend_from_slice(&Ether::TEB.0.to_be_bytes());
        g.extend_from_slice(&[0; 12]);
        g.extend_from_slice(&inner_eth);
        let f = eth(EtherType::IPV4.0, &ipv4(ip_number::GRE.0, 1, 0, &g));
        let s = decode(&frame(Linktype::ETHERNET, &f)).unwrap();
        assert_eq!(
            (s.payload, s.src.to_string().as_str()),
            (&b"in"[..], "10.0.0.1:3306")
        );

        // ERSPAN II: sequence number, 8-byte header.
        let mut g = vec![0x10, 0x00];
        g.extend_from_slice(&Ether::ERSPAN_2.0.to_be_bytes());
        g.extend_from_slice(&[0, 0, 0, 1]);
        g.extend_from_slice(&[0x10, 0, 0, 10, 0, 0, 0, 0]);
        g.extend_from_slice(&inner_eth);
        let f = eth(EtherType::IPV4.0, &ipv4(ip_number::GRE.0, 2, 0, &g));
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &f)).unwrap().payload,
            b"in"
        );

        // ERSPAN III with the optional sub-header (O bit), and cut inside its header.
        let mut g = vec![0x10, 0x00];
        g.extend_from_slice(&Ether::ERSPAN_3.0.to_be_bytes());
        g.extend_from_slice(&[0, 0, 0, 1]);
        g.extend_from_slice(&[0x20, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0x01]);
        g.extend_from_slice(&[0; ERSPAN3_SUBHEADER]);
        g.extend_from_slice(&inner_eth);
        let f = eth(EtherType::IPV4.0, &ipv4(ip_number::GRE.0, 3, 0, &g));
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &f)).unwrap().payload,
            b"in"
        );
        let cut = eth(EtherType::IPV4.0, &ipv4(ip_number::GRE.0, 3, 0, &g[..14]));
        assert_eq!(
            decode(&frame(Linktype::ETHERNET, &cut)).unwrap_err(),
            Skip::BadTunnel
        );
    }

    #[test]
    fn vxlan_and_nesting_bound() {
        let inner = eth(EtherType::IPV4.0, &ipv4_tcp(b"vx"));
        let vx = |inner: &[u8]| {
            let mut u = vec![0x9c, 0x40];
            u.extend_from_slice(&VXLAN_PORT.to_be_bytes());
            u.extend_from_slice(&((8 + VXLAN_LEN + inner.len()) as u16).to_be_bytes());
            // UDP checksum, then VXLAN: I flag, VNI 42.
            u.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 0x2a, 0]);
            u.extend_from_slice(inner);
            eth(EtherType::IPV4.0, &ipv4(ip_number::UDP.0, 9, 0, &u))
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
        let mut body = vec![ip_number::IPV6_DEST_OPTIONS.0, 0, 1, 4, 0, 0, 0, 0];
        body.extend_from_slice(&[ip_number::TCP.0, 0, 1, 4, 0, 0, 0, 0]);
        body.extend_from_slice(&seg);
        let p = v6(ip_number::IPV6_HOP_BY_HOP.0, &body);
        let s = decode(&frame(Linktype::RAW, &p)).unwrap();
        assert_eq!(s.payload, b"0123456789abcdef-tail");
        assert_eq!(s.src.to_string(), "[2001:db8::1]:3306");

        // Two fragments, second first; the stateless decoder only skips them.
        let (a, b) = seg.split_at(24);
        let frag = |off_more: u16, data: &[u8]| {
            let mut h = vec![ip_number::TCP.0, 0];
            h.extend_from_slice(&off_more.to_be_bytes());
            h.extend_from_slice(&7u32.to_be_bytes());
            h.extend_from_slice(data);
            v6(ip_number::IPV6_FRAG.0, &h)
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
        let inner = eth(EtherType::IPV4.0, &ipv4_tcp(b"payload!"));
        let mut u = vec![0x9c, 0x40];
        u.extend_from_slice(&VXLAN_PORT.to_be_bytes());
        u.extend_from_slice(&((8 + VXLAN_LEN + inner.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 0x2a, 0]);
        u.extend_from_slice(&inner);
        let (a, b) = u.split_at(32);
        let f1 = eth(EtherType::IPV4.0, &ipv4(ip_number::UDP.0, 5, 0x2000, a));
        let f2 = eth(EtherType::IPV4.0, &ipv4(ip_number::UDP.0, 5, 32 / 8, b));
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
