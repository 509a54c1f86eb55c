#!/usr/bin/env python3
"""Attack suite for issue 12 (memory bounded by configuration): hostile-but-valid captures.

Each subcommand writes one capture that is well-formed pcap/pcapng, decodes as MySQL (tshark agrees),
and pushes one of proxyscope's per-capture data structures: many connections (synflood, idle, short),
out-of-order buffering (cut, tiny, overlap), TLS records (alerts), pcapng blocks (dsb, idb), request
pairing across a proxy (pairing), terminal-hostile strings (inject) and a clock stepped back (backwards).
The point is to measure whether `proxyscope analyze` stays within memory its options bound, or grows
with the file; scripts/attack.sh runs the whole suite and prints a table.

    python3 scripts/attack_gen.py synflood -o /tmp/synflood.pcap [--n 2000000]
    python3 scripts/attack_gen.py all --dir /tmp/attacks [--scale 0.01]   # every attack, sizes x scale

`all` prints each file's path, packets and bytes and writes DIR/manifest.tsv (attack, path, packets,
bytes) for scripts/attack.sh. Output is deterministic (fixed seeds). Standard library only.

Packets are Ethernet II / IPv4 / TCP (checksums 0, lengths right, sequence and acknowledgement numbers
consistent), pcap with microsecond timestamps, 10 us apart unless an attack says otherwise. The bulk
attacks compile one connection into a single struct format once (a "template") and stamp it per
connection with only the client address, port, thread id and timestamps varying.
"""

import argparse
import os
import random
import struct
import sys
import time

# ---------------------------------------------------------------------------------------------------
# Wire constants

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
PA = PSH | ACK
FA = FIN | ACK

CLIENT_MAC = bytes.fromhex('020000000001')
SERVER_MAC = bytes.fromhex('020000000002')
ETH_C2S = SERVER_MAC + CLIENT_MAC + b'\x08\x00'
ETH_S2C = CLIENT_MAC + SERVER_MAC + b'\x08\x00'

T0 = 1_700_000_000 * 1_000_000  # capture start, microseconds since the epoch
STEP = 10  # microseconds between packets

PCAP_GLOBAL = struct.pack('<IHHiIII', 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)  # LINKTYPE_ETHERNET, us
PCAP_REC = struct.Struct('<IIII')
# Ethernet header (14s), IPv4 header, TCP header (20 bytes, no options)
NET = struct.Struct('>14sBBHHHBBH4s4sHHIIBBHHH')
NET_LEN = NET.size  # 54
OFF_IP_SRC, OFF_IP_DST, OFF_SPORT, OFF_DPORT = 26, 30, 34, 36  # offsets in the frame


def ip(s):
    return bytes(int(x) for x in s.split('.'))


def ip_n(n):
    return n.to_bytes(4, 'big')


def client_addr(i):
    """Distinct (ip, port) for connection i: 10.1.0.0 upwards (2^20 addresses), ports 1024..65535."""
    return ip_n(0x0A010000 + (i & 0xFFFFF)), 1024 + (i >> 20) % 64512


def frame(eth, src, dst, sport, dport, seq, ack, flags, payload, orig_payload_len=None):
    plen = len(payload) if orig_payload_len is None else orig_payload_len
    return NET.pack(eth, 0x45, 0, 40 + plen, 0, 0x4000, 64, 6, 0, src, dst,
                    sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0) + payload


# ---------------------------------------------------------------------------------------------------
# MySQL packets

def my(seq, payload):
    return len(payload).to_bytes(3, 'little') + bytes([seq]) + payload


def greeting(version=b'8.0.36', thread_id=1, cap_low=0xF7FF):
    p = (b'\x0a' + version + b'\x00' + struct.pack('<I', thread_id) + b'abcdefgh\x00'
         + struct.pack('<HBHH', cap_low, 0x21, 0x0002, 0x81FF) + bytes([21]) + bytes(10)
         + b'ijklmnopqrst\x00' + b'mysql_native_password\x00')
    return my(0, p)


def greeting_tid_offset(version):
    """Offset of the thread id inside greeting(version)'s bytes."""
    return 4 + 1 + len(version) + 1


def handshake_response(user=b'app'):
    p = (struct.pack('<IIB', 0x000AA285, 16777216, 0x21) + bytes(23) + user + b'\x00'
         + bytes([20]) + bytes(range(1, 21)) + b'mysql_native_password\x00')
    return my(1, p)


