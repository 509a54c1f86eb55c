#!/usr/bin/env python3
"""Wraps the frames of a real capture in encapsulations the kernel here cannot make
(scripts/make-encap-captures.sh): no GRE, ERSPAN, 802.1Q or PPPoE in its kernel.

  encap_craft.py PLAIN.pcap OUTDIR

PLAIN.pcap is tcpdump's capture (Ethernet) of real TCP connections; each TCP connection gets
its own wrapping, the bytes of every IP packet are kept as they are, so that tshark must see
the same TCP segments (tests/tshark_encap.rs checks that frame by frame). Writes:

  pppoe.pcap            PPPoE session (PPP IPv4/IPv6): untagged, over 802.1Q 100, over QinQ
                        200/300; a PADI discovery frame first
  gre.pcap              GRE IPv4 in IPv4; GRETAP (0x6558) with checksum, key and sequence
                        number; IPv6 in GRE over IPv6
  erspan.pcap           ERSPAN type II; type III; type III with the platform sub-header
  ip-fragments.pcap     IPv4 packets over 1000 bytes cut in fragments sent last first, the
                        first one twice; IPv6 packets cut with a fragment header behind a
                        hop-by-hop or destination options header
  vlan-asymmetric.pcap  as a SPAN port shows it: client to server tagged 802.1Q 42, server to
                        client untagged; the third connection untagged both ways
"""
import struct
import sys

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def read_pcap(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), "little-endian pcap expected"
    linktype = struct.unpack("<I", data[20:24])[0]
    assert linktype == 1, "Ethernet expected"
    frames, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack("<IIII", data[off : off + 16])
        frames.append((sec, frac, data[off + 16 : off + 16 + incl]))
        off += 16 + incl
    return data[:24], frames


def write_pcap(path, header, frames):
    with open(path, "wb") as f:
        f.write(header[:16] + struct.pack("<I", 262144) + header[20:24])
        for sec, frac, b in frames:
            f.write(struct.pack("<IIII", sec, frac, len(b), len(b)) + b)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(etype, payload, src=MAC_A, dst=MAC_B):
    return dst + src + struct.pack("!H", etype) + payload


def ipv4(src, dst, proto, payload, ident=0, flags_off=0x4000):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_off, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(src, dst, nh, payload):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, src, dst) + payload


def tcp_conns(frames):
    """(frame index, ethertype, IP packet, connection number, from client) per TCP frame."""
    out, conns = [], {}
    for i, (_, _, b) in enumerate(frames):
        etype = struct.unpack("!H", b[12:14])[0]
        ip = b[14:]
        if etype == ETH_IPV4 and ip[9] == 6:
            ihl = (ip[0] & 15) * 4
            src, dst, l4 = ip[12:16], ip[16:20], ip[ihl:]
        elif etype == ETH_IPV6 and ip[6] == 6:
            src, dst, l4 = ip[8:24], ip[24:40], ip[40:]
        else:
            continue
        sp, dp = struct.unpack("!HH", l4[:4])
        a, z = (src, sp), (dst, dp)
        key = (min(a, z), max(a, z))
        if key not in conns:
            conns[key] = (len(conns), a)
        n, client = conns[key]
        out.append((i, etype, ip, n, a == client))
    return out


