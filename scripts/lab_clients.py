#!/usr/bin/python3
"""Real clients for scripts/lab-scenario.sh, driving `proxyscope lab`.

  run       N MySQLdb clients over TLS (as Django connects), each running a query in a loop for --seconds,
            reconnecting after an error the way an application's next request would; meanwhile, every
            --abort-every seconds, one aborting client: plain socket, read the greeting, send an SSLRequest,
            then half a ClientHello (or nothing, alternately), then close (--abort-mode: FIN, or RST after
            the half ClientHello); --plain: the looping clients do not use TLS. Every client error is written to
            --out as `<wall time> client <n> <what>: <Exception>: <args>`, then a summary line per client.
            --pause S sleeps between queries (so backends sit idle in the lab's pool); --abort-every 0 sends
            no aborting client; --cli N also runs the `mariadb` command-line client N times over TLS, each
            running --cli-statements statements (its stderr is recorded as `cli <n>: <line>`); --idlers K
            opens K plain sockets that read the greeting, send nothing and wait for the lab to close them
            (recorded as `idler <n>: closed by the server after S s (EOF|RST)`).

Run with /usr/bin/python3: that is the interpreter Debian's python3-mysqldb is installed for.
"""

import argparse
import socket
import ssl
import struct
import sys
import threading
import time

lock = threading.Lock()
lines = []


def note(line):
    with lock:
        lines.append(line)
    print(line, file=sys.stderr, flush=True)


def stamp():
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1e6):06d}"


def looper(args, n, stats):
    import MySQLdb

    deadline = time.monotonic() + args.seconds
    conn = None
    ok = errors = 0
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = MySQLdb.connect(
                    host=args.host,
                    port=args.port,
                    user=args.user,
                    passwd=args.password,
                    connect_timeout=10,
                    **({} if args.plain else {"ssl": {"ca": args.ca}}),
                )
            cur = conn.cursor()
            # {client} and {i} make each statement's text unique (a workload of varied statements).
            cur.execute(args.query.replace("{client}", str(n)).replace("{i}", str(ok + errors)))
            cur.fetchall()
            cur.close()
            ok += 1
            if args.pause:
                time.sleep(args.pause)
        except MySQLdb.Error as e:
            errors += 1
            note(f"{stamp()} client {n} query {ok + errors}: {type(e).__name__}: {e}")
            try:
                if conn is not None:
                    conn.close()
            except MySQLdb.Error:
                pass
            conn = None
    if conn is not None:
        conn.close()  # COM_QUIT
    stats[n] = (ok, errors)


def client_hello():
    """The bytes of a real TLS ClientHello (Python's ssl, OpenSSL 3)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def abort_once(args, i, hello):
    s = socket.create_connection((args.host, args.port), timeout=5)
    try:
        hdr = s.recv(4)
        n = hdr[0] | hdr[1] << 8 | hdr[2] << 16
        while n > 0:
            got = s.recv(n)
            if not got:
                break
            n -= len(got)
        caps = 0x0000_0001 | 0x0000_0200 | 0x0000_0800 | 0x0000_8000 | 0x0008_0000
        payload = struct.pack("<IIB", caps, 16 << 20, 33) + bytes(23)
        s.sendall(struct.pack("<I", len(payload) | 1 << 24) + payload)
        half = args.abort_mode == "rst" or i % 2 == 0
        if half:
            s.sendall(hello[: len(hello) // 2])
        time.sleep(0.002)
        if args.abort_mode in ("rst", "mixed") and half:
            # SO_LINGER 0: the close is a RST (a client killed mid-handshake).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()


def cli_runner(args, stats):
    import subprocess

    ok = errors = 0
    sql = "; ".join([args.query] * args.cli_statements)
    for n in range(1, args.cli + 1):
        r = subprocess.run(
            ["mariadb", "--no-defaults", "-h", args.host, "-P", str(args.port), "-u", args.user,
             "-p" + args.password, "--ssl", "--ssl-ca=" + args.ca, "--ssl-verify-server-cert",
             "--connect-timeout=10", "-e", sql],
            capture_output=True, text=True)
        err = [line for line in r.stderr.splitlines() if line.strip()]
        if r.returncode == 0 and not err:
            ok += 1
        else:
            errors += 1
            for line in err or [f"exit status {r.returncode}"]:
                note(f"{stamp()} cli {n}: {line}")
    stats["cli"] = (ok, errors)


def idler(args, n):
    s = socket.create_connection((args.host, args.port), timeout=30)
    start = time.monotonic()
    how = "EOF"
    try:
        while True:
            if not s.recv(4096):
                break
    except ConnectionResetError:
        how = "RST"
    except OSError as e:
        how = f"{type(e).__name__}: {e}"
    finally:
        s.close()
    note(f"{stamp()} idler {n}: closed by the server after {time.monotonic() - start:.3f} s ({how})")


def cmd_run(args):
    stats = {}
    threads = [threading.Thread(target=looper, args=(args, n, stats)) for n in range(1, args.clients + 1)]
    threads += [threading.Thread(target=idler, args=(args, n)) for n in range(1, args.idlers + 1)]
    if args.cli:
        threads.append(threading.Thread(target=cli_runner, args=(args, stats)))
    for t in threads:
        t.start()
    hello = client_hello()
    start = time.monotonic()
    aborts = 0
    while args.abort_every > 0 and time.monotonic() - start < args.seconds - 0.2:
        time.sleep(args.abort_every)
        try:
            abort_once(args, aborts, hello)
            aborts += 1
        except OSError as e:
            note(f"{stamp()} aborter: {type(e).__name__}: {e}")
    for t in threads:
        t.join()
    with open(args.out, "w") as f:
        for line in lines:
            f.write(line + "\n")
        for n in sorted(k for k in stats if k != "cli"):
            ok, errors = stats[n]
            f.write(f"summary client {n}: {ok} queries ok, {errors} errors\n")
        if "cli" in stats:
            ok, errors = stats["cli"]
            f.write(f"summary mariadb cli: {ok} runs ok, {errors} with errors\n")
        if args.idlers:
            f.write(f"summary idlers: {args.idlers}\n")
        f.write(f"summary aborting clients: {aborts}\n")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--user", required=True)
    r.add_argument("--password", default="")
    r.add_argument("--ca", required=True)
    r.add_argument("--clients", type=int, default=3)
    r.add_argument("--seconds", type=float, default=3.0)
    r.add_argument("--abort-every", type=float, default=0.7)
    r.add_argument("--abort-mode", choices=["fin", "rst", "mixed"], default="fin",
                   help="aborting client: fin (SSLRequest, half a ClientHello on even turns, FIN), "
                        "rst (SSLRequest, half a ClientHello, RST), mixed (RST after half a ClientHello "
                        "on even turns, FIN after the SSLRequest alone on odd ones)")
    r.add_argument("--plain", action="store_true", help="the looping clients do not use TLS")
    r.add_argument("--query", default="SELECT SLEEP(0.05)",
                   help="the statement; {client} and {i} become the client's and the statement's number")
    r.add_argument("--pause", type=float, default=0.0)
    r.add_argument("--cli", type=int, default=0)
    r.add_argument("--cli-statements", type=int, default=5)
    r.add_argument("--idlers", type=int, default=0)
    r.add_argument("--out", required=True)
    args = p.parse_args()
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