def ssl_request():
    return my(1, struct.pack('<IIB', 0x000AA285 | 0x800, 16777216, 0x21) + bytes(23))


def ok(seq):
    return my(seq, b'\x00\x00\x00\x02\x00\x00\x00')


def err(seq, code, state, msg):
    return my(seq, b'\xff' + struct.pack('<H', code) + b'#' + state + msg)


def com_query(sql):
    return my(0, b'\x03' + sql)


COM_QUIT = my(0, b'\x01')


# ---------------------------------------------------------------------------------------------------
# Writers

class PcapWriter:
    """pcap, Ethernet, microseconds; `t` is the next packet's time (advanced by `step` per packet)."""

    FLUSH = 8 << 20

    def __init__(self, path, t=T0, step=STEP):
        self.f = open(path, 'wb', buffering=0)
        self.buf = bytearray(PCAP_GLOBAL)
        self.t = t
        self.step = step
        self.packets = 0

    def raw(self, data, packets):
        """Already-built records (pcap record header + frame), `packets` of them."""
        self.buf += data
        self.packets += packets
        if len(self.buf) >= self.FLUSH:
            self.f.write(self.buf)
            self.buf = bytearray()

    def frame(self, fr, orig_len=None, t=None):
        if t is None:
            t = self.t
            self.t += self.step
        s, u = divmod(t, 1_000_000)
        self.buf += PCAP_REC.pack(s, u, len(fr), len(fr) if orig_len is None else orig_len)
        self.buf += fr
        self.packets += 1
        if len(self.buf) >= self.FLUSH:
            self.f.write(self.buf)
            self.buf = bytearray()

    def close(self):
        self.f.write(self.buf)
        self.buf = bytearray()
        self.f.close()


class Recorder:
    """Collects frames with their time offsets instead of writing them (for templates and pcapng)."""

    def __init__(self, t=0, step=STEP):
        self.t = t
        self.step = step
        self.frames = []  # (t, frame bytes, orig_len)

    def frame(self, fr, orig_len=None, t=None):
        if t is None:
            t = self.t
            self.t += self.step
        self.frames.append((t, fr, len(fr) if orig_len is None else orig_len))


class Conn:
    """One TCP connection (client -> server) whose sequence numbers are tracked, MySQL helpers on top."""

    def __init__(self, w, cip, cport, sip, sport, cisn=1_000_000, sisn=2_000_000):
        self.w = w
        self.cip, self.cport, self.sip, self.sport = cip, cport, sip, sport
        self.cseq, self.sseq = cisn, sisn  # next sequence number each side sends
        self.server_acked = False  # the server's SYN was seen (the client's ACK field is valid)

    def c(self, payload=b'', flags=PA, t=None):
        ack = self.sseq if flags & ACK else 0
        self.w.frame(frame(ETH_C2S, self.cip, self.sip, self.cport, self.sport, self.cseq, ack, flags,
                           payload), t=t)
        self.cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)

    def s(self, payload=b'', flags=PA, t=None):
        self.w.frame(frame(ETH_S2C, self.sip, self.cip, self.sport, self.cport, self.sseq, self.cseq,
                           flags, payload), t=t)
        self.sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)

    def open(self):
        self.c(b'', SYN)
        self.s(b'', SYN | ACK)
        self.c(b'', ACK)

    def login(self, version=b'8.0.36', thread_id=1, user=b'app'):
        self.open()
        self.s(greeting(version, thread_id))
        self.c(handshake_response(user))
        self.s(ok(2))

    def query(self, sql, t_ok=None):
        self.c(com_query(sql))
        self.s(ok(1), t=t_ok)

    def close(self):
        """COM_QUIT, then FIN/ACK both ways and the final ACK."""
        self.c(COM_QUIT)
        self.c(b'', FA)
        self.s(b'', FA)
        self.c(b'', ACK)

    def server_close(self):
        self.s(b'', FA)
        self.c(b'', FA)
        self.s(b'', ACK)


# ---------------------------------------------------------------------------------------------------
# Templates: one connection's packets compiled into one struct.pack call

CIP_MARK = b'\xfe\xfe\xfe\xfe'
CPORT_MARK = 65534