def main():
    plain, outdir = sys.argv[1], sys.argv[2]
    header, frames = read_pcap(plain)
    tcp = tcp_conns(frames)
    assert len({t[3] for t in tcp}) == 3, "three TCP connections expected"
    ts = lambda i: frames[i][:2]
    u4a, u4b = bytes([192, 0, 2, 101]), bytes([192, 0, 2, 102])
    u6a, u6b = bytes.fromhex("20010db8000000000000000000000101"), bytes.fromhex("20010db8000000000000000000000102")

    # PPPoE.
    out = []
    padi = struct.pack("!BBHH", 0x11, 0x09, 0, 4) + struct.pack("!HH", 0x0101, 0)
    s0, f0 = ts(tcp[0][0])
    out.append((s0, f0, eth(0x8863, padi, dst=b"\xff" * 6)))
    for i, et, ip, n, fwd in tcp:
        ppp = struct.pack("!H", 0x0021 if et == ETH_IPV4 else 0x0057) + ip
        body = struct.pack("!BBHH", 0x11, 0, 0x1234 + n, len(ppp)) + ppp
        if n == 0:
            f = eth(0x8864, body)
        elif n == 1:
            f = eth(ETH_VLAN, struct.pack("!HH", 100, 0x8864) + body)
        else:
            f = eth(ETH_QINQ, struct.pack("!HHHH", 200, ETH_VLAN, 300, 0x8864) + body)
        out.append(ts(i) + (f,))
    write_pcap(f"{outdir}/pppoe.pcap", header, out)

    # GRE.
    out, seq = [], 0
    for i, et, ip, n, fwd in tcp:
        inner_type = 0x0800 if et == ETH_IPV4 else 0x86DD
        if n == 0:
            g = struct.pack("!HH", 0, inner_type) + ip
            f = eth(ETH_IPV4, ipv4(u4a if fwd else u4b, u4b if fwd else u4a, 47, g))
        elif n == 1:
            seq += 1
            inner = eth(ETH_IPV4, ip, *((MAC_A, MAC_B) if fwd else (MAC_B, MAC_A)))
            # Checksum, key and sequence number present; the checksum covers header and payload.
            g = struct.pack("!HHHHII", 0xB000, 0x6558, 0, 0, 77, seq) + inner
            g = g[:4] + struct.pack("!H", csum(g)) + g[6:]
            f = eth(ETH_IPV4, ipv4(u4a if fwd else u4b, u4b if fwd else u4a, 47, g))
        else:
            g = struct.pack("!HHI", 0x2000, inner_type, 5) + ip
            f = eth(ETH_IPV6, ipv6(u6a if fwd else u6b, u6b if fwd else u6a, 47, g))
        out.append(ts(i) + (f,))
    write_pcap(f"{outdir}/gre.pcap", header, out)

    # ERSPAN.
    out, seq = [], 0
    for i, et, ip, n, fwd in tcp:
        seq += 1
        inner = eth(et, ip, *((MAC_A, MAC_B) if fwd else (MAC_B, MAC_A)))
        if n == 0:
            # Type II: Ver 1, VLAN 0; COS 0, En 3, T 0, session 10; index 0.
            hdr = struct.pack("!HHI", 0x1000, (3 << 11) | 10, 0)
            g = struct.pack("!HHI", 0x1000, 0x88BE, seq) + hdr + inner
        else:
            # Type III: Ver 2, VLAN 0; COS 0, BSO 0, T 0, session 11; timestamp; SGT 0, P 0,
            # FT 0 (Ethernet), HwID 1, D fwd, Gra 0, O (sub-header follows) on the third.
            opt = 1 if n == 2 else 0
            word = (1 << 4) | ((0 if fwd else 1) << 3) | opt
            hdr = struct.pack("!HHII", 0x2000, 11, 123456 + seq, word)
            if opt:
                hdr += struct.pack("!HHI", 3 << 10, 0, 0)  # Platform ID 3
            g = struct.pack("!HHI", 0x1000, 0x22EB, seq) + hdr + inner
        f = eth(ETH_IPV4, ipv4(u4a if fwd else u4b, u4b if fwd else u4a, 47, g, ident=seq))
        out.append(ts(i) + (f,))
    write_pcap(f"{outdir}/erspan.pcap", header, out)

    # IP fragments.
    out, ident = [], 0x100
    for i, et, ip, n, fwd in tcp:
        sec, frac = ts(i)
        if len(ip) <= 1000:
            out.append((sec, frac, eth(et, ip)))
            continue
        ident += 1
        if et == ETH_IPV4:
            ihl = (ip[0] & 15) * 4
            hdr, body = ip[:ihl], ip[ihl:]
            src, dst, proto = hdr[12:16], hdr[16:20], hdr[9]
            pieces = [body[o : o + 400] for o in range(0, len(body), 400)]
            frs = []
            for k, p in enumerate(pieces):
                more = 0x2000 if k < len(pieces) - 1 else 0
                frs.append(eth(ETH_IPV4, ipv4(src, dst, proto, p, ident, more | (k * 400 // 8))))
            # Last fragment first, then the first twice (an exact duplicate), then the rest.
            frs = frs[-1:] + frs[:1] + frs[:-1]
        else:
            src, dst, nh, body = ip[8:24], ip[24:40], ip[6], ip[40:]
            pieces = [body[o : o + 400] for o in range(0, len(body), 400)]
            frs = []
            # A hop-by-hop (0) or destination options (60) header before the fragment header.
            ext_type = 0 if ident % 2 else 60
            ext = struct.pack("!BB", 44, 0) + b"\x01\x04\0\0\0\0"  # PadN option
            for k, p in enumerate(pieces):
                more = 1 if k < len(pieces) - 1 else 0
                fh = struct.pack("!BBHI", nh, 0, (k * 400) | more, ident)
                frs.append(eth(ETH_IPV6, ipv6(src, dst, ext_type, ext + fh + p)))
        for k, f in enumerate(frs):
            out.append((sec, min(frac + k, 999_999), f))
    write_pcap(f"{outdir}/ip-fragments.pcap", header, out)

    # Asymmetric VLAN tagging.
    out = []
    for i, et, ip, n, fwd in tcp:
        if n < 2 and fwd:
            f = eth(ETH_VLAN, struct.pack("!HH", 42, et) + ip)
        else:
            f = eth(et, ip, *((MAC_A, MAC_B) if fwd else (MAC_B, MAC_A)))
        out.append(ts(i) + (f,))
    write_pcap(f"{outdir}/vlan-asymmetric.pcap", header, out)


main()
