#!/usr/bin/env python3
"""Crafts tests/crafted/mysql-zstd-crafted.pcap from the real ../shared/captures/mysql-compressed.pcap.

CRAFTED, not captured: MariaDB has no zstd protocol compression and no MySQL 8 server was at
hand. The real capture is a MySQL 5.7 session with the zlib compressed protocol (greeting,
login, one query and its result set, COM_QUIT). This script turns it into what a zstd session
would look like, changing only what the protocol says must change:

* greeting: CLIENT_ZSTD_COMPRESSION_ALGORITHM (1 << 26) is added to the server's capabilities;
* handshake response: CLIENT_COMPRESS is cleared, CLIENT_ZSTD_COMPRESSION_ALGORITHM set, and
  the 1-byte zstd level (LEVEL) appended after the connect attributes;
* every compressed packet whose payload was deflated (uncompressed length > 0) is inflated and
  re-compressed with the `zstd` command-line tool (libzstd, the library MySQL uses: one frame
  with its content size, no checksum, as ZSTD_compressCCtx writes); stored packets stay stored;
* IPv4 total length and checksum, TCP sequence/acknowledgement numbers (shifted by the bytes
  each direction gained or lost) and TCP checksum are recomputed, so tshark decodes every frame
  at the TCP level as it does the original (same flags, lengths consistent, no analysis flags).

Usage: scripts/craft-zstd-capture.py [IN] [OUT]
"""
import struct
import subprocess
import sys
import zlib

LEVEL = 3
CLIENT_COMPRESS = 1 << 5
CLIENT_ZSTD = 1 << 26

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/captures/mysql-compressed.pcap"
dst = sys.argv[2] if len(sys.argv) > 2 else "tests/crafted/mysql-zstd-crafted.pcap"
data = open(src, "rb").read()
ghdr, rest = data[:24], data[24:]
assert struct.unpack("<I", ghdr[:4])[0] == 0xA1B2C3D4, "little-endian microsecond pcap"


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def zstd(b):
    return subprocess.run(
        ["zstd", "-q", "-c", "-%d" % LEVEL, "--no-check", "--stream-size=%d" % len(b)],
        input=b,
        capture_output=True,
        check=True,
    ).stdout


def le24(b, i):
    return b[i] | b[i + 1] << 8 | b[i + 2] << 16


def recompress(payload):
    """Re-compresses the deflated compressed packets of one segment (whole packets only)."""
    out, i = b"", 0
    while i < len(payload):
        clen, seq, ulen = le24(payload, i), payload[i + 3], le24(payload, i + 4)
        body = payload[i + 7 : i + 7 + clen]
        assert len(body) == clen, "a compressed packet split across segments"
        if ulen:
            plain = zlib.decompress(body)
            assert len(plain) == ulen
            body = zstd(plain)
        out += struct.pack("<I", len(body))[:3] + bytes([seq]) + struct.pack("<I", ulen)[:3] + body
        i += 7 + clen
    return out


frames, i = [], 0
while i < len(rest):
    ts_s, ts_us, incl, orig = struct.unpack("<IIII", rest[i : i + 16])
    frames.append([ts_s, ts_us, bytearray(rest[i + 16 : i + 16 + incl])])
    i += 16 + incl

server_port, logged_in = 3306, False
shift = {}  # sending port -> bytes gained so far
out = bytearray(ghdr)
for ts_s, ts_us, pkt in frames:
    assert pkt[12:14] == b"\x08\x00", "IPv4 over Ethernet"
    ip = pkt[14:]
    ihl = (ip[0] & 15) * 4
    tcp = ip[ihl:]
    thl = (tcp[12] >> 4) * 4
    sport, dport, seq, ack = struct.unpack("!HHII", tcp[:12])
    payload = bytes(tcp[thl : struct.unpack("!H", ip[2:4])[0] - ihl])
    new = payload
    if payload and not logged_in:
        if sport == server_port and payload[4] == 0x0A:
            # Greeting: the upper capability half sits after version, id, scramble, filler,
            # lower caps, charset and status.
            v = payload.index(b"\0", 5)
            at = v + 1 + 4 + 8 + 1 + 2 + 1 + 2
            hi = struct.unpack("<H", payload[at : at + 2])[0] | (CLIENT_ZSTD >> 16)
            new = payload[:at] + struct.pack("<H", hi) + payload[at + 2 :]
        elif dport == server_port:
            caps = struct.unpack("<I", payload[4:8])[0]
            caps = (caps & ~CLIENT_COMPRESS) | CLIENT_ZSTD
            body = struct.pack("<I", caps) + payload[8:] + bytes([LEVEL])
            new = struct.pack("<I", len(body))[:3] + payload[3:4] + body
        elif sport == server_port and payload[4] == 0x00:
            logged_in = True
    elif payload:
        new = recompress(payload)
    gained_self = shift.get(sport, 0)
    gained_peer = shift.get(dport, 0)
    shift[sport] = gained_self + len(new) - len(payload)
    # Later bytes move by what this direction gained before them; the peer's ACKs likewise.
    flags = tcp[13]
    nseq = (seq + gained_self) & 0xFFFFFFFF
    nack = (ack + gained_peer) & 0xFFFFFFFF if flags & 0x10 else ack
    tcp_new = bytearray(tcp[:thl]) + new
    struct.pack_into("!II", tcp_new, 4, nseq, nack)
    struct.pack_into("!H", tcp_new, 16, 0)
    ip_new = bytearray(ip[:ihl])
    struct.pack_into("!H", ip_new, 2, ihl + len(tcp_new))
    struct.pack_into("!H", ip_new, 10, 0)
    struct.pack_into("!H", ip_new, 10, csum(bytes(ip_new)))
    pseudo = bytes(ip_new[12:20]) + struct.pack("!BBH", 0, 6, len(tcp_new))
    struct.pack_into("!H", tcp_new, 16, csum(pseudo + bytes(tcp_new)))
    frame = bytes(pkt[:14]) + bytes(ip_new) + bytes(tcp_new)
    out += struct.pack("<IIII", ts_s, ts_us, len(frame), len(frame)) + frame

open(dst, "wb").write(out)
print("wrote", dst, len(frames), "frames")