class Template:
    """Record one connection with client CIP_MARK:CPORT_MARK, then `stamp(t0, cip, cport, tid)` returns
    the bytes of all its pcap records for another client address; `duration` is the time it spans.
    `tid_frames` maps frame index -> offset (in the frame) of a u32le thread id to vary per connection."""

    def __init__(self, rec, tid_frames=None):
        tid_frames = tid_frames or {}
        blob = bytearray()
        slots = []  # (offset in blob, struct code, size, variable name)
        ts_lines = []
        for k, (t, fr, orig) in enumerate(rec.frames):
            base = len(blob)
            blob += PCAP_REC.pack(0, 0, len(fr), orig) + fr
            ts_lines.append(f'    s{k}, u{k} = divmod(t0 + {t}, 1000000)')
            slots.append((base, 'I', 4, f's{k}'))
            slots.append((base + 4, 'I', 4, f'u{k}'))
            f = base + 16
            if fr[OFF_IP_SRC:OFF_IP_SRC + 4] == CIP_MARK:
                slots.append((f + OFF_IP_SRC, '4s', 4, 'cip'))
                slots.append((f + OFF_SPORT, '2s', 2, 'cport'))
            elif fr[OFF_IP_DST:OFF_IP_DST + 4] == CIP_MARK:
                slots.append((f + OFF_IP_DST, '4s', 4, 'cip'))
                slots.append((f + OFF_DPORT, '2s', 2, 'cport'))
            if k in tid_frames:
                slots.append((f + tid_frames[k], 'I', 4, 'tid'))
        slots.sort()
        fmt, args, consts, pos = ['<'], [], {}, 0
        for off, code, size, name in slots:
            if off > pos:
                c = f'c{len(consts)}'
                consts[c] = bytes(blob[pos:off])
                fmt.append(f'{off - pos}s')
                args.append(c)
            fmt.append(code)
            args.append(name)
            pos = off + size
        if pos < len(blob):
            c = f'c{len(consts)}'
            consts[c] = bytes(blob[pos:])
            fmt.append(f'{len(blob) - pos}s')
            args.append(c)
        ns = dict(consts)
        ns['_pack'] = struct.Struct(''.join(fmt)).pack
        src = ('def stamp(t0, cip, cport, tid=0):\n'
               '    cport = cport.to_bytes(2, "big")\n' + '\n'.join(ts_lines) + '\n'
               f'    return _pack({", ".join(args)})\n')
        exec(src, ns)  # generated code: constants and slot order only, no input from outside
        self.stamp = ns['stamp']
        self.packets = len(rec.frames)
        self.duration = rec.frames[-1][0] - rec.frames[0][0] if rec.frames else 0


def record(build, step=STEP):
    """Run build(conn) on a Recorder for client CIP_MARK:CPORT_MARK; returns the Recorder."""
    rec = Recorder(step=step)
    build(rec)
    return rec


# ---------------------------------------------------------------------------------------------------
# pcapng

def ng_block(btype, body):
    pad = (-len(body)) % 4
    total = 12 + len(body) + pad
    return struct.pack('<II', btype, total) + body + bytes(pad) + struct.pack('<I', total)


def ng_shb():
    return ng_block(0x0A0D0D0A, struct.pack('<IHHq', 0x1A2B3C4D, 1, 0, -1))


def ng_idb(linktype, snaplen=262144):
    return ng_block(0x00000001, struct.pack('<HHI', linktype, 0, snaplen))


def ng_epb(iface, t, fr, orig=None):
    body = struct.pack('<IIIII', iface, t >> 32, t & 0xFFFFFFFF, len(fr),
                       len(fr) if orig is None else orig) + fr
    return ng_block(0x00000006, body)


def ng_dsb(secrets_type, data):
    return ng_block(0x0000000A, struct.pack('<II', secrets_type, len(data)) + data + bytes((-len(data)) % 4))


class NgWriter:
    def __init__(self, path):
        self.f = open(path, 'wb', buffering=0)
        self.buf = bytearray()
        self.packets = 0  # EPBs
        self.blocks = 0

    def add(self, block, packet=False):
        self.buf += block
        self.blocks += 1
        self.packets += packet
        if len(self.buf) >= 8 << 20:
            self.f.write(self.buf)
            self.buf = bytearray()

    def close(self):
        self.f.write(self.buf)
        self.f.close()


# ---------------------------------------------------------------------------------------------------
# Attacks. Each takes (path, n) and returns the number of packets written.

