#!/usr/bin/python3
"""Real MySQL clients and capture checks for scripts/make-captures.sh.

Client subcommands connect the way Django does (MySQLdb / mysqlclient over libmariadb), so the bytes, the
close behaviour and the error texts in the captures are what applications really produce:

  query         connect, run each --sql in order, close() (COM_QUIT), exit 0; on an error print it and exit 1
  idle          connect, run one query, print "ready", then sleep (to be SIGKILLed)
  wait-timeout  connect, SET SESSION wait_timeout=N, idle longer than that, then try a query
  abortive      plain socket: read the server greeting, then close with SO_LINGER (1, 0) -> RST

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


def connect(args):
    import MySQLdb  # only the client subcommands need it

    kwargs = dict(
        host=args.host,
        port=args.port,
        user=args.user,
        passwd=args.password,
        connect_timeout=10,
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
    sp = client("idle", cmd_idle, "run one query, then sleep")
    sp.add_argument("--sql", default="SELECT 1")
    sp.add_argument("--seconds", type=float, default=300)
    sp = client("wait-timeout", cmd_wait_timeout, "idle past a session wait_timeout, then query")
    sp.add_argument("--timeout", type=int, default=2)
    sp.add_argument("--idle", type=float, default=3.5)
    client("abortive", cmd_abortive, "read the greeting, then close with RST")

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
