#!/usr/bin/python3
"""Real MySQL clients and capture checks for scripts/make-captures.sh.

Client subcommands connect the way Django does (MySQLdb / mysqlclient over libmariadb), so the bytes, the
close behaviour and the error texts in the captures are what applications really produce:

  query         connect, run each --sql in order, close() (COM_QUIT), exit 0; on an error print it and exit 1
  idle          connect, run one query, print "ready", then sleep (to be SIGKILLed)
  wait-timeout  connect, SET SESSION wait_timeout=N, idle longer than that, then try a query
  abortive      plain socket: read the server greeting, then close with SO_LINGER (1, 0) -> RST
  commands      plaintext MySQLdb: ping(), select_db(), a failing query, a multi-statement query, close()
  tls-keylog    our own MySQL handshake over Python's ssl (TLS 1.2 or 1.3 forced), keys logged to a file

Check subcommands read captures with tshark (no third-party Python modules):

  teardown FILE...          per TCP connection: file, conn, closer, first, peer_fin (expected.tsv columns)
  check DIR EXPECTED.tsv    compare the captures in DIR with the ground truth; exit 1 on any mismatch

Errors go to stderr as "<what was being done>: <Exception>: <args>", i.e. what the application would log.
Run with /usr/bin/python3: that is the interpreter Debian's python3-mysqldb is installed for.
"""

import argparse
import csv
import os
import socket
import struct
import subprocess
import sys
import time