SRV = ip('10.0.0.2')
PROXY = ip('10.0.0.1')


def gen_pairing(path, n):
    """A proxy: 50 frontend connections to 10.0.0.1:6033, 20 backend connections from 10.0.0.1 to
    10.0.0.2:3306, n requests relayed round-robin (query front, 0.2 ms later back, back OK, 0.2 ms later
    front OK), a new request every millisecond; all connections closed properly at the end."""
    w = PcapWriter(path)
    fronts = [Conn(w, ip_n(0x0A000100 + 10 + i), 40000 + i, PROXY, 6033) for i in range(50)]
    backs = [Conn(w, PROXY, 50000 + j, SRV, 3306) for j in range(20)]
    for j, b in enumerate(backs):
        b.login(b'8.0.36', 1000 + j, b'proxy')
    for i, f in enumerate(fronts):
        f.login(b'5.5.30 (ProxySQL)', 1 + i, b'app')
    t = w.t + 1000
    for i in range(n):
        f, b = fronts[i % 50], backs[i % 20]
        sql = b"SELECT %d, 'padding'" % i
        f.c(com_query(sql), t=t)
        b.c(com_query(sql), t=t + 200)
        b.s(ok(1), t=t + 300)
        f.s(ok(1), t=t + 500)
        t += 1000
    w.t = t
    for f in fronts:
        f.close()
    for b in backs:
        b.close()
    w.close()
    return w.packets


# The legitimate session inside each flood: logs in and serves three queries at the start, one
# in the middle, and leaves with COM_QUIT and a FIN at the end. Whatever the attack, it must come
# out whole: verdict clean_quit, not evicted (tests/attacks.rs checks it).
LEGIT_IP, LEGIT_PORT = ip('192.168.77.7'), 50007


