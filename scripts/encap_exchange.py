#!/usr/bin/env python3
"""A small TCP exchange for the encapsulation captures (scripts/make-encap-captures.sh).

  encap_exchange.py server ADDR PORT        serve one connection: read the request, answer, close
  encap_exchange.py client ADDR PORT        connect, send a request, read the answer, close

The request is 6000 bytes and the answer 9000, so that on a tunnel whose MTU is above its
underlay's the outer datagrams are fragmented.
"""
import socket
import sys

REQ, RESP = 6000, 9000


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("peer closed early")
        buf += chunk
    return buf


def main():
    role, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    if role == "server":
        srv = socket.socket(fam, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((addr, port))
        srv.listen(1)
        print("listening", flush=True)
        c, _ = srv.accept()
        recv_exactly(c, REQ)
        c.sendall(bytes(i % 251 for i in range(RESP)))
        # Wait for the client's FIN before closing.
        while c.recv(4096):
            pass
        c.close()
    else:
        c = socket.create_connection((addr, port), timeout=10)
        c.sendall(bytes(i % 241 for i in range(REQ)))
        recv_exactly(c, RESP)
        c.close()


main()
