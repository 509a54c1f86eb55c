#!/usr/bin/env bash
# Captures of TCP inside encapsulations, for the decoder (captures/encap/, see its README).
#
#   sudo scripts/make-encap-captures.sh [OUTDIR]     default OUTDIR: captures/encap ; ~10 s ; root
#
# Two network namespaces joined by a veth pair (the underlay, 192.0.2.0/24 and 2001:db8::/64) run
# real TCP connections (scripts/encap_exchange.py: 6000 bytes up, 9000 down, FIN both ways) and
# tcpdump captures the underlay:
#   vxlan.pcap   over two kernel VXLAN tunnels (UDP 4789): one over IPv4 with MTU 4000 on an
#                underlay of 1500, so the kernel fragments the outer datagrams; one over IPv6
#   vxlan-mysql.pcap  a mariadb client session with mariadbd over the IPv4 tunnel (INSERT of a
#                6000-byte row, two SELECTs, QUIT)
#   plain        three connections on the bare underlay (IPv4, IPv4, IPv6), not kept: the kernel
#                here has no GRE, ERSPAN, 802.1Q or PPPoE, so scripts/encap_craft.py wraps these
#                real packets in them (pppoe, gre, erspan, ip-fragments, vlan-asymmetric .pcap);
#                tests/tshark_encap.rs checks frame by frame that tshark sees the same segments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-captures/encap}
mkdir -p "$out"
[[ $(id -u) == 0 ]] || { echo "needs root (network namespaces, tcpdump)" >&2; exit 1; }

A=pxs-encap-a$$
B=pxs-encap-b$$
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf -- "$tmp"
}
trap cleanup EXIT

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link add ua type veth peer name ub netns "$B"
ip -n "$A" addr add 192.0.2.1/24 dev ua
ip -n "$B" addr add 192.0.2.2/24 dev ub
ip -n "$A" addr add 2001:db8::1/64 dev ua nodad
ip -n "$B" addr add 2001:db8::2/64 dev ub nodad
for n in "$A" "$B"; do ip -n "$n" link set lo up; done
ip -n "$A" link set ua up
ip -n "$B" link set ub up
ip -n "$A" link add vx4 type vxlan id 42 dstport 4789 remote 192.0.2.2 local 192.0.2.1
ip -n "$B" link add vx4 type vxlan id 42 dstport 4789 remote 192.0.2.1 local 192.0.2.2
ip -n "$A" link add vx6 type vxlan id 66 dstport 4789 remote 2001:db8::2 local 2001:db8::1
ip -n "$B" link add vx6 type vxlan id 66 dstport 4789 remote 2001:db8::1 local 2001:db8::2
ip -n "$A" addr add 10.42.0.1/24 dev vx4
ip -n "$B" addr add 10.42.0.2/24 dev vx4
ip -n "$A" addr add 10.66.0.1/24 dev vx6
ip -n "$B" addr add 10.66.0.2/24 dev vx6
for n in "$A" "$B"; do
  for d in vx4 vx6; do
    # No IPv6 chatter (router solicitations, MLD) from the tunnels themselves.
    ip netns exec "$n" sysctl -qw "net.ipv6.conf.$d.disable_ipv6=1"
    ip -n "$n" link set "$d" mtu 4000 up
  done
done

PORT=33099
# One exchange: server in B on ADDR, client in A.
exchange() {
  ip netns exec "$B" /usr/bin/python3 scripts/encap_exchange.py server "$1" "$PORT" >"$tmp/server.log" &
  local s=$!
  for _ in $(seq 50); do grep -q listening "$tmp/server.log" && break; sleep 0.1; done
  ip netns exec "$A" /usr/bin/python3 scripts/encap_exchange.py client "$1" "$PORT"
  wait "$s"
}
# capture FILE FILTER: tcpdump on the underlay in A until stop_capture.
capture() {
  ip netns exec "$A" tcpdump -i ua -U --immediate-mode -B 65536 -s 0 -Z root -w "$1" "$2" 2>"$tmp/tcpdump.log" &
  TD=$!
  pids+=("$TD")
  for _ in $(seq 50); do grep -q listening "$tmp/tcpdump.log" && break; sleep 0.1; done
}
stop_capture() {
  sleep 0.5
  kill -INT "$TD"
  wait "$TD" || true
  grep -q '^0 packets dropped by kernel' "$tmp/tcpdump.log" || { cat "$tmp/tcpdump.log" >&2; exit 1; }
}

capture "$out/vxlan.pcap" 'not icmp6'
exchange 10.42.0.2
exchange 10.66.0.2
stop_capture

# MariaDB over the IPv4 VXLAN tunnel: a client session whose large result (6000 bytes in one row)
# goes out in fragmented outer datagrams, as a cloud mirror session of a database would show it.
source scripts/lib-mariadb.sh
LAB_DIR=$tmp/db
mkdir -p "$LAB_DIR"
lab_install_db
ip netns exec "$B" mariadbd --no-defaults --datadir="$LAB_DIR/data" --tmpdir="$LAB_DIR/tmp" \
  --socket="$LAB_DIR/db.sock" --port=3306 --bind-address=10.42.0.2 --user=root \
  --pid-file="$LAB_DIR/db.pid" --log-error="$LAB_DIR/db.log" --skip-name-resolve --skip-ssl \
  --innodb-buffer-pool-size=32M >"$LAB_DIR/db.stderr" 2>&1 &
DB=$!
pids+=("$DB")
for _ in $(seq 200); do
  mariadb-admin --no-defaults --socket="$LAB_DIR/db.sock" -uroot ping >/dev/null 2>&1 && break
  sleep 0.1
done
mariadb --no-defaults --socket="$LAB_DIR/db.sock" -uroot -e \
  "CREATE USER 'app'@'%' IDENTIFIED BY 'app'; GRANT ALL ON *.* TO 'app'@'%'; CREATE DATABASE t;
   CREATE TABLE t.kv (k INT PRIMARY KEY, v TEXT)"
capture "$out/vxlan-mysql.pcap" 'not icmp6'
ip netns exec "$A" mariadb --no-defaults --skip-ssl -h 10.42.0.2 -P 3306 -uapp -papp t -e \
  "INSERT INTO kv VALUES (1, REPEAT('x', 6000)); SELECT k, LENGTH(v) FROM kv; SELECT v FROM kv" >/dev/null
stop_capture
kill -TERM "$DB"
wait "$DB" || true

capture "$tmp/plain.pcap" "tcp port $PORT"
exchange 192.0.2.2
exchange 192.0.2.2
exchange 2001:db8::2
stop_capture
/usr/bin/python3 scripts/encap_craft.py "$tmp/plain.pcap" "$out"
ls -l "$out"/*.pcap