def _stamp_many(path, n, build, tid_frames=None, gap=STEP):
    tpl = Template(record(build), tid_frames)
    w = PcapWriter(path)
    stamp, t, step = tpl.stamp, w.t, tpl.duration + gap
    chunk, out = [], w.raw
    legit = Conn(w, LEGIT_IP, LEGIT_PORT, SRV, 3306)

    def flush():
        out(b''.join(chunk), len(chunk) * tpl.packets)
        chunk.clear()

    for i in range(n):
        if i in (0, n // 2):
            flush()
            w.t = t
            if i == 0:
                legit.login(VERSION, thread_id=424242, user=b'legit')
                for q in range(3):
                    legit.query(b'SELECT %d AS legit_start' % q)
            else:
                legit.query(b'SELECT 1 AS legit_middle')
            t = w.t
        cip, cport = client_addr(i)
        chunk.append(stamp(t, cip, cport, 1 + i))
        t += step
        if len(chunk) == 4096:
            flush()
    flush()
    w.t = t
    legit.close()
    w.close()
    return w.packets


def gen_synflood(path, n):
    """n SYNs from distinct (client ip, port) to 10.0.0.2:3306, never answered."""
    return _stamp_many(path, n, lambda rec: Conn(rec, CIP_MARK, CPORT_MARK, SRV, 3306).c(b'', SYN))


VERSION = b'8.0.36'
TID_IN_GREETING = {3: greeting_tid_offset(VERSION) + NET_LEN}


def gen_idle(path, n):
    """n MySQL connections that log in (greeting, response, OK) and then stay silent, never closed."""
    return _stamp_many(path, n, lambda rec: Conn(rec, CIP_MARK, CPORT_MARK, SRV, 3306).login(VERSION),
                       TID_IN_GREETING)


def _short(rec):
    c = Conn(rec, CIP_MARK, CPORT_MARK, SRV, 3306)
    c.login(VERSION)
    c.query(b'SELECT 1')
    c.close()


def gen_short(path, n):
    """n short MySQL connections one after another: login, one query + OK, COM_QUIT, FIN close."""
    return _stamp_many(path, n, _short, TID_IN_GREETING)


def _rand_hex(rng, nbytes):
    return rng.getrandbits(nbytes * 8).to_bytes(nbytes, 'big').hex().encode()


def gen_dsb(path, n):
    """pcapng: SHB, IDB (Ethernet), then n Decryption Secrets Blocks (TLS key log, 3 CLIENT_RANDOM
    lines each, all distinct) interleaved with the EPBs of 4 short MySQL connections to port 3306."""
    rec = Recorder(t=T0)
    for i in range(4):
        cip, cport = client_addr(i)
        c = Conn(rec, cip, cport, SRV, 3306)
        c.login(VERSION, 1 + i)
        c.query(b'SELECT %d' % i)
        c.close()
    epbs = [ng_epb(0, t, fr, orig) for t, fr, orig in rec.frames]
    rng = random.Random(5)
    w = NgWriter(path)
    w.add(ng_shb())
    w.add(ng_idb(1))
    e = 0
    for i in range(n):
        # the EPBs spread evenly among the DSBs
        while e < len(epbs) and e * n <= i * len(epbs):
            w.add(epbs[e], True)
            e += 1
        keylog = b''.join(b'CLIENT_RANDOM ' + _rand_hex(rng, 32) + b' ' + _rand_hex(rng, 48) + b'\n'
                          for _ in range(3))
        w.add(ng_dsb(0x544C534B, keylog))
    for b in epbs[e:]:
        w.add(b, True)
    w.close()
    return w.packets


def gen_idb(path, n):
    """pcapng: SHB, n Interface Description Blocks (linktypes cycling 1, 101, 113, 276, 0; interface 0
    is Ethernet) and, spread among them, the EPBs of one MySQL connection on interface 0."""
    rec = Recorder(t=T0)
    c = Conn(rec, ip('10.1.0.1'), 40000, SRV, 3306)
    c.login(VERSION)
    c.query(b'SELECT 1')
    c.close()
    epbs = [ng_epb(0, t, fr, orig) for t, fr, orig in rec.frames]
    cycle = [ng_idb(lt) for lt in (1, 101, 113, 276, 0)]
    w = NgWriter(path)
    w.add(ng_shb())
    # slices of whole cycles (interface 0 first), an EPB after each slice
    cycles = max(1, n // 5)
    per = max(1, cycles // len(epbs))
    done = e = 0
    while done < cycles:
        k = min(per, cycles - done)
        w.buf += b''.join(cycle) * k
        w.blocks += 5 * k
        done += k
        if e < len(epbs):
            w.add(epbs[e], True)
            e += 1
    for b in epbs[e:]:
        w.add(b, True)
    w.close()
    return w.packets


def _established(w):
    """One logged-in MySQL connection 10.1.0.1:40000 -> 10.0.0.2:3306."""
    c = Conn(w, ip('10.1.0.1'), 40000, SRV, 3306)
    c.login(VERSION)
    return c


def _bulk_segments(w, n, server, seq0, seq_step, payloads, orig_payload, c):
    """n segments of connection c, one direction, sequence seq0 + k*seq_step, payload payloads[k % len];
    captured as given, original length 54 + orig_payload (None: as captured)."""
    if server:
        pre = NET.pack(ETH_S2C, 0x45, 0, 0, 0, 0x4000, 64, 6, 0, c.sip, c.cip, c.sport, c.cport,
                       0, 0, 0x50, PA, 65535, 0, 0)[:38]
        ack = c.cseq
    else:
        pre = NET.pack(ETH_C2S, 0x45, 0, 0, 0, 0x4000, 64, 6, 0, c.cip, c.sip, c.cport, c.sport,
                       0, 0, 0x50, PA, 65535, 0, 0)[:38]
        ack = c.sseq
    # pre = Ethernet + IP header + ports (frame bytes 0..38); the IP total length (frame bytes 16..18)
    # depends on the original payload length: patched per payload variant below
    tails = []
    heads = []
    for p in payloads:
        plen = len(p) if orig_payload is None else orig_payload
        h = bytearray(pre)
        h[16:18] = (40 + plen).to_bytes(2, 'big')
        heads.append(bytes(h))
        tails.append(struct.pack('>IBBHHH', ack & 0xFFFFFFFF, 0x50, PA, 65535, 0, 0) + p)
    rec_hdr = struct.Struct('<IIII').pack
    seqb = struct.Struct('>I').pack
    t, step = w.t, w.step
    nv = len(payloads)
    chunk = []
    for k in range(n):
        v = k % nv
        fr_len = NET_LEN + len(payloads[v])
        orig = fr_len if orig_payload is None else NET_LEN + orig_payload
        s, u = divmod(t, 1_000_000)
        chunk.append(rec_hdr(s, u, fr_len, orig) + heads[v] + seqb((seq0 + k * seq_step) & 0xFFFFFFFF)
                     + tails[v])
        t += step
        if len(chunk) == 8192:
            w.raw(b''.join(chunk), 8192)
            chunk = []
    w.raw(b''.join(chunk), len(chunk))
    w.t = t


def gen_cut(path, n):
    """One connection; server->client segments captured with 8 of 1400 payload bytes (snaplen cut),
    sequence numbers 1400 apart; the first segment after login is missing, so all n are out of order."""
    w = PcapWriter(path)
    c = _established(w)
    _bulk_segments(w, n, True, c.sseq + 1400, 1400, [b'\x00' * 8], 1400, c)
    w.close()
    return w.packets


def gen_tiny(path, n):
    """One connection; n 1-byte client->server segments after a missing first byte (all out of order)."""
    w = PcapWriter(path)
    c = _established(w)
    _bulk_segments(w, n, False, c.cseq + 1, 1, [bytes([b]) for b in b'SELECT 1;'], None, c)
    w.close()
    return w.packets


def gen_overlap(path, n):
    """One connection; a missing first segment, then n server->client segments 1000 bytes long, each
    starting 1 byte after the previous one (contents agree where they overlap)."""
    w = PcapWriter(path)
    c = _established(w)
    period = 256
    stream = bytes(range(256)) * ((period + 1000) // 256 + 1)
    _bulk_segments(w, n, True, c.sseq + 1000, 1, [stream[k:k + 1000] for k in range(period)], None, c)
    w.close()
    return w.packets


def _client_hello():
    body = (b'\x03\x03' + bytes(range(32)) + b'\x00' + b'\x00\x02\x13\x01' + b'\x01\x00' + b'\x00\x00')
    hs = b'\x01' + len(body).to_bytes(3, 'big') + body
    return b'\x16\x03\x01' + len(hs).to_bytes(2, 'big') + hs


def gen_alerts(path, n):
    """One MySQL connection that asks for TLS (greeting with SSL, SSLRequest, ClientHello), then the
    server sends n 7-byte TLS alert records, 200 per segment (close_notify, every 10th a fatal
    handshake_failure)."""
    w = PcapWriter(path)
    c = Conn(w, ip('10.1.0.1'), 40000, SRV, 3306)
    c.open()
    c.s(greeting(VERSION, 1, 0xFFFF))
    c.c(ssl_request())
    c.c(_client_hello())
    warn, fatal = b'\x15\x03\x03\x00\x02\x01\x00', b'\x15\x03\x03\x00\x02\x02\x28'
    per = 200
    seg = (warn * 9 + fatal) * (per // 10)
    segs, rest = divmod(n, per)
    _bulk_segments(w, segs, True, c.sseq, len(seg), [seg], None, c)
    c.sseq += segs * len(seg)
    if rest:
        c.s((warn * 9 + fatal) * (rest // 10) + warn * (rest % 10))
    w.close()
    return w.packets


EVIL_VERSION = b'8.0\x1b[2J\x1b]52;c;SGVsbG8=\x07evil'
EVIL_USER = 'root\r\x1b[31mfake\u202egnp.exe'.encode()
EVIL_QUERY = "SELECT '\x1b]0;title\x07' AS t, '\u202e' AS r".encode()
EVIL_ERR = b'You have an error\x1b[2J\r in your SQL syntax'


def _big_handshake(rec):
    c = Conn(rec, CIP_MARK, CPORT_MARK, SRV, 443)
    c.open()
    # A ClientHello declared 250,000 bytes long, sent in 16 KiB records, the last one withheld:
    # a decoder that collects the message holds ~240 KB for this connection.
    total = 250_000
    hs = b'\x01' + total.to_bytes(3, 'big') + bytes(total)
    for k in range(0, 15 * 16384, 16384):
        part = hs[k:k + 16384]
        c.c(b'\x16\x03\x01' + len(part).to_bytes(2, 'big') + part)


def gen_bighs(path, n):
    """n TLS connections (port 443) that each send most of a 250,000-byte ClientHello and stop:
    every decoder holds a quarter megabyte unless its buffers are bounded across connections."""
    return _stamp_many(path, n, _big_handshake)


def gen_inject(path, n=None):
    """Terminal-hostile strings: server version with ESC/OSC 52/BEL, a user name with CR, SGR and U+202E,
    a query with an OSC title and U+202E, ERR messages with ESC and CR. Connection 1: query -> ERR, the
    server closes. Connection 2: query -> OK, the client resets (RST). Connection 3: login -> ERR
    (access denied), the server closes."""
    w = PcapWriter(path)
    c = Conn(w, ip('10.1.0.1'), 40001, SRV, 3306)
    c.login(EVIL_VERSION, 7, EVIL_USER)
    c.c(com_query(EVIL_QUERY))
    c.s(err(1, 1064, b'42000', EVIL_ERR))
    c.server_close()
    c = Conn(w, ip('10.1.0.2'), 40002, SRV, 3306)
    c.login(EVIL_VERSION, 8, EVIL_USER)
    c.query(EVIL_QUERY)
    c.c(b'', RST | ACK)
    c = Conn(w, ip('10.1.0.3'), 40003, SRV, 3306)
    c.open()
    c.s(greeting(EVIL_VERSION, 9))
    c.c(handshake_response(EVIL_USER))
    c.s(err(2, 1045, b'28000', b"Access denied for user '" + EVIL_USER + b"'@'10.1.0.3'\x1b[2J\r"))
    c.server_close()
    w.close()
    return w.packets


def gen_backwards(path, n=None):
    """Four complete MySQL connections; during the second the clock steps back 5 s, so its last packets
    (and everything after) carry timestamps earlier than its first packet."""
    w = PcapWriter(path, step=1000)
    for i in range(4):
        c = Conn(w, ip_n(0x0A010001 + i), 40000 + i, SRV, 3306)
        c.login(VERSION, 1 + i)
        c.query(b'SELECT %d' % i)
        if i == 1:
            w.t -= 5_000_000
        c.close()
    w.close()
    return w.packets


# name -> (function, default n or None, file extension)
ATTACKS = {
    'pairing': (gen_pairing, 20_000, 'pcap'),
    'synflood': (gen_synflood, 2_000_000, 'pcap'),
    'idle': (gen_idle, 200_000, 'pcap'),
    'short': (gen_short, 2_000_000, 'pcap'),
    'dsb': (gen_dsb, 6_000, 'pcapng'),
    'idb': (gen_idb, 5_000_000, 'pcapng'),
    'cut': (gen_cut, 4_000_000, 'pcap'),
    'tiny': (gen_tiny, 4_000_000, 'pcap'),
    'overlap': (gen_overlap, 1_000_000, 'pcap'),
    'alerts': (gen_alerts, 8_000_000, 'pcap'),
    'bighs': (gen_bighs, 4000, 'pcap'),
    'inject': (gen_inject, None, 'pcap'),
    'backwards': (gen_backwards, None, 'pcap'),
}


def run(name, path, n):
    fn = ATTACKS[name][0]
    start = time.monotonic()
    packets = fn(path, n)
    size = os.path.getsize(path)
    print(f'{path}\t{packets} packets\t{size} bytes\t{time.monotonic() - start:.1f} s', flush=True)
    return packets, size


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='attack', required=True)
    for name, (fn, default, _ext) in ATTACKS.items():
        p = sub.add_parser(name, help=' '.join(fn.__doc__.split()).split('. ')[0], description=fn.__doc__)
        p.add_argument('-o', '--output', required=True, help='file to write')
        if default is not None:
            p.add_argument('--n', type=int, default=default, help=f'size (default {default})')
    p = sub.add_parser('all', help='every attack into --dir, sizes x --scale; writes DIR/manifest.tsv')
    p.add_argument('--dir', required=True)
    p.add_argument('--scale', type=float, default=1.0)
    p.add_argument('--only', action='append', help='only this attack (repeatable)')
    a = ap.parse_args(argv)
    if a.attack != 'all':
        run(a.attack, a.output, getattr(a, 'n', None))
        return
    os.makedirs(a.dir, exist_ok=True)
    rows = []
    for name, (_fn, default, ext) in ATTACKS.items():
        if a.only and name not in a.only:
            continue
        n = None if default is None else max(1, round(default * a.scale))
        path = os.path.join(a.dir, f'{name}.{ext}')
        packets, size = run(name, path, n)
        rows.append(f'{name}\t{path}\t{packets}\t{size}\n')
    with open(os.path.join(a.dir, 'manifest.tsv'), 'w') as f:
        f.writelines(rows)


if __name__ == '__main__':
    sys.exit(main())