def err(what, exc):
    """Print an exception the way an application log would show it, and flush at once (we may be killed)."""
    print(f"{what}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def connect(args, **extra):
    import MySQLdb  # only the client subcommands need it

    kwargs = dict(
        host=args.host,
        port=args.port,
        user=args.user,
        passwd=args.password,
        connect_timeout=10,
        **extra,
    )
    if args.ca:
        # The same dict Django passes through OPTIONS={"ssl": {...}}: TLS with the lab CA.
        kwargs["ssl"] = {"ca": args.ca}
    return MySQLdb.connect(**kwargs)


def run_sql(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    cur.close()
    return rows


def cmd_query(args):
    import MySQLdb

    try:
        conn = connect(args)
    except MySQLdb.Error as e:
        err("connect", e)
        return 1
    for sql in args.sql or ["SELECT 1"]:
        try:
            print(run_sql(conn, sql), flush=True)
        except MySQLdb.Error as e:
            err(sql, e)
            return 1
    conn.close()  # sends COM_QUIT, then closes the socket
    return 0


def cmd_err_exit(args):
    """A query the server answers with ERR, then the process exits without close(): no COM_QUIT,
    the kernel sends the FIN (an application that gives up after an error)."""
    import MySQLdb

    try:
        conn = connect(args)
    except MySQLdb.Error as e:
        err("connect", e)
        return 1
    try:
        run_sql(conn, args.sql)
    except MySQLdb.Error as e:
        err(args.sql, e)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_idle(args):
    import MySQLdb

    try:
        conn = connect(args)
        print(run_sql(conn, args.sql), flush=True)
    except MySQLdb.Error as e:
        err("connect/query", e)
        return 1
    print("ready", flush=True)
    time.sleep(args.seconds)
    conn.close()
    return 0


def cmd_wait_timeout(args):
    import MySQLdb

    try:
        conn = connect(args)
        run_sql(conn, f"SET SESSION wait_timeout={args.timeout}")
    except MySQLdb.Error as e:
        err("connect/set", e)
        return 1
    print("ready", flush=True)
    time.sleep(args.idle)
    try:
        print(run_sql(conn, "SELECT 1"), flush=True)
    except MySQLdb.Error as e:
        err(f"SELECT 1 after {args.idle} s idle", e)
        return 0  # the error is the expected outcome
    print("unexpected: the query after the idle period succeeded", file=sys.stderr, flush=True)
    return 1


def cmd_commands(args):
    """One plaintext connection (no ssl dict: libmariadb 3.3 then sends no SSLRequest) that issues the
    commands other than COM_QUERY a Django-style client uses, an ERR reply and a multi-result reply."""
    import MySQLdb
    from MySQLdb.constants import CLIENT

    try:
        # MySQLdb itself sends "SET autocommit=0" right after the login (its autocommit=False default).
        conn = connect(args, client_flag=CLIENT.MULTI_STATEMENTS)
        conn.ping()  # COM_PING
        conn.select_db("mysql")  # COM_INIT_DB
    except MySQLdb.Error as e:
        err("connect/ping/select_db", e)
        return 1
    cur = conn.cursor()
    sql = "SELECT * FROM no_such_table"
    try:
        cur.execute(sql)
        print("unexpected: the query on a missing table succeeded", file=sys.stderr, flush=True)
        return 1
    except MySQLdb.Error as e:
        err(sql, e)  # ERR 1146, the expected outcome; the connection stays usable
    sql = "SELECT 1; SELECT 2"
    try:
        cur.execute(sql)
        sets = [cur.fetchall()]
        while cur.nextset():
            sets.append(cur.fetchall())
    except MySQLdb.Error as e:
        err(sql, e)
        return 1
    print(sets, flush=True)
    if len(sets) != 2:
        print(f"unexpected: {len(sets)} result sets, expected 2", file=sys.stderr, flush=True)
        return 1
    cur.close()
    conn.close()  # COM_QUIT
    return 0


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"server closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def cmd_abortive(args):
    sock = socket.create_connection((args.host, args.port), timeout=10)
    # The greeting is one MySQL packet: 3-byte little-endian length, sequence id, payload.
    header = recv_exact(sock, 4)
    length = int.from_bytes(header[:3], "little")
    payload = recv_exact(sock, length)
    version = payload[1:].split(b"\0")[0].decode(errors="replace")
    print(f"greeting: {length} bytes, protocol {payload[0]}, server {version}", flush=True)
    # Linger on with a zero timeout: close() discards the connection and the kernel sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return 0


# Capability flags (protocol docs: "Capabilities Flags").
CLIENT_PROTOCOL_41 = 0x0200
CLIENT_SSL = 0x0800
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CHARSET_UTF8_GENERAL_CI = 33
MAX_PACKET = 16 * 1024 * 1024


def read_packet(sock):
    """One MySQL packet (no 16 MiB continuation: nothing here is that large): (sequence id, payload)."""
    header = recv_exact(sock, 4)
    return header[3], recv_exact(sock, int.from_bytes(header[:3], "little"))


def write_packet(sock, seq, payload):
    sock.sendall(len(payload).to_bytes(3, "little") + bytes([seq]) + payload)


def native_password(password, scramble):
    """mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw)))."""
    import hashlib

    if not password:
        return b""
    h1 = hashlib.sha1(password.encode()).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(scramble + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


def parse_greeting(payload):
    """Protocol 10 greeting -> (server version, 20-byte scramble, server capabilities)."""
    if payload[0] != 10:
        raise ValueError(f"greeting: protocol {payload[0]}, expected 10")
    end = payload.index(b"\0", 1)
    version = payload[1:end].decode(errors="replace")
    pos = end + 1 + 4  # connection id
    scramble = payload[pos:pos + 8]
    pos += 8 + 1  # filler
    caps = int.from_bytes(payload[pos:pos + 2], "little")
    pos += 2 + 1 + 2  # charset, status
    caps |= int.from_bytes(payload[pos:pos + 2], "little") << 16
    pos += 2
    auth_len = payload[pos]
    pos += 1 + 10  # reserved (MariaDB: 6 filler bytes and 4 bytes of extended capabilities)
    # Part 2 is max(13, auth_len - 8) bytes, its last one a NUL.
    scramble += payload[pos:pos + max(13, auth_len - 8) - 1]
    return version, scramble, caps


def check_reply(what, payload):
    """OK (0x00) passes; ERR (0xff) raises with its code and message; anything else raises too."""
    if payload[0] == 0x00:
        return
    if payload[0] == 0xFF:
        code = int.from_bytes(payload[1:3], "little")
        raise RuntimeError(f"{what}: ERR {code}: {payload[9:].decode(errors='replace')}")
    raise RuntimeError(f"{what}: unexpected reply 0x{payload[0]:02x} ({len(payload)} bytes)")


def cmd_tls_keylog(args):
    """A MySQL client written out by hand, so that Python's ssl module can log the TLS keys (neither the
    mariadb CLI nor MySQLdb can on OpenSSL 3): greeting, SSLRequest, TLS handshake (version forced),
    HandshakeResponse41 with mysql_native_password, OK, COM_QUERY, its result, COM_QUIT, close()."""
    import ssl

    caps = CLIENT_SSL | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
    # Capabilities, max packet size, charset, 23 reserved bytes: the SSLRequest and the start of the
    # HandshakeResponse41 are the same 32 bytes.
    fixed = caps.to_bytes(4, "little") + MAX_PACKET.to_bytes(4, "little") + bytes([CHARSET_UTF8_GENERAL_CI])
    fixed += bytes(23)
    try:
        sock = socket.create_connection((args.host, args.port), timeout=10)
        seq, payload = read_packet(sock)
        version, scramble, server_caps = parse_greeting(payload)
        if not server_caps & CLIENT_SSL:
            raise RuntimeError(f"the server ({version}) does not offer TLS")
        write_packet(sock, seq + 1, fixed)  # SSLRequest, sequence id 1
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(args.ca)
        tls_version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[args.tls_version]
        ctx.minimum_version = ctx.maximum_version = tls_version
        ctx.keylog_filename = args.keylog  # NSS key log format, appended to
        if args.cipher:
            ctx.set_ciphers(args.cipher)  # OpenSSL names; TLS 1.2 and below only
        if args.no_etm:
            # SSL_OP_NO_ENCRYPT_THEN_MAC (OpenSSL 1.1+), which Python's ssl does not name: the
            # ClientHello then leaves out encrypt_then_mac and CBC records are MAC-then-encrypt.
            ctx.options |= 1 << 19
        tls = ctx.wrap_socket(sock, server_hostname=args.host)
        print(f"{tls.version()} {tls.cipher()[0]}", flush=True)
        auth = native_password(args.password, scramble)
        response = fixed + args.user.encode() + b"\0" + bytes([len(auth)]) + auth
        response += b"mysql_native_password\0"
        write_packet(tls, seq + 2, response)  # HandshakeResponse41, sequence id 2, now inside TLS
        _, payload = read_packet(tls)
        check_reply("login", payload)
        write_packet(tls, 0, b"\x03" + args.sql.encode())  # COM_QUERY
        # Text result set without CLIENT_DEPRECATE_EOF: column count, column definitions, EOF, rows, EOF.
        _, payload = read_packet(tls)
        if payload[0] in (0x00, 0xFF):
            check_reply(args.sql, payload)
        else:
            eofs, rows = 0, []
            while eofs < 2:
                _, payload = read_packet(tls)
                if payload[0] == 0xFF:
                    check_reply(args.sql, payload)
                if payload[0] == 0xFE and len(payload) < 9:
                    eofs += 1
                elif eofs == 1:
                    rows.append(payload)
            print(f"{args.sql}: {len(rows)} row(s)", flush=True)
        write_packet(tls, 0, b"\x01")  # COM_QUIT: the server answers by closing
        tls.close()  # no close_notify (Python only sends one on unwrap()), like the real clients
    except (OSError, ValueError, RuntimeError) as e:
        err("tls-keylog", e)
        return 1
    return 0


def flag(value):
    return value in ("1", "True", "true")


def teardown_rows(path):
    """Per TCP connection: who sent the first FIN or RST, which flag it was, and whether the peer also FINed."""
    out = subprocess.run(
        ["tshark", "-r", path, "-T", "fields", "-E", "separator=\t",
         "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
         "-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "tcp.flags.fin", "-e", "tcp.flags.reset"],
        check=True, capture_output=True, text=True,
    ).stdout
    streams = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 8 or f[0] == "":
            continue
        stream = int(f[0])
        src = (f[1] or f[2], f[3])
        syn, ack, fin, rst = (flag(x) for x in f[4:8])
        s = streams.setdefault(stream, {"client": None, "first": None, "fins": set()})
        if syn and not ack and s["client"] is None:
            s["client"] = src
        if (fin or rst) and s["first"] is None:
            s["first"] = (src, "rst" if rst else "fin")
        if fin:
            s["fins"].add(src)
    rows = []
    name = os.path.basename(path)
    for stream in sorted(streams):
        s = streams[stream]
        if s["first"] is None:
            rows.append((name, str(stream), "none", "none", "no"))
            continue
        sender, kind = s["first"]
        closer = "unknown" if s["client"] is None else ("client" if sender == s["client"] else "server")
        peer_fin = "yes" if any(e != sender for e in s["fins"]) else "no"
        rows.append((name, str(stream), closer, kind, peer_fin))
    return rows


def cmd_teardown(args):
    for path in args.files:
        for row in teardown_rows(path):
            print("\t".join(row))
    return 0


def cmd_check(args):
    with open(args.expected, newline="") as fh:
        expected = list(csv.DictReader(fh, delimiter="\t"))
    by_file = {}
    for row in expected:
        by_file.setdefault(row["file"], []).append(row)
    bad = 0
    for name, rows in sorted(by_file.items()):
        path = os.path.join(args.dir, name)
        if not os.path.exists(path):
            print(f"MISSING {name}", file=sys.stderr)
            bad += 1
            continue
        got = teardown_rows(path)
        if len(got) != len(rows):
            print(f"MISMATCH {name}: {len(got)} connections, expected {len(rows)}", file=sys.stderr)
            bad += 1
        for exp, g in zip(rows, got):
            _, conn, closer, first, peer_fin = g
            ok = (exp["conn"] == conn
                  and exp["closer"] in (closer, "either") and closer in ("client", "server")
                  and exp["first"] == first and exp["peer_fin"] == peer_fin)
            status = "ok      " if ok else "MISMATCH"
            print(f"{status} {name} conn {conn}: {closer} {first} peer_fin={peer_fin}"
                  f" (expected {exp['closer']} {exp['first']} peer_fin={exp['peer_fin']})",
                  file=sys.stderr if not ok else sys.stdout)
            bad += not ok
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def client(name, fn, help_text):
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--user", default="app")
        sp.add_argument("--password", default=os.environ.get("LAB_APP_PASSWORD", ""))
        sp.add_argument("--ca", help="CA certificate: connect with TLS")
        sp.set_defaults(fn=fn)
        return sp

    sp = client("query", cmd_query, "run queries, then close()")
    sp.add_argument("--sql", action="append", help="statement to run (repeatable, in order)")
    sp = client("err-exit", cmd_err_exit, "a failing query, then exit without COM_QUIT")
    sp.add_argument("--sql", default="SELECT * FROM no_such_table")
    sp = client("idle", cmd_idle, "run one query, then sleep")
    sp.add_argument("--sql", default="SELECT 1")
    sp.add_argument("--seconds", type=float, default=300)
    sp = client("wait-timeout", cmd_wait_timeout, "idle past a session wait_timeout, then query")
    sp.add_argument("--timeout", type=int, default=2)
    sp.add_argument("--idle", type=float, default=3.5)
    client("abortive", cmd_abortive, "read the greeting, then close with RST")
    client("commands", cmd_commands, "plaintext: ping, select_db, failing query, multi-statement, close()")
    sp = client("tls-keylog", cmd_tls_keylog, "hand-written MySQL handshake over ssl, keys logged")
    sp.add_argument("--tls-version", choices=("1.2", "1.3"), required=True)
    sp.add_argument("--keylog", required=True, help="key log file (NSS format)")
    sp.add_argument("--sql", default="SELECT 1")
    sp.add_argument("--cipher", help="OpenSSL cipher list for TLS 1.2 (e.g. ECDHE-ECDSA-AES128-SHA)")
    sp.add_argument("--no-etm", action="store_true", help="do not offer encrypt-then-MAC (RFC 7366)")

    sp = sub.add_parser("teardown", help="who sent the first FIN/RST of each connection")
    sp.add_argument("files", nargs="+")
    sp.set_defaults(fn=cmd_teardown)
    sp = sub.add_parser("check", help="compare captures with expected.tsv")
    sp.add_argument("dir")
    sp.add_argument("expected")
    sp.set_defaults(fn=cmd_check)

    args = p.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
